/* sample.cu — one token per row of logits, on the device (sample.h has the semantics).
 *
 * One block per row (64 to 1024 threads, by vocabulary size), every step a pass over the row
 * with block-wide reductions; no workspace: the bias and penalties are written into the row.
 *   raw stats    (with logprobs) online max/sum of exp of the raw row -> log-sum-exp; top-N by
 *                the selection below, gathered (N <= 20) and ranked in shared memory
 *   adjust       each adjustment entry: save the raw logit in .raw, add the bias, penalize
 *   max          max and argmax (lowest id on ties) of the adjusted row: greedy ends here
 *   top_k        the k-th best key (logit descending, id ascending) among the min_p-kept
 *   top_p        the best-first prefix of the top_k-kept whose mass reaches top_p × theirs
 *   draw         id order over the kept: per-warp sums of contiguous id ranges, the warp whose
 *                range holds r walks it 32 ids at a time with a warp prefix sum
 *
 * Selection without sorting (top_k, top_p, top-N): a radix select over the 32-bit order-
 * preserving image of the logit, 8 bits per pass from the top: each pass histograms (count and
 * mass) the elements that still match the chosen prefix into 256 bins, one warp finds the bin
 * where the running count/mass from the best bin reaches the target, and the next pass refines
 * only that bin. It stops early when the whole bin is needed (count) or holds one element; after
 * 4 passes what remains are ties of one value, cut in id order by the same select run on the
 * key ~id. Histogram updates are warp-aggregated (a leader per distinct bin adds its peers'
 * count and mass once), since logits crowd into few top-byte bins.
 *
 * Masses are fixed point, w · 2^40 in 64-bit integers (w <= 1, V <= 2^23: no overflow; a token
 * with w < 2^-40 weighs 0 and is never drawn): integer atomics and prefix sums are exact and
 * associative, so the result is deterministic (run to run and whatever the batch) and the
 * select, the warp sums and the walk of the draw agree exactly with each other.
 */
#include <math.h>

#include "common.cuh"
#include "sample.h"

#define MAX_THREADS 1024
#define MAX_WARPS (MAX_THREADS / 32)
#define BINS 256
#define FIX_ONE 0x1p40 /* fixed-point scale of the masses */
#define UNROLL 8       /* loads a thread issues before it uses them: a pass is latency-bound */

typedef unsigned long long u64;

/* ---- keys, weights, reductions ------------------------------------------------------------ */

/* The order-preserving image of a float: a > b  <=>  okey(a) > okey(b) (for non-NaN). */
static __device__ __forceinline__ uint32_t okey(float v) {
    const uint32_t u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
static __device__ __forceinline__ float okey_inv(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
/* A logit, NaN read as -inf and -0 as +0 (they compare equal: ties, cut by id, as on the CPU). */
static __device__ __forceinline__ float ld(const float *row, int i) {
    const float v = row[i];
    return v != v ? -INFINITY : v == 0.0f ? 0.0f : v;
}

/* xs[k] = row[i0 + k·blockDim.x] for k < UNROLL (−inf past V): the loads go out together */
static __device__ __forceinline__ void ld_strided(const float *row, int V, int i0, float (&xs)[UNROLL]) {
#pragma unroll
    for (int k = 0; k < UNROLL; k++) {
        const int i = i0 + k * (int)blockDim.x;
        xs[k] = i < V ? ld(row, i) : -INFINITY;
    }
}
static __device__ __forceinline__ u64 fixw(float w) { return (u64)((double)w * FIX_ONE); }

struct SumOp {
    template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
    template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

/* Reduction over the block in a fixed order (deterministic); every thread gets the result and
 * every thread must call it. */
template <class T, class Op> static __device__ T block_reduce(T v) {
    const Op OP;
    SL_SHARED(T, part, [MAX_WARPS]);
    for (int o = 16; o > 0; o >>= 1) v = OP(v, __shfl_xor_sync(SL_FULL_MASK, v, o));
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = part[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) v = OP(v, part[w]);
    __syncthreads(); /* part may be reused by the next call */
    return v;
}
template <class T, class Op> static __device__ __forceinline__ T warp_reduce(T v) {
    const Op OP;
    for (int o = 16; o > 0; o >>= 1) v = OP(v, __shfl_xor_sync(SL_FULL_MASK, v, o));
    return v;
}
static __device__ __forceinline__ u64 warp_incl_scan(u64 v) {
    const int lane = threadIdx.x & 31;
    for (int o = 1; o < 32; o <<= 1) {
        const u64 t = __shfl_up_sync(SL_FULL_MASK, v, o);
        if (lane >= o) v += t;
    }
    return v;
}

/* ---- radix select ------------------------------------------------------------------------- */

/* Which elements of a predicate set a select keeps: those whose key >> shift is above P, or
 * equal to it and (without tie) all of them, (with tie) those whose ~id >> tshift >= tP. */
struct Cut {
    int all; /* every element of the set */
    uint32_t P;
    int shift;
    int tie;
    uint32_t tP;
    int tshift;
};
static __device__ __forceinline__ bool cut_in(const Cut &c, uint32_t key, int id) {
    if (c.all) return true;
    const uint32_t hi = key >> c.shift;
    if (hi != c.P) return hi > c.P;
    if (!c.tie) return true;
    return (~(uint32_t)id >> c.tshift) >= c.tP;
}

struct SelOut {
    int all;      /* the target covers the whole set */
    uint32_t P;   /* the chosen bin's prefix (32 - shift bits) */
    int shift;
    int partial;  /* after the last pass the bin (one key value) holds more than needed */
    u64 rest;     /* what is still needed from it (count or mass) */
};

/* Adds one element per active lane to bin `bin` (count, and mass q when MASS); the lanes of
 * a warp that share a bin are summed first and added once by a leader. Every lane calls it. */
template <bool MASS>
static __device__ __forceinline__ void hist_add(bool on, uint32_t bin, u64 q, int *cnt, u64 *mass) {
    const int lane = threadIdx.x & 31;
    unsigned todo = __ballot_sync(SL_FULL_MASK, on);
    while (todo) {
        const int leader = __ffs((int)todo) - 1;
        const uint32_t lb = __shfl_sync(SL_FULL_MASK, bin, leader);
        const bool mine = on && bin == lb;
        const unsigned peers = __ballot_sync(SL_FULL_MASK, mine);
        if constexpr (MASS) {
            const u64 s = warp_reduce<u64, SumOp>(mine ? q : 0ull);
            if (lane == leader) atomicAdd(&mass[lb], s);
        }
        if (lane == leader) atomicAdd(&cnt[lb], __popc(peers));
        todo &= ~peers;
    }
}

/* The smallest best-first (largest key first) part of the set {i : elem(i, x, key, w)} whose
 * weight reaches the target: count mode (MASS false) counts elements, mass mode sums fixw(w).
 * The target is ceil(frac × the set's total) when frac >= 0, else `need`. Every thread calls
 * it; elem(i, x, &key, &w) says whether element i < V (logit x, as ld reads it) is in the set,
 * and gives its key and w. */
template <bool MASS, class Elem>
static __device__ SelOut radix_select(const float *row, int V, const Elem &elem, double frac,
                                      u64 need) {
    SL_SHARED(int, cnt, [BINS]);
    SL_SHARED(u64, mass, [BINS]);
    SL_SHARED(SelOut, res, [1]);
    SL_SHARED(u64, s_need, [1]);
    const int lane = threadIdx.x & 31;
    const int rounds = (V + (int)blockDim.x - 1) / (int)blockDim.x;
    uint32_t prefix = 0;
    for (int level = 0; level < 4; level++) {
        const int shift = 24 - 8 * level;
        for (int j = threadIdx.x; j < BINS; j += blockDim.x) {
            cnt[j] = 0;
            mass[j] = 0;
        }
        __syncthreads();
        for (int r0 = 0; r0 < rounds; r0 += UNROLL) { /* uniform trip counts: warp collectives */
            float xs[UNROLL];
#pragma unroll
            for (int k = 0; k < UNROLL; k++) {
                const int i = (r0 + k) * (int)blockDim.x + (int)threadIdx.x;
                xs[k] = r0 + k < rounds && i < V ? ld(row, i) : 0.0f;
            }
#pragma unroll
            for (int k = 0; k < UNROLL; k++) {
                if (r0 + k >= rounds) break;
                const int i = (r0 + k) * (int)blockDim.x + (int)threadIdx.x;
                uint32_t key = 0;
                float w = 0.0f;
                bool on = i < V && elem(i, xs[k], key, w);
                if (level > 0) on = on && (key >> (shift + 8)) == prefix;
                hist_add<MASS>(on, (key >> shift) & (BINS - 1), MASS && on ? fixw(w) : 1ull, cnt,
                               mass);
            }
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            /* lane l holds bins 255 - 8l down to 248 - 8l: best first */
            u64 lw = 0;
            for (int j = 0; j < 8; j++) {
                const int bin = BINS - 1 - 8 * lane - j;
                lw += MASS ? mass[bin] : (u64)cnt[bin];
            }
            const u64 incl = warp_incl_scan(lw);
            const u64 total = __shfl_sync(SL_FULL_MASK, incl, 31);
            u64 nd = need;
            if (level == 0 && frac >= 0.0) nd = (u64)ceil(frac * (double)total);
            if (level > 0) nd = s_need[0];
            if (nd < 1) nd = 1;
            if (level == 0 && total <= nd) {
                if (lane == 0) res[0] = SelOut{1, 0, 32, 0, 0};
            } else {
                const unsigned hit = __ballot_sync(SL_FULL_MASK, incl >= nd);
                if (lane == __ffs((int)hit) - 1) {
                    u64 before = incl - lw;
                    for (int j = 0; j < 8; j++) {
                        const int bin = BINS - 1 - 8 * lane - j;
                        const u64 bw = MASS ? mass[bin] : (u64)cnt[bin];
                        if (before + bw >= nd) {
                            const u64 rest = nd - before;
                            const bool whole = cnt[bin] == 1 || rest == bw;
                            res[0] = SelOut{0, (prefix << 8) | (uint32_t)bin, shift,
                                            !whole && level == 3, rest};
                            s_need[0] = whole ? 0 : rest; /* 0: done */
                            break;
                        }
                        before += bw;
                    }
                }
            }
        }
        __syncthreads();
        const SelOut o = res[0];
        if (o.all || level == 3 || s_need[0] == 0) {
            __syncthreads(); /* res and s_need are rewritten by the next select */
            return o;
        }
        prefix = o.P;
    }
    return SelOut{1, 0, 32, 0, 0}; /* not reached */
}

/* radix_select as a Cut; ties of the last pass are cut in id order by a select on ~id. */
template <bool MASS, class Elem>
static __device__ Cut select_cut(const float *row, int V, const Elem &elem, double frac, u64 need) {
    const SelOut o = radix_select<MASS>(row, V, elem, frac, need);
    Cut c = {o.all, o.P, o.shift, 0, 0, 0};
    if (!o.all && o.partial) {
        const uint32_t tie_key = o.P;
        auto ties = [&](int i, float x, uint32_t &key, float &w) {
            uint32_t k;
            if (!elem(i, x, k, w) || k != tie_key) return false;
            key = ~(uint32_t)i; /* larger for smaller ids: lowest id first */
            return true;
        };
        const SelOut t = radix_select<MASS>(row, V, ties, -1.0, o.rest);
        c.tie = 1;
        c.tP = t.P;
        c.tshift = t.shift;
    }
    return c;
}

/* ---- the steps of a row ------------------------------------------------------------------- */

/* log-sum-exp of the raw row (online max and sum per thread, then combined), in double. */
static __device__ double raw_lse(const float *row, int V) {
    float m = -INFINITY;
    double s = 0.0;
    for (int i0 = threadIdx.x; i0 < V; i0 += UNROLL * blockDim.x) {
        float xs[UNROLL];
        ld_strided(row, V, i0, xs);
#pragma unroll
        for (int k = 0; k < UNROLL; k++) {
            const float x = xs[k];
            if (x > m) {
                s = s * (double)expf(m - x) + 1.0;
                m = x;
            } else if (x > -INFINITY) {
                s += (double)expf(x - m);
            }
        }
    }
    const float M = block_reduce<float, MaxOp>(m);
    if (M == -INFINITY) return -INFINITY;
    s = m == -INFINITY ? 0.0 : s * (double)expf(m - M);
    return (double)M + log(block_reduce<double, SumOp>(s));
}

/* The n best raw logits (n <= min(V, SL_CUDA_MAX_LOGPROBS)) and their logprobs, best first. */
static __device__ void top_n(const float *row, int V, int n, double lse, int32_t *ids, float *lps) {
    SL_SHARED(int, g_n, [1]);
    SL_SHARED(int, g_id, [SL_CUDA_MAX_LOGPROBS]);
    SL_SHARED(float, g_v, [SL_CUDA_MAX_LOGPROBS]);
    auto raw = [&](int, float x, uint32_t &key, float &w) {
        key = okey(x);
        w = 0.0f;
        return true;
    };
    const Cut c = select_cut<false>(row, V, raw, -1.0, (u64)n);
    if (threadIdx.x == 0) g_n[0] = 0;
    __syncthreads();
    for (int i0 = threadIdx.x; i0 < V; i0 += UNROLL * blockDim.x) {
        float xs[UNROLL];
        ld_strided(row, V, i0, xs);
#pragma unroll
        for (int k = 0; k < UNROLL; k++) {
            const int i = i0 + k * (int)blockDim.x;
            if (i < V && cut_in(c, okey(xs[k]), i)) {
                const int s = atomicAdd(&g_n[0], 1);
                if (s < SL_CUDA_MAX_LOGPROBS) g_id[s] = i, g_v[s] = xs[k];
            }
        }
    }
    __syncthreads();
    if ((int)threadIdx.x < n) { /* exactly n were kept: each finds its rank */
        const int id = g_id[threadIdx.x];
        const float v = g_v[threadIdx.x];
        int rank = 0;
        for (int j = 0; j < n; j++) rank += g_v[j] > v || (g_v[j] == v && g_id[j] < id);
        ids[rank] = id;
        lps[rank] = (float)((double)v - lse);
    }
    __syncthreads();
}

/* Bias and penalties, in place (sampling.h steps 2-4, with sampling.c's f32 arithmetic: the
 * _rn intrinsics keep nvcc from fusing count·f + p into an FMA the CPU does not do). */
static __device__ void adjust(float *row, int V, const sl_cuda_sample_row &p) {
    for (int j = threadIdx.x; j < p.n_adj; j += blockDim.x) {
        sl_cuda_sample_adj *e = &p.adj[j];
        const int32_t t = e->token;
        if (t < 0 || t >= V) continue;
        float v = row[t];
        e->raw = v;
        if (e->bias != 0.0f) v = v + e->bias;
        const uint32_t c = e->count & ~SL_CUDA_ADJ_PROMPT;
        if ((c > 0 || (e->count & SL_CUDA_ADJ_PROMPT)) && p.repetition_penalty != 1.0f)
            v = v > 0.0f ? v / p.repetition_penalty : v * p.repetition_penalty;
        if (c > 0) v = v - __fadd_rn(__fmul_rn((float)c, p.frequency_penalty), p.presence_penalty);
        row[t] = v;
    }
}

/* The draw over the kept set {i : kept(i, &w)} in id order (sample.h step 6); -1 if empty. */
template <class Kept>
static __device__ int draw(const float *row, int V, double u, const Kept &kept) {
    SL_SHARED(u64, wsum, [MAX_WARPS]);
    SL_SHARED(int, s_tok, [1]);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int seg = ((V + nw - 1) / nw + 31) / 32 * 32; /* each warp a contiguous id range */
    const int start = warp * seg, end = start + seg < V ? start + seg : V;
    u64 acc = 0;
    int last = -1;
    for (int i0 = start + lane; i0 < end; i0 += UNROLL * 32) {
        float xs[UNROLL];
#pragma unroll
        for (int k = 0; k < UNROLL; k++) xs[k] = i0 + 32 * k < end ? ld(row, i0 + 32 * k) : 0.0f;
#pragma unroll
        for (int k = 0; k < UNROLL; k++) {
            const int i = i0 + 32 * k;
            float w;
            if (i < end && kept(i, xs[k], w)) acc += fixw(w), last = i;
        }
    }
    acc = warp_reduce<u64, SumOp>(acc);
    if (lane == 0) wsum[warp] = acc;
    const int last_kept = block_reduce<int, MaxOp>(last); /* its barrier publishes wsum */
    u64 total = 0;
    for (int w = 0; w < nw; w++) total += wsum[w];
    const double r = u * (double)total;
    int cw = -1; /* the warp whose range holds r */
    u64 excl = 0;
    for (int w = 0; w < nw; w++) {
        if ((double)(excl + wsum[w]) > r) {
            cw = w;
            break;
        }
        excl += wsum[w];
    }
    if (threadIdx.x == 0) s_tok[0] = last_kept; /* r out of reach (rounding): the last kept */
    __syncthreads();
    if (warp == cw) {
        u64 base = excl;
        for (int i0 = start; i0 < end; i0 += 32) {
            const int i = i0 + lane;
            float w;
            const u64 q = i < end && kept(i, ld(row, i), w) ? fixw(w) : 0ull;
            const u64 incl = warp_incl_scan(q);
            const unsigned hit = __ballot_sync(SL_FULL_MASK, q > 0 && (double)(base + incl) > r);
            if (hit) {
                if (lane == __ffs((int)hit) - 1) s_tok[0] = i;
                break;
            }
            base += __shfl_sync(SL_FULL_MASK, incl, 31);
        }
    }
    __syncthreads();
    const int tok = s_tok[0];
    __syncthreads();
    return tok;
}

/* Steps 6 for a row with temperature >= eps whose largest adjusted logit mx is finite. */
static __device__ int sample_row(const float *row, int V, const sl_cuda_sample_row &p, float mx) {
    const float inv_t = 1.0f / p.temperature, min_p = p.min_p;
    /* as sampling.c's exp_row: relative to the largest, 0 below e^-87, 0 below min_p */
    auto weight = [=](float x) {
        const float y = (x - mx) * inv_t;
        const float e = y < -87.0f ? 0.0f : expf(y);
        return e < min_p ? 0.0f : e;
    };
    Cut kc = {1, 0, 32, 0, 0, 0}, pc = {1, 0, 32, 0, 0, 0};
    if (p.top_k > 0) {
        auto elem = [&](int, float x, uint32_t &key, float &w) {
            w = weight(x);
            key = okey(x);
            return w > 0.0f;
        };
        kc = select_cut<false>(row, V, elem, -1.0, (u64)p.top_k);
    }
    if (p.top_p < 1.0f) {
        auto elem = [&](int i, float x, uint32_t &key, float &w) {
            w = weight(x);
            key = okey(x);
            return w > 0.0f && cut_in(kc, key, i);
        };
        pc = select_cut<true>(row, V, elem, (double)p.top_p, 0);
    }
    auto kept = [&](int i, float x, float &w) {
        w = weight(x);
        const uint32_t key = okey(x);
        return w > 0.0f && cut_in(kc, key, i) && cut_in(pc, key, i);
    };
    return draw(row, V, p.u, kept);
}

static __global__ void __launch_bounds__(MAX_THREADS)
    sample_kernel(float *logits, int V, const sl_cuda_sample_row *__restrict__ rows,
                  int32_t *tokens, float *logprobs, int32_t *top_ids, float *top_lps) {
    SL_SHARED(float, s_raw, [1]);
    const int b = blockIdx.x;
    float *row = logits + (int64_t)b * V;
    const sl_cuda_sample_row p = rows[b];
    const bool want_lp = logprobs != nullptr && p.logprobs != 0;
    int n_top = want_lp && top_ids != nullptr ? p.top_logprobs : 0;
    n_top = n_top < SL_CUDA_MAX_LOGPROBS ? n_top : SL_CUDA_MAX_LOGPROBS;
    n_top = n_top < V ? n_top : V;

    /* 1: from the raw logits */
    double lse = 0.0;
    if (want_lp) {
        lse = raw_lse(row, V);
        if (n_top > 0)
            top_n(row, V, n_top, lse, top_ids + (int64_t)b * SL_CUDA_MAX_LOGPROBS,
                  top_lps + (int64_t)b * SL_CUDA_MAX_LOGPROBS);
    }
    /* 2-4 */
    if (p.n_adj > 0 && p.adj != nullptr) {
        adjust(row, V, p);
        __syncthreads(); /* the row's writes are visible to the whole block */
    }
    /* 5: the largest adjusted logit, lowest id on ties */
    u64 best = 0;
    for (int i0 = threadIdx.x; i0 < V; i0 += UNROLL * blockDim.x) {
        float xs[UNROLL];
        ld_strided(row, V, i0, xs);
#pragma unroll
        for (int k = 0; k < UNROLL; k++) {
            const int i = i0 + k * (int)blockDim.x;
            const u64 key = (u64)okey(xs[k]) << 32 | (u64)(~(uint32_t)i);
            best = i < V && key > best ? key : best;
        }
    }
    best = block_reduce<u64, MaxOp>(best);
    const float mx = okey_inv((uint32_t)(best >> 32));
    int tok = (int)~(uint32_t)best;
    /* 6 (a NaN temperature is greedy too) */
    if (p.temperature >= SL_CUDA_SAMPLING_EPS && mx > -INFINITY) {
        const int t = sample_row(row, V, p, mx);
        if (t >= 0) tok = t;
    }
    if (threadIdx.x == 0) tokens[b] = tok;
    if (logprobs == nullptr) return;
    if (!want_lp) {
        if (threadIdx.x == 0) logprobs[b] = 0.0f;
        return;
    }
    /* the sampled token's raw logit: the row still has it unless an adjustment saved it */
    if (threadIdx.x == 0) s_raw[0] = row[tok];
    __syncthreads();
    if (p.adj != nullptr)
        for (int j = threadIdx.x; j < p.n_adj; j += blockDim.x)
            if (p.adj[j].token == tok) s_raw[0] = p.adj[j].raw;
    __syncthreads();
    if (threadIdx.x == 0) logprobs[b] = (float)((double)s_raw[0] - lse);
}

static void launch_sample(float *logits, int B, int V, const sl_cuda_sample_row *rows,
                          int32_t *tokens, float *logprobs, int32_t *top_ids, float *top_lps,
                          cudaStream_t stream) {
    /* about 16 logits a thread, 64 to 1024 threads */
    int threads = 64;
    while (threads < MAX_THREADS && threads * 16 < V) threads *= 2;
    SL_LAUNCH(sample_kernel, (unsigned)B, (unsigned)threads, 0, stream, logits, V, rows, tokens,
              logprobs, top_ids, top_lps);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl_cuda_sample(float *logits, int B, int V, const sl_cuda_sample_row *rows,
                               int32_t *tokens, float *logprobs, int32_t *top_ids,
                               float *top_lps, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(B >= 0 && V > 0 && V <= (1 << 23));
    SL_CUDA_REQUIRE(logits && rows && tokens);
    SL_CUDA_REQUIRE((top_ids == NULL) == (top_lps == NULL));
    if (B == 0) return;
    launch_sample(logits, B, V, rows, tokens, logprobs, top_ids, top_lps, stream);
}
