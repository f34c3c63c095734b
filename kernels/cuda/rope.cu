/* rope.cu — rotary position embedding in place, NORM (adjacent pairs) and NEOX (halves), with
 * linear frequency scaling and Llama 3.1 rope_freqs divisors (ops.h).
 *
 * One thread per (token, head, pair): blockIdx.x is the token, threadIdx.x the pair, and the
 * heads are spread over threadIdx.y and blockIdx.y; a block holds as many heads as fit in
 * HEAD_THREADS threads (one head per block row when n_rot/2 >= HEAD_THREADS).
 * θ is formed exactly as the CPU reference forms it (θ = pos, then θ *= base^(−2/n_rot) once
 * per pair index, all in f32), so the angles agree bit for bit; only sin/cos may differ in
 * their last bits.
 */
#include <math.h>

#include "common.cuh"
#include "ops.h"

#define HEAD_THREADS 256
#define MAX_ROT 1024 /* as the CPU backend */

static __global__ void rope_kernel(float *x, const int32_t *__restrict__ pos,
                                   const float *__restrict__ freqs, int H, int head_dim,
                                   int neox, float theta_scale, float freq_scale) {
    const int h = blockIdx.y * blockDim.y + threadIdx.y;
    if (h >= H) return; /* no barrier in this kernel: leaving early is safe */
    const int i = threadIdx.x, half = blockDim.x;
    const int64_t t = blockIdx.x;
    float theta = (float)pos[t];
    for (int k = 0; k < i; k++) theta *= theta_scale;
    const float ff = freqs ? freqs[i] : 1.0f;
    float s, c;
    sincosf(freq_scale * (theta / ff), &s, &c);
    float *xh = x + (t * H + h) * head_dim;
    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const float x0 = xh[i0], x1 = xh[i1];
    xh[i0] = x0 * c - x1 * s;
    xh[i1] = x0 * s + x1 * c;
}

static void launch_rope(float *x, const int32_t *pos, int T, int H, int head_dim,
                        const sl_rope_params *rp, cudaStream_t stream) {
    const int half = rp->n_rot / 2;
    const int heads = (int)sl_min64(H, half >= HEAD_THREADS ? 1 : HEAD_THREADS / half);
    const dim3 grid((unsigned)T, sl_div_up(H, heads)), block((unsigned)half, (unsigned)heads);
    const float theta_scale = powf(rp->freq_base, -2.0f / (float)rp->n_rot);
    SL_LAUNCH(rope_kernel, grid, block, 0, stream, x, pos, rp->freqs, H, head_dim,
              rp->mode == SL_ROPE_NEOX, theta_scale, rp->freq_scale);
    SL_CUDA_CHECK(cudaGetLastError());
}

extern "C" void sl_cuda_rope(float *x, const int32_t *pos, int T, int H, int head_dim,
                             const sl_rope_params *rp, sl_cuda_stream stream) {
    SL_CUDA_REQUIRE(x && pos && rp && T >= 0 && H > 0 && head_dim > 0);
    SL_CUDA_REQUIRE(rp->n_rot >= 0 && rp->n_rot % 2 == 0 && rp->n_rot <= head_dim &&
                    rp->n_rot <= MAX_ROT);
    SL_CUDA_REQUIRE(rp->mode == SL_ROPE_NORM || rp->mode == SL_ROPE_NEOX);
    SL_CUDA_REQUIRE(H <= 65535); /* gridDim.y */
    if (T == 0 || rp->n_rot == 0) return;
    launch_rope(x, pos, T, H, head_dim, rp, stream);
}
