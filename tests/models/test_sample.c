/* Sampling and log-probabilities: exact cases by hand, and draws checked statistically. */
#include <math.h>

#include "models/sample.h"
#include "tests/test.h"

static void test_logprobs(void) {
    float l[5] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
    double z = exp(1) + 2 * exp(3) + exp(2) + exp(-1);
    ASSERT_EQ(sl_argmax(l, 5), 1); /* ties: lowest id */
    ASSERT_NEAR(sl_logprob(l, 5, 2), 2.0 - log(z), 1e-6, 0);
    int32_t ids[3];
    float lps[3];
    sl_top_logprobs(l, 5, 3, ids, lps);
    ASSERT_EQ(ids[0], 1);
    ASSERT_EQ(ids[1], 3);
    ASSERT_EQ(ids[2], 2);
    ASSERT_NEAR(lps[0], 3.0 - log(z), 1e-6, 0);
    ASSERT_NEAR(lps[2], 2.0 - log(z), 1e-6, 0);
    /* k larger than n is clamped */
    int32_t ids5[5];
    float lps5[5];
    sl_top_logprobs(l, 5, 5, ids5, lps5);
    ASSERT_EQ(ids5[4], 4);
    double s = 0;
    for (int i = 0; i < 5; i++) s += exp(lps5[i]);
    ASSERT_NEAR(s, 1.0, 1e-6, 0);
}

static void test_draws(void) {
    enum { N = 6, DRAWS = 60000 };
    float l[N] = {0.5f, 2.0f, 1.0f, -0.5f, 1.5f, 0.0f};
    uint64_t keys[N];
    float p[N];
    sl_rng rng;
    sl_rng_seed(&rng, 42);
    /* greedy */
    sl_sampling g = {.temperature = 0, .top_p = 1};
    ASSERT_EQ(sl_sample(l, N, &g, &rng, keys, p), 1);
    /* temperature 0.7, no truncation: frequencies match softmax(l / 0.7) */
    sl_sampling sp = {.temperature = 0.7f, .top_k = 0, .top_p = 1};
    int count[N] = {0};
    for (int i = 0; i < DRAWS; i++) count[sl_sample(l, N, &sp, &rng, keys, p)]++;
    double z = 0;
    for (int i = 0; i < N; i++) z += exp(l[i] / 0.7);
    for (int i = 0; i < N; i++) {
        double want = exp(l[i] / 0.7) / z, got = (double)count[i] / DRAWS;
        double sigma = sqrt(want * (1 - want) / DRAWS);
        ASSERT_NEAR(got, want, 5 * sigma, 0);
    }
    /* top-k 2: only the two best tokens, in proportion */
    sl_sampling tk = {.temperature = 1, .top_k = 2, .top_p = 1};
    int c1 = 0, c4 = 0;
    for (int i = 0; i < DRAWS; i++) {
        int t = sl_sample(l, N, &tk, &rng, keys, p);
        ASSERT(t == 1 || t == 4);
        c1 += t == 1;
        c4 += t == 4;
    }
    double want1 = exp(2.0) / (exp(2.0) + exp(1.5));
    ASSERT_NEAR((double)c1 / DRAWS, want1, 5 * sqrt(want1 * (1 - want1) / DRAWS), 0);
    /* top-p 0.5: the smallest prefix whose mass reaches 0.5 */
    sl_sampling tp = {.temperature = 1, .top_k = 0, .top_p = 0.5f};
    double zz = 0;
    for (int i = 0; i < N; i++) zz += exp(l[i]);
    double m1 = exp(2.0) / zz; /* mass of the best token */
    for (int i = 0; i < 2000; i++) {
        int t = sl_sample(l, N, &tp, &rng, keys, p);
        if (m1 >= 0.5) ASSERT_EQ(t, 1);
        else ASSERT(t == 1 || t == 4);
    }
    /* same seed, same draws */
    sl_rng a, b;
    sl_rng_seed(&a, 7);
    sl_rng_seed(&b, 7);
    for (int i = 0; i < 100; i++) ASSERT_EQ(sl_sample(l, N, &sp, &a, keys, p), sl_sample(l, N, &sp, &b, keys, p));
}

int main(void) {
    test_logprobs();
    test_draws();
    printf("test_sample: ok\n");
    return 0;
}
