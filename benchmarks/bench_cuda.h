/* bench_cuda.h — what the GPU kernel benchmarks (benchmarks/bench_cuda_*.c) share: the device
 * copy bandwidth measured in the same run, CUDA-event timing with medians, rotating buffers.
 *
 * Built only where nvcc is found (SL_HAVE_CUDA); run only on a GPU (they exit 77 without one).
 * Method (tool library METHOD.md): warm up, time many repetitions with events, report the
 * median; rotate among input sets larger than L2 together, so that repeats do not measure the
 * cache; never time zeros (inputs are random).
 */
#ifndef SL_BENCH_CUDA_H
#define SL_BENCH_CUDA_H

#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_CHECK(call)                                                                        \
    do {                                                                                         \
        cudaError_t e_ = (call);                                                                 \
        if (e_ != cudaSuccess) {                                                                 \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                        \
                    cudaGetErrorString(e_));                                                     \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* Bytes of L2 on device 0 (rotate among more than twice this). */
static inline size_t bench_l2_bytes(void) {
    int v = 0;
    BENCH_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrL2CacheSize, 0));
    return (size_t)v;
}
static inline int bench_sm_count(void) {
    int v = 0;
    BENCH_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0));
    return v;
}

static int bench_cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median microseconds of `reps` calls of fn(arg, i) (i = 0, 1, ...: the call picks its rotating
 * buffer from i), each timed alone with a pair of events, after `warm` untimed calls. */
static inline double bench_time_us(void (*fn)(void *arg, int i), void *arg, int warm, int reps) {
    cudaEvent_t a, b;
    BENCH_CHECK(cudaEventCreate(&a));
    BENCH_CHECK(cudaEventCreate(&b));
    for (int i = 0; i < warm; i++) fn(arg, i);
    BENCH_CHECK(cudaDeviceSynchronize());
    float *ms = malloc(sizeof(float) * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        BENCH_CHECK(cudaEventRecord(a, 0));
        fn(arg, warm + i);
        BENCH_CHECK(cudaEventRecord(b, 0));
        BENCH_CHECK(cudaEventSynchronize(b));
        BENCH_CHECK(cudaEventElapsedTime(&ms[i], a, b));
    }
    BENCH_CHECK(cudaGetLastError());
    qsort(ms, (size_t)reps, sizeof(float), bench_cmp_float);
    double med = 1000.0 * ms[reps / 2];
    free(ms);
    BENCH_CHECK(cudaEventDestroy(a));
    BENCH_CHECK(cudaEventDestroy(b));
    return med;
}

/* Microseconds per call of fn(arg, i, stream) in steady state: `per` calls (i = 0..per-1, the
 * call picks its rotating buffer from i) captured into one CUDA graph, the graph replayed `reps`
 * times, each replay timed with events; the median replay over `per`. Launch gaps shrink to
 * what a graph leaves, as in a serving loop that replays its decode step. fn must enqueue on
 * the stream it is given and be capturable (no allocation, no synchronization): call it once
 * before, so that workspaces exist. */
static inline double bench_graph_us(void (*fn)(void *arg, int i, cudaStream_t s), void *arg,
                                    int per, int reps) {
    cudaStream_t s;
    BENCH_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (int i = 0; i < per; i++) fn(arg, i, s); /* warm-up, workspaces */
    BENCH_CHECK(cudaStreamSynchronize(s));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    BENCH_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < per; i++) fn(arg, i, s);
    BENCH_CHECK(cudaStreamEndCapture(s, &g));
    BENCH_CHECK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    BENCH_CHECK(cudaEventCreate(&a));
    BENCH_CHECK(cudaEventCreate(&b));
    BENCH_CHECK(cudaGraphLaunch(ge, s));
    BENCH_CHECK(cudaStreamSynchronize(s));
    float *ms = malloc(sizeof(float) * (size_t)reps);
    for (int r = 0; r < reps; r++) {
        BENCH_CHECK(cudaEventRecord(a, s));
        BENCH_CHECK(cudaGraphLaunch(ge, s));
        BENCH_CHECK(cudaEventRecord(b, s));
        BENCH_CHECK(cudaEventSynchronize(b));
        BENCH_CHECK(cudaEventElapsedTime(&ms[r], a, b));
    }
    BENCH_CHECK(cudaGetLastError());
    qsort(ms, (size_t)reps, sizeof(float), bench_cmp_float);
    const double us = 1000.0 * ms[reps / 2] / per;
    free(ms);
    BENCH_CHECK(cudaEventDestroy(a));
    BENCH_CHECK(cudaEventDestroy(b));
    BENCH_CHECK(cudaGraphExecDestroy(ge));
    BENCH_CHECK(cudaGraphDestroy(g));
    BENCH_CHECK(cudaStreamDestroy(s));
    return us;
}

typedef struct bench_copy {
    void *src[4], *dst[4];
    size_t bytes;
} bench_copy;
static void bench_copy_fn(void *arg, int i) {
    bench_copy *c = arg;
    BENCH_CHECK(cudaMemcpyAsync(c->dst[i % 4], c->src[i % 4], c->bytes, cudaMemcpyDeviceToDevice,
                                0));
}

/* Device-to-device copy bandwidth in GB/s (1e9 bytes/s), counting bytes read plus bytes
 * written: 4 rotating pairs of 256 MiB buffers filled with random bytes, median of 50. */
static inline double bench_copy_gbps(void) {
    bench_copy c;
    c.bytes = (size_t)256 << 20;
    unsigned char *h = malloc(c.bytes);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < c.bytes; i += 8) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        memcpy(h + i, &s, 8);
    }
    for (int i = 0; i < 4; i++) {
        BENCH_CHECK(cudaMalloc(&c.src[i], c.bytes));
        BENCH_CHECK(cudaMalloc(&c.dst[i], c.bytes));
        BENCH_CHECK(cudaMemcpy(c.src[i], h, c.bytes, cudaMemcpyHostToDevice));
    }
    free(h);
    double us = bench_time_us(bench_copy_fn, &c, 5, 50);
    for (int i = 0; i < 4; i++) {
        BENCH_CHECK(cudaFree(c.src[i]));
        BENCH_CHECK(cudaFree(c.dst[i]));
    }
    return 2.0 * (double)c.bytes / (us * 1e-6) / 1e9;
}

/* Prints the device line every benchmark starts with; returns 0, or 77 without a device. */
static inline int bench_begin(const char *name) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
        printf("%s: no CUDA device: skipped\n", name);
        return 77;
    }
    struct cudaDeviceProp p;
    BENCH_CHECK(cudaGetDeviceProperties(&p, 0));
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    printf("%s: %s, %d SMs, %.1f GiB, L2 %.0f MiB, driver %d, runtime %d\n", name, p.name,
           p.multiProcessorCount, (double)p.totalGlobalMem / (1 << 30),
           (double)bench_l2_bytes() / (1 << 20), drv, rt);
    return 0;
}

/* Fills n bytes of device memory with pseudo-random bytes from seed (never all zero). */
static inline void bench_fill_random(void *dev, size_t n, uint64_t seed) {
    unsigned char *h = malloc(n ? n : 1);
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        h[i] = (unsigned char)(s >> 32);
    }
    BENCH_CHECK(cudaMemcpy(dev, h, n, cudaMemcpyHostToDevice));
    free(h);
}

#endif
