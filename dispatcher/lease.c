/* lease: see lease.h. */
#include "lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsx.h"
#include "log.h"

struct lease {
    redisx_url_t url;
    char prefix[128];
    char owner[128];
    char members_key[200];
    char ranked_key[220];
    redisContext *c;
    int logged_down;
};

/* Compare-and-renew, compare-and-delete: only the owner may. */
static const char LEASE_RENEW[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
                                  "return redis.call('pexpire', KEYS[1], ARGV[2]) "
                                  "else return 0 end";
static const char LEASE_RELEASE[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
                                    "return redis.call('del', KEYS[1]) else return 0 end";
/* Redis's clock for the scores, so dispatchers on hosts with skewed clocks
 * agree on who is alive. KEYS: the set of all live dispatchers (older
 * versions count it for their share), then the ranked set. Answers {live,
 * rank}: rank -1 unless every live dispatcher is in the ranked set. */
static const char LEASE_HEARTBEAT[] =
    "local t = redis.call('time') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "for _, k in ipairs(KEYS) do "
    "  redis.call('zadd', k, now + tonumber(ARGV[2]), ARGV[1]) "
    "  redis.call('zremrangebyscore', k, '-inf', now) "
    "  redis.call('pexpire', k, 2 * tonumber(ARGV[2])) "
    "end "
    "local live = redis.call('zcard', KEYS[1]) "
    "local ranked = redis.call('zrange', KEYS[2], 0, -1) "
    "if #ranked ~= live then return {live, -1} end "
    "table.sort(ranked) "
    "for i, m in ipairs(ranked) do if m == ARGV[1] then return {live, i - 1} end end "
    "return {live, -1}";
static const char LEASE_LEAVE[] = "redis.call('zrem', KEYS[1], ARGV[1]) "
                                  "redis.call('zrem', KEYS[2], ARGV[1]) return 0";

lease_t *lease_new(const redisx_url_t *url, const char *prefix, const char *owner)
{
    lease_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->url = *url;
    snprintf(l->prefix, sizeof l->prefix, "%s", prefix);
    snprintf(l->owner, sizeof l->owner, "%s", owner);
    snprintf(l->members_key, sizeof l->members_key, "%s:dispatchers", prefix);
    snprintf(l->ranked_key, sizeof l->ranked_key, "%s:ranked", l->members_key);
    return l;
}

void lease_free(lease_t *l)
{
    if (!l)
        return;
    if (l->c)
        redisFree(l->c);
    free(l);
}

/* Run one command; NULL (connection dropped, logged once per outage) on a
 * connection error. A Redis error reply is returned as is. */
static redisReply *lease_cmd(lease_t *l, int argc, const char **argv)
{
    if (!l->c && !(l->c = redisx_connect(&l->url, 1000))) {
        if (!l->logged_down)
            LOG_W("Redis at %s:%d unreachable; shard leases cannot be renewed, "
                  "dispatching pauses until it is back",
                  l->url.host, l->url.port);
        l->logged_down = 1;
        return NULL;
    }
    redisReply *r = redisCommandArgv(l->c, argc, argv, NULL);
    if (!r) {
        if (!l->logged_down)
            LOG_W("Redis at %s:%d: %s; shard leases cannot be renewed, dispatching "
                  "pauses until it is back",
                  l->url.host, l->url.port, l->c->errstr);
        l->logged_down = 1;
        redisFree(l->c);
        l->c = NULL;
        return NULL;
    }
    if (l->logged_down)
        LOG_I("Redis at %s:%d is back", l->url.host, l->url.port);
    l->logged_down = 0;
    return r;
}

static void lease_shard_key(const lease_t *l, char *buf, size_t size, unsigned shard)
{
    snprintf(buf, size, "%s:dispatch:shard:%u", l->prefix, shard);
}

/* An integer reply as a number, -1 for anything else (logged). */
static long long lease_int(redisReply *r, const char *what)
{
    long long v = -1;
    if (!r)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else
        LOG_W("Redis answered %s with %s", what,
              r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected type");
    freeReplyObject(r);
    return v;
}

int lease_heartbeat(lease_t *l, int *rank)
{
    char ms[32];
    snprintf(ms, sizeof ms, "%d", LEASE_MS);
    const char *argv[] = {"EVAL",        LEASE_HEARTBEAT, "2", l->members_key,
                          l->ranked_key, l->owner,        ms};
    *rank = -1;
    redisReply *r = lease_cmd(l, 7, argv);
    if (!r)
        return -1;
    long long live = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        live = r->element[0]->integer;
        if (live >= 1 && r->element[1]->integer >= 0 && r->element[1]->integer < live)
            *rank = (int)r->element[1]->integer;
    } else {
        LOG_W("Redis answered the heartbeat with %s",
              r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected type");
    }
    freeReplyObject(r);
    return live < 1 ? -1 : (int)live;
}

int lease_target(unsigned shard, int live)
{
    unsigned step = JSX_SHARDS / JSX_SHARDS_USED;
    /* busy shard i is the (i / step)-th dealt; the others follow in order */
    unsigned turn =
        jsx_shard_used(shard) ? shard / step : JSX_SHARDS_USED + shard - shard / step - 1;
    return live > 0 ? (int)(turn % (unsigned)live) : 0;
}

int lease_take(lease_t *l, unsigned shard)
{
    char key[200], ms[32];
    lease_shard_key(l, key, sizeof key, shard);
    snprintf(ms, sizeof ms, "%d", LEASE_MS);
    const char *argv[] = {"SET", key, l->owner, "NX", "PX", ms};
    redisReply *r = lease_cmd(l, 6, argv);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_STATUS ? 1 : r->type == REDIS_REPLY_NIL ? 0 : -1;
    if (rc < 0)
        LOG_W("Redis answered SET NX for shard %u with %s", shard,
              r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected type");
    freeReplyObject(r);
    return rc;
}

int lease_renew(lease_t *l, unsigned shard)
{
    char key[200], ms[32];
    lease_shard_key(l, key, sizeof key, shard);
    snprintf(ms, sizeof ms, "%d", LEASE_MS);
    const char *argv[] = {"EVAL", LEASE_RENEW, "1", key, l->owner, ms};
    long long v = lease_int(lease_cmd(l, 6, argv), "a lease renewal");
    return v < 0 ? -1 : v > 0;
}

int lease_release(lease_t *l, unsigned shard)
{
    char key[200];
    lease_shard_key(l, key, sizeof key, shard);
    const char *argv[] = {"EVAL", LEASE_RELEASE, "1", key, l->owner};
    return lease_int(lease_cmd(l, 5, argv), "a lease release") < 0 ? -1 : 0;
}

void lease_leave(lease_t *l)
{
    /* both at once: the others never see us in one set only */
    const char *argv[] = {"EVAL", LEASE_LEAVE, "2", l->members_key, l->ranked_key, l->owner};
    redisReply *r = lease_cmd(l, 6, argv);
    if (r)
        freeReplyObject(r);
}
