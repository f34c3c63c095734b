/* api_util.h — a growable byte buffer with JSON writers, UTF-8 checks, and typed reads of
 * request fields from cJSON trees. Used by the API layer on the loop thread (and by prompt
 * preparation in libuv's thread pool: each buffer belongs to one thread).
 *
 * Ownership: an sl_buf is zero-initialized by the caller and freed with sl_buf_free.
 * Allocation failure aborts (these buffers are bounded by the request size limits).
 */
#ifndef SL_API_UTIL_H
#define SL_API_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct sl_buf {
    char *p;                    /* [n], always NUL-terminated once anything was written */
    size_t n, cap;
} sl_buf;

void sl_buf_free(sl_buf *b);
void sl_buf_reset(sl_buf *b);   /* n = 0, memory kept */
void sl_buf_put(sl_buf *b, const void *data, size_t len);
void sl_buf_puts(sl_buf *b, const char *s);
void sl_buf_printf(sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal: quotes, escapes; bytes that are not valid UTF-8 become U+FFFD. */
void sl_buf_json_str(sl_buf *b, const char *s, size_t len);
/* A JSON number; non-finite values (JSON has none) as null. */
void sl_buf_json_num(sl_buf *b, double x);

/* Length of the valid UTF-8 prefix of s[0..len) (len when all of it is valid). Overlong
 * forms, surrogates and code points above U+10FFFF are invalid. */
size_t sl_utf8_valid_prefix(const char *s, size_t len);

/* ---- per-request arena: many small allocations freed in one call (h2o's pools) ----------
 * Zero-initialize; sl_arena_free releases everything. Allocation failure aborts. */
typedef struct sl_arena {
    struct sl_arena_chunk *head;
} sl_arena;
void *sl_arena_alloc(sl_arena *a, size_t n);             /* zeroed, 16-byte aligned */
char *sl_arena_strndup(sl_arena *a, const char *s, size_t n); /* NUL-terminated copy */
void sl_arena_free(sl_arena *a);

/* ---- typed fields of a JSON object ------------------------------------------------------
 * Each returns 0 when the field is absent or null (leaving *out unchanged), 1 when it was
 * read, or -1 with a message in err naming the field (wrong type, out of range). */
int sl_json_int(const cJSON *obj, const char *name, int64_t lo, int64_t hi, int64_t *out, char *err, size_t cap);
int sl_json_num(const cJSON *obj, const char *name, double lo, double hi, double *out, char *err, size_t cap);
int sl_json_bool(const cJSON *obj, const char *name, bool *out, char *err, size_t cap);
int sl_json_str(const cJSON *obj, const char *name, const char **out, char *err, size_t cap);
/* True when v is a JSON number holding an integer in [lo, hi]. */
bool sl_json_is_int(const cJSON *v, int64_t lo, int64_t hi);

#endif
