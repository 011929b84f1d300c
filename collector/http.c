/* http: see http.h. */
#include "http.h"

#include <stdlib.h>
#include <string.h>

#include "ingest.h"

static void http_ingest_handle(void *arg, const httpd_request_t *req, httpd_response_t *res)
{
    accept_t *a = arg;
    if (strcmp(req->path, "/v1/messages") != 0) {
        httpd_reply(res, 404, "application/json", "{\"error\":\"not found; POST /v1/messages\"}");
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        httpd_reply(res, 405, "application/json", "{\"error\":\"use POST\"}");
        return;
    }
    accept_result_t r;
    /* The HTTP door takes JSON only, whatever the body starts with. */
    accept_publish(a, req->body, req->body_len, "application/json", &r);
    size_t len = 0;
    res->body = accept_reply(&r, &len);
    res->body_len = len;
    res->content_type = "application/json";
    res->status = r.status == ACCEPT_STORED ? 202 : r.status == ACCEPT_REJECTED ? 400 : 503;
}

httpd_t *http_ingest_start(const char *hostport, accept_t *accept)
{
    return httpd_start(hostport, INGEST_MAX_BYTES + 1, http_ingest_handle, accept);
}
