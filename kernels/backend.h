/* backend.h — the interface every compute backend implements (CPU now, CUDA next).
 *
 * A backend owns its memory: activations, KV cache and weights live in buffers it allocates
 * (host memory for the CPU backend, device memory for CUDA). Ops take those pointers and run
 * in issue order; sync() waits for all of them. Activations are f32 rows; an "[T][N]" buffer
 * holds T rows of N contiguous floats.
 *
 * Ragged batches (DESIGN.md decision 3): one step carries T tokens from S sequences. Sequence
 * s owns tokens [q_start[s], q_start[s] + q_len[s]) of the batch; its context after this step
 * has ctx_len[s] tokens (so its new tokens sit at positions ctx_len − q_len … ctx_len − 1).
 * Its KV lives in blocks block_tables[s * max_blocks + b] of block_size tokens each. Token t
 * writes its K/V to slot_mapping[t] = block * block_size + offset.
 *
 * KV cache layout (per layer): K and V each [n_blocks][block_size][n_kv_heads][head_dim], f32,
 * or IEEE binary16 bits where the backend's kv_f16 is set (the CUDA backend's default: half
 * the bytes per token read by every decode step). Block 0 is the null block (never written by
 * real tokens).
 *
 * Not thread-safe: one thread drives a backend (the engine thread). Ops never fail on valid
 * arguments; invalid ones are programming errors (SL_CHECK).
 */
#ifndef SL_BACKEND_H
#define SL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "qw.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_rope_mode {
    SL_ROPE_NORM = 0, /* rotate adjacent pairs (x[2i], x[2i+1]) — llama */
    SL_ROPE_NEOX = 1, /* rotate halves (x[i], x[i + n_rot/2]) — qwen2, qwen3 */
} sl_rope_mode;

typedef struct sl_rope_params {
    sl_rope_mode mode;
    int n_rot;           /* rotated dims per head, even, <= head_dim */
    float freq_base;     /* e.g. 10000, 500000 */
    float freq_scale;    /* linear scaling: 1 / factor; 1 when none */
    const float *freqs;  /* backend buffer [n_rot/2] of divisors (Llama 3.1 rope_freqs), or NULL */
} sl_rope_params;

typedef struct sl_attn_batch {
    int n_seqs;
    int max_blocks;              /* row stride of block_tables */
    const int32_t *q_start;      /* backend buffer [n_seqs] */
    const int32_t *q_len;        /* backend buffer [n_seqs] */
    const int32_t *ctx_len;      /* backend buffer [n_seqs] */
    const int32_t *block_tables; /* backend buffer [n_seqs][max_blocks] */
    int n_tokens;                /* rows of q in this step; 0: not given (a backend bounds it) */
    int max_ctx;                 /* an upper bound of every ctx_len (the longest); 0: not given */
} sl_attn_batch;

/* Sampling on the backend (the optional `sample` op), with scheduler/sampling.h's semantics
 * for one row: the host keeps each sequence's RNG and passes its draw u for this token, and the
 * adjustments (the request's logit_bias and the sequence's penalty history) as one list with
 * one entry per distinct token. */
#define SL_BSAMPLE_PROMPT 0x80000000u /* sl_bsample_adj.count: seen in the prompt */
#define SL_BSAMPLE_MAX_LOGPROBS 20
typedef struct sl_bsample_adj {
    int32_t token;
    float bias;     /* the token's logit_bias, 0 when none */
    uint32_t count; /* bits 0-30: times generated so far; SL_BSAMPLE_PROMPT: seen in the prompt */
} sl_bsample_adj;

typedef struct sl_bsample_row {
    double u;                 /* in [0, 1) */
    float temperature;        /* below 1e-5: greedy */
    float top_p, min_p;
    int32_t top_k;            /* <= 0: off */
    float repetition_penalty, frequency_penalty, presence_penalty;
    const sl_bsample_adj *adj; /* host [n_adj] */
    int n_adj;
    int logprobs;             /* nonzero: the sampled token's raw logprob (and the top ones) */
    int top_logprobs;         /* 0 .. SL_BSAMPLE_MAX_LOGPROBS */
} sl_bsample_row;

typedef struct sl_bsample_out { /* also the host sampler's result (sl_sample_result) */
    int32_t token;
    float logprob;            /* raw log-softmax at token (when logprobs) */
    int n_top;                /* top_logprobs when logprobs, else 0 */
    int32_t top_ids[SL_BSAMPLE_MAX_LOGPROBS];
    float top_lps[SL_BSAMPLE_MAX_LOGPROBS];
} sl_bsample_out;

typedef struct sl_bweight sl_bweight; /* a weight in the backend's physical layout */
typedef struct sl_backend sl_backend;

struct sl_backend {
    const char *name;
    void *impl;
    /* The KV cache's element: 0 f32, 1 f16 (kv_write rounds to nearest even, attention reads
     * halves; the cache pointers of those ops then point at uint16_t). Set at creation; the
     * owner may change it only while no cache exists (the CUDA backend supports both; the CPU
     * backend f32 only). */
    int kv_f16;

    void (*destroy)(sl_backend *be);

    /* memory */
    void *(*alloc)(sl_backend *be, size_t bytes); /* NULL when out of memory */
    void (*free)(sl_backend *be, void *p);
    void (*upload)(sl_backend *be, void *dst, const void *src, size_t bytes);
    void (*download)(sl_backend *be, void *dst, const void *src, size_t bytes);
    void (*sync)(sl_backend *be);

    /* Repacks a logical weight into the backend's layout. The sl_qw is only read during the
     * call (the backend copies what it needs; the CPU backend may alias it when w->owns == 0
     * and the memory outlives the weight, e.g. a mapped file: see `alias`). */
    int (*weight_create)(sl_backend *be, const sl_qw *w, int alias, sl_bweight **out);
    void (*weight_destroy)(sl_backend *be, sl_bweight *w);

    /* y[T][rows] = x[T][cols] · Wᵀ  (every row of W dotted with every token) */
    void (*matmul)(sl_backend *be, const sl_bweight *w, const float *x, float *y, int T);
    /* Optional (NULL: one matmul per weight): y[i] = x · w[i]ᵀ for n (2 or 3) weights of the
     * same cols on the same x (q/k/v, gate/up), each within matmul's error bound; a backend
     * may run them in one pass (the CUDA backend: one launch over the rows of those that
     * share a format, planned for them together, so not always matmul's bits). */
    void (*matmul_multi)(sl_backend *be, const sl_bweight *const *w, int n, const float *x,
                         float *const *y, int T);
    /* y[T][D] = x[T][D] / sqrt(mean(x²) + eps) · g[D]   (y may equal x) */
    void (*rmsnorm)(sl_backend *be, const float *x, const float *g, float *y, int T, int D,
                    float eps);
    /* x[n] += y[n] */
    void (*add)(sl_backend *be, float *x, const float *y, int64_t n);
    /* Optional (NULL: add, then rmsnorm): x[T][D] += r[T][D], then y = rmsnorm(x) · g, with
     * exactly the results of those two calls on the backend's buffers, in one pass (the CUDA
     * backend: one launch instead of two). y may equal r (the residual branch's output,
     * normalized in its place). */
    void (*add_rmsnorm)(sl_backend *be, float *x, const float *r, const float *g, float *y,
                        int T, int D, float eps);
    /* x[T][N] += b[N] */
    void (*add_bias)(sl_backend *be, float *x, const float *b, int T, int N);
    /* in place on x[T][H][head_dim], token t at position pos[t] */
    void (*rope)(sl_backend *be, float *x, const int32_t *pos, int T, int H, int head_dim,
                 const sl_rope_params *rp);
    /* y[n] = silu(g[n]) · u[n]   (y may equal g) */
    void (*swiglu)(sl_backend *be, const float *g, const float *u, float *y, int64_t n);
    /* y[T][cols] = rows tok[t] of the table, dequantized */
    void (*embed)(sl_backend *be, const sl_bweight *table, const int32_t *tok, float *y, int T);
    /* k/v [T][kv_dim] into the layer's cache at slot_mapping[t] (kv_dim = n_kv_heads·head_dim) */
    void (*kv_write)(sl_backend *be, float *k_cache, float *v_cache, const float *k,
                     const float *v, const int32_t *slot_mapping, int T, int kv_dim);
    /* Causal attention of q[T][H][head_dim] over each sequence's cached K/V (already holding
     * this step's tokens); out[T][H][head_dim]. Query head h reads KV head h / (H / Hkv). */
    void (*attention)(sl_backend *be, const float *q, const float *k_cache, const float *v_cache,
                      float *out, const sl_attn_batch *b, int H, int Hkv, int head_dim,
                      int block_size, float scale);
    /* y[n][D] = x[idx[i]][D] (logits only at sampling positions) */
    void (*gather_rows)(sl_backend *be, const float *x, const int32_t *idx, float *y, int n,
                        int D);
    /* Optional (NULL: the caller downloads the logits and samples on the host): one token from
     * each row of logits[B][V] (a backend buffer; modified) with rows[b], out[b] (both host
     * memory); returns when out is written. */
    void (*sample)(sl_backend *be, float *logits, int B, int V, const sl_bsample_row *rows,
                   sl_bsample_out *out);
};

#ifdef __cplusplus
}
#endif
#endif
