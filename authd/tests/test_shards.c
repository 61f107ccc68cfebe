/*
 * test_shards.c - authd's hosts from config Secret shards: each shard parsed alone, a bad one
 * refused alone (the version loaded before keeps serving), the lower shard keeping what two
 * claim, deletions, and the head of a --watch-config config.
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
#include "portcullis/b64.h"
#include "portcullis/buf.h"

/* One hosts[] entry: id ns/<name>, one host, issuer and cookie as given. */
#define ENTRY(name, host, issuer, cookie)                                                          \
    "  - id: ns/" name "\n    hosts: [" host "]\n    oidc: {issuerURL: " issuer                    \
    ", clientID: c}\n    session: {cookieName: _p, cookieDomain: " cookie "}\n"
#define IDP "https://idp.example.com"
#define OTHER_IDP "https://other.example.com"
#define NOCOOKIE "\"\""

/* One event: a Secret version (yaml NULL: deleted; gen NULL: no annotation). */
struct step {
    const char *shard; /* "0a" */
    const char *gen;
    const char *yaml;
    int rc;               /* what authd_shards_apply returns */
    const char *diag_has; /* a part of its message */
};

struct tcase {
    const char *name;
    struct step steps[5];
    const char *loaded, *rejected; /* after the last merge */
    const char *ids;               /* the merged hosts' ids, "ns/a,ns/b" */
    size_t nrefused;               /* over every merge */
    const char *refused_has;
};

static const struct tcase cases[] = {
    {"good shard",
     {{"00", "3", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL}},
     "00=3",
     "",
     "ns/a",
     0,
     NULL},
    {"empty shard is loaded", {{"07", "1", "hosts: []\n", 0, NULL}}, "07=1", "", "", 0, NULL},
    {"bad shard rejected alone, the old version keeps serving",
     {{"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL},
      {"01", "1", "hosts:\n" ENTRY("b", "b.example.com", IDP, NOCOOKIE), 0, NULL},
      {"01", "2", "hosts:\n  - id: ns/b\n    hosts: [b.example.com]\n    oidc: {clientID: c}\n",
       PC_EINVAL, "portcullis-authd-config-01/hosts.yaml:4:"}},
     "00=1,01=1",
     "01=2",
     "ns/a,ns/b",
     0,
     NULL},
    {"broken YAML names the shard, line and column",
     {{"02", "5", "hosts:\n  - id: [\n", PC_EPARSE, "portcullis-authd-config-02/hosts.yaml:3:"}},
     "",
     "02=5",
     "",
     0,
     NULL},
    {"never-loaded bad shard contributes nothing",
     {{"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL},
      {"0a", "4", "hosts:\n  - id: ns/x\n    hosts: [NOT_A_HOST]\n", PC_EINVAL, "hosts[0]"}},
     "00=1",
     "0a=4",
     "ns/a",
     0,
     NULL},
    {"two shards claiming one host: the lower keeps it",
     {{"05", "1", "hosts:\n" ENTRY("b", "a.example.com", IDP, NOCOOKIE), 0, NULL},
      {"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL}},
     "00=1",
     "05=1",
     "ns/a",
     1,
     "portcullis-authd-config-05/hosts.yaml:2:5: hosts[0] (id ns/b): host \"a.example.com\" is "
     "already protected by shard 00"},
    {"two shards claiming one id",
     {{"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL},
      {"01", "1", "hosts:\n" ENTRY("a", "b.example.com", IDP, NOCOOKIE), 0, NULL}},
     "00=1",
     "01=1",
     "ns/a",
     1,
     "id \"ns/a\" is already used by shard 00"},
    {"a refused new version falls back to the one loaded before",
     {{"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL},
      {"01", "1", "hosts:\n" ENTRY("b", "b.example.com", IDP, NOCOOKIE), 0, NULL},
      {"01", "2", "hosts:\n" ENTRY("b", "a.example.com", IDP, NOCOOKIE), 0, NULL}},
     "00=1,01=1",
     "01=2",
     "ns/a,ns/b",
     1,
     "host \"a.example.com\""},
    {"cookie collision across shards",
     {{"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, ".example.com"), 0, NULL},
      {"03", "1", "hosts:\n" ENTRY("b", "b.example.com", OTHER_IDP, NOCOOKIE), 0, NULL}},
     "00=1",
     "03=1",
     "ns/a",
     1,
     "also receives cookie \"_p\" of ns/a (shard 00)"},
    {"same issuer and client share the cookie: no collision",
     {{"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, ".example.com"), 0, NULL},
      {"03", "1", "hosts:\n" ENTRY("b", "b.example.com", IDP, NOCOOKIE), 0, NULL}},
     "00=1,03=1",
     "",
     "ns/a,ns/b",
     0,
     NULL},
    {"shard deleted: its hosts are gone",
     {{"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL},
      {"01", "1", "hosts:\n" ENTRY("b", "b.example.com", IDP, NOCOOKIE), 0, NULL},
      {"00", "1", NULL, 0, NULL}},
     "01=1",
     "",
     "ns/b",
     0,
     NULL},
    {"a host moving between shards is taken once its old shard lets go",
     {{"01", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL},
      {"00", "1", "hosts:\n" ENTRY("b", "a.example.com", IDP, NOCOOKIE), 0, NULL},
      {"00", "2", "hosts: []\n", 0, NULL}},
     "00=2,01=1",
     "",
     "ns/a",
     1,
     NULL},
    {"missing generation annotation",
     {{"04", NULL, "hosts: []\n", PC_EINVAL, "portcullis-authd-config-04/hosts.yaml: annotation"}},
     "",
     "04=0",
     "",
     0,
     NULL},
    {"not a shard name",
     {{"zz", "1", "hosts: []\n", PC_EINVAL, "is not named portcullis-authd-config-<xx>"}},
     "",
     "",
     "",
     0,
     NULL},
    {"extra top-level keys are refused",
     {{"06", "1", "listen: 0.0.0.0:1\nhosts: []\n", PC_EINVAL, "unknown key \"listen\""}},
     "",
     "06=1",
     "",
     0,
     NULL},
};

static json_t *
secret(const struct step *st)
{
    char *name = pc_xasprintf("%s%s", AUTHD_SHARD_PREFIX, st->shard);
    json_t *s = json_pack("{s:{s:s}}", "metadata", "name", name);

    if (st->gen != NULL)
        json_object_set_new(json_object_get(s, "metadata"), "annotations",
                            json_pack("{s:s}", "portcullis.io/generation", st->gen));
    if (st->yaml != NULL) {
        char *b64 = pc_b64_encode(st->yaml, strlen(st->yaml));
        json_object_set_new(s, "data", json_pack("{s:s}", "hosts.yaml", b64));
        free(b64);
    }
    free(name);
    return s;
}

static struct authd_config *
head(void)
{
    struct authd_config *cfg = authd_config_placeholder(NULL);

    cfg->listen = (free(cfg->listen), pc_xstrdup("127.0.0.1:1"));
    return cfg;
}

/* The merged hosts' ids joined with ",". */
static char *
ids_of(const struct authd_config *cfg)
{
    struct pc_buf b;

    pc_buf_init(&b, 0);
    for (size_t i = 0; i < cfg->nhosts; i++) {
        pc_buf_appendf(&b, "%s%s", i ? "," : "", cfg->hosts[i]->id);
    }
    return pc_buf_detach(&b);
}

/* Runs one case; NULL when it holds, else what went wrong (new). */
static char *
run_case(const struct tcase *tc)
{
    struct authd_shards *s = authd_shards_new(false);
    struct authd_config *h = head();
    struct authd_shards_result r = {0};
    size_t nrefused = 0;
    bool refused_seen = tc->refused_has == NULL;
    char *ids, *err = NULL;

    for (size_t i = 0; i < 5 && tc->steps[i].shard != NULL && err == NULL; i++) {
        const struct step *st = &tc->steps[i];
        json_t *obj = secret(st);
        struct pc_diag d;
        int rc = authd_shards_apply(
            s, &(struct authd_shard_change){.secret = obj, .deleted = st->yaml == NULL}, &d);

        if (rc != st->rc || (st->diag_has && !strstr(d.msg, st->diag_has)))
            err = pc_xasprintf("%s: step %zu: rc %d (want %d), diag \"%s\"", tc->name, i, rc,
                               st->rc, d.msg);
        json_decref(obj);
        authd_shards_result_release(&r);
        authd_shards_merge(s, h, &r);
        nrefused += r.nrefused;
        for (size_t j = 0; j < r.nrefused; j++)
            refused_seen = refused_seen || strstr(r.refused[j].why, tc->refused_has) != NULL;
    }
    ids = ids_of(r.cfg);
    if (err == NULL && (strcmp(r.loaded, tc->loaded) || strcmp(r.rejected, tc->rejected) ||
                        strcmp(ids, tc->ids) || nrefused != tc->nrefused || !refused_seen))
        err = pc_xasprintf("%s: loaded \"%s\" rejected \"%s\" ids \"%s\" refused %zu%s", tc->name,
                           r.loaded, r.rejected, ids, nrefused,
                           refused_seen ? "" : " (message not seen)");
    /* The merged config keeps the head's settings. */
    if (err == NULL && strcmp(r.cfg->listen, "127.0.0.1:1") != 0)
        err = pc_xasprintf("%s: listen \"%s\"", tc->name, r.cfg->listen);
    free(ids);
    authd_shards_result_release(&r);
    authd_config_free(h);
    authd_shards_free(s);
    return err;
}

static void
test_cases(void **state)
{
    struct pc_buf failures;

    (void)state;
    pc_buf_init(&failures, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *err = run_case(&cases[i]);

        if (err != NULL)
            pc_buf_appendf(&failures, "\n  %s", err);
        free(err);
    }
    if (failures.len > 0)
        fail_msg("%s", pc_buf_str(&failures));
    pc_buf_release(&failures);
}

/* A merged config outlives the shards' later versions: it holds its own references. */
static void
test_config_outlives_versions(void **state)
{
    struct authd_shards *s = authd_shards_new(false);
    struct authd_config *h = head();
    struct authd_shards_result r1, r2;
    struct step v1 = {"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL};
    struct step v2 = {"00", "2", "hosts:\n" ENTRY("b", "b.example.com", IDP, NOCOOKIE), 0, NULL};
    struct pc_diag d;
    json_t *o;

    (void)state;
    o = secret(&v1);
    assert_int_equal(authd_shards_apply(s, &(struct authd_shard_change){.secret = o}, &d), 0);
    json_decref(o);
    authd_shards_merge(s, h, &r1);
    assert_true(r1.changed);
    o = secret(&v2);
    assert_int_equal(authd_shards_apply(s, &(struct authd_shard_change){.secret = o}, &d), 0);
    json_decref(o);
    authd_shards_merge(s, h, &r2);
    assert_true(r2.changed);
    authd_shards_free(s);
    /* Both configs still read their own hosts after the table is gone. */
    assert_non_null(authd_config_match_host(r1.cfg, "a.example.com"));
    assert_null(authd_config_match_host(r1.cfg, "b.example.com"));
    assert_non_null(authd_config_match_host(r2.cfg, "b.example.com"));
    authd_shards_result_release(&r1);
    authd_shards_result_release(&r2);
    authd_config_free(h);
}

/* A merge with nothing new reports no change; a refused version is reported once. */
static void
test_unchanged_merge(void **state)
{
    struct authd_shards *s = authd_shards_new(false);
    struct authd_config *h = head();
    struct authd_shards_result r;
    struct step a = {"00", "1", "hosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE), 0, NULL};
    struct step b = {"01", "1", "hosts:\n" ENTRY("b", "a.example.com", IDP, NOCOOKIE), 0, NULL};
    struct pc_diag d;
    json_t *o;

    (void)state;
    o = secret(&a);
    authd_shards_apply(s, &(struct authd_shard_change){.secret = o}, &d);
    json_decref(o);
    o = secret(&b);
    authd_shards_apply(s, &(struct authd_shard_change){.secret = o}, &d);
    json_decref(o);
    authd_shards_merge(s, h, &r);
    assert_true(r.changed);
    assert_int_equal(r.nrefused, 1);
    assert_string_equal(r.refused[0].shard, "01");
    assert_int_equal(r.refused[0].generation, 1);
    authd_shards_result_release(&r);
    authd_shards_merge(s, h, &r);
    assert_false(r.changed);
    assert_int_equal(r.nrefused, 0);
    assert_string_equal(r.rejected, "01=1");
    authd_shards_result_release(&r);
    authd_shards_free(s);
    authd_config_free(h);
}

static void
test_shard_index(void **state)
{
    static const struct {
        const char *name;
        int idx;
    } t[] = {
        {"portcullis-authd-config-00", 0},        {"portcullis-authd-config-ff", 255},
        {"portcullis-authd-config-0a", 10},       {"portcullis-authd-config-0A", PC_EINVAL},
        {"portcullis-authd-config-0", PC_EINVAL}, {"portcullis-authd-config-000", PC_EINVAL},
        {"portcullis-authd-config", PC_EINVAL},   {"other-config-00", PC_EINVAL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (authd_shard_index(t[i].name) != t[i].idx)
            fail_msg("%s: %d", t[i].name, authd_shard_index(t[i].name));
    assert_int_equal(authd_shard_index(NULL), PC_EINVAL);
}

/* The head of --watch-config: from flags alone, or from a file whose hosts are empty. */
static void
test_head(void **state)
{
    static const char *const ok_text = "listen: 127.0.0.1:1\nadminListen: 127.0.0.1:2\n"
                                       "cookieSecretFiles: [data/secret]\nhosts: []\n";
    static const char *const bad_text =
        "cookieSecretFiles: [data/secret]\nhosts:\n" ENTRY("a", "a.example.com", IDP, NOCOOKIE);
    struct authd_overrides ov = {
        .secret_files = {"data/secret"}, .nsecret_files = 1, .allow_insecure_issuers = true};
    struct authd_config_opts opts = {.file = "head.yaml", .head_only = true};
    struct authd_config *cfg = NULL;
    struct pc_diag d = {0};

    (void)state;
    assert_int_equal(authd_config_load_head(NULL, &ov, &cfg, &d), 0);
    assert_string_equal(cfg->listen, "0.0.0.0:4180");
    assert_string_equal(cfg->ext_authz_prefix, "/ext-authz");
    assert_true(cfg->allow_insecure_issuers);
    assert_int_equal(cfg->keys.n, 1);
    assert_int_equal(cfg->nhosts, 0);
    authd_config_free(cfg);
    assert_int_equal(authd_config_load_head(NULL, NULL, &cfg, &d), PC_EINVAL);
    assert_non_null(strstr(d.msg, "cookieSecretFiles: required"));
    assert_int_equal(authd_config_parse(ok_text, strlen(ok_text), &opts, &cfg, &d), 0);
    assert_string_equal(cfg->admin_listen, "127.0.0.1:2");
    authd_config_free(cfg);
    assert_int_equal(authd_config_parse(bad_text, strlen(bad_text), &opts, &cfg, &d), PC_EINVAL);
    assert_non_null(strstr(d.msg, "must be empty with --watch-config"));
    assert_int_equal(d.line, 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_config_outlives_versions),
        cmocka_unit_test(test_unchanged_merge),
        cmocka_unit_test(test_shard_index),
        cmocka_unit_test(test_head),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
