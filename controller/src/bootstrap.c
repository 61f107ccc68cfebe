/*
 * bootstrap.c - `portcullis-controller bootstrap`: the install manifests of deploy/ on stdout,
 * ready for `kubectl apply -f -`, with a freshly generated cookie secret.
 *
 * The files are the ones kustomize reads (embedded at build time by cmake/EmbedFiles.cmake), in
 * the order of deploy/kustomization.yaml. They are printed as text, comments included, with
 * textual adaptations: the controller's --mesh-config and --gateway-namespaces arguments (the
 * gateway Role repeated per namespace, the admission policy's list), the namespace, and for
 * --mesh-config=none the istio-system mesh RBAC left out. Text, not a YAML round trip, so that what
 * kubectl reads is byte for byte what `kubectl kustomize deploy/` would give it.
 */
#include "controller.h"

#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "portcullis/crypto.h"
#include "portcullis/yaml.h"

#define DEFAULT_NS "portcullis-system"
#define KUSTOMIZATION "kustomization.yaml"
#define CONTROLLER_FILE "controller.yaml"
#define AUTHD_FILE "authd.yaml"
#define MESH_RBAC_FILE "controller-mesh-rbac.yaml"
#define GATEWAY_RBAC_FILE "controller-gateway-rbac.yaml"
#define ADMISSION_FILE "admission-policy.yaml"
#define MESH_ARG_PREFIX "--mesh-config="
#define MESH_ARG_DEFAULT MESH_ARG_PREFIX "istio"
#define GATEWAY_NS_DEFAULT "istio-system"
#define GATEWAY_ARG_DEFAULT "--gateway-namespaces=" GATEWAY_NS_DEFAULT
#define GATEWAY_NS_LINE "namespace: " GATEWAY_NS_DEFAULT "\n"
#define ADMISSION_LIST_DEFAULT "\"['" GATEWAY_NS_DEFAULT "']\""
#define SHARED_CONFIGMAP "portcullis-mesh"
#define COOKIE_SECRET_BYTES 32

static const struct ctl_manifest *
find_manifest(const char *name)
{
    for (const struct ctl_manifest *m = ctl_manifests; m->name; m++)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

/* An RFC 1123 label, as Kubernetes wants namespace names. */
static bool
valid_namespace(const char *ns)
{
    size_t n = strlen(ns);

    if (n == 0 || n > 63 || ns[0] == '-' || ns[n - 1] == '-')
        return false;
    return strspn(ns, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static bool
valid_mesh_mode(const char *mode)
{
    return strcmp(mode, "istio") == 0 || strcmp(mode, "shared") == 0 || strcmp(mode, "none") == 0;
}

/* Appends text with every occurrence of from replaced by to; returns how many there were. */
static size_t
append_replaced(struct pc_buf *b, const char *text, const char *from, const char *to)
{
    size_t flen = strlen(from), count = 0;
    const char *p = text, *hit;

    while ((hit = strstr(p, from)) != NULL) {
        pc_buf_append(b, p, (size_t)(hit - p));
        pc_buf_appends(b, to);
        p = hit + flen;
        count++;
    }
    pc_buf_appends(b, p);
    return count;
}

/* Appends text with `from` replaced by `to`, which must occur exactly `want` times. */
static int
replace_exactly(struct pc_buf *b, const char *file, const char *text, const char *from,
                const char *to, size_t want, struct pc_diag *diag)
{
    if (append_replaced(b, text, from, to) == want)
        return 0;
    pc_diag_set(diag, 0, 0, "embedded deploy/%s: expected \"%s\" %zu times", file, from, want);
    return PC_EPARSE;
}

/* deploy/controller.yaml with the controller's --mesh-config and --gateway-namespaces. */
static int
adapt_controller(struct pc_buf *out, const struct ctl_manifest *m, const char *mesh,
                 const char *gws, struct pc_diag *diag)
{
    char *marg = pc_xasprintf(MESH_ARG_PREFIX "%s", mesh);
    char *garg = pc_xasprintf("--gateway-namespaces=%s", gws);
    struct pc_buf tmp;
    int rc;

    pc_buf_init(&tmp, 0);
    rc = replace_exactly(&tmp, m->name, m->text, MESH_ARG_DEFAULT, marg, 1, diag);
    if (rc == 0)
        rc = replace_exactly(out, m->name, pc_buf_str(&tmp), GATEWAY_ARG_DEFAULT, garg, 1, diag);
    pc_buf_release(&tmp);
    free(garg);
    free(marg);
    return rc;
}

/* deploy/controller-gateway-rbac.yaml once per gateway namespace. */
static int
adapt_gateway_rbac(struct pc_buf *out, const struct ctl_manifest *m, const char *gws,
                   struct pc_diag *diag)
{
    char *list = pc_xstrdup(gws), *save = NULL;
    int rc = 0;

    for (char *ns = strtok_r(list, ",", &save); ns && rc == 0; ns = strtok_r(NULL, ",", &save)) {
        char *line = pc_xasprintf("namespace: %s\n", ns);

        if (out->len > 0)
            pc_buf_appends(out, "---\n");
        rc = replace_exactly(out, m->name, m->text, GATEWAY_NS_LINE, line, 2, diag);
        free(line);
    }
    free(list);
    return rc;
}

/* deploy/admission-policy.yaml with the gateway namespaces as a CEL list. */
static int
adapt_admission(struct pc_buf *out, const struct ctl_manifest *m, const char *gws,
                struct pc_diag *diag)
{
    struct pc_buf cel;
    int rc;

    pc_buf_init(&cel, 0);
    pc_buf_appends(&cel, "\"[");
    for (const char *p = gws; *p;) {
        size_t n = strcspn(p, ",");

        pc_buf_appendf(&cel, "%s'%.*s'", p == gws ? "" : ", ", (int)n, p);
        p += n + (p[n] == ',');
    }
    pc_buf_appends(&cel, "]\"");
    /* Both policies name them: the second leaves a namespace outside them to the first. */
    rc = replace_exactly(out, m->name, m->text, ADMISSION_LIST_DEFAULT, pc_buf_str(&cel), 2, diag);
    pc_buf_release(&cel);
    return rc;
}

/*
 * The values --redis-* put into authd.yaml as text: only characters that need no YAML quoting,
 * so no value can add lines or keys of its own.
 */
static bool
valid_redis_opts(const struct ctl_bootstrap_opts *o, struct pc_diag *diag)
{
    const char *u = o->redis_url, *slash = o->redis_secret ? strchr(o->redis_secret, '/') : NULL;
    size_t n = u ? strlen(u) : 0;

    if (!u && (o->redis_secret || o->redis_username)) {
        pc_diag_set(diag, 0, 0, "--redis-secret and --redis-username need --redis-url");
        return false;
    }
    if (u &&
        (n > 512 || (strncmp(u, "redis://", 8) && strncmp(u, "rediss://", 9)) || strchr(u, '@') ||
         strspn(u, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:/.-[]") != n)) {
        pc_diag_set(diag, 0, 0,
                    "invalid --redis-url \"%s\" (redis://host[:port][/db] or rediss://...; "
                    "the password goes in --redis-secret)",
                    u);
        return false;
    }
    if (o->redis_secret) {
        char *name = slash ? pc_xstrndup(o->redis_secret, (size_t)(slash - o->redis_secret)) : NULL;
        size_t nlen = name ? strlen(name) : 0;
        bool ok = nlen > 0 && nlen <= 253 && strchr("-.", name[0]) == NULL &&
                  strchr("-.", name[nlen - 1]) == NULL &&
                  strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-.") == nlen && slash[1] &&
                  strspn(slash + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789-._") == strlen(slash + 1);

        free(name);
        if (!ok) {
            pc_diag_set(diag, 0, 0, "invalid --redis-secret \"%s\" (NAME/KEY of a Secret)",
                        o->redis_secret);
            return false;
        }
    }
    if (o->redis_username &&
        (!*o->redis_username || strlen(o->redis_username) > 128 ||
         strspn(o->redis_username, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-._") != strlen(o->redis_username))) {
        pc_diag_set(diag, 0, 0, "invalid --redis-username \"%s\"", o->redis_username);
        return false;
    }
    return true;
}

/* Inserts add after the one occurrence of anchor in *text (replaced by a new string). */
static int
insert_after(char **text, const char *anchor, const char *add, struct pc_diag *diag)
{
    char *hit = strstr(*text, anchor), *out;

    if (!hit || strstr(hit + 1, anchor)) {
        pc_diag_set(diag, 0, 0, "embedded deploy/" AUTHD_FILE ": expected one \"%.40s\"", anchor);
        return PC_EPARSE;
    }
    hit += strlen(anchor);
    out = pc_xasprintf("%.*s%s%s", (int)(hit - *text), *text, add, hit);
    free(*text);
    *text = out;
    return 0;
}

/* authd.yaml with authd's Redis: the flags, and the password's Secret as a file. */
static int
redis_authd(const struct ctl_bootstrap_opts *o, const char *text, struct pc_buf *out,
            struct pc_diag *diag)
{
    const char *key = o->redis_secret ? strchr(o->redis_secret, '/') + 1 : NULL;
    char *t = pc_xstrdup(text), *args, *mount = NULL, *vol = NULL;
    int rc;

    args = pc_xasprintf("            - --redis-url=%s\n%s%s%s%s", o->redis_url,
                        o->redis_username ? "            - --redis-username=" : "",
                        o->redis_username ? o->redis_username : "", o->redis_username ? "\n" : "",
                        key ? "            - --redis-password-file=/etc/portcullis/redis/password\n"
                            : "");
    if (key) {
        mount = pc_xstrdup("            - name: redis-password\n"
                           "              mountPath: /etc/portcullis/redis\n"
                           "              readOnly: true\n");
        vol = pc_xasprintf("        # authd's Redis password (bootstrap --redis-secret).\n"
                           "        - name: redis-password\n"
                           "          secret:\n"
                           "            secretName: %.*s\n"
                           "            defaultMode: 0440\n"
                           "            items:\n"
                           "              - key: %s\n"
                           "                path: password\n",
                           (int)(key - 1 - o->redis_secret), o->redis_secret, key);
    }
    rc = insert_after(&t, "            - --cookie-secret-file=/etc/portcullis/cookie/secret\n",
                      args, diag);
    if (rc == 0 && key)
        rc = insert_after(&t, "          volumeMounts:\n", mount, diag);
    if (rc == 0 && key)
        rc = insert_after(&t, "      volumes:\n", vol, diag);
    if (rc == 0)
        pc_buf_appends(out, t);
    free(t);
    free(args);
    free(mount);
    free(vol);
    return rc;
}

/* One deploy/ file as a document group: its mesh argument, Redis and namespace adapted. */
static int
append_file(struct pc_buf *b, const struct ctl_manifest *m, const struct ctl_bootstrap_opts *o,
            struct pc_diag *diag)
{
    struct pc_buf tmp;
    int rc = 0;

    pc_buf_init(&tmp, 0);
    if (strcmp(m->name, AUTHD_FILE) == 0 && o->redis_url)
        rc = redis_authd(o, m->text, &tmp, diag);
    else if (strcmp(m->name, CONTROLLER_FILE) == 0)
        rc = adapt_controller(&tmp, m, o->mesh_config, o->gateway_namespaces, diag);
    else if (strcmp(m->name, GATEWAY_RBAC_FILE) == 0)
        rc = adapt_gateway_rbac(&tmp, m, o->gateway_namespaces, diag);
    else if (strcmp(m->name, ADMISSION_FILE) == 0)
        rc = adapt_admission(&tmp, m, o->gateway_namespaces, diag);
    else
        pc_buf_append(&tmp, m->text, m->len);
    if (rc == 0) {
        pc_buf_appends(b, "---\n");
        append_replaced(b, pc_buf_str(&tmp), DEFAULT_NS, o->namespace);
        if (b->len > 0 && b->data[b->len - 1] != '\n')
            pc_buf_appends(b, "\n");
    }
    pc_buf_release(&tmp);
    return rc;
}

/* The resources list of the embedded kustomization.yaml; *root (new) owns it. */
static int
load_resources(struct pc_ynode **root, const struct pc_ynode **resources, struct pc_diag *diag)
{
    const struct ctl_manifest *k = find_manifest(KUSTOMIZATION);
    int rc;

    if (!k) {
        pc_diag_set(diag, 0, 0, "embedded deploy/ has no %s", KUSTOMIZATION);
        return PC_ENOTFOUND;
    }
    diag->file = "deploy/" KUSTOMIZATION;
    if ((rc = pc_yaml_load(k->text, k->len, root, diag)) < 0)
        return rc;
    *resources = pc_ynode_get(*root, "resources");
    if (!*resources || (*resources)->type != PC_YNODE_SEQ) {
        pc_diag_set(diag, 0, 0, "'resources' is not a list");
        return PC_EPARSE;
    }
    diag->file = NULL;
    return 0;
}

static int
append_resources(struct pc_buf *b, const struct ctl_bootstrap_opts *o, struct pc_diag *diag)
{
    struct pc_ynode *root = NULL;
    const struct pc_ynode *res = NULL;
    int rc;

    if ((rc = load_resources(&root, &res, diag)) < 0)
        goto out;
    for (size_t i = 0; i < res->n && rc == 0; i++) {
        const char *name = res->vals[i]->type == PC_YNODE_SCALAR ? res->vals[i]->value : "";
        const struct ctl_manifest *m = find_manifest(name);

        if (!m) {
            pc_diag_set(diag, 0, 0, "deploy/%s: resource \"%s\" is not embedded", KUSTOMIZATION,
                        name);
            rc = PC_ENOTFOUND;
        } else if (!(strcmp(o->mesh_config, "none") == 0 && strcmp(name, MESH_RBAC_FILE) == 0)) {
            rc = append_file(b, m, o, diag);
        }
    }
out:
    pc_ynode_free(root);
    return rc;
}

static void
append_header(struct pc_buf *b, const char *mesh, const char *ns, const char *gws)
{
    pc_buf_appendf(b,
                   "# portcullis %s install manifests: portcullis-controller bootstrap "
                   "--mesh-config=%s --namespace=%s --gateway-namespaces=%s\n"
                   "# Apply once with `kubectl apply -f -`. The Secret portcullis-cookie-secret "
                   "at the end is new\n"
                   "# on every run: applying another one signs every user out.\n",
                   PORTCULLIS_VERSION, mesh, ns, gws);
    if (strcmp(mesh, "shared") == 0)
        pc_buf_appends(b, "# --mesh-config=shared: istiod reads the provider only when it runs "
                          "with the environment\n# variable SHARED_MESH_CONFIG=" SHARED_CONFIGMAP
                          " (ConfigMap " SHARED_CONFIGMAP " in istio-system, below).\n");
}

/* The ConfigMap the controller owns with --mesh-config=shared. No data: the controller writes
 * it, and a later `kubectl apply` of this output must not reset it. */
static void
append_shared_configmap(struct pc_buf *b)
{
    pc_buf_appends(b, "---\n"
                      "# Written by portcullis-controller (--mesh-config=shared); istiod merges it "
                      "into the mesh\n# config when started with "
                      "SHARED_MESH_CONFIG=" SHARED_CONFIGMAP ".\n"
                      "apiVersion: v1\n"
                      "kind: ConfigMap\n"
                      "metadata:\n"
                      "  name: " SHARED_CONFIGMAP "\n"
                      "  namespace: istio-system\n"
                      "  labels:\n"
                      "    app.kubernetes.io/name: portcullis-controller\n"
                      "    app.kubernetes.io/part-of: portcullis\n");
}

static void
append_cookie_secret(struct pc_buf *b, const char *ns, const char *secret)
{
    pc_buf_appendf(b,
                   "---\n"
                   "# authd's cookie encryption secret (%d random bytes, base64url).\n"
                   "apiVersion: v1\n"
                   "kind: Secret\n"
                   "metadata:\n"
                   "  name: portcullis-cookie-secret\n"
                   "  namespace: %s\n"
                   "  labels:\n"
                   "    app.kubernetes.io/name: portcullis-authd\n"
                   "    app.kubernetes.io/part-of: portcullis\n"
                   "type: Opaque\n"
                   "stringData:\n"
                   "  secret: \"%s\"\n",
                   COOKIE_SECRET_BYTES, ns, secret);
}

/* "a,b": at least one, each a namespace name. */
static bool
valid_namespace_list(const char *list)
{
    char *copy = pc_xstrdup(list), *save = NULL;
    bool ok = *list && list[strlen(list) - 1] != ',' && !strstr(list, ",,") && *list != ',';

    for (char *ns = strtok_r(copy, ",", &save); ns && ok; ns = strtok_r(NULL, ",", &save))
        ok = valid_namespace(ns);
    free(copy);
    return ok;
}

int
ctl_bootstrap_render(const struct ctl_bootstrap_opts *o, char **out, struct pc_diag *diag)
{
    const char *mesh = o->mesh_config ? o->mesh_config : "istio";
    const char *ns = o->namespace ? o->namespace : DEFAULT_NS;
    const char *gws = o->gateway_namespaces ? o->gateway_namespaces : GATEWAY_NS_DEFAULT;
    struct ctl_bootstrap_opts eff = {.mesh_config = mesh,
                                     .namespace = ns,
                                     .gateway_namespaces = gws,
                                     .redis_url = o->redis_url,
                                     .redis_secret = o->redis_secret,
                                     .redis_username = o->redis_username};
    char *fresh = NULL;
    struct pc_buf b;
    int rc;

    *out = NULL;
    if (!valid_mesh_mode(mesh)) {
        pc_diag_set(diag, 0, 0, "unknown --mesh-config \"%s\" (istio, shared or none)", mesh);
        return PC_EINVAL;
    }
    if (!valid_namespace(ns)) {
        pc_diag_set(diag, 0, 0, "invalid --namespace \"%s\" (a DNS label: a-z, 0-9, '-')", ns);
        return PC_EINVAL;
    }
    if (!valid_namespace_list(gws)) {
        pc_diag_set(diag, 0, 0,
                    "invalid --gateway-namespaces \"%s\" (namespace names, comma-separated)", gws);
        return PC_EINVAL;
    }
    if (!valid_redis_opts(o, diag))
        return PC_EINVAL;
    pc_buf_init(&b, 0);
    b.secret = true;
    append_header(&b, mesh, ns, gws);
    if ((rc = append_resources(&b, &eff, diag)) < 0)
        goto out;
    if (strcmp(mesh, "shared") == 0)
        append_shared_configmap(&b);
    if (!o->cookie_secret)
        fresh = pc_random_token(COOKIE_SECRET_BYTES);
    append_cookie_secret(&b, ns, o->cookie_secret ? o->cookie_secret : fresh);
    *out = pc_buf_detach(&b);
out:
    pc_free_secret(fresh);
    pc_buf_release(&b);
    return rc;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: portcullis-controller bootstrap [--mesh-config=istio|shared|none] "
               "[--namespace NS]\n"
               "         [--redis-url URL [--redis-secret NAME/KEY] [--redis-username USER]]\n"
               "         [--gateway-namespaces NS,NS]   where AuthorizationPolicies may go "
               "(default istio-system)\n"
               "Prints the install manifests (deploy/) with a new cookie secret:\n"
               "  portcullis-controller bootstrap | kubectl apply -f -\n");
}

int
ctl_cmd_bootstrap(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"mesh-config", required_argument, NULL, 'm'},
        {"namespace", required_argument, NULL, 'n'},
        {"redis-url", required_argument, NULL, 'r'},
        {"redis-secret", required_argument, NULL, 's'},
        {"redis-username", required_argument, NULL, 'u'},
        {"gateway-namespaces", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ctl_bootstrap_opts o = {0};
    struct pc_diag diag = {0};
    char *text = NULL, msg[600];
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o.mesh_config = optarg;
            break;
        case 'n':
            o.namespace = optarg;
            break;
        case 'r':
            o.redis_url = optarg;
            break;
        case 's':
            o.redis_secret = optarg;
            break;
        case 'u':
            o.redis_username = optarg;
            break;
        case 'g':
            o.gateway_namespaces = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if ((rc = ctl_bootstrap_render(&o, &text, &diag)) < 0) {
        pc_diag_format(&diag, msg, sizeof msg);
        fprintf(stderr, "portcullis-controller bootstrap: %s\n", msg);
        return rc == PC_EINVAL ? 2 : 1;
    }
    fputs(text, stdout);
    pc_free_secret(text);
    if (o.mesh_config && strcmp(o.mesh_config, "shared") == 0)
        fprintf(stderr, "note: istiod must run with SHARED_MESH_CONFIG=" SHARED_CONFIGMAP "\n");
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
