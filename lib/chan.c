/* chan: see chan.h. */
#include "chan.h"

#include <stdio.h>
#include <string.h>

int chan_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > CHAN_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == ':' || c == '@' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

int chan_grant_covers(const char *grant, const char *channel)
{
    size_t g = strlen(grant);
    if (g && grant[g - 1] == '*')
        return strncmp(grant, channel, g - 1) == 0;
    return strcmp(grant, channel) == 0;
}

int chan_granted(char *const *grants, size_t n, const char *channel)
{
    for (size_t i = 0; i < n; i++)
        if (grants[i] && chan_grant_covers(grants[i], channel))
            return 1;
    return 0;
}

size_t chan_route_key(char *buf, size_t size, const char *prefix, const char *channel)
{
    int n = snprintf(buf, size, "%s:chan:%s", prefix, channel);
    return n < 0 ? 0 : (size_t)n;
}
