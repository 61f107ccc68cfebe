/*
 * config.c - authd's configuration (docs/design.md §5): YAML tree in, struct authd_config out,
 * every problem reported as "file:line:col: message" naming the field and the fix.
 */
#include "authd.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "portcullis/cookiescope.h"
#include "portcullis/http.h"
#include "portcullis/yaml.h"

#define MAX_CONFIG (16 * 1024 * 1024)
#define MAX_SECRET_FILE (64 * 1024)
#define MAX_HOSTS_PER_ENTRY 64
#define MAX_NAME 253

/* Parsing context: where diagnostics go, how secrets are read. */
struct ctx {
    struct pc_diag *diag;
    const struct authd_config_opts *opts;
    struct authd_config *cfg;
};

/* "where" labels like hosts[2].oidc.issuerURL */
struct where {
    char s[160];
};

static const char *
at(struct where *w, const char *parent, const char *key)
{
    /* Labels only name fields in diagnostics: truncating a long one is harmless. */
    if (snprintf(w->s, sizeof(w->s), "%s%s%s", parent, parent[0] ? "." : "", key) < 0)
        w->s[0] = '\0';
    return w->s;
}

static const char *
at_index(struct where *w, const char *parent, size_t i)
{
    if (snprintf(w->s, sizeof(w->s), "%s[%zu]", parent, i) < 0)
        w->s[0] = '\0';
    return w->s;
}

static int fail(struct ctx *c, const struct pc_ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct ctx *c, const struct pc_ynode *n, const char *fmt, ...)
{
    char msg[sizeof(c->diag->msg)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pc_diag_set(c->diag, n ? n->line : 0, n ? n->col : 0, "%s", msg);
    return PC_EINVAL;
}

/* ---- string lists ---- */

/*
 * The defaults every entry shares until it sets its own (at 10,000 entries a copy each cost
 * megabytes): fields point at these, which are never freed or written. free_str and the
 * list functions below know them.
 */
static char def_groups[] = "groups", def_email[] = "email", def_username[] = "preferred_username",
            def_callback[] = "/oauth2/callback", def_sign_out[] = "/oauth2/sign_out",
            def_cookie[] = "_portcullis";
static char def_openid[] = "openid", def_profile[] = "profile";
static char *def_scopes[] = {def_openid, def_email, def_profile};
static char def_h_user[] = "X-Auth-Request-User", def_h_email[] = "X-Auth-Request-Email",
            def_h_username[] = "X-Auth-Request-Preferred-Username",
            def_h_groups[] = "X-Auth-Request-Groups", def_c_sub[] = "sub";
static struct authd_upstream_header def_upstream[] = {{def_h_user, def_c_sub},
                                                      {def_h_email, def_email},
                                                      {def_h_username, def_username},
                                                      {def_h_groups, def_groups}};

static bool
is_default_str(const char *s)
{
    return s == def_groups || s == def_email || s == def_username || s == def_callback ||
           s == def_sign_out || s == def_cookie;
}

static void
free_str(char *s)
{
    if (!is_default_str(s))
        free(s);
}

void
authd_strlist_release(struct authd_strlist *l)
{
    if (l == NULL)
        return;
    if (l->v != def_scopes) {
        for (size_t i = 0; i < l->n; i++)
            free(l->v[i]);
        free(l->v);
    }
    l->v = NULL;
    l->n = 0;
}

void
authd_strlist_add(struct authd_strlist *l, const char *s)
{
    if (l->v == def_scopes) { /* the shared default: copy before changing it */
        struct authd_strlist own = {0};

        for (size_t i = 0; i < l->n; i++)
            authd_strlist_add(&own, l->v[i]);
        *l = own;
    }
    l->v = pc_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = pc_xstrdup(s);
}

bool
authd_strlist_contains(const struct authd_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return true;
    return false;
}

/* ---- scalars ---- */

static bool
is_null(const struct pc_ynode *n)
{
    if (n->type != PC_YNODE_SCALAR || !n->plain)
        return false;
    return n->len == 0 || strcmp(n->value, "null") == 0 || strcmp(n->value, "~") == 0;
}

/* Checks that every key of map n is in allowed (NULL-terminated), and that none repeats. */
static int
check_keys(struct ctx *c, const struct pc_ynode *n, const char *where, const char *const *allowed)
{
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->keys[i]->value;
        size_t j;

        for (j = 0; allowed[j] != NULL; j++)
            if (strcmp(k, allowed[j]) == 0)
                break;
        if (allowed[j] == NULL)
            return fail(c, n->keys[i],
                        "%s: unknown key \"%s\" (check the spelling; keys are "
                        "case-sensitive camelCase, listed under \"Running authd\" in README.md)",
                        where[0] ? where : "top level", k);
        for (j = 0; j < i; j++)
            if (strcmp(k, n->keys[j]->value) == 0)
                return fail(c, n->keys[i], "%s: duplicate key \"%s\" (remove one)",
                            where[0] ? where : "top level", k);
    }
    return 0;
}

static int
want_type(struct ctx *c, const struct pc_ynode *n, enum pc_ynode_type t, const char *where)
{
    static const char *names[] = {"a scalar", "a map", "a sequence"};

    if (n->type == t)
        return 0;
    return fail(c, n, "%s: expected %s, found a %s", where, names[t], pc_ynode_type_name(n));
}

/* A string field: *out new, or NULL when the key is absent or null. */
static int
get_str(struct ctx *c, const struct pc_ynode *map, const char *key, const char *parent, char **out)
{
    const struct pc_ynode *n = pc_ynode_get(map, key);
    struct where w;
    int rc;

    if (n == NULL || is_null(n))
        return 0;
    if ((rc = want_type(c, n, PC_YNODE_SCALAR, at(&w, parent, key))) != 0)
        return rc;
    if (strlen(n->value) != n->len)
        return fail(c, n, "%s: NUL byte in value", w.s);
    free_str(*out);
    *out = pc_xstrdup(n->value);
    return 0;
}

static int
get_required_str(struct ctx *c, const struct pc_ynode *map, const char *key, const char *parent,
                 char **out)
{
    struct where w;
    int rc = get_str(c, map, key, parent, out);

    if (rc == 0 && (*out == NULL || (*out)[0] == '\0'))
        return fail(c, map, "%s: required (add %s: <value>)", at(&w, parent, key), key);
    return rc;
}

static int
get_bool(struct ctx *c, const struct pc_ynode *map, const char *key, const char *parent, bool *out)
{
    const struct pc_ynode *n = pc_ynode_get(map, key);
    struct where w;

    if (n == NULL || is_null(n))
        return 0;
    at(&w, parent, key);
    if (n->type == PC_YNODE_SCALAR && n->plain && strcmp(n->value, "true") == 0)
        *out = true;
    else if (n->type == PC_YNODE_SCALAR && n->plain && strcmp(n->value, "false") == 0)
        *out = false;
    else
        return fail(c, n, "%s: expected true or false", w.s);
    return 0;
}

int
authd_parse_duration(const char *s, int64_t *out)
{
    int64_t total = 0;
    const char *p = s;

    if (s == NULL || *s == '\0')
        return PC_EPARSE;
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return 0;
    }
    while (*p != '\0') {
        int64_t v = 0, mult;

        if (!isdigit((unsigned char)*p))
            return PC_EPARSE;
        while (isdigit((unsigned char)*p)) {
            if (v > 100000000)
                return PC_EPARSE;
            v = v * 10 + (*p++ - '0');
        }
        if (*p == 'h')
            mult = 3600;
        else if (*p == 'm')
            mult = 60;
        else if (*p == 's')
            mult = 1;
        else
            return PC_EPARSE;
        p++;
        total += v * mult;
    }
    *out = total;
    return 0;
}

static int
get_duration(struct ctx *c, const struct pc_ynode *map, const char *key, const char *parent,
             int64_t *out)
{
    const struct pc_ynode *n = pc_ynode_get(map, key);
    struct where w;

    if (n == NULL || is_null(n))
        return 0;
    at(&w, parent, key);
    if (n->type != PC_YNODE_SCALAR || authd_parse_duration(n->value, out) != 0)
        return fail(c, n, "%s: expected a duration like 12h, 30m, 90s or 0s", w.s);
    return 0;
}

/* A sequence of strings appended to *out (which keeps defaults when the key is absent). */
static int
get_strlist(struct ctx *c, const struct pc_ynode *map, const char *key, const char *parent,
            struct authd_strlist *out)
{
    const struct pc_ynode *n = pc_ynode_get(map, key);
    struct where w, wi;
    int rc;

    if (n == NULL || is_null(n))
        return 0;
    at(&w, parent, key);
    if ((rc = want_type(c, n, PC_YNODE_SEQ, w.s)) != 0)
        return rc;
    authd_strlist_release(out);
    for (size_t i = 0; i < n->n; i++) {
        const struct pc_ynode *e = n->vals[i];

        if (e->type != PC_YNODE_SCALAR || is_null(e) || strlen(e->value) != e->len)
            return fail(c, e, "%s: expected a non-empty string", at_index(&wi, w.s, i));
        authd_strlist_add(out, e->value);
    }
    return 0;
}

/* ---- value checks ---- */

static bool
is_dns_name(const char *s, bool wildcard_ok)
{
    size_t len = strlen(s), label = 0;

    if (wildcard_ok && strncmp(s, "*.", 2) == 0) {
        s += 2;
        len -= 2;
    }
    if (len == 0 || len > MAX_NAME)
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '.') {
            if (label == 0 || p[-1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-'))
            return false;
        if (label == 0 && *p == '-')
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && s[len - 1] != '-';
}

static bool
is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return false;
    return true;
}

static bool
is_cookie_name(const char *s)
{
    if (*s == '\0' || strlen(s) > 64)
        return false;
    for (; *s != '\0'; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

static bool
is_path(const char *s)
{
    if (s[0] != '/')
        return false;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '\\' || *s == '#')
            return false;
    return true;
}

/* https://host[:port][/path], http only when allowed; no userinfo, query or fragment. */
static const char *
check_issuer(const char *url, bool allow_http)
{
    const char *host;
    size_t hostlen;

    if (strncmp(url, "https://", 8) == 0)
        host = url + 8;
    else if (strncmp(url, "http://", 7) == 0 && allow_http)
        host = url + 7;
    else if (strncmp(url, "http://", 7) == 0)
        return "must be an https URL (set allowInsecureIssuers: true at the top level "
               "for test issuers)";
    else
        return "must be an absolute https URL like https://idp.example.com/realms/main";
    hostlen = strcspn(host, "/");
    if (hostlen == 0 || host[0] == ':')
        return "has no host";
    for (const char *p = url; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '\\')
            return "contains whitespace, a backslash or a control character";
    if (memchr(host, '@', hostlen) != NULL)
        return "must not contain userinfo (\"user@\")";
    if (strpbrk(url, "?#") != NULL)
        return "must not contain a query or fragment";
    return NULL;
}

static bool
is_listen(const char *s)
{
    const char *colon = strrchr(s, ':');
    char *end = NULL;
    long port;

    if (colon == NULL || colon == s || colon[1] == '\0')
        return false;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && port > 0 && port <= 65535;
}

static void
lowercase(char *s)
{
    for (; *s != '\0'; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* ---- hosts[] entry sections ---- */

static int
parse_host_names(struct ctx *c, const struct pc_ynode *e, const char *where, struct authd_host *h)
{
    const struct pc_ynode *n = pc_ynode_get(e, "hosts");
    struct where w, wi;
    int rc;

    at(&w, where, "hosts");
    if (n == NULL || is_null(n))
        return fail(c, e, "%s: required (add hosts: [app.example.com])", w.s);
    if ((rc = get_strlist(c, e, "hosts", where, &h->hosts)) != 0)
        return rc;
    if (h->hosts.n == 0 || h->hosts.n > MAX_HOSTS_PER_ENTRY)
        return fail(c, n, "%s: needs 1 to %d host names", w.s, MAX_HOSTS_PER_ENTRY);
    for (size_t i = 0; i < h->hosts.n; i++) {
        if (!is_dns_name(h->hosts.v[i], true))
            return fail(c, n->vals[i],
                        "%s: \"%s\" is not a lowercase DNS name (optionally "
                        "with a leading \"*.\"; no port)",
                        at_index(&wi, w.s, i), h->hosts.v[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(h->hosts.v[i], h->hosts.v[j]) == 0)
                return fail(c, n->vals[i], "%s: \"%s\" is listed twice (remove one)",
                            at_index(&wi, w.s, i), h->hosts.v[i]);
    }
    return 0;
}

static int
parse_claims(struct ctx *c, const struct pc_ynode *oidc, const char *where, struct authd_host *h)
{
    static const char *const keys[] = {"groups", "email", "username", NULL};
    const struct pc_ynode *n = pc_ynode_get(oidc, "claims");
    struct where w;
    int rc;

    if (n == NULL || is_null(n))
        return 0;
    at(&w, where, "claims");
    if ((rc = want_type(c, n, PC_YNODE_MAP, w.s)) != 0 || (rc = check_keys(c, n, w.s, keys)) != 0)
        return rc;
    if ((rc = get_str(c, n, "groups", w.s, &h->oidc.claim_groups)) != 0 ||
        (rc = get_str(c, n, "email", w.s, &h->oidc.claim_email)) != 0 ||
        (rc = get_str(c, n, "username", w.s, &h->oidc.claim_username)) != 0)
        return rc;
    return 0;
}

/* "openid" first, then the rest in order without duplicates. */
static void
normalize_scopes(struct authd_host *h)
{
    struct authd_strlist out = {0};

    if (h->oidc.scopes.v == def_scopes)
        return;
    authd_strlist_add(&out, "openid");
    for (size_t i = 0; i < h->oidc.scopes.n; i++)
        if (!authd_strlist_contains(&out, h->oidc.scopes.v[i]))
            authd_strlist_add(&out, h->oidc.scopes.v[i]);
    authd_strlist_release(&h->oidc.scopes);
    h->oidc.scopes = out;
}

static int
check_path_field(struct ctx *c, const struct pc_ynode *map, const char *key, const char *where,
                 const char *value)
{
    struct where w;

    if (is_path(value))
        return 0;
    return fail(c, pc_ynode_get(map, key),
                "%s: \"%s\" must be a path starting with \"/\" "
                "without spaces, backslashes or \"#\"",
                at(&w, where, key), value);
}

/* allowedURLPrefixes: URLs as issuerURL is one (scheme, host, no query or userinfo). */
static int
check_prefixes(struct ctx *c, const struct pc_ynode *oidc, const char *where,
               const struct authd_strlist *l)
{
    const struct pc_ynode *n = pc_ynode_get(oidc, "allowedURLPrefixes");
    struct where w, wi;
    const char *why;

    at(&w, where, "allowedURLPrefixes");
    for (size_t i = 0; i < l->n; i++)
        if ((why = check_issuer(l->v[i], c->cfg->allow_insecure_issuers)) != NULL)
            return fail(c, n->vals[i], "%s: \"%s\" %s", at_index(&wi, w.s, i), l->v[i], why);
    return 0;
}

bool
authd_url_allowed(const struct authd_strlist *lists, size_t n, const char *url)
{
    for (size_t i = 0; i < n; i++) {
        bool within = lists[i].n == 0;

        for (size_t j = 0; j < lists[i].n && !within; j++)
            within = pc_url_within(url, lists[i].v[j]);
        if (!within)
            return false;
    }
    return true;
}

static int
parse_oidc(struct ctx *c, const struct pc_ynode *e, const char *where, struct authd_host *h)
{
    static const char *const keys[] = {
        "issuerURL", "clientID",     "clientSecret", "clientSecretRef",    "scopes",
        "claims",    "callbackPath", "signOutPath",  "allowedURLPrefixes", NULL};
    const struct pc_ynode *n = pc_ynode_get(e, "oidc");
    const char *why;
    struct where w, wk;
    int rc;

    at(&w, where, "oidc");
    if (n == NULL || is_null(n))
        return fail(c, e, "%s: required (add oidc: {issuerURL: ..., clientID: ...})", w.s);
    if ((rc = want_type(c, n, PC_YNODE_MAP, w.s)) != 0 || (rc = check_keys(c, n, w.s, keys)) != 0)
        return rc;
    if ((rc = get_required_str(c, n, "issuerURL", w.s, &h->oidc.issuer_url)) != 0 ||
        (rc = get_required_str(c, n, "clientID", w.s, &h->oidc.client_id)) != 0 ||
        (rc = get_str(c, n, "clientSecret", w.s, &h->oidc.client_secret)) != 0 ||
        (rc = get_strlist(c, n, "scopes", w.s, &h->oidc.scopes)) != 0 ||
        (rc = parse_claims(c, n, w.s, h)) != 0 ||
        (rc = get_str(c, n, "callbackPath", w.s, &h->oidc.callback_path)) != 0 ||
        (rc = get_str(c, n, "signOutPath", w.s, &h->oidc.sign_out_path)) != 0 ||
        (rc = get_strlist(c, n, "allowedURLPrefixes", w.s, &h->oidc.url_prefixes)) != 0 ||
        (rc = check_prefixes(c, n, w.s, &h->oidc.url_prefixes)) != 0)
        return rc;
    if (h->oidc.client_secret != NULL && strncmp(h->oidc.client_secret, "<secret:", 8) == 0)
        return fail(c, pc_ynode_get(n, "clientSecret"),
                    "%s.clientSecret: an unresolved render placeholder; render with "
                    "--secret-file NS/NAME/KEY=PATH or let the controller write this config",
                    w.s);
    why = check_issuer(h->oidc.issuer_url, c->cfg->allow_insecure_issuers);
    if (why != NULL)
        return fail(c, pc_ynode_get(n, "issuerURL"), "%s: \"%s\" %s", at(&wk, w.s, "issuerURL"),
                    h->oidc.issuer_url, why);
    normalize_scopes(h);
    if ((rc = check_path_field(c, n, "callbackPath", w.s, h->oidc.callback_path)) != 0 ||
        (rc = check_path_field(c, n, "signOutPath", w.s, h->oidc.sign_out_path)) != 0)
        return rc;
    if (strcmp(h->oidc.callback_path, h->oidc.sign_out_path) == 0)
        return fail(c, n, "%s: callbackPath and signOutPath must differ", w.s);
    return 0;
}

static int
lower_list(struct ctx *c, const struct pc_ynode *map, const char *key, const char *where,
           struct authd_strlist *l, bool strip_at)
{
    int rc = get_strlist(c, map, key, where, l);

    for (size_t i = 0; rc == 0 && i < l->n; i++) {
        char *s = l->v[i];

        if (strip_at && s[0] == '@')
            memmove(s, s + 1, strlen(s));
        lowercase(s);
    }
    return rc;
}

static int
parse_access(struct ctx *c, const struct pc_ynode *e, const char *where, struct authd_host *h)
{
    static const char *const keys[] = {"allowedGroups", "allowedEmailDomains", "allowedEmails",
                                       "allowUnverifiedEmail", NULL};
    const struct pc_ynode *n = pc_ynode_get(e, "access");
    struct where w;
    int rc;

    if (n == NULL || is_null(n))
        return 0;
    at(&w, where, "access");
    if ((rc = want_type(c, n, PC_YNODE_MAP, w.s)) != 0 || (rc = check_keys(c, n, w.s, keys)) != 0)
        return rc;
    if ((rc = get_strlist(c, n, "allowedGroups", w.s, &h->access.groups)) != 0 ||
        (rc = lower_list(c, n, "allowedEmailDomains", w.s, &h->access.email_domains, true)) ||
        (rc = lower_list(c, n, "allowedEmails", w.s, &h->access.emails, false)) != 0 ||
        (rc = get_bool(c, n, "allowUnverifiedEmail", w.s, &h->access.allow_unverified_email)) != 0)
        return rc;
    return 0;
}

static int
check_path_list(struct ctx *c, const struct pc_ynode *map, const char *key, const char *where,
                const struct authd_strlist *l)
{
    const struct pc_ynode *n = pc_ynode_get(map, key);
    struct where w, wi;

    at(&w, where, key);
    for (size_t i = 0; i < l->n; i++)
        if (!is_path(l->v[i]))
            return fail(c, n->vals[i],
                        "%s: \"%s\" must be a path starting with \"/\" (exact, or "
                        "a prefix when it ends with \"/\" or \"*\")",
                        at_index(&wi, w.s, i), l->v[i]);
    return 0;
}

static int
parse_paths(struct ctx *c, const struct pc_ynode *e, const char *where, struct authd_host *h)
{
    static const char *const keys[] = {"skip", "api", NULL};
    const struct pc_ynode *n = pc_ynode_get(e, "paths");
    struct authd_strlist one = {0};
    struct where w;
    bool hit;
    int rc;

    if (n == NULL || is_null(n))
        return 0;
    at(&w, where, "paths");
    if ((rc = want_type(c, n, PC_YNODE_MAP, w.s)) != 0 || (rc = check_keys(c, n, w.s, keys)) != 0)
        return rc;
    if ((rc = get_strlist(c, n, "skip", w.s, &h->paths.skip)) != 0 ||
        (rc = get_strlist(c, n, "api", w.s, &h->paths.api)) != 0 ||
        (rc = check_path_list(c, n, "skip", w.s, &h->paths.skip)) != 0 ||
        (rc = check_path_list(c, n, "api", w.s, &h->paths.api)) != 0)
        return rc;
    for (size_t i = 0; i < h->paths.skip.n; i++) {
        one.v = &h->paths.skip.v[i];
        one.n = 1;
        hit = authd_path_matches(&one, h->oidc.callback_path) ||
              authd_path_matches(&one, h->oidc.sign_out_path);
        if (hit)
            return fail(c, pc_ynode_get(n, "skip")->vals[i],
                        "%s.skip[%zu]: \"%s\" covers the "
                        "callback or sign-out path, which must stay reachable; narrow it",
                        w.s, i, h->paths.skip.v[i]);
    }
    return 0;
}

static int
parse_same_site(struct ctx *c, const struct pc_ynode *n, const char *where, struct authd_host *h)
{
    const struct pc_ynode *v = pc_ynode_get(n, "sameSite");
    struct where w;

    if (v == NULL || is_null(v))
        return 0;
    at(&w, where, "sameSite");
    if (v->type == PC_YNODE_SCALAR && strcmp(v->value, "Lax") == 0)
        h->session.same_site = AUTHD_SAMESITE_LAX;
    else if (v->type == PC_YNODE_SCALAR && strcmp(v->value, "Strict") == 0)
        h->session.same_site = AUTHD_SAMESITE_STRICT;
    else if (v->type == PC_YNODE_SCALAR && strcmp(v->value, "None") == 0)
        h->session.same_site = AUTHD_SAMESITE_NONE;
    else
        return fail(c, v, "%s: expected one of Lax, Strict, None", w.s);
    return 0;
}

static int
parse_store(struct ctx *c, const struct pc_ynode *n, const char *where, struct authd_host *h)
{
    const struct pc_ynode *v = pc_ynode_get(n, "store");
    struct where w;

    if (v == NULL || is_null(v))
        return 0;
    if (v->type == PC_YNODE_SCALAR && strcmp(v->value, "cookie") == 0)
        h->session.store = AUTHD_STORE_COOKIE;
    else if (v->type == PC_YNODE_SCALAR && strcmp(v->value, "redis") == 0)
        h->session.store = AUTHD_STORE_REDIS;
    else
        return fail(c, v, "%s: expected cookie or redis", at(&w, where, "store"));
    return 0;
}

static int
check_session(struct ctx *c, const struct pc_ynode *n, const char *where, struct authd_host *h)
{
    struct where w;
    const char *d = h->session.cookie_domain;

    if (!is_cookie_name(h->session.cookie_name))
        return fail(c, pc_ynode_get(n, "cookieName"),
                    "%s: \"%s\" is not a valid cookie name "
                    "(letters, digits, \"_\", \"-\", \".\"; at most 64)",
                    at(&w, where, "cookieName"), h->session.cookie_name);
    if (d != NULL && d[0] == '\0') {
        free(h->session.cookie_domain);
        h->session.cookie_domain = NULL;
    } else if (d != NULL && !is_dns_name(d[0] == '.' ? d + 1 : d, false)) {
        return fail(c, pc_ynode_get(n, "cookieDomain"),
                    "%s: \"%s\" is not a lowercase domain "
                    "like .example.com",
                    at(&w, where, "cookieDomain"), d);
    }
    if (h->session.lifetime <= 0)
        return fail(c, pc_ynode_get(n, "lifetime"), "%s: must be longer than 0s",
                    at(&w, where, "lifetime"));
    return 0;
}

static int
parse_session(struct ctx *c, const struct pc_ynode *e, const char *where, struct authd_host *h)
{
    static const char *const keys[] = {"cookieName", "cookieDomain", "lifetime", "refresh",
                                       "sameSite",   "store",        NULL};
    const struct pc_ynode *n = pc_ynode_get(e, "session");
    struct where w;
    int rc;

    if (n == NULL || is_null(n))
        return 0;
    at(&w, where, "session");
    if ((rc = want_type(c, n, PC_YNODE_MAP, w.s)) != 0 || (rc = check_keys(c, n, w.s, keys)) != 0)
        return rc;
    if ((rc = get_str(c, n, "cookieName", w.s, &h->session.cookie_name)) != 0 ||
        (rc = get_str(c, n, "cookieDomain", w.s, &h->session.cookie_domain)) != 0 ||
        (rc = get_duration(c, n, "lifetime", w.s, &h->session.lifetime)) != 0 ||
        (rc = get_duration(c, n, "refresh", w.s, &h->session.refresh)) != 0 ||
        (rc = parse_same_site(c, n, w.s, h)) != 0 || (rc = parse_store(c, n, w.s, h)) != 0)
        return rc;
    if (h->session.cookie_domain != NULL)
        lowercase(h->session.cookie_domain);
    return check_session(c, n, w.s, h);
}

static void
upstream_add(struct authd_host *h, const char *name, const char *claim)
{
    if (h->upstream_headers == def_upstream) /* never mixed: the default is the whole list */
        h->upstream_headers = NULL, h->nupstream_headers = 0;
    h->upstream_headers =
        pc_xrealloc(h->upstream_headers, (h->nupstream_headers + 1) * sizeof(*h->upstream_headers));
    h->upstream_headers[h->nupstream_headers].name = pc_xstrdup(name);
    h->upstream_headers[h->nupstream_headers].claim = pc_xstrdup(claim);
    h->nupstream_headers++;
}

static void
upstream_release(struct authd_host *h)
{
    for (size_t i = 0; h->upstream_headers != def_upstream && i < h->nupstream_headers; i++) {
        free(h->upstream_headers[i].name);
        free(h->upstream_headers[i].claim);
    }
    if (h->upstream_headers != def_upstream)
        free(h->upstream_headers);
    h->upstream_headers = NULL;
    h->nupstream_headers = 0;
}

static int
parse_upstream_entry(struct ctx *c, const struct pc_ynode *e, const char *where,
                     struct authd_host *h)
{
    static const char *const keys[] = {"name", "claim", NULL};
    char *name = NULL, *claim = NULL;
    int rc;

    if ((rc = want_type(c, e, PC_YNODE_MAP, where)) != 0 || (rc = check_keys(c, e, where, keys)) ||
        (rc = get_required_str(c, e, "name", where, &name)) != 0 ||
        (rc = get_required_str(c, e, "claim", where, &claim)) != 0)
        goto out;
    if (!is_token(name)) {
        rc = fail(c, pc_ynode_get(e, "name"), "%s.name: \"%s\" is not a valid header name", where,
                  name);
        goto out;
    }
    for (size_t i = 0; i < h->nupstream_headers; i++)
        if (strcasecmp(h->upstream_headers[i].name, name) == 0) {
            rc = fail(c, e, "%s.name: header \"%s\" is listed twice (remove one)", where, name);
            goto out;
        }
    upstream_add(h, name, claim);
out:
    free(name);
    free(claim);
    return rc;
}

static int
parse_upstream(struct ctx *c, const struct pc_ynode *e, const char *where, struct authd_host *h)
{
    const struct pc_ynode *n = pc_ynode_get(e, "upstreamHeaders");
    struct where w, wi;
    int rc;

    if (n == NULL || is_null(n)) {
        h->upstream_headers = def_upstream;
        h->nupstream_headers = sizeof(def_upstream) / sizeof(def_upstream[0]);
        return 0;
    }
    at(&w, where, "upstreamHeaders");
    if ((rc = want_type(c, n, PC_YNODE_SEQ, w.s)) != 0)
        return rc;
    for (size_t i = 0; i < n->n; i++)
        if ((rc = parse_upstream_entry(c, n->vals[i], at_index(&wi, w.s, i), h)) != 0)
            return rc;
    return 0;
}

static int
parse_bearer(struct ctx *c, const struct pc_ynode *e, const char *where, struct authd_host *h)
{
    static const char *const keys[] = {"enabled", "audiences", NULL};
    const struct pc_ynode *n = pc_ynode_get(e, "bearerTokens");
    struct where w;
    int rc;

    if (n == NULL || is_null(n))
        return 0;
    at(&w, where, "bearerTokens");
    if ((rc = want_type(c, n, PC_YNODE_MAP, w.s)) != 0 || (rc = check_keys(c, n, w.s, keys)) != 0)
        return rc;
    if ((rc = get_bool(c, n, "enabled", w.s, &h->bearer.enabled)) != 0 ||
        (rc = get_strlist(c, n, "audiences", w.s, &h->bearer.audiences)) != 0)
        return rc;
    return 0;
}

static int
parse_mode(struct ctx *c, const struct pc_ynode *e, const char *where, struct authd_host *h)
{
    const struct pc_ynode *v = pc_ynode_get(e, "mode");
    struct where w;

    if (v == NULL || is_null(v))
        return 0;
    at(&w, where, "mode");
    if (v->type == PC_YNODE_SCALAR && strcmp(v->value, "Enforce") == 0)
        h->mode = AUTHD_MODE_ENFORCE;
    else if (v->type == PC_YNODE_SCALAR && strcmp(v->value, "ReportOnly") == 0)
        h->mode = AUTHD_MODE_REPORT_ONLY;
    else
        return fail(c, v, "%s: expected Enforce or ReportOnly", w.s);
    return 0;
}

static void
host_defaults(struct authd_host *h)
{
    h->oidc.scopes.v = def_scopes;
    h->oidc.scopes.n = sizeof(def_scopes) / sizeof(def_scopes[0]);
    h->oidc.claim_groups = def_groups;
    h->oidc.claim_email = def_email;
    h->oidc.claim_username = def_username;
    h->oidc.callback_path = def_callback;
    h->oidc.sign_out_path = def_sign_out;
    h->session.cookie_name = def_cookie;
    h->session.lifetime = 12 * 3600;
    h->session.same_site = AUTHD_SAMESITE_LAX;
    h->mode = AUTHD_MODE_ENFORCE;
}

static void
host_release(struct authd_host *h)
{
    free(h->id);
    authd_strlist_release(&h->hosts);
    free(h->oidc.issuer_url);
    free(h->oidc.client_id);
    pc_free_secret(h->oidc.client_secret);
    authd_strlist_release(&h->oidc.scopes);
    free_str(h->oidc.claim_groups);
    free_str(h->oidc.claim_email);
    free_str(h->oidc.claim_username);
    free_str(h->oidc.callback_path);
    free_str(h->oidc.sign_out_path);
    authd_strlist_release(&h->oidc.url_prefixes);
    authd_strlist_release(&h->access.groups);
    authd_strlist_release(&h->access.email_domains);
    authd_strlist_release(&h->access.emails);
    authd_strlist_release(&h->paths.skip);
    authd_strlist_release(&h->paths.api);
    free_str(h->session.cookie_name);
    free(h->session.cookie_domain);
    upstream_release(h);
    authd_strlist_release(&h->bearer.audiences);
}

static int
parse_host(struct ctx *c, const struct pc_ynode *e, const char *where, struct authd_host *h)
{
    static const char *const keys[] = {"id",          "hosts",        "gateway", "oidc",
                                       "access",      "paths",        "session", "upstreamHeaders",
                                       "passIDToken", "bearerTokens", "mode",    NULL};
    int rc;

    host_defaults(h);
    if ((rc = want_type(c, e, PC_YNODE_MAP, where)) != 0 || (rc = check_keys(c, e, where, keys)))
        return rc;
    if ((rc = get_required_str(c, e, "id", where, &h->id)) != 0 ||
        (rc = parse_host_names(c, e, where, h)) != 0 || (rc = parse_oidc(c, e, where, h)) != 0 ||
        (rc = parse_access(c, e, where, h)) != 0 || (rc = parse_paths(c, e, where, h)) != 0 ||
        (rc = parse_session(c, e, where, h)) != 0 || (rc = parse_upstream(c, e, where, h)) != 0 ||
        (rc = get_bool(c, e, "passIDToken", where, &h->pass_id_token)) != 0 ||
        (rc = parse_bearer(c, e, where, h)) != 0 || (rc = parse_mode(c, e, where, h)) != 0)
        return rc;
    return 0;
}

/*
 * A host name or id that appears in two entries is refused: the policy would be ambiguous.
 * ids and names (objects: value -> entry index) hold what the entries before i claimed.
 */
static int
check_unique(struct ctx *c, const struct pc_ynode *seq, size_t i, json_t *ids, json_t *names)
{
    const struct authd_host *h = c->cfg->hosts[i];
    const struct pc_ynode *e = seq->vals[i];
    const json_t *j;

    if ((j = json_object_get(ids, h->id)) != NULL)
        return fail(c, pc_ynode_get(e, "id"),
                    "hosts[%zu].id: \"%s\" is already used by "
                    "hosts[%zu] (ids must be unique)",
                    i, h->id, (size_t)json_integer_value(j));
    for (size_t k = 0; k < h->hosts.n; k++)
        if ((j = json_object_get(names, h->hosts.v[k])) != NULL)
            return fail(c, pc_ynode_get(e, "hosts")->vals[k],
                        "hosts[%zu].hosts[%zu]: \"%s\" "
                        "is already protected by hosts[%zu] (id %s); a host may appear in one "
                        "entry only",
                        i, k, h->hosts.v[k], (size_t)json_integer_value(j),
                        c->cfg->hosts[json_integer_value(j)]->id);
    json_object_set_new(ids, h->id, json_integer((json_int_t)i));
    for (size_t k = 0; k < h->hosts.n; k++)
        if (json_object_get(names, h->hosts.v[k]) == NULL)
            json_object_set_new(names, h->hosts.v[k], json_integer((json_int_t)i));
    return 0;
}

int
authd_host_cookie_claim(struct pc_cookie_scopes *s, const struct authd_host *h, const char *label,
                        char **why)
{
    char *binding = pc_xasprintf("%s\n%s", h->oidc.issuer_url, h->oidc.client_id);
    struct pc_cookie_owner o = {.id = label,
                                .name = h->session.cookie_name,
                                .binding = binding,
                                .domain = h->session.cookie_domain,
                                .hosts = (const char *const *)h->hosts.v,
                                .nhosts = h->hosts.n};
    int rc = pc_cookie_scopes_add(s, &o, why);

    free(binding);
    return rc;
}

/*
 * Two entries whose cookies of one name reach the same host while they cannot read each
 * other's sessions (another issuer or client) are refused: the browser would send both.
 */
static int
check_cookie_scope(struct ctx *c, const struct pc_ynode *e, size_t i, struct pc_cookie_scopes *s)
{
    const struct authd_host *h = c->cfg->hosts[i];
    char *id = pc_xasprintf("hosts[%zu] (id %s)", i, h->id), *why = NULL;
    const struct pc_ynode *session = pc_ynode_get(e, "session");
    int rc = 0;

    if (authd_host_cookie_claim(s, h, id, &why) != 0)
        rc = fail(c, session ? session : e,
                  "hosts[%zu].session: %s, which has another issuer or client; give one of "
                  "them another session.cookieName",
                  i, why);
    free(why);
    free(id);
    return rc;
}

static int
parse_hosts(struct ctx *c, const struct pc_ynode *root)
{
    const struct pc_ynode *n = pc_ynode_get(root, "hosts");
    struct pc_cookie_scopes *scopes = NULL;
    json_t *ids = NULL, *names = NULL;
    struct where wi;
    int rc = 0;

    if (c->opts->head_only && (n == NULL || is_null(n)))
        return 0;
    if (n == NULL || is_null(n))
        return fail(c, root, "hosts: required (add at least one hosts entry)");
    if ((rc = want_type(c, n, PC_YNODE_SEQ, "hosts")) != 0)
        return rc;
    if (c->opts->head_only && n->n > 0)
        return fail(c, n,
                    "hosts: must be empty with --watch-config (the hosts come from the "
                    "config Secrets portcullis-authd-config-<xx>)");
    /* An empty list is valid: the controller writes one before any ProtectedHost exists,
     * and authd then answers every check with "unknown host". */
    c->cfg->store = pc_xcalloc(n->n ? n->n : 1, sizeof(*c->cfg->store));
    c->cfg->hosts = pc_xcalloc(n->n ? n->n : 1, sizeof(*c->cfg->hosts));
    for (size_t i = 0; i < n->n; i++)
        c->cfg->hosts[i] = &c->cfg->store[i];
    scopes = pc_cookie_scopes_new();
    ids = json_object();
    names = json_object();
    for (size_t i = 0; i < n->n && rc == 0; i++) {
        c->cfg->nhosts = i + 1;
        if ((rc = parse_host(c, n->vals[i], at_index(&wi, "hosts", i), c->cfg->hosts[i])) == 0 &&
            (rc = check_unique(c, n, i, ids, names)) == 0)
            rc = check_cookie_scope(c, n->vals[i], i, scopes);
    }
    json_decref(ids);
    json_decref(names);
    pc_cookie_scopes_free(scopes);
    return rc;
}

/* ---- cookie secrets ---- */

static int
read_disk(void *ud, const char *path, char **data, size_t *len)
{
    struct stat st;
    ssize_t r;
    size_t got = 0;
    char *buf;
    int fd, rc = 0;

    (void)ud;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_SECRET_FILE) {
        rc = fstat(fd, &st) != 0 ? -errno : S_ISREG(st.st_mode) ? PC_ETOOBIG : -EINVAL;
        close(fd);
        return rc;
    }
    buf = pc_xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size && (r = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
        got += (size_t)r;
    if (got != (size_t)st.st_size)
        rc = PC_EIO;
    close(fd);
    if (rc != 0) {
        pc_cleanse(buf, (size_t)st.st_size);
        free(buf);
        return rc;
    }
    buf[got] = '\0';
    *data = buf;
    *len = got;
    return 0;
}

static const char *
code_text(int rc)
{
    return rc < 0 && rc > -4096 ? strerror(-rc) : pc_strerror(rc);
}

static int
load_secrets(struct ctx *c, const struct pc_ynode *list)
{
    authd_read_file_fn rd = c->opts->read_file ? c->opts->read_file : read_disk;
    const struct authd_strlist *files = &c->cfg->secret_files;
    char *data[AUTHD_MAX_SECRETS] = {0};
    size_t lens[AUTHD_MAX_SECRETS] = {0};
    int rc = 0;

    for (size_t i = 0; i < files->n && rc == 0; i++) {
        rc = rd(c->opts->ud, files->v[i], &data[i], &lens[i]);
        if (rc != 0) {
            data[i] = NULL;
            rc = fail(c, list->vals[i], "cookieSecretFiles[%zu]: cannot read \"%s\": %s", i,
                      files->v[i], code_text(rc));
            break;
        }
        if (lens[i] > 0 && data[i][lens[i] - 1] == '\n')
            lens[i]--;
        if (lens[i] > 0 && data[i][lens[i] - 1] == '\r')
            lens[i]--;
        if (lens[i] < AUTHD_MIN_SECRET)
            rc = fail(c, list->vals[i],
                      "cookieSecretFiles[%zu]: the secret in \"%s\" is %zu "
                      "bytes; at least %d are required (e.g. openssl rand -base64 48)",
                      i, files->v[i], lens[i], AUTHD_MIN_SECRET);
    }
    if (rc == 0 && authd_keys_init(&c->cfg->keys, (const char *const *)data, lens, files->n))
        rc = fail(c, list, "cookieSecretFiles: cannot derive keys from the secrets");
    for (size_t i = 0; i < files->n; i++) {
        if (data[i] != NULL)
            pc_cleanse(data[i], lens[i]);
        free(data[i]);
    }
    return rc;
}

/* --cookie-secret-file replaces the file's list; errors name the flag. */
static int
load_override_secrets(struct ctx *c)
{
    const struct authd_overrides *ov = c->opts->overrides;
    struct pc_ynode list = {.type = PC_YNODE_SEQ};
    struct pc_ynode items[AUTHD_MAX_SECRETS] = {0};
    struct pc_ynode *vals[AUTHD_MAX_SECRETS];

    authd_strlist_release(&c->cfg->secret_files);
    for (size_t i = 0; i < ov->nsecret_files && i < AUTHD_MAX_SECRETS; i++) {
        authd_strlist_add(&c->cfg->secret_files, ov->secret_files[i]);
        vals[i] = &items[i];
    }
    list.n = c->cfg->secret_files.n;
    list.vals = vals;
    return load_secrets(c, &list);
}

static int
parse_secrets(struct ctx *c, const struct pc_ynode *root)
{
    const struct pc_ynode *n = pc_ynode_get(root, "cookieSecretFiles");
    int rc;

    if (c->opts->overrides != NULL && c->opts->overrides->nsecret_files > 0)
        return load_override_secrets(c);
    if (n == NULL || is_null(n))
        return fail(c, root,
                    "cookieSecretFiles: required (a list of files holding >= %d-byte "
                    "secrets; the first encrypts, all decrypt)",
                    AUTHD_MIN_SECRET);
    if ((rc = get_strlist(c, root, "cookieSecretFiles", "", &c->cfg->secret_files)) != 0)
        return rc;
    if (c->cfg->secret_files.n == 0 || c->cfg->secret_files.n > AUTHD_MAX_SECRETS)
        return fail(c, n, "cookieSecretFiles: needs 1 to %d files", AUTHD_MAX_SECRETS);
    return load_secrets(c, n);
}

/* ---- redis ---- */

#define MAX_REDIS_MS (10 * 60 * 1000)

/* "250ms" or a duration of authd_parse_duration, in milliseconds. */
static int
parse_ms(const char *s, int64_t *out)
{
    size_t n = s ? strlen(s) : 0;
    int64_t v = 0;

    if (n > 2 && strcmp(s + n - 2, "ms") == 0) {
        for (size_t i = 0; i < n - 2; i++) {
            if (!isdigit((unsigned char)s[i]) || v > MAX_REDIS_MS)
                return PC_EPARSE;
            v = v * 10 + (s[i] - '0');
        }
        *out = v;
        return 0;
    }
    if (authd_parse_duration(s, &v) != 0 || v > MAX_REDIS_MS / 1000)
        return PC_EPARSE;
    *out = v * 1000;
    return 0;
}

static int
get_ms(struct ctx *c, const struct pc_ynode *map, const char *key, int64_t lo, int64_t hi,
       int64_t *out)
{
    const struct pc_ynode *n = pc_ynode_get(map, key);

    if (n == NULL || is_null(n))
        return 0;
    if (n->type != PC_YNODE_SCALAR || parse_ms(n->value, out) != 0 || *out < lo || *out > hi)
        return fail(c, n, "redis.%s: expected a duration from %lldms to %lldms, like 500ms or 1s",
                    key, (long long)lo, (long long)hi);
    return 0;
}

/* redis://host[:port][/db] or rediss://...: no userinfo (passwordFile), query or fragment. */
static const char *
parse_redis_url(struct authd_redis_config *r)
{
    const char *u = r->url, *auth, *end, *colon;
    size_t alen;

    r->tls = strncmp(u, "rediss://", 9) == 0;
    if (!r->tls && strncmp(u, "redis://", 8) != 0)
        return "must start with redis:// or rediss:// (TLS)";
    auth = u + (r->tls ? 9 : 8);
    alen = strcspn(auth, "/?#");
    if (memchr(auth, '@', alen) != NULL)
        return "must not hold a user or password: set redis.username and redis.passwordFile";
    if (strpbrk(auth, "?#") != NULL)
        return "must not have a query or fragment";
    end = auth + alen;
    colon = auth[0] == '[' ? memchr(auth, ']', alen) : auth;
    colon = colon ? memchr(colon, ':', (size_t)(end - colon)) : NULL;
    r->port = 6379;
    if (colon != NULL) {
        char *e = NULL;
        long p = strtol(colon + 1, &e, 10);

        if (colon + 1 == end || e != end || p <= 0 || p > 65535)
            return "has an invalid port";
        r->port = (int)p;
    } else {
        colon = end;
    }
    if (auth[0] == '[' && colon > auth + 2 && colon[-1] == ']')
        r->host = pc_xstrndup(auth + 1, (size_t)(colon - auth) - 2);
    else
        r->host = pc_xstrndup(auth, (size_t)(colon - auth));
    if (r->host[0] == '\0' || strspn(r->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789-._:") != strlen(r->host))
        return "has no valid host";
    if (*end == '/' && end[1] != '\0') {
        char *e = NULL;
        long db = strtol(end + 1, &e, 10);

        if (!isdigit((unsigned char)end[1]) || *e != '\0' || db < 0 || db > 15)
            return "has a path that is not a database number 0-15";
        r->database = (int)db;
    }
    return NULL;
}

void
authd_redis_config_free(struct authd_redis_config *r)
{
    if (r == NULL)
        return;
    free(r->url);
    free(r->host);
    free(r->username);
    pc_free_secret(r->password);
    free(r->password_file);
    free(r->ca_file);
    free(r->server_name);
    free(r->key_prefix);
    free(r);
}

static char *
dup_or_null(const char *s)
{
    return s != NULL ? pc_xstrdup(s) : NULL;
}

struct authd_redis_config *
authd_redis_config_copy(const struct authd_redis_config *r)
{
    struct authd_redis_config *o;

    if (r == NULL)
        return NULL;
    o = pc_xcalloc(1, sizeof(*o));
    *o = *r;
    o->url = pc_xstrdup(r->url);
    o->host = pc_xstrdup(r->host);
    o->username = dup_or_null(r->username);
    o->password = dup_or_null(r->password);
    o->password_file = dup_or_null(r->password_file);
    o->ca_file = dup_or_null(r->ca_file);
    o->server_name = dup_or_null(r->server_name);
    o->key_prefix = pc_xstrdup(r->key_prefix);
    return o;
}

static int
load_redis_password(struct ctx *c, const struct pc_ynode *n, struct authd_redis_config *r)
{
    authd_read_file_fn rd = c->opts->read_file ? c->opts->read_file : read_disk;
    char *data = NULL;
    size_t len = 0;
    int rc;

    if (r->password_file == NULL)
        return 0;
    if ((rc = rd(c->opts->ud, r->password_file, &data, &len)) != 0)
        return fail(c, pc_ynode_get(n, "passwordFile"),
                    "redis.passwordFile: cannot read \"%s\": %s", r->password_file, code_text(rc));
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len == 0 || len > 4096 || memchr(data, '\0', len) != NULL)
        rc = fail(c, pc_ynode_get(n, "passwordFile"),
                  "redis.passwordFile: \"%s\" must hold a password of 1 to 4096 bytes",
                  r->password_file);
    else
        r->password = pc_xstrndup(data, len);
    pc_cleanse(data, len);
    free(data);
    return rc;
}

static bool
is_key_prefix(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.-") == n;
}

static int
parse_redis_fields(struct ctx *c, const struct pc_ynode *n, struct authd_redis_config *r)
{
    const struct pc_ynode *db = pc_ynode_get(n, "database");
    const char *why;
    int rc;

    if ((rc = get_required_str(c, n, "url", "redis", &r->url)) != 0 ||
        (rc = get_str(c, n, "username", "redis", &r->username)) != 0 ||
        (rc = get_str(c, n, "passwordFile", "redis", &r->password_file)) != 0 ||
        (rc = get_str(c, n, "caFile", "redis", &r->ca_file)) != 0 ||
        (rc = get_str(c, n, "serverName", "redis", &r->server_name)) != 0 ||
        (rc = get_str(c, n, "keyPrefix", "redis", &r->key_prefix)) != 0 ||
        (rc = get_ms(c, n, "connectTimeout", 50, 30000, &r->connect_timeout_ms)) != 0 ||
        (rc = get_ms(c, n, "commandTimeout", 10, AUTHD_REDIS_MAX_COMMAND_MS,
                     &r->command_timeout_ms)) != 0 ||
        (rc = get_duration(c, n, "revalidate", "redis", &r->revalidate)) != 0 ||
        (rc = get_duration(c, n, "grace", "redis", &r->grace)) != 0)
        return rc;
    /* Never echoed with userinfo: "redis://:password@host" would put it in the log. */
    if ((why = parse_redis_url(r)) != NULL && strchr(r->url, '@') != NULL)
        return fail(c, pc_ynode_get(n, "url"),
                    "redis.url: %s (the value is not shown: it "
                    "holds userinfo; the password goes in passwordFile)",
                    why);
    if (why != NULL)
        return fail(c, pc_ynode_get(n, "url"), "redis.url: \"%s\" %s", r->url, why);
    if (db != NULL && !is_null(db)) {
        char *e = NULL;
        long v = db->type == PC_YNODE_SCALAR ? strtol(db->value, &e, 10) : -1;

        if (e == NULL || e == db->value || *e != '\0' || v < 0 || v > 15)
            return fail(c, db, "redis.database: expected a number from 0 to 15");
        r->database = (int)v;
    }
    if (!is_key_prefix(r->key_prefix))
        return fail(c, pc_ynode_get(n, "keyPrefix"),
                    "redis.keyPrefix: \"%s\" must be 1 to 64 of A-Z a-z 0-9 : _ . -",
                    r->key_prefix);
    if (r->revalidate > 300 || r->grace > 3600)
        return fail(c, n, "redis: revalidate is at most 5m and grace at most 1h");
    if (!r->tls && (r->ca_file != NULL || r->server_name != NULL))
        return fail(c, n, "redis: caFile and serverName need a rediss:// url");
    return load_redis_password(c, n, r);
}

/*
 * The --redis-* flags as a redis section (JSON is YAML), checked as the file's would be; its
 * diagnostics point into the flags, so they say so.
 */
static int
redis_flags(struct ctx *c, const struct authd_overrides *ov, struct pc_ynode **out)
{
    json_t *o = json_pack("{s:s}", "url", ov->redis_url);
    struct pc_diag d = {0};
    char *text;
    int rc;

    if (ov->redis_username)
        json_object_set_new(o, "username", json_string(ov->redis_username));
    if (ov->redis_password_file)
        json_object_set_new(o, "passwordFile", json_string(ov->redis_password_file));
    if (ov->redis_ca_file)
        json_object_set_new(o, "caFile", json_string(ov->redis_ca_file));
    text = json_dumps(o, JSON_COMPACT);
    rc = pc_yaml_load(text, strlen(text), out, &d);
    free(text);
    json_decref(o);
    if (rc != 0)
        return fail(c, NULL, "--redis-url: %s", d.msg);
    return 0;
}

static int
parse_redis(struct ctx *c, const struct pc_ynode *root)
{
    static const char *const keys[] = {
        "url",       "username",       "passwordFile",   "database",   "caFile", "serverName",
        "keyPrefix", "connectTimeout", "commandTimeout", "revalidate", "grace",  NULL};
    const struct pc_ynode *n = pc_ynode_get(root, "redis");
    const struct authd_overrides *ov = c->opts->overrides;
    struct pc_ynode *flags = NULL;
    struct authd_redis_config *r;
    int rc;

    if (ov != NULL && ov->redis_url != NULL && (rc = redis_flags(c, ov, &flags)) != 0)
        return rc;
    if (flags != NULL)
        n = flags;
    if (n == NULL || is_null(n))
        return 0;
    if ((rc = want_type(c, n, PC_YNODE_MAP, "redis")) != 0 ||
        (rc = check_keys(c, n, "redis", keys)) != 0)
        return rc;
    r = c->cfg->redis = pc_xcalloc(1, sizeof(*r));
    r->key_prefix = pc_xstrdup("portcullis:");
    r->connect_timeout_ms = 1000;
    r->command_timeout_ms = 500;
    r->revalidate = 2;
    r->grace = 30;
    rc = parse_redis_fields(c, n, r);
    pc_ynode_free(flags);
    return rc;
}

/* A host whose sessions live in Redis needs the redis section (whole configs only: a shard's
 * hosts are checked against the head when they are served). */
static int
check_stores(struct ctx *c, const struct pc_ynode *root)
{
    const struct pc_ynode *seq = pc_ynode_get(root, "hosts");

    for (size_t i = 0; c->cfg->redis == NULL && i < c->cfg->nhosts; i++)
        if (c->cfg->hosts[i]->session.store == AUTHD_STORE_REDIS)
            return fail(c, pc_ynode_get(seq->vals[i], "session"),
                        "hosts[%zu].session.store: redis needs the top-level redis section "
                        "(redis: {url: redis://..., passwordFile: ...})",
                        i);
    return 0;
}

/* ---- top level ---- */

static int
check_top(struct ctx *c, const struct pc_ynode *root)
{
    struct authd_config *cfg = c->cfg;
    size_t plen;

    if (!is_listen(cfg->listen))
        return fail(c, pc_ynode_get(root, "listen"),
                    "listen: \"%s\" must be host:port, e.g. "
                    "0.0.0.0:4180",
                    cfg->listen);
    if (!is_listen(cfg->admin_listen))
        return fail(c, pc_ynode_get(root, "adminListen"),
                    "adminListen: \"%s\" must be "
                    "host:port, e.g. 0.0.0.0:9090",
                    cfg->admin_listen);
    if (strcmp(cfg->listen, cfg->admin_listen) == 0)
        return fail(c, pc_ynode_get(root, "adminListen"),
                    "adminListen: must differ from listen "
                    "(metrics never share the auth port)");
    if (!is_path(cfg->ext_authz_prefix))
        return fail(c, pc_ynode_get(root, "extAuthzPathPrefix"),
                    "extAuthzPathPrefix: \"%s\" "
                    "must be a path starting with \"/\"",
                    cfg->ext_authz_prefix);
    plen = strlen(cfg->ext_authz_prefix);
    while (plen > 1 && cfg->ext_authz_prefix[plen - 1] == '/')
        cfg->ext_authz_prefix[--plen] = '\0';
    return 0;
}

static void
replace_str(char **dst, const char *value)
{
    free(*dst);
    *dst = pc_xstrdup(value);
}

static int
apply_listen_overrides(struct ctx *c)
{
    const struct authd_overrides *ov = c->opts->overrides;

    if (ov != NULL && ov->listen != NULL)
        replace_str(&c->cfg->listen, ov->listen);
    if (ov != NULL && ov->admin_listen != NULL)
        replace_str(&c->cfg->admin_listen, ov->admin_listen);
    if (ov != NULL && ov->allow_insecure_issuers)
        c->cfg->allow_insecure_issuers = true;
    return 0;
}

/* templatesDir (or --templates-dir): the operator's pages, checked like the rest. */
static int
parse_templates(struct ctx *c, const struct pc_ynode *root)
{
    const struct authd_overrides *ov = c->opts->overrides;
    bool flag = ov != NULL && ov->templates_dir != NULL;
    const char *name = flag ? "--templates-dir" : "templatesDir";
    const struct pc_ynode *n = flag ? NULL : pc_ynode_get(root, "templatesDir");
    authd_read_file_fn rd = c->opts->read_file ? c->opts->read_file : read_disk;
    struct pc_diag d = {0};
    char where[600];
    const char *dir;
    int rc;

    if ((rc = get_str(c, root, "templatesDir", "", &c->cfg->templates_dir)) != 0)
        return rc;
    if (flag)
        replace_str(&c->cfg->templates_dir, ov->templates_dir);
    if ((dir = c->cfg->templates_dir) == NULL || dir[0] == '\0')
        return 0;
    if ((rc = authd_pages_load(dir, rd, c->opts->ud, &c->cfg->pages, &d)) == 0)
        return 0;
    pc_diag_format(&d, where, sizeof(where));
    if (d.file != NULL) /* where starts with the template's name */
        return fail(c, n, "%s: %s/%s", name, dir, where);
    return fail(c, n, "%s: \"%s\": %s", name, dir, where);
}

static void index_hosts(struct authd_config *cfg);

static int
parse_root(struct ctx *c, const struct pc_ynode *root)
{
    static const char *const keys[] = {"listen",
                                       "adminListen",
                                       "cookieSecretFiles",
                                       "extAuthzPathPrefix",
                                       "allowInsecureIssuers",
                                       "hosts",
                                       "templatesDir",
                                       "redis",
                                       NULL};
    struct authd_config *cfg = c->cfg;
    int rc;

    if ((rc = want_type(c, root, PC_YNODE_MAP, "top level")) != 0 ||
        (rc = check_keys(c, root, "", keys)) != 0)
        return rc;
    cfg->listen = pc_xstrdup("0.0.0.0:4180");
    cfg->admin_listen = pc_xstrdup("0.0.0.0:9090");
    cfg->ext_authz_prefix = pc_xstrdup("/ext-authz");
    if ((rc = get_str(c, root, "listen", "", &cfg->listen)) != 0 ||
        (rc = get_str(c, root, "adminListen", "", &cfg->admin_listen)) != 0 ||
        (rc = get_str(c, root, "extAuthzPathPrefix", "", &cfg->ext_authz_prefix)) != 0 ||
        (rc = get_bool(c, root, "allowInsecureIssuers", "", &cfg->allow_insecure_issuers)) ||
        (rc = apply_listen_overrides(c)) != 0 || (rc = check_top(c, root)) != 0 ||
        (rc = parse_redis(c, root)) != 0 || (rc = parse_hosts(c, root)) != 0 ||
        (rc = check_stores(c, root)) != 0 || (rc = parse_secrets(c, root)) != 0 ||
        (rc = parse_templates(c, root)) != 0)
        return rc;
    index_hosts(cfg);
    return 0;
}

int
authd_config_parse(const char *text, size_t len, const struct authd_config_opts *opts,
                   struct authd_config **out, struct pc_diag *diag)
{
    static const struct authd_config_opts no_opts = {0};
    struct pc_diag scratch;
    struct pc_ynode *root = NULL;
    struct ctx c = {.diag = diag ? diag : &scratch, .opts = opts ? opts : &no_opts};
    int rc;

    *out = NULL;
    c.diag->file = c.opts->file;
    if (len > MAX_CONFIG) {
        fail(&c, NULL, "config larger than %d bytes", MAX_CONFIG);
        return PC_ETOOBIG;
    }
    if ((rc = pc_yaml_load(text, len, &root, c.diag)) != 0)
        return rc;
    c.cfg = pc_xcalloc(1, sizeof(*c.cfg));
    if (c.opts->file != NULL)
        c.cfg->file = pc_xstrdup(c.opts->file);
    rc = parse_root(&c, root);
    pc_ynode_free(root);
    if (rc != 0) {
        authd_config_free(c.cfg);
        return rc;
    }
    *out = c.cfg;
    return 0;
}

static int
read_config(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "re");
    size_t cap = 4096, n = 0, r;
    char *buf;

    if (f == NULL)
        return -errno;
    buf = pc_xmalloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n > MAX_CONFIG)
            break;
        if (cap - n - 1 == 0)
            buf = pc_xrealloc(buf, cap *= 2);
    }
    r = (size_t)ferror(f);
    fclose(f);
    if (r != 0 || n > MAX_CONFIG) {
        free(buf);
        return r != 0 ? PC_EIO : PC_ETOOBIG;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

int
authd_config_load(const char *path, struct authd_config **out, struct pc_diag *diag)
{
    return authd_config_load_with(path, NULL, out, diag);
}

static int
load_file(const char *path, const struct authd_config_opts *opts, struct authd_config **out,
          struct pc_diag *diag)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    if ((rc = read_config(path, &text, &len)) != 0) {
        if (diag != NULL) {
            diag->file = path;
            pc_diag_set(diag, 0, 0, "cannot read config: %s", code_text(rc));
        }
        return rc;
    }
    rc = authd_config_parse(text, len, opts, out, diag);
    pc_cleanse(text, len);
    free(text);
    return rc;
}

int
authd_config_load_with(const char *path, const struct authd_overrides *ov,
                       struct authd_config **out, struct pc_diag *diag)
{
    return load_file(path, &(struct authd_config_opts){.file = path, .overrides = ov}, out, diag);
}

int
authd_config_load_head(const char *path, const struct authd_overrides *ov,
                       struct authd_config **out, struct pc_diag *diag)
{
    struct authd_config_opts opts = {.file = path, .overrides = ov, .head_only = true};

    if (path != NULL)
        return load_file(path, &opts, out, diag);
    opts.file = "command line";
    return authd_config_parse("{}", 2, &opts, out, diag);
}

struct authd_config *
authd_config_placeholder(const struct authd_overrides *ov)
{
    struct authd_config *cfg = pc_xcalloc(1, sizeof(*cfg));

    cfg->listen = pc_xstrdup(ov != NULL && ov->listen != NULL ? ov->listen : "0.0.0.0:4180");
    cfg->admin_listen =
        pc_xstrdup(ov != NULL && ov->admin_listen != NULL ? ov->admin_listen : "0.0.0.0:9090");
    cfg->ext_authz_prefix = pc_xstrdup("/ext-authz");
    for (size_t i = 0; ov != NULL && i < ov->nsecret_files; i++)
        authd_strlist_add(&cfg->secret_files, ov->secret_files[i]);
    return cfg;
}

void
authd_config_free(struct authd_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; cfg->store != NULL && i < cfg->nhosts; i++)
        host_release(&cfg->store[i]);
    free(cfg->store);
    free(cfg->hosts);
    for (size_t i = 0; i < cfg->nparts; i++)
        authd_hostlist_put(cfg->parts[i]);
    free(cfg->parts);
    free(cfg->file);
    free(cfg->listen);
    free(cfg->admin_listen);
    free(cfg->ext_authz_prefix);
    authd_strlist_release(&cfg->secret_files);
    authd_keys_release(&cfg->keys);
    free(cfg->templates_dir);
    authd_pages_put(cfg->pages);
    authd_redis_config_free(cfg->redis);
    pc_strmap_release(&cfg->exact);
    pc_strmap_release(&cfg->wild);
    free(cfg);
}

/* ---- parts: host lists parsed alone, configs merged from them ---- */

int
authd_hostlist_parse(const char *text, size_t len, const struct authd_hostlist_opts *opts,
                     struct authd_hostlist **out, struct pc_diag *diag)
{
    static const char *const keys[] = {"hosts", NULL};
    struct authd_config_opts copts = {.file = opts->file};
    struct authd_config tmp = {.allow_insecure_issuers = opts->allow_insecure_issuers};
    struct ctx c = {.diag = diag, .opts = &copts, .cfg = &tmp};
    struct pc_ynode *root = NULL;
    struct authd_hostlist *l;
    const struct pc_ynode *seq;
    int rc;

    *out = NULL;
    diag->file = opts->file;
    if (len > MAX_CONFIG) {
        fail(&c, NULL, "document larger than %d bytes", MAX_CONFIG);
        return PC_ETOOBIG;
    }
    /* The controller writes a block several entries share once, aliased after. */
    if ((rc = pc_yaml_load_aliased(text, len, &root, diag)) != 0)
        return rc;
    if ((rc = want_type(&c, root, PC_YNODE_MAP, "top level")) == 0 &&
        (rc = check_keys(&c, root, "", keys)) == 0)
        rc = parse_hosts(&c, root);
    if (rc == 0) {
        l = pc_xcalloc(1, sizeof(*l));
        atomic_init(&l->refs, 1);
        l->hosts = tmp.store;
        l->n = tmp.nhosts;
        l->pos = pc_xcalloc(l->n ? l->n : 1, sizeof(*l->pos));
        seq = pc_ynode_get(root, "hosts");
        for (size_t i = 0; i < l->n; i++) {
            l->pos[i].line = seq->vals[i]->line;
            l->pos[i].col = seq->vals[i]->col;
        }
        tmp.store = NULL;
        tmp.nhosts = 0;
        *out = l;
    }
    pc_ynode_free(root);
    for (size_t i = 0; tmp.store != NULL && i < tmp.nhosts; i++)
        host_release(&tmp.store[i]);
    free(tmp.store);
    free(tmp.hosts);
    return rc;
}

struct authd_hostlist *
authd_hostlist_get(struct authd_hostlist *l)
{
    atomic_fetch_add(&l->refs, 1);
    return l;
}

void
authd_hostlist_put(struct authd_hostlist *l)
{
    if (l == NULL || atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    for (size_t i = 0; i < l->n; i++)
        host_release(&l->hosts[i]);
    free(l->hosts);
    free(l->pos);
    free(l);
}

struct authd_config *
authd_config_with_hosts(const struct authd_config *head, struct authd_hostlist *const *parts,
                        size_t nparts)
{
    struct authd_config *cfg = pc_xcalloc(1, sizeof(*cfg));
    size_t n = 0;

    cfg->file = head->file ? pc_xstrdup(head->file) : NULL;
    cfg->listen = pc_xstrdup(head->listen);
    cfg->admin_listen = pc_xstrdup(head->admin_listen);
    cfg->ext_authz_prefix = pc_xstrdup(head->ext_authz_prefix);
    cfg->allow_insecure_issuers = head->allow_insecure_issuers;
    for (size_t i = 0; i < head->secret_files.n; i++)
        authd_strlist_add(&cfg->secret_files, head->secret_files.v[i]);
    cfg->keys = head->keys;
    cfg->templates_dir = head->templates_dir ? pc_xstrdup(head->templates_dir) : NULL;
    cfg->pages = authd_pages_get(head->pages);
    cfg->redis = authd_redis_config_copy(head->redis);
    cfg->parts = pc_xcalloc(nparts ? nparts : 1, sizeof(*cfg->parts));
    for (size_t i = 0; i < nparts; i++)
        n += parts[i]->n;
    cfg->hosts = pc_xcalloc(n ? n : 1, sizeof(*cfg->hosts));
    for (size_t i = 0; i < nparts; i++) {
        cfg->parts[cfg->nparts++] = authd_hostlist_get(parts[i]);
        for (size_t j = 0; j < parts[i]->n; j++) {
            cfg->hosts[cfg->nhosts++] = &parts[i]->hosts[j];
        }
    }
    index_hosts(cfg);
    return cfg;
}

/* ---- host matching ---- */

/*
 * Copies the host part of a Host header value, lowercased, into out. False when unusable: a
 * port must be digits only, and the name only letters, digits, "-", "_" and "." (or an IPv6
 * literal in brackets), so "a.example.com:80@evil" never matches a.example.com; trailing dots
 * are dropped, empty labels (".a.example.com", "a..example.com") refused.
 */
static bool
normalize_host(const char *in, char *out, size_t outlen)
{
    const char *port;
    size_t n;

    if (in == NULL)
        return false;
    if (in[0] == '[') {
        const char *end = strchr(in, ']');

        n = end ? (size_t)(end - in) + 1 : 0;
    } else {
        n = strspn(in, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");
    }
    port = in + n;
    if (*port == ':' && port[1] != '\0' && strspn(port + 1, "0123456789") == strlen(port + 1))
        port += strlen(port);
    if (*port != '\0')
        return false;
    while (n > 0 && in[n - 1] == '.')
        n--;
    if (n == 0 || n >= outlen || in[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '.' && in[i + 1] == '.')
            return false; /* an empty label: no DNS name, never a wildcard's subdomain */
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    out[n] = '\0';
    return true;
}

bool
authd_host_normalize(const char *in, char *out, size_t outlen)
{
    return normalize_host(in, out, outlen);
}

bool
authd_host_same(const char *a, const char *b)
{
    char na[MAX_NAME + 3], nb[MAX_NAME + 3];

    if (normalize_host(a, na, sizeof(na)) && normalize_host(b, nb, sizeof(nb)))
        return strcmp(na, nb) == 0;
    return strcasecmp(a, b) == 0;
}

/*
 * A check looks its host up on every request: with thousands of hosts a scan costs more than
 * the rest of the check. Exact names and wildcard suffixes go into two hash indexes; the
 * first entry to claim a name keeps it (entries are unique after validation anyway).
 */
static void
index_hosts(struct authd_config *cfg)
{
    for (size_t i = 0; i < cfg->nhosts; i++) {
        const struct authd_strlist *l = &cfg->hosts[i]->hosts;

        for (size_t j = 0; j < l->n; j++) {
            bool wild = l->v[j][0] == '*';

            /* ".example.com" for "*.example.com" */
            pc_strmap_add(wild ? &cfg->wild : &cfg->exact, wild ? l->v[j] + 1 : l->v[j], i, NULL);
        }
    }
    cfg->indexed = true;
}

static const struct authd_host *
indexed(const struct authd_config *cfg, const struct pc_strmap *idx, const char *key)
{
    size_t i;

    return pc_strmap_get(idx, key, &i) ? cfg->hosts[i] : NULL;
}

const struct authd_host *
authd_config_match_host(const struct authd_config *cfg, const char *host)
{
    const struct authd_host *best = NULL;
    size_t best_len = 0, len;
    char name[MAX_NAME + 3];

    if (cfg == NULL || !normalize_host(host, name, sizeof(name)))
        return NULL;
    if (cfg->indexed) {
        /* Exact first; then the longest wildcard suffix: ".b.example.com" before ".example.com". */
        if ((best = indexed(cfg, &cfg->exact, name)) != NULL)
            return best;
        for (const char *dot = strchr(name, '.'); dot != NULL; dot = strchr(dot + 1, '.'))
            if ((best = indexed(cfg, &cfg->wild, dot)) != NULL)
                return best;
        return NULL;
    }
    len = strlen(name);
    for (size_t i = 0; i < cfg->nhosts; i++)
        if (authd_strlist_contains(&cfg->hosts[i]->hosts, name))
            return cfg->hosts[i];
    for (size_t i = 0; i < cfg->nhosts; i++) {
        const struct authd_strlist *l = &cfg->hosts[i]->hosts;

        for (size_t j = 0; j < l->n; j++) {
            const char *suffix = l->v[j] + 1; /* ".example.com" */
            size_t slen = strlen(suffix);

            if (l->v[j][0] != '*' || len <= slen || slen <= best_len)
                continue;
            if (strcmp(name + len - slen, suffix) == 0) {
                best = cfg->hosts[i];
                best_len = slen;
            }
        }
    }
    return best;
}
