/* argmax and log-probabilities: exact cases by hand (draws: tests/scheduler/test_sampling.c). */
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

int main(void) {
    test_logprobs();
    printf("test_sample: ok\n");
    return 0;
}
