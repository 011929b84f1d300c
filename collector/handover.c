/* handover: see handover.h. */
#include "handover.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bgloop.h"
#include "clock.h"
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

typedef struct handover_round handover_round_t;

struct handover {
    natsConnection *nc;
    jsCtx *js;
    jsCtx *js_async; /* publishes of rounds and retry passes */
    store_t *store;
    const char *prefix;
    int stream_replicas;
    atomic_int stream_ok;
    atomic_int fell_behind; /* handover_fell_behind: "behind" from the next round or pass */
    /* Order between the two senders (handover_send_batch, the retry loop):
     * each holds pub_lock while it publishes a round (the retry loop also
     * through its pass's answers). After a round or a
     * pass left something unacked, "behind" is set: rounds publish nothing
     * (their messages stay stored, unmarked) until a retry pass has sent
     * every unmarked message in id order. A newer message can then never
     * reach the stream ahead of an older one that failed. */
    pthread_mutex_t pub_lock;
    int behind; /* under pub_lock; set at start, so leftovers go first */
    /* The chain (one collector, handover_start's sole_publisher): every
     * publish of a round carries the stream message id of the one before
     * (ExpectLastMsgId), so the stream stores none after one it did not
     * store; that is what lets rounds go out while earlier ones wait for
     * their acks. */
    int sole_publisher;
    /* clock_mono_ms until which rounds go unchained, one at a time: the
     * stream's last message was not ours (handover_chain_refused) */
    atomic_llong unchained_until_ms;
    /* under pub_lock; "" = the next publish starts a chain, expecting
     * nothing (handover_chain_restart: nothing of ours is on its way) */
    char chain_last[CHUNK_ID_MAX];
    char published_last[CHUNK_ID_MAX]; /* under pub_lock: the last publish, chained or not */
    char chain_root[CHUNK_ID_MAX];     /* under fly_lock: published_last when the chain began */
    /* Rounds published and not yet collected, oldest first. The ack
     * handler (nats.c's thread) finds a publish's round here, and the
     * round's last answer completes it (handover_round_complete); rounds
     * are collected (freed) by the publishing threads, under pub_lock. */
    pthread_mutex_t fly_lock;
    pthread_cond_t fly_cond; /* a round completed */
    handover_round_t *fly[HANDOVER_IN_FLIGHT + 1];
    size_t n_fly;
    bgloop_t *retry; /* the retry loop */
    /* retry loop only: 1 once no shard this collector does not use has
     * anything left to dispatch (handover_unused_drained) */
    int unused_drained;
    int unused_logged;
    int64_t unknown_since_ms; /* clock_mono_ms of the first pass that could not read a consumer
                               * since one that read all it looked at; 0: none */
    metrics_series_t *sent, *errors, *retried, *too_large, *refused_chain;
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

/* A round of hand-over: messages added in id order are cut into parts by
 * shard and gathered into one stream message per shard (chunk.h), published
 * asynchronously. After the first publish that failed, nothing more of the
 * round goes out; the rest is left for the next retry pass (order). Once
 * sealed (every chunk published) and every publish answered (nats.c
 * answers each publish that went out exactly once: acked, refused, or timed
 * out at MaxWait), the round completes: the messages whose every part was
 * acked are queued for their marks (handover_round_complete). */
typedef struct handover_chunk {
    char **ids; /* its parts' message ids, NULL-terminated */
    int acked;  /* under fly_lock */
} handover_chunk_t;

struct handover_round {
    strmap_t *waiting; /* message id -> parts not acked yet */
    strmap_t *chunks;  /* stream message id -> handover_chunk_t *, under fly_lock */
    chunk_t open[JSX_SHARDS];
    char **skip; /* too large for NATS: marked without the stream */
    size_t n_skip, cap_skip;
    int shortfall;  /* something was not published (the publishing thread's) */
    int from_retry; /* the retry loop's own pass: it looks at the outcome itself */
    int chained;    /* its publishes carry ExpectLastMsgId (h->chain_last) */
    int connected;  /* the round began connected, on epoch: */
    uint64_t epoch; /* the connection every publish of the round goes on (natsx_epoch) */
    int cut_off;    /* a publish was refused: the connection was gone or another */
    /* under fly_lock */
    size_t n_pub, n_answered;
    int refused; /* an answer was not an ack */
    int sealed, complete;
    int lost;            /* complete, and not every message was acked */
    int64_t deadline_ms; /* sealed: what is unanswered by then counts as lost */
};

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

/* Chain and pipeline: one collector (sole_publisher), and nobody else seen
 * publishing to the stream lately. */
static int handover_chained(handover_t *h)
{
    return h->sole_publisher && clock_mono_ms() >= atomic_load(&h->unchained_until_ms);
}

/* The stream refused a publish of the chain: the one before it was not
 * stored (a break by design: what follows waits for the retry pass), or
 * somebody else published in between. The error ends with the stream's
 * last message id: one this collector did not publish means another
 * publisher (a second collector on this NATS and prefix) or a stream that
 * lost its recent messages, and while that lasts no chain can hold: rounds
 * go unchained, one at a time, for HANDOVER_UNCHAINED_MS. Not under
 * fly_lock. */
static void handover_chain_refused(handover_t *h, const char *text)
{
    metrics_inc(h->refused_chain);
    const char *last = text ? strrchr(text, ' ') : NULL;
    last = last ? last + 1 : "";
    pthread_mutex_lock(&h->fly_lock);
    int ours = *last && (ids_minted_here(last) || strcmp(last, h->chain_root) == 0);
    pthread_mutex_unlock(&h->fly_lock);
    if (ours)
        return;
    int64_t now = clock_mono_ms();
    if (atomic_exchange(&h->unchained_until_ms, now + HANDOVER_UNCHAINED_MS) <= now)
        LOG_W("handover: the dispatch stream's last message ('%s') is not one of ours: another "
              "publisher (a second collector on this NATS and prefix? with a sqlite: store run "
              "one, several need a mongodb:// store) or a stream that lost its recent messages; "
              "handing over one round at a time for %d s (slower; order and nothing lost hold)",
              last, HANDOVER_UNCHAINED_MS / 1000);
}

typedef struct handover_done {
    handover_t *h;
    handover_round_t *r;
    char **ids;
    size_t n, cap;
    int oom;
} handover_done_t;

/* strmap_each over a completed round's chunks: each part of an acked chunk
 * counts against its message, and a message whose every part was acked is
 * done. */
static void handover_count_chunk(void *arg, const char *key, void *value)
{
    (void)key;
    handover_done_t *d = arg;
    handover_chunk_t *c = value;
    for (size_t k = 0; c->acked && c->ids[k]; k++) {
        intptr_t left = (intptr_t)strmap_get(d->r->waiting, c->ids[k]);
        if (left <= 0)
            continue;
        strmap_put(d->r->waiting, c->ids[k], (void *)(left - 1));
        if (left > 1)
            continue;
        if (d->n == d->cap) {
            size_t cap = d->cap ? d->cap * 2 : 256;
            char **nd = realloc(d->ids, cap * sizeof *nd);
            if (!nd) {
                d->oom = 1; /* not marked: handed over again later */
                continue;
            }
            d->ids = nd;
            d->cap = cap;
        }
        metrics_observe_since_ms(d->h->age, ids_time_ms(c->ids[k]));
        d->ids[d->n++] = c->ids[k];
    }
}

/* Queue marks without taking the store's lock (we may hold fly_lock): out
 * of memory, the retry loop hands them over again instead. */
static void handover_queue_marks(handover_t *h, char *const *ids, size_t n)
{
    if (n && idlist_add(&h->marks, ids, n) != 0) {
        LOG_W("handover: %zu message(s) handed over but not marked (out of memory); the retry "
              "loop hands them over again",
              n);
        atomic_store(&h->fell_behind, 1);
    }
}

/* Under fly_lock: r is sealed and every publish answered, or its deadline
 * passed (what is unanswered counts as lost). A round (not a retry pass)
 * that left something behind sets fell_behind: rounds publish nothing more
 * until a retry pass has sent every unmarked message, in order. */
static void handover_round_complete(handover_t *h, handover_round_t *r)
{
    handover_done_t d = {.h = h, .r = r};
    size_t n_expected = strmap_size(r->waiting);
    strmap_each(r->chunks, handover_count_chunk, &d);
    metrics_add(h->sent, (int64_t)d.n);
    handover_queue_marks(h, d.ids, d.n);
    handover_queue_marks(h, r->skip, r->n_skip);
    free(d.ids);
    r->lost = r->refused || d.oom || r->n_answered < r->n_pub || d.n < n_expected;
    r->complete = 1;
    if ((r->shortfall || r->lost) && !r->from_retry) {
        atomic_store(&h->fell_behind, 1);
        bgloop_wake(h->retry); /* the retry loop catches up now */
    }
    pthread_cond_broadcast(&h->fly_cond);
}

static void handover_on_async_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                                  void *closure)
{
    (void)js;
    handover_t *h = closure;
    const char *id = NULL;
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK)
        id = NULL;
    if (!pa) {
        metrics_inc(h->errors);
        if (pae && pae->ErrCode == JSStreamWrongLastMsgIDErr)
            handover_chain_refused(h, pae->ErrText);
    }
    pthread_mutex_lock(&h->fly_lock);
    for (size_t i = 0; id && i < h->n_fly; i++) {
        handover_round_t *r = h->fly[i];
        handover_chunk_t *c = strmap_get(r->chunks, id);
        if (!c || r->complete)
            continue;          /* another round's, or one given up on */
        c->acked = pa != NULL; /* a duplicate is acked too: stored before */
        r->refused |= !pa;
        r->n_answered++;
        if (r->sealed && r->n_answered == r->n_pub)
            handover_round_complete(h, r);
        break;
    }
    pthread_mutex_unlock(&h->fly_lock);
    natsx_msg_free(msg);
}

static void handover_free_chunk(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    handover_chunk_t *c = value;
    for (size_t i = 0; c->ids[i]; i++)
        free(c->ids[i]);
    free(c->ids);
    free(c);
}

static void handover_round_free(handover_round_t *r)
{
    if (!r)
        return;
    strmap_free(r->waiting);
    if (r->chunks)
        strmap_each(r->chunks, handover_free_chunk, NULL);
    strmap_free(r->chunks);
    for (unsigned k = 0; k < JSX_SHARDS; k++)
        chunk_reset(&r->open[k], 1);
    for (size_t i = 0; i < r->n_skip; i++)
        free(r->skip[i]);
    free(r->skip);
    free(r);
}

/* A new round, in flight from now (the ack handler finds it). Under
 * pub_lock, with fewer than HANDOVER_IN_FLIGHT + 1 rounds in flight
 * (handover_settle). NULL when out of memory. */
static handover_round_t *handover_round_new(handover_t *h, int from_retry, int chained)
{
    handover_round_t *r = calloc(1, sizeof *r);
    if (!r || !(r->waiting = strmap_new()) || !(r->chunks = strmap_new())) {
        handover_round_free(r);
        return NULL;
    }
    r->from_retry = from_retry;
    r->chained = chained;
    r->connected = natsx_epoch(h->nc, &r->epoch);
    pthread_mutex_lock(&h->fly_lock);
    h->fly[h->n_fly++] = r;
    pthread_mutex_unlock(&h->fly_lock);
    return r;
}

/* Until r completes; at its deadline, complete it as it stands. Holds fly_lock. */
static void handover_round_wait(handover_t *h, handover_round_t *r)
{
    while (!r->complete) {
        int64_t left = r->deadline_ms - clock_mono_ms();
        struct timespec until = clock_deadline(left > 0 ? left : 0);
        if (left <= 0 || (pthread_cond_timedwait(&h->fly_cond, &h->fly_lock, &until) == ETIMEDOUT &&
                          !r->complete)) {
            LOG_W("handover: %zu of %zu hand-over(s) not answered in %d ms; they are retried, in "
                  "order",
                  r->n_pub - r->n_answered, r->n_pub, HANDOVER_ACK_WAIT_MS);
            handover_round_complete(h, r);
        }
    }
}

/* Free the oldest rounds in flight, waiting for each to complete, until at
 * most keep are left; then any completed ones at the front too. Under
 * pub_lock (the only thread that adds rounds). */
static void handover_settle(handover_t *h, size_t keep)
{
    pthread_mutex_lock(&h->fly_lock);
    while (h->n_fly && (h->n_fly > keep || h->fly[0]->complete)) {
        handover_round_t *r = h->fly[0];
        handover_round_wait(h, r);
        h->n_fly--;
        memmove(h->fly, h->fly + 1, h->n_fly * sizeof *h->fly);
        pthread_mutex_unlock(&h->fly_lock);
        handover_round_free(r);
        pthread_mutex_lock(&h->fly_lock);
    }
    pthread_mutex_unlock(&h->fly_lock);
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
 * and ids let the client drop the copy). In a chained round it expects the
 * chain's last publish to be the stream's last message. */
static void handover_chunk_publish(handover_t *h, handover_round_t *r, unsigned shard)
{
    chunk_t *c = &r->open[shard];
    if (!c->n)
        return;
    if (r->shortfall) {
        chunk_reset(c, 1);
        return;
    }
    char subject[300], chunk_id[CHUNK_ID_MAX];
    jsx_shard_subject(subject, sizeof subject, h->prefix, shard);
    chunk_msg_id(c, shard, chunk_id, sizeof chunk_id);
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MsgId = chunk_id;
    if (r->chained && h->chain_last[0])
        opts.ExpectLastMsgId = h->chain_last;
    /* A publish whose ack never comes (it was on a connection that broke)
     * times out on its own, and the handler hears of it, so every round
     * completes. */
    opts.MaxWait = HANDOVER_ACK_WAIT_MS - 1000;
    /* in the round before it goes out: its answer may come before
     * js_PublishAsync returns */
    handover_chunk_t *hc = calloc(1, sizeof *hc);
    int registered = 0;
    if (hc) {
        hc->ids = c->ids;
        pthread_mutex_lock(&h->fly_lock);
        if ((registered = strmap_put(r->chunks, chunk_id, hc) == 0))
            r->n_pub++;
        pthread_mutex_unlock(&h->fly_lock);
    }
    natsStatus s = NATS_NO_MEMORY;
    if (registered) {
        if (handover_same_connection(h, r)) {
            s = js_PublishAsync(h->js_async, subject, c->buf, (int)c->len, &opts);
        } else {
            s = NATS_CONNECTION_DISCONNECTED;
            r->cut_off = 1;
        }
        if (s == NATS_OK) {
            if (r->chained)
                snprintf(h->chain_last, sizeof h->chain_last, "%s", chunk_id);
            snprintf(h->published_last, sizeof h->published_last, "%s", chunk_id);
            chunk_reset(c, 0); /* hc owns the ids now */
            return;
        }
        /* not sent: no answer will come */
        pthread_mutex_lock(&h->fly_lock);
        strmap_remove(r->chunks, chunk_id);
        r->n_pub--;
        pthread_mutex_unlock(&h->fly_lock);
    }
    free(hc);
    if (s == NATS_MAX_PAYLOAD && c->n == 1) {
        handover_skip(h, r, c->ids[0]);
    } else {
        metrics_inc(h->errors);
        LOG_W("handover: %zu message part(s) from %s on shard %u not handed to the dispatcher yet "
              "(%s); they and every later one are stored and the retry loop (every %d ms) sends "
              "them, in order",
              c->n, c->ids[0], shard, natsStatus_GetText(s), HANDOVER_RETRY_MS);
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

/* Publish what the shards' open chunks hold and seal r: from now on its
 * last answer completes it. Something not published sets h->behind now
 * (under pub_lock): no later round may go out before the retry pass. */
static void handover_round_seal(handover_t *h, handover_round_t *r)
{
    for (unsigned k = 0; k < JSX_SHARDS; k++)
        handover_chunk_publish(h, r, k);
    if (r->shortfall) {
        h->behind = 1;
        if (!r->from_retry)
            bgloop_wake(h->retry);
    }
    pthread_mutex_lock(&h->fly_lock);
    r->sealed = 1;
    r->deadline_ms = clock_mono_ms() + HANDOVER_ACK_WAIT_MS;
    if (r->n_answered == r->n_pub)
        handover_round_complete(h, r);
    pthread_mutex_unlock(&h->fly_lock);
}

/* Under pub_lock, nothing of ours on its way to the stream (every publish
 * answered): the next chained publish starts a new chain, expecting
 * nothing. */
static void handover_chain_restart(handover_t *h)
{
    pthread_mutex_lock(&h->fly_lock);
    memcpy(h->chain_root, h->published_last, sizeof h->chain_root);
    pthread_mutex_unlock(&h->fly_lock);
    h->chain_last[0] = '\0';
}

void handover_fell_behind(handover_t *h)
{
    atomic_store(&h->fell_behind, 1);
    bgloop_wake(h->retry);
}

/* Under pub_lock: take a "fell behind" from a completed round or from
 * handover_fell_behind into behind; returns behind. */
static int handover_behind(handover_t *h)
{
    if (atomic_exchange(&h->fell_behind, 0))
        h->behind = 1;
    return h->behind;
}

void handover_send_batch(handover_t *h, const store_msg_t *const *ms, char **const *tos,
                         const size_t *n_tos, size_t n)
{
    pthread_mutex_lock(&h->pub_lock);
    int chained = handover_chained(h);
    /* Chained, up to HANDOVER_IN_FLIGHT rounds wait for their answers at
     * once: a lost publish makes the stream refuse every later one of the
     * chain, so none can overtake it. Unchained, a round goes out only once
     * the one before was answered in full. */
    handover_settle(h, chained ? HANDOVER_IN_FLIGHT - 1 : 0);
    if (!chained)
        handover_chain_restart(h); /* answered in full before the next round: safe */
    handover_round_t *r = NULL;
    if (!handover_behind(h) && !(r = handover_round_new(h, 0, chained)))
        handover_fell_behind(h); /* out of memory: stored, the retry loop sends them */
    if (r) {
        for (size_t i = 0; i < n; i++)
            handover_round_add(h, r, ms[i], tos[i], n_tos[i]);
        handover_round_seal(h, r);
        if (!chained)
            handover_settle(h, 0);
    }
    /* else behind: stored and unmarked, the retry loop sends them, in order */
    pthread_mutex_unlock(&h->pub_lock);
}

/* A retry pass is one round over the oldest unmarked messages; after the
 * first failure the rest of the pass is left for the next one. */
typedef struct handover_pass {
    handover_t *h;
    handover_round_t *round;
} handover_pass_t;

static void handover_retry_one(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    handover_pass_t *p = arg;
    if (p->round->shortfall || bgloop_stopping(p->h->retry))
        return;
    metrics_inc(p->h->retried);
    handover_round_add(p->h, p->round, m, to, n_to);
}

#define HANDOVER_PASS_MAX 1000

/* Collectors before JSX_SHARDS_USED put users on all JSX_SHARDS shards
 * (jsx.h). What such a collector left on a shard this one does not use
 * must be dispatched before this one hands over anything: the same users'
 * newer messages go to another shard, which another dispatcher thread (or
 * dispatcher) may take first. Returns 1 when no such shard's consumer has a
 * message not yet delivered or not yet acked (a missing consumer or stream
 * has none), 0 while one has or the answer is unknown; unknown for
 * HANDOVER_UNUSED_UNKNOWN_MS (a consumer without a leader, say), 1. Retry
 * loop only. */
#define HANDOVER_UNUSED_UNKNOWN_MS 60000

static int handover_unused_drained(handover_t *h)
{
    char stream[128], durable[64];
    int unreadable = 0; /* in this pass */
    jsx_stream_name(stream, sizeof stream, h->prefix);
    for (unsigned i = 0; i < JSX_SHARDS; i++) {
        if (jsx_shard_used(i))
            continue;
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetConsumerInfo(
            &ci, h->js, stream, jsx_shard_consumer(durable, sizeof durable, i), NULL, &jerr);
        if (s != NATS_OK) {
            if (jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr)
                continue;
            int64_t now = clock_mono_ms();
            unreadable = 1;
            if (!h->unknown_since_ms) { /* the first pass with a failure since one without */
                h->unknown_since_ms = now;
                LOG_W("handover: cannot read consumer %s of %s (%s, error %d); asking again "
                      "every %d ms, for up to %d s",
                      durable, stream, natsStatus_GetText(s), (int)jerr, HANDOVER_RETRY_MS,
                      HANDOVER_UNUSED_UNKNOWN_MS / 1000);
            }
            if (now - h->unknown_since_ms >= HANDOVER_UNUSED_UNKNOWN_MS) {
                LOG_W("handover: consumer %s of %s unreadable for %d s (%s, error %d); handing "
                      "over without knowing whether an older collector left messages there",
                      durable, stream, HANDOVER_UNUSED_UNKNOWN_MS / 1000, natsStatus_GetText(s),
                      (int)jerr);
                continue;
            }
            return 0;
        }
        unsigned long long left = ci->NumPending + (unsigned long long)ci->NumAckPending;
        jsConsumerInfo_Destroy(ci);
        if (left) {
            if (!h->unused_logged++)
                LOG_W("handover: shard %u of %s has %llu message(s) to dispatch that an older "
                      "collector put there; handing over nothing until dispatchers have taken "
                      "them, so that no user's older messages are overtaken (stored messages "
                      "wait; see docs/OPERATIONS.md, Upgrading)",
                      i, stream, left);
            if (!unreadable) /* a later failure gets HANDOVER_UNUSED_UNKNOWN_MS of its own */
                h->unknown_since_ms = 0;
            return 0;
        }
    }
    if (h->unused_logged)
        LOG_I("handover: the shards an older collector used are dispatched; handing over");
    return 1;
}

/* One retry pass; every HANDOVER_RETRY_MS, at once after a round left
 * something behind, and again at once while passes come back full. */
static int handover_loop(void *arg)
{
    handover_t *h = arg;
    if (!atomic_load(&h->stream_ok) && natsx_connected(h->nc))
        atomic_store(&h->stream_ok,
                     jsx_ensure_dispatch_stream(h->js, h->prefix, h->stream_replicas) == NATS_OK);
    int again = 0;
    /* until then "behind" (set at start) holds every round back: stored,
     * they wait for the first pass */
    if (atomic_load(&h->stream_ok) && !h->unused_drained && natsx_connected(h->nc))
        h->unused_drained = handover_unused_drained(h);
    if (atomic_load(&h->stream_ok) && h->unused_drained) {
        pthread_mutex_lock(&h->pub_lock);
        /* Behind (at start, after a round or pass left something
         * unacked, or after handover_fell_behind): everything unmarked is
         * ours to send, oldest first, and rounds wait. Otherwise every
         * stored message is on its way through a round: nothing to do
         * (sending what a round is about to send would only repeat it,
         * and under a backlog of seconds it repeated most of them). */
        if (!handover_behind(h) || !natsx_connected(h->nc)) {
            /* away from NATS: handover_on_nats wakes us when it is back */
            handover_settle(h, HANDOVER_IN_FLIGHT); /* frees what completed */
            pthread_mutex_unlock(&h->pub_lock);
            return BGLOOP_WAIT;
        }
        /* Every round answered first: nothing of ours is on its way any
         * more, their marks are queued, and what they left behind is
         * unmarked, so this pass sends it. */
        handover_settle(h, 0);
        atomic_store(&h->fell_behind, 0);
        uint64_t before = ids_now_ms() + 1;
        handover_flush_marks(h); /* what is marked is not sent again */
        /* A pass is chained too, from a new chain: nothing of ours is on
         * its way. A link that was a duplicate (stored before, its ack
         * lost) leaves the stream's last message unchanged and the next
         * link is refused; the duplicate is marked all the same, so the
         * next pass starts after it. */
        handover_chain_restart(h);
        handover_pass_t pass = {.h = h, .round = handover_round_new(h, 1, handover_chained(h))};
        int n = -1, failed = 1, cut_off = 0;
        if (pass.round) {
            n = store_undispatched(h->store, before, HANDOVER_PASS_MAX, handover_retry_one, &pass);
            handover_round_seal(h, pass.round);
            pthread_mutex_lock(&h->fly_lock);
            handover_round_wait(h, pass.round);
            failed = pass.round->shortfall || pass.round->lost;
            cut_off = pass.round->cut_off;
            pthread_mutex_unlock(&h->fly_lock);
            handover_settle(h, 0);
        }
        if (n > 0 && !failed)
            LOG_I("handover: re-sent %d stored message(s) not yet handed to the dispatcher", n);
        if (n < 0 || failed) {
            h->behind = 1;
            if (failed && pass.round && !cut_off)
                atomic_store(&h->stream_ok, 0); /* the stream may be gone: create it again */
        } else if (n < HANDOVER_PASS_MAX) {
            LOG_I("handover: caught up; handing over as messages are stored again");
            h->behind = 0; /* every unmarked message up to now is in the stream */
            /* and nothing of ours is on its way: a new chain may start (the
             * pass's last link may have been a duplicate, not the stream's
             * last message) */
            handover_chain_restart(h);
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
                           int sole_publisher, store_t *store)
{
    handover_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->nc = nc;
    h->store = store;
    h->prefix = prefix;
    h->stream_replicas = stream_replicas;
    h->sole_publisher = sole_publisher;
    h->sent = metrics_counter("push_collect_handed_over_total", NULL,
                              "Messages handed to the dispatcher stream");
    h->errors = metrics_counter("push_collect_handover_errors_total", NULL,
                                "Hand-overs that failed (retried)");
    h->retried = metrics_counter("push_collect_handover_retries_total", NULL,
                                 "Hand-overs retried by the retry loop");
    h->refused_chain = metrics_counter(
        "push_collect_handover_chain_refused_total", NULL,
        "Hand-overs the stream refused because the one before them in the chain was not stored "
        "(retried, in order)");
    h->age = metrics_age_histogram("push_collect_handover_age_seconds",
                                   "From a publish's acceptance (its id's millisecond) to the "
                                   "dispatch stream's ack of its hand-over");
    h->too_large =
        metrics_counter("push_collect_handover_too_large_total", NULL,
                        "Messages over NATS max_payload as a Dispatch (store delivery only)");
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    pthread_mutex_init(&h->pub_lock, NULL);
    pthread_mutex_init(&h->marks.lock, NULL);
    pthread_mutex_init(&h->flush_lock, NULL);
    pthread_mutex_init(&h->fly_lock, NULL);
    if (clock_cond_init(&h->fly_cond) != 0) {
        LOG_E("handover: cannot create a condition variable; not starting");
        goto fail_cond;
    }
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
    pthread_cond_destroy(&h->fly_cond);
fail_cond:
    pthread_mutex_destroy(&h->pub_lock);
    pthread_mutex_destroy(&h->marks.lock);
    pthread_mutex_destroy(&h->flush_lock);
    pthread_mutex_destroy(&h->fly_lock);
    free(h);
    return NULL;
}

void handover_stop(handover_t *h)
{
    if (!h)
        return;
    natsx_watch(NULL, NULL);
    bgloop_stop(h->retry);
    pthread_mutex_lock(&h->pub_lock);
    handover_settle(h, 0); /* every round's answers (or their deadline) */
    pthread_mutex_unlock(&h->pub_lock);
    handover_flush_marks(h);
    /* A round given up at its deadline may still have publishes nats.c
     * answers later (its MaxWait timer fires on a thread of its own, and
     * can be late): their handler would reach a freed h. nats.c counts a
     * publish as pending until its handler has returned, so once none is,
     * none can come. If some never are (nats.c could not even make its
     * timeout answer), h is left allocated: the process is ending anyway. */
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = HANDOVER_ACK_WAIT_MS + 5000;
    natsStatus s = js_PublishAsyncComplete(h->js_async, &po);
    if (s != NATS_OK) {
        LOG_W("handover: hand-over(s) still unanswered after %d ms (%s); stopping without "
              "freeing the hand-over's state",
              HANDOVER_ACK_WAIT_MS + 5000, natsStatus_GetText(s));
        return;
    }
    jsCtx_Destroy(h->js);
    jsCtx_Destroy(h->js_async);
    pthread_mutex_destroy(&h->marks.lock);
    pthread_mutex_destroy(&h->flush_lock);
    pthread_cond_destroy(&h->fly_cond);
    pthread_mutex_destroy(&h->fly_lock);
    pthread_mutex_destroy(&h->pub_lock);
    free(h);
}
