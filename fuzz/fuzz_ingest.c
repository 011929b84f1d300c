/* libFuzzer target: the collector's publish decoder, JSON and protobuf paths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *reason = NULL;
    char err[256];
    ingest_request_t r;
    /* The first byte picks the door: by content or by a JSON Content-Type. */
    const char *ctype = size && (data[0] & 1) ? "application/json" : NULL;
    if (ingest_decode(data, size, ctype, &r, &reason, err, sizeof err) == 0) {
        if ((r.n_to == 0) == !r.broadcast || r.n_to > INGEST_MAX_RECIPIENTS || (r.broadcast && r.ttl))
            abort(); /* an accepted request must obey the contract's rules */
        for (size_t i = 0; i < r.n_to; i++)
            if (!r.to[i][0] || strlen(r.to[i]) > INGEST_MAX_USER)
                abort();
        ingest_free(&r);
    } else if (!reason || !err[0]) {
        abort(); /* every rejection says why */
    }
    return 0;
}
