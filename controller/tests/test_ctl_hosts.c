/*
 * test_ctl_hosts.c - the per-host cache of `run` says what ctl_state_build says about the same
 * ProtectedHosts (verdicts, messages, authd's config text, the mesh provider), whatever order
 * the hosts arrive, change and leave in.
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

/* A ProtectedHost: hosts is JSON list text; extra (may be NULL) is merged into the spec. */
static json_t *
ph(const char *ns, const char *name, const char *created, const char *hosts, const char *extra)
{
    json_t *more = extra ? json_loads(extra, 0, NULL) : NULL;
    json_t *o = json_pack("{s:s,s:s,s:{s:s,s:s,s:s},s:{s:o,s:{s:s,s:s,s:{s:s,s:s}}}}", "apiVersion",
                          CTL_GROUP_VERSION, "kind", "ProtectedHost", "metadata", "namespace", ns,
                          "name", name, "creationTimestamp", created, "spec", "hosts",
                          json_loads(hosts, 0, NULL), "oidc", "issuerURL", "https://idp",
                          "clientID", name, "clientSecretRef", "name", "oidc", "key", "secret");

    if (more)
        json_object_update(json_object_get(o, "spec"), more);
    json_decref(more);
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

static json_t *
scenario(void)
{
    json_t *a = json_array();

    /* Refused (HostConflict): its issuer gets no ServiceEntry. */
    json_array_append_new(a, ph("z", "newer", "2026-01-02T00:00:00Z", "[\"x.example.com\"]",
                                "{\"upstreamHeaders\":[{\"name\":\"X-Email\",\"claim\":\"e\"}],"
                                "\"oidc\":{\"issuerURL\":\"https://refused.example.com\","
                                "\"clientID\":\"newer\"}}"));
    json_array_append_new(a, ph("a", "other", "2026-01-03T00:00:00Z", "[\"y.example.com\"]",
                                "{\"upstreamHeaders\":[{\"name\":\"X-User\",\"claim\":\"u\"}],"
                                "\"oidc\":{\"issuerURL\":\"https://IdP2.example.com:8443/r\","
                                "\"clientID\":\"other\"}}"));
    json_array_append_new(
        a, ph("z", "older", "2026-01-01T00:00:00Z", "[\"w.example.com\",\"x.example.com\"]", NULL));
    json_array_append_new(
        a, ph("a", "bad", "2026-01-01T00:00:00Z", "[\"y.example.com\"]", "{\"mode\":\"Loud\"}"));
    json_array_append_new(a, ph("missing", "app", "2026-01-04T00:00:00Z", "[\"m.example.com\"]",
                                "{\"upstreamHeaders\":[{\"name\":\"X-Gone\",\"claim\":\"g\"}]}"));
    json_array_append_new(a, ph("a-b", "c", "2026-01-05T00:00:00Z", "[\"one.example.com\"]", NULL));
    json_array_append_new(a, ph("a", "b-c", "2026-01-06T00:00:00Z", "[\"two.example.com\"]", NULL));
    json_array_append_new(a, ph("t", "tie-b", "2026-01-07T00:00:00Z", "[\"t.example.com\"]", NULL));
    json_array_append_new(a, ph("t", "tie-a", "2026-01-07T00:00:00Z", "[\"t.example.com\"]", NULL));
    /* Another client's shared cookie reaches wiki.corp.test: the newer one is refused. */
    json_array_append_new(a, ph("c", "wiki", "2026-01-09T00:00:00Z", "[\"wiki.corp.test\"]", NULL));
    json_array_append_new(a, ph("c", "portal", "2026-01-08T00:00:00Z", "[\"portal.corp.test\"]",
                                "{\"session\":{\"cookieDomain\":\".corp.test\"}}"));
    return a;
}

static char *
id_of(const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");

    return pc_xasprintf("%s/%s", pc_json_str(md, "namespace"), pc_json_str(md, "name"));
}

/* Feeds objs[order[i]] one at a time, settling after each, as the run loop does. */
static void
feed(struct ctl_hosts *hs, const json_t *objs, const size_t *order, const struct ctl_state_opts *o)
{
    for (size_t i = 0; i < json_array_size(objs); i++) {
        json_t *obj = json_array_get(objs, order[i]), *policy = NULL;
        char *id = id_of(obj);
        struct ctl_host *h = ctl_hosts_get(hs, id);

        if (ctl_host_refresh(h, obj, o, &policy))
            ctl_hosts_settle_host(hs, h, NULL, NULL); /* as the run loop does */
        json_decref(policy);
        free(id);
    }
}

static void
assert_agree(const struct ctl_hosts *hs, const json_t *objs, const struct ctl_state_opts *o)
{
    struct ctl_state st;
    char *text = ctl_hosts_authd_text(hs, &o->authd);
    json_t *provider = ctl_hosts_provider(hs, &o->authd);
    json_t *egress = ctl_hosts_egress(hs, &o->authd);

    ctl_state_build(&st, objs, o);
    assert_int_equal(hs->n, st.n);
    for (size_t i = 0; i < st.n; i++) {
        const struct ctl_item *it = &st.items[i];
        const struct ctl_host *h = ctl_hosts_find(hs, it->id);

        assert_non_null(h);
        if (ctl_host_verdict(h) != it->verdict)
            fail_msg("%s: verdict %d, ctl_state %d", it->id, ctl_host_verdict(h), it->verdict);
        if (it->message)
            assert_string_equal(ctl_host_message(h), it->message);
        else
            assert_null(ctl_host_message(h));
        assert_string_equal(h->policy_name, it->policy_name);
    }
    assert_string_equal(text, st.authd_text);
    assert_true(json_equal(provider, st.provider));
    assert_true(json_equal(egress, st.egress));
    {
        char **shards = ctl_hosts_shard_texts(hs, st.nshards);

        for (unsigned s = 0; s < st.nshards; s++)
            assert_string_equal(shards[s], st.shards[s]);
        ctl_shard_texts_free(shards, st.nshards);
    }
    ctl_state_release(&st);
    json_decref(provider);
    json_decref(egress);
    pc_free_secret(text);
}

/* spec.hosts[0] of ServiceEntry i. */
static const char *
egress_host(const json_t *egress, size_t i)
{
    return json_string_value(
        json_array_get(pc_json_path(json_array_get(egress, i), "spec.hosts"), 0));
}

static void
test_agrees_with_state_in_any_order(void **state)
{
    static const size_t orders[][11] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
        {10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
        {2, 0, 9, 8, 1, 6, 3, 10, 7, 5, 4},
    };
    struct ctl_state_opts o = {.secret = secrets, .authd = {.port = 4181, .egress = true}};
    json_t *objs = scenario();

    (void)state;
    for (size_t k = 0; k < sizeof(orders) / sizeof(orders[0]); k++) {
        struct ctl_hosts hs;

        ctl_hosts_init(&hs);
        feed(&hs, objs, orders[k], &o);
        assert_agree(&hs, objs, &o);
        {
            /* the accepted issuers only: "idp" of most, idp2 of a/other; not refused's */
            json_t *egress = ctl_hosts_egress(&hs, &o.authd);

            assert_int_equal(json_array_size(egress), 2);
            assert_string_equal(egress_host(egress, 0), "idp");
            assert_string_equal(egress_host(egress, 1), "idp2.example.com");
            json_decref(egress);
        }
        ctl_hosts_release(&hs);
    }
    json_decref(objs);
}

/*
 * Oldest first, as a bulk apply arrives: every host after the first is settled alone (the
 * kept claims grow), and the result is what settling everything gives.
 */
static void
test_bulk_settles_each_host_alone(void **state)
{
    struct ctl_state_opts o = {.secret = secrets};
    json_t *objs = json_array();
    struct ctl_hosts hs;

    (void)state;
    for (int i = 0; i < 300; i++) {
        char name[32], created[32], hosts[64];

        snprintf(name, sizeof(name), "app-%03d", i);
        snprintf(created, sizeof(created), "2026-01-01T00:%02d:%02dZ", i / 60, i % 60);
        /* every tenth asks for the host of the one before it: a conflict to find alone */
        snprintf(hosts, sizeof(hosts), "[\"h%03d.example.com\"]", i % 10 == 9 ? i - 1 : i);
        json_array_append_new(objs, ph("bulk", name, created, hosts, NULL));
    }
    ctl_hosts_init(&hs);
    for (size_t i = 0; i < json_array_size(objs); i++) {
        json_t *obj = json_array_get(objs, i);
        char *id = id_of(obj);
        struct ctl_host *h = ctl_hosts_get(&hs, id);

        assert_true(ctl_host_refresh(h, obj, &o, NULL));
        ctl_hosts_settle_host(&hs, h, NULL, NULL);
        assert_ptr_equal(hs.newest, h); /* settled alone, or by the first full settle */
        free(id);
    }
    assert_int_equal(hs.full_settles, 1); /* the first host; every later one alone */
    assert_int_equal(ctl_host_verdict(ctl_hosts_find(&hs, "bulk/app-009")), CTL_HOST_CONFLICT);
    assert_agree(&hs, objs, &o);
    ctl_hosts_release(&hs);
    json_decref(objs);
}

static void
count_changed(void *ud, struct ctl_host *h)
{
    (void)h;
    (*(int *)ud)++;
}

/* The older one leaves: the newer one takes its host, and only it is reported as changed. */
static void
test_retire_hands_over(void **state)
{
    static const size_t order[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    struct ctl_state_opts o = {.secret = secrets};
    json_t *objs = scenario();
    struct ctl_hosts hs;
    int changed = 0;

    (void)state;
    ctl_hosts_init(&hs);
    feed(&hs, objs, order, &o);
    assert_int_equal(ctl_host_verdict(ctl_hosts_find(&hs, "z/newer")), CTL_HOST_CONFLICT);
    assert_int_equal(ctl_host_verdict(ctl_hosts_find(&hs, "c/wiki")), CTL_COOKIE_CONFLICT);
    assert_true(ctl_host_retire(ctl_hosts_find(&hs, "z/older")));
    ctl_hosts_settle(&hs, count_changed, &changed);
    assert_int_equal(changed, 1);
    assert_int_equal(ctl_host_verdict(ctl_hosts_find(&hs, "z/newer")), CTL_ACCEPTED);
    /* once gone, the rest is what ctl_state says of the objects left */
    ctl_hosts_remove(&hs, "z/older");
    json_array_remove(objs, 2);
    assert_agree(&hs, objs, &o);
    ctl_hosts_release(&hs);
    json_decref(objs);
}

/* A changed spec or Secret changes the outputs' signature; the same one does not. */
static void
test_out_sig_follows_changes(void **state)
{
    struct ctl_state_opts o = {.secret = secrets};
    json_t *one = ph("n", "app", "2026-01-01T00:00:00Z", "[\"a.example.com\"]", NULL);
    json_t *two = ph("n", "app", "2026-01-01T00:00:00Z", "[\"a.example.com\"]",
                     "{\"paths\":{\"skip\":[\"/x\"]}}");
    struct ctl_hosts hs;
    struct ctl_host *h;
    char *s1, *s2, *s3;

    (void)state;
    ctl_hosts_init(&hs);
    h = ctl_hosts_get(&hs, "n/app");
    assert_true(ctl_host_refresh(h, one, &o, NULL));
    s1 = ctl_host_out_sig(h);
    assert_false(ctl_host_refresh(h, one, &o, NULL));
    s2 = ctl_host_out_sig(h);
    assert_false(ctl_host_refresh(h, two, &o, NULL)); /* same claims */
    s3 = ctl_host_out_sig(h);
    assert_string_equal(s1, s2);
    assert_string_not_equal(s2, s3);
    assert_non_null(strstr(h->entry, "clientSecret: secret-of-n-oidc"));
    ctl_hosts_release(&hs);
    free(s1);
    free(s2);
    free(s3);
    json_decref(one);
    json_decref(two);
}

/*
 * Outside the admin policy a ProtectedHost is refused before it claims anything: an older one
 * squatting on another team's host holds nothing. The admitted one's authd entry carries its
 * rules' issuer prefixes. run and render say the same.
 */
static void
test_policy_refusals_claim_nothing(void **state)
{
    static const size_t order[] = {0, 1, 2};
    json_t *pobj =
        json_pack("{s:{s:s},s:{s:[{s:{s:[s]},s:[s],s:[{s:s}],s:[s]}]}}", "metadata", "name",
                  CTL_POLICY_NAME, "spec", "rules", "namespaces", "names", "a", "hosts", "*.a.test",
                  "gateways", "namespace", "istio-system", "issuers", "https://idp");
    json_t *policy = NULL, *objs = json_array();
    struct ctl_errors errs = {0};
    struct ctl_tenancy t = {0};
    struct ctl_state_opts o = {.secret = secrets, .tenancy = &t};
    struct ctl_hosts hs;
    const struct ctl_host *app;

    (void)state;
    assert_int_equal(ctl_policy_normalize(pobj, &policy, &errs), 0);
    t.policy = policy;
    json_array_append_new(objs,
                          ph("b", "squatter", "2026-01-01T00:00:00Z", "[\"app.a.test\"]", NULL));
    json_array_append_new(objs, ph("a", "app", "2026-01-02T00:00:00Z", "[\"app.a.test\"]", NULL));
    json_array_append_new(objs, ph("a", "wild", "2026-01-03T00:00:00Z", "[\"*.x.a.test\"]", NULL));
    ctl_hosts_init(&hs);
    feed(&hs, objs, order, &o);
    assert_int_equal(ctl_host_verdict(ctl_hosts_find(&hs, "b/squatter")), CTL_HOST_NOT_ALLOWED);
    assert_int_equal(ctl_host_verdict(ctl_hosts_find(&hs, "a/wild")), CTL_HOST_NOT_ALLOWED);
    app = ctl_hosts_find(&hs, "a/app");
    assert_int_equal(ctl_host_verdict(app), CTL_ACCEPTED);
    assert_non_null(strstr(app->entry, "allowedURLPrefixes:\n    - https://idp\n"));
    assert_null(ctl_hosts_find(&hs, "b/squatter")->entry);
    assert_agree(&hs, objs, &o);
    ctl_hosts_release(&hs);
    json_decref(objs);
    json_decref(policy);
    json_decref(pobj);
}

static void
test_sorted_set(void **state)
{
    static const char *const ids[] = {"m/b", "a/z", "z/a", "m/a", "a/a"};
    struct ctl_hosts hs;

    (void)state;
    ctl_hosts_init(&hs);
    ctl_hosts_settle(&hs, NULL, NULL); /* nothing to settle */
    assert_null(ctl_hosts_find(&hs, "a/a"));
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        assert_ptr_equal(ctl_hosts_get(&hs, ids[i]), ctl_hosts_get(&hs, ids[i]));
    assert_int_equal(hs.n, 5);
    for (size_t i = 1; i < hs.n; i++)
        assert_true(strcmp(hs.v[i - 1]->id, hs.v[i]->id) < 0);
    ctl_hosts_remove(&hs, "m/a");
    ctl_hosts_remove(&hs, "nope/x");
    assert_int_equal(hs.n, 4);
    assert_null(ctl_hosts_find(&hs, "m/a"));
    assert_string_equal(ctl_hosts_find(&hs, "m/b")->name, "b");
    ctl_hosts_release(&hs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_state_in_any_order),
        cmocka_unit_test(test_bulk_settles_each_host_alone),
        cmocka_unit_test(test_retire_hands_over),
        cmocka_unit_test(test_out_sig_follows_changes),
        cmocka_unit_test(test_policy_refusals_claim_nothing),
        cmocka_unit_test(test_sorted_set),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
