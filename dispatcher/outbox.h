/*
 * outbox: the NodeDeliveries of one consumed batch, gathered per node, so
 * that a node gets one NATS message for the whole batch instead of one per
 * message: NodeDelivery{batch: [...]} with its entries in the order they
 * were added (stream order), or the plain NodeDelivery when there is one.
 * A node's pending entries are sent early when the next one would take
 * them over max_bytes; an entry that is over max_bytes alone goes alone.
 *
 * Entries point at the caller's Message and users: they must stay valid
 * until outbox_flush returns. Pure (the caller publishes); one thread.
 */
#ifndef DISPATCHER_OUTBOX_H
#define DISPATCHER_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "push/v1/push.pb-c.h"

#define OUTBOX_MAX_BYTES (256 * 1024)

typedef struct outbox outbox_t;

/* Send buf (a packed NodeDelivery of n_entries deliveries) to node.
 * Returns 0, or -1 when it could not be published. */
typedef int (*outbox_send_fn)(void *arg, const char *node, const uint8_t *buf, size_t len,
                              size_t n_entries);

outbox_t *outbox_new(size_t max_bytes, outbox_send_fn send, void *arg);
/* Frees entries not flushed without sending them. Safe with NULL. */
void outbox_free(outbox_t *o);

/* Deliver m to users (n of them) on node. May send node's earlier entries
 * first (max_bytes). Returns 0, or -1 on allocation or send failure. */
int outbox_add(outbox_t *o, const char *node, Push__V1__Message *m, char **users, size_t n);

/* Send every node's pending entries, nodes in the order first added.
 * Returns 0, or -1 if any send failed (all are tried). */
int outbox_flush(outbox_t *o);

#endif
