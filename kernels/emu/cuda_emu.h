/* cuda_emu.h — the device side of the CUDA emulator: lets a project .cu file compile unchanged
 * with g++ and run its kernels on the CPU (kernels/emu/README.md has the rules kernels follow).
 *
 * Force-included ahead of the .cu source:
 *   g++ -x c++ -std=c++17 -fno-strict-aliasing -include kernels/emu/cuda_emu.h \
 *       -isystem <cuda>/include
 * The real CUDA headers (cuda_runtime.h, cuda_fp16.h, cuda_bf16.h) supply the types and the host
 * half-precision code; kernels/emu/emu_runtime.cpp implements the runtime calls we use, and
 * kernels/emu/emu_exec.cpp runs launches: one fiber per CUDA thread, one block at a time per OS
 * thread, blocks spread over a pool of OS threads.
 *
 * What this header provides in place of the compiler built-ins: threadIdx, blockIdx, blockDim,
 * gridDim, warpSize; __syncthreads (and _count/_and/_or), __syncwarp, the shuffle, vote, match-free
 * reduce intrinsics (*_sync only); atomics; __ldg and the load/store cache hints; the math and
 * bit intrinsics kernels use; host versions of the device-only half intrinsics; the emulated
 * PTX instructions behind kernels/cuda/ptx.cuh (emu_ptx.cpp); the project's SL_LAUNCH /
 * SL_SHARED / SL_DYNAMIC_SHARED / SL_NOINLINE macros (kernels/cuda/common.cuh has their nvcc forms).
 *
 * Every barrier, warp intrinsic and atomic records its caller's file:line (default arguments of
 * __builtin_FILE/__builtin_LINE), so errors and hangs are reported at the kernel's source line.
 */
#ifndef SL_CUDA_EMU_H
#define SL_CUDA_EMU_H

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "cuda_emu.h: compile the .cu file as C++17 (g++ -x c++ -std=c++17)"
#endif
#if defined(__CUDACC__)
#error "cuda_emu.h is for g++; nvcc compiles the kernels natively"
#endif
#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

#define SL_CUDA_EMU 1

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <tuple>
#include <type_traits>
#include <utility>

/* ---- qualifiers ------------------------------------------------------------------------------ */
/* The CUDA headers define __global__/__device__/__host__/__constant__ as nothing for a host
 * compiler. A block runs on one OS thread, so a static thread_local is per-block storage; it is
 * neither poisoned nor bounds-checked: kernels use SL_SHARED (README). */
#undef __shared__
#define __shared__ static thread_local
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#define SL_NOINLINE __attribute__((noinline)) /* __noinline__ would clash with GCC's own spelling */

/* ---- the emulator's interface (emu_exec.cpp) ------------------------------------------------- */
#define SL_EMU_LOC const char *sl_emu_file = __builtin_FILE(), int sl_emu_line = __builtin_LINE()

namespace sl_emu {

/* What device code reads of the running CUDA thread; set for the fiber that runs. */
struct thread_view {
    uint3 thread_idx, block_idx;
    dim3 block_dim, grid_dim;
};
extern __thread const thread_view *cur; /* NULL outside a kernel */

enum bar_kind { BAR_SYNC, BAR_COUNT, BAR_AND, BAR_OR };
enum warp_kind {
    W_SYNCWARP, W_SHFL, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_BALLOT, W_ANY, W_ALL,
    W_RED_ADD, W_RED_MIN_U, W_RED_MAX_U, W_RED_MIN_S, W_RED_MAX_S, W_RED_AND, W_RED_OR, W_RED_XOR,
    W_EXEC, /* a warp-wide PTX instruction (mma.sync, ldmatrix): emu_internal.h's warp_collective */
};

/* Block barrier: returns the count/and/or of pred over the block (1 for BAR_SYNC). */
int block_barrier(int kind, int pred, const char *file, int line);
/* Warp collective: every non-exited lane of mask posts value; the last to arrive computes. */
uint64_t warp_op(int kind, unsigned mask, uint64_t value, int arg, int width, const char *file,
                 int line);
unsigned active_mask(void);
/* Lets the other threads of the block run (after an atomic, in __nanosleep), so that spin
 * loops progress. */
void yield(const char *file, int line);
void *shared_static(const void *tag, size_t bytes, size_t align, const char *name,
                    const char *file, int line);
void *shared_dynamic(void);
[[noreturn]] void trap(const char *what, const char *file, int line);

struct launch_info {
    const char *kernel, *file; /* the launch site */
    int line;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const void *fn;
    void (*run)(void *job); /* runs one CUDA thread's kernel body */
    void *job;
    int n_ptrs;             /* pointer arguments, checked to be device memory */
    const void *const *ptrs;
    const int *ptr_index;
};
/* Runs the grid to completion (launches are synchronous); a bad configuration sets the error
 * cudaGetLastError returns, like a failed <<<>>> launch. */
void launch(const launch_info &li);

template <class... P> struct job {
    void (*fn)(P...);
    std::tuple<std::decay_t<P>...> args;
    static void run(void *self) {
        job *j = static_cast<job *>(self);
        std::apply(j->fn, j->args); /* each thread gets its own copies of the parameters */
    }
};
template <class To> inline To implicit(To v) { return v; }

template <class... P, class... A>
inline void launch_kernel(const char *name, const char *file, int line, dim3 grid, dim3 block,
                          size_t smem, cudaStream_t stream, void (*fn)(P...), A &&...a) {
    static_assert(sizeof...(P) == sizeof...(A), "SL_LAUNCH: wrong number of kernel arguments");
    job<P...> j{fn,
                std::tuple<std::decay_t<P>...>(implicit<std::decay_t<P>>(std::forward<A>(a))...)};
    const void *ptrs[sizeof...(P) + 1];
    int index[sizeof...(P) + 1];
    int n = 0, k = 0;
    std::apply(
        [&](const auto &...v) {
            auto one = [&](const auto &x) {
                if constexpr (std::is_pointer_v<std::decay_t<decltype(x)>>) {
                    ptrs[n] = (const void *)x; /* C cast: also drops volatile */
                    index[n++] = k;
                }
                k++;
            };
            (one(v), ...);
        },
        j.args);
    launch_info li{name, file, line, grid, block, smem, stream, reinterpret_cast<const void *>(fn),
                   &job<P...>::run, &j, n, ptrs, index};
    launch(li);
}

template <class T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>,
                  "warp intrinsics take values of at most 8 bytes");
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof v);
    return u;
}
template <class T> inline T from_bits(uint64_t u) {
    T v;
    std::memcpy((void *)&v, &u, sizeof v);
    return v;
}

} /* namespace sl_emu */

/* ---- PTX instructions (kernels/cuda/ptx.cuh wraps them; emulated in emu_ptx.cpp) ------------
 * Each follows the PTX ISA's definition, fragment layouts included; each checks its operands
 * (alignment, shared or device memory, every lane present) and reports a misuse at the line. */
namespace sl_emu {
enum mma_type { MMA_F16, MMA_BF16 };
/* mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 d, a, b, c */
void mma_m16n8k16(int type, float *d, const uint32_t *a, const uint32_t *b, const float *c,
                  const char *file, int line);
/* ldmatrix.sync.aligned.m8n8.x{num}{.trans}.shared.b16 r, [row] */
void ldmatrix(int num, bool trans, uint32_t *r, const void *row, const char *file, int line);
/* cp.async.{ca,cg}.shared.global [dst], [src], bytes, src_bytes: queued, done at a wait */
void cp_async(void *dst, const void *src, int bytes, int src_bytes, const char *file, int line);
void cp_async_commit(const char *file, int line);
/* cp.async.wait_group pending: completes all but the `pending` most recent groups */
void cp_async_wait(int pending, const char *file, int line);
/* cp.async.bulk.prefetch.L2: checks the range (16-byte aligned, a positive multiple of 16 bytes,
 * in one device allocation) and records it while a test asks (sl_emu_prefetch_log); no copy */
void prefetch_l2(const void *p, uint32_t bytes, const char *file, int line);
} /* namespace sl_emu */

/* ---- the project's launch and shared-memory macros (nvcc forms in kernels/cuda/common.cuh) */
#define SL_LAUNCH(kernel, grid, block, smem, stream, ...)                                        \
    ::sl_emu::launch_kernel(#kernel, __FILE__, __LINE__, (grid), (block), (smem), (stream),       \
                            kernel, ##__VA_ARGS__)
/* SL_SHARED(float, tile, [32][33]) declares tile as __shared__ float tile[32][33] would: one
 * per block, poisoned with NaN bytes when the block starts, redzoned under ASan, aligned to
 * alignof(T) and below 16 bytes to no more: a 16-byte access to, say, a float array is then
 * misaligned (cp.async and ldmatrix report it, UBSan a float4 load). */
#define SL_SHARED(T, name, dims)                                                                 \
    static const char sl__shared_tag_##name = 0;                                                 \
    T(&name) dims = *reinterpret_cast<T(*) dims>(::sl_emu::shared_static(                        \
        &sl__shared_tag_##name, sizeof(T dims), alignof(T), #name, __FILE__, __LINE__))
/* T *name: the launch's dynamic shared memory (16-byte aligned, NaN-poisoned per block). */
#define SL_DYNAMIC_SHARED(T, name) T *name = static_cast<T *>(::sl_emu::shared_dynamic())

/* cuda_runtime.h has this overload only for nvcc */
template <class T>
inline cudaError_t cudaFuncSetAttribute(T *entry, cudaFuncAttribute attr, int value) {
    return ::cudaFuncSetAttribute(reinterpret_cast<const void *>(entry), attr, value);
}

/* ---- built-in variables ---------------------------------------------------------------------- */
#define threadIdx (::sl_emu::cur->thread_idx)
#define blockIdx (::sl_emu::cur->block_idx)
#define blockDim (::sl_emu::cur->block_dim)
#define gridDim (::sl_emu::cur->grid_dim)
inline constexpr int warpSize = 32;

/* ---- barriers -------------------------------------------------------------------------------- */
inline void __syncthreads(SL_EMU_LOC) {
    sl_emu::block_barrier(sl_emu::BAR_SYNC, 1, sl_emu_file, sl_emu_line);
}
inline int __syncthreads_count(int pred, SL_EMU_LOC) {
    return sl_emu::block_barrier(sl_emu::BAR_COUNT, pred != 0, sl_emu_file, sl_emu_line);
}
inline int __syncthreads_and(int pred, SL_EMU_LOC) {
    return sl_emu::block_barrier(sl_emu::BAR_AND, pred != 0, sl_emu_file, sl_emu_line);
}
inline int __syncthreads_or(int pred, SL_EMU_LOC) {
    return sl_emu::block_barrier(sl_emu::BAR_OR, pred != 0, sl_emu_file, sl_emu_line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, SL_EMU_LOC) {
    sl_emu::warp_op(sl_emu::W_SYNCWARP, mask, 0, 0, 32, sl_emu_file, sl_emu_line);
}
inline unsigned __activemask(void) { return sl_emu::active_mask(); }
inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __nanosleep(unsigned ns, SL_EMU_LOC) {
    (void)ns;
    sl_emu::yield(sl_emu_file, sl_emu_line);
}
[[noreturn]] inline void __trap(SL_EMU_LOC) { sl_emu::trap("__trap()", sl_emu_file, sl_emu_line); }
inline long long clock64(void) { return (long long)__builtin_ia32_rdtsc(); }

/* ---- warp intrinsics ------------------------------------------------------------------------- */
template <class T> inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
                                        SL_EMU_LOC) {
    return sl_emu::from_bits<T>(sl_emu::warp_op(sl_emu::W_SHFL, mask, sl_emu::to_bits(var),
                                                src_lane, width, sl_emu_file, sl_emu_line));
}
template <class T> inline T __shfl_up_sync(unsigned mask, T var, unsigned delta,
                                           int width = warpSize, SL_EMU_LOC) {
    return sl_emu::from_bits<T>(sl_emu::warp_op(sl_emu::W_SHFL_UP, mask, sl_emu::to_bits(var),
                                                (int)delta, width, sl_emu_file, sl_emu_line));
}
template <class T> inline T __shfl_down_sync(unsigned mask, T var, unsigned delta,
                                             int width = warpSize, SL_EMU_LOC) {
    return sl_emu::from_bits<T>(sl_emu::warp_op(sl_emu::W_SHFL_DOWN, mask, sl_emu::to_bits(var),
                                                (int)delta, width, sl_emu_file, sl_emu_line));
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask,
                                            int width = warpSize, SL_EMU_LOC) {
    return sl_emu::from_bits<T>(sl_emu::warp_op(sl_emu::W_SHFL_XOR, mask, sl_emu::to_bits(var),
                                                lane_mask, width, sl_emu_file, sl_emu_line));
}
inline unsigned __ballot_sync(unsigned mask, int pred, SL_EMU_LOC) {
    return (unsigned)sl_emu::warp_op(sl_emu::W_BALLOT, mask, pred != 0, 0, 32, sl_emu_file,
                                     sl_emu_line);
}
inline int __any_sync(unsigned mask, int pred, SL_EMU_LOC) {
    return (int)sl_emu::warp_op(sl_emu::W_ANY, mask, pred != 0, 0, 32, sl_emu_file, sl_emu_line);
}
inline int __all_sync(unsigned mask, int pred, SL_EMU_LOC) {
    return (int)sl_emu::warp_op(sl_emu::W_ALL, mask, pred != 0, 0, 32, sl_emu_file, sl_emu_line);
}
#define SL_EMU_REDUCE(name, T, kind)                                                             \
    inline T name(unsigned mask, T value, SL_EMU_LOC) {                                          \
        return (T)sl_emu::warp_op(kind, mask, (uint32_t)value, 0, 32, sl_emu_file, sl_emu_line); \
    }
SL_EMU_REDUCE(__reduce_add_sync, unsigned, sl_emu::W_RED_ADD)
SL_EMU_REDUCE(__reduce_add_sync, int, sl_emu::W_RED_ADD)
SL_EMU_REDUCE(__reduce_min_sync, unsigned, sl_emu::W_RED_MIN_U)
SL_EMU_REDUCE(__reduce_min_sync, int, sl_emu::W_RED_MIN_S)
SL_EMU_REDUCE(__reduce_max_sync, unsigned, sl_emu::W_RED_MAX_U)
SL_EMU_REDUCE(__reduce_max_sync, int, sl_emu::W_RED_MAX_S)
SL_EMU_REDUCE(__reduce_and_sync, unsigned, sl_emu::W_RED_AND)
SL_EMU_REDUCE(__reduce_or_sync, unsigned, sl_emu::W_RED_OR)
SL_EMU_REDUCE(__reduce_xor_sync, unsigned, sl_emu::W_RED_XOR)
#undef SL_EMU_REDUCE

/* ---- atomics: real atomics (blocks run in parallel), then a yield so spinning threads let the
 * others run ----------------------------------------------------------------------------------- */
namespace sl_emu {
template <class T, class F> inline T atomic_update(T *p, F f, const char *file, int line) {
    T old;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    T want = f(old);
    while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        want = f(old);
    yield(file, line);
    return old;
}
} /* namespace sl_emu */
#define SL_EMU_ATOMIC(name, T, expr)                                                             \
    inline T name(T *address, T val, SL_EMU_LOC) {                                               \
        return sl_emu::atomic_update(                                                            \
            address, [val](T old) -> T { return (expr); }, sl_emu_file, sl_emu_line);             \
    }
SL_EMU_ATOMIC(atomicAdd, int, old + val)
SL_EMU_ATOMIC(atomicAdd, unsigned, old + val)
SL_EMU_ATOMIC(atomicAdd, unsigned long long, old + val)
SL_EMU_ATOMIC(atomicAdd, float, old + val)
SL_EMU_ATOMIC(atomicAdd, double, old + val)
SL_EMU_ATOMIC(atomicAdd, __half, __hadd(old, val))
SL_EMU_ATOMIC(atomicAdd, __half2, __hadd2(old, val))
SL_EMU_ATOMIC(atomicAdd, __nv_bfloat16, __hadd(old, val))
SL_EMU_ATOMIC(atomicAdd, __nv_bfloat162, __hadd2(old, val))
SL_EMU_ATOMIC(atomicSub, int, old - val)
SL_EMU_ATOMIC(atomicSub, unsigned, old - val)
SL_EMU_ATOMIC(atomicExch, int, ((void)old, val))
SL_EMU_ATOMIC(atomicExch, unsigned, ((void)old, val))
SL_EMU_ATOMIC(atomicExch, unsigned long long, ((void)old, val))
SL_EMU_ATOMIC(atomicExch, float, ((void)old, val))
SL_EMU_ATOMIC(atomicMin, int, old < val ? old : val)
SL_EMU_ATOMIC(atomicMin, unsigned, old < val ? old : val)
SL_EMU_ATOMIC(atomicMin, long long, old < val ? old : val)
SL_EMU_ATOMIC(atomicMin, unsigned long long, old < val ? old : val)
SL_EMU_ATOMIC(atomicMax, int, old > val ? old : val)
SL_EMU_ATOMIC(atomicMax, unsigned, old > val ? old : val)
SL_EMU_ATOMIC(atomicMax, long long, old > val ? old : val)
SL_EMU_ATOMIC(atomicMax, unsigned long long, old > val ? old : val)
SL_EMU_ATOMIC(atomicInc, unsigned, old >= val ? 0u : old + 1)
SL_EMU_ATOMIC(atomicDec, unsigned, (old == 0 || old > val) ? val : old - 1)
SL_EMU_ATOMIC(atomicAnd, int, old & val)
SL_EMU_ATOMIC(atomicAnd, unsigned, old & val)
SL_EMU_ATOMIC(atomicAnd, unsigned long long, old & val)
SL_EMU_ATOMIC(atomicOr, int, old | val)
SL_EMU_ATOMIC(atomicOr, unsigned, old | val)
SL_EMU_ATOMIC(atomicOr, unsigned long long, old | val)
SL_EMU_ATOMIC(atomicXor, int, old ^ val)
SL_EMU_ATOMIC(atomicXor, unsigned, old ^ val)
SL_EMU_ATOMIC(atomicXor, unsigned long long, old ^ val)
#undef SL_EMU_ATOMIC
#define SL_EMU_CAS(T)                                                                            \
    inline T atomicCAS(T *address, T compare, T val, SL_EMU_LOC) {                               \
        T old = compare;                                                                         \
        __atomic_compare_exchange(address, &old, &val, false, __ATOMIC_SEQ_CST,                  \
                                  __ATOMIC_SEQ_CST);                                             \
        sl_emu::yield(sl_emu_file, sl_emu_line);                                                 \
        return old;                                                                              \
    }
SL_EMU_CAS(int)
SL_EMU_CAS(unsigned)
SL_EMU_CAS(unsigned long long)
SL_EMU_CAS(unsigned short)
#undef SL_EMU_CAS

/* ---- loads and stores with cache hints ------------------------------------------------------- */
template <class T> inline T __ldg(const T *p) { return *p; }
template <class T> inline T __ldcg(const T *p) { return *p; }
template <class T> inline T __ldca(const T *p) { return *p; }
template <class T> inline T __ldcs(const T *p) { return *p; }
template <class T> inline T __ldlu(const T *p) { return *p; }
template <class T> inline void __stcg(T *p, T v) { *p = v; }
template <class T> inline void __stcs(T *p, T v) { *p = v; }
template <class T> inline void __stwt(T *p, T v) { *p = v; }

/* ---- math and bit intrinsics (device-only in the CUDA headers) ----------------------------
 * The fast intrinsics (__expf, __sinf, ...) run at full precision here: on a GPU they are less
 * accurate, so kernel tests compare with tolerances that hold for the GPU (README). */
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float *s, float *c) { sincosf(x, s, c); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __saturatef(float x) {
    return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x == x ? x : 0.0f; /* NaN → 0 */
}
inline int __float2int_rn(float x) { return (int)rintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline unsigned __float2uint_rn(float x) { return (unsigned)rintf(x); }
inline float __int_as_float(int x) { return sl_emu::from_bits<float>((uint32_t)x); }
inline float __uint_as_float(unsigned x) { return sl_emu::from_bits<float>(x); }
inline int __float_as_int(float x) { return (int)(uint32_t)sl_emu::to_bits(x); }
inline unsigned __float_as_uint(float x) { return (uint32_t)sl_emu::to_bits(x); }
inline long long __double_as_longlong(double x) { return (long long)sl_emu::to_bits(x); }
inline double __longlong_as_double(long long x) { return sl_emu::from_bits<double>((uint64_t)x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint64_t v = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++)
        r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)((v << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)(v >> (shift & 31));
}
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
#define SL_EMU_MINMAX(T)                                                                         \
    inline T min(T a, T b) { return a < b ? a : b; }                                             \
    inline T max(T a, T b) { return a > b ? a : b; }
SL_EMU_MINMAX(int)
SL_EMU_MINMAX(unsigned)
SL_EMU_MINMAX(long)
SL_EMU_MINMAX(unsigned long)
SL_EMU_MINMAX(long long)
SL_EMU_MINMAX(unsigned long long)
#undef SL_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

/* ---- device-only half-precision intrinsics (cuda_fp16.h/cuda_bf16.h host code lacks them) --
 * Computed in f32 (f64 for fma) and rounded once more to half: equal to the GPU's result except
 * in rare double-rounding cases, which tolerances cover. */
inline __half __hfma(__half a, __half b, __half c) {
    return __double2half(
        fma((double)__half2float(a), (double)__half2float(b), (double)__half2float(c)));
}
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
    return __halves2half2(__hfma(__low2half(a), __low2half(b), __low2half(c)),
                          __hfma(__high2half(a), __high2half(b), __high2half(c)));
}
inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    return __double2bfloat16(fma((double)__bfloat162float(a), (double)__bfloat162float(b),
                                 (double)__bfloat162float(c)));
}
#define SL_EMU_HALF_FN(name, name2, f)                                                           \
    inline __half name(__half x) { return __float2half(f(__half2float(x))); }                    \
    inline __nv_bfloat16 name(__nv_bfloat16 x) {                                                 \
        return __float2bfloat16(f(__bfloat162float(x)));                                         \
    }                                                                                            \
    inline __half2 name2(__half2 x) {                                                            \
        return __floats2half2_rn(f(__low2float(x)), f(__high2float(x)));                         \
    }
SL_EMU_HALF_FN(hexp, h2exp, expf)
SL_EMU_HALF_FN(hlog, h2log, logf)
SL_EMU_HALF_FN(hsqrt, h2sqrt, sqrtf)
SL_EMU_HALF_FN(hrsqrt, h2rsqrt, rsqrtf)
SL_EMU_HALF_FN(hrcp, h2rcp, 1.0f /)
#undef SL_EMU_HALF_FN

#endif
