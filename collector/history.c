/* history: see history.h. */
#include "history.h"

#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "push/v1/push.pb-c.h"

typedef struct history_acc {
    Push__V1__Message **msgs;
    size_t n, cap;
    int oom;
} history_acc_t;

static void history_msg_free(Push__V1__Message *pm)
{
    if (!pm)
        return;
    free(pm->id);
    free(pm->topic);
    free(pm->content_type);
    free(pm->channel);
    free(pm->data.data);
    free(pm);
}

/* store_history callback: copy what the reply needs (pointers die after the call). */
static void history_take(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    (void)to, (void)n_to;
    history_acc_t *acc = arg;
    if (acc->oom)
        return;
    if (acc->n == acc->cap) {
        size_t cap = acc->cap ? acc->cap * 2 : 64;
        Push__V1__Message **nm = realloc(acc->msgs, cap * sizeof *nm);
        if (!nm) {
            acc->oom = 1;
            return;
        }
        acc->msgs = nm;
        acc->cap = cap;
    }
    Push__V1__Message *pm = calloc(1, sizeof *pm);
    if (!pm) {
        acc->oom = 1;
        return;
    }
    push__v1__message__init(pm);
    acc->msgs[acc->n++] = pm;
    pm->id = strdup(m->id);
    pm->topic = strdup(m->topic);
    pm->content_type = strdup(m->content_type);
    pm->channel = strdup(m->channel ? m->channel : "");
    pm->has_data = 1;
    pm->data.len = m->data_len;
    pm->data.data = malloc(m->data_len ? m->data_len : 1);
    pm->has_accepted_ms = 1;
    pm->accepted_ms = m->accepted_ms;
    pm->has_ttl = 1;
    pm->ttl = m->ttl;
    if (!pm->id || !pm->topic || !pm->content_type || !pm->channel || !pm->data.data) {
        acc->oom = 1;
        return;
    }
    if (m->data_len)
        memcpy(pm->data.data, m->data, m->data_len);
}

uint8_t *history_answer(store_t *store, const void *req_buf, size_t req_len, uint64_t now_ms,
                        size_t keep, size_t max_bytes, size_t *reply_len, history_status_t *status,
                        size_t *n_messages)
{
    Push__V1__HistoryReply reply = PUSH__V1__HISTORY_REPLY__INIT;
    history_acc_t acc = {0};
    *status = HISTORY_OK;
    Push__V1__HistoryRequest *req = push__v1__history_request__unpack(NULL, req_len, req_buf);
    int recovered = 1;
    if (!req || !chan_name_ok(req->channel, strlen(req->channel))) {
        *status = HISTORY_MALFORMED;
        reply.error = req ? "bad channel name" : "not a push.v1.HistoryRequest";
    } else if (store_history(store, req->channel, req->since, now_ms, keep, history_take, &acc,
                             &recovered) < 0 ||
               acc.oom) {
        *status = HISTORY_STORE_DOWN;
        reply.error = "the store is unavailable";
    } else {
        /* Over max_bytes: leave out the oldest, so that what is sent joins
         * the live messages without a gap, and say that some are missing. */
        size_t first = 0, bytes = 0;
        for (size_t i = acc.n; i > 0; i--) {
            Push__V1__Message *pm = acc.msgs[i - 1];
            size_t cost = pm->data.len + strlen(pm->topic) + strlen(pm->content_type) +
                          strlen(pm->channel) + 64;
            if (bytes + cost > max_bytes && i < acc.n) {
                first = i;
                recovered = 0;
                break;
            }
            bytes += cost;
        }
        reply.messages = acc.n ? acc.msgs + first : NULL;
        reply.n_messages = acc.n - first;
        reply.has_recovered = 1;
        reply.recovered = recovered != 0;
    }
    *n_messages = reply.n_messages;
    *reply_len = push__v1__history_reply__get_packed_size(&reply);
    uint8_t *out = malloc(*reply_len ? *reply_len : 1);
    if (out)
        push__v1__history_reply__pack(&reply, out);
    for (size_t i = 0; i < acc.n; i++)
        history_msg_free(acc.msgs[i]);
    free(acc.msgs);
    if (req)
        push__v1__history_request__free_unpacked(req, NULL);
    return out;
}
