/* Unit tests of lib/chan: channel names, grants and the route key. */
#include <string.h>

#include "chan.h"
#include "check.h"

static void names_are_1_to_255_bytes_of_the_allowed_set(void)
{
    CHECK_INT(chan_name_ok("room.42", 7), 1);
    CHECK_INT(chan_name_ok("a-b_c.d:e@f", 11), 1);
    CHECK_INT(chan_name_ok("AZaz09", 6), 1);
    CHECK_INT(chan_name_ok("", 0), 0);
    CHECK_INT(chan_name_ok("room 42", 7), 0);
    CHECK_INT(chan_name_ok("room*", 5), 0);
    CHECK_INT(chan_name_ok("room>", 5), 0);
    CHECK_INT(chan_name_ok("r\xc3\xa9", 3), 0); /* é: UTF-8 but not in the set */
    CHECK_INT(chan_name_ok("a\0b", 3), 0);
    CHECK_INT(chan_name_ok("a/b", 3), 0);
    char name[257];
    memset(name, 'x', sizeof name);
    CHECK_INT(chan_name_ok(name, 255), 1);
    CHECK_INT(chan_name_ok(name, 256), 0);
}

static void grants_are_exact_or_a_prefix_ending_in_star(void)
{
    CHECK_INT(chan_grant_covers("room.42", "room.42"), 1);
    CHECK_INT(chan_grant_covers("room.42", "room.420"), 0);
    CHECK_INT(chan_grant_covers("room.4", "room.42"), 0);
    CHECK_INT(chan_grant_covers("room.*", "room.42"), 1);
    CHECK_INT(chan_grant_covers("room.*", "room."), 1);
    CHECK_INT(chan_grant_covers("room.*", "room"), 0);
    CHECK_INT(chan_grant_covers("room.*", "rooms.1"), 0);
    CHECK_INT(chan_grant_covers("*", "anything"), 1);
    CHECK_INT(chan_grant_covers("", "room"), 0);
    char *grants[] = {"a", "news.*"};
    CHECK_INT(chan_granted(grants, 2, "news.eu"), 1);
    CHECK_INT(chan_granted(grants, 2, "a"), 1);
    CHECK_INT(chan_granted(grants, 2, "b"), 0);
    CHECK_INT(chan_granted(NULL, 0, "a"), 0);
}

static void route_key_has_the_prefix(void)
{
    char buf[64];
    CHECK_INT(chan_route_key(buf, sizeof buf, "push", "room.42"), 17);
    CHECK_STR(buf, "push:chan:room.42");
}

CHECK_MAIN(CHECK_CASE(names_are_1_to_255_bytes_of_the_allowed_set),
           CHECK_CASE(grants_are_exact_or_a_prefix_ending_in_star),
           CHECK_CASE(route_key_has_the_prefix))
