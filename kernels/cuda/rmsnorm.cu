/* rmsnorm.cu — RMSNorm of each row, with the residual add optionally fused in (ops.h).
 *
 * One block per row; the launcher picks the path:
 *   - float4 loads and stores when D % 4 == 0 and every row pointer is 16-byte aligned, scalar
 *     otherwise;
 *   - a row of at most 32 loads (float4 or scalar) takes one warp, which reduces with shuffles
 *     alone; longer rows take up to MAX_THREADS threads and reduce through shared memory.
 * Σx² is summed in f32 (the CPU reference sums in f64: the difference is within the tolerance),
 * then y = (x · rsqrt(Σx²/D + eps)) · g, the CPU's order of rounding.
 */
#include <cuda_fp16.h>

#include "common.cuh"
#include "ops.h"

#define MAX_THREADS 512

/* ADD: x += r first, written back. x is only read when !ADD (the entry point casts). y may be
 * x or r: a thread reads r and x at the indices it later writes y at, and no others. y16 (or
 * null): y rounded to f16 as well. */
template <bool ADD, int VEC>
static __global__ void __launch_bounds__(MAX_THREADS)
    rmsnorm_kernel(float *x, const float *r, const float *__restrict__ g, float *y,
                   __half *__restrict__ y16, int D, float eps) {
    const int64_t off = (int64_t)blockIdx.x * D;
    const int n = D / VEC;
    float ss = 0.0f;
    if constexpr (VEC == 4) {
        float4 *x4 = reinterpret_cast<float4 *>(x + off);
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float4 v = x4[i];
            if constexpr (ADD) {
                const float4 a = reinterpret_cast<const float4 *>(r + off)[i];
                v.x += a.x, v.y += a.y, v.z += a.z, v.w += a.w;
                x4[i] = v;
            }
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float v = x[off + i];
            if constexpr (ADD) {
                v += r[off + i];
                x[off + i] = v;
            }
            ss += v * v;
        }
    }
    ss = sl_block_sum(ss);
    const float scale = rsqrtf(ss / (float)D + eps);
    /* each thread reads back only the elements it wrote: no barrier needed, and y may be x */
    if constexpr (VEC == 4) {
        const float4 *x4 = reinterpret_cast<const float4 *>(x + off);
        const float4 *g4 = reinterpret_cast<const float4 *>(g);
        float4 *y4 = reinterpret_cast<float4 *>(y + off);
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float4 v = x4[i], w = g4[i];
            const float4 o = make_float4((v.x * scale) * w.x, (v.y * scale) * w.y,
                                         (v.z * scale) * w.z, (v.w * scale) * w.w);
            y4[i] = o;
            if (y16) { /* one half at a time: y16 needs no alignment */
                __half *h = y16 + off + 4 * i;
                h[0] = __float2half_rn(o.x), h[1] = __float2half_rn(o.y);
                h[2] = __float2half_rn(o.z), h[3] = __float2half_rn(o.w);
            }
        }
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float o = (x[off + i] * scale) * g[i];
            y[off + i] = o;
            if (y16) y16[off + i] = __float2half_rn(o);
        }
    }
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

template <bool ADD>
static void launch_rmsnorm(float *x, const float *r, const float *g, float *y, uint16_t *y16,
                           int T, int D, float eps, cudaStream_t stream) {
    const bool vec = D % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(g) &&
                     (!ADD || aligned16(r));
    const int n = vec ? D / 4 : D;
    const int threads = n <= 32 ? 32 : (int)sl_min64(MAX_THREADS, sl_div_up(n, 32) * 32);
    __half *h = reinterpret_cast<__half *>(y16);
    if (vec) SL_LAUNCH((rmsnorm_kernel<ADD, 4>), T, threads, 0, stream, x, r, g, y, h, D, eps);
    else SL_LAUNCH((rmsnorm_kernel<ADD, 1>), T, threads, 0, stream, x, r, g, y, h, D, eps);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl_cuda_rmsnorm(const float *x, const float *g, float *y, int T, int D,
                                float eps, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(x && g && y && T >= 0 && D > 0 && eps >= 0.0f);
    if (T == 0) return;
    launch_rmsnorm<false>(const_cast<float *>(x), nullptr, g, y, nullptr, T, D, eps, stream);
}

extern "C" void sl_cuda_add_rmsnorm(float *x, const float *r, const float *g, float *y, int T,
                                    int D, float eps, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(x && r && g && y && T >= 0 && D > 0 && eps >= 0.0f);
    SL_CUDA_REQUIRE(r != x);
    if (T == 0) return;
    launch_rmsnorm<true>(x, r, g, y, nullptr, T, D, eps, stream);
}

extern "C" void sl__cuda_rmsnorm_f16(float *x, const float *r, const float *g, float *y,
                                     uint16_t *y16, int T, int D, float eps,
                                     sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(x && g && y && y16 && T >= 0 && D > 0 && eps >= 0.0f && r != x);
    if (T == 0) return;
    if (r) launch_rmsnorm<true>(x, r, g, y, y16, T, D, eps, stream);
    else launch_rmsnorm<false>(x, nullptr, g, y, y16, T, D, eps, stream);
}
