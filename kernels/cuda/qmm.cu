/* qmm.cu — the decode matmul's entry points (matmul.h): arguments, the default launch plans,
 * the workspace of split and flat plans, and launches of up to SL_QMM_MAX_T tokens each. The
 * kernel and its launchers are in qmm_kernel.cuh, instantiated in qmm_w{4,8}_nt{1,2,4}.cu.
 */
#include "qmm_kernel.cuh"

namespace sl_qmm {

/* the launchers' instantiations are in qmm_w*_nt*.cu, none here */
#define SL_QMM_EXTERN(Q4, NT)                                                                    \
    extern template void launch_offs<Q4, NT>(const qmm_job &, const __half *, int, sl_qmm_plan,  \
                                             float *, unsigned *, cudaStream_t)
SL_QMM_EXTERN(true, 1);
SL_QMM_EXTERN(true, 2);
SL_QMM_EXTERN(true, 4);
SL_QMM_EXTERN(false, 1);
SL_QMM_EXTERN(false, 2);
SL_QMM_EXTERN(false, 4);

int sm_count() {
    static int n;
    if (!n) {
        int dev = 0;
        SL_CUDA_CHECK(cudaGetDevice(&dev));
        SL_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    }
    return n;
}

} // namespace sl_qmm

namespace {

using namespace sl_qmm;

/* the launcher's workspace: partial sums, and counters per row block (blocked plans) or row
 * tile (flat ones), zero between launches */
float *g_part;
size_t g_part_n;
unsigned *g_counters;
size_t g_counters_n;

void workspace(size_t part_n, size_t counters_n) {
    if (part_n > g_part_n) {
        SL_CUDA_CHECK(cudaDeviceSynchronize());
        SL_CUDA_CHECK(cudaFree(g_part));
        SL_CUDA_CHECK(cudaMalloc(&g_part, part_n * sizeof(float)));
        g_part_n = part_n;
    }
    if (counters_n > g_counters_n) {
        SL_CUDA_CHECK(cudaDeviceSynchronize());
        SL_CUDA_CHECK(cudaFree(g_counters));
        SL_CUDA_CHECK(cudaMalloc(&g_counters, counters_n * sizeof(unsigned)));
        SL_CUDA_CHECK(cudaMemset(g_counters, 0, counters_n * sizeof(unsigned)));
        g_counters_n = counters_n;
    }
}

/* The plan the launcher had before any GPU measured it, still the best measured where plan_for
 * takes it: about 16 warps per SM (two blocks of 8: the least the launch bounds allow), each
 * streaming at least 4 column tiles. The warps a row tile gets (per_tile) are 2 per block (kw)
 * and the rest splits over blocks: a block reads the x of its columns once (its 8 / kw row
 * tiles share it through L1), while a split adds only a partial sum per output. */
sl_qmm_plan spread_plan(int64_t row_tiles, int64_t k_tiles) {
    const int64_t want = 16 * (int64_t)sm_count();
    int64_t per_tile = sl_min64(want / row_tiles, k_tiles / 4);
    if (per_tile < 1) per_tile = 1;
    sl_qmm_plan p = {per_tile >= 2 ? 2 : 1, 1, 0, 0, 0};
    const int64_t s = sl_min64(per_tile / p.warps_per_tile, 64);
    p.splits = s < 1 ? 1 : (int)s;
    return p;
}

/* The default plan for row_tiles row tiles (one weight's, or the sum over a group's weights)
 * of w's format, scales and column tiles, and T tokens (0: any T) */
sl_qmm_plan plan_for(const sl_cuda_qmat *w, int64_t row_tiles, int T) {
    /* Measured on an H200 (benchmarks/results/h200-2026-11-28.md: plan sweeps of Q4_0's, Q4_K's
     * and Q8_0's forms on Llama-3-8B's shapes, and both plans of every form): 8 warps per row
     * tile without splits — one row tile a block, its 8 warps streaming the columns — was the
     * fastest plan or close to it at 1 to 8 tokens, 13 to 31% faster than spread_plan, and at
     * 16 and 32 tokens on every shape of up to 4 row tiles per SM. Past that (gate/up: 896 row
     * tiles) each block re-reading x from L2 costs more than it saves at 16 tokens and more,
     * and spread_plan (4 row tiles a block sharing x through L1) wins. Up to 8 tokens
     * spread_plan stayed 4-8% faster on weights of fewer row tiles than SMs (k/v alone), 6-16%
     * on Q6_K's form (QW8, two-level scales) up to 4 row tiles per SM, and 15-18% on QW4 with
     * offsets and f16 scales past that; and splits that bring the blocks to 2 per SM (QW4) or 4
     * (QW8, fewer registers and instructions per byte) paid on Q8_0's q/o and down (25% on
     * down), down to 4 tiles a warp; at more tokens they lost. A short row (under 16 column
     * tiles) gets fewer warps: 2 tiles each at least. */
    const int64_t sms = sm_count(), k_tiles = w->k_tiles;
    const bool few = T >= 1 && T <= 8, large = row_tiles > 4 * sms;
    const bool q8 = w->fmt == SL_WF_QW8, two_level = w->scale_bytes == 1;
    const bool q4_offsets = !q8 && w->offsets && !two_level;
    if (few ? row_tiles < sms || (q8 && two_level && !large) || (q4_offsets && large) : large)
        return spread_plan(row_tiles, k_tiles);
    sl_qmm_plan p = {1, 1, 0, 0, 0};
    while (p.warps_per_tile < 8 && 4 * p.warps_per_tile <= k_tiles) p.warps_per_tile *= 2;
    if (few) {
        const int64_t s = sl_min64((q8 ? 4 : 2) * sms / row_tiles, k_tiles / (4 * p.warps_per_tile));
        p.splits = s < 1 ? 1 : (int)sl_min64(s, 64);
    }
    return p;
}

/* A blocked plan's splits as it runs: no empty ones, each of split_tiles */
sl_qmm_plan normalized(const sl_cuda_qmat *w, sl_qmm_plan p) {
    if (p.splits >= 1) p.splits = (int)sl_div_up(w->k_tiles, split_tiles(w, p.splits));
    return p;
}

} // namespace

extern "C" sl_qmm_plan sl_cuda_qmm_default_plan(const sl_cuda_qmat *w, int T) {
    SL_CUDA_REQUIRE(w && T >= 0);
    return normalized(w, plan_for(w, w->row_tiles, (int)sl_min64(T, SL_QMM_MAX_T)));
}

extern "C" int sl_cuda_qmm_groupable(const sl_cuda_qmat *const *ws, int n) {
    if (n < 1 || n > 3) return 0;
    for (int i = 0; i < n; i++) {
        const sl_cuda_qmat *w = ws[i], *a = ws[0];
        if (!w || !w->codes || (w->fmt != SL_WF_QW4 && w->fmt != SL_WF_QW8)) return 0;
        if (w->fmt != a->fmt || w->cols != a->cols || w->group != a->group ||
            w->scale_bytes != a->scale_bytes || !w->offsets != !a->offsets)
            return 0;
    }
    return 1;
}

extern "C" void sl_cuda_qmm_multi_f16(const sl_cuda_qmat *const *ws, int n, const uint16_t *x16,
                                      float *const *ys, int T, sl_qmm_plan plan,
                                      sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(sl_cuda_qmm_groupable(ws, n) && x16 && ys && T >= 1);
    SL_CUDA_REQUIRE(((uintptr_t)x16 & 15) == 0);
    int64_t row_tiles = 0;
    for (int i = 0; i < n; i++) {
        SL_CUDA_REQUIRE(ys[i]);
        row_tiles += ws[i]->row_tiles;
    }
    const sl_cuda_qmat *w = ws[0];
    SL_CUDA_REQUIRE(plan.prefetch >= 0 && plan.prefetch <= SL_QMM_MAX_PREFETCH);
    /* the default: one plan for every launch of SL_QMM_MAX_T tokens or fewer */
    if (plan.flat == 0 && plan.warps_per_tile == 0 && plan.splits == 0) {
        const int pf = plan.prefetch; /* the default plan with the caller's prefetch */
        plan = plan_for(w, row_tiles, plan.any_batch ? 0 : (int)sl_min64(T, SL_QMM_MAX_T));
        plan.prefetch = pf;
    }
    int64_t row_blocks = 0;
    int pieces = 0;
    if (plan.flat) {
        SL_CUDA_REQUIRE(plan.flat > 0 && plan.warps_per_tile == 0 && plan.splits == 0);
        SL_CUDA_REQUIRE(row_tiles * w->k_tiles <= INT_MAX / 2); /* tile indexes in an int */
        pieces = flat_pieces(w, flat_per(w, row_tiles, plan.flat));
    } else {
        SL_CUDA_REQUIRE(plan.warps_per_tile == 1 || plan.warps_per_tile == 2 ||
                        plan.warps_per_tile == 4 || plan.warps_per_tile == 8);
        SL_CUDA_REQUIRE(plan.splits >= 1);
        plan = normalized(w, plan);
        for (int i = 0; i < n; i++)
            row_blocks += sl_div_up(ws[i]->row_tiles, QMM_WARPS / plan.warps_per_tile);
    }
    cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    const bool q4 = w->fmt == SL_WF_QW4;
    const __half *xh = reinterpret_cast<const __half *>(x16);
    for (int t0 = 0; t0 < T; t0 += SL_QMM_MAX_T) {
        const int tn = (int)sl_min64(SL_QMM_MAX_T, T - t0);
        const __half *xt = xh + (size_t)t0 * w->cols;
        qmm_job j{};
        j.n = n;
        for (int i = 0; i < n; i++) j.w[i] = ws[i], j.y[i] = ys[i] + (size_t)t0 * ws[i]->rows;
        if (plan.flat) /* pieces of NT·128 floats a row tile, a counter a row tile */
            workspace((size_t)row_tiles * pieces * (tn <= 8 ? 1 : tn <= 16 ? 2 : 4) * 128, row_tiles);
        else if (plan.splits > 1)
            workspace((size_t)plan.splits * tn * row_tiles * 16, row_blocks);
        if (q4 && tn <= 8) launch_offs<true, 1>(j, xt, tn, plan, g_part, g_counters, st);
        else if (q4 && tn <= 16) launch_offs<true, 2>(j, xt, tn, plan, g_part, g_counters, st);
        else if (q4) launch_offs<true, 4>(j, xt, tn, plan, g_part, g_counters, st);
        else if (tn <= 8) launch_offs<false, 1>(j, xt, tn, plan, g_part, g_counters, st);
        else if (tn <= 16) launch_offs<false, 2>(j, xt, tn, plan, g_part, g_counters, st);
        else launch_offs<false, 4>(j, xt, tn, plan, g_part, g_counters, st);
    }
}

extern "C" void sl_cuda_qmm_f16(const sl_cuda_qmat *w, const uint16_t *x16, float *y, int T,
                                sl_qmm_plan plan, sl_cuda_stream stream) {
    sl_cuda_qmm_multi_f16(&w, 1, x16, &y, T, plan, stream); /* which checks the arguments */
}

extern "C" void sl_cuda_qmm_multi(const sl_cuda_qmat *const *ws, int n, const float *x,
                                  float *const *ys, int T, sl_qmm_plan plan, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(sl_cuda_qmm_groupable(ws, n) && x && T >= 1);
    const uint16_t *x16 = sl__cuda_to_f16(x, (size_t)T * (size_t)ws[0]->cols, stream);
    sl_cuda_qmm_multi_f16(ws, n, x16, ys, T, plan, stream);
}

extern "C" void sl_cuda_qmm(const sl_cuda_qmat *w, const float *x, float *y, int T,
                            sl_qmm_plan plan, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(w && x && T >= 1);
    const uint16_t *x16 = sl__cuda_to_f16(x, (size_t)T * (size_t)w->cols, stream);
    sl_cuda_qmm_f16(w, x16, y, T, plan, stream);
}
