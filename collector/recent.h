/*
 * recent: user -> ids of that user's stored messages that are not in the
 * SQLite store's per-user index yet (store_sqlite.c, "Recipients"). The
 * store fills it after each commit and empties it as its indexer catches
 * up, so that a user's pending messages are found without scanning the
 * messages not indexed yet. Ids are kept sorted. Not thread-safe: the
 * store's lock guards it.
 */
#ifndef COLLECTOR_RECENT_H
#define COLLECTOR_RECENT_H

#include <stddef.h>

#include "ids.h"

typedef struct recent recent_t;

recent_t *recent_new(void);
void recent_free(recent_t *r);

/* Add id for user. Returns 0, or -1 out of memory (nothing added). */
int recent_add(recent_t *r, const char *user, const char *id);
/* Remove ids[0..n) for user, those that are there; ids sorted (strcmp),
 * ascending. One pass over the user's ids. */
void recent_remove_sorted(recent_t *r, const char *user, const char *const *ids, size_t n);
/* The user's ids greater than after (""), oldest first, in *ids (valid
 * until the next change); returns how many. */
size_t recent_of(const recent_t *r, const char *user, const char *after,
                 const char (**ids)[IDS_LEN + 1]);
/* How many (user, id) pairs it holds. */
size_t recent_size(const recent_t *r);
/* How many ids its lists have room for, all users together (each takes
 * IDS_LEN + 1 bytes): at most about 4 times recent_size once lists shrink,
 * plus a few per user. One pass over the users. */
size_t recent_capacity(const recent_t *r);

#endif
