/* main.c — the sluice command line: dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: sluice <command> [options]   (sluice <command> --help for its options)\n\n"
            "commands:\n"
            "  serve      the OpenAI-compatible HTTP server (completions, chat, streaming, /metrics)\n"
            "  generate   run a GGUF model on token ids: greedy or sampled, with log-probabilities\n"
            "  mkmodel    write a small GGUF model with seeded random weights (tests, demos)\n"
            "  info       describe a GGUF model and the GPUs sluice can see\n"
            "  tokenize   print the token ids of a text (JSON array), with a GGUF model's tokenizer\n"
            "  detokenize print the text of token ids\n"
            "  bench      benchmarks: `bench throughput` (offline requests/s and tokens/s, like vLLM's), `bench serve` (online, against a server)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) return sl_cmd_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "generate")) return sl_cmd_generate(argc - 2, argv + 2);
    if (!strcmp(cmd, "mkmodel")) return sl_cmd_mkmodel(argc - 2, argv + 2);
    if (!strcmp(cmd, "info")) return sl_cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "tokenize")) return sl_cmd_tokenize(argc - 2, argv + 2);
    if (!strcmp(cmd, "detokenize")) return sl_cmd_detokenize(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return sl_cmd_bench(argc - 2, argv + 2);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "sluice: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
