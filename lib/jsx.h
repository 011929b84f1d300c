/*
 * jsx: the JetStream stream that carries accepted messages from the
 * collector to the dispatcher (subject <prefix>.dispatch). Both sides create
 * or update it at start, so either may start first.
 */
#ifndef PUSH_JSX_H
#define PUSH_JSX_H

#include <nats/nats.h>
#include <stddef.h>

/* "<PREFIX upper-cased, non-alphanumerics as _>_DISPATCH" into out. */
void jsx_stream_name(char *out, size_t size, const char *prefix);

/* Create the stream, or update it to the expected config if it exists.
 * Blocks for at most a few seconds. Returns NATS_OK or the failure (logged). */
natsStatus jsx_ensure_dispatch_stream(jsCtx *js, const char *prefix);

#endif
