/* Unit tests of dispatcher/outbox: one NATS message per node per batch. */
#include <stdlib.h>

#include "check.h"
#include "outbox.h"

/* What the outbox sent: per send, "node:id(users)id(users)...;" decoded
 * back from the packed NodeDelivery, plain or batch. */
typedef struct sent {
    char out[512];
    int sends, fail;
} sent_t;

static void show_entry(sent_t *s, const Push__V1__NodeDelivery *d)
{
    size_t l = strlen(s->out);
    l += (size_t)snprintf(s->out + l, sizeof s->out - l, "%s(", d->message ? d->message->id : "?");
    for (size_t i = 0; i < d->n_users; i++)
        l += (size_t)snprintf(s->out + l, sizeof s->out - l, "%s%s", i ? "," : "", d->users[i]);
    snprintf(s->out + l, sizeof s->out - l, ")");
}

static int record(void *arg, const char *node, const uint8_t *buf, size_t len, size_t n_entries)
{
    sent_t *s = arg;
    s->sends++;
    Push__V1__NodeDelivery *d = push__v1__node_delivery__unpack(NULL, len, buf);
    CHECK(d != NULL);
    if (!d)
        return -1;
    size_t l = strlen(s->out);
    snprintf(s->out + l, sizeof s->out - l, "%s:", node);
    if (d->n_batch) {
        CHECK(d->message == NULL);
        CHECK_INT(d->n_batch, n_entries);
        for (size_t i = 0; i < d->n_batch; i++)
            show_entry(s, d->batch[i]);
    } else {
        CHECK_INT(n_entries, 1);
        show_entry(s, d);
    }
    l = strlen(s->out);
    snprintf(s->out + l, sizeof s->out - l, ";");
    push__v1__node_delivery__free_unpacked(d, NULL);
    return s->fail ? -1 : 0;
}

static Push__V1__Message msg(char *id, size_t data_len)
{
    static unsigned char data[4096];
    Push__V1__Message m = PUSH__V1__MESSAGE__INIT;
    m.id = id;
    m.topic = "t";
    m.has_data = 1;
    m.data.data = data;
    m.data.len = data_len;
    m.content_type = "application/json";
    return m;
}

static void each_node_gets_its_entries_in_order_in_one_message(void)
{
    sent_t s = {.sends = 0};
    outbox_t *o = outbox_new(OUTBOX_MAX_BYTES, record, &s);
    Push__V1__Message a = msg("a", 1), b = msg("b", 1), c = msg("c", 1);
    char *u1[] = {"u1"}, *u2[] = {"u2"}, *u13[] = {"u1", "u3"};
    CHECK_INT(outbox_add(o, "n1", &a, u1, 1), 0);
    CHECK_INT(outbox_add(o, "n2", &a, u2, 1), 0);
    CHECK_INT(outbox_add(o, "n1", &b, u13, 2), 0);
    CHECK_INT(outbox_add(o, "n1", &c, u1, 1), 0);
    CHECK_INT(s.sends, 0); /* nothing before the flush */
    CHECK_INT(outbox_flush(o), 0);
    CHECK_STR(s.out, "n1:a(u1)b(u1,u3)c(u1);n2:a(u2);");
    CHECK_INT(s.sends, 2);
    CHECK_INT(outbox_flush(o), 0); /* flushed entries are not sent again */
    CHECK_INT(s.sends, 2);
    outbox_free(o);
}

static void a_node_over_max_bytes_is_sent_early_and_a_large_entry_goes_alone(void)
{
    sent_t s = {.sends = 0};
    outbox_t *o = outbox_new(1000, record, &s);
    Push__V1__Message a = msg("a", 400), b = msg("b", 400), c = msg("c", 3000), d = msg("d", 10);
    char *u1[] = {"u1"};
    CHECK_INT(outbox_add(o, "n1", &a, u1, 1), 0);
    CHECK_INT(outbox_add(o, "n1", &b, u1, 1), 0);
    CHECK_INT(s.sends, 0);                        /* a + b fit in 1000 bytes */
    CHECK_INT(outbox_add(o, "n1", &c, u1, 1), 0); /* c does not: a + b go first */
    CHECK_STR(s.out, "n1:a(u1)b(u1);");
    CHECK_INT(outbox_add(o, "n1", &d, u1, 1), 0); /* c is over the limit alone: it goes alone */
    CHECK_INT(outbox_flush(o), 0);
    CHECK_STR(s.out, "n1:a(u1)b(u1);n1:c(u1);n1:d(u1);");
    outbox_free(o);
}

static void a_failed_send_is_reported_and_the_other_nodes_are_still_sent(void)
{
    sent_t s = {.fail = 1};
    outbox_t *o = outbox_new(OUTBOX_MAX_BYTES, record, &s);
    Push__V1__Message a = msg("a", 1);
    char *u1[] = {"u1"};
    outbox_add(o, "n1", &a, u1, 1);
    outbox_add(o, "n2", &a, u1, 1);
    CHECK_INT(outbox_flush(o), -1);
    CHECK_INT(s.sends, 2);
    outbox_free(o);
}

CHECK_MAIN(CHECK_CASE(each_node_gets_its_entries_in_order_in_one_message),
           CHECK_CASE(a_node_over_max_bytes_is_sent_early_and_a_large_entry_goes_alone),
           CHECK_CASE(a_failed_send_is_reported_and_the_other_nodes_are_still_sent))
