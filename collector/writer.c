/* writer: see writer.h. */
#include "writer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bgloop.h"
#include "clock.h"
#include "jsx.h"
#include "log.h"
#include "metrics.h"

_Static_assert(WRITER_BATCH *WRITER_HO_DEPTH *JSX_SHARDS *(HANDOVER_IN_FLIGHT + 1) <=
                   HANDOVER_MAX_PENDING,
               "the hand-over's rounds in flight must fit in its pending bound");

/* A caller of writer_submit_wait waiting for its item's outcome. */
typedef struct writer_waiter {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int done;
    accept_result_t *res;
} writer_waiter_t;

typedef struct writer_item {
    struct writer_item *next;
    ingest_request_t req;
    store_msg_t m;
    char *reply;
    writer_waiter_t *waiter;
} writer_item_t;

/* Stored items on their way to the dispatcher (the hand-over thread). */
typedef struct writer_ho_batch {
    struct writer_ho_batch *next;
    writer_item_t **items;
    size_t n;
} writer_ho_batch_t;

struct writer {
    natsConnection *nc;
    store_t *store;
    handover_t *handover;
    accept_t *accept;
    metrics_series_t *commits;
    bgloop_t *loop;
    pthread_mutex_t lock; /* the queue of publishes */
    writer_item_t *head, *tail;
    size_t n_queued;
    writer_item_t **batch;   /* the writer thread's */
    uint64_t batch_start_us; /* the writer thread's: when its last batch began (clock_mono_us) */
    /* the hand-over thread and its queue of stored batches, in store order */
    bgloop_t *ho_loop;
    pthread_mutex_t ho_lock;
    pthread_cond_t ho_room; /* untimed: the writer waits for the hand-over */
    writer_ho_batch_t *ho_head, *ho_tail;
    size_t ho_depth;
    metrics_histogram_t *stored_age; /* accepted -> committed */
};

static void writer_item_free(writer_item_t *it)
{
    ingest_free(&it->req);
    free(it->reply);
    free(it);
}

static int writer_enqueue(writer_t *w, ingest_request_t *req, const char *reply,
                          writer_waiter_t *waiter)
{
    writer_item_t *it = calloc(1, sizeof *it);
    if (!it || (reply && !(it->reply = strdup(reply)))) {
        free(it);
        ingest_free(req);
        return -1;
    }
    it->req = *req;
    memset(req, 0, sizeof *req);
    it->waiter = waiter;
    it->m.topic = it->req.topic;
    it->m.data = it->req.data;
    it->m.data_len = it->req.data_len;
    it->m.content_type = it->req.content_type;
    it->m.ttl = it->req.ttl;
    it->m.broadcast = it->req.broadcast;
    it->m.channel = it->req.channel;
    pthread_mutex_lock(&w->lock);
    /* Minted under the lock: ids are in queue order. */
    it->m.accepted_ms = ids_now_ms();
    ids_new_at(it->m.id, it->m.accepted_ms);
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    w->n_queued++;
    pthread_mutex_unlock(&w->lock);
    bgloop_wake(w->loop);
    return 0;
}

void writer_submit(writer_t *w, ingest_request_t *req, const char *reply)
{
    if (writer_enqueue(w, req, reply, NULL) != 0)
        LOG_E("out of memory; a publish was dropped unanswered");
}

void writer_submit_wait(writer_t *w, ingest_request_t *req, accept_result_t *res)
{
    writer_waiter_t wt = {.res = res};
    pthread_mutex_init(&wt.lock, NULL);
    pthread_cond_init(&wt.done_cond, NULL);
    int json = req->json;
    if (writer_enqueue(w, req, NULL, &wt) != 0) {
        memset(res, 0, sizeof *res);
        res->json = json;
        res->status = ACCEPT_STORE_DOWN;
        snprintf(res->error, sizeof res->error, "out of memory; nothing was kept, try again");
    } else {
        pthread_mutex_lock(&wt.lock);
        while (!wt.done)
            pthread_cond_wait(&wt.done_cond, &wt.lock);
        pthread_mutex_unlock(&wt.lock);
    }
    pthread_mutex_destroy(&wt.lock);
    pthread_cond_destroy(&wt.done_cond);
}

static void writer_wake_waiter(writer_waiter_t *wt, const accept_result_t *res)
{
    pthread_mutex_lock(&wt->lock);
    *wt->res = *res;
    wt->done = 1;
    pthread_cond_signal(&wt->done_cond);
    pthread_mutex_unlock(&wt->lock);
}

/* Queue stored items for the hand-over thread, which takes them over
 * (items[i] becomes NULL). Waits while WRITER_HO_DEPTH batches are queued:
 * a slow JetStream slows the writer rather than growing memory. */
static void writer_queue_handover(writer_t *w, writer_item_t **items, const size_t *idx, size_t n)
{
    writer_ho_batch_t *b = calloc(1, sizeof *b);
    if (!b || !(b->items = malloc(n * sizeof *b->items))) {
        free(b);
        handover_fell_behind(w->handover); /* stored: the retry loop sends them */
        return;
    }
    for (size_t i = 0; i < n; i++) {
        b->items[i] = items[idx[i]];
        items[idx[i]] = NULL;
    }
    b->n = n;
    pthread_mutex_lock(&w->ho_lock);
    while (w->ho_depth >= WRITER_HO_DEPTH)
        pthread_cond_wait(&w->ho_room, &w->ho_lock);
    if (w->ho_tail)
        w->ho_tail->next = b;
    else
        w->ho_head = b;
    w->ho_tail = b;
    w->ho_depth++;
    pthread_mutex_unlock(&w->ho_lock);
    bgloop_wake(w->ho_loop);
}

static void writer_handover_batch(writer_t *w, writer_ho_batch_t *b)
{
    const store_msg_t **ms = calloc(b->n, sizeof *ms);
    char ***tos = calloc(b->n, sizeof *tos);
    size_t *n_tos = calloc(b->n, sizeof *n_tos);
    if (ms && tos && n_tos) {
        for (size_t i = 0; i < b->n; i++) {
            ms[i] = &b->items[i]->m;
            tos[i] = b->items[i]->req.to;
            n_tos[i] = b->items[i]->req.n_to;
        }
        handover_send_batch(w->handover, ms, tos, n_tos, b->n);
    } else {
        handover_fell_behind(w->handover); /* stored: the retry loop sends them */
    }
    free(ms);
    free(tos);
    free(n_tos);
    for (size_t i = 0; i < b->n; i++)
        writer_item_free(b->items[i]);
    free(b->items);
    free(b);
}

/* Takes everything queued at once: under load, one round of JetStream acks
 * and one "dispatched" transaction covers several stored batches. */
static int writer_ho_run(void *arg)
{
    writer_t *w = arg;
    pthread_mutex_lock(&w->ho_lock);
    writer_ho_batch_t *all = w->ho_head;
    if (!all) {
        pthread_mutex_unlock(&w->ho_lock);
        return BGLOOP_WAIT;
    }
    w->ho_head = w->ho_tail = NULL;
    w->ho_depth = 0;
    pthread_cond_broadcast(&w->ho_room);
    pthread_mutex_unlock(&w->ho_lock);
    /* one batch of every queued one, in queue order */
    size_t n = 0;
    for (writer_ho_batch_t *b = all; b; b = b->next)
        n += b->n;
    writer_ho_batch_t *merged = all;
    if (all->next) {
        writer_item_t **items = malloc(n * sizeof *items);
        if (items) {
            merged = calloc(1, sizeof *merged);
            if (merged) {
                size_t k = 0;
                for (writer_ho_batch_t *b = all, *next; b; b = next) {
                    next = b->next;
                    memcpy(items + k, b->items, b->n * sizeof *items);
                    k += b->n;
                    free(b->items);
                    free(b);
                }
                merged->items = items;
                merged->n = n;
                all = NULL;
            } else {
                free(items);
                merged = all;
            }
        }
    }
    /* merged is one batch, or (out of memory) the list to go one by one */
    for (writer_ho_batch_t *b = merged, *next; b; b = next) {
        next = b->next;
        writer_handover_batch(w, b);
    }
    pthread_mutex_lock(&w->ho_lock);
    int more = w->ho_head != NULL;
    pthread_mutex_unlock(&w->ho_lock);
    return more ? BGLOOP_AGAIN : BGLOOP_WAIT;
}

/* Store a batch in one transaction and answer every publisher; the stored
 * items go on to the hand-over thread (their slots in items become NULL). */
static void writer_batch(writer_t *w, writer_item_t **items, size_t n)
{
    store_put_item_t *puts = calloc(n, sizeof *puts);
    size_t *stored = calloc(n, sizeof *stored);
    if (!puts || !stored)
        goto out;
    for (size_t i = 0; i < n; i++) {
        puts[i].m = &items[i]->m;
        puts[i].to = items[i]->req.to;
        puts[i].n_to = items[i]->req.n_to;
        puts[i].idem = items[i]->req.idem;
    }
    int rc = store_put_batch(w->store, puts, n);
    if (rc == STORE_OK)
        metrics_inc(w->commits);
    size_t n_new = 0;
    for (size_t i = 0; i < n; i++) {
        accept_result_t res;
        memset(&res, 0, sizeof res);
        res.json = items[i]->req.json;
        int item_rc = rc == STORE_OK ? puts[i].result : STORE_ERR;
        accept_stored(w->accept, item_rc, items[i]->m.id, puts[i].existing_id, &res);
        if (items[i]->waiter) {
            writer_wake_waiter(items[i]->waiter, &res);
            items[i]->waiter = NULL;
        }
        if (items[i]->reply) {
            size_t len = 0;
            void *reply = accept_reply(&res, &len);
            if (reply)
                natsConnection_Publish(w->nc, items[i]->reply, reply, (int)len);
            free(reply);
        }
        if (item_rc == STORE_OK) {
            metrics_observe_since_ms(w->stored_age, items[i]->m.accepted_ms);
            stored[n_new++] = i;
        }
    }
    if (n_new)
        writer_queue_handover(w, items, stored, n_new);
out:
    free(puts);
    free(stored);
}

/* A batch of queued publishes begins now: with fewer than
 * WRITER_GAP_ENOUGH, not before WRITER_GAP_US after the last one began
 * (what arrives meanwhile joins it). */
static void writer_gap(writer_t *w, size_t queued)
{
    uint64_t now = clock_mono_us(), due = w->batch_start_us + WRITER_GAP_US;
    if (queued < WRITER_GAP_ENOUGH && now < due) {
        usleep((useconds_t)(due - now));
        now = clock_mono_us();
    }
    w->batch_start_us = now;
}

/* Takes up to WRITER_BATCH queued publishes: one transaction. */
static int writer_run(void *arg)
{
    writer_t *w = arg;
    writer_item_t **batch = w->batch;
    pthread_mutex_lock(&w->lock);
    size_t queued = w->n_queued;
    pthread_mutex_unlock(&w->lock);
    if (queued)
        writer_gap(w, queued);
    pthread_mutex_lock(&w->lock);
    size_t n = 0;
    while (w->head && n < WRITER_BATCH) {
        batch[n++] = w->head;
        w->head = w->head->next;
        w->n_queued--;
    }
    if (!w->head)
        w->tail = NULL;
    int more = w->head != NULL;
    pthread_mutex_unlock(&w->lock);
    if (n)
        writer_batch(w, batch, n);
    /* the hand-over's marks, after the publishers have their answers (no
     * fsync of their own: the next batch's covers them) */
    handover_flush_marks(w->handover);
    for (size_t i = 0; i < n; i++) {
        if (!batch[i])
            continue;           /* stored: the hand-over thread has it */
        if (batch[i]->waiter) { /* the batch failed before its outcome was known */
            accept_result_t res = {.status = ACCEPT_STORE_DOWN, .json = batch[i]->req.json};
            snprintf(res.error, sizeof res.error, "out of memory; nothing was kept, try again");
            writer_wake_waiter(batch[i]->waiter, &res);
        }
        writer_item_free(batch[i]);
    }
    return more ? BGLOOP_AGAIN : BGLOOP_WAIT;
}

writer_t *writer_start(natsConnection *nc, store_t *store, handover_t *handover, accept_t *accept)
{
    writer_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->nc = nc;
    w->store = store;
    w->handover = handover;
    w->accept = accept;
    /* accepted / commits is the mean batch (bench/pipeline.sh sizes storefloor by it) */
    w->commits = metrics_counter("push_collect_commits_total", NULL,
                                 "Batches of publishes the writer stored, one transaction each");
    w->stored_age = metrics_age_histogram(
        "push_collect_stored_age_seconds",
        "From a publish's acceptance (its id's millisecond) to its commit in the store");
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->ho_lock, NULL);
    pthread_cond_init(&w->ho_room, NULL);
    if (!(w->batch = malloc(WRITER_BATCH * sizeof *w->batch)))
        goto fail;
    /* Queue-fed, no period: each runs when something is queued for it. */
    if (bgloop_start(&w->ho_loop, "handover", 0, writer_ho_run, w) != 0)
        goto fail;
    if (bgloop_start(&w->loop, "writer", 0, writer_run, w) != 0) {
        bgloop_stop(w->ho_loop);
        goto fail;
    }
    return w;
fail:
    LOG_E("cannot start the writer's threads");
    free(w->batch);
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->ho_lock);
    pthread_cond_destroy(&w->ho_room);
    free(w);
    return NULL;
}

void writer_stop(writer_t *w)
{
    if (!w)
        return;
    /* The writer stores (and answers) what was queued before the stop, here
     * now its thread is gone; then the hand-over sends what the writer
     * queued for it, the same way. */
    bgloop_stop(w->loop);
    while (writer_run(w) == BGLOOP_AGAIN)
        ;
    bgloop_stop(w->ho_loop);
    while (writer_ho_run(w) == BGLOOP_AGAIN)
        ;
    free(w->batch);
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->ho_lock);
    pthread_cond_destroy(&w->ho_room);
    free(w);
}
