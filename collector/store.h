/*
 * store: where accepted messages live until every recipient acked them or
 * they expired. One small interface, several backends behind the same
 * calls (store_sqlite.c, store_mongo.c).
 *
 * What is kept: per message its id (sorts by acceptance time), topic, data,
 * content type, acceptance time, ttl, expiry, idempotency key, whether it was
 * handed to the dispatcher; per recipient (user, message id, acked).
 *
 * Thread-safety: every call may come from any thread; backends serialise
 * internally. Every call may block on disk or network: never call from an
 * event loop.
 */
#ifndef COLLECTOR_STORE_H
#define COLLECTOR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "ids.h"

typedef struct store store_t;

typedef struct store_msg {
    char id[IDS_LEN + 1];
    const char *topic;
    const unsigned char *data;
    size_t data_len;
    const char *content_type;
    uint64_t accepted_ms;
    uint32_t ttl; /* seconds; 0 = live only (kept until handed over, never pending) */
    int broadcast;
    const char *channel; /* a channel message (no recipients), else NULL */
} store_msg_t;

enum { STORE_OK = 0, STORE_DUPLICATE = 1, STORE_ERR = -1 };

/* Is uri one of the forms store_open knows ("sqlite:PATH" with a PATH,
 * "mongodb://..." or "mongodb+srv://...")? A --store value that is not, is
 * a bad flag value (exit 2); one that is but does not open, a failure. */
int store_uri_known(const char *uri);

/* Open by URI ("sqlite:PATH", "mongodb://HOST[:PORT][,...]/[DB][?OPTIONS]"
 * or "mongodb+srv://..."; DB defaults to "push"). Returns NULL with err
 * filled when the URI is unknown or the store cannot be opened. A MongoDB
 * store opens without its server: it is not healthy, and every call fails
 * at once with STORE_ERR, until the server answers (checked every second). */
store_t *store_open(const char *uri, char *err, size_t err_size);
void store_close(store_t *s);

/* Keep m and its recipients durably, in one transaction. With an idem key
 * seen before, stores nothing, copies the first message's id into
 * existing_id and returns STORE_DUPLICATE. */
int store_put(store_t *s, const store_msg_t *m, char *const *to, size_t n_to, const char *idem,
              char existing_id[IDS_LEN + 1]);

/* One publish in a batch (store_put_batch): in m, to, n_to, idem; out
 * result (STORE_OK or STORE_DUPLICATE) and, for a duplicate, existing_id. */
typedef struct store_put_item {
    const store_msg_t *m;
    char *const *to;
    size_t n_to;
    const char *idem;
    int result;
    char existing_id[IDS_LEN + 1];
} store_put_item_t;

/* Keep every item in ONE transaction (group commit): all or nothing.
 * Returns STORE_OK (each item's result set) or STORE_ERR (nothing kept).
 * MongoDB (no multi-document transactions, see store_mongo.c): on STORE_ERR
 * some items may have been kept; they are then handed over by the retry
 * loop like any stored message (at-least-once). */
int store_put_batch(store_t *s, store_put_item_t *items, size_t n);

/* Mark many messages handed over, in one transaction. */
int store_mark_dispatched_many(store_t *s, char *const *ids, size_t n);

/* Called once per message; pointers are valid only during the call. The
 * backend copies the rows out and releases its lock first, so fn may call
 * the store again (the hand-over marks each message it re-sends). */
typedef void (*store_msg_fn)(void *arg, const store_msg_t *m, char *const *to, size_t n_to);

/* The user's messages with ttl > 0, not acked, not expired at now_ms, with
 * an id greater than after (NULL or "": any), oldest first, at most limit.
 * fn gets to = NULL. Returns the count or STORE_ERR. */
int store_pending(store_t *s, const char *user, const char *after, uint64_t now_ms, size_t limit,
                  store_msg_fn fn, void *arg);

/* Mark (user, id) acked for each id. Unknown ids are ignored. */
int store_ack(store_t *s, const char *user, char *const *ids, size_t n_ids);

/* The acks of one Ack message (store_ack_batch). */
typedef struct store_ack {
    const char *user;
    char *const *ids;
    size_t n_ids;
} store_ack_t;

/* store_ack for each of acks[0..n), together (SQLite: one transaction for
 * all). Returns STORE_OK or STORE_ERR (then some may have been kept). */
int store_ack_batch(store_t *s, const store_ack_t *acks, size_t n);

/* Messages accepted before before_ms and not yet handed to the dispatcher,
 * oldest first, with their recipients. Returns the count or STORE_ERR. */
int store_undispatched(store_t *s, uint64_t before_ms, size_t limit, store_msg_fn fn, void *arg);
/* The same for one message (store_mark_dispatched_many). */
int store_mark_dispatched(store_t *s, const char *id);

/* Drop messages (and their recipients) that expired and were handed over.
 * Returns how many messages were dropped, or STORE_ERR. */
int store_expire(store_t *s, uint64_t now_ms);

/* Backend upkeep, from the expiry thread before store_expire: SQLite moves
 * recipients of messages accepted more than a few seconds before now_ms
 * into its per-user index (store_sqlite.c, "Recipients"); MongoDB has
 * nothing to do. Returns how many messages, or STORE_ERR. */
int store_index(store_t *s, uint64_t now_ms);

/* A channel's history: its messages with ttl > 0 not expired at now_ms,
 * the newest `keep` of them (--channel-history), with an id greater than
 * since (NULL or "": every kept one), oldest first; fn gets to = NULL.
 * *recovered is 1 when nothing of the channel newer than since is missing
 * from the answer (with since NULL or "": 1), and 0 when some message after
 * since is no longer kept: expired (and perhaps deleted), or older than
 * the newest `keep`. Returns the count or STORE_ERR. */
int store_history(store_t *s, const char *channel, const char *since, uint64_t now_ms, size_t keep,
                  store_msg_fn fn, void *arg, int *recovered);

/* Delete what is beyond the newest `keep` kept messages (ttl > 0) of each
 * channel that got at least STORE_TRIM_EVERY(keep) of them since its last
 * trim by this process, once handed over; raises the channel's floor (so
 * store_history still says they are gone). Messages past the bound are
 * never served anyway; this only bounds the storage. Returns how many
 * were deleted, or STORE_ERR. The expiry thread calls it every second. */
#define STORE_TRIM_EVERY(keep) ((keep) / 10 > 0 ? (keep) / 10 : 1)
int store_trim_channels(store_t *s, size_t keep);

/* 1 while the store answers (MongoDB: the last ping, at most ~1 s old, got
 * an answer and the indexes are in place). Does not block. */
int store_healthy(store_t *s);

#endif
