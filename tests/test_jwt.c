/*
 * Unit tests of lib/jwt: every refusal reason, the order of the checks, the
 * leeway boundaries, and known-answer vectors whose HMAC was computed by an
 * independent implementation, the openssl command line:
 *
 *   b64u() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
 *   H=$(printf '%s' "$header" | b64u); P=$(printf '%s' "$payload" | b64u)
 *   S=$(printf '%s' "$H.$P" | openssl dgst -sha256 -hmac "$secret" -binary | b64u)
 *   echo "$H.$P.$S"
 *
 * Single-threaded.
 */
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "b64.h"
#include "check.h"
#include "jwt.h"

#define SECRET "k"
#define NOW 1700000000
#define LEEWAY 30
#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* openssl: header HS, payload {"sub":"u1","exp":4102444800}, secret "k". */
#define VEC_U1                                                                                     \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6NDEwMjQ0NDgwMH0."                \
    "h_hkkj9D-caNwNEnJpBOhvwUhe9TG5PDA5ZFNjoIm2w"
/* openssl: header HS, payload
 * {"sub":"user-42","iat":1700000000,"nbf":1699999990,"exp":1700003600.5},
 * secret "correct horse battery staple". */
#define VEC_REAL_EXP_SECRET "correct horse battery staple"
#define VEC_REAL_EXP                                                                               \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                        \
    "eyJzdWIiOiJ1c2VyLTQyIiwiaWF0IjoxNzAwMDAwMDAwLCJuYmYiOjE2"                                     \
    "OTk5OTk5OTAsImV4cCI6MTcwMDAwMzYwMC41fQ.n_tdEW6fj_mcHipxPQDW8a5DwlbwwMAf3W2hbH8pWTQ"
/* openssl: what jwt_sign("u1", 3600, "k", NOW) must produce: header HS,
 * payload {"exp":1700003600,"iat":1700000000,"sub":"u1"}. */
#define VEC_SIGN_TTL                                                                               \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                                                        \
    "eyJleHAiOjE3MDAwMDM2MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoi"                                     \
    "dTEifQ.qeWPziTgbL4jnSjGscPX1k7Ft3gZN8zxnC-d4aTD8fU"
/* openssl: jwt_sign("u1", 0, "k", NOW): payload {"iat":1700000000,"sub":"u1"}, no exp. */
#define VEC_SIGN_NO_TTL                                                                            \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsInN1YiI6InUxIn0."                \
    "HSrSThXAH00MHrs9Dp4JHMXstLdQ1K-UykKsWsTjZCM"
/* openssl: header {"alg":"none"}, payload {"sub":"u1"}, a real HMAC with "k". */
#define VEC_NONE_SIGNED                                                                            \
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSJ9.sLrkxuorh3euKBgTHQaTQOggeT-e4lebkxfUCQKLYyw"
/* openssl: header {"alg":"HS512","typ":"JWT"}, payload {"sub":"u1"}, HMAC-SHA256 with "k". */
#define VEC_HS512                                                                                  \
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSJ9."                                       \
    "CvQ8K_oAeQR1Iixg-qqIAAuPFmnTUfLY0Xg3TpyQ8JU"

static char test_sub[JWT_MAX_SUB + 1];

static jwt_result_t verify(const char *t)
{
    return jwt_verify(t, strlen(t), SECRET, strlen(SECRET), NOW, LEEWAY, test_sub);
}

static jwt_result_t verify_leeway(const char *t, int leeway_s)
{
    return jwt_verify(t, strlen(t), SECRET, strlen(SECRET), NOW, leeway_s, test_sub);
}

/* header.payload.signature with a correct HS256 signature (secret SECRET)
 * over the given JSON texts, whatever they say. Returns a static buffer. */
static char *forge(const char *header, const char *payload)
{
    static char out[3 * JWT_MAX_TOKEN];
    size_t n = b64_encode(out, (const unsigned char *)header, strlen(header), 1);
    out[n++] = '.';
    n += b64_encode(out + n, (const unsigned char *)payload, strlen(payload), 1);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)out, n, mac, &ml);
    out[n++] = '.';
    b64_encode(out + n, mac, ml, 1);
    return out;
}

/* A token signed with SECRET whose payload is {"sub":"u"} plus `claims`. */
static char *forge_claims(const char *claims)
{
    char payload[256];
    snprintf(payload, sizeof payload, "{\"sub\":\"u\"%s%s}", *claims ? "," : "", claims);
    return forge(HS, payload);
}

/* ---- signing ---- */

static void sign_then_verify_round_trips(void)
{
    const char *subs[] = {"u1", "alice@example.com", "\xc3\xbc-umlaut", "a b:c/d"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char *t = jwt_sign(subs[i], 60, SECRET, strlen(SECRET), NOW);
        CHECK(t != NULL);
        if (!t)
            continue;
        CHECK_INT(verify(t), JWT_OK);
        CHECK_STR(test_sub, subs[i]);
        CHECK_INT(jwt_well_formed(t, strlen(t)), 1);
        free(t);
    }
}

static void sign_matches_the_openssl_vector(void)
{
    char *t = jwt_sign("u1", 3600, SECRET, strlen(SECRET), NOW);
    CHECK_STR(t, VEC_SIGN_TTL);
    free(t);
}

static void sign_with_ttl_zero_has_no_exp(void)
{
    char *t = jwt_sign("u1", 0, SECRET, strlen(SECRET), NOW);
    CHECK_STR(t, VEC_SIGN_NO_TTL);
    /* Valid a century later: nothing expires it. */
    if (t)
        CHECK_INT(jwt_verify(t, strlen(t), SECRET, 1, (time_t)NOW + 3153600000LL, 0, test_sub),
                  JWT_OK);
    free(t);
}

static void signed_token_expires_after_its_ttl(void)
{
    char *t = jwt_sign("u1", 3600, SECRET, strlen(SECRET), NOW);
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK_INT(jwt_verify(t, strlen(t), SECRET, 1, NOW + 3599, 0, test_sub), JWT_OK);
    CHECK_INT(jwt_verify(t, strlen(t), SECRET, 1, NOW + 3600, 0, test_sub), JWT_EXPIRED);
    free(t);
}

/* 1 if jwt_sign refuses sub (frees what it wrongly returns, so a failing
 * check reports the case instead of a leak). */
static int sign_refuses(const char *sub)
{
    char *t = jwt_sign(sub, 60, SECRET, 1, NOW);
    int refused = t == NULL;
    free(t);
    return refused;
}

static void sign_refuses_an_invalid_sub(void)
{
    char long_sub[JWT_MAX_SUB + 2];
    memset(long_sub, 'a', sizeof long_sub - 1);
    long_sub[sizeof long_sub - 1] = '\0';
    CHECK(sign_refuses(NULL));
    CHECK(sign_refuses(""));
    CHECK(sign_refuses("a\nb"));
    CHECK(sign_refuses("a\x7f"));
    CHECK(sign_refuses(long_sub)); /* 129 bytes */
    long_sub[JWT_MAX_SUB] = '\0';  /* 128 bytes */
    CHECK(!sign_refuses(long_sub));
}

/* ---- signature ---- */

static void openssl_vectors_verify(void)
{
    CHECK_INT(verify(VEC_U1), JWT_OK);
    CHECK_STR(test_sub, "u1");
    const char *t = VEC_REAL_EXP;
    CHECK_INT(jwt_verify(t, strlen(t), VEC_REAL_EXP_SECRET, strlen(VEC_REAL_EXP_SECRET), NOW, 0,
                         test_sub),
              JWT_OK);
    CHECK_STR(test_sub, "user-42");
}

static void wrong_secret_is_bad_signature(void)
{
    CHECK_INT(jwt_verify(VEC_U1, strlen(VEC_U1), "K", 1, NOW, LEEWAY, test_sub), JWT_BAD_SIGNATURE);
    CHECK_INT(jwt_verify(VEC_U1, strlen(VEC_U1), "kk", 2, NOW, LEEWAY, test_sub),
              JWT_BAD_SIGNATURE);
    CHECK_INT(jwt_verify(VEC_U1, strlen(VEC_U1), "", 0, NOW, LEEWAY, test_sub), JWT_BAD_SIGNATURE);
}

static void any_flipped_signature_char_is_bad_signature(void)
{
    char t[] = VEC_U1;
    size_t sig = (size_t)(strrchr(t, '.') - t) + 1, len = strlen(t);
    for (size_t i = sig; i < len; i++) {
        char was = t[i];
        t[i] = was == 'A' ? 'B' : 'A';
        if (verify(t) != JWT_BAD_SIGNATURE)
            CHECK_INT(i * 1000 + verify(t), i * 1000 + JWT_BAD_SIGNATURE); /* names the position */
        t[i] = was;
    }
    CHECK_INT(verify(t), JWT_OK);
}

static void tampered_payload_is_bad_signature(void)
{
    /* VEC_U1's header and signature around a payload saying sub "u2". */
    char t[512], payload[128];
    const char *p2 = "{\"sub\":\"u2\",\"exp\":4102444800}";
    b64_encode(payload, (const unsigned char *)p2, strlen(p2), 1);
    snprintf(t, sizeof t, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.%s.%s", payload,
             strrchr(VEC_U1, '.') + 1);
    CHECK_INT(verify(t), JWT_BAD_SIGNATURE);
}

static void signature_of_the_wrong_length_is_bad_signature(void)
{
    char t[512];
    snprintf(t, sizeof t, "%s", VEC_U1);
    t[strlen(t) - 4] = '\0'; /* 39 characters */
    CHECK_INT(verify(t), JWT_BAD_SIGNATURE);
    snprintf(t, sizeof t, "%sAAAA", VEC_U1); /* 47 characters */
    CHECK_INT(verify(t), JWT_BAD_SIGNATURE);
    snprintf(t, sizeof t, "%s", VEC_U1);
    *(strrchr(t, '.') + 1) = '\0'; /* HS256 with an empty signature */
    CHECK_INT(verify(t), JWT_BAD_SIGNATURE);
}

/* ---- time claims ---- */

static void expired_token_is_refused(void)
{
    CHECK_INT(verify(forge_claims("\"exp\":1699990000")), JWT_EXPIRED);
    CHECK_INT(verify(forge_claims("\"exp\":0")), JWT_EXPIRED);
}

static void not_yet_valid_token_is_refused(void)
{
    CHECK_INT(verify(forge_claims("\"nbf\":1700001000")), JWT_NOT_YET_VALID);
    CHECK_INT(verify(forge_claims("\"nbf\":4102444800,\"exp\":4102444900")), JWT_NOT_YET_VALID);
}

static void leeway_extends_exp_and_nbf_by_exactly_its_seconds(void)
{
    /* expired when now >= exp + leeway */
    CHECK_INT(verify(forge_claims("\"exp\":1699999971")), JWT_OK);      /* NOW - 29 */
    CHECK_INT(verify(forge_claims("\"exp\":1699999970")), JWT_EXPIRED); /* NOW - 30 */
    /* not yet valid when now < nbf - leeway */
    CHECK_INT(verify(forge_claims("\"nbf\":1700000030")), JWT_OK);            /* NOW + 30 */
    CHECK_INT(verify(forge_claims("\"nbf\":1700000031")), JWT_NOT_YET_VALID); /* NOW + 31 */
    /* without leeway the boundaries are exp itself and nbf itself */
    CHECK_INT(verify_leeway(forge_claims("\"exp\":1700000001"), 0), JWT_OK);
    CHECK_INT(verify_leeway(forge_claims("\"exp\":1700000000"), 0), JWT_EXPIRED);
    CHECK_INT(verify_leeway(forge_claims("\"nbf\":1700000000"), 0), JWT_OK);
    CHECK_INT(verify_leeway(forge_claims("\"nbf\":1700000001"), 0), JWT_NOT_YET_VALID);
}

static void real_number_times_are_honoured(void)
{
    CHECK_INT(verify_leeway(forge_claims("\"exp\":1700000000.5"), 0), JWT_OK);
    CHECK_INT(verify_leeway(forge_claims("\"exp\":1699999999.5"), 0), JWT_EXPIRED);
    CHECK_INT(verify_leeway(forge_claims("\"nbf\":1700000000.5"), 0), JWT_NOT_YET_VALID);
    CHECK_INT(verify_leeway(forge_claims("\"exp\":1.8e9"), 0), JWT_OK);
}

static void time_claims_that_are_not_numbers_are_malformed(void)
{
    CHECK_INT(verify(forge_claims("\"exp\":\"4102444800\"")), JWT_MALFORMED);
    CHECK_INT(verify(forge_claims("\"exp\":null")), JWT_MALFORMED);
    CHECK_INT(verify(forge_claims("\"exp\":true")), JWT_MALFORMED);
    CHECK_INT(verify(forge_claims("\"exp\":[4102444800]")), JWT_MALFORMED);
    CHECK_INT(verify(forge_claims("\"nbf\":\"0\"")), JWT_MALFORMED);
    CHECK_INT(verify(forge_claims("\"nbf\":{}")), JWT_MALFORMED);
}

/* ---- alg ---- */

static void alg_none_is_refused_with_or_without_a_signature(void)
{
    CHECK_INT(verify(VEC_NONE_SIGNED), JWT_BAD_ALG);
    char t[256];
    snprintf(t, sizeof t, "%s", VEC_NONE_SIGNED);
    *(strrchr(t, '.') + 1) = '\0'; /* the classic unsecured JWT: "h.p." */
    CHECK_INT(verify(t), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"alg\":\"None\"}", "{\"sub\":\"u\"}")), JWT_BAD_ALG);
}

static void alg_hs512_is_refused(void)
{
    CHECK_INT(verify(VEC_HS512), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"alg\":\"RS256\"}", "{\"sub\":\"u\"}")), JWT_BAD_ALG);
}

static void missing_or_odd_alg_is_refused(void)
{
    CHECK_INT(verify(forge("{\"typ\":\"JWT\"}", "{\"sub\":\"u\"}")), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{}", "{\"sub\":\"u\"}")), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"alg\":\"hs256\"}", "{\"sub\":\"u\"}")), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"alg\":\"HS256 \"}", "{\"sub\":\"u\"}")), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"alg\":256}", "{\"sub\":\"u\"}")), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"alg\":[\"HS256\"]}", "{\"sub\":\"u\"}")), JWT_BAD_ALG);
    CHECK_INT(verify(forge("{\"alg\":\"HS256\"}", "{\"sub\":\"u\"}")), JWT_OK); /* typ optional */
}

static void alg_is_checked_before_the_signature(void)
{
    /* A wrong alg with a wrong signature says bad_alg, never bad_signature. */
    char t[256];
    snprintf(t, sizeof t, "%s", VEC_HS512);
    char *sig = strrchr(t, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    CHECK_INT(verify(t), JWT_BAD_ALG);
    CHECK_INT(jwt_verify(VEC_NONE_SIGNED, strlen(VEC_NONE_SIGNED), "other", 5, NOW, 0, test_sub),
              JWT_BAD_ALG);
}

/* ---- shape ---- */

static void header_that_is_not_a_json_object_is_malformed(void)
{
    CHECK_INT(verify(forge("not json", "{\"sub\":\"u\"}")), JWT_MALFORMED);
    CHECK_INT(verify(forge("[\"HS256\"]", "{\"sub\":\"u\"}")), JWT_MALFORMED);
    CHECK_INT(verify(forge("\"HS256\"", "{\"sub\":\"u\"}")), JWT_MALFORMED);
    CHECK_INT(verify(forge("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{\"sub\":\"u\"}")),
              JWT_MALFORMED);
    CHECK_INT(verify(forge("{\"alg\":\"HS256\"", "{\"sub\":\"u\"}")), JWT_MALFORMED);
}

static void payload_that_is_not_a_json_object_is_malformed(void)
{
    CHECK_INT(verify(forge(HS, "not json")), JWT_MALFORMED);
    CHECK_INT(verify(forge(HS, "[1]")), JWT_MALFORMED);
    CHECK_INT(verify(forge(HS, "\"u\"")), JWT_MALFORMED);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"u\",\"sub\":\"admin\"}")), JWT_MALFORMED);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"u\"} trailing")), JWT_MALFORMED);
}

static void segments_that_are_not_base64url_are_malformed(void)
{
    char t[512];
    const char *sig = strrchr(VEC_U1, '.') + 1;
    const char *cases[] = {
        "eyJhbGciOiJIUzI1NiJ9=.eyJzdWIiOiJ1In0.%s", /* padding */
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0+.%s", /* standard alphabet */
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0/.%s",
        "eyJhbGc!OiJIUzI1NiJ9.eyJzdWIiOiJ1In0.%s",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi J1In0.%s",
        "eyJhbGciOiJIUzI1NiJ9A.eyJzdWIiOiJ1In0.%s", /* length 1 mod 4 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(t, sizeof t, cases[i], sig);
        CHECK_INT(verify(t), JWT_MALFORMED);
        CHECK_INT(jwt_well_formed(t, strlen(t)), 0);
    }
    snprintf(t, sizeof t, "%s", VEC_U1);
    t[strlen(t) - 1] = '!'; /* signature outside the alphabet */
    CHECK_INT(verify(t), JWT_MALFORMED);
    CHECK_INT(jwt_well_formed(t, strlen(t)), 0);
}

static void two_or_four_segments_are_malformed(void)
{
    char t[512];
    const char *bad[] = {"",
                         ".",
                         "..",
                         "...",
                         "abc",
                         "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0",
                         ".eyJzdWIiOiJ1In0.x",
                         "eyJhbGciOiJIUzI1NiJ9..x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_INT(verify(bad[i]), JWT_MALFORMED);
    snprintf(t, sizeof t, "%s.", VEC_U1);
    CHECK_INT(verify(t), JWT_MALFORMED);
    snprintf(t, sizeof t, "%s.%s", VEC_U1, strrchr(VEC_U1, '.') + 1);
    CHECK_INT(verify(t), JWT_MALFORMED);
    CHECK_INT(jwt_verify(NULL, 0, SECRET, 1, NOW, 0, test_sub), JWT_MALFORMED);
}

static void token_over_the_size_limit_is_malformed(void)
{
    /* A correctly signed token with a large extra claim, just over and just
     * under JWT_MAX_TOKEN. The payload grows by 4 characters per 3 bytes. */
    static char payload[JWT_MAX_TOKEN], claim[7000];
    size_t pad = 6000;
    for (; pad < sizeof claim - 1; pad++) {
        memset(claim, 'x', pad);
        claim[pad] = '\0';
        snprintf(payload, sizeof payload, "{\"sub\":\"u\",\"pad\":\"%s\"}", claim);
        if (strlen(forge(HS, payload)) > JWT_MAX_TOKEN)
            break;
    }
    char *t = forge(HS, payload);
    CHECK(strlen(t) > JWT_MAX_TOKEN);
    CHECK_INT(verify(t), JWT_MALFORMED);
    CHECK_INT(jwt_well_formed(t, strlen(t)), 0);
    claim[pad - 3] = '\0'; /* three bytes less: four characters shorter */
    snprintf(payload, sizeof payload, "{\"sub\":\"u\",\"pad\":\"%s\"}", claim);
    t = forge(HS, payload);
    CHECK(strlen(t) <= JWT_MAX_TOKEN);
    CHECK_INT(verify(t), JWT_OK);
    CHECK_INT(jwt_well_formed(t, strlen(t)), 1);
}

static void token_need_not_be_nul_terminated(void)
{
    char buf[512];
    size_t n = strlen(VEC_U1);
    memcpy(buf, VEC_U1, n);
    memcpy(buf + n, ".garbage", 9);
    CHECK_INT(jwt_verify(buf, n, SECRET, 1, NOW, 0, test_sub), JWT_OK);
    CHECK_STR(test_sub, "u1");
    CHECK_INT(jwt_well_formed(buf, n), 1);
    CHECK_INT(jwt_verify(buf, n - 1, SECRET, 1, NOW, 0, test_sub), JWT_BAD_SIGNATURE);
}

/* ---- sub ---- */

static void sub_missing_empty_long_control_or_not_a_string_is_bad_sub(void)
{
    char payload[300];
    CHECK_INT(verify(forge(HS, "{\"exp\":4102444800}")), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"\"}")), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":42}")), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":null}")), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":[\"u\"]}")), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"a\\u0001b\"}")), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"a\\nb\"}")), JWT_BAD_SUB);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"a\\u007f\"}")), JWT_BAD_SUB);
    snprintf(payload, sizeof payload, "{\"sub\":\"%0129d\"}", 0);
    CHECK_INT(verify(forge(HS, payload)), JWT_BAD_SUB);
}

static void sub_of_128_bytes_or_non_ascii_is_accepted(void)
{
    char payload[300];
    snprintf(payload, sizeof payload, "{\"sub\":\"%0128d\"}", 0);
    CHECK_INT(verify(forge(HS, payload)), JWT_OK);
    CHECK_INT(strlen(test_sub), 128);
    CHECK_INT(verify(forge(HS, "{\"sub\":\"\\u00fc\"}")), JWT_OK);
    CHECK_STR(test_sub, "\xc3\xbc");
}

/* ---- jwt_well_formed ---- */

static void well_formed_accepts_every_jwt_shape(void)
{
    char t[256];
    CHECK_INT(jwt_well_formed(VEC_U1, strlen(VEC_U1)), 1);
    CHECK_INT(jwt_well_formed(VEC_HS512, strlen(VEC_HS512)), 1); /* refused later, by authd */
    snprintf(t, sizeof t, "%s", VEC_NONE_SIGNED);
    *(strrchr(t, '.') + 1) = '\0';
    CHECK_INT(jwt_well_formed(t, strlen(t)), 1); /* unsecured: refused later as bad_alg */
    CHECK_INT(jwt_well_formed("e30.e30.", 8), 1);
    CHECK_INT(jwt_well_formed("e30.bm90IGpzb24.x_-Y", 20), 1); /* payload is not checked */
}

static void well_formed_refuses_what_is_not_a_jwt(void)
{
    const char *bad[] = {"",
                         "abc",
                         "e30.e30",
                         "e30.e30.e30.e30",
                         ".e30.x",
                         "e30..x",
                         "!!!.e30.x",
                         "e30.!!!!.x",
                         "e30.e30.!",
                         "e30.e30.a=",
                         "bm90IGpzb24.e30.x" /* header "not json" */,
                         "WzFd.e30.x" /* header [1] */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (jwt_well_formed(bad[i], strlen(bad[i])) != 0)
            CHECK_STR(bad[i], "(refused)"); /* names the case that passed */
    CHECK_INT(jwt_well_formed(NULL, 0), 0);
}

static void reason_names_are_the_documented_words(void)
{
    CHECK_STR(jwt_reason_name(JWT_OK), "ok");
    CHECK_STR(jwt_reason_name(JWT_MALFORMED), "malformed");
    CHECK_STR(jwt_reason_name(JWT_BAD_ALG), "bad_alg");
    CHECK_STR(jwt_reason_name(JWT_BAD_SIGNATURE), "bad_signature");
    CHECK_STR(jwt_reason_name(JWT_EXPIRED), "expired");
    CHECK_STR(jwt_reason_name(JWT_NOT_YET_VALID), "not_yet_valid");
    CHECK_STR(jwt_reason_name(JWT_BAD_SUB), "bad_sub");
}

static void extra_claims_are_signed_and_read_back(void)
{
    char *t = jwt_sign_claims("u1", 0, "{\"channels\":[\"a\",\"b.*\"],\"sub\":\"evil\"}", SECRET,
                              strlen(SECRET), NOW);
    CHECK(t != NULL);
    char sub[JWT_MAX_SUB + 1], *claims = NULL;
    CHECK_INT(jwt_verify_claims(t, strlen(t), SECRET, strlen(SECRET), NOW, 0, sub, &claims),
              JWT_OK);
    CHECK_STR(sub, "u1"); /* extra claims never replace sub */
    CHECK_STR(claims, "{\"channels\":[\"a\",\"b.*\"],\"iat\":1700000000,\"sub\":\"u1\"}");
    free(claims);
    claims = (char *)1;
    CHECK_INT(jwt_verify_claims(t, strlen(t), "other", 5, NOW, 0, sub, &claims), JWT_BAD_SIGNATURE);
    CHECK(claims == NULL);
    free(t);
    CHECK(jwt_sign_claims("u1", 0, "[1]", SECRET, strlen(SECRET), NOW) == NULL);
}

CHECK_MAIN(CHECK_CASE(sign_then_verify_round_trips),
           CHECK_CASE(extra_claims_are_signed_and_read_back),
           CHECK_CASE(sign_matches_the_openssl_vector), CHECK_CASE(sign_with_ttl_zero_has_no_exp),
           CHECK_CASE(signed_token_expires_after_its_ttl), CHECK_CASE(sign_refuses_an_invalid_sub),
           CHECK_CASE(openssl_vectors_verify), CHECK_CASE(wrong_secret_is_bad_signature),
           CHECK_CASE(any_flipped_signature_char_is_bad_signature),
           CHECK_CASE(tampered_payload_is_bad_signature),
           CHECK_CASE(signature_of_the_wrong_length_is_bad_signature),
           CHECK_CASE(expired_token_is_refused), CHECK_CASE(not_yet_valid_token_is_refused),
           CHECK_CASE(leeway_extends_exp_and_nbf_by_exactly_its_seconds),
           CHECK_CASE(real_number_times_are_honoured),
           CHECK_CASE(time_claims_that_are_not_numbers_are_malformed),
           CHECK_CASE(alg_none_is_refused_with_or_without_a_signature),
           CHECK_CASE(alg_hs512_is_refused), CHECK_CASE(missing_or_odd_alg_is_refused),
           CHECK_CASE(alg_is_checked_before_the_signature),
           CHECK_CASE(header_that_is_not_a_json_object_is_malformed),
           CHECK_CASE(payload_that_is_not_a_json_object_is_malformed),
           CHECK_CASE(segments_that_are_not_base64url_are_malformed),
           CHECK_CASE(two_or_four_segments_are_malformed),
           CHECK_CASE(token_over_the_size_limit_is_malformed),
           CHECK_CASE(token_need_not_be_nul_terminated),
           CHECK_CASE(sub_missing_empty_long_control_or_not_a_string_is_bad_sub),
           CHECK_CASE(sub_of_128_bytes_or_non_ascii_is_accepted),
           CHECK_CASE(well_formed_accepts_every_jwt_shape),
           CHECK_CASE(well_formed_refuses_what_is_not_a_jwt),
           CHECK_CASE(reason_names_are_the_documented_words))
