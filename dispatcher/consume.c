/* consume: see consume.h. */
#include "consume.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bgloop.h"
#include "clock.h"
#include "group.h"
#include "ids.h"
#include "jsx.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "natsx.h"
#include "outbox.h"
#include "push/v1/push.pb-c.h"
#include "routes_lookup.h"

typedef struct shard {
    consume_t *c;
    unsigned id;
    pthread_t thread;
    int running;                 /* the thread exists (manager thread only) */
    atomic_int run;              /* the worker keeps going while set */
    atomic_int done;             /* the worker is returning: joining it does not wait */
    atomic_llong valid_until_ms; /* monotonic ms until which our lease surely holds */
    natsSubscription *sub;       /* worker thread only */
    uint64_t epoch;          /* worker thread only: the connection sub was bound on (natsx_epoch) */
    uint64_t last_cseq;      /* worker thread only: consumer sequence of the last message taken */
    routes_lookup_t *routes; /* worker thread only */
    char subject[300];
    char durable[64];
} shard_t;

struct consume {
    natsConnection *nc;
    jsCtx *js;
    redisx_url_t redis;
    lease_t *lease;
    char prefix[128];
    char stream[128];
    char owner[160];
    shard_t shards[JSX_SHARDS];
    bgloop_t *manager;         /* the lease manager: consume_tick every CONSUME_TICK_MS */
    natsSubscription *changes; /* <prefix>.dispatchers: another one joined, left or gave back */
    atomic_int stream_ok;
    int64_t started_ms;       /* clock_mono_ms at consume_start */
    int last_live, last_rank; /* manager thread only: the previous tick's (live 0: none yet) */
    int64_t settle_until_ms;  /* manager thread only: tick fast until then */
    atomic_int redis_up;
    atomic_ullong publish_failed_total; /* NodeDelivery publishes refused by nats.c */
    metrics_series_t *messages, *deliveries, *node_messages, *offline, *malformed, *broadcasts,
        *channel_messages;
    metrics_series_t *bad_announcements; /* malformed on <prefix>.dispatchers */
    metrics_series_t *owned, *busy_owned, *taken, *rebinds, *redelivered, *conn_changes,
        *conn_resumed;
    metrics_histogram_t *age; /* accepted -> published to the nodes */
};

/* Work on a shard only while its lease surely holds. The manager renews
 * every CONSUME_TICK_MS; the margin leaves room for a slow renewal, so a
 * dispatcher cut off from Redis stops before its lease can pass to another. */
#define CONSUME_TICK_MS 1000
/* After the live dispatchers changed, or this one gave shards back, the
 * manager ticks every CONSUME_SETTLE_TICK_MS for CONSUME_SETTLE_MS: a shard
 * another one gives back is taken within that tick, not a whole one. */
#define CONSUME_SETTLE_MS 5000
#define CONSUME_SETTLE_TICK_MS 100
#define CONSUME_LEASE_MARGIN_MS 1500

static int shard_lease_ok(shard_t *sh)
{
    return clock_mono_ms() + CONSUME_LEASE_MARGIN_MS < atomic_load(&sh->valid_until_ms);
}

/* (Re)create the shard's durable consumer so that it starts right after
 * the last message acked: whatever a previous owner (or this one, before a
 * failure) took but did not ack comes first, in stream order, now, rather
 * than after the ack wait behind newer messages. */
static int shard_bind(shard_t *sh)
{
    consume_t *c = sh->c;
    if (!natsx_epoch(c->nc, &sh->epoch) || !atomic_load(&c->stream_ok))
        return -1;
    natsConnection_FlushTimeout(c->nc, 2000); /* our own acks reach the server first */
    uint64_t start = 1;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, c->js, c->stream, sh->durable, NULL, &jerr);
    if (s == NATS_OK) {
        start = ci->AckFloor.Stream + 1;
        jsConsumerInfo_Destroy(ci);
        jerr = 0;
        s = js_DeleteConsumer(c->js, c->stream, sh->durable, NULL, &jerr);
        if (s != NATS_OK && jerr != JSConsumerNotFoundErr) {
            LOG_W("shard %u: cannot reset consumer %s: %s (error %d); retrying", sh->id,
                  sh->durable, natsStatus_GetText(s), (int)jerr);
            return -1;
        }
    } else if (jerr == JSStreamNotFoundErr) {
        atomic_store(&c->stream_ok, 0); /* the manager creates it again */
        return -1;
    } else if (jerr != JSConsumerNotFoundErr) {
        LOG_W("shard %u: cannot read consumer %s: %s (error %d); retrying", sh->id, sh->durable,
              natsStatus_GetText(s), (int)jerr);
        return -1;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = (int64_t)CONSUME_ACK_WAIT_S * 1000000000LL;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = start;
    so.Config.Durable = sh->durable;
    so.Config.MaxAckPending = 4 * CONSUME_BATCH; /* the server stops pushing past this */
    jerr = 0;
    s = js_SubscribeSync(&sh->sub, c->js, sh->subject, NULL, &so, &jerr);
    if (s != NATS_OK) {
        LOG_W("shard %u: cannot create consumer %s on %s: %s (error %d); retrying", sh->id,
              sh->durable, sh->subject, natsStatus_GetText(s), (int)jerr);
        sh->sub = NULL;
        return -1;
    }
    sh->last_cseq = 0;
    metrics_inc(c->rebinds);
    LOG_D("shard %u: consuming %s from stream sequence %llu", sh->id, sh->subject,
          (unsigned long long)start);
    return 0;
}

/* 1 while the connection is the one the shard works on (sh->epoch).
 *
 * Order across a lost connection: what was published on the old one just
 * before it broke (deliveries, acks) may be lost without an error, and so
 * may messages the consumer pushed to it, while once the connection is
 * back the consumer goes on pushing newer messages; delivering those would
 * put them ahead of the lost ones, which come again only after the ack
 * wait. So nothing is published or acked on another connection until
 * shard_resume found nothing lost; otherwise the batch is left unacked and
 * the shard binds again, from the ack floor, so the lost ones come first
 * (a message may come twice, at-least-once). Checked right before every
 * publish and before the acks; a reconnection takes at least a round trip
 * to a server, far longer than from this check to the publish after it. */
static int shard_same_connection(shard_t *sh)
{
    uint64_t now = 0;
    return natsx_epoch(sh->c->nc, &now) && now == sh->epoch;
}

/* The connection changed since the shard last worked; first_cseq is the
 * consumer sequence of the batch in hand. Nothing was lost when every
 * message taken so far is acked in the consumer's state (our acks reached
 * the server, and our deliveries went before them on the same connection)
 * and the batch follows the last message taken without a gap (nothing
 * pushed to the old connection was lost): then the shard goes on, on the
 * new connection, without re-creating its consumer (which needs the
 * cluster's metadata leader, and took seconds right after a server died).
 * Returns 1 when it may go on. */
static int shard_resume(shard_t *sh, uint64_t first_cseq)
{
    consume_t *c = sh->c;
    uint64_t now = 0;
    if (!natsx_epoch(c->nc, &now))
        return 0;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, c->js, c->stream, sh->durable, NULL, &jerr);
    int ok =
        s == NATS_OK && first_cseq == sh->last_cseq + 1 && ci->AckFloor.Consumer >= sh->last_cseq;
    jsConsumerInfo_Destroy(ci);
    if (ok)
        sh->epoch = now;
    metrics_inc(ok ? c->conn_resumed : c->conn_changes);
    return ok;
}

static void shard_unbind(shard_t *sh)
{
    /* Destroy, not unsubscribe: unsubscribing would delete the consumer
     * and its ack floor, which the next owner starts from. */
    natsSubscription_Destroy(sh->sub);
    sh->sub = NULL;
}

typedef struct batch_user {
    size_t msg; /* index of the message in the batch */
    const char *user;
} batch_user_t;

typedef struct batch {
    consume_t *c;
    Push__V1__Dispatch **roots; /* one per stream message, decoded; NULL when malformed */
    Push__V1__Dispatch **d;     /* the messages: the roots, or their batch entries, in order */
    size_t n;
    char **users;     /* all recipients of the batch, flattened (a channel message: its channel) */
    size_t *user_msg; /* message index of each */
    unsigned char *is_channel; /* users[i] is a channel name */
    size_t n_users;
    group_t **groups; /* per message: node -> users */
} batch_t;

static void batch_found(void *arg, size_t i, const char *node)
{
    batch_t *b = arg;
    group_add(b->groups[b->user_msg[i]], node, b->users[i]);
}

static void consume_publish(shard_t *sh, const char *subject, Push__V1__NodeDelivery *nd)
{
    consume_t *c = sh->c;
    if (!shard_same_connection(sh)) {
        atomic_fetch_add(&c->publish_failed_total, 1);
        return;
    }
    size_t len = push__v1__node_delivery__get_packed_size(nd);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        atomic_fetch_add(&c->publish_failed_total, 1);
        return;
    }
    push__v1__node_delivery__pack(nd, buf);
    natsStatus s = natsConnection_Publish(c->nc, subject, buf, (int)len);
    if (s != NATS_OK) {
        atomic_fetch_add(&c->publish_failed_total, 1);
        LOG_W("publish to %s failed: %s", subject, natsStatus_GetText(s));
    }
    free(buf);
}

/* outbox_send_fn: one NATS message to a node for what this batch has for it. */
static int consume_send_node(void *arg, const char *node, const uint8_t *buf, size_t len,
                             size_t n_entries)
{
    shard_t *sh = arg;
    consume_t *c = sh->c;
    if (!shard_same_connection(sh))
        return -1;
    char subject[512];
    snprintf(subject, sizeof subject, "%s.%s.%s", c->prefix, NATSX_NODE, node);
    natsStatus s = natsConnection_Publish(c->nc, subject, buf, (int)len);
    if (s != NATS_OK) {
        atomic_fetch_add(&c->publish_failed_total, 1);
        LOG_W("publish to %s failed: %s", subject, natsStatus_GetText(s));
        return -1;
    }
    metrics_add(c->deliveries, (int64_t)n_entries);
    metrics_inc(c->node_messages);
    return 0;
}

typedef struct group_pub {
    outbox_t *out;
    Push__V1__Message *m;
    int failed;
} group_pub_t;

static void consume_publish_group(void *arg, const char *node, char **users, size_t n)
{
    group_pub_t *gp = arg;
    if (outbox_add(gp->out, node, gp->m, users, n) != 0)
        gp->failed = 1;
}

static void consume_publish_channel(void *arg, const char *node, char **users, size_t n)
{
    (void)users, (void)n;
    group_pub_t *gp = arg;
    if (outbox_add(gp->out, node, gp->m, NULL, 0) != 0)
        gp->failed = 1;
}

/* Dispatch one fetched batch of a shard and ack it. Returns 0, or -1 when
 * the batch was left unacked (the caller rebinds, so it comes again first). */
static int consume_batch(shard_t *sh, natsMsgList *list)
{
    consume_t *c = sh->c;
    int rc = -1;
    unsigned long long failed_before = atomic_load(&c->publish_failed_total);
    batch_t b = {.c = c};
    size_t n_roots = (size_t)list->Count;
    /* what each node gets from this batch, in one NATS message (outbox.h) */
    outbox_t *out = outbox_new(OUTBOX_MAX_BYTES, consume_send_node, sh);
    int failed = 0;
    b.roots = calloc(n_roots, sizeof *b.roots);
    if (!b.roots || !out)
        goto oom;
    size_t n_entries = 0;
    uint64_t first_cseq = 0, last_cseq = 0; /* consumer sequences of the batch */
    for (size_t i = 0; i < n_roots; i++) {
        natsMsg *m = list->Msgs[i];
        /* A repeat from the stream is at-least-once at work; in a quiet run
         * it should stay 0, and when it does not, this says which hop. */
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            if (meta->NumDelivered > 1)
                metrics_inc(c->redelivered);
            if (i == 0)
                first_cseq = meta->Sequence.Consumer;
            if (meta->Sequence.Consumer > last_cseq)
                last_cseq = meta->Sequence.Consumer;
            jsMsgMetaData_Destroy(meta);
        }
        b.roots[i] = push__v1__dispatch__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                                (const uint8_t *)natsMsg_GetData(m));
        if (b.roots[i])
            n_entries += b.roots[i]->n_batch ? b.roots[i]->n_batch : 1;
    }
    if (!shard_same_connection(sh)) {
        if (!shard_resume(sh, first_cseq)) {
            LOG_W("shard %u: the NATS connection changed and what was taken on the old one may be "
                  "lost; leaving the batch unacked and binding again, so that the lost comes first",
                  sh->id);
            goto out;
        }
        LOG_I("shard %u: on a new NATS connection; nothing taken on the old one was lost", sh->id);
    }
    if (last_cseq > sh->last_cseq)
        sh->last_cseq = last_cseq;
    b.d = calloc(n_entries ? n_entries : 1, sizeof *b.d);
    b.groups = calloc(n_entries ? n_entries : 1, sizeof *b.groups);
    if (!b.d || !b.groups)
        goto oom;
    size_t cap = 0;
    for (size_t i = 0; i < n_roots; i++) {
        Push__V1__Dispatch *r = b.roots[i];
        size_t n_in = r ? (r->n_batch ? r->n_batch : 1) : 1;
        for (size_t k = 0; k < n_in; k++) {
            Push__V1__Dispatch *d = r && r->n_batch ? r->batch[k] : r;
            if (!d || !d->message) {
                metrics_inc(c->malformed);
                LOG_W("dropped a malformed Dispatch on the stream");
                continue;
            }
            cap += d->n_to + (d->message->channel != NULL);
            if (!(b.groups[b.n] = group_new()))
                goto oom;
            b.d[b.n++] = d;
        }
    }
    b.users = malloc((cap ? cap : 1) * sizeof *b.users);
    b.user_msg = malloc((cap ? cap : 1) * sizeof *b.user_msg);
    b.is_channel = calloc(cap ? cap : 1, 1);
    if (!b.users || !b.user_msg || !b.is_channel)
        goto oom;
    for (size_t i = 0; i < b.n; i++) {
        if (!b.d[i])
            continue;
        if (b.d[i]->message->channel) {
            /* one lookup for the whole channel: the nodes with a subscriber */
            b.is_channel[b.n_users] = 1;
            b.users[b.n_users] = b.d[i]->message->channel;
            b.user_msg[b.n_users++] = i;
            continue;
        }
        if (b.d[i]->broadcast)
            continue;
        for (size_t k = 0; k < b.d[i]->n_to; k++) {
            b.users[b.n_users] = b.d[i]->to[k];
            b.user_msg[b.n_users++] = i;
        }
    }
    /* One pipelined round trip for the whole batch; while Redis is away,
     * hold the batch and keep JetStream from redelivering it elsewhere. */
    int tries = 0;
    while (b.n_users &&
           routes_lookup_nodes(sh->routes, b.users, b.is_channel, b.n_users,
                               (long long)(clock_wall_ms() / 1000), batch_found, &b) != 0) {
        if (!atomic_load(&sh->run) || !shard_lease_ok(sh))
            goto out; /* not acked: whoever runs this shard next starts with it */
        if (++tries % 10 == 0)
            for (size_t i = 0; i < n_roots; i++)
                natsMsg_InProgress(list->Msgs[i], NULL);
        usleep(500 * 1000);
    }
    for (size_t i = 0; i < b.n; i++) {
        if (!b.d[i])
            continue;
        metrics_inc(c->messages);
        if (b.d[i]->message->channel) {
            /* one delivery per node with a subscriber, no user list (the
             * node knows its subscribers); nothing to the others */
            metrics_inc(c->channel_messages);
            group_pub_t gp = {out, b.d[i]->message, 0};
            group_each(b.groups[i], consume_publish_channel, &gp);
            failed |= gp.failed;
            continue;
        }
        if (b.d[i]->broadcast) {
            char subject[256];
            natsx_subject(subject, sizeof subject, c->prefix, NATSX_BROADCAST);
            Push__V1__NodeDelivery nd = PUSH__V1__NODE_DELIVERY__INIT;
            nd.message = b.d[i]->message;
            consume_publish(sh, subject, &nd);
            metrics_inc(c->broadcasts);
            continue;
        }
        metrics_add(c->offline, (int64_t)(b.d[i]->n_to - group_users(b.groups[i])));
        group_pub_t gp = {out, b.d[i]->message, 0};
        group_each(b.groups[i], consume_publish_group, &gp);
        failed |= gp.failed;
    }
    failed |= outbox_flush(out) != 0;
    /* No flush before the acks: they follow the deliveries on the same
     * connection, and the server handles a connection's messages in order,
     * so an ack is never seen before the deliveries it covers; if the
     * connection drops, both are lost and the batch comes again. */
    if (!shard_same_connection(sh)) {
        /* Acks on a new connection could cover deliveries lost with the old. */
        metrics_inc(c->conn_changes);
        LOG_W("shard %u: the NATS connection changed under a batch of %zu; leaving it unacked and "
              "binding again, so that what the old connection may have lost comes first",
              sh->id, b.n);
        goto out;
    }
    if (failed || atomic_load(&c->publish_failed_total) != failed_before) {
        LOG_W("%zu deliveries could not be published; leaving the batch unacked", b.n);
        goto out;
    }
    for (size_t i = 0; i < b.n; i++)
        if (b.d[i] && b.d[i]->message->id)
            metrics_observe_since_ms(c->age, ids_time_ms(b.d[i]->message->id));
    for (size_t i = 0; i < n_roots; i++)
        natsMsg_Ack(list->Msgs[i], NULL);
    rc = 0;
    goto out;
oom:
    LOG_E("out of memory for a batch of %zu; leaving it unacked for redelivery", n_roots);
out:
    outbox_free(out);
    for (size_t i = 0; b.groups && i < b.n; i++)
        group_free(b.groups[i]);
    for (size_t i = 0; b.roots && i < n_roots; i++)
        if (b.roots[i])
            push__v1__dispatch__free_unpacked(b.roots[i], NULL);
    free(b.roots);
    free(b.d);
    free(b.groups);
    free(b.users);
    free(b.user_msg);
    free(b.is_channel);
    return rc;
}

/* The shard's consumer pushes messages as they are stored; take the first
 * (waiting up to 500 ms), then whatever else is already here, up to a
 * batch. A pull Fetch of a batch would wait for the batch to fill: with the
 * stream cut into shards, a shard's batch fills slowly and latency with it. */
static natsStatus shard_fetch(shard_t *sh, natsMsgList *list)
{
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, sh->sub, 500);
    if (s != NATS_OK)
        return s;
    natsMsg **msgs = malloc(CONSUME_BATCH * sizeof *msgs);
    if (!msgs) {
        natsx_msg_free(m); /* not acked: it comes again after the ack wait */
        return NATS_NO_MEMORY;
    }
    int n = 0;
    msgs[n++] = m;
    while (n < CONSUME_BATCH && natsSubscription_NextMsg(&m, sh->sub, 0) == NATS_OK)
        msgs[n++] = m;
    list->Msgs = msgs;
    *(int *)&list->Count = n; /* natsMsgList's Count is const for its users */
    return NATS_OK;
}

/* A push consumer that was deleted under us (the stream was deleted and
 * created again, say) just goes quiet: while idle, check now and then. */
static int shard_consumer_gone(shard_t *sh)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, sh->c->js, sh->c->stream, sh->durable, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    return s != NATS_OK && (jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr);
}

static void *shard_loop(void *arg)
{
    shard_t *sh = arg;
    char name[16];
    snprintf(name, sizeof name, "shard-%u", sh->id);
    pthread_setname_np(pthread_self(), name);
    int logged = 0;
    unsigned idle = 0; /* receive timeouts in a row */
    while (atomic_load(&sh->run)) {
        if (!shard_lease_ok(sh)) {
            usleep(100 * 1000); /* the manager renews it or stops us */
            continue;
        }
        if (!sh->sub && shard_bind(sh) != 0) {
            usleep(500 * 1000);
            continue;
        }
        natsMsgList list = {0};
        natsStatus s = shard_fetch(sh, &list);
        if (s == NATS_OK && list.Count > 0) {
            logged = 0;
            idle = 0;
            if (consume_batch(sh, &list) != 0)
                shard_unbind(sh);
        } else if (s == NATS_TIMEOUT) {
            if (++idle % 10 == 0 && natsx_connected(sh->c->nc) && shard_consumer_gone(sh)) {
                LOG_W("shard %u: consumer %s is gone; creating it again", sh->id, sh->durable);
                shard_unbind(sh);
            }
        } else {
            /* Out of memory, or the subscription failed: bind again (from
             * the ack floor) once things are back. */
            if (!logged)
                LOG_W("shard %u: receive failed (%s); binding again", sh->id,
                      natsStatus_GetText(s));
            logged = 1;
            shard_unbind(sh);
            usleep(200 * 1000);
        }
        natsx_msg_list_free(&list);
    }
    /* Our acks reach the server before the lease is given back, so the
     * next owner's ack floor is current and it repeats nothing. */
    if (natsx_connected(sh->c->nc))
        natsConnection_FlushTimeout(sh->c->nc, 1000);
    shard_unbind(sh);
    atomic_store(&sh->done, 1);
    return NULL;
}

/* A worker is a plain thread, not a bgloop: it blocks in a JetStream fetch
 * (its own timeout) rather than on a condition, and stops on sh->run. A
 * worker that cannot start is not fatal: its lease, never renewed, lapses
 * and the manager takes the shard again on a later tick. */
static int shard_start(consume_t *c, shard_t *sh, long long valid_until_ms)
{
    atomic_store(&sh->valid_until_ms, valid_until_ms);
    atomic_store(&sh->run, 1);
    atomic_store(&sh->done, 0);
    if (pthread_create(&sh->thread, NULL, shard_loop, sh) != 0) {
        LOG_E("cannot start a thread for shard %u", sh->id);
        return -1;
    }
    sh->running = 1;
    metrics_inc(c->taken);
    LOG_I("took shard %u (%s)", sh->id, sh->subject);
    return 0;
}

/* Let the worker finish the batch in hand (acked), then join it. */
static void shard_stop(shard_t *sh)
{
    if (!sh->running)
        return;
    atomic_store(&sh->run, 0);
    pthread_join(sh->thread, NULL);
    sh->running = 0;
}

static int consume_owned(const consume_t *c)
{
    int n = 0;
    for (unsigned i = 0; i < JSX_SHARDS; i++)
        n += c->shards[i].running;
    return n;
}

static void consume_announce(consume_t *c, const char *event);

/* Give back the n shards in give, told to stop already: each as soon as its
 * worker finished its batch (an idle one waits out its fetch, up to 500
 * ms, and must not hold up a busy one), telling the others at once. */
static void consume_give_back(consume_t *c, const int *give, int n)
{
    unsigned char handled[JSX_SHARDS] = {0};
    int left = n;
    while (left) {
        int progressed = 0;
        for (int k = 0; k < n; k++) {
            shard_t *sh = &c->shards[give[k]];
            if (handled[k] || (sh->running && !atomic_load(&sh->done)))
                continue;
            if (sh->running) {
                shard_stop(sh);
                lease_release(c->lease, (unsigned)give[k]);
                consume_announce(c, "gave_back");
            }
            handled[k] = 1;
            left--;
            progressed = 1;
        }
        if (!progressed)
            usleep(5 * 1000);
    }
}

/* The collector creates the dispatch stream with its --stream-replicas; a
 * dispatcher starting first would create it with 1, and the collector's
 * scale-up to 3 then races with the consumers this dispatcher creates
 * meanwhile (one created in the middle can stay on one server and die with
 * it). So a missing stream is the collector's to create during our first
 * CONSUME_STREAM_GRACE_MS; after that (no collector yet) we create it,
 * with 1 replica. An existing one is brought to the expected config, its
 * replica count kept (jsx.h). */
#define CONSUME_STREAM_GRACE_MS 10000

static int consume_ensure_stream(consume_t *c)
{
    if (clock_mono_ms() - c->started_ms < CONSUME_STREAM_GRACE_MS) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetStreamInfo(&si, c->js, c->stream, NULL, &jerr);
        jsStreamInfo_Destroy(si);
        if (s != NATS_OK)
            return 0; /* not there yet (or not readable): ask again at the next tick */
    }
    return jsx_ensure_dispatch_stream(c->js, c->prefix, 0) == NATS_OK;
}

/* Tell the other dispatchers that shards may be free or due to move (event:
 * "joined", "gave_back", "left"), so that they look now rather than at
 * their next tick: <prefix>.dispatchers, JSON {"dispatcher", "event"}. */
static void consume_announce(consume_t *c, const char *event)
{
    char subject[256];
    natsx_subject(subject, sizeof subject, c->prefix, NATSX_DISPATCHERS);
    json_t *j = json_pack("{s:s, s:s}", "dispatcher", c->owner, "event", event);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text && natsx_connected(c->nc))
        natsConnection_PublishString(c->nc, subject, text);
    free(text);
    json_decref(j);
}

static void consume_on_change(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                              void *closure)
{
    (void)nc, (void)sub;
    consume_t *c = closure;
    json_t *j = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
    const char *who = json_string_value(json_object_get(j, "dispatcher"));
    if (!who)
        metrics_inc(c->bad_announcements); /* not one of ours: no tick for it */
    else if (strcmp(who, c->owner) != 0)
        bgloop_wake(c->manager);
    json_decref(j);
    natsx_msg_free(msg);
}

/* Whether shard is ours to keep or take: by rank (lease.h) when every live
 * dispatcher places shards by rank, else within a share of ceil(shards /
 * live) like older versions (owned: what we hold, counting this one). */
static int consume_mine(unsigned shard, int live, int rank, int owned)
{
    if (rank >= 0)
        return lease_target(shard, live) == rank;
    return owned <= (JSX_SHARDS + live - 1) / live;
}

/* One pass of the manager: heartbeat, renew, give back what is not ours,
 * take free shards that are. */
static void consume_tick(consume_t *c)
{
    if (!atomic_load(&c->stream_ok) && natsx_connected(c->nc))
        atomic_store(&c->stream_ok, consume_ensure_stream(c));
    long long t0 = clock_mono_ms();
    int rank = -1;
    int live = lease_heartbeat(c->lease, &rank);
    atomic_store(&c->redis_up, live > 0);
    if (live <= 0)
        return; /* workers pause by themselves once their leases may have passed */
    for (unsigned i = 0; i < JSX_SHARDS; i++) {
        shard_t *sh = &c->shards[i];
        if (!sh->running)
            continue;
        int r = lease_renew(c->lease, i);
        if (r < 0)
            return;
        if (r == 1) {
            atomic_store(&sh->valid_until_ms, t0 + LEASE_MS);
        } else {
            LOG_W("lost the lease of shard %u; stopping it", i);
            shard_stop(sh);
        }
    }
    if (!c->last_live || (rank >= 0) != (c->last_rank >= 0)) {
        if (rank >= 0)
            LOG_I("placing shards by rank, %d dispatcher(s) live", live);
        else
            LOG_I("sharing shards by count, %d dispatcher(s) live: one of an older version is "
                  "among them",
                  live);
    }
    if (live != c->last_live || rank != c->last_rank)
        c->settle_until_ms = clock_mono_ms() + CONSUME_SETTLE_MS;
    if (!c->last_live)
        consume_announce(c, "joined"); /* our first heartbeat */
    c->last_live = live;
    c->last_rank = rank;
    int owned = consume_owned(c);
    /* Give back what is not ours (by count: the highest shards over our
     * share): tell them all to stop first, so their last batches finish
     * side by side, not one by one. */
    int give[JSX_SHARDS], n_give = 0;
    for (int i = JSX_SHARDS - 1; i >= 0; i--)
        if (c->shards[i].running && !consume_mine((unsigned)i, live, rank, owned - n_give)) {
            atomic_store(&c->shards[i].run, 0);
            give[n_give++] = i;
        }
    consume_give_back(c, give, n_give);
    for (int k = 0; k < n_give; k++)
        LOG_I("gave back shard %d (%d dispatchers share %d shards)", give[k], live, JSX_SHARDS);
    owned -= n_give;
    if (n_give)
        c->settle_until_ms = clock_mono_ms() + CONSUME_SETTLE_MS;
    if (!atomic_load(&c->stream_ok))
        return;
    for (unsigned i = 0; i < JSX_SHARDS; i++) {
        shard_t *sh = &c->shards[i];
        if (sh->running || !consume_mine(i, live, rank, owned + 1))
            continue;
        t0 = clock_mono_ms();
        int r = lease_take(c->lease, i);
        if (r < 0)
            return;
        if (r == 1 && shard_start(c, sh, t0 + LEASE_MS) == 0)
            owned++;
    }
    metrics_set(c->owned, owned);
    int busy = 0;
    for (unsigned i = 0; i < JSX_SHARDS; i++)
        busy += c->shards[i].running && jsx_shard_used(i);
    metrics_set(c->busy_owned, busy);
}

static int consume_manager(void *arg)
{
    consume_t *c = arg;
    consume_tick(c);
    if (clock_mono_ms() < c->settle_until_ms && !bgloop_stopping(c->manager)) {
        usleep(CONSUME_SETTLE_TICK_MS * 1000);
        return BGLOOP_AGAIN;
    }
    return BGLOOP_WAIT;
}

/* After the manager stopped (its shards are ours now): finish the batches
 * in hand, then hand the shards on at once rather than after the leases run
 * out. */
static void consume_give_back_all(consume_t *c)
{
    int give[JSX_SHARDS], n = 0;
    for (unsigned i = 0; i < JSX_SHARDS; i++) {
        atomic_store(&c->shards[i].run, 0); /* all at once: each may wait on NATS */
        if (c->shards[i].running)
            give[n++] = (int)i;
    }
    /* Out of the live set first: the others rank themselves without us and
     * take each shard as soon as it is released (the leases, not the set,
     * keep one owner per shard). */
    lease_leave(c->lease);
    consume_announce(c, "left");
    consume_give_back(c, give, n);
}

consume_t *consume_start(natsConnection *nc, const char *prefix, const redisx_url_t *redis)
{
    consume_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->nc = nc;
    c->redis = *redis;
    snprintf(c->prefix, sizeof c->prefix, "%s", prefix);
    jsx_stream_name(c->stream, sizeof c->stream, prefix);
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    unsigned char rnd[4] = {0};
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(rnd, 1, sizeof rnd, f) != sizeof rnd)
            memset(rnd, 0, sizeof rnd);
        fclose(f);
    }
    snprintf(c->owner, sizeof c->owner, "%s-%d-%02x%02x%02x%02x", host, (int)getpid(), rnd[0],
             rnd[1], rnd[2], rnd[3]);
    c->messages =
        metrics_counter("push_dispatch_messages_total", NULL, "Messages taken from the stream");
    c->age = metrics_age_histogram("push_dispatch_age_seconds",
                                   "From the collector's acceptance of a message (its id's "
                                   "millisecond) to its deliveries published to the nodes");
    c->deliveries = metrics_counter("push_dispatch_deliveries_total", NULL,
                                    "Deliveries (a message for a node's users) published to nodes");
    c->node_messages =
        metrics_counter("push_dispatch_node_messages_total", NULL,
                        "NATS messages to nodes (each carries one or more deliveries)");
    c->broadcasts = metrics_counter("push_dispatch_broadcasts_total", NULL, "Broadcasts published");
    c->channel_messages =
        metrics_counter("push_dispatch_channel_messages_total", NULL,
                        "Channel messages dispatched (to the nodes with subscribers)");
    c->offline = metrics_counter("push_dispatch_offline_recipients_total", NULL,
                                 "Recipients with no live node (they get it on reconnect)");
    c->malformed =
        metrics_counter("push_dispatch_malformed_total", NULL, "Malformed stream messages dropped");
    c->owned = metrics_gauge("push_dispatch_shards_owned", NULL,
                             "Shards of the dispatch stream this dispatcher owns now");
    c->busy_owned =
        metrics_gauge("push_dispatch_busy_shards_owned", NULL,
                      "Shards of the dispatch stream this dispatcher owns that collectors put "
                      "messages on (4 of the 16)");
    c->bad_announcements =
        metrics_counter("push_dispatch_bad_announcements_total", NULL,
                        "Messages on <prefix>.dispatchers that are not a dispatcher's JSON "
                        "announcement (ignored)");
    c->taken = metrics_counter("push_dispatch_shards_taken_total", NULL,
                               "Shard leases taken (at start, rebalancing, failover)");
    c->rebinds = metrics_counter("push_dispatch_consumer_resets_total", NULL,
                                 "Shard consumers (re)created from their ack floor");
    c->redelivered =
        metrics_counter("push_dispatch_redelivered_total", NULL,
                        "Stream messages taken more than once (ack wait passed, or a reset)");
    c->conn_changes = metrics_counter(
        "push_dispatch_connection_changes_total", NULL,
        "Batches left unacked because the NATS connection changed and something taken on the old "
        "one may be lost (the shard binds again from its ack floor)");
    c->conn_resumed = metrics_counter(
        "push_dispatch_connection_resumes_total", NULL,
        "Shards that went on, on a new NATS connection, having lost nothing on the old one");
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    if (natsConnection_JetStream(&c->js, nc, &jo) != NATS_OK)
        goto fail;
    for (unsigned i = 0; i < JSX_SHARDS; i++) {
        shard_t *sh = &c->shards[i];
        sh->c = c;
        sh->id = i;
        jsx_shard_subject(sh->subject, sizeof sh->subject, prefix, i);
        jsx_shard_consumer(sh->durable, sizeof sh->durable, i);
        if (!(sh->routes = routes_lookup_new(redis, prefix)))
            goto fail;
    }
    if (!(c->lease = lease_new(redis, prefix, c->owner)))
        goto fail;
    c->started_ms = clock_mono_ms();
    if (natsx_connected(nc))
        atomic_store(&c->stream_ok, consume_ensure_stream(c));
    if (bgloop_start(&c->manager, "shards", CONSUME_TICK_MS, consume_manager, c) != 0) {
        LOG_E("cannot start the lease manager thread");
        goto fail;
    }
    char subject[256];
    natsx_subject(subject, sizeof subject, prefix, NATSX_DISPATCHERS);
    if (natsConnection_Subscribe(&c->changes, nc, subject, consume_on_change, c) != NATS_OK) {
        c->changes = NULL; /* slower to follow the others (their ticks), not wrong */
        LOG_W("cannot subscribe to %s; following the other dispatchers every %d ms", subject,
              CONSUME_TICK_MS);
    }
    LOG_I("%s sharing %d shards of %s with the other dispatchers", c->owner, JSX_SHARDS, c->stream);
    return c;
fail:
    LOG_E("cannot start consuming (out of memory or no JetStream context)");
    for (unsigned i = 0; i < JSX_SHARDS; i++)
        routes_lookup_free(c->shards[i].routes);
    lease_free(c->lease);
    jsCtx_Destroy(c->js);
    free(c);
    return NULL;
}

void consume_stop(consume_t *c)
{
    if (!c)
        return;
    natsx_sub_close(c->changes, c->nc, 1000); /* no wake-up of a stopped manager */
    bgloop_stop(c->manager);
    consume_give_back_all(c);
    for (unsigned i = 0; i < JSX_SHARDS; i++)
        routes_lookup_free(c->shards[i].routes);
    lease_free(c->lease);
    jsCtx_Destroy(c->js);
    free(c);
}

int consume_ready(consume_t *c)
{
    return atomic_load(&c->stream_ok) && atomic_load(&c->redis_up);
}
