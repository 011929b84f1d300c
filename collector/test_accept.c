/* Unit tests of collector/accept: rejections counted by reason, and the
 * answer a publisher gets in its own encoding (JSON or PushReply). */
#include <stdlib.h>

#include "accept.h"
#include "check.h"
#include "metrics.h"
#include "push/v1/push.pb-c.h"

static void rejection_is_counted_under_its_reason_and_answered_in_json(void)
{
    accept_t *a = accept_new(NULL, NULL);
    metrics_series_t *to_and_bc =
        metrics_counter("push_collect_rejected_total", "reason=\"to_and_broadcast\"", "");
    int64_t before = metrics_get(to_and_bc);
    const char *body = "{\"to\":[\"u1\"],\"broadcast\":true}";
    ingest_request_t req;
    accept_result_t res;
    CHECK_INT(accept_decode(a, body, strlen(body), NULL, &req, &res), -1);
    CHECK_INT(res.status, ACCEPT_REJECTED);
    CHECK_STR(res.reason, "to_and_broadcast");
    CHECK_INT(metrics_get(to_and_bc) - before, 1);
    size_t len = 0;
    char *reply = accept_reply(&res, &len);
    CHECK_STR(reply, "{\"error\":\"give either to or broadcast, not both\"}");
    CHECK_INT(len, strlen(reply));
    free(reply);
    accept_free(a);
}

static void stored_publish_is_answered_with_its_id_or_the_first_id(void)
{
    accept_t *a = accept_new(NULL, NULL);
    metrics_series_t *dups = metrics_counter("push_collect_duplicates_total", NULL, "");
    metrics_series_t *accepted = metrics_counter("push_collect_accepted_total", NULL, "");
    int64_t dups0 = metrics_get(dups), acc0 = metrics_get(accepted);
    accept_result_t res = {.json = 1};
    accept_stored(a, STORE_OK, "01a2115b8fde7ffd00000000", "", &res);
    size_t len = 0;
    char *reply = accept_reply(&res, &len);
    CHECK_STR(reply, "{\"id\":\"01a2115b8fde7ffd00000000\"}");
    free(reply);
    accept_stored(a, STORE_DUPLICATE, "01a2115b8fde7ffd00000009", "01a2115b8fde7ffd00000000", &res);
    reply = accept_reply(&res, &len);
    CHECK_STR(reply, "{\"id\":\"01a2115b8fde7ffd00000000\"}"); /* the first one's id */
    free(reply);
    CHECK_INT(metrics_get(accepted) - acc0, 1);
    CHECK_INT(metrics_get(dups) - dups0, 1);
    accept_free(a);
}

static void protobuf_publisher_gets_a_push_reply(void)
{
    accept_t *a = accept_new(NULL, NULL);
    accept_result_t res = {.json = 0};
    accept_stored(a, STORE_OK, "01a2115b8fde7ffd00000001", "", &res);
    size_t len = 0;
    uint8_t *buf = accept_reply(&res, &len);
    Push__V1__PushReply *r = push__v1__push_reply__unpack(NULL, len, buf);
    CHECK(r != NULL);
    if (r) {
        CHECK_STR(r->id, "01a2115b8fde7ffd00000001");
        CHECK(r->error == NULL);
        push__v1__push_reply__free_unpacked(r, NULL);
    }
    free(buf);

    accept_stored(a, STORE_ERR, "x", "", &res);
    CHECK_INT(res.status, ACCEPT_STORE_DOWN);
    buf = accept_reply(&res, &len);
    r = push__v1__push_reply__unpack(NULL, len, buf);
    CHECK(r != NULL);
    if (r) {
        CHECK(r->id == NULL);
        CHECK_STR(r->error, "the store is unavailable; nothing was kept, try again");
        push__v1__push_reply__free_unpacked(r, NULL);
    }
    free(buf);
    accept_free(a);
}

static void garbage_is_answered_as_protobuf_when_not_json(void)
{
    accept_t *a = accept_new(NULL, NULL);
    const uint8_t garbage[] = {0xff, 0xff, 0xff};
    ingest_request_t req;
    accept_result_t res;
    CHECK_INT(accept_decode(a, garbage, sizeof garbage, NULL, &req, &res), -1);
    CHECK_INT(res.json, 0);
    CHECK_STR(res.reason, "not_json_or_protobuf");
    size_t len = 0;
    uint8_t *buf = accept_reply(&res, &len);
    Push__V1__PushReply *r = push__v1__push_reply__unpack(NULL, len, buf);
    CHECK(r != NULL && r->error != NULL && r->id == NULL);
    if (r)
        push__v1__push_reply__free_unpacked(r, NULL);
    free(buf);
    accept_free(a);
}

CHECK_MAIN(CHECK_CASE(rejection_is_counted_under_its_reason_and_answered_in_json),
           CHECK_CASE(stored_publish_is_answered_with_its_id_or_the_first_id),
           CHECK_CASE(protobuf_publisher_gets_a_push_reply),
           CHECK_CASE(garbage_is_answered_as_protobuf_when_not_json))
