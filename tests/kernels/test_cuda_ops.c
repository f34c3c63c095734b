/* test_cuda_ops.c — the elementwise, normalization and gather CUDA kernels (rmsnorm, rope,
 * swiglu, embed, kv_write) against the CPU backend, through every launch path
 * (test_cuda_harness.h: emulated in CI, natively on a GPU). Tolerances hold for the GPU, whose
 * expf/sincosf/rsqrtf differ from the CPU's in their last bits and whose sums run in another
 * order; the gathers are exact and compared bit for bit. */
#include "tests/kernels/test_cuda_harness.h"

static sl_backend *g_cpu;

/* ---- rmsnorm ---------------------------------------------------------------------------- */

/* fused: x += r first (x checked too); inplace: y is x (2, fused: y is r, the residual branch
 * normalized in its place); off: floats of misalignment */
static void rmsnorm_case(int T, int D, int fused, int inplace, int off, float eps) {
    const int64_t n = (int64_t)T * D;
    float *x = rnd_vec(n, 1.0f), *r = rnd_vec(n, 0.5f), *g = rnd_vec(D, 1.0f);
    float *xref = copy_vec(x, n), *yref = sl_xmalloc((size_t)n * sizeof(float));
    if (fused) g_cpu->add(g_cpu, xref, r, n);
    g_cpu->rmsnorm(g_cpu, xref, g, yref, T, D, eps);

    dbuf dx = dev_from(x, n, off), dr = dev_from(r, n, off), dg = dev_from(g, D, off);
    dbuf dy = inplace == 2 ? dr : inplace ? dx : dev_alloc(n, off);
    if (fused) sl_cuda_add_rmsnorm(dx.p, dr.p, dg.p, dy.p, T, D, eps, NULL);
    else sl_cuda_rmsnorm(dx.p, dg.p, dy.p, T, D, eps, NULL);

    char what[128];
    snprintf(what, sizeof what, "%srmsnorm T=%d D=%d%s off=%d", fused ? "add_" : "", T, D,
             inplace == 2 ? " into r" : inplace ? " in place" : "", off);
    float *got = sl_xmalloc((size_t)n * sizeof(float));
    if (fused && inplace != 1) { /* the updated residual: one f32 add, exact */
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
    if (inplace != 1) dev_check_guards(&dx, what);

    dev_free(&dx);
    dev_free(&dr);
    dev_free(&dg);
    if (!inplace) dev_free(&dy);
    free(x), free(r), free(g), free(xref), free(yref), free(got);
}

/* sl__cuda_rmsnorm_f16 (fused: with r): y bit for bit the plain op's (the same path whatever
 * y16's alignment), and y16 each y rounded to f16 (sl_f32_to_fp16); off16: a y16 only 2-byte
 * aligned */
static void rmsnorm_f16_case(int T, int D, int fused, int off16) {
    const int64_t n = (int64_t)T * D;
    float *x = rnd_vec(n, 1.0f), *r = rnd_vec(n, 0.5f), *g = rnd_vec(D, 1.0f);
    dbuf dx = dev_from(x, n, 0), dr = dev_from(r, n, 0), dg = dev_from(g, D, 0);
    dbuf dx2 = dev_from(x, n, 0), dy = dev_alloc(n, 0), dy2 = dev_alloc(n, 0);
    dbuf d16 = dev_alloc(n / 2 + 1, 0);
    uint16_t *y16 = (uint16_t *)d16.p + off16;
    sl__cuda_rmsnorm_f16(dx.p, fused ? dr.p : NULL, dg.p, dy.p, y16, T, D, 1e-5f, NULL);
    if (fused) sl_cuda_add_rmsnorm(dx2.p, dr.p, dg.p, dy2.p, T, D, 1e-5f, NULL);
    else sl_cuda_rmsnorm(dx2.p, dg.p, dy2.p, T, D, 1e-5f, NULL);
    char what[96];
    snprintf(what, sizeof what, "%srmsnorm_f16 T=%d D=%d off16=%d", fused ? "add_" : "", T, D,
             off16);
    float *got = sl_xmalloc((size_t)n * 4), *want = sl_xmalloc((size_t)n * 4);
    uint16_t *h = sl_xmalloc((size_t)(n / 2 + 1) * 4), *hw = sl_xmalloc((size_t)n * 2);
    dev_get(&dy, got), dev_get(&dy2, want);
    check_bits(what, got, want, n, 4);
    dev_get(&dx, got), dev_get(&dx2, want);
    check_bits(what, got, want, n, 4);
    dev_get(&dy, got);
    dev_get(&d16, h);
    for (int64_t i = 0; i < n; i++) hw[i] = sl_f32_to_fp16(got[i]);
    check_bits(what, h + off16, hw, n, 2);
    dev_check_guards(&d16, what);
    dev_free(&dx), dev_free(&dr), dev_free(&dg), dev_free(&dx2), dev_free(&dy), dev_free(&dy2);
    dev_free(&d16);
    free(x), free(r), free(g), free(got), free(want), free(h), free(hw);
}

static void test_rmsnorm(void) {
    /* rows of <= 32 loads take the one-warp path (D <= 32 scalar, D <= 128 float4); longer rows
     * the shared-memory path, with several elements per thread past 512 loads */
    static const int Ds[] = {1, 3, 31, 32, 33, 100, 128, 132, 255, 1000, 1031, 4096, 5003};
    int cases = 0;
    for (size_t d = 0; d < sizeof Ds / sizeof *Ds; d++)
        for (int T = 1; T <= 5; T += 4)
            for (int variant = 0; variant < 10; variant++) {
                /* 8, 9: fused into r */
                int fused = variant & 1 || variant >= 8;
                int off = variant >= 8 ? variant & 1 : variant >> 2 & 1;
                int inplace = variant >= 8 ? 2 : variant >> 1 & 1;
                rmsnorm_case(T, Ds[d], fused, inplace, off, d % 2 ? 1e-5f : 1e-6f);
                cases++;
            }
    rmsnorm_case(37, 256, 1, 0, 0, 1e-5f);
    rmsnorm_case(37, 256, 0, 0, 3, 1e-5f);
    for (int k = 0; k < 16; k++, cases++) /* f16 beside: vector and scalar paths */
        rmsnorm_f16_case(1 + 2 * (k & 1), k & 8 ? 1031 : 4096, k >> 1 & 1, k >> 2 & 1);

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

/* with16: sl__cuda_swiglu_f16, whose y16 must hold each y rounded to f16 (with16 2: y16 only
 * 2-byte aligned beside aligned g, u, y) */
static void swiglu_case(int64_t n, int inplace, int off, int with16) {
    float *g = rnd_vec(n, 4.0f), *u = rnd_vec(n, 1.0f), *ref = sl_xmalloc((size_t)n * 4);
    g_cpu->swiglu(g_cpu, g, u, ref, n);
    dbuf dg = dev_from(g, n, off), du = dev_from(u, n, off);
    dbuf dy = inplace ? dg : dev_alloc(n, off);
    dbuf d16 = dev_alloc(n / 2 + 1, 0);
    const int off16 = with16 == 2 ? 1 : off;
    if (with16) sl__cuda_swiglu_f16(dg.p, du.p, dy.p, (uint16_t *)d16.p + off16, n, NULL);
    else sl_cuda_swiglu(dg.p, du.p, dy.p, n, NULL);

    char what[96];
    snprintf(what, sizeof what, "swiglu%s n=%lld%s off=%d", with16 ? "_f16" : "", (long long)n,
             inplace ? " in place" : "", off);
    float *got = sl_xmalloc((size_t)n * 4);
    dev_get(&dy, got);
    check_close(what, got, ref, n, 1e-7, 2e-6);
    dev_check_guards(&dy, what);
    if (with16) {
        uint16_t *h = sl_xmalloc((size_t)(n / 2 + 1) * 4), *hw = sl_xmalloc((size_t)n * 2);
        dev_get(&d16, h);
        for (int64_t i = 0; i < n; i++) hw[i] = sl_f32_to_fp16(got[i]);
        check_bits(what, h + off16, hw, n, 2);
        dev_check_guards(&d16, what);
        free(h), free(hw);
    }
    dev_free(&dg);
    dev_free(&du);
    dev_free(&d16);
    if (!inplace) dev_free(&dy);
    free(g), free(u), free(ref), free(got);
}

static void test_swiglu(void) {
    static const int64_t ns[] = {1, 3, 4, 5, 1000, 1024, 4099};
    int cases = 0;
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        for (int v = 0; v < 8; v++, cases++) swiglu_case(ns[i], v & 1, v >> 1 & 1, v >> 2);
    /* past MAX_BLOCKS × THREADS items the grid-stride loop runs more than once */
    swiglu_case(262147, 0, 0, 1);   /* scalar */
    swiglu_case(1048580, 1, 0, 1);  /* float4 */
    swiglu_case(1024, 0, 0, 2);     /* float4 arrays, a y16 only 2-byte aligned */
    printf("swiglu: %d cases ok\n", cases + 3);
}

/* ---- embed ------------------------------------------------------------------------------- */

/* A random table: codes over their whole range, scales and offsets never zero. */
static void random_table(sl_qw *w, sl_wfmt fmt, int rows, int cols, int group, int offsets) {
    sl_qw_alloc(w, fmt, rows, cols, group, offsets);
    const int64_t n = (int64_t)rows * cols;
    switch (fmt) {
    case SL_WF_F32:
        for (int64_t i = 0; i < n; i++) ((float *)w->data)[i] = rnd();
        break;
    case SL_WF_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)w->data)[i] = sl_f32_to_fp16(rnd() * 4.0f);
        break;
    case SL_WF_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)w->data)[i] = sl_f32_to_bf16(rnd() * 4.0f);
        break;
    case SL_WF_QW8:
    case SL_WF_QW4: {
        const int64_t bytes = fmt == SL_WF_QW8 ? n : n / 2, groups = n / group;
        for (int64_t i = 0; i < bytes; i++) ((uint8_t *)w->codes)[i] = (uint8_t)sl_rng_u64(&g_rng);
        for (int64_t g = 0; g < groups; g++) {
            w->scales[g] = rnd() * 0.03f;
            if (offsets) w->offsets[g] = rnd() * 0.2f;
        }
        break;
    }
    }
}

/* off: floats of misalignment of y (forces the one-element path) */
static void embed_case(sl_wfmt fmt, int rows, int cols, int group, int offsets, int T, int off) {
    sl_qw w;
    random_table(&w, fmt, rows, cols, group, offsets);
    int32_t *tok = sl_xmalloc((size_t)T * sizeof(int32_t));
    for (int t = 0; t < T; t++) tok[t] = rnd_int(rows);
    tok[0] = 0;
    tok[T - 1] = rows - 1; /* both ends of the table */
    const int64_t n = (int64_t)T * cols;
    float *ref = sl_xmalloc((size_t)n * sizeof(float));
    float *got = sl_xmalloc((size_t)n * sizeof(float));
    sl_bweight *bw = NULL;
    ASSERT_EQ(g_cpu->weight_create(g_cpu, &w, 0, &bw), 0);
    g_cpu->embed(g_cpu, bw, tok, ref, T);

    sl_cuda_weight dw;
    ASSERT_EQ(sl_cuda_weight_init(&dw, &w), 0);
    dbuf dtok = dev_from(tok, T, 0), dy = dev_alloc(n, off);
    sl_cuda_embed(&dw, (const int32_t *)dtok.p, dy.p, T, NULL);

    char what[128];
    snprintf(what, sizeof what, "embed %s rows=%d cols=%d group=%d%s T=%d off=%d",
             sl_wfmt_name(fmt), rows, cols, group, offsets ? " offsets" : "", T, off);
    dev_get(&dy, got);
    check_bits(what, got, ref, n, 4); /* the same dequantization, rounded the same way */
    dev_check_guards(&dy, what);

    dev_free(&dtok);
    dev_free(&dy);
    sl_cuda_weight_deinit(&dw);
    g_cpu->weight_destroy(g_cpu, bw);
    sl_qw_free(&w);
    free(tok), free(ref), free(got);
}

static void test_embed(void) {
    int cases = 0;
    /* plain tables: four per thread when cols % 4 == 0, else one; past 16 slices of 256
     * threads a thread loops (cols 5001 scalar, 16388 vectorized) */
    static const int float_cols[] = {1, 3, 4, 100, 1002, 4096, 5001, 16388};
    for (int f = SL_WF_F32; f <= SL_WF_BF16; f++)
        for (size_t c = 0; c < sizeof float_cols / sizeof *float_cols; c++, cases++)
            embed_case((sl_wfmt)f, 11, float_cols[c], 0, 0, c % 2 ? 5 : 3, (int)(c % 3 == 2));
    /* quantized tables: groups 16/32/128, with and without offsets; groups of 6 and 2 (allowed
     * for tests) take the one-element path, as does a misaligned y */
    static const int groups[] = {16, 32, 128};
    for (int f = SL_WF_QW8; f <= SL_WF_QW4; f++)
        for (int o = 0; o < 2; o++) {
            for (size_t g = 0; g < 3; g++) {
                embed_case((sl_wfmt)f, 9, groups[g], groups[g], o, 4, 0);
                embed_case((sl_wfmt)f, 13, 3 * groups[g], groups[g], o, 7, 0);
                embed_case((sl_wfmt)f, 6, 4096 + groups[g], groups[g], o, 3, (int)g % 2);
                cases += 3;
            }
            embed_case((sl_wfmt)f, 5, 18, 6, o, 4, 0);
            embed_case((sl_wfmt)f, 5, 10, 2, o, 3, 0);
            cases += 2;
        }
    embed_case(SL_WF_QW4, 300, 256, 32, 1, 65, 0); /* many tokens */

    /* T == 0 launches nothing and touches nothing */
    sl_qw w;
    random_table(&w, SL_WF_F32, 4, 64, 0, 0);
    sl_cuda_weight dw;
    ASSERT_EQ(sl_cuda_weight_init(&dw, &w), 0);
    dbuf dtok = dev_alloc(1, 0), dy = dev_alloc(64, 0);
    sl_cuda_embed(&dw, (const int32_t *)dtok.p, dy.p, 0, NULL);
    uint32_t h[64];
    dev_get(&dy, h);
    for (int i = 0; i < 64; i++) ASSERT_EQ(h[i], 0xffffffffu);
    dev_free(&dtok), dev_free(&dy);
    sl_cuda_weight_deinit(&dw);
    sl_cuda_weight_deinit(&dw); /* a zeroed weight: no-op */
    sl_qw_free(&w);
    printf("embed: %d cases ok\n", cases + 2);
}

/* ---- kv_write -------------------------------------------------------------------------------- */

/* f16: the fp16 cache; off: floats of misalignment of the inputs and caches (one-element path) */
static void kv_write_case(int f16, int n_blocks, int block_size, int kv_dim, int T, int off) {
    const int n_slots = n_blocks * block_size;
    const int64_t n_in = (int64_t)T * kv_dim, n_cache = (int64_t)n_slots * kv_dim;
    float *k = rnd_vec(n_in, 1.0f), *v = rnd_vec(n_in, 1.0f);
    if (f16) /* magnitudes from fp16 underflow through subnormals to overflow */
        for (int64_t i = 0; i < n_in; i++) {
            k[i] = ldexpf(k[i], rnd_int(44) - 26);
            v[i] = ldexpf(v[i], rnd_int(44) - 26);
        }
    /* distinct slots past the null block, in random order */
    ASSERT(T <= n_slots - block_size);
    int32_t *all = sl_xmalloc((size_t)n_slots * sizeof(int32_t));
    for (int i = 0; i < n_slots - block_size; i++) all[i] = block_size + i;
    for (int i = n_slots - block_size - 1; i > 0; i--) {
        int j = rnd_int(i + 1), x = all[i];
        all[i] = all[j], all[j] = x;
    }
    /* the reference: poisoned caches, the CPU backend's copy, then rounding for fp16 */
    float *kref = sl_xmalloc((size_t)n_cache * 4), *vref = sl_xmalloc((size_t)n_cache * 4);
    memset(kref, 0xff, (size_t)n_cache * 4);
    memset(vref, 0xff, (size_t)n_cache * 4);
    g_cpu->kv_write(g_cpu, kref, vref, k, v, all, T, kv_dim);

    const int64_t words = f16 ? (n_cache + 1) / 2 : n_cache; /* 4-byte elements of a cache */
    uint16_t *kref16 = NULL, *vref16 = NULL;
    if (f16) {
        kref16 = sl_xmalloc((size_t)words * 4);
        vref16 = sl_xmalloc((size_t)words * 4);
        memset(kref16, 0xff, (size_t)words * 4);
        memset(vref16, 0xff, (size_t)words * 4);
        for (int t = 0; t < T; t++)
            for (int d = 0; d < kv_dim; d++) {
                int64_t i = (int64_t)all[t] * kv_dim + d;
                kref16[i] = sl_f32_to_fp16(kref[i]);
                vref16[i] = sl_f32_to_fp16(vref[i]);
            }
    }

    dbuf dk = dev_from(k, n_in, off), dv = dev_from(v, n_in, off), ds = dev_from(all, T, 0);
    dbuf dkc = dev_alloc(words, off), dvc = dev_alloc(words, off);
    if (f16)
        sl_cuda_kv_write_f16((uint16_t *)dkc.p, (uint16_t *)dvc.p, dk.p, dv.p,
                             (const int32_t *)ds.p, T, kv_dim, NULL);
    else
        sl_cuda_kv_write(dkc.p, dvc.p, dk.p, dv.p, (const int32_t *)ds.p, T, kv_dim, NULL);

    char what[128];
    snprintf(what, sizeof what, "kv_write%s blocks=%d block_size=%d kv_dim=%d T=%d off=%d",
             f16 ? "_f16" : "", n_blocks, block_size, kv_dim, T, off);
    void *got = sl_xmalloc((size_t)words * 4);
    /* the whole cache: written slots hold the rows, every other slot is untouched */
    dev_get(&dkc, got);
    check_bits(what, got, f16 ? (void *)kref16 : (void *)kref, words, 4);
    dev_get(&dvc, got);
    check_bits(what, got, f16 ? (void *)vref16 : (void *)vref, words, 4);
    dev_check_guards(&dkc, what);
    dev_check_guards(&dvc, what);

    dev_free(&dk), dev_free(&dv), dev_free(&ds), dev_free(&dkc), dev_free(&dvc);
    free(k), free(v), free(all), free(kref), free(vref), free(kref16), free(vref16), free(got);
}

static void test_kv_write(void) {
    /* four per thread when kv_dim % 4 == 0 and aligned, else one; several slices per row past
     * 256 threads, loops past 16 slices (kv_dim 4099 scalar, 16400 vectorized) */
    static const int dims[] = {1, 3, 8, 64, 130, 640, 1024, 4099, 16400};
    int cases = 0;
    for (int f16 = 0; f16 < 2; f16++)
        for (size_t d = 0; d < sizeof dims / sizeof *dims; d++)
            for (int off = 0; off < 2; off++, cases++)
                kv_write_case(f16, 5, d % 2 ? 16 : 4, dims[d], d % 3 ? 7 : 3, off);
    kv_write_case(0, 40, 16, 128, 600, 0); /* many tokens */
    kv_write_case(1, 40, 16, 128, 600, 0);
    printf("kv_write: %d cases ok\n", cases + 2);
}

int main(void) {
    int skip = harness_begin("test_cuda_ops", 20250301);
    if (skip) return skip;
    double t0 = sl_time_s();
    g_cpu = sl_cpu_backend_create(1);
    test_rmsnorm();
    test_rope();
    test_swiglu();
    test_embed();
    test_kv_write();
    g_cpu->destroy(g_cpu);
    printf("test_cuda_ops: ok (%ld checks, %.1f s)\n", g_checks, sl_time_s() - t0);
    return 0;
}
