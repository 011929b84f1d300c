/* store: see store.h. Picks the backend by URI scheme and forwards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"

struct store {
    const store_ops_t *ops;
    void *h;
};

int store_uri_known(const char *uri)
{
    return (strncmp(uri, "sqlite:", 7) == 0 && uri[7]) || strncmp(uri, "mongodb://", 10) == 0 ||
           strncmp(uri, "mongodb+srv://", 14) == 0;
}

store_t *store_open(const char *uri, char *err, size_t err_size)
{
    const store_ops_t *ops = NULL;
    void *h = NULL;
    if (strncmp(uri, "sqlite:", 7) == 0) {
        if (!uri[7]) {
            snprintf(err, err_size, "store '%s' names no file (sqlite:PATH)", uri);
            return NULL;
        }
        ops = &store_sqlite_ops;
        h = store_sqlite_open(uri + 7, err, err_size);
    } else if (strncmp(uri, "mongodb://", 10) == 0 || strncmp(uri, "mongodb+srv://", 14) == 0) {
        ops = &store_mongo_ops;
        h = store_mongo_open(uri, err, err_size);
    } else {
        snprintf(err, err_size, "store '%s' is neither sqlite:PATH nor mongodb://...", uri);
        return NULL;
    }
    if (!h)
        return NULL;
    store_t *s = malloc(sizeof *s);
    if (!s) {
        ops->close(h);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    s->ops = ops;
    s->h = h;
    return s;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    s->ops->close(s->h);
    free(s);
}

int store_put(store_t *s, const store_msg_t *m, char *const *to, size_t n_to, const char *idem,
              char existing_id[IDS_LEN + 1])
{
    return s->ops->put(s->h, m, to, n_to, idem, existing_id);
}

int store_put_batch(store_t *s, store_put_item_t *items, size_t n)
{
    return s->ops->put_batch(s->h, items, n);
}

int store_mark_dispatched_many(store_t *s, char *const *ids, size_t n)
{
    return s->ops->mark_dispatched_many(s->h, ids, n);
}

int store_pending(store_t *s, const char *user, const char *after, uint64_t now_ms, size_t limit,
                  store_msg_fn fn, void *arg)
{
    return s->ops->pending(s->h, user, after ? after : "", now_ms, limit, fn, arg);
}

int store_ack(store_t *s, const char *user, char *const *ids, size_t n_ids)
{
    return s->ops->ack(s->h, user, ids, n_ids);
}

int store_undispatched(store_t *s, uint64_t before_ms, size_t limit, store_msg_fn fn, void *arg)
{
    return s->ops->undispatched(s->h, before_ms, limit, fn, arg);
}

int store_mark_dispatched(store_t *s, const char *id)
{
    char *ids[] = {(char *)id};
    return s->ops->mark_dispatched_many(s->h, ids, 1);
}
int store_expire(store_t *s, uint64_t now_ms)
{
    return s->ops->expire(s->h, now_ms);
}
int store_history(store_t *s, const char *channel, const char *since, uint64_t now_ms, size_t keep,
                  store_msg_fn fn, void *arg, int *recovered)
{
    return s->ops->history(s->h, channel, since ? since : "", now_ms, keep, fn, arg, recovered);
}
int store_healthy(store_t *s)
{
    return s->ops->healthy(s->h);
}
