/* attention.h — paged causal attention on the GPU (kernels/cuda/attention.cu), decode first.
 *
 * Same meaning as the backend op `attention` (kernels/backend.h, kernels/cpu/cpu_attention.c):
 * a ragged batch of sequences; query token i of sequence s (batch token q_start[s] + i) sits at
 * position ctx_len[s] − q_len[s] + i and attends causally to positions [0, pos] of its
 * sequence's cache. Query head h reads KV head h / (H / Hkv).
 *
 *   q      device f32 [n_tok][H][head_dim]
 *   out    device f32 [n_tok][H][head_dim]; rows of tokens that belong to no sequence are left
 *          untouched; out must not overlap q
 *   k/v    device, per layer [n_blocks][block_size][Hkv][head_dim]: f32 (sl_cuda_kv_write) or
 *          IEEE binary16 bits (sl_cuda_kv_write_f16), 16-byte aligned
 *   b      host struct whose arrays (q_start, q_len, ctx_len: [n_seqs]; block_tables:
 *          [n_seqs][max_blocks]) are device int32 buffers; b itself is read during the call
 *   n_tok  rows of q/out; every q_start[s] + q_len[s] <= n_tok
 *   max_ctx  a host-side upper bound of every ctx_len[s] (the scheduler knows it): it sizes the
 *          split of the context. A ctx_len above it is still computed correctly, only slower.
 *   scale  the softmax scale (usually 1/sqrt(head_dim))
 *   head_dim 64, 128 or 256; any block_size >= 1 (powers of two avoid a division); any H that
 *          is a multiple of Hkv (groups of more than 8 query heads read their KV once per 8).
 *
 * Split-K workspace: the caller's device buffer `workspace` of `workspace_bytes` (may be NULL /
 * 0). With a small batch the launcher splits each sequence's context over several blocks
 * (a chunk each), which write a partial result there; a second kernel combines the chunks in a
 * fixed order, so results are deterministic (bit-identical run to run for the same split).
 * sl_cuda_attention_workspace_bytes(head_dim) is enough for every split the heuristic picks on
 * the current device; with less, the launcher splits less (none with 0 bytes). The workspace
 * is in use until the work is done on `stream`: do not share one buffer between streams.
 *
 * Calls are enqueued on `stream` (NULL: the default stream); invalid arguments abort.
 * Values that break the contract in device memory (a ctx_len < q_len, a negative block) trap.
 */
#ifndef SL_CUDA_ATTENTION_H
#define SL_CUDA_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The f32 cache. */
void sl_cuda_attention(const float *q, const float *k_cache, const float *v_cache, float *out,
                       const sl_attn_batch *b, int n_tok, int max_ctx, int H, int Hkv,
                       int head_dim, int block_size, float scale, void *workspace,
                       size_t workspace_bytes, sl_cuda_stream stream);
/* The fp16 cache (the GPU's KV format). */
void sl_cuda_attention_f16(const float *q, const uint16_t *k_cache, const uint16_t *v_cache,
                           float *out, const sl_attn_batch *b, int n_tok, int max_ctx, int H,
                           int Hkv, int head_dim, int block_size, float scale, void *workspace,
                           size_t workspace_bytes, sl_cuda_stream stream);

/* Workspace bytes that cover every split the launcher picks by itself on the current device,
 * whatever the batch (it splits only while the grid is smaller than about one wave). */
size_t sl_cuda_attention_workspace_bytes(int head_dim);

/* Tests and benchmarks only: n >= 1 forces n context chunks per token (capped by the
 * workspace and by max_ctx), 0 restores the heuristic. Not thread-safe. */
void sl__cuda_attention_force_splits(int n);

#ifdef __cplusplus
}
#endif
#endif
