/* collector: takes publishes, stores them, hands them to the dispatcher. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accept.h"
#include "collect.h"
#include "config.h"
#include "handover.h"
#include "history.h"
#include "http.h"
#include "httpd.h"
#include "jsx.h"
#include "log.h"
#include "natsx.h"
#include "signals.h"
#include "store.h"
#include "expiry.h"
#include "writer.h"

typedef struct collector_ready_ctx {
    natsConnection *nc, *nc_handover;
    store_t *store;
    atomic_int started; /* every door (NATS, --http) is open */
} collector_ready_ctx_t;

static int collector_ready(void *arg)
{
    collector_ready_ctx_t *r = arg;
    return atomic_load(&r->started) && natsx_connected(r->nc) && natsx_connected(r->nc_handover) &&
           store_healthy(r->store);
}

int main(int argc, char **argv)
{
    signals_init();
    log_init("collector");
    config_common_t common = {0};
    const char *store_uri = NULL, *http_at = NULL;
    long channel_history = HISTORY_DEFAULT_KEEP;
    long stream_replicas = 1;
    config_opt_t opts[] = {
        CONFIG_COMMON_OPTS(common),
        {"store", "PUSH_STORE", "sqlite:push.db", "sqlite:PATH or mongodb://...", CONFIG_STR,
         &store_uri, 0, 0, 1},
        {"http", "PUSH_HTTP", NULL, "HOST:PORT for HTTP ingest, POST /v1/messages (off)",
         CONFIG_HOSTPORT, &http_at, 0, 0, 0},
        {"channel-history", "PUSH_CHANNEL_HISTORY", "1000",
         "kept messages per channel (those with ttl > 0) for recovery with since", CONFIG_INT,
         &channel_history, 0, 1000000, 1},
        {"stream-replicas", "PUSH_STREAM_REPLICAS", "1",
         "replicas of the JetStream dispatch stream, 1 to 5 (3 on a NATS cluster)", CONFIG_INT,
         &stream_replicas, 1, JSX_MAX_REPLICAS, 1},
    };
    int rc = config_parse("collector", "collector [flags]", opts, sizeof opts / sizeof opts[0],
                          argc, argv, NULL);
    if (rc != CONFIG_OK)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    if (!store_uri_known(store_uri)) {
        fprintf(stderr, "collector: --store: '%s' is neither sqlite:PATH nor mongodb://...\n",
                store_uri);
        return 2;
    }
    log_set_level_name(common.log_level);
    log_set_format_name(common.log_format);

    char err[512];
    store_t *store = store_open(store_uri, err, sizeof err);
    if (!store) {
        LOG_E("%s; not starting", err);
        return 1;
    }
    /* The hand-over's publishes go out at once, on a connection of their
     * own (natsx_connect_now): each round is a hop of every message it
     * carries. Submissions, replies and the rest share nats.c's writes. */
    natsConnection *nc = NULL, *nc_handover = NULL;
    if (natsx_connect(&nc, common.nats_url, "collector") != NATS_OK ||
        natsx_connect_now(&nc_handover, common.nats_url, "collector-handover") != NATS_OK) {
        natsx_close(nc);
        store_close(store);
        return 1;
    }
    collector_ready_ctx_t ready = {nc, nc_handover, store, 0};
    httpd_t *metrics =
        common.metrics ? httpd_start_metrics(common.metrics, collector_ready, &ready) : NULL;
    /* sqlite: one collector, the stream's only publisher (handover.h) */
    int sole_publisher = strncmp(store_uri, "sqlite:", 7) == 0;
    handover_t *handover =
        handover_start(nc_handover, common.prefix, (int)stream_replicas, sole_publisher, store);
    accept_t *accept = handover ? accept_new(store, handover) : NULL;
    writer_t *writer = accept ? writer_start(nc, store, handover, accept) : NULL;
    collect_t *collect =
        writer ? collect_start(nc, common.prefix, accept, writer, store, (size_t)channel_history)
               : NULL;
    httpd_t *http = http_at && collect ? http_ingest_start(http_at, accept, writer) : NULL;
    expiry_t *expiry = expiry_start(store, (size_t)channel_history);
    int ok = collect && expiry && (!common.metrics || metrics) && (!http_at || http);
    if (ok) {
        atomic_store(&ready.started, 1);
        /* A mongodb:// URI may carry a password: log what follows the '@'. */
        const char *at = strchr(store_uri, '@');
        int scheme_len = (int)strcspn(store_uri, ":");
        if (at)
            LOG_I("running with store %.*s://***@%s", scheme_len, store_uri, at + 1);
        else
            LOG_I("running with store %s", store_uri);
        int sig = signals_wait();
        LOG_I("signal %d, stopping", sig);
    }
    httpd_stop(http);
    collect_stop(collect); /* no more submissions */
    writer_stop(writer);   /* stores and answers what was submitted */
    expiry_stop(expiry);
    handover_stop(handover);
    accept_free(accept);
    httpd_stop(metrics);
    natsx_close(nc_handover);
    natsx_close(nc);
    store_close(store);
    nats_Close();
    return ok ? 0 : 1;
}
