/* handover: see handover.h. */
#include "handover.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsx.h"
#include "log.h"
#include "metrics.h"
#include "natsx.h"
#include "push/v1/push.pb-c.h"

struct handover {
    natsConnection *nc;
    jsCtx *js;
    store_t *store;
    const char *prefix;
    char subject[256];
    atomic_int stream_ok;
    atomic_int stop;
    pthread_t thread;
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;
    metrics_series_t *sent, *errors, *retried;
};

int handover_send(handover_t *h, const store_msg_t *m, char *const *to, size_t n_to)
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
    size_t len = push__v1__dispatch__get_packed_size(&d);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    push__v1__dispatch__pack(&d, buf);
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MsgId = m->id;
    opts.MaxWait = 5000;
    jsErrCode jerr = 0;
    jsPubAck *ack = NULL;
    natsStatus s = js_Publish(&ack, h->js, h->subject, buf, (int)len, &opts, &jerr);
    free(buf);
    jsPubAck_Destroy(ack);
    if (s != NATS_OK) {
        metrics_inc(h->errors);
        LOG_W("handover: message %s not handed to the dispatcher yet (%s, error %d); it is stored "
              "and will be retried within %d ms",
              m->id, natsStatus_GetText(s), (int)jerr, HANDOVER_RETRY_MS);
        return -1;
    }
    metrics_inc(h->sent);
    if (store_mark_dispatched(h->store, m->id) != STORE_OK)
        LOG_W("handover: message %s handed over but not marked; it may be handed over twice", m->id);
    return 0;
}

static void handover_retry_one(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    handover_t *h = arg;
    metrics_inc(h->retried);
    handover_send(h, m, to, n_to);
}

static uint64_t now_ms(void) { return ids_now_ms(); }

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
            int n = store_undispatched(h->store, before, 1000, handover_retry_one, h);
            if (n > 0)
                LOG_I("handover: re-sent %d stored message(s) not yet handed to the dispatcher", n);
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
    natsx_subject(h->subject, sizeof h->subject, prefix, NATSX_DISPATCH);
    h->sent = metrics_counter("push_collect_handed_over_total", NULL, "Messages handed to the dispatcher stream");
    h->errors = metrics_counter("push_collect_handover_errors_total", NULL, "Hand-overs that failed (retried)");
    h->retried = metrics_counter("push_collect_handover_retries_total", NULL, "Hand-overs retried by the retry loop");
    pthread_mutex_init(&h->wake_lock, NULL);
    pthread_cond_init(&h->wake, NULL);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    if (natsConnection_JetStream(&h->js, nc, &jo) != NATS_OK) {
        LOG_E("handover: cannot create a JetStream context");
        free(h);
        return NULL;
    }
    if (natsx_connected(nc))
        atomic_store(&h->stream_ok, jsx_ensure_dispatch_stream(h->js, prefix) == NATS_OK);
    pthread_create(&h->thread, NULL, handover_loop, h);
    return h;
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
    pthread_mutex_destroy(&h->wake_lock);
    pthread_cond_destroy(&h->wake);
    free(h);
}
