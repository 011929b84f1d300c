/* ids: see ids.h. The counter is atomic; the instance tag is drawn once. */
#include "ids.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "clock.h"

static atomic_uint ids_counter;
static atomic_uint ids_instance; /* 0 = not drawn yet; tag | 0x10000 once drawn */
static atomic_ullong ids_last_ms;

uint64_t ids_now_ms(void)
{
    return clock_wall_ms();
}

static unsigned ids_tag(void)
{
    unsigned tag = atomic_load(&ids_instance);
    if (!tag) {
        uint16_t r = 0;
        if (getrandom(&r, sizeof r, 0) != sizeof r)
            r = (uint16_t)(ids_now_ms() ^ (uint64_t)(uintptr_t)&r);
        unsigned want = 0x10000u | r;
        atomic_compare_exchange_strong(&ids_instance, &tag, want);
        tag = atomic_load(&ids_instance);
    }
    return tag & 0xffffu;
}

void ids_new_at(char out[IDS_LEN + 1], uint64_t unix_ms)
{
    /* Never let the time part go backwards within a process (clock steps):
     * ids from one process must stay strictly increasing. */
    unsigned long long last = atomic_load(&ids_last_ms);
    while (unix_ms > last && !atomic_compare_exchange_weak(&ids_last_ms, &last, unix_ms))
        ;
    if (unix_ms < last)
        unix_ms = last;
    unsigned n = atomic_fetch_add(&ids_counter, 1u);
    snprintf(out, IDS_LEN + 1, "%012llx%04x%08x", (unsigned long long)(unix_ms & 0xffffffffffffULL),
             ids_tag(), n);
}

void ids_new(char out[IDS_LEN + 1])
{
    ids_new_at(out, ids_now_ms());
}

uint64_t ids_time_ms(const char *id)
{
    if (strlen(id) != IDS_LEN)
        return 0;
    uint64_t ms = 0;
    for (int i = 0; i < 12; i++) {
        char c = id[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return 0;
        ms = ms << 4 | (uint64_t)v;
    }
    return ms;
}

int ids_minted_here(const char *id)
{
    if (!id || strspn(id, "0123456789abcdef") < IDS_LEN)
        return 0;
    char tag[5];
    snprintf(tag, sizeof tag, "%04x", ids_tag());
    return memcmp(id + 12, tag, 4) == 0;
}
