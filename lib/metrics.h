/*
 * metrics: a process-wide registry of counters and gauges, rendered in the
 * Prometheus text format. Registration takes a lock and happens at start;
 * updates are lock-free atomics and may be called from any thread.
 *
 * A series name may carry labels: metrics_counter("push_collect_rejected_total",
 * "reason=\"bad_json\"", "...") registers one series of the family
 * push_collect_rejected_total. Registering the same name and labels twice
 * returns the same series.
 */
#ifndef PUSH_METRICS_H
#define PUSH_METRICS_H

#include <stdint.h>

typedef struct metrics_series metrics_series_t;

/* Returns the series (owned by the registry, never freed), or NULL when the
 * registry is full (METRICS_MAX series). Updating NULL is a no-op. */
metrics_series_t *metrics_counter(const char *name, const char *labels, const char *help);
metrics_series_t *metrics_gauge(const char *name, const char *labels, const char *help);

void metrics_add(metrics_series_t *s, int64_t delta);
static inline void metrics_inc(metrics_series_t *s)
{
    metrics_add(s, 1);
}
void metrics_set(metrics_series_t *s, int64_t value);
int64_t metrics_get(const metrics_series_t *s);

/* Render every series. Returns a malloc'd NUL-terminated string the caller frees. */
char *metrics_render(void);

#define METRICS_MAX 512

#endif
