/* qmat_layout.cuh — where each element of the tiled QW layout (matmul.h) lives, in one place for
 * the repack and its inverse (qmat.cu), the decode kernel (qmm_kernel.cuh) and the readers of the
 * layout (backend.cu: embedding rows, the prefill GEMM's dequantization). Host and device.
 *
 * A tile is 16 rows × KT columns (KT = 64 for QW4, 32 for QW8), KT / 16 steps of one
 * mma.m16n8k16 each. A unit is the steps of one scale within a tile: min(group, KT) columns,
 * SPA = min(group, KT) / 16 steps. Within a unit, the k index kk (0..15) of step ss maps to the
 * column
 *
 *     t·4·SPA + 4·ss + 2·(kk ≥ 8) + kk % 2,   t = (kk % 8) / 2 (the lane's t)
 *
 * so that lane t's B fragments over the unit's steps are x's columns t·4·SPA .. t·4·SPA + 4·SPA
 * - 1 in order: one contiguous load of 8·SPA bytes per token (step ss: b[0] the halves 4ss,
 * 4ss + 1 of it, b[1] 4ss + 2, 4ss + 3). Any order of the columns within a unit gives the same
 * product; this one needs no shuffling of x.
 */
#ifndef SL_CUDA_QMAT_LAYOUT_CUH
#define SL_CUDA_QMAT_LAYOUT_CUH

#include <stdint.h>

#include "common.cuh"
#include "matmul.h"

#include <cuda_fp16.h>

static __host__ __device__ __forceinline__ constexpr int sl_qmat_kt(bool q4) { return q4 ? 64 : 32; }

/* 16-column steps per unit */
static __host__ __device__ __forceinline__ int sl_qmat_spa(bool q4, int group) {
    const int steps = sl_qmat_kt(q4) / 16, spg = group / 16;
    return spg < steps ? spg : steps;
}

/* the column within its tile of step s's k index kk */
static __host__ __device__ __forceinline__ int sl_qmat_col(int spa, int s, int kk) {
    const int u = s / spa, ss = s % spa, t = (kk % 8) / 2;
    return u * 16 * spa + t * 4 * spa + 4 * ss + 2 * (kk / 8) + kk % 2;
}

/* the inverse: column cc of a tile is k index *kk of step *s */
static __host__ __device__ __forceinline__ void sl_qmat_step(int spa, int cc, int *s, int *kk) {
    const int u = cc / (16 * spa), cu = cc % (16 * spa), t = cu / (4 * spa), r = cu % (4 * spa);
    *s = u * spa + r / 4;
    *kk = 2 * t + (r % 4) % 2 + 8 * ((r % 4) / 2);
}

/* Row rr (0..15) at k index kk of step s: held by lane 4g + t as element j of its 16 bytes (QW4:
 * nibble j, QW8: byte j). Fragment order v = 4·(kk ≥ 8) + 2·(rr ≥ 8) + kk % 2 (ptx.cuh's A
 * registers 0..3, low half first); QW4 keeps v_{2i} in nibble i and v_{2i+1} in nibble i + 4 of
 * the step's word, so that register i is (word >> 4i) & 0x000F000F. */
static __host__ __device__ __forceinline__ void sl_qmat_frag(bool q4, int rr, int s, int kk,
                                                             int *lane, int *j) {
    const int v = 4 * (kk / 8) + 2 * (rr / 8) + kk % 2;
    *lane = 4 * (rr % 8) + (kk % 8) / 2;
    *j = q4 ? s * 8 + v / 2 + (v % 2) * 4 : s * 8 + v;
}

/* Index of the scale (and offset) of row rr of row tile rt at column c. Scales are records of
 * [8][2·UPT] values (f16 or f32: matmul.h), UPT = KT / min(group, KT) units per tile: for each
 * g = rr % 8, per unit u, the scales of rows g and g + 8: one lane's scales of a tile are
 * 2·UPT contiguous values. One record per tile when group <= KT, else one per group (g_pad of
 * them per row tile). */
static __host__ __device__ __forceinline__ int64_t sl_qmat_scale_at(bool q4, int group,
                                                                    int64_t k_tiles,
                                                                    int64_t g_pad, int64_t rt,
                                                                    int64_t c, int rr) {
    const int kt = sl_qmat_kt(q4), span = group > kt ? group : kt, upt = span / group;
    const int64_t n_rec = group > kt ? g_pad : k_tiles;
    const int u = (int)(c % span) / group;
    return ((rt * n_rec + c / span) * 8 + rr % 8) * (2 * upt) + 2 * u + rr / 8;
}

/* scale (or offset) at of an array of f16 (bytes 2) or f32 (bytes 4) */
static __host__ __device__ __forceinline__ float sl_qmat_scale(const void *p, int bytes, int64_t at) {
    if (bytes == 2) return __half2float(static_cast<const __half *>(p)[at]);
    return static_cast<const float *>(p)[at];
}

/* Two-level scales (scale_bytes 1, matmul.h): the records hold int8 multipliers q, and a row's
 * value is q times the row's factor of its SL_QMAT_SB columns (f16, exact in f32 as the
 * product). Factors are records too: [row tile][K_pad / SL_QMAT_SB][8][F], for g = rr % 8 the
 * scales' factors of rows g and g + 8, then (F = 4, with offsets) the offsets' ones. */
#define SL_QMAT_SB 256

static __host__ __device__ __forceinline__ int64_t sl_qmat_factor_at(int64_t n_sb, bool offs,
                                                                     int64_t rt, int64_t c,
                                                                     int rr, bool offset) {
    return ((rt * n_sb + c / SL_QMAT_SB) * 8 + rr % 8) * (offs ? 4 : 2) + 2 * offset + rr / 8;
}

/* The scale (offset: the offset) of row rr of row tile rt at column c, exactly the logical f32
 * value, whatever the width. */
static __host__ __device__ __forceinline__ float sl_qmat_value(const sl_cuda_qmat &q, bool offset,
                                                               int64_t rt, int64_t c, int rr) {
    const bool q4 = q.fmt == SL_WF_QW4;
    const int64_t at = sl_qmat_scale_at(q4, q.group, q.k_tiles, q.g_pad, rt, c, rr);
    const void *p = offset ? q.offsets : q.scales;
    if (q.scale_bytes != 1) return sl_qmat_scale(p, q.scale_bytes, at);
    const int64_t n_sb = q.k_tiles * sl_qmat_kt(q4) / SL_QMAT_SB;
    const __half f = static_cast<const __half *>(q.factors)[sl_qmat_factor_at(n_sb, q.offsets != nullptr, rt, c, rr, offset)];
    return __half2float(f) * (float)static_cast<const int8_t *>(p)[at];
}

#endif
