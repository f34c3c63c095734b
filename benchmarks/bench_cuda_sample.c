/* bench_cuda_sample.c — sl_cuda_sample (kernels/cuda/sample.h) over a 128256-token vocabulary
 * (Llama 3): microseconds per step for batches of 1, 64 and 256 rows, greedy, temperature 0.8 +
 * top_p 0.95 + top_k 50, top_p alone, and with logprobs and top_logprobs 5; the truncated ones
 * also selected over the whole row (list cap 0: the kernel before candidate lists), so the
 * lists' gain is a ratio of one run. Next to each: the logits' bytes over the time (a step
 * reads them at least once; the selection passes re-read them, from L2 when the batch fits)
 * against the device copy bandwidth measured in the same run, and the candidate list row 0
 * selected from (-1: the whole row, -2: none).
 *
 * Logits are normal(0, 3) (a plausible spread: top_p keeps tens to hundreds of tokens), in
 * rotating sets larger than twice the L2 together; median of CUDA-event timings.
 * Run: build/bench_cuda_sample (exits 77 without a device).
 */
#include <math.h>

#include "base/base.h"
#include "benchmarks/bench_cuda.h"
#include "kernels/cuda/sample.h"

#define V 128256

typedef struct run {
    int B, sets;
    float *logits[256];         /* device [B][V] each */
    sl_cuda_sample_row *rows;   /* device [B] */
    int32_t *tok;
    float *lp, *top_lps;
    int32_t *top_ids;
    int32_t *list_n; /* device [B][2] */
    int want_lp;
} run;

static void step(void *arg, int i) {
    run *r = arg;
    sl_cuda_sample(r->logits[i % r->sets], r->B, V, r->rows, r->tok, r->want_lp ? r->lp : NULL,
                   r->want_lp ? r->top_ids : NULL, r->want_lp ? r->top_lps : NULL, NULL);
}

int main(void) {
    int rc = bench_begin("bench_cuda_sample");
    if (rc) return rc;
    const double copy = bench_copy_gbps();
    const size_t l2 = bench_l2_bytes();
    static const int batches[] = {1, 64, 256};
    const int max_b = 256;

    /* host logits for the largest batch, copied into every set */
    float *h = malloc((size_t)max_b * V * sizeof(float));
    sl_rng rng;
    sl_rng_seed(&rng, 42);
    for (size_t i = 0; i < (size_t)max_b * V; i++) h[i] = 3.0f * sl_rng_normal(&rng);
    sl_cuda_sample_row *hr = malloc((size_t)max_b * sizeof *hr);

    printf("\ncopy bandwidth: %.0f GB/s (device to device, read + write)\n\n", copy);
    printf("| batch | sampling | us/step | logits MB | GB/s (logits / time) | of copy | list |\n");
    printf("|---:|---|---:|---:|---:|---:|---:|\n");
    for (int bi = 0; bi < 3; bi++) {
        run r = {0};
        r.B = batches[bi];
        const size_t bytes = (size_t)r.B * V * sizeof(float);
        r.sets = (int)((2 * l2 + bytes - 1) / bytes) + 1;
        if (r.sets > 256) r.sets = 256;
        for (int s = 0; s < r.sets; s++) {
            BENCH_CHECK(cudaMalloc((void **)&r.logits[s], bytes));
            BENCH_CHECK(cudaMemcpy(r.logits[s], h + (size_t)(s % 7) * V * (r.B == 1), bytes,
                                   cudaMemcpyHostToDevice));
        }
        BENCH_CHECK(cudaMalloc((void **)&r.rows, (size_t)r.B * sizeof *hr));
        BENCH_CHECK(cudaMalloc((void **)&r.tok, (size_t)r.B * 4));
        BENCH_CHECK(cudaMalloc((void **)&r.list_n, (size_t)r.B * 8));
        BENCH_CHECK(cudaMalloc((void **)&r.lp, (size_t)r.B * 4));
        BENCH_CHECK(cudaMalloc((void **)&r.top_ids, (size_t)r.B * SL_CUDA_MAX_LOGPROBS * 4));
        BENCH_CHECK(cudaMalloc((void **)&r.top_lps, (size_t)r.B * SL_CUDA_MAX_LOGPROBS * 4));
        static const struct {
            const char *name;
            float temperature, top_p;
            int top_k, logprobs, cap; /* cap: the candidate list's (-1 default, 0 none) */
        } modes[] = {
            {"greedy", 0.0f, 1.0f, 0, 0, -1},
            {"T 0.8, top_p 0.95, top_k 50", 0.8f, 0.95f, 50, 0, -1},
            {"same, over the whole row", 0.8f, 0.95f, 50, 0, 0},
            {"T 0.8, top_p 0.95", 0.8f, 0.95f, 0, 0, -1},
            {"same, over the whole row", 0.8f, 0.95f, 0, 0, 0},
            {"T 0.8, top_p 0.95, top_k 50 + logprobs, top_logprobs 5", 0.8f, 0.95f, 50, 1, -1},
        };
        for (int mode = 0; mode < (int)(sizeof modes / sizeof modes[0]); mode++) {
            for (int b = 0; b < r.B; b++) {
                hr[b] = (sl_cuda_sample_row){
                    .u = (double)(sl_rng_u64(&rng) >> 11) * 0x1.0p-53,
                    .temperature = modes[mode].temperature,
                    .top_p = modes[mode].top_p,
                    .top_k = modes[mode].top_k,
                    .repetition_penalty = 1.0f,
                    .logprobs = modes[mode].logprobs,
                    .top_logprobs = modes[mode].logprobs ? 5 : 0};
            }
            BENCH_CHECK(cudaMemcpy(r.rows, hr, (size_t)r.B * sizeof *hr, cudaMemcpyHostToDevice));
            r.want_lp = modes[mode].logprobs;
            sl_cuda_sample_set_list_cap(modes[mode].cap);
            const double us = bench_time_us(step, &r, 5, r.B >= 64 ? 50 : 200);
            /* row 0's candidate list, from one more call */
            sl__cuda_sample_ex(r.logits[0], r.B, V, r.rows, r.tok, NULL, NULL, NULL, r.list_n,
                               NULL);
            sl_cuda_sample_set_list_cap(-1);
            int32_t list0 = 0;
            BENCH_CHECK(cudaMemcpy(&list0, r.list_n, 4, cudaMemcpyDeviceToHost));
            const double gbps = (double)bytes / (us * 1e-6) / 1e9;
            printf("| %d | %s | %.1f | %.1f | %.0f | %.0f%% | %d |\n", r.B, modes[mode].name, us,
                   (double)bytes / 1e6, gbps, 100.0 * gbps / copy, list0);
        }
        /* a sanity check that the tokens are tokens */
        int32_t t0 = -1;
        BENCH_CHECK(cudaMemcpy(&t0, r.tok, 4, cudaMemcpyDeviceToHost));
        if (t0 < 0 || t0 >= V) {
            fprintf(stderr, "bench_cuda_sample: token %d out of range\n", t0);
            return 1;
        }
        for (int s = 0; s < r.sets; s++) BENCH_CHECK(cudaFree(r.logits[s]));
        BENCH_CHECK(cudaFree(r.rows));
        BENCH_CHECK(cudaFree(r.tok));
        BENCH_CHECK(cudaFree(r.list_n));
        BENCH_CHECK(cudaFree(r.lp));
        BENCH_CHECK(cudaFree(r.top_ids));
        BENCH_CHECK(cudaFree(r.top_lps));
    }
    free(h);
    free(hr);
    return 0;
}
