/*
 * test_ticket.c - sessions kept in Redis: the ticket cookie, the sealed value Redis holds
 * (what it reveals, what opens it, what it is bound to), and the config's redis section and
 * session.store.
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

#define NOW 1700000000

static const char secret_a[] = "secret-a-0123456789abcdefghijklmnopqrstuvwxyz";
static const char secret_b[] = "secret-b-0123456789abcdefghijklmnopqrstuvwxyz";
static const char password[] = "redis-password-1\n";

static int
mem_reader(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    if (strcmp(path, "missing") == 0)
        return -2; /* -ENOENT */
    *data = strdup(strcmp(path, "a") == 0   ? secret_a
                   : strcmp(path, "b") == 0 ? secret_b
                                            : password);
    *len = strlen(*data);
    return 0;
}

static int
parse(const char *text, struct authd_config **cfg, struct pc_diag *diag)
{
    struct authd_config_opts opts = {.read_file = mem_reader};

    memset(diag, 0, sizeof(*diag));
    return authd_config_parse(text, strlen(text), &opts, cfg, diag);
}

#define REDIS_OK "redis: {url: 'redis://127.0.0.1:6380/2', passwordFile: pw}\n"

/* A config with secrets (e.g. "a" or "b, a"), a redis section and one host (extra YAML). */
static struct authd_config *
make_config(const char *secrets, const char *redis, const char *client, const char *extra)
{
    struct authd_config *cfg = NULL;
    struct pc_diag diag;
    char text[2048];

    snprintf(text, sizeof(text),
             "cookieSecretFiles: [%s]\n%shosts:\n- id: ns/app\n  hosts: [app.example.com]\n"
             "  oidc: {issuerURL: 'https://idp.example.com', clientID: %s}\n"
             "  session: {store: redis%s}\n",
             secrets, redis, client, extra ? extra : "");
    if (parse(text, &cfg, &diag) != 0)
        fail_msg("%d:%d: %s", diag.line, diag.col, diag.msg);
    return cfg;
}

static struct authd_session *
make_session(const struct authd_host *h, size_t ngroups)
{
    json_t *claims = json_pack("{s:s, s:s, s:b, s:s}", "sub", "user-1", "email", "u@example.com",
                               "email_verified", 1, "preferred_username", "user");
    json_t *groups = json_array();
    struct authd_session *s = NULL;

    for (size_t i = 0; i < ngroups; i++) {
        char g[64];

        snprintf(g, sizeof(g), "team-%03zu-platform-engineers", i);
        json_array_append_new(groups, json_string(g));
    }
    json_object_set_new(claims, "groups", groups);
    assert_int_equal(authd_session_from_claims(h, claims, NULL, "refresh-1", NOW, &s), 0);
    json_decref(claims);
    return s;
}

static bool
contains(const uint8_t *p, size_t n, const char *needle)
{
    return memmem(p, n, needle, strlen(needle)) != NULL;
}

/* ---- the ticket cookie ---- */

static void
test_ticket_roundtrip(void **state)
{
    struct authd_ticket t, back;
    char *v, *key, *lock;

    (void)state;
    assert_int_equal(authd_ticket_new(&t), 0);
    v = authd_ticket_format(&t);
    /* _portcullis=<value>: what the browser sends back, whatever the session holds */
    assert_int_equal(strlen(v), 67);
    assert_true(strlen("_portcullis=") + strlen(v) < 200);
    assert_int_equal(authd_ticket_parse(v, strlen(v), &back), 0);
    assert_memory_equal(&t, &back, sizeof(t));
    key = authd_ticket_redis_key("portcullis:", &t);
    lock = authd_ticket_lock_key("portcullis:", &t);
    assert_int_equal(strncmp(key, "portcullis:s:", 13), 0);
    assert_int_equal(strlen(key), 13 + 24);
    assert_int_equal(strncmp(lock, "portcullis:l:", 13), 0);
    assert_string_equal(key + 13, lock + 13);
    /* named by the whole ticket: another secret, another key (a DEL needs the secret too) */
    back.secret[0] ^= 1;
    char *other = authd_ticket_redis_key("portcullis:", &back);
    assert_string_not_equal(key, other);
    free(other);
    free(key);
    free(lock);
    free(v);
}

/* Every ticket of the name, wherever it sits and however padded; others are passed over. */
static void
test_find_all_tickets(void **state)
{
    struct authd_ticket a, b, got[3];
    char *va, *vb, header[40000];
    size_t n, at = 0;
    bool more = true;

    (void)state;
    assert_int_equal(authd_ticket_new(&a), 0);
    assert_int_equal(authd_ticket_new(&b), 0);
    va = authd_ticket_format(&a);
    vb = authd_ticket_format(&b);
    for (int i = 0; i < 300; i++) /* past the jar's 128 cookies and 16 KiB */
        at += (size_t)snprintf(header + at, sizeof(header) - at, "pad%d=%0100d; ", i, i);
    snprintf(header + at, sizeof(header) - at,
             "_portcullisx=%s;_portcullis=t1.short; _portcullis = \"%s\" ;x=1;\t_portcullis=%s", va,
             va, vb);
    n = authd_ticket_find_all("_portcullis", header, got, 3, &more);
    assert_int_equal(n, 2);
    assert_false(more);
    assert_memory_equal(&got[0], &a, sizeof(a));
    assert_memory_equal(&got[1], &b, sizeof(b));
    assert_int_equal(authd_ticket_find_all("_portcullis", header, got, 1, &more), 1);
    assert_true(more);
    assert_memory_equal(&got[0], &a, sizeof(a));
    assert_int_equal(authd_ticket_find_all("_portcullis", "", got, 3, &more), 0);
    assert_int_equal(authd_ticket_find_all("_portcullis", ";;=;_portcullis", got, 3, &more), 0);
    assert_false(more);
    free(va);
    free(vb);
}

static void
test_ticket_parse_refuses(void **state)
{
    static const char good[] =
        "t1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    static const char *const bad[] = {
        "",
        "t1.",
        "t2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "t1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "t1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "t1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "t1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
        "t1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/",
        "t1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    struct authd_ticket t;
    char nul[sizeof(good)];

    (void)state;
    assert_int_equal(authd_ticket_parse(good, strlen(good), &t), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(authd_ticket_parse(bad[i], strlen(bad[i]), &t), PC_EPARSE);
    memcpy(nul, good, sizeof(good));
    nul[40] = '\0';
    assert_int_equal(authd_ticket_parse(nul, sizeof(good) - 1, &t), PC_EPARSE);
}

/* ---- the sealed value ---- */

static void
test_seal_open_and_what_redis_sees(void **state)
{
    struct authd_config *cfg = make_config("a", REDIS_OK, "app", NULL);
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *s = make_session(h, 200), *back = NULL;
    struct authd_ticket t;
    uint8_t *blob = NULL;
    size_t len = 0;
    char *v;

    (void)state;
    assert_int_equal(authd_ticket_new(&t), 0);
    assert_int_equal(authd_ticket_seal(&cfg->keys, h, &t, s, &blob, &len), 0);
    assert_true(len > 200 * 20); /* 200 groups: the bulk is in Redis, not in the cookie */
    assert_int_equal(authd_ticket_open(&cfg->keys, h, &t, blob, len, NOW + 1, &back), 0);
    assert_string_equal(back->id.sub, "user-1");
    assert_string_equal(back->id.email, "u@example.com");
    assert_int_equal(back->id.groups.n, 200);
    assert_string_equal(back->refresh_token, "refresh-1");
    /* no claim, token or ticket secret is readable in what Redis holds */
    assert_false(contains(blob, len, "user-1"));
    assert_false(contains(blob, len, "u@example.com"));
    assert_false(contains(blob, len, "team-000"));
    assert_false(contains(blob, len, "refresh-1"));
    assert_false(contains(blob, len, "idp.example.com"));
    assert_null(memmem(blob, len, t.secret, sizeof(t.secret)));
    v = authd_ticket_format(&t);
    assert_false(contains(blob, len, v + 3));
    free(v);
    authd_session_free(back);
    free(blob);
    authd_session_free(s);
    authd_config_free(cfg);
}

/* Every field comes back; anything pack did not write is refused (the packed form is read
 * behind the AEAD tag, so only authd's own bytes reach it, but it is checked as if not). */
static void
test_packed_session(void **state)
{
    struct authd_config *cfg = make_config("a", REDIS_OK, "app", NULL);
    struct authd_session *s = make_session(cfg->hosts[0], 3), *back = NULL;
    struct authd_claim extra[2] = {{.name = "dept", .value = "infra"}, {.name = "roles"}};
    uint8_t *p, *q;
    size_t len = 0;

    (void)state;
    authd_strlist_add(&extra[1].items, "a");
    authd_strlist_add(&extra[1].items, "b");
    free(s->id.extra); /* none from the claims */
    s->id.extra = extra;
    s->id.nextra = 2;
    s->id_token = strdup("eyJ.id.token");
    s->refreshed_at = NOW + 7;
    s->expires_at = -5;
    p = authd_session_pack(s, &len);
    assert_int_equal(authd_session_unpack(p, len, &back), 0);
    assert_string_equal(back->id.sub, "user-1");
    assert_string_equal(back->id.email, "u@example.com");
    assert_true(back->id.email_verified);
    assert_string_equal(back->id.preferred_username, "user");
    assert_int_equal(back->id.groups.n, 3);
    assert_string_equal(back->id.groups.v[2], "team-002-platform-engineers");
    assert_int_equal(back->id.nextra, 2);
    assert_string_equal(back->id.extra[0].name, "dept");
    assert_string_equal(back->id.extra[0].value, "infra");
    assert_null(back->id.extra[1].value);
    assert_int_equal(back->id.extra[1].items.n, 2);
    assert_string_equal(back->id.extra[1].items.v[1], "b");
    assert_string_equal(back->issuer, "https://idp.example.com");
    assert_string_equal(back->client_id, "app");
    assert_int_equal(back->issued_at, NOW);
    assert_int_equal(back->expires_at, -5);
    assert_int_equal(back->refreshed_at, NOW + 7);
    assert_string_equal(back->refresh_token, "refresh-1");
    assert_string_equal(back->id_token, "eyJ.id.token");
    authd_session_free(back);
    /* every cut short, and one byte too many */
    q = malloc(len + 1);
    memcpy(q, p, len);
    q[len] = 0;
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(authd_session_unpack(q, n, &back), PC_EAUTH);
        assert_null(back);
    }
    assert_int_equal(authd_session_unpack(q, len + 1, &back), PC_EAUTH);
    /* a flag that is neither 0 nor 1: email_verified sits after sub and email */
    q[4 + 6 + 4 + 13] = 2;
    assert_int_equal(authd_session_unpack(q, len, &back), PC_EAUTH);
    /* a NUL inside a string; a count larger than the bytes left; sub absent */
    memcpy(q, p, len);
    q[4 + 2] = 0;
    assert_int_equal(authd_session_unpack(q, len, &back), PC_EAUTH);
    memcpy(q, p, len);
    memset(q + 4 + 6 + 4 + 13 + 1 + 4 + 4, 0x7f, 1); /* the group count */
    assert_int_equal(authd_session_unpack(q, len, &back), PC_EAUTH);
    memset(q, 0xff, 4);
    assert_int_equal(authd_session_unpack(q, len, &back), PC_EAUTH);
    assert_null(back);
    free(q);
    pc_cleanse(p, len);
    free(p);
    s->id.extra = NULL;
    s->id.nextra = 0;
    authd_strlist_release(&extra[1].items);
    authd_session_free(s);
    authd_config_free(cfg);
}

enum mutation { M_NONE, M_OTHER_SECRET, M_OTHER_ID, M_FLIP, M_TRUNCATE, M_VERSION, M_HUGE };

static void
test_open_refuses(void **state)
{
    static const struct {
        enum mutation m;
        int64_t now;
        int want;
    } cases[] = {
        {M_NONE, NOW + 12 * 3600, PC_EEXPIRED},
        {M_OTHER_SECRET, NOW, PC_EAUTH},
        {M_OTHER_ID, NOW, PC_EAUTH},
        {M_FLIP, NOW, PC_EAUTH},
        {M_TRUNCATE, NOW, PC_EAUTH},
        {M_VERSION, NOW, PC_EPARSE}, /* the user's, refused: never passed over */
        {M_HUGE, NOW, PC_ETOOBIG},
    };
    struct authd_config *cfg = make_config("a", REDIS_OK, "app", NULL);
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *s = make_session(h, 3), *back = NULL;
    struct authd_ticket t;
    uint8_t *blob = NULL, *huge = calloc(1, AUTHD_MAX_REDIS_BLOB + 1);
    size_t len = 0;

    (void)state;
    assert_int_equal(authd_ticket_new(&t), 0);
    assert_int_equal(authd_ticket_seal(&cfg->keys, h, &t, s, &blob, &len), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_ticket u = t;
        uint8_t *b = malloc(len);
        size_t n = len;

        memcpy(b, blob, len);
        if (cases[i].m == M_OTHER_SECRET)
            u.secret[5] ^= 1;
        if (cases[i].m == M_OTHER_ID)
            u.id[0] ^= 1;
        if (cases[i].m == M_FLIP)
            b[len / 2] ^= 0x40;
        if (cases[i].m == M_TRUNCATE)
            n = 20;
        if (cases[i].m == M_VERSION)
            b[0] = 1; /* the JSON values before the packed session */
        assert_int_equal(authd_ticket_open(&cfg->keys, h, &u, cases[i].m == M_HUGE ? huge : b,
                                           cases[i].m == M_HUGE ? AUTHD_MAX_REDIS_BLOB + 1 : n,
                                           cases[i].now, &back),
                         cases[i].want);
        assert_null(back);
        free(b);
    }
    free(huge);
    free(blob);
    authd_session_free(s);
    authd_config_free(cfg);
}

/* The key comes from the ticket and authd's cookie secret: a value sealed by anyone without
 * the secret (a writer of Redis) opens nowhere; rotation opens with any listed secret. */
static void
test_bound_to_cookie_secret_name_and_client(void **state)
{
    static const struct {
        const char *seal_secrets, *open_secrets, *open_client, *open_extra;
        int want;
    } cases[] = {
        {"a", "b, a", "app", NULL, 0},
        {"a", "b", "app", NULL, PC_EAUTH},
        {"b", "a", "app", NULL, PC_EAUTH},
        {"a", "a", "app", ", cookieName: other", PC_EAUTH},
        {"a", "a", "other-client", NULL, PC_EINVAL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_config *sc = make_config(cases[i].seal_secrets, REDIS_OK, "app", NULL);
        struct authd_config *oc =
            make_config(cases[i].open_secrets, REDIS_OK, cases[i].open_client, cases[i].open_extra);
        struct authd_session *s = make_session(sc->hosts[0], 1), *back = NULL;
        struct authd_ticket t;
        uint8_t *blob = NULL;
        size_t len = 0;

        assert_int_equal(authd_ticket_new(&t), 0);
        assert_int_equal(authd_ticket_seal(&sc->keys, sc->hosts[0], &t, s, &blob, &len), 0);
        assert_int_equal(authd_ticket_open(&oc->keys, oc->hosts[0], &t, blob, len, NOW, &back),
                         cases[i].want);
        authd_session_free(back);
        free(blob);
        authd_session_free(s);
        authd_config_free(sc);
        authd_config_free(oc);
    }
}

/* ---- config: the redis section and session.store ---- */

static void
test_redis_config(void **state)
{
    struct authd_config *cfg = make_config(
        "a",
        "redis:\n  url: rediss://redis.example.com\n  username: portcullis\n"
        "  passwordFile: pw\n  database: 3\n  caFile: /ca.pem\n  commandTimeout: 250ms\n"
        "  connectTimeout: 2s\n  grace: 1m\n  revalidate: 0s\n  keyPrefix: 'pc:a:'\n",
        "app", NULL);
    const struct authd_redis_config *r = cfg->redis;

    (void)state;
    assert_int_equal(cfg->hosts[0]->session.store, AUTHD_STORE_REDIS);
    assert_true(r->tls);
    assert_string_equal(r->host, "redis.example.com");
    assert_int_equal(r->port, 6379);
    assert_int_equal(r->database, 3);
    assert_string_equal(r->username, "portcullis");
    assert_string_equal(r->password, "redis-password-1"); /* trailing newline dropped */
    assert_string_equal(r->ca_file, "/ca.pem");
    assert_string_equal(r->key_prefix, "pc:a:");
    assert_int_equal(r->command_timeout_ms, 250);
    assert_int_equal(r->connect_timeout_ms, 2000);
    assert_int_equal(r->grace, 60);
    assert_int_equal(r->revalidate, 0);
    authd_config_free(cfg);

    cfg = make_config("a", REDIS_OK, "app", NULL);
    r = cfg->redis;
    assert_false(r->tls);
    assert_string_equal(r->host, "127.0.0.1");
    assert_int_equal(r->port, 6380);
    assert_int_equal(r->database, 2);
    assert_null(r->username);
    assert_string_equal(r->key_prefix, "portcullis:");
    assert_int_equal(r->command_timeout_ms, 500);
    assert_int_equal(r->grace, 30);
    assert_int_equal(r->revalidate, 2);
    authd_config_free(cfg);

    cfg = make_config("a", "redis: {url: 'redis://[::1]:7000'}\n", "app", NULL);
    assert_string_equal(cfg->redis->host, "::1");
    assert_int_equal(cfg->redis->port, 7000);
    assert_null(cfg->redis->password);
    authd_config_free(cfg);
}

static void
test_redis_config_errors(void **state)
{
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"redis: {url: 'redis://:pw@h'}\n", "redis.passwordFile"},
        {"redis: {url: 'http://h'}\n", "redis:// or rediss://"},
        {"redis: {url: 'redis://h:0'}\n", "invalid port"},
        {"redis: {url: 'redis://h:6379x'}\n", "invalid port"},
        {"redis: {url: 'redis://h/16'}\n", "database number"},
        {"redis: {url: 'redis://h/x'}\n", "database number"},
        {"redis: {url: 'redis://h?db=1'}\n", "query"},
        {"redis: {url: 'redis://'}\n", "no valid host"},
        {"redis: {url: 'redis://h', database: 16}\n", "0 to 15"},
        {"redis: {url: 'redis://h', commandTimeout: 2s}\n", "redis.commandTimeout"},
        {"redis: {url: 'redis://h', commandTimeout: 5}\n", "redis.commandTimeout"},
        {"redis: {url: 'redis://h', grace: 2h}\n", "grace at most 1h"},
        {"redis: {url: 'redis://h', caFile: /x}\n", "rediss://"},
        {"redis: {url: 'redis://h', keyPrefix: 'a b'}\n", "redis.keyPrefix"},
        {"redis: {url: 'redis://h', passwordFile: missing}\n", "cannot read \"missing\""},
        {"redis: {url: 'redis://h', typo: 1}\n", "unknown key \"typo\""},
        {"redis: {username: x}\n", "redis.url: required"},
        {"", "session.store: redis needs the top-level redis section"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_config *cfg = NULL;
        struct pc_diag diag;
        char text[1024];

        snprintf(text, sizeof(text),
                 "cookieSecretFiles: [a]\n%shosts:\n- id: ns/app\n  hosts: [app.example.com]\n"
                 "  oidc: {issuerURL: 'https://idp.example.com', clientID: app}\n"
                 "  session: {store: redis}\n",
                 cases[i].yaml);
        assert_int_not_equal(parse(text, &cfg, &diag), 0);
        if (strstr(diag.msg, cases[i].want) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, diag.msg, cases[i].want);
    }
}

/* --redis-* replace the file's section, are checked like it, and work with no file at all. */
static void
test_redis_flags(void **state)
{
    struct authd_overrides ov = {.redis_url = "rediss://redis.example.com:6380/1",
                                 .redis_username = "portcullis",
                                 .redis_password_file = "pw",
                                 .redis_ca_file = "/ca.pem"};
    struct authd_config_opts opts = {.read_file = mem_reader, .overrides = &ov};
    const char *text = "cookieSecretFiles: [a]\n" REDIS_OK "hosts: []\n";
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};

    (void)state;
    assert_int_equal(authd_config_parse(text, strlen(text), &opts, &cfg, &diag), 0);
    assert_true(cfg->redis->tls);
    assert_string_equal(cfg->redis->host, "redis.example.com");
    assert_int_equal(cfg->redis->port, 6380);
    assert_int_equal(cfg->redis->database, 1);
    assert_string_equal(cfg->redis->username, "portcullis");
    assert_string_equal(cfg->redis->password, "redis-password-1");
    assert_string_equal(cfg->redis->ca_file, "/ca.pem");
    authd_config_free(cfg);
    ov.redis_url = "redis://u:p@h";
    assert_int_not_equal(authd_config_parse(text, strlen(text), &opts, &cfg, &diag), 0);
    assert_non_null(strstr(diag.msg, "redis.passwordFile"));
    ov = (struct authd_overrides){.redis_url = "redis://h", .nsecret_files = 1};
    ov.secret_files[0] = "a";
    opts.head_only = true;
    assert_int_equal(authd_config_parse("{}", 2, &opts, &cfg, &diag), 0);
    assert_string_equal(cfg->redis->host, "h");
    assert_null(cfg->redis->password);
    authd_config_free(cfg);
}

static void
test_store_values(void **state)
{
    struct authd_config *cfg = NULL;
    struct pc_diag diag;
    const char *base = "cookieSecretFiles: [a]\nhosts:\n- id: ns/app\n  hosts: [a.example.com]\n"
                       "  oidc: {issuerURL: 'https://idp.example.com', clientID: app}\n";
    char text[512];

    (void)state;
    snprintf(text, sizeof(text), "%s", base);
    assert_int_equal(parse(text, &cfg, &diag), 0);
    assert_int_equal(cfg->hosts[0]->session.store, AUTHD_STORE_COOKIE);
    assert_null(cfg->redis);
    authd_config_free(cfg);
    snprintf(text, sizeof(text), "%s  session: {store: memcached}\n", base);
    assert_int_not_equal(parse(text, &cfg, &diag), 0);
    assert_non_null(strstr(diag.msg, "expected cookie or redis"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ticket_roundtrip),
        cmocka_unit_test(test_ticket_parse_refuses),
        cmocka_unit_test(test_find_all_tickets),
        cmocka_unit_test(test_seal_open_and_what_redis_sees),
        cmocka_unit_test(test_packed_session),
        cmocka_unit_test(test_open_refuses),
        cmocka_unit_test(test_bound_to_cookie_secret_name_and_client),
        cmocka_unit_test(test_redis_config),
        cmocka_unit_test(test_redis_config_errors),
        cmocka_unit_test(test_redis_flags),
        cmocka_unit_test(test_store_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
