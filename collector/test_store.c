/*
 * The store interface's tests, run against every backend: always SQLite (a
 * temp file); MongoDB too when PUSH_TEST_MONGO_URI names a server (e.g.
 * mongodb://127.0.0.1:27017), in a database of its own (push_test_<pid>),
 * emptied before each case and dropped at the end. Times are an hour in the
 * future (T0) so that MongoDB's TTL monitor, which reads the wall clock,
 * never races a case. One case needs no server: a MongoDB store whose server
 * is down opens, is not healthy, and fails every call at once.
 */
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "store.h"

static char path[64];
static uint64_t T0;
static const char *backend = "sqlite";
static char mongo_uri[1024], mongo_db[64];
static mongoc_client_t *mongo_admin; /* the test's own client: drops the test database */

static void mongo_drop_test_db(void)
{
    mongoc_database_t *db = mongoc_client_get_database(mongo_admin, mongo_db);
    bson_error_t e;
    if (!mongoc_database_drop_with_opts(db, NULL, &e))
        fprintf(stderr, "cannot drop test database %s: %s\n", mongo_db, e.message);
    mongoc_database_destroy(db);
}

/* The store's files: the database, the index's (store_sqlite.c), their WALs. */
static void unlink_sqlite_files(void)
{
    static const char *suffixes[] = {"", "-wal", "-shm", ".index", ".index-wal", ".index-shm"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char f[96];
        snprintf(f, sizeof f, "%s%s", path, suffixes[i]);
        unlink(f);
    }
}

static store_t *fresh_sqlite(void)
{
    snprintf(path, sizeof path, "/tmp/push-store-test-%d.db", (int)getpid());
    unlink_sqlite_files();
    char uri[80], err[256];
    snprintf(uri, sizeof uri, "sqlite:%s", path);
    store_t *s = store_open(uri, err, sizeof err);
    CHECK(s != NULL);
    return s;
}

/* An empty database, and a store on it that is ready (indexes in place). */
static store_t *fresh_mongo(void)
{
    mongo_drop_test_db();
    char err[256];
    store_t *s = store_open(mongo_uri, err, sizeof err);
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    for (int i = 0; i < 200 && !store_healthy(s); i++)
        usleep(50 * 1000);
    CHECK_INT(store_healthy(s), 1);
    return s;
}

static store_t *fresh(void)
{
    return strcmp(backend, "mongodb") == 0 ? fresh_mongo() : fresh_sqlite();
}

/* The sqlite run "indexed": every put is followed by an indexer pass that
 * takes everything, so each case also runs on recipients read from the
 * per-user index rather than from the messages not indexed yet. */
static int index_each_put;

/* What the expiry thread does: the indexer, then expiry. */
static int expire(store_t *s, uint64_t now_ms)
{
    CHECK(store_index(s, now_ms) >= 0 || !store_healthy(s));
    return store_expire(s, now_ms);
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
    if (index_each_put)
        CHECK(store_index(s, at + 1000 * 1000) >= 0);
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
    put(s, "b", T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    put(s, "a", T0 + 1000, 60, both, 2, NULL, STORE_OK);
    put(s, "c", T0 + 1000, 0, u1, 1, NULL, STORE_OK); /* live only */
    put(s, "d", T0 + 1000, 1, u1, 1, NULL, STORE_OK); /* expires at T0 + 2000 */
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 100, collect, &seen), 3);
    CHECK_STR(seen.ids[0], "a");
    CHECK_STR(seen.ids[1], "b");
    CHECK_STR(seen.ids[2], "d");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 2500, 100, collect, &seen), 2); /* d expired */
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 1, collect, &seen), 1); /* limit */
    CHECK_STR(seen.ids[0], "a");
    store_close(s);
}

static void pending_after_an_id_lists_only_newer_messages(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"};
    put(s, "a", T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    put(s, "b", T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    put(s, "c", T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", "a", T0 + 1500, 100, collect, &seen), 2);
    CHECK_STR(seen.ids[0], "b");
    CHECK_STR(seen.ids[1], "c");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", "c", T0 + 1500, 100, collect, &seen), 0);
    CHECK_INT(store_pending(s, "u1", "", T0 + 1500, 100, collect, &seen), 3);
    store_close(s);
}

static void ack_hides_a_message_for_that_user_only(void)
{
    store_t *s = fresh();
    char *both[] = {"u1", "u2"};
    put(s, "a", T0 + 1000, 60, both, 2, NULL, STORE_OK);
    char *ids[] = {"a", "unknown"};
    CHECK_INT(store_ack(s, "u1", ids, 2), STORE_OK);
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 0);
    CHECK_INT(store_pending(s, "u2", NULL, T0 + 1500, 10, collect, &seen), 1);
    store_close(s);
}

static void same_idempotency_key_returns_first_id_and_stores_once(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"};
    put(s, "first", T0 + 1000, 60, u1, 1, "k", STORE_OK);
    store_msg_t m = {.topic = "t",
                     .data = (const unsigned char *)"2",
                     .data_len = 1,
                     .content_type = "application/json",
                     .accepted_ms = T0 + 1001,
                     .ttl = 60};
    snprintf(m.id, sizeof m.id, "second");
    char existing[IDS_LEN + 1] = "";
    CHECK_INT(store_put(s, &m, u1, 1, "k", existing), STORE_DUPLICATE);
    CHECK_STR(existing, "first");
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 1);
    store_close(s);
}

static void undispatched_lists_until_marked_with_recipients(void)
{
    store_t *s = fresh();
    char *both[] = {"u1", "u2"}, *u1[] = {"u1"};
    put(s, "a", T0 + 1000, 60, both, 2, NULL, STORE_OK);
    put(s, "b", T0 + 3000, 60, u1, 1, NULL, STORE_OK);
    seen_t seen = {0};
    CHECK_INT(store_undispatched(s, T0 + 2000, 10, collect, &seen), 1); /* b is too recent */
    CHECK_STR(seen.ids[0], "a");
    CHECK_INT(seen.to_counts[0], 2);
    CHECK_INT(store_mark_dispatched(s, "a"), STORE_OK);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_undispatched(s, T0 + 5000, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "b");
    store_close(s);
}

static void expire_drops_only_expired_dispatched_messages(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"};
    put(s, "old", T0 + 1000, 1, u1, 1, NULL, STORE_OK);
    put(s, "live0", T0 + 1000, 0, u1, 1, NULL, STORE_OK);
    put(s, "young", T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    CHECK_INT(expire(s, T0 + 5000), 0); /* none handed over yet: kept */
    store_mark_dispatched(s, "old");
    store_mark_dispatched(s, "live0");
    store_mark_dispatched(s, "young");
    CHECK_INT(expire(s, T0 + 5000), 2);
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 5000, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "young");
    CHECK_INT(store_healthy(s), 1);
    store_close(s);
}

/* More expired messages than the SQLite backend deletes in one transaction
 * (STORE_EXPIRE_CHUNK, 500): all of them go, and only handed-over ones. */
static void expire_drops_many_messages_in_chunks(void)
{
    enum { N = 4500 };
    store_t *s = fresh();
    char *u1[] = {"u1"};
    store_msg_t *m = calloc(N, sizeof *m);
    store_put_item_t *items = calloc(N, sizeof *items);
    char **ids = calloc(N, sizeof *ids);
    for (int i = 0; i < N; i++) {
        m[i] = (store_msg_t){.topic = "t",
                             .data = (const unsigned char *)"1",
                             .data_len = 1,
                             .content_type = "application/json",
                             .accepted_ms = T0 + 1000,
                             .ttl = 1};
        snprintf(m[i].id, sizeof m[i].id, "e%05d", i);
        ids[i] = m[i].id;
        items[i] = (store_put_item_t){.m = &m[i], .to = u1, .n_to = 1};
    }
    CHECK_INT(store_put_batch(s, items, N), STORE_OK);
    CHECK_INT(store_mark_dispatched_many(s, ids, N - 1),
              STORE_OK); /* the last is not handed over */
    CHECK_INT(expire(s, T0 + 5000), N - 1);
    CHECK_INT(expire(s, T0 + 5000), 0);
    seen_t seen = {0};
    CHECK_INT(store_undispatched(s, T0 + 5000, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], ids[N - 1]);
    free(m);
    free(items);
    free(ids);
    store_close(s);
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
                             .accepted_ms = T0 + 1000,
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
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 2);
    char *mark[] = {"x1", "x3"};
    CHECK_INT(store_mark_dispatched_many(s, mark, 2), STORE_OK);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_undispatched(s, T0 + 5000, 10, collect, &seen), 0);
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
    put(s, "a", T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    put(s, "b", T0 + 1000, 0, u1, 1, NULL, STORE_OK);
    alarm(10); /* a deadlock fails the test instead of hanging it */
    CHECK_INT(store_undispatched(s, T0 + 5000, 10, mark_each, s), 2);
    alarm(0);
    seen_t seen = {0};
    CHECK_INT(store_undispatched(s, T0 + 5000, 10, collect, &seen), 0);
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
                     .accepted_ms = T0 + 1234,
                     .ttl = 60};
    snprintf(m.id, sizeof m.id, "m1");
    char existing[IDS_LEN + 1] = "";
    CHECK_INT(store_put(s, &m, u1, 1, NULL, existing), STORE_OK);
    got_t got = {0};
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, keep, &got), 1);
    CHECK_STR(got.id, "m1");
    CHECK_STR(got.topic, "order.paid");
    CHECK_STR(got.content_type, "application/octet-stream");
    CHECK_INT(got.data_len, 3);
    CHECK_INT(memcmp(got.data, "\0\1\2", 3), 0);
    CHECK_INT(got.accepted_ms, T0 + 1234);
    CHECK_INT(got.ttl, 60);
    store_close(s);
}

static void a_user_named_twice_is_one_recipient(void)
{
    store_t *s = fresh();
    char *twice[] = {"u1", "u1", "u2"};
    put(s, "a", T0 + 1000, 60, twice, 3, NULL, STORE_OK);
    seen_t seen = {0};
    CHECK_INT(store_undispatched(s, T0 + 2000, 10, collect, &seen), 1);
    CHECK_INT(seen.to_counts[0], 2);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 1);
    store_close(s);
}

/* A live-only message: handed over with its recipients (once each), never
 * pending, an ack of it changes nothing, and it expires. */
static void a_ttl_0_message_keeps_its_recipients_for_the_hand_over_only(void)
{
    store_t *s = fresh();
    char *to[] = {"u1", "u2", "u1"};
    put(s, "z", T0 + 1000, 0, to, 3, NULL, STORE_OK);
    seen_t seen = {0};
    CHECK_INT(store_undispatched(s, T0 + 2000, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "z");
    CHECK_INT(seen.to_counts[0], 2);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1001, 10, collect, &seen), 0);
    char *ids[] = {"z"};
    CHECK_INT(store_ack(s, "u1", ids, 1), STORE_OK);
    CHECK_INT(store_mark_dispatched(s, "z"), STORE_OK);
    CHECK_INT(expire(s, T0 + 1001), 1);
    store_close(s);
}

static void pending_respects_limit_across_many_messages(void)
{
    store_t *s = fresh();
    char *u1[] = {"u1"};
    char id[8];
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "m%02d", 11 - i); /* stored newest first */
        put(s, id, T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    }
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 5, collect, &seen), 5);
    CHECK_STR(seen.ids[0], "m00");
    CHECK_STR(seen.ids[4], "m04");
    char *acked[] = {"m00", "m01", "m02"};
    CHECK_INT(store_ack(s, "u1", acked, 3), STORE_OK);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 16, collect, &seen), 9);
    CHECK_STR(seen.ids[0], "m03");
    CHECK_STR(seen.ids[8], "m11");
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

/* The MongoDB backend opens without its server and fails fast while it
 * is down: nothing may hang the collector's writer. */
static void mongo_store_without_a_server_is_unhealthy_and_fails_fast(void)
{
    char err[256] = "";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    store_t *s = store_open("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", err, sizeof err);
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "store_open: %s\n", err);
        return;
    }
    CHECK_INT(store_healthy(s), 0);
    store_msg_t m = {.topic = "t",
                     .data = (const unsigned char *)"1",
                     .data_len = 1,
                     .content_type = "application/json",
                     .accepted_ms = T0,
                     .ttl = 60};
    snprintf(m.id, sizeof m.id, "m1");
    char *u1[] = {"u1"}, *ids[] = {"m1"};
    char existing[IDS_LEN + 1] = "";
    seen_t seen = {0};
    for (int round = 0; round < 2; round++) {
        CHECK_INT(store_put(s, &m, u1, 1, "k", existing), STORE_ERR);
        store_put_item_t item = {.m = &m, .to = u1, .n_to = 1};
        CHECK_INT(store_put_batch(s, &item, 1), STORE_ERR);
        CHECK_INT(store_pending(s, "u1", NULL, T0, 10, collect, &seen), STORE_ERR);
        CHECK_INT(store_ack(s, "u1", ids, 1), STORE_ERR);
        CHECK_INT(store_undispatched(s, T0, 10, collect, &seen), STORE_ERR);
        CHECK_INT(store_mark_dispatched(s, "m1"), STORE_ERR);
        CHECK_INT(store_mark_dispatched_many(s, ids, 1), STORE_ERR);
        CHECK_INT(expire(s, T0), STORE_ERR);
        int recovered = -1;
        CHECK_INT(store_history(s, "room", "", T0, 10, collect, &seen, &recovered), STORE_ERR);
        CHECK_INT(seen.n, 0);
        if (round == 0)
            usleep(1500 * 1000); /* a few failed pings later: still down, still fast */
        CHECK_INT(store_healthy(s), 0);
    }
    store_close(s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* 1.5 s of the sleep above; the rest (calls, close) must be quick */
    CHECK(took < 3.0);
    CHECK(store_open("mongodb://", err, sizeof err) == NULL);
    CHECK(strstr(err, "URI") != NULL);
}

static void put_chan(store_t *s, const char *id, uint64_t at, uint32_t ttl, const char *channel)
{
    store_msg_t m = {.topic = "t",
                     .data = (const unsigned char *)"1",
                     .data_len = 1,
                     .content_type = "application/json",
                     .accepted_ms = at,
                     .ttl = ttl,
                     .channel = channel};
    snprintf(m.id, sizeof m.id, "%s", id);
    char existing[IDS_LEN + 1] = "";
    CHECK_INT(store_put(s, &m, NULL, 0, NULL, existing), STORE_OK);
}

typedef struct chan_seen {
    char ids[16][IDS_LEN + 1];
    char channels[16][32];
    size_t n;
} chan_seen_t;

static void collect_chan(void *arg, const store_msg_t *m, char *const *to, size_t n_to)
{
    chan_seen_t *s = arg;
    CHECK(to == NULL && n_to == 0);
    if (s->n < 16) {
        snprintf(s->ids[s->n], IDS_LEN + 1, "%s", m->id);
        snprintf(s->channels[s->n++], 32, "%s", m->channel ? m->channel : "(none)");
    }
}

static void channel_message_is_handed_over_with_its_channel(void)
{
    store_t *s = fresh();
    put_chan(s, "a", T0 + 1000, 60, "room.1");
    put_chan(s, "b", T0 + 1000, 0, "room.1");
    chan_seen_t seen = {0};
    CHECK_INT(store_undispatched(s, T0 + 2000, 10, collect_chan, &seen), 2);
    CHECK_STR(seen.ids[0], "a");
    CHECK_STR(seen.channels[0], "room.1");
    CHECK_STR(seen.channels[1], "room.1");
    seen_t none = {0};
    CHECK_INT(store_pending(s, "room.1", NULL, T0 + 1500, 10, collect, &none), 0);
    store_close(s);
}

static void history_is_kept_messages_after_since_oldest_first(void)
{
    store_t *s = fresh();
    put_chan(s, "a", T0 + 1000, 60, "room.1");
    put_chan(s, "b", T0 + 1000, 0, "room.1"); /* live only: never history */
    put_chan(s, "c", T0 + 1000, 60, "room.2");
    put_chan(s, "d", T0 + 1000, 60, "room.1");
    put_chan(s, "e", T0 + 1000, 1, "room.1"); /* expires at T0 + 2000 */
    chan_seen_t seen = {0};
    int recovered = -1;
    CHECK_INT(store_history(s, "room.1", "", T0 + 1500, 100, collect_chan, &seen, &recovered), 3);
    CHECK_INT(recovered, 1);
    CHECK_STR(seen.ids[0], "a");
    CHECK_STR(seen.ids[1], "d");
    CHECK_STR(seen.ids[2], "e");
    CHECK_STR(seen.channels[0], "room.1");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_history(s, "room.1", "a", T0 + 1500, 100, collect_chan, &seen, &recovered), 2);
    CHECK_INT(recovered, 1);
    CHECK_STR(seen.ids[0], "d");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_history(s, "room.1", "e", T0 + 1500, 100, collect_chan, &seen, &recovered), 0);
    CHECK_INT(recovered, 1);
    /* e expired: since a, d is there but e is gone, so not recovered */
    CHECK_INT(store_history(s, "room.1", "a", T0 + 2500, 100, collect_chan, &seen, &recovered), 1);
    CHECK_INT(recovered, 0);
    CHECK_INT(store_history(s, "room.9", "a", T0 + 1500, 100, collect_chan, &seen, &recovered), 0);
    CHECK_INT(recovered, 1);
    store_close(s);
}

static void history_keeps_the_newest_per_channel_and_says_what_is_lost(void)
{
    store_t *s = fresh();
    const char *ids[] = {"m1", "m2", "m3", "m4", "m5"};
    for (int i = 0; i < 5; i++)
        put_chan(s, ids[i], T0 + 1000, 60, "room.1");
    chan_seen_t seen = {0};
    int recovered = -1;
    /* keep 3: m3..m5 */
    CHECK_INT(store_history(s, "room.1", "", T0 + 1500, 3, collect_chan, &seen, &recovered), 3);
    CHECK_STR(seen.ids[0], "m3");
    CHECK_STR(seen.ids[2], "m5");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_history(s, "room.1", "m1", T0 + 1500, 3, collect_chan, &seen, &recovered), 3);
    CHECK_INT(recovered, 0); /* m2 is beyond the bound */
    CHECK_STR(seen.ids[0], "m3");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_history(s, "room.1", "m2", T0 + 1500, 3, collect_chan, &seen, &recovered), 3);
    CHECK_INT(recovered, 1); /* m3..m5 is everything after m2 */
    /* expired and deleted: the floor still says they are gone */
    char *all[] = {"m1", "m2", "m3", "m4", "m5"};
    CHECK_INT(store_mark_dispatched_many(s, all, 5), STORE_OK);
    put_chan(s, "m6", T0 + 100000, 60, "room.1");
    CHECK_INT(expire(s, T0 + 70000), 5);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_history(s, "room.1", "m4", T0 + 100500, 3, collect_chan, &seen, &recovered), 1);
    CHECK_STR(seen.ids[0], "m6");
    CHECK_INT(recovered, 0);
    CHECK_INT(store_history(s, "room.1", "m5", T0 + 100500, 3, collect_chan, &seen, &recovered), 1);
    CHECK_INT(recovered, 1);
    store_close(s);
}

static void trim_keeps_the_newest_per_channel_once_handed_over(void)
{
    store_t *s = fresh();
    char id[16];
    char *ids[12];
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "m%02d", i);
        put_chan(s, id, T0 + 1000, 60, "room.1");
        ids[i] = strdup(id);
    }
    put_chan(s, "z", T0 + 1000, 60, "room.2"); /* below STORE_TRIM_EVERY(4) for its channel */
    CHECK_INT(store_trim_channels(s, 4), 0);   /* none handed over yet: all kept */
    CHECK_INT(store_mark_dispatched_many(s, ids, 10), STORE_OK); /* m10, m11 are not */
    char *more[] = {"n0", "n1", "n2", "n3"};
    for (int i = 0; i < 4; i++)
        put_chan(s, more[i], T0 + 1000, 60, "room.1"); /* due again */
    CHECK_INT(store_mark_dispatched_many(s, more, 4), STORE_OK);
    CHECK_INT(store_trim_channels(s, 4), 10); /* m00..m09: beyond the newest 4, handed over */
    CHECK_INT(store_trim_channels(s, 4), 0);  /* not due again */
    chan_seen_t seen = {0};
    int recovered = -1;
    /* the newest 4 are n0..n3; m10, m11 are kept until handed over, not served */
    CHECK_INT(store_history(s, "room.1", "m05", T0 + 1500, 4, collect_chan, &seen, &recovered), 4);
    CHECK_INT(recovered, 0);
    CHECK_STR(seen.ids[0], "n0");
    CHECK_STR(seen.ids[3], "n3");
    CHECK_INT(store_history(s, "room.1", "m11", T0 + 1500, 4, collect_chan, &seen, &recovered), 4);
    CHECK_INT(recovered, 1); /* nothing after m11 is gone */
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_history(s, "room.1", "m08", T0 + 1500, 20, collect_chan, &seen, &recovered), 6);
    CHECK_INT(recovered, 0); /* m09 was trimmed: the floor says so */
    CHECK_STR(seen.ids[0], "m10");
    CHECK_INT(store_history(s, "room.2", "", T0 + 1500, 4, collect_chan, &seen, &recovered), 1);
    for (int i = 0; i < 12; i++)
        free(ids[i]);
    store_close(s);
}

/* Acks of several Ack messages recorded together: each for its own user,
 * an unknown id and a user who is not a recipient change nothing. */
static void ack_batch_records_each_users_acks(void)
{
    store_t *s = fresh();
    char *both[] = {"u1", "u2"}, *u1[] = {"u1"}, *a[] = {"a"}, *abz[] = {"a", "b", "zz"};
    put(s, "a", T0 + 1000, 60, both, 2, NULL, STORE_OK);
    put(s, "b", T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    put(s, "c", T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    store_ack_t acks[] = {{"u1", abz, 3}, {"u3", a, 1}};
    CHECK_INT(store_ack_batch(s, acks, 2), STORE_OK);
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "c");
    CHECK_INT(store_pending(s, "u2", NULL, T0 + 1500, 10, collect, &seen), 1); /* a */
    store_ack_t one[] = {{"u2", a, 1}};
    CHECK_INT(store_ack_batch(s, one, 1), STORE_OK);
    CHECK_INT(store_pending(s, "u2", NULL, T0 + 1500, 10, collect, &seen), 0);
    store_close(s);
}

static const check_case_t store_cases[] = {
    CHECK_CASE(trim_keeps_the_newest_per_channel_once_handed_over),
    CHECK_CASE(channel_message_is_handed_over_with_its_channel),
    CHECK_CASE(history_is_kept_messages_after_since_oldest_first),
    CHECK_CASE(history_keeps_the_newest_per_channel_and_says_what_is_lost),
    CHECK_CASE(pending_is_oldest_first_unacked_unexpired_with_ttl),
    CHECK_CASE(pending_after_an_id_lists_only_newer_messages),
    CHECK_CASE(ack_hides_a_message_for_that_user_only),
    CHECK_CASE(same_idempotency_key_returns_first_id_and_stores_once),
    CHECK_CASE(undispatched_lists_until_marked_with_recipients),
    CHECK_CASE(expire_drops_only_expired_dispatched_messages),
    CHECK_CASE(batch_is_one_transaction_with_duplicates_inside_it),
    CHECK_CASE(expire_drops_many_messages_in_chunks),
    CHECK_CASE(undispatched_callback_may_call_the_store_again),
    CHECK_CASE(pending_copies_data_and_fields_of_each_message),
    CHECK_CASE(a_user_named_twice_is_one_recipient),
    CHECK_CASE(a_ttl_0_message_keeps_its_recipients_for_the_hand_over_only),
    CHECK_CASE(pending_respects_limit_across_many_messages),
    CHECK_CASE(ack_batch_records_each_users_acks),
};

/* A database written by the version-1 schema (a dispatched column,
 * idem_key UNIQUE) opens, is migrated, and keeps its meaning: what was not
 * handed over is still listed for the hand-over, what was is not, pending
 * and idempotency keys work as before. */
static void sqlite_version_1_database_is_migrated(void)
{
    store_t *s = fresh_sqlite(); /* for the path; the database is made again below */
    store_close(s);
    unlink_sqlite_files();
    sqlite3 *db = NULL;
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    char sql[2048];
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL;"
             "CREATE TABLE messages(id TEXT PRIMARY KEY, topic TEXT NOT NULL, data BLOB NOT NULL,"
             " content_type TEXT NOT NULL, accepted_ms INTEGER NOT NULL, ttl INTEGER NOT NULL,"
             " expires_ms INTEGER NOT NULL, idem_key TEXT UNIQUE, broadcast INTEGER NOT NULL,"
             " dispatched INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
             "CREATE TABLE recipients(user TEXT NOT NULL, msg_id TEXT NOT NULL,"
             " acked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(user, msg_id)) WITHOUT ROWID;"
             "CREATE INDEX recipients_by_msg ON recipients(msg_id);"
             "CREATE INDEX messages_undispatched ON messages(id) WHERE dispatched = 0;"
             "CREATE INDEX messages_by_expiry ON messages(expires_ms);"
             "INSERT INTO messages VALUES('a', 't', x'31', 'application/json', %llu, 60, %llu,"
             " 'key-a', 0, 1);"
             "INSERT INTO messages VALUES('b', 't', x'32', 'application/json', %llu, 60, %llu,"
             " NULL, 0, 0);"
             "INSERT INTO recipients(user, msg_id) VALUES('u1', 'a'), ('u1', 'b');",
             (unsigned long long)(T0 + 1000), (unsigned long long)(T0 + 61000),
             (unsigned long long)(T0 + 1000), (unsigned long long)(T0 + 61000));
    CHECK_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char uri[80], err[256];
    snprintf(uri, sizeof uri, "sqlite:%s", path);
    s = store_open(uri, err, sizeof err);
    CHECK(s != NULL);
    if (!s)
        return;
    seen_t seen = {0};
    CHECK_INT(store_undispatched(s, T0 + 5000, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "b");
    CHECK_INT((int)seen.to_counts[0], 1);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 2);
    CHECK_STR(seen.ids[0], "a");
    CHECK_STR(seen.ids[1], "b");
    char *u1[] = {"u1"};
    store_msg_t m = {.topic = "t",
                     .data = (const unsigned char *)"3",
                     .data_len = 1,
                     .content_type = "application/json",
                     .accepted_ms = T0 + 2000,
                     .ttl = 60};
    snprintf(m.id, sizeof m.id, "c");
    char existing[IDS_LEN + 1] = "";
    CHECK_INT(store_put(s, &m, u1, 1, "key-a", existing), STORE_DUPLICATE);
    CHECK_STR(existing, "a");
    CHECK_INT(store_mark_dispatched(s, "b"), STORE_OK);
    CHECK_INT(store_undispatched(s, T0 + 5000, 10, collect, &seen), 0);
    CHECK_INT(expire(s, T0 + 62000), 2); /* both handed over now, both expired */
    int recovered = -1;
    CHECK_INT(store_history(s, "room", "", T0, 10, collect, &seen, &recovered), 0); /* version 3 */
    store_close(s);
    s = store_open(uri, err, sizeof err); /* opening a version-2 database again changes nothing */
    CHECK(s != NULL);
    store_close(s);
}

/* A version-2 database (before channels) gets the channel column, its
 * index and the floor table, and version 4's tables; its messages (their
 * recipients in the per-user index, as version 2 wrote them) keep their
 * meaning. */
static void sqlite_version_2_database_is_migrated_to_4(void)
{
    store_t *s = fresh_sqlite();
    store_close(s);
    unlink_sqlite_files();
    sqlite3 *db = NULL;
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    char sql[2048];
    snprintf(
        sql, sizeof sql,
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE messages(id TEXT PRIMARY KEY, topic TEXT NOT NULL, data BLOB NOT NULL,"
        " content_type TEXT NOT NULL, accepted_ms INTEGER NOT NULL, ttl INTEGER NOT NULL,"
        " expires_ms INTEGER NOT NULL, idem_key TEXT, broadcast INTEGER NOT NULL, rcpt BLOB)"
        " WITHOUT ROWID;"
        "CREATE UNIQUE INDEX messages_by_idem ON messages(idem_key) WHERE idem_key IS NOT NULL;"
        "CREATE INDEX messages_by_expiry ON messages(expires_ms);"
        "CREATE TABLE undispatched(id TEXT PRIMARY KEY) WITHOUT ROWID;"
        "CREATE TABLE recipients(user TEXT NOT NULL, msg_id TEXT NOT NULL,"
        " acked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(user, msg_id)) WITHOUT ROWID;"
        "CREATE INDEX recipients_by_msg ON recipients(msg_id);"
        "INSERT INTO messages VALUES('a', 't', x'31', 'application/json', %llu, 60, %llu,"
        " NULL, 0, NULL);"
        "INSERT INTO undispatched VALUES('a');"
        "INSERT INTO recipients(user, msg_id) VALUES('u1', 'a');"
        "PRAGMA user_version=2;",
        (unsigned long long)(T0 + 1000), (unsigned long long)(T0 + 61000));
    CHECK_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char uri[80], err[256];
    snprintf(uri, sizeof uri, "sqlite:%s", path);
    s = store_open(uri, err, sizeof err);
    CHECK(s != NULL);
    if (!s)
        return;
    chan_seen_t seen = {0};
    seen_t users = {0};
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &users), 1);
    CHECK_INT(store_undispatched(s, T0 + 5000, 10, collect, &users), 1);
    put_chan(s, "b", T0 + 2000, 60, "room");
    int recovered = -1;
    CHECK_INT(store_history(s, "room", "", T0 + 2500, 10, collect_chan, &seen, &recovered), 1);
    CHECK_STR(seen.ids[0], "b");
    store_close(s);
    db = NULL;
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CHECK_INT(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), 4);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static store_t *reopen_sqlite(void)
{
    char uri[80], err[256];
    snprintf(uri, sizeof uri, "sqlite:%s", path);
    store_t *s = store_open(uri, err, sizeof err);
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return s;
}

/* A single number read by a connection of the test's own (WAL: it sees
 * what the store committed) from the store's database (file "") or the
 * index's (".index"), or -1; with exec, runs that first. */
static long long sqlite_number(const char *file, const char *exec, const char *query)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    char name[96];
    snprintf(name, sizeof name, "%s%s", path, file);
    if (sqlite3_open(name, &db) == SQLITE_OK &&
        (!exec || sqlite3_exec(db, exec, NULL, NULL, NULL) == SQLITE_OK) &&
        sqlite3_prepare_v2(db, query, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* SQLite's per-user index is written late (store_sqlite.c, "Recipients"):
 * a message is pending before and after the indexer moved it, in order; an
 * ack before the indexer leaves no row in the index, one after marks the
 * row; an ack by a user who is not a recipient changes nothing; what is not
 * indexed yet is found again when the store is opened again; a pair that is
 * in the index while its message is not done (an indexer stopped half-way)
 * is read from the index only. */
static void sqlite_recipients_are_indexed_late(void)
{
    store_t *s = fresh_sqlite();
    char *both[] = {"u1", "u2"}, *u1[] = {"u1"}, *a[] = {"a"}, *b[] = {"b"};
    put(s, "a", T0 + 1000, 60, both, 2, NULL, STORE_OK);
    put(s, "b", T0 + 1000, 60, u1, 1, NULL, STORE_OK);
    put(s, "c", T0 + 9000, 60, u1, 1, NULL, STORE_OK); /* not due at T0 + 5000 */
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 3);
    CHECK_INT(store_ack(s, "u1", a, 1), STORE_OK); /* before the indexer */
    CHECK_INT(store_ack(s, "u3", a, 1), STORE_OK); /* not a recipient */
    CHECK_INT(sqlite_number("", NULL, "SELECT count(*) FROM tail_acks"), 1);
    CHECK_INT(sqlite_number(".index", NULL, "SELECT count(*) FROM recipients"), 0);
    /* the index is a database of its own, by user only: by message, the
     * inline lists say it */
    CHECK_INT(
        sqlite_number("", NULL, "SELECT count(*) FROM sqlite_master WHERE name = 'recipients'"), 0);
    CHECK_INT(
        sqlite_number(".index", NULL, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"),
        0);
    store_close(s);
    s = reopen_sqlite();
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 2);
    CHECK_STR(seen.ids[0], "b");
    CHECK_STR(seen.ids[1], "c");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u2", NULL, T0 + 1500, 10, collect, &seen), 1);
    CHECK_INT(store_pending(s, "u3", NULL, T0 + 1500, 10, collect, &seen), 0);
    /* half-way: (u2, a) already in the index, not acked: listed once */
    CHECK_INT(sqlite_number(".index", "INSERT INTO recipients(user, msg_id) VALUES('u2', 'a')",
                            "SELECT count(*) FROM recipients"),
              1);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u2", NULL, T0 + 1500, 10, collect, &seen), 1);
    CHECK_INT(store_index(s, T0 + 5000), 2); /* a and b */
    /* (u2, a) and (u1, b); none for the acked (u1, a) */
    CHECK_INT(sqlite_number(".index", NULL, "SELECT count(*) FROM recipients"), 2);
    CHECK_INT(sqlite_number(".index", NULL, "SELECT count(*) FROM recipients WHERE acked = 0"), 2);
    CHECK_INT(sqlite_number("", NULL, "SELECT count(*) FROM tail_acks"), 0);
    CHECK_INT(sqlite_number("", NULL, "SELECT count(*) FROM unindexed"), 1); /* c */
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 2);
    CHECK_STR(seen.ids[0], "b");
    CHECK_STR(seen.ids[1], "c");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 1, collect, &seen), 1); /* limit */
    CHECK_STR(seen.ids[0], "b");
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", "b", T0 + 1500, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "c");
    CHECK_INT(store_ack(s, "u1", b, 1), STORE_OK); /* after the indexer */
    CHECK_INT(sqlite_number(".index", NULL, "SELECT count(*) FROM recipients WHERE acked = 1"), 1);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "c");
    CHECK_INT(store_index(s, T0 + 5000), 0); /* c is not due yet */
    CHECK_INT(store_index(s, T0 + 20000), 1);
    CHECK_INT(sqlite_number("", NULL, "SELECT count(*) FROM unindexed"), 0);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 1);
    CHECK_STR(seen.ids[0], "c");
    store_close(s);
    /* the index's file lost: indexed again, its acks lost with it */
    char ix[96];
    snprintf(ix, sizeof ix, "%s.index", path);
    CHECK_INT(unlink(ix), 0);
    s = reopen_sqlite();
    CHECK_INT(sqlite_number("", NULL, "SELECT count(*) FROM unindexed"), 3);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 3);
    CHECK_INT(store_index(s, T0 + 20000), 3);
    memset(&seen, 0, sizeof seen);
    CHECK_INT(store_pending(s, "u1", NULL, T0 + 1500, 10, collect, &seen), 3);
    CHECK_STR(seen.ids[0], "a");
    CHECK_STR(seen.ids[2], "c");
    store_close(s);
}

/* The writer's commits and the expiry thread's indexer on the store at
 * once (store_sqlite.c: the indexer takes the lock only when no one else
 * wants it, and waits at most STORE_BG_YIELD_MS): commits back to back do
 * not keep the indexer out (the committer stops once it got in, or after
 * 30 s), and nothing is lost or indexed twice. */
typedef struct committer {
    store_t *s;
    int batches, failed;
    atomic_int stop, done;
} committer_t;

#define COMMIT_BATCH 50

static void *commit_back_to_back(void *arg)
{
    committer_t *c = arg;
    char *to[] = {"u1", "u2"};
    uint64_t until = ids_now_ms() + 30 * 1000;
    while (!atomic_load(&c->stop) && ids_now_ms() < until) {
        int b = c->batches;
        store_msg_t m[COMMIT_BATCH];
        store_put_item_t items[COMMIT_BATCH];
        memset(m, 0, sizeof m);
        memset(items, 0, sizeof items);
        for (int i = 0; i < COMMIT_BATCH; i++) {
            m[i] = (store_msg_t){.topic = "t",
                                 .data = (const unsigned char *)"1",
                                 .data_len = 1,
                                 .content_type = "application/json",
                                 .accepted_ms = T0 + (uint64_t)b,
                                 .ttl = 60};
            snprintf(m[i].id, sizeof m[i].id, "b%06d-%03d", b, i);
            items[i] = (store_put_item_t){.m = &m[i], .to = to, .n_to = 2};
        }
        if (store_put_batch(c->s, items, COMMIT_BATCH) != STORE_OK)
            c->failed++;
        c->batches++;
    }
    atomic_store(&c->done, 1);
    return NULL;
}

static void sqlite_indexer_gets_in_between_back_to_back_commits(void)
{
    store_t *s = fresh_sqlite();
    committer_t c = {.s = s};
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, commit_back_to_back, &c), 0);
    int indexed = 0, got_in = 0;
    while (!atomic_load(&c.done)) {
        int n = store_index(s, T0 + 1000 * 1000);
        CHECK(n >= 0);
        if (n > 0) {
            indexed += n;
            got_in |= !atomic_load(&c.done);
            atomic_store(&c.stop, 1);
        }
    }
    pthread_join(t, NULL);
    int n = store_index(s, T0 + 1000 * 1000);
    CHECK(n >= 0);
    indexed += n;
    CHECK_INT(c.failed, 0);
    CHECK_INT(got_in, 1);
    CHECK(c.batches > 0);
    CHECK_INT(indexed, c.batches * COMMIT_BATCH);
    CHECK_INT(sqlite_number("", NULL, "SELECT count(*) FROM unindexed"), 0);
    CHECK_INT(sqlite_number(".index", NULL, "SELECT count(*) FROM recipients"),
              2 * c.batches * COMMIT_BATCH);
    seen_t seen = {0};
    CHECK_INT(store_pending(s, "u2", NULL, T0 + 1500, 10, collect, &seen),
              c.batches * COMMIT_BATCH < 10 ? c.batches * COMMIT_BATCH : 10);
    CHECK_STR(seen.ids[0], "b000000-000");
    store_close(s);
}

static const check_case_t once_cases[] = {
    CHECK_CASE(sqlite_recipients_are_indexed_late),
    CHECK_CASE(sqlite_indexer_gets_in_between_back_to_back_commits),
    CHECK_CASE(sqlite_version_1_database_is_migrated),
    CHECK_CASE(sqlite_version_2_database_is_migrated_to_4),
    CHECK_CASE(unknown_or_empty_store_uris_are_refused),
    CHECK_CASE(mongo_store_without_a_server_is_unhealthy_and_fails_fast),
};

static size_t run_cases(const char *label, const check_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int before = check_failures;
        check_current = cases[i].name;
        cases[i].fn();
        printf("%s %s: %s\n", check_failures == before ? "ok  " : "FAIL", label, cases[i].name);
    }
    return n;
}

/* The MongoDB run's URI: PUSH_TEST_MONGO_URI with the test database in its path. */
static int mongo_setup(const char *env)
{
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(env, &e);
    if (!uri) {
        fprintf(stderr, "PUSH_TEST_MONGO_URI: %s\n", e.message);
        return -1;
    }
    snprintf(mongo_db, sizeof mongo_db, "push_test_%d", (int)getpid());
    /* The same URI with the test database as its path (mongoc_uri_get_string
     * would give back the original text). */
    const char *hosts = strstr(env, "://") + 3;
    size_t hosts_len = strcspn(hosts, "/?");
    const char *options = strchr(hosts + hosts_len, '?');
    snprintf(mongo_uri, sizeof mongo_uri, "%.*s/%s%s", (int)(hosts - env + hosts_len), env,
             mongo_db, options ? options : "");
    mongo_admin = mongoc_client_new_from_uri(uri);
    mongoc_uri_destroy(uri);
    if (!mongo_admin)
        return -1;
    mongoc_client_set_error_api(mongo_admin, MONGOC_ERROR_API_VERSION_2);
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    mongoc_init();
    T0 = ids_now_ms() + 3600 * 1000;
    size_t n_store = sizeof store_cases / sizeof store_cases[0], total = 0;
    total += run_cases("sqlite", store_cases, n_store);
    index_each_put = 1;
    total += run_cases("sqlite, indexed", store_cases, n_store);
    index_each_put = 0;
    unlink_sqlite_files();
    const char *env = getenv("PUSH_TEST_MONGO_URI");
    if (!env || !*env) {
        printf("skip mongodb: PUSH_TEST_MONGO_URI is not set (e.g. mongodb://127.0.0.1:27017)\n");
    } else if (mongo_setup(env) != 0) {
        check_failures++;
        printf("FAIL mongodb: PUSH_TEST_MONGO_URI='%s' is not a usable URI\n", env);
    } else {
        backend = "mongodb";
        total += run_cases("mongodb", store_cases, n_store);
        mongo_drop_test_db();
        mongoc_client_destroy(mongo_admin);
    }
    total += run_cases("any", once_cases, sizeof once_cases / sizeof once_cases[0]);
    printf("%zu cases, %d failed assertions\n", total, check_failures);
    return check_failures ? 1 : 0;
}
