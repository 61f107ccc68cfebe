/*
 * ctl_policy.c - the cluster admin's ProtectedHostPolicy: which namespaces may protect which
 * hosts, on which gateways, with which issuers; and the check of one ProtectedHost against it.
 *
 * kube-apiserver applies the same rules at admission (deploy/admission-policy.yaml, in CEL);
 * this copy is what holds when admission is bypassed, removed or not installed yet, and what
 * `render` applies to a GitOps repository. The two must agree: e2e/tests/test_tenancy.py sends
 * the same objects through both. Pure: JSON in, verdicts and messages out.
 *
 * A namespace may use what any rule that selects it allows, field by field. Without a policy
 * every host and issuer is allowed; the gateway namespaces are always limited to the
 * controller's own (--gateway-namespaces), which is also where its RBAC lets it write.
 */
#include "controller.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/http.h"
#include "portcullis/json.h"

#define MAX_RULES 64
#define MAX_NAMES 256
#define MAX_PATTERNS 64
#define MAX_GATEWAYS 32
#define MAX_ISSUERS 32
#define MAX_LABELS 16
#define MAX_EXPRESSIONS 16
#define MAX_VALUES 64
#define MAX_PREFIX 1024 /* the CRD's bound: its CEL rule's cost limits it */
#define WHO_CAN_CHANGE                                                                             \
    "; a cluster admin can change ProtectedHostPolicy " CTL_POLICY_NAME                            \
    " (kubectl edit protectedhostpolicy " CTL_POLICY_NAME ")"

/* ---- matching ------------------------------------------------------------------------------ */

bool
ctl_host_within(const char *host, const char *pattern)
{
    size_t h = strlen(host), p = strlen(pattern);

    if (strcmp(pattern, "*") == 0 || strcmp(pattern, host) == 0)
        return true;
    /* "*.example.com" covers "a.example.com" and "*.a.example.com", never "example.com". */
    return strncmp(pattern, "*.", 2) == 0 && h > p - 1 &&
           strcmp(host + h - (p - 1), pattern + 1) == 0;
}

static bool
str_in(const json_t *list, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(list, i, v) if (strcmp(json_string_value(v), s) == 0) return true;
    return false;
}

/* One matchExpressions entry against labels (an object, never NULL). */
static bool
expression_matches(const json_t *e, const json_t *labels)
{
    const char *op = pc_json_str(e, "operator");
    const char *v = pc_json_str(labels, pc_json_str(e, "key"));
    bool in = v && str_in(json_object_get(e, "values"), v);

    if (strcmp(op, "In") == 0)
        return in;
    if (strcmp(op, "NotIn") == 0)
        return !in;
    return strcmp(op, "Exists") == 0 ? v != NULL : v == NULL;
}

/* labels NULL: unknown; then only the selector of every namespace matches. */
static bool
selector_matches(const json_t *sel, const json_t *labels)
{
    const json_t *ml = json_object_get(sel, "matchLabels");
    const json_t *me = json_object_get(sel, "matchExpressions");
    const char *k;
    json_t *v;
    size_t i;

    if (json_object_size(ml) == 0 && json_array_size(me) == 0)
        return true;
    if (!labels)
        return false;
    json_object_foreach((json_t *)ml, k, v)
    {
        if (!pc_json_str(labels, k) || strcmp(pc_json_str(labels, k), json_string_value(v)) != 0)
            return false;
    }
    json_array_foreach(me, i, v) if (!expression_matches(v, labels)) return false;
    return true;
}

static bool
rule_selects(const json_t *rule, const char *ns, const json_t *labels)
{
    const json_t *sel = pc_json_path(rule, "namespaces.selector");

    return str_in(pc_json_path(rule, "namespaces.names"), ns) ||
           (json_is_object(sel) && selector_matches(sel, labels));
}

/* ---- the check of one ProtectedHost ------------------------------------------------------- */

/* What admission needs of one ProtectedHost and its namespace. */
struct subject {
    const struct ctl_tenancy *t;
    const char *ns;
    const json_t *spec;
    json_t *labels; /* new, NULL when unknown */
    json_t *rules;  /* new: the policy's rules that select ns */
};

/* "p, q, r" of one field of every selected rule; "none" when empty. */
static char *
listed(const json_t *rules, const char *field, bool wildcards_only)
{
    struct pc_buf b;
    size_t i, j;
    json_t *r, *v;

    pc_buf_init(&b, 0);
    json_array_foreach(rules, i, r)
    {
        if (wildcards_only && !json_is_true(json_object_get(r, "allowWildcardHosts")))
            continue;
        json_array_foreach(json_object_get(r, field), j, v)
            pc_buf_appendf(&b, "%s%s", b.len ? ", " : "", json_string_value(v));
    }
    if (b.len == 0)
        pc_buf_appends(&b, "none");
    return pc_buf_detach(&b);
}

/* Whether a rule selecting the namespace (with allowWildcardHosts when wild) covers host. */
static bool
host_allowed(const struct subject *s, const char *host, bool wild)
{
    size_t j, k;
    json_t *r, *p;

    json_array_foreach(s->rules, j, r)
    {
        if (wild && !json_is_true(json_object_get(r, "allowWildcardHosts")))
            continue;
        json_array_foreach(json_object_get(r, "hosts"), k, p)
        {
            if (ctl_host_within(host, json_string_value(p)))
                return true;
        }
    }
    return false;
}

/*
 * A session cookie for Domain=d reaches d and every name below it: the namespace must be
 * allowed to protect all of them, or its cookie (and a replay of it) would reach another
 * team's apps.
 */
static char *
check_cookie_domain(const struct subject *s)
{
    const char *d = pc_json_str(json_object_get(s->spec, "session"), "cookieDomain");
    char *below, *list, *msg = NULL;

    if (!d || !*d)
        return NULL;
    below = pc_xasprintf("*.%s", d + (*d == '.'));
    if (!host_allowed(s, d + (*d == '.'), false) || !host_allowed(s, below, false)) {
        list = listed(s->rules, "hosts", false);
        msg = pc_xasprintf(
            "spec.session.cookieDomain: \"%s\" sends the session cookie to %s and "
            "%s, not all within the hosts namespace %s may protect (%s)" WHO_CAN_CHANGE,
            d, d + (*d == '.'), below, s->ns, list);
        free(list);
    }
    free(below);
    return msg;
}

static char *
check_hosts(const struct subject *s)
{
    size_t i;
    json_t *h;

    json_array_foreach(json_object_get(s->spec, "hosts"), i, h)
    {
        const char *host = json_string_value(h);
        bool wild = strncmp(host, "*.", 2) == 0;
        char *list, *msg;

        if (host_allowed(s, host, wild))
            continue;
        list = listed(s->rules, "hosts", wild);
        if (wild)
            msg = pc_xasprintf("spec.hosts[%zu]: \"%s\" is a wildcard host, and no rule with "
                               "allowWildcardHosts: true lets namespace %s protect it (wildcards "
                               "within: %s)" WHO_CAN_CHANGE,
                               i, host, s->ns, list);
        else
            msg = pc_xasprintf("spec.hosts[%zu]: \"%s\" is not within the hosts namespace %s may "
                               "protect (%s)" WHO_CAN_CHANGE,
                               i, host, s->ns, list);
        free(list);
        return msg;
    }
    return check_cookie_domain(s);
}

/* "ns Gateway name" or "ns pods k=v,k=v" (selector keys in the object's order). */
static void
describe_gateway(struct pc_buf *b, const json_t *g)
{
    const json_t *sel = json_object_get(g, "selector");
    const char *k, *sep = " pods ";
    json_t *v;

    pc_buf_appends(b, pc_json_str(g, "namespace"));
    if (pc_json_str(g, "name")) {
        pc_buf_appendf(b, " Gateway %s", pc_json_str(g, "name"));
        return;
    }
    if (json_object_size(sel) == 0)
        pc_buf_appends(b, " (any)");
    json_object_foreach((json_t *)sel, k, v)
    {
        pc_buf_appendf(b, "%s%s=%s", sep, k, json_string_value(v));
        sep = ",";
    }
}

/* Whether policy entry g allows the ProtectedHost's gateway want (both canonical). */
static bool
gateway_allows(const json_t *g, const json_t *want)
{
    const json_t *sel = json_object_get(g, "selector"), *have = json_object_get(want, "selector");
    const char *name = pc_json_str(g, "name"), *k;
    json_t *v;

    if (strcmp(pc_json_str(g, "namespace"), pc_json_str(want, "namespace")) != 0)
        return false;
    if (name)
        return pc_json_str(want, "name") && strcmp(pc_json_str(want, "name"), name) == 0;
    if (json_object_size(sel) == 0)
        return true;
    /* More labels select fewer pods: the spec's selector must include the entry's. */
    if (pc_json_str(want, "name"))
        return false;
    json_object_foreach((json_t *)sel, k, v)
    {
        if (!pc_json_str(have, k) || strcmp(pc_json_str(have, k), json_string_value(v)) != 0)
            return false;
    }
    return true;
}

static bool
namespace_listed(const char *list, const char *ns)
{
    size_t n = strlen(ns);

    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");

        if (len == n && strncmp(p, ns, n) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

static char *
check_gateway(const struct subject *s)
{
    const json_t *want = json_object_get(s->spec, "gateway");
    const char *gwns = pc_json_str(want, "namespace");
    const char *list =
        s->t->gateway_namespaces ? s->t->gateway_namespaces : CTL_DEFAULT_GATEWAY_NAMESPACES;
    struct pc_buf b;
    size_t i, j;
    json_t *r, *g;
    bool ok = false;

    /* Sidecar mode: the policy goes to the ProtectedHost's own namespace, at its own pods;
     * there is no gateway to hold it to. */
    if (ctl_spec_is_sidecar(s->spec))
        return NULL;
    if (!namespace_listed(list, gwns)) {
        pc_buf_init(&b, 0);
        pc_buf_appendf(&b,
                       "spec.gateway.namespace: \"%s\" is not a gateway namespace of "
                       "portcullis-controller (--gateway-namespaces: ",
                       gwns);
        for (const char *p = list; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ','))
            pc_buf_appendf(&b, "%s%.*s", p == list ? "" : ", ", (int)strcspn(p, ","), p);
        pc_buf_appends(&b, "); whoever installs portcullis can change it (Helm value "
                           "gatewayNamespaces, bootstrap --gateway-namespaces)");
        return pc_buf_detach(&b);
    }
    if (!s->t->policy)
        return NULL;
    json_array_foreach(s->rules, i, r)
    {
        json_array_foreach(json_object_get(r, "gateways"), j, g) ok = ok || gateway_allows(g, want);
    }
    if (ok)
        return NULL;
    pc_buf_init(&b, 0);
    pc_buf_appends(&b, "spec.gateway: ");
    describe_gateway(&b, want);
    pc_buf_appendf(&b, " is not among the gateways namespace %s may attach to (", s->ns);
    json_array_foreach(s->rules, i, r)
    {
        json_array_foreach(json_object_get(r, "gateways"), j, g)
        {
            pc_buf_appends(&b, ok ? ", " : "");
            describe_gateway(&b, g);
            ok = true;
        }
    }
    pc_buf_appendf(&b, "%s)" WHO_CAN_CHANGE, ok ? "" : "none");
    return pc_buf_detach(&b);
}

static char *
check_issuer(const struct subject *s)
{
    const char *iss = pc_json_str(json_object_get(s->spec, "oidc"), "issuerURL");
    size_t i, j;
    json_t *r, *p;
    char *list, *msg;

    json_array_foreach(s->rules, i, r)
    {
        json_array_foreach(json_object_get(r, "issuers"), j, p)
        {
            if (pc_url_within(iss, json_string_value(p)))
                return NULL;
        }
    }
    list = listed(s->rules, "issuers", false);
    msg = pc_xasprintf("spec.oidc.issuerURL: \"%s\" is not within the issuers namespace %s may "
                       "use (%s)" WHO_CAN_CHANGE,
                       iss, s->ns, list);
    free(list);
    return msg;
}

/* Why no rule selects the namespace. */
static char *
unselected(const struct subject *s)
{
    bool selectors = false;
    size_t i;
    json_t *r;

    json_array_foreach(json_object_get(s->t->policy, "rules"), i, r) selectors =
        selectors || json_is_object(pc_json_path(r, "namespaces.selector"));
    return pc_xasprintf("metadata.namespace: no rule of ProtectedHostPolicy " CTL_POLICY_NAME
                        " selects namespace %s, so it may protect no host%s" WHO_CAN_CHANGE,
                        s->ns,
                        selectors && !s->labels
                            ? " (its labels are unknown here: give its Namespace manifest too)"
                            : "");
}

/* The issuer prefixes of the rules that select the namespace, each once. */
static json_t *
prefixes_of(const json_t *rules)
{
    json_t *out = json_array(), *r, *p;
    size_t i, j;

    json_array_foreach(rules, i, r)
    {
        json_array_foreach(json_object_get(r, "issuers"), j, p)
        {
            if (!str_in(out, json_string_value(p)))
                json_array_append(out, p);
        }
    }
    return out;
}

static enum ctl_verdict
judge(const struct subject *s, char **message)
{
    if (s->t->policy_error) {
        *message = pc_xasprintf("ProtectedHostPolicy " CTL_POLICY_NAME " is invalid, so nothing "
                                "is allowed until it is fixed: %s" WHO_CAN_CHANGE,
                                s->t->policy_error);
        return CTL_HOST_NOT_ALLOWED;
    }
    if (s->t->policy && json_array_size(s->rules) == 0) {
        *message = unselected(s);
        return CTL_HOST_NOT_ALLOWED;
    }
    if (s->t->policy && (*message = check_hosts(s)))
        return CTL_HOST_NOT_ALLOWED;
    if ((*message = check_gateway(s)))
        return CTL_GATEWAY_NOT_ALLOWED;
    if (s->t->policy && (*message = check_issuer(s)))
        return CTL_ISSUER_NOT_ALLOWED;
    return CTL_ACCEPTED;
}

enum ctl_verdict
ctl_policy_admit(const struct ctl_tenancy *t, const char *ns, const json_t *spec, char **message,
                 json_t **prefixes)
{
    static const struct ctl_tenancy defaults = {0};
    struct subject s = {.t = t ? t : &defaults, .ns = ns, .spec = spec};
    enum ctl_verdict v;
    size_t i;
    json_t *r;

    *message = NULL;
    if (prefixes)
        *prefixes = NULL;
    s.rules = json_array();
    if (s.t->policy) {
        s.labels = s.t->labels ? s.t->labels(s.t->ud, ns) : NULL;
        json_array_foreach(json_object_get(s.t->policy, "rules"), i, r)
        {
            if (rule_selects(r, ns, s.labels))
                json_array_append(s.rules, r);
        }
    }
    v = judge(&s, message);
    if (v == CTL_ACCEPTED && s.t->policy && prefixes)
        *prefixes = prefixes_of(s.rules);
    json_decref(s.rules);
    json_decref(s.labels);
    return v;
}

void
ctl_spec_set_prefixes(json_t *spec, json_t *prefixes)
{
    if (prefixes)
        json_object_set_new(json_object_get(spec, "oidc"), "allowedURLPrefixes", prefixes);
}

/* ---- parsing ------------------------------------------------------------------------------ */

typedef bool (*value_ok_fn)(const char *s);

typedef json_t *(*object_norm_fn)(struct ctl_errors *e, const json_t *item, const char *path);

/* The list at obj[key]; NULL when absent, or not a list of at most max items (reported). */
static const json_t *
list_at(struct ctl_errors *e, const json_t *obj, const char *key, const char *path, size_t max)
{
    const json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_array(v) || json_array_size(v) > max) {
        ctl_errors_add(e, "%s.%s: must be a list of at most %zu items", path, key, max);
        return NULL;
    }
    return v;
}

/* New array of fn's results over the list at obj[key] (absent: empty; "path.key[i]"). */
static json_t *
objects(struct ctl_errors *e, const json_t *obj, const char *key, const char *path, size_t max,
        object_norm_fn fn)
{
    const json_t *v = list_at(e, obj, key, path, max);
    json_t *out = json_array(), *it;
    size_t i;

    json_array_foreach(v, i, it)
    {
        char *p = pc_xasprintf("%s.%s[%zu]", path, key, i);
        json_t *n = fn(e, it, p);

        if (n)
            json_array_append_new(out, n);
        free(p);
    }
    return out;
}

/* New array of the strings at obj[key] (absent: empty), each passing ok, each once. */
static json_t *
strings(struct ctl_errors *e, const json_t *obj, const char *key, const char *path, size_t max,
        value_ok_fn ok, const char *what)
{
    const json_t *v = list_at(e, obj, key, path, max);
    json_t *out = json_array(), *it;
    size_t i;

    json_array_foreach(v, i, it)
    {
        const char *s = json_string_value(it);

        if (!s || strlen(s) != json_string_length(it) || strlen(s) > 2048 || (ok && !ok(s)))
            ctl_errors_add(e, "%s.%s[%zu]: must be %s", path, key, i, what);
        else if (!str_in(out, s))
            json_array_append(out, it);
    }
    return out;
}

/* New copy of a map of label values at obj[key] (absent: {}). */
static json_t *
labels_map(struct ctl_errors *e, const json_t *obj, const char *key, const char *path)
{
    const json_t *v = json_object_get(obj, key);
    json_t *out = json_object(), *val;
    const char *k;

    if (!v || json_is_null(v))
        return out;
    if (!json_is_object(v) || json_object_size(v) > MAX_LABELS) {
        ctl_errors_add(e, "%s.%s: must be a map of at most %d labels", path, key, MAX_LABELS);
        return out;
    }
    json_object_foreach((json_t *)v, k, val)
    {
        if (!json_is_string(val) || json_string_length(val) > 63 ||
            strlen(json_string_value(val)) != json_string_length(val))
            ctl_errors_add(e, "%s.%s.%s: must be a label value", path, key, k);
        else
            json_object_set(out, k, val);
    }
    return out;
}

static bool
valid_namespace(const char *s)
{
    return strlen(s) <= 63 && !strchr(s, '.') && ctl_valid_dns_name(s, false);
}

static bool
valid_pattern(const char *s)
{
    return strcmp(s, "*") == 0 || ctl_valid_dns_name(s, true);
}

/* http(s)://host[:port][/path], lowercase host, no query, fragment, userinfo or dot segment. */
static bool
valid_prefix(const char *s)
{
    const char *host = strncmp(s, "https://", 8) == 0  ? s + 8
                       : strncmp(s, "http://", 7) == 0 ? s + 7
                                                       : NULL;
    size_t n;

    size_t digits;

    if (!host || strlen(s) > MAX_PREFIX ||
        (n = strspn(host, "abcdefghijklmnopqrstuvwxyz0123456789.-")) == 0)
        return false;
    if (host[n] == ':') {
        digits = strspn(host + n + 1, "0123456789");
        if (digits == 0 || digits > 5)
            return false;
        n += 1 + digits;
    }
    if (host[n] != '\0' && host[n] != '/')
        return false;
    for (const char *p = host + n; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || strchr("?#\\", *p))
            return false;
    /* A URL below it with a dot segment is within nothing: the prefix must not have one. */
    return pc_url_within(s, s);
}

static const char *const operators[] = {"In", "NotIn", "Exists", "DoesNotExist", NULL};

static json_t *
norm_expression(struct ctl_errors *e, const json_t *x, const char *path)
{
    static const char *const keys[] = {"key", "operator", "values", NULL};
    const char *key = pc_json_str(x, "key"), *op = pc_json_str(x, "operator");
    json_t *values;
    size_t i = 0;

    if (!json_is_object(x)) {
        ctl_errors_add(e, "%s: must be an object with key and operator", path);
        return NULL;
    }
    ctl_check_keys(e, x, path, keys);
    while (op && operators[i] && strcmp(operators[i], op) != 0)
        i++;
    if (!key || !*key)
        ctl_errors_add(e, "%s.key: Required value", path);
    if (!op || !operators[i])
        ctl_errors_add(e, "%s.operator: must be In, NotIn, Exists or DoesNotExist", path);
    values = strings(e, x, "values", path, MAX_VALUES, NULL, "a label value");
    if (op && operators[i] && (i < 2) != (json_array_size(values) > 0))
        ctl_errors_add(e, "%s.values: In and NotIn take values; Exists and DoesNotExist none",
                       path);
    return json_pack("{s:s,s:s,s:o}", "key", key ? key : "", "operator", op ? op : "", "values",
                     values);
}

static json_t *
norm_selector(struct ctl_errors *e, const json_t *sel, const char *path)
{
    static const char *const keys[] = {"matchLabels", "matchExpressions", NULL};

    if (!json_is_object(sel)) {
        ctl_errors_add(e, "%s: must be a label selector", path);
        return json_pack("{s:{},s:[]}", "matchLabels", "matchExpressions");
    }
    ctl_check_keys(e, sel, path, keys);
    return json_pack("{s:o,s:o}", "matchLabels", labels_map(e, sel, "matchLabels", path),
                     "matchExpressions",
                     objects(e, sel, "matchExpressions", path, MAX_EXPRESSIONS, norm_expression));
}

static json_t *
norm_namespaces(struct ctl_errors *e, const json_t *rule, const char *path)
{
    static const char *const keys[] = {"names", "selector", NULL};
    const json_t *n = json_object_get(rule, "namespaces"), *sel = json_object_get(n, "selector");
    char *p = pc_xasprintf("%s.namespaces", path), *sp;
    json_t *out;

    if (!json_is_object(n) || (!json_object_get(n, "names") && !sel)) {
        ctl_errors_add(e, "%s: Required value: names or a selector", p);
        free(p);
        return json_pack("{s:[]}", "names");
    }
    ctl_check_keys(e, n, p, keys);
    out = json_pack("{s:o}", "names",
                    strings(e, n, "names", p, MAX_NAMES, valid_namespace, "a namespace name"));
    if (sel && !json_is_null(sel)) {
        sp = pc_xasprintf("%s.selector", p);
        json_object_set_new(out, "selector", norm_selector(e, sel, sp));
        free(sp);
    }
    free(p);
    return out;
}

static json_t *
norm_gateway_entry(struct ctl_errors *e, const json_t *g, const char *path)
{
    static const char *const keys[] = {"namespace", "selector", "name", NULL};
    const char *ns = pc_json_str(g, "namespace"), *name = pc_json_str(g, "name");
    const json_t *sel = json_object_get(g, "selector");
    json_t *out;

    if (!json_is_object(g)) {
        ctl_errors_add(e, "%s: must be an object with a namespace", path);
        return NULL;
    }
    ctl_check_keys(e, g, path, keys);
    if (!ns || !valid_namespace(ns))
        ctl_errors_add(e, "%s.namespace: Required value: a namespace name", path);
    out = json_pack("{s:s}", "namespace", ns ? ns : "");
    if (name && sel)
        ctl_errors_add(e,
                       "%s: set either selector (gateway pods) or name (a Gateway API "
                       "Gateway), not both",
                       path);
    if (name && !ctl_valid_dns_name(name, false))
        ctl_errors_add(e, "%s.name: \"%s\" is not a Gateway name", path, name);
    if (name)
        json_object_set_new(out, "name", json_string(name));
    else if (sel && !json_is_null(sel))
        json_object_set_new(out, "selector", labels_map(e, g, "selector", path));
    return out;
}

static json_t *
norm_rule(struct ctl_errors *e, const json_t *rule, size_t i)
{
    static const char *const keys[] = {"namespaces", "hosts",   "allowWildcardHosts",
                                       "gateways",   "issuers", NULL};
    const json_t *wild = json_object_get(rule, "allowWildcardHosts");
    char p[64];

    snprintf(p, sizeof(p), "spec.rules[%zu]", i);
    if (!json_is_object(rule)) {
        ctl_errors_add(e, "%s: must be an object", p);
        return NULL;
    }
    ctl_check_keys(e, rule, p, keys);
    if (wild && !json_is_null(wild) && !json_is_boolean(wild))
        ctl_errors_add(e, "%s.allowWildcardHosts: must be a boolean", p);
    return json_pack("{s:o,s:o,s:b,s:o,s:o}", "namespaces", norm_namespaces(e, rule, p), "hosts",
                     strings(e, rule, "hosts", p, MAX_PATTERNS, valid_pattern,
                             "a host pattern (a lowercase DNS name, \"*.\" and a name, or \"*\")"),
                     "allowWildcardHosts", json_is_true(wild), "gateways",
                     objects(e, rule, "gateways", p, MAX_GATEWAYS, norm_gateway_entry), "issuers",
                     strings(e, rule, "issuers", p, MAX_ISSUERS, valid_prefix,
                             "an http(s) URL prefix with a lowercase host and no query, "
                             "fragment or \".\" segment"));
}

int
ctl_policy_normalize(const json_t *obj, json_t **out, struct ctl_errors *e)
{
    const char *name = pc_json_str(json_object_get(obj, "metadata"), "name");
    const json_t *spec = json_object_get(obj, "spec"), *rules = json_object_get(spec, "rules");
    static const char *const keys[] = {"rules", NULL};
    size_t before = e->n + e->dropped, i;
    json_t *r, *list = json_array();

    *out = NULL;
    if (!name || strcmp(name, CTL_POLICY_NAME) != 0)
        ctl_errors_add(e, "metadata.name: the policy is one object, named " CTL_POLICY_NAME);
    if (!json_is_object(spec) || !json_is_array(rules))
        ctl_errors_add(e, "spec.rules: Required value: a list of rules");
    else if (json_array_size(rules) > MAX_RULES)
        ctl_errors_add(e, "spec.rules: must have at most %d items", MAX_RULES);
    else
        ctl_check_keys(e, spec, "spec", keys);
    json_array_foreach(rules, i, r)
    {
        json_t *n = i < MAX_RULES ? norm_rule(e, r, i) : NULL;

        if (n)
            json_array_append_new(list, n);
    }
    if (e->n + e->dropped != before) {
        json_decref(list);
        return PC_EINVAL;
    }
    *out = json_pack("{s:o}", "rules", list);
    return 0;
}
