/* quant.h — ggml block formats: reference dequantizers, the repack into the logical kernel
 * formats of kernels/qw.h, quantization at load, and random valid blocks for test models.
 *
 * Block layouts are in ../shared/FORMATS.md §2; the mapping to QW8/QW4 in §3:
 *   Q8_0 → QW8/32   Q4_0 → QW4/32 (sym)   Q4_1 → QW4/32 + offsets   Q5_0 → QW8/32 (q−16)
 *   Q5_1 → QW8/32 + offsets   Q4_K → QW4/32 + offsets   Q5_K → QW8/32 + offsets
 *   Q6_K → QW8/16 (q−32)      F32/F16/BF16 → kept as is (or quantized by --quantization)
 * Scales and offsets are exact f32 (K-quant products d·sc_j, dmin·m_j are exact in f32), so
 * the repacked weights dequantize to exactly the values of sl_dequant_row.
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
 * `type` at src into dst. Matches ggml's f32 arithmetic. */
void sl_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Repacks a GGUF tensor of `rows` rows × `cols` columns (row-major, ggml type `type`) into
 * the logical format (fills *out with owned storage, free with sl_qw_free). F32/F16/BF16 are
 * either copied as is (quant_to == -1), or quantized round-to-nearest to quant_to =
 * SL_WF_QW8 or SL_WF_QW4 with group size `group` (symmetric, absmax/127 or absmax/7 style:
 * see the .c). Returns SL_EUNSUPPORTED for an unknown type. If alias is nonzero and the type
 * is F32/F16/BF16 kept as is, the data is not copied: out->data points at src (owns = 0). */
int sl_repack(uint32_t type, const void *src, int64_t rows, int64_t cols, int quant_to,
              int group, int alias, sl_qw *out);

/* Fills nblocks valid random blocks of `type` (codes uniform, scales chosen so that weights
 * are roughly in ±amp; for K-quants d/dmin and 6-bit sub-scales random). F32/F16/BF16:
 * normal(0, amp/2) values, nblocks = element count. Deterministic for a given rng state. */
void sl_quant_random(uint32_t type, sl_rng *rng, void *dst, int64_t nblocks, float amp);

/* Quantizes n floats to ggml `type` (only the types mkmodel writes from floats: F32, F16,
 * BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1). Returns SL_EUNSUPPORTED otherwise. */
int sl_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
