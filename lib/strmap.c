/* strmap: see strmap.h. FNV-1a hashing; the key is stored inline in its entry. */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct strmap_entry {
    struct strmap_entry *next;
    void *value;
    uint32_t hash;
    char key[];
} strmap_entry_t;

struct strmap {
    strmap_entry_t **buckets;
    size_t n_buckets; /* a power of two */
    size_t size;
};

uint32_t strmap_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

strmap_t *strmap_new(void)
{
    strmap_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->n_buckets = 16;
    m->buckets = calloc(m->n_buckets, sizeof *m->buckets);
    if (!m->buckets) {
        free(m);
        return NULL;
    }
    return m;
}

void strmap_free(strmap_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (strmap_entry_t *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(m->buckets);
    free(m);
}

static void strmap_grow(strmap_t *m)
{
    size_t nb = m->n_buckets * 2;
    strmap_entry_t **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* stay at this size: slower, still correct */
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (strmap_entry_t *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t k = e->hash & (nb - 1);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = nb;
}

int strmap_put(strmap_t *m, const char *key, void *value)
{
    uint32_t h = strmap_hash(key);
    size_t k = h & (m->n_buckets - 1);
    for (strmap_entry_t *e = m->buckets[k]; e; e = e->next) {
        if (e->hash == h && strcmp(e->key, key) == 0) {
            e->value = value;
            return 0;
        }
    }
    size_t kl = strlen(key);
    strmap_entry_t *e = malloc(sizeof *e + kl + 1);
    if (!e)
        return -1;
    memcpy(e->key, key, kl + 1);
    e->hash = h;
    e->value = value;
    e->next = m->buckets[k];
    m->buckets[k] = e;
    if (++m->size > m->n_buckets)
        strmap_grow(m);
    return 0;
}

void *strmap_get(const strmap_t *m, const char *key)
{
    uint32_t h = strmap_hash(key);
    for (strmap_entry_t *e = m->buckets[h & (m->n_buckets - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e->value;
    return NULL;
}

void *strmap_remove(strmap_t *m, const char *key)
{
    uint32_t h = strmap_hash(key);
    for (strmap_entry_t **p = &m->buckets[h & (m->n_buckets - 1)]; *p; p = &(*p)->next) {
        strmap_entry_t *e = *p;
        if (e->hash == h && strcmp(e->key, key) == 0) {
            void *v = e->value;
            *p = e->next;
            free(e);
            m->size--;
            return v;
        }
    }
    return NULL;
}

size_t strmap_size(const strmap_t *m)
{
    return m->size;
}

void strmap_each(const strmap_t *m, void (*fn)(void *arg, const char *key, void *value), void *arg)
{
    for (size_t i = 0; i < m->n_buckets; i++)
        for (strmap_entry_t *e = m->buckets[i]; e; e = e->next)
            fn(arg, e->key, e->value);
}
