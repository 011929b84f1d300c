/*
 * b64: base64 (RFC 4648 section 4, padded) and base64url (section 5, no
 * padding, as JWTs use). Pure functions; any thread.
 */
#ifndef PUSH_B64_H
#define PUSH_B64_H

#include <stddef.h>

/* Encoded length of n bytes, without the NUL. */
size_t b64_encoded_len(size_t n, int url);

/* Encode n bytes of in into out (b64_encoded_len + 1 bytes, NUL-terminated).
 * url != 0 selects base64url without padding. Returns the length written. */
size_t b64_encode(char *out, const unsigned char *in, size_t n, int url);

/* Decode base64url (no padding; padding and the standard alphabet are refused)
 * of in_len bytes into out (at least in_len * 3 / 4 + 1 bytes).
 * Returns the decoded length, or -1 on any character or length outside the
 * alphabet. */
long b64url_decode(unsigned char *out, const char *in, size_t in_len);

/* The value (0..63) of one base64url character, or -1 outside the alphabet. */
int b64url_value(char c);

#endif
