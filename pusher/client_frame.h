/*
 * client_frame: what a client may send. {"type":"ack","id":"X"} or
 * {"type":"ack","ids":["X",...]} (ids: 1..CLIENT_FRAME_MAX_IDS strings of
 * 1..CLIENT_FRAME_MAX_ID bytes), {"type":"ping"},
 * {"type":"subscribe","channel":C[,"since":ID][,"token":JWT]} and
 * {"type":"unsubscribe","channel":C}. A subscribe or unsubscribe whose
 * channel is not a valid name (lib/chan.h), or whose since or token is not
 * a string of the right size, is still that kind, with `error` saying what
 * is wrong (the client is answered with an error frame, code bad_channel).
 * Anything else is malformed: the caller ignores and counts it. Pure; any
 * thread.
 */
#ifndef PUSHER_CLIENT_FRAME_H
#define PUSHER_CLIENT_FRAME_H

#include <stddef.h>

#define CLIENT_FRAME_MAX_IDS 1000
#define CLIENT_FRAME_MAX_ID 128

typedef enum {
    CLIENT_FRAME_MALFORMED = 0,
    CLIENT_FRAME_ACK,
    CLIENT_FRAME_PING,
    CLIENT_FRAME_SUBSCRIBE,
    CLIENT_FRAME_UNSUBSCRIBE
} client_frame_kind_t;

#define CLIENT_FRAME_MAX_ECHO 255 /* a bad channel is echoed back only up to this long */

typedef struct client_frame {
    client_frame_kind_t kind;
    char **ids; /* ACK: n_ids malloc'd ids */
    size_t n_ids;
    char *channel;     /* (UN)SUBSCRIBE: malloc'd; when error is set, what to echo (or NULL) */
    char *since;       /* SUBSCRIBE: malloc'd message id, or NULL */
    char *token;       /* SUBSCRIBE: malloc'd subscription token, or NULL */
    const char *error; /* (UN)SUBSCRIBE: a static sentence when the frame is unusable */
} client_frame_t;

/* Parse len bytes. Always fills *out; free with client_frame_free. */
void client_frame_parse(const char *text, size_t len, client_frame_t *out);
void client_frame_free(client_frame_t *f);

#endif
