/* sample.cu — one token per row of logits, on the device (sample.h has the semantics).
 *
 * One block per row (64 to 1024 threads, by vocabulary size), every step a pass over the row
 * with block-wide reductions; no workspace: the bias and penalties are written into the row.
 *   raw stats    (with logprobs) online max/sum of exp of the raw row -> log-sum-exp; top-N by
 *                the selection below, gathered (N <= 20) and ranked in shared memory
 *   adjust       each adjustment entry: save the raw logit in .raw, add the bias, penalize
 *   max          max and argmax (lowest id on ties) of the adjusted row: greedy ends here
 *   candidates   (top_k or top_p) the row's best weighted elements that hold all the kept, by
 *                a histogram of (max - logit) / T, collected in shared memory in id order; the
 *                steps below then read that list instead of the row (the whole row when the
 *                list would pass the cap, LIST_MAX by default). The top-N of the raw stats
 *                takes its candidates the same way.
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
#include <limits.h>
#include <math.h>

#include "common.cuh"
#include "sample.h"

#define MAX_THREADS 1024
#define MAX_WARPS (MAX_THREADS / 32)
#define BINS 256
#define FIX_ONE 0x1p40 /* fixed-point scale of the masses */
#define UNROLL 8       /* loads a thread issues before it uses them: a pass is latency-bound */
#define LIST_MAX 4096  /* candidates of a truncated draw a row's list holds (32 KiB of shared) */

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
template <int N>
static __device__ __forceinline__ void ld_strided(const float *row, int V, int i0, float (&xs)[N]) {
#pragma unroll
    for (int k = 0; k < N; k++) {
        const int i = i0 + k * (int)blockDim.x;
        xs[k] = i < V ? ld(row, i) : -INFINITY;
    }
}
/* f(i, x) for every element i < V this thread reads in a pass over the row (i = threadIdx.x +
 * j·blockDim.x), UNROLL loads in flight; x as ld reads it */
template <class F>
static __device__ __forceinline__ void each_elem(const float *row, int V, const F &f) {
    for (int i0 = threadIdx.x; i0 < V; i0 += UNROLL * blockDim.x) {
        float xs[UNROLL];
        ld_strided(row, V, i0, xs);
#pragma unroll
        for (int k = 0; k < UNROLL; k++)
            if (i0 + k * (int)blockDim.x < V) f(i0 + k * (int)blockDim.x, xs[k]);
    }
}
static __device__ __forceinline__ u64 fixw(float w) { return (u64)((double)w * FIX_ONE); }

/* What a selection or a draw reads: the row (element j is token j) or the candidate list in
 * shared memory (element j is token ids[j], ids increasing). Both read in increasing id order. */
struct RowSrc {
    const float *row;
    int n;
    __device__ __forceinline__ float x(int j) const { return ld(row, j); }
    __device__ __forceinline__ int id(int j) const { return j; }
};
struct ListSrc {
    const int *ids;
    const float *xs;
    int n;
    __device__ __forceinline__ float x(int j) const { return xs[j]; }
    __device__ __forceinline__ int id(int j) const { return ids[j]; }
};

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
 * it; elem(id, x, &key, &w) says whether the source's element (token id, logit x) is in the
 * set, and gives its key and w. */
/* radix_select's shared state: one for all its instantiations (a template's own would be one
 * each, past the 48 KiB a block's static shared memory may take) */
struct SelShared {
    int cnt[BINS];
    u64 mass[BINS];
    SelOut res[1];
    u64 s_need[1];
};
static __device__ SelShared &sel_shared() {
    SL_SHARED(SelShared, s, [1]);
    return s[0];
}

template <bool MASS, class Src, class Elem>
static __device__ SelOut radix_select(const Src &src, const Elem &elem, double frac, u64 need) {
    SelShared &sh = sel_shared();
    int *const cnt = sh.cnt;
    u64 *const mass = sh.mass;
    SelOut *const res = sh.res;
    u64 *const s_need = sh.s_need;
    const int lane = threadIdx.x & 31;
    const int V = src.n;
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
                xs[k] = r0 + k < rounds && i < V ? src.x(i) : 0.0f;
            }
#pragma unroll
            for (int k = 0; k < UNROLL; k++) {
                if (r0 + k >= rounds) break;
                const int i = (r0 + k) * (int)blockDim.x + (int)threadIdx.x;
                uint32_t key = 0;
                float w = 0.0f;
                bool on = i < V && elem(src.id(i), xs[k], key, w);
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
template <bool MASS, class Src, class Elem>
static __device__ Cut select_cut(const Src &src, const Elem &elem, double frac, u64 need) {
    const SelOut o = radix_select<MASS>(src, elem, frac, need);
    Cut c = {o.all, o.P, o.shift, 0, 0, 0};
    if (!o.all && o.partial) {
        const uint32_t tie_key = o.P;
        auto ties = [&](int i, float x, uint32_t &key, float &w) {
            uint32_t k;
            if (!elem(i, x, k, w) || k != tie_key) return false;
            key = ~(uint32_t)i; /* larger for smaller ids: lowest id first */
            return true;
        };
        const SelOut t = radix_select<MASS>(src, ties, -1.0, o.rest);
        c.tie = 1;
        c.tP = t.P;
        c.tshift = t.shift;
    }
    return c;
}

/* ---- candidate lists ------------------------------------------------------------------------ */

/* A candidate list: LIST_MAX ids, then their logits (one for every use: a template's own
 * would be one per instantiation). Its first 3 KiB also hold the histogram that chooses it. */
static __device__ u64 *list_store() {
    SL_SHARED(u64, store, [LIST_MAX]);
    return store;
}

/* The bin of a weighted element by its scaled logit y = (logit − max) / temperature <= 0 (the
 * raw logit − max for the top-N): 4·(−y), everything 63.75 or more below the largest in the
 * last bin (TAIL). Monotone (the float subtraction and products round monotonically): a smaller
 * logit never takes a smaller bin and equal logits share one, so the elements of bins 0..b are
 * a best-first prefix of the row with its ties whole. */
#define TAIL (BINS - 1)
static __device__ __forceinline__ int vbin(float y) {
    const float b = -4.0f * y;
    return b < (float)TAIL ? (int)b : TAIL;
}

/* The candidates of a selection: the shortest prefix of bins 0..b (above) of the weighted
 * elements (weight(x, &y) > 0, y the scaled logit) that holds every element the selection can
 * keep, written to store (shared: LIST_MAX ids, then their logits) in increasing id order; its
 * length, or -1 when more than cap (the row is then selected in full).
 *   by count:    the bins whose count reaches k (all weighted elements when fewer): top_k, or
 *                top_p with top_k (top_p cuts the top_k-kept, all in them), or the top-N;
 *   by mass:     the bins whose mass reaches need = ceil(frac × the row's mass) (top_p alone),
 *                which the caller passes to the list's select in place of the fraction (the
 *                list does not hold the whole row's mass).
 * One pass histograms the weighted elements (count, or the fixed-point mass, exact: the choice
 * is deterministic), a second collects the chosen bins, and they go into id order by rank (up
 * to one a thread) or a bitonic sort.
 * The selects and the draw then run on at most cap elements in shared memory instead of
 * several more passes over the row: they keep the same elements of nonzero mass (a best-first
 * prefix with its ties holds every kept one; a mass select may also keep weighted elements
 * past its cut whose fixed-point mass is 0, which no draw reaches) and draw the same one (the
 * same masses in the same id order). When the list would be too long, the row is selected in
 * full after this pass: one pass more than without lists. */
template <class Weight>
static __device__ int candidates(const float *row, int V, const Weight &weight, bool by_mass,
                                 double frac, u64 k, int cap, u64 *store, u64 &need) {
    int *const ids = reinterpret_cast<int *>(store);
    float *const xs = reinterpret_cast<float *>(ids + LIST_MAX);
    /* the histogram lives where the list goes, read before the list is written */
    u64 *const hm = store;
    int *const hc = reinterpret_cast<int *>(store + BINS);
    SL_SHARED(int, s_b, [1]); /* the list's last bin; TAIL: every weighted element; -1: too many */
    SL_SHARED(int, s_n, [1]);
    SL_SHARED(u64, s_need, [1]);
    const int lane = threadIdx.x & 31;
    for (int j = threadIdx.x; j < BINS; j += blockDim.x) hc[j] = 0, hm[j] = 0;
    __syncthreads();
    int cnt = 0;
    u64 tot = 0;
    each_elem(row, V, [&](int, float x) {
        float y;
        const float w = weight(x, y);
        if (w > 0.0f) {
            const int b = vbin(y);
            cnt++;
            if (b < TAIL) atomicAdd(&hc[b], 1);
            if (by_mass) {
                const u64 q = fixw(w);
                tot += q;
                if (b < TAIL) atomicAdd(&hm[b], q);
            }
        }
    });
    cnt = block_reduce<int, SumOp>(cnt); /* its barriers publish the histogram */
    if (by_mass) tot = block_reduce<u64, SumOp>(tot);
    if (threadIdx.x < 32) {
        /* as radix_select's target for the whole row (the set of top_p alone) */
        u64 target = k;
        if (by_mass) {
            target = (u64)ceil(frac * (double)tot);
            if (target < 1) target = 1;
        }
        int b = TAIL;
        u64 inb = (u64)cnt; /* the elements in bins 0..b */
        if (by_mass ? tot > target : (u64)cnt > target) {
            /* lane l holds bins 8l .. 8l + 7, best first; bin TAIL is empty */
            u64 lw = 0, lc = 0;
            for (int j = 0; j < 8; j++) {
                const int bin = 8 * lane + j;
                lw += by_mass ? hm[bin] : (u64)hc[bin];
                lc += (u64)hc[bin];
            }
            const u64 incl = warp_incl_scan(lw), cincl = warp_incl_scan(lc);
            const unsigned hit = __ballot_sync(SL_FULL_MASK, incl >= target);
            const int hl = hit ? __ffs((int)hit) - 1 : -1;
            if (lane == hl) {
                u64 before = incl - lw, cb = cincl - lc;
                for (int j = 0; j < 8; j++) {
                    const int bin = 8 * lane + j;
                    before += by_mass ? hm[bin] : (u64)hc[bin];
                    cb += (u64)hc[bin];
                    if (before >= target) {
                        b = bin, inb = cb;
                        break;
                    }
                }
            }
            b = __shfl_sync(SL_FULL_MASK, b, hl < 0 ? 0 : hl);
            inb = __shfl_sync(SL_FULL_MASK, inb, hl < 0 ? 0 : hl);
        }
        if (lane == 0) {
            s_b[0] = inb <= (u64)cap ? b : -1;
            s_n[0] = 0;
            s_need[0] = by_mass ? target : 0;
        }
    }
    __syncthreads();
    const int b = s_b[0];
    need = s_need[0];
    if (b < 0) return -1;
    /* the chosen bins, appended a warp's elements at a time (UNROLL loads in flight; uniform
     * trip counts: ballots) */
    const int rounds = (V + (int)blockDim.x - 1) / (int)blockDim.x;
    for (int r0 = 0; r0 < rounds; r0 += UNROLL) {
        float xk[UNROLL];
        ld_strided(row, V, r0 * (int)blockDim.x + (int)threadIdx.x, xk);
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            if (r0 + u >= rounds) break; /* uniform */
            const int i = (r0 + u) * (int)blockDim.x + (int)threadIdx.x;
            float y;
            const float w = weight(xk[u], y); /* 0 past V (-inf) */
            const bool in = w > 0.0f && vbin(y) <= b;
            const unsigned m = __ballot_sync(SL_FULL_MASK, in);
            if (!m) continue;
            const int leader = __ffs((int)m) - 1;
            int base = 0;
            if (lane == leader) base = atomicAdd(&s_n[0], __popc(m));
            base = __shfl_sync(SL_FULL_MASK, base, leader);
            const int slot = base + __popc(m & ((1u << lane) - 1u));
            if (in && slot < cap) ids[slot] = i, xs[slot] = xk[u];
        }
    }
    __syncthreads();
    const int n = s_n[0] < cap ? s_n[0] : cap; /* = the count above: the same predicate */
    if (n <= (int)blockDim.x) { /* one element a thread: each moves to its rank (ids distinct) */
        const int i = threadIdx.x;
        int id = 0, rank = 0;
        float x = 0.0f;
        if (i < n) {
            id = ids[i], x = xs[i];
            for (int j = 0; j < n; j++) rank += ids[j] < id;
        }
        __syncthreads();
        if (i < n) ids[rank] = id, xs[rank] = x;
        __syncthreads();
        return n;
    }
    int N = 1;
    while (N < n) N <<= 1;
    for (int j = n + (int)threadIdx.x; j < N; j += blockDim.x) ids[j] = INT_MAX;
    __syncthreads();
    for (int k = 2; k <= N; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < N; i += blockDim.x) {
                const int l = i ^ j; /* the pair's lower index swaps it */
                if (l > i && (ids[i] > ids[l]) == ((i & k) == 0)) {
                    const int t = ids[i];
                    ids[i] = ids[l], ids[l] = t;
                    const float v = xs[i];
                    xs[i] = xs[l], xs[l] = v;
                }
            }
            __syncthreads();
        }
    return n;
}

/* ---- the steps of a row ------------------------------------------------------------------- */

/* log-sum-exp of the raw row (online max and sum per thread, then combined), in double; M: the
 * row's largest logit. */
static __device__ double raw_lse(const float *row, int V, float &M) {
    float m = -INFINITY;
    double s = 0.0;
    each_elem(row, V, [&](int, float x) {
        if (x > m) {
            s = s * (double)expf(m - x) + 1.0;
            m = x;
        } else if (x > -INFINITY) {
            s += (double)expf(x - m);
        }
    });
    M = block_reduce<float, MaxOp>(m);
    if (M == -INFINITY) return -INFINITY;
    s = m == -INFINITY ? 0.0 : s * (double)expf(m - M);
    return (double)M + log(block_reduce<double, SumOp>(s));
}

/* The n best logits of a source (the raw row or its candidates) and their logprobs. */
template <class Src>
static __device__ void top_n_of(const Src &src, int n, double lse, int32_t *ids, float *lps) {
    SL_SHARED(int, g_n, [1]);
    SL_SHARED(int, g_id, [SL_CUDA_MAX_LOGPROBS]);
    SL_SHARED(float, g_v, [SL_CUDA_MAX_LOGPROBS]);
    auto raw = [&](int, float x, uint32_t &key, float &w) {
        key = okey(x);
        w = 0.0f;
        return true;
    };
    const Cut c = select_cut<false>(src, raw, -1.0, (u64)n);
    if (threadIdx.x == 0) g_n[0] = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < src.n; j += blockDim.x) {
        const float x = src.x(j);
        const int i = src.id(j);
        if (cut_in(c, okey(x), i)) {
            const int s = atomicAdd(&g_n[0], 1);
            if (s < SL_CUDA_MAX_LOGPROBS) g_id[s] = i, g_v[s] = x;
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

/* The n best raw logits (n <= min(V, SL_CUDA_MAX_LOGPROBS)) and their logprobs, best first
 * (M: the largest): from the candidate list of the n best finite ones when the row has n and
 * their bins fit cap, else from the whole row; the list's length, or -1 for the whole row. */
static __device__ int top_n(const float *row, int V, int n, double lse, float M, int cap,
                            int32_t *ids, float *lps) {
    auto finite = [=](float x, float &y) {
        y = x - M;
        return x > -INFINITY ? 1.0f : 0.0f;
    };
    u64 need;
    u64 *const store = list_store();
    const int len = cap >= n && M > -INFINITY
                        ? candidates(row, V, finite, false, 0.0, (u64)n, cap, store, need)
                        : -1;
    if (len >= n) {
        const int *l_ids = reinterpret_cast<const int *>(store);
        top_n_of(ListSrc{l_ids, reinterpret_cast<const float *>(l_ids + LIST_MAX), len}, n, lse,
                 ids, lps);
        return len;
    }
    top_n_of(RowSrc{row, V}, n, lse, ids, lps);
    return -1;
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

/* The draw over the source's kept set {kept(id, x, &w)} in id order (sample.h step 6); the
 * token, or -1 if the set is empty. */
template <class Src, class Kept>
static __device__ int draw(const Src &src, double u, const Kept &kept) {
    SL_SHARED(u64, wsum, [MAX_WARPS]);
    SL_SHARED(int, s_tok, [1]);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int V = src.n;
    const int seg = ((V + nw - 1) / nw + 31) / 32 * 32; /* each warp a contiguous id range */
    const int start = warp * seg, end = start + seg < V ? start + seg : V;
    u64 acc = 0;
    int last = -1;
    for (int i0 = start + lane; i0 < end; i0 += UNROLL * 32) {
        float xs[UNROLL];
#pragma unroll
        for (int k = 0; k < UNROLL; k++) xs[k] = i0 + 32 * k < end ? src.x(i0 + 32 * k) : 0.0f;
#pragma unroll
        for (int k = 0; k < UNROLL; k++) {
            const int i = i0 + 32 * k;
            float w;
            if (i < end && kept(src.id(i), xs[k], w)) acc += fixw(w), last = src.id(i);
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
            const u64 q = i < end && kept(src.id(i), src.x(i), w) ? fixw(w) : 0ull;
            const u64 incl = warp_incl_scan(q);
            const unsigned hit = __ballot_sync(SL_FULL_MASK, q > 0 && (double)(base + incl) > r);
            if (hit) {
                if (lane == __ffs((int)hit) - 1) s_tok[0] = src.id(i);
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

/* top_k, top_p and the draw over a source: the row (need 0), or its candidates with need, the
 * top_p target candidates() chose them by (top_p alone: nonzero) or 0 (with top_k, the list
 * holds the top_k-kept: top_p's fraction of theirs applies as over the row). */
template <class Src, class Weight>
static __device__ int truncated(const Src &src, const sl_cuda_sample_row &p, const Weight &weight,
                                u64 need) {
    Cut kc = {1, 0, 32, 0, 0, 0}, pc = {1, 0, 32, 0, 0, 0};
    if (p.top_k > 0) {
        auto elem = [&](int, float x, uint32_t &key, float &w) {
            w = weight(x);
            key = okey(x);
            return w > 0.0f;
        };
        kc = select_cut<false>(src, elem, -1.0, (u64)p.top_k);
    }
    if (p.top_p < 1.0f) {
        auto elem = [&](int i, float x, uint32_t &key, float &w) {
            w = weight(x);
            key = okey(x);
            return w > 0.0f && cut_in(kc, key, i);
        };
        pc = need ? select_cut<true>(src, elem, -1.0, need)
                  : select_cut<true>(src, elem, (double)p.top_p, 0);
    }
    auto kept = [&](int i, float x, float &w) {
        w = weight(x);
        const uint32_t key = okey(x);
        return w > 0.0f && cut_in(kc, key, i) && cut_in(pc, key, i);
    };
    return draw(src, p.u, kept);
}

/* Steps 6 for a row with temperature >= eps whose largest adjusted logit mx is finite; a
 * truncated draw on its candidate list when it has one of at most cap elements. */
static __device__ int sample_row(const float *row, int V, const sl_cuda_sample_row &p, float mx,
                                 int cap, int &list_n) {
    u64 *const store = list_store();
    const float inv_t = 1.0f / p.temperature, min_p = p.min_p;
    /* as sampling.c's exp_row: relative to the largest, 0 below e^-87, 0 below min_p */
    auto weight_y = [=](float x, float &y) {
        y = (x - mx) * inv_t;
        const float e = y < -87.0f ? 0.0f : expf(y);
        return e < min_p ? 0.0f : e;
    };
    auto weight = [=](float x) {
        float y;
        return weight_y(x, y);
    };
    const RowSrc all{row, V};
    if (p.top_k <= 0 && !(p.top_p < 1.0f)) {
        auto kept = [&](int, float x, float &w) {
            w = weight(x);
            return w > 0.0f;
        };
        return draw(all, p.u, kept);
    }
    u64 need = 0;
    const int n = cap > 0 ? candidates(row, V, weight_y, p.top_k <= 0, (double)p.top_p,
                                       (u64)p.top_k, cap, store, need)
                          : -1;
    list_n = n;
    if (n >= 0) {
        const int *ids = reinterpret_cast<const int *>(store);
        return truncated(ListSrc{ids, reinterpret_cast<const float *>(ids + LIST_MAX), n}, p,
                         weight, need);
    }
    return truncated(all, p, weight, 0);
}

static __global__ void __launch_bounds__(MAX_THREADS)
    sample_kernel(float *logits, int V, const sl_cuda_sample_row *__restrict__ rows,
                  int32_t *tokens, float *logprobs, int32_t *top_ids, float *top_lps, int cap,
                  int32_t *list_ns) {
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
        float M;
        lse = raw_lse(row, V, M);
        if (n_top > 0) {
            const int len = top_n(row, V, n_top, lse, M, cap,
                                  top_ids + (int64_t)b * SL_CUDA_MAX_LOGPROBS,
                                  top_lps + (int64_t)b * SL_CUDA_MAX_LOGPROBS);
            if (list_ns != nullptr && threadIdx.x == 0) list_ns[2 * (int64_t)b + 1] = len;
        }
    }
    if (list_ns != nullptr && threadIdx.x == 0 && n_top == 0) list_ns[2 * (int64_t)b + 1] = -2;
    /* 2-4 */
    if (p.n_adj > 0 && p.adj != nullptr) {
        adjust(row, V, p);
        __syncthreads(); /* the row's writes are visible to the whole block */
    }
    /* 5: the largest adjusted logit, lowest id on ties */
    u64 best = 0;
    each_elem(row, V, [&](int i, float x) {
        const u64 key = (u64)okey(x) << 32 | (u64)(~(uint32_t)i);
        best = key > best ? key : best;
    });
    best = block_reduce<u64, MaxOp>(best);
    const float mx = okey_inv((uint32_t)(best >> 32));
    int tok = (int)~(uint32_t)best;
    int list_n = -2;
    /* 6 (a NaN temperature is greedy too) */
    if (p.temperature >= SL_CUDA_SAMPLING_EPS && mx > -INFINITY) {
        const int t = sample_row(row, V, p, mx, cap, list_n);
        if (t >= 0) tok = t;
    }
    if (threadIdx.x == 0) tokens[b] = tok;
    if (list_ns != nullptr && threadIdx.x == 0) list_ns[2 * (int64_t)b] = list_n;
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

/* candidates a truncated draw's list may hold (sl_cuda_sample_set_list_cap) */
static int g_list_cap = LIST_MAX;

extern "C" void sl__cuda_sample_ex(float *logits, int B, int V, const sl_cuda_sample_row *rows,
                                   int32_t *tokens, float *logprobs, int32_t *top_ids,
                                   float *top_lps, int32_t *list_ns, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(B >= 0 && V > 0 && V <= (1 << 23));
    SL_CUDA_REQUIRE(logits && rows && tokens);
    SL_CUDA_REQUIRE((top_ids == NULL) == (top_lps == NULL));
    if (B == 0) return;
    /* about 16 logits a thread, 64 to 1024 threads */
    int threads = 64;
    while (threads < MAX_THREADS && threads * 16 < V) threads *= 2;
    cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
    SL_LAUNCH(sample_kernel, (unsigned)B, (unsigned)threads, 0, st, logits, V, rows, tokens,
              logprobs, top_ids, top_lps, g_list_cap, list_ns);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl_cuda_sample_set_list_cap(int cap) {
    SL_CUDA_REQUIRE(cap <= LIST_MAX);
    g_list_cap = cap < 0 ? LIST_MAX : cap;
}

extern "C" void sl_cuda_sample(float *logits, int B, int V, const sl_cuda_sample_row *rows,
                               int32_t *tokens, float *logprobs, int32_t *top_ids,
                               float *top_lps, sl_cuda_stream stream) {
    sl__cuda_sample_ex(logits, B, V, rows, tokens, logprobs, top_ids, top_lps, NULL, stream);
}
