/* Unit tests of collector/pending: what a connecting user's pusher gets. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "pending.h"
#include "push/v1/push.pb-c.h"

static char path[64];

static store_t *fresh(void)
{
    char uri[80], err[256];
    snprintf(path, sizeof path, "/tmp/push-pending-test-%d.db", (int)getpid());
    unlink(path);
    snprintf(uri, sizeof uri, "sqlite:%s", path);
    store_t *s = store_open(uri, err, sizeof err);
    CHECK(s != NULL);
    return s;
}

static void done(store_t *s)
{
    char f[80];
    store_close(s);
    unlink(path);
    snprintf(f, sizeof f, "%s-wal", path), unlink(f);
    snprintf(f, sizeof f, "%s-shm", path), unlink(f);
}

/* Store a message of data_len bytes for u1. */
static void put(store_t *s, const char *id, size_t data_len, uint32_t ttl)
{
    static unsigned char data[4096];
    memset(data, 'x', sizeof data);
    char *to[] = {"u1"};
    store_msg_t m = {.topic = "t",
                     .data = data,
                     .data_len = data_len,
                     .content_type = "application/octet-stream",
                     .accepted_ms = 1000,
                     .ttl = ttl};
    snprintf(m.id, sizeof m.id, "%s", id);
    char existing[IDS_LEN + 1];
    CHECK_INT(store_put(s, &m, to, 1, NULL, existing), STORE_OK);
}

/* Ask for user's messages (limit 0 = default; after NULL = from the first)
 * and decode the reply. */
static Push__V1__PendingReply *ask_after(store_t *s, const char *user, const char *after,
                                         uint32_t limit, size_t max_bytes)
{
    Push__V1__PendingRequest req = PUSH__V1__PENDING_REQUEST__INIT;
    req.user = (char *)user;
    req.after = (char *)after;
    req.has_limit = limit != 0;
    req.limit = limit;
    uint8_t buf[256];
    size_t n = push__v1__pending_request__pack(&req, buf), len = 0, count = 0;
    pending_status_t st;
    uint8_t *out = pending_answer(s, buf, n, 2000, max_bytes, &len, &st, &count);
    CHECK_INT(st, PENDING_OK);
    Push__V1__PendingReply *r = push__v1__pending_reply__unpack(NULL, len, out);
    free(out);
    CHECK(r != NULL);
    CHECK_INT(r ? r->n_messages : 0, count);
    return r;
}

static Push__V1__PendingReply *ask(store_t *s, const char *user, uint32_t limit, size_t max_bytes)
{
    return ask_after(s, user, NULL, limit, max_bytes);
}

static void reply_lists_messages_oldest_first_with_their_fields(void)
{
    store_t *s = fresh();
    put(s, "m2", 3, 60);
    put(s, "m1", 2, 60);
    put(s, "m3", 1, 0); /* live only: never pending */
    Push__V1__PendingReply *r = ask(s, "u1", 0, 1 << 20);
    CHECK_INT(r->n_messages, 2);
    CHECK_STR(r->messages[0]->id, "m1");
    CHECK_STR(r->messages[1]->id, "m2");
    CHECK_STR(r->messages[1]->topic, "t");
    CHECK_STR(r->messages[1]->content_type, "application/octet-stream");
    CHECK_INT(r->messages[1]->data.len, 3);
    CHECK_INT(r->messages[1]->accepted_ms, 1000);
    CHECK_INT(r->messages[1]->ttl, 60);
    CHECK(r->error == NULL);
    push__v1__pending_reply__free_unpacked(r, NULL);
    r = ask(s, "u1", 1, 1 << 20); /* the request's limit */
    CHECK_INT(r->n_messages, 1);
    CHECK_STR(r->messages[0]->id, "m1");
    push__v1__pending_reply__free_unpacked(r, NULL);
    r = ask(s, "nobody", 0, 1 << 20);
    CHECK_INT(r->n_messages, 0);
    push__v1__pending_reply__free_unpacked(r, NULL);
    done(s);
}

static void after_lists_only_messages_newer_than_that_id(void)
{
    store_t *s = fresh();
    put(s, "m1", 1, 60);
    put(s, "m2", 1, 60);
    put(s, "m3", 1, 60);
    Push__V1__PendingReply *r = ask_after(s, "u1", "m1", 0, 1 << 20);
    CHECK_INT(r->n_messages, 2);
    CHECK_STR(r->messages[0]->id, "m2");
    CHECK_STR(r->messages[1]->id, "m3");
    push__v1__pending_reply__free_unpacked(r, NULL);
    r = ask_after(s, "u1", "m3", 0, 1 << 20);
    CHECK_INT(r->n_messages, 0);
    push__v1__pending_reply__free_unpacked(r, NULL);
    done(s);
}

static void byte_budget_cuts_an_in_order_prefix_and_always_sends_the_oldest(void)
{
    store_t *s = fresh();
    put(s, "a", 3000, 60); /* over the budget alone: still sent, first */
    put(s, "b", 100, 60);
    Push__V1__PendingReply *r = ask(s, "u1", 0, 1000);
    CHECK_INT(r->n_messages, 1);
    CHECK_STR(r->messages[0]->id, "a");
    push__v1__pending_reply__free_unpacked(r, NULL);
    done(s);

    s = fresh();
    put(s, "a", 100, 60);
    put(s, "b", 3000, 60); /* does not fit after a */
    put(s, "c", 100, 60);  /* would fit, but must not jump ahead of b */
    r = ask(s, "u1", 0, 1000);
    CHECK_INT(r->n_messages, 1);
    CHECK_STR(r->messages[0]->id, "a");
    push__v1__pending_reply__free_unpacked(r, NULL);
    done(s);
}

static void malformed_request_gets_an_error_reply(void)
{
    store_t *s = fresh();
    const uint8_t garbage[] = {0xff, 0x01};
    size_t len = 0, count = 9;
    pending_status_t st;
    uint8_t *out = pending_answer(s, garbage, sizeof garbage, 2000, 1 << 20, &len, &st, &count);
    CHECK_INT(st, PENDING_MALFORMED);
    CHECK_INT(count, 0);
    Push__V1__PendingReply *r = push__v1__pending_reply__unpack(NULL, len, out);
    CHECK(r != NULL);
    if (r) {
        CHECK_STR(r->error, "not a push.v1.PendingRequest");
        CHECK_INT(r->n_messages, 0);
        push__v1__pending_reply__free_unpacked(r, NULL);
    }
    free(out);
    done(s);
}

CHECK_MAIN(CHECK_CASE(reply_lists_messages_oldest_first_with_their_fields),
           CHECK_CASE(after_lists_only_messages_newer_than_that_id),
           CHECK_CASE(byte_budget_cuts_an_in_order_prefix_and_always_sends_the_oldest),
           CHECK_CASE(malformed_request_gets_an_error_reply))
