/* handoff: see handoff.h. */
#include "handoff.h"

#include <pthread.h>
#include <stdlib.h>

struct handoff {
    pthread_mutex_t lock;
    handoff_ev_t *head, *tail;
    void (*wake)(void *arg);
    void *arg;
};

handoff_t *handoff_new(void (*wake)(void *arg), void *arg)
{
    handoff_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    pthread_mutex_init(&h->lock, NULL);
    h->wake = wake;
    h->arg = arg;
    return h;
}

void handoff_free(handoff_t *h)
{
    if (!h)
        return;
    for (handoff_ev_t *ev = handoff_take(h), *next; ev; ev = next) {
        next = ev->next;
        handoff_ev_free(ev);
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
}

handoff_ev_t *handoff_ev_new(handoff_kind_t kind)
{
    handoff_ev_t *ev = calloc(1, sizeof *ev);
    if (ev)
        ev->kind = kind;
    return ev;
}

void handoff_ev_free(handoff_ev_t *ev)
{
    if (!ev)
        return;
    free(ev->user);
    free(ev->reason);
    free(ev->reply);
    free(ev->channel);
    for (size_t i = 0; i < ev->n_frames; i++)
        frame_unref(ev->frames[i]);
    free(ev->frames);
    for (size_t i = 0; i < ev->n_users; i++)
        free(ev->users[i]);
    free(ev->users);
    free(ev);
}

void handoff_push(handoff_t *h, handoff_ev_t *ev)
{
    ev->next = NULL;
    handoff_push_list(h, ev, ev);
}

void handoff_push_list(handoff_t *h, handoff_ev_t *first, handoff_ev_t *last)
{
    if (!first)
        return;
    last->next = NULL;
    pthread_mutex_lock(&h->lock);
    if (h->tail)
        h->tail->next = first;
    else
        h->head = first;
    h->tail = last;
    pthread_mutex_unlock(&h->lock);
    h->wake(h->arg);
}

handoff_ev_t *handoff_take(handoff_t *h)
{
    pthread_mutex_lock(&h->lock);
    handoff_ev_t *all = h->head;
    h->head = h->tail = NULL;
    pthread_mutex_unlock(&h->lock);
    return all;
}
