/*
 * jwt: see jwt.h. The order of checks matters: alg is read before anything is
 * verified so that "none" can never reach the signature comparison, and the
 * signature is verified before the payload's claims are trusted.
 */
#include "jwt.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"

const char *jwt_reason_name(jwt_result_t r)
{
    switch (r) {
    case JWT_OK: return "ok";
    case JWT_MALFORMED: return "malformed";
    case JWT_BAD_ALG: return "bad_alg";
    case JWT_BAD_SIGNATURE: return "bad_signature";
    case JWT_EXPIRED: return "expired";
    case JWT_NOT_YET_VALID: return "not_yet_valid";
    case JWT_BAD_SUB: return "bad_sub";
    }
    return "unknown";
}

/* Split token into its three segments. Returns 0, or -1 if it is not three
 * non-empty base64url runs separated by dots (the signature may be empty only
 * for the caller to refuse it as bad_alg/bad_signature). */
typedef struct jwt_parts {
    const char *seg[3];
    size_t len[3];
} jwt_parts_t;

static int jwt_split(const char *token, size_t len, jwt_parts_t *p)
{
    if (len == 0 || len > JWT_MAX_TOKEN)
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
    return 0;
}

/* Decode a base64url segment holding a JSON object. Returns a new reference or NULL. */
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

int jwt_well_formed(const char *token, size_t len)
{
    jwt_parts_t p;
    /* An empty signature is still the shape of a JWT (an unsecured one):
     * let authd refuse it as bad_alg, which tells the client why. */
    if (jwt_split(token, len, &p) != 0)
        return 0;
    for (size_t i = 0; i < p.len[2]; i++) {
        char c = p.seg[2][i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    json_t *h = jwt_json_segment(p.seg[0], p.len[0]);
    json_decref(h);
    return h != NULL;
}

/* Numeric claim: absent -> 0 and *present = 0; a number -> its value; else -1. */
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

jwt_result_t jwt_verify(const char *token, size_t len, const char *secret, size_t secret_len,
                        time_t now, int leeway_s, char sub_out[JWT_MAX_SUB + 1])
{
    jwt_parts_t p;
    if (jwt_split(token, len, &p) != 0)
        return JWT_MALFORMED;
    json_t *header = jwt_json_segment(p.seg[0], p.len[0]);
    if (!header)
        return JWT_MALFORMED;
    json_t *alg = json_object_get(header, "alg");
    int alg_ok = json_is_string(alg) && strcmp(json_string_value(alg), "HS256") == 0;
    json_decref(header);
    if (!alg_ok)
        return JWT_BAD_ALG;

    unsigned char sig[64];
    if (p.len[2] == 0 || p.len[2] > 86)
        return JWT_BAD_SIGNATURE;
    long sig_len = b64url_decode(sig, p.seg[2], p.len[2]);
    if (sig_len < 0)
        return JWT_MALFORMED;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    size_t signing_len = p.len[0] + 1 + p.len[1];
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)token, signing_len, mac,
              &mac_len))
        return JWT_BAD_SIGNATURE;
    if ((unsigned long)sig_len != mac_len || CRYPTO_memcmp(sig, mac, mac_len) != 0)
        return JWT_BAD_SIGNATURE;

    json_t *payload = jwt_json_segment(p.seg[1], p.len[1]);
    if (!payload)
        return JWT_MALFORMED;
    jwt_result_t r = JWT_OK;
    double exp = 0, nbf = 0;
    int has_exp, has_nbf;
    if (jwt_time_claim(payload, "exp", &exp, &has_exp) || jwt_time_claim(payload, "nbf", &nbf, &has_nbf)) {
        r = JWT_MALFORMED;
        goto done;
    }
    if (has_exp && (double)now >= exp + leeway_s) {
        r = JWT_EXPIRED;
        goto done;
    }
    if (has_nbf && (double)now < nbf - leeway_s) {
        r = JWT_NOT_YET_VALID;
        goto done;
    }
    json_t *sub = json_object_get(payload, "sub");
    if (!json_is_string(sub) || !jwt_sub_ok(json_string_value(sub), json_string_length(sub))) {
        r = JWT_BAD_SUB;
        goto done;
    }
    memcpy(sub_out, json_string_value(sub), json_string_length(sub) + 1);
done:
    json_decref(payload);
    return r;
}

char *jwt_sign(const char *sub, long ttl_s, const char *secret, size_t secret_len, time_t now)
{
    if (!sub || !jwt_sub_ok(sub, strlen(sub)))
        return NULL;
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    json_t *claims = json_pack("{s:s,s:I}", "sub", sub, "iat", (json_int_t)now);
    if (!claims)
        return NULL;
    if (ttl_s > 0)
        json_object_set_new(claims, "exp", json_integer((json_int_t)now + ttl_s));
    char *payload = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(claims);
    if (!payload)
        return NULL;
    size_t hl = b64_encoded_len(sizeof header - 1, 1), pl = b64_encoded_len(strlen(payload), 1);
    size_t sl = b64_encoded_len(32, 1);
    char *out = malloc(hl + 1 + pl + 1 + sl + 1);
    if (!out) {
        free(payload);
        return NULL;
    }
    size_t n = b64_encode(out, (const unsigned char *)header, sizeof header - 1, 1);
    out[n++] = '.';
    n += b64_encode(out + n, (const unsigned char *)payload, strlen(payload), 1);
    free(payload);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)out, n, mac, &mac_len);
    out[n++] = '.';
    b64_encode(out + n, mac, mac_len, 1);
    return out;
}
