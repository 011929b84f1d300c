/* bus: see bus.h. */
#include "bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "natsx.h"
#include "push/v1/push.pb-c.h"

struct bus {
    natsConnection *nc;
    handoff_t *to_service;
    char prefix[128];
    char node[256];
    char inbox[128];
    char auth_subject[256], pending_subject[256], ack_subject[256], history_subject[256];
    natsSubscription *sub_node, *sub_broadcast, *sub_presence, *sub_inbox;
    metrics_series_t *bad, *deliveries;
};

/* One HANDOFF_DELIVERY event for d (a plain NodeDelivery or one entry of a
 * batch), or NULL (counted and logged). */
static handoff_ev_t *bus_delivery_event(bus_t *b, const Push__V1__NodeDelivery *d, int broadcast,
                                        const char *subject)
{
    handoff_ev_t *ev = d->message ? handoff_ev_new(HANDOFF_DELIVERY) : NULL;
    frame_t *f = ev ? frame_message(d->message) : NULL;
    if (!f) {
        metrics_inc(b->bad);
        LOG_W("dropped an undecodable delivery on %s", subject);
        handoff_ev_free(ev);
        return NULL;
    }
    metrics_inc(b->deliveries);
    ev->broadcast = broadcast;
    f->broadcast = broadcast || d->message->channel;
    if (d->message->channel && !broadcast) {
        /* every local subscriber of the channel; users are not listed */
        if (!(ev->channel = strdup(d->message->channel))) {
            frame_unref(f);
            goto oom;
        }
    }
    if (!(ev->frames = malloc(sizeof *ev->frames))) {
        frame_unref(f);
        goto oom;
    }
    ev->frames[0] = f;
    ev->n_frames = 1;
    if (!broadcast && !ev->channel && d->n_users) {
        if (!(ev->users = malloc(d->n_users * sizeof *ev->users)))
            goto oom;
        for (size_t i = 0; i < d->n_users; i++) {
            if (!(ev->users[ev->n_users] = strdup(d->users[i])))
                goto oom;
            ev->n_users++;
        }
    }
    return ev;
oom:
    LOG_E("out of memory; a delivery on %s is lost", subject);
    handoff_ev_free(ev);
    return NULL;
}

/* A NodeDelivery, or a batch of them (handed over in order, at once). */
static void bus_on_delivery(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    bus_t *b = closure;
    const char *subject = natsSubscription_GetSubject(sub);
    int broadcast = sub == b->sub_broadcast;
    Push__V1__NodeDelivery *d = push__v1__node_delivery__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    handoff_ev_t *first = NULL, *last = NULL;
    if (!d) {
        metrics_inc(b->bad);
        LOG_W("dropped an undecodable delivery on %s", subject);
    } else if (d->n_batch) {
        for (size_t i = 0; i < d->n_batch; i++) {
            handoff_ev_t *ev = bus_delivery_event(b, d->batch[i], broadcast, subject);
            if (!ev)
                continue;
            if (last)
                last->next = ev;
            else
                first = ev;
            last = ev;
        }
    } else {
        first = last = bus_delivery_event(b, d, broadcast, subject);
    }
    handoff_push_list(b->to_service, first, last);
    if (d)
        push__v1__node_delivery__free_unpacked(d, NULL);
    natsx_msg_free(msg);
}

static void bus_on_presence(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    bus_t *b = closure;
    Push__V1__NodePresenceRequest *r = push__v1__node_presence_request__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    if (r && natsMsg_GetReply(msg)) {
        handoff_ev_t *ev = handoff_ev_new(HANDOFF_PRESENCE);
        if (ev) {
            ev->user = strdup(r->user);
            ev->channel = r->channel ? strdup(r->channel) : NULL;
            ev->reply = strdup(natsMsg_GetReply(msg));
            handoff_push(b->to_service, ev);
        }
    } else {
        metrics_inc(b->bad);
    }
    if (r)
        push__v1__node_presence_request__free_unpacked(r, NULL);
    natsx_msg_free(msg);
}

static void bus_on_auth_reply(bus_t *b, const char *conn, natsMsg *msg)
{
    Push__V1__AuthReply *r = push__v1__auth_reply__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
                                                          (const uint8_t *)natsMsg_GetData(msg));
    if (!r) {
        metrics_inc(b->bad);
        return; /* the connection's auth timer closes it with 1013 */
    }
    handoff_ev_t *ev = handoff_ev_new(HANDOFF_AUTH);
    if (ev) {
        snprintf(ev->conn, sizeof ev->conn, "%s", conn);
        ev->ok = r->ok && r->user && *r->user;
        ev->user = r->user ? strdup(r->user) : NULL;
        ev->reason = strdup(r->reason ? r->reason : "refused");
        /* the token's channels claim: what the connection may subscribe to */
        if (ev->ok && r->n_channels && (ev->users = calloc(r->n_channels, sizeof *ev->users)))
            for (size_t i = 0; i < r->n_channels; i++)
                if ((ev->users[ev->n_users] = strdup(r->channels[i])))
                    ev->n_users++;
        handoff_push(b->to_service, ev);
    }
    push__v1__auth_reply__free_unpacked(r, NULL);
}

/* authd's answer about a subscription token (sub: the subscription's id). */
static void bus_on_subauth_reply(bus_t *b, const char *sub, natsMsg *msg)
{
    Push__V1__AuthReply *r = push__v1__auth_reply__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
                                                          (const uint8_t *)natsMsg_GetData(msg));
    handoff_ev_t *ev = handoff_ev_new(HANDOFF_SUBAUTH);
    if (ev) {
        snprintf(ev->conn, sizeof ev->conn, "%s", sub);
        ev->ok = r && r->ok && r->user;
        ev->user = r && r->user ? strdup(r->user) : NULL;
        ev->channel = r && r->channel ? strdup(r->channel) : NULL;
        ev->reason = strdup(r && r->reason ? r->reason : "refused");
        handoff_push(b->to_service, ev);
    }
    if (!r)
        metrics_inc(b->bad);
    else
        push__v1__auth_reply__free_unpacked(r, NULL);
}

/* The collector's history for a subscription; always handed over: it ends
 * the subscription's recovery. */
static void bus_on_history_reply(bus_t *b, const char *sub, natsMsg *msg)
{
    Push__V1__HistoryReply *r =
        natsMsg_GetDataLength(msg)
            ? push__v1__history_reply__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
                                              (const uint8_t *)natsMsg_GetData(msg))
            : NULL;
    if (!r && natsMsg_GetDataLength(msg))
        metrics_inc(b->bad);
    handoff_ev_t *ev = handoff_ev_new(HANDOFF_HISTORY);
    if (!ev || !(ev->frames = calloc(r && r->n_messages ? r->n_messages : 1, sizeof *ev->frames))) {
        handoff_ev_free(ev);
        ev = NULL;
    } else {
        snprintf(ev->conn, sizeof ev->conn, "%s", sub);
        if (!r || r->error) {
            ev->reason = strdup(r ? r->error : "no collector answered");
        } else {
            ev->ok = r->has_recovered ? r->recovered : 1;
            for (size_t i = 0; i < r->n_messages; i++) {
                frame_t *f = frame_message(r->messages[i]);
                if (f)
                    ev->frames[ev->n_frames++] = f;
            }
        }
        handoff_push(b->to_service, ev);
    }
    if (r)
        push__v1__history_reply__free_unpacked(r, NULL);
}

static void bus_on_pending_reply(bus_t *b, const char *conn, natsMsg *msg)
{
    Push__V1__PendingReply *r = push__v1__pending_reply__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    if (!r) {
        metrics_inc(b->bad);
        return;
    }
    if (r->error)
        LOG_W("the collector could not list stored messages for connection %s: %s", conn, r->error);
    /* Always hand over, even with no messages: it ends the connection's replay. */
    {
        handoff_ev_t *ev = handoff_ev_new(HANDOFF_PENDING);
        if (ev && (ev->frames = calloc(r->n_messages ? r->n_messages : 1, sizeof *ev->frames))) {
            snprintf(ev->conn, sizeof ev->conn, "%s", conn);
            ev->ok = 1; /* an answer (ok 0: nobody was there to answer) */
            for (size_t i = 0; i < r->n_messages; i++) {
                frame_t *f = frame_message(r->messages[i]);
                if (f)
                    ev->frames[ev->n_frames++] = f;
            }
            handoff_push(b->to_service, ev);
        } else {
            handoff_ev_free(ev);
        }
    }
    push__v1__pending_reply__free_unpacked(r, NULL);
}

/* <inbox>.a.<conn>, <inbox>.p.<conn>, <inbox>.s.<sub> or <inbox>.h.<sub> */
static void bus_on_inbox(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    bus_t *b = closure;
    const char *subj = natsMsg_GetSubject(msg) + strlen(b->inbox);
    if (strncmp(subj, ".h.", 3) == 0) {
        bus_on_history_reply(b, subj + 3, msg); /* no responders included */
    } else if (strncmp(subj, ".s.", 3) == 0) {
        bus_on_subauth_reply(b, subj + 3, msg); /* no responders: refused */
    } else if (natsMsg_GetDataLength(msg) == 0) {
        /* A "no responders" status: nobody answers that subject. For auth the
         * 2 s timer closes with 1013; for stored messages there are none to
         * wait for: end the replay now. */
        if (strncmp(subj, ".p.", 3) == 0) {
            handoff_ev_t *ev = handoff_ev_new(HANDOFF_PENDING);
            if (ev) {
                snprintf(ev->conn, sizeof ev->conn, "%s", subj + 3);
                handoff_push(b->to_service, ev);
            }
        }
    } else if (strncmp(subj, ".a.", 3) == 0) {
        bus_on_auth_reply(b, subj + 3, msg);
    } else if (strncmp(subj, ".p.", 3) == 0) {
        bus_on_pending_reply(b, subj + 3, msg);
    }
    natsx_msg_free(msg);
}

/* natsx_watch: deliveries published while this node was away from NATS
 * went nowhere; the service thread catches its connections up from the
 * store (ws.c, HANDOFF_NATS). */
static void bus_on_nats(void *arg, int up)
{
    bus_t *b = arg;
    handoff_ev_t *ev = handoff_ev_new(HANDOFF_NATS);
    if (!ev) {
        LOG_E("out of memory; the NATS connection's %s is not handled", up ? "return" : "loss");
        return;
    }
    ev->ok = up;
    handoff_push(b->to_service, ev);
}

static natsStatus bus_sub(bus_t *b, natsSubscription **sub, const char *subject, natsMsgHandler cb)
{
    natsStatus s = natsConnection_Subscribe(sub, b->nc, subject, cb, b);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(*sub, -1, -1);
    if (s != NATS_OK)
        LOG_E("cannot subscribe to %s: %s", subject, natsStatus_GetText(s));
    return s;
}

bus_t *bus_start(natsConnection *nc, const char *prefix, const char *node, handoff_t *to_service)
{
    bus_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->nc = nc;
    b->to_service = to_service;
    snprintf(b->prefix, sizeof b->prefix, "%s", prefix);
    snprintf(b->node, sizeof b->node, "%s", node);
    b->bad = metrics_counter("push_pusher_bad_bus_messages_total", NULL,
                             "Undecodable messages from NATS");
    b->deliveries =
        metrics_counter("push_pusher_deliveries_total", NULL, "Deliveries received from NATS");
    natsInbox *inbox = NULL;
    natsInbox_Create(&inbox);
    snprintf(b->inbox, sizeof b->inbox, "%s", (const char *)inbox);
    natsInbox_Destroy(inbox);
    natsx_subject(b->auth_subject, sizeof b->auth_subject, prefix, NATSX_AUTH);
    natsx_subject(b->pending_subject, sizeof b->pending_subject, prefix, NATSX_PENDING);
    natsx_subject(b->ack_subject, sizeof b->ack_subject, prefix, NATSX_ACK);
    natsx_subject(b->history_subject, sizeof b->history_subject, prefix, NATSX_HISTORY);
    char node_subj[512], bc_subj[256], pres_subj[600], inbox_subj[160];
    snprintf(node_subj, sizeof node_subj, "%s.%s.%s", prefix, NATSX_NODE, node);
    natsx_subject(bc_subj, sizeof bc_subj, prefix, NATSX_BROADCAST);
    snprintf(pres_subj, sizeof pres_subj, "%s.presence", node_subj);
    snprintf(inbox_subj, sizeof inbox_subj, "%s.*.*", b->inbox);
    if (bus_sub(b, &b->sub_inbox, inbox_subj, bus_on_inbox) != NATS_OK ||
        bus_sub(b, &b->sub_node, node_subj, bus_on_delivery) != NATS_OK ||
        bus_sub(b, &b->sub_broadcast, bc_subj, bus_on_delivery) != NATS_OK ||
        bus_sub(b, &b->sub_presence, pres_subj, bus_on_presence) != NATS_OK) {
        bus_stop(b);
        return NULL;
    }
    natsx_watch(bus_on_nats, b);
    LOG_I("node %s listening on %s, %s and %s", node, node_subj, bc_subj, pres_subj);
    return b;
}

void bus_stop(bus_t *b)
{
    if (!b)
        return;
    natsx_watch(NULL, NULL);
    natsSubscription *subs[] = {b->sub_node, b->sub_broadcast, b->sub_presence, b->sub_inbox};
    for (int i = 0; i < 4; i++)
        natsx_sub_close(subs[i], b->nc, 500);
    free(b);
}

static int bus_publish_pb(bus_t *b, const char *subject, const char *reply,
                          const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t stackbuf[1024], *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!buf)
        return -1;
    protobuf_c_message_pack(m, buf);
    natsStatus s = reply ? natsConnection_PublishRequest(b->nc, subject, reply, buf, (int)len)
                         : natsConnection_Publish(b->nc, subject, buf, (int)len);
    if (buf != stackbuf)
        free(buf);
    return s == NATS_OK ? 0 : -1;
}

int bus_request_auth(bus_t *b, const char *conn, const char *token)
{
    char reply[256];
    snprintf(reply, sizeof reply, "%s.a.%s", b->inbox, conn);
    Push__V1__AuthRequest r = PUSH__V1__AUTH_REQUEST__INIT;
    r.token = (char *)token;
    r.node = b->node;
    r.conn = (char *)conn;
    return bus_publish_pb(b, b->auth_subject, reply, &r.base);
}

int bus_request_pending(bus_t *b, const char *conn, const char *user, const char *after)
{
    char reply[256];
    snprintf(reply, sizeof reply, "%s.p.%s", b->inbox, conn);
    Push__V1__PendingRequest r = PUSH__V1__PENDING_REQUEST__INIT;
    r.user = (char *)user;
    r.after = after && *after ? (char *)after : NULL;
    return bus_publish_pb(b, b->pending_subject, reply, &r.base);
}

int bus_request_subscription(bus_t *b, const char *sub, const char *token, const char *channel)
{
    char reply[256];
    snprintf(reply, sizeof reply, "%s.s.%s", b->inbox, sub);
    Push__V1__AuthRequest r = PUSH__V1__AUTH_REQUEST__INIT;
    r.token = (char *)token;
    r.node = b->node;
    r.conn = (char *)sub;
    r.channel = (char *)channel;
    return bus_publish_pb(b, b->auth_subject, reply, &r.base);
}

int bus_request_history(bus_t *b, const char *sub, const char *channel, const char *since)
{
    char reply[256];
    snprintf(reply, sizeof reply, "%s.h.%s", b->inbox, sub);
    Push__V1__HistoryRequest r = PUSH__V1__HISTORY_REQUEST__INIT;
    r.channel = (char *)channel;
    r.since = (char *)since;
    return bus_publish_pb(b, b->history_subject, reply, &r.base);
}

int bus_ack(bus_t *b, const char *user, const char *conn, char *const *ids, size_t n_ids)
{
    Push__V1__Ack a = PUSH__V1__ACK__INIT;
    a.user = (char *)user;
    a.ids = (char **)ids;
    a.n_ids = n_ids;
    a.node = b->node;
    a.conn = (char *)conn;
    return bus_publish_pb(b, b->ack_subject, NULL, &a.base);
}

int bus_presence_reply(bus_t *b, const char *reply, unsigned connections)
{
    Push__V1__NodePresenceReply r = PUSH__V1__NODE_PRESENCE_REPLY__INIT;
    r.node = b->node;
    r.connections = connections;
    return bus_publish_pb(b, reply, NULL, &r.base);
}
