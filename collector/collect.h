/*
 * collect: the collector's NATS side. Subscribes, as queue group
 * "collector", to <prefix>.collect (publishes; see accept.h),
 * <prefix>.pending (a connecting user's stored messages; see pending.h), <prefix>.ack
 * (client acks relayed by pushers) and <prefix>.history (a channel's kept
 * messages for a recovering subscriber; see history.h). Callbacks run on nats.c's threads.
 */
#ifndef COLLECTOR_COLLECT_H
#define COLLECTOR_COLLECT_H

#include <nats/nats.h>

#include "accept.h"
#include "store.h"
#include "writer.h"

/* A pending reply (pending.h) holds at most this much, or half the
 * server's max_payload when that is larger, except that the oldest message
 * always goes: one stored publish (at most 1 MiB) then fits a server
 * max_payload of 2 MiB or more. Under NATS's default 1 MiB, a stored
 * message near 1 MiB cannot be replayed; run nats-server with
 * max_payload >= 2 MiB. */
#define COLLECT_PENDING_MAX_BYTES (512 * 1024)

typedef struct collect collect_t;

/* Publishes that pass validation go to writer (group commit); the rest are
 * answered here. */
collect_t *collect_start(natsConnection *nc, const char *prefix, accept_t *accept, writer_t *writer,
                         store_t *store, size_t channel_history);

/* Drain the subscriptions (requests already received are answered), then free. */
void collect_stop(collect_t *c);

#endif
