/*
 * config: command-line flags and environment variables, as the contract's
 * configuration table says: a flag wins over its env var, which wins over the
 * default. Each program describes its options in a table of config_opt_t and
 * calls config_parse once at start; the parsed values land in the table's
 * destinations. Runs on the main thread before anything else.
 */
#ifndef PUSH_CONFIG_H
#define PUSH_CONFIG_H

#include <stddef.h>

typedef enum {
    CONFIG_STR,       /* dest: const char ** (points into argv, environ or the default) */
    CONFIG_INT,       /* dest: long *, checked against [min, max] */
    CONFIG_HOSTPORT,  /* dest: const char **, must look like HOST:PORT with a port 1..65535 */
    CONFIG_LOGLEVEL,  /* dest: const char **, one of debug|info|warn|error */
    CONFIG_FLAG,      /* dest: int *, set to 1 when the flag is given (no value, no env) */
    CONFIG_LOGFORMAT, /* dest: const char **, one of text|json */
} config_kind_t;

typedef struct config_opt {
    const char *name; /* flag without the leading "--", e.g. "nats" */
    const char *env;  /* env var, or NULL */
    const char *def;  /* default as text, or NULL for "off" / none */
    const char *help; /* one line */
    config_kind_t kind;
    void *dest;
    long min, max; /* CONFIG_INT only */
    int required;  /* a value must come from the flag, the env or def */
} config_opt_t;

/* Values shared by every service (the first rows of the contract's table). */
typedef struct config_common {
    const char *nats_url;
    const char *prefix;
    const char *metrics; /* HOST:PORT or NULL when off */
    const char *log_level;
    const char *log_format; /* "text" or "json" (log.h) */
} config_common_t;

/* Expands to the config_opt_t rows of config_common_t c. One row a line:
 * clang-format spreads each initialiser over nine lines, which hid the rows. */
/* clang-format off */
#define CONFIG_COMMON_OPTS(c)                                                                   \
    {"nats", "PUSH_NATS_URL", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated",   \
     CONFIG_STR, &(c).nats_url, 0, 0, 1},                                                       \
    {"prefix", "PUSH_PREFIX", "push", "prefix of every NATS subject and Redis key",             \
     CONFIG_STR, &(c).prefix, 0, 0, 1},                                                         \
    {"metrics", "PUSH_METRICS", NULL, "HOST:PORT serving /metrics, /healthz, /readyz (off)",    \
     CONFIG_HOSTPORT, &(c).metrics, 0, 0, 0},                                                   \
    {"log-level", "PUSH_LOG_LEVEL", "info", "debug, info, warn or error",                       \
     CONFIG_LOGLEVEL, &(c).log_level, 0, 0, 1},                                                 \
    {"log-format", "PUSH_LOG_FORMAT", "text", "text, or json: one object per line",             \
     CONFIG_LOGFORMAT, &(c).log_format, 0, 0, 1}
/* clang-format on */

enum {
    CONFIG_OK = 0,         /* parsed; carry on */
    CONFIG_EXIT_OK = 1,    /* --help or --version printed; exit 0 */
    CONFIG_EXIT_USAGE = 2, /* a bad flag or value; one line printed on stderr; exit 2 */
};

/*
 * Parse argv against opts (n entries). `usage` is the synopsis printed by
 * --help after "usage: ". Positional arguments are allowed only when
 * `positional` is not NULL: they are moved, in order, to the front of
 * argv[1..] and their count is stored in *positional. Accepts "--flag value"
 * and "--flag=value". Returns one of the CONFIG_* codes above.
 */
int config_parse(const char *program, const char *usage, config_opt_t *opts, size_t n, int argc,
                 char **argv, int *positional);

/* Print --help text for opts to stdout. */
void config_print_help(const char *program, const char *usage, const config_opt_t *opts, size_t n);

/* Split "HOST:PORT" into host (NUL-terminated, at most host_size-1 bytes) and port.
 * Returns 0, or -1 if malformed. */
int config_split_hostport(const char *hostport, char *host, size_t host_size, int *port);

#endif
