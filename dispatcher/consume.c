/* consume: see consume.h. */
#include "consume.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "group.h"
#include "jsx.h"
#include "log.h"
#include "metrics.h"
#include "natsx.h"
#include "push/v1/push.pb-c.h"
#include "routes_lookup.h"

struct consume {
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    routes_lookup_t *routes;
    char prefix[128];
    pthread_t thread;
    atomic_int stop;
    atomic_int subscribed;
    metrics_series_t *messages, *deliveries, *offline, *malformed, *broadcasts;
};

static uint64_t consume_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int consume_subscribe(consume_t *c)
{
    if (jsx_ensure_dispatch_stream(c->js, c->prefix) != NATS_OK)
        return -1;
    char subject[256], stream[128];
    natsx_subject(subject, sizeof subject, c->prefix, NATSX_DISPATCH);
    jsx_stream_name(stream, sizeof stream, c->prefix);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = (int64_t)CONSUME_ACK_WAIT_S * 1000000000LL;
    so.Config.DeliverPolicy = js_DeliverAll;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&c->sub, c->js, subject, "dispatcher", NULL, &so, &jerr);
    if (s != NATS_OK) {
        LOG_W("dispatcher: cannot bind the durable consumer 'dispatcher' on %s: %s (error %d); "
              "retrying",
              stream, natsStatus_GetText(s), (int)jerr);
        return -1;
    }
    LOG_I("dispatcher: consuming %s (stream %s, durable consumer dispatcher)", subject, stream);
    atomic_store(&c->subscribed, 1);
    return 0;
}

typedef struct batch_user {
    size_t msg; /* index of the message in the batch */
    const char *user;
} batch_user_t;

typedef struct batch {
    consume_t *c;
    Push__V1__Dispatch **d; /* decoded, NULL when malformed */
    size_t n;
    char **users;     /* all recipients of the batch, flattened */
    size_t *user_msg; /* message index of each */
    size_t n_users;
    group_t **groups; /* per message: node -> users */
} batch_t;

static void batch_found(void *arg, size_t i, const char *node)
{
    batch_t *b = arg;
    group_add(b->groups[b->user_msg[i]], node, b->users[i]);
}

static void consume_publish(consume_t *c, const char *subject, Push__V1__NodeDelivery *nd)
{
    size_t len = push__v1__node_delivery__get_packed_size(nd);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return;
    push__v1__node_delivery__pack(nd, buf);
    natsStatus s = natsConnection_Publish(c->nc, subject, buf, (int)len);
    if (s != NATS_OK)
        LOG_W("dispatcher: publish to %s failed: %s", subject, natsStatus_GetText(s));
    free(buf);
}

typedef struct group_pub {
    consume_t *c;
    Push__V1__Message *m;
} group_pub_t;

static void consume_publish_group(void *arg, const char *node, char **users, size_t n)
{
    group_pub_t *gp = arg;
    char subject[512];
    snprintf(subject, sizeof subject, "%s.%s.%s", gp->c->prefix, NATSX_NODE, node);
    Push__V1__NodeDelivery nd = PUSH__V1__NODE_DELIVERY__INIT;
    nd.message = gp->m;
    nd.users = users;
    nd.n_users = n;
    consume_publish(gp->c, subject, &nd);
    metrics_inc(gp->c->deliveries);
}

static void consume_batch(consume_t *c, natsMsgList *list)
{
    batch_t b = {.c = c, .n = (size_t)list->Count};
    b.d = calloc(b.n, sizeof *b.d);
    b.groups = calloc(b.n, sizeof *b.groups);
    if (!b.d || !b.groups)
        goto oom;
    size_t cap = 0;
    for (size_t i = 0; i < b.n; i++) {
        natsMsg *m = list->Msgs[i];
        b.d[i] = push__v1__dispatch__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                            (const uint8_t *)natsMsg_GetData(m));
        if (!b.d[i] || !b.d[i]->message) {
            metrics_inc(c->malformed);
            LOG_W("dispatcher: dropped a malformed Dispatch on the stream");
            continue;
        }
        cap += b.d[i]->n_to;
        if (!(b.groups[i] = group_new()))
            goto oom;
    }
    b.users = malloc((cap ? cap : 1) * sizeof *b.users);
    b.user_msg = malloc((cap ? cap : 1) * sizeof *b.user_msg);
    if (!b.users || !b.user_msg)
        goto oom;
    for (size_t i = 0; i < b.n; i++) {
        if (!b.d[i] || b.d[i]->broadcast)
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
           routes_lookup_nodes(c->routes, b.users, b.n_users, (long long)(consume_now_ms() / 1000),
                               batch_found, &b) != 0) {
        if (atomic_load(&c->stop))
            goto out; /* not acked: redelivered to whoever runs next */
        if (++tries % 10 == 0)
            for (size_t i = 0; i < b.n; i++)
                natsMsg_InProgress(list->Msgs[i], NULL);
        usleep(500 * 1000);
    }
    for (size_t i = 0; i < b.n; i++) {
        if (!b.d[i])
            continue;
        metrics_inc(c->messages);
        if (b.d[i]->broadcast) {
            char subject[256];
            natsx_subject(subject, sizeof subject, c->prefix, NATSX_BROADCAST);
            Push__V1__NodeDelivery nd = PUSH__V1__NODE_DELIVERY__INIT;
            nd.message = b.d[i]->message;
            consume_publish(c, subject, &nd);
            metrics_inc(c->broadcasts);
            continue;
        }
        metrics_add(c->offline, (int64_t)(b.d[i]->n_to - group_users(b.groups[i])));
        group_pub_t gp = {c, b.d[i]->message};
        group_each(b.groups[i], consume_publish_group, &gp);
    }
    if (natsConnection_FlushTimeout(c->nc, 5000) != NATS_OK) {
        LOG_W(
            "dispatcher: could not flush %zu deliveries; leaving the batch unacked for redelivery",
            b.n);
        goto out;
    }
    for (size_t i = 0; i < b.n; i++)
        natsMsg_Ack(list->Msgs[i], NULL);
    goto out;
oom:
    LOG_E("dispatcher: out of memory for a batch of %zu; leaving it unacked for redelivery", b.n);
out:
    for (size_t i = 0; i < b.n; i++) {
        if (b.d && b.d[i])
            push__v1__dispatch__free_unpacked(b.d[i], NULL);
        if (b.groups)
            group_free(b.groups[i]);
    }
    free(b.d);
    free(b.groups);
    free(b.users);
    free(b.user_msg);
}

static void *consume_loop(void *arg)
{
    consume_t *c = arg;
    while (!atomic_load(&c->stop)) {
        if (!c->sub) {
            if (!natsx_connected(c->nc) || consume_subscribe(c) != 0) {
                usleep(500 * 1000);
                continue;
            }
        }
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, c->sub, CONSUME_BATCH, 500, &jerr);
        if (s == NATS_OK && list.Count > 0)
            consume_batch(c, &list);
        else if (s != NATS_TIMEOUT && s != NATS_OK)
            usleep(200 * 1000); /* disconnected: nats.c reconnects; the durable consumer stays */
        natsMsgList_Destroy(&list);
    }
    return NULL;
}

consume_t *consume_start(natsConnection *nc, const char *prefix, const redisx_url_t *redis)
{
    consume_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->nc = nc;
    snprintf(c->prefix, sizeof c->prefix, "%s", prefix);
    c->messages =
        metrics_counter("push_dispatch_messages_total", NULL, "Messages taken from the stream");
    c->deliveries = metrics_counter("push_dispatch_deliveries_total", NULL,
                                    "NodeDeliveries published to nodes");
    c->broadcasts = metrics_counter("push_dispatch_broadcasts_total", NULL, "Broadcasts published");
    c->offline = metrics_counter("push_dispatch_offline_recipients_total", NULL,
                                 "Recipients with no live node (they get it on reconnect)");
    c->malformed =
        metrics_counter("push_dispatch_malformed_total", NULL, "Malformed stream messages dropped");
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    c->routes = routes_lookup_new(redis, prefix);
    if (!c->routes || natsConnection_JetStream(&c->js, nc, &jo) != NATS_OK) {
        routes_lookup_free(c->routes);
        free(c);
        return NULL;
    }
    pthread_create(&c->thread, NULL, consume_loop, c);
    return c;
}

void consume_stop(consume_t *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, 1);
    pthread_join(c->thread, NULL);
    /* Unsubscribing a durable pull consumer would delete it: just let go. */
    natsSubscription_Destroy(c->sub);
    jsCtx_Destroy(c->js);
    routes_lookup_free(c->routes);
    free(c);
}

int consume_ready(consume_t *c)
{
    return atomic_load(&c->subscribed) && routes_lookup_up(c->routes);
}
