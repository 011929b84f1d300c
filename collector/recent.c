/* recent: see recent.h. */
#include "recent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

/* A list's first size; it doubles as it fills and halves (not below
 * this) once a quarter full. */
#define RECENT_MIN_CAP 4

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
        size_t cap = l->cap ? l->cap * 2 : RECENT_MIN_CAP;
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

void recent_remove_sorted(recent_t *r, const char *user, const char *const *ids, size_t n)
{
    recent_ids_t *l = n ? strmap_get(r->users, user) : NULL;
    if (!l)
        return;
    /* One pass from the first: the ids kept move down over those removed
     * (removing them one by one moved the whole tail each time: the
     * indexer takes the oldest first, so a user with 40,000 ids cost 230
     * ms under the store's lock). */
    size_t w = recent_find(l, ids[0]), rd = w, k = 0;
    while (rd < l->n && k < n) {
        int c = strcmp(l->ids[rd], ids[k]);
        if (c > 0) {
            k++; /* ids[k] is not there (or was named twice) */
        } else if (c == 0) {
            rd++; /* removed */
            k++;
        } else {
            if (w != rd)
                memcpy(l->ids[w], l->ids[rd], sizeof l->ids[w]);
            w++;
            rd++;
        }
    }
    size_t removed = rd - w;
    if (removed) {
        memmove(l->ids + w, l->ids + rd, (l->n - rd) * sizeof *l->ids);
        l->n -= removed;
        r->pairs -= removed;
    }
    if (!l->n) {
        strmap_remove(r->users, user);
        recent_free_ids(NULL, user, l);
        return;
    }
    /* A user who stays busy keeps a list: give back what a burst grew it
     * to once it holds a quarter or less (halving keeps adds amortised). */
    size_t cap = l->cap;
    while (cap > RECENT_MIN_CAP && l->n <= cap / 4)
        cap /= 2;
    if (cap != l->cap) {
        void *shrunk = realloc(l->ids, cap * sizeof *l->ids);
        if (shrunk) { /* if not, it keeps the larger block */
            l->ids = shrunk;
            l->cap = cap;
        }
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

static void recent_add_cap(void *arg, const char *key, void *value)
{
    (void)key;
    *(size_t *)arg += ((const recent_ids_t *)value)->cap;
}

size_t recent_capacity(const recent_t *r)
{
    size_t cap = 0;
    strmap_each(r->users, recent_add_cap, &cap);
    return cap;
}

size_t recent_size(const recent_t *r)
{
    return r->pairs;
}
