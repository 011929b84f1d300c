/* Unit tests of pusher/subs: channel -> subscriptions, first and last
 * subscriber detection, lookups by id and by (connection, channel). */
#include <stdlib.h>

#include "check.h"
#include "subs.h"

static void first_and_last_subscriber_of_a_channel_are_reported(void)
{
    conns_t *c = conns_new();
    subs_t *s = subs_new();
    conn_t *a = conns_open(c, NULL), *b = conns_open(c, NULL);
    sub_t *sa = subs_open(s, a, "room.1", NULL), *sb = subs_open(s, b, "room.1", "m1");
    sub_t *sa2 = subs_open(s, a, "room.2", NULL);
    CHECK(sa && sb && sa2);
    CHECK(strcmp(sa->id, sb->id) != 0);
    CHECK_STR(sb->since, "m1");
    CHECK(subs_get(s, sb->id) == sb);
    CHECK(subs_find(a, "room.1") == sa);
    CHECK(subs_find(a, "room.2") == sa2);
    CHECK(subs_find(b, "room.2") == NULL);
    CHECK_INT(a->n_subs, 2);
    CHECK(subs_chan(s, "room.1") == NULL); /* nobody joined yet */
    CHECK_INT(subs_join(s, sa), 1);
    CHECK_INT(subs_join(s, sb), 0);
    CHECK_INT(subs_join(s, sa2), 1);
    chan_t *room = subs_chan(s, "room.1");
    CHECK(room != NULL && room->n == 2);
    CHECK_INT(subs_count(s), 3);
    CHECK_INT(subs_channels(s), 2);
    char *last = NULL;
    CHECK_INT(subs_close(s, sa, &last), 0);
    CHECK(last == NULL);
    CHECK(room->n == 1 && room->subs[0] == sb && sb->at == 0);
    CHECK(subs_find(a, "room.1") == NULL);
    CHECK_INT(a->n_subs, 1);
    CHECK_INT(subs_close(s, sb, &last), 1);
    CHECK_STR(last, "room.1");
    free(last);
    CHECK(subs_chan(s, "room.1") == NULL);
    CHECK_INT(subs_count(s), 1);
    /* one never joined (its token was refused): no channel to leave */
    sub_t *pending = subs_open(s, b, "room.3", NULL);
    last = NULL;
    CHECK_INT(subs_close(s, pending, &last), 0);
    CHECK(last == NULL);
    subs_free(s); /* frees sa2 too */
    conns_free(c);
}

CHECK_MAIN(CHECK_CASE(first_and_last_subscriber_of_a_channel_are_reported))
