/*
 * http: the collector's HTTP ingest (--http): POST /v1/messages with the
 * JSON body of a publish. 202 {"id"}, 400 {"error"}, 503 when the store is
 * down, 404/405 otherwise. Runs on libmicrohttpd's threads.
 */
#ifndef COLLECTOR_HTTP_H
#define COLLECTOR_HTTP_H

#include "accept.h"
#include "httpd.h"

httpd_t *http_ingest_start(const char *hostport, accept_t *accept);

#endif
