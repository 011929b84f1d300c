/*
 * pushctl: the command-line tool of the push cluster. This file only picks
 * the subcommand; each lives in cmd_<name>.c.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "pushctl.h"
#include "signals.h"

typedef struct pushctl_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} pushctl_cmd_t;

static const pushctl_cmd_t pushctl_cmds[] = {
    {"publish", pushctl_publish, "publish --to u1,u2 [--topic T] [--ttl S] [--id K] DATA"},
    {"broadcast", pushctl_broadcast, "broadcast [--topic T] DATA (live only)"},
    {"presence", pushctl_presence, "presence USER: connections and nodes of a user"},
    {"tail", pushctl_tail, "tail: print every message on <prefix>.> decoded to JSON"},
    {"token", pushctl_token, "token --sub USER [--ttl S]: mint an HS256 JWT"},
    {"connect", pushctl_connect, "connect --token T [--url URL]: print the frames a client gets"},
};

static void pushctl_usage(FILE *out)
{
    fprintf(out,
            "usage: pushctl COMMAND [flags] (pushctl COMMAND --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof pushctl_cmds / sizeof pushctl_cmds[0]; i++)
        fprintf(out, "  %-10s %s\n", pushctl_cmds[i].name, pushctl_cmds[i].what);
    fprintf(out, "\nevery command takes --nats URL (PUSH_NATS_URL), --prefix P (PUSH_PREFIX),\n"
                 "--log-level L (PUSH_LOG_LEVEL), --log-format F (PUSH_LOG_FORMAT);\n"
                 "see COMMAND --help\n");
}

int main(int argc, char **argv)
{
    signals_init();
    log_init("pushctl");
    if (argc < 2) {
        pushctl_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        pushctl_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("pushctl %s\n", PUSH_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof pushctl_cmds / sizeof pushctl_cmds[0]; i++)
        if (strcmp(argv[1], pushctl_cmds[i].name) == 0)
            return pushctl_cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "pushctl: unknown command '%s' (see pushctl --help)\n", argv[1]);
    return 2;
}
