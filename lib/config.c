/*
 * config: see config.h. Order of precedence: flag, env var, default. A value
 * is validated wherever it came from, so a bad env var is as loud as a bad
 * flag: one line on stderr and CONFIG_EXIT_USAGE.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int config_split_hostport(const char *hostport, char *host, size_t host_size, int *port)
{
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport)
        return -1;
    size_t hl = (size_t)(colon - hostport);
    if (hl >= host_size)
        return -1;
    char *end = NULL;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 1 || p > 65535)
        return -1;
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    /* [::1]:8080 -> ::1 */
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    *port = (int)p;
    return 0;
}

static const char *kind_word(config_kind_t k)
{
    switch (k) {
    case CONFIG_INT:
        return "N";
    case CONFIG_HOSTPORT:
        return "HOST:PORT";
    case CONFIG_LOGLEVEL:
        return "LEVEL";
    case CONFIG_LOGFORMAT:
        return "FORMAT";
    case CONFIG_FLAG:
        return "";
    default:
        return "VALUE";
    }
}

void config_print_help(const char *program, const char *usage, const config_opt_t *opts, size_t n)
{
    printf("usage: %s\n\noptions (a flag wins over its environment variable):\n", usage);
    for (size_t i = 0; i < n; i++) {
        const config_opt_t *o = &opts[i];
        char left[64];
        snprintf(left, sizeof left, "--%s %s", o->name, kind_word(o->kind));
        printf("  %-26s %s\n", left, o->help);
        char range[64] = "";
        if (o->kind == CONFIG_INT) /* every floor and ceiling shows where it is set */
            snprintf(range, sizeof range, ", from %ld to %ld", o->min, o->max);
        printf("  %-26s env %s, default %s%s\n", "", o->env ? o->env : "(none)",
               o->def ? o->def : (o->required ? "(required)" : "(off)"), range);
    }
    printf("  %-26s %s\n  %-26s %s\n", "--help", "print this help and exit", "--version",
           "print the version and exit");
    (void)program;
}

/* Validate and store one value. Returns 0 or prints one line and returns -1. */
static int config_set(const char *program, config_opt_t *o, const char *value, const char *from)
{
    switch (o->kind) {
    case CONFIG_STR:
        if (o->required && !*value) {
            fprintf(stderr, "%s: %s must not be empty\n", program, from);
            return -1;
        }
        *(const char **)o->dest = value;
        return 0;
    case CONFIG_INT: {
        char *end = NULL;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < o->min || v > o->max) {
            fprintf(stderr, "%s: %s: '%s' is not a whole number from %ld to %ld\n", program, from,
                    value, o->min, o->max);
            return -1;
        }
        *(long *)o->dest = v;
        return 0;
    }
    case CONFIG_HOSTPORT: {
        char host[256];
        int port;
        if (config_split_hostport(value, host, sizeof host, &port) != 0) {
            fprintf(stderr, "%s: %s: '%s' is not HOST:PORT (port 1..65535)\n", program, from,
                    value);
            return -1;
        }
        *(const char **)o->dest = value;
        return 0;
    }
    case CONFIG_LOGLEVEL:
        if (strcmp(value, "debug") && strcmp(value, "info") && strcmp(value, "warn") &&
            strcmp(value, "error")) {
            fprintf(stderr, "%s: %s: '%s' is not one of debug, info, warn, error\n", program, from,
                    value);
            return -1;
        }
        *(const char **)o->dest = value;
        return 0;
    case CONFIG_LOGFORMAT:
        if (strcmp(value, "text") && strcmp(value, "json")) {
            fprintf(stderr, "%s: %s: '%s' is not one of text, json\n", program, from, value);
            return -1;
        }
        *(const char **)o->dest = value;
        return 0;
    case CONFIG_FLAG:
        *(int *)o->dest = 1;
        return 0;
    }
    return -1;
}

int config_parse(const char *program, const char *usage, config_opt_t *opts, size_t n, int argc,
                 char **argv, int *positional)
{
    char given[n ? n : 1];
    memset(given, 0, sizeof given);
    int npos = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            config_print_help(program, usage, opts, n);
            return CONFIG_EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s %s\n", program, PUSH_VERSION);
            return CONFIG_EXIT_OK;
        }
        if (strcmp(arg, "--") == 0) {
            for (i++; i < argc; i++) {
                if (!positional) {
                    fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", program,
                            argv[i]);
                    return CONFIG_EXIT_USAGE;
                }
                argv[1 + npos++] = argv[i];
            }
            break;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (!positional || (arg[0] == '-' && arg[1] != '\0')) {
                fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", program, arg);
                return CONFIG_EXIT_USAGE;
            }
            argv[1 + npos++] = argv[i];
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        config_opt_t *o = NULL;
        size_t idx = 0;
        for (idx = 0; idx < n; idx++) {
            if (strlen(opts[idx].name) == name_len &&
                strncmp(opts[idx].name, name, name_len) == 0) {
                o = &opts[idx];
                break;
            }
        }
        if (!o) {
            fprintf(stderr, "%s: unknown flag '--%.*s' (see --help)\n", program, (int)name_len,
                    name);
            return CONFIG_EXIT_USAGE;
        }
        const char *value;
        if (o->kind == CONFIG_FLAG) {
            if (eq) {
                fprintf(stderr, "%s: --%s takes no value\n", program, o->name);
                return CONFIG_EXIT_USAGE;
            }
            value = "1";
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "%s: --%s needs a value (see --help)\n", program, o->name);
            return CONFIG_EXIT_USAGE;
        }
        char from[80];
        snprintf(from, sizeof from, "--%s", o->name);
        if (config_set(program, o, value, from) != 0)
            return CONFIG_EXIT_USAGE;
        given[idx] = 1;
    }

    for (size_t k = 0; k < n; k++) {
        config_opt_t *o = &opts[k];
        if (given[k] || o->kind == CONFIG_FLAG)
            continue;
        const char *env = o->env ? getenv(o->env) : NULL;
        if (env && *env) {
            if (config_set(program, o, env, o->env) != 0)
                return CONFIG_EXIT_USAGE;
        } else if (o->def) {
            char from[80];
            snprintf(from, sizeof from, "default of --%s", o->name);
            if (config_set(program, o, o->def, from) != 0)
                return CONFIG_EXIT_USAGE;
        } else if (o->required) {
            fprintf(stderr, "%s: --%s (or %s) is required\n", program, o->name,
                    o->env ? o->env : "its env var");
            return CONFIG_EXIT_USAGE;
        }
    }
    if (positional)
        *positional = npos;
    return CONFIG_OK;
}
