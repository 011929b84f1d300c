/* accept: see accept.h. */
#include "accept.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "push/v1/push.pb-c.h"

static const char *const accept_reasons[] = {INGEST_REASONS};
#define ACCEPT_N_REASONS (sizeof accept_reasons / sizeof accept_reasons[0])

struct accept {
    store_t *store;
    handover_t *handover;
    metrics_series_t *accepted, *duplicates, *store_errors, *rejected[ACCEPT_N_REASONS];
};

accept_t *accept_new(store_t *store, handover_t *handover)
{
    accept_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->store = store;
    a->handover = handover;
    a->accepted =
        metrics_counter("push_collect_accepted_total", NULL, "Publishes accepted and stored");
    a->duplicates = metrics_counter("push_collect_duplicates_total", NULL,
                                    "Publishes whose id was seen before (stored once)");
    a->store_errors = metrics_counter("push_collect_store_errors_total", NULL,
                                      "Publishes the store failed to keep");
    for (size_t i = 0; i < ACCEPT_N_REASONS; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "reason=\"%s\"", accept_reasons[i]);
        a->rejected[i] =
            metrics_counter("push_collect_rejected_total", labels, "Publishes rejected, by reason");
    }
    return a;
}

void accept_free(accept_t *a)
{
    free(a);
}

static void accept_count_rejection(accept_t *a, const char *reason)
{
    for (size_t i = 0; i < ACCEPT_N_REASONS; i++)
        if (strcmp(accept_reasons[i], reason) == 0)
            metrics_inc(a->rejected[i]);
}

int accept_decode(accept_t *a, const void *buf, size_t len, const char *content_type,
                  ingest_request_t *req, accept_result_t *res)
{
    memset(res, 0, sizeof *res);
    const char *reason = NULL;
    if (ingest_decode(buf, len, content_type, req, &reason, res->error, sizeof res->error) != 0) {
        res->json = req->json;
        res->status = ACCEPT_REJECTED;
        res->reason = reason;
        accept_count_rejection(a, reason);
        LOG_D("rejected a publish (%s): %s", reason, res->error);
        return -1;
    }
    res->json = req->json;
    return 0;
}

void accept_reject(accept_t *a, const char *reason, const char *error, accept_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->json = 1;
    res->status = ACCEPT_REJECTED;
    res->reason = reason;
    snprintf(res->error, sizeof res->error, "%s", error);
    accept_count_rejection(a, reason);
}

void accept_stored(accept_t *a, int store_rc, const char *id, const char *existing,
                   accept_result_t *res)
{
    if (store_rc == STORE_OK) {
        metrics_inc(a->accepted);
        snprintf(res->id, sizeof res->id, "%s", id);
        res->status = ACCEPT_STORED;
    } else if (store_rc == STORE_DUPLICATE) {
        metrics_inc(a->duplicates);
        snprintf(res->id, sizeof res->id, "%s", existing);
        res->status = ACCEPT_STORED;
    } else {
        metrics_inc(a->store_errors);
        res->status = ACCEPT_STORE_DOWN;
        snprintf(res->error, sizeof res->error,
                 "the store is unavailable; nothing was kept, try again");
    }
}

void *accept_reply(const accept_result_t *res, size_t *len)
{
    int ok = res->status == ACCEPT_STORED;
    if (res->json) {
        json_t *j =
            ok ? json_pack("{s:s}", "id", res->id) : json_pack("{s:s}", "error", res->error);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        *len = text ? strlen(text) : 0;
        return text;
    }
    Push__V1__PushReply r = PUSH__V1__PUSH_REPLY__INIT;
    if (ok)
        r.id = (char *)res->id;
    else
        r.error = (char *)res->error;
    *len = push__v1__push_reply__get_packed_size(&r);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        push__v1__push_reply__pack(&r, buf);
    return buf;
}
