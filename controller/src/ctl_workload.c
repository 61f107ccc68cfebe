/*
 * ctl_workload.c - sidecar mode: a ProtectedHost whose spec.workload selects an app's own pods
 * instead of a gateway (docs/design.md, "auth sidecar").
 *
 * The check then runs in the app's pod: the workload's sidecar Envoy asks the authd container
 * next to the app, through the mesh provider CTL_LOCAL_PROVIDER whose service is a local name
 * that a ServiceEntry in the namespace resolves to 127.0.0.1 (Istio's in-pod ext_authz
 * pattern). That authd must not hold other namespaces' client secrets, so the entries of a
 * namespace's sidecar hosts go to one shard Secret in that namespace, never to the central
 * shards. Pure: JSON in, JSON out.
 */
#include "controller.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/b64.h"
#include "portcullis/crypto.h"
#include "portcullis/json.h"

/* A label key: an optional DNS prefix and '/', then a name of 1..63 [A-Za-z0-9._-]. */
static bool
valid_label_key(const char *k)
{
    const char *slash = strchr(k, '/'), *name = slash ? slash + 1 : k;
    size_t n = strlen(name);

    if (slash) {
        char *prefix = pc_xstrndup(k, (size_t)(slash - k));
        bool ok = ctl_valid_dns_name(prefix, false);

        free(prefix);
        if (!ok)
            return false;
    }
    if (n == 0 || n > 63 || !isalnum((unsigned char)name[0]) ||
        !isalnum((unsigned char)name[n - 1]))
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

/* A label value: empty, or 1..63 [A-Za-z0-9._-] starting and ending alphanumeric. */
static bool
valid_label_value(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = s ? strlen(s) : 0;

    if (!s || n != json_string_length(v) || n > 63)
        return false;
    if (n == 0)
        return true;
    if (!isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

/*
 * The apiserver writes spec.gateway's defaults ({namespace: istio-system}) into every
 * ProtectedHost, so only a gateway that says more than that is set next to the workload.
 */
static bool
gateway_is_set(const json_t *spec)
{
    const json_t *g = json_object_get(spec, "gateway");
    const char *ns = pc_json_str(g, "namespace");

    if (!g || json_is_null(g))
        return false;
    if (!json_is_object(g))
        return true;
    if (json_object_get(g, "name") || json_object_get(g, "selector"))
        return true;
    return json_object_size(g) > (ns ? 1u : 0u) || (ns && strcmp(ns, "istio-system") != 0);
}

static json_t *
match_labels(struct ctl_errors *e, const json_t *sel)
{
    const json_t *ml = json_object_get(sel, "matchLabels");
    json_t *out = json_object();
    const char *k;
    json_t *v;

    if (!json_is_object(ml) || json_object_size(ml) == 0) {
        ctl_errors_add(e, "spec.workload.selector.matchLabels: Required value: at least one "
                          "label of the app's pods");
        return out;
    }
    if (json_object_size(ml) > 16)
        ctl_errors_add(e, "spec.workload.selector.matchLabels: must have at most 16 labels");
    json_object_foreach((json_t *)ml, k, v)
    {
        if (!valid_label_key(k))
            ctl_errors_add(e, "spec.workload.selector.matchLabels: \"%.80s\" is not a label key",
                           k);
        else if (!valid_label_value(v))
            ctl_errors_add(e, "spec.workload.selector.matchLabels.%s: must be a label value", k);
        else
            json_object_set(out, k, v);
    }
    return out;
}

json_t *
ctl_workload_normalize(struct ctl_errors *e, const json_t *spec)
{
    const json_t *w = json_object_get(spec, "workload"), *sel;
    const char *key;
    json_t *v;

    if (!w || json_is_null(w))
        return NULL;
    if (gateway_is_set(spec))
        ctl_errors_add(e, "spec.workload: set either workload (the app's own pods, sidecar "
                          "mode) or gateway, not both");
    if (!json_is_object(w)) {
        ctl_errors_add(e, "spec.workload: must be an object with selector.matchLabels");
        return json_pack("{s:{s:{}}}", "selector", "matchLabels");
    }
    json_object_foreach((json_t *)w, key, v)
    {
        if (strcmp(key, "selector") != 0)
            ctl_errors_add(e, "spec.workload.%s: unknown field", key);
    }
    sel = json_object_get(w, "selector");
    if (!json_is_object(sel)) {
        ctl_errors_add(e, "spec.workload.selector: Required value: the app's pods "
                          "(matchLabels)");
        return json_pack("{s:{s:{}}}", "selector", "matchLabels");
    }
    json_object_foreach((json_t *)sel, key, v)
    {
        if (strcmp(key, "matchLabels") != 0)
            ctl_errors_add(e, "spec.workload.selector.%s: unknown field (only matchLabels)", key);
    }
    return json_pack("{s:{s:o}}", "selector", "matchLabels", match_labels(e, sel));
}

int
ctl_workload_check(const char *ns, const json_t *spec, const struct ctl_authd_opts *a,
                   struct ctl_errors *e)
{
    const char *authd_ns = a->namespace ? a->namespace : "portcullis-system";

    if (!spec || !ctl_spec_is_sidecar(spec) || strcmp(ns, authd_ns) != 0)
        return 0;
    ctl_errors_add(e,
                   "spec.workload: sidecar mode is not available in namespace %s, where the "
                   "central authd's config shards are",
                   authd_ns);
    return PC_EINVAL;
}

bool
ctl_spec_is_sidecar(const json_t *spec)
{
    return json_object_get(spec, "workload") != NULL;
}

void
ctl_workload_policy(json_t *policy, const json_t *spec)
{
    json_t *pspec = json_object_get(policy, "spec");
    const json_t *rule = json_array_get(json_object_get(pspec, "rules"), 0);
    const json_t *op = pc_json_path(json_array_get(json_object_get(rule, "to"), 0), "operation");
    const json_t *not_paths = json_object_get(op, "notPaths");
    json_t *rules;

    /* An empty rule matches every request; Istio refuses an empty operation. */
    if (not_paths)
        rules = json_pack("[{s:[{s:{s:O}}]}]", "to", "operation", "notPaths", not_paths);
    else
        rules = json_pack("[{}]");
    json_object_set_new(pspec, "rules", rules);
    json_object_set_new(pspec, "provider", json_pack("{s:s}", "name", CTL_LOCAL_PROVIDER));
    json_object_del(pspec, "targetRefs");
    json_object_set_new(
        pspec, "selector",
        json_pack("{s:O}", "matchLabels", pc_json_path(spec, "workload.selector.matchLabels")));
}

/* A provider rendered for CTL_LOCAL_PORT, renamed and pointed at the local name. */
static json_t *
localize(json_t *p)
{
    json_object_set_new(p, "name", json_string(CTL_LOCAL_PROVIDER));
    json_object_set_new(json_object_get(p, "envoyExtAuthzHttp"), "service",
                        json_string(CTL_LOCAL_SERVICE));
    return p;
}

json_t *
ctl_render_local_provider(const json_t *names)
{
    return localize(ctl_render_provider(names, &(struct ctl_authd_opts){.port = CTL_LOCAL_PORT}));
}

static json_t *
labels(void)
{
    return json_pack("{s:s,s:s}", CTL_LABEL_MANAGED_BY, "portcullis", CTL_LABEL_SIDECAR, "true");
}

json_t *
ctl_render_local_service_entry(const char *ns)
{
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:o},s:{s:[s],s:s,s:s,s:[{s:i,s:s,s:s}],s:[{s:s}],"
                     "s:[s]}}",
                     "apiVersion", "networking.istio.io/v1", "kind", "ServiceEntry", "metadata",
                     "name", CTL_LOCAL_SERVICE_ENTRY, "namespace", ns, "labels", labels(), "spec",
                     "hosts", CTL_LOCAL_SERVICE, "location", "MESH_INTERNAL", "resolution",
                     "STATIC", "ports", "number", CTL_LOCAL_PORT, "name", "http", "protocol",
                     "HTTP", "endpoints", "address", "127.0.0.1", "exportTo", ".");
}

json_t *
ctl_render_sidecar_shard(const char *ns, const char *field, const char *value, long long gen)
{
    json_t *l = labels();
    char g[32];

    snprintf(g, sizeof(g), "%lld", gen);
    json_object_set_new(l, CTL_LABEL_AUTHD_CONFIG, json_string("shard"));
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:o,s:{s:s}},s:s,s:{s:s}}", "apiVersion", "v1", "kind",
                     "Secret", "metadata", "name", CTL_SIDECAR_SHARD, "namespace", ns, "labels", l,
                     "annotations", CTL_ANNOT_GENERATION, g, "type", "Opaque", field, "hosts.yaml",
                     value);
}

/* ---- a namespace's copy of the revocation list ------------------------------------------ */

/* The base64 length of the largest document authd accepts (revwatch.c bounds it so too). */
#define REVCOPY_MAX_B64 ((PC_REVOKE_MAX_DOC / 3 + 1) * 4 + 4)

int
ctl_revcopy_source(const json_t *central, char **b64, struct pc_diag *d)
{
    const json_t *v = json_object_get(json_object_get(central, "data"), PC_REVOKE_KEY);
    const char *s = v ? json_string_value(v) : "";
    size_t n = v ? json_string_length(v) : 0, len = 0;
    struct pc_revocations l;
    unsigned char *text = NULL;
    int rc;

    *b64 = NULL;
    if (s && n > REVCOPY_MAX_B64) {
        pc_diag_set(d, 0, 0, "%s holds over %d bytes", PC_REVOKE_KEY, PC_REVOKE_MAX_DOC);
        return PC_ETOOBIG;
    }
    if (!s || strlen(s) != n || pc_b64_decode(s, n, &text, &len) != 0 || memchr(text, '\0', len)) {
        free(text);
        pc_diag_set(d, 0, 0, "%s is not base64 of a text", PC_REVOKE_KEY);
        return PC_EPARSE;
    }
    rc = pc_revocations_parse((const char *)text, len, &l, d);
    pc_revocations_release(&l);
    free(text);
    if (rc != 0) {
        pc_diag_fold(d);
        return rc;
    }
    *b64 = pc_xstrdup(s);
    return 0;
}

json_t *
ctl_render_revocations_copy(const char *ns, const char *b64, const char *authd_ns)
{
    json_t *l = labels();

    json_object_set_new(l, CTL_LABEL_AUTHD_CONFIG, json_string(CTL_REVCOPY_LABEL));
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:o,s:{s:s++}},s:s,s:{s:s}}", "apiVersion", "v1", "kind",
                     "Secret", "metadata", "name", PC_REVOKE_SECRET, "namespace", ns, "labels", l,
                     "annotations", CTL_ANNOT_COPY_OF, authd_ns, "/", PC_REVOKE_SECRET, "type",
                     "Opaque", "data", PC_REVOKE_KEY, b64);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *
ctl_revcopy_due(const json_t *namespaces, const json_t *written, const json_t *dirty,
                const char *hash, const char *authd_ns)
{
    size_t n = 0, i = 0;
    const char **names = pc_xcalloc(json_object_size(namespaces) + 1, sizeof(*names));
    json_t *due = json_array(), *v;
    const char *ns;

    json_object_foreach((json_t *)namespaces, ns, v)
    {
        const char *last = pc_json_str(written, ns);

        if (strcmp(ns, authd_ns) == 0)
            continue;
        if (!last || strcmp(last, hash) != 0 || json_object_get(dirty, ns))
            names[n++] = ns;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    for (i = 0; i < n; i++)
        json_array_append_new(due, json_string(names[i]));
    free(names);
    return due;
}

/* ---- a namespace's entries --------------------------------------------------------------- */

void
ctl_sidecar_texts_add(json_t *texts, const char *ns, const char *entry)
{
    const json_t *old = json_object_get(texts, ns);
    char *joined = pc_xasprintf("%s%s", old ? json_string_value(old) : "", entry);

    if (old)
        pc_cleanse((char *)json_string_value(old), json_string_length(old));
    json_object_set_new(texts, ns, json_string(joined));
    pc_free_secret(joined);
}

void
ctl_sidecar_texts_finish(json_t *texts)
{
    const char *ns;
    json_t *v;

    json_object_foreach(texts, ns, v)
    {
        char *text = ctl_shard_text(json_string_value(v), json_string_length(v));

        pc_cleanse((char *)json_string_value(v), json_string_length(v));
        json_string_set(v, text);
        pc_free_secret(text);
    }
}

void
ctl_sidecar_texts_free(json_t *texts)
{
    const char *ns;
    json_t *v;

    if (texts == NULL)
        return;
    json_object_foreach(texts, ns, v)
        pc_cleanse((char *)json_string_value(v), json_string_length(v));
    json_decref(texts);
}

json_t *
ctl_hosts_sidecar_texts(const struct ctl_hosts *hs)
{
    json_t *texts = json_object();

    for (size_t i = 0; i < hs->n; i++) {
        const struct ctl_host *h = hs->v[i];

        if (h->sidecar && ctl_host_publishes(h) && h->entry)
            ctl_sidecar_texts_add(texts, h->ns, h->entry);
    }
    ctl_sidecar_texts_finish(texts);
    return texts;
}

json_t *
ctl_hosts_local_provider(const struct ctl_hosts *hs)
{
    bool any = false;

    for (size_t i = 0; i < hs->n && !any; i++)
        any = hs->v[i]->sidecar && ctl_host_publishes(hs->v[i]);
    /* The same header names as the central provider: one list for every host. */
    return any ? localize(ctl_hosts_provider(hs, &(struct ctl_authd_opts){.port = CTL_LOCAL_PORT}))
               : NULL;
}
