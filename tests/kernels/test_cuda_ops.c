/* test_cuda_ops.c — the elementwise and normalization CUDA kernels (rmsnorm, rope, swiglu)
 * against the CPU backend, through every launch path (test_cuda_harness.h: emulated in CI,
 * natively on a GPU). Tolerances hold for the GPU, whose expf/sincosf/rsqrtf differ from the
 * CPU's in their last bits and whose sums run in another order. */
#include "tests/kernels/test_cuda_harness.h"

static sl_backend *g_cpu;

/* ---- rmsnorm ---------------------------------------------------------------------------- */

/* fused: x += r first (x checked too); inplace: y is x; off: floats of misalignment */
static void rmsnorm_case(int T, int D, int fused, int inplace, int off, float eps) {
    const int64_t n = (int64_t)T * D;
    float *x = rnd_vec(n, 1.0f), *r = rnd_vec(n, 0.5f), *g = rnd_vec(D, 1.0f);
    float *xref = copy_vec(x, n), *yref = sl_xmalloc((size_t)n * sizeof(float));
    if (fused) g_cpu->add(g_cpu, xref, r, n);
    g_cpu->rmsnorm(g_cpu, xref, g, yref, T, D, eps);

    dbuf dx = dev_from(x, n, off), dr = dev_from(r, n, off), dg = dev_from(g, D, off);
    dbuf dy = inplace ? dx : dev_alloc(n, off);
    if (fused) sl_cuda_add_rmsnorm(dx.p, dr.p, dg.p, dy.p, T, D, eps, NULL);
    else sl_cuda_rmsnorm(dx.p, dg.p, dy.p, T, D, eps, NULL);

    char what[128];
    snprintf(what, sizeof what, "%srmsnorm T=%d D=%d%s off=%d", fused ? "add_" : "", T, D,
             inplace ? " in place" : "", off);
    float *got = sl_xmalloc((size_t)n * sizeof(float));
    if (fused && !inplace) { /* the updated residual: one f32 add, exact */
        dev_get(&dx, got);
        check_close(what, got, xref, n, 0.0, 0.0);
    }
    if (!fused && !inplace) { /* the input is left alone */
        dev_get(&dx, got);
        check_close(what, got, x, n, 0.0, 0.0);
    }
    dev_get(&dy, got);
    check_close(what, got, yref, n, 1e-6, 1e-5);
    dev_check_guards(&dy, what);
    if (!inplace) dev_check_guards(&dx, what);

    dev_free(&dx);
    dev_free(&dr);
    dev_free(&dg);
    if (!inplace) dev_free(&dy);
    free(x), free(r), free(g), free(xref), free(yref), free(got);
}

static void test_rmsnorm(void) {
    /* rows of <= 32 loads take the one-warp path (D <= 32 scalar, D <= 128 float4); longer rows
     * the shared-memory path, with several elements per thread past 512 loads */
    static const int Ds[] = {1, 3, 31, 32, 33, 100, 128, 132, 255, 1000, 1031, 4096, 5003};
    int cases = 0;
    for (size_t d = 0; d < sizeof Ds / sizeof *Ds; d++)
        for (int T = 1; T <= 5; T += 4)
            for (int variant = 0; variant < 8; variant++) {
                int fused = variant & 1, inplace = variant >> 1 & 1, off = variant >> 2 & 1;
                rmsnorm_case(T, Ds[d], fused, inplace, off, d % 2 ? 1e-5f : 1e-6f);
                cases++;
            }
    rmsnorm_case(37, 256, 1, 0, 0, 1e-5f);
    rmsnorm_case(37, 256, 0, 0, 3, 1e-5f);

    /* T == 0 launches nothing and touches nothing */
    dbuf dx = dev_alloc(64, 0), dg = dev_alloc(64, 0), dy = dev_alloc(64, 0);
    sl_cuda_rmsnorm(dx.p, dg.p, dy.p, 0, 64, 1e-5f, NULL);
    sl_cuda_add_rmsnorm(dx.p, dg.p, dg.p, dy.p, 0, 64, 1e-5f, NULL);
    uint32_t h[64];
    dev_get(&dy, h);
    for (int i = 0; i < 64; i++) ASSERT_EQ(h[i], 0xffffffffu);
    dev_free(&dx), dev_free(&dg), dev_free(&dy);
    printf("rmsnorm: %d cases ok\n", cases + 2);
}

/* ---- rope --------------------------------------------------------------------------------- */

static void rope_case(sl_rope_mode mode, int T, int H, int head_dim, int n_rot, int with_freqs,
                      float base, float freq_scale, int max_pos, int off) {
    const int64_t n = (int64_t)T * H * head_dim;
    float *x = rnd_vec(n, 1.0f), *freqs = NULL;
    int32_t *pos = sl_xmalloc((size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++) pos[t] = rnd_int(max_pos);
    pos[T - 1] = max_pos - 1;
    if (with_freqs) {
        freqs = sl_xmalloc((size_t)(n_rot / 2) * sizeof(float));
        for (int i = 0; i < n_rot / 2; i++) freqs[i] = 1.0f + 7.0f * sl_rng_f32(&g_rng);
    }
    float *ref = copy_vec(x, n);
    sl_rope_params rp = {mode, n_rot, base, freq_scale, freqs};
    g_cpu->rope(g_cpu, ref, pos, T, H, head_dim, &rp);

    dbuf dx = dev_from(x, n, off), dpos = dev_from(pos, T, off), df = {0};
    sl_rope_params drp = rp;
    if (with_freqs) {
        df = dev_from(freqs, n_rot / 2, off);
        drp.freqs = df.p;
    }
    sl_cuda_rope(dx.p, (const int32_t *)dpos.p, T, H, head_dim, &drp, NULL);

    char what[160];
    snprintf(what, sizeof what, "rope %s T=%d H=%d head_dim=%d n_rot=%d freqs=%d scale=%g pos<%d",
             mode == SL_ROPE_NEOX ? "neox" : "norm", T, H, head_dim, n_rot, with_freqs,
             (double)freq_scale, max_pos);
    float *got = sl_xmalloc((size_t)n * sizeof(float));
    dev_get(&dx, got);
    check_close(what, got, ref, n, 2e-6, 1e-5);
    dev_check_guards(&dx, what);

    dev_free(&dx);
    dev_free(&dpos);
    if (with_freqs) dev_free(&df);
    free(x), free(freqs), free(pos), free(ref), free(got);
}

static void test_rope(void) {
    int cases = 0;
    for (int m = 0; m < 2; m++) {
        sl_rope_mode mode = (sl_rope_mode)m;
        rope_case(mode, 5, 32, 128, 128, 0, 10000.0f, 1.0f, 4096, 0); /* 4 heads per block */
        rope_case(mode, 3, 7, 128, 128, 0, 1e6f, 1.0f, 32768, 0);     /* partial head group */
        rope_case(mode, 9, 4, 64, 64, 1, 500000.0f, 1.0f, 8192, 0);   /* Llama 3.1 rope_freqs */
        rope_case(mode, 4, 6, 64, 64, 1, 10000.0f, 0.25f, 2048, 1);   /* linear scaling */
        rope_case(mode, 6, 5, 80, 32, 0, 10000.0f, 1.0f, 1000, 0);    /* partial rotary dims */
        rope_case(mode, 7, 3, 16, 10, 0, 10000.0f, 1.0f, 100, 1);     /* odd number of pairs */
        rope_case(mode, 2, 2, 1024, 1024, 0, 10000.0f, 1.0f, 500, 0); /* one head per block */
        rope_case(mode, 1, 1, 2, 2, 0, 10000.0f, 1.0f, 10, 0);        /* the smallest */
        cases += 8;
    }
    printf("rope: %d cases ok\n", cases);
}

/* ---- swiglu -------------------------------------------------------------------------------- */

static void swiglu_case(int64_t n, int inplace, int off) {
    float *g = rnd_vec(n, 4.0f), *u = rnd_vec(n, 1.0f), *ref = sl_xmalloc((size_t)n * 4);
    g_cpu->swiglu(g_cpu, g, u, ref, n);
    dbuf dg = dev_from(g, n, off), du = dev_from(u, n, off);
    dbuf dy = inplace ? dg : dev_alloc(n, off);
    sl_cuda_swiglu(dg.p, du.p, dy.p, n, NULL);

    char what[96];
    snprintf(what, sizeof what, "swiglu n=%lld%s off=%d", (long long)n, inplace ? " in place" : "",
             off);
    float *got = sl_xmalloc((size_t)n * 4);
    dev_get(&dy, got);
    check_close(what, got, ref, n, 1e-7, 2e-6);
    dev_check_guards(&dy, what);
    dev_free(&dg);
    dev_free(&du);
    if (!inplace) dev_free(&dy);
    free(g), free(u), free(ref), free(got);
}

static void test_swiglu(void) {
    static const int64_t ns[] = {1, 3, 4, 5, 1000, 1024, 4099};
    int cases = 0;
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        for (int v = 0; v < 4; v++, cases++) swiglu_case(ns[i], v & 1, v >> 1);
    /* past MAX_BLOCKS × THREADS items the grid-stride loop runs more than once */
    swiglu_case(262147, 0, 0);      /* scalar */
    swiglu_case(1048580, 1, 0);     /* float4 */
    printf("swiglu: %d cases ok\n", cases + 2);
}

int main(void) {
    int skip = harness_begin("test_cuda_ops", 20250301);
    if (skip) return skip;
    double t0 = sl_time_s();
    g_cpu = sl_cpu_backend_create(1);
    test_rmsnorm();
    test_rope();
    test_swiglu();
    g_cpu->destroy(g_cpu);
    printf("test_cuda_ops: ok (%ld checks, %.1f s)\n", g_checks, sl_time_s() - t0);
    return 0;
}
