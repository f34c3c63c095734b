/* bench_cuda_matmul.c — the decode matmuls on a GPU: QW4/QW8 (qmm.cu) against cuBLAS F16 and
 * the device's copy bandwidth, both measured in the same run.
 *
 *   build/bench_cuda_matmul [--quick] [--table | --all-sweeps] | --profile
 *
 * --quick: 5 replays a median instead of 30; --table: the first table alone (no sweeps);
 * --all-sweeps: the plan sweeps for every form with f16 or two-level scales, not three.
 *
 * Llama-3-8B layer shapes (rows × cols: 4096×4096 q/o, 1024×4096 k/v, 14336×4096 gate/up,
 * 4096×14336 down) at 1, 2, 4, 8, 16, 32, 64 tokens. Each time is the median graph replay over
 * rotating weight copies (more than 3× L2 together, so repeats do not read from the cache),
 * divided by the calls in the graph (bench_cuda.h). GB/s counts the weight bytes (codes,
 * scales, offsets) plus x and y once; "% copy" compares that with the device-to-device copy;
 * "× F16" is cuBLAS F16's time (cublasGemmEx, f16 weights and x, f32 out and accumulate) over
 * ours on the same shape and T. Weights are random bytes in the physical layout (every byte
 * pattern is a valid weight; sizes here need no padding), scales random and never zero.
 * Then sweeps of the launch plan (matmul.h: warps per row tile × splits, flat plans, L2 prefetch) for
 * Q4_0's, Q4_K's and Q8_0's forms show what the launcher's defaults cost (each row ends with the
 * default plan's time, the fastest plan of the sweep and the ratio of the two); a last table times q+k+v and gate+up in one launch
 * (sl_cuda_qmm_multi) against one launch per weight.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "benchmarks/bench_cuda.h"
#include "kernels/cuda/matmul.h"

#define MAX_SETS 24

typedef struct shape {
    const char *name;
    int64_t rows, cols;
} shape;

static const shape g_shapes[] = {
    {"q/o 4096x4096", 4096, 4096},
    {"k/v 1024x4096", 1024, 4096},
    {"gate/up 14336x4096", 14336, 4096},
    {"down 4096x14336", 4096, 14336},
};
/* 32 tokens (one launch's most) and 64 (two launches, each reading the weight) against cuBLAS
 * reading the f16 weight once */
static const int g_Ts[] = {1, 2, 4, 8, 16, 32, 64};
#define N_TS (int)(sizeof g_Ts / sizeof *g_Ts)
#define MAX_BT 64 /* the most tokens benchmarked */

typedef struct qcase {
    sl_cuda_qmat w[MAX_SETS];
    int nsets, T;
    sl_qmm_plan plan; /* {0, 0, 0}: the default for T */
    const uint16_t *x16; /* f16 x, as cuBLAS gets it */
    float *y;
} qcase;

static void qmm_fn(void *arg, int i, cudaStream_t s) {
    qcase *c = arg;
    sl_cuda_qmm_f16(&c->w[i % c->nsets], c->x16, c->y, c->T, c->plan, (sl_cuda_stream)s);
}

/* a group of weights on one x (q/k/v, gate/up): separately, or in one launch */
typedef struct gcase {
    sl_cuda_qmat *w[3]; /* each member's nsets copies */
    int n, nsets, T, grouped;
    sl_qmm_plan plan; /* the grouped launch's ({0, 0, 0}: the default for T) */
    const uint16_t *x16;
    float *y[3];
} gcase;

static void group_fn(void *arg, int i, cudaStream_t s) {
    gcase *c = arg;
    const sl_cuda_qmat *ws[3];
    for (int j = 0; j < c->n; j++) ws[j] = &c->w[j][i % c->nsets];
    if (c->grouped) {
        sl_cuda_qmm_multi_f16(ws, c->n, c->x16, c->y, c->T, c->plan, (sl_cuda_stream)s);
    } else {
        for (int j = 0; j < c->n; j++)
            sl_cuda_qmm_f16(ws[j], c->x16, c->y[j], c->T, (sl_qmm_plan){0, 0, 0, 0, 0}, (sl_cuda_stream)s);
    }
}

typedef struct fcase {
    uint16_t *w[MAX_SETS];
    int nsets, T;
    int64_t rows, cols;
    const uint16_t *x16;
    float *y;
} fcase;

static void f16_fn(void *arg, int i, cudaStream_t s) {
    fcase *c = arg;
    sl_cuda_gemm_f16(c->w[i % c->nsets], c->x16, c->y, c->T, c->rows, c->cols, (sl_cuda_stream)s);
}

static float *random_floats(int64_t n, float scale, uint64_t seed) {
    float *h = malloc((size_t)n * sizeof(float));
    uint64_t s = seed | 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        float u = (float)(s >> 40) / (float)(1 << 24); /* [0, 1) */
        h[i] = (0.1f + 0.9f * u) * ((s & 1) ? scale : -scale);
    }
    return h;
}

/* n random scales of sb bytes each (f32, f16, or 1: two-level's int8 multipliers) on the device */
static void *dev_scales(int64_t n, int sb, float scale, uint64_t seed) {
    float *h = random_floats(n, scale, seed);
    uint16_t *h16 = sb == 2 ? malloc((size_t)n * 2) : NULL;
    for (int64_t i = 0; h16 && i < n; i++) h16[i] = sl_f32_to_fp16(h[i]);
    if (sb == 1)
        for (int64_t i = 0; i < n; i++) ((int8_t *)h)[i] = (int8_t)(fabsf(h[i]) / scale * 63.0f); /* 6..63 */
    void *d = NULL;
    BENCH_CHECK(cudaMalloc(&d, (size_t)n * sb));
    BENCH_CHECK(cudaMemcpy(d, h16 ? (void *)h16 : (void *)h, (size_t)n * sb, cudaMemcpyHostToDevice));
    free(h), free(h16);
    return d;
}

static size_t qmat_bytes(const sl_cuda_qmat *w, int offsets) {
    return (size_t)w->row_tiles * w->k_tiles * 512 +
           (size_t)w->row_tiles * w->g_pad * 16 * w->scale_bytes * (offsets ? 2 : 1) +
           sl_cuda_qmat_factor_bytes(w);
}

/* nsets random weights of one format and shape (the first random, the rest its copies) */
static int make_qmats(sl_cuda_qmat *w, sl_wfmt fmt, int group, int offsets, int sb,
                      const shape *sh) {
    sl_cuda_qmat q = {0};
    q.fmt = fmt;
    q.scale_bytes = sb;
    q.rows = sh->rows;
    q.cols = sh->cols;
    q.group = group;
    q.row_tiles = sh->rows / 16;
    q.k_tiles = sh->cols / sl_cuda_qmat_ktile(fmt);
    q.g_pad = sh->cols / group;
    q.offsets = offsets ? (void *)&q : NULL; /* for sl_cuda_qmat_factor_bytes; replaced below */
    const size_t fb = sl_cuda_qmat_factor_bytes(&q);
    const size_t bytes = qmat_bytes(&q, offsets), cb = (size_t)q.row_tiles * q.k_tiles * 512;
    const int64_t ns = q.row_tiles * q.g_pad * 16;
    int nsets = (int)ceil(3.0 * (double)bench_l2_bytes() / (double)bytes);
    nsets = nsets < 2 ? 2 : nsets > MAX_SETS ? MAX_SETS : nsets;
    for (int i = 0; i < nsets; i++) {
        w[i] = q;
        BENCH_CHECK(cudaMalloc(&w[i].codes, cb));
        if (i == 0) {
            bench_fill_random(w[i].codes, cb, 0x5eed + (uint64_t)sh->rows);
            w[i].scales = dev_scales(ns, sb, 0.02f, 7);
            w[i].offsets = offsets ? dev_scales(ns, sb, 0.1f, 11) : NULL;
            /* two-level: f16 factors, as K-quants' d and dmin */
            w[i].factors = fb ? dev_scales((int64_t)fb / 2, 2, 0.001f, 13) : NULL;
        } else {
            BENCH_CHECK(cudaMemcpy(w[i].codes, w[0].codes, cb, cudaMemcpyDeviceToDevice));
            BENCH_CHECK(cudaMalloc(&w[i].scales, (size_t)ns * sb));
            BENCH_CHECK(cudaMemcpy(w[i].scales, w[0].scales, (size_t)ns * sb, cudaMemcpyDeviceToDevice));
            w[i].offsets = NULL;
            w[i].factors = NULL;
            if (fb) {
                BENCH_CHECK(cudaMalloc(&w[i].factors, fb));
                BENCH_CHECK(cudaMemcpy(w[i].factors, w[0].factors, fb, cudaMemcpyDeviceToDevice));
            }
            if (offsets) {
                BENCH_CHECK(cudaMalloc(&w[i].offsets, (size_t)ns * sb));
                BENCH_CHECK(cudaMemcpy(w[i].offsets, w[0].offsets, (size_t)ns * sb,
                                       cudaMemcpyDeviceToDevice));
            }
        }
    }
    return nsets;
}

static void free_qmats(sl_cuda_qmat *w, int n) {
    for (int i = 0; i < n; i++) {
        BENCH_CHECK(cudaFree(w[i].codes));
        BENCH_CHECK(cudaFree(w[i].scales));
        BENCH_CHECK(cudaFree(w[i].offsets));
        BENCH_CHECK(cudaFree(w[i].factors));
    }
}

/* x for every shape: MAX_BT tokens × 14336 columns of random f16 (|x| in [0.1, 1)), 16-byte aligned */
static uint16_t *make_x16(void) {
    const int n = MAX_BT * 14336;
    uint16_t *x16, *h = malloc((size_t)n * 2);
    float *f = random_floats(n, 1.0f, 5);
    for (int i = 0; i < n; i++) {
        /* f32 -> f16 bits by truncation: these values are normal in f16 */
        uint32_t b;
        memcpy(&b, &f[i], 4);
        const int e = (int)((b >> 23) & 0xff) - 127 + 15;
        h[i] = (uint16_t)(((b >> 16) & 0x8000) | ((uint32_t)e << 10) | ((b >> 13) & 0x3ff));
    }
    BENCH_CHECK(cudaMalloc((void **)&x16, (size_t)n * 2));
    BENCH_CHECK(cudaMemcpy(x16, h, (size_t)n * 2, cudaMemcpyHostToDevice));
    free(h), free(f);
    return x16;
}

/* cuBLAS F16 microseconds for every shape and T: f16us[shape][T index] */
static void bench_f16(double f16us[4][N_TS], int reps, const uint16_t *x16, float *y) {
    for (int si = 0; si < 4; si++) {
        const shape *sh = &g_shapes[si];
        fcase c = {.rows = sh->rows, .cols = sh->cols, .x16 = x16, .y = y};
        const size_t wb = (size_t)sh->rows * sh->cols * 2;
        c.nsets = (int)ceil(3.0 * (double)bench_l2_bytes() / (double)wb);
        c.nsets = c.nsets < 2 ? 2 : c.nsets > MAX_SETS ? MAX_SETS : c.nsets;
        for (int i = 0; i < c.nsets; i++) {
            BENCH_CHECK(cudaMalloc((void **)&c.w[i], wb));
            if (i == 0) {
                /* random f16 weights in ±[0.1, 1)·0.05 */
                uint16_t *h = malloc(wb);
                uint64_t s = 0x77;
                for (size_t k = 0; k < wb / 2; k++) {
                    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                    h[k] = (uint16_t)(0x2800 | (s & 0x83ff)); /* |w| in [2^-5, 2^-4), random sign */
                }
                BENCH_CHECK(cudaMemcpy(c.w[0], h, wb, cudaMemcpyHostToDevice));
                free(h);
            } else {
                BENCH_CHECK(cudaMemcpy(c.w[i], c.w[0], wb, cudaMemcpyDeviceToDevice));
            }
        }
        for (int ti = 0; ti < N_TS; ti++) {
            c.T = g_Ts[ti];
            f16us[si][ti] = bench_graph_us(f16_fn, &c, c.nsets * 2, reps);
        }
        for (int i = 0; i < c.nsets; i++) BENCH_CHECK(cudaFree(c.w[i]));
    }
}

/* --profile: a few plain launches for a profiler (scripts/gpu-check.sh runs ncu on them): QW4
 * g32 with f16 scales, gate/up, default plan, 1, 16 and 32 tokens, two launches each */
static int profile_run(void) {
    uint16_t *x16 = make_x16();
    float *y;
    BENCH_CHECK(cudaMalloc((void **)&y, (size_t)MAX_BT * 14336 * sizeof(float)));
    static sl_cuda_qmat w[MAX_SETS];
    const int n = make_qmats(w, SL_WF_QW4, 32, 0, 2, &g_shapes[2]);
    for (int T = 1; T <= 32; T = T == 1 ? 16 : 2 * T)
        for (int i = 0; i < 2; i++) sl_cuda_qmm_f16(&w[i], x16, y, T, (sl_qmm_plan){0, 0, 0, 0, 0}, NULL);
    BENCH_CHECK(cudaDeviceSynchronize());
    free_qmats(w, n);
    BENCH_CHECK(cudaFree(x16));
    BENCH_CHECK(cudaFree(y));
    printf("profile launches done\n");
    return 0;
}

/* a plan as the tables print it: warps per row tile × splits, "flat" and its blocks per SM, or
 * "default"; then "pf" and the tiles of L2 prefetch, if any */
static const char *plan_name(sl_qmm_plan p, char buf[24]) {
    int n;
    if (p.flat) n = snprintf(buf, 24, "flat %d", p.flat);
    else if (p.warps_per_tile == 0) n = snprintf(buf, 24, "default");
    else n = snprintf(buf, 24, "%d×%d", p.warps_per_tile, p.splits);
    if (p.prefetch && n > 0 && n < 24) snprintf(buf + n, 24 - (size_t)n, " pf%d", p.prefetch);
    return buf;
}

int main(int argc, char **argv) {
    int quick = 0, table_only = 0, all_sweeps = 0, profile = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--table") == 0) table_only = 1;
        else if (strcmp(argv[i], "--all-sweeps") == 0) all_sweeps = 1;
        else if (strcmp(argv[i], "--profile") == 0) profile = 1;
        else profile = 2; /* unknown */
    }
    if (profile > 1 || (table_only && all_sweeps) || (profile && argc > 2)) {
        fprintf(stderr, "usage: bench_cuda_matmul [--quick] [--table | --all-sweeps] | --profile\n");
        return 2;
    }
    int rc = bench_begin("bench_cuda_matmul");
    if (rc) return rc;
    if (profile) return profile_run();
    const int reps = quick ? 5 : 30;
    const double copy = bench_copy_gbps();
    printf("device-to-device copy: %.0f GB/s (read + write)\n\n", copy);

    uint16_t *x16 = make_x16();
    float *y;
    BENCH_CHECK(cudaMalloc((void **)&y, (size_t)MAX_BT * 14336 * sizeof(float)));
    double f16us[4][N_TS];
    bench_f16(f16us, reps, x16, y);

    /* f16 scales ("f16s") are what Q4_0, Q4_1, Q8_0 and the load-time quantization (int4:
     * g32 or g128 with offsets) give, two-level ones ("i8s": int8 × f16 per 256 columns) what
     * the K-quants give (Q4_K: QW4 g32+off, Q6_K: QW8 g16, Q5_K: QW8 g32+off); f32 scales are
     * the fallback (a quantized group too small for a normal f16 scale) */
    static const struct { sl_wfmt fmt; int group, offsets, sb; const char *name; } fmts[] = {
        {SL_WF_QW4, 32, 0, 2, "QW4 g32 f16s"},
        {SL_WF_QW4, 32, 0, 4, "QW4 g32"},
        {SL_WF_QW4, 32, 1, 1, "QW4 g32+off i8s"},
        {SL_WF_QW4, 32, 1, 2, "QW4 g32+off f16s"},
        {SL_WF_QW4, 128, 1, 2, "QW4 g128+off f16s"},
        {SL_WF_QW8, 32, 0, 2, "QW8 g32 f16s"},
        {SL_WF_QW8, 16, 0, 1, "QW8 g16 i8s"},
        {SL_WF_QW8, 32, 0, 4, "QW8 g32"},
    };
    const int nf = (int)(sizeof fmts / sizeof *fmts);
    static qcase c;
    /* "bytes ÷": F16's bytes over ours, the speed-up over F16 at equal GB/s */
    printf("| format | shape | T | µs | GB/s | %% copy | × F16 | bytes ÷ | F16 µs | F16 GB/s | plan |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int fi = 0; fi < nf; fi++)
        for (int si = 0; si < 4; si++) {
            const shape *sh = &g_shapes[si];
            c.nsets = make_qmats(c.w, fmts[fi].fmt, fmts[fi].group, fmts[fi].offsets, fmts[fi].sb, sh);
            c.x16 = x16, c.y = y, c.plan = (sl_qmm_plan){0, 0, 0, 0, 0};
            for (int ti = 0; ti < N_TS; ti++) {
                c.T = g_Ts[ti];
                const sl_qmm_plan dp = sl_cuda_qmm_default_plan(&c.w[0], c.T);
                const double us = bench_graph_us(qmm_fn, &c, c.nsets * 2, reps);
                const double act = (double)c.T * (sh->cols + sh->rows) * 4;
                const double ourb = (double)qmat_bytes(&c.w[0], fmts[fi].offsets) + act, gbs = ourb / (us * 1e3);
                const double f16b = (double)sh->rows * sh->cols * 2 + (double)c.T * (sh->cols * 2 + sh->rows * 4);
                char pn[24];
                printf("| %s | %s | %d | %.2f | %.0f | %.1f | %.2f | %.2f | %.2f | %.0f | %s |\n",
                       fmts[fi].name, sh->name, c.T, us, gbs, 100.0 * gbs / copy,
                       f16us[si][ti] / us, f16b / ourb, f16us[si][ti], f16b / (f16us[si][ti] * 1e3),
                       plan_name(dp, pn));
                fflush(stdout);
            }
            free_qmats(c.w, c.nsets);
        }
    if (table_only) {
        BENCH_CHECK(cudaFree(x16));
        BENCH_CHECK(cudaFree(y));
        return 0;
    }

    /* the plan: Q4_0's, Q4_K's and Q8_0's forms (--all-sweeps: also Q4_1's, g128's, Q6_K's) at
     * 1 to 32 tokens, warps per row tile × splits (as they run: two-level QW4 splits in whole
     * 256-column blocks, fewer where that needs fewer), flat plans by blocks per SM, and the
     * default and flat 4 with L2 prefetch ("pf": tiles of a warp's run it prefetches as it
     * starts; 64 is every run's whole rest here); "default" is the launcher's plan for T, "any
     * T" its plan in batch-invariant mode */
    static const sl_qmm_plan plans[] = {
        {1, 1, 0, 0, 0},  {2, 1, 0, 0, 0},  {4, 1, 0, 0, 0},  {8, 1, 0, 0, 0},  {1, 2, 0, 0, 0},
        {2, 2, 0, 0, 0},  {4, 2, 0, 0, 0},  {8, 2, 0, 0, 0},  {1, 4, 0, 0, 0},  {2, 4, 0, 0, 0},
        {4, 4, 0, 0, 0},  {1, 8, 0, 0, 0},  {2, 8, 0, 0, 0},  {1, 16, 0, 0, 0}, {2, 16, 0, 0, 0},
        {0, 0, 0, 2, 0},  {0, 0, 0, 3, 0},  {0, 0, 0, 4, 0},  {0, 0, 0, 0, 4},  {0, 0, 0, 0, 16},
        {0, 0, 0, 0, 64}, {0, 0, 0, 4, 16}, {0, 0, 0, 4, 64}};
    const int np = (int)(sizeof plans / sizeof *plans);
    static const int sweep_Ts[] = {1, 4, 8, 16, 32};
    static const int sweep_fmts[] = {0, 2, 5, 3, 4, 6}; /* indexes into fmts */
    for (int sf = 0; sf < (all_sweeps ? 6 : 3); sf++) {
        const int fi = sweep_fmts[sf];
        printf("\nplan sweep (warps per row tile × splits), %s: µs (%% copy)\n\n| shape | T | default | any T |",
               fmts[fi].name);
        char pn[24], pn2[24];
        for (int i = 0; i < np; i++) printf(" %s |", plan_name(plans[i], pn));
        printf(" default µs | best | default ÷ best |\n|---|---|---|---|");
        for (int i = 0; i < np + 3; i++) printf("---|");
        printf("\n");
        for (int si = 0; si < 4; si++) {
            const shape *sh = &g_shapes[si];
            c.nsets = make_qmats(c.w, fmts[fi].fmt, fmts[fi].group, fmts[fi].offsets, fmts[fi].sb, sh);
            const sl_qmm_plan ap = sl_cuda_qmm_default_plan(&c.w[0], 0);
            for (size_t ti = 0; ti < sizeof sweep_Ts / sizeof *sweep_Ts; ti++) {
                const int T = c.T = sweep_Ts[ti];
                const sl_qmm_plan dp = sl_cuda_qmm_default_plan(&c.w[0], T);
                printf("| %s | %d | %s | %s |", sh->name, T, plan_name(dp, pn), plan_name(ap, pn2));
                double best = 0;
                int bi = 0;
                for (int i = 0; i < np; i++) {
                    c.plan = plans[i];
                    const double us = bench_graph_us(qmm_fn, &c, c.nsets * 2, reps);
                    const double gbs = ((double)qmat_bytes(&c.w[0], fmts[fi].offsets) +
                                        (double)T * (sh->cols + sh->rows) * 4) / (us * 1e3);
                    printf(" %.2f (%.0f) |", us, 100.0 * gbs / copy);
                    if (i == 0 || us < best) best = us, bi = i;
                }
                /* the default plan itself (its splits need not be one of the sweep's), and the
                 * fastest of the sweep: what a better default would gain */
                c.plan = (sl_qmm_plan){0, 0, 0, 0, 0};
                const double dus = bench_graph_us(qmm_fn, &c, c.nsets * 2, reps);
                printf(" %.2f | %s | %.2f |\n", dus, plan_name(plans[bi], pn), dus / best);
                fflush(stdout);
            }
            free_qmats(c.w, c.nsets);
            c.plan = (sl_qmm_plan){0, 0, 0, 0, 0};
        }
    }

    /* grouped launches (sl_cuda_qmm_multi, what the CUDA backend runs for q/k/v and gate/up)
     * against one launch per weight, QW4 g32 f16 scales */
    printf("\ngrouped weights on one x, QW4 g32 f16 scales: one launch per weight vs one for all\n\n");
    printf("| group | T | separate µs | grouped µs | speed-up | grouped %% copy |\n|---|---|---|---|---|---|\n");
    static const struct { const char *name; int n, shape[3]; } groups[] = {
        {"q+k+v 4096+1024+1024 x 4096", 3, {0, 1, 1}},
        {"gate+up 2 x 14336 x 4096", 2, {2, 2, 2}},
    };
    static sl_cuda_qmat gw[3][MAX_SETS];
    static const int group_Ts[] = {1, 8, 32};
    static char sweeps[2][3][1536]; /* each group's launch by T and plan, printed after the table */
    for (int gi = 0; gi < 2; gi++) {
        gcase g = {.n = groups[gi].n, .x16 = x16};
        size_t bytes = 0;
        int64_t rows = 0;
        int ns[3];
        g.nsets = MAX_SETS;
        for (int j = 0; j < g.n; j++) {
            const shape *sh = &g_shapes[groups[gi].shape[j]];
            ns[j] = make_qmats(gw[j], SL_WF_QW4, 32, 0, 2, sh);
            g.nsets = ns[j] < g.nsets ? ns[j] : g.nsets; /* the group's copies rotate together */
            g.w[j] = gw[j];
            bytes += qmat_bytes(&gw[j][0], 0);
            rows += sh->rows;
        }
        for (int T = 1; T <= 32; T *= T == 1 ? 8 : 4) {
            g.T = T;
            int64_t at = 0;
            for (int j = 0; j < g.n; j++) g.y[j] = y + at, at += (int64_t)T * g_shapes[groups[gi].shape[j]].rows;
            g.grouped = 0;
            const double sep = bench_graph_us(group_fn, &g, g.nsets * 2, reps);
            g.grouped = 1;
            const double one = bench_graph_us(group_fn, &g, g.nsets * 2, reps);
            const double gbs = ((double)bytes + (double)T * (4096 + rows) * 4) / (one * 1e3);
            printf("| %s | %d | %.2f | %.2f | %.2f | %.1f |\n", groups[gi].name, T, sep, one,
                   sep / one, 100.0 * gbs / copy);
            fflush(stdout);
        }
        /* the grouped launch by plan at 1, 8 and 32 tokens: µs per plan of the sweep above */
        g.grouped = 1;
        for (int ti = 0; ti < 3; ti++) {
            g.T = group_Ts[ti];
            int64_t at = 0;
            for (int j = 0; j < g.n; j++) g.y[j] = y + at, at += (int64_t)g.T * g_shapes[groups[gi].shape[j]].rows;
            char *sw = sweeps[gi][ti];
            sw[0] = '\0';
            for (int i = 0; i < np; i++) {
                g.plan = plans[i];
                const size_t used = strlen(sw);
                char pn[24];
                snprintf(sw + used, sizeof sweeps[gi][ti] - used, " %s %.2f;", plan_name(plans[i], pn),
                         bench_graph_us(group_fn, &g, g.nsets * 2, reps));
            }
        }
        g.plan = (sl_qmm_plan){0, 0, 0, 0, 0};
        for (int j = 0; j < g.n; j++) free_qmats(gw[j], ns[j]);
    }
    for (int gi = 0; gi < 2; gi++)
        for (int ti = 0; ti < 3; ti++)
            printf("\n%s, grouped, %d tokens, µs by plan:%s\n", groups[gi].name, group_Ts[ti],
                   sweeps[gi][ti]);
    BENCH_CHECK(cudaFree(x16));
    BENCH_CHECK(cudaFree(y));
    return 0;
}
