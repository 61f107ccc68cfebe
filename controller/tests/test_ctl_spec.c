/*
 * test_ctl_spec.c - ProtectedHost spec validation, defaults, durations and names.
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

#define BASE                                                                                       \
    "\"hosts\":[\"echo.example.com\"],\"oidc\":{\"issuerURL\":\"https://idp.example.com\","        \
    "\"clientID\":\"echo\"}"

struct spec_case {
    const char *spec; /* JSON */
    bool insecure;
    const char *error; /* substring of the first error, NULL: valid */
};

static const struct spec_case spec_cases[] = {
    {"{" BASE "}", false, NULL},
    {"{\"oidc\":{\"issuerURL\":\"https://i\",\"clientID\":\"c\"}}", false, "spec.hosts: Required"},
    {"{\"hosts\":[],\"oidc\":{\"issuerURL\":\"https://i\",\"clientID\":\"c\"}}", false,
     "spec.hosts: Required"},
    {"{\"hosts\":[\"a.example.com\",\"a.example.com\"],\"oidc\":{\"issuerURL\":\"https://i\","
     "\"clientID\":\"c\"}}",
     false, "spec.hosts[1]: duplicate host \"a.example.com\""},
    {"{\"hosts\":[\"Echo.example.com\"],\"oidc\":{\"issuerURL\":\"https://i\",\"clientID\":\"c\"}}",
     false, "spec.hosts[0]: \"Echo.example.com\" is not a lowercase DNS name"},
    {"{\"hosts\":[\"*.apps.example.com\"],\"oidc\":{\"issuerURL\":\"https://"
     "i\",\"clientID\":\"c\"}}",
     false, NULL},
    {"{\"hosts\":[\"a.*.example.com\"],\"oidc\":{\"issuerURL\":\"https://i\",\"clientID\":\"c\"}}",
     false, "spec.hosts[0]"},
    {"{\"hosts\":[\"a.b\"],\"oidc\":{\"issuerURL\":\"http://idp\",\"clientID\":\"c\"}}", false,
     "spec.oidc.issuerURL: \"http://idp\" must be an https URL"},
    {"{\"hosts\":[\"a.b\"],\"oidc\":{\"issuerURL\":\"http://idp\",\"clientID\":\"c\"}}", true,
     NULL},
    {"{\"hosts\":[\"a.b\"],\"oidc\":{\"issuerURL\":\"ftp://idp\",\"clientID\":\"c\"}}", true,
     "spec.oidc.issuerURL"},
    {"{\"hosts\":[\"a.b\"],\"oidc\":{\"issuerURL\":\"https://idp\"}}", false,
     "spec.oidc.clientID: Required value"},
    {"{\"hosts\":[\"a.b\"]}", false, "spec.oidc: Required value"},
    {"{" BASE ",\"oidc2\":{}}", false, "spec.oidc2: unknown field"},
    {"{\"hosts\":[\"a.b\"],\"oidc\":{\"issuerURL\":\"https://i\",\"clientID\":\"c\","
     "\"callbackPath\":\"oauth2/callback\"}}",
     false, "spec.oidc.callbackPath: must be an absolute"},
    {"{" BASE ",\"mode\":\"Audit\"}", false, "spec.mode: Unsupported value: \"Audit\""},
    {"{" BASE ",\"session\":{\"sameSite\":\"lax\"}}", false, "spec.session.sameSite"},
    {"{" BASE ",\"session\":{\"lifetime\":\"0s\"}}", false, "spec.session.lifetime"},
    {"{" BASE ",\"session\":{\"lifetime\":\"1h\",\"refresh\":\"2h\"}}", false,
     "spec.session.refresh: must be shorter"},
    {"{" BASE ",\"session\":{\"lifetime\":\"1h30m\",\"refresh\":\"30m\"}}", false, NULL},
    {"{" BASE ",\"session\":{\"cookieName\":\"a b\"}}", false, "spec.session.cookieName"},
    {"{" BASE ",\"session\":{\"store\":\"memcached\"}}", false,
     "spec.session.store: Unsupported value: \"memcached\""},
    {"{" BASE ",\"session\":{\"store\":\"redis\"}}", false, NULL},
    {"{" BASE ",\"upstreamHeaders\":[{\"name\":\"X Bad\",\"claim\":\"sub\"}]}", false,
     "spec.upstreamHeaders[0].name: \"X Bad\" is not a header name"},
    {"{" BASE ",\"upstreamHeaders\":[{\"name\":\"X-A\",\"claim\":\"sub\"},"
     "{\"name\":\"x-a\",\"claim\":\"email\"}]}",
     false, "spec.upstreamHeaders[1].name: duplicate"},
    {"{" BASE ",\"upstreamHeaders\":[{\"name\":\"X-A\"}]}", false,
     "spec.upstreamHeaders[0].claim: Required value"},
    {"{" BASE ",\"paths\":{\"skip\":[\"healthz\"]}}", false, "spec.paths.skip[0]: must be a path"},
    {"{" BASE ",\"paths\":{\"skip\":[\"/oauth2/*\"]}}", false,
     "spec.paths.skip[0]: \"/oauth2/*\" would skip /oauth2/callback"},
    {"{" BASE ",\"paths\":{\"skip\":[\"/oauth2/callback\",\"/public/*\"]}}", false, NULL},
    {"{" BASE ",\"access\":{\"allowedEmails\":[\"nobody\"]}}", false,
     "spec.access.allowedEmails[0]: must be an email address"},
    {"{" BASE ",\"access\":{\"allowedEmailDomains\":[\"Example.com\"]}}", false,
     "spec.access.allowedEmailDomains[0]"},
    {"{" BASE ",\"access\":[]}", false, "spec.access: must be an object"},
    {"{" BASE ",\"access\":{\"allowUnverifiedEmail\":\"yes\"}}", false,
     "spec.access.allowUnverifiedEmail: must be a boolean"},
    {"{" BASE ",\"access\":{\"allowUnverifiedEmail\":true}}", false, NULL},
    {"{" BASE ",\"passIDToken\":\"yes\"}", false, "spec.passIDToken: must be a boolean"},
    {"{" BASE ",\"gateway\":{\"namespace\":\"Istio\"}}", false, "spec.gateway.namespace"},
    {"{" BASE ",\"gateway\":{\"selector\":{}}}", false, "spec.gateway.selector"},
    {"{" BASE ",\"gateway\":{\"namespace\":\"istio-ingress\",\"name\":\"public\"}}", false, NULL},
    {"{" BASE ",\"gateway\":{\"name\":\"Public\"}}", false,
     "spec.gateway.name: \"Public\" is not a Gateway name"},
    {"{" BASE ",\"gateway\":{\"name\":\"public\",\"selector\":{\"istio\":\"x\"}}}", false,
     "spec.gateway: set either selector (gateway pods) or name (a Gateway API Gateway)"},
    /* Sidecar mode: spec.workload instead of spec.gateway. */
    {"{" BASE ",\"workload\":{\"selector\":{\"matchLabels\":{\"app\":\"echo\"}}}}", false, NULL},
    /* The apiserver's defaults of spec.gateway are not a gateway set next to it. */
    {"{" BASE ",\"gateway\":{\"namespace\":\"istio-system\"},"
     "\"workload\":{\"selector\":{\"matchLabels\":{\"app\":\"echo\"}}}}",
     false, NULL},
    {"{" BASE ",\"gateway\":{\"selector\":{\"istio\":\"x\"}},"
     "\"workload\":{\"selector\":{\"matchLabels\":{\"app\":\"echo\"}}}}",
     false, "spec.workload: set either workload (the app's own pods, sidecar mode) or gateway"},
    {"{" BASE ",\"gateway\":{\"namespace\":\"edge\"},"
     "\"workload\":{\"selector\":{\"matchLabels\":{\"app\":\"echo\"}}}}",
     false, "spec.workload: set either"},
    {"{" BASE ",\"workload\":{}}", false, "spec.workload.selector: Required value"},
    {"{" BASE ",\"workload\":{\"selector\":{}}}", false,
     "spec.workload.selector.matchLabels: Required value"},
    {"{" BASE ",\"workload\":{\"selector\":{\"matchLabels\":{}}}}", false,
     "spec.workload.selector.matchLabels: Required value"},
    {"{" BASE ",\"workload\":{\"selector\":{\"matchLabels\":{\"app\":\"-x\"}}}}", false,
     "spec.workload.selector.matchLabels.app: must be a label value"},
    {"{" BASE ",\"workload\":{\"selector\":{\"matchLabels\":{\"a b\":\"x\"}}}}", false,
     "spec.workload.selector.matchLabels: \"a b\" is not a label key"},
    {"{" BASE ",\"workload\":{\"selector\":{\"matchLabels\":{\"example.com/app\":\"x\"}}}}", false,
     NULL},
    {"{" BASE ",\"workload\":{\"selector\":{\"matchExpressions\":[],"
     "\"matchLabels\":{\"app\":\"x\"}}}}",
     false, "spec.workload.selector.matchExpressions: unknown field"},
    {"{" BASE ",\"workload\":{\"name\":\"x\",\"selector\":{\"matchLabels\":{\"app\":\"x\"}}}}",
     false, "spec.workload.name: unknown field"},
    {"{" BASE ",\"workload\":\"echo\"}", false, "spec.workload: must be an object"},
    {"\"not an object\"", false, "spec: Required value"},
};

static void
test_spec_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(spec_cases) / sizeof(spec_cases[0]); i++) {
        const struct spec_case *c = &spec_cases[i];
        json_t *in = json_loads(c->spec, JSON_DECODE_ANY, NULL), *out = NULL;
        struct ctl_errors errs = {0};
        int rc;

        assert_non_null(in);
        rc = ctl_spec_normalize(in, c->insecure, &out, &errs);
        if (!c->error) {
            if (rc != 0)
                fail_msg("case %zu: unexpected error %s", i, errs.n ? errs.msg[0] : "?");
            assert_non_null(out);
        } else {
            assert_int_equal(rc, PC_EINVAL);
            assert_null(out);
            assert_true(errs.n >= 1);
            if (!strstr(errs.msg[0], c->error))
                fail_msg("case %zu: got \"%s\", want \"%s\"", i, errs.msg[0], c->error);
        }
        ctl_errors_release(&errs);
        json_decref(out);
        json_decref(in);
    }
}

static void
test_defaults(void **state)
{
    json_t *in = json_loads("{" BASE "}", 0, NULL), *out = NULL;
    struct ctl_errors errs = {0};

    (void)state;
    assert_int_equal(ctl_spec_normalize(in, false, &out, &errs), 0);
    assert_string_equal(pc_json_str(pc_json_path(out, "gateway"), "namespace"), "istio-system");
    assert_string_equal(pc_json_str(pc_json_path(out, "gateway.selector"), "istio"),
                        "ingressgateway");
    assert_string_equal(pc_json_str(pc_json_path(out, "oidc"), "callbackPath"), "/oauth2/callback");
    assert_string_equal(pc_json_str(pc_json_path(out, "oidc.claims"), "username"),
                        "preferred_username");
    assert_int_equal(json_array_size(pc_json_path(out, "oidc.scopes")), 3);
    assert_string_equal(pc_json_str(pc_json_path(out, "session"), "cookieName"), "_portcullis");
    assert_string_equal(pc_json_str(pc_json_path(out, "session"), "lifetime"), "12h");
    assert_string_equal(pc_json_str(pc_json_path(out, "session"), "refresh"), "0s");
    assert_string_equal(pc_json_str(pc_json_path(out, "session"), "sameSite"), "Lax");
    assert_string_equal(pc_json_str(pc_json_path(out, "session"), "store"), "cookie");
    assert_int_equal(json_array_size(json_object_get(out, "upstreamHeaders")), 4);
    assert_string_equal(pc_json_str(out, "mode"), "Enforce");
    assert_true(json_is_false(json_object_get(out, "passIDToken")));
    assert_true(json_is_false(pc_json_path(out, "bearerTokens.enabled")));
    assert_null(pc_json_path(out, "oidc.clientSecretRef"));
    assert_null(pc_json_path(out, "access.allowUnverifiedEmail")); /* authd's default: false */
    json_decref(out);
    json_decref(in);
}

static void
test_scopes_openid_first(void **state)
{
    json_t *in = json_loads("{\"hosts\":[\"a.b\"],\"oidc\":{\"issuerURL\":\"https://i\","
                            "\"clientID\":\"c\",\"scopes\":[\"email\",\"openid\",\"groups\","
                            "\"email\"]}}",
                            0, NULL),
           *out = NULL;
    struct ctl_errors errs = {0};
    char *dump;

    (void)state;
    assert_int_equal(ctl_spec_normalize(in, false, &out, &errs), 0);
    dump = json_dumps(pc_json_path(out, "oidc.scopes"), JSON_COMPACT);
    assert_string_equal(dump, "[\"openid\",\"email\",\"groups\"]");
    free(dump);
    json_decref(out);
    json_decref(in);
}

static void
test_errors_collected(void **state)
{
    json_t *in = json_loads("{\"hosts\":[\"A\"],\"oidc\":{\"issuerURL\":\"x\"},\"mode\":\"m\"}", 0,
                            NULL),
           *out = NULL;
    struct ctl_errors errs = {0};
    char *joined;

    (void)state;
    assert_int_equal(ctl_spec_normalize(in, false, &out, &errs), PC_EINVAL);
    assert_true(errs.n >= 4);
    joined = ctl_errors_join(&errs, "; ");
    assert_non_null(strstr(joined, "spec.hosts[0]"));
    assert_non_null(strstr(joined, "spec.oidc.issuerURL"));
    assert_non_null(strstr(joined, "spec.oidc.clientID"));
    assert_non_null(strstr(joined, "spec.mode"));
    free(joined);
    ctl_errors_release(&errs);
    json_decref(in);
}

static void
test_durations(void **state)
{
    static const struct {
        const char *s;
        long long secs; /* -1: invalid */
    } cases[] = {{"12h", 43200}, {"1h30m", 5400}, {"90s", 90},  {"0s", 0},  {"30m", 1800}, {"", -1},
                 {"12", -1},     {"h", -1},       {"1.5h", -1}, {"1d", -1}, {"-1s", -1}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long long v = -7;
        int rc = ctl_parse_duration(cases[i].s, &v);

        if (cases[i].secs < 0) {
            assert_int_equal(rc, PC_EPARSE);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(v, cases[i].secs);
        }
    }
}

static bool
is_k8s_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static void
test_policy_names(void **state)
{
    char long_name[254];
    char *a, *b, *c;

    (void)state;
    a = ctl_policy_name("test-auth", "echo");
    assert_string_equal(a, "portcullis-test-auth-echo");
    free(a);

    memset(long_name, 'x', 253);
    long_name[253] = '\0';
    a = ctl_policy_name("a-very-long-namespace-name-for-the-team", long_name);
    assert_int_equal(strlen(a), 63);
    assert_true(is_k8s_name(a));
    assert_memory_equal(a, "portcullis-a-very-long-namespace", 32);
    long_name[252] = 'y';
    b = ctl_policy_name("a-very-long-namespace-name-for-the-team", long_name);
    assert_int_equal(strlen(b), 63);
    assert_string_not_equal(a, b); /* same prefix, different hash */
    free(a);
    free(b);

    /* dots become dashes, and the hash keeps "a.b" apart from "a-b" */
    a = ctl_policy_name("ns", "app.v2");
    b = ctl_policy_name("ns", "app-v2");
    assert_true(is_k8s_name(a));
    assert_string_equal(b, "portcullis-ns-app-v2");
    assert_string_not_equal(a, b);
    /* deterministic */
    c = ctl_policy_name("ns", "app.v2");
    assert_string_equal(a, c);
    free(a);
    free(b);
    free(c);
}

static void
test_dns_and_headers(void **state)
{
    (void)state;
    assert_true(ctl_valid_dns_name("a.example.com", false));
    assert_false(ctl_valid_dns_name("*.example.com", false));
    assert_true(ctl_valid_dns_name("*.example.com", true));
    assert_false(ctl_valid_dns_name("-a.example.com", false));
    assert_false(ctl_valid_dns_name("a..b", false));
    assert_false(ctl_valid_dns_name("a.", false));
    assert_false(ctl_valid_dns_name("", false));
    assert_true(ctl_valid_header_name("X-Auth-Request-User"));
    assert_false(ctl_valid_header_name("X Auth"));
    assert_false(ctl_valid_header_name("X:A"));
    assert_false(ctl_valid_header_name(""));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_table),          cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_scopes_openid_first), cmocka_unit_test(test_errors_collected),
        cmocka_unit_test(test_durations),           cmocka_unit_test(test_policy_names),
        cmocka_unit_test(test_dns_and_headers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
