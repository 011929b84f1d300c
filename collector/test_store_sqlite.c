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

static void put(store_t *s, const char *id, uint64_t at, uint32_t ttl, char **to, size_t n, const char *idem,
                int want)
{
    store_msg_t m = {.topic = "t", .data = (const unsigned char *)"1", .data_len = 1,
                     .content_type = "application/json", .accepted_ms = at, .ttl = ttl};
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

static void pending_is_oldest_first_unacked_unexpired_with_ttl(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"}, *both[] = {"u1", "u2"};
    put(s, "b", 1000, 60, u1, 1, NULL, STORE_OK);
    put(s, "a", 1000, 60, both, 2, NULL, STORE_OK);
    put(s, "c", 1000, 0, u1, 1, NULL, STORE_OK);  /* live only */
    put(s, "d", 1000, 1, u1, 1, NULL, STORE_OK);  /* expires at 2000 */
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
    store_msg_t m = {.topic = "t", .data = (const unsigned char *)"2", .data_len = 1,
                     .content_type = "application/json", .accepted_ms = 1001, .ttl = 60};
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
        m[i] = (store_msg_t){.topic = "t", .data = (const unsigned char *)"1", .data_len = 1,
                             .content_type = "application/json", .accepted_ms = 1000, .ttl = 60};
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

static void unknown_or_empty_store_uris_are_refused(void)
{
    char err[256];
    CHECK(store_open("sqlite:", err, sizeof err) == NULL);
    CHECK(store_open("postgres://x", err, sizeof err) == NULL);
    CHECK(store_open("sqlite:/nonexistent-dir/x.db", err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent-dir/x.db") != NULL);
}

CHECK_MAIN(CHECK_CASE(pending_is_oldest_first_unacked_unexpired_with_ttl),
           CHECK_CASE(ack_hides_a_message_for_that_user_only),
           CHECK_CASE(same_idempotency_key_returns_first_id_and_stores_once),
           CHECK_CASE(undispatched_lists_until_marked_with_recipients),
           CHECK_CASE(expire_drops_only_expired_dispatched_messages),
           CHECK_CASE(batch_is_one_transaction_with_duplicates_inside_it),
           CHECK_CASE(unknown_or_empty_store_uris_are_refused))
