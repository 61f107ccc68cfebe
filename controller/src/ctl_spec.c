/*
 * ctl_spec.c - a ProtectedHost spec: defaults, validation and the names derived from it.
 *
 * The CRD's schema catches most mistakes at the apiserver, but `render` reads files that never
 * met one, and some rules (duplicate hosts, the issuer scheme policy, unknown fields) are not
 * expressible there. So everything is checked here again, with the same field paths the
 * apiserver would use in its messages.
 */
#include "controller.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portcullis/crypto.h"
#include "portcullis/json.h"

#define MAX_HOSTS 64
#define PATH_LEN 192

void
ctl_errors_add(struct ctl_errors *e, const char *fmt, ...)
{
    va_list ap;
    char buf[768];

    if (e->n == CTL_MAX_ERRORS) {
        e->dropped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    e->msg[e->n++] = pc_xstrdup(buf);
}

void
ctl_errors_release(struct ctl_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msg[i]);
    e->n = 0;
    e->dropped = 0;
}

char *
ctl_errors_join(const struct ctl_errors *e, const char *sep)
{
    struct pc_buf b;

    pc_buf_init(&b, 0);
    for (size_t i = 0; i < e->n; i++)
        pc_buf_appendf(&b, "%s%s", i ? sep : "", e->msg[i]);
    if (e->dropped)
        pc_buf_appendf(&b, "%s(%zu more)", e->n ? sep : "", e->dropped);
    return pc_buf_detach(&b);
}

/* ---- checks on single values ---------------------------------------------------------- */

static bool
valid_label(const char *s, size_t n)
{
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
            return false;
    return true;
}

bool
ctl_valid_dns_name(const char *s, bool wildcard)
{
    if (wildcard && strncmp(s, "*.", 2) == 0)
        s += 2;
    if (*s == '\0' || strlen(s) > 253)
        return false;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);

        if (!valid_label(s, n))
            return false;
        if (!dot)
            return true;
        s = dot + 1;
    }
}

bool
ctl_valid_header_name(const char *s)
{
    if (*s == '\0' || strlen(s) > 128)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

int
ctl_parse_duration(const char *s, long long *secs)
{
    long long total = 0;

    if (*s == '\0')
        return PC_EPARSE;
    while (*s) {
        long long v = 0;
        const char *start = s;

        while (isdigit((unsigned char)*s) && v < 1000000000LL)
            v = v * 10 + (*s++ - '0');
        if (s == start || isdigit((unsigned char)*s))
            return PC_EPARSE;
        switch (*s++) {
        case 'h':
            v *= 3600;
            break;
        case 'm':
            v *= 60;
            break;
        case 's':
            break;
        default:
            return PC_EPARSE;
        }
        total += v;
    }
    *secs = total;
    return 0;
}

static bool
valid_path(const char *s)
{
    if (*s != '/' && *s != '*')
        return false;
    for (; *s; s++)
        if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
            return false;
    return true;
}

static bool
valid_issuer(const char *s, bool allow_insecure)
{
    const char *host;

    if (strncmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (allow_insecure && strncmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return false;
    if (*host == '\0' || strchr("/?#", *host))
        return false;
    for (; *s; s++)
        if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s) || *s == '#')
            return false;
    return true;
}

/* ---- field access with defaults --------------------------------------------------------- */

void
ctl_check_keys(struct ctl_errors *e, const json_t *obj, const char *path, const char *const *known)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i = 0;

        while (known[i] && strcmp(known[i], key) != 0)
            i++;
        if (!known[i])
            ctl_errors_add(e, "%s.%s: unknown field", path, key);
    }
}

/*
 * The object at obj[key] (borrowed); NULL when absent or mistyped. The getters below accept a
 * NULL object and then return their defaults, so absent sections need no special case.
 */
static const json_t *
obj_field(struct ctl_errors *e, const json_t *obj, const char *key, const char *path,
          const char *const *known)
{
    const json_t *v = json_object_get(obj, key);
    char p[PATH_LEN];

    snprintf(p, sizeof(p), "%s.%s", path, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_object(v)) {
        ctl_errors_add(e, "%s: must be an object", p);
        return NULL;
    }
    ctl_check_keys(e, v, p, known);
    return v;
}

static const char *
str_field(struct ctl_errors *e, const json_t *obj, const char *key, const char *path,
          const char *def)
{
    const json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v))
        return def;
    if (!json_is_string(v)) {
        ctl_errors_add(e, "%s.%s: must be a string", path, key);
        return def;
    }
    if (json_string_length(v) != strlen(json_string_value(v))) {
        ctl_errors_add(e, "%s.%s: must not contain NUL", path, key);
        return def;
    }
    return json_string_value(v);
}

static bool
bool_field(struct ctl_errors *e, const json_t *obj, const char *key, const char *path)
{
    const json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v))
        return false;
    if (!json_is_boolean(v)) {
        ctl_errors_add(e, "%s.%s: must be a boolean", path, key);
        return false;
    }
    return json_is_true(v);
}

/* Returns a message when s is not acceptable, NULL when it is. */
typedef const char *(*item_check_fn)(const char *s);

/* New array of the strings at obj[key] (max items, each passing check). */
static json_t *
strlist_field(struct ctl_errors *e, const json_t *obj, const char *key, const char *path,
              size_t max, item_check_fn check)
{
    const json_t *v = json_object_get(obj, key);
    json_t *out = json_array();
    size_t i;
    json_t *it;

    if (!v || json_is_null(v))
        return out;
    if (!json_is_array(v)) {
        ctl_errors_add(e, "%s.%s: must be a list", path, key);
        return out;
    }
    if (json_array_size(v) > max)
        ctl_errors_add(e, "%s.%s: must have at most %zu items", path, key, max);
    json_array_foreach(v, i, it)
    {
        const char *s = json_string_value(it);
        const char *why = !s || strlen(s) != json_string_length(it) ? "must be a string"
                          : *s == '\0'                              ? "must not be empty"
                          : strlen(s) > 1024                        ? "is too long"
                          : check                                   ? check(s)
                                                                    : NULL;
        if (why)
            ctl_errors_add(e, "%s.%s[%zu]: %s", path, key, i, why);
        else
            json_array_append_new(out, json_string(s));
    }
    return out;
}

static const char *
check_path(const char *s)
{
    return valid_path(s) ? NULL : "must be a path starting with / (or a * wildcard)";
}

static const char *
check_domain(const char *s)
{
    return ctl_valid_dns_name(s, false) ? NULL : "must be a lowercase DNS name";
}

static const char *
check_email(const char *s)
{
    const char *at = strchr(s, '@');

    if (!at || at == s || at[1] == '\0' || strchr(at + 1, '@') || strpbrk(s, " \t\r\n"))
        return "must be an email address";
    return NULL;
}

static const char *
check_scope(const char *s)
{
    for (; *s; s++)
        if (*s <= 0x20 || *s == '"' || *s == '\\' || *s == 0x7f)
            return "must be a scope token (no spaces or quotes)";
    return NULL;
}

/* ---- sections ------------------------------------------------------------------------ */

static json_t *
norm_hosts(struct ctl_errors *e, const json_t *spec)
{
    json_t *hosts = strlist_field(e, spec, "hosts", "spec", MAX_HOSTS, NULL);
    const json_t *raw = json_object_get(spec, "hosts");

    if (!raw || json_array_size(raw) == 0)
        ctl_errors_add(e, "spec.hosts: Required value: at least one host");
    for (size_t i = 0; i < json_array_size(raw); i++) {
        const char *h = json_string_value(json_array_get(raw, i));

        if (!h)
            continue;
        if (!ctl_valid_dns_name(h, true))
            ctl_errors_add(e,
                           "spec.hosts[%zu]: \"%s\" is not a lowercase DNS name "
                           "(optionally with a leading \"*.\")",
                           i, h);
        for (size_t j = 0; j < i; j++)
            if (json_equal(json_array_get(raw, j), json_array_get(raw, i)))
                ctl_errors_add(e, "spec.hosts[%zu]: duplicate host \"%s\"", i, h);
    }
    return hosts;
}

/*
 * Where the policy is enforced: the gateway pods `selector` picks (default istio:
 * ingressgateway), or the Gateway API Gateway `name` in the namespace (targetRefs).
 */
static json_t *
norm_gateway(struct ctl_errors *e, const json_t *spec)
{
    static const char *const keys[] = {"namespace", "selector", "name", NULL};
    const json_t *g = obj_field(e, spec, "gateway", "spec", keys);
    const char *ns = str_field(e, g, "namespace", "spec.gateway", "istio-system");
    const char *name = str_field(e, g, "name", "spec.gateway", NULL);
    const json_t *sel = json_object_get(g, "selector");
    json_t *out_sel;

    if (!ctl_valid_dns_name(ns, false) || strchr(ns, '.') || strlen(ns) > 63)
        ctl_errors_add(e, "spec.gateway.namespace: \"%s\" is not a namespace name", ns);
    if (name) {
        if (sel && !json_is_null(sel))
            ctl_errors_add(e, "spec.gateway: set either selector (gateway pods) or name (a "
                              "Gateway API Gateway), not both");
        else if (!ctl_valid_dns_name(name, false))
            ctl_errors_add(e, "spec.gateway.name: \"%s\" is not a Gateway name", name);
        return json_pack("{s:s,s:s}", "namespace", ns, "name", name);
    }
    if (!sel || json_is_null(sel)) {
        out_sel = json_pack("{s:s}", "istio", "ingressgateway");
    } else if (!json_is_object(sel) || json_object_size(sel) == 0) {
        ctl_errors_add(e, "spec.gateway.selector: must be a non-empty map of labels");
        out_sel = json_object();
    } else {
        const char *k;
        json_t *v;

        out_sel = json_object();
        json_object_foreach((json_t *)sel, k, v)
        {
            if (!json_is_string(v) || json_string_length(v) > 63)
                ctl_errors_add(e, "spec.gateway.selector.%s: must be a label value", k);
            else
                json_object_set(out_sel, k, v);
        }
    }
    return json_pack("{s:s,s:o}", "namespace", ns, "selector", out_sel);
}

static json_t *
norm_secret_ref(struct ctl_errors *e, const json_t *oidc)
{
    static const char *const keys[] = {"name", "key", NULL};
    const json_t *ref = json_object_get(oidc, "clientSecretRef");
    const char *name, *key;

    if (!ref || json_is_null(ref))
        return NULL;
    ref = obj_field(e, oidc, "clientSecretRef", "spec.oidc", keys);
    if (!ref)
        return NULL;
    name = str_field(e, ref, "name", "spec.oidc.clientSecretRef", "");
    key = str_field(e, ref, "key", "spec.oidc.clientSecretRef", "");
    if (!ctl_valid_dns_name(name, false))
        ctl_errors_add(e, "spec.oidc.clientSecretRef.name: Required value: a Secret name");
    if (*key == '\0' || strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789-._") != strlen(key))
        ctl_errors_add(e, "spec.oidc.clientSecretRef.key: Required value: a Secret key");
    return json_pack("{s:s,s:s}", "name", name, "key", key);
}

/* "openid" first, then the rest in order without duplicates. */
static json_t *
norm_scopes(struct ctl_errors *e, const json_t *oidc)
{
    json_t *in, *out;
    size_t i;
    json_t *s;

    if (!json_object_get(oidc, "scopes"))
        return json_pack("[sss]", "openid", "email", "profile");
    out = json_pack("[s]", "openid");
    in = strlist_field(e, oidc, "scopes", "spec.oidc", 32, check_scope);
    json_array_foreach(in, i, s)
    {
        size_t j;
        json_t *t;
        bool seen = false;

        json_array_foreach(out, j, t) seen = seen || json_equal(s, t);
        if (!seen)
            json_array_append(out, s);
    }
    json_decref(in);
    return out;
}

static json_t *
norm_claims(struct ctl_errors *e, const json_t *oidc)
{
    static const char *const keys[] = {"groups", "email", "username", NULL};
    const json_t *c = obj_field(e, oidc, "claims", "spec.oidc", keys);
    const char *p = "spec.oidc.claims";
    const char *g = str_field(e, c, "groups", p, "groups");
    const char *m = str_field(e, c, "email", p, "email");
    const char *u = str_field(e, c, "username", p, "preferred_username");

    if (!*g || !*m || !*u)
        ctl_errors_add(e, "%s: claim names must not be empty", p);
    return json_pack("{s:s,s:s,s:s}", "groups", g, "email", m, "username", u);
}

static json_t *
norm_oidc(struct ctl_errors *e, const json_t *spec, bool allow_insecure)
{
    static const char *const keys[] = {
        "issuerURL", "clientID", "clientSecretRef", "scopes", "claims", "callbackPath", NULL};
    const json_t *o = json_object_get(spec, "oidc");
    const char *iss, *cid, *cb;
    json_t *out, *ref;

    if (!o || json_is_null(o))
        ctl_errors_add(e, "spec.oidc: Required value");
    if (!json_is_object(o)) {
        obj_field(e, spec, "oidc", "spec", keys);
        return NULL;
    }
    ctl_check_keys(e, o, "spec.oidc", keys);
    iss = str_field(e, o, "issuerURL", "spec.oidc", "");
    cid = str_field(e, o, "clientID", "spec.oidc", "");
    cb = str_field(e, o, "callbackPath", "spec.oidc", "/oauth2/callback");
    if (*iss == '\0')
        ctl_errors_add(e, "spec.oidc.issuerURL: Required value");
    else if (!valid_issuer(iss, allow_insecure))
        ctl_errors_add(e, "spec.oidc.issuerURL: \"%s\" must be an %s URL with a host", iss,
                       allow_insecure ? "http(s)" : "https");
    if (*cid == '\0')
        ctl_errors_add(e, "spec.oidc.clientID: Required value");
    if (*cb != '/' || strpbrk(cb, "?# \t*"))
        ctl_errors_add(e, "spec.oidc.callbackPath: must be an absolute path starting with /");
    else if (strcmp(cb, CTL_SIGN_OUT_PATH) == 0)
        ctl_errors_add(e, "spec.oidc.callbackPath: must differ from the sign-out path %s",
                       CTL_SIGN_OUT_PATH);
    out = json_pack("{s:s,s:s}", "issuerURL", iss, "clientID", cid);
    ref = norm_secret_ref(e, o);
    json_object_set_new(out, "scopes", norm_scopes(e, o));
    json_object_set_new(out, "claims", norm_claims(e, o));
    json_object_set_new(out, "callbackPath", json_string(cb));
    if (ref)
        json_object_set_new(out, "clientSecretRef", ref);
    return out;
}

static json_t *
norm_access(struct ctl_errors *e, const json_t *spec)
{
    static const char *const keys[] = {"allowedGroups", "allowedEmailDomains", "allowedEmails",
                                       "allowUnverifiedEmail", NULL};
    const json_t *a = obj_field(e, spec, "access", "spec", keys);
    const char *p = "spec.access";

    json_t *out = json_object();

    json_object_set_new(out, "allowedGroups", strlist_field(e, a, "allowedGroups", p, 256, NULL));
    json_object_set_new(out, "allowedEmailDomains",
                        strlist_field(e, a, "allowedEmailDomains", p, 256, check_domain));
    json_object_set_new(out, "allowedEmails",
                        strlist_field(e, a, "allowedEmails", p, 1024, check_email));
    /* Written only when set: authd's default is false. */
    if (bool_field(e, a, "allowUnverifiedEmail", p))
        json_object_set_new(out, "allowUnverifiedEmail", json_true());
    return out;
}

static json_t *
norm_paths(struct ctl_errors *e, const json_t *spec)
{
    static const char *const keys[] = {"skip", "api", NULL};
    const json_t *a = obj_field(e, spec, "paths", "spec", keys);

    json_t *out = json_object();

    json_object_set_new(out, "skip", strlist_field(e, a, "skip", "spec.paths", 64, check_path));
    json_object_set_new(out, "api", strlist_field(e, a, "api", "spec.paths", 64, check_path));
    return out;
}

static void
check_session_values(struct ctl_errors *e, const char *cookie, const char *domain,
                     const char *lifetime, const char *refresh)
{
    long long life = 0, ref = 0;

    if (!ctl_valid_header_name(cookie) || strlen(cookie) > 64)
        ctl_errors_add(e, "spec.session.cookieName: \"%s\" is not a cookie name", cookie);
    if (*domain && !ctl_valid_dns_name(domain + (*domain == '.'), false))
        ctl_errors_add(e, "spec.session.cookieDomain: \"%s\" is not a domain", domain);
    if (ctl_parse_duration(lifetime, &life) < 0 || life <= 0)
        ctl_errors_add(e,
                       "spec.session.lifetime: \"%s\" must be a duration > 0 like 12h or "
                       "1h30m",
                       lifetime);
    if (ctl_parse_duration(refresh, &ref) < 0)
        ctl_errors_add(e, "spec.session.refresh: \"%s\" must be a duration like 0s or 30m",
                       refresh);
    else if (life > 0 && ref >= life)
        ctl_errors_add(e, "spec.session.refresh: must be shorter than lifetime");
}

static json_t *
norm_session(struct ctl_errors *e, const json_t *spec)
{
    static const char *const keys[] = {"cookieName", "cookieDomain", "lifetime", "refresh",
                                       "sameSite",   "store",        NULL};
    const json_t *s = obj_field(e, spec, "session", "spec", keys);
    const char *p = "spec.session";
    const char *cookie, *domain, *life, *ref, *ss, *store;

    cookie = str_field(e, s, "cookieName", p, "_portcullis");
    domain = str_field(e, s, "cookieDomain", p, "");
    life = str_field(e, s, "lifetime", p, "12h");
    ref = str_field(e, s, "refresh", p, "0s");
    ss = str_field(e, s, "sameSite", p, "Lax");
    store = str_field(e, s, "store", p, "cookie");
    check_session_values(e, cookie, domain, life, ref);
    if (strcmp(store, "cookie") && strcmp(store, "redis"))
        ctl_errors_add(e,
                       "spec.session.store: Unsupported value: \"%s\": supported values: "
                       "\"cookie\", \"redis\"",
                       store);
    if (strcmp(ss, "Lax") && strcmp(ss, "Strict") && strcmp(ss, "None"))
        ctl_errors_add(e,
                       "spec.session.sameSite: Unsupported value: \"%s\": supported values: "
                       "\"Lax\", \"Strict\", \"None\"",
                       ss);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "cookieName", cookie, "cookieDomain", domain,
                     "lifetime", life, "refresh", ref, "sameSite", ss, "store", store);
}

static json_t *
default_upstream_headers(void)
{
    return json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}]", "name", "X-Auth-Request-User",
                     "claim", "sub", "name", "X-Auth-Request-Email", "claim", "email", "name",
                     "X-Auth-Request-Preferred-Username", "claim", "preferred_username", "name",
                     "X-Auth-Request-Groups", "claim", "groups");
}

static void
norm_header(struct ctl_errors *e, const json_t *h, size_t i, json_t *out)
{
    static const char *const keys[] = {"name", "claim", NULL};
    char p[PATH_LEN];
    const char *name, *claim;

    snprintf(p, sizeof(p), "spec.upstreamHeaders[%zu]", i);
    if (!json_is_object(h)) {
        ctl_errors_add(e, "%s: must be an object with name and claim", p);
        return;
    }
    ctl_check_keys(e, h, p, keys);
    name = str_field(e, h, "name", p, "");
    claim = str_field(e, h, "claim", p, "");
    if (!ctl_valid_header_name(name))
        ctl_errors_add(e, "%s.name: \"%s\" is not a header name", p, name);
    if (*claim == '\0')
        ctl_errors_add(e, "%s.claim: Required value", p);
    for (size_t j = 0; j < json_array_size(out); j++)
        if (strcasecmp(pc_json_str(json_array_get(out, j), "name"), name) == 0)
            ctl_errors_add(e, "%s.name: duplicate header \"%s\"", p, name);
    json_array_append_new(out, json_pack("{s:s,s:s}", "name", name, "claim", claim));
}

static json_t *
norm_upstream_headers(struct ctl_errors *e, const json_t *spec)
{
    const json_t *in = json_object_get(spec, "upstreamHeaders");
    json_t *out;
    size_t i;
    json_t *h;

    if (!in || json_is_null(in))
        return default_upstream_headers();
    out = json_array();
    if (!json_is_array(in)) {
        ctl_errors_add(e, "spec.upstreamHeaders: must be a list");
        return out;
    }
    if (json_array_size(in) > 32)
        ctl_errors_add(e, "spec.upstreamHeaders: must have at most 32 items");
    json_array_foreach(in, i, h) norm_header(e, h, i, out);
    return out;
}

static json_t *
norm_bearer(struct ctl_errors *e, const json_t *spec)
{
    static const char *const keys[] = {"enabled", "audiences", NULL};
    const json_t *b = obj_field(e, spec, "bearerTokens", "spec", keys);

    json_t *out = json_object();

    json_object_set_new(out, "enabled",
                        json_boolean(bool_field(e, b, "enabled", "spec.bearerTokens")));
    json_object_set_new(out, "audiences",
                        strlist_field(e, b, "audiences", "spec.bearerTokens", 32, NULL));
    return out;
}

/* Istio path patterns: exact, "*", "prefix*" or "*suffix". */
static bool
path_pattern_matches(const char *pat, const char *path)
{
    size_t n = strlen(pat), m = strlen(path);

    if (strcmp(pat, "*") == 0)
        return true;
    if (n > 0 && pat[n - 1] == '*')
        return strncmp(pat, path, n - 1) == 0;
    if (pat[0] == '*')
        return m >= n - 1 && strcmp(path + m - (n - 1), pat + 1) == 0;
    return strcmp(pat, path) == 0;
}

/*
 * An exact callback or sign-out path in paths.skip is dropped when rendering; a wildcard that
 * would cover one would break every login, so it is refused.
 */
static void
check_skip_paths(struct ctl_errors *e, const json_t *spec)
{
    const char *cb = pc_json_str(json_object_get(spec, "oidc"), "callbackPath");
    size_t i;
    json_t *p;

    json_array_foreach(pc_json_path(spec, "paths.skip"), i, p)
    {
        const char *s = json_string_value(p);

        if (strchr(s, '*') == NULL)
            continue;
        if ((cb && path_pattern_matches(s, cb)) || path_pattern_matches(s, CTL_SIGN_OUT_PATH))
            ctl_errors_add(e,
                           "spec.paths.skip[%zu]: \"%s\" would skip %s, which authd must "
                           "see",
                           i, s, cb && path_pattern_matches(s, cb) ? cb : CTL_SIGN_OUT_PATH);
    }
}

int
ctl_spec_normalize(const json_t *spec, bool allow_insecure, json_t **out, struct ctl_errors *e)
{
    static const char *const keys[] = {
        "hosts",       "gateway",      "oidc", "access",  "paths",    "session", "upstreamHeaders",
        "passIDToken", "bearerTokens", "mode", "ingress", "workload", NULL};
    size_t before = e->n + e->dropped;
    const char *mode;
    json_t *n, *oidc, *ing, *workload;

    *out = NULL;
    if (!json_is_object(spec)) {
        ctl_errors_add(e, "spec: Required value");
        return PC_EINVAL;
    }
    ctl_check_keys(e, spec, "spec", keys);
    /* One section after the other, so messages come in the order of the fields. */
    n = json_object();
    json_object_set_new(n, "hosts", norm_hosts(e, spec));
    if ((workload = ctl_workload_normalize(e, spec)) != NULL)
        json_object_set_new(n, "workload", workload);
    else
        json_object_set_new(n, "gateway", norm_gateway(e, spec));
    oidc = norm_oidc(e, spec, allow_insecure);
    if (oidc)
        json_object_set_new(n, "oidc", oidc);
    json_object_set_new(n, "access", norm_access(e, spec));
    json_object_set_new(n, "paths", norm_paths(e, spec));
    json_object_set_new(n, "session", norm_session(e, spec));
    json_object_set_new(n, "upstreamHeaders", norm_upstream_headers(e, spec));
    json_object_set_new(n, "passIDToken", json_boolean(bool_field(e, spec, "passIDToken", "spec")));
    json_object_set_new(n, "bearerTokens", norm_bearer(e, spec));
    mode = str_field(e, spec, "mode", "spec", "Enforce");
    if (strcmp(mode, "Enforce") && strcmp(mode, "ReportOnly"))
        ctl_errors_add(e,
                       "spec.mode: Unsupported value: \"%s\": supported values: \"Enforce\", "
                       "\"ReportOnly\"",
                       mode);
    json_object_set_new(n, "mode", json_string(mode));
    if ((ing = ctl_ingress_normalize(e, spec)))
        json_object_set_new(n, "ingress", ing);
    if (n) {
        check_skip_paths(e, n);
        ctl_ingress_check(e, n);
    }
    if (e->n + e->dropped != before || !n) {
        json_decref(n);
        return PC_EINVAL;
    }
    *out = n;
    return 0;
}

/* ---- names ------------------------------------------------------------------------------ */

char *
ctl_k8s_name(const char *prefix, const char *ns, const char *name, size_t max)
{
    char *joined = pc_xasprintf("%s-%s-%s", prefix, ns, name);
    char *ident = pc_xasprintf("%s/%s", ns, name);
    bool changed = false;
    char *hex, *out;

    for (char *p = joined; *p; p++) {
        if (*p == '.' || *p == '_' || isupper((unsigned char)*p)) {
            *p = *p == '.' || *p == '_' ? '-' : (char)tolower((unsigned char)*p);
            changed = true;
        }
    }
    if (!changed && strlen(joined) <= max) {
        free(ident);
        return joined;
    }
    hex = pc_sha256_hex(ident, strlen(ident));
    hex[10] = '\0';
    if (strlen(joined) > max - 11)
        joined[max - 11] = '\0';
    out = pc_xasprintf("%s-%s", joined, hex);
    free(hex);
    free(ident);
    free(joined);
    return out;
}

char *
ctl_policy_name(const char *ns, const char *name)
{
    return ctl_k8s_name("portcullis", ns, name, 63);
}
