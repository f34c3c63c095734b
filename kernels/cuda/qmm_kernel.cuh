/* qmm_kernel.cuh — the kernel of the weight-only QW8/QW4 matmul for decode (1 to 32 tokens per
 * launch) on the tensor cores, over the physical layout that qmat.cu repacks the logical weight
 * into (matmul.h, qmat_layout.cuh), and its launchers. qmm.cu has the entry points and the
 * default plans; qmm_w{4,8}_nt{1,2,4}.cu instantiate the launchers, a format and column-tile
 * count each, so that nvcc compiles them in parallel (all in one file took it about 100 s).
 *
 * One templated kernel over the format (QW4/QW8), the number of 8-token column tiles (1: up to
 * 8 tokens, 2: up to 16, 4: up to 32), whether the weight has offsets, the steps per scale and
 * the scales' width (f16, f32, or two-level: int8 multipliers of an f16 factor per 256 columns,
 * the K-quants' form). A block is 8 warps; each row tile (16 output rows) is shared by
 * kw = 1, 2, 4 or 8 of them, each streaming
 * a contiguous run of the row tile's column tiles, and their sums add up through shared memory
 * at the end; blockIdx.y splits the columns further over blocks.
 *
 * A warp streams its tiles through a ring of D register slots: each slot holds one tile's
 * 16-byte code load per lane and the lane's scales (and offsets) of the tile, one 4- to 32-byte
 * load (the layout keeps them together); the slot is refilled with the tile D ahead as soon as
 * its tile is multiplied, so D - 1 tiles are in flight while the warp computes one, and
 * nothing waits on the rest of the block. x comes straight from global memory (what the
 * block's warps share, from L1 or L2: 8 KiB a token for K = 4096), each lane's columns of a unit
 * in one load (qmat_layout.cuh's column order). No shared memory but the final sums, no
 * barrier in the loop.
 *
 * One launch may cover up to 3 weights of one format, group and K on the same x (q/k/v,
 * gate/up: sl_cuda_qmm_multi): blockIdx.x runs over each weight's row blocks in turn (flat
 * plans: the warps' runs over each weight's row tiles in turn), and the plan is the one for all
 * their rows together.
 *
 * The codes turn into f16 in registers: QW4 masks two nibbles per 16-bit half into the
 * mantissa of 1024 (OR 0x6400; the upper nibble comes out times 16, which an HFMA2 by 1/16
 * folds into its subtract), QW8 moves bytes under 0x64 with one byte permute; all exact. One
 * mma.m16n8k16 per 16 columns and 8 tokens; the steps of a unit (one scale) add up in the tensor
 * core and the unit's scales apply once in f32. With offsets, Σx over the unit comes from one
 * more mma with an all-ones A (every row gets the column sums, already in the accumulator's
 * layout): y = Σ_units s·(Σ c·x) + o·(Σ x). QW4 with two-level scales instead multiplies the
 * codes by their multipliers in the same HFMA2 and applies the factors per 256 columns (AS
 * below).
 *
 * Splits over blocks: with more than one, each block writes its partial sums to the launcher's
 * workspace; the last block of a row block to finish (an atomic count per row block) adds the
 * partials in split order and writes y, so the result does not depend on timing. Flat plans
 * (FLAT) instead give each warp of a grid sized to the SMs an equal run of all row tiles' tiles
 * in row-major order: a warp's run crosses row tiles, a row tile split between warps adds
 * their sums the same way (an atomic count per row tile, warp order). No block ever waits for a
 * row tile's other warps, and every warp streams about as many tiles as any other. The default
 * plan (kw and splits) depends on the weight's shape and format, the SM count and the call's
 * token count (up to 32: one plan for all of a call's launches); with any_batch (the CUDA
 * backend's batch-invariant mode) not on the token count, so a token's result is the same in
 * any batch.
 */
#ifndef SL_CUDA_QMM_KERNEL_CUH
#define SL_CUDA_QMM_KERNEL_CUH

#include <limits.h>

#include "common.cuh"
#include "matmul.h"
#include "ptx.cuh"
#include "qmat_layout.cuh"

#include <cuda_fp16.h>

namespace sl_qmm {

constexpr int QMM_WARPS = 8; /* warps per block */
constexpr int QMM_THREADS = QMM_WARPS * 32;

__host__ __device__ constexpr int ktile(bool q4) { return sl_qmat_kt(q4); }

/* ring slots per warp: tiles in flight while it computes. With 2 to 4 blocks per SM (up to 128
 * or 64 registers), 27 to 54 KiB in flight per SM (3 of 4 slots loading), more than an H100's
 * latency × bandwidth (about 25 KiB per SM); 8 slots cost registers (126 for QW4 g32) and so
 * warps. */
constexpr int QMM_D = 4;

/* a QW4 word's low and high nibble of each 16-bit half */
constexpr uint32_t lo_mask = 0x000F000Fu, hi_mask = 0x00F000F0u;

/* c - bias, and c·(1/16) + bias, on both 16-bit halves of a register (reinterpretations) */
__device__ __forceinline__ uint32_t hsub2_u32(uint32_t c, __half2 bias) {
    const __half2 d = __hsub2(*reinterpret_cast<const __half2 *>(&c), bias);
    return *reinterpret_cast<const uint32_t *>(&d);
}
__device__ __forceinline__ uint32_t hfma2_u32(uint32_t c, __half2 m, __half2 bias) {
    const __half2 d = __hfma2(*reinterpret_cast<const __half2 *>(&c), m, bias);
    return *reinterpret_cast<const uint32_t *>(&d);
}
/* c·m + a and c·m on registers of f16 pairs */
__device__ __forceinline__ uint32_t hfma2_u32(uint32_t c, uint32_t m, uint32_t a) {
    return hfma2_u32(c, *reinterpret_cast<const __half2 *>(&m), *reinterpret_cast<const __half2 *>(&a));
}
__device__ __forceinline__ uint32_t hmul2_u32(uint32_t c, uint32_t m) {
    const __half2 d = __hmul2(*reinterpret_cast<const __half2 *>(&c), *reinterpret_cast<const __half2 *>(&m));
    return *reinterpret_cast<const uint32_t *>(&d);
}

/* NW words of read-only memory (4·NW-byte aligned, 16 for NW > 4): scales where written
 * (ORDERED: ptx.cuh's volatile loads, kept ahead of their use), x where the compiler likes */
template <class V, bool ORDERED> __device__ __forceinline__ V ldg_one(const void *p) {
    if constexpr (!ORDERED) return __ldg(static_cast<const V *>(p));
    else if constexpr (sizeof(V) == 4) return sl_ldg_nc_b32(p);
    else if constexpr (sizeof(V) == 8) return sl_ldg_nc_v2(p);
    else return sl_ldg_nc_v4(p);
}
template <int NW, bool ORDERED>
__device__ __forceinline__ void ldg_words(uint32_t (&d)[NW], const void *p) {
    static_assert(NW == 1 || NW == 2 || NW == 4 || NW == 8, "4 to 32 bytes");
    if constexpr (NW == 1) {
        d[0] = ldg_one<uint32_t, ORDERED>(p);
    } else if constexpr (NW == 2) {
        const uint2 v = ldg_one<uint2, ORDERED>(p);
        d[0] = v.x, d[1] = v.y;
    } else {
#pragma unroll
        for (int i = 0; i < NW / 4; i++) {
            const uint4 v = ldg_one<uint4, ORDERED>(static_cast<const uint4 *>(p) + i);
            d[4 * i] = v.x, d[4 * i + 1] = v.y, d[4 * i + 2] = v.z, d[4 * i + 3] = v.w;
        }
    }
}

/* unit u's scales (or offsets) of rows g and g + 8 from a lane's record words: f16 pairs
 * (ES 2), f32 (ES 4), or int8 pairs times the rows' factors f (ES 1: QW8's two-level scales,
 * the product exact) */
template <int ES> __device__ __forceinline__ float2 unit_pair(const uint32_t *w, int u, float2 f) {
    if constexpr (ES == 2) return __half22float2(*reinterpret_cast<const __half2 *>(&w[u]));
    float2 v;
    if constexpr (ES == 4) {
        v.x = __uint_as_float(w[2 * u]), v.y = __uint_as_float(w[2 * u + 1]);
    } else {
        const uint32_t word = w[u / 2];
        const int sh = 16 * (u % 2);
        v.x = f.x * (float)(int8_t)(word >> sh), v.y = f.y * (float)(int8_t)(word >> (sh + 8));
    }
    return v;
}

/* The weights of one launch (1 to 3 of one format, group and K on the same x: q/k/v, gate/up),
 * each its own run of row blocks (or, flat, of row tiles); entries past n repeat the first. */
struct qmm_segs {
    const uint4 *codes[3];              /* device, each weight's tiles (matmul.h) */
    const void *scales[3], *offsets[3]; /* device, their records (offsets may be null) */
    const void *factors[3];             /* device, two-level scales' factors (or null) */
    float *y[3];                        /* device, f32 [T][N] */
    int N[3], row_tiles[3];
    int rb0[3];          /* the segment's first row block */
    long long poff[3];   /* where its partial sums start in the workspace (floats) */
    int rt0[3];          /* flat plans: the segment's first row tile of all of them */
    int rt_all;          /* flat plans: the row tiles of all segments */
    int n;
};

template <class V> __device__ __forceinline__ V pick(int sg, V a, V b, V c) {
    return sg == 0 ? a : sg == 1 ? b : c; /* selects: no dynamic indexing of the parameters */
}

/* Blocks per SM the registers must allow: 2 at least (128 registers). Up to 8 tokens 4 (64)
 * where nvcc 13.0 needs more than 64 registers without the bound and fits in 64 without
 * spilling with it (scripts/qmm-sass.sh). Without offsets: every QW4 form but f32 scales one
 * per 16 columns, and QW8 with two-level scales or with f32 ones per 16 columns (Q8_0's form
 * needs 62 alone, and more instructions under the bound). With offsets: QW8 with f16 scales,
 * and QW4 with f16 scales and 4 steps per unit (QW8 with f32 ones and 2 steps per unit spilled
 * in its loop at 64 once the L2 prefetch's call came in). Else 3 (85): up to 8 tokens for
 * two-level QW4 with 2 or more steps per unit (Q4_K's g32), and at 9 to 16 tokens for QW4
 * without offsets and 2 or more steps per unit (Q4_0's form: 97 registers → 80, 4 bytes
 * spilled outside the loop, 7% more instructions a tile; f32 scales 98 → 80, 12 bytes; g128:
 * 89 → 79, as many; with offsets they spill in the loop at 80). The last GPU profile (Q4_0's
 * form at 1 token: 79 registers, 3 blocks; at 16 tokens 2 blocks, 21% occupancy) found the
 * kernel waiting on its loads: the bounds of 4 blocks up to 8 tokens and 3 at 9 to 16 have not
 * run on a card yet, -DSL_QMM_BLOCKS4=0 builds the previous ones to compare. */
#ifndef SL_QMM_BLOCKS4
#define SL_QMM_BLOCKS4 1
#endif
constexpr int qmm_min_blocks(bool q4, int nt, bool offs, int sc, int es) {
    return nt == 1 && SL_QMM_BLOCKS4 &&
                   (offs ? (!q4 && es == 2) || (q4 && es == 2 && sc == 2)
                         : q4 ? !(es == 4 && sc == 0) : es == 1 || (es == 4 && sc == 0))
               ? 4
           : (q4 && es == 1 && nt == 1 && sc >= 1) ||
                     (SL_QMM_BLOCKS4 && q4 && nt == 2 && !offs && sc >= 1)
               ? 3
               : 2;
}

/* qmm_kernel's L2 prefetch of a run (lanes 0-3, g = 0: the running pointers are row g's, at
 * tile k0): tiles [k0 + D, min(ka, k0 + D + pf)), and the factor blocks (FACB bytes each)
 * from the run's FSKIP-th, the first the kernel does not load as it starts (QW4 loads a
 * block's factors at its first tile, QW8 two blocks at k0) */
template <int D, int UPT, int RECB, int FACB, int SBS, int FSKIP>
__device__ SL_NOINLINE void prefetch_run(int lane, const uint4 *cq, const char *sq, const char *oq,
                                          const uint32_t *fa, int k0, int ka, int pf, int rec_shift) {
    const int a = k0 + D, b = min(ka, a + pf);
    const char *p = nullptr;
    int bytes = 0;
    if (lane == 0) {
        p = reinterpret_cast<const char *>(cq + D * 32), bytes = (b - a) * 512;
    } else if (lane == 1 || (oq && lane == 2)) {
        const int r0 = UPT > 1 ? D : a >> rec_shift, r1 = UPT > 1 ? b - k0 : ((b - 1) >> rec_shift) + 1;
        p = (lane == 1 ? sq : oq) + r0 * RECB, bytes = (r1 - r0) * RECB;
    } else if (FACB && lane == 3) {
        const int f1 = ((b - 1) >> SBS) + 1 - (k0 >> SBS); /* blocks from k0's */
        p = reinterpret_cast<const char *>(fa) + FSKIP * FACB, bytes = max(0, f1 - FSKIP) * FACB;
    }
    if (bytes) sl_prefetch_l2(p, (uint32_t)bytes);
}

template <bool Q4, int NT, bool OFFS, int SC, int ES, bool FLAT>
__global__ void __launch_bounds__(QMM_THREADS, qmm_min_blocks(Q4, NT, OFFS, SC, ES))
    qmm_kernel(const qmm_segs segs, const __half *__restrict__ x, float *__restrict__ part,
               unsigned *__restrict__ counters, int T, int K, int k_tiles, int n_rec,
               int rec_shift, int tiles_per_split, int kw, int flat_per, int flat_pieces, int pf) {
    constexpr int KT = ktile(Q4), STEPS = KT / 16;
    constexpr int SPA = 1 << SC;       /* steps per unit (one scale) */
    constexpr int UPT = STEPS / SPA;   /* units per tile */
    constexpr int L = 2 * UPT;         /* a lane's scales per tile: rows g and g + 8 per unit */
    constexpr int RB = L * ES;         /* their bytes (ES per scale: 1 two-level, 2 f16, 4 f32) */
    constexpr int NW = RB < 4 ? 1 : RB / 4; /* the words they take */
    constexpr int FW = OFFS ? 2 : 1;   /* two-level: a lane's factor words (f16 pairs) */
    constexpr int W = 2 * SPA;         /* a lane's words of x per unit and token row */
    /* 2 slots where 4 do not fit in 128 registers with the rest (they spilled 4 to 316 bytes):
     * at 32 tokens with offsets or 4 units per tile, at 16 for QW4 g16 with offsets. Then only
     * about 8 KiB per SM are in flight at 16 warps (a third of an H100's latency × bandwidth):
     * the benchmark's offset rows at 32 tokens tell whether a second launch would do better.
     * nvcc 13.0 still spills 16 to 20 bytes for QW4 with offsets at 32 tokens (gpu-check's
     * sass step reports each instantiation's stack) */
    constexpr int D = (NT == 4 && (OFFS || UPT == 4)) || (Q4 && UPT == 4 && OFFS && NT == 2) ? 2 : QMM_D;
    SL_SHARED(float, red, [QMM_WARPS * NT * 4 * 32]); /* the kw warps' sums of a row tile */
    SL_SHARED(unsigned, last_block, [1]);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    constexpr bool AS = Q4 && ES == 1;
    constexpr int SBS = Q4 ? 2 : 3;    /* log2 of the tiles per factor (SL_QMAT_SB columns) */
    constexpr int TPB = 1 << SBS;

    /* Blocked plans: this block's weight (segment sg) and its row block rb there; the warp's row
     * tile rt and its column tiles [k0, k1): its part of its block's split; two-level scales
     * in whole blocks of a factor (tiles_per_split is a multiple of TPB then, as is k_tiles) */
    int sg = (segs.n > 1 && (int)blockIdx.x >= segs.rb0[1]) + (segs.n > 2 && (int)blockIdx.x >= segs.rb0[2]);
    const int rb = (int)blockIdx.x - pick(sg, segs.rb0[0], segs.rb0[1], segs.rb0[2]);
    const int tiles_per_block = QMM_WARPS / kw;
    const int part_w = warp % kw, lt = warp / kw; /* local row tile */
    int rt = rb * tiles_per_block + lt;
    bool active = rt < pick(sg, segs.row_tiles[0], segs.row_tiles[1], segs.row_tiles[2]);
    const int split = blockIdx.y, splits = gridDim.y;
    const int s0 = split * tiles_per_split, s1 = min(k_tiles, s0 + tiles_per_split);
    int per = (s1 - s0 + kw - 1) / kw;
    if constexpr (ES == 1) per = (per + TPB - 1) / TPB * TPB;
    int k0 = min(s1, s0 + part_w * per), k1 = active ? min(s1, k0 + per) : k0;
    /* Flat plans (FLAT): warp gw of the grid streams the flat_per tiles from gw ·
     * flat_per of all row tiles' tiles in row-major order (each weight's row tiles in turn),
     * piece by piece, a piece the part of one row tile; a multiple of TPB for two-level scales */
    const int gw = (int)blockIdx.x * QMM_WARPS + warp;
    int f = gw * flat_per;

  for (;;) { /* blocked: once; flat: each piece */
    if constexpr (FLAT) {
        const int fe = min(segs.rt_all * k_tiles, (gw + 1) * flat_per); /* ints: the launcher's check */
        if (f >= fe) return;
        const int ra = f / k_tiles; /* the row tile over all segments */
        sg = (segs.n > 1 && ra >= segs.rt0[1]) + (segs.n > 2 && ra >= segs.rt0[2]);
        rt = ra - pick(sg, segs.rt0[0], segs.rt0[1], segs.rt0[2]);
        k0 = f - ra * k_tiles, k1 = min(k_tiles, k0 + (fe - f));
        active = true;
    }
    const uint4 *__restrict__ codes = pick(sg, segs.codes[0], segs.codes[1], segs.codes[2]);
    const void *__restrict__ scales = pick(sg, segs.scales[0], segs.scales[1], segs.scales[2]);
    const void *__restrict__ offsets = pick(sg, segs.offsets[0], segs.offsets[1], segs.offsets[2]);
    const void *__restrict__ factors = pick(sg, segs.factors[0], segs.factors[1], segs.factors[2]);
    float *__restrict__ y = pick(sg, segs.y[0], segs.y[1], segs.y[2]);
    const int N = pick(sg, segs.N[0], segs.N[1], segs.N[2]);
    const int row_tiles = pick(sg, segs.row_tiles[0], segs.row_tiles[1], segs.row_tiles[2]);

    const __half2 bias = Q4 ? (OFFS ? __float2half2_rn(1024.0f) : __float2half2_rn(1032.0f))
                            : __float2half2_rn(1152.0f);
    /* the upper nibble of a QW4 half is 1024 + 16c: c (- 8) = that / 16 - 64 (- 8) */
    const __half2 sixteenth = __float2half2_rn(0.0625f);
    const __half2 bias16 = OFFS ? __float2half2_rn(-64.0f) : __float2half2_rn(-72.0f);
    const uint32_t ones[4] = {0x3c003c00u, 0x3c003c00u, 0x3c003c00u, 0x3c003c00u}; /* f16 1.0 */
    /* a QW4 half's nibbles under the exponent of 1024: (w & mask) | 0x6400 in one LOP3 */
    auto nib = [](const uint32_t w, const uint32_t mask) { return sl_lop3<0xEA>(w, mask, 0x64006400u); };

    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

    /* running pointers at tile k0: codes, scales (and offsets), each token row's x; the
     * loop below moves them by whole rings, so a tile's addresses are immediate offsets */
    const size_t rtc = active ? rt : 0;
    const uint4 *cq = codes + (rtc * k_tiles + k0) * 32 + lane;
    const size_t sbase = (rtc * n_rec * 8 + g) * L + (UPT > 1 ? (size_t)k0 * 8 * L : 0);
    const char *sq = static_cast<const char *>(scales) + sbase * ES;
    const char *oq = OFFS ? static_cast<const char *>(offsets) + sbase * ES : nullptr;
    /* two-level: the lane's factors of the row tile (K_pad / SL_QMAT_SB of them) */
    const uint32_t *fq = ES == 1 ? static_cast<const uint32_t *>(factors) +
                                       (rtc * (k_tiles >> SBS) * 8 + g) * FW
                                 : nullptr;
    /* two-level: the factors of the block being multiplied, moved on after each block */
    const uint32_t *fa = ES == 1 ? fq + (size_t)(k0 >> SBS) * 8 * FW : nullptr;
    /* token rows past T read row T - 1: an mma's output column depends on its own B column
     * alone, so they reach only outputs that are not stored */
    const __half *xq[NT];
#pragma unroll
    for (int n = 0; n < NT; n++)
        xq[n] = x + (size_t)min(n * 8 + g, T - 1) * K + (size_t)k0 * KT + t * 4 * SPA;

    uint4 cv[D];
    uint32_t scv[D][NW], ofv[D][NW];
    /* slot's loads of tile k = k0 + i (i from the pointers' tile) */
    auto issue = [&](const int slot, const int i, const int k) {
        cv[slot] = sl_ldg_stream_v4(cq + i * 32); /* read once: kept out of L1, where x is */
        /* a record per tile, or per group of 2^rec_shift tiles */
        const int at = (UPT > 1 ? i : k >> rec_shift) * 8 * L;
        if constexpr (RB == 2) {
            scv[slot][0] = sl_ldg_nc_u16(sq + at);
            if constexpr (OFFS) ofv[slot][0] = sl_ldg_nc_u16(oq + at);
        } else {
            ldg_words<NW, true>(scv[slot], sq + at * ES);
            if constexpr (OFFS) ldg_words<NW, true>(ofv[slot], oq + at * ES);
        }
    };
    /* a row's last tile when it ends past K (then UPT > 1, and never two-level: those weights'
     * K is a multiple of 256) is not streamed: ka is where the ring stops */
    const bool has_tail = UPT > 1 && ES != 1 && k1 > k0 && k1 == k_tiles && k_tiles * KT > K;
    const int ka = has_tail ? k1 - 1 : k1;
    /* L2 prefetch (pf > 0): as it starts its run, the warp asks L2 for the run's next pf tiles
     * past the ring's first D (cut at ka), their codes (lane 0), scale and offset records
     * (lanes 1, 2) and two-level factors (lane 3), each one contiguous range: more bytes on
     * their way from memory than the ring's registers hold, and the ring's loads of those
     * tiles then wait for L2 only. Once a run, before the loop: nothing of it stays in
     * registers or costs the loop an instruction. */
    if (pf && k0 + D < ka && lane < 4)
        prefetch_run<D, UPT, 8 * L * ES, ES == 1 ? 8 * FW * 4 : 0, SBS, Q4 ? 1 : 2>(
            lane, cq, sq, oq, fa, k0, ka, pf, rec_shift);
#pragma unroll
    for (int u = 0; u < D; u++)
        if (k0 + u < ka) issue(u, u, k0 + u);

    /* QW4 two-level (AS): the multipliers q (0..127) scale the codes in f16, exactly: the
     * HFMA2 that turns a code into f16 multiplies by q·2^-24 (a subnormal, the byte moved in by
     * one byte permute) instead of 1, so A holds c·q·2^-24 (rows g + 8: c·q·2^-20, the upper
     * nibble's 16), integers under 2048 times a power of 2. The products of a factor's 256
     * columns then add up in the tensor core (sb_s, and sb_o for the offsets, whose A is q·2^-24
     * itself), and the factors apply once per 256 columns, scaled back by 2^24 (2^20): no f32
     * work per unit. */
    float sb_s[NT][4], sb_o[NT][4];
    /* the factors of the block being multiplied: AS loads them at its first tile, for flush;
     * two-level QW8 needs them from its first tile on, so they load a block ahead (fn) */
    uint32_t fb[FW] = {}, fn[FW] = {};
    /* two-level QW8: the block's factors of rows g, g + 8 in f32, for the scales (fs) and the
     * offsets (fo) */
    float2 fs = make_float2(0.0f, 0.0f), fo = fs;
    auto factors_f32 = [&]() {
        fs = __half22float2(*reinterpret_cast<const __half2 *>(&fb[0]));
        if constexpr (OFFS) fo = __half22float2(*reinterpret_cast<const __half2 *>(&fb[FW - 1]));
    };
    if constexpr (ES == 1 && !Q4)
        if (k0 < ka) {
            ldg_words<FW, true>(fb, fa);
            if (k0 + TPB < ka) ldg_words<FW, true>(fn, fa + 8 * FW);
            factors_f32();
        }
    const float zero4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    /* the factors' sums into acc, after the last tile of their 256 columns (the next block's
     * first mma starts its sums from zero) */
    auto flush = [&](const uint32_t (&fw)[FW]) { /* AS */
        const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&fw[0]));
        const float fg = f.x * 0x1p24f, fg8 = f.y * 0x1p20f;
        float2 o = make_float2(0.0f, 0.0f);
        if constexpr (OFFS) o = __half22float2(*reinterpret_cast<const __half2 *>(&fw[FW - 1]));
        const float og = o.x * 0x1p24f, og8 = o.y * 0x1p24f;
#pragma unroll
        for (int n = 0; n < NT; n++) {
            acc[n][0] += fg * sb_s[n][0], acc[n][1] += fg * sb_s[n][1];
            acc[n][2] += fg8 * sb_s[n][2], acc[n][3] += fg8 * sb_s[n][3];
            if constexpr (OFFS) {
                acc[n][0] += og * sb_o[n][0], acc[n][1] += og * sb_o[n][1];
                acc[n][2] += og8 * sb_o[n][2], acc[n][3] += og8 * sb_o[n][3];
            }
        }
    };

    /* one tile's products: v the lane's codes, sc/of its scales and offsets (two-level QW8:
     * times the block's factors fs, fo); tail: k is the tile that holds the end of the row
     * (below); fresh (AS): the first tile of a factor's block */
    auto product = [&](const uint4 v, const uint32_t (&sc)[NW], const uint32_t (&of)[NW],
                       const int i, const int k, const bool tail, const bool fresh) {
        const uint32_t wq[4] = {v.x, v.y, v.z, v.w};
        /* a unit past K (the last tile's padding; only when a tile holds more than one) reads
         * the row's last unit instead: its scales and offsets are zero, so finite x adds 0.
         * Only a row's last tile can hold one, which the loop below leaves to its own call:
         * the others keep immediate offsets (about 10 fewer instructions a tile) */
        const int room = K - k * KT - 16 * SPA;
#pragma unroll
        for (int u = 0; u < UPT; u++) {
            uint32_t xb[NT][W];
            if (!tail) { /* immediate offsets from the ring's pointers */
#pragma unroll
                for (int n = 0; n < NT; n++) ldg_words<W, false>(xb[n], xq[n] + i * KT + u * 16 * SPA);
            } else {
                const int xc = i * KT + (u == 0 ? 0 : min(u * 16 * SPA, room));
#pragma unroll
                for (int n = 0; n < NT; n++) ldg_words<W, false>(xb[n], xq[n] + xc);
            }
            float d[NT][4], ds[NT][4];
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) d[n][e] = ds[n][e] = 0.0f;
            /* AS: the unit's multipliers of rows g, g + 8 (bytes 2u % 4 and the next of their
             * record word) as f16 pairs q·2^-24, and the HFMA2's addends -1024·q·2^-24 */
            uint32_t kg = 0, kg8 = 0, bg = 0, bg8 = 0, mg = 0, mg8 = 0;
            if constexpr (AS) {
                const int byte = 2 * u % 4;
                const uint32_t sw = sc[u / 2];
                kg = __byte_perm(sw, 0u, 0x4040u | byte | byte << 8);
                kg8 = __byte_perm(sw, 0u, 0x4040u | (byte + 1) | (byte + 1) << 8);
                bg = hmul2_u32(kg, 0xE400E400u), bg8 = hmul2_u32(kg8, 0xE400E400u); /* -1024 */
                if constexpr (OFFS) {
                    const uint32_t ow = of[u / 2];
                    mg = __byte_perm(ow, 0u, 0x4040u | byte | byte << 8);
                    mg8 = __byte_perm(ow, 0u, 0x4040u | (byte + 1) | (byte + 1) << 8);
                }
            }
#pragma unroll
            for (int ss = 0; ss < SPA; ss++) {
                const int s = u * SPA + ss;
                uint32_t a[4];
                if constexpr (AS) {
                    const uint32_t w0 = wq[s], w8 = w0 >> 8;
                    a[0] = hfma2_u32(nib(w0, lo_mask), kg, bg);
                    a[1] = hfma2_u32(nib(w0, hi_mask), kg8, bg8);
                    a[2] = hfma2_u32(nib(w8, lo_mask), kg, bg);
                    a[3] = hfma2_u32(nib(w8, hi_mask), kg8, bg8);
                } else if constexpr (Q4) {
                    const uint32_t w0 = wq[s], w8 = w0 >> 8;
                    a[0] = hsub2_u32(nib(w0, lo_mask), bias);
                    a[1] = hfma2_u32(nib(w0, hi_mask), sixteenth, bias16);
                    a[2] = hsub2_u32(nib(w8, lo_mask), bias);
                    a[3] = hfma2_u32(nib(w8, hi_mask), sixteenth, bias16);
                } else {
                    const uint32_t v0 = wq[2 * s], v1 = wq[2 * s + 1];
                    a[0] = hsub2_u32(__byte_perm(v0, 0x64646464u, 0x4140), bias);
                    a[1] = hsub2_u32(__byte_perm(v0, 0x64646464u, 0x4342), bias);
                    a[2] = hsub2_u32(__byte_perm(v1, 0x64646464u, 0x4140), bias);
                    a[3] = hsub2_u32(__byte_perm(v1, 0x64646464u, 0x4342), bias);
                }
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    const uint32_t b[2] = {xb[n][2 * ss], xb[n][2 * ss + 1]};
                    if constexpr (AS) {
                        const uint32_t am[4] = {mg, mg8, mg, mg8};
                        if (fresh && s == 0) {
                            sl_mma_m16n8k16_f16(sb_s[n], a, b, zero4);
                            if constexpr (OFFS) sl_mma_m16n8k16_f16(sb_o[n], am, b, zero4);
                        } else {
                            sl_mma_m16n8k16_f16(sb_s[n], a, b, sb_s[n]);
                            if constexpr (OFFS) sl_mma_m16n8k16_f16(sb_o[n], am, b, sb_o[n]);
                        }
                    } else {
                        sl_mma_m16n8k16_f16(d[n], a, b, d[n]);
                        if constexpr (OFFS) sl_mma_m16n8k16_f16(ds[n], ones, b, ds[n]);
                    }
                }
            }
            if constexpr (AS) continue; /* the factors apply in flush */
            const float2 scu = unit_pair<ES>(sc, u, fs); /* rows g, g + 8 */
#pragma unroll
            for (int n = 0; n < NT; n++) {
                acc[n][0] += scu.x * d[n][0];
                acc[n][1] += scu.x * d[n][1];
                acc[n][2] += scu.y * d[n][2];
                acc[n][3] += scu.y * d[n][3];
                if constexpr (OFFS) {
                    const float2 ofu = unit_pair<ES>(of, u, fo);
                    acc[n][0] += ofu.x * ds[n][0];
                    acc[n][1] += ofu.x * ds[n][1];
                    acc[n][2] += ofu.y * ds[n][2];
                    acc[n][3] += ofu.y * ds[n][3];
                }
            }
        }
    };

    static_assert(ES != 1 || D % TPB == 0 || TPB % D == 0, "a factor's block starts at a fixed slot");
    int kt = k0;
    for (; kt < ka; kt += D) {
#pragma unroll
        for (int u = 0; u < D; u++) {
            const int k = kt + u;
            if (k < ka) {
                /* two-level: k0 and kt are multiples of TPB or of D, so a factor's block
                 * starts and ends at fixed slots when D covers it, else at uniform tests */
                const bool first = D % TPB == 0 ? u % TPB == 0 : u == 0 && kt % TPB == 0;
                const bool last = D % TPB == 0 ? u % TPB == TPB - 1 : u == D - 1 && (kt + D) % TPB == 0;
                if constexpr (AS)
                    if (first) ldg_words<FW, true>(fb, fa);
                product(cv[u], scv[u], ofv[u], u, k, false, AS && first);
                if constexpr (AS)
                    if (last) flush(fb), fa += 8 * FW;
                if constexpr (ES == 1 && !Q4)
                    if (last) { /* the next block's factors, and a load of the one after */
                        fa += 8 * FW;
#pragma unroll
                        for (int i = 0; i < FW; i++) fb[i] = fn[i];
                        if (k + 1 + TPB < ka) ldg_words<FW, true>(fn, fa + 8 * FW);
                        factors_f32();
                    }
                if (k + D < ka) issue(u, u + D, k + D);
            }
        }
        cq += D * 32;
        if constexpr (UPT > 1) {
            sq += D * 8 * L * ES;
            if constexpr (OFFS) oq += D * 8 * L * ES;
        }
#pragma unroll
        for (int n = 0; n < NT; n++) xq[n] += D * KT;
    }
    if constexpr (UPT > 1 && ES != 1)
        if (has_tail) { /* the pointers are at tile kt */
            issue(0, ka - kt, ka);
            product(cv[0], scv[0], ofv[0], ka - kt, ka, true, false);
        }

    /* acc[n][i]: row rt·16 + g (+8 for i >= 2), token n·8 + 2t (+1 for odd i): into out[tok ·
     * ld + r] for the rows under rmax and the tokens under T */
    auto store_acc = [&](float *out, const int ld, const int rmax) {
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int tok = n * 8 + 2 * t + (i & 1), r = rt * 16 + g + (i >= 2 ? 8 : 0);
                if (tok < T && r < rmax) out[(size_t)tok * ld + r] = acc[n][i];
            }
    };

    /* flat: a whole row tile's sums go to y; a piece's to its slot in the workspace (flat_pieces
     * slots of NT·128 floats a row tile), and the warp that brings the row tile's count to its
     * pieces adds them, in order, so the result does not depend on timing */
    if constexpr (FLAT) {
        const int ra = rt + pick(sg, segs.rt0[0], segs.rt0[1], segs.rt0[2]);
        const int first = ra * k_tiles / flat_per, np = (ra * k_tiles + k_tiles - 1) / flat_per - first + 1;
        bool store = np == 1;
        if (!store) {
            float *slot = part + ((size_t)ra * flat_pieces + (gw - first)) * (NT * 128) + lane;
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int i = 0; i < 4; i++) slot[(n * 4 + i) * 32] = acc[n][i];
            __threadfence();
            __syncwarp();
            unsigned done = 0;
            if (lane == 0) done = atomicAdd(&counters[ra], 1u);
            store = __shfl_sync(0xffffffffu, done, 0) == (unsigned)np - 1;
            if (store) { /* every lane's reads after lane 0's count */
                __syncwarp();
                __threadfence();
                const float *p0 = part + (size_t)ra * flat_pieces * (NT * 128) + lane;
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int i = 0; i < 4; i++) acc[n][i] = __ldcg(p0 + (n * 4 + i) * 32);
                for (int j = 1; j < np; j++)
#pragma unroll
                    for (int n = 0; n < NT; n++)
#pragma unroll
                        for (int i = 0; i < 4; i++)
                            acc[n][i] += __ldcg(p0 + (size_t)j * (NT * 128) + (n * 4 + i) * 32);
                if (lane == 0) counters[ra] = 0; /* ready for the next launch */
            }
        }
        if (store) store_acc(y, N, N);
        f += k1 - k0;
        continue;
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

    /* y, or this split's partial sums */
    const int n_pad = row_tiles * 16;
    part += pick(sg, segs.poff[0], segs.poff[1], segs.poff[2]);
    if (active && part_w == 0) {
        if (splits == 1) store_acc(y, N, N);
        else store_acc(part + (size_t)split * T * n_pad, n_pad, n_pad);
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
    const int rows = tiles_per_block * 16, r0 = rb * rows;
    for (int i = threadIdx.x; i < T * rows; i += QMM_THREADS) {
        const int tok = i / rows, r = r0 + i % rows;
        if (r >= N) continue;
        float s = 0.0f;
#pragma unroll 8
        for (int sp = 0; sp < splits; sp++) s += __ldcg(part + ((size_t)sp * T + tok) * n_pad + r);
        y[(size_t)tok * N + r] = s;
    }
    if (threadIdx.x == 0) counters[blockIdx.x] = 0; /* ready for the next launch */
    return;
  }
}

inline int ilog2(int v) {
    int l = 0;
    while ((1 << (l + 1)) <= v) l++;
    return l;
}

/* log2 of the 16-column steps per scale application: a group's steps within one tile (all of
 * the tile's when the group is as long as the tile or longer) */
inline int qmm_sc(bool q4, int group) { return ilog2(sl_qmat_spa(q4, group)); }

/* one launch's weights and outputs (1 to 3, sl_cuda_qmm_groupable) */
struct qmm_job {
    const sl_cuda_qmat *w[3];
    float *y[3];
    int n;
};

int sm_count(); /* the device's (qmm.cu) */

/* A run of column tiles a block or warp starts at: two-level scales work in whole blocks of a
 * factor (SL_QMAT_SB columns: qmm_kernel loads a block's factors once), so their runs are
 * rounded up to them */
inline int64_t whole_blocks(const sl_cuda_qmat *w, int64_t tiles) {
    if (w->scale_bytes != 1) return tiles;
    const int64_t b = SL_QMAT_SB / ktile(w->fmt == SL_WF_QW4);
    return sl_div_up(tiles, b) * b;
}
/* The column tiles of each of a plan's splits */
inline int64_t split_tiles(const sl_cuda_qmat *w, int splits) {
    return whole_blocks(w, sl_div_up(w->k_tiles, splits));
}

/* A flat plan's tiles per warp: all row tiles' tiles over flat blocks per SM of 8 warps each;
 * and the most warps (pieces) a row tile's tiles can then meet */
inline int flat_per(const sl_cuda_qmat *w, int64_t row_tiles, int flat) {
    return (int)whole_blocks(w, sl_div_up(row_tiles * w->k_tiles, (int64_t)flat * sm_count() * QMM_WARPS));
}
inline int flat_pieces(const sl_cuda_qmat *w, int per) { return (int)((w->k_tiles - 1) / per + 2); }

template <bool Q4, int NT, bool OFFS, int SC, int ES>
void launch(const qmm_job &j, const __half *x, int T, sl_qmm_plan plan, float *part,
            unsigned *counters, cudaStream_t stream) {
    const sl_cuda_qmat *w = j.w[0]; /* the format, group and K of all */
    const int kt = ktile(Q4), lg = ilog2(w->group), lkt = ilog2(kt);
    /* scale records (qmat_layout.cuh): one per tile, or one per group when groups are longer */
    const int n_rec = (int)(w->group > kt ? w->g_pad : w->k_tiles), rec_shift = lg > lkt ? lg - lkt : 0;
    const bool flat = plan.flat > 0;
    if (ES == 1) SL_CUDA_REQUIRE(w->k_tiles % (SL_QMAT_SB / kt) == 0); /* whole factor blocks */
    /* the plan's splits, normalized by the caller (each at least one tile) */
    const int tps = (int)split_tiles(w, flat ? 1 : plan.splits), splits = (int)sl_div_up(w->k_tiles, tps);
    const int kw = flat ? 1 : plan.warps_per_tile;
    const int tpb = QMM_WARPS / kw;
    qmm_segs s{};
    int rb = 0;
    long long rows_before = 0; /* row tiles of the segments before */
    for (int i = 0; i < 3; i++) {
        const int k = i < j.n ? i : 0;
        const sl_cuda_qmat *wi = j.w[k];
        s.codes[i] = static_cast<const uint4 *>(wi->codes);
        s.scales[i] = wi->scales, s.offsets[i] = wi->offsets, s.factors[i] = wi->factors;
        s.y[i] = j.y[k];
        s.N[i] = (int)wi->rows, s.row_tiles[i] = (int)wi->row_tiles;
        s.rb0[i] = i < j.n ? rb : INT_MAX; /* past n: never this block's */
        /* no workspace without splits (the pointer may be null) */
        s.poff[i] = i < j.n && splits > 1 ? (long long)splits * T * 16 * rows_before : 0;
        s.rt0[i] = i < j.n ? (int)rows_before : INT_MAX;
        if (i < j.n) rb += (int)sl_div_up(wi->row_tiles, tpb), rows_before += wi->row_tiles;
    }
    s.n = j.n, s.rt_all = (int)rows_before;
    int per = 0, pieces = 0;
    if (flat) { /* the warps that the tiles need, in blocks of 8 */
        per = flat_per(w, rows_before, plan.flat), pieces = flat_pieces(w, per);
        rb = (int)sl_div_up(sl_div_up(rows_before * w->k_tiles, per), QMM_WARPS);
    }
    const dim3 grid((unsigned)rb, (unsigned)splits);
    if (flat)
        SL_LAUNCH((qmm_kernel<Q4, NT, OFFS, SC, ES, true>), grid, QMM_THREADS, 0, stream, s, x, part,
                  counters, T, (int)w->cols, (int)w->k_tiles, n_rec, rec_shift, tps, kw, per, pieces,
                  plan.prefetch);
    else
        SL_LAUNCH((qmm_kernel<Q4, NT, OFFS, SC, ES, false>), grid, QMM_THREADS, 0, stream, s, x, part,
                  counters, T, (int)w->cols, (int)w->k_tiles, n_rec, rec_shift, tps, kw, per, pieces,
                  plan.prefetch);
    SL_CUDA_CHECK(cudaGetLastError());
}

template <bool Q4, int NT, bool OFFS, int ES>
void launch_sc(const qmm_job &j, const __half *x, int T, sl_qmm_plan plan, float *part,
               unsigned *counters, cudaStream_t stream) {
    switch (qmm_sc(Q4, (int)j.w[0]->group)) {
    case 0: launch<Q4, NT, OFFS, 0, ES>(j, x, T, plan, part, counters, stream); break;
    case 1: launch<Q4, NT, OFFS, 1, ES>(j, x, T, plan, part, counters, stream); break;
    default: /* QW4 only: 4 steps per tile */
        launch<Q4, NT, OFFS, Q4 ? 2 : 1, ES>(j, x, T, plan, part, counters, stream);
    }
}

template <bool Q4, int NT, bool OFFS>
void launch_sh(const qmm_job &j, const __half *x, int T, sl_qmm_plan plan, float *part,
               unsigned *counters, cudaStream_t stream) {
    switch (j.w[0]->scale_bytes) {
    case 1: /* QW4: with offsets only (sl_cuda_qmat_pack_host) */
        if constexpr (!Q4 || OFFS) launch_sc<Q4, NT, OFFS, 1>(j, x, T, plan, part, counters, stream);
        else SL_CUDA_REQUIRE(!"QW4 two-level scales without offsets");
        break;
    case 2: launch_sc<Q4, NT, OFFS, 2>(j, x, T, plan, part, counters, stream); break;
    default: launch_sc<Q4, NT, OFFS, 4>(j, x, T, plan, part, counters, stream);
    }
}

/* a launch of T tokens (up to SL_QMM_MAX_T) on one job, NT = ceil(T / 8) column tiles of the
 * format Q4 (QW4, else QW8): one instantiation in each qmm_w*_nt*.cu, qmm.cu calls them */
template <bool Q4, int NT>
void launch_offs(const qmm_job &j, const __half *x, int T, sl_qmm_plan plan, float *part,
                 unsigned *counters, cudaStream_t stream) {
    if (j.w[0]->offsets) launch_sh<Q4, NT, true>(j, x, T, plan, part, counters, stream);
    else launch_sh<Q4, NT, false>(j, x, T, plan, part, counters, stream);
}

} // namespace sl_qmm

#endif
