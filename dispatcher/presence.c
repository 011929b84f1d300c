/* presence: see presence.h. */
#include "presence.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chan.h"
#include "log.h"
#include "metrics.h"
#include "natsx.h"
#include "push/v1/push.pb-c.h"
#include "routes_lookup.h"

#define PRESENCE_MAX_NODES 64

struct presence {
    natsConnection *nc;
    natsSubscription *sub;
    routes_lookup_t *routes;
    char prefix[128];
    metrics_series_t *requests, *bad, *bad_node_replies;
};

typedef struct presence_nodes {
    char *names[PRESENCE_MAX_NODES];
    size_t n;
} presence_nodes_t;

static void presence_found(void *arg, size_t i, const char *node)
{
    (void)i;
    presence_nodes_t *pn = arg;
    if (pn->n < PRESENCE_MAX_NODES)
        pn->names[pn->n++] = strdup(node);
}

static void presence_answer(natsConnection *nc, natsMsg *msg, json_t *answer)
{
    char *text = json_dumps(answer, JSON_COMPACT);
    json_decref(answer);
    if (text && natsMsg_GetReply(msg))
        natsConnection_PublishString(nc, natsMsg_GetReply(msg), text);
    free(text);
}

/* A user id as the rest of the cluster accepts it: 1..PRESENCE_MAX_USER
 * bytes, no control characters (jansson already guarantees UTF-8). */
static int presence_user_ok(const char *u, size_t len)
{
    if (len == 0 || len > PRESENCE_MAX_USER || strlen(u) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)u[i] < 0x20 || u[i] == 0x7f)
            return 0;
    return 1;
}

/* Ask every node at once on <prefix>.node.<node>.presence, replies to one
 * inbox, and wait at most PRESENCE_NODE_TIMEOUT_MS in all: a dead node whose
 * route has not expired yet costs one timeout, not one per node. Adds the
 * nodes that hold >= 1 connection to nodes; returns the connection total. */
static long long presence_ask_nodes(presence_t *p, natsConnection *nc, const char *user,
                                    const char *channel, const presence_nodes_t *pn, json_t *nodes)
{
    Push__V1__NodePresenceRequest nr = PUSH__V1__NODE_PRESENCE_REQUEST__INIT;
    nr.user = (char *)(channel ? "" : user);
    nr.channel = (char *)channel;
    uint8_t buf[PRESENCE_MAX_USER + CHAN_MAX_NAME + 16];
    size_t len = push__v1__node_presence_request__get_packed_size(&nr);
    if (pn->n == 0 || len > sizeof buf)
        return 0;
    push__v1__node_presence_request__pack(&nr, buf);
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    long long total = 0;
    int answered[PRESENCE_MAX_NODES] = {0};
    if (natsInbox_Create(&inbox) != NATS_OK ||
        natsConnection_SubscribeSync(&sub, nc, inbox) != NATS_OK)
        goto out;
    for (size_t i = 0; i < pn->n; i++) {
        char subject[512];
        snprintf(subject, sizeof subject, "%s.%s.%s.presence", p->prefix, NATSX_NODE, pn->names[i]);
        natsConnection_PublishRequest(nc, subject, inbox, buf, (int)len);
    }
    natsConnection_Flush(nc);
    int64_t deadline = nats_Now() + PRESENCE_NODE_TIMEOUT_MS;
    /* Each node sends one reply, or the server one "no responders" for a
     * node that is gone: stop when every request has had its answer. */
    size_t n_done = 0;
    while (n_done < pn->n) {
        int64_t left = deadline - nats_Now();
        natsMsg *reply = NULL;
        natsStatus st = left > 0 ? natsSubscription_NextMsg(&reply, sub, left) : NATS_TIMEOUT;
        if (st == NATS_NO_RESPONDERS || (st == NATS_OK && natsMsg_IsNoResponders(reply))) {
            natsx_msg_free(reply); /* a node that is gone holds nobody */
            n_done++;
            continue;
        }
        if (st != NATS_OK)
            break; /* a node that does not answer in time holds nobody we can count */
        n_done++;
        Push__V1__NodePresenceReply *r = push__v1__node_presence_reply__unpack(
            NULL, (size_t)natsMsg_GetDataLength(reply), (const uint8_t *)natsMsg_GetData(reply));
        for (size_t i = 0; r && i < pn->n; i++) {
            if (answered[i] || strcmp(pn->names[i], r->node) != 0)
                continue;
            answered[i] = 1;
            if (r->connections > 0) {
                total += r->connections;
                json_array_append_new(nodes, json_string(pn->names[i]));
            }
            break;
        }
        if (!r)
            metrics_inc(p->bad_node_replies);
        else
            push__v1__node_presence_reply__free_unpacked(r, NULL);
        natsx_msg_free(reply);
    }
out:
    natsSubscription_Destroy(sub); /* (destroying unsubscribes) */
    natsInbox_Destroy(inbox);
    return total;
}

static void presence_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    presence_t *p = closure;
    metrics_inc(p->requests);
    json_t *req = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
    json_t *user = json_is_object(req) ? json_object_get(req, "user") : NULL;
    json_t *channel = json_is_object(req) && !user ? json_object_get(req, "channel") : NULL;
    if (channel) {
        if (!json_is_string(channel) ||
            !chan_name_ok(json_string_value(channel), json_string_length(channel))) {
            metrics_inc(p->bad);
            presence_answer(nc, msg,
                            json_pack("{s:s}", "error",
                                      "send {\"channel\":\"<name of 1..255 bytes of "
                                      "A-Za-z0-9_.:@->\"}"));
            goto out;
        }
        char *name = (char *)json_string_value(channel);
        unsigned char is_channel = 1;
        presence_nodes_t pn = {0};
        if (routes_lookup_nodes(p->routes, &name, &is_channel, 1, (long long)time(NULL),
                                presence_found, &pn) != 0) {
            presence_answer(nc, msg, json_pack("{s:s}", "error", "redis is unavailable"));
            goto out;
        }
        json_t *nodes = json_array();
        long long total = presence_ask_nodes(p, nc, NULL, name, &pn, nodes);
        for (size_t i = 0; i < pn.n; i++)
            free(pn.names[i]);
        presence_answer(nc, msg,
                        json_pack("{s:s,s:I,s:o}", "channel", name, "subscribers",
                                  (json_int_t)total, "nodes", nodes));
        goto out;
    }
    if (!json_is_string(user) ||
        !presence_user_ok(json_string_value(user), json_string_length(user))) {
        metrics_inc(p->bad);
        presence_answer(
            nc, msg,
            json_pack("{s:s}", "error",
                      "send {\"user\":\"<user id of 1..128 bytes>\"} or {\"channel\":\"<name>\"}"));
        goto out;
    }
    char *uid = (char *)json_string_value(user);
    presence_nodes_t pn = {0};
    if (routes_lookup_nodes(p->routes, &uid, NULL, 1, (long long)time(NULL), presence_found, &pn) !=
        0) {
        presence_answer(nc, msg, json_pack("{s:s}", "error", "redis is unavailable"));
        goto out;
    }
    json_t *nodes = json_array();
    long long total = presence_ask_nodes(p, nc, uid, NULL, &pn, nodes);
    for (size_t i = 0; i < pn.n; i++)
        free(pn.names[i]);
    presence_answer(nc, msg,
                    json_pack("{s:s,s:b,s:I,s:o}", "user", uid, "online", total > 0, "connections",
                              (json_int_t)total, "nodes", nodes));
out:
    json_decref(req);
    natsx_msg_free(msg);
}

presence_t *presence_start(natsConnection *nc, const char *prefix, const redisx_url_t *redis)
{
    presence_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->nc = nc;
    snprintf(p->prefix, sizeof p->prefix, "%s", prefix);
    p->requests =
        metrics_counter("push_presence_requests_total", NULL, "Presence requests answered");
    p->bad = metrics_counter("push_presence_bad_requests_total", NULL,
                             "Presence requests that were not {\"user\":...}");
    p->bad_node_replies =
        metrics_counter("push_presence_bad_node_replies_total", NULL,
                        "Node presence replies that were not a NodePresenceReply");
    p->routes = routes_lookup_new(redis, prefix);
    char subject[256];
    natsx_subject(subject, sizeof subject, prefix, NATSX_PRESENCE);
    if (!p->routes || natsConnection_QueueSubscribe(&p->sub, nc, subject, "dispatcher",
                                                    presence_on_msg, p) != NATS_OK) {
        LOG_E("cannot subscribe to %s", subject);
        routes_lookup_free(p->routes);
        free(p);
        return NULL;
    }
    LOG_I("answering %s", subject);
    return p;
}

void presence_stop(presence_t *p)
{
    if (!p)
        return;
    natsx_sub_close(p->sub, p->nc, 2000);
    routes_lookup_free(p->routes);
    free(p);
}
