/* recent: the in-memory user -> ids of messages not indexed yet. */
#include <stdlib.h>

#include "check.h"
#include "recent.h"

static void id_of(char *buf, size_t size, unsigned i)
{
    snprintf(buf, size, "%012u", i); /* sorts as the number */
}

/* The ids recent lists for user, joined with commas. */
static const char *listed(const recent_t *r, const char *user)
{
    static char out[4096];
    const char(*ids)[IDS_LEN + 1] = NULL;
    size_t n = recent_of(r, user, "", &ids);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? "," : "", ids[i]);
    return out;
}

static void remove_sorted_takes_only_the_ids_named_and_keeps_the_order(void)
{
    recent_t *r = recent_new();
    const char *have[] = {"b", "d", "f", "h", "j"};
    for (size_t i = 0; i < 5; i++)
        CHECK_INT(recent_add(r, "u", have[i]), 0);
    CHECK_INT(recent_add(r, "v", "d"), 0);
    /* before the first, between, named twice, after the last */
    const char *gone[] = {"a", "d", "d", "e", "h", "z"};
    recent_remove_sorted(r, "u", gone, 6);
    CHECK_STR(listed(r, "u"), "b,f,j");
    CHECK_STR(listed(r, "v"), "d"); /* another user's are not touched */
    CHECK_INT(recent_size(r), 4);
    recent_remove_sorted(r, "nobody", gone, 6);
    recent_remove_sorted(r, "u", gone, 0);
    CHECK_INT(recent_size(r), 4);
    const char *rest[] = {"b", "f", "j"};
    recent_remove_sorted(r, "u", rest, 3);
    CHECK_STR(listed(r, "u"), "");
    CHECK_INT(recent_size(r), 1);
    CHECK_INT(recent_add(r, "u", "c"), 0); /* the emptied user comes back */
    CHECK_STR(listed(r, "u"), "c");
    recent_free(r);
}

/* Random sets: what is left is exactly the ids added and not named. */
static void remove_sorted_leaves_the_ids_not_named(void)
{
    srand(13);
    for (int round = 0; round < 200; round++) {
        recent_t *a = recent_new();
        unsigned n = 1 + (unsigned)(rand() % 60);
        int added[70] = {0}, named[70] = {0};
        char id[IDS_LEN + 1];
        for (unsigned i = 0; i < n; i++) {
            if (rand() % 3 == 0)
                continue;
            id_of(id, sizeof id, i);
            CHECK_INT(recent_add(a, "u", id), 0);
            added[i] = 1;
        }
        char names[80][IDS_LEN + 1];
        const char *gone[80];
        size_t k = 0;
        for (unsigned i = 0; i < n + 10 && k < 80; i++)
            if (rand() % 2 == 0) {
                id_of(names[k], sizeof names[k], i);
                gone[k] = names[k];
                named[i] = 1;
                k++;
            }
        recent_remove_sorted(a, "u", gone, k);
        char want[4096] = "";
        size_t left = 0;
        for (unsigned i = 0; i < n; i++)
            if (added[i] && !named[i]) {
                id_of(id, sizeof id, i);
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", left++ ? "," : "",
                         id);
            }
        CHECK_STR(listed(a, "u"), want);
        CHECK_INT(recent_size(a), left);
        recent_free(a);
    }
}

/* Give "busy" n ids in commit order: names[i] and ids[i] are the i-th. */
static void add_burst(recent_t *r, char (*names)[IDS_LEN + 1], const char **ids, unsigned n)
{
    CHECK(names && ids);
    for (unsigned i = 0; names && ids && i < n; i++) {
        id_of(names[i], sizeof names[i], i);
        ids[i] = names[i];
        CHECK_INT(recent_add(r, "busy", names[i]), 0);
    }
}

/* What the indexer does to a busy user: all of its 40,000 ids, oldest
 * first, in one call (one at a time this moved the rest of the list for
 * each: docs/BENCHMARKS.md). */
static void remove_sorted_empties_a_user_with_many_ids(void)
{
    recent_t *r = recent_new();
    enum { N = 40000 };
    char(*names)[IDS_LEN + 1] = calloc(N, sizeof *names);
    const char **ids = calloc(N, sizeof *ids);
    add_burst(r, names, ids, N);
    CHECK_INT(recent_size(r), N);
    recent_remove_sorted(r, "busy", ids, N - 1);
    CHECK_INT(recent_size(r), 1);
    CHECK_STR(listed(r, "busy"), names[N - 1]);
    free(names);
    free(ids);
    recent_free(r);
}

/* A user who stays busy: a burst grows the list, the indexer takes the
 * burst away, a few ids stay. The room goes back down with them, and the
 * ids left and adds after it are as before. */
static void a_list_shrinks_when_a_burst_is_indexed(void)
{
    recent_t *r = recent_new();
    enum { N = 40000 };
    char(*names)[IDS_LEN + 1] = calloc(N + 2, sizeof *names);
    const char **ids = calloc(N, sizeof *ids);
    add_burst(r, names, ids, N);
    CHECK(recent_capacity(r) >= N);
    recent_remove_sorted(r, "busy", ids, N - 3); /* all but the newest 3 */
    CHECK_INT(recent_size(r), 3);
    CHECK(recent_capacity(r) <= 16);
    id_of(names[N], sizeof names[N], N);
    id_of(names[N + 1], sizeof names[N + 1], N + 1);
    CHECK_INT(recent_add(r, "busy", names[N]), 0);
    CHECK_INT(recent_add(r, "busy", names[N + 1]), 0);
    char want[200];
    snprintf(want, sizeof want, "%s,%s,%s,%s,%s", names[N - 3], names[N - 2], names[N - 1],
             names[N], names[N + 1]);
    CHECK_STR(listed(r, "busy"), want);
    /* removing one at a time, as a slow indexer would: never below 4 */
    for (int i = 0; i < 4; i++) {
        const char *one[] = {names[N - 3 + i]};
        recent_remove_sorted(r, "busy", one, 1);
        CHECK(recent_capacity(r) >= recent_size(r));
        CHECK(recent_capacity(r) >= 4);
    }
    CHECK_STR(listed(r, "busy"), names[N + 1]);
    free(names);
    free(ids);
    recent_free(r);
}

CHECK_MAIN(CHECK_CASE(remove_sorted_takes_only_the_ids_named_and_keeps_the_order),
           CHECK_CASE(remove_sorted_leaves_the_ids_not_named),
           CHECK_CASE(remove_sorted_empties_a_user_with_many_ids),
           CHECK_CASE(a_list_shrinks_when_a_burst_is_indexed))
