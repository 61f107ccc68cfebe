#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

/* RFC 5869 test case 1. */
static void
test_hkdf_rfc5869(void **state)
{
    uint8_t ikm[22], salt[13], info[10], okm[42], want[42];

    (void)state;
    memset(ikm, 0x0b, sizeof(ikm));
    hex_to_bytes("000102030405060708090a0b0c", salt);
    hex_to_bytes("f0f1f2f3f4f5f6f7f8f9", info);
    hex_to_bytes("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b8"
                 "87185865",
                 want);
    assert_int_equal(pc_hkdf_sha256(ikm, 22, salt, 13, info, 10, okm, 42), 0);
    assert_memory_equal(okm, want, 42);
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
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_aead_roundtrip_and_tamper),
        cmocka_unit_test(test_random_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
