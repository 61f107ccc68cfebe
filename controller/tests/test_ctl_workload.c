/*
 * test_ctl_workload.c - sidecar mode: the workload's policy, the local provider, the
 * namespace's ServiceEntry and shard, and that sidecar entries never reach the central shards.
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
#include "portcullis/b64.h"
#include "portcullis/json.h"

#define OIDC "\"oidc\":{\"issuerURL\":\"https://i\",\"clientID\":\"c\"}"
#define WORKLOAD "\"workload\":{\"selector\":{\"matchLabels\":{\"app\":\"echo\"}}}"

static void
assert_json(const json_t *j, const char *want)
{
    char *s = dump(j);

    if (strcmp(s, want) != 0)
        fail_msg("got  %s\nwant %s", s, want);
    free(s);
}

struct policy_case {
    const char *spec;
    const char *want; /* the policy's spec, compact with sorted keys */
};

static const struct policy_case policy_cases[] = {
    /* No host condition: any Host reaches the app, so every request is checked. */
    {"{\"hosts\":[\"echo.team-a.svc.cluster.local\"]," OIDC "," WORKLOAD "}",
     "{\"action\":\"CUSTOM\",\"provider\":{\"name\":\"portcullis-local\"},\"rules\":[{}],"
     "\"selector\":{\"matchLabels\":{\"app\":\"echo\"}}}"},
    /* paths.skip as notPaths, without the callback and sign-out paths. */
    {"{\"hosts\":[\"echo.example.com\",\"*.apps.example.com\"]," OIDC "," WORKLOAD
     ",\"paths\":{\"skip\":[\"/public/*\",\"/oauth2/sign_out\"]}}",
     "{\"action\":\"CUSTOM\",\"provider\":{\"name\":\"portcullis-local\"},"
     "\"rules\":[{\"to\":[{\"operation\":{\"notPaths\":[\"/public/*\"]}}]}],"
     "\"selector\":{\"matchLabels\":{\"app\":\"echo\"}}}"},
};

static void
test_workload_policy(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]); i++) {
        json_t *spec = spec_of(policy_cases[i].spec);
        json_t *p = ctl_render_policy("team-a", "echo", spec);

        assert_true(ctl_spec_is_sidecar(spec));
        assert_null(json_object_get(spec, "gateway"));
        /* In the ProtectedHost's own namespace, where the workload is. */
        assert_string_equal(pc_json_str(json_object_get(p, "metadata"), "namespace"), "team-a");
        assert_string_equal(pc_json_str(json_object_get(p, "metadata"), "name"),
                            "portcullis-team-a-echo");
        assert_json(json_object_get(p, "spec"), policy_cases[i].want);
        /* The sidecar's inbound ignores Host ports: no EnvoyFilter, also for a wildcard. */
        assert_null(ctl_render_host_filter(p));
        json_decref(p);
        json_decref(spec);
    }
}

static void
test_local_provider(void **state)
{
    json_t *names = json_pack("{s:b}", "x-auth-request-email", 1);
    json_t *p = ctl_render_local_provider(names);
    json_t *central = ctl_render_provider(names, &(struct ctl_authd_opts){0});
    struct pc_diag d = {0};

    (void)state;
    assert_string_equal(pc_json_str(p, "name"), "portcullis-local");
    assert_string_equal(pc_json_str(json_object_get(p, "envoyExtAuthzHttp"), "service"),
                        "portcullis-authd.portcullis.local");
    assert_int_equal(json_integer_value(pc_json_path(p, "envoyExtAuthzHttp.port")), 4180);
    /* Everything else as the central provider: header lists, timeout, fail closed. */
    json_object_del(json_object_get(p, "envoyExtAuthzHttp"), "service");
    json_object_del(json_object_get(central, "envoyExtAuthzHttp"), "service");
    assert_true(json_equal(json_object_get(p, "envoyExtAuthzHttp"),
                           json_object_get(central, "envoyExtAuthzHttp")));
    json_object_set_new(json_object_get(p, "envoyExtAuthzHttp"), "service",
                        json_string(CTL_LOCAL_SERVICE));
    assert_int_equal(ctl_provider_check(p, &d), 0);
    json_decref(p);
    json_decref(central);
    json_decref(names);
}

static void
test_namespace_objects(void **state)
{
    json_t *se = ctl_render_local_service_entry("team-a");
    json_t *sh = ctl_render_sidecar_shard("team-a", "stringData", "hosts: []\n", 7);

    (void)state;
    assert_json(se, "{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"ServiceEntry\","
                    "\"metadata\":{\"labels\":{\"app.kubernetes.io/managed-by\":\"portcullis\","
                    "\"portcullis.io/sidecar\":\"true\"},\"name\":\"portcullis-authd-local\","
                    "\"namespace\":\"team-a\"},\"spec\":{\"endpoints\":[{\"address\":"
                    "\"127.0.0.1\"}],\"exportTo\":[\".\"],\"hosts\":["
                    "\"portcullis-authd.portcullis.local\"],\"location\":\"MESH_INTERNAL\","
                    "\"ports\":[{\"name\":\"http\",\"number\":4180,\"protocol\":\"HTTP\"}],"
                    "\"resolution\":\"STATIC\"}}");
    /* What authd --watch-config lists (label shard, name prefix + 2 hex, a generation). */
    assert_json(sh, "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"annotations\":"
                    "{\"portcullis.io/generation\":\"7\"},\"labels\":{"
                    "\"app.kubernetes.io/managed-by\":\"portcullis\","
                    "\"portcullis.io/authd-config\":\"shard\",\"portcullis.io/sidecar\":"
                    "\"true\"},\"name\":\"portcullis-authd-config-00\",\"namespace\":"
                    "\"team-a\"},\"stringData\":{\"hosts.yaml\":\"hosts: []\\n\"},"
                    "\"type\":\"Opaque\"}");
    json_decref(se);
    json_decref(sh);
}

static json_t *
ph(const char *ns, const char *name, const char *created, const char *spec)
{
    char *text = pc_xasprintf("{\"apiVersion\":\"portcullis.io/v1alpha1\",\"kind\":"
                              "\"ProtectedHost\",\"metadata\":{\"namespace\":\"%s\",\"name\":"
                              "\"%s\",\"creationTimestamp\":\"%s\",\"generation\":1},"
                              "\"spec\":%s}",
                              ns, name, created, spec);
    json_t *j = json_loads(text, 0, NULL);

    assert_non_null(j);
    free(text);
    return j;
}

static int
fake_secret(void *ud, const char *ns, const char *name, const char *key, char **value)
{
    (void)ud;
    *value = pc_xasprintf("secret-of-%s-%s-%s", ns, name, key);
    return 0;
}

#define REF ",\"clientSecretRef\":{\"name\":\"oidc\",\"key\":\"s\"}}"

static json_t *
three_hosts(void)
{
    return json_pack("[o,o,o]",
                     ph("gw", "a", "2024-01-01T00:00:00Z",
                        "{\"hosts\":[\"a.example.com\"],\"oidc\":{\"issuerURL\":\"https://i\","
                        "\"clientID\":\"a\"" REF "}"),
                     ph("team-a", "echo", "2024-01-01T00:00:01Z",
                        "{\"hosts\":[\"echo.example.com\"],\"oidc\":{\"issuerURL\":\"https://i\","
                        "\"clientID\":\"echo\"" REF "," WORKLOAD "}"),
                     ph("team-b", "wiki", "2024-01-01T00:00:02Z",
                        "{\"hosts\":[\"wiki.example.com\"],\"oidc\":{\"issuerURL\":\"https://i\","
                        "\"clientID\":\"wiki\"" REF "," WORKLOAD "}"));
}

/* A namespace's entries go to its own shard; no central shard ever holds them. */
static void
test_state_keeps_namespaces_apart(void **state)
{
    json_t *objs = three_hosts();
    struct ctl_state st;
    struct ctl_state_opts o = {.secret = fake_secret};
    const char *a, *b;

    (void)state;
    ctl_state_build(&st, objs, &o);
    for (size_t i = 0; i < st.n; i++)
        assert_int_equal(st.items[i].verdict, CTL_ACCEPTED);
    for (unsigned s = 0; s < st.nshards; s++) {
        assert_null(strstr(st.shards[s], "team-a"));
        assert_null(strstr(st.shards[s], "team-b"));
    }
    assert_non_null(strstr(st.authd_text, "gw/a"));
    assert_null(strstr(st.authd_text, "team-"));
    assert_int_equal(json_object_size(st.sidecar), 2);
    a = pc_json_str(st.sidecar, "team-a");
    b = pc_json_str(st.sidecar, "team-b");
    assert_non_null(strstr(a, "id: team-a/echo"));
    assert_non_null(strstr(a, "secret-of-team-a-oidc-s"));
    assert_null(strstr(a, "team-b"));
    assert_null(strstr(a, "secret-of-gw"));
    assert_non_null(strstr(b, "id: team-b/wiki"));
    assert_null(strstr(b, "team-a"));
    assert_non_null(st.local_provider);
    assert_string_equal(pc_json_str(st.local_provider, "name"), CTL_LOCAL_PROVIDER);
    ctl_state_release(&st);
    json_decref(objs);
}

/* Without a sidecar host there is no local provider (and the mesh loses it). */
static void
test_no_sidecar_no_local_provider(void **state)
{
    json_t *objs = json_pack(
        "[o]", ph("gw", "a", "2024-01-01T00:00:00Z", "{\"hosts\":[\"a.example.com\"]," OIDC "}"));
    struct ctl_state st;
    struct ctl_state_opts o = {0};

    (void)state;
    ctl_state_build(&st, objs, &o);
    assert_null(st.local_provider);
    assert_int_equal(json_object_size(st.sidecar), 0);
    ctl_state_release(&st);
    json_decref(objs);
}

/* In authd's own namespace the sidecar shard would be the central shard 00: refused. */
static void
test_not_in_authd_namespace(void **state)
{
    json_t *objs = json_pack("[o,o]",
                             ph("portcullis-system", "x", "2024-01-01T00:00:00Z",
                                "{\"hosts\":[\"x.example.com\"]," OIDC "," WORKLOAD "}"),
                             ph("auth", "y", "2024-01-01T00:00:01Z",
                                "{\"hosts\":[\"y.example.com\"]," OIDC "," WORKLOAD "}"));
    struct ctl_state st;
    struct ctl_state_opts o = {.authd = {.namespace = "auth"}};
    struct ctl_hosts hs;

    (void)state;
    ctl_state_build(&st, objs, &o);
    assert_int_equal(ctl_state_find(&st, "portcullis-system", "x")->verdict, CTL_ACCEPTED);
    assert_int_equal(ctl_state_find(&st, "auth", "y")->verdict, CTL_INVALID);
    assert_non_null(strstr(ctl_state_find(&st, "auth", "y")->message,
                           "spec.workload: sidecar mode is not available in namespace auth"));
    ctl_state_release(&st);
    ctl_hosts_init(&hs);
    ctl_host_refresh(ctl_hosts_get(&hs, "auth/y"), json_array_get(objs, 1), &o, NULL);
    assert_false(ctl_hosts_find(&hs, "auth/y")->valid);
    assert_non_null(strstr(ctl_host_message(ctl_hosts_find(&hs, "auth/y")), "namespace auth"));
    ctl_hosts_release(&hs);
    json_decref(objs);
}

/* run's host cache says the same as the state: per namespace, never central. */
static void
test_hosts_agree_with_state(void **state)
{
    json_t *objs = three_hosts(), *texts, *local, *v;
    struct ctl_state_opts o = {.secret = fake_secret};
    struct ctl_state st;
    struct ctl_hosts hs;
    char **shards;
    const char *ns;
    size_t i;

    (void)state;
    ctl_hosts_init(&hs);
    json_array_foreach(objs, i, v)
    {
        const json_t *md = json_object_get(v, "metadata");
        char *id = pc_xasprintf("%s/%s", pc_json_str(md, "namespace"), pc_json_str(md, "name"));

        ctl_host_refresh(ctl_hosts_get(&hs, id), v, &o, NULL);
        free(id);
    }
    ctl_hosts_settle(&hs, NULL, NULL);
    ctl_state_build(&st, objs, &o);
    shards = ctl_hosts_shard_texts(&hs, st.nshards);
    for (unsigned s = 0; s < st.nshards; s++)
        assert_string_equal(shards[s], st.shards[s]);
    texts = ctl_hosts_sidecar_texts(&hs);
    assert_int_equal(json_object_size(texts), json_object_size(st.sidecar));
    json_object_foreach(texts, ns, v)
        assert_string_equal(json_string_value(v), pc_json_str(st.sidecar, ns));
    local = ctl_hosts_local_provider(&hs);
    assert_true(json_equal(local, st.local_provider));
    /* Where the orphan scan looks for each host's policy is where it goes. */
    for (i = 0; i < st.n; i++) {
        const json_t *md = json_object_get(st.items[i].policy, "metadata");

        if (md)
            assert_string_equal(ctl_hosts_find(&hs, st.items[i].id)->policy_ns,
                                pc_json_str(md, "namespace"));
    }
    json_decref(local);
    ctl_sidecar_texts_free(texts);
    ctl_shard_texts_free(shards, st.nshards);
    ctl_state_release(&st);
    ctl_hosts_release(&hs);
    json_decref(objs);
}

static void
test_mesh_pair(void **state)
{
    json_t *names = json_object();
    json_t *central = ctl_render_provider(names, &(struct ctl_authd_opts){0});
    json_t *local = ctl_render_local_provider(names);
    const char *mesh = "accessLogFile: /dev/stdout\n"
                       "extensionProviders:\n"
                       "- name: other\n"
                       "  envoyExtAuthzHttp: {service: o.svc, port: 1}\n";
    char *both = NULL, *again = NULL, *dropped = NULL, *plain = NULL;
    struct pc_diag d = {0};

    (void)state;
    assert_int_equal(ctl_mesh_merge_pair(mesh, central, local, &both, &d), 0);
    assert_non_null(strstr(both, "- name: other"));
    assert_non_null(strstr(both, "name: portcullis\n"));
    assert_non_null(strstr(both, "name: portcullis-local\n"));
    assert_non_null(strstr(both, "service: portcullis-authd.portcullis.local"));
    /* Merging again changes nothing; without local, the local entry goes and nothing else. */
    assert_int_equal(ctl_mesh_merge_pair(both, central, local, &again, &d), 0);
    assert_string_equal(again, both);
    assert_int_equal(ctl_mesh_merge_pair(both, central, NULL, &dropped, &d), 0);
    assert_int_equal(ctl_mesh_merge(mesh, central, &plain, &d), 0);
    assert_string_equal(dropped, plain);
    free(both);
    free(again);
    free(dropped);
    free(plain);
    json_decref(central);
    json_decref(local);
    json_decref(names);
}

/* ---- the revocation list's copy ------------------------------------------------------- */

#define REV_DOC                                                                                    \
    "revocations:\n"                                                                               \
    "  - user: alice@example.com\n"                                                                \
    "    notBefore: \"2026-12-01T10:00:00Z\"\n"                                                    \
    "  - user: bob@example.com\n"                                                                  \
    "    notBefore: \"2026-12-01T11:00:00Z\"\n"                                                    \
    "    hosts: [echo.example.com]\n"

struct source_case {
    const char *doc;  /* base64-encoded into the central Secret's key; NULL: no key */
    const char *data; /* the Secret's data as JSON instead, when doc is NULL */
    int rc;
    const char *diag; /* part of the message when rc != 0 */
    size_t len;       /* bytes of doc, 0: strlen */
};

static const struct source_case source_cases[] = {
    {REV_DOC, NULL, 0, NULL, 0},
    {"", NULL, 0, NULL, 0},
    {"revocations: []\n", NULL, 0, NULL, 0},
    {NULL, "{}", 0, NULL, 0},                   /* no key: nothing revoked */
    {NULL, "{\"other\":\"eA==\"}", 0, NULL, 0}, /* only the list's key counts */
    /* What authd refuses is never copied over what it accepts. */
    {"revocations: [this is: not a list\n", NULL, PC_EPARSE, "1:", 0},
    {"revocations:\n  - user: a@example.com\n    notBefore: yesterday\n", NULL, PC_EPARSE,
     "notBefore", 0},
    {"revocations:\n  - {user: a@example.com, notBefore: \"2026-12-01T10:00:00Z\", bogus: 1}\n",
     NULL, PC_EPARSE, "unknown key", 0},
    {"revocations: []\n\0", NULL, PC_EPARSE, "base64", 17}, /* a NUL byte in it */
    {NULL, "{\"revocations.yaml\":\"%%%\"}", PC_EPARSE, "base64", 0},
    {NULL, "{\"revocations.yaml\":7}", PC_EPARSE, "base64", 0},
};

static json_t *
central_of(const struct source_case *k, size_t doc_len)
{
    json_t *data;
    char *b64;

    if (!k->doc)
        return json_pack("{s:o}", "data", json_loads(k->data, 0, NULL));
    b64 = pc_b64_encode(k->doc, doc_len);
    data = json_pack("{s:{s:s}}", "data", PC_REVOKE_KEY, b64);
    free(b64);
    return data;
}

static void
test_revcopy_source(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(source_cases) / sizeof(source_cases[0]); i++) {
        const struct source_case *k = &source_cases[i];
        json_t *central = central_of(k, k->len ? k->len : k->doc ? strlen(k->doc) : 0);
        const char *want = pc_json_str(json_object_get(central, "data"), PC_REVOKE_KEY);
        struct pc_diag d = {0};
        char *b64 = (char *)"unset";
        int rc = ctl_revcopy_source(central, &b64, &d);

        if (rc != k->rc)
            fail_msg("case %zu: rc %d, want %d (%s)", i, rc, k->rc, d.msg);
        if (rc == 0) {
            /* The central bytes exactly, as the Secret holds them: nothing re-encoded. */
            assert_string_equal(b64, want && json_is_string(json_object_get(
                                                 json_object_get(central, "data"), PC_REVOKE_KEY))
                                         ? want
                                         : "");
        } else {
            assert_null(b64);
            if (!strstr(d.msg, k->diag))
                fail_msg("case %zu: \"%s\" lacks \"%s\"", i, d.msg, k->diag);
        }
        free(b64);
        json_decref(central);
    }
}

static void
test_revcopy_source_bounds(void **state)
{
    struct pc_diag d = {0};
    char *b64 = NULL, *doc, *p;
    json_t *central;
    size_t n = PC_REVOKE_MAX_DOC + 2;

    (void)state;
    /* Absent: an empty list, as authd takes an absent Secret. */
    assert_int_equal(ctl_revcopy_source(NULL, &b64, &d), 0);
    assert_string_equal(b64, "");
    free(b64);
    /* A document over authd's bound is refused before it is decoded. */
    doc = pc_xcalloc(n + 1, 1);
    p = stpcpy(doc, "revocations: []\n");
    memset(p, '#', n - (size_t)(p - doc));
    central = central_of(&(struct source_case){.doc = doc}, n);
    assert_int_equal(ctl_revcopy_source(central, &b64, &d), PC_ETOOBIG);
    assert_null(b64);
    json_decref(central);
    /* A user over PC_REVOKE_MAX_USER bytes: the parser's bound. */
    memset(doc, 'a', 300);
    snprintf(doc + 300, 80, "@example.com");
    p = pc_xasprintf("revocations:\n  - user: %s\n    notBefore: \"2026-12-01T10:00:00Z\"\n", doc);
    central = central_of(&(struct source_case){.doc = p}, strlen(p));
    assert_int_not_equal(ctl_revcopy_source(central, &b64, &d), 0);
    assert_null(b64);
    json_decref(central);
    free(p);
    free(doc);
}

static void
test_revocations_copy(void **state)
{
    json_t *copy =
        ctl_render_revocations_copy("team-a", "cmV2b2NhdGlvbnM6IFtdCg==", "portcullis-system");

    (void)state;
    assert_json(copy, "{\"apiVersion\":\"v1\",\"data\":{\"revocations.yaml\":"
                      "\"cmV2b2NhdGlvbnM6IFtdCg==\"},\"kind\":\"Secret\",\"metadata\":{"
                      "\"annotations\":{\"portcullis.io/copy-of\":\"portcullis-system/"
                      "portcullis-revocations\"},\"labels\":{\"app.kubernetes.io/managed-by\":"
                      "\"portcullis\",\"portcullis.io/authd-config\":\"revocations\","
                      "\"portcullis.io/sidecar\":\"true\"},\"name\":\"portcullis-revocations\","
                      "\"namespace\":\"team-a\"},\"type\":\"Opaque\"}");
    json_decref(copy);
}

struct due_case {
    const char *namespaces, *written, *dirty, *hash;
    const char *want;
};

static const struct due_case due_cases[] = {
    /* A namespace's first copy; one that holds the list; one that holds an older one. */
    {"{\"b\":true,\"a\":true,\"c\":true}", "{\"a\":\"h1\",\"c\":\"h0\"}", "{}", "h1",
     "[\"b\",\"c\"]"},
    /* Someone changed or deleted a's copy: written again, though it held the list. */
    {"{\"a\":true}", "{\"a\":\"h1\"}", "{\"a\":true}", "h1", "[\"a\"]"},
    /* Dirty copies outside the sidecar namespaces are none of ours. */
    {"{\"a\":true}", "{\"a\":\"h1\"}", "{\"z\":true}", "h1", "[]"},
    /* Never the central list itself, whatever the caller hands over. */
    {"{\"portcullis-system\":true,\"a\":true}", "{}", "{\"portcullis-system\":true}", "h1",
     "[\"a\"]"},
    {"{}", "{}", "{}", "h1", "[]"},
};

static void
test_revcopy_due(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(due_cases) / sizeof(due_cases[0]); i++) {
        const struct due_case *k = &due_cases[i];
        json_t *nss = json_loads(k->namespaces, 0, NULL), *w = json_loads(k->written, 0, NULL);
        json_t *dirty = json_loads(k->dirty, 0, NULL);
        json_t *due = ctl_revcopy_due(nss, w, dirty, k->hash, "portcullis-system");

        assert_json(due, k->want);
        json_decref(due);
        json_decref(nss);
        json_decref(w);
        json_decref(dirty);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workload_policy),
        cmocka_unit_test(test_local_provider),
        cmocka_unit_test(test_namespace_objects),
        cmocka_unit_test(test_state_keeps_namespaces_apart),
        cmocka_unit_test(test_no_sidecar_no_local_provider),
        cmocka_unit_test(test_not_in_authd_namespace),
        cmocka_unit_test(test_hosts_agree_with_state),
        cmocka_unit_test(test_mesh_pair),
        cmocka_unit_test(test_revcopy_source),
        cmocka_unit_test(test_revcopy_source_bounds),
        cmocka_unit_test(test_revocations_copy),
        cmocka_unit_test(test_revcopy_due),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
