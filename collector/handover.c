/* handover: see handover.h. */
#include "handover.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsx.h"
#include "log.h"
#include "metrics.h"
#include "natsx.h"
#include "push/v1/push.pb-c.h"
#include "strmap.h"

struct handover {
    natsConnection *nc;
    jsCtx *js;
    jsCtx *js_async; /* publishes of handover_send_batch */
    pthread_mutex_t acked_lock;
    char **acked; /* ids the stream acked since the last batch mark */
    size_t n_acked, cap_acked;
    store_t *store;
    const char *prefix;
    atomic_int stream_ok;
    atomic_int stop;
    _Atomic uint64_t hold_from_ms; /* see handover_hold_retries_from; 0: none */
    pthread_t thread;
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;
    int pass_failed; /* the retry loop's current pass hit a failure: skip the rest */
    metrics_series_t *sent, *errors, *retried, *too_large;
};

/* The Dispatch protobuf of m; malloc'd, length in *len. */
static uint8_t *handover_pack(const store_msg_t *m, char *const *to, size_t n_to, size_t *len)
{
    Push__V1__Message msg = PUSH__V1__MESSAGE__INIT;
    msg.id = (char *)m->id;
    msg.topic = (char *)m->topic;
    msg.has_data = 1;
    msg.data.data = (uint8_t *)m->data;
    msg.data.len = m->data_len;
    msg.content_type = (char *)m->content_type;
    msg.has_accepted_ms = 1;
    msg.accepted_ms = m->accepted_ms;
    msg.has_ttl = 1;
    msg.ttl = m->ttl;
    Push__V1__Dispatch d = PUSH__V1__DISPATCH__INIT;
    d.message = &msg;
    d.to = (char **)to;
    d.n_to = n_to;
    d.has_broadcast = 1;
    d.broadcast = m->broadcast;
    *len = push__v1__dispatch__get_packed_size(&d);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        push__v1__dispatch__pack(&d, buf);
    return buf;
}

/* The parts of a message, one per shard of its recipients (jsx.h): the
 * recipients of shard k, in their order, are parts->to[parts->start[k] ..
 * parts->start[k+1]). A broadcast is one part on shard 0. */
typedef struct handover_parts {
    char **to;
    size_t start[JSX_SHARDS + 1];
    int broadcast;
} handover_parts_t;

static int handover_split(handover_parts_t *p, const store_msg_t *m, char *const *to, size_t n_to)
{
    memset(p, 0, sizeof *p);
    p->broadcast = m->broadcast;
    if (m->broadcast || n_to == 0)
        return 0;
    if (!(p->to = malloc(n_to * sizeof *p->to)))
        return -1;
    size_t count[JSX_SHARDS] = {0};
    unsigned char *shard = malloc(n_to);
    if (!shard) {
        free(p->to);
        p->to = NULL;
        return -1;
    }
    for (size_t i = 0; i < n_to; i++)
        count[shard[i] = (unsigned char)jsx_shard_of(to[i])]++;
    for (unsigned k = 0; k < JSX_SHARDS; k++)
        p->start[k + 1] = p->start[k] + count[k];
    size_t fill[JSX_SHARDS];
    memcpy(fill, p->start, sizeof fill);
    for (size_t i = 0; i < n_to; i++)
        p->to[fill[shard[i]]++] = to[i];
    free(shard);
    return 0;
}

/* Call fn for each non-empty part; stops at the first non-zero return. */
typedef int (*handover_part_fn)(void *arg, unsigned shard, char *const *to, size_t n_to);
static int handover_each_part(const handover_parts_t *p, handover_part_fn fn, void *arg)
{
    if (p->broadcast)
        return fn(arg, 0, NULL, 0);
    for (unsigned k = 0; k < JSX_SHARDS; k++) {
        size_t n = p->start[k + 1] - p->start[k];
        int rc = n ? fn(arg, k, p->to + p->start[k], n) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

static size_t handover_count_parts(const handover_parts_t *p)
{
    if (p->broadcast)
        return 1;
    size_t n = 0;
    for (unsigned k = 0; k < JSX_SHARDS; k++)
        n += p->start[k + 1] != p->start[k];
    return n;
}

/* The stream's message id of a part: "<message id>.<shard>", so a retry of
 * a part inside the stream's duplicate window is stored once. */
static void handover_part_id(char *out, size_t size, const char *id, unsigned shard)
{
    snprintf(out, size, "%s.%u", id, shard);
}

typedef struct handover_sync_part {
    handover_t *h;
    const store_msg_t *m;
} handover_sync_part_t;

static int handover_send_part(void *arg, unsigned shard, char *const *to, size_t n_to)
{
    handover_sync_part_t *sp = arg;
    handover_t *h = sp->h;
    const store_msg_t *m = sp->m;
    size_t len = 0;
    uint8_t *buf = handover_pack(m, to, n_to, &len);
    if (!buf)
        return -1;
    char subject[300], part_id[64];
    jsx_shard_subject(subject, sizeof subject, h->prefix, shard);
    handover_part_id(part_id, sizeof part_id, m->id, shard);
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MsgId = part_id;
    opts.MaxWait = 5000;
    jsErrCode jerr = 0;
    jsPubAck *ack = NULL;
    natsStatus s = js_Publish(&ack, h->js, subject, buf, (int)len, &opts, &jerr);
    free(buf);
    jsPubAck_Destroy(ack);
    if (s == NATS_MAX_PAYLOAD) {
        /* It can never go through this server: retrying would block every
         * later message. It stays stored, so recipients get it from the
         * store when they (re)connect; only live delivery is lost. */
        metrics_inc(h->too_large);
        LOG_E(
            "handover: message %s (%zu bytes as a Dispatch) is over the NATS server's max_payload; "
            "not handed to the dispatcher, recipients get it from the store on their next "
            "connection "
            "(raise max_payload to 2 MiB or more)",
            m->id, len);
        return 0;
    }
    if (s != NATS_OK) {
        metrics_inc(h->errors);
        LOG_W("handover: message %s not handed to the dispatcher yet (%s, error %d); it is stored "
              "and will be retried within %d ms",
              m->id, natsStatus_GetText(s), (int)jerr, HANDOVER_RETRY_MS);
        return -1;
    }
    return 0;
}

int handover_send(handover_t *h, const store_msg_t *m, char *const *to, size_t n_to)
{
    handover_parts_t parts;
    if (handover_split(&parts, m, to, n_to) != 0)
        return -1;
    handover_sync_part_t sp = {h, m};
    int rc = handover_each_part(&parts, handover_send_part, &sp);
    free(parts.to);
    if (rc != 0)
        return -1;
    metrics_inc(h->sent);
    if (store_mark_dispatched(h->store, m->id) != STORE_OK)
        LOG_W("handover: message %s handed over but not marked; it may be handed over twice",
              m->id);
    return 0;
}

static void handover_on_async_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                                  void *closure)
{
    (void)js;
    handover_t *h = closure;
    const char *id = NULL;
    if (pa && natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id) {
        pthread_mutex_lock(&h->acked_lock);
        if (h->n_acked == h->cap_acked) {
            size_t cap = h->cap_acked ? h->cap_acked * 2 : 1024;
            char **na = realloc(h->acked, cap * sizeof *na);
            if (na) {
                h->acked = na;
                h->cap_acked = cap;
            }
        }
        if (h->n_acked < h->cap_acked)
            h->acked[h->n_acked++] = strdup(id);
        pthread_mutex_unlock(&h->acked_lock);
    } else if (pae) {
        metrics_inc(h->errors);
    }
    natsMsg_Destroy(msg);
}

typedef struct handover_async_part {
    handover_t *h;
    const store_msg_t *m;
    natsStatus status;
} handover_async_part_t;

static int handover_publish_part_async(void *arg, unsigned shard, char *const *to, size_t n_to)
{
    handover_async_part_t *ap = arg;
    size_t len = 0;
    uint8_t *buf = handover_pack(ap->m, to, n_to, &len);
    if (!buf)
        return ap->status = NATS_NO_MEMORY, -1;
    char subject[300], part_id[64];
    jsx_shard_subject(subject, sizeof subject, ap->h->prefix, shard);
    handover_part_id(part_id, sizeof part_id, ap->m->id, shard);
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MsgId = part_id;
    ap->status = js_PublishAsync(ap->h->js_async, subject, buf, (int)len, &opts);
    free(buf);
    return ap->status == NATS_OK ? 0 : -1;
}

void handover_hold_retries_from(handover_t *h, uint64_t accepted_ms)
{
    atomic_store(&h->hold_from_ms, accepted_ms);
}

int handover_send_batch(handover_t *h, const store_msg_t *const *ms, char **const *tos,
                        const size_t *n_tos, size_t n)
{
    /* message id -> parts not acked yet; marked once it reaches 0 */
    strmap_t *waiting = strmap_new();
    if (!waiting)
        return 0;
    for (size_t i = 0; i < n; i++) {
        handover_parts_t parts;
        if (handover_split(&parts, ms[i], tos[i], n_tos[i]) != 0)
            continue; /* out of memory: the retry loop sends it */
        if (strmap_put(waiting, ms[i]->id, (void *)(intptr_t)handover_count_parts(&parts)) != 0) {
            free(parts.to);
            continue;
        }
        handover_async_part_t ap = {h, ms[i], NATS_OK};
        handover_each_part(&parts, handover_publish_part_async, &ap);
        free(parts.to);
        if (ap.status == NATS_MAX_PAYLOAD || ap.status == NATS_NO_MEMORY)
            continue; /* never fits: the retry loop logs it and leaves it to the store */
        if (ap.status != NATS_OK) {
            metrics_inc(h->errors);
            LOG_W("handover: %zu message(s) not handed to the dispatcher yet (%s); they are stored "
                  "and the retry loop (every %d ms) will send them",
                  n - i, natsStatus_GetText(ap.status), HANDOVER_RETRY_MS);
            break;
        }
    }
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = 5000;
    natsStatus s = js_PublishAsyncComplete(h->js_async, &wait);
    if (s != NATS_OK)
        LOG_W("handover: not every hand-over was acked in time (%s); the rest is retried",
              natsStatus_GetText(s));
    pthread_mutex_lock(&h->acked_lock);
    char **acked = h->acked;
    size_t n_acked = h->n_acked;
    h->acked = NULL;
    h->n_acked = h->cap_acked = 0;
    pthread_mutex_unlock(&h->acked_lock);
    /* acked holds part ids "<id>.<shard>"; cut them to message ids in place
     * and keep the messages whose every part was acked. */
    size_t n_done = 0;
    for (size_t i = 0; i < n_acked; i++) {
        char *dot = strrchr(acked[i], '.');
        if (dot)
            *dot = '\0';
        intptr_t left = (intptr_t)strmap_get(waiting, acked[i]);
        if (left <= 0) {
            free(acked[i]);
            continue;
        }
        strmap_put(waiting, acked[i], (void *)(left - 1));
        if (left == 1)
            acked[n_done++] = acked[i];
        else
            free(acked[i]);
    }
    strmap_free(waiting);
    metrics_add(h->sent, (int64_t)n_done);
    if (n_done && store_mark_dispatched_many(h->store, acked, n_done) != STORE_OK)
        LOG_W("handover: %zu message(s) handed over but not marked; they may be handed over twice",
              n_done);
    for (size_t i = 0; i < n_done; i++)
        free(acked[i]);
    free(acked);
    return (int)n_done;
}

/* After one failure (NATS or the stream is down) the rest of the pass is
 * skipped: each attempt could wait seconds, and a stop must not wait for
 * a thousand of them. The next pass starts again from the oldest. */
static void handover_retry_one(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    handover_t *h = arg;
    if (h->pass_failed || atomic_load(&h->stop))
        return;
    metrics_inc(h->retried);
    if (handover_send(h, m, to, n_to) != 0)
        h->pass_failed = 1;
}

static uint64_t now_ms(void)
{
    return ids_now_ms();
}

static void *handover_loop(void *arg)
{
    handover_t *h = arg;
    int first = 1;
    while (!atomic_load(&h->stop)) {
        if (!atomic_load(&h->stream_ok) && natsx_connected(h->nc))
            atomic_store(&h->stream_ok, jsx_ensure_dispatch_stream(h->js, h->prefix) == NATS_OK);
        if (atomic_load(&h->stream_ok)) {
            /* At start everything unmarked is ours to send; later, leave the
             * last few seconds to the callbacks that are handing them over now. */
            uint64_t before = first ? now_ms() + 1 : now_ms() - 5000;
            uint64_t hold = atomic_load(&h->hold_from_ms);
            if (hold && hold < before)
                before = hold; /* newer ones are in the writer's hand-over */
            h->pass_failed = 0;
            int n = store_undispatched(h->store, before, 1000, handover_retry_one, h);
            if (n > 0 && !h->pass_failed)
                LOG_I("handover: re-sent %d stored message(s) not yet handed to the dispatcher", n);
            if (h->pass_failed)
                atomic_store(&h->stream_ok, 0); /* the stream may be gone: create it again */
            first = 0;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += HANDOVER_RETRY_MS / 1000;
        pthread_mutex_lock(&h->wake_lock);
        if (!atomic_load(&h->stop))
            pthread_cond_timedwait(&h->wake, &h->wake_lock, &until);
        pthread_mutex_unlock(&h->wake_lock);
    }
    return NULL;
}

handover_t *handover_start(natsConnection *nc, const char *prefix, store_t *store)
{
    handover_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->nc = nc;
    h->store = store;
    h->prefix = prefix;
    h->sent = metrics_counter("push_collect_handed_over_total", NULL,
                              "Messages handed to the dispatcher stream");
    h->errors = metrics_counter("push_collect_handover_errors_total", NULL,
                                "Hand-overs that failed (retried)");
    h->retried = metrics_counter("push_collect_handover_retries_total", NULL,
                                 "Hand-overs retried by the retry loop");
    h->too_large =
        metrics_counter("push_collect_handover_too_large_total", NULL,
                        "Messages over NATS max_payload as a Dispatch (store delivery only)");
    pthread_mutex_init(&h->wake_lock, NULL);
    pthread_cond_init(&h->wake, NULL);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    pthread_mutex_init(&h->acked_lock, NULL);
    jsOptions ja;
    jsOptions_Init(&ja);
    ja.Wait = 5000;
    /* a hand-over round: up to WRITER_BATCH * WRITER_HO_DEPTH messages of
     * up to 16 parts each, plus what a timed-out round left pending */
    ja.PublishAsync.MaxPending = 131072;
    ja.PublishAsync.AckHandler = handover_on_async_ack;
    ja.PublishAsync.AckHandlerClosure = h;
    if (natsConnection_JetStream(&h->js, nc, &jo) != NATS_OK ||
        natsConnection_JetStream(&h->js_async, nc, &ja) != NATS_OK) {
        LOG_E("handover: cannot create a JetStream context; not starting");
        goto fail;
    }
    if (natsx_connected(nc))
        atomic_store(&h->stream_ok, jsx_ensure_dispatch_stream(h->js, prefix) == NATS_OK);
    if (pthread_create(&h->thread, NULL, handover_loop, h) != 0) {
        LOG_E("handover: cannot start the retry thread; not starting");
        goto fail;
    }
    return h;
fail:
    jsCtx_Destroy(h->js);
    jsCtx_Destroy(h->js_async);
    pthread_mutex_destroy(&h->acked_lock);
    pthread_mutex_destroy(&h->wake_lock);
    pthread_cond_destroy(&h->wake);
    free(h);
    return NULL;
}

void handover_stop(handover_t *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->wake_lock);
    atomic_store(&h->stop, 1);
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->wake_lock);
    pthread_join(h->thread, NULL);
    jsCtx_Destroy(h->js);
    jsCtx_Destroy(h->js_async);
    for (size_t i = 0; i < h->n_acked; i++)
        free(h->acked[i]);
    free(h->acked);
    pthread_mutex_destroy(&h->acked_lock);
    pthread_mutex_destroy(&h->wake_lock);
    pthread_cond_destroy(&h->wake);
    free(h);
}
