/*
 * ws: see ws.h.
 *
 * The life of a connection:
 *   HTTP_CONFIRM_UPGRADE  a token is there and shaped like a JWT, else 401
 *   FILTER_PROTOCOL_...   the token is copied to the session
 *   ESTABLISHED           registered (AUTH_PENDING), AuthRequest published,
 *                         on the auth FIFO (2 s)
 *   HANDOFF_AUTH          ok: AUTHED, welcome queued, route written (first
 *                         connection of the user here), on the replay FIFO
 *                         (5 s); refused: 4401
 *   HANDOFF_ROUTED        the route is in Redis: stored messages requested
 *   ws_deadlines          still AUTH_PENDING after 2 s: 1013; still waiting
 *                         for stored messages after 5 s: live ones go out
 *   CLOSED                unregistered; the user's last connection here
 *                         removes the route
 * A close decided outside the connection's own callback (refusal, slow
 * client, shutdown) is recorded on the connection and carried out in its
 * next SERVER_WRITEABLE, the one place lws lets us close it cleanly.
 *
 * The event loop: with libev (PUSHER_WITH_LIBEV) lws runs in an epoll loop
 * we own, which ws_serve leaves with ev_break; otherwise in lws's poll()
 * loop, one lws_service call per wake. Both run on the thread in ws_run.
 */
#include "ws.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#ifdef PUSHER_WITH_LIBEV
#include <ev.h>
#endif

#include "chan.h"
#include "client_frame.h"
#include "config.h"
#include "conns.h"
#include "gate.h"
#include "jwt.h"
#include "log.h"
#include "metrics.h"
#include "strmap.h"
#include "subs.h"

_Static_assert(FRAME_PRE >= LWS_PRE, "frame headroom must cover LWS_PRE");

#define WS_WRITES_PER_WAKE 64
#define WS_RETRY_TICKS 5 /* WS_DEADLINE_TICK_MS each */

/* A subscription waiting for an answer (subscription token, history),
 * with its deadline: every wait has the same length, so a FIFO is in
 * deadline order (conns.h says why these are not lws timers). */
typedef struct ws_sub_wait {
    char id[SUB_ID_LEN + 1];
    uint32_t seq; /* sub->wait_seq when it began: a later wait replaces it */
    uint64_t deadline_ms;
} ws_sub_wait_t;

struct ws {
    struct lws_context *ctx;
    char node[256];
    conns_t *conns;
    subs_t *subs; /* channel subscriptions */
    long max_channels;
    handoff_t *handoff;
    bus_t *bus;
    routes_t *routes;
    atomic_int stop_requested;
    int closing_all;
    int write_now; /* ws_send may write at once: set while handing off, outside any wsi's callback
                    */
    char (*again)[CONN_ID_LEN + 1]; /* connections to ask again for stored messages */
    ws_sub_wait_t *sub_waits;       /* subscriptions waiting for authd or the collector, a FIFO */
    size_t sub_waits_head, n_sub_waits, cap_sub_waits;
    size_t n_again, cap_again;
    unsigned ticks;              /* of ws_deadlines */
    int fd_cap;                  /* lws keeps descriptors below this; see ws_create_context */
    int (*serve_until)(ws_t *w); /* the current ws_serve stops when this says 1 */
    struct timespec drain_start;
#ifdef PUSHER_WITH_LIBEV
    struct ev_loop *loop; /* the epoll loop lws runs in, or NULL for lws's own poll() loop */
    ev_timer nudge;
    gate_t *gate; /* accepts and reads request heads (gate.h); NULL when lws listens */
#endif
    lws_retry_bo_t retry;
    lws_sorted_usec_list_t tick;       /* wakes the loop while shutting down */
    lws_sorted_usec_list_t idle_sweep; /* closes silent connections */
    lws_sorted_usec_list_t deadlines;  /* expires the auth and replay waits */
    metrics_series_t *m_refused[7];    /* by reason, as ws_refusal_reasons; the last is "other" */
    metrics_series_t *m_conns, *m_pending_auth, *m_401, *m_timeouts, *m_frames, *m_acks,
        *m_malformed, *m_oversize, *m_slow, *m_welcomed, *m_dup_dropped, *m_idle, *m_fd_refused,
        *m_nats_holds, *m_nats_catchups, *m_repeats;
    metrics_series_t *m_sub_refused[3]; /* by code, as ws_sub_codes */
    metrics_series_t *m_subscriptions, *m_channels, *m_subscribed, *m_channel_frames;
};

/* The codes of a refused subscribe (the error frame's "code", a metric label). */
static const char *const ws_sub_codes[3] = {"forbidden", "bad_channel", "too_many"};
enum { WS_SUB_FORBIDDEN, WS_SUB_BAD_CHANNEL, WS_SUB_TOO_MANY };

/* authd's refusal reasons (jwt_reason_name), then a catch-all. */
static const char *const ws_refusal_reasons[7] = {
    "malformed", "bad_alg", "bad_signature", "expired", "not_yet_valid", "bad_sub", "other"};

typedef struct ws_pss {
    conn_t *conn;
    char *token; /* between FILTER_PROTOCOL_CONNECTION and ESTABLISHED */
} ws_pss_t;

static void ws_break_if_done(ws_t *w);
static uint32_t ws_now_s(void);
static uint64_t ws_now_ms(void);

#ifdef PUSHER_WITH_LIBEV
/* lws 4.1's libev glue arms a single ev_timer for its timer list and never
 * moves it earlier: ev_timer_start on the active watcher is a no-op, so a
 * timer set for 2 s (auth) behind one due in 25 s (ping) would wait 25 s.
 * Its ripe timers are also run from an idle watcher that lws starts after
 * any descriptor event; waking its cancel pipe is such an event. So timers
 * here fire within WS_NUDGE_MS of their time. */
#define WS_NUDGE_MS 100
static void ws_nudge(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    ws_t *w = t->data;
    lws_cancel_service(w->ctx);
    ws_break_if_done(w);
}
#endif

static void ws_gauges(ws_t *w)
{
    size_t authed = conns_authed(w->conns);
    metrics_set(w->m_conns, (int64_t)authed);
    metrics_set(w->m_pending_auth, (int64_t)(conns_count(w->conns) - authed));
}

/* Ask lws to close conn with code at its next writeable callback. */
static void ws_close_later(conn_t *conn, int code, const char *reason)
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

static void ws_send(ws_t *w, conn_t *conn, frame_t *f)
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

/* Copy the token out of the query (?token=) or the Authorization header.
 * Returns a malloc'd string, or NULL when there is none. */
static char *ws_token(struct lws *wsi)
{
    char buf[JWT_MAX_TOKEN + 64];
    const char *v = lws_get_urlarg_by_name(wsi, "token=", buf, (int)sizeof buf);
    if (v && *v)
        return strdup(v);
    int n = lws_hdr_copy(wsi, buf, (int)sizeof buf, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 7 && strncasecmp(buf, "Bearer ", 7) == 0)
        return strdup(buf + 7);
    return NULL;
}

/* Refuse an upgrade with 401. Written by hand: lws_return_http_status
 * answers an upgrade request as HTTP/1.0, which strict clients refuse. */
static int ws_refuse_401(struct lws *wsi)
{
#define WS_401_BODY "{\"error\":\"missing or malformed token\"}\n"
    static const char resp[] = "HTTP/1.1 401 Unauthorized\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 39\r\n"
                               "Connection: close\r\n\r\n" WS_401_BODY;
    _Static_assert(sizeof WS_401_BODY - 1 == 39, "Content-Length must match the body");
    unsigned char buf[LWS_PRE + sizeof resp];
    memcpy(buf + LWS_PRE, resp, sizeof resp - 1);
    lws_write(wsi, buf + LWS_PRE, sizeof resp - 1, LWS_WRITE_HTTP_HEADERS);
    return 1;
}

static void ws_request_pending(ws_t *w, conn_t *conn)
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

static void ws_chan_routed(ws_t *w, const char *channel);

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

static void ws_sub_send(ws_t *w, sub_t *sub, frame_t *f);

static void ws_on_delivery(ws_t *w, handoff_ev_t *ev)
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
static void ws_end_replay(ws_t *w, conn_t *conn, handoff_ev_t *pending)
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
    if (w->n_again == w->cap_again) {
        size_t cap = w->cap_again ? w->cap_again * 2 : 64;
        char(*nr)[CONN_ID_LEN + 1] = realloc(w->again, cap * sizeof *nr);
        if (!nr)
            return; /* the replay deadline lets the live ones through */
        w->again = nr;
        w->cap_again = cap;
    }
    memcpy(w->again[w->n_again++], conn->id, sizeof conn->id);
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

static void ws_sub_send(ws_t *w, sub_t *sub, frame_t *f)
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

static void ws_sub_close(ws_t *w, sub_t *sub)
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

static void ws_chan_routed(ws_t *w, const char *channel)
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

static void ws_on_subscribe(ws_t *w, conn_t *conn, client_frame_t *cf)
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

static void ws_on_subauth(ws_t *w, handoff_ev_t *ev)
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

static void ws_on_history(ws_t *w, handoff_ev_t *ev)
{
    sub_t *sub = subs_get(w->subs, ev->conn);
    if (!sub || !sub->waiting || !sub->asked)
        return;
    if (ev->reason)
        LOG_W("no history for %s on connection %s (%s); subscribed with recovered false",
              sub->channel, sub->conn->id, ev->reason);
    ws_sub_ready(w, sub, ev->frames, ev->n_frames, ev->reason ? 0 : ev->ok);
}

static void ws_on_unsubscribe(ws_t *w, conn_t *conn, client_frame_t *cf)
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
static void ws_subs_resync(ws_t *w, conn_t *c)
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
static void ws_sub_deadlines(ws_t *w, uint64_t now)
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

static void ws_drain_handoff(ws_t *w)
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

static void ws_on_client_text(ws_t *w, conn_t *conn, const char *text, size_t len)
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

/* A frame over WS_MAX_FRAME_BYTES, by what it announced or what arrived:
 * counted, and the connection closes with 1009 at its next writeable
 * callback, at once, not after the frame's last byte (a client announcing
 * 2^63 bytes would never get there). Until lws's close handshake ends, the
 * rest of the frame is read and dropped (ws_on_receive), so the kernel has
 * no unread input to answer with a reset that could destroy the close
 * frame. Returning -1 from the receive callback instead lost the close
 * frame now and then (the client saw 1006). */
static void ws_refuse_oversize(ws_t *w, conn_t *conn)
{
    metrics_inc(w->m_oversize);
    free(conn->rx);
    conn->rx = NULL;
    conn->rx_len = 0;
    ws_close_later(conn, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "frame over 64 KiB");
}

/* A client message, possibly in fragments. Returns -1 to hang up. */
static int ws_on_receive(ws_t *w, struct lws *wsi, conn_t *conn, const char *in, size_t len)
{
    if (conn->close_code == LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE)
        return 0; /* the rest of an oversize frame, while the 1009 goes out */
    /* what the frame announced and has not sent yet */
    size_t remaining = lws_remaining_packet_payload(wsi);
    if (lws_is_first_fragment(wsi))
        conn->rx_len = 0;
    if (conn->rx_len + len + remaining > WS_MAX_FRAME_BYTES) {
        ws_refuse_oversize(w, conn);
        return 0;
    }
    int done = lws_is_final_fragment(wsi) && remaining == 0;
    if (done && conn->rx_len == 0) {
        if (lws_frame_is_binary(wsi))
            metrics_inc(w->m_malformed);
        else
            ws_on_client_text(w, conn, in, len);
        return 0;
    }
    char *nb = realloc(conn->rx, conn->rx_len + len + 1);
    if (!nb)
        return -1;
    conn->rx = nb;
    memcpy(conn->rx + conn->rx_len, in, len);
    conn->rx_len += len;
    if (done) {
        if (lws_frame_is_binary(wsi))
            metrics_inc(w->m_malformed);
        else
            ws_on_client_text(w, conn, conn->rx, conn->rx_len);
        free(conn->rx);
        conn->rx = NULL;
        conn->rx_len = 0;
    }
    return 0;
}

static int ws_on_writeable(ws_t *w, struct lws *wsi, conn_t *conn)
{
    if (conn->ping_due && !conn->close_code) {
        /* With a payload: lws does not report an empty pong (RECEIVE_PONG). */
        unsigned char ping[LWS_PRE + 4];
        memcpy(ping + LWS_PRE, "push", 4);
        conn->ping_due = 0;
        if (lws_write(wsi, ping + LWS_PRE, 4, LWS_WRITE_PING) < 4)
            return -1;
        if (lws_send_pipe_choked(wsi)) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    for (int i = 0; i < WS_WRITES_PER_WAKE; i++) {
        frame_t *f = conn_peek(conn);
        if (!f)
            break;
        if (lws_write(wsi, frame_payload(f), f->len, LWS_WRITE_TEXT) < (int)f->len)
            return -1;
        conn_pop(conn);
        metrics_inc(w->m_frames);
        /* lws_send_pipe_choked is a poll() of its own: only ask when
         * there is more to write. */
        if (conn->q_len && lws_send_pipe_choked(wsi))
            break;
    }
    if (conn->close_code && !conn->q_len) {
        lws_close_reason(wsi, (enum lws_close_status)conn->close_code,
                         (unsigned char *)conn->close_reason, strlen(conn->close_reason));
        return -1;
    }
    if (conn->close_code && conn->close_code != LWS_CLOSE_STATUS_GOINGAWAY) {
        /* refusals and slow clients close now, without draining */
        lws_close_reason(wsi, (enum lws_close_status)conn->close_code,
                         (unsigned char *)conn->close_reason, strlen(conn->close_reason));
        return -1;
    }
    if (conn->q_len)
        lws_callback_on_writable(wsi);
    return 0;
}

static uint32_t ws_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)ts.tv_sec;
}

static uint64_t ws_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Every WS_DEADLINE_TICK_MS: connections whose auth answer or stored
 * messages are late (conns.h has why these are not lws timers). */
static void ws_deadlines(lws_sorted_usec_list_t *sul)
{
    ws_t *w = lws_container_of(sul, ws_t, deadlines);
    uint64_t now = ws_now_ms();
    for (conn_t *c; (c = conns_wait_expired(w->conns, CONN_WAIT_AUTH, now));) {
        if (c->state != CONN_AUTH_PENDING)
            continue;
        metrics_inc(w->m_timeouts);
        ws_close_later(c, 1013, "authd did not answer; try again later");
    }
    size_t late = 0;
    for (conn_t *c; (c = conns_wait_expired(w->conns, CONN_WAIT_REPLAY, now));) {
        if (c->state != CONN_AUTHED || !c->replay.active)
            continue;
        if (!late++)
            LOG_W("no stored messages for %s within %d s (collector down?); sending live ones",
                  c->user->id, WS_REPLAY_TIMEOUT_S);
        ws_end_replay(w, c, NULL);
    }
    if (late > 1)
        LOG_W("... and for %zu more connection(s)", late - 1);
    ws_sub_deadlines(w, now);
    /* every WS_RETRY_TICKS ticks: a connection asks at most every 500 ms */
    size_t n_again = ++w->ticks % WS_RETRY_TICKS == 0 ? w->n_again : 0;
    w->n_again -= n_again;
    for (size_t i = 0; i < n_again; i++) {
        conn_t *c = conns_get(w->conns, w->again[i]);
        if (c && c->state == CONN_AUTHED && c->replay.active && c->resync == 2)
            ws_request_pending(w, c);
    }
    lws_sul_schedule(w->ctx, 0, &w->deadlines, ws_deadlines, WS_DEADLINE_TICK_MS * LWS_US_PER_MS);
}

/* Every WS_IDLE_SWEEP_S, over every connection (a few milliseconds for
 * 100k): ping each authenticated one that sent nothing for WS_PING_S (again
 * every WS_PING_S), close, with a close frame, each one that sent nothing,
 * not even a pong, for WS_IDLE_S, and drop one whose close has waited
 * WS_CLOSE_GRACE_S for a writeable callback. The pings are ours rather than
 * lws's because lws counts a client's own pings as life without telling us,
 * and then never pings: a client that pings but does not answer would look
 * silent to us. lws's own validity timers are off (ws_new). */
typedef struct ws_sweep {
    ws_t *w;
    uint32_t now;
    size_t pings_left; /* this sweep's budget: WS_PINGS_SHARE */
} ws_sweep_t;

static void ws_sweep_one(void *arg, conn_t *c)
{
    ws_t *w = ((ws_sweep_t *)arg)->w;
    uint32_t now = ((ws_sweep_t *)arg)->now;
    if (!c->wsi)
        return;
    if (c->close_code && now - c->close_since_s >= WS_CLOSE_GRACE_S) {
        /* Its close frame never went out (the client reads nothing, so lws
         * never called it writeable): drop the connection without it. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        return;
    }
    if (!c->close_code && lws_remaining_packet_payload(c->wsi) > WS_MAX_FRAME_BYTES) {
        /* A frame header announced more than the limit and no payload
         * followed: lws calls RECEIVE only with payload. lws assembles the
         * length most significant byte first, so even a partial header's
         * value is a lower bound of what was announced. */
        ws_refuse_oversize(w, c);
        return;
    }
    if (c->state != CONN_AUTHED)
        return;
    uint32_t quiet = now - c->last_rx_s;
    if (quiet >= WS_IDLE_S) {
        metrics_inc(w->m_idle);
        ws_close_later(c, LWS_CLOSE_STATUS_NORMAL, "idle: no frame or pong for 60 s");
    } else if (quiet >= WS_PING_S && now - c->last_ping_s >= WS_PING_S &&
               ((ws_sweep_t *)arg)->pings_left) {
        ((ws_sweep_t *)arg)->pings_left--;
        c->last_ping_s = now;
        c->ping_due = 1;
        lws_callback_on_writable(c->wsi);
    }
}

static void ws_idle_sweep(lws_sorted_usec_list_t *sul)
{
    ws_t *w = lws_container_of(sul, ws_t, idle_sweep);
    size_t n = conns_count(w->conns);
    ws_sweep_t sweep = {w, ws_now_s(),
                        n / WS_PINGS_SHARE > WS_PINGS_MIN ? n / WS_PINGS_SHARE : WS_PINGS_MIN};
    conns_each(w->conns, ws_sweep_one, &sweep);
    lws_sul_schedule(w->ctx, 0, &w->idle_sweep, ws_idle_sweep,
                     (lws_usec_t)WS_IDLE_SWEEP_S * LWS_US_PER_SEC);
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    ws_t *w = ctx ? lws_context_user(ctx) : NULL;
    ws_pss_t *pss = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        /* in: the accepted descriptor. At or above the cap it is closed at
         * once, which keeps the descriptors above the cap free for NATS,
         * Redis and /metrics (and lws's table is only that large). */
        if (w && (int)(intptr_t)in >= w->fd_cap) {
            metrics_inc(w->m_fd_refused);
            return 1;
        }
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        char *token = ws_token(wsi);
        int ok = token && jwt_well_formed(token, strlen(token));
        free(token);
        if (!ok) {
            metrics_inc(w->m_401);
            return ws_refuse_401(wsi);
        }
        return 0;
    }
    case LWS_CALLBACK_HTTP: {
        /* Not an upgrade. */
        char *token = ws_token(wsi);
        int ok = token && jwt_well_formed(token, strlen(token));
        free(token);
        if (!ok)
            metrics_inc(w->m_401);
        lws_return_http_status(wsi, ok ? 426 : HTTP_STATUS_UNAUTHORIZED,
                               ok ? "this endpoint speaks WebSocket only"
                                  : "missing or malformed token");
        return -1;
    }
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        pss->token = ws_token(wsi);
        return pss->token ? 0 : 1;
    case LWS_CALLBACK_ESTABLISHED: {
        conn_t *conn = conns_open(w->conns, wsi);
        if (!conn)
            return -1;
        pss->conn = conn;
        conn->last_rx_s = ws_now_s();
        if (w->closing_all) {
            ws_close_later(conn, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
            return 0;
        }
        if (!pss->token || bus_request_auth(w->bus, conn->id, pss->token) != 0)
            LOG_W("cannot send the auth request of connection %s (NATS down?)", conn->id);
        free(pss->token);
        pss->token = NULL;
        conns_wait(w->conns, conn, CONN_WAIT_AUTH, ws_now_ms() + WS_AUTH_TIMEOUT_S * 1000u);
        ws_gauges(w);
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss && pss->conn ? ws_on_writeable(w, wsi, pss->conn) : 0;
    case LWS_CALLBACK_RECEIVE:
        if (!pss || !pss->conn)
            return 0;
        pss->conn->last_rx_s = ws_now_s();
        return ws_on_receive(w, wsi, pss->conn, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        if (pss && pss->conn)
            pss->conn->last_rx_s = ws_now_s();
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (pss && pss->conn) {
            char *last_user = NULL;
            pss->conn->wsi = NULL;
            while (pss->conn->n_subs)
                ws_sub_close(w, pss->conn->subs[0]);
            if (conns_close(w->conns, pss->conn, &last_user) == 1) {
                routes_remove(w->routes, last_user);
                free(last_user);
            }
            pss->conn = NULL;
            ws_gauges(w);
        }
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (pss) {
            free(pss->token);
            pss->token = NULL;
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (w)
            ws_drain_handoff(w);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols ws_protocols[] = {
    {"push", ws_callback, sizeof(ws_pss_t), WS_RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* lws sizes its descriptor table from the soft open-file limit when the
 * context is created and indexes it by descriptor. An explicit, smaller
 * fd_limit_per_thread switches it to a linear search of that table on every
 * event (wsi_from_fd was 21% of the pusher's CPU with poll() and 44% with
 * libev, 10k clients). So the context is created while the soft limit is
 * lowered to the cap, and the limit is raised again right after: lws then
 * holds only descriptors below the cap (FILTER_NETWORK_CONNECTION closes an
 * accepted one above it) and the reserve above stays free for the rest. */
static struct lws_context *ws_create_context(ws_t *w, struct lws_context_creation_info *info)
{
    struct rlimit rl, lowered;
    int lowered_ok = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)w->fd_cap < rl.rlim_cur) {
        lowered = rl;
        lowered.rlim_cur = (rlim_t)w->fd_cap;
        lowered_ok = setrlimit(RLIMIT_NOFILE, &lowered) == 0;
    }
    /* The table lws is about to size, by its own rule (lws 4.1
     * context.c): sysconf's answer, or 2560 when that is unreasonable. lws
     * indexes it without bounds checks on close, so no descriptor at or
     * above it may reach lws, whatever happened to the limit above. */
    long table = sysconf(_SC_OPEN_MAX);
    if (table <= 0 || table > 10000000)
        table = 2560;
    if (table < w->fd_cap)
        w->fd_cap = (int)table;
    struct lws_context *ctx = lws_create_context(info);
    if (lowered_ok && setrlimit(RLIMIT_NOFILE, &rl) != 0)
        LOG_W("cannot raise the open-file limit back to %llu", (unsigned long long)rl.rlim_cur);
    return ctx;
}

#ifdef PUSHER_WITH_LIBEV
/* A connection whose request head the gate read whole: lws parses it from
 * head at once (HTTP_CONFIRM_UPGRADE and ESTABLISHED may run inside this
 * call) and reads the socket from then on. On failure lws closed fd. */
static void ws_adopt(void *arg, int fd, const char *head, size_t len)
{
    ws_t *w = arg;
    if (w->closing_all) {
        close(fd);
        return;
    }
    if (!lws_adopt_socket_readbuf(w->ctx, fd, head, len))
        LOG_W("libwebsockets could not take a new connection (out of memory?); closed it");
}
#endif

/* lws's errors, in our log. lws_adopt_socket_readbuf logs "calling service"
 * (or "deferring handling ah") at error level for every connection it
 * takes, in lws 4.1: those are not errors, and the gate hands it every
 * connection. */
static void ws_lws_log(int level, const char *line)
{
    if (strstr(line, "calling service") || strstr(line, "deferring handling ah"))
        return;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (level & LLL_ERR)
        LOG_E("libwebsockets: %.*s", (int)n, line);
    else
        LOG_W("libwebsockets: %.*s", (int)n, line);
}

static void ws_wake(void *arg)
{
    ws_t *w = arg;
    lws_cancel_service(w->ctx);
}

ws_t *ws_new(const char *host, int port, const char *node, unsigned fd_limit)
{
    ws_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    snprintf(w->node, sizeof w->node, "%s", node);
    w->conns = conns_new();
    w->handoff = handoff_new(ws_wake, w);
    w->subs = subs_new();
    w->max_channels = 128;
    for (size_t i = 0; i < 3; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "reason=\"%s\"", ws_sub_codes[i]);
        w->m_sub_refused[i] =
            metrics_counter("push_pusher_subscribe_refused_total", labels,
                            "Subscribe and unsubscribe frames refused, by reason");
    }
    w->m_subscriptions = metrics_gauge("push_pusher_subscriptions", NULL,
                                       "Channel subscriptions of this node's connections");
    w->m_channels =
        metrics_gauge("push_pusher_channels", NULL, "Channels with a subscriber on this node");
    w->m_subscribed =
        metrics_counter("push_pusher_subscribed_total", NULL, "Subscriptions answered subscribed");
    w->m_channel_frames = metrics_counter("push_pusher_channel_frames_total", NULL,
                                          "Channel message frames queued for subscribers");
    w->m_conns = metrics_gauge("push_pusher_connections", NULL, "Authenticated connections");
    w->m_pending_auth = metrics_gauge("push_pusher_connections_pending_auth", NULL,
                                      "Connections waiting for authd");
    w->m_401 = metrics_counter("push_pusher_http_401_total", NULL,
                               "Handshakes refused before upgrade (no or malformed token)");
    for (size_t i = 0; i < 7; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "reason=\"%s\"", ws_refusal_reasons[i]);
        w->m_refused[i] =
            metrics_counter("push_pusher_auth_refused_total", labels,
                            "Connections closed 4401 (authd refused the token), by reason");
    }
    w->m_timeouts = metrics_counter("push_pusher_auth_timeouts_total", NULL,
                                    "Connections closed 1013 (authd did not answer)");
    w->m_frames =
        metrics_counter("push_pusher_frames_sent_total", NULL, "Text frames written to clients");
    w->m_acks = metrics_counter("push_pusher_acks_total", NULL, "Message ids acked by clients");
    w->m_malformed = metrics_counter("push_pusher_malformed_frames_total", NULL,
                                     "Client frames ignored as malformed");
    w->m_oversize = metrics_counter("push_pusher_oversize_frames_total", NULL,
                                    "Connections closed 1009 (frame over 64 KiB)");
    w->m_slow = metrics_counter("push_pusher_slow_clients_closed_total", NULL,
                                "Connections closed for not reading");
    w->m_dup_dropped =
        metrics_counter("push_pusher_duplicates_dropped_total", NULL,
                        "Live copies of messages a connection already got from its replay");
    w->m_idle = metrics_counter("push_pusher_idle_closed_total", NULL,
                                "Connections closed after WS_IDLE_S s without a frame or pong");
    w->m_fd_refused =
        metrics_counter("push_pusher_fd_limit_refused_total", NULL,
                        "Connections closed on accept: the open-file cap was reached");
    w->m_welcomed = metrics_counter("push_pusher_welcomed_total", NULL,
                                    "Connections authenticated and welcomed");
    w->m_repeats =
        metrics_counter("push_pusher_repeats_dropped_total", NULL,
                        "User messages not sent again: the connection was given the same id just "
                        "before (a repeat from the stream or a hand-over retry)");
    w->m_nats_holds = metrics_counter("push_pusher_nats_holds_total", NULL,
                                      "NATS losses during which live messages were held");
    w->m_nats_catchups =
        metrics_counter("push_pusher_nats_catchups_total", NULL,
                        "NATS returns after which connections caught up from the store");
    if (!w->conns || !w->handoff || !w->subs)
        goto fail;
    lws_set_log_level(LLL_ERR, ws_lws_log);
    /* No validity (ping/hang-up) timers from lws: it keeps every timer in one
     * sorted list and inserts by walking it, a cost per connection that grows
     * with the number of connections. The idle sweep pings and closes. */
    w->retry.secs_since_valid_ping = 0;
    w->retry.secs_since_valid_hangup = 0;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0 ? NULL : host;
    info.protocols = ws_protocols;
    info.user = w;
    info.retry_and_idle_policy = &w->retry;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.timeout_secs = 10;
    /* Handshakes parsed at once, each in a header buffer as large as the
     * largest head the gate passes. With the gate (gate.h) a connection
     * reaches lws with its head complete and holds a buffer only while lws
     * parses it, so a storm needs few. With lws's default (one per
     * descriptor) a storm left its peak of buffers in the heap: 4.4 KB per
     * idle connection instead of 2.5 KB. Without the gate (lws's poll()
     * loop) a slow head holds a buffer for up to GATE_HEAD_DEADLINE_S. */
    info.max_http_header_pool = WS_HANDSHAKES_MAX;
    info.max_http_header_data = GATE_MAX_HEAD_BYTES;
    info.timeout_secs_ah_idle = GATE_HEAD_DEADLINE_S;
    w->fd_cap = fd_limit ? (int)fd_limit : INT_MAX;
#ifdef PUSHER_WITH_LIBEV
    /* An epoll loop of our own (libev) rather than lws's poll() loop, which
     * scans every connection's descriptor on each wake. The loop is ours
     * ("foreign" to lws) so that ws_run can leave it (ev_break); lws's own
     * libev loop never returns from lws_service. */
    void *loops[1] = {NULL};
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (w->loop) {
        loops[0] = w->loop;
        info.foreign_loops = loops;
        info.options |= LWS_SERVER_OPTION_LIBEV;
        info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* the gate listens */
        w->ctx = ws_create_context(w, &info);
        if (w->ctx) {
            w->gate = gate_new(w->loop, host, port, w->fd_cap, ws_adopt, w);
            if (!w->gate)
                goto fail;
        } else {
            info.port = port;
            LOG_W("lws's libev event loop is not available (package libwebsockets-evlib-ev?); "
                  "using poll(), which costs more per connection");
            ev_loop_destroy(w->loop);
            w->loop = NULL;
            info.foreign_loops = NULL;
            info.options &= ~(uint64_t)LWS_SERVER_OPTION_LIBEV;
        }
    }
    if (!w->ctx)
        w->ctx = ws_create_context(w, &info);
#else
    w->ctx = ws_create_context(w, &info);
#endif
    if (!w->ctx) {
        LOG_E("cannot listen on %s:%d (in use, or not an address of this host)", host, port);
        goto fail;
    }
#ifdef PUSHER_WITH_LIBEV
    if (!w->gate)
        LOG_W("without the libev loop, request heads are read by libwebsockets: a slow or "
              "stalled head holds one of its %d header buffers for up to %d s, and a head over "
              "%d bytes gets no answer",
              WS_HANDSHAKES_MAX, GATE_HEAD_DEADLINE_S, GATE_MAX_HEAD_BYTES);
#endif
    lws_sul_schedule(w->ctx, 0, &w->idle_sweep, ws_idle_sweep,
                     (lws_usec_t)WS_IDLE_SWEEP_S * LWS_US_PER_SEC);
    lws_sul_schedule(w->ctx, 0, &w->deadlines, ws_deadlines, WS_DEADLINE_TICK_MS * LWS_US_PER_MS);
    return w;
fail:
    ws_free(w);
    return NULL;
}

void ws_free(ws_t *w)
{
    if (!w)
        return;
#ifdef PUSHER_WITH_LIBEV
    gate_free(w->gate);
#endif
    if (w->ctx) {
        lws_sul_cancel(&w->idle_sweep);
        lws_sul_cancel(&w->deadlines);
        lws_context_destroy(w->ctx);
    }
#ifdef PUSHER_WITH_LIBEV
    if (w->loop)
        ev_loop_destroy(w->loop);
#endif
    handoff_free(w->handoff);
    subs_free(w->subs);
    conns_free(w->conns);
    free(w->again);
    free(w->sub_waits);
    free(w);
}

handoff_t *ws_handoff(ws_t *w)
{
    return w->handoff;
}

void ws_set_max_channels(ws_t *w, long max_channels)
{
    w->max_channels = max_channels;
}

void ws_attach(ws_t *w, bus_t *bus, routes_t *routes)
{
    w->bus = bus;
    w->routes = routes;
}

/* Leave the event loop when the current phase of ws_run is over. Service
 * thread. With lws's poll() loop ws_serve checks after each lws_service;
 * an epoll loop (libev) only returns when told to. */
static void ws_break_if_done(ws_t *w)
{
#ifdef PUSHER_WITH_LIBEV
    if (w->loop && w->serve_until && w->serve_until(w))
        ev_break(w->loop, EVBREAK_ALL);
#else
    (void)w;
#endif
}

static void ws_serve(ws_t *w, int (*until)(ws_t *w))
{
    w->serve_until = until;
#ifdef PUSHER_WITH_LIBEV
    if (w->loop) {
        ev_timer_init(&w->nudge, ws_nudge, WS_NUDGE_MS / 1000.0, WS_NUDGE_MS / 1000.0);
        w->nudge.data = w;
        ev_timer_start(w->loop, &w->nudge);
        if (!until(w))
            ev_run(w->loop, 0);
        ev_timer_stop(w->loop, &w->nudge);
        w->serve_until = NULL;
        return;
    }
#endif
    while (!until(w))
        lws_service(w->ctx, 0);
    w->serve_until = NULL;
}

static int ws_serving_done(ws_t *w)
{
    return w->closing_all;
}

#define WS_DRAIN_MS 3000

static int ws_draining_done(ws_t *w)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - w->drain_start.tv_sec) * 1000 +
              (now.tv_nsec - w->drain_start.tv_nsec) / 1000000;
    return conns_count(w->conns) == 0 || ms >= WS_DRAIN_MS;
}

/* While draining: bounds each wait of the loop, and ends the drain. */
static void ws_tick(lws_sorted_usec_list_t *sul)
{
    ws_t *w = lws_container_of(sul, ws_t, tick);
    lws_sul_schedule(w->ctx, 0, &w->tick, ws_tick, 50 * LWS_US_PER_MS);
    ws_break_if_done(w);
}

void ws_run(ws_t *w)
{
    ws_serve(w, ws_serving_done);
    /* Give the 1001 closes a moment to go out. */
    clock_gettime(CLOCK_MONOTONIC, &w->drain_start);
    lws_sul_schedule(w->ctx, 0, &w->tick, ws_tick, 50 * LWS_US_PER_MS);
    ws_serve(w, ws_draining_done);
    lws_sul_cancel(&w->tick);
    if (conns_count(w->conns))
        LOG_W("%zu connection(s) did not close in time", conns_count(w->conns));
}

void ws_stop(ws_t *w)
{
    atomic_store(&w->stop_requested, 1);
    lws_cancel_service(w->ctx);
}
