/* qmm.cu — weight-only QW8/QW4 matmul for decode (1 to 16 tokens per launch) on the tensor
 * cores, and the repack of the logical weight into its physical layout (matmul.h).
 *
 * One templated kernel over the format (QW4/QW8), the number of 8-token column tiles (1: up to
 * 8 tokens, 2: up to 16) and whether the weight has offsets. A block is 8 warps; each row tile
 * (16 output rows) is shared by kw = 1, 2, 4 or 8 of them, which divide every round's column
 * tiles and add their sums through shared memory; blockIdx.y splits the columns further over
 * blocks. A round covers up to 1024 columns: each lane first issues its 16-byte code loads (up
 * to 8 tiles of 512 bytes per warp), then the block copies the round's x (f16) and the scales
 * and offsets of its row tiles into shared memory with cp.async, so that everything a round
 * reads from memory is in flight at once (a scale read from global memory in the inner loop
 * cost one memory latency per tile: 6× slower on an H100). The codes turn into f16 in
 * registers (mask, OR 0x6400, one subtract: exact), one mma.m16n8k16 per 16 columns and 8
 * tokens; the steps of one group within a tile add up in the tensor core, and the group's
 * scales (offsets with the sums of x over its columns) apply in f32 once after them. A warp's
 * loads come in two halves of QMM_U / 2 tiles: the next batch's half is loaded as soon as the
 * current one is multiplied, so that loads stay in flight while the warp computes.
 *
 * Splits over blocks: with more than one, each block writes its partial sums to the launcher's
 * workspace; the last block of a row block to finish (an atomic count per row block) adds the
 * partials in split order and writes y, so the result does not depend on timing. The default
 * plan (kw and splits) depends on the weight's shape and the SM count, never on T: a token's
 * result is the same in any batch.
 */
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "matmul.h"
#include "ptx.cuh"

#include <cuda_fp16.h>

namespace {

constexpr int QMM_WARPS = 8; /* warps per block */
constexpr int QMM_THREADS = QMM_WARPS * 32;
constexpr int QMM_KC = 1024;       /* columns per round */
constexpr int QMM_XS = QMM_KC + 8; /* halves per staged row: +8 spreads the lanes over banks */
constexpr int QMM_U = 8;           /* 16-byte code loads in flight per lane */

__host__ __device__ constexpr int ktile(bool q4) { return q4 ? 64 : 32; }

/* c - bias on both 16-bit halves of a fragment register: a reinterpretation, no instructions
 * (building a __half2 from its halves cost a shift and a byte permute per register) */
__device__ __forceinline__ uint32_t hsub2_u32(uint32_t c, __half2 bias) {
    const __half2 d = __hsub2(*reinterpret_cast<const __half2 *>(&c), bias);
    return *reinterpret_cast<const uint32_t *>(&d);
}

/* Shared memory of one block, in bytes and in this order: x [TP][QMM_XS] halves; with offsets
 * the per-16-column sums of x, float [TP][QMM_KC/16]; scales (then offsets) of the block's row
 * tiles for the round's groups, float [tiles][sc_groups][16]. */
__host__ __device__ constexpr int qmm_sc_groups(int group_log2) {
    return (QMM_KC >> group_log2) + 1; /* a round need not start on a group boundary */
}
inline size_t qmm_smem(int NT, bool offs, int kw, int group_log2) {
    const size_t TP = 8 * (size_t)NT, tiles = QMM_WARPS / kw;
    return TP * QMM_XS * 2 + (offs ? TP * (QMM_KC / 16) * 4 : 0) +
           tiles * qmm_sc_groups(group_log2) * 16 * 4 * (offs ? 2 : 1);
}

template <bool Q4, int NT, bool OFFS, int SC>
__global__ void __launch_bounds__(QMM_THREADS)
    qmm_kernel(const uint4 *__restrict__ codes, const float *__restrict__ scales,
               const float *__restrict__ offsets, const __half *__restrict__ x,
               float *__restrict__ y, float *__restrict__ part, unsigned *__restrict__ counters,
               int T, int N, int K, int row_tiles, int k_tiles, int g_pad, int group_log2,
               int tiles_per_split, int kw) {
    constexpr int KT = ktile(Q4), STEPS = KT / 16, TP = 8 * NT, CT = QMM_KC / KT;
    constexpr int SPA = 1 << SC; /* 16-column steps per scale application (qmm_sc) */
    constexpr int XSUM = QMM_KC / 16; /* per-16-column sums per staged token row */
    const int tiles_per_block = QMM_WARPS / kw, scg = qmm_sc_groups(group_log2);
    SL_DYNAMIC_SHARED(__half, xs); /* the layout of qmm_smem */
    float *xsum = reinterpret_cast<float *>(xs + TP * QMM_XS);
    float *sc_s = xsum + (OFFS ? TP * XSUM : 0);
    float *of_s = sc_s + tiles_per_block * scg * 16;
    SL_SHARED(float, red, [QMM_WARPS * NT * 4 * 32]); /* the kw warps' sums of a row tile */
    SL_SHARED(unsigned, last_block, [1]);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    const int part_w = warp % kw, lt = warp / kw; /* local row tile */
    const int rt0 = blockIdx.x * tiles_per_block, rt = rt0 + lt;
    const bool active = rt < row_tiles;
    const int split = blockIdx.y, splits = gridDim.y;
    const int kt_begin = split * tiles_per_split;
    const int kt_end = min(k_tiles, kt_begin + tiles_per_split);

    /* token rows past T are never written: an mma's output column depends on its own B column
     * alone, so whatever they hold reaches only outputs that are not stored */

    const __half2 bias = Q4 ? (OFFS ? __float2half2_rn(1024.0f) : __float2half2_rn(1032.0f))
                            : __float2half2_rn(1152.0f);
    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    const uint4 *tiles = codes + (size_t)(active ? rt : 0) * k_tiles * 32 + lane;

    for (int c0 = kt_begin; c0 < kt_end; c0 += CT) {
        const int c1 = min(kt_end, c0 + CT);
        const int kbase = c0 * KT, kn = (c1 - c0) * KT;
        const int per = (c1 - c0 + kw - 1) / kw;
        const int w0 = min(c1, c0 + part_w * per), w1 = min(c1, w0 + per);
        const int g_first = kbase >> group_log2, n_grp = ((kbase + kn - 1) >> group_log2) - g_first + 1;
        /* 1. this warp's first code loads: unconditional (the index clamped) and volatile,
         * so that all of them are in flight before the round's staging */
        uint4 wv[QMM_U];
        if (active && w0 < w1)
#pragma unroll
            for (int u = 0; u < QMM_U; u++)
                wv[u] = sl_ldg_nc_v4(tiles + (size_t)min(w0 + u, w1 - 1) * 32);
        __syncthreads(); /* the previous round's readers are done */
        /* 2. the round's x, scales and offsets into shared memory, all in flight together */
        for (int i = threadIdx.x; i < T * (kn / 8); i += QMM_THREADS) {
            const int tok = i / (kn / 8), c = (i - tok * (kn / 8)) * 8, k = kbase + c;
            const __half *src = x + (size_t)tok * K + k;
            sl_cp_async<16>(xs + tok * QMM_XS + c, k < K ? src : x, k < K ? 16 : 0);
        }
        for (int i = threadIdx.x; i < tiles_per_block * n_grp * 4; i += QMM_THREADS) {
            const int l = i / (n_grp * 4), j = i - l * (n_grp * 4); /* 16-byte pieces */
            if (rt0 + l >= row_tiles) continue;
            const size_t at = ((size_t)(rt0 + l) * g_pad + g_first) * 16 + j * 4;
            sl_cp_async<16>(sc_s + (l * scg) * 16 + j * 4, scales + at);
            if (OFFS) sl_cp_async<16>(of_s + (l * scg) * 16 + j * 4, offsets + at);
        }
        sl_cp_async_commit();
        sl_cp_async_wait<0>();
        __syncthreads();
        if (OFFS) {
            for (int i = threadIdx.x; i < T * (kn / 16); i += QMM_THREADS) {
                const int tok = i / (kn / 16), st = i - tok * (kn / 16);
                float s = 0.0f;
                for (int j = 0; j < 16; j++) s += __half2float(xs[tok * QMM_XS + st * 16 + j]);
                xsum[tok * XSUM + st] = s;
            }
            __syncthreads();
        }
        if (!active) continue;
        /* 3. the products */
        const float *scl = sc_s + lt * scg * 16, *ofl = of_s + lt * scg * 16;
        /* one tile's products: v holds the lane's 16 bytes of tile `ktile` */
        auto product = [&](const uint4 v, const int ktile) {
            const uint32_t wq[4] = {v.x, v.y, v.z, v.w};
            const int kc0 = ktile * KT, kl0 = kc0 - kbase;
            /* the scales of the tile's first group; the j-th application uses group + j */
            const int gt = ((kc0 >> group_log2) - g_first) * 16;
#pragma unroll
            for (int j = 0; j < STEPS / SPA; j++) {
                /* SPA steps share a scale: their products add up in the tensor core */
                float d[NT][4];
#pragma unroll
                for (int n = 0; n < NT; n++) d[n][0] = d[n][1] = d[n][2] = d[n][3] = 0.0f;
#pragma unroll
                for (int ss = 0; ss < SPA; ss++) {
                    const int s = j * SPA + ss, kl = kl0 + s * 16;
                    uint32_t a[4];
                    if (Q4) {
#pragma unroll
                        for (int i = 0; i < 4; i++)
                            a[i] = ((wq[s] >> (4 * i)) & 0x000F000Fu) | 0x64006400u;
                    } else {
                        const uint32_t v0 = wq[2 * s], v1 = wq[2 * s + 1];
                        a[0] = (v0 & 0xffu) | ((v0 & 0xff00u) << 8) | 0x64006400u;
                        a[1] = ((v0 >> 16) & 0xffu) | ((v0 >> 8) & 0xff0000u) | 0x64006400u;
                        a[2] = (v1 & 0xffu) | ((v1 & 0xff00u) << 8) | 0x64006400u;
                        a[3] = ((v1 >> 16) & 0xffu) | ((v1 >> 8) & 0xff0000u) | 0x64006400u;
                    }
#pragma unroll
                    for (int i = 0; i < 4; i++) a[i] = hsub2_u32(a[i], bias);
#pragma unroll
                    for (int n = 0; n < NT; n++) {
                        /* two halves at an even index: one 32-bit load each (a memcpy of
                         * halves made two 16-bit loads and a permute) */
                        const uint32_t *xr = reinterpret_cast<const uint32_t *>(xs) +
                                             ((n * 8 + g) * QMM_XS + kl) / 2 + t;
                        const uint32_t b[2] = {xr[0], xr[4]};
                        sl_mma_m16n8k16_f16(d[n], a, b, d[n]);
                    }
                }
                const int gl = gt + j * 16;
                const float s0 = scl[gl + g], s1 = scl[gl + g + 8];
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    acc[n][0] += s0 * d[n][0];
                    acc[n][1] += s0 * d[n][1];
                    acc[n][2] += s1 * d[n][2];
                    acc[n][3] += s1 * d[n][3];
                }
                if (OFFS) {
                    const float o0 = ofl[gl + g], o1 = ofl[gl + g + 8];
#pragma unroll
                    for (int n = 0; n < NT; n++) {
                        /* Σ x over the SPA steps' columns, per 16 in step order */
                        const float *xs0 = xsum + (n * 8 + 2 * t) * XSUM + kl0 / 16 + j * SPA;
                        float x0 = 0.0f, x1 = 0.0f;
#pragma unroll
                        for (int ss = 0; ss < SPA; ss++) x0 += xs0[ss], x1 += xs0[XSUM + ss];
                        acc[n][0] += o0 * x0;
                        acc[n][1] += o0 * x1;
                        acc[n][2] += o1 * x0;
                        acc[n][3] += o1 * x1;
                    }
                }
            }
        };
        /* two halves of QMM_U loads: the next batch's first half is in flight while the second
         * half of this one is multiplied, and its second half while the next first half is */
        constexpr int H = QMM_U / 2;
        for (int kt = w0; kt < w1; kt += QMM_U) {
            const bool more = kt + QMM_U < w1;
#pragma unroll
            for (int u = 0; u < H; u++)
                if (kt + u < w1) product(wv[u], kt + u);
            if (more)
#pragma unroll
                for (int u = 0; u < H; u++)
                    wv[u] = sl_ldg_nc_v4(tiles + (size_t)min(kt + QMM_U + u, w1 - 1) * 32);
#pragma unroll
            for (int u = H; u < QMM_U; u++)
                if (kt + u < w1) product(wv[u], kt + u);
            if (more)
#pragma unroll
                for (int u = H; u < QMM_U; u++)
                    wv[u] = sl_ldg_nc_v4(tiles + (size_t)min(kt + QMM_U + u, w1 - 1) * 32);
        }
    }

    /* the kw warps of a row tile: the first adds the others' sums, in warp order */
    if (kw > 1) {
        if (part_w != 0)
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int i = 0; i < 4; i++) red[((warp * NT + n) * 4 + i) * 32 + lane] = acc[n][i];
        __syncthreads();
        if (part_w == 0)
            for (int j = 1; j < kw; j++)
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        acc[n][i] += red[(((warp + j) * NT + n) * 4 + i) * 32 + lane];
    }

    /* acc[n][i]: row rt·16 + g (+8 for i >= 2), token n·8 + 2t (+1 for odd i) */
    const int n_pad = row_tiles * 16;
    float *out = splits == 1 ? y : part + (size_t)split * T * n_pad;
    const int ld = splits == 1 ? N : n_pad, rmax = splits == 1 ? N : n_pad;
    if (active && part_w == 0) {
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int tok = n * 8 + 2 * t + (i & 1), r = rt * 16 + g + (i >= 2 ? 8 : 0);
                if (tok < T && r < rmax) out[(size_t)tok * ld + r] = acc[n][i];
            }
    }
    if (splits == 1) return;

    /* the last block of this row block to finish adds the partials, in split order */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
        last_block[0] = atomicAdd(&counters[blockIdx.x], 1u) == (unsigned)splits - 1;
    __syncthreads();
    if (!last_block[0]) return;
    __threadfence();
    const int rows = tiles_per_block * 16, r0 = blockIdx.x * rows;
    for (int i = threadIdx.x; i < T * rows; i += QMM_THREADS) {
        const int tok = i / rows, r = r0 + i % rows;
        if (r >= N) continue;
        float s = 0.0f;
#pragma unroll 8
        for (int sp = 0; sp < splits; sp++) s += __ldcg(part + ((size_t)sp * T + tok) * n_pad + r);
        y[(size_t)tok * N + r] = s;
    }
    if (threadIdx.x == 0) counters[blockIdx.x] = 0; /* ready for the next launch */
}

int ilog2(int v) {
    int l = 0;
    while ((1 << (l + 1)) <= v) l++;
    return l;
}

/* log2 of the 16-column steps per scale application: a group's steps within one tile (all of
 * the tile's when the group is as long as the tile or longer) */
int qmm_sc(bool q4, int group) {
    const int spg = group / 16, steps = ktile(q4) / 16;
    return ilog2(spg < steps ? spg : steps);
}

template <bool Q4, int NT, bool OFFS, int SC>
void launch(const sl_cuda_qmat *w, const __half *x, float *y, int T, sl_qmm_plan plan,
            float *part, unsigned *counters, cudaStream_t stream) {
    const int lg = ilog2(w->group);
    const size_t smem = qmm_smem(NT, OFFS, plan.warps_per_tile, lg);
    /* per instantiation, raised as needed: the opt-in is what lets static (the reduction
     * buffer) plus dynamic shared memory pass 48 KiB */
    static size_t smem_set;
    if (smem > smem_set) {
        SL_CUDA_CHECK(cudaFuncSetAttribute(qmm_kernel<Q4, NT, OFFS, SC>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        smem_set = smem;
    }
    const int tps = (int)sl_div_up(w->k_tiles, plan.splits);
    const dim3 grid(sl_div_up(w->row_tiles, QMM_WARPS / plan.warps_per_tile),
                    (unsigned)plan.splits);
    SL_LAUNCH((qmm_kernel<Q4, NT, OFFS, SC>), grid, QMM_THREADS, smem, stream,
              static_cast<const uint4 *>(w->codes), w->scales, w->offsets, x, y, part, counters,
              T, (int)w->rows, (int)w->cols, (int)w->row_tiles, (int)w->k_tiles, (int)w->g_pad,
              lg, tps, plan.warps_per_tile);
    SL_CUDA_CHECK(cudaGetLastError());
}

template <bool Q4, int NT, bool OFFS>
void launch_sc(const sl_cuda_qmat *w, const __half *x, float *y, int T, sl_qmm_plan plan,
               float *part, unsigned *counters, cudaStream_t stream) {
    switch (qmm_sc(Q4, (int)w->group)) {
    case 0: launch<Q4, NT, OFFS, 0>(w, x, y, T, plan, part, counters, stream); break;
    case 1: launch<Q4, NT, OFFS, 1>(w, x, y, T, plan, part, counters, stream); break;
    default: /* QW4 only: 4 steps per tile */
        launch<Q4, NT, OFFS, Q4 ? 2 : 1>(w, x, y, T, plan, part, counters, stream);
    }
}

template <bool Q4, int NT>
void launch_offs(const sl_cuda_qmat *w, const __half *x, float *y, int T, sl_qmm_plan plan,
                 float *part, unsigned *counters, cudaStream_t stream) {
    if (w->offsets) launch_sc<Q4, NT, true>(w, x, y, T, plan, part, counters, stream);
    else launch_sc<Q4, NT, false>(w, x, y, T, plan, part, counters, stream);
}

/* the launcher's workspace: partial sums and per-row-block counters (zero between launches) */
float *g_part;
size_t g_part_n;
unsigned *g_counters;
size_t g_counters_n;

void workspace(size_t part_n, size_t counters_n) {
    if (part_n > g_part_n) {
        SL_CUDA_CHECK(cudaDeviceSynchronize());
        SL_CUDA_CHECK(cudaFree(g_part));
        SL_CUDA_CHECK(cudaMalloc(&g_part, part_n * sizeof(float)));
        g_part_n = part_n;
    }
    if (counters_n > g_counters_n) {
        SL_CUDA_CHECK(cudaDeviceSynchronize());
        SL_CUDA_CHECK(cudaFree(g_counters));
        SL_CUDA_CHECK(cudaMalloc(&g_counters, counters_n * sizeof(unsigned)));
        SL_CUDA_CHECK(cudaMemset(g_counters, 0, counters_n * sizeof(unsigned)));
        g_counters_n = counters_n;
    }
}

int sm_count() {
    static int n;
    if (!n) {
        int dev = 0;
        SL_CUDA_CHECK(cudaGetDevice(&dev));
        SL_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    }
    return n;
}

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

/* Byte offset of logical element (r % 16, c % KT) within its tile's lane data: the lane and
 * the position j of the element in the lane's 16 bytes (QW4: nibble index, QW8: byte). */
void tile_pos(bool q4, int r, int c, int *lane, int *j) {
    const int s = c / 16, cc = c % 16, hi_row = r >= 8, hi_col = cc >= 8;
    const int g = r % 8, t = (cc % 8) / 2, odd = cc % 2;
    const int v = (hi_col ? 4 : 0) + (hi_row ? 2 : 0) + odd; /* fragment order v0..v7 */
    *lane = 4 * g + t;
    if (q4) *j = s * 8 + (v / 2) + (v % 2) * 4; /* nibble within the lane's 32 */
    else *j = s * 8 + v;                        /* byte within the lane's 16 */
}

} // namespace

extern "C" int sl_cuda_qmat_ktile(sl_wfmt fmt) { return ktile(fmt == SL_WF_QW4); }

extern "C" int sl_cuda_qmat_pack_host(sl_cuda_qmat *q, const sl_qw *w) {
    *q = sl_cuda_qmat{};
    if (!w || (w->fmt != SL_WF_QW4 && w->fmt != SL_WF_QW8)) return -1;
    if (w->group < 16 || (w->group & (w->group - 1)) || w->cols % w->group || w->rows <= 0)
        return -1;
    if (w->rows > INT32_MAX / 2 || w->cols > INT32_MAX / 2) return -1;
    const bool q4 = w->fmt == SL_WF_QW4;
    const int kt = ktile(q4);
    q->fmt = w->fmt;
    q->rows = w->rows;
    q->cols = w->cols;
    q->group = w->group;
    q->row_tiles = round_up(w->rows, 16) / 16;
    q->k_tiles = round_up(w->cols, kt) / kt;
    q->g_pad = (q->k_tiles * kt + w->group - 1) / w->group;
    const size_t code_bytes = (size_t)q->row_tiles * q->k_tiles * 512;
    const size_t sc_n = (size_t)q->row_tiles * q->g_pad * 16;
    unsigned char *codes = static_cast<unsigned char *>(calloc(code_bytes, 1));
    float *scales = static_cast<float *>(calloc(sc_n, sizeof(float)));
    float *offsets = w->offsets ? static_cast<float *>(calloc(sc_n, sizeof(float))) : nullptr;
    if (!codes || !scales || (w->offsets && !offsets)) {
        free(codes), free(scales), free(offsets);
        return -1;
    }
    const int64_t gpr = w->cols / w->group; /* logical groups per row */
    for (int64_t r = 0; r < w->rows; r++) {
        const int64_t rt = r / 16;
        for (int64_t c = 0; c < w->cols; c++) {
            int lane, j;
            tile_pos(q4, (int)(r % 16), (int)(c % kt), &lane, &j);
            unsigned char *lb = codes + ((size_t)rt * q->k_tiles + c / kt) * 512 + lane * 16;
            if (q4) {
                const unsigned char byte = static_cast<const unsigned char *>(w->codes)[r * (w->cols / 2) + c / 2];
                const unsigned code = c % 2 ? byte >> 4 : byte & 15;
                /* nibble j of the lane's 16 bytes: word j / 8, nibble j % 8 of the word */
                const int word = j / 8, nib = j % 8;
                uint32_t v;
                memcpy(&v, lb + word * 4, 4);
                v |= (uint32_t)code << (4 * nib);
                memcpy(lb + word * 4, &v, 4);
            } else {
                lb[j] = (unsigned char)(static_cast<const int8_t *>(w->codes)[r * w->cols + c] + 128);
            }
        }
        for (int64_t gi = 0; gi < gpr; gi++) {
            const size_t at = ((size_t)rt * q->g_pad + gi) * 16 + r % 16;
            scales[at] = w->scales[r * gpr + gi];
            if (offsets) offsets[at] = w->offsets[r * gpr + gi];
        }
    }
    /* padding: QW8 code 0 is stored as 128 (scale 0 makes any code 0; keep it the real zero) */
    if (!q4)
        for (int64_t rt = 0; rt < q->row_tiles; rt++)
            for (int64_t r = rt * 16; r < rt * 16 + 16; r++)
                for (int64_t c = 0; c < q->k_tiles * kt; c++) {
                    if (r < w->rows && c < w->cols) continue;
                    int lane, j;
                    tile_pos(false, (int)(r % 16), (int)(c % kt), &lane, &j);
                    codes[((size_t)rt * q->k_tiles + c / kt) * 512 + lane * 16 + j] = 128;
                }
    q->codes = codes;
    q->scales = scales;
    q->offsets = offsets;
    return 0;
}

extern "C" void sl_cuda_qmat_unpack_host(const sl_cuda_qmat *q, sl_qw *w) {
    SL_CUDA_REQUIRE(q && w && w->fmt == q->fmt && w->rows == q->rows && w->cols == q->cols);
    SL_CUDA_REQUIRE(w->group == q->group && (!w->offsets) == (!q->offsets));
    const bool q4 = q->fmt == SL_WF_QW4;
    const int kt = ktile(q4);
    const unsigned char *codes = static_cast<const unsigned char *>(q->codes);
    const int64_t gpr = w->cols / w->group;
    for (int64_t r = 0; r < w->rows; r++) {
        const int64_t rt = r / 16;
        for (int64_t c = 0; c < w->cols; c++) {
            int lane, j;
            tile_pos(q4, (int)(r % 16), (int)(c % kt), &lane, &j);
            const unsigned char *lb = codes + ((size_t)rt * q->k_tiles + c / kt) * 512 + lane * 16;
            if (q4) {
                uint32_t v;
                memcpy(&v, lb + (j / 8) * 4, 4);
                const unsigned code = (v >> (4 * (j % 8))) & 15;
                unsigned char *dst = static_cast<unsigned char *>(w->codes) + r * (w->cols / 2) + c / 2;
                *dst = (unsigned char)(c % 2 ? (*dst & 15) | (code << 4) : (*dst & 0xf0) | code);
            } else {
                static_cast<int8_t *>(w->codes)[r * w->cols + c] = (int8_t)(lb[j] - 128);
            }
        }
        for (int64_t gi = 0; gi < gpr; gi++) {
            const size_t at = ((size_t)rt * q->g_pad + gi) * 16 + r % 16;
            w->scales[r * gpr + gi] = q->scales[at];
            if (w->offsets) w->offsets[r * gpr + gi] = q->offsets[at];
        }
    }
}

extern "C" void sl_cuda_qmat_host_free(sl_cuda_qmat *q) {
    if (!q) return;
    free(q->codes);
    free(q->scales);
    free(q->offsets);
    *q = sl_cuda_qmat{};
}

extern "C" int sl_cuda_qmat_init(sl_cuda_qmat *q, const sl_qw *w) {
    sl_cuda_qmat h;
    if (sl_cuda_qmat_pack_host(&h, w) != 0) {
        *q = sl_cuda_qmat{};
        return -1;
    }
    *q = h;
    q->codes = nullptr, q->scales = nullptr, q->offsets = nullptr;
    const size_t code_bytes = (size_t)h.row_tiles * h.k_tiles * 512;
    const size_t sc_bytes = (size_t)h.row_tiles * h.g_pad * 16 * sizeof(float);
    q->codes = sl_cuda_malloc(code_bytes);
    q->scales = static_cast<float *>(sl_cuda_malloc(sc_bytes));
    if (h.offsets) q->offsets = static_cast<float *>(sl_cuda_malloc(sc_bytes));
    if (!q->codes || !q->scales || (h.offsets && !q->offsets)) {
        sl_cuda_qmat_deinit(q);
        sl_cuda_qmat_host_free(&h);
        return -2;
    }
    sl_cuda_upload(q->codes, h.codes, code_bytes);
    sl_cuda_upload(q->scales, h.scales, sc_bytes);
    if (h.offsets) sl_cuda_upload(q->offsets, h.offsets, sc_bytes);
    sl_cuda_qmat_host_free(&h);
    return 0;
}

extern "C" void sl_cuda_qmat_deinit(sl_cuda_qmat *q) {
    if (!q) return;
    sl_cuda_free(q->codes);
    sl_cuda_free(q->scales);
    sl_cuda_free(q->offsets);
    *q = sl_cuda_qmat{};
}

extern "C" sl_qmm_plan sl_cuda_qmm_default_plan(const sl_cuda_qmat *w) {
    /* Each warp streams about 8 tiles (one batch of loads) of one row tile per round, and
     * there are at least 12 warps per SM; the warps of a row tile are 2 per block when it has
     * more than one (kw), the rest split over blocks. */
    const int64_t sms = sm_count();
    int64_t per_tile = sl_div_up(w->k_tiles, QMM_U);
    if (w->row_tiles * per_tile < 12 * sms)
        per_tile = sl_min64(w->k_tiles, sl_div_up(12 * sms, w->row_tiles));
    sl_qmm_plan p;
    p.warps_per_tile = per_tile >= 2 ? 2 : 1;
    const int64_t s = sl_min64(sl_div_up(per_tile, p.warps_per_tile), 64);
    p.splits = s < 1 ? 1 : (int)s;
    return p;
}

extern "C" void sl_cuda_qmm_f16(const sl_cuda_qmat *w, const uint16_t *x16, float *y, int T,
                                sl_qmm_plan plan, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(w && w->codes && x16 && y && T >= 1);
    SL_CUDA_REQUIRE(((uintptr_t)x16 & 15) == 0);
    SL_CUDA_REQUIRE(w->fmt == SL_WF_QW4 || w->fmt == SL_WF_QW8);
    if (plan.warps_per_tile == 0 && plan.splits == 0) plan = sl_cuda_qmm_default_plan(w);
    SL_CUDA_REQUIRE(plan.warps_per_tile == 1 || plan.warps_per_tile == 2 ||
                    plan.warps_per_tile == 4 || plan.warps_per_tile == 8);
    SL_CUDA_REQUIRE(plan.splits >= 1);
    /* no empty splits: each covers ceil(k_tiles / splits) tiles */
    const int64_t tps = sl_div_up(w->k_tiles, plan.splits);
    plan.splits = (int)sl_div_up(w->k_tiles, tps);
    cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    const bool q4 = w->fmt == SL_WF_QW4;
    const int64_t row_blocks = sl_div_up(w->row_tiles, QMM_WARPS / plan.warps_per_tile);
    const __half *xh = reinterpret_cast<const __half *>(x16);
    for (int t0 = 0; t0 < T; t0 += SL_QMM_MAX_T) {
        const int tn = (int)sl_min64(SL_QMM_MAX_T, T - t0);
        const __half *xt = xh + (size_t)t0 * w->cols;
        float *yt = y + (size_t)t0 * w->rows;
        if (plan.splits > 1) workspace((size_t)plan.splits * tn * w->row_tiles * 16, row_blocks);
        if (q4 && tn <= 8) launch_offs<true, 1>(w, xt, yt, tn, plan, g_part, g_counters, st);
        else if (q4) launch_offs<true, 2>(w, xt, yt, tn, plan, g_part, g_counters, st);
        else if (tn <= 8) launch_offs<false, 1>(w, xt, yt, tn, plan, g_part, g_counters, st);
        else launch_offs<false, 2>(w, xt, yt, tn, plan, g_part, g_counters, st);
    }
}

extern "C" void sl_cuda_qmm(const sl_cuda_qmat *w, const float *x, float *y, int T,
                            sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(w && x && T >= 1);
    const uint16_t *x16 = sl__cuda_to_f16(x, (size_t)T * (size_t)w->cols, stream);
    sl_cuda_qmm_f16(w, x16, y, T, sl_qmm_plan{0, 0}, stream);
}
