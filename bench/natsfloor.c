/*
 * natsfloor: what bare NATS costs on this machine, with none of our services
 * in the way: the floor under the pipeline figures of docs/BENCHMARKS.md
 * ("Floors"). Two modes, each one JSON line on stdout:
 *
 *   natsfloor --mode pubsub --rate R --count N [--bytes B]
 *     One connection publishes N messages of B bytes at R/s, paced as
 *     pubload paces them; a second connection in the same process, with an
 *     asynchronous subscription (its own nats.c thread), takes each one and
 *     records publish -> delivery latency from the CLOCK_MONOTONIC time the
 *     publisher wrote into the payload. The floor of e2e latency: one NATS
 *     hop at the e2e rate and message size (the pipeline has several).
 *
 *   natsfloor --mode reqreply --inflight K --count N [--rate R] [--bytes B]
 *     A responder connection answers each request at once with a small
 *     reply; a requester connection keeps up to K requests outstanding on
 *     one wildcard inbox, as pubload --mode request does. Requests per
 *     second is the floor of the collector's request/reply ingest
 *     (bench/pipeline.sh ingest).
 *
 * The subject is unique to the process, so it can share a nats-server with
 * a running cluster. Single-threaded main; the callbacks run on nats.c's
 * subscription threads and touch only atomics and their own array slots.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bench.h"
#include "clock.h"
#include "config.h"

#define NATSFLOOR_MAX_BYTES 65536
#define NATSFLOOR_REPLY "{\"id\":\"floor\"}" /* about the size of the collector's reply */

static atomic_long floor_received, floor_inflight, floor_late;
static uint32_t *floor_lat_us; /* by sequence number; UINT32_MAX: not received */
static long floor_count;

/* The payload starts {"ts":T,"seq":S; the rest is padding up to --bytes.
 * Returns 0 and fills *ts and *seq, or -1 when it does not parse. */
static int floor_parse(const char *data, int len, uint64_t *ts, long *seq)
{
    char head[96];
    size_t n = len < (int)sizeof head - 1 ? (size_t)len : sizeof head - 1;
    memcpy(head, data, n);
    head[n] = '\0';
    unsigned long long t;
    if (sscanf(head, "{\"ts\":%llu,\"seq\":%ld", &t, seq) != 2 || *seq < 0 || *seq >= floor_count)
        return -1;
    *ts = t;
    return 0;
}

static void floor_record(natsMsg *msg)
{
    uint64_t now = clock_mono_us(), ts;
    long seq;
    if (floor_parse(natsMsg_GetData(msg), natsMsg_GetDataLength(msg), &ts, &seq) != 0 ||
        floor_lat_us[seq] != UINT32_MAX) {
        atomic_fetch_add(&floor_late, 1); /* malformed or a repeat: not ours to count */
        return;
    }
    uint64_t us = now > ts ? now - ts : 0;
    floor_lat_us[seq] = us >= UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)us;
    atomic_fetch_add(&floor_received, 1);
}

static void on_message(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub, (void)closure;
    floor_record(msg);
    natsMsg_Destroy(msg);
}

/* The responder: answers every request at once. */
static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub, (void)closure;
    const char *reply = natsMsg_GetReply(msg);
    if (reply)
        natsConnection_Publish(nc, reply, NATSFLOOR_REPLY, (int)strlen(NATSFLOOR_REPLY));
    natsMsg_Destroy(msg);
}

/* The requester's inbox: the reply carries no timestamp, its subject does
 * (<inbox>.<seq>.<ts>). */
static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub, (void)closure;
    const char *subj = natsMsg_GetSubject(msg);
    const char *dot = strrchr(subj, '.');
    uint64_t now = clock_mono_us();
    char *end = NULL;
    long seq = -1;
    if (dot && dot > subj) {
        const char *p = dot - 1;
        while (p > subj && *p != '.')
            p--;
        seq = strtol(p + 1, &end, 10);
    }
    if (!end || *end != '.' || seq < 0 || seq >= floor_count || floor_lat_us[seq] != UINT32_MAX) {
        atomic_fetch_add(&floor_late, 1);
    } else {
        uint64_t ts = strtoull(dot + 1, NULL, 10), us = now > ts ? now - ts : 0;
        floor_lat_us[seq] = us >= UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)us;
        atomic_fetch_add(&floor_received, 1);
    }
    atomic_fetch_sub(&floor_inflight, 1);
    natsMsg_Destroy(msg);
}

/* asap: publishes go out at once (natsOptions_SetSendAsap) rather than
 * through nats.c's buffer and flusher thread, which pubload and our
 * services use. */
static natsStatus floor_connect(natsConnection **nc, const char *url, const char *what, int asap)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, url);
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(opts, asap ? true : false);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK)
        fprintf(stderr, "natsfloor: cannot connect the %s to %s: %s\n", what, url,
                natsStatus_GetText(s));
    return s;
}

/* Wait until every message is in or nothing came for idle_ms. */
static void floor_wait(long count, uint64_t idle_ms)
{
    long last = -1;
    uint64_t since = clock_mono_us();
    while (atomic_load(&floor_received) < count) {
        long now = atomic_load(&floor_received);
        if (now != last) {
            last = now;
            since = clock_mono_us();
        } else if (clock_mono_us() - since > idle_ms * 1000u) {
            fprintf(stderr, "natsfloor: %ld of %ld in after %" PRIu64 " ms without progress\n", now,
                    count, idle_ms);
            return;
        }
        usleep(1000);
    }
}

int main(int argc, char **argv)
{
    const char *nats_url = NULL, *mode = NULL;
    long rate = 10000, count = 100000, bytes = 200, inflight = 256;
    int asap = 0;
    config_opt_t opts[] = {
        {"nats", "PUSH_NATS_URL", "nats://127.0.0.1:4222", "NATS URL", CONFIG_STR, &nats_url, 0, 0,
         1},
        {"mode", NULL, "pubsub", "pubsub (latency at --rate) or reqreply (requests/s)", CONFIG_STR,
         &mode, 0, 0, 1},
        {"rate", NULL, NULL,
         "messages per second (0: as fast as possible); default 10000 for "
         "pubsub, 0 for reqreply",
         CONFIG_INT, &rate, 0, 100000000, 0},
        {"count", NULL, "100000", "messages (pubsub) or requests (reqreply)", CONFIG_INT, &count, 1,
         100000000, 1},
        {"bytes", NULL, "200", "payload size of each message or request", CONFIG_INT, &bytes, 64,
         NATSFLOOR_MAX_BYTES, 1},
        {"inflight", NULL, "256", "outstanding requests (reqreply)", CONFIG_INT, &inflight, 1,
         100000, 1},
        {"asap", NULL, NULL, "publish without nats.c's buffering (natsOptions_SetSendAsap)",
         CONFIG_FLAG, &asap, 0, 0, 0},
    };
    rate = -1;
    int rc = config_parse("natsfloor", "natsfloor [--mode pubsub|reqreply] [flags]", opts,
                          sizeof opts / sizeof opts[0], argc, argv, NULL);
    if (rc)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    int reqreply = !strcmp(mode, "reqreply");
    if (!reqreply && strcmp(mode, "pubsub")) {
        fprintf(stderr, "natsfloor: --mode is pubsub or reqreply, not '%s'\n", mode);
        return 2;
    }
    if (rate < 0)
        rate = reqreply ? 0 : 10000;
    floor_count = count;
    floor_lat_us = malloc((size_t)count * sizeof *floor_lat_us);
    char *body = malloc((size_t)bytes + 1);
    if (!floor_lat_us || !body) {
        fprintf(stderr, "natsfloor: out of memory for %ld samples\n", count);
        return 1;
    }
    memset(floor_lat_us, 0xff, (size_t)count * sizeof *floor_lat_us);

    natsConnection *pub = NULL, *peer = NULL;
    natsSubscription *peer_sub = NULL, *inbox_sub = NULL;
    char subject[64], inbox[128], reply[192];
    snprintf(subject, sizeof subject, "floor.%ld.%s", (long)getpid(), mode);
    natsStatus s = floor_connect(&peer, nats_url, reqreply ? "responder" : "subscriber", asap);
    if (s == NATS_OK)
        s = floor_connect(&pub, nats_url, reqreply ? "requester" : "publisher", asap);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&peer_sub, peer, subject, reqreply ? on_request : on_message,
                                     NULL);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(peer_sub, -1, -1);
    if (s == NATS_OK && reqreply) {
        natsInbox *ib = NULL;
        s = natsInbox_Create(&ib);
        if (s == NATS_OK) {
            snprintf(inbox, sizeof inbox, "%s", (const char *)ib);
            natsInbox_Destroy(ib);
            snprintf(reply, sizeof reply, "%s.*.*", inbox);
            s = natsConnection_Subscribe(&inbox_sub, pub, reply, on_reply, NULL);
        }
        if (s == NATS_OK)
            s = natsSubscription_SetPendingLimits(inbox_sub, -1, -1);
        if (s == NATS_OK)
            s = natsConnection_Flush(pub);
    }
    /* the server has the subscriptions before the first publish */
    if (s == NATS_OK)
        s = natsConnection_Flush(peer);
    if (s != NATS_OK) {
        fprintf(stderr, "natsfloor: cannot set up the subscriptions on %s: %s\n", nats_url,
                natsStatus_GetText(s));
        rc = 1;
        goto out;
    }

    long sent = 0, errors = 0;
    uint64_t start = clock_mono_us();
    while (sent < count) {
        if (bench_ahead(start, sent, rate)) {
            usleep(100);
            continue;
        }
        if (reqreply && atomic_load(&floor_inflight) >= inflight) {
            usleep(50);
            continue;
        }
        uint64_t ts = clock_mono_us();
        int n = snprintf(body, (size_t)bytes + 1, "{\"ts\":%" PRIu64 ",\"seq\":%ld,\"pad\":\"", ts,
                         sent);
        memset(body + n, 'x', (size_t)(bytes - n - 2));
        memcpy(body + bytes - 2, "\"}", 2);
        if (reqreply) {
            snprintf(reply, sizeof reply, "%s.%ld.%" PRIu64, inbox, sent, ts);
            atomic_fetch_add(&floor_inflight, 1);
            s = natsConnection_PublishRequest(pub, subject, reply, body, (int)bytes);
            if (s != NATS_OK)
                atomic_fetch_sub(&floor_inflight, 1);
        } else {
            s = natsConnection_Publish(pub, subject, body, (int)bytes);
        }
        if (s != NATS_OK)
            errors++;
        sent++;
    }
    natsConnection_FlushTimeout(pub, 10000);
    floor_wait(sent - errors, 5000);
    double secs = (double)(clock_mono_us() - start) / 1e6;
    /* no more callbacks writing samples while they are read */
    natsSubscription_Unsubscribe(peer_sub);
    if (inbox_sub)
        natsSubscription_Unsubscribe(inbox_sub);

    size_t n_ok = 0;
    for (long i = 0; i < count; i++)
        if (floor_lat_us[i] != UINT32_MAX)
            floor_lat_us[n_ok++] = floor_lat_us[i];
    qsort(floor_lat_us, n_ok, sizeof *floor_lat_us, bench_cmp_u32);
    double p50 = bench_pct_ms(floor_lat_us, n_ok, 50), p99 = bench_pct_ms(floor_lat_us, n_ok, 99);
    double max = n_ok ? floor_lat_us[n_ok - 1] / 1000.0 : 0;
    if (reqreply)
        printf(
            "{\"figure\":\"floor_nats_reqreply\",\"asap\":%s,\"rate_asked\":%ld,\"inflight\":%ld,"
            "\"bytes\":%ld,\"requests\":%ld,\"replies\":%zu,\"errors\":%ld,\"seconds\":%.3f,"
            "\"per_second\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
            asap ? "true" : "false", rate, inflight, bytes, sent, n_ok, errors, secs, n_ok / secs,
            p50, p99, max);
    else
        printf("{\"figure\":\"floor_nats_pubsub\",\"asap\":%s,\"rate_asked\":%ld,\"bytes\":%ld,"
               "\"sent\":%ld,"
               "\"received\":%zu,\"errors\":%ld,\"seconds\":%.3f,\"p50_ms\":%.3f,"
               "\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
               asap ? "true" : "false", rate, bytes, sent, n_ok, errors, secs, p50, p99, max);
    if (atomic_load(&floor_late))
        fprintf(stderr, "natsfloor: %ld messages malformed or repeated, not counted\n",
                atomic_load(&floor_late));
    rc = n_ok == (size_t)count ? 0 : 1;
out:
    natsSubscription_Destroy(inbox_sub);
    natsSubscription_Destroy(peer_sub);
    natsConnection_Destroy(pub);
    natsConnection_Destroy(peer);
    free(floor_lat_us);
    free(body);
    return rc;
}
