/*
 * ws_private.h: what the pusher's WebSocket server (ws.h) shares between
 * its files, all on the service thread:
 *   ws.c        the lws plumbing: the context and its loop, connections
 *               handed over by the gate, lws callbacks turned into session
 *               calls, reads (frame assembly, 1009) and writes, the
 *               deadline tick and the idle sweep
 *   session.c   a connection's session: auth answers, routes, the replay
 *               of stored messages and live delivery, NATS outages, the
 *               handoff queue, client frames
 *   channels.c  a connection's channel subscriptions
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
 */
#ifndef PUSHER_WS_PRIVATE_H
#define PUSHER_WS_PRIVATE_H

#include <libwebsockets.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#ifdef PUSHER_WITH_LIBEV
#include <ev.h>
#endif

#include "client_frame.h"
#include "conns.h"
#include "gate.h"
#include "metrics.h"
#include "subs.h"
#include "ws.h"

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
    conn_ids_t again;         /* connections to ask again for stored messages */
    ws_sub_wait_t *sub_waits; /* subscriptions waiting for authd or the collector, a FIFO */
    size_t sub_waits_head, n_sub_waits, cap_sub_waits;
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
    /* the connections the sweeps chose to ping; ws_ping_tick pings
     * ping_per_tick of them, from ping_next on, every WS_PING_TICK_MS */
    lws_sorted_usec_list_t ping_tick;
    conn_ids_t pings;
    size_t ping_next, ping_per_tick;
    lws_sorted_usec_list_t deadlines; /* expires the auth and replay waits */
    metrics_series_t *m_refused[7];   /* by reason, as ws_refusal_reasons; the last is "other" */
    metrics_series_t *m_conns, *m_pending_auth, *m_401, *m_timeouts, *m_frames, *m_acks,
        *m_malformed, *m_oversize, *m_slow, *m_welcomed, *m_dup_dropped, *m_idle, *m_fd_refused,
        *m_nats_holds, *m_nats_catchups, *m_repeats;
    metrics_series_t *m_sub_refused[3]; /* by code, as ws_sub_codes */
    metrics_series_t *m_subscriptions, *m_channels, *m_subscribed, *m_channel_frames;
    metrics_histogram_t *m_age; /* accepted -> written (or queued) to every local connection */
};

/* authd's refusal reasons (jwt_reason_name), then a catch-all (session.c). */
extern const char *const ws_refusal_reasons[7];
/* The codes of a refused subscribe (channels.c). */
extern const char *const ws_sub_codes[3];

/* ws.c */
/* Leave the event loop when the current phase of ws_run is over. */
void ws_break_if_done(ws_t *w);
/* Monotonic milliseconds and seconds: every deadline and idle time here. */
uint64_t ws_now_ms(void);
uint32_t ws_now_s(void);

/* session.c */
/* Close conn with code at its next writeable callback (any callback may decide it). */
void ws_close_later(conn_t *conn, int code, const char *reason);
/* Take every event other threads queued (handoff.h) and act on it. */
void ws_drain_handoff(ws_t *w);
/* Stored messages (pending, or NULL when none came in time), then the held live ones. */
void ws_end_replay(ws_t *w, conn_t *conn, handoff_ev_t *pending);
/* Refresh the connection gauges. */
void ws_gauges(ws_t *w);
/* A whole text message from the client: ack, ping, subscribe, unsubscribe. */
void ws_on_client_text(ws_t *w, conn_t *conn, const char *text, size_t len);
/* Ask the collector for conn's stored messages (after its last id). */
void ws_request_pending(ws_t *w, conn_t *conn);
/* Give f to conn: dropped as a copy or repeat, held during a replay, written at
 * once, or queued (a reference is taken; the caller keeps its own). */
void ws_send(ws_t *w, conn_t *conn, frame_t *f);

/* channels.c */
/* The channel's route is in Redis: its waiting subscriptions go on. */
void ws_chan_routed(ws_t *w, const char *channel);
/* Answers from authd (a subscription token) and the collector (history). */
void ws_on_history(ws_t *w, handoff_ev_t *ev);
void ws_on_subauth(ws_t *w, handoff_ev_t *ev);
/* Client frames subscribe and unsubscribe; answered with a frame either way. */
void ws_on_subscribe(ws_t *w, conn_t *conn, client_frame_t *cf);
void ws_on_unsubscribe(ws_t *w, conn_t *conn, client_frame_t *cf);
/* Drop a subscription (unsubscribed, refused, or its connection closed);
 * the channel's last one here removes its route. */
void ws_sub_close(ws_t *w, sub_t *sub);
/* Subscriptions whose authd or history answer is late (deadline tick). */
void ws_sub_deadlines(ws_t *w, uint64_t now);
/* A channel frame for one subscription: held while it recovers, else sent. */
void ws_sub_send(ws_t *w, sub_t *sub, frame_t *f);
/* NATS is back: conn's subscriptions ask for what they missed. */
void ws_subs_resync(ws_t *w, conn_t *c);

#endif
