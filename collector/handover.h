/*
 * handover: gives stored messages to the dispatcher through the JetStream
 * stream, one part per shard of the recipients (<prefix>.dispatch.<shard>,
 * lib/jsx.h), and marks a message dispatched once the stream acked every
 * part. A thread of its own retries, every HANDOVER_RETRY_MS, every stored
 * message that was not marked (the collector died between storing and
 * handing over, or NATS or the stream was down; after a failed pass it
 * creates the stream again): nothing accepted is lost between collector and
 * dispatcher. The JetStream message id of a part is "<id>.<shard>", so a
 * retry inside the stream's duplicate window is stored once.
 */
#ifndef COLLECTOR_HANDOVER_H
#define COLLECTOR_HANDOVER_H

#include <nats/nats.h>

#include "store.h"

#define HANDOVER_RETRY_MS 2000

typedef struct handover handover_t;

handover_t *handover_start(natsConnection *nc, const char *prefix, store_t *store);
void handover_stop(handover_t *h);

/* Publish m to the stream and wait for its ack, then mark it dispatched.
 * Returns 0, or -1 (logged, counted; the retry thread will try again).
 * Any thread; blocks for at most a few seconds. */
int handover_send(handover_t *h, const store_msg_t *m, char *const *to, size_t n_to);

/* Hand over n stored messages at once: asynchronous publishes, one wait for
 * all the stream's acks (at most a few seconds), then the acked ones are
 * marked dispatched in one transaction; the others stay for the retry
 * loop. Returns how many were acked. One caller at a time (the writer's
 * hand-over thread). */
int handover_send_batch(handover_t *h, const store_msg_t *const *ms, char **const *tos,
                        const size_t *n_tos, size_t n);

/* The retry loop leaves alone messages accepted at or after accepted_ms
 * (0: no such bound): the writer's hand-over thread has them queued or in
 * flight, however long the stream takes to ack. Any thread. */
void handover_hold_retries_from(handover_t *h, uint64_t accepted_ms);

#endif
