/* base.h — errors, logging, assertions, fp16/bf16, time and a seeded RNG.
 *
 * Used by every module; uses nothing but libc. Thread-safe unless noted.
 *
 * Errors: recoverable failures return a negative sl_err code. Parsers of outside input
 * also fill a caller-provided message buffer (char err[SL_ERRMSG]) naming the problem,
 * e.g. "tensor blk.3.attn_q.weight: data runs past end of file".
 * Bugs abort through SL_CHECK with the failing statement and file:line.
 */
#ifndef SL_BASE_H
#define SL_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_ERRMSG 256

typedef enum sl_err {
    SL_OK = 0,
    SL_EIO = -1,          /* file cannot be opened, read or mapped */
    SL_EFORMAT = -2,      /* outside input is malformed (truncated, corrupt, hostile) */
    SL_EUNSUPPORTED = -3, /* well-formed but not supported (version, type, architecture) */
    SL_EINVAL = -4,       /* invalid argument or option */
    SL_ENOMEM = -5,       /* allocation failed or a limit was exceeded */
    SL_ENOTFOUND = -6,    /* a key, tensor or file is missing */
    SL_ERANGE = -7,       /* a value is out of its allowed range */
} sl_err;

/* Static description of an error code; never NULL. */
const char *sl_strerror(int err);

/* Writes a formatted message into err (SL_ERRMSG bytes, may be NULL) and returns code. */
int sl_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- logging ------------------------------------------------------------------------ */
typedef enum { SL_LOG_DEBUG = 0, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR, SL_LOG_OFF } sl_log_level;
extern int sl_log_level_current; /* set once at start-up; default SL_LOG_INFO */
void sl__log(int level, const char *tag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Arguments are not evaluated unless the level is enabled. */
#define SL_LOG(level, tag, ...)                                                                  \
    do {                                                                                         \
        if ((level) >= sl_log_level_current) sl__log((level), (tag), __VA_ARGS__);               \
    } while (0)

/* ---- assertions (programming errors only) -------------------------------------------- */
_Noreturn void sl__abort(const char *expr, const char *func, const char *file, int line);
#define SL_CHECK(x)                                                                              \
    do {                                                                                         \
        if (!(x)) sl__abort(#x, __func__, __FILE__, __LINE__);                                   \
    } while (0)

/* Allocation that aborts on failure (only for sizes the program chose, never outside input). */
void *sl_xmalloc(size_t n);
void *sl_xcalloc(size_t n, size_t size);

/* ---- half precision ------------------------------------------------------------------ */
/* IEEE binary16 with subnormals, round-to-nearest-even; bf16 = top 16 bits of f32 (RNE). */
float sl_fp16_to_f32(uint16_t h);
uint16_t sl_f32_to_fp16(float f);
static inline float sl_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
uint16_t sl_f32_to_bf16(float f);

/* ---- time ----------------------------------------------------------------------------- */
double sl_time_s(void); /* monotonic seconds */

/* ---- RNG: xoshiro256** seeded through splitmix64; not thread-safe per state ---------- */
typedef struct sl_rng { uint64_t s[4]; } sl_rng;
void sl_rng_seed(sl_rng *r, uint64_t seed);
uint64_t sl_rng_u64(sl_rng *r);
float sl_rng_f32(sl_rng *r);    /* uniform in [0, 1) */
float sl_rng_normal(sl_rng *r); /* standard normal */

/* ---- checked size arithmetic ---------------------------------------------------------- */
/* Return 0 on success, -1 on overflow. */
static inline int sl_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int sl_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

#ifdef __cplusplus
}
#endif
#endif
