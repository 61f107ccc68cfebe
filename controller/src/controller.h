/*
 * controller.h - the private header of portcullis-controller: every cross-file function of the
 * daemon, grouped under one banner per source file.
 *
 * Module map:
 *   k8s*.c   the Kubernetes API client (config, requests, watches, leader election). It knows
 *            nothing of ProtectedHosts: objects are jansson values addressed by struct k8s_ref.
 *
 * Using the Kubernetes client (errors are rc < 0 with the details in diag):
 *
 *   struct k8s_config cfg;
 *   struct pc_diag d = {0};
 *   k8s_config_init(&cfg);
 *   if (k8s_config_load(&cfg, opt_kubeconfig, opt_context, &d) < 0) ...   // NULL, NULL: defaults
 *   struct k8s_client *kc = k8s_client_new(&cfg);                      // copies cfg
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
 *   k8s_watch_stop(w);
 *   k8s_client_free(kc);
 */
#ifndef PORTCULLIS_CONTROLLER_H
#define PORTCULLIS_CONTROLLER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <pthread.h>

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
};

struct k8s_client;

/* New client with a copy of cfg (cfg may be released afterwards). Never NULL. Thread-safe. */
struct k8s_client *k8s_client_new(const struct k8s_config *cfg);
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

/* Internal to k8s*.c: one HTTP exchange on a pooled keep-alive handle. */
struct k8s_xfer {
    const char *method; /* default GET */
    const char *path;   /* path and query, appended to the server URL */
    const char *body;   /* may be NULL */
    size_t body_len;
    const char *content_type;                          /* of body, default application/json */
    long timeout_ms;                                   /* whole exchange; 0 = none (watches) */
    long low_speed_secs;                               /* abort below 1 byte/s this long; 0 = off */
    int (*on_data)(void *ud, const char *p, size_t n); /* streams 2xx bodies; non-zero aborts */
    void *ud;
    const atomic_bool *stop; /* aborts within about a second once true (-ECANCELED) */
    long status;             /* out: HTTP status, 0 when none arrived */
    struct pc_buf resp;      /* out: the body (non-2xx only when streaming); release it */
};
/* Returns 0 when an answer arrived (any status), PC_EIO, PC_ETOOBIG, -ECANCELED, or on_data's. */
int k8s_xfer_do(struct k8s_client *c, struct k8s_xfer *x, struct pc_diag *diag);

/* Internal to k8s*.c: the stop flag of a watch or elector thread, which it can sleep on. */
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
 * Records an Event (reportingComponent portcullis-controller) in the object's namespace
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
/* k8s_lease.c - leader election on a coordination.k8s.io/v1 Lease                          */
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

/* ======================================================================================== */
/* The ProtectedHost side (ctl_*.c). The renderer (ctl_spec.c, ctl_render.c, ctl_state.c,   */
/* ctl_mesh.c) is pure: JSON in, JSON/text out, no I/O, no clocks. render and run share it.  */
/* ======================================================================================== */

#define CTL_GROUP_VERSION "portcullis.io/v1alpha1"
#define CTL_FINALIZER "portcullis.io/cleanup"
#define CTL_PROVIDER_NAME "portcullis"
#define CTL_SIGN_OUT_PATH "/oauth2/sign_out"
#define CTL_AUTHD_SECRET "portcullis-authd-config"
/* authd's host entries are split over Secrets CTL_AUTHD_SECRET-<xx> (xx: 00..ff). */
#define CTL_SHARDS_DEFAULT 16
#define CTL_SHARDS_MAX 256
/* Bytes of one shard's hosts.yaml: Kubernetes refuses Secrets over 1 MiB of data. */
#define CTL_SHARD_MAX_BYTES (1024 * 1024 - 4096)
#define CTL_LABEL_AUTHD_CONFIG "portcullis.io/authd-config"
#define CTL_ANNOT_GENERATION "portcullis.io/generation"
/* Each authd replica's Lease: what it enforces (docs/design.md, "authd config from the API"). */
#define CTL_LABEL_AUTHD_REPLICA "portcullis.io/authd-replica"
#define CTL_ANNOT_LOADED "portcullis.io/loaded"
#define CTL_ANNOT_REJECTED "portcullis.io/rejected"
#define CTL_LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define CTL_LABEL_OWNER_NS "portcullis.io/owner-namespace"
#define CTL_LABEL_OWNER_NAME "portcullis.io/owner-name"
#define CTL_ANNOT_OWNER "portcullis.io/owner"
#define CTL_MAX_ERRORS 16

/* ---------------------------------------------------------------------------------------- */
/* ctl_spec.c - a ProtectedHost spec: defaults, validation, names                           */
/* ---------------------------------------------------------------------------------------- */

/* Validation messages "field: message" (new strings, owned by the struct). */
struct ctl_errors {
    size_t n;
    char *msg[CTL_MAX_ERRORS];
    size_t dropped; /* messages past CTL_MAX_ERRORS */
};
void ctl_errors_add(struct ctl_errors *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ctl_errors_release(struct ctl_errors *e);
/* New "a; b; c" (sep between messages); "" when there are none. */
char *ctl_errors_join(const struct ctl_errors *e, const char *sep);

/*
 * Checks a ProtectedHost's spec (what the CRD checks and what it cannot: duplicate hosts,
 * issuer scheme, unknown fields, durations) and returns a new canonical spec with every default
 * written out. Returns 0 with *out set, or PC_EINVAL with *out NULL and errs filled.
 */
int ctl_spec_normalize(const json_t *spec, bool allow_insecure_issuers, json_t **out,
                       struct ctl_errors *errs);
/* Whether s is a lowercase DNS name, with a leading "*." when wildcard is true. */
bool ctl_valid_dns_name(const char *s, bool wildcard);
/* Whether s is an HTTP header field name (RFC 9110 token). */
bool ctl_valid_header_name(const char *s);
/* Parses a duration "12h", "1h30m", "90s" into seconds. Returns 0 or PC_EPARSE. */
int ctl_parse_duration(const char *s, long long *secs);
/*
 * A new Kubernetes name of at most max characters (lowercase alphanumerics and '-'): prefix
 * and the parts joined with '-'. When that is too long or had to be changed ('.' and '_'
 * become '-'), it is cut and ends with '-' and 10 hex digits of SHA-256 over the parts
 * joined with '/', so distinct inputs keep distinct names.
 */
char *ctl_k8s_name(const char *prefix, const char *ns, const char *name, size_t max);
/* The AuthorizationPolicy name of ProtectedHost ns/name (new, <= 63 chars). */
char *ctl_policy_name(const char *ns, const char *name);

/* ---------------------------------------------------------------------------------------- */
/* ctl_render.c - desired objects of one ProtectedHost, and the shared ones                  */
/* ---------------------------------------------------------------------------------------- */

/* Where authd runs. Strings borrowed. */
struct ctl_authd_opts {
    const char *namespace; /* default portcullis-system */
    const char *service;   /* default portcullis-authd */
    int port;              /* default 4180 */
    bool allow_insecure_issuers;
    unsigned shards; /* authd config shards, 0: CTL_SHARDS_DEFAULT */
};

/* The number of shards o asks for (CTL_SHARDS_DEFAULT when unset). */
unsigned ctl_shard_count(const struct ctl_authd_opts *o);
/* The shard of host id among n: stable (a hash of the id), so a change rewrites one shard. */
unsigned ctl_shard_of(const char *id, unsigned n);
/* New name of shard s: "portcullis-authd-config-0a". */
char *ctl_shard_name(unsigned s);
/*
 * New hosts.yaml text of one shard around entries (len bytes of ctl_render_authd_entry_text
 * results, in id order): "hosts:\n<entries>", or "hosts: []\n" when there are none.
 */
char *ctl_shard_text(const char *entries, size_t len);
/* Entries grouped into shard texts: init, add each (in id order), then finish. */
struct ctl_shards {
    struct pc_buf *b;
    unsigned n;
};
void ctl_shards_init(struct ctl_shards *sh, unsigned n);
/* Appends entry (ctl_render_authd_entry_text of host id) to id's shard. */
void ctl_shards_add(struct ctl_shards *sh, const char *id, const char *entry);
/* New array of sh->n texts (free with ctl_shard_texts_free); sh is released. */
char **ctl_shards_finish(struct ctl_shards *sh);

/* New AuthorizationPolicy (docs/design.md §4.1) for ProtectedHost ns/name with canonical spec. */
json_t *ctl_render_policy(const char *ns, const char *name, const json_t *spec);
/*
 * New hosts[] entry of authd's config, compact: fields at their default value are left out
 * (authd applies the same defaults); id, hosts, oidc.issuerURL and oidc.clientID are always
 * there. client_secret: the resolved value, or NULL: a clientSecretRef becomes the
 * placeholder "<secret:ns/name/key>" (for render without secrets).
 */
json_t *ctl_render_authd_host(const char *ns, const char *name, const json_t *spec,
                              const char *client_secret);
/* The same entry with every field written out, defaults included (what the compact one means). */
json_t *ctl_render_authd_host_full(const char *ns, const char *name, const json_t *spec,
                                   const char *client_secret);
/* New complete authd config object around hosts (an array it takes a reference to). */
json_t *ctl_render_authd_config(const json_t *hosts, const struct ctl_authd_opts *o);
/* Adds spec's upstreamHeaders names (lowercased) to the set `names` (an object used as a set). */
void ctl_headers_collect(json_t *names, const json_t *spec);
/* New extensionProviders entry (docs/design.md §4.2); names: the set from ctl_headers_collect. */
json_t *ctl_render_provider(const json_t *names, const struct ctl_authd_opts *o);
/*
 * New YAML text of one authd hosts[] entry as an item of the hosts list ("- id: ...\n  ...").
 * It holds the client secret: free it with pc_free_secret.
 */
char *ctl_render_authd_entry_text(const json_t *entry);
/*
 * New authd config text around entries (len bytes of ctl_render_authd_entry_text results, in
 * id order): the same bytes as pc_json_to_yaml of ctl_render_authd_config over those entries.
 */
char *ctl_render_authd_text(const char *entries, size_t len, const struct ctl_authd_opts *o);
/*
 * New one-line form of a provider entry for an Event ("add to meshConfig.extensionProviders:
 * {...}", JSON flow style, which YAML reads too), cut to at most max bytes with a note when
 * longer.
 */
char *ctl_provider_snippet(const json_t *provider, size_t max);
/*
 * Checks a provider entry strictly before it is written: only fields portcullis knows, each of
 * the right type and form. Returns 0 or PC_EINVAL with the reason in diag.
 */
int ctl_provider_check(const json_t *provider, struct pc_diag *diag);

/* ---------------------------------------------------------------------------------------- */
/* ctl_state.c - the desired state of every ProtectedHost together                          */
/* ---------------------------------------------------------------------------------------- */

enum ctl_verdict {
    CTL_ACCEPTED,
    CTL_INVALID,         /* spec fails validation: Accepted=False, reason Invalid */
    CTL_HOST_CONFLICT,   /* an older ProtectedHost keeps a host: Accepted=False, HostConflict */
    CTL_SECRET_MISSING,  /* accepted, but the client Secret (or its key) is absent */
    CTL_COOKIE_CONFLICT, /* an older ProtectedHost's session cookie reaches one of its hosts
                            (or its own reaches one of the older's) with another issuer or
                            client on the same cookie name: Accepted=False, CookieConflict */
};

/* The Accepted=False reason of a refused verdict ("Invalid", ...); NULL for accepted ones. */
const char *ctl_verdict_reason(enum ctl_verdict v);

/* One ProtectedHost as the state sees it. */
struct ctl_item {
    char *ns, *name, *id; /* new; id is "ns/name" */
    char *created;        /* creationTimestamp, "" when absent (sorts first) */
    long long generation;
    json_t *obj;       /* the ProtectedHost, a reference held */
    json_t *spec;      /* new canonical spec, NULL when invalid */
    char *policy_name; /* new */
    enum ctl_verdict verdict;
    char *message;      /* new: why not accepted / not ready, NULL otherwise */
    json_t *policy;     /* new AuthorizationPolicy when the spec is valid and accepted */
    json_t *authd_host; /* new authd entry when accepted and its secret resolved */
};

/*
 * Looks up the client secret of ns/name key. Returns 0 with *value new (cleansed and freed by
 * the state), PC_ENOTFOUND when the Secret or key is absent, or < 0 on other errors.
 * NULL lookup: references render as placeholders (render without --secret-file).
 */
typedef int (*ctl_secret_fn)(void *ud, const char *ns, const char *name, const char *key,
                             char **value);

struct ctl_state_opts {
    struct ctl_authd_opts authd;
    ctl_secret_fn secret;
    void *ud;
};

struct ctl_state {
    struct ctl_item *items; /* sorted by creationTimestamp, then namespace/name */
    size_t n;
    json_t *provider;     /* new extensionProviders entry */
    json_t *authd_config; /* new authd config object */
    char *authd_text;     /* new config.yaml text (deterministic) */
    char **shards;        /* new hosts.yaml text of each shard (ctl_shard_count of o->authd) */
    unsigned nshards;
};

/*
 * Builds the state of the ProtectedHosts objs (a borrowed array of objects; ones being deleted
 * are left out by the caller). Never fails: problems land in each item's verdict/message.
 */
void ctl_state_build(struct ctl_state *st, const json_t *objs, const struct ctl_state_opts *o);
/* What the cookie rule looks at in a canonical spec, as one new string. */
char *ctl_cookie_scope(const json_t *spec);
/*
 * The CookieConflict message of ProtectedHost id (scope from ctl_cookie_scope, hosts each
 * followed by '\n') against the older ones recorded in s, new; NULL after recording id's own.
 */
struct pc_cookie_scopes;
char *ctl_cookie_claim(struct pc_cookie_scopes *s, const char *id, const char *scope,
                       const char *hosts);
void ctl_state_release(struct ctl_state *st);
/* The item of ns/name, borrowed; NULL when absent. */
struct ctl_item *ctl_state_find(const struct ctl_state *st, const char *ns, const char *name);

/* ---------------------------------------------------------------------------------------- */
/* ctl_replicas.c - which authd replicas enforce which shard generation                      */
/* ---------------------------------------------------------------------------------------- */

enum ctl_enforce {
    CTL_ENFORCED,           /* every live replica has loaded the generation (or a newer one) */
    CTL_ENFORCE_PENDING,    /* some live replica has not loaded it yet */
    CTL_ENFORCE_REJECTED,   /* some live replica refused it */
    CTL_ENFORCE_NO_REPLICA, /* no replica reports anything */
};
/*
 * Whether every authd replica alive at now (leases: name -> Lease object, borrowed) enforces
 * shard at generation gen or later; *why (new, NULL when enforced) names the replicas that
 * lag or refused it.
 */
enum ctl_enforce ctl_replicas_enforce(const json_t *leases, time_t now, unsigned shard,
                                      long long gen, char **why);

/* ---------------------------------------------------------------------------------------- */
/* ctl_hosts.c - what `run` keeps per ProtectedHost, rendered once per change                 */
/* ---------------------------------------------------------------------------------------- */

/*
 * One ProtectedHost as `run` remembers it between changes: small rendered results instead of
 * JSON trees, so a thousand of them fit in a few MB. ctl_host_refresh fills the first group
 * from the object; ctl_hosts_settle sets conflict. The run loop owns the second group.
 */
struct ctl_host {
    char *id, *ns, *name; /* "ns/name" and its parts */
    char *created;        /* creationTimestamp, "" when absent (sorts first) */
    long long generation;
    char *policy_name;
    bool valid;           /* spec passed validation */
    char *invalid;        /* why not, else NULL */
    char *hosts;          /* spec.hosts joined with '\n' ("" when invalid or deleting) */
    char *secret_missing; /* why the client secret could not be resolved, else NULL */
    char *entry;          /* authd hosts[] entry text (holds the client secret), else NULL */
    char *headers;        /* upstreamHeaders names lowercased, each followed by '\n' */
    char *cookie;         /* ctl_cookie_scope of the spec ("" when invalid or deleting) */
    char *conflict;       /* HostConflict/CookieConflict message from ctl_hosts_settle */
    bool cookie_conflict; /* conflict is a CookieConflict */
    bool deleting;        /* claims nothing and has no outputs */
    /* the run loop's bookkeeping */
    char *out_sig;         /* signature of the outputs last published for the global writer */
    unsigned long seq;     /* the global outputs' sequence number that includes them */
    bool waiting;          /* the key waits for the global outputs to reach seq */
    unsigned long gen_seq; /* the seq whose entry need_gen holds (0: not written yet) */
    long long need_gen;    /* the shard generation authd must enforce for this entry */
    bool awaiting;         /* the key waits for authd replicas to enforce need_gen */
    char *applied_ref;     /* "gwns/name" of our AuthorizationPolicy in the cluster */
    char *applied_hash;    /* SHA-256 of the policy as applied */
    char *status_sig;      /* the status as last written (see the reconciler) */
    char *snippet_sig;     /* --mesh-config=none: the provider snippet last announced */
};

/* The verdict of h (CTL_ACCEPTED, CTL_INVALID, ...), and why (borrowed). */
enum ctl_verdict ctl_host_verdict(const struct ctl_host *h);
const char *ctl_host_message(const struct ctl_host *h);
/* Whether h contributes to the shared outputs: its entry (when any) and headers. */
bool ctl_host_publishes(const struct ctl_host *h);

/* Every host, sorted by id. */
struct ctl_hosts {
    struct ctl_host **v;
    size_t n, cap;
};
void ctl_hosts_init(struct ctl_hosts *hs);
/* Frees every host (secrets wiped). */
void ctl_hosts_release(struct ctl_hosts *hs);
/* The host of id, borrowed until removed; NULL when absent. */
struct ctl_host *ctl_hosts_find(const struct ctl_hosts *hs, const char *id);
/* The host of id, added (empty, not valid) when absent. Borrowed until removed. */
struct ctl_host *ctl_hosts_get(struct ctl_hosts *hs, const char *id);
void ctl_hosts_remove(struct ctl_hosts *hs, const char *id);
/*
 * Re-renders h from obj, its ProtectedHost (which must have h's id), resolving the client
 * secret through o->secret. *policy (may be NULL) gets the new AuthorizationPolicy when the
 * spec is valid, else NULL. Returns true when what h claims changed (creation time, hosts,
 * validity): the caller then settles the conflicts again.
 */
bool ctl_host_refresh(struct ctl_host *h, const json_t *obj, const struct ctl_state_opts *o,
                      json_t **policy);
/* Marks h as being deleted: no claims, no outputs. Returns true when it claimed something. */
bool ctl_host_retire(struct ctl_host *h);
/*
 * Settles host conflicts as ctl_state_build does (the oldest keeps a host or policy name) and
 * calls changed(ud, h) for each host whose conflict message changed.
 */
void ctl_hosts_settle(struct ctl_hosts *hs, void (*changed)(void *ud, struct ctl_host *h),
                      void *ud);
/* New signature of h's current outputs (entry and headers when it publishes). */
char *ctl_host_out_sig(const struct ctl_host *h);
/* New authd config text of every publishing host (free it with pc_free_secret). */
char *ctl_hosts_authd_text(const struct ctl_hosts *hs, const struct ctl_authd_opts *o);
/*
 * New array of the n shards' hosts.yaml texts (ctl_shard_text) of every publishing host, each
 * in the shard ctl_shard_of gives its id. Free with ctl_shard_texts_free (texts hold secrets).
 */
char **ctl_hosts_shard_texts(const struct ctl_hosts *hs, unsigned n);
void ctl_shard_texts_free(char **texts, unsigned n);
/* New extensionProviders entry over every publishing host's headers. */
json_t *ctl_hosts_provider(const struct ctl_hosts *hs, const struct ctl_authd_opts *o);

/* ---------------------------------------------------------------------------------------- */
/* ctl_mesh.c - merging the provider into Istio's mesh config                               */
/* ---------------------------------------------------------------------------------------- */

/*
 * Merges provider (an extensionProviders entry named "portcullis") into the mesh config YAML
 * text `mesh` (NULL or empty: none yet). The entry with the same name is replaced in place;
 * otherwise it is appended; extensionProviders is appended when absent. Every other field,
 * provider and their order are kept (comments are not). Returns 0 with *out new, or PC_EPARSE
 * / PC_EINVAL with the reason in diag (mesh that is not a map, extensionProviders that is not
 * a list, a provider failing ctl_provider_check).
 */
int ctl_mesh_merge(const char *mesh, const json_t *provider, char **out, struct pc_diag *diag);
/* New YAML text of a JSON value, keys in the object's own order (for the mesh fragment). */
char *ctl_yaml_ordered(const json_t *j);

/* ---------------------------------------------------------------------------------------- */
/* ctl_queue.c - a coalescing work queue with per-key capped exponential backoff             */
/* ---------------------------------------------------------------------------------------- */

/*
 * Keys are strings. A key is at most once in the queue; a key added while it is being worked
 * on comes back once the worker calls ctl_queue_done. Thread-safe.
 */
struct ctl_queue;
struct ctl_queue *ctl_queue_new(void);
/* Frees the queue; no thread may use it any more. NULL is a no-op. */
void ctl_queue_free(struct ctl_queue *q);
/* Adds key now. */
void ctl_queue_add(struct ctl_queue *q, const char *key);
/* Adds key after delay_ms (an earlier pending time wins). */
void ctl_queue_add_after(struct ctl_queue *q, const char *key, long delay_ms);
/*
 * Adds key after its backoff (k8s_backoff_ms of its failure count, which grows by one).
 * Returns the delay chosen.
 */
long ctl_queue_retry(struct ctl_queue *q, const char *key);
/* Resets key's failure count (after a success). */
void ctl_queue_forget(struct ctl_queue *q, const char *key);
/*
 * Waits for a due key; returns it (new, the caller frees it) or NULL once shut down. The key
 * is "processing" until ctl_queue_done.
 */
char *ctl_queue_get(struct ctl_queue *q);
void ctl_queue_done(struct ctl_queue *q, const char *key);
/* Keys waiting (due or not). */
size_t ctl_queue_len(struct ctl_queue *q);
/* Makes ctl_queue_get return NULL in every thread, now and from now on. */
void ctl_queue_shutdown(struct ctl_queue *q);

/* ---------------------------------------------------------------------------------------- */
/* ctl_metrics.c - counters for /metrics and the small admin HTTP listener                   */
/* ---------------------------------------------------------------------------------------- */

#define CTL_APPLY_BUCKETS 10

enum ctl_result { CTL_RESULT_SUCCESS, CTL_RESULT_ERROR, CTL_RESULT_RETRY, CTL_RESULT_N };

struct ctl_metrics {
    pthread_mutex_t mu;
    unsigned long reconciles[CTL_RESULT_N];
    unsigned long watch_relists;
    unsigned long applies;
    double apply_seconds_sum;
    unsigned long apply_buckets[CTL_APPLY_BUCKETS]; /* cumulative counts per le bound */
    unsigned long status_writes, authd_writes, mesh_writes, policy_deletes;
};

void ctl_metrics_init(struct ctl_metrics *m);
void ctl_metrics_release(struct ctl_metrics *m);
void ctl_metrics_reconcile(struct ctl_metrics *m, enum ctl_result r);
/* One write to the apiserver that took secs. */
void ctl_metrics_apply(struct ctl_metrics *m, double secs);
/* Adds 1 to the counter at *field (one of the unsigned long fields) under the lock. */
void ctl_metrics_inc(struct ctl_metrics *m, unsigned long *field);
/* New Prometheus text exposition; gauges given by the caller. */
char *ctl_metrics_text(struct ctl_metrics *m, size_t queue_depth, bool leader, bool synced);

/*
 * Answers one admin request: path ("/metrics", "/healthz", ...) in, *status and a new body
 * out (content type text/plain).
 */
typedef char *(*ctl_http_fn)(void *ud, const char *path, int *status);
struct ctl_http;
/*
 * Listens on addr ("[host]:port", ":9091", "127.0.0.1:0") on its own thread. Returns NULL with
 * diag set when the address cannot be bound. *port_out (may be NULL) gets the bound port.
 */
struct ctl_http *ctl_http_start(const char *addr, ctl_http_fn fn, void *ud, int *port_out,
                                struct pc_diag *diag);
void ctl_http_stop(struct ctl_http *h);

/* ---------------------------------------------------------------------------------------- */
/* ctl_reconcile.c - the controller: caches fed by watches, a key worker per ProtectedHost   */
/* ---------------------------------------------------------------------------------------- */

enum ctl_mesh_mode { CTL_MESH_ISTIO, CTL_MESH_SHARED, CTL_MESH_NONE };

struct ctl_run_opts {
    const char *kubeconfig; /* NULL: $KUBECONFIG, in-cluster, ~/.kube/config */
    const char *namespaces; /* comma-separated; NULL or "": all */
    struct ctl_authd_opts authd;
    enum ctl_mesh_mode mesh_mode;
    const char *mesh_namespace; /* default istio-system */
    const char *mesh_configmap; /* istio: default "istio"; shared: default "portcullis-mesh" */
    bool leader_elect;
    const char *lease_name;      /* default portcullis-controller */
    const char *lease_namespace; /* default: the authd namespace */
    const char *metrics_addr;    /* default :9091; "" disables */
    long resync_secs;            /* full re-apply period, default 600 */
    bool wait_for_authd;         /* policies and Ready wait until every authd replica enforces
                                    the host's entry (default true) */
};

/*
 * Two kinds of threads write: the key workers (queue q: "ph:<ns>/<name>" and "resync") apply
 * each ProtectedHost's policy, finalizer and status as soon as its object changes; the global
 * writer (queue gq: only "global") writes the outputs every host shares, authd's config Secret
 * and the mesh provider. A change marks the shared outputs dirty by bumping seq and queueing
 * "global"; the queue runs one pass at a time and, when dirtied during a pass, exactly one more
 * with the latest state. Statuses that depend on the shared outputs wait for a pass that
 * included them (written_seq >= the host's seq); the writer queues their keys again.
 */
struct ctl_ctx {
    struct ctl_run_opts o;
    struct k8s_client *kc;
    struct ctl_queue *q;  /* "ph:<ns>/<name>", "resync": the key worker */
    struct ctl_queue *gq; /* "global": the global writer */
    struct ctl_metrics m;
    pthread_mutex_t mu; /* guards the caches and counters below; never held before hmu */
    json_t *phs;        /* "ns/name" -> {"text": the ProtectedHost as compact JSON,
                           "look": what a change must touch to matter,
                           "secret": "ns/name" of its client Secret} */
    json_t *secrets;    /* "ns/name" -> the Secret's data object */
    json_t *replicas;   /* Lease name -> each authd replica's Lease (ctl_replicas.c) */
    int nwatches, nsynced;
    atomic_bool leader;
    atomic_bool ready;   /* every watch listed once */
    pthread_mutex_t hmu; /* guards the hosts and the shared outputs' state below */
    struct ctl_hosts hosts;
    unsigned long seq;         /* bumped whenever a host's shared outputs change */
    unsigned long written_seq; /* the last seq whose outputs were all applied */
    char *authd_error;         /* the global writer's last failure common to every shard */
    char **shard_error;        /* per shard (nshards): why its last write failed, else NULL */
    long long *shard_gen;      /* per shard: the generation written last (0: none yet) */
    double *shard_written_at;  /* per shard: when (monotonic seconds) it was last written */
    unsigned nshards;
    char *mesh_error;
    char *snippet; /* --mesh-config=none: the provider in one line, for Events */
    bool recheck;  /* the writer must not trust what it believes was written */
    /* owned by the global writer */
    char **shard_hash; /* per shard: SHA-256 of the text last written (or found) */
    char *mesh_hash;
};

void ctl_ctx_init(struct ctl_ctx *c, const struct ctl_run_opts *o, struct k8s_client *kc);
void ctl_ctx_release(struct ctl_ctx *c);
/* Watch callbacks; ud is the struct ctl_watch_slot given to k8s_watch_start. */
struct ctl_watch_slot {
    struct ctl_ctx *c;
    bool synced_once;
};
void ctl_on_protectedhost(void *ud, enum k8s_event_type type, json_t *obj);
void ctl_on_secret(void *ud, enum k8s_event_type type, json_t *obj);
/* An authd replica's Lease changed: hosts waiting for authd are looked at again. */
void ctl_on_authd_lease(void *ud, enum k8s_event_type type, json_t *obj);
void ctl_on_synced(void *ud);
/*
 * A key worker: takes keys of q until it shuts down. CTL_KEY_WORKERS of them run; the queue
 * never hands the same key to two at once, and what they share is under hmu.
 */
#define CTL_KEY_WORKERS 2
void *ctl_worker(void *arg);
/* Queues "ph:<id>". */
void ctl_queue_host(struct ctl_ctx *c, const char *id);
/*
 * Called by the key worker with hmu held after h's outputs may have changed: when their
 * signature changed, bumps seq, records it in h and returns true (queue "global" once
 * unlocked).
 */
bool ctl_publish(struct ctl_ctx *c, struct ctl_host *h);

/* ---------------------------------------------------------------------------------------- */
/* ctl_status.c - a ProtectedHost's status conditions and Events                            */
/* ---------------------------------------------------------------------------------------- */

/* What a status is made of. All borrowed. */
struct ctl_status_in {
    enum ctl_verdict verdict; /* h's, read under hmu: other workers may settle h meanwhile */
    const char *message;      /* ctl_host_message(h), likewise */
    const json_t *obj;        /* the ProtectedHost: generation, old conditions, Event subject */
    const char *policy_ns;    /* the policy's namespace, NULL when the host has no policy */
    const char *policy_error; /* applying the policy failed, else NULL */
    const char *authd_error;  /* the global writer's failures, else NULL */
    const char *mesh_error;
    enum ctl_enforce enforce; /* whether authd enforces the host's entry everywhere */
    const char *enforce_why;  /* who does not yet, else NULL */
};
/*
 * Applies h's status when it says something else than the status last written (h->status_sig,
 * else the object's), and records an Event when the Ready reason changes. Of h it reads only
 * what never changes (names) and, under hmu, status_sig. Returns 0 (also when the object is
 * gone) or the write's error.
 */
int ctl_status_write(struct ctl_ctx *c, struct ctl_host *h, const struct ctl_status_in *in);
/*
 * --mesh-config=none: records the Normal Event ProviderSnippet with the provider's one-line
 * form on obj, unless h already got this snippet (h->snippet_sig).
 */
void ctl_snippet_event(struct ctl_ctx *c, struct ctl_host *h, const json_t *obj,
                       const char *snippet);

/* ---------------------------------------------------------------------------------------- */
/* ctl_global.c - the global writer: authd's config Secret and the mesh provider            */
/* ---------------------------------------------------------------------------------------- */

/* k8s_apply, its latency recorded in the metrics. */
int ctl_timed_apply(struct ctl_ctx *c, const struct k8s_ref *ref, const json_t *obj,
                    struct pc_diag *d);
/* Takes "global" from gq until it shuts down; one pass writes what changed, then queues the
 * keys of the hosts that waited for it. */
void *ctl_global_worker(void *arg);

/* ---------------------------------------------------------------------------------------- */
/* ctl_cli_render.c, ctl_run.c - the subcommands (argv as main got it, minus the program)    */
/* ---------------------------------------------------------------------------------------- */

/* Returns the process exit code: 0, 1 for invalid input, 2 for usage errors. */
int ctl_cmd_render(int argc, char **argv);
/* Runs the controller until SIGTERM/SIGINT. Returns the exit code. */
int ctl_cmd_run(int argc, char **argv);

/* ---------------------------------------------------------------------------------------- */
/* bootstrap.c - install manifests: deploy/ as embedded at build time, plus a cookie secret */
/* ---------------------------------------------------------------------------------------- */

/* One file of deploy/, embedded by cmake/EmbedFiles.cmake (deploy_manifests.c in the build). */
struct ctl_manifest {
    const char *name; /* "controller.yaml" */
    const char *text; /* the file's bytes, NUL-terminated */
    size_t len;
};
/* Every .yaml file of deploy/, sorted by name; the last entry's name is NULL. */
extern const struct ctl_manifest ctl_manifests[];

/* Strings borrowed; NULL takes the default. */
struct ctl_bootstrap_opts {
    const char *mesh_config;   /* "istio" (default), "shared" or "none" */
    const char *namespace;     /* default "portcullis-system" */
    const char *cookie_secret; /* default: pc_random_token(32), new on every call */
};
/*
 * New multi-document YAML in *out (free it with pc_free_secret: it holds the cookie secret):
 * the resources of deploy/kustomization.yaml in its order, adapted to o (the controller's
 * --mesh-config argument, the namespace; "none" leaves out the istio-system RBAC, "shared" adds
 * the ConfigMap portcullis-mesh), then the Secret portcullis-cookie-secret. Returns 0; PC_EINVAL
 * for a bad mode or namespace; PC_EPARSE / PC_ENOTFOUND when the embedded deploy/ is not as
 * expected. The reason is in diag.
 */
int ctl_bootstrap_render(const struct ctl_bootstrap_opts *o, char **out, struct pc_diag *diag);
/* `bootstrap [--mesh-config=MODE] [--namespace NS]`: prints the manifests. Exit code 0, 1, 2. */
int ctl_cmd_bootstrap(int argc, char **argv);

#endif
