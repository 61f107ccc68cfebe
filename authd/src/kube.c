/*
 * kube.c - --watch-config: authd's hosts from the config Secrets, through the Kubernetes API.
 *
 * Three threads besides the lws one, none of which the check path ever waits for:
 *   the watch (common's k8s_watch: list+watch of the Secrets labelled
 *     portcullis.io/authd-config=shard, bookmarks, relist on 410, capped backoff) parses each
 *     shard version as it arrives (shards.c) and marks the merge due;
 *   the loader merges the shards over the head once the first full list is in, coalescing
 *     bursts (one merge at a time, the next with everything that arrived meanwhile), and posts
 *     the config to the lws thread through the worker pool's completion queue, as reload.c
 *     does; it also re-reads the head when its file or the cookie secret files change;
 *   the Lease keeper (common's k8s_keeper) writes portcullis-authd-<pod> with the loaded and
 *     rejected shard generations once the lws thread has swapped them in.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authd.h"
#include "portcullis/crypto.h"
#include "portcullis/json.h"
#include "portcullis/k8s.h"
#include "portcullis/log.h"

#define SHARD_SELECTOR "portcullis.io/authd-config=shard"
#define REPLICA_LABEL "portcullis.io/authd-replica"
#define LOADED_ANNOTATION "portcullis.io/loaded"
#define REJECTED_ANNOTATION "portcullis.io/rejected"
#define DEFAULT_NAMESPACE "portcullis-system"
#define HEAD_CHECK_MS 2000

struct authd_kube {
    struct authd_server *srv;
    struct authd_pool *pool;
    const struct authd_overrides *overrides;
    char *head_path; /* --config FILE, NULL: flags only */
    char *namespace;
    char *field_selector; /* --config-secret: "metadata.name=<it>", else NULL */
    char *identity;
    char *lease_name;
    struct k8s_client *kc;
    struct k8s_watch *watch;
    struct k8s_watch *revocations; /* revwatch.c's list+watch of portcullis-revocations */
    struct k8s_keeper *keeper;
    pthread_t loader;
    bool loader_started;
    atomic_bool stopped;  /* completions drained after stop leave the Lease alone */
    struct k8s_stop stop; /* its lock guards everything below; its cond wakes the loader */
    struct authd_shards *shards;
    struct authd_config *head;
    bool synced;     /* the first full list is in */
    bool dirty;      /* a merge is due */
    bool head_new;   /* the head changed since the last merge */
    bool first_sent; /* a merge has been posted */
    uint8_t head_digest[32];
    unsigned rejections[AUTHD_MAX_SHARDS + 1]; /* versions refused since the last merge */
    /* lws thread: what the Lease is to say once the revocation list is in force too */
    char *held_loaded, *held_rejected;
};

/* A merge on its way to the lws thread. */
struct kube_job {
    struct authd_job job;
    struct authd_kube *k;
    struct authd_cfgref *ref; /* NULL: the same config as before; only metrics and the Lease */
    struct pc_diag diag;      /* head reload failures (rc != 0) */
    int rc;
    bool merged;
    size_t nloaded, nrejected;
    char *loaded, *rejected;
    unsigned rejections[AUTHD_MAX_SHARDS + 1];
};

/* ---- the lws thread ------------------------------------------------------------------- */

static void
publish(struct authd_kube *k, const char *loaded, const char *rejected)
{
    json_t *ann;

    if (atomic_load(&k->stopped))
        return;
    ann = json_pack("{s:s, s:s}", LOADED_ANNOTATION, loaded, REJECTED_ANNOTATION, rejected);
    k8s_keeper_annotate(k->keeper, ann);
    json_decref(ann);
}

/*
 * The Lease says a generation is enforced only when checks are answered by it: until the
 * revocation list is loaded too, every check gets 503, so the last merge's report is held
 * until then (kube_done holds it, authd_kube_revocations_ready sends it).
 */
static void
publish_held(struct authd_kube *k)
{
    if (k->held_loaded == NULL || !authd_revoke_ready(k->srv->revoke))
        return;
    publish(k, k->held_loaded, k->held_rejected);
    free(k->held_loaded);
    free(k->held_rejected);
    k->held_loaded = k->held_rejected = NULL;
}

void
authd_kube_revocations_ready(struct authd_kube *k)
{
    if (k != NULL)
        publish_held(k);
}

static void
kube_done(struct authd_job *job)
{
    struct kube_job *j = (struct kube_job *)job;
    struct authd_server *srv = j->k->srv;

    if (j->rc != 0) {
        authd_server_config_loaded(srv, NULL, &j->diag, j->rc);
    } else if (j->merged) {
        if (j->ref != NULL)
            authd_server_config_loaded(srv, j->ref, &j->diag, 0);
        for (int i = 0; i <= AUTHD_MAX_SHARDS; i++)
            for (unsigned n = 0; n < j->rejections[i]; n++)
                authd_metrics_shard_rejected(srv->metrics, i);
        authd_metrics_shards(srv->metrics, j->nloaded, j->nrejected);
        /* Only now is it enforced: the Lease says so from here on. */
        free(j->k->held_loaded);
        free(j->k->held_rejected);
        j->k->held_loaded = j->loaded;
        j->k->held_rejected = j->rejected;
        j->loaded = j->rejected = NULL;
        publish_held(j->k);
    }
    free(j->loaded);
    free(j->rejected);
    free(j);
}

/* ---- the watch thread ------------------------------------------------------------------ */

static void
log_rejected(const char *shard, const char *generation, const char *why)
{
    pc_log(PC_LOG_ERROR, "config_shard_rejected", "shard", shard, "generation", generation, "error",
           why, NULL);
}

static void
on_secret(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct authd_kube *k = ud;
    const json_t *md = json_object_get(obj, "metadata");
    const char *name = pc_json_str(md, "name");
    const char *gen = pc_json_str(json_object_get(md, "annotations"), "portcullis.io/generation");
    struct pc_diag d;
    int rc, i = authd_shard_index(name);

    pthread_mutex_lock(&k->stop.lock);
    rc = authd_shards_apply(
        k->shards, &(struct authd_shard_change){.secret = obj, .deleted = type == K8S_DELETED}, &d);
    if (rc != 0 && type == K8S_DELETED)
        rc = 0; /* a Secret that was never a shard went away: nothing to say */
    if (rc != 0)
        k->rejections[i >= 0 ? i : AUTHD_MAX_SHARDS]++;
    k->dirty = true;
    k8s_stop_wake(&k->stop);
    pthread_mutex_unlock(&k->stop.lock);
    if (rc != 0)
        log_rejected(name, gen, d.msg);
    else
        pc_log(PC_LOG_DEBUG, "config_shard", "shard", name, "generation", gen, "change",
               type == K8S_DELETED ? "deleted" : "updated", NULL);
}

static void
on_synced(void *ud)
{
    struct authd_kube *k = ud;

    pthread_mutex_lock(&k->stop.lock);
    if (!k->synced)
        pc_log(PC_LOG_INFO, "config_shards_listed", "namespace", k->namespace, NULL);
    k->synced = true;
    k->dirty = true;
    k8s_stop_wake(&k->stop);
    pthread_mutex_unlock(&k->stop.lock);
}

/* ---- the loader thread ----------------------------------------------------------------- */

/* Re-reads the head when its file or secret files changed. Called without the lock. */
static void
check_head(struct authd_kube *k)
{
    struct authd_config *cfg = NULL;
    struct kube_job *j;
    uint8_t d[32];

    /* Only the loader replaces the head, so reading it unlocked here is safe. */
    if (authd_config_digest(k->head_path, k->head, d) != 0 || pc_memeq(d, k->head_digest, 32))
        return;
    memcpy(k->head_digest, d, 32);
    j = pc_xcalloc(1, sizeof(*j));
    j->rc = authd_config_load_head(k->head_path, k->overrides, &cfg, &j->diag);
    if (j->rc == 0) {
        free(j);
        authd_config_digest(k->head_path, cfg, k->head_digest);
        if (cfg->allow_insecure_issuers != k->head->allow_insecure_issuers)
            pc_log(PC_LOG_WARN, "config_reload", "error",
                   "allowInsecureIssuers changes take effect after a restart", NULL);
        pthread_mutex_lock(&k->stop.lock);
        authd_config_free(k->head);
        k->head = cfg;
        k->head_new = k->dirty = true;
        pthread_mutex_unlock(&k->stop.lock);
        return;
    }
    j->job.done = kube_done;
    j->k = k;
    authd_pool_complete(k->pool, &j->job);
}

/* Merges (lock held) into a new job. */
static struct kube_job *
merge_locked(struct authd_kube *k, struct authd_shards_result *r)
{
    struct kube_job *j = pc_xcalloc(1, sizeof(*j));

    authd_shards_merge(k->shards, k->head, r);
    j->job.done = kube_done;
    j->k = k;
    j->merged = true;
    if (r->changed || k->head_new || !k->first_sent) {
        j->ref = authd_cfgref_new(r->cfg);
        r->cfg = NULL;
    }
    j->nloaded = r->nloaded;
    j->nrejected = r->nrejected;
    j->loaded = r->loaded;
    j->rejected = r->rejected;
    r->loaded = r->rejected = NULL;
    for (size_t i = 0; i < r->nrefused; i++)
        k->rejections[r->refused[i].index]++;
    memcpy(j->rejections, k->rejections, sizeof(j->rejections));
    memset(k->rejections, 0, sizeof(k->rejections));
    k->head_new = false;
    k->dirty = false;
    k->first_sent = true;
    return j;
}

/* A merge is due and may run (called with stop.lock held). */
static bool
merge_due(void *ud)
{
    const struct authd_kube *k = ud;

    return k->dirty && k->synced;
}

static void *
loader_main(void *arg)
{
    struct authd_kube *k = arg;
    struct authd_shards_result r;
    struct kube_job *j;

    while (!atomic_load(&k->stop.flag)) {
        k8s_stop_nap_until(&k->stop, HEAD_CHECK_MS, merge_due, k);
        if (atomic_load(&k->stop.flag))
            break;
        check_head(k);
        j = NULL;
        pthread_mutex_lock(&k->stop.lock);
        if (k->dirty && k->synced)
            j = merge_locked(k, &r);
        pthread_mutex_unlock(&k->stop.lock);
        if (j == NULL)
            continue;
        for (size_t i = 0; i < r.nrefused; i++) {
            char name[64], gen[24];

            snprintf(name, sizeof(name), "%s%s", AUTHD_SHARD_PREFIX, r.refused[i].shard);
            snprintf(gen, sizeof(gen), "%lld", r.refused[i].generation);
            log_rejected(name, gen, r.refused[i].why);
        }
        authd_shards_result_release(&r);
        authd_pool_complete(k->pool, &j->job);
    }
    return NULL;
}

/* ---- start and stop ---------------------------------------------------------------------- */

/* $POD_NAME, else the host name: what the Lease is named after. New. */
char *
authd_replica_name(const char *given)
{
    const char *env = getenv("POD_NAME");
    char host[256] = "authd";

    if (given && *given)
        return pc_xstrdup(given);
    if (env && *env)
        return pc_xstrdup(env);
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "authd");
    return pc_xstrdup(host);
}

/* "portcullis-authd-<pod>" as a Kubernetes name: lowercase, [a-z0-9.-], at most 253. */
static char *
lease_name(const char *pod)
{
    char *n = pc_xasprintf("portcullis-authd-%.230s", pod);

    for (char *p = n; *p; p++) {
        *p = (char)tolower((unsigned char)*p);
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            *p = '-';
    }
    return n;
}

/* The client and the namespace: --config-namespace, the pod's own, else portcullis-system. */
static int
connect_api(struct authd_kube *k, const struct authd_kube_opts *o)
{
    struct k8s_config cfg;
    struct pc_diag d = {0};
    char msg[700];
    int rc;

    k8s_config_init(&cfg);
    if ((rc = k8s_config_load(&cfg, o->kubeconfig, NULL, &d)) != 0) {
        pc_diag_format(&d, msg, sizeof(msg));
        pc_log(PC_LOG_ERROR, "start", "error", "no Kubernetes API to watch the config in", "reason",
               msg, NULL);
        return rc;
    }
    k->namespace = pc_xstrdup(o->namespace && *o->namespace ? o->namespace
                              : cfg.sa_dir                  ? cfg.namespace
                                                            : DEFAULT_NAMESPACE);
    k->kc = k8s_client_new(&cfg, "portcullis-authd");
    k8s_config_release(&cfg);
    return 0;
}

static void
start_threads(struct authd_kube *k)
{
    json_t *labels = json_pack("{s:s}", REPLICA_LABEL, "true");
    json_t *ann = json_pack("{s:s, s:s}", LOADED_ANNOTATION, "", REJECTED_ANNOTATION, "");

    k->keeper = k8s_keeper_start(k->kc, &(struct k8s_keeper_opts){.namespace = k->namespace,
                                                                  .name = k->lease_name,
                                                                  .identity = k->identity,
                                                                  .labels = labels,
                                                                  .annotations = ann});
    json_decref(labels);
    json_decref(ann);
    k->watch = k8s_watch_start(k->kc, &(struct k8s_watch_opts){
                                          .ref = {.api_version = "v1",
                                                  .plural = "secrets",
                                                  .namespace = k->namespace,
                                                  .label_selector = SHARD_SELECTOR,
                                                  .field_selector = k->field_selector},
                                          .on_event = on_secret,
                                          .on_synced = on_synced,
                                          .ud = k,
                                      });
    k->revocations = authd_revoke_watch(k->srv->revoke, k->kc, k->namespace);
    if (pthread_create(&k->loader, NULL, loader_main, k) != 0)
        abort();
    k->loader_started = true;
}

int
authd_kube_start(struct authd_server *srv, const struct authd_kube_opts *o, struct authd_kube **out)
{
    struct authd_kube *k = pc_xcalloc(1, sizeof(*k));
    struct pc_diag d = {0};
    char msg[700];
    int rc;

    *out = NULL;
    k->srv = srv;
    k->pool = srv->pool;
    k->overrides = srv->overrides;
    k->head_path = o->head_path ? pc_xstrdup(o->head_path) : NULL;
    k8s_stop_init(&k->stop);
    atomic_init(&k->stopped, false);
    if ((rc = authd_config_load_head(k->head_path, k->overrides, &k->head, &d)) != 0) {
        pc_diag_format(&d, msg, sizeof(msg));
        pc_log(PC_LOG_ERROR, "start", "error", msg, NULL);
        goto fail;
    }
    authd_config_digest(k->head_path, k->head, k->head_digest);
    if ((rc = connect_api(k, o)) != 0)
        goto fail;
    if (o->config_secret)
        k->field_selector = pc_xasprintf("metadata.name=%s", o->config_secret);
    k->identity = authd_replica_name(o->identity);
    k->lease_name = lease_name(k->identity);
    k->shards = authd_shards_new(k->head->allow_insecure_issuers);
    start_threads(k);
    pc_log(PC_LOG_INFO, "config_watch", "namespace", k->namespace, "selector", SHARD_SELECTOR,
           "lease", k->lease_name, NULL);
    *out = k;
    return 0;
fail:
    authd_kube_stop(k);
    authd_kube_free(k);
    return rc;
}

void
authd_kube_stop(struct authd_kube *k)
{
    if (k == NULL || atomic_exchange(&k->stopped, true))
        return;
    /* The watch first, so nothing marks a merge due while the loader winds down. */
    k8s_watch_stop(k->watch);
    k->watch = NULL;
    k8s_watch_stop(k->revocations);
    k->revocations = NULL;
    k8s_stop_raise(&k->stop);
    if (k->loader_started)
        pthread_join(k->loader, NULL);
    k->loader_started = false;
    k8s_keeper_stop(k->keeper, true);
    k->keeper = NULL;
}

void
authd_kube_free(struct authd_kube *k)
{
    if (k == NULL)
        return;
    authd_kube_stop(k);
    k8s_stop_release(&k->stop);
    authd_shards_free(k->shards);
    authd_config_free(k->head);
    k8s_client_free(k->kc);
    free(k->head_path);
    free(k->namespace);
    free(k->field_selector);
    free(k->identity);
    free(k->lease_name);
    free(k->held_loaded);
    free(k->held_rejected);
    free(k);
}
