/* natsx: see natsx.h. */
#include "natsx.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

static metrics_series_t *natsx_disconnects;
static metrics_series_t *natsx_async_errors;
/* Set by natsx_close: the disconnect that follows is ours, not a loss. */
static atomic_int natsx_closing;
/* natsx_watch's watcher; the lock makes removing it wait for a call in progress. */
static pthread_mutex_t natsx_watch_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*natsx_watch_fn)(void *arg, int up);
static void *natsx_watch_arg;

void natsx_watch(void (*fn)(void *arg, int up), void *arg)
{
    pthread_mutex_lock(&natsx_watch_lock);
    natsx_watch_fn = fn;
    natsx_watch_arg = arg;
    pthread_mutex_unlock(&natsx_watch_lock);
}

static void natsx_tell_watcher(int up)
{
    pthread_mutex_lock(&natsx_watch_lock);
    if (natsx_watch_fn)
        natsx_watch_fn(natsx_watch_arg, up);
    pthread_mutex_unlock(&natsx_watch_lock);
}

static void natsx_on_disconnected(natsConnection *nc, void *closure)
{
    if (atomic_load(&natsx_closing) || natsConnection_IsClosed(nc)) {
        LOG_D("nats: connection closed (%s)", (const char *)closure);
        return;
    }
    metrics_inc(natsx_disconnects);
    LOG_W("nats: connection lost (%s); reconnecting forever, publishes are buffered meanwhile",
          (const char *)closure);
    natsx_tell_watcher(0);
}

static void natsx_on_reconnected(natsConnection *nc, void *closure)
{
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    LOG_I("nats: connected again to %s (%s)", url, (const char *)closure);
    natsx_tell_watcher(1);
}

static void natsx_on_connected(natsConnection *nc, void *closure)
{
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    LOG_I("nats: connected to %s (%s)", url, (const char *)closure);
}

static void natsx_on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc, (void)closure;
    metrics_inc(natsx_async_errors);
    const char *subj = sub ? natsSubscription_GetSubject(sub) : NULL;
    LOG_W("nats: asynchronous error on %s: %s", subj ? subj : "(connection)",
          natsStatus_GetText(err));
}

static natsStatus natsx_connect_with(natsConnection **out, const char *urls, const char *name,
                                     int at_once)
{
    natsx_disconnects = metrics_counter("push_nats_disconnects_total", NULL,
                                        "Times a NATS connection of this process was lost");
    natsx_async_errors = metrics_counter("push_nats_async_errors_total", NULL,
                                         "Asynchronous NATS errors (slow consumer, ...)");
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    char *list = strdup(urls);
    const char *servers[16];
    int count = 0;
    if (s == NATS_OK && !list)
        s = NATS_NO_MEMORY;
    for (char *save = NULL, *tok = list ? strtok_r(list, ",", &save) : NULL; tok && count < 16;
         tok = strtok_r(NULL, ",", &save))
        servers[count++] = tok;
    if (s == NATS_OK && count == 0)
        s = NATS_INVALID_ARG;
    if (s == NATS_OK)
        s = natsOptions_SetServers(opts, servers, count);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPendingMsgs(opts, 1000000);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, natsx_on_disconnected, (void *)name);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, natsx_on_reconnected, (void *)name);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(opts, natsx_on_error, (void *)name);
    if (s == NATS_OK && at_once)
        s = natsOptions_SetSendAsap(opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(opts, true, natsx_on_connected, (void *)name);
    if (s == NATS_OK) {
        s = natsConnection_Connect(out, opts);
        if (s == NATS_NOT_YET_CONNECTED) {
            LOG_W("nats: %s not reachable yet; retrying in the background", urls);
            s = NATS_OK;
        } else if (s == NATS_OK) {
            natsx_on_connected(*out, (void *)name);
        }
    }
    if (s != NATS_OK)
        LOG_E("nats: cannot set up a connection to '%s': %s", urls, natsStatus_GetText(s));
    natsOptions_Destroy(opts);
    free(list);
    return s;
}

natsStatus natsx_connect(natsConnection **out, const char *urls, const char *name)
{
    return natsx_connect_with(out, urls, name, 0);
}

natsStatus natsx_connect_now(natsConnection **out, const char *urls, const char *name)
{
    return natsx_connect_with(out, urls, name, 1);
}

int natsx_connected(natsConnection *nc)
{
    return nc && natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED;
}

int natsx_epoch(natsConnection *nc, uint64_t *epoch)
{
    natsStatistics *st = NULL;
    if (!nc || natsStatistics_Create(&st) != NATS_OK)
        return 0;
    uint64_t before = 0, after = 0;
    /* The same count on both sides of a status of CONNECTED: that status
     * was this epoch's (a reconnection in between changes the count). */
    int up = natsConnection_GetStats(nc, st) == NATS_OK &&
             natsStatistics_GetCounts(st, NULL, NULL, NULL, NULL, &before) == NATS_OK &&
             natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED &&
             natsConnection_GetStats(nc, st) == NATS_OK &&
             natsStatistics_GetCounts(st, NULL, NULL, NULL, NULL, &after) == NATS_OK &&
             before == after;
    natsStatistics_Destroy(st);
    if (up)
        *epoch = before;
    return up;
}

void natsx_sub_close(natsSubscription *sub, natsConnection *nc, int timeout_ms)
{
    if (!sub)
        return;
    if (natsx_connected(nc) && natsSubscription_Drain(sub) == NATS_OK)
        natsSubscription_WaitForDrainCompletion(sub, timeout_ms);
    else
        natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
}

void natsx_close(natsConnection *nc)
{
    if (!nc)
        return;
    if (natsx_connected(nc))
        natsConnection_FlushTimeout(nc, 1000);
    atomic_store(&natsx_closing, 1);
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
}

const char *natsx_subject(char *buf, size_t size, const char *prefix, const char *suffix)
{
    snprintf(buf, size, "%s.%s", prefix, suffix);
    return buf;
}

/* natsx_msg_free's way: natsMsg_free of libnats 3.4, or NULL. */
static void (*natsx_msg_free_fn)(void *msg);
static pthread_once_t natsx_msg_free_once = PTHREAD_ONCE_INIT;

static void natsx_msg_free_resolve(void)
{
    /* 3.4.x: natsMsg_Destroy is "not flagged no-destroy, then
     * natsGC_collect, which calls natsMsg_free on its thread" */
    if ((nats_GetVersionNumber() >> 8) != 0x0304)
        return;
    void *sym = dlsym(RTLD_DEFAULT, "natsMsg_free");
    if (sym)
        memcpy(&natsx_msg_free_fn, &sym, sizeof sym); /* POSIX: dlsym gives functions too */
}

int natsx_msg_free_is_direct(void)
{
    pthread_once(&natsx_msg_free_once, natsx_msg_free_resolve);
    return natsx_msg_free_fn != NULL;
}

void natsx_msg_free(natsMsg *m)
{
    if (!m)
        return;
    if (natsx_msg_free_is_direct())
        natsx_msg_free_fn(m);
    else
        natsMsg_Destroy(m);
}

void natsx_msg_list_free(natsMsgList *list)
{
    if (!list || !list->Msgs)
        return;
    for (int i = 0; i < list->Count; i++)
        natsx_msg_free(list->Msgs[i]);
    free(list->Msgs);
    list->Msgs = NULL;
    *(int *)&list->Count = 0; /* natsMsgList's Count is const for its users */
}
