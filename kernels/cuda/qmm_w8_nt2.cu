/* qmm_w8_nt2.cu — the QW8 launches of 9 to 16 tokens (qmm_kernel.cuh; qmm.cu calls them) */
#include "qmm_kernel.cuh"

template void sl_qmm::launch_offs<false, 2>(const sl_qmm::qmm_job &, const __half *, int,
                                            sl_qmm_plan, float *, unsigned *, cudaStream_t);
