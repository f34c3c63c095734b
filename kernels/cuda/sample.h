/* sample.h — sampling on the device: a batch of rows of logits in, one token per row (and the
 * requested log-probabilities) out, so that only ids and logprobs cross PCIe, never the logits.
 *
 * Semantics: exactly scheduler/sampling.h's, in its order, for row b of logits [B][V]:
 *   1. logprobs from the RAW logits: log-softmax at the sampled token, and the top_logprobs
 *      most likely tokens (best first, lowest id first on ties);
 *   2. logit bias, 3. repetition penalty (tokens seen in the prompt or generated), 4. frequency
 *      and presence penalties (generated tokens only), all from the row's adjustment list;
 *   5. temperature below SL_CUDA_SAMPLING_EPS: greedy, the largest logit, lowest id on ties;
 *   6. else w = exp((logit − max) / temperature) (0 below e^-87, as the CPU sampler), min_p keeps
 *      w >= min_p (the largest has w = 1), top_k the k best of those (logit descending, id
 *      ascending), top_p the smallest best-first prefix of those whose mass reaches top_p × their
 *      mass; then one draw with the row's u: r = u × (mass kept), the token is the first kept
 *      one, IN TOKEN ID ORDER, whose running mass exceeds r (the last kept one if rounding
 *      leaves r out of reach).
 * The CPU sampler draws the same way (in id order over the same kept set), so the two pick the
 * same token for the same u, except where f32-vs-f64 rounding moves r across a boundary.
 *
 * The random number: the host keeps each sequence's sl_rng (scheduler/sampling.c) and draws
 * exactly one number per generated token, greedy ones included, u = (sl_rng_u64 >> 11) · 2^-53
 * (sampling.c's uniform01), and puts it in the row's parameters. So a seeded request draws the
 * same tokens whatever the batch around it, and a sequence can move between the CPU and the
 * device sampler without its RNG stream changing.
 *
 * NaN logits count as −inf (never drawn). A row whose every logit is −inf (or NaN) yields token 0.
 */
#ifndef SL_CUDA_SAMPLE_H
#define SL_CUDA_SAMPLE_H

#include <stdint.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_CUDA_MAX_LOGPROBS 20     /* top_logprobs at most (= SL_MAX_LOGPROBS) */
#define SL_CUDA_SAMPLING_EPS 1e-5f  /* temperatures below this are greedy (= SL_SAMPLING_EPS) */
#define SL_CUDA_ADJ_PROMPT 0x80000000u /* sl_cuda_sample_adj.count: seen in the prompt */

/* One token whose logit is adjusted before sampling: the union of the request's logit_bias
 * list and the sequence's penalty history (sl_sampler's h_tok/h_count/h_prompt), one entry per
 * distinct token (the host sums the biases of a token listed twice). */
typedef struct sl_cuda_sample_adj {
    int32_t token;  /* entries outside [0, V) are skipped, as the CPU sampler does */
    float bias;     /* added first; 0 when the token has no logit_bias */
    uint32_t count; /* bits 0-30: times generated so far; SL_CUDA_ADJ_PROMPT: seen in the prompt */
    float raw;      /* written by the kernel: the token's raw logit (for its logprob) */
} sl_cuda_sample_adj;

/* The parameters of one row (a device array of B of them, uploaded each step: 56 bytes a row). */
typedef struct sl_cuda_sample_row {
    double u;                 /* the sequence's draw for this token, in [0, 1) (see above) */
    float temperature;        /* >= 0; below SL_CUDA_SAMPLING_EPS: greedy */
    float top_p;              /* (0, 1]; 1: off */
    float min_p;              /* [0, 1]; 0: off */
    int32_t top_k;            /* <= 0: off */
    float repetition_penalty; /* > 0; 1: off */
    float frequency_penalty;
    float presence_penalty;
    int32_t n_adj;            /* entries of adj */
    sl_cuda_sample_adj *adj;  /* device [n_adj], distinct tokens, this row's own (the kernel
                                 writes .raw); NULL when n_adj == 0 */
    int32_t logprobs;         /* nonzero: write the sampled token's raw logprob */
    int32_t top_logprobs;     /* 0 .. SL_CUDA_MAX_LOGPROBS (with logprobs) */
} sl_cuda_sample_row;

/* Samples one token from each row of logits (device f32 [B][V], V <= 2^23, B <= 2^31 − 1)
 * with the parameters rows[b] (device [B]):
 *   tokens[b]   (device int32 [B]) the token;
 *   logprobs[b] (device f32 [B], or NULL) its raw logprob when rows[b].logprobs, else 0;
 *   top_ids[b][j], top_lps[b][j] (device [B][SL_CUDA_MAX_LOGPROBS], both or neither NULL) for
 *      j < min(top_logprobs, V) when rows[b].logprobs; entries past that are not written.
 * The logits are modified in place: on return row b holds its logits after bias and penalties
 * (an unadjusted row is left as it was), so a row must not be sampled twice. Enqueued on
 * stream; one block per row; no workspace, no allocation. Invalid arguments abort; parameters
 * out of range (they are device memory) are not checked: validate them with
 * sl_sampling_params_check on the host. */
void sl_cuda_sample(float *logits, int B, int V, const sl_cuda_sample_row *rows, int32_t *tokens,
                    float *logprobs, int32_t *top_ids, float *top_lps, sl_cuda_stream stream);

/* Tests and benchmarks: the most candidates (0 .. 4096) a selection (top_k or top_p, and the
 * top-N logprobs) may take from the row into shared memory instead of selecting over the whole
 * row; 0 always selects over the whole row, a negative cap restores the default, 4096. The
 * results are the same either way. Applies to later calls (not thread-safe). */
void sl_cuda_sample_set_list_cap(int cap);

/* sl_cuda_sample, and for tests list_ns (device int32 [B][2], or NULL): per row, the length of
 * the candidate list its truncated draw ([b][0]) and its top-N ([b][1]) selected from; -1: it
 * selected over the whole row; -2: no such selection (no top_k or top_p, greedy, a row of
 * -inf; no top-N). */
void sl__cuda_sample_ex(float *logits, int B, int V, const sl_cuda_sample_row *rows,
                        int32_t *tokens, float *logprobs, int32_t *top_ids, float *top_lps,
                        int32_t *list_ns, sl_cuda_stream stream);

#ifdef __cplusplus
}
#endif
#endif
