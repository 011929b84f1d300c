/*
 * store_sqlite: the embedded store backend (sqlite:PATH).
 *
 * WAL mode with synchronous=FULL: a transaction is on disk (WAL fsynced)
 * before store_put returns, which is what lets the collector reply "stored".
 * One connection guarded by a mutex; statements prepared once.
 *
 * PATH (schema version 4, PRAGMA user_version):
 *   messages(id PK, topic, data, content_type, accepted_ms, ttl, expires_ms,
 *            idem_key (unique where set), broadcast, rcpt, channel)
 *   undispatched(id PK)   messages not yet handed to the dispatcher
 *   unindexed(id PK)      messages with ttl > 0 not yet in the per-user index
 *   tail_acks(msg_id, user)  acks of those
 *   messages.channel      the channel of a channel message, else NULL;
 *                         indexed (channel, id) where set: the history
 *   channel_floor(channel PK, id)  per channel, the newest message with ttl > 0
 *                         that expiry deleted: a `since` below it cannot be
 *                         recovered (store_history)
 * PATH.index, the per-user index, a database of its own (attached as "ix"
 * to the main connection, for reads; written through a second connection):
 *   recipients(user, msg_id, acked, PK(user, msg_id))
 *
 * Recipients. Every message keeps its recipients inline (messages.rcpt:
 * user ids, each NUL-terminated), which is all the hand-over and expiry
 * need, and all a ttl-0 message has (it is never pending nor acked). One
 * with ttl > 0 must also be found by user (pending) and acked. A per-user
 * B-tree puts each message on a random page: written in the commit, it
 * more than doubled the bytes every commit wrote and fsynced, and halved
 * the store's rate (docs/BENCHMARKS.md, issue 13). So the commit only lists
 * the message in `unindexed` (an append, like undispatched), and the
 * indexer (store_index, from the expiry thread every second) moves
 * messages older than STORE_INDEX_AFTER_MS into the index: one transaction
 * of the index's database per round, sorted by user, without an fsync of
 * its own, while the writer goes on committing into PATH. Until then:
 *   - pending finds them through `recent` (recent.h: user -> ids, in
 *     memory, rebuilt from `unindexed` on open);
 *   - an ack goes to tail_acks, an append too, and the indexer writes no
 *     row for an acked pair: a message acked within STORE_INDEX_AFTER_MS
 *     never touches the per-user B-tree;
 *   - expiry waits for the indexer.
 * A row of the index for a message still in `unindexed` (the indexer
 * stopped half-way) is the truth for that pair: pending reads such a pair
 * from the index only. The index is derived from PATH but for its acks: a
 * missing PATH.index is built again from the inline lists (those acks
 * lost: delivered again). Locks: ix_lock (the index's connection, and
 * every round, ack and expiry from start to end) before lock (the main
 * connection), never the other way. The background jobs (the indexer,
 * expiry, channel trims) take lock only when no one else wants it
 * (store_lock_bg).
 *
 * A message row is written once and never updated: handing it over deletes
 * its narrow undispatched row (cheaper than rewriting the message row and
 * a partial index), and messages without an idempotency key have no entry
 * in the idempotency index. Older databases (versions 1 to 3) are migrated
 * when opened.
 * Expiry: expires_ms = accepted_ms + ttl*1000; a ttl 0 message expires at
 * once but is kept until it was handed to the dispatcher.
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "recent.h"
#include "store_backend.h"
#include "strmap.h"

struct store_sqlite {
    sqlite3 *db;
    pthread_mutex_t lock;
    /* store_lock's: how many hold or wait for lock, not counting the
     * background; how many background threads wait in store_lock_bg (on
     * bg_room, under bg_lock) */
    atomic_int wanted, bg_waiting;
    atomic_uint fg_served; /* times store_lock took lock */
    /* set by a background thread whose turn it is: store_lock waits on
     * fg_room until it has the lock */
    atomic_int bg_turn;
    pthread_mutex_t bg_lock;
    pthread_cond_t bg_room, fg_room; /* CLOCK_MONOTONIC */
    sqlite3_stmt *begin, *commit, *rollback, *find_idem, *ins_msg, *pending, *undispatched,
        *ins_undispatched, *mark, *sync_normal, *sync_full, *expired_rcpts, *expire_msgs,
        *expire_floor, *history, *history_gone, *history_floor, *trim_edge, *trim_floor, *trim_msgs,
        *ins_unindexed, *index_due, *unindex, *drop_tail_acks, *ack_tail, *pending_one,
        *pending_scan, *all_unindexed;
    /* the per-user index: a database of its own (see the top) */
    sqlite3 *ixdb;
    pthread_mutex_t ix_lock; /* taken before lock, never after */
    sqlite3_stmt *ix_begin, *ix_commit, *ix_rollback, *ix_ins, *ix_ack, *ix_del, *round_acks;
    recent_t *recent; /* users of the messages in unindexed (see the top) */
    int recent_lost;  /* recent missed some (out of memory): pending scans */
    int healthy;
};

/* The main connection's lock, the writer's commits first. The background
 * jobs (the indexer, expiry, channel trims) work in slices of a few
 * milliseconds, each under the lock, one right after another. A plain
 * mutex lets the thread that just let go take it again before the waiter
 * it woke gets a core: a commit waited out whole rounds of the indexer,
 * 10 ms and more once a second at 10,000 stored messages/s, and every
 * message behind it with it (docs/BENCHMARKS.md, "Where a stall starts").
 * So everyone else counts itself in `wanted` before it waits and in
 * `fg_served` once it has the lock, and a background slice that finds
 * someone waiting or holding it waits until one of them has had the lock
 * (or STORE_BG_YIELD_MS), then takes its turn: the others arriving
 * meanwhile wait until it has the lock. A commit waits for one slice at
 * most; under commits back to back the two alternate, and the background
 * is never kept out (the same plain mutex let a busy writer do that on one
 * core). */
#define STORE_BG_YIELD_MS 200

/* Wake a background thread waiting in store_lock_bg, if any. seq_cst:
 * either the caller sees bg_waiting, or the waiter sees what the caller
 * changed before (wanted, fg_served). */
static void store_wake_bg(store_sqlite_t *s)
{
    if (atomic_load(&s->bg_waiting)) {
        pthread_mutex_lock(&s->bg_lock);
        pthread_cond_broadcast(&s->bg_room);
        pthread_mutex_unlock(&s->bg_lock);
    }
}

static void store_lock(store_sqlite_t *s)
{
    if (atomic_load(&s->bg_turn)) {
        pthread_mutex_lock(&s->bg_lock);
        while (atomic_load(&s->bg_turn))
            pthread_cond_wait(&s->fg_room, &s->bg_lock);
        pthread_mutex_unlock(&s->bg_lock);
    }
    atomic_fetch_add(&s->wanted, 1);
    pthread_mutex_lock(&s->lock);
    atomic_fetch_add(&s->fg_served, 1);
    store_wake_bg(s);
}

static void store_unlock(store_sqlite_t *s)
{
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_sub(&s->wanted, 1);
    store_wake_bg(s);
}

static void store_lock_bg(store_sqlite_t *s)
{
    if (!atomic_load(&s->wanted)) {
        pthread_mutex_lock(&s->lock);
        return;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)STORE_BG_YIELD_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&s->bg_lock);
    atomic_fetch_add(&s->bg_waiting, 1);
    unsigned served = (unsigned)atomic_load(&s->fg_served);
    while (atomic_load(&s->wanted) && (unsigned)atomic_load(&s->fg_served) == served &&
           pthread_cond_timedwait(&s->bg_room, &s->bg_lock, &until) != ETIMEDOUT)
        ;
    atomic_fetch_sub(&s->bg_waiting, 1);
    atomic_store(&s->bg_turn, 1); /* those arriving now wait for this slice */
    pthread_mutex_unlock(&s->bg_lock);
    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&s->bg_lock);
    atomic_store(&s->bg_turn, 0);
    pthread_cond_broadcast(&s->fg_room);
    pthread_mutex_unlock(&s->bg_lock);
}

static void store_unlock_bg(store_sqlite_t *s)
{
    pthread_mutex_unlock(&s->lock);
}

/* Expired messages that were handed over, oldest expiry first, at most ?2:
 * store_sqlite_expire deletes them a chunk at a time. */
#define STORE_EXPIRED_IDS                                                                          \
    "SELECT id FROM messages m WHERE m.expires_ms <= ?1 AND NOT EXISTS"                            \
    " (SELECT 1 FROM undispatched u WHERE u.id = m.id) AND NOT EXISTS"                             \
    " (SELECT 1 FROM unindexed x WHERE x.id = m.id) ORDER BY m.expires_ms, m.id LIMIT ?2"
#define STORE_EXPIRE_CHUNK 500

/* The indexer: messages at least this old (by acceptance) leave `unindexed`,
 * at most STORE_INDEX_MAX per run, STORE_INDEX_CHUNK rows a transaction. */
#define STORE_INDEX_AFTER_MS 3000
#define STORE_INDEX_MAX 100000
#define STORE_INDEX_CHUNK 128
#define STORE_INDEX_PAGE 128
#define STORE_INDEX_FORGET 1024 /* pairs out of recent to a hold of the lock */

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

/* The per-user index's own database (see the top): derived from the
 * messages' inline lists, except acks; no fsync per transaction. */
static const char *store_index_schema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA busy_timeout=5000;"
    "PRAGMA cache_size=-65536;"
    "CREATE TABLE IF NOT EXISTS recipients("
    " user TEXT NOT NULL, msg_id TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(user, msg_id)) WITHOUT ROWID;";

/* Version 4: recipients indexed lazily, in their own database (see the top). */
static const char *store_schema_v4 =
    "CREATE TABLE IF NOT EXISTS unindexed(id TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tail_acks(msg_id TEXT NOT NULL, user TEXT NOT NULL,"
    " PRIMARY KEY(msg_id, user)) WITHOUT ROWID;"
    "PRAGMA user_version=4;";

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

/* Version 4, for a database written before it: each message with ttl > 0
 * gets its recipients inline, read from recipients (by msg_id, through
 * recipients_by_msg), whose rows then move to the per-user index's
 * database (see the top). Inside the migration's transaction; a stop
 * half-way (the two files do not commit as one) does it again. */
static int store_sqlite_inline_recipients(store_sqlite_t *s, const char *path, char *err,
                                          size_t err_size)
{
    sqlite3_stmt *rd = NULL, *wr = NULL;
    char *buf = NULL, last[256] = "";
    size_t len = 0, cap = 0;
    int rc = -1, step;
    err[0] = '\0';
    if (store_sqlite_exec(s, "CREATE TEMP TABLE inline_rcpt(id TEXT PRIMARY KEY, rcpt BLOB)", err,
                          err_size, path) ||
        sqlite3_prepare_v2(s->db,
                           "SELECT r.msg_id, r.user FROM main.recipients r JOIN messages m"
                           " ON m.id = r.msg_id WHERE m.rcpt IS NULL ORDER BY r.msg_id",
                           -1, &rd, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "INSERT INTO temp.inline_rcpt(id, rcpt) VALUES(?1, ?2)", -1, &wr,
                           NULL) != SQLITE_OK)
        goto out;
    /* one list per message: rows come by msg_id, a message's users together */
    for (;;) {
        step = sqlite3_step(rd);
        const char *id = step == SQLITE_ROW ? (const char *)sqlite3_column_text(rd, 0) : NULL;
        const char *user = step == SQLITE_ROW ? (const char *)sqlite3_column_text(rd, 1) : NULL;
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            goto out;
        if (len && (!id || strcmp(id, last) != 0)) {
            sqlite3_bind_text(wr, 1, last, -1, SQLITE_STATIC);
            sqlite3_bind_blob(wr, 2, buf, (int)len, SQLITE_STATIC);
            int done = sqlite3_step(wr);
            sqlite3_reset(wr);
            if (done != SQLITE_DONE)
                goto out;
            len = 0;
        }
        if (!id)
            break;
        size_t l = strlen(user ? user : "") + 1;
        if (len + l > cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            while (ncap < len + l)
                ncap *= 2;
            char *grown = realloc(buf, ncap);
            if (!grown)
                goto out;
            buf = grown;
            cap = ncap;
        }
        memcpy(buf + len, user ? user : "", l);
        len += l;
        snprintf(last, sizeof last, "%s", id);
    }
    rc = store_sqlite_exec(s,
                           "UPDATE messages SET rcpt = (SELECT t.rcpt FROM temp.inline_rcpt t"
                           " WHERE t.id = messages.id) WHERE id IN (SELECT id FROM"
                           " temp.inline_rcpt);"
                           "DROP TABLE temp.inline_rcpt;"
                           "INSERT OR IGNORE INTO ix.recipients(user, msg_id, acked)"
                           " SELECT user, msg_id, acked FROM main.recipients;"
                           "DROP TABLE main.recipients;",
                           err, err_size, path);
out:
    if (rc && !err[0])
        snprintf(err, err_size, "cannot move the recipients of %s inline: %s", path,
                 sqlite3_errmsg(s->db));
    sqlite3_finalize(rd);
    sqlite3_finalize(wr);
    free(buf);
    return rc;
}

/* Run the steps in one transaction. */
static int store_sqlite_steps(store_sqlite_t *s, const char *const *steps, const char *path,
                              char *err, size_t err_size)
{
    if (store_sqlite_exec(s, "BEGIN IMMEDIATE", err, err_size, path))
        return -1;
    for (size_t i = 0; steps[i]; i++)
        if (store_sqlite_exec(s, steps[i], err, err_size, path)) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    if (store_sqlite_inline_recipients(s, path, err, err_size) ||
        store_sqlite_exec(s, "COMMIT", err, err_size, path)) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* Bring the schema to version 4, in one transaction. */
static int store_sqlite_migrate(store_sqlite_t *s, const char *path, char *err, size_t err_size,
                                int *found)
{
    sqlite3_stmt *st = NULL;
    int version = -1, v1 = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    *found = version;
    if (version < 0) {
        snprintf(err, err_size, "cannot read the schema version of %s: %s", path,
                 sqlite3_errmsg(s->db));
        return -1;
    }
    if (version == 4)
        return 0;
    if (version == 2 || version == 3) {
        const char *steps[] = {version == 2 ? store_schema_v3 : store_schema_v4,
                               version == 2 ? store_schema_v4 : NULL, NULL};
        if (store_sqlite_steps(s, steps, path, err, err_size))
            return -1;
        LOG_I("store: %s migrated from schema version %d to 4", path, version);
        return 0;
    }
    if (version != 0) {
        snprintf(err, err_size, "%s has schema version %d; this collector knows 1 to 4", path,
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
    const char *fresh[] = {store_schema_v2, store_schema_v3, store_schema_v4, NULL};
    const char *from_v1[] = {store_migrate_v1, store_schema_v2, store_migrate_v1_copy,
                             store_schema_v3,  store_schema_v4, NULL};
    if (store_sqlite_steps(s, v1 ? from_v1 : fresh, path, err, err_size))
        return -1;
    if (v1)
        LOG_I("store: %s migrated from schema version 1 to 4", path);
    return 0;
}

static void store_sqlite_close(void *handle);

#define STORE_MSG_COLS                                                                             \
    "m.id, m.topic, m.data, m.content_type, m.accepted_ms, m.ttl, m.broadcast, m.channel"
/* Message m of `unindexed` is pending for user U (an SQL parameter) when
 * U did not ack it and its pair is not in recipients yet (see the top). */
#define STORE_NOT_INDEXED_FOR(U)                                                                   \
    "NOT EXISTS (SELECT 1 FROM ix.recipients r WHERE r.user = " U " AND r.msg_id = m.id)"          \
    " AND NOT EXISTS (SELECT 1 FROM tail_acks t WHERE t.msg_id = m.id AND t.user = " U ")"

/* SQL rcpt_has(rcpt, user): 1 when the inline recipient list rcpt (user
 * ids, each NUL-terminated) holds user, else 0 (also for NULL). */
static void store_sqlite_rcpt_has(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const char *blob = sqlite3_value_blob(argv[0]);
    size_t len = (size_t)sqlite3_value_bytes(argv[0]);
    const char *user = (const char *)sqlite3_value_text(argv[1]);
    size_t ulen = user ? strlen(user) : 0;
    int found = 0;
    for (size_t at = 0; blob && user && at < len && !found;) {
        size_t l = strnlen(blob + at, len - at);
        found = l == ulen && memcmp(blob + at, user, ulen) == 0;
        at += l + 1;
    }
    sqlite3_result_int(ctx, found);
}

static int prep_on(sqlite3 *db, sqlite3_stmt **st, const char *sql)
{
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        LOG_E("store: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

static int prep(store_sqlite_t *s, sqlite3_stmt **st, const char *sql)
{
    return prep_on(s->db, st, sql);
}

/* The per-user index's database next to path (see the top): opened, set
 * up, attached to the main connection as "ix". *fresh: it did not exist. */
static int store_sqlite_open_index(store_sqlite_t *s, const char *path, int *fresh, char *err,
                                   size_t err_size)
{
    char ix[4200];
    if (snprintf(ix, sizeof ix, "%s.index", path) >= (int)sizeof ix) {
        snprintf(err, err_size, "%s: the path is too long", path);
        return -1;
    }
    *fresh = access(ix, F_OK) != 0;
    char *msg = NULL;
    sqlite3_stmt *attach = NULL;
    if (sqlite3_open_v2(ix, &s->ixdb,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK ||
        sqlite3_exec(s->ixdb, store_index_schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_size, "cannot open the index database %s: %s", ix,
                 msg ? msg : sqlite3_errmsg(s->ixdb));
        sqlite3_free(msg);
        return -1;
    }
    int rc = sqlite3_prepare_v2(s->db, "ATTACH DATABASE ?1 AS ix", -1, &attach, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(attach, 1, ix, -1, SQLITE_STATIC);
        rc = sqlite3_step(attach) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(attach);
    if (rc != SQLITE_OK) {
        snprintf(err, err_size, "cannot attach %s to %s: %s", ix, path, sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

/* Add id to recent for every user of the inline list rcpt; out of memory,
 * recent_lost makes pending scan instead. */
static void store_sqlite_recent_add(store_sqlite_t *s, const char *id, const char *rcpt, size_t len)
{
    for (size_t at = 0; rcpt && at < len;) {
        size_t l = strnlen(rcpt + at, len - at);
        if (l == len - at)
            break; /* not NUL-terminated: not a list store_sqlite_join made */
        if (!s->recent_lost && recent_add(s->recent, rcpt + at, id) != 0) {
            LOG_W("store: out of memory listing recent messages; pending messages are found by "
                  "a scan until the indexer catches up");
            s->recent_lost = 1;
        }
        at += l + 1;
    }
}

/* recent, from `unindexed`, when the store opens. */
static int store_sqlite_recent_load(store_sqlite_t *s)
{
    int rc;
    while ((rc = sqlite3_step(s->all_unindexed)) == SQLITE_ROW)
        store_sqlite_recent_add(s, (const char *)sqlite3_column_text(s->all_unindexed, 0),
                                sqlite3_column_blob(s->all_unindexed, 1),
                                (size_t)sqlite3_column_bytes(s->all_unindexed, 1));
    sqlite3_reset(s->all_unindexed);
    return rc == SQLITE_DONE ? 0 : -1;
}

store_sqlite_t *store_sqlite_open(const char *path, char *err, size_t err_size)
{
    store_sqlite_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->ix_lock, NULL);
    pthread_mutex_init(&s->bg_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->bg_room, &ca);
    pthread_cond_init(&s->fg_room, &ca);
    pthread_condattr_destroy(&ca);
    char *msg = NULL;
    int ix_fresh = 0, version = 0;
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
    if (store_sqlite_open_index(s, path, &ix_fresh, err, err_size) ||
        store_sqlite_migrate(s, path, err, err_size, &version))
        goto fail;
    if (version == 4 && ix_fresh) {
        /* the index's file is gone (or was never copied with the store):
         * every kept message is indexed again; acks recorded there are
         * lost, so those messages are delivered again */
        LOG_W("store: %s.index is missing; indexing the stored messages again (messages acked "
              "before are delivered again)",
              path);
        if (store_sqlite_exec(s,
                              "INSERT OR IGNORE INTO unindexed(id) SELECT id FROM messages"
                              " WHERE ttl > 0 AND rcpt IS NOT NULL",
                              err, err_size, path))
            goto fail;
    }
    if (sqlite3_create_function(s->db, "rcpt_has", 2,
                                SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, NULL,
                                store_sqlite_rcpt_has, NULL, NULL) != SQLITE_OK ||
        !(s->recent = recent_new())) {
        snprintf(err, err_size, "cannot set up %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    /* deferred: BEGIN IMMEDIATE would take the attached index's write
     * lock too, and wait for the indexer */
    if (prep(s, &s->begin, "BEGIN") || prep(s, &s->commit, "COMMIT") ||
        prep(s, &s->rollback, "ROLLBACK") ||
        prep(s, &s->find_idem, "SELECT id FROM messages WHERE idem_key = ?1") ||
        prep(s, &s->ins_msg,
             "INSERT INTO messages(id, topic, data, content_type, accepted_ms, ttl, expires_ms,"
             " idem_key, broadcast, rcpt, channel)"
             " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)") ||
        prep(s, &s->pending,
             "SELECT " STORE_MSG_COLS " FROM ix.recipients r JOIN messages m ON m.id = r.msg_id"
             " WHERE r.user = ?1 AND r.msg_id > ?4 AND r.acked = 0 AND m.ttl > 0"
             " AND m.expires_ms > ?2 ORDER BY m.id LIMIT ?3") ||
        prep(s, &s->undispatched,
             "SELECT " STORE_MSG_COLS ", m.rcpt FROM undispatched u JOIN messages m ON m.id = u.id"
             " WHERE m.accepted_ms < ?1 ORDER BY u.id LIMIT ?2") ||
        prep(s, &s->ins_undispatched, "INSERT INTO undispatched(id) VALUES(?1)") ||
        prep(s, &s->mark, "DELETE FROM undispatched WHERE id = ?1") ||
        prep(s, &s->sync_normal, "PRAGMA synchronous=NORMAL") ||
        prep(s, &s->sync_full, "PRAGMA synchronous=FULL") ||
        prep(s, &s->expired_rcpts,
             "SELECT id, rcpt FROM messages WHERE id IN (" STORE_EXPIRED_IDS ")") ||
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
             " (SELECT 1 FROM undispatched u WHERE u.id = messages.id)") ||
        prep(s, &s->ins_unindexed, "INSERT INTO unindexed(id) VALUES(?1)") ||
        prep(s, &s->index_due,
             "SELECT u.id, m.rcpt, m.accepted_ms FROM unindexed u JOIN messages m"
             " ON m.id = u.id WHERE u.id > ?2 ORDER BY u.id LIMIT ?1") ||
        prep(s, &s->round_acks,
             "SELECT msg_id, user FROM tail_acks WHERE msg_id >= ?1 AND msg_id <= ?2") ||
        prep_on(s->ixdb, &s->ix_begin, "BEGIN") || prep_on(s->ixdb, &s->ix_commit, "COMMIT") ||
        prep_on(s->ixdb, &s->ix_rollback, "ROLLBACK") ||
        prep_on(s->ixdb, &s->ix_ins,
                "INSERT OR IGNORE INTO recipients(user, msg_id) VALUES(?1, ?2)") ||
        prep_on(s->ixdb, &s->ix_ack,
                "UPDATE recipients SET acked = 1 WHERE user = ?1 AND msg_id = ?2") ||
        prep_on(s->ixdb, &s->ix_del, "DELETE FROM recipients WHERE user = ?1 AND msg_id = ?2") ||
        prep(s, &s->unindex, "DELETE FROM unindexed WHERE id = ?1") ||
        prep(s, &s->drop_tail_acks, "DELETE FROM tail_acks WHERE msg_id = ?1") ||
        prep(s, &s->ack_tail,
             "INSERT OR IGNORE INTO tail_acks(msg_id, user) SELECT m.id, ?1 FROM unindexed u"
             " JOIN messages m ON m.id = u.id WHERE u.id = ?2 AND rcpt_has(m.rcpt, ?1)") ||
        prep(s, &s->pending_one,
             "SELECT " STORE_MSG_COLS " FROM messages m WHERE m.id = ?1 AND m.ttl > 0"
             " AND m.expires_ms > ?2 AND EXISTS (SELECT 1 FROM unindexed u WHERE u.id = m.id)"
             " AND " STORE_NOT_INDEXED_FOR("?3")) ||
        prep(s, &s->pending_scan,
             "SELECT " STORE_MSG_COLS " FROM unindexed u JOIN messages m ON m.id = u.id"
             " WHERE u.id > ?4 AND m.ttl > 0 AND m.expires_ms > ?2 AND rcpt_has(m.rcpt, ?1)"
             " AND " STORE_NOT_INDEXED_FOR("?1") " ORDER BY u.id LIMIT ?3") ||
        prep(s, &s->all_unindexed,
             "SELECT u.id, m.rcpt FROM unindexed u JOIN messages m ON m.id = u.id")) {
        snprintf(err, err_size, "cannot prepare statements on %s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (store_sqlite_recent_load(s) != 0) {
        snprintf(err, err_size, "cannot read %s: %s", path, sqlite3_errmsg(s->db));
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
    (void)s;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        LOG_E("store: %s failed: %s", sqlite3_sql(st), sqlite3_errmsg(sqlite3_db_handle(st)));
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
    /* recipients inline; those of a ttl > 0 message go to the per-user
     * index later (see the top) */
    char *inline_to = NULL;
    size_t inline_len = 0;
    if (n_to && store_sqlite_join(to, n_to, &inline_to, &inline_len) != 0)
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
    if (n_to && m->ttl > 0) {
        sqlite3_bind_text(s->ins_unindexed, 1, m->id, -1, SQLITE_STATIC);
        if (step_done(s, s->ins_unindexed))
            return STORE_ERR;
    }
    return STORE_OK;
}

static int store_sqlite_put_batch(void *handle, store_put_item_t *items, size_t n)
{
    store_sqlite_t *s = handle;
    int rc = STORE_ERR;
    store_lock(s);
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
    for (size_t i = 0; i < n; i++)
        if (items[i].result == STORE_OK && items[i].m->ttl > 0)
            for (size_t k = 0; k < items[i].n_to && !s->recent_lost; k++)
                if (recent_add(s->recent, items[i].to[k], items[i].m->id) != 0) {
                    LOG_W("store: out of memory listing recent messages; pending messages are "
                          "found by a scan until the indexer catches up");
                    s->recent_lost = 1;
                }
out:
    s->healthy = rc == STORE_OK;
    store_unlock(s);
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

/* Step st to its end, copying each row into rs. Returns 0, or -1 (logged,
 * with what). */
static int store_rows_read(store_sqlite_t *s, sqlite3_stmt *st, store_rows_t *rs, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (!store_rows_add(rs, st))
            break;
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    LOG_E("store: %s: %s", what, rc == SQLITE_ROW ? "out of memory" : sqlite3_errmsg(s->db));
    return -1;
}

/* The user's pending messages not indexed yet (see the top), after
 * `after`, at most limit, oldest first, into rs. */
static int store_sqlite_pending_recent(store_sqlite_t *s, const char *user, const char *after,
                                       uint64_t now_ms, size_t limit, store_rows_t *rs)
{
    if (s->recent_lost) {
        sqlite3_stmt *st = s->pending_scan;
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)now_ms);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
        sqlite3_bind_text(st, 4, after, -1, SQLITE_STATIC);
        return store_rows_read(s, st, rs, "pending messages not indexed yet");
    }
    const char(*ids)[IDS_LEN + 1] = NULL;
    size_t n = recent_of(s->recent, user, after, &ids);
    for (size_t i = 0; i < n && rs->n < limit; i++) {
        sqlite3_stmt *st = s->pending_one;
        sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)now_ms);
        sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
        if (store_rows_read(s, st, rs, "pending messages not indexed yet") != 0)
            return -1;
    }
    return 0;
}

static int store_sqlite_pending(void *handle, const char *user, const char *after, uint64_t now_ms,
                                size_t limit, store_msg_fn fn, void *arg)
{
    store_sqlite_t *s = handle;
    store_rows_t indexed = {0}, recent = {0};
    store_lock(s);
    sqlite3_stmt *st = s->pending;
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)now_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    sqlite3_bind_text(st, 4, after, -1, SQLITE_STATIC);
    int n = 0;
    if (store_rows_read(s, st, &indexed, "pending messages") != 0 ||
        store_sqlite_pending_recent(s, user, after, now_ms, limit, &recent) != 0)
        n = STORE_ERR;
    store_unlock(s);
    /* two lists of distinct messages, each oldest first: merged, the
     * oldest limit of them */
    for (size_t i = 0, k = 0;
         n != STORE_ERR && (size_t)n < limit && (i < indexed.n || k < recent.n); n++) {
        int take_indexed = k == recent.n ||
                           (i < indexed.n && strcmp(indexed.rows[i].m.id, recent.rows[k].m.id) < 0);
        fn(arg, take_indexed ? &indexed.rows[i++].m : &recent.rows[k++].m, NULL, 0);
    }
    store_rows_free(&indexed);
    store_rows_free(&recent);
    return n;
}

typedef struct store_tail_ack {
    const char *user, *id;
} store_tail_ack_t;

/* Under ix_lock: the index's rows first; an id with no row there may be a
 * message not indexed yet, whose ack goes to tail_acks (see the top). One
 * transaction of each database for the whole batch, neither waiting for
 * an fsync of its own (the next stored batch's covers them, and an ack
 * lost to a power cut only means the message comes again). */
static int store_sqlite_ack_batch(void *handle, const store_ack_t *acks, size_t n)
{
    store_sqlite_t *s = handle;
    int rc = STORE_ERR;
    size_t n_ids = 0, n_tail = 0;
    for (size_t i = 0; i < n; i++)
        n_ids += acks[i].n_ids;
    store_tail_ack_t *tail = calloc(n_ids ? n_ids : 1, sizeof *tail);
    if (!tail)
        return STORE_ERR;
    pthread_mutex_lock(&s->ix_lock);
    if (step_done(s, s->ix_begin))
        goto out;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < acks[i].n_ids; k++) {
            sqlite3_bind_text(s->ix_ack, 1, acks[i].user, -1, SQLITE_STATIC);
            sqlite3_bind_text(s->ix_ack, 2, acks[i].ids[k], -1, SQLITE_STATIC);
            if (step_done(s, s->ix_ack)) {
                step_done(s, s->ix_rollback);
                goto out;
            }
            if (sqlite3_changes(s->ixdb) == 0)
                tail[n_tail++] = (store_tail_ack_t){acks[i].user, acks[i].ids[k]};
        }
    if (step_done(s, s->ix_commit)) {
        step_done(s, s->ix_rollback);
        goto out;
    }
    rc = STORE_OK;
    if (!n_tail)
        goto out;
    store_lock(s);
    step_done(s, s->sync_normal);
    rc = step_done(s, s->begin) ? STORE_ERR : STORE_OK;
    for (size_t i = 0; i < n_tail && rc == STORE_OK; i++) {
        sqlite3_bind_text(s->ack_tail, 1, tail[i].user, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->ack_tail, 2, tail[i].id, -1, SQLITE_STATIC);
        if (step_done(s, s->ack_tail))
            rc = STORE_ERR;
    }
    if (rc == STORE_OK && step_done(s, s->commit))
        rc = STORE_ERR;
    if (rc != STORE_OK)
        step_done(s, s->rollback);
    step_done(s, s->sync_full);
    store_unlock(s);
out:
    pthread_mutex_unlock(&s->ix_lock);
    free(tail);
    return rc;
}

static int store_sqlite_ack(void *handle, const char *user, char *const *ids, size_t n_ids)
{
    store_ack_t one = {user, ids, n_ids};
    return store_sqlite_ack_batch(handle, &one, 1);
}

static int store_sqlite_undispatched(void *handle, uint64_t before_ms, size_t limit,
                                     store_msg_fn fn, void *arg)
{
    store_sqlite_t *s = handle;
    store_rows_t rs = {0};
    store_lock(s);
    sqlite3_stmt *st = s->undispatched;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)before_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_row_t *r = store_rows_add(&rs, st);
        const char *blob = r ? sqlite3_column_blob(st, 8) : NULL;
        /* no list: a broadcast or a channel message */
        if (!r || (blob &&
                   store_rows_split_recipients(r, blob, (size_t)sqlite3_column_bytes(st, 8)) != 0))
            break;
    }
    if (rc != SQLITE_DONE) {
        LOG_E("store: messages not yet handed over: %s",
              rc == SQLITE_ROW ? "out of memory or recipients unreadable" : sqlite3_errmsg(s->db));
        n = STORE_ERR;
    }
    sqlite3_reset(st);
    store_unlock(s);
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
    store_lock(s);
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
    store_unlock(s);
    return rc;
}

typedef struct store_index_pair {
    const char *user; /* into the round's rcpt copies */
    const char *id;
} store_index_pair_t;

static int store_index_pair_cmp(const void *a, const void *b)
{
    const store_index_pair_t *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    return c ? c : strcmp(x->id, y->id);
}

/* One transaction of the main database without an fsync of its own (the
 * next stored batch's covers it; lost, the indexer only does it again):
 * each of sts bound with the id of each of msgs[0..n). Under the lock.
 * Returns 0 or -1. */
static int store_sqlite_index_txn(store_sqlite_t *s, sqlite3_stmt *const *sts, size_t n_sts,
                                  const store_index_pair_t *msgs, size_t n)
{
    int rc = -1;
    step_done(s, s->sync_normal);
    if (step_done(s, s->begin))
        goto out;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < n_sts; k++) {
            sqlite3_bind_text(sts[k], 1, msgs[i].id, -1, SQLITE_STATIC);
            if (step_done(s, sts[k])) {
                step_done(s, s->rollback);
                goto out;
            }
        }
    rc = step_done(s, s->commit);
    if (rc)
        step_done(s, s->rollback);
out:
    step_done(s, s->sync_full);
    return rc;
}

/* One round of the indexer over at most STORE_INDEX_MAX messages due,
 * read STORE_INDEX_PAGE at a time (the lock let go between): their pairs
 * not in tail_acks into the index's recipients, in one transaction of its
 * own database; then out of unindexed and tail_acks, STORE_INDEX_CHUNK to
 * a transaction. Returns how many messages, or STORE_ERR. A stop half-way
 * leaves them in unindexed: the next round writes the same rows again
 * (INSERT OR IGNORE). */
static int store_sqlite_index_round(store_sqlite_t *s, uint64_t now_ms)
{
    store_index_pair_t *pairs = NULL, *msgs = NULL;
    char **copies = NULL; /* id, then rcpt, of each message */
    size_t n_pairs = 0, cap_pairs = 0, n_msgs = 0;
    int rc = STORE_ERR, step, oom = 0;
    strmap_t *acked = NULL; /* "msg_id\x1fuser" of tail_acks: no row for those */
    if (!(copies = calloc(2 * STORE_INDEX_MAX, sizeof *copies)) ||
        !(msgs = calloc(STORE_INDEX_MAX, sizeof *msgs)) || !(acked = strmap_new()))
        goto out;
    /* held for the whole round: an ack (which takes it too) never falls
     * between what the round read of tail_acks and its deletes */
    pthread_mutex_lock(&s->ix_lock);
    /* a page of STORE_INDEX_PAGE messages to a hold of the lock */
    const char *after = "";
    int ended = 0;
    step = SQLITE_DONE;
    while (!ended && !oom && step == SQLITE_DONE && n_msgs < STORE_INDEX_MAX) {
        size_t page = STORE_INDEX_MAX - n_msgs < STORE_INDEX_PAGE ? STORE_INDEX_MAX - n_msgs
                                                                  : STORE_INDEX_PAGE;
        size_t got = 0;
        store_lock_bg(s);
        sqlite3_stmt *st = s->index_due;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)page);
        sqlite3_bind_text(st, 2, after, -1, SQLITE_TRANSIENT);
        while (!oom && (step = sqlite3_step(st)) == SQLITE_ROW) {
            got++;
            /* ids sort by acceptance: the first one not due ends the round
             * (reading on would read every message not due) */
            if ((uint64_t)sqlite3_column_int64(st, 2) + STORE_INDEX_AFTER_MS > now_ms) {
                step = SQLITE_DONE;
                ended = 1;
                break;
            }
            const char *id = (const char *)sqlite3_column_text(st, 0);
            const char *rcpt = sqlite3_column_blob(st, 1);
            size_t len = (size_t)sqlite3_column_bytes(st, 1);
            char *id_copy = strdup(id ? id : ""), *rcpt_copy = malloc(len + 1);
            copies[2 * n_msgs] = id_copy;
            copies[2 * n_msgs + 1] = rcpt_copy;
            if (!id_copy || !rcpt_copy) {
                oom = 1;
                break;
            }
            memcpy(rcpt_copy, rcpt ? rcpt : "", len);
            rcpt_copy[len] = '\0'; /* a list not NUL-terminated ends here */
            msgs[n_msgs++].id = after = id_copy;
            for (size_t at = 0; at < len; at += strlen(rcpt_copy + at) + 1) {
                if (n_pairs == cap_pairs) {
                    size_t cap = cap_pairs ? cap_pairs * 2 : 1024;
                    store_index_pair_t *grown = realloc(pairs, cap * sizeof *grown);
                    if (!grown) {
                        oom = 1; /* every pair of a message, or it stays unindexed */
                        break;
                    }
                    pairs = grown;
                    cap_pairs = cap;
                }
                pairs[n_pairs++] = (store_index_pair_t){rcpt_copy + at, id_copy};
            }
        }
        sqlite3_reset(st);
        store_unlock_bg(s);
        ended |= got < page;
    }
    if (!oom && step == SQLITE_DONE && n_msgs) {
        store_lock_bg(s);
        sqlite3_stmt *st = s->round_acks;
        sqlite3_bind_text(st, 1, msgs[0].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, msgs[n_msgs - 1].id, -1, SQLITE_STATIC);
        while (!oom && (step = sqlite3_step(st)) == SQLITE_ROW) {
            char key[512];
            snprintf(key, sizeof key, "%s\x1f%s", (const char *)sqlite3_column_text(st, 0),
                     (const char *)sqlite3_column_text(st, 1));
            oom = strmap_put(acked, key, acked) != 0;
        }
        sqlite3_reset(st);
        store_unlock_bg(s);
        if (step == SQLITE_ROW)
            step = SQLITE_DONE; /* stopped by oom */
    }
    if (oom || step != SQLITE_DONE) {
        LOG_E("store: indexing recipients: %s", oom ? "out of memory" : sqlite3_errmsg(s->db));
        goto unlock;
    }
    /* One transaction of the index's own database: the writer goes on
     * meanwhile. By user, so that neighbours share pages. */
    if (n_pairs)
        qsort(pairs, n_pairs, sizeof *pairs, store_index_pair_cmp);
    int failed = n_pairs && step_done(s, s->ix_begin);
    for (size_t i = 0; !failed && i < n_pairs; i++) {
        char key[512];
        snprintf(key, sizeof key, "%s\x1f%s", pairs[i].id, pairs[i].user);
        if (strmap_get(acked, key))
            continue;
        sqlite3_bind_text(s->ix_ins, 1, pairs[i].user, -1, SQLITE_STATIC);
        sqlite3_bind_text(s->ix_ins, 2, pairs[i].id, -1, SQLITE_STATIC);
        failed = step_done(s, s->ix_ins);
    }
    if (n_pairs && (failed || step_done(s, s->ix_commit))) {
        step_done(s, s->ix_rollback);
        goto unlock;
    }
    sqlite3_stmt *const done[] = {s->unindex, s->drop_tail_acks};
    for (size_t at = 0; at < n_msgs; at += STORE_INDEX_CHUNK) {
        size_t n = n_msgs - at < STORE_INDEX_CHUNK ? n_msgs - at : STORE_INDEX_CHUNK;
        store_lock_bg(s);
        failed = store_sqlite_index_txn(s, done, 2, msgs + at, n);
        store_unlock_bg(s);
        if (failed)
            goto unlock;
    }
    /* out of recent: pairs are sorted by user, then id, so each user's
     * ids go in one pass (recent_remove_sorted) */
    const char *run[STORE_INDEX_FORGET];
    for (size_t at = 0; at < n_pairs; at += STORE_INDEX_FORGET) {
        size_t end = n_pairs - at < STORE_INDEX_FORGET ? n_pairs : at + STORE_INDEX_FORGET;
        store_lock_bg(s);
        for (size_t i = at, j; s->recent && i < end; i = j) {
            for (j = i; j < end && strcmp(pairs[j].user, pairs[i].user) == 0; j++)
                run[j - i] = pairs[j].id;
            recent_remove_sorted(s->recent, pairs[i].user, run, j - i);
        }
        store_unlock_bg(s);
    }

    rc = (int)n_msgs;
unlock:
    pthread_mutex_unlock(&s->ix_lock);
out:
    strmap_free(acked);
    for (size_t i = 0; copies && i < 2 * STORE_INDEX_MAX; i++)
        free(copies[i]);
    free(copies);
    free(msgs);
    free(pairs);
    return rc;
}

/* Rounds until one finds fewer than STORE_INDEX_MAX messages due; then,
 * if recent lost some, recent again from unindexed. */
static int store_sqlite_index(void *handle, uint64_t now_ms)
{
    store_sqlite_t *s = handle;
    int total = 0, n;
    do {
        n = store_sqlite_index_round(s, now_ms);
        if (n > 0)
            total += n;
    } while (n == STORE_INDEX_MAX);
    store_lock_bg(s);
    if (n >= 0 && s->recent_lost) {
        recent_free(s->recent);
        s->recent_lost = !(s->recent = recent_new()) || store_sqlite_recent_load(s) != 0;
        if (!s->recent_lost)
            LOG_I("store: recent messages listed again; pending messages are found without a "
                  "scan");
    }
    store_unlock_bg(s);
    return n < 0 && !total ? STORE_ERR : total;
}

/* Delete the index's rows of each message st lists (id, rcpt), by their
 * key (user, msg_id), inside the index's open transaction. Returns 0 or
 * -1. */
static int store_sqlite_drop_recipients(store_sqlite_t *s, sqlite3_stmt *st)
{
    int rc, failed = 0;
    while (!failed && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *rcpt = sqlite3_column_blob(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        for (size_t at = 0; rcpt && at < len && !failed;) {
            size_t l = strnlen(rcpt + at, len - at);
            if (l == len - at)
                break; /* not NUL-terminated: not a list store_sqlite_join made */
            sqlite3_bind_text(s->ix_del, 1, rcpt + at, -1, SQLITE_STATIC);
            sqlite3_bind_text(s->ix_del, 2, id, -1, SQLITE_STATIC);
            failed = step_done(s, s->ix_del);
            at += l + 1;
        }
    }
    sqlite3_reset(st);
    if (!failed && rc != SQLITE_DONE)
        LOG_E("store: %s failed: %s", sqlite3_sql(st), sqlite3_errmsg(s->db));
    return failed || rc != SQLITE_DONE ? -1 : 0;
}

/* In chunks of STORE_EXPIRE_CHUNK messages, one transaction each (a few
 * milliseconds), letting the writer and acks in between: a minute of ttl-0 messages at 10,000/s
 * deleted in one transaction held the store for almost 2 s. The index's rows go in a transaction of
 * its database, committed first: a stop between the two leaves expired messages without rows (never
 * served: they expired), which the next run deletes. */
static int store_sqlite_expire(void *handle, uint64_t now_ms)
{
    store_sqlite_t *s = handle;
    int total = 0;
    for (;;) {
        pthread_mutex_lock(&s->ix_lock);
        store_lock_bg(s);
        int n = STORE_ERR, ix_open = 0;
        if (step_done(s, s->ix_begin))
            goto out;
        ix_open = 1;
        if (step_done(s, s->begin))
            goto out;
        /* the floor first: it needs the rows that the deletes remove */
        for (int i = 0; i < 3; i++) {
            sqlite3_stmt *st = i == 0   ? s->expire_floor
                               : i == 1 ? s->expired_rcpts
                                        : s->expire_msgs;
            sqlite3_bind_int64(st, 1, (sqlite3_int64)now_ms);
            sqlite3_bind_int64(st, 2, STORE_EXPIRE_CHUNK);
            if (i == 1 ? store_sqlite_drop_recipients(s, st) : step_done(s, st)) {
                step_done(s, s->rollback);
                goto out;
            }
        }
        n = sqlite3_changes(s->db); /* the messages deleted */
        ix_open = 0;
        if (step_done(s, s->ix_commit)) {
            step_done(s, s->ix_rollback);
            step_done(s, s->rollback);
            n = STORE_ERR;
        } else if (step_done(s, s->commit)) {
            step_done(s, s->rollback);
            n = STORE_ERR;
        }
    out:
        if (ix_open)
            step_done(s, s->ix_rollback);
        store_unlock_bg(s);
        pthread_mutex_unlock(&s->ix_lock);
        if (n == STORE_ERR)
            return total ? total : STORE_ERR;
        total += n;
        if (n < STORE_EXPIRE_CHUNK)
            return total;
        usleep(1000); /* acks' turn on ix_lock (lock has turns of its own) */
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
    store_lock_bg(s);
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
    store_unlock_bg(s);
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
    store_lock(s);
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
    store_unlock(s);
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
    sqlite3_stmt **all[] = {&s->begin,        &s->commit,           &s->rollback,
                            &s->find_idem,    &s->ins_msg,          &s->pending,

                            &s->undispatched,

                            &s->mark,         &s->expired_rcpts,

                            &s->expire_msgs,  &s->ins_undispatched, &s->sync_normal,
                            &s->sync_full,    &s->expire_floor,     &s->history,
                            &s->history_gone, &s->history_floor,    &s->trim_edge,
                            &s->trim_floor,   &s->trim_msgs,        &s->ins_unindexed,
                            &s->index_due,

                            &s->unindex,      &s->drop_tail_acks,   &s->ack_tail,
                            &s->pending_one,  &s->pending_scan,     &s->all_unindexed};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(*all[i]);
    sqlite3_stmt **ix[] = {&s->ix_begin, &s->ix_commit, &s->ix_rollback, &s->ix_ins,
                           &s->ix_ack,   &s->ix_del,    &s->round_acks};
    for (size_t i = 0; i < sizeof ix / sizeof ix[0]; i++)
        sqlite3_finalize(*ix[i]);
    sqlite3_close(s->db);
    sqlite3_close(s->ixdb);
    recent_free(s->recent);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->ix_lock);
    pthread_mutex_destroy(&s->bg_lock);
    pthread_cond_destroy(&s->bg_room);
    pthread_cond_destroy(&s->fg_room);
    free(s);
}

const store_ops_t store_sqlite_ops = {
    .name = "sqlite",
    .put_batch = store_sqlite_put_batch,
    .mark_dispatched_many = store_sqlite_mark_dispatched_many,
    .pending = store_sqlite_pending,
    .ack = store_sqlite_ack,
    .ack_batch = store_sqlite_ack_batch,
    .undispatched = store_sqlite_undispatched,
    .expire = store_sqlite_expire,
    .index = store_sqlite_index,
    .history = store_sqlite_history,
    .trim_channel = store_sqlite_trim_channel,
    .healthy = store_sqlite_healthy,
    .close = store_sqlite_close,
};
