/* matmul.h — the CUDA matmuls: weight-only int8/int4 for decode (qmm.cu, qmm_kernel.cuh, on
 * weights repacked by qmat.cu) and F16 through cuBLAS (gemm_f16.cu). Pointers are device memory
 * unless stated; calls are enqueued on `stream` and return before the work is done (see ops.h
 * for the conventions).
 *
 * ## QW8/QW4 physical layout (sl_cuda_qmat), the repack of kernels/qw.h's logical format
 *
 * The kernel feeds the weights to mma.m16n8k16 as its A operand (16 output rows × 16 columns per
 * instruction; ptx.cuh gives the fragment layout) and the tokens as B (8 tokens per
 * instruction). Rows are padded to a multiple of 16 (row tiles), columns to a multiple of KT
 * (64 for QW4, 32 for QW8: the columns one 512-byte tile holds). Padding has code 0 and scale 0.
 *
 *   codes:   [N_pad/16][K_pad/KT] tiles of 512 bytes; in each tile lane l (= 4g + t) owns the 16
 *            bytes at 16·l, one 16-byte load: for each k16 step s of the tile, the 8 elements of
 *            its A fragment, in fragment order v0..v7 = A[g][2t], A[g][2t+1], A[g+8][2t],
 *            A[g+8][2t+1], A[g][2t+8], A[g][2t+9], A[g+8][2t+8], A[g+8][2t+9] (row and k index
 *            within the 16×16 block of step s; which column a k index is: qmat_layout.cuh,
 *            chosen so that a lane's x of one scale's columns is one contiguous load).
 *              QW4: step s is the 32-bit word s; v_{2i} in nibble i, v_{2i+1} in nibble i + 4,
 *                   so fragment register i is (word >> 4i) & 0x000F000F: two codes, one per
 *                   16-bit half, turned into f16 by OR-ing in 0x6400 (1024 + code).
 *              QW8: step s is bytes 8s..8s+7, v_j in byte 8s + j, each code stored + 128
 *                   (0..255), so that a byte under 0x64 in a 16-bit half gives 1024 + 128 + code.
 *   scales:  row_tiles · G_pad · 16 of them (G_pad = ceil(K_pad / group)) in records that
 *            give each lane its scales of a tile in one load (qmat_layout.cuh), in the first
 *            of these widths that keeps every scale and offset of the weight exactly:
 *              f16 (scale_bytes 2): each value an f16 (GGUF's Q4_0, Q8_0, Q4_1, Q5_0, Q5_1).
 *              two-level (scale_bytes 1): int8 multipliers times a per-row f16 factor of each
 *                   256 columns (SL_QMAT_SB), in `factors` (qmat_layout.cuh), when group <= KT
 *                   and cols % 256 == 0: the K-quants, whose scales are an f16 super-block
 *                   scale times a 6- or 8-bit one (Q4_K, Q5_K, Q6_K). QW4 only with offsets
 *                   and multipliers 0..127 (qmm_kernel.cuh scales its codes by them in f16).
 *              f32 (scale_bytes 4): anything else (the load-time int8/int4 quantization).
 *            Bytes per weight at 4 bits, group 32, with offsets: f32 0.75, f16 0.625, two-level
 *            0.578 (GGUF's Q4_K: 0.5625); QW8 group 16 (Q6_K): f32 1.25, two-level 1.07.
 *   offsets: the same layout and width, or NULL (symmetric).
 *   factors: two-level only: row_tiles · (K_pad / 256) · 16 · (2 with offsets, else 1) f16.
 *
 * Codes stay exact in f16; scales and offsets are applied in f32 after the products of each
 * group's columns within a tile: y = Σ s·(Σ c·x) + o·(Σ x). With two-level scales QW8 does the
 * same with s = factor·q (exact); QW4 multiplies its codes by q in f16 (c·q < 2048, exact) and
 * applies the factors in f32 per 256 columns: y = Σ f·(Σ q·c·x) + f_o·(Σ q_o·x). Activations
 * are rounded to f16 (the tensor cores' input): each product is within 2^-11 relative of the
 * f32 one, the only rounding the f16 path adds.
 */
#ifndef SL_CUDA_MATMUL_H
#define SL_CUDA_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "../qw.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_QMM_MAX_T 32 /* tokens per kernel launch; more run in launches of 32 */

typedef struct sl_cuda_qmat {
    sl_wfmt fmt;          /* SL_WF_QW8 or SL_WF_QW4 */
    int64_t rows, cols;   /* logical N, K */
    int32_t group;        /* a power of 2, at least 16, dividing cols */
    int64_t row_tiles;    /* N_pad / 16 */
    int64_t k_tiles;      /* K_pad / KT */
    int64_t g_pad;        /* groups per row tile, padding included */
    void *codes;          /* row_tiles · k_tiles · 512 bytes */
    void *scales;         /* row_tiles · g_pad · 16 of scale_bytes each */
    void *offsets;        /* the same, or NULL */
    int32_t scale_bytes;  /* 2: f16, 1: two-level (int8 × f16 factors), 4: f32 (above) */
    void *factors;        /* two-level scales' factors, else NULL */
} sl_cuda_qmat;

/* Columns per 512-byte tile: 64 for QW4, 32 for QW8. */
int sl_cuda_qmat_ktile(sl_wfmt fmt);

/* Bytes of q's two-level factors (0 unless scale_bytes is 1). */
size_t sl_cuda_qmat_factor_bytes(const sl_cuda_qmat *q);

/* The repack on the host: fills *q's sizes and host buffers (codes, scales, offsets:
 * malloc'ed, freed with sl_cuda_qmat_host_free) from the logical w (QW8 or QW4, group a
 * power of 2 of at least 16). Returns 0, or -1 if w cannot be packed (format, group). */
int sl_cuda_qmat_pack_host(sl_cuda_qmat *q, const sl_qw *w);
/* The inverse, for the round-trip test: writes the logical codes/scales/offsets of q (host
 * buffers) into w, which the caller allocated with sl_qw_alloc for q's format and sizes. */
void sl_cuda_qmat_unpack_host(const sl_cuda_qmat *q, sl_qw *w);
void sl_cuda_qmat_host_free(sl_cuda_qmat *q);

/* Repacks w and uploads it: *q then holds device buffers. Returns 0, -1 when w cannot be
 * packed, -2 when device memory runs out (nothing stays allocated). */
int sl_cuda_qmat_init(sl_cuda_qmat *q, const sl_qw *w);
void sl_cuda_qmat_deinit(sl_cuda_qmat *q);

/* How a launch divides the work: warps_per_tile (1, 2, 4 or 8) warps of a block share each row
 * tile of 16 outputs, dividing its columns and adding their sums in shared memory; splits (>= 1)
 * divides the columns further over blocks, whose partial sums go through a workspace the
 * launcher owns (grown on first need, synchronously) and are added in a fixed order.
 * Or flat (> 0, with warps_per_tile and splits 0): a grid of flat blocks per SM whose warps
 * each stream an equal run of all row tiles' tiles in row-major order, across row tiles; a row
 * tile split between warps adds their sums through the workspace, in a fixed order.
 * {0, 0} (flat 0) means the default plan: chosen by the call's token count (up to 32; the fastest
 * measured), or, with any_batch set, one plan for every token count, so that a token's result
 * is the same in any batch. Flat plans do not depend on the token count.
 * prefetch (0 to SL_QMM_MAX_PREFETCH, with any plan, the default's included): as a warp starts
 * its run of column tiles, it asks L2 for up to this many of them past those its register ring
 * loads first (0: no prefetch). It changes no result, only how many bytes are on their way from
 * memory. */
typedef struct sl_qmm_plan {
    int warps_per_tile;
    int splits;
    int any_batch; /* with {0, 0}: the default that does not depend on T */
    int flat;      /* blocks per SM of a flat plan, or 0 */
    int prefetch;  /* column tiles a warp's run prefetches into L2 at its start, or 0 */
} sl_qmm_plan;
#define SL_QMM_MAX_PREFETCH 64

/* The default plan for T tokens (T = 0: the plan for any T, any_batch's), from the weight's
 * shape and the SM count. Results never depend on timing. */
sl_qmm_plan sl_cuda_qmm_default_plan(const sl_cuda_qmat *w, int T);

/* y[T][rows] (f32) = x16[T][cols] (f16 bits, 16-byte aligned) · Wᵀ, T >= 1, in launches of up
 * to SL_QMM_MAX_T tokens. One stream at a time may use it (the engine thread's): the workspace
 * is shared. Splits past the column tiles are cut. */
void sl_cuda_qmm_f16(const sl_cuda_qmat *w, const uint16_t *x16, float *y, int T,
                     sl_qmm_plan plan, sl_cuda_stream stream);
/* The same from f32 x (rounded to f16 into the launcher's buffer first). */
void sl_cuda_qmm(const sl_cuda_qmat *w, const float *x, float *y, int T, sl_qmm_plan plan,
                 sl_cuda_stream stream);

/* Several weights on one x in one launch per SL_QMM_MAX_T tokens: ys[i][T][rows_i] = x16 ·
 * W_iᵀ for n (1 to 3) weights of one format, group, cols, scale width and offsets presence
 * (sl_cuda_qmm_groupable): q/k/v or gate/up, whose small weights alone leave most of the GPU
 * idle for a launch. The plan ({0, 0}: the default for all their row tiles together) applies
 * to each. */
int sl_cuda_qmm_groupable(const sl_cuda_qmat *const *ws, int n);
void sl_cuda_qmm_multi_f16(const sl_cuda_qmat *const *ws, int n, const uint16_t *x16,
                           float *const *ys, int T, sl_qmm_plan plan, sl_cuda_stream stream);
void sl_cuda_qmm_multi(const sl_cuda_qmat *const *ws, int n, const float *x, float *const *ys,
                       int T, sl_qmm_plan plan, sl_cuda_stream stream);

/* F16 weights through cuBLAS: y[T][N] (f32) = x[T][K] (f32, rounded to f16 inside) · Wᵀ with
 * w f16 [N][K] (IEEE binary16 bits), f32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F). The
 * cuBLAS handle and the f16 copy of x belong to the launcher (one stream at a time). */
void sl_cuda_matmul_f16(const uint16_t *w, const float *x, float *y, int T, int64_t N, int64_t K,
                        sl_cuda_stream stream);
/* x rounded to f16 into the launcher's staging buffer (gemm_f16.cu; valid until the next call
 * or the next sl__cuda_f16_beside): what sl_cuda_qmm, sl_cuda_qmm_multi and
 * sl_cuda_matmul_f16 feed their kernels. When x's producer wrote the copy already
 * (sl__cuda_f16_beside), that copy, with no launch: a caller that runs the CUDA backend's ops
 * and also calls these entry points itself on an array it changed outside the backend calls
 * sl__cuda_f16_forget first. */
const uint16_t *sl__cuda_to_f16(const float *x, size_t n, sl_cuda_stream stream);
/* For a kernel about to write the f32 array x[n] (device): the staging buffer, where it also
 * writes x rounded to nearest f16; sl__cuda_to_f16(x, n) then returns that copy instead of
 * converting x, until sl__cuda_f16_forget or another conversion. The caller guarantees that x
 * does not change in between (the CUDA backend forgets at every op but the matmuls, which
 * forget after they ran: the copy serves only the op right after its producer). */
uint16_t *sl__cuda_f16_beside(const float *x, size_t n);
void sl__cuda_f16_forget(void);
/* Tests: how many conversions a copy beside has served so far (process-wide) */
unsigned long long sl__cuda_f16_beside_hits(void);
/* The bare cuBLAS call on f16 x (the benchmark's baseline): y f32 [T][N]. */
void sl_cuda_gemm_f16(const uint16_t *w, const uint16_t *x16, float *y, int T, int64_t N,
                      int64_t K, sl_cuda_stream stream);

#ifdef __cplusplus
}
#endif
#endif
