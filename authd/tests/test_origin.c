/*
 * test_origin.c - which host and path decide at the nginx door and the direct endpoints: every
 * header that names them must agree, and a client-sent header never picks another policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"

/* data/good.yaml protects echo.example.com, *.apps.example.com and *.example.com. */
static struct authd_config *cfg;

static int
setup(void **state)
{
    struct pc_diag diag = {0};

    (void)state;
    return authd_config_load("data/good.yaml", &cfg, &diag);
}

static int
teardown(void **state)
{
    (void)state;
    authd_config_free(cfg);
    return 0;
}

#define SVC "portcullis-authd.portcullis-system.svc.cluster.local"
#define LONG_HOST                                                                                  \
    "a123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890"  \
    "123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890"   \
    "12345678901234567890123456789012345678901234567890123456789012345678901234567890.example.com"

struct row {
    const char *name;
    const char *host, *xfh, *url, *uri; /* request headers, NULL: absent */
    int rc;
    const char *want_host, *want_path, *why; /* why: substring of the 400 reason */
};

/* nginx auth_request: ingress-nginx sends Host = authd's Service and X-Original-URL. */
static const struct row nginx_rows[] = {
    {"ingress-nginx", SVC, NULL, "https://ops.example.com/admin?x=1", NULL, 0, "ops.example.com",
     "/admin?x=1", NULL},
    {"ingress-nginx, client X-Forwarded-Host for another host", SVC, "app.example.com",
     "https://ops.example.com/admin", NULL, PC_EINVAL, NULL, NULL,
     "X-Original-URL and X-Forwarded-Host name different hosts"},
    {"ingress-nginx, client X-Forwarded-Host for the same host", SVC, "OPS.example.com:443",
     "https://ops.example.com/admin", NULL, 0, "ops.example.com", "/admin", NULL},
    {"ingress-nginx, client X-Original-URI for another path", SVC, NULL,
     "https://ops.example.com/admin", "/public/x", PC_EINVAL, NULL, NULL,
     "X-Original-URL and X-Original-URI name different paths"},
    {"ingress-nginx auth-method: X-Original-URI set too", SVC, NULL,
     "http://ops.example.com:8080/a%2Fb?q", "/a%2Fb?q", 0, "ops.example.com:8080", "/a%2Fb?q",
     NULL},
    {"examples/nginx: Host $host, X-Forwarded-Host $http_host, both originals", "app.example.com",
     "app.example.com:8443", "https://app.example.com:8443/x", "/x", 0, "app.example.com:8443",
     "/x", NULL},
    {"examples/nginx, absolute-form request line for another host", "app.example.com",
     "ops.example.com", "https://ops.example.com/x", "/x", PC_EINVAL, NULL, NULL,
     "X-Original-URL and Host name different hosts"},
    {"a client X-Original-URL where the proxy sets only Host", "ops.example.com", NULL,
     "https://app.example.com/", NULL, PC_EINVAL, NULL, NULL,
     "X-Original-URL and Host name different hosts"},
    {"wildcard host claimed by Host", "a.apps.example.com", NULL, "https://b.apps.example.com/",
     NULL, PC_EINVAL, NULL, NULL, "different hosts"},
    {"X-Original-URL without a path", SVC, NULL, "https://ops.example.com", NULL, 0,
     "ops.example.com", "/", NULL},
    {"X-Original-URL with an empty host", SVC, "app.example.com", "http:///x", NULL, PC_EINVAL,
     NULL, NULL, "different hosts"},
    {"X-Original-URL not http(s)", SVC, NULL, "ftp://ops.example.com/", NULL, PC_EINVAL, NULL, NULL,
     "not an http(s) URL"},
    {"X-Original-URL query right after the host", SVC, NULL, "https://ops.example.com?x", NULL,
     PC_EINVAL, NULL, NULL, "not an http(s) URL"},
    {"X-Original-URL host too long", SVC, NULL, "https://" LONG_HOST "/", NULL, PC_ETOOBIG, NULL,
     NULL, "too long"},
    {"plain nginx: Host $host and X-Forwarded-Host", "app.example.com", "app.example.com:8080",
     NULL, "/p", 0, "app.example.com:8080", "/p", NULL},
    {"plain nginx with Host $host only, client X-Forwarded-Host", "ops.example.com",
     "app.example.com", NULL, "/p", PC_EINVAL, NULL, NULL,
     "X-Forwarded-Host and Host name different hosts"},
    {"plain nginx, Host is authd's upstream name", "portcullis_authd", "ops.example.com", NULL,
     NULL, 0, "ops.example.com", "/", NULL},
    {"only Host", "app.example.com", NULL, NULL, "/p", 0, "app.example.com", "/p", NULL},
    {"empty X-Forwarded-Host is no claim", "app.example.com", "", NULL, NULL, 0, "app.example.com",
     "/", NULL},
    {"no claim: Host as sent, no policy", "unknown.test", NULL, NULL, NULL, 0, "unknown.test", "/",
     NULL},
    {"no Host at all", NULL, NULL, NULL, NULL, 0, "", "/", NULL},
};

/* The direct endpoints: /oauth2/start, callback, sign_out, userinfo. */
static const struct row direct_rows[] = {
    {"examples/nginx /oauth2/", "app.example.com", "app.example.com:8443", NULL, NULL, 0,
     "app.example.com:8443", "/oauth2/start", NULL},
    {"ingress-nginx Ingress route: both $best_http_host", "ops.example.com", "ops.example.com",
     NULL, NULL, 0, "ops.example.com", "/oauth2/start", NULL},
    {"client X-Forwarded-Host through a proxy that sets Host", "ops.example.com", "app.example.com",
     NULL, NULL, PC_EINVAL, NULL, NULL, "X-Forwarded-Host and Host name different hosts"},
    {"X-Original-URL plays no part", "ops.example.com", NULL, "https://app.example.com/", NULL, 0,
     "ops.example.com", "/oauth2/start", NULL},
    {"Host only", "app.example.com:80", NULL, NULL, NULL, 0, "app.example.com:80", "/oauth2/start",
     NULL},
};

static void
run_rows(const struct row *rows, size_t n, bool nginx)
{
    for (size_t i = 0; i < n; i++) {
        const struct row *t = &rows[i];
        struct authd_http h = {.method = "GET",
                               .path = nginx ? "/oauth2/auth" : "/oauth2/start",
                               .query = "",
                               .uri = nginx ? "/oauth2/auth" : "/oauth2/start",
                               .host = t->host,
                               .x_forwarded_host = t->xfh,
                               .x_original_url = t->url,
                               .x_original_uri = t->uri};
        struct authd_origin o;
        int rc = nginx ? authd_origin_nginx(cfg, &h, &o) : authd_origin_direct(cfg, &h, &o);

        if (rc != t->rc)
            fail_msg("%s: rc %d, want %d (%s)", t->name, rc, t->rc, o.why);
        if (rc == 0 && (strcmp(o.host, t->want_host) || strcmp(o.path, t->want_path)))
            fail_msg("%s: host %s path %s, want %s %s", t->name, o.host, o.path, t->want_host,
                     t->want_path);
        if (rc != 0 && !strstr(o.why, t->why))
            fail_msg("%s: reason \"%s\", want \"%s\"", t->name, o.why, t->why);
    }
}

static void
test_nginx(void **state)
{
    (void)state;
    run_rows(nginx_rows, sizeof(nginx_rows) / sizeof(nginx_rows[0]), true);
}

static void
test_direct(void **state)
{
    (void)state;
    run_rows(direct_rows, sizeof(direct_rows) / sizeof(direct_rows[0]), false);
}

static void
test_host_same(void **state)
{
    static const struct {
        const char *a, *b;
        bool same;
    } rows[] = {
        {"app.example.com", "APP.example.com.:443", true},
        {"app.example.com", "app.example.com:8080", true},
        {"app.example.com", "ops.example.com", false},
        {"app.example.com", "app.example.com.evil", false},
        {"app.example.com:80@evil", "app.example.com", false},
        {"[::1]:80", "[::1]", true},
        {"", "app.example.com", false},
        {"a b", "A B", true}, /* no host name either: compared as sent */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (authd_host_same(rows[i].a, rows[i].b) != rows[i].same)
            fail_msg("%s vs %s", rows[i].a, rows[i].b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nginx),
        cmocka_unit_test(test_direct),
        cmocka_unit_test(test_host_same),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
