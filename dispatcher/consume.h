/*
 * consume: the dispatcher's loop, on a thread of its own. Pulls batches
 * from the durable JetStream consumer "dispatcher" on the dispatch stream,
 * resolves every recipient's live nodes in one pipelined Redis round trip
 * per batch, publishes one NodeDelivery per (message, node) to
 * <prefix>.node.<node> (a broadcast to <prefix>.broadcast), flushes, and
 * only then acks the batch: a dispatcher killed midway leaves its batch to
 * be redelivered. While Redis is unreachable it holds the batch (telling
 * JetStream it is still in progress) rather than skip or reorder it.
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

/* 1 while Redis answered the last lookup and the consumer is subscribed. */
int consume_ready(consume_t *c);

#endif
