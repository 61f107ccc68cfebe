/*
 * ctl_hosts.c - what `run` keeps per ProtectedHost between changes.
 *
 * ctl_state.c builds the whole desired state at once, which suits `render`. A controller that
 * did that on every change would re-validate and re-render a thousand hosts for one edited
 * spec and hold every rendered tree in memory. Here each host is rendered when its own object
 * or Secret changes, and only small results are kept: the authd entry as YAML text, the
 * claimed hosts and header names as strings. The conflict rule and every message are those of
 * ctl_state.c (test_ctl_hosts checks that both agree), so `render` and `run` say the same.
 */
#include "controller.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/cookiescope.h"
#include "portcullis/crypto.h"
#include "portcullis/json.h"

enum ctl_verdict
ctl_host_verdict(const struct ctl_host *h)
{
    if (!h->valid)
        return CTL_INVALID;
    if (h->refused)
        return h->refused_as;
    if (h->conflict)
        return h->cookie_conflict ? CTL_COOKIE_CONFLICT : CTL_HOST_CONFLICT;
    return h->secret_missing ? CTL_SECRET_MISSING : CTL_ACCEPTED;
}

const char *
ctl_host_message(const struct ctl_host *h)
{
    if (!h->valid)
        return h->invalid;
    if (h->refused)
        return h->refused;
    return h->conflict ? h->conflict : h->secret_missing;
}

bool
ctl_host_publishes(const struct ctl_host *h)
{
    return h->valid && !h->refused && !h->conflict && !h->deleting;
}

bool
ctl_host_has_wildcard(const struct ctl_host *h)
{
    return h->hosts && (strncmp(h->hosts, "*.", 2) == 0 || strstr(h->hosts, "\n*.") != NULL);
}

/* ---- the sorted set ------------------------------------------------------------------------ */

void
ctl_hosts_init(struct ctl_hosts *hs)
{
    memset(hs, 0, sizeof(*hs));
}

static void
host_free(struct ctl_host *h)
{
    free(h->id);
    free(h->ns);
    free(h->name);
    free(h->created);
    free(h->policy_name);
    free(h->policy_ns);
    free(h->invalid);
    free(h->refused);
    free(h->hosts);
    free(h->secret_missing);
    pc_free_secret(h->entry);
    free(h->headers);
    free(h->conflict);
    free(h->cookie);
    free(h->issuer);
    free(h->out_sig);
    free(h->applied_ref);
    free(h->applied_hash);
    free(h->status_sig);
    free(h->snippet_sig);
    free(h->ingress);
    free(h);
}

/* The kept claims no longer describe the hosts: the next settle starts over. */
static void
forget_claims(struct ctl_hosts *hs)
{
    json_decref(hs->claims);
    pc_cookie_scopes_free(hs->cookies);
    hs->claims = NULL;
    hs->cookies = NULL;
    hs->newest = NULL;
}

void
ctl_hosts_release(struct ctl_hosts *hs)
{
    for (size_t i = 0; i < hs->n; i++)
        host_free(hs->v[i]);
    free(hs->v);
    forget_claims(hs);
    memset(hs, 0, sizeof(*hs));
}

/* The index of id, or where it would go (*found false). */
static size_t
position(const struct ctl_hosts *hs, const char *id, bool *found)
{
    size_t lo = 0, hi = hs->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(hs->v[mid]->id, id);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

struct ctl_host *
ctl_hosts_find(const struct ctl_hosts *hs, const char *id)
{
    bool found;
    size_t i = position(hs, id, &found);

    return found ? hs->v[i] : NULL;
}

static struct ctl_host *
host_new(const char *id)
{
    struct ctl_host *h = pc_xcalloc(1, sizeof(*h));
    const char *slash = strchr(id, '/');

    h->id = pc_xstrdup(id);
    h->ns = slash ? pc_xstrndup(id, (size_t)(slash - id)) : pc_xstrdup("");
    h->name = pc_xstrdup(slash ? slash + 1 : id);
    h->created = pc_xstrdup("");
    h->hosts = pc_xstrdup("");
    h->headers = pc_xstrdup("");
    h->issuer = pc_xstrdup("");
    h->policy_name = ctl_policy_name(h->ns, h->name);
    return h;
}

struct ctl_host *
ctl_hosts_get(struct ctl_hosts *hs, const char *id)
{
    bool found;
    size_t i = position(hs, id, &found);

    if (found)
        return hs->v[i];
    if (hs->n == hs->cap) {
        hs->cap = hs->cap ? 2 * hs->cap : 64;
        hs->v = pc_xrealloc(hs->v, hs->cap * sizeof(*hs->v));
    }
    memmove(hs->v + i + 1, hs->v + i, (hs->n - i) * sizeof(*hs->v));
    hs->n++;
    return hs->v[i] = host_new(id);
}

void
ctl_hosts_remove(struct ctl_hosts *hs, const char *id)
{
    bool found;
    size_t i = position(hs, id, &found);

    if (!found)
        return;
    forget_claims(hs);
    host_free(hs->v[i]);
    memmove(hs->v + i, hs->v + i + 1, (hs->n - i - 1) * sizeof(*hs->v));
    hs->n--;
}

/* ---- rendering one host ---------------------------------------------------------------------- */

void
ctl_replace(char **field, char *value)
{
    free(*field);
    *field = value;
}

static bool
same(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* What the conflict rule looks at, as one string. */
static char *
claims_sig(const struct ctl_host *h)
{
    return pc_xasprintf("%s|%d|%d|%d|%s|%s", h->created, h->valid, h->refused != NULL, h->deleting,
                        h->hosts, h->cookie ? h->cookie : "");
}

static char *
joined(const json_t *names, bool lower)
{
    struct pc_buf b;
    size_t i;
    json_t *v;

    pc_buf_init(&b, 0);
    json_array_foreach(names, i, v)
    {
        size_t at = b.len;

        pc_buf_appendf(&b, "%s\n", json_string_value(v));
        for (; lower && at < b.len; at++)
            b.data[at] = (char)tolower((unsigned char)b.data[at]);
    }
    return pc_buf_detach(&b);
}

/* The lowercased upstream header names, sorted, each followed by '\n'. */
static char *
header_names(const json_t *spec)
{
    json_t *set = json_object(), *list = json_array();
    const char *k;
    json_t *v;
    char *out;

    ctl_headers_collect(set, spec);
    json_object_foreach(set, k, v) json_array_append_new(list, json_string(k));
    out = joined(list, true);
    json_decref(list);
    json_decref(set);
    return out;
}

static void
validate(struct ctl_host *h, const json_t *obj, const struct ctl_authd_opts *a, json_t **spec)
{
    struct ctl_errors errs = {0};

    if (h->name[0] == '\0')
        ctl_errors_add(&errs, "metadata.name: Required value");
    if (ctl_spec_normalize(json_object_get(obj, "spec"), a->allow_insecure_issuers, spec, &errs) <
            0 ||
        ctl_workload_check(h->ns, *spec, a, &errs) < 0 || errs.n > 0) {
        json_decref(*spec);
        *spec = NULL;
        h->invalid = ctl_errors_join(&errs, "; ");
    }
    ctl_errors_release(&errs);
}

/* Outside the admin policy: no claims, no outputs (ctl_state.c's admit_item). */
static void
admit(struct ctl_host *h, json_t *spec, const struct ctl_tenancy *t)
{
    json_t *prefixes = NULL;

    h->refused_as = ctl_policy_admit(t, h->ns, spec, &h->refused, &prefixes);
    ctl_spec_set_prefixes(spec, prefixes);
}

/* The authd entry, or why there is none. */
static void
render_entry(struct ctl_host *h, const json_t *spec, const struct ctl_state_opts *o)
{
    const json_t *ref = pc_json_path(spec, "oidc.clientSecretRef");
    const json_t *value;
    char *secret = NULL;
    json_t *entry;
    int rc = 0;

    if (ref && o->secret)
        rc = o->secret(o->ud, h->ns, pc_json_str(ref, "name"), pc_json_str(ref, "key"), &secret);
    if (rc < 0) {
        h->secret_missing = pc_xasprintf("client secret %s/%s key \"%s\" not found", h->ns,
                                         pc_json_str(ref, "name"), pc_json_str(ref, "key"));
        return;
    }
    entry = ctl_render_authd_host(h->ns, h->name, spec, secret);
    h->entry = ctl_render_authd_entry_text(entry);
    if ((value = pc_json_path(entry, "oidc.clientSecret")) && json_is_string(value))
        pc_cleanse((char *)json_string_value(value), json_string_length(value));
    json_decref(entry);
    pc_free_secret(secret);
}

bool
ctl_host_refresh(struct ctl_host *h, const json_t *obj, const struct ctl_state_opts *o,
                 json_t **policy)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *created = pc_json_str(md, "creationTimestamp");
    char *before = claims_sig(h), *after;
    json_t *spec = NULL;
    bool changed;

    ctl_replace(&h->created, pc_xstrdup(created ? created : ""));
    h->generation = json_integer_value(json_object_get(md, "generation"));
    h->deleting = false;
    ctl_replace(&h->invalid, NULL);
    ctl_replace(&h->refused, NULL);
    ctl_replace(&h->secret_missing, NULL);
    pc_free_secret(h->entry);
    h->entry = NULL;
    validate(h, obj, &o->authd, &spec);
    h->valid = spec != NULL;
    if (spec)
        admit(h, spec, o->tenancy);
    if (h->refused) {
        json_decref(spec);
        spec = NULL;
    }
    h->sidecar = spec && ctl_spec_is_sidecar(spec);
    ctl_replace(&h->hosts, joined(json_object_get(spec, "hosts"), false));
    ctl_replace(&h->cookie, spec ? ctl_cookie_scope(spec) : pc_xstrdup(""));
    ctl_replace(&h->headers, spec ? header_names(spec) : pc_xstrdup(""));
    ctl_replace(&h->issuer,
                pc_xstrdup(spec ? pc_json_str(json_object_get(spec, "oidc"), "issuerURL") : ""));
    if (spec)
        render_entry(h, spec, o);
    ctl_replace(&h->ingress, spec ? ctl_ingress_view_text(h->id, spec) : NULL);
    ctl_replace(&h->policy_ns, spec && !h->ingress && ctl_policy_namespace(h->ns, spec)
                                   ? pc_xstrdup(ctl_policy_namespace(h->ns, spec))
                                   : NULL);
    if (policy) /* ingress-nginx enforces spec.ingress hosts: no AuthorizationPolicy */
        *policy = spec && !h->ingress ? ctl_render_policy(h->ns, h->name, spec) : NULL;
    json_decref(spec);
    after = claims_sig(h);
    changed = strcmp(before, after) != 0;
    free(before);
    free(after);
    return changed;
}

bool
ctl_host_retire(struct ctl_host *h)
{
    bool claimed = h->valid && !h->refused && !h->deleting;

    h->deleting = true;
    ctl_replace(&h->hosts, pc_xstrdup(""));
    ctl_replace(&h->cookie, pc_xstrdup(""));
    pc_free_secret(h->entry);
    h->entry = NULL;
    ctl_replace(&h->headers, pc_xstrdup(""));
    ctl_replace(&h->issuer, pc_xstrdup(""));
    ctl_replace(&h->ingress, NULL);
    return claimed;
}

/* ---- conflicts ------------------------------------------------------------------------------ */

/* Oldest first; ties by namespace, then name (as ctl_state.c). */
static int
by_age(const void *a, const void *b)
{
    const struct ctl_host *x = *(const struct ctl_host *const *)a;
    const struct ctl_host *y = *(const struct ctl_host *const *)b;
    int c = strcmp(x->created, y->created);

    if (c == 0)
        c = strcmp(x->ns, y->ns);
    return c ? c : strcmp(x->name, y->name);
}

/* The conflict message of h against the claims of older hosts, or NULL; then claims its own. */
static char *
claim(const struct ctl_host *h, json_t *claims)
{
    char *pkey = pc_xasprintf("policy:%s", h->policy_name), *msg = NULL;
    const char *holder = pc_json_str(claims, pkey);
    const char *p = h->hosts;
    size_t i = 0;

    if (holder)
        msg = pc_xasprintf("policy name \"%s\" is already used by ProtectedHost %s", h->policy_name,
                           holder);
    for (; !msg && *p; i++) {
        const char *nl = strchr(p, '\n');
        char *hkey = pc_xasprintf("host:%.*s", (int)(nl - p), p);

        if ((holder = pc_json_str(claims, hkey)))
            msg = pc_xasprintf("spec.hosts[%zu]: host \"%.*s\" is already protected by "
                               "ProtectedHost %s, which is older",
                               i, (int)(nl - p), p, holder);
        free(hkey);
        p = nl + 1;
    }
    if (!msg) {
        json_object_set_new(claims, pkey, json_string(h->id));
        for (p = h->hosts; *p; p = strchr(p, '\n') + 1) {
            char *hkey = pc_xasprintf("host:%.*s", (int)(strchr(p, '\n') - p), p);

            json_object_set_new(claims, hkey, json_string(h->id));
            free(hkey);
        }
    }
    free(pkey);
    return msg;
}

/* Settles h against the claims of the hosts older than it in hs, then records its own. */
static void
settle_one(struct ctl_hosts *hs, struct ctl_host *h, void (*changed)(void *ud, struct ctl_host *h),
           void *ud)
{
    bool claims = h->valid && !h->refused && !h->deleting;
    char *msg = claims ? claim(h, hs->claims) : NULL;
    bool cookie = false;

    if (msg == NULL && claims)
        cookie = (msg = ctl_cookie_claim(hs->cookies, h->id, h->cookie, h->hosts)) != NULL;
    h->settled = true;
    hs->newest = h;
    if (same(msg, h->conflict)) {
        free(msg);
        return;
    }
    h->cookie_conflict = cookie;
    ctl_replace(&h->conflict, msg);
    if (changed)
        changed(ud, h);
}

void
ctl_hosts_settle(struct ctl_hosts *hs, void (*changed)(void *ud, struct ctl_host *h), void *ud)
{
    struct ctl_host **v = pc_xcalloc(hs->n + 1, sizeof(*v));

    forget_claims(hs);
    hs->full_settles++;
    hs->claims = json_object();
    hs->cookies = pc_cookie_scopes_new();
    if (hs->n > 0) {
        memcpy(v, hs->v, hs->n * sizeof(*v));
        qsort(v, hs->n, sizeof(*v), by_age);
    }
    for (size_t i = 0; i < hs->n; i++)
        settle_one(hs, v[i], changed, ud);
    free(v);
}

void
ctl_hosts_settle_host(struct ctl_hosts *hs, struct ctl_host *h,
                      void (*changed)(void *ud, struct ctl_host *h), void *ud)
{
    const struct ctl_host *newest = hs->newest;

    if (hs->claims && !h->settled && (newest == NULL || by_age(&newest, &h) < 0))
        settle_one(hs, h, changed, ud);
    else
        ctl_hosts_settle(hs, changed, ud);
}

/* ---- the shared outputs ---------------------------------------------------------------------- */

char *
ctl_host_out_sig(const struct ctl_host *h)
{
    bool pub = ctl_host_publishes(h);
    const char *entry = pub && h->entry ? h->entry : "";
    char *text = pc_xasprintf("%s\n--\n%s\n--\n%s%s", pub ? h->headers : "", pub ? h->issuer : "",
                              h->sidecar ? "sidecar\n" : "", entry);
    char *sig = pc_sha256_hex(text, strlen(text));

    pc_free_secret(text);
    return sig;
}

char *
ctl_hosts_authd_text(const struct ctl_hosts *hs, const struct ctl_authd_opts *o)
{
    struct pc_buf b;
    char *text;

    pc_buf_init(&b, 0);
    for (size_t i = 0; i < hs->n; i++)
        if (ctl_host_publishes(hs->v[i]) && hs->v[i]->entry && !hs->v[i]->sidecar)
            pc_buf_append(&b, hs->v[i]->entry, strlen(hs->v[i]->entry));
    text = ctl_render_authd_text(b.data ? b.data : "", b.len, o);
    if (b.data)
        pc_cleanse(b.data, b.len);
    pc_buf_release(&b);
    return text;
}

char **
ctl_hosts_shard_texts(const struct ctl_hosts *hs, unsigned n)
{
    struct ctl_shards sh;

    ctl_shards_init(&sh, n);
    /* Sidecar entries go to their namespace's shard (ctl_hosts_sidecar_texts), never here. */
    for (size_t i = 0; i < hs->n; i++)
        if (ctl_host_publishes(hs->v[i]) && hs->v[i]->entry && !hs->v[i]->sidecar)
            ctl_shards_add(&sh, hs->v[i]->id, hs->v[i]->entry);
    return ctl_shards_finish(&sh);
}

void
ctl_shard_texts_free(char **texts, unsigned n)
{
    if (texts == NULL)
        return;
    for (unsigned s = 0; s < n; s++)
        pc_free_secret(texts[s]);
    free(texts);
}

json_t *
ctl_hosts_provider(const struct ctl_hosts *hs, const struct ctl_authd_opts *o)
{
    json_t *names = json_object(), *provider;

    for (size_t i = 0; i < hs->n; i++) {
        const char *p = hs->v[i]->headers;

        if (!ctl_host_publishes(hs->v[i]))
            continue;
        for (const char *nl; (nl = strchr(p, '\n')); p = nl + 1) {
            char *name = pc_xstrndup(p, (size_t)(nl - p));

            json_object_set_new(names, name, json_true());
            free(name);
        }
    }
    provider = ctl_render_provider(names, o);
    json_decref(names);
    return provider;
}

json_t *
ctl_hosts_egress(const struct ctl_hosts *hs, const struct ctl_authd_opts *o)
{
    json_t *issuers, *out;

    if (!o->egress)
        return json_array();
    issuers = json_object();
    for (size_t i = 0; i < hs->n; i++)
        if (ctl_host_publishes(hs->v[i]) && hs->v[i]->issuer[0])
            ctl_egress_add(issuers, hs->v[i]->issuer);
    out = ctl_render_egress(issuers, o);
    json_decref(issuers);
    return out;
}
