/*
 * test_ctl_render.c - the objects one ProtectedHost renders to, and the shared provider.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller.h"
#include "spec_util.h"
#include "portcullis/json.h"

static void
test_policy(void **state)
{
    json_t *spec = spec_of("{\"hosts\":[\"echo.example.com\",\"*.apps.example.com\"],"
                           "\"gateway\":{\"namespace\":\"gw\",\"selector\":{\"app\":\"edge\"}},"
                           "\"oidc\":{\"issuerURL\":\"https://i\",\"clientID\":\"c\","
                           "\"callbackPath\":\"/cb\"},"
                           "\"paths\":{\"skip\":[\"/healthz\",\"/cb\",\"/oauth2/sign_out\","
                           "\"/static/*\",\"/healthz\"]}}");
    json_t *p = ctl_render_policy("team-a", "echo", spec);
    char *s;

    (void)state;
    assert_string_equal(pc_json_str(p, "apiVersion"), "security.istio.io/v1");
    assert_string_equal(pc_json_str(p, "kind"), "AuthorizationPolicy");
    assert_string_equal(pc_json_str(pc_json_path(p, "metadata"), "name"), "portcullis-team-a-echo");
    assert_string_equal(pc_json_str(pc_json_path(p, "metadata"), "namespace"), "gw");
    s = dump(pc_json_path(p, "metadata.labels"));
    assert_string_equal(s, "{\"app.kubernetes.io/managed-by\":\"portcullis\","
                           "\"portcullis.io/owner-name\":\"echo\","
                           "\"portcullis.io/owner-namespace\":\"team-a\"}");
    free(s);
    assert_string_equal(pc_json_str(pc_json_path(p, "metadata.annotations"), "portcullis.io/owner"),
                        "team-a/echo");
    s = dump(json_object_get(p, "spec"));
    assert_string_equal(s, "{\"action\":\"CUSTOM\",\"provider\":{\"name\":\"portcullis\"},"
                           "\"rules\":[{\"to\":[{\"operation\":{\"hosts\":[\"echo.example.com\","
                           "\"echo.example.com:*\",\"echo.example.com.\",\"echo.example.com.:*\","
                           "\"*.apps.example.com\"],"
                           "\"notPaths\":[\"/healthz\",\"/static/*\"]}}]}],"
                           "\"selector\":{\"matchLabels\":{\"app\":\"edge\"}}}");
    free(s);
    json_decref(p);
    json_decref(spec);
}

/* A Gateway API Gateway: the policy attaches with targetRefs, no selector. */
static void
test_policy_for_gateway_api_gateway(void **state)
{
    json_t *spec = spec_of("{\"hosts\":[\"echo.example.com\"],"
                           "\"gateway\":{\"namespace\":\"istio-ingress\",\"name\":\"public\"},"
                           "\"oidc\":{\"issuerURL\":\"https://i\",\"clientID\":\"c\"}}");
    json_t *p = ctl_render_policy("team-a", "echo", spec);
    char *s;

    (void)state;
    assert_string_equal(pc_json_str(pc_json_path(p, "metadata"), "namespace"), "istio-ingress");
    s = dump(json_object_get(p, "spec"));
    assert_string_equal(s, "{\"action\":\"CUSTOM\",\"provider\":{\"name\":\"portcullis\"},"
                           "\"rules\":[{\"to\":[{\"operation\":{\"hosts\":[\"echo.example.com\","
                           "\"echo.example.com:*\",\"echo.example.com.\","
                           "\"echo.example.com.:*\"]}}]}],"
                           "\"targetRefs\":[{\"group\":\"gateway.networking.k8s.io\","
                           "\"kind\":\"Gateway\",\"name\":\"public\"}]}");
    free(s);
    json_decref(p);
    json_decref(spec);
}

/* A wildcard host's policy comes with an EnvoyFilter for the same gateway; exact ones none. */
static void
test_host_filter(void **state)
{
    static const struct {
        const char *spec, *want; /* want: the filter's spec minus configPatches; NULL: none */
    } cases[] = {
        {"{\"hosts\":[\"echo.example.com\"],\"gateway\":{\"namespace\":\"gw\","
         "\"selector\":{\"app\":\"edge\"}},\"oidc\":{\"issuerURL\":\"https://i\","
         "\"clientID\":\"c\"}}",
         NULL},
        {"{\"hosts\":[\"echo.example.com\",\"*.apps.example.com\"],\"gateway\":{\"namespace\":"
         "\"gw\",\"selector\":{\"app\":\"edge\"}},\"oidc\":{\"issuerURL\":\"https://i\","
         "\"clientID\":\"c\"}}",
         "{\"workloadSelector\":{\"labels\":{\"app\":\"edge\"}}}"},
        {"{\"hosts\":[\"*.apps.example.com\"],\"gateway\":{\"namespace\":\"istio-ingress\","
         "\"name\":\"public\"},\"oidc\":{\"issuerURL\":\"https://i\",\"clientID\":\"c\"}}",
         "{\"targetRefs\":[{\"group\":\"gateway.networking.k8s.io\",\"kind\":\"Gateway\","
         "\"name\":\"public\"}]}"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *spec = spec_of(cases[i].spec), *p = ctl_render_policy("team-a", "echo", spec);
        json_t *f = ctl_render_host_filter(p), *rest;
        char *s;

        if (!cases[i].want) {
            assert_null(f);
            json_decref(p);
            json_decref(spec);
            continue;
        }
        assert_non_null(f);
        assert_string_equal(pc_json_str(f, "kind"), "EnvoyFilter");
        assert_string_equal(pc_json_str(f, "apiVersion"), "networking.istio.io/v1alpha3");
        assert_true(json_equal(json_object_get(f, "metadata"), json_object_get(p, "metadata")));
        s = dump(pc_json_path(f, "spec.configPatches"));
        assert_string_equal(
            s, "[{\"applyTo\":\"NETWORK_FILTER\",\"match\":{\"context\":\"GATEWAY\","
               "\"listener\":{\"filterChain\":{\"filter\":{\"name\":"
               "\"envoy.filters.network.http_connection_manager\"}}}},\"patch\":{\"operation\":"
               "\"MERGE\",\"value\":{\"typed_config\":{\"@type\":\"type.googleapis.com/"
               "envoy.extensions.filters.network.http_connection_manager.v3."
               "HttpConnectionManager\",\"strip_any_host_port\":true,"
               "\"strip_trailing_host_dot\":true}}}}]");
        free(s);
        rest = json_deep_copy(json_object_get(f, "spec"));
        json_object_del(rest, "configPatches");
        s = dump(rest);
        assert_string_equal(s, cases[i].want);
        free(s);
        json_decref(rest);
        json_decref(f);
        json_decref(p);
        json_decref(spec);
    }
}

static void
test_parse_host_normalization(void **state)
{
    bool ext = true;

    (void)state;
    assert_true(ctl_parse_host_normalization("envoyfilter", &ext));
    assert_false(ext);
    assert_true(ctl_parse_host_normalization("external", &ext));
    assert_true(ext);
    assert_false(ctl_parse_host_normalization("External", &ext));
    assert_false(ctl_parse_host_normalization("", &ext));
    assert_false(ctl_parse_host_normalization(NULL, &ext));
}

static void
test_policy_without_skip(void **state)
{
    json_t *spec = spec_of("{\"hosts\":[\"a.b\"],\"oidc\":{\"issuerURL\":\"https://i\","
                           "\"clientID\":\"c\"},\"paths\":{\"skip\":[\"/oauth2/callback\"]}}");
    json_t *p = ctl_render_policy("ns", "n", spec);
    char *long_name = pc_xcalloc(254, 1);

    (void)state;
    assert_null(json_object_get(
        json_object_get(
            json_array_get(json_object_get(json_array_get(pc_json_path(p, "spec.rules"), 0), "to"),
                           0),
            "operation"),
        "notPaths"));
    json_decref(p);
    /* a long owner name is shortened in the label, kept whole in the annotation */
    memset(long_name, 'n', 200);
    p = ctl_render_policy("ns", long_name, spec);
    assert_true(
        strlen(pc_json_str(pc_json_path(p, "metadata.labels"), "portcullis.io/owner-name")) <= 63);
    assert_true(strlen(pc_json_str(pc_json_path(p, "metadata"), "name")) <= 63);
    assert_int_equal(
        strlen(pc_json_str(pc_json_path(p, "metadata.annotations"), "portcullis.io/owner")), 203);
    json_decref(p);
    free(long_name);
    json_decref(spec);
}

static void
test_authd_host(void **state)
{
    json_t *spec = spec_of("{\"hosts\":[\"a.b\"],\"oidc\":{\"issuerURL\":\"https://i\","
                           "\"clientID\":\"c\",\"clientSecretRef\":{\"name\":\"s\",\"key\":\"k\"}},"
                           "\"mode\":\"ReportOnly\"}");
    json_t *h = ctl_render_authd_host("ns", "n", spec, NULL);

    (void)state;
    assert_string_equal(pc_json_str(h, "id"), "ns/n");
    assert_string_equal(pc_json_str(json_object_get(h, "oidc"), "clientSecret"), "<secret:ns/s/k>");
    assert_null(pc_json_path(h, "oidc.clientSecretRef"));
    assert_null(pc_json_path(h, "session.cookieDomain")); /* host-only */
    assert_string_equal(pc_json_str(h, "mode"), "ReportOnly");
    /* Compact: what is at its default is left to authd's defaults. */
    assert_null(json_object_get(h, "upstreamHeaders"));
    assert_null(json_object_get(h, "bearerTokens"));
    assert_null(json_object_get(h, "session"));
    assert_null(json_object_get(h, "access"));
    assert_null(pc_json_path(h, "oidc.scopes"));
    assert_string_equal(pc_json_str(json_object_get(h, "oidc"), "issuerURL"), "https://i");
    json_decref(h);
    h = ctl_render_authd_host_full("ns", "n", spec, NULL);
    assert_non_null(json_object_get(h, "upstreamHeaders"));
    assert_non_null(json_object_get(h, "bearerTokens"));
    json_decref(h);
    h = ctl_render_authd_host("ns", "n", spec, "s3cret");
    assert_string_equal(pc_json_str(json_object_get(h, "oidc"), "clientSecret"), "s3cret");
    json_decref(h);
    json_decref(spec);
}

static void
test_provider_union(void **state)
{
    json_t *a = spec_of("{\"hosts\":[\"a.b\"],\"oidc\":{\"issuerURL\":\"https://i\","
                        "\"clientID\":\"c\"}}");
    json_t *b = spec_of("{\"hosts\":[\"c.d\"],\"oidc\":{\"issuerURL\":\"https://i\","
                        "\"clientID\":\"c\"},\"upstreamHeaders\":[{\"name\":\"X-Team\","
                        "\"claim\":\"team\"},{\"name\":\"X-Auth-Request-Email\",\"claim\":"
                        "\"email\"},{\"name\":\"Authorization\",\"claim\":\"x\"}]}");
    json_t *names = json_object(), *p;
    struct ctl_authd_opts o = {.namespace = "auth", .service = "authd", .port = 8080};
    struct pc_diag d = {0};
    char *s;

    (void)state;
    ctl_headers_collect(names, a);
    ctl_headers_collect(names, b);
    p = ctl_render_provider(names, &o);
    assert_int_equal(ctl_provider_check(p, &d), 0);
    s = dump(pc_json_path(p, "envoyExtAuthzHttp.headersToUpstreamOnAllow"));
    assert_string_equal(s, "[\"x-auth-request-email\",\"x-auth-request-groups\","
                           "\"x-auth-request-preferred-username\",\"x-auth-request-user\","
                           "\"x-team\",\"authorization\",\"cookie\"]");
    free(s);
    assert_string_equal(pc_json_str(json_object_get(p, "envoyExtAuthzHttp"), "service"),
                        "authd.auth.svc.cluster.local");
    assert_int_equal(json_integer_value(pc_json_path(p, "envoyExtAuthzHttp.port")), 8080);
    assert_string_equal(pc_json_str(json_object_get(p, "envoyExtAuthzHttp"), "timeout"), "2s");
    assert_string_equal(pc_json_str(json_object_get(p, "envoyExtAuthzHttp"), "statusOnError"),
                        "503");
    assert_true(json_is_false(pc_json_path(p, "envoyExtAuthzHttp.failOpen")));
    json_decref(p);
    json_decref(names);
    json_decref(a);
    json_decref(b);
}

static void
test_authd_config(void **state)
{
    json_t *hosts = json_pack("[{s:s}]", "id", "ns/n");
    struct ctl_authd_opts o = {.allow_insecure_issuers = true};
    json_t *cfg = ctl_render_authd_config(hosts, &o);

    (void)state;
    assert_string_equal(pc_json_str(cfg, "listen"), "0.0.0.0:4180");
    assert_string_equal(pc_json_str(cfg, "adminListen"), "0.0.0.0:9090");
    assert_string_equal(pc_json_str(cfg, "extAuthzPathPrefix"), "/ext-authz");
    assert_true(json_is_true(json_object_get(cfg, "allowInsecureIssuers")));
    assert_true(json_equal(json_object_get(cfg, "hosts"), hosts));
    json_decref(cfg);
    json_decref(hosts);
}

/* The Event form of the provider: one line, YAML-readable, never over the bound. */
static void
test_provider_snippet(void **state)
{
    static const size_t bounds[] = {1024, 300};
    struct ctl_authd_opts o = {0};
    json_t *names = json_object(), *provider;
    char *s;

    (void)state;
    provider = ctl_render_provider(names, &o);
    s = ctl_provider_snippet(provider, 1024);
    assert_true(strncmp(s, "add to meshConfig.extensionProviders: {\"name\":\"portcullis\"", 58) ==
                0);
    assert_non_null(strstr(s, "\"timeout\":\"2s\""));
    assert_null(strchr(s, '\n'));
    assert_null(strstr(s, "cut;"));
    free(s);
    json_decref(provider);
    for (int i = 0; i < 80; i++) {
        char name[32];

        snprintf(name, sizeof(name), "x-upstream-header-%02d", i);
        json_object_set_new(names, name, json_true());
    }
    provider = ctl_render_provider(names, &o);
    for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
        s = ctl_provider_snippet(provider, bounds[i]);
        assert_true(strlen(s) <= bounds[i]);
        assert_non_null(strstr(s, "render` prints it whole)"));
        free(s);
    }
    json_decref(provider);
    json_decref(names);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_policy_for_gateway_api_gateway),
        cmocka_unit_test(test_host_filter),
        cmocka_unit_test(test_parse_host_normalization),
        cmocka_unit_test(test_policy_without_skip),
        cmocka_unit_test(test_authd_host),
        cmocka_unit_test(test_provider_union),
        cmocka_unit_test(test_authd_config),
        cmocka_unit_test(test_provider_snippet),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
