/*
 * ctl_cli_render.c - `portcullis-controller render`: the renderer without a cluster.
 *
 * Reads ProtectedHost manifests from files and directories, runs the same state builder as
 * `run`, and prints (or writes into a directory) what the controller would apply. The output
 * depends only on the input: the same files give the same bytes, so it can live in a GitOps
 * repository and be diffed in review.
 */
#include "controller.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "portcullis/json.h"
#include "portcullis/yaml.h"

#define RENDER_MAX_INPUT (16 * 1024 * 1024)

struct render_ctx {
    json_t *objs;    /* the ProtectedHosts read */
    json_t *origin;  /* "ns/name" -> "file:line" */
    json_t *secrets; /* "ns/name/key" -> file path */
    const char *outdir;
    bool manifests_only;
    struct ctl_state_opts opts;
    int errors;
    /* The admin policy (--policy) and the Namespace manifests its selectors read. */
    const char *policy_file;
    bool in_policy_file; /* loading it now */
    json_t *policy_doc;  /* the ProtectedHostPolicy document read, NULL: none */
    json_t *policy;      /* its canonical form */
    char *policy_origin; /* "file:line" */
    json_t *ns_labels;   /* Namespace name -> labels */
    struct ctl_tenancy tenancy;
};

static int
read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct pc_buf b;
    char chunk[8192];
    size_t n;
    int rc = 0;

    if (!f)
        return -errno;
    pc_buf_init(&b, RENDER_MAX_INPUT);
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = pc_buf_append(&b, chunk, n);
    if (rc == 0 && ferror(f))
        rc = PC_EIO;
    fclose(f);
    *len = b.len;
    *out = pc_buf_detach(&b);
    if (rc < 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

static bool
is_kind(const json_t *doc, const char *group_prefix, const char *kind)
{
    const char *av = pc_json_str(doc, "apiVersion"), *k = pc_json_str(doc, "kind");

    return av && k && strncmp(av, group_prefix, strlen(group_prefix)) == 0 && strcmp(k, kind) == 0;
}

/* A Namespace's labels, for the policy's namespace selectors. */
static void
add_namespace(struct render_ctx *c, const json_t *doc)
{
    const char *name = pc_json_str(json_object_get(doc, "metadata"), "name");
    json_t *labels = pc_json_path(doc, "metadata.labels");

    if (name)
        json_object_set_new(c->ns_labels, name,
                            json_is_object(labels) ? json_deep_copy(labels) : json_object());
}

/* The ProtectedHostPolicy: one, and only from --policy (a team's own files cannot widen it). */
static void
add_policy(struct render_ctx *c, const char *file, const struct pc_ynode *node, json_t *doc)
{
    if (!c->in_policy_file) {
        fprintf(stderr, "%s:%d: a ProtectedHostPolicy among the -f inputs: give it with --policy\n",
                file, node->line);
        c->errors++;
    } else if (c->policy_doc) {
        fprintf(stderr, "%s:%d: a second ProtectedHostPolicy (the first is at %s)\n", file,
                node->line, c->policy_origin);
        c->errors++;
    } else {
        c->policy_doc = json_incref(doc);
        c->policy_origin = pc_xasprintf("%s:%d", file, node->line);
    }
}

static void
add_object(struct render_ctx *c, const char *file, const struct pc_ynode *node, json_t *doc)
{
    const char *ns = pc_json_str(pc_json_path(doc, "metadata"), "namespace");
    const char *name = pc_json_str(pc_json_path(doc, "metadata"), "name");
    char *id = pc_xasprintf("%s/%s", ns && *ns ? ns : "default", name ? name : "");
    const char *prev = pc_json_str(c->origin, id);

    if (prev) {
        fprintf(stderr, "%s:%d: metadata.name: duplicate ProtectedHost %s (also in %s)\n", file,
                node->line, id, prev);
        c->errors++;
    } else {
        json_object_set_new(c->origin, id, json_sprintf("%s:%d", file, node->line));
        json_array_append(c->objs, doc);
    }
    free(id);
}

static void
load_file(struct render_ctx *c, const char *path)
{
    struct pc_diag d = {.file = path};
    struct pc_ynode **docs = NULL;
    size_t ndocs = 0, len = 0;
    char *text = NULL, msg[700];
    int rc = read_file(path, &text, &len);

    if (rc == 0)
        rc = pc_yaml_load_all(text, len, &docs, &ndocs, &d);
    else
        pc_diag_set(&d, 0, 0, "cannot read: %s", pc_strerror(rc));
    if (rc < 0) {
        pc_diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "%s\n", msg);
        c->errors++;
    }
    for (size_t i = 0; i < ndocs; i++) {
        json_t *doc = pc_yaml_to_json(docs[i]);

        if (is_kind(doc, "portcullis.io/", "ProtectedHost") && !c->in_policy_file)
            add_object(c, path, docs[i], doc);
        else if (is_kind(doc, "portcullis.io/", "ProtectedHostPolicy"))
            add_policy(c, path, docs[i], doc);
        else if (is_kind(doc, "v1", "Namespace"))
            add_namespace(c, doc);
        json_decref(doc);
    }
    pc_yaml_free_all(docs, ndocs);
    free(text);
}

static int
compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
is_manifest_name(const char *name)
{
    size_t n = strlen(name);

    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0) ||
           (n > 5 && strcmp(name + n - 5, ".json") == 0);
}

static void load_path(struct render_ctx *c, const char *path, bool top);

/* A directory's manifests and subdirectories, in byte order of their names. */
static void
load_dir(struct render_ctx *c, const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;

    if (!dir) {
        fprintf(stderr, "%s: cannot read: %s\n", path, strerror(errno));
        c->errors++;
        return;
    }
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        names = pc_xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = pc_xasprintf("%s/%s", path, de->d_name);
    }
    closedir(dir);
    qsort(names, n, sizeof(*names), compare_names);
    for (size_t i = 0; i < n; i++) {
        load_path(c, names[i], false);
        free(names[i]);
    }
    free(names);
}

static void
load_path(struct render_ctx *c, const char *path, bool top)
{
    struct stat st;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "%s: cannot read: %s\n", path, strerror(errno));
        c->errors++;
    } else if (S_ISDIR(st.st_mode)) {
        load_dir(c, path);
    } else if (top || is_manifest_name(path)) {
        load_file(c, path);
    }
}

/* --secret-file values: the file's content without one trailing newline. */
static int
secret_from_file(void *ud, const char *ns, const char *name, const char *key, char **value)
{
    struct render_ctx *c = ud;
    char *id = pc_xasprintf("%s/%s/%s", ns, name, key);
    const char *path = pc_json_str(c->secrets, id);
    size_t len = 0;
    int rc = 0;

    free(id);
    *value = NULL;
    if (!path)
        return 0; /* no file: the config gets a placeholder */
    if ((rc = read_file(path, value, &len)) < 0) {
        fprintf(stderr, "%s: cannot read the --secret-file for %s/%s key \"%s\": %s\n", path, ns,
                name, key, pc_strerror(rc));
        return rc;
    }
    if (len > 0 && (*value)[len - 1] == '\n')
        (*value)[len - 1] = '\0';
    return 0;
}

static void
report_item(const struct render_ctx *c, const struct ctl_item *it, bool allow_insecure)
{
    const char *where = pc_json_str(c->origin, it->id);
    struct ctl_errors errs = {0};
    json_t *spec = NULL;

    if (it->verdict == CTL_INVALID &&
        ctl_spec_normalize(json_object_get(it->obj, "spec"), allow_insecure, &spec, &errs) < 0) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s: %s\n", where, errs.msg[i]);
    } else {
        fprintf(stderr, "%s: %s\n", where, it->message ? it->message : "not accepted");
    }
    json_decref(spec);
    ctl_errors_release(&errs);
}

/* ---- output ------------------------------------------------------------------------------ */

static int
write_doc(const struct render_ctx *c, const char *file, const char *comment, const char *text)
{
    char *path;
    FILE *f;
    int rc = 0;

    if (!c->outdir) {
        printf("---\n# %s\n%s", comment, text);
        return 0;
    }
    path = pc_xasprintf("%s/%s", c->outdir, file);
    f = fopen(path, "w");
    if (!f || fprintf(f, "# %s\n%s", comment, text) < 0)
        rc = -errno;
    if (f && fclose(f) != 0)
        rc = -errno;
    if (rc < 0)
        fprintf(stderr, "%s: cannot write: %s\n", path, pc_strerror(rc));
    free(path);
    return rc;
}

static int
write_json_doc(const struct render_ctx *c, const char *file, const char *comment, json_t *j)
{
    char *text = pc_json_to_yaml(j);
    int rc = write_doc(c, file, comment, text);

    pc_free_secret(text);
    json_decref(j);
    return rc;
}

/* The shard Secrets, one YAML document each; generation 1 (GitOps tools replace them whole). */
static char *
shard_secrets(const struct ctl_state *st, const struct ctl_authd_opts *o)
{
    struct pc_buf b;

    pc_buf_init(&b, 0);
    b.secret = true;
    for (unsigned s = 0; s < st->nshards; s++) {
        char *name = ctl_shard_name(s);
        json_t *j = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s},s:{s:s}},s:s,s:{s:s}}", "apiVersion",
                              "v1", "kind", "Secret", "metadata", "name", name, "namespace",
                              o->namespace ? o->namespace : "portcullis-system", "labels",
                              CTL_LABEL_MANAGED_BY, "portcullis", CTL_LABEL_AUTHD_CONFIG, "shard",
                              "annotations", CTL_ANNOT_GENERATION, "1", "type", "Opaque",
                              "stringData", "hosts.yaml", st->shards[s]);
        char *text = pc_json_to_yaml(j);

        pc_buf_appendf(&b, "%s%s", s ? "---\n" : "", text);
        pc_free_secret(text);
        json_decref(j);
        free(name);
    }
    return pc_buf_detach(&b);
}

/*
 * spec.ingress: the annotations for the Ingresses that serve the hosts, to set by hand or in
 * Git (not a Kubernetes object: left out with --manifests-only, like the mesh fragment).
 */
static int
write_ingress_annotations(const struct render_ctx *c, const struct ctl_item *it)
{
    json_t *view = ctl_ingress_view(it->id, it->spec), *hosts = json_object_get(it->spec, "hosts");
    char *name = ctl_k8s_name("ingress-annotations", it->ns, it->name, 63), *comment;
    char *file = pc_xasprintf("%s.yaml", name);
    struct pc_buf b;
    size_t i;
    json_t *h;
    int rc;

    pc_buf_init(&b, 0);
    json_array_foreach(hosts, i, h) pc_buf_appendf(&b, "%s%s", i ? ", " : "", json_string_value(h));
    comment = pc_xasprintf("Ingress annotations (ingress-nginx, class %s) of ProtectedHost %s: for "
                           "every Ingress whose rules name %s, but the sign-in route that sends "
                           "/oauth2/ to authd; the sign-in scheme is https unless "
                           "spec.ingress.scheme says otherwise (run uses http for an Ingress "
                           "without tls)",
                           ctl_ingress_class(it->spec), it->id, pc_buf_str(&b));
    rc = write_json_doc(c, file, comment,
                        json_pack("{s:{s:o}}", "metadata", "annotations",
                                  ctl_ingress_annotations(view, &c->opts.authd, "https")));
    pc_buf_release(&b);
    json_decref(view);
    free(comment);
    free(file);
    free(name);
    return rc;
}

/* Per namespace with sidecar hosts: the local name's ServiceEntry and the sidecars' shard. */
static int
write_sidecar_outputs(struct render_ctx *c, const struct ctl_state *st)
{
    const char *ns;
    json_t *text;
    char *file;
    int rc = 0;

    json_object_foreach(st->sidecar, ns, text)
    {
        file = pc_xasprintf("serviceentry-%s-%s.yaml", ns, CTL_LOCAL_SERVICE_ENTRY);
        rc = write_json_doc(c, file,
                            "ServiceEntry (networking.istio.io/v1): " CTL_LOCAL_SERVICE
                            " is the authd container in each sidecar-mode pod",
                            ctl_render_local_service_entry(ns));
        free(file);
        if (rc < 0)
            break;
        file = pc_xasprintf("authd-sidecar-config-%s.yaml", ns);
        rc = write_json_doc(c, file,
                            "the host entries the authd sidecars of this namespace watch, and "
                            "nobody else's",
                            ctl_render_sidecar_shard(ns, "stringData", json_string_value(text), 1));
        free(file);
        if (rc < 0)
            break;
    }
    return rc;
}

static int
write_outputs(struct render_ctx *c, const struct ctl_state *st)
{
    struct pc_diag d = {0};
    char *mesh = NULL, *file;
    json_t *filter;
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < st->n; i++) {
        if (!st->items[i].policy)
            continue;
        file = pc_xasprintf("authorizationpolicy-%s.yaml", st->items[i].policy_name);
        rc = write_json_doc(c, file, "AuthorizationPolicy (security.istio.io/v1)",
                            json_incref(st->items[i].policy));
        free(file);
        filter =
            c->opts.authd.gateway_strips_ports ? NULL : ctl_render_host_filter(st->items[i].policy);
        if (rc == 0 && filter) {
            file = pc_xasprintf("envoyfilter-%s.yaml", st->items[i].policy_name);
            rc = write_json_doc(c, file,
                                "EnvoyFilter (networking.istio.io/v1alpha3): the gateway strips "
                                "Host ports so the wildcard host is checked with any port",
                                filter);
            free(file);
        } else {
            json_decref(filter);
        }
    }
    for (size_t i = 0; rc == 0 && i < json_array_size(st->egress); i++) {
        json_t *se = json_array_get(st->egress, i);

        file = pc_xasprintf("serviceentry-%s.yaml",
                            pc_json_str(json_object_get(se, "metadata"), "name"));
        rc = write_json_doc(c, file,
                            "ServiceEntry (networking.istio.io/v1): authd's way out to the issuer",
                            json_incref(se));
        free(file);
    }
    for (size_t i = 0; rc == 0 && !c->manifests_only && i < st->n; i++)
        if (st->items[i].spec && ctl_ingress_class(st->items[i].spec))
            rc = write_ingress_annotations(c, &st->items[i]);
    if (rc == 0)
        rc = write_sidecar_outputs(c, st);
    if (rc == 0 && !c->manifests_only &&
        ctl_mesh_merge_pair(NULL, st->provider, st->local_provider, &mesh, &d) == 0)
        rc = write_doc(c, "mesh-config.yaml",
                       "mesh config fragment: merge into meshConfig (ConfigMap istio, key mesh)",
                       mesh);
    if (rc == 0 && !c->manifests_only)
        rc = write_json_doc(c, "istio-values.yaml",
                            "Helm values / IstioOperator snippet (meshConfig)",
                            json_pack("{s:{s:[O,O*]}}", "meshConfig", "extensionProviders",
                                      st->provider, st->local_provider));
    if (rc == 0) {
        char *shards = shard_secrets(st, &c->opts.authd);

        rc = write_doc(c, "authd-config-secrets.yaml",
                       "authd's host entries, split over Secrets authd watches; "
                       "<secret:ns/name/key> placeholders need the client secret (render "
                       "--secret-file ns/name/key=PATH)",
                       shards);
        pc_free_secret(shards);
    }
    free(mesh);
    return rc;
}

/* ---- command line ------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
    fprintf(f, "usage: portcullis-controller render -f FILE|DIR... [-o DIR]\n"
               "         [--secret-file NS/NAME/KEY=PATH]... [--authd-namespace NS]\n"
               "         [--authd-service NAME] [--authd-port PORT]\n"
               "         [--allow-insecure-issuers] [--manifests-only]\n"
               "         [--egress-service-entries]\n"
               "         [--gateway-host-normalization envoyfilter|external]\n"
               "         [--policy FILE] [--gateway-namespaces NS,NS]\n"
               "  --policy: the ProtectedHostPolicy (and Namespace manifests) the inputs must\n"
               "  keep to, as the controller checks them; --gateway-namespaces: the\n"
               "  controller's (default istio-system)\n");
}

static int
add_secret_file(struct render_ctx *c, const char *arg)
{
    const char *eq = strchr(arg, '=');
    char *id;

    if (!eq || eq == arg || eq[1] == '\0')
        return PC_EINVAL;
    id = pc_xstrndup(arg, (size_t)(eq - arg));
    json_object_set_new(c->secrets, id, json_string(eq + 1));
    free(id);
    return 0;
}

enum {
    OPT_SECRET = 256,
    OPT_NS,
    OPT_SVC,
    OPT_PORT,
    OPT_INSECURE,
    OPT_MANIFESTS,
    OPT_EGRESS,
    OPT_HOST_NORM,
    OPT_POLICY,
    OPT_GATEWAY_NS
};

static int
parse_args(struct render_ctx *c, int argc, char **argv, json_t *inputs)
{
    static const struct option longopts[] = {
        {"file", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"secret-file", required_argument, NULL, OPT_SECRET},
        {"authd-namespace", required_argument, NULL, OPT_NS},
        {"authd-service", required_argument, NULL, OPT_SVC},
        {"authd-port", required_argument, NULL, OPT_PORT},
        {"allow-insecure-issuers", no_argument, NULL, OPT_INSECURE},
        {"manifests-only", no_argument, NULL, OPT_MANIFESTS},
        {"egress-service-entries", no_argument, NULL, OPT_EGRESS},
        {"gateway-host-normalization", required_argument, NULL, OPT_HOST_NORM},
        {"policy", required_argument, NULL, OPT_POLICY},
        {"gateway-namespaces", required_argument, NULL, OPT_GATEWAY_NS},
        {"help", no_argument, NULL, 'h'},
        {0}};
    int ch;

    optind = 0; /* glibc: a full rescan, so render can run more than once (tests) */
    while ((ch = getopt_long(argc, argv, "f:o:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            json_array_append_new(inputs, json_string(optarg));
            break;
        case 'o':
            c->outdir = optarg;
            break;
        case OPT_SECRET:
            if (add_secret_file(c, optarg) < 0) {
                fprintf(stderr, "render: --secret-file \"%s\": expected NS/NAME/KEY=PATH\n",
                        optarg);
                return PC_EINVAL;
            }
            break;
        case OPT_NS:
            c->opts.authd.namespace = optarg;
            break;
        case OPT_SVC:
            c->opts.authd.service = optarg;
            break;
        case OPT_PORT:
            c->opts.authd.port = atoi(optarg);
            if (c->opts.authd.port <= 0 || c->opts.authd.port > 65535 ||
                strspn(optarg, "0123456789") != strlen(optarg)) {
                fprintf(stderr, "render: --authd-port \"%s\": expected a port, 1 to 65535\n",
                        optarg);
                return PC_EINVAL;
            }
            break;
        case OPT_INSECURE:
            c->opts.authd.allow_insecure_issuers = true;
            break;
        case OPT_MANIFESTS:
            c->manifests_only = true;
            break;
        case OPT_EGRESS:
            c->opts.authd.egress = true;
            break;
        case OPT_HOST_NORM:
            if (!ctl_parse_host_normalization(optarg, &c->opts.authd.gateway_strips_ports)) {
                fprintf(stderr,
                        "render: --gateway-host-normalization \"%s\": expected envoyfilter "
                        "or external\n",
                        optarg);
                return PC_EINVAL;
            }
            break;
        case OPT_POLICY:
            c->policy_file = optarg;
            break;
        case OPT_GATEWAY_NS:
            c->tenancy.gateway_namespaces = optarg;
            break;
        case 'h':
            return 1;
        default:
            return PC_EINVAL; /* getopt named the option */
        }
    }
    /* "-f a.yaml b.yaml" (what a shell makes of -f *.yaml): every path after -f is an input. */
    if (optind < argc && json_array_size(inputs) == 0) {
        fprintf(stderr, "render: \"%s\": input paths go after -f (render -f %s ...)\n",
                argv[optind], argv[optind]);
        return PC_EINVAL;
    }
    for (; optind < argc; optind++)
        json_array_append_new(inputs, json_string(argv[optind]));
    if (json_array_size(inputs) == 0) {
        fprintf(stderr, "render: no input: give -f FILE|DIR...\n");
        return PC_EINVAL;
    }
    return 0;
}

static json_t *
render_labels(void *ud, const char *ns)
{
    const json_t *labels = json_object_get(((struct render_ctx *)ud)->ns_labels, ns);

    return labels ? json_deep_copy(labels) : NULL;
}

/* Reads --policy; its errors name the file and line of the document. */
static void
load_policy(struct render_ctx *c)
{
    struct ctl_errors errs = {0};

    c->in_policy_file = true;
    load_path(c, c->policy_file, true);
    c->in_policy_file = false;
    if (!c->policy_doc) {
        if (c->errors == 0)
            fprintf(stderr, "%s: no ProtectedHostPolicy in it\n", c->policy_file);
        c->errors++;
        return;
    }
    if (ctl_policy_normalize(c->policy_doc, &c->policy, &errs) < 0) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s: %s\n", c->policy_origin, errs.msg[i]);
        c->errors++;
    }
    ctl_errors_release(&errs);
    c->tenancy.policy = c->policy;
}

static int
render(struct render_ctx *c)
{
    struct ctl_state st;
    int rc = 0;

    c->tenancy.labels = render_labels;
    c->tenancy.ud = c;
    c->opts.tenancy = &c->tenancy;
    ctl_state_build(&st, c->objs, &c->opts);
    for (size_t i = 0; i < st.n; i++) {
        if (st.items[i].verdict != CTL_ACCEPTED) {
            report_item(c, &st.items[i], c->opts.authd.allow_insecure_issuers);
            c->errors++;
        }
    }
    if (c->errors == 0 && c->outdir && mkdir(c->outdir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "%s: cannot create: %s\n", c->outdir, strerror(errno));
        c->errors++;
    }
    if (c->errors == 0)
        rc = write_outputs(c, &st);
    ctl_state_release(&st);
    return c->errors ? 1 : rc < 0 ? 1 : 0;
}

int
ctl_cmd_render(int argc, char **argv)
{
    struct render_ctx c = {.objs = json_array(),
                           .origin = json_object(),
                           .secrets = json_object(),
                           .ns_labels = json_object()};
    json_t *inputs = json_array();
    size_t i;
    json_t *in;
    int rc;

    c.opts.secret = secret_from_file;
    c.opts.ud = &c;
    rc = parse_args(&c, argc, argv, inputs);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        rc = rc > 0 ? 0 : 2;
        goto out;
    }
    if (c.policy_file)
        load_policy(&c);
    json_array_foreach(inputs, i, in) load_path(&c, json_string_value(in), true);
    rc = render(&c);
    if (fflush(stdout) != 0)
        rc = 1;
out:
    json_decref(inputs);
    json_decref(c.objs);
    json_decref(c.origin);
    json_decref(c.secrets);
    json_decref(c.ns_labels);
    json_decref(c.policy_doc);
    json_decref(c.policy);
    free(c.policy_origin);
    return rc;
}
