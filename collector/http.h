/*
 * http: the collector's HTTP ingest (--http): POST /v1/messages with the
 * JSON body of a publish. 202 {"id"} once stored, 400 {"error"} for bad
 * input, 413 for a body over the limit (both counted as rejections), 503
 * when the store is down, 404/405 otherwise. Runs on libmicrohttpd's
 * threads; publishes go through the writer (writer.h) like NATS ones.
 */
#ifndef COLLECTOR_HTTP_H
#define COLLECTOR_HTTP_H

#include "accept.h"
#include "httpd.h"
#include "writer.h"

httpd_t *http_ingest_start(const char *hostport, accept_t *accept, writer_t *writer);

#endif
