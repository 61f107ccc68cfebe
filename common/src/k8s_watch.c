/*
 * k8s_watch.c - list, then watch from the list's resourceVersion, on a thread per watch.
 *
 * The stream is newline-delimited JSON ({"type":"ADDED","object":{...}}) that arrives in
 * arbitrary chunks. The watch keeps the resourceVersion of each object it has seen so that a
 * relist after 410 Gone can tell its caller what changed or was deleted while it was not
 * watching; the objects themselves are its caller's to keep, if it wants them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "portcullis/json.h"
#include "portcullis/log.h"

#include "k8s_priv.h"

#define DEFAULT_MAX_LINE (4u << 20)
#define LIST_PAGE 100 /* objects per page of a (re)list: bounds the memory it takes */

/* ---- the wire format -------------------------------------------------------------------- */

void
k8s_wire_init(struct k8s_wire *w, size_t max_line, k8s_wire_fn fn, void *ud)
{
    w->max_line = max_line ? max_line : DEFAULT_MAX_LINE;
    pc_buf_init(&w->line, w->max_line);
    w->on_event = fn;
    w->ud = ud;
}

void
k8s_wire_release(struct k8s_wire *w)
{
    pc_buf_release(&w->line);
}

static int
wire_type(const char *t, enum k8s_wire_type *out)
{
    static const char *const names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(t, names[i]) == 0) {
            *out = (enum k8s_wire_type)i;
            return 0;
        }
    }
    return PC_EPARSE;
}

/* Decodes one complete line and hands it on. Blank lines are keep-alives. */
static int
wire_line(struct k8s_wire *w, const char *p, size_t n, struct pc_diag *diag)
{
    enum k8s_wire_type type;
    json_error_t err;
    json_t *ev, *obj;
    const char *t;
    int rc;

    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' '))
        n--;
    if (n == 0)
        return 0;
    if (!(ev = json_loadb(p, n, 0, &err))) {
        pc_diag_set(diag, 0, 0, "bad watch event: %s", err.text);
        return PC_EPARSE;
    }
    t = pc_json_str(ev, "type");
    obj = json_object_get(ev, "object");
    if (!t || wire_type(t, &type) < 0 || !json_is_object(obj)) {
        pc_diag_set(diag, 0, 0, "bad watch event: %s", t ? "unknown type" : "no type");
        json_decref(ev);
        return PC_EPARSE;
    }
    rc = w->on_event(w->ud, type, obj);
    json_decref(ev);
    return rc;
}

int
k8s_wire_feed(struct k8s_wire *w, const char *p, size_t n, struct pc_diag *diag)
{
    const char *nl;
    size_t len;
    int rc;

    while (n > 0 && (nl = memchr(p, '\n', n))) {
        len = (size_t)(nl - p);
        if (w->line.len == 0) {
            /* The common case: a whole line inside the chunk, decoded without a copy. */
            if (len > w->max_line)
                goto too_big;
            rc = wire_line(w, p, len, diag);
        } else {
            if (pc_buf_append(&w->line, p, len) < 0)
                goto too_big;
            rc = wire_line(w, w->line.data, w->line.len, diag);
            pc_buf_reset(&w->line);
        }
        if (rc)
            return rc;
        p = nl + 1;
        n -= len + 1;
    }
    if (n > 0 && pc_buf_append(&w->line, p, n) < 0)
        goto too_big;
    return 0;
too_big:
    pc_diag_set(diag, 0, 0, "watch event over %zu bytes", w->max_line);
    return PC_ETOOBIG;
}

/* ---- backoff ---------------------------------------------------------------------------- */

long
k8s_backoff_ms(unsigned attempt)
{
    static _Thread_local unsigned seed;
    long d = attempt >= 6 ? 30000 : 500L << attempt;

    if (seed == 0)
        seed = (unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)(uintptr_t)&seed;
    if (d > 30000)
        d = 30000;
    /* Up to a quarter less, so replicas that failed together do not retry together. */
    return d - (long)((unsigned long)rand_r(&seed) % (unsigned long)(d / 4 + 1));
}

/* ---- the watch thread ------------------------------------------------------------------- */

struct k8s_watch {
    struct k8s_client *client;
    struct k8s_watch_opts o; /* strings below are our copies */
    char *api_version, *plural, *namespace, *label_selector, *field_selector;
    char *path;    /* collection path */
    char *rv;      /* resourceVersion to resume from */
    json_t *store; /* "namespace/name" -> its last resourceVersion */
    bool absent;   /* absent_is_empty: the last list found the resource not served */
    struct k8s_stop stop;
    pthread_t thread;
};

static char *
obj_key(const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *ns = pc_json_str(md, "namespace"), *name = pc_json_str(md, "name");

    return pc_xasprintf("%s/%s", ns ? ns : "", name ? name : "");
}

static void
set_rv(struct k8s_watch *w, const json_t *obj)
{
    const char *rv = pc_json_str(json_object_get(obj, "metadata"), "resourceVersion");

    if (rv && *rv) {
        free(w->rv);
        w->rv = pc_xstrdup(rv);
    }
}

void
k8s_strip_bookkeeping(json_t *obj)
{
    json_t *md = json_object_get(obj, "metadata");
    json_t *ann = json_object_get(md, "annotations");

    json_object_del(md, "managedFields");
    json_object_del(ann, "kubectl.kubernetes.io/last-applied-configuration");
    if (ann && json_object_size(ann) == 0)
        json_object_del(md, "annotations");
}

static json_t *
rv_of(const json_t *obj)
{
    return json_object_get(json_object_get(obj, "metadata"), "resourceVersion");
}

void
k8s_relist_note(struct k8s_relist *r, json_t *obj)
{
    char *k = obj_key(obj);
    const json_t *old = json_object_get(r->store, k);
    json_t *rv = rv_of(obj);

    json_object_set_new(r->fresh, k, json_string(json_is_string(rv) ? json_string_value(rv) : ""));
    free(k);
    if (!old)
        r->fn(r->ud, K8S_ADDED, obj);
    else if (!json_equal(old, rv))
        r->fn(r->ud, K8S_MODIFIED, obj);
}

/* What a DELETED event found by a relist carries: the identity the store kept. */
static json_t *
stub_object(const char *key, const json_t *rv, const char *api_version)
{
    const char *slash = strchr(key, '/');
    json_t *md = json_pack("{s:s%,s:s,s:O}", "namespace", key, slash ? (size_t)(slash - key) : 0,
                           "name", slash ? slash + 1 : key, "resourceVersion", rv);
    json_t *obj = json_pack("{s:o}", "metadata", md);

    if (api_version)
        json_object_set_new(obj, "apiVersion", json_string(api_version));
    return obj;
}

void
k8s_relist_finish(struct k8s_relist *r)
{
    const char *key;
    json_t *rv;
    void *tmp;

    json_object_foreach_safe(r->store, tmp, key, rv)
    {
        if (!json_object_get(r->fresh, key)) {
            json_t *stub = stub_object(key, rv, r->api_version);

            r->fn(r->ud, K8S_DELETED, stub);
            json_decref(stub);
        }
    }
    json_object_clear(r->store);
    json_object_update(r->store, r->fresh);
}

void
k8s_store_replace(json_t *store, json_t *items, k8s_watch_fn fn, void *ud)
{
    struct k8s_relist r = {.store = store, .fresh = json_object(), .fn = fn, .ud = ud};
    json_t *obj;
    size_t i;

    json_array_foreach(items, i, obj)
    {
        k8s_strip_bookkeeping(obj);
        k8s_relist_note(&r, obj);
    }
    k8s_relist_finish(&r);
    json_decref(r.fresh);
}

static int
on_wire(void *ud, enum k8s_wire_type type, json_t *obj)
{
    struct k8s_watch *w = ud;
    struct pc_diag d = {0};
    const char *rv;
    char *key;

    if (type == K8S_W_ERROR) {
        int rc = k8s_status_json(0, obj, &d);
        pc_log(PC_LOG_WARN, "watch_error", "path", w->path, "error", d.msg, NULL);
        return rc;
    }
    set_rv(w, obj);
    if (type == K8S_W_BOOKMARK)
        return 0;
    k8s_strip_bookkeeping(obj);
    key = obj_key(obj);
    rv = pc_json_str(json_object_get(obj, "metadata"), "resourceVersion");
    if (type == K8S_W_DELETED)
        json_object_del(w->store, key);
    else
        json_object_set_new(w->store, key, json_string(rv ? rv : ""));
    free(key);
    w->o.on_event(w->o.ud, (enum k8s_event_type)type, obj);
    return 0;
}

static int
on_page(void *ud, json_t *items)
{
    struct k8s_relist *r = ud;
    json_t *obj;
    size_t i;

    json_array_foreach(items, i, obj)
    {
        k8s_strip_bookkeeping(obj);
        k8s_relist_note(r, obj);
        /* Drop each object once handed on: a page of a big list is never held whole. */
        json_array_set_new(items, i, json_null());
    }
    return 0;
}

static int
do_list(struct k8s_watch *w, struct pc_diag *d)
{
    struct k8s_relist r = {.store = w->store,
                           .fresh = json_object(),
                           .api_version = w->o.ref.api_version,
                           .fn = w->o.on_event,
                           .ud = w->o.ud};
    struct k8s_pages p = {.ref = &w->o.ref, .page_size = LIST_PAGE, .fn = on_page, .ud = &r};
    int rc = k8s_list_pages(w->client, &p, d);

    if (rc == K8S_ENOTFOUND && w->o.absent_is_empty) {
        /* Not served: nothing of it exists. What was seen before is gone. */
        k8s_relist_finish(&r);
        if (!w->absent) {
            pc_log(PC_LOG_INFO, "watch_resource_absent", "path", w->path, NULL);
            if (w->o.on_synced)
                w->o.on_synced(w->o.ud);
        }
        w->absent = true;
    } else if (rc == 0) {
        w->absent = false;
        k8s_relist_finish(&r);
        free(w->rv);
        w->rv = p.resource_version;
        p.resource_version = NULL;
        if (w->o.on_synced)
            w->o.on_synced(w->o.ud);
    }
    free(p.resource_version);
    json_decref(r.fresh);
    return rc;
}

struct stream_ctx {
    struct k8s_wire wire;
    struct pc_diag *diag;
};

static int
on_stream_data(void *ud, const char *p, size_t n)
{
    struct stream_ctx *s = ud;

    return k8s_wire_feed(&s->wire, p, n, s->diag);
}

static char *
watch_query(const struct k8s_watch *w)
{
    struct pc_buf b;
    char *e;

    pc_buf_init(&b, 0);
    pc_buf_appendf(&b, "%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%d", w->path,
                   w->o.timeout_secs);
    e = curl_easy_escape(NULL, w->rv ? w->rv : "", 0);
    pc_buf_appendf(&b, "&resourceVersion=%s", e);
    curl_free(e);
    if (w->o.ref.label_selector) {
        e = curl_easy_escape(NULL, w->o.ref.label_selector, 0);
        pc_buf_appendf(&b, "&labelSelector=%s", e);
        curl_free(e);
    }
    if (w->o.ref.field_selector) {
        e = curl_easy_escape(NULL, w->o.ref.field_selector, 0);
        pc_buf_appendf(&b, "&fieldSelector=%s", e);
        curl_free(e);
    }
    return pc_buf_detach(&b);
}

/*
 * One watch stream from w->rv. Returns 0 when the server (or the low-speed timer) ended it
 * normally, K8S_EGONE when the resourceVersion expired, another code on failure.
 */
static int
do_stream(struct k8s_watch *w, struct pc_diag *d)
{
    struct stream_ctx s = {.diag = d};
    struct k8s_xfer x = {
        .method = "GET",
        .timeout_ms = (w->o.timeout_secs + 60) * 1000L,
        .low_speed_secs = w->o.low_speed_secs,
        .on_data = on_stream_data,
        .ud = &s,
        .stop = &w->stop.flag,
    };
    char status[16];
    int rc;

    k8s_wire_init(&s.wire, w->o.max_line, on_wire, w);
    if (w->o.ref.metadata_only)
        x.accept = K8S_ACCEPT_METADATA;
    x.path = watch_query(w);
    pc_log(PC_LOG_DEBUG, "watch_open", "path", w->path, "resource_version", w->rv ? w->rv : "",
           NULL);
    rc = k8s_xfer_do(w->client, &x, d);
    if (rc == 0 && (x.status < 200 || x.status > 299))
        rc = k8s_status_error(x.status, x.resp.data, x.resp.len, d);
    /* A quiet stream cut by the low-speed timer is healthy: resume from the same version. */
    if (rc == PC_EIO && x.status >= 200 && x.status <= 299 && !atomic_load(&w->stop.flag))
        rc = 0;
    snprintf(status, sizeof(status), "%ld", x.status);
    pc_log(PC_LOG_DEBUG, "watch_closed", "path", w->path, "status", status, "resource_version",
           w->rv ? w->rv : "", NULL);
    k8s_wire_release(&s.wire);
    pc_buf_release(&x.resp);
    free((char *)x.path);
    return rc;
}

static void *
watch_main(void *arg)
{
    struct k8s_watch *w = arg;
    bool need_list = w->rv == NULL;
    unsigned attempt = 0;
    int rc;

    while (!atomic_load(&w->stop.flag)) {
        struct pc_diag d = {0};
        rc = need_list ? do_list(w, &d) : do_stream(w, &d);
        if (atomic_load(&w->stop.flag))
            break;
        if (rc == 0) {
            need_list = false;
            attempt = 0;
            continue;
        }
        if (rc == K8S_EGONE) {
            pc_log(PC_LOG_INFO, "watch_relist", "path", w->path, "reason", d.msg, NULL);
            need_list = true;
            continue;
        }
        if (rc == K8S_ENOTFOUND && w->o.absent_is_empty)
            need_list = true; /* the resource went away: its list says so */
        if (!w->absent)
            pc_log(PC_LOG_WARN, need_list ? "list_failed" : "watch_failed", "path", w->path,
                   "error", d.msg[0] ? d.msg : pc_strerror(rc), NULL);
        k8s_stop_nap(&w->stop, k8s_backoff_ms(attempt < 16 ? attempt++ : attempt));
    }
    return NULL;
}

static char *
dup_or_null(const char *s)
{
    return s ? pc_xstrdup(s) : NULL;
}

struct k8s_watch *
k8s_watch_start(struct k8s_client *c, const struct k8s_watch_opts *o)
{
    struct k8s_watch *w = pc_xcalloc(1, sizeof(*w));

    w->client = c;
    w->o = *o;
    w->api_version = pc_xstrdup(o->ref.api_version);
    w->plural = pc_xstrdup(o->ref.plural);
    w->namespace = dup_or_null(o->ref.namespace);
    w->label_selector = dup_or_null(o->ref.label_selector);
    w->field_selector = dup_or_null(o->ref.field_selector);
    w->o.ref = (struct k8s_ref){.api_version = w->api_version,
                                .plural = w->plural,
                                .namespace = w->namespace,
                                .label_selector = w->label_selector,
                                .field_selector = w->field_selector,
                                .metadata_only = o->ref.metadata_only};
    w->o.timeout_secs = o->timeout_secs > 0 ? o->timeout_secs : 300;
    w->o.low_speed_secs = o->low_speed_secs > 0 ? o->low_speed_secs : 90;
    w->path = k8s_path(&w->o.ref);
    w->rv = dup_or_null(o->resource_version);
    w->o.resource_version = NULL;
    w->store = json_object();
    k8s_stop_init(&w->stop);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0)
        abort();
    return w;
}

void
k8s_watch_stop(struct k8s_watch *w)
{
    if (!w)
        return;
    k8s_stop_raise(&w->stop);
    pthread_join(w->thread, NULL);
    k8s_stop_release(&w->stop);
    json_decref(w->store);
    free(w->api_version);
    free(w->plural);
    free(w->namespace);
    free(w->label_selector);
    free(w->field_selector);
    free(w->path);
    free(w->rv);
    free(w);
}
