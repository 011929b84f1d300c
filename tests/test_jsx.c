/* Unit tests of lib/jsx: the shard of a user and the names derived from
 * the prefix. The shard function is part of the wire contract between
 * collector and dispatcher, so its values are pinned. */
#include "check.h"
#include "jsx.h"

static void shard_is_fnv1a_over_the_used_shards_and_pinned(void)
{
    /* FNV-1a 32, mod 4, times 4: "u1" = 71477235, "alice" = 2267157479,
     * "" = 2166136261 */
    CHECK_INT(jsx_shard_of("u1"), 12);
    CHECK_INT(jsx_shard_of("alice"), 12);
    CHECK_INT(jsx_shard_of(""), 4);
    CHECK_INT(jsx_shard_of("bob"), 0); /* 2261164244 */
    CHECK_INT(JSX_SHARDS, 16);
    CHECK_INT(JSX_SHARDS_USED, 4);
}

static void only_every_fourth_shard_is_used(void)
{
    int used = 0;
    for (unsigned s = 0; s < JSX_SHARDS; s++) {
        CHECK_INT(jsx_shard_used(s), s % 4 == 0);
        used += jsx_shard_used(s);
    }
    CHECK_INT(used, JSX_SHARDS_USED);
    CHECK(!jsx_shard_used(JSX_SHARDS));
}

static void shards_spread_users(void)
{
    size_t count[JSX_SHARDS] = {0};
    char user[32];
    for (int i = 0; i < 16000; i++) {
        snprintf(user, sizeof user, "user-%d", i);
        unsigned s = jsx_shard_of(user);
        CHECK(s < JSX_SHARDS && jsx_shard_used(s));
        count[s < JSX_SHARDS ? s : 0]++;
    }
    for (unsigned s = 0; s < JSX_SHARDS; s++)
        if (jsx_shard_used(s))
            CHECK(count[s] > 3600 && count[s] < 4400); /* 4000 each, give or take */
        else
            CHECK_INT(count[s], 0);
}

static void names_follow_the_prefix(void)
{
    char buf[128];
    CHECK_STR(jsx_shard_subject(buf, sizeof buf, "push", 7), "push.dispatch.7");
    CHECK_STR(jsx_shard_consumer(buf, sizeof buf, 12), "dispatch-12");
    jsx_stream_name(buf, sizeof buf, "my-app.v2");
    CHECK_STR(buf, "MY_APP_V2_DISPATCH");
}

CHECK_MAIN(CHECK_CASE(shard_is_fnv1a_over_the_used_shards_and_pinned),
           CHECK_CASE(only_every_fourth_shard_is_used), CHECK_CASE(shards_spread_users),
           CHECK_CASE(names_follow_the_prefix))
