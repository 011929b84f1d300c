/* pushctl token --sub USER [--ttl S]: mint an HS256 JWT with the authd secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "jwt.h"
#include "pushctl.h"

int pushctl_token(int argc, char **argv)
{
    const char *sub = NULL, *secret = NULL;
    long ttl = 3600;
    config_opt_t opts[] = {
        {"sub", NULL, NULL, "the user id the token is for", CONFIG_STR, &sub, 0, 0, 1},
        {"ttl", NULL, "3600", "seconds until it expires (0: never)", CONFIG_INT, &ttl, 0, 315360000, 1},
        {"jwt-secret", "PUSH_JWT_SECRET", NULL, "HS256 secret shared with authd", CONFIG_STR, &secret,
         0, 0, 1},
    };
    int rc = config_parse("pushctl", "pushctl token --sub USER [--ttl S]", opts,
                          sizeof opts / sizeof opts[0], argc, argv, NULL);
    if (rc != CONFIG_OK)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    char *token = jwt_sign(sub, ttl, secret, strlen(secret), time(NULL));
    if (!token) {
        fprintf(stderr, "pushctl: '%s' is not a valid user id (1..%d bytes, no control characters)\n",
                sub, JWT_MAX_SUB);
        return 2;
    }
    printf("%s\n", token);
    free(token);
    return 0;
}
