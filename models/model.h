/* model.h — a GGUF model loaded onto a backend, and its forward pass over a ragged batch.
 *
 * Architectures (../shared/FORMATS.md §4): llama (GQA, tied or untied output, Llama 3.1
 * rope_freqs, NORM rope), qwen2 (QKV bias, NEOX rope), qwen3 (per-head q/k RMSNorm, NEOX).
 * Hyperparameters come from the file's metadata; a missing or inconsistent one is a clear
 * error. Every tensor the architecture needs must be present with exactly the expected shape,
 * and no unknown tensor may be present.
 *
 * Weights are repacked at load into the logical formats of kernels/qw.h (models/quant.h) and
 * handed to the backend, which keeps its own physical copy (or aliases the mapped file).
 *
 * Thread-safety: a model is driven by one thread (the engine thread).
 */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"
#include "../kernels/backend.h"
#include "gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_arch { SL_ARCH_LLAMA = 0, SL_ARCH_QWEN2, SL_ARCH_QWEN3 } sl_arch;

typedef struct sl_hparams {
    sl_arch arch;
    int n_vocab, n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim, n_ctx_train;
    float eps;
    sl_rope_params rope; /* freqs points at the model's backend buffer or NULL */
    bool tied_output;
    int32_t bos_id, eos_id, eot_id; /* -1 when absent */
} sl_hparams;

typedef struct sl_layer {
    sl_bweight *wq, *wk, *wv, *wo;          /* [H·Dk][E], [Hkv·Dk][E], [Hkv·Dk][E], [E][H·Dk] */
    sl_bweight *w_gate, *w_up, *w_down;     /* [F][E], [F][E], [E][F] */
    float *attn_norm, *ffn_norm;            /* backend [E] */
    float *bq, *bk, *bv, *bo;               /* backend [H·Dk], [Hkv·Dk], [Hkv·Dk], [E] or NULL */
    float *b_gate, *b_up, *b_down;          /* backend [F], [F], [E] or NULL */
    float *q_norm, *k_norm;                 /* backend [Dk] (qwen3) or NULL */
} sl_layer;

typedef struct sl_model_opts {
    int quant_to; /* -1: keep F32/F16/BF16 tensors; SL_WF_QW8 / SL_WF_QW4: quantize them */
    int group;    /* group size for quant_to (default 32 when 0) */
} sl_model_opts;

typedef struct sl_model {
    sl_hparams hp;
    sl_backend *be;
    sl_gguf *gguf;               /* kept open: the CPU backend may alias its mapping */
    sl_bweight *tok_embd;        /* [V][E] */
    sl_bweight *output;          /* [V][E]; == tok_embd when tied */
    float *output_norm;          /* backend [E] */
    float *rope_freqs;           /* backend [n_rot/2] or NULL */
    sl_layer *layers;            /* [n_layer] */
    struct sl_fwd_ws *ws;        /* forward workspace, see sl_model_reserve */
    struct sl_fake *fake;        /* the weightless stand-in of sl_model_create_fake, else NULL */
    char desc[128];              /* "llama 2 layers E=128 H=4 Hkv=2 Dk=32 F=256 V=512 Q4_K" */
} sl_model;

/* Opens path, validates it and loads it onto be. *out freed with sl_model_free (which does
 * not destroy be). Errors: SL_EIO, SL_EFORMAT, SL_EUNSUPPORTED, SL_ENOTFOUND with a message. */
int sl_model_load(sl_model **out, const char *path, sl_backend *be, const sl_model_opts *opts,
                  char err[SL_ERRMSG]);
/* Same over an already opened file; takes ownership of g on success and on failure. */
int sl_model_load_gguf(sl_model **out, sl_gguf *g, sl_backend *be, const sl_model_opts *opts,
                       char err[SL_ERRMSG]);
void sl_model_free(sl_model *m);
const char *sl_arch_name(sl_arch a);

/* A stand-in without weights, for measuring everything around the forward pass (HTTP, SSE,
 * scheduling, sampling, detokenization): `sluice serve --fake-model`. It has no layers (its
 * KV cache holds nothing) and sl_forward writes, for each logit row, a 0 everywhere and a
 * peak of 50 at the next token of a fixed cycle: cycle[(pos + 1) % n], pos the position of
 * the row's token. So the continuation is deterministic (greedy or sampled: the peak carries
 * all but e^-50·V of the mass) and depends only on its position, at the cost of filling
 * n_vocab floats per row. The cycle is every token of tok, in id order, that decodes on its
 * own to printable ASCII and does not end generation, so the streamed text is plain.
 * n_vocab is the larger of tok's and g's token_embd rows; n_ctx_train is g's
 * <arch>.context_length, else 2048; bos/eos are tok's. be may be NULL: nothing is allocated
 * on it. Takes ownership of g on success and on failure; tok is only read here.
 * Errors: SL_EINVAL when no token of tok decodes to plain text. */
struct sl_tok;
int sl_model_create_fake(sl_model **out, sl_gguf *g, sl_backend *be, const struct sl_tok *tok,
                         char err[SL_ERRMSG]);

/* ---- paged KV cache ------------------------------------------------------------------ */
typedef struct sl_kv_cache {
    int n_blocks, block_size, n_layer, kv_dim;
    float **k, **v; /* per layer, backend [n_blocks][block_size][kv_dim] */
} sl_kv_cache;

int sl_kv_cache_init(sl_kv_cache *kv, const sl_model *m, int n_blocks, int block_size);
/* Bytes of one block of block_size tokens over every layer, K and V, in the backend's KV
 * element (f32, or f16 where be->kv_f16); 0 for the fake model (it keeps no cache). */
size_t sl_kv_cache_block_bytes(const sl_model *m, int block_size);
void sl_kv_cache_deinit(sl_kv_cache *kv, const sl_model *m);

/* ---- forward over a ragged batch (host arrays; see kernels/backend.h for the meaning) ---- */
typedef struct sl_batch {
    int n_tokens;
    const int32_t *tokens;       /* [n_tokens] */
    const int32_t *pos;          /* [n_tokens] position within its sequence */
    const int32_t *slot_mapping; /* [n_tokens] block * block_size + offset */
    int n_seqs, max_blocks;
    const int32_t *q_start, *q_len, *ctx_len; /* [n_seqs] */
    const int32_t *block_tables;              /* [n_seqs][max_blocks] */
    int n_logits;
    const int32_t *logit_idx;    /* [n_logits] batch token indices whose logits are wanted */
} sl_batch;

/* Allocates the forward workspace for batches of up to max_tokens tokens, max_seqs
 * sequences, max_blocks blocks per sequence and max_logits logit rows. */
int sl_model_reserve(sl_model *m, int max_tokens, int max_seqs, int max_blocks, int max_logits);
/* Runs one step; writes logits (host [n_logits][n_vocab]). The batch must fit the reserve. */
int sl_forward(sl_model *m, sl_kv_cache *kv, const sl_batch *b, float *logits);

/* Runs n_tokens tokens of one sequence (ids 1, 2, ...) and then one decode step through a
 * workspace and KV cache of its own, freed after: what a server does before its first request,
 * so that the request does not pay the backend's first launches (on a GPU: kernel loading,
 * cuBLAS) nor the weights' first reads. The model then has no workspace reserved. SL_EINVAL for
 * n_tokens < 1, SL_ENOMEM, or the forward's error. */
int sl_model_warmup(sl_model *m, int n_tokens);

/* Whether the model's backend samples on its own (backend.h's `sample` op: the CUDA backend),
 * so that only token ids and the requested logprobs cross to the host, never the logits. */
bool sl_model_device_sampling(const sl_model *m);
/* Runs one step and samples one token per logit row on the backend: rows[l] (host) for logit
 * row l, results in out[l]. SL_EINVAL when the backend cannot sample; else as sl_forward. */
int sl_forward_sample(sl_model *m, sl_kv_cache *kv, const sl_batch *b, const sl_bsample_row *rows,
                      sl_bsample_out *out);

#ifdef __cplusplus
}
#endif
#endif
