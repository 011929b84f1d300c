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

/* A histogram of ages, in the Prometheus histogram format with bounds in
 * seconds: <name>_bucket{le="..."} (cumulative), <name>_sum, <name>_count.
 * The bounds are fixed (METRICS_AGE_BOUNDS_MS, 0.5 ms to 10 s), fine enough
 * to read a p50 and a p99 of a few milliseconds from the buckets. */
typedef struct metrics_histogram metrics_histogram_t;
#define METRICS_AGE_BOUNDS_MS                                                                      \
    0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500, 10000
#define METRICS_HISTOGRAMS_MAX 16

/* Returns the histogram (owned by the registry), or NULL when
 * METRICS_HISTOGRAMS_MAX are registered; observing NULL is a no-op. */
metrics_histogram_t *metrics_age_histogram(const char *name, const char *help);
/* Record one age in microseconds (negative counts as 0). Lock-free, any thread. */
void metrics_observe_us(metrics_histogram_t *h, int64_t age_us);
/* The age of something stamped at unix_ms (wall clock, as message ids are),
 * observed now; the stamp's millisecond truncation adds 0 to 1 ms. */
void metrics_observe_since_ms(metrics_histogram_t *h, uint64_t unix_ms);

/* Render every series. Returns a malloc'd NUL-terminated string the caller frees. */
char *metrics_render(void);

#define METRICS_MAX 512

#endif
