/*
 * cli: what pushctl's NATS subcommands share: the common flags, a NATS
 * connection that fails fast (a CLI should say "cannot reach NATS" rather
 * than wait forever), and protobuf-to-JSON for printing traffic.
 * Main thread only.
 */
#ifndef PUSHCTL_CLI_H
#define PUSHCTL_CLI_H

#include <jansson.h>
#include <nats/nats.h>
#include <protobuf-c/protobuf-c.h>

#include "config.h"

/* Connect to common->nats_url within timeout_ms. Returns 0 with *out set, or
 * prints one line on stderr and returns -1. */
int cli_nats_connect(const config_common_t *common, int timeout_ms, natsConnection **out);

/* Parse the subcommand's flags (common ones included by the caller's table);
 * returns -1 to continue, else the exit code to return. Sets the log level. */
int cli_parse(const char *usage, config_opt_t *opts, size_t n, int argc, char **argv,
              int *positional, const config_common_t *common);

/* Any protobuf-c message as a JSON object. Bytes fields are base64 strings,
 * except that a field named "data" holding valid JSON is embedded as JSON.
 * Returns a new reference. */
json_t *cli_pb_to_json(const ProtobufCMessage *msg);

#endif
