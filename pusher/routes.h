/*
 * routes: keeps this node's entries in the Redis route sets (layout in
 * lib/redisx.h) on a thread of its own with a blocking hiredis connection.
 *
 * The service thread says when a user's first connection here is welcomed
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

/* 1 while Redis answers. */
int routes_up(routes_t *r);

#endif
