/*
 * libFuzzer target: the JWT parser, as authd (jwt_verify) and the pusher
 * (jwt_well_formed) see a token from the network. Beyond "no crash, no
 * sanitizer report", it asserts what the rest of the system relies on: a
 * verified sub obeys the documented bounds and signs again to itself, and
 * jwt_well_formed never refuses a token that jwt_verify gets past the shape
 * of (the pusher's pre-check must not answer 401 where authd would answer).
 * Fixed secret and clock so that runs are reproducible. Single-threaded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"

#define FUZZ_SECRET "k"
#define FUZZ_NOW 1700000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sub[JWT_MAX_SUB + 1];
    const char *token = (const char *)data;
    jwt_result_t r = jwt_verify(token, size, FUZZ_SECRET, strlen(FUZZ_SECRET), FUZZ_NOW, 30, sub);
    int well_formed = jwt_well_formed(token, size);
    if (r == JWT_OK) {
        size_t n = strnlen(sub, sizeof sub);
        if (n == 0 || n > JWT_MAX_SUB)
            abort(); /* a verified sub must obey the documented bounds */
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)sub[i] < 0x20 || sub[i] == 0x7f)
                abort(); /* ... and carry no control character */
        if (!well_formed)
            abort(); /* the pusher's pre-check must not refuse a good token */
        /* Re-signing the sub must give a token that verifies to the same sub. */
        char *again = jwt_sign(sub, 60, FUZZ_SECRET, strlen(FUZZ_SECRET), FUZZ_NOW);
        char sub2[JWT_MAX_SUB + 1];
        if (!again ||
            jwt_verify(again, strlen(again), FUZZ_SECRET, strlen(FUZZ_SECRET), FUZZ_NOW, 0, sub2) !=
                JWT_OK ||
            strcmp(sub, sub2) != 0)
            abort();
        free(again);
    }
    if (r != JWT_MALFORMED && !well_formed)
        abort(); /* a token verify gets past the shape of must look well formed */
    return 0;
}
