/*
 * bgloop: one background thread that runs a function now, then each time
 * it is woken or its period passes, until it is stopped. Every periodic or
 * queue-fed loop of the cluster (the collector's writer, hand-over, retry
 * and expiry threads, the MongoDB health thread, the pusher's routes thread,
 * the dispatcher's shard manager) is one of these, so the mutex, condition
 * and stop flag are written once, and written right:
 *
 * - Timed waits are on CLOCK_MONOTONIC (clock_cond_init, clock_deadline):
 *   a wall-clock step back (NTP, a resumed VM) would otherwise stall the
 *   loop by the size of the step, and a dispatcher would stop renewing its
 *   shard leases.
 * - A wake is never lost: it is a flag set under the loop's lock, so a wake
 *   that comes while the function runs makes it run once more. Wakes that
 *   come together are one run.
 * - Starting checks pthread_create; a loop that cannot start is an error for
 *   the caller (its program exits 1 with a message), never a program left
 *   running without the thread.
 *
 * The function owns whatever state only the loop touches; a queue that
 * other threads fill keeps its own lock and calls bgloop_wake after adding.
 * Once bgloop_stop returns, that state is the stopping thread's again (to
 * drain or free).
 */
#ifndef LIB_BGLOOP_H
#define LIB_BGLOOP_H

#include <stdint.h>

typedef struct bgloop bgloop_t;

/* What a loop's function returns: BGLOOP_AGAIN to run again at once (it
 * left work for later, e.g. a batch limit), BGLOOP_WAIT to wait for the
 * next wake or period. */
#define BGLOOP_WAIT 0
#define BGLOOP_AGAIN 1

/* Runs on the loop's thread only. */
typedef int (*bgloop_fn)(void *arg);

/* Start a thread named name (cut to 15 bytes, the kernel's limit) that
 * calls fn(arg) at once, then after each bgloop_wake, and, when period_ms
 * > 0, once period_ms has passed since fn last returned. On success stores
 * the loop in *out and returns 0; otherwise returns a negative errno value
 * (-EAGAIN: no thread could be made) and *out is NULL. Any thread. */
int bgloop_start(bgloop_t **out, const char *name, int64_t period_ms, bgloop_fn fn, void *arg);

/* Make fn run soon (at once if the loop is waiting, else right after the
 * current run). Any thread, also the loop's own; never blocks for long. */
void bgloop_wake(bgloop_t *l);

/* Whether bgloop_stop was called: a long run may check it and cut itself
 * short. Any thread. */
int bgloop_stopping(bgloop_t *l);

/* Stop the loop: wake it, wait for a run in progress to return, join the
 * thread and free the loop. fn is not called again. NULL is a no-op. Any
 * thread but the loop's own. */
void bgloop_stop(bgloop_t *l);

#endif
