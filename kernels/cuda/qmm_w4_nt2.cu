/* qmm_w4_nt2.cu — the QW4 launches of 9 to 16 tokens (qmm_kernel.cuh; qmm.cu calls them) */
#include "qmm_kernel.cuh"

template void sl_qmm::launch_offs<true, 2>(const sl_qmm::qmm_job &, const __half *, int,
                                           sl_qmm_plan, float *, unsigned *, cudaStream_t);
