#include "api_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

void sl_buf_free(sl_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

void sl_buf_reset(sl_buf *b) {
    b->n = 0;
    if (b->p) b->p[0] = 0;
}

static void reserve(sl_buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    SL_CHECK(p);
    b->p = p;
    b->cap = cap;
}

void sl_buf_put(sl_buf *b, const void *data, size_t len) {
    reserve(b, len);
    if (len) memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = 0;
}

void sl_buf_puts(sl_buf *b, const char *s) { sl_buf_put(b, s, strlen(s)); }

void sl_buf_printf(sl_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    SL_CHECK(k >= 0);
    if ((size_t)k < sizeof tmp) {
        sl_buf_put(b, tmp, (size_t)k);
        return;
    }
    reserve(b, (size_t)k);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when s[0..len) does not start one. */
static size_t utf8_seq(const unsigned char *s, size_t len) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
    else return 0;
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return n;
}

size_t sl_utf8_valid_prefix(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(u + i, len - i);
        if (!k) return i;
        i += k;
    }
    return len;
}

void sl_buf_json_str(sl_buf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    reserve(b, len + 2);
    b->p[b->n++] = '"';
    size_t i = 0;
    while (i < len) {
        unsigned c = u[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(u + i, len - i);
            if (k) sl_buf_put(b, u + i, k), i += k;
            else sl_buf_put(b, "\xEF\xBF\xBD", 3), i++;
            continue;
        }
        char esc[7] = {'\\', 0};
        size_t el = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            if (c < 0x20 || c == 0x7F) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
                el = 6;
            } else {
                el = 0;
            }
        }
        if (el) sl_buf_put(b, esc, el);
        else {
            reserve(b, 1);
            b->p[b->n++] = (char)c;
            b->p[b->n] = 0;
        }
        i++;
    }
    sl_buf_put(b, "\"", 1);
}

void sl_buf_json_num(sl_buf *b, double x) {
    if (!isfinite(x)) sl_buf_puts(b, "null");
    else sl_buf_printf(b, "%.9g", x);
}

/* ---- typed fields ------------------------------------------------------------------------ */

static const cJSON *field(const cJSON *obj, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

bool sl_json_is_int(const cJSON *v, int64_t lo, int64_t hi) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    return isfinite(d) && d == floor(d) && d >= (double)lo && d <= (double)hi;
}

int sl_json_int(const cJSON *obj, const char *name, int64_t lo, int64_t hi, int64_t *out, char *err, size_t cap) {
    const cJSON *v = field(obj, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || !isfinite(v->valuedouble)) {
        snprintf(err, cap, "'%s' must be an integer", name);
        return -1;
    }
    if (!sl_json_is_int(v, lo, hi)) {
        snprintf(err, cap, "'%s' must be between %lld and %lld, got %.17g", name, (long long)lo, (long long)hi,
                 v->valuedouble);
        return -1;
    }
    *out = (int64_t)v->valuedouble;
    return 1;
}

int sl_json_num(const cJSON *obj, const char *name, double lo, double hi, double *out, char *err, size_t cap) {
    const cJSON *v = field(obj, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        snprintf(err, cap, "'%s' must be a number", name);
        return -1;
    }
    if (v->valuedouble < lo || v->valuedouble > hi) {
        snprintf(err, cap, "'%s' must be between %g and %g, got %.17g", name, lo, hi, v->valuedouble);
        return -1;
    }
    *out = v->valuedouble;
    return 1;
}

int sl_json_bool(const cJSON *obj, const char *name, bool *out, char *err, size_t cap) {
    const cJSON *v = field(obj, name);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) {
        snprintf(err, cap, "'%s' must be a boolean", name);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 1;
}

int sl_json_str(const cJSON *obj, const char *name, const char **out, char *err, size_t cap) {
    const cJSON *v = field(obj, name);
    if (!v) return 0;
    if (!cJSON_IsString(v)) {
        snprintf(err, cap, "'%s' must be a string", name);
        return -1;
    }
    *out = v->valuestring;
    return 1;
}

/* ---- arena ------------------------------------------------------------------------------- */

typedef struct sl_arena_chunk {
    struct sl_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} sl_arena_chunk;

void *sl_arena_alloc(sl_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    sl_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4000 ? n : 4000;
        c = malloc(sizeof *c + cap);
        SL_CHECK(c);
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *sl_arena_strndup(sl_arena *a, const char *s, size_t n) {
    char *p = sl_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void sl_arena_free(sl_arena *a) {
    for (sl_arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
}
