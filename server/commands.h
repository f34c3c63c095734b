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

#endif
