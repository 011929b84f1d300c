/* routes_lookup: see routes_lookup.h. */
#include "routes_lookup.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chan.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"

struct routes_lookup {
    redisx_url_t url;
    char prefix[128];
    redisContext *c;
    atomic_int up;
    int logged_down;
    long long retry_at_ms; /* no reconnect before this (monotonic ms) */
    long long backoff_ms;  /* doubles per failed reconnect, up to ROUTES_LOOKUP_BACKOFF_MAX_MS */
    metrics_series_t *errors;
};

#define ROUTES_LOOKUP_BACKOFF_MIN_MS 250
#define ROUTES_LOOKUP_BACKOFF_MAX_MS 5000

routes_lookup_t *routes_lookup_new(const redisx_url_t *url, const char *prefix)
{
    routes_lookup_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->url = *url;
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    r->errors = metrics_counter("push_dispatch_redis_errors_total", NULL,
                                "Route lookups that failed on Redis");
    return r; /* connects on the first lookup */
}

void routes_lookup_free(routes_lookup_t *r)
{
    if (!r)
        return;
    if (r->c)
        redisFree(r->c);
    free(r);
}

int routes_lookup_up(routes_lookup_t *r)
{
    return atomic_load(&r->up);
}

static int routes_lookup_fail(routes_lookup_t *r, const char *why)
{
    metrics_inc(r->errors);
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : ROUTES_LOOKUP_BACKOFF_MIN_MS;
    if (r->backoff_ms > ROUTES_LOOKUP_BACKOFF_MAX_MS)
        r->backoff_ms = ROUTES_LOOKUP_BACKOFF_MAX_MS;
    r->retry_at_ms = clock_mono_ms() + r->backoff_ms;
    if (!r->logged_down)
        LOG_W("redis: route lookup failed (%s) at %s:%d; deliveries wait and are retried", why,
              r->url.host, r->url.port);
    r->logged_down = 1;
    atomic_store(&r->up, 0);
    if (r->c)
        redisFree(r->c);
    r->c = NULL;
    return -1;
}

int routes_lookup_nodes(routes_lookup_t *r, char *const *users, const unsigned char *is_channel,
                        size_t n, long long now_s, routes_found_fn fn, void *arg)
{
    if (!r->c) {
        /* Reconnect with backoff, so an outage costs neither a connect
         * timeout per batch nor a log line per attempt. */
        if (r->retry_at_ms && clock_mono_ms() < r->retry_at_ms)
            return -1;
        if (!(r->c = redisx_connect(&r->url, 2000)))
            return routes_lookup_fail(r, "cannot connect");
    }
    char key[512], min[32];
    snprintf(min, sizeof min, "%lld", now_s);
    for (size_t i = 0; i < n; i++) {
        size_t kl = is_channel && is_channel[i]
                        ? chan_route_key(key, sizeof key, r->prefix, users[i])
                        : redisx_route_key(key, sizeof key, r->prefix, users[i]);
        if (kl >= sizeof key)
            kl = sizeof key - 1; /* (not a user id we accept: it finds no route) */
        const char *argv[] = {"ZRANGEBYSCORE", key, min, "+inf"};
        size_t lens[] = {13, kl, strlen(min), 4};
        if (redisAppendCommandArgv(r->c, 4, argv, lens) != REDIS_OK)
            return routes_lookup_fail(r, r->c->errstr);
    }
    /* Read every reply before reporting any, so a failure midway reports
     * nothing and the caller's retry does not see half a lookup twice. */
    redisReply **replies = calloc(n ? n : 1, sizeof *replies);
    if (!replies)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (redisGetReply(r->c, (void **)&replies[i]) != REDIS_OK || !replies[i]) {
            for (size_t k = 0; k < i; k++)
                freeReplyObject(replies[k]);
            free(replies);
            return routes_lookup_fail(r, r->c->errstr[0] ? r->c->errstr : "no reply");
        }
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *reply = replies[i];
        if (reply->type == REDIS_REPLY_ARRAY) {
            for (size_t k = 0; k < reply->elements; k++)
                if (reply->element[k]->type == REDIS_REPLY_STRING)
                    fn(arg, i, reply->element[k]->str);
        } else if (reply->type == REDIS_REPLY_ERROR) {
            LOG_W("redis: ZRANGEBYSCORE for %s: %s; counted as offline", users[i], reply->str);
        }
        freeReplyObject(reply);
    }
    free(replies);
    if (r->logged_down)
        LOG_I("redis: route lookups work again at %s:%d", r->url.host, r->url.port);
    r->logged_down = 0;
    r->backoff_ms = r->retry_at_ms = 0;
    atomic_store(&r->up, 1);
    return 0;
}
