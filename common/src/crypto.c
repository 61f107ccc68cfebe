/*
 * crypto.c - OpenSSL-backed primitives: RNG, SHA-256, HKDF (over OpenSSL's HMAC), AES-256-GCM.
 */
#include "portcullis/crypto.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "portcullis/b64.h"
#include "portcullis/base.h"

/*
 * The algorithms, fetched from OpenSSL's default provider once: an implicit fetch (passing
 * EVP_sha256() or a name) searches the provider's method store under a lock on every call,
 * which was a tenth of a Redis-session check. Fetched objects may be shared by threads.
 */
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_MD *alg_sha256;
static EVP_CIPHER *alg_gcm;
static EVP_MAC_CTX *hmac_sha256; /* a template: copied per thread, never used itself */
static pthread_key_t hmac_key;   /* the thread's copy, freed when the thread ends */

static void
free_hmac(void *ctx)
{
    EVP_MAC_CTX_free(ctx);
}

/* Kept for the process's life, never freed: a thread that is not joined at exit (one stuck in
 * a resolver) may still use them. */
static void
fetch_algs(void)
{
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA2-256", 0),
        OSSL_PARAM_construct_end()};

    alg_sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    alg_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (hmac != NULL && (hmac_sha256 = EVP_MAC_CTX_new(hmac)) != NULL &&
        EVP_MAC_CTX_set_params(hmac_sha256, params) != 1) {
        EVP_MAC_CTX_free(hmac_sha256);
        hmac_sha256 = NULL;
    }
    EVP_MAC_free(hmac); /* the context holds its own reference */
    if (pthread_key_create(&hmac_key, free_hmac) != 0) {
        EVP_MAC_CTX_free(hmac_sha256);
        hmac_sha256 = NULL;
    }
}

static void
algs(void)
{
    pthread_once(&algs_once, fetch_algs);
}

int
pc_random_bytes(void *p, size_t n)
{
    return RAND_bytes(p, (int)n) == 1 ? 0 : PC_EIO;
}

char *
pc_random_token(size_t n)
{
    unsigned char raw[64];
    char *out = NULL;

    if (n > sizeof(raw) || pc_random_bytes(raw, n) != 0)
        abort();
    out = pc_b64url_encode(raw, n);
    pc_cleanse(raw, sizeof(raw));
    return out;
}

void
pc_sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned int len = 32;

    algs();
    if (alg_sha256 == NULL || EVP_Digest(p, n, out, &len, alg_sha256, NULL) != 1)
        abort(); /* no SHA-256 in OpenSSL's default provider: nothing here can work */
}

char *
pc_sha256_hex(const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t md[32];
    char *out = pc_xmalloc(65);

    pc_sha256(p, n, md);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
    return out;
}

/*
 * The calling thread's HMAC-SHA256 context, or NULL. Keyed again for each use: a context made
 * per call would look the digest up again (EVP_KDF's HKDF does, per derive), which was most of
 * the key derivation of a Redis-session check.
 */
static EVP_MAC_CTX *
thread_hmac(void)
{
    EVP_MAC_CTX *ctx;

    algs();
    if (hmac_sha256 == NULL)
        return NULL;
    if ((ctx = pthread_getspecific(hmac_key)) == NULL && (ctx = EVP_MAC_CTX_dup(hmac_sha256)) &&
        pthread_setspecific(hmac_key, ctx) != 0) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* HMAC-SHA256(key, a || b || c) into out[32]; NULL parts are left out. */
static int
hmac3(EVP_MAC_CTX *ctx, const void *key, size_t key_len, const void *a, size_t a_len, const void *b,
      size_t b_len, const void *c, size_t c_len, uint8_t out[32])
{
    size_t len = 0;

    return EVP_MAC_init(ctx, key, key_len, NULL) == 1 &&
                   (a == NULL || EVP_MAC_update(ctx, a, a_len) == 1) &&
                   (b == NULL || EVP_MAC_update(ctx, b, b_len) == 1) &&
                   (c == NULL || EVP_MAC_update(ctx, c, c_len) == 1) &&
                   EVP_MAC_final(ctx, out, &len, 32) == 1 && len == 32
               ? 0
               : PC_EINVAL;
}

/* RFC 5869: PRK = HMAC(salt, IKM); T(i) = HMAC(PRK, T(i-1) || info || i); OKM = T(1) || ... */
int
pc_hkdf_sha256(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len, const void *info,
               size_t info_len, void *out, size_t out_len)
{
    static const uint8_t zeros[32];
    EVP_MAC_CTX *ctx = thread_hmac();
    uint8_t prk[32], t[32];
    uint8_t *o = out;
    int rc;

    if (ctx == NULL || out_len > 255 * sizeof(t))
        return PC_EINVAL;
    if (salt_len == 0) { /* "not provided": HashLen zeros */
        salt = zeros;
        salt_len = sizeof(zeros);
    }
    rc = hmac3(ctx, salt, salt_len, ikm, ikm_len, NULL, 0, NULL, 0, prk);
    for (size_t done = 0, i = 1; rc == 0 && done < out_len; i++) {
        uint8_t n = (uint8_t)i;
        size_t take = out_len - done < sizeof(t) ? out_len - done : sizeof(t);

        rc = hmac3(ctx, prk, sizeof(prk), done ? t : NULL, sizeof(t), info_len ? info : NULL,
                   info_len, &n, 1, t);
        if (rc == 0)
            memcpy(o + done, t, take);
        done += take;
    }
    /* the context keeps its last key (the PRK) for the thread's life: keyed with zeros */
    if (EVP_MAC_init(ctx, zeros, sizeof(zeros), NULL) != 1)
        rc = PC_EINVAL;
    pc_cleanse(prk, sizeof(prk));
    pc_cleanse(t, sizeof(t));
    if (rc != 0)
        pc_cleanse(out, out_len);
    return rc;
}

static EVP_CIPHER_CTX *
gcm_ctx(const uint8_t *key, const uint8_t *nonce, int enc)
{
    EVP_CIPHER_CTX *ctx;

    algs();
    if (alg_gcm == NULL)
        return NULL;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_CipherInit_ex2(ctx, alg_gcm, key, nonce, enc, NULL) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int
pc_aead_seal(const uint8_t key[PC_AEAD_KEY_LEN], const uint8_t nonce[PC_AEAD_NONCE_LEN],
             const void *aad, size_t aad_len, const void *pt, size_t pt_len, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = gcm_ctx(key, nonce, 1);
    int len = 0, rc = PC_EINVAL;

    if (ctx == NULL)
        return PC_EINVAL;
    if (EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) == 1 &&
        EVP_EncryptUpdate(ctx, out, &len, pt, (int)pt_len) == 1 &&
        EVP_EncryptFinal_ex(ctx, out + len, &len) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, PC_AEAD_TAG_LEN, out + pt_len) == 1)
        rc = 0;
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int
pc_aead_open(const uint8_t key[PC_AEAD_KEY_LEN], const uint8_t nonce[PC_AEAD_NONCE_LEN],
             const void *aad, size_t aad_len, const void *ct, size_t ct_len, uint8_t *out)
{
    EVP_CIPHER_CTX *ctx = NULL;
    size_t body = ct_len - PC_AEAD_TAG_LEN;
    int len = 0, rc = PC_EAUTH;

    if (ct_len < PC_AEAD_TAG_LEN)
        return PC_EAUTH;
    ctx = gcm_ctx(key, nonce, 0);
    if (ctx == NULL)
        return PC_EINVAL;
    if (EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aad_len) == 1 &&
        EVP_DecryptUpdate(ctx, out, &len, ct, (int)body) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, PC_AEAD_TAG_LEN,
                            (void *)((const uint8_t *)ct + body)) == 1 &&
        EVP_DecryptFinal_ex(ctx, out + len, &len) == 1)
        rc = 0;
    if (rc != 0) {
        pc_cleanse(out, body);
        ERR_clear_error(); /* a forged value is not an error of this thread's other work */
    }
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int
pc_memeq(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
