/* writer: see writer.h. */
#include "writer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

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

struct writer {
    natsConnection *nc;
    store_t *store;
    handover_t *handover;
    accept_t *accept;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    writer_item_t *head, *tail;
    int stop;
};

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
    pthread_mutex_lock(&w->lock);
    /* Minted under the lock: ids are in queue order. */
    it->m.accepted_ms = ids_now_ms();
    ids_new_at(it->m.id, it->m.accepted_ms);
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
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

static void writer_batch(writer_t *w, writer_item_t **items, size_t n)
{
    store_put_item_t *puts = calloc(n, sizeof *puts);
    const store_msg_t **ms = calloc(n, sizeof *ms);
    char ***tos = calloc(n, sizeof *tos);
    size_t *n_tos = calloc(n, sizeof *n_tos);
    if (!puts || !ms || !tos || !n_tos)
        goto out;
    for (size_t i = 0; i < n; i++) {
        puts[i].m = &items[i]->m;
        puts[i].to = items[i]->req.to;
        puts[i].n_to = items[i]->req.n_to;
        puts[i].idem = items[i]->req.idem;
    }
    int rc = store_put_batch(w->store, puts, n);
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
            ms[n_new] = &items[i]->m;
            tos[n_new] = items[i]->req.to;
            n_tos[n_new++] = items[i]->req.n_to;
        }
    }
    if (n_new)
        handover_send_batch(w->handover, ms, tos, n_tos, n_new);
out:
    free(puts);
    free(ms);
    free(tos);
    free(n_tos);
}

static void *writer_loop(void *arg)
{
    writer_t *w = arg;
    writer_item_t **batch = malloc(WRITER_BATCH * sizeof *batch);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->wake, &w->lock);
        if (!w->head && w->stop) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        size_t n = 0;
        while (w->head && n < WRITER_BATCH) {
            batch[n++] = w->head;
            w->head = w->head->next;
        }
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->lock);
        if (batch)
            writer_batch(w, batch, n);
        for (size_t i = 0; i < n; i++) {
            if (batch[i]->waiter) { /* the batch failed before its outcome was known */
                accept_result_t res = {.status = ACCEPT_STORE_DOWN, .json = batch[i]->req.json};
                snprintf(res.error, sizeof res.error, "out of memory; nothing was kept, try again");
                writer_wake_waiter(batch[i]->waiter, &res);
            }
            ingest_free(&batch[i]->req);
            free(batch[i]->reply);
            free(batch[i]);
        }
    }
    free(batch);
    return NULL;
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
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_create(&w->thread, NULL, writer_loop, w);
    return w;
}

void writer_stop(writer_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
