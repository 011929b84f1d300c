/* gate: see gate.h. */
#include "gate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

#define GATE_ACCEPTS_PER_WAKE 256 /* other events are served between batches */
#define GATE_FIRST_READ 1024      /* a typical head with a token fits */
#define GATE_TICK_MS 100          /* deadlines are checked this often */
#define GATE_EMFILE_PAUSE_MS 100  /* accept failed for want of descriptors: wait */
#define GATE_LINGER_MAX_BYTES (1024 * 1024)

typedef struct gate_conn {
    int fd;
    int lingering; /* answered 431: dropping input until EOF or the linger deadline */
    ev_io io;
    char *buf;
    size_t len, cap; /* while reading the head; while lingering, len counts dropped bytes */
    uint64_t deadline_ms;
    struct gate_conn *prev, *next; /* in its FIFO, oldest first */
    struct gate *g;
} gate_conn_t;

/* Connections reading a head, or lingering: each FIFO has one fixed
 * deadline per kind, so it stays in deadline order. */
typedef struct gate_fifo {
    gate_conn_t *first, *last;
    size_t n;
} gate_fifo_t;

struct gate {
    struct ev_loop *loop;
    int lfd;
    int fd_cap;
    ev_io accept_io;
    ev_timer tick;
    uint64_t accept_paused_until_ms;
    gate_pass_fn pass;
    void *arg;
    gate_fifo_t heads, lingering;
    /* since the last log line about them */
    uint64_t n_timeouts, n_too_large, n_fd_refused, last_log_ms;
    metrics_series_t *m_timeouts, *m_too_large, *m_fd_refused, *m_pending;
};

static uint64_t gate_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void gate_fifo_push(gate_fifo_t *f, gate_conn_t *c)
{
    c->prev = f->last;
    c->next = NULL;
    if (f->last)
        f->last->next = c;
    else
        f->first = c;
    f->last = c;
    f->n++;
}

static void gate_fifo_remove(gate_fifo_t *f, gate_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        f->first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        f->last = c->prev;
    c->prev = c->next = NULL;
    f->n--;
}

static gate_fifo_t *gate_fifo_of(gate_t *g, gate_conn_t *c)
{
    return c->lingering ? &g->lingering : &g->heads;
}

/* Close c's socket (unless handed on: fd < 0) and forget it. */
static void gate_drop(gate_t *g, gate_conn_t *c)
{
    ev_io_stop(g->loop, &c->io);
    gate_fifo_remove(gate_fifo_of(g, c), c);
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
    metrics_set(g->m_pending, (int64_t)g->heads.n);
}

/* Answer 431 and linger: the client may still be sending, and closing
 * with unread input would reset the connection and could destroy the
 * answer before the client reads it. */
static void gate_refuse_too_large(gate_t *g, gate_conn_t *c)
{
    static const char answer[] = "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "Content-Length: 44\r\n"
                                 "Connection: close\r\n"
                                 "\r\n"
                                 "request head over 16 KiB (token too large?)\n";
    _Static_assert(sizeof "request head over 16 KiB (token too large?)\n" - 1 == 44,
                   "Content-Length must match the body");
    g->n_too_large++;
    metrics_inc(g->m_too_large);
    /* A fresh socket's send buffer takes these ~170 bytes whole. */
    if (send(c->fd, answer, sizeof answer - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        gate_drop(g, c);
        return;
    }
    shutdown(c->fd, SHUT_WR);
    gate_fifo_remove(&g->heads, c);
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    c->lingering = 1;
    c->deadline_ms = gate_now_ms() + GATE_LINGER_MS;
    gate_fifo_push(&g->lingering, c);
    metrics_set(g->m_pending, (int64_t)g->heads.n);
}

static void gate_linger_read(gate_t *g, gate_conn_t *c)
{
    char sink[16384];
    for (;;) {
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n > 0) {
            c->len += (size_t)n;
            if (c->len > GATE_LINGER_MAX_BYTES)
                break;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        break; /* EOF or error: done */
    }
    gate_drop(g, c);
}

/* Where the head ends (just past its blank line), or 0 while incomplete.
 * from: where new bytes start; the terminator may straddle the boundary. */
static size_t gate_head_end(const char *buf, size_t len, size_t from)
{
    size_t i = from > 3 ? from - 3 : 0;
    for (; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
            return i + 4;
    return 0;
}

static void gate_read_head(gate_t *g, gate_conn_t *c)
{
    for (;;) {
        if (c->len == c->cap) {
            /* Room for one byte past the bound, which tells "over" apart. */
            size_t cap = c->cap ? c->cap * 2 : GATE_FIRST_READ;
            if (cap > GATE_MAX_HEAD_BYTES + 1)
                cap = GATE_MAX_HEAD_BYTES + 1;
            char *nb = realloc(c->buf, cap);
            if (!nb) {
                gate_drop(g, c);
                return;
            }
            c->buf = nb;
            c->cap = cap;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n <= 0) {
            gate_drop(g, c); /* the client left (or the socket failed) before its head */
            return;
        }
        size_t from = c->len;
        c->len += (size_t)n;
        if (gate_head_end(c->buf, c->len, from)) {
            ev_io_stop(g->loop, &c->io);
            gate_fifo_remove(&g->heads, c);
            metrics_set(g->m_pending, (int64_t)g->heads.n);
            int fd = c->fd;
            c->fd = -1;
            g->pass(g->arg, fd, c->buf, c->len);
            free(c->buf);
            free(c);
            return;
        }
        if (c->len > GATE_MAX_HEAD_BYTES) {
            gate_refuse_too_large(g, c);
            return;
        }
    }
}

static void gate_on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    gate_conn_t *c = io->data;
    if (c->lingering)
        gate_linger_read(c->g, c);
    else
        gate_read_head(c->g, c);
}

static void gate_on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    gate_t *g = io->data;
    uint64_t deadline = gate_now_ms() + GATE_HEAD_DEADLINE_S * 1000u;
    for (int i = 0; i < GATE_ACCEPTS_PER_WAKE; i++) {
        int fd = accept4(g->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors beyond the cap's reserve: the listen
                 * socket stays readable, so waiting on it would spin. */
                ev_io_stop(g->loop, &g->accept_io);
                g->accept_paused_until_ms = gate_now_ms() + GATE_EMFILE_PAUSE_MS;
                g->n_fd_refused++;
                metrics_inc(g->m_fd_refused);
            }
            break; /* EAGAIN: all taken; anything else: the next wake retries */
        }
        if (fd >= g->fd_cap) {
            /* Keeps the descriptors above the cap free for NATS, Redis and
             * /metrics, and within lws's table (ws.c, ws_create_context). */
            close(fd);
            g->n_fd_refused++;
            metrics_inc(g->m_fd_refused);
            continue;
        }
        gate_conn_t *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->g = g;
        c->deadline_ms = deadline;
        ev_io_init(&c->io, gate_on_readable, fd, EV_READ);
        c->io.data = c;
        ev_io_start(g->loop, &c->io);
        gate_fifo_push(&g->heads, c);
    }
    metrics_set(g->m_pending, (int64_t)g->heads.n);
}

static void gate_log_burst(gate_t *g, uint64_t now)
{
    if (now - g->last_log_ms < GATE_LOG_EVERY_S * 1000u)
        return;
    if (g->n_timeouts)
        LOG_W("closed %llu connection(s) that did not send a complete request within %d s "
              "(stalled or very slow clients; a slowloris attack looks like this); %zu reading "
              "now",
              (unsigned long long)g->n_timeouts, GATE_HEAD_DEADLINE_S, g->heads.n);
    if (g->n_too_large)
        LOG_W("answered 431 to %llu request(s) with a head over %d bytes (a token over the "
              "limit?)",
              (unsigned long long)g->n_too_large, GATE_MAX_HEAD_BYTES);
    if (g->n_fd_refused)
        LOG_W("closed %llu connection(s) at accept: the open-file cap is reached "
              "(push_pusher_fd_limit_refused_total)",
              (unsigned long long)g->n_fd_refused);
    if (g->n_timeouts || g->n_too_large || g->n_fd_refused)
        g->last_log_ms = now;
    g->n_timeouts = g->n_too_large = g->n_fd_refused = 0;
}

static void gate_on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    gate_t *g = t->data;
    uint64_t now = gate_now_ms();
    while (g->heads.first && g->heads.first->deadline_ms <= now) {
        g->n_timeouts++;
        metrics_inc(g->m_timeouts);
        gate_drop(g, g->heads.first);
    }
    while (g->lingering.first && g->lingering.first->deadline_ms <= now)
        gate_drop(g, g->lingering.first);
    if (g->accept_paused_until_ms && now >= g->accept_paused_until_ms && g->lfd >= 0) {
        g->accept_paused_until_ms = 0;
        ev_io_start(g->loop, &g->accept_io);
    }
    gate_log_burst(g, now);
}

static int gate_listen(const char *host, int port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0) {
        sa.sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
            return -1;
        sa.sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        freeaddrinfo(ai);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* SOMAXCONN is clamped by net.core.somaxconn; a reconnect storm waits there. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, SOMAXCONN) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

gate_t *gate_new(struct ev_loop *loop, const char *host, int port, int fd_cap, gate_pass_fn pass,
                 void *arg)
{
    gate_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->loop = loop;
    g->fd_cap = fd_cap;
    g->pass = pass;
    g->arg = arg;
    g->lfd = gate_listen(host, port);
    if (g->lfd < 0) {
        LOG_E("cannot listen on %s:%d: %s", host, port, strerror(errno));
        free(g);
        return NULL;
    }
    g->m_timeouts = metrics_counter(
        "push_pusher_head_timeouts_total", NULL,
        "Connections closed for not sending a complete request head within the deadline");
    g->m_too_large = metrics_counter("push_pusher_head_too_large_total", NULL,
                                     "Requests answered 431: head over the size bound");
    g->m_fd_refused =
        metrics_counter("push_pusher_fd_limit_refused_total", NULL,
                        "Connections closed on accept: the open-file cap was reached");
    g->m_pending = metrics_gauge("push_pusher_heads_pending", NULL,
                                 "Connections accepted and still sending their request head");
    ev_io_init(&g->accept_io, gate_on_accept, g->lfd, EV_READ);
    g->accept_io.data = g;
    ev_io_start(loop, &g->accept_io);
    ev_timer_init(&g->tick, gate_on_tick, GATE_TICK_MS / 1000.0, GATE_TICK_MS / 1000.0);
    g->tick.data = g;
    ev_timer_start(loop, &g->tick);
    return g;
}

void gate_close(gate_t *g)
{
    if (!g || g->lfd < 0)
        return;
    ev_io_stop(g->loop, &g->accept_io);
    close(g->lfd);
    g->lfd = -1;
    while (g->heads.first)
        gate_drop(g, g->heads.first);
}

void gate_free(gate_t *g)
{
    if (!g)
        return;
    gate_close(g);
    while (g->lingering.first)
        gate_drop(g, g->lingering.first);
    ev_timer_stop(g->loop, &g->tick);
    free(g);
}

size_t gate_pending(const gate_t *g)
{
    return g->heads.n;
}
