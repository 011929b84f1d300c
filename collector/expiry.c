/* expiry: see expiry.h. */
#include "expiry.h"

#include <stdlib.h>

#include "bgloop.h"
#include "log.h"
#include "metrics.h"

struct expiry {
    store_t *store;
    size_t channel_history;
    bgloop_t *loop;
    metrics_series_t *dropped, *trimmed, *indexed;
};

static int expiry_run(void *arg)
{
    expiry_t *e = arg;
    int n = store_index(e->store, ids_now_ms());
    if (n > 0)
        metrics_add(e->indexed, n);
    n = store_expire(e->store, ids_now_ms() - EXPIRY_GRACE_MS);
    if (n > 0) {
        metrics_add(e->dropped, n);
        LOG_D("dropped %d expired message(s)", n);
    }
    n = store_trim_channels(e->store, e->channel_history);
    if (n > 0) {
        metrics_add(e->trimmed, n);
        LOG_D("dropped %d channel message(s) beyond --channel-history", n);
    }
    return BGLOOP_WAIT;
}

expiry_t *expiry_start(store_t *store, size_t channel_history)
{
    expiry_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->store = store;
    e->channel_history = channel_history;
    e->trimmed = metrics_counter("push_collect_channel_trimmed_total", NULL,
                                 "Channel messages dropped beyond --channel-history");
    e->indexed = metrics_counter("push_collect_indexed_total", NULL,
                                 "Stored messages whose recipients the store indexed by user");
    e->dropped = metrics_counter("push_collect_expired_total", NULL,
                                 "Expired messages dropped from the store");
    if (bgloop_start(&e->loop, "expiry", EXPIRY_INTERVAL_S * 1000, expiry_run, e) != 0) {
        LOG_E("cannot start the expiry thread");
        free(e);
        return NULL;
    }
    return e;
}

void expiry_stop(expiry_t *e)
{
    if (!e)
        return;
    bgloop_stop(e->loop);
    free(e);
}
