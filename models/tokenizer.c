/* tokenizer.c — loading the vocabulary from GGUF metadata, special-token partition, encode. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

#define TAG "tok"

uint64_t sl__tok_hash(const void *p, size_t n, uint64_t h) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static bool map_init(sl__tok_map *m, uint64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    m->slot = calloc(cap, sizeof *m->slot);
    m->mask = cap - 1;
    return m->slot != NULL;
}

int32_t sl_tok_find(const sl_tok *t, const char *s, size_t n) {
    for (uint64_t i = sl__tok_hash(s, n, TOK_HASH_SEED) & t->ids.mask;; i = (i + 1) & t->ids.mask) {
        uint32_t v = t->ids.slot[i];
        if (!v) return -1;
        int32_t id = (int32_t)v - 1;
        if (t->len[id] == n && !memcmp(t->text + t->off[id], s, n)) return id;
    }
}

int sl__tok_push(sl_tok_ids *out, int32_t id) {
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 64;
        int32_t *v = realloc(out->v, cap * sizeof *v);
        if (!v) return SL_ENOMEM;
        out->v = v, out->cap = cap;
    }
    out->v[out->n++] = id;
    return 0;
}

void sl_tok_ids_free(sl_tok_ids *ids) {
    free(ids->v);
    ids->v = NULL, ids->n = ids->cap = 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid (overlong, surrogate,
 * above U+10FFFF or truncated). */
static size_t utf8_valid_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t min, cp;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000, cp = c & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static bool utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t l = utf8_valid_len((const uint8_t *)s + i, n - i);
        if (!l) return false;
        i += l;
    }
    return true;
}

/* ---- loading ------------------------------------------------------------------------- */

/* llama.cpp's tokenizer.ggml.pre groups (llama-vocab.cpp), for the regex families we run. */
static const struct pre_name {
    const char *name;
    int pre;
    bool clean_spaces, ignore_merges, add_bos;
} k_pre[] = {
    {"default", TOK_PRE_DEFAULT, true, false, false},
    {"llama3", TOK_PRE_LLAMA3, true, true, true}, {"llama-v3", TOK_PRE_LLAMA3, true, true, true},
    {"llama-bpe", TOK_PRE_LLAMA3, true, true, true}, {"falcon3", TOK_PRE_LLAMA3, true, true, true},
    {"falcon-h1", TOK_PRE_LLAMA3, true, true, true}, {"pixtral", TOK_PRE_LLAMA3, true, true, true},
    {"midm-2.0", TOK_PRE_LLAMA3, true, true, true}, {"lfm2", TOK_PRE_LLAMA3, true, true, true},
    {"jina-v5-nano", TOK_PRE_LLAMA3, true, true, true},
    {"dbrx", TOK_PRE_LLAMA3, true, false, false}, {"smaug-bpe", TOK_PRE_LLAMA3, true, false, false},
    {"qwen2", TOK_PRE_QWEN2, false, false, false}, {"deepseek-r1-qwen", TOK_PRE_QWEN2, false, false, false},
    {"kormo", TOK_PRE_QWEN2, false, false, false}, {"f2llmv2", TOK_PRE_QWEN2, false, false, false},
    {"megrez", TOK_PRE_QWEN2, true, false, false}, {"stablelm2", TOK_PRE_QWEN2, true, false, false},
    {"hunyuan", TOK_PRE_QWEN2, false, false, false}, {"solar-open", TOK_PRE_QWEN2, false, false, false},
    {"gpt-2", TOK_PRE_GPT2, true, false, false}, {"phi-2", TOK_PRE_GPT2, true, false, false},
    {"jina-es", TOK_PRE_GPT2, true, false, false}, {"jina-de", TOK_PRE_GPT2, true, false, false},
    {"gigachat", TOK_PRE_GPT2, true, false, false}, {"jina-v2-es", TOK_PRE_GPT2, true, false, false},
    {"jina-v2-de", TOK_PRE_GPT2, true, false, false}, {"a.x-4.0", TOK_PRE_GPT2, true, false, false},
    {"mellum", TOK_PRE_GPT2, true, false, false}, {"modern-bert", TOK_PRE_GPT2, true, false, false},
    {"jina-v1-en", TOK_PRE_GPT2, true, false, false}, {"jina-v2-code", TOK_PRE_GPT2, true, false, false},
    {"roberta-bpe", TOK_PRE_GPT2, true, false, false}, {"exaone4", TOK_PRE_GPT2, true, false, false},
    {"mpt", TOK_PRE_GPT2, true, false, false}, {"olmo", TOK_PRE_GPT2, true, false, false},
    {"jais", TOK_PRE_GPT2, true, false, false}, {"trillion", TOK_PRE_GPT2, false, false, false},
    {"granite-docling", TOK_PRE_GPT2, false, false, false},
    {"smollm", TOK_PRE_SMOLLM, false, false, false}, {"starcoder", TOK_PRE_SMOLLM, true, false, false},
    {"refact", TOK_PRE_SMOLLM, true, false, false}, {"command-r", TOK_PRE_SMOLLM, false, false, false},
    {"codeshell", TOK_PRE_SMOLLM, true, false, false}, {"exaone", TOK_PRE_SMOLLM, true, false, false},
    {"minerva-7b", TOK_PRE_SMOLLM, true, false, false}, {"mellum2", TOK_PRE_SMOLLM, true, false, false},
};

static const char *const k_pre_group[] = {"none", "default", "llama3", "qwen2", "gpt2", "smollm"};

/* Token texts llama.cpp treats as control (and end of generation) whatever their type. */
static const char *const k_eog_text[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[",
};
/* Fill-in-the-middle markers: made control; pad/repo/file-sep ones also end generation. */
static const char *const k_fim_text[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
    "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>",
    "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
    "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>",
};
static const char *const k_fim_eog_text[] = {
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
};

static int32_t find_cstr(const sl_tok *t, const char *s) { return sl_tok_find(t, s, strlen(s)); }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xXX>" → XX, else -1 */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

static int read_special_id(const sl_gguf *g, const char *key, int32_t *id, int32_t n, char *err) {
    uint32_t v;
    int rc = sl_gguf_get_u32(g, key, &v, err);
    if (rc == SL_ENOTFOUND) return 0;
    if (rc) return rc;
    /* llama.cpp warns and keeps the default; a file naming a token it lacks is malformed. */
    if (v >= (uint32_t)n)
        return sl_fail(err, SL_EFORMAT, "%s = %u is out of range (vocabulary of %d tokens)", key, v, n);
    *id = (int32_t)v;
    return 0;
}

static int read_bool(const sl_gguf *g, const char *key, bool *out, char *err) {
    bool v;
    int rc = sl_gguf_get_bool(g, key, &v, err);
    if (rc == SL_ENOTFOUND) return 0;
    if (!rc) *out = v;
    return rc;
}

static int load_tokens(sl_tok *t, const sl_gguf *g, char *err) {
    const sl_gguf_kv *tk = sl_gguf_find(g, "tokenizer.ggml.tokens");
    if (!tk) return sl_fail(err, SL_ENOTFOUND, "tokenizer.ggml.tokens is missing");
    if (tk->type != SL_GGUF_ARRAY || tk->arr_type != SL_GGUF_STRING)
        return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.tokens is not an array of strings");
    if (tk->n == 0 || tk->n > INT32_MAX / 2)
        return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)tk->n);
    int32_t n = (int32_t)tk->n;
    t->n_vocab = n;

    const sl_gguf_kv *sc = sl_gguf_find(g, "tokenizer.ggml.scores");
    if (sc && (sc->type != SL_GGUF_ARRAY || (sc->arr_type != SL_GGUF_F32 && sc->arr_type != SL_GGUF_I32)))
        return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.scores is not an array of f32 or i32");
    if (sc && sc->n < tk->n)
        return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.scores has %llu entries for %d tokens",
                       (unsigned long long)sc->n, n);
    const sl_gguf_kv *ty = sl_gguf_find(g, "tokenizer.ggml.token_type");
    if (ty && (ty->type != SL_GGUF_ARRAY || ty->arr_type != SL_GGUF_I32))
        return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.token_type is not an array of i32");
    if (ty && ty->n < tk->n)
        return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.token_type has %llu entries for %d tokens",
                       (unsigned long long)ty->n, n);

    uint64_t bytes = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *s;
        uint64_t len;
        sl_gguf_arr_str(tk, (uint64_t)i, &s, &len);
        bytes += (len ? len : 24) + 1;
    }
    t->text = malloc(bytes);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->score = malloc((size_t)n * sizeof *t->score);
    t->attr = malloc((size_t)n);
    t->eog = calloc((size_t)n, 1);
    if (!t->text || !t->off || !t->len || !t->score || !t->attr || !t->eog || !map_init(&t->ids, (uint64_t)n))
        return sl_fail(err, SL_ENOMEM, "out of memory loading %d tokens", n);

    uint64_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *s;
        uint64_t len;
        sl_gguf_arr_str(tk, (uint64_t)i, &s, &len);
        char *dst = t->text + pos;
        if (len == 0) { /* llama.cpp's placeholder for empty tokens */
            len = (uint64_t)snprintf(dst, 24, "[EMPTY_%d]", (int)i);
        } else {
            if (!utf8_valid(s, len))
                return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.tokens[%d] is not valid UTF-8", (int)i);
            memcpy(dst, s, len);
        }
        dst[len] = 0;
        t->off[i] = pos, t->len[i] = (uint32_t)len;
        pos += len + 1;
        t->score[i] = !sc ? 0.0f : sc->arr_type == SL_GGUF_F32 ? sl_gguf_arr_f32(sc, (uint64_t)i)
                                                            : (float)sl_gguf_arr_int(sc, (uint64_t)i);
        int64_t type = ty ? sl_gguf_arr_int(ty, (uint64_t)i) : 1;
        static const uint8_t k_attr[7] = {0, SL_TOKA_NORMAL, SL_TOKA_UNKNOWN, SL_TOKA_CONTROL,
                                          SL_TOKA_USER_DEFINED, SL_TOKA_UNUSED, SL_TOKA_BYTE};
        if (type < 0 || type > 6)
            return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.token_type[%d] = %lld is not a token type (0..6)",
                           (int)i, (long long)type);
        t->attr[i] = k_attr[type];
        if (t->attr[i] == SL_TOKA_BYTE && byte_token_value(dst, len) < 0)
            return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.tokens[%d] has type byte but is not <0xXX>", (int)i);
        /* insert, rejecting duplicates (llama.cpp asserts on them) */
        uint64_t h = sl__tok_hash(dst, len, TOK_HASH_SEED) & t->ids.mask;
        for (;; h = (h + 1) & t->ids.mask) {
            uint32_t v = t->ids.slot[h];
            if (!v) break;
            int32_t o = (int32_t)v - 1;
            if (t->len[o] == len && !memcmp(t->text + t->off[o], dst, len))
                return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.tokens[%d] repeats token %d ('%.40s')",
                               (int)i, (int)o, dst);
        }
        t->ids.slot[h] = (uint32_t)i + 1;
    }
    return 0;
}

static int load_merges(sl_tok *t, const sl_gguf *g, char *err) {
    const sl_gguf_kv *m = sl_gguf_find(g, "tokenizer.ggml.merges");
    if (!m) return sl_fail(err, SL_ENOTFOUND, "tokenizer.ggml.merges is missing (required by the gpt2 tokenizer)");
    if (m->type != SL_GGUF_ARRAY || m->arr_type != SL_GGUF_STRING)
        return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.merges is not an array of strings");
    if (m->n > INT32_MAX / 2) return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.merges is too long");
    uint32_t n = (uint32_t)m->n;
    uint64_t bytes = 1;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint64_t len;
        sl_gguf_arr_str(m, i, &s, &len);
        bytes += len + 1;
    }
    t->mtext = malloc(bytes);
    t->moff = malloc(((size_t)n + 1) * sizeof *t->moff);
    t->mleft = malloc(((size_t)n + 1) * sizeof *t->mleft);
    t->mright = malloc(((size_t)n + 1) * sizeof *t->mright);
    if (!t->mtext || !t->moff || !t->mleft || !t->mright || !map_init(&t->merges, n))
        return sl_fail(err, SL_ENOMEM, "out of memory loading %u merges", n);
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint64_t len;
        sl_gguf_arr_str(m, i, &s, &len);
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) return sl_fail(err, SL_EFORMAT, "tokenizer.ggml.merges[%u] ('%.40s') has no space between two parts", i, s);
        memcpy(t->mtext + pos, s, len);
        t->mtext[pos + len] = 0;
        t->moff[i] = pos;
        t->mleft[i] = (uint32_t)(sp - s);
        t->mright[i] = (uint32_t)(len - (uint64_t)(sp - s) - 1);
        pos += len + 1;
        const char *a = t->mtext + t->moff[i], *b = a + t->mleft[i] + 1;
        if (sl__tok_merge_rank(t, a, t->mleft[i], b, t->mright[i]) >= 0) continue; /* first rank wins */
        uint64_t h = sl__tok_hash(b, t->mright[i], sl__tok_hash(a, t->mleft[i], TOK_HASH_SEED) ^ 0xff) & t->merges.mask;
        while (t->merges.slot[h]) h = (h + 1) & t->merges.mask;
        t->merges.slot[h] = i + 1;
    }
    t->n_merges = n;
    return 0;
}

int32_t sl__tok_merge_rank(const sl_tok *t, const char *a, size_t na, const char *b, size_t nb) {
    uint64_t h = sl__tok_hash(b, nb, sl__tok_hash(a, na, TOK_HASH_SEED) ^ 0xff) & t->merges.mask;
    for (;; h = (h + 1) & t->merges.mask) {
        uint32_t v = t->merges.slot[h];
        if (!v) return -1;
        uint32_t i = v - 1;
        const char *e = t->mtext + t->moff[i];
        if (t->mleft[i] == na && t->mright[i] == nb && !memcmp(e, a, na) && !memcmp(e + na + 1, b, nb))
            return (int32_t)i;
    }
}

/* The decoded text of each token, as llama.cpp's token_to_piece(special = true) gives it. */
static int build_pieces(sl_tok *t, char *err) {
    int32_t n = t->n_vocab;
    uint64_t bytes = 0;
    for (int32_t i = 0; i < n; i++) bytes += 2 * (uint64_t)t->len[i] + 32; /* UNK_BYTE worst case below */
    t->piece = malloc(bytes);
    t->poff = malloc((size_t)n * sizeof *t->poff);
    t->plen = malloc((size_t)n * sizeof *t->plen);
    if (!t->piece || !t->poff || !t->plen) return sl_fail(err, SL_ENOMEM, "out of memory building token pieces");
    uint64_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *s = t->text + t->off[i];
        uint32_t len = t->len[i], a = t->attr[i];
        char *d = t->piece + pos;
        uint64_t k = 0;
        if (a & (SL_TOKA_CONTROL | SL_TOKA_UNKNOWN | SL_TOKA_USER_DEFINED)) {
            memcpy(d, s, len), k = len;
        } else if (a & SL_TOKA_NORMAL) {
            if (t->type == SL_TOK_SPM) {
                for (uint32_t j = 0; j < len; j++) {
                    if (j + 2 < len && !memcmp(s + j, "\xe2\x96\x81", 3)) d[k++] = ' ', j += 2;
                    else d[k++] = s[j];
                }
            } else {
                /* Each code point maps back to one byte; one outside the table is spelled out
                 * as llama.cpp does, "[UNK_BYTE_0x<its UTF-8 in hex><token text>]", which can
                 * outgrow the buffer sized for ordinary tokens: grow it then. */
                for (uint32_t j = 0; j < len;) {
                    size_t l = utf8_valid_len((const uint8_t *)s + j, len - j);
                    uint32_t cp = (uint8_t)s[j];
                    if (l == 2) cp = (cp & 0x1F) << 6 | (s[j + 1] & 0x3F);
                    else if (l == 3) cp = (cp & 0x0F) << 12 | (s[j + 1] & 0x3F) << 6 | (s[j + 2] & 0x3F);
                    else if (l == 4) cp = (cp & 0x07) << 18 | (s[j + 1] & 0x3F) << 12 | (s[j + 2] & 0x3F) << 6 | (s[j + 3] & 0x3F);
                    int b = sl__tok_cp_byte(cp);
                    if (b >= 0) {
                        d[k++] = (char)b;
                    } else {
                        uint64_t need = 12 + 2 * l + len + 1;
                        uint64_t have = bytes - pos;
                        if (k + need > have) {
                            bytes += need + 4096;
                            char *p = realloc(t->piece, bytes);
                            if (!p) return sl_fail(err, SL_ENOMEM, "out of memory building token pieces");
                            t->piece = p, d = p + pos;
                        }
                        k += (uint64_t)sprintf(d + k, "[UNK_BYTE_0x");
                        for (size_t q = 0; q < l; q++) k += (uint64_t)sprintf(d + k, "%02x", (uint8_t)s[j + q]);
                        memcpy(d + k, s, len), k += len;
                        d[k++] = ']';
                    }
                    j += (uint32_t)l;
                }
            }
        } else if (a & SL_TOKA_BYTE) {
            d[k++] = (char)byte_token_value(s, len);
        }
        t->poff[i] = pos, t->plen[i] = (uint32_t)k;
        if (k > t->max_piece) t->max_piece = (uint32_t)k;
        pos += k;
    }
    return 0;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const sl_tok *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y]) return t->len[x] > t->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void mark_by_text(sl_tok *t) {
    for (size_t i = 0; i < sizeof k_eog_text / sizeof *k_eog_text; i++) {
        int32_t id = find_cstr(t, k_eog_text[i]);
        if (id >= 0) t->attr[id] |= SL_TOKA_CONTROL, t->eog[id] = 1;
    }
    for (size_t i = 0; i < sizeof k_fim_text / sizeof *k_fim_text; i++) {
        int32_t id = find_cstr(t, k_fim_text[i]);
        if (id >= 0) t->attr[id] |= SL_TOKA_CONTROL;
    }
    for (size_t i = 0; i < sizeof k_fim_eog_text / sizeof *k_fim_eog_text; i++) {
        int32_t id = find_cstr(t, k_fim_eog_text[i]);
        if (id >= 0) t->attr[id] |= SL_TOKA_CONTROL, t->eog[id] = 1;
    }
    /* gpt-oss: these always render (llama.cpp makes them user-defined) */
    static const char *const k_user[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
    for (size_t i = 0; i < 4; i++) {
        int32_t id = find_cstr(t, k_user[i]);
        if (id >= 0) t->attr[id] = SL_TOKA_USER_DEFINED;
    }
    /* o200k_harmony / solar-open: "<|end|>" is no end of generation there */
    int32_t end = find_cstr(t, "<|end|>");
    bool ret = find_cstr(t, "<|return|>") >= 0, call = find_cstr(t, "<|call|>") >= 0 || find_cstr(t, "<|calls|>") >= 0;
    bool flush = find_cstr(t, "<|flush|>") >= 0;
    if (end >= 0 && call && (ret || flush)) t->eog[end] = 0, t->attr[end] = SL_TOKA_USER_DEFINED;
    /* gemma4 / paddleocr: "</s>" is not either */
    int32_t s = find_cstr(t, "</s>");
    if (s >= 0 && find_cstr(t, "<|tool_response>") >= 0) t->eog[s] = 0, t->attr[s] = SL_TOKA_NORMAL;
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;
}

int sl_tok_create(sl_tok **out, const sl_gguf *g, char err[SL_ERRMSG]) {
    *out = NULL;
    sl_tok *t = calloc(1, sizeof *t);
    if (!t) return sl_fail(err, SL_ENOMEM, "out of memory");
    int rc;
    const char *model, *pre = NULL;
    uint64_t model_len, pre_len = 0;
    if ((rc = sl_gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len, err))) {
        if (rc == SL_ENOTFOUND) sl_fail(err, rc, "tokenizer.ggml.model is missing: the file has no tokenizer");
        goto fail;
    }
    rc = sl_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pre_len, err);
    if (rc && rc != SL_ENOTFOUND) goto fail;
    if (model_len == 5 && !memcmp(model, "llama", 5)) {
        t->type = SL_TOK_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0, t->eot = t->eom = -1;
        t->add_space_prefix = true, t->add_bos = true;
    } else if (model_len == 4 && !memcmp(model, "gpt2", 4)) {
        t->type = SL_TOK_BPE;
        t->bos = 11, t->eos = 11, t->unk = t->eot = t->eom = -1;
        t->pre = TOK_PRE_DEFAULT, t->clean_spaces = true;
        if (rc == SL_ENOTFOUND) {
            SL_LOG(SL_LOG_WARN, TAG, "tokenizer.ggml.pre is missing: using the default pre-tokenizer "
                                     "(llama.cpp does the same; the file should be regenerated)");
        } else {
            size_t i, n = sizeof k_pre / sizeof *k_pre;
            for (i = 0; i < n; i++)
                if (strlen(k_pre[i].name) == pre_len && !memcmp(k_pre[i].name, pre, pre_len)) break;
            if (i == n) {
                rc = sl_fail(err, SL_EUNSUPPORTED, "tokenizer.ggml.pre '%.*s' is not a supported pre-tokenizer",
                             (int)(pre_len > 64 ? 64 : pre_len), pre);
                goto fail;
            }
            t->pre = k_pre[i].pre, t->clean_spaces = k_pre[i].clean_spaces;
            t->ignore_merges = k_pre[i].ignore_merges, t->add_bos = k_pre[i].add_bos;
        }
    } else {
        rc = sl_fail(err, SL_EUNSUPPORTED, "tokenizer.ggml.model '%.*s' is not supported (llama, gpt2)",
                     (int)(model_len > 64 ? 64 : model_len), model);
        goto fail;
    }
    if ((rc = read_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err))) goto fail;
    if ((rc = load_tokens(t, g, err))) goto fail;
    if (t->type == SL_TOK_BPE && (rc = load_merges(t, g, err))) goto fail;

    int32_t n = t->n_vocab;
    int32_t *ids[] = {&t->bos, &t->eos, &t->unk, &t->eot, &t->eom};
    static const char *const keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                       "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.eot_token_id",
                                       "tokenizer.ggml.eom_token_id"};
    for (int i = 0; i < 5; i++) {
        if (*ids[i] >= n) *ids[i] = -1;
        if ((rc = read_special_id(g, keys[i], ids[i], n, err))) goto fail;
    }
    if ((rc = read_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err))) goto fail;
    if ((rc = read_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err))) goto fail;
    mark_by_text(t);

    for (int32_t i = 0; i < n; i++)
        if (t->attr[i] & (SL_TOKA_CONTROL | SL_TOKA_USER_DEFINED | SL_TOKA_UNKNOWN)) t->n_special++;
    t->special = malloc(((size_t)t->n_special + 1) * sizeof *t->special);
    if (!t->special) {
        rc = sl_fail(err, SL_ENOMEM, "out of memory");
        goto fail;
    }
    t->n_special = 0;
    for (int32_t i = 0; i < n; i++)
        if (t->attr[i] & (SL_TOKA_CONTROL | SL_TOKA_USER_DEFINED | SL_TOKA_UNKNOWN)) t->special[t->n_special++] = i;
    /* llama.cpp sorts by length only (unstable); equal lengths go by id here */
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);

    if ((rc = build_pieces(t, err))) goto fail;
    for (int b = 0; b < 256; b++) {
        char hex[7], one[1] = {(char)b};
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = sl_tok_find(t, hex, 6);
        t->byte_id[b] = id >= 0 ? id : sl_tok_find(t, one, 1);
        t->single_id[b] = sl_tok_find(t, one, 1);
    }
    if (t->type == SL_TOK_BPE && (rc = sl__tok_pre_init(t, err))) goto fail;
    *out = t;
    return 0;
fail:
    sl_tok_destroy(t);
    return rc;
}

void sl_tok_destroy(sl_tok *t) {
    if (!t) return;
    sl__tok_pre_free(t);
    free(t->text), free(t->off), free(t->len), free(t->score), free(t->attr), free(t->eog);
    free(t->ids.slot), free(t->piece), free(t->poff), free(t->plen);
    free(t->mtext), free(t->moff), free(t->mleft), free(t->mright), free(t->merges.slot);
    free(t->special);
    free(t);
}

sl_tok_type sl_tok_kind(const sl_tok *t) { return t->type; }
const char *sl_tok_pre(const sl_tok *t) { return k_pre_group[t->pre]; }
int32_t sl_tok_n_vocab(const sl_tok *t) { return t->n_vocab; }
int32_t sl_tok_bos(const sl_tok *t) { return t->bos; }
int32_t sl_tok_eos(const sl_tok *t) { return t->eos; }
bool sl_tok_add_bos(const sl_tok *t) { return t->add_bos; }
bool sl_tok_add_eos(const sl_tok *t) { return t->add_eos; }
bool sl_tok_is_eog(const sl_tok *t, int32_t id) { return id >= 0 && id < t->n_vocab && t->eog[id]; }
unsigned sl_tok_attr(const sl_tok *t, int32_t id) { return id >= 0 && id < t->n_vocab ? t->attr[id] : 0; }

const char *sl_tok_text(const sl_tok *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->len[id];
    return t->text + t->off[id];
}

/* ---- encoding ------------------------------------------------------------------------ */

typedef struct frag {
    int32_t tok; /* -1: raw text */
    size_t off, len;
} frag;

typedef struct frags {
    frag *v;
    size_t n, cap;
} frags;

static int frag_push(frags *f, int32_t tok, size_t off, size_t len) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return SL_ENOMEM;
        f->v = v, f->cap = cap;
    }
    f->v[f->n++] = (frag){tok, off, len};
    return 0;
}

/* Cuts special-token text out of the raw fragments: for each special token, longest first,
 * every non-overlapping occurrence, left to right, in every fragment still raw. */
static int partition(const sl_tok *t, const char *text, size_t len, bool parse_special, frags *f) {
    frags tmp = {0};
    int rc = frag_push(f, -1, 0, len);
    for (int32_t k = 0; !rc && k < t->n_special; k++) {
        int32_t id = t->special[k];
        if (!parse_special && (t->attr[id] & (SL_TOKA_CONTROL | SL_TOKA_UNKNOWN))) continue;
        const char *s = t->text + t->off[id];
        size_t n = t->len[id];
        if (n > len || !memmem(text, len, s, n)) continue;
        tmp.n = 0;
        for (size_t i = 0; !rc && i < f->n; i++) {
            frag fr = f->v[i];
            if (fr.tok >= 0) {
                rc = frag_push(&tmp, fr.tok, 0, 0);
                continue;
            }
            size_t p = fr.off, end = fr.off + fr.len;
            while (!rc && p < end) {
                const char *m = end - p >= n ? memmem(text + p, end - p, s, n) : NULL;
                if (!m) break;
                size_t at = (size_t)(m - text);
                if (at > p) rc = frag_push(&tmp, -1, p, at - p);
                if (!rc) rc = frag_push(&tmp, id, 0, 0);
                p = at + n;
            }
            if (!rc && p < end) rc = frag_push(&tmp, -1, p, end - p);
        }
        frags sw = *f;
        *f = tmp, tmp = sw;
    }
    free(tmp.v);
    return rc;
}

int sl_tok_encode(const sl_tok *t, const char *text, size_t len, unsigned flags, sl_tok_ids *out) {
    if (len > (1u << 30)) return SL_ENOMEM;
    bool add = flags & SL_TOK_ADD_SPECIAL;
    frags f = {0};
    int rc = 0;
    if (len) rc = partition(t, text, len, flags & SL_TOK_PARSE_SPECIAL, &f);
    if (!rc && add && t->add_bos && t->bos >= 0) rc = sl__tok_push(out, t->bos);
    bool prev_special = true; /* SPM: a space is prefixed to text that starts or follows a token */
    for (size_t i = 0; !rc && i < f.n; i++) {
        if (f.v[i].tok >= 0) {
            rc = sl__tok_push(out, f.v[i].tok);
            prev_special = true;
        } else if (t->type == SL_TOK_SPM) {
            rc = sl__tok_spm(t, text + f.v[i].off, f.v[i].len, t->add_space_prefix && prev_special, out);
            prev_special = false;
        } else {
            rc = sl__tok_bpe(t, text + f.v[i].off, f.v[i].len, out);
        }
    }
    if (!rc && add && t->add_eos && t->eos >= 0) rc = sl__tok_push(out, t->eos);
    free(f.v);
    return rc;
}
