/*
 * test_ctl_egress.c - the ServiceEntries of --egress-service-entries: which endpoint an issuer
 * URL names, one entry per distinct host with every port, names, and what goes when unused.
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
#include "portcullis/json.h"

struct endpoint_case {
    const char *url;
    int rc;
    const char *host;
    int port;
    bool tls;
};

static const struct endpoint_case endpoint_cases[] = {
    {"https://idp.example.com/realms/main", 0, "idp.example.com", 443, true},
    {"https://idp.example.com", 0, "idp.example.com", 443, true},
    {"https://IdP.Example.COM:8443/x?y#z", 0, "idp.example.com", 8443, true},
    {"https://user:pw@idp.example.com:9443/", 0, "idp.example.com", 9443, true},
    {"https://idp.example.com?x=1", 0, "idp.example.com", 443, true},
    {"http://keycloak.local:8080/realms/r", 0, "keycloak.local", 8080, false},
    {"http://keycloak.local/realms/r", 0, "keycloak.local", 80, false},
    {"https://idp.example.com:0/", PC_EINVAL, NULL, 0, false},
    {"https://idp.example.com:65536/", PC_EINVAL, NULL, 0, false},
    {"https://idp.example.com:/", PC_EINVAL, NULL, 0, false},
    {"https://idp.example.com:44x3/", PC_EINVAL, NULL, 0, false},
    {"https://idp.example.com:-1/", PC_EINVAL, NULL, 0, false},
    {"https://[::1]:8443/", PC_EINVAL, NULL, 0, false},
    {"https:///realms", PC_EINVAL, NULL, 0, false},
    {"https://idp_example.com/", PC_EINVAL, NULL, 0, false},
    {"ftp://idp.example.com/", PC_EINVAL, NULL, 0, false},
};

static void
test_endpoint(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(endpoint_cases) / sizeof(endpoint_cases[0]); i++) {
        const struct endpoint_case *c = &endpoint_cases[i];
        char *host = (char *)"unset";
        int port = -1;
        bool tls = !c->tls;
        int rc = ctl_issuer_endpoint(c->url, &host, &port, &tls);

        if (rc != c->rc)
            fail_msg("%s: rc %d, want %d", c->url, rc, c->rc);
        if (c->rc < 0) {
            assert_null(host);
            continue;
        }
        assert_string_equal(host, c->host);
        assert_int_equal(port, c->port);
        assert_int_equal(tls, c->tls);
        free(host);
    }
}

static char *
dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

static json_t *
egress_of(const char *const *urls, size_t n, const char *ns)
{
    struct ctl_authd_opts o = {.namespace = ns, .egress = true};
    json_t *set = json_object(), *out;

    for (size_t i = 0; i < n; i++)
        ctl_egress_add(set, urls[i]);
    out = ctl_render_egress(set, &o);
    json_decref(set);
    return out;
}

/* One entry per host, whatever the realm, case or order; every port of the host in it. */
static void
test_distinct_hosts_and_ports(void **state)
{
    static const char *const urls[] = {
        "https://kc.example.com/realms/b",  "https://idp.example.com/realms/main",
        "https://KC.example.com/realms/a",  "https://kc.example.com:8443/realms/c",
        "http://kc.example.com:8443/plain", /* same port: stays TLS */
        "http://dev.example.com:8080/",     "https://[::1]/ignored",
    };
    json_t *se = egress_of(urls, sizeof(urls) / sizeof(urls[0]), "auth");
    char *s;

    (void)state;
    assert_int_equal(json_array_size(se), 3);
    s = dump(json_array_get(se, 2));
    assert_string_equal(
        s, "{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"ServiceEntry\","
           "\"metadata\":{\"annotations\":{\"portcullis.io/issuer-host\":\"kc.example.com\"},"
           "\"labels\":{\"app.kubernetes.io/managed-by\":\"portcullis\","
           "\"portcullis.io/egress\":\"issuer\"},"
           "\"name\":\"portcullis-egress-kc-example-com-f1cba713d7\",\"namespace\":\"auth\"},"
           "\"spec\":{\"exportTo\":[\".\"],\"hosts\":[\"kc.example.com\"],"
           "\"location\":\"MESH_EXTERNAL\",\"ports\":["
           "{\"name\":\"https\",\"number\":443,\"protocol\":\"TLS\"},"
           "{\"name\":\"https-8443\",\"number\":8443,\"protocol\":\"TLS\"}],"
           "\"resolution\":\"DNS\"}}");
    free(s);
    s = dump(pc_json_path(json_array_get(se, 0), "spec.ports"));
    assert_string_equal(s, "[{\"name\":\"http\",\"number\":8080,\"protocol\":\"HTTP\"}]");
    free(s);
    s = dump(pc_json_path(json_array_get(se, 1), "spec"));
    assert_string_equal(s, "{\"exportTo\":[\".\"],\"hosts\":[\"idp.example.com\"],"
                           "\"location\":\"MESH_EXTERNAL\",\"ports\":["
                           "{\"name\":\"https\",\"number\":443,\"protocol\":\"TLS\"}],"
                           "\"resolution\":\"DNS\"}");
    free(s);
    json_decref(se);
}

/* A lone port keeps the plain name; ports sort as numbers, not text. */
static void
test_port_names(void **state)
{
    static const char *const one[] = {"https://a.example.com:9443/"};
    static const char *const many[] = {"https://a.example.com:10443/",
                                       "https://a.example.com:9443/", "https://a.example.com/"};
    json_t *se = egress_of(one, 1, NULL);
    char *s = dump(pc_json_path(json_array_get(se, 0), "spec.ports"));

    (void)state;
    assert_string_equal(s, "[{\"name\":\"https\",\"number\":9443,\"protocol\":\"TLS\"}]");
    assert_string_equal(pc_json_str(pc_json_path(json_array_get(se, 0), "metadata"), "namespace"),
                        "portcullis-system");
    free(s);
    json_decref(se);
    se = egress_of(many, 3, NULL);
    s = dump(pc_json_path(json_array_get(se, 0), "spec.ports"));
    assert_string_equal(s, "[{\"name\":\"https\",\"number\":443,\"protocol\":\"TLS\"},"
                           "{\"name\":\"https-9443\",\"number\":9443,\"protocol\":\"TLS\"},"
                           "{\"name\":\"https-10443\",\"number\":10443,\"protocol\":\"TLS\"}]");
    free(s);
    json_decref(se);
}

/* Names are Kubernetes names within 63 characters; distinct hosts never share one. */
static void
test_names(void **state)
{
    static const char *const hosts[] = {
        "idp.example.com",
        "idp-example.com",
        "idp.example-com",
        "a.very.long.identity.provider.host.name.that.goes.on.example.com",
        "a.very.long.identity.provider.host.name.that.goes.on.example.org",
        "x",
    };
    json_t *seen = json_object();

    (void)state;
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        char *name = ctl_egress_name(hosts[i]);

        assert_true(strlen(name) <= 63);
        assert_true(strncmp(name, "portcullis-egress-", 18) == 0);
        assert_true(ctl_valid_dns_name(name, false));
        assert_null(json_object_get(seen, name));
        json_object_set_new(seen, name, json_true());
        free(name);
    }
    json_decref(seen);
}

/* What is listed but no longer wanted goes; what is wanted stays. */
static void
test_stale(void **state)
{
    static const char *const urls[] = {"https://a.example.com/", "https://b.example.com/"};
    json_t *wanted = egress_of(urls, 2, NULL), *existing = json_array(), *stale;
    char *a = ctl_egress_name("a.example.com"), *c = ctl_egress_name("c.example.com");
    char *s;

    (void)state;
    json_array_append_new(existing, json_string(a));
    json_array_append_new(existing, json_string(c));
    stale = ctl_egress_stale(existing, wanted);
    s = dump(stale);
    assert_int_equal(json_array_size(stale), 1);
    assert_string_equal(json_string_value(json_array_get(stale, 0)), c);
    free(s);
    json_decref(stale);
    /* nothing wanted: everything listed goes */
    json_decref(wanted);
    wanted = json_array();
    stale = ctl_egress_stale(existing, wanted);
    assert_true(json_equal(stale, existing));
    json_decref(stale);
    json_decref(wanted);
    json_decref(existing);
    free(a);
    free(c);
}

static json_t *
ph(const char *name, const char *created, const char *host, const char *issuer, const char *mode)
{
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:s},s:{s:[s],s:{s:s,s:s},s:s}}", "apiVersion",
                     CTL_GROUP_VERSION, "kind", "ProtectedHost", "metadata", "namespace", "n",
                     "name", name, "creationTimestamp", created, "spec", "hosts", host, "oidc",
                     "issuerURL", issuer, "clientID", name, "mode", mode);
}

/* ctl_state: only accepted ProtectedHosts count, and only with the option. */
static void
test_state_only_accepted(void **state)
{
    json_t *objs = json_array();
    struct ctl_state_opts o = {.authd = {.egress = true}};
    struct ctl_state st;

    (void)state;
    json_array_append_new(objs, ph("a", "2026-01-01T00:00:00Z", "a.example.com",
                                   "https://one.example.com/r", "Enforce"));
    /* invalid (mode) and conflicting (older one has the host): neither counts */
    json_array_append_new(objs, ph("b", "2026-01-02T00:00:00Z", "b.example.com",
                                   "https://two.example.com/r", "Loud"));
    json_array_append_new(objs, ph("c", "2026-01-03T00:00:00Z", "a.example.com",
                                   "https://three.example.com/r", "Enforce"));
    json_array_append_new(objs, ph("d", "2026-01-04T00:00:00Z", "d.example.com",
                                   "https://one.example.com/other", "ReportOnly"));
    ctl_state_build(&st, objs, &o);
    assert_int_equal(json_array_size(st.egress), 1);
    assert_string_equal(json_string_value(json_array_get(
                            pc_json_path(json_array_get(st.egress, 0), "spec.hosts"), 0)),
                        "one.example.com");
    ctl_state_release(&st);
    o.authd.egress = false;
    ctl_state_build(&st, objs, &o);
    assert_int_equal(json_array_size(st.egress), 0);
    ctl_state_release(&st);
    json_decref(objs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint),   cmocka_unit_test(test_distinct_hosts_and_ports),
        cmocka_unit_test(test_port_names), cmocka_unit_test(test_names),
        cmocka_unit_test(test_stale),      cmocka_unit_test(test_state_only_accepted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
