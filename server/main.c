/* main.c — the sluice command line. Subcommands are added as modules land. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "usage: sluice <command> [options]\n");
    return 2;
}
