/* acker: see acker.h. */
#include "acker.h"

#include <pthread.h>
#include <stdlib.h>

#include "bgloop.h"
#include "log.h"
#include "metrics.h"

struct acker {
    store_t *store;
    bgloop_t *loop;
    pthread_mutex_t lock;
    pthread_cond_t room;
    Push__V1__Ack **queue; /* a ring of ACKER_MAX_QUEUED */
    size_t head, n;
    metrics_series_t *batches, *failed;
};

/* Records up to ACKER_BATCH queued acks. */
static int acker_run(void *arg)
{
    acker_t *a = arg;
    Push__V1__Ack *batch[ACKER_BATCH];
    store_ack_t acks[ACKER_BATCH];
    pthread_mutex_lock(&a->lock);
    size_t n = a->n < ACKER_BATCH ? a->n : ACKER_BATCH;
    for (size_t i = 0; i < n; i++)
        batch[i] = a->queue[(a->head + i) % ACKER_MAX_QUEUED];
    a->head = (a->head + n) % ACKER_MAX_QUEUED;
    a->n -= n;
    int more = a->n > 0;
    pthread_cond_broadcast(&a->room);
    pthread_mutex_unlock(&a->lock);
    if (!n)
        return BGLOOP_WAIT;
    size_t ids = 0;
    for (size_t i = 0; i < n; i++) {
        acks[i] = (store_ack_t){batch[i]->user, batch[i]->ids, batch[i]->n_ids};
        ids += batch[i]->n_ids;
    }
    metrics_inc(a->batches);
    if (store_ack_batch(a->store, acks, n) != STORE_OK) {
        metrics_add(a->failed, (int64_t)ids);
        LOG_W("could not record %zu ack(s) of %zu message(s); they will be delivered again", ids,
              n);
    }
    for (size_t i = 0; i < n; i++)
        push__v1__ack__free_unpacked(batch[i], NULL);
    return more ? BGLOOP_AGAIN : BGLOOP_WAIT;
}

acker_t *acker_start(store_t *store)
{
    acker_t *a = calloc(1, sizeof *a);
    if (!a || !(a->queue = calloc(ACKER_MAX_QUEUED, sizeof *a->queue))) {
        free(a);
        LOG_E("out of memory for the ack queue");
        return NULL;
    }
    a->store = store;
    a->batches = metrics_counter("push_collect_ack_batches_total", NULL,
                                 "Batches of client acks recorded, one store_ack_batch each");
    a->failed = metrics_counter("push_collect_acks_failed_total", NULL,
                                "Client acks the store did not record (delivered again)");
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->room, NULL);
    if (bgloop_start(&a->loop, "acker", 0, acker_run, a) != 0) {
        LOG_E("cannot start the ack thread");
        pthread_mutex_destroy(&a->lock);
        pthread_cond_destroy(&a->room);
        free(a->queue);
        free(a);
        return NULL;
    }
    return a;
}

void acker_submit(acker_t *a, Push__V1__Ack *ack)
{
    pthread_mutex_lock(&a->lock);
    while (a->n == ACKER_MAX_QUEUED)
        pthread_cond_wait(&a->room, &a->lock);
    a->queue[(a->head + a->n) % ACKER_MAX_QUEUED] = ack;
    a->n++;
    pthread_mutex_unlock(&a->lock);
    bgloop_wake(a->loop);
}

void acker_stop(acker_t *a)
{
    if (!a)
        return;
    bgloop_stop(a->loop);
    while (acker_run(a) == BGLOOP_AGAIN)
        ;
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->room);
    free(a->queue);
    free(a);
}
