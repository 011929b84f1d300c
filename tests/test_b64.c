/* Unit tests of lib/b64 against RFC 4648's test vectors. */
#include "b64.h"
#include "check.h"

static void standard_encoding_matches_rfc4648_vectors(void)
{
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[16];
        size_t n = b64_encode(out, (const unsigned char *)in[i], strlen(in[i]), 0);
        CHECK_STR(out, want[i]);
        CHECK_INT(n, strlen(want[i]));
        CHECK_INT(b64_encoded_len(strlen(in[i]), 0), strlen(want[i]));
    }
}

static void url_encoding_has_no_padding_and_url_alphabet(void)
{
    const unsigned char in[] = {0xfb, 0xff, 0xbf};
    char out[8];
    b64_encode(out, in, 3, 1);
    CHECK_STR(out, "-_-_");
    b64_encode(out, (const unsigned char *)"fo", 2, 1);
    CHECK_STR(out, "Zm8");
    CHECK_INT(b64_encoded_len(2, 1), 3);
}

static void url_decoding_round_trips_and_refuses_bad_input(void)
{
    unsigned char out[16];
    CHECK_INT(b64url_decode(out, "Zm9vYmE", 7), 5);
    CHECK(memcmp(out, "fooba", 5) == 0);
    CHECK_INT(b64url_decode(out, "-_-_", 4), 3);
    CHECK_INT(out[0], 0xfb);
    CHECK_INT(b64url_decode(out, "Zm8=", 4), -1); /* padding refused */
    CHECK_INT(b64url_decode(out, "Zm+v", 4), -1); /* standard alphabet refused */
    CHECK_INT(b64url_decode(out, "Z", 1), -1);    /* impossible length */
    CHECK_INT(b64url_decode(out, "Zh", 2), -1);   /* non-zero trailing bits */
    CHECK_INT(b64url_decode(out, "", 0), 0);
}

CHECK_MAIN(CHECK_CASE(standard_encoding_matches_rfc4648_vectors),
           CHECK_CASE(url_encoding_has_no_padding_and_url_alphabet),
           CHECK_CASE(url_decoding_round_trips_and_refuses_bad_input))
