/* libFuzzer target: the JWT parser (authd's and the pusher's view of a token). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sub[JWT_MAX_SUB + 1];
    jwt_result_t r = jwt_verify((const char *)data, size, "k", 1, 1700000000, 30, sub);
    if (r == JWT_OK && (strlen(sub) == 0 || strlen(sub) > JWT_MAX_SUB))
        abort(); /* a verified sub must obey the documented bounds */
    jwt_well_formed((const char *)data, size);
    return 0;
}
