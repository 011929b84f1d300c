/* Unit tests of collector/chunk: how the hand-over cuts messages into
 * dispatch stream messages (parts per shard, the byte cut, the stream
 * message id, the Dispatch.batch encoding). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "chunk.h"
#include "push/v1/push.pb-c.h"

/* The stream message ids a sequence of parts is cut into on one shard,
 * the way handover.c cuts them: a part that does not fit sends the open
 * chunk first. */
typedef struct cut {
    chunk_t c;
    char ids[8][96];
    size_t n_ids;
    unsigned shard;
} cut_t;

static void cut_send(cut_t *k)
{
    if (!k->c.n)
        return;
    if (k->n_ids < 8)
        chunk_msg_id(&k->c, k->shard, k->ids[k->n_ids++], sizeof k->ids[0]);
    chunk_reset(&k->c, 1);
}

static void cut_add(cut_t *k, const char *id, size_t part_len)
{
    uint8_t *part = calloc(1, part_len ? part_len : 1);
    CHECK(part != NULL);
    if (chunk_is_full_for(&k->c, part_len))
        cut_send(k);
    CHECK_INT(chunk_add(&k->c, id, part, part_len), 0);
    free(part);
}

static void chunk_id_is_first_message_id_shard_and_parts(void)
{
    cut_t k = {.shard = 7};
    cut_add(&k, "0000000001AAAA", 10);
    cut_add(&k, "0000000002BBBB", 10);
    cut_add(&k, "0000000003CCCC", 10);
    cut_send(&k);
    CHECK_INT(k.n_ids, 1);
    CHECK_STR(k.ids[0], "0000000001AAAA.7.3");
}

/* Parts of 1,000 bytes take 1,003 in the batch (key, 2-byte length); a
 * chunk takes another while its length + 1,000 + 6 stays within 256 KiB:
 * 261 parts (261,783 bytes), the 262nd starts the next chunk. */
static void chunk_is_cut_at_the_byte_limit(void)
{
    CHECK_INT(CHUNK_MAX_BYTES, 262144);
    cut_t k = {.shard = 0};
    char id[32];
    for (int i = 0; i < 262; i++) {
        snprintf(id, sizeof id, "m%03d", i);
        cut_add(&k, id, 1000);
        if (i == 260)
            CHECK_INT(k.c.len, 261783);
    }
    CHECK_INT(k.n_ids, 1);
    CHECK_STR(k.ids[0], "m000.0.261");
    CHECK_INT(k.c.n, 1);
    CHECK_STR(k.c.ids[0], "m261");
    chunk_reset(&k.c, 1);
}

/* At the edge: a chunk of len bytes takes a part of CHUNK_MAX_BYTES - len
 * - 6 bytes and not one byte more. */
static void chunk_takes_a_part_up_to_the_limit_exactly(void)
{
    chunk_t c = {0};
    uint8_t part[100] = {0};
    CHECK_INT(chunk_add(&c, "a", part, sizeof part), 0); /* 102 bytes */
    CHECK_INT(c.len, 102);
    CHECK_INT(chunk_is_full_for(&c, CHUNK_MAX_BYTES - 102 - 6), 0);
    CHECK_INT(chunk_is_full_for(&c, CHUNK_MAX_BYTES - 102 - 6 + 1), 1);
    chunk_reset(&c, 1);
}

static void part_larger_than_the_limit_goes_alone(void)
{
    cut_t k = {.shard = 3};
    cut_add(&k, "a", 100);
    cut_add(&k, "b", CHUNK_MAX_BYTES + 1000);
    cut_add(&k, "c", 100);
    cut_add(&k, "d", 100);
    cut_send(&k);
    CHECK_INT(k.n_ids, 3);
    CHECK_STR(k.ids[0], "a.3.1");
    CHECK_STR(k.ids[1], "b.3.1");
    CHECK_STR(k.ids[2], "c.3.2");
    /* an empty chunk takes any part */
    chunk_t c = {0};
    CHECK_INT(chunk_is_full_for(&c, 4 * CHUNK_MAX_BYTES), 0);
}

typedef struct seen {
    unsigned shard[JSX_SHARDS];
    size_t n_to[JSX_SHARDS];
    char *const *to[JSX_SHARDS];
    size_t n;
} seen_t;

static int seen_part(void *arg, unsigned shard, char *const *to, size_t n_to)
{
    seen_t *s = arg;
    s->shard[s->n] = shard;
    s->to[s->n] = to;
    s->n_to[s->n] = n_to;
    s->n++;
    return 0;
}

/* Two users on one shard and one on another: two parts, shards in order,
 * each user in the order given. */
static void message_splits_into_one_part_per_shard(void)
{
    char names[64][8];
    const char *same1 = NULL, *same2 = NULL, *other = NULL;
    for (int i = 0; i < 64 && !(same2 && other); i++) {
        snprintf(names[i], sizeof names[i], "u%d", i);
        if (!same1)
            same1 = names[i];
        else if (!same2 && jsx_shard_of(names[i]) == jsx_shard_of(same1))
            same2 = names[i];
        else if (!other && jsx_shard_of(names[i]) != jsx_shard_of(same1))
            other = names[i];
    }
    CHECK(same2 && other);
    if (!same2 || !other)
        return;
    char *to[] = {(char *)same2, (char *)other, (char *)same1};
    store_msg_t m = {.id = "m1", .topic = "t", .content_type = "text/plain"};
    chunk_parts_t p;
    CHECK_INT(chunk_split(&p, &m, to, 3), 0);
    CHECK_INT(chunk_count_parts(&p), 2);
    seen_t s = {0};
    CHECK_INT(chunk_each_part(&p, seen_part, &s), 0);
    CHECK_INT(s.n, 2);
    unsigned a = jsx_shard_of(same1), b = jsx_shard_of(other);
    size_t at_same = a < b ? 0 : 1;
    CHECK_INT(s.shard[at_same], a);
    CHECK_INT(s.shard[1 - at_same], b);
    CHECK_INT(s.n_to[at_same], 2);
    CHECK_STR(s.to[at_same][0], same2);
    CHECK_STR(s.to[at_same][1], same1);
    CHECK_INT(s.n_to[1 - at_same], 1);
    CHECK_STR(s.to[1 - at_same][0], other);
    chunk_parts_free(&p);

    /* a broadcast: one part on shard 0; a channel message: one on its shard */
    store_msg_t bc = {.id = "m2", .topic = "t", .content_type = "x", .broadcast = 1};
    CHECK_INT(chunk_split(&p, &bc, NULL, 0), 0);
    seen_t sb = {0};
    chunk_each_part(&p, seen_part, &sb);
    CHECK_INT(chunk_count_parts(&p), 1);
    CHECK_INT(sb.n, 1);
    CHECK_INT(sb.shard[0], 0);
    CHECK_INT(sb.n_to[0], 0);
    chunk_parts_free(&p);
    store_msg_t ch = {.id = "m3", .topic = "t", .content_type = "x", .channel = "news"};
    CHECK_INT(chunk_split(&p, &ch, NULL, 0), 0);
    seen_t sc = {0};
    chunk_each_part(&p, seen_part, &sc);
    CHECK_INT(sc.n, 1);
    CHECK_INT(sc.shard[0], jsx_shard_of("news"));
    chunk_parts_free(&p);
}

/* The batch is a Dispatch whose `batch` holds each part, in order, as it
 * was packed. */
static void chunk_decodes_to_the_same_parts_in_order(void)
{
    static unsigned char big[300];
    memset(big, 'z', sizeof big); /* a part over 127 bytes: a 2-byte length */
    char *to1[] = {"alice", "bob"};
    char *to3[] = {"carol"};
    store_msg_t ms[3] = {
        {.id = "00000001",
         .topic = "a",
         .data = (const unsigned char *)"hi",
         .data_len = 2,
         .content_type = "text/plain",
         .accepted_ms = 1000,
         .ttl = 60},
        {.id = "00000002",
         .topic = "b",
         .data = big,
         .data_len = sizeof big,
         .content_type = "application/octet-stream",
         .accepted_ms = 1001,
         .ttl = 0,
         .broadcast = 1},
        {.id = "00000003",
         .topic = "c",
         .data = (const unsigned char *)"",
         .data_len = 0,
         .content_type = "text/plain",
         .accepted_ms = 1002,
         .ttl = 5,
         .channel = "news"},
    };
    char *const *tos[3] = {to1, NULL, to3};
    size_t n_tos[3] = {2, 0, 1};
    chunk_t c = {0};
    for (int i = 0; i < 3; i++) {
        size_t len = 0;
        uint8_t *part = chunk_pack(&ms[i], tos[i], n_tos[i], &len);
        CHECK(part != NULL);
        CHECK_INT(chunk_is_full_for(&c, len), 0);
        CHECK_INT(chunk_add(&c, ms[i].id, part, len), 0);
        free(part);
    }
    char id[96];
    chunk_msg_id(&c, 2, id, sizeof id);
    CHECK_STR(id, "00000001.2.3");
    Push__V1__Dispatch *d = push__v1__dispatch__unpack(NULL, c.len, c.buf);
    CHECK(d != NULL);
    if (d) {
        CHECK(d->message == NULL);
        CHECK_INT(d->n_to, 0);
        CHECK_INT(d->n_batch, 3);
        for (size_t i = 0; i < d->n_batch && i < 3; i++) {
            const Push__V1__Dispatch *p = d->batch[i];
            CHECK(p->message != NULL);
            if (!p->message)
                continue;
            CHECK_STR(p->message->id, ms[i].id);
            CHECK_STR(p->message->topic, ms[i].topic);
            CHECK_INT(p->message->data.len, ms[i].data_len);
            CHECK(ms[i].data_len == 0 ||
                  memcmp(p->message->data.data, ms[i].data, ms[i].data_len) == 0);
            CHECK_STR(p->message->content_type, ms[i].content_type);
            CHECK_INT(p->message->accepted_ms, ms[i].accepted_ms);
            CHECK_INT(p->message->ttl, ms[i].ttl);
            CHECK_INT(p->broadcast, ms[i].broadcast);
            if (ms[i].channel)
                CHECK_STR(p->message->channel, ms[i].channel);
            else
                CHECK(p->message->channel == NULL || p->message->channel[0] == '\0');
            CHECK_INT(p->n_to, n_tos[i]);
            for (size_t k = 0; k < p->n_to && k < n_tos[i]; k++)
                CHECK_STR(p->to[k], tos[i][k]);
        }
        push__v1__dispatch__free_unpacked(d, NULL);
    }
    chunk_reset(&c, 1);
}

CHECK_MAIN(CHECK_CASE(chunk_id_is_first_message_id_shard_and_parts),
           CHECK_CASE(chunk_is_cut_at_the_byte_limit),
           CHECK_CASE(chunk_takes_a_part_up_to_the_limit_exactly),
           CHECK_CASE(part_larger_than_the_limit_goes_alone),
           CHECK_CASE(message_splits_into_one_part_per_shard),
           CHECK_CASE(chunk_decodes_to_the_same_parts_in_order))
