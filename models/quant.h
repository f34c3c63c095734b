/* quant.h — ggml block formats: reference dequantizers, the repack into the logical kernel
 * formats of kernels/qw.h, quantization at load, and random valid blocks for test models.
 *
 * Block layouts are in ../shared/FORMATS.md §2; the mapping to QW8/QW4 in §3:
 *   Q8_0 → QW8/32   Q4_0 → QW4/32 (sym)   Q4_1 → QW4/32 + offsets   Q5_0 → QW8/32 (q−16)
 *   Q5_1 → QW8/32 + offsets   Q4_K → QW4/32 + offsets   Q5_K → QW8/32 + offsets
 *   Q6_K → QW8/16 (q−32)      F32/F16/BF16 → kept as is (or quantized by --quantization)
 * Codes (QW4 follows qw.h: without offsets w = s·(c − 8), so Q4_0 keeps c = q):
 *   Q8_0 c = qs, s = d            Q4_0 c = q, s = d             Q4_1 c = q, s = d, o = m
 *   Q5_0 c = q − 16, s = d        Q5_1 c = q, s = d, o = m
 *   Q4_K, Q5_K c = q, s = d·sc_j, o = −(dmin·m_j)               Q6_K c = q − 32, s = d·scales_j
 * Scales and offsets are exact f32 (K-quant products d·sc_j, dmin·m_j are exact in f32), so
 * the repacked weights dequantize (sl_qw_dequant_row) to bit-exactly the values of
 * sl_dequant_row for every type and every block, negative and fp16-subnormal scales included
 * (every product involved is exact in f32 and the one rounding, at "+ m" or "− dmin·m_j",
 * happens in both; only NaN sign bits may differ when a block holds an fp16 NaN/inf).
 *
 * All functions are pure and thread-safe.
 */
#ifndef SL_QUANT_H
#define SL_QUANT_H

#include <stdint.h>

#include "../base/base.h"
#include "../kernels/qw.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reference dequantizer: n elements (a multiple of the type's block size) of ggml type
 * `type` at src into dst. Matches ggml's f32 arithmetic bit for bit (fp16 subnormals kept,
 * signed scales). An unsupported type or a ragged n is a bug: aborts through SL_CHECK. */
void sl_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Repacks a GGUF tensor of `rows` rows × `cols` columns (row-major, ggml type `type`) into
 * the logical format (fills *out with owned storage, free with sl_qw_free). F32/F16/BF16 are
 * either copied as is (quant_to == -1, or SL_WF_F32/F16/BF16: the type is kept either way),
 * or quantized round-to-nearest per group of `group` elements (cols % group == 0; even for
 * QW4) when quant_to is
 *   SL_WF_QW8: symmetric, s = absmax/127, c = round(x·(1/s)) in −127..127 (no offsets);
 *              |error| ≤ s/2 (up to f32 rounding of 1/s at exact ties).
 *   SL_WF_QW4: asymmetric (with offsets), s = (max − min)/15, o = min,
 *              c = round((x − o)/s) clamped to 0..15, w = s·c + o; |error| ≤ s/2. All 16
 *              levels span the group's range, the better RTN choice over symmetric absmax/7.
 *   Scales and offsets are f16 values (the GPU then reads half the scale bytes, as ggml's
 *   Q8_0/Q4_1 store them): o the f16 at or below min, s the f16 at or above absmax/127 or
 *   (max − o)/15 (within 2^-10 of it, or 2^-24 when subnormal), the error still ≤ s/2; the f32
 *   ones above only for a tensor with a value past the f16 range (or NaN).
 * GGUF-quantized types ignore quant_to and group: they always repack to their natural
 * format above (a K-quant is never re-quantized). Returns SL_EUNSUPPORTED for an unknown
 * type, SL_EINVAL for cols not a multiple of the block size, a bad quant_to or group.
 * If alias is nonzero and the type is F32/F16/BF16 kept as is, the data is not copied:
 * out->data points at src (owns = 0; src must outlive *out). On error *out is zeroed. */
int sl_repack(uint32_t type, const void *src, int64_t rows, int64_t cols, int quant_to,
              int group, int alias, sl_qw *out);

/* Fills nblocks valid random blocks of `type` (codes uniform, scales chosen so that weights
 * are roughly in ±amp; for K-quants d/dmin and 6-bit sub-scales random). F32/F16/BF16:
 * normal(0, amp/2) values, nblocks = element count. Deterministic for a given rng state.
 * fp16 scales are amp-derived × U[0.5, 1.5); d is negative in ~1/8 of the blocks for Q4_0,
 * Q5_0, Q8_0 and Q6_K (as ggml's signed-extreme quantizers produce). Codes cover their whole
 * range (Q8_0 qs and Q6_K scales include −128). A small amp gives fp16-subnormal d. */
void sl_quant_random(uint32_t type, sl_rng *rng, void *dst, int64_t nblocks, float amp);

/* Quantizes n floats to ggml `type` (only the types mkmodel writes from floats: F32, F16,
 * BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), byte for byte as ggml's quantize_row_*_ref:
 * Q8_0 d = absmax/127, q = roundf(x/d); Q4_0/Q5_0 d = (signed extreme)/−8 (/−16), so d may be
 * negative; Q4_1/Q5_1 d = (max − min)/15 (/31), m = min. F16/BF16 round to nearest even.
 * Returns SL_EUNSUPPORTED for other types, SL_EINVAL if n is not a multiple of the block. */
int sl_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
