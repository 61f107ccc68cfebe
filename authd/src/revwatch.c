/*
 * revwatch.c - where the revocation list comes from, and the audit line of a refused session.
 *
 * Two sources, each parsed off the lws thread and handed over through the worker pool's
 * completion queue (as reload.c and kube.c hand over configs); the lws thread swaps the list:
 *   --watch-config: the Secret portcullis-revocations in authd's namespace, watched through
 *     the Kubernetes API (a list+watch of that one name, started by kube.c on its client);
 *     absent means nothing is revoked;
 *   --revocations FILE: the file, re-read when its content changes (checked every second);
 *     absent means nothing is revoked.
 * A version that does not parse is refused and logged; the list loaded before stays in force.
 * Until a first version is loaded, authd is not ready and checks get 503: a list that cannot
 * be read is never taken for "nothing revoked".
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/b64.h"
#include "portcullis/crypto.h"
#include "portcullis/json.h"
#include "portcullis/k8s.h"
#include "portcullis/log.h"

#define POLL_MS 1000

struct authd_revoke {
    struct authd_server *srv;
    char *identity; /* the replica, for the audit line */
    char *file;     /* --revocations FILE, or NULL */
    /* lws thread */
    struct authd_revocations *current;
    bool loaded; /* a list is in force (or there is no source at all) */
    /* the file poller */
    struct k8s_stop stop;
    pthread_t poller;
    bool poller_started;
    uint8_t digest[32];
    /* the watch thread */
    bool posted; /* a version of the Secret (or its absence) went to the lws thread */
};

/* A parsed version on its way to the lws thread. */
struct revoke_job {
    struct authd_job job;
    struct authd_revoke *rv;
    struct authd_revocations *list; /* NULL when refused */
    char *source;
    char why[700];
};

/* ---- the lws thread ------------------------------------------------------------------- */

static void
swap_in(struct authd_revoke *rv, struct authd_revocations *list, const char *source,
        const char *why)
{
    char n[24];

    authd_metrics_revocations(rv->srv->metrics, list != NULL, authd_revocations_count(list));
    if (list == NULL) {
        pc_log(PC_LOG_ERROR, "revocations_rejected", "source", source, "error", why, "in_force",
               rv->loaded ? "the list loaded before" : "none: not ready", NULL);
        return;
    }
    authd_revocations_free(rv->current);
    rv->current = list;
    rv->loaded = true;
    snprintf(n, sizeof(n), "%zu", authd_revocations_count(list));
    pc_log(PC_LOG_INFO, "revocations_loaded", "source", source, "entries", n, NULL);
    authd_kube_revocations_ready(rv->srv->kube);
}

static void
revoke_done(struct authd_job *job)
{
    struct revoke_job *j = (struct revoke_job *)job;

    swap_in(j->rv, j->list, j->source, j->why);
    free(j->source);
    free(j);
}

/* Parses text (any thread) into a job for the lws thread. */
static struct revoke_job *
parse_job(struct authd_revoke *rv, const char *source, const char *text, size_t len)
{
    struct revoke_job *j = pc_xcalloc(1, sizeof(*j));
    struct pc_revocations l;
    struct pc_diag d = {.file = source};

    j->job.done = revoke_done;
    j->rv = rv;
    j->source = pc_xstrdup(source);
    if (pc_revocations_parse(text, len, &l, &d) == 0)
        j->list = authd_revocations_new(&l, authd_now());
    else
        pc_diag_format(&d, j->why, sizeof(j->why));
    pc_revocations_release(&l);
    return j;
}

/* A version refused before parsing (unreadable, not base64, too big). */
static struct revoke_job *
refused_job(struct authd_revoke *rv, const char *source, const char *why)
{
    struct revoke_job *j = pc_xcalloc(1, sizeof(*j));

    j->job.done = revoke_done;
    j->rv = rv;
    j->source = pc_xstrdup(source);
    snprintf(j->why, sizeof(j->why), "%s: %s", source, why);
    return j;
}

static void
post(struct authd_revoke *rv, const char *source, const char *text, size_t len)
{
    authd_pool_complete(rv->srv->pool, &parse_job(rv, source, text, len)->job);
}

bool
authd_revoke_ready(const struct authd_revoke *rv)
{
    return rv == NULL || rv->loaded;
}

int
authd_revoke_session(struct authd_server *srv, const struct authd_host *host, const char *host_name,
                     const struct authd_session *s, int64_t now, const char *request_id)
{
    const struct authd_revoke *rv = srv->revoke;
    const struct pc_revocation *e;
    char nb[24], iat[24];
    int rc = authd_session_check(rv ? rv->current : NULL, host, host_name, s, now, &e);

    if (rc != AUTHD_EREVOKED)
        return rc;
    pc_revocations_time(e->not_before, nb);
    pc_revocations_time(s->issued_at, iat);
    /* The audit line: who, where, which replica, which request; never the cookie. */
    pc_log(PC_LOG_WARN, "session_revoked", "user", e->user, "sub", s->id.sub, "host", host_name,
           "policy", host->id, "replica", rv->identity, "request_id", request_id, "issued_at", iat,
           "not_before", nb, NULL);
    authd_metrics_revoked(srv->metrics);
    return rc;
}

void
authd_revoke_login(struct authd_server *srv, struct authd_session *s)
{
    if (srv->revoke != NULL)
        authd_revocations_mint(srv->revoke->current, s);
}

/* ---- the file ------------------------------------------------------------------------- */

/* A job for the file's content when it changed (force: in any case), else NULL. */
static struct revoke_job *
load_file(struct authd_revoke *rv, bool force)
{
    static const char absent[] = "# absent\n"; /* digests apart from an empty file */
    struct revoke_job *j = NULL;
    char *text = NULL;
    size_t len = 0;
    uint8_t d[32];
    int rc = k8s_read_file(rv->file, &text, &len); /* bounded: 4 MiB */

    if (rc == -ENOENT) {
        rc = 0;
        text = pc_xstrdup(absent); /* revokes nothing, like an empty file */
        len = sizeof(absent) - 1;
    }
    if (rc == 0) {
        pc_sha256(text, len, d);
        if (force || !pc_memeq(d, rv->digest, sizeof(d)))
            j = parse_job(rv, rv->file, text, len);
        memcpy(rv->digest, d, sizeof(d));
    } else if (force) {
        j = refused_job(rv, rv->file, pc_strerror(rc));
    }
    free(text);
    return j;
}

static void *
poller_main(void *arg)
{
    struct authd_revoke *rv = arg;
    struct revoke_job *j;

    while (!atomic_load(&rv->stop.flag)) {
        k8s_stop_nap(&rv->stop, POLL_MS);
        if (atomic_load(&rv->stop.flag))
            break;
        if ((j = load_file(rv, false)) != NULL)
            authd_pool_complete(rv->srv->pool, &j->job);
    }
    return NULL;
}

/* ---- the Secret ----------------------------------------------------------------------- */

static void
on_secret(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct authd_revoke *rv = ud;
    const char *b64 = pc_json_str(json_object_get(obj, "data"), PC_REVOKE_KEY);
    unsigned char *text = NULL;
    size_t len = 0;
    const char *ns = pc_json_str(json_object_get(obj, "metadata"), "namespace");
    char source[128];

    snprintf(source, sizeof(source), "secret %s/%s", ns ? ns : "",
             PC_REVOKE_SECRET "/" PC_REVOKE_KEY);
    rv->posted = true;
    if (type == K8S_DELETED || b64 == NULL) {
        post(rv, source, "", 0); /* no list: nothing revoked */
        return;
    }
    if (strlen(b64) > (PC_REVOKE_MAX_DOC / 3 + 1) * 4 + 4 ||
        pc_b64_decode(b64, strlen(b64), &text, &len) != 0) {
        authd_pool_complete(rv->srv->pool,
                            &refused_job(rv, source, "not base64, or over 512 KiB")->job);
        return;
    }
    post(rv, source, (const char *)text, len);
    free(text);
}

static void
on_synced(void *ud)
{
    struct authd_revoke *rv = ud;

    /* Listed without the Secret: nothing is revoked, and authd may be ready. */
    if (!rv->posted)
        post(rv, "secret " PC_REVOKE_SECRET " (absent)", "", 0);
    rv->posted = true;
}

struct k8s_watch *
authd_revoke_watch(struct authd_revoke *rv, struct k8s_client *kc, const char *ns)
{
    if (rv == NULL || rv->file != NULL)
        return NULL;
    return k8s_watch_start(kc, &(struct k8s_watch_opts){
                                   .ref = {.api_version = "v1",
                                           .plural = "secrets",
                                           .namespace = ns,
                                           .field_selector = "metadata.name=" PC_REVOKE_SECRET},
                                   .on_event = on_secret,
                                   .on_synced = on_synced,
                                   .ud = rv,
                                   .max_line = 2 * PC_REVOKE_MAX_DOC,
                               });
}

/* ---- start and stop ------------------------------------------------------------------- */

struct authd_revoke *
authd_revoke_new(struct authd_server *srv, const char *file, bool watched)
{
    struct authd_revoke *rv = pc_xcalloc(1, sizeof(*rv));
    struct revoke_job *j;

    rv->srv = srv;
    rv->identity = authd_replica_name(NULL);
    rv->loaded = !file && !watched; /* no source: nothing can be revoked */
    k8s_stop_init(&rv->stop);
    if (file == NULL)
        return rv;
    rv->file = pc_xstrdup(file);
    /* The first version before serving, so a readable file is in force from the first check. */
    if ((j = load_file(rv, true)) != NULL) {
        swap_in(rv, j->list, j->source, j->why);
        free(j->source);
        free(j);
    }
    if (pthread_create(&rv->poller, NULL, poller_main, rv) != 0)
        abort();
    rv->poller_started = true;
    return rv;
}

void
authd_revoke_stop(struct authd_revoke *rv)
{
    if (rv == NULL || !rv->poller_started)
        return;
    k8s_stop_raise(&rv->stop);
    pthread_join(rv->poller, NULL);
    rv->poller_started = false;
}

void
authd_revoke_free(struct authd_revoke *rv)
{
    if (rv == NULL)
        return;
    authd_revoke_stop(rv);
    k8s_stop_release(&rv->stop);
    authd_revocations_free(rv->current);
    free(rv->identity);
    free(rv->file);
    free(rv);
}
