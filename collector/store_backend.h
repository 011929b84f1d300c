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
    int (*undispatched)(void *h, uint64_t before_ms, size_t limit, store_msg_fn fn, void *arg);
    int (*expire)(void *h, uint64_t now_ms);
    /* delete channel's ttl > 0 messages older than its newest keep, once
     * handed over, raising its floor; returns how many, or STORE_ERR */
    int (*trim_channel)(void *h, const char *channel, size_t keep);
    int (*history)(void *h, const char *channel, const char *since, uint64_t now_ms, size_t keep,
                   store_msg_fn fn, void *arg, int *recovered); /* since: never NULL */
    int (*healthy)(void *h);
    void (*close)(void *h);
} store_ops_t;

typedef struct store_sqlite store_sqlite_t;
store_sqlite_t *store_sqlite_open(const char *path, char *err, size_t err_size);
extern const store_ops_t store_sqlite_ops;

/* uri: the whole mongodb:// or mongodb+srv:// URI. Does not connect: opens
 * without a server (healthy() is 0 until one answers). */
typedef struct store_mongo store_mongo_t;
store_mongo_t *store_mongo_open(const char *uri, char *err, size_t err_size);
extern const store_ops_t store_mongo_ops;

#endif
