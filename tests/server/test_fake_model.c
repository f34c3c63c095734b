/* `sluice serve --fake-model` (models/fake.c), the benchmarking stand-in: the server starts
 * without reading weights, streams completions whose text is the stand-in's fixed cycle of
 * plain tokens (so the forward pass really is the fake one), greedy and sampled alike, to
 * many concurrent streams. Also `--device`: an unknown device is refused at start with exit
 * status 2 and a message, and so is cuda where it cannot run (no CUDA device here, or a build
 * without nvcc). */
#include <sys/stat.h>

#include "tests/server/harness.h"
#ifdef SL_HAVE_CUDA
#include "kernels/cuda/cuda.h"
#endif

/* The toy vocabulary (mkmodel): <unk> <s> </s>, byte tokens <0x00>..<0xFF> at ids 3..258,
 * then "▁t<i>". The plain tokens, in id order, start with the bytes 0x21..0x7e (0x20 alone
 * decodes to "": a leading space is dropped), so cycle[k] for k < 94 is the character
 * 0x21 + k. A prompt of P tokens continues with cycle[P], cycle[P + 1], ...: for P = 3,
 * "$%&'()*+,-". */
#define WANT_TEXT "$%&'()*+,-"

/* The concatenated "text" fields of an SSE body (no escapes in WANT_TEXT), malloc'd. */
static char *sse_text(const char *body, int *n_events, bool *done) {
    char *out = calloc(1, strlen(body) + 1);
    *n_events = 0;
    for (const char *p = strstr(body, "data: "); p; p = strstr(p + 6, "data: ")) {
        const char *t = strstr(p, "\"text\":\"");
        const char *end = strstr(p, "\n\n");
        if (!t || (end && t > end)) continue;
        t += 8;
        size_t k = strcspn(t, "\"");
        if (!k) continue;
        strncat(out, t, k);
        (*n_events)++;
    }
    *done = strstr(body, "data: [DONE]\n\n") != NULL;
    return out;
}

static void expect_stream(const resp *r, int max_tokens) {
    ASSERT_EQ(r->status, 200);
    int n;
    bool done;
    char *text = sse_text(r->body, &n, &done);
    ASSERT_STREQ(text, WANT_TEXT);
    ASSERT_EQ(n, max_tokens); /* one event per token: every token is plain ASCII */
    ASSERT(done);
    ASSERT_STR_CONTAINS(r->body, "\"finish_reason\":\"length\"");
    ASSERT_STR_CONTAINS(r->body, "\"completion_tokens\":10,");
    free(text);
}

static void test_device(const char *model) {
    static const struct {
        const char *dev, *msg;
    } cases[] = {
        {"tpu", "--device must be cpu or cuda"},
        {"cuda", "--device cuda: "},
        {"CUDA", "--device cuda: "},
    };
    size_t n = sizeof cases / sizeof cases[0];
#ifdef SL_HAVE_CUDA
    if (sl_cuda_device_count() > 0) n = 1; /* cuda would start: not a refusal to test here */
#endif
    for (size_t i = 0; i < n; i++) {
        char cmd[512], errf[96];
        snprintf(errf, sizeof errf, "%s/device.err", tmpdir);
        snprintf(cmd, sizeof cmd, "./sluice serve --model %s --port 0 --device %s > /dev/null 2> %s", model,
                 cases[i].dev, errf);
        int st = system(cmd);
        ASSERT(WIFEXITED(st));
        ASSERT_EQ(WEXITSTATUS(st), 2);
        FILE *f = fopen(errf, "r");
        ASSERT(f);
        char buf[1024] = "";
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        buf[k] = 0;
        fclose(f);
        unlink(errf);
        ASSERT_STR_CONTAINS(buf, cases[i].msg);
    }
}

int main(void) {
    const char *model = make_model();
    test_device(model);
    srv s = start_server(model, "--fake-model", "--device", "cpu", "--max-num-seqs", "16", NULL);
    const char *body = "{\"prompt\":[40,41,42],\"max_tokens\":10,\"temperature\":0,\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true}}";
    resp r;
    post(s.port, "/v1/completions", body, NULL, &r);
    expect_stream(&r, 10);
    resp_free(&r);
    /* sampled: the peak carries all the mass, so the same text */
    post(s.port, "/v1/completions",
         "{\"prompt\":[50,60,70],\"max_tokens\":10,\"temperature\":1,\"seed\":7,\"stream\":true,"
         "\"stream_options\":{\"include_usage\":true}}",
         NULL, &r);
    expect_stream(&r, 10);
    resp_free(&r);
    /* 24 streams at once (16 running, the rest queued): each gets the whole text */
    enum { N = 24 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_to(s.port);
        ASSERT(fds[i] >= 0);
        char *raw = post_raw("/v1/completions", body, NULL);
        send_str(fds[i], raw);
        free(raw);
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(read_resp(fds[i], &r, 20000), 0);
        expect_stream(&r, 10);
        resp_free(&r);
        close(fds[i]);
    }
    ASSERT_EQ(stop_server(&s, 10000), 0);
    remove_model(model);
    printf("test_fake_model: ok\n");
    return 0;
}
