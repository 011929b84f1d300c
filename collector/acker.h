/*
 * acker: client acks (Ack messages from the pushers) recorded in batches.
 * The NATS callback queues each decoded Ack and returns; one thread takes
 * what is queued, up to ACKER_BATCH messages, and records them with one
 * store_ack_batch (SQLite: one transaction per database for the batch).
 * At 10,000 acks/s one transaction per Ack message held the store's lock
 * as often as the writer wanted it. A full queue (ACKER_MAX_QUEUED) makes
 * the callback wait: NATS holds the rest.
 */
#ifndef COLLECTOR_ACKER_H
#define COLLECTOR_ACKER_H

#include "push/v1/push.pb-c.h"
#include "store.h"

#define ACKER_BATCH 4096
#define ACKER_MAX_QUEUED 65536

typedef struct acker acker_t;

/* Returns NULL (logged) when its thread cannot start. */
acker_t *acker_start(store_t *store);
/* Takes ack (freed with push__v1__ack__free_unpacked once recorded). */
void acker_submit(acker_t *a, Push__V1__Ack *ack);
/* Records what was submitted, then frees. */
void acker_stop(acker_t *a);

#endif
