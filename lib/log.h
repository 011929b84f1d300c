/*
 * log: leveled logging to stderr.
 *
 * One line per call, written with a single fprintf so that lines from
 * different threads never interleave. Safe to call from any thread.
 * Format: 2026-11-25T04:30:00.123Z INFO  collector: message text
 */
#ifndef PUSH_LOG_H
#define PUSH_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Set the program name shown on each line (not copied: pass a literal). */
void log_init(const char *program);

/* Parse "debug", "info", "warn" or "error"; returns 0, or -1 if unknown. */
int log_set_level_name(const char *name);
void log_set_level(log_level_t level);
int log_enabled(log_level_t level);

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
