/*
 * jwt: see jwt.h. HS256 only; HMAC from OpenSSL, JSON from jansson.
 *
 * Invariant: the checks run in the order jwt.h lists. alg is read before the
 * signature is looked at, so "none" (or any other alg) can never reach the
 * signature comparison, and no claim of the payload is trusted before its
 * signature has verified. Every refusal maps to exactly one jwt_result_t.
 *
 * Pure functions with no shared state; callable from any thread.
 */
#include "jwt.h"

#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"

/* An HS256 signature is a SHA-256 HMAC: 32 bytes, 43 base64url characters. */
#define JWT_SIG_BYTES 32
#define JWT_SIG_CHARS 43

static const char jwt_header_hs256[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

const char *jwt_reason_name(jwt_result_t r)
{
    switch (r) {
    case JWT_OK:
        return "ok";
    case JWT_MALFORMED:
        return "malformed";
    case JWT_BAD_ALG:
        return "bad_alg";
    case JWT_BAD_SIGNATURE:
        return "bad_signature";
    case JWT_EXPIRED:
        return "expired";
    case JWT_NOT_YET_VALID:
        return "not_yet_valid";
    case JWT_BAD_SUB:
        return "bad_sub";
    }
    return "unknown";
}

/* The three dot-separated segments of a token, pointing into it. */
typedef struct jwt_parts {
    const char *seg[3];
    size_t len[3];
} jwt_parts_t;

/* 1 if s (n bytes) could be unpadded base64url: the alphabet only, and a
 * length that is not 1 mod 4. Whether the last character's spare bits are
 * zero is left to b64url_decode: a signature that fails only that is a bad
 * signature, not a malformed token. */
static int jwt_b64url_ok(const char *s, size_t n)
{
    if (n % 4 == 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (b64url_value(s[i]) < 0)
            return 0;
    return 1;
}

/* Split token into three base64url segments, the first two non-empty (the
 * third may be empty: an unsecured JWT, which jwt_verify refuses as bad_alg).
 * Returns 0, or -1 if the token does not have that shape. */
static int jwt_split(const char *token, size_t len, jwt_parts_t *p)
{
    if (!token || len == 0 || len > JWT_MAX_TOKEN)
        return -1;
    size_t start = 0;
    int n = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || token[i] == '.') {
            if (n == 3)
                return -1;
            p->seg[n] = token + start;
            p->len[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    if (n != 3 || p->len[0] == 0 || p->len[1] == 0)
        return -1;
    for (int k = 0; k < 3; k++)
        if (!jwt_b64url_ok(p->seg[k], p->len[k]))
            return -1;
    return 0;
}

/* Decode a base64url segment holding a JSON object (duplicate keys refused,
 * so that two "sub" or "alg" members cannot be read two ways).
 * Returns a new reference the caller decrefs, or NULL. */
static json_t *jwt_json_segment(const char *seg, size_t len)
{
    unsigned char *buf = malloc(len * 3 / 4 + 2);
    if (!buf)
        return NULL;
    long n = b64url_decode(buf, seg, len);
    json_t *j = NULL;
    if (n > 0)
        j = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* 1 if s (n bytes) is a valid sub: 1..JWT_MAX_SUB bytes, no control characters. */
static int jwt_sub_ok(const char *s, size_t n)
{
    if (n < 1 || n > JWT_MAX_SUB)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/* HMAC-SHA256 of data into mac (JWT_SIG_BYTES). Returns 0, or -1. */
static int jwt_hmac(const char *secret, size_t secret_len, const char *data, size_t n,
                    unsigned char mac[JWT_SIG_BYTES])
{
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int out_len = 0;
    if (secret_len > INT_MAX)
        return -1;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)data, n, out,
              &out_len) ||
        out_len != JWT_SIG_BYTES)
        return -1;
    memcpy(mac, out, JWT_SIG_BYTES);
    return 0;
}

int jwt_well_formed(const char *token, size_t len)
{
    jwt_parts_t p;
    if (jwt_split(token, len, &p) != 0)
        return 0;
    json_t *h = jwt_json_segment(p.seg[0], p.len[0]);
    json_decref(h);
    return h != NULL;
}

/* 1 if the header's alg is exactly "HS256". */
static int jwt_alg_is_hs256(json_t *header)
{
    json_t *alg = json_object_get(header, "alg");
    return json_is_string(alg) && json_string_length(alg) == 5 &&
           memcmp(json_string_value(alg), "HS256", 5) == 0;
}

/* A time claim: absent -> *present = 0; a JSON number (integer or real) ->
 * *out; anything else -> -1 (the token is malformed). */
static int jwt_time_claim(json_t *payload, const char *name, double *out, int *present)
{
    json_t *v = json_object_get(payload, name);
    *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return 0;
}

/* The payload's claims, once the signature is known to be good. */
static jwt_result_t jwt_check_claims(json_t *payload, time_t now, int leeway_s,
                                     char sub_out[JWT_MAX_SUB + 1])
{
    double exp = 0, nbf = 0;
    int has_exp, has_nbf;
    if (jwt_time_claim(payload, "exp", &exp, &has_exp) != 0 ||
        jwt_time_claim(payload, "nbf", &nbf, &has_nbf) != 0)
        return JWT_MALFORMED;
    if (has_exp && (double)now >= exp + leeway_s)
        return JWT_EXPIRED;
    if (has_nbf && (double)now < nbf - leeway_s)
        return JWT_NOT_YET_VALID;
    json_t *sub = json_object_get(payload, "sub");
    if (!json_is_string(sub) || !jwt_sub_ok(json_string_value(sub), json_string_length(sub)))
        return JWT_BAD_SUB;
    memcpy(sub_out, json_string_value(sub), json_string_length(sub) + 1);
    return JWT_OK;
}

jwt_result_t jwt_verify(const char *token, size_t len, const char *secret, size_t secret_len,
                        time_t now, int leeway_s, char sub_out[JWT_MAX_SUB + 1])
{
    return jwt_verify_claims(token, len, secret, secret_len, now, leeway_s, sub_out, NULL);
}

jwt_result_t jwt_verify_claims(const char *token, size_t len, const char *secret, size_t secret_len,
                               time_t now, int leeway_s, char sub_out[JWT_MAX_SUB + 1],
                               char **claims_out)
{
    if (claims_out)
        *claims_out = NULL;
    jwt_parts_t p;
    if (jwt_split(token, len, &p) != 0)
        return JWT_MALFORMED;

    json_t *header = jwt_json_segment(p.seg[0], p.len[0]);
    if (!header)
        return JWT_MALFORMED;
    int alg_ok = jwt_alg_is_hs256(header);
    json_decref(header);
    if (!alg_ok)
        return JWT_BAD_ALG;

    /* jwt_split checked the alphabet; a signature of any other length, or
     * whose last character carries stray bits, cannot be an HS256 one. */
    unsigned char sig[JWT_SIG_CHARS * 3 / 4 + 1], mac[JWT_SIG_BYTES];
    if (p.len[2] != JWT_SIG_CHARS || b64url_decode(sig, p.seg[2], p.len[2]) != JWT_SIG_BYTES)
        return JWT_BAD_SIGNATURE;
    if (jwt_hmac(secret, secret_len, token, p.len[0] + 1 + p.len[1], mac) != 0 ||
        CRYPTO_memcmp(sig, mac, JWT_SIG_BYTES) != 0)
        return JWT_BAD_SIGNATURE;

    json_t *payload = jwt_json_segment(p.seg[1], p.len[1]);
    if (!payload)
        return JWT_MALFORMED;
    jwt_result_t r = jwt_check_claims(payload, now, leeway_s, sub_out);
    if (r == JWT_OK && claims_out)
        *claims_out = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    return r;
}

char *jwt_sign(const char *sub, long ttl_s, const char *secret, size_t secret_len, time_t now)
{
    return jwt_sign_claims(sub, ttl_s, NULL, secret, secret_len, now);
}

char *jwt_sign_claims(const char *sub, long ttl_s, const char *extra, const char *secret,
                      size_t secret_len, time_t now)
{
    json_t *claims = NULL, *more = NULL;
    char *payload = NULL, *out = NULL;
    unsigned char mac[JWT_SIG_BYTES];

    if (!sub || !jwt_sub_ok(sub, strlen(sub)))
        goto fail;
    claims = json_pack("{s:s,s:I}", "sub", sub, "iat", (json_int_t)now);
    if (!claims)
        goto fail;
    if (ttl_s > 0 && json_object_set_new(claims, "exp", json_integer((json_int_t)now + ttl_s)) != 0)
        goto fail;
    if (extra) {
        more = json_loads(extra, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(more) || json_object_update_missing(claims, more) != 0)
            goto fail;
    }
    /* Sorted keys: the same claims always give the same token (tests rely on it). */
    payload = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
    if (!payload)
        goto fail;

    size_t header_len = sizeof jwt_header_hs256 - 1, payload_len = strlen(payload);
    out = malloc(b64_encoded_len(header_len, 1) + 1 + b64_encoded_len(payload_len, 1) + 1 +
                 b64_encoded_len(JWT_SIG_BYTES, 1) + 1);
    if (!out)
        goto fail;
    size_t n = b64_encode(out, (const unsigned char *)jwt_header_hs256, header_len, 1);
    out[n++] = '.';
    n += b64_encode(out + n, (const unsigned char *)payload, payload_len, 1);
    if (jwt_hmac(secret, secret_len, out, n, mac) != 0)
        goto fail;
    out[n++] = '.';
    b64_encode(out + n, mac, JWT_SIG_BYTES, 1);
    free(payload);
    json_decref(claims);
    json_decref(more);
    return out;

fail:
    free(out);
    free(payload);
    json_decref(claims);
    json_decref(more);
    return NULL;
}
