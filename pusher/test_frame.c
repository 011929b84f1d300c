/* Unit tests of pusher/frame: the exact bytes of every frame the pusher sends. */
#include <stdlib.h>

#include "check.h"
#include "frame.h"

static Push__V1__Message msg(const char *id, const char *topic, const char *data, size_t n,
                             const char *ct)
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
    CHECK_STR(
        (char *)frame_payload(f),
        "{\"type\":\"message\",\"id\":\"id1\",\"topic\":\"order.paid\",\"data\":{\"a\":[1,2]}}");
    CHECK_INT(f->len, strlen((char *)frame_payload(f)));
    CHECK_STR(f->id, "id1");
    frame_unref(f);
}

static void channel_message_names_its_channel_and_is_outside_user_order(void)
{
    Push__V1__Message m = msg("id3", "t", "7", 1, "application/json");
    m.channel = "room.42";
    frame_t *f = frame_message(&m);
    CHECK_STR((char *)frame_payload(f),
              "{\"type\":\"message\",\"id\":\"id3\",\"channel\":\"room.42\",\"topic\":\"t\","
              "\"data\":7}");
    CHECK_INT(f->len, strlen((char *)frame_payload(f)));
    CHECK_INT(f->broadcast, 1);
    frame_unref(f);
}

static void other_data_is_base64_with_encoding(void)
{
    Push__V1__Message m = msg("id2", "bin", "\x00\x01\xff", 3, "application/octet-stream");
    frame_t *f = frame_message(&m);
    CHECK_STR((char *)frame_payload(f), "{\"type\":\"message\",\"id\":\"id2\",\"topic\":\"bin\","
                                        "\"data\":\"AAH/\",\"encoding\":\"base64\"}");
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
    CHECK_STR((char *)frame_payload(f),
              "{\"type\":\"welcome\",\"user\":\"u1\",\"node\":\"n1\",\"conn\":\"c1\"}");
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

static void empty_or_absent_fields_still_make_valid_frames(void)
{
    Push__V1__Message m = PUSH__V1__MESSAGE__INIT;
    m.id = "id3"; /* no topic, no data, no content type */
    frame_t *f = frame_message(&m);
    CHECK_STR((char *)frame_payload(f), "{\"type\":\"message\",\"id\":\"id3\",\"topic\":\"\","
                                        "\"data\":\"\",\"encoding\":\"base64\"}");
    frame_unref(f);
    /* empty JSON data is not a JSON value: it goes out as empty base64 */
    Push__V1__Message e = msg("id4", "t", "", 0, "application/json");
    f = frame_message(&e);
    CHECK_STR((char *)frame_payload(f), "{\"type\":\"message\",\"id\":\"id4\",\"topic\":\"t\","
                                        "\"data\":\"\",\"encoding\":\"base64\"}");
    frame_unref(f);
}

static void json_content_type_matches_with_parameters_and_any_case(void)
{
    Push__V1__Message m = msg("id5", "t", "\"hi\"", 4, "Application/JSON; charset=utf-8");
    frame_t *f = frame_message(&m);
    CHECK_STR((char *)frame_payload(f),
              "{\"type\":\"message\",\"id\":\"id5\",\"topic\":\"t\",\"data\":\"hi\"}");
    frame_unref(f);
}

static void utf8_topics_pass_and_invalid_utf8_becomes_empty(void)
{
    Push__V1__Message m = msg("id6", "caf\xc3\xa9", "1", 1, "application/json");
    frame_t *f = frame_message(&m);
    CHECK_STR((char *)frame_payload(f),
              "{\"type\":\"message\",\"id\":\"id6\",\"topic\":\"caf\xc3\xa9\",\"data\":1}");
    frame_unref(f);
    Push__V1__Message bad = msg("id7", "\xff\xfe", "1", 1, "application/json");
    f = frame_message(&bad);
    CHECK_STR((char *)frame_payload(f),
              "{\"type\":\"message\",\"id\":\"id7\",\"topic\":\"\",\"data\":1}");
    frame_unref(f);
}

static void welcome_escapes_its_strings(void)
{
    frame_t *f = frame_welcome("u\"1", "n1", "c1");
    CHECK_STR((char *)frame_payload(f),
              "{\"type\":\"welcome\",\"user\":\"u\\\"1\",\"node\":\"n1\",\"conn\":\"c1\"}");
    frame_unref(f);
}

static void frames_have_lws_headroom_before_the_payload(void)
{
    frame_t *f = frame_text("abc", 3);
    CHECK_INT(frame_payload(f) - f->buf, FRAME_PRE);
    CHECK_INT(f->len, 3);
    CHECK_INT(frame_payload(f)[3], 0);
    frame_unref(f);
}

CHECK_MAIN(CHECK_CASE(channel_message_names_its_channel_and_is_outside_user_order),
           CHECK_CASE(json_data_is_spliced_as_is), CHECK_CASE(other_data_is_base64_with_encoding),
           CHECK_CASE(ids_and_topics_are_escaped),
           CHECK_CASE(welcome_has_the_contract_fields_in_order),
           CHECK_CASE(shared_frame_lives_until_the_last_reference),
           CHECK_CASE(empty_or_absent_fields_still_make_valid_frames),
           CHECK_CASE(json_content_type_matches_with_parameters_and_any_case),
           CHECK_CASE(utf8_topics_pass_and_invalid_utf8_becomes_empty),
           CHECK_CASE(welcome_escapes_its_strings),
           CHECK_CASE(frames_have_lws_headroom_before_the_payload))
