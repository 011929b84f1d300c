/*
 * pubload: publishes messages at a fixed rate for the benchmarks, each
 * carrying {"ts":<unix microseconds>,"seq":n} as its data so that wsload can
 * measure publish -> client latency.
 *
 * Modes:
 *   collect    JSON publish to <prefix>.collect, fire-and-forget
 *   request    JSON publish to <prefix>.collect as a request, waiting for each
 *              reply with up to --inflight outstanding (measures durable ingest)
 *   node       a NodeDelivery straight to <prefix>.node.<--node>, bypassing
 *              collector and dispatcher (measures the pusher alone)
 *   broadcast  a NodeDelivery to <prefix>.broadcast
 * With --channel C: collect/request publish to channel C instead of users;
 * node and broadcast send a channel NodeDelivery (message.channel = C, no
 * users) to <prefix>.node.<--node> for each comma-separated node (the
 * dispatcher's output for a channel, bypassing collector and dispatcher).
 * With --channels N as well, message n goes to channel <C><n % N> (C is then
 * a prefix: --channel ch. --channels 10000 cycles over ch.0 .. ch.9999).
 * --first-seq S numbers the messages from S ("seq" in their data).
 * Recipients cycle through <user-prefix><first-user> .. +users-1.
 * Prints one JSON line: sent, replies, errors, seconds, achieved rate.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bench.h"
#include "clock.h"
#include "config.h"
#include "ids.h"
#include "push/v1/push.pb-c.h"

static atomic_long pub_replies, pub_errors, pub_inflight;

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub, (void)closure;
    if (natsMsg_GetDataLength(msg) > 2 &&
        memmem(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), "\"id\"", 4))
        atomic_fetch_add(&pub_replies, 1);
    else
        atomic_fetch_add(&pub_errors, 1);
    atomic_fetch_sub(&pub_inflight, 1);
    natsMsg_Destroy(msg);
}

int main(int argc, char **argv)
{
    const char *nats_url = NULL, *prefix = NULL, *mode = NULL, *node = NULL, *user_prefix = NULL,
               *channel = NULL;
    long rate = 1000, count = 10000, users = 1000, first_user = 0, inflight = 256, ttl = 0,
         channels = 0, first_seq = 0;
    config_opt_t opts[] = {
        {"nats", "PUSH_NATS_URL", "nats://127.0.0.1:4222", "NATS URL", CONFIG_STR, &nats_url, 0, 0,
         1},
        {"prefix", "PUSH_PREFIX", "push", "subject prefix", CONFIG_STR, &prefix, 0, 0, 1},
        {"mode", NULL, "collect", "collect, request, node or broadcast", CONFIG_STR, &mode, 0, 0,
         1},
        {"node", NULL, NULL, "node id (mode node)", CONFIG_STR, &node, 0, 0, 0},
        {"rate", NULL, "1000", "messages per second (0: as fast as possible)", CONFIG_INT, &rate, 0,
         100000000, 1},
        {"count", NULL, "10000", "messages to send", CONFIG_INT, &count, 1, 1000000000, 1},
        {"users", NULL, "1000", "recipients cycle through this many users", CONFIG_INT, &users, 1,
         100000000, 1},
        {"first-user", NULL, "0", "n of the first user", CONFIG_INT, &first_user, 0, 100000000, 1},
        {"user-prefix", NULL, "u", "user ids are <prefix><n>", CONFIG_STR, &user_prefix, 0, 0, 1},
        {"inflight", NULL, "256", "outstanding requests (mode request)", CONFIG_INT, &inflight, 1,
         100000, 1},
        {"ttl", NULL, "0", "ttl of each message (collect/request)", CONFIG_INT, &ttl, 0, 31536000,
         1},
        {"channel", NULL, NULL, "publish to this channel instead of users", CONFIG_STR, &channel, 0,
         0, 0},
        {"channels", NULL, "0", "cycle over channels <channel>0 .. N-1 (0: --channel as is)",
         CONFIG_INT, &channels, 0, 100000000, 1},
        {"first-seq", NULL, "0", "seq of the first message", CONFIG_INT, &first_seq, 0, 1000000000,
         1},
    };
    int rc = config_parse("pubload", "pubload [flags]", opts, sizeof opts / sizeof opts[0], argc,
                          argv, NULL);
    if (rc)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    int m_collect = !strcmp(mode, "collect"), m_request = !strcmp(mode, "request");
    int m_node = !strcmp(mode, "node"), m_bcast = !strcmp(mode, "broadcast");
    if (!(m_collect || m_request || m_node || m_bcast) || (m_node && !node)) {
        fprintf(stderr, "pubload: --mode collect|request|node|broadcast (node needs --node)\n");
        return 2;
    }
    natsConnection *nc = NULL;
    natsStatus s = natsConnection_ConnectTo(&nc, nats_url);
    if (s != NATS_OK) {
        fprintf(stderr, "pubload: cannot connect to %s: %s\n", nats_url, natsStatus_GetText(s));
        return 1;
    }
    char subject[256], inbox_base[128], reply[160];
    if (m_node)
        snprintf(subject, sizeof subject, "%s.node.%s", prefix, node);
    else if (m_bcast)
        snprintf(subject, sizeof subject, "%s.broadcast", prefix);
    else
        snprintf(subject, sizeof subject, "%s.collect", prefix);
    natsSubscription *sub = NULL;
    if (m_request) {
        natsInbox *inbox = NULL;
        natsInbox_Create(&inbox);
        snprintf(inbox_base, sizeof inbox_base, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        snprintf(reply, sizeof reply, "%s.*", inbox_base);
        natsConnection_Subscribe(&sub, nc, reply, on_reply, NULL);
        natsSubscription_SetPendingLimits(sub, -1, -1);
    }
    uint64_t start = clock_mono_us();
    long sent = 0;
    char body[1024];
    uint8_t pb[1024];
    while (sent < count) {
        if (bench_ahead(start, sent, rate)) {
            usleep(100);
            continue;
        }
        if (m_request && atomic_load(&pub_inflight) >= inflight) {
            usleep(50);
            continue;
        }
        long u = first_user + sent % users, seq = first_seq + sent;
        uint64_t ts = clock_wall_us();
        char chan[300];
        if (channel && channels)
            snprintf(chan, sizeof chan, "%s%ld", channel, sent % channels);
        else if (channel)
            snprintf(chan, sizeof chan, "%s", channel);
        if (m_collect || m_request) {
            int n = channel ? snprintf(body, sizeof body,
                                       "{\"channel\":\"%s\",\"topic\":\"bench\",\"ttl\":%ld,"
                                       "\"data\":{\"ts\":%" PRIu64 ",\"seq\":%ld}}",
                                       chan, ttl, ts, seq)
                            : snprintf(body, sizeof body,
                                       "{\"to\":[\"%s%ld\"],\"topic\":\"bench\",\"ttl\":%ld,"
                                       "\"data\":{\"ts\":%" PRIu64 ",\"seq\":%ld}}",
                                       user_prefix, u, ttl, ts, seq);
            if (m_request) {
                snprintf(reply, sizeof reply, "%s.%ld", inbox_base, sent);
                atomic_fetch_add(&pub_inflight, 1);
                s = natsConnection_PublishRequest(nc, subject, reply, body, n);
            } else {
                s = natsConnection_Publish(nc, subject, body, n);
            }
        } else {
            char id[IDS_LEN + 1], user[160], data[96];
            ids_new(id);
            snprintf(user, sizeof user, "%s%ld", user_prefix, u);
            int dn = snprintf(data, sizeof data, "{\"ts\":%" PRIu64 ",\"seq\":%ld}", ts, seq);
            Push__V1__Message msg = PUSH__V1__MESSAGE__INIT;
            msg.id = id;
            msg.topic = "bench";
            msg.has_data = 1;
            msg.data.data = (uint8_t *)data;
            msg.data.len = (size_t)dn;
            msg.content_type = "application/json";
            Push__V1__NodeDelivery d = PUSH__V1__NODE_DELIVERY__INIT;
            d.message = &msg;
            char *users_arr[1] = {user};
            if (m_node && !channel) {
                d.n_users = 1;
                d.users = users_arr;
            }
            msg.channel = channel ? chan : NULL;
            size_t n = push__v1__node_delivery__pack(&d, pb);
            if (channel && node) {
                /* the dispatcher's output: one delivery per node with subscribers */
                for (const char *p = node; *p;) {
                    size_t k = strcspn(p, ",");
                    char nsubj[300];
                    snprintf(nsubj, sizeof nsubj, "%s.node.%.*s", prefix, (int)k, p);
                    s = natsConnection_Publish(nc, nsubj, pb, (int)n);
                    p += k + (p[k] == ',');
                }
            } else {
                s = natsConnection_Publish(nc, subject, pb, (int)n);
            }
        }
        if (s != NATS_OK)
            atomic_fetch_add(&pub_errors, 1);
        sent++;
    }
    natsConnection_FlushTimeout(nc, 10000);
    if (m_request) {
        uint64_t wait_until = clock_mono_us() + 30000000u;
        while (atomic_load(&pub_inflight) > 0 && clock_mono_us() < wait_until)
            usleep(1000);
    }
    double secs = (double)(clock_mono_us() - start) / 1e6;
    printf("{\"mode\":\"%s\",\"sent\":%ld,\"replies\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"rate\":"
           "%.0f}\n",
           mode, sent, atomic_load(&pub_replies), atomic_load(&pub_errors), secs, sent / secs);
    if (sub)
        natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    return 0;
}
