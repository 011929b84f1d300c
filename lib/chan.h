/*
 * chan: what every program agrees on about channels (docs/ARCHITECTURE.md,
 * "Channels"): which names are valid, which grants of a token's `channels`
 * claim cover a name, and the Redis key that lists the nodes holding a
 * subscriber.
 *
 * Channel routes (written by the pusher, read by the dispatcher):
 *   key    <prefix>:chan:<channel>   a sorted set
 *   member <node id>                 a pusher node with >= 1 local subscriber
 *   score  unix seconds until which the entry counts (refreshed by that node)
 * Exactly the layout of the user routes (redisx.h): a key per channel, a
 * member per node, never a member per subscriber. Pure; any thread.
 */
#ifndef PUSH_CHAN_H
#define PUSH_CHAN_H

#include <stddef.h>

#define CHAN_MAX_NAME 255

/* 1 if s (n bytes) is a channel name: 1..CHAN_MAX_NAME bytes of
 * [A-Za-z0-9_.:@-]. */
int chan_name_ok(const char *s, size_t n);

/* 1 if grant covers channel: equal, or grant ends in '*' and channel
 * starts with what precedes it ("*" alone grants every channel). */
int chan_grant_covers(const char *grant, const char *channel);

/* 1 if any of grants[0..n) covers channel. */
int chan_granted(char *const *grants, size_t n, const char *channel);

/* "<prefix>:chan:<channel>" into buf. Returns its length (as snprintf). */
size_t chan_route_key(char *buf, size_t size, const char *prefix, const char *channel);

#endif
