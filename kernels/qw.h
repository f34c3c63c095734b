/* qw.h — the logical weight formats every backend consumes (DESIGN.md decision 2).
 *
 * A weight matrix has `rows` output features of `cols` inputs each (a GGUF tensor with
 * ne = [cols, rows]); row r is contiguous. Formats:
 *
 *   SL_WF_F32   data: float    [rows][cols]
 *   SL_WF_F16   data: uint16_t [rows][cols]  IEEE binary16
 *   SL_WF_BF16  data: uint16_t [rows][cols]
 *   SL_WF_QW8   codes: int8_t  [rows][cols]           w = s·c (+ o)
 *   SL_WF_QW4   codes: uint8_t [rows][cols/2]         element 2j in the low nibble of byte j,
 *                                                    element 2j+1 in the high nibble; c in 0..15;
 *                                                    w = s·(c − 8) without offsets, s·c + o with.
 *
 * QW8/QW4 have one scale (and, when `offsets` is non-NULL, one offset) per group of `group`
 * consecutive elements of a row: scales/offsets are float [rows][cols/group], exact f32 (the
 * products of K-quant two-level scales are exact in f32, not in fp16). group ∈ {16, 32, 128}
 * (other divisors of cols are allowed for tests) and cols % group == 0.
 *
 * The logical format is what models/ produces from GGUF; each backend repacks it into its
 * physical layout (the CPU backend uses it as is, but for its int8 activations' 8-row panels).
 */
#ifndef SL_QW_H
#define SL_QW_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_wfmt { SL_WF_F32 = 0, SL_WF_F16, SL_WF_BF16, SL_WF_QW8, SL_WF_QW4 } sl_wfmt;

typedef struct sl_qw {
    sl_wfmt fmt;
    int64_t rows, cols;
    int32_t group;   /* QW8/QW4 only */
    void *data;      /* F32/F16/BF16: host, [rows][cols] */
    void *codes;     /* QW8: int8 [rows][cols]; QW4: uint8 [rows][cols/2]; host */
    float *scales;   /* host, [rows][cols/group] */
    float *offsets;  /* host, [rows][cols/group], or NULL (symmetric) */
    int owns;        /* 1: sl_qw_free frees data/codes/scales/offsets; 0: they are borrowed */
} sl_qw;

/* Bytes of one logical row's codes or data. */
int64_t sl_qw_row_bytes(const sl_qw *w);
/* Dequantize row r into dst[cols] (the reference every backend is checked against). */
void sl_qw_dequant_row(const sl_qw *w, int64_t r, float *dst);
/* Allocates storage for a rows×cols tensor of fmt (owns = 1); offsets only if with_offsets. */
void sl_qw_alloc(sl_qw *w, sl_wfmt fmt, int64_t rows, int64_t cols, int group, int with_offsets);
/* Frees what the tensor owns and zeroes it. */
void sl_qw_free(sl_qw *w);
const char *sl_wfmt_name(sl_wfmt f);

#ifdef __cplusplus
}
#endif
#endif
