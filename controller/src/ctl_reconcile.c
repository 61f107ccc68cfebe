/*
 * ctl_reconcile.c - from what the watches saw to what the cluster holds.
 *
 * The watch threads only update the caches and queue keys. One worker thread does all the
 * writing, so the reconciler needs no locks beyond copying the caches:
 *
 *   "ph:<ns>/<name>"  the finalizer: added to live objects; for deleted ones the policy and the
 *                     authd entry go first, then the finalizer.
 *   "global"          the whole desired state from every ProtectedHost: policies applied (only
 *                     those that changed), stale ones deleted, authd's config Secret and the
 *                     mesh provider written when their content changes, then each status.
 *   "resync"          after (re)gaining leadership and periodically: deletes policies with our
 *                     labels that no ProtectedHost wants, forgets what was applied, re-queues all.
 *
 * Everything is level-based and idempotent: a key may be processed any number of times.
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
#include "portcullis/yaml.h"

#define KEY_GLOBAL "global"
#define KEY_RESYNC "resync"

static const struct k8s_ref ph_ref = {.api_version = CTL_GROUP_VERSION,
                                      .plural = "protectedhosts"};

void
ctl_ctx_init(struct ctl_ctx *c, const struct ctl_run_opts *o, struct k8s_client *kc)
{
    memset(c, 0, sizeof(*c));
    c->o = *o;
    c->kc = kc;
    c->q = ctl_queue_new();
    ctl_metrics_init(&c->m);
    pthread_mutex_init(&c->mu, NULL);
    c->phs = json_object();
    c->secrets = json_object();
    c->applied = json_object();
    c->status_written = json_object();
}

void
ctl_ctx_release(struct ctl_ctx *c)
{
    ctl_queue_free(c->q);
    ctl_metrics_release(&c->m);
    pthread_mutex_destroy(&c->mu);
    json_decref(c->phs);
    json_decref(c->secrets);
    json_decref(c->applied);
    json_decref(c->status_written);
    free(c->authd_hash);
    free(c->mesh_hash);
}

static double
now_secs(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *
object_id(const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *ns = pc_json_str(md, "namespace");

    return pc_xasprintf("%s/%s", ns ? ns : "", pc_json_str(md, "name") ? pc_json_str(md, "name")
                                                                      : "");
}

/* ---- watch side ------------------------------------------------------------------------ */

/* Whether the change is one the reconciler acts on (not just our own status write). */
static bool
worth_a_look(const json_t *old, const json_t *obj)
{
    static const char *const fields[] = {"metadata.generation", "metadata.deletionTimestamp",
                                         "metadata.finalizers", "metadata.uid", NULL};

    if (!old)
        return true;
    for (size_t i = 0; fields[i]; i++) {
        const json_t *a = pc_json_path(old, fields[i]), *b = pc_json_path(obj, fields[i]);

        if ((a == NULL) != (b == NULL) || (a && !json_equal(a, b)))
            return true;
    }
    return false;
}

void
ctl_on_protectedhost(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    char *id = object_id(obj), *key = pc_xasprintf("ph:%s", id);
    bool look;

    pthread_mutex_lock(&c->mu);
    look = type == K8S_DELETED || worth_a_look(json_object_get(c->phs, id), obj);
    if (type == K8S_DELETED)
        json_object_del(c->phs, id);
    else
        json_object_set(c->phs, id, obj);
    pthread_mutex_unlock(&c->mu);
    if (look) {
        ctl_queue_add(c->q, key);
        ctl_queue_add(c->q, KEY_GLOBAL);
    }
    free(key);
    free(id);
}

/* Whether a ProtectedHost in the cache refers to Secret ns/name. Called locked. */
static bool
secret_in_use(struct ctl_ctx *c, const char *ns, const char *name)
{
    const char *id;
    json_t *ph;

    json_object_foreach(c->phs, id, ph) {
        const char *ref = pc_json_str(pc_json_path(ph, "spec.oidc.clientSecretRef"), "name");
        const char *pns = pc_json_str(json_object_get(ph, "metadata"), "namespace");

        if (ref && pns && strcmp(ref, name) == 0 && strcmp(pns, ns) == 0)
            return true;
    }
    return false;
}

void
ctl_on_secret(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    const json_t *md = json_object_get(obj, "metadata");
    char *id = object_id(obj);
    json_t *data = json_object_get(obj, "data");
    bool used;

    pthread_mutex_lock(&c->mu);
    if (type == K8S_DELETED)
        json_object_del(c->secrets, id);
    else
        json_object_set_new(c->secrets, id, data ? json_incref(data) : json_object());
    used = secret_in_use(c, pc_json_str(md, "namespace") ? pc_json_str(md, "namespace") : "",
                         pc_json_str(md, "name") ? pc_json_str(md, "name") : "");
    pthread_mutex_unlock(&c->mu);
    if (used)
        ctl_queue_add(c->q, KEY_GLOBAL);
    free(id);
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
    if (all && !atomic_exchange(&c->ready, true)) {
        pc_log(PC_LOG_INFO, "caches_synced", NULL);
        ctl_queue_add(c->q, KEY_RESYNC);
    } else if (all) {
        ctl_queue_add(c->q, KEY_GLOBAL);
    }
}

/* ---- helpers for writes ------------------------------------------------------------------ */

static int
timed_apply(struct ctl_ctx *c, const struct k8s_ref *ref, const json_t *obj, struct pc_diag *d)
{
    double t0 = now_secs();
    int rc = k8s_apply(c->kc, ref, obj, d);

    ctl_metrics_apply(&c->m, now_secs() - t0);
    return rc;
}

static void
rfc3339_now(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Splits "ns/name" in place into two strings. */
static void
split_ref(char *ref, const char **ns, const char **name)
{
    char *slash = strchr(ref, '/');

    *ns = ref;
    *name = slash ? slash + 1 : "";
    if (slash)
        *slash = '\0';
}

static int
delete_policy(struct ctl_ctx *c, const char *policy_ref)
{
    char *copy = pc_xstrdup(policy_ref);
    struct k8s_ref ref = {.api_version = "security.istio.io/v1",
                          .plural = "authorizationpolicies"};
    struct pc_diag d = {0};
    int rc;

    split_ref(copy, &ref.namespace, &ref.name);
    rc = k8s_delete(c->kc, &ref, &d);
    if (rc == K8S_ENOTFOUND)
        rc = 0;
    if (rc < 0)
        pc_log(PC_LOG_WARN, "policy_delete_failed", "policy", policy_ref, "error", d.msg, NULL);
    else {
        ctl_metrics_inc(&c->m, &c->m.policy_deletes);
        pc_log(PC_LOG_INFO, "policy_deleted", "policy", policy_ref, NULL);
    }
    free(copy);
    return rc;
}

/* ---- the desired state ------------------------------------------------------------------- */

struct snapshot {
    json_t *objs;    /* ProtectedHosts not being deleted */
    json_t *secrets; /* shallow copy of the Secret cache */
};

static int
lookup_secret(void *ud, const char *ns, const char *name, const char *key, char **value)
{
    struct snapshot *s = ud;
    char *id = pc_xasprintf("%s/%s", ns, name);
    const char *b64 = pc_json_str(json_object_get(s->secrets, id), key);
    unsigned char *raw = NULL;
    size_t len = 0;

    free(id);
    if (!b64 || pc_b64_decode(b64, strlen(b64), &raw, &len) < 0 || memchr(raw, '\0', len)) {
        free(raw);
        return PC_ENOTFOUND;
    }
    *value = (char *)raw;
    return 0;
}

static void
take_snapshot(struct ctl_ctx *c, struct snapshot *s)
{
    const char *id;
    json_t *ph;

    s->objs = json_array();
    pthread_mutex_lock(&c->mu);
    json_object_foreach(c->phs, id, ph) {
        if (!pc_json_path(ph, "metadata.deletionTimestamp"))
            json_array_append(s->objs, ph);
    }
    s->secrets = json_copy(c->secrets);
    pthread_mutex_unlock(&c->mu);
}

static void
build_state(struct ctl_ctx *c, struct ctl_state *st, struct snapshot *s)
{
    struct ctl_state_opts so = {.authd = c->o.authd, .secret = lookup_secret, .ud = s};

    take_snapshot(c, s);
    ctl_state_build(st, s->objs, &so);
}

static void
release_snapshot(struct snapshot *s)
{
    json_decref(s->objs);
    json_decref(s->secrets);
}

/* ---- global: policies ---------------------------------------------------------------------- */

/* What went wrong per id ("ns/name" -> message), for the statuses. */
struct outcome {
    json_t *policy_errors;
    char *authd_error;
    char *mesh_error;
};

static char *
policy_ref_of(const struct ctl_item *it)
{
    return pc_xasprintf("%s/%s", pc_json_str(pc_json_path(it->policy, "metadata"), "namespace"),
                        it->policy_name);
}

static int
apply_policy(struct ctl_ctx *c, const struct ctl_item *it, struct outcome *out)
{
    char *dump = pc_json_dumps_sorted(it->policy), *hash = pc_sha256_hex(dump, strlen(dump));
    char *ref = policy_ref_of(it);
    const json_t *prev = json_object_get(c->applied, it->id);
    struct k8s_ref kref = {.api_version = "security.istio.io/v1", .plural = "authorizationpolicies"};
    struct pc_diag d = {0};
    int rc = 0;

    if (!prev || strcmp(pc_json_str(prev, "hash"), hash) != 0) {
        rc = timed_apply(c, &kref, it->policy, &d);
        if (rc < 0) {
            json_object_set_new(out->policy_errors, it->id, json_string(d.msg));
            pc_log(PC_LOG_WARN, "policy_apply_failed", "policy", ref, "error", d.msg, NULL);
        } else {
            if (prev && strcmp(pc_json_str(prev, "ref"), ref) != 0)
                delete_policy(c, pc_json_str(prev, "ref")); /* moved to another gateway */
            json_object_set_new(c->applied, it->id, json_pack("{s:s,s:s}", "ref", ref, "hash",
                                                              hash));
            pc_log(PC_LOG_INFO, "policy_applied", "policy", ref, "owner", it->id, NULL);
        }
    }
    free(ref);
    free(hash);
    free(dump);
    return rc;
}

/* Policies applied before that no item wants any more. */
static int
delete_unwanted(struct ctl_ctx *c, const struct ctl_state *st)
{
    json_t *gone = json_array();
    const char *id;
    json_t *v;
    size_t i;
    int rc = 0;

    json_object_foreach(c->applied, id, v) {
        const char *slash = strchr(id, '/');
        char *ns = pc_xstrndup(id, slash ? (size_t)(slash - id) : 0);
        const struct ctl_item *it = ctl_state_find(st, ns, slash ? slash + 1 : "");

        if (!it || !it->policy)
            json_array_append_new(gone, json_string(id));
        free(ns);
    }
    json_array_foreach(gone, i, v) {
        const char *ref = pc_json_str(json_object_get(c->applied, json_string_value(v)), "ref");

        if (delete_policy(c, ref) < 0)
            rc = -1;
        else
            json_object_del(c->applied, json_string_value(v));
    }
    json_decref(gone);
    return rc;
}

/* ---- global: authd config and mesh provider -------------------------------------------------- */

static bool
authd_secret_matches(struct ctl_ctx *c, const char *text)
{
    struct k8s_ref ref = {.api_version = "v1", .plural = "secrets",
                          .namespace = c->o.authd.namespace, .name = CTL_AUTHD_SECRET};
    struct pc_diag d = {0};
    json_t *cur = NULL;
    unsigned char *raw = NULL;
    size_t len = 0;
    const char *b64;
    bool same = false;

    if (k8s_get(c->kc, &ref, &cur, &d) == 0) {
        b64 = pc_json_str(json_object_get(cur, "data"), "config.yaml");
        same = b64 && pc_b64_decode(b64, strlen(b64), &raw, &len) == 0 &&
               len == strlen(text) && memcmp(raw, text, len) == 0;
    }
    if (raw)
        pc_cleanse(raw, len);
    free(raw);
    json_decref(cur);
    return same;
}

static void
write_authd_config(struct ctl_ctx *c, const struct ctl_state *st, struct outcome *out)
{
    char *hash = pc_sha256_hex(st->authd_text, strlen(st->authd_text)), *b64;
    struct k8s_ref ref = {.api_version = "v1", .plural = "secrets"};
    struct pc_diag d = {0};
    json_t *secret;

    if (c->authd_hash && strcmp(c->authd_hash, hash) == 0) {
        free(hash);
        return;
    }
    if (!c->authd_hash && authd_secret_matches(c, st->authd_text)) {
        c->authd_hash = hash; /* a restart: what is there is already right */
        return;
    }
    b64 = pc_b64_encode(st->authd_text, strlen(st->authd_text));
    secret = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:s,s:{s:s}}", "apiVersion", "v1", "kind",
                       "Secret", "metadata", "name", CTL_AUTHD_SECRET, "namespace",
                       c->o.authd.namespace, "labels", CTL_LABEL_MANAGED_BY, "portcullis",
                       "type", "Opaque", "data", "config.yaml", b64);
    if (timed_apply(c, &ref, secret, &d) < 0) {
        out->authd_error = pc_xasprintf("authd config Secret %s/%s: %s", c->o.authd.namespace,
                                        CTL_AUTHD_SECRET, d.msg);
        free(hash);
    } else {
        ctl_metrics_inc(&c->m, &c->m.authd_writes);
        char n[32];

        snprintf(n, sizeof(n), "%zu", json_array_size(json_object_get(st->authd_config, "hosts")));
        pc_log(PC_LOG_INFO, "authd_config_written", "hosts", n, NULL);
        free(c->authd_hash);
        c->authd_hash = hash;
    }
    pc_cleanse(b64, strlen(b64));
    free(b64);
    json_decref(secret);
}

/* --mesh-config=istio: merge into the installer's ConfigMap, with optimistic concurrency. */
static int
mesh_istio(struct ctl_ctx *c, const json_t *provider, struct pc_diag *d)
{
    struct k8s_ref ref = {.api_version = "v1", .plural = "configmaps",
                          .namespace = c->o.mesh_namespace, .name = c->o.mesh_configmap};
    json_t *cm = NULL;
    char *merged = NULL;
    const char *cur;
    int rc = k8s_get(c->kc, &ref, &cm, d);

    if (rc == K8S_ENOTFOUND)
        pc_diag_set(d, 0, 0, "mesh ConfigMap %s/%s not found", ref.namespace, ref.name);
    if (rc < 0)
        goto out;
    cur = pc_json_str(json_object_get(cm, "data"), "mesh");
    if ((rc = ctl_mesh_merge(cur, provider, &merged, d)) < 0)
        goto out;
    if (cur && strcmp(cur, merged) == 0)
        goto out;
    if (!json_is_object(json_object_get(cm, "data")))
        json_object_set_new(cm, "data", json_object());
    json_object_set_new(json_object_get(cm, "data"), "mesh", json_string(merged));
    if ((rc = k8s_update(c->kc, &ref, cm, d)) == 0) {
        ctl_metrics_inc(&c->m, &c->m.mesh_writes);
        pc_log(PC_LOG_INFO, "mesh_provider_written", "configmap", ref.name, NULL);
    }
out:
    free(merged);
    json_decref(cm);
    return rc;
}

/* --mesh-config=shared: a ConfigMap of our own, only the provider in it. */
static int
mesh_shared(struct ctl_ctx *c, const json_t *provider, struct pc_diag *d)
{
    struct k8s_ref ref = {.api_version = "v1", .plural = "configmaps"};
    char *text = NULL;
    json_t *cm;
    int rc = ctl_mesh_merge(NULL, provider, &text, d);

    if (rc < 0)
        return rc;
    cm = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:{s:s}}", "apiVersion", "v1", "kind",
                   "ConfigMap", "metadata", "name", c->o.mesh_configmap, "namespace",
                   c->o.mesh_namespace, "labels", CTL_LABEL_MANAGED_BY, "portcullis", "data",
                   "mesh", text);
    rc = timed_apply(c, &ref, cm, d);
    if (rc == 0)
        ctl_metrics_inc(&c->m, &c->m.mesh_writes);
    json_decref(cm);
    free(text);
    return rc;
}

static void
write_mesh(struct ctl_ctx *c, const struct ctl_state *st, struct outcome *out)
{
    char *dump = pc_json_dumps_sorted(st->provider), *hash = pc_sha256_hex(dump, strlen(dump));
    struct pc_diag d = {0};
    int rc = 0;

    if (c->o.mesh_mode == CTL_MESH_ISTIO)
        rc = mesh_istio(c, st->provider, &d); /* always read: an installer may have reset it */
    else if (c->o.mesh_mode == CTL_MESH_SHARED &&
             (!c->mesh_hash || strcmp(c->mesh_hash, hash) != 0))
        rc = mesh_shared(c, st->provider, &d);
    else if (c->o.mesh_mode == CTL_MESH_NONE &&
             (!c->mesh_hash || strcmp(c->mesh_hash, hash) != 0)) {
        char *text = ctl_yaml_ordered(st->provider);

        pc_log(PC_LOG_INFO, "mesh_provider_required", "provider", text, NULL);
        free(text);
    }
    if (rc < 0) {
        out->mesh_error = pc_xstrdup(d.msg);
        pc_log(PC_LOG_WARN, "mesh_provider_failed", "error", d.msg, NULL);
        free(hash);
    } else {
        free(c->mesh_hash);
        c->mesh_hash = hash;
    }
    free(dump);
}

/* ---- global: status ------------------------------------------------------------------------- */

struct cond {
    const char *status, *reason;
    char *message; /* new */
};

static void
ready_condition(const struct ctl_item *it, const struct outcome *out, struct cond *r)
{
    const char *perr = pc_json_str(out->policy_errors, it->id);

    r->status = "False";
    if (it->verdict == CTL_INVALID || it->verdict == CTL_HOST_CONFLICT) {
        r->reason = it->verdict == CTL_INVALID ? "Invalid" : "HostConflict";
        r->message = pc_xstrdup(it->message);
    } else if (perr) {
        r->reason = "ApplyFailed";
        r->message = pc_xasprintf("AuthorizationPolicy: %s", perr);
    } else if (it->verdict == CTL_SECRET_MISSING) {
        r->reason = "SecretNotFound";
        r->message = pc_xstrdup(it->message);
    } else if (out->authd_error) {
        r->reason = "ApplyFailed";
        r->message = pc_xstrdup(out->authd_error);
    } else if (out->mesh_error) {
        r->reason = "ProviderNotRegistered";
        r->message = pc_xasprintf("extension provider %s: %s", CTL_PROVIDER_NAME,
                                  out->mesh_error);
    } else {
        r->status = "True";
        r->reason = "Applied";
        r->message = pc_xasprintf("AuthorizationPolicy %s/%s, authd config and mesh provider "
                                  "applied", pc_json_str(pc_json_path(it->policy, "metadata"),
                                                         "namespace"), it->policy_name);
    }
}

/* The previous lastTransitionTime when status is unchanged, else now. */
static json_t *
condition(const json_t *old_conds, const char *type, const struct cond *k, long long gen)
{
    char now[32];
    const char *ltt = NULL;
    size_t i;
    json_t *o;

    json_array_foreach(old_conds, i, o) {
        if (strcmp(pc_json_str(o, "type") ? pc_json_str(o, "type") : "", type) == 0 &&
            strcmp(pc_json_str(o, "status") ? pc_json_str(o, "status") : "", k->status) == 0)
            ltt = pc_json_str(o, "lastTransitionTime");
    }
    rfc3339_now(now, sizeof(now));
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}", "type", type, "status", k->status, "reason",
                     k->reason, "message", k->message ? k->message : "", "observedGeneration",
                     (json_int_t)gen, "lastTransitionTime", ltt ? ltt : now);
}

static json_t *
desired_status(const struct ctl_item *it, const struct outcome *out)
{
    const json_t *old = pc_json_path(it->obj, "status.conditions");
    struct cond acc = {"True", "Accepted", NULL}, ready = {0};
    json_t *st;

    if (it->verdict == CTL_INVALID || it->verdict == CTL_HOST_CONFLICT) {
        acc.status = "False";
        acc.reason = it->verdict == CTL_INVALID ? "Invalid" : "HostConflict";
        acc.message = pc_xstrdup(it->message);
    } else {
        acc.message = pc_xstrdup("spec is valid and its hosts are not claimed by an older "
                                 "ProtectedHost");
    }
    ready_condition(it, out, &ready);
    st = json_pack("{s:I,s:[o,o]}", "observedGeneration", (json_int_t)it->generation,
                   "conditions", condition(old, "Accepted", &acc, it->generation),
                   condition(old, "Ready", &ready, it->generation));
    if (it->policy)
        json_object_set_new(st, "authorizationPolicy", json_sprintf("%s/%s",
                            pc_json_str(pc_json_path(it->policy, "metadata"), "namespace"),
                            it->policy_name));
    free(acc.message);
    free(ready.message);
    return st;
}

static const char *
cond_field(const json_t *status, const char *type, const char *field)
{
    size_t i;
    json_t *o;

    json_array_foreach(json_object_get(status, "conditions"), i, o) {
        if (strcmp(pc_json_str(o, "type") ? pc_json_str(o, "type") : "", type) == 0)
            return pc_json_str(o, field);
    }
    return NULL;
}

static bool
same_str(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* Equal for our purposes: everything but the transition times. */
static bool
status_equal(const json_t *a, const json_t *b)
{
    static const char *const types[] = {"Accepted", "Ready", NULL};
    static const char *const fields[] = {"status", "reason", "message", NULL};

    if (!a || !b || !json_equal(json_object_get(a, "observedGeneration"),
                                json_object_get(b, "observedGeneration")) ||
        !same_str(pc_json_str(a, "authorizationPolicy"), pc_json_str(b, "authorizationPolicy")))
        return false;
    for (size_t t = 0; types[t]; t++)
        for (size_t f = 0; fields[f]; f++)
            if (!same_str(cond_field(a, types[t], fields[f]), cond_field(b, types[t], fields[f])))
                return false;
    return true;
}

static void
record_event(struct ctl_ctx *c, const struct ctl_item *it, const json_t *st)
{
    const char *ready = cond_field(st, "Ready", "status");
    struct k8s_event ev = {.involved = it->obj,
                           .type = same_str(ready, "True") ? "Normal" : "Warning",
                           .reason = cond_field(st, "Ready", "reason"),
                           .message = cond_field(st, "Ready", "message")};
    struct pc_diag d = {0};

    if (k8s_event(c->kc, &ev, &d) < 0)
        pc_log(PC_LOG_DEBUG, "event_failed", "owner", it->id, "error", d.msg, NULL);
}

static int
write_status(struct ctl_ctx *c, const struct ctl_item *it, const struct outcome *out)
{
    json_t *st = desired_status(it, out), *body;
    const json_t *known = json_object_get(c->status_written, it->id);
    const json_t *cur = known ? known : json_object_get(it->obj, "status");
    struct k8s_ref ref = ph_ref;
    struct pc_diag d = {0};
    int rc = 0;

    if (status_equal(cur, st)) {
        json_decref(st);
        return 0;
    }
    ref.subresource = "status";
    body = json_pack("{s:s,s:s,s:{s:s,s:s},s:O}", "apiVersion", CTL_GROUP_VERSION, "kind",
                     "ProtectedHost", "metadata", "name", it->name, "namespace", it->ns,
                     "status", st);
    rc = timed_apply(c, &ref, body, &d);
    if (rc == 0) {
        ctl_metrics_inc(&c->m, &c->m.status_writes);
        if (!same_str(cond_field(cur, "Ready", "reason"), cond_field(st, "Ready", "reason")))
            record_event(c, it, st);
        json_object_set(c->status_written, it->id, st);
    } else if (rc != K8S_ENOTFOUND) {
        pc_log(PC_LOG_WARN, "status_write_failed", "owner", it->id, "error", d.msg, NULL);
    }
    json_decref(body);
    json_decref(st);
    return rc == K8S_ENOTFOUND ? 0 : rc;
}

/* ---- global ------------------------------------------------------------------------------ */

static int
reconcile_global(struct ctl_ctx *c)
{
    struct outcome out = {.policy_errors = json_object()};
    struct snapshot snap = {0};
    struct ctl_state st;
    int rc = 0;

    build_state(c, &st, &snap);
    for (size_t i = 0; i < st.n; i++)
        if (st.items[i].policy && apply_policy(c, &st.items[i], &out) < 0)
            rc = -1;
    if (delete_unwanted(c, &st) < 0)
        rc = -1;
    write_authd_config(c, &st, &out);
    write_mesh(c, &st, &out);
    if (out.authd_error || out.mesh_error)
        rc = -1;
    for (size_t i = 0; i < st.n; i++)
        if (write_status(c, &st.items[i], &out) < 0)
            rc = -1;
    ctl_state_release(&st);
    release_snapshot(&snap);
    json_decref(out.policy_errors);
    free(out.authd_error);
    free(out.mesh_error);
    malloc_trim(0); /* a state of 1000s of hosts is built and dropped per pass: give it back */
    return rc;
}

/* ---- one ProtectedHost: the finalizer ------------------------------------------------------- */

static bool
has_finalizer(const json_t *obj)
{
    size_t i;
    json_t *f;

    json_array_foreach(pc_json_path(obj, "metadata.finalizers"), i, f) {
        if (same_str(json_string_value(f), CTL_FINALIZER))
            return true;
    }
    return false;
}

/* Adds or removes our finalizer, guarded by the object's resourceVersion. */
static int
set_finalizer(struct ctl_ctx *c, const json_t *obj, bool present)
{
    const json_t *md = json_object_get(obj, "metadata");
    json_t *list = json_array(), *patch;
    struct k8s_ref ref = ph_ref;
    struct pc_diag d = {0};
    size_t i;
    json_t *f;
    int rc;

    json_array_foreach(json_object_get(md, "finalizers"), i, f) {
        if (!same_str(json_string_value(f), CTL_FINALIZER))
            json_array_append(list, f);
    }
    if (present)
        json_array_append_new(list, json_string(CTL_FINALIZER));
    patch = json_pack("{s:{s:o,s:O}}", "metadata", "finalizers", list, "resourceVersion",
                      json_object_get(md, "resourceVersion"));
    ref.namespace = pc_json_str(md, "namespace");
    ref.name = pc_json_str(md, "name");
    rc = k8s_merge_patch(c->kc, &ref, patch, &d);
    if (rc < 0 && rc != K8S_ENOTFOUND)
        pc_log(PC_LOG_WARN, "finalizer_update_failed", "owner", ref.name, "error", d.msg, NULL);
    json_decref(patch);
    return rc == K8S_ENOTFOUND ? 0 : rc;
}

static int
reconcile_ph(struct ctl_ctx *c, const char *id)
{
    json_t *obj;
    int rc = 0;

    pthread_mutex_lock(&c->mu);
    obj = json_incref(json_object_get(c->phs, id));
    pthread_mutex_unlock(&c->mu);
    if (!obj)
        return 0; /* gone: "global" drops its policy and authd entry */
    if (pc_json_path(obj, "metadata.deletionTimestamp")) {
        if (has_finalizer(obj)) {
            /* The policy and authd entry must be gone before the object may go. */
            rc = reconcile_global(c);
            if (rc == 0)
                rc = set_finalizer(c, obj, false);
            if (rc == 0)
                pc_log(PC_LOG_INFO, "protectedhost_finalized", "owner", id, NULL);
        }
    } else if (!has_finalizer(obj)) {
        rc = set_finalizer(c, obj, true);
    }
    json_decref(obj);
    return rc;
}

/* ---- resync -------------------------------------------------------------------------------- */

/* Policies with our label that no current item wants: left from before a restart. */
static int
delete_orphans(struct ctl_ctx *c, const struct ctl_state *st)
{
    struct k8s_ref ref = {.api_version = "security.istio.io/v1",
                          .plural = "authorizationpolicies",
                          .label_selector = CTL_LABEL_MANAGED_BY "=portcullis"};
    struct k8s_list l = {0};
    struct pc_diag d = {0};
    json_t *wanted = json_object(), *ap;
    size_t i;
    int rc;

    for (size_t k = 0; k < st->n; k++)
        if (st->items[k].policy)
            json_object_set_new(wanted, st->items[k].policy_name, json_true());
    rc = k8s_list(c->kc, &ref, &l, &d);
    if (rc < 0)
        pc_log(PC_LOG_WARN, "orphan_scan_failed", "error", d.msg, NULL);
    json_array_foreach(l.items, i, ap) {
        const char *name = pc_json_str(json_object_get(ap, "metadata"), "name");
        char *pref = object_id(ap);

        if (name && !json_object_get(wanted, name) && delete_policy(c, pref) < 0)
            rc = -1;
        free(pref);
    }
    k8s_list_release(&l);
    json_decref(wanted);
    return rc;
}

static int
resync(struct ctl_ctx *c)
{
    struct snapshot snap = {0};
    struct ctl_state st;
    const char *id;
    json_t *v;
    int rc;

    build_state(c, &st, &snap);
    rc = delete_orphans(c, &st);
    ctl_state_release(&st);
    release_snapshot(&snap);
    json_object_clear(c->applied);
    json_object_clear(c->status_written);
    free(c->authd_hash);
    c->authd_hash = NULL;
    pthread_mutex_lock(&c->mu);
    json_object_foreach(c->phs, id, v) {
        char *key = pc_xasprintf("ph:%s", id);

        ctl_queue_add(c->q, key);
        free(key);
    }
    pthread_mutex_unlock(&c->mu);
    ctl_queue_add(c->q, KEY_GLOBAL);
    if (c->o.resync_secs > 0)
        ctl_queue_add_after(c->q, KEY_RESYNC, c->o.resync_secs * 1000);
    return rc;
}

/* ---- the worker ------------------------------------------------------------------------------ */

static int
process(struct ctl_ctx *c, const char *key)
{
    if (strcmp(key, KEY_GLOBAL) == 0)
        return reconcile_global(c);
    if (strcmp(key, KEY_RESYNC) == 0)
        return resync(c);
    if (strncmp(key, "ph:", 3) == 0)
        return reconcile_ph(c, key + 3);
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
