/*
 * routes: keeps this node's entries in the Redis route sets (layout in
 * lib/redisx.h) on a thread of its own with a blocking hiredis connection.
 *
 * The service thread says when a user's first connection here is welcomed
 * (and a channel's first local subscriber joined: the same, in the channel
 * key)
 * (routes_add) and when the last one closes (routes_remove); the thread
 * writes ZADD/EXPIRE or ZREM, refreshes every user it holds every ttl/3
 * seconds with pipelined commands, and, when Redis comes back after an
 * outage, writes every user again. After a user's route is first written it
 * tells the service thread (HANDOFF_ROUTED) so that stored messages are
 * fetched only once the dispatcher can find the user: no message falls in
 * between.
 */
#ifndef PUSHER_ROUTES_H
#define PUSHER_ROUTES_H

#include "handoff.h"
#include "redisx.h"

typedef struct routes routes_t;

routes_t *routes_start(const redisx_url_t *url, const char *prefix, const char *node, long ttl_s,
                       handoff_t *to_service);
/* Remove every entry of this node (pipelined ZREM), then stop. */
void routes_stop(routes_t *r);

/* Service thread (or any): queue a change. */
void routes_add(routes_t *r, const char *user);
void routes_remove(routes_t *r, const char *user);

/* The same for a channel (its first local subscriber joined, its last
 * left): the channel key of lib/chan.h. Once written, HANDOFF_ROUTED
 * announces it with user = ROUTES_CHANNEL_MARK followed by the channel. */
#define ROUTES_CHANNEL_MARK '\x01'
void routes_add_channel(routes_t *r, const char *channel);
void routes_remove_channel(routes_t *r, const char *channel);

/* 1 while Redis answers. */
int routes_up(routes_t *r);

#endif
