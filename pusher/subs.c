/* subs: see subs.h. */
#include "subs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

struct subs {
    strmap_t *by_id;   /* sub id -> sub_t */
    strmap_t *by_name; /* channel -> chan_t */
    unsigned long long next_id;
};

subs_t *subs_new(void)
{
    subs_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->by_id = strmap_new();
    s->by_name = strmap_new();
    if (!s->by_id || !s->by_name) {
        subs_free(s);
        return NULL;
    }
    return s;
}

static void subs_free_sub(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    sub_t *sub = value;
    replay_deinit(&sub->replay);
    free(sub->channel);
    free(sub->since);
    free(sub);
}

static void subs_free_chan(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    chan_t *c = value;
    free(c->name);
    free(c->subs);
    free(c);
}

void subs_free(subs_t *s)
{
    if (!s)
        return;
    if (s->by_id)
        strmap_each(s->by_id, subs_free_sub, NULL);
    if (s->by_name)
        strmap_each(s->by_name, subs_free_chan, NULL);
    strmap_free(s->by_id);
    strmap_free(s->by_name);
    free(s);
}

sub_t *subs_open(subs_t *s, conn_t *conn, const char *channel, const char *since)
{
    sub_t *sub = calloc(1, sizeof *sub);
    if (!sub)
        return NULL;
    snprintf(sub->id, sizeof sub->id, "s%llx", ++s->next_id);
    sub->conn = conn;
    sub->channel = strdup(channel);
    sub->since = since ? strdup(since) : NULL;
    if (conn->n_subs == conn->cap_subs) {
        uint32_t cap = conn->cap_subs ? conn->cap_subs * 2 : 4;
        sub_t **ns = realloc(conn->subs, cap * sizeof *ns);
        if (!ns)
            goto fail;
        conn->subs = ns;
        conn->cap_subs = cap;
    }
    if (!sub->channel || (since && !sub->since) || strmap_put(s->by_id, sub->id, sub) != 0)
        goto fail;
    conn->subs[conn->n_subs++] = sub;
    return sub;
fail:
    free(sub->channel);
    free(sub->since);
    free(sub);
    return NULL;
}

sub_t *subs_find(conn_t *conn, const char *channel)
{
    for (uint32_t i = 0; i < conn->n_subs; i++)
        if (strcmp(conn->subs[i]->channel, channel) == 0)
            return conn->subs[i];
    return NULL;
}

sub_t *subs_get(subs_t *s, const char *id)
{
    return strmap_get(s->by_id, id);
}

chan_t *subs_chan(subs_t *s, const char *name)
{
    return strmap_get(s->by_name, name);
}

int subs_join(subs_t *s, sub_t *sub)
{
    chan_t *c = strmap_get(s->by_name, sub->channel);
    int first = 0;
    if (!c) {
        if (!(c = calloc(1, sizeof *c)) || !(c->name = strdup(sub->channel)) ||
            strmap_put(s->by_name, c->name, c) != 0) {
            if (c)
                free(c->name);
            free(c);
            return -1;
        }
    }
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2 : 4;
        sub_t **ns = realloc(c->subs, cap * sizeof *ns);
        if (!ns) {
            if (!c->n) {
                strmap_remove(s->by_name, c->name);
                subs_free_chan(NULL, NULL, c);
            }
            return -1;
        }
        c->subs = ns;
        c->cap = cap;
    }
    first = c->n == 0;
    sub->at = c->n;
    c->subs[c->n++] = sub;
    sub->chan = c;
    return first;
}

int subs_close(subs_t *s, sub_t *sub, char **channel_out)
{
    int last = 0;
    chan_t *c = sub->chan;
    if (c) {
        /* swap with the last: O(1) */
        c->subs[sub->at] = c->subs[--c->n];
        c->subs[sub->at]->at = sub->at;
        if (c->n == 0) {
            last = 1;
            if (channel_out)
                *channel_out = strdup(c->name);
            strmap_remove(s->by_name, c->name);
            subs_free_chan(NULL, NULL, c);
        }
    }
    conn_t *conn = sub->conn;
    for (uint32_t i = 0; i < conn->n_subs; i++)
        if (conn->subs[i] == sub) {
            conn->subs[i] = conn->subs[--conn->n_subs];
            break;
        }
    strmap_remove(s->by_id, sub->id);
    subs_free_sub(NULL, NULL, sub);
    return last;
}

size_t subs_count(const subs_t *s)
{
    return strmap_size(s->by_id);
}

size_t subs_channels(const subs_t *s)
{
    return strmap_size(s->by_name);
}
