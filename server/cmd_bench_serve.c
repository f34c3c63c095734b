/* cmd_bench_serve.c — `sluice bench serve`: an online serving benchmark against a running
 * OpenAI-compatible server, defined as in /work/shared/API.md §6 (vLLM's `bench serve`).
 *
 * N random token-id prompts go to POST /v1/completions with `stream: true`,
 * `stream_options.include_usage`, `ignore_eos` and `max_tokens` = output length. Arrivals are a
 * Poisson process of the given rate (rate inf: all at once); --max-concurrency caps the
 * requests in flight (later arrivals wait for a slot). One thread per request, each on its own
 * blocking loopback socket (`Connection: close`), timing SSE events by the client's monotonic
 * clock: TTFT is send → first event with non-empty `choices`, ITL the gaps between such
 * events, E2EL send → the last one, TPOT (E2EL − TTFT) / (output_tokens − 1). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../base/base.h"
#include "cli.h"
#include "commands.h"

typedef struct bs_result {
    int ok;
    char err[160];
    double start;              /* seconds since the benchmark started */
    double ttft, e2el;         /* seconds */
    double *itl;               /* gaps between token events, seconds */
    int n_itl, cap_itl;
    int output_tokens, prompt_tokens;
} bs_result;

typedef struct bs_shared {
    const char *host, *port, *model;
    char auth[300];             /* "Authorization: Bearer KEY\r\n" or "" */
    int input_len, output_len;
    int32_t *prompts;           /* num_prompts × input_len */
    sem_t slots;
    int limit;                  /* max concurrency, 0 = none */
    double t0;
    double timeout_s;
} bs_shared;

typedef struct bs_job {
    bs_shared *sh;
    int idx;
    bs_result *res;
} bs_job;

/* ---- a tiny blocking HTTP/1.1 client -------------------------------------------------- */

static int bs_connect(const char *host, const char *port, double timeout_s) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) || !ai) return -1;
    int fd = -1;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
        if (fd < 0) continue;
        if (!connect(fd, p->ai_addr, p->ai_addrlen)) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {(time_t)timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static int bs_send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

typedef struct bs_buf {
    char *p;
    size_t n, cap;
} bs_buf;

static void bs_append(bs_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* Receives the response; on_body(ctx, body, len) sees the decoded body so far after each read
 * (dechunked when chunked) and returns how many leading bytes it consumed. Returns the HTTP
 * status, or -1 on a connection error / malformed response. */
typedef size_t (*bs_body_fn)(void *ctx, const char *body, size_t len);

/* why the last bs_exchange of this thread returned -1 (bench serve's failure report) */
static _Thread_local char bs_why[96];

static int bs_exchange(int fd, const char *req, size_t req_len, bs_body_fn on_body, void *ctx) {
    bs_why[0] = 0;
    if (bs_send_all(fd, req, req_len)) {
        snprintf(bs_why, sizeof bs_why, "sending the request: %s", strerror(errno));
        return -1;
    }
    bs_buf raw = {0}, body = {0};
    int status = -1, chunked = 0, in_body = 0, done = 0;
    long long content_len = -1;
    size_t pos = 0, chunk_left = 0;
    int chunk_state = 0; /* 0: size line, 1: data, 2: CRLF after data */
    char tmp[16384];
    while (!done) {
        ssize_t k = recv(fd, tmp, sizeof tmp, 0);
        if (k < 0 && errno == EINTR) continue;
        int eof = k <= 0;
        if (k < 0) snprintf(bs_why, sizeof bs_why, "receiving: %s", strerror(errno));
        else if (k == 0) snprintf(bs_why, sizeof bs_why, "the server closed the connection %s",
                                  in_body ? "before the end of the body" : "before the response headers");
        if (k > 0) bs_append(&raw, tmp, (size_t)k);
        if (!in_body) {
            char *he = raw.p ? strstr(raw.p, "\r\n\r\n") : NULL;
            if (!he) {
                if (eof) break;
                continue;
            }
            if (raw.n < 12 || strncmp(raw.p, "HTTP/1.", 7)) break;
            status = atoi(raw.p + 9);
            *he = 0;
            for (char *l = strstr(raw.p, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
                if (!strncasecmp(l + 2, "Transfer-Encoding:", 18) && strstr(l + 2, "chunked")) chunked = 1;
                if (!strncasecmp(l + 2, "Content-Length:", 15)) content_len = atoll(l + 17);
            }
            pos = (size_t)(he + 4 - raw.p);
            in_body = 1;
        }
        if (chunked) {
            for (;;) {
                if (chunk_state == 0) {
                    char *eol = memmem(raw.p + pos, raw.n - pos, "\r\n", 2);
                    if (!eol) break;
                    chunk_left = strtoul(raw.p + pos, NULL, 16);
                    pos = (size_t)(eol + 2 - raw.p);
                    if (!chunk_left) {
                        done = 1;
                        break;
                    }
                    chunk_state = 1;
                } else if (chunk_state == 1) {
                    size_t av = raw.n - pos, take = av < chunk_left ? av : chunk_left;
                    if (!take) break;
                    bs_append(&body, raw.p + pos, take);
                    pos += take;
                    chunk_left -= take;
                    if (!chunk_left) chunk_state = 2;
                } else {
                    if (raw.n - pos < 2) break;
                    pos += 2;
                    chunk_state = 0;
                }
            }
        } else if (raw.n > pos) {
            bs_append(&body, raw.p + pos, raw.n - pos);
            pos = raw.n;
        }
        /* drop consumed raw bytes */
        memmove(raw.p, raw.p + pos, raw.n - pos);
        raw.n -= pos;
        raw.p[raw.n] = 0;
        pos = 0;
        if (!chunked && content_len >= 0 && (long long)body.n >= content_len) done = 1;
        if (body.n && on_body) {
            size_t used = on_body(ctx, body.p, body.n);
            memmove(body.p, body.p + used, body.n - used);
            body.n -= used;
            body.p[body.n] = 0;
        }
        if (eof) {
            if (!chunked && content_len < 0) done = 1; /* body until close */
            break;
        }
    }
    free(raw.p);
    free(body.p);
    return done ? status : -1;
}

/* A plain request; the whole body (malloc'd) in *out. */
typedef struct bs_collect {
    bs_buf b;
} bs_collect;

static size_t bs_collect_fn(void *ctx, const char *body, size_t len) {
    bs_append(&((bs_collect *)ctx)->b, body, len);
    return len;
}

static int bs_simple(const bs_shared *sh, const char *method, const char *path, const char *json, char **out) {
    int fd = bs_connect(sh->host, sh->port, sh->timeout_s);
    if (fd < 0) return -1;
    bs_buf req = {0};
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%sContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      method, path, sh->host, sh->auth, json ? strlen(json) : 0);
    bs_append(&req, head, (size_t)hn);
    if (json) bs_append(&req, json, strlen(json));
    bs_collect c = {{0}};
    int st = bs_exchange(fd, req.p, req.n, bs_collect_fn, &c);
    close(fd);
    free(req.p);
    *out = c.b.p ? c.b.p : calloc(1, 1);
    return st;
}

/* ---- one streaming request ------------------------------------------------------------- */

typedef struct bs_stream {
    bs_result *r;
    double t_send;
    double t_last;
    int n_events;
    int done;
} bs_stream;

static void bs_itl_push(bs_result *r, double v) {
    if (r->n_itl == r->cap_itl) {
        r->cap_itl = r->cap_itl ? r->cap_itl * 2 : 64;
        r->itl = realloc(r->itl, (size_t)r->cap_itl * sizeof *r->itl);
        if (!r->itl) abort();
    }
    r->itl[r->n_itl++] = v;
}

static void bs_event(bs_stream *s, const char *data, double now) {
    bs_result *r = s->r;
    if (!strcmp(data, "[DONE]")) {
        s->done = 1;
        return;
    }
    cJSON *j = cJSON_Parse(data);
    if (!j) {
        snprintf(r->err, sizeof r->err, "malformed SSE data");
        return;
    }
    cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (err) {
        cJSON *m = cJSON_GetObjectItemCaseSensitive(err, "message");
        snprintf(r->err, sizeof r->err, "error event: %s", cJSON_IsString(m) ? m->valuestring : "?");
    }
    cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
    if (cJSON_IsArray(ch) && cJSON_GetArraySize(ch) > 0) {
        if (!s->n_events) r->ttft = now - s->t_send;
        else bs_itl_push(r, now - s->t_last);
        s->t_last = now;
        s->n_events++;
    }
    cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (cJSON_IsObject(u)) {
        cJSON *ct = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
        cJSON *pt = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
        if (cJSON_IsNumber(ct)) r->output_tokens = ct->valueint;
        if (cJSON_IsNumber(pt)) r->prompt_tokens = pt->valueint;
    }
    cJSON_Delete(j);
}

static size_t bs_stream_fn(void *ctx, const char *body, size_t len) {
    bs_stream *s = ctx;
    double now = sl_time_s();
    size_t used = 0;
    for (;;) {
        const char *end = memmem(body + used, len - used, "\n\n", 2);
        if (!end) break;
        size_t n = (size_t)(end - (body + used));
        char *ev = malloc(n + 1);
        memcpy(ev, body + used, n);
        ev[n] = 0;
        for (char *line = ev; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            if (!strncmp(line, "data:", 5)) bs_event(s, line + 5 + (line[5] == ' '), now);
            line = nl ? nl + 1 : NULL;
        }
        free(ev);
        used += n + 2;
    }
    return used;
}

static void *bs_worker(void *arg) {
    bs_job *job = arg;
    bs_shared *sh = job->sh;
    bs_result *r = job->res;
    if (sh->limit) {
        while (sem_wait(&sh->slots) && errno == EINTR) {
        }
    }
    bs_buf body = {0};
    char tmp[1024];
    int n = snprintf(tmp, sizeof tmp, "{\"model\":\"%s\",\"prompt\":[", sh->model);
    bs_append(&body, tmp, (size_t)n);
    const int32_t *p = sh->prompts + (size_t)job->idx * (size_t)sh->input_len;
    for (int i = 0; i < sh->input_len; i++) {
        n = snprintf(tmp, sizeof tmp, i ? ",%d" : "%d", p[i]);
        bs_append(&body, tmp, (size_t)n);
    }
    n = snprintf(tmp, sizeof tmp,
                 "],\"max_tokens\":%d,\"temperature\":0,\"repetition_penalty\":1.0,\"ignore_eos\":true,"
                 "\"logprobs\":null,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                 sh->output_len);
    bs_append(&body, tmp, (size_t)n);
    bs_buf req = {0};
    n = snprintf(tmp, sizeof tmp,
                 "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%sContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 sh->host, sh->auth, body.n);
    bs_append(&req, tmp, (size_t)n);
    bs_append(&req, body.p, body.n);
    free(body.p);

    bs_stream s = {.r = r};
    s.t_send = sl_time_s();
    r->start = s.t_send - sh->t0;
    int fd = bs_connect(sh->host, sh->port, sh->timeout_s);
    int st = -1;
    if (fd < 0) snprintf(r->err, sizeof r->err, "cannot connect: %s", strerror(errno));
    else {
        st = bs_exchange(fd, req.p, req.n, bs_stream_fn, &s);
        close(fd);
    }
    free(req.p);
    if (fd >= 0 && st < 0 && !r->err[0]) snprintf(r->err, sizeof r->err, "%s", bs_why[0] ? bs_why : "malformed response");
    if (fd >= 0 && st != 200 && !r->err[0]) snprintf(r->err, sizeof r->err, "HTTP status %d", st);
    if (!r->err[0] && !s.done) snprintf(r->err, sizeof r->err, "stream ended without [DONE]");
    if (!r->err[0] && !s.n_events) snprintf(r->err, sizeof r->err, "no tokens");
    if (!r->err[0]) {
        r->e2el = s.t_last - s.t_send;
        if (!r->output_tokens) r->output_tokens = s.n_events; /* no usage chunk: one token per event */
        r->ok = 1;
    }
    if (sh->limit) sem_post(&sh->slots);
    return NULL;
}

/* ---- statistics (numpy's mean, median, std, percentile with linear interpolation) ---------- */

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct bs_edge {
    double t;
    int d; /* +1 a request starts, -1 one ends */
} bs_edge;

static int cmp_edge(const void *a, const void *b) { /* by time, ends before starts on ties */
    const bs_edge *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t ? 1 : (x->d > y->d) - (x->d < y->d);
}

typedef struct bs_stat {
    double mean, median, std, p50, p90, p99;
} bs_stat;

static double pct(const double *s, int n, double p) {
    if (!n) return 0;
    double x = p / 100.0 * (n - 1);
    int lo = (int)floor(x);
    int hi = lo + 1 < n ? lo + 1 : lo;
    return s[lo] + (s[hi] - s[lo]) * (x - lo);
}

static bs_stat stats_ms(double *v, int n) {
    bs_stat st = {0};
    if (!n) return st;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    double sum = 0, sq = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    st.mean = sum / n;
    for (int i = 0; i < n; i++) sq += (v[i] - st.mean) * (v[i] - st.mean);
    st.std = sqrt(sq / n);
    st.median = st.p50 = pct(v, n, 50);
    st.p90 = pct(v, n, 90);
    st.p99 = pct(v, n, 99);
    st.mean *= 1e3, st.std *= 1e3, st.median *= 1e3, st.p50 *= 1e3, st.p90 *= 1e3, st.p99 *= 1e3;
    return st;
}

static void print_stat(const char *title, const char *name, bs_stat s) {
    printf("%s\n", title);
    printf("  %-34s %10.2f\n", "Mean (ms):", s.mean);
    printf("  %-34s %10.2f\n", "Median (ms):", s.median);
    printf("  %-34s %10.2f\n", "P90 (ms):", s.p90);
    printf("  %-34s %10.2f\n", "P99 (ms):", s.p99);
    (void)name;
}

static void json_stat(FILE *f, const char *name, bs_stat s) {
    fprintf(f, ",\n  \"mean_%s_ms\": %.6f, \"median_%s_ms\": %.6f, \"std_%s_ms\": %.6f", name, s.mean, name, s.median,
            name, s.std);
    fprintf(f, ", \"p50_%s_ms\": %.6f, \"p90_%s_ms\": %.6f, \"p99_%s_ms\": %.6f", name, s.p50, name, s.p90, name,
            s.p99);
}

/* ---- the command ------------------------------------------------------------------------- */

/* Splits http://HOST:PORT[/...] into host and port (static buffers). */
static int parse_url(const char *url, char *host, size_t hcap, char *port, size_t pcap) {
    if (strncmp(url, "http://", 7)) return -1;
    const char *h = url + 7, *end = h + strcspn(h, "/");
    const char *colon = memchr(h, ':', (size_t)(end - h));
    const char *he = colon ? colon : end;
    if (he == h || (size_t)(he - h) >= hcap) return -1;
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = 0;
    if (colon) {
        size_t pn = (size_t)(end - colon - 1);
        if (!pn || pn >= pcap) return -1;
        memcpy(port, colon + 1, pn);
        port[pn] = 0;
    } else snprintf(port, pcap, "80");
    return 0;
}

/* The vocabulary size, found with POST /detokenize (a token id ≥ vocab gives 400). */
static int probe_vocab(const bs_shared *sh) {
    int lo = 1, hi = 1; /* invariant: lo is valid; find the first invalid */
    for (;;) {
        char body[96], *out;
        snprintf(body, sizeof body, "{\"tokens\":[%d]}", hi);
        int st = bs_simple(sh, "POST", "/detokenize", body, &out);
        free(out);
        if (st != 200 && st != 400) return -1;
        if (st == 400) break;
        lo = hi;
        if (hi > (1 << 24)) return -1;
        hi *= 2;
    }
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        char body[96], *out;
        snprintf(body, sizeof body, "{\"tokens\":[%d]}", mid);
        int st = bs_simple(sh, "POST", "/detokenize", body, &out);
        free(out);
        if (st == 200) lo = mid;
        else if (st == 400) hi = mid;
        else return -1;
    }
    return hi;
}

int sl_cmd_bench_serve(int argc, char **argv) {
    const char *url, *rate_s, *json_path, *model_opt, *api_key;
    int num_prompts, input_len, output_len, max_conc, seed, vocab_opt, timeout;
    const cli_opt opts[] = {
        {"url", 0, CLI_STR, "http://127.0.0.1:8000", "server base URL (http only)", &url},
        {"num-prompts", 0, CLI_INT, "100", "number of requests", &num_prompts},
        {"request-rate", 0, CLI_STR, "inf", "requests per second, Poisson arrivals (inf: all at once)", &rate_s},
        {"max-concurrency", 0, CLI_INT, "0", "requests in flight at most (0: no limit)", &max_conc},
        {"input-len", 0, CLI_INT, "1024", "prompt tokens per request (random ids)", &input_len},
        {"output-len", 0, CLI_INT, "128", "output tokens per request (ignore_eos)", &output_len},
        {"output-json", 0, CLI_STR, NULL, "also write the results to this JSON file (vLLM's key names)", &json_path},
        {"seed", 0, CLI_INT, "0", "seed of the prompts and arrival times", &seed},
        {"model", 0, CLI_STR, NULL, "model name to send (default: the first of GET /v1/models)", &model_opt},
        {"vocab-size", 0, CLI_INT, "0", "token ids are drawn from [0, N) (0: probe via /detokenize)", &vocab_opt},
        {"timeout", 0, CLI_INT, "600", "per-request socket timeout, seconds", &timeout},
        {"api-key", 0, CLI_STR, NULL, "send Authorization: Bearer KEY", &api_key},
    };
    int rc = cli_parse("bench serve", opts, sizeof opts / sizeof opts[0], argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    char *endp;
    double rate = strtod(rate_s, &endp);
    if (*endp || !(rate > 0) || num_prompts < 1 || input_len < 1 || output_len < 1 || max_conc < 0 ||
        vocab_opt < 0 || timeout < 1) {
        fprintf(stderr, "sluice bench serve: invalid option value\n");
        return 2;
    }
    char host[256], port[16];
    if (parse_url(url, host, sizeof host, port, sizeof port)) {
        fprintf(stderr, "sluice bench serve: --url must look like http://HOST:PORT\n");
        return 2;
    }
    bs_shared sh = {.host = host, .port = port, .input_len = input_len, .output_len = output_len,
                    .limit = max_conc, .timeout_s = timeout};

    if (api_key) {
        if (strlen(api_key) > 256 || strpbrk(api_key, "\r\n")) {
            fprintf(stderr, "sluice bench serve: invalid --api-key\n");
            return 2;
        }
        snprintf(sh.auth, sizeof sh.auth, "Authorization: Bearer %s\r\n", api_key);
    }
    /* the model name */
    char model[256] = "";
    if (model_opt) snprintf(model, sizeof model, "%s", model_opt);
    else {
        char *out;
        int st = bs_simple(&sh, "GET", "/v1/models", NULL, &out);
        cJSON *j = st == 200 ? cJSON_Parse(out) : NULL;
        cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
        cJSON *id = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(d, 0), "id");
        if (cJSON_IsString(id)) snprintf(model, sizeof model, "%s", id->valuestring);
        cJSON_Delete(j);
        free(out);
        if (!model[0]) {
            fprintf(stderr, "sluice bench serve: GET %s/v1/models failed (status %d)\n", url, st);
            return 1;
        }
    }
    if (strpbrk(model, "\"\\")) {
        fprintf(stderr, "sluice bench serve: model name must not contain quotes or backslashes\n");
        return 2;
    }
    sh.model = model;
    int vocab = vocab_opt ? vocab_opt : probe_vocab(&sh);
    if (vocab < 1) {
        fprintf(stderr, "sluice bench serve: cannot find the vocabulary size via /detokenize; pass --vocab-size\n");
        return 1;
    }

    sl_rng rng;
    sl_rng_seed(&rng, (uint64_t)seed);
    sh.prompts = malloc((size_t)num_prompts * (size_t)input_len * sizeof *sh.prompts);
    for (size_t i = 0; i < (size_t)num_prompts * (size_t)input_len; i++)
        sh.prompts[i] = (int32_t)(sl_rng_u64(&rng) % (uint64_t)vocab);
    double *delay = malloc((size_t)num_prompts * sizeof *delay); /* arrival times from start */
    double t = 0;
    for (int i = 0; i < num_prompts; i++) {
        delay[i] = t;
        if (isfinite(rate)) {
            double u = ((double)(sl_rng_u64(&rng) >> 11) + 0.5) * 0x1.0p-53; /* (0, 1) */
            t += -log(u) / rate;
        }
    }
    if (max_conc) sem_init(&sh.slots, 0, (unsigned)max_conc);
    bs_result *res = calloc((size_t)num_prompts, sizeof *res);
    bs_job *jobs = calloc((size_t)num_prompts, sizeof *jobs);
    pthread_t *th = calloc((size_t)num_prompts, sizeof *th);
    char *started = calloc((size_t)num_prompts, 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);

    fprintf(stderr, "sluice bench serve: %s model %s (vocab %d); %d prompts of %d tokens, %d output tokens, rate %s%s\n",
            url, model, vocab, num_prompts, input_len, output_len, rate_s,
            max_conc ? ", concurrency capped" : "");
    sh.t0 = sl_time_s();
    for (int i = 0; i < num_prompts; i++) {
        double wait = sh.t0 + delay[i] - sl_time_s();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
            while (nanosleep(&ts, &ts) && errno == EINTR) {
            }
        }
        jobs[i] = (bs_job){.sh = &sh, .idx = i, .res = &res[i]};
        if (pthread_create(&th[i], &attr, bs_worker, &jobs[i])) {
            snprintf(res[i].err, sizeof res[i].err, "cannot start a thread");
            continue;
        }
        started[i] = 1;
    }
    for (int i = 0; i < num_prompts; i++)
        if (started[i]) pthread_join(th[i], NULL);
    double duration = sl_time_s() - sh.t0;
    pthread_attr_destroy(&attr);

    /* aggregate */
    int completed = 0, failed = 0;
    long long in_tok = 0, out_tok = 0;
    int n_itl = 0;
    for (int i = 0; i < num_prompts; i++) {
        if (!res[i].ok) {
            if (failed < 5) fprintf(stderr, "sluice bench serve: request %d failed: %s\n", i, res[i].err);
            failed++;
            continue;
        }
        completed++;
        in_tok += res[i].prompt_tokens ? res[i].prompt_tokens : input_len;
        out_tok += res[i].output_tokens;
        n_itl += res[i].n_itl;
    }
    double *ttft = malloc(((size_t)completed + 1) * sizeof(double));
    double *tpot = malloc(((size_t)completed + 1) * sizeof(double));
    double *e2el = malloc(((size_t)completed + 1) * sizeof(double));
    double *itl = malloc(((size_t)n_itl + 1) * sizeof(double));
    int nt = 0, np = 0, ni = 0;
    int n_buckets = (int)ceil(duration) + 1;
    long long *per_s = calloc((size_t)n_buckets, sizeof *per_s);
    bs_edge *ev = malloc(((size_t)completed * 2 + 1) * sizeof *ev);
    int ne = 0;
    for (int i = 0; i < num_prompts; i++) {
        bs_result *r = &res[i];
        if (!r->ok) continue;
        ttft[nt] = r->ttft;
        e2el[nt++] = r->e2el;
        if (r->output_tokens > 1) tpot[np++] = (r->e2el - r->ttft) / (r->output_tokens - 1);
        double tk = r->start + r->ttft;
        int b = (int)tk;
        if (b >= 0 && b < n_buckets) per_s[b]++;
        for (int k = 0; k < r->n_itl; k++) {
            itl[ni++] = r->itl[k];
            tk += r->itl[k];
            b = (int)tk;
            if (b >= 0 && b < n_buckets) per_s[b]++;
        }
        ev[ne++] = (bs_edge){r->start, 1};
        ev[ne++] = (bs_edge){r->start + r->e2el, -1};
    }
    long long max_tps = 0;
    for (int b = 0; b < n_buckets; b++) max_tps = per_s[b] > max_tps ? per_s[b] : max_tps;
    /* peak in flight: sweep starts and ends (ends first at equal times) */
    int max_conc_seen = 0, cur = 0;
    qsort(ev, (size_t)ne, sizeof *ev, cmp_edge);
    for (int i = 0; i < ne; i++) {
        cur += ev[i].d;
        if (cur > max_conc_seen) max_conc_seen = cur;
    }
    bs_stat s_ttft = stats_ms(ttft, nt), s_tpot = stats_ms(tpot, np), s_itl = stats_ms(itl, ni),
            s_e2el = stats_ms(e2el, nt);
    double req_tp = completed / duration, out_tp = (double)out_tok / duration,
           tot_tp = (double)(in_tok + out_tok) / duration;

    printf("============ Serving Benchmark Result ============\n");
    printf("%-36s %10d\n", "Successful requests:", completed);
    printf("%-36s %10d\n", "Failed requests:", failed);
    printf("%-36s %10s\n", "Request rate (req/s):", rate_s);
    printf("%-36s %10d\n", "Max concurrency:", max_conc);
    printf("%-36s %10.2f\n", "Benchmark duration (s):", duration);
    printf("%-36s %10lld\n", "Total input tokens:", in_tok);
    printf("%-36s %10lld\n", "Total generated tokens:", out_tok);
    printf("%-36s %10.2f\n", "Request throughput (req/s):", req_tp);
    printf("%-36s %10.2f\n", "Output token throughput (tok/s):", out_tp);
    printf("%-36s %10.2f\n", "Total token throughput (tok/s):", tot_tp);
    printf("%-36s %10lld\n", "Peak output token throughput (tok/s):", max_tps);
    printf("%-36s %10d\n", "Peak concurrent requests:", max_conc_seen);
    print_stat("---------------Time to First Token----------------", "ttft", s_ttft);
    print_stat("-----Time per Output Token (excl. 1st token)------", "tpot", s_tpot);
    print_stat("---------------Inter-token Latency----------------", "itl", s_itl);
    print_stat("----------------End-to-end Latency----------------", "e2el", s_e2el);
    printf("==================================================\n");

    int status = completed ? 0 : 1;
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) {
            fprintf(stderr, "sluice bench serve: cannot write %s\n", json_path);
            status = 1;
        } else {
            char date[32];
            time_t now = time(NULL);
            struct tm tmv;
            strftime(date, sizeof date, "%Y%m%d-%H%M%S", localtime_r(&now, &tmv));
            fprintf(f, "{\n  \"date\": \"%s\", \"endpoint_type\": \"openai\", \"backend\": \"sluice\", ", date);
            fprintf(f, "\"model_id\": \"%s\", \"num_prompts\": %d, ", model, num_prompts);
            if (isfinite(rate)) fprintf(f, "\"request_rate\": %.6g, ", rate);
            else fprintf(f, "\"request_rate\": \"inf\", ");
            fprintf(f, "\"burstiness\": 1.0, ");
            if (max_conc) fprintf(f, "\"max_concurrency\": %d, ", max_conc);
            else fprintf(f, "\"max_concurrency\": null, ");
            fprintf(f, "\"input_len\": %d, \"output_len\": %d,\n", input_len, output_len);
            fprintf(f,
                    "  \"duration\": %.6f, \"completed\": %d, \"failed\": %d, \"total_input_tokens\": %lld, "
                    "\"total_output_tokens\": %lld, \"request_throughput\": %.6f, \"request_goodput\": null, "
                    "\"output_throughput\": %.6f, \"total_token_throughput\": %.6f, \"max_output_tokens_per_s\": %lld, "
                    "\"max_concurrent_requests\": %d",
                    duration, completed, failed, in_tok, out_tok, req_tp, out_tp, tot_tp, max_tps, max_conc_seen);
            json_stat(f, "ttft", s_ttft);
            json_stat(f, "tpot", s_tpot);
            json_stat(f, "itl", s_itl);
            json_stat(f, "e2el", s_e2el);
            fprintf(f, "\n}\n");
            if (fclose(f)) {
                fprintf(stderr, "sluice bench serve: cannot write %s\n", json_path);
                status = 1;
            }
        }
    }
    for (int i = 0; i < num_prompts; i++) free(res[i].itl);
    free(res), free(jobs), free(th), free(started), free(delay), free(sh.prompts);
    free(ttft), free(tpot), free(e2el), free(itl), free(per_s), free(ev);
    if (max_conc) sem_destroy(&sh.slots);
    return status;
}
