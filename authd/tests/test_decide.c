/*
 * test_decide.c - the decision table per front door, access rules, path lists, ReportOnly,
 * unknown hosts and identity-header smuggling.
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

static const char config_text[] =
    "cookieSecretFiles: [mem]\n"
    "hosts:\n"
    "- id: ns/app\n"
    "  hosts: [app.example.com]\n"
    "  oidc: {issuerURL: 'https://idp', clientID: app}\n"
    "  access: {allowedGroups: [admins], allowedEmailDomains: [example.com],\n"
    "           allowedEmails: [Boss@Other.com]}\n"
    "  paths: {skip: [/healthz, /static/, /pub*], api: [/api/, /graphql]}\n"
    "  session: {refresh: 5m}\n"
    "  passIDToken: true\n"
    "- id: ns/report\n"
    "  hosts: [report.example.com]\n"
    "  oidc: {issuerURL: 'https://idp', clientID: report}\n"
    "  access: {allowedGroups: [admins]}\n"
    "  mode: ReportOnly\n"
    "- id: ns/api\n"
    "  hosts: [api.example.com]\n"
    "  oidc: {issuerURL: 'https://idp', clientID: api}\n"
    "  bearerTokens: {enabled: true}\n"
    "- id: ns/open\n"
    "  hosts: [open.example.com]\n"
    "  oidc: {issuerURL: 'https://idp', clientID: open}\n"
    "- id: ns/lax\n"
    "  hosts: [lax.example.com]\n"
    "  oidc: {issuerURL: 'https://idp', clientID: lax}\n"
    "  access: {allowedEmailDomains: [example.com], allowedEmails: [boss@other.com],\n"
    "           allowUnverifiedEmail: true}\n";

static struct authd_config *cfg;

static int
mem_reader(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    (void)path;
    *data = strdup("0123456789abcdef0123456789abcdef");
    *len = 32;
    return 0;
}

static int
setup(void **state)
{
    struct authd_config_opts opts = {.read_file = mem_reader};
    struct pc_diag diag = {0};

    (void)state;
    return authd_config_parse(config_text, strlen(config_text), &opts, &cfg, &diag);
}

static int
teardown(void **state)
{
    (void)state;
    authd_config_free(cfg);
    return 0;
}

enum who {
    NOBODY,
    ADMIN,
    DOMAIN_USER,
    BOSS,
    OUTSIDER,
    EXPIRED,
    OTHER_CLIENT,
    TAMPERED,
    UNVERIFIED_DOMAIN_USER, /* email_verified false */
    UNVERIFIED_BOSS,
    UNVERIFIED_ADMIN,
};

static char *admin_groups[] = {"users", "admins"};
static char *user_groups[] = {"users"};

/* Fills s for who and returns the session_rc authd_session_open would have returned. */
static int
session_for(enum who w, struct authd_session *s)
{
    memset(s, 0, sizeof(*s));
    s->issuer = "https://idp";
    s->client_id = "app";
    s->expires_at = NOW + 3600;
    s->refreshed_at = NOW - 600; /* due for refresh on hosts with refresh: 5m */
    s->id_token = "ey.id.token";
    s->refresh_token = "rt";
    s->id.email_verified = true;
    switch (w) {
    case UNVERIFIED_ADMIN:
        s->id.email_verified = false;
        /* fall through */
    case ADMIN:
        s->id.sub = "admin-1";
        s->id.email = "a@corp.net";
        s->id.groups.v = admin_groups;
        s->id.groups.n = 2;
        return 0;
    case UNVERIFIED_DOMAIN_USER:
        s->id.email_verified = false;
        /* fall through */
    case DOMAIN_USER:
        s->id.sub = "user-2";
        s->id.email = "u@EXAMPLE.com";
        s->id.groups.v = user_groups;
        s->id.groups.n = 1;
        return 0;
    case UNVERIFIED_BOSS:
        s->id.email_verified = false;
        /* fall through */
    case BOSS:
        s->id.sub = "boss";
        s->id.email = "boss@other.com";
        return 0;
    case OUTSIDER:
        s->id.sub = "out";
        s->id.email = "o@sub.example.com";
        s->id.preferred_username = "o";
        s->id.groups.v = user_groups;
        s->id.groups.n = 1;
        return 0;
    case EXPIRED:
        return PC_EEXPIRED;
    case OTHER_CLIENT:
        return PC_EINVAL;
    case TAMPERED:
        return PC_EAUTH;
    default:
        return PC_ENOTFOUND;
    }
}

struct row {
    const char *name;
    enum authd_door door;
    const char *host, *method, *path, *accept, *xrw, *sfm;
    enum who who;
    int bearer_rc; /* 0: valid bearer of ADMIN, PC_ENOTFOUND: none */
    enum authd_verdict verdict;
    int status;
    const char *reason;
};

#define E AUTHD_DOOR_ENVOY
#define N AUTHD_DOOR_NGINX
#define NB PC_ENOTFOUND
#define HTML "text/html,application/xhtml+xml,*/*;q=0.8"
#define JSON "application/json"

static const struct row rows[] = {
    /* name, door, host, method, path, accept, xrw, sfm, who, bearer, verdict, status, reason */
    {"browser login", E, "app.example.com", "GET", "/x?y=1", HTML, NULL, "navigate", NOBODY, NB,
     AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"browser expired", E, "app.example.com", "GET", "/", HTML, NULL, NULL, EXPIRED, NB,
     AUTHD_LOGIN_REDIRECT, 302, "session-expired"},
    {"browser other client", E, "app.example.com", "GET", "/", HTML, NULL, NULL, OTHER_CLIENT, NB,
     AUTHD_LOGIN_REDIRECT, 302, "session-other-client"},
    {"tampered", E, "app.example.com", "GET", "/", HTML, NULL, NULL, TAMPERED, NB,
     AUTHD_LOGIN_REDIRECT, 302, "session-invalid"},
    {"api path", E, "app.example.com", "GET", "/api/v1", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_UNAUTHORIZED, 401, "no-session"},
    {"api exact", E, "app.example.com", "GET", "/graphql?q=1", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_UNAUTHORIZED, 401, "no-session"},
    {"api exact no prefix", E, "app.example.com", "GET", "/graphql2", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"json accept", E, "app.example.com", "GET", "/x", JSON, NULL, NULL, NOBODY, NB,
     AUTHD_UNAUTHORIZED, 401, "no-session"},
    {"xhr", E, "app.example.com", "GET", "/x", "*/*", "XMLHttpRequest", NULL, NOBODY, NB,
     AUTHD_UNAUTHORIZED, 401, "no-session"},
    {"fetch cors", E, "app.example.com", "GET", "/x", "*/*", NULL, "cors", NOBODY, NB,
     AUTHD_UNAUTHORIZED, 401, "no-session"},
    {"post", E, "app.example.com", "POST", "/form", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_UNAUTHORIZED, 401, "no-session"},
    {"nginx no session", N, "app.example.com", "GET", "/x", HTML, NULL, "navigate", NOBODY, NB,
     AUTHD_UNAUTHORIZED, 401, "no-session"},
    {"admin allowed", E, "app.example.com", "GET", "/x", HTML, NULL, NULL, ADMIN, NB, AUTHD_ALLOW,
     200, "session"},
    {"admin nginx", N, "APP.example.com:443", "GET", "/x", HTML, NULL, NULL, ADMIN, NB, AUTHD_ALLOW,
     202, "session"},
    {"domain allowed", E, "app.example.com", "GET", "/x", HTML, NULL, NULL, DOMAIN_USER, NB,
     AUTHD_ALLOW, 200, "session"},
    {"email allowed", E, "app.example.com", "GET", "/x", HTML, NULL, NULL, BOSS, NB, AUTHD_ALLOW,
     200, "session"},
    {"subdomain not allowed", E, "app.example.com", "GET", "/x", HTML, NULL, NULL, OUTSIDER, NB,
     AUTHD_FORBIDDEN, 403, "forbidden"},
    {"forbidden nginx", N, "app.example.com", "GET", "/x", HTML, NULL, NULL, OUTSIDER, NB,
     AUTHD_FORBIDDEN, 403, "forbidden"},
    {"skip exact", E, "app.example.com", "GET", "/healthz", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_SKIP, 200, "skip"},
    {"skip exact only", E, "app.example.com", "GET", "/healthz/x", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"skip prefix", E, "app.example.com", "GET", "/static/a.css", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_SKIP, 200, "skip"},
    {"skip star", E, "app.example.com", "GET", "/public.txt", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_SKIP, 200, "skip"},
    {"skip dotdot", E, "app.example.com", "GET", "/static/../admin", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"skip encoded", E, "app.example.com", "GET", "/static/%2e%2e/admin", HTML, NULL, NULL, NOBODY,
     NB, AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"skip nginx", N, "app.example.com", "GET", "/healthz", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_SKIP, 202, "skip"},
    {"callback", E, "app.example.com", "GET", "/oauth2/callback?code=1", HTML, NULL, NULL, NOBODY,
     NB, AUTHD_CALLBACK, 0, "callback"},
    {"sign out", E, "app.example.com", "GET", "/oauth2/sign_out", HTML, NULL, NULL, ADMIN, NB,
     AUTHD_SIGN_OUT, 0, "sign-out"},
    {"unknown host", E, "evil.example.org", "GET", "/", HTML, NULL, NULL, ADMIN, NB,
     AUTHD_UNKNOWN_HOST, 403, "unknown-host"},
    {"unknown host nginx", N, NULL, "GET", "/", HTML, NULL, NULL, ADMIN, NB, AUTHD_UNKNOWN_HOST,
     403, "unknown-host"},
    {"report only forbidden", E, "report.example.com", "GET", "/", HTML, NULL, NULL, OUTSIDER, NB,
     AUTHD_FORBIDDEN, 200, "forbidden"},
    {"report only login", E, "report.example.com", "GET", "/", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_LOGIN_REDIRECT, 200, "no-session"},
    {"report only nginx", N, "report.example.com", "GET", "/", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_UNAUTHORIZED, 202, "no-session"},
    {"bearer valid", E, "api.example.com", "GET", "/v1", JSON, NULL, NULL, NOBODY, 0, AUTHD_ALLOW,
     200, "bearer"},
    {"bearer invalid", E, "api.example.com", "GET", "/v1", HTML, NULL, NULL, ADMIN, PC_EAUTH,
     AUTHD_UNAUTHORIZED, 401, "invalid-bearer"},
    {"bearer absent uses session", E, "api.example.com", "GET", "/v1", HTML, NULL, NULL, ADMIN, NB,
     AUTHD_ALLOW, 200, "session"},
    {"bearer ignored when disabled", E, "app.example.com", "GET", "/x", HTML, NULL, NULL, NOBODY,
     PC_EAUTH, AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"any user", E, "open.example.com", "GET", "/", HTML, NULL, NULL, OUTSIDER, NB, AUTHD_ALLOW,
     200, "session"},
    /* Path parameters: Tomcat/Jetty resolve "/static/..;/admin" to "/admin". */
    {"skip dotdot semicolon", E, "app.example.com", "GET", "/static/..;/admin", HTML, NULL, NULL,
     NOBODY, NB, AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"skip semicolon nginx", N, "app.example.com", "GET", "/static/..;x/admin", HTML, NULL, NULL,
     NOBODY, NB, AUTHD_UNAUTHORIZED, 401, "no-session"},
    {"skip exact semicolon", E, "app.example.com", "GET", "/healthz;x", HTML, NULL, NULL, NOBODY,
     NB, AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"skip encoded semicolon", E, "app.example.com", "GET", "/static/..%3b/admin", HTML, NULL, NULL,
     NOBODY, NB, AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    /* Upstreams that decode twice see "/static/../admin". */
    {"skip double encoded", E, "app.example.com", "GET", "/static/%252e%252e/admin", HTML, NULL,
     NULL, NOBODY, NB, AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"skip dotdot at end", E, "app.example.com", "GET", "/static/..", HTML, NULL, NULL, NOBODY, NB,
     AUTHD_LOGIN_REDIRECT, 302, "no-session"},
    {"skip query may hold anything", E, "app.example.com", "GET", "/static/a.css?x=/../;", HTML,
     NULL, NULL, NOBODY, NB, AUTHD_SKIP, 200, "skip"},
    /* Email rules act only on addresses the IdP verified, unless the host opts out. */
    {"unverified domain", E, "app.example.com", "GET", "/x", HTML, NULL, NULL,
     UNVERIFIED_DOMAIN_USER, NB, AUTHD_FORBIDDEN, 403, "email-unverified"},
    {"unverified email", N, "app.example.com", "GET", "/x", HTML, NULL, NULL, UNVERIFIED_BOSS, NB,
     AUTHD_FORBIDDEN, 403, "email-unverified"},
    {"unverified but in group", E, "app.example.com", "GET", "/x", HTML, NULL, NULL,
     UNVERIFIED_ADMIN, NB, AUTHD_ALLOW, 200, "session"},
    {"unverified domain opt-out", E, "lax.example.com", "GET", "/x", HTML, NULL, NULL,
     UNVERIFIED_DOMAIN_USER, NB, AUTHD_ALLOW, 200, "session"},
    {"unverified email opt-out", E, "lax.example.com", "GET", "/x", HTML, NULL, NULL,
     UNVERIFIED_BOSS, NB, AUTHD_ALLOW, 200, "session"},
    {"verified outsider opt-out", E, "lax.example.com", "GET", "/x", HTML, NULL, NULL, OUTSIDER, NB,
     AUTHD_FORBIDDEN, 403, "forbidden"},
};

/* The index of the row called name. */
static size_t
row_index(const char *name)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (strcmp(rows[i].name, name) == 0)
            return i;
    fail_msg("no row %s", name);
    return 0;
}

static const char *
header(const struct authd_decision *d, const char *name)
{
    for (size_t i = 0; i < d->nheaders; i++)
        if (strcmp(d->headers[i].name, name) == 0)
            return d->headers[i].value;
    return NULL;
}

/* What the door passes for pages: the templates and the request id (test_pages). */
static const struct authd_pages *row_pages;
static const char *row_request_id;

static void
run_row(const struct row *r, struct authd_decision *d, struct authd_session *s,
        struct authd_identity *bearer)
{
    struct authd_request req = {.door = r->door,
                                .method = r->method,
                                .host = r->host,
                                .path = r->path,
                                .accept = r->accept,
                                .x_requested_with = r->xrw,
                                .sec_fetch_mode = r->sfm,
                                .cookie =
                                    "theme=dark; _portcullis=abc; _portcullis_csrf_abcdefghijkl=1"};
    struct authd_decide_input in = {.req = &req,
                                    .now = NOW,
                                    .bearer_rc = r->bearer_rc,
                                    .bearer = bearer,
                                    .pages = row_pages,
                                    .request_id = row_request_id};

    in.host = authd_config_match_host(cfg, r->host);
    in.session_rc = session_for(r->who, s);
    in.session = in.session_rc == 0 ? s : NULL;
    memset(bearer, 0, sizeof(*bearer));
    bearer->sub = "svc";
    bearer->groups.v = admin_groups;
    bearer->groups.n = 2;
    assert_int_equal(authd_decide(&in, d), 0);
}

static void
test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct authd_decision d;
        struct authd_session s;
        struct authd_identity bearer;

        run_row(r, &d, &s, &bearer);
        if (d.verdict != r->verdict || d.status != r->status || strcmp(d.reason, r->reason) != 0)
            fail_msg("%s: got verdict %d status %d reason %s, want %d %d %s", r->name, d.verdict,
                     d.status, d.reason, r->verdict, r->status, r->reason);
        if (d.status == 401)
            assert_non_null(d.www_authenticate);
        if (d.status == 401 || d.status == 403)
            assert_non_null(
                strstr(d.content_type, strcmp(r->accept, JSON) == 0 || r->xrw ? "json" : "html"));
        if (d.verdict == AUTHD_LOGIN_REDIRECT && d.status == 302)
            assert_non_null(d.original_url);
        authd_decision_release(&d);
    }
}

/* Every identity header is set on allow, empty when the claim is absent. */
static void
test_headers(void **state)
{
    struct authd_decision d;
    struct authd_session s;
    struct authd_identity bearer;

    (void)state;
    run_row(&rows[12], &d, &s, &bearer); /* admin allowed */
    assert_int_equal(d.nheaders, 6);
    assert_string_equal(header(&d, "X-Auth-Request-User"), "admin-1");
    assert_string_equal(header(&d, "X-Auth-Request-Email"), "a@corp.net");
    assert_string_equal(header(&d, "X-Auth-Request-Preferred-Username"), "");
    assert_string_equal(header(&d, "X-Auth-Request-Groups"), "users,admins");
    assert_string_equal(header(&d, "Authorization"), "Bearer ey.id.token");
    assert_string_equal(header(&d, "Cookie"), "theme=dark");
    assert_true(d.refresh_due);
    authd_decision_release(&d);
    run_row(&rows[18], &d, &s, &bearer); /* skip: identity headers blanked */
    assert_string_equal(header(&d, "X-Auth-Request-User"), "");
    assert_string_equal(header(&d, "X-Auth-Request-Groups"), "");
    assert_null(header(&d, "Authorization"));
    authd_decision_release(&d);
    run_row(&rows[29], &d, &s, &bearer); /* report-only forbidden: headers, no body */
    assert_true(d.report_only);
    assert_string_equal(header(&d, "X-Auth-Request-User"), "out");
    assert_null(d.body);
    authd_decision_release(&d);
    run_row(&rows[32], &d, &s, &bearer); /* bearer: identity from the token */
    assert_string_equal(header(&d, "X-Auth-Request-User"), "svc");
    authd_decision_release(&d);
    run_row(&rows[16], &d, &s, &bearer); /* forbidden: nothing upstream */
    assert_int_equal(d.nheaders, 0);
    authd_decision_release(&d);
    /* An unverified email never reaches the app (which may pick its user by it). */
    run_row(&rows[row_index("unverified but in group")], &d, &s, &bearer);
    assert_string_equal(header(&d, "X-Auth-Request-User"), "admin-1");
    assert_string_equal(header(&d, "X-Auth-Request-Email"), "");
    authd_decision_release(&d);
    run_row(&rows[row_index("unverified email opt-out")], &d, &s, &bearer);
    assert_string_equal(header(&d, "X-Auth-Request-Email"), "boss@other.com");
    authd_decision_release(&d);
}

static void
test_original_url(void **state)
{
    static const struct {
        const char *host, *proto, *path, *want;
    } cases[] = {
        {"app.example.com", NULL, "/x?y=1", "https://app.example.com/x?y=1"},
        {"app.example.com:8080", "http", "/", "http://app.example.com:8080/"},
        {"App.Example.com", "https,http", "/a", "https://app.example.com/a"},
        {"app.example.com", "gopher", "/a", "https://app.example.com/a"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_request req = {.door = AUTHD_DOOR_ENVOY,
                                    .method = "GET",
                                    .host = cases[i].host,
                                    .path = cases[i].path,
                                    .x_forwarded_proto = cases[i].proto};
        struct authd_decide_input in = {
            .req = &req, .now = NOW, .session_rc = PC_ENOTFOUND, .bearer_rc = PC_ENOTFOUND};
        struct authd_decision d;

        in.host = authd_config_match_host(cfg, req.host);
        assert_int_equal(authd_decide(&in, &d), 0);
        assert_int_equal(d.verdict, AUTHD_LOGIN_REDIRECT);
        assert_string_equal(d.original_url, cases[i].want);
        authd_decision_release(&d);
    }
}

static void
test_claim_sanitized(void **state)
{
    static const struct {
        const char *claim, *header;
    } claims[] = {
        {"a\r\nX-Evil: 1", "a%0D%0AX-Evil: 1"},
        {"alice@example.com", "alice@example.com"},
        {"Zo\xc3\xab", "Zo%C3%AB"},
        {"bad\xff\xfeutf8", "bad%FF%FEutf8"},
        {"100%", "100%25"},
        {"tab\there\x7f", "tab%09here%7F"},
        {"", ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        char *groups[] = {(char *)claims[i].claim, "ops"};
        struct authd_identity id = {.sub = (char *)claims[i].claim,
                                    .groups = {.v = groups, .n = 2}};
        char *v = authd_identity_claim(&id, "sub"), *g = authd_identity_claim(&id, "groups");
        char *want = pc_xasprintf("%s,ops", claims[i].header);

        assert_string_equal(v, claims[i].header);
        assert_string_equal(g, want);
        free(v);
        free(g);
        free(want);
    }
    {
        struct authd_identity id = {.sub = "x"};
        char *v = authd_identity_claim(&id, "nope");

        assert_string_equal(v, "");
        free(v);
    }
}

/* What an application does with X-Auth-Request-Groups: split at ",", percent-decode each. */
static size_t
decode_groups(const char *header, char out[][64], size_t max)
{
    size_t n = 0, j = 0;

    for (const char *p = header; n < max; p++) {
        if (*p == ',' || *p == '\0') {
            out[n++][j] = '\0';
            j = 0;
            if (*p == '\0')
                break;
        } else if (*p == '%' && p[1] && p[2]) {
            char hex[3] = {p[1], p[2], '\0'};

            out[n][j++] = (char)strtol(hex, NULL, 16);
            p += 2;
        } else {
            out[n][j++] = *p;
        }
    }
    return n;
}

/*
 * Groups are one "," list: a "," inside a group name is encoded, so "readers,admins" stays one
 * group, and an application that splits and decodes gets the list back. Names without "%",
 * ",", control or non-ASCII bytes and without edge spaces arrive as they are.
 */
static void
test_groups_encoded(void **state)
{
    static const struct {
        const char *groups[3];
        const char *header;
    } cases[] = {
        {{"readers", "admins"}, "readers,admins"},
        {{"readers,admins"}, "readers%2Cadmins"},
        {{"a,b", "c"}, "a%2Cb,c"},
        {{"100%", "50%2C"}, "100%25,50%252C"},
        {{"Domain Users", "/team/ops"}, "Domain Users,/team/ops"},
        {{" admins", "admins "}, "%20admins,admins%20"},
        {{"Zo\xc3\xab", "a\r\nX-Evil: 1"}, "Zo%C3%AB,a%0D%0AX-Evil: 1"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_identity id = {.groups = {.v = (char **)cases[i].groups}};
        char decoded[4][64];
        char *v;

        while (id.groups.n < 3 && cases[i].groups[id.groups.n] != NULL)
            id.groups.n++;
        v = authd_identity_claim(&id, "groups");
        assert_string_equal(v, cases[i].header);
        assert_int_equal(decode_groups(v, decoded, 4), id.groups.n);
        for (size_t k = 0; k < id.groups.n; k++)
            assert_string_equal(decoded[k], cases[i].groups[k]);
        free(v);
    }
    /* Single-valued headers keep ","; their edge spaces are encoded like a group's. */
    {
        struct authd_identity id = {.sub = "a,b", .email = " x@example.com "};
        char *sub = authd_identity_claim(&id, "sub"), *email = authd_identity_claim(&id, "email");

        assert_string_equal(sub, "a,b");
        assert_string_equal(email, "%20x@example.com%20");
        free(sub);
        free(email);
    }
}

static void
test_helpers(void **state)
{
    static const struct {
        const char *prefix, *path, *want;
    } envoy[] = {
        {"/ext-authz", "/ext-authz/a/b?c=d", "/a/b?c=d"},
        {"/ext-authz", "/ext-authz", "/"},
        {"/ext-authz", "/ext-authzX/a", NULL},
        {"/ext-authz", "/other", NULL},
        {"/", "/a", "/a"},
    };
    static const struct {
        const char *in, *want;
    } bearer[] = {
        {"Bearer abc.def.ghi", "abc.def.ghi"},
        {"bearer  tok", "tok"},
        {"Basic eHk=", NULL},
        {"Bearer ", NULL},
        {"Bearer a b", NULL},
        {NULL, NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(envoy) / sizeof(envoy[0]); i++) {
        const char *got = authd_envoy_original_path(envoy[i].prefix, envoy[i].path);

        if (envoy[i].want == NULL)
            assert_null(got);
        else
            assert_string_equal(got, envoy[i].want);
    }
    for (size_t i = 0; i < sizeof(bearer) / sizeof(bearer[0]); i++) {
        char *got = authd_bearer_from_header(bearer[i].in);

        if (bearer[i].want == NULL)
            assert_null(got);
        else
            assert_string_equal(got, bearer[i].want);
        free(got);
    }
}

/* The page each denial shows: what happened, to whom, where, the request id, sign-out. */
static void
test_pages(void **state)
{
    static const struct {
        const char *row, *accept;
        const char *has[5];
        const char *lacks;
    } cases[] = {
        {"subdomain not allowed",
         NULL,
         {"<h1>Access denied</h1>", "not allowed to use this site", "o@sub.example.com",
          "<dd>app.example.com</dd>", "<a href=\"/oauth2/sign_out\">"},
         "Try again"},
        {"unverified domain",
         NULL,
         {"has not verified your email", "u@EXAMPLE.com", "rid4567890"},
         NULL},
        {"forbidden nginx", NULL, {"Access denied", "rid4567890"}, NULL},
        {"unknown host",
         NULL,
         {"<h1>Unknown site</h1>", "<dd>evil.example.org</dd>", "rid4567890"},
         "Sign out"},
        {"api path", NULL, {"<h1>Sign-in required</h1>", "rid4567890"}, "Signed in as"},
        {"bearer invalid", NULL, {"bearer token was not accepted"}, NULL},
        {"json accept",
         NULL,
         {"{\"error\":\"unauthorized\",\"status\":401,", "\"host\":\"app.example.com\"",
          "\"email\":null", "\"request_id\":\"rid4567890\"}"},
         "<"},
        {"subdomain not allowed",
         JSON,
         {"{\"error\":\"forbidden\",\"status\":403,", "\"email\":\"o@sub.example.com\"",
          "\"request_id\":\"rid4567890\"}"},
         "<"},
    };

    (void)state;
    row_request_id = "rid4567890";
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct row r = rows[row_index(cases[i].row)];
        struct authd_decision d;
        struct authd_session s;
        struct authd_identity bearer;

        if (cases[i].accept)
            r.accept = cases[i].accept;
        run_row(&r, &d, &s, &bearer);
        assert_non_null(d.body);
        for (size_t k = 0; k < 5 && cases[i].has[k]; k++)
            if (!strstr(d.body, cases[i].has[k]))
                fail_msg("%s: body lacks %s:\n%s", cases[i].row, cases[i].has[k], d.body);
        if (cases[i].lacks && strstr(d.body, cases[i].lacks))
            fail_msg("%s: body has %s:\n%s", cases[i].row, cases[i].lacks, d.body);
        authd_decision_release(&d);
    }
    /* The operator's forbidden page replaces the built-in one; other pages stay built-in. */
    {
        static const char tpl[] = "<p>no: {{email}} on {{host}} ({{request_id}})</p>";
        struct authd_pages *p = authd_pages_new();
        struct pc_diag diag = {0};
        struct authd_decision d;
        struct authd_session s;
        struct authd_identity bearer;

        assert_int_equal(authd_pages_set(p, AUTHD_PAGE_FORBIDDEN, tpl, strlen(tpl), &diag), 0);
        row_pages = p;
        run_row(&rows[row_index("subdomain not allowed")], &d, &s, &bearer);
        assert_string_equal(d.body, "<p>no: o@sub.example.com on app.example.com (rid4567890)</p>");
        authd_decision_release(&d);
        run_row(&rows[row_index("unknown host")], &d, &s, &bearer);
        assert_non_null(strstr(d.body, "Unknown site"));
        authd_decision_release(&d);
        row_pages = NULL;
        authd_pages_put(p);
    }
    row_request_id = NULL;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_original_url), cmocka_unit_test(test_claim_sanitized),
        cmocka_unit_test(test_helpers),      cmocka_unit_test(test_groups_encoded),
        cmocka_unit_test(test_pages),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
