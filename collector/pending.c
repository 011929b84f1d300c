/* pending: see pending.h. */
#include "pending.h"

#include <stdlib.h>
#include <string.h>

#include "push/v1/push.pb-c.h"

typedef struct pending_acc {
    Push__V1__Message *msgs;
    Push__V1__Message **ptrs;
    size_t n, bytes, max_bytes;
    int full, oom;
} pending_acc_t;

/* store_pending callback: copy what the reply needs (pointers die after the call). */
static void pending_take(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    (void)to, (void)n_to;
    pending_acc_t *acc = arg;
    /* A message's share of the reply: its bytes plus the fields' framing. */
    size_t cost = m->data_len + strlen(m->topic) + strlen(m->content_type) + 64;
    if (acc->full || acc->oom || (acc->n > 0 && acc->bytes + cost > acc->max_bytes)) {
        acc->full = 1;
        return;
    }
    Push__V1__Message *pm = &acc->msgs[acc->n];
    push__v1__message__init(pm);
    pm->id = strdup(m->id);
    pm->topic = strdup(m->topic);
    pm->content_type = strdup(m->content_type);
    pm->has_data = 1;
    pm->data.len = m->data_len;
    pm->data.data = malloc(m->data_len ? m->data_len : 1);
    pm->has_accepted_ms = 1;
    pm->accepted_ms = m->accepted_ms;
    pm->has_ttl = 1;
    pm->ttl = m->ttl;
    acc->ptrs[acc->n++] = pm; /* counted now so that it is freed whatever happens */
    if (!pm->id || !pm->topic || !pm->content_type || !pm->data.data) {
        acc->oom = 1;
        return;
    }
    if (m->data_len)
        memcpy(pm->data.data, m->data, m->data_len);
    acc->bytes += cost;
}

uint8_t *pending_answer(store_t *store, const void *req_buf, size_t req_len, uint64_t now_ms,
                        size_t max_bytes, size_t *reply_len, pending_status_t *status,
                        size_t *n_messages)
{
    Push__V1__PendingReply reply = PUSH__V1__PENDING_REPLY__INIT;
    pending_acc_t acc = {.max_bytes = max_bytes};
    *status = PENDING_OK;
    Push__V1__PendingRequest *req = push__v1__pending_request__unpack(NULL, req_len, req_buf);
    if (!req) {
        *status = PENDING_MALFORMED;
        reply.error = "not a push.v1.PendingRequest";
    } else {
        size_t limit =
            req->has_limit && req->limit && req->limit < PENDING_LIMIT ? req->limit : PENDING_LIMIT;
        acc.msgs = calloc(limit, sizeof *acc.msgs);
        acc.ptrs = calloc(limit, sizeof *acc.ptrs);
        if (!acc.msgs || !acc.ptrs ||
            store_pending(store, req->user, req->after, now_ms, limit, pending_take, &acc) < 0 ||
            acc.oom) {
            *status = PENDING_STORE_DOWN;
            reply.error = "the store is unavailable";
        } else {
            reply.messages = acc.ptrs;
            reply.n_messages = acc.n;
        }
    }
    *n_messages = reply.n_messages;
    *reply_len = push__v1__pending_reply__get_packed_size(&reply);
    uint8_t *out = malloc(*reply_len ? *reply_len : 1);
    if (out)
        push__v1__pending_reply__pack(&reply, out);
    for (size_t i = 0; i < acc.n; i++) {
        free(acc.msgs[i].id);
        free(acc.msgs[i].topic);
        free(acc.msgs[i].data.data);
        free(acc.msgs[i].content_type);
    }
    free(acc.msgs);
    free(acc.ptrs);
    if (req)
        push__v1__pending_request__free_unpacked(req, NULL);
    return out;
}
