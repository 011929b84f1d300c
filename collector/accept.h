/*
 * accept: what every publish goes through, whichever door it came in by
 * (NATS or HTTP): decode and validate (ingest.h), count the store's
 * outcome, and say what to answer. Storing and handing over is the
 * writer's (writer.h). Counts accepted, duplicate and
 * rejected publishes (by reason). Any thread; blocks on the store.
 */
#ifndef COLLECTOR_ACCEPT_H
#define COLLECTOR_ACCEPT_H

#include <stddef.h>

#include "handover.h"
#include "ids.h"
#include "ingest.h"
#include "store.h"

typedef enum {
    ACCEPT_STORED,    /* stored (or a duplicate of a stored one): answer the id */
    ACCEPT_REJECTED,  /* bad input: answer the error */
    ACCEPT_STORE_DOWN /* the store failed: answer the error; nothing was kept */
} accept_status_t;

typedef struct accept_result {
    accept_status_t status;
    int json;             /* the publish was JSON: answer in JSON */
    char id[IDS_LEN + 1]; /* when stored */
    const char *reason;   /* reason code when rejected */
    char error[256];      /* sentence when not stored */
} accept_result_t;

typedef struct accept accept_t;

accept_t *accept_new(store_t *store, handover_t *handover);
void accept_free(accept_t *a);

/* Decode and validate one publish. On success returns 0 with *req filled
 * (the caller frees it with ingest_free) and res->json set. On bad input
 * counts the rejection, fills res (ACCEPT_REJECTED) and returns -1. */
int accept_decode(accept_t *a, const void *buf, size_t len, const char *content_type,
                  ingest_request_t *req, accept_result_t *res);

/* A publish refused before it could be decoded (an HTTP body over the
 * limit): count it under reason and fill res (ACCEPT_REJECTED, JSON). */
void accept_reject(accept_t *a, const char *reason, const char *error, accept_result_t *res);

/* Count the store's outcome for one publish and fill res from it:
 * store_rc is STORE_OK, STORE_DUPLICATE (existing = the first id) or STORE_ERR. */
void accept_stored(accept_t *a, int store_rc, const char *id, const char *existing,
                   accept_result_t *res);

/* The answer for res: JSON {"id":..}/{"error":..} or a packed PushReply.
 * Returns a malloc'd buffer (caller frees) and its length in *len. */
void *accept_reply(const accept_result_t *res, size_t *len);

#endif
