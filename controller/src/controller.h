/*
 * controller.h - the private header of portcullis-controller: every cross-file function of the
 * daemon, grouped under one banner per source file.
 *
 * The Kubernetes API client it runs on lives in common (portcullis/k8s.h, common/src/k8s_*.c),
 * shared with authd; everything here is the ProtectedHost side.
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

#include "portcullis/k8s.h"
#include "portcullis/revocations.h"

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
/* The ServiceEntries of --egress-service-entries: the label the controller lists them by. */
#define CTL_LABEL_EGRESS "portcullis.io/egress"
#define CTL_ANNOT_ISSUER_HOST "portcullis.io/issuer-host"
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
/* Reports every key of obj outside known (a NULL-terminated list) as "path.key: unknown field". */
void ctl_check_keys(struct ctl_errors *e, const json_t *obj, const char *path,
                    const char *const *known);
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
/* Where the policy of ProtectedHost namespace ns with canonical spec goes (borrowed): its
 * own namespace in sidecar mode, else spec.gateway.namespace. */
const char *ctl_policy_namespace(const char *ns, const json_t *spec);

/* ---------------------------------------------------------------------------------------- */
/* ctl_render.c - desired objects of one ProtectedHost, and the shared ones                  */
/* ---------------------------------------------------------------------------------------- */

/* Where authd runs. Strings borrowed. */
struct ctl_authd_opts {
    const char *namespace; /* default portcullis-system */
    const char *service;   /* default portcullis-authd */
    int port;              /* default 4180 */
    bool allow_insecure_issuers;
    unsigned shards;           /* authd config shards, 0: CTL_SHARDS_DEFAULT */
    bool egress;               /* --egress-service-entries: a ServiceEntry per issuer host */
    bool gateway_strips_ports; /* --gateway-host-normalization=external: the gateways strip
                                  Host ports themselves; no EnvoyFilter is rendered */
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
 * New EnvoyFilter that goes with policy (from ctl_render_policy) when one of its hosts is a
 * wildcard, else NULL: the same name, namespace and gateway (selector or targetRefs), merging
 * strip_any_host_port and strip_trailing_host_dot into the gateway's HttpConnectionManager, so
 * "a.wild.example.com:443" is matched by "*.wild.example.com" before any filter runs.
 */
json_t *ctl_render_host_filter(const json_t *policy);
/* Parses --gateway-host-normalization: "envoyfilter" or "external" (*external true). */
bool ctl_parse_host_normalization(const char *s, bool *external);
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
/* ctl_workload.c - sidecar mode: spec.workload, its policy, provider and namespace objects  */
/* ---------------------------------------------------------------------------------------- */

/* The mesh provider of authd containers in the app's pods, and the local name it points at. */
#define CTL_LOCAL_PROVIDER "portcullis-local"
#define CTL_LOCAL_SERVICE "portcullis-authd.portcullis.local"
#define CTL_LOCAL_PORT 4180
/* In each namespace with sidecar ProtectedHosts: the ServiceEntry of the local name. */
#define CTL_LOCAL_SERVICE_ENTRY "portcullis-authd-local"
/* ... and the one config shard the sidecars of that namespace watch. */
#define CTL_SIDECAR_SHARD CTL_AUTHD_SECRET "-00"
#define CTL_LABEL_SIDECAR "portcullis.io/sidecar"

/*
 * The canonical spec.workload of spec ({"selector": {"matchLabels": {...}}}), new; problems
 * go to e with their field paths (also a spec.gateway set next to it). NULL when absent.
 */
json_t *ctl_workload_normalize(struct ctl_errors *e, const json_t *spec);
/*
 * What the spec alone cannot tell: a sidecar ProtectedHost in authd's own namespace would
 * write the central shard's name. Returns 0, or PC_EINVAL with the message added to e.
 * spec may be NULL (invalid already).
 */
int ctl_workload_check(const char *ns, const json_t *spec, const struct ctl_authd_opts *a,
                       struct ctl_errors *e);
/* Whether a canonical spec protects a workload (sidecar mode) rather than a gateway. */
bool ctl_spec_is_sidecar(const json_t *spec);
/*
 * Turns policy (from ctl_render_policy of a sidecar spec) into the workload's: the local
 * provider, spec.workload's selector, and no host condition (every request to the pod is
 * checked; authd refuses a Host it does not protect), only the notPaths of paths.skip.
 */
void ctl_workload_policy(json_t *policy, const json_t *spec);
/* New extensionProviders entry CTL_LOCAL_PROVIDER; names as for ctl_render_provider. */
json_t *ctl_render_local_provider(const json_t *names);
/* New ServiceEntry CTL_LOCAL_SERVICE_ENTRY in ns: the local name at 127.0.0.1, exportTo ".". */
json_t *ctl_render_local_service_entry(const char *ns);
/*
 * New Secret CTL_SIDECAR_SHARD in ns with hosts.yaml = value under field ("data": value is
 * base64; "stringData": the text) and generation gen.
 */
json_t *ctl_render_sidecar_shard(const char *ns, const char *field, const char *value,
                                 long long gen);
/*
 * ... and the copy of the central revocation list (PC_REVOKE_SECRET in authd's namespace)
 * under the same name, which the sidecars there watch. Labelled CTL_LABEL_AUTHD_CONFIG=
 * CTL_REVCOPY_LABEL; annotated CTL_ANNOT_COPY_OF with the list it copies.
 */
#define CTL_REVCOPY_LABEL "revocations"
#define CTL_ANNOT_COPY_OF "portcullis.io/copy-of"
/*
 * What every copy must hold, from the central Secret (NULL: absent): *b64 new, its
 * PC_REVOKE_KEY exactly as the Secret holds it ("" when absent or without the key). The
 * version is checked as authd checks one (base64 within PC_REVOKE_MAX_DOC bytes, no NUL, a
 * list pc_revocations_parse accepts), so a version authd refuses is never copied over one it
 * accepts. Returns 0, or PC_ETOOBIG / PC_EPARSE / PC_EINVAL with *b64 NULL and the reason in
 * diag ("line:col: message" folded in).
 */
int ctl_revcopy_source(const json_t *central, char **b64, struct pc_diag *diag);
/*
 * New Secret PC_REVOKE_SECRET in ns holding b64 (from ctl_revcopy_source) under
 * PC_REVOKE_KEY, nothing merged into it, annotated as the copy of authd_ns's list.
 */
json_t *ctl_render_revocations_copy(const char *ns, const char *b64, const char *authd_ns);
/*
 * New array (sorted) of the namespaces of the set `namespaces` whose copy must be written
 * for content hash: those whose entry in written (namespace -> hash last written there)
 * differs, and those in the set dirty (someone else changed or deleted the copy). Never
 * authd_ns: the central list is not a copy.
 */
json_t *ctl_revcopy_due(const json_t *namespaces, const json_t *written, const json_t *dirty,
                        const char *hash, const char *authd_ns);
/*
 * Sidecar entries grouped by namespace: an object namespace -> hosts.yaml text
 * (ctl_shard_text). Add entries in id order; free with ctl_sidecar_texts_free (secrets).
 */
void ctl_sidecar_texts_add(json_t *texts, const char *ns, const char *entry);
void ctl_sidecar_texts_finish(json_t *texts);
void ctl_sidecar_texts_free(json_t *texts);

/* ---------------------------------------------------------------------------------------- */
/* ctl_egress.c - ServiceEntries so authd reaches the issuers (REGISTRY_ONLY meshes)         */
/* ---------------------------------------------------------------------------------------- */

/*
 * Splits an http(s) issuer URL: *host new (lowercased, userinfo dropped), *port (443 / 80
 * unless given), *tls for https. Returns 0, or PC_EINVAL (*host NULL) when the URL has no
 * DNS host a ServiceEntry could name (an IPv6 literal, a bad port, another scheme).
 */
int ctl_issuer_endpoint(const char *issuer_url, char **host, int *port, bool *tls);
/*
 * Adds issuer_url's endpoint to set, an object {host: {"%05d" port: "TLS"|"HTTP"}}; URLs
 * ctl_issuer_endpoint refuses are left out. A port named by https and http issuers is TLS.
 */
void ctl_egress_add(json_t *set, const char *issuer_url);
/* New ServiceEntry name of an issuer host ("portcullis-egress-<host>-<hash>", <= 63 chars). */
char *ctl_egress_name(const char *host);
/*
 * New array of ServiceEntries (networking.istio.io/v1), one per host of set, sorted by host:
 * MESH_EXTERNAL, DNS resolution, exportTo ["."], in o's authd namespace, labelled
 * CTL_LABEL_EGRESS=issuer. Ports sorted; named "https" (or "http") when alone or the
 * default port, else "https-<number>".
 */
json_t *ctl_render_egress(const json_t *set, const struct ctl_authd_opts *o);
/* New array of the names in existing (an array of strings) that no object of wanted has. */
json_t *ctl_egress_stale(const json_t *existing, const json_t *wanted);

/* ---------------------------------------------------------------------------------------- */
/* ctl_ingress.c - ingress-nginx mode: spec.ingress, and what goes on which Ingress          */
/* ---------------------------------------------------------------------------------------- */

/* The annotations the controller writes, with server-side apply as CTL_INGRESS_MANAGER. */
#define CTL_INGRESS_MANAGER "portcullis-ingress"
#define CTL_ANNOT_AUTH_URL "nginx.ingress.kubernetes.io/auth-url"
#define CTL_ANNOT_AUTH_SIGNIN "nginx.ingress.kubernetes.io/auth-signin"
#define CTL_ANNOT_AUTH_HEADERS "nginx.ingress.kubernetes.io/auth-response-headers"
/* The ProtectedHosts ("ns/name,...") whose annotations an Ingress carries: portcullis's mark. */
#define CTL_ANNOT_PROTECTED_BY "portcullis.io/protected-by"
/* An Ingress with more distinct paths is never taken for the sign-in route. */
#define CTL_INGRESS_MAX_PATHS 32

/* spec.ingress of a raw spec: NULL when absent, else new {className[, scheme]} (errors in e). */
json_t *ctl_ingress_normalize(struct ctl_errors *e, const json_t *spec);
/* What ingress-nginx refuses in a canonical spec with spec.ingress (header names). */
void ctl_ingress_check(struct ctl_errors *e, const json_t *spec);
/* spec.ingress.className of a canonical spec (borrowed), NULL when it is not in ingress mode. */
const char *ctl_ingress_class(const json_t *spec);
/*
 * New view of ProtectedHost id (canonical spec) as the Ingress pass sees it, NULL when not in
 * ingress mode: {id, class, hosts, headers (upstreamHeaders names, Authorization with
 * passIDToken), scheme ("" unless spec.ingress.scheme), callback}.
 */
json_t *ctl_ingress_view(const char *id, const json_t *spec);
/* The same as new compact JSON text (keys sorted), NULL when not in ingress mode. */
char *ctl_ingress_view_text(const char *id, const json_t *spec);
/* New auth-url of authd o: "http://<svc>.<ns>.svc.cluster.local:<port>/oauth2/auth". */
char *ctl_ingress_auth_url(const struct ctl_authd_opts *o);
/* New object of the three annotations of view; scheme applies unless the view has its own. */
json_t *ctl_ingress_annotations(const json_t *view, const struct ctl_authd_opts *o,
                                const char *scheme);
/*
 * New summary of an Ingress object, all the decision reads: {ns, name, class
 * (spec.ingressClassName, else the kubernetes.io/ingress.class annotation, else ""), hosts
 * (distinct rule hosts), paths (distinct, null past CTL_INGRESS_MAX_PATHS), tls (spec.tls is not
 * empty), ann {url, signin, headers, by: the four annotations present}}.
 */
json_t *ctl_ingress_summary(const json_t *ingress);
/* Whether host patterns a and b (lowercase, optional leading "*.") name a common host. */
bool ctl_ingress_hosts_overlap(const char *a, const char *b);

/* Which views name an Ingress: init over an array of views (borrowed until release). */
struct ctl_ingress_index {
    const json_t *views;
    json_t *hosts; /* host pattern -> [index into views] */
};
void ctl_ingress_index_init(struct ctl_ingress_index *x, const json_t *views);
void ctl_ingress_index_release(struct ctl_ingress_index *x);
/* New array of the views (in views order) with a host that overlaps a host of summary. */
json_t *ctl_ingress_index_match(const struct ctl_ingress_index *x, const json_t *summary);

enum ctl_ingress_outcome {
    CTL_ING_ANNOTATED, /* carries (or is to carry) the view's annotations */
    CTL_ING_SIGNIN,    /* the sign-in route (every path authd's own): never annotated */
    CTL_ING_CONFLICT,  /* left alone: another class, another auth-url, disagreeing views */
    CTL_ING_FAILED,    /* the write failed (set by the caller) */
};
struct ctl_ingress_plan {
    json_t *want;     /* new: the annotations wanted, with the mark; NULL: none of ours */
    bool write;       /* what it carries differs: apply want (NULL: an empty apply) */
    json_t *outcomes; /* new: view id -> [outcome, message] */
};
/*
 * What goes on the Ingress of summary, given the views that name it (ctl_ingress_index_match).
 * Views of another class are left out (conflict); an Ingress whose every path is /oauth2... or
 * a callback path is the sign-in route; one that carries an auth-url without the mark is left
 * alone (conflict). Pure.
 */
void ctl_ingress_decide(const json_t *summary, const json_t *views, const struct ctl_authd_opts *o,
                        struct ctl_ingress_plan *p);
void ctl_ingress_plan_release(struct ctl_ingress_plan *p);
/*
 * A ProtectedHost's Ready, from its outcomes (Ingress id -> [outcome, message]): *reason NULL
 * when fine ("IngressConflict", "IngressNotApplied", "NoIngress" otherwise, static) and
 * *message new (bounded to about 1 KiB).
 */
void ctl_ingress_report(const json_t *outcomes, const char *cls, const char **reason,
                        char **message);
/* ctl_policy.c - the admin policy: who may protect which host, where, with which issuer     */
/* ---------------------------------------------------------------------------------------- */

/* The one ProtectedHostPolicy (cluster-scoped) the controller and admission read. */
#define CTL_POLICY_NAME "portcullis"
#define CTL_DEFAULT_GATEWAY_NAMESPACES "istio-system"

/*
 * Checks a ProtectedHostPolicy object (name, spec.rules) and returns a new canonical spec with
 * every field written out. Returns 0 with *out set, or PC_EINVAL with *out NULL and errs filled.
 */
int ctl_policy_normalize(const json_t *obj, json_t **out, struct ctl_errors *errs);

/* New labels object of namespace ns, or NULL when they are not known. */
typedef json_t *(*ctl_labels_fn)(void *ud, const char *ns);

/* What a ProtectedHost is admitted against besides itself. Borrowed. */
struct ctl_tenancy {
    const char *gateway_namespaces; /* comma-separated; NULL: CTL_DEFAULT_GATEWAY_NAMESPACES */
    const json_t *policy;           /* canonical policy (ctl_policy_normalize); NULL: none */
    const char *policy_error;       /* the installed policy is invalid: nothing is allowed */
    ctl_labels_fn labels;           /* NULL: labels unknown (selectors match nothing) */
    void *ud;
};

/*
 * Whether namespace ns may have canonical spec: CTL_ACCEPTED, or CTL_HOST_NOT_ALLOWED,
 * CTL_GATEWAY_NOT_ALLOWED, CTL_ISSUER_NOT_ALLOWED with *message new ("field: why; who can
 * change it"). Accepted under a policy, *prefixes (may be NULL) gets a new array of the issuer
 * prefixes of the rules that select ns (authd's oidc.allowedURLPrefixes); NULL otherwise.
 * An issuer is within a prefix as pc_url_within says (portcullis/http.h).
 * t NULL: no policy, the default gateway namespaces.
 */
enum ctl_verdict ctl_policy_admit(const struct ctl_tenancy *t, const char *ns, const json_t *spec,
                                  char **message, json_t **prefixes);
/*
 * Records the prefixes ctl_policy_admit gave (taken; NULL: none) in canonical spec as
 * oidc.allowedURLPrefixes, which ctl_render_authd_host writes into authd's entry.
 */
void ctl_spec_set_prefixes(json_t *spec, json_t *prefixes);
/* Whether a ProtectedHost host ("*." allowed) is within a policy host pattern. */
bool ctl_host_within(const char *host, const char *pattern);

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
    /* Outside the admin policy (ctl_policy.c): Accepted=False, nothing rendered. */
    CTL_HOST_NOT_ALLOWED,    /* HostNotAllowed */
    CTL_GATEWAY_NOT_ALLOWED, /* GatewayNotAllowed */
    CTL_ISSUER_NOT_ALLOWED,  /* IssuerNotAllowed */
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
    const struct ctl_tenancy *tenancy; /* NULL: no policy, the default gateway namespaces */
};

struct ctl_state {
    struct ctl_item *items; /* sorted by creationTimestamp, then namespace/name */
    size_t n;
    json_t *provider;     /* new extensionProviders entry */
    json_t *authd_config; /* new authd config object */
    char *authd_text;     /* new config.yaml text (deterministic) */
    char **shards;        /* new hosts.yaml text of each shard (ctl_shard_count of o->authd) */
    unsigned nshards;
    json_t *egress;         /* new array of ServiceEntries (empty unless o->authd.egress) */
    json_t *sidecar;        /* new: namespace -> its sidecar shard's hosts.yaml (secret) */
    json_t *local_provider; /* new CTL_LOCAL_PROVIDER entry when a sidecar host is accepted */
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
/*
 * For each of n shards, the oldest generation every replica alive at now enforces (0 when
 * one lacks it; LLONG_MAX when no replica is alive, or one refused a version: nothing waits
 * for it then), into min[n].
 */
void ctl_replicas_min_loaded(const json_t *leases, time_t now, unsigned n, long long *min);

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
    char *policy_ns;             /* where its policy goes (ctl_policy_namespace), else NULL */
    bool valid;                  /* spec passed validation */
    char *invalid;               /* why not, else NULL */
    char *refused;               /* valid, but outside the admin policy: why, else NULL */
    enum ctl_verdict refused_as; /* CTL_HOST_NOT_ALLOWED, ... when refused */
    char *hosts;          /* spec.hosts joined with '\n' ("" when invalid, refused or deleting) */
    char *secret_missing; /* why the client secret could not be resolved, else NULL */
    char *entry;          /* authd hosts[] entry text (holds the client secret), else NULL */
    char *headers;        /* upstreamHeaders names lowercased, each followed by '\n' */
    char *cookie;         /* ctl_cookie_scope of the spec ("" when invalid or deleting) */
    char *issuer;         /* spec.oidc.issuerURL ("" when invalid or deleting) */
    char *conflict;       /* HostConflict/CookieConflict message from ctl_hosts_settle */
    bool cookie_conflict; /* conflict is a CookieConflict */
    bool settled;         /* accounted for in the hosts' kept claims */
    bool sidecar;         /* spec.workload: its entry goes to its namespace's shard */
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
    bool applied_filter;   /* its EnvoyFilter (ctl_render_host_filter) was applied with it */
    char *status_sig;      /* the status as last written (see the reconciler) */
    char *snippet_sig;     /* --mesh-config=none: the provider snippet last announced */
    char *ingress;         /* spec.ingress: ctl_ingress_view as compact JSON, else NULL */
};

/* The verdict of h (CTL_ACCEPTED, CTL_INVALID, ...), and why (borrowed). */
enum ctl_verdict ctl_host_verdict(const struct ctl_host *h);
const char *ctl_host_message(const struct ctl_host *h);
/* Whether h contributes to the shared outputs: its entry (when any) and headers. */
bool ctl_host_publishes(const struct ctl_host *h);
/* Whether one of h's hosts is a wildcard ("*.example.com"). */
bool ctl_host_has_wildcard(const struct ctl_host *h);

/* Every host, sorted by id. */
struct ctl_hosts {
    struct ctl_host **v;
    size_t n, cap;
    /* What the settled hosts claim (hosts, policy names, cookie scopes), kept so that a host
     * newer than all of them is settled alone; NULL when a change made them stale. */
    json_t *claims;
    struct pc_cookie_scopes *cookies;
    const struct ctl_host *newest; /* the newest settled host */
    unsigned long full_settles;    /* how often every host was settled again */
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
/*
 * The same after h's claims changed (ctl_host_refresh returned true): when h was not settled
 * before and is newer than every settled host (a ProtectedHost just created, the common case
 * of a bulk apply), it cannot take anything from the others and is settled alone; otherwise
 * everything is settled again.
 */
void ctl_hosts_settle_host(struct ctl_hosts *hs, struct ctl_host *h,
                           void (*changed)(void *ud, struct ctl_host *h), void *ud);
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
/* New array of ServiceEntries (ctl_render_egress) for every publishing host's issuer; empty
 * unless o->egress. */
json_t *ctl_hosts_egress(const struct ctl_hosts *hs, const struct ctl_authd_opts *o);
/* New ctl_sidecar_texts of every publishing sidecar host (ctl_workload.c). */
json_t *ctl_hosts_sidecar_texts(const struct ctl_hosts *hs);
/* New CTL_LOCAL_PROVIDER entry over every publishing host's headers; NULL when no sidecar
 * host publishes. */
json_t *ctl_hosts_local_provider(const struct ctl_hosts *hs);

/* ---------------------------------------------------------------------------------------- */
/* ctl_mesh.c - merging the provider into Istio's mesh config                               */
/* ---------------------------------------------------------------------------------------- */

/*
 * Merges provider (an extensionProviders entry named "portcullis" or "portcullis-local") into
 * the mesh config YAML text `mesh` (NULL or empty: none yet). The entry with the same name is
 * replaced in place; otherwise it is appended; extensionProviders is appended when absent. Every
 * other field, provider and their order are kept (comments are not). Returns 0 with *out new, or
 * PC_EPARSE / PC_EINVAL with the reason in diag (mesh that is not a map, extensionProviders that is
 * not a list, a provider failing ctl_provider_check).
 */
int ctl_mesh_merge(const char *mesh, const json_t *provider, char **out, struct pc_diag *diag);
/*
 * Both of portcullis's providers at once: provider and local (CTL_LOCAL_PROVIDER) merged as
 * ctl_mesh_merge does, or, when local is NULL, every entry named CTL_LOCAL_PROVIDER removed
 * (no sidecar host is left). Returns what ctl_mesh_merge returns.
 */
int ctl_mesh_merge_pair(const char *mesh, const json_t *provider, const json_t *local, char **out,
                        struct pc_diag *diag);
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
/* Adds key ahead of every key added with a due time (a key whose wait is over). */
void ctl_queue_add_first(struct ctl_queue *q, const char *key);
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
/*
 * ctl_pack.c: the ProtectedHost cache's texts, raw deflate against a preset dictionary of a
 * typical ProtectedHost, base64url. ctl_pack_text: new; ctl_unpack_text: *text new, at most
 * max bytes, or PC_EINVAL (corrupt, truncated, larger than max).
 */
/* The largest object text the cache holds: a watch line's bound (k8s_watch.c). */
#define CTL_MAX_OBJECT_TEXT (4u << 20)
char *ctl_pack_text(const char *text, size_t len);
int ctl_unpack_text(const char *packed, size_t max, char **text);

/* Frees *field and sets it to value (new, or NULL). */
void ctl_replace(char **field, char *value);
/* Seconds on the monotonic clock: what the controller's waits and spacings are measured in. */
double ctl_mono_secs(void);

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
    unsigned long status_writes, authd_writes, mesh_writes, policy_deletes, events;
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
    bool ingress;                /* --ingress-nginx: watch and annotate Ingresses (default true) */
    /* Comma-separated: where AuthorizationPolicies may go (its RBAC covers only these),
     * default CTL_DEFAULT_GATEWAY_NAMESPACES. */
    const char *gateway_namespaces;
};

/*
 * What the global writer keeps of the revocation list's copies in the sidecar namespaces
 * (ctl_revmirror.c).
 */
struct ctl_revmirror {
    /* under mu: what the watches saw */
    char *central_rv; /* the central Secret's newest resourceVersion, "" while it is absent */
    json_t *copy_rv;  /* namespace -> resourceVersion of its copy as the writer left it */
    json_t *dirty;    /* set of namespaces whose copy someone else changed or deleted */
    /* owned by the global writer */
    char *fetched_rv; /* the central version last read; NULL: read it before writing */
    char *b64;        /* what the copies hold: the newest version authd accepts; NULL: none */
    char *hash;       /* SHA-256 of b64 */
    char *error;      /* why the copies do not hold the newest version, else NULL */
    json_t *written;  /* namespace -> hash of what its copy holds, as written or verified */
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
    struct ctl_queue *q;   /* "ph:<ns>/<name>", "resync": the key worker */
    struct ctl_queue *gq;  /* "global": the global writer */
    struct ctl_queue *eq;  /* "<kind>:<ns>/<name>": the Event poster (ctl_events.c) */
    pthread_mutex_t ev_mu; /* guards ev_pending */
    json_t *ev_pending;    /* eq's key -> the Event that waits for it */
    struct ctl_metrics m;
    pthread_mutex_t mu;     /* guards the caches and counters below; never held before hmu */
    json_t *phs;            /* "ns/name" -> {"text": the ProtectedHost as compact JSON,
                               "look": what a change must touch to matter,
                               "secret": "ns/name" of its client Secret} */
    json_t *secrets;        /* "ns/name" -> the Secret's data object */
    json_t *replicas;       /* Lease name -> each authd replica's Lease (ctl_replicas.c) */
    json_t *ns_labels;      /* namespace name -> its labels (for the policy's selectors) */
    json_t *sidecar_leases; /* namespace -> {Lease name -> Lease} of authd sidecars */
    int nwatches, nsynced;
    atomic_bool leader;
    atomic_bool ready;   /* every watch listed once */
    atomic_bool primed;  /* the first resync since winning the lease has rendered every host */
    pthread_mutex_t hmu; /* guards the hosts and the shared outputs' state below */
    struct ctl_hosts hosts;
    /* The canonical ProtectedHostPolicy (NULL: none), or why the installed one is invalid
     * (then nothing is allowed); whether a rule selects namespaces by label. */
    json_t *policy;
    char *policy_error;
    atomic_bool policy_reads_labels;
    unsigned long seq;         /* bumped whenever a host's shared outputs change */
    unsigned long written_seq; /* the last seq whose outputs were all applied */
    char *authd_error;         /* the global writer's last failure common to every shard */
    char **shard_error;        /* per shard (nshards): why its last write failed, else NULL */
    long long *shard_gen;      /* per shard: the generation written last (0: none yet) */
    double *shard_written_at;  /* per shard: when (monotonic seconds) it was last written */
    unsigned nshards;
    char *mesh_error;
    char *egress_error; /* why the issuers' ServiceEntries could not be written, else NULL */
    char *snippet;      /* --mesh-config=none: the provider in one line, for Events */
    bool recheck;       /* the writer must not trust what it believes was written */
    /* owned by the global writer */
    char **shard_hash; /* per shard: SHA-256 of the text last written (or found) */
    char *mesh_hash;
    char *egress_hash; /* the ServiceEntries last written (all applied, stale ones deleted) */
    struct ctl_ingress_state *ing; /* ingress-nginx mode (ctl_ingress_run.c) */
    json_t *sidecar_state; /* under hmu: namespace -> {"gen", "at", "error"} (ctl_sidecar.c) */
    json_t *sidecar_hash;  /* owned by the global writer: namespace -> hash last written */
    struct ctl_revmirror rm;
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
/* The ProtectedHostPolicy, or a namespace's labels, changed: every host is admitted again. */
void ctl_on_policy(void *ud, enum k8s_event_type type, json_t *obj);
void ctl_on_namespace(void *ud, enum k8s_event_type type, json_t *obj);
void ctl_on_synced(void *ud);
/*
 * A key worker: takes keys of q until it shuts down. CTL_KEY_WORKERS of them run; the queue
 * never hands the same key to two at once, and what they share is under hmu.
 */
#define CTL_KEY_WORKERS 2
void *ctl_worker(void *arg);
/*
 * Deletes the AuthorizationPolicies with our label in namespace ns that no ProtectedHost
 * wants (a sidecar namespace whose last host went while no controller ran). Returns 0 (also
 * when ns may not be listed or has no such resource) or the list's error.
 */
int ctl_delete_orphan_policies(struct ctl_ctx *c, const char *ns);
/* Queues "ph:<id>". */
void ctl_queue_host(struct ctl_ctx *c, const char *id);
/* Queues "ph:<id>" of every id (an array of strings) ahead of the backlog: these only wait to
 * apply their policy and status. */
void ctl_queue_hosts_first(struct ctl_ctx *c, const json_t *ids);
/*
 * Called by the key worker with hmu held after h's outputs may have changed: when their
 * signature changed, bumps seq, records it in h and returns true (queue "global" once
 * unlocked).
 */
bool ctl_publish(struct ctl_ctx *c, struct ctl_host *h);

/* ---------------------------------------------------------------------------------------- */
/* ctl_ingress_run.c - ingress-nginx mode in `run`: the Ingress cache and the pass           */
/* ---------------------------------------------------------------------------------------- */

/* The key of the pass over every Ingress in the queue of the key workers. */
#define CTL_KEY_INGRESS "ingress"

void ctl_ingress_init(struct ctl_ctx *c);
void ctl_ingress_release(struct ctl_ctx *c);
/* Watch callback for networking.k8s.io/v1 Ingresses (ud: struct ctl_watch_slot). */
void ctl_on_ingress(void *ud, enum k8s_event_type type, json_t *obj);
/*
 * After the key worker refreshed (or forgot) ProtectedHost id: when what the pass knows of it
 * changed (its view, whether it publishes), queues a pass and holds its status until a pass
 * that includes the change. Takes hmu.
 */
void ctl_ingress_note(struct ctl_ctx *c, const char *id);
/* Queues a pass (resync). */
void ctl_ingress_resync(struct ctl_ctx *c);
/*
 * One pass: every cached Ingress against every publishing ProtectedHost in ingress mode;
 * writes what differs (server-side apply, CTL_INGRESS_MANAGER, never forced), then queues the
 * keys whose report changed. Returns 0 or the first write error (the key is retried).
 */
int ctl_ingress_pass(struct ctl_ctx *c);
/*
 * What h's Ready says of its Ingresses (hmu held): false while a pass that includes h's last
 * change is pending (its status waits); else *reason (NULL: fine) and *message (new).
 */
bool ctl_ingress_status(struct ctl_ctx *c, const struct ctl_host *h, const char **reason,
                        char **message);

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
    const char *egress_error; /* --egress-service-entries: the last pass could not write them */
    enum ctl_enforce enforce; /* whether authd enforces the host's entry everywhere */
    const char *enforce_why;  /* who does not yet, else NULL */
    /* spec.ingress (ctl_ingress_status): message NULL for gateway hosts; reason NULL if fine */
    const char *ingress_reason;
    const char *ingress_message;
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

/*
 * What is in shard Secret ns/name now: *gen its generation annotation (0 when absent or
 * unreadable) and whether its hosts.yaml is text. PC_ENOTFOUND when the Secret does not exist.
 */
int ctl_shard_current(struct ctl_ctx *c, const char *ns, const char *name, const char *text,
                      long long *gen, bool *same);
/* k8s_apply, its latency recorded in the metrics. */
int ctl_timed_apply(struct ctl_ctx *c, const struct k8s_ref *ref, const json_t *obj,
                    struct pc_diag *d);
/* The same; *out (may be NULL) gets the object as applied (k8s_apply_out). */
int ctl_timed_apply_out(struct ctl_ctx *c, const struct k8s_ref *ref, const json_t *obj,
                        json_t **out, struct pc_diag *d);
/* Takes "global" from gq until it shuts down; one pass writes what changed, then queues the
 * keys of the hosts that waited for it. */
void *ctl_global_worker(void *arg);
/* Keys waiting for the key workers above which they count as having a backlog. */
#define CTL_BUSY_KEYS 16

/* ---------------------------------------------------------------------------------------- */
/* ctl_events.c - Events posted by their own thread, behind the reconciles                    */
/* ---------------------------------------------------------------------------------------- */

/*
 * Queues an Event about involved (its identity is copied): kind names the slot ("ready",
 * "snippet"); a newer Event of the same kind about the same object replaces one not yet posted.
 */
void ctl_event_post(struct ctl_ctx *c, const char *kind, const json_t *involved, const char *type,
                    const char *reason, const char *message);
/* Posts the queued Events until eq shuts down. */
void *ctl_event_worker(void *arg);

/* ---------------------------------------------------------------------------------------- */
/* ctl_sidecar.c - sidecar mode at run time: namespace shards, ServiceEntries, Leases       */
/* ---------------------------------------------------------------------------------------- */

/*
 * The global writer's sidecar part of one pass: for each namespace of texts (from
 * ctl_hosts_sidecar_texts) its ServiceEntry and shard Secret, written when changed; the
 * namespaces written before that have no sidecar host any more lose both (with recheck, also
 * those found by label). *result gets namespace -> {"gen": I, "error": s?}. Returns 0 or -1
 * when something should be retried.
 */
int ctl_sidecar_pass(struct ctl_ctx *c, const json_t *texts, bool recheck, json_t **result);
/*
 * Records a pass's result in c->sidecar_state; returns the set (new object) of the namespaces
 * whose error changed, whose hosts' statuses must be written again. Called with hmu held.
 */
json_t *ctl_sidecar_record(struct ctl_ctx *c, const json_t *result);
/*
 * The shard that holds h's entry: *gen its generation as written last (0: not yet) and
 * *error why its last write failed (borrowed until hmu is released), for a central host
 * or a sidecar one alike. Called with hmu held.
 */
void ctl_host_shard(struct ctl_ctx *c, const struct ctl_host *h, long long *gen,
                    const char **error);
/*
 * host_enforce for a sidecar host: every authd sidecar with a live Lease in h's namespace
 * enforces h->need_gen of its shard. Called with hmu held (takes mu).
 */
enum ctl_enforce ctl_sidecar_enforce(struct ctl_ctx *c, const struct ctl_host *h, char **why,
                                     double *waited);
/* A Lease of an authd sidecar changed (watch callback, ud a struct ctl_watch_slot). */
void ctl_on_sidecar_lease(void *ud, enum k8s_event_type type, json_t *obj);
/*
 * The revocation error of h's namespace (a sidecar host): why its copy of the revocation list
 * is not the central one, else NULL. Borrowed until hmu is released; called with it held.
 */
const char *ctl_sidecar_rev_error(struct ctl_ctx *c, const struct ctl_host *h);
/* New message of a write refused in namespace ns, with the fix (the component's Role). */
char *ctl_sidecar_write_error(const char *what, const char *ns, const char *name, const char *msg);

/* ---------------------------------------------------------------------------------------- */
/* ctl_revmirror.c - sidecar mode: the central revocation list copied to every sidecar       */
/* namespace                                                                                */
/* ---------------------------------------------------------------------------------------- */

/* The key of a copy pass in the global writer's queue: the central list or a copy changed. */
#define CTL_KEY_REVOCATIONS "revocations"

void ctl_revmirror_init(struct ctl_revmirror *m);
void ctl_revmirror_release(struct ctl_revmirror *m);
/* Watch callback of the central list (PC_REVOKE_SECRET in authd's namespace; ud a slot). */
void ctl_on_revocations(void *ud, enum k8s_event_type type, json_t *obj);
/* A Secret named PC_REVOKE_SECRET outside authd's namespace changed (from ctl_on_secret). */
void ctl_revmirror_note_copy(struct ctl_ctx *c, enum k8s_event_type type, const json_t *obj);
/* The global writer trusts nothing it wrote or read before (a recheck): all is read again. */
void ctl_revmirror_forget(struct ctl_ctx *c);
/*
 * The global writer: the copy of each namespace of the set nss brought to the central list
 * where it does not hold it (the central list read first when the watch saw it change).
 * errors gets namespace -> why its copy does not hold the central list (the refused write and
 * the fix, or why the list cannot be copied). Returns 0 or -1 (retry).
 */
int ctl_revmirror_write(struct ctl_ctx *c, const json_t *nss, json_t *errors);
/* The copy of ns was deleted: nothing of it is remembered. */
void ctl_revmirror_dropped(struct ctl_ctx *c, const char *ns);
/*
 * The key CTL_KEY_REVOCATIONS: the copy of every namespace the global writer writes for
 * (c->sidecar_hash) brought to the central list; the namespaces whose revocation error
 * changed have their hosts' statuses written again. Returns 0 or -1 (retried).
 */
int ctl_revmirror_pass(struct ctl_ctx *c);

/* ---------------------------------------------------------------------------------------- */
/* ctl_cli_render.c, ctl_run.c - the subcommands (argv as main got it, minus the program)    */
/* ---------------------------------------------------------------------------------------- */

/* Returns the process exit code: 0, 1 for invalid input, 2 for usage errors. */
int ctl_cmd_render(int argc, char **argv);
/* Runs the controller until SIGTERM/SIGINT. Returns the exit code. */
int ctl_cmd_run(int argc, char **argv);

/* ---------------------------------------------------------------------------------------- */
/* ctl_revoke.c - `revoke`: a user's not-before time in the revocation list authd enforces   */
/* ---------------------------------------------------------------------------------------- */

/* One revocation to record. Strings borrowed. */
struct ctl_revoke_req {
    const char *user;         /* email or sub */
    const char *const *hosts; /* nhosts 0: every host */
    size_t nhosts;
    int64_t now;      /* the not-before time written (Unix seconds) */
    long long retain; /* seconds: entries older than now - retain are dropped; 0 keeps all */
};
struct ctl_revoke_result {
    size_t entries; /* in the list written */
    size_t dropped; /* older than the retention */
};
/*
 * The list after req: old (a revocation list document, NULL or "" for none) pruned by the
 * retention, with req's entry added. Returns 0 with *out new, or the parse error of old
 * ("line:col: message" folded into diag->msg), PC_EINVAL for a bad user or host, PC_ETOOBIG
 * when PC_REVOKE_MAX_ENTRIES entries are younger than the retention (none is evicted).
 */
int ctl_revoke_update(const char *old, const struct ctl_revoke_req *req, char **out,
                      struct ctl_revoke_result *res, struct pc_diag *diag);
/* The longest spec.session.lifetime (default 12h each) of a ProtectedHost list; 0 when empty. */
long long ctl_revoke_longest_lifetime(const json_t *items);
/* `revoke --user USER [--host HOST]... [--file FILE]`. Exit code 0, 1, 2. */
int ctl_cmd_revoke(int argc, char **argv);

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
    /* authd's Redis (session.store: redis): NULL url leaves authd without one. */
    const char *redis_url;      /* redis://host[:port][/db] or rediss://... */
    const char *redis_secret;   /* "NAME/KEY": the password's Secret in the namespace, or NULL */
    const char *redis_username; /* ACL user, or NULL */
    const char *gateway_namespaces; /* comma-separated, default "istio-system" */
};
/*
 * New multi-document YAML in *out (free it with pc_free_secret: it holds the cookie secret):
 * the resources of deploy/kustomization.yaml in its order, adapted to o (the controller's
 * --mesh-config argument, the namespace; "none" leaves out the istio-system RBAC, "shared" adds
 * the ConfigMap portcullis-mesh; the gateway Role once per gateway namespace, which the
 * controller's --gateway-namespaces and the admission policy name), then the Secret
 * portcullis-cookie-secret. Returns 0; PC_EINVAL for a bad mode or namespace (list); PC_EPARSE /
 * PC_ENOTFOUND when the embedded deploy/ is not as expected. The reason is in diag.
 */
int ctl_bootstrap_render(const struct ctl_bootstrap_opts *o, char **out, struct pc_diag *diag);
/*
 * `bootstrap [--mesh-config=MODE] [--namespace NS] [--redis-url URL [--redis-secret NAME/KEY]
 * [--redis-username USER]]`: prints the manifests. Exit code 0, 1, 2.
 */
int ctl_cmd_bootstrap(int argc, char **argv);

#endif
