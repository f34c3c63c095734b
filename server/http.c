/* http.c — see http.h. A connection runs a small state machine:
 *
 *   IDLE ──first byte──▶ HEADERS ──headers complete──▶ BODY ──message complete──▶ HANDLING
 *     ▲                                                                              │
 *     └──────────── response finished (keep-alive); pipelined bytes parsed next ─────┘
 *   any ──error response or Connection: close──▶ LINGER (write side shut, input discarded
 *   for a moment so the client reads the response before the socket closes) ──▶ closed
 *
 * The parser pauses in on_message_complete, and the handler runs only after llhttp_execute
 * has returned, so a handler that answers at once never re-enters the parser; a loop in
 * process_input takes the pipelined requests one after the other.
 */
#include "http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llhttp.h>

#include "../base/base.h"

enum { ST_IDLE, ST_HEADERS, ST_BODY, ST_HANDLING, ST_LINGER };
enum { LINGER_MS = 2000, READ_CHUNK = 65536, REQ_ID_MAX = 64 };

typedef struct hdr {
    uint32_t name, value; /* offsets into hbuf, NUL-terminated */
} hdr;

struct sl_http_conn {
    sl_http_conn *prev, *next;
    sl_http_server *srv;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    int open_handles;            /* libuv handles not yet closed */
    bool closing;                /* uv_close called (or a memory connection dropped) */
    bool gone;                   /* nothing more can be written */
    bool shutting;               /* uv_shutdown issued */
    bool reading;
    bool in_process;             /* inside process_input */
    int busy;                    /* > 0: c is on the stack, not to be freed yet */
    bool eof;
    int state;
    llhttp_t parser;
    /* the request being read: request target and headers in hbuf */
    char *hbuf;                  /* [hcap] */
    size_t hlen, hcap, item_start;
    uint32_t url;
    bool have_url;
    hdr hdr[SL_HTTP_MAX_HEADERS];
    int n_hdr;
    int err_status;              /* a limit our callbacks hit (413, 431), else 0 */
    const char *err_msg;
    char *body;
    size_t body_len, body_cap;
    /* bytes received, not yet parsed */
    char *pend;
    size_t pend_len, pend_cap;
    /* the request handed to the handler */
    sl_http_req req;
    bool req_active, is_head, close_after, streaming, chunked_out;
    void (*abort_cb)(sl_http_req *r, void *arg);
    void *abort_arg;
    char method[24];
    char req_id[REQ_ID_MAX + 1];
};

struct sl_http_server {
    uv_loop_t *loop;             /* NULL for an in-memory server */
    uv_tcp_t listener;
    bool listening;
    sl_http_config cfg;
    sl_http_handler handler;
    void *ctx;
    void (*sink)(void *ctx, const char *data, size_t len);
    void *sink_ctx;
    llhttp_settings_t settings;
    sl_http_conn *conns;
    int n_conns, n_active, port;
    bool closing, stopped;
    void (*close_cb)(void *ctx);
    void *close_ctx;
    sl_rng rng;
};

void sl_http_config_defaults(sl_http_config *c) {
    *c = (sl_http_config){
        .host = "127.0.0.1",
        .port = 8000,
        .max_header_bytes = 16 << 10,
        .max_body_bytes = 32 << 20,
        .max_pending_bytes = 1 << 20,
        .max_write_queue = 16 << 20,
        .header_timeout_ms = 30000,
        .body_timeout_ms = 30000,
        .keepalive_timeout_ms = 15000,
        .max_conns = 4096,
    };
}

const char *sl_http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static void conn_close(sl_http_conn *c);
static void process_input(sl_http_conn *c);
static void maybe_server_closed(sl_http_server *s);

/* ---- memory and lifetime ---------------------------------------------------------------- */

static void conn_free(sl_http_conn *c) {
    sl_http_server *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_conns--;
    free(c->hbuf);
    free(c->body);
    free(c->pend);
    free(c);
    maybe_server_closed(s);
}

/* Frees c once its handles are closed and its request is finished. */
static void conn_maybe_free(sl_http_conn *c) {
    if (c->closing && c->open_handles == 0 && !c->req_active && c->busy == 0) conn_free(c);
}

static void on_handle_closed(uv_handle_t *h) {
    sl_http_conn *c = h->data;
    c->open_handles--;
    conn_maybe_free(c);
}

static void maybe_server_closed(sl_http_server *s) {
    if (s->closing && s->close_cb && !s->listening && s->n_conns == 0 && s->n_active == 0) {
        void (*cb)(void *) = s->close_cb;
        s->close_cb = NULL;
        cb(s->close_ctx);
    }
}

static void timer_start(sl_http_conn *c, int ms, uv_timer_cb cb) {
    if (c->srv->loop && !c->closing) uv_timer_start(&c->timer, cb, (uint64_t)(ms > 0 ? ms : 1), 0);
}

static void timer_stop(sl_http_conn *c) {
    if (c->srv->loop && !c->closing) uv_timer_stop(&c->timer);
}

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct wreq {
    uv_write_t w;
    sl_http_conn *c;
    char data[];
} wreq;

static void on_written(uv_write_t *w, int status) {
    wreq *q = (wreq *)w;
    sl_http_conn *c = q->c;
    free(q);
    if (status < 0 && !c->closing) conn_close(c);
}

/* Sends bufs[0..n); -1 (nothing sent) when the client has gone or stalled. */
static int conn_writev(sl_http_conn *c, uv_buf_t *bufs, int n) {
    if (c->gone) return -1;
    sl_http_server *s = c->srv;
    if (!s->loop) {
        for (int i = 0; i < n; i++)
            if (bufs[i].len) s->sink(s->sink_ctx, bufs[i].base, bufs[i].len);
        return 0;
    }
    if (c->tcp.write_queue_size > s->cfg.max_write_queue) {
        SL_LOG(SL_LOG_WARN, "http", "request %s: client stopped reading (%zu bytes queued): closing", c->req_id,
               (size_t)c->tcp.write_queue_size);
        conn_close(c);
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) total += bufs[i].len;
    size_t done = 0;
    if (c->tcp.write_queue_size == 0) {
        int k = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
        if (k > 0) done = (size_t)k;
        else if (k < 0 && k != UV_EAGAIN) {
            conn_close(c);
            return -1;
        }
    }
    if (done == total) return 0;
    wreq *q = malloc(sizeof *q + total - done);
    SL_CHECK(q);
    q->c = c;
    size_t off = 0, skip = done;
    for (int i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(q->data + off, bufs[i].base + skip, len - skip);
        off += len - skip;
        skip = 0;
    }
    uv_buf_t b = uv_buf_init(q->data, (unsigned)off);
    int rc = uv_write(&q->w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        free(q);
        conn_close(c);
        return -1;
    }
    return 0;
}

static int conn_write(sl_http_conn *c, const char *data, size_t len) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    return conn_writev(c, &b, 1);
}

/* ---- closing ------------------------------------------------------------------------------ */

static void abort_request(sl_http_conn *c) {
    if (c->req_active && c->abort_cb) {
        void (*cb)(sl_http_req *, void *) = c->abort_cb;
        c->abort_cb = NULL;
        cb(&c->req, c->abort_arg);
    }
}

/* Closes at once (the client has gone, or we give up on it). */
static void conn_close(sl_http_conn *c) {
    if (c->closing) return;
    c->closing = c->gone = true;
    sl_http_server *s = c->srv;
    if (s->loop) {
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    } else {
        s->sink(s->sink_ctx, NULL, 0);
    }
    c->busy++;
    abort_request(c);
    c->busy--;
    conn_maybe_free(c);
}

static void on_linger_timeout(uv_timer_t *t) { conn_close(t->data); }

static void on_shutdown(uv_shutdown_t *sh, int status) {
    sl_http_conn *c = sh->data;
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    /* keep reading (and discarding) for a moment: closing with unread input would reset the
     * connection and could destroy the response before the client read it */
    timer_start(c, LINGER_MS, on_linger_timeout);
}

/* Closes after what was written has gone out. */
static void conn_close_graceful(sl_http_conn *c) {
    if (c->closing || c->shutting) return;
    c->state = ST_LINGER;
    c->pend_len = 0;
    if (!c->srv->loop) {
        conn_close(c);
        return;
    }
    c->shutting = true;
    c->gone = true;
    c->shut.data = c;
    timer_stop(c);
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) conn_close(c);
}

/* An error response from the HTTP layer itself; then the connection closes. */
static void send_error(sl_http_conn *c, int status, const char *msg) {
    char body[512];
    const char *ctype = "text/plain; charset=utf-8";
    if (c->srv->cfg.error_body) ctype = c->srv->cfg.error_body(status, msg, body, sizeof body);
    else snprintf(body, sizeof body, "%s\n", msg);
    char head[512];
    size_t blen = strlen(body);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, sl_http_reason(status), ctype, blen);
    uv_buf_t b[2] = {uv_buf_init(head, (unsigned)hl), uv_buf_init(body, (unsigned)blen)};
    SL_LOG(SL_LOG_INFO, "http", "%d %s", status, msg);
    conn_writev(c, b, 2);
    conn_close_graceful(c);
}

/* ---- parsing ------------------------------------------------------------------------------ */

/* Appends request-target or header bytes, within max_header_bytes. */
static int hb_append(sl_http_conn *c, const char *at, size_t len) {
    size_t limit = c->srv->cfg.max_header_bytes;
    if (c->hlen + len + 1 > limit) {
        c->err_status = 431;
        c->err_msg = "request line and headers are larger than the limit";
        return HPE_USER;
    }
    if (!c->hbuf) {
        c->hcap = limit + 1;
        c->hbuf = malloc(c->hcap);
        SL_CHECK(c->hbuf);
    }
    memcpy(c->hbuf + c->hlen, at, len);
    c->hlen += len;
    return 0;
}

/* Ends the current item: NUL-terminates it and returns its offset. */
static int hb_end(sl_http_conn *c, uint32_t *off) {
    int rc = hb_append(c, "", 1);
    if (rc) return rc;
    *off = (uint32_t)c->item_start;
    c->item_start = c->hlen;
    return 0;
}

static sl_http_conn *pconn(llhttp_t *p) { return p->data; }

static void on_request_timeout(uv_timer_t *t) {
    sl_http_conn *c = t->data;
    if (c->state == ST_HEADERS) send_error(c, 408, "timed out reading the request headers");
    else if (c->state == ST_BODY) send_error(c, 408, "timed out reading the request body");
    else conn_close(c);
}

static int cb_message_begin(llhttp_t *p) {
    sl_http_conn *c = pconn(p);
    c->hlen = c->item_start = 0;
    c->have_url = false;
    c->n_hdr = 0;
    c->body_len = 0;
    c->err_status = 0;
    c->state = ST_HEADERS;
    c->req.t_start = sl_time_s();
    timer_start(c, c->srv->cfg.header_timeout_ms, on_request_timeout);
    return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len) { return hb_append(pconn(p), at, len); }

static int cb_url_complete(llhttp_t *p) {
    sl_http_conn *c = pconn(p);
    c->have_url = true;
    return hb_end(c, &c->url);
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len) { return hb_append(pconn(p), at, len); }

static int cb_header_field_complete(llhttp_t *p) {
    sl_http_conn *c = pconn(p);
    if (c->n_hdr == SL_HTTP_MAX_HEADERS) {
        c->err_status = 431;
        c->err_msg = "too many request headers";
        return HPE_USER;
    }
    return hb_end(c, &c->hdr[c->n_hdr].name);
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len) { return hb_append(pconn(p), at, len); }

static int cb_header_value_complete(llhttp_t *p) {
    sl_http_conn *c = pconn(p);
    int rc = hb_end(c, &c->hdr[c->n_hdr].value);
    if (!rc) c->n_hdr++;
    return rc;
}

static const char *find_header(const sl_http_conn *c, const char *name) {
    for (int i = 0; i < c->n_hdr; i++)
        if (!strcasecmp(c->hbuf + c->hdr[i].name, name)) return c->hbuf + c->hdr[i].value;
    return NULL;
}

static int cb_headers_complete(llhttp_t *p) {
    sl_http_conn *c = pconn(p);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->cfg.max_body_bytes) {
        c->err_status = 413;
        c->err_msg = "request body is larger than the limit";
        return -1;
    }
    const char *expect = find_header(c, "expect");
    if (expect && p->http_minor >= 1 && !strcasecmp(expect, "100-continue") && c->srv->loop)
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->state = ST_BODY;
    timer_start(c, c->srv->cfg.body_timeout_ms, on_request_timeout);
    return 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t len) {
    sl_http_conn *c = pconn(p);
    if (c->body_len + len > c->srv->cfg.max_body_bytes) {
        c->err_status = 413;
        c->err_msg = "request body is larger than the limit";
        return HPE_USER;
    }
    if (c->body_len + len + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + len + 1) cap *= 2;
        char *b = realloc(c->body, cap);
        SL_CHECK(b);
        c->body = b;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int cb_message_complete(llhttp_t *p) {
    sl_http_conn *c = pconn(p);
    if (!llhttp_should_keep_alive(p) || p->upgrade) c->close_after = true;
    c->state = ST_HANDLING;
    timer_stop(c);
    return HPE_PAUSED;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static void make_request_id(sl_http_conn *c) {
    const char *v = find_header(c, "x-request-id");
    size_t n = 0;
    if (v)
        for (; *v && n < REQ_ID_MAX; v++)
            if (isalnum((unsigned char)*v) || strchr("-_.:", *v)) c->req_id[n++] = *v;
    if (n == 0) n = (size_t)snprintf(c->req_id, sizeof c->req_id, "%016llx", (unsigned long long)sl_rng_u64(&c->srv->rng));
    c->req_id[n] = 0;
}

static void dispatch(sl_http_conn *c) {
    sl_http_server *s = c->srv;
    char *url = c->have_url ? c->hbuf + c->url : (char *)"/";
    /* absolute-form targets (http://host/path): keep the path */
    if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8)) {
        char *slash = strchr(strstr(url, "//") + 2, '/');
        url = slash ? slash : (char *)"/";
    }
    char *q = strchr(url, '?');
    if (q) *q++ = 0;
    snprintf(c->method, sizeof c->method, "%s", llhttp_method_name((llhttp_method_t)c->parser.method));
    if (!c->body) {
        c->body = malloc(1);
        SL_CHECK(c->body);
        c->body_cap = 1;
    }
    c->body[c->body_len] = 0;
    make_request_id(c);
    double t0 = c->req.t_start;
    c->req = (sl_http_req){.method = c->method, .path = url, .query = q ? q : "", .body = c->body,
                           .body_len = c->body_len, .request_id = c->req_id, .t_start = t0,
                           .http_minor = c->parser.http_minor};
    c->is_head = c->parser.method == HTTP_HEAD;
    c->streaming = c->chunked_out = false;
    c->abort_cb = NULL;
    c->req_active = true;
    s->n_active++;
    s->handler(&c->req, s->ctx);
}

static sl_http_conn *req_conn(sl_http_req *r) {
    return (sl_http_conn *)((char *)r - offsetof(sl_http_conn, req));
}

/* Parses what is pending until a request is handed out, the input runs out, or an error. */
static void process_input(sl_http_conn *c) {
    if (c->in_process) return;
    c->in_process = true;
    c->busy++;
    while (!c->closing && !c->shutting && c->state != ST_HANDLING && c->pend_len > 0) {
        llhttp_errno_t e = llhttp_execute(&c->parser, c->pend, c->pend_len);
        size_t used = c->pend_len;
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
            used = (size_t)(llhttp_get_error_pos(&c->parser) - c->pend);
            if (e == HPE_PAUSED_UPGRADE) used = c->pend_len; /* not HTTP any more: dropped */
            llhttp_resume(&c->parser);
        } else if (e != HPE_OK) {
            if (c->err_status) send_error(c, c->err_status, c->err_msg);
            else {
                /* log a sanitized sample of the input where parsing stopped */
                const char *at = llhttp_get_error_pos(&c->parser);
                size_t off = at && at >= c->pend && at <= c->pend + c->pend_len ? (size_t)(at - c->pend) : 0;
                char sample[33];
                size_t k = 0;
                for (size_t i = off; i < c->pend_len && k < 32; i++)
                    sample[k++] = c->pend[i] >= 0x20 && c->pend[i] < 0x7F ? c->pend[i] : '.';
                sample[k] = 0;
                SL_LOG(SL_LOG_INFO, "http", "malformed request near \"%s\"", sample);
                char msg[200];
                snprintf(msg, sizeof msg, "malformed HTTP request: %s", llhttp_get_error_reason(&c->parser));
                send_error(c, 400, msg);
            }
            break;
        }
        memmove(c->pend, c->pend + used, c->pend_len - used);
        c->pend_len -= used;
        if (c->state == ST_HANDLING) dispatch(c);
    }
    if (!c->closing && !c->shutting && c->state == ST_IDLE && c->pend_len == 0 && c->eof) conn_close(c);
    c->in_process = false;
    c->busy--;
    conn_maybe_free(c); /* c may be gone from here on */
}

/* ---- reading ------------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)hint;
    sl_http_conn *c = h->data;
    if (c->pend_cap - c->pend_len < READ_CHUNK) {
        size_t cap = c->pend_len + READ_CHUNK;
        char *p = realloc(c->pend, cap);
        SL_CHECK(p);
        c->pend = p;
        c->pend_cap = cap;
    }
    *buf = uv_buf_init(c->pend + c->pend_len, (unsigned)(c->pend_cap - c->pend_len));
}

static void read_stop(sl_http_conn *c) {
    if (c->reading && c->srv->loop) uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

/* End of stream (UV_EOF) or an error from the client's side. A request in flight is
 * aborted, as vLLM does when its client disconnects; a partial request is dropped; complete
 * requests still pending after an end of stream are answered, then the connection closes. */
static void conn_eof(sl_http_conn *c, ssize_t n) {
    c->eof = true;
    if (c->state == ST_IDLE && c->pend_len > 0 && n == UV_EOF) process_input(c);
    else conn_close(c);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    (void)buf;
    sl_http_conn *c = st->data;
    if (c->closing) return;
    if (n < 0) {
        conn_eof(c, n);
        return;
    }
    if (n == 0) return;
    if (c->state == ST_LINGER) return; /* discarded */
    c->pend_len += (size_t)n;
    if (c->state == ST_HANDLING) {
        if (c->pend_len > c->srv->cfg.max_pending_bytes) read_stop(c);
        return;
    }
    process_input(c);
}

static void read_start(sl_http_conn *c) {
    if (c->reading || c->closing || !c->srv->loop) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
    else conn_close(c);
}

static void on_idle_timeout(uv_timer_t *t) {
    sl_http_conn *c = t->data;
    if (c->state == ST_IDLE && c->pend_len == 0) conn_close(c);
}

/* ---- finishing a request ------------------------------------------------------------------- */

static void finish(sl_http_conn *c) {
    SL_CHECK(c->req_active);
    sl_http_server *s = c->srv;
    c->req_active = false;
    c->abort_cb = NULL;
    s->n_active--;
    if (c->closing) {
        conn_maybe_free(c);
    } else if (c->close_after || c->shutting || (c->streaming && !c->chunked_out)) {
        conn_close_graceful(c);
    } else {
        c->state = ST_IDLE;
        timer_start(c, s->cfg.keepalive_timeout_ms, on_idle_timeout);
        read_start(c);
        process_input(c);
    }
    maybe_server_closed(s);
}

static size_t head_fmt(sl_http_conn *c, char *out, size_t cap, int status, const char *ctype, const char *extra,
                       const char *framing) {
    int n = snprintf(out, cap, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sX-Request-Id: %s\r\nConnection: %s\r\n%s\r\n",
                     status, sl_http_reason(status), ctype, framing, c->req_id,
                     c->close_after ? "close" : "keep-alive", extra ? extra : "");
    SL_CHECK(n > 0);
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

void sl_http_respond(sl_http_req *r, int status, const char *ctype, const char *extra, const char *body, size_t len) {
    sl_http_conn *c = req_conn(r);
    SL_CHECK(c->req_active && !c->streaming);
    if (c->srv->stopped) c->close_after = true;
    if (!c->gone) {
        char framing[64];
        snprintf(framing, sizeof framing, "Content-Length: %zu\r\n", len);
        size_t extra_len = extra ? strlen(extra) : 0;
        char stackbuf[1024];
        size_t cap = 256 + strlen(ctype) + extra_len + sizeof framing;
        char *head = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
        SL_CHECK(head);
        size_t hl = head_fmt(c, head, cap, status, ctype, extra, framing);
        uv_buf_t b[2] = {uv_buf_init(head, (unsigned)hl), uv_buf_init((char *)body, (unsigned)(c->is_head ? 0 : len))};
        conn_writev(c, b, 2);
        if (head != stackbuf) free(head);
    }
    finish(c);
}

int sl_http_stream_begin(sl_http_req *r, int status, const char *ctype, const char *extra) {
    sl_http_conn *c = req_conn(r);
    SL_CHECK(c->req_active && !c->streaming);
    c->streaming = true;
    c->chunked_out = r->http_minor >= 1;
    if (!c->chunked_out) c->close_after = true;
    if (c->gone) return -1;
    if (c->srv->stopped) c->close_after = true;
    size_t extra_len = extra ? strlen(extra) : 0;
    size_t cap = 256 + strlen(ctype) + extra_len + 64;
    char *head = malloc(cap);
    SL_CHECK(head);
    size_t hl = head_fmt(c, head, cap, status, ctype, extra,
                         c->chunked_out ? "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n"
                                        : "Cache-Control: no-cache\r\n");
    int rc = conn_write(c, head, hl);
    free(head);
    return rc;
}

int sl_http_stream_write(sl_http_req *r, const char *data, size_t len) {
    sl_http_conn *c = req_conn(r);
    SL_CHECK(c->req_active && c->streaming);
    if (c->gone) return -1;
    if (!len) return 0;
    if (c->is_head) return 0;
    if (!c->chunked_out) return conn_write(c, data, len);
    char pre[24];
    int pl = snprintf(pre, sizeof pre, "%zx\r\n", len);
    uv_buf_t b[3] = {uv_buf_init(pre, (unsigned)pl), uv_buf_init((char *)data, (unsigned)len), uv_buf_init("\r\n", 2)};
    return conn_writev(c, b, 3);
}

void sl_http_stream_end(sl_http_req *r) {
    sl_http_conn *c = req_conn(r);
    SL_CHECK(c->req_active && c->streaming);
    if (!c->gone && c->chunked_out && !c->is_head) conn_write(c, "0\r\n\r\n", 5);
    finish(c);
}

bool sl_http_req_gone(const sl_http_req *r) { return req_conn((sl_http_req *)r)->gone; }

void sl_http_on_abort(sl_http_req *r, void (*cb)(sl_http_req *, void *), void *arg) {
    sl_http_conn *c = req_conn(r);
    c->abort_cb = cb;
    c->abort_arg = arg;
    if (c->gone) abort_request(c);
}

void sl_http_req_close_after(sl_http_req *r) { req_conn(r)->close_after = true; }

const char *sl_http_header(const sl_http_req *r, const char *name) {
    return find_header(req_conn((sl_http_req *)r), name);
}

/* ---- connections and the server ------------------------------------------------------------ */

static sl_http_conn *conn_new(sl_http_server *s) {
    sl_http_conn *c = calloc(1, sizeof *c);
    SL_CHECK(c);
    c->srv = s;
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    c->state = ST_IDLE;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    return c;
}

static void on_connection(uv_stream_t *ls, int status) {
    sl_http_server *s = ls->data;
    if (status < 0) {
        SL_LOG(SL_LOG_WARN, "http", "accept: %s", uv_strerror(status));
        return;
    }
    sl_http_conn *c = conn_new(s);
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (s->n_conns > s->cfg.max_conns) {
        send_error(c, 503, "too many open connections");
        return;
    }
    timer_start(c, s->cfg.keepalive_timeout_ms, on_idle_timeout);
    read_start(c);
}

static void init_common(sl_http_server *s, const sl_http_config *cfg, sl_http_handler h, void *ctx) {
    s->cfg = *cfg;
    s->handler = h;
    s->ctx = ctx;
    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = cb_message_begin;
    s->settings.on_url = cb_url;
    s->settings.on_url_complete = cb_url_complete;
    s->settings.on_header_field = cb_header_field;
    s->settings.on_header_field_complete = cb_header_field_complete;
    s->settings.on_header_value = cb_header_value;
    s->settings.on_header_value_complete = cb_header_value_complete;
    s->settings.on_headers_complete = cb_headers_complete;
    s->settings.on_body = cb_body;
    s->settings.on_message_complete = cb_message_complete;
    sl_rng_seed(&s->rng, (uint64_t)(sl_time_s() * 1e9) ^ ((uint64_t)getpid() << 32));
}

int sl_http_server_create(sl_http_server **out, uv_loop_t *loop, const sl_http_config *cfg, sl_http_handler h,
                          void *ctx, char *err, size_t err_len) {
    sl_http_server *s = calloc(1, sizeof *s);
    SL_CHECK(s);
    init_common(s, cfg, h, ctx);
    s->loop = loop;
    struct sockaddr_storage addr;
    int rc = strchr(cfg->host, ':') ? uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr)
                                    : uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr);
    if (rc < 0) {
        snprintf(err, err_len, "invalid host address '%s'", cfg->host);
        free(s);
        return rc;
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection)) < 0) {
        snprintf(err, err_len, "cannot listen on %s port %d: %s", cfg->host, cfg->port, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_run(loop, UV_RUN_NOWAIT); /* let the close complete before s is freed */
        free(s);
        return rc;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    s->listening = true;
    *out = s;
    return 0;
}

int sl_http_port(const sl_http_server *s) { return s->port; }
int sl_http_n_conns(const sl_http_server *s) { return s->n_conns; }
int sl_http_n_active(const sl_http_server *s) { return s->n_active; }

int sl_http_n_flushing(const sl_http_server *s) {
    int n = 0;
    for (const sl_http_conn *c = s->conns; c; c = c->next)
        if (!c->closing && (c->shutting || uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) > 0)) n++;
    return n;
}

static void on_listener_closed(uv_handle_t *h) {
    sl_http_server *s = h->data;
    s->listening = false;
    maybe_server_closed(s);
}

void sl_http_server_stop_accepting(sl_http_server *s) {
    s->stopped = true;
    if (s->loop && s->listening && !uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (sl_http_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->req_active) c->close_after = true;
        else if (c->state == ST_IDLE && c->pend_len == 0) conn_close(c);
        else c->close_after = true;
    }
}

void sl_http_server_close(sl_http_server *s, void (*cb)(void *), void *ctx) {
    s->closing = true;
    s->close_cb = cb;
    s->close_ctx = ctx;
    sl_http_server_stop_accepting(s);
    for (sl_http_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    if (!s->loop) s->listening = false;
    maybe_server_closed(s);
}

void sl_http_server_destroy(sl_http_server *s) {
    if (!s) return;
    SL_CHECK(s->n_conns == 0);
    free(s);
}

/* ---- in-memory connections ----------------------------------------------------------------- */

int sl_http_server_create_mem(sl_http_server **out, const sl_http_config *cfg, sl_http_handler h, void *ctx,
                              void (*sink)(void *, const char *, size_t), void *sink_ctx) {
    sl_http_server *s = calloc(1, sizeof *s);
    SL_CHECK(s);
    init_common(s, cfg, h, ctx);
    s->sink = sink;
    s->sink_ctx = sink_ctx;
    s->listening = true;
    *out = s;
    return 0;
}

sl_http_conn *sl_http_mem_open(sl_http_server *s) {
    SL_CHECK(!s->loop);
    return conn_new(s);
}

void sl_http_mem_feed(sl_http_conn *c, const char *data, size_t len) {
    if (c->closing) return;
    if (len == 0) {
        conn_eof(c, UV_EOF);
        return;
    }
    if (c->state == ST_LINGER) return;
    if (c->pend_cap - c->pend_len < len) {
        c->pend_cap = c->pend_len + len;
        c->pend = realloc(c->pend, c->pend_cap);
        SL_CHECK(c->pend);
    }
    memcpy(c->pend + c->pend_len, data, len);
    c->pend_len += len;
    if (c->state != ST_HANDLING) process_input(c);
}

void sl_http_mem_close(sl_http_conn *c) {
    if (!c->closing) conn_close(c);
}
