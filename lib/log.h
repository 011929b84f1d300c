/*
 * log: leveled logging to stderr, as text or as JSON.
 *
 * One line per call, written with a single fputs so that lines from
 * different threads never interleave. Safe to call from any thread.
 * Text: 2026-11-25T04:30:00.123Z INFO  collector: message text
 * JSON: {"ts":"2026-11-25T04:30:00.123Z","level":"info","prog":"collector","msg":"message text"}
 * (--log-format json: one object per line, for a log shipper; the message is
 * escaped, and bytes that are not UTF-8 become U+FFFD so the line stays JSON).
 */
#ifndef PUSH_LOG_H
#define PUSH_LOG_H

#include <stddef.h>
#include <time.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;
typedef enum { LOG_TEXT = 0, LOG_JSON } log_format_t;

/* Set the program name shown on each line (not copied: pass a literal). */
void log_init(const char *program);

/* Parse "debug", "info", "warn" or "error"; returns 0, or -1 if unknown. */
int log_set_level_name(const char *name);
void log_set_level(log_level_t level);
int log_enabled(log_level_t level);

/* Parse "text" or "json"; returns 0, or -1 if unknown. Call it at start,
 * before other threads log (they would see either format, never a mix). */
int log_set_format_name(const char *name);
void log_set_format(log_format_t format);

/* Format one line (with its '\n') into out, as log_write would write it; the
 * line is cut, still well-formed, if it does not fit. Returns its length.
 * Pure: exposed for tests. */
size_t log_format_line(char *out, size_t size, log_format_t format, log_level_t level,
                       const struct timespec *when, const char *program, const char *msg);

void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_D(...)                                                                                 \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_write(LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
#define LOG_I(...) log_write(LOG_INFO, __VA_ARGS__)
#define LOG_W(...) log_write(LOG_WARN, __VA_ARGS__)
#define LOG_E(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
