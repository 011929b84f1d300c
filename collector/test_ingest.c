/* Unit tests of collector/ingest: both encodings and every rejection reason. */
#include <stdlib.h>

#include "check.h"
#include "ingest.h"
#include "push/v1/push.pb-c.h"

static const char *reason;
static char err[256];

static int decode(const char *json, ingest_request_t *r)
{
    return ingest_decode(json, strlen(json), NULL, r, &reason, err, sizeof err);
}

static void json_unicast_is_decoded_with_defaults(void)
{
    ingest_request_t r;
    CHECK_INT(decode("{\"to\":[\"u1\",\"u2\",\"u1\"],\"topic\":\"order.paid\",\"data\":{\"a\":[1,2]}}", &r), 0);
    CHECK_INT(r.json, 1);
    CHECK_INT(r.n_to, 2); /* the repeated u1 folded */
    CHECK_STR(r.to[0], "u1");
    CHECK_STR(r.to[1], "u2");
    CHECK_STR(r.topic, "order.paid");
    CHECK_STR((char *)r.data, "{\"a\":[1,2]}");
    CHECK_STR(r.content_type, "application/json");
    CHECK_INT(r.ttl, 86400);
    CHECK(r.idem == NULL);
    ingest_free(&r);
}

static void json_broadcast_is_live_only_and_keeps_id_and_ttl_rules(void)
{
    ingest_request_t r;
    CHECK_INT(decode(" \n{\"broadcast\":true,\"topic\":\"news\",\"data\":\"hello\",\"ttl\":60}", &r), 0);
    CHECK_INT(r.broadcast, 1);
    CHECK_INT(r.ttl, 0);
    CHECK_STR((char *)r.data, "\"hello\"");
    ingest_free(&r);
    CHECK_INT(decode("{\"to\":[\"u\"],\"ttl\":0,\"id\":\"k-1\"}", &r), 0);
    CHECK_INT(r.ttl, 0);
    CHECK_STR(r.idem, "k-1");
    CHECK_STR((char *)r.data, "null");
    ingest_free(&r);
}

static void content_type_header_selects_json(void)
{
    ingest_request_t r;
    const char *body = "[1]";
    CHECK_INT(ingest_decode(body, 3, "application/json; charset=utf-8", &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "invalid_json"); /* JSON, but not an object */
    CHECK_INT(r.json, 1);
}

static void each_bad_json_input_has_its_reason(void)
{
    struct { const char *body, *reason; } cases[] = {
        {"{\"to\":[\"u1\"],", "invalid_json"},
        {"{\"to\":[\"u1\"],\"broadcast\":true}", "to_and_broadcast"},
        {"{\"data\":1}", "no_recipients"},
        {"{\"to\":[]}", "no_recipients"},
        {"{\"to\":[\"\"]}", "empty_user_id"},
        {"{\"to\":[\"a\\u0001\"]}", "bad_user_id"},
        {"{\"to\":[7]}", "bad_user_id"},
        {"{\"to\":\"u1\"}", "bad_field"},
        {"{\"to\":[\"u\"],\"ttl\":-1}", "bad_ttl"},
        {"{\"to\":[\"u\"],\"ttl\":1.5}", "bad_ttl"},
        {"{\"to\":[\"u\"],\"ttl\":99999999999}", "bad_ttl"},
        {"{\"to\":[\"u\"],\"broadcast\":\"yes\"}", "bad_field"},
        {"{\"to\":[\"u\"],\"id\":\"\"}", "bad_field"},
        {"{\"to\":[\"u\"],\"topic\":5}", "bad_field"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ingest_request_t r;
        reason = NULL;
        CHECK_INT(decode(cases[i].body, &r), -1);
        CHECK_STR(reason, cases[i].reason);
        CHECK(err[0] != '\0');
    }
}

static void recipient_and_size_limits(void)
{
    size_t cap = 20 * 1001 + 64;
    char *body = malloc(cap);
    size_t n = (size_t)sprintf(body, "{\"to\":[");
    for (int i = 0; i < 1001; i++)
        n += (size_t)sprintf(body + n, "%s\"u%d\"", i ? "," : "", i);
    sprintf(body + n, "]}");
    ingest_request_t r;
    CHECK_INT(decode(body, &r), -1);
    CHECK_STR(reason, "too_many_recipients");
    /* exactly 1000 is fine */
    n = (size_t)sprintf(body, "{\"to\":[");
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(body + n, "%s\"u%d\"", i ? "," : "", i);
    sprintf(body + n, "]}");
    CHECK_INT(decode(body, &r), 0);
    CHECK_INT(r.n_to, 1000);
    ingest_free(&r);
    free(body);

    char long_user[300];
    snprintf(long_user, sizeof long_user, "{\"to\":[\"%0129d\"]}", 0);
    CHECK_INT(decode(long_user, &r), -1);
    CHECK_STR(reason, "user_id_too_long");
    snprintf(long_user, sizeof long_user, "{\"to\":[\"%0128d\"]}", 0);
    CHECK_INT(decode(long_user, &r), 0);
    ingest_free(&r);

    size_t big = INGEST_MAX_BYTES + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    huge[0] = '{';
    CHECK_INT(ingest_decode(huge, big, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "payload_too_large");
    free(huge);
}

static size_t pack(Push__V1__PushRequest *pr, uint8_t *buf)
{
    return push__v1__push_request__pack(pr, buf);
}

static void protobuf_request_is_decoded(void)
{
    Push__V1__PushRequest pr = PUSH__V1__PUSH_REQUEST__INIT;
    char *to[] = {"u1"};
    pr.n_to = 1;
    pr.to = to;
    pr.topic = "bin";
    pr.has_data = 1;
    pr.data.data = (uint8_t *)"\x00\x01";
    pr.data.len = 2;
    pr.content_type = "application/octet-stream";
    pr.has_ttl = 1;
    pr.ttl = 5;
    uint8_t buf[256];
    size_t n = pack(&pr, buf);
    ingest_request_t r;
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), 0);
    CHECK_INT(r.json, 0);
    CHECK_INT(r.n_to, 1);
    CHECK_INT(r.data_len, 2);
    CHECK_INT(r.data[1], 1);
    CHECK_INT(r.ttl, 5);
    CHECK_STR(r.content_type, "application/octet-stream");
    ingest_free(&r);
}

static void protobuf_rejections(void)
{
    ingest_request_t r;
    const uint8_t garbage[] = {0xff, 0xfe, 0x00, 'g', 'a', 'r', 0x07};
    CHECK_INT(ingest_decode(garbage, sizeof garbage, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "not_json_or_protobuf");

    Push__V1__PushRequest pr = PUSH__V1__PUSH_REQUEST__INIT;
    uint8_t buf[256];
    size_t n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "no_recipients");

    char *to[] = {"u1"};
    pr.n_to = 1;
    pr.to = to;
    pr.has_broadcast = 1;
    pr.broadcast = 1;
    n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "to_and_broadcast");

    pr.has_broadcast = 0;
    pr.content_type = "application/json";
    pr.has_data = 1;
    pr.data.data = (uint8_t *)"{nope";
    pr.data.len = 5;
    n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "invalid_json");
}

CHECK_MAIN(CHECK_CASE(json_unicast_is_decoded_with_defaults),
           CHECK_CASE(json_broadcast_is_live_only_and_keeps_id_and_ttl_rules),
           CHECK_CASE(content_type_header_selects_json), CHECK_CASE(each_bad_json_input_has_its_reason),
           CHECK_CASE(recipient_and_size_limits), CHECK_CASE(protobuf_request_is_decoded),
           CHECK_CASE(protobuf_rejections))
