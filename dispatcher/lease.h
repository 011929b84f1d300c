/*
 * lease: which dispatcher owns which shard of the dispatch stream (jsx.h),
 * kept in Redis so that one user's messages are dispatched by one
 * dispatcher at a time, in order.
 *
 * Keys (documented in docs/ARCHITECTURE.md):
 *   <prefix>:dispatch:shard:<i>   string, the owner's id, with a PX expiry of
 *                                 LEASE_MS that only the owner renews
 *   <prefix>:dispatchers          sorted set, member = a live dispatcher's id,
 *                                 score = Redis time in ms until which it counts
 *   <prefix>:dispatchers:ranked   the same, of the dispatchers that place
 *                                 shards by rank (this version and later)
 * While every live dispatcher is in the ranked set, shard i belongs to the
 * one whose rank (its place among the live ones, ordered by id) is
 * lease_target(i, live): the busy shards (jsx_shard_used) are dealt out
 * first, so three dispatchers carry 2, 1 and 1 of the 4 busy shards rather
 * than 2, 2 and 0. Each gives back what is not its own and takes its own
 * once free. While an older dispatcher is live (a rolling upgrade), all
 * share as the older ones do: each takes up to ceil(shards / live) and gives
 * back what is over that share. Either way work spreads when one joins and
 * moves when one leaves or dies (after LEASE_MS).
 *
 * One owner thread; blocking hiredis calls with a short timeout; the
 * connection is re-opened on the next call after an error.
 */
#ifndef DISPATCHER_LEASE_H
#define DISPATCHER_LEASE_H

#include "redisx.h"

#define LEASE_MS 5000

typedef struct lease lease_t;

/* owner: this dispatcher's id (copied). Connects lazily. */
lease_t *lease_new(const redisx_url_t *url, const char *prefix, const char *owner);
void lease_free(lease_t *l);

/* Say this dispatcher is alive for LEASE_MS. Returns how many dispatchers
 * are alive (>= 1), or -1 when Redis is unreachable. *rank: this one's rank
 * among them when every live one places shards by rank, else -1. */
int lease_heartbeat(lease_t *l, int *rank);

/* The rank (0 .. live-1) of the dispatcher that shard belongs to while live
 * dispatchers place shards by rank: the busy shards in turn, then the
 * others, continuing the turn; between any two dispatchers their busy
 * shards, and all their shards, differ by one at most. */
int lease_target(unsigned shard, int live);

/* Take shard if nobody holds it: 1 taken, 0 held by another, -1 Redis error. */
int lease_take(lease_t *l, unsigned shard);

/* Extend our lease on shard by LEASE_MS: 1 done, 0 it is not ours any more
 * (expired or taken), -1 Redis error. */
int lease_renew(lease_t *l, unsigned shard);

/* Give shard back if it is still ours. 0, or -1 on a Redis error. */
int lease_release(lease_t *l, unsigned shard);

/* Leave the set of live dispatchers (at shutdown). */
void lease_leave(lease_t *l);

#endif
