/* metrics.h — the server's Prometheus metrics, with vLLM's names under the prefix "sluice:"
 * (../shared/API.md §5), rendered in the Prometheus text format (version 0.0.4).
 *
 * Every series carries the labels model_name (the served name) and engine ("0"). Counters go
 * out with the "_total" suffix, histograms as _bucket{le=...} (cumulative, ending with
 * le="+Inf"), _sum and _count, with vLLM's default bucket bounds. Gauges and the engine's own
 * counters are read at render time (sl_metrics_engine); per-request values are observed by
 * the API layer as requests progress.
 *
 * Thread-safety: none; the loop thread owns the metrics.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stdint.h>

#include "api_util.h"

typedef struct sl_histo {
    const double *bounds;        /* [n] upper bounds, ascending (not owned) */
    int n;
    uint64_t *counts;            /* [n + 1] per bucket, not cumulative; the last is +Inf */
    double sum;
    uint64_t count;
} sl_histo;

enum { SL_METRICS_MAX_REASONS = 16 };

typedef struct sl_metrics {
    char *model_label;           /* escaped label value */
    uint64_t finished[5];        /* by sl_finish: none (unused), stop, length, abort, error */
    const char *reject_reason[SL_METRICS_MAX_REASONS]; /* static strings */
    uint64_t rejected[SL_METRICS_MAX_REASONS];
    double *n_bounds;            /* the 1-2-5 series up to max_model_len */
    sl_histo ttft, itl, e2e, queue, prefill, decode, inference, tpot, prompt_len, gen_len, params_n,
        params_max_tokens;
} sl_metrics;

/* What the engine reports at render time. */
typedef struct sl_metrics_engine {
    int running, waiting;
    double kv_usage;             /* fraction 0..1 */
    uint64_t prefix_queries, prefix_hits, preemptions, prompt_tokens, generation_tokens;
} sl_metrics_engine;

/* Allocates; sl_metrics_deinit frees. */
void sl_metrics_init(sl_metrics *m, const char *model_name, int max_model_len);
void sl_metrics_deinit(sl_metrics *m);
void sl_histo_observe(sl_histo *h, double x);
/* Counts a finished sequence (finish: 1 stop, 2 length, 3 abort, 4 error). */
void sl_metrics_finished(sl_metrics *m, int finish);
/* Counts a request refused before it ran; reason is a static string (an error type). */
void sl_metrics_rejected(sl_metrics *m, const char *reason);
/* Appends the whole exposition to out. */
void sl_metrics_render(const sl_metrics *m, const sl_metrics_engine *e, sl_buf *out);

#endif
