/*
 * httpd: see httpd.h. libmicrohttpd with its own polling thread and a small
 * thread pool; the request body is collected up to the configured limit and
 * handed to the handler whole, so handlers never see partial bodies.
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

struct httpd {
    struct MHD_Daemon *daemon;
    httpd_handler_fn handler;
    void *arg;
    size_t max_body_bytes;
};

typedef struct httpd_conn {
    char *body;
    size_t len, cap;
    int too_big;
} httpd_conn_t;

void httpd_reply(httpd_response_t *res, int status, const char *content_type, const char *text)
{
    res->status = status;
    res->content_type = content_type;
    res->body = strdup(text);
    res->body_len = strlen(text);
}

const char *httpd_query(const httpd_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result httpd_send(struct MHD_Connection *c, httpd_response_t *res)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(res->body_len, res->body ? res->body : (char *)"",
                                        res->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type",
                            res->content_type ? res->content_type : "text/plain");
    if (res->cors_methods) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", res->cors_methods);
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type");
        /* Browsers cap this (Chromium at 2 h); 10 min spares most preflights. */
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)res->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result httpd_access(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version, const char *upload,
                                    size_t *upload_size, void **con_cls)
{
    (void)version;
    httpd_t *h = cls;
    httpd_conn_t *st = *con_cls;
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st)
            return MHD_NO;
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_size) {
        if (st->len + *upload_size > h->max_body_bytes) {
            st->too_big = 1;
        } else if (!st->too_big) {
            if (st->len + *upload_size + 1 > st->cap) {
                size_t cap = (st->len + *upload_size + 1) * 2;
                if (cap > h->max_body_bytes + 1)
                    cap = h->max_body_bytes + 1;
                char *nb = realloc(st->body, cap);
                if (!nb)
                    return MHD_NO;
                st->body = nb;
                st->cap = cap;
            }
            memcpy(st->body + st->len, upload, *upload_size);
            st->len += *upload_size;
            st->body[st->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    httpd_response_t res = {500, NULL, NULL, 0, NULL};
    httpd_request_t req = {
        .method = method,
        .path = url,
        .body = st->body && !st->too_big ? st->body : "",
        .body_len = st->too_big ? 0 : st->len,
        .content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"),
        .too_large = st->too_big,
        .conn = c,
    };
    h->handler(h->arg, &req, &res);
    return httpd_send(c, &res);
}

static void httpd_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    httpd_conn_t *st = *con_cls;
    if (st) {
        free(st->body);
        free(st);
        *con_cls = NULL;
    }
}

httpd_t *httpd_start(const char *hostport, size_t max_body_bytes, httpd_handler_fn handler,
                     void *arg)
{
    char host[256];
    int port;
    if (config_split_hostport(hostport, host, sizeof host, &port) != 0) {
        LOG_E("http: '%s' is not HOST:PORT; not serving HTTP", hostport);
        return NULL;
    }
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0') {
        sin.sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (strcmp(host, "localhost") == 0) {
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        LOG_E("http: host '%s' is not an IPv4 address; not serving HTTP on %s", host, hostport);
        return NULL;
    }
    httpd_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->handler = handler;
    h->arg = arg;
    h->max_body_bytes = max_body_bytes;
    h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)port,
                                 NULL, NULL, httpd_access, h, MHD_OPTION_SOCK_ADDR, &sin,
                                 MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_NOTIFY_COMPLETED,
                                 httpd_completed, h, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                                 MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (!h->daemon) {
        LOG_E("http: cannot listen on %s (address in use or not ours); not serving HTTP", hostport);
        free(h);
        return NULL;
    }
    LOG_I("http: listening on %s", hostport);
    return h;
}

void httpd_stop(httpd_t *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}

typedef struct httpd_metrics_ctx {
    httpd_ready_fn ready;
    void *arg;
    /* push_ready: what /readyz would answer, as of this scrape, so a
     * dashboard or an alert sees readiness without probing /readyz. */
    metrics_series_t *ready_gauge;
} httpd_metrics_ctx_t;

static httpd_metrics_ctx_t httpd_metrics_ctx;

static void httpd_metrics_handler(void *arg, const httpd_request_t *req, httpd_response_t *res)
{
    httpd_metrics_ctx_t *m = arg;
    if (req->too_large) {
        httpd_reply(res, 413, "text/plain", "body over the size limit\n");
    } else if (strcmp(req->path, "/metrics") == 0) {
        metrics_set(m->ready_gauge, m->ready ? m->ready(m->arg) != 0 : 1);
        res->status = 200;
        res->content_type = "text/plain; version=0.0.4";
        res->body = metrics_render();
        res->body_len = res->body ? strlen(res->body) : 0;
    } else if (strcmp(req->path, "/healthz") == 0) {
        httpd_reply(res, 200, "text/plain", "ok\n");
    } else if (strcmp(req->path, "/readyz") == 0) {
        int ok = m->ready ? m->ready(m->arg) : 1;
        httpd_reply(res, ok ? 200 : 503, "text/plain", ok ? "ready\n" : "not ready\n");
    } else {
        httpd_reply(res, 404, "text/plain", "not found\n");
    }
}

httpd_t *httpd_start_metrics(const char *hostport, httpd_ready_fn ready, void *arg)
{
    httpd_metrics_ctx.ready = ready;
    httpd_metrics_ctx.arg = arg;
    httpd_metrics_ctx.ready_gauge = metrics_gauge(
        "push_ready", NULL, "1 while /readyz answers 200 (as of this scrape), else 0");
    return httpd_start(hostport, 0, httpd_metrics_handler, &httpd_metrics_ctx);
}
