/*
 * ingest: turns one publish (bytes from NATS or HTTP) into a validated
 * request, or a rejection with a reason code and a sentence.
 *
 * The publish is JSON when the Content-Type says application/json or its
 * first non-blank byte is '{'; otherwise protobuf push.v1.PushRequest. The
 * rules are the contract's: exactly one of to (1..1000 user ids of 1..128
 * bytes, no control characters), broadcast or channel (a name of lib/chan.h;
 * a present `to`, even empty, counts as one); the whole publish at most
 * INGEST_MAX_BYTES; ttl defaults to 86400 and is 0 for broadcasts. Duplicate
 * recipients are folded into one. Pure; any thread.
 */
#ifndef COLLECTOR_INGEST_H
#define COLLECTOR_INGEST_H

#include <stddef.h>
#include <stdint.h>

#define INGEST_MAX_BYTES (1024 * 1024)
#define INGEST_MAX_RECIPIENTS 1000
#define INGEST_MAX_USER 128
#define INGEST_MAX_TOPIC 256
#define INGEST_MAX_IDEM 256
#define INGEST_DEFAULT_TTL 86400u
#define INGEST_MAX_TTL (366u * 86400u)

typedef struct ingest_request {
    int json; /* arrived as JSON: answer in JSON */
    int broadcast;
    char *channel; /* a channel message, else NULL */
    char **to;     /* n_to user ids, each malloc'd, no duplicates */
    size_t n_to;
    char *topic;         /* never NULL ("" when absent) */
    unsigned char *data; /* data_len bytes; JSON text when content_type is application/json */
    size_t data_len;
    char *content_type; /* never NULL */
    uint32_t ttl;
    char *idem; /* idempotency key, or NULL */
} ingest_request_t;

/* Reason codes (metric labels): "payload_too_large", "not_json_or_protobuf",
 * "invalid_json", "to_and_broadcast", "no_recipients", "too_many_recipients",
 * "empty_user_id", "user_id_too_long", "bad_user_id", "bad_ttl", "bad_field",
 * "channel_and_other" (channel with to or broadcast), "bad_channel". */
#define INGEST_REASONS                                                                             \
    "payload_too_large", "not_json_or_protobuf", "invalid_json", "to_and_broadcast",               \
        "no_recipients", "too_many_recipients", "empty_user_id", "user_id_too_long",               \
        "bad_user_id", "bad_ttl", "bad_field", "channel_and_other", "bad_channel"

/* Decode and validate. content_type may be NULL. Returns 0 and fills *out
 * (free with ingest_free), or -1 with *reason set to a static reason code and
 * err to a sentence for the publisher; *out is then empty but its `json`
 * member says how to answer. */
int ingest_decode(const void *buf, size_t len, const char *content_type, ingest_request_t *out,
                  const char **reason, char *err, size_t err_size);

void ingest_free(ingest_request_t *r);

/* Is this publish JSON by the contract's rule? */
int ingest_is_json(const void *buf, size_t len, const char *content_type);

#endif
