/* sample.h — argmax and log-probabilities over one row of logits (log-softmax of the full
 * distribution, computed in double). Drawing tokens with sampling parameters is the engine's
 * sampler (scheduler/sampling.h). Pure functions; thread-safe for distinct arguments.
 */
#ifndef SL_SAMPLE_H
#define SL_SAMPLE_H

#include <stdint.h>

#include "../base/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Index of the largest logit (lowest index on ties). */
int32_t sl_argmax(const float *logits, int n);
/* log-softmax(logits)[token] */
float sl_logprob(const float *logits, int n, int32_t token);
/* The k most likely tokens (best first, lowest id first on ties) and their log-probabilities. */
void sl_top_logprobs(const float *logits, int n, int k, int32_t *ids, float *lps);

#ifdef __cplusplus
}
#endif
#endif
