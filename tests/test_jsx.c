/* Unit tests of lib/jsx: the shard of a user and the names derived from
 * the prefix. The shard function is part of the wire contract between
 * collector and dispatcher, so its values are pinned. */
#include "check.h"
#include "jsx.h"

static void shard_is_fnv1a_mod_shards_and_pinned(void)
{
    /* FNV-1a 32: "u1" = 71477235, "alice" = 2267157479, "" = 2166136261 */
    CHECK_INT(jsx_shard_of("u1"), 71477235u % JSX_SHARDS);
    CHECK_INT(jsx_shard_of("alice"), 2267157479u % JSX_SHARDS);
    CHECK_INT(jsx_shard_of(""), 2166136261u % JSX_SHARDS);
    CHECK_INT(JSX_SHARDS, 16);
}

static void shards_spread_users(void)
{
    size_t count[JSX_SHARDS] = {0};
    char user[32];
    for (int i = 0; i < 16000; i++) {
        snprintf(user, sizeof user, "user-%d", i);
        unsigned s = jsx_shard_of(user);
        CHECK(s < JSX_SHARDS);
        count[s < JSX_SHARDS ? s : 0]++;
    }
    for (unsigned s = 0; s < JSX_SHARDS; s++)
        CHECK(count[s] > 800 && count[s] < 1200); /* 1000 each, give or take */
}

static void names_follow_the_prefix(void)
{
    char buf[128];
    CHECK_STR(jsx_shard_subject(buf, sizeof buf, "push", 7), "push.dispatch.7");
    jsx_stream_name(buf, sizeof buf, "my-app.v2");
    CHECK_STR(buf, "MY_APP_V2_DISPATCH");
}

CHECK_MAIN(CHECK_CASE(shard_is_fnv1a_mod_shards_and_pinned), CHECK_CASE(shards_spread_users),
           CHECK_CASE(names_follow_the_prefix))
