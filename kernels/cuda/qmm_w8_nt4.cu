/* qmm_w8_nt4.cu — the QW8 launches of 17 to 32 tokens (qmm_kernel.cuh; qmm.cu calls them) */
#include "qmm_kernel.cuh"

template void sl_qmm::launch_offs<false, 4>(const sl_qmm::qmm_job &, const __half *, int,
                                            sl_qmm_plan, float *, unsigned *, cudaStream_t);
