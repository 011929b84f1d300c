/* Unit tests of lib/config: precedence, validation, positional arguments. */
#include <stdlib.h>

#include "check.h"
#include "config.h"

static const char *nats, *listen_at;
static long ttl;
static int verbose;

static config_opt_t opts[] = {
    {"nats", "T_NATS", "nats://127.0.0.1:4222", "url", CONFIG_STR, &nats, 0, 0, 1},
    {"route-ttl", "T_TTL", "60", "seconds", CONFIG_INT, &ttl, 5, 86400, 1},
    {"listen", "T_LISTEN", NULL, "addr", CONFIG_HOSTPORT, &listen_at, 0, 0, 0},
    {"verbose", NULL, NULL, "flag", CONFIG_FLAG, &verbose, 0, 0, 0},
};
#define N (sizeof opts / sizeof opts[0])

static int parse(int argc, char **argv, int *npos)
{
    nats = listen_at = NULL;
    ttl = 0;
    verbose = 0;
    return config_parse("t", "t", opts, N, argc, argv, npos);
}

static void defaults_apply_when_nothing_given(void)
{
    unsetenv("T_NATS"), unsetenv("T_TTL"), unsetenv("T_LISTEN");
    char *argv[] = {"t", NULL};
    CHECK_INT(parse(1, argv, NULL), CONFIG_OK);
    CHECK_STR(nats, "nats://127.0.0.1:4222");
    CHECK_INT(ttl, 60);
    CHECK(listen_at == NULL);
    CHECK_INT(verbose, 0);
}

static void env_wins_over_default_and_flag_wins_over_env(void)
{
    setenv("T_TTL", "30", 1);
    char *argv0[] = {"t", NULL};
    CHECK_INT(parse(1, argv0, NULL), CONFIG_OK);
    CHECK_INT(ttl, 30);
    char *argv[] = {"t", "--route-ttl", "90", NULL};
    CHECK_INT(parse(3, argv, NULL), CONFIG_OK);
    CHECK_INT(ttl, 90);
    char *argv2[] = {"t", "--route-ttl=120", "--verbose", NULL};
    CHECK_INT(parse(3, argv2, NULL), CONFIG_OK);
    CHECK_INT(ttl, 120);
    CHECK_INT(verbose, 1);
    unsetenv("T_TTL");
}

static void bad_values_are_usage_errors(void)
{
    char *a1[] = {"t", "--route-ttl", "4", NULL};
    CHECK_INT(parse(3, a1, NULL), CONFIG_EXIT_USAGE);
    char *a2[] = {"t", "--route-ttl", "12x", NULL};
    CHECK_INT(parse(3, a2, NULL), CONFIG_EXIT_USAGE);
    char *a3[] = {"t", "--listen", "localhost", NULL};
    CHECK_INT(parse(3, a3, NULL), CONFIG_EXIT_USAGE);
    char *a4[] = {"t", "--listen", "h:0", NULL};
    CHECK_INT(parse(3, a4, NULL), CONFIG_EXIT_USAGE);
    char *a5[] = {"t", "--nope", NULL};
    CHECK_INT(parse(2, a5, NULL), CONFIG_EXIT_USAGE);
    char *a6[] = {"t", "--nats", NULL};
    CHECK_INT(parse(2, a6, NULL), CONFIG_EXIT_USAGE);
    char *a7[] = {"t", "stray", NULL};
    CHECK_INT(parse(2, a7, NULL), CONFIG_EXIT_USAGE);
    char *a8[] = {"t", "--verbose=1", NULL};
    CHECK_INT(parse(2, a8, NULL), CONFIG_EXIT_USAGE);
    setenv("T_TTL", "zero", 1);
    char *a9[] = {"t", NULL};
    CHECK_INT(parse(1, a9, NULL), CONFIG_EXIT_USAGE);
    unsetenv("T_TTL");
}

static void required_empty_string_is_refused(void)
{
    char *a[] = {"t", "--nats", "", NULL};
    CHECK_INT(parse(3, a, NULL), CONFIG_EXIT_USAGE);
}

static void positional_arguments_are_collected_in_order(void)
{
    char *a[] = {"t", "one", "--route-ttl", "10", "two", "--", "--three", NULL};
    int npos = -1;
    CHECK_INT(parse(7, a, &npos), CONFIG_OK);
    CHECK_INT(npos, 3);
    CHECK_STR(a[1], "one");
    CHECK_STR(a[2], "two");
    CHECK_STR(a[3], "--three");
    CHECK_INT(ttl, 10);
}

static void help_and_version_ask_to_exit_0(void)
{
    char *a[] = {"t", "--help", NULL};
    CHECK_INT(parse(2, a, NULL), CONFIG_EXIT_OK);
    char *b[] = {"t", "--route-ttl", "bad", "--version", NULL};
    CHECK_INT(parse(4, b, NULL), CONFIG_EXIT_USAGE); /* flags are read in order */
    char *c[] = {"t", "--version", NULL};
    CHECK_INT(parse(2, c, NULL), CONFIG_EXIT_OK);
}

static void hostport_splits_ipv4_ipv6_and_names(void)
{
    char host[64];
    int port = 0;
    CHECK_INT(config_split_hostport("127.0.0.1:8080", host, sizeof host, &port), 0);
    CHECK_STR(host, "127.0.0.1");
    CHECK_INT(port, 8080);
    CHECK_INT(config_split_hostport("[::1]:9", host, sizeof host, &port), 0);
    CHECK_STR(host, "::1");
    CHECK_INT(port, 9);
    CHECK_INT(config_split_hostport(":80", host, sizeof host, &port), -1);
    CHECK_INT(config_split_hostport("a:65536", host, sizeof host, &port), -1);
    CHECK_INT(config_split_hostport("a:", host, sizeof host, &port), -1);
}

static void log_format_is_a_common_option_text_or_json(void)
{
    config_common_t common = {0};
    config_opt_t copts[] = {CONFIG_COMMON_OPTS(common)};
    size_t n = sizeof copts / sizeof copts[0];
    unsetenv("PUSH_LOG_FORMAT");
    char *a[] = {"t", NULL};
    CHECK_INT(config_parse("t", "t", copts, n, 1, a, NULL), CONFIG_OK);
    CHECK_STR(common.log_format, "text");
    setenv("PUSH_LOG_FORMAT", "json", 1);
    CHECK_INT(config_parse("t", "t", copts, n, 1, a, NULL), CONFIG_OK);
    CHECK_STR(common.log_format, "json");
    char *b[] = {"t", "--log-format", "text", NULL};
    CHECK_INT(config_parse("t", "t", copts, n, 3, b, NULL), CONFIG_OK);
    CHECK_STR(common.log_format, "text");
    char *c[] = {"t", "--log-format=xml", NULL};
    CHECK_INT(config_parse("t", "t", copts, n, 2, c, NULL), CONFIG_EXIT_USAGE);
    setenv("PUSH_LOG_FORMAT", "Json", 1);
    CHECK_INT(config_parse("t", "t", copts, n, 1, a, NULL), CONFIG_EXIT_USAGE);
    unsetenv("PUSH_LOG_FORMAT");
}

CHECK_MAIN(CHECK_CASE(defaults_apply_when_nothing_given),
           CHECK_CASE(env_wins_over_default_and_flag_wins_over_env),
           CHECK_CASE(bad_values_are_usage_errors), CHECK_CASE(required_empty_string_is_refused),
           CHECK_CASE(positional_arguments_are_collected_in_order),
           CHECK_CASE(help_and_version_ask_to_exit_0),
           CHECK_CASE(hostport_splits_ipv4_ipv6_and_names),
           CHECK_CASE(log_format_is_a_common_option_text_or_json))
