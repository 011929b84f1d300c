/*
 * httpd: a small HTTP/1.1 server on its own thread (libmicrohttpd), used for
 * /metrics, /healthz, /readyz on --metrics, and by the collector for ingest.
 * The handler runs on libmicrohttpd's thread, never on a service's event loop.
 */
#ifndef PUSH_HTTPD_H
#define PUSH_HTTPD_H

#include <stddef.h>

typedef struct httpd httpd_t;

typedef struct httpd_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* without the query string */
    const char *body;   /* NUL-terminated copy of the body (may contain NULs); "" if none */
    size_t body_len;
    const char *content_type; /* header value or NULL */
    int too_large;            /* the body was over max_body_bytes: not kept (body is "") */
    void *conn;               /* private: the libmicrohttpd connection, for httpd_query */
} httpd_request_t;

typedef struct httpd_response {
    int status;
    const char *content_type; /* default "text/plain" */
    char *body;               /* malloc'd; httpd frees it */
    size_t body_len;
    /* CORS, for pages of other origins: when set, the answer carries
     * Access-Control-Allow-Origin: * and these methods (e.g. "POST,
     * OPTIONS"), with Content-Type as an allowed header, so a browser's
     * preflight and its request both pass. NULL: no CORS headers. */
    const char *cors_methods;
} httpd_response_t;

/* Fill *res. Called on the server thread, possibly concurrently. */
typedef void (*httpd_handler_fn)(void *arg, const httpd_request_t *req, httpd_response_t *res);

/* Start listening on HOST:PORT. A body larger than max_body_bytes is not
 * kept: the handler sees too_large set and an empty body, and should answer
 * 413. Returns NULL (and logs why) on failure. */
httpd_t *httpd_start(const char *hostport, size_t max_body_bytes, httpd_handler_fn handler,
                     void *arg);
void httpd_stop(httpd_t *h);

/* The value of query parameter `name` (URL-decoded), or NULL. Valid during
 * the handler call only. */
const char *httpd_query(const httpd_request_t *req, const char *name);

/* Helper: res->body = strdup(text). */
void httpd_reply(httpd_response_t *res, int status, const char *content_type, const char *text);

/* /metrics, /healthz and /readyz. ready() is called on each /readyz (and
 * each /metrics scrape, for the gauge push_ready) and says whether the
 * process's connections are up; it may be NULL (always ready). */
typedef int (*httpd_ready_fn)(void *arg);
httpd_t *httpd_start_metrics(const char *hostport, httpd_ready_fn ready, void *arg);

#endif
