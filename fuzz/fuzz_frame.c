/* libFuzzer target: the parser of frames clients send to the pusher. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "client_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    client_frame_t cf;
    client_frame_parse((const char *)data, size, &cf);
    if (cf.kind == CLIENT_FRAME_ACK) {
        if (cf.n_ids == 0 || cf.n_ids > CLIENT_FRAME_MAX_IDS)
            abort();
        for (size_t i = 0; i < cf.n_ids; i++)
            if (!cf.ids[i][0] || strlen(cf.ids[i]) > CLIENT_FRAME_MAX_ID)
                abort();
    } else if (cf.n_ids) {
        abort();
    }
    if (cf.kind == CLIENT_FRAME_SUBSCRIBE || cf.kind == CLIENT_FRAME_UNSUBSCRIBE) {
        /* a usable frame names a valid channel; an unusable one says why */
        if (!cf.error && (!cf.channel || !chan_name_ok(cf.channel, strlen(cf.channel))))
            abort();
        if (cf.error && (cf.since || cf.token))
            abort();
        if (cf.channel && strlen(cf.channel) > CLIENT_FRAME_MAX_ECHO)
            abort();
        if (cf.since && (!cf.since[0] || strlen(cf.since) > CLIENT_FRAME_MAX_ID))
            abort();
    } else if (cf.channel || cf.since || cf.token || cf.error) {
        abort();
    }
    client_frame_free(&cf);
    return 0;
}
