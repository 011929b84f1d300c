/*
 * signals: graceful stop on SIGTERM and SIGINT.
 *
 * signals_init() must be called first thing in main(), before any library
 * creates a thread: it blocks SIGTERM and SIGINT in the calling thread, so
 * every thread created afterwards inherits the mask and only the thread that
 * calls signals_wait() ever sees them. SIGPIPE is ignored (writes to closed
 * sockets return EPIPE instead of killing the process).
 */
#ifndef PUSH_SIGNALS_H
#define PUSH_SIGNALS_H

void signals_init(void);

/* Blocks the calling thread until SIGTERM or SIGINT arrives; returns it. */
int signals_wait(void);

/* Non-blocking: returns the pending stop signal, or 0 if none. */
int signals_poll(void);

#endif
