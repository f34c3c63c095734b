/* cmd_bench.c — `sluice bench throughput`: offline throughput, like vLLM's
 * benchmark_throughput. N random prompts of I tokens each ask for exactly O tokens
 * (ignore_eos, temperature 1, top_p 1, as vLLM's benchmark samples); all are submitted to one
 * engine at once (continuous batching), or with --sequential one at a time on the same engine.
 * The clock runs from the first submit to the last finish; model loading is not timed, nor
 * warm-up requests before (a server's start pays for the first launches once: on a GPU they
 * load kernels and cuBLAS). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/cpu.h"
#include "../models/model.h"
#include "../scheduler/engine.h"
#include "cli.h"
#include "commands.h"

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int flag;
} waiter;

static void on_events(void *ctx) {
    waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->flag = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void wait_events(waiter *w) {
    pthread_mutex_lock(&w->mu);
    while (!w->flag) pthread_cond_wait(&w->cv, &w->mu);
    w->flag = 0;
    pthread_mutex_unlock(&w->mu);
}

typedef struct totals {
    int done, errors;
    long long prompt_tokens, output_tokens;
} totals;

/* Drains the engine's events; counts finished requests and their tokens. */
static void drain(sl_engine *e, totals *t) {
    sl_engine_event *list = sl_engine_poll(e);
    for (sl_engine_event *o = list; o; o = o->next) {
        if (o->finish == SL_FINISH_ERROR) {
            fprintf(stderr, "sluice bench: request %llu failed: %s\n", (unsigned long long)o->id, o->error_msg);
            t->errors++;
        } else if (o->finish != SL_FINISH_NONE) {
            t->prompt_tokens += o->n_prompt;
            t->output_tokens += o->n_generated;
        }
        if (o->done) t->done++;
    }
    sl_engine_release(e, list);
}

static int bench_throughput(int argc, char **argv) {
    const char *model_path, *json_path, *quant, *device, *cpu_act;
    int num_prompts, input_len, output_len, sequential, threads, max_num_seqs, max_batched, block_size, no_cache,
        num_blocks, max_model_len, seed, host_sampling, batch_invariant, no_warmup, gemm_min_t;
    const cli_opt opts[] = {
        {"model", 'm', CLI_STR, NULL, "GGUF model file (required)", &model_path},
        {"num-prompts", 0, CLI_INT, "64", "number of requests", &num_prompts},
        {"input-len", 0, CLI_INT, "128", "prompt tokens per request (random ids)", &input_len},
        {"output-len", 0, CLI_INT, "128", "generated tokens per request (ignore_eos)", &output_len},
        {"sequential", 0, CLI_BOOL, NULL, "run the requests one at a time (for comparison)", &sequential},
        {"output-json", 0, CLI_STR, NULL, "also write the results to this JSON file", &json_path},
        {"threads", 0, CLI_INT, "0", "CPU threads (0: all cores)", &threads},
        {"device", 0, CLI_STR, "cpu", "where the model runs: cpu, or cuda (the first GPU; builds with nvcc only)", &device},
        {"cpu-activations", 0, CLI_STR, "int8", SL_CPU_ACT_HELP, &cpu_act},
        {"max-num-seqs", 0, CLI_INT, "256", "running sequences at most", &max_num_seqs},
        {"max-num-batched-tokens", 0, CLI_INT, "2048", "tokens per step at most", &max_batched},
        {"block-size", 0, CLI_INT, "16", "KV cache block size in tokens", &block_size},
        {"num-blocks", 0, CLI_INT, "0", "KV cache blocks (0: enough for every running sequence)", &num_blocks},
        {"max-model-len", 0, CLI_INT, "0", "prompt + output tokens at most (0: input-len + output-len)", &max_model_len},
        {"no-prefix-cache", 0, CLI_BOOL, NULL, "turn automatic prefix caching off", &no_cache},
        {"quantization", 0, CLI_STR, NULL, "quantize F16/BF16/F32 weights at load: int8 or int4", &quant},
        {"seed", 0, CLI_INT, "0", "seed of the random prompts and of sampling", &seed},
        {"batch-invariant", 0, CLI_BOOL, NULL, "a token's logits never depend on the batch around it, as on the CPU (on cuda: no f16 GEMM for large steps, one matmul launch plan for every step size "
         "and no split-K attention: slower prefill and long contexts)", &batch_invariant},
        {"host-sampling", 0, CLI_BOOL, NULL,
         "sample on the host even on a GPU (the logits cross to the host each step; for comparison)", &host_sampling},
        {"no-warmup", 0, CLI_BOOL, NULL, "time from the first request (no warm-up requests first)", &no_warmup},
        {"gemm-min-tokens", 0, CLI_INT, "-1",
         "on cuda: steps of at least this many tokens multiply quantized weights in f16 through cuBLAS "
         "(0: never; -1: the backend's default, 256)", &gemm_min_t},
    };
    int rc = cli_parse("bench throughput", opts, sizeof opts / sizeof opts[0], argc, argv);
    if (rc) return rc > 0 ? 0 : 2;
    if ((rc = sl_device_check("bench throughput", device, cpu_act))) return rc;
    if (!model_path) {
        fprintf(stderr, "sluice bench throughput: --model is required\n");
        return 2;
    }
    if (num_prompts < 1 || input_len < 1 || output_len < 1 || max_num_seqs < 1 || max_batched < 1 || block_size < 1 ||
        block_size > 1024 || num_blocks < 0 || max_model_len < 0 || gemm_min_t < -1) {
        fprintf(stderr, "sluice bench throughput: invalid option value (counts and lengths must be positive)\n");
        return 2;
    }
    sl_model_opts mo = {.quant_to = -1, .group = 32};
    if (quant && !strcmp(quant, "int8")) mo.quant_to = SL_WF_QW8;
    else if (quant && !strcmp(quant, "int4")) mo.quant_to = SL_WF_QW4;
    else if (quant) {
        fprintf(stderr, "sluice bench throughput: --quantization must be int8 or int4\n");
        return 2;
    }
    if (!max_model_len) max_model_len = input_len + output_len;
    if (batch_invariant && gemm_min_t > 0) {
        fprintf(stderr, "sluice bench throughput: --gemm-min-tokens with --batch-invariant: the GEMM path "
                        "depends on the step's size (only 0 or -1 go with it)\n");
        return 2;
    }

    sl_backend *be = sl_device_backend(device, threads, batch_invariant, cpu_act);
    if (!be) {
        fprintf(stderr, "sluice bench throughput: --device %s: the backend could not be created\n", device);
        return 1;
    }
    if (gemm_min_t >= 0) sl_device_set_gemm_min_tokens(be, device, gemm_min_t);
    sl_model *m = NULL;
    sl_engine *e = NULL;
    int32_t *prompts = NULL;
    char err[SL_ERRMSG] = "";
    int status = 1;
    waiter w = {.flag = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    if ((rc = sl_model_load(&m, model_path, be, &mo, err))) {
        fprintf(stderr, "sluice bench throughput: %s: %s\n", model_path, err);
        goto done;
    }
    const int V = m->hp.n_vocab;
    int conc = sequential ? 1 : (num_prompts < max_num_seqs ? num_prompts : max_num_seqs);
    int per_seq = (max_model_len + block_size - 1) / block_size;
    if (!num_blocks) num_blocks = 1 + conc * per_seq;

    /* random prompts, avoiding the model's special tokens where it names them */
    prompts = malloc((size_t)num_prompts * (size_t)input_len * sizeof *prompts);
    sl_rng rng;
    sl_rng_seed(&rng, (uint64_t)seed);
    for (size_t i = 0; i < (size_t)num_prompts * (size_t)input_len; i++) {
        int32_t t;
        do t = (int32_t)(sl_rng_u64(&rng) % (uint64_t)V);
        while (V > 3 && (t == m->hp.bos_id || t == m->hp.eos_id || t == m->hp.eot_id));
        prompts[i] = t;
    }

    sl_engine_config ec = {.model = m, .seed = (uint64_t)seed, .host_sampling = host_sampling, .notify = on_events,
                           .notify_ctx = &w};
    sl_sched_config_defaults(&ec.sched);
    ec.sched.n_blocks = num_blocks;
    ec.sched.block_size = block_size;
    ec.sched.max_num_seqs = max_num_seqs;
    ec.sched.max_num_batched_tokens = max_batched;
    ec.sched.max_model_len = max_model_len;
    ec.sched.prefix_cache = !no_cache;
    if ((rc = sl_engine_create(&e, &ec, err))) {
        fprintf(stderr, "sluice bench throughput: %s\n", err);
        goto done;
    }
    sl_engine_req req = {.n_prompt = input_len, .prio = SL_PRIO_INTERACTIVE};
    sl_sampling_params_defaults(&req.sp);
    req.sp.max_tokens = output_len;
    req.sp.ignore_eos = true;
    req.sp.temperature = 1.0f;
    req.sp.top_p = 1.0f;

    fprintf(stderr, "sluice bench: %s; %d prompts of %d tokens, %d output tokens each, %s, %d KV blocks of %d, "
            "sampling on the %s\n", m->desc, num_prompts, input_len, output_len, sequential ? "one at a time" : "batched",
            num_blocks, block_size, sl_model_device_sampling(m) && !host_sampling ? "device" : "host");
    /* the warm-up: requests of their own (random ids from the same stream, 2 output tokens
     * each), as many as fill the timed run's first step, so that its kernels (a large step's
     * GEMM path among them) have run once */
    sl_engine_stats st0 = {0};
    if (!no_warmup) {
        const int64_t want = (int64_t)conc * input_len, fill = want < max_batched ? want : max_batched;
        const int n_warm = (int)((fill + input_len - 1) / input_len);
        int32_t *wp = sl_xmalloc((size_t)n_warm * (size_t)input_len * sizeof *wp);
        sl_engine_req *wr = sl_xmalloc((size_t)n_warm * sizeof *wr);
        for (int r = 0; r < n_warm; r++) {
            wr[r] = req;
            wr[r].prompt = wp + (size_t)r * (size_t)input_len, wr[r].sp.max_tokens = 2;
            for (int i = 0; i < input_len; i++) {
                int32_t *x = &wp[(size_t)r * (size_t)input_len + (size_t)i];
                do *x = (int32_t)(sl_rng_u64(&rng) % (uint64_t)V);
                while (V > 3 && (*x == m->hp.bos_id || *x == m->hp.eos_id || *x == m->hp.eot_id));
            }
        }
        rc = sl_engine_submit_many(e, wr, n_warm, NULL); /* the engine copies the prompts */
        free(wr);
        free(wp);
        if (rc) {
            fprintf(stderr, "sluice bench throughput: submit failed\n");
            goto done;
        }
        totals wt = {0};
        while (wt.done < n_warm) {
            wait_events(&w);
            drain(e, &wt);
        }
        if (wt.errors) goto done;
        sl_engine_get_stats(e, &st0);
    }
    totals t = {0};
    /* batched: everything at once, in one submit (else the engine's first step could start
     * with part of them); sequential: the next one when the previous is done */
    sl_engine_req *reqs = sl_xmalloc((size_t)num_prompts * sizeof *reqs);
    for (int i = 0; i < num_prompts; i++) {
        reqs[i] = req;
        reqs[i].prompt = prompts + (size_t)i * (size_t)input_len;
    }
    double t0 = sl_time_s();
    int submitted = 0;
    while (t.done < num_prompts) {
        if (submitted < num_prompts && (!sequential || submitted == t.done)) {
            const int n = sequential ? 1 : num_prompts;
            if (sl_engine_submit_many(e, &reqs[submitted], n, NULL)) {
                fprintf(stderr, "sluice bench throughput: submit failed\n");
                free(reqs);
                goto done;
            }
            submitted += n;
        }
        wait_events(&w);
        drain(e, &t);
    }
    double elapsed = sl_time_s() - t0;
    free(reqs);
    sl_engine_stats st;
    sl_engine_get_stats(e, &st);
    if (t.errors) goto done;
    /* the timed requests' share (the scheduler's counters are cumulative) */
    st.sched.n_steps -= st0.sched.n_steps, st.sched.n_preemptions -= st0.sched.n_preemptions;
    st.sched.prefix_hits -= st0.sched.prefix_hits, st.n_forward_tokens -= st0.n_forward_tokens;
    st.busy_s -= st0.busy_s, st.forward_s -= st0.forward_s, st.sample_s -= st0.sample_s;

    long long total = t.prompt_tokens + t.output_tokens;
    double rps = num_prompts / elapsed, tps = (double)total / elapsed, ops = (double)t.output_tokens / elapsed;
    printf("Throughput: %.2f requests/s, %.2f total tokens/s, %.2f output tokens/s\n", rps, tps, ops);
    fprintf(stderr,
            "sluice bench: %.3f s, %lld prompt + %lld output tokens, %llu steps (%.1f tokens per step), "
            "%llu preemptions, %llu prompt tokens from the prefix cache; engine busy %.3f s: forward %.3f s, "
            "sampling %.3f s\n",
            elapsed, t.prompt_tokens, t.output_tokens, (unsigned long long)st.sched.n_steps,
            st.sched.n_steps ? (double)st.n_forward_tokens / (double)st.sched.n_steps : 0.0,
            (unsigned long long)st.sched.n_preemptions, (unsigned long long)st.sched.prefix_hits, st.busy_s,
            st.forward_s, st.sample_s);
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) {
            fprintf(stderr, "sluice bench throughput: cannot write %s\n", json_path);
            goto done;
        }
        fprintf(f,
                "{\"elapsed_time\": %.6f, \"num_requests\": %d, \"total_num_tokens\": %lld, "
                "\"requests_per_second\": %.6f, \"tokens_per_second\": %.6f, \"output_tokens_per_second\": %.6f, "
                "\"num_steps\": %llu}\n",
                elapsed, num_prompts, total, rps, tps, ops, (unsigned long long)st.sched.n_steps);
        if (fclose(f)) {
            fprintf(stderr, "sluice bench throughput: cannot write %s\n", json_path);
            goto done;
        }
    }
    status = 0;
done:
    sl_engine_destroy(e);
    sl_model_free(m);
    be->destroy(be);
    free(prompts);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return status;
}

int sl_cmd_bench(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "throughput")) return bench_throughput(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "serve")) return sl_cmd_bench_serve(argc - 1, argv + 1);
    FILE *f = argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) ? stdout : stderr;
    fprintf(f, "usage: sluice bench throughput|serve [options]   (sluice bench SUBCOMMAND --help for its options)\n");
    return f == stdout ? 0 : 2;
}
