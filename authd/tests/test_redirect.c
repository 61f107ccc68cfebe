/*
 * test_redirect.c - redirect target validation against a table of nasty inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "authd.h"

static const char config_text[] = "cookieSecretFiles: [mem]\n"
                                  "hosts:\n"
                                  "- id: ns/app\n"
                                  "  hosts: [app.example.com, '*.apps.example.com']\n"
                                  "  oidc: {issuerURL: 'https://idp', clientID: app}\n"
                                  "  session: {cookieDomain: .corp.example.org}\n";

static struct authd_config *cfg;

static int
mem_reader(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    (void)path;
    *data = strdup("0123456789abcdef0123456789abcdef");
    *len = 32;
    return 0;
}

static int
setup(void **state)
{
    struct authd_config_opts opts = {.read_file = mem_reader};
    struct pc_diag diag = {0};

    (void)state;
    return authd_config_parse(config_text, strlen(config_text), &opts, &cfg, &diag);
}

static int
teardown(void **state)
{
    (void)state;
    authd_config_free(cfg);
    return 0;
}

static const struct {
    const char *in;
    const char *want; /* NULL: rejected */
} cases[] = {
    /* allowed */
    {"/", "/"},
    {"/a/b?c=d#e", "/a/b?c=d#e"},
    {"/a//b", "/a//b"},
    {"/%41", "/%41"},
    {"https://app.example.com/x", "https://app.example.com/x"},
    {"HTTPS://APP.Example.COM", "https://app.example.com/"},
    {"http://app.example.com:8080/x?y", "http://app.example.com:8080/x?y"},
    {"https://this.example.net/", "https://this.example.net/"}, /* the request's own host */
    {"https://x.apps.example.com/", "https://x.apps.example.com/"},
    {"https://corp.example.org/", "https://corp.example.org/"},
    {"https://a.b.corp.example.org/q", "https://a.b.corp.example.org/q"},
    {"https://app.example.com?x=1", "https://app.example.com?x=1"},
    /* rejected */
    {"", NULL},
    {"x", NULL},
    {"//evil.com", NULL},
    {"//evil.com/", NULL},
    {"/\\evil.com", NULL},
    {"\\\\evil.com", NULL},
    {"/%2fevil.com", NULL},
    {"/%5cevil.com", NULL},
    {"/%2Fevil.com", NULL},
    {"https://evil.com/", NULL},
    {"https://app.example.com.evil.com/", NULL},
    {"https://evilapp.example.com/", NULL},
    {"https://evilcorp.example.org/", NULL},
    {"https://app.example.com@evil.com/", NULL},
    {"https://user:pw@app.example.com/", NULL},
    {"https://evil.com\\@app.example.com/", NULL},
    {"https://evil.com#@app.example.com/", NULL},
    {"https://evil.com?@app.example.com/", NULL},
    {"https:/app.example.com", NULL},
    {"https:app.example.com", NULL},
    {"https:///app.example.com", NULL},
    {"https://app.example.com:99999/", NULL},
    {"https://app.example.com:/", NULL},
    {"https://app.example.com:80x/", NULL},
    {"javascript:alert(1)", NULL},
    {"JaVaScRiPt://app.example.com/%0aalert(1)", NULL},
    {"data:text/html,<script>", NULL},
    {"ftp://app.example.com/", NULL},
    {"/a\tb", NULL},
    {"/a\nb", NULL},
    {" /a", NULL},
    {"/a b", NULL},
    {"/%00", NULL},
    {"/%0d%0aSet-Cookie:x", NULL},
    {"/%1f", NULL},
    {"/%7f", NULL},
    {"/%7F", NULL},
    {"/%", NULL},
    {"/%zz", NULL},
    {"/\x7f", NULL},
    {"/caf\xc3\xa9", NULL},
    {"https://app.example.com\t.evil.com/", NULL},
    {"https://[::1]/", NULL},
    {"https://.app.example.com/", NULL},
};

static void
test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        int rc = authd_redirect_validate(cfg, "this.example.net:443", cases[i].in, &out);

        if (cases[i].want == NULL && (rc == 0 || out != NULL))
            fail_msg("\"%s\": accepted as \"%s\"", cases[i].in, out);
        if (cases[i].want != NULL && (rc != 0 || strcmp(out, cases[i].want) != 0))
            fail_msg("\"%s\": rc %d out \"%s\", want \"%s\"", cases[i].in, rc, out ? out : "(null)",
                     cases[i].want);
        free(out);
    }
}

static void
test_bounds(void **state)
{
    char *big = malloc(AUTHD_MAX_REDIRECT + 2), *out = NULL;

    (void)state;
    memset(big, 'a', AUTHD_MAX_REDIRECT + 1);
    big[0] = '/';
    big[AUTHD_MAX_REDIRECT] = '\0';
    assert_int_equal(authd_redirect_validate(cfg, NULL, big, &out), 0);
    free(out);
    big[AUTHD_MAX_REDIRECT] = 'a';
    big[AUTHD_MAX_REDIRECT + 1] = '\0';
    assert_int_equal(authd_redirect_validate(cfg, NULL, big, &out), PC_ETOOBIG);
    assert_null(out);
    assert_int_equal(authd_redirect_validate(NULL, NULL, "https://app.example.com/", &out),
                     PC_EINVAL);
    assert_int_equal(authd_redirect_validate(NULL, NULL, NULL, &out), PC_EINVAL);
    free(big);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_bounds),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
