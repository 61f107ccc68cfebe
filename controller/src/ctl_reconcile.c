/*
 * ctl_reconcile.c - from what the watches saw to what the cluster holds, one ProtectedHost at
 * a time.
 *
 * The watch threads only update the caches and queue keys. CTL_KEY_WORKERS key workers take
 * them; the queue hands a key to one worker at a time:
 *
 *   "ph:<ns>/<name>"  that ProtectedHost alone: the finalizer; its entry in the host cache
 *                     re-rendered (ctl_hosts.c); its AuthorizationPolicy applied when it
 *                     changed, or deleted; its status. When its shared outputs (authd entry,
 *                     header names) changed, it bumps the sequence number and queues "global"
 *                     for the global writer (ctl_global.c), and its Ready status waits for a
 *                     pass of that writer; a deleted object keeps its finalizer until then.
 *   "resync"          after (re)gaining leadership and periodically: every cached object
 *                     rendered again, policies with our labels that no ProtectedHost wants
 *                     deleted, what was applied forgotten, every key queued again.
 *   "policy"          the admin policy (or a namespace's labels) changed: every cached object
 *                     admitted and rendered again, every key queued again (what did not change
 *                     is not written again).
 *
 * Everything is level-based and idempotent: a key may be processed any number of times.
 * Locks: mu guards the watch caches, hmu the host cache (settling one host's conflicts
 * changes others, and the global writer reads them all); a key worker takes hmu then mu,
 * nobody the other way round. A host's names never change, so they are read unlocked.
 */
#include "controller.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portcullis/b64.h"
#include "portcullis/crypto.h"
#include "portcullis/json.h"
#include "portcullis/log.h"

#define KEY_GLOBAL "global"
#define KEY_RESYNC "resync"
#define KEY_POLICY "policy"
#define ORPHAN_PAGE 100

static const struct k8s_ref ph_ref = {.api_version = CTL_GROUP_VERSION, .plural = "protectedhosts"};
static const struct k8s_ref ap_ref = {.api_version = "security.istio.io/v1",
                                      .plural = "authorizationpolicies"};
static const struct k8s_ref ef_ref = {.api_version = "networking.istio.io/v1alpha3",
                                      .plural = "envoyfilters"};

void
ctl_ctx_init(struct ctl_ctx *c, const struct ctl_run_opts *o, struct k8s_client *kc)
{
    memset(c, 0, sizeof(*c));
    c->o = *o;
    c->kc = kc;
    c->q = ctl_queue_new();
    c->gq = ctl_queue_new();
    c->eq = ctl_queue_new();
    pthread_mutex_init(&c->ev_mu, NULL);
    c->ev_pending = json_object();
    ctl_metrics_init(&c->m);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->hmu, NULL);
    c->phs = json_object();
    c->secrets = json_object();
    c->replicas = json_object();
    c->ns_labels = json_object();
    c->sidecar_leases = json_object();
    c->sidecar_state = json_object();
    c->sidecar_hash = json_object();
    ctl_revmirror_init(&c->rm);
    ctl_hosts_init(&c->hosts);
    c->nshards = ctl_shard_count(&o->authd);
    c->shard_error = pc_xcalloc(c->nshards, sizeof(*c->shard_error));
    c->shard_gen = pc_xcalloc(c->nshards, sizeof(*c->shard_gen));
    c->shard_hash = pc_xcalloc(c->nshards, sizeof(*c->shard_hash));
    c->shard_written_at = pc_xcalloc(c->nshards, sizeof(*c->shard_written_at));
    ctl_ingress_init(c);
}

void
ctl_ctx_release(struct ctl_ctx *c)
{
    ctl_queue_free(c->q);
    ctl_queue_free(c->gq);
    ctl_queue_free(c->eq);
    pthread_mutex_destroy(&c->ev_mu);
    json_decref(c->ev_pending);
    ctl_metrics_release(&c->m);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->hmu);
    json_decref(c->phs);
    json_decref(c->secrets);
    json_decref(c->ns_labels);
    json_decref(c->policy);
    free(c->policy_error);
    ctl_hosts_release(&c->hosts);
    free(c->authd_error);
    for (unsigned s = 0; s < c->nshards; s++) {
        free(c->shard_error[s]);
        free(c->shard_hash[s]);
    }
    free(c->shard_error);
    free(c->shard_gen);
    free(c->shard_hash);
    free(c->shard_written_at);
    json_decref(c->replicas);
    json_decref(c->sidecar_leases);
    json_decref(c->sidecar_state);
    json_decref(c->sidecar_hash);
    ctl_revmirror_release(&c->rm);
    free(c->mesh_error);
    free(c->egress_error);
    free(c->snippet);
    free(c->mesh_hash);
    free(c->egress_hash);
    ctl_ingress_release(c);
}

static char *
object_id(const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *ns = pc_json_str(md, "namespace"), *name = pc_json_str(md, "name");

    return pc_xasprintf("%s/%s", ns ? ns : "", name ? name : "");
}

static bool
same_str(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

void
ctl_queue_host(struct ctl_ctx *c, const char *id)
{
    char *key = pc_xasprintf("ph:%s", id);

    ctl_queue_add(c->q, key);
    free(key);
}

/* ---- watch side ------------------------------------------------------------------------ */

/* What a change must touch to matter (not just our own status write), as one string. */
static char *
look_of(const json_t *obj)
{
    json_t *l = json_pack("[O?,O?,O?,O?]", pc_json_path(obj, "metadata.uid"),
                          pc_json_path(obj, "metadata.generation"),
                          pc_json_path(obj, "metadata.deletionTimestamp"),
                          pc_json_path(obj, "metadata.finalizers"));
    char *text = json_dumps(l, JSON_COMPACT);

    json_decref(l);
    return text;
}

/*
 * The cache keeps each ProtectedHost as compact JSON text, packed (ctl_pack.c: about a
 * hundred bytes for an ordinary one instead of 1.7 KB): a parsed object costs ten times its
 * text in jansson nodes, and the key worker needs only one object at a time.
 */
static json_t *
cache_entry(const json_t *obj, const char *look)
{
    const json_t *ref = pc_json_path(obj, "spec.oidc.clientSecretRef");
    const char *ns = pc_json_str(json_object_get(obj, "metadata"), "namespace");
    char *text = json_dumps(obj, JSON_COMPACT), *packed = ctl_pack_text(text, strlen(text));
    json_t *e = json_pack("{s:s,s:s}", "packed", packed, "look", look);

    if (pc_json_str(ref, "name"))
        json_object_set_new(e, "secret",
                            json_sprintf("%s/%s", ns ? ns : "", pc_json_str(ref, "name")));
    free(packed);
    free(text);
    return e;
}

void
ctl_on_protectedhost(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    char *id = object_id(obj), *look = type == K8S_DELETED ? NULL : look_of(obj);
    json_t *entry = look ? cache_entry(obj, look) : NULL;
    bool changed = true;

    pthread_mutex_lock(&c->mu);
    if (entry) {
        changed = !same_str(pc_json_str(json_object_get(c->phs, id), "look"), look);
        json_object_set_new(c->phs, id, entry);
    } else {
        json_object_del(c->phs, id);
    }
    pthread_mutex_unlock(&c->mu);
    if (changed)
        ctl_queue_host(c, id);
    free(look);
    free(id);
}

/* The ids of the ProtectedHosts whose client Secret is secret_id. Called locked. */
static json_t *
secret_users(struct ctl_ctx *c, const char *secret_id)
{
    json_t *ids = json_array(), *e;
    const char *id;

    json_object_foreach(c->phs, id, e)
    {
        if (same_str(pc_json_str(e, "secret"), secret_id))
            json_array_append_new(ids, json_string(id));
    }
    return ids;
}

/*
 * c->secrets holds, per Secret "ns/name" the watch has seen, {"rv": its newest
 * resourceVersion} and, once fetched for a ProtectedHost that names it, "data" with
 * "fetched", the version that data is of. The watch brings metadata only: a new version
 * queues the hosts that name the Secret, which fetch it again (fetch_secret) before they are
 * rendered; until then the data held stays in use (a rotated secret is a second late, never
 * missing, which would drop the host from authd's config).
 */
void
ctl_on_secret(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    char *id = object_id(obj);
    const json_t *md = json_object_get(obj, "metadata");
    const char *rv = pc_json_str(md, "resourceVersion"), *ns = pc_json_str(md, "namespace");
    json_t *users = NULL, *entry, *v;
    size_t i;

    /* A sidecar namespace's copy of the revocation list (the central one is watched apart). */
    if (same_str(pc_json_str(md, "name"), PC_REVOKE_SECRET) && ns &&
        strcmp(ns, c->o.authd.namespace) != 0)
        ctl_revmirror_note_copy(c, type, obj);
    pthread_mutex_lock(&c->mu);
    entry = json_object_get(c->secrets, id);
    if (type == K8S_DELETED) {
        json_object_del(c->secrets, id);
        users = secret_users(c, id);
    } else if (!entry) {
        json_object_set_new(c->secrets, id, json_pack("{s:s}", "rv", rv ? rv : ""));
        users = secret_users(c, id);
    } else if (!same_str(pc_json_str(entry, "rv"), rv)) {
        json_object_set_new(entry, "rv", json_string(rv ? rv : ""));
        users = secret_users(c, id);
    }
    pthread_mutex_unlock(&c->mu);
    json_array_foreach(users, i, v) ctl_queue_host(c, json_string_value(v));
    json_decref(users);
    free(id);
}

void
ctl_queue_hosts_first(struct ctl_ctx *c, const json_t *ids)
{
    size_t i;
    json_t *id;

    json_array_foreach(ids, i, id)
    {
        char *key = pc_xasprintf("ph:%s", json_string_value(id));

        ctl_queue_add_first(c->q, key);
        free(key);
    }
}

void
ctl_on_authd_lease(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    const char *name = pc_json_str(json_object_get(obj, "metadata"), "name");
    json_t *ids = json_array();
    long long *min = NULL;
    size_t i;

    if (!name)
        goto out;
    min = pc_xcalloc(c->nshards, sizeof(*min));
    pthread_mutex_lock(&c->mu);
    if (type == K8S_DELETED)
        json_object_del(c->replicas, name);
    else
        json_object_set(c->replicas, name, obj);
    ctl_replicas_min_loaded(c->replicas, time(NULL), c->nshards, min);
    pthread_mutex_unlock(&c->mu);
    /* Only the hosts this change lets go further: every Lease renewal would otherwise run
     * every waiting host's key again (thousands during a bulk apply). */
    pthread_mutex_lock(&c->hmu);
    for (i = 0; i < c->hosts.n; i++) {
        const struct ctl_host *h = c->hosts.v[i];

        if (h->awaiting && h->gen_seq == h->seq &&
            min[ctl_shard_of(h->id, c->nshards)] >= h->need_gen)
            json_array_append_new(ids, json_string(h->id));
    }
    pthread_mutex_unlock(&c->hmu);
    ctl_queue_hosts_first(c, ids);
out:
    free(min);
    json_decref(ids);
}

void
ctl_on_policy(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    struct ctl_errors errs = {0};
    json_t *policy = NULL, *old;
    char *error = NULL, *old_error;
    bool labels = false;
    size_t i;
    json_t *r;

    if (type != K8S_DELETED && ctl_policy_normalize(obj, &policy, &errs) < 0)
        error = ctl_errors_join(&errs, "; ");
    ctl_errors_release(&errs);
    json_array_foreach(json_object_get(policy, "rules"), i, r) labels =
        labels || json_is_object(pc_json_path(r, "namespaces.selector"));
    if (error)
        pc_log(PC_LOG_WARN, "policy_invalid", "policy", CTL_POLICY_NAME, "error", error, NULL);
    else
        pc_log(PC_LOG_INFO, policy ? "policy_loaded" : "policy_removed", "policy", CTL_POLICY_NAME,
               NULL);
    pthread_mutex_lock(&c->hmu);
    old = c->policy;
    old_error = c->policy_error;
    c->policy = policy;
    c->policy_error = error;
    pthread_mutex_unlock(&c->hmu);
    atomic_store(&c->policy_reads_labels, labels);
    json_decref(old);
    free(old_error);
    ctl_queue_add(c->q, KEY_POLICY);
}

void
ctl_on_namespace(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    const char *name = pc_json_str(json_object_get(obj, "metadata"), "name");
    json_t *labels = pc_json_path(obj, "metadata.labels");
    bool changed;

    if (!name)
        return;
    pthread_mutex_lock(&c->mu);
    if (type == K8S_DELETED) {
        changed = json_object_get(c->ns_labels, name) != NULL;
        json_object_del(c->ns_labels, name);
    } else {
        labels = json_is_object(labels) ? json_incref(labels) : json_object();
        changed = !json_equal(json_object_get(c->ns_labels, name), labels);
        json_object_set_new(c->ns_labels, name, labels);
    }
    pthread_mutex_unlock(&c->mu);
    if (changed && atomic_load(&c->policy_reads_labels))
        ctl_queue_add(c->q, KEY_POLICY);
}

void
ctl_on_synced(void *ud)
{
    struct ctl_watch_slot *slot = ud;
    struct ctl_ctx *c = slot->c;
    bool all, relist = slot->synced_once;

    pthread_mutex_lock(&c->mu);
    if (!slot->synced_once) {
        slot->synced_once = true;
        c->nsynced++;
    }
    all = c->nsynced == c->nwatches;
    pthread_mutex_unlock(&c->mu);
    if (relist)
        ctl_metrics_inc(&c->m, &c->m.watch_relists);
    /* A relist's own events queued what changed; the first complete sync starts the work. */
    if (all && !atomic_exchange(&c->ready, true)) {
        pc_log(PC_LOG_INFO, "caches_synced", NULL);
        ctl_queue_add(c->q, KEY_RESYNC);
    }
}

/* ---- reading the caches -------------------------------------------------------------------- */

/* New parsed ProtectedHost id from the cache, or NULL. */
static json_t *
cached_object(struct ctl_ctx *c, const char *id)
{
    json_t *obj = NULL;
    char *packed, *text = NULL;

    pthread_mutex_lock(&c->mu);
    packed = pc_json_str(json_object_get(c->phs, id), "packed")
                 ? pc_xstrdup(pc_json_str(json_object_get(c->phs, id), "packed"))
                 : NULL;
    pthread_mutex_unlock(&c->mu);
    /* Our own packing of a watch line: it unpacks unless memory is corrupt. */
    if (packed && ctl_unpack_text(packed, CTL_MAX_OBJECT_TEXT, &text) == 0)
        obj = json_loads(text, 0, NULL);
    else if (packed)
        pc_log(PC_LOG_ERROR, "cache_corrupt", "owner", id, NULL);
    free(packed);
    free(text);
    return obj;
}

/* Secret lookups for ctl_host_refresh; takes mu (the caller may hold hmu). */
static int
lookup_secret(void *ud, const char *ns, const char *name, const char *key, char **value)
{
    struct ctl_ctx *c = ud;
    char *id = pc_xasprintf("%s/%s", ns, name), *b64 = NULL;
    unsigned char *raw = NULL;
    size_t len = 0;
    int rc = 0;

    pthread_mutex_lock(&c->mu);
    if (pc_json_str(pc_json_path(json_object_get(c->secrets, id), "data"), key))
        b64 = pc_xstrdup(pc_json_str(pc_json_path(json_object_get(c->secrets, id), "data"), key));
    pthread_mutex_unlock(&c->mu);
    if (!b64 || pc_b64_decode(b64, strlen(b64), &raw, &len) < 0 || memchr(raw, '\0', len)) {
        pc_free_secret((char *)raw);
        rc = PC_ENOTFOUND;
    } else {
        *value = (char *)raw;
    }
    pc_free_secret(b64);
    free(id);
    return rc;
}

/* New labels of namespace ns, NULL when unknown; takes mu (the caller may hold hmu). */
static json_t *
namespace_labels(void *ud, const char *ns)
{
    struct ctl_ctx *c = ud;
    json_t *labels;

    pthread_mutex_lock(&c->mu);
    labels = json_object_get(c->ns_labels, ns);
    labels = labels ? json_deep_copy(labels) : NULL;
    pthread_mutex_unlock(&c->mu);
    return labels;
}

/*
 * What hosts are admitted against: borrows the policy, so it is used only while hmu is held
 * (ctl_on_policy swaps it under hmu).
 */
static struct ctl_tenancy
tenancy_of(struct ctl_ctx *c)
{
    return (struct ctl_tenancy){.gateway_namespaces = c->o.gateway_namespaces,
                                .policy = c->policy,
                                .policy_error = c->policy_error,
                                .labels = namespace_labels,
                                .ud = c};
}

static bool
has_finalizer(const json_t *obj)
{
    size_t i;
    json_t *f;

    json_array_foreach(pc_json_path(obj, "metadata.finalizers"), i, f)
    {
        if (same_str(json_string_value(f), CTL_FINALIZER))
            return true;
    }
    return false;
}

/* ---- writes ------------------------------------------------------------------------------- */

/* Deletes our object "ns/name" of kind; gone already counts as deleted. */
static int
delete_ref(struct ctl_ctx *c, const struct k8s_ref *kind, const char *object_ref, const char *what)
{
    char *copy = pc_xstrdup(object_ref), *slash = strchr(copy, '/');
    struct k8s_ref ref = *kind;
    struct pc_diag d = {0};
    int rc;

    ref.namespace = copy;
    ref.name = slash ? slash + 1 : "";
    if (slash)
        *slash = '\0';
    rc = k8s_delete(c->kc, &ref, &d);
    if (rc == K8S_ENOTFOUND)
        rc = 0;
    if (rc < 0)
        pc_log(PC_LOG_WARN, "policy_delete_failed", what, object_ref, "error", d.msg, NULL);
    else
        pc_log(PC_LOG_INFO, "policy_deleted", what, object_ref, NULL);
    free(copy);
    return rc;
}

/*
 * Deletes the policy "ns/name" and then, when filter, the EnvoyFilter of the same name: a
 * wildcard policy must never stand without the filter that makes its hosts match any port.
 */
static int
delete_policy(struct ctl_ctx *c, const char *policy_ref, bool filter)
{
    int rc = delete_ref(c, &ap_ref, policy_ref, "policy");

    if (rc < 0)
        return rc;
    ctl_metrics_inc(&c->m, &c->m.policy_deletes);
    return filter ? delete_ref(c, &ef_ref, policy_ref, "envoyfilter") : 0;
}

static int set_finalizer_once(struct ctl_ctx *c, const json_t *obj, bool present,
                              struct pc_diag *d);

/*
 * Adds or removes our finalizer, guarded by the object's resourceVersion. The cached object
 * lags the API under load (our own earlier patch or status write may not have come back on
 * the watch yet): on a conflict the object is read again, and the patch retried once on it.
 */
static int
set_finalizer(struct ctl_ctx *c, const json_t *obj, bool present)
{
    const json_t *md = json_object_get(obj, "metadata");
    struct k8s_ref ref = ph_ref;
    struct pc_diag d = {0};
    json_t *fresh = NULL;
    int rc = set_finalizer_once(c, obj, present, &d);

    ref.namespace = pc_json_str(md, "namespace");
    ref.name = pc_json_str(md, "name");
    if (rc == K8S_ECONFLICT && k8s_get(c->kc, &ref, &fresh, &d) == 0)
        rc = has_finalizer(fresh) == present ? 0 : set_finalizer_once(c, fresh, present, &d);
    json_decref(fresh);
    if (rc < 0 && rc != K8S_ENOTFOUND)
        pc_log(PC_LOG_WARN, "finalizer_update_failed", "owner", ref.name, "error", d.msg, NULL);
    return rc == K8S_ENOTFOUND ? 0 : rc;
}

static int
set_finalizer_once(struct ctl_ctx *c, const json_t *obj, bool present, struct pc_diag *d)
{
    const json_t *md = json_object_get(obj, "metadata");
    json_t *list = json_array(), *patch;
    struct k8s_ref ref = ph_ref;
    size_t i;
    json_t *f;
    int rc;

    json_array_foreach(json_object_get(md, "finalizers"), i, f)
    {
        if (!same_str(json_string_value(f), CTL_FINALIZER))
            json_array_append(list, f);
    }
    if (present)
        json_array_append_new(list, json_string(CTL_FINALIZER));
    patch = json_pack("{s:{s:o,s:O}}", "metadata", "finalizers", list, "resourceVersion",
                      json_object_get(md, "resourceVersion"));
    ref.namespace = pc_json_str(md, "namespace");
    ref.name = pc_json_str(md, "name");
    rc = k8s_merge_patch(c->kc, &ref, patch, d);
    json_decref(patch);
    return rc;
}

/* ---- the host cache ---------------------------------------------------------------------- */

bool
ctl_publish(struct ctl_ctx *c, struct ctl_host *h)
{
    char *sig = ctl_host_out_sig(h);

    if (same_str(sig, h->out_sig)) {
        free(sig);
        return false;
    }
    free(h->out_sig);
    h->out_sig = sig;
    h->seq = ++c->seq;
    return true;
}

static void
requeue_changed(void *ud, struct ctl_host *h)
{
    ctl_queue_host(ud, h->id);
}

/* Stops h claiming anything; the hosts it held go to the next in line. Called with hmu. */
static bool
retire(struct ctl_ctx *c, struct ctl_host *h)
{
    if (ctl_host_retire(h))
        ctl_hosts_settle(&c->hosts, requeue_changed, c);
    return ctl_publish(c, h);
}

/*
 * The applied policy reference of id, new (NULL when none); *filter: an EnvoyFilter went with
 * it. Forgets both when drop.
 */
static char *
applied_ref(struct ctl_ctx *c, const char *id, bool drop, bool *filter)
{
    struct ctl_host *h;
    char *ref = NULL;

    pthread_mutex_lock(&c->hmu);
    if ((h = ctl_hosts_find(&c->hosts, id)) && h->applied_ref) {
        ref = pc_xstrdup(h->applied_ref);
        *filter = h->applied_filter;
        if (drop) {
            free(h->applied_ref);
            free(h->applied_hash);
            h->applied_ref = h->applied_hash = NULL;
            h->applied_filter = false;
        }
    }
    pthread_mutex_unlock(&c->hmu);
    return ref;
}

/* Deletes id's policy (and its EnvoyFilter) if one is applied. */
static int
drop_policy(struct ctl_ctx *c, const char *id)
{
    bool filter = false;
    char *ref = applied_ref(c, id, false, &filter);
    int rc = ref ? delete_policy(c, ref, filter) : 0;

    if (ref && rc == 0)
        free(applied_ref(c, id, true, &filter));
    free(ref);
    return rc;
}

/* ---- one ProtectedHost --------------------------------------------------------------------- */

/* The object is gone: its policy goes, then its place in the cache and in authd's config. */
static int
forget(struct ctl_ctx *c, const char *id)
{
    bool dirty = false;
    int rc = drop_policy(c, id);

    if (rc < 0)
        return rc;
    pthread_mutex_lock(&c->hmu);
    if (ctl_hosts_find(&c->hosts, id)) {
        dirty = retire(c, ctl_hosts_find(&c->hosts, id));
        ctl_hosts_remove(&c->hosts, id);
    }
    pthread_mutex_unlock(&c->hmu);
    if (dirty)
        ctl_queue_add(c->gq, KEY_GLOBAL);
    return 0;
}

/*
 * Being deleted: the policy and the authd entry must be gone before our finalizer is, so the
 * host is never open while its object still exists.
 */
static int
finalize(struct ctl_ctx *c, const char *id, const json_t *obj)
{
    struct ctl_host *h;
    bool dirty, done;
    int rc;

    pthread_mutex_lock(&c->hmu);
    h = ctl_hosts_get(&c->hosts, id);
    dirty = retire(c, h);
    done = c->written_seq >= h->seq;
    h->waiting = !done;
    pthread_mutex_unlock(&c->hmu);
    if (dirty)
        ctl_queue_add(c->gq, KEY_GLOBAL);
    if ((rc = drop_policy(c, id)) < 0 || !done || !has_finalizer(obj))
        return rc; /* not done: the global writer queues this key again */
    if ((rc = set_finalizer(c, obj, false)) == 0)
        pc_log(PC_LOG_INFO, "protectedhost_finalized", "owner", id, NULL);
    return rc;
}

static char *
policy_ref_of(const json_t *policy)
{
    const json_t *md = json_object_get(policy, "metadata");

    return pc_xasprintf("%s/%s", pc_json_str(md, "namespace"), pc_json_str(md, "name"));
}

/*
 * Applies policy when it differs from what was applied; *error gets why it failed. A policy
 * with a wildcard host needs its EnvoyFilter (ctl_render_host_filter), applied first: without
 * it "a.wild.example.com:443" would pass the gateway unchecked. One that no longer needs it
 * has it deleted after the new policy is in place.
 */
static int
apply_policy(struct ctl_ctx *c, const char *id, const json_t *policy, char **error)
{
    json_t *filter = c->o.authd.gateway_strips_ports ? NULL : ctl_render_host_filter(policy);
    char *text = pc_json_dumps_sorted(policy), *ref = policy_ref_of(policy), *old = NULL;
    char *dump = pc_xasprintf("%s%s", text, filter ? "+filter" : ""), *hash;
    bool same, had_filter;
    struct pc_diag d = {0};
    struct ctl_host *h;
    int rc = 0;

    /* The filter follows from the policy, so whether there is one is all the hash needs. */
    free(text);
    hash = pc_sha256_hex(dump, strlen(dump));
    pthread_mutex_lock(&c->hmu);
    h = ctl_hosts_find(&c->hosts, id);
    same = h && same_str(h->applied_hash, hash);
    had_filter = h && h->applied_filter;
    pthread_mutex_unlock(&c->hmu);
    if (!same && filter && (rc = ctl_timed_apply(c, &ef_ref, filter, &d)) < 0)
        pc_log(PC_LOG_WARN, "envoyfilter_apply_failed", "envoyfilter", ref, "error", d.msg, NULL);
    else if (!same && (rc = ctl_timed_apply(c, &ap_ref, policy, &d)) < 0)
        pc_log(PC_LOG_WARN, "policy_apply_failed", "policy", ref, "error", d.msg, NULL);
    if (rc < 0) {
        *error = pc_xstrdup(d.msg);
    } else if (!same) {
        pc_log(PC_LOG_INFO, "policy_applied", "policy", ref, "owner", id, "envoyfilter",
               filter ? "yes" : "no", NULL);
        pthread_mutex_lock(&c->hmu);
        if ((h = ctl_hosts_find(&c->hosts, id))) {
            old = h->applied_ref && strcmp(h->applied_ref, ref) ? pc_xstrdup(h->applied_ref) : NULL;
            free(h->applied_ref);
            free(h->applied_hash);
            h->applied_ref = pc_xstrdup(ref);
            h->applied_hash = pc_xstrdup(hash);
            h->applied_filter = filter != NULL;
        }
        pthread_mutex_unlock(&c->hmu);
        if (old)
            delete_policy(c, old, had_filter); /* moved to another gateway namespace */
        else if (had_filter && !filter)
            delete_ref(c, &ef_ref, ref, "envoyfilter");
    }
    json_decref(filter);
    free(old);
    free(ref);
    free(hash);
    free(dump);
    return rc;
}

/*
 * How long a host's policy waits for authd replicas that have not loaded its entry yet. After
 * that the policy goes out anyway: a host must never stay open because one replica is slow
 * (it answers "unknown host" until it loads the entry). Ready stays False, naming it.
 */
#define ENFORCE_WAIT_SECS 10.0
/* Statuses are not written for a change authd is about to load: Ready=False only after this. */
#define STATUS_GRACE_SECS 2.0

/*
 * Whether every authd replica enforces h's current entry; *why (new) says who does not.
 * *waited gets the seconds since its shard was written. Called with hmu held (takes mu).
 */
static enum ctl_enforce
host_enforce(struct ctl_ctx *c, struct ctl_host *h, char **why, double *waited)
{
    unsigned s = ctl_shard_of(h->id, c->nshards);
    enum ctl_enforce e;

    *why = NULL;
    *waited = 0;
    if (!c->o.wait_for_authd || !ctl_host_publishes(h) || !h->entry)
        return CTL_ENFORCED;
    if (h->gen_seq != h->seq) {
        *why = pc_xstrdup("waiting for the authd config to be written");
        return CTL_ENFORCE_PENDING;
    }
    if (h->sidecar)
        return ctl_sidecar_enforce(c, h, why, waited);
    *waited = ctl_mono_secs() - c->shard_written_at[s];
    pthread_mutex_lock(&c->mu);
    e = ctl_replicas_enforce(c->replicas, time(NULL), s, h->need_gen, why);
    pthread_mutex_unlock(&c->mu);
    return e;
}

/* Re-renders id from obj; *policy gets its AuthorizationPolicy when it should have one. */
static bool
refresh(struct ctl_ctx *c, const char *id, const json_t *obj, json_t **policy)
{
    struct ctl_state_opts so = {.authd = c->o.authd, .secret = lookup_secret, .ud = c};
    struct ctl_tenancy t;
    struct ctl_host *h;
    enum ctl_verdict v;
    bool dirty;

    pthread_mutex_lock(&c->hmu);
    t = tenancy_of(c);
    so.tenancy = &t;
    h = ctl_hosts_get(&c->hosts, id);
    if (ctl_host_refresh(h, obj, &so, policy))
        ctl_hosts_settle_host(&c->hosts, h, requeue_changed, c);
    dirty = ctl_publish(c, h);
    v = ctl_host_verdict(h);
    pthread_mutex_unlock(&c->hmu);
    if (v != CTL_ACCEPTED && v != CTL_SECRET_MISSING) {
        json_decref(*policy);
        *policy = NULL;
    }
    return dirty;
}

/*
 * The status, unless it must wait: a host that would be Ready waits until the global writer
 * has applied its authd entry and headers (it queues this key again then). in's verdict,
 * message and shared errors are filled here, under hmu.
 */
static int
update_status(struct ctl_ctx *c, const char *id, struct ctl_status_in *in)
{
    char *authd_error = NULL, *mesh_error = NULL, *snippet = NULL, *message = NULL;
    char *egress_error = NULL, *ingress_message = NULL;
    const char *shard_error;
    struct ctl_host *h;
    long long gen;
    bool wait, hold = false;
    int rc = 0;

    pthread_mutex_lock(&c->hmu);
    h = ctl_hosts_find(&c->hosts, id);
    in->verdict = ctl_host_verdict(h);
    ctl_host_shard(c, h, &gen, &shard_error);
    if (!shard_error)
        shard_error = ctl_sidecar_rev_error(c, h);
    if (!shard_error)
        shard_error = c->authd_error;
    wait = in->verdict == CTL_ACCEPTED && c->written_seq < h->seq && !in->policy_error &&
           !shard_error && !c->mesh_error && !c->egress_error;
    h->waiting = wait;
    message = ctl_host_message(h) ? pc_xstrdup(ctl_host_message(h)) : NULL;
    authd_error = shard_error ? pc_xstrdup(shard_error) : NULL;
    mesh_error = c->mesh_error ? pc_xstrdup(c->mesh_error) : NULL;
    egress_error = c->egress_error ? pc_xstrdup(c->egress_error) : NULL;
    snippet = c->snippet && ctl_host_publishes(h) ? pc_xstrdup(c->snippet) : NULL;
    /* spec.ingress: what its Ingresses carry, once a pass has seen its last change */
    hold = h->ingress && !ctl_ingress_status(c, h, &in->ingress_reason, &ingress_message);
    pthread_mutex_unlock(&c->hmu);
    if (!wait && !hold) {
        in->ingress_message = ingress_message;
        in->message = message;
        in->authd_error = authd_error;
        in->mesh_error = mesh_error;
        in->egress_error = egress_error;
        rc = ctl_status_write(c, h, in);
        if (snippet && c->o.mesh_mode == CTL_MESH_NONE)
            ctl_snippet_event(c, h, in->obj, snippet);
    }
    free(message);
    free(authd_error);
    free(mesh_error);
    free(egress_error);
    free(ingress_message);
    free(snippet);
    return rc;
}

/*
 * Fetches Secret ns/name when the watch has seen it and the data held is not of its newest
 * version. The data is kept whatever version the GET returns (it is at least as new as what
 * was held); "rv" moves to it only when no newer event came meanwhile, whose hosts fetch again.
 * May wait on the API: called without locks.
 */
static void
fetch_secret(struct ctl_ctx *c, const char *ns, const char *name)
{
    struct k8s_ref ref = {.api_version = "v1", .plural = "secrets", .namespace = ns, .name = name};
    struct pc_diag d = {0};
    char *sid = pc_xasprintf("%s/%s", ns, name), *rv = NULL;
    json_t *got = NULL, *entry;

    pthread_mutex_lock(&c->mu);
    entry = json_object_get(c->secrets, sid);
    if (entry && (!json_object_get(entry, "data") ||
                  !same_str(pc_json_str(entry, "fetched"), pc_json_str(entry, "rv"))))
        rv = pc_xstrdup(pc_json_str(entry, "rv") ? pc_json_str(entry, "rv") : "");
    pthread_mutex_unlock(&c->mu);
    if (rv && k8s_get(c->kc, &ref, &got, &d) == 0) {
        const char *got_rv = pc_json_str(json_object_get(got, "metadata"), "resourceVersion");
        json_t *data = json_object_get(got, "data");

        pthread_mutex_lock(&c->mu);
        if ((entry = json_object_get(c->secrets, sid))) {
            if (same_str(pc_json_str(entry, "rv"), rv) && got_rv)
                json_object_set_new(entry, "rv", json_string(got_rv));
            json_object_set_new(entry, "fetched", json_string(got_rv ? got_rv : rv));
            json_object_set_new(entry, "data", data ? json_incref(data) : json_object());
        }
        pthread_mutex_unlock(&c->mu);
    } else if (rv) {
        pc_log(PC_LOG_WARN, "secret_fetch_failed", "secret", sid, "error", d.msg, NULL);
    }
    json_decref(got);
    free(rv);
    free(sid);
}

/* The client Secret ProtectedHost obj names, fetched when needed (fetch_secret). */
static void
ensure_secret(struct ctl_ctx *c, const json_t *obj)
{
    const char *ns = pc_json_str(json_object_get(obj, "metadata"), "namespace");
    const char *name = pc_json_str(pc_json_path(obj, "spec.oidc.clientSecretRef"), "name");

    if (ns && name)
        fetch_secret(c, ns, name);
}

static int
reconcile_live(struct ctl_ctx *c, const char *id, const json_t *obj)
{
    struct ctl_status_in in = {.obj = obj};
    json_t *policy = NULL;
    char *policy_error = NULL;
    char *why = NULL;
    double waited = 0;
    struct ctl_host *h;
    bool hold_policy, hold_status;
    int rc = 0, prc;

    if (!has_finalizer(obj) && (rc = set_finalizer(c, obj, true)) < 0)
        return rc;
    ensure_secret(c, obj);
    if (refresh(c, id, obj, &policy))
        ctl_queue_add(c->gq, KEY_GLOBAL);
    /* authd first, then the gateway: a new or changed host is enforced before its policy. */
    pthread_mutex_lock(&c->hmu);
    h = ctl_hosts_find(&c->hosts, id);
    in.enforce = host_enforce(c, h, &why, &waited);
    h->awaiting = in.enforce != CTL_ENFORCED;
    hold_policy = in.enforce == CTL_ENFORCE_PENDING && waited < ENFORCE_WAIT_SECS;
    hold_status = in.enforce == CTL_ENFORCE_PENDING && waited < STATUS_GRACE_SECS;
    pthread_mutex_unlock(&c->hmu);
    if (hold_policy) {
        /* A Lease change queues the key sooner; this is the deadline. */
        char *key = pc_xasprintf("ph:%s", id);
        double left = (hold_status ? STATUS_GRACE_SECS : ENFORCE_WAIT_SECS) - waited;

        ctl_queue_add_after(c->q, key, (long)(left * 1000) + 1);
        free(key);
    }
    if (policy && !hold_policy)
        prc = apply_policy(c, id, policy, &policy_error);
    else
        prc = policy ? 0 : drop_policy(c, id);
    in.policy_ns = pc_json_str(json_object_get(policy, "metadata"), "namespace");
    in.policy_error = policy_error;
    in.enforce_why = why;
    rc = hold_status ? 0 : update_status(c, id, &in);
    json_decref(policy);
    free(policy_error);
    free(why);
    return prc < 0 ? prc : rc;
}

static int
reconcile_ph(struct ctl_ctx *c, const char *id)
{
    json_t *obj = cached_object(c, id);
    int rc;

    if (!obj) {
        rc = forget(c, id);
        ctl_ingress_note(c, id);
        return rc;
    }
    if (pc_json_path(obj, "metadata.deletionTimestamp"))
        rc = finalize(c, id, obj);
    else
        rc = reconcile_live(c, id, obj);
    ctl_ingress_note(c, id);
    json_decref(obj);
    return rc;
}

/* ---- resync -------------------------------------------------------------------------------- */

/* Forgets the data of Secrets no ProtectedHost names (their names stay). Called with mu. */
static void
drop_unnamed_secrets(struct ctl_ctx *c)
{
    json_t *named = json_object(), *drop = json_array(), *e, *v;
    const char *k;
    size_t i;

    json_object_foreach(c->phs, k, e)
    {
        if (pc_json_str(e, "secret"))
            json_object_set_new(named, pc_json_str(e, "secret"), json_true());
    }
    json_object_foreach(c->secrets, k, v)
    {
        if (json_object_get(v, "data") && !json_object_get(named, k))
            json_array_append_new(drop, json_string(k));
    }
    json_array_foreach(drop, i, v)
    {
        json_object_del(json_object_get(c->secrets, json_string_value(v)), "data");
        json_object_del(json_object_get(c->secrets, json_string_value(v)), "fetched");
    }
    json_decref(drop);
    json_decref(named);
}

/* Every cached object rendered again, so conflicts are settled over all of them at once. */
static json_t *
rebuild_cache(struct ctl_ctx *c)
{
    struct ctl_state_opts so = {.authd = c->o.authd, .secret = lookup_secret, .ud = c};
    json_t *ids = json_array(), *id, *obj;
    struct ctl_tenancy t;
    const char *k;
    size_t i;

    json_t *named = json_object();

    pthread_mutex_lock(&c->mu);
    json_object_foreach(c->phs, k, obj)
    {
        json_array_append_new(ids, json_string(k));
        if (pc_json_str(obj, "secret"))
            json_object_set_new(named, pc_json_str(obj, "secret"), json_true());
    }
    drop_unnamed_secrets(c);
    pthread_mutex_unlock(&c->mu);
    /* Every host is rendered below: their Secrets' data first (after a restart or failover
     * none is held yet), or every such host would leave authd's config until its key ran. */
    json_object_foreach(named, k, obj)
    {
        char *ns = pc_xstrdup(k), *slash = strchr(ns, '/');

        if (slash) {
            *slash = '\0';
            fetch_secret(c, ns, slash + 1);
        }
        free(ns);
    }
    json_decref(named);
    pthread_mutex_lock(&c->hmu);
    t = tenancy_of(c);
    so.tenancy = &t;
    json_array_foreach(ids, i, id)
    {
        struct ctl_host *h = ctl_hosts_get(&c->hosts, json_string_value(id));

        if (!(obj = cached_object(c, json_string_value(id))))
            continue;
        ctl_host_refresh(h, obj, &so, NULL);
        if (pc_json_path(obj, "metadata.deletionTimestamp"))
            ctl_host_retire(h);
        json_decref(obj);
    }
    /* Hosts whose object went while we were not leading: their keys forget them. */
    for (i = 0; i < c->hosts.n; i++)
        json_array_append_new(ids, json_string(c->hosts.v[i]->id));
    pthread_mutex_unlock(&c->hmu);
    return ids;
}

/*
 * Forgets what was applied, so every key applies its objects again. Returns the wanted policy
 * names, each with the namespace it goes to; *filters gets the names whose policy wants an
 * EnvoyFilter; *sidecar_nss the set of the namespaces of the sidecar hosts.
 */
static json_t *
forget_applied(struct ctl_ctx *c, json_t **filters, json_t **sidecar_nss)
{
    json_t *wanted = json_object();

    *filters = json_object();
    *sidecar_nss = json_object();
    pthread_mutex_lock(&c->hmu);
    ctl_hosts_settle(&c->hosts, NULL, NULL);
    for (size_t i = 0; i < c->hosts.n; i++) {
        struct ctl_host *h = c->hosts.v[i];
        enum ctl_verdict v = ctl_host_verdict(h);

        free(h->applied_hash);
        free(h->status_sig);
        h->applied_hash = h->status_sig = NULL;
        if (h->sidecar)
            json_object_set_new(*sidecar_nss, h->ns, json_true());
        if (!h->deleting && !h->ingress && h->policy_ns &&
            (v == CTL_ACCEPTED || v == CTL_SECRET_MISSING)) {
            json_object_set_new(wanted, h->policy_name, json_string(h->policy_ns));
            if (ctl_host_has_wildcard(h))
                json_object_set_new(*filters, h->policy_name, json_string(h->policy_ns));
        }
        ctl_publish(c, h);
    }
    c->recheck = true;
    pthread_mutex_unlock(&c->hmu);
    return wanted;
}

struct orphans {
    struct ctl_ctx *c;
    const struct k8s_ref *kind;
    json_t *wanted;
    int rc;
};

/*
 * Whether the host that owns obj (ref "ns/name", of kind) wants it now: the wanted set is a
 * snapshot, and a key worker may have applied the object since (a new host, a wildcard
 * added). Called with hmu.
 */
static bool
still_wanted(struct ctl_ctx *c, const struct k8s_ref *kind, const json_t *obj, const char *ref)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *owner = pc_json_str(json_object_get(md, "annotations"), CTL_ANNOT_OWNER);
    struct ctl_host *h = owner ? ctl_hosts_find(&c->hosts, owner) : NULL;
    enum ctl_verdict v;

    if (!h || h->deleting || h->ingress || !same_str(h->policy_name, pc_json_str(md, "name")))
        return false;
    /* Its policy goes elsewhere now (sidecar mode and back, another gateway namespace). */
    if (!same_str(h->policy_ns, pc_json_str(md, "namespace")))
        return false;
    v = ctl_host_verdict(h);
    if (v != CTL_ACCEPTED && v != CTL_SECRET_MISSING)
        return false;
    if (h->applied_ref && strcmp(h->applied_ref, ref) != 0)
        return false; /* moved to another namespace: this one is the old one */
    return kind == &ap_ref || ctl_host_has_wildcard(h);
}

static int
orphan_page(void *ud, json_t *items)
{
    struct orphans *o = ud;
    size_t i;
    json_t *obj;

    json_array_foreach(items, i, obj)
    {
        const json_t *md = json_object_get(obj, "metadata");
        const char *name = pc_json_str(md, "name");
        char *ref = object_id(obj);
        int rc = 0;

        if (!name || same_str(pc_json_str(o->wanted, name), pc_json_str(md, "namespace"))) {
            free(ref);
            continue;
        }
        /* Checked and deleted under hmu, so no key worker applies it in between. */
        pthread_mutex_lock(&o->c->hmu);
        if (!still_wanted(o->c, o->kind, obj, ref))
            rc = o->kind == &ap_ref ? delete_policy(o->c, ref, false)
                                    : delete_ref(o->c, o->kind, ref, "envoyfilter");
        pthread_mutex_unlock(&o->c->hmu);
        if (rc < 0)
            o->rc = -1;
        free(ref);
    }
    return 0;
}

/* Objects of kind with our label in ns that no ProtectedHost wants (wanted: a snapshot). */
static int
orphans_in(struct ctl_ctx *c, const struct k8s_ref *kind, const json_t *wanted, const char *ns)
{
    struct orphans o = {.c = c, .kind = kind, .wanted = (json_t *)wanted};
    struct k8s_ref ref = *kind;
    struct k8s_pages p = {.ref = &ref, .page_size = ORPHAN_PAGE, .fn = orphan_page, .ud = &o};
    struct pc_diag d = {0};
    int rc;

    ref.namespace = ns;
    ref.label_selector = CTL_LABEL_MANAGED_BY "=portcullis";
    rc = k8s_list_pages(c->kc, &p, &d);
    free(p.resource_version);
    /* No Istio here (ingress-nginx only: no such resource), or no Role in the namespace (one
     * that does not exist, a sidecar namespace that took it back): nothing of ours can be
     * there to delete. A Role missing where policies are written shows as ApplyFailed on the
     * hosts that need it. */
    if (rc == K8S_ENOTFOUND || rc == K8S_EFORBIDDEN) {
        pc_log(PC_LOG_DEBUG, "orphan_scan_skipped", "resource", kind->plural, "namespace", ns,
               "error", d.msg, NULL);
        return o.rc;
    }
    if (rc < 0) {
        pc_log(PC_LOG_WARN, "orphan_scan_failed", "resource", kind->plural, "namespace", ns,
               "error", d.msg, NULL);
        return rc;
    }
    return o.rc;
}

int
ctl_delete_orphan_policies(struct ctl_ctx *c, const char *ns)
{
    json_t *none = json_object();
    int rc = orphans_in(c, &ap_ref, none, ns);

    json_decref(none);
    return rc;
}

/*
 * Objects of kind with our label that no ProtectedHost wants: left from before a restart.
 * Looked for where the controller may write: the gateway namespaces and those of the sidecar
 * hosts (more_nss, a set; the namespaces whose last sidecar host went are the global
 * writer's, ctl_delete_orphan_policies).
 */
static int
delete_orphans(struct ctl_ctx *c, const struct k8s_ref *kind, json_t *wanted,
               const json_t *more_nss)
{
    const char *gws =
        c->o.gateway_namespaces ? c->o.gateway_namespaces : CTL_DEFAULT_GATEWAY_NAMESPACES;
    char *list = pc_xstrdup(gws), *save = NULL;
    json_t *nss = json_object(), *v;
    const char *ns;
    int rc = 0;

    for (char *gw = strtok_r(list, ",", &save); gw; gw = strtok_r(NULL, ",", &save))
        json_object_set_new(nss, gw, json_true());
    json_object_update(nss, (json_t *)more_nss);
    json_object_foreach(nss, ns, v)
    {
        int nrc = orphans_in(c, kind, wanted, ns);

        rc = nrc < 0 ? nrc : rc;
    }
    json_decref(nss);
    free(list);
    return rc;
}

static int
resync(struct ctl_ctx *c)
{
    json_t *filters, *sidecar_nss, *ids = rebuild_cache(c), *id;
    json_t *wanted = forget_applied(c, &filters, &sidecar_nss), *none = json_object();
    size_t i;
    int rc;

    atomic_store(&c->primed, true); /* the global writer may write what every host renders */
    rc = delete_orphans(c, &ap_ref, wanted, sidecar_nss);

    /* With --gateway-host-normalization=external none of ours should exist; the controller
     * may not even be allowed to list them then. None are written in sidecar namespaces. */
    if (!c->o.authd.gateway_strips_ports && delete_orphans(c, &ef_ref, filters, none) < 0)
        rc = -1;
    json_decref(none);
    json_decref(sidecar_nss);

    json_array_foreach(ids, i, id) ctl_queue_host(c, json_string_value(id));
    ctl_queue_add(c->gq, KEY_GLOBAL);
    ctl_ingress_resync(c);
    if (c->o.resync_secs > 0)
        ctl_queue_add_after(c->q, KEY_RESYNC, c->o.resync_secs * 1000);
    json_decref(ids);
    json_decref(wanted);
    json_decref(filters);
    malloc_trim(0);
    return rc;
}

/* The admin policy changed: every host admitted again; only what changed is written. */
static int
readmit(struct ctl_ctx *c)
{
    json_t *ids = rebuild_cache(c), *id;
    bool dirty = false;
    size_t i;

    pthread_mutex_lock(&c->hmu);
    ctl_hosts_settle(&c->hosts, NULL, NULL);
    for (i = 0; i < c->hosts.n; i++)
        dirty = ctl_publish(c, c->hosts.v[i]) || dirty;
    pthread_mutex_unlock(&c->hmu);
    json_array_foreach(ids, i, id) ctl_queue_host(c, json_string_value(id));
    if (dirty)
        ctl_queue_add(c->gq, KEY_GLOBAL);
    json_decref(ids);
    return 0;
}

/* ---- the worker ------------------------------------------------------------------------------ */

static int
process(struct ctl_ctx *c, const char *key)
{
    if (strcmp(key, KEY_RESYNC) == 0)
        return resync(c);
    if (strcmp(key, KEY_POLICY) == 0)
        return readmit(c);
    if (strncmp(key, "ph:", 3) == 0)
        return reconcile_ph(c, key + 3);
    if (strcmp(key, CTL_KEY_INGRESS) == 0)
        return ctl_ingress_pass(c);
    return 0;
}

void *
ctl_worker(void *arg)
{
    struct ctl_ctx *c = arg;
    char *key;

    while ((key = ctl_queue_get(c->q)) != NULL) {
        int rc;

        if (!atomic_load(&c->leader)) {
            /* Dropped: winning the lease queues a resync that covers everything. */
        } else if (!atomic_load(&c->ready)) {
            ctl_queue_add_after(c->q, key, 500);
        } else if ((rc = process(c, key)) < 0) {
            long delay = ctl_queue_retry(c->q, key);
            char ms[32];

            snprintf(ms, sizeof(ms), "%ld", delay);
            ctl_metrics_reconcile(&c->m, CTL_RESULT_ERROR);
            pc_log(PC_LOG_INFO, "reconcile_retry", "key", key, "delay_ms", ms, NULL);
        } else {
            ctl_queue_forget(c->q, key);
            ctl_metrics_reconcile(&c->m, CTL_RESULT_SUCCESS);
        }
        ctl_queue_done(c->q, key);
        free(key);
    }
    return NULL;
}
