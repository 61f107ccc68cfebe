/*
 * ctl_render.c - the objects one ProtectedHost stands for (its AuthorizationPolicy and its
 * entry in authd's config) and the shared ones (authd's whole config, the mesh provider).
 *
 * Every function takes the canonical spec from ctl_spec_normalize, so defaults are already
 * written out and nothing here needs to guess.
 */
#include "controller.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/crypto.h"
#include "portcullis/json.h"
#include "portcullis/yaml.h"

#define AUTHD_DEFAULT_NS "portcullis-system"
#define AUTHD_DEFAULT_SVC "portcullis-authd"
#define AUTHD_DEFAULT_PORT 4180

static const char *const include_in_check[] = {
    "cookie",           "authorization",  "accept",
    "x-requested-with", "sec-fetch-mode", "x-forwarded-proto",
    "x-forwarded-host", "user-agent",     NULL};
static const char *const downstream_on_deny[] = {"content-type",     "set-cookie",    "location",
                                                 "www-authenticate", "cache-control", NULL};

static json_t *
string_array(const char *const *v)
{
    json_t *a = json_array();

    for (; *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

static bool
array_has(const json_t *a, const char *s)
{
    for (size_t i = 0; i < json_array_size(a); i++)
        if (strcmp(json_string_value(json_array_get(a, i)), s) == 0)
            return true;
    return false;
}

/* A label value of at most 63 characters that still identifies s. */
static json_t *
label_value(const char *s)
{
    char *name;
    json_t *v;

    if (strlen(s) <= 63)
        return json_string(s);
    name = ctl_k8s_name("x", "x", s, 63 + 4);
    v = json_string(name + 4); /* drop the "x-x-" the helper's prefix added */
    free(name);
    return v;
}

const char *
ctl_policy_namespace(const char *ns, const json_t *spec)
{
    /* A workload's policy lives next to it; a gateway's in the gateway's namespace. */
    return ctl_spec_is_sidecar(spec) ? ns
                                     : pc_json_str(json_object_get(spec, "gateway"), "namespace");
}

static json_t *
policy_metadata(const char *ns, const char *name, const json_t *spec)
{
    char *pname = ctl_policy_name(ns, name);
    const char *where = ctl_policy_namespace(ns, spec);
    json_t *md = json_pack("{s:s,s:s,s:{s:s,s:s,s:o},s:{s:s++}}", "name", pname, "namespace", where,
                           "labels", CTL_LABEL_MANAGED_BY, "portcullis", CTL_LABEL_OWNER_NS, ns,
                           CTL_LABEL_OWNER_NAME, label_value(name), "annotations", CTL_ANNOT_OWNER,
                           ns, "/", name);

    free(pname);
    return md;
}

/*
 * Istio matches Host headers exactly or by one leading/trailing '*', while the gateway's
 * routes ignore the port, so "h:*" catches "h:8443"; "h." and "h.:*" catch the trailing dot
 * that a catch-all route would pass to the app. A wildcard host cannot carry a port pattern as
 * well ("*.a:*" would be read as a literal suffix): it is listed once, and its policy comes
 * with the EnvoyFilter of ctl_render_host_filter, which strips ports and trailing dots.
 */
static json_t *
policy_hosts(const json_t *hosts)
{
    json_t *out = json_array();
    size_t i;
    json_t *h;

    json_array_foreach(hosts, i, h)
    {
        const char *s = json_string_value(h);

        json_array_append(out, h);
        if (strncmp(s, "*.", 2) == 0)
            continue;
        json_array_append_new(out, json_sprintf("%s:*", s));
        json_array_append_new(out, json_sprintf("%s.", s));
        json_array_append_new(out, json_sprintf("%s.:*", s));
    }
    return out;
}

static bool
has_wildcard(const json_t *hosts)
{
    size_t i;
    json_t *h;

    json_array_foreach(hosts, i, h)
    {
        if (strncmp(json_string_value(h), "*.", 2) == 0)
            return true;
    }
    return false;
}

json_t *
ctl_render_host_filter(const json_t *policy)
{
    const json_t *spec = json_object_get(policy, "spec");
    const json_t *rule = json_array_get(json_object_get(spec, "rules"), 0);
    const json_t *op = pc_json_path(json_array_get(json_object_get(rule, "to"), 0), "operation");
    json_t *f, *fspec;

    if (!has_wildcard(json_object_get(op, "hosts")))
        return NULL;
    fspec = json_pack(
        "{s:[{s:s,s:{s:s,s:{s:{s:{s:s}}}},s:{s:s,s:{s:{s:s,s:b,s:b}}}}]}", "configPatches",
        "applyTo", "NETWORK_FILTER", "match", "context", "GATEWAY", "listener", "filterChain",
        "filter", "name", "envoy.filters.network.http_connection_manager", "patch", "operation",
        "MERGE", "value", "typed_config", "@type",
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "strip_any_host_port", 1, "strip_trailing_host_dot", 1);
    if (json_object_get(spec, "targetRefs"))
        json_object_set(fspec, "targetRefs", json_object_get(spec, "targetRefs"));
    else
        json_object_set_new(
            fspec, "workloadSelector",
            json_pack("{s:O}", "labels", pc_json_path(spec, "selector.matchLabels")));
    f = json_pack("{s:s,s:s,s:O,s:o}", "apiVersion", "networking.istio.io/v1alpha3", "kind",
                  "EnvoyFilter", "metadata", json_object_get(policy, "metadata"), "spec", fspec);
    return f;
}

bool
ctl_parse_host_normalization(const char *s, bool *external)
{
    if (!s || (strcmp(s, "envoyfilter") != 0 && strcmp(s, "external") != 0))
        return false;
    *external = strcmp(s, "external") == 0;
    return true;
}

/* paths.skip without the paths authd itself must see. */
static json_t *
policy_not_paths(const json_t *spec)
{
    const json_t *skip = pc_json_path(spec, "paths.skip");
    const char *cb = pc_json_str(json_object_get(spec, "oidc"), "callbackPath");
    json_t *out = json_array();
    size_t i;
    json_t *p;

    json_array_foreach(skip, i, p)
    {
        const char *s = json_string_value(p);

        if (strcmp(s, cb) != 0 && strcmp(s, CTL_SIGN_OUT_PATH) != 0 && !array_has(out, s))
            json_array_append(out, p);
    }
    return out;
}

json_t *
ctl_render_policy(const char *ns, const char *name, const json_t *spec)
{
    json_t *op = json_pack("{s:o}", "hosts", policy_hosts(json_object_get(spec, "hosts")));
    json_t *not_paths = policy_not_paths(spec);
    const char *gw = pc_json_str(json_object_get(spec, "gateway"), "name");
    json_t *p;

    if (json_array_size(not_paths) > 0)
        json_object_set(op, "notPaths", not_paths);
    json_decref(not_paths);
    p = json_pack("{s:s,s:s,s:o,s:{s:s,s:{s:s},s:[{s:[{s:o}]}]}}", "apiVersion",
                  "security.istio.io/v1", "kind", "AuthorizationPolicy", "metadata",
                  policy_metadata(ns, name, spec), "spec", "action", "CUSTOM", "provider", "name",
                  CTL_PROVIDER_NAME, "rules", "to", "operation", op);
    /* A Gateway API Gateway is named (targetRefs); gateway pods are selected by label. */
    if (ctl_spec_is_sidecar(spec))
        ctl_workload_policy(p, spec);
    else if (gw)
        json_object_set_new(json_object_get(p, "spec"), "targetRefs",
                            json_pack("[{s:s,s:s,s:s}]", "group", "gateway.networking.k8s.io",
                                      "kind", "Gateway", "name", gw));
    else
        json_object_set_new(
            json_object_get(p, "spec"), "selector",
            json_pack("{s:O}", "matchLabels", pc_json_path(spec, "gateway.selector")));
    return p;
}

static json_t *
authd_oidc(const char *ns, const json_t *oidc, const char *client_secret)
{
    json_t *out = json_pack("{s:O,s:O}", "issuerURL", json_object_get(oidc, "issuerURL"),
                            "clientID", json_object_get(oidc, "clientID"));
    const json_t *ref = json_object_get(oidc, "clientSecretRef");

    if (client_secret)
        json_object_set_new(out, "clientSecret", json_string(client_secret));
    else if (ref)
        json_object_set_new(out, "clientSecret",
                            json_sprintf("<secret:%s/%s/%s>", ns, pc_json_str(ref, "name"),
                                         pc_json_str(ref, "key")));
    json_object_set(out, "scopes", json_object_get(oidc, "scopes"));
    json_object_set(out, "claims", json_object_get(oidc, "claims"));
    json_object_set(out, "callbackPath", json_object_get(oidc, "callbackPath"));
    /* Under an admin policy: the only URLs authd may fetch for this issuer (ctl_policy.c). */
    if (json_object_get(oidc, "allowedURLPrefixes"))
        json_object_set(out, "allowedURLPrefixes", json_object_get(oidc, "allowedURLPrefixes"));
    return out;
}

json_t *
ctl_render_authd_host_full(const char *ns, const char *name, const json_t *spec,
                           const char *client_secret)
{
    json_t *session = json_deep_copy(json_object_get(spec, "session"));
    json_t *h;

    /* authd reads an absent cookieDomain as host-only. */
    if (strcmp(pc_json_str(session, "cookieDomain"), "") == 0)
        json_object_del(session, "cookieDomain");
    h = json_pack("{s:s++,s:O,s:o,s:O,s:O,s:o,s:O,s:O,s:O,s:O}", "id", ns, "/", name, "hosts",
                  json_object_get(spec, "hosts"), "oidc",
                  authd_oidc(ns, json_object_get(spec, "oidc"), client_secret), "access",
                  json_object_get(spec, "access"), "paths", json_object_get(spec, "paths"),
                  "session", session, "upstreamHeaders", json_object_get(spec, "upstreamHeaders"),
                  "passIDToken", json_object_get(spec, "passIDToken"), "bearerTokens",
                  json_object_get(spec, "bearerTokens"), "mode", json_object_get(spec, "mode"));
    return h;
}

/*
 * The entry of a spec with every field at its default: what authd assumes for an absent
 * field. Built once from the normalizer's own defaults, so the two cannot drift apart
 * (test_ctl_compact parses both encodings with authd's parser and compares).
 */
static json_t *defaults;
static pthread_once_t defaults_once = PTHREAD_ONCE_INIT;

static void
make_defaults(void)
{
    json_t *in = json_pack("{s:[s],s:{s:s,s:s}}", "hosts", "x.invalid", "oidc", "issuerURL",
                           "https://x.invalid", "clientID", "x"),
           *spec = NULL;
    struct ctl_errors errs = {0};

    if (ctl_spec_normalize(in, false, &spec, &errs) != 0)
        abort();
    defaults = ctl_render_authd_host_full("x", "x", spec, NULL);
    ctl_errors_release(&errs);
    json_decref(spec);
    json_decref(in);
}

/* Removes from entry every field equal to the one in def, and objects left empty. */
static void
prune(json_t *entry, const json_t *def)
{
    const char *k;
    json_t *v, *tmp;

    json_object_foreach_safe(entry, tmp, k, v)
    {
        const json_t *d = json_object_get(def, k);

        if (d == NULL)
            continue;
        if (json_is_object(v) && json_is_object(d))
            prune(v, d);
        if (json_equal(v, d) || (json_is_object(v) && json_object_size(v) == 0))
            json_object_del(entry, k);
    }
}

json_t *
ctl_render_authd_host(const char *ns, const char *name, const json_t *spec,
                      const char *client_secret)
{
    static const char *const always[] = {"id", "hosts", NULL};
    json_t *h = ctl_render_authd_host_full(ns, name, spec, client_secret), *keep = json_object();

    pthread_once(&defaults_once, make_defaults);
    for (size_t i = 0; always[i] != NULL; i++)
        json_object_set(keep, always[i], json_object_get(h, always[i]));
    prune(h, defaults);
    json_object_update(h, keep);
    json_decref(keep);
    return h;
}

json_t *
ctl_render_authd_config(const json_t *hosts, const struct ctl_authd_opts *o)
{
    json_t *cfg = json_pack("{s:s,s:s,s:[s],s:s}", "listen", "0.0.0.0:4180", "adminListen",
                            "0.0.0.0:9090", "cookieSecretFiles", "/etc/portcullis/cookie/secret",
                            "extAuthzPathPrefix", "/ext-authz");

    if (o->port > 0 && o->port != AUTHD_DEFAULT_PORT)
        json_object_set_new(cfg, "listen", json_sprintf("0.0.0.0:%d", o->port));
    if (o->allow_insecure_issuers)
        json_object_set_new(cfg, "allowInsecureIssuers", json_true());
    json_object_set(cfg, "hosts", (json_t *)hosts); /* shared, not copied: 1000s of entries */
    return cfg;
}

void
ctl_headers_collect(json_t *names, const json_t *spec)
{
    size_t i;
    json_t *h;

    json_array_foreach(json_object_get(spec, "upstreamHeaders"), i, h)
    {
        char *lower = pc_xstrdup(pc_json_str(h, "name"));

        for (char *p = lower; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        json_object_set_new(names, lower, json_true());
        free(lower);
    }
}

static int
compare_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted names, then authorization and cookie (once). */
static json_t *
upstream_on_allow(const json_t *names)
{
    size_t n = json_object_size(names), i = 0;
    const char **v = pc_xcalloc(n + 1, sizeof(*v));
    const char *k;
    json_t *val, *out = json_array();

    json_object_foreach((json_t *)names, k, val) v[i++] = k;
    qsort(v, n, sizeof(*v), compare_str);
    for (i = 0; i < n; i++)
        if (strcmp(v[i], "authorization") && strcmp(v[i], "cookie"))
            json_array_append_new(out, json_string(v[i]));
    json_array_append_new(out, json_string("authorization"));
    json_array_append_new(out, json_string("cookie"));
    free(v);
    return out;
}

json_t *
ctl_render_provider(const json_t *names, const struct ctl_authd_opts *o)
{
    const char *ns = o->namespace ? o->namespace : AUTHD_DEFAULT_NS;
    const char *svc = o->service ? o->service : AUTHD_DEFAULT_SVC;
    int port = o->port > 0 ? o->port : AUTHD_DEFAULT_PORT;

    return json_pack("{s:s,s:{s:s+++,s:i,s:s,s:s,s:b,s:s,s:o,s:o,s:o,s:[s]}}", "name",
                     CTL_PROVIDER_NAME, "envoyExtAuthzHttp", "service", svc, ".", ns,
                     ".svc.cluster.local", "port", port, "pathPrefix", "/ext-authz", "timeout",
                     "2s", "failOpen", 0, "statusOnError", "503", "includeRequestHeadersInCheck",
                     string_array(include_in_check), "headersToUpstreamOnAllow",
                     upstream_on_allow(names), "headersToDownstreamOnDeny",
                     string_array(downstream_on_deny), "headersToDownstreamOnAllow", "set-cookie");
}

/* ---- strict check of what is written ----------------------------------------------------- */

static int
check_header_list(const json_t *v, const char *key, struct pc_diag *d)
{
    size_t i;
    json_t *h;

    if (!json_is_array(v) || json_array_size(v) == 0) {
        pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.%s: must be a non-empty list", key);
        return PC_EINVAL;
    }
    json_array_foreach(v, i, h)
    {
        const char *s = json_string_value(h);

        if (!s || !ctl_valid_header_name(s)) {
            pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.%s[%zu]: not a header name", key, i);
            return PC_EINVAL;
        }
        for (const char *p = s; *p; p++)
            if (isupper((unsigned char)*p)) {
                pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.%s[%zu]: must be lowercase", key, i);
                return PC_EINVAL;
            }
    }
    return 0;
}

static int
check_scalars(const json_t *h, struct pc_diag *d)
{
    const char *svc = pc_json_str(h, "service"), *prefix = pc_json_str(h, "pathPrefix");
    const char *timeout = pc_json_str(h, "timeout"), *soe = pc_json_str(h, "statusOnError");
    json_int_t port = json_integer_value(json_object_get(h, "port"));
    long long secs;

    if (!svc || !ctl_valid_dns_name(svc, false))
        pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.service: must be a DNS name");
    else if (!json_is_integer(json_object_get(h, "port")) || port < 1 || port > 65535)
        pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.port: must be 1..65535");
    else if (!prefix || prefix[0] != '/')
        pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.pathPrefix: must start with /");
    else if (!timeout || ctl_parse_duration(timeout, &secs) < 0 || secs <= 0)
        pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.timeout: must be a duration > 0");
    else if (!json_is_false(json_object_get(h, "failOpen")))
        pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.failOpen: must be false");
    else if (!soe || strlen(soe) != 3 || strspn(soe, "0123456789") != 3)
        pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.statusOnError: must be an HTTP status");
    else
        return 0;
    return PC_EINVAL;
}

int
ctl_provider_check(const json_t *provider, struct pc_diag *d)
{
    static const char *const lists[] = {"includeRequestHeadersInCheck", "headersToUpstreamOnAllow",
                                        "headersToDownstreamOnDeny", "headersToDownstreamOnAllow",
                                        NULL};
    static const char *const scalars[] = {"service",  "port",          "pathPrefix", "timeout",
                                          "failOpen", "statusOnError", NULL};
    const json_t *h = json_object_get(provider, "envoyExtAuthzHttp");
    const char *key;
    const char *name = pc_json_str(provider, "name") ? pc_json_str(provider, "name") : "";
    json_t *v;
    int rc;

    if (!json_is_object(provider) || json_object_size(provider) != 2 ||
        (strcmp(name, CTL_PROVIDER_NAME) != 0 && strcmp(name, CTL_LOCAL_PROVIDER) != 0) ||
        !json_is_object(h)) {
        pc_diag_set(d, 0, 0, "provider: must be {name: %s or %s, envoyExtAuthzHttp: {...}}",
                    CTL_PROVIDER_NAME, CTL_LOCAL_PROVIDER);
        return PC_EINVAL;
    }
    json_object_foreach((json_t *)h, key, v)
    {
        bool known = false;

        for (size_t i = 0; lists[i]; i++)
            known = known || strcmp(lists[i], key) == 0;
        for (size_t i = 0; scalars[i]; i++)
            known = known || strcmp(scalars[i], key) == 0;
        if (!known) {
            pc_diag_set(d, 0, 0, "envoyExtAuthzHttp.%s: unknown field", key);
            return PC_EINVAL;
        }
    }
    if ((rc = check_scalars(h, d)) < 0)
        return rc;
    for (size_t i = 0; lists[i]; i++)
        if ((rc = check_header_list(json_object_get(h, lists[i]), lists[i], d)) < 0)
            return rc;
    return 0;
}

char *
ctl_render_authd_entry_text(const json_t *entry)
{
    json_t *one = json_pack("[O]", entry);
    char *text = pc_json_to_yaml_lines(one); /* one line a key: shard_text_shared reads lines */

    json_decref(one);
    return text;
}

char *
ctl_render_authd_text(const char *entries, size_t len, const struct ctl_authd_opts *o)
{
    static const char empty[] = "hosts: []\n";
    json_t *hosts = json_array(), *cfg = ctl_render_authd_config(hosts, o);
    char *head = pc_json_to_yaml(cfg), *at = strstr(head, empty);
    struct pc_buf b;

    json_decref(cfg);
    json_decref(hosts);
    if (len == 0 || !at)
        return head;
    /* Keys are sorted, so "hosts" sits between the fields before and after it. */
    pc_buf_init(&b, 0);
    pc_buf_append(&b, head, (size_t)(at - head));
    pc_buf_append(&b, "hosts:\n", 7);
    pc_buf_append(&b, entries, len);
    pc_buf_append(&b, at + sizeof(empty) - 1, strlen(at + sizeof(empty) - 1));
    free(head);
    return pc_buf_detach(&b);
}

unsigned
ctl_shard_count(const struct ctl_authd_opts *o)
{
    return o->shards > 0 && o->shards <= CTL_SHARDS_MAX ? o->shards : CTL_SHARDS_DEFAULT;
}

unsigned
ctl_shard_of(const char *id, unsigned n)
{
    uint8_t d[32];

    pc_sha256(id, strlen(id), d);
    return (unsigned)((d[0] << 8 | d[1]) % (n ? n : 1));
}

char *
ctl_shard_name(unsigned s)
{
    return pc_xasprintf("%s-%02x", CTL_AUTHD_SECRET, s & 0xff);
}

char *
ctl_shard_text(const char *entries, size_t len)
{
    struct pc_buf b;

    if (len == 0)
        return pc_xstrdup("hosts: []\n");
    pc_buf_init(&b, len + 8);
    b.secret = true;
    pc_buf_append(&b, "hosts:\n", 7);
    pc_buf_append(&b, entries, len);
    return pc_buf_detach(&b);
}

void
ctl_shards_init(struct ctl_shards *sh, unsigned n)
{
    sh->n = n;
    sh->b = pc_xcalloc(n, sizeof(*sh->b));
    for (unsigned s = 0; s < n; s++) {
        pc_buf_init(&sh->b[s], 0);
        sh->b[s].secret = true;
    }
}

void
ctl_shards_add(struct ctl_shards *sh, const char *id, const char *entry)
{
    pc_buf_appends(&sh->b[ctl_shard_of(id, sh->n)], entry);
}

/*
 * A block of an entry's text (as pc_json_to_yaml writes it): a key line at the entry's level
 * ("- key:" or "  key:") ending in ':' and the lines below it indented four or more. *body:
 * the end of the key line (its '\n'); *end: where the block ends. False for other lines.
 */
static bool
block_at(const char *p, const char *lim, const char **body, const char **end)
{
    const char *eol = memchr(p, '\n', (size_t)(lim - p)), *q;

    if (eol == NULL || eol - p < 4 || eol[-1] != ':' || p[2] == ' ' || p[2] == '-' ||
        !((p[0] == '-' || p[0] == ' ') && p[1] == ' '))
        return false;
    for (q = eol + 1; lim - q >= 4 && memcmp(q, "    ", 4) == 0;) {
        const char *nl = memchr(q, '\n', (size_t)(lim - q));

        q = nl ? nl + 1 : lim;
    }
    if (q == eol + 1)
        return false;
    *body = eol;
    *end = q;
    return true;
}

/* The SHA-256 of a block without its two-character prefix ("- " or "  "): blocks compare
 * by it, so the map holds no secret. */
static char *
block_key(const char *p, const char *end)
{
    return pc_sha256_hex(p + 2, (size_t)(end - p - 2));
}

/*
 * Entries that repeat a block (the same oidc client, the same access rules) write it once
 * per shard: the first time with an anchor, then as an alias ("  oidc: *a1"), which authd's
 * YAML loader copies back. Only blocks seen more than once get an anchor.
 */
static char *
shard_text_shared(const char *entries, size_t len)
{
    const char *lim = entries + len, *body, *end;
    json_t *seen = json_object(), *v;
    struct pc_buf b;
    unsigned anchors = 0;

    if (len == 0) {
        json_decref(seen);
        return ctl_shard_text(entries, len);
    }
    for (const char *p = entries; p < lim;) {
        const char *nl = memchr(p, '\n', (size_t)(lim - p));

        if (block_at(p, lim, &body, &end)) {
            char *k = block_key(p, end);

            v = json_object_get(seen, k);
            json_object_set_new(seen, k, json_integer(v ? json_integer_value(v) + 1 : 1));
            free(k);
            p = end;
        } else {
            p = nl ? nl + 1 : lim;
        }
    }
    pc_buf_init(&b, len + 8);
    b.secret = true;
    pc_buf_append(&b, "hosts:\n", 7);
    for (const char *p = entries; p < lim;) {
        const char *nl = memchr(p, '\n', (size_t)(lim - p)), *next = nl ? nl + 1 : lim;
        char *k = NULL;

        if (block_at(p, lim, &body, &end) && (k = block_key(p, end)) &&
            json_is_integer(v = json_object_get(seen, k)) && json_integer_value(v) > 1) {
            pc_buf_append(&b, p, (size_t)(body - p));
            pc_buf_appendf(&b, " &a%u\n", ++anchors);
            pc_buf_append(&b, body + 1, (size_t)(end - body - 1));
            json_object_set_new(seen, k, json_sprintf("a%u", anchors));
            next = end;
        } else if (k && json_is_string(v)) {
            pc_buf_append(&b, p, (size_t)(body - p));
            pc_buf_appendf(&b, " *%s\n", json_string_value(v));
            next = end;
        } else if (k) {
            pc_buf_append(&b, p, (size_t)(end - p));
            next = end;
        } else {
            pc_buf_append(&b, p, (size_t)(next - p));
        }
        free(k);
        p = next;
    }
    json_decref(seen);
    return pc_buf_detach(&b);
}

char **
ctl_shards_finish(struct ctl_shards *sh)
{
    char **out = pc_xcalloc(sh->n + 1, sizeof(*out));

    for (unsigned s = 0; s < sh->n; s++) {
        out[s] = shard_text_shared(sh->b[s].data ? sh->b[s].data : "", sh->b[s].len);
        pc_buf_release(&sh->b[s]);
    }
    free(sh->b);
    sh->b = NULL;
    return out;
}

char *
ctl_provider_snippet(const json_t *provider, size_t max)
{
    static const char more[] = " ... (cut; `portcullis-controller render` prints it whole)";
    char *entry = json_dumps(provider, JSON_COMPACT);
    char *out = pc_xasprintf("add to meshConfig.extensionProviders: %s", entry);
    size_t n = strlen(out);

    free(entry);
    if (max > sizeof(more) && n > max) {
        n = max - sizeof(more) + 1;
        while (n > 0 && (out[n] & 0xc0) == 0x80)
            n--; /* never split a UTF-8 sequence */
        memcpy(out + n, more, sizeof(more));
    }
    return out;
}
