/*
 * handover: gives stored messages to the dispatcher through the JetStream
 * stream, one part per shard of the recipients (<prefix>.dispatch.<shard>,
 * lib/jsx.h), and marks a message dispatched once the stream acked every
 * part. A thread of its own retries, every HANDOVER_RETRY_MS while behind,
 * every stored message that was not marked (the collector died between storing and
 * handing over, or NATS or the stream was down; after a failed pass it
 * creates the stream again): nothing accepted is lost between collector and
 * dispatcher. The parts one round has for a shard travel together, as one
 * stream message (Dispatch.batch, up to CHUNK_MAX_BYTES; the cutting and
 * the stream message id are chunk.h's): the stream, its acks and the
 * dispatcher's acks then cost one message per round and shard, not one per
 * message. A retry that cuts the same chunk inside the stream's duplicate
 * window is stored once (one cut differently may be stored twice:
 * at-least-once).
 *
 * Order: a user's messages reach the stream in id order, also across
 * failures. The two senders (handover_send_batch and the retry loop) never
 * publish at the same time, and once something was not acked, rounds
 * publish nothing until the retry loop has sent every unmarked message,
 * oldest first (so a newer message cannot overtake one that failed). The
 * same holds at start, for what an earlier run left unmarked. A round
 * publishes only on the NATS connection it began on (natsx_epoch): one that
 * vanished with a broken connection is not overtaken by a later one of the
 * same round through the new connection. Back on NATS (natsx_watch, which
 * the collector gives to the hand-over), the retry loop catches up at once.
 */
#ifndef COLLECTOR_HANDOVER_H
#define COLLECTOR_HANDOVER_H

#include <nats/nats.h>

#include "store.h"

#define HANDOVER_RETRY_MS 2000
#define HANDOVER_ACK_WAIT_MS 5000 /* a round waits this long for the stream's acks */
/* Asynchronous publishes a round may have waiting for acks: a round is at
 * most 4 writer batches of 4,096 messages (writer.h), and in the worst case
 * (every part over CHUNK_MAX_BYTES, chunk.h) each part is a stream message of
 * its own, 16 per message; twice that for what a timed-out round left. */
#define HANDOVER_MAX_PENDING (4 * 4096 * 16 * 2)

typedef struct handover handover_t;

/* stream_replicas: replicas of the dispatch stream, 1..JSX_MAX_REPLICAS
 * (jsx_ensure_dispatch_stream; --stream-replicas). */
handover_t *handover_start(natsConnection *nc, const char *prefix, int stream_replicas,
                           store_t *store);
void handover_stop(handover_t *h);

/* Hand over n stored messages at once, in id order: asynchronous
 * publishes, one wait for all the stream's acks (at most a few seconds);
 * the acked ones are marked dispatched by the next handover_flush_marks,
 * the others stay for the retry loop. While the retry loop is catching up it
 * publishes nothing and returns 0 (the messages stay stored, unmarked).
 * Returns how many were acked. One caller at a time (the writer's
 * hand-over thread). */
int handover_send_batch(handover_t *h, const store_msg_t *const *ms, char **const *tos,
                        const size_t *n_tos, size_t n);

/* Mark dispatched, in one store transaction, the messages rounds found
 * acked since the last call. Rounds leave the marks to the writer's thread
 * (after each stored batch, under the store's lock it holds anyway in turn)
 * and to the retry loop (before each pass), so a round never waits for the
 * store. Any thread. */
void handover_flush_marks(handover_t *h);

/* Stored messages were not given to handover_send_batch (out of memory
 * on their way): the retry loop sends every unmarked message, oldest
 * first, and rounds publish nothing until it has. Any thread. */
void handover_fell_behind(handover_t *h);

#endif
