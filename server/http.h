/* http.h — HTTP/1.1 server on a libuv loop, requests parsed by llhttp.
 *
 * One loop thread runs everything here; no function is thread-safe.
 *
 * Connections. Keep-alive by default for HTTP/1.1 (HTTP/1.0 only with "Connection:
 * keep-alive"). Requests on one connection are handled one at a time: after a request is
 * complete the parser pauses until the handler has finished its response, so pipelined
 * requests are answered in order. Bytes that arrive meanwhile are kept (up to
 * max_pending_bytes, then reading stops: backpressure); reading continues so that a client
 * that goes away is noticed at once (its request is aborted, see sl_http_on_abort). An end of
 * stream from the client counts as going away (as in vLLM) while a request is being handled;
 * complete requests received before it are still answered, then the connection closes.
 * Request bodies may come with Content-Length or chunked transfer encoding; "Expect:
 * 100-continue" is answered.
 *
 * Limits, each with the response it gives (every error response closes the connection; its
 * body comes from config.error_body):
 *   - malformed request (llhttp error): 400;
 *   - request line + headers over max_header_bytes, or more than SL_HTTP_MAX_HEADERS headers: 431;
 *   - body over max_body_bytes (announced or received): 413;
 *   - headers not complete within header_timeout_ms of the request's first byte, or the body
 *     not complete within body_timeout_ms of the end of the headers: 408;
 *   - a connection idle (between requests) for keepalive_timeout_ms is closed silently;
 *   - more than max_conns open connections: new ones get 503 and are closed;
 *   - a client that lets more than max_write_queue bytes of response pile up unread gets its
 *     request aborted and its connection closed.
 *
 * Ownership: a request (sl_http_req) belongs to the server. The handler must finish it exactly
 * once, with sl_http_respond or sl_http_stream_end; it stays valid until then, even when the
 * client has gone (writes then return -1 and do nothing). When the client goes away before
 * that, the abort callback (if set) is called once; the handler still finishes the request,
 * later: the callback may run inside one of the handler's own sl_http_* calls (a write that
 * finds the client gone), so it must not call sl_http_respond or sl_http_stream_* itself.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define SL_HTTP_MAX_HEADERS 100

typedef struct sl_http_config {
    const char *host;            /* address to listen on, e.g. "127.0.0.1" or "::" */
    int port;                    /* 0: an ephemeral port (see sl_http_port) */
    size_t max_header_bytes;     /* request line + headers */
    size_t max_body_bytes;
    size_t max_pending_bytes;    /* pipelined bytes buffered while a request is handled */
    size_t max_write_queue;      /* unsent response bytes before the client counts as stalled */
    int header_timeout_ms, body_timeout_ms, keepalive_timeout_ms;
    int max_conns;
    /* Writes the body of an error response the HTTP layer sends itself (400, 408, 413, 431,
     * 503) into out (cap bytes, NUL-terminated) and returns its content type; NULL: plain
     * text. Lets the API layer keep one table of error bodies. */
    const char *(*error_body)(int status, const char *message, char *out, size_t cap);
} sl_http_config;

/* 16 KiB headers, 32 MiB body, 1 MiB pending, 16 MiB write queue, 30 s header and body
 * timeouts, 15 s keep-alive, 4096 connections; host 127.0.0.1, port 8000. */
void sl_http_config_defaults(sl_http_config *c);

typedef struct sl_http_req sl_http_req;
typedef struct sl_http_server sl_http_server;

/* What the handler sees of a request. Strings are NUL-terminated and valid until the request
 * is finished. */
struct sl_http_req {
    const char *method;          /* "GET", "POST", ... */
    const char *path;            /* the target without its query string */
    const char *query;           /* after '?', or "" */
    const char *body;            /* [body_len], NUL-terminated (dechunked) */
    size_t body_len;
    const char *request_id;      /* X-Request-Id from the request (sanitized), else generated */
    double t_start;              /* sl_time_s() at the request's first byte */
    int http_minor;              /* HTTP/1.x */
    void *user;                  /* free for the handler */
};

/* Called on the loop thread for each complete request. */
typedef void (*sl_http_handler)(sl_http_req *r, void *ctx);

/* Starts listening on loop. Errors: a negative libuv code (uv_strerror) and a message. */
int sl_http_server_create(sl_http_server **out, uv_loop_t *loop, const sl_http_config *c, sl_http_handler h,
                          void *ctx, char *err, size_t err_len);
/* The port actually bound. */
int sl_http_port(const sl_http_server *s);
/* Stops accepting; idle connections are closed, busy ones close after their current
 * response (which says "Connection: close"). */
void sl_http_server_stop_accepting(sl_http_server *s);
/* Open connections and requests not yet finished. */
int sl_http_n_conns(const sl_http_server *s);
int sl_http_n_active(const sl_http_server *s);
/* Connections with response bytes still queued in libuv, or closing after them: closing the
 * server before they are done would cut those responses short. */
int sl_http_n_flushing(const sl_http_server *s);
/* Closes every connection (unfinished requests are aborted first: their handlers still
 * finish them) and the listener; cb(ctx) runs once every handle is closed and every request
 * finished; then sl_http_server_destroy frees the server. */
void sl_http_server_close(sl_http_server *s, void (*cb)(void *ctx), void *ctx);
void sl_http_server_destroy(sl_http_server *s);

/* A request header by name (case-insensitive); NULL when absent. Repeated headers: the first. */
const char *sl_http_header(const sl_http_req *r, const char *name);

/* Sends a whole response: status line, Content-Type, Content-Length, X-Request-Id,
 * Connection, then extra_headers (NULL or "Name: value\r\n" lines) and the body. Finishes r. */
void sl_http_respond(sl_http_req *r, int status, const char *content_type, const char *extra_headers,
                     const char *body, size_t len);
/* Starts a streamed response (chunked for HTTP/1.1; for HTTP/1.0 the body ends when the
 * connection closes). Returns 0, or -1 when the client has gone. */
int sl_http_stream_begin(sl_http_req *r, int status, const char *content_type, const char *extra_headers);
/* Sends a piece of a streamed response (len > 0). 0, or -1 when the client has gone or
 * stalled. */
int sl_http_stream_write(sl_http_req *r, const char *data, size_t len);
/* Ends a streamed response and finishes r. */
void sl_http_stream_end(sl_http_req *r);
/* True once the client has gone (writes would be dropped). */
bool sl_http_req_gone(const sl_http_req *r);
/* The callback to run once when the client goes away before r is finished. */
void sl_http_on_abort(sl_http_req *r, void (*cb)(sl_http_req *r, void *arg), void *arg);
/* Makes the connection close after this response. */
void sl_http_req_close_after(sl_http_req *r);

/* Reason phrase of a status code ("Not Found"); "Unknown" for others. */
const char *sl_http_reason(int status);

/* ---- in-memory connections, for the fuzzer and tests: no socket, no timers ------------- */
typedef struct sl_http_conn sl_http_conn;
/* A server without a loop or listener: connections are fed by hand and what they would
 * send goes to sink(ctx, data, len). Closing a connection is reported by sink(ctx, NULL, 0). */
int sl_http_server_create_mem(sl_http_server **out, const sl_http_config *c, sl_http_handler h, void *ctx,
                              void (*sink)(void *ctx, const char *data, size_t len), void *sink_ctx);
sl_http_conn *sl_http_mem_open(sl_http_server *s);
/* Feeds received bytes (len 0: the client's end of stream). */
void sl_http_mem_feed(sl_http_conn *c, const char *data, size_t len);
/* Drops the connection as if the client had reset it; its memory is freed once its request
 * (if any) is finished. */
void sl_http_mem_close(sl_http_conn *c);

#endif
