/*
 * handoff: how other threads give work to the lws service thread. A thread
 * builds an event, pushes it (any thread; a mutex guards the list) and the
 * queue calls its wake function (lws_cancel_service), so the service thread
 * takes every pending event in LWS_CALLBACK_EVENT_WAIT_CANCELLED, in the
 * order they were pushed.
 */
#ifndef PUSHER_HANDOFF_H
#define PUSHER_HANDOFF_H

#include <stddef.h>

#include "conns.h"
#include "frame.h"

typedef enum {
    HANDOFF_AUTH,     /* authd answered for conn: ok + user (and in users, the token's channels
                         claim), or reason */
    HANDOFF_DELIVERY, /* frames[0] for users (or every connection when broadcast, or every
                         subscriber of channel) */
    HANDOFF_PENDING,  /* the collector's stored messages for conn, oldest first; ok 0: no collector
                         answered */
    HANDOFF_PRESENCE, /* how many connections does user (or subscribers does channel) have here?
                         answer on reply */
    HANDOFF_ROUTED,   /* the route of user is in Redis now (user "\x01<channel>": a channel's) */
    HANDOFF_NATS,     /* the NATS connection was lost (ok 0) or is back (ok 1) */
    HANDOFF_SUBAUTH,  /* authd answered for the subscription whose id is in conn: ok, or reason */
    HANDOFF_HISTORY,  /* the history for the subscription in conn: frames, ok = recovered;
                         reason set: no answer */
} handoff_kind_t;

typedef struct handoff_ev {
    struct handoff_ev *next;
    handoff_kind_t kind;
    char conn[CONN_ID_LEN + 1];
    int ok;
    char *user;   /* malloc'd */
    char *reason; /* malloc'd */
    char *reply;  /* malloc'd NATS reply subject */
    frame_t **frames;
    size_t n_frames;
    char **users;
    size_t n_users;
    int broadcast;
    char *channel; /* malloc'd */
} handoff_ev_t;

typedef struct handoff handoff_t;

handoff_t *handoff_new(void (*wake)(void *arg), void *arg);
/* Frees the queue and any events still in it. */
void handoff_free(handoff_t *h);

/* An empty event of kind (calloc'd). */
handoff_ev_t *handoff_ev_new(handoff_kind_t kind);
/* Frees ev, its strings, its users and its frame references. */
void handoff_ev_free(handoff_ev_t *ev);

/* Takes ownership of ev and wakes the service thread. Any thread. */
void handoff_push(handoff_t *h, handoff_ev_t *ev);
/* The same for a list first..last (linked through ->next, in order): one
 * lock and one wake for all of them. first NULL: nothing. */
void handoff_push_list(handoff_t *h, handoff_ev_t *first, handoff_ev_t *last);

/* Every event pushed so far, oldest first (a list through ->next), or NULL.
 * Service thread. */
handoff_ev_t *handoff_take(handoff_t *h);

#endif
