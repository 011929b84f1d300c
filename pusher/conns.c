/* conns: see conns.h. A connection id is a random prefix drawn once per
 * conns_t (48 bits) and a counter, both in hex: unique for the life of the
 * process, cheap to make, and unique across the cluster's pushers (and their
 * restarts) with odds of a clash below 1e-8 for a thousand of them, so logs
 * from several nodes can be joined on it. */
#include "conns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "strmap.h"

struct conns {
    strmap_t *by_id;
    strmap_t *by_user;
    conn_t *all;
    conn_t *wait_head[CONN_WAIT_KINDS], *wait_tail[CONN_WAIT_KINDS];
    size_t authed;
    uint64_t id_prefix; /* 48 random bits */
    uint64_t next_id;
};

conns_t *conns_new(void)
{
    conns_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (getrandom(&c->id_prefix, sizeof c->id_prefix, 0) != sizeof c->id_prefix) {
        /* no entropy source: time and pid still differ between pushers */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        c->id_prefix =
            (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid();
    }
    c->id_prefix &= 0xffffffffffffull;
    c->by_id = strmap_new();
    c->by_user = strmap_new();
    if (!c->by_id || !c->by_user) {
        conns_free(c);
        return NULL;
    }
    return c;
}

static void conn_destroy(conn_t *conn)
{
    replay_deinit(&conn->replay);
    for (size_t i = 0; i < conn->n_grants; i++)
        free(conn->grants[i]);
    free(conn->grants);
    free(conn->subs); /* the subscriptions themselves are subs.c's, gone before */
    while (conn->q_len)
        conn_pop(conn);
    free(conn->q);
    free(conn->token);
    free(conn->rx);
    free(conn);
}

static void conns_free_conn(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    conn_destroy(value);
}

static void conns_free_user(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    conn_user_t *u = value;
    free(u->id);
    free(u);
}

void conns_free(conns_t *c)
{
    if (!c)
        return;
    if (c->by_id) {
        strmap_each(c->by_id, conns_free_conn, NULL);
        strmap_free(c->by_id);
    }
    if (c->by_user) {
        strmap_each(c->by_user, conns_free_user, NULL);
        strmap_free(c->by_user);
    }
    free(c);
}

conn_t *conns_open(conns_t *c, struct lws *wsi)
{
    conn_t *conn = calloc(1, sizeof *conn);
    if (!conn)
        return NULL;
    conn->wsi = wsi;
    conn->state = CONN_AUTH_PENDING;
    conn->wait_kind = CONN_WAIT_NONE;
    snprintf(conn->id, sizeof conn->id, "%012llx-%llx", (unsigned long long)c->id_prefix,
             (unsigned long long)++c->next_id);
    if (strmap_put(c->by_id, conn->id, conn) != 0) {
        free(conn);
        return NULL;
    }
    return conn;
}

conn_t *conns_get(conns_t *c, const char *id)
{
    return strmap_get(c->by_id, id);
}

int conns_authenticate(conns_t *c, conn_t *conn, const char *user)
{
    conn_user_t *u = strmap_get(c->by_user, user);
    int first = 0;
    if (!u) {
        u = calloc(1, sizeof *u);
        if (!u || !(u->id = strdup(user)) || strmap_put(c->by_user, user, u) != 0) {
            if (u)
                free(u->id);
            free(u);
            return -1;
        }
        first = 1;
    }
    conn->user = u;
    conn->user_prev = NULL;
    conn->user_next = u->head;
    if (u->head)
        u->head->user_prev = conn;
    u->head = conn;
    u->count++;
    conn->all_prev = NULL;
    conn->all_next = c->all;
    if (c->all)
        c->all->all_prev = conn;
    c->all = conn;
    c->authed++;
    conn->state = CONN_AUTHED;
    return first;
}

void conns_unwait(conns_t *c, conn_t *conn)
{
    if (conn->wait_kind == CONN_WAIT_NONE)
        return;
    int k = conn->wait_kind;
    if (conn->wait_prev)
        conn->wait_prev->wait_next = conn->wait_next;
    else
        c->wait_head[k] = conn->wait_next;
    if (conn->wait_next)
        conn->wait_next->wait_prev = conn->wait_prev;
    else
        c->wait_tail[k] = conn->wait_prev;
    conn->wait_prev = conn->wait_next = NULL;
    conn->wait_kind = CONN_WAIT_NONE;
}

void conns_wait(conns_t *c, conn_t *conn, conn_wait_t kind, uint64_t deadline_ms)
{
    conns_unwait(c, conn);
    conn->wait_kind = (int8_t)kind;
    conn->wait_deadline_ms = deadline_ms;
    conn->wait_next = NULL;
    conn->wait_prev = c->wait_tail[kind];
    if (c->wait_tail[kind])
        c->wait_tail[kind]->wait_next = conn;
    else
        c->wait_head[kind] = conn;
    c->wait_tail[kind] = conn;
}

conn_t *conns_wait_expired(conns_t *c, conn_wait_t kind, uint64_t now_ms)
{
    conn_t *conn = c->wait_head[kind];
    if (!conn || conn->wait_deadline_ms > now_ms)
        return NULL;
    conns_unwait(c, conn);
    return conn;
}

int conns_close(conns_t *c, conn_t *conn, char **user_out)
{
    int last = 0;
    conns_unwait(c, conn);
    strmap_remove(c->by_id, conn->id);
    conn_user_t *u = conn->user;
    if (u) {
        if (conn->user_prev)
            conn->user_prev->user_next = conn->user_next;
        else
            u->head = conn->user_next;
        if (conn->user_next)
            conn->user_next->user_prev = conn->user_prev;
        if (conn->all_prev)
            conn->all_prev->all_next = conn->all_next;
        else
            c->all = conn->all_next;
        if (conn->all_next)
            conn->all_next->all_prev = conn->all_prev;
        c->authed--;
        if (--u->count == 0) {
            last = 1;
            strmap_remove(c->by_user, u->id);
            if (user_out)
                *user_out = u->id;
            else
                free(u->id);
            free(u);
        }
    }
    conn_destroy(conn);
    return last;
}

conn_user_t *conns_user(conns_t *c, const char *user)
{
    return strmap_get(c->by_user, user);
}

typedef struct conns_each_ctx {
    void (*fn)(void *arg, conn_t *conn);
    void *arg;
} conns_each_ctx_t;

static void conns_each_one(void *arg, const char *key, void *value)
{
    (void)key;
    conns_each_ctx_t *ctx = arg;
    ctx->fn(ctx->arg, value);
}

void conns_each(conns_t *c, void (*fn)(void *arg, conn_t *conn), void *arg)
{
    conns_each_ctx_t ctx = {fn, arg};
    strmap_each(c->by_id, conns_each_one, &ctx);
}
conn_t *conns_all(conns_t *c)
{
    return c->all;
}
size_t conns_count(const conns_t *c)
{
    return strmap_size(c->by_id);
}
size_t conns_authed(const conns_t *c)
{
    return c->authed;
}
size_t conns_users(const conns_t *c)
{
    return strmap_size(c->by_user);
}

int conn_enqueue(conn_t *conn, frame_t *f, uint32_t max_frames, size_t max_bytes)
{
    if (conn->q_len >= max_frames || conn->q_bytes + f->len > max_bytes)
        return -1;
    if (conn->q_len == conn->q_cap) {
        uint32_t cap = conn->q_cap ? conn->q_cap * 2 : 4;
        frame_t **q = malloc(cap * sizeof *q);
        if (!q)
            return -1;
        for (uint32_t i = 0; i < conn->q_len; i++)
            q[i] = conn->q[(conn->q_head + i) % conn->q_cap];
        free(conn->q);
        conn->q = q;
        conn->q_cap = cap;
        conn->q_head = 0;
    }
    conn->q[(conn->q_head + conn->q_len) % conn->q_cap] = frame_ref(f);
    conn->q_len++;
    conn->q_bytes += f->len;
    return 0;
}

int conn_hold(conn_t *conn, frame_t *f, uint32_t max_frames, size_t max_bytes)
{
    return replay_hold(&conn->replay, f, max_frames, max_bytes);
}

void conn_drop_held(conn_t *conn)
{
    replay_drop_held(&conn->replay);
}

frame_t *conn_peek(conn_t *conn)
{
    return conn->q_len ? conn->q[conn->q_head] : NULL;
}

void conn_pop(conn_t *conn)
{
    if (!conn->q_len)
        return;
    frame_t *f = conn->q[conn->q_head];
    conn->q_head = (conn->q_head + 1) % conn->q_cap;
    conn->q_len--;
    conn->q_bytes -= f->len;
    frame_unref(f);
    if (conn->q_len == 0 && conn->q_cap > 16) {
        free(conn->q); /* give back what a burst grew */
        conn->q = NULL;
        conn->q_cap = conn->q_head = 0;
    }
}

int conn_repeat(conn_t *conn, const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a; 0 marks an empty slot */
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h |= 1;
    for (unsigned i = 0; i < CONN_RECENT; i++)
        if (conn->recent[i] == h)
            return 1;
    conn->recent[conn->recent_next] = h;
    conn->recent_next = (uint8_t)((conn->recent_next + 1) % CONN_RECENT);
    return 0;
}

int conn_ids_add(conn_ids_t *l, const conn_t *conn)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char(*grown)[CONN_ID_LEN + 1] = realloc(l->id, cap * sizeof *grown);
        if (!grown)
            return -1;
        l->id = grown;
        l->cap = cap;
    }
    memcpy(l->id[l->n++], conn->id, sizeof conn->id);
    return 0;
}

void conn_ids_free(conn_ids_t *l)
{
    free(l->id);
    *l = (conn_ids_t){0};
}
