#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis/b64.h"
#include "portcullis/base.h"

/* RFC 4648 §10 test vectors. */
static const struct {
    const char *plain, *std, *url;
} vectors[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
    {"\xfb\xff", "+/8=", "-_8"},
};

static void
test_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        size_t n = strlen(vectors[i].plain), len = 0;
        unsigned char *dec = NULL;
        char *s = pc_b64_encode(vectors[i].plain, n);
        assert_string_equal(s, vectors[i].std);
        free(s);
        s = pc_b64url_encode(vectors[i].plain, n);
        assert_string_equal(s, vectors[i].url);
        free(s);
        assert_int_equal(pc_b64url_decode(vectors[i].url, strlen(vectors[i].url), &dec, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(dec, vectors[i].plain, n);
        free(dec);
        assert_int_equal(pc_b64_decode(vectors[i].std, strlen(vectors[i].std), &dec, &len), 0);
        assert_int_equal(len, n);
        free(dec);
    }
}

static void
test_rejects(void **state)
{
    static const char *bad[] = {"Z", "Zm9v!", "Zm 9v", "Zm+v", "Zm/v", "\x01\x02"};
    unsigned char *dec = NULL;
    size_t len = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(pc_b64url_decode(bad[i], strlen(bad[i]), &dec, &len), PC_EPARSE);
    assert_int_equal(pc_b64_decode("Zm-v", 4, &dec, &len), PC_EPARSE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
