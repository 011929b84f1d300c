/*
 * pushctl publish (--to or --channel) / broadcast: send one JSON publish request to
 * <prefix>.collect and print the collector's reply. DATA is sent as JSON when
 * it parses as JSON, otherwise as a JSON string.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "natsx.h"
#include "pushctl.h"

static int publish_send(const config_common_t *common, json_t *req, long timeout_ms)
{
    natsConnection *nc = NULL;
    if (cli_nats_connect(common, (int)timeout_ms, &nc) != 0) {
        json_decref(req);
        return 1;
    }
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char subject[256];
    natsx_subject(subject, sizeof subject, common->prefix, NATSX_COLLECT);
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_RequestString(&reply, nc, subject, body, (int64_t)timeout_ms);
    free(body);
    int rc = 1;
    if (s == NATS_OK) {
        const char *data = natsMsg_GetData(reply);
        int len = natsMsg_GetDataLength(reply);
        printf("%.*s\n", len, data);
        json_t *j = json_loadb(data, (size_t)len, 0, NULL);
        rc = j && json_object_get(j, "id") ? 0 : 1;
        json_decref(j);
        natsx_msg_free(reply);
    } else if (s == NATS_NO_RESPONDERS) {
        fprintf(stderr, "pushctl: no collector is listening on %s\n", subject);
    } else {
        fprintf(stderr, "pushctl: no answer on %s within %ld ms: %s\n", subject, timeout_ms,
                natsStatus_GetText(s));
    }
    natsConnection_Destroy(nc);
    return rc;
}

static json_t *publish_data(const char *text)
{
    json_t *data = json_loads(text, JSON_DECODE_ANY, NULL);
    return data ? data : json_string(text);
}

static int publish_run(int argc, char **argv, int broadcast)
{
    config_common_t common = {0};
    const char *to = NULL, *topic = NULL, *id = NULL, *channel = NULL;
    long ttl = -1, timeout_ms = 5000;
    config_opt_t opts[] = {
        CONFIG_COMMON_OPTS(common),
        {"to", NULL, NULL, "comma-separated user ids (publish)", CONFIG_STR, &to, 0, 0, 0},
        {"channel", NULL, NULL, "a channel: every subscriber gets it (publish)", CONFIG_STR,
         &channel, 0, 0, 0},
        {"topic", NULL, NULL, "message topic", CONFIG_STR, &topic, 0, 0, 0},
        {"ttl", NULL, NULL, "seconds to keep for offline users (default 86400)", CONFIG_INT, &ttl,
         0, 31536000, 0},
        {"id", NULL, NULL, "idempotency key", CONFIG_STR, &id, 0, 0, 0},
        {"timeout-ms", NULL, "5000", "how long to wait for the collector", CONFIG_INT, &timeout_ms,
         1, 600000, 1},
    };
    size_t n = sizeof opts / sizeof opts[0];
    int npos = 0;
    int rc =
        cli_parse(broadcast ? "pushctl broadcast [--topic T] DATA"
                            : "pushctl publish (--to u1,u2 | --channel C) [--topic T] [--ttl S] "
                              "[--id K] DATA",
                  opts, n, argc, argv, &npos, &common);
    if (rc >= 0)
        return rc;
    if (npos != 1) {
        fprintf(stderr, "pushctl: %s takes exactly one DATA argument\n", argv[0]);
        return 2;
    }
    json_t *req = json_object();
    if (broadcast) {
        if (to || channel || ttl >= 0) {
            fprintf(stderr, "pushctl: broadcast takes no --to, --channel or --ttl (broadcasts are "
                            "live only)\n");
            json_decref(req);
            return 2;
        }
        json_object_set_new(req, "broadcast", json_true());
    } else if (channel) {
        if (to) {
            fprintf(stderr, "pushctl: publish takes --to or --channel, not both\n");
            json_decref(req);
            return 2;
        }
        json_object_set_new(req, "channel", json_string(channel));
        if (ttl >= 0)
            json_object_set_new(req, "ttl", json_integer(ttl));
    } else {
        if (!to || !*to) {
            fprintf(stderr, "pushctl: publish needs --to u1[,u2...] or --channel C\n");
            json_decref(req);
            return 2;
        }
        json_t *users = json_array();
        char *copy = strdup(to);
        for (char *save = NULL, *u = strtok_r(copy, ",", &save); u; u = strtok_r(NULL, ",", &save))
            json_array_append_new(users, json_string(u));
        free(copy);
        json_object_set_new(req, "to", users);
        if (ttl >= 0)
            json_object_set_new(req, "ttl", json_integer(ttl));
    }
    if (topic)
        json_object_set_new(req, "topic", json_string(topic));
    if (id)
        json_object_set_new(req, "id", json_string(id));
    json_object_set_new(req, "data", publish_data(argv[1]));
    return publish_send(&common, req, timeout_ms);
}

int pushctl_publish(int argc, char **argv)
{
    return publish_run(argc, argv, 0);
}
int pushctl_broadcast(int argc, char **argv)
{
    return publish_run(argc, argv, 1);
}
