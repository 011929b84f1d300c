/* log: see log.h. The level is an atomic so any thread may read it. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *log_program = "push";
static atomic_int log_level = LOG_INFO;
static const char *const log_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

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
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            log_set_level((log_level_t)i);
            return 0;
        }
    }
    return -1;
}

int log_enabled(log_level_t level)
{
    return (int)level >= atomic_load(&log_level);
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
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s %s: %s\n", when, ts.tv_nsec / 1000000L, log_names[level],
            log_program, msg);
}
