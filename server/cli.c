#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int set_value(const cli_opt *o, const char *v, const char *source) {
    char *end;
    switch (o->kind) {
    case CLI_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L) {
            fprintf(stderr, "sluice: %s: --%s expects an integer, got '%s'\n", source, o->flag, v);
            return -1;
        }
        *(int *)o->dst = (int)x;
        return 0;
    }
    case CLI_FLOAT: {
        errno = 0;
        float x = strtof(v, &end);
        if (errno || end == v || *end || !isfinite(x)) {
            fprintf(stderr, "sluice: %s: --%s expects a number, got '%s'\n", source, o->flag, v);
            return -1;
        }
        *(float *)o->dst = x;
        return 0;
    }
    case CLI_STR: *(const char **)o->dst = v; return 0;
    case CLI_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on")) *(int *)o->dst = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off")) *(int *)o->dst = 0;
        else {
            fprintf(stderr, "sluice: %s: --%s expects true or false, got '%s'\n", source, o->flag, v);
            return -1;
        }
        return 0;
    }
    return -1;
}

static void env_name(const char *flag, char *buf, size_t n) {
    size_t j = snprintf(buf, n, "SLUICE_");
    for (const char *p = flag; *p && j + 1 < n; p++) buf[j++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[j] = 0;
}

int cli_parse(const char *cmd, const cli_opt *opts, int n, int argc, char **argv) {
    for (int i = 0; i < n; i++) {
        const cli_opt *o = &opts[i];
        if (o->kind == CLI_BOOL) *(int *)o->dst = 0;
        else if (o->kind == CLI_STR) *(const char **)o->dst = o->dflt;
        if (o->dflt && o->kind != CLI_STR && set_value(o, o->dflt, "default")) return -1;
        char env[96];
        env_name(o->flag, env, sizeof env);
        const char *v = getenv(env);
        if (v && set_value(o, v, env)) return -1;
    }
    for (int a = 0; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            cli_help(stdout, cmd, opts, n);
            return 1;
        }
        const cli_opt *o = NULL;
        const char *val = NULL;
        if (arg[0] == '-' && arg[1] == '-') {
            const char *name = arg + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (int i = 0; i < n; i++)
                if (strlen(opts[i].flag) == len && !strncmp(opts[i].flag, name, len)) o = &opts[i];
            if (eq) val = eq + 1;
        } else if (arg[0] == '-' && arg[1] && !arg[2]) {
            for (int i = 0; i < n; i++)
                if (opts[i].short_name == arg[1]) o = &opts[i];
        }
        if (!o) {
            fprintf(stderr, "sluice %s: unknown option '%s' (see --help)\n", cmd, arg);
            return -1;
        }
        if (!val && o->kind == CLI_BOOL) val = "true";
        if (!val) {
            if (a + 1 >= argc) {
                fprintf(stderr, "sluice %s: --%s needs a value\n", cmd, o->flag);
                return -1;
            }
            val = argv[++a];
        }
        if (set_value(o, val, "command line")) return -1;
    }
    return 0;
}

void cli_help(FILE *f, const char *cmd, const cli_opt *opts, int n) {
    fprintf(f, "usage: sluice %s [options]\n\noptions (each also as an environment variable):\n", cmd);
    for (int i = 0; i < n; i++) {
        const cli_opt *o = &opts[i];
        char env[96], head[160];
        env_name(o->flag, env, sizeof env);
        if (o->short_name) snprintf(head, sizeof head, "-%c, --%s", o->short_name, o->flag);
        else snprintf(head, sizeof head, "--%s", o->flag);
        fprintf(f, "  %-28s %s", head, o->help);
        if (o->dflt) fprintf(f, " (default: %s)", o->dflt);
        fprintf(f, " [%s]\n", env);
    }
}
