/*
 * client_frame: what a client may send. {"type":"ack","id":"X"} or
 * {"type":"ack","ids":["X",...]} (ids: 1..CLIENT_FRAME_MAX_IDS strings of
 * 1..CLIENT_FRAME_MAX_ID bytes), {"type":"ping"}. Anything else is
 * malformed: the caller ignores and counts it. Pure; any thread.
 */
#ifndef PUSHER_CLIENT_FRAME_H
#define PUSHER_CLIENT_FRAME_H

#include <stddef.h>

#define CLIENT_FRAME_MAX_IDS 1000
#define CLIENT_FRAME_MAX_ID 128

typedef enum {
    CLIENT_FRAME_MALFORMED = 0,
    CLIENT_FRAME_ACK,
    CLIENT_FRAME_PING
} client_frame_kind_t;

typedef struct client_frame {
    client_frame_kind_t kind;
    char **ids; /* ACK: n_ids malloc'd ids */
    size_t n_ids;
} client_frame_t;

/* Parse len bytes. Always fills *out; free with client_frame_free. */
void client_frame_parse(const char *text, size_t len, client_frame_t *out);
void client_frame_free(client_frame_t *f);

#endif
