/* runtime.cu — device memory and synchronization for the C side (cuda.h), and the CUDA error
 * reporter every .cu uses (common.cuh). */
#include <stdio.h>
#include <stdlib.h>

#include "common.cuh"
#include "cuda.h"

extern "C" void sl__cuda_fail(const char *stmt, int err, const char *func, const char *file,
                              int line) {
    if (err < 0)
        fprintf(stderr, "sluice: fatal: check failed: %s in %s at %s:%d\n", stmt, func, file, line);
    else
        fprintf(stderr, "sluice: fatal: CUDA error %s (%s): %s in %s at %s:%d\n",
                cudaGetErrorName((cudaError_t)err), cudaGetErrorString((cudaError_t)err), stmt,
                func, file, line);
    fflush(stderr);
    abort();
}

extern "C" void *sl_cuda_malloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) return NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError(); /* not sticky: the caller decides what running out means */
        return NULL;
    }
    SL_CUDA_CHECK(e);
    return p;
}

extern "C" void sl_cuda_free(void *dev) {
    if (dev) SL_CUDA_CHECK(cudaFree(dev));
}

extern "C" void sl_cuda_upload(void *dev_dst, const void *host_src, size_t bytes) {
    if (bytes) SL_CUDA_CHECK(cudaMemcpy(dev_dst, host_src, bytes, cudaMemcpyHostToDevice));
}

extern "C" void sl_cuda_download(void *host_dst, const void *dev_src, size_t bytes) {
    if (bytes) SL_CUDA_CHECK(cudaMemcpy(host_dst, dev_src, bytes, cudaMemcpyDeviceToHost));
}

extern "C" void sl_cuda_memset(void *dev, int byte, size_t bytes) {
    if (bytes) SL_CUDA_CHECK(cudaMemset(dev, byte, bytes));
}

extern "C" void sl_cuda_sync(void) { SL_CUDA_CHECK(cudaDeviceSynchronize()); }
