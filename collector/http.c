/* http: see http.h. */
#include "http.h"

#include <stdlib.h>
#include <string.h>

#include "ingest.h"

typedef struct http_ingest {
    accept_t *accept;
    writer_t *writer;
} http_ingest_t;

static void http_ingest_handle(void *arg, const httpd_request_t *req, httpd_response_t *res)
{
    http_ingest_t *h = arg;
    /* Pages of any origin may publish (the demo page among them): the door
     * has no credentials to protect, and a form could already POST to it
     * without CORS; CORS only lets the page read the answer. */
    res->cors_methods = "POST, OPTIONS";
    if (strcmp(req->path, "/v1/messages") != 0) {
        httpd_reply(res, 404, "application/json", "{\"error\":\"not found; POST /v1/messages\"}");
        return;
    }
    if (strcmp(req->method, "OPTIONS") == 0) { /* a browser's CORS preflight */
        httpd_reply(res, 204, "text/plain", "");
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        httpd_reply(res, 405, "application/json", "{\"error\":\"use POST\"}");
        return;
    }
    accept_result_t r;
    if (req->too_large) {
        accept_reject(h->accept, "payload_too_large", "body over the 1 MiB limit", &r);
    } else {
        /* The HTTP door takes JSON only, whatever the body starts with. It
         * goes through the writer like a NATS publish (one order, group
         * commit) and is answered once stored. */
        ingest_request_t in;
        if (accept_decode(h->accept, req->body, req->body_len, "application/json", &in, &r) == 0)
            writer_submit_wait(h->writer, &in, &r);
    }
    size_t len = 0;
    res->body = accept_reply(&r, &len);
    res->body_len = len;
    res->content_type = "application/json";
    res->status = r.status == ACCEPT_STORED     ? 202
                  : req->too_large              ? 413
                  : r.status == ACCEPT_REJECTED ? 400
                                                : 503;
}

httpd_t *http_ingest_start(const char *hostport, accept_t *accept, writer_t *writer)
{
    static http_ingest_t ctx; /* one HTTP door per process */
    ctx.accept = accept;
    ctx.writer = writer;
    return httpd_start(hostport, INGEST_MAX_BYTES + 1, http_ingest_handle, &ctx);
}
