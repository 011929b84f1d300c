/*
 * clock: the two clocks the cluster reads, in one place.
 *
 * Monotonic time (clock_mono_ms, clock_deadline, clock_cond_init) is for
 * every wait, period, timeout and deadline inside one process: it never
 * steps, so an NTP correction or a resumed VM neither stalls a loop nor
 * fires a timeout early. Wall time (clock_wall_ms) is only for what is
 * stored or compared across processes: message ids and expiry, route
 * scores in Redis, JWT exp/nbf, log timestamps.
 *
 * Any thread; nothing here blocks or allocates.
 */
#ifndef LIB_CLOCK_H
#define LIB_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC (since an arbitrary start; compare only
 * with other values from this function in the same process). */
int64_t clock_mono_ms(void);

/* Milliseconds since the Unix epoch on CLOCK_REALTIME. */
uint64_t clock_wall_ms(void);

/* The same two clocks in microseconds (latencies, benchmarks). */
uint64_t clock_mono_us(void);
uint64_t clock_wall_us(void);

/* The absolute CLOCK_MONOTONIC time ms from now, for pthread_cond_timedwait
 * on a condition made by clock_cond_init. */
struct timespec clock_deadline(int64_t ms);

/* pthread_cond_init with CLOCK_MONOTONIC as the clock of its timed waits
 * (the default is CLOCK_REALTIME). Returns 0 or an errno value. */
int clock_cond_init(pthread_cond_t *cond);

#endif
