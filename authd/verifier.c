/*
 * verifier: see verifier.h. Each request is independent: decode, verify,
 * reply, count. The only shared state is the counters (atomics) and the
 * secret (read-only), so the callback needs no lock.
 * Runs on nats.c's subscription thread.
 */
#include "verifier.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chan.h"
#include "jwt.h"
#include "log.h"
#include "metrics.h"
#include "natsx.h"
#include "push/v1/push.pb-c.h"

/* Queue group name: every authd joins it, so each request is answered once. */
#define VERIFIER_QUEUE "authd"

/* A connection token's `channels` claim: at most this many grants go back
 * to the pusher (the rest are ignored, and logged); each is a channel name,
 * or a prefix of one followed by '*'. */
#define VERIFIER_MAX_GRANTS 256

struct verifier {
    natsConnection *nc;
    natsSubscription *sub;
    const char *secret;
    size_t secret_len;
    metrics_series_t *requests, *accepted, *undecodable, *sub_requests, *sub_forbidden;
    metrics_series_t *refused[JWT_BAD_SUB + 1]; /* indexed by jwt_result_t; [JWT_OK] unused */
};

static void verifier_reply(natsConnection *nc, natsMsg *msg, const Push__V1__AuthReply *r)
{
    const char *reply_to = natsMsg_GetReply(msg);
    if (!reply_to || !*reply_to) {
        LOG_D("auth request on %s without a reply subject; nothing sent", natsMsg_GetSubject(msg));
        return;
    }
    size_t n = push__v1__auth_reply__get_packed_size(r);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        LOG_E("out of memory for a reply of %zu bytes; the pusher will time out", n);
        return;
    }
    push__v1__auth_reply__pack(r, buf);
    natsStatus s = natsConnection_Publish(nc, reply_to, buf, (int)n);
    if (s != NATS_OK)
        LOG_W("cannot send a reply to %s: %s; the pusher will time out", reply_to,
              natsStatus_GetText(s));
    free(buf);
}

/* 1 if g is a grant: a channel name, or the prefix of one (maybe empty) then '*'. */
static int verifier_grant_ok(const char *g, size_t n)
{
    if (n && g[n - 1] == '*')
        return n == 1 || chan_name_ok(g, n - 1);
    return chan_name_ok(g, n);
}

/* The claims of a good token: for a connection token, its `channels` grants
 * into reply (strings that are not grants are skipped); for a subscription
 * token (channel set), whether its `channel` claim is exactly channel.
 * Returns 0, or -1 when a subscription token does not grant channel. */
static int verifier_claims(const char *claims, const char *channel, Push__V1__AuthReply *reply,
                           char **grants)
{
    json_t *root = claims ? json_loads(claims, 0, NULL) : NULL;
    int rc = 0;
    if (channel) {
        json_t *c = json_object_get(root, "channel");
        rc = json_is_string(c) && strcmp(json_string_value(c), channel) == 0 ? 0 : -1;
    } else {
        json_t *list = json_object_get(root, "channels");
        size_t i;
        json_t *g;
        json_array_foreach(list, i, g)
        {
            if (reply->n_channels == VERIFIER_MAX_GRANTS) {
                LOG_W("a token grants %zu channels; the first %d count", json_array_size(list),
                      VERIFIER_MAX_GRANTS);
                break;
            }
            if (json_is_string(g) && verifier_grant_ok(json_string_value(g), json_string_length(g)))
                grants[reply->n_channels++] = strdup(json_string_value(g));
            if (reply->n_channels && !grants[reply->n_channels - 1])
                reply->n_channels--;
        }
        reply->channels = grants;
    }
    json_decref(root);
    return rc;
}

static void verifier_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    verifier_t *v = closure;
    Push__V1__AuthReply reply = PUSH__V1__AUTH_REPLY__INIT;
    char user[JWT_MAX_SUB + 1], *claims = NULL, *grants[VERIFIER_MAX_GRANTS];
    jwt_result_t r = JWT_MALFORMED;
    int forbidden = 0;

    metrics_inc(v->requests);
    Push__V1__AuthRequest *req = push__v1__auth_request__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    if (req) {
        r = jwt_verify_claims(req->token, strlen(req->token), v->secret, v->secret_len, time(NULL),
                              VERIFIER_LEEWAY_S, user, &claims);
        if (req->channel) {
            metrics_inc(v->sub_requests);
            reply.channel = req->channel;
        }
        if (r == JWT_OK && verifier_claims(claims, req->channel, &reply, grants) != 0)
            forbidden = 1;
    } else {
        metrics_inc(v->undecodable);
        LOG_D("%d bytes on %s are not an AuthRequest; answered malformed",
              natsMsg_GetDataLength(msg), natsMsg_GetSubject(msg));
    }

    if (forbidden) {
        reply.ok = 0;
        reply.reason = "forbidden";
        metrics_inc(v->sub_forbidden);
        LOG_D("a subscription token of %s does not grant channel %s", user, req->channel);
    } else if (r == JWT_OK) {
        reply.ok = 1;
        reply.user = user;
        metrics_inc(v->accepted);
        LOG_D("accepted user %s (node %s, conn %s)", user, req->node ? req->node : "?",
              req->conn ? req->conn : "?");
    } else {
        reply.ok = 0;
        reply.reason = (char *)jwt_reason_name(r);
        metrics_inc(v->refused[r]);
        LOG_D("refused a token: %s (node %s, conn %s)", reply.reason,
              req && req->node ? req->node : "?", req && req->conn ? req->conn : "?");
    }
    verifier_reply(nc, msg, &reply);
    for (size_t i = 0; i < reply.n_channels; i++)
        free(grants[i]);
    free(claims);

    if (req)
        push__v1__auth_request__free_unpacked(req, NULL);
    natsx_msg_free(msg);
}

verifier_t *verifier_start(natsConnection *nc, const char *prefix, const char *secret)
{
    char subject[256];
    natsStatus s;
    verifier_t *v = calloc(1, sizeof *v);
    if (!v) {
        LOG_E("out of memory starting the verifier");
        return NULL;
    }
    v->nc = nc;
    v->secret = secret;
    v->secret_len = strlen(secret);
    v->requests = metrics_counter("push_authd_requests_total", NULL, "Auth requests received");
    v->accepted = metrics_counter("push_authd_accepted_total", NULL, "Tokens accepted");
    v->sub_requests = metrics_counter("push_authd_subscription_requests_total", NULL,
                                      "Subscription tokens checked for a channel");
    v->sub_forbidden = metrics_counter(
        "push_authd_subscription_forbidden_total", NULL,
        "Valid subscription tokens whose channel claim is not the channel asked for");
    v->undecodable = metrics_counter("push_authd_undecodable_total", NULL,
                                     "Auth requests that were not a protobuf AuthRequest");
    for (int r = JWT_MALFORMED; r <= JWT_BAD_SUB; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "reason=\"%s\"", jwt_reason_name((jwt_result_t)r));
        v->refused[r] =
            metrics_counter("push_authd_refused_total", labels, "Tokens refused, by reason");
    }

    natsx_subject(subject, sizeof subject, prefix, NATSX_AUTH);
    s = natsConnection_QueueSubscribe(&v->sub, nc, subject, VERIFIER_QUEUE, verifier_on_msg, v);
    /* A reconnect storm can queue 100k requests at once; hold them rather
     * than drop them as a slow consumer (each is a few hundred bytes). */
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(v->sub, 1000000, 256 * 1024 * 1024);
    if (s != NATS_OK)
        goto fail;
    LOG_I("answering %s (queue group %s)", subject, VERIFIER_QUEUE);
    return v;

fail:
    LOG_E("cannot subscribe to %s: %s", subject, natsStatus_GetText(s));
    natsSubscription_Destroy(v->sub);
    free(v);
    return NULL;
}

void verifier_stop(verifier_t *v)
{
    if (!v)
        return;
    natsx_sub_close(v->sub, v->nc, 2000);
    free(v);
}
