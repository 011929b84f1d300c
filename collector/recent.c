/* recent: see recent.h. */
#include "recent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

typedef struct recent_ids {
    char (*ids)[IDS_LEN + 1];
    size_t n, cap;
} recent_ids_t;

struct recent {
    strmap_t *users; /* user -> recent_ids_t * */
    size_t pairs;
};

recent_t *recent_new(void)
{
    recent_t *r = calloc(1, sizeof *r);
    if (r && !(r->users = strmap_new())) {
        free(r);
        return NULL;
    }
    return r;
}

static void recent_free_ids(void *arg, const char *key, void *value)
{
    (void)arg, (void)key;
    recent_ids_t *l = value;
    free(l->ids);
    free(l);
}

void recent_free(recent_t *r)
{
    if (!r)
        return;
    strmap_each(r->users, recent_free_ids, NULL);
    strmap_free(r->users);
    free(r);
}

/* The first index whose id is >= id (ids are sorted). */
static size_t recent_find(const recent_ids_t *l, const char *id)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(l->ids[mid], id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int recent_add(recent_t *r, const char *user, const char *id)
{
    recent_ids_t *l = strmap_get(r->users, user);
    if (!l) {
        if (!(l = calloc(1, sizeof *l)))
            return -1;
        if (strmap_put(r->users, user, l) != 0) {
            free(l);
            return -1;
        }
    }
    /* ids come in commit order, which is id order: the end, almost always */
    size_t at = l->n && strcmp(l->ids[l->n - 1], id) < 0 ? l->n : recent_find(l, id);
    if (at < l->n && strcmp(l->ids[at], id) == 0)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        void *grown = realloc(l->ids, cap * sizeof *l->ids);
        if (!grown)
            return -1;
        l->ids = grown;
        l->cap = cap;
    }
    memmove(l->ids + at + 1, l->ids + at, (l->n - at) * sizeof *l->ids);
    snprintf(l->ids[at], sizeof l->ids[at], "%s", id);
    l->n++;
    r->pairs++;
    return 0;
}

void recent_remove(recent_t *r, const char *user, const char *id)
{
    recent_ids_t *l = strmap_get(r->users, user);
    if (!l)
        return;
    size_t at = recent_find(l, id);
    if (at == l->n || strcmp(l->ids[at], id) != 0)
        return;
    memmove(l->ids + at, l->ids + at + 1, (l->n - at - 1) * sizeof *l->ids);
    l->n--;
    r->pairs--;
    if (!l->n) {
        strmap_remove(r->users, user);
        recent_free_ids(NULL, user, l);
    }
}

size_t recent_of(const recent_t *r, const char *user, const char *after,
                 const char (**ids)[IDS_LEN + 1])
{
    const recent_ids_t *l = strmap_get(r->users, user);
    if (!l)
        return 0;
    size_t from = 0;
    if (after && *after) {
        from = recent_find(l, after);
        if (from < l->n && strcmp(l->ids[from], after) == 0)
            from++;
    }
    *ids = (const char(*)[IDS_LEN + 1])(l->ids + from);
    return l->n - from;
}

size_t recent_size(const recent_t *r)
{
    return r->pairs;
}
