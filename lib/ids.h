/*
 * ids: message ids that sort by acceptance time.
 *
 * An id is 24 lowercase hex digits: 12 of unix milliseconds, 4 of a random
 * per-process instance tag (so two collectors never mint the same id), 8 of a
 * per-process counter. Comparing two ids with strcmp orders them by the
 * millisecond they were minted; ids minted by one process are strictly
 * increasing. Thread-safe.
 */
#ifndef PUSH_IDS_H
#define PUSH_IDS_H

#include <stdint.h>

#define IDS_LEN 24

/* Write a new id and its NUL into out (IDS_LEN + 1 bytes). */
void ids_new(char out[IDS_LEN + 1]);

/* The same, at a given time (for tests). */
void ids_new_at(char out[IDS_LEN + 1], uint64_t unix_ms);

/* The milliseconds part of an id, or 0 if it is not one of ours. */
uint64_t ids_time_ms(const char *id);

/* 1 when id, or a string that starts with one (a chunk id
 * "<id>.<shard>.<parts>"), was minted by this process: its instance tag is
 * ours. 0 otherwise, also for anything that is not an id. */
int ids_minted_here(const char *id);

/* clock_wall_ms: ids and expiry times are compared across processes. */
uint64_t ids_now_ms(void);

#endif
