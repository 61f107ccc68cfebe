/*
 * test_ctl_policy.c - the admin policy: its parser, the host and URL matching, and the verdict
 * on a ProtectedHost (which deploy/admission-policy.yaml must give too: test_tenancy.py).
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

/* ---- matching ------------------------------------------------------------------------------ */

struct within_case {
    const char *value, *pattern;
    bool want;
};

static const struct within_case host_cases[] = {
    {"app.example.com", "app.example.com", true},
    {"app.example.com", "*.example.com", true},
    {"a.b.example.com", "*.example.com", true},
    {"example.com", "*.example.com", false},
    {"app.badexample.com", "*.example.com", false},
    {"app.example.com.evil.net", "*.example.com", false},
    {"*.example.com", "*.example.com", true},
    {"*.a.example.com", "*.example.com", true},
    {"*.example.com", "example.com", false},
    {"*.com", "*.example.com", false},
    {"anything.test", "*", true},
    {"*.anything.test", "*", true},
    {"app.example.com", "other.example.com", false},
};

static void
test_host_within(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(host_cases) / sizeof(host_cases[0]); i++)
        if (ctl_host_within(host_cases[i].value, host_cases[i].pattern) != host_cases[i].want)
            fail_msg("host %s within %s: want %d", host_cases[i].value, host_cases[i].pattern,
                     host_cases[i].want);
}

/* ---- parsing ------------------------------------------------------------------------------- */

struct parse_case {
    const char *spec;  /* JSON of spec */
    const char *error; /* substring of the errors, NULL: valid */
};

static const struct parse_case parse_cases[] = {
    {"{\"rules\":[]}", NULL},
    {"{}", "spec.rules: Required value"},
    {"{\"rules\":[{}]}", "spec.rules[0].namespaces: Required value"},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"Team\"]}}]}",
     "spec.rules[0].namespaces.names[0]: must be a namespace name"},
    {"{\"rules\":[{\"namespaces\":{\"selector\":{}},\"hosts\":[\"a.*.example.com\"]}]}",
     "spec.rules[0].hosts[0]: must be a host pattern"},
    {"{\"rules\":[{\"namespaces\":{\"selector\":{\"matchExpressions\":[{\"key\":\"k\","
     "\"operator\":\"In\"}]}}}]}",
     "matchExpressions[0].values: In and NotIn take values"},
    {"{\"rules\":[{\"namespaces\":{\"selector\":{\"matchExpressions\":[{\"key\":\"k\","
     "\"operator\":\"Near\"}]}}}]}",
     "matchExpressions[0].operator: must be In, NotIn"},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"a\"]},\"issuers\":[\"https://idp/a/../b\"]}]}",
     "spec.rules[0].issuers[0]: must be an http(s) URL prefix"},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"a\"]},\"issuers\":[\"https://IdP/\"]}]}",
     "spec.rules[0].issuers[0]"},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"a\"]},\"issuers\":[\"https://idp?x\"]}]}",
     "spec.rules[0].issuers[0]"},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"a\"]},\"issuers\":[\"https://idp:123456\"]}]}",
     "spec.rules[0].issuers[0]"},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"a\"]},\"issuers\":[\"https://idp:8443/r\"]}]}",
     NULL},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"a\"]},\"gateways\":[{\"namespace\":\"gw\","
     "\"name\":\"pub\",\"selector\":{\"a\":\"b\"}}]}]}",
     "spec.rules[0].gateways[0]: set either selector"},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"a\"]},\"gateways\":[{}]}]}",
     "spec.rules[0].gateways[0].namespace: Required value"},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"a\"]},\"allowWildcardHosts\":\"yes\"}]}",
     "spec.rules[0].allowWildcardHosts: must be a boolean"},
    {"{\"rules\":[{\"namespaces\":{\"names\":[\"a\"]},\"owner\":\"me\"}]}",
     "spec.rules[0].owner: unknown field"},
};

static json_t *
policy_object(const char *name, const char *spec_json)
{
    return json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", CTL_GROUP_VERSION, "kind",
                     "ProtectedHostPolicy", "metadata", "name", name, "spec",
                     json_loads(spec_json, 0, NULL));
}

static void
test_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        json_t *obj = policy_object(CTL_POLICY_NAME, c->spec), *out = NULL;
        struct ctl_errors errs = {0};
        int rc = ctl_policy_normalize(obj, &out, &errs);
        char *joined = ctl_errors_join(&errs, "; ");

        if (!c->error && rc != 0)
            fail_msg("case %zu: unexpected errors: %s", i, joined);
        if (c->error && (rc == 0 || !strstr(joined, c->error)))
            fail_msg("case %zu: want \"%s\", got \"%s\"", i, c->error, joined);
        assert_true(rc == 0 ? out != NULL : out == NULL);
        free(joined);
        ctl_errors_release(&errs);
        json_decref(out);
        json_decref(obj);
    }
}

static void
test_parse_needs_the_name(void **state)
{
    json_t *obj = policy_object("team-a", "{\"rules\":[]}"), *out = NULL;
    struct ctl_errors errs = {0};

    (void)state;
    assert_int_equal(ctl_policy_normalize(obj, &out, &errs), PC_EINVAL);
    assert_non_null(strstr(errs.msg[0], "metadata.name: the policy is one object, named "
                                        "portcullis"));
    ctl_errors_release(&errs);
    json_decref(obj);
}

/* ---- admission ------------------------------------------------------------------------------ */

static const char *const policy_spec =
    "{\"rules\":["
    "{\"namespaces\":{\"names\":[\"team-a\"]},\"hosts\":[\"*.team-a.example.com\"],"
    " \"gateways\":[{\"namespace\":\"istio-system\",\"selector\":{\"istio\":\"ingressgateway\"}}],"
    " \"issuers\":[\"https://idp.example.com/realms/a\"]},"
    "{\"namespaces\":{\"selector\":{\"matchLabels\":{\"tenant\":\"b\"},"
    "  \"matchExpressions\":[{\"key\":\"tier\",\"operator\":\"NotIn\",\"values\":[\"dev\"]}]}},"
    " \"hosts\":[\"*.team-b.example.com\"],\"allowWildcardHosts\":true,"
    " \"gateways\":[{\"namespace\":\"istio-ingress\",\"name\":\"public\"}],"
    " \"issuers\":[\"https://idp.example.com/realms/b/\"]},"
    "{\"namespaces\":{\"selector\":{}},\"gateways\":[{\"namespace\":\"istio-system\"}],"
    " \"issuers\":[\"https://login.example.com\"]}"
    "]}";

struct admit_case {
    const char *ns;
    const char *spec;         /* extra fields over BASE_SPEC, merged */
    bool policy;              /* with policy_spec (else: no policy installed) */
    enum ctl_verdict verdict; /* CTL_ACCEPTED, ... */
    const char *message;      /* substring, or the first prefix when accepted under a policy */
};

#define A_HOST(h) "{\"hosts\":[\"" h "\"]}"

static const struct admit_case admit_cases[] = {
    /* no policy: any host and issuer, the controller's gateway namespaces only */
    {"team-a", A_HOST("anything.example.org"), false, CTL_ACCEPTED, NULL},
    {"team-a", A_HOST("*.example.org"), false, CTL_ACCEPTED, NULL},
    {"team-a", "{\"gateway\":{\"namespace\":\"kube-system\",\"selector\":{\"app\":\"x\"}}}", false,
     CTL_GATEWAY_NOT_ALLOWED,
     "spec.gateway.namespace: \"kube-system\" is not a gateway namespace of portcullis-controller "
     "(--gateway-namespaces: istio-system, istio-ingress); whoever installs portcullis can change"},
    /* team-a: its names, its issuer, the default gateway */
    {"team-a", A_HOST("app.team-a.example.com"), true, CTL_ACCEPTED,
     "https://idp.example.com/realms/a"},
    {"team-a", A_HOST("app.team-b.example.com"), true, CTL_HOST_NOT_ALLOWED,
     "spec.hosts[0]: \"app.team-b.example.com\" is not within the hosts namespace team-a may "
     "protect (*.team-a.example.com); a cluster admin can change ProtectedHostPolicy portcullis"},
    {"team-a", A_HOST("*.x.team-a.example.com"), true, CTL_HOST_NOT_ALLOWED,
     "\"*.x.team-a.example.com\" is a wildcard host, and no rule with allowWildcardHosts: true "
     "lets namespace team-a protect it (wildcards within: none)"},
    {"team-a",
     "{\"oidc\":{\"issuerURL\":\"https://idp.example.com/realms/ab\",\"clientID\":\"c\"}}", true,
     CTL_ISSUER_NOT_ALLOWED,
     "spec.oidc.issuerURL: \"https://idp.example.com/realms/ab\" is not within the issuers "
     "namespace team-a may use (https://idp.example.com/realms/a, https://login.example.com)"},
    {"team-a", "{\"oidc\":{\"issuerURL\":\"https://login.example.com/t\",\"clientID\":\"c\"}}",
     true, CTL_ACCEPTED, "https://idp.example.com/realms/a"},
    {"team-a", "{\"gateway\":{\"namespace\":\"istio-system\",\"selector\":{\"app\":\"x\"}}}", true,
     CTL_ACCEPTED, NULL}, /* the rule for every namespace: any gateway in istio-system */
    {"team-a", "{\"gateway\":{\"namespace\":\"istio-ingress\",\"name\":\"public\"}}", true,
     CTL_GATEWAY_NOT_ALLOWED,
     "spec.gateway: istio-ingress Gateway public is not among the gateways namespace team-a may "
     "attach to (istio-system pods istio=ingressgateway, istio-system (any))"},
    /* a session cookie may reach only hosts the namespace may protect */
    {"team-a", "{\"session\":{\"cookieDomain\":\".apps.team-a.example.com\"}}", true, CTL_ACCEPTED,
     "https://idp.example.com/realms/a"},
    {"team-a", "{\"session\":{\"cookieDomain\":\".example.com\"}}", true, CTL_HOST_NOT_ALLOWED,
     "spec.session.cookieDomain: \".example.com\" sends the session cookie to example.com and "
     "*.example.com, not all within the hosts namespace team-a may protect (*.team-a.example.com)"},
    {"team-a", "{\"session\":{\"cookieDomain\":\".team-a.example.com\"}}", true,
     CTL_HOST_NOT_ALLOWED, "to team-a.example.com and *.team-a.example.com, not all within"},
    {"team-a", "{\"session\":{\"cookieDomain\":\".example.com\"}}", false, CTL_ACCEPTED, NULL},
    /* team-b by its labels: wildcards, a named Gateway */
    {"team-b",
     "{\"hosts\":[\"*.team-b.example.com\"],\"gateway\":{\"namespace\":"
     "\"istio-ingress\",\"name\":\"public\"},\"oidc\":{\"issuerURL\":"
     "\"https://idp.example.com/realms/b/x\",\"clientID\":\"c\"}}",
     true, CTL_ACCEPTED, "https://idp.example.com/realms/b/"},
    {"team-b",
     "{\"hosts\":[\"a.team-b.example.com\"],\"gateway\":{\"namespace\":"
     "\"istio-ingress\",\"selector\":{\"istio\":\"ingressgateway\"}}}",
     true, CTL_GATEWAY_NOT_ALLOWED, "istio-ingress pods istio=ingressgateway is not among"},
    /* team-b-dev has tenant=b but tier=dev: only the rule for every namespace */
    {"team-b-dev", A_HOST("a.team-b.example.com"), true, CTL_HOST_NOT_ALLOWED,
     "may protect (none)"},
    /* unknown labels: selectors other than {} match nothing */
    {"unknown", A_HOST("a.team-b.example.com"), true, CTL_HOST_NOT_ALLOWED, "may protect (none)"},
    {"team-a", "{\"gateway\":{\"namespace\":\"kube-system\"}}", true, CTL_GATEWAY_NOT_ALLOWED,
     "--gateway-namespaces: istio-system, istio-ingress"},
};

#define BASE_SPEC                                                                                  \
    "{\"hosts\":[\"app.team-a.example.com\"],\"oidc\":{\"issuerURL\":"                             \
    "\"https://idp.example.com/realms/a\",\"clientID\":\"c\"}}"

static json_t *
labels_of(void *ud, const char *ns)
{
    (void)ud;
    if (strcmp(ns, "team-b") == 0)
        return json_pack("{s:s,s:s}", "tenant", "b", "tier", "prod");
    if (strcmp(ns, "team-b-dev") == 0)
        return json_pack("{s:s,s:s}", "tenant", "b", "tier", "dev");
    if (strcmp(ns, "unknown") == 0)
        return NULL;
    return json_object();
}

static json_t *
canonical(const char *extra)
{
    json_t *in = json_loads(BASE_SPEC, 0, NULL), *more = json_loads(extra, 0, NULL), *out = NULL;
    struct ctl_errors errs = {0};

    json_object_update(in, more);
    if (ctl_spec_normalize(in, false, &out, &errs) != 0)
        fail_msg("spec %s: %s", extra, errs.msg[0]);
    ctl_errors_release(&errs);
    json_decref(more);
    json_decref(in);
    return out;
}

static void
test_admit(void **state)
{
    json_t *obj = policy_object(CTL_POLICY_NAME, policy_spec), *policy = NULL;
    struct ctl_errors errs = {0};

    (void)state;
    assert_int_equal(ctl_policy_normalize(obj, &policy, &errs), 0);
    for (size_t i = 0; i < sizeof(admit_cases) / sizeof(admit_cases[0]); i++) {
        const struct admit_case *c = &admit_cases[i];
        struct ctl_tenancy t = {.gateway_namespaces = "istio-system,istio-ingress",
                                .policy = c->policy ? policy : NULL,
                                .labels = labels_of};
        json_t *spec = canonical(c->spec), *prefixes = NULL;
        char *msg = NULL;
        enum ctl_verdict v = ctl_policy_admit(&t, c->ns, spec, &msg, &prefixes);

        if (v != c->verdict)
            fail_msg("case %zu: verdict %d, want %d (%s)", i, v, c->verdict, msg ? msg : "");
        if (v != CTL_ACCEPTED && !strstr(msg, c->message))
            fail_msg("case %zu: want \"%s\" in \"%s\"", i, c->message, msg);
        if (v == CTL_ACCEPTED && c->policy != (prefixes != NULL))
            fail_msg("case %zu: prefixes only under a policy", i);
        if (v == CTL_ACCEPTED && c->message)
            assert_string_equal(json_string_value(json_array_get(prefixes, 0)), c->message);
        assert_true(v == CTL_ACCEPTED ? msg == NULL : msg != NULL);
        free(msg);
        json_decref(prefixes);
        json_decref(spec);
    }
    json_decref(policy);
    json_decref(obj);
}

/* An installed policy the controller cannot read allows nothing. */
static void
test_broken_policy_allows_nothing(void **state)
{
    struct ctl_tenancy t = {.policy_error = "spec.rules: Required value"};
    json_t *spec = canonical("{}");
    char *msg = NULL;

    (void)state;
    assert_int_equal(ctl_policy_admit(&t, "team-a", spec, &msg, NULL), CTL_HOST_NOT_ALLOWED);
    assert_non_null(strstr(msg, "ProtectedHostPolicy portcullis is invalid, so nothing is "
                                "allowed until it is fixed: spec.rules: Required value"));
    free(msg);
    json_decref(spec);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_within),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_needs_the_name),
        cmocka_unit_test(test_admit),
        cmocka_unit_test(test_broken_policy_allows_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
