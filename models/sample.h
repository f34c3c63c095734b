/* sample.h — host-side token sampling and log-probabilities over one row of logits.
 *
 * Greedy when temperature <= 0; otherwise softmax(logits / T) restricted by top-k (0: off)
 * and top-p (1: off), drawn with the caller's RNG (one RNG per sequence makes draws
 * independent of batch composition). Log-probabilities are of the full, untempered
 * distribution, computed in double. Pure functions; thread-safe for distinct arguments.
 */
#ifndef SL_SAMPLE_H
#define SL_SAMPLE_H

#include <stdint.h>

#include "../base/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_sampling {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
} sl_sampling;

/* Index of the largest logit (lowest index on ties). */
int32_t sl_argmax(const float *logits, int n);
/* Draws a token. scratch_keys [n] and scratch_p [n]: working space owned by the caller. */
int32_t sl_sample(const float *logits, int n, const sl_sampling *sp, sl_rng *rng, uint64_t *scratch_keys,
                  float *scratch_p);
/* log-softmax(logits)[token] */
float sl_logprob(const float *logits, int n, int32_t token);
/* The k most likely tokens (best first, lowest id first on ties) and their log-probabilities. */
void sl_top_logprobs(const float *logits, int n, int k, int32_t *ids, float *lps);

#ifdef __cplusplus
}
#endif
#endif
