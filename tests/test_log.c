/* Unit tests of lib/log: the text line, and the JSON line a log shipper
 * parses (checked with jansson, a real JSON parser). */
#include <jansson.h>
#include <string.h>

#include "check.h"
#include "log.h"

/* 2026-11-25T04:30:00.123Z */
static const struct timespec when = {1795581000, 123456789};

static json_t *parse_line(const char *line, size_t len)
{
    CHECK(len > 0 && line[len - 1] == '\n');
    CHECK_INT(strchr(line, '\n') - line, (long long)len - 1); /* one line: no raw newline inside */
    json_error_t err;
    json_t *j = json_loadb(line, len, 0, &err);
    if (!j)
        fprintf(stderr, "not JSON (%s): %s", err.text, line);
    return j;
}

static void text_line_has_time_level_program_and_message(void)
{
    char out[256];
    size_t n = log_format_line(out, sizeof out, LOG_TEXT, LOG_WARN, &when, "collector", "hi there");
    CHECK_STR(out, "2026-11-25T04:30:00.123Z WARN  collector: hi there\n");
    CHECK_INT(n, strlen(out));
}

static void json_line_has_the_four_fields(void)
{
    char out[256];
    size_t n = log_format_line(out, sizeof out, LOG_JSON, LOG_INFO, &when, "pusher", "ready");
    CHECK_STR(out, "{\"ts\":\"2026-11-25T04:30:00.123Z\",\"level\":\"info\",\"prog\":\"pusher\","
                   "\"msg\":\"ready\"}\n");
    json_t *j = parse_line(out, n);
    CHECK(j != NULL);
    CHECK_INT(json_object_size(j), 4);
    CHECK_STR(json_string_value(json_object_get(j, "ts")), "2026-11-25T04:30:00.123Z");
    CHECK_STR(json_string_value(json_object_get(j, "level")), "info");
    CHECK_STR(json_string_value(json_object_get(j, "prog")), "pusher");
    CHECK_STR(json_string_value(json_object_get(j, "msg")), "ready");
    json_decref(j);
}

static void json_escapes_quotes_backslashes_newlines_and_controls(void)
{
    const char *msg = "bad \"user\" a\\b\nsecond line\r\tend\x01\x7f";
    char out[512];
    size_t n = log_format_line(out, sizeof out, LOG_JSON, LOG_ERROR, &when, "authd", msg);
    CHECK(strstr(out,
                 "\"msg\":\"bad \\\"user\\\" a\\\\b\\nsecond line\\r\\tend\\u0001\\u007f\"}\n") !=
          NULL);
    json_t *j = parse_line(out, n);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "msg")), msg);
    CHECK_STR(json_string_value(json_object_get(j, "level")), "error");
    json_decref(j);
}

static void json_keeps_utf8_and_replaces_invalid_bytes(void)
{
    /* é (2 bytes), € (3), 😀 (4) kept; a lone 0xff, a cut sequence and an
     * overlong '/' (0xc0 0xaf) each become U+FFFD, byte by byte. */
    const char *msg = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xff|\xe2\x82|\xc0\xaf";
    char out[512];
    size_t n = log_format_line(out, sizeof out, LOG_JSON, LOG_INFO, &when, "t", msg);
    json_t *j = parse_line(out, n);
    CHECK(j != NULL);
    CHECK_STR(json_string_value(json_object_get(j, "msg")),
              "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
              "\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(j);
}

static void json_line_cut_to_the_buffer_stays_json(void)
{
    char msg[300];
    memset(msg, '"', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    char out[120];
    size_t n = log_format_line(out, sizeof out, LOG_JSON, LOG_INFO, &when, "t", msg);
    CHECK(n < sizeof out);
    CHECK_INT(n, strlen(out));
    json_t *j = parse_line(out, n);
    CHECK(j != NULL);
    const char *got = json_string_value(json_object_get(j, "msg"));
    CHECK(got != NULL && strlen(got) > 0 && strspn(got, "\"") == strlen(got));
    json_decref(j);
}

static void format_names_parse(void)
{
    CHECK_INT(log_set_format_name("json"), 0);
    CHECK_INT(log_set_format_name("text"), 0);
    CHECK_INT(log_set_format_name("yaml"), -1);
    CHECK_INT(log_set_format_name("JSON"), -1);
}

CHECK_MAIN(CHECK_CASE(text_line_has_time_level_program_and_message),
           CHECK_CASE(json_line_has_the_four_fields),
           CHECK_CASE(json_escapes_quotes_backslashes_newlines_and_controls),
           CHECK_CASE(json_keeps_utf8_and_replaces_invalid_bytes),
           CHECK_CASE(json_line_cut_to_the_buffer_stays_json), CHECK_CASE(format_names_parse))
