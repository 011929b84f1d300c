/*
 * storefloor: what one group commit of the collector's store costs on this
 * machine, with no NATS, queue or hand-over around it: the floor of the
 * store hop in the pipeline figures of docs/BENCHMARKS.md ("Floors").
 *
 *   storefloor [--batch 1,16,64,256,1024,4096] [--count N] [--indexer 0|1] [--dir DIR]
 *
 * For each batch size B it opens a fresh SQLite store in a new directory
 * under DIR through store_open (the collector's pragmas: WAL,
 * synchronous=FULL) and commits batches of B messages with
 * store_put_batch, the writer's call (collector/writer.c), each message as
 * a publish of pubload's makes it: one recipient (cycling over --users),
 * ttl --ttl, about --bytes of JSON data, no idempotency key, its id minted
 * from the time as the writer mints it. It commits ceil(N / B) batches, and
 * at least --min-commits. One JSON line per batch size: commit time p50,
 * p99 and max, messages per second over the whole loop, and how many
 * messages the store's indexer moved to its per-user index meanwhile: with
 * --indexer 1 (the default) a second thread calls store_index every second,
 * as the collector's expiry thread does, so that its transactions compete
 * for the store as they do in the collector. The store's files are removed
 * afterwards.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "clock.h"
#include "config.h"
#include "ids.h"
#include "store.h"

#define STOREFLOOR_MAX_BATCH 65536
#define STOREFLOOR_MAX_SIZES 32

/* "1,16,64" -> sizes. Returns how many, or -1 (one line printed). */
static int parse_batches(const char *list, long *sizes)
{
    int n = 0;
    for (const char *p = list; *p;) {
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || v < 1 || v > STOREFLOOR_MAX_BATCH ||
            n == STOREFLOOR_MAX_SIZES) {
            fprintf(stderr,
                    "storefloor: --batch: '%s' is not a list of at most %d sizes from 1 to %d, "
                    "comma separated\n",
                    list, STOREFLOOR_MAX_SIZES, STOREFLOOR_MAX_BATCH);
            return -1;
        }
        sizes[n++] = v;
        p = *end ? end + 1 : end;
    }
    if (!n)
        fprintf(stderr, "storefloor: --batch names no size\n");
    return n ? n : -1;
}

typedef struct floor_run {
    long batch, commits, bytes, ttl, users, indexer;
    const char *dir;
} floor_run_t;

/* The collector's indexer (collector/expiry.c): store_index every second. */
typedef struct floor_indexer {
    store_t *s;
    atomic_int stop;
    long indexed;
} floor_indexer_t;

static void *floor_indexer_run(void *arg)
{
    floor_indexer_t *x = arg;
    while (!atomic_load(&x->stop)) {
        for (int i = 0; i < 100 && !atomic_load(&x->stop); i++)
            usleep(10 * 1000);
        int n = store_index(x->s, ids_now_ms());
        if (n > 0)
            x->indexed += n;
    }
    return NULL;
}

/* One batch size in a fresh store under r->dir. Returns 0, or 1 (printed). */
static int floor_run_one(const floor_run_t *r)
{
    char path[4096], uri[4200], err[256];
    if (snprintf(path, sizeof path, "%s/floor-%ld.db", r->dir, r->batch) >= (int)sizeof path) {
        fprintf(stderr, "storefloor: the path under %s is too long\n", r->dir);
        return 1;
    }
    snprintf(uri, sizeof uri, "sqlite:%s", path);
    size_t b = (size_t)r->batch;
    store_put_item_t *items = calloc(b, sizeof *items);
    store_msg_t *msgs = calloc(b, sizeof *msgs);
    char *users = calloc(b, 32);
    char **tos = calloc(b, sizeof *tos);
    unsigned char *data = calloc(b, (size_t)r->bytes);
    uint32_t *commit_us = calloc((size_t)r->commits, sizeof *commit_us);
    store_t *s = NULL;
    int rc = 1, indexing = 0;
    if (!items || !msgs || !users || !tos || !data || !commit_us) {
        fprintf(stderr, "storefloor: out of memory for batches of %ld\n", r->batch);
        goto out;
    }
    if (!(s = store_open(uri, err, sizeof err))) {
        fprintf(stderr, "storefloor: cannot open %s: %s\n", uri, err);
        goto out;
    }
    floor_indexer_t indexer = {.s = s};
    pthread_t indexer_thread;
    indexing =
        r->indexer && pthread_create(&indexer_thread, NULL, floor_indexer_run, &indexer) == 0;
    long seq = 0;
    uint64_t start = clock_mono_us();
    for (long c = 0; c < r->commits; c++) {
        for (size_t i = 0; i < b; i++, seq++) {
            store_msg_t *m = &msgs[i];
            unsigned char *d = data + i * (size_t)r->bytes;
            int n = snprintf((char *)d, (size_t)r->bytes,
                             "{\"ts\":%" PRIu64 ",\"seq\":%ld,\"pad\":\"", clock_mono_us(), seq);
            memset(d + n, 'x', (size_t)(r->bytes - n - 2));
            memcpy(d + r->bytes - 2, "\"}", 2);
            snprintf(users + i * 32, 32, "u%ld", seq % r->users);
            tos[i] = users + i * 32;
            memset(m, 0, sizeof *m);
            m->topic = "bench";
            m->data = d;
            m->data_len = (size_t)r->bytes;
            m->content_type = "application/json";
            m->ttl = (uint32_t)r->ttl;
            m->accepted_ms = ids_now_ms();
            ids_new_at(m->id, m->accepted_ms);
            memset(&items[i], 0, sizeof items[i]);
            items[i].m = m;
            items[i].to = &tos[i];
            items[i].n_to = 1;
        }
        uint64_t t0 = clock_mono_us();
        if (store_put_batch(s, items, b) != STORE_OK) {
            fprintf(stderr, "storefloor: commit %ld of %ld messages into %s failed\n", c, r->batch,
                    path);
            goto out;
        }
        commit_us[c] = (uint32_t)(clock_mono_us() - t0);
    }
    double secs = (double)(clock_mono_us() - start) / 1e6;
    if (indexing) {
        atomic_store(&indexer.stop, 1);
        pthread_join(indexer_thread, NULL);
        indexing = 0;
    }
    qsort(commit_us, (size_t)r->commits, sizeof *commit_us, bench_cmp_u32);
    size_t nc = (size_t)r->commits;
    printf("{\"figure\":\"floor_store_commit\",\"batch\":%ld,\"ttl\":%ld,\"bytes\":%ld,"
           "\"commits\":%ld,\"messages\":%ld,\"seconds\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_ms\":%.3f,\"msgs_per_s\":%.0f,\"indexed\":%ld}\n",
           r->batch, r->ttl, r->bytes, r->commits, seq, secs, bench_pct_ms(commit_us, nc, 50),
           bench_pct_ms(commit_us, nc, 99), commit_us[nc - 1] / 1000.0, seq / secs,
           indexer.indexed);
    fflush(stdout);
    rc = 0;
out:
    if (indexing) {
        atomic_store(&indexer.stop, 1);
        pthread_join(indexer_thread, NULL);
    }
    store_close(s);
    static const char *suffixes[] = {"", "-wal", "-shm", ".index", ".index-wal", ".index-shm"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char f[4200];
        if (snprintf(f, sizeof f, "%s%s", path, suffixes[i]) < (int)sizeof f)
            unlink(f);
    }
    free(items);
    free(msgs);
    free(users);
    free(tos);
    free(data);
    free(commit_us);
    return rc;
}

int main(int argc, char **argv)
{
    const char *batch_list = NULL, *dir = NULL;
    long count = 20000, min_commits = 50, bytes = 200, ttl = 86400, users = 10000, indexer = 1;
    config_opt_t opts[] = {
        {"batch", NULL, "1,16,64,256,1024,4096", "batch sizes, comma separated", CONFIG_STR,
         &batch_list, 0, 0, 1},
        {"count", NULL, "20000", "messages per batch size", CONFIG_INT, &count, 1, 100000000, 1},
        {"min-commits", NULL, "50", "commits per batch size, at least", CONFIG_INT, &min_commits, 1,
         10000000, 1},
        {"bytes", NULL, "200", "data size of each message", CONFIG_INT, &bytes, 64, 1048576, 1},
        {"ttl", NULL, "86400", "ttl of each message (0: live only, no recipient row)", CONFIG_INT,
         &ttl, 0, 31536000, 1},
        {"users", NULL, "10000", "recipients cycle through u0 .. u<users-1>", CONFIG_INT, &users, 1,
         100000000, 1},
        {"indexer", NULL, "1",
         "1: a thread runs the store's indexer every second, as the collector does; 0: none",
         CONFIG_INT, &indexer, 0, 1, 1},
        {"dir", "TMPDIR", "/tmp", "the stores go in a new directory under this one", CONFIG_STR,
         &dir, 0, 0, 1},
    };
    int rc = config_parse("storefloor", "storefloor [flags]", opts, sizeof opts / sizeof opts[0],
                          argc, argv, NULL);
    if (rc)
        return rc == CONFIG_EXIT_OK ? 0 : 2;
    long sizes[STOREFLOOR_MAX_SIZES];
    int n_sizes = parse_batches(batch_list, sizes);
    if (n_sizes < 0)
        return 2;
    char tmp[4000];
    if (snprintf(tmp, sizeof tmp, "%s/storefloor.XXXXXX", dir) >= (int)sizeof tmp) {
        fprintf(stderr, "storefloor: --dir %s is too long\n", dir);
        return 2;
    }
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "storefloor: cannot make a directory under %s: %s\n", dir, strerror(errno));
        return 1;
    }
    rc = 0;
    for (int i = 0; i < n_sizes && rc == 0; i++) {
        floor_run_t r = {.batch = sizes[i],
                         .bytes = bytes,
                         .ttl = ttl,
                         .users = users,
                         .indexer = indexer,
                         .dir = tmp};
        r.commits = (count + sizes[i] - 1) / sizes[i];
        if (r.commits < min_commits)
            r.commits = min_commits;
        rc = floor_run_one(&r);
    }
    rmdir(tmp);
    return rc;
}
