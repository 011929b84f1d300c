/*
 * verifier: answers AuthRequests on <prefix>.auth (queue group "authd", so
 * several authd share the load) with an AuthReply: the token's sub when it
 * verifies, else the reason. Runs on nats.c's subscription thread.
 */
#ifndef AUTHD_VERIFIER_H
#define AUTHD_VERIFIER_H

#include <nats/nats.h>

typedef struct verifier verifier_t;

/* Subscribe on nc. secret is not copied (it must outlive the verifier).
 * Returns NULL after logging why. */
verifier_t *verifier_start(natsConnection *nc, const char *prefix, const char *secret);

/* Unsubscribe (waiting for a callback in progress) and free. Safe with NULL. */
void verifier_stop(verifier_t *v);

#endif
