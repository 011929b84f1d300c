/*
 * pushctl tail: subscribe to <prefix>.> and print every message as one JSON
 * line {"subject":..., "type":..., "msg":...}, decoding the protobuf of each
 * subject (docs/SUBJECTS.md): channel messages show their `channel` in the
 * message, subscription-token checks their `channel`, history requests
 * theirs. Tokens in auth requests are shown redacted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "natsx.h"
#include "push/v1/push.pb-c.h"
#include "pushctl.h"
#include "signals.h"

typedef struct tail_kind {
    const char *suffix; /* subject after "<prefix>."; "*" matches one token */
    const char *type;
    const ProtobufCMessageDescriptor *desc; /* NULL: JSON or protobuf PushRequest */
} tail_kind_t;

static const tail_kind_t tail_kinds[] = {
    {"collect", "push.v1.PushRequest", NULL},
    {"dispatch.*", "push.v1.Dispatch", &push__v1__dispatch__descriptor},
    {"broadcast", "push.v1.NodeDelivery", &push__v1__node_delivery__descriptor},
    {"node.*", "push.v1.NodeDelivery", &push__v1__node_delivery__descriptor},
    {"node.*.presence", "push.v1.NodePresenceRequest",
     &push__v1__node_presence_request__descriptor},
    {"auth", "push.v1.AuthRequest", &push__v1__auth_request__descriptor},
    {"ack", "push.v1.Ack", &push__v1__ack__descriptor},
    {"pending", "push.v1.PendingRequest", &push__v1__pending_request__descriptor},
    {"history", "push.v1.HistoryRequest", &push__v1__history_request__descriptor},
    {"presence", "json", NULL},
    {"dispatchers", "json", NULL},
};

/* Does subject suffix s match pattern p, token by token, '*' matching one? */
static int tail_match(const char *p, const char *s)
{
    while (*p && *s) {
        if (*p == '*') {
            p++;
            while (*s && *s != '.')
                s++;
            continue;
        }
        if (*p != *s)
            return 0;
        p++, s++;
    }
    return *p == '\0' && *s == '\0';
}

static json_t *tail_decode(const char *suffix, const char *data, int len, const char **type)
{
    for (size_t i = 0; i < sizeof tail_kinds / sizeof tail_kinds[0]; i++) {
        const tail_kind_t *k = &tail_kinds[i];
        if (!tail_match(k->suffix, suffix))
            continue;
        *type = k->type;
        const ProtobufCMessageDescriptor *desc = k->desc;
        if (!desc) {
            json_t *j = json_loadb(data, (size_t)len, 0, NULL);
            if (j) {
                *type = "json";
                return j;
            }
            desc = &push__v1__push_request__descriptor;
        }
        ProtobufCMessage *m =
            protobuf_c_message_unpack(desc, NULL, (size_t)len, (const uint8_t *)data);
        if (!m)
            break;
        json_t *j = cli_pb_to_json(m);
        if (desc == &push__v1__auth_request__descriptor && json_object_get(j, "token"))
            json_object_set_new(j, "token", json_string("(redacted)"));
        protobuf_c_message_free_unpacked(m, NULL);
        return j;
    }
    *type = "unknown";
    return json_stringn_nocheck(data, (size_t)len);
}

int pushctl_tail(int argc, char **argv)
{
    config_common_t common = {0};
    long count = 0;
    config_opt_t opts[] = {
        CONFIG_COMMON_OPTS(common),
        {"count", NULL, "0", "exit after this many messages (0 = until SIGINT)", CONFIG_INT, &count,
         0, 1000000000, 1},
    };
    int rc = cli_parse("pushctl tail [--count N]", opts, sizeof opts / sizeof opts[0], argc, argv,
                       NULL, &common);
    if (rc >= 0)
        return rc;
    natsConnection *nc = NULL;
    if (cli_nats_connect(&common, 3000, &nc) != 0)
        return 1;
    char subject[256];
    snprintf(subject, sizeof subject, "%s.>", common.prefix);
    natsSubscription *sub = NULL;
    natsStatus s = natsConnection_SubscribeSync(&sub, nc, subject);
    if (s == NATS_OK)
        s = natsConnection_Flush(nc);
    if (s != NATS_OK) {
        fprintf(stderr, "pushctl: cannot subscribe to %s: %s\n", subject, natsStatus_GetText(s));
        natsConnection_Destroy(nc);
        return 1;
    }
    fprintf(stderr, "pushctl: tailing %s\n", subject);
    size_t plen = strlen(common.prefix) + 1;
    long seen = 0;
    while (!signals_poll() && (count == 0 || seen < count)) {
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, 200);
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK)
            break;
        const char *subj = natsMsg_GetSubject(m);
        const char *type = NULL;
        json_t *msg = tail_decode(strlen(subj) > plen ? subj + plen : "", natsMsg_GetData(m),
                                  natsMsg_GetDataLength(m), &type);
        json_t *line = json_pack("{s:s,s:s,s:o}", "subject", subj, "type", type, "msg", msg);
        if (natsMsg_GetReply(m))
            json_object_set_new(line, "reply", json_string(natsMsg_GetReply(m)));
        char *text = json_dumps(line, JSON_COMPACT);
        printf("%s\n", text);
        fflush(stdout);
        free(text);
        json_decref(line);
        natsx_msg_free(m);
        seen++;
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    return 0;
}
