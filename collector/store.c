/* store: see store.h. Picks the backend by URI scheme and forwards. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"
#include "strmap.h"

struct store {
    const store_ops_t *ops;
    void *h;
    /* channel -> kept (ttl > 0) messages stored since its last trim, as a
     * count in the pointer: which channels store_trim_channels visits */
    pthread_mutex_t trim_lock;
    strmap_t *trim_counts;
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
    pthread_mutex_init(&s->trim_lock, NULL);
    if (!(s->trim_counts = strmap_new())) {
        ops->close(h);
        pthread_mutex_destroy(&s->trim_lock);
        free(s);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    return s;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    s->ops->close(s->h);
    strmap_free(s->trim_counts);
    pthread_mutex_destroy(&s->trim_lock);
    free(s);
}

/* One item through store_put_batch, as store_mark_dispatched is over
 * store_mark_dispatched_many: one write path for every backend. */
int store_put(store_t *s, const store_msg_t *m, char *const *to, size_t n_to, const char *idem,
              char existing_id[IDS_LEN + 1])
{
    store_put_item_t item = {.m = m, .to = to, .n_to = n_to, .idem = idem};
    if (store_put_batch(s, &item, 1) != STORE_OK)
        return STORE_ERR;
    if (item.result == STORE_DUPLICATE)
        memcpy(existing_id, item.existing_id, IDS_LEN + 1);
    return item.result;
}

/* Count the kept channel messages a put stored (store_trim_channels). */
static void store_count_channels(store_t *s, const store_put_item_t *items, size_t n)
{
    pthread_mutex_lock(&s->trim_lock);
    for (size_t i = 0; i < n; i++) {
        const store_msg_t *m = items[i].m;
        if (!m->channel || !m->ttl || items[i].result != STORE_OK)
            continue;
        uintptr_t c = (uintptr_t)strmap_get(s->trim_counts, m->channel);
        strmap_put(s->trim_counts, m->channel, (void *)(c + 1));
    }
    pthread_mutex_unlock(&s->trim_lock);
}

int store_put_batch(store_t *s, store_put_item_t *items, size_t n)
{
    int rc = s->ops->put_batch(s->h, items, n);
    if (rc == STORE_OK)
        store_count_channels(s, items, n);
    return rc;
}

typedef struct store_due {
    size_t every;
    char **names;
    size_t n, cap;
} store_due_t;

static void store_due_one(void *arg, const char *key, void *value)
{
    store_due_t *d = arg;
    if ((uintptr_t)value < d->every)
        return;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        char **nn = realloc(d->names, cap * sizeof *nn);
        if (!nn)
            return;
        d->names = nn;
        d->cap = cap;
    }
    if ((d->names[d->n] = strdup(key)))
        d->n++;
}

int store_trim_channels(store_t *s, size_t keep)
{
    store_due_t due = {.every = STORE_TRIM_EVERY(keep)};
    pthread_mutex_lock(&s->trim_lock);
    strmap_each(s->trim_counts, store_due_one, &due);
    for (size_t i = 0; i < due.n; i++)
        strmap_remove(s->trim_counts, due.names[i]);
    pthread_mutex_unlock(&s->trim_lock);
    int total = 0, failed = 0;
    for (size_t i = 0; i < due.n; i++) {
        int n = failed ? STORE_ERR : s->ops->trim_channel(s->h, due.names[i], keep);
        if (n < 0) {
            failed = 1; /* counted again, so it is tried at the next pass */
            pthread_mutex_lock(&s->trim_lock);
            strmap_put(s->trim_counts, due.names[i], (void *)(uintptr_t)due.every);
            pthread_mutex_unlock(&s->trim_lock);
        } else {
            total += n;
        }
        free(due.names[i]);
    }
    free(due.names);
    return failed && !total ? STORE_ERR : total;
}

/* --- copied-out rows, shared by the backends (store_backend.h) --- */

store_row_t *store_rows_push(store_rows_t *rs)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 16;
        store_row_t *nr = realloc(rs->rows, cap * sizeof *nr);
        if (!nr)
            return NULL;
        rs->rows = nr;
        rs->cap = cap;
    }
    store_row_t *r = &rs->rows[rs->n++];
    memset(r, 0, sizeof *r);
    return r;
}

int store_row_add_user(store_row_t *r, const char *user)
{
    if (r->n_to == r->cap_to) {
        size_t cap = r->cap_to ? r->cap_to * 2 : 16;
        char **nt = realloc(r->to, cap * sizeof *nt);
        if (!nt)
            return -1;
        r->to = nt;
        r->cap_to = cap;
    }
    if (!(r->to[r->n_to] = strdup(user)))
        return -1;
    r->n_to++;
    return 0;
}

void store_rows_free(store_rows_t *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        store_row_t *r = &rs->rows[i];
        free(r->topic);
        free(r->content_type);
        free(r->channel);
        free(r->data);
        for (size_t k = 0; k < r->n_to; k++)
            free(r->to[k]);
        free(r->to);
    }
    free(rs->rows);
    memset(rs, 0, sizeof *rs);
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

int store_ack_batch(store_t *s, const store_ack_t *acks, size_t n)
{
    if (s->ops->ack_batch)
        return s->ops->ack_batch(s->h, acks, n);
    int rc = STORE_OK;
    for (size_t i = 0; i < n; i++)
        if (s->ops->ack(s->h, acks[i].user, acks[i].ids, acks[i].n_ids) != STORE_OK)
            rc = STORE_ERR;
    return rc;
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

int store_index(store_t *s, uint64_t now_ms)
{
    return s->ops->index ? s->ops->index(s->h, now_ms) : 0;
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
