/* Load test of sluice serve (issue #5): rounds of 200 concurrent streaming clients, completions
 * and chat mixed, driven by one poll loop over non-blocking sockets. A quarter of the clients
 * disconnect at a random point: right after sending the request (before the first response
 * byte), mid-stream after a random number of events (these ask for long outputs, so that the
 * server is still generating when they leave), or right at the end (after the finish chunk,
 * before [DONE]). Those that leave after the first byte close with a reset (SO_LINGER 0) or a
 * FIN, half each; those that leave before it close with a FIN (request bytes followed by a reset
 * can reach the server as just the reset, and then there is no request to count).
 *
 * Asserted, per round:
 *  - every client that stays gets 200 and a whole, well-formed stream (sse_check.h: each
 *    `data:` line valid JSON, one choice finishing once, completion_tokens = max_tokens on
 *    "length", ≤ max_tokens on "stop", then usage, then `data: [DONE]`): no request lost,
 *    no error, no 429 (--max-queue is big enough that nothing may be rejected);
 *  - the engine finished every request exactly once: the round's delta of
 *    sluice:request_success_total over stop + length + abort is the number of clients, and at
 *    least one of them is an abort (a server that ignores disconnects runs them all to the end);
 *  - afterwards sluice:num_requests_running = num_requests_waiting = 0 and
 *    sluice:kv_cache_usage_perc is exactly 0. The server computes that gauge as
 *    (blocks - free - cached-unreferenced) / blocks (server/api.c h_metrics), so prefix-cache
 *    blocks that no request holds do not count, and 0 is the strongest true statement: no block
 *    is referenced by any sequence.
 * Across rounds: memory is back to baseline. The baseline is the server's RSS (/proc/PID/status
 * VmRSS, 200 ms after a round's last client is done) after WARM_ROUNDS warm-up rounds of the same
 * shape; after each of the LOAD_ROUNDS rounds that follow it must stay within RSS_MARGIN_KB
 * (4 MiB) of it. Why several warm-up rounds and why 4 MiB: each connection gets a 64 KiB read
 * buffer and a 16 KiB header buffer (server/http.c) of which a request touches only the first
 * page or two, so with 200 connections the heap grows to ~19 MiB in round 1 while only ~4 MiB of
 * it is resident; later rounds place those buffers elsewhere in the same heap and touch pages
 * that were never touched before. RSS therefore creeps up towards the heap's size, fast at first
 * and then slower (measured here: +3.5, +2, +2, ... MiB after rounds 2, 3, 4, then about
 * +0.25 MiB a round after round 10; 1.0 to 1.25 MiB over rounds 11-15 in three runs, one on a
 * busy machine), with no growth of the heap mapping itself. So a second, sharper check goes
 * with it: VmData (the private writable mappings: the heap's extent, malloc's arenas) after each
 * load round stays within DATA_MARGIN_KB (2 MiB) of its value after the warm-up. Measured: it
 * grows by ~1 MiB over the warm-up and by 0 to 4 KiB over the 5 load rounds. A leak grows
 * linearly: 5 load rounds are 1000 requests and 1000 connections, so a leaked read buffer per
 * connection (64 KiB, mostly untouched) adds 12 MiB of VmData a round, and leaking 4 KiB of
 * written memory per request goes over the RSS margin. (Checked by leaking the read buffer of
 * connections the client closed: VmData +12 MiB a round, RSS +0.9 MiB a round, test fails.)
 * Smaller leaks are LeakSanitizer's: sanitizer builds
 * skip both memory checks (ASan's quarantine holds freed memory) and rely on
 * LeakSanitizer at the server's exit, whose status must be 0. */
#include "tests/server/harness.h"
#include "tests/server/sse_check.h"

enum { RSS_MARGIN_KB = 4096, DATA_MARGIN_KB = 2048 };
/* warm-up rounds, then measured rounds; sanitizer builds check no RSS and run fewer */
#if SANITIZED
enum { WARM_ROUNDS = 1, LOAD_ROUNDS = 2 };
#else
enum { WARM_ROUNDS = 10, LOAD_ROUNDS = 5 };
#endif
enum { N_CLIENTS = 200, ROUND_TIMEOUT_S = 90 };


enum { STAY, LEAVE_BEFORE_FIRST_BYTE, LEAVE_MID, LEAVE_AT_END };

typedef struct client {
    int fd;
    int idx;
    bool chat, ignore_eos, http10, rst;
    int max_tokens;
    int mode;
    int leave_after;             /* LEAVE_MID: events to read first */
    bool active;
    bool left;                   /* disconnected on purpose */
    bool closed;                 /* the server closed (or reset) */
    /* what came: raw bytes, the head, the dechunked body */
    char *raw;
    size_t raw_len, raw_cap, raw_used;
    int status;
    bool have_head, chunked, body_done;
    char *body;
    size_t body_len, body_cap;
} client;

static uint64_t rng_state;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static void body_append(client *c, const char *d, size_t n) {
    if (c->body_len + n + 1 > c->body_cap) {
        c->body_cap = (c->body_len + n + 1) * 2;
        c->body = realloc(c->body, c->body_cap);
    }
    memcpy(c->body + c->body_len, d, n);
    c->body_len += n;
    c->body[c->body_len] = 0;
}

/* Parses what is new in raw: the head once, then chunks (or, for HTTP/1.0, everything). */
static void parse(client *c) {
    if (!c->have_head) {
        char *e = strstr(c->raw, "\r\n\r\n");
        if (!e) return;
        c->have_head = true;
        c->status = atoi(c->raw + 9);
        *e = 0;
        c->chunked = strcasestr(c->raw, "\r\nTransfer-Encoding: chunked") != NULL;
        *e = '\r';
        c->raw_used = (size_t)(e + 4 - c->raw);
    }
    if (!c->chunked) {
        body_append(c, c->raw + c->raw_used, c->raw_len - c->raw_used);
        c->raw_used = c->raw_len;
        return;
    }
    while (!c->body_done) {
        char *b = c->raw + c->raw_used;
        char *eol = strstr(b, "\r\n");
        if (!eol) return;
        size_t sz = strtoul(b, NULL, 16);
        size_t need = (size_t)(eol + 2 - b) + sz + 2;
        if (c->raw_len - c->raw_used < need) return;
        body_append(c, eol + 2, sz);
        c->raw_used += need;
        if (sz == 0) c->body_done = true;
    }
}

static int count_events(const client *c) {
    int n = 0;
    for (const char *p = c->body; p && (p = strstr(p, "\n\n")); p += 2) n++;
    return n;
}

static void leave(client *c) {
    if (c->rst) {
        struct linger l = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(c->fd);
    c->fd = -1;
    c->active = false;
    c->left = true;
}

static void client_start(client *c, int port) {
    char body[1024];
    const char *so = "\"stream\":true,\"stream_options\":{\"include_usage\":true}";
    char opt[128];
    snprintf(opt, sizeof opt, "\"max_tokens\":%d,\"temperature\":%s,\"seed\":%d%s", c->max_tokens,
             c->idx % 3 ? "0.8" : "0", c->idx, c->ignore_eos ? ",\"ignore_eos\":true" : "");
    if (c->chat)
        snprintf(body, sizeof body,
                 "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"you are terse\"},"
                 "{\"role\":\"user\",\"content\":\"question %d: hello there\"}],%s,%s}",
                 c->idx % 17, opt, so);
    else if (c->idx % 4 == 0)
        snprintf(body, sizeof body, "{\"model\":\"tiny\",\"prompt\":[1,2,3,4,5,6,7,%d],%s,%s}", 10 + c->idx % 50, opt, so);
    else
        snprintf(body, sizeof body, "{\"model\":\"tiny\",\"prompt\":\"the quick brown fox %d jumps\",%s,%s}",
                 c->idx % 23, opt, so);
    char req[1600];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.%d\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     c->chat ? "/v1/chat/completions" : "/v1/completions", c->http10 ? 0 : 1, strlen(body), body);
    c->fd = connect_to(port);
    ASSERT(c->fd >= 0);
    send_all(c->fd, req, (size_t)n); /* small: the socket buffer takes it whole */
    ASSERT_EQ(fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK), 0);
    c->active = true;
    c->raw_cap = 1 << 16;
    c->raw = malloc(c->raw_cap);
    c->raw[0] = 0;
    if (c->mode == LEAVE_BEFORE_FIRST_BYTE) leave(c);
}

/* Reads what is there; handles leaving. */
static void client_read(client *c) {
    for (;;) {
        if (c->raw_cap - c->raw_len < 4096) c->raw = realloc(c->raw, c->raw_cap *= 2);
        ssize_t k = recv(c->fd, c->raw + c->raw_len, c->raw_cap - c->raw_len - 1, 0);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            c->closed = true;
            close(c->fd);
            c->fd = -1;
            c->active = false;
            return;
        }
        c->raw_len += (size_t)k;
        c->raw[c->raw_len] = 0;
        parse(c);
        if (c->mode == LEAVE_MID && count_events(c) >= c->leave_after) {
            leave(c);
            return;
        }
        if (c->mode == LEAVE_AT_END && c->body && strstr(c->body, "\"finish_reason\":\"")) {
            leave(c);
            return;
        }
        if (c->body_done) { /* whole (HTTP/1.1): we close the keep-alive connection */
            close(c->fd);
            c->fd = -1;
            c->active = false;
            return;
        }
    }
}

typedef struct metrics {
    double running, waiting, kv;
    double fin[4];               /* stop, length, abort, error */
    double rejected;
    double gen_tokens;
} metrics;

static double metric(const char *body, const char *name, const char *label) {
    char key[160];
    snprintf(key, sizeof key, "\n%s{", name);
    for (const char *p = strstr(body, key); p; p = strstr(p + 1, key)) {
        const char *eol = strchr(p + 1, '\n');
        const char *close = strchr(p, '}');
        if (!close || (eol && close > eol)) continue;
        if (label && !(strstr(p, label) && strstr(p, label) < close)) continue;
        return strtod(close + 1, NULL);
    }
    if (label) return 0; /* a counter with no samples of this label yet */
    fprintf(stderr, "metric %s missing from /metrics:\n%s\n", name, body);
    ASSERT(0);
    return 0;
}

static metrics get_metrics(int port) {
    resp r;
    request(port, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    ASSERT_EQ(r.status, 200);
    metrics m;
    m.running = metric(r.body, "sluice:num_requests_running", NULL);
    m.waiting = metric(r.body, "sluice:num_requests_waiting", NULL);
    m.kv = metric(r.body, "sluice:kv_cache_usage_perc", NULL);
    const char *reasons[4] = {"\"stop\"", "\"length\"", "\"abort\"", "\"error\""};
    for (int i = 0; i < 4; i++) m.fin[i] = metric(r.body, "sluice:request_success_total", reasons[i]);
    m.rejected = 0;
    for (const char *p = strstr(r.body, "\nsluice:request_rejected_total{"); p;
         p = strstr(p + 1, "\nsluice:request_rejected_total{"))
        m.rejected += strtod(strchr(p, '}') + 1, NULL);
    m.gen_tokens = metric(r.body, "sluice:generation_tokens_total", NULL);
    resp_free(&r);
    return m;
}

/* A field of /proc/PID/status in KiB (VmRSS, VmData). */
static long status_kb(pid_t pid, const char *field) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    ASSERT(f);
    long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') kb = atol(line + n + 1);
    fclose(f);
    ASSERT(kb > 0);
    return kb;
}

/* Waits until nothing runs or waits (aborts land one engine step after the disconnect). */
/* The metrics once the engine is idle and n requests finished since `before` (or after 30 s).
 * Idle alone is not enough: a request the server has read but not yet handed to the engine (a
 * client that left right after sending it, its prompt still being tokenized) is neither running
 * nor waiting, and finishes (aborted) a moment later. */
static metrics settle(int port, const metrics *before, int n) {
    double end = now_s() + 30;
    metrics m;
    for (;;) {
        m = get_metrics(port);
        double fin = 0;
        for (int i = 0; i < 4; i++) fin += m.fin[i] - before->fin[i];
        if ((m.running == 0 && m.waiting == 0 && fin >= n) || now_s() > end) break;
        sleep_ms(50);
    }
    return m;
}

static void run_round(int port, int round) {
    static client cl[N_CLIENTS];
    rng_state = 0x9e3779b97f4a7c15ull * (uint64_t)(round + 1);
    metrics before = get_metrics(port);
    int n_leave = 0, n_stay = 0;
    double t0 = now_s();
    for (int i = 0; i < N_CLIENTS; i++) {
        client *c = &cl[i];
        memset(c, 0, sizeof *c);
        c->idx = i + round * N_CLIENTS;
        c->fd = -1;
        c->chat = (i % 2) == 1;
        c->ignore_eos = (i % 8) != 5;
        c->http10 = (i % 10) == 4;
        c->max_tokens = 1 + (int)(rnd() % 24);
        c->mode = STAY;
        if (i % 4 == 3) {
            c->mode = LEAVE_BEFORE_FIRST_BYTE + (int)((i / 4) % 3);
            /* a reset only once the request is in: data then RST may reach the server as just RST */
            c->rst = c->mode != LEAVE_BEFORE_FIRST_BYTE && (i / 12) % 2;
            n_leave++;
            if (c->mode == LEAVE_MID) {
                c->max_tokens = 120; /* still generating when the client leaves */
                c->ignore_eos = true;
                c->leave_after = 1 + (int)(rnd() % 6);
            }
        } else {
            n_stay++;
        }
    }
    /* all of them connect and send before any reads: 200 requests in flight at once */
    for (int i = 0; i < N_CLIENTS; i++) client_start(&cl[i], port);
    struct pollfd pf[N_CLIENTS];
    int map[N_CLIENTS];
    for (;;) {
        int n = 0;
        for (int i = 0; i < N_CLIENTS; i++)
            if (cl[i].active) {
                pf[n] = (struct pollfd){.fd = cl[i].fd, .events = POLLIN};
                map[n++] = i;
            }
        if (n == 0) break;
        if (now_s() - t0 > ROUND_TIMEOUT_S) {
            fprintf(stderr, "round %d: %d clients still waiting after %d s, e.g. client %d (%s, max_tokens %d):\n%s\n",
                    round, n, ROUND_TIMEOUT_S, cl[map[0]].idx, cl[map[0]].chat ? "chat" : "completions",
                    cl[map[0]].max_tokens, cl[map[0]].raw);
            ASSERT(0);
        }
        int r = poll(pf, (nfds_t)n, 1000);
        ASSERT(r >= 0 || errno == EINTR);
        for (int k = 0; k < n; k++)
            if (pf[k].revents) client_read(&cl[map[k]]);
    }
    double dt = now_s() - t0;
    /* every client that stayed: 200 and a whole stream */
    int n_tokens_asked = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        client *c = &cl[i];
        n_tokens_asked += c->max_tokens;
        if (c->mode != STAY) continue;
        if (c->status != 200 || (!c->http10 && !c->body_done) || !c->body) {
            fprintf(stderr, "round %d client %d (%s, HTTP/1.%d): status %d, whole %d, response:\n%s\n", round, c->idx,
                    c->chat ? "chat" : "completions", c->http10 ? 0 : 1, c->status, c->body_done, c->raw);
            ASSERT(0);
        }
        const char *why = sse_check(c->body, c->chat, c->max_tokens, c->ignore_eos, NULL);
        if (why) {
            fprintf(stderr, "round %d client %d (%s, max_tokens %d): %s\nbody:\n%s\n", round, c->idx,
                    c->chat ? "chat" : "completions", c->max_tokens, why, c->body);
            ASSERT(0);
        }
    }
    metrics after = settle(port, &before, N_CLIENTS);
    double d_fin[4];
    for (int i = 0; i < 4; i++) d_fin[i] = after.fin[i] - before.fin[i];
    printf("round %d: %d clients (%d stay, %d leave) in %.1f s; finished stop %.0f length %.0f abort %.0f error %.0f; "
           "%.0f tokens generated of %d asked\n",
           round, N_CLIENTS, n_stay, n_leave, dt, d_fin[0], d_fin[1], d_fin[2], d_fin[3],
           after.gen_tokens - before.gen_tokens, n_tokens_asked);
    fflush(stdout);
    ASSERT_EQ(after.running, 0);
    ASSERT_EQ(after.waiting, 0);
    if (after.kv != 0) fprintf(stderr, "kv_cache_usage_perc %.9g after round %d\n", after.kv, round);
    ASSERT(after.kv == 0);
    ASSERT_EQ(after.rejected - before.rejected, 0);
    ASSERT_EQ(d_fin[3], 0);
    ASSERT_EQ(d_fin[0] + d_fin[1] + d_fin[2], N_CLIENTS); /* each request finished exactly once */
    ASSERT(d_fin[2] >= 1);                                 /* disconnects abort */
    ASSERT(d_fin[2] <= n_leave);
    for (int i = 0; i < N_CLIENTS; i++) {
        free(cl[i].raw);
        free(cl[i].body);
    }
}

int main(void) {
    const char *model = make_model();
    srv s = start_server(model, "--served-model-name", "tiny", "--chat-template", "chatml", "--max-num-seqs", "32",
                         "--max-queue", "1024", "--log-level", "warn", NULL);
    long rss0 = status_kb(s.pid, "VmRSS"), rss_warm = 0, rss_max = 0, data_warm = 0, data_max = 0;
    double t0 = now_s();
    for (int round = 1; round <= WARM_ROUNDS + LOAD_ROUNDS; round++) {
        run_round(s.port, round);
        sleep_ms(200); /* settle: the last connections close */
        long rss = status_kb(s.pid, "VmRSS"), data = status_kb(s.pid, "VmData");
        printf("round %d (%s): server RSS %ld KiB (at start %ld KiB), VmData %ld KiB\n", round,
               round <= WARM_ROUNDS ? "warm-up" : "load", rss, rss0, data);
        fflush(stdout);
        if (round == WARM_ROUNDS) rss_warm = rss, data_warm = data;
        if (round > WARM_ROUNDS && rss > rss_max) rss_max = rss;
        if (round > WARM_ROUNDS && data > data_max) data_max = data;
    }
    printf("after %d warm-up rounds: RSS %ld KiB, VmData %ld KiB; after the %d load rounds at most RSS %ld KiB "
           "(margin %d KiB), VmData %ld KiB (margin %d KiB)%s\n",
           WARM_ROUNDS, rss_warm, data_warm, LOAD_ROUNDS, rss_max, RSS_MARGIN_KB, data_max, DATA_MARGIN_KB,
           SANITIZED ? ": not checked in a sanitizer build" : "");
    if (!SANITIZED && rss_max > rss_warm + RSS_MARGIN_KB) {
        fprintf(stderr, "server RSS grew by %ld KiB over %d load rounds (margin %d KiB): a leak?\n", rss_max - rss_warm,
                LOAD_ROUNDS, RSS_MARGIN_KB);
        ASSERT(0);
    }
    if (!SANITIZED && data_max > data_warm + DATA_MARGIN_KB) {
        fprintf(stderr, "server VmData grew by %ld KiB over %d load rounds (margin %d KiB): a leak\n", data_max - data_warm,
                LOAD_ROUNDS, DATA_MARGIN_KB);
        ASSERT(0);
    }
    /* still serving: one more plain request */
    resp r;
    post(s.port, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"ok\",\"max_tokens\":3,\"ignore_eos\":true}", NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_CONTAINS(r.body, "\"completion_tokens\":3");
    resp_free(&r);
    ASSERT_EQ(stop_server(&s, 30000), 0);
    remove_model(model);
    printf("test_load: ok (%.1f s)\n", now_s() - t0);
    return 0;
}
