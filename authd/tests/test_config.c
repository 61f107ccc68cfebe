/*
 * test_config.c - authd config parsing, defaults, diagnostics and host matching.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/buf.h"

/* Loads a fixture that must be valid; the diagnostic is the failure message otherwise. */
static struct authd_config *
load_ok(const char *path)
{
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};
    char text[600];

    if (authd_config_load(path, &cfg, &diag) != 0) {
        pc_diag_format(&diag, text, sizeof(text));
        fail_msg("%s", text);
    }
    return cfg;
}

static void
test_good_config(void **state)
{
    struct authd_config *cfg = NULL;
    const struct authd_host *h;

    (void)state;
    cfg = load_ok("data/good.yaml");
    assert_string_equal(cfg->listen, "0.0.0.0:4180");
    assert_string_equal(cfg->admin_listen, "127.0.0.1:9090");
    assert_string_equal(cfg->ext_authz_prefix, "/ext-authz");
    assert_int_equal(cfg->keys.n, 1);
    assert_int_equal(cfg->nhosts, 2);
    h = cfg->hosts[0];
    assert_string_equal(h->id, "test-auth/echo");
    assert_string_equal(h->oidc.client_secret, "s3cret");
    assert_int_equal(h->oidc.scopes.n, 2);
    assert_string_equal(h->oidc.scopes.v[0], "openid");
    assert_string_equal(h->oidc.scopes.v[1], "email");
    assert_string_equal(h->oidc.claim_groups, "realm_access.roles");
    assert_string_equal(h->oidc.claim_email, "email");
    assert_string_equal(h->oidc.claim_username, "preferred_username");
    assert_string_equal(h->oidc.callback_path, "/oauth2/callback");
    assert_string_equal(h->oidc.sign_out_path, "/oauth2/sign_out");
    assert_int_equal(h->oidc.url_prefixes.n, 2);
    assert_string_equal(h->oidc.url_prefixes.v[1], "https://keys.example.com/main/");
    assert_int_equal(cfg->hosts[1]->oidc.url_prefixes.n, 0);
    assert_string_equal(h->access.email_domains.v[0], "example.com");
    assert_true(h->access.allow_unverified_email);
    assert_int_equal(h->paths.skip.n, 2);
    assert_string_equal(h->session.cookie_domain, ".example.com");
    assert_int_equal(h->session.lifetime, 5400);
    assert_int_equal(h->session.refresh, 300);
    assert_int_equal(h->session.same_site, AUTHD_SAMESITE_STRICT);
    assert_int_equal(h->nupstream_headers, 2);
    assert_string_equal(h->upstream_headers[1].claim, "name");
    assert_true(h->pass_id_token);
    assert_true(h->bearer.enabled);
    assert_string_equal(h->bearer.audiences.v[0], "api");
    assert_int_equal(h->mode, AUTHD_MODE_REPORT_ONLY);
    authd_config_free(cfg);
}

static void
test_defaults(void **state)
{
    struct authd_config *cfg = NULL;
    const struct authd_host *h;

    (void)state;
    cfg = load_ok("data/good.yaml");
    h = cfg->hosts[1];
    assert_int_equal(h->oidc.scopes.n, 3);
    assert_string_equal(h->oidc.scopes.v[2], "profile");
    assert_string_equal(h->oidc.claim_groups, "groups");
    assert_string_equal(h->session.cookie_name, "_portcullis");
    assert_null(h->session.cookie_domain);
    assert_int_equal(h->session.lifetime, 12 * 3600);
    assert_int_equal(h->session.refresh, 0);
    assert_int_equal(h->session.same_site, AUTHD_SAMESITE_LAX);
    assert_false(h->access.allow_unverified_email);
    assert_int_equal(h->nupstream_headers, 4);
    assert_string_equal(h->upstream_headers[0].name, "X-Auth-Request-User");
    assert_string_equal(h->upstream_headers[3].claim, "groups");
    assert_false(h->pass_id_token);
    assert_false(h->bearer.enabled);
    assert_int_equal(h->mode, AUTHD_MODE_ENFORCE);
    assert_null(h->oidc.client_secret);
    authd_config_free(cfg);
}

static const struct {
    const char *file;
    int line, col;
    const char *msg;
} bad[] = {
    {"data/bad-unknown-key.yaml", 6, 5, "hosts[0]: unknown key \"sesion\""},
    {"data/bad-http-issuer.yaml", 7, 18,
     "hosts[0].oidc.issuerURL: \"http://idp.example.com\" "
     "must be an https URL (set allowInsecureIssuers"},
    {"data/bad-dup-host.yaml", 7, 28,
     "hosts[1].hosts[1]: \"b.example.com\" is already "
     "protected by hosts[0]"},
    {"data/bad-secret-missing.yaml", 3, 5,
     "cookieSecretFiles[1]: cannot read "
     "\"data/no-such-secret\""},
    {"data/bad-secret-short.yaml", 1, 21, "is 5 bytes; at least 32 are required"},
    {"data/bad-enum.yaml", 7, 17, "hosts[0].session.sameSite: expected one of Lax, Strict, None"},
    {"data/bad-mode.yaml", 6, 11, "hosts[0].mode: expected Enforce or ReportOnly"},
    {"data/bad-type.yaml", 4, 12, "hosts[0].hosts: expected a sequence, found a scalar"},
    {"data/bad-duration.yaml", 6, 25, "hosts[0].session.lifetime: expected a duration"},
    {"data/bad-missing-client.yaml", 5, 11, "hosts[0].oidc.clientID: required"},
    {"data/bad-secret-placeholder.yaml", 5, 75,
     "hosts[0].oidc.clientSecret: an unresolved render placeholder"},
    {"data/bad-host-name.yaml", 4, 28, "hosts[0].hosts[1]: \"Bad_Host:8080\" is not a lowercase"},
    {"data/bad-skip-callback.yaml", 7, 24, "\"/oauth2/\" covers the callback or sign-out path"},
    {"data/bad-bool.yaml", 6, 18, "hosts[0].passIDToken: expected true or false"},
    {"data/bad-no-secrets.yaml", 1, 1, "cookieSecretFiles: required"},
    {"data/bad-url-prefix.yaml", 7, 62,
     "hosts[0].oidc.allowedURLPrefixes[1]: \"https://idp.example.com?x\" must not contain a "
     "query"},
    {"data/bad-cookie-collision.yaml", 10, 14,
     "hosts[1].session: host \"app.example.com\" also receives cookie \"_portcullis\" of "
     "hosts[0] (id portal/shared) (Domain=example.com), which has another issuer or client; "
     "give one of them another session.cookieName"},
};

static void
test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct authd_config *cfg = NULL;
        struct pc_diag diag = {0};
        char text[600], want[64];

        assert_int_not_equal(authd_config_load(bad[i].file, &cfg, &diag), 0);
        assert_null(cfg);
        pc_diag_format(&diag, text, sizeof(text));
        snprintf(want, sizeof(want), "%s:%d:%d: ", bad[i].file, bad[i].line, bad[i].col);
        if (strncmp(text, want, strlen(want)) != 0 || strstr(text, bad[i].msg) == NULL)
            fail_msg("%s: got \"%s\", want \"%s...%s\"", bad[i].file, text, want, bad[i].msg);
    }
}

static void
test_yaml_error_and_insecure(void **state)
{
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};

    (void)state;
    assert_int_equal(authd_config_load("data/bad-yaml.yaml", &cfg, &diag), PC_EPARSE);
    assert_true(diag.line >= 3);
    cfg = load_ok("data/ok-http-issuer.yaml");
    assert_string_equal(cfg->hosts[0]->oidc.issuer_url, "http://127.0.0.1:8080/realms/main");
    authd_config_free(cfg);
    cfg = load_ok("data/ok-empty-hosts.yaml");
    assert_int_equal(cfg->nhosts, 0);
    assert_null(authd_config_match_host(cfg, "a.example.com"));
    authd_config_free(cfg);
    assert_true(authd_config_load("data/no-such-file.yaml", &cfg, &diag) == -ENOENT);
}

static int
mem_reader(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    if (strcmp(path, "mem") != 0)
        return -ENOENT;
    *data = strdup("0123456789abcdef0123456789abcdef\n");
    *len = strlen(*data);
    return 0;
}

static void
test_parse_from_memory(void **state)
{
    static const char text[] = "cookieSecretFiles: [mem]\nextAuthzPathPrefix: /check/\n"
                               "hosts:\n- id: a/b\n  hosts: [a.example.com]\n"
                               "  oidc: {issuerURL: 'https://idp', clientID: a}\n";
    struct authd_config_opts opts = {.file = "inline", .read_file = mem_reader};
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};

    (void)state;
    if (authd_config_parse(text, strlen(text), &opts, &cfg, &diag) != 0)
        fail_msg("%d:%d: %s", diag.line, diag.col, diag.msg);
    assert_string_equal(cfg->ext_authz_prefix, "/check");
    assert_int_equal(cfg->keys.n, 1);
    authd_config_free(cfg);
}

/* Command-line overrides win over the file, also where the file names unreadable secrets. */
static void
test_overrides(void **state)
{
    static const char text[] = "listen: 0.0.0.0:4180\ncookieSecretFiles: [/nonexistent]\n"
                               "hosts: []\n";
    struct authd_overrides ov = {.listen = "127.0.0.1:1234",
                                 .admin_listen = "127.0.0.1:1235",
                                 .secret_files = {"mem"},
                                 .nsecret_files = 1};
    struct authd_config_opts opts = {.file = "inline", .read_file = mem_reader, .overrides = &ov};
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};

    (void)state;
    assert_int_equal(authd_config_parse(text, sizeof(text) - 1, &opts, &cfg, &diag), 0);
    assert_string_equal(cfg->listen, "127.0.0.1:1234");
    assert_string_equal(cfg->admin_listen, "127.0.0.1:1235");
    assert_int_equal(cfg->secret_files.n, 1);
    assert_string_equal(cfg->secret_files.v[0], "mem");
    authd_config_free(cfg);
    ov.secret_files[0] = "missing";
    assert_int_not_equal(authd_config_parse(text, sizeof(text) - 1, &opts, &cfg, &diag), 0);
    assert_non_null(strstr(diag.msg, "cannot read \"missing\""));
}

/* The admin policy's issuers: a URL must be within a prefix of every host's list. */
static void
test_url_allowed(void **state)
{
    struct authd_strlist lists[3] = {{0}};
    static const struct {
        size_t n;
        const char *url;
        bool want;
    } cases[] = {
        {0, "https://anywhere.example/", true},
        {1, "https://idp.example.com/realms/a/protocol/certs", true},
        {1, "https://keys.example.com/a", true},
        {1, "https://idp.example.com/realms/b/token", false},
        {1, "http://169.254.169.254/latest/meta-data", false},
        {2, "https://keys.example.com/a", false},
        {2, "https://idp.example.com/realms/a/x", true},
        {3, "https://idp.example.com/realms/a/x", true},
    };

    (void)state;
    authd_strlist_add(&lists[0], "https://idp.example.com/realms/a");
    authd_strlist_add(&lists[0], "https://keys.example.com");
    authd_strlist_add(&lists[1], "https://idp.example.com/");
    /* lists[2] empty: that host sets no limit of its own */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (authd_url_allowed(lists, cases[i].n, cases[i].url) != cases[i].want)
            fail_msg("%s with %zu lists: want %d", cases[i].url, cases[i].n, cases[i].want);
    for (size_t i = 0; i < 3; i++)
        authd_strlist_release(&lists[i]);
}

static void
test_durations(void **state)
{
    static const struct {
        const char *in;
        int rc;
        int64_t want;
    } cases[] = {
        {"12h", 0, 43200},     {"30m", 0, 1800},     {"90s", 0, 90},
        {"0s", 0, 0},          {"0", 0, 0},          {"1h30m", 0, 5400},
        {"", PC_EPARSE, 0},    {"12", PC_EPARSE, 0}, {"h", PC_EPARSE, 0},
        {"-1h", PC_EPARSE, 0}, {"1d", PC_EPARSE, 0}, {"99999999999h", PC_EPARSE, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t v = -1;

        assert_int_equal(authd_parse_duration(cases[i].in, &v), cases[i].rc);
        if (cases[i].rc == 0)
            assert_int_equal(v, cases[i].want);
    }
}

/* authd_config_match_host's scan of every entry, used when a config has no index. */
static const struct authd_host *
scanned(struct authd_config *cfg, const char *host)
{
    const struct authd_host *h;

    cfg->indexed = false;
    h = authd_config_match_host(cfg, host);
    cfg->indexed = true;
    return h;
}

static int
secret_reader(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    (void)path;
    *data = strdup("0123456789abcdef0123456789abcdef");
    *len = 32;
    return 0;
}

static void
test_match_host(void **state)
{
    static const struct {
        const char *host;
        int index; /* -1: unknown */
    } cases[] = {
        {"echo.example.com", 0},
        {"ECHO.Example.COM:8443", 0},
        {"echo.example.com.", 0},
        {"x.apps.example.com", 0},   /* *.apps.example.com beats *.example.com */
        {"a.b.apps.example.com", 1}, /* *.b.apps.example.com is longer */
        {"b.apps.example.com", 0},
        {"other.example.com", 1},
        {"deep.other.example.com", 1},
        {"example.com", -1},
        {"apps.example.com", 1},
        {"evil.com", -1},
        {"echo.example.com:80@evil.com", -1},
        {"echo.example.com:abc", -1},
        {"echo.example.com:", -1},
        {" echo.example.com", -1},
        {"echo.example.com\t", -1},
        {"echo.example.com/x", -1},
        {"echo.example.com%2e", -1},
        {"echo.example.com..", 0},
        {"x..apps.example.com", -1},
        {"[::1]:443", -1},
        {"[echo.example.com]", -1},
        {"*.apps.example.com", -1},
        {".apps.example.com", -1},
        {"x.apps.example.com:443:443", -1},
        {"x.apps.example.com\r\nX-Evil: 1", -1},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         ".other.example.com",
         -1}, /* over 253 bytes: not a DNS name */
        {"", -1},
        {NULL, -1},
    };
    struct authd_config *cfg = NULL;

    (void)state;
    cfg = load_ok("data/good.yaml");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct authd_host *h = authd_config_match_host(cfg, cases[i].host);

        if (cases[i].index < 0) {
            if (h != NULL)
                fail_msg("%s: matched %s", cases[i].host, h->id);
        } else if (h == NULL || h != cfg->hosts[cases[i].index]) {
            fail_msg("%s: want hosts[%d], got %s", cases[i].host, cases[i].index,
                     h ? h->id : "none");
        }
        assert_ptr_equal(h, scanned(cfg, cases[i].host));
    }
    authd_config_free(cfg);
}

/* Thousands of hosts: the indexed lookup answers what a scan of every entry answers. */
static void
test_match_host_many(void **state)
{
    struct authd_config_opts opts = {.read_file = secret_reader};
    struct pc_buf text;
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};

    (void)state;
    pc_buf_init(&text, 0);
    pc_buf_appends(&text, "cookieSecretFiles: [s]\nhosts:\n");
    for (int i = 0; i < 3000; i++) {
        pc_buf_appendf(&text,
                       "- id: ns/app-%d\n  hosts: [app-%d.team-%d.example.com%s]\n"
                       "  oidc: {issuerURL: 'https://idp', clientID: c%d}\n",
                       i, i, i % 40, i == 0 ? ", '*.deep.x.example.com'" : "", i);
        if (i % 100 == 0) /* one wildcard per team, and a longer one inside it */
            pc_buf_appendf(&text,
                           "- id: ns/wild-%d\n  hosts: ['*.team-%d.example.com']\n"
                           "  oidc: {issuerURL: 'https://idp', clientID: w%d}\n",
                           i, i / 100, i);
    }
    assert_int_equal(authd_config_parse(text.data, text.len, &opts, &cfg, &diag), 0);
    for (int i = 0; i < 3000; i += 7) {
        char forms[6][128];

        snprintf(forms[0], sizeof(forms[0]), "app-%d.team-%d.example.com", i, i % 40);
        snprintf(forms[1], sizeof(forms[1]), "x%d.team-%d.example.com", i, i % 40);
        snprintf(forms[2], sizeof(forms[2]), "a.b.team-%d.example.com", i % 40);
        snprintf(forms[3], sizeof(forms[3]), "APP-%d.team-%d.example.com:443", i, i % 40);
        snprintf(forms[4], sizeof(forms[4]), "team-%d.example.com", i % 40);
        snprintf(forms[5], sizeof(forms[5]), "y%d.deep.x.example.com", i);
        for (size_t f = 0; f < 6; f++) {
            const struct authd_host *h = authd_config_match_host(cfg, forms[f]);

            if (h != scanned(cfg, forms[f]))
                fail_msg("%s: indexed %s, scanned %s", forms[f], h ? h->id : "none",
                         scanned(cfg, forms[f]) ? scanned(cfg, forms[f])->id : "none");
            if (f == 0 && (h == NULL || strncmp(h->id, "ns/app-", 7) != 0))
                fail_msg("%s: want its own entry", forms[f]);
        }
    }
    authd_config_free(cfg);
    pc_buf_release(&text);
}

/* What authd serves with while its config file does not exist yet. */
static void
test_placeholder(void **state)
{
    struct authd_overrides ov = {
        .listen = "127.0.0.1:1", .secret_files = {"/s"}, .nsecret_files = 1};
    struct authd_config *cfg = authd_config_placeholder(NULL);

    (void)state;
    assert_string_equal(cfg->listen, "0.0.0.0:4180");
    assert_string_equal(cfg->admin_listen, "0.0.0.0:9090");
    assert_string_equal(cfg->ext_authz_prefix, "/ext-authz");
    assert_int_equal(cfg->nhosts, 0);
    assert_int_equal(cfg->keys.n, 0);
    assert_null(authd_config_match_host(cfg, "app.example.com"));
    authd_config_free(cfg);
    cfg = authd_config_placeholder(&ov);
    assert_string_equal(cfg->listen, "127.0.0.1:1");
    assert_string_equal(cfg->admin_listen, "0.0.0.0:9090");
    assert_int_equal(cfg->secret_files.n, 1);
    authd_config_free(cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_yaml_error_and_insecure),
        cmocka_unit_test(test_parse_from_memory),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_url_allowed),
        cmocka_unit_test(test_match_host),
        cmocka_unit_test(test_match_host_many),
        cmocka_unit_test(test_placeholder),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
