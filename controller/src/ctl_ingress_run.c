/*
 * ctl_ingress_run.c - ingress-nginx mode in `run`: a cache of Ingress summaries fed by the
 * watch, and one pass (the key CTL_KEY_INGRESS) that brings every Ingress in line with the
 * ProtectedHosts that name it.
 *
 * One pass over everything, not a key per Ingress: what an Ingress carries depends on every
 * ProtectedHost that names one of its hosts, and what a ProtectedHost's Ready says depends on
 * every Ingress that serves one of its hosts; the queue coalesces the changes of a bulk apply
 * into few passes, and only what differs is written. Writes are server-side applies as
 * CTL_INGRESS_MANAGER without force: a field another manager holds with another value is a
 * 409, reported as a conflict and not retried until the Ingress or what we want changes. An
 * Ingress that keeps our mark but is wanted by nobody gets an empty apply, which removes
 * exactly our fields.
 *
 * A ProtectedHost's status waits for a pass that started after its last change (want/seq),
 * so it never says NoIngress for an Ingress the pass is about to annotate. Locks: st->mu is a
 * leaf (nothing is taken under it); the pass reads the hosts under hmu, then drops it before
 * any write.
 */
#include "controller.h"

#include <stdlib.h>
#include <string.h>

#include "portcullis/json.h"
#include "portcullis/log.h"

struct ctl_ingress_state {
    pthread_mutex_t mu;
    json_t *cache;   /* "ns/name" -> summary (ctl_ingress_summary) */
    json_t *noted;   /* ProtectedHost id -> its view text as the pass last learned it */
    json_t *want;    /* ProtectedHost id -> the seq its status waits for */
    json_t *reports; /* ProtectedHost id -> outcomes (Ingress id -> [outcome, message]) */
    json_t *stuck;   /* Ingress id -> {sig, msg}: a write refused with 409, not tried again */
    unsigned long seq;
};

static const struct k8s_ref ingress_ref = {.api_version = "networking.k8s.io/v1",
                                           .plural = "ingresses"};

void
ctl_ingress_init(struct ctl_ctx *c)
{
    struct ctl_ingress_state *st = pc_xcalloc(1, sizeof(*st));

    pthread_mutex_init(&st->mu, NULL);
    st->cache = json_object();
    st->noted = json_object();
    st->want = json_object();
    st->reports = json_object();
    st->stuck = json_object();
    c->ing = st;
}

void
ctl_ingress_release(struct ctl_ctx *c)
{
    struct ctl_ingress_state *st = c->ing;

    if (!st)
        return;
    pthread_mutex_destroy(&st->mu);
    json_decref(st->cache);
    json_decref(st->noted);
    json_decref(st->want);
    json_decref(st->reports);
    json_decref(st->stuck);
    free(st);
    c->ing = NULL;
}

/* ---- the watch ------------------------------------------------------------------------------ */

void
ctl_on_ingress(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    struct ctl_ingress_state *st = c->ing;
    json_t *s = ctl_ingress_summary(obj);
    char *id = pc_xasprintf("%s/%s", pc_json_str(s, "ns"), pc_json_str(s, "name"));
    bool changed;

    pthread_mutex_lock(&st->mu);
    if (type == K8S_DELETED) {
        changed = json_object_get(st->cache, id) != NULL;
        json_object_del(st->cache, id);
        json_decref(s);
    } else {
        /* Status updates (the load balancer's address) and other annotations do not matter. */
        changed = !json_equal(json_object_get(st->cache, id), s);
        json_object_set_new(st->cache, id, s);
    }
    pthread_mutex_unlock(&st->mu);
    if (changed && atomic_load(&c->ready))
        ctl_queue_add(c->q, CTL_KEY_INGRESS);
    free(id);
}

/* ---- what the pass knows of the ProtectedHosts ---------------------------------------------- */

void
ctl_ingress_note(struct ctl_ctx *c, const char *id)
{
    struct ctl_ingress_state *st = c->ing;
    struct ctl_host *h;
    char *view = NULL;
    const char *had;
    bool changed;

    pthread_mutex_lock(&c->hmu);
    if ((h = ctl_hosts_find(&c->hosts, id)) && h->ingress && ctl_host_publishes(h))
        view = pc_xstrdup(h->ingress);
    pthread_mutex_unlock(&c->hmu);
    pthread_mutex_lock(&st->mu);
    had = json_string_value(json_object_get(st->noted, id));
    changed = had && view ? strcmp(had, view) != 0 : had != view;
    if (changed) {
        if (view)
            json_object_set_new(st->noted, id, json_string(view));
        else
            json_object_del(st->noted, id);
        json_object_set_new(st->want, id, json_integer((json_int_t)++st->seq));
    }
    pthread_mutex_unlock(&st->mu);
    if (changed && c->o.ingress)
        ctl_queue_add(c->q, CTL_KEY_INGRESS);
    free(view);
}

void
ctl_ingress_resync(struct ctl_ctx *c)
{
    if (c->o.ingress)
        ctl_queue_add(c->q, CTL_KEY_INGRESS);
}

/* The views of every publishing host in ingress mode, in id order (new array). Takes hmu. */
static json_t *
collect_views(struct ctl_ctx *c)
{
    json_t *views = json_array();

    pthread_mutex_lock(&c->hmu);
    for (size_t i = 0; i < c->hosts.n; i++) {
        const struct ctl_host *h = c->hosts.v[i];
        json_t *v;

        if (h->ingress && ctl_host_publishes(h) && (v = json_loads(h->ingress, 0, NULL)))
            json_array_append_new(views, v);
    }
    pthread_mutex_unlock(&c->hmu);
    return views;
}

/* ---- writes --------------------------------------------------------------------------------- */

/* Applies want (NULL: nothing of ours) to the Ingress of summary s. */
static int
apply(struct ctl_ctx *c, const json_t *s, const json_t *want, struct pc_diag *d)
{
    json_t *body =
        json_pack("{s:s,s:s,s:{s:s,s:s}}", "apiVersion", "networking.k8s.io/v1", "kind", "Ingress",
                  "metadata", "name", pc_json_str(s, "name"), "namespace", pc_json_str(s, "ns"));
    struct k8s_apply_opts ao = {.manager = CTL_INGRESS_MANAGER, .force = false};
    int rc;

    if (want)
        json_object_set(json_object_get(body, "metadata"), "annotations", (json_t *)want);
    rc = k8s_apply_as(c->kc, &ingress_ref, body, &ao, d);
    json_decref(body);
    return rc;
}

/* Every outcome of p that is not a conflict becomes kind with msg. */
static void
override(struct ctl_ingress_plan *p, enum ctl_ingress_outcome kind, const char *msg)
{
    const char *id;
    json_t *o;

    json_object_foreach(p->outcomes, id, o)
    {
        if (json_integer_value(json_array_get(o, 0)) == CTL_ING_CONFLICT)
            continue;
        json_array_set_new(o, 0, json_integer(kind));
        json_array_set_new(o, 1, json_string(msg));
    }
}

static char *
stuck_sig(const json_t *s, const json_t *want)
{
    char *a = pc_json_dumps_sorted(s), *b = want ? pc_json_dumps_sorted(want) : pc_xstrdup("-");
    char *sig = pc_xasprintf("%s|%s", a, b);

    free(a);
    free(b);
    return sig;
}

/*
 * Writes p for the Ingress id unless the same write was refused with a conflict before.
 * Outcomes are corrected for what happened. Returns 0, or the error of a failed write.
 */
static int
carry_out(struct ctl_ctx *c, const char *id, const json_t *s, struct ctl_ingress_plan *p)
{
    struct ctl_ingress_state *st = c->ing;
    char *sig = stuck_sig(s, p->want), *msg = NULL;
    const char *had;
    struct pc_diag d = {0};
    int rc = 0;

    pthread_mutex_lock(&st->mu);
    had = pc_json_str(json_object_get(st->stuck, id), "sig");
    if (had && strcmp(had, sig) == 0)
        msg = pc_xstrdup(pc_json_str(json_object_get(st->stuck, id), "msg"));
    pthread_mutex_unlock(&st->mu);
    if (msg) {
        override(p, CTL_ING_CONFLICT, msg);
        goto out;
    }
    rc = apply(c, s, p->want, &d);
    if (rc == K8S_ECONFLICT) {
        /* Another manager holds one of the fields with another value: left alone. */
        msg = pc_xasprintf("Ingress %s: %s: left alone", id, d.msg);
        pc_log(PC_LOG_WARN, "ingress_conflict", "ingress", id, "error", d.msg, NULL);
        override(p, CTL_ING_CONFLICT, msg);
        pthread_mutex_lock(&st->mu);
        json_object_set_new(st->stuck, id, json_pack("{s:s,s:s}", "sig", sig, "msg", msg));
        pthread_mutex_unlock(&st->mu);
        rc = 0;
    } else if (rc < 0) {
        msg = pc_xasprintf("Ingress %s: %s", id, d.msg);
        pc_log(PC_LOG_WARN, "ingress_apply_failed", "ingress", id, "error", d.msg, NULL);
        override(p, CTL_ING_FAILED, msg);
    } else {
        pc_log(PC_LOG_INFO, p->want ? "ingress_annotated" : "ingress_released", "ingress", id, "by",
               p->want ? pc_json_str(p->want, CTL_ANNOT_PROTECTED_BY) : "", NULL);
        pthread_mutex_lock(&st->mu);
        json_object_del(st->stuck, id);
        pthread_mutex_unlock(&st->mu);
    }
out:
    free(msg);
    free(sig);
    return rc;
}

/* ---- the pass ------------------------------------------------------------------------------- */

static int
compare_strings(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* The cache's ids, sorted (new array). Called with st->mu held. */
static json_t *
sorted_ids(const json_t *cache)
{
    json_t *ids = json_array(), **v;
    const char *k;
    json_t *s;
    size_t n;

    json_object_foreach((json_t *)cache, k, s) json_array_append_new(ids, json_string(k));
    n = json_array_size(ids);
    v = pc_xcalloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(ids, i));
    qsort(v, n, sizeof(*v), compare_strings);
    json_array_clear(ids);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(ids, v[i]);
    free(v);
    return ids;
}

/* Merges plan outcomes into by_host: host id -> {Ingress id -> outcome}. */
static void
gather(json_t *by_host, const char *ing, const json_t *outcomes)
{
    const char *id;
    json_t *o, *m;

    json_object_foreach((json_t *)outcomes, id, o)
    {
        if (!(m = json_object_get(by_host, id)))
            json_object_set_new(by_host, id, m = json_object());
        json_object_set(m, ing, o);
    }
}

/*
 * Stores the new reports of the hosts in views; returns the ids whose key must run again
 * (new array): those whose report changed and those that waited for a pass started at start.
 */
static json_t *
settle(struct ctl_ctx *c, json_t *by_host, const json_t *views, unsigned long start)
{
    struct ctl_ingress_state *st = c->ing;
    json_t *requeue = json_array(), *fresh = json_object(), *done = json_array(), *v;
    const char *id;
    size_t i;

    json_array_foreach(views, i, v)
    {
        json_t *o = json_object_get(by_host, pc_json_str(v, "id"));

        json_object_set_new(fresh, pc_json_str(v, "id"), o ? json_incref(o) : json_object());
    }
    pthread_mutex_lock(&st->mu);
    json_object_foreach(fresh, id, v)
    {
        if (!json_equal(json_object_get(st->reports, id), v))
            json_array_append_new(requeue, json_string(id));
    }
    json_object_foreach(st->want, id, v)
    {
        if ((unsigned long)json_integer_value(v) <= start)
            json_array_append_new(done, json_string(id));
    }
    json_array_foreach(done, i, v)
    {
        json_object_del(st->want, json_string_value(v));
        json_array_append(requeue, v);
    }
    json_decref(st->reports);
    st->reports = fresh;
    /* Refusals of Ingresses that are gone are forgotten. */
    json_array_clear(done);
    json_object_foreach(st->stuck, id, v)
    {
        if (!json_object_get(st->cache, id))
            json_array_append_new(done, json_string(id));
    }
    json_array_foreach(done, i, v) json_object_del(st->stuck, json_string_value(v));
    pthread_mutex_unlock(&st->mu);
    json_decref(done);
    return requeue;
}

int
ctl_ingress_pass(struct ctl_ctx *c)
{
    struct ctl_ingress_state *st = c->ing;
    json_t *cache, *ids, *views, *by_host = json_object(), *requeue, *id;
    struct ctl_ingress_index x;
    unsigned long start;
    size_t i;
    int rc = 0;

    pthread_mutex_lock(&st->mu);
    start = st->seq;
    cache = json_copy(st->cache); /* summaries are replaced, never changed: a shallow copy */
    ids = sorted_ids(cache);
    pthread_mutex_unlock(&st->mu);
    /* A host changes under hmu before it is noted: every change noted up to start is seen. */
    views = collect_views(c);
    ctl_ingress_index_init(&x, views);
    json_array_foreach(ids, i, id)
    {
        const char *ing = json_string_value(id);
        const json_t *s = json_object_get(cache, ing);
        json_t *named = ctl_ingress_index_match(&x, s);
        struct ctl_ingress_plan p;
        int wrc = 0;

        if (json_array_size(named) || pc_json_str(json_object_get(s, "ann"), "by")) {
            ctl_ingress_decide(s, named, &c->o.authd, &p);
            if (p.write && (wrc = carry_out(c, ing, s, &p)) < 0 && rc == 0)
                rc = wrc;
            gather(by_host, ing, p.outcomes);
            ctl_ingress_plan_release(&p);
        }
        json_decref(named);
    }
    ctl_ingress_index_release(&x);
    requeue = settle(c, by_host, views, start);
    json_array_foreach(requeue, i, id) ctl_queue_host(c, json_string_value(id));
    json_decref(requeue);
    json_decref(by_host);
    json_decref(views);
    json_decref(ids);
    json_decref(cache);
    return rc;
}

bool
ctl_ingress_status(struct ctl_ctx *c, const struct ctl_host *h, const char **reason, char **message)
{
    struct ctl_ingress_state *st = c->ing;
    json_t *view = json_loads(h->ingress, 0, NULL), *outcomes;
    bool pending;

    if (!c->o.ingress) {
        *reason = "IngressNotApplied";
        *message = pc_xstrdup("the controller runs with --ingress-nginx=false");
        json_decref(view);
        return true;
    }
    pthread_mutex_lock(&st->mu);
    pending = json_object_get(st->want, h->id) != NULL ||
              (ctl_host_publishes(h) && !json_object_get(st->reports, h->id));
    outcomes = json_object_get(st->reports, h->id);
    outcomes = outcomes ? json_incref(outcomes) : json_object();
    pthread_mutex_unlock(&st->mu);
    if (!pending)
        ctl_ingress_report(outcomes, pc_json_str(view, "class"), reason, message);
    json_decref(outcomes);
    json_decref(view);
    return !pending;
}
