#include "sample.h"

#include <math.h>
#include <stdlib.h>

int32_t sl_argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

static double log_sum_exp(const float *logits, int n) {
    float mx = logits[sl_argmax(logits, n)];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)logits[i] - mx);
    return mx + log(s);
}

float sl_logprob(const float *logits, int n, int32_t token) {
    return (float)((double)logits[token] - log_sum_exp(logits, n));
}

void sl_top_logprobs(const float *logits, int n, int k, int32_t *ids, float *lps) {
    if (k > n) k = n;
    double lse = log_sum_exp(logits, n);
    int m = 0; /* insertion into a sorted list of k: k is small (<= 20 in practice) */
    for (int i = 0; i < n; i++) {
        if (m == k && logits[i] <= logits[ids[m - 1]]) continue;
        int j = m < k ? m++ : k - 1;
        while (j > 0 && logits[ids[j - 1]] < logits[i]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
    for (int i = 0; i < k; i++) lps[i] = (float)((double)logits[ids[i]] - lse);
}
