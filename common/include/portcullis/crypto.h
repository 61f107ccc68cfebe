/*
 * crypto.h - the primitives portcullis builds on (OpenSSL underneath): randomness, SHA-256,
 * HKDF-SHA256 and AES-256-GCM.
 */
#ifndef PORTCULLIS_CRYPTO_H
#define PORTCULLIS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define PC_AEAD_KEY_LEN 32
#define PC_AEAD_NONCE_LEN 12
#define PC_AEAD_TAG_LEN 16

/* Fills p with n bytes from the CSPRNG. Returns 0 or PC_EIO. */
int pc_random_bytes(void *p, size_t n);
/* New base64url string of n random bytes; the caller frees it. Aborts if the RNG fails. */
char *pc_random_token(size_t n);

void pc_sha256(const void *p, size_t n, uint8_t out[32]);
/* New lowercase hex of SHA-256(p); the caller frees it. */
char *pc_sha256_hex(const void *p, size_t n);

/* HKDF-SHA256 (RFC 5869). Returns 0 or PC_EINVAL. */
int pc_hkdf_sha256(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
                   const void *info, size_t info_len, void *out, size_t out_len);

/*
 * AES-256-GCM. Seal writes pt_len + PC_AEAD_TAG_LEN bytes (ciphertext then tag) to out.
 * Open takes ciphertext+tag (ct_len >= PC_AEAD_TAG_LEN) and writes ct_len - PC_AEAD_TAG_LEN
 * bytes; it returns PC_EAUTH when the tag does not verify (out is then cleansed).
 */
int pc_aead_seal(const uint8_t key[PC_AEAD_KEY_LEN], const uint8_t nonce[PC_AEAD_NONCE_LEN],
                 const void *aad, size_t aad_len, const void *pt, size_t pt_len, uint8_t *out);
int pc_aead_open(const uint8_t key[PC_AEAD_KEY_LEN], const uint8_t nonce[PC_AEAD_NONCE_LEN],
                 const void *aad, size_t aad_len, const void *ct, size_t ct_len, uint8_t *out);

/* Constant-time comparison: 1 when equal. */
int pc_memeq(const void *a, const void *b, size_t n);

#endif
