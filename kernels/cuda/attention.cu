/* attention.cu — paged causal attention for a ragged batch, decode-optimized (attention.h).
 *
 * Decode reads the whole KV cache for one query row per head, so it is bound by memory: the
 * kernel reads every K/V byte once per (token, KV head) and serves all the query heads of that
 * KV head (GQA, up to 8) from the same registers.
 *
 * Grid: x the batch token, y the KV head (× groups of 8 query heads when H/Hkv > 8), z the
 * chunk of the context (split-K). A block of NW warps finds its token's sequence (a scan of
 * q_start/q_len), then its warps take steps of STEP consecutive positions in turn. In a step, a
 * group of LPR lanes holds one K/V row, 16 bytes per lane (8 halves or 4 floats), and the warp
 * issues U such loads of K and of V before using any (memory-level parallelism without shared
 * memory), with the block-table entries of its next step already on their way (one step,
 * one memory latency); the q·k partial sums are reduced within the group by shuffles. Each lane
 * keeps an online softmax (running max m, sum l, accumulator for its columns) in f32, in the
 * log2 domain (q is pre-scaled by scale·log2 e, so p = 2^(s − m)). At the end the groups of a
 * warp merge by shuffles, the warps through shared memory, in a fixed order.
 *
 * Split-K: with few (token, KV head) pairs the launcher gives each token's context to S blocks
 * of `chunk` positions (the last one takes whatever lies past S·chunk, so a ctx_len above
 * max_ctx stays correct). Each writes its normalized partial output and (max, sum) to the
 * workspace; combine_kernel merges them in chunk order: deterministic. The launcher splits
 * while the grid is below one wave (SMs × BLOCKS_PER_SM blocks): S = min(wave / (tokens × KV
 * heads × head groups), max_ctx / MIN_CHUNK, MAX_SPLITS, what the workspace holds), chunks
 * rounded up to 16 positions. Measured on an H100 (benchmarks/bench_cuda_attention.c, its split
 * sweep), that choice is within ~5% of the best forced split at batch 1, 16 and 64.
 *
 * Registers (sm_90, fp16, head_dim 128): 128 for up to 4 heads per KV head (4 blocks of 128
 * threads per SM), ~247 for 8 (2 blocks per SM: Llama-3-70B's ratio runs at about 2/3 of the
 * copy bandwidth, against ~100% for 1 to 4).
 *
 * Prefill tokens (q_len > 1) are blocks of their own, each reading its causal prefix: correct,
 * but the KV of a sequence is read once per query token (from L2 mostly, as neighbouring tokens
 * run together); a tensor-core prefill kernel is the next step.
 */
#include <cuda_fp16.h>

#include "attention.h"
#include "common.cuh"

#define NW 4              /* warps per block */
#define NT (NW * 32)
#define MAXG 8            /* query heads served per block */
#define MAX_SPLITS 64
#define MIN_CHUNK 64      /* positions per split, at least */
#define BLOCKS_PER_SM 4   /* resident blocks per SM the heuristic assumes (16 warps) */
#define NEG_BIG (-1e30f)  /* "no position yet": finite, so 2^(NEG_BIG − NEG_BIG) is 1, not NaN */
#define LOG2E 1.44269504088896341f

struct attn_args {
    int n_seqs, max_blocks; /* of the batch */
    int H, Hkv, G, n_hg;    /* G = H / Hkv query heads per KV head, in n_hg groups of MAXG */
    int bs, bs_shift;       /* block_size, its log2 or −1 */
    float qscale;           /* scale · log2 e */
    int n_splits, chunk;    /* split-K: chunks per token and positions per chunk */
};

/* 16 bytes of the cache as floats: the element type's trait */
template <class C> struct kv_elem;
template <> struct kv_elem<float> {
    static constexpr int EPL = 4;
    static __device__ __forceinline__ void cvt(const uint4 &r, float *x) {
        x[0] = __uint_as_float(r.x), x[1] = __uint_as_float(r.y);
        x[2] = __uint_as_float(r.z), x[3] = __uint_as_float(r.w);
    }
};
template <> struct kv_elem<__half> {
    static constexpr int EPL = 8;
    static __device__ __forceinline__ void cvt(const uint4 &r, float *x) {
        const __half2 *h = reinterpret_cast<const __half2 *>(&r);
        for (int i = 0; i < 4; i++) {
            float2 f = __half22float2(h[i]);
            x[2 * i] = f.x, x[2 * i + 1] = f.y;
        }
    }
};

/* The sequence owning batch token t and the token's causal length (positions [0, len)), found
 * by the whole block; false (for every thread) when no sequence owns t. */
static __device__ __forceinline__ bool find_token(const int32_t *__restrict__ q_start,
                                                  const int32_t *__restrict__ q_len,
                                                  const int32_t *__restrict__ ctx_len, int n_seqs,
                                                  int t, int *seq, int *len) {
    SL_SHARED(int, found, [2]);
    if (threadIdx.x == 0) found[0] = -1;
    __syncthreads();
    for (int s = threadIdx.x; s < n_seqs; s += blockDim.x) {
        const int qs = q_start[s], ql = q_len[s];
        if (t >= qs && t - qs < ql) {
            found[0] = s;
            found[1] = ctx_len[s] - ql + (t - qs) + 1;
        }
    }
    __syncthreads();
    *seq = found[0];
    *len = found[1];
    return *seq >= 0;
}

template <class C, int D, int GM>
static __global__ void __launch_bounds__(NT)
    attn_kernel(const float *__restrict__ q, const C *__restrict__ kc, const C *__restrict__ vc,
                float *__restrict__ out, float *__restrict__ ws_o, float2 *__restrict__ ws_ml,
                const int32_t *__restrict__ q_start, const int32_t *__restrict__ q_len,
                const int32_t *__restrict__ ctx_len, const int32_t *__restrict__ block_tables,
                attn_args a) {
    constexpr int EPL = kv_elem<C>::EPL;                /* elements per 16-byte load */
    constexpr int LPR = D / EPL < 32 ? D / EPL : 32;    /* lanes per K/V row */
    constexpr int NV = D / (EPL * LPR);                 /* 16-byte loads per lane per row */
    constexpr int E = NV * EPL;                         /* columns per lane */
    constexpr int RPW = 32 / LPR;                       /* rows per warp load */
    constexpr int U = 4;                                /* warp loads of K (and V) per step */
    constexpr int STEP = RPW * U;                       /* positions per warp step */
    SL_SHARED(float, sm_acc, [NW][GM][D]);
    SL_SHARED(float, sm_m, [NW][GM]);
    SL_SHARED(float, sm_l, [NW][GM]);

    const int t = blockIdx.x, kvh = blockIdx.y / a.n_hg, hg = blockIdx.y % a.n_hg;
    const int z = blockIdx.z;
    const int h0 = kvh * a.G + hg * MAXG, gb = min(MAXG, a.G - hg * MAXG);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int grp = lane / LPR, sub = lane % LPR;

    /* this lane's columns of q (heads past gb repeat the last one and are not stored), loaded
     * before the sequence is known: the two latencies overlap */
    float qr[GM][E], acc[GM][E], m[GM], l[GM];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        const float *qp = q + ((int64_t)t * a.H + h0 + min(g, gb - 1)) * D;
#pragma unroll
        for (int v = 0; v < NV; v++)
#pragma unroll
            for (int e = 0; e < EPL; e++) {
                qr[g][v * EPL + e] = qp[(v * LPR + sub) * EPL + e] * a.qscale;
                acc[g][v * EPL + e] = 0.0f;
            }
        m[g] = NEG_BIG;
        l[g] = 0.0f;
    }

    int seq, len;
    if (!find_token(q_start, q_len, ctx_len, a.n_seqs, t, &seq, &len)) return;
    if (len < 1 || len > a.max_blocks * a.bs) __trap(); /* ctx_len < q_len, or too few blocks */
    const int start = z * a.chunk;
    const int end = z == a.n_splits - 1 ? len : min(len, start + a.chunk);
    if (start >= end) return; /* a chunk past this token's context */

    const int32_t *bt = block_tables + (int64_t)seq * a.max_blocks;
    const int64_t slot_stride = (int64_t)a.Hkv * D; /* elements between consecutive slots */
    const C *kb = kc + (int64_t)kvh * D + sub * EPL, *vb = vc + (int64_t)kvh * D + sub * EPL;
    const int n_steps = (end - start + STEP - 1) / STEP;

    /* the cache block of position p and the offset in it (p clamped to the last position:
     * a valid row, its score masked) */
    auto block_of = [&](int p) -> int2 {
        p = p < end ? p : end - 1;
        const int bi = a.bs_shift >= 0 ? p >> a.bs_shift : p / a.bs;
        return make_int2(bt[bi], p - bi * a.bs);
    };
    /* block-table entries are fetched a step ahead, so that a step waits for one load only */
    int2 blk_next[U];
#pragma unroll
    for (int u = 0; u < U; u++) blk_next[u] = block_of(start + warp * STEP + u * RPW + grp);

    for (int st = warp; st < n_steps; st += NW) {
        const int p0 = start + st * STEP;
        uint4 kr[U][NV], vr[U][NV];
        bool ok[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            ok[u] = p0 + u * RPW + grp < end;
            if (blk_next[u].x < 0) __trap();
            const int64_t row = ((int64_t)blk_next[u].x * a.bs + blk_next[u].y) * slot_stride;
#pragma unroll
            for (int v = 0; v < NV; v++) {
                kr[u][v] = *reinterpret_cast<const uint4 *>(kb + row + v * LPR * EPL);
                vr[u][v] = *reinterpret_cast<const uint4 *>(vb + row + v * LPR * EPL);
            }
        }
        if (st + NW < n_steps)
#pragma unroll
            for (int u = 0; u < U; u++)
                blk_next[u] = block_of(p0 + NW * STEP + u * RPW + grp);
        float s[U][GM];
#pragma unroll
        for (int u = 0; u < U; u++) {
            float kf[E];
#pragma unroll
            for (int v = 0; v < NV; v++) kv_elem<C>::cvt(kr[u][v], kf + v * EPL);
#pragma unroll
            for (int g = 0; g < GM; g++) {
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < E; e++) d += qr[g][e] * kf[e];
                s[u][g] = d;
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int g = 0; g < GM; g++) {
#pragma unroll
                for (int o = LPR / 2; o > 0; o >>= 1)
                    s[u][g] += __shfl_xor_sync(SL_FULL_MASK, s[u][g], o);
                if (!ok[u]) s[u][g] = -INFINITY;
            }
#pragma unroll
        for (int g = 0; g < GM; g++) {
            float mx = s[0][g];
#pragma unroll
            for (int u = 1; u < U; u++) mx = fmaxf(mx, s[u][g]);
            const float mn = fmaxf(m[g], mx), alpha = exp2f(m[g] - mn);
            m[g] = mn;
            l[g] *= alpha;
#pragma unroll
            for (int e = 0; e < E; e++) acc[g][e] *= alpha;
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float vf[E];
#pragma unroll
            for (int v = 0; v < NV; v++) kv_elem<C>::cvt(vr[u][v], vf + v * EPL);
#pragma unroll
            for (int g = 0; g < GM; g++) {
                const float p = exp2f(s[u][g] - m[g]); /* 0 for a masked position */
                l[g] += p;
#pragma unroll
                for (int e = 0; e < E; e++) acc[g][e] += p * vf[e];
            }
        }
    }

    /* merge the RPW row groups of the warp (every lane ends with the same result) */
#pragma unroll
    for (int o = LPR; o < 32; o <<= 1)
#pragma unroll
        for (int g = 0; g < GM; g++) {
            const float mo = __shfl_xor_sync(SL_FULL_MASK, m[g], o);
            const float lo = __shfl_xor_sync(SL_FULL_MASK, l[g], o);
            const float mn = fmaxf(m[g], mo), wa = exp2f(m[g] - mn), wb = exp2f(mo - mn);
            l[g] = l[g] * wa + lo * wb;
#pragma unroll
            for (int e = 0; e < E; e++) {
                const float ao = __shfl_xor_sync(SL_FULL_MASK, acc[g][e], o);
                acc[g][e] = acc[g][e] * wa + ao * wb;
            }
            m[g] = mn;
        }
    if (grp == 0)
#pragma unroll
        for (int g = 0; g < GM; g++) {
#pragma unroll
            for (int v = 0; v < NV; v++)
#pragma unroll
                for (int e = 0; e < EPL; e++)
                    sm_acc[warp][g][(v * LPR + sub) * EPL + e] = acc[g][v * EPL + e];
            if (sub == 0) sm_m[warp][g] = m[g], sm_l[warp][g] = l[g];
        }
    __syncthreads();

    /* merge the warps in order; a warp that had no position has l = 0 and weight 0 */
    for (int i = threadIdx.x; i < gb * D; i += NT) {
        const int g = i / D, d = i % D;
        float mx = sm_m[0][g];
#pragma unroll
        for (int w = 1; w < NW; w++) mx = fmaxf(mx, sm_m[w][g]);
        float L = 0.0f, O = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; w++) {
            const float wt = exp2f(sm_m[w][g] - mx);
            L += sm_l[w][g] * wt;
            O += sm_acc[w][g][d] * wt;
        }
        const int64_t th = (int64_t)t * a.H + h0 + g;
        if (a.n_splits == 1) {
            out[th * D + d] = O / L;
        } else {
            const int64_t part = th * a.n_splits + z;
            ws_o[part * D + d] = O / L;
            if (d == 0) ws_ml[part] = make_float2(mx, L);
        }
    }
}

/* out[t][h] = the chunks' partial outputs weighted by their sums, in chunk order. Grid: x the
 * token, y the head; a thread per column (blockDim.x >= MAX_SPLITS: head_dim >= 64). */
static __global__ void __launch_bounds__(256)
    combine_kernel(const float *__restrict__ ws_o, const float2 *__restrict__ ws_ml,
                   float *__restrict__ out, const int32_t *__restrict__ q_start,
                   const int32_t *__restrict__ q_len, const int32_t *__restrict__ ctx_len,
                   int n_seqs, int H, int D, int n_splits, int chunk) {
    SL_SHARED(float2, mls, [MAX_SPLITS]);
    SL_SHARED(float, wt, [MAX_SPLITS]);
    const int t = blockIdx.x, h = blockIdx.y;
    const int64_t th = (int64_t)t * H + h;
    /* the chunks' (max, sum), fetched while the token's sequence is looked up */
    if ((int)threadIdx.x < n_splits) mls[threadIdx.x] = ws_ml[th * n_splits + threadIdx.x];
    int seq, len;
    if (!find_token(q_start, q_len, ctx_len, n_seqs, t, &seq, &len)) return;
    const int nv = min(n_splits, (len + chunk - 1) / chunk); /* chunks that hold positions */
    float mx = NEG_BIG;
    for (int z = 0; z < nv; z++) mx = fmaxf(mx, mls[z].x);
    if ((int)threadIdx.x < nv) {
        const float2 c = mls[threadIdx.x];
        wt[threadIdx.x] = c.y * exp2f(c.x - mx);
    }
    __syncthreads();
    float den = 0.0f;
    for (int z = 0; z < nv; z++) den += wt[z];
    const float inv = 1.0f / den;
    const float *o = ws_o + th * n_splits * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float num = 0.0f;
#pragma unroll 8
        for (int z = 0; z < nv; z++) num += wt[z] * o[(int64_t)z * D + d];
        out[th * D + d] = num * inv;
    }
}

static int g_force_splits;

extern "C" void sl__cuda_attention_force_splits(int n) { g_force_splits = n > 0 ? n : 0; }

static int sm_count(void) {
    int dev = 0, n = 0;
    SL_CUDA_CHECK(cudaGetDevice(&dev));
    SL_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n > 0 ? n : 1;
}

/* bytes of workspace per (token, head, chunk): the partial output and its (max, sum) */
static size_t part_bytes(int head_dim) { return (size_t)(head_dim + 2) * sizeof(float); }

extern "C" size_t sl_cuda_attention_workspace_bytes(int head_dim) {
    /* the heuristic splits only while tokens × KV heads × head groups × chunks <= one wave,
     * and tokens × H <= 8 × tokens × KV heads × head groups */
    return (size_t)MAXG * sm_count() * BLOCKS_PER_SM * part_bytes(head_dim);
}

template <class C, int D, int GM>
static void launch_d_g(const float *q, const C *k, const C *v, float *out, float *ws_o,
                       float2 *ws_ml, const sl_attn_batch *b, int n_tok, const attn_args &a,
                       cudaStream_t stream) {
    const dim3 grid((unsigned)n_tok, (unsigned)(a.Hkv * a.n_hg), (unsigned)a.n_splits);
    SL_LAUNCH((attn_kernel<C, D, GM>), grid, NT, 0, stream, q, k, v, out, ws_o, ws_ml,
              b->q_start, b->q_len, b->ctx_len, b->block_tables, a);
    SL_CUDA_CHECK(cudaGetLastError());
}

template <class C, int D>
static void launch_d(const float *q, const C *k, const C *v, float *out, float *ws_o,
                     float2 *ws_ml, const sl_attn_batch *b, int n_tok, const attn_args &a,
                     cudaStream_t stream) {
    const int gb = a.G < MAXG ? a.G : MAXG;
    if (gb == 1) launch_d_g<C, D, 1>(q, k, v, out, ws_o, ws_ml, b, n_tok, a, stream);
    else if (gb == 2) launch_d_g<C, D, 2>(q, k, v, out, ws_o, ws_ml, b, n_tok, a, stream);
    else if (gb <= 4) launch_d_g<C, D, 4>(q, k, v, out, ws_o, ws_ml, b, n_tok, a, stream);
    else launch_d_g<C, D, 8>(q, k, v, out, ws_o, ws_ml, b, n_tok, a, stream);
}

/* Picks the split (see the file comment) and launches. */
template <class C>
static void launch_attention(const float *q, const C *k, const C *v, float *out,
                             const sl_attn_batch *b, int n_tok, int max_ctx, int H, int Hkv,
                             int head_dim, int block_size, float scale, void *workspace,
                             size_t workspace_bytes, cudaStream_t stream) {
    attn_args a;
    a.n_seqs = b->n_seqs;
    a.max_blocks = b->max_blocks;
    a.H = H;
    a.Hkv = Hkv;
    a.G = H / Hkv;
    a.n_hg = (a.G + MAXG - 1) / MAXG;
    a.bs = block_size;
    a.bs_shift = -1;
    if ((block_size & (block_size - 1)) == 0)
        for (a.bs_shift = 0; (1 << a.bs_shift) < block_size; a.bs_shift++) {}
    a.qscale = scale * LOG2E;

    /* split while the grid is below a wave, chunks of at least MIN_CHUNK positions */
    const int64_t base = (int64_t)n_tok * Hkv * a.n_hg;
    int64_t S = (int64_t)sm_count() * BLOCKS_PER_SM / base;
    S = sl_min64(S, sl_min64(MAX_SPLITS, max_ctx / MIN_CHUNK));
    if (g_force_splits) S = g_force_splits;
    const size_t per_split = (size_t)n_tok * H * part_bytes(head_dim);
    S = sl_min64(S, (int64_t)(workspace ? workspace_bytes / per_split : 0));
    S = sl_min64(S, max_ctx);
    a.n_splits = 1;
    a.chunk = max_ctx > 0 ? max_ctx : 1;
    if (S > 1) {
        /* chunks a multiple of 16 positions: the steps of a warp then stay within a block of
         * the cache; S shrinks if the rounding left chunks empty */
        int chunk = (int)sl_div_up(max_ctx, S);
        if (!g_force_splits) chunk = (chunk + 15) / 16 * 16;
        S = sl_div_up(max_ctx, chunk);
        if (S > 1) a.n_splits = (int)S, a.chunk = chunk;
    }
    float *ws_o = NULL;
    float2 *ws_ml = NULL;
    if (a.n_splits > 1) {
        SL_CUDA_REQUIRE(((uintptr_t)workspace & 15) == 0);
        ws_o = (float *)workspace;
        ws_ml = (float2 *)(ws_o + (size_t)n_tok * H * a.n_splits * head_dim);
    }

    if (head_dim == 64) launch_d<C, 64>(q, k, v, out, ws_o, ws_ml, b, n_tok, a, stream);
    else if (head_dim == 128) launch_d<C, 128>(q, k, v, out, ws_o, ws_ml, b, n_tok, a, stream);
    else launch_d<C, 256>(q, k, v, out, ws_o, ws_ml, b, n_tok, a, stream);

    if (a.n_splits > 1) {
        SL_LAUNCH(combine_kernel, dim3((unsigned)n_tok, (unsigned)H), (unsigned)head_dim, 0,
                  stream, ws_o, ws_ml, out, b->q_start, b->q_len, b->ctx_len, b->n_seqs, H,
                  head_dim, a.n_splits, a.chunk);
        SL_CUDA_CHECK(cudaGetLastError());
    }
}

static void check_args(const float *q, const void *k, const void *v, const float *out,
                       const sl_attn_batch *b, int n_tok, int max_ctx, int H, int Hkv,
                       int head_dim, int block_size) {
    SL_CUDA_REQUIRE(q && k && v && out && b && b->n_seqs >= 0 && n_tok >= 0 && max_ctx >= 0);
    SL_CUDA_REQUIRE(b->n_seqs == 0 ||
                    (b->q_start && b->q_len && b->ctx_len && b->block_tables && b->max_blocks > 0));
    SL_CUDA_REQUIRE(Hkv > 0 && H >= Hkv && H % Hkv == 0);
    SL_CUDA_REQUIRE(Hkv * ((H / Hkv + MAXG - 1) / MAXG) <= 65535); /* grid.y */
    SL_CUDA_REQUIRE(head_dim == 64 || head_dim == 128 || head_dim == 256);
    SL_CUDA_REQUIRE(block_size > 0);
    SL_CUDA_REQUIRE(((uintptr_t)k & 15) == 0 && ((uintptr_t)v & 15) == 0);
}

extern "C" void sl_cuda_attention(const float *q, const float *k_cache, const float *v_cache,
                                  float *out, const sl_attn_batch *b, int n_tok, int max_ctx,
                                  int H, int Hkv, int head_dim, int block_size, float scale,
                                  void *workspace, size_t workspace_bytes,
                                  sl_cuda_stream stream) {
    check_args(q, k_cache, v_cache, out, b, n_tok, max_ctx, H, Hkv, head_dim, block_size);
    if (n_tok == 0 || b->n_seqs == 0) return;
    launch_attention(q, k_cache, v_cache, out, b, n_tok, max_ctx, H, Hkv, head_dim, block_size,
                     scale, workspace, workspace_bytes, stream);
}

extern "C" void sl_cuda_attention_f16(const float *q, const uint16_t *k_cache,
                                      const uint16_t *v_cache, float *out, const sl_attn_batch *b,
                                      int n_tok, int max_ctx, int H, int Hkv, int head_dim,
                                      int block_size, float scale, void *workspace,
                                      size_t workspace_bytes, sl_cuda_stream stream) {
    check_args(q, k_cache, v_cache, out, b, n_tok, max_ctx, H, Hkv, head_dim, block_size);
    if (n_tok == 0 || b->n_seqs == 0) return;
    launch_attention(q, reinterpret_cast<const __half *>(k_cache),
                     reinterpret_cast<const __half *>(v_cache), out, b, n_tok, max_ctx, H, Hkv,
                     head_dim, block_size, scale, workspace, workspace_bytes, stream);
}
