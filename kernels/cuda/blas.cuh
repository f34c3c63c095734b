/* blas.cuh — the cuBLAS entry points sluice calls, opened at first use rather than linked.
 *
 * Linking libcublas makes every process that loads sluice (the server, `sluice tokenize`, each
 * test) pay for the dynamic loader's relocation of libcublas and libcublasLt at start-up: about
 * 0.35 s and 360k relocations on the CI machine, with or without a GPU. The library is instead
 * opened by the first sl_blas() call — the CUDA backend's creation, or the first F16 matmul.
 * Under the emulator the table holds its CPU cuBLAS (kernels/emu/emu_blas.cpp).
 *
 *   const sl_blas_fns *b = sl_blas();   the functions, or nullptr when libcublas cannot be
 *                                       opened; sl_blas_error() then says why. Thread-safe.
 */
#ifndef SL_CUDA_BLAS_CUH
#define SL_CUDA_BLAS_CUH

#include <cublas_v2.h>

#include "common.cuh"

struct sl_blas_fns {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSgemm_v2) sgemm;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                              const void *, const void *, cudaDataType, int, const void *,
                              cudaDataType, int, const void *, void *, cudaDataType, int,
                              cublasComputeType_t, cublasGemmAlgo_t); /* C++ overloads it */
};

const sl_blas_fns *sl_blas();
const char *sl_blas_error();

/* the table, or abort with why it cannot be had (for callers that cannot fail softly) */
inline const sl_blas_fns &sl_blas_required() {
    const sl_blas_fns *b = sl_blas();
    if (!b) sl__cuda_fail(sl_blas_error(), -1, __func__, __FILE__, __LINE__);
    return *b;
}

/* aborts with the statement and function, file:line unless the call returns success */
#define SL_BLAS_CHECK(call)                                                                      \
    do {                                                                                         \
        cublasStatus_t st_ = (call);                                                             \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                        \
            sl__cuda_fail(#call " == CUBLAS_STATUS_SUCCESS", -1, __func__, __FILE__, __LINE__);  \
    } while (0)

#endif
