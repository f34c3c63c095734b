/* `sluice bench serve` against a running sluice serve on a tiny model: a few prompts at a
 * finite Poisson rate with a concurrency cap, then all at once; every request completes, the
 * counts add up, and --output-json holds vLLM's key names. */
#include "tests/server/harness.h"

static void run_bench(int port, const char *rate, const char *extra, int n, int in, int out, int max_conc) {
    char json[96], cmd[512];
    snprintf(json, sizeof json, "%s/bench.json", tmpdir);
    snprintf(cmd, sizeof cmd,
             "./sluice bench serve --url http://127.0.0.1:%d --num-prompts %d --request-rate %s %s "
             "--input-len %d --output-len %d --seed 3 --output-json %s > %s/bench.out 2>&1",
             port, n, rate, extra, in, out, json, tmpdir);
    int st = system(cmd);
    char outp[96];
    snprintf(outp, sizeof outp, "%s/bench.out", tmpdir);
    char *text = slurp(outp);
    if (st) fprintf(stderr, "%s\nexit %d:\n%s\n", cmd, st, text);
    ASSERT_EQ(st, 0);
    ASSERT_STR_CONTAINS(text, "Successful requests:");
    ASSERT_STR_CONTAINS(text, "Time to First Token");
    free(text);
    unlink(outp);
    char *j = slurp(json);
    const char *keys[] = {"\"request_throughput\": ", "\"output_throughput\": ", "\"total_token_throughput\": ",
                          "\"mean_ttft_ms\": ",       "\"median_ttft_ms\": ",    "\"p99_ttft_ms\": ",
                          "\"mean_tpot_ms\": ",       "\"p99_tpot_ms\": ",       "\"mean_itl_ms\": ",
                          "\"p99_itl_ms\": ",         "\"mean_e2el_ms\": ",      "\"p99_e2el_ms\": ",
                          "\"duration\": ",           "\"max_concurrent_requests\": "};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) ASSERT_STR_CONTAINS(j, keys[i]);
    char want[96];
    snprintf(want, sizeof want, "\"completed\": %d, \"failed\": 0,", n);
    ASSERT_STR_CONTAINS(j, want);
    snprintf(want, sizeof want, "\"total_input_tokens\": %d, \"total_output_tokens\": %d,", n * in, n * out);
    ASSERT_STR_CONTAINS(j, want);
    snprintf(want, sizeof want, "\"num_prompts\": %d,", n);
    ASSERT_STR_CONTAINS(j, want);
    const char *rt = strstr(j, "\"request_throughput\": ");
    ASSERT(atof(rt + strlen("\"request_throughput\": ")) > 0);
    const char *mc = strstr(j, "\"max_concurrent_requests\": ");
    int peak = atoi(mc + strlen("\"max_concurrent_requests\": "));
    ASSERT(peak >= 1 && peak <= max_conc);
    free(j);
    unlink(json);
}

int main(void) {
    const char *model = make_model();
    srv s = start_server(model, "--served-model-name", "tiny", NULL);
    run_bench(s.port, "50", "--max-concurrency 3", 6, 12, 5, 3);
    run_bench(s.port, "inf", "", 5, 7, 4, 5);
    /* a server that is not there: a clean failure, not a hang */
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "./sluice bench serve --url http://127.0.0.1:1 --num-prompts 2 --input-len 4 --output-len 2 "
             "--model x --vocab-size 100 > /dev/null 2>&1");
    ASSERT(system(cmd) != 0);
    ASSERT_EQ(stop_server(&s, 10000), 0);
    remove_model(model);
    printf("test_bench_serve: ok\n");
    return 0;
}
