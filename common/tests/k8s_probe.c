/*
 * k8s_probe.c - drives the Kubernetes client from the command line for the end-to-end tests
 * (e2e/tests/test_k8s_client.py). A test tool, not part of the product.
 *
 *   k8s_probe [--kubeconfig PATH] watch API_VERSION PLURAL [NAMESPACE]
 *       prints {"type":"ADDED","name":...,"namespace":...,"rv":...,"data":...} lines and
 *       {"type":"SYNCED"} after every (re)list, until SIGTERM. K8S_PROBE_RV=N starts watching
 *       from version N without a first list; K8S_PROBE_LOW_SPEED=S sets the idle timeout,
 *       K8S_PROBE_TIMEOUT=S the server-side stream lifetime, K8S_PROBE_METADATA=1 watches
 *       metadata only (PartialObjectMetadata; "kind" is printed then).
 *   k8s_probe [--kubeconfig PATH] apply API_VERSION PLURAL FILE.json   (server-side apply)
 *   k8s_probe [--kubeconfig PATH] get|delete API_VERSION PLURAL NAMESPACE NAME
 *   k8s_probe [--kubeconfig PATH] event API_VERSION PLURAL NAMESPACE NAME TYPE REASON MESSAGE
 *   k8s_probe [--kubeconfig PATH] lease NAMESPACE NAME IDENTITY
 *       prints {"type":"LEADING"} / {"type":"STOPPED"}; SIGTERM releases the lease and exits.
 *
 * Request commands print {"rc":N,"error":"..."} and exit 0 on success, 1 on failure.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "portcullis/json.h"

#include "portcullis/k8s.h"

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void
print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(j);
}

static void
on_event(void *ud, enum k8s_event_type type, json_t *obj)
{
    static const char *const names[] = {"ADDED", "MODIFIED", "DELETED"};
    const json_t *md = json_object_get(obj, "metadata");

    (void)ud;
    print_json(json_pack("{s:s, s:s?, s:s?, s:s?, s:O?, s:s?}", "type", names[type], "name",
                         pc_json_str(md, "name"), "namespace", pc_json_str(md, "namespace"), "rv",
                         pc_json_str(md, "resourceVersion"), "data", json_object_get(obj, "data"),
                         "kind", pc_json_str(obj, "kind")));
}

static void
on_synced(void *ud)
{
    (void)ud;
    print_json(json_pack("{s:s}", "type", "SYNCED"));
}

static void
on_lead(void *ud)
{
    (void)ud;
    print_json(json_pack("{s:s}", "type", "LEADING"));
}

static void
on_unlead(void *ud)
{
    (void)ud;
    print_json(json_pack("{s:s}", "type", "STOPPED"));
}

static void
wait_for_signal(void)
{
    while (!stopping)
        usleep(50 * 1000);
}

static int
report(int rc, const struct pc_diag *d)
{
    print_json(json_pack("{s:i, s:s}", "rc", rc, "error", rc ? d->msg : ""));
    return rc ? 1 : 0;
}

static int
cmd_request(struct k8s_client *kc, const char *cmd, char **argv, int argc)
{
    struct k8s_ref ref = {.api_version = argv[0], .plural = argv[1]};
    struct pc_diag d = {0};
    json_t *obj = NULL;
    int rc;

    if (strcmp(cmd, "apply") == 0) {
        if (!(obj = json_load_file(argv[2], 0, NULL)))
            return 2;
        rc = k8s_apply(kc, &ref, obj, &d);
        json_decref(obj);
        return report(rc, &d);
    }
    ref.namespace = argv[2];
    ref.name = argv[3];
    if (strcmp(cmd, "delete") == 0)
        return report(k8s_delete(kc, &ref, &d), &d);
    if ((rc = k8s_get(kc, &ref, &obj, &d)) == 0 && strcmp(cmd, "get") == 0)
        print_json(json_incref(obj));
    if (rc == 0 && strcmp(cmd, "event") == 0 && argc >= 7)
        rc = k8s_event(kc,
                       &(struct k8s_event){
                           .involved = obj, .type = argv[4], .reason = argv[5], .message = argv[6]},
                       &d);
    json_decref(obj);
    return report(rc, &d);
}

static int
run(struct k8s_client *kc, char **argv, int argc)
{
    const char *cmd = argv[0];

    if (strcmp(cmd, "watch") == 0 && argc >= 3) {
        struct k8s_watch *w = k8s_watch_start(
            kc,
            &(struct k8s_watch_opts){
                .ref = {.api_version = argv[1],
                        .plural = argv[2],
                        .namespace = argc > 3 ? argv[3] : NULL,
                        .metadata_only = getenv("K8S_PROBE_METADATA") != NULL},
                .on_event = on_event,
                .on_synced = on_synced,
                .low_speed_secs =
                    getenv("K8S_PROBE_LOW_SPEED") ? atol(getenv("K8S_PROBE_LOW_SPEED")) : 0,
                .timeout_secs = getenv("K8S_PROBE_TIMEOUT") ? atoi(getenv("K8S_PROBE_TIMEOUT")) : 0,
                .resource_version = getenv("K8S_PROBE_RV")});
        wait_for_signal();
        k8s_watch_stop(w);
        return 0;
    }
    if (strcmp(cmd, "lease") == 0 && argc >= 4) {
        struct k8s_elector *e =
            k8s_elector_start(kc, &(struct k8s_lease_opts){.namespace = argv[1],
                                                           .name = argv[2],
                                                           .identity = argv[3],
                                                           .on_started_leading = on_lead,
                                                           .on_stopped_leading = on_unlead});
        wait_for_signal();
        k8s_elector_stop(e);
        return 0;
    }
    if ((strcmp(cmd, "apply") == 0 && argc >= 4) || argc >= 5)
        return cmd_request(kc, cmd, argv + 1, argc - 1);
    fprintf(stderr, "usage: see the comment at the top of k8s_probe.c\n");
    return 2;
}

int
main(int argc, char **argv)
{
    const char *kubeconfig = NULL;
    struct k8s_config cfg;
    struct k8s_client *kc;
    struct pc_diag d = {0};
    char msg[600];
    int rc;

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (argc > 2 && strcmp(argv[1], "--kubeconfig") == 0) {
        kubeconfig = argv[2];
        argv += 2, argc -= 2;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: see the comment at the top of k8s_probe.c\n");
        return 2;
    }
    k8s_config_init(&cfg);
    if (k8s_config_load(&cfg, kubeconfig, NULL, &d) < 0) {
        pc_diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "k8s_probe: %s\n", msg);
        return 2;
    }
    kc = k8s_client_new(&cfg, "portcullis-controller");
    k8s_config_release(&cfg);
    rc = run(kc, argv + 1, argc - 1);
    k8s_client_free(kc);
    return rc;
}
