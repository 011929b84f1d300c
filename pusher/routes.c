/* routes: see routes.h. */
#include "routes.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chan.h"
#include "bgloop.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "strmap.h"

#define ROUTES_PIPELINE 1000 /* commands in flight per round trip */
#define ROUTES_TICK_MS 1000  /* the loop's period: slices, reconnects, pings */
/* With nothing else to write (no users held), a PING at least this often:
 * otherwise an idle node learns that Redis is gone only from its next
 * write, and /readyz says 200 for the whole outage. Below the tick, so
 * every idle tick pings and a loss shows within about a second. */
#define ROUTES_PING_MS 500

/* Values in routes_t.users: a user held here whose route was not yet
 * written (and announced to the service thread), or one that was. */
#define ROUTES_HELD ((void *)1)
#define ROUTES_ANNOUNCED ((void *)2)

typedef struct routes_op {
    struct routes_op *next;
    int add;
    char user[];
} routes_op_t;

struct routes {
    redisx_url_t url;
    char prefix[128];
    char node[256];
    long ttl_s;
    handoff_t *to_service;
    bgloop_t *loop;
    pthread_mutex_t lock; /* the queue */
    routes_op_t *head, *tail;
    atomic_int up;
    /* thread-owned */
    redisContext *c;
    strmap_t *users;   /* users (and channels) held here -> ROUTES_HELD or ROUTES_ANNOUNCED */
    size_t n_channels; /* of which channels ("\x01<channel>") */
    int need_full;     /* write every user (after connect) */
    /* Refresh in slices: every second the users whose hash falls in that
     * second's slice, so each is written every `slices` seconds (route_ttl /
     * 3) and Redis sees a steady trickle, not every user at once (which at
     * 10k users held up the dispatchers' lookups for ~100 ms). */
    unsigned slices, slice;
    int64_t next_slice_ms, retry_at_ms; /* clock_mono_ms */
    int64_t answered_ms;                /* clock_mono_ms of Redis's last answer */
    int logged_down;
    metrics_series_t *errors, *users_gauge;
};

static void routes_queue(routes_t *r, const char *user, int add)
{
    size_t n = strlen(user);
    routes_op_t *op = malloc(sizeof *op + n + 1);
    if (!op)
        return;
    op->next = NULL;
    op->add = add;
    memcpy(op->user, user, n + 1);
    pthread_mutex_lock(&r->lock);
    if (r->tail)
        r->tail->next = op;
    else
        r->head = op;
    r->tail = op;
    pthread_mutex_unlock(&r->lock);
    bgloop_wake(r->loop);
}

void routes_add(routes_t *r, const char *user)
{
    routes_queue(r, user, 1);
}
void routes_remove(routes_t *r, const char *user)
{
    routes_queue(r, user, 0);
}

/* A channel is kept in the same map as the users, as "\x01<channel>":
 * user ids hold no control characters, so the two never meet, and a
 * channel's entry is written, refreshed, rewritten after an outage and
 * removed exactly as a user's is, in its own key (lib/chan.h). */
static void routes_queue_channel(routes_t *r, const char *channel, int add)
{
    char name[CHAN_MAX_NAME + 2];
    snprintf(name, sizeof name, "%c%s", ROUTES_CHANNEL_MARK, channel);
    routes_queue(r, name, add);
}

void routes_add_channel(routes_t *r, const char *channel)
{
    routes_queue_channel(r, channel, 1);
}
void routes_remove_channel(routes_t *r, const char *channel)
{
    routes_queue_channel(r, channel, 0);
}
int routes_up(routes_t *r)
{
    return atomic_load(&r->up);
}

static void routes_down(routes_t *r, const char *why)
{
    metrics_inc(r->errors);
    if (!r->logged_down)
        LOG_W("redis: routes of node %s not written (%s); retrying every second, connections stay "
              "up and every route is written again when Redis answers",
              r->node, why);
    r->logged_down = 1;
    atomic_store(&r->up, 0);
    if (r->c)
        redisFree(r->c);
    r->c = NULL;
}

/* Append the commands for one user; returns how many replies to read. */
static int routes_append(routes_t *r, const char *user, int add, time_t now)
{
    char key[512], score[32], ttl[32];
    size_t kl = user[0] == ROUTES_CHANNEL_MARK
                    ? chan_route_key(key, sizeof key, r->prefix, user + 1)
                    : redisx_route_key(key, sizeof key, r->prefix, user);
    if (!add) {
        const char *argv[] = {"ZREM", key, r->node};
        size_t lens[] = {4, kl, strlen(r->node)};
        redisAppendCommandArgv(r->c, 3, argv, lens);
        return 1;
    }
    snprintf(score, sizeof score, "%lld", (long long)(now + r->ttl_s));
    snprintf(ttl, sizeof ttl, "%ld", r->ttl_s);
    const char *za[] = {"ZADD", key, score, r->node};
    size_t zl[] = {4, kl, strlen(score), strlen(r->node)};
    redisAppendCommandArgv(r->c, 4, za, zl);
    /* The key lives as long as its longest-lived member could count:
     * GT keeps a later expiry another node set (Redis >= 7). */
    const char *ea[] = {"EXPIRE", key, ttl, "GT"};
    size_t el[] = {6, kl, strlen(ttl), 2};
    const char *ea_nx[] = {"EXPIRE", key, ttl, "NX"};
    size_t el_nx[] = {6, kl, strlen(ttl), 2};
    redisAppendCommandArgv(r->c, 4, ea_nx, el_nx);
    redisAppendCommandArgv(r->c, 4, ea, el);
    return 3;
}

static int routes_read(routes_t *r, int n)
{
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(r->c, (void **)&rep) != REDIS_OK || !rep) {
            routes_down(r, r->c && r->c->errstr[0] ? r->c->errstr : "no reply");
            return -1;
        }
        if (rep->type == REDIS_REPLY_ERROR)
            LOG_W("redis: route command refused: %s", rep->str);
        freeReplyObject(rep);
    }
    r->answered_ms = clock_mono_ms();
    return 0;
}

typedef struct routes_batch {
    routes_t *r;
    time_t now;
    int pending;
    int failed;
    int slice; /* routes_refresh: the slice to write, or -1 for all */
    const char *announce[ROUTES_PIPELINE];
    int n_announce;
} routes_batch_t;

static void routes_announce(routes_t *r, const char *user)
{
    handoff_ev_t *ev = handoff_ev_new(HANDOFF_ROUTED);
    if (ev && (ev->user = strdup(user)))
        handoff_push(r->to_service, ev);
    else
        handoff_ev_free(ev);
}

static void routes_batch_flush(routes_batch_t *b)
{
    if (b->failed || !b->pending)
        return;
    if (routes_read(b->r, b->pending) != 0) {
        b->failed = 1;
        return;
    }
    for (int i = 0; i < b->n_announce; i++) {
        strmap_put(b->r->users, b->announce[i], ROUTES_ANNOUNCED);
        routes_announce(b->r, b->announce[i]);
    }
    b->pending = 0;
    b->n_announce = 0;
}

static void routes_refresh_one(void *arg, const char *user, void *value)
{
    routes_batch_t *b = arg;
    if (b->failed)
        return;
    if (b->slice >= 0 && value == ROUTES_ANNOUNCED &&
        strmap_hash(user) % b->r->slices != (unsigned)b->slice)
        return; /* another second's slice; not yet written ones always go */
    b->pending += routes_append(b->r, user, 1, b->now);
    if (value != ROUTES_ANNOUNCED)
        b->announce[b->n_announce++] = user; /* key memory is the map's: stable during each() */
    if (b->pending >= ROUTES_PIPELINE || b->n_announce == ROUTES_PIPELINE)
        routes_batch_flush(b);
}

/* Write every user held here (slice -1), or this second's slice of them
 * (pipelined). */
static void routes_refresh(routes_t *r, time_t now, int slice)
{
    routes_batch_t b = {.r = r, .now = now, .slice = slice};
    strmap_each(r->users, routes_refresh_one, &b);
    routes_batch_flush(&b);
    if (!b.failed) {
        if (slice < 0)
            r->need_full = 0;
        r->next_slice_ms = clock_mono_ms() + ROUTES_TICK_MS;
    }
}

static void routes_apply(routes_t *r, routes_op_t *ops, time_t now)
{
    /* Bring the set of users up to date first: it is the truth even while
     * Redis is away; what fails to be written is written by the next full pass. */
    routes_batch_t b = {.r = r, .now = now};
    for (routes_op_t *op = ops; op; op = op->next) {
        int is_channel = op->user[0] == ROUTES_CHANNEL_MARK;
        if (op->add) {
            if (!strmap_get(r->users, op->user) && strmap_put(r->users, op->user, ROUTES_HELD) == 0)
                r->n_channels += is_channel;
        } else if (strmap_remove(r->users, op->user)) {
            r->n_channels -= is_channel;
        }
    }
    if (!r->c || r->need_full)
        return;
    for (routes_op_t *op = ops; op && !b.failed; op = op->next) {
        int still_here = strmap_get(r->users, op->user) != NULL || !op->add;
        if (!still_here)
            continue;
        if (op->add && strmap_get(r->users, op->user) == ROUTES_ANNOUNCED)
            continue; /* already written and announced */
        b.pending += routes_append(r, op->user, op->add, now);
        if (op->add && b.n_announce < ROUTES_PIPELINE) {
            /* announce after the write; the map key outlives the batch */
            b.announce[b.n_announce++] = op->user;
        }
        if (b.pending >= ROUTES_PIPELINE || b.n_announce == ROUTES_PIPELINE)
            routes_batch_flush(&b);
    }
    routes_batch_flush(&b);
    if (b.failed)
        r->need_full = 1;
}

/* Is Redis still there? A dropped connection is noticed here, not only
 * by the next route write, which may be far off on an idle node. */
static void routes_ping(routes_t *r)
{
    redisReply *rep = redisCommand(r->c, "PING");
    if (!rep) {
        routes_down(r, r->c->errstr[0] ? r->c->errstr : "no answer to PING");
        return;
    }
    freeReplyObject(rep); /* an error reply (e.g. LOADING) still means it is there */
    r->answered_ms = clock_mono_ms();
}

/* The loop's run: after each queued change, and every ROUTES_TICK_MS.
 * Monotonic time paces it; wall time is only the routes' scores, which
 * other processes compare. */
static int routes_run(void *arg)
{
    routes_t *r = arg;
    pthread_mutex_lock(&r->lock);
    routes_op_t *ops = r->head;
    r->head = r->tail = NULL;
    pthread_mutex_unlock(&r->lock);

    time_t now = time(NULL);
    int64_t mono = clock_mono_ms();
    if (!r->c && mono >= r->retry_at_ms) {
        r->c = redisx_connect(&r->url, 2000);
        if (r->c) {
            if (r->logged_down)
                LOG_I("redis: back; writing the routes of %zu user(s) of node %s again",
                      strmap_size(r->users), r->node);
            r->logged_down = 0;
            atomic_store(&r->up, 1);
            r->need_full = 1;
            r->answered_ms = mono;
        } else {
            routes_down(r, "cannot connect");
            r->retry_at_ms = mono + ROUTES_TICK_MS;
        }
    }
    /* user names in ops are needed until after the map update: apply,
     * but keep announcements pointing at map keys (routes_apply does). */
    routes_apply(r, ops, now);
    for (routes_op_t *op = ops, *next; op; op = next) {
        next = op->next;
        free(op);
    }
    if (r->c && r->need_full)
        routes_refresh(r, now, -1);
    else if (r->c && mono >= r->next_slice_ms)
        routes_refresh(r, now, (int)(r->slice++ % r->slices));
    if (r->c && clock_mono_ms() - r->answered_ms >= ROUTES_PING_MS)
        routes_ping(r);
    metrics_set(r->users_gauge, (int64_t)(strmap_size(r->users) - r->n_channels));
    return BGLOOP_WAIT;
}

static void routes_remove_all_one(void *arg, const char *user, void *value)
{
    (void)value;
    routes_batch_t *b = arg;
    if (b->failed)
        return;
    b->pending += routes_append(b->r, user, 0, b->now);
    if (b->pending >= ROUTES_PIPELINE) {
        if (routes_read(b->r, b->pending) != 0)
            b->failed = 1;
        b->pending = 0;
    }
}

routes_t *routes_start(const redisx_url_t *url, const char *prefix, const char *node, long ttl_s,
                       handoff_t *to_service)
{
    routes_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->url = *url;
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    snprintf(r->node, sizeof r->node, "%s", node);
    r->ttl_s = ttl_s;
    r->slices = ttl_s / 3 > 0 ? (unsigned)(ttl_s / 3) : 1;
    r->to_service = to_service;
    r->users = strmap_new();
    r->errors =
        metrics_counter("push_pusher_redis_errors_total", NULL, "Redis failures writing routes");
    r->users_gauge =
        metrics_gauge("push_pusher_users", NULL, "Distinct users with a route from this node");
    pthread_mutex_init(&r->lock, NULL);
    r->c = redisx_connect(&r->url, 2000);
    atomic_store(&r->up, r->c != NULL);
    if (!r->c)
        routes_down(r, "cannot connect");
    r->answered_ms = clock_mono_ms();
    r->retry_at_ms = r->answered_ms + ROUTES_TICK_MS;
    if (bgloop_start(&r->loop, "routes", ROUTES_TICK_MS, routes_run, r) != 0) {
        LOG_E("cannot start the routes thread");
        if (r->c)
            redisFree(r->c);
        strmap_free(r->users);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    return r;
}

void routes_stop(routes_t *r)
{
    if (!r)
        return;
    bgloop_stop(r->loop);
    routes_run(r); /* the thread is gone: apply what was queued before the stop */
    if (r->c) {
        routes_batch_t b = {.r = r, .now = time(NULL)};
        strmap_each(r->users, routes_remove_all_one, &b);
        if (!b.failed && b.pending)
            routes_read(r, b.pending);
        LOG_I("redis: removed node %s from the routes of %zu user(s) and channel(s)", r->node,
              strmap_size(r->users));
        redisFree(r->c);
    }
    strmap_free(r->users);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
