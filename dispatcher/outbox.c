/* outbox: see outbox.h. */
#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#include "strmap.h"

typedef struct outbox_node {
    char *node;
    Push__V1__NodeDelivery *entries;
    size_t n, cap;
    size_t bytes; /* packed size of the entries as batch fields */
} outbox_node_t;

struct outbox {
    size_t max_bytes;
    outbox_send_fn send;
    void *arg;
    strmap_t *index; /* node -> position in nodes, plus one */
    outbox_node_t *nodes;
    size_t n_nodes, cap_nodes;
};

outbox_t *outbox_new(size_t max_bytes, outbox_send_fn send, void *arg)
{
    outbox_t *o = calloc(1, sizeof *o);
    if (!o || !(o->index = strmap_new())) {
        free(o);
        return NULL;
    }
    o->max_bytes = max_bytes;
    o->send = send;
    o->arg = arg;
    return o;
}

void outbox_free(outbox_t *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n_nodes; i++) {
        free(o->nodes[i].node);
        free(o->nodes[i].entries);
    }
    free(o->nodes);
    strmap_free(o->index);
    free(o);
}

/* The bytes an entry adds to a NodeDelivery's batch: the entry, its field
 * tag and its length prefix (at most 1 + 5). */
static size_t outbox_entry_bytes(const Push__V1__NodeDelivery *e)
{
    return protobuf_c_message_get_packed_size(&e->base) + 6;
}

static int outbox_send_node(outbox_t *o, outbox_node_t *on)
{
    if (on->n == 0)
        return 0;
    Push__V1__NodeDelivery outer = PUSH__V1__NODE_DELIVERY__INIT;
    Push__V1__NodeDelivery **ptrs = NULL;
    const Push__V1__NodeDelivery *msg = &on->entries[0];
    if (on->n > 1) {
        if (!(ptrs = malloc(on->n * sizeof *ptrs)))
            return -1;
        for (size_t i = 0; i < on->n; i++)
            ptrs[i] = &on->entries[i];
        outer.batch = ptrs;
        outer.n_batch = on->n;
        msg = &outer;
    }
    size_t len = protobuf_c_message_get_packed_size(&msg->base);
    uint8_t *buf = malloc(len ? len : 1);
    int rc = -1;
    if (buf) {
        protobuf_c_message_pack(&msg->base, buf);
        rc = o->send(o->arg, on->node, buf, len, on->n);
    }
    free(buf);
    free(ptrs);
    on->n = 0;
    on->bytes = 0;
    return rc;
}

int outbox_add(outbox_t *o, const char *node, Push__V1__Message *m, char **users, size_t n)
{
    size_t pos = (size_t)(uintptr_t)strmap_get(o->index, node);
    if (pos == 0) {
        if (o->n_nodes == o->cap_nodes) {
            size_t cap = o->cap_nodes ? o->cap_nodes * 2 : 4;
            outbox_node_t *nn = realloc(o->nodes, cap * sizeof *nn);
            if (!nn)
                return -1;
            o->nodes = nn;
            o->cap_nodes = cap;
        }
        outbox_node_t *on = &o->nodes[o->n_nodes];
        memset(on, 0, sizeof *on);
        if (!(on->node = strdup(node)) ||
            strmap_put(o->index, node, (void *)(uintptr_t)(o->n_nodes + 1)) != 0) {
            free(on->node);
            return -1;
        }
        pos = ++o->n_nodes;
    }
    outbox_node_t *on = &o->nodes[pos - 1];
    Push__V1__NodeDelivery e = PUSH__V1__NODE_DELIVERY__INIT;
    e.message = m;
    e.users = users;
    e.n_users = n;
    size_t bytes = outbox_entry_bytes(&e);
    int rc = 0;
    if (on->n && on->bytes + bytes > o->max_bytes)
        rc = outbox_send_node(o, on);
    if (on->n == on->cap) {
        size_t cap = on->cap ? on->cap * 2 : 8;
        Push__V1__NodeDelivery *ne = realloc(on->entries, cap * sizeof *ne);
        if (!ne)
            return -1;
        on->entries = ne;
        on->cap = cap;
    }
    on->entries[on->n++] = e;
    on->bytes += bytes;
    return rc;
}

int outbox_flush(outbox_t *o)
{
    int rc = 0;
    for (size_t i = 0; i < o->n_nodes; i++)
        if (outbox_send_node(o, &o->nodes[i]) != 0)
            rc = -1;
    return rc;
}
