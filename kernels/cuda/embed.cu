/* embed.cu — embedding gather: row tok[t] of a table, dequantized to f32 (ops.h).
 *
 * The table is an sl_cuda_weight in the logical qw.h layout: F32, F16, BF16, QW8 or QW4 (with or
 * without offsets). One kernel template over the format: a per-format decode of one element and
 * of four consecutive ones (the format's traits), nothing else differs.
 *
 * Grid: blockIdx.x is the token, blockIdx.y a slice of the row (at most MAX_SLICES of them, each
 * thread looping when the row is longer). Paths, picked by the launcher:
 *   - 4 elements per thread (one float4 store, one 16/8/4/2-byte load) when cols % 4 == 0, the
 *     group is a multiple of 4 (the four share a scale) and y is 16-byte aligned;
 *   - 1 element per thread otherwise.
 * Dequantization is s·c (+ o) with the multiply and add rounded separately (no FMA), the order of
 * sl_qw_dequant_row: the output equals the CPU reference bit for bit.
 * A token outside [0, rows) is a programming error: the kernel traps (on a GPU the launch then
 * fails with an error the next SL_CUDA_CHECK reports).
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"
#include "ops.h"

#define THREADS 256
#define MAX_SLICES 16

struct wview {
    const void *data, *codes;
    const float *scales, *offsets;
    int64_t cols;
    int group;
};

/* c·s (+ o), rounded as the CPU reference rounds */
static __device__ __forceinline__ float dq(float c, const wview &w, int64_t r, int64_t i) {
    const int64_t g = r * (w.cols / w.group) + i / w.group;
    const float v = __fmul_rn(w.scales[g], c);
    return w.offsets ? __fadd_rn(v, w.offsets[g]) : v;
}
static __device__ __forceinline__ float qw4_code(unsigned nib, const wview &w) {
    return (float)(w.offsets ? (int)nib : (int)nib - 8);
}

template <sl_wfmt F> struct fmt;

template <> struct fmt<SL_WF_F32> {
    static __device__ float one(const wview &w, int64_t r, int64_t i) {
        return static_cast<const float *>(w.data)[r * w.cols + i];
    }
    static __device__ float4 four(const wview &w, int64_t r, int64_t i) {
        const float *p = static_cast<const float *>(w.data) + r * w.cols + i;
        return *reinterpret_cast<const float4 *>(p);
    }
};
template <> struct fmt<SL_WF_F16> {
    static __device__ float one(const wview &w, int64_t r, int64_t i) {
        return __half2float(static_cast<const __half *>(w.data)[r * w.cols + i]);
    }
    static __device__ float4 four(const wview &w, int64_t r, int64_t i) {
        const __half2 *p =
            reinterpret_cast<const __half2 *>(static_cast<const __half *>(w.data) + r * w.cols + i);
        const float2 a = __half22float2(p[0]), b = __half22float2(p[1]);
        return make_float4(a.x, a.y, b.x, b.y);
    }
};
template <> struct fmt<SL_WF_BF16> {
    static __device__ float one(const wview &w, int64_t r, int64_t i) {
        return __bfloat162float(static_cast<const __nv_bfloat16 *>(w.data)[r * w.cols + i]);
    }
    static __device__ float4 four(const wview &w, int64_t r, int64_t i) {
        /* bf16 is the top half of an f32: widen by shifting */
        const uint2 u = *reinterpret_cast<const uint2 *>(
            static_cast<const uint16_t *>(w.data) + r * w.cols + i);
        return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                           __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u));
    }
};
template <> struct fmt<SL_WF_QW8> {
    static __device__ float one(const wview &w, int64_t r, int64_t i) {
        return dq((float)static_cast<const int8_t *>(w.codes)[r * w.cols + i], w, r, i);
    }
    static __device__ float4 four(const wview &w, int64_t r, int64_t i) {
        const char4 c =
            *reinterpret_cast<const char4 *>(static_cast<const int8_t *>(w.codes) + r * w.cols + i);
        return make_float4(dq((float)c.x, w, r, i), dq((float)c.y, w, r, i),
                           dq((float)c.z, w, r, i), dq((float)c.w, w, r, i));
    }
};
template <> struct fmt<SL_WF_QW4> {
    static __device__ float one(const wview &w, int64_t r, int64_t i) {
        const uint8_t b = static_cast<const uint8_t *>(w.codes)[(r * w.cols + i) / 2];
        return dq(qw4_code(i & 1 ? b >> 4 : b & 15, w), w, r, i);
    }
    static __device__ float4 four(const wview &w, int64_t r, int64_t i) {
        /* elements i..i+3: two bytes, low nibble first */
        const unsigned u = *reinterpret_cast<const uint16_t *>(
            static_cast<const uint8_t *>(w.codes) + (r * w.cols + i) / 2);
        return make_float4(dq(qw4_code(u & 15, w), w, r, i), dq(qw4_code(u >> 4 & 15, w), w, r, i),
                           dq(qw4_code(u >> 8 & 15, w), w, r, i),
                           dq(qw4_code(u >> 12 & 15, w), w, r, i));
    }
};

template <sl_wfmt F, int VEC>
static __global__ void __launch_bounds__(THREADS)
    embed_kernel(wview w, int64_t rows, const int32_t *__restrict__ tok, float *__restrict__ y) {
    const int64_t t = blockIdx.x;
    const int32_t r = tok[t];
    if (r < 0 || r >= rows) __trap();
    float *yt = y + t * w.cols;
    const int64_t n = w.cols / VEC, stride = (int64_t)gridDim.y * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; i < n; i += stride) {
        if constexpr (VEC == 4) reinterpret_cast<float4 *>(yt)[i] = fmt<F>::four(w, r, 4 * i);
        else yt[i] = fmt<F>::one(w, r, i);
    }
}

template <sl_wfmt F>
static void launch_embed(const sl_cuda_weight *tb, const int32_t *tok, float *y, int T,
                         cudaStream_t stream) {
    const bool quant = F == SL_WF_QW8 || F == SL_WF_QW4;
    const bool vec = tb->cols % 4 == 0 && (!quant || tb->group % 4 == 0) &&
                     ((uintptr_t)y & 15) == 0;
    const wview w{tb->data, tb->codes, tb->scales, tb->offsets, tb->cols, tb->group};
    const int64_t n = vec ? tb->cols / 4 : tb->cols;
    const unsigned threads = (unsigned)sl_min64(THREADS, sl_div_up(n, 32) * 32);
    const dim3 grid((unsigned)T, (unsigned)sl_min64(MAX_SLICES, sl_div_up(n, threads)));
    if (vec) SL_LAUNCH((embed_kernel<F, 4>), grid, threads, 0, stream, w, tb->rows, tok, y);
    else SL_LAUNCH((embed_kernel<F, 1>), grid, threads, 0, stream, w, tb->rows, tok, y);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl_cuda_embed(const sl_cuda_weight *table, const int32_t *tok, float *y, int T,
                              sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(table && tok && y && T >= 0 && table->rows > 0 && table->cols > 0);
    if (T == 0) return;
    switch (table->fmt) {
    case SL_WF_F32: launch_embed<SL_WF_F32>(table, tok, y, T, stream); return;
    case SL_WF_F16: launch_embed<SL_WF_F16>(table, tok, y, T, stream); return;
    case SL_WF_BF16: launch_embed<SL_WF_BF16>(table, tok, y, T, stream); return;
    case SL_WF_QW8: launch_embed<SL_WF_QW8>(table, tok, y, T, stream); return;
    case SL_WF_QW4: launch_embed<SL_WF_QW4>(table, tok, y, T, stream); return;
    }
    SL_CUDA_REQUIRE(!"unknown table format");
}
