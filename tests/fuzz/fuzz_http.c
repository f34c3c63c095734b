/* libFuzzer target for the HTTP layer (server/http.c) and the API's request handling
 * (server/api*.c: routing, JSON, every request field, responses and SSE) without sockets:
 * in-memory connections of http.h, and a fake engine that answers each submitted request
 * with a few tokens (or abort events) through the same event structures as the real one.
 *
 * The first input byte picks the mode:
 *   0-1: the rest is raw bytes on one connection, fed in pieces, then end of stream (mode 1
 *        drops the connection with the request still in flight instead);
 *   2-4: the rest is the JSON body of POST /v1/completions, /v1/chat/completions or /tokenize.
 * After each input every request must be finished and every connection freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/chat.h"
#include "models/gguf.h"
#include "models/mkmodel.h"
#include "models/tokenizer.h"
#include "server/api.h"
#include "server/http.h"

/* ---- the fake engine ------------------------------------------------------------------------ */

typedef struct fake_req {
    struct fake_req *next;
    uint64_t id;
    void *user;
    int n, max_tokens, n_prompt;
    bool aborted;
} fake_req;

static fake_req *reqs;
static uint64_t next_id = 1;

static int fake_submit(void *impl, const sl_engine_req *r, uint64_t *id) {
    (void)impl;
    if (!r->prompt || r->n_prompt < 1 || r->sp.n < 1 || r->sp.max_tokens < 1) abort(); /* the API must not */
    fake_req *q = calloc(1, sizeof *q);
    q->id = next_id++;
    q->user = r->user;
    q->n = r->sp.n;
    q->max_tokens = r->sp.max_tokens < 3 ? r->sp.max_tokens : 3;
    q->n_prompt = r->n_prompt;
    q->next = reqs;
    reqs = q;
    *id = q->id;
    return 0;
}

static void fake_abort(void *impl, uint64_t id) {
    (void)impl;
    for (fake_req *q = reqs; q; q = q->next)
        if (q->id == id) q->aborted = true;
}

static sl_engine_event *new_event(fake_req *q, int index) {
    sl_engine_event *e = calloc(1, sizeof *e);
    e->id = q->id;
    e->user = q->user;
    e->index = index;
    e->token = -1;
    e->stop_string = -1;
    e->n_prompt = q->n_prompt;
    e->t_arrival = e->t_first_scheduled = e->t_first_token = e->t_event = 0;
    return e;
}

/* Every request answered at once: per sequence max_tokens token events (text "ab\xc3\xa9"),
 * the last one finishing with "length", or a single abort event when aborted. */
static sl_engine_event *fake_poll(void *impl) {
    (void)impl;
    sl_engine_event *head = NULL, **tail = &head;
    while (reqs) {
        fake_req *q = reqs;
        reqs = q->next;
        sl_engine_event *last = NULL;
        for (int s = 0; s < q->n; s++) {
            if (q->aborted) {
                sl_engine_event *e = new_event(q, s);
                e->finish = SL_FINISH_ABORT;
                *tail = last = e, tail = &e->next;
                continue;
            }
            for (int t = 0; t < q->max_tokens; t++) {
                sl_engine_event *e = new_event(q, s);
                e->token = 3 + t;
                e->logprob = -1.5f;
                e->n_top = 2;
                e->top_ids[0] = 3, e->top_ids[1] = 4;
                e->top_lps[0] = -0.5f, e->top_lps[1] = -2.0f;
                e->text = "ab\xc3\xa9";
                e->text_len = 4;
                e->n_generated = t + 1;
                if (t + 1 == q->max_tokens) e->finish = SL_FINISH_LENGTH;
                *tail = last = e, tail = &e->next;
            }
        }
        last->done = true; /* the request's last event */
        free(q);
    }
    return head;
}

static void fake_release(void *impl, sl_engine_event *list) {
    (void)impl;
    while (list) {
        sl_engine_event *n = list->next;
        free(list);
        list = n;
    }
}

static void fake_stats(void *impl, sl_engine_stats *st) {
    (void)impl;
    memset(st, 0, sizeof *st);
}

/* ---- set-up ------------------------------------------------------------------------------ */

static sl_api *api;
static sl_http_server *srv;
static sl_tok *tok;
static sl_chat *chat;
static size_t out_bytes;
static bool closed;

static void sink(void *ctx, const char *data, size_t len) {
    (void)ctx;
    if (!data) {
        closed = true;
        return;
    }
    out_bytes += len;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    sl_log_level_current = SL_LOG_OFF;
    char path[] = "/tmp/fuzz_http_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
    sl_mkmodel_opts o;
    sl_mkmodel_defaults(&o);
    o.dim = 32, o.layers = 1, o.heads = 2, o.kv_heads = 1, o.ff = 32, o.vocab = 300;
    char err[SL_ERRMSG];
    sl_gguf *g = NULL;
    if (sl_mkmodel(&o, path, err) || sl_gguf_open(&g, path, err) || sl_tok_create(&tok, g, err)) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        abort();
    }
    if (sl_chat_create_str(&chat, "chatml", 6, "<s>", "</s>", err)) abort();
    sl_gguf_close(g);
    unlink(path);
    sl_api_config ac = {.served_model_name = "m", .model_root = "/m.gguf", .max_model_len = 64, .max_num_seqs = 8,
                        .max_queue = 64, .inline_tokenize_bytes = 1 << 20};
    sl_api_create(&api, &ac, NULL);
    sl_api_engine e = {.submit = fake_submit, .abort = fake_abort, .poll = fake_poll, .release = fake_release,
                       .stats = fake_stats};
    sl_api_set_model(api, &e, tok, chat, 300, 64);
    sl_http_config hc;
    sl_http_config_defaults(&hc);
    hc.max_header_bytes = 2048;
    hc.max_body_bytes = 1 << 16;
    hc.error_body = sl_api_error_body;
    sl_http_server_create_mem(&srv, &hc, sl_api_handle, api, sink, NULL);
    return 0;
}

static void settle(void) {
    for (int i = 0; i < 100 && sl_api_n_inflight(api); i++) sl_api_pump(api);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 5;
    data++, size--;
    closed = false;
    sl_http_conn *c = sl_http_mem_open(srv);
    if (mode <= 1) {
        /* pieces of varying size, the engine answering in between */
        size_t off = 0, step = 1;
        while (off < size && !closed) {
            size_t k = size - off < step ? size - off : step;
            sl_http_mem_feed(c, (const char *)data + off, k);
            off += k;
            step = step * 3 + 1;
            if (mode == 0) sl_api_pump(api);
        }
        if (closed) {
            /* the connection is gone (and maybe freed): nothing more to feed */
        } else if (mode == 1) sl_http_mem_close(c);
        else if (!closed) sl_http_mem_feed(c, NULL, 0);
    } else {
        static const char *const paths[3] = {"/v1/completions", "/v1/chat/completions", "/tokenize"};
        char head[256];
        int hl = snprintf(head, sizeof head,
                          "POST %s HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                          paths[mode - 2], size);
        sl_http_mem_feed(c, head, (size_t)hl);
        if (size) sl_http_mem_feed(c, (const char *)data, size);
        settle();
        if (!closed) sl_http_mem_feed(c, NULL, 0);
    }
    settle();
    if (!closed) sl_http_mem_close(c);
    settle();
    if (sl_api_n_inflight(api) != 0 || sl_http_n_conns(srv) != 0 || sl_http_n_active(srv) != 0) {
        fprintf(stderr, "fuzz_http: left %d requests, %d connections\n", sl_api_n_inflight(api), sl_http_n_conns(srv));
        abort();
    }
    return 0;
}
