#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

/* vLLM's default bucket bounds (API.md §5: T, I, R; N is built from max_model_len) */
static const double B_TTFT[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560};
static const double B_ITL[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                               0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80};
static const double B_REQ[] = {0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20,
                               30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680};
static const double B_PARAMS_N[] = {1, 2, 5, 10, 20};

#define NB(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void histo_init(sl_histo *h, const double *bounds, int n) {
    h->bounds = bounds;
    h->n = n;
    h->counts = sl_xcalloc((size_t)n + 1, sizeof *h->counts);
    h->sum = 0;
    h->count = 0;
}

void sl_histo_observe(sl_histo *h, double x) {
    int i = 0;
    while (i < h->n && x > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += x;
    h->count++;
}

void sl_metrics_init(sl_metrics *m, const char *model_name, int max_model_len) {
    memset(m, 0, sizeof *m);
    sl_buf b = {0};
    for (const char *p = model_name; *p; p++) {
        if (*p == '\\') sl_buf_puts(&b, "\\\\");
        else if (*p == '"') sl_buf_puts(&b, "\\\"");
        else if (*p == '\n') sl_buf_puts(&b, "\\n");
        else sl_buf_put(&b, p, 1);
    }
    if (!b.p) sl_buf_puts(&b, "");
    m->model_label = b.p;
    /* 1, 2, 5, 10, 20, 50, ... up to max_model_len */
    int n = 0;
    m->n_bounds = sl_xmalloc(64 * sizeof *m->n_bounds);
    for (double mant = 1; n < 60; mant *= 10) {
        const double steps[3] = {1, 2, 5};
        int k;
        for (k = 0; k < 3 && mant * steps[k] <= (double)max_model_len; k++) m->n_bounds[n++] = mant * steps[k];
        if (k < 3) break;
    }
    histo_init(&m->ttft, B_TTFT, NB(B_TTFT));
    histo_init(&m->itl, B_ITL, NB(B_ITL));
    histo_init(&m->tpot, B_ITL, NB(B_ITL));
    histo_init(&m->e2e, B_REQ, NB(B_REQ));
    histo_init(&m->queue, B_REQ, NB(B_REQ));
    histo_init(&m->prefill, B_REQ, NB(B_REQ));
    histo_init(&m->decode, B_REQ, NB(B_REQ));
    histo_init(&m->inference, B_REQ, NB(B_REQ));
    histo_init(&m->prompt_len, m->n_bounds, n);
    histo_init(&m->gen_len, m->n_bounds, n);
    histo_init(&m->params_max_tokens, m->n_bounds, n);
    histo_init(&m->params_n, B_PARAMS_N, NB(B_PARAMS_N));
}

void sl_metrics_deinit(sl_metrics *m) {
    sl_histo *hs[] = {&m->ttft, &m->itl, &m->tpot, &m->e2e, &m->queue, &m->prefill, &m->decode,
                      &m->inference, &m->prompt_len, &m->gen_len, &m->params_max_tokens, &m->params_n};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) free(hs[i]->counts);
    free(m->n_bounds);
    free(m->model_label);
    memset(m, 0, sizeof *m);
}

void sl_metrics_finished(sl_metrics *m, int finish) {
    if (finish >= 1 && finish <= 4) m->finished[finish]++;
}

void sl_metrics_rejected(sl_metrics *m, const char *reason) {
    int i;
    for (i = 0; i < SL_METRICS_MAX_REASONS && m->reject_reason[i]; i++)
        if (!strcmp(m->reject_reason[i], reason)) break;
    if (i == SL_METRICS_MAX_REASONS) return;
    m->reject_reason[i] = reason;
    m->rejected[i]++;
}

/* ---- rendering --------------------------------------------------------------------------- */

/* A float as Python's repr writes it (so as prometheus_client writes it): the shortest form
 * that reads back exactly, with ".0" on integral values ("1.0", "0.075", "2560.0"). */
static void fmt_float(char *out, size_t cap, double x) {
    if (x == floor(x) && fabs(x) < 1e15) {
        snprintf(out, cap, "%.0f.0", x);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, x);
        if (strtod(out, NULL) == x) break;
    }
    if (!strpbrk(out, ".eEni")) strncat(out, ".0", cap - strlen(out) - 1);
}

static void head(sl_buf *o, const char *name, const char *type, const char *help) {
    sl_buf_printf(o, "# HELP sluice:%s %s\n# TYPE sluice:%s %s\n", name, help, name, type);
}

static void labels(sl_buf *o, const sl_metrics *m, const char *extra) {
    sl_buf_printf(o, "{engine=\"0\",model_name=\"%s\"%s%s}", m->model_label, extra ? "," : "", extra ? extra : "");
}

static void sample_u(sl_buf *o, const sl_metrics *m, const char *name, const char *extra, uint64_t v) {
    sl_buf_printf(o, "sluice:%s", name);
    labels(o, m, extra);
    sl_buf_printf(o, " %llu\n", (unsigned long long)v);
}

static void gauge(sl_buf *o, const sl_metrics *m, const char *name, const char *help, double v) {
    head(o, name, "gauge", help);
    sl_buf_printf(o, "sluice:%s", name);
    labels(o, m, NULL);
    char num[40];
    fmt_float(num, sizeof num, v);
    sl_buf_printf(o, " %s\n", num);
}

static void counter(sl_buf *o, const sl_metrics *m, const char *name, const char *help, uint64_t v) {
    head(o, name, "counter", help);
    sample_u(o, m, name, NULL, v);
}

static void histo(sl_buf *o, const sl_metrics *m, const char *name, const char *help, const sl_histo *h) {
    head(o, name, "histogram", help);
    uint64_t cum = 0;
    char le[64];
    char bname[128];
    snprintf(bname, sizeof bname, "%s_bucket", name);
    for (int i = 0; i <= h->n; i++) {
        cum += h->counts[i];
        char num[40];
        fmt_float(num, sizeof num, i < h->n ? h->bounds[i] : 0);
        if (i < h->n) snprintf(le, sizeof le, "le=\"%s\"", num);
        else snprintf(le, sizeof le, "le=\"+Inf\"");
        sample_u(o, m, bname, le, cum);
    }
    snprintf(bname, sizeof bname, "%s_count", name);
    sample_u(o, m, bname, NULL, h->count);
    sl_buf_printf(o, "sluice:%s_sum", name);
    labels(o, m, NULL);
    char num[40];
    fmt_float(num, sizeof num, h->sum);
    sl_buf_printf(o, " %s\n", num);
}

void sl_metrics_render(const sl_metrics *m, const sl_metrics_engine *e, sl_buf *o) {
    gauge(o, m, "num_requests_running", "Number of requests in the running batch.", e->running);
    gauge(o, m, "num_requests_waiting", "Number of requests waiting to be scheduled, preempted ones included.",
          e->waiting);
    gauge(o, m, "kv_cache_usage_perc", "KV-cache usage: fraction of KV blocks in use (0 to 1).", e->kv_usage);
    counter(o, m, "prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.", e->prefix_queries);
    counter(o, m, "prefix_cache_hits_total", "Prompt tokens found in the prefix cache.", e->prefix_hits);
    counter(o, m, "num_preemptions_total", "Preemptions (recompute) by the scheduler.", e->preemptions);
    counter(o, m, "prompt_tokens_total", "Prefill tokens processed.", e->prompt_tokens);
    counter(o, m, "generation_tokens_total", "Generated tokens.", e->generation_tokens);

    head(o, "request_success_total", "counter", "Finished requests by finish reason.");
    static const char *const reasons[5] = {NULL, "stop", "length", "abort", "error"};
    for (int i = 1; i <= 4; i++) {
        char l[48];
        snprintf(l, sizeof l, "finished_reason=\"%s\"", reasons[i]);
        sample_u(o, m, "request_success_total", l, m->finished[i]);
    }
    head(o, "request_rejected_total", "counter", "Requests refused before they ran, by error type.");
    for (int i = 0; i < SL_METRICS_MAX_REASONS && m->reject_reason[i]; i++) {
        char l[96];
        snprintf(l, sizeof l, "reason=\"%s\"", m->reject_reason[i]);
        sample_u(o, m, "request_rejected_total", l, m->rejected[i]);
    }

    histo(o, m, "time_to_first_token_seconds", "Time to first token (arrival to first token).", &m->ttft);
    histo(o, m, "inter_token_latency_seconds", "Time between successive outputs of a request.", &m->itl);
    histo(o, m, "request_time_per_output_token_seconds", "Mean decode time per output token of each request.",
          &m->tpot);
    histo(o, m, "e2e_request_latency_seconds", "Arrival to last token.", &m->e2e);
    histo(o, m, "request_queue_time_seconds", "Time waiting in the queue before first scheduled.", &m->queue);
    histo(o, m, "request_prefill_time_seconds", "First scheduled to first token.", &m->prefill);
    histo(o, m, "request_decode_time_seconds", "First token to last token.", &m->decode);
    histo(o, m, "request_inference_time_seconds", "First scheduled to last token.", &m->inference);
    histo(o, m, "request_prompt_tokens", "Prompt length of each finished request.", &m->prompt_len);
    histo(o, m, "request_generation_tokens", "Generated tokens of each finished request.", &m->gen_len);
    histo(o, m, "request_params_n", "The n parameter of each request.", &m->params_n);
    histo(o, m, "request_params_max_tokens", "The max_tokens parameter of each request.", &m->params_max_tokens);
}
