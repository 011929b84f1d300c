/* group: see group.h. A handful of nodes per message: linear search is the
 * right tool until a cluster has hundreds of nodes. */
#include "group.h"

#include <stdlib.h>
#include <string.h>

typedef struct group_node {
    char *node;
    char **users;
    size_t n, cap;
} group_node_t;

struct group {
    group_node_t *nodes;
    size_t n, cap;
    char **seen; /* distinct users */
    size_t n_seen, cap_seen;
};

group_t *group_new(void)
{
    return calloc(1, sizeof(group_t));
}

void group_free(group_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        free(g->nodes[i].node);
        free(g->nodes[i].users);
    }
    free(g->nodes);
    free(g->seen);
    free(g);
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 4;
    while (nc < need)
        nc *= 2;
    void *na = realloc(*arr, nc * elem);
    if (!na)
        return -1;
    *arr = na;
    *cap = nc;
    return 0;
}

int group_add(group_t *g, const char *node, char *user)
{
    group_node_t *gn = NULL;
    for (size_t i = 0; i < g->n && !gn; i++)
        if (strcmp(g->nodes[i].node, node) == 0)
            gn = &g->nodes[i];
    if (!gn) {
        if (grow((void **)&g->nodes, &g->cap, g->n + 1, sizeof *g->nodes))
            return -1;
        gn = &g->nodes[g->n];
        memset(gn, 0, sizeof *gn);
        if (!(gn->node = strdup(node)))
            return -1;
        g->n++;
    }
    for (size_t i = 0; i < gn->n; i++)
        if (gn->users[i] == user || strcmp(gn->users[i], user) == 0)
            return 0;
    if (grow((void **)&gn->users, &gn->cap, gn->n + 1, sizeof *gn->users))
        return -1;
    gn->users[gn->n++] = user;
    for (size_t i = 0; i < g->n_seen; i++)
        if (g->seen[i] == user || strcmp(g->seen[i], user) == 0)
            return 0;
    if (grow((void **)&g->seen, &g->cap_seen, g->n_seen + 1, sizeof *g->seen))
        return -1;
    g->seen[g->n_seen++] = user;
    return 0;
}

size_t group_users(const group_t *g)
{
    return g ? g->n_seen : 0;
}
size_t group_nodes(const group_t *g)
{
    return g ? g->n : 0;
}

void group_each(const group_t *g, group_each_fn fn, void *arg)
{
    for (size_t i = 0; g && i < g->n; i++)
        fn(arg, g->nodes[i].node, g->nodes[i].users, g->nodes[i].n);
}
