/*
 * check: the unit-test runner every test_*.c uses. A test file defines
 * functions named for the behaviour they prove, lists them with CHECK_MAIN,
 * and exits non-zero if any assertion failed. Assertions print file:line and
 * the values compared, and carry on (one run shows every failure).
 */
#ifndef PUSH_CHECK_H
#define PUSH_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;
static const char *check_current;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, check_current,    \
                    #cond);                                                                        \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long check_a = (long long)(a), check_b = (long long)(b);                              \
        if (check_a != check_b) {                                                                  \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__,    \
                    check_current, #a, check_a, #b, check_b);                                      \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a = (a), *check_b = (b);                                                 \
        if (!check_a || !check_b || strcmp(check_a, check_b) != 0) {                               \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: %s: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__,      \
                    check_current, #a, check_a ? check_a : "(null)",                               \
                    check_b ? check_b : "(null)");                                                 \
        }                                                                                          \
    } while (0)

typedef struct check_case {
    const char *name;
    void (*fn)(void);
} check_case_t;

#define CHECK_CASE(f)                                                                              \
    {                                                                                              \
#f, f                                                                                      \
    }

#define CHECK_MAIN(...)                                                                            \
    int main(void)                                                                                 \
    {                                                                                              \
        /* line-buffered: a sanitizer report at exit must not swallow the results */               \
        setvbuf(stdout, NULL, _IOLBF, 0);                                                          \
        check_case_t cases[] = {__VA_ARGS__};                                                      \
        size_t n = sizeof cases / sizeof cases[0];                                                 \
        for (size_t i = 0; i < n; i++) {                                                           \
            int before = check_failures;                                                           \
            check_current = cases[i].name;                                                         \
            cases[i].fn();                                                                         \
            printf("%s %s\n", check_failures == before ? "ok  " : "FAIL", cases[i].name);          \
        }                                                                                          \
        printf("%zu cases, %d failed assertions\n", n, check_failures);                            \
        return check_failures ? 1 : 0;                                                             \
    }

#endif
