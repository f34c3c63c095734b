/* backend.cu — the CUDA backend (cuda_backend.h): sl_backend's op table over the kernels of this
 * directory, and the few small kernels no other file has: add, add_bias, gather_rows, the
 * embedding gather from the tiled QW layout of matmul.h, and two conversions (QW dequantized
 * to f16 at load, activations rounded to bf16 for BF16 weights).
 *
 * The extra kernels follow the three layers of every .cu (kernel, launcher, entry), their
 * entries being the ops themselves.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdio.h>

#include <map>
#include <vector>

#include "attention.h"
#include "blas.cuh"
#include "common.cuh"
#include "cuda_backend.h"
#include "matmul.h"
#include "qmat_layout.cuh"
#include "ops.h"
#include "sample.h"

/* The error codes of base/base.h, a C11 header whose one C-only keyword gets its C++ spelling
 * here. Only declarations are used: sluice_cuda links below the library that holds base.c (as
 * weight.cu notes), so nothing of base.c is called, and the one warning this file prints goes
 * to stderr in sl__log's format. */
#define _Noreturn [[noreturn]]
#include "../../base/base.h"
#undef _Noreturn

/* A weight in its physical layout: the tiled QW matrix, or a dense [rows][cols] device copy. */
struct sl_bweight {
    bool qmat;        /* true: q; false: d (fmt F32, F16 or BF16) */
    sl_cuda_qmat q;   /* device, matmul.h layout */
    sl_cuda_weight d; /* device, [rows][cols] in d.fmt */
};

namespace {

constexpr int THREADS = 256;
constexpr int MAX_BLOCKS = 1024;
constexpr int MAX_SLICES = 16; /* blocks per row of the row gathers */
constexpr int MAX_HEAD_DIM = 256; /* attention.h: 64, 128 or 256 */
constexpr int DEFAULT_GEMM_MIN_T = 256; /* where f16 GEMM beats qmm's launches: measured on an
                                          * H200 end to end, qmm was faster at 128-token steps,
                                          * GEMM at 2048 (h200-2026-11-28.md) */
constexpr int64_t GEMM_SCRATCH_HALVES = 16 << 20; /* 32 MiB of dequantized rows */

struct cuda_be {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;         /* F32 and BF16 matmuls (F16 uses gemm_f16.cu's) */
    void *attn_ws;               /* device, attention split-K workspace */
    size_t attn_ws_bytes;
    __nv_bfloat16 *x16;          /* device, [x16_n] activations rounded for BF16 weights */
    size_t x16_n;
    std::map<uintptr_t, size_t> allocs; /* every buffer of alloc: start → bytes */
    int gemm_min_t;              /* QW matmuls of at least this many tokens: qmat_gemm (0: never) */
    bool attn_one_pass;          /* attention never split over the context (batch invariance) */
    bool qmm_any_batch;          /* qmm's default plan the same for every T (batch invariance) */
    int gemm_block_rows;         /* rows dequantized per GEMM (0: GEMM_SCRATCH_HALVES / K) */
    __half *deq;                 /* device, [deq_n] qmat_gemm's dequantized rows */
    size_t deq_n;
    void *smp_dev;               /* device, cb_sample's rows, adjustments and results */
    size_t smp_dev_bytes;
    std::vector<unsigned char> smp_host; /* their host staging */
    bool warned_group;
    bool f16_beside;             /* producers write the f16 copy of their output (forget_f16) */
};

cuda_be *impl(sl_backend *be) { return static_cast<cuda_be *>(be->impl); }

unsigned grid_for(int64_t n) { return (unsigned)sl_min64(MAX_BLOCKS, sl_div_up(n, THREADS)); }

/* The f16 copy a producer wrote beside its output (rmsnorm, add_rmsnorm and swiglu, for the
 * matmul that takes the output next: matmul.h's sl__cuda_f16_beside) serves only the op right
 * after it: every other op that writes or frees memory forgets it first (it may change what
 * the copy mirrors), the matmuls once they used it. */
void forget_f16() { sl__cuda_f16_forget(); }

/* sl__log's line format (base.c is out of reach, see above) */
#define WARN(fmt, ...) fprintf(stderr, "sluice warn [cuda] " fmt "\n", __VA_ARGS__)

/* ---- kernels -------------------------------------------------------------------------- */

#define GRID_STRIDE(i, n)                                                                        \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                    \
         i += (int64_t)gridDim.x * blockDim.x)

/* x[n] += y[n]: one f32 add per element, as the CPU backend (bit-identical) */
__global__ void add_kernel(float *x, const float *y, int64_t n) {
    GRID_STRIDE(i, n) x[i] += y[i];
}

/* x[T][N] += b[N] over the flat index */
__global__ void add_bias_kernel(float *x, const float *__restrict__ b, int64_t n, int64_t N) {
    GRID_STRIDE(i, n) x[i] += b[i % N];
}

/* y[i][D] = x[idx[i]][D]; blockIdx.x the row, blockIdx.y a slice of it */
__global__ void gather_rows_kernel(const float *__restrict__ x, const int32_t *__restrict__ idx,
                                   float *__restrict__ y, int64_t D) {
    const int64_t i = blockIdx.x;
    const int32_t r = idx[i];
    if (r < 0) __trap(); /* a programming error, as the CPU backend's SL_CHECK */
    for (int64_t j = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; j < D;
         j += (int64_t)gridDim.y * blockDim.x)
        y[i * D + j] = x[(int64_t)r * D + j];
}

/* s·c (+ o), the multiply and the add rounded separately (sl_qw_dequant_row's arithmetic) */
__device__ __forceinline__ float dequant(float s, const float *o, float c) {
    const float v = __fmul_rn(s, c);
    return o ? __fadd_rn(v, *o) : v;
}

/* The same for row rr of row tile rt of a tiled QW matrix at column c (its exact scale and
 * offset in any width: qmat_layout.cuh) */
__device__ __forceinline__ float dequant_qmat(const sl_cuda_qmat &q, int64_t rt, int64_t c, int rr,
                                              float code) {
    const float o = q.offsets ? sl_qmat_value(q, true, rt, c, rr) : 0.0f;
    return dequant(sl_qmat_value(q, false, rt, c, rr), q.offsets ? &o : nullptr, code);
}

/* Element (r, c) of a tiled QW matrix (matmul.h), dequantized exactly as sl_qw_dequant_row:
 * qmat_layout.cuh's positions. */
template <bool Q4>
__device__ __forceinline__ float qmat_at(const sl_cuda_qmat &q, int64_t r, int64_t c) {
    constexpr int KT = Q4 ? 64 : 32;
    const int64_t rt = r / 16;
    const int rr = (int)(r % 16);
    int s, kk, lane, j;
    sl_qmat_step(sl_qmat_spa(Q4, q.group), (int)(c % KT), &s, &kk);
    sl_qmat_frag(Q4, rr, s, kk, &lane, &j);
    const uint8_t *lb = static_cast<const uint8_t *>(q.codes) + ((size_t)rt * q.k_tiles + c / KT) * 512 + lane * 16;
    float code;
    if (Q4) {
        const int nib = j % 8; /* nibble j: word j / 8, nibble j % 8 */
        const unsigned n = (lb[(j / 8) * 4 + nib / 2] >> (4 * (nib % 2))) & 15;
        code = (float)(q.offsets ? (int)n : (int)n - 8);
    } else {
        code = (float)((int)lb[j] - 128);
    }
    return dequant_qmat(q, rt, c, rr, code);
}

/* Row tok[t] of a tiled QW matrix: blockIdx.x the token, blockIdx.y a slice of the row. */
template <bool Q4>
__global__ void embed_qmat_kernel(const sl_cuda_qmat q, const int32_t *__restrict__ tok,
                                  float *__restrict__ y) {
    const int64_t t = blockIdx.x;
    const int64_t r = tok[t];
    if (r < 0 || r >= q.rows) __trap();
    for (int64_t c = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; c < q.cols;
         c += (int64_t)gridDim.y * blockDim.x)
        y[t * q.cols + c] = qmat_at<Q4>(q, r, c);
}

/* Rows [r0, r0 + nr) of a tiled QW matrix (r0 a multiple of 16), dequantized and rounded to
 * f16: out [nr][cols]. One warp per 512-byte tile, as qmm reads it: lane 4g + t holds, for each
 * 16-column step s, the fragment values v = (k half)·4 + (row half)·2 + (odd k) of rows g, g + 8
 * at k indices 2t (+1) (+8), which qmat_layout.cuh maps to pairs of adjacent columns; so each
 * lane decodes its 16 bytes and stores pairs. The values are qmat_at's, bit for bit. */
template <bool Q4>
__global__ void qmat_rows_f16_kernel(const sl_cuda_qmat qm, int64_t r0, int64_t nr,
                                     __half *__restrict__ out) {
    constexpr int KT = Q4 ? 64 : 32, STEPS = KT / 16;
    const uint4 *__restrict__ codes = static_cast<const uint4 *>(qm.codes);
    const int64_t cols = qm.cols, k_tiles = qm.k_tiles;
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4, spa = sl_qmat_spa(Q4, qm.group);
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    const int64_t n_tiles = (nr + 15) / 16 * k_tiles;
    for (int64_t i = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; i < n_tiles; i += warps) {
        const int64_t lrt = i / k_tiles, kt = i % k_tiles, rt = r0 / 16 + lrt;
        const uint4 q = codes[((size_t)rt * k_tiles + kt) * 32 + lane];
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int s = 0; s < STEPS; s++)
#pragma unroll
            for (int hr = 0; hr < 2; hr++) { /* row half */
                const int rr = g + 8 * hr;
                const int64_t r = lrt * 16 + rr; /* row of out */
                if (r >= nr) continue;
#pragma unroll
                for (int hc = 0; hc < 2; hc++) { /* k half */
                    const int64_t c = kt * KT + sl_qmat_col(spa, s, 2 * t + 8 * hc);
                    if (c >= cols) continue; /* the padding of the last tile */
                    float v2[2];
#pragma unroll
                    for (int odd = 0; odd < 2; odd++) {
                        const int v = 4 * hc + 2 * hr + odd;
                        float code;
                        if (Q4) {
                            const int j = s * 8 + v / 2 + (v % 2) * 4; /* nibble j: word j / 8 */
                            const unsigned n = (w[j / 8] >> (4 * (j % 8))) & 15;
                            code = (float)(qm.offsets ? (int)n : (int)n - 8);
                        } else {
                            const int j = s * 8 + v; /* byte j */
                            code = (float)((int)((w[j / 4] >> (8 * (j % 4))) & 255) - 128);
                        }
                        v2[odd] = dequant_qmat(qm, rt, c + odd, rr, code);
                    }
                    *reinterpret_cast<__half2 *>(out + r * cols + c) = __floats2half2_rn(v2[0], v2[1]);
                }
            }
    }
}

/* The logical QW weight w (device copy, qw.h layout) dequantized and rounded to f16 */
template <bool Q4>
__global__ void dequant_f16_kernel(const void *__restrict__ codes,
                                   const float *__restrict__ scales,
                                   const float *__restrict__ offsets, int64_t cols, int group,
                                   __half *__restrict__ out, int64_t n) {
    GRID_STRIDE(i, n) {
        const int64_t r = i / cols, c = i % cols;
        float code;
        if (Q4) {
            const uint8_t b = static_cast<const uint8_t *>(codes)[r * (cols / 2) + c / 2];
            const int q = c % 2 ? b >> 4 : b & 15;
            code = (float)(offsets ? q : q - 8);
        } else {
            code = (float)static_cast<const int8_t *>(codes)[i];
        }
        const int64_t at = r * (cols / group) + c / group;
        out[i] = __float2half_rn(dequant(scales[at], offsets ? offsets + at : nullptr, code));
    }
}

__global__ void to_bf16_kernel(const float *__restrict__ x, __nv_bfloat16 *__restrict__ y,
                               int64_t n) {
    GRID_STRIDE(i, n) y[i] = __float2bfloat16_rn(x[i]);
}

/* ---- memory --------------------------------------------------------------------------- */

void *cb_alloc(sl_backend *be, size_t bytes) {
    void *p = sl_cuda_malloc(bytes ? bytes : 1); /* as the CPU backend, 0 bytes is a buffer */
    if (p) impl(be)->allocs[(uintptr_t)p] = bytes ? bytes : 1;
    return p;
}

void cb_free(sl_backend *be, void *p) {
    forget_f16();
    if (!p) return;
    SL_CUDA_REQUIRE(impl(be)->allocs.erase((uintptr_t)p) == 1); /* one of this backend's */
    sl_cuda_free(p);
}

void cb_upload(sl_backend *be, void *dst, const void *src, size_t bytes) {
    forget_f16();
    if (!bytes) return;
    SL_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, impl(be)->stream));
}

void cb_download(sl_backend *be, void *dst, const void *src, size_t bytes) {
    forget_f16();
    if (!bytes) return;
    SL_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, impl(be)->stream));
    SL_CUDA_CHECK(cudaStreamSynchronize(impl(be)->stream));
}

void cb_sync(sl_backend *be) { SL_CUDA_CHECK(cudaStreamSynchronize(impl(be)->stream)); }

/* ---- sampling ------------------------------------------------------------------------- */

/* sample.h's kernel on the logits where they are: the rows and their adjustment lists go up in
 * one copy, the tokens and logprobs come back in one (the top ones only when a row asks). */
void cb_sample(sl_backend *be, float *logits, int B, int V, const sl_bsample_row *rows,
               sl_bsample_out *out) {
    forget_f16();
    SL_CUDA_REQUIRE(logits && B >= 0 && V >= 1 && (B == 0 || (rows && out)));
    if (B == 0) return;
    static_assert(SL_BSAMPLE_MAX_LOGPROBS == SL_CUDA_MAX_LOGPROBS, "one logprob cap");
    constexpr int NL = SL_CUDA_MAX_LOGPROBS;
    cuda_be *c = impl(be);
    size_t n_adj = 0;
    bool top = false;
    for (int b = 0; b < B; b++) {
        n_adj += (size_t)rows[b].n_adj;
        top = top || (rows[b].logprobs && rows[b].top_logprobs > 0);
    }
    /* device: rows [B] | adjustments [n_adj] | (256-aligned) tokens [B] | logprobs [B] |
     * top ids [B][NL] | top logprobs [B][NL] */
    const size_t rows_b = (size_t)B * sizeof(sl_cuda_sample_row);
    const size_t in_b = rows_b + n_adj * sizeof(sl_cuda_sample_adj);
    const size_t res_at = (in_b + 255) / 256 * 256;
    const size_t res_b = (size_t)B * 8 + (top ? (size_t)B * NL * 8 : 0);
    if (res_at + res_b > c->smp_dev_bytes) {
        SL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
        SL_CUDA_CHECK(cudaFree(c->smp_dev));
        c->smp_dev_bytes = (res_at + res_b) * 2;
        SL_CUDA_CHECK(cudaMalloc(&c->smp_dev, c->smp_dev_bytes));
    }
    unsigned char *dev = static_cast<unsigned char *>(c->smp_dev);
    if (c->smp_host.size() < in_b || c->smp_host.size() < res_b)
        c->smp_host.resize(in_b > res_b ? in_b : res_b);
    sl_cuda_sample_row *hr = reinterpret_cast<sl_cuda_sample_row *>(c->smp_host.data());
    sl_cuda_sample_adj *ha = reinterpret_cast<sl_cuda_sample_adj *>(c->smp_host.data() + rows_b);
    sl_cuda_sample_adj *da = reinterpret_cast<sl_cuda_sample_adj *>(dev + rows_b);
    size_t at = 0;
    for (int b = 0; b < B; b++) {
        const sl_bsample_row *r = &rows[b];
        sl_cuda_sample_row *d = &hr[b];
        *d = sl_cuda_sample_row{};
        d->u = r->u;
        d->temperature = r->temperature;
        d->top_p = r->top_p;
        d->min_p = r->min_p;
        d->top_k = r->top_k;
        d->repetition_penalty = r->repetition_penalty;
        d->frequency_penalty = r->frequency_penalty;
        d->presence_penalty = r->presence_penalty;
        d->n_adj = r->n_adj;
        d->adj = r->n_adj ? da + at : nullptr;
        d->logprobs = r->logprobs;
        d->top_logprobs = r->logprobs ? r->top_logprobs : 0;
        for (int j = 0; j < r->n_adj; j++, at++)
            ha[at] = sl_cuda_sample_adj{r->adj[j].token, r->adj[j].bias, r->adj[j].count, 0.0f};
    }
    SL_CUDA_CHECK(cudaMemcpyAsync(dev, c->smp_host.data(), in_b, cudaMemcpyHostToDevice, c->stream));
    int32_t *tokens = reinterpret_cast<int32_t *>(dev + res_at);
    float *lps = reinterpret_cast<float *>(tokens + B);
    int32_t *top_ids = top ? reinterpret_cast<int32_t *>(lps + B) : nullptr;
    float *top_lps = top ? reinterpret_cast<float *>(top_ids + (size_t)B * NL) : nullptr;
    sl_cuda_sample(logits, B, V, reinterpret_cast<const sl_cuda_sample_row *>(dev), tokens, lps,
                   top_ids, top_lps, reinterpret_cast<sl_cuda_stream>(c->stream));
    SL_CUDA_CHECK(cudaMemcpyAsync(c->smp_host.data(), tokens, res_b, cudaMemcpyDeviceToHost, c->stream));
    SL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    const int32_t *h_tok = reinterpret_cast<const int32_t *>(c->smp_host.data());
    const float *h_lp = reinterpret_cast<const float *>(h_tok + B);
    const int32_t *h_ids = reinterpret_cast<const int32_t *>(h_lp + B);
    const float *h_tlp = reinterpret_cast<const float *>(h_ids + (size_t)B * NL);
    for (int b = 0; b < B; b++) {
        sl_bsample_out *o = &out[b];
        o->token = h_tok[b];
        o->logprob = rows[b].logprobs ? h_lp[b] : 0.0f;
        /* as sl_sampler_sample: min(top_logprobs, V) when logprobs, else 0 (and at most NL) */
        const int want = rows[b].logprobs && rows[b].top_logprobs > 0 ? rows[b].top_logprobs : 0;
        o->n_top = want < V ? (want < NL ? want : NL) : (V < NL ? V : NL);
        for (int j = 0; j < o->n_top; j++) {
            o->top_ids[j] = h_ids[(size_t)b * NL + j];
            o->top_lps[j] = h_tlp[(size_t)b * NL + j];
        }
    }
}

/* Rows of `row_bytes` bytes from p to the end of the backend buffer that holds p. */
int64_t rows_left(cuda_be *c, const void *p, int64_t row_bytes) {
    auto it = c->allocs.upper_bound((uintptr_t)p);
    SL_CUDA_REQUIRE(it != c->allocs.begin()); /* p lies in a buffer of this backend */
    --it;
    const uintptr_t end = it->first + it->second;
    SL_CUDA_REQUIRE((uintptr_t)p < end);
    return (int64_t)((end - (uintptr_t)p) / (uintptr_t)row_bytes);
}

/* ---- weights -------------------------------------------------------------------------- */

/* A QW weight whose group the tiled layout cannot hold, dequantized to f16 on the device. */
int dequant_to_f16(cuda_be *c, const sl_qw *w, sl_cuda_weight *out) {
    if (!c->warned_group) {
        c->warned_group = true;
        WARN("QW group %d is not a power of 2 of at least 16: such weights are dequantized to "
             "F16 at load (2 bytes per weight, weights rounded to f16)",
             (int)w->group);
    }
    sl_cuda_weight logical;
    if (sl_cuda_weight_init(&logical, w) != 0) return SL_ENOMEM;
    const int64_t n = w->rows * w->cols;
    *out = sl_cuda_weight{};
    out->fmt = SL_WF_F16;
    out->rows = w->rows;
    out->cols = w->cols;
    out->data = sl_cuda_malloc((size_t)n * sizeof(__half));
    if (!out->data) {
        sl_cuda_weight_deinit(&logical);
        return SL_ENOMEM;
    }
    __half *h = static_cast<__half *>(out->data);
    if (w->fmt == SL_WF_QW4)
        SL_LAUNCH(dequant_f16_kernel<true>, grid_for(n), THREADS, 0, c->stream, logical.codes,
                  logical.scales, logical.offsets, w->cols, (int)w->group, h, n);
    else
        SL_LAUNCH(dequant_f16_kernel<false>, grid_for(n), THREADS, 0, c->stream, logical.codes,
                  logical.scales, logical.offsets, w->cols, (int)w->group, h, n);
    SL_CUDA_CHECK(cudaGetLastError());
    SL_CUDA_CHECK(cudaStreamSynchronize(c->stream)); /* before the logical copy goes */
    sl_cuda_weight_deinit(&logical);
    return 0;
}

int cb_weight_create(sl_backend *be, const sl_qw *w, int alias, sl_bweight **out) {
    forget_f16();
    (void)alias; /* device memory can alias nothing of the host's */
    SL_CUDA_REQUIRE(w && out && (unsigned)w->fmt <= SL_WF_QW4 && w->rows > 0 && w->cols > 0);
    const bool quant = w->fmt == SL_WF_QW8 || w->fmt == SL_WF_QW4;
    if (quant) {
        SL_CUDA_REQUIRE(w->codes && w->scales && w->group > 0 && w->cols % w->group == 0);
        SL_CUDA_REQUIRE(w->fmt == SL_WF_QW8 || w->cols % 2 == 0);
    } else {
        SL_CUDA_REQUIRE(w->data);
    }
    SL_CUDA_REQUIRE(w->rows <= INT32_MAX && w->cols <= INT32_MAX); /* cuBLAS dimensions */
    *out = nullptr;
    sl_bweight *b = new sl_bweight{};
    int rc = 0;
    const bool tiled = quant && w->group >= 16 && (w->group & (w->group - 1)) == 0;
    if (tiled) {
        b->qmat = true;
        const int r = sl_cuda_qmat_init(&b->q, w);
        rc = r == 0 ? 0 : r == -2 ? SL_ENOMEM : SL_EUNSUPPORTED;
    } else if (quant) {
        rc = dequant_to_f16(impl(be), w, &b->d);
    } else {
        rc = sl_cuda_weight_init(&b->d, w) == 0 ? 0 : SL_ENOMEM;
    }
    if (rc) {
        delete b;
        return rc;
    }
    *out = b;
    return 0;
}

void cb_weight_destroy(sl_backend *be, sl_bweight *w) {
    forget_f16();
    (void)be;
    if (!w) return;
    if (w->qmat) sl_cuda_qmat_deinit(&w->q);
    else sl_cuda_weight_deinit(&w->d);
    delete w;
}

/* ---- matmul --------------------------------------------------------------------------- */

/* y[T][N] = x[T][K] · Wᵀ through cuBLAS, W [N][K] of type `wt`, x of type `wt` (f32 or bf16);
 * column-major view: Yᵀ (N×T) = W (K×N, transposed) · Xᵀ (K×T) */
void blas_gemm(cuda_be *c, const void *w, cudaDataType wt, const void *x, float *y, int T,
               int64_t N, int64_t K) {
    const float one = 1.0f, zero = 0.0f;
    if (wt == CUDA_R_32F)
        SL_BLAS_CHECK(sl_blas_required().sgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, T, (int)K, &one,
                                  static_cast<const float *>(w), (int)K,
                                  static_cast<const float *>(x), (int)K, &zero, y, (int)N));
    else
        SL_BLAS_CHECK(sl_blas_required().gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, T, (int)K, &one, w,
                                   wt, (int)K, x, wt, (int)K, &zero, y, CUDA_R_32F, (int)N,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* A step of gemm_min_t tokens or more (a prefill chunk, or that many decoding sequences): the
 * QW weight dequantized to f16 a block of rows at a time into the backend's scratch, each block
 * through cuBLAS (f32 accumulation), so that each weight byte is read once per step instead of
 * once per 32 tokens (qmm's launches); products then carry w's rounding to f16 as well as x's. */
void qmat_gemm(cuda_be *c, const sl_cuda_qmat &q, const float *x, float *y, int T) {
    const int64_t N = q.rows, K = q.cols;
    SL_CUDA_REQUIRE(N <= INT32_MAX && K <= INT32_MAX);
    int64_t br = c->gemm_block_rows > 0 ? c->gemm_block_rows : GEMM_SCRATCH_HALVES / K;
    br = sl_min64(N, br < 16 ? 16 : br / 16 * 16); /* blocks of whole 16-row groups: aligned y + r0 */
    if ((size_t)(br * K) > c->deq_n) {
        SL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
        SL_CUDA_CHECK(cudaFree(c->deq));
        c->deq = nullptr, c->deq_n = 0;
        SL_CUDA_CHECK(cudaMalloc(&c->deq, (size_t)(br * K) * sizeof(__half)));
        c->deq_n = (size_t)(br * K);
    }
    const uint16_t *x16 = sl__cuda_to_f16(x, (size_t)T * (size_t)K, reinterpret_cast<sl_cuda_stream>(c->stream));
    const float one = 1.0f, zero = 0.0f;
    for (int64_t r0 = 0; r0 < N; r0 += br) {
        const int64_t nr = sl_min64(br, N - r0);
        const int64_t tiles = (nr + 15) / 16 * q.k_tiles;
        const unsigned grid = (unsigned)sl_min64(MAX_BLOCKS * 8, sl_div_up(tiles, THREADS / 32));
        if (q.fmt == SL_WF_QW4)
            SL_LAUNCH(qmat_rows_f16_kernel<true>, grid, THREADS, 0, c->stream, q, r0, nr, c->deq);
        else
            SL_LAUNCH(qmat_rows_f16_kernel<false>, grid, THREADS, 0, c->stream, q, r0, nr, c->deq);
        SL_CUDA_CHECK(cudaGetLastError());
        /* column-major view: Y[:, r0:r0+nr]ᵀ (nr×T, ld N) = Wbᵀ (K×nr, transposed) · Xᵀ (K×T) */
        SL_BLAS_CHECK(sl_blas_required().gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, T, (int)K,
                                                 &one, c->deq, CUDA_R_16F, (int)K, x16, CUDA_R_16F,
                                                 (int)K, &zero, y + r0, CUDA_R_32F, (int)N,
                                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
}

void matmul_one(sl_backend *be, const sl_bweight *w, const float *x, float *y, int T) {
    SL_CUDA_REQUIRE(w && x && y && T >= 0);
    if (T == 0) return;
    cuda_be *c = impl(be);
    if (w->qmat) {
        if (c->gemm_min_t > 0 && T >= c->gemm_min_t) qmat_gemm(c, w->q, x, y, T);
        else sl_cuda_qmm(&w->q, x, y, T, sl_qmm_plan{0, 0, c->qmm_any_batch, 0, 0}, c->stream);
        return;
    }
    const sl_cuda_weight &d = w->d;
    switch (d.fmt) {
    case SL_WF_F16:
        sl_cuda_matmul_f16(static_cast<const uint16_t *>(d.data), x, y, T, d.rows, d.cols,
                           c->stream);
        return;
    case SL_WF_F32: blas_gemm(c, d.data, CUDA_R_32F, x, y, T, d.rows, d.cols); return;
    case SL_WF_BF16: {
        const int64_t n = (int64_t)T * d.cols;
        if ((size_t)n > c->x16_n) { /* grows on first need, as the other launchers' staging */
            SL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
            SL_CUDA_CHECK(cudaFree(c->x16));
            c->x16 = nullptr, c->x16_n = 0;
            SL_CUDA_CHECK(cudaMalloc(&c->x16, (size_t)n * sizeof(__nv_bfloat16)));
            c->x16_n = (size_t)n;
        }
        SL_LAUNCH(to_bf16_kernel, grid_for(n), THREADS, 0, c->stream, x, c->x16, n);
        SL_CUDA_CHECK(cudaGetLastError());
        blas_gemm(c, d.data, CUDA_R_16BF, c->x16, y, T, d.rows, d.cols);
        return;
    }
    default: break;
    }
    SL_CUDA_REQUIRE(!"weight format without a matmul");
}

void cb_matmul(sl_backend *be, const sl_bweight *w, const float *x, float *y, int T) {
    matmul_one(be, w, x, y, T);
    forget_f16();
}

/* q/k/v, gate/up: one qmm launch over the rows of each run of consecutive QW weights that
 * share a format (sl_cuda_qmm_groupable; q and k of a Q4_K_M model, whose v is Q6_K) when the
 * step takes qmm's path; one matmul for the rest (each run takes x's f16 copy beside, if any) */
void cb_matmul_multi(sl_backend *be, const sl_bweight *const *w, int n, const float *x,
                     float *const *y, int T) {
    SL_CUDA_REQUIRE(w && n >= 1 && n <= 3 && x && y && T >= 0);
    if (T == 0) {
        forget_f16(); /* as when it ran */
        return;
    }
    cuda_be *c = impl(be);
    const bool qmm = !(c->gemm_min_t > 0 && T >= c->gemm_min_t);
    for (int i = 0; i < n;) {
        SL_CUDA_REQUIRE(w[i] && y[i]);
        const sl_cuda_qmat *q[3];
        int m = 0; /* the run at i */
        while (qmm && i + m < n && w[i + m] && w[i + m]->qmat) {
            q[m] = &w[i + m]->q;
            if (!sl_cuda_qmm_groupable(q, m + 1)) break;
            m++;
        }
        if (m >= 2) {
            sl_cuda_qmm_multi(q, m, x, y + i, T, sl_qmm_plan{0, 0, c->qmm_any_batch, 0, 0}, c->stream);
            i += m;
        } else {
            matmul_one(be, w[i], x, y[i], T);
            i++;
        }
    }
    forget_f16();
}

/* ---- elementwise and gathers ------------------------------------------------------------ */

/* the producers of matmul inputs: y's f16 copy beside it, for the matmul next */
void cb_rmsnorm(sl_backend *be, const float *x, const float *g, float *y, int T, int D,
                float eps) {
    forget_f16();
    cuda_be *c = impl(be);
    if (c->f16_beside && T > 0 && D > 0) /* else the plain op checks the arguments */
        sl__cuda_rmsnorm_f16(const_cast<float *>(x), nullptr, g, y,
                             sl__cuda_f16_beside(y, (size_t)T * (size_t)D), T, D, eps, c->stream);
    else sl_cuda_rmsnorm(x, g, y, T, D, eps, c->stream);
}

void cb_add_rmsnorm(sl_backend *be, float *x, const float *r, const float *g, float *y, int T,
                    int D, float eps) {
    forget_f16();
    cuda_be *c = impl(be);
    if (c->f16_beside && T > 0 && D > 0) /* else the plain op checks the arguments */
        sl__cuda_rmsnorm_f16(x, r, g, y, sl__cuda_f16_beside(y, (size_t)T * (size_t)D), T, D, eps,
                             c->stream);
    else sl_cuda_add_rmsnorm(x, r, g, y, T, D, eps, c->stream);
}

void cb_add(sl_backend *be, float *x, const float *y, int64_t n) {
    forget_f16();
    SL_CUDA_REQUIRE(x && y && n >= 0);
    if (n == 0) return;
    SL_LAUNCH(add_kernel, grid_for(n), THREADS, 0, impl(be)->stream, x, y, n);
    SL_CUDA_CHECK(cudaGetLastError());
}

void cb_add_bias(sl_backend *be, float *x, const float *b, int T, int N) {
    forget_f16();
    SL_CUDA_REQUIRE(x && b && T >= 0 && N >= 0);
    const int64_t n = (int64_t)T * N;
    if (n == 0) return;
    SL_LAUNCH(add_bias_kernel, grid_for(n), THREADS, 0, impl(be)->stream, x, b, n, (int64_t)N);
    SL_CUDA_CHECK(cudaGetLastError());
}

void cb_rope(sl_backend *be, float *x, const int32_t *pos, int T, int H, int head_dim,
             const sl_rope_params *rp) {
    forget_f16();
    SL_CUDA_REQUIRE(rp && T >= 0);
    if (T == 0 || rp->n_rot == 0) return;
    sl_cuda_rope(x, pos, T, H, head_dim, rp, impl(be)->stream);
}

void cb_swiglu(sl_backend *be, const float *g, const float *u, float *y, int64_t n) {
    forget_f16();
    cuda_be *c = impl(be);
    if (c->f16_beside && n > 0)
        sl__cuda_swiglu_f16(g, u, y, sl__cuda_f16_beside(y, (size_t)n), n, c->stream);
    else sl_cuda_swiglu(g, u, y, n, c->stream);
}

void cb_embed(sl_backend *be, const sl_bweight *table, const int32_t *tok, float *y, int T) {
    forget_f16();
    SL_CUDA_REQUIRE(table && tok && y && T >= 0);
    if (T == 0) return;
    cudaStream_t st = impl(be)->stream;
    if (!table->qmat) {
        sl_cuda_embed(&table->d, tok, y, T, st);
        return;
    }
    const sl_cuda_qmat &q = table->q;
    const unsigned threads = (unsigned)sl_min64(THREADS, sl_div_up(q.cols, 32) * 32);
    const dim3 grid((unsigned)T, (unsigned)sl_min64(MAX_SLICES, sl_div_up(q.cols, threads)));
    if (q.fmt == SL_WF_QW4)
        SL_LAUNCH(embed_qmat_kernel<true>, grid, threads, 0, st, q, tok, y);
    else
        SL_LAUNCH(embed_qmat_kernel<false>, grid, threads, 0, st, q, tok, y);
    SL_CUDA_CHECK(cudaGetLastError());
}

void cb_kv_write(sl_backend *be, float *k_cache, float *v_cache, const float *k, const float *v,
                 const int32_t *slot_mapping, int T, int kv_dim) {
    forget_f16();
    if (be->kv_f16)
        sl_cuda_kv_write_f16(reinterpret_cast<uint16_t *>(k_cache), reinterpret_cast<uint16_t *>(v_cache),
                             k, v, slot_mapping, T, kv_dim, impl(be)->stream);
    else sl_cuda_kv_write(k_cache, v_cache, k, v, slot_mapping, T, kv_dim, impl(be)->stream);
}

void cb_gather_rows(sl_backend *be, const float *x, const int32_t *idx, float *y, int n, int D) {
    forget_f16();
    SL_CUDA_REQUIRE(x && idx && y && n >= 0 && D >= 0);
    if (n == 0 || D == 0) return;
    const unsigned threads = (unsigned)sl_min64(THREADS, sl_div_up(D, 32) * 32);
    const dim3 grid((unsigned)n, (unsigned)sl_min64(MAX_SLICES, sl_div_up(D, threads)));
    SL_LAUNCH(gather_rows_kernel, grid, threads, 0, impl(be)->stream, x, idx, y, (int64_t)D);
    SL_CUDA_CHECK(cudaGetLastError());
}

void cb_attention(sl_backend *be, const float *q, const float *k_cache, const float *v_cache,
                  float *out, const sl_attn_batch *b, int H, int Hkv, int head_dim,
                  int block_size, float scale) {
    forget_f16();
    SL_CUDA_REQUIRE(q && out && b && H > 0 && head_dim > 0 && block_size > 0);
    cuda_be *c = impl(be);
    /* the step's bounds when the caller gives them (forward.c does), else sound ones (see
     * cuda_backend.h): q's and out's rows as allocated, the longest context a block table row
     * can hold */
    const int64_t row = (int64_t)H * head_dim * (int64_t)sizeof(float);
    int64_t n_tok = sl_min64(rows_left(c, q, row), rows_left(c, out, row));
    if (b->n_tokens > 0) n_tok = sl_min64(n_tok, b->n_tokens);
    int64_t max_ctx = (int64_t)b->max_blocks * block_size;
    if (b->max_ctx > 0) max_ctx = sl_min64(max_ctx, b->max_ctx);
    const int nt = (int)sl_min64(n_tok, INT32_MAX), mc = (int)sl_min64(max_ctx, INT32_MAX);
    /* no workspace, no split-K: each sequence's context in one pass whatever the batch */
    void *ws = c->attn_one_pass ? nullptr : c->attn_ws;
    const size_t ws_bytes = c->attn_one_pass ? 0 : c->attn_ws_bytes;
    if (be->kv_f16)
        sl_cuda_attention_f16(q, reinterpret_cast<const uint16_t *>(k_cache),
                              reinterpret_cast<const uint16_t *>(v_cache), out, b, nt, mc, H, Hkv,
                              head_dim, block_size, scale, ws, ws_bytes, c->stream);
    else sl_cuda_attention(q, k_cache, v_cache, out, b, nt, mc, H, Hkv, head_dim, block_size, scale,
                           ws, ws_bytes, c->stream);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

void cb_destroy(sl_backend *be) {
    forget_f16();
    if (!be) return;
    cuda_be *c = impl(be);
    if (c->stream) SL_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (!c->allocs.empty())
        WARN("destroyed with %zu buffers still allocated (leaked by the caller)",
             c->allocs.size());
    SL_CUDA_CHECK(cudaFree(c->attn_ws));
    SL_CUDA_CHECK(cudaFree(c->x16));
    SL_CUDA_CHECK(cudaFree(c->smp_dev));
    SL_CUDA_CHECK(cudaFree(c->deq));
    if (c->blas) SL_BLAS_CHECK(sl_blas_required().destroy(c->blas));
    if (c->stream) SL_CUDA_CHECK(cudaStreamDestroy(c->stream));
    delete c;
    delete be;
}

} // namespace

extern "C" sl_backend *sl_cuda_backend_create(int device) {
    const int n = sl_cuda_device_count();
    if (device < 0 || device >= n) {
        fprintf(stderr, "sluice error [cuda] no CUDA device %d (%d found)\n", device, n);
        return nullptr;
    }
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) {
        cudaGetLastError();
        fprintf(stderr, "sluice error [cuda] cannot use CUDA device %d: %s\n", device,
                cudaGetErrorString(e));
        return nullptr;
    }
    sl_backend *be = new sl_backend{};
    cuda_be *c = new cuda_be{};
    be->impl = c;
    c->device = device;
    const char *what = "a stream";
    if (cudaStreamCreate(&c->stream) != cudaSuccess) goto fail;
    what = "a cuBLAS handle";
    if (!sl_blas()) {
        fprintf(stderr, "sluice error [cuda] %s\n", sl_blas_error());
        goto fail;
    }
    if (sl_blas()->create(&c->blas) != CUBLAS_STATUS_SUCCESS) {
        c->blas = nullptr;
        goto fail;
    }
    SL_BLAS_CHECK(sl_blas()->set_stream(c->blas, c->stream));
    what = "the attention workspace";
    c->attn_ws_bytes = sl_cuda_attention_workspace_bytes(MAX_HEAD_DIM);
    c->attn_ws = sl_cuda_malloc(c->attn_ws_bytes);
    if (!c->attn_ws) goto fail;

    c->gemm_min_t = DEFAULT_GEMM_MIN_T;
    c->f16_beside = true;
    be->name = "cuda";
    be->kv_f16 = 1; /* half the KV bytes of every step; attention.h's fp16 path */
    be->destroy = cb_destroy;
    be->alloc = cb_alloc;
    be->free = cb_free;
    be->upload = cb_upload;
    be->download = cb_download;
    be->sync = cb_sync;
    be->weight_create = cb_weight_create;
    be->weight_destroy = cb_weight_destroy;
    be->matmul = cb_matmul;
    be->matmul_multi = cb_matmul_multi;
    be->rmsnorm = cb_rmsnorm;
    be->add = cb_add;
    be->add_rmsnorm = cb_add_rmsnorm;
    be->add_bias = cb_add_bias;
    be->rope = cb_rope;
    be->swiglu = cb_swiglu;
    be->embed = cb_embed;
    be->kv_write = cb_kv_write;
    be->attention = cb_attention;
    be->gather_rows = cb_gather_rows;
    be->sample = cb_sample;
    return be;
fail:
    cudaGetLastError();
    fprintf(stderr, "sluice error [cuda] device %d: cannot create %s\n", device, what);
    cb_destroy(be);
    return nullptr;
}

extern "C" void sl_cuda_backend_set_gemm(sl_backend *be, int min_tokens, int block_rows) {
    SL_CUDA_REQUIRE(be && be->impl && min_tokens >= 0 && block_rows >= 0);
    impl(be)->gemm_min_t = min_tokens;
    impl(be)->gemm_block_rows = block_rows;
}

extern "C" int sl_cuda_backend_gemm_min_tokens(const sl_backend *be) {
    SL_CUDA_REQUIRE(be && be->impl);
    return static_cast<const cuda_be *>(be->impl)->gemm_min_t;
}

extern "C" void sl__cuda_backend_set_f16_beside(sl_backend *be, int on) {
    SL_CUDA_REQUIRE(be && be->impl);
    forget_f16();
    impl(be)->f16_beside = on != 0;
}

extern "C" void sl_cuda_backend_set_batch_invariant(sl_backend *be, int on) {
    SL_CUDA_REQUIRE(be && be->impl);
    impl(be)->gemm_min_t = on ? 0 : DEFAULT_GEMM_MIN_T;
    impl(be)->attn_one_pass = on != 0;
    impl(be)->qmm_any_batch = on != 0;
}
