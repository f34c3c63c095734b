/* swiglu.cu — y = silu(g) · u elementwise (ops.h).
 *
 * A grid-stride loop over at most MAX_BLOCKS blocks of THREADS threads; float4 loads and
 * stores when n % 4 == 0 and g, u, y are 16-byte aligned, scalar otherwise. silu(g) = g / (1 +
 * e^−g) in the CPU reference's order of operations (expf, not the less accurate __expf).
 */
#include <cuda_fp16.h>

#include "common.cuh"
#include "ops.h"

#define THREADS 256
#define MAX_BLOCKS 1024

static __device__ __forceinline__ float silu_mul(float g, float u) {
    return g / (1.0f + expf(-g)) * u;
}

/* y may equal g: each element is read, then written, by the same thread. y16 (or null): y
 * rounded to f16 as well. */
template <int VEC>
static __global__ void __launch_bounds__(THREADS)
    swiglu_kernel(const float *g, const float *__restrict__ u, float *y, __half *__restrict__ y16,
                  int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if constexpr (VEC == 4) {
        const float4 *g4 = reinterpret_cast<const float4 *>(g);
        const float4 *u4 = reinterpret_cast<const float4 *>(u);
        float4 *y4 = reinterpret_cast<float4 *>(y);
        for (; i < n / 4; i += stride) {
            const float4 a = g4[i], b = u4[i];
            const float4 o = make_float4(silu_mul(a.x, b.x), silu_mul(a.y, b.y),
                                         silu_mul(a.z, b.z), silu_mul(a.w, b.w));
            y4[i] = o;
            if (y16) { /* one half at a time: y16 needs no alignment */
                __half *h = y16 + 4 * i;
                h[0] = __float2half_rn(o.x), h[1] = __float2half_rn(o.y);
                h[2] = __float2half_rn(o.z), h[3] = __float2half_rn(o.w);
            }
        }
    } else {
        for (; i < n; i += stride) {
            const float o = silu_mul(g[i], u[i]);
            y[i] = o;
            if (y16) y16[i] = __float2half_rn(o);
        }
    }
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static void launch_swiglu(const float *g, const float *u, float *y, uint16_t *y16, int64_t n,
                          cudaStream_t stream) {
    const bool vec = n % 4 == 0 && aligned16(g) && aligned16(u) && aligned16(y);
    const int64_t items = vec ? n / 4 : n;
    const unsigned blocks = (unsigned)sl_min64(MAX_BLOCKS, sl_div_up(items, THREADS));
    __half *h = reinterpret_cast<__half *>(y16);
    if (vec) SL_LAUNCH(swiglu_kernel<4>, blocks, THREADS, 0, stream, g, u, y, h, n);
    else SL_LAUNCH(swiglu_kernel<1>, blocks, THREADS, 0, stream, g, u, y, h, n);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl_cuda_swiglu(const float *g, const float *u, float *y, int64_t n,
                               sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(g && u && y && n >= 0);
    if (n == 0) return;
    launch_swiglu(g, u, y, nullptr, n, stream);
}

extern "C" void sl__cuda_swiglu_f16(const float *g, const float *u, float *y, uint16_t *y16,
                                    int64_t n, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(g && u && y && y16 && n >= 0);
    if (n == 0) return;
    launch_swiglu(g, u, y, y16, n, stream);
}
