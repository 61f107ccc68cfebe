/*
 * ctl_run.c - `portcullis-controller run`: options, the watches, leader election, the admin
 * listener and an orderly shutdown on SIGTERM/SIGINT.
 *
 * Every replica watches (so a standby has warm caches and answers /readyz); only the leader's
 * worker writes. A replica that loses the lease (an apiserver restart longer than the renew
 * deadline does that to every replica at once) stops taking work after the key in hand and
 * campaigns again; winning queues a resync. Exiting instead, as client-go does, would turn a
 * control-plane blip into a crash loop of every replica.
 */
#include "controller.h"

#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "portcullis/http.h"
#include "portcullis/log.h"

#define MAX_WATCHES 64

struct runner {
    struct ctl_ctx c;
    struct k8s_watch *watches[MAX_WATCHES];
    struct ctl_watch_slot slots[MAX_WATCHES];
    size_t nwatches;
    struct k8s_elector *elector;
    atomic_bool stopping;
};

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: portcullis-controller run [flags]\n"
        "  --kubeconfig PATH            default: $KUBECONFIG, in-cluster, ~/.kube/config\n"
        "  --namespaces NS,NS           ProtectedHost namespaces to watch (default all)\n"
        "  --gateway-namespaces NS,NS   where AuthorizationPolicies may go (RBAC: only there),\n"
        "                               default istio-system\n"
        "  --authd-namespace NS         default portcullis-system ($PORTCULLIS_AUTHD_NAMESPACE)\n"
        "  --authd-service NAME         default portcullis-authd\n"
        "  --authd-port PORT            default 4180\n"
        "  --authd-config-shards N      Secrets authd's hosts are split over, 1..256 (default 16)\n"
        "  --mesh-config MODE           istio (default) | shared | none\n"
        "  --mesh-configmap NAME        istio: default istio; shared: portcullis-mesh\n"
        "  --mesh-namespace NS          default istio-system\n"
        "  --revision REV               Istio revision: ConfigMap istio-REV\n"
        "  --leader-elect[=true|false]  default true\n"
        "  --wait-for-authd[=true|false] policies and Ready wait for every authd replica to\n"
        "                               enforce the host (its Lease), default true\n"
        "  --lease-name NAME            default portcullis-controller\n"
        "  --lease-namespace NS         default: the authd namespace\n"
        "  --allow-insecure-issuers     accept http:// issuers (tests only)\n"
        "  --egress-service-entries[=true|false]\n"
        "                               keep an Istio ServiceEntry per issuer host in authd's\n"
        "                               namespace (meshes with REGISTRY_ONLY), default false\n"
        "  --gateway-host-normalization envoyfilter|external\n"
        "                               envoyfilter (default): a policy with a wildcard host\n"
        "                               comes with an EnvoyFilter stripping Host ports and\n"
        "                               trailing dots at its gateway; external: the gateways\n"
        "                               already do (wildcards are unchecked with a port else)\n"
        "  --ingress-nginx[=true|false] watch Ingresses and annotate those serving a\n"
        "                               ProtectedHost with spec.ingress, default true\n"
        "  --metrics-addr ADDR          /healthz /readyz /metrics, default :9091\n"
        "  --resync-period SECONDS      full re-apply period, default 600 (0: never)\n"
        "  --log-level LEVEL            debug|info|warn|error\n");
}

/* "ns,ns,...": at least one, each a namespace name. */
static bool
valid_namespace_list(const char *s)
{
    do {
        size_t n = strcspn(s, ",");
        char *ns = pc_xstrndup(s, n);
        bool ok = n > 0 && n <= 63 && !strchr(ns, '.') && ctl_valid_dns_name(ns, false);

        free(ns);
        if (!ok)
            return false;
        s += n;
    } while (*s++ == ',');
    return true;
}

static bool
parse_bool(const char *s, bool *out)
{
    if (!s || strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
        *out = true;
    else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
        *out = false;
    else
        return false;
    return true;
}

enum {
    OPT_KUBECONFIG = 256,
    OPT_NAMESPACES,
    OPT_GATEWAY_NS,
    OPT_AUTHD_NS,
    OPT_AUTHD_SVC,
    OPT_AUTHD_PORT,
    OPT_AUTHD_SHARDS,
    OPT_MESH,
    OPT_MESH_CM,
    OPT_MESH_NS,
    OPT_REVISION,
    OPT_LEADER,
    OPT_WAIT_AUTHD,
    OPT_LEASE,
    OPT_LEASE_NS,
    OPT_INSECURE,
    OPT_EGRESS,
    OPT_HOST_NORM,
    OPT_INGRESS,
    OPT_METRICS,
    OPT_RESYNC,
    OPT_LOG,
};

static const struct option longopts[] = {
    {"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
    {"namespaces", required_argument, NULL, OPT_NAMESPACES},
    {"gateway-namespaces", required_argument, NULL, OPT_GATEWAY_NS},
    {"authd-namespace", required_argument, NULL, OPT_AUTHD_NS},
    {"authd-service", required_argument, NULL, OPT_AUTHD_SVC},
    {"authd-port", required_argument, NULL, OPT_AUTHD_PORT},
    {"authd-config-shards", required_argument, NULL, OPT_AUTHD_SHARDS},
    {"mesh-config", required_argument, NULL, OPT_MESH},
    {"mesh-configmap", required_argument, NULL, OPT_MESH_CM},
    {"mesh-namespace", required_argument, NULL, OPT_MESH_NS},
    {"revision", required_argument, NULL, OPT_REVISION},
    {"leader-elect", optional_argument, NULL, OPT_LEADER},
    {"wait-for-authd", optional_argument, NULL, OPT_WAIT_AUTHD},
    {"lease-name", required_argument, NULL, OPT_LEASE},
    {"lease-namespace", required_argument, NULL, OPT_LEASE_NS},
    {"allow-insecure-issuers", no_argument, NULL, OPT_INSECURE},
    {"egress-service-entries", optional_argument, NULL, OPT_EGRESS},
    {"gateway-host-normalization", required_argument, NULL, OPT_HOST_NORM},
    {"ingress-nginx", optional_argument, NULL, OPT_INGRESS},
    {"metrics-addr", required_argument, NULL, OPT_METRICS},
    {"resync-period", required_argument, NULL, OPT_RESYNC},
    {"log-level", required_argument, NULL, OPT_LOG},
    {"help", no_argument, NULL, 'h'},
    {0}};

/* Applies one option; returns false when its value is not acceptable. */
static bool
set_option(struct ctl_run_opts *o, int ch, const char *arg, char **revision_cm)
{
    enum pc_log_level lvl;

    switch (ch) {
    case OPT_KUBECONFIG:
        o->kubeconfig = arg;
        return true;
    case OPT_NAMESPACES:
        o->namespaces = arg;
        return true;
    case OPT_GATEWAY_NS:
        o->gateway_namespaces = arg;
        return valid_namespace_list(arg);
    case OPT_AUTHD_NS:
        o->authd.namespace = arg;
        return true;
    case OPT_AUTHD_SVC:
        o->authd.service = arg;
        return true;
    case OPT_AUTHD_PORT:
        o->authd.port = atoi(arg);
        return o->authd.port > 0 && o->authd.port < 65536;
    case OPT_AUTHD_SHARDS:
        o->authd.shards = (unsigned)atoi(arg);
        return o->authd.shards >= 1 && o->authd.shards <= CTL_SHARDS_MAX;
    case OPT_MESH_CM:
        o->mesh_configmap = arg;
        return true;
    case OPT_MESH_NS:
        o->mesh_namespace = arg;
        return true;
    case OPT_REVISION:
        free(*revision_cm);
        *revision_cm = pc_xasprintf("istio-%s", arg);
        return true;
    case OPT_LEADER:
        return parse_bool(arg, &o->leader_elect);
    case OPT_WAIT_AUTHD:
        return parse_bool(arg, &o->wait_for_authd);
    case OPT_LEASE:
        o->lease_name = arg;
        return true;
    case OPT_LEASE_NS:
        o->lease_namespace = arg;
        return true;
    case OPT_INSECURE:
        o->authd.allow_insecure_issuers = true;
        return true;
    case OPT_EGRESS:
        return parse_bool(arg, &o->authd.egress);
    case OPT_HOST_NORM:
        return ctl_parse_host_normalization(arg, &o->authd.gateway_strips_ports);
    case OPT_INGRESS:
        return parse_bool(arg, &o->ingress);
    case OPT_METRICS:
        o->metrics_addr = arg;
        return true;
    case OPT_RESYNC:
        o->resync_secs = atol(arg);
        return o->resync_secs >= 0;
    case OPT_LOG:
        return pc_log_parse_level(arg, &lvl) == 0 && (pc_log_set_level(lvl), true);
    case OPT_MESH:
        o->mesh_mode = strcmp(arg, "istio") == 0    ? CTL_MESH_ISTIO
                       : strcmp(arg, "shared") == 0 ? CTL_MESH_SHARED
                       : strcmp(arg, "none") == 0   ? CTL_MESH_NONE
                                                    : (enum ctl_mesh_mode) - 1;
        return (int)o->mesh_mode >= 0;
    default:
        return false;
    }
}

static int
parse_args(struct ctl_run_opts *o, int argc, char **argv, char **revision_cm)
{
    const char *env = getenv("PORTCULLIS_AUTHD_NAMESPACE");
    int ch;

    *o = (struct ctl_run_opts){.authd = {.namespace = env && *env ? env : "portcullis-system",
                                         .service = "portcullis-authd",
                                         .port = 4180},
                               .mesh_mode = CTL_MESH_ISTIO,
                               .mesh_namespace = "istio-system",
                               .gateway_namespaces = CTL_DEFAULT_GATEWAY_NAMESPACES,
                               .leader_elect = true,
                               .wait_for_authd = true,
                               .ingress = true,
                               .lease_name = "portcullis-controller",
                               .metrics_addr = ":9091",
                               .resync_secs = 600};
    optind = 0;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            exit(0);
        }
        if (!set_option(o, ch, optarg, revision_cm)) {
            fprintf(stderr, "run: invalid value for --%s\n",
                    ch >= OPT_KUBECONFIG ? longopts[ch - OPT_KUBECONFIG].name : "?");
            return PC_EINVAL;
        }
    }
    if (optind < argc)
        return PC_EINVAL;
    if (!o->mesh_configmap)
        o->mesh_configmap = *revision_cm                      ? *revision_cm
                            : o->mesh_mode == CTL_MESH_SHARED ? "portcullis-mesh"
                                                              : "istio";
    if (!o->lease_namespace)
        o->lease_namespace = o->authd.namespace;
    return 0;
}

/* ---- watches, leadership, admin ------------------------------------------------------------ */

static void
start_watch(struct runner *r, struct k8s_ref ref, k8s_watch_fn fn)
{
    struct ctl_watch_slot *slot = &r->slots[r->nwatches];
    struct k8s_watch_opts wo = {.ref = ref, .on_event = fn, .on_synced = ctl_on_synced, .ud = slot};

    slot->c = &r->c;
    r->watches[r->nwatches++] = k8s_watch_start(r->c.kc, &wo);
}

/*
 * The ProtectedHosts and the Secrets of a namespace (NULL: all), and its Ingresses unless
 * --ingress-nginx=false. Secrets as metadata only: a cluster holds thousands (Helm releases of
 * up to 1 MB each, tokens) and only the few that a ProtectedHost names matter; their data is
 * fetched when needed (ctl_reconcile.c). authd's config shards are left out: we write them,
 * nobody refers to them.
 */
static void
start_pair(struct runner *r, const char *ns)
{
    start_watch(r,
                (struct k8s_ref){
                    .api_version = CTL_GROUP_VERSION, .plural = "protectedhosts", .namespace = ns},
                ctl_on_protectedhost);
    start_watch(r,
                (struct k8s_ref){.api_version = "v1",
                                 .plural = "secrets",
                                 .namespace = ns,
                                 .label_selector = CTL_LABEL_AUTHD_CONFIG "!=shard",
                                 .field_selector = "metadata.name!=" CTL_AUTHD_SECRET,
                                 .metadata_only = true},
                ctl_on_secret);
    if (r->c.o.ingress)
        start_watch(r,
                    (struct k8s_ref){.api_version = "networking.k8s.io/v1",
                                     .plural = "ingresses",
                                     .namespace = ns},
                    ctl_on_ingress);
}

/*
 * The admin policy (a cluster-scoped singleton; not installed counts as none: a CRD Helm does
 * not upgrade must not stop the controller) and the namespaces' labels its rules select by.
 * Nothing is written before both have listed once.
 */
static void
start_tenancy(struct runner *r)
{
    struct ctl_watch_slot *slot = &r->slots[r->nwatches];
    struct k8s_watch_opts wo = {
        .ref = {.api_version = CTL_GROUP_VERSION,
                .plural = "protectedhostpolicies",
                .field_selector = "metadata.name=" CTL_POLICY_NAME},
        .on_event = ctl_on_policy,
        .on_synced = ctl_on_synced,
        .ud = slot,
        .absent_is_empty = true,
    };

    slot->c = &r->c;
    r->watches[r->nwatches++] = k8s_watch_start(r->c.kc, &wo);
    start_watch(r, (struct k8s_ref){.api_version = "v1", .plural = "namespaces"}, ctl_on_namespace);
}

/* What each authd sidecar enforces: its Lease in the app's namespace (ctl_sidecar.c). */
static void
start_sidecar_leases(struct runner *r, const char *ns)
{
    start_watch(r,
                (struct k8s_ref){.api_version = "coordination.k8s.io/v1",
                                 .plural = "leases",
                                 .namespace = ns,
                                 .label_selector = CTL_LABEL_AUTHD_REPLICA "=true"},
                ctl_on_sidecar_lease);
}

/*
 * The central revocation list in authd's namespace, by name and metadata only: a change is
 * copied to the sidecar namespaces (ctl_revmirror.c).
 */
static void
start_revocations(struct runner *r)
{
    start_watch(r,
                (struct k8s_ref){.api_version = "v1",
                                 .plural = "secrets",
                                 .namespace = r->c.o.authd.namespace,
                                 .field_selector = "metadata.name=" PC_REVOKE_SECRET,
                                 .metadata_only = true},
                ctl_on_revocations);
}

static void
start_watches(struct runner *r)
{
    char *list = pc_xstrdup(r->c.o.namespaces ? r->c.o.namespaces : ""), *save = NULL;
    size_t n = 0, per = r->c.o.ingress ? 3 : 2;

    for (char *ns = strtok_r(list, ",", &save); ns; ns = strtok_r(NULL, ",", &save))
        n++;
    /* per namespace: ProtectedHosts, Secrets (and Ingresses), the sidecars' Leases; authd's
     * Leases, the policy, Namespaces and the revocation list */
    r->c.nwatches =
        (int)((n ? n : 1) * per) + (r->c.o.wait_for_authd ? (n ? (int)n : 1) + 1 : 0) + 3;
    strcpy(list, r->c.o.namespaces ? r->c.o.namespaces : "");
    /* What each authd replica enforces: its Lease in authd's namespace. */
    if (r->c.o.wait_for_authd)
        start_watch(r,
                    (struct k8s_ref){.api_version = "coordination.k8s.io/v1",
                                     .plural = "leases",
                                     .namespace = r->c.o.authd.namespace,
                                     .label_selector = CTL_LABEL_AUTHD_REPLICA "=true"},
                    ctl_on_authd_lease);
    start_tenancy(r);
    start_revocations(r);
    if (n == 0)
        start_pair(r, NULL);
    if (n == 0 && r->c.o.wait_for_authd)
        start_sidecar_leases(r, NULL);
    for (char *ns = strtok_r(list, ",", &save); ns && r->nwatches + per + 1 <= MAX_WATCHES;
         ns = strtok_r(NULL, ",", &save)) {
        start_pair(r, ns);
        if (r->c.o.wait_for_authd)
            start_sidecar_leases(r, ns);
    }
    free(list);
}

static void
on_started_leading(void *ud)
{
    struct runner *r = ud;

    pc_log(PC_LOG_INFO, "leader_elected", NULL);
    atomic_store(&r->c.primed, false);
    atomic_store(&r->c.leader, true);
    ctl_queue_add(r->c.q, "resync");
}

static void
on_stopped_leading(void *ud)
{
    struct runner *r = ud;

    atomic_store(&r->c.leader, false);
    if (!atomic_load(&r->stopping))
        pc_log(PC_LOG_WARN, "leader_lost", "action", "campaigning again", NULL);
}

static char *
admin(void *ud, const char *path, int *status)
{
    struct runner *r = ud;
    bool ready = atomic_load(&r->c.ready);

    *status = 200;
    if (strcmp(path, "/healthz") == 0)
        return pc_xstrdup("ok\n");
    if (strcmp(path, "/readyz") == 0) {
        *status = ready ? 200 : 503;
        return pc_xstrdup(ready ? "ok\n" : "caches not synced\n");
    }
    if (strcmp(path, "/metrics") == 0)
        return ctl_metrics_text(&r->c.m, ctl_queue_len(r->c.q), atomic_load(&r->c.leader), ready);
    *status = 404;
    return pc_xstrdup("not found\n");
}

static struct k8s_client *
connect_client(const struct ctl_run_opts *o)
{
    struct k8s_config cfg;
    struct pc_diag d = {0};
    struct k8s_client *kc;
    char msg[700];

    k8s_config_init(&cfg);
    if (k8s_config_load(&cfg, o->kubeconfig, NULL, &d) < 0) {
        pc_diag_format(&d, msg, sizeof(msg));
        pc_log(PC_LOG_ERROR, "kubeconfig_failed", "error", msg, NULL);
        k8s_config_release(&cfg);
        return NULL;
    }
    kc = k8s_client_new(&cfg, "portcullis-controller");
    k8s_config_release(&cfg);
    return kc;
}

static void
wait_for_signal(void)
{
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigwait(&set, &sig);
}

static void
block_signals(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void
start_leading_or_elect(struct runner *r)
{
    if (!r->c.o.leader_elect) {
        on_started_leading(r);
        return;
    }
    r->elector = k8s_elector_start(
        r->c.kc, &(struct k8s_lease_opts){.namespace = r->c.o.lease_namespace,
                                          .name = r->c.o.lease_name,
                                          .on_started_leading = on_started_leading,
                                          .on_stopped_leading = on_stopped_leading,
                                          .ud = r});
}

/* The key workers, then the global writer, then the Event poster. */
#define CTL_THREADS (CTL_KEY_WORKERS + 2)

static void
start_workers(struct runner *r, pthread_t workers[CTL_THREADS])
{
    for (int i = 0; i < CTL_KEY_WORKERS; i++)
        if (pthread_create(&workers[i], NULL, ctl_worker, &r->c) != 0)
            abort();
    if (pthread_create(&workers[CTL_KEY_WORKERS], NULL, ctl_global_worker, &r->c) != 0 ||
        pthread_create(&workers[CTL_KEY_WORKERS + 1], NULL, ctl_event_worker, &r->c) != 0)
        abort();
}

static void
stop_all(struct runner *r, pthread_t workers[CTL_THREADS], struct ctl_http *http)
{
    atomic_store(&r->stopping, true);
    ctl_queue_shutdown(r->c.q);
    ctl_queue_shutdown(r->c.gq);
    ctl_queue_shutdown(r->c.eq);
    for (int i = 0; i < CTL_THREADS; i++)
        pthread_join(workers[i], NULL);
    k8s_elector_stop(r->elector); /* releases the lease: a standby takes over at once */
    for (size_t i = 0; i < r->nwatches; i++)
        k8s_watch_stop(r->watches[i]);
    ctl_http_stop(http);
}

int
ctl_cmd_run(int argc, char **argv)
{
    static struct runner r; /* big and process-wide; watch threads point into it */
    struct ctl_run_opts o;
    struct ctl_http *http = NULL;
    struct k8s_client *kc;
    char *revision_cm = NULL;
    struct pc_diag d = {0};
    pthread_t workers[CTL_THREADS];
    int rc = 1;

    if (parse_args(&o, argc, argv, &revision_cm) < 0) {
        usage(stderr);
        free(revision_cm);
        return 2;
    }
    block_signals();
    /* Watch threads allocate what the worker frees: per-thread arenas would only fragment. */
    mallopt(M_ARENA_MAX, 2);
    pc_http_global_init();
    if (!(kc = connect_client(&o)))
        goto out;
    ctl_ctx_init(&r.c, &o, kc);
    if (o.metrics_addr[0] && !(http = ctl_http_start(o.metrics_addr, admin, &r, NULL, &d))) {
        pc_log(PC_LOG_ERROR, "metrics_listen_failed", "error", d.msg, NULL);
        goto release;
    }
    pc_log(PC_LOG_INFO, "starting", "version", PORTCULLIS_VERSION, "authd_namespace",
           o.authd.namespace, "mesh_configmap", o.mesh_configmap, "gateway_namespaces",
           o.gateway_namespaces, NULL);
    start_watches(&r);
    start_workers(&r, workers);
    start_leading_or_elect(&r);
    wait_for_signal();
    pc_log(PC_LOG_INFO, "stopping", NULL);
    stop_all(&r, workers, http);
    rc = 0;
release:
    ctl_ctx_release(&r.c);
    k8s_client_free(kc);
out:
    free(revision_cm);
    return rc;
}
