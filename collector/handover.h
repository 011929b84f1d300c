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
 *
 * Pipeline: with one collector (sole_publisher: a sqlite: store), rounds do
 * not wait for the acks of the rounds before them (up to HANDOVER_IN_FLIGHT
 * are answered at once). What keeps the order then is a chain: each publish
 * of a round carries the stream message id of the one published before it
 * (ExpectLastMsgId), and the stream refuses it unless that is its last
 * message. One lost publish (a stream leader that failed over, a server
 * gone) makes the stream refuse every later publish of the chain; the retry
 * pass, once every round in flight is answered, sends them all again in
 * order, and the next round starts a new chain. A refusal whose last
 * message is not ours means another publisher on the stream: for
 * HANDOVER_UNCHAINED_MS the hand-over goes unchained, one round at a time,
 * as it always does with several collectors (a mongodb:// store).
 */
#ifndef COLLECTOR_HANDOVER_H
#define COLLECTOR_HANDOVER_H

#include <nats/nats.h>

#include "store.h"

#define HANDOVER_RETRY_MS 2000
#define HANDOVER_ACK_WAIT_MS 5000 /* a round's publishes are answered by then, or count as lost */
#define HANDOVER_IN_FLIGHT 4      /* chained rounds waiting for their acks at once, at most */
#define HANDOVER_UNCHAINED_MS                                                                      \
    60000 /* unchained this long after the stream showed another's message */
/* Asynchronous publishes that may wait for acks: a round is at most 4
 * writer batches of 4,096 messages (writer.h), and in the worst case (every
 * part over CHUNK_MAX_BYTES, chunk.h) each part is a stream message of its
 * own, 16 per message; HANDOVER_IN_FLIGHT rounds, and one more for a retry
 * pass. */
#define HANDOVER_MAX_PENDING (4 * 4096 * 16 * (HANDOVER_IN_FLIGHT + 1))

typedef struct handover handover_t;

/* stream_replicas: replicas of the dispatch stream, 1..JSX_MAX_REPLICAS
 * (jsx_ensure_dispatch_stream; --stream-replicas). sole_publisher: this
 * collector is the only one (a sqlite: store), so rounds may go chained and
 * pipelined (see "Pipeline" above). */
handover_t *handover_start(natsConnection *nc, const char *prefix, int stream_replicas,
                           int sole_publisher, store_t *store);
/* Stops the retry loop and waits for every publish still out to be answered
 * (acked, refused or timed out), then frees h. */
void handover_stop(handover_t *h);

/* Hand over n stored messages at once, in id order: asynchronous
 * publishes. Pipelined, it returns once they are out (waiting only while
 * HANDOVER_IN_FLIGHT rounds wait for acks); otherwise once the stream
 * answered them (at most a few seconds). The acked ones are marked
 * dispatched by a later handover_flush_marks, the others stay for the
 * retry loop. While the retry loop is catching up it publishes nothing (the
 * messages stay stored, unmarked). One caller at a time (the writer's
 * hand-over thread). */
void handover_send_batch(handover_t *h, const store_msg_t *const *ms, char **const *tos,
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
