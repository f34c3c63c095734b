/* commands.h — the subcommands of the sluice binary. Each takes the arguments after its
 * name and returns the process exit status (0 ok, 1 failure, 2 usage error). */
#ifndef SL_COMMANDS_H
#define SL_COMMANDS_H

int sl_cmd_generate(int argc, char **argv);
int sl_cmd_mkmodel(int argc, char **argv);
int sl_cmd_info(int argc, char **argv);
int sl_cmd_tokenize(int argc, char **argv);
int sl_cmd_detokenize(int argc, char **argv);
int sl_cmd_bench(int argc, char **argv);
int sl_cmd_bench_serve(int argc, char **argv); /* `bench serve`, dispatched by sl_cmd_bench */
int sl_cmd_serve(int argc, char **argv);

/* `--device cpu|cuda` (device.c): sl_device_check returns 0 when the device can be used and
 * `--cpu-activations` (cpu_act) is int8 or f32, else prints why (an unknown device or
 * activation name, a build without CUDA, no CUDA device) and returns 2; sl_device_backend creates its backend (threads
 * and cpu_act: the CPU backend's, sl_cpu_backend_set_int8_activations), NULL if that fails.
 * batch_invariant (`--batch-invariant`): a token's logits must not depend on the batch around
 * it — the CPU backend's never do; the CUDA backend then keeps its decode matmul for steps of
 * any size and reads each context in one pass (sl_cuda_backend_set_batch_invariant). */
struct sl_backend;
int sl_device_check(const char *cmd, const char *device, const char *cpu_act);
struct sl_backend *sl_device_backend(const char *device, int threads, int batch_invariant,
                                     const char *cpu_act);
/* On cuda: steps of at least min_tokens tokens take the f16 GEMM path (sl_cuda_backend_set_gemm;
 * 0: never). Elsewhere nothing. */
void sl_device_set_gemm_min_tokens(struct sl_backend *be, const char *device, int min_tokens);
/* The tokens of the warm-up forward pass (sl_model_warmup) `serve` runs on this backend: on cuda
 * a step as large as the f16 GEMM path's threshold (cuBLAS and the large-step kernels run once;
 * a qmm launch of SL_QMM_MAX_T tokens where there is no GEMM path), on the CPU one token (every
 * weight read once). */
int sl_device_warmup_tokens(struct sl_backend *be, const char *device);
/* The `--cpu-activations` option of the commands that run a model. */
#define SL_CPU_ACT_HELP                                                                            \
    "CPU matmuls with int8/int4 weights: int8 (activations quantized per 32 columns, integer dot " \
    "products, as llama.cpp does: faster) or f32 (exact f32 activations: the reference)"

#endif
