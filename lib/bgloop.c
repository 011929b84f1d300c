/* bgloop: see bgloop.h. */
#include "bgloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"

struct bgloop {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    int woken;           /* under lock */
    atomic_int stop;     /* written under lock, read anywhere */
    int64_t period_ms;
    bgloop_fn fn;
    void *arg;
    char name[16];
};

static void *bgloop_main(void *p)
{
    bgloop_t *l = p;
    pthread_setname_np(pthread_self(), l->name);
    int again = BGLOOP_AGAIN; /* the first run is at once */
    for (;;) {
        pthread_mutex_lock(&l->lock);
        if (again == BGLOOP_WAIT) {
            struct timespec until = clock_deadline(l->period_ms);
            while (!l->woken && !atomic_load(&l->stop)) {
                if (l->period_ms <= 0)
                    pthread_cond_wait(&l->cond, &l->lock);
                else if (pthread_cond_timedwait(&l->cond, &l->lock, &until) == ETIMEDOUT)
                    break;
            }
        }
        l->woken = 0;
        int stop = atomic_load(&l->stop);
        pthread_mutex_unlock(&l->lock);
        if (stop)
            break;
        again = l->fn(l->arg);
    }
    return NULL;
}

int bgloop_start(bgloop_t **out, const char *name, int64_t period_ms, bgloop_fn fn, void *arg)
{
    *out = NULL;
    if (!fn)
        return -EINVAL;
    bgloop_t *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    snprintf(l->name, sizeof l->name, "%s", name ? name : "bgloop");
    l->period_ms = period_ms;
    l->fn = fn;
    l->arg = arg;
    int rc = pthread_mutex_init(&l->lock, NULL);
    if (rc != 0) {
        free(l);
        return -rc;
    }
    if ((rc = clock_cond_init(&l->cond)) != 0) {
        pthread_mutex_destroy(&l->lock);
        free(l);
        return -rc;
    }
    if ((rc = pthread_create(&l->thread, NULL, bgloop_main, l)) != 0) {
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        free(l);
        return -rc;
    }
    *out = l;
    return 0;
}

void bgloop_wake(bgloop_t *l)
{
    pthread_mutex_lock(&l->lock);
    l->woken = 1;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

int bgloop_stopping(bgloop_t *l)
{
    return atomic_load(&l->stop);
}

void bgloop_stop(bgloop_t *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    atomic_store(&l->stop, 1);
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
