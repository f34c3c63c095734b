/* sluice serve behind a real load balancer (issue #5): nginx (Debian's package; scripts/setup.sh
 * installs it) in front of two `sluice serve` processes on loopback, run as the current user
 * with its prefix, config, pid file and logs in a temporary directory, in the foreground
 * (`daemon off`) as a single process (`master_process off`: no worker processes that would
 * outlive a failed test, no privilege drop when run as root; the proxying is the same code). While client threads
 * send a steady stream of requests through nginx (streamed and not, completions and chat, some
 * long), server A gets SIGTERM at a moment when one of its long streams is known to be running.
 *
 * nginx setup, and why:
 *  - upstream with A and B, round robin, `max_fails=1 fail_timeout=60s`: passive health; one
 *    failed attempt (connection refused, or a 503) takes a server out for longer than the test;
 *  - no upstream keep-alive (nginx's default: a new connection per request, "Connection:
 *    close"), so nginx never sends a request on an idle connection the draining server has just
 *    closed;
 *  - `proxy_http_version 1.1` (sluice streams chunked) and `proxy_buffering off` (each SSE event
 *    goes through at once);
 *  - `proxy_next_upstream error timeout http_503 non_idempotent`: a draining sluice closes its
 *    listener (connect fails: error) and answers 503 "Shutting down" to a request that reaches
 *    it on a connection accepted just before (http_503). Completions are POSTs, and nginx never
 *    passes a POST to the next server once it has been sent unless non_idempotent is given, so
 *    without it the 503 would reach the client. Retrying a completion is safe: sluice only
 *    answers 503 before it starts one, and nginx cannot retry once response bytes went out;
 *  - `add_header X-Upstream $upstream_addr always`: which server(s) nginx tried, in order.
 *
 * Asserted:
 *  - every request the clients sent (some hundreds) completed with 200 and a whole body:
 *    streams pass sse_check.h (valid JSON events, finish once, completion_tokens = max_tokens
 *    with ignore_eos, usage, `data: [DONE]`); plain responses parse as JSON with the same token
 *    count; no connection error, no timeout;
 *  - before the signal both servers answered requests (nginx really balanced);
 *  - the long stream that A was running when it got SIGTERM completed whole, from A, after the
 *    signal; A exited with status 0 once its requests were done, within its --shutdown-timeout;
 *  - every request that started after A had exited was answered by B, and A was tried at most
 *    once in all of them (the attempt that marks it failed; afterwards nginx skips it);
 *  - B still serves at the end and exits 0 on SIGTERM.
 * Exits 77 (ctest: skipped) only if there is no nginx binary. */
#include <pthread.h>

#include "tests/server/harness.h"
#include "tests/server/sse_check.h"

enum { N_THREADS = 6, MAX_LOG = 4096, LONG_TOKENS = 400 };

typedef struct record {
    double t0, t1;
    int kind;                    /* 0 completions stream, 1 chat stream, 2 completions plain, 3 chat plain, 4 long stream */
    int status;
    bool ok;
    char upstream[96];
    char why[640];
} record;

static int lb_port, port_a, port_b;
static record logbuf[MAX_LOG];
static int n_log;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop_clients;
/* a long stream known to be running on A: its index in logbuf, and whether it has begun */
static volatile int long_on_a = -1; /* a long stream running on A now, -1: none */
static volatile int killed;           /* A has been sent SIGTERM */

static const char *find_nginx(void) {
    static const char *const paths[] = {"/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx",
                                        "/usr/local/nginx/sbin/nginx"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0) return paths[i];
    if (system("command -v nginx >/dev/null 2>&1") == 0) return "nginx";
    return NULL;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static const char *last_upstream(const char *list) {
    const char *p = strrchr(list, ',');
    p = p ? p + 1 : list;
    while (*p == ' ') p++;
    return p;
}

static bool is_port(const char *addr, int port) {
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    return !strcmp(addr, want);
}

/* Checks a non-streamed response body. */
static const char *plain_check(const char *body, bool chat, int max_tokens) {
    static _Thread_local char why[256];
    cJSON *j = cJSON_Parse(body);
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
    const cJSON *c0 = cJSON_GetArrayItem(ch, 0);
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
    const cJSON *text = chat ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c0, "message"), "content")
                             : cJSON_GetObjectItemCaseSensitive(c0, "text");
    const char *res = NULL;
    if (!j) res = "not JSON";
    else if (cJSON_GetArraySize(ch) != 1 || !cJSON_IsString(text)) res = "no choice with text";
    else if (!cJSON_IsNumber(ct) || ct->valueint != max_tokens || !cJSON_IsString(fr) || strcmp(fr->valuestring, "length")) {
        snprintf(why, sizeof why, "want %d tokens and finish length: %.150s", max_tokens, body);
        res = why;
    }
    cJSON_Delete(j);
    return res;
}

static void *client(void *arg) {
    int t = (int)(intptr_t)arg;
    char *carry = malloc(1 << 16);
    for (int i = 0; !stop_clients; i++) {
        int kind = (t + i) % 4;
        if (t <= 1 && i % 2 == 0) kind = 4; /* threads 0 and 1: every other request is long */
        bool chat = kind == 1 || kind == 3, stream = kind <= 1 || kind == 4;
        int max_tokens = kind == 4 ? LONG_TOKENS : 8 + (t * 7 + i * 3) % 24;
        char body[512];
        snprintf(body, sizeof body,
                 chat ? "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"client %d asks %d\"}],"
                        "\"max_tokens\":%d,\"ignore_eos\":true%s}"
                      : "{\"model\":\"tiny\",\"prompt\":\"client %d asks %d\",\"max_tokens\":%d,\"ignore_eos\":true%s}",
                 t, i, max_tokens, stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" : "");
        char *raw = post_raw(chat ? "/v1/chat/completions" : "/v1/completions", body, NULL);
        pthread_mutex_lock(&mu);
        ASSERT(n_log < MAX_LOG);
        int k = n_log++;
        pthread_mutex_unlock(&mu);
        record *r = &logbuf[k];
        r->kind = kind;
        r->t0 = now_s();
        int fd = connect_to(lb_port);
        if (fd < 0) {
            snprintf(r->why, sizeof r->why, "connect to nginx: %s", strerror(errno));
        } else {
            send_all(fd, raw, strlen(raw));
            resp rs;
            size_t cl = 0;
            if (kind == 4) {
                /* read the head and the first event, then say it is running (on which server) */
                char head[8192];
                size_t hl = 0;
                head[0] = 0;
                double end = now_s() + 30;
                while (!strstr(head, "data: ") && now_s() < end && hl < sizeof head - 1) {
                    int g = recv_some(fd, head, sizeof head, &hl, 1000);
                    if (g == 1 || g == -1) break;
                }
                const char *x = strcasestr(head, "\r\nX-Upstream: ");
                if (x && strstr(head, "data: ")) {
                    x += 14;
                    size_t n = strcspn(x, "\r");
                    char addr[96];
                    snprintf(addr, sizeof addr, "%.*s", (int)(n < 95 ? n : 95), x);
                    if (is_port(addr, port_a) && long_on_a < 0) long_on_a = k;
                }
                memcpy(carry, head, hl);
                cl = hl;
            }
            if (read_resp_carry(fd, &rs, carry, &cl, 60000)) {
                snprintf(r->why, sizeof r->why, "no whole response");
                r->status = -1;
            } else {
                r->status = rs.status;
                hdr_val(&rs, "X-Upstream", r->upstream, sizeof r->upstream);
                const char *why = rs.status != 200 ? "status is not 200"
                                  : stream         ? sse_check(rs.body, chat, max_tokens, true, NULL)
                                                   : plain_check(rs.body, chat, max_tokens);
                if (why) snprintf(r->why, sizeof r->why, "%s; body: %.100s", why, rs.body ? rs.body : "");
                else r->ok = true;
                resp_free(&rs);
            }
            close(fd);
        }
        r->t1 = now_s();
        /* it ended before A was stopped: wait for another (in CI one came and went while the
         * main thread still let traffic flow) */
        if (long_on_a == k && !killed) long_on_a = -1;
        free(raw);
    }
    free(carry);
    return NULL;
}

/* A sluice model a little bigger than harness.h's, so that a long stream takes a while (a
 * sanitizer build is slow enough with the small one). */
static const char *make_model_lb(void) {
    static char path[128];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sluice-test-nginx-XXXXXX");
    ASSERT(mkdtemp(tmpdir));
    snprintf(path, sizeof path, "%s/m.gguf", tmpdir);
    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    o.dim = SANITIZED ? 64 : 256, o.layers = SANITIZED ? 2 : 6, o.heads = 4, o.kv_heads = 2, o.ff = SANITIZED ? 128 : 768;
    o.vocab = 300, o.ctx = 512;
    char err[SL_ERRMSG];
    int rc = sl_mkmodel(&o, path, err);
    if (rc) fprintf(stderr, "mkmodel: %s\n", err);
    ASSERT_EQ(rc, 0);
    return path;
}

static void dump_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    fprintf(stderr, "--- %s ---\n", path);
    while (fgets(line, sizeof line, f)) fputs(line, stderr);
    fclose(f);
}

static char dir[96];

static void fail_dump(void) {
    char p[160];
    snprintf(p, sizeof p, "%s/error.log", dir);
    dump_file(p);
}

int main(void) {
    const char *nginx = find_nginx();
    if (!nginx) {
        fprintf(stderr, "test_nginx: skipped: no nginx (apt-get install nginx; scripts/setup.sh does)\n");
        return 77;
    }
    const char *model = make_model_lb();
    snprintf(dir, sizeof dir, "%s", tmpdir);
    srv a = start_server(model, "--served-model-name", "tiny", "--chat-template", "chatml", "--max-num-seqs", "8",
                         "--shutdown-timeout", "60", "--log-level", "warn", NULL);
    srv b = start_server(model, "--served-model-name", "tiny", "--chat-template", "chatml", "--max-num-seqs", "8",
                         "--shutdown-timeout", "60", "--log-level", "warn", NULL);
    port_a = a.port, port_b = b.port;

    /* nginx: config, pid file, logs and temp paths all in dir */
    pid_t ng = -1;
    for (int attempt = 0; attempt < 5 && ng < 0; attempt++) {
        lb_port = free_port();
        char conf[4096], path[160];
        snprintf(conf, sizeof conf,
                 "daemon off;\n"
                 "master_process off;\n" /* one process: PR_SET_PDEATHSIG takes it along if the test dies */
                 "pid %s/nginx.pid;\n"
                 "error_log %s/error.log info;\n"
                 "events { worker_connections 1024; }\n"
                 "http {\n"
                 "  log_format lb '$request_uri $status $upstream_addr $upstream_status $request_time';\n"
                 "  access_log %s/access.log lb;\n"
                 "  client_body_temp_path %s/client_body;\n"
                 "  proxy_temp_path %s/proxy;\n"
                 "  fastcgi_temp_path %s/fastcgi;\n"
                 "  uwsgi_temp_path %s/uwsgi;\n"
                 "  scgi_temp_path %s/scgi;\n"
                 "  upstream sluice {\n"
                 "    server 127.0.0.1:%d max_fails=1 fail_timeout=60s;\n"
                 "    server 127.0.0.1:%d max_fails=1 fail_timeout=60s;\n"
                 "  }\n"
                 "  server {\n"
                 "    listen 127.0.0.1:%d;\n"
                 "    location / {\n"
                 "      proxy_pass http://sluice;\n"
                 "      proxy_http_version 1.1;\n"
                 "      proxy_buffering off;\n"
                 "      proxy_read_timeout 60s;\n"
                 "      proxy_next_upstream error timeout http_503 non_idempotent;\n"
                 "      proxy_next_upstream_tries 2;\n"
                 "      add_header X-Upstream $upstream_addr always;\n"
                 "    }\n"
                 "  }\n"
                 "}\n",
                 dir, dir, dir, dir, dir, dir, dir, dir, port_a, port_b,
                 lb_port);
        snprintf(path, sizeof path, "%s/nginx.conf", dir);
        FILE *f = fopen(path, "w");
        ASSERT(f);
        fputs(conf, f);
        ASSERT_EQ(fclose(f), 0);
        char elog[160];
        snprintf(elog, sizeof elog, "%s/error.log", dir);
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            execlp(nginx, nginx, "-p", dir, "-c", path, "-e", elog, (char *)NULL);
            _exit(127);
        }
        /* ready when /health answers through it */
        double end = now_s() + 15;
        while (now_s() < end) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) { /* exited: the port was taken meanwhile? */
                fail_dump();
                pid = -1;
                break;
            }
            int fd = connect_to(lb_port);
            if (fd >= 0) {
                send_str(fd, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
                resp r;
                int rc = read_resp(fd, &r, 5000);
                close(fd);
                if (rc == 0) {
                    int status = r.status;
                    resp_free(&r);
                    if (status == 200) {
                        ng = pid;
                        break;
                    }
                }
            }
            sleep_ms(50);
        }
        if (ng < 0 && pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    if (ng < 0) fail_dump();
    ASSERT(ng > 0);
    printf("nginx on port %d in front of sluice on %d (A) and %d (B)\n", lb_port, port_a, port_b);
    fflush(stdout);

    pthread_t th[N_THREADS];
    double t_start = now_s();
    for (int i = 0; i < N_THREADS; i++) ASSERT_EQ(pthread_create(&th[i], NULL, client, (void *)(intptr_t)i), 0);
    /* let traffic flow, then wait for a long stream running on A and stop A under it */
    sleep_ms(1000);
    double end = now_s() + 60;
    int long_k = -1;
    while ((long_k = long_on_a) < 0 && now_s() < end) sleep_ms(1);
    killed = 1;
    if (long_k < 0) fail_dump();
    ASSERT(long_k >= 0);
    double t_kill = now_s();
    ASSERT_EQ(kill(a.pid, SIGTERM), 0);
    int st_a = wait_server(&a, 90000);
    double t_exit = now_s();
    /* then more traffic, which must all go to B */
    sleep_ms(1500);
    int n_after_exit = 0;
    for (double e2 = now_s() + 30; now_s() < e2; sleep_ms(50)) {
        pthread_mutex_lock(&mu);
        n_after_exit = 0;
        for (int i = 0; i < n_log; i++)
            if (logbuf[i].t0 > t_exit && logbuf[i].t1 > 0) n_after_exit++;
        pthread_mutex_unlock(&mu);
        if (n_after_exit >= 30) break;
    }
    stop_clients = 1;
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    double t_end = now_s();

    /* every request: 200 and whole */
    int n_before_a = 0, n_before_b = 0, n_after = 0, n_after_tried_a = 0, n_drained = 0, n_long = 0;
    bool failed = false;
    for (int i = 0; i < n_log; i++) {
        record *r = &logbuf[i];
        if (!r->ok) {
            fprintf(stderr, "request %d (kind %d, started %.2f s after the start, %.2f s %s SIGTERM to A): status %d, "
                    "upstream \"%s\": %s\n",
                    i, r->kind, r->t0 - t_start, fabs(r->t0 - t_kill), r->t0 < t_kill ? "before" : "after", r->status,
                    r->upstream, r->why);
            failed = true;
            continue;
        }
        const char *last = last_upstream(r->upstream);
        if (!is_port(last, port_a) && !is_port(last, port_b)) {
            fprintf(stderr, "request %d: unknown upstream \"%s\"\n", i, r->upstream);
            failed = true;
        }
        if (r->kind == 4) n_long++;
        if (r->t1 < t_kill) {
            n_before_a += is_port(last, port_a);
            n_before_b += is_port(last, port_b);
        }
        if (r->t0 < t_kill && r->t1 > t_kill && is_port(last, port_a)) n_drained++;
        if (r->t0 > t_exit) {
            n_after++;
            if (!is_port(last, port_b)) {
                fprintf(stderr, "request %d started after A exited but was answered by %s\n", i, r->upstream);
                failed = true;
            }
            if (strstr(r->upstream, ",")) n_after_tried_a++;
        }
    }
    printf("%d requests (%d long streams) in %.1f s: before SIGTERM A answered %d and B %d; A finished %d in flight "
           "after it and exited %.2f s later with status %d; %d requests after A's exit, all from B (A tried in %d)\n",
           n_log, n_long, t_end - t_start, n_before_a, n_before_b, n_drained, t_exit - t_kill, st_a, n_after,
           n_after_tried_a);
    fflush(stdout);
    if (failed) {
        fail_dump();
        char p[160];
        snprintf(p, sizeof p, "%s/access.log", dir);
        dump_file(p);
    }
    ASSERT(!failed);
    ASSERT_EQ(st_a, 0);
    ASSERT(n_before_a >= 1 && n_before_b >= 1);
    record *lr = &logbuf[long_k];
    ASSERT(lr->ok && is_port(lr->upstream, port_a) && lr->t1 > t_kill);
    ASSERT(n_drained >= 1);
    ASSERT(n_after >= 10);
    ASSERT(n_after_tried_a <= 1);

    /* B still serves through nginx, then everything stops */
    resp r;
    post(lb_port, "/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"end\",\"max_tokens\":2,\"ignore_eos\":true}", NULL,
         &r);
    ASSERT_EQ(r.status, 200);
    char v[96];
    ASSERT(hdr_val(&r, "X-Upstream", v, sizeof v) && is_port(last_upstream(v), port_b));
    resp_free(&r);
    ASSERT_EQ(stop_server(&b, 30000), 0);
    kill(ng, SIGQUIT);
    int st;
    waitpid(ng, &st, 0);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
    printf("test_nginx: ok\n");
    return 0;
}
