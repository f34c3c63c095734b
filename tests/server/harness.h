/* harness.h — runs `./sluice serve` (the build directory's binary) on a tiny mkmodel model as
 * a child process on an ephemeral port, and talks raw HTTP to it over loopback sockets.
 * Every wait is bounded; a test that hangs fails by its ctest timeout at the latest. */
#ifndef SL_TEST_SERVER_HARNESS_H
#define SL_TEST_SERVER_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "models/mkmodel.h"
#include "tests/test.h"

typedef struct srv {
    pid_t pid;
    int port;
    int out_fd;                  /* the child's stdout */
} srv;

static char tmpdir[64];

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A file's first 64 KiB as a string (calloc'ed). */
static inline char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    ASSERT(f);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* A tiny llama model with the toy vocabulary; returns its path (static buffer). */
static inline const char *make_model(void) {
    static char path[128];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sluice-test-server-XXXXXX");
    ASSERT(mkdtemp(tmpdir));
    snprintf(path, sizeof path, "%s/m.gguf", tmpdir);
    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    o.dim = 64, o.layers = 2, o.heads = 4, o.kv_heads = 2, o.ff = 128, o.vocab = 300, o.ctx = 256;
    char err[SL_ERRMSG];
    int rc = sl_mkmodel(&o, path, err);
    if (rc) fprintf(stderr, "mkmodel: %s\n", err);
    ASSERT_EQ(rc, 0);
    return path;
}

static inline void remove_model(const char *path) {
    unlink(path);
    rmdir(tmpdir);
}

static inline int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static inline void send_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t k = send(fd, data, len, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        ASSERT(k > 0);
        data += k;
        len -= (size_t)k;
    }
}

static inline void send_str(int fd, const char *s) { send_all(fd, s, strlen(s)); }

/* Waits up to ms for bytes and appends what one recv gives to buf[*len..]: returns 2 when
 * something came, 0 on timeout, 1 when the peer closed, -1 on a reset. */
static inline int recv_some(int fd, char *buf, size_t cap, size_t *len, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, ms);
    if (r <= 0) return 0;
    ASSERT(*len + 1 < cap);
    ssize_t k = recv(fd, buf + *len, cap - *len - 1, 0);
    if (k < 0) return -1;
    if (k == 0) return 1;
    *len += (size_t)k;
    buf[*len] = 0;
    return 2;
}

/* Reads until the peer closes or timeout_ms passes; returns what came (malloc'd). *closed
 * says whether the connection ended (EOF or reset). */
static inline char *read_until_close(int fd, int timeout_ms, bool *closed) {
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    buf[0] = 0;
    double end = now_s() + timeout_ms / 1e3;
    *closed = false;
    while (now_s() < end) {
        int left = (int)((end - now_s()) * 1e3) + 1;
        int r = recv_some(fd, buf, cap, &len, left);
        if (r == 1 || r == -1) {
            *closed = true;
            break;
        }
    }
    return buf;
}

typedef struct resp {
    int status;
    char head[8192];             /* status line and headers */
    char *body;                  /* malloc'd, dechunked */
    size_t body_len;
} resp;

static inline const char *hdr_val(const resp *r, const char *name, char *out, size_t cap) {
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (!strncasecmp(p + 2, name, n) && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ') v++;
            size_t k = strcspn(v, "\r");
            if (k >= cap) k = cap - 1;
            memcpy(out, v, k);
            out[k] = 0;
            return out;
        }
    }
    return NULL;
}

/* Reads one response (Content-Length, chunked, or until close), skipping "100 Continue".
 * Bytes read past it stay in *carry (len *carry_len). Returns 0, or -1 if the connection
 * closed or timed out before a whole response. */
static inline int read_resp_carry(int fd, resp *out, char *carry, size_t *carry_len, int timeout_ms) {
    size_t cap = 4 << 20, len = *carry_len;
    char *buf = malloc(cap);
    memcpy(buf, carry, len);
    buf[len] = 0;
    double end = now_s() + timeout_ms / 1e3;
    bool closed = false;
    memset(out, 0, sizeof *out);
    for (;;) {
        char *hend = strstr(buf, "\r\n\r\n");
        if (hend && !strncmp(buf, "HTTP/1.1 100 ", 13)) {
            size_t skip = (size_t)(hend + 4 - buf);
            memmove(buf, buf + skip, len - skip + 1);
            len -= skip;
            continue;
        }
        if (hend) {
            size_t hl = (size_t)(hend - buf);
            ASSERT(hl < sizeof out->head);
            memcpy(out->head, buf, hl + 2);
            out->head[hl + 2] = 0;
            out->status = atoi(buf + 9);
            char v[64];
            char *b = hend + 4;
            size_t have = len - (size_t)(b - buf);
            size_t used = 0;
            bool done = false;
            if (hdr_val(out, "Content-Length", v, sizeof v)) {
                size_t cl = (size_t)atoll(v);
                if (have >= cl) {
                    out->body = malloc(cl + 1);
                    memcpy(out->body, b, cl);
                    out->body[cl] = 0;
                    out->body_len = cl;
                    used = cl;
                    done = true;
                }
            } else if (hdr_val(out, "Transfer-Encoding", v, sizeof v)) {
                /* dechunk what is complete */
                size_t p = 0, bl = 0;
                char *body = malloc(have + 1);
                for (;;) {
                    char *eol = strstr(b + p, "\r\n");
                    if (!eol) break;
                    size_t sz = strtoul(b + p, NULL, 16);
                    size_t data = (size_t)(eol + 2 - b);
                    if (data + sz + 2 > have) break;
                    memcpy(body + bl, b + data, sz);
                    bl += sz;
                    p = data + sz + 2;
                    if (sz == 0) {
                        done = true;
                        used = p;
                        break;
                    }
                }
                body[bl] = 0;
                if (done) out->body = body, out->body_len = bl;
                else free(body);
            } else if (closed) {
                out->body = malloc(have + 1);
                memcpy(out->body, b, have);
                out->body[have] = 0;
                out->body_len = have;
                done = true;
                used = have;
            }
            if (done) {
                size_t rest = have - used;
                memcpy(carry, b + used, rest);
                *carry_len = rest;
                free(buf);
                return 0;
            }
        }
        if (closed || now_s() > end) break;
        int r = recv_some(fd, buf, cap, &len, (int)((end - now_s()) * 1e3) + 1);
        if (r == 1 || r == -1) closed = true;
    }
    free(buf);
    return -1;
}

static inline int read_resp(int fd, resp *out, int timeout_ms) {
    static char rest[4 << 20];
    size_t n = 0;
    return read_resp_carry(fd, out, rest, &n, timeout_ms);
}

static inline void resp_free(resp *r) {
    free(r->body);
    r->body = NULL;
}

/* One request on a new connection; the response in *out. */
static inline void request(int port, const char *raw, resp *out) {
    int fd = connect_to(port);
    ASSERT(fd >= 0);
    send_str(fd, raw);
    int rc = read_resp(fd, out, 20000);
    if (rc) fprintf(stderr, "no response to:\n%s\n", raw);
    ASSERT_EQ(rc, 0);
    close(fd);
}

static inline char *post_raw(const char *path, const char *body, const char *extra) {
    size_t n = strlen(body) + strlen(path) + (extra ? strlen(extra) : 0) + 256;
    char *s = malloc(n);
    snprintf(s, n,
             "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n%sContent-Length: %zu\r\n\r\n%s",
             path, extra ? extra : "", strlen(body), body);
    return s;
}

static inline void post(int port, const char *path, const char *body, const char *extra, resp *out) {
    char *raw = post_raw(path, body, extra);
    request(port, raw, out);
    free(raw);
}

/* Starts ./sluice serve MODEL with extra arguments (NULL-terminated); waits for /health 200. */
static inline srv start_server(const char *model, ...) {
    const char *argv[64] = {"./sluice", "serve", "--model", model, "--port", "0", "--threads", "1", NULL};
    int argc = 8;
    va_list ap;
    va_start(ap, model);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 62) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    srv s = {0};
    s.pid = fork();
    ASSERT(s.pid >= 0);
    if (s.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed (aborted) test takes its server along */
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv("./sluice", (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    s.out_fd = p[0];
    char buf[4096];
    size_t len = 0;
    double end = now_s() + 20;
    while (!s.port && now_s() < end) {
        struct pollfd pf = {.fd = s.out_fd, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0) continue;
        ssize_t k = read(s.out_fd, buf + len, sizeof buf - len - 1);
        ASSERT(k > 0);
        len += (size_t)k;
        buf[len] = 0;
        const char *m = strstr(buf, "listening on http://127.0.0.1:");
        if (m) s.port = atoi(m + strlen("listening on http://127.0.0.1:"));
    }
    ASSERT(s.port > 0);
    /* ready when /health says 200 */
    for (;;) {
        ASSERT(now_s() < end);
        resp r;
        request(s.port, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n", &r);
        int st = r.status;
        resp_free(&r);
        if (st == 200) break;
        ASSERT_EQ(st, 503);
        sleep_ms(20);
    }
    return s;
}

/* The exit status once the server exits (-1, and killed, if not within timeout_ms). */
static inline int wait_server(srv *s, int timeout_ms) {
    double end = now_s() + timeout_ms / 1e3;
    int status = 0;
    while (now_s() < end) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid) {
            close(s->out_fd);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    close(s->out_fd);
    return -1;
}

/* SIGTERM, then the exit status (-1 if it did not exit within timeout_ms). */
static inline int stop_server(srv *s, int timeout_ms) {
    kill(s->pid, SIGTERM);
    return wait_server(s, timeout_ms);
}

#define ASSERT_STREQ(a, b)                                                                        \
    do {                                                                                          \
        const char *_a = (a), *_b = (b);                                                          \
        if (!_a || strcmp(_a, _b)) {                                                              \
            fprintf(stderr, "%s:%d: %s == %s failed:\n  got:      \"%s\"\n  expected: \"%s\"\n", \
                    __FILE__, __LINE__, #a, #b, _a ? _a : "(null)", _b);                          \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

#endif
