/*
 * natsx: the NATS connection every service uses.
 *
 * The connection retries the first connect and reconnects forever, logging
 * each loss and each return; publishes made while disconnected are buffered
 * by nats.c (up to its reconnect buffer) and sent on reconnect. Callbacks of
 * subscriptions run on nats.c's threads, never on a service's event loop.
 */
#ifndef PUSH_NATSX_H
#define PUSH_NATSX_H

#include <nats/nats.h>
#include <stddef.h>
#include <stdint.h>

/* Connect to urls ("nats://a:4222,nats://b:4222") as `name`. Returns NATS_OK
 * with *out set even when the server is not up yet (the connection keeps
 * trying in the background); any other status means bad options. */
natsStatus natsx_connect(natsConnection **out, const char *urls, const char *name);

/* The same, but each publish is written at once (natsOptions_SetSendAsap).
 * On a natsx_connect connection nats.c's flusher thread writes what was
 * published 1 ms after the first publish it was woken for (nats.c 3.4.1,
 * _flusher): cheap for many small publishes, a millisecond and two thread
 * wake-ups added to each one on a message's path. For a sender of few,
 * latency-bound publishes (the collector's hand-over, docs/ARCHITECTURE.md),
 * on a connection of its own so that the rest still share writes. */
natsStatus natsx_connect_now(natsConnection **out, const char *urls, const char *name);

/* Process-wide: fn(arg, 0) when a natsx connection of this process is lost
 * (not when it is closed on purpose) and fn(arg, 1) when it is back, its
 * subscriptions sent to the server again. fn runs on nats.c's threads and
 * must not block. fn NULL removes the watcher; once natsx_watch returns, an
 * earlier watcher is not running and will not be called again. */
void natsx_watch(void (*fn)(void *arg, int up), void *arg);

/* 1 while the connection is up (for /readyz). */
int natsx_connected(natsConnection *nc);

/* Which connection to the server this is: returns 1 and sets *epoch (how
 * many times nc has connected again so far) while nc is connected; 0 while
 * it is not (a publish now would wait in the reconnect buffer). A sender
 * that must keep order notes the epoch when it starts and checks it before
 * each publish: once it changed, something it published may have been lost
 * with the old connection while what it publishes now would get through,
 * ahead of it. nats.c counts a reconnection under its lock before the
 * connection is usable again, so no publish reaches a new connection under
 * an old epoch. */
int natsx_epoch(natsConnection *nc, uint64_t *epoch);

/* Stop a subscription: while connected, drain it (messages already received
 * are still handled) for at most timeout_ms; when not, just unsubscribe.
 * Then destroy it. Safe with NULL. */
void natsx_sub_close(natsSubscription *sub, natsConnection *nc, int timeout_ms);

/* Flush and close, then destroy. Safe with NULL. */
void natsx_close(natsConnection *nc); /* at shutdown: later disconnects of this process are not
                                         logged as losses */

/* Free a message this process owns: one a subscription of ours received
 * (not one of an auto-acking JetStream subscription, which nats.c frees
 * itself), a request's reply, or one handed to an ack handler. Safe with
 * NULL.
 *
 * natsMsg_Destroy does not free: it puts the message on a list for nats.c's
 * garbage-collector thread and wakes that thread (nats.c 3.4.1,
 * natsGC_collect), a futex wake-up and a context switch for every message
 * when messages come one at a time: 28-41% of the times the collector's,
 * dispatcher's and pusher's threads were scheduled at 10,000 stored
 * messages/s (docs/BENCHMARKS.md). With libnats 3.4, whose source we
 * read, this calls the function that thread would call, natsMsg_free
 * (exported, not declared in nats.h), found with dlsym; with any other
 * version, or without the symbol, it is natsMsg_Destroy. */
void natsx_msg_free(natsMsg *m);

/* natsx_msg_free for each message of list, then its array. */
void natsx_msg_list_free(natsMsgList *list);

/* 1 when natsx_msg_free frees on the calling thread, 0 when it hands the
 * message to nats.c's collector (see natsx_msg_free). */
int natsx_msg_free_is_direct(void);

/* Write "<prefix>.<suffix>" into buf. Returns buf. */
const char *natsx_subject(char *buf, size_t size, const char *prefix, const char *suffix);

/* Protocol names of the subjects (see docs/SUBJECTS.md); joined to the prefix. */
#define NATSX_COLLECT "collect"
#define NATSX_DISPATCH "dispatch"
#define NATSX_NODE "node"
#define NATSX_BROADCAST "broadcast"
#define NATSX_AUTH "auth"
#define NATSX_ACK "ack"
#define NATSX_PENDING "pending"
#define NATSX_PRESENCE "presence"
#define NATSX_HISTORY "history"
#define NATSX_DISPATCHERS "dispatchers"

#endif
