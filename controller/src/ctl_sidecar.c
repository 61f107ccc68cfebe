/*
 * ctl_sidecar.c - sidecar mode at run time (ctl_workload.c renders; this writes and reads).
 *
 * Each namespace with sidecar ProtectedHosts gets three objects from the global writer: the
 * ServiceEntry of the local name (CTL_LOCAL_SERVICE_ENTRY), the one shard Secret the authd
 * sidecars of that namespace watch (CTL_SIDECAR_SHARD), holding that namespace's entries and
 * nobody else's, and the copy of the central revocation list (ctl_revmirror.c), written
 * before the shard. The controller may write there only where the namespace granted it (the
 * RoleBinding of deploy/components/sidecar); a namespace without one gets Ready=False naming
 * the refused write, and no other namespace waits for it.
 *
 * The sidecars report what they enforce in Leases in their own namespace, as authd replicas
 * do in authd's; a sidecar host is Ready once every live sidecar of its namespace enforces
 * the generation that holds its entry.
 */
#include "controller.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portcullis/b64.h"
#include "portcullis/crypto.h"
#include "portcullis/json.h"
#include "portcullis/log.h"

static const struct k8s_ref se_ref = {.api_version = "networking.istio.io/v1",
                                      .plural = "serviceentries"};
static const struct k8s_ref secret_ref = {.api_version = "v1", .plural = "secrets"};

char *
ctl_sidecar_write_error(const char *what, const char *ns, const char *name, const char *msg)
{
    return pc_xasprintf("%s %s/%s: %s (sidecar mode: the namespace must grant the controller "
                        "its Role, deploy/components/sidecar)",
                        what, ns, name, msg);
}

static int
apply_shard(struct ctl_ctx *c, const char *ns, const char *text, long long gen, char **error)
{
    char *b64 = pc_b64_encode(text, strlen(text));
    json_t *secret = ctl_render_sidecar_shard(ns, "data", b64, gen);
    struct pc_diag d = {0};
    int rc;

    pc_cleanse(b64, strlen(b64));
    free(b64);
    rc = ctl_timed_apply(c, &secret_ref, secret, &d);
    pc_cleanse((char *)json_string_value(pc_json_path(secret, "data.hosts.yaml")),
               json_string_length(pc_json_path(secret, "data.hosts.yaml")));
    json_decref(secret);
    if (rc < 0)
        *error = ctl_sidecar_write_error("authd sidecar config", ns, CTL_SIDECAR_SHARD, d.msg);
    return rc;
}

/* One namespace's write. */
struct ns_write {
    const char *ns, *text;
    const char *rev_error; /* why its revocation list's copy is not the central one, or NULL */
    long long gen;         /* in: the generation written last (0: unknown); out: what holds text */
    char *error;           /* out, new: why it is not written */
};

/*
 * Writes w's ServiceEntry and shard unless they hold w->text already; w->gen as for shards.
 * A shard not there yet waits for the revocation list's copy: the namespace's sidecars never
 * enforce its hosts without it.
 */
static int
write_ns(struct ctl_ctx *c, struct ns_write *w)
{
    const char *ns = w->ns, *text = w->text;
    long long *gen = &w->gen;
    char **error = &w->error;
    char *hash = pc_sha256_hex(text, strlen(text));
    const char *last = pc_json_str(c->sidecar_hash, ns);
    json_t *se = NULL;
    struct pc_diag d = {0};
    long long found = 0;
    bool same = false;
    int rc = 0;

    if (last && strcmp(last, hash) == 0 && *gen > 0)
        goto out;
    if (strlen(text) > CTL_SHARD_MAX_BYTES) {
        *error = pc_xasprintf("authd sidecar config %s/%s would hold %zu bytes, over the %d "
                              "bytes a Secret may hold: split the namespace's ProtectedHosts",
                              ns, CTL_SIDECAR_SHARD, strlen(text), CTL_SHARD_MAX_BYTES);
        rc = PC_ETOOBIG;
        goto out;
    }
    /* Remembered before writing: a namespace half-written is cleaned up when it goes. */
    if (!last)
        json_object_set_new(c->sidecar_hash, ns, json_string(""));
    se = ctl_render_local_service_entry(ns);
    if ((rc = ctl_timed_apply(c, &se_ref, se, &d)) < 0) {
        *error = ctl_sidecar_write_error("ServiceEntry", ns, CTL_LOCAL_SERVICE_ENTRY, d.msg);
        goto out;
    }
    if (*gen == 0 && (rc = ctl_shard_current(c, ns, CTL_SIDECAR_SHARD, text, &found, &same)) < 0 &&
        rc != PC_ENOTFOUND) {
        *error = ctl_sidecar_write_error("authd sidecar config", ns, CTL_SIDECAR_SHARD,
                                         "cannot read it");
        goto out;
    }
    if (rc == PC_ENOTFOUND && w->rev_error) {
        *error = pc_xasprintf("%s; authd sidecar config %s/%s is written once it is", w->rev_error,
                              ns, CTL_SIDECAR_SHARD);
        goto out;
    }
    rc = 0;
    if (same) {
        *gen = found;
    } else {
        *gen = (*gen > found ? *gen : found) + 1;
        if ((rc = apply_shard(c, ns, text, *gen, error)) < 0)
            goto out;
        ctl_metrics_inc(&c->m, &c->m.authd_writes);
        pc_log(PC_LOG_INFO, "authd_sidecar_config_written", "namespace", ns, NULL);
    }
    json_object_set_new(c->sidecar_hash, ns, json_string(hash));
out:
    if (rc < 0 && *error)
        pc_log(PC_LOG_WARN, "authd_config_failed", "error", *error, NULL);
    json_decref(se);
    free(hash);
    return rc;
}

static int
delete_named(struct ctl_ctx *c, const struct k8s_ref *kind, const char *ns, const char *name,
             char **error)
{
    struct k8s_ref ref = *kind;
    struct pc_diag d = {0};
    int rc;

    ref.namespace = ns;
    ref.name = name;
    /* Forbidden: the namespace never granted (or took back) the Role; nothing to retry. */
    if ((rc = k8s_delete(c->kc, &ref, &d)) == K8S_ENOTFOUND || rc == K8S_EFORBIDDEN)
        rc = 0;
    if (rc < 0)
        *error = ctl_sidecar_write_error("cannot delete", ns, name, d.msg);
    return rc;
}

/*
 * ns has no sidecar host any more. The policies there go first: those of hosts deleted while
 * no controller ran are still there (ctl_delete_orphan_policies), and the shard is what brings
 * the namespace back here until they are gone. Then the shard, the revocation list's copy
 * (no sidecar enforces a host without it) and the ServiceEntry.
 */
static int
drop_ns(struct ctl_ctx *c, const char *ns, char **error)
{
    int rc = ctl_delete_orphan_policies(c, ns);

    if (rc < 0)
        *error = pc_xasprintf("cannot list the AuthorizationPolicies in %s to delete ours", ns);
    if (rc == 0)
        rc = delete_named(c, &secret_ref, ns, CTL_SIDECAR_SHARD, error);
    if (rc == 0 && strcmp(ns, c->o.authd.namespace) != 0) /* never the central list */
        rc = delete_named(c, &secret_ref, ns, PC_REVOKE_SECRET, error);
    if (rc == 0)
        rc = delete_named(c, &se_ref, ns, CTL_LOCAL_SERVICE_ENTRY, error);
    if (rc == 0) {
        json_object_del(c->sidecar_hash, ns);
        ctl_revmirror_dropped(c, ns);
        pc_log(PC_LOG_INFO, "authd_sidecar_config_deleted", "namespace", ns, NULL);
    }
    return rc;
}

/* The namespaces of ns (NULL: all) where our shard or revocation list's copy is, into names. */
static void
list_written_in(struct ctl_ctx *c, const char *ns, json_t *names)
{
    struct k8s_ref ref = secret_ref;
    struct k8s_list l = {0};
    struct pc_diag d = {0};
    size_t i;
    json_t *v;
    int rc;

    ref.namespace = ns;
    ref.label_selector =
        CTL_LABEL_SIDECAR "=true," CTL_LABEL_AUTHD_CONFIG " in (shard," CTL_REVCOPY_LABEL ")";
    ref.metadata_only = true;
    if ((rc = k8s_list(c->kc, &ref, &l, &d)) == 0) {
        json_array_foreach(l.items, i, v)
        {
            const char *at = pc_json_str(json_object_get(v, "metadata"), "namespace");

            /* authd's own namespace holds the central shards and list, never a sidecar's. */
            if (at && strcmp(at, c->o.authd.namespace) != 0 && !json_object_get(names, at))
                json_object_set_new(names, at, json_string(""));
        }
    } else if (rc == K8S_EFORBIDDEN || rc == K8S_ENOTFOUND) {
        pc_log(PC_LOG_DEBUG, "orphan_scan_skipped", "resource", "secrets", "namespace",
               ns ? ns : "", "error", d.msg, NULL);
    } else {
        pc_log(PC_LOG_WARN, "orphan_scan_failed", "resource", "secrets", "error", d.msg, NULL);
    }
    k8s_list_release(&l);
}

/* After a restart: where the sidecar objects are, in the namespaces the controller watches. */
static void
list_written(struct ctl_ctx *c, json_t *names)
{
    char *list = pc_xstrdup(c->o.namespaces ? c->o.namespaces : ""), *save = NULL;
    bool any = false;

    for (char *ns = strtok_r(list, ",", &save); ns; ns = strtok_r(NULL, ",", &save)) {
        list_written_in(c, ns, names);
        any = true;
    }
    if (!any)
        list_written_in(c, NULL, names);
    free(list);
}

int
ctl_sidecar_pass(struct ctl_ctx *c, const json_t *texts, bool recheck, json_t **result)
{
    json_t *state, *stale = json_object(), *rev_errors = json_object(), *v;
    const char *ns;
    int rc = 0;

    pthread_mutex_lock(&c->hmu);
    state = json_deep_copy(c->sidecar_state);
    pthread_mutex_unlock(&c->hmu);
    *result = json_object();
    if (recheck) {
        json_object_clear(c->sidecar_hash);
        list_written(c, c->sidecar_hash);
        ctl_revmirror_forget(c);
    }
    /* The revocations first: every namespace's copy, then the shards. */
    if (ctl_revmirror_write(c, texts, rev_errors) < 0)
        rc = -1;
    json_object_foreach((json_t *)texts, ns, v)
    {
        struct ns_write w = {
            .ns = ns,
            .text = json_string_value(v),
            .rev_error = pc_json_str(rev_errors, ns),
            .gen = json_integer_value(pc_json_path(json_object_get(state, ns), "gen"))};

        if (recheck)
            w.gen = 0;
        if (write_ns(c, &w) < 0 && w.error == NULL)
            w.error = pc_xstrdup("write failed");
        json_object_set_new(*result, ns,
                            json_pack("{s:I,s:s?,s:s?}", "gen", (json_int_t)w.gen, "error", w.error,
                                      "revError", w.rev_error));
        rc = w.error ? -1 : rc;
        free(w.error);
    }
    json_object_foreach(c->sidecar_hash, ns, v)
    {
        if (!json_object_get(texts, ns))
            json_object_set_new(stale, ns, json_true());
    }
    json_object_foreach(stale, ns, v)
    {
        char *error = NULL;

        if (drop_ns(c, ns, &error) < 0)
            rc = -1;
        json_object_set_new(*result, ns,
                            json_pack("{s:b,s:s?}", "gone", error == NULL, "error", error));
        free(error);
    }
    json_decref(stale);
    json_decref(state);
    json_decref(rev_errors);
    return rc;
}

/* Whether a and b, JSON strings or absent or null, say the same. */
static bool
same_error(const json_t *a, const json_t *b)
{
    return json_equal(a ? a : json_null(), b ? b : json_null());
}

json_t *
ctl_sidecar_record(struct ctl_ctx *c, const json_t *result)
{
    json_t *moved = json_object(), *r;
    const char *ns;

    json_object_foreach((json_t *)result, ns, r)
    {
        json_t *st = json_object_get(c->sidecar_state, ns);
        json_t *g = json_object_get(r, "gen"), *rev = json_object_get(r, "revError");
        long long gen = json_integer_value(g);

        if (json_is_true(json_object_get(r, "gone"))) {
            json_object_del(c->sidecar_state, ns);
            continue;
        }
        /* A copy pass (no "gen") says nothing of a namespace no shard pass wrote yet. */
        if (!st && !g)
            continue;
        if (!st || (g && !same_error(json_object_get(st, "error"), json_object_get(r, "error"))) ||
            !same_error(json_object_get(st, "revError"), rev))
            json_object_set_new(moved, ns, json_true());
        if (!st) {
            st = json_pack("{s:I,s:f}", "gen", (json_int_t)0, "at", 0.0);
            json_object_set_new(c->sidecar_state, ns, st);
        }
        if (gen > 0 && gen != json_integer_value(json_object_get(st, "gen"))) {
            json_object_set_new(st, "gen", json_integer(gen));
            json_object_set_new(st, "at", json_real(ctl_mono_secs()));
        }
        if (g)
            json_object_set(st, "error",
                            json_object_get(r, "error") ? json_object_get(r, "error")
                                                        : json_null());
        json_object_set(st, "revError", rev ? rev : json_null());
    }
    return moved;
}

const char *
ctl_sidecar_rev_error(struct ctl_ctx *c, const struct ctl_host *h)
{
    return h->sidecar ? pc_json_str(json_object_get(c->sidecar_state, h->ns), "revError") : NULL;
}

void
ctl_host_shard(struct ctl_ctx *c, const struct ctl_host *h, long long *gen, const char **error)
{
    const json_t *st;
    unsigned s;

    if (!h->sidecar) {
        s = ctl_shard_of(h->id, c->nshards);
        *gen = c->shard_gen[s];
        *error = c->shard_error[s];
        return;
    }
    st = json_object_get(c->sidecar_state, h->ns);
    *gen = json_integer_value(json_object_get(st, "gen"));
    *error = pc_json_str(st, "error");
}

enum ctl_enforce
ctl_sidecar_enforce(struct ctl_ctx *c, const struct ctl_host *h, char **why, double *waited)
{
    const json_t *st = json_object_get(c->sidecar_state, h->ns);
    json_t *none = json_object();
    enum ctl_enforce e;

    *waited = ctl_mono_secs() - json_real_value(json_object_get(st, "at"));
    pthread_mutex_lock(&c->mu);
    e = ctl_replicas_enforce(json_object_get(c->sidecar_leases, h->ns)
                                 ? json_object_get(c->sidecar_leases, h->ns)
                                 : none,
                             time(NULL), 0, h->need_gen, why);
    pthread_mutex_unlock(&c->mu);
    json_decref(none);
    if (e == CTL_ENFORCE_NO_REPLICA) {
        free(*why);
        *why = pc_xasprintf("no portcullis-authd sidecar in namespace %s reports the config it "
                            "enforces (Leases labelled %s); are the workload's pods running "
                            "with the sidecar (deploy/components/sidecar)?",
                            h->ns, CTL_LABEL_AUTHD_REPLICA);
    }
    return e;
}

void
ctl_on_sidecar_lease(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    const json_t *md = json_object_get(obj, "metadata");
    const char *ns = pc_json_str(md, "namespace"), *name = pc_json_str(md, "name");
    json_t *ids = json_array(), *leases;
    long long min = 0;
    size_t i;

    /* authd's own namespace is the central replicas' (ctl_on_authd_lease). */
    if (!ns || !name || strcmp(ns, c->o.authd.namespace) == 0)
        goto out;
    pthread_mutex_lock(&c->mu);
    if (!(leases = json_object_get(c->sidecar_leases, ns))) {
        leases = json_object();
        json_object_set_new(c->sidecar_leases, ns, leases);
    }
    if (type == K8S_DELETED)
        json_object_del(leases, name);
    else
        json_object_set(leases, name, obj);
    ctl_replicas_min_loaded(leases, time(NULL), 1, &min);
    if (json_object_size(leases) == 0)
        json_object_del(c->sidecar_leases, ns);
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&c->hmu);
    for (i = 0; i < c->hosts.n; i++) {
        const struct ctl_host *h = c->hosts.v[i];

        if (h->sidecar && h->awaiting && h->gen_seq == h->seq && strcmp(h->ns, ns) == 0 &&
            min >= h->need_gen)
            json_array_append_new(ids, json_string(h->id));
    }
    pthread_mutex_unlock(&c->hmu);
    ctl_queue_hosts_first(c, ids);
out:
    json_decref(ids);
}
