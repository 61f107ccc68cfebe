/*
 * test_ctl_state.c - the desired state of several ProtectedHosts: conflicts, secrets, shared
 * outputs.
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

/* A ProtectedHost with the given hosts (JSON list text) and creation time. */
static json_t *
ph(const char *ns, const char *name, const char *created, const char *hosts)
{
    json_t *h = json_loads(hosts, 0, NULL);
    json_t *o = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:o,s:{s:s,s:s,s:{s:s,s:s}}}}", "apiVersion",
                          CTL_GROUP_VERSION, "kind", "ProtectedHost", "metadata", "namespace", ns,
                          "name", name, "spec", "hosts", h, "oidc", "issuerURL", "https://idp",
                          "clientID", name, "clientSecretRef", "name", "oidc", "key", "secret");

    if (created)
        json_object_set_new(json_object_get(o, "metadata"), "creationTimestamp",
                            json_string(created));
    return o;
}

static int
secrets(void *ud, const char *ns, const char *name, const char *key, char **value)
{
    (void)ud;
    (void)key;
    if (strcmp(ns, "missing") == 0)
        return PC_ENOTFOUND;
    *value = pc_xasprintf("secret-of-%s-%s", ns, name);
    return 0;
}

static void
test_older_keeps_host(void **state)
{
    json_t *objs = json_array();
    struct ctl_state_opts o = {.secret = secrets};
    struct ctl_state st;
    struct ctl_item *a, *b, *c;

    (void)state;
    /* listed newest first: order of arrival must not matter */
    json_array_append_new(objs, ph("z", "newer", "2026-01-02T00:00:00Z", "[\"x.example.com\"]"));
    json_array_append_new(objs, ph("a", "other", "2026-01-03T00:00:00Z", "[\"y.example.com\"]"));
    json_array_append_new(
        objs, ph("z", "older", "2026-01-01T00:00:00Z", "[\"w.example.com\",\"x.example.com\"]"));
    ctl_state_build(&st, objs, &o);
    a = ctl_state_find(&st, "z", "older");
    b = ctl_state_find(&st, "z", "newer");
    c = ctl_state_find(&st, "a", "other");
    assert_int_equal(a->verdict, CTL_ACCEPTED);
    assert_int_equal(b->verdict, CTL_HOST_CONFLICT);
    assert_int_equal(c->verdict, CTL_ACCEPTED);
    assert_non_null(strstr(b->message, "spec.hosts[0]: host \"x.example.com\""));
    assert_non_null(strstr(b->message, "z/older"));
    assert_null(b->policy);
    assert_null(b->authd_host);
    assert_non_null(a->policy);
    assert_non_null(a->authd_host);
    assert_int_equal(json_array_size(json_object_get(st.authd_config, "hosts")), 2);
    /* authd's hosts are listed by id, not by age */
    assert_string_equal(
        pc_json_str(json_array_get(json_object_get(st.authd_config, "hosts"), 0), "id"), "a/other");
    assert_non_null(strstr(st.authd_text, "clientSecret: secret-of-z-oidc"));
    ctl_state_release(&st);
    json_decref(objs);
}

static void
test_tie_by_name(void **state)
{
    json_t *objs = json_array();
    struct ctl_state_opts o = {0};
    struct ctl_state st;

    (void)state;
    json_array_append_new(objs, ph("b", "app", "2026-01-01T00:00:00Z", "[\"x.example.com\"]"));
    json_array_append_new(objs, ph("a", "zed", "2026-01-01T00:00:00Z", "[\"x.example.com\"]"));
    json_array_append_new(objs, ph("a", "app", "2026-01-01T00:00:00Z", "[\"x.example.com\"]"));
    ctl_state_build(&st, objs, &o);
    assert_int_equal(ctl_state_find(&st, "a", "app")->verdict, CTL_ACCEPTED);
    assert_int_equal(ctl_state_find(&st, "a", "zed")->verdict, CTL_HOST_CONFLICT);
    assert_int_equal(ctl_state_find(&st, "b", "app")->verdict, CTL_HOST_CONFLICT);
    assert_string_equal(st.items[0].id, "a/app");
    ctl_state_release(&st);
    json_decref(objs);
}

static void
test_invalid_claims_nothing(void **state)
{
    json_t *objs = json_array(),
           *bad = ph("a", "bad", "2026-01-01T00:00:00Z", "[\"x.example.com\"]");
    struct ctl_state_opts o = {0};
    struct ctl_state st;
    struct ctl_item *it;

    (void)state;
    json_object_set_new(json_object_get(bad, "spec"), "mode", json_string("Loud"));
    json_array_append_new(objs, bad);
    json_array_append_new(objs, ph("a", "good", "2026-01-02T00:00:00Z", "[\"x.example.com\"]"));
    ctl_state_build(&st, objs, &o);
    it = ctl_state_find(&st, "a", "bad");
    assert_int_equal(it->verdict, CTL_INVALID);
    assert_non_null(strstr(it->message, "spec.mode"));
    assert_null(it->spec);
    assert_int_equal(ctl_state_find(&st, "a", "good")->verdict, CTL_ACCEPTED);
    ctl_state_release(&st);
    json_decref(objs);
}

static void
test_secret_missing(void **state)
{
    json_t *objs = json_array();
    struct ctl_state_opts o = {.secret = secrets};
    struct ctl_state st;
    struct ctl_item *it;

    (void)state;
    json_array_append_new(objs, ph("missing", "app", NULL, "[\"x.example.com\"]"));
    ctl_state_build(&st, objs, &o);
    it = ctl_state_find(&st, "missing", "app");
    assert_int_equal(it->verdict, CTL_SECRET_MISSING);
    assert_non_null(strstr(it->message, "missing/oidc"));
    assert_non_null(it->policy); /* the host stays closed: authd denies unknown hosts */
    assert_null(it->authd_host);
    assert_int_equal(json_array_size(json_object_get(st.authd_config, "hosts")), 0);
    ctl_state_release(&st);
    json_decref(objs);
}

static void
test_policy_name_collision(void **state)
{
    json_t *objs = json_array();
    struct ctl_state_opts o = {0};
    struct ctl_state st;

    (void)state;
    /* "a-b"/"c" and "a"/"b-c" would both be portcullis-a-b-c */
    json_array_append_new(objs, ph("a-b", "c", "2026-01-01T00:00:00Z", "[\"one.example.com\"]"));
    json_array_append_new(objs, ph("a", "b-c", "2026-01-02T00:00:00Z", "[\"two.example.com\"]"));
    ctl_state_build(&st, objs, &o);
    assert_int_equal(ctl_state_find(&st, "a-b", "c")->verdict, CTL_ACCEPTED);
    assert_int_equal(ctl_state_find(&st, "a", "b-c")->verdict, CTL_HOST_CONFLICT);
    assert_non_null(strstr(ctl_state_find(&st, "a", "b-c")->message, "policy name"));
    ctl_state_release(&st);
    json_decref(objs);
}

/*
 * A shared cookie of one client over another client's host on the same cookie name: the
 * newer is refused with CookieConflict, whichever of the two shares; another cookie name or
 * the same issuer and client is fine.
 */
static void
test_cookie_conflict(void **state)
{
    json_t *objs = json_array(), *portal, *wiki, *same, *renamed;
    struct ctl_state_opts o = {0};
    struct ctl_state st;
    struct ctl_item *it;

    (void)state;
    portal = ph("c", "portal", "2026-01-01T00:00:00Z", "[\"portal.corp.test\"]");
    json_object_set_new(json_object_get(portal, "spec"), "session",
                        json_pack("{s:s}", "cookieDomain", ".corp.test"));
    wiki = ph("c", "wiki", "2026-01-02T00:00:00Z", "[\"wiki.corp.test\"]");
    same = ph("c", "docs", "2026-01-03T00:00:00Z", "[\"docs.corp.test\"]");
    json_object_set_new(json_object_get(json_object_get(same, "spec"), "oidc"), "clientID",
                        json_string("portal"));
    renamed = ph("c", "jira", "2026-01-04T00:00:00Z", "[\"jira.corp.test\"]");
    json_object_set_new(json_object_get(renamed, "spec"), "session",
                        json_pack("{s:s}", "cookieName", "_jira"));
    json_array_append_new(objs, wiki);
    json_array_append_new(objs, portal);
    json_array_append_new(objs, same);
    json_array_append_new(objs, renamed);
    ctl_state_build(&st, objs, &o);
    assert_int_equal(ctl_state_find(&st, "c", "portal")->verdict, CTL_ACCEPTED);
    it = ctl_state_find(&st, "c", "wiki");
    assert_int_equal(it->verdict, CTL_COOKIE_CONFLICT);
    assert_string_equal(ctl_verdict_reason(it->verdict), "CookieConflict");
    assert_string_equal(
        it->message, "spec.session: host \"wiki.corp.test\" also receives cookie \"_portcullis\" "
                     "of ProtectedHost c/portal (Domain=corp.test), which is older and has "
                     "another issuer or client; set another spec.session.cookieName");
    assert_null(it->authd_host);
    assert_null(it->policy);
    assert_int_equal(ctl_state_find(&st, "c", "docs")->verdict, CTL_ACCEPTED);
    assert_int_equal(ctl_state_find(&st, "c", "jira")->verdict, CTL_ACCEPTED);
    ctl_state_release(&st);
    /* The sharer is the newer one: it is refused instead. */
    json_object_set_new(json_object_get(portal, "metadata"), "creationTimestamp",
                        json_string("2026-01-05T00:00:00Z"));
    ctl_state_build(&st, objs, &o);
    assert_int_equal(ctl_state_find(&st, "c", "wiki")->verdict, CTL_ACCEPTED);
    it = ctl_state_find(&st, "c", "portal");
    assert_int_equal(it->verdict, CTL_COOKIE_CONFLICT);
    assert_non_null(strstr(it->message, "with Domain=corp.test also reaches a host of "
                                        "ProtectedHost c/"));
    ctl_state_release(&st);
    json_decref(objs);
}

static void
test_empty_and_deterministic(void **state)
{
    json_t *objs = json_array(), *rev = json_array();
    struct ctl_state_opts o = {0};
    struct ctl_state st, st2;

    (void)state;
    ctl_state_build(&st, objs, &o);
    assert_int_equal(st.n, 0);
    assert_non_null(st.provider);
    assert_int_equal(json_array_size(json_object_get(st.authd_config, "hosts")), 0);
    ctl_state_release(&st);
    for (int i = 0; i < 5; i++) {
        char name[16], host[40];

        snprintf(name, sizeof(name), "app%d", i);
        snprintf(host, sizeof(host), "[\"h%d.example.com\"]", i);
        json_array_append_new(objs, ph("ns", name, NULL, host));
        json_array_insert_new(rev, 0, ph("ns", name, NULL, host));
    }
    ctl_state_build(&st, objs, &o);
    ctl_state_build(&st2, rev, &o);
    assert_string_equal(st.authd_text, st2.authd_text);
    assert_true(json_equal(st.provider, st2.provider));
    ctl_state_release(&st);
    ctl_state_release(&st2);
    json_decref(objs);
    json_decref(rev);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_older_keeps_host),
        cmocka_unit_test(test_tie_by_name),
        cmocka_unit_test(test_invalid_claims_nothing),
        cmocka_unit_test(test_secret_missing),
        cmocka_unit_test(test_policy_name_collision),
        cmocka_unit_test(test_empty_and_deterministic),
        cmocka_unit_test(test_cookie_conflict),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
