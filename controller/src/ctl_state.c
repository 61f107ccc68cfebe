/*
 * ctl_state.c - the desired state of every ProtectedHost together: which are accepted, which
 * lose a host to an older one, what authd's config and the mesh provider must say.
 *
 * Conflicts are settled by age so the answer never depends on the order events arrived in:
 * the oldest ProtectedHost (creationTimestamp, then namespace/name) keeps a host; a newer
 * one that asks for the same host is not accepted at all, so it never half-applies.
 */
#include "controller.h"

#include <stdlib.h>
#include <string.h>

#include "portcullis/cookiescope.h"
#include "portcullis/json.h"
#include "portcullis/yaml.h"

const char *
ctl_verdict_reason(enum ctl_verdict v)
{
    switch (v) {
    case CTL_INVALID:
        return "Invalid";
    case CTL_HOST_CONFLICT:
        return "HostConflict";
    case CTL_COOKIE_CONFLICT:
        return "CookieConflict";
    case CTL_HOST_NOT_ALLOWED:
        return "HostNotAllowed";
    case CTL_GATEWAY_NOT_ALLOWED:
        return "GatewayNotAllowed";
    case CTL_ISSUER_NOT_ALLOWED:
        return "IssuerNotAllowed";
    default:
        return NULL;
    }
}

char *
ctl_cookie_scope(const json_t *spec)
{
    const json_t *session = json_object_get(spec, "session"), *oidc = json_object_get(spec, "oidc");
    const char *domain = pc_json_str(session, "cookieDomain");

    return pc_xasprintf("%s\n%s\n%s %s", pc_json_str(session, "cookieName"), domain ? domain : "",
                        pc_json_str(oidc, "issuerURL"), pc_json_str(oidc, "clientID"));
}

char *
ctl_cookie_claim(struct pc_cookie_scopes *s, const char *id, const char *scope, const char *hosts)
{
    char *copy = pc_xstrdup(scope), *domain = strchr(copy, '\n'), *binding, *why = NULL;
    char *owner = pc_xasprintf("ProtectedHost %s", id), *hs = pc_xstrdup(hosts), *msg = NULL;
    const char **v = NULL;
    size_t n = 0;

    *domain++ = '\0';
    binding = strchr(domain, '\n');
    *binding++ = '\0';
    for (char *p = hs, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        *nl = '\0';
        v = pc_xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = p;
    }
    {
        struct pc_cookie_owner o = {.id = owner,
                                    .name = copy,
                                    .binding = binding,
                                    .domain = domain,
                                    .hosts = v,
                                    .nhosts = n};

        if (pc_cookie_scopes_add(s, &o, &why) != 0)
            msg = pc_xasprintf("spec.session: %s, which is older and has another issuer or "
                               "client; set another spec.session.cookieName",
                               why);
    }
    free(why);
    free(v);
    free(hs);
    free(owner);
    free(copy);
    return msg;
}

static void
item_init(struct ctl_item *it, json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *ns = pc_json_str(md, "namespace");
    const char *name = pc_json_str(md, "name");
    const char *created = pc_json_str(md, "creationTimestamp");

    memset(it, 0, sizeof(*it));
    it->ns = pc_xstrdup(ns && *ns ? ns : "default");
    it->name = pc_xstrdup(name ? name : "");
    it->id = pc_xasprintf("%s/%s", it->ns, it->name);
    it->created = pc_xstrdup(created ? created : "");
    it->generation = json_integer_value(json_object_get(md, "generation"));
    it->obj = json_incref(obj);
    it->policy_name = ctl_policy_name(it->ns, it->name);
}

static void
item_release(struct ctl_item *it)
{
    free(it->ns);
    free(it->name);
    free(it->id);
    free(it->created);
    free(it->policy_name);
    free(it->message);
    json_decref(it->obj);
    json_decref(it->spec);
    json_decref(it->policy);
    json_decref(it->authd_host);
}

static int
compare_items(const void *a, const void *b)
{
    const struct ctl_item *x = a, *y = b;
    int c = strcmp(x->created, y->created);

    if (c == 0)
        c = strcmp(x->ns, y->ns);
    return c ? c : strcmp(x->name, y->name);
}

static void
validate_item(struct ctl_item *it, const struct ctl_authd_opts *a)
{
    struct ctl_errors errs = {0};

    if (it->name[0] == '\0')
        ctl_errors_add(&errs, "metadata.name: Required value");
    if (ctl_spec_normalize(json_object_get(it->obj, "spec"), a->allow_insecure_issuers, &it->spec,
                           &errs) < 0 ||
        ctl_workload_check(it->ns, it->spec, a, &errs) < 0 || errs.n > 0) {
        json_decref(it->spec);
        it->spec = NULL;
        it->verdict = CTL_INVALID;
        it->message = ctl_errors_join(&errs, "; ");
    }
    ctl_errors_release(&errs);
}

/* Outside the admin policy: refused before it claims anything, so it cannot hold a host. */
static void
admit_item(struct ctl_item *it, const struct ctl_tenancy *t)
{
    json_t *prefixes = NULL;

    it->verdict = ctl_policy_admit(t, it->ns, it->spec, &it->message, &prefixes);
    ctl_spec_set_prefixes(it->spec, prefixes);
}

/* Claims its hosts and policy name in `claims`, unless an older item holds one of them. */
static void
claim(struct ctl_item *it, json_t *claims)
{
    const json_t *hosts = json_object_get(it->spec, "hosts");
    char *pkey = pc_xasprintf("policy:%s", it->policy_name);
    const char *holder = pc_json_str(claims, pkey);
    size_t i;
    json_t *h;

    if (holder) {
        it->verdict = CTL_HOST_CONFLICT;
        it->message = pc_xasprintf("policy name \"%s\" is already used by ProtectedHost %s",
                                   it->policy_name, holder);
        free(pkey);
        return;
    }
    json_array_foreach(hosts, i, h)
    {
        char *hkey = pc_xasprintf("host:%s", json_string_value(h));

        holder = pc_json_str(claims, hkey);
        free(hkey);
        if (holder) {
            it->verdict = CTL_HOST_CONFLICT;
            it->message = pc_xasprintf("spec.hosts[%zu]: host \"%s\" is already protected by "
                                       "ProtectedHost %s, which is older",
                                       i, json_string_value(h), holder);
            free(pkey);
            return;
        }
    }
    json_object_set_new(claims, pkey, json_string(it->id));
    free(pkey);
    json_array_foreach(hosts, i, h)
    {
        char *hkey = pc_xasprintf("host:%s", json_string_value(h));

        json_object_set_new(claims, hkey, json_string(it->id));
        free(hkey);
    }
}

/* Renders the accepted item's objects; resolves its client secret. */
static void
render_item(struct ctl_item *it, const struct ctl_state_opts *o)
{
    const json_t *ref = pc_json_path(it->spec, "oidc.clientSecretRef");
    char *secret = NULL;
    int rc = 0;

    if (!ctl_ingress_class(it->spec)) /* spec.ingress: ingress-nginx enforces it */
        it->policy = ctl_render_policy(it->ns, it->name, it->spec);
    if (ref && o->secret)
        rc = o->secret(o->ud, it->ns, pc_json_str(ref, "name"), pc_json_str(ref, "key"), &secret);
    if (rc < 0) {
        it->verdict = CTL_SECRET_MISSING;
        it->message = pc_xasprintf("client secret %s/%s key \"%s\" not found", it->ns,
                                   pc_json_str(ref, "name"), pc_json_str(ref, "key"));
        return;
    }
    it->authd_host = ctl_render_authd_host(it->ns, it->name, it->spec, secret);
    pc_free_secret(secret);
}

static int
compare_host_ids(const void *a, const void *b)
{
    const struct ctl_item *const *x = a, *const *y = b;

    return strcmp((*x)->id, (*y)->id);
}

/* authd's config lists hosts by id, so it does not change with creation order. */
static void
build_shared(struct ctl_state *st, const struct ctl_state_opts *o)
{
    struct ctl_item **by_id = pc_xcalloc(st->n + 1, sizeof(*by_id));
    json_t *names = json_object(), *hosts = json_array(), *issuers = json_object();
    struct ctl_shards sh;
    size_t k = 0;

    for (size_t i = 0; i < st->n; i++) {
        if (st->items[i].spec && ctl_verdict_reason(st->items[i].verdict) == NULL) {
            ctl_headers_collect(names, st->items[i].spec);
            ctl_egress_add(issuers,
                           pc_json_str(pc_json_path(st->items[i].spec, "oidc"), "issuerURL"));
        }
        if (st->items[i].authd_host)
            by_id[k++] = &st->items[i];
    }
    qsort(by_id, k, sizeof(*by_id), compare_host_ids);
    st->nshards = ctl_shard_count(&o->authd);
    ctl_shards_init(&sh, st->nshards);
    st->sidecar = json_object();
    for (size_t i = 0; i < k; i++) {
        char *entry = ctl_render_authd_entry_text(by_id[i]->authd_host);

        /* A sidecar host's entry goes to its own namespace only (ctl_workload.c). */
        if (ctl_spec_is_sidecar(by_id[i]->spec))
            ctl_sidecar_texts_add(st->sidecar, by_id[i]->ns, entry);
        else
            ctl_shards_add(&sh, by_id[i]->id, entry);
        pc_free_secret(entry);
    }
    st->shards = ctl_shards_finish(&sh);
    ctl_sidecar_texts_finish(st->sidecar);
    for (size_t i = 0; i < k; i++)
        if (!ctl_spec_is_sidecar(by_id[i]->spec))
            json_array_append(hosts, by_id[i]->authd_host);
    st->provider = ctl_render_provider(names, &o->authd);
    for (size_t i = 0; i < st->n && !st->local_provider; i++)
        if (st->items[i].policy && ctl_spec_is_sidecar(st->items[i].spec))
            st->local_provider = ctl_render_local_provider(names);
    st->egress = o->authd.egress ? ctl_render_egress(issuers, &o->authd) : json_array();
    st->authd_config = ctl_render_authd_config(hosts, &o->authd);
    st->authd_text = pc_json_to_yaml(st->authd_config);
    json_decref(names);
    json_decref(hosts);
    json_decref(issuers);
    free(by_id);
}

/* Claims its cookie scope in s, unless it collides with an older item's. */
static void
claim_cookie(struct ctl_item *it, struct pc_cookie_scopes *s)
{
    struct pc_buf hosts;
    char *scope = ctl_cookie_scope(it->spec);
    size_t i;
    json_t *h;

    pc_buf_init(&hosts, 0);
    json_array_foreach(json_object_get(it->spec, "hosts"), i, h)
        pc_buf_appendf(&hosts, "%s\n", json_string_value(h));
    if ((it->message = ctl_cookie_claim(s, it->id, scope, hosts.data ? hosts.data : "")) != NULL)
        it->verdict = CTL_COOKIE_CONFLICT;
    pc_buf_release(&hosts);
    free(scope);
}

void
ctl_state_build(struct ctl_state *st, const json_t *objs, const struct ctl_state_opts *o)
{
    json_t *claims = json_object();
    struct pc_cookie_scopes *cookies = pc_cookie_scopes_new();

    memset(st, 0, sizeof(*st));
    st->n = json_array_size(objs);
    st->items = pc_xcalloc(st->n + 1, sizeof(*st->items));
    for (size_t i = 0; i < st->n; i++)
        item_init(&st->items[i], json_array_get(objs, i));
    qsort(st->items, st->n, sizeof(*st->items), compare_items);
    for (size_t i = 0; i < st->n; i++) {
        struct ctl_item *it = &st->items[i];

        validate_item(it, &o->authd);
        if (it->verdict == CTL_ACCEPTED)
            admit_item(it, o->tenancy);
        if (it->verdict == CTL_ACCEPTED)
            claim(it, claims);
        if (it->verdict == CTL_ACCEPTED)
            claim_cookie(it, cookies);
        if (it->verdict == CTL_ACCEPTED)
            render_item(it, o);
    }
    build_shared(st, o);
    pc_cookie_scopes_free(cookies);
    json_decref(claims);
}

/* Secrets in the rendered config are wiped before the memory goes back. */
static void
cleanse_secrets(json_t *j)
{
    const char *key;
    json_t *v;
    size_t i;

    if (json_is_array(j)) {
        json_array_foreach(j, i, v) cleanse_secrets(v);
        return;
    }
    json_object_foreach(j, key, v)
    {
        if (strcmp(key, "clientSecret") == 0 && json_is_string(v))
            pc_cleanse((char *)json_string_value(v), json_string_length(v));
        else
            cleanse_secrets(v);
    }
}

void
ctl_state_release(struct ctl_state *st)
{
    for (size_t i = 0; i < st->n; i++) {
        cleanse_secrets(st->items[i].authd_host);
        item_release(&st->items[i]);
    }
    free(st->items);
    cleanse_secrets(st->authd_config);
    json_decref(st->authd_config);
    json_decref(st->provider);
    json_decref(st->egress);
    json_decref(st->local_provider);
    ctl_sidecar_texts_free(st->sidecar);
    pc_free_secret(st->authd_text);
    ctl_shard_texts_free(st->shards, st->nshards);
    memset(st, 0, sizeof(*st));
}

struct ctl_item *
ctl_state_find(const struct ctl_state *st, const char *ns, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->items[i].ns, ns) == 0 && strcmp(st->items[i].name, name) == 0)
            return &st->items[i];
    return NULL;
}
