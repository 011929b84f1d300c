/*
 * strmap: a hash map from NUL-terminated strings to pointers, O(1) average
 * add, get and remove. Keys are copied; values are the caller's. Chained
 * buckets, doubled when the load passes 1. Not thread-safe: one owner thread.
 */
#ifndef PUSH_STRMAP_H
#define PUSH_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap strmap_t;

/* FNV-1a 32 of s's bytes: the map's hash, also the shard of a user
 * (jsx.h) and the refresh slot of a route (pusher/routes.c). */
uint32_t strmap_hash(const char *s);

strmap_t *strmap_new(void);
/* Frees the map and its keys, not the values. Safe with NULL. */
void strmap_free(strmap_t *m);

/* Set key to value (replacing). Returns 0, or -1 on allocation failure. */
int strmap_put(strmap_t *m, const char *key, void *value);
/* The value, or NULL. */
void *strmap_get(const strmap_t *m, const char *key);
/* Remove key; returns its value, or NULL if absent. */
void *strmap_remove(strmap_t *m, const char *key);
size_t strmap_size(const strmap_t *m);

/* Call fn for every entry, in no particular order. fn must not change the map. */
void strmap_each(const strmap_t *m, void (*fn)(void *arg, const char *key, void *value), void *arg);

#endif
