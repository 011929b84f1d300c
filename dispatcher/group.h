/*
 * group: gathers a message's recipients by node, so each node gets one
 * delivery naming all its users. Nodes keep the order they were first seen
 * in, users the order they were added. Pure; one thread at a time.
 */
#ifndef DISPATCHER_GROUP_H
#define DISPATCHER_GROUP_H

#include <stddef.h>

typedef struct group group_t;

group_t *group_new(void);
void group_free(group_t *g);

/* user is not copied (it must outlive the group); node is. Adding the same
 * (node, user) twice keeps one. Returns 0, or -1 on allocation failure. */
int group_add(group_t *g, const char *node, char *user);

/* Number of distinct users added (over all nodes). */
size_t group_users(const group_t *g);
size_t group_nodes(const group_t *g);

typedef void (*group_each_fn)(void *arg, const char *node, char **users, size_t n);
void group_each(const group_t *g, group_each_fn fn, void *arg);

#endif
