/*
 * ws: see ws.h; how its files share the work, ws_private.h. This file is
 * the lws plumbing. The event loop: with libev (PUSHER_WITH_LIBEV) lws runs
 * in an epoll loop we own, which ws_serve leaves with ev_break; otherwise
 * in lws's poll() loop, one lws_service call per wake. Both run on the
 * thread in ws_run.
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

_Static_assert(FRAME_PRE >= LWS_PRE, "frame headroom must cover LWS_PRE");

typedef struct ws_pss {
    conn_t *conn;
    char *token; /* between FILTER_PROTOCOL_CONNECTION and ESTABLISHED */
} ws_pss_t;

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

uint32_t ws_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)ts.tv_sec;
}

uint64_t ws_now_ms(void)
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
    size_t n_again = ++w->ticks % WS_RETRY_TICKS == 0 ? w->again.n : 0;
    w->again.n -= n_again;
    for (size_t i = 0; i < n_again; i++) {
        conn_t *c = conns_get(w->conns, w->again.id[i]);
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

static void ws_ping_later(ws_t *w, conn_t *c);

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
        ws_ping_later(w, c);
    }
}

static void ws_ping_now(conn_t *c)
{
    c->ping_due = 1;
    lws_callback_on_writable(c->wsi);
}

/* Queue c's ping for ws_ping_tick; without memory for it, ping at once. */
static void ws_ping_later(ws_t *w, conn_t *c)
{
    if (conn_ids_add(&w->pings, c) != 0)
        ws_ping_now(c);
}

/* Every WS_PING_TICK_MS while pings are queued: ping_per_tick of them. */
static void ws_ping_tick(lws_sorted_usec_list_t *sul)
{
    ws_t *w = lws_container_of(sul, ws_t, ping_tick);
    for (size_t i = 0; i < w->ping_per_tick && w->ping_next < w->pings.n; i++) {
        conn_t *c = conns_get(w->conns, w->pings.id[w->ping_next++]);
        if (c && c->wsi && c->state == CONN_AUTHED && !c->close_code)
            ws_ping_now(c);
    }
    if (w->ping_next < w->pings.n)
        lws_sul_schedule(w->ctx, 0, &w->ping_tick, ws_ping_tick, WS_PING_TICK_MS * LWS_US_PER_MS);
    else
        w->pings.n = w->ping_next = 0;
}

static void ws_idle_sweep(lws_sorted_usec_list_t *sul)
{
    ws_t *w = lws_container_of(sul, ws_t, idle_sweep);
    size_t n = conns_count(w->conns);
    ws_sweep_t sweep = {w, ws_now_s(),
                        n / WS_PINGS_SHARE > WS_PINGS_MIN ? n / WS_PINGS_SHARE : WS_PINGS_MIN};
    if (w->ping_next) { /* what the last sweep queued and is not pinged yet goes first */
        w->pings.n -= w->ping_next;
        memmove(w->pings.id, w->pings.id + w->ping_next, w->pings.n * sizeof *w->pings.id);
        w->ping_next = 0;
    }
    conns_each(w->conns, ws_sweep_one, &sweep);
    if (w->pings.n) {
        /* all of it goes out before the next sweep */
        size_t ticks = WS_IDLE_SWEEP_S * 1000 / WS_PING_TICK_MS - 1;
        w->ping_per_tick = (w->pings.n + ticks - 1) / ticks;
        ws_ping_tick(&w->ping_tick);
    }
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
    w->m_age = metrics_age_histogram(
        "push_pusher_delivery_age_seconds",
        "From the collector's acceptance of a message (its id's millisecond) to its frame "
        "written, or queued, to every local connection it is for");
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
        lws_sul_cancel(&w->ping_tick);
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
    conn_ids_free(&w->again);
    free(w->sub_waits);
    conn_ids_free(&w->pings);
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
void ws_break_if_done(ws_t *w)
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
