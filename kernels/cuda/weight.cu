/* weight.cu — weights in device memory (cuda.h): for now the logical layout of kernels/qw.h,
 * copied as it is. The physical repack for the matmul kernels (interleaved codes, tiled
 * scales) replaces the copy later; the embedding gather reads this layout.
 *
 * Row sizes are computed here rather than with sl_qw_row_bytes: sluice_cuda sits below the
 * library that holds kernels/qw.c and must not call back into it.
 */
#include "common.cuh"
#include "cuda.h"

/* Device copy of `bytes` bytes of host memory, or NULL when out of device memory. */
static void *upload(const void *host, size_t bytes) {
    void *d = nullptr;
    cudaError_t e = cudaMalloc(&d, bytes);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError(); /* not sticky: the caller reports running out */
        return nullptr;
    }
    SL_CUDA_CHECK(e);
    SL_CUDA_CHECK(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    return d;
}

extern "C" int sl_cuda_weight_init(sl_cuda_weight *dw, const sl_qw *w) {
    SL_CUDA_REQUIRE(dw && w && w->rows > 0 && w->cols > 0);
    *dw = sl_cuda_weight{};
    dw->fmt = w->fmt;
    dw->rows = w->rows;
    dw->cols = w->cols;
    const size_t n = (size_t)w->rows * (size_t)w->cols;
    switch (w->fmt) {
    case SL_WF_F32:
    case SL_WF_F16:
    case SL_WF_BF16:
        SL_CUDA_REQUIRE(w->data);
        dw->data = upload(w->data, n * (w->fmt == SL_WF_F32 ? 4 : 2));
        if (!dw->data) goto fail;
        return 0;
    case SL_WF_QW8:
    case SL_WF_QW4: {
        SL_CUDA_REQUIRE(w->codes && w->scales && w->group > 0 && w->cols % w->group == 0);
        SL_CUDA_REQUIRE(w->fmt == SL_WF_QW8 || w->cols % 2 == 0);
        const size_t groups = (size_t)w->rows * (size_t)(w->cols / w->group);
        dw->group = w->group;
        dw->codes = upload(w->codes, w->fmt == SL_WF_QW8 ? n : n / 2);
        if (!dw->codes) goto fail;
        dw->scales = static_cast<float *>(upload(w->scales, groups * sizeof(float)));
        if (!dw->scales) goto fail;
        if (w->offsets) {
            dw->offsets = static_cast<float *>(upload(w->offsets, groups * sizeof(float)));
            if (!dw->offsets) goto fail;
        }
        return 0;
    }
    }
    SL_CUDA_REQUIRE(!"unknown weight format");
fail:
    sl_cuda_weight_deinit(dw);
    return -1;
}

extern "C" void sl_cuda_weight_deinit(sl_cuda_weight *dw) {
    if (!dw) return;
    SL_CUDA_CHECK(cudaFree(dw->data));
    SL_CUDA_CHECK(cudaFree(dw->codes));
    SL_CUDA_CHECK(cudaFree(dw->scales));
    SL_CUDA_CHECK(cudaFree(dw->offsets));
    *dw = sl_cuda_weight{};
}
