/* replay: see replay.h. */
#include "replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

int replay_hold(replay_t *r, frame_t *f, uint32_t max_frames, size_t max_bytes)
{
    if (r->n_held >= max_frames || (size_t)r->held_bytes + f->len > max_bytes)
        return -1;
    if (r->n_held == r->cap_held) {
        uint32_t cap = r->cap_held ? r->cap_held * 2 : 8;
        frame_t **h = realloc(r->held, cap * sizeof *h);
        if (!h)
            return -1;
        r->held = h;
        r->cap_held = cap;
    }
    r->held[r->n_held++] = frame_ref(f);
    r->held_bytes += (uint32_t)f->len;
    return 0;
}

void replay_drop_held(replay_t *r)
{
    for (uint32_t i = 0; i < r->n_held; i++)
        frame_unref(r->held[i]);
    free(r->held);
    r->held = NULL;
    r->n_held = r->cap_held = r->held_bytes = 0;
}

void replay_deinit(replay_t *r)
{
    replay_drop_held(r);
    strmap_free(r->replayed);
    r->replayed = NULL;
}

int replay_is_copy(replay_t *r, const frame_t *f, int in_order)
{
    if (!r->replayed || !f->id[0])
        return 0;
    if (strmap_get(r->replayed, f->id))
        return 1;
    /* Delivery is in acceptance order: once a live message newer than
     * every replayed one arrives, no older copy can follow. */
    if (in_order && strcmp(f->id, r->replay_max) > 0) {
        strmap_free(r->replayed);
        r->replayed = NULL;
    }
    return 0;
}

size_t replay_finish(replay_t *r, frame_t *const *stored, size_t n,
                     void (*send)(void *arg, frame_t *f), void *arg)
{
    r->active = 0;
    strmap_t *seen = n ? strmap_new() : NULL;
    for (size_t i = 0; i < n; i++) {
        send(arg, stored[i]);
        if (seen)
            strmap_put(seen, stored[i]->id, r);
    }
    frame_t **held = r->held;
    uint32_t n_held = r->n_held;
    r->held = NULL;
    r->n_held = r->cap_held = r->held_bytes = 0;
    size_t dups = 0;
    for (uint32_t i = 0; i < n_held; i++) {
        if (!seen || !strmap_get(seen, held[i]->id))
            send(arg, held[i]);
        else
            dups++;
        frame_unref(held[i]);
    }
    free(held);
    if (seen) {
        strmap_free(r->replayed);
        r->replayed = seen; /* live copies may still be on their way */
        snprintf(r->replay_max, sizeof r->replay_max, "%s", stored[n - 1]->id);
    }
    return dups;
}
