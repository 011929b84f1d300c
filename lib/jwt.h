/*
 * jwt: HS256 JSON Web Tokens, the only kind the cluster accepts.
 *
 * Verification checks, in order: three base64url segments; a header that is
 * a JSON object with "alg":"HS256" (anything else, "none" included, is
 * refused); the HMAC-SHA256 signature, compared in constant time; a payload
 * that is a JSON object; "exp" and "nbf" when present (numbers, with a
 * leeway); "sub" present, a string of 1..128 bytes with no control
 * characters. Pure functions; any thread.
 */
#ifndef PUSH_JWT_H
#define PUSH_JWT_H

#include <stddef.h>
#include <time.h>

#define JWT_MAX_SUB 128
#define JWT_MAX_TOKEN 8192

/* Why a token was refused; jwt_reason_name gives the word used in AuthReply
 * reasons, close reasons and metrics labels. */
typedef enum {
    JWT_OK = 0,
    JWT_MALFORMED,     /* "malformed": not three base64url segments of JSON objects */
    JWT_BAD_ALG,       /* "bad_alg": alg is not HS256 (none included) */
    JWT_BAD_SIGNATURE, /* "bad_signature" */
    JWT_EXPIRED,       /* "expired": now >= exp + leeway */
    JWT_NOT_YET_VALID, /* "not_yet_valid": now < nbf - leeway */
    JWT_BAD_SUB, /* "bad_sub": sub missing, not a string, empty, > 128 bytes or control chars */
} jwt_result_t;

const char *jwt_reason_name(jwt_result_t r);

/* Verify token (len bytes, need not be NUL-terminated) against secret.
 * On JWT_OK, the sub is copied NUL-terminated into sub_out (JWT_MAX_SUB + 1 bytes). */
jwt_result_t jwt_verify(const char *token, size_t len, const char *secret, size_t secret_len,
                        time_t now, int leeway_s, char sub_out[JWT_MAX_SUB + 1]);

/* As jwt_verify; on JWT_OK, when claims_out is not NULL, *claims_out is
 * the payload as compact JSON text (malloc'd, the caller frees; NULL when
 * out of memory): the caller reads claims of its own (`channels`,
 * `channel`) from it. */
jwt_result_t jwt_verify_claims(const char *token, size_t len, const char *secret, size_t secret_len,
                               time_t now, int leeway_s, char sub_out[JWT_MAX_SUB + 1],
                               char **claims_out);

/* Cheap structural check used before a WebSocket upgrade (no secret needed):
 * 1..JWT_MAX_TOKEN bytes, exactly three base64url segments (the first two
 * non-empty; an empty signature is the shape of an unsecured JWT, refused
 * later as bad_alg), and a header that decodes to a JSON object.
 * Returns 1 if well formed, else 0. */
int jwt_well_formed(const char *token, size_t len);

/* Mint an HS256 token with the given sub, iat = now and, when ttl_s > 0,
 * exp = now + ttl_s. Returns a malloc'd NUL-terminated token the caller
 * frees, or NULL if sub is not a valid sub or on allocation failure. */
char *jwt_sign(const char *sub, long ttl_s, const char *secret, size_t secret_len, time_t now);

/* As jwt_sign, with the members of extra (a JSON object as text, e.g.
 * {"channels":["a","b.*"]}; NULL for none) added to the claims. NULL when
 * extra is not a JSON object. */
char *jwt_sign_claims(const char *sub, long ttl_s, const char *extra, const char *secret,
                      size_t secret_len, time_t now);

#endif
