/* jsx: see jsx.h. File storage so that accepted messages survive a NATS
 * restart; limits retention with a max age well past any consumer outage. */
#include "jsx.h"

#include "strmap.h"
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

void jsx_stream_name(char *out, size_t size, const char *prefix)
{
    size_t i = 0;
    for (; prefix[i] && i + 10 < size; i++)
        out[i] = isalnum((unsigned char)prefix[i]) ? (char)toupper((unsigned char)prefix[i]) : '_';
    snprintf(out + i, size - i, "_DISPATCH");
}

_Static_assert(JSX_SHARDS % JSX_SHARDS_USED == 0, "used shards are evenly spaced");

unsigned jsx_shard_of(const char *user)
{
    return strmap_hash(user) % JSX_SHARDS_USED * (JSX_SHARDS / JSX_SHARDS_USED);
}

int jsx_shard_used(unsigned shard)
{
    return shard < JSX_SHARDS && shard % (JSX_SHARDS / JSX_SHARDS_USED) == 0;
}

const char *jsx_shard_consumer(char *out, size_t size, unsigned shard)
{
    snprintf(out, size, "dispatch-%u", shard);
    return out;
}

const char *jsx_shard_subject(char *out, size_t size, const char *prefix, unsigned shard)
{
    snprintf(out, size, "%s.dispatch.%u", prefix, shard);
    return out;
}

natsStatus jsx_ensure_dispatch_stream(jsCtx *js, const char *prefix, int replicas)
{
    char name[128], subject[256];
    jsx_stream_name(name, sizeof name, prefix);
    snprintf(subject, sizeof subject, "%s.dispatch.*", prefix);
    const char *subjects[] = {subject};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.MaxAge = (int64_t)7 * 24 * 3600 * 1000000000LL; /* a week, in ns */
    cfg.Replicas = replicas > 0 ? replicas : 1;
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    natsStatus s = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        int64_t had = 0;
        if (js_GetStreamInfo(&si, js, name, NULL, &jerr) == NATS_OK && si && si->Config)
            had = si->Config->Replicas;
        jsStreamInfo_Destroy(si);
        si = NULL;
        if (replicas == 0 && had > 0)
            cfg.Replicas = had; /* not ours to change (see jsx.h) */
        s = js_UpdateStream(&si, js, &cfg, NULL, &jerr);
        if (s == NATS_OK && had > 0 && had != cfg.Replicas)
            LOG_I("jetstream: stream %s now has %d replica(s), had %d", name, (int)cfg.Replicas,
                  (int)had);
    }
    if (s != NATS_OK)
        LOG_W("jetstream: cannot create stream %s on %s with %d replica(s): %s (error %d)", name,
              subject, (int)cfg.Replicas, natsStatus_GetText(s), (int)jerr);
    jsStreamInfo_Destroy(si);
    return s;
}
