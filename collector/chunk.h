/*
 * chunk: how the hand-over cuts stored messages into dispatch stream
 * messages. A message becomes one part per shard of its recipients (a
 * Dispatch protobuf, jsx.h for the shards); the parts one round has for a
 * shard gather in that shard's open chunk, a Dispatch whose `batch` holds
 * them in order, cut at CHUNK_MAX_BYTES. A chunk's stream message id is
 * "<first message id>.<shard>.<parts>" (chunk_msg_id), so a retry that cuts
 * the same chunk inside the stream's duplicate window is stored once.
 * Publishing, acks and marks are handover.c's.
 *
 * Threads: no state of its own; a chunk_t belongs to its caller (the
 * hand-over round, under its pub_lock) and is used by one thread at a time.
 */
#ifndef COLLECTOR_CHUNK_H
#define COLLECTOR_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "jsx.h"
#include "store.h"

/* A stream message carries the parts of many messages for one shard, up to
 * this many bytes (a part larger than that alone goes alone); well under
 * nats-server's default max_payload of 1 MiB. */
#define CHUNK_MAX_BYTES (256 * 1024)
/* Room for a part's field key (1 byte) and length (a varint, at most 5
 * bytes for 32 bits) in the batch. */
#define CHUNK_PART_OVERHEAD 6

/* The parts of a message, one per shard of its recipients: the recipients
 * of shard k, in their order, are to[start[k] .. start[k+1]). A broadcast
 * is one part on shard 0; a channel message one part on the shard of the
 * channel's name, so a channel's messages keep their order as a user's do. */
typedef struct chunk_parts {
    char **to; /* malloc'd array of the caller's strings; chunk_parts_free */
    size_t start[JSX_SHARDS + 1];
    int broadcast;
    int whole_shard; /* broadcast or channel: one part, on this shard, no recipients */
} chunk_parts_t;

/* Split m's recipients to[0..n_to) by shard into p (which borrows the
 * strings). Returns 0, or -1 when out of memory. */
int chunk_split(chunk_parts_t *p, const store_msg_t *m, char *const *to, size_t n_to);
void chunk_parts_free(chunk_parts_t *p);
/* How many non-empty parts p has. */
size_t chunk_count_parts(const chunk_parts_t *p);
/* Call fn for each non-empty part, shards in order; stops at the first
 * non-zero return and returns it. */
typedef int (*chunk_part_fn)(void *arg, unsigned shard, char *const *to, size_t n_to);
int chunk_each_part(const chunk_parts_t *p, chunk_part_fn fn, void *arg);

/* One part: the Dispatch protobuf of m for recipients to[0..n_to).
 * Returns a malloc'd buffer (caller frees) with its length in *len, or NULL. */
uint8_t *chunk_pack(const store_msg_t *m, char *const *to, size_t n_to, size_t *len);

/* A stream message being filled for one shard: a Dispatch whose `batch`
 * holds parts, each written as it is added (field 4, length-delimited), so
 * the caller's message need not outlive the add (the retry loop's rows
 * don't). Zero-initialised is empty. */
typedef struct chunk {
    uint8_t *buf; /* the encoded Dispatch, len bytes */
    size_t len, cap;
    char **ids; /* message id of each part, in order, then NULL; owned */
    size_t n, cap_ids;
} chunk_t;

/* 1 when c must be sent (and reset) before a part of part_len bytes is
 * added: it has parts and would then exceed CHUNK_MAX_BYTES. An empty
 * chunk takes any part, however large. */
int chunk_is_full_for(const chunk_t *c, size_t part_len);
/* Append the part (id, part[0..len)), copying both. Returns 0, or -1 when
 * out of memory (c keeps the parts it had). */
int chunk_add(chunk_t *c, const char *id, const uint8_t *part, size_t len);
/* The stream message id of c, which has parts, on shard:
 * "<first id>.<shard>.<parts>", into out (CHUNK_ID_MAX bytes are enough). */
#define CHUNK_ID_MAX 96
void chunk_msg_id(const chunk_t *c, unsigned shard, char *out, size_t out_size);
/* Empty c. With free_ids 0 the ids array (and its strings) now belong to
 * whoever took c->ids, to be freed id by id up to the NULL, then itself. */
void chunk_reset(chunk_t *c, int free_ids);

#endif
