/*
 * bench: small pieces the load tools share (header only: each tool is one
 * file and links nothing of the others).
 */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

/* Whether a sender that started at start_us (clock_mono_us) and has sent
 * `sent` is ahead of `rate` per second, so should wait a little. */
static inline int bench_ahead(uint64_t start_us, long sent, long rate)
{
    return rate > 0 && (uint64_t)sent >= (clock_mono_us() - start_us) * (uint64_t)rate / 1000000u;
}

/* qsort's comparison of uint32_t (latencies in microseconds). */
static inline int bench_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile of sorted[0..n) microseconds, in ms, by the rank
 * wsload uses (nearest rank, at least the first). */
static inline double bench_pct_ms(const uint32_t *sorted, size_t n, double p)
{
    if (!n)
        return 0;
    size_t want = (size_t)(p / 100.0 * (double)n + 0.5);
    if (want == 0)
        want = 1;
    return sorted[want - 1] / 1000.0;
}

#endif
