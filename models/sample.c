#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* Orders by logit descending, then id ascending: a 64-bit key of the inverted sortable float
 * bits and the id, so qsort needs no context. */
static uint64_t sort_key(float v, int32_t id) {
    uint32_t u;
    memcpy(&u, &v, 4);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* monotone in v */
    return ((uint64_t)~u << 32) | (uint32_t)id;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int32_t sl_sample(const float *logits, int n, const sl_sampling *sp, sl_rng *rng, uint64_t *keys, float *p) {
    if (sp->temperature <= 0) return sl_argmax(logits, n);
    for (int i = 0; i < n; i++) keys[i] = sort_key(logits[i], i);
    qsort(keys, (size_t)n, sizeof *keys, cmp_u64);
#define ID(i) ((int32_t)(uint32_t)keys[i])
    int m = sp->top_k > 0 && sp->top_k < n ? sp->top_k : n;
    double mx = logits[ID(0)], sum = 0;
    for (int i = 0; i < m; i++) {
        p[i] = (float)exp(((double)logits[ID(i)] - mx) / sp->temperature);
        sum += p[i];
    }
    if (sp->top_p < 1.0f) {
        double acc = 0;
        int keep = m;
        for (int i = 0; i < m; i++) {
            acc += p[i] / sum;
            if (acc >= sp->top_p) {
                keep = i + 1;
                break;
            }
        }
        m = keep;
        sum = 0;
        for (int i = 0; i < m; i++) sum += p[i];
    }
    double r = sl_rng_f32(rng) * sum, acc = 0;
    for (int i = 0; i < m; i++) {
        acc += p[i];
        if (r < acc) return ID(i);
    }
    return ID(m - 1);
#undef ID
}
