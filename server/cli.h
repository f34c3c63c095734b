/* cli.h — the option table: flag, SLUICE_* environment variable, default, help.
 *
 * Each command declares one table; cli_parse applies defaults, then environment variables
 * (SLUICE_ + the flag upper-cased with '-' as '_', e.g. --max-num-seqs → SLUICE_MAX_NUM_SEQS),
 * then the command line. Only main and the commands use it; nothing else reads getenv.
 */
#ifndef SL_CLI_H
#define SL_CLI_H

#include <stdio.h>

typedef enum { CLI_INT, CLI_FLOAT, CLI_STR, CLI_BOOL } cli_kind;

typedef struct cli_opt {
    const char *flag;  /* long name without dashes: "max-num-seqs" */
    char short_name;   /* 'n' for -n, or 0 */
    cli_kind kind;
    const char *dflt;  /* default as text, or NULL (strings: NULL stays NULL; bools: false) */
    const char *help;
    void *dst;         /* int*, float*, const char**, or int* (bool) */
} cli_opt;

/* Returns 0, 1 when --help was given (help printed), or -1 after printing an error. */
int cli_parse(const char *cmd, const cli_opt *opts, int n, int argc, char **argv);
void cli_help(FILE *f, const char *cmd, const cli_opt *opts, int n);

#endif
