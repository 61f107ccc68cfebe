/*
 * ctl_global.c - the global writer: the outputs every ProtectedHost shares (authd's config
 * shards, the mesh provider and, with --egress-service-entries, the issuers' ServiceEntries).
 *
 * authd's config Secret holds every host (about 700 KB for a thousand) and the mesh provider
 * lists every host's upstream headers, so writing them is slow compared to one policy. They
 * are written here, on a thread of their own, so a spec change applies its policy without
 * waiting behind them. The queue gq coalesces: one pass at a time, and a change during a pass
 * makes exactly one more pass, which writes the latest state. Each pass reads the hosts under
 * hmu, writes without it, then queues the keys whose statuses waited for it. The same thread
 * takes CTL_KEY_REVOCATIONS (ctl_revmirror.c), unpaced, between passes.
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
#define SNIPPET_MAX 1024 /* events.k8s.io bounds an Event's note to 1 KiB */
/*
 * The keys queued again after a pass (their statuses) go after the keys already waiting:
 * when a thousand ProtectedHosts arrive at once, their policies come first.
 */
#define STATUS_DELAY_MS 100

int
ctl_timed_apply(struct ctl_ctx *c, const struct k8s_ref *ref, const json_t *obj, struct pc_diag *d)
{
    return ctl_timed_apply_out(c, ref, obj, NULL, d);
}

int
ctl_timed_apply_out(struct ctl_ctx *c, const struct k8s_ref *ref, const json_t *obj, json_t **out,
                    struct pc_diag *d)
{
    double t0 = ctl_mono_secs();
    int rc = k8s_apply_out(c->kc, ref, obj, out, d);

    ctl_metrics_apply(&c->m, ctl_mono_secs() - t0);
    return rc;
}

static bool
same_str(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* ---- authd's config shards ------------------------------------------------------------------ */

int
ctl_shard_current(struct ctl_ctx *c, const char *ns, const char *name, const char *text,
                  long long *gen, bool *same)
{
    struct k8s_ref ref = {.api_version = "v1", .plural = "secrets", .namespace = ns, .name = name};
    struct pc_diag d = {0};
    json_t *cur = NULL;
    unsigned char *raw = NULL;
    size_t len = 0;
    const char *b64, *g;
    int rc;

    *gen = 0;
    *same = false;
    if ((rc = k8s_get(c->kc, &ref, &cur, &d)) < 0)
        return rc == K8S_ENOTFOUND ? PC_ENOTFOUND : rc;
    g = pc_json_str(pc_json_path(cur, "metadata.annotations"), CTL_ANNOT_GENERATION);
    *gen = g ? strtoll(g, NULL, 10) : 0;
    b64 = pc_json_str(json_object_get(cur, "data"), "hosts.yaml");
    *same = b64 && pc_b64_decode(b64, strlen(b64), &raw, &len) == 0 && len == strlen(text) &&
            memcmp(raw, text, len) == 0;
    if (raw)
        pc_cleanse(raw, len);
    free(raw);
    json_decref(cur);
    return 0;
}

static json_t *
shard_secret(struct ctl_ctx *c, const char *name, long long gen, const char *b64)
{
    char g[32];

    snprintf(g, sizeof(g), "%lld", gen);
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s},s:{s:s}},s:s,s:{s:s}}", "apiVersion", "v1",
                     "kind", "Secret", "metadata", "name", name, "namespace", c->o.authd.namespace,
                     "labels", CTL_LABEL_MANAGED_BY, "portcullis", CTL_LABEL_AUTHD_CONFIG, "shard",
                     "annotations", CTL_ANNOT_GENERATION, g, "type", "Opaque", "data", "hosts.yaml",
                     b64);
}

/*
 * Writes shard s unless it holds text already (as written last, or, after a restart, as
 * found). *gen gets the generation that holds text; a shard over the Secret limit is not
 * written and *error says which limit and what to change.
 */
static int write_shard_once(struct ctl_ctx *c, unsigned s, const char *text, long long *gen,
                            char **error);

/* write_shard_once, and a log line when it fails (the status of each host says it too). */
static int
write_shard(struct ctl_ctx *c, unsigned s, const char *text, long long *gen, char **error)
{
    int rc = write_shard_once(c, s, text, gen, error);

    if (rc < 0 && *error)
        pc_log(PC_LOG_WARN, "authd_config_failed", "error", *error, NULL);
    return rc;
}

static int
write_shard_once(struct ctl_ctx *c, unsigned s, const char *text, long long *gen, char **error)
{
    char *hash = pc_sha256_hex(text, strlen(text)), *name = ctl_shard_name(s), *b64;
    struct k8s_ref ref = {.api_version = "v1", .plural = "secrets"};
    struct pc_diag d = {0};
    long long found = 0;
    bool same = false;
    json_t *secret;
    int rc = 0;

    if (c->shard_hash[s] && strcmp(c->shard_hash[s], hash) == 0)
        goto out;
    if (strlen(text) > CTL_SHARD_MAX_BYTES) {
        *error = pc_xasprintf("authd config shard %s/%s would hold %zu bytes, over the %d bytes "
                              "a Secret may hold; run the controller with more "
                              "--authd-config-shards (now %u, at most %d)",
                              c->o.authd.namespace, name, strlen(text), CTL_SHARD_MAX_BYTES,
                              c->nshards, CTL_SHARDS_MAX);
        rc = PC_ETOOBIG;
        goto out;
    }
    if (*gen == 0 &&
        (rc = ctl_shard_current(c, c->o.authd.namespace, name, text, &found, &same)) < 0 &&
        rc != PC_ENOTFOUND) {
        *error =
            pc_xasprintf("authd config shard %s/%s: cannot read it", c->o.authd.namespace, name);
        goto out;
    }
    rc = 0;
    if (same) {
        *gen = found;
        goto remember;
    }
    *gen = (*gen > found ? *gen : found) + 1;
    b64 = pc_b64_encode(text, strlen(text));
    secret = shard_secret(c, name, *gen, b64);
    pc_cleanse(b64, strlen(b64));
    free(b64);
    rc = ctl_timed_apply(c, &ref, secret, &d);
    pc_cleanse((char *)json_string_value(pc_json_path(secret, "data.hosts.yaml")),
               json_string_length(pc_json_path(secret, "data.hosts.yaml")));
    json_decref(secret);
    if (rc < 0) {
        *error = pc_xasprintf("authd config shard %s/%s: %s", c->o.authd.namespace, name, d.msg);
        goto out;
    } else {
        char n[32], g[32];

        snprintf(n, sizeof(n), "%zu", strlen(text));
        snprintf(g, sizeof(g), "%lld", *gen);
        ctl_metrics_inc(&c->m, &c->m.authd_writes);
        pc_log(PC_LOG_INFO, "authd_config_written", "shard", name, "bytes", n, "generation", g,
               NULL);
    }
remember:
    free(c->shard_hash[s]);
    c->shard_hash[s] = hash;
    hash = NULL;
out:
    free(hash);
    free(name);
    return rc;
}

/* ---- the mesh provider ---------------------------------------------------------------------- */

/* --mesh-config=istio: merge into the installer's ConfigMap, with optimistic concurrency. */
static int
mesh_istio(struct ctl_ctx *c, const json_t *provider, const json_t *local, struct pc_diag *d)
{
    struct k8s_ref ref = {.api_version = "v1",
                          .plural = "configmaps",
                          .namespace = c->o.mesh_namespace,
                          .name = c->o.mesh_configmap};
    json_t *cm = NULL;
    char *merged = NULL;
    const char *cur;
    int rc = k8s_get(c->kc, &ref, &cm, d);

    if (rc == K8S_ENOTFOUND)
        pc_diag_set(d, 0, 0, "mesh ConfigMap %s/%s not found", ref.namespace, ref.name);
    if (rc < 0)
        goto out;
    cur = pc_json_str(json_object_get(cm, "data"), "mesh");
    if ((rc = ctl_mesh_merge_pair(cur, provider, local, &merged, d)) < 0)
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
mesh_shared(struct ctl_ctx *c, const json_t *provider, const json_t *local, struct pc_diag *d)
{
    struct k8s_ref ref = {.api_version = "v1", .plural = "configmaps"};
    char *text = NULL;
    json_t *cm;
    int rc = ctl_mesh_merge_pair(NULL, provider, local, &text, d);

    if (rc < 0)
        return rc;
    cm = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap",
                   "metadata", "name", c->o.mesh_configmap, "namespace", c->o.mesh_namespace,
                   "labels", CTL_LABEL_MANAGED_BY, "portcullis", "data", "mesh", text);
    rc = ctl_timed_apply(c, &ref, cm, d);
    if (rc == 0)
        ctl_metrics_inc(&c->m, &c->m.mesh_writes);
    json_decref(cm);
    free(text);
    return rc;
}

/* --mesh-config=none: someone else registers the provider; say what it must be. */
static void
mesh_none(const json_t *provider, const json_t *local)
{
    char *text = ctl_yaml_ordered(provider), *ltext = local ? ctl_yaml_ordered(local) : NULL;

    pc_log(PC_LOG_INFO, "mesh_provider_required", "provider", text, NULL);
    if (ltext)
        pc_log(PC_LOG_INFO, "mesh_provider_required", "provider", ltext, NULL);
    free(text);
    free(ltext);
}

/* Both providers as one value (for hashes and the snippet): local is the sidecars'. */
static json_t *
providers(const json_t *provider, const json_t *local)
{
    return local ? json_pack("[O,O]", provider, local) : json_incref((json_t *)provider);
}

static int
write_mesh(struct ctl_ctx *c, const json_t *provider, const json_t *local, char **error)
{
    json_t *both = providers(provider, local);
    char *dump = pc_json_dumps_sorted(both), *hash = pc_sha256_hex(dump, strlen(dump));
    bool changed = !same_str(c->mesh_hash, hash);
    struct pc_diag d = {0};
    int rc = 0;

    json_decref(both);
    if (c->o.mesh_mode == CTL_MESH_ISTIO)
        rc = mesh_istio(c, provider, local, &d); /* always read: an installer may reset it */
    else if (c->o.mesh_mode == CTL_MESH_SHARED && changed)
        rc = mesh_shared(c, provider, local, &d);
    else if (c->o.mesh_mode == CTL_MESH_NONE && changed)
        mesh_none(provider, local);
    if (rc < 0) {
        *error = pc_xstrdup(d.msg);
        pc_log(PC_LOG_WARN, "mesh_provider_failed", "error", d.msg, NULL);
        free(hash);
    } else {
        free(c->mesh_hash);
        c->mesh_hash = hash;
    }
    free(dump);
    return rc;
}

/* ---- the issuers' ServiceEntries (--egress-service-entries) --------------------------------- */

static const struct k8s_ref se_ref = {.api_version = "networking.istio.io/v1",
                                      .plural = "serviceentries"};

/* The names of our ServiceEntries in authd's namespace, new array in *names. */
static int
egress_existing(struct ctl_ctx *c, json_t **names, struct pc_diag *d)
{
    struct k8s_ref ref = se_ref;
    struct k8s_list l = {0};
    size_t i;
    json_t *v;
    int rc;

    ref.namespace = c->o.authd.namespace;
    ref.label_selector = CTL_LABEL_EGRESS "=issuer," CTL_LABEL_MANAGED_BY "=portcullis";
    *names = json_array();
    if ((rc = k8s_list(c->kc, &ref, &l, d)) == 0)
        json_array_foreach(l.items, i, v) json_array_append_new(
            *names, json_string(pc_json_str(json_object_get(v, "metadata"), "name")));
    k8s_list_release(&l);
    return rc;
}

static bool
listed(const json_t *names, const char *name)
{
    size_t i;
    json_t *v;

    json_array_foreach(names, i, v)
    {
        if (same_str(json_string_value(v), name))
            return true;
    }
    return false;
}

/*
 * Every pass lists ours (one small GET): a wanted ServiceEntry is applied when the set
 * changed since it was last written or when it is missing (someone deleted it); ours that no
 * accepted ProtectedHost's issuer needs are deleted.
 */
static int
write_egress(struct ctl_ctx *c, const json_t *entries, char **error)
{
    char *dump = pc_json_dumps_sorted(entries), *hash = pc_sha256_hex(dump, strlen(dump));
    bool changed = !same_str(c->egress_hash, hash);
    struct k8s_ref del = se_ref;
    json_t *existing = NULL, *stale = NULL, *v;
    struct pc_diag d = {0};
    size_t i;
    int rc;

    if ((rc = egress_existing(c, &existing, &d)) < 0)
        goto out;
    json_array_foreach(entries, i, v)
    {
        const char *name = pc_json_str(json_object_get(v, "metadata"), "name");

        if (!changed && listed(existing, name))
            continue;
        if ((rc = ctl_timed_apply(c, &se_ref, v, &d)) < 0)
            goto out;
        pc_log(PC_LOG_INFO, "egress_applied", "serviceentry", name, NULL);
    }
    stale = ctl_egress_stale(existing, entries);
    del.namespace = c->o.authd.namespace;
    json_array_foreach(stale, i, v)
    {
        del.name = json_string_value(v);
        if ((rc = k8s_delete(c->kc, &del, &d)) == K8S_ENOTFOUND)
            rc = 0;
        if (rc < 0)
            goto out;
        pc_log(PC_LOG_INFO, "egress_deleted", "serviceentry", del.name, NULL);
    }
    free(c->egress_hash);
    c->egress_hash = hash;
    hash = NULL;
out:
    if (rc < 0) {
        *error = pc_xstrdup(d.msg);
        pc_log(PC_LOG_WARN, "egress_failed", "error", d.msg, NULL);
    }
    json_decref(existing);
    json_decref(stale);
    free(hash);
    free(dump);
    return rc;
}

/* ---- one pass ---------------------------------------------------------------------------- */

struct pass {
    unsigned long seq;
    char **shards; /* secret: the hosts.yaml text of each shard */
    char **shard_error;
    long long *shard_gen;
    json_t *provider;
    json_t *local;   /* the sidecars' provider, NULL when no sidecar host publishes */
    json_t *sidecar; /* secret: namespace -> its sidecar shard's hosts.yaml */
    json_t *sidecar_result;
    bool recheck;
    json_t *egress; /* ServiceEntries, NULL without --egress-service-entries */
    char *mesh_error, *snippet, *egress_error;
};

static void
pass_begin(struct ctl_ctx *c, struct pass *p)
{
    pthread_mutex_lock(&c->hmu);
    if (c->recheck) {
        c->recheck = false;
        for (unsigned s = 0; s < c->nshards; s++) {
            free(c->shard_hash[s]);
            c->shard_hash[s] = NULL;
        }
        free(c->mesh_hash);
        c->mesh_hash = NULL;
        free(c->egress_hash);
        c->egress_hash = NULL;
        p->recheck = true;
    }
    p->seq = c->seq;
    p->shards = ctl_hosts_shard_texts(&c->hosts, c->nshards);
    p->shard_error = pc_xcalloc(c->nshards, sizeof(*p->shard_error));
    p->shard_gen = pc_xcalloc(c->nshards, sizeof(*p->shard_gen));
    memcpy(p->shard_gen, c->shard_gen, c->nshards * sizeof(*p->shard_gen));
    p->provider = ctl_hosts_provider(&c->hosts, &c->o.authd);
    p->local = ctl_hosts_local_provider(&c->hosts);
    p->sidecar = ctl_hosts_sidecar_texts(&c->hosts);
    p->egress = c->o.authd.egress ? ctl_hosts_egress(&c->hosts, &c->o.authd) : NULL;
    pthread_mutex_unlock(&c->hmu);
}

/*
 * Records the outcome and collects the keys to run again: every host when the outcome
 * changed (their Ready may change), else those that waited for this pass.
 */
static json_t *
pass_end(struct ctl_ctx *c, struct pass *p)
{
    json_t *ids = json_array(), *moved;
    bool changed, ok = !p->mesh_error;

    pthread_mutex_lock(&c->hmu);
    changed = !same_str(c->mesh_error, p->mesh_error) || !same_str(c->snippet, p->snippet) ||
              !same_str(c->egress_error, p->egress_error);
    for (unsigned s = 0; s < c->nshards; s++) {
        changed = changed || !same_str(c->shard_error[s], p->shard_error[s]);
        ok = ok && !p->shard_error[s];
        ctl_replace(&c->shard_error[s], p->shard_error[s]);
        p->shard_error[s] = NULL;
        if (c->shard_gen[s] != p->shard_gen[s])
            c->shard_written_at[s] = ctl_mono_secs();
        c->shard_gen[s] = p->shard_gen[s];
    }
    moved = ctl_sidecar_record(c, p->sidecar_result);
    ctl_replace(&c->mesh_error, p->mesh_error);
    ctl_replace(&c->snippet, p->snippet);
    ctl_replace(&c->egress_error, p->egress_error);
    p->mesh_error = p->snippet = p->egress_error = NULL;
    if (ok && p->seq > c->written_seq)
        c->written_seq = p->seq;
    for (size_t i = 0; i < c->hosts.n; i++) {
        struct ctl_host *h = c->hosts.v[i];
        const char *error;
        long long gen;
        bool written;

        ctl_host_shard(c, h, &gen, &error);
        written = h->seq <= p->seq && h->gen_seq != h->seq && gen > 0 && !error;
        bool ns_moved = h->sidecar && json_object_get(moved, h->ns);

        /* The generation that first holds this entry is what authd must report. */
        if (written) {
            h->gen_seq = h->seq;
            h->need_gen = gen;
        }
        if (changed || ns_moved || (h->waiting && h->seq <= c->written_seq) ||
            (written && h->awaiting))
            json_array_append_new(ids, json_string(h->id));
    }
    pthread_mutex_unlock(&c->hmu);
    json_decref(moved);
    return ids;
}

static int
global_pass(struct ctl_ctx *c)
{
    struct pass p = {0};
    json_t *ids, *id;
    size_t i;
    int rc = 0;

    pass_begin(c, &p);
    for (unsigned s = 0; s < c->nshards; s++) {
        int src = write_shard(c, s, p.shards[s], &p.shard_gen[s], &p.shard_error[s]);

        /* Retried; a shard over the limit is not, until something changes. */
        if (src < 0 && src != PC_ETOOBIG)
            rc = -1;
    }
    if (ctl_sidecar_pass(c, p.sidecar, p.recheck, &p.sidecar_result) < 0)
        rc = -1;
    if (write_mesh(c, p.provider, p.local, &p.mesh_error) < 0)
        rc = -1;
    if (p.egress && write_egress(c, p.egress, &p.egress_error) < 0)
        rc = -1;
    if (c->o.mesh_mode == CTL_MESH_NONE) {
        json_t *both = providers(p.provider, p.local);

        p.snippet = ctl_provider_snippet(both, SNIPPET_MAX);
        json_decref(both);
    }
    ids = pass_end(c, &p);
    json_array_foreach(ids, i, id)
    {
        char *key = pc_xasprintf("ph:%s", json_string_value(id));

        ctl_queue_add_after(c->q, key, STATUS_DELAY_MS);
        free(key);
    }
    json_decref(ids);
    json_decref(p.provider);
    json_decref(p.local);
    ctl_sidecar_texts_free(p.sidecar);
    json_decref(p.sidecar_result);
    json_decref(p.egress);
    ctl_shard_texts_free(p.shards, c->nshards);
    for (unsigned s = 0; s < c->nshards; s++)
        free(p.shard_error[s]);
    free(p.shard_error);
    free(p.shard_gen);
    malloc_trim(0); /* shard texts, their base64 and the request bodies */
    return rc;
}

/*
 * Each pass may rewrite a Secret of up to ~1 MB, which the apiserver and etcd pay for. While
 * changes keep coming (a thousand ProtectedHosts applied at once), passes are spaced so that
 * writing them takes at most about a ninth of the time: the next one starts GAP_FACTOR times
 * the last one's duration after it ended. A lone change after a quiet spell goes out at once.
 */
#define GAP_FACTOR 8
#define MIN_GAP_SECS 0.05
#define MAX_GAP_SECS 5.0
/*
 * And while the key workers have a backlog (more than CTL_BUSY_KEYS keys waiting), a pass
 * waits for it to drain, up to MAX_DEFER_SECS: the policies of a burst go first, and each pass
 * then carries many hosts instead of a few.
 */
#define MAX_DEFER_SECS 5.0
#define DEFER_STEP_MS 200

static double
next_pass_at(double started, double ended)
{
    double gap = GAP_FACTOR * (ended - started);

    return ended + (gap < MIN_GAP_SECS ? MIN_GAP_SECS : gap > MAX_GAP_SECS ? MAX_GAP_SECS : gap);
}

static void
run_pass(struct ctl_ctx *c, const char *key, double *next_at)
{
    double t0 = ctl_mono_secs();
    int rc;

    /* A revocation is not paced: its copies are small and users wait for it. */
    if (strcmp(key, CTL_KEY_REVOCATIONS) == 0) {
        rc = ctl_revmirror_pass(c);
    } else {
        rc = global_pass(c);
        *next_at = next_pass_at(t0, ctl_mono_secs());
    }
    if (rc < 0) {
        long delay = ctl_queue_retry(c->gq, key);
        char ms[32];

        snprintf(ms, sizeof(ms), "%ld", delay);
        ctl_metrics_reconcile(&c->m, CTL_RESULT_ERROR);
        pc_log(PC_LOG_INFO, "reconcile_retry", "key", key, "delay_ms", ms, NULL);
    } else {
        ctl_queue_forget(c->gq, key);
        ctl_metrics_reconcile(&c->m, CTL_RESULT_SUCCESS);
    }
}

/* Milliseconds the pass should still wait (0: run it now); *since: when waiting began. */
static long
pass_delay_ms(struct ctl_ctx *c, double next_at, double *since)
{
    double now = ctl_mono_secs();

    if (next_at > now)
        return (long)((next_at - now) * 1000) + 1;
    if (*since == 0)
        *since = now;
    if (ctl_queue_len(c->q) > CTL_BUSY_KEYS && now - *since < MAX_DEFER_SECS)
        return DEFER_STEP_MS;
    *since = 0;
    return 0;
}

void *
ctl_global_worker(void *arg)
{
    struct ctl_ctx *c = arg;
    double next_at = 0, since = 0;
    long delay;
    char *key;

    while ((key = ctl_queue_get(c->gq)) != NULL) {
        if (!atomic_load(&c->leader)) {
            /* Dropped: winning the lease queues a resync that covers everything. */
        } else if (!atomic_load(&c->ready) || !atomic_load(&c->primed)) {
            /* A new leader knows no host until its first resync has rendered them all: a
             * pass before that would write shards without the hosts not seen yet. */
            ctl_queue_add_after(c->gq, key, 500);
        } else if (strcmp(key, CTL_KEY_REVOCATIONS) != 0 &&
                   (delay = pass_delay_ms(c, next_at, &since)) > 0) {
            ctl_queue_add_after(c->gq, key, delay);
        } else {
            run_pass(c, key, &next_at);
        }
        ctl_queue_done(c->gq, key);
        free(key);
    }
    return NULL;
}
