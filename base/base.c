#include "base.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int sl_log_level_current = SL_LOG_INFO;

const char *sl_strerror(int err) {
    switch (err) {
    case SL_OK: return "success";
    case SL_EIO: return "input/output error";
    case SL_EFORMAT: return "malformed input";
    case SL_EUNSUPPORTED: return "unsupported";
    case SL_EINVAL: return "invalid argument";
    case SL_ENOMEM: return "out of memory or over a limit";
    case SL_ENOTFOUND: return "not found";
    case SL_ERANGE: return "value out of range";
    default: return "unknown error";
    }
}

int sl_fail(char *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, SL_ERRMSG, fmt, ap);
        va_end(ap);
    }
    return code;
}

void sl__log(int level, const char *tag, const char *fmt, ...) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sluice %s [%s] %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], tag, line);
}

_Noreturn void sl__abort(const char *expr, const char *func, const char *file, int line) {
    fprintf(stderr, "sluice: fatal: check failed: %s in %s at %s:%d\n", expr, func, file, line);
    fflush(stderr);
    abort();
}

void *sl_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) sl__abort("malloc", __func__, __FILE__, __LINE__);
    return p;
}

void *sl_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) sl__abort("calloc", __func__, __FILE__, __LINE__);
    return p;
}

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float sl_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t sl_f32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0); /* inf/nan */
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: overflow to inf */
    if (ax < 0x38800000u) {
        /* subnormal half (or zero): round(|f| / 2^-24) with ties to even */
        float a = bits_f32(ax);
        float q = a * 16777216.0f; /* exact: power-of-two scaling */
        float r = nearbyintf(q);   /* default rounding mode is RNE */
        return sign | (uint16_t)r;
    }
    uint32_t exp = (ax >> 23) - 112, man = ax & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carry into exponent is correct */
    return sign | (uint16_t)h;
}

uint16_t sl_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

double sl_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sl_rng_seed(sl_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sl_rng_u64(sl_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

float sl_rng_f32(sl_rng *r) { return (float)(sl_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float sl_rng_normal(sl_rng *r) {
    /* Box-Muller; u1 in (0, 1] so log is finite */
    float u1 = 1.0f - sl_rng_f32(r), u2 = sl_rng_f32(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}
