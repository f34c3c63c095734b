/* GET /metrics of sluice serve, validated by a real Prometheus parser: `promtool check
 * metrics` (Debian's prometheus package; scripts/setup.sh installs it) after some traffic
 * (completions streamed and not, an error), so that every counter and histogram has samples.
 * promtool exits 1 on text it cannot parse and 3 on lint problems (counters not ending in
 * _total, missing HELP, ...). Every lint problem fails the test but one: "metric names should
 * not contain ':'", since the names are vLLM's, `sluice:` prefix included (API.md §5). The
 * test first checks that promtool really rejects malformed expositions, so that a missing or
 * lenient checker cannot pass silently. */
#include "tests/server/harness.h"

/* Runs promtool check metrics on text; returns its exit status, its output in out. */
static int promtool_check(const char *text, char *out, size_t cap) {
    char path[96];
    snprintf(path, sizeof path, "%s/metrics.txt", tmpdir);
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs(text, f);
    ASSERT_EQ(fclose(f), 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    ASSERT(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int main(void) {
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_metrics: promtool not found (apt-get install prometheus; scripts/setup.sh does)\n");
        return 1;
    }
    const char *model = make_model();
    char out[65536];
    /* the checker must reject malformed expositions */
    ASSERT(promtool_check("# TYPE sluice:x counter\nsluice:x_total{a=\"1\" 3\n", out, sizeof out) != 0);
    ASSERT(promtool_check("# HELP sluice:y_total y\n# TYPE sluice:y_total counter\nsluice:y_total abc\n", out,
                          sizeof out) != 0);
    ASSERT(promtool_check("# HELP sluice:z z\n# TYPE sluice:z histogram\nsluice:z_bucket{le=\"1\"} 1\n"
                          "sluice:z_bucket{le=\"+Inf\"} 1\nsluice:z_sum 0.5\nsluice:z_count 1\n"
                          "sluice:z_bucket{le=\"2\"} 1\n",
                          out, sizeof out) != 0); /* a histogram's samples interleaved with nothing, out of order */

    srv s = start_server(model, "--served-model-name", "tiny", NULL);
    resp r;
    /* some traffic: plain, streamed with usage, and a 400 */
    post(s.port, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":[1,2,3,4],\"max_tokens\":5}", NULL, &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    post(s.port, "/v1/completions",
         "{\"model\":\"tiny\",\"prompt\":\"hello\",\"max_tokens\":4,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
         NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "data: [DONE]");
    resp_free(&r);
    post(s.port, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":[1,2,3,4],\"max_tokens\":-1}", NULL, &r);
    ASSERT_EQ(r.status, 400);
    resp_free(&r);

    request(s.port, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "sluice:time_to_first_token_seconds_bucket");
    int st = promtool_check(r.body, out, sizeof out);
    if (st == 3) { /* lint problems only: all must be the ':' one */
        bool other = false;
        for (char *l = out; *l;) {
            char *nl = strchr(l, '\n');
            if (nl) *nl = 0;
            const char *ok = "metric names should not contain ':'";
            size_t n = strlen(l), k = strlen(ok);
            if (n && (n < k || strcmp(l + n - k, ok))) other = true;
            if (nl) *nl = '\n';
            l = nl ? nl + 1 : l + n;
        }
        if (!other) st = 0;
    }
    if (st) fprintf(stderr, "promtool check metrics: exit %d\n%s\n--- /metrics ---\n%s\n", st, out, r.body);
    ASSERT_EQ(st, 0);
    /* a corrupted copy of the real output must fail */
    char *bad = malloc(r.body_len + 64);
    snprintf(bad, r.body_len + 64, "%s%s", r.body, "sluice:num_requests_running{model_name=\"tiny\" 1\n");
    ASSERT(promtool_check(bad, out, sizeof out) != 0);
    free(bad);
    resp_free(&r);

    ASSERT_EQ(stop_server(&s, 10000), 0);
    remove_model(model);
    printf("test_metrics: ok\n");
    return 0;
}
