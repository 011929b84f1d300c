/*
 * conns: the pusher's connections and who they belong to. Service thread only.
 *
 * Every connection is registered by its id from upgrade to close; once its
 * user is authenticated it also hangs on that user's list and on the list of
 * all authenticated connections (broadcast). Add, remove and lookup are O(1)
 * (hash maps plus intrusive doubly linked lists).
 *
 * Deadlines (auth answer, stored messages) are kept here too, not as lws
 * timers: lws 4.1 keeps its timers in one sorted list and inserts by walking
 * it, which with a timer per connection cost a third of the pusher's CPU in
 * a connect storm. Each wait has a fixed length, so a FIFO per kind is
 * already in deadline order: O(1) to add, remove and expire.
 */
#ifndef PUSHER_CONNS_H
#define PUSHER_CONNS_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "replay.h"

/* How many recent user message ids a connection remembers (as 64-bit
 * hashes, 64 bytes) to drop exact repeats from upstream. Not an order
 * check: with several collectors, ids minted in the same millisecond do
 * not sort by acceptance. */
#define CONN_RECENT 8
#define CONN_ID_LEN 32 /* 12 hex digits, "-", up to 16 more (conns.c) */
#define CONN_USER_MAX 128

typedef enum { CONN_AUTH_PENDING, CONN_AUTHED, CONN_CLOSING } conn_state_t;

/* What a connection waits for, with a deadline (conns_wait). */
typedef enum { CONN_WAIT_NONE = -1, CONN_WAIT_AUTH = 0, CONN_WAIT_REPLAY = 1 } conn_wait_t;
#define CONN_WAIT_KINDS 2

typedef struct conn {
    /* identity, state and lists: conns.c */
    char id[CONN_ID_LEN + 1];
    conn_state_t state;
    struct conn_user *user; /* when AUTHED */
    struct conn *user_prev, *user_next;
    struct conn *all_prev, *all_next;
    /* outgoing frames, a ring of references (conns.c) */
    frame_t **q;
    uint32_t q_head, q_len, q_cap;
    size_t q_bytes;
    /* on the FIFO of one kind of wait, in deadline order (conns.c) */
    struct conn *wait_prev, *wait_next;
    uint64_t wait_deadline_ms;
    int8_t wait_kind;             /* conn_wait_t */
    uint64_t recent[CONN_RECENT]; /* hashes of the last user message ids given (conn_repeat) */
    uint8_t recent_next;

    /* the lws side: ws.c */
    struct lws *wsi;      /* NULL once lws closed it */
    uint32_t last_rx_s;   /* monotonic seconds of the last frame or pong */
    uint32_t last_ping_s; /* when the idle sweep last pinged it */
    uint8_t ping_due;     /* write a ping at the next writeable callback */
    /* a close to perform at the next writeable callback (decided anywhere) */
    uint32_t close_since_s; /* monotonic seconds when it was decided */
    int close_code;
    char close_reason[64];
    /* inbound message being reassembled from fragments */
    char *rx;
    size_t rx_len;

    /* the session: session.c */
    char *token;       /* until the auth request is sent */
    int pending_asked; /* stored messages were requested */
    replay_t replay;   /* until they arrive (replay.active), live frames wait */
    /* the newest message (not broadcast) queued for the client: after a
     * NATS outage, stored messages newer than it are asked for again */
    char last_id[32];
    /* 1: NATS was lost, catch up from last_id once it is back; 2: asked, and
     * asked again while no collector answers (it may reconnect after us) */
    uint8_t resync;

    /* channel subscriptions: channels.c */
    char **grants; /* the token's channels claim (names, or prefixes ending in '*') */
    size_t n_grants;
    struct sub **subs; /* its channel subscriptions (subs.h), in no order */
    uint32_t n_subs, cap_subs;
} conn_t;

typedef struct conn_user {
    char *id;
    conn_t *head; /* this user's authenticated connections */
    uint32_t count;
    int routed; /* its route is written in Redis (routes.h) */
} conn_user_t;

typedef struct conns conns_t;

conns_t *conns_new(void);
/* Frees the registry and every connection still in it (their queued frames too). */
void conns_free(conns_t *c);

/* A new connection with a fresh id, registered, state AUTH_PENDING. NULL on OOM. */
conn_t *conns_open(conns_t *c, struct lws *wsi);
conn_t *conns_get(conns_t *c, const char *id);

/* Attach an AUTH_PENDING connection to user (state becomes AUTHED). Returns
 * 1 if it is the user's first connection here, 0 if not, -1 on OOM. */
int conns_authenticate(conns_t *c, conn_t *conn, const char *user);

/* Unregister and free conn (its queue too). Returns 1 if it was its user's
 * last connection here (then *user_out gets a malloc'd copy of the user id,
 * which the caller frees), else 0. */
int conns_close(conns_t *c, conn_t *conn, char **user_out);

/* Put conn on the FIFO of kind with deadline_ms (monotonic), leaving any
 * other. Every wait of one kind must have the same length, so that
 * deadlines on a FIFO never decrease. */
void conns_wait(conns_t *c, conn_t *conn, conn_wait_t kind, uint64_t deadline_ms);
/* Take conn off its FIFO, if any (conns_close does this too). */
void conns_unwait(conns_t *c, conn_t *conn);
/* The oldest connection of kind whose deadline is at or before now_ms, taken
 * off its FIFO; NULL when none is due. */
conn_t *conns_wait_expired(conns_t *c, conn_wait_t kind, uint64_t now_ms);

conn_user_t *conns_user(conns_t *c, const char *user);
/* Call fn for every registered connection (any state); fn must not close it. */
void conns_each(conns_t *c, void (*fn)(void *arg, conn_t *conn), void *arg);
conn_t *conns_all(conns_t *c);         /* first authenticated connection; follow all_next */
size_t conns_count(const conns_t *c);  /* registered (any state) */
size_t conns_authed(const conns_t *c); /* authenticated */
size_t conns_users(const conns_t *c);

/* Queue a reference to f on conn. Returns 0, or -1 when the queue is over
 * its bound (max_frames or max_bytes): the caller closes the connection. */
int conn_enqueue(conn_t *conn, frame_t *f, uint32_t max_frames, size_t max_bytes);
/* Keep a reference to f aside while the connection is replaying stored
 * messages. Returns 0, or -1 when it would pass max_frames or max_bytes
 * (the caller closes: the same bound as the outgoing queue). */
int conn_hold(conn_t *conn, frame_t *f, uint32_t max_frames, size_t max_bytes);

/* 1 if id is one of the last CONN_RECENT ids passed here for conn (a
 * repeat), else 0, and id is remembered. Service thread. */
int conn_repeat(conn_t *conn, const char *id);
/* Drop every held frame. */
void conn_drop_held(conn_t *conn);

/* The oldest queued frame (still owned by the queue), or NULL. */
frame_t *conn_peek(conn_t *conn);
/* Drop the oldest queued frame. */
void conn_pop(conn_t *conn);

/* Connections remembered for later by id, not by pointer: each may be gone
 * by then, which conns_get tells. */
typedef struct conn_ids {
    char (*id)[CONN_ID_LEN + 1];
    size_t n, cap;
} conn_ids_t;
/* Append conn's id. Returns 0, or -1 without memory (nothing added). */
int conn_ids_add(conn_ids_t *l, const conn_t *conn);
void conn_ids_free(conn_ids_t *l);

#endif
