/* collect: see collect.h. */
#include "collect.h"

#include <stdlib.h>
#include <string.h>

#include "acker.h"
#include "log.h"
#include "metrics.h"
#include "natsx.h"
#include "history.h"
#include "pending.h"
#include "push/v1/push.pb-c.h"

struct collect {
    natsConnection *nc;
    accept_t *accept;
    writer_t *writer;
    store_t *store;
    acker_t *acker;
    natsSubscription *sub_collect, *sub_pending, *sub_ack, *sub_history;
    size_t channel_history;
    metrics_series_t *pending_requests, *acks, *malformed, *history_requests;
};

static void collect_on_publish(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                               void *closure)
{
    (void)sub;
    collect_t *c = closure;
    const char *ctype = NULL;
    natsMsgHeader_Get(msg, "Content-Type", &ctype);
    accept_result_t res;
    ingest_request_t req;
    const char *reply_to = natsMsg_GetReply(msg);
    if (accept_decode(c->accept, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), ctype,
                      &req, &res) == 0) {
        writer_submit(c->writer, &req, reply_to); /* stored, answered and handed over in a batch */
    } else if (reply_to) {
        size_t len = 0;
        void *reply = accept_reply(&res, &len);
        if (reply)
            natsConnection_Publish(nc, reply_to, reply, (int)len);
        free(reply);
    }
    natsx_msg_free(msg);
}

/* How large a pending or history reply may be: half the server's
 * max_payload, and at least COLLECT_PENDING_MAX_BYTES. */
static size_t collect_reply_budget(natsConnection *nc)
{
    int64_t max_payload = natsConnection_GetMaxPayload(nc);
    return max_payload > 2 * COLLECT_PENDING_MAX_BYTES ? (size_t)max_payload / 2
                                                       : COLLECT_PENDING_MAX_BYTES;
}

/* Answer msg with reply (n messages, len bytes), then free both. A reply
 * that cannot be sent loses nothing: the messages stay stored. */
static void collect_reply(natsConnection *nc, natsMsg *msg, uint8_t *reply, size_t len, size_t n,
                          const char *what)
{
    const char *reply_to = natsMsg_GetReply(msg);
    if (reply && reply_to) {
        natsStatus st = natsConnection_Publish(nc, reply_to, reply, (int)len);
        if (st != NATS_OK)
            LOG_W("%s reply (%zu message(s), %zu bytes) not sent: %s; they stay stored", what, n,
                  len, natsStatus_GetText(st));
    }
    free(reply);
    natsx_msg_free(msg);
}

static void collect_on_pending(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                               void *closure)
{
    (void)sub;
    collect_t *c = closure;
    metrics_inc(c->pending_requests);
    size_t max_bytes = collect_reply_budget(nc);
    size_t len = 0, n = 0;
    pending_status_t status;
    uint8_t *reply =
        pending_answer(c->store, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
                       ids_now_ms(), max_bytes, &len, &status, &n);
    if (status == PENDING_MALFORMED) {
        metrics_inc(c->malformed);
        LOG_D("answered a malformed pending request with an error");
    }
    collect_reply(nc, msg, reply, len, n, "pending");
}

static void collect_on_history(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                               void *closure)
{
    (void)sub;
    collect_t *c = closure;
    metrics_inc(c->history_requests);
    size_t max_bytes = collect_reply_budget(nc);
    size_t len = 0, n = 0;
    history_status_t status;
    uint8_t *reply =
        history_answer(c->store, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
                       ids_now_ms(), c->channel_history, max_bytes, &len, &status, &n);
    if (status == HISTORY_MALFORMED) {
        metrics_inc(c->malformed);
        LOG_D("answered a malformed history request with an error");
    }
    collect_reply(nc, msg, reply, len, n, "history");
}

static void collect_on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    collect_t *c = closure;
    Push__V1__Ack *ack = push__v1__ack__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
                                               (const uint8_t *)natsMsg_GetData(msg));
    if (!ack) {
        metrics_inc(c->malformed);
        LOG_D("ignored a malformed ack");
    } else {
        metrics_add(c->acks, (int64_t)ack->n_ids);
        acker_submit(c->acker, ack); /* recorded in a batch, then freed */
    }
    natsx_msg_free(msg);
}

static natsStatus collect_sub(collect_t *c, natsSubscription **sub, const char *prefix,
                              const char *what, natsMsgHandler cb)
{
    char subject[256];
    natsx_subject(subject, sizeof subject, prefix, what);
    natsStatus s = natsConnection_QueueSubscribe(sub, c->nc, subject, "collector", cb, c);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(*sub, 1000000, 1024 * 1024 * 1024);
    if (s != NATS_OK)
        LOG_E("cannot subscribe to %s: %s", subject, natsStatus_GetText(s));
    else
        LOG_I("listening on %s (queue group collector)", subject);
    return s;
}

collect_t *collect_start(natsConnection *nc, const char *prefix, accept_t *accept, writer_t *writer,
                         store_t *store, size_t channel_history)
{
    collect_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->nc = nc;
    c->accept = accept;
    c->writer = writer;
    c->store = store;
    c->channel_history = channel_history;
    c->history_requests = metrics_counter("push_collect_history_requests_total", NULL,
                                          "Channel history requests from pushers");
    c->pending_requests = metrics_counter("push_collect_pending_requests_total", NULL,
                                          "Pending-message requests from pushers");
    c->acks = metrics_counter("push_collect_acks_total", NULL, "Message ids acked by clients");
    c->malformed = metrics_counter("push_collect_malformed_internal_total", NULL,
                                   "Malformed pending or ack messages ignored");
    if (!(c->acker = acker_start(store))) {
        free(c);
        return NULL;
    }
    if (collect_sub(c, &c->sub_collect, prefix, NATSX_COLLECT, collect_on_publish) != NATS_OK ||
        collect_sub(c, &c->sub_pending, prefix, NATSX_PENDING, collect_on_pending) != NATS_OK ||
        collect_sub(c, &c->sub_ack, prefix, NATSX_ACK, collect_on_ack) != NATS_OK ||
        collect_sub(c, &c->sub_history, prefix, NATSX_HISTORY, collect_on_history) != NATS_OK) {
        collect_stop(c);
        return NULL;
    }
    return c;
}

void collect_stop(collect_t *c)
{
    if (!c)
        return;
    natsx_sub_close(c->sub_collect, c->nc, 3000);
    natsx_sub_close(c->sub_pending, c->nc, 1000);
    natsx_sub_close(c->sub_ack, c->nc, 1000);
    natsx_sub_close(c->sub_history, c->nc, 1000);
    acker_stop(c->acker); /* records the acks received before the close */
    free(c);
}
