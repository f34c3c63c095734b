/* bench_cuda_repack.c — the CUDA backend's load-time work per weight, on the host (no GPU
 * needed): GGUF blocks to the logical format (sl_repack) and the logical format to the tiled
 * layout (sl_cuda_qmat_pack_host, qmat.cu), beside the inverse (sl_cuda_qmat_unpack_host, which
 * places one element at a time as the repack did before it built tiles whole) and a memcpy of
 * the packed codes, all in the same run.
 *
 *   build/bench_cuda_repack [--quick]
 *
 * Llama-3-8B's largest shape (14336×4096, gate/up) in the GGUF types that map to each scale
 * width: Q4_K and Q6_K (two-level), Q4_0 and Q8_0 (f16). Random valid blocks
 * (sl_quant_random); the median of 3 runs (1 with --quick) per step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kernels/cuda/matmul.h"
#include "models/gguf.h"
#include "models/quant.h"

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0, reps = quick ? 1 : 3;
    static const struct { uint32_t type; const char *name; int blck, bytes; } types[] = {
        {SL_GGML_Q4_K, "Q4_K", 256, 144}, {SL_GGML_Q6_K, "Q6_K", 256, 210},
        {SL_GGML_Q4_0, "Q4_0", 32, 18},   {SL_GGML_Q8_0, "Q8_0", 32, 34}};
    const int64_t rows = 14336, cols = 4096;
    printf("repack of a %lldx%lld weight on the host (median of %d)\n\n", (long long)rows,
           (long long)cols, reps);
    printf("| type | scale bytes | packed MiB | sl_repack s | pack_host s | unpack_host s | memcpy codes s "
           "| unpack / pack | pack / memcpy |\n|---|---|---|---|---|---|---|---|---|\n");
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        sl_rng rng;
        sl_rng_seed(&rng, 1);
        const int64_t blocks = rows * cols / types[k].blck;
        void *raw = sl_xmalloc((size_t)(blocks * types[k].bytes));
        sl_quant_random(types[k].type, &rng, raw, blocks, 0.5f);
        double t[4][3];
        size_t packed = 0;
        int scale_bytes = 0;
        for (int r = 0; r < reps; r++) {
            sl_qw w, back;
            sl_cuda_qmat q;
            double t0 = sl_time_s();
            if (sl_repack(types[k].type, raw, rows, cols, -1, 32, 0, &w) != SL_OK) return 1;
            double t1 = sl_time_s();
            if (sl_cuda_qmat_pack_host(&q, &w) != 0) return 1;
            double t2 = sl_time_s();
            sl_qw_alloc(&back, w.fmt, rows, cols, w.group, w.offsets != NULL);
            double t3 = sl_time_s();
            sl_cuda_qmat_unpack_host(&q, &back);
            double t4 = sl_time_s();
            packed = (size_t)(q.row_tiles * q.k_tiles * 512) +
                     (size_t)(q.row_tiles * q.g_pad * 16 * q.scale_bytes) * (q.offsets ? 2 : 1) +
                     sl_cuda_qmat_factor_bytes(&q);
            const size_t code_bytes = (size_t)(q.row_tiles * q.k_tiles * 512);
            void *dst = sl_xmalloc(code_bytes);
            memset(dst, 1, code_bytes); /* its pages mapped first */
            double t5 = sl_time_s();
            memcpy(dst, q.codes, code_bytes);
            double t6 = sl_time_s();
            t[0][r] = t1 - t0, t[1][r] = t2 - t1, t[2][r] = t4 - t3, t[3][r] = t6 - t5;
            scale_bytes = q.scale_bytes;
            free(dst);
            sl_cuda_qmat_host_free(&q);
            sl_qw_free(&w), sl_qw_free(&back);
        }
        for (int i = 0; i < 4; i++) qsort(t[i], (size_t)reps, sizeof(double), cmp_double);
        const double rep = t[0][reps / 2], pack = t[1][reps / 2], unpack = t[2][reps / 2],
                     copy = t[3][reps / 2];
        printf("| %s | %d | %.1f | %.3f | %.3f | %.3f | %.4f | %.1f | %.0f |\n", types[k].name,
               scale_bytes, (double)packed / 1048576.0, rep, pack, unpack, copy, unpack / pack,
               pack / copy);
        free(raw);
    }
    return 0;
}
