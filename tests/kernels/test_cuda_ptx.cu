/* test_cuda_ptx.cu — kernels that exercise each wrapper of kernels/cuda/ptx.cuh, with C entry
 * points for test_cuda_ptx.c. Built with the emulator (label emu) and with nvcc (label gpu), so
 * that a GPU run confirms the fragment layouts the emulator assumes.
 *
 * Every pointer is device memory; 16-bit matrices are uint16_t bits (f16 or bf16).
 */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ptx.cuh"

extern "C" {
void sl__test_mma_frag(int bf16, const uint16_t *A, const uint16_t *B, const float *C, float *D);
void sl__test_ldmatrix(int num, int trans, const uint16_t *src, uint32_t *out);
void sl__test_mma_tile(int bf16, int b_nk, const uint16_t *A, const uint16_t *B, float *D, int M,
                       int K);
void sl__test_cp_async(const float *src, float *out, int threads);
void sl__test_lop3(const uint32_t *abc, uint32_t *out, int n);
void sl__test_prefetch(const float *in, float *out, int n);
}

static __device__ __forceinline__ uint32_t pack(uint16_t lo, uint16_t hi) {
    return (uint32_t)lo | (uint32_t)hi << 16;
}

/* ---- mma alone: fragments built from global memory by the ISA's formulas ------------------ */

/* A [16][16] row-major, B [16][8] (k, n), C and D [16][8] */
template <bool BF16>
static __global__ void mma_frag_kernel(const uint16_t *A, const uint16_t *B, const float *C,
                                       float *D) {
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    const uint32_t a[4] = {pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]),
                           pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]),
                           pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]),
                           pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9])};
    const uint32_t b[2] = {pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]),
                           pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g])};
    float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t],
                  C[(g + 8) * 8 + 2 * t + 1]};
    if constexpr (BF16) sl_mma_m16n8k16_bf16(c, a, b, c); /* d aliasing c, as kernels do */
    else sl_mma_m16n8k16_f16(c, a, b, c);
    D[g * 8 + 2 * t] = c[0];
    D[g * 8 + 2 * t + 1] = c[1];
    D[(g + 8) * 8 + 2 * t] = c[2];
    D[(g + 8) * 8 + 2 * t + 1] = c[3];
}

/* ---- ldmatrix alone: raw registers out ----------------------------------------------------- */

#define LDM_STRIDE 24 /* halves per shared row: rows need not be contiguous, only 16-byte aligned */

/* src: NUM·8 rows of 8 (matrix i, row j at row 8i + j); out [32][NUM] */
template <int NUM, bool TRANS>
static __global__ void ldmatrix_kernel(const uint16_t *src, uint32_t *out) {
    SL_SHARED(uint4, s4, [32 * LDM_STRIDE / 8]); /* uint4: 16-byte aligned rows */
    uint16_t *s = reinterpret_cast<uint16_t *>(s4);
    const int lane = threadIdx.x;
    for (int i = lane; i < NUM * 64; i += 32) s[(i / 8) * LDM_STRIDE + i % 8] = src[i];
    __syncthreads();
    /* rows listed backwards within each matrix: the addresses, not their order, place them */
    const int m = lane / 8 % NUM, j = 7 - lane % 8;
    uint32_t r[NUM];
    sl_ldmatrix<NUM, TRANS>(r, &s[(8 * m + (7 - j)) * LDM_STRIDE]);
    for (int i = 0; i < NUM; i++) out[lane * NUM + i] = r[i];
}

/* ---- a small GEMM main loop: cp.async pipeline, ldmatrix, mma ------------------------------ */

#define TILE_K 16
#define SROW 24 /* halves per shared row of a 16-wide tile (padded) */

/* D[M][16] = A[M][K] · B, B given as [K][16] (b_nk == 0) or [16][K] (b_nk != 0); one warp per
 * 16 rows of M, two stages of TILE_K columns in flight. M % 16 == 0, K % TILE_K == 0. */
template <bool BF16, bool B_NK>
static __global__ void mma_tile_kernel(const uint16_t *A, const uint16_t *B, float *D, int K) {
    /* [stage][warp][16 rows][16 + pad] and [stage][16 rows][16 + pad], as uint4 for alignment */
    SL_SHARED(uint4, sa4, [2 * 4 * 16 * SROW / 8]);
    SL_SHARED(uint4, sb4, [2 * 16 * SROW / 8]);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int m0 = warp * 16;
    const int steps = K / TILE_K;
    auto sa = [&](int stage, int r, int c) {
        return reinterpret_cast<uint16_t *>(sa4) + ((stage * 4 + warp) * 16 + r) * SROW + c;
    };
    auto sb = [&](int stage, int r, int c) {
        return reinterpret_cast<uint16_t *>(sb4) + (stage * 16 + r) * SROW + c;
    };

    /* lane c moves 16-byte chunk c (row c / 2, half c % 2) of its warp's A tile, and in warp 0
     * of the B tile too */
    auto load = [&](int stage, int step) {
        const int k0 = step * TILE_K, r = lane / 2, h = lane % 2;
        sl_cp_async_cg(sa(stage, r, 8 * h), A + (int64_t)(m0 + r) * K + k0 + 8 * h);
        if (warp == 0) {
            const uint16_t *bsrc = B_NK ? B + (int64_t)r * K + k0 + 8 * h
                                        : B + (int64_t)(k0 + r) * 16 + 8 * h;
            sl_cp_async<16>(sb(stage, r, 8 * h), bsrc);
        }
        sl_cp_async_commit();
    };

    float acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    load(0, 0);
    for (int step = 0; step < steps; step++) {
        const int stage = step & 1;
        if (step + 1 < steps) {
            load(stage ^ 1, step + 1);
            sl_cp_async_wait<1>(); /* this step's group is done, the next one may fly */
        } else {
            sl_cp_async_wait<0>();
        }
        __syncthreads(); /* warp 0's B copies are visible to all */
        uint32_t a[4], b[4];
        sl_ldmatrix<4, false>(a, sa(stage, lane % 16, 8 * (lane / 16)));
        if constexpr (B_NK) /* rows are n: matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, ..) */
            sl_ldmatrix<4, false>(b, sb(stage, lane % 8 + 8 * (lane / 16), 8 * (lane / 8 % 2)));
        else /* rows are k, read transposed: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), .. */
            sl_ldmatrix<4, true>(b, sb(stage, lane % 16, 8 * (lane / 16)));
        const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
        if constexpr (BF16) {
            sl_mma_m16n8k16_bf16(acc[0], a, b0, acc[0]);
            sl_mma_m16n8k16_bf16(acc[1], a, b1, acc[1]);
        } else {
            sl_mma_m16n8k16_f16(acc[0], a, b0, acc[0]);
            sl_mma_m16n8k16_f16(acc[1], a, b1, acc[1]);
        }
        __syncthreads(); /* the stage is overwritten by the load two steps on */
    }
    const int g = lane >> 2, t = lane & 3;
    for (int n = 0; n < 2; n++)
        for (int i = 0; i < 4; i++)
            D[(int64_t)(m0 + g + 8 * (i >> 1)) * 16 + 8 * n + 2 * t + (i & 1)] = acc[n][i];
}

/* ---- cp.async alone: sizes, zero fill, groups ----------------------------------------------- */

/* Thread i copies src[8i .. 8i+7] in three groups: 4 floats (16 bytes), 2 floats (8 bytes, of
 * which 5 bytes come from src), 1 float (4 bytes, none from src: zeros); out[8i..8i+7] holds
 * them back, and out[8i + 7] the first float as read right after wait_group 2. */
static __global__ void cp_async_kernel(const float *src, float *out) {
    SL_SHARED(float4, s4, [256 * 2]);
    float *s = reinterpret_cast<float *>(s4);
    const int i = threadIdx.x;
    float *d = &s[8 * i];
    const float *p = src + 8 * i;
    if (i % 2) sl_cp_async_cg(d, p);
    else sl_cp_async<16>(d, p);
    sl_cp_async_commit();
    sl_cp_async<8>(d + 4, p + 4, 5);
    sl_cp_async_commit();
    sl_cp_async<4>(d + 6, p + 6, 0);
    sl_cp_async_commit();
    sl_cp_async_wait<2>(); /* the first group is in; the others may still fly */
    const float first = d[0] + d[1] + d[2] + d[3];
    sl_cp_async_wait<0>();
    __syncthreads();
    /* read another thread's copies: visible after wait + barrier */
    const int o = (i + 1) % blockDim.x;
    for (int k = 0; k < 7; k++) out[8 * o + k] = s[8 * o + k];
    __syncthreads();
    out[8 * i + 7] = first;
}

/* ---- lop3: six truth tables on n triples (a, b, c); out[6i + j] is table j's result ----------- */

static __global__ void lop3_kernel(const uint32_t *abc, uint32_t *out, int n) {
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    const uint32_t a = abc[3 * i], b = abc[3 * i + 1], c = abc[3 * i + 2];
    uint32_t *o = out + 6 * i;
    o[0] = sl_lop3<0xEA>(a, b, c);
    o[1] = sl_lop3<0x96>(a, b, c);
    o[2] = sl_lop3<0xE8>(a, b, c);
    o[3] = sl_lop3<0x6A>(a, b, c);
    o[4] = sl_lop3<0xF0>(a, b, c);
    o[5] = sl_lop3<0x01>(a, b, c);
}

/* ---- L2 prefetch: lane i asks for 16·(i + 1) bytes from byte 48·i of in, then the warp copies
 * in to out (n floats, n >= 4·(3·31 + 32) = 500) ---------------------------------------------- */

static __global__ void prefetch_kernel(const float *in, float *out, int n) {
    const int i = (int)threadIdx.x;
    sl_prefetch_l2(in + 12 * i, 16u * (uint32_t)(i + 1));
    for (int j = i; j < n; j += 32) out[j] = in[j];
}

/* ---- entry points ---------------------------------------------------------------------------- */

extern "C" void sl__test_mma_frag(int bf16, const uint16_t *A, const uint16_t *B, const float *C,
                                  float *D) {
    if (bf16) SL_LAUNCH(mma_frag_kernel<true>, 1, 32, 0, nullptr, A, B, C, D);
    else SL_LAUNCH(mma_frag_kernel<false>, 1, 32, 0, nullptr, A, B, C, D);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl__test_ldmatrix(int num, int trans, const uint16_t *src, uint32_t *out) {
    SL_CUDA_REQUIRE(num == 1 || num == 2 || num == 4);
    if (num == 1 && !trans) SL_LAUNCH((ldmatrix_kernel<1, false>), 1, 32, 0, nullptr, src, out);
    if (num == 1 && trans) SL_LAUNCH((ldmatrix_kernel<1, true>), 1, 32, 0, nullptr, src, out);
    if (num == 2 && !trans) SL_LAUNCH((ldmatrix_kernel<2, false>), 1, 32, 0, nullptr, src, out);
    if (num == 2 && trans) SL_LAUNCH((ldmatrix_kernel<2, true>), 1, 32, 0, nullptr, src, out);
    if (num == 4 && !trans) SL_LAUNCH((ldmatrix_kernel<4, false>), 1, 32, 0, nullptr, src, out);
    if (num == 4 && trans) SL_LAUNCH((ldmatrix_kernel<4, true>), 1, 32, 0, nullptr, src, out);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl__test_mma_tile(int bf16, int b_nk, const uint16_t *A, const uint16_t *B,
                                  float *D, int M, int K) {
    SL_CUDA_REQUIRE(M > 0 && M % 16 == 0 && M <= 64 && K > 0 && K % TILE_K == 0);
    const int threads = M / 16 * 32;
    const cudaStream_t s = nullptr;
    if (bf16 && b_nk) SL_LAUNCH((mma_tile_kernel<true, true>), 1, threads, 0, s, A, B, D, K);
    if (bf16 && !b_nk) SL_LAUNCH((mma_tile_kernel<true, false>), 1, threads, 0, s, A, B, D, K);
    if (!bf16 && b_nk) SL_LAUNCH((mma_tile_kernel<false, true>), 1, threads, 0, s, A, B, D, K);
    if (!bf16 && !b_nk) SL_LAUNCH((mma_tile_kernel<false, false>), 1, threads, 0, s, A, B, D, K);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl__test_cp_async(const float *src, float *out, int threads) {
    SL_CUDA_REQUIRE(threads > 0 && threads <= 256);
    SL_LAUNCH(cp_async_kernel, 1, threads, 0, nullptr, src, out);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl__test_lop3(const uint32_t *abc, uint32_t *out, int n) {
    SL_CUDA_REQUIRE(n > 0);
    SL_LAUNCH(lop3_kernel, (unsigned)((n + 127) / 128), 128, 0, nullptr, abc, out, n);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl__test_prefetch(const float *in, float *out, int n) {
    SL_CUDA_REQUIRE(n >= 500);
    SL_LAUNCH(prefetch_kernel, 1, 32, 0, nullptr, in, out, n);
    SL_CUDA_CHECK(cudaGetLastError());
}
