/* libFuzzer target: the parser of frames clients send to the pusher. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    client_frame_free(&cf);
    return 0;
}
