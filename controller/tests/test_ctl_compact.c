/*
 * test_ctl_compact.c - the compact authd entry (defaults left out) means to authd exactly what
 * the full entry means: both are parsed with authd's own config parser and compared field by
 * field, for specs that leave everything default, set everything, and set parts of objects.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "authd.h"
#include "controller.h"
#include "portcullis/json.h"
#include "portcullis/yaml.h"

static const char *const specs[] = {
    "{}",
    "{\"session\":{\"lifetime\":\"1h\"}}",
    "{\"session\":{\"cookieName\":\"_x\",\"cookieDomain\":\".example.com\",\"refresh\":\"5m\","
    "\"sameSite\":\"Strict\"}}",
    "{\"access\":{\"allowedGroups\":[\"a\",\"b\"],\"allowedEmailDomains\":[\"example.com\"],"
    "\"allowedEmails\":[\"x@example.com\"],\"allowUnverifiedEmail\":true}}",
    "{\"paths\":{\"skip\":[\"/healthz\"],\"api\":[\"/api/\"]}}",
    "{\"upstreamHeaders\":[]}",
    "{\"upstreamHeaders\":[{\"name\":\"X-Team\",\"claim\":\"team\"}]}",
    "{\"oidc\":{\"scopes\":[\"openid\",\"groups\"],\"claims\":{\"groups\":\"realm_access.roles\"},"
    "\"callbackPath\":\"/cb\"}}",
    "{\"oidc\":{\"scopes\":[\"email\"]}}",
    "{\"passIDToken\":true,\"bearerTokens\":{\"enabled\":true,\"audiences\":[\"api\"]},"
    "\"mode\":\"ReportOnly\"}",
    "{\"bearerTokens\":{\"enabled\":true}}",
    "{\"session\":{\"store\":\"redis\",\"refresh\":\"10m\"}}",
    "{\"session\":{\"store\":\"cookie\"}}",
    /* Strings with blank lines and trailing newlines: libyaml would write literal blocks
     * (unindented empty lines, "|+" and a "..." end marker) that a line reader misparses. */
    "{\"access\":{\"allowedGroups\":[\"grp\\n\\nadmins\",\"x\\n\\n\",\"a: b\",\"- c\"]}}",
};

static int
reader(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    (void)path;
    *data = pc_xstrdup("0123456789abcdef0123456789abcdef");
    *len = 32;
    return 0;
}

/* The ProtectedHost spec of case extra: a base, with extra's top-level objects merged in. */
static json_t *
spec_of(const char *extra)
{
    json_t *in = json_pack("{s:[s],s:{s:s,s:s,s:{s:s,s:s}}}", "hosts", "app.example.com", "oidc",
                           "issuerURL", "https://idp.example.com", "clientID", "app",
                           "clientSecretRef", "name", "s", "key", "k"),
           *more = json_loads(extra, 0, NULL), *spec = NULL, *v;
    struct ctl_errors errs = {0};
    const char *k;

    assert_non_null(more);
    json_object_foreach(more, k, v)
    {
        if (json_is_object(v) && json_is_object(json_object_get(in, k)))
            json_object_update(json_object_get(in, k), v);
        else
            json_object_set(in, k, v);
    }
    if (ctl_spec_normalize(in, false, &spec, &errs) != 0)
        fail_msg("%s: %s", extra, errs.n ? errs.msg[0] : "?");
    ctl_errors_release(&errs);
    json_decref(more);
    json_decref(in);
    return spec;
}

static struct authd_config *
parse(json_t *entry)
{
    struct authd_config_opts opts = {.read_file = reader};
    struct ctl_authd_opts o = {0};
    json_t *hosts = json_pack("[o]", entry), *cfg = ctl_render_authd_config(hosts, &o);
    char *text;

    /* authd's Redis connection is its own setting (flags or the head), not the controller's. */
    json_object_set_new(cfg, "redis", json_pack("{s:s}", "url", "redis://redis.example.com"));
    text = pc_json_to_yaml(cfg);
    struct authd_config *out = NULL;
    struct pc_diag d = {0};

    if (authd_config_parse(text, strlen(text), &opts, &out, &d) != 0)
        fail_msg("%d:%d: %s\n%s", d.line, d.col, d.msg, text);
    free(text);
    json_decref(cfg);
    json_decref(hosts);
    return out;
}

static void
same_list(const char *what, const struct authd_strlist *a, const struct authd_strlist *b)
{
    if (a->n != b->n)
        fail_msg("%s: %zu vs %zu entries", what, a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        assert_string_equal(a->v[i], b->v[i]);
}

static void
same_str(const char *what, const char *a, const char *b)
{
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
        fail_msg("%s: \"%s\" vs \"%s\"", what, a ? a : "(null)", b ? b : "(null)");
}

static void
same_host(const struct authd_host *a, const struct authd_host *b)
{
    same_str("id", a->id, b->id);
    same_list("hosts", &a->hosts, &b->hosts);
    same_str("issuer", a->oidc.issuer_url, b->oidc.issuer_url);
    same_str("client", a->oidc.client_id, b->oidc.client_id);
    same_str("secret", a->oidc.client_secret, b->oidc.client_secret);
    same_list("scopes", &a->oidc.scopes, &b->oidc.scopes);
    same_str("claim groups", a->oidc.claim_groups, b->oidc.claim_groups);
    same_str("claim email", a->oidc.claim_email, b->oidc.claim_email);
    same_str("claim username", a->oidc.claim_username, b->oidc.claim_username);
    same_str("callback", a->oidc.callback_path, b->oidc.callback_path);
    same_str("sign out", a->oidc.sign_out_path, b->oidc.sign_out_path);
    same_list("url prefixes", &a->oidc.url_prefixes, &b->oidc.url_prefixes);
    same_list("groups", &a->access.groups, &b->access.groups);
    same_list("domains", &a->access.email_domains, &b->access.email_domains);
    same_list("emails", &a->access.emails, &b->access.emails);
    assert_int_equal(a->access.allow_unverified_email, b->access.allow_unverified_email);
    same_list("skip", &a->paths.skip, &b->paths.skip);
    same_list("api", &a->paths.api, &b->paths.api);
    same_str("cookie name", a->session.cookie_name, b->session.cookie_name);
    same_str("cookie domain", a->session.cookie_domain, b->session.cookie_domain);
    assert_int_equal(a->session.lifetime, b->session.lifetime);
    assert_int_equal(a->session.refresh, b->session.refresh);
    assert_int_equal(a->session.same_site, b->session.same_site);
    assert_int_equal(a->session.store, b->session.store);
    assert_int_equal(a->nupstream_headers, b->nupstream_headers);
    for (size_t i = 0; i < a->nupstream_headers; i++) {
        same_str("header", a->upstream_headers[i].name, b->upstream_headers[i].name);
        same_str("claim", a->upstream_headers[i].claim, b->upstream_headers[i].claim);
    }
    assert_int_equal(a->pass_id_token, b->pass_id_token);
    assert_int_equal(a->bearer.enabled, b->bearer.enabled);
    same_list("audiences", &a->bearer.audiences, &b->bearer.audiences);
    assert_int_equal(a->mode, b->mode);
}

static void
test_compact_means_full(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        json_t *spec = spec_of(specs[i]);
        json_t *full = ctl_render_authd_host_full("ns", "app", spec, "s3cret");
        json_t *compact = ctl_render_authd_host("ns", "app", spec, "s3cret");
        char *a = pc_json_dumps_sorted(full), *b = pc_json_dumps_sorted(compact);
        struct authd_config *cf, *cc;

        assert_true(strlen(b) <= strlen(a));
        cf = parse(full);
        cc = parse(compact);
        same_host(cf->hosts[0], cc->hosts[0]);
        authd_config_free(cf);
        authd_config_free(cc);
        free(a);
        free(b);
        json_decref(spec);
    }
}

/* The admin policy's issuer prefixes reach authd in both forms. */
static void
test_prefixes_reach_authd(void **state)
{
    json_t *spec = spec_of("{}");
    struct authd_config *cf, *cc;

    (void)state;
    ctl_spec_set_prefixes(
        spec, json_pack("[ss]", "https://idp.example.com", "https://keys.example.com/"));
    cf = parse(ctl_render_authd_host_full("ns", "app", spec, "s3cret"));
    cc = parse(ctl_render_authd_host("ns", "app", spec, "s3cret"));
    same_host(cf->hosts[0], cc->hosts[0]);
    assert_int_equal(cc->hosts[0]->oidc.url_prefixes.n, 2);
    assert_string_equal(cc->hosts[0]->oidc.url_prefixes.v[1], "https://keys.example.com/");
    authd_config_free(cf);
    authd_config_free(cc);
    json_decref(spec);
}

/* Everything at its default: only what has no default is written. */
static void
test_default_spec_is_small(void **state)
{
    json_t *spec = spec_of("{}"), *h = ctl_render_authd_host("ns", "app", spec, "s3cret");
    const char *k;
    json_t *v;

    (void)state;
    json_object_foreach(h, k, v)
    {
        if (strcmp(k, "id") && strcmp(k, "hosts") && strcmp(k, "oidc"))
            fail_msg("unexpected field %s", k);
    }
    assert_int_equal(json_object_size(json_object_get(h, "oidc")), 3);
    json_decref(h);
    json_decref(spec);
}

/*
 * A shard whose entries repeat blocks (every case twice, under other ids and hosts) writes
 * each repeated block once with an anchor and aliases after: the same document as the entries
 * written out, smaller, and authd's parser takes it.
 */
static void
test_shared_blocks_mean_the_same(void **state)
{
    struct ctl_shards sh;
    struct pc_buf plain;
    char **texts, *full;
    struct pc_ynode *a = NULL, *b = NULL;
    struct pc_diag d = {0};
    struct authd_hostlist *l = NULL;
    struct authd_hostlist_opts ho = {.file = "shard", .allow_insecure_issuers = false};
    json_t *ja, *jb;

    (void)state;
    ctl_shards_init(&sh, 1);
    pc_buf_init(&plain, 0);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
            json_t *spec = spec_of(specs[i]), *hosts = json_array(), *h;
            char *name = pc_xasprintf("app-%d-%zu", round, i), *text;

            json_array_append_new(hosts, json_sprintf("%s.example.com", name));
            json_object_set_new(spec, "hosts", hosts);
            h = ctl_render_authd_host("ns", name, spec, "s3cret");
            text = ctl_render_authd_entry_text(h);
            ctl_shards_add(&sh, name, text);
            pc_buf_appends(&plain, text);
            pc_free_secret(text);
            json_decref(h);
            json_decref(spec);
            free(name);
        }
    }
    texts = ctl_shards_finish(&sh);
    full = ctl_shard_text(plain.data, plain.len);
    assert_non_null(strstr(texts[0], ": &a1\n"));
    assert_non_null(strstr(texts[0], ": *a1\n"));
    assert_true(strlen(texts[0]) < strlen(full));
    assert_int_equal(pc_yaml_load_aliased(texts[0], strlen(texts[0]), &a, &d), 0);
    assert_int_equal(pc_yaml_load(full, strlen(full), &b, &d), 0);
    ja = pc_yaml_to_json(a);
    jb = pc_yaml_to_json(b);
    assert_true(json_equal(ja, jb));
    if (authd_hostlist_parse(texts[0], strlen(texts[0]), &ho, &l, &d) != 0)
        fail_msg("authd refused the shard: %s", d.msg);
    assert_int_equal(l->n, 2 * sizeof(specs) / sizeof(specs[0]));
    authd_hostlist_put(l);
    json_decref(ja);
    json_decref(jb);
    pc_ynode_free(a);
    pc_ynode_free(b);
    pc_free_secret(full);
    pc_buf_release(&plain);
    ctl_shard_texts_free(texts, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compact_means_full),
        cmocka_unit_test(test_default_spec_is_small),
        cmocka_unit_test(test_shared_blocks_mean_the_same),
        cmocka_unit_test(test_prefixes_reach_authd),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
