/*
 * wsload: a WebSocket load generator for the pusher.
 *
 * One process, one epoll loop, non-blocking sockets, no threads. It opens
 * --conns connections at --rate per second, spread over source addresses
 * 127.0.0.x (--sources) to get past one address's ephemeral ports, each
 * authenticated with a token it mints itself (--secret, user "<prefix><i>")
 * or reads from --tokens. It then holds them and counts what arrives:
 * welcomes, message frames, closes. A message whose data carries "ts":<unix
 * microseconds> gives a latency sample (publish -> frame read here).
 *
 * With --channel C each connection's token grants C (a `channels` claim) and
 * the connection subscribes to C once welcomed; "subscribed" answers are
 * counted. With --chan-count N it also subscribes to --chan-per K of the N
 * channels <chan-prefix>0 .. N-1: connection g (--first-user + its index)
 * takes (g * --chan-stride + k * N / K) % N for k = 0..K-1, so with a
 * stride prime to N every channel gets the same number of subscribers.
 * A connection is ready once welcomed and every one of its subscriptions is
 * answered; --ready-file F is created when all --conns are ready.
 *
 * --churn R: once all are ready, R subscribe/unsubscribe frames per second
 * spread round robin over the connections: a connection without a churn
 * subscription subscribes to the next of --churn-channels channels
 * <churn-prefix>n, one with it unsubscribes (none with an answer pending).
 * --retry reopens a connection the server closed or refused, or that is not
 * welcomed 10 s after it was opened, 1 s later.
 * --per-seq N keeps, for message seq 0..N-1 (the "seq" in its data), the
 * frames and the worst latency; --hist F writes the latency histogram.
 *
 * It stops after --hold seconds, or once --expect message frames have arrived
 * (with --dups: distinct messages, then 2 s more to count late repeats),
 * or on SIGINT/SIGTERM, and prints one JSON line of results on stdout
 * (first_msg_mono_us and last_msg_mono_us are CLOCK_MONOTONIC, so that
 * several wsloads' spans combine).
 * A process holds at most the open-file limit of sockets (20,000 on the build
 * machines): run several processes for more (the bench scripts do).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "jwt.h"
#include "strmap.h"

enum { WS_CONNECTING, WS_UPGRADING, WS_OPEN, WS_CLOSED };

typedef struct wsconn {
    long idx; /* its place in the connection table: a repeat is per connection */
    int fd;
    int state;
    int welcomed;
    char *rx; /* bytes read and not yet parsed */
    size_t rx_len, rx_cap;
    char *tx; /* bytes to send (upgrade request, pongs) */
    size_t tx_len, tx_off;
    int subs_ok;     /* subscriptions answered "subscribed" */
    int ready;       /* counted in st.ready */
    int churn_state; /* CHURN_* */
    long churn_ch;   /* the churn channel, when subscribed or pending */
    uint64_t opened_us;
} wsconn_t;

enum { CHURN_NONE, CHURN_SUBSCRIBING, CHURN_SUBSCRIBED, CHURN_UNSUBSCRIBING };

static volatile sig_atomic_t wsload_stop;
static void wsload_on_signal(int sig)
{
    (void)sig, wsload_stop = 1;
}

/* Latency histogram: 1 us resolution up to 1 s, then one overflow bucket. */
#define HIST_MAX 1000000
static uint32_t *hist;
static uint64_t hist_count, hist_over, hist_max;

/* Optional timeline (--timeline): per 10 ms of arrival time, the number of
 * samples and the worst latency, to tell a steady tail from stalls. */
#define TL_SLOTS 12000
static uint32_t *tl_count, *tl_max_us;
static uint64_t tl_start_us;

static void timeline_add(uint64_t arrival_mono_us, int64_t us)
{
    if (!tl_count)
        return;
    if (!tl_start_us)
        tl_start_us = arrival_mono_us;
    uint64_t slot = (arrival_mono_us - tl_start_us) / 10000u;
    if (slot >= TL_SLOTS)
        return;
    tl_count[slot]++;
    if (us > 0 && (uint64_t)us > tl_max_us[slot])
        tl_max_us[slot] = (uint32_t)(us > UINT32_MAX ? UINT32_MAX : us);
}

static void hist_add(int64_t us)
{
    if (us < 0)
        us = 0;
    if ((uint64_t)us > hist_max)
        hist_max = (uint64_t)us;
    if (us >= HIST_MAX)
        hist_over++;
    else
        hist[us]++;
    hist_count++;
}

static double hist_pct(double p)
{
    if (!hist_count)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)hist_count + 0.5), seen = 0;
    if (want == 0)
        want = 1;
    for (int i = 0; i < HIST_MAX; i++) {
        seen += hist[i];
        if (seen >= want)
            return i / 1000.0;
    }
    return hist_max / 1000.0;
}

/* --dups: "<connection>:<message id>" of every message frame, so a frame
 * whose id this connection already got counts as a duplicate. */
static strmap_t *seen;
static uint64_t duplicates;
static int ack_each; /* --ack: ack every message, as the JS client does */

static struct {
    uint64_t attempted, connected, welcomed, refused, errors, closed, messages, bytes, pings,
        subscribed, sub_errors, ready, reopened, timeouts, acks;
    uint64_t churn_subs, churn_unsubs, churn_subscribed, churn_unsubscribed, churn_errors,
        churn_skipped, churn_started_us, churn_stopped_us;
    uint64_t first_connect_us, last_welcome_us, first_msg_us, last_msg_us;
} st;

static void conn_close(int ep, wsconn_t *c)
{
    if (c->state == WS_CLOSED)
        return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = WS_CLOSED;
    free(c->rx);
    free(c->tx);
    c->rx = c->tx = NULL;
}

static void tx_append(wsconn_t *c, const void *data, size_t n)
{
    if (c->tx_off == c->tx_len)
        c->tx_off = c->tx_len = 0;
    char *nb = realloc(c->tx, c->tx_len + n);
    if (!nb)
        return;
    c->tx = nb;
    memcpy(c->tx + c->tx_len, data, n);
    c->tx_len += n;
}

/* A client frame: FIN + opcode, masked with a zero key (allowed: the key is
 * the client's choice; zero keeps this tool simple and fast). */
static void send_frame(wsconn_t *c, int opcode, const void *payload, size_t n)
{
    unsigned char h[8] = {(unsigned char)(0x80 | opcode), (unsigned char)(0x80 | n), 0, 0, 0, 0};
    if (n > 125)
        return;
    tx_append(c, h, 6);
    tx_append(c, payload, n);
}

static int flush_tx(wsconn_t *c)
{
    while (c->tx_off < c->tx_len) {
        ssize_t w = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        c->tx_off += (size_t)w;
    }
    return 0;
}

static const char *wsload_channel; /* --channel: subscribe once welcomed */
static const char *chan_prefix = "ch.", *churn_prefix = "churn.";
static long chan_count, chan_per = 10, chan_stride = 7, first_user, churn_channels = 1000, per_seq,
                        churn_rate;
static uint32_t *seq_count, *seq_max_us;

/* The subscriptions each connection makes once welcomed. */
static int subs_per_conn(void)
{
    return (wsload_channel ? 1 : 0) + (chan_count ? (int)chan_per : 0);
}

/* The name of connection c's k-th subscription (0 <= k < subs_per_conn()). */
static void sub_name(const wsconn_t *c, int k, char *out, size_t cap)
{
    if (wsload_channel && k == 0) {
        snprintf(out, cap, "%s", wsload_channel);
        return;
    }
    k -= wsload_channel ? 1 : 0;
    long g = first_user + c->idx, step = chan_count / chan_per;
    snprintf(out, cap, "%s%ld", chan_prefix, (g * chan_stride + k * step) % chan_count);
}

/* Churn channel n: <churn-prefix>n, or the prefix itself with --churn-channels 0. */
static void churn_name(long n, char *out, size_t cap)
{
    if (churn_channels)
        snprintf(out, cap, "%s%ld", churn_prefix, n % churn_channels);
    else
        snprintf(out, cap, "%s", churn_prefix);
}

static void send_sub(wsconn_t *c, const char *type, const char *channel)
{
    char f[160];
    int k = snprintf(f, sizeof f, "{\"type\":\"%s\",\"channel\":\"%s\"}", type, channel);
    if (k > 0 && k < (int)sizeof f)
        send_frame(c, 0x1, f, (size_t)k);
}

static void mark_ready(wsconn_t *c)
{
    if (!c->ready) {
        c->ready = 1;
        st.ready++;
    }
}

/* Is the answer p (a subscribed/unsubscribed/error frame) about c's churn channel? */
static int is_churn_answer(const wsconn_t *c, const char *p, size_t n)
{
    if (c->churn_state != CHURN_SUBSCRIBING && c->churn_state != CHURN_UNSUBSCRIBING)
        return 0;
    char name[160], key[180];
    churn_name(c->churn_ch, name, sizeof name);
    int k = snprintf(key, sizeof key, "\"channel\":\"%s\"", name);
    return k > 0 && memmem(p, n, key, (size_t)k) != NULL;
}

/* The first "id":"..." of a text frame, or NULL (none, or 64 bytes or
 * longer); *len its length. */
static const char *frame_id(const char *p, size_t n, int *len)
{
    const char *id = memmem(p, n, "\"id\":\"", 6);
    if (!id)
        return NULL;
    id += 6;
    const char *end = memchr(id, '"', (size_t)(p + n - id));
    if (!end || end - id >= 64)
        return NULL;
    *len = (int)(end - id);
    return id;
}

static void on_text(wsconn_t *c, const char *p, size_t n)
{
    if (!c->welcomed && n > 16 && memmem(p, n, "\"welcome\"", 9)) {
        c->welcomed = 1;
        st.welcomed++;
        st.last_welcome_us = clock_mono_us();
        int subs = subs_per_conn();
        for (int k = 0; k < subs; k++) {
            char name[160];
            sub_name(c, k, name, sizeof name);
            send_sub(c, "subscribe", name);
        }
        flush_tx(c);
        if (!subs)
            mark_ready(c);
        return;
    }
    if (n < 1024 && memmem(p, n, "\"type\":\"", 8) && !memmem(p, n, "\"message\"", 9)) {
        int subd = memmem(p, n, "\"subscribed\"", 12) != NULL;
        int unsubd = memmem(p, n, "\"unsubscribed\"", 14) != NULL;
        int err = memmem(p, n, "\"error\"", 7) != NULL;
        if (!(subd || unsubd || err))
            return;
        if (is_churn_answer(c, p, n)) {
            if (err) {
                st.churn_errors++;
                c->churn_state = CHURN_NONE;
            } else if (c->churn_state == CHURN_SUBSCRIBING && subd) {
                st.churn_subscribed++;
                c->churn_state = CHURN_SUBSCRIBED;
            } else if (c->churn_state == CHURN_UNSUBSCRIBING && unsubd) {
                st.churn_unsubscribed++;
                c->churn_state = CHURN_NONE;
            }
            return;
        }
        if (subd) {
            st.subscribed++;
            if (++c->subs_ok == subs_per_conn())
                mark_ready(c);
        } else if (err) {
            st.sub_errors++;
        }
        return;
    }
    if (memmem(p, n, "\"message\"", 9)) {
        uint64_t t = clock_wall_us();
        st.messages++;
        /* the envelope's id (it comes before the data: pusher/frame.c) */
        int id_len = 0;
        const char *id = seen || ack_each ? frame_id(p, n, &id_len) : NULL;
        if (id && seen) {
            char key[96];
            snprintf(key, sizeof key, "%ld:%.*s", c->idx, id_len, id);
            if (strmap_get(seen, key))
                duplicates++;
            else
                strmap_put(seen, key, (void *)1);
        }
        if (id && ack_each) {
            char f[128];
            int k = snprintf(f, sizeof f, "{\"type\":\"ack\",\"id\":\"%.*s\"}", id_len, id);
            if (k > 0 && k < (int)sizeof f) {
                send_frame(c, 0x1, f, (size_t)k);
                st.acks++;
            }
        }
        if (!st.first_msg_us)
            st.first_msg_us = clock_mono_us();
        st.last_msg_us = clock_mono_us();
        const char *ts = memmem(p, n, "\"ts\":", 5);
        if (ts) {
            int64_t us = (int64_t)t - strtoll(ts + 5, NULL, 10);
            hist_add(us);
            timeline_add(st.last_msg_us, us);
            const char *sq = per_seq ? memmem(p, n, "\"seq\":", 6) : NULL;
            long q = sq ? strtol(sq + 6, NULL, 10) : -1;
            if (q >= 0 && q < per_seq) {
                seq_count[q]++;
                if (us > 0 && (uint64_t)us > seq_max_us[q])
                    seq_max_us[q] = (uint32_t)(us > UINT32_MAX ? UINT32_MAX : us);
            }
        }
    }
}

/* Parse complete server frames from c->rx. Returns -1 when the connection ends. */
static int parse_frames(wsconn_t *c)
{
    size_t off = 0;
    for (;;) {
        size_t avail = c->rx_len - off;
        unsigned char *b = (unsigned char *)c->rx + off;
        if (avail < 2)
            break;
        int opcode = b[0] & 0x0f;
        uint64_t len = b[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)b[2] << 8 | b[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | b[2 + i];
            hl = 10;
        }
        if (avail < hl + len)
            break;
        const char *payload = (const char *)b + hl;
        st.bytes += len;
        if (opcode == 1)
            on_text(c, payload, (size_t)len);
        else if (opcode == 9) {
            st.pings++;
            send_frame(c, 10, payload, (size_t)len);
        } else if (opcode == 8) {
            st.closed++;
            return -1;
        }
        off += hl + (size_t)len;
    }
    memmove(c->rx, c->rx + off, c->rx_len - off);
    c->rx_len -= off;
    return 0;
}

static int on_readable(wsconn_t *c)
{
    for (;;) {
        if (c->rx_cap - c->rx_len < 4096) {
            size_t cap = c->rx_cap ? c->rx_cap * 2 : 8192;
            char *nb = realloc(c->rx, cap);
            if (!nb)
                return -1;
            c->rx = nb;
            c->rx_cap = cap;
        }
        ssize_t r = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
        if (r == 0)
            return -1;
        if (r < 0)
            return errno == EAGAIN ? 0 : -1;
        c->rx_len += (size_t)r;
        if (c->state == WS_UPGRADING) {
            char *end = memmem(c->rx, c->rx_len, "\r\n\r\n", 4);
            if (!end)
                continue;
            if (c->rx_len < 12 || memcmp(c->rx, "HTTP/1.1 101", 12) != 0) {
                st.refused++;
                return -1;
            }
            size_t hl = (size_t)(end + 4 - c->rx);
            memmove(c->rx, c->rx + hl, c->rx_len - hl);
            c->rx_len -= hl;
            c->state = WS_OPEN;
            st.connected++;
        }
        if (c->state == WS_OPEN && parse_frames(c) < 0)
            return -1;
    }
}

/* What conn_open needs, from the flags. */
static struct {
    struct sockaddr_in dst;
    const char *host, *path, *user_prefix, *secret;
    int port;
    long sources;
    FILE *tf;
} ow;

/* Open connection i (its slot c) and send the upgrade request. */
static void conn_open(int ep, wsconn_t *c, long i)
{
    memset(c, 0, sizeof *c);
    c->idx = i;
    c->opened_us = clock_mono_us();
    st.attempted++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        st.errors++;
        c->state = WS_CLOSED;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % ow.sources));
    if (ow.sources > 1)
        bind(c->fd, (struct sockaddr *)&src, sizeof src);
    if (connect(c->fd, (struct sockaddr *)&ow.dst, sizeof ow.dst) < 0 && errno != EINPROGRESS) {
        st.errors++;
        close(c->fd);
        c->state = WS_CLOSED;
        return;
    }
    char token[2048];
    if (ow.tf) {
        if (!fgets(token, sizeof token, ow.tf))
            rewind(ow.tf), fgets(token, sizeof token, ow.tf);
        token[strcspn(token, "\r\n")] = '\0';
    } else {
        char sub[160];
        snprintf(sub, sizeof sub, "%s%ld", ow.user_prefix, first_user + i);
        /* the channels claim: each channel or prefix this connection may use */
        char claims[900] = "{\"channels\":[";
        size_t cl = strlen(claims);
        int nclaims = 0;
        if (wsload_channel)
            cl += (size_t)snprintf(claims + cl, sizeof claims - cl, "%s\"%s\"",
                                   nclaims++ ? "," : "", wsload_channel);
        if (chan_count)
            cl += (size_t)snprintf(claims + cl, sizeof claims - cl, "%s\"%s*\"",
                                   nclaims++ ? "," : "", chan_prefix);
        if (churn_rate)
            cl += (size_t)snprintf(claims + cl, sizeof claims - cl, "%s\"%s%s\"",
                                   nclaims++ ? "," : "", churn_prefix, churn_channels ? "*" : "");
        snprintf(claims + cl, sizeof claims - cl, "]}");
        char *t = jwt_sign_claims(sub, 86400, nclaims ? claims : NULL, ow.secret, strlen(ow.secret),
                                  time(NULL));
        snprintf(token, sizeof token, "%s", t ? t : "");
        free(t);
    }
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "GET %s?token=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     ow.path, token, ow.host, ow.port);
    tx_append(c, req, (size_t)n);
    c->state = WS_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (!st.first_connect_us)
        st.first_connect_us = clock_mono_us();
}

/* --retry: connections to reopen, oldest first, each 1 s after its close. */
static long *retry_q, retry_head, retry_len, retry_cap;
static uint64_t *retry_at;

static void conn_lost(int ep, wsconn_t *c)
{
    if (c->ready)
        st.ready--;
    c->ready = 0;
    conn_close(ep, c);
    if (retry_q && retry_len < retry_cap) {
        long slot = (retry_head + retry_len++) % retry_cap;
        retry_q[slot] = c->idx;
        retry_at[slot] = clock_mono_us() + 1000000u;
    }
}

/* One churn operation on the next connection that can take one; 0 when none can. */
static int churn_one(int ep, wsconn_t *cs, long opened, long *cursor)
{
    static long next_ch;
    for (long tries = 0; tries < opened; tries++) {
        wsconn_t *c = &cs[*cursor];
        *cursor = (*cursor + 1) % opened;
        if (c->state != WS_OPEN || !c->ready)
            continue;
        char name[160];
        if (c->churn_state == CHURN_NONE) {
            c->churn_ch = next_ch++;
            churn_name(c->churn_ch, name, sizeof name);
            send_sub(c, "subscribe", name);
            c->churn_state = CHURN_SUBSCRIBING;
            st.churn_subs++;
        } else if (c->churn_state == CHURN_SUBSCRIBED) {
            churn_name(c->churn_ch, name, sizeof name);
            send_sub(c, "unsubscribe", name);
            c->churn_state = CHURN_UNSUBSCRIBING;
            st.churn_unsubs++;
        } else {
            continue;
        }
        flush_tx(c);
        if (c->tx_off < c->tx_len) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *secret = NULL, *tokens_path = NULL, *user_prefix = NULL,
               *timeline = NULL, *ready_file = NULL, *hist_file = NULL;
    long conns = 1000, rate = 1000, hold_s = 10, expect = 0, sources = 1, linger_s = 0;
    int dups = 0, retry = 0;
    config_opt_t opts[] = {
        {"url", NULL, "ws://127.0.0.1:8080/ws", "pusher WebSocket URL (ws://IP:PORT/PATH)",
         CONFIG_STR, &url, 0, 0, 1},
        {"secret", "PUSH_JWT_SECRET", NULL, "mint tokens with this HS256 secret", CONFIG_STR,
         &secret, 0, 0, 0},
        {"tokens", NULL, NULL, "file with one token per line (instead of --secret)", CONFIG_STR,
         &tokens_path, 0, 0, 0},
        {"user-prefix", NULL, "u", "user ids are <prefix><n>", CONFIG_STR, &user_prefix, 0, 0, 1},
        {"first-user", NULL, "0", "n of the first user", CONFIG_INT, &first_user, 0, 100000000, 1},
        {"conns", NULL, "1000", "connections to open", CONFIG_INT, &conns, 1, 1000000, 1},
        {"rate", NULL, "1000", "new connections per second", CONFIG_INT, &rate, 1, 10000000, 1},
        {"sources", NULL, "1", "source addresses 127.0.0.1 .. 127.0.0.N", CONFIG_INT, &sources, 1,
         250, 1},
        {"hold", NULL, "10", "seconds to run after the last connect", CONFIG_INT, &hold_s, 0, 86400,
         1},
        {"expect", NULL, "0", "stop once this many message frames arrived (0: no)", CONFIG_INT,
         &expect, 0, 1000000000, 1},
        {"linger", NULL, "0",
         "after printing, keep the connections open this many seconds (so that several "
         "wsloads' closes do not overlap their measurements)",
         CONFIG_INT, &linger_s, 0, 3600, 1},
        {"timeline", NULL, NULL, "write per 10 ms of arrival: ms, samples, worst latency ms",
         CONFIG_STR, &timeline, 0, 0, 0},
        {"ack", NULL, NULL, "ack every message frame by its id, as the JS client does", CONFIG_FLAG,
         &ack_each, 0, 0, 0},
        {"dups", NULL, NULL, "count message ids a connection gets twice (memory per message)",
         CONFIG_FLAG, &dups, 0, 0, 0},
        {"channel", NULL, NULL, "subscribe every connection to this channel once welcomed",
         CONFIG_STR, &wsload_channel, 0, 0, 0},
        {"chan-count", NULL, "0", "also subscribe to --chan-per of this many channels (0: no)",
         CONFIG_INT, &chan_count, 0, 100000000, 1},
        {"chan-per", NULL, "10", "channels per connection (with --chan-count)", CONFIG_INT,
         &chan_per, 1, 100, 1},
        {"chan-prefix", NULL, "ch.", "those channels are <prefix><n>", CONFIG_STR, &chan_prefix, 0,
         0, 1},
        {"chan-stride", NULL, "7", "connection g takes (g * stride + k * count / per) % count",
         CONFIG_INT, &chan_stride, 1, 100000000, 1},
        {"ready-file", NULL, NULL,
         "create this file once every connection is welcomed and all its subscriptions answered",
         CONFIG_STR, &ready_file, 0, 0, 0},
        {"retry", NULL, NULL, "reopen a connection refused or closed by the server, after 1 s",
         CONFIG_FLAG, &retry, 0, 0, 0},
        {"churn", NULL, "0",
         "once all are ready, this many subscribes + unsubscribes per second over the "
         "connections",
         CONFIG_INT, &churn_rate, 0, 10000000, 1},
        {"churn-prefix", NULL, "churn.", "churn channels are <prefix><n>", CONFIG_STR,
         &churn_prefix, 0, 0, 1},
        {"churn-channels", NULL, "1000", "churn over this many channels (0: the prefix itself)",
         CONFIG_INT, &churn_channels, 0, 100000000, 1},
        {"per-seq", NULL, "0", "frames and worst latency of each message seq below this",
         CONFIG_INT, &per_seq, 0, 1000000, 1},
        {"hist", NULL, NULL, "write the latency histogram: lines of <us> <samples>", CONFIG_STR,
         &hist_file, 0, 0, 0},
    };
    int rc = config_parse("wsload", "wsload [flags]", opts, sizeof opts / sizeof opts[0], argc,
                          argv, NULL);
    if (rc)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    char host[64], path[256] = "/";
    int port = 0;
    if (sscanf(url, "ws://%63[^:]:%d%255s", host, &port, path) < 2) {
        fprintf(stderr, "wsload: --url must be ws://IP:PORT/PATH\n");
        return 2;
    }
    if (chan_count && chan_count < chan_per) {
        fprintf(stderr, "wsload: --chan-count must be at least --chan-per\n");
        return 2;
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
        fprintf(stderr, "wsload: --url host must be an IPv4 address\n");
        return 2;
    }
    FILE *tf = NULL;
    if (tokens_path && !(tf = fopen(tokens_path, "r"))) {
        fprintf(stderr, "wsload: cannot open %s: %s\n", tokens_path, strerror(errno));
        return 2;
    }
    if (!tf && !secret) {
        fprintf(stderr, "wsload: give --secret (or PUSH_JWT_SECRET) or --tokens\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)conns + 16 > rl.rlim_cur) {
        fprintf(stderr,
                "wsload: %ld connections need more than the open-file limit %llu; run several "
                "processes\n",
                conns, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    signal(SIGINT, wsload_on_signal);
    signal(SIGTERM, wsload_on_signal);
    signal(SIGPIPE, SIG_IGN);
    hist = calloc(HIST_MAX, sizeof *hist);
    if (timeline) {
        tl_count = calloc(TL_SLOTS, sizeof *tl_count);
        tl_max_us = calloc(TL_SLOTS, sizeof *tl_max_us);
    }
    if (per_seq) {
        seq_count = calloc((size_t)per_seq, sizeof *seq_count);
        seq_max_us = calloc((size_t)per_seq, sizeof *seq_max_us);
    }
    if (retry) {
        retry_cap = conns;
        retry_q = calloc((size_t)conns, sizeof *retry_q);
        retry_at = calloc((size_t)conns, sizeof *retry_at);
    }
    ow.dst = dst;
    ow.host = host;
    ow.path = path;
    ow.port = port;
    ow.user_prefix = user_prefix;
    ow.secret = secret;
    ow.sources = sources;
    ow.tf = tf;
    wsconn_t *cs = calloc((size_t)conns, sizeof *cs);
    if (dups)
        seen = strmap_new();
    int ep = epoll_create1(0);
    if (!hist || !cs || ep < 0)
        return 1;

    long opened = 0;
    uint64_t start = clock_mono_us(), all_opened_at = 0, expect_met_at = 0, ready_at = 0,
             churn_done = 0, last_scan_us = 0;
    long churn_cursor = 0;
    struct epoll_event evs[1024];
    while (!wsload_stop) {
        /* open as many as the rate allows by now */
        uint64_t due = (clock_mono_us() - start) * (uint64_t)rate / 1000000u + 1;
        while (opened < conns && (uint64_t)opened < due) {
            conn_open(ep, &cs[opened], opened);
            opened++;
        }
        while (retry_len && clock_mono_us() >= retry_at[retry_head]) {
            long i = retry_q[retry_head];
            retry_head = (retry_head + 1) % retry_cap;
            retry_len--;
            st.reopened++;
            conn_open(ep, &cs[i], i);
        }
        /* --retry: a connection not welcomed within 10 s (a SYN or an upgrade
         * lost under load) starts again */
        if (retry_q && clock_mono_us() - last_scan_us > 1000000u) {
            last_scan_us = clock_mono_us();
            for (long i = 0; i < opened; i++)
                if (cs[i].state != WS_CLOSED && !cs[i].welcomed &&
                    last_scan_us - cs[i].opened_us > 10000000u) {
                    st.timeouts++;
                    conn_lost(ep, &cs[i]);
                }
        }
        if (!ready_at && opened == conns && st.ready >= (uint64_t)conns) {
            ready_at = clock_mono_us();
            fprintf(stderr, "wsload: all %ld connections ready (%d subscriptions each)\n", conns,
                    subs_per_conn());
            if (ready_file) {
                FILE *rf = fopen(ready_file, "w");
                if (rf)
                    fprintf(rf, "%ld\n", conns), fclose(rf);
            }
        }
        if (ready_at && churn_rate) {
            if (!st.churn_started_us)
                st.churn_started_us = clock_mono_us();
            uint64_t churn_due =
                (clock_mono_us() - st.churn_started_us) * (uint64_t)churn_rate / 1000000u;
            while (churn_done < churn_due) {
                churn_done++;
                if (!churn_one(ep, cs, opened, &churn_cursor)) {
                    st.churn_skipped += churn_due - churn_done + 1;
                    churn_done = churn_due;
                }
            }
        }
        if (opened == conns && !all_opened_at)
            all_opened_at = clock_mono_us();
        if (all_opened_at && clock_mono_us() - all_opened_at > (uint64_t)hold_s * 1000000u)
            break;
        /* With --dups, expect counts distinct messages, and the run goes on
         * 2 s more so that late repeats are counted too. */
        if (expect && st.messages - duplicates >= (uint64_t)expect) {
            if (!seen)
                break;
            if (!expect_met_at)
                expect_met_at = clock_mono_us();
            else if (clock_mono_us() - expect_met_at > 2000000u)
                break;
        }
        int n = epoll_wait(ep, evs, 1024, opened < conns || churn_rate || retry_len ? 1 : 50);
        for (int k = 0; k < n; k++) {
            wsconn_t *c = evs[k].data.ptr;
            if (c->state == WS_CLOSED)
                continue;
            if (evs[k].events & (EPOLLERR | EPOLLHUP) && c->state == WS_CONNECTING) {
                st.errors++;
                conn_lost(ep, c);
                continue;
            }
            if (c->state == WS_CONNECTING && evs[k].events & EPOLLOUT)
                c->state = WS_UPGRADING;
            if (flush_tx(c) < 0) {
                st.errors++;
                conn_lost(ep, c);
                continue;
            }
            if (evs[k].events & (EPOLLIN | EPOLLHUP) && on_readable(c) < 0) {
                conn_lost(ep, c);
                continue;
            }
            flush_tx(c);
            struct epoll_event ev = {.events = EPOLLIN | (c->tx_off < c->tx_len ? EPOLLOUT : 0),
                                     .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    uint64_t open_now = 0;
    for (long i = 0; i < opened; i++)
        open_now += cs[i].state == WS_OPEN;
    double connect_s = st.last_welcome_us > st.first_connect_us
                           ? (double)(st.last_welcome_us - st.first_connect_us) / 1e6
                           : 0;
    double msg_s =
        st.last_msg_us > st.first_msg_us ? (double)(st.last_msg_us - st.first_msg_us) / 1e6 : 0;
    printf("{\"attempted\":%llu,\"connected\":%llu,\"welcomed\":%llu,\"open_at_end\":%llu,"
           "\"refused\":%llu,\"errors\":%llu,\"closed_by_server\":%llu,\"welcome_span_s\":%.3f,"
           "\"welcome_rate\":%.0f,\"messages\":%llu,\"bytes\":%llu,\"message_span_s\":%.3f,"
           "\"latency_samples\":%llu,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_ms\":%.3f,\"pings\":%llu,\"subscribed\":%llu,\"duplicates\":%llu,"
           "\"sub_errors\":%llu,\"ready\":%llu,\"ready_s\":%.3f,\"reopened\":%llu,"
           "\"handshake_timeouts\":%llu,\"acks\":%llu,\"first_msg_mono_us\":%llu,"
           "\"last_msg_mono_us\":%llu",
           (unsigned long long)st.attempted, (unsigned long long)st.connected,
           (unsigned long long)st.welcomed, (unsigned long long)open_now,
           (unsigned long long)st.refused, (unsigned long long)st.errors,
           (unsigned long long)st.closed, connect_s, connect_s > 0 ? st.welcomed / connect_s : 0,
           (unsigned long long)st.messages, (unsigned long long)st.bytes, msg_s,
           (unsigned long long)hist_count, hist_pct(50), hist_pct(90), hist_pct(99),
           hist_max / 1000.0, (unsigned long long)st.pings, (unsigned long long)st.subscribed,
           (unsigned long long)duplicates, (unsigned long long)st.sub_errors,
           (unsigned long long)st.ready,
           ready_at ? (double)(ready_at - st.first_connect_us) / 1e6 : -1.0,
           (unsigned long long)st.reopened, (unsigned long long)st.timeouts,
           (unsigned long long)st.acks, (unsigned long long)st.first_msg_us,
           (unsigned long long)st.last_msg_us);
    if (churn_rate) {
        double cs_s =
            st.churn_started_us ? (double)(clock_mono_us() - st.churn_started_us) / 1e6 : 0;
        printf(",\"churn_subscribes\":%llu,\"churn_unsubscribes\":%llu,"
               "\"churn_subscribed\":%llu,\"churn_unsubscribed\":%llu,\"churn_errors\":%llu,"
               "\"churn_skipped\":%llu,\"churn_seconds\":%.3f,\"churn_per_s\":%.0f",
               (unsigned long long)st.churn_subs, (unsigned long long)st.churn_unsubs,
               (unsigned long long)st.churn_subscribed, (unsigned long long)st.churn_unsubscribed,
               (unsigned long long)st.churn_errors, (unsigned long long)st.churn_skipped, cs_s,
               cs_s > 0 ? (double)(st.churn_subs + st.churn_unsubs) / cs_s : 0);
    }
    if (per_seq) {
        printf(",\"seq_count\":[");
        for (long q = 0; q < per_seq; q++)
            printf("%s%u", q ? "," : "", seq_count[q]);
        printf("],\"seq_max_ms\":[");
        for (long q = 0; q < per_seq; q++)
            printf("%s%.3f", q ? "," : "", seq_max_us[q] / 1000.0);
        printf("]");
    }
    printf("}\n");
    fflush(stdout);
    if (hist_file) {
        FILE *f = fopen(hist_file, "w");
        if (!f)
            fprintf(stderr, "wsload: cannot write %s: %s\n", hist_file, strerror(errno));
        for (int i = 0; f && i < HIST_MAX; i++)
            if (hist[i])
                fprintf(f, "%d %u\n", i, hist[i]);
        if (f) {
            if (hist_over)
                fprintf(f, "%llu %llu\n", (unsigned long long)hist_max,
                        (unsigned long long)hist_over);
            fclose(f);
        }
    }
    if (timeline && tl_count) {
        FILE *f = fopen(timeline, "w");
        if (!f)
            fprintf(stderr, "wsload: cannot write %s: %s\n", timeline, strerror(errno));
        for (size_t i = 0; f && i < TL_SLOTS; i++)
            if (tl_count[i])
                fprintf(f, "%zu %u %.3f\n", i * 10, tl_count[i], tl_max_us[i] / 1000.0);
        if (f)
            fclose(f);
    }
    free(tl_count);
    free(tl_max_us);
    for (long left = linger_s; left > 0 && !wsload_stop; left--)
        sleep(1);
    for (long i = 0; i < opened; i++)
        conn_close(ep, &cs[i]);
    free(cs);
    free(hist);
    free(seq_count);
    free(seq_max_us);
    free(retry_q);
    free(retry_at);
    if (tf)
        fclose(tf);
    return 0;
}
