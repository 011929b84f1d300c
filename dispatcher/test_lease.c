/* Unit tests of dispatcher/lease: where shards go by rank (lease_target). */
#include "check.h"
#include "jsx.h"
#include "lease.h"

/* For 1 to 20 live dispatchers: every shard has one owner among them, and
 * any two differ by one at most in busy shards and in all shards. */
static void shards_by_rank_are_spread_evenly(void)
{
    for (int live = 1; live <= 20; live++) {
        int busy[20] = {0}, all[20] = {0};
        for (unsigned i = 0; i < JSX_SHARDS; i++) {
            int r = lease_target(i, live);
            CHECK(r >= 0 && r < live);
            all[r]++;
            busy[r] += jsx_shard_used(i);
        }
        int bmin = JSX_SHARDS, bmax = 0, amin = JSX_SHARDS, amax = 0;
        for (int r = 0; r < live; r++) {
            bmin = busy[r] < bmin ? busy[r] : bmin;
            bmax = busy[r] > bmax ? busy[r] : bmax;
            amin = all[r] < amin ? all[r] : amin;
            amax = all[r] > amax ? all[r] : amax;
        }
        CHECK(bmax - bmin <= 1);
        CHECK(amax - amin <= 1);
    }
}

/* The cases OPERATIONS names: three dispatchers carry 2, 1 and 1 busy
 * shards (6, 5 and 5 in all); one dispatcher has them all. */
static void three_dispatchers_split_the_busy_shards_2_1_1(void)
{
    int busy[3] = {0}, all[3] = {0};
    for (unsigned i = 0; i < JSX_SHARDS; i++) {
        int r = lease_target(i, 3);
        all[r]++;
        busy[r] += jsx_shard_used(i);
    }
    CHECK_INT(busy[0], 2);
    CHECK_INT(busy[1], 1);
    CHECK_INT(busy[2], 1);
    CHECK_INT(all[0], 6);
    CHECK_INT(all[1], 5);
    CHECK_INT(all[2], 5);
    for (unsigned i = 0; i < JSX_SHARDS; i++)
        CHECK_INT(lease_target(i, 1), 0);
}

CHECK_MAIN(CHECK_CASE(shards_by_rank_are_spread_evenly),
           CHECK_CASE(three_dispatchers_split_the_busy_shards_2_1_1))
