/*
 * ctl_revoke.c - `portcullis-controller revoke`: ends a user's sessions at every authd replica
 * by adding a not-before time for the user to the revocation list (portcullis/revocations.h),
 * in the Secret portcullis-revocations in authd's namespace (through the API, with the
 * caller's own kubeconfig: RBAC decides who may) or in a file (--file, for authd outside
 * Kubernetes with --revocations FILE).
 *
 * Each write also drops the entries older than the retention, the longest session lifetime
 * (authd enforces each host's lifetime on sessions already issued, so no session an entry
 * older than that could refuse is still accepted anyway). Without a retention nothing is
 * dropped, and at PC_REVOKE_MAX_ENTRIES live entries the command refuses rather than evict one.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "controller.h"
#include "portcullis/b64.h"
#include "portcullis/json.h"
#include "portcullis/k8s.h"

#define DEFAULT_LIFETIME (12 * 3600) /* spec.session.lifetime's default */
#define WRITE_TRIES 5

long long
ctl_revoke_longest_lifetime(const json_t *items)
{
    long long longest = 0, secs;
    size_t i;
    json_t *ph;

    json_array_foreach(items, i, ph)
    {
        const char *life = pc_json_str(pc_json_path(ph, "spec.session"), "lifetime");

        if (life == NULL || ctl_parse_duration(life, &secs) != 0 || secs <= 0)
            secs = DEFAULT_LIFETIME;
        if (secs > longest)
            longest = secs;
    }
    return longest;
}

int
ctl_revoke_update(const char *old, const struct ctl_revoke_req *req, char **out,
                  struct ctl_revoke_result *res, struct pc_diag *d)
{
    struct pc_revocations l;
    int rc;

    *out = NULL;
    memset(res, 0, sizeof(*res));
    if ((rc = pc_revocations_parse(old ? old : "", old ? strlen(old) : 0, &l, d)) != 0) {
        pc_diag_fold(d);
        pc_revocations_release(&l);
        return rc;
    }
    if (req->retain > 0)
        res->dropped = pc_revocations_prune(&l, req->now - req->retain);
    rc = pc_revocations_add(&l, req->user, req->now, req->hosts, req->nhosts, d);
    if (rc == PC_ETOOBIG && l.n >= PC_REVOKE_MAX_ENTRIES)
        pc_diag_set(d, 0, 0,
                    "the revocation list holds %d entries younger than the retention: nothing "
                    "is evicted; rotate the cookie secret to end every session",
                    PC_REVOKE_MAX_ENTRIES);
    if (rc == 0) {
        res->entries = l.n;
        *out = pc_revocations_to_yaml(&l);
    }
    pc_revocations_release(&l);
    return rc;
}

/* ---- the command ---------------------------------------------------------------------- */

struct opts {
    const char *kubeconfig, *context, *namespace, *file, *retain;
    struct ctl_revoke_req req;
    const char *hosts[PC_REVOKE_MAX_HOSTS + 1];
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: portcullis-controller revoke --user USER [--host HOST]... [flags]\n"
               "\n"
               "Ends USER's sessions (an email, case-insensitive, or a sub) issued until now, at\n"
               "every authd replica within seconds: the login cookies stop working, the user logs\n"
               "in again. Tokens the IdP already gave to apps are not touched.\n"
               "\n"
               "  --user USER          the email or sub (required)\n"
               "  --host HOST          only on this host (repeatable, up to 16; \"*.x\" allowed);\n"
               "                       default: every host\n"
               "  --namespace NS       authd's namespace (default portcullis-system)\n"
               "  --kubeconfig PATH    default: $KUBECONFIG, in-cluster, ~/.kube/config\n"
               "  --context NAME       a kubeconfig context\n"
               "  --file FILE          write the list in FILE (authd --revocations FILE) instead\n"
               "  --retain DURATION    drop entries older than this (default: the longest\n"
               "                       spec.session.lifetime of the cluster's ProtectedHosts;\n"
               "                       with --file: keep everything)\n");
}

static int
parse_args(int argc, char **argv, struct opts *o)
{
    enum { O_USER = 1, O_HOST, O_NS, O_KUBECONFIG, O_CONTEXT, O_FILE, O_RETAIN };
    static const struct option longopts[] = {
        {"user", required_argument, NULL, O_USER},
        {"host", required_argument, NULL, O_HOST},
        {"namespace", required_argument, NULL, O_NS},
        {"kubeconfig", required_argument, NULL, O_KUBECONFIG},
        {"context", required_argument, NULL, O_CONTEXT},
        {"file", required_argument, NULL, O_FILE},
        {"retain", required_argument, NULL, O_RETAIN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    o->namespace = "portcullis-system";
    o->req.hosts = o->hosts;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_USER:
            o->req.user = optarg;
            break;
        case O_HOST:
            if (o->req.nhosts == PC_REVOKE_MAX_HOSTS) {
                fprintf(stderr, "revoke: at most %d --host flags\n", PC_REVOKE_MAX_HOSTS);
                return 2;
            }
            o->hosts[o->req.nhosts++] = optarg;
            break;
        case O_NS:
            o->namespace = optarg;
            break;
        case O_KUBECONFIG:
            o->kubeconfig = optarg;
            break;
        case O_CONTEXT:
            o->context = optarg;
            break;
        case O_FILE:
            o->file = optarg;
            break;
        case O_RETAIN:
            o->retain = optarg;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o->req.user == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (o->retain && (ctl_parse_duration(o->retain, &o->req.retain) != 0 || o->req.retain <= 0)) {
        fprintf(stderr, "revoke: --retain \"%s\" is not a duration like 12h\n", o->retain);
        return 2;
    }
    return 0;
}

static void
report(const struct opts *o, const struct ctl_revoke_result *res, const char *where)
{
    char when[24];

    pc_revocations_time(o->req.now, when);
    printf("revoked \"%s\": sessions issued until %s end", o->req.user, when);
    if (o->req.nhosts == 0)
        printf(" on every host");
    for (size_t i = 0; i < o->req.nhosts; i++)
        printf("%s%s", i ? ", " : " on ", o->hosts[i]);
    printf(" (%s: %zu entries, %zu expired dropped)\n", where, res->entries, res->dropped);
}

/* --file: read, update, write atomically next to it (mode kept, 0640 for a new file). */
static int
revoke_file(struct opts *o)
{
    struct ctl_revoke_result res;
    struct pc_diag d = {.file = o->file};
    char *old = NULL, *text = NULL, *tmp = pc_xasprintf("%s.tmp.%d", o->file, (int)getpid());
    struct stat st;
    size_t len;
    int rc = k8s_read_file(o->file, &old, &len), fd = -1;

    if (rc == -ENOENT)
        rc = 0;
    else if (rc != 0)
        pc_diag_set(&d, 0, 0, "%s", pc_strerror(rc));
    if (rc == 0)
        rc = ctl_revoke_update(old, &o->req, &text, &res, &d);
    if (rc == 0) {
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                  stat(o->file, &st) == 0 ? st.st_mode & 0777 : 0640);
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fsync(fd) != 0 ||
            rename(tmp, o->file) != 0) {
            pc_diag_set(&d, 0, 0, "cannot write it: %s", strerror(errno));
            unlink(tmp);
            rc = -EIO;
        }
    }
    if (fd >= 0)
        close(fd);
    if (rc == 0)
        report(o, &res, o->file);
    else
        fprintf(stderr, "revoke: %s: %s\n", o->file, d.msg);
    free(old);
    free(text);
    free(tmp);
    return rc == 0 ? 0 : 1;
}

/* The retention from the cluster: the longest lifetime of every ProtectedHost. */
static int
cluster_retention(struct k8s_client *kc, struct opts *o, struct pc_diag *d)
{
    struct k8s_ref ref = {.api_version = "portcullis.io/v1alpha1", .plural = "protectedhosts"};
    struct k8s_list l = {0};
    int rc = k8s_list(kc, &ref, &l, d);

    if (rc == 0)
        o->req.retain = ctl_revoke_longest_lifetime(l.items);
    k8s_list_release(&l);
    return rc;
}

/* The Secret with text as its list: new (create) or old with the data replaced (update). */
static json_t *
secret_with(json_t *old, const char *ns, const char *text)
{
    char *b64 = pc_b64_encode(text, strlen(text));
    json_t *s =
        old ? json_incref(old)
            : json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s}", "apiVersion", "v1", "kind",
                        "Secret", "metadata", "name", PC_REVOKE_SECRET, "namespace", ns, "labels",
                        "app.kubernetes.io/managed-by", "portcullis", "type", "Opaque");

    if (json_object_get(s, "data") == NULL)
        json_object_set_new(s, "data", json_object());
    json_object_set_new(json_object_get(s, "data"), PC_REVOKE_KEY, json_string(b64));
    free(b64);
    return s;
}

/* One read-modify-write of the Secret; K8S_ECONFLICT when someone wrote in between. */
static int
write_once(struct k8s_client *kc, struct opts *o, struct ctl_revoke_result *res, struct pc_diag *d)
{
    struct k8s_ref ref = {.api_version = "v1",
                          .plural = "secrets",
                          .namespace = o->namespace,
                          .name = PC_REVOKE_SECRET};
    json_t *old = NULL, *obj = NULL;
    unsigned char *text = NULL;
    char *next = NULL;
    size_t len;
    int rc = k8s_get(kc, &ref, &old, d);
    const char *b64 = pc_json_str(json_object_get(old, "data"), PC_REVOKE_KEY);

    if (rc == K8S_ENOTFOUND)
        rc = 0;
    if (rc == 0 && b64 && pc_b64_decode(b64, strlen(b64), &text, &len) != 0) {
        pc_diag_set(d, 0, 0, "%s is not base64", PC_REVOKE_KEY);
        rc = PC_EPARSE;
    }
    if (rc == 0 && text && memchr(text, '\0', len)) {
        pc_diag_set(d, 0, 0, "%s holds a NUL byte", PC_REVOKE_KEY);
        rc = PC_EPARSE;
    }
    if (rc == 0)
        rc = ctl_revoke_update((const char *)text, &o->req, &next, res, d);
    if (rc == 0) {
        obj = secret_with(old, o->namespace, next);
        rc = old ? k8s_update(kc, &ref, obj, d) : k8s_create(kc, &ref, obj, d);
    }
    json_decref(old);
    json_decref(obj);
    free(text);
    free(next);
    return rc;
}

static int
revoke_api(struct opts *o)
{
    struct ctl_revoke_result res;
    struct k8s_config cfg;
    struct k8s_client *kc;
    struct pc_diag d = {0};
    char msg[700];
    int rc, tries = 0;

    k8s_config_init(&cfg);
    if ((rc = k8s_config_load(&cfg, o->kubeconfig, o->context, &d)) != 0) {
        pc_diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "revoke: %s\n", msg);
        k8s_config_release(&cfg);
        return 1;
    }
    kc = k8s_client_new(&cfg, "portcullis-controller");
    k8s_config_release(&cfg);
    if (o->req.retain == 0 && (rc = cluster_retention(kc, o, &d)) != 0) {
        fprintf(stderr,
                "revoke: cannot list ProtectedHosts to learn the longest session lifetime "
                "(%s); pass --retain\n",
                d.msg);
        k8s_client_free(kc);
        return 1;
    }
    do
        rc = write_once(kc, o, &res, &d);
    while (rc == K8S_ECONFLICT && ++tries < WRITE_TRIES);
    k8s_client_free(kc);
    if (rc != 0) {
        fprintf(stderr, "revoke: secret %s/%s: %s\n", o->namespace, PC_REVOKE_SECRET, d.msg);
        return 1;
    }
    snprintf(msg, sizeof(msg), "secret %s/%s", o->namespace, PC_REVOKE_SECRET);
    report(o, &res, msg);
    return 0;
}

int
ctl_cmd_revoke(int argc, char **argv)
{
    struct opts o = {0};
    int rc = parse_args(argc, argv, &o);

    if (rc != 0)
        return rc == 1 ? 0 : rc;
    o.req.now = (int64_t)time(NULL);
    return o.file ? revoke_file(&o) : revoke_api(&o);
}
