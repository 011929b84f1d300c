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
 * counted.
 *
 * It stops after --hold seconds, or once --expect message frames have arrived
 * (with --dups: distinct messages, then 2 s more to count late repeats),
 * or on SIGINT/SIGTERM, and prints one JSON line of results on stdout.
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
} wsconn_t;

static volatile sig_atomic_t wsload_stop;
static void wsload_on_signal(int sig)
{
    (void)sig, wsload_stop = 1;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
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

static struct {
    uint64_t attempted, connected, welcomed, refused, errors, closed, messages, bytes, pings,
        subscribed;
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

static void on_text(wsconn_t *c, const char *p, size_t n)
{
    if (!c->welcomed && n > 16 && memmem(p, n, "\"welcome\"", 9)) {
        c->welcomed = 1;
        st.welcomed++;
        st.last_welcome_us = mono_us();
        if (wsload_channel) {
            char sub[160];
            int k = snprintf(sub, sizeof sub, "{\"type\":\"subscribe\",\"channel\":\"%s\"}",
                             wsload_channel);
            send_frame(c, 0x1, sub, (size_t)k);
            flush_tx(c);
        }
        return;
    }
    if (memmem(p, n, "\"subscribed\"", 12)) {
        st.subscribed++;
        return;
    }
    if (memmem(p, n, "\"message\"", 9)) {
        uint64_t t = now_us();
        st.messages++;
        const char *id = seen ? memmem(p, n, "\"id\":\"", 6) : NULL;
        if (id) {
            id += 6;
            const char *end = memchr(id, '"', (size_t)(p + n - id));
            char key[96];
            if (end && end - id < 64) {
                snprintf(key, sizeof key, "%ld:%.*s", c->idx, (int)(end - id), id);
                if (strmap_get(seen, key))
                    duplicates++;
                else
                    strmap_put(seen, key, (void *)1);
            }
        }
        if (!st.first_msg_us)
            st.first_msg_us = mono_us();
        st.last_msg_us = mono_us();
        const char *ts = memmem(p, n, "\"ts\":", 5);
        if (ts) {
            int64_t us = (int64_t)t - strtoll(ts + 5, NULL, 10);
            hist_add(us);
            timeline_add(st.last_msg_us, us);
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

int main(int argc, char **argv)
{
    const char *url = NULL, *secret = NULL, *tokens_path = NULL, *user_prefix = NULL,
               *timeline = NULL;
    long conns = 1000, rate = 1000, hold_s = 10, expect = 0, sources = 1, first_user = 0,
         linger_s = 0;
    int dups = 0;
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
        {"dups", NULL, NULL, "count message ids a connection gets twice (memory per message)",
         CONFIG_FLAG, &dups, 0, 0, 0},
        {"channel", NULL, NULL, "subscribe every connection to this channel once welcomed",
         CONFIG_STR, &wsload_channel, 0, 0, 0},
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
    wsconn_t *cs = calloc((size_t)conns, sizeof *cs);
    if (dups)
        seen = strmap_new();
    int ep = epoll_create1(0);
    if (!hist || !cs || ep < 0)
        return 1;

    long opened = 0;
    uint64_t start = mono_us(), all_opened_at = 0, expect_met_at = 0;
    struct epoll_event evs[1024];
    while (!wsload_stop) {
        /* open as many as the rate allows by now */
        uint64_t due = (mono_us() - start) * (uint64_t)rate / 1000000u + 1;
        while (opened < conns && (uint64_t)opened < due) {
            wsconn_t *c = &cs[opened];
            c->idx = opened;
            long i = opened++;
            st.attempted++;
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (c->fd < 0) {
                st.errors++;
                c->state = WS_CLOSED;
                continue;
            }
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct sockaddr_in src = {.sin_family = AF_INET};
            src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % sources));
            if (sources > 1)
                bind(c->fd, (struct sockaddr *)&src, sizeof src);
            if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
                st.errors++;
                close(c->fd);
                c->state = WS_CLOSED;
                continue;
            }
            char token[2048];
            if (tf) {
                if (!fgets(token, sizeof token, tf))
                    rewind(tf), fgets(token, sizeof token, tf);
                token[strcspn(token, "\r\n")] = '\0';
            } else {
                char sub[160];
                snprintf(sub, sizeof sub, "%s%ld", user_prefix, first_user + i);
                char claims[200];
                snprintf(claims, sizeof claims, "{\"channels\":[\"%s\"]}",
                         wsload_channel ? wsload_channel : "");
                char *t = jwt_sign_claims(sub, 86400, wsload_channel ? claims : NULL, secret,
                                          strlen(secret), time(NULL));
                snprintf(token, sizeof token, "%s", t ? t : "");
                free(t);
            }
            char req[4096];
            int n =
                snprintf(req, sizeof req,
                         "GET %s?token=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         path, token, host, port);
            tx_append(c, req, (size_t)n);
            c->state = WS_CONNECTING;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            if (!st.first_connect_us)
                st.first_connect_us = mono_us();
        }
        if (opened == conns && !all_opened_at)
            all_opened_at = mono_us();
        if (all_opened_at && mono_us() - all_opened_at > (uint64_t)hold_s * 1000000u)
            break;
        /* With --dups, expect counts distinct messages, and the run goes on
         * 2 s more so that late repeats are counted too. */
        if (expect && st.messages - duplicates >= (uint64_t)expect) {
            if (!seen)
                break;
            if (!expect_met_at)
                expect_met_at = mono_us();
            else if (mono_us() - expect_met_at > 2000000u)
                break;
        }
        int n = epoll_wait(ep, evs, 1024, opened < conns ? 1 : 50);
        for (int k = 0; k < n; k++) {
            wsconn_t *c = evs[k].data.ptr;
            if (c->state == WS_CLOSED)
                continue;
            if (evs[k].events & (EPOLLERR | EPOLLHUP) && c->state == WS_CONNECTING) {
                st.errors++;
                conn_close(ep, c);
                continue;
            }
            if (c->state == WS_CONNECTING && evs[k].events & EPOLLOUT)
                c->state = WS_UPGRADING;
            if (flush_tx(c) < 0) {
                st.errors++;
                conn_close(ep, c);
                continue;
            }
            if (evs[k].events & (EPOLLIN | EPOLLHUP) && on_readable(c) < 0) {
                conn_close(ep, c);
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
           "\"max_ms\":%.3f,\"pings\":%llu,\"subscribed\":%llu,\"duplicates\":%llu}\n",
           (unsigned long long)st.attempted, (unsigned long long)st.connected,
           (unsigned long long)st.welcomed, (unsigned long long)open_now,
           (unsigned long long)st.refused, (unsigned long long)st.errors,
           (unsigned long long)st.closed, connect_s, connect_s > 0 ? st.welcomed / connect_s : 0,
           (unsigned long long)st.messages, (unsigned long long)st.bytes, msg_s,
           (unsigned long long)hist_count, hist_pct(50), hist_pct(90), hist_pct(99),
           hist_max / 1000.0, (unsigned long long)st.pings, (unsigned long long)st.subscribed,
           (unsigned long long)duplicates);
    fflush(stdout);
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
    if (tf)
        fclose(tf);
    return 0;
}
