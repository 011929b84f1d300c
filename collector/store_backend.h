/*
 * store_backend: what a store backend provides (store.c picks one by URI).
 * Each backend is a struct of functions over its own opaque handle; the
 * semantics are those documented in store.h.
 */
#ifndef COLLECTOR_STORE_BACKEND_H
#define COLLECTOR_STORE_BACKEND_H

#include "store.h"

typedef struct store_ops {
    const char *name;
    int (*put_batch)(void *h, store_put_item_t *items, size_t n);
    int (*mark_dispatched_many)(void *h, char *const *ids, size_t n);
    int (*pending)(void *h, const char *user, const char *after, uint64_t now_ms, size_t limit,
                   store_msg_fn fn, void *arg); /* after: never NULL */
    int (*ack)(void *h, const char *user, char *const *ids, size_t n_ids);
    int (*ack_batch)(void *h, const store_ack_t *acks, size_t n); /* NULL: ack, one by one */
    int (*undispatched)(void *h, uint64_t before_ms, size_t limit, store_msg_fn fn, void *arg);
    int (*expire)(void *h, uint64_t now_ms);
    int (*index)(void *h, uint64_t now_ms); /* NULL: nothing to index */
    /* delete channel's ttl > 0 messages older than its newest keep, once
     * handed over, raising its floor; returns how many, or STORE_ERR */
    int (*trim_channel)(void *h, const char *channel, size_t keep);
    int (*history)(void *h, const char *channel, const char *since, uint64_t now_ms, size_t keep,
                   store_msg_fn fn, void *arg, int *recovered); /* since: never NULL */
    int (*healthy)(void *h);
    void (*close)(void *h);
} store_ops_t;

/* A message copied out of a backend, so that callbacks (store_msg_fn) run
 * after the backend released its lock or client (a callback may call back
 * into the store: the hand-over marks what it sent) and never see pointers
 * into a statement or a document. m's pointers point at the copies below,
 * which the row owns. */
typedef struct store_row {
    store_msg_t m;
    char *topic, *content_type, *channel;
    unsigned char *data;
    char **to; /* the recipients, when the read has them */
    size_t n_to, cap_to;
} store_row_t;

typedef struct store_rows {
    store_row_t *rows;
    size_t n, cap;
} store_rows_t;

/* A zeroed row at the end of rs, already counted in rs->n (so that
 * store_rows_free frees it half-filled), or NULL when out of memory. */
store_row_t *store_rows_push(store_rows_t *rs);
/* Append a copy of user to r->to. Returns 0, or -1 when out of memory. */
int store_row_add_user(store_row_t *r, const char *user);
/* Free every row and what it owns; rs is empty after. */
void store_rows_free(store_rows_t *rs);

typedef struct store_sqlite store_sqlite_t;
store_sqlite_t *store_sqlite_open(const char *path, char *err, size_t err_size);
extern const store_ops_t store_sqlite_ops;

/* uri: the whole mongodb:// or mongodb+srv:// URI. Does not connect: opens
 * without a server (healthy() is 0 until one answers). */
typedef struct store_mongo store_mongo_t;
store_mongo_t *store_mongo_open(const char *uri, char *err, size_t err_size);
extern const store_ops_t store_mongo_ops;

#endif
