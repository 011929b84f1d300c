/*
 * jsx: the JetStream stream that carries accepted messages from the
 * collector to the dispatcher. Both sides create or update it at start, so
 * either may start first (a dispatcher leaves a missing stream to the
 * collector for its first seconds: dispatcher/consume.c).
 *
 * The stream is cut into JSX_SHARDS shards by recipient: the subject of
 * shard i is <prefix>.dispatch.<i>, and a user's messages always go to the
 * shard jsx_shard_of(user). At any time one dispatcher owns a shard (a lease
 * in Redis, dispatcher/lease.h), so one user's messages are dispatched by
 * one dispatcher, in stream order, however many dispatchers run. A message
 * to users of several shards is handed over once per shard, each part with
 * the recipients of that shard; broadcasts go to shard 0.
 *
 * Messages go to JSX_SHARDS_USED of the shards only, every
 * JSX_SHARDS / JSX_SHARDS_USED-th (0, 4, 8, 12). A collector's round puts
 * one stream message on each shard it has recipients in, and every stream
 * message costs a publish, an ack, a store in nats-server, a delivery, a
 * Redis round trip and a NodeDelivery: at 10,000 messages/s over 16 shards
 * the dispatcher took batches of 1.9 messages, and over 4 it did a third
 * less work, nats-server and Redis a quarter less (docs/BENCHMARKS.md).
 * Dispatchers still consume all JSX_SHARDS: collectors before this change
 * spread users over all 16 (hash mod 16), and a dispatcher of any version
 * reads what either kind wrote. A collector waits at start until the shards
 * it does not use have nothing left to dispatch (collector/handover.c), so
 * an older collector's messages are not overtaken by its own.
 */
#ifndef PUSH_JSX_H
#define PUSH_JSX_H

#include <nats/nats.h>
#include <stddef.h>

/* Fixed: every dispatcher and collector must agree on them. JSX_SHARDS
 * bounds how many dispatchers share the shards; JSX_SHARDS_USED how many
 * share the work. Changing the mapping moves users between shards: a
 * collector keeps order across such a change by waiting for the shards it
 * does not use (see above). */
#define JSX_SHARDS 16
#define JSX_SHARDS_USED 4

/* "<PREFIX upper-cased, non-alphanumerics as _>_DISPATCH" into out. */
void jsx_stream_name(char *out, size_t size, const char *prefix);

/* The shard of a user id (or a channel name): FNV-1a 32 of its bytes, mod
 * JSX_SHARDS_USED, times JSX_SHARDS / JSX_SHARDS_USED. */
unsigned jsx_shard_of(const char *user);

/* 1 when collectors put messages on shard (0 <= shard < JSX_SHARDS). */
int jsx_shard_used(unsigned shard);

/* The durable consumer of a shard, "dispatch-<shard>", into out. Returns out. */
const char *jsx_shard_consumer(char *out, size_t size, unsigned shard);

/* "<prefix>.dispatch.<shard>" into out. Returns out. */
const char *jsx_shard_subject(char *out, size_t size, const char *prefix, unsigned shard);

/* The most replicas JetStream keeps of a stream (nats-server refuses more). */
#define JSX_MAX_REPLICAS 5

/* Create the stream (subjects <prefix>.dispatch.*), or update it to the
 * expected config if it exists. replicas 1..JSX_MAX_REPLICAS: the stream
 * gets that many (an existing one is changed to it; JetStream moves the
 * data); 0: a new stream gets 1 and an existing one keeps its count. The
 * collector owns the count (--stream-replicas); the dispatcher passes 0 so
 * that, starting second, it never scales a replicated stream back to 1.
 * Blocks for at most a few seconds. Returns NATS_OK or the failure (logged). */
natsStatus jsx_ensure_dispatch_stream(jsCtx *js, const char *prefix, int replicas);

#endif
