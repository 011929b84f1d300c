/*
 * fuzz_ingest: libFuzzer target for the collector's publish decoder
 * (collector/ingest.c), JSON and protobuf paths. Beyond "no crash, no leak",
 * it checks that whatever is accepted obeys the contract's rules and that
 * every rejection says why. Single-threaded.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chan.h"
#include "ingest.h"

static void fuzz_check_accepted(const ingest_request_t *r)
{
    if ((r->n_to > 0) + (r->broadcast != 0) + (r->channel != NULL) != 1 ||
        r->n_to > INGEST_MAX_RECIPIENTS || (r->broadcast && r->ttl))
        abort(); /* exactly one of to / broadcast / channel; broadcasts live only */
    if (r->channel && !chan_name_ok(r->channel, strlen(r->channel)))
        abort();
    for (size_t i = 0; i < r->n_to; i++)
        if (!r->to[i][0] || strlen(r->to[i]) > INGEST_MAX_USER)
            abort();
    if (!r->topic || strlen(r->topic) > INGEST_MAX_TOPIC || r->ttl > INGEST_MAX_TTL || !r->data ||
        !r->content_type)
        abort();
    if (strncasecmp(r->content_type, "application/json", 16) == 0) {
        json_t *j = json_loadb((const char *)r->data, r->data_len, JSON_DECODE_ANY, NULL);
        if (!j)
            abort(); /* JSON data is what clients get as a JSON value */
        json_decref(j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *reason = NULL;
    char err[256] = "";
    ingest_request_t r;
    /* The first byte picks the door: by content, or by a JSON Content-Type. */
    const char *ctype = size && (data[0] & 1) ? "application/json" : NULL;
    if (ingest_decode(data, size, ctype, &r, &reason, err, sizeof err) == 0) {
        fuzz_check_accepted(&r);
        ingest_free(&r);
    } else if (!reason || !err[0]) {
        abort(); /* every rejection says why */
    }
    return 0;
}
