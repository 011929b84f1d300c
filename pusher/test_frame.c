/* Unit tests of pusher/frame and pusher/client_frame: exact bytes out, every
 * shape of client frame in. */
#include <stdlib.h>

#include "check.h"
#include "client_frame.h"
#include "frame.h"

static Push__V1__Message msg(const char *id, const char *topic, const char *data, size_t n, const char *ct)
{
    Push__V1__Message m = PUSH__V1__MESSAGE__INIT;
    m.id = (char *)id;
    m.topic = (char *)topic;
    m.has_data = 1;
    m.data.data = (uint8_t *)data;
    m.data.len = n;
    m.content_type = (char *)ct;
    return m;
}

static void json_data_is_spliced_as_is(void)
{
    Push__V1__Message m = msg("id1", "order.paid", "{\"a\":[1,2]}", 11, "application/json");
    frame_t *f = frame_message(&m);
    CHECK_STR((char *)frame_payload(f),
              "{\"type\":\"message\",\"id\":\"id1\",\"topic\":\"order.paid\",\"data\":{\"a\":[1,2]}}");
    CHECK_INT(f->len, strlen((char *)frame_payload(f)));
    CHECK_STR(f->id, "id1");
    frame_unref(f);
}

static void other_data_is_base64_with_encoding(void)
{
    Push__V1__Message m = msg("id2", "bin", "\x00\x01\xff", 3, "application/octet-stream");
    frame_t *f = frame_message(&m);
    CHECK_STR((char *)frame_payload(f),
              "{\"type\":\"message\",\"id\":\"id2\",\"topic\":\"bin\",\"data\":\"AAH/\",\"encoding\":\"base64\"}");
    frame_unref(f);
}

static void ids_and_topics_are_escaped(void)
{
    Push__V1__Message m = msg("a\"b", "t\\\n", "1", 1, "application/json");
    frame_t *f = frame_message(&m);
    CHECK_STR((char *)frame_payload(f),
              "{\"type\":\"message\",\"id\":\"a\\\"b\",\"topic\":\"t\\\\\\n\",\"data\":1}");
    frame_unref(f);
}

static void welcome_has_the_contract_fields_in_order(void)
{
    frame_t *f = frame_welcome("u1", "n1", "c1");
    CHECK_STR((char *)frame_payload(f), "{\"type\":\"welcome\",\"user\":\"u1\",\"node\":\"n1\",\"conn\":\"c1\"}");
    CHECK_STR(f->id, "");
    frame_unref(f);
}

static void shared_frame_lives_until_the_last_reference(void)
{
    frame_t *f = frame_text("x", 1);
    frame_ref(f);
    frame_ref(f);
    frame_unref(f);
    frame_unref(f);
    CHECK_INT(atomic_load(&f->refs), 1);
    frame_unref(f); /* freed: ASan would flag a leak or a double free */
}

static void parse(const char *s, client_frame_t *cf) { client_frame_parse(s, strlen(s), cf); }

static void acks_parse_with_id_or_ids(void)
{
    client_frame_t cf;
    parse("{\"type\":\"ack\",\"id\":\"m1\"}", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_ACK);
    CHECK_INT(cf.n_ids, 1);
    CHECK_STR(cf.ids[0], "m1");
    client_frame_free(&cf);
    parse("{\"ids\":[\"a\",\"b\"],\"type\":\"ack\"}", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_ACK);
    CHECK_INT(cf.n_ids, 2);
    CHECK_STR(cf.ids[1], "b");
    client_frame_free(&cf);
    parse("{\"type\":\"ping\"}", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_PING);
}

static void malformed_frames_are_recognised(void)
{
    const char *bad[] = {"", "not json", "[]", "{}", "{\"type\":\"nope\"}", "{\"type\":\"ack\"}",
                         "{\"type\":\"ack\",\"id\":\"\"}", "{\"type\":\"ack\",\"id\":5}",
                         "{\"type\":\"ack\",\"ids\":[]}", "{\"type\":\"ack\",\"ids\":[1]}",
                         "{\"type\":\"ack\",\"id\":\"a\",\"ids\":[\"b\"]}",
                         "{\"type\":\"ack\",\"type\":\"ack\",\"id\":\"a\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        client_frame_t cf;
        parse(bad[i], &cf);
        CHECK_INT(cf.kind, CLIENT_FRAME_MALFORMED);
        CHECK_INT(cf.n_ids, 0);
    }
    char big[200];
    snprintf(big, sizeof big, "{\"type\":\"ack\",\"id\":\"%0129d\"}", 0);
    client_frame_t cf;
    parse(big, &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_MALFORMED);
}

CHECK_MAIN(CHECK_CASE(json_data_is_spliced_as_is), CHECK_CASE(other_data_is_base64_with_encoding),
           CHECK_CASE(ids_and_topics_are_escaped), CHECK_CASE(welcome_has_the_contract_fields_in_order),
           CHECK_CASE(shared_frame_lives_until_the_last_reference), CHECK_CASE(acks_parse_with_id_or_ids),
           CHECK_CASE(malformed_frames_are_recognised))
