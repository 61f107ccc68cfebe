#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis/base.h"
#include "portcullis/http.h"

static void
test_url_encode_decode(void **state)
{
    char *e = pc_url_encode("a b&c=d/é~");
    char *d = NULL;

    (void)state;
    assert_string_equal(e, "a%20b%26c%3Dd%2F%C3%A9~");
    d = pc_url_decode(e, strlen(e), false);
    assert_string_equal(d, "a b&c=d/é~");
    free(d);
    d = pc_url_decode("a+b", 3, true);
    assert_string_equal(d, "a b");
    free(d);
    assert_null(pc_url_decode("%4", 2, false));
    assert_null(pc_url_decode("%zz", 3, false));
    assert_null(pc_url_decode("abc%", 4, false));
    free(e);
}

struct within_case {
    const char *url, *prefix;
    bool want;
};

static const struct within_case within_cases[] = {
    {"https://idp.example.com/realms/a", "https://idp.example.com/realms/a", true},
    {"https://idp.example.com/realms/a/x", "https://idp.example.com/realms/a", true},
    {"https://idp.example.com/realms/ab", "https://idp.example.com/realms/a", false},
    {"https://idp.example.com/realms/ab", "https://idp.example.com/realms/", true},
    {"https://idp.example.com", "https://idp.example.com", true},
    {"https://idp.example.com/", "https://idp.example.com", true},
    {"https://idp.example.com.evil.net/", "https://idp.example.com", false},
    {"https://idp.example.com@evil.net/", "https://idp.example.com", false},
    {"https://idp.example.com:8443/", "https://idp.example.com", false},
    {"http://idp.example.com/realms/a", "https://idp.example.com/realms/a", false},
    {"https://idp.example.com/realms/a/../b", "https://idp.example.com/realms/a", false},
    {"https://idp.example.com/realms/a/./x", "https://idp.example.com/realms/a", false},
    {"https://idp.example.com/realms/a/..", "https://idp.example.com/realms/a", false},
    {"https://idp.example.com/realms/a/.well-known/x", "https://idp.example.com/realms/a", true},
    {"https://idp.example.com/realms/a/..x", "https://idp.example.com/realms/a", true},
    {"https://idp.example.com/realms/a/%2e%2E/b", "https://idp.example.com/realms/a", false},
    {"https://idp.example.com/realms/a/%2e", "https://idp.example.com/realms/a", false},
    {"https://idp.example.com/realms/a/...", "https://idp.example.com/realms/a", true},
    {"https://idp.example.com/", "", false},
};

static void
test_url_within(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(within_cases) / sizeof(within_cases[0]); i++) {
        const struct within_case *c = &within_cases[i];

        if (pc_url_within(c->url, c->prefix) != c->want)
            fail_msg("%s within %s: want %d", c->url, c->prefix, c->want);
    }
}

/* A refused connection is a transport error, reported quickly and without a status. */
static void
test_connection_refused(void **state)
{
    struct pc_http_request req = {.url = "http://127.0.0.1:1/", .timeout_ms = 2000};
    struct pc_http_response resp;

    (void)state;
    assert_int_equal(pc_http_do(&req, &resp), PC_EIO);
    assert_int_equal(resp.status, 0);
    assert_true(resp.error[0] != '\0');
    pc_http_response_release(&resp);
}

static void
test_scheme_refused(void **state)
{
    struct pc_http_request req = {.url = "file:///etc/passwd", .timeout_ms = 1000};
    struct pc_http_response resp;

    (void)state;
    assert_int_equal(pc_http_do(&req, &resp), PC_EIO);
    assert_int_equal(resp.body.len, 0);
    pc_http_response_release(&resp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_encode_decode),
        cmocka_unit_test(test_url_within),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_scheme_refused),
    };
    pc_http_global_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
