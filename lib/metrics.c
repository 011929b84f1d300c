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

#include "clock.h"

struct metrics_series {
    char name[96];
    char labels[128];
    const char *help;
    int is_gauge;
    atomic_llong value;
};

static const double metrics_age_bounds_ms[] = {METRICS_AGE_BOUNDS_MS};
#define METRICS_N_BOUNDS (sizeof metrics_age_bounds_ms / sizeof metrics_age_bounds_ms[0])

struct metrics_histogram {
    char name[96];
    const char *help;
    atomic_llong buckets[METRICS_N_BOUNDS + 1]; /* the last one: above every bound */
    atomic_llong sum_us, count;
};

static struct metrics_series metrics_all[METRICS_MAX];
static struct metrics_histogram metrics_hists[METRICS_HISTOGRAMS_MAX];
static atomic_int metrics_n_hists;
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

metrics_histogram_t *metrics_age_histogram(const char *name, const char *help)
{
    pthread_mutex_lock(&metrics_lock);
    int n = atomic_load(&metrics_n_hists);
    metrics_histogram_t *h = NULL;
    for (int i = 0; i < n && !h; i++)
        if (strcmp(metrics_hists[i].name, name) == 0)
            h = &metrics_hists[i];
    if (!h && n < METRICS_HISTOGRAMS_MAX) {
        h = &metrics_hists[n];
        snprintf(h->name, sizeof h->name, "%s", name);
        h->help = help;
        atomic_store(&metrics_n_hists, n + 1);
    }
    pthread_mutex_unlock(&metrics_lock);
    return h;
}

void metrics_observe_us(metrics_histogram_t *h, int64_t age_us)
{
    if (!h)
        return;
    if (age_us < 0)
        age_us = 0;
    size_t i = 0;
    while (i < METRICS_N_BOUNDS && (double)age_us > metrics_age_bounds_ms[i] * 1000.0)
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, age_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void metrics_observe_since_ms(metrics_histogram_t *h, uint64_t unix_ms)
{
    if (!h || !unix_ms)
        return;
    metrics_observe_us(h, (int64_t)clock_wall_us() - (int64_t)unix_ms * 1000);
}

/* Appends the histograms to out (cap bytes, len used). */
static size_t metrics_render_histograms(char *out, size_t cap, size_t len)
{
    int n = atomic_load(&metrics_n_hists);
    for (int i = 0; i < n; i++) {
        metrics_histogram_t *h = &metrics_hists[i];
        len += (size_t)snprintf(out + len, cap - len, "# HELP %s %s\n# TYPE %s histogram\n",
                                h->name, h->help ? h->help : "", h->name);
        long long cum = 0;
        for (size_t k = 0; k <= METRICS_N_BOUNDS; k++) {
            cum += atomic_load(&h->buckets[k]);
            if (k < METRICS_N_BOUNDS)
                len += (size_t)snprintf(out + len, cap - len, "%s_bucket{le=\"%g\"} %lld\n",
                                        h->name, metrics_age_bounds_ms[k] / 1000.0, cum);
            else
                len += (size_t)snprintf(out + len, cap - len, "%s_bucket{le=\"+Inf\"} %lld\n",
                                        h->name, cum);
        }
        len += (size_t)snprintf(out + len, cap - len, "%s_sum %.6f\n%s_count %lld\n", h->name,
                                (double)atomic_load(&h->sum_us) / 1e6, h->name,
                                (long long)atomic_load(&h->count));
    }
    return len;
}

char *metrics_render(void)
{
    int n = atomic_load(&metrics_count);
    size_t cap = 4096 + (size_t)n * 512 +
                 (size_t)atomic_load(&metrics_n_hists) * (METRICS_N_BOUNDS + 4) * 160,
           len = 0;
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
    metrics_render_histograms(out, cap, len);
    return out;
}
