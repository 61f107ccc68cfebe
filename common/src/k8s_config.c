/*
 * k8s_config.c - finds the API server and credentials: kubeconfig files and in-cluster
 * service accounts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "portcullis/b64.h"
#include "portcullis/yaml.h"

#include "k8s_priv.h"

/* Kubeconfigs, certificates and tokens are small; anything larger is a mistake. */
#define MAX_CONFIG_FILE (4u << 20)

void
k8s_config_init(struct k8s_config *c)
{
    memset(c, 0, sizeof(*c));
}

void
k8s_config_release(struct k8s_config *c)
{
    free(c->server);
    free(c->ca_file);
    free(c->ca_pem);
    pc_free_secret(c->token);
    free(c->token_file);
    free(c->client_cert_pem);
    pc_free_secret(c->client_key_pem);
    free(c->namespace);
    free(c->sa_dir);
    memset(c, 0, sizeof(*c));
}

/* Reads a whole small file into a new NUL-terminated string. Returns 0 or -errno. */
int
k8s_read_file(const char *path, char **out, size_t *len)
{
    struct pc_buf b;
    char chunk[4096];
    int fd, rc = 0;
    ssize_t n;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    pc_buf_init(&b, MAX_CONFIG_FILE);
    b.secret = true; /* token files and keys pass through here */
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        if ((rc = pc_buf_append(&b, chunk, (size_t)n)) < 0)
            goto out;
    }
    if (len)
        *len = b.len;
    *out = pc_buf_detach(&b);
out:
    pc_cleanse(chunk, sizeof(chunk));
    pc_buf_release(&b);
    close(fd);
    return rc;
}

/* Strips trailing whitespace in place (token files usually end with a newline). */
static void
rtrim(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* ---- kubeconfig ----------------------------------------------------------------------- */

struct kc_parse {
    const char *path;
    char *dir; /* for relative file references */
    struct pc_diag *diag;
};

static int kc_fail(struct kc_parse *p, const struct pc_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
kc_fail(struct kc_parse *p, const struct pc_ynode *at, const char *fmt, ...)
{
    va_list ap;

    p->diag->file = p->path;
    p->diag->line = at ? at->line : 0;
    p->diag->col = at ? at->col : 0;
    va_start(ap, fmt);
    vsnprintf(p->diag->msg, sizeof(p->diag->msg), fmt, ap);
    va_end(ap);
    return PC_EINVAL;
}

/* The scalar string at key in map n, borrowed; NULL when absent. Non-scalars are an error. */
static int
kc_str(struct kc_parse *p, const struct pc_ynode *n, const char *key, const char **out)
{
    const struct pc_ynode *v = pc_ynode_get(n, key);

    *out = NULL;
    if (!v)
        return 0;
    if (v->type != PC_YNODE_SCALAR)
        return kc_fail(p, v, "field '%s' must be a string", key);
    *out = v->value;
    return 0;
}

/* The entry named name in the list at key ("contexts", "clusters", "users"): its `what` map. */
static int
kc_named(struct kc_parse *p, const struct pc_ynode *root, const char *key, const char *name,
         const struct pc_ynode **out)
{
    const struct pc_ynode *seq = pc_ynode_get(root, key);
    /* Each list entry holds its value under the singular of the list's name. */
    const char *what = strcmp(key, "contexts") == 0   ? "context"
                       : strcmp(key, "clusters") == 0 ? "cluster"
                                                      : "user";
    const char *nm;

    if (!seq || seq->type != PC_YNODE_SEQ)
        return kc_fail(p, seq ? seq : root, "missing list '%s'", key);
    for (size_t i = 0; i < seq->n; i++) {
        if (kc_str(p, seq->vals[i], "name", &nm) < 0)
            return PC_EINVAL;
        if (!nm || strcmp(nm, name) != 0)
            continue;
        *out = pc_ynode_get(seq->vals[i], what);
        if (!*out || (*out)->type != PC_YNODE_MAP)
            return kc_fail(p, seq->vals[i], "missing map '%s'", what);
        return 0;
    }
    return kc_fail(p, seq, "%s '%s' not found in '%s'", what, name, key);
}

static char *
kc_abspath(const struct kc_parse *p, const char *file)
{
    if (file[0] == '/')
        return pc_xstrdup(file);
    return pc_xasprintf("%s/%s", p->dir, file);
}

/* Loads a "<key>-data" (base64 PEM) or "<key>" (file path) pair of map n into *out. */
static int
kc_blob(struct kc_parse *p, const struct pc_ynode *n, const char *key, char **out)
{
    char datakey[64];
    const char *data, *file;
    unsigned char *dec = NULL;
    size_t declen;
    char *abs;
    int rc;

    snprintf(datakey, sizeof(datakey), "%s-data", key);
    if (kc_str(p, n, datakey, &data) < 0 || kc_str(p, n, key, &file) < 0)
        return PC_EINVAL;
    if (data) {
        if (pc_b64_decode(data, strlen(data), &dec, &declen) < 0)
            return kc_fail(p, pc_ynode_get(n, datakey), "field '%s' is not base64", datakey);
        *out = (char *)dec;
        return 0;
    }
    if (!file)
        return 0;
    abs = kc_abspath(p, file);
    rc = k8s_read_file(abs, out, NULL);
    if (rc < 0)
        kc_fail(p, pc_ynode_get(n, key), "cannot read %s '%s': %s", key, abs, pc_strerror(rc));
    free(abs);
    return rc;
}

static int
kc_cluster(struct kc_parse *p, const struct pc_ynode *cl, struct k8s_config *c)
{
    const char *server, *ca, *insecure;

    if (kc_str(p, cl, "server", &server) < 0 || kc_str(p, cl, "certificate-authority", &ca) < 0 ||
        kc_str(p, cl, "insecure-skip-tls-verify", &insecure) < 0)
        return PC_EINVAL;
    if (!server || !*server)
        return kc_fail(p, cl, "missing field '%s'", "server");
    c->server = pc_xstrdup(server);
    rtrim(c->server);
    if (c->server[0] && c->server[strlen(c->server) - 1] == '/')
        c->server[strlen(c->server) - 1] = '\0';
    c->insecure_skip_verify = insecure && strcmp(insecure, "true") == 0;
    if (pc_ynode_get(cl, "certificate-authority-data"))
        return kc_blob(p, cl, "certificate-authority", &c->ca_pem);
    if (ca)
        c->ca_file = kc_abspath(p, ca);
    return 0;
}

static int
kc_user(struct kc_parse *p, const struct pc_ynode *u, struct k8s_config *c)
{
    const char *token, *token_file;

    if (kc_str(p, u, "token", &token) < 0 || kc_str(p, u, "tokenFile", &token_file) < 0)
        return PC_EINVAL;
    if (token)
        c->token = pc_xstrdup(token);
    else if (token_file)
        c->token_file = kc_abspath(p, token_file);
    if (kc_blob(p, u, "client-certificate", &c->client_cert_pem) < 0 ||
        kc_blob(p, u, "client-key", &c->client_key_pem) < 0)
        return PC_EINVAL;
    if (!c->client_cert_pem != !c->client_key_pem)
        return kc_fail(p, u, "user needs both a client certificate and a %s", "client key");
    if (pc_ynode_get(u, "exec") || pc_ynode_get(u, "auth-provider"))
        return kc_fail(p, u, "unsupported user credential '%s'",
                       pc_ynode_get(u, "exec") ? "exec" : "auth-provider");
    return 0;
}

static int
kc_apply(struct kc_parse *p, const struct pc_ynode *root, const char *context, struct k8s_config *c)
{
    const struct pc_ynode *ctx, *cl, *u = NULL;
    const char *cluster, *user, *ns;

    if (root->type != PC_YNODE_MAP)
        return kc_fail(p, root, "kubeconfig must be a %s", "map");
    if (!context && kc_str(p, root, "current-context", &context) < 0)
        return PC_EINVAL;
    if (!context || !*context)
        return kc_fail(p, root, "missing field '%s' (and no context was named)", "current-context");
    if (kc_named(p, root, "contexts", context, &ctx) < 0)
        return PC_EINVAL;
    if (kc_str(p, ctx, "cluster", &cluster) < 0 || kc_str(p, ctx, "user", &user) < 0 ||
        kc_str(p, ctx, "namespace", &ns) < 0)
        return PC_EINVAL;
    if (!cluster)
        return kc_fail(p, ctx, "missing field '%s'", "cluster");
    if (kc_named(p, root, "clusters", cluster, &cl) < 0 || kc_cluster(p, cl, c) < 0)
        return PC_EINVAL;
    if (user && kc_named(p, root, "users", user, &u) < 0)
        return PC_EINVAL;
    if (u && kc_user(p, u, c) < 0)
        return PC_EINVAL;
    c->namespace = pc_xstrdup(ns && *ns ? ns : "default");
    return 0;
}

int
k8s_config_from_kubeconfig(struct k8s_config *c, const char *path, const char *context,
                           struct pc_diag *diag)
{
    struct kc_parse p = {.path = path, .diag = diag};
    struct pc_ynode *root = NULL;
    char *text = NULL;
    const char *slash;
    size_t len;
    int rc;

    if ((rc = k8s_read_file(path, &text, &len)) < 0) {
        diag->file = path;
        pc_diag_set(diag, 0, 0, "cannot read kubeconfig: %s", pc_strerror(rc));
        return rc;
    }
    slash = strrchr(path, '/');
    p.dir = slash ? pc_xstrndup(path, (size_t)(slash - path)) : pc_xstrdup(".");
    if (p.dir[0] == '\0') {
        free(p.dir);
        p.dir = pc_xstrdup("/");
    }
    diag->file = path;
    if ((rc = pc_yaml_load(text, len, &root, diag)) < 0)
        goto out;
    if ((rc = kc_apply(&p, root, context, c)) < 0)
        k8s_config_release(c);
out:
    pc_ynode_free(root);
    pc_free_secret(text);
    free(p.dir);
    return rc;
}

/* ---- in-cluster ------------------------------------------------------------------------ */

static char *
sa_path(const char *dir, const char *file)
{
    return pc_xasprintf("%s/%s", dir, file);
}

int
k8s_config_in_cluster(struct k8s_config *c, const char *sa_dir, struct pc_diag *diag)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    char *ns = NULL, *path;
    int rc;

    if (!host || !*host) {
        pc_diag_set(diag, 0, 0, "not in a cluster: %s is not set", "KUBERNETES_SERVICE_HOST");
        return PC_ENOTFOUND;
    }
    sa_dir = sa_dir ? sa_dir : K8S_SA_DIR;
    c->sa_dir = pc_xstrdup(sa_dir);
    /* An IPv6 service address needs brackets in a URL. */
    c->server = pc_xasprintf(strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                             port && *port ? port : "443");
    c->token_file = sa_path(sa_dir, "token");
    c->ca_file = sa_path(sa_dir, "ca.crt");
    if (access(c->token_file, R_OK) != 0) {
        rc = -errno;
        pc_diag_set(diag, 0, 0, "cannot read service account token '%s': %s", c->token_file,
                    pc_strerror(rc));
        k8s_config_release(c);
        return rc;
    }
    path = sa_path(sa_dir, "namespace");
    if (k8s_read_file(path, &ns, NULL) == 0)
        rtrim(ns);
    free(path);
    c->namespace = ns && *ns ? ns : pc_xstrdup("default");
    if (c->namespace != ns)
        free(ns);
    return 0;
}

int
k8s_config_load(struct k8s_config *c, const char *kubeconfig, const char *context,
                struct pc_diag *diag)
{
    const char *env = getenv("KUBECONFIG"), *home = getenv("HOME");
    char *path;
    int rc;

    if (kubeconfig)
        return k8s_config_from_kubeconfig(c, kubeconfig, context, diag);
    if (env && *env) {
        /* A list like "a:b"; merging several files is not supported, the first one wins. */
        path = pc_xstrndup(env, strcspn(env, ":"));
        rc = k8s_config_from_kubeconfig(c, path, context, diag);
        if (rc < 0)
            pc_diag_fold(diag);
        free(path);
        return rc;
    }
    if (getenv("KUBERNETES_SERVICE_HOST"))
        return k8s_config_in_cluster(c, NULL, diag);
    path = pc_xasprintf("%s/.kube/config", home ? home : "");
    rc = k8s_config_from_kubeconfig(c, path, context, diag);
    if (rc < 0)
        pc_diag_fold(diag);
    free(path);
    return rc;
}
