/* ptx.cuh — the PTX instructions kernels use, each behind one wrapper: inline asm under nvcc,
 * the emulator's version (kernels/emu/emu_ptx.cpp) under g++. Kernels never write asm
 * themselves (kernels/emu/README.md, rule 5). Available from sm_80.
 *
 * Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with
 * g = lane >> 2, t = lane % 4, and a uint32_t register holding two 16-bit elements, the first
 * in its low half:
 *
 *   A (16×16, row-major):  a[0] = A[g][2t, 2t+1]     a[1] = A[g+8][2t, 2t+1]
 *                          a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
 *   B (16×8, "col"):       b[0] = B[2t, 2t+1][g]     b[1] = B[2t+8, 2t+9][g]
 *   C, D (16×8, f32):      c[0] = C[g][2t]     c[1] = C[g][2t+1]
 *                          c[2] = C[g+8][2t]   c[3] = C[g+8][2t+1]
 *
 *   sl_mma_m16n8k16_f16(d, a, b, c)    D = A·B + C, f16 inputs, f32 accumulate (d may be c);
 *       f16 subnormal inputs count at their value (qmm_kernel.cuh's two-level QW4 relies on it;
 *       test_cuda_ptx checks it on a GPU)
 *   sl_mma_m16n8k16_bf16(d, a, b, c)   the same with bf16 inputs
 *   sl_ldmatrix<NUM, TRANS>(r, row)    ldmatrix.sync.aligned.m8n8.x{NUM}{.trans}.shared.b16:
 *       NUM 8×8 matrices of 16-bit elements from shared memory; lanes 8i..8i+7 pass the
 *       addresses of rows 0..7 of matrix i (16 bytes each, 16-byte aligned; the other lanes'
 *       addresses are ignored for NUM < 4), and r[i] = M_i[g][2t, 2t+1], or with TRANS
 *       M_i[2t, 2t+1][g]. So, for A row-major in shared memory, lane l passes
 *       &A[l % 16][8 (l / 16)] to sl_ldmatrix<4, false> and gets a[0..3]; for B stored [k][n],
 *       lane l passes &B[l % 16][n0] to sl_ldmatrix<2, true> and gets b[0..1].
 *   sl_cp_async<BYTES>(dst, src, src_bytes = BYTES)   cp.async.ca.shared.global, BYTES 4, 8 or
 *       16: copies src (device) to dst (shared), both BYTES-aligned; bytes past src_bytes are
 *       zero-filled (src_bytes 0 reads nothing).
 *   sl_cp_async_cg(dst, src, src_bytes = 16)          cp.async.cg (16 bytes, bypasses L1)
 *   sl_cp_async_commit()      closes the calling thread's group of copies issued since the last
 *   sl_cp_async_wait<N>()     waits until at most N of the thread's groups are still in flight;
 *       its own copies are then visible to the thread, to the others after a __syncthreads.
 *
 *   sl_ldg_nc_v4(p)    ld.global.nc.v4.u32: 16 bytes of read-only device memory (16-byte
 *       aligned), issued where it is written: a volatile asm with a memory clobber, which the
 *       compiler may not sink towards its use (plain __ldg loads under a condition were sunk
 *       into the loop that used them, one memory latency per load: qmm.cu, first H100 run).
 *   sl_ldg_nc_v2(p)    the same for 8 bytes (8-byte aligned): ld.global.nc.v2.u32.
 *   sl_ldg_nc_b32(p)   the same for 4 bytes (4-byte aligned): ld.global.nc.u32.
 *   sl_ldg_nc_u16(p)   the same for 2 bytes (2-byte aligned), zero-extended: ld.global.nc.u16.
 *   sl_ldg_stream_v4(p) sl_ldg_nc_v4 for data read once (a weight streamed through): not kept
 *       in L1 (.L1::no_allocate), so it does not evict what the block reuses there.
 *   sl_prefetch_l2(p, bytes)  cp.async.bulk.prefetch.L2.global (sm_90; before it a
 *       prefetch.global.L2 per 128-byte line): asks L2 to fetch [p, p + bytes) of device memory,
 *       p 16-byte aligned, bytes a positive multiple of 16, all inside one allocation (the
 *       emulator checks it, and records it for tests: sl_emu_prefetch_log). A hint with no
 *       destination: nothing waits for it, and the loads that follow read what they would.
 *   sl_lop3<LUT>(a, b, c)  lop3.b32: any bitwise function of three words in one instruction,
 *       LUT the function's truth table over a = 0xF0, b = 0xCC, c = 0xAA (so (a & b) | c is
 *       (0xF0 & 0xCC) | 0xAA = 0xEA). b and c pass in registers: with both as immediates nvcc
 *       emits two instructions (a LOP3 takes one immediate), one per nibble mask in qmm_kernel.cuh.
 *
 * All 32 lanes of the warp execute mma and ldmatrix together (.sync.aligned): never under a
 * condition that differs within a warp, never after some lanes returned.
 *
 * The emulator's reading of these layouts is checked against a GPU by tests/kernels/
 * test_cuda_ptx.c (label gpu); until a GPU run has passed, treat them as unconfirmed.
 */
#ifndef SL_CUDA_PTX_CUH
#define SL_CUDA_PTX_CUH

#include <stdint.h>
#include <string.h>

#include "common.cuh"

/* the emulator reports misuse at the caller's line */
#ifdef SL_CUDA_EMU
#define SL_PTX_LOC , SL_EMU_LOC
#define SL_PTX_LOC_ONLY SL_EMU_LOC
#else
#define SL_PTX_LOC
#define SL_PTX_LOC_ONLY
#endif

static __device__ __forceinline__ void sl_mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4],
                                                           const uint32_t (&b)[2],
                                                           const float (&c)[4] SL_PTX_LOC) {
#ifdef SL_CUDA_EMU
    sl_emu::mma_m16n8k16(sl_emu::MMA_F16, d, a, b, c, sl_emu_file, sl_emu_line);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),
                   "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

static __device__ __forceinline__ void sl_mma_m16n8k16_bf16(float (&d)[4],
                                                            const uint32_t (&a)[4],
                                                            const uint32_t (&b)[2],
                                                            const float (&c)[4] SL_PTX_LOC) {
#ifdef SL_CUDA_EMU
    sl_emu::mma_m16n8k16(sl_emu::MMA_BF16, d, a, b, c, sl_emu_file, sl_emu_line);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),
                   "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

template <int NUM, bool TRANS>
static __device__ __forceinline__ void sl_ldmatrix(uint32_t (&r)[NUM],
                                                   const void *row SL_PTX_LOC) {
    static_assert(NUM == 1 || NUM == 2 || NUM == 4, "ldmatrix loads 1, 2 or 4 matrices");
#ifdef SL_CUDA_EMU
    sl_emu::ldmatrix(NUM, TRANS, r, row, sl_emu_file, sl_emu_line);
#else
    const unsigned p = (unsigned)__cvta_generic_to_shared(row);
    if constexpr (NUM == 1 && !TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
                     : "=r"(r[0])
                     : "r"(p)
                     : "memory");
    else if constexpr (NUM == 1)
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                     : "=r"(r[0])
                     : "r"(p)
                     : "memory");
    else if constexpr (NUM == 2 && !TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                     : "=r"(r[0]), "=r"(r[1])
                     : "r"(p)
                     : "memory");
    else if constexpr (NUM == 2)
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                     : "=r"(r[0]), "=r"(r[1])
                     : "r"(p)
                     : "memory");
    else if constexpr (!TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(p)
                     : "memory");
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(p)
                     : "memory");
#endif
}

#ifdef SL_CUDA_EMU
/* the emulator's read-only loads: the alignment checked, then a copy */
template <class V>
static inline V sl__emu_ldg(const void *p, const char *what, const char *file, int line) {
    if ((uintptr_t)p % sizeof(V)) sl_emu::trap(what, file, line);
    V v;
    memcpy(&v, p, sizeof v);
    return v;
}
#endif

static __device__ __forceinline__ uint4 sl_ldg_nc_v4(const void *p SL_PTX_LOC) {
#ifdef SL_CUDA_EMU
    return sl__emu_ldg<uint4>(p, "sl_ldg_nc_v4 at an address not 16-byte aligned", sl_emu_file, sl_emu_line);
#else
    uint4 v;
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p)
                 : "memory");
    return v;
#endif
}

static __device__ __forceinline__ uint4 sl_ldg_stream_v4(const void *p SL_PTX_LOC) {
#ifdef SL_CUDA_EMU
    return sl__emu_ldg<uint4>(p, "sl_ldg_stream_v4 at an address not 16-byte aligned", sl_emu_file, sl_emu_line);
#else
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p)
                 : "memory");
    return v;
#endif
}

static __device__ __forceinline__ uint2 sl_ldg_nc_v2(const void *p SL_PTX_LOC) {
#ifdef SL_CUDA_EMU
    return sl__emu_ldg<uint2>(p, "sl_ldg_nc_v2 at an address not 8-byte aligned", sl_emu_file, sl_emu_line);
#else
    uint2 v;
    asm volatile("ld.global.nc.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p) : "memory");
    return v;
#endif
}

static __device__ __forceinline__ uint32_t sl_ldg_nc_b32(const void *p SL_PTX_LOC) {
#ifdef SL_CUDA_EMU
    return sl__emu_ldg<uint32_t>(p, "sl_ldg_nc_b32 at an address not 4-byte aligned", sl_emu_file, sl_emu_line);
#else
    uint32_t v;
    asm volatile("ld.global.nc.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
#endif
}

static __device__ __forceinline__ uint32_t sl_ldg_nc_u16(const void *p SL_PTX_LOC) {
#ifdef SL_CUDA_EMU
    return sl__emu_ldg<uint16_t>(p, "sl_ldg_nc_u16 at an address not 2-byte aligned", sl_emu_file, sl_emu_line);
#else
    unsigned short v;
    asm volatile("ld.global.nc.u16 %0, [%1];\n" : "=h"(v) : "l"(p) : "memory");
    return v;
#endif
}

template <int LUT> static __device__ __forceinline__ uint32_t sl_lop3(uint32_t a, uint32_t b, uint32_t c) {
    static_assert(LUT >= 0 && LUT <= 255, "a truth table of three inputs");
#ifdef SL_CUDA_EMU
    uint32_t d = 0;
    for (int i = 0; i < 8; i++) /* minterm i: a, b, c = bits 2, 1, 0 of i */
        if (LUT >> i & 1) d |= (i & 4 ? a : ~a) & (i & 2 ? b : ~b) & (i & 1 ? c : ~c);
    return d;
#else
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, %4;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c), "n"(LUT));
    return d;
#endif
}

static __device__ __forceinline__ void sl_prefetch_l2(const void *p, uint32_t bytes SL_PTX_LOC) {
#ifdef SL_CUDA_EMU
    sl_emu::prefetch_l2(p, bytes, sl_emu_file, sl_emu_line);
#elif __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" : : "l"(p), "r"(bytes) : "memory");
#else
    const uintptr_t a = (uintptr_t)p, e = a + bytes; /* every 128-byte line from p's */
    for (uintptr_t l = a & ~(uintptr_t)127; l < e; l += 128)
        asm volatile("prefetch.global.L2 [%0];\n" : : "l"(l) : "memory");
#endif
}

template <int BYTES>
static __device__ __forceinline__ void sl_cp_async(void *dst, const void *src,
                                                   int src_bytes = BYTES SL_PTX_LOC) {
    static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
#ifdef SL_CUDA_EMU
    sl_emu::cp_async(dst, src, BYTES, src_bytes, sl_emu_file, sl_emu_line);
#else
    const unsigned p = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n"
                 :
                 : "r"(p), "l"(src), "n"(BYTES), "r"(src_bytes)
                 : "memory");
#endif
}

static __device__ __forceinline__ void sl_cp_async_cg(void *dst, const void *src,
                                                      int src_bytes = 16 SL_PTX_LOC) {
#ifdef SL_CUDA_EMU
    sl_emu::cp_async(dst, src, 16, src_bytes, sl_emu_file, sl_emu_line);
#else
    const unsigned p = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :
                 : "r"(p), "l"(src), "r"(src_bytes)
                 : "memory");
#endif
}

static __device__ __forceinline__ void sl_cp_async_commit(SL_PTX_LOC_ONLY) {
#ifdef SL_CUDA_EMU
    sl_emu::cp_async_commit(sl_emu_file, sl_emu_line);
#else
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N> static __device__ __forceinline__ void sl_cp_async_wait(SL_PTX_LOC_ONLY) {
    static_assert(N >= 0, "wait_group takes a count of groups");
#ifdef SL_CUDA_EMU
    sl_emu::cp_async_wait(N, sl_emu_file, sl_emu_line);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

#endif
