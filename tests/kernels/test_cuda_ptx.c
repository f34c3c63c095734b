/* test_cuda_ptx.c — the PTX wrappers of kernels/cuda/ptx.cuh (mma.sync m16n8k16 f16/bf16,
 * ldmatrix x1/x2/x4 with and without .trans, cp.async ca/cg with zero fill and groups, lop3,
 * the L2 prefetch), each
 * alone and together in a small GEMM main loop, against plain C references. The kernels are in
 * test_cuda_ptx.cu.
 *
 * In the emulator this checks the emulation against the fragment layouts it was written from;
 * on a GPU (label gpu) it checks that those layouts are the hardware's: until a GPU run has
 * passed, they are unconfirmed (kernels/emu/README.md).
 */
#include "tests/kernels/test_cuda_harness.h"
#ifdef SL_TEST_EMU
#include "kernels/emu/emu.h" /* what the emulated kernels prefetched */
#endif

void sl__test_mma_frag(int bf16, const uint16_t *A, const uint16_t *B, const float *C, float *D);
void sl__test_ldmatrix(int num, int trans, const uint16_t *src, uint32_t *out);
void sl__test_mma_tile(int bf16, int b_nk, const uint16_t *A, const uint16_t *B, float *D, int M,
                       int K);
void sl__test_cp_async(const float *src, float *out, int threads);
void sl__test_lop3(const uint32_t *abc, uint32_t *out, int n);
void sl__test_prefetch(const float *in, float *out, int n);

/* n random 16-bit floats (f16 or bf16 bits) and their exact values */
static void rnd_16(int bf16, int64_t n, uint16_t *bits, double *val) {
    for (int64_t i = 0; i < n; i++) {
        float f = rnd();
        bits[i] = bf16 ? sl_f32_to_bf16(f) : sl_f32_to_fp16(f);
        val[i] = bf16 ? sl_bf16_to_f32(bits[i]) : sl_fp16_to_f32(bits[i]);
    }
}

/* a device copy of n 16-bit values (the harness counts 4-byte elements) */
static dbuf dev_16(const uint16_t *h, int64_t n) {
    dbuf b = dev_alloc((n + 1) / 2, 0);
    sl_cuda_upload(b.p, h, (size_t)n * 2);
    return b;
}

/* The tensor core sums in f32 (not in the exact order of a loop); a wrong fragment layout is
 * off by O(1), far outside this. */
#define MMA_ABS 1e-3
#define MMA_REL 1e-3

static void test_mma_frag(int bf16) {
    uint16_t A[256], B[128];
    double a[256], b[128];
    float C[128], ref[128], got[128];
    rnd_16(bf16, 256, A, a);
    rnd_16(bf16, 128, B, b);
    for (int i = 0; i < 128; i++) C[i] = rnd();
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 8; n++) {
            double s = C[m * 8 + n];
            for (int k = 0; k < 16; k++) s += a[m * 16 + k] * b[k * 8 + n];
            ref[m * 8 + n] = (float)s;
        }
    dbuf dA = dev_16(A, 256), dB = dev_16(B, 128), dC = dev_from(C, 128, 0), dD = dev_alloc(128, 0);
    sl__test_mma_frag(bf16, (const uint16_t *)dA.p, (const uint16_t *)dB.p, dC.p, dD.p);
    dev_get(&dD, got);
    check_close(bf16 ? "mma bf16 fragments" : "mma f16 fragments", got, ref, 128, MMA_ABS, MMA_REL);
    dev_check_guards(&dD, "mma fragments");
    dev_free(&dA), dev_free(&dB), dev_free(&dC), dev_free(&dD);
}

/* f16 subnormal A values (q·2^-24, as qmm_kernel.cuh's two-level QW4 scales its codes) times B of
 * about 2^14: exact products of order 1, which a flush of subnormals to zero would lose. */
static void test_mma_subnormal(void) {
    uint16_t A[256], B[128];
    double a[256], b[128];
    float C[128], ref[128], got[128];
    for (int i = 0; i < 256; i++) {
        A[i] = (uint16_t)(1 + sl_rng_u64(&g_rng) % 0x3ff) | (uint16_t)(sl_rng_u64(&g_rng) & 1) << 15;
        a[i] = sl_fp16_to_f32(A[i]);
    }
    for (int i = 0; i < 128; i++) {
        B[i] = sl_f32_to_fp16((1.0f + fabsf(rnd())) * 8192.0f);
        b[i] = sl_fp16_to_f32(B[i]);
        C[i] = 0.0f;
    }
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 8; n++) {
            double s = 0;
            for (int k = 0; k < 16; k++) s += a[m * 16 + k] * b[k * 8 + n];
            ref[m * 8 + n] = (float)s;
        }
    dbuf dA = dev_16(A, 256), dB = dev_16(B, 128), dC = dev_from(C, 128, 0), dD = dev_alloc(128, 0);
    sl__test_mma_frag(0, (const uint16_t *)dA.p, (const uint16_t *)dB.p, dC.p, dD.p);
    dev_get(&dD, got);
    check_close("mma f16 with subnormal A", got, ref, 128, MMA_ABS, MMA_REL);
    dev_free(&dA), dev_free(&dB), dev_free(&dC), dev_free(&dD);
}

static void test_ldmatrix(int num, int trans) {
    uint16_t src[256];
    uint32_t want[128], got[128];
    for (int i = 0; i < num * 64; i++) src[i] = (uint16_t)sl_rng_u64(&g_rng);
    /* lane l: g = l / 4, t = l % 4; matrix i is rows 8i..8i+7 of src */
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < num; i++) {
            const uint16_t *M = src + 64 * i;
            int g = l / 4, t = l % 4;
            uint16_t lo = trans ? M[(2 * t) * 8 + g] : M[g * 8 + 2 * t];
            uint16_t hi = trans ? M[(2 * t + 1) * 8 + g] : M[g * 8 + 2 * t + 1];
            want[l * num + i] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    dbuf ds = dev_16(src, num * 64), dout = dev_alloc(32 * num, 0);
    sl__test_ldmatrix(num, trans, (const uint16_t *)ds.p, (uint32_t *)dout.p);
    char what[64];
    snprintf(what, sizeof what, "ldmatrix x%d%s", num, trans ? ".trans" : "");
    dev_get(&dout, got);
    check_bits(what, got, want, 32 * num, 4);
    dev_check_guards(&dout, what);
    dev_free(&ds), dev_free(&dout);
}

static void test_mma_tile(int bf16, int b_nk, int M, int K) {
    uint16_t *A = sl_xmalloc((size_t)M * K * 2), *B = sl_xmalloc((size_t)K * 16 * 2);
    double *a = sl_xmalloc((size_t)M * K * 8), *b = sl_xmalloc((size_t)K * 16 * 8);
    float *ref = sl_xmalloc((size_t)M * 16 * 4), *got = sl_xmalloc((size_t)M * 16 * 4);
    rnd_16(bf16, (int64_t)M * K, A, a);
    rnd_16(bf16, (int64_t)K * 16, B, b); /* [K][16], or [16][K] when b_nk */
    for (int m = 0; m < M; m++)
        for (int n = 0; n < 16; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += a[m * K + k] * (b_nk ? b[n * K + k] : b[k * 16 + n]);
            ref[m * 16 + n] = (float)s;
        }
    dbuf dA = dev_16(A, (int64_t)M * K), dB = dev_16(B, (int64_t)K * 16), dD = dev_alloc(M * 16, 0);
    sl__test_mma_tile(bf16, b_nk, (const uint16_t *)dA.p, (const uint16_t *)dB.p, dD.p, M, K);
    char what[96];
    snprintf(what, sizeof what, "cp.async + ldmatrix + mma %s, B %s, M=%d K=%d",
             bf16 ? "bf16" : "f16", b_nk ? "[n][k]" : "[k][n]", M, K);
    dev_get(&dD, got);
    check_close(what, got, ref, (int64_t)M * 16, MMA_ABS * K / 16, MMA_REL);
    dev_check_guards(&dD, what);
    dev_free(&dA), dev_free(&dB), dev_free(&dD);
    free(A), free(B), free(a), free(b), free(ref), free(got);
}

static void test_cp_async(int threads) {
    const int n = 8 * threads;
    float *src = rnd_vec(n, 1.0f), *want = sl_xmalloc((size_t)n * 4);
    float *got = sl_xmalloc((size_t)n * 4);
    for (int i = 0; i < threads; i++) {
        const float *p = src + 8 * i;
        float *w = want + 8 * i;
        memcpy(w, p, 21);              /* 16 bytes, then 5 of an 8-byte copy */
        memset((char *)w + 21, 0, 11); /* its zero-filled rest; a 4-byte copy of zeros */
        w[7] = ((p[0] + p[1]) + p[2]) + p[3]; /* read right after the first group's wait */
    }
    dbuf ds = dev_from(src, n, 0), dout = dev_alloc(n, 0);
    sl__test_cp_async(ds.p, dout.p, threads);
    char what[64];
    snprintf(what, sizeof what, "cp.async, %d threads", threads);
    dev_get(&dout, got);
    check_bits(what, got, want, n, 4);
    dev_check_guards(&dout, what);
    dev_free(&ds), dev_free(&dout);
    free(src), free(want), free(got);
}

/* lop3 with six truth tables against the C expressions they encode */
static void test_lop3(void) {
    enum { N = 300 };
    uint32_t *abc = sl_xmalloc(3 * N * 4), *want = sl_xmalloc(6 * N * 4), *got = sl_xmalloc(6 * N * 4);
    for (int i = 0; i < 3 * N; i++) abc[i] = (uint32_t)(sl_rng_u64(&g_rng) >> 32);
    abc[0] = abc[1] = abc[2] = 0, abc[3] = abc[4] = abc[5] = ~0u; /* all zeros, all ones */
    for (int i = 0; i < N; i++) {
        const uint32_t a = abc[3 * i], b = abc[3 * i + 1], c = abc[3 * i + 2];
        uint32_t *w = want + 6 * i;
        w[0] = (a & b) | c, w[1] = a ^ b ^ c, w[2] = (a & b) | (a & c) | (b & c);
        w[3] = (a & b) ^ c, w[4] = a, w[5] = ~(a | b | c);
    }
    dbuf din = dev_from(abc, 3 * N, 0), dout = dev_alloc(6 * N, 0);
    sl__test_lop3((const uint32_t *)din.p, (uint32_t *)dout.p, N);
    dev_get(&dout, got);
    check_bits("lop3", got, want, 6 * N, 4);
    dev_check_guards(&dout, "lop3");
    dev_free(&din), dev_free(&dout);
    free(abc), free(want), free(got);
}

/* cp.async.bulk.prefetch.L2 of 32 ranges, then plain loads of the same memory: they read what
 * is there (on a GPU: the instruction assembles and runs without a fault); the emulator
 * records each range: lane i's 16·(i + 1) bytes from byte 48·i */
static void test_prefetch(void) {
    enum { N = 512 };
    float *in = rnd_vec(N, 1.0f), *got = sl_xmalloc(N * sizeof(float));
    dbuf din = dev_from(in, N, 0), dout = dev_alloc(N, 0);
#ifdef SL_TEST_EMU
    const void *ptrs[33];
    unsigned sizes[33];
    sl_emu_prefetch_log(ptrs, sizes, 33);
#endif
    sl__test_prefetch(din.p, dout.p, N);
#ifdef SL_TEST_EMU
    ASSERT_EQ(sl_emu_prefetch_log(NULL, NULL, 0), 32);
    int seen[32] = {0};
    for (int i = 0; i < 32; i++) {
        const long off = (long)((const char *)ptrs[i] - (const char *)din.p);
        ASSERT(off >= 0 && off % 48 == 0 && off / 48 < 32);
        ASSERT_EQ(sizes[i], 16u * (unsigned)(off / 48 + 1));
        seen[off / 48]++;
    }
    for (int i = 0; i < 32; i++) ASSERT_EQ(seen[i], 1);
#endif
    dev_get(&dout, got);
    check_bits("prefetch", got, in, N, 4);
    dev_check_guards(&dout, "prefetch");
    dev_free(&din), dev_free(&dout);
    free(in), free(got);
}

int main(void) {
    int skip = harness_begin("test_cuda_ptx", 20250302);
    if (skip) return skip;
    double t0 = sl_time_s();
    for (int bf16 = 0; bf16 < 2; bf16++) test_mma_frag(bf16);
    test_mma_subnormal();
    printf("mma.sync m16n8k16 f16, bf16, f16 subnormals: ok\n");
    for (int num = 1; num <= 4; num *= 2)
        for (int trans = 0; trans < 2; trans++) test_ldmatrix(num, trans);
    printf("ldmatrix x1, x2, x4, with and without .trans: ok\n");
    test_cp_async(32);
    test_cp_async(100);
    test_cp_async(256);
    printf("cp.async ca 4/8/16, cg 16, zero fill, wait_group: ok\n");
    test_lop3();
    printf("lop3: ok\n");
    test_prefetch();
    printf("cp.async.bulk.prefetch.L2: ok\n");
    static const int MK[][2] = {{16, 16}, {32, 64}, {48, 32}, {64, 128}};
    int cases = 0;
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (int b_nk = 0; b_nk < 2; b_nk++)
            for (int i = 0; i < 4; i++, cases++) test_mma_tile(bf16, b_nk, MK[i][0], MK[i][1]);
    printf("cp.async + ldmatrix + mma tiles: %d cases ok\n", cases);
    printf("test_cuda_ptx: ok (%ld checks, %.1f s)\n", g_checks, sl_time_s() - t0);
    return 0;
}
