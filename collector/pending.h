/*
 * pending: the answer to <prefix>.pending, a connecting user's stored
 * messages. A PendingRequest goes in, a packed PendingReply comes out:
 * the user's messages with ttl > 0, not acked, not expired, oldest first,
 * at most the request's limit (PENDING_LIMIT when absent or larger), and
 * at most max_bytes of them, cut at the first that does not fit so that
 * what is sent is always an in-order prefix; the oldest one always goes
 * (or a large message would never be replayed). Any thread; blocks on the
 * store.
 */
#ifndef COLLECTOR_PENDING_H
#define COLLECTOR_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define PENDING_LIMIT 1000

typedef enum {
    PENDING_OK = 0,
    PENDING_MALFORMED,  /* not a PendingRequest: the reply carries an error */
    PENDING_STORE_DOWN, /* the store failed: the reply carries an error */
} pending_status_t;

/* Answer one request (req_len bytes of req). Returns the packed
 * PendingReply, malloc'd (the caller frees it), with its length in
 * *reply_len, or NULL when out of memory. *status says what happened and
 * *n_messages how many messages the reply holds. */
uint8_t *pending_answer(store_t *store, const void *req, size_t req_len, uint64_t now_ms,
                        size_t max_bytes, size_t *reply_len, pending_status_t *status,
                        size_t *n_messages);

#endif
