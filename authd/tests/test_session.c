/*
 * test_session.c - session and login-state cookies: seal/open, tampering, key rotation,
 * expiry, chunking, issuer/client binding, Set-Cookie attributes, Cookie header handling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/b64.h"
#include "portcullis/crypto.h"

#define NOW 1700000000

static const char secret_a[] = "secret-a-0123456789abcdefghijklmnopqrstuvwxyz";
static const char secret_b[] = "secret-b-0123456789abcdefghijklmnopqrstuvwxyz";

static int
mem_reader(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    *data = strdup(strcmp(path, "a") == 0 ? secret_a : secret_b);
    *len = strlen(*data);
    return 0;
}

/* A config with the given secret files ("a", "b") and extra YAML for the first host. */
static struct authd_config *
make_config(const char *secrets, const char *client, const char *extra)
{
    struct authd_config_opts opts = {.read_file = mem_reader};
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};
    char text[2048];

    snprintf(text, sizeof(text),
             "cookieSecretFiles: [%s]\nhosts:\n- id: ns/app\n  hosts: [app.example.com]\n"
             "  oidc: {issuerURL: 'https://idp.example.com', clientID: %s}\n%s",
             secrets, client, extra ? extra : "");
    if (authd_config_parse(text, strlen(text), &opts, &cfg, &diag) != 0)
        fail_msg("%d:%d: %s", diag.line, diag.col, diag.msg);
    return cfg;
}

static struct authd_session *
make_session(const struct authd_host *h, size_t ngroups)
{
    json_t *claims =
        json_pack("{s:s, s:s, s:b, s:s, s:s}", "sub", "user-1", "email", "u@example.com",
                  "email_verified", 1, "preferred_username", "user", "name", "Ann Example");
    json_t *groups = json_array();
    struct authd_session *s = NULL;

    for (size_t i = 0; i < ngroups; i++) {
        char g[64];

        snprintf(g, sizeof(g), "group-%05zu-with-a-long-name-for-chunking", i);
        json_array_append_new(groups, json_string(g));
    }
    json_object_set_new(claims, "groups", groups);
    assert_int_equal(authd_session_from_claims(h, claims, "id.token.x", "refresh-1", NOW, &s), 0);
    json_decref(claims);
    return s;
}

/* The Cookie header a browser would send after receiving set (cleared cookies dropped). */
static char *
cookie_header(const struct authd_strlist *set, const char *extra)
{
    size_t cap = 1 + (extra ? strlen(extra) : 0);
    char *out;

    for (size_t i = 0; i < set->n; i++)
        cap += strlen(set->v[i]) + 2;
    out = calloc(1, cap);
    if (extra != NULL)
        strcat(out, extra);
    for (size_t i = 0; i < set->n; i++) {
        if (strstr(set->v[i], "Max-Age=0;") != NULL)
            continue;
        if (out[0] != '\0')
            strcat(out, "; ");
        strncat(out, set->v[i], strcspn(set->v[i], ";"));
    }
    return out;
}

static bool
list_has(const struct authd_strlist *l, const char *prefix)
{
    for (size_t i = 0; i < l->n; i++)
        if (strncmp(l->v[i], prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

static void
test_roundtrip(void **state)
{
    struct authd_config *cfg = make_config("a", "app",
                                           "  upstreamHeaders: [{name: X-Name, "
                                           "claim: name}]\n  passIDToken: true\n");
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *s = make_session(h, 2), *o = NULL;
    struct authd_strlist set = {0};
    char *hdr;

    (void)state;
    assert_int_equal(authd_session_seal(&cfg->keys, h, s, NULL, NOW, &set), 0);
    assert_int_equal(set.n, 1);
    assert_non_null(strstr(set.v[0], "; Path=/; Max-Age=43200; Secure; HttpOnly; SameSite=Lax"));
    assert_null(strstr(set.v[0], "Domain="));
    hdr = cookie_header(&set, "other=1");
    assert_int_equal(authd_session_open(&cfg->keys, h, hdr, NOW + 10, &o), 0);
    assert_string_equal(o->id.sub, "user-1");
    assert_string_equal(o->id.email, "u@example.com");
    assert_true(o->id.email_verified);
    assert_string_equal(o->id.preferred_username, "user");
    assert_int_equal(o->id.groups.n, 2);
    assert_int_equal(o->id.nextra, 1);
    assert_string_equal(o->id.extra[0].value, "Ann Example");
    assert_string_equal(o->issuer, "https://idp.example.com");
    assert_string_equal(o->client_id, "app");
    assert_string_equal(o->refresh_token, "refresh-1");
    assert_string_equal(o->id_token, "id.token.x");
    assert_int_equal(o->issued_at, NOW);
    assert_int_equal(o->expires_at, NOW + 43200);
    assert_false(authd_session_needs_refresh(h, o, NOW + 40000));
    authd_session_free(o);
    free(hdr);
    authd_strlist_release(&set);
    authd_session_free(s);
    authd_config_free(cfg);
}

/* Every corruption of the cookie value fails closed. */
static void
test_tamper_truncate(void **state)
{
    struct authd_config *cfg = make_config("a", "app", NULL);
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *s = make_session(h, 1), *o = NULL;
    struct authd_strlist set = {0};
    char *hdr, *copy;
    size_t len;

    (void)state;
    assert_int_equal(authd_session_seal(&cfg->keys, h, s, NULL, NOW, &set), 0);
    hdr = cookie_header(&set, NULL);
    len = strlen(hdr);
    for (size_t pos = strlen("_portcullis="); pos < len; pos += 7) {
        copy = strdup(hdr);
        copy[pos] = copy[pos] == 'A' ? 'B' : 'A';
        assert_int_equal(authd_session_open(&cfg->keys, h, copy, NOW, &o), PC_EAUTH);
        copy[pos] = '\0';
        assert_int_equal(authd_session_open(&cfg->keys, h, copy, NOW, &o), PC_EAUTH);
        free(copy);
    }
    assert_int_equal(authd_session_open(&cfg->keys, h, "_portcullis=", NOW, &o), PC_EAUTH);
    assert_int_equal(authd_session_open(&cfg->keys, h, "_portcullis=!!!", NOW, &o), PC_EAUTH);
    assert_int_equal(authd_session_open(&cfg->keys, h, "a=b", NOW, &o), PC_ENOTFOUND);
    assert_int_equal(authd_session_open(&cfg->keys, h, NULL, NOW, &o), PC_ENOTFOUND);
    assert_null(o);
    free(hdr);
    authd_strlist_release(&set);
    authd_session_free(s);
    authd_config_free(cfg);
}

/* First secret seals, all open; a removed secret no longer opens. */
static void
test_rotation(void **state)
{
    struct authd_config *old = make_config("a", "app", NULL);
    struct authd_config *both = make_config("b, a", "app", NULL);
    struct authd_config *only_b = make_config("b", "app", NULL);
    struct authd_session *s = make_session(old->hosts[0], 1), *o = NULL;
    struct authd_strlist set = {0}, set2 = {0};
    char *hdr, *hdr2;

    (void)state;
    assert_int_equal(authd_session_seal(&old->keys, old->hosts[0], s, NULL, NOW, &set), 0);
    hdr = cookie_header(&set, NULL);
    assert_int_equal(authd_session_open(&both->keys, both->hosts[0], hdr, NOW, &o), 0);
    authd_session_free(o);
    assert_int_equal(authd_session_open(&only_b->keys, only_b->hosts[0], hdr, NOW, &o), PC_EAUTH);
    assert_int_equal(authd_session_seal(&both->keys, both->hosts[0], s, NULL, NOW, &set2), 0);
    hdr2 = cookie_header(&set2, NULL);
    assert_int_equal(authd_session_open(&only_b->keys, only_b->hosts[0], hdr2, NOW, &o), 0);
    authd_session_free(o);
    assert_int_equal(authd_session_open(&old->keys, old->hosts[0], hdr2, NOW, &o), PC_EAUTH);
    free(hdr);
    free(hdr2);
    authd_strlist_release(&set);
    authd_strlist_release(&set2);
    authd_session_free(s);
    authd_config_free(old);
    authd_config_free(both);
    authd_config_free(only_b);
}

static void
test_expiry_and_binding(void **state)
{
    struct authd_config *cfg = make_config("a", "app", "  session: {lifetime: 1h, refresh: 5m}\n");
    struct authd_config *other = make_config("a", "other", NULL);
    struct authd_config *renamed = make_config("a", "app", "  session: {cookieName: _x}\n");
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *s = make_session(h, 1), *o = NULL;
    struct authd_strlist set = {0};
    char *hdr, *moved;

    (void)state;
    assert_int_equal(authd_session_seal(&cfg->keys, h, s, NULL, NOW, &set), 0);
    assert_non_null(strstr(set.v[0], "Max-Age=3600;"));
    hdr = cookie_header(&set, NULL);
    assert_int_equal(authd_session_open(&cfg->keys, h, hdr, NOW + 3599, &o), 0);
    assert_true(authd_session_needs_refresh(h, o, NOW + 300));
    assert_false(authd_session_needs_refresh(h, o, NOW + 299));
    authd_session_free(o);
    assert_int_equal(authd_session_open(&cfg->keys, h, hdr, NOW + 3600, &o), PC_EEXPIRED);
    /* Same cookie name and keys, another client: refused. */
    assert_int_equal(authd_session_open(&other->keys, other->hosts[0], hdr, NOW, &o), PC_EINVAL);
    /* The value moved under another cookie name fails authentication (name is AAD). */
    moved = calloc(1, strlen(hdr) + 8);
    sprintf(moved, "_x=%s", hdr + strlen("_portcullis="));
    assert_int_equal(authd_session_open(&renamed->keys, renamed->hosts[0], moved, NOW, &o),
                     PC_EAUTH);
    assert_null(o);
    free(moved);
    free(hdr);
    authd_strlist_release(&set);
    authd_session_free(s);
    authd_config_free(cfg);
    authd_config_free(other);
    authd_config_free(renamed);
}

static void
test_chunking(void **state)
{
    struct authd_config *cfg = make_config("a", "app",
                                           "  session: {cookieDomain: .example.com, "
                                           "sameSite: None}\n");
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *s = make_session(h, 150), *o = NULL, *small = make_session(h, 1);
    struct authd_strlist set = {0}, set2 = {0};
    char *hdr;

    (void)state;
    assert_int_equal(authd_session_seal(&cfg->keys, h, s, "_portcullis=old", NOW, &set), 0);
    assert_true(set.n >= 3);
    assert_true(list_has(&set, "_portcullis_0="));
    assert_true(list_has(&set, "_portcullis_1="));
    assert_true(list_has(&set, "_portcullis=; Path=/; Max-Age=0;")); /* stale unchunked */
    for (size_t i = 0; i < set.n; i++) {
        assert_true(strcspn(set.v[i], ";") <= AUTHD_CHUNK_SIZE + 20);
        assert_non_null(strstr(set.v[i], "; Domain=.example.com; Secure; HttpOnly; "
                                         "SameSite=None"));
    }
    hdr = cookie_header(&set, NULL);
    assert_int_equal(authd_session_open(&cfg->keys, h, hdr, NOW, &o), 0);
    assert_int_equal(o->id.groups.n, 150);
    assert_string_equal(o->id.groups.v[149], s->id.groups.v[149]);
    authd_session_free(o);
    /* A smaller session clears the chunks the browser still holds. */
    assert_int_equal(authd_session_seal(&cfg->keys, h, small, hdr, NOW, &set2), 0);
    assert_true(list_has(&set2, "_portcullis="));
    assert_true(list_has(&set2, "_portcullis_0=; Path=/; Max-Age=0"));
    assert_true(list_has(&set2, "_portcullis_1=; Path=/; Max-Age=0"));
    free(hdr);
    authd_strlist_release(&set);
    authd_strlist_release(&set2);
    authd_session_free(s);
    authd_session_free(small);
    authd_config_free(cfg);
}

static void
test_too_big(void **state)
{
    struct authd_config *cfg = make_config("a", "app", NULL);
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *s = make_session(h, 2000), *o = NULL;
    struct authd_strlist set = {0};
    char *big = malloc(AUTHD_MAX_COOKIE_HEADER + 16);

    (void)state;
    assert_int_equal(authd_session_seal(&cfg->keys, h, s, NULL, NOW, &set), PC_ETOOBIG);
    memset(big, 'a', AUTHD_MAX_COOKIE_HEADER + 15);
    memcpy(big, "_portcullis=", 12);
    big[AUTHD_MAX_COOKIE_HEADER + 15] = '\0';
    assert_int_equal(authd_session_open(&cfg->keys, h, big, NOW, &o), PC_ETOOBIG);
    free(big);
    authd_strlist_release(&set);
    authd_session_free(s);
    authd_config_free(cfg);
}

static void
test_cookie_jar(void **state)
{
    static const struct {
        const char *in;
        const char *want; /* NULL: nothing left */
    } strip[] = {
        {"a=1; _portcullis=x; _portcullis_0=y; _portcullis_csrf_abcdefghijkl=z; b=2; "
         "_portcullisX=3",
         "a=1; b=2; _portcullisX=3"},
        /* Only the exact state-cookie shape is authd's: these belong to the app. */
        {"_portcullis_csrf_abc=z; _portcullis_csrf_abcdefghijklm=y; "
         "_portcullis_csrf_abcdefghijk!=x",
         "_portcullis_csrf_abc=z; _portcullis_csrf_abcdefghijklm=y; "
         "_portcullis_csrf_abcdefghijk!=x"},
        {"_portcullis=x", NULL},
        {"_portcullis_12=x;  c = \"q\" ", "c=q"},
        {"noequals; d=4", "d=4"},
        {"noequals", NULL}, /* no pairs: nothing left, nothing leaked */
        {"", NULL},
        {NULL, NULL},
    };
    struct authd_cookie_jar jar;
    char many[AUTHD_MAX_COOKIES * 8 + 16] = "";

    (void)state;
    for (size_t i = 0; i < sizeof(strip) / sizeof(strip[0]); i++) {
        char *got = authd_cookie_strip(strip[i].in, "_portcullis");

        if (strip[i].want == NULL)
            assert_null(got);
        else
            assert_string_equal(got, strip[i].want);
        free(got);
    }
    assert_int_equal(authd_cookie_jar_parse(&jar, " a=1 ;b= 2;;=x; c"), 0);
    assert_int_equal(jar.n, 2);
    assert_string_equal(authd_cookie_get(&jar, "b"), "2");
    assert_null(authd_cookie_get(&jar, "c"));
    authd_cookie_jar_release(&jar);
    for (size_t i = 0; i <= AUTHD_MAX_COOKIES; i++)
        sprintf(many + strlen(many), "c%zu=1;", i);
    assert_int_equal(authd_cookie_jar_parse(&jar, many), PC_ETOOBIG);
}

static void
test_clear(void **state)
{
    struct authd_config *cfg = make_config("a", "app", "  session: {cookieDomain: example.com}\n");
    struct authd_strlist set = {0};

    (void)state;
    authd_session_clear(cfg->hosts[0],
                        "_portcullis_0=a; _portcullis_1=b; x=1; "
                        "_portcullis_csrf_abcdefghijkl=c",
                        true, &set);
    assert_int_equal(set.n, 4);
    assert_string_equal(set.v[0], "_portcullis=; Path=/; Max-Age=0; Domain=example.com; Secure; "
                                  "HttpOnly; SameSite=Lax");
    assert_true(list_has(&set, "_portcullis_1=; Path=/; Max-Age=0; Domain=example.com"));
    assert_true(list_has(&set, "_portcullis_csrf_abcdefghijkl=; Path=/; Max-Age=0; Secure"));
    authd_strlist_release(&set);
    authd_session_clear(cfg->hosts[0], "_portcullis_csrf_abcdefghijkl=c", false, &set);
    assert_int_equal(set.n, 1);
    authd_strlist_release(&set);
    authd_config_free(cfg);
}

static void
test_login_state(void **state)
{
    struct authd_config *cfg = make_config("a", "app", NULL);
    struct authd_config *other = make_config("a", "app", NULL);
    const struct authd_host *h = cfg->hosts[0];
    struct authd_login_state *a = authd_login_state_new(h, "/one", NOW);
    struct authd_login_state *b = authd_login_state_new(h, "/two", NOW + 1), *o = NULL;
    struct authd_strlist set = {0}, set2 = {0}, clr = {0};
    char *hdr, *hdr2, *name;

    (void)state;
    free(other->hosts[0]->id);
    other->hosts[0]->id = strdup("ns/other");
    assert_int_equal(strncmp(a->state, a->id, strlen(a->id)), 0);
    assert_int_equal(authd_login_state_seal(&cfg->keys, h, a, NULL, NOW, &set), 0);
    name = malloc(64);
    snprintf(name, 64, "_portcullis_csrf_%s=", a->id);
    assert_true(list_has(&set, name));
    assert_non_null(strstr(set.v[0], "Max-Age=600;"));
    hdr = cookie_header(&set, NULL);
    /* A second tab starts a login: both cookies live side by side. */
    assert_int_equal(authd_login_state_seal(&cfg->keys, h, b, hdr, NOW + 1, &set2), 0);
    assert_int_equal(set2.n, 1);
    hdr2 = cookie_header(&set2, hdr);
    assert_int_equal(authd_login_state_open(&cfg->keys, h, hdr2, a->state, NOW + 5, &o, &clr), 0);
    assert_string_equal(o->redirect, "/one");
    assert_string_equal(o->nonce, a->nonce);
    assert_string_equal(o->pkce_verifier, a->pkce_verifier);
    assert_true(list_has(&clr, name));
    authd_login_state_free(o);
    assert_int_equal(authd_login_state_open(&cfg->keys, h, hdr2, b->state, NOW + 5, &o, &clr), 0);
    assert_string_equal(o->redirect, "/two");
    authd_login_state_free(o);
    {
        /* A planted cookie of the same name in front does not hide the real one. */
        char *planted = pc_xasprintf("%.*sAAAA; %s", (int)strlen(name), name, hdr2);

        assert_int_equal(
            authd_login_state_open(&cfg->keys, h, planted, a->state, NOW + 5, &o, &clr), 0);
        authd_login_state_free(o);
        free(planted);
    }
    /* Wrong state with a right id prefix, expiry, another host entry, no cookie. */
    a->state[strlen(a->state) - 1] ^= 1;
    assert_int_equal(authd_login_state_open(&cfg->keys, h, hdr2, a->state, NOW, &o, &clr),
                     PC_EAUTH);
    a->state[strlen(a->state) - 1] ^= 1;
    assert_int_equal(authd_login_state_open(&cfg->keys, h, hdr2, a->state, NOW + 600, &o, &clr),
                     PC_EEXPIRED);
    assert_int_equal(
        authd_login_state_open(&other->keys, other->hosts[0], hdr2, a->state, NOW, &o, &clr),
        PC_EAUTH);
    assert_int_equal(authd_login_state_open(&cfg->keys, h, "x=1", a->state, NOW, &o, &clr),
                     PC_ENOTFOUND);
    assert_int_equal(authd_login_state_open(&cfg->keys, h, hdr2, "short", NOW, &o, &clr),
                     PC_ENOTFOUND);
    assert_null(o);
    free(name);
    free(hdr);
    free(hdr2);
    authd_strlist_release(&set);
    authd_strlist_release(&set2);
    authd_strlist_release(&clr);
    authd_login_state_free(a);
    authd_login_state_free(b);
    authd_config_free(cfg);
    authd_config_free(other);
}

/* Many logins: the oldest are cleared; junk state cookies too; the session still opens. */
static void
test_state_bound(void **state)
{
    struct authd_config *cfg = make_config("a", "app", NULL);
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *s = make_session(h, 1), *o = NULL;
    struct authd_strlist jar = {0}, set = {0};
    struct authd_login_state *st[12];
    char *hdr = NULL, *next;
    size_t cleared = 0;

    (void)state;
    assert_int_equal(authd_session_seal(&cfg->keys, h, s, NULL, NOW, &jar), 0);
    for (size_t i = 0; i < 12; i++) {
        st[i] = authd_login_state_new(h, "/", NOW + (int64_t)i);
        assert_int_equal(authd_login_state_seal(&cfg->keys, h, st[i], NULL, NOW + (int64_t)i, &jar),
                         0);
    }
    hdr = cookie_header(&jar, "_portcullis_csrf_junkjunkjunk=xyz");
    st[0]->expires_at = NOW + 1000;
    assert_int_equal(authd_login_state_seal(&cfg->keys, h, st[0], hdr, NOW + 12, &set), 0);
    for (size_t i = 0; i < set.n; i++)
        cleared += strstr(set.v[i], "Max-Age=0;") != NULL;
    /* 12 live + 1 junk present; keep the 7 newest plus the new one. */
    assert_int_equal(cleared, 12 - (AUTHD_MAX_STATE_COOKIES - 1) + 1);
    assert_true(list_has(&set, "_portcullis_csrf_junkjunkjunk=;"));
    next = cookie_header(&set, NULL);
    assert_int_equal(authd_session_open(&cfg->keys, h, hdr, NOW + 20, &o), 0);
    authd_session_free(o);
    for (size_t i = 0; i < 12; i++)
        authd_login_state_free(st[i]);
    free(next);
    free(hdr);
    authd_strlist_release(&jar);
    authd_strlist_release(&set);
    authd_session_free(s);
    authd_config_free(cfg);
}

/* An upstreamHeaders list claim survives the cookie as a list. */
static void
test_list_claim_roundtrip(void **state)
{
    struct authd_config *cfg = make_config("a", "app",
                                           "  upstreamHeaders: [{name: X-Teams, "
                                           "claim: teams}, {name: X-Name, claim: name}]\n");
    const struct authd_host *h = cfg->hosts[0];
    json_t *claims =
        json_pack("{s:s,s:[s,s],s:s}", "sub", "u", "teams", "red,blue", "green", "name", "N");
    struct authd_session *s = NULL, *o = NULL;
    struct authd_strlist set = {0};
    char *hdr, *v;

    (void)state;
    assert_int_equal(authd_session_from_claims(h, claims, NULL, NULL, NOW, &s), 0);
    assert_int_equal(authd_session_seal(&cfg->keys, h, s, NULL, NOW, &set), 0);
    hdr = cookie_header(&set, NULL);
    assert_int_equal(authd_session_open(&cfg->keys, h, hdr, NOW, &o), 0);
    v = authd_identity_claim(&o->id, "teams");
    assert_string_equal(v, "red%2Cblue,green");
    free(v);
    v = authd_identity_claim(&o->id, "name");
    assert_string_equal(v, "N");
    free(v);
    authd_session_free(o);
    authd_session_free(s);
    free(hdr);
    authd_strlist_release(&set);
    json_decref(claims);
    authd_config_free(cfg);
}

/*
 * State cookie names come from the client: a name far longer than any authd writes, with a
 * value that passes the length checks, must neither overflow a buffer nor be taken for one of
 * authd's cookies (it is not pruned, and it is handed to the app like any foreign cookie).
 */
/* A cookie value sealed the way authd seals one: version || nonce || AES-GCM(pt), AAD version ||
 * name. */
static char *
seal_raw(const struct authd_keys *k, const char *name, const char *pt)
{
    size_t ptlen = strlen(pt), rawlen = 1 + PC_AEAD_NONCE_LEN + ptlen + PC_AEAD_TAG_LEN;
    uint8_t *raw = calloc(1, rawlen), aad[80] = {1};
    char *out;

    assert_true(strlen(name) < sizeof(aad));
    memcpy(aad + 1, name, strlen(name));
    raw[0] = 1;
    assert_int_equal(pc_aead_seal(k->session[0], raw + 1, aad, 1 + strlen(name),
                                  (const uint8_t *)pt, ptlen, raw + 1 + PC_AEAD_NONCE_LEN),
                     0);
    out = pc_b64url_encode(raw, rawlen);
    free(raw);
    return out;
}

/*
 * Sessions sealed before authd recorded email_verified carry an email nobody checked: they
 * are refused (the user logs in again) instead of being trusted.
 */
static void
test_session_without_email_verified(void **state)
{
    static const char legacy[] = "{\"sub\":\"u\",\"em\":\"ceo@corp.example.com\",\"g\":[],"
                                 "\"x\":{},\"iss\":\"https://idp.example.com\",\"cid\":\"app\","
                                 "\"iat\":1700000000,\"exp\":1700043200,\"rat\":1700000000}";
    static const char current[] = "{\"sub\":\"u\",\"em\":\"ceo@corp.example.com\",\"ev\":false,"
                                  "\"g\":[],\"x\":{},\"iss\":\"https://idp.example.com\","
                                  "\"cid\":\"app\",\"iat\":1700000000,\"exp\":1700043200,"
                                  "\"rat\":1700000000}";
    struct authd_config *cfg = make_config("a", "app", NULL);
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *o = NULL;
    char *v, *hdr;

    (void)state;
    v = seal_raw(&cfg->keys, "_portcullis", current);
    hdr = pc_xasprintf("_portcullis=%s", v);
    assert_int_equal(authd_session_open(&cfg->keys, h, hdr, NOW, &o), 0);
    assert_false(o->id.email_verified);
    authd_session_free(o);
    free(hdr);
    free(v);
    v = seal_raw(&cfg->keys, "_portcullis", legacy);
    hdr = pc_xasprintf("_portcullis=%s", v);
    assert_int_equal(authd_session_open(&cfg->keys, h, hdr, NOW, &o), PC_EAUTH);
    assert_null(o);
    free(hdr);
    free(v);
    authd_config_free(cfg);
}

/* The Cookie header of the set's values in order: "name=value; ..." */
static char *
join_cookies(const struct authd_strlist *a, const struct authd_strlist *b)
{
    struct authd_strlist both = {0};
    char *out;

    for (size_t i = 0; i < a->n; i++)
        authd_strlist_add(&both, a->v[i]);
    for (size_t i = 0; i < b->n; i++)
        authd_strlist_add(&both, b->v[i]);
    out = cookie_header(&both, NULL);
    authd_strlist_release(&both);
    return out;
}

/*
 * A host sharing cookieDomain and a host-only host with another client, both on the default
 * cookie name: the browser sends both cookies (or chunk sets), in either order. Each host
 * must find its own session instead of failing on the first that decrypts.
 */
static void
test_colliding_cookies(void **state)
{
    struct authd_config *shared =
        make_config("a", "shared", "  session: {cookieDomain: .example.com}\n");
    struct authd_config *own = make_config("a", "app", NULL);
    const struct authd_host *hs = shared->hosts[0], *ho = own->hosts[0];
    static const size_t groups[] = {1, 120}; /* unchunked, chunked */

    (void)state;
    for (size_t g = 0; g < 2; g++) {
        struct authd_session *a = make_session(hs, groups[g]), *b = make_session(ho, groups[g]);
        struct authd_strlist sa = {0}, sb = {0};
        char *ab, *ba;
        struct authd_session *o = NULL;

        assert_int_equal(authd_session_seal(&shared->keys, hs, a, NULL, NOW, &sa), 0);
        assert_int_equal(authd_session_seal(&own->keys, ho, b, NULL, NOW, &sb), 0);
        assert_int_equal(sa.n > 1, groups[g] > 1);
        ab = join_cookies(&sa, &sb);
        ba = join_cookies(&sb, &sa);
        for (int order = 0; order < 2; order++) {
            const char *hdr = order ? ba : ab;

            assert_int_equal(authd_session_open(&own->keys, ho, hdr, NOW + 1, &o), 0);
            assert_string_equal(o->client_id, "app");
            authd_session_free(o);
            assert_int_equal(authd_session_open(&shared->keys, hs, hdr, NOW + 1, &o), 0);
            assert_string_equal(o->client_id, "shared");
            authd_session_free(o);
        }
        /* Only the other client's cookie: still refused as another client's. */
        free(ab);
        ab = cookie_header(&sa, NULL);
        assert_int_equal(authd_session_open(&own->keys, ho, ab, NOW + 1, &o), PC_EINVAL);
        /* A planted undecryptable copy in front changes nothing. */
        free(ba);
        ba = cookie_header(&sb, groups[g] > 1 ? "_portcullis_0=AAAA; _portcullis_1=AAAA"
                                              : "_portcullis=AAAA");
        assert_int_equal(authd_session_open(&own->keys, ho, ba, NOW + 1, &o), 0);
        authd_session_free(o);
        free(ab);
        free(ba);
        authd_strlist_release(&sa);
        authd_strlist_release(&sb);
        authd_session_free(a);
        authd_session_free(b);
    }
    authd_config_free(shared);
    authd_config_free(own);
}

static void
test_hostile_state_names(void **state)
{
    struct authd_config *cfg = make_config("a", "app", NULL);
    const struct authd_host *h = cfg->hosts[0];
    struct authd_login_state *st = authd_login_state_new(h, "/", NOW), *o = NULL;
    struct authd_strlist set = {0};
    unsigned char raw[41] = {1};
    char *value = pc_b64url_encode(raw, sizeof(raw)), *hdr, *stripped;
    static const size_t lens[] = {1, 11, 13, 115, 600, 4000};

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        char *suffix = calloc(1, lens[i] + 1);

        memset(suffix, 'A', lens[i]);
        hdr = malloc(strlen(suffix) + strlen(value) + 64);
        sprintf(hdr, "_portcullis_csrf_%s=%s", suffix, value);
        assert_int_equal(authd_login_state_seal(&cfg->keys, h, st, hdr, NOW, &set), 0);
        assert_int_equal(set.n, 1); /* only the new state cookie: the foreign one is left */
        assert_int_equal(authd_login_state_open(&cfg->keys, h, hdr, st->state, NOW, &o, &set),
                         PC_ENOTFOUND);
        stripped = authd_cookie_strip(hdr, h->session.cookie_name);
        assert_non_null(stripped);
        assert_string_equal(stripped, hdr);
        free(stripped);
        authd_strlist_release(&set);
        free(hdr);
        free(suffix);
    }
    free(value);
    authd_login_state_free(st);
    authd_config_free(cfg);
}

static void
test_pkce(void **state)
{
    char *c = authd_pkce_challenge("dBjftJeZ4CVP-mJ0kWGPCoxFY3Ts4H5Ub6Dc2JoSnqX");

    (void)state;
    assert_string_equal(c, "PrvNfGQ7hmIju6mtYga9AOx7dlwsdCC-5v61Gp7ithk");
    free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_tamper_truncate),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_expiry_and_binding),
        cmocka_unit_test(test_chunking),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_cookie_jar),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_login_state),
        cmocka_unit_test(test_state_bound),
        cmocka_unit_test(test_pkce),
        cmocka_unit_test(test_hostile_state_names),
        cmocka_unit_test(test_session_without_email_verified),
        cmocka_unit_test(test_colliding_cookies),
        cmocka_unit_test(test_list_claim_roundtrip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
