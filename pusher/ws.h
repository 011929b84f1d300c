/*
 * ws: the pusher's WebSocket server (libwebsockets) and everything that
 * runs on its service thread: the handshake (401 before upgrade; then auth
 * through authd, welcome or close 4401/1013), per-connection queues of
 * shared frames, client frames (acks, 64 KiB limit), and the events other
 * threads hand over (handoff.h). One service thread; every lws call is made
 * on it except lws_cancel_service.
 */
#ifndef PUSHER_WS_H
#define PUSHER_WS_H

#include "bus.h"
#include "handoff.h"
#include "routes.h"

#define WS_AUTH_TIMEOUT_S 2
#define WS_REPLAY_TIMEOUT_S 5 /* how long live frames wait for the stored ones */
/* how long a subscription waits for authd (subscription token) or for its
 * history; then refused, or subscribed with recovered false */
#define WS_SUB_TIMEOUT_S 5
#define WS_MAX_FRAME_BYTES (64 * 1024)
#define WS_QUEUE_MAX_FRAMES 4096
#define WS_QUEUE_MAX_BYTES (8 * 1024 * 1024)
#define WS_HANDSHAKES_MAX 1024 /* HTTP upgrades lws parses at once */
#define WS_RX_BUFFER 256       /* lws allocates this per connection: client frames are small */
#define WS_PING_S 25
#define WS_IDLE_S 60
/* a silent connection is closed between WS_IDLE_S and WS_IDLE_S + this */
#define WS_IDLE_SWEEP_S 1
/* At most this share of the connections is pinged per sweep (and at least
 * WS_PINGS_MIN): clients that connected together (a benchmark, a reconnect
 * storm after a deploy) would otherwise all be pinged in the same sweep,
 * 10k pings and pongs at once, stalling deliveries for ~300 ms. */
#define WS_PINGS_SHARE 10 /* 1/10 per sweep: a herd spreads over 10 s */
#define WS_PINGS_MIN 256
/* and a sweep's pings go out a share every WS_PING_TICK_MS over the
 * second up to the next sweep, not at once: 1,000 pings and their pongs in
 * one go held every delivery of the loop thread up for 15-30 ms once a
 * second (docs/BENCHMARKS.md, "Pings spread over the second") */
#define WS_PING_TICK_MS 20
/* a decided close not carried out by then is forced (no close frame) */
#define WS_CLOSE_GRACE_S 10
#define WS_DEADLINE_TICK_MS 100 /* how often the auth and replay deadlines are checked */

typedef struct ws ws_t;

/* Descriptors kept back from lws for the rest of the process (NATS, Redis,
 * the metrics server, logs): a connection accepted on a descriptor at or
 * above the open-file limit minus this is closed at once and counted, so
 * accept does not fail with EMFILE (which lws would retry in a busy loop)
 * as long as the rest of the process stays within these 64. */
#define WS_FD_RESERVE 64

/* Create the lws context listening on host:port (not yet serving), which
 * keeps its connections on descriptors below fd_limit (0: no cap). Returns NULL after logging
 * why (port in use, ...). */
ws_t *ws_new(const char *host, int port, const char *node, unsigned fd_limit);
void ws_free(ws_t *w);

/* The queue other threads use to reach the service thread. */
handoff_t *ws_handoff(ws_t *w);

/* At most this many channel subscriptions per connection (--max-channels;
 * 128 until set). Before ws_run. */
void ws_set_max_channels(ws_t *w, long max_channels);

/* Give the server its NATS and Redis sides (before ws_run). */
void ws_attach(ws_t *w, bus_t *bus, routes_t *routes);

/* Serve until ws_stop; then close every client with 1001 (going away),
 * flush for up to a couple of seconds, and return. Service thread. */
void ws_run(ws_t *w);

/* Any thread: ask ws_run to finish. */
void ws_stop(ws_t *w);

#endif
