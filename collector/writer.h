/*
 * writer: group commit for publishes that arrive over NATS or HTTP. The
 * NATS callback (or the HTTP handler) decodes and validates (accept_decode)
 * and hands the request to the writer; the writer's thread takes everything queued (up to
 * WRITER_BATCH), stores it in one transaction, answers every publisher
 * (only now: the reply still means "durably stored"), and passes the
 * stored batch to its hand-over thread, which hands it to the dispatcher
 * with asynchronous JetStream publishes, waits for their acks and marks the
 * messages dispatched while the writer stores the next batch. Batches are
 * handed over in the order they were stored. Acceptance order is the order
 * of writer_submit calls.
 */
#ifndef COLLECTOR_WRITER_H
#define COLLECTOR_WRITER_H

#include <nats/nats.h>

#include "accept.h"
#include "handover.h"
#include "ingest.h"
#include "store.h"

#define WRITER_BATCH 4096
/* A batch starts at least this long after the one before it started (a
 * publish that finds no batch begun in that time is stored at once). Each
 * batch costs an fsync and, downstream, a round: a stream message per
 * shard, a dispatcher batch, a Redis round trip and a NodeDelivery. At
 * 10,000 messages/s the writer took ~900 batches of ~11 a second, the two
 * cores 81-89% busy; with the gap ~460 of ~22, 68-75% busy, and a shorter
 * tail, though a message may wait up to the gap (docs/BENCHMARKS.md, "A gap
 * between the writer's batches"). */
#define WRITER_GAP_US 2000
/* ...unless this many publishes wait already: such a batch is worth its
 * cost, and a publisher that waits for its reply before the next (request
 * and reply, a bounded number in flight) would only wait longer */
#define WRITER_GAP_ENOUGH 32
#define WRITER_HO_DEPTH 4 /* stored batches waiting for the hand-over, at most */

typedef struct writer writer_t;

writer_t *writer_start(natsConnection *nc, store_t *store, handover_t *handover, accept_t *accept);

/* Store every request submitted so far, then stop and free. */
void writer_stop(writer_t *w);

/* Takes ownership of *req (emptied). reply may be NULL (no answer wanted).
 * Mints the message id now, so ids follow submission order. Any thread. */
void writer_submit(writer_t *w, ingest_request_t *req, const char *reply);

/* Like writer_submit, then wait until the request is stored (or failed)
 * and fill *res with the outcome. Takes ownership of *req. Never call it
 * from the writer's own thread. */
void writer_submit_wait(writer_t *w, ingest_request_t *req, accept_result_t *res);

#endif
