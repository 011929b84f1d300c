/* Unit tests of pusher/conns: many connections per user, last-connection
 * detection, the broadcast list, bounded queues. */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "conns.h"

static void users_hold_many_connections_and_the_last_close_is_reported(void)
{
    conns_t *c = conns_new();
    conn_t *a = conns_open(c, NULL), *b = conns_open(c, NULL), *x = conns_open(c, NULL);
    CHECK(strcmp(a->id, b->id) != 0);
    CHECK(conns_get(c, a->id) == a);
    CHECK_INT(conns_authenticate(c, a, "u1"), 1);
    CHECK_INT(conns_authenticate(c, b, "u1"), 0);
    CHECK_INT(conns_authenticate(c, x, "u2"), 1);
    CHECK_INT(conns_user(c, "u1")->count, 2);
    CHECK_INT(conns_authed(c), 3);
    CHECK_INT(conns_users(c), 2);
    size_t all = 0;
    for (conn_t *p = conns_all(c); p; p = p->all_next)
        all++;
    CHECK_INT(all, 3);
    char *last = NULL;
    CHECK_INT(conns_close(c, a, &last), 0);
    CHECK(last == NULL);
    CHECK_INT(conns_close(c, b, &last), 1);
    CHECK_STR(last, "u1");
    free(last);
    CHECK(conns_user(c, "u1") == NULL);
    CHECK_INT(conns_authed(c), 1);
    CHECK(conns_all(c) == x);
    conn_t *pending = conns_open(c, NULL);
    CHECK_INT(conns_count(c), 2);
    CHECK_INT(conns_close(c, pending, &last), 0); /* never authenticated */
    conns_free(c);
}

static void queue_is_fifo_and_bounded(void)
{
    conns_t *c = conns_new();
    conn_t *a = conns_open(c, NULL);
    frame_t *f1 = frame_text("one", 3), *f2 = frame_text("two", 3);
    CHECK_INT(conn_enqueue(a, f1, 2, 100), 0);
    CHECK_INT(conn_enqueue(a, f2, 2, 100), 0);
    CHECK_INT(conn_enqueue(a, f1, 2, 100), -1); /* over the frame bound */
    CHECK(conn_peek(a) == f1);
    conn_pop(a);
    CHECK(conn_peek(a) == f2);
    CHECK_INT(a->q_bytes, 3);
    CHECK_INT(conn_enqueue(a, f1, 10, 5), -1); /* over the byte bound */
    for (int i = 0; i < 100; i++)              /* growth keeps order */
        CHECK_INT(conn_enqueue(a, i % 2 ? f1 : f2, 1000, 100000), 0);
    conn_pop(a);
    CHECK(conn_peek(a) == f2);
    CHECK_INT(conn_hold(a, f1, 1, 1000), 0);
    CHECK_INT(conn_hold(a, f1, 1, 1000), -1); /* over the frame bound */
    conn_drop_held(a);
    CHECK_INT(a->replay.held_bytes, 0);
    CHECK_INT(conn_hold(a, f1, 10, f1->len * 2), 0);
    CHECK_INT(conn_hold(a, f1, 10, f1->len * 2), 0);
    CHECK_INT(a->replay.held_bytes, f1->len * 2);
    CHECK_INT(conn_hold(a, f1, 10, f1->len * 2), -1); /* over the byte bound */
    frame_unref(f1);
    frame_unref(f2);
    conns_free(c); /* frees queued and held references: ASan checks the counts */
}

static void deadlines_expire_in_order_and_leave_with_the_connection(void)
{
    conns_t *c = conns_new();
    conn_t *a = conns_open(c, NULL), *b = conns_open(c, NULL), *d = conns_open(c, NULL);
    conns_wait(c, a, CONN_WAIT_AUTH, 100);
    conns_wait(c, b, CONN_WAIT_AUTH, 200);
    conns_wait(c, d, CONN_WAIT_AUTH, 300);
    CHECK(conns_wait_expired(c, CONN_WAIT_AUTH, 99) == NULL);
    CHECK(conns_wait_expired(c, CONN_WAIT_AUTH, 100) == a);
    CHECK(conns_wait_expired(c, CONN_WAIT_AUTH, 100) == NULL);
    CHECK_INT(a->wait_kind, CONN_WAIT_NONE);
    conns_wait(c, b, CONN_WAIT_REPLAY, 1000); /* moves: off the auth FIFO */
    CHECK(conns_wait_expired(c, CONN_WAIT_AUTH, 250) == NULL);
    conns_unwait(c, d); /* answered: never expires */
    conns_unwait(c, d); /* twice is harmless */
    CHECK(conns_wait_expired(c, CONN_WAIT_AUTH, 10000) == NULL);
    conns_wait(c, a, CONN_WAIT_REPLAY, 1100);
    CHECK(conns_wait_expired(c, CONN_WAIT_REPLAY, 999) == NULL);
    CHECK_INT(conns_close(c, b, NULL), 0); /* closing takes it off its FIFO */
    CHECK(conns_wait_expired(c, CONN_WAIT_REPLAY, 1050) == NULL);
    CHECK(conns_wait_expired(c, CONN_WAIT_REPLAY, 1100) == a);
    CHECK(conns_wait_expired(c, CONN_WAIT_REPLAY, 5000) == NULL);
    conns_free(c);
}

/* Two pushers (two conns_t) never hand out the same id, the first
 * connection included: ids were "c1" on every node. */
static void ids_differ_across_pushers(void)
{
    conns_t *n1 = conns_new(), *n2 = conns_new();
    conn_t *a = conns_open(n1, NULL), *b = conns_open(n2, NULL);
    CHECK(strcmp(a->id, b->id) != 0);
    CHECK_INT(strlen(a->id) <= CONN_ID_LEN, 1);
    CHECK(strchr(a->id, '-') != NULL);
    conns_free(n1);
    conns_free(n2);
}

/* The last CONN_RECENT ids given to a connection are repeats; older ones
 * and other connections' are not. */
static void repeats_are_the_recent_ids_only(void)
{
    conns_t *c = conns_new();
    conn_t *a = conns_open(c, NULL), *b = conns_open(c, NULL);
    char id[32];
    for (int i = 0; i < CONN_RECENT; i++) {
        snprintf(id, sizeof id, "m%d", i);
        CHECK_INT(conn_repeat(a, id), 0);
    }
    CHECK_INT(conn_repeat(a, "m0"), 1);
    CHECK_INT(conn_repeat(a, "m7"), 1);
    CHECK_INT(conn_repeat(b, "m0"), 0); /* per connection */
    CHECK_INT(conn_repeat(a, "m8"), 0); /* pushes m0 out */
    CHECK_INT(conn_repeat(a, "m0"), 0);
    conns_free(c);
}

/* replay.h: stored first, then held ones not among them; later live copies dropped. */
static frame_t *rframe(const char *id)
{
    frame_t *f = frame_text("x", 1);
    snprintf(f->id, sizeof f->id, "%s", id);
    return f;
}

typedef struct sent {
    char ids[8][32];
    int n;
} sent_t;

static void record(void *arg, frame_t *f)
{
    sent_t *s = arg;
    if (s->n < 8)
        snprintf(s->ids[s->n++], 32, "%s", f->id);
}

static void replay_sends_stored_then_held_without_copies(void)
{
    replay_t r = {.active = 1};
    frame_t *a = rframe("a"), *b = rframe("b"), *c = rframe("c"), *d = rframe("d");
    CHECK_INT(replay_hold(&r, b, 10, 1000), 0); /* live b and c came during the replay */
    CHECK_INT(replay_hold(&r, c, 10, 1000), 0);
    frame_t *stored[] = {a, b};
    sent_t s = {0};
    CHECK_INT(replay_finish(&r, stored, 2, record, &s), 1); /* b once */
    CHECK_INT(r.active, 0);
    CHECK_INT(s.n, 3);
    CHECK_STR(s.ids[0], "a");
    CHECK_STR(s.ids[1], "b");
    CHECK_STR(s.ids[2], "c");
    CHECK_INT(replay_is_copy(&r, b, 1), 1); /* a late live copy of b */
    CHECK_INT(replay_is_copy(&r, d, 1), 0); /* newer than every replayed one: the check ends */
    CHECK_INT(replay_is_copy(&r, b, 1), 0);
    replay_deinit(&r);
    frame_unref(a), frame_unref(b), frame_unref(c), frame_unref(d);
}

static void conn_ids_keep_every_id_in_order_past_growth(void)
{
    conns_t *c = conns_new();
    conn_ids_t l = {0};
    conn_t *cs[200];
    for (int i = 0; i < 200; i++) { /* past the first capacity (64), twice */
        cs[i] = conns_open(c, NULL);
        CHECK_INT(conn_ids_add(&l, cs[i]), 0);
    }
    CHECK_INT((int)l.n, 200);
    for (int i = 0; i < 200; i++)
        CHECK(conns_get(c, l.id[i]) == cs[i]);
    conn_ids_free(&l);
    CHECK_INT((int)l.n, 0);
    CHECK(l.id == NULL);
    conns_free(c);
}

CHECK_MAIN(CHECK_CASE(replay_sends_stored_then_held_without_copies),
           CHECK_CASE(users_hold_many_connections_and_the_last_close_is_reported),
           CHECK_CASE(repeats_are_the_recent_ids_only), CHECK_CASE(ids_differ_across_pushers),
           CHECK_CASE(queue_is_fifo_and_bounded),
           CHECK_CASE(deadlines_expire_in_order_and_leave_with_the_connection),
           CHECK_CASE(conn_ids_keep_every_id_in_order_past_growth))
