/*
 * presence: answers <prefix>.presence (queue group "dispatcher"). A JSON
 * request {"user":"u1"} is answered {"user","online","connections","nodes"}:
 * the user's live nodes come from Redis, and each of them is asked on
 * <prefix>.node.<node>.presence how many connections it holds (all nodes at
 * once, one deadline). A bad request is counted and answered {"error"}.
 * Runs on a nats.c subscription thread with a Redis connection of its own.
 */
#ifndef DISPATCHER_PRESENCE_H
#define DISPATCHER_PRESENCE_H

#include <nats/nats.h>

#include "redisx.h"

#define PRESENCE_NODE_TIMEOUT_MS 500 /* for all nodes together: they are asked at once */
#define PRESENCE_MAX_USER 128

typedef struct presence presence_t;

presence_t *presence_start(natsConnection *nc, const char *prefix, const redisx_url_t *redis);
void presence_stop(presence_t *p);

#endif
