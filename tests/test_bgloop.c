/* Unit tests of lib/bgloop and lib/clock: a loop runs at once, on each
 * wake and each period, stops promptly, and waits on the monotonic clock. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "bgloop.h"
#include "check.h"
#include "clock.h"

typedef struct counter {
    atomic_int runs;
    int again_left;            /* loop thread only */
    int64_t at_ms[8];          /* clock_mono_ms of the first runs */
    atomic_int in_run;         /* set while fn runs */
    atomic_int ran_after_stop; /* fn ran once the test had stopped it */
} counter_t;

static int count_run(void *arg)
{
    counter_t *c = arg;
    atomic_store(&c->in_run, 1);
    int n = atomic_load(&c->runs);
    if (n < 8)
        c->at_ms[n] = clock_mono_ms();
    atomic_fetch_add(&c->runs, 1);
    atomic_store(&c->in_run, 0);
    if (c->again_left > 0) {
        c->again_left--;
        return BGLOOP_AGAIN;
    }
    return BGLOOP_WAIT;
}

/* Poll (bounded: the test fails rather than hangs) until runs >= n. */
static int wait_runs(counter_t *c, int n)
{
    for (int i = 0; i < 1000 && atomic_load(&c->runs) < n; i++)
        usleep(10 * 1000);
    return atomic_load(&c->runs);
}

#define HOUR_MS (3600 * 1000)

static void runs_at_once_then_only_when_woken(void)
{
    counter_t c = {0};
    bgloop_t *l = NULL;
    CHECK_INT(bgloop_start(&l, "test-wake", HOUR_MS, count_run, &c), 0);
    CHECK(l != NULL);
    CHECK_INT(wait_runs(&c, 1), 1);
    usleep(50 * 1000);
    CHECK_INT(atomic_load(&c.runs), 1); /* the period is an hour: nothing more */
    bgloop_wake(l);
    CHECK_INT(wait_runs(&c, 2), 2);
    bgloop_wake(l);
    CHECK_INT(wait_runs(&c, 3), 3);
    bgloop_stop(l);
}

static void again_runs_without_a_wake(void)
{
    counter_t c = {.again_left = 4};
    bgloop_t *l = NULL;
    CHECK_INT(bgloop_start(&l, "test-again", HOUR_MS, count_run, &c), 0);
    CHECK_INT(wait_runs(&c, 5), 5);
    bgloop_stop(l);
    CHECK_INT(atomic_load(&c.runs), 5);
}

/* Runs come each period, and never before it has passed on the monotonic
 * clock: a wait computed on the wall clock against a monotonic condition
 * (or the reverse) either never ends or ends at once, and fails here. */
static void runs_each_period_not_sooner(void)
{
    counter_t c = {0};
    bgloop_t *l = NULL;
    CHECK_INT(bgloop_start(&l, "test-period", 100, count_run, &c), 0);
    CHECK(wait_runs(&c, 4) >= 4);
    bgloop_stop(l);
    for (int i = 1; i < 4; i++)
        CHECK(c.at_ms[i] - c.at_ms[i - 1] >= 100);
}

static void stop_ends_a_long_wait_and_no_run_follows(void)
{
    counter_t c = {0};
    bgloop_t *l = NULL;
    CHECK_INT(bgloop_start(&l, "test-stop", 0, count_run, &c), 0); /* wake only */
    CHECK_INT(wait_runs(&c, 1), 1);
    bgloop_stop(l); /* hangs (and ctest times out) if stop did not wake the wait */
    int runs = atomic_load(&c.runs);
    CHECK_INT(atomic_load(&c.in_run), 0);
    usleep(50 * 1000);
    CHECK_INT(atomic_load(&c.runs), runs);
    bgloop_stop(NULL); /* a no-op */
}

typedef struct stopping_probe {
    bgloop_t *_Atomic loop; /* stored by the test once start returned */
    atomic_int entered;     /* runs begun */
    atomic_int seen;        /* runs that saw bgloop_stopping */
} stopping_probe_t;

static int stopping_seen(void *arg)
{
    stopping_probe_t *p = arg;
    atomic_fetch_add(&p->entered, 1);
    while (!atomic_load(&p->loop))
        usleep(1000);
    while (!bgloop_stopping(atomic_load(&p->loop)))
        usleep(1000);
    atomic_fetch_add(&p->seen, 1);
    return BGLOOP_AGAIN; /* must not run again once stopping */
}

static void a_run_sees_stopping(void)
{
    stopping_probe_t p;
    atomic_init(&p.loop, NULL);
    atomic_init(&p.entered, 0);
    atomic_init(&p.seen, 0);
    bgloop_t *l = NULL;
    CHECK_INT(bgloop_start(&l, "test-stopping", 0, stopping_seen, &p), 0);
    atomic_store(&p.loop, l);
    for (int i = 0; i < 1000 && !atomic_load(&p.entered); i++)
        usleep(10 * 1000); /* a stop before the first run begins means no run at all */
    bgloop_stop(l);        /* returns once the run in progress saw bgloop_stopping */
    CHECK_INT(atomic_load(&p.seen), 1);
}

static void start_without_a_function_fails(void)
{
    bgloop_t *l = (bgloop_t *)1;
    CHECK_INT(bgloop_start(&l, "test-none", 10, NULL, NULL), -EINVAL);
    CHECK(l == NULL);
}

/* The deadline is on CLOCK_MONOTONIC: between two readings of it, plus ms.
 * (The wall clock counts from 1970 and the monotonic one from boot, so a
 * deadline computed from the wall clock is far outside this range.) */
static void deadline_is_monotonic_now_plus_ms(void)
{
    int64_t before = clock_mono_ms();
    struct timespec d = clock_deadline(1500);
    int64_t after = clock_mono_ms();
    int64_t d_ms = (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;
    CHECK(d_ms >= before + 1500);
    CHECK(d_ms <= after + 1500);
    CHECK(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    struct timespec z = clock_deadline(-5); /* a negative wait is no wait */
    CHECK((int64_t)z.tv_sec * 1000 + z.tv_nsec / 1000000 >= before);
}

/* A condition from clock_cond_init times out only once the monotonic clock
 * has reached the deadline; with the default (wall) clock, a monotonic
 * deadline lies in 1970 and the wait would end at once. */
static void cond_waits_on_the_monotonic_clock(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    CHECK_INT(clock_cond_init(&cv), 0);
    struct timespec until = clock_deadline(100);
    int64_t until_ms = (int64_t)until.tv_sec * 1000 + until.tv_nsec / 1000000;
    pthread_mutex_lock(&m);
    int rc = 0;
    while (rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&cv, &m, &until);
    pthread_mutex_unlock(&m);
    CHECK(clock_mono_ms() >= until_ms);
    pthread_cond_destroy(&cv);
}

static void wall_clock_is_unix_time(void)
{
    uint64_t t = clock_wall_ms();
    uint64_t s = (uint64_t)time(NULL);
    CHECK(t / 1000 + 1 >= s && t / 1000 <= s + 1);
}

CHECK_MAIN(CHECK_CASE(runs_at_once_then_only_when_woken), CHECK_CASE(again_runs_without_a_wake),
           CHECK_CASE(runs_each_period_not_sooner),
           CHECK_CASE(stop_ends_a_long_wait_and_no_run_follows), CHECK_CASE(a_run_sees_stopping),
           CHECK_CASE(start_without_a_function_fails),
           CHECK_CASE(deadline_is_monotonic_now_plus_ms),
           CHECK_CASE(cond_waits_on_the_monotonic_clock), CHECK_CASE(wall_clock_is_unix_time))
