/*
 * routes_lookup: which live nodes hold each of a set of users, from the
 * route sorted sets of lib/redisx.h (and which nodes hold a subscriber of a
 * channel, lib/chan.h), in one pipelined round trip. Owns a
 * blocking hiredis connection that it re-opens after an error; use one per
 * thread. May block: never call it from an event loop.
 */
#ifndef DISPATCHER_ROUTES_LOOKUP_H
#define DISPATCHER_ROUTES_LOOKUP_H

#include <stddef.h>

#include "redisx.h"

typedef struct routes_lookup routes_lookup_t;

/* url is copied. Connects lazily. */
routes_lookup_t *routes_lookup_new(const redisx_url_t *url, const char *prefix);
void routes_lookup_free(routes_lookup_t *r);

/* Called for each (user index, node id) pair found, in user order. */
typedef void (*routes_found_fn)(void *arg, size_t user_index, const char *node);

/* Look up users[0..n); when is_channel is not NULL, names[i] with
 * is_channel[i] set is a channel, looked up in its channel route key
 * (lib/chan.h) rather than a user's. Returns 0, or -1 when Redis is unreachable (logged
 * once per outage; nothing was reported through fn). After a failure the
 * connection is re-opened with backoff (250 ms doubling to 5 s): calls made
 * before then return -1 at once. */
int routes_lookup_nodes(routes_lookup_t *r, char *const *users, const unsigned char *is_channel,
                        size_t n, long long now_s, routes_found_fn fn, void *arg);

/* 1 while the last attempt reached Redis. */
int routes_lookup_up(routes_lookup_t *r);

#endif
