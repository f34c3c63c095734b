/* Raw-socket tests of sluice serve's HTTP layer (server/http.c): malformed requests, limits
 * and timeouts each get their exact response (or a closed connection), keep-alive,
 * pipelining, chunked bodies, Expect: 100-continue, HTTP/1.0, half-closed connections; and
 * after all of it the server still serves. The server runs as a child process (harness.h)
 * with short timeouts and a 1000-byte body limit. */
#include "tests/server/harness.h"

static int port;

/* The exact response the HTTP layer sends for its own errors, then it closes. */
static char *error_response(int status, const char *reason, const char *message, const char *code) {
    char body[512];
    if (code)
        snprintf(body, sizeof body,
                 "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"%s\"}}",
                 message, code);
    else
        snprintf(body, sizeof body,
                 "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}",
                 message);
    char *s = malloc(1024);
    snprintf(s, 1024, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             status, reason, strlen(body), body);
    return s;
}

/* Sends raw bytes; the connection must answer exactly `expected` and then close. */
static void expect_exact_then_close(const char *raw, size_t raw_len, const char *expected, int timeout_ms) {
    int fd = connect_to(port);
    ASSERT(fd >= 0);
    send_all(fd, raw, raw_len);
    bool closed;
    char *got = read_until_close(fd, timeout_ms, &closed);
    if (!closed) fprintf(stderr, "connection still open after: %.80s\n", raw);
    ASSERT(closed);
    ASSERT_STREQ(got, expected);
    free(got);
    close(fd);
}

static void test_malformed(void) {
    struct {
        const char *raw, *msg;
    } cases[] = {
        {"BLAH / HTTP/1.1\r\n\r\n", "malformed HTTP request: Invalid method encountered"},
        {"GET /health HTTP/9.9\r\n\r\n", "malformed HTTP request: Invalid HTTP version"},
        {"GET /health HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
         "malformed HTTP request: Invalid character in Content-Length"},
        {"POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         "malformed HTTP request: Invalid character in chunk size"},
        /* request smuggling: both framings */
        {"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         "malformed HTTP request: Content-Length can't be present with Transfer-Encoding"},
        {"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
         "malformed HTTP request: Duplicate Content-Length"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *want = error_response(400, "Bad Request", cases[i].msg, NULL);
        expect_exact_then_close(cases[i].raw, strlen(cases[i].raw), want, 5000);
        free(want);
    }
    /* a NUL byte in the request line */
    static const char nul[] = "GET /he\0alth HTTP/1.1\r\n\r\n";
    int fd = connect_to(port);
    send_all(fd, nul, sizeof nul - 1);
    bool closed;
    char *got = read_until_close(fd, 5000, &closed);
    ASSERT(closed);
    ASSERT(!strncmp(got, "HTTP/1.1 400 Bad Request\r\n", 26));
    free(got);
    close(fd);
}

static void test_limits(void) {
    /* headers over 16 KiB: 431 */
    size_t n = 20000;
    char *big = malloc(n + 64);
    int k = snprintf(big, 64, "GET /health HTTP/1.1\r\nX: ");
    memset(big + k, 'a', n);
    memcpy(big + k + n, "\r\n\r\n", 5);
    char *want = error_response(431, "Request Header Fields Too Large",
                                "request line and headers are larger than the limit", "request_header_fields_too_large");
    expect_exact_then_close(big, strlen(big), want, 5000);
    free(want);
    free(big);
    /* more than 100 headers: 431 */
    char many[4096];
    size_t len = (size_t)snprintf(many, sizeof many, "GET /health HTTP/1.1\r\n");
    for (int i = 0; i < 101; i++) len += (size_t)snprintf(many + len, sizeof many - len, "X%d: y\r\n", i);
    len += (size_t)snprintf(many + len, sizeof many - len, "\r\n");
    want = error_response(431, "Request Header Fields Too Large", "too many request headers",
                          "request_header_fields_too_large");
    expect_exact_then_close(many, len, want, 5000);
    free(want);
    /* a body announced over the limit (1000 bytes here): 413 at once, before the body */
    want = error_response(413, "Content Too Large", "request body is larger than the limit", "request_too_large");
    const char *cl = "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n";
    expect_exact_then_close(cl, strlen(cl), want, 5000);
    /* a chunked body that grows over the limit: 413, even with the rest still being sent */
    char chunked[4096];
    len = (size_t)snprintf(chunked, sizeof chunked, "POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        len += (size_t)snprintf(chunked + len, sizeof chunked - len, "190\r\n");
        memset(chunked + len, 'a', 400);
        len += 400;
        len += (size_t)snprintf(chunked + len, sizeof chunked - len, "\r\n");
    }
    expect_exact_then_close(chunked, len, want, 5000);
    free(want);
}

static void test_timeouts(void) {
    /* slowloris: the headers dribble in byte by byte; the 1 s header timeout still fires */
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    int fd = connect_to(port);
    ASSERT(fd >= 0);
    double t0 = now_s();
    size_t i = 0;
    bool closed = false;
    char got[1024];
    size_t gl = 0;
    got[0] = 0;
    while (!closed && now_s() - t0 < 5) {
        if (i < strlen(req) - 4) {
            if (send(fd, req + i, 1, MSG_NOSIGNAL) == 1) i++;
        }
        int r = recv_some(fd, got, sizeof got, &gl, 50);
        if (r == 1 || r == -1) closed = true;
    }
    double dt = now_s() - t0;
    char *want = error_response(408, "Request Timeout", "timed out reading the request headers", "request_timeout");
    ASSERT_STREQ(got, want);
    ASSERT(closed);
    ASSERT(dt > 0.9 && dt < 3);
    free(want);
    close(fd);
    /* headers complete, body never comes: 408 after the body timeout */
    const char *nobody = "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"pro";
    want = error_response(408, "Request Timeout", "timed out reading the request body", "request_timeout");
    t0 = now_s();
    expect_exact_then_close(nobody, strlen(nobody), want, 5000);
    ASSERT(now_s() - t0 > 0.9);
    free(want);
    /* an idle keep-alive connection is closed silently after 2 s */
    fd = connect_to(port);
    send_str(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    resp r;
    ASSERT_EQ(read_resp(fd, &r, 5000), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    t0 = now_s();
    char *rest = read_until_close(fd, 6000, &closed);
    ASSERT(closed);
    ASSERT_STREQ(rest, "");
    dt = now_s() - t0;
    ASSERT(dt > 1.5 && dt < 4);
    free(rest);
    close(fd);
}

static void test_keepalive_pipelining(void) {
    /* three requests in one write, a chunked body among them: three responses, in order */
    const char *body = "{\"prompt\":\"hello\"}";
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: first\r\n\r\n"
                     "POST /tokenize HTTP/1.1\r\nHost: x\r\nX-Request-Id: second\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\n%.5s\r\n%zx\r\n%s\r\n0\r\n\r\n"
                     "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Request-Id: third\r\n\r\n",
                     body, strlen(body) - 5, body + 5);
    int fd = connect_to(port);
    send_all(fd, req, (size_t)n);
    static char carry[1 << 16];
    size_t cl = 0;
    const char *ids[3] = {"first", "second", "third"};
    resp r[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(read_resp_carry(fd, &r[i], carry, &cl, 5000), 0);
        ASSERT_EQ(r[i].status, 200);
        char v[64];
        ASSERT_STREQ(hdr_val(&r[i], "X-Request-Id", v, sizeof v), ids[i]);
        ASSERT_STREQ(hdr_val(&r[i], "Connection", v, sizeof v), "keep-alive");
    }
    ASSERT_STREQ(r[0].body, "{\"status\":\"ok\"}");
    /* the dechunked body gives the same tokens as a plain one */
    resp plain;
    post(port, "/tokenize", body, NULL, &plain);
    ASSERT_EQ(plain.status, 200);
    ASSERT_STREQ(r[1].body, plain.body);
    ASSERT_STR_CONTAINS(r[2].body, "\"object\":\"list\"");
    for (int i = 0; i < 3; i++) resp_free(&r[i]);
    resp_free(&plain);
    /* the same connection serves again */
    send_str(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    resp again;
    ASSERT_EQ(read_resp(fd, &again, 5000), 0);
    ASSERT_EQ(again.status, 200);
    resp_free(&again);
    close(fd);
}

static void test_framing_variants(void) {
    resp r;
    char v[64];
    /* HTTP/1.0 without keep-alive: answered, then closed */
    int fd = connect_to(port);
    send_str(fd, "GET /health HTTP/1.0\r\n\r\n");
    bool closed;
    char *got = read_until_close(fd, 5000, &closed);
    ASSERT(closed);
    ASSERT(!strncmp(got, "HTTP/1.1 200 OK\r\n", 17));
    ASSERT_STR_CONTAINS(got, "\r\nConnection: close\r\n");
    ASSERT_STR_CONTAINS(got, "\r\n\r\n{\"status\":\"ok\"}");
    free(got);
    close(fd);
    /* Connection: close from an HTTP/1.1 client */
    fd = connect_to(port);
    send_str(fd, "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    got = read_until_close(fd, 5000, &closed);
    ASSERT(closed);
    ASSERT_STR_CONTAINS(got, "\r\nConnection: close\r\n");
    free(got);
    close(fd);
    /* Expect: 100-continue: the server invites the body */
    fd = connect_to(port);
    const char *body = "{\"prompt\":\"hi\"}";
    char head[256];
    snprintf(head, sizeof head,
             "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
             "Content-Length: %zu\r\n\r\n",
             strlen(body));
    send_str(fd, head);
    char buf[256];
    size_t bl = 0;
    buf[0] = 0;
    while (!strstr(buf, "\r\n\r\n")) ASSERT_EQ(recv_some(fd, buf, sizeof buf, &bl, 5000), 2);
    ASSERT_STREQ(buf, "HTTP/1.1 100 Continue\r\n\r\n");
    send_str(fd, body);
    ASSERT_EQ(read_resp(fd, &r, 5000), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "\"tokens\":[");
    resp_free(&r);
    close(fd);
    /* half-closed: the request, then the client's FIN; the answer still comes, then the close */
    fd = connect_to(port);
    send_str(fd, "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: half\r\n\r\n");
    shutdown(fd, SHUT_WR);
    got = read_until_close(fd, 5000, &closed);
    ASSERT(closed);
    ASSERT(!strncmp(got, "HTTP/1.1 200 OK\r\n", 17));
    ASSERT_STR_CONTAINS(got, "X-Request-Id: half\r\n");
    free(got);
    close(fd);
    /* HEAD: headers only */
    fd = connect_to(port);
    send_str(fd, "HEAD /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: h\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    buf[0] = 0, bl = 0;
    double end = now_s() + 5;
    while (now_s() < end && !strstr(buf, "{\"status\":\"ok\"}")) recv_some(fd, buf, sizeof buf, &bl, 100);
    ASSERT_STR_CONTAINS(buf, "Content-Length: 15\r\nX-Request-Id: h\r\nConnection: keep-alive\r\n\r\nHTTP/1.1 200 OK");
    close(fd);
    /* X-Request-Id is sanitized and bounded */
    request(port, "GET /health HTTP/1.1\r\nX-Request-Id: a b<c>\"d\r\n\r\n", &r);
    ASSERT_STREQ(hdr_val(&r, "X-Request-Id", v, sizeof v), "abcd");
    resp_free(&r);
    /* absolute-form target */
    request(port, "GET http://localhost:1/health HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
}

static void test_client_abort_midway(void) {
    /* a client that sends half a request and resets: the server carries on */
    for (int i = 0; i < 20; i++) {
        int fd = connect_to(port);
        send_str(fd, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro");
        struct linger l = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        close(fd);
    }
}

int main(void) {
    const char *model = make_model();
    srv s = start_server(model, "--header-timeout", "1", "--keep-alive-timeout", "2", "--max-body-size", "1000",
                         "--chat-template", "chatml", "--kv-cache-space", "0.05", NULL);
    port = s.port;
    test_malformed();
    test_limits();
    test_keepalive_pipelining();
    test_framing_variants();
    test_client_abort_midway();
    test_timeouts();
    /* after all of that, the server still serves */
    resp r;
    request(port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(stop_server(&s, 10000), 0);
    remove_model(model);
    printf("test_http: ok\n");
    return 0;
}
