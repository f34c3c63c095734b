/* The OpenAI API of sluice serve over raw HTTP (server/api*.c): the exact error body of
 * each failure class (a bad-input corpus of JSON bodies with their status, param and
 * message), completions and chat with and without streaming (the streamed deltas add up to
 * the non-streamed text, usage adds up, the stream ends with [DONE]), a client that goes away
 * mid-stream (its sequence is aborted at once: /metrics shows it), authentication, queue
 * admission (429 + Retry-After), and a graceful drain on SIGTERM (the stream in flight
 * finishes whole, the process exits 0). */
#include "tests/server/harness.h"

static int port;

static void expect_error(const char *path, const char *body, int status, const char *param, const char *code,
                         const char *msg_part) {
    resp r;
    post(port, path, body, NULL, &r);
    if (r.status != status) fprintf(stderr, "body %s: status %d, expected %d: %s\n", body, r.status, status, r.body);
    ASSERT_EQ(r.status, status);
    char want[256];
    if (param) snprintf(want, sizeof want, "\"param\":\"%s\"", param);
    else snprintf(want, sizeof want, "\"param\":null");
    ASSERT_STR_CONTAINS(r.body, want);
    if (code) snprintf(want, sizeof want, "\"code\":\"%s\"}}", code);
    else snprintf(want, sizeof want, "\"code\":null}}");
    ASSERT_STR_CONTAINS(r.body, want);
    ASSERT_STR_CONTAINS(r.body, msg_part);
    ASSERT(!strncmp(r.body, "{\"error\":{\"message\":\"", 21));
    resp_free(&r);
}

static void test_errors(void) {
    /* exact bodies for the classes */
    resp r;
    request(port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STREQ(r.body, "{\"error\":{\"message\":\"Not found: GET /nope\",\"type\":\"not_found_error\",\"param\":null,"
                         "\"code\":null}}");
    resp_free(&r);
    request(port, "PUT /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &r);
    ASSERT_EQ(r.status, 405);
    char v[128];
    ASSERT_STREQ(hdr_val(&r, "Allow", v, sizeof v), "POST");
    ASSERT_STREQ(r.body, "{\"error\":{\"message\":\"Method PUT is not allowed on /v1/completions\",\"type\":"
                         "\"invalid_request_error\",\"param\":null,\"code\":\"method_not_allowed\"}}");
    resp_free(&r);
    post(port, "/v1/completions", "{\"model\":\"gpt-9\",\"prompt\":\"x\"}", NULL, &r);
    ASSERT_EQ(r.status, 404);
    ASSERT_STREQ(r.body, "{\"error\":{\"message\":\"The model `gpt-9` does not exist.\",\"type\":\"not_found_error\","
                         "\"param\":\"model\",\"code\":\"model_not_found\"}}");
    resp_free(&r);
    post(port, "/v1/completions", "{\"prompt\":\"x\",\"temperature\":3}", NULL, &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STREQ(r.body, "{\"error\":{\"message\":\"'temperature' must be between 0 and 2, got 3\",\"type\":"
                         "\"invalid_request_error\",\"param\":\"temperature\",\"code\":null}}");
    resp_free(&r);
    request(port, "POST /v1/completions HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", &r);
    ASSERT_EQ(r.status, 400);
    ASSERT_STR_CONTAINS(r.body, "only 'application/json' is allowed");
    resp_free(&r);

    /* the bad-input corpus: body → status, param, code, part of the message */
    struct {
        const char *path, *body;
        int status;
        const char *param, *code, *msg;
    } bad[] = {
        {"/v1/completions", "{\"prompt\":", 400, NULL, NULL, "not valid JSON (at byte 9: ':')"},
        {"/v1/completions", "[1,2]", 400, NULL, NULL, "must be a JSON object"},
        {"/v1/completions", "{\"prompt\":\"x\"} trailing", 400, NULL, NULL, "not valid JSON"},
        {"/v1/completions", "{\"prompt\":\"\xff\xfe\"}", 400, NULL, NULL, "not valid UTF-8 (byte 11)"},
        {"/v1/completions", "{\"prompt\":\"\\ud800\"}", 400, NULL, NULL, "not valid JSON"},
        {"/v1/completions", "{}", 400, "prompt", NULL, "'prompt' is required"},
        {"/v1/completions", "{\"prompt\":\"\"}", 400, "prompt", NULL, "must not be an empty string"},
        {"/v1/completions", "{\"prompt\":[]}", 400, "prompt", NULL, "must not be empty"},
        {"/v1/completions", "{\"prompt\":[1,99999]}", 400, "prompt", NULL, "token ids must be integers in [0, 300)"},
        {"/v1/completions", "{\"prompt\":[1,2.5]}", 400, "prompt", NULL, "token ids must be integers"},
        {"/v1/completions", "{\"prompt\":[\"a\",3]}", 400, "prompt", NULL, "must be a string, an array of token ids"},
        {"/v1/completions", "{\"prompt\":{}}", 400, "prompt", NULL, "must be a string"},
        {"/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens", NULL, "must be between 1 and"},
        {"/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":\"5\"}", 400, "max_tokens", NULL, "must be an integer"},
        {"/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1.5}", 400, "max_tokens", NULL, "must be an integer"},
        {"/v1/completions", "{\"prompt\":\"x\",\"top_p\":0}", 400, "top_p", NULL, "must be in (0, 1]"},
        {"/v1/completions", "{\"prompt\":\"x\",\"top_k\":-2}", 400, "top_k", NULL, "between -1 and"},
        {"/v1/completions", "{\"prompt\":\"x\",\"n\":0}", 400, "n", NULL, "between 1 and 128"},
        {"/v1/completions", "{\"prompt\":\"x\",\"n\":2,\"temperature\":0}", 400, "n", NULL, "greedy"},
        {"/v1/completions", "{\"prompt\":\"x\",\"presence_penalty\":-3}", 400, "presence_penalty", NULL, "between -2"},
        {"/v1/completions", "{\"prompt\":\"x\",\"repetition_penalty\":0}", 400, "repetition_penalty", NULL, "> 0"},
        {"/v1/completions", "{\"prompt\":\"x\",\"logprobs\":21}", 400, "logprobs", NULL, "between 0 and 20"},
        {"/v1/completions", "{\"prompt\":\"x\",\"echo\":true,\"logprobs\":1}", 400, "echo", NULL, "not supported"},
        {"/v1/completions", "{\"prompt\":\"x\",\"suffix\":\"y\"}", 400, "suffix", NULL, "suffix is not currently supported"},
        {"/v1/completions", "{\"prompt\":\"x\",\"best_of\":2}", 400, "best_of", NULL, "not supported"},
        {"/v1/completions", "{\"prompt\":\"x\",\"stop\":[\"\"]}", 400, "stop", NULL, "1 to 256 bytes"},
        {"/v1/completions", "{\"prompt\":\"x\",\"stop\":5}", 400, "stop", NULL, "string or an array of strings"},
        {"/v1/completions", "{\"prompt\":\"x\",\"logit_bias\":{\"abc\":1}}", 400, "logit_bias", NULL, "token ids"},
        {"/v1/completions", "{\"prompt\":\"x\",\"logit_bias\":{\"5\":1,\"05\":2}}", 400, "logit_bias", NULL,
         "token 5 is listed twice"},
        {"/v1/completions", "{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true}}", 400, "stream_options", NULL,
         "only allowed when 'stream' is true"},
        {"/v1/completions", "{\"prompt\":\"x\",\"stream\":\"yes\"}", 400, "stream", NULL, "must be a boolean"},
        {"/v1/completions", "{\"prompt\":[1,2,3],\"max_tokens\":250}", 400, "input_tokens", "context_length_exceeded",
         "This model's maximum context length is 252 tokens. However, you requested 250 output tokens and your "
         "prompt contains at least 3 input tokens, for a total of at least 253 tokens. Please reduce the length of "
         "the input prompt or the number of requested output tokens. (parameter=input_tokens, value=3)"},
        {"/v1/chat/completions", "{\"messages\":[]}", 400, "messages", NULL, "non-empty array"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400, "messages", NULL,
         "'messages[0].role' must be"},
        {"/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
         400, "messages", NULL, "only text parts"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 400,
         "top_logprobs", NULL, "needs 'logprobs'"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}",
         400, "tools", NULL, "not supported"},
        {"/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}", 400,
         "response_format", NULL, "not supported"},
        {"/detokenize", "{\"tokens\":[1,300]}", 400, "tokens", NULL, "'tokens[1]' is not a token id"},
        {"/tokenize", "{\"prompt\":5}", 400, NULL, NULL, "'prompt' must be a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(bad[i].path, bad[i].body, bad[i].status, bad[i].param, bad[i].code, bad[i].msg);
    /* a prompt over 16 KiB is tokenized in the thread pool; here it is too long for the model */
    size_t n = 20000;
    char *big = malloc(n + 64);
    int k = snprintf(big, 64, "{\"prompt\":\"");
    memset(big + k, 'a', n);
    snprintf(big + k + n, 64, "\",\"max_tokens\":2}");
    expect_error("/v1/completions", big, 400, "input_tokens", "context_length_exceeded",
                 "This model's maximum context length is 252 tokens. However, you requested 2 output tokens and your "
                 "prompt contains at least 20004 input tokens");
    free(big);
}

/* Concatenates the "text" (completions) or delta "content" (chat) of each SSE event; checks
 * the framing and counts chunks with choices. Returns the text (malloc'd). */
static char *sse_text(const char *body, bool chat, int *n_events, bool *saw_usage, bool *saw_role) {
    size_t cap = strlen(body) + 1, n = 0;
    char *out = malloc(cap);
    out[0] = 0;
    *n_events = 0;
    *saw_usage = *saw_role = false;
    const char *p = body;
    const char *key = chat ? "\"delta\":{\"content\":\"" : "\"text\":\"";
    bool done = false;
    while (*p) {
        ASSERT(!strncmp(p, "data: ", 6));
        ASSERT(!done);
        const char *end = strstr(p, "\n\n");
        ASSERT(end);
        if (!strncmp(p, "data: [DONE]\n\n", 14)) done = true;
        else {
            if (strstr(p, "\"choices\":[]") && strstr(p, "\"usage\":{") && strstr(p, "\"usage\":{") < end)
                *saw_usage = true;
            const char *t = strstr(p, key);
            if (strstr(p, "\"role\":\"assistant\"") && strstr(p, "\"role\":\"assistant\"") < end) *saw_role = true;
            if (t && t < end) {
                t += strlen(key);
                while (*t != '"') {
                    if (*t == '\\') { /* keep escapes as they are: compared with JSON text below */
                        out[n++] = *t++;
                    }
                    out[n++] = *t++;
                }
                out[n] = 0;
            }
            if (!strstr(p, "\"choices\":[]") || strstr(p, "\"choices\":[]") > end) (*n_events)++;
        }
        p = end + 2;
    }
    ASSERT(done);
    return out;
}

/* The JSON-escaped value of the first "key":"..." in s (malloc'd). */
static char *json_field(const char *s, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":\"", key);
    const char *t = strstr(s, k);
    ASSERT(t);
    t += strlen(k);
    const char *e = t;
    while (*e != '"') e += *e == '\\' ? 2 : 1;
    char *out = malloc((size_t)(e - t) + 1);
    memcpy(out, t, (size_t)(e - t));
    out[e - t] = 0;
    return out;
}

static int json_int(const char *s, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *t = strstr(s, k);
    ASSERT(t);
    return atoi(t + strlen(k));
}

static void test_generation(void) {
    /* greedy: the same text streamed and not streamed; usage adds up */
    for (int chat = 0; chat < 2; chat++) {
        const char *path = chat ? "/v1/chat/completions" : "/v1/completions";
        const char *in = chat ? "\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":"
                                "[{\"type\":\"text\",\"text\":\"hello\"}]}]"
                              : "\"prompt\":\"hello there\"";
        char body[512];
        snprintf(body, sizeof body, "{%s,\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true}", in);
        resp full;
        post(port, path, body, NULL, &full);
        ASSERT_EQ(full.status, 200);
        ASSERT_STR_CONTAINS(full.body, chat ? "\"object\":\"chat.completion\"" : "\"object\":\"text_completion\"");
        ASSERT_STR_CONTAINS(full.body, "\"finish_reason\":\"length\"");
        ASSERT_EQ(json_int(full.body, "completion_tokens"), 12);
        int P = json_int(full.body, "prompt_tokens");
        ASSERT(P > 0);
        ASSERT_EQ(json_int(full.body, "total_tokens"), P + 12);
        ASSERT_STR_CONTAINS(full.body, "\"prompt_tokens_details\":{\"cached_tokens\":");
        char *want = json_field(full.body, chat ? "content" : "text");
        snprintf(body, sizeof body,
                 "{%s,\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true,\"stream\":true,"
                 "\"stream_options\":{\"include_usage\":true}}",
                 in);
        resp st;
        post(port, path, body, NULL, &st);
        ASSERT_EQ(st.status, 200);
        char v[64];
        ASSERT_STREQ(hdr_val(&st, "Content-Type", v, sizeof v), "text/event-stream; charset=utf-8");
        ASSERT_STREQ(hdr_val(&st, "Transfer-Encoding", v, sizeof v), "chunked");
        int n_events;
        bool usage, role;
        char *got = sse_text(st.body, chat, &n_events, &usage, &role);
        ASSERT_STREQ(got, want);
        ASSERT(usage);
        ASSERT(role == (bool)chat);
        ASSERT(n_events >= 2);
        ASSERT_STR_CONTAINS(st.body, "\"usage\":null");
        ASSERT_STR_CONTAINS(st.body, "\"finish_reason\":\"length\"");
        /* the cached prompt: the second identical prompt hits the prefix cache (full blocks) */
        if (P >= 4) ASSERT(json_int(strstr(st.body, "\"choices\":[],"), "cached_tokens") > 0);
        free(got);
        free(want);
        resp_free(&st);
        resp_free(&full);
    }
    /* several prompts and n: choices indexed prompt * n + j, token-id prompts, logprobs */
    resp r;
    post(port, "/v1/completions",
         "{\"prompt\":[[5,6,7],[8,9]],\"n\":2,\"max_tokens\":3,\"temperature\":0.7,\"seed\":1,\"logprobs\":2,"
         "\"ignore_eos\":true}",
         NULL, &r);
    ASSERT_EQ(r.status, 200);
    for (int i = 0; i < 4; i++) {
        char k[32];
        snprintf(k, sizeof k, "{\"index\":%d,", i);
        ASSERT_STR_CONTAINS(r.body, k);
    }
    ASSERT_STR_CONTAINS(r.body, "\"token_logprobs\":[");
    ASSERT_STR_CONTAINS(r.body, "\"text_offset\":[0,");
    ASSERT_EQ(json_int(r.body, "prompt_tokens"), 5);
    ASSERT_EQ(json_int(r.body, "completion_tokens"), 12);
    resp_free(&r);
    /* a stop string ends the text (found by asking for the greedy text first) */
    post(port, "/v1/completions", "{\"prompt\":[10,11,12],\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true}", NULL,
         &r);
    char *text = json_field(r.body, "text");
    resp_free(&r);
    /* take a piece of plain ASCII from the middle as the stop string */
    size_t tl = strlen(text), at = 0;
    while (at < tl && !(text[at] >= 'a' && text[at] <= 'z')) at += text[at] != '\\' ? 1 : text[at + 1] == 'u' ? 6 : 2;
    if (at < tl && at > 0) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"prompt\":[10,11,12],\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true,\"stop\":\"%c\"}",
                 text[at]);
        post(port, "/v1/completions", body, NULL, &r);
        ASSERT_EQ(r.status, 200);
        char *cut = json_field(r.body, "text");
        ASSERT(strlen(cut) <= at);
        ASSERT(!strncmp(cut, text, strlen(cut)));
        ASSERT_STR_CONTAINS(r.body, "\"finish_reason\":\"stop\"");
        char sr[32];
        snprintf(sr, sizeof sr, "\"stop_reason\":\"%c\"", text[at]);
        ASSERT_STR_CONTAINS(r.body, sr);
        free(cut);
        resp_free(&r);
    }
    free(text);
    /* tokenize / detokenize round trip, and the chat form */
    post(port, "/tokenize", "{\"prompt\":\"abc\",\"add_special_tokens\":false,\"return_token_strs\":true}", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "\"max_model_len\":252");
    ASSERT_STR_CONTAINS(r.body, "\"token_strs\":[");
    const char *toks = strstr(r.body, "\"tokens\":");
    char det[256];
    snprintf(det, sizeof det, "{%.*s}", (int)(strchr(toks, ']') - toks + 1), toks);
    resp_free(&r);
    post(port, "/detokenize", det, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "abc\"}"); /* the toy vocabulary keeps SentencePiece's "▁" as bytes */
    resp_free(&r);
    post(port, "/tokenize", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT(json_int(r.body, "count") > 5);
    resp_free(&r);
    request(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_STR_CONTAINS(r.body, "{\"object\":\"list\",\"data\":[{\"id\":\"tiny\",\"object\":\"model\",\"created\":");
    ASSERT_STR_CONTAINS(r.body, "\"owned_by\":\"sluice\",\"root\":\"");
    ASSERT_STR_CONTAINS(r.body, "\"max_model_len\":252}]}");
    resp_free(&r);
}

/* The value of a metric sample line that starts with prefix. */
static double metric(int p, const char *prefix) {
    resp r;
    request(p, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    const char *t = strstr(r.body, prefix);
    if (!t) fprintf(stderr, "no metric %s\n", prefix);
    ASSERT(t);
    double v = atof(strchr(t, ' ') + 1);
    resp_free(&r);
    return v;
}

/* A client that disconnects mid-stream aborts its sequence at once. The tiny model can finish
 * all 240 tokens before the server reads the close, so an attempt where the request ended with
 * "length" proves nothing and is repeated; one where it was aborted is the pass. */
static void test_disconnect(void) {
    const char *abort_m = "sluice:request_success_total{engine=\"0\",model_name=\"tiny\",finished_reason=\"abort\"}";
    const char *length_m = "sluice:request_success_total{engine=\"0\",model_name=\"tiny\",finished_reason=\"length\"}";
    int aborted = 0;
    for (int attempt = 0; attempt < 20 && !aborted; attempt++) {
        double aborted0 = metric(port, abort_m), length0 = metric(port, length_m);
        int fd = connect_to(port);
        char *raw = post_raw("/v1/completions",
                             "{\"prompt\":\"go\",\"max_tokens\":240,\"ignore_eos\":true,\"stream\":true}", NULL);
        send_str(fd, raw);
        free(raw);
        char buf[8192];
        size_t bl = 0;
        buf[0] = 0;
        double end = now_s() + 10;
        while (!strstr(buf, "data: ") && now_s() < end) recv_some(fd, buf, sizeof buf, &bl, 100);
        ASSERT_STR_CONTAINS(buf, "HTTP/1.1 200 OK");
        close(fd);
        double t0 = now_s();
        for (;;) {
            if (metric(port, abort_m) >= aborted0 + 1) {
                aborted = 1;
                break;
            }
            if (metric(port, length_m) >= length0 + 1) break; /* finished before the close: retry */
            ASSERT(now_s() - t0 < 5);
            sleep_ms(10);
        }
        ASSERT_EQ(metric(port, "sluice:num_requests_running{"), 0);
        ASSERT_EQ(metric(port, "sluice:kv_cache_usage_perc{"), 0);
    }
    ASSERT(aborted);
}

static void test_metrics_format(void) {
    resp r;
    request(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    char v[128];
    ASSERT_STREQ(hdr_val(&r, "Content-Type", v, sizeof v), "text/plain; version=0.0.4; charset=utf-8");
    const char *names[] = {"# TYPE sluice:num_requests_running gauge", "# TYPE sluice:prompt_tokens_total counter",
                           "# TYPE sluice:time_to_first_token_seconds histogram",
                           "sluice:time_to_first_token_seconds_bucket{engine=\"0\",model_name=\"tiny\",le=\"0.001\"}",
                           "sluice:e2e_request_latency_seconds_bucket{engine=\"0\",model_name=\"tiny\",le=\"+Inf\"}",
                           "sluice:inter_token_latency_seconds_count{", "sluice:request_queue_time_seconds_sum{",
                           "sluice:request_prompt_tokens_bucket{engine=\"0\",model_name=\"tiny\",le=\"200.0\"}",
                           "sluice:prefix_cache_hits_total{", "sluice:generation_tokens_total{",
                           "sluice:request_rejected_total{engine=\"0\",model_name=\"tiny\",reason=\"invalid_request_error\"}"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) ASSERT_STR_CONTAINS(r.body, names[i]);
    /* every non-comment line is "name{labels} value" */
    for (char *line = r.body; *line;) {
        char *nl = strchr(line, '\n');
        ASSERT(nl);
        *nl = 0;
        if (line[0] != '#') {
            ASSERT(!strncmp(line, "sluice:", 7));
            char *sp = strrchr(line, ' ');
            ASSERT(sp && sp[-1] == '}');
            char *e;
            strtod(sp + 1, &e);
            ASSERT(*e == 0 && e != sp + 1);
        }
        line = nl + 1;
    }
    resp_free(&r);
}

static void test_auth_and_queue(const char *model) {
    srv s = start_server(model, "--api-key", "s3cret", "--max-num-seqs", "1", "--max-queue", "1",
                         "--served-model-name", "tiny", "--chat-template", "chatml", "--kv-cache-space", "0.05", NULL);
    resp r;
    request(s.port, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 401);
    ASSERT_STREQ(r.body, "{\"error\":{\"message\":\"Incorrect API key provided.\",\"type\":\"authentication_error\","
                         "\"param\":null,\"code\":\"invalid_api_key\"}}");
    resp_free(&r);
    request(s.port, "GET /v1/models HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n", &r);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    request(s.port, "GET /nope HTTP/1.1\r\n\r\n", &r); /* auth before the route */
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    request(s.port, "GET /v1/models HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    request(s.port, "GET /health HTTP/1.1\r\n\r\n", &r); /* /health needs no key */
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    /* queue: 1 running + 1 waiting sequence at most; n = 3 is refused with 429 */
    post(s.port, "/v1/completions", "{\"prompt\":\"x\",\"n\":3,\"temperature\":1}", "Authorization: Bearer s3cret\r\n", &r);
    ASSERT_EQ(r.status, 429);
    char v[64];
    ASSERT_STREQ(hdr_val(&r, "Retry-After", v, sizeof v), "1");
    ASSERT_STR_CONTAINS(r.body, "\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}");
    resp_free(&r);
    /* drain: a stream in flight at SIGTERM finishes whole; then the process exits 0 */
    int fd = connect_to(s.port);
    char *raw = post_raw("/v1/completions",
                         "{\"prompt\":\"go\",\"max_tokens\":60,\"ignore_eos\":true,\"stream\":true}",
                         "Authorization: Bearer s3cret\r\n");
    send_str(fd, raw);
    free(raw);
    char buf[65536];
    size_t bl = 0;
    buf[0] = 0;
    double end = now_s() + 10;
    while (!strstr(buf, "data: ") && now_s() < end) recv_some(fd, buf, sizeof buf, &bl, 100);
    kill(s.pid, SIGTERM);
    /* /health on a new connection: refused (listener closed) or 503 */
    sleep_ms(50);
    int h = connect_to(s.port);
    if (h >= 0) {
        send_str(h, "GET /health HTTP/1.1\r\n\r\n");
        resp hr;
        if (read_resp(h, &hr, 2000) == 0) {
            ASSERT_EQ(hr.status, 503);
            resp_free(&hr);
        }
        close(h);
    }
    bool closed = false;
    while (!closed && now_s() < end + 10) {
        int rr = recv_some(fd, buf, sizeof buf, &bl, 200);
        closed = rr == 1 || rr == -1;
    }
    ASSERT(closed);
    ASSERT_STR_CONTAINS(buf, "\"finish_reason\":\"length\"");
    ASSERT_STR_CONTAINS(buf, "data: [DONE]\n\n\r\n0\r\n\r\n");
    close(fd);
    ASSERT_EQ(wait_server(&s, 10000), 0);
}

int main(void) {
    const char *model = make_model();
    /* --max-model-len 252 (below the model's 256), small blocks so that prompts fill some */
    srv s = start_server(model, "--served-model-name", "tiny", "--chat-template", "chatml", "--max-model-len", "252",
                         "--block-size", "4", "--kv-cache-space", "0.05", NULL);
    port = s.port;
    test_errors();
    test_generation();
    test_disconnect();
    test_metrics_format();
    ASSERT_EQ(stop_server(&s, 10000), 0);
    test_auth_and_queue(model);
    remove_model(model);
    printf("test_api: ok\n");
    return 0;
}
