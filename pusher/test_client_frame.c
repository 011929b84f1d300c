/* Unit tests of pusher/client_frame: every shape a client may send, and the
 * malformed ones the pusher must ignore and count. */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "client_frame.h"

static void parse(const char *s, client_frame_t *cf)
{
    client_frame_parse(s, strlen(s), cf);
}

static void ack_with_one_id(void)
{
    client_frame_t cf;
    parse("{\"type\":\"ack\",\"id\":\"m1\"}", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_ACK);
    CHECK_INT(cf.n_ids, 1);
    CHECK_STR(cf.ids[0], "m1");
    client_frame_free(&cf);
    CHECK_INT(cf.n_ids, 0);
    CHECK(cf.ids == NULL);
}

static void ack_with_ids_keeps_their_order(void)
{
    client_frame_t cf;
    parse(" {\"ids\":[\"a\",\"b\",\"c\"],\n\"type\":\"ack\"} ", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_ACK);
    CHECK_INT(cf.n_ids, 3);
    CHECK_STR(cf.ids[0], "a");
    CHECK_STR(cf.ids[1], "b");
    CHECK_STR(cf.ids[2], "c");
    client_frame_free(&cf);
}

static void unknown_fields_are_tolerated(void)
{
    client_frame_t cf;
    parse("{\"type\":\"ack\",\"id\":\"m1\",\"extra\":{\"x\":[1]}}", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_ACK);
    CHECK_INT(cf.n_ids, 1);
    client_frame_free(&cf);
}

static void ping_is_recognised(void)
{
    client_frame_t cf;
    parse("{\"type\":\"ping\"}", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_PING);
    CHECK_INT(cf.n_ids, 0);
    client_frame_free(&cf);
}

static void id_length_bounds(void)
{
    char text[400];
    client_frame_t cf;
    snprintf(text, sizeof text, "{\"type\":\"ack\",\"id\":\"%0*d\"}", CLIENT_FRAME_MAX_ID, 0);
    parse(text, &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_ACK);
    CHECK_INT(strlen(cf.ids[0]), CLIENT_FRAME_MAX_ID);
    client_frame_free(&cf);
    snprintf(text, sizeof text, "{\"type\":\"ack\",\"id\":\"%0*d\"}", CLIENT_FRAME_MAX_ID + 1, 0);
    parse(text, &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_MALFORMED);
    CHECK_INT(cf.n_ids, 0);
}

static char *ids_frame(size_t n)
{
    char *text = malloc(32 + n * 6);
    size_t len = (size_t)sprintf(text, "{\"type\":\"ack\",\"ids\":[");
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "%s\"%zx\"", i ? "," : "", i % 0xfff);
    strcpy(text + len, "]}");
    return text;
}

static void ids_count_bounds(void)
{
    client_frame_t cf;
    char *text = ids_frame(CLIENT_FRAME_MAX_IDS);
    parse(text, &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_ACK);
    CHECK_INT(cf.n_ids, CLIENT_FRAME_MAX_IDS);
    client_frame_free(&cf);
    free(text);
    text = ids_frame(CLIENT_FRAME_MAX_IDS + 1);
    parse(text, &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_MALFORMED);
    CHECK_INT(cf.n_ids, 0);
    free(text);
}

static void malformed_frames_are_recognised(void)
{
    const char *bad[] = {
        "",
        " ",
        "not json",
        "[]",
        "\"ack\"",
        "null",
        "{}",
        "{\"type\":\"nope\"}",
        "{\"type\":1}",
        "{\"type\":null}",
        "{\"type\":\"ACK\",\"id\":\"a\"}",
        "{\"type\":\"ack\"}",
        "{\"type\":\"ack\",\"id\":\"\"}",
        "{\"type\":\"ack\",\"id\":5}",
        "{\"type\":\"ack\",\"id\":null}",
        "{\"type\":\"ack\",\"ids\":[]}",
        "{\"type\":\"ack\",\"ids\":[1]}",
        "{\"type\":\"ack\",\"ids\":\"a\"}",
        "{\"type\":\"ack\",\"ids\":[\"a\",\"\"]}",
        "{\"type\":\"ack\",\"ids\":[\"a\",[\"b\"]]}",
        "{\"type\":\"ack\",\"id\":\"a\",\"ids\":[\"b\"]}",
        "{\"type\":\"ack\",\"type\":\"ack\",\"id\":\"a\"}", /* duplicate key */
        "{\"type\":\"ack\",\"id\":\"a\\u0000b\"}",          /* NUL inside an id */
        "{\"type\":\"ack\",\"id\":\"a\"} trailing",
        "{\"type\":\"ack\",\"id\":\"a\"",     /* truncated */
        "{\"type\":\"ack\",\"id\":\"\xff\"}", /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        client_frame_t cf;
        parse(bad[i], &cf);
        if (cf.kind != CLIENT_FRAME_MALFORMED)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK_INT(cf.kind, CLIENT_FRAME_MALFORMED);
        CHECK_INT(cf.n_ids, 0);
        CHECK(cf.ids == NULL);
        client_frame_free(&cf); /* harmless on a malformed frame */
    }
}

static void embedded_nul_bytes_in_the_text_are_malformed(void)
{
    static const char text[] = "{\"type\":\"ping\"}\0{\"x\":1}";
    client_frame_t cf;
    client_frame_parse(text, sizeof text - 1, &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_MALFORMED);
    client_frame_parse(text, 15, &cf); /* the same bytes without the tail */
    CHECK_INT(cf.kind, CLIENT_FRAME_PING);
}

static void subscribe_with_since_and_token(void)
{
    client_frame_t cf;
    parse("{\"type\":\"subscribe\",\"channel\":\"room.42\",\"since\":\"m1\",\"token\":\"a.b.c\"}",
          &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_SUBSCRIBE);
    CHECK(cf.error == NULL);
    CHECK_STR(cf.channel, "room.42");
    CHECK_STR(cf.since, "m1");
    CHECK_STR(cf.token, "a.b.c");
    client_frame_free(&cf);
    CHECK(cf.channel == NULL && cf.since == NULL && cf.token == NULL);
    parse("{\"type\":\"subscribe\",\"channel\":\"a-b_c.d:e@f\"}", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_SUBSCRIBE);
    CHECK(cf.error == NULL && cf.since == NULL && cf.token == NULL);
    client_frame_free(&cf);
    parse("{\"type\":\"unsubscribe\",\"channel\":\"room.42\",\"since\":7}", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_UNSUBSCRIBE); /* since means nothing here */
    CHECK(cf.error == NULL);
    CHECK_STR(cf.channel, "room.42");
    client_frame_free(&cf);
}

static void bad_subscribe_frames_say_why_and_echo_what_they_can(void)
{
    char long_name[400];
    snprintf(long_name, sizeof long_name, "{\"type\":\"subscribe\",\"channel\":\"%0256d\"}", 0);
    struct {
        const char *text;
        const char *echo; /* NULL: nothing echoed */
    } cases[] = {
        {"{\"type\":\"subscribe\"}", NULL},
        {"{\"type\":\"subscribe\",\"channel\":null}", NULL},
        {"{\"type\":\"subscribe\",\"channel\":\"\"}", ""},
        {"{\"type\":\"subscribe\",\"channel\":\"a b\"}", "a b"},
        {"{\"type\":\"subscribe\",\"channel\":\"ok\",\"since\":\"\"}", "ok"},
        {"{\"type\":\"subscribe\",\"channel\":\"ok\",\"since\":1}", "ok"},
        {"{\"type\":\"subscribe\",\"channel\":\"ok\",\"token\":\"\"}", "ok"},
        {"{\"type\":\"unsubscribe\",\"channel\":\"*\"}", "*"},
        {long_name, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        client_frame_t cf;
        parse(cases[i].text, &cf);
        CHECK(cf.kind == CLIENT_FRAME_SUBSCRIBE || cf.kind == CLIENT_FRAME_UNSUBSCRIBE);
        CHECK(cf.error != NULL);
        if (cases[i].echo)
            CHECK_STR(cf.channel, cases[i].echo);
        else
            CHECK(cf.channel == NULL);
        CHECK(cf.since == NULL && cf.token == NULL);
        client_frame_free(&cf);
    }
    client_frame_t cf; /* a NUL inside a string is not JSON the parser takes: malformed */
    parse("{\"type\":\"subscribe\",\"channel\":\"a\\u0000b\"}", &cf);
    CHECK_INT(cf.kind, CLIENT_FRAME_MALFORMED);
    CHECK(cf.channel == NULL && cf.error == NULL);
}

CHECK_MAIN(CHECK_CASE(ack_with_one_id), CHECK_CASE(subscribe_with_since_and_token),
           CHECK_CASE(bad_subscribe_frames_say_why_and_echo_what_they_can),
           CHECK_CASE(ack_with_ids_keeps_their_order), CHECK_CASE(unknown_fields_are_tolerated),
           CHECK_CASE(ping_is_recognised), CHECK_CASE(id_length_bounds),
           CHECK_CASE(ids_count_bounds), CHECK_CASE(malformed_frames_are_recognised),
           CHECK_CASE(embedded_nul_bytes_in_the_text_are_malformed))
