/* emu_blas.cpp — the cuBLAS calls the project uses, on the CPU, for programs linked with the
 * emulator (never with libcublas). The prototypes are the toolkit's own (cublas_api.h).
 *
 *   cublasCreate / cublasDestroy / cublasSetStream / cublasGetStream (the _v2 entry points)
 *   cublasSgemm                 C = α·op(A)·op(B) + β·C, f32
 *   cublasGemmEx                the same with A, B and C typed: (A, B, C) = (16F, 16F, 16F|32F),
 *                               (16BF, 16BF, 16BF|32F) or (32F, 32F, 32F); computeType
 *                               CUBLAS_COMPUTE_32F (or _PEDANTIC); α, β float
 *   cublasGetStatusName / cublasGetStatusString
 *
 * Semantics are cuBLAS's: column-major matrices, op(X) = X or Xᵀ (CUBLAS_OP_C = Xᵀ for real
 * types), α and β host pointers (the default pointer mode; device pointer mode is not
 * emulated), C not read when β == 0 and A, B not read when α == 0 or k == 0. Bad sizes, leading
 * dimensions or operations return CUBLAS_STATUS_INVALID_VALUE, an unknown handle
 * CUBLAS_STATUS_NOT_INITIALIZED, a type or compute type not listed above
 * CUBLAS_STATUS_NOT_SUPPORTED (with a note on stderr), as cuBLAS does; a matrix that does not
 * lie in device memory aborts with a report (on a GPU it would be an illegal address).
 *
 * The products are summed in f64 and rounded once (a GPU sums in f32 in its own order), then
 * α·sum + β·C is formed in f32 and stored in C's type (round to nearest). Calls are synchronous,
 * like every emulated launch: the stream only has to be valid.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <set>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "emu_internal.h"

struct cublasContext {
    cudaStream_t stream;
};

namespace sl_emu {
namespace {

std::mutex blas_m;
std::set<cublasHandle_t> handles;

bool handle_valid(cublasHandle_t h) {
    std::lock_guard<std::mutex> lk(blas_m);
    return h && handles.count(h) != 0;
}

cublasStatus_t not_supported(const char *call, const char *what) {
    fprintf(stderr, "sluice-emu: %s: %s is not emulated (kernels/emu/emu_blas.cpp)\n", call, what);
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

[[noreturn]] void bad_matrix(const char *call, const char *name, const void *p, size_t bytes) {
    fprintf(stderr,
            "sluice-emu: error: %s: matrix %s at %p does not lie in device memory (cudaMalloc): "
            "it spans %zu bytes\n",
            call, name, p, bytes);
    fflush(stderr);
    abort();
}

size_t type_bytes(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

float load(const void *p, cudaDataType t, size_t i) {
    switch (t) {
    case CUDA_R_16F: return __half2float(static_cast<const __half *>(p)[i]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
    default: return static_cast<const float *>(p)[i];
    }
}

void store(void *p, cudaDataType t, size_t i, float v) {
    switch (t) {
    case CUDA_R_16F: static_cast<__half *>(p)[i] = __float2half_rn(v); break;
    case CUDA_R_16BF: static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v); break;
    default: static_cast<float *>(p)[i] = v; break;
    }
}

bool op_valid(cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

/* The one GEMM behind Sgemm and GemmEx; types already validated. */
cublasStatus_t gemm(const char *call, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, const float *alpha, const void *A, cudaDataType at,
                    int lda, const void *B, cudaDataType bt, int ldb, const float *beta, void *C,
                    cudaDataType ct, int ldc) {
    if (!handle_valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    const bool tA = ta != CUBLAS_OP_N, tB = tb != CUBLAS_OP_N;
    const int a_rows = tA ? k : m, b_rows = tB ? n : k; /* rows of A and B as stored */
    if (!op_valid(ta) || !op_valid(tb) || m < 0 || n < 0 || k < 0 ||
        lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) ||
        ldc < (m > 1 ? m : 1) || !alpha || !beta)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!stream_valid(h->stream)) {
        fprintf(stderr, "sluice-emu: %s: the handle's stream has been destroyed\n", call);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (device_bytes_from(alpha) >= 0 || device_bytes_from(beta) >= 0)
        return not_supported(call, "alpha or beta in device memory (CUBLAS_POINTER_MODE_DEVICE)");
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const float al = *alpha, be = *beta;
    const bool read_ab = k > 0 && al != 0.0f;

    /* every element a call touches lies in one allocation (column-major extents) */
    auto span = [](int rows, int cols, int ld, cudaDataType t) {
        return ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * type_bytes(t);
    };
    if (read_ab) {
        const size_t sa = tA ? span(k, m, lda, at) : span(m, k, lda, at);
        const size_t sb = tB ? span(n, k, ldb, bt) : span(k, n, ldb, bt);
        if (!A || device_bytes_from(A) < (int64_t)sa) bad_matrix(call, "A", A, sa);
        if (!B || device_bytes_from(B) < (int64_t)sb) bad_matrix(call, "B", B, sb);
    }
    const size_t sc = span(m, n, ldc, ct);
    if (!C || device_bytes_from(C) < (int64_t)sc) bad_matrix(call, "C", C, sc);

    /* op(A) as rows of k, op(B) as columns of k, both contiguous */
    std::vector<float> a, b;
    if (read_ab) {
        a.resize((size_t)m * (size_t)k);
        b.resize((size_t)n * (size_t)k);
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
                a[(size_t)i * k + p] =
                    load(A, at, tA ? (size_t)i * lda + p : (size_t)p * lda + i);
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++)
                b[(size_t)j * k + p] =
                    load(B, bt, tB ? (size_t)p * ldb + j : (size_t)j * ldb + p);
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float v = 0.0f;
            if (read_ab) {
                const float *ai = &a[(size_t)i * k], *bj = &b[(size_t)j * k];
                double s = 0.0;
                for (int p = 0; p < k; p++) s += (double)ai[p] * (double)bj[p];
                v = al * (float)s;
            }
            const size_t ci = (size_t)j * ldc + i;
            if (be != 0.0f) v += be * load(C, ct, ci);
            store(C, ct, ci, v);
        }
    return CUBLAS_STATUS_SUCCESS;
}

} /* namespace */
} /* namespace sl_emu */

using namespace sl_emu;

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    cublasHandle_t h = new cublasContext{nullptr};
    std::lock_guard<std::mutex> lk(blas_m);
    handles.insert(h);
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    {
        std::lock_guard<std::mutex> lk(blas_m);
        if (!handles.erase(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_valid(stream)) return CUBLAS_STATUS_INVALID_VALUE;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t *stream) {
    if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream) return CUBLAS_STATUS_INVALID_VALUE;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float *alpha,
                              const float *A, int lda, const float *B, int ldb, const float *beta,
                              float *C, int ldc) {
    return gemm("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, B,
                CUDA_R_32F, ldb, beta, C, CUDA_R_32F, ldc);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void *alpha,
                            const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
    (void)algo; /* a choice of implementation, not of result */
    if (!handle_valid(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (computeType != CUBLAS_COMPUTE_32F && computeType != CUBLAS_COMPUTE_32F_PEDANTIC)
        return not_supported("cublasGemmEx", "this computeType");
    const bool ab16 = Atype == Btype && (Atype == CUDA_R_16F || Atype == CUDA_R_16BF);
    const bool ok = ab16 ? (Ctype == Atype || Ctype == CUDA_R_32F)
                         : (Atype == CUDA_R_32F && Btype == CUDA_R_32F && Ctype == CUDA_R_32F);
    if (!ok) return not_supported("cublasGemmEx", "this combination of A, B and C types");
    return gemm("cublasGemmEx", handle, transa, transb, m, n, k,
                static_cast<const float *>(alpha), A, Atype, lda, B, Btype, ldb,
                static_cast<const float *>(beta), C, Ctype, ldc);
}

const char *cublasGetStatusName(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char *cublasGetStatusString(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    default: return "an error occurred";
    }
}
