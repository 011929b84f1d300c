/*
 * metrics: see metrics.h. Series live in a fixed array so pointers handed out
 * stay valid forever; families are grouped at render time so HELP and TYPE
 * appear once per family, as Prometheus requires.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics_series {
    char name[96];
    char labels[128];
    const char *help;
    int is_gauge;
    atomic_llong value;
};

static struct metrics_series metrics_all[METRICS_MAX];
static atomic_int metrics_count;
static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;

static metrics_series_t *metrics_register(const char *name, const char *labels, const char *help,
                                          int is_gauge)
{
    if (!labels)
        labels = "";
    pthread_mutex_lock(&metrics_lock);
    int n = atomic_load(&metrics_count);
    metrics_series_t *s = NULL;
    for (int i = 0; i < n; i++) {
        if (strcmp(metrics_all[i].name, name) == 0 && strcmp(metrics_all[i].labels, labels) == 0) {
            s = &metrics_all[i];
            break;
        }
    }
    if (!s && n < METRICS_MAX) {
        s = &metrics_all[n];
        snprintf(s->name, sizeof s->name, "%s", name);
        snprintf(s->labels, sizeof s->labels, "%s", labels);
        s->help = help;
        s->is_gauge = is_gauge;
        atomic_init(&s->value, 0);
        atomic_store(&metrics_count, n + 1);
    }
    pthread_mutex_unlock(&metrics_lock);
    return s;
}

metrics_series_t *metrics_counter(const char *name, const char *labels, const char *help)
{
    return metrics_register(name, labels, help, 0);
}

metrics_series_t *metrics_gauge(const char *name, const char *labels, const char *help)
{
    return metrics_register(name, labels, help, 1);
}

void metrics_add(metrics_series_t *s, int64_t delta)
{
    if (s)
        atomic_fetch_add_explicit(&s->value, delta, memory_order_relaxed);
}

void metrics_set(metrics_series_t *s, int64_t value)
{
    if (s)
        atomic_store_explicit(&s->value, value, memory_order_relaxed);
}

int64_t metrics_get(const metrics_series_t *s)
{
    return s ? atomic_load_explicit(&((metrics_series_t *)s)->value, memory_order_relaxed) : 0;
}

char *metrics_render(void)
{
    int n = atomic_load(&metrics_count);
    size_t cap = 4096 + (size_t)n * 512, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[0] = '\0';
    char done[METRICS_MAX] = {0};
    for (int i = 0; i < n; i++) {
        if (done[i])
            continue;
        metrics_series_t *f = &metrics_all[i];
        len += (size_t)snprintf(out + len, cap - len, "# HELP %s %s\n# TYPE %s %s\n", f->name,
                                f->help ? f->help : "", f->name, f->is_gauge ? "gauge" : "counter");
        for (int j = i; j < n; j++) {
            metrics_series_t *s = &metrics_all[j];
            if (done[j] || strcmp(s->name, f->name) != 0)
                continue;
            done[j] = 1;
            long long v = atomic_load(&s->value);
            if (s->labels[0])
                len +=
                    (size_t)snprintf(out + len, cap - len, "%s{%s} %lld\n", s->name, s->labels, v);
            else
                len += (size_t)snprintf(out + len, cap - len, "%s %lld\n", s->name, v);
        }
    }
    return out;
}
