/* pusher: holds the WebSocket connections of one node (see ws.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "httpd.h"
#include "log.h"
#include "natsx.h"
#include "redisx.h"
#include "routes.h"
#include "signals.h"
#include "ws.h"

typedef struct pusher_ready_ctx {
    natsConnection *nc;
    routes_t *routes;
} pusher_ready_ctx_t;

static int pusher_ready(void *arg)
{
    pusher_ready_ctx_t *r = arg;
    return natsx_connected(r->nc) && r->routes && routes_up(r->routes);
}

static void *pusher_signal_thread(void *arg)
{
    int sig = signals_wait();
    LOG_I("signal %d, stopping", sig);
    ws_stop(arg);
    return NULL;
}

/* A node id is one NATS subject token: no '.', '*', '>' or white space. */
static int pusher_node_id_ok(const char *id)
{
    if (!*id || strlen(id) > 200)
        return 0;
    for (const char *p = id; *p; p++)
        if (*p == '.' || *p == '*' || *p == '>' || (unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    return 1;
}

/* Raise the soft open-file limit to the hard one; returns how many
 * descriptors lws may use for connections (the limit less a reserve). */
static unsigned pusher_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        getrlimit(RLIMIT_NOFILE, &rl);
    unsigned long long cap =
        rl.rlim_cur > WS_FD_RESERVE * 2 ? rl.rlim_cur - WS_FD_RESERVE : rl.rlim_cur / 2;
    if (cap > 4000000)
        cap = 4000000;
    LOG_I("open-file limit %llu: at most about %llu connections in this process; past that, "
          "new connections are closed as they are accepted (push_pusher_fd_limit_refused_total)",
          (unsigned long long)rl.rlim_cur, cap);
    return (unsigned)cap;
}

int main(int argc, char **argv)
{
    signals_init();
    log_init("pusher");
    config_common_t common = {0};
    const char *redis_url = NULL, *listen_at = NULL, *node_id = NULL;
    long route_ttl = 60, max_channels = 128;
    config_opt_t opts[] = {
        CONFIG_COMMON_OPTS(common),
        {"redis", "PUSH_REDIS_URL", "redis://127.0.0.1:6379", "Redis URL (routes)", CONFIG_STR,
         &redis_url, 0, 0, 1},
        {"listen", "PUSH_LISTEN", "0.0.0.0:8080", "WebSocket address", CONFIG_HOSTPORT, &listen_at,
         0, 0, 1},
        {"node-id", "PUSH_NODE_ID", NULL, "this node's id (default: host name + port)", CONFIG_STR,
         &node_id, 0, 0, 0},
        {"route-ttl", "PUSH_ROUTE_TTL", "60", "seconds a route counts without a refresh",
         CONFIG_INT, &route_ttl, 5, 86400, 1},
        {"max-channels", "PUSH_MAX_CHANNELS", "128", "channel subscriptions per connection",
         CONFIG_INT, &max_channels, 1, 100000, 1},
    };
    int rc = config_parse("pusher", "pusher [flags]", opts, sizeof opts / sizeof opts[0], argc,
                          argv, NULL);
    if (rc != CONFIG_OK)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    redisx_url_t redis;
    if (redisx_parse_url(redis_url, &redis) != 0) {
        fprintf(stderr, "pusher: --redis: '%s' is not redis://[:password@]host[:port][/db]\n",
                redis_url);
        return 2;
    }
    char host[256], node[256];
    int port = 0;
    config_split_hostport(listen_at, host, sizeof host, &port);
    if (node_id) {
        if (!pusher_node_id_ok(node_id)) {
            fprintf(stderr,
                    "pusher: --node-id: '%s' must be 1..200 characters without '.', '*', '>' or "
                    "spaces\n",
                    node_id);
            return 2;
        }
        snprintf(node, sizeof node, "%s", node_id);
    } else {
        char hn[200] = "pusher";
        gethostname(hn, sizeof hn - 1);
        for (char *p = hn; *p; p++)
            if (*p == '.' || *p == '*' || *p == '>' || (unsigned char)*p <= ' ')
                *p = '_';
        snprintf(node, sizeof node, "%s-%d", hn, port);
    }
    log_set_level_name(common.log_level);
    log_set_format_name(common.log_format);
    unsigned fd_limit = pusher_raise_nofile();

    ws_t *ws = ws_new(host, port, node, fd_limit);
    if (ws)
        ws_set_max_channels(ws, max_channels);
    if (!ws)
        return 1;
    natsConnection *nc = NULL;
    if (natsx_connect(&nc, common.nats_url, "pusher") != NATS_OK) {
        ws_free(ws);
        return 1;
    }
    pusher_ready_ctx_t ready = {nc, NULL};
    routes_t *routes = routes_start(&redis, common.prefix, node, route_ttl, ws_handoff(ws));
    ready.routes = routes;
    bus_t *bus = routes ? bus_start(nc, common.prefix, node, ws_handoff(ws)) : NULL;
    /* after the subscriptions: /readyz never says 200 before deliveries arrive */
    httpd_t *metrics =
        bus && common.metrics ? httpd_start_metrics(common.metrics, pusher_ready, &ready) : NULL;
    int ok = bus && (!common.metrics || metrics);
    pthread_t sig_thread;
    if (ok && pthread_create(&sig_thread, NULL, pusher_signal_thread, ws) != 0) {
        LOG_E("cannot start the signal thread; not starting");
        ok = 0;
    }
    if (ok) {
        ws_attach(ws, bus, routes);
        LOG_I("node %s serving ws://%s:%d/ws", node, host, port);
        ws_run(ws);
        pthread_join(sig_thread, NULL);
    }
    /* Stop inflow first, then the server, then the routes (removing ours). */
    bus_stop(bus);
    ws_free(ws);
    ready.routes = NULL;
    routes_stop(routes);
    httpd_stop(metrics);
    natsx_close(nc);
    nats_Close();
    return ok ? 0 : 1;
}
