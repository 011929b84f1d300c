/* dispatcher: routes stored messages to the pushers that hold their users. */
#include <stdio.h>

#include "config.h"
#include "consume.h"
#include "httpd.h"
#include "log.h"
#include "natsx.h"
#include "presence.h"
#include "redisx.h"
#include "signals.h"

typedef struct dispatcher_ready_ctx {
    natsConnection *nc;
    consume_t *consume;
} dispatcher_ready_ctx_t;

static int dispatcher_ready(void *arg)
{
    dispatcher_ready_ctx_t *r = arg;
    return natsx_connected(r->nc) && r->consume && consume_ready(r->consume);
}

int main(int argc, char **argv)
{
    signals_init();
    log_init("dispatcher");
    config_common_t common = {0};
    const char *redis_url = NULL;
    config_opt_t opts[] = {
        CONFIG_COMMON_OPTS(common),
        {"redis", "PUSH_REDIS_URL", "redis://127.0.0.1:6379", "Redis URL (routes)", CONFIG_STR,
         &redis_url, 0, 0, 1},
    };
    int rc = config_parse("dispatcher", "dispatcher [flags]", opts, sizeof opts / sizeof opts[0],
                          argc, argv, NULL);
    if (rc != CONFIG_OK)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    redisx_url_t redis;
    if (redisx_parse_url(redis_url, &redis) != 0) {
        fprintf(stderr, "dispatcher: --redis: '%s' is not redis://[:password@]host[:port][/db]\n",
                redis_url);
        return 2;
    }
    log_set_level_name(common.log_level);
    log_set_format_name(common.log_format);

    natsConnection *nc = NULL;
    if (natsx_connect(&nc, common.nats_url, "dispatcher") != NATS_OK)
        return 1;
    dispatcher_ready_ctx_t ready = {nc, NULL};
    httpd_t *metrics =
        common.metrics ? httpd_start_metrics(common.metrics, dispatcher_ready, &ready) : NULL;
    consume_t *consume = consume_start(nc, common.prefix, &redis);
    ready.consume = consume;
    presence_t *presence = presence_start(nc, common.prefix, &redis);
    int ok = consume && presence && (!common.metrics || metrics);
    if (ok) {
        LOG_I("running");
        int sig = signals_wait();
        LOG_I("signal %d, stopping", sig);
    }
    presence_stop(presence);
    ready.consume = NULL;
    consume_stop(consume);
    httpd_stop(metrics);
    natsx_close(nc);
    nats_Close();
    return ok ? 0 : 1;
}
