/*
 * k8s.h - the Kubernetes API client both daemons share: kubeconfig and in-cluster config,
 * requests (get/list/create/server-side apply/update/merge patch/delete), list+watch with
 * bookmarks, relist on 410 and capped backoff, the watch-stream framer, Events and Leases.
 * It knows nothing of ProtectedHosts or authd's config: objects are jansson values addressed
 * by struct k8s_ref. Errors are rc < 0 with the details in diag. The watch and elector threads
 * log their retries (pc_log): nobody is there to return a code to.
 *
 *   struct k8s_config cfg;
 *   struct pc_diag d = {0};
 *   k8s_config_init(&cfg);
 *   if (k8s_config_load(&cfg, opt_kubeconfig, opt_context, &d) < 0) ...   // NULL, NULL: defaults
 *   struct k8s_client *kc = k8s_client_new(&cfg, "portcullis-controller");   // copies cfg
 *   k8s_config_release(&cfg);
 *
 *   struct k8s_ref ph = {.api_version = "portcullis.io/v1alpha1", .plural = "protectedhosts"};
 *   struct k8s_watch *w = k8s_watch_start(kc, &(struct k8s_watch_opts){
 *       .ref = ph, .on_event = on_ph, .on_synced = on_ph_synced, .ud = queue});
 *       // on_ph(queue, K8S_ADDED, obj) runs on the watch's thread: incref obj and push it.
 *
 *   json_t *ap = ...;   // full object with apiVersion, kind, metadata.name/namespace
 *   struct k8s_ref ref = {.api_version = "security.istio.io/v1",
 *                         .plural = "authorizationpolicies"};   // name/namespace from ap
 *   rc = k8s_apply(kc, &ref, ap, &d);                   // SSA, fieldManager=portcullis, force
 *   rc = k8s_delete(kc, &(struct k8s_ref){..., .namespace = "ns", .name = "n"}, &d);
 *   if (rc == K8S_ENOTFOUND) ...                       // already gone
 *   k8s_event(kc, &(struct k8s_event){.involved = ph_obj, .type = "Warning",
 *                                      .reason = "SecretNotFound", .message = "..."}, &d);
 *
 *   struct k8s_elector *le = k8s_elector_start(kc, &(struct k8s_lease_opts){
 *       .namespace = "portcullis-system", .name = "portcullis-controller",
 *       .on_started_leading = start_fn, .on_stopped_leading = stop_fn, .ud = ctx});
 *   ...
 *   k8s_elector_stop(le);   // releases the lease so a standby takes over at once
 *
 *   struct k8s_keeper *kp = k8s_keeper_start(kc, &(struct k8s_keeper_opts){
 *       .namespace = "ns", .name = "me", .labels = labels});
 *   k8s_keeper_annotate(kp, annotations);   // written within a round trip
 *   k8s_keeper_stop(kp, true);              // deletes the Lease
 *   k8s_watch_stop(w);
 *   k8s_client_free(kc);
 */
#ifndef PORTCULLIS_K8S_H
#define PORTCULLIS_K8S_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>

#include "portcullis/base.h"
#include "portcullis/buf.h"

/* ---------------------------------------------------------------------------------------- */
/* k8s_config.c - where the API server is and how to authenticate to it                      */
/* ---------------------------------------------------------------------------------------- */

#define K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* Every string is owned (heap) or NULL. Secrets are cleansed by k8s_config_release. */
struct k8s_config {
    char *server;  /* "https://host:port", no trailing slash */
    char *ca_file; /* PEM file of trusted CAs */
    char *ca_pem;  /* PEM text of trusted CAs */
    bool insecure_skip_verify;
    char *token;           /* bearer token (secret) */
    char *token_file;      /* bearer token re-read when it changes (at most every 60 s) */
    char *client_cert_pem; /* client certificate, PEM text */
    char *client_key_pem;  /* client key, PEM text (secret) */
    char *namespace;       /* the context's (or service account's) namespace, "default" */
    char *sa_dir;          /* in-cluster only: the service account directory (tests) */
};

void k8s_config_init(struct k8s_config *c);
void k8s_config_release(struct k8s_config *c);

/*
 * Fills c from the kubeconfig file at path, using the named context, or current-context when
 * context is NULL. Relative file paths are relative to the kubeconfig's directory. Returns 0,
 * -errno when the file cannot be read, PC_EPARSE / PC_EINVAL with "path:line:col: message"
 * in diag (e.g. "missing field 'current-context'").
 */
int k8s_config_from_kubeconfig(struct k8s_config *c, const char *path, const char *context,
                               struct pc_diag *diag);
/*
 * Fills c for a pod: KUBERNETES_SERVICE_HOST/PORT and sa_dir (NULL: K8S_SA_DIR) holding
 * token, ca.crt and namespace. Returns 0, PC_ENOTFOUND when not in a cluster, or -errno.
 */
int k8s_config_in_cluster(struct k8s_config *c, const char *sa_dir, struct pc_diag *diag);
/*
 * The usual order: the kubeconfig path when non-NULL; else $KUBECONFIG (first entry of the
 * list); else in-cluster when KUBERNETES_SERVICE_HOST is set; else ~/.kube/config.
 */
int k8s_config_load(struct k8s_config *c, const char *kubeconfig, const char *context,
                    struct pc_diag *diag);
/* Reads a small file (<= 4 MiB) into *out (new, NUL-terminated). Returns 0 or -errno / TOOBIG. */
int k8s_read_file(const char *path, char **out, size_t *len);

/* ---------------------------------------------------------------------------------------- */
/* k8s_client.c - requests                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* Result codes beyond base.h's. PC_EIO: transport failure or timeout. */
enum {
    K8S_ENOTFOUND = PC_ENOTFOUND, /* HTTP 404 */
    K8S_ECONFLICT = -1101,        /* HTTP 409: lost an optimistic-concurrency race or exists */
    K8S_EGONE = -1102,            /* HTTP 410: resourceVersion too old (watch must relist) */
    K8S_EINVALID = -1103,         /* HTTP 422 / 400: the server refused the object */
    K8S_EFORBIDDEN = -1104,       /* HTTP 401 / 403 */
    K8S_EHTTP = -1105,            /* any other non-2xx answer (5xx, 429...) */
};

/*
 * What a request addresses. All fields borrowed.
 *   core:      {.api_version = "v1", .plural = "configmaps", .namespace = "ns", .name = "x"}
 *              -> /api/v1/namespaces/ns/configmaps/x
 *   group:     {.api_version = "coordination.k8s.io/v1", .plural = "leases", ...}
 *              -> /apis/coordination.k8s.io/v1/...
 * namespace NULL: cluster-scoped or across all namespaces. name NULL: the collection.
 * subresource: "status" or NULL. label_selector, field_selector: for list and watch only
 * (e.g. "metadata.name!=x").
 */
struct k8s_ref {
    const char *api_version;
    const char *plural;
    const char *namespace;
    const char *name;
    const char *subresource;
    const char *label_selector;
    const char *field_selector;
    /* Lists, gets and watches answer PartialObjectMetadata: metadata only, never the data
     * (a Secret watch then costs a few hundred bytes a Secret, not its contents). */
    bool metadata_only;
};

struct k8s_client;

/*
 * New client with a copy of cfg (cfg may be released afterwards). component names the daemon
 * ("portcullis-controller"): the User-Agent "<component>/<version>" and the source of its
 * Events. Never NULL. Thread-safe.
 */
struct k8s_client *k8s_client_new(const struct k8s_config *cfg, const char *component);
void k8s_client_free(struct k8s_client *c);
/* The configured default namespace, borrowed for the client's lifetime. */
const char *k8s_client_namespace(const struct k8s_client *c);

/* New path for ref, without query ("/apis/g/v/namespaces/ns/plural/name/status"). */
char *k8s_path(const struct k8s_ref *ref);

/* GET one object; *out is new. 404 -> K8S_ENOTFOUND. */
int k8s_get(struct k8s_client *c, const struct k8s_ref *ref, json_t **out, struct pc_diag *diag);

struct k8s_list {
    json_t *items;          /* new array of the objects (each with apiVersion and kind) */
    char *resource_version; /* new: the list's resourceVersion, to watch from */
};
void k8s_list_release(struct k8s_list *l);
/* LIST a collection, following limit/continue pages. Fills *out (release it either way). */
int k8s_list(struct k8s_client *c, const struct k8s_ref *ref, struct k8s_list *out,
             struct pc_diag *diag);
/*
 * The same one page at a time, so a big collection is never held whole: fn gets each page's
 * items (a borrowed array, each with apiVersion and kind; it may modify or take references to
 * them). Returns 0 or the first error (pages before it were handed on); fn's non-zero result
 * stops the list and is returned. Free p->resource_version either way.
 */
typedef int (*k8s_page_fn)(void *ud, json_t *items);
struct k8s_pages {
    const struct k8s_ref *ref;
    int page_size; /* 0: 500 */
    k8s_page_fn fn;
    void *ud;
    char *resource_version; /* out, new: the list's, to watch from */
};
int k8s_list_pages(struct k8s_client *c, struct k8s_pages *p, struct pc_diag *diag);

/* POST obj to the collection of ref (ref->name ignored). Exists -> K8S_ECONFLICT. */
int k8s_create(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj,
               struct pc_diag *diag);
/*
 * Server-side apply: PATCH application/apply-patch+yaml (JSON body), fieldManager=portcullis,
 * force=true. ref->name / ref->namespace default to obj's metadata.name / metadata.namespace.
 * With ref->subresource = "status" it applies the status.
 */
int k8s_apply(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj,
              struct pc_diag *diag);
/* The same; *out (may be NULL) gets the new object as the server holds it after the apply. */
int k8s_apply_out(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj, json_t **out,
                  struct pc_diag *diag);
/*
 * The same under another field manager (lowercase letters, digits, '-'); without force a
 * field another manager owns with a different value fails with K8S_ECONFLICT (HTTP 409, the
 * managers and fields in diag) instead of being taken over. Applying an object without fields
 * the manager applied before removes them (unless another manager owns them too).
 */
struct k8s_apply_opts {
    const char *manager;
    bool force;
};
int k8s_apply_as(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj,
                 const struct k8s_apply_opts *o, struct pc_diag *diag);
/* PUT obj (with metadata.resourceVersion for optimistic concurrency: stale -> K8S_ECONFLICT). */
int k8s_update(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj,
               struct pc_diag *diag);
/* JSON merge patch (RFC 7386), e.g. {"metadata":{"finalizers":[...]}}. */
int k8s_merge_patch(struct k8s_client *c, const struct k8s_ref *ref, const json_t *patch,
                    struct pc_diag *diag);
/* DELETE one object. Absent -> K8S_ENOTFOUND (callers usually treat it as done). */
int k8s_delete(struct k8s_client *c, const struct k8s_ref *ref, struct pc_diag *diag);

/* The general form behind the calls above. */
struct k8s_request {
    const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const struct k8s_ref *ref;
    const char *query;        /* appended after '?', already encoded; may be NULL */
    const json_t *body;       /* may be NULL */
    const char *content_type; /* default application/json */
    long timeout_ms;          /* default 30000 */
    const atomic_bool *stop;  /* may be NULL; when it turns true the request ends, -ECANCELED */
};
/* *out (may be NULL) receives the new response object on 2xx. */
int k8s_request(struct k8s_client *c, const struct k8s_request *req, json_t **out,
                struct pc_diag *diag);

/*
 * Maps a non-2xx answer to a K8S_E* code and writes the Status object's message (or the
 * body's start when it is not a Status) with the HTTP code into diag:
 *   "configmaps \"x\" not found (HTTP 404 NotFound)".
 */
int k8s_status_error(long http_status, const char *body, size_t len, struct pc_diag *diag);
/* The same from a parsed Status object; http_status 0 takes the Status's own code (watch ERROR). */
int k8s_status_json(long http_status, const json_t *status, struct pc_diag *diag);

/* The stop flag of a client thread (a watch, an elector, a caller's own), which it can sleep on. */
struct k8s_stop {
    atomic_bool flag;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};
void k8s_stop_init(struct k8s_stop *s);
void k8s_stop_release(struct k8s_stop *s);
/* Sets the flag and wakes a napping thread. */
void k8s_stop_raise(struct k8s_stop *s);
/* Sleeps ms milliseconds, or less once the flag is raised. */
void k8s_stop_nap(struct k8s_stop *s, long ms);
/*
 * The same, also ending once ready(ud) is true; ready is called with s->lock held, so state it
 * reads is guarded by that lock (change it under the lock, then k8s_stop_wake).
 */
void k8s_stop_nap_until(struct k8s_stop *s, long ms, bool (*ready)(void *ud), void *ud);
/* Wakes a napping thread to look at ready() again; call it with s->lock held. */
void k8s_stop_wake(struct k8s_stop *s);

/* ---------------------------------------------------------------------------------------- */
/* k8s_event.c - core/v1 Events                                                             */
/* ---------------------------------------------------------------------------------------- */

struct k8s_event {
    const json_t *involved; /* the object (apiVersion, kind, metadata.{name,namespace,uid}) */
    const char *type;       /* "Normal" or "Warning" */
    const char *reason;     /* CamelCase */
    const char *message;
};
/*
 * Records an Event (reportingComponent: the client's component) in the object's namespace
 * ("default" for cluster-scoped objects). The same object+type+reason+message is one Event
 * whose count and lastTimestamp grow.
 */
int k8s_event(struct k8s_client *c, const struct k8s_event *ev, struct pc_diag *diag);

/* ---------------------------------------------------------------------------------------- */
/* k8s_watch.c - list + watch, one thread per watch                                         */
/* ---------------------------------------------------------------------------------------- */

enum k8s_event_type { K8S_ADDED, K8S_MODIFIED, K8S_DELETED };

/*
 * Called on the watch's own thread; obj is borrowed for the call (json_incref to keep it).
 * Objects arrive without the server's bookkeeping that no controller reads and that doubles
 * their size: metadata.managedFields and the kubectl last-applied-configuration annotation.
 * After a relist (410 Gone) the watch sends what changed while it was not watching: ADDED
 * and MODIFIED for new and changed objects, DELETED for those that are gone. The watch keeps
 * only each object's resourceVersion, so such a DELETED object is a stub: apiVersion and
 * metadata.{namespace,name,resourceVersion}.
 */
typedef void (*k8s_watch_fn)(void *ud, enum k8s_event_type type, json_t *obj);
/* Called after every complete (re)list, once its events were sent. */
typedef void (*k8s_synced_fn)(void *ud);

struct k8s_watch_opts {
    struct k8s_ref ref;      /* the collection (name NULL) */
    k8s_watch_fn on_event;   /* required */
    k8s_synced_fn on_synced; /* may be NULL */
    void *ud;
    int timeout_secs;             /* server-side stream lifetime, default 300 */
    long low_speed_secs;          /* dead-connection detection, default 90 */
    size_t max_line;              /* one event's bound, default 4 MiB */
    const char *resource_version; /* resume from here instead of listing first (e.g. a
                                     version kept from before); the list follows a 410 */
    bool absent_is_empty;         /* a 404 on the list (the resource is not served: a CRD not
                                     installed) counts as a synced empty list; listed again with
                                     backoff until it is served */
};

struct k8s_watch;
/* Starts the watch thread; strings in o are copied. Never NULL (it retries until stopped). */
struct k8s_watch *k8s_watch_start(struct k8s_client *c, const struct k8s_watch_opts *o);
/* Stops the thread within about a second, joins and frees; no callback runs afterwards. */
void k8s_watch_stop(struct k8s_watch *w);

/* The watch stream decoder, exposed for tests and the fuzzer. */
enum k8s_wire_type { K8S_W_ADDED, K8S_W_MODIFIED, K8S_W_DELETED, K8S_W_BOOKMARK, K8S_W_ERROR };
typedef int (*k8s_wire_fn)(void *ud, enum k8s_wire_type type, json_t *obj);
struct k8s_wire {
    struct pc_buf line; /* the partial line carried between chunks */
    size_t max_line;
    k8s_wire_fn on_event;
    void *ud;
};
void k8s_wire_init(struct k8s_wire *w, size_t max_line, k8s_wire_fn fn, void *ud);
void k8s_wire_release(struct k8s_wire *w);
/*
 * Feeds a chunk of the newline-delimited JSON stream; calls on_event for every complete line
 * (obj borrowed for the call). Returns 0, PC_ETOOBIG for a line over max_line, PC_EPARSE for a
 * line that is not a watch event (detail in diag), or the first non-zero on_event result.
 */
int k8s_wire_feed(struct k8s_wire *w, const char *p, size_t n, struct pc_diag *diag);

/* Removes metadata.managedFields and the last-applied-configuration annotation from obj. */
void k8s_strip_bookkeeping(json_t *obj);

/*
 * A relist, as a watch does it: store maps "namespace/name" -> resourceVersion (a string).
 * k8s_relist_note records one listed object in fresh and reports ADDED for a key store lacks,
 * MODIFIED for a changed resourceVersion. k8s_relist_finish reports DELETED (a stub, see
 * k8s_watch_fn) for each key of store missing from fresh, then moves fresh's contents into
 * store. k8s_store_replace does all of it for a whole list of items.
 */
struct k8s_relist {
    json_t *store;           /* borrowed */
    json_t *fresh;           /* borrowed: a new object the caller made */
    const char *api_version; /* of the stubs, may be NULL */
    k8s_watch_fn fn;
    void *ud;
};
void k8s_relist_note(struct k8s_relist *r, json_t *obj);
void k8s_relist_finish(struct k8s_relist *r);
void k8s_store_replace(json_t *store, json_t *items, k8s_watch_fn fn, void *ud);

/* Capped exponential backoff with jitter: attempt 0 -> ~0.5 s, doubling, capped at 30 s. */
long k8s_backoff_ms(unsigned attempt);

/* ---------------------------------------------------------------------------------------- */
/* k8s_lease.c - leader election, and Leases kept while running (coordination.k8s.io/v1)     */
/* ---------------------------------------------------------------------------------------- */

struct k8s_lease_opts {
    const char *namespace;                /* required */
    const char *name;                     /* required */
    const char *identity;                 /* NULL: $POD_NAME, else "<hostname>_<pid>" */
    int lease_secs;                       /* leaseDurationSeconds, default 15 */
    int renew_secs;                       /* renew period, default 5 */
    int renew_deadline_secs;              /* stop leading after failing to renew this long, 10 */
    int retry_secs;                       /* how often a candidate tries to acquire, default 2 */
    void (*on_started_leading)(void *ud); /* called on the elector's thread */
    void (*on_stopped_leading)(void *ud);
    void *ud;
};

struct k8s_elector;
/* Starts campaigning on its own thread. Strings in o are copied. Never NULL. */
struct k8s_elector *k8s_elector_start(struct k8s_client *c, const struct k8s_lease_opts *o);
bool k8s_elector_is_leader(const struct k8s_elector *e);
/* Stops; a held lease is released (holderIdentity emptied). Calls on_stopped_leading if leading. */
void k8s_elector_stop(struct k8s_elector *e);

/*
 * Whether a Lease may be taken by identity at now: it is ours, unheld, or its renewTime +
 * leaseDurationSeconds has passed. Pure; exposed for tests.
 */
bool k8s_lease_acquirable(const json_t *lease, const char *identity, time_t now);
/* RFC 3339 with optional fraction ("2024-01-02T03:04:05.123456Z") to a time. PC_EPARSE. */
int k8s_parse_time(const char *s, time_t *out);

/*
 * A Lease a process keeps while it runs, saying it is alive and what it holds (e.g. what an
 * authd replica has loaded): holderIdentity, leaseDurationSeconds, renewTime renewed every
 * renew_secs, the caller's labels and annotations. Not an election: nobody else takes it, so
 * every write is a server-side apply (fieldManager portcullis) with no read before it.
 * Failed writes are retried with backoff, at least every renew_secs.
 */
struct k8s_keeper_opts {
    const char *namespace;     /* required */
    const char *name;          /* required */
    const char *identity;      /* NULL: $POD_NAME, else "<hostname>_<pid>" */
    const json_t *labels;      /* may be NULL; copied */
    const json_t *annotations; /* the first ones, may be NULL; copied */
    int lease_secs;            /* leaseDurationSeconds, default 15 */
    int renew_secs;            /* default 5 */
};
struct k8s_keeper;
/* Starts writing on its own thread. Strings in o are copied. Never NULL. */
struct k8s_keeper *k8s_keeper_start(struct k8s_client *c, const struct k8s_keeper_opts *o);
/*
 * Replaces the annotations (an object of strings, copied) and has the thread write them at
 * once when they differ from the current ones. Never waits on the network. Any thread.
 */
void k8s_keeper_annotate(struct k8s_keeper *k, const json_t *annotations);
/*
 * Stops the thread; with delete_lease the Lease is deleted (a clean shutdown: readers see at
 * once that this process is gone), else it is left to expire. NULL is a no-op.
 */
void k8s_keeper_stop(struct k8s_keeper *k, bool delete_lease);

#endif
