/* test_cuda_matmul.c — the QW8/QW4 decode matmul (qmm.cu) and the cuBLAS F16 matmul
 * (gemm_f16.cu) against the reference dequantization (sl_qw_dequant_row) in double precision,
 * and the repack's round trip (test_cuda_harness.h: emulated in CI, natively on a GPU).
 *
 * Tolerance, per output: the kernel takes x in f16 (sl_cuda_qmm_f16), checked against the
 * reference on the same f16 values with |got − ref| <= 2e-5·Σ|w_k·x_k| (f32 accumulation only);
 * sl_cuda_qmm rounds f32 x to f16 first, each product moving by at most 2^-11 of |w·x|, so
 * (2^-11 + 2e-5)·Σ|w·x| against the reference on the f32 x. A wrong layout, scale or offset is
 * off by O(Σ|w·x|).
 */
#include "kernels/cuda/matmul.h"
#include "tests/kernels/test_cuda_harness.h"
#ifdef SL_TEST_EMU
#include "kernels/emu/emu.h" /* what the emulated kernels prefetched */
#endif

/* the scales and offsets random_qw makes: any f32 values; exactly f16 values (as GGUF's
 * Q4_0/Q8_0 give), which the repack stores as f16; or two-level ones, an f16 factor per row and
 * 256 columns times int8 multipliers (as the K-quants give), stored so where the layout allows */
enum { SCALES_F32, SCALES_F16, SCALES_TWO_LEVEL };
static int g_scales;

/* one scale or offset of about amp: f factor of its 256 columns (two-level; multipliers
 * -128..127, never 0, or 1..127 when unsigned, as QW4's must be) */
static float scale_value(float amp, float f, int unsigned_q) {
    if (g_scales == SCALES_TWO_LEVEL) {
        if (unsigned_q) return f * (float)(1 + (int)(sl_rng_u64(&g_rng) % 127));
        int q = (int)(sl_rng_u64(&g_rng) % 255) - 127;
        return f * (float)(q ? q : -128);
    }
    const float v = rnd() * amp;
    return g_scales == SCALES_F16 ? sl_fp16_to_f32(sl_f32_to_fp16(v)) : v;
}

/* A random QW weight: codes over their whole range, scales and offsets never zero. */
static void random_qw(sl_qw *w, sl_wfmt fmt, int rows, int cols, int group, int offsets) {
    sl_qw_alloc(w, fmt, rows, cols, group, offsets);
    const int64_t n = (int64_t)rows * cols, bytes = fmt == SL_WF_QW8 ? n : n / 2;
    for (int64_t i = 0; i < bytes; i++) ((uint8_t *)w->codes)[i] = (uint8_t)sl_rng_u64(&g_rng);
    float fs = 0, fo = 0; /* two-level: the factors of the current 256 columns */
    for (int64_t g = 0; g < n / group; g++) {
        if ((g * group) % cols % 256 < group) { /* a row's next 256 columns: factors of any sign */
            fs = sl_fp16_to_f32(sl_f32_to_fp16((1.0f + fabsf(rnd())) * (rnd() < 0 ? -0.0002f : 0.0002f)));
            fo = sl_fp16_to_f32(sl_f32_to_fp16((1.0f + fabsf(rnd())) * (rnd() < 0 ? -0.001f : 0.001f)));
        }
        w->scales[g] = scale_value(0.03f, fs, fmt == SL_WF_QW4);
        if (offsets) w->offsets[g] = scale_value(0.2f, fo, fmt == SL_WF_QW4);
    }
}

/* the scale width the repack picks for random_qw's weights (matmul.h) */
static int want_scale_bytes(sl_wfmt fmt, int cols, int group, int offsets) {
    if (g_scales == SCALES_F16) return 2;
    if (g_scales == SCALES_TWO_LEVEL && group <= sl_cuda_qmat_ktile(fmt) && cols % 256 == 0 &&
        (fmt == SL_WF_QW8 || offsets))
        return 1;
    return 4;
}

/* ref[T][rows] in double and bound[T][rows] = Σ|w·x|, from the dequantized rows */
static void reference(const sl_qw *w, const float *x, int T, double *ref, double *bound) {
    float *row = sl_xmalloc((size_t)w->cols * sizeof(float));
    for (int64_t r = 0; r < w->rows; r++) {
        sl_qw_dequant_row(w, r, row);
        for (int t = 0; t < T; t++) {
            double s = 0, b = 0;
            for (int64_t k = 0; k < w->cols; k++) {
                double p = (double)row[k] * x[(int64_t)t * w->cols + k];
                s += p;
                b += fabs(p);
            }
            ref[(int64_t)t * w->rows + r] = s;
            bound[(int64_t)t * w->rows + r] = b;
        }
    }
    free(row);
}

static void check_bound(const char *what, const float *got, const double *ref, const double *bound,
                        int64_t n, double rel) {
    for (int64_t i = 0; i < n; i++) {
        g_checks++;
        double d = fabs((double)got[i] - ref[i]), tol = rel * bound[i] + 1e-30;
        if (!(d <= tol)) {
            fprintf(stderr, "%s: element %lld: got %.9g, want %.9g (diff %.3g, tol %.3g)\n", what,
                    (long long)i, got[i], ref[i], d, tol);
            abort();
        }
    }
}

/* Plans: {0, 0, 1} is the default for any T (batch invariance), {0, 0, 0, 0, 5} the default for
 * the launch's T with prefetch (without: the f32 entry point below); the others each
 * warps_per_tile with one split, several, and more than there are column tiles, and flat ones
 * (1 and 3 blocks per SM: with the emulator's SM count, the pool's threads, 2 in CI, several
 * tiles a warp and row tiles in pieces, then fewer); some with L2 prefetch (the last field:
 * tiles of a warp's run past the ring's first, the emulator checking each range); the first 5
 * (what the shorter runs take) include both defaults, splits, a flat plan and prefetch. */
static const sl_qmm_plan g_plans[] = {{0, 0, 1, 0, 0}, {0, 0, 0, 0, 5}, {2, 3, 0, 0, 0}, {8, 2, 0, 0, 2},
                                      {0, 0, 0, 1, 4}, {1, 1000, 0, 0, 0}, {1, 1, 0, 0, 9}, {2, 1, 0, 0, 0},
                                      {4, 1, 0, 0, 0}, {8, 1, 0, 0, 0}, {1, 2, 0, 0, 1}, {4, 1000, 0, 0, 0},
                                      {0, 0, 0, 3, 0}};
#define N_PLANS (int)(sizeof g_plans / sizeof *g_plans)

/* One weight, several T and plans; returns after checking every output. */
static void qmm_case(sl_wfmt fmt, int rows, int cols, int group, int offsets, const int *Ts,
                     int nT, int nplans, int off) {
    sl_qw w;
    random_qw(&w, fmt, rows, cols, group, offsets);
    sl_cuda_qmat q;
    ASSERT_EQ(sl_cuda_qmat_init(&q, &w), 0);
    ASSERT_EQ(q.scale_bytes, want_scale_bytes(fmt, cols, group, offsets)); /* none changes a value */
    for (int ti = 0; ti < nT; ti++) {
        const int T = Ts[ti];
        const int64_t nx = (int64_t)T * cols, ny = (int64_t)T * rows;
        float *x = rnd_vec(nx, 1.0f), *xr = sl_xmalloc((size_t)nx * sizeof(float));
        uint16_t *x16 = sl_xmalloc((size_t)(nx + 1) * sizeof(uint16_t));
        for (int64_t i = 0; i < nx; i++) xr[i] = sl_fp16_to_f32(x16[i] = sl_f32_to_fp16(x[i]));
        double *ref = sl_xmalloc((size_t)ny * sizeof(double)), *bound = sl_xmalloc((size_t)ny * sizeof(double));
        reference(&w, xr, T, ref, bound);
        dbuf dx16 = dev_from(x16, (nx + 1) / 2, 0);
        float *got = sl_xmalloc((size_t)ny * sizeof(float)), *first = sl_xmalloc((size_t)ny * sizeof(float));
        char what[160];
        for (int pi = 0; pi < nplans; pi++) {
            const sl_qmm_plan plan = g_plans[pi];
            dbuf dy = dev_alloc(ny, off);
            sl_cuda_qmm_f16(&q, (const uint16_t *)dx16.p, dy.p, T, plan, NULL);
            snprintf(what, sizeof what, "qmm %s%s g%d %d-byte scales %dx%d T=%d plan %d×%d flat %d pf %d%s",
                     sl_wfmt_name(fmt), offsets ? "+offsets" : "", group, q.scale_bytes, rows,
                     cols, T, plan.warps_per_tile, plan.splits, plan.flat, plan.prefetch,
                     plan.any_batch ? " any batch" : "");
            dev_get(&dy, got);
            check_bound(what, got, ref, bound, ny, 2e-5);
            dev_check_guards(&dy, what);
            if (pi == 0 || plan.flat) { /* the default for any T and flat plans: deterministic,
                                         * and a token's bits alone */
                memcpy(first, got, (size_t)ny * sizeof(float));
                sl_cuda_qmm_f16(&q, (const uint16_t *)dx16.p, dy.p, T, plan, NULL);
                dev_get(&dy, got);
                check_bits(what, got, first, ny, 4);
                dbuf d1 = dev_alloc(rows, off);
                for (int t = 0; t < T; t += T > 4 ? T - 1 : 1) {
                    /* token t alone (its row of x16 copied to an aligned buffer) */
                    dbuf dxt = dev_from(x16 + (int64_t)t * cols, (cols + 1) / 2, 0);
                    sl_cuda_qmm_f16(&q, (const uint16_t *)dxt.p, d1.p, 1, plan, NULL);
                    dev_get(&d1, got);
                    check_bits(what, got, first + (int64_t)t * rows, rows, 4);
                    dev_free(&dxt);
                }
                dev_free(&d1);
            }
            dev_free(&dy);
        }
        /* the f32 entry point: x rounded to f16 inside */
        double *ref32 = sl_xmalloc((size_t)ny * sizeof(double));
        reference(&w, x, T, ref32, bound);
        dbuf dx = dev_from(x, nx, off), dy = dev_alloc(ny, off);
        sl_cuda_qmm(&q, dx.p, dy.p, T, (sl_qmm_plan){0, 0, 0, 0, 0}, NULL);
        dev_get(&dy, got);
        snprintf(what, sizeof what, "qmm f32 x %s%s g%d %dx%d T=%d", sl_wfmt_name(fmt),
                 offsets ? "+offsets" : "", group, rows, cols, T);
        check_bound(what, got, ref32, bound, ny, 0x1p-11 + 2e-5);
        dev_check_guards(&dy, what);
        dev_free(&dx), dev_free(&dy), dev_free(&dx16);
        free(x), free(xr), free(x16), free(ref), free(ref32), free(bound), free(got), free(first);
    }
    sl_cuda_qmat_deinit(&q);
    sl_qw_free(&w);
}

/* The default plans' rule (qmm.cu's plan_for): up to 8 tokens, 8 warps per row tile without
 * splits on a tall QW4 weight (the fastest measured at 1 token); past 8 tokens, and for any T
 * (any_batch), one plan per shape, which for a tall weight differs from the first. A
 * descriptor alone: the plan reads its shape and format. */
static void test_default_plan(void) {
    sl_cuda_qmat tall = {.fmt = SL_WF_QW4, .rows = (int64_t)16 << 20, .cols = 4096,
                         .group = 32, .row_tiles = 1 << 20, .k_tiles = 64, .scale_bytes = 2};
    const sl_qmm_plan any = sl_cuda_qmm_default_plan(&tall, 0);
    ASSERT(any.warps_per_tile != 8 || any.splits != 1);
    for (int T = 1; T <= 40; T++) {
        const sl_qmm_plan p = sl_cuda_qmm_default_plan(&tall, T);
        if (T <= 8) ASSERT(p.warps_per_tile == 8 && p.splits == 1);
        else ASSERT(p.warps_per_tile == any.warps_per_tile && p.splits == any.splits);
    }
    g_checks++;
}

static void test_qmm(void) {
    /* each side of the 8-token column tiles (NT 1, 2, 4) and odd counts */
    static const int Ts[] = {1, 2, 5, 8, 9, 16, 17, 32};
    static const int Ts_f16[] = {1, 9, 17}; /* other widths: only how scales load differs */
    const sl_wfmt fmts[] = {SL_WF_QW4, SL_WF_QW8};
    static const int groups[] = {16, 32, 128};
    int cases = 0;
    /* first: 16 tokens with 2 warps per row tile, the launch the first H100 run refused while
     * the kernel staged x in shared memory without the opt-in past 48 KiB (any first launch of
     * an instantiation must work on its own) */
    static const int T16[] = {16};
    qmm_case(SL_WF_QW4, 70, 256, 32, 0, T16, 1, 3, 0);
    cases += 3;
    for (g_scales = SCALES_F32; g_scales <= SCALES_TWO_LEVEL; g_scales++)
        for (int f = 0; f < 2; f++)
            for (int gi = 0; gi < 3; gi++)
                for (int offs = 0; offs < 2; offs++) {
                    /* odd rows (a partial row tile and row block), columns not a multiple of
                     * the tile (padding; two-level scales need whole 256-column blocks), all
                     * token counts and split paths, each scale width */
                    const int rows = 16 * 5 + 3 + gi;
                    const int cols = g_scales == SCALES_TWO_LEVEL ? 256 * (2 + gi)
                                                                  : groups[gi] * (gi == 2 ? 3 : 9);
                    /* every plan for QW4 with f32 scales, the first 5 for the others (the
                     * split logic is the same for all) */
                    const int other = g_scales != SCALES_F32;
                    const int nT = other ? 3 : 8, np = other || f ? 5 : N_PLANS;
                    qmm_case(fmts[f], rows, cols, groups[gi], offs, other ? Ts_f16 : Ts, nT, np,
                             (f + gi) & 1);
                    cases += nT * np;
                }
    g_scales = SCALES_F32;
    /* long rows (up to 40 tiles per warp: the ring of loads wraps many times), a few row
     * blocks, T over 32 (two launches) */
    static const int Tbig[] = {1, 32, 33};
    qmm_case(SL_WF_QW4, 300, 2560, 32, 0, Tbig, 3, 5, 0);
    qmm_case(SL_WF_QW8, 140, 2176, 128, 1, Tbig, 3, 5, 1);
    g_scales = SCALES_F16;
    qmm_case(SL_WF_QW4, 300, 2560, 32, 1, Tbig, 2, 3, 1);
    g_scales = SCALES_TWO_LEVEL;
    qmm_case(SL_WF_QW8, 140, 2560, 16, 0, Tbig, 2, 3, 0);
    g_scales = SCALES_F32;
    qmm_case(SL_WF_QW4, 1, 16, 16, 1, Ts, 3, N_PLANS, 0); /* one row, one step */
    cases += 2 * 3 * 5 + 2 * 2 * 3 + 3 * N_PLANS;
    /* groups of one QW4 tile (one scale record per tile) and of several tiles (one record per
     * group of 4 or 8 tiles), both widths */
    static const int T3[] = {1, 5, 16, 29};
    for (g_scales = SCALES_F32; g_scales <= SCALES_TWO_LEVEL; g_scales++)
        for (int f = 0; f < 2; f++)
            for (int gi = 0; gi < 2; gi++) {
                const int group = gi ? 256 : 64;
                /* two-level: QW4 group 64 (a unit per tile, with offsets) takes it, the rest
                 * fall back */
                const int offs = g_scales == SCALES_TWO_LEVEL && f == 0 ? 1 : (f + gi + g_scales) & 1;
                qmm_case(fmts[f], 40, 256 * 3, group, offs, T3, 4, N_PLANS, 0);
                cases += 4 * N_PLANS;
            }
    g_scales = SCALES_F32;
    printf("qmm: %d cases ok\n", cases);
}

/* QW8's two-level scales give the f32 scales' results bit for bit (the kernel multiplies out
 * each exact scale): the same K-quant-like weight with one scale nudged off its two-level form
 * (so the whole weight packs f32 scales), every other row's outputs equal, at each column-tile
 * count; Q6_K- and Q5_K-like shapes. (QW4's round differently: its multipliers scale the codes
 * and the factors apply per 256 columns; qmm_case checks them against the reference.) */
static void test_qmm_two_level(void) {
    static const struct { sl_wfmt fmt; int group, offs; } shapes[] = {{SL_WF_QW8, 16, 0}, {SL_WF_QW8, 32, 1}};
    static const int Ts[] = {1, 9, 17};
    const int rows = 40, cols = 768;
    int cases = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        sl_qw w, w32;
        g_scales = SCALES_TWO_LEVEL;
        random_qw(&w, shapes[si].fmt, rows, cols, shapes[si].group, shapes[si].offs);
        g_scales = SCALES_F32;
        sl_qw_alloc(&w32, w.fmt, rows, cols, w.group, w.offsets != NULL);
        memcpy(w32.codes, w.codes, (size_t)sl_qw_row_bytes(&w) * rows);
        memcpy(w32.scales, w.scales, (size_t)rows * (cols / w.group) * sizeof(float));
        if (w.offsets) memcpy(w32.offsets, w.offsets, (size_t)rows * (cols / w.group) * sizeof(float));
        w32.scales[0] *= 1.01f; /* row 0 */
        sl_cuda_qmat q, q32;
        ASSERT_EQ(sl_cuda_qmat_init(&q, &w), 0);
        ASSERT_EQ(sl_cuda_qmat_init(&q32, &w32), 0);
        ASSERT_EQ(q.scale_bytes, 1);
        ASSERT_EQ(q32.scale_bytes, 4);
        for (int ti = 0; ti < 3; ti++) {
            const int T = Ts[ti];
            const int64_t nx = (int64_t)T * cols, ny = (int64_t)T * rows;
            float *x = rnd_vec(nx, 1.0f);
            uint16_t *x16 = sl_xmalloc((size_t)(nx + 1) * sizeof(uint16_t));
            for (int64_t i = 0; i < nx; i++) x16[i] = sl_f32_to_fp16(x[i]);
            dbuf dx16 = dev_from(x16, (nx + 1) / 2, 0), dy = dev_alloc(ny, 0), dy32 = dev_alloc(ny, 0);
            /* one warp a row tile, 3 splits: runs of 8 tiles (256 columns) for both, so the same
             * sums in the same order (two-level scales round a run up to whole 256 columns) */
            sl_cuda_qmm_f16(&q, (const uint16_t *)dx16.p, dy.p, T, (sl_qmm_plan){1, 3, 0, 0, 0}, NULL);
            sl_cuda_qmm_f16(&q32, (const uint16_t *)dx16.p, dy32.p, T, (sl_qmm_plan){1, 3, 0, 0, 0}, NULL);
            float *y = sl_xmalloc((size_t)ny * sizeof(float)), *y32 = sl_xmalloc((size_t)ny * sizeof(float));
            dev_get(&dy, y), dev_get(&dy32, y32);
            char what[96];
            snprintf(what, sizeof what, "two-level vs f32 scales %s g%d%s T=%d", sl_wfmt_name(w.fmt),
                     w.group, w.offsets ? "+offsets" : "", T);
            for (int t = 0; t < T; t++)
                check_bits(what, y + (int64_t)t * rows + 1, y32 + (int64_t)t * rows + 1, rows - 1, 4);
            ASSERT(y[0] != y32[0]); /* the nudged row: the test sees the scales */
            dev_free(&dx16), dev_free(&dy), dev_free(&dy32);
            free(x), free(x16), free(y), free(y32);
            cases++;
        }
        sl_cuda_qmat_deinit(&q), sl_cuda_qmat_deinit(&q32);
        sl_qw_free(&w), sl_qw_free(&w32);
    }
    printf("qmm two-level: %d cases ok\n", cases);
}

#ifdef SL_TEST_EMU
/* A recorded prefetch range, as an array (0 codes, 1 scales, 2 offsets, 3 factors) and the
 * byte offset and size in it; sorted for comparison */
typedef struct pf_range { int arr; long long at, n; } pf_range;
static int pf_cmp(const void *a, const void *b) {
    const pf_range *x = a, *y = b;
    if (x->arr != y->arr) return x->arr - y->arr;
    if (x->at != y->at) return x->at < y->at ? -1 : 1;
    return x->n < y->n ? -1 : x->n > y->n;
}
static void pf_add(pf_range *r, int *n, int arr, long long at, long long bytes) {
    if (bytes > 0) r[(*n)++] = (pf_range){arr, at, bytes};
}
#endif

/* L2 prefetch changes no result: each plan with prefetch gives the bits of the same plan
 * without. Under the emulator (which checks every range against its allocation) the ranges
 * asked for are recorded and compared with what matmul.h's layout says a run's next pf tiles
 * after the ring's first D (qmm_kernel.cuh's ring depth: 4, or 2 for Q4_K's form at 17 to 32
 * tokens) are. Per warp (blocked plans of one split: the row tile's tiles in runs of
 * ceil(k_tiles / kw), two-level ones in whole 256 columns; a row's tail tile past K not in the
 * ring): the codes of tiles [k0 + D, min(ka, k0 + D + pf)), their scale and offset records
 * (one per tile, or per group of 2^s tiles), and the two-level factor blocks from the first the
 * kernel does not load itself (QW4: the run's second block; QW8: its third) to the last tile's.
 * Forms of Q4_0, Q4_1, Q4_K, Q6_K, Q5_K and QW8 g128 with f32 scales (a record per 4 tiles),
 * rows of a partial row tile. */
static void test_qmm_prefetch(void) {
    static const struct { sl_wfmt fmt; int group, offs, scales, cols, T; } forms[] = {
        {SL_WF_QW4, 32, 0, SCALES_F16, 992, 1},       /* 15.5 tiles: a tail */
        {SL_WF_QW4, 32, 1, SCALES_F16, 992, 2},
        {SL_WF_QW4, 32, 1, SCALES_TWO_LEVEL, 1536, 3},
        {SL_WF_QW4, 32, 1, SCALES_TWO_LEVEL, 1536, 20}, /* D = 2: a factor block in two rounds */
        {SL_WF_QW8, 16, 0, SCALES_TWO_LEVEL, 1536, 1},
        {SL_WF_QW8, 32, 1, SCALES_TWO_LEVEL, 1536, 2},
        {SL_WF_QW8, 128, 1, SCALES_F32, 1664, 3}};
    static const int kws[] = {1, 2}, pfs[] = {1, 5, 9, SL_QMM_MAX_PREFETCH};
    const int rows = 40;
    int cases = 0;
    for (size_t fi = 0; fi < sizeof forms / sizeof *forms; fi++) {
        g_scales = forms[fi].scales;
        sl_qw w;
        random_qw(&w, forms[fi].fmt, rows, forms[fi].cols, forms[fi].group, forms[fi].offs);
        sl_cuda_qmat q;
        ASSERT_EQ(sl_cuda_qmat_init(&q, &w), 0);
        ASSERT_EQ(q.scale_bytes, want_scale_bytes(w.fmt, (int)w.cols, w.group, forms[fi].offs));
        const int T = forms[fi].T, cols = forms[fi].cols;
        const int64_t nx = (int64_t)T * cols, ny = (int64_t)T * rows;
        uint16_t *x16 = sl_xmalloc((size_t)(nx + 1) * sizeof(uint16_t));
        for (int64_t i = 0; i < nx; i++) x16[i] = sl_f32_to_fp16(rnd());
        dbuf dx16 = dev_from(x16, (nx + 1) / 2, 0), dy = dev_alloc(ny, 0);
        float *y0 = sl_xmalloc((size_t)ny * sizeof(float)), *y = sl_xmalloc((size_t)ny * sizeof(float));
        for (int ki = 0; ki < 2; ki++) {
            const int kw = kws[ki];
            sl_cuda_qmm_f16(&q, (const uint16_t *)dx16.p, dy.p, T, (sl_qmm_plan){kw, 1, 0, 0, 0}, NULL);
            dev_get(&dy, y0);
            for (int pi = 0; pi < 4; pi++) {
                const int pf = pfs[pi];
                char what[128];
                snprintf(what, sizeof what, "qmm prefetch %d, %s g%d%s %d-byte scales, plan %d×1, T=%d", pf,
                         sl_wfmt_name(w.fmt), w.group, w.offsets ? "+offsets" : "", q.scale_bytes, kw, T);
#ifdef SL_TEST_EMU
                enum { CAP = 1024 };
                static const void *ptrs[CAP];
                static unsigned sizes[CAP];
                sl_emu_prefetch_log(ptrs, sizes, CAP);
#endif
                sl_cuda_qmm_f16(&q, (const uint16_t *)dx16.p, dy.p, T, (sl_qmm_plan){kw, 1, 0, 0, pf}, NULL);
#ifdef SL_TEST_EMU
                const int n = sl_emu_prefetch_log(NULL, NULL, 0);
                ASSERT(n <= CAP);
                static pf_range got[CAP], want[CAP];
                const void *arrs[4] = {q.codes, q.scales, q.offsets, q.factors};
                for (int i = 0; i < n; i++) {
                    got[i].arr = -1;
                    for (int a = 0; a < 4; a++)
                        if (arrs[a] && (const char *)ptrs[i] >= (const char *)arrs[a] &&
                            (got[i].arr < 0 || (const char *)arrs[a] > (const char *)arrs[got[i].arr]))
                            got[i].arr = a; /* the nearest array below */
                    ASSERT(got[i].arr >= 0);
                    got[i].at = (const char *)ptrs[i] - (const char *)arrs[got[i].arr], got[i].n = sizes[i];
                }
                /* what the layout says */
                const int kt = sl_cuda_qmat_ktile(w.fmt), q4 = w.fmt == SL_WF_QW4;
                const int upt = w.group >= kt ? 1 : kt / w.group, es = q.scale_bytes;
                int rs = 0;
                while (w.group > kt << rs) rs++;
                const long long recb = 16LL * upt * es, n_rec = w.group > kt ? q.g_pad : q.k_tiles;
                const int tpb = 256 / kt, facb = 32 * (w.offsets ? 2 : 1), nt = T <= 8 ? 1 : T <= 16 ? 2 : 4;
                /* the ring's depth (qmm_kernel.cuh's D) */
                const int d = (nt == 4 && (w.offsets || upt == 4)) || (q4 && upt == 4 && w.offsets && nt == 2) ? 2 : 4;
                const long long k_tiles = q.k_tiles;
                long long per = (k_tiles + kw - 1) / kw;
                if (es == 1) per = (per + tpb - 1) / tpb * tpb;
                int m = 0;
                for (long long rt = 0; rt < q.row_tiles; rt++)
                    for (int j = 0; j < kw; j++) {
                        const long long k0 = j * per < k_tiles ? j * per : k_tiles;
                        const long long k1 = k0 + per < k_tiles ? k0 + per : k_tiles;
                        const int tail = upt > 1 && es != 1 && k1 > k0 && k1 == k_tiles && k_tiles * kt > cols;
                        const long long ka = tail ? k1 - 1 : k1, a = k0 + d, b = ka < a + pf ? ka : a + pf;
                        if (a >= b) continue;
                        pf_add(want, &m, 0, (rt * k_tiles + a) * 512, (b - a) * 512);
                        const long long r0 = a >> rs, r1 = ((b - 1) >> rs) + 1;
                        pf_add(want, &m, 1, (rt * n_rec + r0) * recb, (r1 - r0) * recb);
                        if (w.offsets) pf_add(want, &m, 2, (rt * n_rec + r0) * recb, (r1 - r0) * recb);
                        if (es == 1) {
                            const long long f0 = k0 / tpb + (q4 ? 1 : 2), f1 = (b - 1) / tpb + 1;
                            pf_add(want, &m, 3, (rt * (k_tiles / tpb) + f0) * facb, (f1 - f0) * facb);
                        }
                    }
                qsort(got, (size_t)n, sizeof *got, pf_cmp);
                qsort(want, (size_t)m, sizeof *want, pf_cmp);
                int same = n == m;
                for (int i = 0; same && i < n; i++) same = pf_cmp(&got[i], &want[i]) == 0;
                if (!same) {
                    fprintf(stderr, "%s: %d ranges prefetched, %d expected; first difference:\n", what, n, m);
                    for (int i = 0; i < n || i < m; i++)
                        if (i >= n || i >= m || pf_cmp(&got[i], &want[i])) {
                            if (i < n)
                                fprintf(stderr, "  got  array %d at %lld, %lld bytes\n", got[i].arr,
                                        got[i].at, got[i].n);
                            if (i < m)
                                fprintf(stderr, "  want array %d at %lld, %lld bytes\n", want[i].arr,
                                        want[i].at, want[i].n);
                            break;
                        }
                    exit(1);
                }
#endif
                dev_get(&dy, y);
                check_bits(what, y, y0, ny, 4);
                cases++;
            }
        }
        dev_free(&dx16), dev_free(&dy);
        free(x16), free(y0), free(y);
        sl_cuda_qmat_deinit(&q);
        sl_qw_free(&w);
    }
    g_scales = SCALES_F32;
    printf("qmm prefetch: %d cases ok\n", cases);
}

/* Several weights on one x in one launch (q/k/v-like rows), every plan: each output against
 * its own reference, no write past its buffer; and what cannot be grouped. */
static void test_qmm_multi(void) {
    static const int Ts[] = {1, 9, 17, 33};
    static const int rows[3] = {83, 16, 37};
    int cases = 0;
    for (int f = 0; f < 2; f++)
        for (int v = 0; v < 3; v++) {
            /* pairs with f16 scales, triples with f32 or two-level ones and offsets */
            const int n = v ? 3 : 2;
            const sl_wfmt fmt = f ? SL_WF_QW8 : SL_WF_QW4;
            const int cols = v == 2 ? 512 : 320, group = 32, offs = n == 3;
            sl_qw w[3];
            sl_cuda_qmat q[3];
            const sl_cuda_qmat *qp[3];
            g_scales = v == 0 ? SCALES_F16 : v == 1 ? SCALES_F32 : SCALES_TWO_LEVEL;
            for (int i = 0; i < n; i++) {
                random_qw(&w[i], fmt, rows[i], cols, group, offs);
                ASSERT_EQ(sl_cuda_qmat_init(&q[i], &w[i]), 0);
                ASSERT_EQ(q[i].scale_bytes, want_scale_bytes(fmt, cols, group, offs));
                qp[i] = &q[i];
            }
            g_scales = SCALES_F32;
            ASSERT(sl_cuda_qmm_groupable(qp, n));
            for (int ti = 0; ti < 4; ti++) {
                const int T = Ts[ti];
                const int64_t nx = (int64_t)T * cols;
                float *x = rnd_vec(nx, 1.0f), *xr = sl_xmalloc((size_t)nx * sizeof(float));
                uint16_t *x16 = sl_xmalloc((size_t)(nx + 1) * sizeof(uint16_t));
                for (int64_t i = 0; i < nx; i++) xr[i] = sl_fp16_to_f32(x16[i] = sl_f32_to_fp16(x[i]));
                dbuf dx16 = dev_from(x16, (nx + 1) / 2, 0);
                double *ref[3], *bound[3];
                for (int i = 0; i < n; i++) {
                    ref[i] = sl_xmalloc((size_t)T * rows[i] * sizeof(double));
                    bound[i] = sl_xmalloc((size_t)T * rows[i] * sizeof(double));
                    reference(&w[i], xr, T, ref[i], bound[i]);
                }
                for (int pi = 0; pi < 5; pi++) {
                    dbuf dy[3];
                    float *ys[3];
                    for (int i = 0; i < n; i++) dy[i] = dev_alloc((int64_t)T * rows[i], i), ys[i] = dy[i].p;
                    sl_cuda_qmm_multi_f16(qp, n, (const uint16_t *)dx16.p, ys, T, g_plans[pi], NULL);
                    for (int i = 0; i < n; i++) {
                        char what[128];
                        snprintf(what, sizeof what, "qmm multi %s%s %d-byte scales n=%d weight %d T=%d plan %d×%d flat %d%s",
                                 sl_wfmt_name(fmt), offs ? "+offsets" : "", q[0].scale_bytes, n, i, T,
                                 g_plans[pi].warps_per_tile, g_plans[pi].splits, g_plans[pi].flat,
                                 g_plans[pi].any_batch ? " any batch" : "");
                        float *got = sl_xmalloc((size_t)T * rows[i] * sizeof(float));
                        dev_get(&dy[i], got);
                        check_bound(what, got, ref[i], bound[i], (int64_t)T * rows[i], 2e-5);
                        dev_check_guards(&dy[i], what);
                        free(got);
                        dev_free(&dy[i]);
                    }
                    cases++;
                }
                /* a token alone gets its bits in the batch: a split plan (partial sums), the
                 * default for any T (what the batch-invariant backend launches) and a flat plan
                 * (row tiles in pieces) */
                for (int pk = 0; pk < 3 && T > 1; pk++) {
                    const sl_qmm_plan plan = g_plans[pk == 0 ? 2 : pk == 1 ? 0 : 4];
                    dbuf dyb[3], dy1[3];
                    float *yb[3], *y1[3];
                    for (int i = 0; i < n; i++) {
                        dyb[i] = dev_alloc((int64_t)T * rows[i], 0), yb[i] = dyb[i].p;
                        dy1[i] = dev_alloc(rows[i], 0), y1[i] = dy1[i].p;
                    }
                    const int t = T - 1;
                    dbuf dxt = dev_from(x16 + (int64_t)t * cols, (cols + 1) / 2, 0);
                    sl_cuda_qmm_multi_f16(qp, n, (const uint16_t *)dx16.p, yb, T, plan, NULL);
                    sl_cuda_qmm_multi_f16(qp, n, (const uint16_t *)dxt.p, y1, 1, plan, NULL);
                    for (int i = 0; i < n; i++) {
                        float *gb = sl_xmalloc((size_t)T * rows[i] * sizeof(float));
                        float *g1 = sl_xmalloc((size_t)rows[i] * sizeof(float));
                        dev_get(&dyb[i], gb);
                        dev_get(&dy1[i], g1);
                        check_bits("qmm multi: a token alone and in the batch", g1,
                                   gb + (int64_t)t * rows[i], rows[i], 4);
                        free(gb), free(g1);
                        dev_free(&dyb[i]), dev_free(&dy1[i]);
                    }
                    dev_free(&dxt);
                }
                /* the f32 entry point, the default plan for T */
                dbuf dx = dev_from(x, nx, 0), dy[3];
                float *ys[3];
                for (int i = 0; i < n; i++) dy[i] = dev_alloc((int64_t)T * rows[i], 0), ys[i] = dy[i].p;
                sl_cuda_qmm_multi(qp, n, dx.p, ys, T, (sl_qmm_plan){0, 0, 0, 0, 0}, NULL);
                for (int i = 0; i < n; i++) {
                    double *ref32 = sl_xmalloc((size_t)T * rows[i] * sizeof(double));
                    reference(&w[i], x, T, ref32, bound[i]);
                    float *got = sl_xmalloc((size_t)T * rows[i] * sizeof(float));
                    dev_get(&dy[i], got);
                    check_bound("qmm multi f32 x", got, ref32, bound[i], (int64_t)T * rows[i], 0x1p-11 + 2e-5);
                    free(got), free(ref32);
                    dev_free(&dy[i]);
                    free(ref[i]), free(bound[i]);
                }
                dev_free(&dx), dev_free(&dx16);
                free(x), free(xr), free(x16);
            }
            for (int i = 0; i < n; i++) sl_cuda_qmat_deinit(&q[i]), sl_qw_free(&w[i]);
        }
    /* not groupable: another format, group, width of the columns, scale width or offsets */
    sl_qw a, b;
    sl_cuda_qmat qa, qb;
    const sl_cuda_qmat *pair[2] = {&qa, &qb};
    static const struct { sl_wfmt fmt; int cols, group, offs, scales; } other[] = {
        {SL_WF_QW8, 256, 32, 0, SCALES_F32},  {SL_WF_QW4, 256, 16, 0, SCALES_F32},
        {SL_WF_QW4, 128, 32, 0, SCALES_F32},  {SL_WF_QW4, 256, 32, 0, SCALES_F16},
        {SL_WF_QW4, 256, 32, 1, SCALES_F32}};
    random_qw(&a, SL_WF_QW4, 20, 256, 32, 0);
    ASSERT_EQ(sl_cuda_qmat_init(&qa, &a), 0);
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        g_scales = other[i].scales;
        random_qw(&b, other[i].fmt, 20, other[i].cols, other[i].group, other[i].offs);
        g_scales = SCALES_F32;
        ASSERT_EQ(sl_cuda_qmat_init(&qb, &b), 0);
        ASSERT(!sl_cuda_qmm_groupable(pair, 2));
        sl_cuda_qmat_deinit(&qb);
        sl_qw_free(&b);
    }
    ASSERT(sl_cuda_qmm_groupable(pair, 1));
    ASSERT(!sl_cuda_qmm_groupable(pair, 0));
    /* and two-level beside f32 scales */
    for (int f = 0; f < 2; f++) {
        sl_qw c;
        sl_cuda_qmat qc;
        const sl_cuda_qmat *tl_pair[2] = {&qb, &qc};
        random_qw(&b, f ? SL_WF_QW8 : SL_WF_QW4, 20, 256, 32, 1);
        g_scales = SCALES_TWO_LEVEL;
        random_qw(&c, f ? SL_WF_QW8 : SL_WF_QW4, 20, 256, 32, 1);
        g_scales = SCALES_F32;
        ASSERT_EQ(sl_cuda_qmat_init(&qb, &b), 0);
        ASSERT_EQ(sl_cuda_qmat_init(&qc, &c), 0);
        ASSERT(qb.scale_bytes == 4 && qc.scale_bytes == 1);
        ASSERT(!sl_cuda_qmm_groupable(tl_pair, 2));
        sl_cuda_qmat_deinit(&qb), sl_cuda_qmat_deinit(&qc);
        sl_qw_free(&b), sl_qw_free(&c);
    }
    sl_cuda_qmat_deinit(&qa);
    sl_qw_free(&a);
    printf("qmm multi: %d cases ok\n", cases);
}

/* pack then unpack gives back the logical weight, byte for byte */
static void test_repack(void) {
    int cases = 0;
    const sl_wfmt fmts[] = {SL_WF_QW4, SL_WF_QW8};
    for (int f = 0; f < 6; f++) /* each format with f32, f16 and two-level scales */
        for (int rows = 1; rows <= 40; rows += 13)
            for (int group = 16; group <= 128; group *= 2)
                for (int offs = 0; offs < 2; offs++) {
                    g_scales = f / 2;
                    const int cols = g_scales == SCALES_TWO_LEVEL ? 256 * (1 + rows % 3) : group * (1 + rows % 5);
                    sl_qw w, back;
                    random_qw(&w, fmts[f % 2], rows, cols, group, offs);
                    sl_cuda_qmat q;
                    ASSERT_EQ(sl_cuda_qmat_pack_host(&q, &w), 0);
                    ASSERT_EQ(q.row_tiles, (rows + 15) / 16);
                    ASSERT_EQ(q.scale_bytes, want_scale_bytes(fmts[f % 2], cols, group, offs));
                    g_scales = SCALES_F32;
                    sl_qw_alloc(&back, fmts[f % 2], rows, cols, group, offs);
                    sl_cuda_qmat_unpack_host(&q, &back);
                    char what[96];
                    snprintf(what, sizeof what, "repack %s %dx%d g%d %d-byte scales",
                             sl_wfmt_name(fmts[f % 2]), rows, cols, group, q.scale_bytes);
                    const int64_t n = (int64_t)rows * cols;
                    check_bits(what, back.codes, w.codes, fmts[f % 2] == SL_WF_QW8 ? n : n / 2, 1);
                    check_bits(what, back.scales, w.scales, n / group, 4);
                    if (offs) check_bits(what, back.offsets, w.offsets, n / group, 4);
                    sl_cuda_qmat_host_free(&q);
                    sl_qw_free(&w);
                    sl_qw_free(&back);
                    cases++;
                }
    /* what cannot be packed */
    sl_qw w;
    sl_cuda_qmat q;
    random_qw(&w, SL_WF_QW4, 4, 64, 8, 0);
    ASSERT_EQ(sl_cuda_qmat_pack_host(&q, &w), -1); /* group under 16 */
    sl_qw_free(&w);
    random_qw(&w, SL_WF_QW8, 4, 96, 48, 0);
    ASSERT_EQ(sl_cuda_qmat_pack_host(&q, &w), -1); /* group not a power of 2 */
    sl_qw_free(&w);
    sl_qw_alloc(&w, SL_WF_F16, 4, 64, 0, 0);
    ASSERT_EQ(sl_cuda_qmat_pack_host(&q, &w), -1); /* not a QW format */
    sl_qw_free(&w);
    printf("repack: %d cases ok\n", cases + 3);
}

/* F16 through cuBLAS, against the same double reference (x rounded to f16 inside) */
static void f16_case(int rows, int cols, int T) {
    sl_qw w;
    sl_qw_alloc(&w, SL_WF_F16, rows, cols, 0, 0);
    for (int64_t i = 0; i < (int64_t)rows * cols; i++)
        ((uint16_t *)w.data)[i] = sl_f32_to_fp16(rnd() * 0.1f);
    float *x = rnd_vec((int64_t)T * cols, 1.0f);
    double *ref = sl_xmalloc((size_t)T * rows * sizeof(double));
    double *bound = sl_xmalloc((size_t)T * rows * sizeof(double));
    reference(&w, x, T, ref, bound);
    dbuf dw = dev_from(w.data, ((int64_t)rows * cols + 1) / 2, 0);
    dbuf dx = dev_from(x, (int64_t)T * cols, 0), dy = dev_alloc((int64_t)T * rows, 0);
    sl_cuda_matmul_f16((const uint16_t *)dw.p, dx.p, dy.p, T, rows, cols, NULL);
    float *got = sl_xmalloc((size_t)T * rows * sizeof(float));
    dev_get(&dy, got);
    char what[64];
    snprintf(what, sizeof what, "matmul_f16 %dx%d T=%d", rows, cols, T);
    check_bound(what, got, ref, bound, (int64_t)T * rows, 0x1p-11 + 2e-5);
    dev_check_guards(&dy, what);
    dev_free(&dw), dev_free(&dx), dev_free(&dy);
    free(x), free(ref), free(bound), free(got);
    sl_qw_free(&w);
}

static void test_f16(void) {
    f16_case(37, 64, 1);
    f16_case(64, 200, 3);
    f16_case(129, 256, 16);
    printf("matmul_f16: 3 cases ok\n");
}

int main(void) {
    int skip = harness_begin("test_cuda_matmul", 20261128);
    if (skip) return skip;
    double t0 = sl_time_s();
    test_repack();
    test_default_plan();
    test_qmm();
    test_qmm_two_level();
    test_qmm_prefetch();
    test_qmm_multi();
    test_f16();
    printf("test_cuda_matmul: ok (%ld checks, %.1f s)\n", g_checks, sl_time_s() - t0);
    return 0;
}
