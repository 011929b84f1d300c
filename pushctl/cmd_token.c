/*
 * pushctl token --sub USER [--ttl S] [--channels a,b.*] [--channel C]
 * [--jwt-secret S]: mint an HS256 JWT that authd accepts, for tests, demos
 * and trusted back ends. --channels puts a `channels` claim in a
 * connection token (names, or prefixes ending in '*'); --channel makes a
 * subscription token for that one channel. Prints the
 * token and a newline on stdout. Needs no server: the token is signed
 * locally with the secret authd is given (PUSH_JWT_SECRET).
 * Exit 0 on success, 2 on a bad flag, a missing secret or a bad user id.
 * Runs on the main thread.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "jwt.h"
#include "pushctl.h"

/* Longest --ttl: ten years, far beyond any sane session, well inside time_t. */
#define PUSHCTL_TOKEN_MAX_TTL_S 315360000L

int pushctl_token(int argc, char **argv)
{
    const char *sub = NULL, *secret = NULL, *channels = NULL, *channel = NULL;
    long ttl_s = 3600;
    config_opt_t opts[] = {
        {"sub", NULL, NULL, "the user id the token is for (1..128 bytes)", CONFIG_STR, &sub, 0, 0,
         1},
        {"ttl", NULL, "3600", "seconds until the token expires; 0: it never does", CONFIG_INT,
         &ttl_s, 0, PUSHCTL_TOKEN_MAX_TTL_S, 1},
        {"jwt-secret", "PUSH_JWT_SECRET", NULL, "HS256 secret shared with authd", CONFIG_STR,
         &secret, 0, 0, 1},
        {"channels", NULL, NULL, "channels claim: names or prefixes ending in *, comma separated",
         CONFIG_STR, &channels, 0, 0, 0},
        {"channel", NULL, NULL, "a subscription token for this channel (the channel claim)",
         CONFIG_STR, &channel, 0, 0, 0},
    };
    int rc = config_parse("pushctl",
                          "pushctl token --sub USER [--ttl S] [--channels a,b.*] [--channel C] "
                          "[--jwt-secret S]",
                          opts, sizeof opts / sizeof opts[0], argc, argv, NULL);
    if (rc != CONFIG_OK)
        return rc == CONFIG_EXIT_OK ? 0 : 2;

    json_t *extra = json_object();
    if (channels) {
        json_t *list = json_array();
        for (const char *p = channels; *p;) {
            size_t n = strcspn(p, ",");
            if (n)
                json_array_append_new(list, json_stringn(p, n));
            p += n + (p[n] == ',');
        }
        json_object_set_new(extra, "channels", list);
    }
    if (channel)
        json_object_set_new(extra, "channel", json_string(channel));
    char *extra_text = json_dumps(extra, JSON_COMPACT);
    json_decref(extra);
    char *token = jwt_sign_claims(sub, ttl_s, extra_text, secret, strlen(secret), time(NULL));
    free(extra_text);
    if (!token) {
        /* The sub is the only input jwt_sign refuses (allocation aside). */
        fprintf(stderr,
                "pushctl: --sub: not a valid user id (1..%d bytes, no control characters)\n",
                JWT_MAX_SUB);
        return 2;
    }
    printf("%s\n", token);
    free(token);
    return 0;
}
