/* Unit tests of the store interface on its SQLite backend (a temp file). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "store.h"

static char path[64];

static store_t *fresh(void)
{
    snprintf(path, sizeof path, "/tmp/push-store-test-%d.db", (int)getpid());
    unlink(path);
    char wal[80], shm[80], uri[80], err[256];
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    unlink(wal), unlink(shm);
    snprintf(uri, sizeof uri, "sqlite:%s", path);
    store_t *s = store_open(uri, err, sizeof err);
    CHECK(s != NULL);
    return s;
}

static void put(store_t *s, const char *id, uint64_t at, uint32_t ttl, char **to, size_t n,
                const char *idem, int want)
{
    store_msg_t m = {.topic = "t",
                     .data = (const unsigned char *)"1",
                     .data_len = 1,
                     .content_type = "application/json",
                     .accepted_ms = at,
                     .ttl = ttl};
    snprintf(m.id, sizeof m.id, "%s", id);
    char existing[IDS_LEN + 1] = "";
    CHECK_INT(store_put(s, &m, to, n, idem, existing), want);
}

typedef struct seen {
    char ids[16][IDS_LEN + 1];
    size_t n, to_counts[16];
} seen_t;

static void collect(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    (void)to;
    seen_t *s = arg;
    if (s->n < 16) {
        snprintf(s->ids[s->n], IDS_LEN + 1, "%s", m->id);
        s->to_counts[s->n++] = n_to;
    }
}

typedef struct got {
    char id[IDS_LEN + 1], topic[64], content_type[64];
    unsigned char data[16];
    size_t data_len;
    uint64_t accepted_ms;
    uint32_t ttl;
} got_t;

static void keep(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    (void)to, (void)n_to;
    got_t *g = arg;
    snprintf(g->id, sizeof g->id, "%s", m->id);
    snprintf(g->topic, sizeof g->topic, "%s", m->topic);
    snprintf(g->content_type, sizeof g->content_type, "%s", m->content_type);
    g->data_len = m->data_len < sizeof g->data ? m->data_len : sizeof g->data;
    memcpy(g->data, m->data, g->data_len);
    g->accepted_ms = m->accepted_ms;
    g->ttl = m->ttl;
}

static void pending_is_oldest_first_unacked_unexpired_with_ttl(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"}, *both[] = {"u1", "u2"};
    put(s, "b", 1000, 60, u1, 1, NULL, STORE_OK);
    put(s, "a", 1000, 60, both, 2, NULL, STORE_OK);
    put(s, "c", 1000, 0, u1, 1, NULL, STORE_OK); /* live only */
    put(s, "d", 1000, 1, u1, 1, NULL, STORE_OK); /* expires at 2000 */
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", 1500, 100, collect, &seen), 3);
    CHECK_STR(seen.ids[0], "a");
    CHECK_STR(seen.ids[1], "b");
    CHECK_STR(seen.ids[2], "d");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", 2500, 100, collect, &seen), 2); /* d expired */
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", 1500, 1, collect, &seen), 1); /* limit */
    CHECK_STR(seen.ids[0], "a");
    store_close(s);
}

static void ack_hides_a_message_for_that_user_only(void)
{
    store_t *s = fresh();
    char *both[] = {"u1", "u2"};
    put(s, "a", 1000, 60, both, 2, NULL, STORE_OK);
    char *ids[] = {"a", "unknown"};
    CHECK_INT(store_ack(s, "u1", ids, 2), STORE_OK);
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", 1500, 10, collect, &seen), 0);
    CHECK_INT(store_pending(s, "u2", 1500, 10, collect, &seen), 1);
    store_close(s);
}

static void same_idempotency_key_returns_first_id_and_stores_once(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"};
    put(s, "first", 1000, 60, u1, 1, "k", STORE_OK);
    store_msg_t m = {.topic = "t",
                     .data = (const unsigned char *)"2",
                     .data_len = 1,
                     .content_type = "application/json",
                     .accepted_ms = 1001,
                     .ttl = 60};
    snprintf(m.id, sizeof m.id, "second");
    char existing[IDS_LEN + 1] = "";
    CHECK_INT(store_put(s, &m, u1, 1, "k", existing), STORE_DUPLICATE);
    CHECK_STR(existing, "first");
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", 1500, 10, collect, &seen), 1);
    store_close(s);
}

static void undispatched_lists_until_marked_with_recipients(void)
{
    store_t *s = fresh();
    char *both[] = {"u1", "u2"}, *u1[] = {"u1"};
    put(s, "a", 1000, 60, both, 2, NULL, STORE_OK);
    put(s, "b", 3000, 60, u1, 1, NULL, STORE_OK);
    seen_t seen = {0};
    CHECK_INT(store_undispatched(s, 2000, 10, collect, &seen), 1); /* b is too recent */
    CHECK_STR(seen.ids[0], "a");
    CHECK_INT(seen.to_counts[0], 2);
    CHECK_INT(store_mark_dispatched(s, "a"), STORE_OK);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_undispatched(s, 5000, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "b");
    store_close(s);
}

static void expire_drops_only_expired_dispatched_messages(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"};
    put(s, "old", 1000, 1, u1, 1, NULL, STORE_OK);
    put(s, "live0", 1000, 0, u1, 1, NULL, STORE_OK);
    put(s, "young", 1000, 60, u1, 1, NULL, STORE_OK);
    CHECK_INT(store_expire(s, 5000), 0); /* none handed over yet: kept */
    store_mark_dispatched(s, "old");
    store_mark_dispatched(s, "live0");
    store_mark_dispatched(s, "young");
    CHECK_INT(store_expire(s, 5000), 2);
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", 5000, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "young");
    CHECK_INT(store_healthy(s), 1);
    store_close(s);
    unlink(path);
}

static void batch_is_one_transaction_with_duplicates_inside_it(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"};
    store_msg_t m[3];
    const char *ids[] = {"x1", "x2", "x3"};
    const char *idem[] = {"k", "k", NULL}; /* the second repeats the first's key */
    store_put_item_t items[3];
    memset(items, 0, sizeof items);
    for (int i = 0; i < 3; i++) {
        m[i] = (store_msg_t){.topic = "t",
                             .data = (const unsigned char *)"1",
                             .data_len = 1,
                             .content_type = "application/json",
                             .accepted_ms = 1000,
                             .ttl = 60};
        snprintf(m[i].id, sizeof m[i].id, "%s", ids[i]);
        items[i] = (store_put_item_t){.m = &m[i], .to = u1, .n_to = 1, .idem = idem[i]};
    }
    CHECK_INT(store_put_batch(s, items, 3), STORE_OK);
    CHECK_INT(items[0].result, STORE_OK);
    CHECK_INT(items[1].result, STORE_DUPLICATE);
    CHECK_STR(items[1].existing_id, "x1");
    CHECK_INT(items[2].result, STORE_OK);
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", 1500, 10, collect, &seen), 2);
    char *mark[] = {"x1", "x3"};
    CHECK_INT(store_mark_dispatched_many(s, mark, 2), STORE_OK);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_undispatched(s, 5000, 10, collect, &seen), 0);
    store_close(s);
}

static void mark_each(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    (void)to, (void)n_to;
    CHECK_INT(store_mark_dispatched(arg, m->id), STORE_OK);
}

/* The hand-over's retry marks each message from inside the callback: the
 * store must not hold its lock while calling back (it deadlocked once). */
static void undispatched_callback_may_call_the_store_again(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"};
    put(s, "a", 1000, 60, u1, 1, NULL, STORE_OK);
    put(s, "b", 1000, 0, u1, 1, NULL, STORE_OK);
    alarm(10); /* a deadlock fails the test instead of hanging it */
    CHECK_INT(store_undispatched(s, 5000, 10, mark_each, s), 2);
    alarm(0);
    seen_t seen = {0};
    CHECK_INT(store_undispatched(s, 5000, 10, collect, &seen), 0);
    store_close(s);
}

static void pending_copies_data_and_fields_of_each_message(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"};
    store_msg_t m = {.topic = "order.paid",
                     .data = (const unsigned char *)"\0\1\2",
                     .data_len = 3,
                     .content_type = "application/octet-stream",
                     .accepted_ms = 1234,
                     .ttl = 60};
    snprintf(m.id, sizeof m.id, "m1");
    char existing[IDS_LEN + 1] = "";
    CHECK_INT(store_put(s, &m, u1, 1, NULL, existing), STORE_OK);
    got_t got = {0};
    CHECK_INT(store_pending(s, "u1", 1500, 10, keep, &got), 1);
    CHECK_STR(got.id, "m1");
    CHECK_STR(got.topic, "order.paid");
    CHECK_STR(got.content_type, "application/octet-stream");
    CHECK_INT(got.data_len, 3);
    CHECK_INT(memcmp(got.data, "\0\1\2", 3), 0);
    CHECK_INT(got.accepted_ms, 1234);
    CHECK_INT(got.ttl, 60);
    store_close(s);
}

static void unknown_or_empty_store_uris_are_refused(void)
{
    char err[256];
    CHECK(store_open("sqlite:", err, sizeof err) == NULL);
    CHECK(store_open("postgres://x", err, sizeof err) == NULL);
    CHECK(store_open("sqlite:/nonexistent-dir/x.db", err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent-dir/x.db") != NULL);
    CHECK_INT(store_uri_known("sqlite:push.db"), 1);
    CHECK_INT(store_uri_known("mongodb://127.0.0.1/push"), 1);
    CHECK_INT(store_uri_known("sqlite:"), 0);
    CHECK_INT(store_uri_known("push.db"), 0);
    CHECK_INT(store_uri_known("postgres://x"), 0);
}

CHECK_MAIN(CHECK_CASE(pending_is_oldest_first_unacked_unexpired_with_ttl),
           CHECK_CASE(ack_hides_a_message_for_that_user_only),
           CHECK_CASE(same_idempotency_key_returns_first_id_and_stores_once),
           CHECK_CASE(undispatched_lists_until_marked_with_recipients),
           CHECK_CASE(expire_drops_only_expired_dispatched_messages),
           CHECK_CASE(batch_is_one_transaction_with_duplicates_inside_it),
           CHECK_CASE(undispatched_callback_may_call_the_store_again),
           CHECK_CASE(pending_copies_data_and_fields_of_each_message),
           CHECK_CASE(unknown_or_empty_store_uris_are_refused))
