/* api_gen.c — POST /v1/completions and /v1/chat/completions: request fields → engine
 * requests, engine events → JSON responses or Server-Sent Events. See api.h and API.md §1–2.
 *
 * A request's life: parse (loop thread: every field checked, prompts and messages copied into
 * the request's arena) → prepare (chat template and tokenizer; in the thread pool for large
 * prompts) → admission and submit (loop thread) → engine events → response → free. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/base.h"
#include "api_internal.h"

enum { MAX_PROMPTS = 256, MAX_N = 128 };

typedef struct choice {
    sl_buf text;                 /* non-streaming: the text so far (echo included) */
    sl_buf lp[4];                /* non-streaming logprobs: completions' four arrays, or chat's content */
    size_t lp_chars;             /* completions text_offset: characters of the token strings so far */
    sl_finish finish;
    int stop_string;
    int32_t last_token;
    bool started;
    int n_gen;
    double t_last;
} choice;

typedef struct gprompt {
    sl__gen *g;
    int index;
    const char *text;            /* a text prompt (arena), or NULL */
    size_t text_len;
    const int32_t *given;        /* token ids given in the request (arena), or NULL */
    int n_given;
    sl_tok_ids ids;              /* the prompt's tokens after prepare */
    char *echo;                  /* echo: the prompt's text (malloc) */
    size_t echo_len;
    uint64_t id;
    bool submitted, done;
    int n_cached;
} gprompt;

struct sl__gen {
    sl__gen *prev, *next;
    sl_api *a;
    sl_http_req *r;
    sl_arena arena;
    bool chat, stream, include_usage, echo, include_stop, add_special;
    bool gone, in_pool, headers_sent;
    int lp_k;                    /* -1: no logprobs; else top entries per position */
    int n, n_prompts, pending;
    int64_t max_tokens;          /* -1: not given */
    sl_sampling_params sp;
    sl_prio prio;
    gprompt *prompts;
    choice *choices;
    sl_chat_msg *msgs;
    size_t n_msgs;
    bool add_gen, cont_final;
    /* the outcome of parse / prepare / the engine: an error to report */
    int err_status;
    const char *err_param, *err_code;
    char err[640];
    char id[48];
    long long created;
    double t_arrival;
    uv_work_t work;
    sl_buf out;                  /* scratch for chunks */
};

static int gen_fail(sl__gen *g, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int gen_fail(sl__gen *g, int status, const char *param, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    g->err_status = status;
    g->err_param = param;
    g->err_code = code;
    return -1;
}

/* ---- parsing ------------------------------------------------------------------------------ */

/* Reads an optional field with sl_json_*; on error records a 400 naming it. */
#define FIELD(call, name)                                                                          \
    do {                                                                                           \
        char e_[256];                                                                              \
        if ((call) < 0) return gen_fail(g, 400, name, NULL, "%s", e_);                             \
    } while (0)

static int parse_token_ids(sl__gen *g, const cJSON *arr, const char *param, int32_t **out, int *n) {
    int k = cJSON_GetArraySize(arr), i = 0;
    if (k == 0) return gen_fail(g, 400, param, NULL, "'%s' must not be empty", param);
    int32_t *v = sl_arena_alloc(&g->arena, (size_t)k * sizeof *v);
    const cJSON *t;
    cJSON_ArrayForEach(t, arr) {
        if (!sl_json_is_int(t, 0, (int64_t)g->a->n_vocab - 1))
            return gen_fail(g, 400, param, NULL, "'%s' holds %s: token ids must be integers in [0, %d)", param,
                            cJSON_IsNumber(t) ? "a token id out of range" : "a value that is not a token id",
                            g->a->n_vocab);
        v[i++] = (int32_t)t->valuedouble;
    }
    *out = v;
    *n = k;
    return 0;
}

static int parse_prompt(sl__gen *g, const cJSON *root) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p || cJSON_IsNull(p)) return gen_fail(g, 400, "prompt", NULL, "'prompt' is required");
    const cJSON *items[MAX_PROMPTS];
    int n = 0;
    if (cJSON_IsString(p) || (cJSON_IsArray(p) && cJSON_IsNumber(p->child))) {
        items[n++] = p;
    } else if (cJSON_IsArray(p)) {
        if (!p->child) return gen_fail(g, 400, "prompt", NULL, "'prompt' must not be empty");
        const cJSON *x;
        cJSON_ArrayForEach(x, p) {
            if (n == MAX_PROMPTS) return gen_fail(g, 400, "prompt", NULL, "at most %d prompts per request", MAX_PROMPTS);
            if (!cJSON_IsString(x) && !cJSON_IsArray(x))
                return gen_fail(g, 400, "prompt", NULL,
                                "'prompt' must be a string, an array of token ids, or an array of either");
            items[n++] = x;
        }
    } else {
        return gen_fail(g, 400, "prompt", NULL, "'prompt' must be a string, an array of token ids, or an array of either");
    }
    g->n_prompts = n;
    g->prompts = sl_arena_alloc(&g->arena, (size_t)n * sizeof *g->prompts);
    for (int i = 0; i < n; i++) {
        gprompt *gp = &g->prompts[i];
        gp->g = g;
        gp->index = i;
        if (cJSON_IsString(items[i])) {
            size_t len = strlen(items[i]->valuestring);
            if (len == 0) return gen_fail(g, 400, "prompt", NULL, "'prompt' must not be an empty string");
            gp->text = sl_arena_strndup(&g->arena, items[i]->valuestring, len);
            gp->text_len = len;
        } else {
            int32_t *ids;
            if (parse_token_ids(g, items[i], "prompt", &ids, &gp->n_given)) return -1;
            gp->given = ids;
        }
    }
    return 0;
}

/* OpenAI's messages → (role, content) pairs: text parts joined with "\n" (vLLM's string
 * content format); "developer" renders as "system". */
static int parse_messages(sl_arena *ar, const cJSON *msgs, sl_chat_msg **out, size_t *n_out, char *err, size_t cap,
                          const char **param) {
    *param = "messages";
    if (!cJSON_IsArray(msgs) || !msgs->child) {
        snprintf(err, cap, "'messages' must be a non-empty array");
        return 400;
    }
    size_t n = (size_t)cJSON_GetArraySize(msgs), i = 0;
    sl_chat_msg *m = sl_arena_alloc(ar, n * sizeof *m);
    const cJSON *x;
    cJSON_ArrayForEach(x, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(x, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(x, "content");
        if (!cJSON_IsObject(x) || !cJSON_IsString(role)) {
            snprintf(err, cap, "'messages[%zu]' must be an object with a string 'role'", i);
            return 400;
        }
        const char *r = role->valuestring;
        if (strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "user") && strcmp(r, "assistant") &&
            strcmp(r, "tool")) {
            snprintf(err, cap, "'messages[%zu].role' must be system, developer, user, assistant or tool, got '%.64s'",
                     i, r);
            return 400;
        }
        sl_buf text = {0};
        if (cJSON_IsString(content)) {
            sl_buf_puts(&text, content->valuestring);
        } else if (cJSON_IsArray(content)) {
            const cJSON *part;
            size_t j = 0;
            cJSON_ArrayForEach(part, content) {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(t)) {
                    snprintf(err, cap,
                             "'messages[%zu].content[%zu]': only text parts ({\"type\": \"text\", \"text\": ...}) "
                             "are supported",
                             i, j);
                    sl_buf_free(&text);
                    return 400;
                }
                if (j++) sl_buf_puts(&text, "\n");
                sl_buf_puts(&text, t->valuestring);
            }
        } else if (!(content == NULL || cJSON_IsNull(content)) || strcmp(r, "assistant")) {
            snprintf(err, cap, "'messages[%zu].content' must be a string or an array of text parts", i);
            return 400;
        }
        m[i].role = !strcmp(r, "developer") ? "system" : sl_arena_strndup(ar, r, strlen(r));
        m[i].content = sl_arena_strndup(ar, text.p ? text.p : "", text.n);
        sl_buf_free(&text);
        i++;
    }
    *out = m;
    *n_out = n;
    return 0;
}

/* Renders and tokenizes a conversation. Thread-safe (the chat template and tokenizer are
 * immutable). */
static int chat_tokens(const sl_api *a, const sl_chat_msg *m, size_t n, bool add_gen, bool cont, sl_tok_ids *ids,
                       char *err, size_t cap, const char **param) {
    *param = "messages";
    if (!a->chat) {
        snprintf(err, cap, "this model has no usable chat template: start the server with --chat-template NAME");
        return 400;
    }
    if (add_gen && cont) {
        snprintf(err, cap, "'add_generation_prompt' and 'continue_final_message' cannot both be true");
        return 400;
    }
    char e[SL_ERRMSG] = "", *text = NULL;
    size_t len = 0;
    int rc = sl_chat_render(a->chat, m, n, add_gen, &text, &len, e);
    if (rc) {
        snprintf(err, cap, "the chat template rejected the messages: %s", e);
        return 400;
    }
    if (cont) {
        /* continue the last message: cut the rendered text right after its content */
        const char *last = m[n - 1].content, *hit = NULL;
        size_t ll = strlen(last);
        for (const char *p = text; ll && (p = strstr(p, last)); p++) hit = p;
        if (hit) len = (size_t)(hit - text) + ll;
    }
    rc = sl_chat_encode(a->tok, text, len, ids);
    free(text);
    if (rc) {
        snprintf(err, cap, "the conversation is too long to tokenize");
        return 400;
    }
    return 0;
}

int sl__api_chat_tokens(sl_api *a, const cJSON *messages, bool add_gen, bool cont, sl_tok_ids *ids, char *err,
                        size_t cap, const char **param) {
    sl_arena ar = {0};
    sl_chat_msg *m = NULL;
    size_t n = 0;
    int st = parse_messages(&ar, messages, &m, &n, err, cap, param);
    if (!st) st = chat_tokens(a, m, n, add_gen, cont, ids, err, cap, param);
    sl_arena_free(&ar);
    return st;
}

static int parse_stop(sl__gen *g, const cJSON *root) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!s || cJSON_IsNull(s)) return 0;
    const cJSON *items[SL_MAX_STOP_STRINGS];
    int n = 0;
    if (cJSON_IsString(s)) items[n++] = s;
    else if (cJSON_IsArray(s)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, s) {
            if (n == SL_MAX_STOP_STRINGS)
                return gen_fail(g, 400, "stop", NULL, "at most %d stop strings", SL_MAX_STOP_STRINGS);
            items[n++] = x;
        }
    } else {
        return gen_fail(g, 400, "stop", NULL, "'stop' must be a string or an array of strings");
    }
    char **v = sl_arena_alloc(&g->arena, (size_t)(n ? n : 1) * sizeof *v);
    for (int i = 0; i < n; i++) {
        if (!cJSON_IsString(items[i])) return gen_fail(g, 400, "stop", NULL, "'stop' must hold strings only");
        size_t len = strlen(items[i]->valuestring);
        if (len == 0 || len > SL_MAX_STOP_LEN)
            return gen_fail(g, 400, "stop", NULL, "stop strings must be 1 to %d bytes long", SL_MAX_STOP_LEN);
        v[i] = sl_arena_strndup(&g->arena, items[i]->valuestring, len);
    }
    g->sp.stop = (const char *const *)v;
    g->sp.n_stop = n;
    return 0;
}

static int parse_logit_bias(sl__gen *g, const cJSON *root) {
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (!lb || cJSON_IsNull(lb)) return 0;
    if (!cJSON_IsObject(lb)) return gen_fail(g, 400, "logit_bias", NULL, "'logit_bias' must be an object");
    int n = cJSON_GetArraySize(lb), i = 0;
    sl_logit_bias *v = sl_arena_alloc(&g->arena, (size_t)(n ? n : 1) * sizeof *v);
    uint8_t *seen = sl_arena_alloc(&g->arena, (size_t)g->a->n_vocab / 8 + 1);
    memset(seen, 0, (size_t)g->a->n_vocab / 8 + 1);
    const cJSON *x;
    cJSON_ArrayForEach(x, lb) {
        char *end;
        long t = strtol(x->string, &end, 10);
        if (!*x->string || *end || t < 0 || t >= g->a->n_vocab)
            return gen_fail(g, 400, "logit_bias", NULL, "'logit_bias' keys must be token ids in [0, %d), got '%.32s'",
                            g->a->n_vocab, x->string);
        if (seen[t / 8] & (1u << (t % 8))) /* "5" and "05" */
            return gen_fail(g, 400, "logit_bias", NULL, "'logit_bias': token %ld is listed twice", t);
        seen[t / 8] |= (uint8_t)(1u << (t % 8));
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
            return gen_fail(g, 400, "logit_bias", NULL, "'logit_bias' values must be numbers");
        double b = x->valuedouble < -100 ? -100 : x->valuedouble > 100 ? 100 : x->valuedouble;
        v[i++] = (sl_logit_bias){(int32_t)t, (float)b};
    }
    g->sp.logit_bias = v;
    g->sp.n_logit_bias = n;
    return 0;
}

/* Fields that must keep their default in this version. */
static int reject_unsupported(sl__gen *g, const cJSON *root) {
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "suffix")) && !cJSON_IsNull(v))
        return gen_fail(g, 400, "suffix", NULL, "suffix is not currently supported");
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "best_of")) && !cJSON_IsNull(v) && !sl_json_is_int(v, 1, 1))
        return gen_fail(g, 400, "best_of", NULL, "best_of is not supported (only 1)");
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "min_tokens")) && !cJSON_IsNull(v) && !sl_json_is_int(v, 0, 0))
        return gen_fail(g, 400, "min_tokens", NULL, "min_tokens is not supported (only 0)");
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "skip_special_tokens")) && !cJSON_IsNull(v) && !cJSON_IsTrue(v))
        return gen_fail(g, 400, "skip_special_tokens", NULL, "skip_special_tokens=false is not supported");
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "tools")) && !cJSON_IsNull(v) &&
        !(cJSON_IsArray(v) && !v->child))
        return gen_fail(g, 400, "tools", NULL, "tools are not supported");
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "tool_choice")) && !cJSON_IsNull(v) &&
        !(cJSON_IsString(v) && !strcmp(v->valuestring, "none")))
        return gen_fail(g, 400, "tool_choice", NULL, "tool_choice is not supported (only \"none\")");
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "response_format")) && !cJSON_IsNull(v)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text"))
            return gen_fail(g, 400, "response_format", NULL, "response_format is not supported (only {\"type\": \"text\"})");
    }
    return 0;
}

static int parse_request(sl__gen *g, const cJSON *root) {
    sl_sampling_params_defaults(&g->sp);
    if (reject_unsupported(g, root)) return -1;
    int64_t i64;
    double d;
    bool b;
    const char *f;
    FIELD(sl_json_bool(root, f = "stream", &g->stream, e_, sizeof e_), f);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!g->stream)
            return gen_fail(g, 400, "stream_options", NULL, "'stream_options' is only allowed when 'stream' is true");
        if (!cJSON_IsObject(so)) return gen_fail(g, 400, "stream_options", NULL, "'stream_options' must be an object");
        FIELD(sl_json_bool(so, "include_usage", &g->include_usage, e_, sizeof e_), "stream_options");
    }
    i64 = 1;
    FIELD(sl_json_int(root, f = "n", 1, MAX_N, &i64, e_, sizeof e_), f);
    g->n = g->sp.n = (int)i64;
    if (g->chat) {
        int rc;
        FIELD(rc = sl_json_int(root, f = "max_completion_tokens", 1, INT32_MAX, &g->max_tokens, e_, sizeof e_), f);
        if (rc == 0) FIELD(sl_json_int(root, f = "max_tokens", 1, INT32_MAX, &g->max_tokens, e_, sizeof e_), f);
    } else {
        FIELD(sl_json_int(root, f = "max_tokens", 1, INT32_MAX, &g->max_tokens, e_, sizeof e_), f);
    }
    d = 1;
    FIELD(sl_json_num(root, f = "temperature", 0, 2, &d, e_, sizeof e_), f);
    g->sp.temperature = (float)d;
    d = 1;
    FIELD(sl_json_num(root, f = "top_p", 0, 1, &d, e_, sizeof e_), f);
    if (!(d > 0)) return gen_fail(g, 400, "top_p", NULL, "'top_p' must be in (0, 1], got %g", d);
    g->sp.top_p = (float)d;
    i64 = 0;
    FIELD(sl_json_int(root, f = "top_k", -1, INT32_MAX, &i64, e_, sizeof e_), f);
    g->sp.top_k = (int)i64;
    d = 0;
    FIELD(sl_json_num(root, f = "min_p", 0, 1, &d, e_, sizeof e_), f);
    g->sp.min_p = (float)d;
    d = 1;
    FIELD(sl_json_num(root, f = "repetition_penalty", 0, 1e6, &d, e_, sizeof e_), f);
    if (!(d > 0)) return gen_fail(g, 400, "repetition_penalty", NULL, "'repetition_penalty' must be > 0, got %g", d);
    g->sp.repetition_penalty = (float)d;
    d = 0;
    FIELD(sl_json_num(root, f = "frequency_penalty", -2, 2, &d, e_, sizeof e_), f);
    g->sp.frequency_penalty = (float)d;
    d = 0;
    FIELD(sl_json_num(root, f = "presence_penalty", -2, 2, &d, e_, sizeof e_), f);
    g->sp.presence_penalty = (float)d;
    i64 = -1;
    FIELD(sl_json_int(root, f = "seed", INT64_MIN / 2, INT64_MAX / 2, &i64, e_, sizeof e_), f);
    if (i64 != -1) g->sp.has_seed = true, g->sp.seed = (uint64_t)i64;
    FIELD(sl_json_bool(root, f = "ignore_eos", &g->sp.ignore_eos, e_, sizeof e_), f);
    FIELD(sl_json_bool(root, f = "include_stop_str_in_output", &g->include_stop, e_, sizeof e_), f);
    i64 = 0;
    FIELD(sl_json_int(root, f = "priority", INT32_MIN, INT32_MAX, &i64, e_, sizeof e_), f);
    g->prio = i64 > 0 ? SL_PRIO_BATCH : SL_PRIO_INTERACTIVE;
    FIELD(sl_json_str(root, f = "user", &(const char *){NULL}, e_, sizeof e_), f);
    g->lp_k = -1;
    if (g->chat) {
        b = false;
        FIELD(sl_json_bool(root, f = "logprobs", &b, e_, sizeof e_), f);
        i64 = 0;
        int got;
        FIELD(got = sl_json_int(root, f = "top_logprobs", 0, SL_MAX_LOGPROBS, &i64, e_, sizeof e_), f);
        if (got && !b) return gen_fail(g, 400, "top_logprobs", NULL, "'top_logprobs' needs 'logprobs' to be true");
        if (b) g->lp_k = (int)i64;
        g->add_gen = true;
        FIELD(sl_json_bool(root, f = "add_generation_prompt", &g->add_gen, e_, sizeof e_), f);
        FIELD(sl_json_bool(root, f = "continue_final_message", &g->cont_final, e_, sizeof e_), f);
    } else {
        i64 = -1;
        FIELD(sl_json_int(root, f = "logprobs", 0, SL_MAX_LOGPROBS, &i64, e_, sizeof e_), f);
        g->lp_k = (int)i64;
        FIELD(sl_json_bool(root, f = "echo", &g->echo, e_, sizeof e_), f);
        if (g->echo && g->lp_k >= 0)
            return gen_fail(g, 400, "echo", NULL, "echo together with logprobs is not supported");
        g->add_special = true;
        FIELD(sl_json_bool(root, f = "add_special_tokens", &g->add_special, e_, sizeof e_), f);
    }
    if (g->lp_k >= 0) g->sp.logprobs = true, g->sp.top_logprobs = g->lp_k;
    if (g->n > 1 && g->sp.temperature < SL_SAMPLING_EPS)
        return gen_fail(g, 400, "n", NULL, "n must be 1 when using greedy sampling (temperature 0), got %d", g->n);
    const cJSON *sti = cJSON_GetObjectItemCaseSensitive(root, "stop_token_ids");
    if (sti && !cJSON_IsNull(sti)) {
        if (!cJSON_IsArray(sti)) return gen_fail(g, 400, "stop_token_ids", NULL, "'stop_token_ids' must be an array");
        if (sti->child) {
            int32_t *ids;
            if (parse_token_ids(g, sti, "stop_token_ids", &ids, &g->sp.n_stop_ids)) return -1;
            g->sp.stop_ids = ids;
        }
    }
    if (parse_stop(g, root) || parse_logit_bias(g, root)) return -1;
    if (g->chat) {
        g->n_prompts = 1;
        g->prompts = sl_arena_alloc(&g->arena, sizeof *g->prompts);
        g->prompts[0].g = g;
        const char *param;
        char e[sizeof g->err];
        int st = parse_messages(&g->arena, cJSON_GetObjectItemCaseSensitive(root, "messages"), &g->msgs, &g->n_msgs, e,
                                sizeof e, &param);
        if (st) return gen_fail(g, st, param, NULL, "%s", e);
    } else if (parse_prompt(g, root)) {
        return -1;
    }
    char e[SL_ERRMSG];
    if (sl_sampling_params_check(&g->sp, g->a->n_vocab, e)) return gen_fail(g, 400, NULL, NULL, "%s", e);
    return 0;
}
#undef FIELD

/* ---- preparation (possibly in the thread pool) --------------------------------------------- */

static void prepare(sl__gen *g) {
    const sl_api *a = g->a;
    const int L = a->cfg.max_model_len;
    for (int i = 0; i < g->n_prompts; i++) {
        gprompt *gp = &g->prompts[i];
        if (g->chat) {
            const char *param;
            char e[sizeof g->err];
            int st = chat_tokens(a, g->msgs, g->n_msgs, g->add_gen, g->cont_final, &gp->ids, e, sizeof e, &param);
            if (st) {
                gen_fail(g, st, param, NULL, "%s", e);
                return;
            }
        } else if (gp->text) {
            unsigned flags = SL_TOK_PARSE_SPECIAL | (g->add_special ? SL_TOK_ADD_SPECIAL : 0);
            if (sl_tok_encode(a->tok, gp->text, gp->text_len, flags, &gp->ids)) {
                gen_fail(g, 400, "prompt", NULL, "the prompt is too long to tokenize");
                return;
            }
            if (gp->ids.n == 0) {
                gen_fail(g, 400, "prompt", NULL, "the prompt has no tokens");
                return;
            }
        } else {
            gp->ids.v = sl_xmalloc((size_t)gp->n_given * sizeof *gp->ids.v);
            memcpy(gp->ids.v, gp->given, (size_t)gp->n_given * sizeof *gp->ids.v);
            gp->ids.n = gp->ids.cap = (size_t)gp->n_given;
        }
        int64_t P = (int64_t)gp->ids.n;
        if (P == 0) {
            gen_fail(g, 400, "messages", NULL, "the conversation renders to no tokens");
            return;
        }
        /* API.md §4.4: vLLM's message, word for word */
        if ((g->max_tokens >= 0 && P + g->max_tokens > L) || (g->max_tokens < 0 && P >= L)) {
            int64_t M = g->max_tokens >= 0 ? g->max_tokens : 0;
            gen_fail(g, 400, "input_tokens", "context_length_exceeded",
                     "This model's maximum context length is %d tokens. However, you requested %lld output tokens "
                     "and your prompt contains at least %lld input tokens, for a total of at least %lld tokens. "
                     "Please reduce the length of the input prompt or the number of requested output tokens. "
                     "(parameter=input_tokens, value=%lld)",
                     L, (long long)M, (long long)P, (long long)(M + P), (long long)P);
            return;
        }
        if (g->echo) {
            if (gp->text) {
                gp->echo = sl_xmalloc(gp->text_len + 1);
                memcpy(gp->echo, gp->text, gp->text_len + 1);
                gp->echo_len = gp->text_len;
            } else if (sl_tok_decode(a->tok, gp->ids.v, gp->ids.n, 0, &gp->echo, &gp->echo_len)) {
                gen_fail(g, 400, "prompt", NULL, "a prompt token is out of range");
                return;
            }
        }
    }
}

/* max_tokens of a prompt: the request's, else 16 (completions, vLLM's default) or what is
 * left of the context (chat), never past the context. */
static int max_tokens_for(const sl__gen *g, const gprompt *gp) {
    int64_t left = (int64_t)g->a->cfg.max_model_len - (int64_t)gp->ids.n;
    if (g->max_tokens >= 0) return (int)g->max_tokens;
    if (!g->chat) return (int)(left < 16 ? left : 16);
    return (int)left;
}

/* ---- responses ------------------------------------------------------------------------------ */

static const char *finish_name(sl_finish f) {
    switch (f) {
    case SL_FINISH_STOP: return "stop";
    case SL_FINISH_LENGTH: return "length";
    case SL_FINISH_ABORT: return "abort";
    case SL_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

static void gen_free(sl__gen *g) {
    sl_api *a = g->a;
    if (g->prev) g->prev->next = g->next;
    else a->gens = g->next;
    if (g->next) g->next->prev = g->prev;
    a->n_inflight--;
    for (int i = 0; i < g->n_prompts; i++) {
        sl_tok_ids_free(&g->prompts[i].ids);
        free(g->prompts[i].echo);
    }
    if (g->choices)
        for (int i = 0; i < g->n_prompts * g->n; i++) {
            sl_buf_free(&g->choices[i].text);
            for (int k = 0; k < 4; k++) sl_buf_free(&g->choices[i].lp[k]);
        }
    sl_buf_free(&g->out);
    sl_arena_free(&g->arena);
    free(g);
}

static void respond_error(sl__gen *g) {
    sl__api_error(g->a, g->r, g->err_status, g->err_param, g->err_code, "%s", g->err);
}

/* The bytes of token id as the streaming decoder renders it on its own (not the first token
 * of a text, so a leading space stays). */
static void token_piece(const sl_tok *t, int32_t id, sl_buf *out) {
    sl_buf_reset(out);
    sl_tok_stream st;
    sl_tok_stream_init(&st, t, SL_TOK_RENDER_SPECIAL);
    st.first = false;
    size_t bound = sl_tok_stream_bound(t), n = 0, m = 0;
    char *tmp = sl_xmalloc(2 * bound + 1);
    if (sl_tok_stream_put(&st, id, tmp, &n)) n = 0;
    sl_tok_stream_finish(&st, tmp + n, &m);
    sl_buf_put(out, tmp, n + m);
    free(tmp);
}

static size_t utf8_chars(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static double clamp_lp(float x) { return isfinite(x) && x > -9999.0f ? x : -9999.0; }

/* Appends the logprobs of one token to dst: completions' four arrays (comma-separated items,
 * in lp[0..3]) or one chat content entry (in lp[0]). */
static void add_logprobs(sl__gen *g, choice *c, const sl_engine_event *ev, sl_buf lp[4]) {
    const sl_tok *t = g->a->tok;
    sl_buf piece = {0};
    token_piece(t, ev->token, &piece);
    if (g->chat) {
        if (lp[0].n) sl_buf_puts(&lp[0], ",");
        for (int k = -1; k < ev->n_top; k++) {
            int32_t id = k < 0 ? ev->token : ev->top_ids[k];
            if (k >= 0) token_piece(t, id, &piece);
            else token_piece(t, ev->token, &piece);
            sl_buf_puts(&lp[0], k == 0 ? "{\"token\":" : k > 0 ? ",{\"token\":" : "{\"token\":");
            sl_buf_json_str(&lp[0], piece.p ? piece.p : "", piece.n);
            sl_buf_puts(&lp[0], ",\"logprob\":");
            sl_buf_json_num(&lp[0], clamp_lp(k < 0 ? ev->logprob : ev->top_lps[k]));
            sl_buf_puts(&lp[0], ",\"bytes\":[");
            for (size_t i = 0; i < piece.n; i++) sl_buf_printf(&lp[0], i ? ",%u" : "%u", (unsigned char)piece.p[i]);
            sl_buf_puts(&lp[0], "]");
            if (k < 0) sl_buf_puts(&lp[0], ev->n_top ? ",\"top_logprobs\":[" : ",\"top_logprobs\":[]}");
            else sl_buf_puts(&lp[0], "}");
        }
        if (ev->n_top) sl_buf_puts(&lp[0], "]}");
    } else {
        const char *sep = lp[0].n ? "," : "";
        sl_buf_puts(&lp[0], sep);
        sl_buf_json_str(&lp[0], piece.p ? piece.p : "", piece.n);
        sl_buf_puts(&lp[1], sep);
        sl_buf_json_num(&lp[1], clamp_lp(ev->logprob));
        sl_buf_printf(&lp[3], "%s%zu", sep, c->lp_chars);
        c->lp_chars += utf8_chars(piece.p ? piece.p : "", piece.n);
        sl_buf_printf(&lp[2], "%s{", sep);
        bool has_self = false;
        for (int k = 0; k < ev->n_top; k++) {
            token_piece(t, ev->top_ids[k], &piece);
            if (k) sl_buf_puts(&lp[2], ",");
            sl_buf_json_str(&lp[2], piece.p ? piece.p : "", piece.n);
            sl_buf_puts(&lp[2], ":");
            sl_buf_json_num(&lp[2], clamp_lp(ev->top_lps[k]));
            has_self |= ev->top_ids[k] == ev->token;
        }
        if (!has_self) { /* vLLM: the sampled token is always among them (up to k + 1 entries) */
            token_piece(t, ev->token, &piece);
            if (ev->n_top) sl_buf_puts(&lp[2], ",");
            sl_buf_json_str(&lp[2], piece.p ? piece.p : "", piece.n);
            sl_buf_puts(&lp[2], ":");
            sl_buf_json_num(&lp[2], clamp_lp(ev->logprob));
        }
        sl_buf_puts(&lp[2], "}");
    }
    sl_buf_free(&piece);
}

static void logprobs_json(const sl__gen *g, const sl_buf lp[4], sl_buf *o) {
    if (g->chat) {
        sl_buf_puts(o, "{\"content\":[");
        if (lp[0].n) sl_buf_put(o, lp[0].p, lp[0].n);
        sl_buf_puts(o, "]}");
        return;
    }
    static const char *const keys[4] = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
    for (int k = 0; k < 4; k++) {
        sl_buf_printf(o, "%s\"%s\":[", k ? "," : "{", keys[k]);
        if (lp[k].n) sl_buf_put(o, lp[k].p, lp[k].n);
        sl_buf_puts(o, "]");
    }
    sl_buf_puts(o, "}");
}

/* vLLM's stop_reason: the stop string or stop token id that ended the choice, else null. */
static void stop_reason_json(const sl__gen *g, const choice *c, sl_buf *o) {
    if (c->finish == SL_FINISH_STOP && c->stop_string >= 0 && c->stop_string < g->sp.n_stop) {
        const char *s = g->sp.stop[c->stop_string];
        sl_buf_json_str(o, s, strlen(s));
        return;
    }
    if (c->finish == SL_FINISH_STOP)
        for (int i = 0; i < g->sp.n_stop_ids; i++)
            if (g->sp.stop_ids[i] == c->last_token) {
                sl_buf_printf(o, "%d", c->last_token);
                return;
            }
    sl_buf_puts(o, "null");
}

static void usage_json(const sl__gen *g, sl_buf *o) {
    int P = 0, C = 0, cached = 0;
    for (int i = 0; i < g->n_prompts; i++) P += (int)g->prompts[i].ids.n, cached += g->prompts[i].n_cached;
    for (int i = 0; i < g->n_prompts * g->n; i++) C += g->choices[i].n_gen;
    sl_buf_printf(o,
                  "{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                  "\"prompt_tokens_details\":{\"cached_tokens\":%d}}",
                  P, C, P + C, cached);
}

static void head_json(const sl__gen *g, sl_buf *o, const char *object) {
    sl_buf_printf(o, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", g->id, object, g->created);
    sl_buf_json_str(o, g->a->name, strlen(g->a->name));
}

static void respond_full(sl__gen *g) {
    sl_buf o = {0};
    head_json(g, &o, g->chat ? "chat.completion" : "text_completion");
    sl_buf_puts(&o, ",\"choices\":[");
    int gen_total = 0;
    for (int i = 0; i < g->n_prompts * g->n; i++) {
        choice *c = &g->choices[i];
        gen_total += c->n_gen;
        sl_buf_printf(&o, "%s{\"index\":%d,", i ? "," : "", i);
        if (g->chat) {
            sl_buf_puts(&o, "\"message\":{\"role\":\"assistant\",\"content\":");
            sl_buf_json_str(&o, c->text.p ? c->text.p : "", c->text.n);
            sl_buf_puts(&o, "},");
        } else {
            sl_buf_puts(&o, "\"text\":");
            sl_buf_json_str(&o, c->text.p ? c->text.p : "", c->text.n);
            sl_buf_puts(&o, ",");
        }
        sl_buf_puts(&o, "\"logprobs\":");
        if (g->lp_k >= 0) logprobs_json(g, c->lp, &o);
        else sl_buf_puts(&o, "null");
        const char *fin = finish_name(c->finish);
        sl_buf_puts(&o, ",\"finish_reason\":");
        if (fin) sl_buf_printf(&o, "\"%s\"", fin);
        else sl_buf_puts(&o, "null");
        sl_buf_puts(&o, ",\"stop_reason\":");
        stop_reason_json(g, c, &o);
        sl_buf_puts(&o, "}");
    }
    sl_buf_puts(&o, "],\"usage\":");
    usage_json(g, &o);
    sl_buf_puts(&o, "}");
    int P = 0;
    for (int i = 0; i < g->n_prompts; i++) P += (int)g->prompts[i].ids.n;
    sl__api_json(g->a, g->r, &o, P, gen_total);
    sl_buf_free(&o);
}

static void sse_send(sl__gen *g, sl_buf *o) {
    sl_http_stream_write(g->r, o->p, o->n);
}

/* One streamed chunk for choice i: text (may be empty), logprobs (lp) and finish. */
static void send_chunk(sl__gen *g, int i, const char *text, size_t len, const sl_buf *lp, bool finishing) {
    choice *c = &g->choices[i];
    sl_buf *o = &g->out;
    sl_buf_reset(o);
    sl_buf_puts(o, "data: ");
    head_json(g, o, g->chat ? "chat.completion.chunk" : "text_completion");
    sl_buf_printf(o, ",\"choices\":[{\"index\":%d,", i);
    if (g->chat) {
        sl_buf_puts(o, "\"delta\":{");
        if (len || !finishing) {
            sl_buf_puts(o, "\"content\":");
            sl_buf_json_str(o, text, len);
        }
        sl_buf_puts(o, "},");
    } else {
        sl_buf_puts(o, "\"text\":");
        sl_buf_json_str(o, text, len);
        sl_buf_puts(o, ",");
    }
    sl_buf_puts(o, "\"logprobs\":");
    if (lp) logprobs_json(g, lp, o);
    else sl_buf_puts(o, "null");
    const char *fin = finishing ? finish_name(c->finish) : NULL;
    sl_buf_puts(o, ",\"finish_reason\":");
    if (fin) sl_buf_printf(o, "\"%s\"", fin);
    else sl_buf_puts(o, "null");
    if (finishing) {
        sl_buf_puts(o, ",\"stop_reason\":");
        stop_reason_json(g, c, o);
    }
    sl_buf_puts(o, "}]");
    if (g->include_usage) sl_buf_puts(o, ",\"usage\":null");
    sl_buf_puts(o, "}\n\n");
    sse_send(g, o);
}

static void send_role_chunk(sl__gen *g, int i) {
    sl_buf *o = &g->out;
    sl_buf_reset(o);
    sl_buf_puts(o, "data: ");
    head_json(g, o, "chat.completion.chunk");
    sl_buf_printf(o,
                  ",\"choices\":[{\"index\":%d,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                  "\"logprobs\":null,\"finish_reason\":null}]%s}\n\n",
                  i, g->include_usage ? ",\"usage\":null" : "");
    sse_send(g, o);
}

static void send_sse_error(sl__gen *g, int status, const char *msg) {
    sl_buf *o = &g->out;
    sl_buf_reset(o);
    char body[1024];
    sl_api_error_body(status, msg, body, sizeof body);
    sl_buf_printf(o, "data: %s\n\n", body);
    sse_send(g, o);
}

/* Every prompt is done: the response (or the stream's end), then the request is freed. */
static void complete(sl__gen *g) {
    if (g->headers_sent) {
        if (!g->gone) {
            if (g->include_usage && !g->err_status) {
                sl_buf *o = &g->out;
                sl_buf_reset(o);
                sl_buf_puts(o, "data: ");
                head_json(g, o, g->chat ? "chat.completion.chunk" : "text_completion");
                sl_buf_puts(o, ",\"choices\":[],\"usage\":");
                usage_json(g, o);
                sl_buf_puts(o, "}\n\n");
                sse_send(g, o);
            }
            sl_http_stream_write(g->r, "data: [DONE]\n\n", 14);
        }
        int gen_total = 0, P = 0;
        for (int i = 0; i < g->n_prompts * g->n; i++) gen_total += g->choices[i].n_gen;
        for (int i = 0; i < g->n_prompts; i++) P += (int)g->prompts[i].ids.n;
        sl__api_log(g->r, g->gone ? 499 : 200, P, gen_total);
        sl_http_stream_end(g->r);
    } else if (g->err_status) {
        respond_error(g);
    } else {
        respond_full(g);
    }
    gen_free(g);
}

/* ---- engine events ------------------------------------------------------------------------- */

static void observe_finish(sl_api *a, const sl__gen *g, const sl_engine_event *ev) {
    sl_metrics *m = &a->metrics;
    sl_metrics_finished(m, (int)ev->finish);
    double t = ev->t_event;
    sl_histo_observe(&m->e2e, t - g->t_arrival);
    if (ev->t_first_scheduled >= 0) {
        sl_histo_observe(&m->queue, ev->t_first_scheduled - ev->t_arrival);
        sl_histo_observe(&m->inference, t - ev->t_first_scheduled);
        if (ev->t_first_token >= 0) sl_histo_observe(&m->prefill, ev->t_first_token - ev->t_first_scheduled);
    }
    if (ev->t_first_token >= 0) {
        sl_histo_observe(&m->decode, t - ev->t_first_token);
        if (ev->n_generated > 1) sl_histo_observe(&m->tpot, (t - ev->t_first_token) / (ev->n_generated - 1));
    }
    if (ev->index == 0) sl_histo_observe(&m->prompt_len, ev->n_prompt);
    sl_histo_observe(&m->gen_len, ev->n_generated);
}

void sl__api_event(sl_api *a, sl_engine_event *ev) {
    gprompt *gp = ev->user;
    sl__gen *g = gp->g;
    int ci = gp->index * g->n + ev->index;
    choice *c = &g->choices[ci];
    if (ev->index == 0 && ev->n_cached_tokens > gp->n_cached) gp->n_cached = ev->n_cached_tokens;
    bool token = ev->token >= 0 && ev->finish != SL_FINISH_ERROR && ev->finish != SL_FINISH_ABORT;
    bool finishing = ev->finish != SL_FINISH_NONE;
    if (ev->finish == SL_FINISH_ERROR && !g->err_status) {
        /* refused (bad parameters, too long: a client error) or failed after it started */
        gen_fail(g, c->started ? 500 : 400, NULL, NULL, "%s", ev->error_msg[0] ? ev->error_msg : sl_strerror(ev->error));
        if (g->headers_sent && !g->gone) send_sse_error(g, g->err_status, g->err);
    }
    if (token) {
        if (!c->started && ev->t_first_token >= 0) sl_histo_observe(&a->metrics.ttft, ev->t_first_token - g->t_arrival);
        else if (c->started) sl_histo_observe(&a->metrics.itl, ev->t_event - c->t_last);
        c->t_last = ev->t_event;
        c->n_gen = ev->n_generated;
    }
    if (finishing) {
        c->finish = ev->finish;
        c->stop_string = ev->stop_string;
        c->last_token = ev->token;
        observe_finish(a, g, ev);
    }
    if (!g->gone && !g->err_status) {
        const char *text = ev->text ? ev->text : "";
        size_t len = ev->text ? ev->text_len : 0;
        const char *stop_s = NULL;
        if (finishing && g->include_stop && ev->finish == SL_FINISH_STOP && ev->stop_string >= 0 &&
            ev->stop_string < g->sp.n_stop)
            stop_s = g->sp.stop[ev->stop_string];
        if (g->stream) {
            sl_buf lp[4] = {{0}};
            if (token && g->lp_k >= 0) add_logprobs(g, c, ev, lp);
            sl_buf piece = {0};
            if (!c->started) {
                if (g->chat) send_role_chunk(g, ci);
                if (gp->echo) sl_buf_put(&piece, gp->echo, gp->echo_len);
            }
            sl_buf_put(&piece, text, len);
            if (stop_s) sl_buf_puts(&piece, stop_s);
            if (piece.n || finishing || lp[0].n)
                send_chunk(g, ci, piece.p ? piece.p : "", piece.n, g->lp_k >= 0 && token ? lp : NULL, finishing);
            sl_buf_free(&piece);
            for (int k = 0; k < 4; k++) sl_buf_free(&lp[k]);
        } else {
            if (!c->started && gp->echo) sl_buf_put(&c->text, gp->echo, gp->echo_len);
            sl_buf_put(&c->text, text, len);
            if (stop_s) sl_buf_puts(&c->text, stop_s);
            if (token && g->lp_k >= 0) add_logprobs(g, c, ev, c->lp);
        }
    }
    if (token || finishing) c->started = true;
    if (ev->done) {
        gp->done = true;
        a->inflight_seqs -= g->n;
        if (--g->pending == 0) complete(g);
    }
}

/* ---- admission and submission ---------------------------------------------------------------- */

static void on_client_gone(sl_http_req *r, void *arg) {
    (void)r;
    sl__gen *g = arg;
    g->gone = true;
    for (int i = 0; i < g->n_prompts; i++)
        if (g->prompts[i].submitted && !g->prompts[i].done) g->a->eng.abort(g->a->eng.impl, g->prompts[i].id);
}

static void start(sl__gen *g) {
    sl_api *a = g->a;
    if (g->gone || g->err_status) {
        if (g->err_status) respond_error(g);
        else sl_http_respond(g->r, 499, "text/plain", NULL, "", 0); /* nobody reads it */
        gen_free(g);
        return;
    }
    int seqs = g->n_prompts * g->n;
    if (a->inflight_seqs + seqs > a->cfg.max_num_seqs + a->cfg.max_queue) {
        sl__api_error(a, g->r, 429, NULL, NULL, "The server is busy: the request queue is full (%d sequences in flight)",
                      a->inflight_seqs);
        gen_free(g);
        return;
    }
    if (a->state != SL_API_READY) {
        sl__api_error(a, g->r, 503, NULL, NULL, "Shutting down: not accepting new requests");
        gen_free(g);
        return;
    }
    g->choices = sl_arena_alloc(&g->arena, (size_t)seqs * sizeof *g->choices);
    for (int i = 0; i < seqs; i++) g->choices[i].stop_string = -1, g->choices[i].last_token = -1;
    for (int i = 0; i < g->n_prompts; i++) {
        gprompt *gp = &g->prompts[i];
        sl_engine_req req = {.prompt = gp->ids.v, .n_prompt = (int)gp->ids.n, .sp = g->sp, .prio = g->prio, .user = gp};
        req.sp.max_tokens = max_tokens_for(g, gp);
        sl_histo_observe(&a->metrics.params_max_tokens, req.sp.max_tokens);
        sl_histo_observe(&a->metrics.params_n, g->n);
        if (a->eng.submit(a->eng.impl, &req, &gp->id)) {
            /* the engine is shutting down: what was submitted still ends with its events */
            gen_fail(g, 503, NULL, NULL, "Shutting down: not accepting new requests");
            for (int k = 0; k < i; k++) a->eng.abort(a->eng.impl, g->prompts[k].id);
            if (g->pending == 0) {
                respond_error(g);
                gen_free(g);
            }
            return;
        }
        gp->submitted = true;
        g->pending++;
        a->inflight_seqs += g->n;
    }
    sl_http_on_abort(g->r, on_client_gone, g);
    if (g->stream) {
        g->headers_sent = true;
        sl_http_stream_begin(g->r, 200, "text/event-stream; charset=utf-8", NULL);
    }
}

static void work_cb(uv_work_t *w) { prepare(w->data); }

static void after_work_cb(uv_work_t *w, int status) {
    sl__gen *g = w->data;
    g->in_pool = false;
    if (status < 0 && !g->err_status) gen_fail(g, 500, NULL, NULL, "prompt preparation was cancelled");
    start(g);
}

static void on_gone_while_preparing(sl_http_req *r, void *arg) {
    (void)r;
    ((sl__gen *)arg)->gone = true;
}

void sl__api_generate(sl_api *a, sl_http_req *r, cJSON *root, bool chat) {
    sl__gen *g = sl_xcalloc(1, sizeof *g);
    g->a = a;
    g->r = r;
    g->chat = chat;
    g->max_tokens = -1;
    g->t_arrival = r->t_start;
    g->created = (long long)time(NULL);
    snprintf(g->id, sizeof g->id, "%s-%016llx%016llx", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)sl_rng_u64(&a->rng), (unsigned long long)sl_rng_u64(&a->rng));
    g->next = a->gens;
    if (a->gens) a->gens->prev = g;
    a->gens = g;
    a->n_inflight++;
    int rc = parse_request(g, root);
    cJSON_Delete(root);
    if (rc) {
        respond_error(g);
        gen_free(g);
        return;
    }
    size_t bytes = 0;
    for (int i = 0; i < g->n_prompts; i++) bytes += g->prompts[i].text_len;
    for (size_t i = 0; i < g->n_msgs; i++) bytes += strlen(g->msgs[i].content);
    if (a->loop && bytes > a->cfg.inline_tokenize_bytes) {
        g->in_pool = true;
        g->work.data = g;
        sl_http_on_abort(r, on_gone_while_preparing, g);
        if (uv_queue_work(a->loop, &g->work, work_cb, after_work_cb) == 0) return;
        g->in_pool = false;
    }
    prepare(g);
    start(g);
}

void sl__api_abort_all(sl_api *a) {
    for (sl__gen *g = a->gens; g; g = g->next)
        for (int i = 0; i < g->n_prompts; i++)
            if (g->prompts[i].submitted && !g->prompts[i].done) a->eng.abort(a->eng.impl, g->prompts[i].id);
}
