/* handover: see handover.h. */
#include "handover.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bgloop.h"
#include "chunk.h"
#include "ids.h"
#include "jsx.h"
#include "log.h"
#include "metrics.h"
#include "natsx.h"
#include "strmap.h"

/* Message ids some threads add to and one takes whole. */
typedef struct idlist {
    pthread_mutex_t lock;
    char **ids;
    size_t n, cap;
} idlist_t;

/* Adds copies of ids[0..n), all or none. Returns 0, or -1 out of memory. */
static int idlist_add(idlist_t *l, char *const *ids, size_t n)
{
    pthread_mutex_lock(&l->lock);
    size_t at = l->n;
    int rc = 0;
    if (l->n + n > l->cap) {
        size_t cap = l->cap ? l->cap : 1024;
        while (cap < l->n + n)
            cap *= 2;
        char **grown = realloc(l->ids, cap * sizeof *grown);
        if (grown) {
            l->ids = grown;
            l->cap = cap;
        } else {
            rc = -1;
        }
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        if ((l->ids[l->n] = strdup(ids[i])))
            l->n++;
        else
            rc = -1;
    while (rc != 0 && l->n > at)
        free(l->ids[--l->n]);
    pthread_mutex_unlock(&l->lock);
    return rc;
}

/* Takes every id added so far (the caller frees them with idlist_free). */
static char **idlist_take(idlist_t *l, size_t *n)
{
    pthread_mutex_lock(&l->lock);
    char **ids = l->ids;
    *n = l->n;
    l->ids = NULL;
    l->n = l->cap = 0;
    pthread_mutex_unlock(&l->lock);
    return ids;
}

static void idlist_free(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

struct handover {
    natsConnection *nc;
    jsCtx *js;
    jsCtx *js_async; /* publishes of handover_send_batch */
    idlist_t acked;  /* stream message ids acked since the round began */
    store_t *store;
    const char *prefix;
    int stream_replicas;
    atomic_int stream_ok;
    atomic_int fell_behind; /* handover_fell_behind: "behind" from the next round or pass */
    /* Order between the two senders (handover_send_batch, the retry loop):
     * each holds pub_lock for its whole round or pass. After a round or a
     * pass left something unacked, "behind" is set: rounds publish nothing
     * (their messages stay stored, unmarked) until a retry pass has sent
     * every unmarked message in id order. A newer message can then never
     * reach the stream ahead of an older one that failed. */
    pthread_mutex_t pub_lock;
    int behind;      /* under pub_lock; set at start, so leftovers go first */
    bgloop_t *retry; /* the retry loop */
    metrics_series_t *sent, *errors, *retried, *too_large;
    metrics_histogram_t *age; /* accepted -> acked by the stream */
    /* Acked messages not marked dispatched yet: the marks are a store
     * transaction, and taking the store's lock here would hold the next
     * round behind the writer's commit; the writer marks them after its
     * next batch (handover_flush_marks), the retry loop before its pass. */
    idlist_t marks;
    /* held through a flush's transaction: the retry loop's flush returns
     * only once the writer's is committed, so its pass never sees a
     * message acked but not yet marked (it would send it again) */
    pthread_mutex_t flush_lock;
};

/* Queue ids to be marked dispatched; marks at once when out of memory
 * (correct, only slower). */
static void handover_defer_marks(handover_t *h, char *const *ids, size_t n)
{
    if (n && idlist_add(&h->marks, ids, n) != 0 &&
        store_mark_dispatched_many(h->store, ids, n) != STORE_OK) {
        LOG_W("handover: %zu message(s) handed over but not marked; the retry loop hands them "
              "over again",
              n);
        atomic_store(&h->fell_behind, 1);
    }
}

void handover_flush_marks(handover_t *h)
{
    pthread_mutex_lock(&h->flush_lock);
    size_t n = 0;
    char **ids = idlist_take(&h->marks, &n);
    if (n && store_mark_dispatched_many(h->store, ids, n) != STORE_OK) {
        LOG_W("handover: %zu message(s) handed over but not marked; the retry loop hands them "
              "over again",
              n);
        atomic_store(&h->fell_behind, 1);
    }
    pthread_mutex_unlock(&h->flush_lock);
    idlist_free(ids, n);
}

static void handover_on_async_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                                  void *closure)
{
    (void)js;
    handover_t *h = closure;
    const char *id = NULL;
    if (pa && natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id) {
        /* out of memory: counted as not acked, so handed over again */
        idlist_add(&h->acked, (char *const *)&id, 1);
    } else if (pae) {
        metrics_inc(h->errors);
    }
    natsMsg_Destroy(msg);
}

/* One round of hand-over, under pub_lock: messages added in id order are
 * cut into parts by shard and gathered into one stream message per shard
 * (chunk.h), published asynchronously; the end waits
 * once for the stream's acks and marks dispatched, in one transaction, the
 * messages whose every part was acked. After the first publish that failed,
 * nothing more of the round goes out; the rest is left for the next
 * catch-up pass (order). */
typedef struct handover_round {
    strmap_t *waiting; /* message id -> parts not acked yet */
    strmap_t *chunks;  /* stream message id -> char ** of its parts' message ids */
    chunk_t open[JSX_SHARDS];
    char **skip; /* too large for NATS: marked without the stream */
    size_t n_skip, cap_skip;
    int shortfall;  /* something was not published or not acked */
    int from_retry; /* the retry loop's own pass: no need to wake it */
    int connected;  /* the round began connected, on epoch: */
    uint64_t epoch; /* the connection every publish of the round goes on (natsx_epoch) */
    int cut_off;    /* a publish was refused: the connection was gone or another */
} handover_round_t;

static void handover_round_begin(handover_t *h, handover_round_t *r)
{
    memset(r, 0, sizeof *r);
    r->waiting = strmap_new();
    r->chunks = strmap_new();
    r->connected = natsx_epoch(h->nc, &r->epoch);
    r->shortfall = !r->waiting || !r->chunks;
}

/* 1 while the connection is the one the round began on. A publish on a
 * connection that just broke may be lost without an error; one made after
 * that (from nats.c's reconnect buffer, or on the new connection) would
 * reach the stream ahead of it, and the lost one, retried, after it. So a
 * round publishes only on the connection it began on: once that is gone,
 * the rest of the round stays stored for the retry pass, in order. */
static int handover_same_connection(handover_t *h, const handover_round_t *r)
{
    uint64_t now = 0;
    return r->connected && natsx_epoch(h->nc, &now) && now == r->epoch;
}

static void handover_skip(handover_t *h, handover_round_t *r, const char *id)
{
    metrics_inc(h->too_large);
    /* It can never go through this server: retrying would hold up every
     * later message. It stays stored, so recipients get it from the store
     * when they (re)connect; only live delivery is lost. */
    LOG_E("handover: message %s is over the NATS server's max_payload as a Dispatch; not handed "
          "to the dispatcher, recipients get it from the store on their next connection "
          "(raise max_payload to 2 MiB or more)",
          id);
    strmap_remove(r->waiting, id);
    if (r->n_skip == r->cap_skip) {
        size_t cap = r->cap_skip ? r->cap_skip * 2 : 8;
        char **ns = realloc(r->skip, cap * sizeof *ns);
        if (!ns) {
            r->shortfall = 1;
            return;
        }
        r->skip = ns;
        r->cap_skip = cap;
    }
    if (!(r->skip[r->n_skip] = strdup(id)))
        r->shortfall = 1;
    else
        r->n_skip++;
}

/* Publish shard's open chunk, under its stream message id (chunk_msg_id):
 * a retry that cuts the same chunk is stored once inside the stream's
 * duplicate window (one cut differently may be stored twice: at-least-once,
 * and ids let the client drop the copy). */
static void handover_chunk_publish(handover_t *h, handover_round_t *r, unsigned shard)
{
    chunk_t *c = &r->open[shard];
    if (!c->n)
        return;
    if (r->shortfall) {
        chunk_reset(c, 1);
        return;
    }
    char subject[300], chunk_id[96];
    jsx_shard_subject(subject, sizeof subject, h->prefix, shard);
    chunk_msg_id(c, shard, chunk_id, sizeof chunk_id);
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MsgId = chunk_id;
    /* A publish whose ack never comes (it was on a connection that broke)
     * times out on its own; otherwise it would stay pending for ever and
     * every later round's wait would time out behind it. */
    opts.MaxWait = HANDOVER_ACK_WAIT_MS - 1000;
    natsStatus s = NATS_CONNECTION_DISCONNECTED;
    if (handover_same_connection(h, r))
        s = js_PublishAsync(h->js_async, subject, c->buf, (int)c->len, &opts);
    else
        r->cut_off = 1;
    if (s == NATS_OK && strmap_put(r->chunks, chunk_id, c->ids) == 0) {
        chunk_reset(c, 0); /* r->chunks owns the ids now */
        return;
    }
    if (s == NATS_MAX_PAYLOAD && c->n == 1) {
        handover_skip(h, r, c->ids[0]);
    } else {
        metrics_inc(h->errors);
        LOG_W("handover: %zu message part(s) from %s on shard %u not handed to the dispatcher yet "
              "(%s); they and every later one are stored and the retry loop (every %d ms) sends "
              "them, in order",
              c->n, c->ids[0], shard, s == NATS_OK ? "out of memory" : natsStatus_GetText(s),
              HANDOVER_RETRY_MS);
        r->shortfall = 1;
    }
    chunk_reset(c, 1);
}

/* Append one part (m's recipients of shard) to the shard's open chunk,
 * publishing the chunk first when the part would take it over the limit. */
static int handover_chunk_add(handover_t *h, handover_round_t *r, unsigned shard,
                              const store_msg_t *m, char *const *to, size_t n_to)
{
    size_t len = 0;
    uint8_t *part = chunk_pack(m, to, n_to, &len);
    if (!part)
        return -1;
    if (chunk_is_full_for(&r->open[shard], len))
        handover_chunk_publish(h, r, shard);
    int rc = chunk_add(&r->open[shard], m->id, part, len);
    free(part);
    return rc;
}

typedef struct handover_add {
    handover_t *h;
    handover_round_t *r;
    const store_msg_t *m;
} handover_add_t;

static int handover_add_part(void *arg, unsigned shard, char *const *to, size_t n_to)
{
    handover_add_t *a = arg;
    return handover_chunk_add(a->h, a->r, shard, a->m, to, n_to);
}

static void handover_round_add(handover_t *h, handover_round_t *r, const store_msg_t *m,
                               char *const *to, size_t n_to)
{
    if (r->shortfall)
        return;
    chunk_parts_t parts;
    if (chunk_split(&parts, m, to, n_to) != 0) {
        r->shortfall = 1; /* out of memory */
        return;
    }
    handover_add_t a = {h, r, m};
    if (strmap_put(r->waiting, m->id, (void *)(intptr_t)chunk_count_parts(&parts)) != 0 ||
        chunk_each_part(&parts, handover_add_part, &a) != 0)
        r->shortfall = 1; /* out of memory */
    chunk_parts_free(&parts);
}

static void handover_free_chunk_ids(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    char **ids = value;
    for (size_t i = 0; ids[i]; i++)
        free(ids[i]);
    free(ids);
}

/* Returns how many messages were acked (and marked); sets h->behind when
 * something was not. */
static size_t handover_round_end(handover_t *h, handover_round_t *r)
{
    for (unsigned k = 0; k < JSX_SHARDS; k++)
        handover_chunk_publish(h, r, k);
    size_t n_expected = r->waiting ? strmap_size(r->waiting) : 0;
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = HANDOVER_ACK_WAIT_MS;
    natsStatus s = js_PublishAsyncComplete(h->js_async, &wait);
    if (s != NATS_OK)
        LOG_W("handover: not every hand-over was acked in time (%s); the rest is retried, in order",
              natsStatus_GetText(s));
    size_t n_acked = 0;
    char **acked = idlist_take(&h->acked, &n_acked);
    /* acked holds stream message ids; each of their parts counts against
     * its message, and a message whose every part was acked is done. */
    char **done = NULL;
    size_t n_done = 0, cap_done = 0;
    for (size_t i = 0; i < n_acked; i++) {
        char **ids = r->chunks ? strmap_get(r->chunks, acked[i]) : NULL;
        for (size_t k = 0; ids && ids[k]; k++) {
            intptr_t left = (intptr_t)strmap_get(r->waiting, ids[k]);
            if (left <= 0)
                continue;
            strmap_put(r->waiting, ids[k], (void *)(left - 1));
            if (left > 1)
                continue;
            if (n_done == cap_done) {
                cap_done = cap_done ? cap_done * 2 : 256;
                char **nd = realloc(done, cap_done * sizeof *nd);
                if (!nd)
                    break; /* not marked: handed over again later */
                done = nd;
            }
            metrics_observe_since_ms(h->age, ids_time_ms(ids[k]));
            done[n_done++] = ids[k];
        }
    }
    idlist_free(acked, n_acked);
    metrics_add(h->sent, (int64_t)n_done);
    handover_defer_marks(h, done, n_done);
    handover_defer_marks(h, r->skip, r->n_skip);
    free(done);
    strmap_free(r->waiting);
    if (r->chunks)
        strmap_each(r->chunks, handover_free_chunk_ids, NULL);
    strmap_free(r->chunks);
    for (size_t i = 0; i < r->n_skip; i++)
        free(r->skip[i]);
    free(r->skip);
    r->shortfall |= n_done < n_expected;
    if (r->shortfall) {
        h->behind = 1;
        if (!r->from_retry)
            bgloop_wake(h->retry); /* the retry loop catches up now */
    }
    return n_done;
}

void handover_fell_behind(handover_t *h)
{
    atomic_store(&h->fell_behind, 1);
    bgloop_wake(h->retry);
}

int handover_send_batch(handover_t *h, const store_msg_t *const *ms, char **const *tos,
                        const size_t *n_tos, size_t n)
{
    pthread_mutex_lock(&h->pub_lock);
    if (atomic_exchange(&h->fell_behind, 0))
        h->behind = 1;
    if (h->behind) {
        pthread_mutex_unlock(&h->pub_lock);
        return 0; /* stored and unmarked: the retry loop sends them, in order */
    }
    handover_round_t r;
    handover_round_begin(h, &r);
    for (size_t i = 0; i < n; i++)
        handover_round_add(h, &r, ms[i], tos[i], n_tos[i]);
    size_t n_done = handover_round_end(h, &r);
    pthread_mutex_unlock(&h->pub_lock);
    return (int)n_done;
}

/* A retry pass is one round over the oldest unmarked messages; after the
 * first failure the rest of the pass is left for the next one. */
typedef struct handover_pass {
    handover_t *h;
    handover_round_t round;
} handover_pass_t;

static void handover_retry_one(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    handover_pass_t *p = arg;
    if (p->round.shortfall || bgloop_stopping(p->h->retry))
        return;
    metrics_inc(p->h->retried);
    handover_round_add(p->h, &p->round, m, to, n_to);
}

#define HANDOVER_PASS_MAX 1000

/* One retry pass; every HANDOVER_RETRY_MS, at once after a round left
 * something behind, and again at once while passes come back full. */
static int handover_loop(void *arg)
{
    handover_t *h = arg;
    if (!atomic_load(&h->stream_ok) && natsx_connected(h->nc))
        atomic_store(&h->stream_ok,
                     jsx_ensure_dispatch_stream(h->js, h->prefix, h->stream_replicas) == NATS_OK);
    int again = 0;
    if (atomic_load(&h->stream_ok)) {
        pthread_mutex_lock(&h->pub_lock);
        /* Behind (at start, after a round or pass left something
         * unacked, or after handover_fell_behind): everything unmarked is
         * ours to send, oldest first, and rounds wait. Otherwise every
         * stored message is on its way through a round: nothing to do
         * (sending what a round is about to send would only repeat it,
         * and under a backlog of seconds it repeated most of them). */
        if (atomic_exchange(&h->fell_behind, 0))
            h->behind = 1;
        int behind = h->behind;
        if (!behind || !natsx_connected(h->nc)) {
            /* away from NATS: handover_on_nats wakes us when it is back */
            pthread_mutex_unlock(&h->pub_lock);
            return BGLOOP_WAIT;
        }
        uint64_t before = ids_now_ms() + 1;
        handover_flush_marks(h); /* what is marked is not sent again */
        handover_pass_t pass = {.h = h};
        handover_round_begin(h, &pass.round);
        pass.round.from_retry = 1;
        int n = store_undispatched(h->store, before, HANDOVER_PASS_MAX, handover_retry_one, &pass);
        handover_round_end(h, &pass.round);
        int failed = pass.round.shortfall;
        if (n > 0 && !failed)
            LOG_I("handover: re-sent %d stored message(s) not yet handed to the dispatcher", n);
        if (n < 0 || failed) {
            h->behind = 1;
            if (failed && !pass.round.cut_off)
                atomic_store(&h->stream_ok, 0); /* the stream may be gone: create it again */
        } else if (n < HANDOVER_PASS_MAX) {
            LOG_I("handover: caught up; handing over as messages are stored again");
            h->behind = 0; /* every unmarked message up to now is in the stream */
        } else {
            h->behind = 1; /* more than one pass's worth: go on at once */
            again = 1;
        }
        pthread_mutex_unlock(&h->pub_lock);
    }
    return again ? BGLOOP_AGAIN : BGLOOP_WAIT;
}

/* natsx_watch: back on NATS, catch up now rather than at the next tick. */
static void handover_on_nats(void *arg, int up)
{
    handover_t *h = arg;
    if (up)
        bgloop_wake(h->retry);
}

handover_t *handover_start(natsConnection *nc, const char *prefix, int stream_replicas,
                           store_t *store)
{
    handover_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->nc = nc;
    h->store = store;
    h->prefix = prefix;
    h->stream_replicas = stream_replicas;
    h->sent = metrics_counter("push_collect_handed_over_total", NULL,
                              "Messages handed to the dispatcher stream");
    h->errors = metrics_counter("push_collect_handover_errors_total", NULL,
                                "Hand-overs that failed (retried)");
    h->retried = metrics_counter("push_collect_handover_retries_total", NULL,
                                 "Hand-overs retried by the retry loop");
    h->age = metrics_age_histogram("push_collect_handover_age_seconds",
                                   "From a publish's acceptance (its id's millisecond) to the "
                                   "dispatch stream's ack of its hand-over");
    h->too_large =
        metrics_counter("push_collect_handover_too_large_total", NULL,
                        "Messages over NATS max_payload as a Dispatch (store delivery only)");
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    pthread_mutex_init(&h->acked.lock, NULL);
    pthread_mutex_init(&h->pub_lock, NULL);
    pthread_mutex_init(&h->marks.lock, NULL);
    pthread_mutex_init(&h->flush_lock, NULL);
    h->behind = 1; /* whatever an earlier run left unmarked goes first */
    jsOptions ja;
    jsOptions_Init(&ja);
    ja.Wait = 5000;
    ja.PublishAsync.MaxPending = HANDOVER_MAX_PENDING;
    ja.PublishAsync.AckHandler = handover_on_async_ack;
    ja.PublishAsync.AckHandlerClosure = h;
    if (natsConnection_JetStream(&h->js, nc, &jo) != NATS_OK ||
        natsConnection_JetStream(&h->js_async, nc, &ja) != NATS_OK) {
        LOG_E("handover: cannot create a JetStream context; not starting");
        goto fail;
    }
    if (natsx_connected(nc))
        atomic_store(&h->stream_ok,
                     jsx_ensure_dispatch_stream(h->js, prefix, stream_replicas) == NATS_OK);
    if (bgloop_start(&h->retry, "ho-retry", HANDOVER_RETRY_MS, handover_loop, h) != 0) {
        LOG_E("handover: cannot start the retry thread; not starting");
        goto fail;
    }
    natsx_watch(handover_on_nats, h);
    return h;
fail:
    jsCtx_Destroy(h->js);
    jsCtx_Destroy(h->js_async);
    pthread_mutex_destroy(&h->acked.lock);
    pthread_mutex_destroy(&h->pub_lock);
    pthread_mutex_destroy(&h->marks.lock);
    pthread_mutex_destroy(&h->flush_lock);
    free(h);
    return NULL;
}

void handover_stop(handover_t *h)
{
    if (!h)
        return;
    natsx_watch(NULL, NULL);
    bgloop_stop(h->retry);
    handover_flush_marks(h);
    pthread_mutex_destroy(&h->marks.lock);
    pthread_mutex_destroy(&h->flush_lock);
    jsCtx_Destroy(h->js);
    jsCtx_Destroy(h->js_async);
    idlist_free(h->acked.ids, h->acked.n);
    pthread_mutex_destroy(&h->acked.lock);
    pthread_mutex_destroy(&h->pub_lock);
    free(h);
}
