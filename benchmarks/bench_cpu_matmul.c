/* bench_cpu_matmul.c — CPU backend matmul on 4096×4096 weights at T = 1, 16 and 128; QW4 and
 * QW8 with f32 activations and then with int8 ones (rows marked "i8"), in the same run.
 *
 * Usage: bench_cpu_matmul [n_threads (0 = all)] [rows] [cols] [hot]
 * Prints the median time per call, the weight bytes read per second (codes/data plus scales
 * and offsets) and GFLOP/s, next to the read bandwidth of a plain streaming sum measured in the
 * same run on the same threads (the ceiling for a memory-bound decode step). Weights are cycled
 * through enough copies (>= 512 MiB) that every call reads them from memory, as a model's
 * layers would; `hot` keeps one copy instead (cache-resident when it fits: the compute ceiling).
 * The last column is the median CPU time per call of all threads together, which time spent
 * descheduled on a busy machine does not inflate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/pool.h"
#include "kernels/cpu/cpu.h"

#define COLD_BYTES (512ull << 20)
#define MAX_T 128

static int g_hot; /* 1: one copy of the weights, cache-resident when it fits (compute ceiling) */

typedef struct read_job {
    const uint64_t *p;
    int64_t n;
    uint64_t sums[64];
} read_job;

static void read_range(void *ctx, int64_t b, int64_t e, int tid) {
    read_job *j = ctx;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int64_t i = b * 1024; i < e * 1024; i += 4) {
        s0 += j->p[i];
        s1 ^= j->p[i + 1];
        s2 += j->p[i + 2];
        s3 ^= j->p[i + 3];
    }
    j->sums[tid & 63] += s0 + s1 + s2 + s3;
}

/* Streaming read bandwidth in GB/s with n_threads threads. */
static double read_bandwidth(int n_threads) {
    int64_t words = (int64_t)(COLD_BYTES / 8);
    uint64_t *buf = sl_xmalloc((size_t)words * 8);
    for (int64_t i = 0; i < words; i++) buf[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    sl_pool *pool = sl_pool_create(n_threads);
    read_job j = {.p = buf, .n = words};
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = sl_time_s();
        sl_pool_run(pool, read_range, &j, words / 1024, 1);
        double dt = sl_time_s() - t0;
        if (COLD_BYTES / dt / 1e9 > best) best = COLD_BYTES / dt / 1e9;
    }
    uint64_t s = 0;
    for (int i = 0; i < 64; i++) s += j.sums[i];
    if (s == 42) printf(" "); /* keep the sums alive */
    sl_pool_destroy(pool);
    free(buf);
    return best;
}

/* CPU seconds of the whole process (every thread): on a shared machine, time spent descheduled
 * does not count. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill(sl_qw *w, sl_rng *rng) {
    int64_t n = w->rows * sl_qw_row_bytes(w);
    uint8_t *p = w->data ? w->data : w->codes;
    for (int64_t i = 0; i < n; i += 8) {
        uint64_t v = sl_rng_u64(rng);
        if (w->fmt == SL_WF_F16) v &= 0x3BFF3BFF3BFF3BFFull; /* finite halves */
        if (w->fmt == SL_WF_BF16) v &= 0x3F7F3F7F3F7F3F7Full;
        if (w->fmt == SL_WF_F32) v &= 0x3F7FFFFF3F7FFFFFull;
        memcpy(p + i, &v, (size_t)(n - i < 8 ? n - i : 8));
    }
    if (w->scales) {
        int64_t ng = w->rows * (w->cols / w->group);
        for (int64_t i = 0; i < ng; i++) w->scales[i] = 1e-3f * (1 + sl_rng_f32(rng));
        if (w->offsets)
            for (int64_t i = 0; i < ng; i++) w->offsets[i] = -1e-2f * sl_rng_f32(rng);
    }
}

static void bench(sl_backend *be, sl_wfmt fmt, int group, int off, int i8, int64_t rows,
                  int64_t cols, const int *Ts, int nT) {
    sl_cpu_backend_set_int8_activations(be, i8);
    sl_rng rng;
    sl_rng_seed(&rng, 1);
    sl_qw w;
    sl_qw_alloc(&w, fmt, rows, cols, group, off);
    fill(&w, &rng);
    double bytes = (double)(rows * sl_qw_row_bytes(&w));
    if (w.scales) bytes += (double)(rows * (cols / group)) * 4 * (off ? 2 : 1);
    int copies = g_hot ? 1 : (int)(COLD_BYTES / bytes) + 1;
    sl_bweight **bw = sl_xmalloc((size_t)copies * sizeof *bw);
    for (int i = 0; i < copies; i++) SL_CHECK(be->weight_create(be, &w, 0, &bw[i]) == 0);
    sl_qw_free(&w);
    float *x = be->alloc(be, (size_t)(MAX_T * cols) * 4), *y = be->alloc(be, (size_t)(MAX_T * rows) * 4);
    for (int64_t i = 0; i < MAX_T * cols; i++) x[i] = sl_rng_f32(&rng) - 0.5f;
    char name[32];
    snprintf(name, sizeof name, "%s%s%s%s", sl_wfmt_name(fmt),
             group ? (group == 32 ? "/32" : group == 128 ? "/128" : "/16") : "", off ? "+off" : "",
             i8 ? " i8" : "");
    for (int ti = 0; ti < nT; ti++) {
        int T = Ts[ti];
        int batch = copies < 16 ? 16 : copies;
        for (int i = 0; i < copies; i++) be->matmul(be, bw[i], x, y, T); /* warm up */
        /* batches of calls cycling through the copies; the median batch's time per call */
        double per[64], cpu[64], t_all = sl_time_s();
        int nb = 0;
        while (nb < 64 && (nb < 5 || sl_time_s() - t_all < 0.5)) {
            double t0 = sl_time_s(), c0 = cpu_s();
            for (int i = 0; i < batch; i++) be->matmul(be, bw[i % copies], x, y, T);
            cpu[nb] = (cpu_s() - c0) / batch;
            per[nb++] = (sl_time_s() - t0) / batch;
        }
        qsort(per, (size_t)nb, sizeof *per, cmp_double);
        qsort(cpu, (size_t)nb, sizeof *cpu, cmp_double);
        double dt = per[nb / 2];
        printf("%-12s T=%-3d %9.3f ms  %7.2f GB/s  %8.2f GFLOP/s  %6.2f bits/weight  %9.3f cpu ms\n",
               name, T, dt * 1e3, bytes / dt / 1e9, 2.0 * rows * cols * T / dt / 1e9,
               bytes * 8 / (double)(rows * cols), cpu[nb / 2] * 1e3);
    }
    be->free(be, y);
    be->free(be, x);
    for (int i = 0; i < copies; i++) be->weight_destroy(be, bw[i]);
    free(bw);
}

int main(int argc, char **argv) {
    int n_threads = argc > 1 ? atoi(argv[1]) : 0;
    int64_t rows = argc > 2 ? atoll(argv[2]) : 4096, cols = argc > 3 ? atoll(argv[3]) : 4096;
    g_hot = argc > 4 && atoi(argv[4]);
    sl_backend *be = sl_cpu_backend_create(n_threads);
    sl_pool *probe = sl_pool_create(n_threads);
    int nt = sl_pool_threads(probe);
    sl_pool_destroy(probe);
    printf("bench_cpu_matmul: %lld x %lld, %d threads\n", (long long)rows, (long long)cols, nt);
    if (!g_hot) printf("streaming read bandwidth (same threads): %.2f GB/s\n", read_bandwidth(nt));
    static const int Ts[] = {1, 16, MAX_T};
    for (int i8 = 0; i8 < 2; i8++) {
        bench(be, SL_WF_QW4, 32, 0, i8, rows, cols, Ts, 3);
        bench(be, SL_WF_QW4, 32, 1, i8, rows, cols, Ts, 3);
        bench(be, SL_WF_QW8, 32, 0, i8, rows, cols, Ts, 3);
        bench(be, SL_WF_QW8, 16, 0, i8, rows, cols, Ts, 3);
    }
    bench(be, SL_WF_F16, 0, 0, 0, rows, cols, Ts, 2);
    bench(be, SL_WF_BF16, 0, 0, 0, rows, cols, Ts, 2);
    bench(be, SL_WF_F32, 0, 0, 0, rows, cols, Ts, 2);
    be->destroy(be);
    return 0;
}
