/*
 * bus: the pusher's NATS side. Subscriptions (callbacks on nats.c threads)
 * decode what arrives, build frames once, and hand events to the service
 * thread through the handoff queue:
 *   <prefix>.node.<node>           NodeDelivery    -> HANDOFF_DELIVERY
 *   <prefix>.broadcast             NodeDelivery    -> HANDOFF_DELIVERY (broadcast)
 *   <prefix>.node.<node>.presence  NodePresenceRequest -> HANDOFF_PRESENCE
 *   <inbox>.a.<conn>               AuthReply       -> HANDOFF_AUTH
 *   <inbox>.p.<conn>               PendingReply    -> HANDOFF_PENDING
 *   <inbox>.s.<sub>                AuthReply (subscription token) -> HANDOFF_SUBAUTH
 *   <inbox>.h.<sub>                HistoryReply    -> HANDOFF_HISTORY
 * A NodeDelivery whose message has a channel goes to the channel's local
 * subscribers (HANDOFF_DELIVERY with channel set).
 *   the NATS connection lost / back                -> HANDOFF_NATS (ok = back)
 * The publish functions never wait for an answer, so the service thread may
 * call them (nats.c buffers the bytes and its flusher sends them).
 */
#ifndef PUSHER_BUS_H
#define PUSHER_BUS_H

#include <nats/nats.h>

#include "handoff.h"

typedef struct bus bus_t;

bus_t *bus_start(natsConnection *nc, const char *prefix, const char *node, handoff_t *to_service);
/* Unsubscribe (waiting for callbacks in progress), then free. */
void bus_stop(bus_t *b);

/* AuthRequest for conn; the answer comes back as HANDOFF_AUTH. */
int bus_request_auth(bus_t *b, const char *conn, const char *token);
/* PendingRequest for user on behalf of conn, for the messages with an id
 * greater than after (NULL or "": all); answer: HANDOFF_PENDING. */
int bus_request_pending(bus_t *b, const char *conn, const char *user, const char *after);
/* AuthRequest of a subscription token for channel, on behalf of the
 * subscription sub (subs.h); the answer: HANDOFF_SUBAUTH. */
int bus_request_subscription(bus_t *b, const char *sub, const char *token, const char *channel);
/* HistoryRequest for channel after since, for subscription sub; the
 * answer (or "no responders"): HANDOFF_HISTORY. */
int bus_request_history(bus_t *b, const char *sub, const char *channel, const char *since);
/* Ack of ids by user on conn. */
int bus_ack(bus_t *b, const char *user, const char *conn, char *const *ids, size_t n_ids);
/* NodePresenceReply on reply. */
int bus_presence_reply(bus_t *b, const char *reply, unsigned connections);

#endif
