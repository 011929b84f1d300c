/*
 * pushctl demo: serve the demo page over HTTP until SIGTERM or SIGINT.
 *
 *   GET /                  the page (pushctl/demo/index.html)
 *   GET /push-client.mjs   the JavaScript client (clients/js/push-client.mjs)
 *   GET /config.json       {"ws_url": --ws-url, "http_url": --http-url}
 *   GET /token?user=U      an HS256 JWT for U, signed here
 *
 * Both files are compiled in (embed.cmake), so the binary alone serves the
 * demo. The JWT secret stays in this process: the page asks /token, as a
 * real application's back end would mint tokens for its logged-in users.
 * Anyone who reaches /token gets a token for any user, which is why the
 * default --listen is loopback only. Requests run on libmicrohttpd's
 * threads (lib/httpd); they only read what main set up before starting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "httpd.h"
#include "jwt.h"
#include "log.h"
#include "pushctl.h"
#include "signals.h"

extern const unsigned char demo_index_html[], demo_push_client_mjs[];
extern const size_t demo_index_html_len, demo_push_client_mjs_len;

/* Ten years, as pushctl token allows. */
#define DEMO_MAX_TOKEN_TTL_S 315360000L

typedef struct demo {
    const char *secret;
    long token_ttl_s;
    char *config_json; /* /config.json, made once */
} demo_t;

static void demo_bytes(httpd_response_t *res, const char *type, const unsigned char *p, size_t n)
{
    res->status = 200;
    res->content_type = type;
    res->body = malloc(n ? n : 1);
    res->body_len = res->body ? n : 0;
    if (res->body)
        memcpy(res->body, p, n);
    else
        res->status = 500;
}

static void demo_handle(void *arg, const httpd_request_t *req, httpd_response_t *res)
{
    demo_t *d = arg;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        httpd_reply(res, 405, "text/plain", "GET only\n");
    } else if (strcmp(req->path, "/") == 0 || strcmp(req->path, "/index.html") == 0) {
        demo_bytes(res, "text/html; charset=utf-8", demo_index_html, demo_index_html_len);
    } else if (strcmp(req->path, "/push-client.mjs") == 0) {
        demo_bytes(res, "text/javascript; charset=utf-8", demo_push_client_mjs,
                   demo_push_client_mjs_len);
    } else if (strcmp(req->path, "/config.json") == 0) {
        httpd_reply(res, 200, "application/json", d->config_json);
    } else if (strcmp(req->path, "/token") == 0) {
        const char *user = httpd_query(req, "user");
        char *token =
            user ? jwt_sign(user, d->token_ttl_s, d->secret, strlen(d->secret), time(NULL)) : NULL;
        if (!token) {
            httpd_reply(res, 400, "text/plain",
                        "give ?user=ID: 1..128 bytes, no control characters\n");
            return;
        }
        LOG_I("demo: minted a token for user '%s'", user);
        res->status = 200;
        res->content_type = "text/plain";
        res->body = token;
        res->body_len = strlen(token);
    } else {
        httpd_reply(res, 404, "text/plain", "not found: try /\n");
    }
}

int pushctl_demo(int argc, char **argv)
{
    const char *listen = NULL, *ws_url = NULL, *http_url = NULL, *secret = NULL, *level = NULL;
    long ttl_s = 3600;
    config_opt_t opts[] = {
        {"listen", "PUSH_DEMO_LISTEN", "127.0.0.1:8090", "HOST:PORT serving the page",
         CONFIG_HOSTPORT, &listen, 0, 0, 1},
        {"ws-url", "PUSH_DEMO_WS_URL", "ws://127.0.0.1:8080/ws",
         "the pusher's WebSocket URL, as the browser reaches it", CONFIG_STR, &ws_url, 0, 0, 1},
        {"http-url", "PUSH_DEMO_HTTP_URL", "http://127.0.0.1:8081",
         "the collector's HTTP ingest (its --http), as the browser reaches it", CONFIG_STR,
         &http_url, 0, 0, 1},
        {"jwt-secret", "PUSH_JWT_SECRET", NULL, "HS256 secret shared with authd (stays here)",
         CONFIG_STR, &secret, 0, 0, 1},
        {"token-ttl", "PUSH_DEMO_TOKEN_TTL", "3600", "seconds the page's tokens are valid",
         CONFIG_INT, &ttl_s, 1, DEMO_MAX_TOKEN_TTL_S, 1},
        {"log-level", "PUSH_LOG_LEVEL", "info", "debug, info, warn or error", CONFIG_LOGLEVEL,
         &level, 0, 0, 1},
    };
    int rc = config_parse("pushctl",
                          "pushctl demo [--listen HOST:PORT] [--ws-url URL] [--http-url URL] "
                          "[--jwt-secret S]",
                          opts, sizeof opts / sizeof opts[0], argc, argv, NULL);
    if (rc != CONFIG_OK)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    log_set_level_name(level);

    demo_t d = {.secret = secret, .token_ttl_s = ttl_s};
    json_t *cfg = json_pack("{s:s,s:s}", "ws_url", ws_url, "http_url", http_url);
    d.config_json = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
    json_decref(cfg);
    if (!d.config_json) {
        fprintf(stderr, "pushctl: demo: out of memory\n");
        return 1;
    }
    httpd_t *h = httpd_start(listen, 0, demo_handle, &d);
    if (!h) {
        fprintf(stderr, "pushctl: demo: cannot serve on %s (see the log line above)\n", listen);
        free(d.config_json);
        return 1;
    }
    printf("demo: serving http://%s/ (WebSocket %s, ingest %s)\n", listen, ws_url, http_url);
    fflush(stdout);
    signals_wait();
    httpd_stop(h);
    free(d.config_json);
    return 0;
}
