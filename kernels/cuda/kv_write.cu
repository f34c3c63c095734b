/* kv_write.cu — this step's K and V rows into a layer's paged cache at their slots (ops.h).
 *
 * Cache layout: [n_blocks][block_size][kv_dim], so slot s = block·block_size + offset is row s
 * of a [n_slots][kv_dim] matrix. Two element types: f32 (the CPU backend's, exact copies) and
 * fp16 (the GPU's KV format, DESIGN.md decision 4; round to nearest even, as sl_f32_to_fp16).
 *
 * Grid: blockIdx.x is the token, blockIdx.y a slice of its row (at most MAX_SLICES, threads loop
 * over longer rows); each thread moves the same elements of K and of V. Four elements per thread
 * (16-byte loads, 16- or 8-byte stores) when kv_dim % 4 == 0 and every pointer is aligned to
 * that, one otherwise. A negative slot is a programming error: the kernel traps.
 */
#include <cuda_fp16.h>

#include "common.cuh"
#include "ops.h"

#define THREADS 256
#define MAX_SLICES 16

static __device__ __forceinline__ void put4(float *p, float4 v) {
    *reinterpret_cast<float4 *>(p) = v;
}
static __device__ __forceinline__ void put4(__half *p, float4 v) {
    __half2 *h = reinterpret_cast<__half2 *>(p);
    h[0] = __floats2half2_rn(v.x, v.y);
    h[1] = __floats2half2_rn(v.z, v.w);
}
static __device__ __forceinline__ void put1(float *p, float v) { *p = v; }
static __device__ __forceinline__ void put1(__half *p, float v) { *p = __float2half_rn(v); }

template <class C, int VEC>
static __global__ void __launch_bounds__(THREADS)
    kv_write_kernel(C *k_cache, C *v_cache, const float *__restrict__ k,
                    const float *__restrict__ v, const int32_t *__restrict__ slots, int kv_dim) {
    const int64_t t = blockIdx.x;
    const int32_t s = slots[t];
    if (s < 0) __trap();
    const int64_t src = t * kv_dim, dst = (int64_t)s * kv_dim;
    const int n = kv_dim / VEC, stride = gridDim.y * blockDim.x;
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < n; i += stride) {
        if constexpr (VEC == 4) {
            put4(k_cache + dst + 4 * i, reinterpret_cast<const float4 *>(k + src)[i]);
            put4(v_cache + dst + 4 * i, reinterpret_cast<const float4 *>(v + src)[i]);
        } else {
            put1(k_cache + dst + i, k[src + i]);
            put1(v_cache + dst + i, v[src + i]);
        }
    }
}

static bool aligned(const void *p, unsigned bytes) { return ((uintptr_t)p & (bytes - 1)) == 0; }

template <class C>
static void launch_kv_write(C *k_cache, C *v_cache, const float *k, const float *v,
                            const int32_t *slots, int T, int kv_dim, cudaStream_t stream) {
    const bool vec = kv_dim % 4 == 0 && aligned(k, 16) && aligned(v, 16) &&
                     aligned(k_cache, 4 * sizeof(C)) && aligned(v_cache, 4 * sizeof(C));
    const int n = vec ? kv_dim / 4 : kv_dim;
    const unsigned threads = (unsigned)sl_min64(THREADS, sl_div_up(n, 32) * 32);
    const dim3 grid((unsigned)T, (unsigned)sl_min64(MAX_SLICES, sl_div_up(n, threads)));
    if (vec)
        SL_LAUNCH((kv_write_kernel<C, 4>), grid, threads, 0, stream, k_cache, v_cache, k, v, slots,
                  kv_dim);
    else
        SL_LAUNCH((kv_write_kernel<C, 1>), grid, threads, 0, stream, k_cache, v_cache, k, v, slots,
                  kv_dim);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl_cuda_kv_write(float *k_cache, float *v_cache, const float *k, const float *v,
                                 const int32_t *slot_mapping, int T, int kv_dim,
                                 sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(k_cache && v_cache && k && v && slot_mapping && T >= 0 && kv_dim > 0);
    if (T == 0) return;
    launch_kv_write(k_cache, v_cache, k, v, slot_mapping, T, kv_dim, stream);
}

extern "C" void sl_cuda_kv_write_f16(uint16_t *k_cache, uint16_t *v_cache, const float *k,
                                     const float *v, const int32_t *slot_mapping, int T,
                                     int kv_dim, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(k_cache && v_cache && k && v && slot_mapping && T >= 0 && kv_dim > 0);
    if (T == 0) return;
    launch_kv_write(reinterpret_cast<__half *>(k_cache), reinterpret_cast<__half *>(v_cache), k,
                    v, slot_mapping, T, kv_dim, stream);
}
