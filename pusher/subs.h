/*
 * subs: the pusher's channel subscriptions. Service thread only.
 *
 * A channel held here (chan_t) lists its local subscriptions in an array
 * (a delivery walks it once and queues the one shared frame on each); a
 * connection lists its own in conn_t.subs (at most --max-channels, so a
 * linear scan). A subscription (sub_t) has an id of its own ("s<hex>"),
 * the last token of the reply subjects of the requests made for it
 * (subscription token check, history), so that a late answer for a
 * subscription that is gone finds nothing. Add, remove and lookup are O(1)
 * per subscription, apart from the per-connection scan.
 *
 * A subscription is first `authorizing` (a subscription token is with
 * authd; not on its channel), then joined to its channel: it counts as a
 * subscriber (routes, presence) and receives the channel's frames, held in
 * its replay (replay.h) until it is ready: the channel's route is in Redis
 * and, with `since`, its history arrived.
 */
#ifndef PUSHER_SUBS_H
#define PUSHER_SUBS_H

#include <stddef.h>
#include <stdint.h>

#include "conns.h"
#include "replay.h"

#define SUB_ID_LEN 20

typedef struct chan {
    char *name;
    struct sub **subs; /* joined subscriptions */
    uint32_t n, cap;
    uint8_t routed; /* the node is in the channel's Redis key */
} chan_t;

typedef struct sub {
    char id[SUB_ID_LEN + 1];
    conn_t *conn;
    char *channel;     /* the name (also chan->name once joined) */
    chan_t *chan;      /* NULL while authorizing */
    uint32_t at;       /* index in chan->subs */
    char *since;       /* recovery asked for: history requested once routed */
    uint8_t waiting;   /* 1: joined, not yet answered `subscribed`; 2: catching up after a NATS
                          outage; frames wait in replay meanwhile */
    uint8_t asked;     /* its history was requested */
    uint32_t wait_seq; /* which of its waits for an answer is the current one (ws.c) */
    replay_t replay;
    char last_id[32]; /* the newest channel message queued for the client */
} sub_t;

typedef struct subs subs_t;

subs_t *subs_new(void);
/* Frees every channel and subscription left (their held frames too). */
void subs_free(subs_t *s);

/* A new subscription of conn to channel (copied), not joined; since may be
 * NULL. Also appended to conn->subs. NULL on OOM. */
sub_t *subs_open(subs_t *s, conn_t *conn, const char *channel, const char *since);
/* conn's subscription to channel, or NULL. */
sub_t *subs_find(conn_t *conn, const char *channel);
sub_t *subs_get(subs_t *s, const char *id);

/* Join sub to its channel (made when it is the first). Returns 1 if sub is
 * the channel's first subscriber here, 0 if not, -1 on OOM. */
int subs_join(subs_t *s, sub_t *sub);

/* Remove and free sub (from its channel and its connection). Returns 1 if
 * it was its channel's last subscriber here (then *channel_out gets a
 * malloc'd copy of the name, which the caller frees), else 0. */
int subs_close(subs_t *s, sub_t *sub, char **channel_out);

chan_t *subs_chan(subs_t *s, const char *name);
size_t subs_count(const subs_t *s);    /* subscriptions, joined or not */
size_t subs_channels(const subs_t *s); /* channels with >= 1 joined subscription */

#endif
