/* Unit tests of lib/natsx that need no server: natsx_msg_free frees a
 * message on the calling thread with the libnats whose source we read, and
 * frees all of it (headers too: the sanitizers' leak check at exit). */
#include <nats/nats.h>
#include <stddef.h>
#include <stdlib.h>

#include "check.h"
#include "natsx.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/allocator_interface.h>
static size_t allocated(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>
static size_t allocated(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd; /* a block this large is mmap()ed */
}
#endif

enum { BIG = 4 << 20 };

static natsMsg *message(size_t len)
{
    char *data = calloc(1, len);
    natsMsg *m = NULL;
    CHECK(data != NULL);
    CHECK_INT(natsMsg_Create(&m, "push.node.n1", "_INBOX.x", data, (int)len), NATS_OK);
    CHECK_INT(natsMsgHeader_Set(m, "Content-Type", "application/json"), NATS_OK);
    CHECK_INT(natsMsgHeader_Add(m, "Nats-Msg-Id", "c1-7"), NATS_OK);
    free(data);
    return m;
}

static void open_the_library(void)
{
    CHECK_INT(nats_Open(-1), NATS_OK); /* as a connection would: its collector thread runs */
}

static void direct_exactly_with_libnats_3_4(void)
{
    CHECK_INT(natsx_msg_free_is_direct(), (nats_GetVersionNumber() >> 8) == 0x0304);
}

static void the_memory_is_back_when_it_returns(void)
{
    if (!natsx_msg_free_is_direct())
        return; /* another libnats: natsMsg_Destroy, freed on nats.c's thread */
    natsMsg *m = message(BIG);
    const char *v = NULL;
    CHECK_INT(natsMsgHeader_Get(m, "Nats-Msg-Id", &v), NATS_OK); /* headers parsed: their map too */
    size_t before = allocated();
    natsx_msg_free(m);
    size_t after = allocated();
    CHECK(before >= after + BIG);
}

static void null_and_lists(void)
{
    natsx_msg_free(NULL);
    natsx_msg_list_free(NULL);
    natsMsgList empty = {0};
    natsx_msg_list_free(&empty);
    natsMsgList list = {0};
    list.Msgs = malloc(3 * sizeof *list.Msgs);
    CHECK(list.Msgs != NULL);
    for (int i = 0; i < 3; i++)
        list.Msgs[i] = message(64);
    *(int *)&list.Count = 3;
    natsx_msg_list_free(&list);
    CHECK(list.Msgs == NULL);
    CHECK_INT(list.Count, 0);
    for (int i = 0; i < 1000; i++)
        natsx_msg_free(message(100)); /* the leak check at exit sees any left */
}

static void cleanup(void)
{
    nats_Close(); /* nats.c's threads end, its collector emptied */
}

CHECK_MAIN(CHECK_CASE(open_the_library), CHECK_CASE(direct_exactly_with_libnats_3_4),
           CHECK_CASE(the_memory_is_back_when_it_returns), CHECK_CASE(null_and_lists),
           CHECK_CASE(cleanup))
