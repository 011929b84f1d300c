/* expiry: see expiry.h. */
#include "expiry.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

struct expiry {
    store_t *store;
    size_t channel_history;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    metrics_series_t *dropped, *trimmed;
};

static void *expiry_loop(void *arg)
{
    pthread_setname_np(pthread_self(), "expiry");
    expiry_t *e = arg;
    pthread_mutex_lock(&e->lock);
    while (!e->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += EXPIRY_INTERVAL_S;
        pthread_cond_timedwait(&e->wake, &e->lock, &until);
        if (e->stop)
            break;
        pthread_mutex_unlock(&e->lock);
        int n = store_expire(e->store, ids_now_ms() - EXPIRY_GRACE_MS);
        if (n > 0) {
            metrics_add(e->dropped, n);
            LOG_D("dropped %d expired message(s)", n);
        }
        n = store_trim_channels(e->store, e->channel_history);
        if (n > 0) {
            metrics_add(e->trimmed, n);
            LOG_D("dropped %d channel message(s) beyond --channel-history", n);
        }
        pthread_mutex_lock(&e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
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
    e->dropped = metrics_counter("push_collect_expired_total", NULL,
                                 "Expired messages dropped from the store");
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->wake, NULL);
    pthread_create(&e->thread, NULL, expiry_loop, e);
    return e;
}

void expiry_stop(expiry_t *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    e->stop = 1;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->thread, NULL);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->wake);
    free(e);
}
