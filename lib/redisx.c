/* redisx: see redisx.h. */
#include "redisx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"

int redisx_parse_url(const char *url, redisx_url_t *out)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0)
        return -1;
    p += 8;
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t n = (size_t)(at - pw);
        if (n >= sizeof out->password)
            return -1;
        memcpy(out->password, pw, n);
        out->password[n] = '\0';
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof out->host)
        return -1;
    memcpy(out->host, p, hl);
    out->host[hl] = '\0';
    p += hl;
    if (*p == ':') {
        char *end;
        errno = 0;
        long port = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || port < 1 || port > 65535)
            return -1;
        out->port = (int)port;
        p = end;
    }
    if (*p == '/') {
        if (p[1]) {
            char *end;
            long db = strtol(p + 1, &end, 10);
            if (end == p + 1 || *end || db < 0 || db > 1000)
                return -1;
            out->db = (int)db;
        }
        p += strlen(p);
    }
    return *p ? -1 : 0;
}

redisContext *redisx_connect(const redisx_url_t *url, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(url->host, url->port, tv);
    if (!c || c->err) {
        LOG_W("redis: cannot connect to %s:%d: %s", url->host, url->port,
              c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r = NULL;
    if (url->password[0]) {
        r = redisCommand(c, "AUTH %s", url->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            LOG_E("redis: AUTH at %s:%d refused: %s", url->host, url->port, r ? r->str : c->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (url->db) {
        r = redisCommand(c, "SELECT %d", url->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            LOG_E("redis: SELECT %d at %s:%d refused: %s", url->db, url->host, url->port,
                  r ? r->str : c->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

size_t redisx_route_key(char *buf, size_t size, const char *prefix, const char *user)
{
    int n = snprintf(buf, size, "%s:route:%s", prefix, user);
    return n < 0 ? 0 : (size_t)n;
}
