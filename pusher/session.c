/*
 * session: a connection between lws events (ws_private.h): auth answers,
 * routes, the replay of stored messages merged with live delivery, NATS
 * outages and catch-up, the handoff queue, client frames. Service thread.
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
#include "ids.h"
#include "jwt.h"
#include "log.h"
#include "strmap.h"
#include "ws_private.h"

/* authd's refusal reasons (jwt_reason_name), then a catch-all. */
const char *const ws_refusal_reasons[7] = {"malformed",     "bad_alg", "bad_signature", "expired",
                                           "not_yet_valid", "bad_sub", "other"};

void ws_gauges(ws_t *w)
{
    size_t authed = conns_authed(w->conns);
    metrics_set(w->m_conns, (int64_t)authed);
    metrics_set(w->m_pending_auth, (int64_t)(conns_count(w->conns) - authed));
}

/* Ask lws to close conn with code at its next writeable callback. */
void ws_close_later(conn_t *conn, int code, const char *reason)
{
    if (conn->close_code)
        return;
    conn->close_code = code;
    conn->close_since_s = ws_now_s();
    snprintf(conn->close_reason, sizeof conn->close_reason, "%s", reason);
    conn->state = CONN_CLOSING;
    if (conn->wsi)
        lws_callback_on_writable(conn->wsi);
}

void ws_send(ws_t *w, conn_t *conn, frame_t *f)
{
    if (conn->state == CONN_CLOSING || !conn->wsi)
        return;
    if (replay_is_copy(&conn->replay, f, !f->broadcast)) {
        /* A live copy of a message the replay already delivered. */
        metrics_inc(w->m_dup_dropped);
        return;
    }
    if (conn->replay.active && f->id[0]) {
        /* Stored messages are on their way: live ones wait so that the
         * client sees them in order and each once (see ws_end_replay). */
        if (conn_hold(conn, f, WS_QUEUE_MAX_FRAMES, WS_QUEUE_MAX_BYTES) == 0)
            return;
        conn_drop_held(conn);
        metrics_inc(w->m_slow);
        ws_close_later(conn, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow");
        return;
    }
    if (f->id[0] && !f->broadcast && conn_repeat(conn, f->id)) {
        /* One of the last CONN_RECENT messages this connection was given,
         * again (held frames come here once, when the replay ends): a
         * stream redelivery or a hand-over retry upstream. At-least-once
         * allows it; this keeps it off the wire. */
        metrics_inc(w->m_repeats);
        return;
    }
    if (f->id[0] && !f->broadcast && strcmp(f->id, conn->last_id) > 0)
        memcpy(conn->last_id, f->id, sizeof conn->last_id);
    if (w->write_now && !conn->q_len && !conn->ping_due && conn->state == CONN_AUTHED &&
        !lws_partial_buffered(conn->wsi)) {
        /* Nothing queued and nothing of lws's own pending: write now rather
         * than ask for a writeable callback. Waiting for it costs two
         * epoll_ctl calls and a wake per frame, a fifth of the pusher's time
         * in a broadcast (docs/BENCHMARKS.md). If the kernel takes only
         * part, lws keeps the rest and sends it before any writeable
         * callback (lws-write.h, "Truncated Writes"), and later frames
         * queue behind it as usual. */
        if (lws_write(conn->wsi, frame_payload(f), f->len, LWS_WRITE_TEXT) < (int)f->len) {
            conn->state = CONN_CLOSING; /* the socket failed: lws hangs up */
            lws_set_timeout(conn->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
            return;
        }
        metrics_inc(w->m_frames);
        return;
    }
    if (conn_enqueue(conn, f, WS_QUEUE_MAX_FRAMES, WS_QUEUE_MAX_BYTES) != 0) {
        metrics_inc(w->m_slow);
        LOG_W("connection %s of %s is not reading (%u frames, %zu bytes queued); closing it",
              conn->id, conn->user ? conn->user->id : "?", conn->q_len, conn->q_bytes);
        ws_close_later(conn, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow");
        return;
    }
    lws_callback_on_writable(conn->wsi);
}

void ws_request_pending(ws_t *w, conn_t *conn)
{
    conn->pending_asked = 1;
    if (bus_request_pending(w->bus, conn->id, conn->user->id, conn->last_id) != 0)
        LOG_W("cannot ask for the stored messages of %s (NATS down?)", conn->user->id);
}

static void ws_on_auth(ws_t *w, handoff_ev_t *ev)
{
    conn_t *conn = conns_get(w->conns, ev->conn);
    if (!conn || conn->state != CONN_AUTH_PENDING || !conn->wsi)
        return; /* closed or timed out meanwhile */
    conns_unwait(w->conns, conn);
    if (!ev->ok) {
        size_t r = 0;
        while (r < 6 && (!ev->reason || strcmp(ev->reason, ws_refusal_reasons[r]) != 0))
            r++;
        metrics_inc(w->m_refused[r]);
        ws_close_later(conn, 4401, ev->reason ? ev->reason : "refused");
        return;
    }
    int first = conns_authenticate(w->conns, conn, ev->user);
    /* the token's channels claim (bus.c puts it in users) */
    conn->grants = ev->users;
    conn->n_grants = ev->n_users;
    ev->users = NULL;
    ev->n_users = 0;
    if (first < 0) {
        ws_close_later(conn, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    conn->replay.active = 1; /* until its stored messages arrive */
    conns_wait(w->conns, conn, CONN_WAIT_REPLAY, ws_now_ms() + WS_REPLAY_TIMEOUT_S * 1000u);
    metrics_inc(w->m_welcomed);
    frame_t *welcome = frame_welcome(ev->user, w->node, conn->id);
    if (welcome) {
        ws_send(w, conn, welcome);
        frame_unref(welcome);
    }
    if (first)
        routes_add(w->routes, ev->user); /* stored messages follow HANDOFF_ROUTED */
    else if (conn->user->routed)
        ws_request_pending(w, conn);
    ws_gauges(w);
}

static void ws_on_routed(ws_t *w, handoff_ev_t *ev)
{
    if (ev->user && ev->user[0] == ROUTES_CHANNEL_MARK) {
        ws_chan_routed(w, ev->user + 1);
        return;
    }
    conn_user_t *u = conns_user(w->conns, ev->user);
    if (!u)
        return;
    u->routed = 1;
    for (conn_t *c = u->head; c; c = c->user_next)
        if (!c->pending_asked && c->state == CONN_AUTHED)
            ws_request_pending(w, c);
}

static void ws_on_delivery_sends(ws_t *w, handoff_ev_t *ev)
{
    frame_t *f = ev->frames[0];
    if (ev->channel) {
        chan_t *c = subs_chan(w->subs, ev->channel);
        for (uint32_t i = 0; c && i < c->n; i++)
            ws_sub_send(w, c->subs[i], f);
        return;
    }
    if (ev->broadcast) {
        for (conn_t *c = conns_all(w->conns), *next; c; c = next) {
            next = c->all_next;
            ws_send(w, c, f);
        }
        return;
    }
    for (size_t i = 0; i < ev->n_users; i++) {
        conn_user_t *u = conns_user(w->conns, ev->users[i]);
        for (conn_t *c = u ? u->head : NULL; c; c = c->user_next)
            ws_send(w, c, f);
    }
}

static void ws_on_delivery(ws_t *w, handoff_ev_t *ev)
{
    ws_on_delivery_sends(w, ev);
    if (ev->frames[0]->id[0])
        metrics_observe_since_ms(w->m_age, ids_time_ms(ev->frames[0]->id));
}

typedef struct ws_to_conn {
    ws_t *w;
    conn_t *conn;
} ws_to_conn_t;

static void ws_send_to_conn(void *arg, frame_t *f)
{
    ws_to_conn_t *t = arg;
    ws_send(t->w, t->conn, f);
}

/* Send the stored messages, then the live ones that arrived meanwhile and
 * are not among them (replay.h). pending may be NULL (the collector did
 * not answer). */
void ws_end_replay(ws_t *w, conn_t *conn, handoff_ev_t *pending)
{
    if (conn->resync == 2)
        conn->resync = 0;
    conns_unwait(w->conns, conn);
    ws_to_conn_t to = {w, conn};
    size_t dups = replay_finish(&conn->replay, pending ? pending->frames : NULL,
                                pending ? pending->n_frames : 0, ws_send_to_conn, &to);
    metrics_add(w->m_dup_dropped, (int64_t)dups);
}

/* Remember conn to ask for its stored messages again (ws_deadlines). */
static void ws_retry_later(ws_t *w, conn_t *conn)
{
    /* without memory, the replay deadline lets the live ones through */
    (void)conn_ids_add(&w->again, conn);
}

static void ws_on_pending(ws_t *w, handoff_ev_t *ev)
{
    conn_t *conn = conns_get(w->conns, ev->conn);
    if (!conn || conn->state != CONN_AUTHED)
        return;
    if (conn->replay.active && conn->resync == 2 && !ev->ok) {
        /* Catching up after NATS came back and no collector is subscribed
         * yet (it may reconnect after us): ask again at the next deadline
         * tick, until the replay deadline lets the live ones through. */
        ws_retry_later(w, conn);
        return;
    }
    if (conn->replay.active) {
        ws_end_replay(w, conn, ev);
        return;
    }
    /* A late answer: the replay timer already let live frames through (the
     * collector was slow, or Redis was down so the request went out late).
     * Send the stored messages anyway rather than leave them until the next
     * connection: delivery is at least once and ids let the client drop a
     * copy it already has. */
    if (ev->n_frames)
        LOG_I("%zu stored message(s) for connection %s arrived after the live ones", ev->n_frames,
              conn->id);
    for (size_t i = 0; i < ev->n_frames; i++)
        ws_send(w, conn, ev->frames[i]);
}

static void ws_on_presence(ws_t *w, handoff_ev_t *ev)
{
    if (ev->channel) {
        chan_t *c = subs_chan(w->subs, ev->channel);
        bus_presence_reply(w->bus, ev->reply, c ? c->n : 0);
        return;
    }
    conn_user_t *u = conns_user(w->conns, ev->user);
    bus_presence_reply(w->bus, ev->reply, u ? u->count : 0);
}

/* NATS lost: what the dispatchers publish to this node meanwhile goes
 * nowhere (core NATS keeps nothing for an absent subscriber), and what they
 * publish just after it is back may arrive before older messages that were
 * lost. So from the loss on, every authenticated connection holds its live
 * messages, as while replaying at connect; once NATS is back it asks the
 * collector for the stored messages newer than the last one it queued
 * (ws_send keeps last_id), and ws_end_replay sends those first, then the
 * held ones not among them. Messages with ttl 0 are not stored: those
 * published during the outage are lost, as live-only allows. */
typedef struct ws_nats_pass {
    ws_t *w;
    int up;
    size_t n;
} ws_nats_pass_t;

static void ws_nats_one(void *arg, conn_t *c)
{
    ws_nats_pass_t *p = arg;
    if (c->state != CONN_AUTHED || !c->wsi)
        return;
    if (!p->up) {
        conns_unwait(p->w->conns, c); /* no replay deadline while NATS is away */
        c->replay.active = 1;
        c->resync = 1;
        p->n++;
        return;
    }
    if (c->resync != 1)
        return;
    conns_wait(p->w->conns, c, CONN_WAIT_REPLAY, ws_now_ms() + WS_REPLAY_TIMEOUT_S * 1000u);
    ws_subs_resync(p->w, c);
    if (c->user->routed) {
        c->resync = 2;
        ws_request_pending(p->w, c);
    } else {
        c->resync = 0;
        c->pending_asked = 0; /* HANDOFF_ROUTED asks, once the route is written */
    }
    p->n++;
}

static void ws_on_nats(ws_t *w, handoff_ev_t *ev)
{
    ws_nats_pass_t pass = {w, ev->ok, 0};
    conns_each(w->conns, ws_nats_one, &pass);
    metrics_inc(ev->ok ? w->m_nats_catchups : w->m_nats_holds);
    if (ev->ok)
        LOG_I("NATS is back: asking the collector for what %zu connection(s) missed meanwhile",
              pass.n);
    else
        LOG_W("NATS lost: %zu connection(s) hold live messages until it is back and they caught up "
              "from the store",
              pass.n);
}

static void ws_close_one(void *arg, conn_t *conn)
{
    (void)arg;
    ws_close_later(conn, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
}

void ws_drain_handoff(ws_t *w)
{
    w->write_now = 1;
    for (handoff_ev_t *ev = handoff_take(w->handoff), *next; ev; ev = next) {
        next = ev->next;
        switch (ev->kind) {
        case HANDOFF_AUTH:
            ws_on_auth(w, ev);
            break;
        case HANDOFF_DELIVERY:
            ws_on_delivery(w, ev);
            break;
        case HANDOFF_PENDING:
            ws_on_pending(w, ev);
            break;
        case HANDOFF_PRESENCE:
            ws_on_presence(w, ev);
            break;
        case HANDOFF_ROUTED:
            ws_on_routed(w, ev);
            break;
        case HANDOFF_NATS:
            ws_on_nats(w, ev);
            break;
        case HANDOFF_SUBAUTH:
            ws_on_subauth(w, ev);
            break;
        case HANDOFF_HISTORY:
            ws_on_history(w, ev);
            break;
        }
        handoff_ev_free(ev);
    }
    w->write_now = 0;
    if (atomic_load(&w->stop_requested) && !w->closing_all) {
        w->closing_all = 1;
#ifdef PUSHER_WITH_LIBEV
        gate_close(w->gate); /* no new connections while draining */
#endif
        LOG_I("closing %zu connection(s) with 1001", conns_count(w->conns));
        conns_each(w->conns, ws_close_one, NULL);
        ws_break_if_done(w);
    }
}

void ws_on_client_text(ws_t *w, conn_t *conn, const char *text, size_t len)
{
    client_frame_t cf;
    client_frame_parse(text, len, &cf);
    if (cf.kind == CLIENT_FRAME_ACK && conn->state == CONN_AUTHED) {
        metrics_add(w->m_acks, (int64_t)cf.n_ids);
        bus_ack(w->bus, conn->user->id, conn->id, cf.ids, cf.n_ids);
    } else if (cf.kind == CLIENT_FRAME_SUBSCRIBE && conn->state == CONN_AUTHED) {
        ws_on_subscribe(w, conn, &cf);
    } else if (cf.kind == CLIENT_FRAME_UNSUBSCRIBE && conn->state == CONN_AUTHED) {
        ws_on_unsubscribe(w, conn, &cf);
    } else if (cf.kind == CLIENT_FRAME_PING && conn->state == CONN_AUTHED) {
        frame_t *pong = frame_text("{\"type\":\"pong\"}", 15);
        if (pong) {
            ws_send(w, conn, pong);
            frame_unref(pong);
        }
    } else {
        metrics_inc(w->m_malformed);
    }
    client_frame_free(&cf);
}
