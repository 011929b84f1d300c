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
    CHECK_INT(
        decode("{\"to\":[\"u1\",\"u2\",\"u1\"],\"topic\":\"order.paid\",\"data\":{\"a\":[1,2]}}",
               &r),
        0);
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
    CHECK_INT(
        decode(" \n{\"broadcast\":true,\"topic\":\"news\",\"data\":\"hello\",\"ttl\":60}", &r), 0);
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
    CHECK_INT(
        ingest_decode(body, 3, "application/json; charset=utf-8", &r, &reason, err, sizeof err),
        -1);
    CHECK_STR(reason, "invalid_json"); /* JSON, but not an object */
    CHECK_INT(r.json, 1);
}

static void each_bad_json_input_has_its_reason(void)
{
    struct {
        const char *body, *reason;
    } cases[] = {
        {"{\"to\":[\"u1\"],", "invalid_json"},
        {"{\"to\":[\"u1\"],\"broadcast\":true}", "to_and_broadcast"},
        {"{\"to\":[],\"broadcast\":true}", "to_and_broadcast"},
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

static void protobuf_strings_must_be_utf8(void)
{
    ingest_request_t r;
    uint8_t buf[256];
    char bad_user[] = "\xff\xfe", *to_bad[] = {bad_user}, *to_ok[] = {"u1"};
    Push__V1__PushRequest pr = PUSH__V1__PUSH_REQUEST__INIT;
    pr.n_to = 1;
    pr.to = to_bad;
    size_t n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "bad_user_id");
    CHECK_STR(err, "to[0] is not UTF-8 text");

    pr.to = to_ok;
    const char *bad_topics[] = {"\xc3\x28", "\xc0\xaf" /* overlong '/' */,
                                "\xed\xa0\x80" /* surrogate */,
                                "\xf4\x90\x80\x80" /* over U+10FFFF */, "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad_topics / sizeof bad_topics[0]; i++) {
        pr.topic = (char *)bad_topics[i];
        n = pack(&pr, buf);
        reason = NULL;
        CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
        CHECK_STR(reason, "bad_field");
    }
    pr.topic = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"; /* é, €, an emoji */
    n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), 0);
    CHECK_STR(r.topic, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    ingest_free(&r);

    pr.topic = NULL;
    pr.id = "\x80";
    n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "bad_field");
}

static void protobuf_broadcast_is_live_only_and_json_data_is_kept(void)
{
    ingest_request_t r;
    uint8_t buf[512];
    Push__V1__PushRequest pr = PUSH__V1__PUSH_REQUEST__INIT;
    pr.has_broadcast = 1;
    pr.broadcast = 1;
    pr.has_ttl = 1;
    pr.ttl = 3600;
    pr.content_type = "application/json";
    pr.has_data = 1;
    pr.data.data = (uint8_t *)"{\"a\":1}";
    pr.data.len = 7;
    pr.id = "key-7";
    size_t n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), 0);
    CHECK_INT(r.json, 0);
    CHECK_INT(r.broadcast, 1);
    CHECK_INT(r.n_to, 0);
    CHECK_INT(r.ttl, 0);
    CHECK_INT(r.data_len, 7);
    CHECK_INT(memcmp(r.data, "{\"a\":1}", 7), 0);
    CHECK_STR(r.content_type, "application/json");
    CHECK_STR(r.idem, "key-7");
    CHECK_STR(r.topic, "");
    ingest_free(&r);

    /* absent ttl means the default; absent content_type means bytes */
    char *to[] = {"u1"};
    Push__V1__PushRequest plain = PUSH__V1__PUSH_REQUEST__INIT;
    plain.n_to = 1;
    plain.to = to;
    n = pack(&plain, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), 0);
    CHECK_INT(r.ttl, 86400);
    CHECK_INT(r.data_len, 0);
    CHECK_STR(r.content_type, "application/octet-stream");
    ingest_free(&r);
}

static void protobuf_limits_have_their_reasons(void)
{
    ingest_request_t r;
    static uint8_t buf[64 * 1024];
    char long_user[130], long_topic[258];
    memset(long_user, 'x', 129), long_user[129] = '\0';
    memset(long_topic, 't', 257), long_topic[257] = '\0';
    char *empty[] = {""}, *too_long[] = {long_user}, *ok[] = {"u1"};
    struct {
        char **to;
        const char *topic;
        int has_ttl;
        uint32_t ttl;
        const char *reason;
    } cases[] = {
        {empty, NULL, 0, 0, "empty_user_id"},
        {too_long, NULL, 0, 0, "user_id_too_long"},
        {ok, long_topic, 0, 0, "bad_field"},
        {ok, NULL, 1, INGEST_MAX_TTL + 1, "bad_ttl"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Push__V1__PushRequest pr = PUSH__V1__PUSH_REQUEST__INIT;
        pr.n_to = 1;
        pr.to = cases[i].to;
        pr.topic = (char *)cases[i].topic;
        pr.has_ttl = cases[i].has_ttl;
        pr.ttl = cases[i].ttl;
        size_t n = pack(&pr, buf);
        reason = NULL;
        CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
        CHECK_STR(reason, cases[i].reason);
    }
    char **many = malloc(1001 * sizeof *many);
    for (int i = 0; i < 1001; i++) {
        many[i] = malloc(8);
        snprintf(many[i], 8, "u%d", i);
    }
    Push__V1__PushRequest pr = PUSH__V1__PUSH_REQUEST__INIT;
    pr.n_to = 1001;
    pr.to = many;
    size_t n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "too_many_recipients");
    for (int i = 0; i < 1001; i++)
        free(many[i]);
    free(many);
}

static void channel_publishes_are_decoded_and_checked(void)
{
    ingest_request_t r;
    CHECK_INT(decode("{\"channel\":\"room.42\",\"topic\":\"t\",\"data\":1,\"ttl\":60}", &r), 0);
    CHECK_STR(r.channel, "room.42");
    CHECK_INT(r.n_to, 0);
    CHECK_INT(r.broadcast, 0);
    CHECK_INT(r.ttl, 60);
    ingest_free(&r);
    CHECK_INT(decode("{\"channel\":\"a\",\"broadcast\":false}", &r), 0);
    CHECK_INT(r.ttl, 86400);
    ingest_free(&r);
    char long_name[300];
    snprintf(long_name, sizeof long_name, "{\"channel\":\"%0256d\"}", 0);
    struct {
        const char *body, *reason;
    } cases[] = {
        {"{\"channel\":\"r\",\"to\":[\"u1\"]}", "channel_and_other"},
        {"{\"channel\":\"r\",\"to\":[]}", "channel_and_other"},
        {"{\"channel\":\"r\",\"broadcast\":true}", "channel_and_other"},
        {"{\"channel\":\"\"}", "bad_channel"},
        {"{\"channel\":\"room 1\"}", "bad_channel"},
        {"{\"channel\":\"room*\"}", "bad_channel"},
        {"{\"channel\":7}", "bad_channel"},
        {long_name, "bad_channel"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reason = NULL;
        CHECK_INT(decode(cases[i].body, &r), -1);
        CHECK_STR(reason, cases[i].reason);
    }
    /* protobuf: the same rules */
    static uint8_t buf[4096];
    Push__V1__PushRequest pr = PUSH__V1__PUSH_REQUEST__INIT;
    pr.channel = "room.42";
    size_t n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), 0);
    CHECK_STR(r.channel, "room.42");
    ingest_free(&r);
    char *to[] = {"u1"};
    pr.n_to = 1;
    pr.to = to;
    n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "channel_and_other");
    pr.n_to = 0;
    pr.channel = "bad/name";
    n = pack(&pr, buf);
    CHECK_INT(ingest_decode(buf, n, NULL, &r, &reason, err, sizeof err), -1);
    CHECK_STR(reason, "bad_channel");
}

CHECK_MAIN(CHECK_CASE(json_unicast_is_decoded_with_defaults),
           CHECK_CASE(channel_publishes_are_decoded_and_checked),
           CHECK_CASE(json_broadcast_is_live_only_and_keeps_id_and_ttl_rules),
           CHECK_CASE(content_type_header_selects_json),
           CHECK_CASE(each_bad_json_input_has_its_reason), CHECK_CASE(recipient_and_size_limits),
           CHECK_CASE(protobuf_request_is_decoded), CHECK_CASE(protobuf_rejections),
           CHECK_CASE(protobuf_strings_must_be_utf8),
           CHECK_CASE(protobuf_broadcast_is_live_only_and_json_data_is_kept),
           CHECK_CASE(protobuf_limits_have_their_reasons))
