/*
 * ingest: see ingest.h. JSON goes through jansson, protobuf through
 * protobuf-c; both land in the same ingest_request_t and then pass the same
 * validation, so the two encodings cannot drift apart.
 */
#include "ingest.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chan.h"
#include "push/v1/push.pb-c.h"

#define JSON_CT "application/json"

static int fail(const char **reason, const char *code, char *err, size_t n, const char *fmt, ...)
{
    *reason = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

int ingest_is_json(const void *buf, size_t len, const char *content_type)
{
    if (content_type && strncasecmp(content_type, JSON_CT, strlen(JSON_CT)) == 0)
        return 1;
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')
            continue;
        return p[i] == '{';
    }
    return 0;
}

void ingest_free(ingest_request_t *r)
{
    for (size_t i = 0; i < r->n_to; i++)
        free(r->to[i]);
    free(r->to);
    free(r->channel);
    free(r->topic);
    free(r->data);
    free(r->content_type);
    free(r->idem);
    int json = r->json;
    memset(r, 0, sizeof *r);
    r->json = json;
}

/* Is s well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF)? Protobuf strings arrive unchecked, and whatever we accept ends
 * up in WebSocket text frames, which must be UTF-8. JSON input is already
 * checked by jansson. */
static int utf8_valid(const char *str)
{
    const unsigned char *p = (const unsigned char *)str;
    while (*p) {
        unsigned c = *p;
        size_t n;
        unsigned min;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            c = (c << 6) | (p[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* Append a recipient unless it is already there. Returns 0, or -1 on OOM. */
static int add_recipient(ingest_request_t *r, const char *user, size_t len)
{
    for (size_t i = 0; i < r->n_to; i++)
        if (strlen(r->to[i]) == len && memcmp(r->to[i], user, len) == 0)
            return 0;
    char *copy = strndup(user, len);
    if (!copy)
        return -1;
    r->to[r->n_to++] = copy;
    return 0;
}

static int check_user(const char *u, size_t len, size_t index, const char **reason, char *err,
                      size_t n)
{
    if (len == 0)
        return fail(reason, "empty_user_id", err, n, "to[%zu] is an empty user id", index);
    if (len > INGEST_MAX_USER)
        return fail(reason, "user_id_too_long", err, n,
                    "to[%zu] is %zu bytes; user ids are at most %d", index, len, INGEST_MAX_USER);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)u[i] < 0x20 || u[i] == 0x7f)
            return fail(reason, "bad_user_id", err, n, "to[%zu] holds a control character", index);
    return 0;
}

/* The channel rules, before any other: a channel with to (even empty) or
 * broadcast: true is refused, and so is a name outside lib/chan.h's set. */
static int check_channel(const char *channel, size_t len, int to_present, int broadcast,
                         const char **reason, char *err, size_t n)
{
    if (to_present || broadcast)
        return fail(reason, "channel_and_other", err, n,
                    "give exactly one of to, broadcast or channel");
    if (!chan_name_ok(channel, len))
        return fail(reason, "bad_channel", err, n,
                    "channel must be 1..%d bytes of A-Z a-z 0-9 _ . : @ -", CHAN_MAX_NAME);
    return 0;
}

static int check_common(ingest_request_t *r, int has_to, size_t n_to, const char **reason,
                        char *err, size_t n)
{
    if (r->channel)
        has_to = 1; /* a channel is the recipient; to and broadcast were checked */
    if (has_to && r->broadcast)
        return fail(reason, "to_and_broadcast", err, n, "give either to or broadcast, not both");
    if (!has_to && !r->broadcast)
        return fail(reason, "no_recipients", err, n, "give to (1..%d user ids) or broadcast: true",
                    INGEST_MAX_RECIPIENTS);
    if (has_to && n_to > INGEST_MAX_RECIPIENTS)
        return fail(reason, "too_many_recipients", err, n, "%zu recipients; at most %d", n_to,
                    INGEST_MAX_RECIPIENTS);
    if (strlen(r->topic) > INGEST_MAX_TOPIC)
        return fail(reason, "bad_field", err, n, "topic is over %d bytes", INGEST_MAX_TOPIC);
    if (r->idem && (!*r->idem || strlen(r->idem) > INGEST_MAX_IDEM))
        return fail(reason, "bad_field", err, n, "id must be 1..%d bytes", INGEST_MAX_IDEM);
    if (r->ttl > INGEST_MAX_TTL)
        return fail(reason, "bad_ttl", err, n, "ttl is over %u seconds", INGEST_MAX_TTL);
    if (r->broadcast)
        r->ttl = 0; /* broadcasts are live only */
    return 0;
}

static int decode_json(const void *buf, size_t len, ingest_request_t *r, const char **reason,
                       char *err, size_t n)
{
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    if (!root)
        return fail(reason, "invalid_json", err, n, "invalid JSON at line %d column %d: %s",
                    jerr.line, jerr.column, jerr.text);
    int rc = -1;
    if (!json_is_object(root)) {
        fail(reason, "invalid_json", err, n, "the publish must be a JSON object");
        goto done;
    }
    json_t *to = json_object_get(root, "to"), *bc = json_object_get(root, "broadcast");
    json_t *topic = json_object_get(root, "topic"), *data = json_object_get(root, "data");
    json_t *ttl = json_object_get(root, "ttl"), *id = json_object_get(root, "id");
    json_t *chan = json_object_get(root, "channel");
    if (bc && !json_is_boolean(bc)) {
        fail(reason, "bad_field", err, n, "broadcast must be true or false");
        goto done;
    }
    r->broadcast = json_is_true(bc);
    if (chan) {
        if (!json_is_string(chan)) {
            fail(reason, "bad_channel", err, n, "channel must be a string");
            goto done;
        }
        if (check_channel(json_string_value(chan), json_string_length(chan), to != NULL,
                          r->broadcast, reason, err, n))
            goto done;
        r->channel = strdup(json_string_value(chan));
    }
    if (to && !json_is_array(to)) {
        fail(reason, "bad_field", err, n, "to must be an array of user ids");
        goto done;
    }
    if (topic && !json_is_string(topic)) {
        fail(reason, "bad_field", err, n, "topic must be a string");
        goto done;
    }
    r->topic = strdup(topic ? json_string_value(topic) : "");
    if (id && !json_is_string(id)) {
        fail(reason, "bad_field", err, n, "id must be a string");
        goto done;
    }
    r->idem = id ? strdup(json_string_value(id)) : NULL;
    if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 0)) {
        fail(reason, "bad_ttl", err, n, "ttl must be a whole number of seconds, 0 or more");
        goto done;
    }
    json_int_t ttl_v = ttl ? json_integer_value(ttl) : INGEST_DEFAULT_TTL;
    r->ttl = ttl_v > (json_int_t)INGEST_MAX_TTL ? INGEST_MAX_TTL + 1 : (uint32_t)ttl_v;
    size_t n_to = to ? json_array_size(to) : 0;
    /* A present "to" counts as a choice of recipients even when empty, so
     * {"to": [], "broadcast": true} is refused like any other mix. */
    int has_to = to != NULL;
    if (chan && !r->channel) {
        fail(reason, "bad_field", err, n, "out of memory");
        goto done;
    }
    if (to && n_to == 0 && !r->broadcast) {
        fail(reason, "no_recipients", err, n, "to is empty");
        goto done;
    }
    if (check_common(r, has_to, n_to, reason, err, n))
        goto done;
    r->content_type = strdup(JSON_CT);
    char *text = json_dumps(data ? data : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        fail(reason, "bad_field", err, n, "data cannot be encoded");
        goto done;
    }
    r->data = (unsigned char *)text;
    r->data_len = strlen(text);
    if (has_to) {
        r->to = calloc(n_to, sizeof *r->to);
        for (size_t i = 0; i < n_to; i++) {
            json_t *u = json_array_get(to, i);
            if (!json_is_string(u)) {
                fail(reason, "bad_user_id", err, n, "to[%zu] is not a string", i);
                goto done;
            }
            const char *s = json_string_value(u);
            size_t sl = json_string_length(u);
            if (strlen(s) != sl) {
                fail(reason, "bad_user_id", err, n, "to[%zu] holds a NUL character", i);
                goto done;
            }
            if (check_user(s, sl, i, reason, err, n) || add_recipient(r, s, sl))
                goto done;
        }
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static int decode_protobuf(const void *buf, size_t len, ingest_request_t *r, const char **reason,
                           char *err, size_t n)
{
    Push__V1__PushRequest *pb = push__v1__push_request__unpack(NULL, len, buf);
    if (!pb)
        return fail(reason, "not_json_or_protobuf", err, n,
                    "the publish is neither a JSON object nor a push.v1.PushRequest");
    int rc = -1;
    if ((pb->topic && !utf8_valid(pb->topic)) || (pb->id && !utf8_valid(pb->id)) ||
        (pb->content_type && !utf8_valid(pb->content_type))) {
        fail(reason, "bad_field", err, n, "topic, id and content_type must be UTF-8 text");
        goto done;
    }
    r->broadcast = pb->has_broadcast && pb->broadcast;
    if (pb->channel) {
        /* protobuf cannot tell an empty `to` from an absent one */
        if (check_channel(pb->channel, strlen(pb->channel), pb->n_to > 0, r->broadcast, reason, err,
                          n))
            goto done;
        if (!(r->channel = strdup(pb->channel))) {
            fail(reason, "bad_field", err, n, "out of memory");
            goto done;
        }
    }
    r->topic = strdup(pb->topic ? pb->topic : "");
    r->idem = pb->id ? strdup(pb->id) : NULL;
    r->ttl = pb->has_ttl ? pb->ttl : INGEST_DEFAULT_TTL;
    if (check_common(r, pb->n_to > 0, pb->n_to, reason, err, n))
        goto done;
    r->content_type = strdup(pb->content_type && *pb->content_type ? pb->content_type
                                                                   : "application/octet-stream");
    if (strncasecmp(r->content_type, JSON_CT, strlen(JSON_CT)) == 0) {
        json_t *j = pb->has_data ? json_loadb((const char *)pb->data.data, pb->data.len,
                                              JSON_DECODE_ANY, NULL)
                                 : NULL;
        if (!j) {
            fail(reason, "invalid_json", err, n,
                 "content_type is application/json but data is not JSON");
            goto done;
        }
        json_decref(j);
    }
    r->data_len = pb->has_data ? pb->data.len : 0;
    r->data = malloc(r->data_len + 1);
    if (r->data_len)
        memcpy(r->data, pb->data.data, r->data_len);
    r->to = pb->n_to ? calloc(pb->n_to, sizeof *r->to) : NULL;
    for (size_t i = 0; i < pb->n_to; i++) {
        if (check_user(pb->to[i], strlen(pb->to[i]), i, reason, err, n))
            goto done;
        if (!utf8_valid(pb->to[i])) {
            fail(reason, "bad_user_id", err, n, "to[%zu] is not UTF-8 text", i);
            goto done;
        }
        if (add_recipient(r, pb->to[i], strlen(pb->to[i])))
            goto done;
    }
    rc = 0;
done:
    push__v1__push_request__free_unpacked(pb, NULL);
    return rc;
}

int ingest_decode(const void *buf, size_t len, const char *content_type, ingest_request_t *out,
                  const char **reason, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    out->json = ingest_is_json(buf, len, content_type);
    if (len > INGEST_MAX_BYTES)
        return fail(reason, "payload_too_large", err, err_size,
                    "the publish is %zu bytes; at most %d", len, INGEST_MAX_BYTES);
    int rc = out->json ? decode_json(buf, len, out, reason, err, err_size)
                       : decode_protobuf(buf, len, out, reason, err, err_size);
    if (rc == 0 && (!out->topic || !out->content_type || !out->data ||
                    (out->n_to == 0 && !out->broadcast && !out->channel)))
        rc = fail(reason, "bad_field", err, err_size, "out of memory");
    if (rc != 0)
        ingest_free(out);
    return rc;
}
