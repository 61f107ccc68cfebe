#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <pthread.h>

#include "portcullis/base.h"
#include "portcullis/crypto.h"

static void
hex_to_bytes(const char *hex, uint8_t *out)
{
    for (size_t i = 0; hex[2 * i]; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

/* RFC 5869 test cases 1 and 3 (no salt, no info). */
static void
test_hkdf_rfc5869(void **state)
{
    static const struct {
        const char *salt, *info, *okm;
    } cases[] = {
        {"000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9",
         "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
        {"", "",
         "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t ikm[22], salt[13], info[10], okm[42], want[42];
        size_t salt_len = strlen(cases[i].salt) / 2, info_len = strlen(cases[i].info) / 2;

        memset(ikm, 0x0b, sizeof(ikm));
        hex_to_bytes(cases[i].salt, salt);
        hex_to_bytes(cases[i].info, info);
        hex_to_bytes(cases[i].okm, want);
        assert_int_equal(pc_hkdf_sha256(ikm, sizeof(ikm), salt_len ? salt : NULL, salt_len,
                                        info_len ? info : NULL, info_len, okm, sizeof(okm)),
                         0);
        assert_memory_equal(okm, want, sizeof(okm));
    }
}

/* OpenSSL's own HKDF, for comparison. 0 or -1. */
static int
openssl_hkdf(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
             const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len),
        OSSL_PARAM_construct_end()};

    int rc = ctx != NULL && EVP_KDF_derive(ctx, out, out_len, params) == 1 ? 0 : -1;

    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

/* Rounds of random inputs; NULL when every one matched (no cmocka asserts off its thread). */
static void *
hkdf_like_openssl(void *arg)
{
    uint8_t ikm[40], salt[32], info[80], got[200], want[200];
    static const size_t lens[] = {1, 31, 32, 33, 64, 65, 200};

    (void)arg;
    for (int round = 0; round < 50; round++) {
        size_t out_len = lens[round % 7], info_len = (size_t)round % sizeof(info);

        if (pc_random_bytes(ikm, sizeof(ikm)) != 0 || pc_random_bytes(salt, sizeof(salt)) != 0 ||
            pc_random_bytes(info, sizeof(info)) != 0 ||
            pc_hkdf_sha256(ikm, sizeof(ikm), salt, sizeof(salt), info, info_len, got, out_len) !=
                0 ||
            openssl_hkdf(ikm, sizeof(ikm), salt, sizeof(salt), info, info_len, want, out_len) !=
                0 ||
            memcmp(got, want, out_len) != 0)
            return (void *)"differs";
    }
    return NULL;
}

/* The same keys as OpenSSL's HKDF, on this thread and on another (each keeps its context). */
static void
test_hkdf_matches_openssl_on_every_thread(void **state)
{
    pthread_t t;
    void *other = (void *)"not run";
    uint8_t big[255 * 32 + 1];

    (void)state;
    assert_null(hkdf_like_openssl(NULL));
    assert_int_equal(pthread_create(&t, NULL, hkdf_like_openssl, NULL), 0);
    assert_int_equal(pthread_join(t, &other), 0);
    assert_null(other);
    assert_int_equal(pc_hkdf_sha256("k", 1, NULL, 0, NULL, 0, big, sizeof(big)), PC_EINVAL);
}

static void
test_sha256(void **state)
{
    char *hex = pc_sha256_hex("abc", 3);

    (void)state;
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    free(hex);
}

static void
test_aead_roundtrip_and_tamper(void **state)
{
    uint8_t key[32], nonce[12], ct[64], pt[64];
    const char *msg = "session payload";
    size_t n = strlen(msg);

    (void)state;
    assert_int_equal(pc_random_bytes(key, sizeof(key)), 0);
    assert_int_equal(pc_random_bytes(nonce, sizeof(nonce)), 0);
    assert_int_equal(pc_aead_seal(key, nonce, "aad", 3, msg, n, ct), 0);
    assert_int_equal(pc_aead_open(key, nonce, "aad", 3, ct, n + 16, pt), 0);
    assert_memory_equal(pt, msg, n);
    assert_int_equal(pc_aead_open(key, nonce, "aaX", 3, ct, n + 16, pt), PC_EAUTH);
    ct[0] ^= 1;
    assert_int_equal(pc_aead_open(key, nonce, "aad", 3, ct, n + 16, pt), PC_EAUTH);
    ct[0] ^= 1;
    key[5] ^= 1;
    assert_int_equal(pc_aead_open(key, nonce, "aad", 3, ct, n + 16, pt), PC_EAUTH);
    assert_int_equal(pc_aead_open(key, nonce, "aad", 3, ct, 8, pt), PC_EAUTH);
}

static void
test_random_token(void **state)
{
    char *a = pc_random_token(32), *b = pc_random_token(32);

    (void)state;
    assert_int_equal(strlen(a), 43);
    assert_string_not_equal(a, b);
    assert_true(pc_memeq("abc", "abc", 3));
    assert_false(pc_memeq("abc", "abd", 3));
    free(a);
    free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hkdf_rfc5869),
        cmocka_unit_test(test_hkdf_matches_openssl_on_every_thread),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_aead_roundtrip_and_tamper),
        cmocka_unit_test(test_random_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
