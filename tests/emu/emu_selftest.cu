/* emu_selftest.cu — kernels that test the CUDA emulator itself (test_emu.c), compiled only for
 * the emulator: every intrinsic against values worked out on the host, the runtime calls and
 * their errors, and kernels with the bugs the emulator must catch.
 *
 * The bad kernels put their bug on the line just before their closing brace, and an enum right
 * after the kernel records that line, so the test can look for it in the report.
 */
#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/ptx.cuh"

#define FAIL(...)                                                                                \
    do {                                                                                         \
        fprintf(stderr, "emu_selftest.cu:%d: ", __LINE__);                                       \
        fprintf(stderr, __VA_ARGS__);                                                            \
        fprintf(stderr, "\n");                                                                   \
        failures++;                                                                              \
    } while (0)
#define EXPECT_EQ(got, want, ...)                                                                \
    do {                                                                                         \
        long long g_ = (long long)(got), w_ = (long long)(want);                                 \
        if (g_ != w_) {                                                                          \
            fprintf(stderr, "emu_selftest.cu:%d: got %lld, want %lld: ", __LINE__, g_, w_);      \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fprintf(stderr, "\n");                                                               \
            failures++;                                                                          \
        }                                                                                        \
    } while (0)

static int failures;

template <class T> static T *dev_alloc(size_t n) {
    void *p = nullptr;
    SL_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    return static_cast<T *>(p);
}

/* ---- warp intrinsics -------------------------------------------------------------------- */

#define NW 16 /* results per thread */

static __global__ void warp_kernel(int *out) {
    const int lane = threadIdx.x % 32;
    int *o = out + threadIdx.x * NW;
    o[0] = __shfl_sync(SL_FULL_MASK, lane * 10, 3);
    o[1] = __shfl_sync(SL_FULL_MASK, lane, lane + 1, 8);
    o[2] = __shfl_up_sync(SL_FULL_MASK, lane, 3);
    o[3] = __shfl_up_sync(SL_FULL_MASK, lane, 1, 16);
    o[4] = __shfl_down_sync(SL_FULL_MASK, lane, 5);
    o[5] = __shfl_xor_sync(SL_FULL_MASK, lane, 9);
    o[6] = __shfl_xor_sync(SL_FULL_MASK, lane, 4, 4);
    o[7] = (int)__ballot_sync(SL_FULL_MASK, lane % 3 == 0);
    o[8] = __any_sync(SL_FULL_MASK, lane == 17) + 2 * __all_sync(SL_FULL_MASK, lane < 40) +
           4 * __all_sync(SL_FULL_MASK, lane != 5);
    o[9] = (int)__reduce_add_sync(SL_FULL_MASK, (unsigned)lane);
    o[10] = __reduce_min_sync(SL_FULL_MASK, lane - 7);
    o[11] = (int)__reduce_max_sync(SL_FULL_MASK, (unsigned)lane);
    /* two half-warps, each its own collective at the same time */
    if (lane < 16) o[12] = __shfl_xor_sync(0x0000ffffu, lane, 1);
    else o[12] = __shfl_xor_sync(0xffff0000u, lane, 2);
    __syncwarp();
    o[13] = (int)__activemask();
    const __half h = __shfl_down_sync(SL_FULL_MASK, __float2half((float)lane), 1);
    o[14] = (int)__half2float(h);
    const double d = __shfl_sync(SL_FULL_MASK, lane * 0.5, 31 - lane);
    o[15] = (int)(d * 2);
}

static void test_warp(void) {
    const int n = 64;
    int *d = dev_alloc<int>(n * NW), h[64 * NW];
    SL_LAUNCH(warp_kernel, 1, n, 0, nullptr, d);
    SL_CUDA_CHECK(cudaGetLastError());
    SL_CUDA_CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    unsigned ballot = 0;
    for (int l = 0; l < 32; l++) ballot |= (l % 3 == 0 ? 1u : 0u) << l;
    for (int t = 0; t < n; t++) {
        const int l = t % 32, *o = h + t * NW;
        EXPECT_EQ(o[0], 30, "shfl lane %d", l);
        EXPECT_EQ(o[1], (l & ~7) + ((l + 1) & 7), "shfl width 8, lane %d", l);
        EXPECT_EQ(o[2], l >= 3 ? l - 3 : l, "shfl_up lane %d", l);
        EXPECT_EQ(o[3], l % 16 >= 1 ? l - 1 : l, "shfl_up width 16, lane %d", l);
        EXPECT_EQ(o[4], l + 5 < 32 ? l + 5 : l, "shfl_down lane %d", l);
        EXPECT_EQ(o[5], l ^ 9, "shfl_xor lane %d", l);
        EXPECT_EQ(o[6], (l ^ 4) < (l & ~3) + 4 ? (l ^ 4) : l, "shfl_xor width 4, lane %d", l);
        EXPECT_EQ((unsigned)o[7], ballot, "ballot lane %d", l);
        EXPECT_EQ(o[8], 1 + 2 + 0, "any/all lane %d", l);
        EXPECT_EQ(o[9], 496, "reduce_add lane %d", l);
        EXPECT_EQ(o[10], -7, "reduce_min lane %d", l);
        EXPECT_EQ(o[11], 31, "reduce_max lane %d", l);
        EXPECT_EQ(o[12], l < 16 ? l ^ 1 : l ^ 2, "half-warp shfl_xor lane %d", l);
        EXPECT_EQ((unsigned)o[13], SL_FULL_MASK, "activemask lane %d", l);
        EXPECT_EQ(o[14], l + 1 < 32 ? l + 1 : l, "__half shfl_down lane %d", l);
        EXPECT_EQ(o[15], 31 - l, "double shfl lane %d", l);
    }
    SL_CUDA_CHECK(cudaFree(d));
}

/* ---- indices and block barriers ---------------------------------------------------------- */

static __global__ void index_kernel(int *out) {
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int n = blockDim.x * blockDim.y * blockDim.z;
    int *o = out + (b * n + t) * 4;
    o[0] = t;
    o[1] = __syncthreads_count(t % 3 == 0);
    o[2] = __syncthreads_and(t < n) + 2 * __syncthreads_and(t != 7);
    o[3] = __syncthreads_or(t == n - 1) + 2 * __syncthreads_or(t > n);
}

static void test_index(void) {
    const dim3 grid(2, 3, 1), block(8, 4, 2);
    const int n = 64 * 6;
    int *d = dev_alloc<int>(n * 4), h[64 * 6 * 4];
    SL_LAUNCH(index_kernel, grid, block, 0, nullptr, d);
    SL_CUDA_CHECK(cudaGetLastError());
    SL_CUDA_CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) {
        EXPECT_EQ(h[i * 4], i % 64, "linear thread index %d", i);
        EXPECT_EQ(h[i * 4 + 1], 22, "__syncthreads_count, thread %d", i);
        EXPECT_EQ(h[i * 4 + 2], 1, "__syncthreads_and, thread %d", i);
        EXPECT_EQ(h[i * 4 + 3], 1, "__syncthreads_or, thread %d", i);
    }
    SL_CUDA_CHECK(cudaFree(d));
}

/* ---- shared memory ------------------------------------------------------------------------ */

/* reverses each block's slice through static, dynamic and plain __shared__ memory */
static __global__ void shared_kernel(const float *in, float *out, int n) {
    SL_SHARED(float, s, [256]);
    SL_SHARED(double, s2, [4][8]);
    SL_DYNAMIC_SHARED(float, dyn);
    __shared__ int plain[256];
    const int t = threadIdx.x;
    const float v = __ldg(&in[blockIdx.x * n + t]);
    s[t] = v;
    dyn[t] = 2 * v;
    plain[t] = t;
    if (t < 32) s2[t / 8][t % 8] = t;
    __syncthreads();
    out[blockIdx.x * n + t] = s[n - 1 - t] + dyn[n - 1 - t] + (float)plain[n - 1 - t] +
                              (float)s2[(t % 32) / 8][t % 8];
}

static void test_shared(void) {
    const int n = 256, blocks = 3;
    float h[256 * 3], r[256 * 3];
    for (int i = 0; i < n * blocks; i++) h[i] = (float)(i % 97) - 40.0f;
    float *din = dev_alloc<float>(n * blocks), *dout = dev_alloc<float>(n * blocks);
    SL_CUDA_CHECK(cudaMemcpy(din, h, sizeof h, cudaMemcpyHostToDevice));
    /* more than 48 KiB of dynamic shared memory needs the attribute, as on a GPU */
    SL_LAUNCH(shared_kernel, blocks, n, 64 * 1024, nullptr, din, dout, n);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue, "64 KiB without the attribute");
    SL_CUDA_CHECK(cudaFuncSetAttribute(shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       64 * 1024));
    SL_LAUNCH(shared_kernel, blocks, n, 64 * 1024, nullptr, din, dout, n);
    SL_CUDA_CHECK(cudaGetLastError());
    SL_CUDA_CHECK(cudaMemcpy(r, dout, sizeof r, cudaMemcpyDeviceToHost));
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < n; t++) {
            float v = h[b * n + n - 1 - t];
            EXPECT_EQ(r[b * n + t], 3 * v + (float)(n - 1 - t) + (float)(t % 32),
                      "block %d thread %d", b, t);
        }
    SL_CUDA_CHECK(cudaFree(din));
    SL_CUDA_CHECK(cudaFree(dout));
}

/* ---- atomics ------------------------------------------------------------------------------ */

struct atomics_out {
    int add_i;
    unsigned max_u, inc_u;
    unsigned long long add_ull;
    float add_f;
    int lock, locked_count;
    __half2 add_h2;
};

static __global__ void atomics_kernel(atomics_out *o) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&o->add_i, t);
    atomicMax(&o->max_u, (unsigned)t * 3);
    atomicInc(&o->inc_u, 1000);
    atomicAdd(&o->add_ull, 1ull << 33);
    atomicAdd(&o->add_f, 0.5f);
    atomicAdd(&o->add_h2, __floats2half2_rn(1.0f, 2.0f));
    /* a spin lock across threads and blocks: spins only progress because atomics yield */
    while (atomicCAS(&o->lock, 0, 1) != 0) {
    }
    __threadfence();
    o->locked_count += 1;
    __threadfence();
    atomicExch(&o->lock, 0);
}

static void test_atomics(void) {
    const int blocks = 4, threads = 96, n = blocks * threads;
    atomics_out *d = dev_alloc<atomics_out>(1), h;
    SL_CUDA_CHECK(cudaMemset(d, 0, sizeof h));
    SL_LAUNCH(atomics_kernel, blocks, threads, 0, nullptr, d);
    SL_CUDA_CHECK(cudaGetLastError());
    SL_CUDA_CHECK(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost));
    EXPECT_EQ(h.add_i, n * (n - 1) / 2, "atomicAdd int");
    EXPECT_EQ(h.max_u, (n - 1) * 3, "atomicMax");
    EXPECT_EQ(h.inc_u, n, "atomicInc");
    EXPECT_EQ(h.add_ull >> 33, n, "atomicAdd unsigned long long");
    EXPECT_EQ(h.add_f, n * 0.5f, "atomicAdd float");
    EXPECT_EQ(__low2float(h.add_h2), n, "atomicAdd __half2 low");
    EXPECT_EQ(__high2float(h.add_h2), 2 * n, "atomicAdd __half2 high");
    EXPECT_EQ(h.locked_count, n, "spin lock");
    SL_CUDA_CHECK(cudaFree(d));
}

/* ---- half precision, math ------------------------------------------------------------------ */

static __global__ void half_kernel(float *o) {
    const __half a = __float2half(1.5f), b = __float2half(-2.0f), c = __float2half(0.25f);
    o[0] = __half2float(__hfma(a, b, c));
    o[1] = __half2float(hexp(__float2half(1.0f)));
    o[2] = __half2float(hrsqrt(__float2half(4.0f)));
    const __half2 h2 = __hfma2(__floats2half2_rn(1.0f, 2.0f), __floats2half2_rn(3.0f, 4.0f),
                               __floats2half2_rn(0.5f, 0.5f));
    o[3] = __low2float(h2) + 10.0f * __high2float(h2);
    const __nv_bfloat16 x = __float2bfloat16(3.0f);
    o[4] = __bfloat162float(__hfma(x, x, x));
    o[5] = rsqrtf(16.0f) + __saturatef(1.5f) + (float)__popc(0xf0f0u) + (float)__clz(1);
    o[6] = __int_as_float(__float_as_int(-7.25f));
    o[7] = (float)__brev(1u) / 2147483648.0f;
}

static void test_half(void) {
    float *d = dev_alloc<float>(8), h[8];
    SL_LAUNCH(half_kernel, 1, 1, 0, nullptr, d);
    SL_CUDA_CHECK(cudaGetLastError());
    SL_CUDA_CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    const float want[8] = {-2.75f, 2.71875f, 0.5f, 3.5f + 10 * 8.5f, 12.0f,
                           0.25f + 1 + 8 + 31, -7.25f, 1.0f};
    for (int i = 0; i < 8; i++)
        if (h[i] != want[i]) FAIL("half/math %d: got %.9g, want %.9g", i, h[i], want[i]);
    SL_CUDA_CHECK(cudaFree(d));
}

/* ---- the runtime ----------------------------------------------------------------------------- */

static __global__ void fill_kernel(float *p, float v, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] = v;
}

static void test_runtime(void) {
    int count = 0;
    SL_CUDA_CHECK(cudaGetDeviceCount(&count));
    EXPECT_EQ(count, 1, "device count");
    cudaDeviceProp prop;
    SL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    EXPECT_EQ(prop.major * 10 + prop.minor, 90, "compute capability");
    EXPECT_EQ(prop.warpSize, 32, "warp size");

    float *d = dev_alloc<float>(1000), h[1000];
    /* fresh device memory reads as NaN everywhere */
    SL_CUDA_CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 1000; i++)
        if (h[i] == h[i]) FAIL("cudaMalloc memory not poisoned at %d: %g", i, h[i]);

    cudaStream_t s;
    cudaEvent_t e0, e1;
    SL_CUDA_CHECK(cudaStreamCreate(&s));
    SL_CUDA_CHECK(cudaEventCreate(&e0));
    SL_CUDA_CHECK(cudaEventCreate(&e1));
    SL_CUDA_CHECK(cudaEventRecord(e0, s));
    SL_CUDA_CHECK(cudaMemsetAsync(d, 0, sizeof h, s));
    SL_LAUNCH(fill_kernel, 4, 256, 0, s, d, 3.0f, 999);
    SL_CUDA_CHECK(cudaGetLastError());
    SL_CUDA_CHECK(cudaEventRecord(e1, s));
    SL_CUDA_CHECK(cudaStreamSynchronize(s));
    float ms = -1;
    SL_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (!(ms >= 0)) FAIL("elapsed time %g", ms);
    SL_CUDA_CHECK(cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, s));
    EXPECT_EQ(h[998], 3, "fill");
    EXPECT_EQ(h[999], 0, "memset");

    /* errors: reported through the return value and cudaGetLastError, as by CUDA */
    EXPECT_EQ(cudaMemcpy(d, h, sizeof h, cudaMemcpyDeviceToHost), cudaErrorInvalidValue,
              "copy with swapped direction");
    EXPECT_EQ(cudaMemcpy(h, d, 1001 * sizeof(float), cudaMemcpyDeviceToHost),
              cudaErrorInvalidValue, "copy past the allocation");
    EXPECT_EQ(cudaFree(h), cudaErrorInvalidValue, "cudaFree of host memory");
    cudaGetLastError();
    SL_LAUNCH(fill_kernel, 1, 1025, 0, nullptr, d, 1.0f, 10);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration, "1025 threads");
    EXPECT_EQ(cudaGetLastError(), cudaSuccess, "the error is cleared");
    SL_LAUNCH(fill_kernel, dim3(1, 65536), 32, 0, nullptr, d, 1.0f, 10);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration, "gridDim.y 65536");
    SL_CUDA_CHECK(cudaStreamDestroy(s));
    SL_LAUNCH(fill_kernel, 1, 32, 0, s, d, 1.0f, 10);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle, "a destroyed stream");
    SL_CUDA_CHECK(cudaEventDestroy(e0));
    SL_CUDA_CHECK(cudaEventDestroy(e1));
    SL_CUDA_CHECK(cudaFree(d));
}

/* ---- a missing __syncthreads: poisoned shared memory makes it visible -------------------- */

template <bool BARRIER> static __global__ void block_sum_kernel(const float *in, float *out) {
    SL_SHARED(float, part, [8]);
    const int t = threadIdx.x, lane = t % 32, warp = t / 32;
    const float v = sl_warp_sum(in[blockIdx.x * 256 + t]);
    if (lane == 0) part[warp] = v;
    if (BARRIER) __syncthreads();
    if (t == 0) {
        float s = 0;
        for (int w = 0; w < 8; w++) s += part[w];
        out[blockIdx.x] = s;
    }
}

/* ---- a missing cp.async wait: the copy is not there yet ------------------------------------ */

/* Each thread copies its 4 floats into shared memory; thread t then reads thread t ^ 32's.
 * Without the wait before the barrier (only after the read), a copy is still in flight when its
 * reader runs first, and the read sees the poison: half the threads, in either thread order. */
template <bool WAIT> static __global__ void cp_async_read_kernel(const float *in, float *out) {
    SL_SHARED(float4, s, [64]);
    const int t = threadIdx.x;
    sl_cp_async<16>(&s[t], in + 4 * t);
    sl_cp_async_commit();
    if (WAIT) sl_cp_async_wait<0>();
    __syncthreads();
    const float4 v = s[t ^ 32];
    out[t] = v.x + v.y + v.z + v.w;
    if (!WAIT) sl_cp_async_wait<0>();
}

/* ---- the entry points of test_emu.c ---------------------------------------------------------- */

extern "C" int sl_emu_selftest_run(void) {
    failures = 0;
    test_warp();
    test_index();
    test_shared();
    test_atomics();
    test_half();
    test_runtime();
    return failures;
}

/* out[64]: with the wait, out[t] = 4 (t ^ 32) + 3; without, NaN for some t */
extern "C" void sl_emu_selftest_cp_async(int wait, float *out) {
    float h[256];
    for (int i = 0; i < 256; i++) h[i] = (float)(i / 4) + 0.5f * (float)(i % 4);
    float *din = dev_alloc<float>(256), *dout = dev_alloc<float>(64);
    SL_CUDA_CHECK(cudaMemcpy(din, h, sizeof h, cudaMemcpyHostToDevice));
    if (wait) SL_LAUNCH(cp_async_read_kernel<true>, 1, 64, 0, nullptr, din, dout);
    else SL_LAUNCH(cp_async_read_kernel<false>, 1, 64, 0, nullptr, din, dout);
    SL_CUDA_CHECK(cudaGetLastError());
    SL_CUDA_CHECK(cudaMemcpy(out, dout, 64 * sizeof(float), cudaMemcpyDeviceToHost));
    SL_CUDA_CHECK(cudaFree(din));
    SL_CUDA_CHECK(cudaFree(dout));
}

/* Sums blocks of 256 ones with the barrier (`barrier`) or without; out[blocks] on the host. */
extern "C" void sl_emu_selftest_block_sum(int barrier, int blocks, float *out) {
    float *h = (float *)malloc((size_t)blocks * 256 * sizeof(float));
    for (int i = 0; i < blocks * 256; i++) h[i] = 1.0f;
    float *din = dev_alloc<float>((size_t)blocks * 256), *dout = dev_alloc<float>((size_t)blocks);
    SL_CUDA_CHECK(cudaMemcpy(din, h, (size_t)blocks * 256 * sizeof(float), cudaMemcpyHostToDevice));
    if (barrier) SL_LAUNCH(block_sum_kernel<true>, blocks, 256, 0, nullptr, din, dout);
    else SL_LAUNCH(block_sum_kernel<false>, blocks, 256, 0, nullptr, din, dout);
    SL_CUDA_CHECK(cudaGetLastError());
    SL_CUDA_CHECK(cudaMemcpy(out, dout, (size_t)blocks * sizeof(float), cudaMemcpyDeviceToHost));
    SL_CUDA_CHECK(cudaFree(din));
    SL_CUDA_CHECK(cudaFree(dout));
    free(h);
}

/* ---- bugs the emulator must report ------------------------------------------------------------
 * Each bad kernel's bug sits on the line before its closing brace; the enum after it records
 * that line. sl_emu_selftest_bad() runs one (test_emu.c calls it in a child process). */

static __global__ void bad_exit_before_barrier(float *out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = 1.0f;
    __syncthreads();
}
enum { LINE_EXIT_BEFORE_BARRIER = __LINE__ - 2 };

static __global__ void bad_divergent_barrier(float *out) {
    out[threadIdx.x] = 1.0f;
    if (threadIdx.x % 2) __syncthreads();
    else __syncthreads();
}
enum { LINE_DIVERGENT_BARRIER = __LINE__ - 2 };

static __global__ void bad_warp_masks(float *out) {
    const int lane = threadIdx.x % 32;
    float v = (float)lane;
    if (lane < 16) v = __shfl_sync(SL_FULL_MASK, v, 0);
    else v = __shfl_sync(0xffff0000u, v, 16);
    __syncwarp();
    out[threadIdx.x] = v;
}
enum { LINE_WARP_MASKS = __LINE__ - 5 };

static __global__ void bad_shfl_from_exited(float *out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(SL_FULL_MASK, 1.0f, 16);
}
enum { LINE_SHFL_FROM_EXITED = __LINE__ - 2 };

static __global__ void bad_mask_without_self(float *out) {
    out[threadIdx.x] = (float)__ballot_sync(1u, 1);
}
enum { LINE_MASK_WITHOUT_SELF = __LINE__ - 2 };

static __global__ void bad_deadlock(float *out) {
    out[threadIdx.x] = 1.0f;
    if (threadIdx.x == 0) __syncthreads();
    else __syncwarp();
}
enum { LINE_DEADLOCK = __LINE__ - 2 };

/* never yields: the watchdog must still fire */
static __global__ void bad_hang(volatile int *flag) {
    while (threadIdx.x == 0 && *flag == 0) {
    }
}
enum { LINE_HANG = 0 };

static __global__ void bad_out_of_bounds(const float *in, float *out) {
    out[threadIdx.x] = in[threadIdx.x + 1];
}
enum { LINE_OUT_OF_BOUNDS = __LINE__ - 2 };

/* through a pointer: UBSan sees no array bound, only the emulator's redzone can tell */
static __global__ void bad_shared_out_of_bounds(float *out) {
    SL_SHARED(float, s, [32]);
    const float *p = s;
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = p[threadIdx.x + 1];
}
enum { LINE_SHARED_OUT_OF_BOUNDS = __LINE__ - 2 };

static __global__ void bad_too_much_shared(float *out) {
    SL_SHARED(float, big, [13000]);
    big[threadIdx.x] = 1.0f;
    out[threadIdx.x] = big[threadIdx.x];
}
enum { LINE_TOO_MUCH_SHARED = __LINE__ - 4 };

/* 16 KiB static + 40 KiB dynamic: past 48 KiB in all without the opt-in (a GPU refuses the
 * launch; qmm.cu's first H100 run hit it) */
static __global__ void bad_static_plus_dynamic(float *out) {
    SL_DYNAMIC_SHARED(float, dyn);
    SL_SHARED(float, st, [4096]);
    st[threadIdx.x] = dyn[threadIdx.x] = 1.0f;
    out[threadIdx.x] = st[threadIdx.x] + dyn[threadIdx.x];
}
enum { LINE_STATIC_PLUS_DYNAMIC = __LINE__ - 4 };

static __global__ void bad_trap(float *out) {
    out[threadIdx.x] = 1.0f;
    if (threadIdx.x == 5) __trap();
}
enum { LINE_TRAP = __LINE__ - 2 };

static void launch_with_host_pointer(float *host, float *out) {
    SL_LAUNCH(bad_out_of_bounds, 1, 32, 0, nullptr, host, out);
}
enum { LINE_HOST_POINTER = __LINE__ - 2 };

static __global__ void bad_mma_after_return(float *out) {
    uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    float c[4] = {0, 0, 0, 0};
    if (threadIdx.x == 3) return;
    sl_mma_m16n8k16_f16(c, a, b, c);
    out[threadIdx.x] = c[0];
}
enum { LINE_MMA_AFTER_RETURN = __LINE__ - 3 };

static __global__ void bad_ldmatrix_misaligned(float *out) {
    SL_SHARED(uint4, s, [64]);
    s[threadIdx.x] = make_uint4(0, 0, 0, 0);
    __syncwarp();
    uint32_t r[4];
    sl_ldmatrix<4, false>(r, reinterpret_cast<char *>(&s[threadIdx.x]) + 8);
    out[threadIdx.x] = (float)r[0];
}
enum { LINE_LDMATRIX_MISALIGNED = __LINE__ - 3 };

static __global__ void bad_ldmatrix_global(float *out) {
    uint32_t r[2];
    sl_ldmatrix<2, true>(r, out + 4 * (threadIdx.x % 16));
    out[threadIdx.x] = (float)r[0];
}
enum { LINE_LDMATRIX_GLOBAL = __LINE__ - 3 };

/* a uint16_t array is only 2-byte aligned: 16-byte copies into it need a 16-byte type */
static __global__ void bad_cp_async_alignment(const float *in, float *out) {
    SL_SHARED(uint16_t, s, [32 * 8]);
    sl_cp_async<16>(&s[8 * threadIdx.x], in);
    sl_cp_async_wait<0>();
    out[threadIdx.x] = (float)s[0];
}
enum { LINE_CP_ASYNC_ALIGNMENT = __LINE__ - 4 };

/* in holds 32 floats: in + 32 is its end */
static __global__ void bad_cp_async_past_end(const float *in, float *out) {
    SL_SHARED(float4, s, [32]);
    sl_cp_async<16>(&s[threadIdx.x], in + 32);
    out[threadIdx.x] = 0;
}
enum { LINE_CP_ASYNC_PAST_END = __LINE__ - 3 };

/* in holds 32 floats: 16 bytes from in + 28 reach past its end */
static __global__ void bad_prefetch_past_end(const float *in, float *out) {
    sl_prefetch_l2(in + 4 * (threadIdx.x % 8), 32);
    out[threadIdx.x] = 0;
}
enum { LINE_PREFETCH_PAST_END = __LINE__ - 3 };

static void cublas_with_host_matrix(float *host, float *dev) {
    cublasHandle_t h;
    const float one = 1.0f, zero = 0.0f;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return;
    cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, host, 4, dev, 4, &zero, dev, 4);
}

/* Bad kernel `which` (the order of test_emu.c's table): with run == 0, only the source line its
 * report must name (0: none); with run != 0, runs it, returning only if the emulator let the bug
 * pass. */
extern "C" int sl_emu_selftest_bad(int which, int run) {
    if (!run) {
        switch (which) {
        case 0: return LINE_EXIT_BEFORE_BARRIER;
        case 1: return LINE_DIVERGENT_BARRIER;
        case 2: return LINE_WARP_MASKS;
        case 3: return LINE_SHFL_FROM_EXITED;
        case 4: return LINE_MASK_WITHOUT_SELF;
        case 5: return LINE_DEADLOCK;
        case 6: return LINE_HANG;
        case 7: return LINE_OUT_OF_BOUNDS;
        case 8: return LINE_SHARED_OUT_OF_BOUNDS;
        case 9: return LINE_TOO_MUCH_SHARED;
        case 10: return LINE_TRAP;
        case 11: return LINE_HOST_POINTER;
        case 12: return LINE_MMA_AFTER_RETURN;
        case 13: return LINE_LDMATRIX_MISALIGNED;
        case 14: return LINE_LDMATRIX_GLOBAL;
        case 15: return LINE_CP_ASYNC_ALIGNMENT;
        case 16: return LINE_CP_ASYNC_PAST_END;
        case 20: return LINE_STATIC_PLUS_DYNAMIC;
        case 21: return LINE_PREFETCH_PAST_END;
        default: return 0;
        }
    }
    float *out = dev_alloc<float>(64);
    float *in = dev_alloc<float>(32);
    int *flag = dev_alloc<int>(2);
    SL_CUDA_CHECK(cudaMemset(flag, 0, sizeof(int)));
    float host[32];
    switch (which) {
    case 0:
        SL_LAUNCH(bad_exit_before_barrier, 1, 32, 0, nullptr, out);
        break;
    case 1:
        SL_LAUNCH(bad_divergent_barrier, 1, 32, 0, nullptr, out);
        break;
    case 2:
        SL_LAUNCH(bad_warp_masks, 1, 32, 0, nullptr, out);
        break;
    case 3:
        SL_LAUNCH(bad_shfl_from_exited, 1, 32, 0, nullptr, out);
        break;
    case 4:
        SL_LAUNCH(bad_mask_without_self, 1, 32, 0, nullptr, out);
        break;
    case 5:
        SL_LAUNCH(bad_deadlock, 1, 32, 0, nullptr, out);
        break;
    case 6:
        SL_LAUNCH(bad_hang, 1, 32, 0, nullptr, flag);
        break;
    case 7:
        SL_LAUNCH(bad_out_of_bounds, 1, 32, 0, nullptr, in, out);
        break;
    case 8:
        SL_LAUNCH(bad_shared_out_of_bounds, 1, 32, 0, nullptr, out);
        break;
    case 9:
        SL_LAUNCH(bad_too_much_shared, 1, 32, 0, nullptr, out);
        break;
    case 10:
        SL_LAUNCH(bad_trap, 1, 32, 0, nullptr, out);
        break;
    case 11: /* a host pointer passed to a kernel */
        launch_with_host_pointer(host, out);
        break;
    case 12:
        SL_LAUNCH(bad_mma_after_return, 1, 32, 0, nullptr, out);
        break;
    case 13:
        SL_LAUNCH(bad_ldmatrix_misaligned, 1, 32, 0, nullptr, out);
        break;
    case 14:
        SL_LAUNCH(bad_ldmatrix_global, 1, 32, 0, nullptr, out);
        break;
    case 15:
        SL_LAUNCH(bad_cp_async_alignment, 1, 32, 0, nullptr, in, out);
        break;
    case 16:
        SL_LAUNCH(bad_cp_async_past_end, 1, 32, 0, nullptr, in, out);
        break;
    case 17: { /* a token past the table: the kernel traps */
        float table[4 * 8] = {0};
        sl_qw w = {};
        w.fmt = SL_WF_F32, w.rows = 4, w.cols = 8, w.data = table;
        sl_cuda_weight dw;
        if (sl_cuda_weight_init(&dw, &w) != 0) break;
        const int32_t tok[2] = {1, 4};
        int *dtok = flag;
        SL_CUDA_CHECK(cudaMemcpy(dtok, tok, sizeof tok, cudaMemcpyHostToDevice));
        sl_cuda_embed(&dw, dtok, out, 2, nullptr);
        break;
    }
    case 18: { /* a negative slot: the kernel traps */
        const int32_t slot[1] = {-1};
        SL_CUDA_CHECK(cudaMemcpy(flag, slot, sizeof slot, cudaMemcpyHostToDevice));
        sl_cuda_kv_write(out, out + 32, in, in + 16, flag, 1, 16, nullptr);
        break;
    }
    case 19:
        cublas_with_host_matrix(host, out);
        break;
    case 20:
        SL_LAUNCH(bad_static_plus_dynamic, 1, 32, 40 * 1024, nullptr, out);
        break;
    case 21:
        SL_LAUNCH(bad_prefetch_past_end, 1, 32, 0, nullptr, in, out);
        break;
    default: break;
    }
    SL_CUDA_CHECK(cudaDeviceSynchronize());
    SL_CUDA_CHECK(cudaFree(out));
    SL_CUDA_CHECK(cudaFree(in));
    SL_CUDA_CHECK(cudaFree(flag));
    return 0;
}
