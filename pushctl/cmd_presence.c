/* pushctl presence USER | presence --channel C: ask <prefix>.presence and
 * print the JSON answer. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "natsx.h"
#include "pushctl.h"

int pushctl_presence(int argc, char **argv)
{
    config_common_t common = {0};
    long timeout_ms = 3000;
    const char *channel = NULL;
    config_opt_t opts[] = {
        CONFIG_COMMON_OPTS(common),
        {"channel", NULL, NULL, "ask about a channel's subscribers instead of a user", CONFIG_STR,
         &channel, 0, 0, 0},
        {"timeout-ms", NULL, "3000", "how long to wait for an answer", CONFIG_INT, &timeout_ms, 1,
         600000, 1},
    };
    int npos = 0;
    int rc = cli_parse("pushctl presence USER | pushctl presence --channel C", opts,
                       sizeof opts / sizeof opts[0], argc, argv, &npos, &common);
    if (rc >= 0)
        return rc;
    if (npos != (channel ? 0 : 1)) {
        fprintf(stderr, "pushctl: presence takes exactly one USER argument, or --channel C\n");
        return 2;
    }
    natsConnection *nc = NULL;
    if (cli_nats_connect(&common, (int)timeout_ms, &nc) != 0)
        return 1;
    json_t *req =
        channel ? json_pack("{s:s}", "channel", channel) : json_pack("{s:s}", "user", argv[1]);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char subject[256];
    natsx_subject(subject, sizeof subject, common.prefix, NATSX_PRESENCE);
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_RequestString(&reply, nc, subject, body, (int64_t)timeout_ms);
    free(body);
    rc = 1;
    if (s == NATS_OK) {
        printf("%.*s\n", natsMsg_GetDataLength(reply), natsMsg_GetData(reply));
        natsx_msg_free(reply);
        rc = 0;
    } else {
        fprintf(stderr, "pushctl: no answer on %s: %s\n", subject, natsStatus_GetText(s));
    }
    natsConnection_Destroy(nc);
    return rc;
}
