/* `sluice bench throughput` on a tiny model (CPU): batched and one request at a time, with and
 * without its warm-up requests. The counts in --output-json are the timed requests' alone (a
 * warm-up that leaked into them adds steps), and options that cannot go together are refused
 * with exit status 2. */
#include "tests/server/harness.h"

/* Runs the bench; returns its exit status, and with status 0 the JSON's num_steps in *steps
 * after checking its request and token counts. */
static int run(const char *model, const char *extra, int n, int in, int out, long *steps) {
    char json[96], cmd[512];
    snprintf(json, sizeof json, "%s/bench.json", tmpdir);
    unlink(json);
    snprintf(cmd, sizeof cmd,
             "./sluice bench throughput --model %s --num-prompts %d --input-len %d --output-len %d "
             "--threads 1 --output-json %s %s > %s/bench.out 2>&1",
             model, n, in, out, json, extra, tmpdir);
    int st = system(cmd);
    ASSERT(WIFEXITED(st));
    st = WEXITSTATUS(st);
    char outp[96];
    snprintf(outp, sizeof outp, "%s/bench.out", tmpdir);
    char *text = slurp(outp);
    unlink(outp);
    if (st) {
        printf("%s: exit %d: %s", extra, st, text);
        free(text);
        return st;
    }
    ASSERT_STR_CONTAINS(text, "Throughput: ");
    free(text);
    char *j = slurp(json);
    char want[96];
    snprintf(want, sizeof want, "\"num_requests\": %d, \"total_num_tokens\": %d,", n, n * (in + out));
    ASSERT_STR_CONTAINS(j, want);
    const char *k = strstr(j, "\"num_steps\": ");
    ASSERT(k);
    *steps = atol(k + strlen("\"num_steps\": "));
    free(j);
    unlink(json);
    return 0;
}

int main(void) {
    const char *model = make_model();
    long steps = -1;
    /* batched: the 4 prompts (32 tokens) prefill in one step, which gives each its first token,
     * then one step per further token; the warm-up (4 requests of 2 tokens: 2 steps) excluded */
    ASSERT_EQ(run(model, "", 4, 8, 5, &steps), 0);
    ASSERT_EQ(steps, 5);
    ASSERT_EQ(run(model, "--no-warmup", 4, 8, 5, &steps), 0);
    ASSERT_EQ(steps, 5);
    /* one at a time: 5 steps each */
    ASSERT_EQ(run(model, "--sequential", 3, 8, 5, &steps), 0);
    ASSERT_EQ(steps, 15);
    /* a cap of 16 tokens a step: the warm-up is 2 requests (what fills the first step); the
     * timed run's prefills spread over steps beside decodes, the same count as without it */
    long cold = -1;
    ASSERT_EQ(run(model, "--max-num-batched-tokens 16 --no-warmup", 4, 8, 5, &cold), 0);
    ASSERT_EQ(run(model, "--max-num-batched-tokens 16", 4, 8, 5, &steps), 0);
    ASSERT(cold > 5);
    ASSERT_EQ(steps, cold);
    /* refused: an invalid threshold; a GEMM threshold with batch invariance */
    ASSERT_EQ(run(model, "--gemm-min-tokens -2", 2, 4, 2, &steps), 2);
    ASSERT_EQ(run(model, "--batch-invariant --gemm-min-tokens 64", 2, 4, 2, &steps), 2);
    ASSERT_EQ(run(model, "--batch-invariant --gemm-min-tokens 0", 2, 4, 2, &steps), 0);
    remove_model(model);
    printf("test_bench_throughput: ok\n");
    return 0;
}
