/* blas.cu — cuBLAS opened at first use (blas.cuh): dlopen of the toolkit's libcublas by its
 * soname (the executable's run path, then the loader's), then by the toolkit's library folder
 * the build saw (SL_CUBLAS_DIR), and dlsym of the five entry points. */
#include <mutex>
#include <stdio.h>

#include "blas.cuh"
#include "cuda.h"

#ifndef SL_CUDA_EMU
#include <dlfcn.h>
#endif

namespace {

sl_blas_fns g_fns;
const sl_blas_fns *g_blas;
char g_err[512] = "cuBLAS was not opened yet";
std::once_flag g_once;

#define SL_STR2(x) #x
#define SL_STR(x) SL_STR2(x)

void open_blas() {
#ifdef SL_CUDA_EMU
    g_fns = {cublasCreate_v2, cublasDestroy_v2, cublasSetStream_v2, cublasSgemm_v2, cublasGemmEx};
    g_blas = &g_fns;
#else
    const char *soname = "libcublas.so." SL_STR(CUBLAS_VER_MAJOR);
    void *lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!lib) { /* the first failure's reason, before a second try replaces it */
        const char *why = dlerror();
        snprintf(g_err, sizeof g_err, "cannot open %s (CUDA %d's cuBLAS): %s", soname,
                 CUBLAS_VER_MAJOR, why ? why : "unknown error");
    }
#ifdef SL_CUBLAS_DIR
    if (!lib) lib = dlopen(SL_CUBLAS_DIR "/libcublas.so." SL_STR(CUBLAS_VER_MAJOR), RTLD_NOW | RTLD_LOCAL);
#endif
    if (!lib) return;
    struct {
        const char *name;
        void **slot;
    } syms[] = {{"cublasCreate_v2", (void **)&g_fns.create},
                {"cublasDestroy_v2", (void **)&g_fns.destroy},
                {"cublasSetStream_v2", (void **)&g_fns.set_stream},
                {"cublasSgemm_v2", (void **)&g_fns.sgemm},
                {"cublasGemmEx", (void **)&g_fns.gemm_ex}};
    for (auto &s : syms) {
        *s.slot = dlsym(lib, s.name);
        if (!*s.slot) {
            const char *why = dlerror();
            snprintf(g_err, sizeof g_err, "%s has no %s: %s", soname, s.name, why ? why : "not found");
            return; /* the library stays open: dlclose of cuBLAS is not worth the risk */
        }
    }
    g_blas = &g_fns;
#endif
}

} // namespace

const sl_blas_fns *sl_blas() {
    std::call_once(g_once, open_blas);
    return g_blas;
}

const char *sl_blas_error() { return g_blas ? "" : g_err; }

extern "C" const char *sl_cuda_blas_open(void) { return sl_blas() ? nullptr : sl_blas_error(); }
