/* test_cuda_blas.c — the cuBLAS calls sluice uses (cublasCreate/Destroy/SetStream/GetStream,
 * cublasSgemm, cublasGemmEx with f16/bf16/f32 and CUBLAS_COMPUTE_32F) against a plain C GEMM:
 * both transposes, ragged sizes, padded leading dimensions, α and β (β == 0 must not read C,
 * which is poisoned with NaN), and the argument errors cuBLAS reports.
 *
 * Emulated (kernels/emu/emu_blas.cpp) in CI; on a GPU the same test runs against the real
 * cuBLAS, which confirms that the emulation means what cuBLAS means.
 */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "tests/kernels/test_cuda_harness.h"

#define BLAS_OK(call) ASSERT_EQ((call), CUBLAS_STATUS_SUCCESS)

static cublasHandle_t g_h;

/* bits of one element of type t */
static uint16_t to16(cudaDataType t, float f) {
    return t == CUDA_R_16BF ? sl_f32_to_bf16(f) : sl_f32_to_fp16(f);
}
static float from16(cudaDataType t, uint16_t h) {
    return t == CUDA_R_16BF ? sl_bf16_to_f32(h) : sl_fp16_to_f32(h);
}

/* A column-major rows×cols matrix with leading dimension ld, of type t, filled with random
 * values (the padding too: a GEMM that reads it gets a wrong answer); val gets the exact
 * values. Returns the host bits (caller frees). */
static void *rnd_matrix(cudaDataType t, int rows, int cols, int ld, float *val) {
    const size_t n = (size_t)ld * (size_t)(cols > 0 ? cols : 1); /* never empty */
    void *h = sl_xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        float f = rnd();
        if (t == CUDA_R_32F) ((float *)h)[i] = f;
        else ((uint16_t *)h)[i] = to16(t, f);
        val[i] = t == CUDA_R_32F ? f : from16(t, ((uint16_t *)h)[i]);
    }
    (void)rows;
    return h;
}

static dbuf dev_bytes(const void *host, size_t bytes) {
    dbuf b = dev_alloc((int64_t)(bytes + 3) / 4, 0);
    if (host) sl_cuda_upload(b.p, host, bytes);
    return b;
}

/* C = α·op(A)·op(B) + β·C through cublasGemmEx (or cublasSgemm when sgemm), checked against a
 * double-precision reference. beta == 0: C starts as NaN and must not be read. */
static void gemm_case(cudaDataType ab, cudaDataType ct, int sgemm, cublasOperation_t ta,
                      cublasOperation_t tb, int m, int n, int k, int pad, float alpha,
                      float beta) {
    const int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    const int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    const int lda = ar + pad, ldb = br + 2 * pad, ldc = m + pad;
    /* a matrix of no columns (k == 0) still gets one, unread, as rnd_matrix makes it */
    const size_t na = (size_t)lda * (ac > 0 ? ac : 1), nb = (size_t)ldb * (bc > 0 ? bc : 1);
    const size_t nc = (size_t)ldc * n;
    float *a = sl_xmalloc(na * 4), *b = sl_xmalloc(nb * 4), *c = sl_xmalloc(nc * 4);
    void *ha = rnd_matrix(ab, ar, ac, lda, a), *hb = rnd_matrix(ab, br, bc, ldb, b);
    void *hc = rnd_matrix(ct, m, n, ldc, c);
    const size_t es = ab == CUDA_R_32F ? 4 : 2, cs = ct == CUDA_R_32F ? 4 : 2;
    dbuf dA = dev_bytes(ha, na * es), dB = dev_bytes(hb, nb * es);
    dbuf dC = dev_bytes(beta != 0.0f ? hc : NULL, nc * cs); /* β == 0: left poisoned */

    if (sgemm)
        BLAS_OK(cublasSgemm(g_h, ta, tb, m, n, k, &alpha, dA.p, lda, dB.p, ldb, &beta, dC.p, ldc));
    else
        BLAS_OK(cublasGemmEx(g_h, ta, tb, m, n, k, &alpha, dA.p, ab, lda, dB.p, ab, ldb, &beta,
                             dC.p, ct, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));

    /* the m × n result, packed; the tolerance: f32 sums in any order, then C's rounding */
    const size_t nr = (size_t)m * n;
    float *ref = sl_xmalloc(nr * 4 + 4), *got = sl_xmalloc(nr * 4 + 4);
    unsigned char *raw = sl_xmalloc(nc * 4);
    sl_cuda_sync();
    sl_cuda_download(raw, dC.p, nc * cs);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            const size_t ci = (size_t)j * ldc + i;
            double s = 0;
            for (int p = 0; p < k; p++) {
                double x = ta == CUBLAS_OP_N ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double y = tb == CUBLAS_OP_N ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += x * y;
            }
            ref[(size_t)j * m + i] = (float)(alpha * s + (beta != 0.0f ? beta * (double)c[ci] : 0));
            got[(size_t)j * m + i] =
                ct == CUDA_R_32F ? ((float *)raw)[ci] : from16(ct, ((uint16_t *)raw)[ci]);
        }
    static const char *const tname[] = {[CUDA_R_32F] = "f32", [CUDA_R_16F] = "f16",
                                        [CUDA_R_16BF] = "bf16"};
    char what[160];
    snprintf(what, sizeof what, "%s A,B %s C %s op %c%c m=%d n=%d k=%d pad=%d alpha=%g beta=%g",
             sgemm ? "cublasSgemm" : "cublasGemmEx", tname[ab], tname[ct],
             ta == CUBLAS_OP_N ? 'N' : 'T', tb == CUBLAS_OP_N ? 'N' : 'T', m, n, k, pad,
             (double)alpha, (double)beta);
    const double rel = ct == CUDA_R_32F ? 1e-5 : ct == CUDA_R_16F ? 1.5e-3 : 1e-2;
    check_close(what, got, ref, (int64_t)nr, 3e-6 * (k + 1) * (fabs(alpha) + 1), rel);
    if (beta != 0.0f) /* rows past m are padding: untouched */
        for (int j = 0; j < n; j++) {
            const size_t at = ((size_t)j * ldc + m) * cs;
            ASSERT(memcmp(raw + at, (unsigned char *)hc + at, (size_t)(ldc - m) * cs) == 0);
        }
    dev_check_guards(&dC, what);

    dev_free(&dA), dev_free(&dB), dev_free(&dC);
    free(a), free(b), free(c), free(ha), free(hb), free(hc), free(ref), free(got), free(raw);
}

static void test_gemm(void) {
    static const cudaDataType types[][2] = {{CUDA_R_32F, CUDA_R_32F}, {CUDA_R_16F, CUDA_R_32F},
                                            {CUDA_R_16F, CUDA_R_16F}, {CUDA_R_16BF, CUDA_R_32F},
                                            {CUDA_R_16BF, CUDA_R_16BF}};
    static const int sizes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 64}, {64, 48, 100}};
    int cases = 0;
    for (int op = 0; op < 4; op++) {
        cublasOperation_t ta = op & 1 ? CUBLAS_OP_T : CUBLAS_OP_N;
        cublasOperation_t tb = op & 2 ? CUBLAS_OP_T : CUBLAS_OP_N;
        for (size_t s = 0; s < 4; s++, cases++) {
            const int m = sizes[s][0], n = sizes[s][1], k = sizes[s][2], pad = (int)s % 3;
            gemm_case(CUDA_R_32F, CUDA_R_32F, 1, ta, tb, m, n, k, pad, 1.0f, 0.0f);
            for (size_t t = 0; t < 5; t++, cases++)
                gemm_case(types[t][0], types[t][1], 0, ta, tb, m, n, k, pad,
                          t % 2 ? 0.5f : 1.0f, t % 3 == 1 ? 0.0f : -1.5f);
        }
    }
    /* the matmul layout: y[T][rows] = x[T][cols] · Wᵀ, W row-major [rows][cols], is
     * C (rows × T, ldc = rows) = op_T(W as cols × rows) · x (cols × T) */
    gemm_case(CUDA_R_16F, CUDA_R_32F, 0, CUBLAS_OP_T, CUBLAS_OP_N, 96, 9, 256, 0, 1.0f, 0.0f);
    gemm_case(CUDA_R_32F, CUDA_R_32F, 1, CUBLAS_OP_T, CUBLAS_OP_N, 200, 3, 130, 0, 1.0f, 1.0f);
    /* k == 0 and α == 0: C = β·C, A and B unread */
    gemm_case(CUDA_R_16F, CUDA_R_32F, 0, CUBLAS_OP_N, CUBLAS_OP_N, 9, 4, 0, 1, 1.0f, 2.0f);
    gemm_case(CUDA_R_32F, CUDA_R_32F, 1, CUBLAS_OP_N, CUBLAS_OP_T, 9, 4, 5, 0, 0.0f, -0.5f);
    printf("gemm: %d cases ok\n", cases + 4);
}

static void test_errors(void) {
    float one = 1.0f, zero = 0.0f;
    dbuf d = dev_alloc(1024, 0);
    /* sizes and leading dimensions */
    ASSERT_EQ(cublasSgemm(g_h, CUBLAS_OP_N, CUBLAS_OP_N, -1, 4, 4, &one, d.p, 4, d.p, 4, &zero,
                          d.p, 4),
              CUBLAS_STATUS_INVALID_VALUE);
    ASSERT_EQ(cublasSgemm(g_h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 4, 4, &one, d.p, 7, d.p, 4, &zero,
                          d.p, 8),
              CUBLAS_STATUS_INVALID_VALUE); /* lda < m */
    ASSERT_EQ(cublasGemmEx(g_h, CUBLAS_OP_T, CUBLAS_OP_N, 8, 4, 16, &one, d.p, CUDA_R_16F, 8,
                           d.p, CUDA_R_16F, 16, &zero, d.p, CUDA_R_32F, 8, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_INVALID_VALUE); /* op T: lda < k */
    ASSERT_EQ(cublasGemmEx(g_h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 4, 4, &one, d.p, CUDA_R_16F, 8, d.p,
                           CUDA_R_16F, 4, &zero, d.p, CUDA_R_32F, 7, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_INVALID_VALUE); /* ldc < m */
    /* an unsupported type combination is refused, whatever the status */
    ASSERT(cublasGemmEx(g_h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 4, 4, &one, d.p, CUDA_R_16F, 8, d.p,
                        CUDA_R_16BF, 4, &zero, d.p, CUDA_R_32F, 8, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS);
    /* m == 0: nothing to do, C untouched */
    BLAS_OK(cublasSgemm(g_h, CUBLAS_OP_N, CUBLAS_OP_N, 0, 4, 4, &one, d.p, 1, d.p, 4, &zero, d.p,
                        1));
    uint32_t *h = sl_xmalloc(1024 * 4);
    dev_get(&d, h);
    for (int i = 0; i < 1024; i++) ASSERT_EQ(h[i], 0xffffffffu);
    dev_free(&d);
    free(h);
    printf("errors: ok\n");
}

int main(void) {
    int skip = harness_begin("test_cuda_blas", 20250303);
    if (skip) return skip;
    double t0 = sl_time_s();
    BLAS_OK(cublasCreate(&g_h));
    cudaStream_t s = NULL, got = (cudaStream_t)1;
    ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
    BLAS_OK(cublasSetStream(g_h, s));
    BLAS_OK(cublasGetStream(g_h, &got));
    ASSERT(got == s);
    test_gemm();
    test_errors();
    BLAS_OK(cublasSetStream(g_h, NULL));
    ASSERT_EQ(cudaStreamDestroy(s), cudaSuccess);
    BLAS_OK(cublasDestroy(g_h));
    printf("cublas: %s, %s\n", cublasGetStatusName(CUBLAS_STATUS_INVALID_VALUE),
           cublasGetStatusString(CUBLAS_STATUS_INVALID_VALUE));
    printf("test_cuda_blas: ok (%ld checks, %.1f s)\n", g_checks, sl_time_s() - t0);
    return 0;
}
