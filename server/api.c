/* api.c — routing, authentication, the error table, and the endpoints that need no engine
 * request: /health, /v1/models, /tokenize, /detokenize, /metrics. See api.h. */
#include "api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../base/base.h"
#include "api_internal.h"

/* ---- the error table (API.md §4.2) ------------------------------------------------------ */

typedef struct err_kind {
    int status;
    const char *type;
    const char *code;            /* default code, or NULL */
    const char *headers;         /* extra response headers */
} err_kind;

static const err_kind ERRORS[] = {
    {400, "invalid_request_error", NULL, NULL},
    {401, "authentication_error", "invalid_api_key", "WWW-Authenticate: Bearer\r\n"},
    {403, "permission_error", NULL, NULL},
    {404, "not_found_error", NULL, NULL},
    {405, "invalid_request_error", "method_not_allowed", NULL},
    {408, "invalid_request_error", "request_timeout", NULL},
    {413, "invalid_request_error", "request_too_large", NULL},
    {429, "rate_limit_error", "rate_limit_exceeded", "Retry-After: 1\r\n"},
    {431, "invalid_request_error", "request_header_fields_too_large", NULL},
    {500, "server_error", NULL, NULL},
    {501, "not_supported_error", NULL, NULL},
    {503, "unavailable_error", NULL, "Retry-After: 5\r\n"},
};

static const err_kind *err_kind_of(int status) {
    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++)
        if (ERRORS[i].status == status) return &ERRORS[i];
    return status >= 500 ? &ERRORS[9] : &ERRORS[0];
}

static void error_json(sl_buf *b, int status, const char *msg, const char *param, const char *code) {
    const err_kind *k = err_kind_of(status);
    if (!code) code = k->code;
    sl_buf_puts(b, "{\"error\":{\"message\":");
    sl_buf_json_str(b, msg, strlen(msg));
    sl_buf_printf(b, ",\"type\":\"%s\",\"param\":", k->type);
    if (param) sl_buf_json_str(b, param, strlen(param));
    else sl_buf_puts(b, "null");
    sl_buf_puts(b, ",\"code\":");
    if (code) sl_buf_json_str(b, code, strlen(code));
    else sl_buf_puts(b, "null");
    sl_buf_puts(b, "}}");
}

const char *sl_api_error_body(int status, const char *message, char *out, size_t cap) {
    sl_buf b = {0};
    error_json(&b, status, message, NULL, NULL);
    snprintf(out, cap, "%s", b.p);
    sl_buf_free(&b);
    return "application/json";
}

void sl__api_log(const sl_http_req *r, int status, int prompt_tokens, int gen_tokens) {
    bool quiet = !strcmp(r->path, "/health") || !strcmp(r->path, "/metrics");
    SL_LOG(quiet && status < 400 ? SL_LOG_DEBUG : SL_LOG_INFO, "api", "%s %s %s %d prompt=%d gen=%d %.1f ms",
           r->request_id, r->method, r->path, status, prompt_tokens, gen_tokens, (sl_time_s() - r->t_start) * 1e3);
}

static void send_error(sl_api *a, sl_http_req *r, int status, const char *param, const char *code,
                       const char *extra_headers, const char *msg) {
    const err_kind *k = err_kind_of(status);
    sl_buf b = {0};
    error_json(&b, status, msg, param, code);
    char headers[256];
    snprintf(headers, sizeof headers, "%s%s", k->headers ? k->headers : "", extra_headers ? extra_headers : "");
    sl_http_respond(r, status, "application/json", headers, b.p, b.n);
    sl_buf_free(&b);
    sl_metrics_rejected(&a->metrics, k->type);
    SL_LOG(SL_LOG_INFO, "api", "%s %s %s %d %s", r->request_id, r->method, r->path, status, msg);
}

void sl__api_error(sl_api *a, sl_http_req *r, int status, const char *param, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    send_error(a, r, status, param, code, NULL, msg);
}

void sl__api_json(sl_api *a, sl_http_req *r, const sl_buf *body, int prompt_tokens, int gen_tokens) {
    (void)a;
    sl__api_log(r, 200, prompt_tokens, gen_tokens);
    sl_http_respond(r, 200, "application/json", NULL, body->p ? body->p : "", body->n);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static char *dup_or_null(const char *s) {
    if (!s) return NULL;
    char *d = strdup(s);
    SL_CHECK(d);
    return d;
}

void sl_api_create(sl_api **out, const sl_api_config *c, uv_loop_t *loop) {
    sl_api *a = sl_xcalloc(1, sizeof *a);
    a->cfg = *c;
    a->name = dup_or_null(c->served_model_name ? c->served_model_name : "model");
    a->root = dup_or_null(c->model_root ? c->model_root : "");
    a->key = c->api_key && *c->api_key ? dup_or_null(c->api_key) : NULL;
    a->cfg.served_model_name = a->name;
    a->cfg.model_root = a->root;
    a->cfg.api_key = a->key;
    a->loop = loop;
    a->state = SL_API_LOADING;
    a->created = (long long)time(NULL);
    sl_metrics_init(&a->metrics, a->name, c->max_model_len);
    sl_rng_seed(&a->rng, (uint64_t)(sl_time_s() * 1e9) ^ (uint64_t)getpid() ^ (uint64_t)a->created << 20);
    *out = a;
}

void sl_api_destroy(sl_api *a) {
    if (!a) return;
    SL_CHECK(a->n_inflight == 0);
    sl_metrics_deinit(&a->metrics);
    free(a->name);
    free(a->root);
    free(a->key);
    free(a);
}

void sl_api_set_model(sl_api *a, const sl_api_engine *e, const sl_tok *tok, const sl_chat *chat, int n_vocab,
                      int max_model_len) {
    a->eng = *e;
    a->have_engine = true;
    a->tok = tok;
    a->chat = chat;
    a->n_vocab = n_vocab;
    if (max_model_len != a->cfg.max_model_len) {
        /* the token-count histograms' buckets follow max_model_len; nothing ran yet but
         * refusals, which are kept */
        sl_metrics old = a->metrics;
        sl_metrics_init(&a->metrics, a->name, max_model_len);
        memcpy(a->metrics.reject_reason, old.reject_reason, sizeof old.reject_reason);
        memcpy(a->metrics.rejected, old.rejected, sizeof old.rejected);
        sl_metrics_deinit(&old);
        a->cfg.max_model_len = max_model_len;
    }
    if (a->state == SL_API_LOADING) a->state = SL_API_READY;
}

void sl_api_set_state(sl_api *a, sl_api_state st) { a->state = st; }
sl_api_state sl_api_get_state(const sl_api *a) { return a->state; }
int sl_api_n_inflight(const sl_api *a) { return a->n_inflight; }
void sl_api_abort_all(sl_api *a) { sl__api_abort_all(a); }

void sl_api_pump(sl_api *a) {
    if (!a->have_engine) return;
    sl_engine_event *list = a->eng.poll(a->eng.impl);
    for (sl_engine_event *e = list; e; e = e->next) sl__api_event(a, e);
    if (list) a->eng.release(a->eng.impl, list);
}

static int wrap_submit(void *e, const sl_engine_req *r, uint64_t *id) { return sl_engine_submit(e, r, id); }
static void wrap_abort(void *e, uint64_t id) { sl_engine_abort(e, id); }
static sl_engine_event *wrap_poll(void *e) { return sl_engine_poll(e); }
static void wrap_release(void *e, sl_engine_event *l) { sl_engine_release(e, l); }
static void wrap_stats(void *e, sl_engine_stats *st) { sl_engine_get_stats(e, st); }

void sl_api_engine_wrap(sl_api_engine *out, sl_engine *e) {
    *out = (sl_api_engine){.impl = e, .submit = wrap_submit, .abort = wrap_abort, .poll = wrap_poll,
                           .release = wrap_release, .stats = wrap_stats};
}

/* ---- small endpoints ------------------------------------------------------------------------ */

static void h_health(sl_api *a, sl_http_req *r, cJSON *body) {
    (void)body;
    if (a->state == SL_API_LOADING) {
        sl__api_error(a, r, 503, NULL, NULL, "Loading model");
        return;
    }
    if (a->state == SL_API_DRAINING) {
        sl__api_error(a, r, 503, NULL, NULL, "Shutting down");
        return;
    }
    static const char ok[] = "{\"status\":\"ok\"}";
    sl__api_log(r, 200, 0, 0);
    sl_http_respond(r, 200, "application/json", NULL, ok, sizeof ok - 1);
}

static void model_json(sl_api *a, sl_buf *b) {
    sl_buf_puts(b, "{\"id\":");
    sl_buf_json_str(b, a->name, strlen(a->name));
    sl_buf_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"sluice\",\"root\":", a->created);
    sl_buf_json_str(b, a->root, strlen(a->root));
    sl_buf_printf(b, ",\"parent\":null,\"max_model_len\":%d}", a->cfg.max_model_len);
}

static void h_models(sl_api *a, sl_http_req *r, cJSON *body) {
    (void)body;
    sl_buf b = {0};
    sl_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    model_json(a, &b);
    sl_buf_puts(&b, "]}");
    sl__api_json(a, r, &b, 0, 0);
    sl_buf_free(&b);
}

static void h_model_one(sl_api *a, sl_http_req *r, cJSON *body) {
    (void)body;
    const char *id = r->path + strlen("/v1/models/");
    if (strcmp(id, a->name)) {
        sl__api_error(a, r, 404, "model", "model_not_found", "The model `%s` does not exist.", id);
        return;
    }
    sl_buf b = {0};
    model_json(a, &b);
    sl__api_json(a, r, &b, 0, 0);
    sl_buf_free(&b);
}

/* The "model" field, when given, must name the served model. */
static bool check_model(sl_api *a, sl_http_req *r, const cJSON *body) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!m || cJSON_IsNull(m)) return true;
    if (!cJSON_IsString(m)) {
        sl__api_error(a, r, 400, "model", NULL, "'model' must be a string");
        return false;
    }
    if (strcmp(m->valuestring, a->name)) {
        sl__api_error(a, r, 404, "model", "model_not_found", "The model `%s` does not exist.", m->valuestring);
        return false;
    }
    return true;
}

/* A token's text as the tokenizer's vocabulary stores it (vLLM's token_strs). */
static void token_str(const sl_tok *t, int32_t id, sl_buf *b) {
    size_t len = 0;
    const char *s = sl_tok_text(t, id, &len);
    sl_buf_json_str(b, s ? s : "", s ? len : 0);
}

static void h_tokenize(sl_api *a, sl_http_req *r, cJSON *body) {
    char err[512] = "";
    bool add_special = true, add_gen = true, cont = false, strs = false;
    const char *prompt = NULL;
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (sl_json_bool(body, "return_token_strs", &strs, err, sizeof err) < 0 ||
        sl_json_bool(body, "add_generation_prompt", &add_gen, err, sizeof err) < 0 ||
        sl_json_bool(body, "continue_final_message", &cont, err, sizeof err) < 0 ||
        sl_json_str(body, "prompt", &prompt, err, sizeof err) < 0) {
        sl__api_error(a, r, 400, NULL, NULL, "%s", err);
        return;
    }
    if (messages) add_special = false;
    if (sl_json_bool(body, "add_special_tokens", &add_special, err, sizeof err) < 0) {
        sl__api_error(a, r, 400, "add_special_tokens", NULL, "%s", err);
        return;
    }
    if (!prompt == !messages) {
        sl__api_error(a, r, 400, NULL, NULL, "give either 'prompt' (a string) or 'messages'");
        return;
    }
    if (!check_model(a, r, body)) return;
    sl_tok_ids ids = {0};
    if (prompt) {
        unsigned flags = SL_TOK_PARSE_SPECIAL | (add_special ? SL_TOK_ADD_SPECIAL : 0);
        if (sl_tok_encode(a->tok, prompt, strlen(prompt), flags, &ids)) {
            sl__api_error(a, r, 400, "prompt", NULL, "prompt is too long to tokenize");
            return;
        }
    } else {
        const char *param = NULL;
        int st = sl__api_chat_tokens(a, messages, add_gen, cont, &ids, err, sizeof err, &param);
        if (st) {
            sl_tok_ids_free(&ids);
            sl__api_error(a, r, st, param, NULL, "%s", err);
            return;
        }
    }
    if ((int64_t)ids.n > a->cfg.max_model_len) {
        sl__api_error(a, r, 400, "input_tokens", "context_length_exceeded",
                      "This model's maximum context length is %d tokens. However, your request has %zu input "
                      "tokens. Please reduce the length of the input messages.",
                      a->cfg.max_model_len, ids.n);
        sl_tok_ids_free(&ids);
        return;
    }
    sl_buf b = {0};
    sl_buf_printf(&b, "{\"count\":%zu,\"max_model_len\":%d,\"tokens\":[", ids.n, a->cfg.max_model_len);
    for (size_t i = 0; i < ids.n; i++) sl_buf_printf(&b, i ? ",%d" : "%d", ids.v[i]);
    sl_buf_puts(&b, "],\"token_strs\":");
    if (strs) {
        sl_buf_puts(&b, "[");
        for (size_t i = 0; i < ids.n; i++) {
            if (i) sl_buf_puts(&b, ",");
            token_str(a->tok, ids.v[i], &b);
        }
        sl_buf_puts(&b, "]}");
    } else {
        sl_buf_puts(&b, "null}");
    }
    sl__api_json(a, r, &b, (int)ids.n, 0);
    sl_buf_free(&b);
    sl_tok_ids_free(&ids);
}

static void h_detokenize(sl_api *a, sl_http_req *r, cJSON *body) {
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(body, "tokens");
    if (!cJSON_IsArray(toks)) {
        sl__api_error(a, r, 400, "tokens", NULL, "'tokens' must be an array of token ids");
        return;
    }
    int n = cJSON_GetArraySize(toks), i = 0;
    int32_t *ids = sl_xmalloc(((size_t)n + 1) * sizeof *ids);
    const cJSON *t;
    cJSON_ArrayForEach(t, toks) {
        if (!sl_json_is_int(t, 0, (int64_t)a->n_vocab - 1)) {
            free(ids);
            sl__api_error(a, r, 400, "tokens", NULL, "'tokens[%d]' is not a token id in [0, %d)", i, a->n_vocab);
            return;
        }
        ids[i++] = (int32_t)t->valuedouble;
    }
    if (!check_model(a, r, body)) {
        free(ids);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = sl_tok_decode(a->tok, ids, (size_t)n, SL_TOK_RENDER_SPECIAL, &text, &len);
    free(ids);
    if (rc) {
        sl__api_error(a, r, 400, "tokens", NULL, "a token id is out of range");
        return;
    }
    sl_buf b = {0};
    sl_buf_puts(&b, "{\"prompt\":");
    sl_buf_json_str(&b, text, len);
    sl_buf_puts(&b, "}");
    free(text);
    sl__api_json(a, r, &b, 0, 0);
    sl_buf_free(&b);
}

static void h_metrics(sl_api *a, sl_http_req *r, cJSON *body) {
    (void)body;
    sl_metrics_engine e = {0};
    if (a->have_engine) {
        sl_engine_stats st;
        a->eng.stats(a->eng.impl, &st);
        e.running = st.sched.n_running;
        e.waiting = st.sched.n_waiting;
        int used = st.sched.n_blocks - st.sched.n_blocks_free - st.sched.n_blocks_cached;
        e.kv_usage = st.sched.n_blocks > 0 ? (double)used / st.sched.n_blocks : 0;
        e.prefix_queries = st.sched.prefix_queries;
        e.prefix_hits = st.sched.prefix_hits;
        e.preemptions = st.sched.n_preemptions;
        e.prompt_tokens = st.n_prompt_tokens;
        e.generation_tokens = st.n_generated_tokens;
    }
    sl_buf b = {0};
    sl_metrics_render(&a->metrics, &e, &b);
    sl__api_log(r, 200, 0, 0);
    sl_http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.p, b.n);
    sl_buf_free(&b);
}

static void h_completions(sl_api *a, sl_http_req *r, cJSON *body) {
    if (check_model(a, r, body)) sl__api_generate(a, r, body, false);
    else cJSON_Delete(body);
}

static void h_chat(sl_api *a, sl_http_req *r, cJSON *body) {
    if (check_model(a, r, body)) sl__api_generate(a, r, body, true);
    else cJSON_Delete(body);
}

/* ---- routing -------------------------------------------------------------------------------- */

enum { R_AUTH = 1, R_JSON = 2, R_MODEL = 4, R_OWNS_BODY = 8, R_PREFIX = 16 };

typedef struct route {
    const char *path;
    const char *method;          /* GET routes also answer HEAD */
    void (*fn)(sl_api *a, sl_http_req *r, cJSON *body);
    int flags;
} route;

static const route ROUTES[] = {
    {"/health", "GET", h_health, 0},
    {"/v1/models", "GET", h_models, R_AUTH | R_MODEL},
    {"/v1/models/", "GET", h_model_one, R_AUTH | R_MODEL | R_PREFIX},
    {"/v1/completions", "POST", h_completions, R_AUTH | R_JSON | R_MODEL | R_OWNS_BODY},
    {"/v1/chat/completions", "POST", h_chat, R_AUTH | R_JSON | R_MODEL | R_OWNS_BODY},
    {"/tokenize", "POST", h_tokenize, R_AUTH | R_JSON | R_MODEL},
    {"/detokenize", "POST", h_detokenize, R_AUTH | R_JSON | R_MODEL},
    {"/metrics", "GET", h_metrics, R_AUTH},
};

/* Constant-time comparison of the bearer token with the key. */
static bool auth_ok(const sl_api *a, const sl_http_req *r) {
    const char *h = sl_http_header(r, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    size_t n = strlen(tok), k = strlen(a->key);
    unsigned diff = (unsigned)(n != k);
    for (size_t i = 0; i < k; i++) diff |= (unsigned char)a->key[i] ^ (unsigned char)(i < n ? tok[i] : 0);
    return diff == 0;
}

void sl_api_handle(sl_http_req *r, void *ctx) {
    sl_api *a = ctx;
    const route *rt = NULL;
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++) {
        const route *x = &ROUTES[i];
        if ((x->flags & R_PREFIX) ? !strncmp(r->path, x->path, strlen(x->path)) && r->path[strlen(x->path)]
                                  : !strcmp(r->path, x->path)) {
            rt = x;
            break;
        }
    }
    if (a->key && (!rt || (rt->flags & R_AUTH)) && !auth_ok(a, r)) {
        sl__api_error(a, r, 401, NULL, "invalid_api_key", "Incorrect API key provided.");
        return;
    }
    if (!rt) {
        sl__api_error(a, r, 404, NULL, NULL, "Not found: %s %s", r->method, r->path);
        return;
    }
    bool head = !strcmp(r->method, "HEAD") && !strcmp(rt->method, "GET");
    if (strcmp(r->method, rt->method) && !head) {
        char allow[48], msg[300];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", !strcmp(rt->method, "GET") ? "GET, HEAD" : rt->method);
        snprintf(msg, sizeof msg, "Method %s is not allowed on %.200s", r->method, r->path);
        send_error(a, r, 405, NULL, NULL, allow, msg);
        return;
    }
    if (rt->flags & R_MODEL) {
        if (a->state == SL_API_LOADING) {
            sl__api_error(a, r, 503, NULL, NULL, "Loading model");
            return;
        }
        if (a->state == SL_API_DRAINING && (rt->flags & R_JSON)) {
            sl__api_error(a, r, 503, NULL, NULL, "Shutting down: not accepting new requests");
            return;
        }
    }
    cJSON *body = NULL;
    if (rt->flags & R_JSON) {
        const char *ct = sl_http_header(r, "content-type");
        if (ct) {
            size_t n = strcspn(ct, "; \t");
            if (n != 16 || strncasecmp(ct, "application/json", 16)) {
                sl__api_error(a, r, 400, NULL, NULL, "Unsupported Content-Type: only 'application/json' is allowed");
                return;
            }
        }
        size_t ok = sl_utf8_valid_prefix(r->body, r->body_len);
        if (ok != r->body_len) {
            sl__api_error(a, r, 400, NULL, NULL, "The request body is not valid UTF-8 (byte %zu)", ok);
            return;
        }
        const char *end = NULL;
        body = cJSON_ParseWithLengthOpts(r->body, r->body_len, &end, 0);
        if (body) {
            while (end < r->body + r->body_len && strchr(" \t\r\n", *end)) end++;
            if (end != r->body + r->body_len) {
                cJSON_Delete(body);
                body = NULL;
            }
        } else {
            end = cJSON_GetErrorPtr();
        }
        if (!body) {
            size_t at = end && end >= r->body && end <= r->body + r->body_len ? (size_t)(end - r->body) : 0;
            char sample[41];
            size_t k = 0;
            for (size_t i = at; i < r->body_len && k < 40; i++)
                sample[k++] = (r->body[i] >= 0x20 && r->body[i] < 0x7F) ? r->body[i] : '?';
            sample[k] = 0;
            sl__api_error(a, r, 400, NULL, NULL, "The request body is not valid JSON (at byte %zu: '%s')", at, sample);
            return;
        }
        if (!cJSON_IsObject(body)) {
            cJSON_Delete(body);
            sl__api_error(a, r, 400, NULL, NULL, "The request body must be a JSON object");
            return;
        }
    }
    rt->fn(a, r, body);
    if (!(rt->flags & R_OWNS_BODY)) cJSON_Delete(body);
}
