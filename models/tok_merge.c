/* tok_merge.c — the merge loops (SentencePiece by score, byte-level BPE by rank) and the BPE
 * pre-tokenizer (PCRE2). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* ---- GPT-2 bytes ↔ unicode ------------------------------------------------------------- */
/* Printable bytes map to themselves; the other 68 (0x00-0x20, 0x7F-0xA0, 0xAD) to U+0100..
 * U+0143 in byte order. */
uint32_t sl__tok_byte_cp(uint8_t b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33 + (b - 0x7Fu);
    if (b == 0xAD) return 256u + 33 + 34;
    return b;
}

int sl__tok_cp_byte(uint32_t c) {
    if (c < 256) return (c <= 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) ? -1 : (int)c;
    if (c < 256 + 33) return (int)(c - 256);
    if (c < 256 + 33 + 34) return (int)(0x7F + c - 256 - 33);
    if (c == 256 + 33 + 34) return 0xAD;
    return -1;
}

/* ---- pre-tokenizer ---------------------------------------------------------------------- */
/* llama.cpp's regexes with \s spelled out as the Unicode White_Space set its splitters use
 * (PCRE2's \s would miss U+0085), and the case-insensitive contractions spelled as classes
 * (so that U+017F, a caseless 's', does not match). Each regex splits every piece the
 * previous one left; matches and the gaps between them both become pieces. */
#define WS "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define CONTRACT_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define WS_TAIL "|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+"
#define RE_LLAMA3 CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*" WS_TAIL
#define RE_QWEN2 CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*" WS_TAIL
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])"

int sl__tok_pre_init(sl_tok *t, char *err) {
    const char *re[TOK_MAX_RE] = {0};
    switch (t->pre) {
    case TOK_PRE_LLAMA3: re[0] = RE_LLAMA3; break;
    case TOK_PRE_QWEN2: re[0] = RE_QWEN2; break;
    case TOK_PRE_GPT2: re[0] = RE_GPT2; break;
    case TOK_PRE_SMOLLM: re[0] = "\\p{N}", re[1] = RE_GPT2; break;
    default: re[0] = "[\\p{P}\\$\\+<=>\\^~\\|]+", re[1] = RE_GPT2, re[2] = "\\p{N}+", re[3] = "[0-9][0-9][0-9]"; break;
    }
    for (int i = 0; i < TOK_MAX_RE && re[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)re[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!c) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return sl_fail(err, SL_EINVAL, "pre-tokenizer regex %d: %s at offset %zu", i, (char *)msg, (size_t)eo);
        }
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
        t->re[t->n_re++] = c;
    }
    return 0;
}

void sl__tok_pre_free(sl_tok *t) {
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    t->n_re = 0;
}

typedef struct span {
    size_t off, len;
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
} spans;

static int span_push(spans *s, size_t off, size_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return SL_ENOMEM;
        s->v = v, s->cap = cap;
    }
    s->v[s->n++] = (span){off, len};
    return 0;
}

/* Splits each span of in by re into out. Subjects are valid UTF-8. */
static int split(const pcre2_code *re, pcre2_match_data *md, const char *text, const spans *in, spans *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *subj = text + in->v[i].off;
        size_t n = in->v[i].len, p = 0, gap = 0;
        while (p < n) {
            int rc = pcre2_match(re, (PCRE2_SPTR)subj, n, p, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
                rc = pcre2_match(re, (PCRE2_SPTR)subj, n, p, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) return SL_ENOMEM; /* resource limits: nothing else can fail here */
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t a = ov[0], b = ov[1];
            if (b == a) { /* no regex here matches empty; step over a character to be safe */
                p = a + 1;
                while (p < n && ((uint8_t)subj[p] & 0xC0) == 0x80) p++;
                continue;
            }
            if (a > gap && span_push(out, in->v[i].off + gap, a - gap)) return SL_ENOMEM;
            if (span_push(out, in->v[i].off + a, b - a)) return SL_ENOMEM;
            p = gap = b;
        }
        if (gap < n && span_push(out, in->v[i].off + gap, n - gap)) return SL_ENOMEM;
    }
    return 0;
}

/* ---- merge queue -------------------------------------------------------------------------- */
typedef struct sym {
    uint32_t start, n; /* bytes of the working string */
    int32_t prev, next;
} sym;

typedef struct bigram {
    float key;         /* SPM: score (higher first); BPE: rank (lower first, stored negated) */
    int32_t left, right;
    uint32_t size;
} bigram;

typedef struct work {
    sym *sym;
    size_t nsym, capsym;
    bigram *heap;
    size_t nheap, capheap;
    char *buf;
    size_t nbuf, capbuf;
} work;

static bool before(const bigram *a, const bigram *b) {
    return a->key > b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(work *w, bigram g) {
    if (w->nheap == w->capheap) {
        size_t cap = w->capheap ? 2 * w->capheap : 64;
        bigram *v = realloc(w->heap, cap * sizeof *v);
        if (!v) return SL_ENOMEM;
        w->heap = v, w->capheap = cap;
    }
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&g, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = g;
    return 0;
}

static bigram heap_pop(work *w) {
    bigram top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static int buf_reserve(work *w, size_t n) {
    if (n <= w->capbuf) return 0;
    size_t cap = w->capbuf ? w->capbuf : 256;
    while (cap < n) cap *= 2;
    char *p = realloc(w->buf, cap);
    if (!p) return SL_ENOMEM;
    w->buf = p, w->capbuf = cap;
    return 0;
}

/* Symbols: one per UTF-8 character of w->buf (a lead byte's length, cut at the end). */
static int make_symbols(work *w) {
    w->nsym = 0;
    if (w->capsym < w->nbuf) {
        sym *v = realloc(w->sym, w->nbuf * sizeof *v);
        if (!v) return SL_ENOMEM;
        w->sym = v, w->capsym = w->nbuf;
    }
    static const uint8_t k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    for (size_t p = 0; p < w->nbuf;) {
        size_t l = k_len[(uint8_t)w->buf[p] >> 4];
        if (l > w->nbuf - p) l = w->nbuf - p;
        int32_t i = (int32_t)w->nsym++;
        w->sym[i] = (sym){(uint32_t)p, (uint32_t)l, i - 1, p + l == w->nbuf ? -1 : i + 1};
        p += l;
    }
    return 0;
}

/* Pair candidate for SPM (score of the merged token) or BPE (merge rank). */
static int add_pair(const sl_tok *t, work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    const sym *a = &w->sym[l], *b = &w->sym[r];
    const char *s = w->buf + a->start;
    bigram g = {0, l, r, a->n + b->n};
    if (t->type == SL_TOK_SPM) {
        int32_t id = sl_tok_find(t, s, g.size);
        if (id < 0) return 0;
        g.key = t->score[id];
    } else {
        int32_t rank = sl__tok_merge_rank(t, s, a->n, w->buf + b->start, b->n);
        if (rank < 0) return 0;
        g.key = -(float)rank; /* ranks < 2^24 are exact in a float */
    }
    return heap_push(w, g);
}

static int merge_all(const sl_tok *t, work *w) {
    w->nheap = 0;
    for (size_t i = 1; i < w->nsym; i++)
        if (add_pair(t, w, (int32_t)i - 1, (int32_t)i)) return SL_ENOMEM;
    while (w->nheap) {
        bigram g = heap_pop(w);
        sym *a = &w->sym[g.left], *b = &w->sym[g.right];
        /* stale: a side was merged away, or grew since the pair was queued */
        if (a->n == 0 || b->n == 0 || a->n + b->n != g.size) continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) w->sym[b->next].prev = g.left;
        if (add_pair(t, w, a->prev, g.left) || add_pair(t, w, g.left, a->next)) return SL_ENOMEM;
    }
    return 0;
}

static void work_free(work *w) { free(w->sym), free(w->heap), free(w->buf); }

/* ---- SentencePiece ------------------------------------------------------------------------- */
int sl__tok_spm(const sl_tok *t, const char *s, size_t n, bool space_prefix, sl_tok_ids *out) {
    work w = {0};
    int rc = buf_reserve(&w, 3 * (n + 1));
    if (rc) goto done;
    if (space_prefix) memcpy(w.buf, "\xe2\x96\x81", 3), w.nbuf = 3;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') memcpy(w.buf + w.nbuf, "\xe2\x96\x81", 3), w.nbuf += 3;
        else w.buf[w.nbuf++] = s[i];
    }
    if (!w.nbuf || (rc = make_symbols(&w)) || (rc = merge_all(t, &w))) goto done;
    for (int32_t i = 0; !rc && i != -1; i = w.sym[i].next) {
        const sym *y = &w.sym[i];
        int32_t id = sl_tok_find(t, w.buf + y->start, y->n);
        if (id >= 0) {
            rc = sl__tok_push(out, id);
            continue;
        }
        /* a character that is no token: its bytes (llama.cpp throws when a byte has no token) */
        for (uint32_t j = 0; !rc && j < y->n; j++) {
            int32_t b = t->byte_id[(uint8_t)w.buf[y->start + j]];
            if (b >= 0) rc = sl__tok_push(out, b);
        }
    }
done:
    work_free(&w);
    return rc;
}

/* ---- byte-level BPE -------------------------------------------------------------------------- */
/* Copy of s with every invalid UTF-8 byte replaced by U+FFFD (as llama.cpp decodes it). */
static char *sanitize(const char *s, size_t n, size_t *out_n) {
    char *d = malloc(3 * n + 1);
    if (!d) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = len && len <= n - i;
        uint32_t cp = len == 2 ? c & 0x1Fu : len == 3 ? c & 0x0Fu : c & 0x07u;
        for (size_t j = 1; ok && j < len; j++) {
            ok = ((uint8_t)s[i + j] & 0xC0) == 0x80;
            cp = cp << 6 | ((uint8_t)s[i + j] & 0x3F);
        }
        if (ok && len > 1) {
            static const uint32_t k_min[5] = {0, 0, 0x80, 0x800, 0x10000};
            ok = cp >= k_min[len] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        }
        if (ok) {
            memcpy(d + k, s + i, len), k += len, i += len;
        } else {
            memcpy(d + k, "\xef\xbf\xbd", 3), k += 3, i++;
        }
    }
    *out_n = k;
    return d;
}

int sl__tok_bpe(const sl_tok *t, const char *s, size_t n, sl_tok_ids *out) {
    work w = {0};
    spans a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    size_t tn;
    char *text = sanitize(s, n, &tn);
    int rc = SL_ENOMEM;
    if (!text || !(md = pcre2_match_data_create(1, NULL)) || span_push(&a, 0, tn)) goto done;
    rc = 0;
    for (int r = 0; !rc && r < t->n_re; r++) {
        rc = split(t->re[r], md, text, &a, &b);
        spans sw = a;
        a = b, b = sw;
    }
    for (size_t i = 0; !rc && i < a.n; i++) {
        /* byte-encode the piece: each byte becomes one code point of 1 or 2 UTF-8 bytes */
        const uint8_t *p = (const uint8_t *)text + a.v[i].off;
        size_t len = a.v[i].len;
        if ((rc = buf_reserve(&w, 2 * len))) break;
        w.nbuf = 0;
        for (size_t j = 0; j < len; j++) {
            uint32_t cp = sl__tok_byte_cp(p[j]);
            if (cp < 0x80) w.buf[w.nbuf++] = (char)cp;
            else w.buf[w.nbuf++] = (char)(0xC0 | cp >> 6), w.buf[w.nbuf++] = (char)(0x80 | (cp & 0x3F));
        }
        if (t->ignore_merges) {
            int32_t id = sl_tok_find(t, w.buf, w.nbuf);
            if (id >= 0) {
                rc = sl__tok_push(out, id);
                continue;
            }
        }
        if ((rc = make_symbols(&w)) || (rc = merge_all(t, &w))) break;
        for (int32_t k = 0; !rc && k != -1; k = w.sym[k].next) {
            const sym *y = &w.sym[k];
            int32_t id = sl_tok_find(t, w.buf + y->start, y->n);
            if (id >= 0) {
                rc = sl__tok_push(out, id);
                continue;
            }
            /* llama.cpp: each byte of the merged text that is a token on its own */
            for (uint32_t j = 0; !rc && j < y->n; j++) {
                int32_t bid = t->single_id[(uint8_t)w.buf[y->start + j]];
                if (bid >= 0) rc = sl__tok_push(out, bid);
            }
        }
    }
done:
    pcre2_match_data_free(md);
    free(text), free(a.v), free(b.v);
    work_free(&w);
    return rc;
}
