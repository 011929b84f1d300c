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
 */
#ifndef PUSH_JSX_H
#define PUSH_JSX_H

#include <nats/nats.h>
#include <stddef.h>

/* Fixed: the collector and every dispatcher must agree on it. Changing it
 * moves users between shards (order is not kept across such a change for
 * messages still in flight). It bounds how many dispatchers share work. */
#define JSX_SHARDS 16

/* "<PREFIX upper-cased, non-alphanumerics as _>_DISPATCH" into out. */
void jsx_stream_name(char *out, size_t size, const char *prefix);

/* The shard of a user id: FNV-1a 32 of its bytes, mod JSX_SHARDS. */
unsigned jsx_shard_of(const char *user);

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
