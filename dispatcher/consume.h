/*
 * consume: the dispatcher's work on the dispatch stream.
 *
 * The stream has JSX_SHARDS shards by recipient (lib/jsx.h). A manager
 * thread keeps this dispatcher's leases in Redis (lease.h): it takes the
 * shards that are its own (by rank among the live dispatchers, the busy ones
 * dealt out first), renews them every second, gives back what is no longer
 * its own when another dispatcher joins, and takes over the shards of one
 * that died once their leases ran out. Each owned shard has a worker
 * thread that takes batches from the shard's durable push consumer
 * "dispatch-<i>" (the first message as soon as it is stored, then whatever
 * else is waiting, up to CONSUME_BATCH), resolves every recipient's live nodes in one pipelined
 * Redis round trip per batch, publishes one NodeDelivery per (message,
 * node) to <prefix>.node.<node> (a broadcast to <prefix>.broadcast), and
 * only then acks the batch, on the same connection (so the server sees the
 * deliveries before the acks).
 *
 * Order: one shard has one owner at a time and its worker handles batches
 * one after the other, so a user's messages leave in stream order. When a
 * shard changes hands, or a batch could not be completed, the consumer is
 * re-created to start right after its ack floor, so what was taken but not
 * acked comes again first instead of after the ack wait behind newer
 * messages (at-least-once: such messages may arrive twice).
 */
#ifndef DISPATCHER_CONSUME_H
#define DISPATCHER_CONSUME_H

#include <nats/nats.h>

#include "redisx.h"

#define CONSUME_BATCH 256
#define CONSUME_ACK_WAIT_S 10

typedef struct consume consume_t;

consume_t *consume_start(natsConnection *nc, const char *prefix, const redisx_url_t *redis);

/* Finish the batch in hand, then stop and free. */
void consume_stop(consume_t *c);

/* 1 while the stream exists and Redis answered the last heartbeat. */
int consume_ready(consume_t *c);

#endif
