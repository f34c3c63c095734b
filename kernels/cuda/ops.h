/* ops.h — the C seam of the CUDA kernels: one extern "C" entry point per op, each defined in its
 * own .cu (kernels/cuda/<op>.cu: a static kernel, a static launcher, the entry point).
 *
 * Every pointer is device memory (cuda.h's sl_cuda_malloc) unless stated; activations are f32,
 * "[T][N]" is T rows of N contiguous floats, as in kernels/backend.h. The ops mean exactly what
 * the CPU backend's ops of the same name mean (kernels/cpu/cpu_backend.c, the reference they are
 * tested against); results differ from it only by f32 rounding (tests/kernels/test_cuda_ops.c
 * holds the tolerances). Calls are enqueued on `stream` (NULL: the default stream) and return
 * before the work is done; invalid arguments abort (programming errors), as do launch failures.
 */
#ifndef SL_CUDA_OPS_H
#define SL_CUDA_OPS_H

#include <stdint.h>

#include "../backend.h"
#include "cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *sl_cuda_stream; /* a cudaStream_t */

/* y[T][D] = x[T][D] / sqrt(mean(x²) + eps) · g[D]   (y may equal x) */
void sl_cuda_rmsnorm(const float *x, const float *g, float *y, int T, int D, float eps,
                     sl_cuda_stream stream);
/* The residual add fused in: x[T][D] += r[T][D] (x is updated), then y = rmsnorm(x) · g as
 * above, bit for bit the CUDA backend's add followed by sl_cuda_rmsnorm when x, r, g and y
 * are all 16-byte aligned or D % 4 != 0 (the sum of squares then runs in the same order; the
 * backend's buffers are). y may equal x (the sum is then not kept) or r; r must not overlap
 * x, and y no other part of them. */
void sl_cuda_add_rmsnorm(float *x, const float *r, const float *g, float *y, int T, int D,
                         float eps, sl_cuda_stream stream);
/* sl_cuda_rmsnorm (r NULL) or sl_cuda_add_rmsnorm (r given) that also writes y rounded to
 * nearest f16 into y16 (device, IEEE binary16 bits [T][D]) — for the matmul that takes y next
 * (sl__cuda_f16_beside) */
void sl__cuda_rmsnorm_f16(float *x, const float *r, const float *g, float *y, uint16_t *y16,
                          int T, int D, float eps, sl_cuda_stream stream);
/* In place on x[T][H][head_dim]; token t at position pos[t] (device int32 [T]). rp->freqs, when
 * not NULL, is device memory [n_rot/2]. rp itself is host memory, read during the call. */
void sl_cuda_rope(float *x, const int32_t *pos, int T, int H, int head_dim,
                  const sl_rope_params *rp, sl_cuda_stream stream);
/* y[n] = silu(g[n]) · u[n]   (y may equal g) */
void sl_cuda_swiglu(const float *g, const float *u, float *y, int64_t n, sl_cuda_stream stream);
/* sl_cuda_swiglu that also writes y rounded to nearest f16 into y16 (device [n]) */
void sl__cuda_swiglu_f16(const float *g, const float *u, float *y, uint16_t *y16, int64_t n,
                         sl_cuda_stream stream);
/* y[T][cols] = row tok[t] of the table, dequantized (exactly as sl_qw_dequant_row). table is
 * host memory (its pointers device memory, from sl_cuda_weight_init), read during the call;
 * tok is device int32 [T], each in [0, table->rows): a token outside traps in the kernel. */
void sl_cuda_embed(const sl_cuda_weight *table, const int32_t *tok, float *y, int T,
                   sl_cuda_stream stream);
/* k/v [T][kv_dim] into the layer's cache [n_slots][kv_dim] (n_blocks·block_size slots, see
 * backend.h) at row slot_mapping[t] (device int32 [T], each >= 0 and distinct: a negative slot
 * traps in the kernel). The f32 cache takes exact copies; the fp16 one (IEEE binary16 bits)
 * takes them rounded to nearest even. */
void sl_cuda_kv_write(float *k_cache, float *v_cache, const float *k, const float *v,
                      const int32_t *slot_mapping, int T, int kv_dim, sl_cuda_stream stream);
void sl_cuda_kv_write_f16(uint16_t *k_cache, uint16_t *v_cache, const float *k, const float *v,
                          const int32_t *slot_mapping, int T, int kv_dim, sl_cuda_stream stream);

#ifdef __cplusplus
}
#endif
#endif
