/*
 * expiry: a thread that drops expired messages from the store every
 * EXPIRY_INTERVAL_S, EXPIRY_GRACE_MS after they expired (see store_expire),
 * so the store holds only what may still be delivered or deduplicated; and
 * trims each busy channel's history to its newest `channel_history`
 * (store_trim_channels).
 */
#ifndef COLLECTOR_EXPIRY_H
#define COLLECTOR_EXPIRY_H

#include "store.h"

#define EXPIRY_INTERVAL_S 1 /* often, so each run is small: deletes compete with the writer */
/* A message is dropped this long after it expired, not at once: a ttl-0
 * message expires as it is accepted, and its idempotency key must outlive a
 * publisher's retries (the same as the dispatch stream's duplicate window). */
#define EXPIRY_GRACE_MS (120 * 1000)

typedef struct expiry expiry_t;

expiry_t *expiry_start(store_t *store, size_t channel_history);
void expiry_stop(expiry_t *e);

#endif
