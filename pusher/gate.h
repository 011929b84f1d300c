/*
 * gate: the pusher's listening socket and the first bytes of every
 * connection, in front of libwebsockets.
 *
 * Why it exists: lws parses a request head in a header buffer ("ah") taken
 * from a pool, from the moment a connection is accepted until its head is
 * complete, and a connection waiting for a buffer waits behind every older
 * one. About 1,030 sockets that sent half a head and then nothing held all
 * 1,024 buffers for 10 s each; with 5,000 of them no real client was
 * welcomed for 19 s (slowloris). A head larger than lws's buffer got a bare
 * hang-up, with no status.
 *
 * So the gate accepts, reads each head into a small buffer of its own
 * (grown as bytes arrive, up to GATE_MAX_HEAD_BYTES), and hands a connection
 * to lws only once its head is complete; lws then parses it at once and
 * holds a buffer for microseconds. A stalled socket costs a descriptor and
 * the bytes it sent, and is closed GATE_HEAD_DEADLINE_S after it was
 * accepted; real clients are read as their bytes arrive, in no queue behind
 * it. A head over the bound is answered 431 and closed after a short
 * linger (so the answer is not lost to a TCP reset). Descriptors at or
 * above the cap are closed as they are accepted (ws.h, WS_FD_RESERVE).
 * Each case is counted, and logged at most once per GATE_LOG_EVERY_S.
 *
 * Thread: the pusher's service thread only; its watchers live on the libev
 * loop lws runs in (ws.c). Needs that loop: with lws's own poll() loop the
 * pusher lets lws listen itself and says so.
 */
#ifndef PUSHER_GATE_H
#define PUSHER_GATE_H

#include <stddef.h>

/* A head (request line and headers, up to the blank line) may be this
 * large: the largest token the product accepts (JWT_MAX_TOKEN, 8 KiB), in the
 * query or in the Authorization header, plus 8 KiB of ordinary headers. */
#define GATE_MAX_HEAD_BYTES (16 * 1024)
/* A connection must have sent its whole head this long after it was
 * accepted: ample for a slow mobile link (a head is one or two packets),
 * short enough that stalled sockets do not pile up. Separate from the auth
 * deadline (ws.h) and the idle timeout. */
#define GATE_HEAD_DEADLINE_S 3
#define GATE_LINGER_MS 1000 /* after a 431: read and drop what the client still sends */
#define GATE_LOG_EVERY_S 10

struct ev_loop;
typedef struct gate gate_t;

/* Called with a connection whose head is complete: head[0..len) holds every
 * byte read so far (the head, and whatever followed it). The callee owns fd
 * from then on; head is only valid during the call. */
typedef void (*gate_pass_fn)(void *arg, int fd, const char *head, size_t len);

/* Listen on host:port ("0.0.0.0" or "*" for every address) on loop.
 * Connections on descriptors at or above fd_cap are closed at once.
 * Returns NULL after logging why (port in use, bad address). */
gate_t *gate_new(struct ev_loop *loop, const char *host, int port, int fd_cap, gate_pass_fn pass,
                 void *arg);

/* Stop accepting (shutdown); connections still reading their head are closed. */
void gate_close(gate_t *g);
void gate_free(gate_t *g);

/* Heads being read now (for a gauge and tests). */
size_t gate_pending(const gate_t *g);

#endif
