/*
 * b64.h - base64url (RFC 4648 §5, no padding) and standard base64.
 */
#ifndef PORTCULLIS_B64_H
#define PORTCULLIS_B64_H

#include <stddef.h>

/* New NUL-terminated base64url text without padding; the caller frees it. */
char *pc_b64url_encode(const void *p, size_t n);
/*
 * Decodes base64url (padding tolerated, never required). *out is new (NUL-terminated for
 * convenience, *outlen excludes it). Returns 0 or PC_EPARSE.
 */
int pc_b64url_decode(const char *s, size_t n, unsigned char **out, size_t *outlen);
/* Standard alphabet with padding. */
char *pc_b64_encode(const void *p, size_t n);
int pc_b64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen);

#endif
