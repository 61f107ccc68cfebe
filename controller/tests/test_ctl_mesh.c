/*
 * test_ctl_mesh.c - merging the portcullis provider into Istio's mesh config.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller.h"
#include "portcullis/json.h"
#include "portcullis/yaml.h"

static json_t *
provider(const char *extra_header)
{
    json_t *names = json_object();
    struct ctl_authd_opts o = {0};
    json_t *p;

    json_object_set_new(names, "x-auth-request-user", json_true());
    if (extra_header)
        json_object_set_new(names, extra_header, json_true());
    p = ctl_render_provider(names, &o);
    json_decref(names);
    return p;
}

static char *
merge_ok(const char *mesh, const json_t *p)
{
    struct pc_diag d = {0};
    char *out = NULL;

    if (ctl_mesh_merge(mesh, p, &out, &d) != 0)
        fail_msg("merge failed: %s", d.msg);
    return out;
}

static json_t *
as_json(const char *text)
{
    struct pc_ynode *root = NULL;
    struct pc_diag d = {0};
    json_t *j;

    assert_int_equal(pc_yaml_load(text, strlen(text), &root, &d), 0);
    j = pc_yaml_to_json(root);
    pc_ynode_free(root);
    return j;
}

static const char *const istio_mesh = "accessLogFile: /dev/stdout\n"
                                      "defaultConfig:\n"
                                      "  discoveryAddress: istiod.istio-system.svc:15012\n"
                                      "  proxyMetadata: {ISTIO_META_DNS_CAPTURE: \"true\"}\n"
                                      "  holdApplicationUntilProxyStarts: true\n"
                                      "enablePrometheusMerge: true\n"
                                      "# comments are not kept\n"
                                      "extensionProviders:\n"
                                      "- name: otel\n"
                                      "  opentelemetry:\n"
                                      "    port: 4317\n"
                                      "    service: otel.observability.svc.cluster.local\n"
                                      "- name: portcullis\n"
                                      "  envoyExtAuthzHttp:\n"
                                      "    service: old.portcullis-system.svc.cluster.local\n"
                                      "    port: 9999\n"
                                      "    timeout: 600s\n"
                                      "- name: oauth2-proxy\n"
                                      "  envoyExtAuthzHttp:\n"
                                      "    service: oauth2-proxy.oauth2-proxy.svc.cluster.local\n"
                                      "    port: 80\n"
                                      "    statusOnError: \"500\"\n"
                                      "    includeRequestHeadersInCheck: [authorization, cookie]\n"
                                      "rootNamespace: istio-system\n"
                                      "trustDomain: cluster.local\n"
                                      "meshMTLS: {minProtocolVersion: 'TLSV1_2'}\n"
                                      "customVersion: 1.10\n"
                                      "multiline: |\n"
                                      "  line one\n"
                                      "  line two\n";

static void
test_no_mesh(void **state)
{
    json_t *p = provider(NULL), *j;
    char *out = merge_ok(NULL, p), *again = merge_ok("", p);

    (void)state;
    assert_string_equal(out, again);
    j = as_json(out);
    assert_int_equal(json_object_size(j), 1);
    assert_true(json_equal(json_array_get(json_object_get(j, "extensionProviders"), 0), p));
    assert_non_null(strstr(out, "statusOnError: \"503\""));
    assert_non_null(strstr(out, "timeout: 2s"));
    json_decref(j);
    free(out);
    free(again);
    json_decref(p);
}

static void
test_replaced_in_place(void **state)
{
    json_t *p = provider(NULL), *in = as_json(istio_mesh), *j;
    char *out = merge_ok(istio_mesh, p);
    json_t *list;
    const char *key;
    json_t *v;

    (void)state;
    j = as_json(out);
    list = json_object_get(j, "extensionProviders");
    assert_int_equal(json_array_size(list), 3);
    assert_true(json_equal(json_array_get(list, 0),
                           json_array_get(json_object_get(in, "extensionProviders"), 0)));
    assert_true(json_equal(json_array_get(list, 1), p)); /* same position as before */
    assert_true(json_equal(json_array_get(list, 2),
                           json_array_get(json_object_get(in, "extensionProviders"), 2)));
    /* every other field is untouched */
    json_object_foreach(in, key, v)
    {
        if (strcmp(key, "extensionProviders") != 0)
            assert_true(json_equal(v, json_object_get(j, key)));
    }
    assert_int_equal(json_object_size(in), json_object_size(j));
    /* scalars keep their text: 1.10 is not rewritten as 1.1, "500" stays a string */
    assert_non_null(strstr(out, "customVersion: 1.10\n"));
    assert_string_equal(
        pc_json_str(pc_json_path(j, "defaultConfig.proxyMetadata"), "ISTIO_META_DNS_CAPTURE"),
        "true");
    assert_non_null(strstr(out, "multiline: |"));
    /* order of keys is kept */
    assert_true(strstr(out, "accessLogFile") < strstr(out, "defaultConfig"));
    assert_true(strstr(out, "extensionProviders") < strstr(out, "rootNamespace"));
    assert_true(strstr(out, "trustDomain") < strstr(out, "customVersion"));
    assert_null(strstr(out, "old.portcullis-system"));
    json_decref(j);
    json_decref(in);
    free(out);
    json_decref(p);
}

static void
test_appended(void **state)
{
    const char *mesh = "accessLogFile: /dev/stdout\n"
                       "extensionProviders:\n"
                       "- name: otel\n"
                       "  opentelemetry: {port: 4317, service: otel.svc}\n"
                       "trustDomain: cluster.local\n";
    json_t *p = provider(NULL), *j;
    char *out = merge_ok(mesh, p);

    (void)state;
    j = as_json(out);
    assert_int_equal(json_array_size(json_object_get(j, "extensionProviders")), 2);
    assert_string_equal(
        pc_json_str(json_array_get(json_object_get(j, "extensionProviders"), 0), "name"), "otel");
    assert_true(json_equal(json_array_get(json_object_get(j, "extensionProviders"), 1), p));
    json_decref(j);
    free(out);
    /* no extensionProviders key: added at the end */
    out = merge_ok("accessLogFile: /dev/stdout\n", p);
    assert_string_equal(out, "accessLogFile: /dev/stdout\nextensionProviders:\n- name: portcullis\n"
                             "  envoyExtAuthzHttp:\n    service: "
                             "portcullis-authd.portcullis-system.svc.cluster.local\n"
                             "    port: 4180\n    pathPrefix: /ext-authz\n    timeout: 2s\n"
                             "    failOpen: false\n    statusOnError: \"503\"\n"
                             "    includeRequestHeadersInCheck:\n    - cookie\n"
                             "    - authorization\n    - accept\n    - x-requested-with\n"
                             "    - sec-fetch-mode\n    - x-forwarded-proto\n"
                             "    - x-forwarded-host\n    - user-agent\n"
                             "    headersToUpstreamOnAllow:\n    - x-auth-request-user\n"
                             "    - authorization\n    - cookie\n"
                             "    headersToDownstreamOnDeny:\n    - content-type\n"
                             "    - set-cookie\n    - location\n    - www-authenticate\n"
                             "    - cache-control\n    headersToDownstreamOnAllow:\n"
                             "    - set-cookie\n");
    free(out);
    /* null list */
    out = merge_ok("extensionProviders:\nrootNamespace: x\n", p);
    j = as_json(out);
    assert_int_equal(json_array_size(json_object_get(j, "extensionProviders")), 1);
    json_decref(j);
    free(out);
    json_decref(p);
}

static void
test_duplicates_collapse(void **state)
{
    const char *mesh = "extensionProviders:\n- name: portcullis\n  envoyExtAuthzHttp: {}\n"
                       "- name: a\n  zipkin: {service: z, port: 9411}\n"
                       "- name: portcullis\n  envoyExtAuthzHttp: {}\n";
    json_t *p = provider(NULL), *j, *list;
    char *out = merge_ok(mesh, p);

    (void)state;
    j = as_json(out);
    list = json_object_get(j, "extensionProviders");
    assert_int_equal(json_array_size(list), 2);
    assert_true(json_equal(json_array_get(list, 0), p));
    assert_string_equal(pc_json_str(json_array_get(list, 1), "name"), "a");
    json_decref(j);
    free(out);
    json_decref(p);
}

static void
test_idempotent_and_updates(void **state)
{
    static const char *const inputs[] = {NULL, "", "a: 1\n", "x: 'y'\nextensionProviders: []\n",
                                         "q: \"on\"\nr: 'it''s'\ns: \"tab\\there\"\n"};
    json_t *p1 = provider(NULL), *p2 = provider("x-team");

    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        char *once = merge_ok(inputs[i], p1);
        char *twice = merge_ok(once, p1);
        char *updated = merge_ok(twice, p2);
        char *back = merge_ok(updated, p1);

        assert_string_equal(once, twice);
        assert_non_null(strstr(updated, "- x-team\n"));
        assert_string_equal(back, once);
        free(once);
        free(twice);
        free(updated);
        free(back);
    }
    {
        char *once = merge_ok(istio_mesh, p1), *twice = merge_ok(once, p1);

        assert_string_equal(once, twice);
        free(once);
        free(twice);
    }
    json_decref(p1);
    json_decref(p2);
}

static void
test_refused(void **state)
{
    static const struct {
        const char *mesh;
        int rc;
        const char *msg;
    } cases[] = {
        {"- a\n- b\n", PC_EINVAL, "mesh: must be a map"},
        {"extensionProviders: {name: x}\n", PC_EINVAL, "extensionProviders: must be a list"},
        {"extensionProviders: [a]\n", PC_EINVAL, "extensionProviders[0]: must be a map"},
        {"a: [\n", PC_EPARSE, ""},
        {"a: 1\n---\nb: 2\n", PC_EINVAL, "one YAML document"},
    };
    json_t *p = provider(NULL);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pc_diag d = {0};
        char *out = (char *)"unset";

        assert_int_equal(ctl_mesh_merge(cases[i].mesh, p, &out, &d), cases[i].rc);
        assert_null(out);
        assert_non_null(strstr(d.msg, cases[i].msg));
    }
    json_decref(p);
}

static void
test_provider_checked(void **state)
{
    json_t *p = provider(NULL);
    json_t *h = json_object_get(p, "envoyExtAuthzHttp");
    struct pc_diag d = {0};
    char *out = NULL;

    (void)state;
    assert_int_equal(ctl_provider_check(p, &d), 0);
    json_object_set_new(h, "includeRequestBodyInCheck", json_object());
    assert_int_equal(ctl_mesh_merge("a: 1\n", p, &out, &d), PC_EINVAL);
    assert_non_null(strstr(d.msg, "includeRequestBodyInCheck: unknown field"));
    json_object_del(h, "includeRequestBodyInCheck");
    json_array_append_new(json_object_get(h, "headersToUpstreamOnAllow"), json_string("X-Upper"));
    assert_int_equal(ctl_provider_check(p, &d), PC_EINVAL);
    assert_non_null(strstr(d.msg, "must be lowercase"));
    json_decref(p);
    p = provider(NULL);
    json_object_set_new(json_object_get(p, "envoyExtAuthzHttp"), "failOpen", json_true());
    assert_int_equal(ctl_provider_check(p, &d), PC_EINVAL);
    json_object_set_new(json_object_get(p, "envoyExtAuthzHttp"), "failOpen", json_false());
    json_object_set_new(json_object_get(p, "envoyExtAuthzHttp"), "port", json_integer(0));
    assert_int_equal(ctl_provider_check(p, &d), PC_EINVAL);
    json_object_set_new(p, "name", json_string("other"));
    assert_int_equal(ctl_provider_check(p, &d), PC_EINVAL);
    json_decref(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_mesh),
        cmocka_unit_test(test_replaced_in_place),
        cmocka_unit_test(test_appended),
        cmocka_unit_test(test_duplicates_collapse),
        cmocka_unit_test(test_idempotent_and_updates),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_provider_checked),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
