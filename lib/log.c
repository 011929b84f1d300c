/* log: see log.h. The level and format are atomics so any thread may read them. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static const char *log_program = "push";
static atomic_int log_level = LOG_INFO;
static atomic_int log_format = LOG_TEXT;
static const char *const log_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
static const char *const log_json_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *program)
{
    log_program = program;
}

void log_set_level(log_level_t level)
{
    atomic_store(&log_level, (int)level);
}

int log_set_level_name(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, log_json_names[i]) == 0) {
            log_set_level((log_level_t)i);
            return 0;
        }
    }
    return -1;
}

void log_set_format(log_format_t format)
{
    atomic_store(&log_format, (int)format);
}

int log_set_format_name(const char *name)
{
    if (strcmp(name, "text") == 0)
        log_set_format(LOG_TEXT);
    else if (strcmp(name, "json") == 0)
        log_set_format(LOG_JSON);
    else
        return -1;
    return 0;
}

int log_enabled(log_level_t level)
{
    return (int)level >= atomic_load(&log_level);
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 if
 * it is not one (overlong forms, surrogates and code points past U+10FFFF
 * included, as RFC 3629 says). */
static size_t log_utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0)
        len = 2, cp = s[0] & 0x1F;
    else if ((s[0] & 0xF0) == 0xE0)
        len = 3, cp = s[0] & 0x0F;
    else if ((s[0] & 0xF8) == 0xF0)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Append msg as the inside of a JSON string at out[*at], leaving `reserve`
 * bytes free at the end; stops before an escape that would not fit, so what
 * is written is always a whole string body. */
static void log_json_escape(char *out, size_t size, size_t *at, const char *msg, size_t reserve)
{
    const unsigned char *s = (const unsigned char *)msg;
    size_t n = strlen(msg);
    for (size_t i = 0; i < n;) {
        char esc[8];
        const char *piece = esc;
        size_t plen, used = 1;
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, plen = 2;
        } else if (c == '\n') {
            piece = "\\n", plen = 2;
        } else if (c == '\r') {
            piece = "\\r", plen = 2;
        } else if (c == '\t') {
            piece = "\\t", plen = 2;
        } else if (c < 0x20 || c == 0x7F) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            plen = 6;
        } else if (c < 0x80) {
            piece = (const char *)&s[i], plen = 1;
        } else if ((used = log_utf8_len(&s[i], n - i)) != 0) {
            piece = (const char *)&s[i], plen = used;
        } else {
            piece = "\\ufffd", plen = 6, used = 1;
        }
        if (*at + plen + reserve >= size)
            return;
        memcpy(out + *at, piece, plen);
        *at += plen;
        i += used;
    }
}

size_t log_format_line(char *out, size_t size, log_format_t format, log_level_t level,
                       const struct timespec *when, const char *program, const char *msg)
{
    struct tm tm;
    gmtime_r(&when->tv_sec, &tm);
    char ts[48];
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", when->tv_nsec / 1000000L);
    if (format == LOG_TEXT) {
        int n = snprintf(out, size, "%s %s %s: %s\n", ts, log_names[level], program, msg);
        if (n < 0)
            n = 0;
        if ((size_t)n >= size) { /* cut: keep the newline */
            n = (int)size - 1;
            out[n - 1] = '\n';
        }
        return (size_t)n;
    }
    /* The program name is a literal of ours; the message is anything. */
    int n = snprintf(out, size, "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":\"%s\",\"msg\":\"", ts,
                     log_json_names[level], program);
    if (n < 0 || (size_t)n + 4 > size)
        return 0;
    size_t at = (size_t)n;
    log_json_escape(out, size, &at, msg, sizeof "\"}\n");
    memcpy(out + at, "\"}\n", sizeof "\"}\n");
    return at + 3;
}

void log_write(log_level_t level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Worst case every byte of msg becomes a 6-byte \u escape. */
    char line[sizeof msg * 6 + 160];
    log_format_line(line, sizeof line, (log_format_t)atomic_load(&log_format), level, &ts,
                    log_program, msg);
    fputs(line, stderr);
}
