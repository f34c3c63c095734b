/* test_cuda_harness.h — what the CUDA kernel tests share.
 *
 * One test source runs two ways: linked with the emulated kernels (kernels/emu, ctest label
 * `emu`, in CI, plain and ASan builds) and with the nvcc-built kernels on a GPU (label `gpu`; it
 * exits 77, "skipped", when there is no device). Each kernel is checked against the CPU backend
 * (kernels/cpu, the reference) on random inputs that are never zero, with ragged and odd sizes
 * that reach every launch path of the op.
 *
 * Device buffers come with GUARD poisoned floats after their end (and `off` before their start,
 * to make pointers that are not 16-byte aligned); everything is filled with 0xff bytes (NaN)
 * before a kernel runs, so an output the kernel skips shows up as NaN, and a write past either
 * end shows up in the guard check — on a GPU too, where no sanitizer watches.
 */
#ifndef SL_TEST_CUDA_HARNESS_H
#define SL_TEST_CUDA_HARNESS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops.h"
#include "tests/test.h"

#define GUARD 64 /* poisoned floats after every device buffer */
#define SKIP 77  /* ctest SKIP_RETURN_CODE: no device */

static sl_rng g_rng;
static long g_checks;

/* uniform in ±[0.1, 1): never zero */
static inline float rnd(void) {
    float v = 0.1f + 0.9f * sl_rng_f32(&g_rng);
    return (sl_rng_u64(&g_rng) & 1) ? v : -v;
}
static inline int rnd_int(int n) { return (int)(sl_rng_u64(&g_rng) % (uint64_t)n); }

/* host vector of n random floats times scale; the caller frees it */
static inline float *rnd_vec(int64_t n, float scale) {
    float *v = sl_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = rnd() * scale;
    return v;
}
static inline float *copy_vec(const float *src, int64_t n) {
    float *v = sl_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(v, src, (size_t)n * sizeof(float));
    return v;
}

/* A device buffer of n 4-byte elements starting `off` elements into its allocation. */
typedef struct dbuf {
    void *base;
    float *p; /* the buffer (use as int32_t * for integer data) */
    int64_t n;
    int off;
} dbuf;

static inline size_t dbuf_bytes(const dbuf *b) { return (size_t)(b->off + b->n + GUARD) * 4; }

/* Allocates and poisons (0xff bytes) the buffer and its guards. */
static inline dbuf dev_alloc(int64_t n, int off) {
    dbuf b = {NULL, NULL, n, off};
    b.base = sl_cuda_malloc(dbuf_bytes(&b));
    ASSERT(b.base != NULL);
    sl_cuda_memset(b.base, 0xff, dbuf_bytes(&b));
    b.p = (float *)b.base + off;
    return b;
}
static inline dbuf dev_from(const void *host, int64_t n, int off) {
    dbuf b = dev_alloc(n, off);
    sl_cuda_upload(b.p, host, (size_t)n * 4);
    return b;
}
static inline void dev_get(const dbuf *b, void *host) {
    sl_cuda_sync();
    sl_cuda_download(host, b->p, (size_t)b->n * 4);
}
/* The guards must still hold their 0xff bytes: the kernel wrote nothing out of bounds. */
static inline void dev_check_guards(const dbuf *b, const char *what) {
    size_t bytes = dbuf_bytes(b);
    unsigned char *h = sl_xmalloc(bytes);
    sl_cuda_sync();
    sl_cuda_download(h, b->base, bytes);
    for (size_t i = 0; i < bytes; i++) {
        size_t elem = i / 4;
        if (elem >= (size_t)b->off && elem < (size_t)(b->off + b->n)) continue;
        if (h[i] != 0xff) {
            fprintf(stderr, "%s: write out of bounds, %lld floats %s the buffer\n", what,
                    elem < (size_t)b->off ? (long long)(b->off - (int64_t)elem)
                                          : (long long)((int64_t)elem - b->off - b->n + 1),
                    elem < (size_t)b->off ? "before" : "after");
            abort();
        }
    }
    free(h);
}
static inline void dev_free(dbuf *b) {
    sl_cuda_free(b->base);
    b->base = NULL;
    b->p = NULL;
}

/* got[i] vs ref[i] for every i: |got − ref| <= abs_tol + |ref|·rel (NaN never passes) */
static inline void check_close(const char *what, const float *got, const float *ref, int64_t n,
                        double abs_tol, double rel) {
    for (int64_t i = 0; i < n; i++) {
        g_checks++;
        double d = fabs((double)got[i] - (double)ref[i]);
        double tol = abs_tol + fabs((double)ref[i]) * rel;
        if (!(d <= tol)) {
            fprintf(stderr, "%s: element %lld: got %.9g, want %.9g (diff %.3g, tol %.3g)\n", what,
                    (long long)i, got[i], ref[i], d, tol);
            abort();
        }
    }
}

/* got and ref hold the same bits, element by element (elem bytes each; NaNs included) */
static inline void check_bits(const char *what, const void *got, const void *ref, int64_t n,
                              int elem) {
    const unsigned char *g = got, *r = ref;
    for (int64_t i = 0; i < n; i++) {
        g_checks++;
        if (memcmp(g + i * elem, r + i * elem, (size_t)elem) != 0) {
            uint64_t gv = 0, rv = 0;
            memcpy(&gv, g + i * elem, (size_t)elem);
            memcpy(&rv, r + i * elem, (size_t)elem);
            fprintf(stderr, "%s: element %lld: got bits 0x%llx, want 0x%llx\n", what, (long long)i,
                    (unsigned long long)gv, (unsigned long long)rv);
            abort();
        }
    }
}

/* Returns SKIP from main when there is no device, after saying so. */
static inline int harness_begin(const char *name, uint64_t seed) {
    int n = sl_cuda_device_count();
    if (n < 1) {
        printf("%s: no CUDA device: skipped\n", name);
        return SKIP;
    }
    char dev[256];
    int ma = 0, mi = 0;
    size_t mem = 0;
    ASSERT(sl_cuda_device_info(0, dev, sizeof dev, &ma, &mi, &mem) == 0);
    printf("%s: on %s (compute capability %d.%d)\n", name, dev, ma, mi);
    sl_rng_seed(&g_rng, seed);
    return 0;
}

#endif
