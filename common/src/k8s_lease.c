/*
 * k8s_lease.c - leader election on a coordination.k8s.io/v1 Lease, the way client-go's
 * leaderelection does it: the holder renews renewTime every few seconds; a candidate takes the
 * Lease once renewTime + leaseDurationSeconds has passed; every write is a PUT carrying the
 * resourceVersion that was read, so two candidates cannot both win (the loser gets 409).
 * And the keeper: a Lease of one's own, renewed and annotated while running, that nobody else
 * contends for, so it is written by server-side apply without reading it first.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "portcullis/json.h"
#include "portcullis/log.h"

#include "k8s_priv.h"

#define LEASE_TIMEOUT_MS 5000L

struct k8s_elector {
    struct k8s_client *client;
    struct k8s_lease_opts o; /* strings below are our copies */
    char *namespace, *name, *identity;
    struct k8s_stop stop;
    atomic_bool leading;
    pthread_t thread;
};

/* ---- time ------------------------------------------------------------------------------- */

int
k8s_parse_time(const char *s, time_t *out)
{
    struct tm tm = {0};
    int off_h = 0, off_m = 0, n = 0;
    const char *p;
    time_t t;

    if (!s ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n != 19)
        return PC_EPARSE;
    p = s + n;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    if (*p == 'Z' && p[1] == '\0') {
        /* UTC */
    } else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &off_h, &off_m, &n) == 2 &&
               n == 5 && p[6] == '\0') {
        if (*p == '-')
            off_h = -off_h, off_m = -off_m;
    } else {
        return PC_EPARSE;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    if ((t = timegm(&tm)) == (time_t)-1)
        return PC_EPARSE;
    *out = t - off_h * 3600 - off_m * 60;
    return 0;
}

/* A new MicroTime string for now ("2024-01-02T03:04:05.123456Z"). */
static char *
micro_now(void)
{
    struct timespec ts;
    struct tm tm;
    char buf[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    return pc_xasprintf("%s.%06ldZ", buf, ts.tv_nsec / 1000);
}

static double
mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the decision ----------------------------------------------------------------------- */

bool
k8s_lease_acquirable(const json_t *lease, const char *identity, time_t now)
{
    const json_t *spec = json_object_get(lease, "spec");
    const char *holder = pc_json_str(spec, "holderIdentity");
    const char *renew = pc_json_str(spec, "renewTime");
    json_int_t dur = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
    time_t t;

    if (!holder || !*holder || strcmp(holder, identity) == 0)
        return true;
    if (!renew)
        renew = pc_json_str(spec, "acquireTime");
    if (!renew || k8s_parse_time(renew, &t) < 0)
        return true; /* a lease nobody can have renewed */
    /* Anyone who may write the Lease sets the duration: clamp it, no signed overflow. */
    dur = dur < 0 ? 0 : dur > 86400 ? 86400 : dur;
    return now >= t + (time_t)dur;
}

/* ---- API calls -------------------------------------------------------------------------- */

static struct k8s_ref
lease_ref(const struct k8s_elector *e, bool named)
{
    return (struct k8s_ref){.api_version = "coordination.k8s.io/v1",
                            .plural = "leases",
                            .namespace = e->namespace,
                            .name = named ? e->name : NULL};
}

static int
lease_call(struct k8s_elector *e, const char *method, const json_t *body, json_t **out,
           struct pc_diag *d)
{
    struct k8s_ref ref = lease_ref(e, strcmp(method, "POST") != 0);

    return k8s_request(e->client,
                       &(struct k8s_request){.method = method,
                                             .ref = &ref,
                                             .body = body,
                                             .timeout_ms = LEASE_TIMEOUT_MS,
                                             .stop = &e->stop.flag},
                       out, d);
}

/* Sets the spec fields of a lease we hold from now on; holder NULL releases it. */
static void
lease_fill(struct k8s_elector *e, json_t *lease, const char *holder)
{
    json_t *spec = json_object_get(lease, "spec");
    const char *was = pc_json_str(spec, "holderIdentity");
    char *now = micro_now();

    if (!json_is_object(spec)) {
        spec = json_object();
        json_object_set_new(lease, "spec", spec);
    }
    if (holder && (!was || strcmp(was, holder) != 0)) {
        json_object_set_new(spec, "acquireTime", json_string(now));
        if (was && *was)
            json_object_set_new(
                spec, "leaseTransitions",
                json_integer(json_integer_value(json_object_get(spec, "leaseTransitions")) + 1));
    }
    json_object_set_new(spec, "holderIdentity", json_string(holder ? holder : ""));
    json_object_set_new(spec, "leaseDurationSeconds", json_integer(holder ? e->o.lease_secs : 1));
    json_object_set_new(spec, "renewTime", json_string(now));
    free(now);
}

static int
lease_create(struct k8s_elector *e, struct pc_diag *d)
{
    json_t *lease = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:i}}", "apiVersion",
                              "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name",
                              e->name, "namespace", e->namespace, "spec", "leaseTransitions", 0);
    int rc;

    lease_fill(e, lease, e->identity);
    rc = lease_call(e, "POST", lease, NULL, d);
    json_decref(lease);
    return rc;
}

/*
 * One round of client-go's tryAcquireOrRenew. Returns 0 when we hold the lease now,
 * K8S_ECONFLICT when someone else does (or won the race), another code on failure.
 */
static int
try_acquire_or_renew(struct k8s_elector *e, struct pc_diag *d)
{
    json_t *lease = NULL;
    int rc = lease_call(e, "GET", NULL, &lease, d);

    if (rc == K8S_ENOTFOUND)
        return lease_create(e, d);
    if (rc < 0)
        return rc;
    if (!k8s_lease_acquirable(lease, e->identity, time(NULL))) {
        pc_diag_set(d, 0, 0, "lease held by '%s'",
                    pc_json_str(json_object_get(lease, "spec"), "holderIdentity"));
        rc = K8S_ECONFLICT;
        goto out;
    }
    lease_fill(e, lease, e->identity);
    rc = lease_call(e, "PUT", lease, NULL, d); /* carries the resourceVersion we read */
out:
    json_decref(lease);
    return rc;
}

/* Empties holderIdentity so a standby takes over without waiting for expiry. */
static void
release(struct k8s_elector *e)
{
    struct pc_diag d = {0};
    json_t *lease = NULL;
    struct k8s_ref ref = lease_ref(e, true);
    const char *holder;

    if (k8s_get(e->client, &ref, &lease, &d) == 0 &&
        (holder = pc_json_str(json_object_get(lease, "spec"), "holderIdentity")) &&
        strcmp(holder, e->identity) == 0) {
        lease_fill(e, lease, NULL);
        if (k8s_request(
                e->client,
                &(struct k8s_request){
                    .method = "PUT", .ref = &ref, .body = lease, .timeout_ms = LEASE_TIMEOUT_MS},
                NULL, &d) < 0)
            pc_log(PC_LOG_WARN, "lease_release_failed", "lease", e->name, "error", d.msg, NULL);
    }
    json_decref(lease);
}

/* ---- the elector thread ----------------------------------------------------------------- */

static void
set_leading(struct k8s_elector *e, bool leading, const char *why)
{
    if (atomic_load(&e->leading) == leading)
        return;
    atomic_store(&e->leading, leading);
    pc_log(PC_LOG_INFO, leading ? "leading_started" : "leading_stopped", "lease", e->name,
           "identity", e->identity, "reason", why, NULL);
    if (leading && e->o.on_started_leading)
        e->o.on_started_leading(e->o.ud);
    if (!leading && e->o.on_stopped_leading)
        e->o.on_stopped_leading(e->o.ud);
}

static void *
elector_main(void *arg)
{
    struct k8s_elector *e = arg;
    double last_renew = 0;
    int rc;

    while (!atomic_load(&e->stop.flag)) {
        struct pc_diag d = {0};
        rc = try_acquire_or_renew(e, &d);
        if (atomic_load(&e->stop.flag))
            break;
        if (rc == 0) {
            last_renew = mono_now();
            set_leading(e, true, "acquired");
        } else if (atomic_load(&e->leading) &&
                   (rc == K8S_ECONFLICT ||
                    mono_now() - last_renew >= (double)e->o.renew_deadline_secs)) {
            set_leading(e, false, d.msg);
        } else if (rc != K8S_ECONFLICT) {
            pc_log(PC_LOG_WARN, "lease_failed", "lease", e->name, "error", d.msg, NULL);
        }
        /* A leader renews at its pace; a candidate, or a leader whose renew failed, retries. */
        k8s_stop_nap(&e->stop,
                     (atomic_load(&e->leading) && rc == 0 ? e->o.renew_secs : e->o.retry_secs) *
                         1000L);
    }
    if (atomic_load(&e->leading)) {
        release(e);
        set_leading(e, false, "shutdown");
    }
    return NULL;
}

/* "<hostname>_<pid>", or $POD_NAME when the Downward API provides it. */
static char *
default_identity(void)
{
    const char *pod = getenv("POD_NAME");
    char host[256] = "unknown";

    if (pod && *pod)
        return pc_xstrdup(pod);
    gethostname(host, sizeof(host) - 1);
    return pc_xasprintf("%s_%ld", host, (long)getpid());
}

struct k8s_elector *
k8s_elector_start(struct k8s_client *c, const struct k8s_lease_opts *o)
{
    struct k8s_elector *e = pc_xcalloc(1, sizeof(*e));

    e->client = c;
    e->o = *o;
    e->namespace = pc_xstrdup(o->namespace);
    e->name = pc_xstrdup(o->name);
    e->identity = o->identity ? pc_xstrdup(o->identity) : default_identity();
    e->o.lease_secs = o->lease_secs > 0 ? o->lease_secs : 15;
    e->o.renew_secs = o->renew_secs > 0 ? o->renew_secs : 5;
    e->o.renew_deadline_secs = o->renew_deadline_secs > 0 ? o->renew_deadline_secs : 10;
    e->o.retry_secs = o->retry_secs > 0 ? o->retry_secs : 2;
    k8s_stop_init(&e->stop);
    atomic_init(&e->leading, false);
    if (pthread_create(&e->thread, NULL, elector_main, e) != 0)
        abort();
    return e;
}

bool
k8s_elector_is_leader(const struct k8s_elector *e)
{
    return atomic_load(&e->leading);
}

void
k8s_elector_stop(struct k8s_elector *e)
{
    if (!e)
        return;
    k8s_stop_raise(&e->stop);
    pthread_join(e->thread, NULL);
    k8s_stop_release(&e->stop);
    free(e->namespace);
    free(e->name);
    free(e->identity);
    free(e);
}

/* ---- a Lease kept while running ---------------------------------------------------------- */

struct k8s_keeper {
    struct k8s_client *client;
    char *namespace, *name, *identity, *acquired;
    json_t *labels;
    int lease_secs, renew_secs;
    struct k8s_stop stop; /* its lock also guards annotations and dirty */
    json_t *annotations;
    bool dirty;
    pthread_t thread;
};

static struct k8s_ref
keeper_ref(const struct k8s_keeper *k)
{
    return (struct k8s_ref){.api_version = "coordination.k8s.io/v1",
                            .plural = "leases",
                            .namespace = k->namespace,
                            .name = k->name};
}

/* One server-side apply of the whole Lease with annotations and a fresh renewTime. */
static int
keeper_write(struct k8s_keeper *k, json_t *annotations, struct pc_diag *d)
{
    struct k8s_ref ref = keeper_ref(k);
    char *now = micro_now();
    json_t *lease;
    int rc;

    lease = json_pack("{s:s, s:s, s:{s:s, s:s, s:O, s:O}, s:{s:s, s:i, s:s, s:s}}", "apiVersion",
                      "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", k->name,
                      "namespace", k->namespace, "labels", k->labels, "annotations", annotations,
                      "spec", "holderIdentity", k->identity, "leaseDurationSeconds", k->lease_secs,
                      "acquireTime", k->acquired, "renewTime", now);
    rc = k8s_request(k->client,
                     &(struct k8s_request){.method = "PATCH",
                                           .ref = &ref,
                                           .query = "fieldManager=portcullis&force=true",
                                           .body = lease,
                                           .content_type = "application/apply-patch+yaml",
                                           .timeout_ms = LEASE_TIMEOUT_MS,
                                           .stop = &k->stop.flag},
                     NULL, d);
    json_decref(lease);
    free(now);
    return rc;
}

/* New annotations wait to be written (called with stop.lock held). */
static bool
keeper_dirty(void *ud)
{
    return ((struct k8s_keeper *)ud)->dirty;
}

static void *
keeper_main(void *arg)
{
    struct k8s_keeper *k = arg;
    unsigned attempt = 0;
    json_t *ann;
    long delay;

    while (!atomic_load(&k->stop.flag)) {
        struct pc_diag d = {0};

        pthread_mutex_lock(&k->stop.lock);
        ann = json_incref(k->annotations);
        k->dirty = false;
        pthread_mutex_unlock(&k->stop.lock);
        if (keeper_write(k, ann, &d) == 0) {
            attempt = 0;
            delay = k->renew_secs * 1000L;
        } else {
            if (!atomic_load(&k->stop.flag))
                pc_log(PC_LOG_WARN, "lease_failed", "lease", k->name, "error", d.msg, NULL);
            delay = k8s_backoff_ms(attempt < 16 ? attempt++ : attempt);
            if (delay > k->renew_secs * 1000L)
                delay = k->renew_secs * 1000L;
        }
        json_decref(ann);
        k8s_stop_nap_until(&k->stop, delay, keeper_dirty, k);
    }
    return NULL;
}

struct k8s_keeper *
k8s_keeper_start(struct k8s_client *c, const struct k8s_keeper_opts *o)
{
    struct k8s_keeper *k = pc_xcalloc(1, sizeof(*k));

    k->client = c;
    k->namespace = pc_xstrdup(o->namespace);
    k->name = pc_xstrdup(o->name);
    k->identity = o->identity ? pc_xstrdup(o->identity) : default_identity();
    k->acquired = micro_now();
    k->labels = o->labels ? json_deep_copy(o->labels) : json_object();
    k->annotations = o->annotations ? json_deep_copy(o->annotations) : json_object();
    k->lease_secs = o->lease_secs > 0 ? o->lease_secs : 15;
    k->renew_secs = o->renew_secs > 0 ? o->renew_secs : 5;
    k8s_stop_init(&k->stop);
    if (pthread_create(&k->thread, NULL, keeper_main, k) != 0)
        abort();
    return k;
}

void
k8s_keeper_annotate(struct k8s_keeper *k, const json_t *annotations)
{
    json_t *copy = json_deep_copy(annotations);

    pthread_mutex_lock(&k->stop.lock);
    if (json_equal(copy, k->annotations)) {
        json_decref(copy);
    } else {
        json_decref(k->annotations);
        k->annotations = copy;
        k->dirty = true;
        k8s_stop_wake(&k->stop);
    }
    pthread_mutex_unlock(&k->stop.lock);
}

void
k8s_keeper_stop(struct k8s_keeper *k, bool delete_lease)
{
    struct k8s_ref ref;
    struct pc_diag d = {0};
    int rc;

    if (!k)
        return;
    k8s_stop_raise(&k->stop);
    pthread_join(k->thread, NULL);
    if (delete_lease) {
        ref = keeper_ref(k);
        rc = k8s_request(
            k->client,
            &(struct k8s_request){.method = "DELETE", .ref = &ref, .timeout_ms = LEASE_TIMEOUT_MS},
            NULL, &d);
        if (rc < 0 && rc != K8S_ENOTFOUND)
            pc_log(PC_LOG_WARN, "lease_delete_failed", "lease", k->name, "error", d.msg, NULL);
    }
    k8s_stop_release(&k->stop);
    json_decref(k->labels);
    json_decref(k->annotations);
    free(k->namespace);
    free(k->name);
    free(k->identity);
    free(k->acquired);
    free(k);
}
