/*
 * redisx: Redis URLs and connections (hiredis), plus the route key layout
 * shared by the pusher (writer) and the dispatcher (reader).
 *
 * Route layout (documented in docs/ARCHITECTURE.md):
 *   key    <prefix>:route:<user id>      a sorted set
 *   member <node id>                     a pusher node holding >= 1 connection of the user
 *   score  unix time in seconds until which the entry counts (refreshed by that node)
 * A reader counts only members whose score is >= now, so a node that died
 * stops counting after --route-ttl even while the user's other nodes keep
 * the key alive. The key itself gets an EXPIRE of the TTL so dead users vanish.
 */
#ifndef PUSH_REDISX_H
#define PUSH_REDISX_H

#include <hiredis/hiredis.h>
#include <stddef.h>

typedef struct redisx_url {
    char host[256];
    int port;
    int db;
    char password[256]; /* "" when none */
} redisx_url_t;

/* Parse redis://[:password@]host[:port][/db]. Returns 0, or -1 if malformed. */
int redisx_parse_url(const char *url, redisx_url_t *out);

/* Connect (blocking, with timeout_ms for connect and each command), then AUTH
 * and SELECT as the URL says. Returns a context the caller frees with
 * redisFree, or NULL after logging why. May block: call off any event loop. */
redisContext *redisx_connect(const redisx_url_t *url, int timeout_ms);

/* Write the route key of user into buf: "<prefix>:route:<user>". Returns its length. */
size_t redisx_route_key(char *buf, size_t size, const char *prefix, const char *user);

#endif
