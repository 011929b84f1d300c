/* Unit tests of lib/strmap: put/get/remove through growth. */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "strmap.h"

static void count(void *arg, const char *key, void *value)
{
    (void)key, (void)value;
    (*(int *)arg)++;
}

static void values_survive_growth_and_removal(void)
{
    strmap_t *m = strmap_new();
    char key[32];
    for (long i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "user-%ld", i);
        CHECK_INT(strmap_put(m, key, (void *)(i + 1)), 0);
    }
    CHECK_INT(strmap_size(m), 10000);
    CHECK(strmap_get(m, "user-4242") == (void *)4243);
    CHECK(strmap_get(m, "user-10000") == NULL);
    CHECK(strmap_remove(m, "user-0") == (void *)1);
    CHECK(strmap_remove(m, "user-0") == NULL);
    CHECK_INT(strmap_put(m, "user-1", (void *)7), 0); /* replace */
    CHECK(strmap_get(m, "user-1") == (void *)7);
    CHECK_INT(strmap_size(m), 9999);
    int n = 0;
    strmap_each(m, count, &n);
    CHECK_INT(n, 9999);
    strmap_free(m);
}

CHECK_MAIN(CHECK_CASE(values_survive_growth_and_removal))
