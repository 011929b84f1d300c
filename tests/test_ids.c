/* Unit tests of lib/ids: format, order by time, uniqueness across threads. */
#include <pthread.h>
#include <stdlib.h>

#include "check.h"
#include "ids.h"

static void id_is_24_hex_digits_with_the_time_first(void)
{
    char id[IDS_LEN + 1];
    ids_new_at(id, 0x0123456789abULL);
    CHECK_INT(strlen(id), IDS_LEN);
    CHECK(strncmp(id, "0123456789ab", 12) == 0);
    CHECK_INT(strspn(id, "0123456789abcdef"), IDS_LEN);
    CHECK_INT(ids_time_ms(id), 0x0123456789abULL);
    CHECK_INT(ids_time_ms("not an id"), 0);
}

static void ids_sort_by_mint_order_within_a_process(void)
{
    char prev[IDS_LEN + 1], cur[IDS_LEN + 1];
    ids_new(prev);
    for (int i = 0; i < 100000; i++) {
        ids_new(cur);
        if (strcmp(prev, cur) >= 0) {
            CHECK(strcmp(prev, cur) < 0);
            break;
        }
        memcpy(prev, cur, sizeof cur);
    }
}

static void time_part_never_goes_backwards(void)
{
    char a[IDS_LEN + 1], b[IDS_LEN + 1];
    ids_new_at(a, ids_now_ms() + 5000); /* a clock step forward ... */
    ids_new_at(b, ids_now_ms());        /* ... then back: b must still sort after a */
    CHECK(strcmp(a, b) < 0);
}

static void an_id_tells_whether_this_process_minted_it(void)
{
    char id[IDS_LEN + 1], chunk[IDS_LEN + 16];
    ids_new(id);
    CHECK(ids_minted_here(id));
    snprintf(chunk, sizeof chunk, "%s.3.17", id);
    CHECK(ids_minted_here(chunk));
    id[12] = id[12] == 'f' ? '0' : 'f'; /* another instance's tag */
    CHECK(!ids_minted_here(id));
    CHECK(!ids_minted_here(""));
    CHECK(!ids_minted_here("0123456789ab"));
    CHECK(!ids_minted_here(NULL));
}

#define THREADS 4
#define PER 20000
static char minted[THREADS * PER][IDS_LEN + 1];

static void *mint(void *arg)
{
    long t = (long)arg;
    for (int i = 0; i < PER; i++)
        ids_new(minted[t * PER + i]);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void ids_from_many_threads_are_unique(void)
{
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++)
        CHECK_INT(pthread_create(&th[t], NULL, mint, (void *)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    qsort(minted, THREADS * PER, IDS_LEN + 1, cmp);
    int dups = 0;
    for (int i = 1; i < THREADS * PER; i++)
        dups += strcmp(minted[i - 1], minted[i]) == 0;
    CHECK_INT(dups, 0);
}

CHECK_MAIN(CHECK_CASE(id_is_24_hex_digits_with_the_time_first),
           CHECK_CASE(ids_sort_by_mint_order_within_a_process),
           CHECK_CASE(time_part_never_goes_backwards), CHECK_CASE(ids_from_many_threads_are_unique),
           CHECK_CASE(an_id_tells_whether_this_process_minted_it))
