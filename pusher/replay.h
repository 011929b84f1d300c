/*
 * replay: stored messages first, then the live ones that came meanwhile,
 * none twice and none missing. Used for a connection catching up on its
 * user's stored messages (at connect, after a NATS outage) and for a
 * channel subscription recovering its history with `since`: while the
 * stored messages are on their way (replay_t.active), live frames are held
 * (replay_hold); replay_finish sends the stored ones, then the held ones
 * that were not among them, and keeps the ids it sent (replay_is_copy) so
 * that a live copy still on its way is dropped, until a live message newer
 * than every replayed one shows none can follow. Service thread only.
 */
#ifndef PUSHER_REPLAY_H
#define PUSHER_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

typedef struct replay {
    uint8_t active; /* stored messages are on their way: live ones wait in held */
    frame_t **held;
    uint32_t n_held, cap_held;
    uint32_t held_bytes;
    /* after a replay: the ids it delivered, until a newer live one arrives */
    struct strmap *replayed;
    char replay_max[32];
} replay_t;

/* Keep a reference to f aside. Returns 0, or -1 when it would pass
 * max_frames or max_bytes (the caller closes: the outgoing queue's bound). */
int replay_hold(replay_t *r, frame_t *f, uint32_t max_frames, size_t max_bytes);
/* Drop every held frame. */
void replay_drop_held(replay_t *r);
/* Drop held frames and the replayed ids. */
void replay_deinit(replay_t *r);

/* 1 when f is a live copy of a message the last replay already delivered
 * (drop it). in_order: f is in the acceptance order the replay followed (a
 * user's messages for a connection, a channel's for a subscription); a
 * newer such f ends the check. */
int replay_is_copy(replay_t *r, const frame_t *f, int in_order);

/* End the replay: send(arg, stored[i]) for each stored frame, then each
 * held frame not among them, in order; active becomes 0. Returns how many
 * held frames were dropped as copies. stored may be NULL (n 0). */
size_t replay_finish(replay_t *r, frame_t *const *stored, size_t n,
                     void (*send)(void *arg, frame_t *f), void *arg);

#endif
