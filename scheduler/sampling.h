/* sampling.h — per-request sampling parameters and the per-sequence sampler.
 *
 * The semantics follow vLLM's (and so OpenAI's) parameters. For one row of logits (the
 * model's raw output at a sampling position), in this order:
 *   1. logprobs: log-softmax of the RAW logits (before bias, penalties, temperature and any
 *      truncation: vLLM's default "raw_logprobs"), for the sampled token and, if asked, the
 *      top_logprobs most likely tokens (best first, lowest id first on ties);
 *   2. logit_bias: logit[t] += bias for each listed token;
 *   3. repetition_penalty r, for every token seen in the prompt or the output so far:
 *      a positive logit is divided by r, any other multiplied by r;
 *   4. frequency_penalty f and presence_penalty p, for every token generated so far:
 *      logit[t] -= count(t)·f + (count(t) > 0)·p  (prompt tokens do not count);
 *   5. temperature below 1e-5: greedy, the largest logit (lowest id on ties); top_k, top_p and
 *      min_p do not apply;
 *   6. otherwise probabilities softmax(logit / temperature); min_p keeps the tokens whose
 *      probability is at least min_p × the largest one; top_k keeps the k most likely of those
 *      (ties: lowest id first); top_p keeps the smallest set of the most likely remaining
 *      tokens whose renormalized mass reaches top_p; one token is drawn from what is kept:
 *      the first, in token id order, whose cumulative probability passes u × the kept mass.
 * A draw uses exactly one number from the sequence's own RNG (every generated token advances
 * it once, greedy ones included), seeded from the request's seed: a seeded request produces
 * the same tokens whatever else is in the batch, given the same logits. Sequence k of a
 * request with n > 1 uses seed + k.
 *
 * Ownership: a sampler borrows its parameters (they must outlive it) and owns its penalty
 * history (allocated by sl_sampler_init, only when a penalty is active, sized by the prompt
 * and max_tokens: nothing is allocated while sampling). A workspace is shared by every
 * sampler of one thread. Thread-safety: none; one thread per sampler and workspace.
 */
#ifndef SL_SAMPLING_H
#define SL_SAMPLING_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/base.h"
#include "../kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_MAX_LOGPROBS SL_BSAMPLE_MAX_LOGPROBS /* top_logprobs at most: 20 (OpenAI's and vLLM's cap) */
#define SL_MAX_STOP_STRINGS 16
#define SL_MAX_STOP_LEN 256      /* bytes per stop string */
#define SL_SAMPLING_EPS 1e-5f    /* temperatures below this are greedy */

typedef struct sl_logit_bias {
    int32_t token;
    float bias;                  /* [-100, 100] */
} sl_logit_bias;

typedef struct sl_sampling_params {
    int n;                       /* sequences to generate from the prompt, >= 1 */
    int max_tokens;              /* >= 1 */
    float temperature;           /* >= 0; below SL_SAMPLING_EPS: greedy */
    int top_k;                   /* 0 or -1: off */
    float top_p;                 /* (0, 1]; 1: off */
    float min_p;                 /* [0, 1]; 0: off */
    float repetition_penalty;    /* > 0; 1: off */
    float frequency_penalty;     /* [-2, 2]; 0: off */
    float presence_penalty;      /* [-2, 2]; 0: off */
    const sl_logit_bias *logit_bias; /* [n_logit_bias] */
    int n_logit_bias;
    bool has_seed;
    uint64_t seed;
    const int32_t *stop_ids;     /* [n_stop_ids] tokens that end a sequence with "stop" */
    int n_stop_ids;
    const char *const *stop;     /* [n_stop] stop strings (need a tokenizer), NUL-terminated */
    int n_stop;
    bool ignore_eos;             /* end-of-sequence tokens do not stop (stop_ids still do) */
    bool logprobs;               /* report the sampled token's log-probability */
    int top_logprobs;            /* and the top ones, 0 .. SL_MAX_LOGPROBS (needs logprobs) */
} sl_sampling_params;

/* vLLM's defaults: n 1, max_tokens 16, temperature 1, top_k off, top_p 1, min_p 0, penalties
 * off, no bias, no seed, no stops, no logprobs. */
void sl_sampling_params_defaults(sl_sampling_params *p);

/* Checks every range above; tokens of logit_bias must be in [0, n_vocab) and distinct, stop ids >= 0,
 * stop strings non-empty and at most SL_MAX_STOP_LEN bytes. SL_EINVAL with a message. */
int sl_sampling_params_check(const sl_sampling_params *p, int n_vocab, char err[SL_ERRMSG]);

/* Working space for sampling rows of n_vocab logits; sl_sample_ws_init allocates it. */
typedef struct sl_sample_ws {
    int n_vocab;
    float *work;                 /* [n_vocab] logits after bias and penalties */
    float *prob;                 /* [n_vocab] unnormalized probabilities */
    uint64_t *keys;              /* [n_vocab] sort keys of candidates */
} sl_sample_ws;

void sl_sample_ws_init(sl_sample_ws *ws, int n_vocab);
void sl_sample_ws_deinit(sl_sample_ws *ws);

typedef struct sl_sampler {
    const sl_sampling_params *p; /* borrowed */
    sl_rng rng;
    bool penalties;              /* any of the three penalties is active */
    /* penalty history: an open-addressing map token -> (output count, seen in the prompt),
     * and the list of its occupied slots for iteration */
    int32_t *h_tok;              /* [h_mask + 1], -1 when empty */
    uint32_t *h_count;           /* [h_mask + 1] times generated */
    uint8_t *h_prompt;           /* [h_mask + 1] seen in the prompt */
    int32_t *h_list;             /* [h_n] occupied slots */
    int32_t *h_pos;              /* [h_mask + 1] a slot's index in h_list */
    int h_n, h_mask;
} sl_sampler;

/* Prepares a sampler for one sequence: seeds its RNG with seed, and records the prompt for
 * the repetition penalty (penalty history for up to n_prompt + p->max_tokens tokens).
 * Freed with sl_sampler_deinit. */
void sl_sampler_init(sl_sampler *s, const sl_sampling_params *p, uint64_t seed, const int32_t *prompt,
                     int n_prompt, int n_vocab);
void sl_sampler_deinit(sl_sampler *s);

/* token; logprob: raw log-softmax at token (when p->logprobs); n_top: p->top_logprobs when
 * p->logprobs, else 0; top_ids/top_lps: the best n_top — the same record a backend's
 * device sampling returns */
typedef sl_bsample_out sl_sample_result;

/* Samples one token from logits (host [ws->n_vocab], not modified) as the header describes,
 * advancing the RNG once. Does not record the token: call sl_sampler_accept for that. */
void sl_sampler_sample(sl_sampler *s, const float *logits, sl_sample_ws *ws, sl_sample_result *out);
/* The next token as a row for a backend's `sample` op (kernels/backend.h): draws u, advancing
 * the RNG once exactly as sl_sampler_sample does, and writes the adjustments — logit_bias and
 * the penalty history merged per token, in time linear in their sizes — to adj, which needs
 * room for sl_sampler_adj_max(s). The row points at adj. The logit_bias tokens must be
 * distinct (as sl_sampling_params_check requires). */
int sl_sampler_adj_max(const sl_sampler *s);
void sl_sampler_device_row(sl_sampler *s, sl_bsample_adj *adj, sl_bsample_row *row);
/* Records a generated token in the penalty history (no-op without penalties). */
void sl_sampler_accept(sl_sampler *s, int32_t token);
/* How often token was generated so far (0 without penalties); for tests. */
int sl_sampler_count(const sl_sampler *s, int32_t token);

/* The seed of sequence k of a request: seed + k when the request has one, else a mix of
 * base (the engine's seed), the request id and k. */
uint64_t sl_sampling_seed(const sl_sampling_params *p, uint64_t base, uint64_t id, int k);

#ifdef __cplusplus
}
#endif
#endif
