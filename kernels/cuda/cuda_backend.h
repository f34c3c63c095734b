/* cuda_backend.h — the CUDA implementation of sl_backend (kernels/backend.h), backend.cu.
 *
 * Every op of backend.h over the kernels of this directory, on one CUDA stream of its own
 * (created blocking, so it stays ordered with the default-stream copies of cuda.h); buffers are
 * device memory from cudaMalloc. Ops are enqueued and return before the work is done, except:
 *   - upload returns once src may be reused (pageable host memory, which the driver stages;
 *     this backend hands out no pinned memory);
 *   - download returns with the bytes in dst (it waits for the stream);
 *   - free and weight_destroy (cudaFree) wait for the device.
 * Host-side arguments: the sl_attn_batch struct and the sl_rope_params struct are host memory
 * read during the call; every array they point at (q_start, q_len, ctx_len, block_tables,
 * rope freqs) and every other pointer an op takes is a backend buffer (device memory).
 *
 * Weights (weight_create; `alias` is ignored: weights are always copied to the device):
 *   QW8/QW4, group a power of 2 >= 16  → sl_cuda_qmat (matmul.h), matmul by sl_cuda_qmm
 *       (q/k/v and gate/up of one format in one launch: sl_cuda_qmm_multi, matmul_multi):
 *       activations rounded to f16 (each product within 2^-11 relative of the f32 one), up
 *       to 32 tokens a launch. Steps of 256 tokens or more (sl_cuda_backend_set_gemm) dequantize
 *       the weight to f16 a block of rows at a time and multiply through cuBLAS: weights
 *       rounded to f16 as well, each byte read once per step (a GEMM dequantizing in shared
 *       memory is still to come). The embedding gather reads the tiled layout directly (no
 *       second, logical copy of the table is kept).
 *   QW8/QW4, any other group           → dequantized on the device to F16 at load (one
 *       warning per backend), then as F16: weights rounded to f16 as well as activations.
 *   F16                                 → device copy, cuBLAS GemmEx f16 × f16 → f32
 *       (sl_cuda_matmul_f16): activations rounded to f16, f32 accumulation.
 *   BF16                                → device copy, cuBLAS GemmEx bf16 × bf16 → f32:
 *       activations rounded to bf16 (each product within 2^-8 relative), f32 accumulation;
 *       2 bytes per weight as on disk.
 *   F32                                 → device copy, cublasSgemm: f32 throughout (the tight
 *       reference path; F32 models are test twins, so 4 bytes per weight is acceptable).
 * The f16 activations of the QW and F16 paths: rmsnorm, add_rmsnorm (the residual add fused
 * in, one launch) and swiglu write their output rounded to f16 beside it, which the matmul
 * right after takes instead of converting x in a launch of its own (the same bits).
 * Embedding gathers (embed) are exact for every format (bit-identical to the CPU backend),
 * except the dequantized-to-F16 fallback (its rows are the f16-rounded weights).
 *
 * KV cache: fp16 (backend.h's kv_f16, set at creation; sl_cuda_kv_write_f16 rounds to nearest
 * even, sl_cuda_attention_f16 reads it: half the bytes of an f32 cache per step and per token
 * held). Its owner may clear kv_f16 before making a cache to keep f32 (the F32 test twins do).
 *
 * Attention (sl_cuda_attention(_f16)) takes two host-side bounds:
 * the rows of q (n_tok) and the longest context (max_ctx), which sl_attn_batch carries as
 * n_tokens and max_ctx (forward.c fills them: the step's tokens, its longest ctx_len). A caller
 * that leaves them 0 gets sound ones: the rows of q's allocation from q on (the backend
 * records the size of every buffer it hands out) and max_blocks · block_size — correct for
 * any batch but slower (a grid of the reserve's rows, the split-K heuristic seeing the longest
 * possible context).
 * The split-K workspace belongs to the backend (sized at creation for head_dim 256). Head sizes
 * are those of attention.h, 64, 128 or 256: another one aborts at the model's first forward
 * (the loader does not ask the backend what it supports).
 *
 * Sampling (the optional `sample` op): sample.cu's kernel on the logits where the forward pass
 * left them; the rows' parameters and adjustment lists go up in one copy, the tokens and
 * logprobs come back in one, so the logits never cross to the host (sl_forward_sample).
 *
 * Not thread-safe: one thread drives it (as every backend). Only one CUDA backend per process:
 * the matmul launchers keep process-wide staging buffers (matmul.h).
 */
#ifndef SL_CUDA_BACKEND_H
#define SL_CUDA_BACKEND_H

#include "../backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A backend on CUDA device `device`, or NULL (after a message on stderr) when there is no such
 * device (no driver, no GPU, an index out of range) or it cannot be set up. Free it with
 * be->destroy(be), after every buffer and weight made on it. */
sl_backend *sl_cuda_backend_create(int device);

/* Steps of at least min_tokens tokens (prefill chunks) multiply QW weights in f16 through
 * cuBLAS — the weight dequantized block_rows rows at a time (0: 32 MiB of f16 per block) —
 * instead of qmm's launches of 32 tokens, which read the whole weight once per 32 tokens.
 * Default 256 tokens (a prefill chunk of that size, or 256 decoding sequences); min_tokens 0 keeps
 * qmm for every step. A token's result then depends on whether its step reached min_tokens
 * (and on qmm, on the launch plan its step's size picks; see
 * sl_cuda_backend_set_batch_invariant). */
void sl_cuda_backend_set_gemm(sl_backend *be, int min_tokens, int block_rows);
/* The step size from which the GEMM path runs (0: never). */
int sl_cuda_backend_gemm_min_tokens(const sl_backend *be);

/* on: a token's logits never depend on the batch around it — QW matmuls stay on qmm at every
 * step size (no GEMM) with one launch plan for every size, and attention reads each context in
 * one pass (no split-K, whose split count follows the batch's size and longest context). Slower
 * prefill, long-context decode at small batch, and decode matmuls. off (the default): as
 * sl_cuda_backend_create makes it. */
void sl_cuda_backend_set_batch_invariant(sl_backend *be, int on);

/* Tests: on (the default), rmsnorm, add_rmsnorm and swiglu also write their output rounded to
 * f16 where the next matmul's conversion finds it (matmul.h's sl__cuda_f16_beside: one launch
 * fewer per matmul input, the same bits); off, every matmul converts its x itself. */
void sl__cuda_backend_set_f16_beside(sl_backend *be, int on);

#ifdef __cplusplus
}
#endif
#endif
