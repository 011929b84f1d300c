/* Unit tests of lib/jwt: every refusal reason, the leeway, and a known-answer
 * vector whose HMAC was computed independently with `openssl dgst -hmac`. */
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "b64.h"
#include "check.h"
#include "jwt.h"

#define SECRET "k"
#define NOW 1700000000
/* {"alg":"HS256","typ":"JWT"}.{"sub":"u1","exp":4102444800} signed with "k" by openssl */
#define KNOWN "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6NDEwMjQ0NDgwMH0." \
              "h_hkkj9D-caNwNEnJpBOhvwUhe9TG5PDA5ZFNjoIm2w"

static jwt_result_t verify(const char *t, char *sub)
{
    return jwt_verify(t, strlen(t), SECRET, 1, NOW, 30, sub);
}

/* Build header.payload.signature with a correct HS256 signature over the
 * given JSON texts, whatever they say. */
static char *forge(const char *header, const char *payload, const char *secret)
{
    static char out[4096];
    size_t n = b64_encode(out, (const unsigned char *)header, strlen(header), 1);
    out[n++] = '.';
    n += b64_encode(out + n, (const unsigned char *)payload, strlen(payload), 1);
    unsigned char mac[64];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)out, n, mac, &ml);
    out[n++] = '.';
    b64_encode(out + n, mac, ml, 1);
    return out;
}

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static void known_answer_vector_verifies(void)
{
    char sub[JWT_MAX_SUB + 1];
    CHECK_INT(verify(KNOWN, sub), JWT_OK);
    CHECK_STR(sub, "u1");
    CHECK_INT(jwt_well_formed(KNOWN, strlen(KNOWN)), 1);
}

static void sign_then_verify_round_trips(void)
{
    char *t = jwt_sign("alice@example", 60, SECRET, 1, NOW);
    char sub[JWT_MAX_SUB + 1];
    CHECK_INT(verify(t, sub), JWT_OK);
    CHECK_STR(sub, "alice@example");
    free(t);
    CHECK(jwt_sign("", 60, SECRET, 1, NOW) == NULL);
    CHECK(jwt_sign("a\nb", 60, SECRET, 1, NOW) == NULL);
}

static void wrong_secret_or_flipped_signature_is_bad_signature(void)
{
    char sub[JWT_MAX_SUB + 1];
    CHECK_INT(jwt_verify(KNOWN, strlen(KNOWN), "other", 5, NOW, 30, sub), JWT_BAD_SIGNATURE);
    char t[] = KNOWN;
    t[strlen(t) - 3] = t[strlen(t) - 3] == 'A' ? 'B' : 'A';
    CHECK_INT(verify(t, sub), JWT_BAD_SIGNATURE);
    char *trunc = forge(HS, "{\"sub\":\"u1\"}", SECRET);
    trunc[strlen(trunc) - 4] = '\0'; /* shorter signature */
    CHECK_INT(verify(trunc, sub), JWT_BAD_SIGNATURE);
}

static void expiry_and_not_before_respect_the_leeway(void)
{
    char sub[JWT_MAX_SUB + 1];
    CHECK_INT(verify(forge(HS, "{\"sub\":\"u\",\"exp\":1699999000}", SECRET), sub), JWT_EXPIRED);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"u\",\"exp\":1699999980}", SECRET), sub), JWT_OK);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"u\",\"exp\":1699999970}", SECRET), sub), JWT_EXPIRED);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"u\",\"nbf\":1700000100}", SECRET), sub), JWT_NOT_YET_VALID);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"u\",\"nbf\":1700000020}", SECRET), sub), JWT_OK);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"u\",\"exp\":\"soon\"}", SECRET), sub), JWT_MALFORMED);
}

static void any_alg_but_hs256_is_refused(void)
{
    char sub[JWT_MAX_SUB + 1];
    CHECK_INT(verify(forge("{\"alg\":\"none\"}", "{\"sub\":\"u\"}", SECRET), sub), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"alg\":\"HS512\"}", "{\"sub\":\"u\"}", SECRET), sub), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"typ\":\"JWT\"}", "{\"sub\":\"u\"}", SECRET), sub), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"alg\":\"hs256\"}", "{\"sub\":\"u\"}", SECRET), sub), JWT_BAD_ALG);
    /* alg none with an empty signature segment, the classic attack */
    char t[512];
    snprintf(t, sizeof t, "%s", forge("{\"alg\":\"none\"}", "{\"sub\":\"u\"}", SECRET));
    *(strrchr(t, '.') + 1) = '\0';
    CHECK_INT(verify(t, sub), JWT_BAD_ALG);
}

static void bad_sub_is_refused(void)
{
    char sub[JWT_MAX_SUB + 1], long_sub[200];
    CHECK_INT(verify(forge(HS, "{\"exp\":4102444800}", SECRET), sub), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"\"}", SECRET), sub), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":42}", SECRET), sub), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"a\\u0001b\"}", SECRET), sub), JWT_BAD_SUB);
    snprintf(long_sub, sizeof long_sub, "{\"sub\":\"%0129d\"}", 0);
    CHECK_INT(verify(forge(HS, long_sub, SECRET), sub), JWT_BAD_SUB);
    snprintf(long_sub, sizeof long_sub, "{\"sub\":\"%0128d\"}", 0);
    CHECK_INT(verify(forge(HS, long_sub, SECRET), sub), JWT_OK);
    CHECK_INT(strlen(sub), 128);
}

static void malformed_tokens_are_refused(void)
{
    char sub[JWT_MAX_SUB + 1];
    CHECK_INT(jwt_well_formed("e30.e30.!", 9), 0); /* signature outside base64url */
    CHECK_INT(jwt_well_formed("e30.e30.", 8), 1);  /* unsecured JWT: a JWT shape, refused later */
    const char *bad[] = {"", "abc", "a.b", "a.b.c.d", ".e30.x", "e30..x", "!!!.e30.x",
                         "bm90IGpzb24.e30.x" /* header "not json" */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(verify(bad[i], sub), JWT_MALFORMED);
        CHECK_INT(jwt_well_formed(bad[i], strlen(bad[i])), 0);
    }
    CHECK_INT(verify(forge(HS, "not json", SECRET), sub), JWT_MALFORMED);
    CHECK_INT(verify(forge(HS, "[1]", SECRET), sub), JWT_MALFORMED);
    CHECK_INT(verify(forge("[]", "{\"sub\":\"u\"}", SECRET), sub), JWT_MALFORMED);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"u\",\"sub\":\"v\"}", SECRET), sub), JWT_MALFORMED);
}

static void reason_names_are_the_documented_words(void)
{
    CHECK_STR(jwt_reason_name(JWT_EXPIRED), "expired");
    CHECK_STR(jwt_reason_name(JWT_BAD_SIGNATURE), "bad_signature");
    CHECK_STR(jwt_reason_name(JWT_BAD_ALG), "bad_alg");
    CHECK_STR(jwt_reason_name(JWT_NOT_YET_VALID), "not_yet_valid");
    CHECK_STR(jwt_reason_name(JWT_MALFORMED), "malformed");
    CHECK_STR(jwt_reason_name(JWT_BAD_SUB), "bad_sub");
}

CHECK_MAIN(CHECK_CASE(known_answer_vector_verifies), CHECK_CASE(sign_then_verify_round_trips),
           CHECK_CASE(wrong_secret_or_flipped_signature_is_bad_signature),
           CHECK_CASE(expiry_and_not_before_respect_the_leeway),
           CHECK_CASE(any_alg_but_hs256_is_refused), CHECK_CASE(bad_sub_is_refused),
           CHECK_CASE(malformed_tokens_are_refused), CHECK_CASE(reason_names_are_the_documented_words))
