/* bench_cuda_attention.c — paged decode attention (kernels/cuda/attention.h) on a GPU against
 * the device's copy bandwidth, measured in the same run.
 *
 *   build/bench_cuda_attention [--quick]
 *
 * Llama-3-8B shapes: H = 32 query heads, Hkv = 8 KV heads, head_dim 128, block_size 16, fp16
 * cache; one query token per sequence (q_len 1) at batch 1, 16, 64, 256 × context 512, 4096,
 * 32768 (combinations whose KV passes 40 GiB are skipped). Every sequence's blocks are random
 * blocks of one pool. Times are the median graph replay (bench_graph_us: a CUDA graph of
 * `sets` calls, timed with events) over the calls in it; when one call's KV is small, the
 * calls rotate among sets of blocks (and queries) far apart in the pool, more than 4× L2
 * together, so that repeats do not read from the cache. GB/s counts the K and V bytes the
 * tokens attend to (ctx × Hkv × head_dim × 2 bytes, twice, per sequence); "% copy" compares
 * that with the device-to-device copy (bytes read + written). Cache values are random fp16 in
 * ±[0.1, 1), queries random f32; the first output is checked to be finite.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "benchmarks/bench_cuda.h"
#include "kernels/cuda/attention.h"

#define HKV 8
#define HEAD_DIM 128
#define BS 16
#define MAX_SETS 64
#define MAX_KV_BYTES (40.0 * (1u << 30))

static int H = 32; /* query heads: 32, or 64 / 8 in the GQA rows */

typedef struct acase {
    int batch, ctx, sets, max_blocks;
    uint16_t *k, *v;       /* device, the pool [n_blocks][BS][HKV][HEAD_DIM] fp16 */
    float *q[MAX_SETS];    /* device [batch][H][HEAD_DIM] */
    int32_t *bt[MAX_SETS]; /* device [batch][max_blocks] */
    int32_t *q_start, *q_len, *ctx_len; /* device [batch] */
    float *out;            /* device [batch][H][HEAD_DIM] */
    void *ws;
    size_t ws_bytes;
} acase;

static void attn_fn(void *arg, int i, cudaStream_t s) {
    acase *c = arg;
    const int k = i % c->sets;
    sl_attn_batch b = {c->batch, c->max_blocks, c->q_start, c->q_len, c->ctx_len, c->bt[k], 0, 0};
    sl_cuda_attention_f16(c->q[k], c->k, c->v, c->out, &b, c->batch, c->ctx, H, HKV, HEAD_DIM, BS,
                          1.0f / sqrtf((float)HEAD_DIM), c->ws, c->ws_bytes, (sl_cuda_stream)s);
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

static uint64_t xs(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* n fp16 values in ±[0.1, 1) at dev: a 64 MiB random pattern, then copies of it */
static void fill_f16(uint16_t *dev, size_t n, uint64_t seed) {
    const size_t pat = min_size(n, (size_t)32 << 20);
    uint16_t *h = calloc(pat, 2);
    uint64_t s = seed | 1;
    for (size_t i = 0; i < pat; i++) {
        uint64_t r = xs(&s);
        float f = 0.1f + 0.9f * (float)(r >> 40) / (float)(1 << 24);
        h[i] = sl_f32_to_fp16((r & 1) ? f : -f);
    }
    BENCH_CHECK(cudaMemcpy(dev, h, pat * 2, cudaMemcpyHostToDevice));
    free(h);
    for (size_t done = pat; done < n;) {
        size_t m = min_size(done, n - done);
        BENCH_CHECK(cudaMemcpy(dev + done, dev, m * 2, cudaMemcpyDeviceToDevice));
        done += m;
    }
}

static void *dev_upload(const void *h, size_t bytes) {
    void *d = NULL;
    BENCH_CHECK(cudaMalloc(&d, bytes));
    BENCH_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

static const int g_sweep[] = {1, 2, 4, 8, 16, 32, 64};
#define N_SWEEP 7

/* Times one (batch, ctx): us[0] the launcher's choice, us[1 + i] with g_sweep[i] chunks
 * forced (when sweep). */
static void run_case(int batch, int ctx, int quick, int sweep, uint64_t *seed, double *us) {
    acase c = {0};
    c.batch = batch;
    c.ctx = ctx;
    c.max_blocks = (ctx + BS - 1) / BS;
    const size_t block_bytes = (size_t)BS * HKV * HEAD_DIM * 2;
    const size_t kv_bytes = (size_t)batch * c.max_blocks * block_bytes * 2; /* K and V */
    const size_t rot = 4 * bench_l2_bytes();
    c.sets = kv_bytes >= rot ? 1 : (int)min_size(MAX_SETS, (rot + kv_bytes - 1) / kv_bytes);
    const int64_t per_set = (int64_t)batch * c.max_blocks, n_blocks = 1 + per_set * c.sets;
    BENCH_CHECK(cudaMalloc((void **)&c.k, (size_t)n_blocks * block_bytes));
    BENCH_CHECK(cudaMalloc((void **)&c.v, (size_t)n_blocks * block_bytes));
    fill_f16(c.k, (size_t)n_blocks * block_bytes / 2, xs(seed));
    fill_f16(c.v, (size_t)n_blocks * block_bytes / 2, xs(seed));

    /* blocks 1.. shuffled, each set a disjoint slice */
    int32_t *perm = malloc((size_t)(n_blocks - 1) * 4);
    for (int64_t i = 0; i < n_blocks - 1; i++) perm[i] = (int32_t)(i + 1);
    for (int64_t i = n_blocks - 2; i > 0; i--) {
        int64_t j = (int64_t)(xs(seed) % (uint64_t)(i + 1));
        int32_t x = perm[i];
        perm[i] = perm[j], perm[j] = x;
    }
    const size_t qn = (size_t)batch * H * HEAD_DIM;
    float *hq = malloc(qn * 4);
    for (int k = 0; k < c.sets; k++) {
        c.bt[k] = dev_upload(perm + (int64_t)k * per_set, (size_t)per_set * 4);
        for (size_t i = 0; i < qn; i++)
            hq[i] = (float)((int64_t)(xs(seed) >> 40) - (1 << 23)) / (float)(1 << 23);
        c.q[k] = dev_upload(hq, qn * 4);
    }
    int32_t *hs = malloc((size_t)batch * 4);
    for (int i = 0; i < batch; i++) hs[i] = i;
    c.q_start = dev_upload(hs, (size_t)batch * 4);
    for (int i = 0; i < batch; i++) hs[i] = 1;
    c.q_len = dev_upload(hs, (size_t)batch * 4);
    for (int i = 0; i < batch; i++) hs[i] = ctx;
    c.ctx_len = dev_upload(hs, (size_t)batch * 4);
    BENCH_CHECK(cudaMalloc((void **)&c.out, qn * 4));
    /* room for every forced split of the sweep, not only the heuristic's */
    c.ws_bytes = (size_t)batch * H * (HEAD_DIM + 2) * 4 * 64;
    if (c.ws_bytes < sl_cuda_attention_workspace_bytes(HEAD_DIM))
        c.ws_bytes = sl_cuda_attention_workspace_bytes(HEAD_DIM);
    BENCH_CHECK(cudaMalloc(&c.ws, c.ws_bytes));

    const int per = c.sets > 1 ? c.sets : 4, reps = quick ? 10 : 30;
    us[0] = bench_graph_us(attn_fn, &c, per, reps);
    float o0 = 0.0f;
    BENCH_CHECK(cudaMemcpy(&o0, c.out, 4, cudaMemcpyDeviceToHost));
    if (!isfinite(o0)) {
        fprintf(stderr, "bench_cuda_attention: batch %d ctx %d: output %g\n", batch, ctx,
                (double)o0);
        exit(1);
    }
    for (int i = 0; sweep && i < N_SWEEP; i++) {
        sl__cuda_attention_force_splits(g_sweep[i]);
        us[1 + i] = bench_graph_us(attn_fn, &c, per, reps);
    }
    sl__cuda_attention_force_splits(0);

    for (int k = 0; k < c.sets; k++) {
        BENCH_CHECK(cudaFree(c.bt[k]));
        BENCH_CHECK(cudaFree(c.q[k]));
    }
    BENCH_CHECK(cudaFree(c.k));
    BENCH_CHECK(cudaFree(c.v));
    BENCH_CHECK(cudaFree(c.q_start));
    BENCH_CHECK(cudaFree(c.q_len));
    BENCH_CHECK(cudaFree(c.ctx_len));
    BENCH_CHECK(cudaFree(c.out));
    BENCH_CHECK(cudaFree(c.ws));
    free(perm), free(hq), free(hs);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int rc = bench_begin("bench_cuda_attention");
    if (rc) return rc;
    const double copy = bench_copy_gbps();
    printf("device-to-device copy: %.0f GB/s (read + write)\n\n", copy);
    printf("decode attention, H=%d Hkv=%d head_dim=%d block_size=%d, fp16 KV, q_len 1\n\n", H,
           HKV, HEAD_DIM, BS);
    printf("| batch | context | KV MiB | µs | GB/s | %% copy |\n");
    printf("|---:|---:|---:|---:|---:|---:|\n");
    static const int batches[] = {1, 16, 64, 256}, ctxs[] = {512, 4096, 32768};
    uint64_t seed = 0x2545f4914f6cdd1dull;
    double sweep_us[12][1 + N_SWEEP];
    int sweep_b[12], sweep_c[12], n_sweep = 0;
    for (int bi = 0; bi < 4; bi++)
        for (int ci = 0; ci < 3; ci++) {
            const int batch = batches[bi], ctx = ctxs[ci];
            const double bytes = (double)batch * ctx * HKV * HEAD_DIM * 2 * 2;
            if (bytes > MAX_KV_BYTES) continue;
            /* the split sweep where the launcher has a choice to make */
            const int sweep = !quick && batch <= 64 && ctx >= 4096;
            double us[1 + N_SWEEP];
            run_case(batch, ctx, quick, sweep, &seed, us);
            const double gbps = bytes / (us[0] * 1e-6) / 1e9;
            printf("| %d | %d | %.0f | %.1f | %.0f | %.0f%% |\n", batch, ctx,
                   bytes / (1 << 20), us[0], gbps, 100.0 * gbps / copy);
            fflush(stdout);
            if (sweep) {
                memcpy(sweep_us[n_sweep], us, sizeof us);
                sweep_b[n_sweep] = batch, sweep_c[n_sweep] = ctx;
                n_sweep++;
            }
        }
    /* other GQA ratios on the same KV (Llama-3-70B's 8 query heads per KV head, MHA's 1) */
    printf("\n| query heads per KV head | batch | context | µs | GB/s | %% copy |\n");
    printf("|---:|---:|---:|---:|---:|---:|\n");
    static const int hs[] = {64, 8};
    for (int i = 0; i < 2; i++) {
        H = hs[i];
        double us[1 + N_SWEEP];
        const double bytes = 64.0 * 4096 * HKV * HEAD_DIM * 2 * 2;
        run_case(64, 4096, quick, 0, &seed, us);
        const double gbps = bytes / (us[0] * 1e-6) / 1e9;
        printf("| %d | 64 | 4096 | %.1f | %.0f | %.0f%% |\n", H / HKV, us[0], gbps,
               100.0 * gbps / copy);
    }
    H = 32;
    if (n_sweep) {
        printf("\nµs with the context split in N chunks (forced; capped at context / 1), "
               "against the launcher's choice\n\n| batch | context | launcher |");
        for (int i = 0; i < N_SWEEP; i++) printf(" %d |", g_sweep[i]);
        printf("\n|---:|---:|---:|");
        for (int i = 0; i < N_SWEEP; i++) printf("---:|");
        printf("\n");
        for (int r = 0; r < n_sweep; r++) {
            printf("| %d | %d | %.1f |", sweep_b[r], sweep_c[r], sweep_us[r][0]);
            for (int i = 0; i < N_SWEEP; i++) printf(" %.1f |", sweep_us[r][1 + i]);
            printf("\n");
        }
    }
    return 0;
}
