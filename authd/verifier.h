/*
 * verifier: answers AuthRequests on <prefix>.auth with an AuthReply: ok and
 * the token's sub when it verifies (HS256, 30 s leeway on exp/nbf), else
 * !ok and the jwt reason word ("expired", "bad_signature", ...). A request
 * that is not a protobuf AuthRequest is answered {ok=false,
 * reason="malformed"}, so an asking pusher never waits out its timeout.
 *
 * Subscribes as the NATS queue group "authd": several authd share the load,
 * each request reaches one of them. Stateless per request.
 *
 * Metrics: push_authd_requests_total, push_authd_accepted_total,
 * push_authd_refused_total{reason=...} (one series per jwt reason),
 * push_authd_undecodable_total (requests that were not an AuthRequest; they
 * are also counted as refused{reason="malformed"}).
 *
 * Threads: verifier_start and verifier_stop run on the main thread; requests
 * are handled on nats.c's subscription thread.
 */
#ifndef AUTHD_VERIFIER_H
#define AUTHD_VERIFIER_H

#include <nats/nats.h>

typedef struct verifier verifier_t;

/* Leeway on exp and nbf, for clocks that disagree a little. */
#define VERIFIER_LEEWAY_S 30

/* Subscribe on nc to "<prefix>.auth". secret is not copied: it must outlive
 * the verifier. Returns the verifier (free with verifier_stop), or NULL after
 * logging why. Does not block on the network. */
verifier_t *verifier_start(natsConnection *nc, const char *prefix, const char *secret);

/* Stop answering: drain the subscription (requests already received are
 * still answered, for at most 2 s), then free. Blocks up to that long.
 * Safe with NULL. */
void verifier_stop(verifier_t *v);

#endif
