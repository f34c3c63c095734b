/* output.c — incremental text with stop strings; see output.h. */
#include "output.h"

#include <stdlib.h>
#include <string.h>

void sl_output_init(sl_output *o, const sl_tok *tok, const char *const *stop, int n_stop) {
    memset(o, 0, sizeof *o);
    sl_tok_stream_init(&o->st, tok, 0);
    o->stop = stop;
    o->n_stop = n_stop;
    for (int i = 0; i < n_stop; i++) {
        size_t n = strlen(stop[i]);
        if (n - 1 > o->hold) o->hold = n - 1;
    }
    o->piece = sl_xmalloc(sl_tok_stream_bound(tok));
    o->cap = 256;
    o->buf = sl_xmalloc(o->cap);
}

void sl_output_deinit(sl_output *o) {
    free(o->buf);
    free(o->piece);
    memset(o, 0, sizeof *o);
}

static void append(sl_output *o, const char *p, size_t n) {
    if (o->n + n > o->cap) {
        while (o->n + n > o->cap) o->cap *= 2;
        o->buf = realloc(o->buf, o->cap);
        SL_CHECK(o->buf);
    }
    memcpy(o->buf + o->n, p, n);
    o->n += n;
}

int sl_output_feed(sl_output *o, int32_t token, bool add_text, bool last, const char **text, size_t *len) {
    /* what the previous call released is gone: keep only the unreleased tail */
    if (o->rel) {
        memmove(o->buf, o->buf + o->rel, o->n - o->rel);
        o->n -= o->rel;
        o->rel = 0;
    }
    *text = o->buf;
    *len = 0;
    if (o->ended) return -1;
    size_t old = o->n, k = 0;
    if (add_text && sl_tok_stream_put(&o->st, token, o->piece, &k) == 0) append(o, o->piece, k);
    if (last) {
        sl_tok_stream_finish(&o->st, o->piece, &k);
        append(o, o->piece, k);
    }
    /* a new match must end in the new bytes, so it starts after old - longest + 1 */
    int hit = -1;
    size_t at = o->n, from = old > o->hold ? old - o->hold : 0;
    for (int i = 0; i < o->n_stop; i++) {
        size_t sn = strlen(o->stop[i]);
        if (o->n - from < sn) continue;
        const char *f = memmem(o->buf + from, o->n - from, o->stop[i], sn);
        if (f && ((size_t)(f - o->buf) < at || (hit >= 0 && (size_t)(f - o->buf) == at && sn > strlen(o->stop[hit])))) {
            at = (size_t)(f - o->buf);
            hit = i;
        }
    }
    size_t rel;
    if (hit >= 0) {
        rel = at;
        o->ended = true;
    } else if (last) {
        rel = o->n;
        o->ended = true;
    } else {
        rel = o->n > o->hold ? o->n - o->hold : 0;
        while (rel > 0 && rel < o->n && ((unsigned char)o->buf[rel] & 0xC0) == 0x80) rel--;
    }
    if (o->ended) o->n = rel; /* drop the stop string and what follows */
    o->rel = rel;
    *len = rel;
    return hit;
}
