/* test_cpu_ops.c — every op of the CPU backend against a plain double-precision reference
 * written here, on random non-zero inputs and ragged sizes, through the SIMD and the scalar
 * kernels and with pools of 1 and 3 threads. matmul must also be batch invariant: the same
 * bits from every kernel, thread count and batch size. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/cpu_matmul.h"
#include "tests/test.h"

#define NBE 4
/* pool 1 best SIMD (AVX-512VL registers where the CPU has them), pool 1 scalar, pool 3 AVX2
 * only, pool 3 scalar */
static sl_backend *g_be[NBE];
static const char *g_be_name[NBE] = {"1 thread simd", "1 thread scalar", "3 threads avx2",
                                     "3 threads scalar"};
static sl_rng g_rng;
static long g_checks;

/* uniform in ±[0.1, 1): never zero */
static float rnd(void) {
    float v = 0.1f + 0.9f * sl_rng_f32(&g_rng);
    return (sl_rng_u64(&g_rng) & 1) ? v : -v;
}
static int rnd_int(int n) { return (int)(sl_rng_u64(&g_rng) % (uint64_t)n); }

static float *rnd_vec(int64_t n, float scale) {
    float *v = sl_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = rnd() * scale;
    return v;
}

/* Backend buffer holding a copy of host data (freed with be->free). */
static void *to_be(sl_backend *be, const void *src, size_t bytes) {
    void *p = be->alloc(be, bytes);
    ASSERT(p != NULL);
    ASSERT_EQ((uintptr_t)p % 64, 0);
    be->upload(be, p, src, bytes);
    return p;
}

/* |got − ref| <= abs + |ref|·rel, reporting the op and the index */
static void check(const char *what, int64_t i, double got, double ref, double abs_tol,
                  double rel) {
    g_checks++;
    if (!(fabs(got - ref) <= abs_tol + fabs(ref) * rel)) {
        fprintf(stderr, "%s: element %lld: got %.9g, want %.9g (diff %.3g, tol %.3g)\n", what,
                (long long)i, got, ref, fabs(got - ref), abs_tol + fabs(ref) * rel);
        abort();
    }
}

/* got and want have the same bits (batch invariance), reporting the op and the index */
static void check_bits(const char *what, int64_t i, float got, float want) {
    g_checks++;
    uint32_t a, b;
    memcpy(&a, &got, 4);
    memcpy(&b, &want, 4);
    if (a != b) {
        fprintf(stderr, "%s: element %lld: got %.9g (0x%08x), want %.9g (0x%08x) bit for bit\n",
                what, (long long)i, got, a, want, b);
        abort();
    }
}

/* ---- weights and their reference --------------------------------------------------------- */

static void make_weight(sl_qw *w, sl_wfmt fmt, int64_t rows, int64_t cols, int group, int off) {
    sl_qw_alloc(w, fmt, rows, cols, group, off);
    int64_t n = rows * cols;
    switch (fmt) {
    case SL_WF_F32:
        for (int64_t i = 0; i < n; i++) ((float *)w->data)[i] = rnd() * 0.1f;
        break;
    case SL_WF_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)w->data)[i] = sl_f32_to_fp16(rnd() * 0.1f);
        break;
    case SL_WF_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)w->data)[i] = sl_f32_to_bf16(rnd() * 0.1f);
        break;
    case SL_WF_QW8:
    case SL_WF_QW4: {
        int64_t nb = rows * sl_qw_row_bytes(w), ng = rows * (cols / group);
        for (int64_t i = 0; i < nb; i++) ((uint8_t *)w->codes)[i] = (uint8_t)sl_rng_u64(&g_rng);
        for (int64_t i = 0; i < ng; i++) w->scales[i] = rnd() * (fmt == SL_WF_QW8 ? 1e-3f : 2e-2f);
        if (off)
            for (int64_t i = 0; i < ng; i++) w->offsets[i] = rnd() * 0.05f;
        break;
    }
    }
}

/* Row r of w in double, from qw.h's definition (independent of sl_qw_dequant_row). */
static void ref_row(const sl_qw *w, int64_t r, double *dst) {
    int64_t n = w->cols;
    for (int64_t i = 0; i < n; i++) {
        switch (w->fmt) {
        case SL_WF_F32: dst[i] = ((const float *)w->data)[r * n + i]; break;
        case SL_WF_F16: dst[i] = sl_fp16_to_f32(((const uint16_t *)w->data)[r * n + i]); break;
        case SL_WF_BF16: {
            uint32_t u = (uint32_t)((const uint16_t *)w->data)[r * n + i] << 16;
            float f;
            memcpy(&f, &u, 4);
            dst[i] = f;
            break;
        }
        case SL_WF_QW8:
        case SL_WF_QW4: {
            int64_t g = r * (n / w->group) + i / w->group;
            double c;
            if (w->fmt == SL_WF_QW8) {
                c = ((const int8_t *)w->codes)[r * n + i];
            } else {
                uint8_t b = ((const uint8_t *)w->codes)[r * (n / 2) + i / 2];
                c = (i % 2 == 0) ? (b & 15) : (b >> 4);
                if (!w->offsets) c -= 8;
            }
            dst[i] = (double)w->scales[g] * c + (w->offsets ? (double)w->offsets[g] : 0.0);
            break;
        }
        }
    }
}

/* w on backend b as a borrowed view: the scalar backends (odd b) alias it, the SIMD ones copy */
static sl_bweight *bweight(int b, const sl_qw *w) {
    sl_bweight *bw;
    sl_qw view = *w;
    view.owns = 0;
    ASSERT_EQ(g_be[b]->weight_create(g_be[b], &view, b & 1, &bw), 0);
    return bw;
}

/* ---- matmul ------------------------------------------------------------------------------- */

static int g_i8; /* the backends quantize activations to int8 (sl_cpu_backend_set_int8_activations) */

/* x as the int8 kernels see it, in double: q·d per 32 columns, d = amax / 127 and q the
 * nearest integer (ties to even) of x · (127 / amax), 0 where that factor overflows, written
 * from cpu_matmul.c's definition (finite x). */
static void i8_dequant(const float *x, int64_t n, double *xq) {
    for (int64_t u = 0; u < n; u += 32) {
        float amax = 0;
        for (int k = 0; k < 32; k++) amax = fabsf(x[u + k]) > amax ? fabsf(x[u + k]) : amax;
        float d = amax / 127.0f, id = isfinite(127.0f / amax) ? 127.0f / amax : 0.0f;
        for (int k = 0; k < 32; k++) xq[u + k] = (double)rintf(x[u + k] * id) * d;
    }
}

static void test_matmul_case(sl_wfmt fmt, int64_t rows, int64_t cols, int group, int off, int T) {
    sl_qw w;
    make_weight(&w, fmt, rows, cols, group, off);
    float *x = rnd_vec(T * cols, 1.0f);
    double *ref = sl_xmalloc((size_t)(T * rows) * sizeof(double));
    double *tol = sl_xmalloc((size_t)(T * rows) * sizeof(double));
    double *wr = sl_xmalloc((size_t)cols * sizeof(double));
    /* int8 activations: ref is the product with x as quantized, exact the product with x,
     * within the rounding of x */
    const int i8 = g_i8 && sl__mmq_covers(&w);
    double *xq = i8 ? sl_xmalloc((size_t)(T * cols) * sizeof(double)) : NULL;
    double *exact = i8 ? sl_xmalloc((size_t)(T * rows) * sizeof(double)) : NULL;
    double *qtol = i8 ? sl_xmalloc((size_t)(T * rows) * sizeof(double)) : NULL;
    if (i8)
        for (int t = 0; t < T; t++) i8_dequant(x + t * cols, cols, xq + t * cols);
    for (int64_t r = 0; r < rows; r++) {
        ref_row(&w, r, wr);
        for (int t = 0; t < T; t++) {
            double s = 0, s2 = 0, se = 0, bound = 0;
            for (int64_t i = 0; i < cols; i++) {
                double xi = x[t * cols + i], p = wr[i] * xi;
                if (i8) {
                    se += p;
                    bound += fabs(wr[i]) * fabs(xi - xq[t * cols + i]);
                    p = wr[i] * xq[t * cols + i];
                }
                s += p;
                s2 += p * p;
            }
            ref[t * rows + r] = s;
            tol[t * rows + r] = 1e-5 * sqrt(s2); /* the size of a typical result */
            if (i8) {
                exact[t * rows + r] = se;
                qtol[t * rows + r] = bound + tol[t * rows + r];
            }
        }
    }
    char what[160];
    float *y0 = sl_xmalloc((size_t)(T * rows) * 4); /* backend 0's result */
    for (int b = 0; b < NBE; b++) {
        sl_backend *be = g_be[b];
        sl_bweight *bw = bweight(b, &w);
        float *xb = to_be(be, x, (size_t)(T * cols) * 4);
        float *yb = be->alloc(be, (size_t)(T * rows) * 4);
        float *y = sl_xmalloc((size_t)(T * rows) * 4);
        be->matmul(be, bw, xb, yb, T);
        be->sync(be);
        be->download(be, y, yb, (size_t)(T * rows) * 4);
        snprintf(what, sizeof what, "matmul %s rows %lld cols %lld group %d%s T %d (%s)",
                 sl_wfmt_name(fmt), (long long)rows, (long long)cols, group,
                 off ? " offsets" : "", T, g_be_name[b]);
        for (int64_t i = 0; i < T * rows; i++) check(what, i, y[i], ref[i], tol[i], 1e-5);
        if (i8) {
            snprintf(what, sizeof what, "matmul %s rows %lld cols %lld group %d%s T %d (%s) int8 against f32 x",
                     sl_wfmt_name(fmt), (long long)rows, (long long)cols, group, off ? " offsets" : "", T, g_be_name[b]);
            for (int64_t i = 0; i < T * rows; i++) check(what, i, y[i], exact[i], qtol[i], 1e-5);
        }
        /* batch invariance: every backend (SIMD or scalar, 1 or 3 threads) gives the same
         * bits, and so does each token run alone (T = 1 takes the fused kernel, larger T the
         * tiled one) */
        if (b == 0) memcpy(y0, y, (size_t)(T * rows) * 4);
        for (int64_t i = 0; i < T * rows; i++) check_bits(what, i, y[i], y0[i]);
        if (T > 1)
            for (int t = 0; t < T; t++) {
                be->matmul(be, bw, xb + (int64_t)t * cols, yb, 1);
                be->sync(be);
                be->download(be, y, yb, (size_t)rows * 4);
                snprintf(what, sizeof what, "matmul %s rows %lld cols %lld group %d%s token %d of %d alone (%s)",
                         sl_wfmt_name(fmt), (long long)rows, (long long)cols, group,
                         off ? " offsets" : "", t, T, g_be_name[b]);
                for (int64_t r = 0; r < rows; r++) check_bits(what, r, y[r], y0[t * rows + r]);
            }
        free(y);
        be->free(be, yb);
        be->free(be, xb);
        be->weight_destroy(be, bw);
    }
    free(y0);
    free(qtol);
    free(exact);
    free(xq);
    free(wr);
    free(tol);
    free(ref);
    free(x);
    sl_qw_free(&w);
}

static void test_matmul(void) {
    /* 64-column blocks with and without a tail, single partial blocks, and cols % 8 != 0 */
    static const int64_t cols_list[] = {20, 32, 96, 160, 1344, 1376, 4096};
    /* 16/32/128 are the real ones; 8 and 64 take other SIMD lane layouts; 4, 12 and 24 are
     * groups the SIMD kernels hand to the scalar one */
    static const int groups[] = {4, 8, 12, 16, 24, 32, 64, 128};
    static const int Ts[] = {1, 2, 3, 4, 5, 7};
    int n = 0;
    for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++) {
        int64_t cols = cols_list[ci];
        int64_t rows_list[3] = {1, 7, 37};
        if (cols == 4096) rows_list[0] = 5;
        for (int ri = 0; ri < 3; ri++) {
            int64_t rows = rows_list[ri];
            for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
                int T = Ts[ti];
                for (int f = SL_WF_F32; f <= SL_WF_BF16; f++, n++)
                    test_matmul_case((sl_wfmt)f, rows, cols, 0, 0, T);
                for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
                    int g = groups[gi];
                    if (cols % g) continue;
                    /* the groups that bypass the SIMD kernels only on a few small shapes */
                    if ((g == 4 || g == 12 || g == 24) && (cols > 160 || T > 3)) continue;
                    for (int off = 0; off < 2; off++) {
                        test_matmul_case(SL_WF_QW8, rows, cols, g, off, T);
                        test_matmul_case(SL_WF_QW4, rows, cols, g, off, T);
                        n += 2;
                    }
                }
            }
        }
    }
    /* larger: many tiles per thread, tokens spanning several register blocks */
    test_matmul_case(SL_WF_QW4, 203, 4096, 32, 0, 16);
    test_matmul_case(SL_WF_QW8, 203, 1344, 32, 1, 16);
    test_matmul_case(SL_WF_F16, 77, 4096, 0, 0, 16);
    test_matmul_case(SL_WF_F32, 77, 4096, 0, 0, 16);
    /* whole panels of 8 rows, and a group of 96 (a multiple of 32, not a power of two) */
    test_matmul_case(SL_WF_QW4, 16, 192, 96, 0, 5);
    test_matmul_case(SL_WF_QW8, 24, 288, 96, 1, 9);
    test_matmul_case(SL_WF_QW4, 8, 1024, 32, 1, 1);
    test_matmul_case(SL_WF_QW8, 32, 512, 16, 0, 4);
    printf("matmul%s: %d shapes ok\n", g_i8 ? " (int8 activations)" : "", n + 8);
}

/* The activation quantizer, scalar and AVX2, on blocks with ties, zeros, tiny values (127 /
 * amax overflows: all codes 0), subnormals, huge values, inf and NaN: the same q, d and sums,
 * and q as defined. */
static void test_quant_unit(void) {
    float blocks[9][32];
    for (int k = 0; k < 32; k++) {
        blocks[0][k] = k ? (float)(k % 7) - 3.5f : 127.0f;          /* ties */
        blocks[1][k] = 0;                                             /* zero */
        blocks[2][k] = k % 3 ? 1e-38f * (float)(k % 5) : 0.0f;        /* tiny */
        blocks[3][k] = k % 2 ? 1e-45f * (float)k : -0.0f;             /* subnormal */
        blocks[4][k] = 3e38f * (k % 2 ? 1 : -1) / (float)(k + 1);     /* huge */
        blocks[5][k] = rnd();
        blocks[6][k] = rnd();
        blocks[7][k] = rnd();
        blocks[8][k] = rnd() * 1e-30f;
    }
    blocks[6][9] = -INFINITY;
    blocks[7][30] = NAN;
    for (int b = 0; b < 9; b++) {
        int8_t q[2][32];
        float d[2];
        int32_t s4[2][8];
        sl__mmq_quant_unit(blocks[b], q[0], &d[0], s4[0]);
        if (sl__cpu_simd_available()) sl__mmq_quant_unit_avx2(blocks[b], q[1], &d[1], s4[1]);
        else memcpy(q[1], q[0], sizeof q[0]), d[1] = d[0], memcpy(s4[1], s4[0], sizeof s4[0]);
        float amax = 0;
        for (int k = 0; k < 32; k++) amax = fabsf(blocks[b][k]) > amax ? fabsf(blocks[b][k]) : amax;
        const int bad = b == 6 || b == 7;
        const float id = isfinite(127.0f / amax) ? 127.0f / amax : 0.0f;
        for (int k = 0; k < 32; k++) {
            int want = bad ? 0 : (int)rintf(blocks[b][k] * id);
            g_checks += 2;
            if (q[0][k] != want || q[1][k] != want) {
                fprintf(stderr, "quant block %d element %d (%g): q %d (scalar) %d (avx2), want %d\n", b, k,
                        blocks[b][k], q[0][k], q[1][k], want);
                abort();
            }
        }
        for (int l = 0; l < 8; l++) ASSERT_EQ(s4[0][l], q[0][4 * l] + q[0][4 * l + 1] + q[0][4 * l + 2] + q[0][4 * l + 3]);
        ASSERT(memcmp(s4[0], s4[1], sizeof s4[0]) == 0);
        if (bad) ASSERT(isnan(d[0]) && isnan(d[1]));
        else check_bits("quant d", b, d[1], d[0]), check_bits("quant d, definition", b, d[0], amax / 127.0f);
    }
    printf("activation quantizer: 9 special blocks ok\n");
}

/* int8 activations, special blocks: token 0 has a block so small that 127 / amax overflows,
 * a zero block and one of exact rounding ties, and must give the same bits on every kernel,
 * alone or not, matching the reference; a non-finite activation (tokens 1 and 2) makes its
 * token's results NaN (its block's scale is NaN) and leaves token 0 alone. */
static void test_matmul_nonfinite(void) {
    const int64_t rows = 19, cols = 128;
    const int T = 3;
    for (int f = SL_WF_QW8; f <= SL_WF_QW4; f++)
        for (int off = 0; off < 2; off++) {
            sl_qw w;
            make_weight(&w, (sl_wfmt)f, rows, cols, 32, off);
            float *x = rnd_vec(T * cols, 1.0f), y00[19];
            for (int k = 0; k < 32; k++) {
                x[k] = k % 3 ? 1e-38f * (float)(k % 5) : 0.0f; /* amax 4e-38: 127 / amax = inf */
                x[32 + k] = 0;
                x[64 + k] = k ? (float)(k % 7) - 3.5f : 127.0f; /* x · 1 = n + 0.5: ties */
            }
            x[cols + 40] = (off ? -1 : 1) * INFINITY;
            x[2 * cols + 7] = NAN;
            double xq[128], ref[19];
            i8_dequant(x, cols, xq);
            double *wr = sl_xmalloc((size_t)cols * sizeof(double));
            for (int64_t r = 0; r < rows; r++) {
                ref_row(&w, r, wr);
                ref[r] = 0;
                for (int64_t i = 0; i < cols; i++) ref[r] += wr[i] * xq[i];
            }
            free(wr);
            for (int b = 0; b < NBE; b++) {
                sl_backend *be = g_be[b];
                sl_bweight *bw = bweight(b, &w);
                float *xb = to_be(be, x, (size_t)(T * cols) * 4), *yb = be->alloc(be, (size_t)(T * rows) * 4);
                float y[3 * 19], y0[19];
                be->matmul(be, bw, xb, yb, T);
                be->download(be, y, yb, sizeof y);
                be->matmul(be, bw, xb, yb, 1);
                be->download(be, y0, yb, sizeof y0);
                if (b == 0) memcpy(y00, y0, sizeof y00);
                for (int64_t r = 0; r < rows; r++) {
                    check("matmul int8, tiny, zero and tied blocks", r, y[r], ref[r], 1e-5, 1e-5);
                    check_bits("matmul int8, tiny, zero and tied blocks, every kernel", r, y0[r], y00[r]);
                    check_bits("matmul int8, the finite token beside non-finite ones", r, y[r], y0[r]);
                    g_checks += 2;
                    if (!isnan(y[rows + r]) || !isnan(y[2 * rows + r])) {
                        fprintf(stderr, "matmul int8 %s%s (%s): row %lld: %g and %g, want NaN for the tokens "
                                "with inf and NaN\n", sl_wfmt_name((sl_wfmt)f), off ? " offsets" : "",
                                g_be_name[b], (long long)r, y[rows + r], y[2 * rows + r]);
                        abort();
                    }
                }
                be->free(be, yb);
                be->free(be, xb);
                be->weight_destroy(be, bw);
            }
            free(x);
            sl_qw_free(&w);
        }
    printf("matmul (int8 activations): tiny, zero, tied and non-finite blocks ok\n");
}

/* ---- embed ------------------------------------------------------------------------------ */

/* With int8 activations the SIMD backends keep QW4/QW8 tables only as 8-row panels (rows 11:
 * a padded second panel), read back by sl__mmq_dequant_row: the same bits as the logical
 * format's sl_qw_dequant_row, for each group layout. */
static void test_embed(void) {
    const int rows = 11, T = 6;
    for (int i8 = 0; i8 < 2; i8++)
    for (int f = SL_WF_F32; f <= SL_WF_QW4; f++)
    for (int group = 8; group <= 32; group *= 2) {
        if ((group != 32 && f < SL_WF_QW8) || (!i8 && group != 32)) continue;
        for (int b = 0; b < NBE; b++) sl_cpu_backend_set_int8_activations(g_be[b], i8);
        for (int off = 0; off < 2; off++) {
            if (off && f < SL_WF_QW8) continue;
            int64_t cols = 96;
            sl_qw w;
            make_weight(&w, (sl_wfmt)f, rows, cols, group, off);
            int32_t tok[6] = {3, 0, 10, 3, 7, 1};
            double *ref = sl_xmalloc((size_t)cols * sizeof(double));
            float logical[96];
            for (int b = 0; b < NBE; b++) {
                sl_backend *be = g_be[b];
                sl_bweight *bw = bweight(b, &w);
                int32_t *tb = to_be(be, tok, sizeof tok);
                float *yb = be->alloc(be, (size_t)(T * cols) * 4), y[6 * 96];
                be->embed(be, bw, tb, yb, T);
                be->download(be, y, yb, sizeof y);
                for (int t = 0; t < T; t++) {
                    ref_row(&w, tok[t], ref);
                    sl_qw_dequant_row(&w, tok[t], logical);
                    for (int64_t i = 0; i < cols; i++) {
                        /* s·c rounds, then + o: up to an ulp of s·c each (|s·c| < 0.13) */
                        check("embed", t * cols + i, y[t * cols + i], ref[i], 2e-8, 1e-6);
                        check_bits("embed", t * cols + i, y[t * cols + i], logical[i]);
                    }
                }
                be->free(be, yb);
                be->free(be, tb);
                be->weight_destroy(be, bw);
            }
            free(ref);
            sl_qw_free(&w);
        }
    }
    for (int b = 0; b < NBE; b++) sl_cpu_backend_set_int8_activations(g_be[b], 0);
    printf("embed ok (f32 and int8 weights)\n");
}

/* ---- weight_create: copy vs alias ------------------------------------------------------------ */

static void test_weight_create(void) {
    sl_backend *be = g_be[0];
    sl_qw w;
    make_weight(&w, SL_WF_QW4, 8, 64, 32, 1);
    sl_qw view = w; /* borrowed memory, as a mapped file's would be */
    view.owns = 0;
    sl_bweight *copy, *alias, *owned;
    ASSERT_EQ(be->weight_create(be, &view, 0, &copy), 0);
    ASSERT_EQ(be->weight_create(be, &view, 1, &alias), 0);
    ASSERT(copy->q.codes != w.codes && copy->q.scales != w.scales && copy->q.offsets != w.offsets);
    ASSERT(alias->q.codes == w.codes && alias->q.owns == 0);
    /* an owning sl_qw is copied even when aliasing is allowed: its caller frees it */
    ASSERT_EQ(be->weight_create(be, &w, 1, &owned), 0);
    ASSERT(owned->q.codes != w.codes && owned->q.owns == 1);
    be->weight_destroy(be, owned);
    float x[64], y0[8], y1[8];
    for (int i = 0; i < 64; i++) x[i] = rnd();
    be->matmul(be, copy, x, y0, 1);
    be->matmul(be, alias, x, y1, 1);
    for (int i = 0; i < 8; i++) ASSERT(y0[i] == y1[i]);
    w.scales[0] *= 2; /* the alias sees it, the copy does not */
    be->matmul(be, copy, x, y1, 1);
    ASSERT(y0[0] == y1[0]);
    be->matmul(be, alias, x, y1, 1);
    ASSERT(y0[0] != y1[0]);
    be->weight_destroy(be, copy);
    be->weight_destroy(be, alias);
    sl_qw_free(&w);
    void *p = be->alloc(be, 0);
    ASSERT(p != NULL);
    be->free(be, p);
    printf("weight_create ok\n");
}

/* ---- rmsnorm, add, add_bias, swiglu, gather_rows, kv_write ------------------------------------- */

static void test_rmsnorm(void) {
    static const int Ds[] = {16, 96, 4096};
    for (int di = 0; di < 3; di++) {
        int D = Ds[di], T = di == 0 ? 2500 : 3; /* many short rows, as q/k norms do */
        float eps = 1e-5f;
        float *x = rnd_vec((int64_t)T * D, 2.0f), *g = rnd_vec(D, 1.0f);
        for (int b = 0; b < NBE; b++) {
            sl_backend *be = g_be[b];
            for (int inplace = 0; inplace < 2; inplace++) {
                float *xb = to_be(be, x, (size_t)T * D * 4), *gb = to_be(be, g, (size_t)D * 4);
                float *yb = inplace ? xb : be->alloc(be, (size_t)T * D * 4);
                float *y = sl_xmalloc((size_t)T * D * 4);
                be->rmsnorm(be, xb, gb, yb, T, D, eps);
                be->download(be, y, yb, (size_t)T * D * 4);
                for (int t = 0; t < T; t++) {
                    double ss = 0;
                    for (int i = 0; i < D; i++) ss += (double)x[t * D + i] * x[t * D + i];
                    double inv = 1.0 / sqrt(ss / D + eps);
                    for (int i = 0; i < D; i++)
                        check("rmsnorm", t * D + i, y[t * D + i], x[t * D + i] * inv * g[i],
                              1e-7, 2e-6);
                }
                free(y);
                if (!inplace) be->free(be, yb);
                be->free(be, gb);
                be->free(be, xb);
            }
        }
        free(g);
        free(x);
    }
    printf("rmsnorm ok\n");
}

static void test_elementwise(void) {
    const int64_t n = 100003; /* odd, and long enough to be split over threads */
    const int T = 7, N = 4099;
    float *a = rnd_vec(n, 4.0f), *c = rnd_vec(n, 1.0f), *y = sl_xmalloc((size_t)n * 4);
    float *bias = rnd_vec(N, 1.0f);
    for (int b = 0; b < NBE; b++) {
        sl_backend *be = g_be[b];
        /* add */
        float *xb = to_be(be, a, (size_t)n * 4), *cb = to_be(be, c, (size_t)n * 4);
        be->add(be, xb, cb, n);
        be->download(be, y, xb, (size_t)n * 4);
        for (int64_t i = 0; i < n; i++) check("add", i, y[i], (double)a[i] + c[i], 0, 1e-7);
        /* swiglu, out of place and in place */
        be->upload(be, xb, a, (size_t)n * 4);
        float *yb = be->alloc(be, (size_t)n * 4);
        for (int inplace = 0; inplace < 2; inplace++) {
            float *out = inplace ? xb : yb;
            be->swiglu(be, xb, cb, out, n);
            be->download(be, y, out, (size_t)n * 4);
            for (int64_t i = 0; i < n; i++) {
                double g = a[i];
                check("swiglu", i, y[i], g / (1.0 + exp(-g)) * c[i], 1e-9, 1e-6);
            }
        }
        /* add_bias over [T][N] */
        be->upload(be, xb, a, (size_t)T * N * 4);
        float *bb = to_be(be, bias, (size_t)N * 4);
        be->add_bias(be, xb, bb, T, N);
        be->download(be, y, xb, (size_t)T * N * 4);
        for (int64_t i = 0; i < (int64_t)T * N; i++)
            check("add_bias", i, y[i], (double)a[i] + bias[i % N], 0, 1e-7);
        /* gather_rows: rows of a [T][N] */
        int32_t idx[5] = {6, 0, 3, 3, 5};
        int32_t *ib = to_be(be, idx, sizeof idx);
        be->upload(be, xb, a, (size_t)T * N * 4);
        be->gather_rows(be, xb, ib, yb, 5, N);
        be->download(be, y, yb, (size_t)5 * N * 4);
        for (int i = 0; i < 5; i++)
            ASSERT(memcmp(y + (int64_t)i * N, a + (int64_t)idx[i] * N, (size_t)N * 4) == 0);
        be->free(be, ib);
        be->free(be, bb);
        be->free(be, yb);
        be->free(be, cb);
        be->free(be, xb);
    }
    free(bias);
    free(y);
    free(c);
    free(a);
    printf("add, add_bias, swiglu, gather_rows ok\n");
}

static void test_kv_write(void) {
    const int T = 5, kv_dim = 48, n_slots = 64;
    int32_t slots[5] = {17, 3, 40, 63, 16};
    float *k = rnd_vec(T * kv_dim, 1.0f), *v = rnd_vec(T * kv_dim, 1.0f);
    float *kc = sl_xmalloc((size_t)n_slots * kv_dim * 4), *vc = sl_xmalloc((size_t)n_slots * kv_dim * 4);
    for (int b = 0; b < NBE; b++) {
        sl_backend *be = g_be[b];
        float *kcb = be->alloc(be, (size_t)n_slots * kv_dim * 4);
        float *vcb = be->alloc(be, (size_t)n_slots * kv_dim * 4);
        for (int i = 0; i < n_slots * kv_dim; i++) kc[i] = vc[i] = 12345.0f;
        be->upload(be, kcb, kc, (size_t)n_slots * kv_dim * 4);
        be->upload(be, vcb, vc, (size_t)n_slots * kv_dim * 4);
        float *kb = to_be(be, k, (size_t)T * kv_dim * 4), *vb = to_be(be, v, (size_t)T * kv_dim * 4);
        int32_t *sb = to_be(be, slots, sizeof slots);
        be->kv_write(be, kcb, vcb, kb, vb, sb, T, kv_dim);
        be->download(be, kc, kcb, (size_t)n_slots * kv_dim * 4);
        be->download(be, vc, vcb, (size_t)n_slots * kv_dim * 4);
        for (int s = 0; s < n_slots; s++) {
            int t = -1;
            for (int i = 0; i < T; i++)
                if (slots[i] == s) t = i;
            for (int d = 0; d < kv_dim; d++) {
                ASSERT(kc[s * kv_dim + d] == (t < 0 ? 12345.0f : k[t * kv_dim + d]));
                ASSERT(vc[s * kv_dim + d] == (t < 0 ? 12345.0f : v[t * kv_dim + d]));
            }
        }
        be->free(be, sb);
        be->free(be, vb);
        be->free(be, kb);
        be->free(be, vcb);
        be->free(be, kcb);
    }
    free(vc);
    free(kc);
    free(v);
    free(k);
    printf("kv_write ok\n");
}

/* ---- rope ------------------------------------------------------------------------------- */

static void test_rope_case(sl_rope_mode mode, int head_dim, int n_rot, int with_freqs,
                           float freq_scale, int max_pos) {
    const int T = 5, H = 3;
    const float base = 10000.0f;
    int32_t pos[5];
    for (int t = 0; t < T; t++) pos[t] = t < 2 ? t + 1 : rnd_int(max_pos);
    float *x = rnd_vec(T * H * head_dim, 1.0f), *y = sl_xmalloc((size_t)T * H * head_dim * 4);
    float freqs[512];
    for (int i = 0; i < n_rot / 2; i++) freqs[i] = with_freqs ? 1.0f + 7.0f * sl_rng_f32(&g_rng) : 1.0f;
    /* θ as the spec forms it (f32 repeated multiplication, as ggml), rotation in double */
    double *th = sl_xmalloc((size_t)T * (n_rot / 2) * sizeof(double));
    for (int t = 0; t < T; t++) {
        float theta = (float)pos[t], step = powf(base, -2.0f / (float)n_rot);
        for (int i = 0; i < n_rot / 2; i++) {
            th[t * (n_rot / 2) + i] = freq_scale * (theta / freqs[i]);
            /* near position 0 the product form must agree with the closed form */
            double exact = pos[t] * (double)freq_scale * pow(base, -2.0 * i / n_rot) / freqs[i];
            if (pos[t] <= 2) check("rope theta", i, th[t * (n_rot / 2) + i], exact, 1e-9, 1e-5);
            theta *= step;
        }
    }
    for (int b = 0; b < NBE; b++) {
        sl_backend *be = g_be[b];
        float *xb = to_be(be, x, (size_t)T * H * head_dim * 4);
        int32_t *pb = to_be(be, pos, sizeof pos);
        float *fb = with_freqs ? to_be(be, freqs, (size_t)(n_rot / 2) * 4) : NULL;
        sl_rope_params rp = {mode, n_rot, base, freq_scale, fb};
        be->rope(be, xb, pb, T, H, head_dim, &rp);
        be->download(be, y, xb, (size_t)T * H * head_dim * 4);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                const float *xi = x + (t * H + h) * head_dim;
                const float *yi = y + (t * H + h) * head_dim;
                for (int i = 0; i < n_rot / 2; i++) {
                    int i0 = mode == SL_ROPE_NORM ? 2 * i : i;
                    int i1 = mode == SL_ROPE_NORM ? 2 * i + 1 : i + n_rot / 2;
                    double c = cos(th[t * (n_rot / 2) + i]), s = sin(th[t * (n_rot / 2) + i]);
                    double tol = 1e-6 * (fabs(xi[i0]) + fabs(xi[i1]));
                    check("rope x0", i0, yi[i0], xi[i0] * c - xi[i1] * s, tol, 1e-6);
                    check("rope x1", i1, yi[i1], xi[i0] * s + xi[i1] * c, tol, 1e-6);
                }
                for (int d = n_rot; d < head_dim; d++) ASSERT(yi[d] == xi[d]);
            }
        if (fb) be->free(be, fb);
        be->free(be, pb);
        be->free(be, xb);
    }
    free(th);
    free(y);
    free(x);
}

static void test_rope(void) {
    for (int mode = 0; mode < 2; mode++) {
        test_rope_case((sl_rope_mode)mode, 64, 64, 0, 1.0f, 5000);
        test_rope_case((sl_rope_mode)mode, 128, 128, 1, 1.0f, 130000);
        test_rope_case((sl_rope_mode)mode, 128, 32, 0, 0.25f, 5000);
        test_rope_case((sl_rope_mode)mode, 80, 64, 1, 0.5f, 5000);
    }
    printf("rope ok\n");
}

/* ---- attention ------------------------------------------------------------------------- */

typedef struct seq_spec { int q_len, ctx_len; } seq_spec;

static void test_attention_case(int H, int Hkv, int D, int bs, float qscale) {
    static const seq_spec specs[] = {
        {13, 45},  /* prefill chunk on top of existing context */
        {1, 70},   /* decode */
        {20, 20},  /* fresh prefill */
        {1, 1},    /* first token */
        {3, 300},  /* long context, several chunks */
        {1, 33},   /* decode across a block edge */
    };
    const int S = (int)(sizeof specs / sizeof *specs);
    int max_blocks = 0, n_tok = 0, used_blocks = 0;
    for (int s = 0; s < S; s++) {
        int nb = (specs[s].ctx_len + bs - 1) / bs;
        max_blocks = nb + 2 > max_blocks ? nb + 2 : max_blocks;
        n_tok += specs[s].q_len;
        used_blocks += nb;
    }
    const int n_blocks = used_blocks + 5; /* block 0 is the null block */
    const int64_t kvd = (int64_t)Hkv * D;
    /* shuffled block ids 1 .. n_blocks − 1, handed out in order: tables are non-contiguous */
    int *perm = sl_xmalloc((size_t)n_blocks * sizeof(int));
    for (int i = 0; i < n_blocks - 1; i++) perm[i] = i + 1;
    for (int i = n_blocks - 2; i > 0; i--) {
        int k = rnd_int(i + 1), tmp = perm[i];
        perm[i] = perm[k];
        perm[k] = tmp;
    }
    int32_t *bt = sl_xcalloc((size_t)S * max_blocks, sizeof(int32_t));
    int32_t q_start[8], q_len[8], ctx_len[8];
    int order[6] = {2, 0, 5, 1, 4, 3}; /* batch order differs from sequence order */
    int next = 0, tok = 0;
    for (int oi = 0; oi < S; oi++) {
        int s = order[oi];
        q_start[s] = tok;
        tok += specs[s].q_len;
    }
    for (int s = 0; s < S; s++) {
        q_len[s] = specs[s].q_len;
        ctx_len[s] = specs[s].ctx_len;
        for (int b = 0; b < (ctx_len[s] + bs - 1) / bs; b++) bt[s * max_blocks + b] = perm[next++];
    }
    float *kc = rnd_vec((int64_t)n_blocks * bs * kvd, 1.0f);
    float *vc = rnd_vec((int64_t)n_blocks * bs * kvd, 1.0f);
    float *q = rnd_vec((int64_t)n_tok * H * D, qscale);
    double *ref = sl_xmalloc((size_t)n_tok * H * D * sizeof(double));
    double *p = sl_xmalloc(400 * sizeof(double));
    const double scale = 1.0 / sqrt((double)D);
    for (int s = 0; s < S; s++)
        for (int i = 0; i < q_len[s]; i++) {
            int t = q_start[s] + i, pos = ctx_len[s] - q_len[s] + i;
            for (int h = 0; h < H; h++) {
                int kvh = h / (H / Hkv);
                const float *qh = q + ((int64_t)t * H + h) * D;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= pos; j++) {
                    int64_t row = (int64_t)bt[s * max_blocks + j / bs] * bs + j % bs;
                    const float *k = kc + row * kvd + kvh * D;
                    double d = 0;
                    for (int e = 0; e < D; e++) d += (double)qh[e] * k[e];
                    p[j] = d * (double)(float)scale;
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j <= pos; j++) sum += (p[j] = exp(p[j] - mx));
                double *o = ref + ((int64_t)t * H + h) * D;
                for (int e = 0; e < D; e++) o[e] = 0;
                for (int j = 0; j <= pos; j++) {
                    int64_t row = (int64_t)bt[s * max_blocks + j / bs] * bs + j % bs;
                    const float *v = vc + row * kvd + kvh * D;
                    for (int e = 0; e < D; e++) o[e] += p[j] / sum * v[e];
                }
            }
        }
    char what[128];
    snprintf(what, sizeof what, "attention H %d Hkv %d D %d bs %d qscale %g", H, Hkv, D, bs,
             (double)qscale);
    float *out = sl_xmalloc((size_t)n_tok * H * D * 4);
    for (int b = 0; b < NBE; b++) {
        sl_backend *be = g_be[b];
        float *kb = to_be(be, kc, (size_t)n_blocks * bs * kvd * 4);
        float *vb = to_be(be, vc, (size_t)n_blocks * bs * kvd * 4);
        float *qb = to_be(be, q, (size_t)n_tok * H * D * 4);
        float *ob = be->alloc(be, (size_t)n_tok * H * D * 4);
        int32_t *qsb = to_be(be, q_start, (size_t)S * 4), *qlb = to_be(be, q_len, (size_t)S * 4);
        int32_t *clb = to_be(be, ctx_len, (size_t)S * 4);
        int32_t *btb = to_be(be, bt, (size_t)S * max_blocks * 4);
        sl_attn_batch ab = {S, max_blocks, qsb, qlb, clb, btb, 0, 0};
        be->attention(be, qb, kb, vb, ob, &ab, H, Hkv, D, bs, (float)scale);
        be->download(be, out, ob, (size_t)n_tok * H * D * 4);
        for (int64_t i = 0; i < (int64_t)n_tok * H * D; i++) {
            char w2[160];
            if (!(fabs(out[i] - ref[i]) <= 1e-5 + 1e-5 * fabs(ref[i]))) {
                snprintf(w2, sizeof w2, "%s (%s)", what, g_be_name[b]);
                check(w2, i, out[i], ref[i], 1e-5, 1e-5);
            }
            g_checks++;
        }
        be->free(be, btb);
        be->free(be, clb);
        be->free(be, qlb);
        be->free(be, qsb);
        be->free(be, ob);
        be->free(be, qb);
        be->free(be, vb);
        be->free(be, kb);
    }
    free(out);
    free(p);
    free(ref);
    free(q);
    free(vc);
    free(kc);
    free(bt);
    free(perm);
}

static void test_attention(void) {
    static const int ratio[][2] = {{4, 4}, {4, 2}, {8, 2}, {16, 1}}; /* GQA 1, 2, 4, 16 */
    static const int Ds[] = {16, 64, 128, 20};
    int n = 0;
    for (int r = 0; r < 4; r++)
        for (int d = 0; d < 4; d++)
            for (int bs = 16; bs <= 32; bs += 16) {
                if (r == 3 && d != 2) continue;
                test_attention_case(ratio[r][0], ratio[r][1], Ds[d], bs, 1.0f);
                n++;
            }
    test_attention_case(8, 2, 64, 16, 8.0f); /* peaked softmax: scores up to ~±60 */
    test_attention_case(4, 2, 128, 32, 8.0f);
    test_attention_case(8, 4, 64, 64, 1.0f); /* blocks longer than a softmax chunk */
    printf("attention: %d configurations ok\n", n + 3);
}

int main(void) {
    sl_rng_seed(&g_rng, 20240611);
    int simd = sl__cpu_simd_available();
    for (int b = 0; b < NBE; b++) {
        g_be[b] = sl_cpu_backend_create(b < 2 ? 1 : 3);
        ASSERT(g_be[b] != NULL);
        sl__cpu_set_simd(g_be[b], b == 0 ? 3 : b == 2 ? 1 : 0);
    }
    if (!simd) printf("warning: this CPU lacks AVX2/FMA/F16C; only the scalar kernels ran\n");
    double t0 = sl_time_s();
    test_weight_create();
    test_embed();
    test_rmsnorm();
    test_elementwise();
    test_kv_write();
    test_rope();
    test_attention();
    test_matmul();
    g_i8 = 1;
    for (int b = 0; b < NBE; b++) sl_cpu_backend_set_int8_activations(g_be[b], 1);
    test_matmul();
    test_quant_unit();
    test_matmul_nonfinite();
    for (int b = 0; b < NBE; b++) g_be[b]->destroy(g_be[b]);
    printf("test_cpu_ops: ok (%ld checks, simd %s, %.1f s)\n", g_checks,
           simd == 3 ? "avx2 + avx512vl registers + vnni" : simd == 2 ? "avx2 + avx512vl registers" : simd ? "avx2" : "no",
           sl_time_s() - t0);
    return 0;
}
