/* device.c — the backend a command runs its model on (`--device cpu|cuda`). */
#include <stdio.h>
#include <strings.h>

#include "../kernels/cpu/cpu.h"
#include "commands.h"
#ifdef SL_HAVE_CUDA
#include "../kernels/cuda/cuda.h"
#include "../kernels/cuda/cuda_backend.h"
#include "../kernels/cuda/matmul.h"
#endif

int sl_device_check(const char *cmd, const char *device, const char *cpu_act) {
    if (strcasecmp(cpu_act, "int8") && strcasecmp(cpu_act, "f32")) {
        fprintf(stderr, "sluice %s: --cpu-activations must be int8 or f32, got '%s'\n", cmd, cpu_act);
        return 2;
    }
    if (!strcasecmp(device, "cpu")) return 0;
    if (strcasecmp(device, "cuda")) {
        fprintf(stderr, "sluice %s: --device must be cpu or cuda, got '%s'\n", cmd, device);
        return 2;
    }
#ifdef SL_HAVE_CUDA
    if (sl_cuda_device_count() < 1) {
        fprintf(stderr, "sluice %s: --device cuda: no CUDA device found (use --device cpu)\n", cmd);
        return 2;
    }
    return 0;
#else
    fprintf(stderr,
            "sluice %s: --device cuda: this build has no CUDA kernels (nvcc was not found when it "
            "was built); use --device cpu\n",
            cmd);
    return 2;
#endif
}

sl_backend *sl_device_backend(const char *device, int threads, int batch_invariant,
                              const char *cpu_act) {
#ifdef SL_HAVE_CUDA
    if (!strcasecmp(device, "cuda")) {
        sl_backend *be = sl_cuda_backend_create(0);
        if (be && batch_invariant) sl_cuda_backend_set_batch_invariant(be, 1);
        return be;
    }
#endif
    (void)device, (void)batch_invariant;
    sl_backend *be = sl_cpu_backend_create(threads);
    if (be) sl_cpu_backend_set_int8_activations(be, !strcasecmp(cpu_act, "int8"));
    return be;
}

void sl_device_set_gemm_min_tokens(struct sl_backend *be, const char *device, int min_tokens) {
#ifdef SL_HAVE_CUDA
    if (!strcasecmp(device, "cuda")) sl_cuda_backend_set_gemm(be, min_tokens, 0);
#endif
    (void)be, (void)device, (void)min_tokens;
}

int sl_device_warmup_tokens(struct sl_backend *be, const char *device) {
#ifdef SL_HAVE_CUDA
    if (!strcasecmp(device, "cuda")) {
        const int g = sl_cuda_backend_gemm_min_tokens(be);
        return g > 0 ? g : SL_QMM_MAX_T;
    }
#endif
    (void)be, (void)device;
    return 1;
}
