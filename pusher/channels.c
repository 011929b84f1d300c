/*
 * channels: a connection's channel subscriptions (ws_private.h, subs.h):
 * subscribe and its permission, recovery with since, delivery of a
 * channel's shared frames, unsubscribe. Service thread.
 */
#include <jansson.h>
#include <libwebsockets.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "chan.h"
#include "config.h"
#include "jwt.h"
#include "log.h"
#include "strmap.h"
#include "ws_private.h"

/* The codes of a refused subscribe (the error frame's "code", a metric label). */
const char *const ws_sub_codes[3] = {"forbidden", "bad_channel", "too_many"};
enum { WS_SUB_FORBIDDEN, WS_SUB_BAD_CHANNEL, WS_SUB_TOO_MANY };

/* --- channels ------------------------------------------------------------
 * A subscription (subs.h) is authorized by the connection token's channels
 * claim, or by a subscription token that authd checks (HANDOFF_SUBAUTH).
 * It then joins its channel, holding the channel's frames (replay.h) until
 * it is ready: the channel's route is in Redis (written for the first local
 * subscriber, HANDOFF_ROUTED) and, with `since`, its history arrived
 * (HANDOFF_HISTORY). Only then is it answered `subscribed`: a message
 * published after the client read that answer finds this node in Redis.
 * The history goes first, then the held frames not among it, as for a
 * user's stored messages (ws_end_replay). */

static void ws_gauges_subs(ws_t *w)
{
    metrics_set(w->m_subscriptions, (int64_t)subs_count(w->subs));
    metrics_set(w->m_channels, (int64_t)subs_channels(w->subs));
}

static void ws_send_json(ws_t *w, conn_t *conn, json_t *j)
{
    frame_t *f = frame_json(j);
    if (f) {
        ws_send(w, conn, f);
        frame_unref(f);
    }
}

static void ws_sub_refuse(ws_t *w, conn_t *conn, const char *channel, int code, const char *reason)
{
    metrics_inc(w->m_sub_refused[code]);
    json_t *j = json_object();
    json_object_set_new(j, "type", json_string("error"));
    if (channel)
        json_object_set_new(j, "channel", json_string(channel));
    json_object_set_new(j, "code", json_string(ws_sub_codes[code]));
    json_object_set_new(j, "reason", json_string(reason));
    ws_send_json(w, conn, j);
}

typedef struct ws_to_sub {
    ws_t *w;
    sub_t *sub;
} ws_to_sub_t;

/* Queue f for the client and remember it as the newest of its channel. */
static void ws_sub_deliver(void *arg, frame_t *f)
{
    ws_t *w = ((ws_to_sub_t *)arg)->w;
    sub_t *sub = ((ws_to_sub_t *)arg)->sub;
    if (f->id[0] && strcmp(f->id, sub->last_id) > 0)
        snprintf(sub->last_id, sizeof sub->last_id, "%s", f->id);
    metrics_inc(w->m_channel_frames);
    ws_send(w, sub->conn, f);
}

void ws_sub_send(ws_t *w, sub_t *sub, frame_t *f)
{
    conn_t *conn = sub->conn;
    if (conn->state != CONN_AUTHED || !conn->wsi)
        return;
    if (replay_is_copy(&sub->replay, f, 1)) {
        metrics_inc(w->m_dup_dropped);
        return;
    }
    if (sub->replay.active) {
        if (replay_hold(&sub->replay, f, WS_QUEUE_MAX_FRAMES, WS_QUEUE_MAX_BYTES) == 0)
            return;
        replay_drop_held(&sub->replay);
        metrics_inc(w->m_slow);
        ws_close_later(conn, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow");
        return;
    }
    ws_to_sub_t to = {w, sub};
    ws_sub_deliver(&to, f);
}

void ws_sub_close(ws_t *w, sub_t *sub)
{
    char *last = NULL;
    if (subs_close(w->subs, sub, &last) == 1 && last) {
        routes_remove_channel(w->routes, last);
        free(last);
    }
    ws_gauges_subs(w);
}

/* The subscription is ready: `subscribed` (unless this was a catch-up
 * after a NATS outage, waiting 2: answered already), then what its replay
 * has. history may be NULL. */
static void ws_sub_ready(ws_t *w, sub_t *sub, frame_t *const *history, size_t n, int recovered)
{
    if (sub->waiting == 1) {
        json_t *j = json_object();
        json_object_set_new(j, "type", json_string("subscribed"));
        json_object_set_new(j, "channel", json_string(sub->channel));
        json_object_set_new(j, "recovered", json_boolean(recovered));
        ws_send_json(w, sub->conn, j);
        metrics_inc(w->m_subscribed);
    }
    sub->waiting = 0;
    sub->asked = 0;
    free(sub->since);
    sub->since = NULL;
    ws_to_sub_t to = {w, sub};
    size_t dups = replay_finish(&sub->replay, history, n, ws_sub_deliver, &to);
    metrics_add(w->m_dup_dropped, (int64_t)dups);
}

/* Remember that sub waits for an answer (ws_sub_deadlines). */
static void ws_sub_wait(ws_t *w, sub_t *sub)
{
    if (w->sub_waits_head && w->sub_waits_head == w->n_sub_waits)
        w->sub_waits_head = w->n_sub_waits = 0;
    if (w->n_sub_waits == w->cap_sub_waits) {
        if (w->sub_waits_head) { /* reuse the room the FIFO's head left */
            memmove(w->sub_waits, w->sub_waits + w->sub_waits_head,
                    (w->n_sub_waits - w->sub_waits_head) * sizeof *w->sub_waits);
            w->n_sub_waits -= w->sub_waits_head;
            w->sub_waits_head = 0;
        } else {
            size_t cap = w->cap_sub_waits ? w->cap_sub_waits * 2 : 64;
            ws_sub_wait_t *nw = realloc(w->sub_waits, cap * sizeof *nw);
            if (!nw)
                return; /* then only an answer ends the wait */
            w->sub_waits = nw;
            w->cap_sub_waits = cap;
        }
    }
    ws_sub_wait_t *e = &w->sub_waits[w->n_sub_waits++];
    memcpy(e->id, sub->id, sizeof e->id);
    e->seq = ++sub->wait_seq;
    e->deadline_ms = ws_now_ms() + WS_SUB_TIMEOUT_S * 1000u;
}

/* The channel's route is in Redis: recover, or be ready now. */
static void ws_sub_routed(ws_t *w, sub_t *sub)
{
    if (!sub->waiting || sub->asked)
        return;
    if (!sub->since) {
        ws_sub_ready(w, sub, NULL, 0, 1);
        return;
    }
    sub->asked = 1;
    ws_sub_wait(w, sub);
    if (bus_request_history(w->bus, sub->id, sub->channel, sub->since) != 0) {
        LOG_W("cannot ask for the history of %s (NATS down?); subscribed without it", sub->channel);
        ws_sub_ready(w, sub, NULL, 0, 0);
    }
}

void ws_chan_routed(ws_t *w, const char *channel)
{
    chan_t *c = subs_chan(w->subs, channel);
    if (!c)
        return; /* every subscriber left meanwhile */
    c->routed = 1;
    for (uint32_t i = 0; i < c->n; i++)
        ws_sub_routed(w, c->subs[i]);
}

/* An authorized subscription joins its channel (frames held until ready). */
static void ws_sub_join(ws_t *w, sub_t *sub)
{
    sub->waiting = 1;
    sub->replay.active = 1;
    int first = subs_join(w->subs, sub);
    if (first < 0) {
        conn_t *conn = sub->conn;
        char *channel = strdup(sub->channel);
        ws_sub_close(w, sub);
        LOG_E("out of memory joining channel %s", channel ? channel : "?");
        ws_close_later(conn, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        free(channel);
        return;
    }
    ws_gauges_subs(w);
    if (sub->chan->routed)
        ws_sub_routed(w, sub);
    else if (first)
        routes_add_channel(w->routes, sub->channel); /* ws_chan_routed follows */
}

void ws_on_subscribe(ws_t *w, conn_t *conn, client_frame_t *cf)
{
    if (cf->error) {
        ws_sub_refuse(w, conn, cf->channel, WS_SUB_BAD_CHANNEL, cf->error);
        return;
    }
    sub_t *old = subs_find(conn, cf->channel);
    if (old) {
        /* subscribed already: say so, change nothing (a subscription still
         * being set up gets its one answer when it is ready) */
        if (!old->waiting && old->chan) {
            json_t *j = json_object();
            json_object_set_new(j, "type", json_string("subscribed"));
            json_object_set_new(j, "channel", json_string(old->channel));
            json_object_set_new(j, "recovered", json_true());
            ws_send_json(w, conn, j);
        }
        return;
    }
    if (conn->n_subs >= (uint32_t)w->max_channels) {
        char reason[96];
        snprintf(reason, sizeof reason, "at most %ld channels per connection", w->max_channels);
        ws_sub_refuse(w, conn, cf->channel, WS_SUB_TOO_MANY, reason);
        return;
    }
    int granted = chan_granted(conn->grants, conn->n_grants, cf->channel);
    if (!granted && !cf->token) {
        ws_sub_refuse(w, conn, cf->channel, WS_SUB_FORBIDDEN,
                      "the connection token does not grant this channel; send a subscription "
                      "token");
        return;
    }
    sub_t *sub = subs_open(w->subs, conn, cf->channel, cf->since);
    if (!sub) {
        ws_close_later(conn, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    if (granted) {
        ws_sub_join(w, sub);
        return;
    }
    /* authd checks the subscription token; the answer is HANDOFF_SUBAUTH */
    ws_sub_wait(w, sub);
    if (bus_request_subscription(w->bus, sub->id, cf->token, cf->channel) != 0) {
        ws_sub_close(w, sub);
        ws_sub_refuse(w, conn, cf->channel, WS_SUB_FORBIDDEN,
                      "the subscription token could not be checked (try again)");
    }
    ws_gauges_subs(w);
}

void ws_on_subauth(ws_t *w, handoff_ev_t *ev)
{
    sub_t *sub = subs_get(w->subs, ev->conn);
    if (!sub || sub->chan)
        return; /* unsubscribed or closed meanwhile */
    conn_t *conn = sub->conn;
    const char *why = NULL;
    if (!ev->ok)
        why = ev->reason && strcmp(ev->reason, "forbidden") == 0
                  ? "the subscription token is for another channel"
                  : "the subscription token was refused";
    else if (!ev->channel || strcmp(ev->channel, sub->channel) != 0)
        /* an authd that does not know subscription tokens ignores the
         * channel and does not echo it: its "ok" says nothing about it */
        why = "the subscription token could not be checked for this channel";
    else if (!ev->user || !conn->user || strcmp(ev->user, conn->user->id) != 0)
        why = "the subscription token is for another user";
    if (why) {
        char *channel = strdup(sub->channel);
        ws_sub_close(w, sub);
        ws_sub_refuse(w, conn, channel, WS_SUB_FORBIDDEN, why);
        free(channel);
        return;
    }
    ws_sub_join(w, sub);
}

void ws_on_history(ws_t *w, handoff_ev_t *ev)
{
    sub_t *sub = subs_get(w->subs, ev->conn);
    if (!sub || !sub->waiting || !sub->asked)
        return;
    if (ev->reason)
        LOG_W("no history for %s on connection %s (%s); subscribed with recovered false",
              sub->channel, sub->conn->id, ev->reason);
    ws_sub_ready(w, sub, ev->frames, ev->n_frames, ev->reason ? 0 : ev->ok);
}

void ws_on_unsubscribe(ws_t *w, conn_t *conn, client_frame_t *cf)
{
    if (cf->error) {
        ws_sub_refuse(w, conn, cf->channel, WS_SUB_BAD_CHANNEL, cf->error);
        return;
    }
    sub_t *sub = subs_find(conn, cf->channel);
    if (sub)
        ws_sub_close(w, sub);
    json_t *j = json_object();
    json_object_set_new(j, "type", json_string("unsubscribed"));
    json_object_set_new(j, "channel", json_string(cf->channel));
    ws_send_json(w, conn, j);
}

/* NATS is back after an outage (ws_nats_one): channel messages published
 * meanwhile went nowhere. Each ready subscription that has seen a message
 * holds its live frames again and asks for the history after that one. A
 * request made before or during the outage may have lost its answer: a
 * history request is made again (a late first answer finds the
 * subscription ready and is ignored); a subscription token still with
 * authd is refused, to be sent again by the client. */
void ws_subs_resync(ws_t *w, conn_t *c)
{
    for (uint32_t i = c->n_subs; i > 0; i--) { /* backwards: a refusal removes one */
        sub_t *sub = c->subs[i - 1];
        if (!sub->chan) {
            char *channel = strdup(sub->channel);
            ws_sub_close(w, sub);
            ws_sub_refuse(w, c, channel, WS_SUB_FORBIDDEN,
                          "the subscription token could not be checked (NATS was lost); "
                          "subscribe again");
            free(channel);
            continue;
        }
        const char *since = NULL;
        if (sub->waiting && sub->asked)
            since = sub->waiting == 1 ? sub->since : sub->last_id; /* asked; maybe lost */
        else if (!sub->waiting && sub->last_id[0])
            since = sub->last_id;
        if (!since)
            continue; /* waiting for its route (Redis), or nothing seen yet */
        if (!sub->waiting)
            sub->waiting = 2;
        sub->asked = 1;
        sub->replay.active = 1;
        ws_sub_wait(w, sub);
        if (bus_request_history(w->bus, sub->id, sub->channel, since) != 0)
            ws_sub_ready(w, sub, NULL, 0, 0);
    }
}

/* Every deadline tick: subscriptions whose answer is late. A subscription
 * token authd did not check in time is refused (the client may subscribe
 * again); a history that did not come in time gives `recovered: false`
 * and the live frames go out. */
void ws_sub_deadlines(ws_t *w, uint64_t now)
{
    while (w->sub_waits_head < w->n_sub_waits &&
           w->sub_waits[w->sub_waits_head].deadline_ms <= now) {
        ws_sub_wait_t *e = &w->sub_waits[w->sub_waits_head++];
        sub_t *sub = subs_get(w->subs, e->id);
        if (!sub || sub->wait_seq != e->seq)
            continue; /* gone meanwhile, or waiting again since */
        if (!sub->chan) {
            conn_t *conn = sub->conn;
            char *channel = strdup(sub->channel);
            ws_sub_close(w, sub);
            ws_sub_refuse(w, conn, channel, WS_SUB_FORBIDDEN,
                          "authd did not check the subscription token in time; try again");
            free(channel);
        } else if (sub->waiting && sub->asked) {
            LOG_W("no history for %s within %d s (collector slow?); subscribed with recovered "
                  "false",
                  sub->channel, WS_SUB_TIMEOUT_S);
            ws_sub_ready(w, sub, NULL, 0, 0);
        }
    }
}
