#include <cuda_runtime.h>
#include <string.h>

#include "cuda.h"

extern "C" int sl_cuda_device_count(void) {
    int n = 0;
    /* No driver or no device is a normal answer here, not an error: the CPU backend serves. */
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int sl_cuda_device_info(int i, char *name, size_t name_len, int *cc_major,
                                   int *cc_minor, size_t *total_mem) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    if (name && name_len) {
        strncpy(name, p.name, name_len - 1);
        name[name_len - 1] = 0;
    }
    if (cc_major) *cc_major = p.major;
    if (cc_minor) *cc_minor = p.minor;
    if (total_mem) *total_mem = p.totalGlobalMem;
    return 0;
}
