/*
 * frame: text frames for clients, built once and shared.
 *
 * A frame is one reference-counted buffer with LWS_PRE bytes of headroom
 * before the payload, so lws_write can put the WebSocket header in front
 * without copying. A delivery to many connections queues the same frame on
 * each (frame_ref); the last frame_unref frees it. References are atomic:
 * frames are built on NATS threads and used on the service thread.
 */
#ifndef PUSHER_FRAME_H
#define PUSHER_FRAME_H

#include <stdatomic.h>
#include <stddef.h>

#include "push/v1/push.pb-c.h"

typedef struct frame {
    atomic_int refs;
    size_t len;          /* payload bytes */
    char id[32];         /* the message id of a message frame, else "" */
    int broadcast;       /* a broadcast or channel message (not in any user's acceptance order) */
    unsigned char buf[]; /* FRAME_PRE headroom, then the payload */
} frame_t;

#define FRAME_PRE 16 /* LWS_PRE of the lws this builds with (checked in ws.c) */

static inline unsigned char *frame_payload(frame_t *f)
{
    return f->buf + FRAME_PRE;
}

/* A frame holding text (len bytes), one reference. NULL on allocation failure. */
frame_t *frame_text(const char *text, size_t len);

/* {"type":"message","id":..,["channel":..,]"topic":..,"data":<JSON>} when the message's
 * content type is application/json (the data spliced in as it is: the
 * collector validated it), else "data":"<base64>","encoding":"base64". */
frame_t *frame_message(const Push__V1__Message *m);

/* {"type":"welcome","user":..,"node":..,"conn":..} */
frame_t *frame_welcome(const char *user, const char *node, const char *conn);

/* The compact text of j (members in insertion order), one reference; takes
 * j's reference. NULL on allocation failure or when j is NULL. */
struct json_t;
frame_t *frame_json(struct json_t *j);

frame_t *frame_ref(frame_t *f);
void frame_unref(frame_t *f);

#endif
