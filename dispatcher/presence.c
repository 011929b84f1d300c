/* presence: see presence.h. */
#include "presence.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    metrics_series_t *requests, *bad;
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

static void presence_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    presence_t *p = closure;
    metrics_inc(p->requests);
    json_t *req = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, NULL);
    json_t *user = req ? json_object_get(req, "user") : NULL;
    if (!json_is_string(user) || json_string_length(user) == 0) {
        metrics_inc(p->bad);
        presence_answer(nc, msg, json_pack("{s:s}", "error", "send {\"user\":\"<user id>\"}"));
        json_decref(req);
        natsMsg_Destroy(msg);
        return;
    }
    char *uid = (char *)json_string_value(user);
    presence_nodes_t pn = {0};
    if (routes_lookup_nodes(p->routes, &uid, 1, (long long)time(NULL), presence_found, &pn) != 0) {
        presence_answer(nc, msg, json_pack("{s:s}", "error", "redis is unavailable"));
        json_decref(req);
        natsMsg_Destroy(msg);
        return;
    }
    Push__V1__NodePresenceRequest nr = PUSH__V1__NODE_PRESENCE_REQUEST__INIT;
    nr.user = uid;
    uint8_t buf[256];
    size_t len = push__v1__node_presence_request__get_packed_size(&nr);
    json_t *nodes = json_array();
    long long total = 0;
    if (len <= sizeof buf) {
        push__v1__node_presence_request__pack(&nr, buf);
        for (size_t i = 0; i < pn.n; i++) {
            char subject[512];
            snprintf(subject, sizeof subject, "%s.%s.%s.presence", p->prefix, NATSX_NODE, pn.names[i]);
            natsMsg *reply = NULL;
            if (natsConnection_Request(&reply, nc, subject, buf, (int)len, PRESENCE_NODE_TIMEOUT_MS) != NATS_OK)
                continue; /* a node that does not answer holds nobody we can count */
            Push__V1__NodePresenceReply *r = push__v1__node_presence_reply__unpack(
                NULL, (size_t)natsMsg_GetDataLength(reply), (const uint8_t *)natsMsg_GetData(reply));
            if (r && r->connections > 0) {
                total += r->connections;
                json_array_append_new(nodes, json_string(pn.names[i]));
            }
            if (r)
                push__v1__node_presence_reply__free_unpacked(r, NULL);
            natsMsg_Destroy(reply);
        }
    }
    for (size_t i = 0; i < pn.n; i++)
        free(pn.names[i]);
    presence_answer(nc, msg, json_pack("{s:s,s:b,s:I,s:o}", "user", uid, "online", total > 0,
                                       "connections", (json_int_t)total, "nodes", nodes));
    json_decref(req);
    natsMsg_Destroy(msg);
}

presence_t *presence_start(natsConnection *nc, const char *prefix, const redisx_url_t *redis)
{
    presence_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->nc = nc;
    snprintf(p->prefix, sizeof p->prefix, "%s", prefix);
    p->requests = metrics_counter("push_presence_requests_total", NULL, "Presence requests answered");
    p->bad = metrics_counter("push_presence_bad_requests_total", NULL, "Presence requests that were not {\"user\":...}");
    p->routes = routes_lookup_new(redis, prefix);
    char subject[256];
    natsx_subject(subject, sizeof subject, prefix, NATSX_PRESENCE);
    if (!p->routes ||
        natsConnection_QueueSubscribe(&p->sub, nc, subject, "dispatcher", presence_on_msg, p) != NATS_OK) {
        LOG_E("dispatcher: cannot subscribe to %s", subject);
        routes_lookup_free(p->routes);
        free(p);
        return NULL;
    }
    LOG_I("dispatcher: answering %s", subject);
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
