/*
 * history: the answer to <prefix>.history, a channel's kept messages for a
 * subscriber recovering with `since`. A HistoryRequest goes in, a packed
 * HistoryReply comes out: store_history's messages (after since, oldest
 * first, at most `keep` = --channel-history) and its recovered flag. When
 * they are over max_bytes the oldest are left out, so what is sent is
 * always the newest, gap-free run up to now, and recovered is then false.
 * Any thread; blocks on the store.
 */
#ifndef COLLECTOR_HISTORY_H
#define COLLECTOR_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define HISTORY_DEFAULT_KEEP 1000

typedef enum {
    HISTORY_OK = 0,
    HISTORY_MALFORMED,  /* not a HistoryRequest, or a bad channel name: the reply has an error */
    HISTORY_STORE_DOWN, /* the store failed: the reply carries an error */
} history_status_t;

/* Answer one request. Returns the packed HistoryReply, malloc'd (caller
 * frees), its length in *reply_len, or NULL when out of memory. */
uint8_t *history_answer(store_t *store, const void *req, size_t req_len, uint64_t now_ms,
                        size_t keep, size_t max_bytes, size_t *reply_len, history_status_t *status,
                        size_t *n_messages);

#endif
