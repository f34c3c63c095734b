/* common.cuh — what every kernel .cu includes: the launch and shared-memory macros, the CUDA
 * error reporter, and the block reductions the kernels share.
 *
 * Each macro has two forms: the nvcc one here, the emulator one in kernels/emu/cuda_emu.h (g++
 * force-includes it, and it defines SL_CUDA_EMU). Kernel code uses only the macros, so the same
 * source runs on a GPU and in the emulator (kernels/emu/README.md).
 *
 *   SL_LAUNCH(kernel, grid, block, smem, stream, args...)  kernel<<<grid, block, smem, stream>>>
 *       A template kernel with several arguments goes in parentheses: SL_LAUNCH((k<A, B>), ...).
 *   SL_SHARED(T, name, dims)       __shared__ T name dims;  e.g. SL_SHARED(float, part, [32]);
 *       aligned to alignof(T) only: arrays read as float4, by ldmatrix or cp.async use a 16-byte
 *       T (float4, uint4) and a cast.
 *   SL_DYNAMIC_SHARED(T, name)     T *name = the launch's dynamic shared memory (16-byte aligned)
 *   SL_NOINLINE                    __noinline__: a device function kept out of its callers (code
 *       that runs once, whose registers should not weigh on a caller's loop)
 *   SL_CUDA_CHECK(call)            aborts with the statement, the CUDA error, function, file:line
 *   SL_CUDA_REQUIRE(cond)          argument checks of the extern "C" entry points (aborts)
 */
#ifndef SL_CUDA_COMMON_CUH
#define SL_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#ifndef SL_CUDA_EMU
#define SL_LAUNCH(kernel, grid, block, smem, stream, ...)                                        \
    kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define SL_SHARED(T, name, dims) __shared__ T name dims
#define SL_DYNAMIC_SHARED(T, name)                                                               \
    extern __shared__ __align__(16) unsigned char sl__dynamic_smem[];                            \
    T *name = reinterpret_cast<T *>(sl__dynamic_smem)
#define SL_NOINLINE __noinline__
#endif

#define SL_FULL_MASK 0xffffffffu

/* The one reporter of CUDA failures (runtime.cu): prints and aborts. err < 0: a failed check. */
extern "C" [[noreturn]] void sl__cuda_fail(const char *stmt, int err, const char *func,
                                           const char *file, int line);

#define SL_CUDA_CHECK(call)                                                                      \
    do {                                                                                         \
        cudaError_t sl_err_ = (call);                                                            \
        if (sl_err_ != cudaSuccess)                                                              \
            sl__cuda_fail(#call, (int)sl_err_, __func__, __FILE__, __LINE__);                    \
    } while (0)
#define SL_CUDA_REQUIRE(cond)                                                                    \
    do {                                                                                         \
        if (!(cond)) sl__cuda_fail(#cond, -1, __func__, __FILE__, __LINE__);                     \
    } while (0)

/* host-side helpers of the launchers */
static inline unsigned sl_div_up(int64_t a, int64_t b) { return (unsigned)((a + b - 1) / b); }
static inline int64_t sl_min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Sum over the warp; every lane gets it. */
static __device__ __forceinline__ float sl_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(SL_FULL_MASK, v, o);
    return v;
}

/* Sum over the block; every thread gets it. blockDim.x is a multiple of 32 (at most 1024),
 * blockDim.y == blockDim.z == 1, and every thread of the block calls it. */
static __device__ __forceinline__ float sl_block_sum(float v) {
    SL_SHARED(float, sl_part, [32]);
    v = sl_warp_sum(v);
    if (blockDim.x == 32) return v;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) sl_part[warp] = v;
    __syncthreads();
    /* each warp adds the partials itself: no second barrier to broadcast the total */
    v = lane < (int)(blockDim.x / 32) ? sl_part[lane] : 0.0f;
    v = sl_warp_sum(v);
    __syncthreads(); /* sl_part may be reused by a later call */
    return v;
}

#endif
