/*
 * store_sqlite: the embedded store backend (sqlite:PATH).
 *
 * WAL mode with synchronous=FULL: a transaction is on disk (WAL fsynced)
 * before store_put returns, which is what lets the collector reply "stored".
 * One connection guarded by a mutex; statements prepared once.
 *
 *   messages(id PK, topic, data, content_type, accepted_ms, ttl, expires_ms,
 *            idem_key (unique where set), broadcast)
 *   recipients(user, msg_id, acked, PK(user, msg_id))
 *   undispatched(id PK)   messages not yet handed to the dispatcher
 *   messages.channel      (version 3) the channel of a channel message, else NULL;
 *                         indexed (channel, id) where set: the history
 *   channel_floor(channel PK, id)  per channel, the newest message with ttl > 0
 *                         that expiry deleted: a `since` below it cannot be
 *                         recovered (store_history)
 * A ttl-0 message keeps its recipients inline (messages.rcpt) instead: it
 * is never pending nor acked.
 * A message row is written once and never updated: handing it over deletes
 * its narrow undispatched row (cheaper than rewriting the message row and
 * a partial index), and messages without an idempotency key have no entry
 * in the idempotency index. Schema version 2 (PRAGMA user_version); a
 * version-1 database (a dispatched column, idem_key UNIQUE) is migrated in
 * one transaction when opened.
 * Expiry: expires_ms = accepted_ms + ttl*1000; a ttl 0 message expires at
 * once but is kept until it was handed to the dispatcher.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_backend.h"
#include "strmap.h"

struct store_sqlite {
    sqlite3 *db;
    pthread_mutex_t lock;
    sqlite3_stmt *begin, *commit, *rollback, *find_idem, *ins_msg, *ins_rcpt, *pending, *ack,
        *undispatched, *rcpts_of, *ins_undispatched, *mark, *sync_normal, *sync_full, *expire_rcpts,
        *expire_msgs, *expire_floor, *history, *history_gone, *history_floor, *trim_edge,
        *trim_floor, *trim_msgs;
    int healthy;
};

/* Expired messages that were handed over, oldest expiry first, at most ?2:
 * store_sqlite_expire deletes them a chunk at a time. */
#define STORE_EXPIRED_IDS                                                                          \
    "SELECT id FROM messages m WHERE m.expires_ms <= ?1 AND NOT EXISTS"                            \
    " (SELECT 1 FROM undispatched u WHERE u.id = m.id) ORDER BY m.expires_ms, m.id LIMIT ?2"
#define STORE_EXPIRE_CHUNK 500

static const char *store_schema = "PRAGMA journal_mode=WAL;"
                                  "PRAGMA synchronous=FULL;"
                                  "PRAGMA busy_timeout=5000;"
                                  "PRAGMA cache_size=-65536;";

/* Schema version 2. Run inside a transaction, on a new database or after
 * a version-1 messages table was renamed away (store_sqlite_migrate). */
static const char *store_schema_v2 =
    "CREATE TABLE IF NOT EXISTS messages("
    " id TEXT PRIMARY KEY, topic TEXT NOT NULL, data BLOB NOT NULL, content_type TEXT NOT NULL,"
    " accepted_ms INTEGER NOT NULL, ttl INTEGER NOT NULL, expires_ms INTEGER NOT NULL,"
    " idem_key TEXT, broadcast INTEGER NOT NULL, rcpt BLOB) WITHOUT ROWID;"
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_idem ON messages(idem_key)"
    " WHERE idem_key IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages(expires_ms);"
    "CREATE TABLE IF NOT EXISTS undispatched(id TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS recipients("
    " user TEXT NOT NULL, msg_id TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(user, msg_id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS recipients_by_msg ON recipients(msg_id);"
    "PRAGMA user_version=2;";

/* Version 3: channels. Run inside the same transaction as the steps before. */
static const char *store_schema_v3 =
    "ALTER TABLE messages ADD COLUMN channel TEXT;"
    "CREATE INDEX IF NOT EXISTS messages_by_channel ON messages(channel, id)"
    " WHERE channel IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS channel_floor(channel TEXT PRIMARY KEY, id TEXT NOT NULL)"
    " WITHOUT ROWID;"
    "PRAGMA user_version=3;";

/* From version 1 (messages.dispatched, idem_key UNIQUE): the same rows,
 * the undispatched ones listed in their own table. */
static const char *store_migrate_v1 = "ALTER TABLE messages RENAME TO messages_v1;"
                                      "DROP INDEX IF EXISTS messages_undispatched;"
                                      "DROP INDEX IF EXISTS messages_by_expiry;";
static const char *store_migrate_v1_copy =
    "INSERT INTO messages(id, topic, data, content_type, accepted_ms, ttl, expires_ms, idem_key,"
    " broadcast) SELECT id, topic, data, content_type, accepted_ms, ttl, expires_ms,"
    " idem_key, broadcast FROM messages_v1;"
    "INSERT INTO undispatched SELECT id FROM messages_v1 WHERE dispatched = 0;"
    "DROP TABLE messages_v1;";

static int store_sqlite_exec(store_sqlite_t *s, const char *sql, char *err, size_t err_size,
                             const char *path)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    snprintf(err, err_size, "cannot set up %s: %s", path, msg ? msg : "?");
    sqlite3_free(msg);
    return -1;
}

/* Bring the schema to version 3, in one transaction. */
static int store_sqlite_migrate(store_sqlite_t *s, const char *path, char *err, size_t err_size)
{
    sqlite3_stmt *st = NULL;
    int version = -1, v1 = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0) {
        snprintf(err, err_size, "cannot read the schema version of %s: %s", path,
                 sqlite3_errmsg(s->db));
        return -1;
    }
    if (version == 3)
        return 0;
    if (version == 2) {
        if (store_sqlite_exec(s, "BEGIN IMMEDIATE", err, err_size, path))
            return -1;
        if (store_sqlite_exec(s, store_schema_v3, err, err_size, path) ||
            store_sqlite_exec(s, "COMMIT", err, err_size, path)) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        LOG_I("store: %s migrated to schema version 3", path);
        return 0;
    }
    if (version != 0) {
        snprintf(err, err_size, "%s has schema version %d; this collector knows 1 to 3", path,
                 version);
        return -1;
    }
    st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT 1 FROM pragma_table_info('messages')"
                           " WHERE name = 'dispatched'",
                           -1, &st, NULL) == SQLITE_OK)
        v1 = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (store_sqlite_exec(s, "BEGIN IMMEDIATE", err, err_size, path))
        return -1;
    if ((v1 && store_sqlite_exec(s, store_migrate_v1, err, err_size, path)) ||
        store_sqlite_exec(s, store_schema_v2, err, err_size, path) ||
        (v1 && store_sqlite_exec(s, store_migrate_v1_copy, err, err_size, path)) ||
        store_sqlite_exec(s, store_schema_v3, err, err_size, path) ||
        store_sqlite_exec(s, "COMMIT", err, err_size, path)) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (v1)
        LOG_I("store: %s migrated to schema version 3", path);
    return 0;
}

static void store_sqlite_close(void *handle);

#define STORE_MSG_COLS                                                                             \
    "m.id, m.topic, m.data, m.content_type, m.accepted_ms, m.ttl, m.broadcast, m.channel"

static int prep(store_sqlite_t *s, sqlite3_stmt **st, const char *sql)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        LOG_E("store: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

store_sqlite_t *store_sqlite_open(const char *path, char *err, size_t err_size)
{
    store_sqlite_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    char *msg = NULL;
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, err_size, "cannot open sqlite database %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (sqlite3_exec(s->db, store_schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_size, "cannot set up %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        goto fail;
    }
    if (store_sqlite_migrate(s, path, err, err_size))
        goto fail;
    if (prep(s, &s->begin, "BEGIN IMMEDIATE") || prep(s, &s->commit, "COMMIT") ||
        prep(s, &s->rollback, "ROLLBACK") ||
        prep(s, &s->find_idem, "SELECT id FROM messages WHERE idem_key = ?1") ||
        prep(s, &s->ins_msg,
             "INSERT INTO messages(id, topic, data, content_type, accepted_ms, ttl, expires_ms,"
             " idem_key, broadcast, rcpt, channel)"
             " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)") ||
        prep(s, &s->ins_rcpt, "INSERT OR IGNORE INTO recipients(user, msg_id) VALUES(?1, ?2)") ||
        prep(s, &s->pending,
             "SELECT " STORE_MSG_COLS " FROM recipients r JOIN messages m ON m.id = r.msg_id"
             " WHERE r.user = ?1 AND r.msg_id > ?4 AND r.acked = 0 AND m.ttl > 0"
             " AND m.expires_ms > ?2 ORDER BY m.id LIMIT ?3") ||
        prep(s, &s->ack, "UPDATE recipients SET acked = 1 WHERE user = ?1 AND msg_id = ?2") ||
        prep(s, &s->undispatched,
             "SELECT " STORE_MSG_COLS ", m.rcpt FROM undispatched u JOIN messages m ON m.id = u.id"
             " WHERE m.accepted_ms < ?1 ORDER BY u.id LIMIT ?2") ||
        prep(s, &s->rcpts_of, "SELECT user FROM recipients WHERE msg_id = ?1") ||
        prep(s, &s->ins_undispatched, "INSERT INTO undispatched(id) VALUES(?1)") ||
        prep(s, &s->mark, "DELETE FROM undispatched WHERE id = ?1") ||
        prep(s, &s->sync_normal, "PRAGMA synchronous=NORMAL") ||
        prep(s, &s->sync_full, "PRAGMA synchronous=FULL") ||
        prep(s, &s->expire_rcpts,
             "DELETE FROM recipients WHERE msg_id IN (" STORE_EXPIRED_IDS ")") ||
        prep(s, &s->expire_msgs, "DELETE FROM messages WHERE id IN (" STORE_EXPIRED_IDS ")") ||
        prep(s, &s->expire_floor,
             "INSERT INTO channel_floor(channel, id) SELECT channel, MAX(id) FROM messages"
             " WHERE id IN (" STORE_EXPIRED_IDS ") AND channel IS NOT NULL AND ttl > 0"
             " GROUP BY channel ON CONFLICT(channel) DO UPDATE SET id = MAX(id, excluded.id)") ||
        prep(s, &s->history,
             "SELECT " STORE_MSG_COLS " FROM messages m WHERE m.channel = ?1 AND m.id > ?2"
             " AND m.ttl > 0 AND m.expires_ms > ?3 ORDER BY m.id DESC LIMIT ?4") ||
        prep(s, &s->history_gone,
             "SELECT 1 FROM messages WHERE channel = ?1 AND id > ?2 AND ttl > 0"
             " AND expires_ms <= ?3 LIMIT 1") ||
        prep(s, &s->history_floor, "SELECT 1 FROM channel_floor WHERE channel = ?1 AND id > ?2") ||
        prep(s, &s->trim_edge,
             "SELECT id FROM messages WHERE channel = ?1 AND ttl > 0 ORDER BY id DESC"
             " LIMIT 1 OFFSET ?2") ||
        prep(s, &s->trim_floor,
             "INSERT INTO channel_floor(channel, id) SELECT channel, MAX(id) FROM messages m"
             " WHERE channel = ?1 AND ttl > 0 AND id <= ?2 AND NOT EXISTS"
             " (SELECT 1 FROM undispatched u WHERE u.id = m.id) GROUP BY channel"
             " ON CONFLICT(channel) DO UPDATE SET id = MAX(id, excluded.id)") ||
        prep(s, &s->trim_msgs,
             "DELETE FROM messages WHERE channel = ?1 AND ttl > 0 AND id <= ?2 AND NOT EXISTS"
             " (SELECT 1 FROM undispatched u WHERE u.id = messages.id)")) {
        snprintf(err, err_size, "cannot prepare statements on %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    s->healthy = 1;
    return s;
fail:
    store_sqlite_close(s);
    return NULL;
}

static int step_done(store_sqlite_t *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        LOG_E("store: %s failed: %s", sqlite3_sql(st), sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

/* to[0..n) without repeats, each NUL-terminated, in one malloc'd buffer. */
static int store_sqlite_join(char *const *to, size_t n, char **out, size_t *len)
{
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        cap += strlen(to[i]) + 1;
    char *buf = malloc(cap);
    strmap_t *seen = n > 1 ? strmap_new() : NULL;
    if (!buf || (n > 1 && !seen)) {
        free(buf);
        strmap_free(seen);
        return -1;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (seen) {
            if (strmap_get(seen, to[i]))
                continue;
            strmap_put(seen, to[i], buf);
        }
        size_t l = strlen(to[i]) + 1;
        memcpy(buf + at, to[i], l);
        at += l;
    }
    strmap_free(seen);
    *out = buf;
    *len = at;
    return 0;
}

/* Insert one message and its recipients inside the open transaction.
 * Returns STORE_OK, STORE_DUPLICATE (existing_id filled) or STORE_ERR. */
static int store_sqlite_put_one(store_sqlite_t *s, const store_msg_t *m, char *const *to,
                                size_t n_to, const char *idem, char existing_id[IDS_LEN + 1])
{
    if (idem) {
        sqlite3_bind_text(s->find_idem, 1, idem, -1, SQLITE_STATIC);
        int found = sqlite3_step(s->find_idem) == SQLITE_ROW;
        if (found)
            snprintf(existing_id, IDS_LEN + 1, "%s",
                     (const char *)sqlite3_column_text(s->find_idem, 0));
        sqlite3_reset(s->find_idem);
        if (found)
            return STORE_DUPLICATE;
    }
    sqlite3_stmt *st = s->ins_msg;
    sqlite3_bind_text(st, 1, m->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->topic, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, m->data, (int)m->data_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, m->content_type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)m->accepted_ms);
    sqlite3_bind_int64(st, 6, m->ttl);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)(m->accepted_ms + (uint64_t)m->ttl * 1000u));
    if (idem)
        sqlite3_bind_text(st, 8, idem, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_int(st, 9, m->broadcast);
    /* A live-only message is never pending and never acked: its recipients
     * are needed only to hand it over, so they go inline (user ids, each
     * NUL-terminated) rather than into recipients, a B-tree by user whose
     * random pages made every commit write a page per message. */
    char *inline_to = NULL;
    size_t inline_len = 0;
    if (m->ttl == 0 && n_to && store_sqlite_join(to, n_to, &inline_to, &inline_len) != 0)
        return STORE_ERR;
    if (inline_to)
        sqlite3_bind_blob(st, 10, inline_to, (int)inline_len, free);
    else
        sqlite3_bind_null(st, 10);
    if (m->channel)
        sqlite3_bind_text(st, 11, m->channel, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 11);
    if (step_done(s, st))
        return STORE_ERR;
    sqlite3_bind_text(s->ins_undispatched, 1, m->id, -1, SQLITE_STATIC);
    if (step_done(s, s->ins_undispatched))
        return STORE_ERR;
    for (size_t i = 0; !inline_to && i < n_to; i++) {
        sqlite3_bind_text(s->ins_rcpt, 1, to[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(s->ins_rcpt, 2, m->id, -1, SQLITE_STATIC);
        if (step_done(s, s->ins_rcpt))
            return STORE_ERR;
    }
    return STORE_OK;
}

static int store_sqlite_put_batch(void *handle, store_put_item_t *items, size_t n)
{
    store_sqlite_t *s = handle;
    int rc = STORE_ERR;
    pthread_mutex_lock(&s->lock);
    if (step_done(s, s->begin))
        goto out;
    for (size_t i = 0; i < n; i++) {
        items[i].result = store_sqlite_put_one(s, items[i].m, items[i].to, items[i].n_to,
                                               items[i].idem, items[i].existing_id);
        if (items[i].result == STORE_ERR) {
            step_done(s, s->rollback);
            goto out;
        }
    }
    if (step_done(s, s->commit)) {
        step_done(s, s->rollback);
        goto out;
    }
    rc = STORE_OK;
out:
    s->healthy = rc == STORE_OK;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static char *store_col_text(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return strdup(t ? t : "");
}

/* Copy the current row of st (STORE_MSG_COLS) to the end of rs (rows
 * copied out: store_backend.h). Returns the row, or NULL on allocation
 * failure. */
static store_row_t *store_rows_add(store_rows_t *rs, sqlite3_stmt *st)
{
    store_row_t *r = store_rows_push(rs);
    if (!r)
        return NULL;
    const char *id = (const char *)sqlite3_column_text(st, 0);
    snprintf(r->m.id, sizeof r->m.id, "%s", id ? id : "");
    r->topic = store_col_text(st, 1);
    const void *blob = sqlite3_column_blob(st, 2);
    r->m.data_len = (size_t)sqlite3_column_bytes(st, 2);
    r->data = malloc(r->m.data_len ? r->m.data_len : 1);
    if (r->data && r->m.data_len)
        memcpy(r->data, blob, r->m.data_len);
    r->content_type = store_col_text(st, 3);
    r->m.accepted_ms = (uint64_t)sqlite3_column_int64(st, 4);
    r->m.ttl = (uint32_t)sqlite3_column_int64(st, 5);
    r->m.broadcast = sqlite3_column_int(st, 6);
    if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
        r->channel = store_col_text(st, 7);
        r->m.channel = r->channel;
    }
    r->m.topic = r->topic;
    r->m.data = r->data;
    r->m.content_type = r->content_type;
    if (!r->topic || !r->data || !r->content_type)
        return NULL; /* counted in rs->n so that store_rows_free frees it */
    return r;
}

/* Copy the recipients of message id into r. Returns 0, or -1 on failure. */
static int store_rows_add_recipients(store_sqlite_t *s, store_row_t *r)
{
    int rc;
    sqlite3_bind_text(s->rcpts_of, 1, r->m.id, -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(s->rcpts_of)) == SQLITE_ROW) {
        const char *user = (const char *)sqlite3_column_text(s->rcpts_of, 0);
        if (store_row_add_user(r, user ? user : "") != 0)
            break;
    }
    sqlite3_reset(s->rcpts_of);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Split an inline recipient list (store_sqlite_join) into r. */
static int store_rows_split_recipients(store_row_t *r, const char *blob, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += blob[i] == '\0';
    if (!(r->to = calloc(n ? n : 1, sizeof *r->to)))
        return -1;
    r->cap_to = n ? n : 1;
    for (size_t at = 0; at < len && r->n_to < n;) {
        size_t l = strnlen(blob + at, len - at);
        if (!(r->to[r->n_to] = strndup(blob + at, l)))
            return -1;
        r->n_to++;
        at += l + 1;
    }
    return 0;
}

static int store_sqlite_pending(void *handle, const char *user, const char *after, uint64_t now_ms,
                                size_t limit, store_msg_fn fn, void *arg)
{
    store_sqlite_t *s = handle;
    store_rows_t rs = {0};
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->pending;
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)now_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    sqlite3_bind_text(st, 4, after, -1, SQLITE_STATIC);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (!store_rows_add(&rs, st))
            break;
    if (rc != SQLITE_DONE) {
        LOG_E("store: pending messages of %s: %s", user,
              rc == SQLITE_ROW ? "out of memory" : sqlite3_errmsg(s->db));
        n = STORE_ERR;
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; n != STORE_ERR && i < rs.n; i++, n++)
        fn(arg, &rs.rows[i].m, NULL, 0);
    store_rows_free(&rs);
    return n;
}

static int store_sqlite_ack(void *handle, const char *user, char *const *ids, size_t n_ids)
{
    store_sqlite_t *s = handle;
    int rc = STORE_OK;
    pthread_mutex_lock(&s->lock);
    if (step_done(s, s->begin)) {
        rc = STORE_ERR;
        goto out;
    }
    for (size_t i = 0; i < n_ids && rc == STORE_OK; i++) {
        sqlite3_bind_text(s->ack, 1, user, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->ack, 2, ids[i], -1, SQLITE_STATIC);
        if (step_done(s, s->ack))
            rc = STORE_ERR;
    }
    if (rc != STORE_OK || step_done(s, s->commit)) {
        step_done(s, s->rollback);
        rc = STORE_ERR;
    }
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int store_sqlite_undispatched(void *handle, uint64_t before_ms, size_t limit,
                                     store_msg_fn fn, void *arg)
{
    store_sqlite_t *s = handle;
    store_rows_t rs = {0};
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->undispatched;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)before_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_row_t *r = store_rows_add(&rs, st);
        const char *blob = r ? sqlite3_column_blob(st, 8) : NULL;
        if (!r || (blob ? store_rows_split_recipients(r, blob, (size_t)sqlite3_column_bytes(st, 8))
                        : store_rows_add_recipients(s, r)) != 0)
            break;
    }
    if (rc != SQLITE_DONE) {
        LOG_E("store: messages not yet handed over: %s",
              rc == SQLITE_ROW ? "out of memory or recipients unreadable" : sqlite3_errmsg(s->db));
        n = STORE_ERR;
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; n != STORE_ERR && i < rs.n; i++, n++)
        fn(arg, &rs.rows[i].m, rs.rows[i].to, rs.rows[i].n_to);
    store_rows_free(&rs);
    return n;
}

/* Marks commit without an fsync of their own (synchronous=NORMAL for that
 * transaction; the next stored batch's fsync covers them): a mark lost to a
 * power cut only makes the retry loop hand the message over again, which
 * the stream's duplicate window or the client's ids absorb. */
static int store_sqlite_mark_dispatched_many(void *handle, char *const *ids, size_t n)
{
    store_sqlite_t *s = handle;
    int rc = STORE_ERR;
    pthread_mutex_lock(&s->lock);
    step_done(s, s->sync_normal);
    if (step_done(s, s->begin))
        goto out;
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(s->mark, 1, ids[i], -1, SQLITE_STATIC);
        if (step_done(s, s->mark)) {
            step_done(s, s->rollback);
            goto out;
        }
    }
    rc = step_done(s, s->commit) ? STORE_ERR : STORE_OK;
    if (rc != STORE_OK)
        step_done(s, s->rollback);
out:
    step_done(s, s->sync_full);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* In chunks of STORE_EXPIRE_CHUNK messages, one transaction each (a few
 * milliseconds), letting the writer in between: a minute of ttl-0 messages at 10,000/s deleted in
 * one transaction held the store for almost 2 s. */
static int store_sqlite_expire(void *handle, uint64_t now_ms)
{
    store_sqlite_t *s = handle;
    int total = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        int n = STORE_ERR;
        if (step_done(s, s->begin))
            goto out;
        /* the floor first: it needs the rows that the deletes remove */
        for (int i = 0; i < 3; i++) {
            sqlite3_stmt *st = i == 0 ? s->expire_floor : i == 1 ? s->expire_rcpts : s->expire_msgs;
            sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
            sqlite3_bind_int64(st, 2, STORE_EXPIRE_CHUNK);
            if (step_done(s, st)) {
                step_done(s, s->rollback);
                goto out;
            }
        }
        n = sqlite3_changes(s->db); /* the messages deleted */
        if (step_done(s, s->commit)) {
            step_done(s, s->rollback);
            n = STORE_ERR;
        }
    out:
        pthread_mutex_unlock(&s->lock);
        if (n == STORE_ERR)
            return total ? total : STORE_ERR;
        total += n;
        if (n < STORE_EXPIRE_CHUNK)
            return total;
        usleep(1000); /* the writer's turn */
    }
}

/* The newest `keep` stay; the one `keep` places below the newest and
 * everything older go (once handed over), the floor raised first. One
 * transaction: the index walk to the edge is `keep` entries, done at most
 * once per STORE_TRIM_EVERY(keep) kept messages of the channel. */
static int store_sqlite_trim_channel(void *handle, const char *channel, size_t keep)
{
    store_sqlite_t *s = handle;
    int n = STORE_ERR;
    char edge[IDS_LEN + 1] = "";
    pthread_mutex_lock(&s->lock);
    if (step_done(s, s->begin))
        goto out;
    sqlite3_bind_text(s->trim_edge, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->trim_edge, 2, (sqlite3_int64)keep);
    int rc = sqlite3_step(s->trim_edge);
    if (rc == SQLITE_ROW)
        snprintf(edge, sizeof edge, "%s", (const char *)sqlite3_column_text(s->trim_edge, 0));
    sqlite3_reset(s->trim_edge);
    n = 0;
    if (rc == SQLITE_ROW) {
        for (int i = 0; i < 2 && n >= 0; i++) {
            sqlite3_stmt *st = i == 0 ? s->trim_floor : s->trim_msgs;
            sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, edge, -1, SQLITE_STATIC);
            if (step_done(s, st))
                n = STORE_ERR;
            else if (i == 1)
                n = sqlite3_changes(s->db);
        }
    } else if (rc != SQLITE_DONE) {
        LOG_E("store: trimming channel %s: %s", channel, sqlite3_errmsg(s->db));
        n = STORE_ERR;
    }
    if (n < 0 || step_done(s, s->commit)) {
        step_done(s, s->rollback);
        n = STORE_ERR;
    }
out:
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* A single-row query with ?1 channel, ?2 since and optionally ?3 now:
 * 1 if it found a row, 0 if not, -1 on error. */
static int store_sqlite_exists(store_sqlite_t *s, sqlite3_stmt *st, const char *channel,
                               const char *since, uint64_t now_ms)
{
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, since, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(st) >= 3)
        sqlite3_bind_int64(st, 3, (sqlite3_int64)now_ms);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    LOG_E("store: history of %s: %s", channel, sqlite3_errmsg(s->db));
    return -1;
}

/* The newest keep + 1 kept messages after since, newest first: one more
 * than keep means some were beyond the bound. Expired ones not yet deleted
 * and the floor (expired and deleted) say the rest. */
static int store_sqlite_history(void *handle, const char *channel, const char *since,
                                uint64_t now_ms, size_t keep, store_msg_fn fn, void *arg,
                                int *recovered)
{
    store_sqlite_t *s = handle;
    store_rows_t rs = {0};
    *recovered = 1;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->history;
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, since, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)now_ms);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)keep + 1);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (!store_rows_add(&rs, st))
            break;
    if (rc != SQLITE_DONE) {
        LOG_E("store: history of %s: %s", channel,
              rc == SQLITE_ROW ? "out of memory" : sqlite3_errmsg(s->db));
        n = STORE_ERR;
    }
    sqlite3_reset(st);
    if (n != STORE_ERR && since[0]) {
        int gone = rs.n > keep;
        if (!gone)
            gone = store_sqlite_exists(s, s->history_gone, channel, since, now_ms);
        if (gone == 0)
            gone = store_sqlite_exists(s, s->history_floor, channel, since, now_ms);
        if (gone < 0)
            n = STORE_ERR;
        *recovered = gone == 0;
    }
    pthread_mutex_unlock(&s->lock);
    size_t top = rs.n > keep ? keep : rs.n; /* a row past keep is the oldest: beyond the bound */
    for (size_t i = top; n != STORE_ERR && i > 0; i--, n++)
        fn(arg, &rs.rows[i - 1].m, NULL, 0);
    store_rows_free(&rs);
    return n;
}

static int store_sqlite_healthy(void *handle)
{
    store_sqlite_t *s = handle;
    return s->healthy;
}

static void store_sqlite_close(void *handle)
{
    store_sqlite_t *s = handle;
    if (!s)
        return;
    sqlite3_stmt **all[] = {
        &s->begin,     &s->commit,       &s->rollback,    &s->find_idem,        &s->ins_msg,
        &s->ins_rcpt,  &s->pending,      &s->ack,         &s->undispatched,     &s->rcpts_of,
        &s->mark,      &s->expire_rcpts, &s->expire_msgs, &s->ins_undispatched, &s->sync_normal,
        &s->sync_full, &s->expire_floor, &s->history,     &s->history_gone,     &s->history_floor,
        &s->trim_edge, &s->trim_floor,   &s->trim_msgs};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(*all[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const store_ops_t store_sqlite_ops = {
    .name = "sqlite",
    .put_batch = store_sqlite_put_batch,
    .mark_dispatched_many = store_sqlite_mark_dispatched_many,
    .pending = store_sqlite_pending,
    .ack = store_sqlite_ack,
    .undispatched = store_sqlite_undispatched,
    .expire = store_sqlite_expire,
    .history = store_sqlite_history,
    .trim_channel = store_sqlite_trim_channel,
    .healthy = store_sqlite_healthy,
    .close = store_sqlite_close,
};
