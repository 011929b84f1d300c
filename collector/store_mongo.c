/*
 * store_mongo: the MongoDB store backend (mongodb://... or mongodb+srv://...),
 * through mongo-c-driver. Semantics are those of store.h, as store_sqlite.c.
 *
 * Database: the URI's path (mongodb://host/DB), default "push".
 *   messages   {_id: message id, topic, data: binary, content_type,
 *               accepted_ms: int64, ttl: int64, broadcast: bool,
 *               dispatched: bool, expire_at: Date(accepted_ms + ttl*1000),
 *               idem: key (only when the publish had one),
 *               channel: name (only for a channel message)}
 *   channel_floor {_id: channel, id: the newest ttl > 0 message of the
 *               channel that store_expire deleted}
 *   recipients {_id: ObjectId, msg: message id, user, acked: bool, ttl,
 *               accepted_ms, expire_at: Date (the message's), dispatched: bool}
 * Indexes (created by the health thread when the server is first reachable,
 * before the store reports healthy, so no write runs without them):
 *   messages   {dispatched:1, _id:1}                undispatched, oldest first
 *              {idem:1} unique, partial on idem:string   idempotency keys
 *              {expire_at:1} TTL 0s, partial on dispatched:true
 *              {channel:1, _id:1}, partial on channel:string   history
 *   recipients {user:1, msg:1}                      pending, oldest first
 *              {msg:1, user:1} unique                recipients of a message;
 *                                                    makes retried inserts no-ops
 *              {expire_at:1} TTL 0s, partial on dispatched:true
 * The TTL indexes are partial on dispatched:true because a message (even a
 * ttl 0 one) is kept until it was handed to the dispatcher. MongoDB's TTL
 * monitor (every 60 s) then drops expired documents by itself; store_expire
 * also deletes them at once (and counts them), so the two only race over
 * who deletes first.
 *
 * Writes and crash safety. No transactions: they need a replica set or a
 * sharded cluster, and a message with its recipients does not need one.
 * A put writes the recipients first (one unordered bulk insert: duplicate
 * (msg, user) pairs are ignored, which makes a retry idempotent) and the
 * message document last, both with write concern {w: majority, j: true}.
 * The message document is the commit point: pending and undispatched start
 * from (or join to) message documents, so recipients whose message was never
 * written (a crash or failure between the two writes) are invisible; pending
 * skips them and deletes them once they are an hour old. Group commit is a
 * best effort without transactions: when a batch fails part way, some of its
 * messages may be kept although every publisher of the batch is told
 * "error"; those are handed over by the retry loop (at-least-once), and a
 * publisher's retry with the same idempotency key gets the kept id.
 * Idempotency keys: one find for the batch's keys first, then duplicates
 * inside the batch are resolved in memory (the first item wins); a
 * concurrent writer with the same key loses on the unique index (error
 * 11000) and then reports the winner's id.
 *
 * Acks, handed-over marks: {w} from the URI (default 1). Losing one in a
 * failover means a message is delivered or handed over again, which the
 * at-least-once contract allows. Marking sets recipients dispatched before
 * the message, so a dispatched message's recipients are always dispatched
 * (and expire with it).
 *
 * Health and retries: mongoc_client_pool_new does not connect, so opening
 * succeeds without a server. A health thread pings the server every second
 * (serverSelectionTimeoutMS defaults to 1000 ms, connectTimeoutMS to 2000,
 * socketTimeoutMS to 15000, when the URI does not set them), creates the
 * indexes on the first success and keeps an atomic healthy flag. While it is
 * clear every call returns STORE_ERR at once: the writer never waits on a
 * server that is down, and recovers within a second of the server coming
 * back. A call that fails with a network or server-selection error clears
 * the flag until the next successful ping.
 *
 * Threads: any; each call pops its own client from the one pool and pushes
 * it back (a mongoc_client_t is never shared between threads).
 */
#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bgloop.h"
#include "log.h"
#include "store_backend.h"

#define STORE_MONGO_DEFAULT_DB "push"
#define STORE_MONGO_PING_INTERVAL_MS 1000
#define STORE_MONGO_SELECTION_TIMEOUT_MS 1000
#define STORE_MONGO_CONNECT_TIMEOUT_MS 2000
#define STORE_MONGO_SOCKET_TIMEOUT_MS 15000 /* above the wtimeout: its answer must arrive */
#define STORE_MONGO_WTIMEOUT_MS 10000
/* Recipients without a message older than this come from a put that failed
 * or crashed half way (a put never takes this long): pending deletes them. */
#define STORE_MONGO_ORPHAN_AGE_MS (3600 * 1000)
#define STORE_MONGO_EXPIRE_CHUNK 1000

struct store_mongo {
    mongoc_uri_t *uri;
    mongoc_client_pool_t *pool;
    char *db;
    char *where; /* host list for logs, without credentials */
    mongoc_write_concern_t *durable;
    bgloop_t *health;
    atomic_int healthy;
    int indexes_ok;  /* health thread only */
    int logged_down; /* health thread only */
};

/* --- process-wide driver set-up --------------------------------------------- */

static void store_mongo_log(mongoc_log_level_t level, const char *domain, const char *message,
                            void *arg)
{
    (void)arg;
    if (level <= MONGOC_LOG_LEVEL_CRITICAL)
        LOG_E("mongoc %s: %s", domain, message);
    else if (level == MONGOC_LOG_LEVEL_WARNING)
        LOG_W("mongoc %s: %s", domain, message);
    else if (level <= MONGOC_LOG_LEVEL_INFO)
        LOG_D("mongoc %s: %s", domain, message);
}

static pthread_once_t store_mongo_once = PTHREAD_ONCE_INIT;

/* mongoc_cleanup is left to process exit: another store may be open, and
 * the driver's globals are still reachable, so leak checkers are quiet. */
static void store_mongo_init_driver(void)
{
    mongoc_init();
    mongoc_log_set_handler(store_mongo_log, NULL);
}

/* --- small helpers ---------------------------------------------------------- */

static int64_t store_mongo_expire_ms(const store_msg_t *m)
{
    return (int64_t)(m->accepted_ms + (uint64_t)m->ttl * 1000u);
}

/* An error that means "the server is not there": stop trying until the next ping. */
static void store_mongo_failed(store_mongo_t *s, const char *what, const bson_error_t *e)
{
    if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM) {
        if (atomic_exchange(&s->healthy, 0))
            LOG_W("store: mongodb at %s unreachable during %s: %s; failing fast until it "
                  "answers a ping (every %d ms)",
                  s->where, what, e->message, STORE_MONGO_PING_INTERVAL_MS);
    } else {
        LOG_E("store: mongodb %s failed: %s (domain %u, code %u)", what, e->message, e->domain,
              e->code);
    }
}

/* A client of our own for one call, or NULL (fail fast) while unhealthy. */
static mongoc_client_t *store_mongo_pop(store_mongo_t *s)
{
    if (!atomic_load(&s->healthy))
        return NULL;
    return mongoc_client_pool_pop(s->pool);
}

/* Append ids as the array `key` (e.g. "$in") to doc. */
static void store_mongo_append_strings(bson_t *doc, const char *key, char *const *strs, size_t n)
{
    bson_t arr;
    bson_append_array_begin(doc, key, -1, &arr);
    for (size_t i = 0; i < n; i++) {
        char buf[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
        bson_append_utf8(&arr, k, -1, strs[i], -1);
    }
    bson_append_array_end(doc, &arr);
}

/* A string field of doc, or NULL. */
static const char *store_mongo_str(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

/* Options {writeConcern: wc} (wc NULL: the URI's) plus ordered:false when unordered. */
static void store_mongo_write_opts(bson_t *opts, const mongoc_write_concern_t *wc, int unordered)
{
    bson_init(opts);
    if (wc)
        mongoc_write_concern_append((mongoc_write_concern_t *)wc, opts);
    if (unordered)
        BSON_APPEND_BOOL(opts, "ordered", false);
}

/* What a store_mongo_cursor_each callback answers for a document. */
enum { STORE_MONGO_NEXT = 0, STORE_MONGO_STOP = 1, STORE_MONGO_FAIL = -1 };
typedef int (*store_mongo_doc_fn)(void *arg, const bson_t *doc);

/* Walk c, calling fn on each document until it answers STORE_MONGO_STOP or
 * STORE_MONGO_FAIL; then report the cursor's error, if any, as `what`
 * (store_mongo_failed) and destroy c. Returns 0, or -1 when fn failed or
 * the cursor had an error. */
static int store_mongo_cursor_each(store_mongo_t *s, mongoc_cursor_t *c, const char *what,
                                   store_mongo_doc_fn fn, void *arg)
{
    const bson_t *doc;
    int rc = 0;
    while (mongoc_cursor_next(c, &doc)) {
        int next = fn(arg, doc);
        if (next == STORE_MONGO_FAIL)
            rc = -1;
        if (next != STORE_MONGO_NEXT)
            break;
    }
    bson_error_t e;
    if (mongoc_cursor_error(c, &e)) {
        store_mongo_failed(s, what, &e);
        rc = -1;
    }
    mongoc_cursor_destroy(c);
    return rc;
}

/* A cursor callback: notes that a document was found (arg: int *), stops. */
static int store_mongo_found(void *arg, const bson_t *doc)
{
    (void)doc;
    *(int *)arg = 1;
    return STORE_MONGO_STOP;
}

/* --- indexes ------------------------------------------------------------------ */

static int store_mongo_create_indexes(store_mongo_t *s, mongoc_client_t *client,
                                      const char *collection, bson_t *indexes_cmd)
{
    mongoc_database_t *db = mongoc_client_get_database(client, s->db);
    bson_t opts;
    store_mongo_write_opts(&opts, s->durable, 0);
    bson_error_t e;
    bool ok = mongoc_database_write_command_with_opts(db, indexes_cmd, &opts, NULL, &e);
    if (!ok)
        LOG_E("store: cannot create the indexes of %s.%s on %s: %s; retrying in %d ms", s->db,
              collection, s->where, e.message, STORE_MONGO_PING_INTERVAL_MS);
    bson_destroy(&opts);
    mongoc_database_destroy(db);
    return ok ? 0 : -1;
}

/* createIndexes is a no-op for indexes that already exist with the same
 * definition, so this runs again after every restart without harm. */
static int store_mongo_ensure_indexes(store_mongo_t *s, mongoc_client_t *client)
{
    /* one index per line */
    // clang-format off
    bson_t *msgs = BCON_NEW(
        "createIndexes", BCON_UTF8("messages"), "indexes", "[",
        "{", "key", "{", "dispatched", BCON_INT32(1), "_id", BCON_INT32(1), "}",
        "name", BCON_UTF8("undispatched"), "}",
        "{", "key", "{", "idem", BCON_INT32(1), "}", "name", BCON_UTF8("idem_unique"),
        "unique", BCON_BOOL(true), "partialFilterExpression", "{", "idem", "{", "$type",
        BCON_UTF8("string"), "}", "}", "}",
        "{", "key", "{", "expire_at", BCON_INT32(1), "}", "name", BCON_UTF8("expire_dispatched"),
        "expireAfterSeconds", BCON_INT32(0), "partialFilterExpression", "{", "dispatched",
        BCON_BOOL(true), "}", "}",
        "{", "key", "{", "channel", BCON_INT32(1), "_id", BCON_INT32(1), "}",
        "name", BCON_UTF8("history"), "partialFilterExpression", "{", "channel", "{", "$type",
        BCON_UTF8("string"), "}", "}", "}",
        "]");
    bson_t *rcpts = BCON_NEW(
        "createIndexes", BCON_UTF8("recipients"), "indexes", "[",
        "{", "key", "{", "user", BCON_INT32(1), "msg", BCON_INT32(1), "}",
        "name", BCON_UTF8("pending_by_user"), "}",
        "{", "key", "{", "msg", BCON_INT32(1), "user", BCON_INT32(1), "}",
        "name", BCON_UTF8("by_message"), "unique", BCON_BOOL(true), "}",
        "{", "key", "{", "expire_at", BCON_INT32(1), "}", "name", BCON_UTF8("expire_dispatched"),
        "expireAfterSeconds", BCON_INT32(0), "partialFilterExpression", "{", "dispatched",
        BCON_BOOL(true), "}", "}",
        "]");
    // clang-format on
    int rc = store_mongo_create_indexes(s, client, "messages", msgs) ||
                     store_mongo_create_indexes(s, client, "recipients", rcpts)
                 ? -1
                 : 0;
    bson_destroy(msgs);
    bson_destroy(rcpts);
    return rc;
}

/* --- health thread ------------------------------------------------------------ */

static int store_mongo_health_run(void *arg)
{
    store_mongo_t *s = arg;
    mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
    bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
    bson_error_t e;
    int up = mongoc_client_command_simple(client, "admin", ping, NULL, NULL, &e);
    bson_destroy(ping);
    if (up && !s->indexes_ok) {
        s->indexes_ok = store_mongo_ensure_indexes(s, client) == 0;
        if (s->indexes_ok)
            LOG_I("store: mongodb at %s ready (database %s, indexes in place)", s->where, s->db);
    }
    mongoc_client_pool_push(s->pool, client);
    int healthy = up && s->indexes_ok;
    atomic_store(&s->healthy, healthy);
    if (!up && !s->logged_down) {
        LOG_W("store: mongodb at %s does not answer: %s; publishes fail until it does, "
              "retrying every %d ms",
              s->where, e.message, STORE_MONGO_PING_INTERVAL_MS);
        s->logged_down = 1;
    } else if (healthy && s->logged_down) {
        LOG_I("store: mongodb at %s answers again", s->where);
        s->logged_down = 0;
    }
    return BGLOOP_WAIT;
}

/* --- open / close ------------------------------------------------------------- */

static void store_mongo_close(void *handle);

static void store_mongo_default_option(mongoc_uri_t *uri, const char *key, int32_t value)
{
    if (!mongoc_uri_has_option(uri, key))
        mongoc_uri_set_option_as_int32(uri, key, value);
}

/* "host1:port,host2:port" from the URI, for logs (no user name or password). */
static char *store_mongo_where(const mongoc_uri_t *uri)
{
    const char *srv = mongoc_uri_get_srv_hostname(uri);
    if (srv)
        return strdup(srv);
    size_t len = 0;
    for (const mongoc_host_list_t *h = mongoc_uri_get_hosts(uri); h; h = h->next)
        len += strlen(h->host_and_port) + 1;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    out[0] = '\0';
    for (const mongoc_host_list_t *h = mongoc_uri_get_hosts(uri); h; h = h->next) {
        if (out[0])
            strcat(out, ",");
        strcat(out, h->host_and_port);
    }
    return out;
}

store_mongo_t *store_mongo_open(const char *uri_string, char *err, size_t err_size)
{
    pthread_once(&store_mongo_once, store_mongo_init_driver);
    store_mongo_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    atomic_init(&s->healthy, 0);
    bson_error_t e;
    if (!(s->uri = mongoc_uri_new_with_error(uri_string, &e))) {
        snprintf(err, err_size, "bad MongoDB URI: %s", e.message);
        goto fail;
    }
    store_mongo_default_option(s->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                               STORE_MONGO_SELECTION_TIMEOUT_MS);
    store_mongo_default_option(s->uri, MONGOC_URI_CONNECTTIMEOUTMS, STORE_MONGO_CONNECT_TIMEOUT_MS);
    store_mongo_default_option(s->uri, MONGOC_URI_SOCKETTIMEOUTMS, STORE_MONGO_SOCKET_TIMEOUT_MS);
    const char *db = mongoc_uri_get_database(s->uri);
    s->db = strdup(db && *db ? db : STORE_MONGO_DEFAULT_DB);
    s->where = store_mongo_where(s->uri);
    s->durable = mongoc_write_concern_new();
    if (!s->db || !s->where || !s->durable) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    mongoc_write_concern_set_w(s->durable, MONGOC_WRITE_CONCERN_W_MAJORITY);
    mongoc_write_concern_set_journal(s->durable, true);
    mongoc_write_concern_set_wtimeout_int64(s->durable, STORE_MONGO_WTIMEOUT_MS);
    /* Does not connect: servers are discovered by the pool's own thread. */
    if (!(s->pool = mongoc_client_pool_new_with_error(s->uri, &e))) {
        snprintf(err, err_size, "cannot set up a MongoDB client pool for %s: %s", s->where,
                 e.message);
        goto fail;
    }
    mongoc_client_pool_set_error_api(s->pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_set_appname(s->pool, "push-collector");
    if (bgloop_start(&s->health, "mongo-health", STORE_MONGO_PING_INTERVAL_MS,
                     store_mongo_health_run, s) != 0) {
        snprintf(err, err_size, "cannot start the MongoDB health thread");
        goto fail;
    }
    LOG_I("store: mongodb at %s, database %s; ready once it answers a ping", s->where, s->db);
    return s;
fail:
    store_mongo_close(s);
    return NULL;
}

static void store_mongo_close(void *handle)
{
    store_mongo_t *s = handle;
    if (!s)
        return;
    bgloop_stop(s->health);
    if (s->pool)
        mongoc_client_pool_destroy(s->pool);
    if (s->durable)
        mongoc_write_concern_destroy(s->durable);
    if (s->uri)
        mongoc_uri_destroy(s->uri);
    free(s->db);
    free(s->where);
    free(s);
}

/* --- put ------------------------------------------------------------------------ */

/* The bulk failed only for duplicate keys: the error is the server's 11000
 * (not a network error part way through), every write error of the reply
 * is a duplicate key, and there is no write concern error. The bulk then did
 * all it had to (the duplicates were there already). */
static int store_mongo_only_duplicates(const bson_t *reply, const bson_error_t *e)
{
    if ((e->domain != MONGOC_ERROR_SERVER && e->domain != MONGOC_ERROR_COMMAND) ||
        e->code != MONGOC_ERROR_DUPLICATE_KEY)
        return 0;
    bson_iter_t it, arr;
    if (bson_iter_init_find(&it, reply, "writeConcernErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr) && bson_iter_next(&arr))
        return 0;
    if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr))
        return 0;
    int any = 0;
    while (bson_iter_next(&arr)) {
        bson_iter_t code;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &code) ||
            !bson_iter_find(&code, "code") ||
            bson_iter_as_int64(&code) != MONGOC_ERROR_DUPLICATE_KEY)
            return 0;
        any = 1;
    }
    return any;
}

/* Mark in dup[] each bulk index that has a duplicate-key write error.
 * Returns 0 when every write error is such (and no write concern error), else -1. */
static int store_mongo_duplicate_indexes(const bson_t *reply, const bson_error_t *e, char *dup,
                                         size_t n)
{
    if (!store_mongo_only_duplicates(reply, e))
        return -1;
    bson_iter_t it, arr;
    bson_iter_init_find(&it, reply, "writeErrors");
    bson_iter_recurse(&it, &arr);
    while (bson_iter_next(&arr)) {
        bson_iter_t idx;
        if (!bson_iter_recurse(&arr, &idx) || !bson_iter_find(&idx, "index"))
            return -1;
        int64_t i = bson_iter_as_int64(&idx);
        if (i < 0 || (size_t)i >= n)
            return -1;
        dup[i] = 1;
    }
    return 0;
}

/* The first document's id, for lookups of one (store_mongo_idem_one,
 * store_mongo_id_one). */
typedef struct store_mongo_first {
    char *id; /* IDS_LEN + 1 bytes */
    int found;
} store_mongo_first_t;

static int store_mongo_idem_one(void *arg, const bson_t *doc)
{
    store_mongo_first_t *f = arg;
    const char *v = store_mongo_str(doc, "_id");
    snprintf(f->id, IDS_LEN + 1, "%s", v ? v : "");
    f->found = 1;
    return STORE_MONGO_STOP;
}

/* The id of the stored message with idempotency key idem, into id. Returns
 * 1 found, 0 not found, -1 error. */
static int store_mongo_find_idem(store_mongo_t *s, mongoc_collection_t *messages, const char *idem,
                                 char id[IDS_LEN + 1])
{
    bson_t *filter = BCON_NEW("idem", BCON_UTF8(idem));
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(1));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(messages, filter, opts, NULL);
    store_mongo_first_t f = {.id = id};
    int found = store_mongo_cursor_each(s, c, "idempotency key lookup", store_mongo_idem_one, &f)
                    ? -1
                    : f.found;
    bson_destroy(filter);
    bson_destroy(opts);
    return found;
}

typedef struct store_mongo_batch {
    store_put_item_t *items;
    size_t n;
} store_mongo_batch_t;

/* A stored message with one of the batch's keys: items with that key are
 * its duplicates. */
static int store_mongo_idem_dup(void *arg, const bson_t *doc)
{
    store_mongo_batch_t *b = arg;
    const char *id = store_mongo_str(doc, "_id"), *key = store_mongo_str(doc, "idem");
    if (!id || !key)
        return STORE_MONGO_NEXT;
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].idem && strcmp(b->items[i].idem, key) == 0) {
            b->items[i].result = STORE_DUPLICATE;
            snprintf(b->items[i].existing_id, IDS_LEN + 1, "%s", id);
        }
    return STORE_MONGO_NEXT;
}

/* Decide each item's result before writing: a key stored before, or used by
 * an earlier item of this batch, makes a duplicate. Returns 0 or -1. */
static int store_mongo_resolve_idem(store_mongo_t *s, mongoc_collection_t *messages,
                                    store_put_item_t *items, size_t n)
{
    size_t n_keys = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].result = STORE_OK;
        items[i].existing_id[0] = '\0';
        n_keys += items[i].idem != NULL;
    }
    if (!n_keys)
        return 0;
    char **keys = malloc(n_keys * sizeof *keys);
    if (!keys)
        return -1;
    n_keys = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].idem)
            keys[n_keys++] = (char *)items[i].idem;
    bson_t filter = BSON_INITIALIZER, in;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "idem", &in);
    store_mongo_append_strings(&in, "$in", keys, n_keys);
    bson_append_document_end(&filter, &in);
    free(keys);
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "idem", BCON_INT32(1), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(messages, &filter, opts, NULL);
    store_mongo_batch_t b = {items, n};
    int rc = store_mongo_cursor_each(s, c, "idempotency key lookup", store_mongo_idem_dup, &b);
    bson_destroy(opts);
    bson_destroy(&filter);
    /* The same key twice in one batch: the first item is stored, later ones
     * answer its id. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!items[i].idem || items[i].result != STORE_OK)
            continue;
        for (size_t j = i + 1; j < n; j++)
            if (items[j].idem && items[j].result == STORE_OK &&
                strcmp(items[j].idem, items[i].idem) == 0) {
                items[j].result = STORE_DUPLICATE;
                snprintf(items[j].existing_id, IDS_LEN + 1, "%s", items[i].m->id);
            }
    }
    return rc;
}

/* One bulk insert of the recipients of every item to store. Returns 0 or -1. */
static int store_mongo_insert_recipients(store_mongo_t *s, mongoc_collection_t *recipients,
                                         store_put_item_t *items, size_t n)
{
    bson_t opts;
    store_mongo_write_opts(&opts, s->durable, 1);
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(recipients, &opts);
    bson_destroy(&opts);
    size_t count = 0;
    int rc = 0;
    bson_error_t e;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (items[i].result != STORE_OK)
            continue;
        const store_msg_t *m = items[i].m;
        for (size_t k = 0; k < items[i].n_to && rc == 0; k++) {
            bson_t doc = BSON_INITIALIZER;
            BSON_APPEND_UTF8(&doc, "msg", m->id);
            BSON_APPEND_UTF8(&doc, "user", items[i].to[k]);
            BSON_APPEND_BOOL(&doc, "acked", false);
            BSON_APPEND_INT64(&doc, "ttl", m->ttl);
            BSON_APPEND_INT64(&doc, "accepted_ms", (int64_t)m->accepted_ms);
            BSON_APPEND_DATE_TIME(&doc, "expire_at", store_mongo_expire_ms(m));
            BSON_APPEND_BOOL(&doc, "dispatched", false);
            if (!mongoc_bulk_operation_insert_with_opts(bulk, &doc, NULL, &e)) {
                LOG_E("store: cannot queue a recipient insert: %s", e.message);
                rc = -1;
            }
            bson_destroy(&doc);
            count++;
        }
    }
    if (rc == 0 && count) {
        bson_t reply;
        /* Duplicate (msg, user) pairs: a user named twice, or a retried put. */
        if (!mongoc_bulk_operation_execute(bulk, &reply, &e) &&
            !store_mongo_only_duplicates(&reply, &e)) {
            store_mongo_failed(s, "recipients insert", &e);
            rc = -1;
        }
        bson_destroy(&reply);
    }
    mongoc_bulk_operation_destroy(bulk);
    return rc;
}

/* Best effort: drop the recipients of a message that was not stored. */
static void store_mongo_drop_recipients(mongoc_collection_t *recipients, const char *id)
{
    bson_t *filter = BCON_NEW("msg", BCON_UTF8(id));
    bson_error_t e;
    if (!mongoc_collection_delete_many(recipients, filter, NULL, NULL, &e))
        LOG_D("store: recipients of %s (not stored) left for cleanup: %s", id, e.message);
    bson_destroy(filter);
}

static void store_mongo_message_doc(bson_t *doc, const store_put_item_t *it)
{
    const store_msg_t *m = it->m;
    bson_init(doc);
    BSON_APPEND_UTF8(doc, "_id", m->id);
    BSON_APPEND_UTF8(doc, "topic", m->topic ? m->topic : "");
    BSON_APPEND_BINARY(doc, "data", BSON_SUBTYPE_BINARY, m->data ? m->data : (const uint8_t *)"",
                       (uint32_t)m->data_len);
    BSON_APPEND_UTF8(doc, "content_type", m->content_type ? m->content_type : "");
    BSON_APPEND_INT64(doc, "accepted_ms", (int64_t)m->accepted_ms);
    BSON_APPEND_INT64(doc, "ttl", m->ttl);
    BSON_APPEND_BOOL(doc, "broadcast", m->broadcast != 0);
    BSON_APPEND_BOOL(doc, "dispatched", false);
    BSON_APPEND_DATE_TIME(doc, "expire_at", store_mongo_expire_ms(m));
    if (it->idem)
        BSON_APPEND_UTF8(doc, "idem", it->idem);
    if (m->channel)
        BSON_APPEND_UTF8(doc, "channel", m->channel);
}

/* One bulk insert of the message documents, last (the commit point). An
 * item that loses its idempotency key to a concurrent writer becomes a
 * duplicate of the winner. Returns 0 or -1. */
static int store_mongo_insert_messages(store_mongo_t *s, mongoc_collection_t *messages,
                                       mongoc_collection_t *recipients, store_put_item_t *items,
                                       size_t n)
{
    size_t *which = malloc((n ? n : 1) * sizeof *which);
    char *dup = calloc(n ? n : 1, 1);
    if (!which || !dup) {
        free(which);
        free(dup);
        return -1;
    }
    bson_t opts;
    store_mongo_write_opts(&opts, s->durable, 1);
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(messages, &opts);
    bson_destroy(&opts);
    size_t count = 0;
    int rc = 0;
    bson_error_t e;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (items[i].result != STORE_OK)
            continue;
        bson_t doc;
        store_mongo_message_doc(&doc, &items[i]);
        if (!mongoc_bulk_operation_insert_with_opts(bulk, &doc, NULL, &e)) {
            LOG_E("store: cannot queue message %s: %s", items[i].m->id, e.message);
            rc = -1;
        }
        bson_destroy(&doc);
        which[count++] = i;
    }
    if (rc == 0 && count) {
        bson_t reply;
        if (!mongoc_bulk_operation_execute(bulk, &reply, &e) &&
            store_mongo_duplicate_indexes(&reply, &e, dup, count) != 0) {
            store_mongo_failed(s, "messages insert", &e);
            rc = -1;
        }
        bson_destroy(&reply);
    }
    mongoc_bulk_operation_destroy(bulk);
    for (size_t b = 0; rc == 0 && b < count; b++) {
        if (!dup[b])
            continue;
        store_put_item_t *it = &items[which[b]];
        char winner[IDS_LEN + 1] = "";
        int found = it->idem ? store_mongo_find_idem(s, messages, it->idem, winner) : 0;
        if (found == 1 && strcmp(winner, it->m->id) == 0) {
            continue; /* our own document, from a retried write */
        } else if (found == 1) {
            it->result = STORE_DUPLICATE;
            memcpy(it->existing_id, winner, IDS_LEN + 1);
            store_mongo_drop_recipients(recipients, it->m->id);
        } else {
            /* _id taken without our key: ids are minted fresh, so this is
             * our own earlier write of the same message. */
            if (found == 0 && !it->idem)
                continue;
            LOG_E("store: message %s collided with no visible owner of its key; not stored",
                  it->m->id);
            rc = -1;
        }
    }
    free(which);
    free(dup);
    return rc;
}

static int store_mongo_put_batch(void *handle, store_put_item_t *items, size_t n)
{
    store_mongo_t *s = handle;
    mongoc_client_t *client = store_mongo_pop(s);
    if (!client)
        return STORE_ERR;
    mongoc_collection_t *messages = mongoc_client_get_collection(client, s->db, "messages");
    mongoc_collection_t *recipients = mongoc_client_get_collection(client, s->db, "recipients");
    int rc = STORE_ERR;
    if (store_mongo_resolve_idem(s, messages, items, n) == 0 &&
        store_mongo_insert_recipients(s, recipients, items, n) == 0 &&
        store_mongo_insert_messages(s, messages, recipients, items, n) == 0)
        rc = STORE_OK;
    mongoc_collection_destroy(messages);
    mongoc_collection_destroy(recipients);
    mongoc_client_pool_push(s->pool, client);
    return rc;
}

/* --- reads: rows copied out, callbacks run after the client went back ------- */

/* Copy a message document to the end of rs. Returns the row, or NULL on a
 * malformed document or allocation failure. */
static store_row_t *store_mongo_rows_add(store_rows_t *rs, const bson_t *doc)
{
    store_row_t *r = store_rows_push(rs); /* counted: store_rows_free frees it half-made */
    if (!r)
        return NULL;
    const char *id = store_mongo_str(doc, "_id"), *topic = store_mongo_str(doc, "topic"),
               *ctype = store_mongo_str(doc, "content_type");
    bson_iter_t it;
    const uint8_t *blob = NULL;
    uint32_t blob_len = 0;
    bson_subtype_t sub;
    if (bson_iter_init_find(&it, doc, "data") && BSON_ITER_HOLDS_BINARY(&it))
        bson_iter_binary(&it, &sub, &blob_len, &blob);
    if (!id || strlen(id) > IDS_LEN || !topic || !ctype)
        return NULL;
    snprintf(r->m.id, sizeof r->m.id, "%s", id);
    r->topic = strdup(topic);
    r->content_type = strdup(ctype);
    r->data = malloc(blob_len ? blob_len : 1);
    if (!r->topic || !r->content_type || !r->data)
        return NULL;
    if (blob_len)
        memcpy(r->data, blob, blob_len);
    r->m.data_len = blob_len;
    if (bson_iter_init_find(&it, doc, "accepted_ms"))
        r->m.accepted_ms = (uint64_t)bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, doc, "ttl"))
        r->m.ttl = (uint32_t)bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, doc, "broadcast"))
        r->m.broadcast = bson_iter_as_bool(&it);
    const char *channel = store_mongo_str(doc, "channel");
    if (channel) {
        if (!(r->channel = strdup(channel)))
            return NULL;
        r->m.channel = r->channel;
    }
    r->m.topic = r->topic;
    r->m.data = r->data;
    r->m.content_type = r->content_type;
    return r;
}

/* A cursor callback: copies the message document to the end of arg (store_rows_t *). */
static int store_mongo_add_row(void *arg, const bson_t *doc)
{
    if (store_mongo_rows_add(arg, doc))
        return STORE_MONGO_NEXT;
    LOG_E("store: a stored message is malformed or memory ran out");
    return STORE_MONGO_FAIL;
}

/* Find messages whose _id is in ids, oldest first, appended to rs. Returns 0 or -1. */
static int store_mongo_fetch_messages(store_mongo_t *s, mongoc_collection_t *messages,
                                      char *const *ids, size_t n, store_rows_t *rs)
{
    bson_t filter = BSON_INITIALIZER, in;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
    store_mongo_append_strings(&in, "$in", ids, n);
    bson_append_document_end(&filter, &in);
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(messages, &filter, opts, NULL);
    int rc = store_mongo_cursor_each(s, c, "message lookup", store_mongo_add_row, rs);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

typedef struct store_mongo_page {
    char **page;
    uint64_t *at;
    size_t n, limit;
} store_mongo_page_t;

static int store_mongo_page_one(void *arg, const bson_t *doc)
{
    store_mongo_page_t *pg = arg;
    if (pg->n >= pg->limit)
        return STORE_MONGO_STOP;
    const char *msg = store_mongo_str(doc, "msg");
    bson_iter_t it;
    if (!msg || !(pg->page[pg->n] = strdup(msg)))
        return STORE_MONGO_NEXT;
    pg->at[pg->n] =
        bson_iter_init_find(&it, doc, "accepted_ms") ? (uint64_t)bson_iter_as_int64(&it) : 0;
    pg->n++;
    return STORE_MONGO_NEXT;
}

/* Recipients of at most `limit` of user's pending messages after msg id
 * `after` ("" for the first page): ids into page (caller frees), their
 * acceptance times into at. Returns how many, or -1. */
static long store_mongo_pending_page(store_mongo_t *s, mongoc_collection_t *recipients,
                                     const char *user, uint64_t now_ms, const char *after,
                                     size_t limit, char **page, uint64_t *at)
{
    bson_t *filter =
        BCON_NEW("user", BCON_UTF8(user), "acked", BCON_BOOL(false), "ttl", "{", "$gt",
                 BCON_INT64(0), "}", "expire_at", "{", "$gt", BCON_DATE_TIME((int64_t)now_ms), "}",
                 "msg", "{", "$gt", BCON_UTF8(after), "}");
    bson_t *opts = BCON_NEW("sort", "{", "msg", BCON_INT32(1), "}", "limit",
                            BCON_INT64((int64_t)limit), "projection", "{", "msg", BCON_INT32(1),
                            "accepted_ms", BCON_INT32(1), "_id", BCON_INT32(0), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(recipients, filter, opts, NULL);
    store_mongo_page_t pg = {page, at, 0, limit};
    long n;
    if (store_mongo_cursor_each(s, c, "pending lookup", store_mongo_page_one, &pg) == 0) {
        n = (long)pg.n;
    } else {
        for (size_t i = 0; i < pg.n; i++)
            free(page[i]);
        n = -1;
    }
    bson_destroy(filter);
    bson_destroy(opts);
    return n;
}

/* Recipients whose message does not exist and that are old enough to be
 * left over from a failed put (not one in flight): drop them. */
static void store_mongo_drop_orphans(mongoc_collection_t *recipients, const char *user,
                                     char *const *page, const uint64_t *at, size_t n,
                                     const store_rows_t *rs, size_t rs_from, uint64_t now_ms)
{
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t k = rs_from; k < rs->n && !found; k++)
            found = strcmp(rs->rows[k].m.id, page[i]) == 0;
        if (found || at[i] + STORE_MONGO_ORPHAN_AGE_MS > now_ms)
            continue;
        bson_t *filter = BCON_NEW("msg", BCON_UTF8(page[i]), "user", BCON_UTF8(user));
        bson_error_t e;
        if (mongoc_collection_delete_one(recipients, filter, NULL, NULL, &e))
            LOG_I("store: dropped a recipient of %s left over from a failed publish", page[i]);
        bson_destroy(filter);
    }
}

static int store_mongo_pending(void *handle, const char *user, const char *from, uint64_t now_ms,
                               size_t limit, store_msg_fn fn, void *arg)
{
    store_mongo_t *s = handle;
    if (limit == 0)
        return 0;
    mongoc_client_t *client = store_mongo_pop(s);
    if (!client)
        return STORE_ERR;
    mongoc_collection_t *messages = mongoc_client_get_collection(client, s->db, "messages");
    mongoc_collection_t *recipients = mongoc_client_get_collection(client, s->db, "recipients");
    store_rows_t rs = {0};
    char **page = calloc(limit, sizeof *page);
    uint64_t *at = calloc(limit, sizeof *at);
    char after[IDS_LEN + 1];
    snprintf(after, sizeof after, "%s", from);
    int rc = page && at ? 0 : -1;
    /* Page through the user's recipients until limit messages were found:
     * a recipient without its message (a failed put) takes no slot. */
    while (rc == 0 && rs.n < limit) {
        size_t want = limit - rs.n, n_before = rs.n;
        long got = store_mongo_pending_page(s, recipients, user, now_ms, after, want, page, at);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got > 0 && store_mongo_fetch_messages(s, messages, page, (size_t)got, &rs) != 0)
            rc = -1;
        if (rc == 0 && rs.n - n_before < (size_t)got)
            store_mongo_drop_orphans(recipients, user, page, at, (size_t)got, &rs, n_before,
                                     now_ms);
        if (got > 0)
            snprintf(after, sizeof after, "%s", page[got - 1]);
        for (long i = 0; i < got; i++)
            free(page[i]);
        if ((size_t)got < want)
            break; /* no more recipients */
    }
    free(page);
    free(at);
    mongoc_collection_destroy(messages);
    mongoc_collection_destroy(recipients);
    mongoc_client_pool_push(s->pool, client);
    int n = 0;
    for (size_t i = 0; rc == 0 && i < rs.n; i++, n++)
        fn(arg, &rs.rows[i].m, NULL, 0);
    store_rows_free(&rs);
    return rc == 0 ? n : STORE_ERR;
}

typedef struct store_mongo_rcpt {
    store_rows_t *rs;
    size_t row; /* rows before it have no more recipients to come */
} store_mongo_rcpt_t;

/* A recipient document (sorted by msg): onto its message's row. */
static int store_mongo_rcpt_one(void *arg, const bson_t *doc)
{
    store_mongo_rcpt_t *f = arg;
    store_rows_t *rs = f->rs;
    const char *msg = store_mongo_str(doc, "msg"), *user = store_mongo_str(doc, "user");
    if (!msg || !user)
        return STORE_MONGO_NEXT;
    while (f->row < rs->n && strcmp(rs->rows[f->row].m.id, msg) < 0)
        f->row++;
    if (f->row < rs->n && strcmp(rs->rows[f->row].m.id, msg) == 0 &&
        store_row_add_user(&rs->rows[f->row], user) != 0)
        return STORE_MONGO_FAIL;
    return STORE_MONGO_NEXT;
}

/* Fill each row's recipients (rows sorted by id). Returns 0 or -1. */
static int store_mongo_fetch_recipients(store_mongo_t *s, mongoc_collection_t *recipients,
                                        store_rows_t *rs)
{
    char **ids = malloc(rs->n * sizeof *ids);
    if (!ids)
        return -1;
    for (size_t i = 0; i < rs->n; i++)
        ids[i] = rs->rows[i].m.id;
    bson_t filter = BSON_INITIALIZER, in;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "msg", &in);
    store_mongo_append_strings(&in, "$in", ids, rs->n);
    bson_append_document_end(&filter, &in);
    free(ids);
    bson_t *opts =
        BCON_NEW("sort", "{", "msg", BCON_INT32(1), "user", BCON_INT32(1), "}", "projection", "{",
                 "msg", BCON_INT32(1), "user", BCON_INT32(1), "_id", BCON_INT32(0), "}");
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(recipients, &filter, opts, NULL);
    store_mongo_rcpt_t f = {rs, 0};
    int rc = store_mongo_cursor_each(s, c, "recipients lookup", store_mongo_rcpt_one, &f);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

static int store_mongo_undispatched(void *handle, uint64_t before_ms, size_t limit, store_msg_fn fn,
                                    void *arg)
{
    store_mongo_t *s = handle;
    mongoc_client_t *client = store_mongo_pop(s);
    if (!client)
        return STORE_ERR;
    mongoc_collection_t *messages = mongoc_client_get_collection(client, s->db, "messages");
    mongoc_collection_t *recipients = mongoc_client_get_collection(client, s->db, "recipients");
    store_rows_t rs = {0};
    bson_t *filter = BCON_NEW("dispatched", BCON_BOOL(false), "accepted_ms", "{", "$lt",
                              BCON_INT64((int64_t)before_ms), "}");
    bson_t *opts =
        BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64((int64_t)limit));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(messages, filter, opts, NULL);
    int rc = 0;
    if (limit) /* limit 0 to MongoDB is no limit */
        rc = store_mongo_cursor_each(s, c, "undispatched lookup", store_mongo_add_row, &rs);
    else
        mongoc_cursor_destroy(c);
    bson_destroy(filter);
    bson_destroy(opts);
    if (rc == 0 && rs.n)
        rc = store_mongo_fetch_recipients(s, recipients, &rs);
    mongoc_collection_destroy(messages);
    mongoc_collection_destroy(recipients);
    mongoc_client_pool_push(s->pool, client);
    int n = 0;
    for (size_t i = 0; rc == 0 && i < rs.n; i++, n++)
        fn(arg, &rs.rows[i].m, rs.rows[i].to, rs.rows[i].n_to);
    store_rows_free(&rs);
    return rc == 0 ? n : STORE_ERR;
}

/* --- updates -------------------------------------------------------------------- */

/* update_many {field: {$in: ids}, and extra} with {$set: set}. Returns 0 or -1. */
static int store_mongo_update_in(store_mongo_t *s, mongoc_collection_t *coll, const char *what,
                                 const char *field, char *const *ids, size_t n, const char *user,
                                 const bson_t *set)
{
    bson_t filter = BSON_INITIALIZER, in;
    if (user)
        BSON_APPEND_UTF8(&filter, "user", user);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, field, &in);
    store_mongo_append_strings(&in, "$in", ids, n);
    bson_append_document_end(&filter, &in);
    bson_t update = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&update, "$set", set);
    bson_error_t e;
    int rc = 0;
    if (!mongoc_collection_update_many(coll, &filter, &update, NULL, NULL, &e)) {
        store_mongo_failed(s, what, &e);
        rc = -1;
    }
    bson_destroy(&update);
    bson_destroy(&filter);
    return rc;
}

static int store_mongo_ack(void *handle, const char *user, char *const *ids, size_t n_ids)
{
    store_mongo_t *s = handle;
    mongoc_client_t *client = store_mongo_pop(s);
    if (!client)
        return STORE_ERR;
    int rc = STORE_OK;
    if (n_ids) {
        mongoc_collection_t *recipients = mongoc_client_get_collection(client, s->db, "recipients");
        bson_t *set = BCON_NEW("acked", BCON_BOOL(true));
        if (store_mongo_update_in(s, recipients, "ack", "msg", ids, n_ids, user, set) != 0)
            rc = STORE_ERR;
        bson_destroy(set);
        mongoc_collection_destroy(recipients);
    }
    mongoc_client_pool_push(s->pool, client);
    return rc;
}

static int store_mongo_mark_dispatched_many(void *handle, char *const *ids, size_t n)
{
    store_mongo_t *s = handle;
    mongoc_client_t *client = store_mongo_pop(s);
    if (!client)
        return STORE_ERR;
    int rc = STORE_OK;
    if (n) {
        mongoc_collection_t *messages = mongoc_client_get_collection(client, s->db, "messages");
        mongoc_collection_t *recipients = mongoc_client_get_collection(client, s->db, "recipients");
        bson_t *set = BCON_NEW("dispatched", BCON_BOOL(true));
        /* Recipients first: a dispatched message never has recipients that
         * the TTL index would keep forever. */
        if (store_mongo_update_in(s, recipients, "mark recipients handed over", "msg", ids, n, NULL,
                                  set) != 0 ||
            store_mongo_update_in(s, messages, "mark handed over", "_id", ids, n, NULL, set) != 0)
            rc = STORE_ERR;
        bson_destroy(set);
        mongoc_collection_destroy(messages);
        mongoc_collection_destroy(recipients);
    }
    mongoc_client_pool_push(s->pool, client);
    return rc;
}

/* --- expiry --------------------------------------------------------------------- */

/* Raise the floor of channel to at least id (channel_floor, store_history). */
static int store_mongo_raise_floor(store_mongo_t *s, mongoc_collection_t *floors,
                                   const char *channel, const char *id)
{
    bson_t *sel = BCON_NEW("_id", BCON_UTF8(channel));
    bson_t *upd = BCON_NEW("$max", "{", "id", BCON_UTF8(id), "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_error_t e;
    int ok = mongoc_collection_update_one(floors, sel, upd, opts, NULL, &e);
    if (!ok)
        store_mongo_failed(s, "channel floor", &e);
    bson_destroy(sel);
    bson_destroy(upd);
    bson_destroy(opts);
    return ok ? 0 : -1;
}

typedef struct store_mongo_expired {
    store_mongo_t *s;
    mongoc_collection_t *floors;
    char **ids;
    size_t n;
    int floor_failed;
} store_mongo_expired_t;

static int store_mongo_expired_one(void *arg, const bson_t *doc)
{
    store_mongo_expired_t *x = arg;
    const char *id = store_mongo_str(doc, "_id"), *channel = store_mongo_str(doc, "channel");
    bson_iter_t it;
    int64_t ttl = bson_iter_init_find(&it, doc, "ttl") ? bson_iter_as_int64(&it) : 0;
    /* one update per expired channel message: $max keeps the newest */
    if (id && channel && ttl > 0 && store_mongo_raise_floor(x->s, x->floors, channel, id) != 0)
        x->floor_failed = 1;
    if (id && (x->ids[x->n] = strdup(id)))
        x->n++;
    return x->n < STORE_MONGO_EXPIRE_CHUNK ? STORE_MONGO_NEXT : STORE_MONGO_STOP;
}

/* Up to STORE_MONGO_EXPIRE_CHUNK ids of expired, handed-over messages into
 * ids (caller frees each); the floor of each channel among them is raised
 * to its newest kept (ttl > 0) one before they are deleted. Returns how
 * many, or -1. */
static long store_mongo_expired_ids(store_mongo_t *s, mongoc_collection_t *messages,
                                    mongoc_collection_t *floors, uint64_t now_ms, char **ids)
{
    bson_t *filter = BCON_NEW("dispatched", BCON_BOOL(true), "expire_at", "{", "$lte",
                              BCON_DATE_TIME((int64_t)now_ms), "}");
    bson_t *opts =
        BCON_NEW("projection", "{", "_id", BCON_INT32(1), "channel", BCON_INT32(1), "ttl",
                 BCON_INT32(1), "}", "limit", BCON_INT64(STORE_MONGO_EXPIRE_CHUNK));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(messages, filter, opts, NULL);
    store_mongo_expired_t x = {s, floors, ids, 0, 0};
    long n;
    /* with a floor not raised, deleting now would lose what it must say */
    if (store_mongo_cursor_each(s, c, "expired lookup", store_mongo_expired_one, &x) == 0 &&
        !x.floor_failed) {
        n = (long)x.n;
    } else {
        for (size_t i = 0; i < x.n; i++)
            free(ids[i]);
        n = -1;
    }
    bson_destroy(filter);
    bson_destroy(opts);
    return n;
}

/* deleteMany {field: {$in: ids}}; returns deletedCount, or -1. */
static long store_mongo_delete_in(store_mongo_t *s, mongoc_collection_t *coll, const char *what,
                                  const char *field, char *const *ids, size_t n)
{
    bson_t filter = BSON_INITIALIZER, in, reply;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, field, &in);
    store_mongo_append_strings(&in, "$in", ids, n);
    bson_append_document_end(&filter, &in);
    bson_error_t e;
    long deleted = -1;
    if (mongoc_collection_delete_many(coll, &filter, NULL, &reply, &e)) {
        bson_iter_t it;
        deleted =
            bson_iter_init_find(&it, &reply, "deletedCount") ? (long)bson_iter_as_int64(&it) : 0;
    } else {
        store_mongo_failed(s, what, &e);
    }
    bson_destroy(&reply);
    bson_destroy(&filter);
    return deleted;
}

/* The TTL indexes do the same within a minute or so; this makes expiry
 * prompt and countable. Recipients go first: a crash in between leaves
 * the message, found again next time. */
static int store_mongo_expire(void *handle, uint64_t now_ms)
{
    store_mongo_t *s = handle;
    mongoc_client_t *client = store_mongo_pop(s);
    if (!client)
        return STORE_ERR;
    mongoc_collection_t *messages = mongoc_client_get_collection(client, s->db, "messages");
    mongoc_collection_t *recipients = mongoc_client_get_collection(client, s->db, "recipients");
    mongoc_collection_t *floors = mongoc_client_get_collection(client, s->db, "channel_floor");
    char **ids = calloc(STORE_MONGO_EXPIRE_CHUNK, sizeof *ids);
    long total = ids ? 0 : -1;
    while (total >= 0) {
        long n = store_mongo_expired_ids(s, messages, floors, now_ms, ids);
        if (n <= 0) {
            total = n < 0 ? -1 : total;
            break;
        }
        long gone = -1;
        if (store_mongo_delete_in(s, recipients, "expire recipients", "msg", ids, (size_t)n) >= 0)
            gone = store_mongo_delete_in(s, messages, "expire messages", "_id", ids, (size_t)n);
        for (long i = 0; i < n; i++)
            free(ids[i]);
        if (gone < 0) {
            total = -1;
            break;
        }
        total += gone;
        if (n < STORE_MONGO_EXPIRE_CHUNK || total > INT32_MAX - STORE_MONGO_EXPIRE_CHUNK)
            break;
    }
    free(ids);
    mongoc_collection_destroy(messages);
    mongoc_collection_destroy(recipients);
    mongoc_collection_destroy(floors);
    mongoc_client_pool_push(s->pool, client);
    return total < 0 ? STORE_ERR : (int)total;
}

/* --- channel history ---------------------------------------------------------------- */

/* 1 if coll has a document matching filter, 0 if not, -1 on error. */
static int store_mongo_exists(store_mongo_t *s, mongoc_collection_t *coll, const bson_t *filter)
{
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(1));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    int found = 0;
    if (store_mongo_cursor_each(s, c, "history lookup", store_mongo_found, &found) != 0)
        found = -1;
    bson_destroy(opts);
    return found;
}

/* The first document's _id, when it is a message id, into f->id; stops. */
static int store_mongo_id_one(void *arg, const bson_t *doc)
{
    store_mongo_first_t *f = arg;
    const char *id = store_mongo_str(doc, "_id");
    if (id && strlen(id) <= IDS_LEN) {
        snprintf(f->id, IDS_LEN + 1, "%s", id);
        f->found = 1;
    }
    return STORE_MONGO_STOP;
}

/* The id of the kept (ttl > 0) message of channel `skip` places below the
 * newest (extra: more conditions), into out. 1 found, 0 none, -1 error. */
static int store_mongo_nth(store_mongo_t *s, mongoc_collection_t *messages, const char *channel,
                           size_t skip, const char *upto, char out[IDS_LEN + 1])
{
    bson_t *filter =
        upto ? BCON_NEW("channel", BCON_UTF8(channel), "ttl", "{", "$gt", BCON_INT64(0), "}",
                        "dispatched", BCON_BOOL(true), "_id", "{", "$lte", BCON_UTF8(upto), "}")
             : BCON_NEW("channel", BCON_UTF8(channel), "ttl", "{", "$gt", BCON_INT64(0), "}");
    bson_t *opts =
        BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "sort", "{", "_id", BCON_INT32(-1),
                 "}", "skip", BCON_INT64((int64_t)skip), "limit", BCON_INT64(1));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(messages, filter, opts, NULL);
    store_mongo_first_t f = {.id = out};
    int found =
        store_mongo_cursor_each(s, c, "channel trim lookup", store_mongo_id_one, &f) ? -1 : f.found;
    bson_destroy(filter);
    bson_destroy(opts);
    return found;
}

/* As store_sqlite_trim_channel: the edge (`keep` below the newest), the
 * newest handed-over one at or below it raises the floor, then those go. */
static int store_mongo_trim_channel(void *handle, const char *channel, size_t keep)
{
    store_mongo_t *s = handle;
    mongoc_client_t *client = store_mongo_pop(s);
    if (!client)
        return STORE_ERR;
    mongoc_collection_t *messages = mongoc_client_get_collection(client, s->db, "messages");
    mongoc_collection_t *floors = mongoc_client_get_collection(client, s->db, "channel_floor");
    char edge[IDS_LEN + 1], top[IDS_LEN + 1];
    long n = 0;
    int found = store_mongo_nth(s, messages, channel, keep, NULL, edge);
    if (found == 1)
        found = store_mongo_nth(s, messages, channel, 0, edge, top);
    if (found < 0) {
        n = -1;
    } else if (found == 1) {
        n = store_mongo_raise_floor(s, floors, channel, top);
        if (n == 0) {
            bson_t *filter =
                BCON_NEW("channel", BCON_UTF8(channel), "ttl", "{", "$gt", BCON_INT64(0), "}",
                         "dispatched", BCON_BOOL(true), "_id", "{", "$lte", BCON_UTF8(edge), "}");
            bson_t reply;
            bson_error_t e;
            if (mongoc_collection_delete_many(messages, filter, NULL, &reply, &e)) {
                bson_iter_t it;
                n = bson_iter_init_find(&it, &reply, "deletedCount") ? (long)bson_iter_as_int64(&it)
                                                                     : 0;
            } else {
                store_mongo_failed(s, "channel trim", &e);
                n = -1;
            }
            bson_destroy(&reply);
            bson_destroy(filter);
        }
    }
    mongoc_collection_destroy(messages);
    mongoc_collection_destroy(floors);
    mongoc_client_pool_push(s->pool, client);
    return n < 0 ? STORE_ERR : (int)n;
}

/* As store_sqlite_history: the newest keep + 1 after since, newest first
 * (one more than keep: some are beyond the bound), then expired ones still
 * there, then the floor. Documents that MongoDB's TTL monitor deleted
 * before store_expire saw them raise no floor (docs/ARCHITECTURE.md). */
static int store_mongo_history(void *handle, const char *channel, const char *since,
                               uint64_t now_ms, size_t keep, store_msg_fn fn, void *arg,
                               int *recovered)
{
    store_mongo_t *s = handle;
    *recovered = 1;
    mongoc_client_t *client = store_mongo_pop(s);
    if (!client)
        return STORE_ERR;
    mongoc_collection_t *messages = mongoc_client_get_collection(client, s->db, "messages");
    mongoc_collection_t *floors = mongoc_client_get_collection(client, s->db, "channel_floor");
    store_rows_t rs = {0};
    bson_t *filter = BCON_NEW("channel", BCON_UTF8(channel), "_id", "{", "$gt", BCON_UTF8(since),
                              "}", "ttl", "{", "$gt", BCON_INT64(0), "}", "expire_at", "{", "$gt",
                              BCON_DATE_TIME((int64_t)now_ms), "}");
    bson_t *opts =
        BCON_NEW("sort", "{", "_id", BCON_INT32(-1), "}", "limit", BCON_INT64((int64_t)keep + 1));
    mongoc_cursor_t *c = mongoc_collection_find_with_opts(messages, filter, opts, NULL);
    int rc = store_mongo_cursor_each(s, c, "history", store_mongo_add_row, &rs);
    bson_destroy(filter);
    bson_destroy(opts);
    if (rc == 0 && since[0]) {
        int gone = rs.n > keep;
        if (!gone) {
            bson_t *f = BCON_NEW("channel", BCON_UTF8(channel), "_id", "{", "$gt", BCON_UTF8(since),
                                 "}", "ttl", "{", "$gt", BCON_INT64(0), "}", "expire_at", "{",
                                 "$lte", BCON_DATE_TIME((int64_t)now_ms), "}");
            gone = store_mongo_exists(s, messages, f);
            bson_destroy(f);
        }
        if (gone == 0) {
            bson_t *f =
                BCON_NEW("_id", BCON_UTF8(channel), "id", "{", "$gt", BCON_UTF8(since), "}");
            gone = store_mongo_exists(s, floors, f);
            bson_destroy(f);
        }
        if (gone < 0)
            rc = -1;
        *recovered = gone == 0;
    }
    mongoc_collection_destroy(messages);
    mongoc_collection_destroy(floors);
    mongoc_client_pool_push(s->pool, client);
    int n = 0;
    size_t top = rs.n > keep ? keep : rs.n;
    for (size_t i = top; rc == 0 && i > 0; i--, n++)
        fn(arg, &rs.rows[i - 1].m, NULL, 0);
    store_rows_free(&rs);
    return rc == 0 ? n : STORE_ERR;
}

static int store_mongo_healthy(void *handle)
{
    store_mongo_t *s = handle;
    return atomic_load(&s->healthy);
}

const store_ops_t store_mongo_ops = {
    .name = "mongodb",
    .put_batch = store_mongo_put_batch,
    .mark_dispatched_many = store_mongo_mark_dispatched_many,
    .pending = store_mongo_pending,
    .ack = store_mongo_ack,
    .undispatched = store_mongo_undispatched,
    .expire = store_mongo_expire,
    .history = store_mongo_history,
    .trim_channel = store_mongo_trim_channel,
    .healthy = store_mongo_healthy,
    .close = store_mongo_close,
};
