/* emu_ptx.cpp — the PTX instructions kernels use through kernels/cuda/ptx.cuh, run on the CPU.
 *
 * Register fragments follow the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point
 * type"; "ldmatrix"), with groupID = lane >> 2 and tid = lane % 4; a .b32 register holds two
 * 16-bit elements, the lower-numbered one in its low half:
 *   mma A (16×16, row):  a[0] = A[g][2t..2t+1]    a[1] = A[g+8][2t..2t+1]
 *                        a[2] = A[g][2t+8..2t+9]  a[3] = A[g+8][2t+8..2t+9]
 *   mma B (16×8, col):   b[0] = B[2t..2t+1][g]    b[1] = B[2t+8..2t+9][g]
 *   mma C, D (16×8 f32): c[0] = C[g][2t]  c[1] = C[g][2t+1]  c[2] = C[g+8][2t]  c[3] = C[g+8][2t+1]
 *   ldmatrix m8n8 .b16:  lanes 8i..8i+7 give the addresses of rows 0..7 of matrix i (16 bytes
 *                        each, 16-byte aligned); r[i] = M_i[g][2t..2t+1], or with .trans
 *                        M_i[2t][g] | M_i[2t+1][g] << 16 (the matrix read column-major).
 * These layouts are the emulator's reading of the ISA; tests/kernels/test_cuda_ptx.c checks them
 * on a real GPU as well (kernels/emu/README.md).
 *
 * The mma products are exact (16-bit inputs) and summed in f64 with C, then rounded once to
 * f32; a tensor core sums in another order and precision, so results agree within tolerance.
 *
 * cp.async: a copy is only recorded when issued, and done when a wait_group covers its group,
 * the latest moment a GPU may complete it; reading the destination before the wait (or another
 * thread reading it without wait + barrier) sees the poisoned (NaN) shared memory.
 *
 * cp.async.bulk.prefetch.L2: no data moves; its range is checked, and recorded while a test
 * asks (sl_emu_prefetch_log), so tests can tell what a kernel asked to prefetch.
 */
#include <stdio.h>
#include <string.h>

#include <mutex>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_emu.h"
#include "emu.h"
#include "emu_internal.h"

namespace sl_emu {
namespace {

/* ---- mma.sync.m16n8k16 -------------------------------------------------------------------- */

struct mma_rec {
    const uint32_t *a, *b;
    const float *c;
    float *d;
};

template <int TYPE> double elem(uint32_t reg, int hi) {
    const uint16_t bits = (uint16_t)(hi ? reg >> 16 : reg & 0xffff);
    if (TYPE == MMA_F16) {
        __half_raw raw;
        raw.x = bits;
        return (double)__half2float(__half(raw));
    }
    const uint32_t f = (uint32_t)bits << 16;
    float v;
    memcpy(&v, &f, 4);
    return (double)v;
}

template <int TYPE> void mma_exec(void *const *records, const char *, int) {
    double A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        const mma_rec &r = *static_cast<const mma_rec *>(records[l]);
        const int g = l >> 2, t = l & 3;
        for (int h = 0; h < 2; h++) {
            A[g][2 * t + h] = elem<TYPE>(r.a[0], h);
            A[g + 8][2 * t + h] = elem<TYPE>(r.a[1], h);
            A[g][2 * t + 8 + h] = elem<TYPE>(r.a[2], h);
            A[g + 8][2 * t + 8 + h] = elem<TYPE>(r.a[3], h);
            B[2 * t + h][g] = elem<TYPE>(r.b[0], h);
            B[2 * t + 8 + h][g] = elem<TYPE>(r.b[1], h);
            C[g][2 * t + h] = r.c[h];
            C[g + 8][2 * t + h] = r.c[2 + h];
        }
    }
    /* every input is read before any result is written: d may be c */
    for (int l = 0; l < 32; l++) {
        const mma_rec &r = *static_cast<const mma_rec *>(records[l]);
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < 4; i++) {
            const int m = g + (i >> 1) * 8, n = 2 * t + (i & 1);
            double s = C[m][n];
            for (int k = 0; k < 16; k++) s += A[m][k] * B[k][n];
            r.d[i] = (float)s;
        }
    }
}

/* ---- ldmatrix ----------------------------------------------------------------------------- */

struct ldm_rec {
    const void *row;
    uint32_t *r;
};

template <int NUM, bool TRANS>
void ldmatrix_exec(void *const *records, const char *file, int line) {
    uint16_t M[NUM][8][8];
    for (int i = 0; i < NUM; i++)
        for (int j = 0; j < 8; j++) {
            const int l = 8 * i + j;
            const void *p = static_cast<const ldm_rec *>(records[l])->row;
            if ((uintptr_t)p & 15)
                kernel_fail("ldmatrix at %s:%d: lane %d's row address %p is not 16-byte aligned",
                            file, line, l, p);
            if (!in_shared(p, 16))
                kernel_fail("ldmatrix at %s:%d: lane %d's row address %p does not point to 16 "
                            "bytes of the block's shared memory",
                            file, line, l, p);
            memcpy(M[i][j], p, 16);
        }
    for (int l = 0; l < 32; l++) {
        const ldm_rec &r = *static_cast<const ldm_rec *>(records[l]);
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < NUM; i++) {
            const uint16_t lo = TRANS ? M[i][2 * t][g] : M[i][g][2 * t];
            const uint16_t hi = TRANS ? M[i][2 * t + 1][g] : M[i][g][2 * t + 1];
            r.r[i] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}

template <int NUM> warp_exec_fn ldmatrix_fn(bool trans) {
    return trans ? ldmatrix_exec<NUM, true> : ldmatrix_exec<NUM, false>;
}

} /* namespace */

void mma_m16n8k16(int type, float *d, const uint32_t *a, const uint32_t *b, const float *c,
                  const char *file, int line) {
    mma_rec rec{a, b, c, d};
    if (type == MMA_F16)
        warp_collective("mma.sync.m16n8k16.f16", mma_exec<MMA_F16>, &rec, file, line);
    else
        warp_collective("mma.sync.m16n8k16.bf16", mma_exec<MMA_BF16>, &rec, file, line);
}

void ldmatrix(int num, bool trans, uint32_t *r, const void *row, const char *file, int line) {
    ldm_rec rec{row, r};
    static const char *const names[2][3] = {
        {"ldmatrix.m8n8.x1", "ldmatrix.m8n8.x2", "ldmatrix.m8n8.x4"},
        {"ldmatrix.m8n8.x1.trans", "ldmatrix.m8n8.x2.trans", "ldmatrix.m8n8.x4.trans"}};
    const int k = num == 1 ? 0 : num == 2 ? 1 : 2;
    const warp_exec_fn fn = num == 1 ? ldmatrix_fn<1>(trans)
                            : num == 2 ? ldmatrix_fn<2>(trans)
                                       : ldmatrix_fn<4>(trans);
    warp_collective(names[trans][k], fn, &rec, file, line);
}

/* ---- cp.async ----------------------------------------------------------------------------- */

void cp_async(void *dst, const void *src, int bytes, int src_bytes, const char *file, int line) {
    async_state &as = thread_async();
    if (bytes != 4 && bytes != 8 && bytes != 16)
        kernel_fail("cp.async at %s:%d: copy size %d is not 4, 8 or 16", file, line, bytes);
    if (src_bytes < 0 || src_bytes > bytes)
        kernel_fail("cp.async at %s:%d: source size %d is outside [0, %d]", file, line, src_bytes,
                    bytes);
    if (((uintptr_t)dst | (uintptr_t)src) & (uintptr_t)(bytes - 1))
        kernel_fail("cp.async at %s:%d: dst %p or src %p is not %d-byte aligned", file, line, dst,
                    src, bytes);
    if (!in_shared(dst, (size_t)bytes))
        kernel_fail("cp.async at %s:%d: dst %p does not point to %d bytes of the block's shared "
                    "memory",
                    file, line, dst, bytes);
    if (src_bytes > 0 && device_bytes_from(src) < src_bytes)
        kernel_fail("cp.async at %s:%d: src %p does not point to %d bytes of device memory "
                    "(cudaMalloc)",
                    file, line, src, src_bytes);
    as.copies.push_back(async_copy{dst, src, bytes, src_bytes, 0});
}

void cp_async_commit(const char *, int) {
    async_state &as = thread_async();
    as.committed++;
    for (async_copy &c : as.copies)
        if (c.group == 0) c.group = as.committed;
}

void cp_async_wait(int pending, const char *file, int line) {
    async_state &as = thread_async();
    if (pending < 0)
        kernel_fail("cp.async.wait_group at %s:%d: %d groups", file, line, pending);
    const int last = as.committed - pending; /* groups 1..last complete now */
    size_t keep = 0;
    for (size_t i = 0; i < as.copies.size(); i++) {
        const async_copy &c = as.copies[i];
        if (c.group != 0 && c.group <= last) {
            if (c.src_bytes) memcpy(c.dst, c.src, (size_t)c.src_bytes);
            memset((char *)c.dst + c.src_bytes, 0, (size_t)(c.bytes - c.src_bytes));
        } else {
            as.copies[keep++] = c;
        }
    }
    as.copies.resize(keep);
}

/* ---- cp.async.bulk.prefetch.L2 ------------------------------------------------------------ */

namespace {
/* sl_emu_prefetch_log's recording: the caller's arrays, or none */
std::mutex log_m;
const void **log_ptrs;
unsigned *log_sizes;
int log_cap, log_n;
} /* namespace */

void prefetch_l2(const void *p, uint32_t bytes, const char *file, int line) {
    if (bytes == 0 || bytes % 16)
        kernel_fail("cp.async.bulk.prefetch at %s:%d: size %u is not a positive multiple of 16",
                    file, line, bytes);
    if ((uintptr_t)p % 16)
        kernel_fail("cp.async.bulk.prefetch at %s:%d: %p is not 16-byte aligned", file, line, p);
    if (device_bytes_from(p) < (int64_t)bytes)
        kernel_fail("cp.async.bulk.prefetch at %s:%d: %p does not point to %u bytes of device "
                    "memory (cudaMalloc)",
                    file, line, p, bytes);
    std::lock_guard<std::mutex> lk(log_m);
    if (!log_cap) return;
    if (log_n < log_cap) log_ptrs[log_n] = p, log_sizes[log_n] = bytes;
    log_n++;
}

} /* namespace sl_emu */

extern "C" int sl_emu_prefetch_log(const void **ptrs, unsigned *sizes, int cap) {
    std::lock_guard<std::mutex> lk(sl_emu::log_m);
    const int n = sl_emu::log_n;
    sl_emu::log_ptrs = ptrs, sl_emu::log_sizes = sizes;
    sl_emu::log_cap = ptrs && sizes && cap > 0 ? cap : 0, sl_emu::log_n = 0;
    return n;
}
