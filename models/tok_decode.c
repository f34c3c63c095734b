/* tok_decode.c — token ids back to text: whole sequences and incremental streams. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* Output of the clean-spaces passes: raw bytes (whole decode) or the UTF-8 assembler (stream). */
typedef struct sink {
    sl_tok_stream *s;
    char *p;
    size_t n;
    bool utf8;
} sink;

static void put_fffd(sink *k) { memcpy(k->p + k->n, "\xef\xbf\xbd", 3), k->n += 3; }

static void u8_put(sink *k, uint8_t c) {
    sl_tok_stream *s = k->s;
    for (;;) {
        if (s->u8n == 0) {
            if (c < 0x80) k->p[k->n++] = (char)c;
            else if (c >= 0xC2 && c <= 0xDF) s->u8[0] = c, s->u8n = 1, s->u8need = 2;
            else if (c >= 0xE0 && c <= 0xEF) s->u8[0] = c, s->u8n = 1, s->u8need = 3;
            else if (c >= 0xF0 && c <= 0xF4) s->u8[0] = c, s->u8n = 1, s->u8need = 4;
            else put_fffd(k);
            return;
        }
        bool ok = (c & 0xC0) == 0x80;
        if (ok && s->u8n == 1) { /* the second byte rules out overlongs, surrogates, > U+10FFFF */
            uint8_t l = s->u8[0];
            if (l == 0xE0) ok = c >= 0xA0;
            else if (l == 0xED) ok = c <= 0x9F;
            else if (l == 0xF0) ok = c >= 0x90;
            else if (l == 0xF4) ok = c <= 0x8F;
        }
        if (ok) {
            s->u8[s->u8n++] = c;
            if (s->u8n == s->u8need) memcpy(k->p + k->n, s->u8, s->u8n), k->n += s->u8n, s->u8n = 0;
            return;
        }
        put_fffd(k); /* the incomplete sequence; then c starts afresh */
        s->u8n = 0;
    }
}

static void out(sink *k, char c) {
    if (k->utf8) u8_put(k, (uint8_t)c);
    else k->p[k->n++] = c;
}

/* llama.cpp's clean_spaces as three chained transducers, each holding the few bytes whose
 * fate the next bytes decide:
 *   1. a space before ? ! . , is dropped;
 *   2. " ' " becomes "'";
 *   3. " 's", " 'm", " 're", " 've" lose the space. */
static void p3_put(sink *k, char c) {
    sl_tok_stream *s = k->s;
    switch (s->p3) {
    case 0:
        if (c == ' ') s->p3 = 1;
        else out(k, c);
        return;
    case 1:
        if (c == '\'') s->p3 = 2;
        else if (c == ' ') out(k, ' ');
        else out(k, ' '), out(k, c), s->p3 = 0;
        return;
    case 2:
        s->p3 = 0;
        if (c == 's' || c == 'm') out(k, '\''), out(k, c);
        else if (c == 't' || c == 'd') out(k, ' '), out(k, '\''), out(k, c);
        else if (c == 'r' || c == 'v') s->p3x = c, s->p3 = 3;
        else out(k, ' '), out(k, '\''), p3_put(k, c);
        return;
    default:
        s->p3 = 0;
        if (c == 'e') out(k, '\''), out(k, s->p3x), out(k, 'e');
        else out(k, ' '), out(k, '\''), out(k, s->p3x), p3_put(k, c);
        return;
    }
}

static void p2_put(sink *k, char c) {
    sl_tok_stream *s = k->s;
    switch (s->p2) {
    case 0:
        if (c == ' ') s->p2 = 1;
        else p3_put(k, c);
        return;
    case 1:
        if (c == '\'') s->p2 = 2;
        else if (c == ' ') p3_put(k, ' ');
        else p3_put(k, ' '), p3_put(k, c), s->p2 = 0;
        return;
    default:
        s->p2 = 0;
        if (c == ' ') p3_put(k, '\''); /* both spaces go; the second cannot start a match */
        else p3_put(k, ' '), p3_put(k, '\''), p2_put(k, c);
        return;
    }
}

static void p1_put(sink *k, char c) {
    sl_tok_stream *s = k->s;
    if (s->p1) {
        s->p1 = 0;
        if (c != '?' && c != '!' && c != '.' && c != ',') p2_put(k, ' ');
    }
    if (c == ' ') s->p1 = 1;
    else p2_put(k, c);
}

static void clean_flush(sink *k) {
    sl_tok_stream *s = k->s;
    if (s->p1) s->p1 = 0, p2_put(k, ' ');
    if (s->p2 == 1) p3_put(k, ' ');
    else if (s->p2 == 2) p3_put(k, ' '), p3_put(k, '\'');
    s->p2 = 0;
    if (s->p3 >= 1) out(k, ' ');
    if (s->p3 >= 2) out(k, '\'');
    if (s->p3 == 3) out(k, s->p3x);
    s->p3 = 0;
}

static void put_token(sink *k, int32_t id) {
    sl_tok_stream *s = k->s;
    const sl_tok *t = s->t;
    bool first = s->first;
    s->first = false;
    if (!(s->flags & SL_TOK_RENDER_SPECIAL) && (t->attr[id] & (SL_TOKA_CONTROL | SL_TOKA_UNKNOWN))) return;
    const char *p = t->piece + t->poff[id];
    size_t n = t->plen[id];
    if (first && t->add_space_prefix && n && *p == ' ') p++, n--;
    for (size_t i = 0; i < n; i++) {
        if (t->clean_spaces) p1_put(k, p[i]);
        else out(k, p[i]);
    }
}

void sl_tok_stream_init(sl_tok_stream *s, const sl_tok *t, unsigned flags) {
    memset(s, 0, sizeof *s);
    s->t = t;
    s->flags = flags & SL_TOK_RENDER_SPECIAL;
    s->first = true;
}

size_t sl_tok_stream_bound(const sl_tok *t) { return 3 * ((size_t)t->max_piece + 12) + 16; }

int sl_tok_stream_put(sl_tok_stream *s, int32_t id, char *outp, size_t *n) {
    *n = 0;
    if (id < 0 || id >= s->t->n_vocab) return SL_ERANGE;
    sink k = {s, outp, 0, true};
    put_token(&k, id);
    *n = k.n;
    return 0;
}

void sl_tok_stream_finish(sl_tok_stream *s, char *outp, size_t *n) {
    sink k = {s, outp, 0, true};
    clean_flush(&k);
    if (s->u8n) put_fffd(&k), s->u8n = 0;
    *n = k.n;
}

int sl_tok_decode(const sl_tok *t, const int32_t *ids, size_t n, unsigned flags, char **text, size_t *len) {
    *text = NULL, *len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab) return SL_ERANGE;
    sl_tok_stream s;
    sl_tok_stream_init(&s, t, flags);
    if ((flags & SL_TOK_REMOVE_SPECIAL) && t->add_bos && n && ids[0] == t->bos) s.first = false, ids++, n--;
    if ((flags & SL_TOK_REMOVE_SPECIAL) && t->add_eos && n && ids[n - 1] == t->eos) n--;
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) cap += t->plen[ids[i]];
    sink k = {&s, malloc(cap), 0, false};
    if (!k.p) return SL_ENOMEM;
    for (size_t i = 0; i < n; i++) put_token(&k, ids[i]);
    clean_flush(&k);
    k.p[k.n] = 0;
    *text = k.p, *len = k.n;
    return 0;
}
