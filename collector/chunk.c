/* chunk: see chunk.h. */
#include "chunk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push/v1/push.pb-c.h"

uint8_t *chunk_pack(const store_msg_t *m, char *const *to, size_t n_to, size_t *len)
{
    Push__V1__Message msg = PUSH__V1__MESSAGE__INIT;
    msg.id = (char *)m->id;
    msg.topic = (char *)m->topic;
    msg.has_data = 1;
    msg.data.data = (uint8_t *)m->data;
    msg.data.len = m->data_len;
    msg.content_type = (char *)m->content_type;
    msg.has_accepted_ms = 1;
    msg.accepted_ms = m->accepted_ms;
    msg.has_ttl = 1;
    msg.ttl = m->ttl;
    msg.channel = (char *)m->channel;
    Push__V1__Dispatch d = PUSH__V1__DISPATCH__INIT;
    d.message = &msg;
    d.to = (char **)to;
    d.n_to = n_to;
    d.has_broadcast = 1;
    d.broadcast = m->broadcast;
    *len = push__v1__dispatch__get_packed_size(&d);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        push__v1__dispatch__pack(&d, buf);
    return buf;
}

int chunk_split(chunk_parts_t *p, const store_msg_t *m, char *const *to, size_t n_to)
{
    memset(p, 0, sizeof *p);
    p->broadcast = m->broadcast || m->channel;
    p->whole_shard = m->channel ? (int)jsx_shard_of(m->channel) : 0;
    if (p->broadcast || n_to == 0)
        return 0;
    if (!(p->to = malloc(n_to * sizeof *p->to)))
        return -1;
    size_t count[JSX_SHARDS] = {0};
    unsigned char *shard = malloc(n_to);
    if (!shard) {
        free(p->to);
        p->to = NULL;
        return -1;
    }
    for (size_t i = 0; i < n_to; i++)
        count[shard[i] = (unsigned char)jsx_shard_of(to[i])]++;
    for (unsigned k = 0; k < JSX_SHARDS; k++)
        p->start[k + 1] = p->start[k] + count[k];
    size_t fill[JSX_SHARDS];
    memcpy(fill, p->start, sizeof fill);
    for (size_t i = 0; i < n_to; i++)
        p->to[fill[shard[i]]++] = to[i];
    free(shard);
    return 0;
}

void chunk_parts_free(chunk_parts_t *p)
{
    free(p->to);
    p->to = NULL;
}

int chunk_each_part(const chunk_parts_t *p, chunk_part_fn fn, void *arg)
{
    if (p->broadcast)
        return fn(arg, (unsigned)p->whole_shard, NULL, 0);
    for (unsigned k = 0; k < JSX_SHARDS; k++) {
        size_t n = p->start[k + 1] - p->start[k];
        int rc = n ? fn(arg, k, p->to + p->start[k], n) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

size_t chunk_count_parts(const chunk_parts_t *p)
{
    if (p->broadcast)
        return 1;
    size_t n = 0;
    for (unsigned k = 0; k < JSX_SHARDS; k++)
        n += p->start[k + 1] != p->start[k];
    return n;
}

int chunk_is_full_for(const chunk_t *c, size_t part_len)
{
    return c->n && c->len + part_len + CHUNK_PART_OVERHEAD > CHUNK_MAX_BYTES;
}

int chunk_add(chunk_t *c, const char *id, const uint8_t *part, size_t len)
{
    if (c->len + len + CHUNK_PART_OVERHEAD > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + len + CHUNK_PART_OVERHEAD)
            cap *= 2;
        uint8_t *nb = realloc(c->buf, cap);
        if (!nb)
            return -1;
        c->buf = nb;
        c->cap = cap;
    }
    if (c->n + 1 >= c->cap_ids) { /* room for a NULL after the last */
        size_t cap = c->cap_ids ? c->cap_ids * 2 : 16;
        char **ni = realloc(c->ids, cap * sizeof *ni);
        if (!ni)
            return -1;
        c->ids = ni;
        c->cap_ids = cap;
    }
    if (!(c->ids[c->n] = strdup(id)))
        return -1;
    c->ids[++c->n] = NULL;
    c->buf[c->len++] = (4 << 3) | 2; /* Dispatch.batch, length-delimited */
    for (size_t v = len;; v >>= 7) {
        c->buf[c->len++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        if (v <= 0x7f)
            break;
    }
    memcpy(c->buf + c->len, part, len);
    c->len += len;
    return 0;
}

void chunk_msg_id(const chunk_t *c, unsigned shard, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s.%u.%zu", c->ids[0], shard, c->n);
}

void chunk_reset(chunk_t *c, int free_ids)
{
    if (free_ids)
        for (size_t i = 0; i < c->n; i++)
            free(c->ids[i]);
    free(c->buf);
    if (free_ids)
        free(c->ids);
    memset(c, 0, sizeof *c);
}
