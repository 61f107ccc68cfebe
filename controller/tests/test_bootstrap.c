/*
 * test_bootstrap.c - `portcullis-controller bootstrap` prints deploy/ as embedded, adapted to
 * the options, plus a fresh cookie secret; the output is valid YAML with every kind we ship.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller.h"
#include "portcullis/json.h"
#include "portcullis/yaml.h"

/* The rendered stream as a JSON array of its documents. */
static json_t *
render_docs(const struct ctl_bootstrap_opts *o, char **text)
{
    struct pc_diag d = {0};
    struct pc_ynode **docs = NULL;
    size_t n = 0;
    json_t *arr = json_array();

    assert_int_equal(ctl_bootstrap_render(o, text, &d), 0);
    assert_int_equal(pc_yaml_load_all(*text, strlen(*text), &docs, &n, &d), 0);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, pc_yaml_to_json(docs[i]));
    pc_yaml_free_all(docs, n);
    return arr;
}

static json_t *
find_doc(const json_t *docs, const char *kind, const char *name)
{
    size_t i;
    json_t *doc;

    json_array_foreach(docs, i, doc)
    {
        if (strcmp(pc_json_str(doc, "kind"), kind) == 0 &&
            strcmp(pc_json_str(json_object_get(doc, "metadata"), "name"), name) == 0)
            return doc;
    }
    return NULL;
}

static const char *
cookie_secret(const json_t *docs)
{
    json_t *s = find_doc(docs, "Secret", "portcullis-cookie-secret");

    assert_non_null(s);
    return json_string_value(pc_json_path(s, "stringData.secret"));
}

/* The controller container's args as one space-separated string (new). */
static char *
controller_args(const json_t *docs)
{
    json_t *dep = find_doc(docs, "Deployment", "portcullis-controller");
    json_t *c0 = json_array_get(pc_json_path(dep, "spec.template.spec.containers"), 0);
    json_t *args = json_object_get(c0, "args"), *a;
    size_t i;
    char *out = pc_xstrdup("");

    json_array_foreach(args, i, a)
    {
        char *next = pc_xasprintf("%s%s%s", out, i ? " " : "", json_string_value(a));
        free(out);
        out = next;
    }
    return out;
}

static void
test_every_kind_present(void **state)
{
    static const char *const kinds[] = {
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Secret",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    };
    char *text = NULL;
    json_t *docs = render_docs(&(struct ctl_bootstrap_opts){0}, &text);
    (void)state;

    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t i, found = 0;
        json_t *doc;
        json_array_foreach(docs, i, doc) found += strcmp(pc_json_str(doc, "kind"), kinds[k]) == 0;
        assert_true(found > 0);
    }
    /* Namespace first, so that kubectl apply can create the rest in it. */
    assert_string_equal(pc_json_str(json_array_get(docs, 0), "kind"), "Namespace");
    assert_non_null(find_doc(docs, "Deployment", "portcullis-authd"));
    assert_non_null(find_doc(docs, "CustomResourceDefinition", "protectedhosts.portcullis.io"));
    assert_non_null(
        find_doc(docs, "CustomResourceDefinition", "protectedhostpolicies.portcullis.io"));
    json_decref(docs);
    pc_free_secret(text);
}

static void
test_every_document_is_an_object(void **state)
{
    char *text = NULL;
    json_t *docs = render_docs(&(struct ctl_bootstrap_opts){0}, &text), *doc;
    size_t i;
    (void)state;

    json_array_foreach(docs, i, doc)
    {
        assert_non_null(pc_json_str(doc, "apiVersion"));
        assert_non_null(pc_json_str(doc, "kind"));
        assert_non_null(pc_json_path(doc, "metadata.name"));
    }
    json_decref(docs);
    pc_free_secret(text);
}

/* Every deploy file but the kustomization itself is a resource: nothing is forgotten. */
static void
test_every_embedded_file_is_listed(void **state)
{
    const struct ctl_manifest *k = NULL;
    struct pc_ynode *root = NULL;
    struct pc_diag d = {0};
    (void)state;

    for (const struct ctl_manifest *m = ctl_manifests; m->name; m++)
        if (strcmp(m->name, "kustomization.yaml") == 0)
            k = m;
    assert_non_null(k);
    assert_int_equal(pc_yaml_load(k->text, k->len, &root, &d), 0);
    json_t *res = pc_yaml_to_json(pc_ynode_get(root, "resources"));
    for (const struct ctl_manifest *m = ctl_manifests; m->name; m++) {
        size_t i, found = strcmp(m->name, "kustomization.yaml") == 0;
        json_t *r;
        json_array_foreach(res, i, r) found += strcmp(json_string_value(r), m->name) == 0;
        assert_int_equal(found, 1);
    }
    json_decref(res);
    pc_ynode_free(root);
}

static bool
is_b64url(const char *s)
{
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
           strlen(s);
}

static void
test_cookie_secret_fresh_each_run(void **state)
{
    char *t1 = NULL, *t2 = NULL;
    json_t *d1 = render_docs(&(struct ctl_bootstrap_opts){0}, &t1);
    json_t *d2 = render_docs(&(struct ctl_bootstrap_opts){0}, &t2);
    const char *s1 = cookie_secret(d1), *s2 = cookie_secret(d2);
    (void)state;

    assert_int_equal(strlen(s1), 43); /* 32 bytes, base64url without padding */
    assert_true(is_b64url(s1));
    assert_int_equal(strlen(s2), 43);
    assert_string_not_equal(s1, s2);
    json_t *sec = find_doc(d1, "Secret", "portcullis-cookie-secret");
    assert_string_equal(pc_json_path(sec, "metadata.namespace")
                            ? json_string_value(pc_json_path(sec, "metadata.namespace"))
                            : "",
                        "portcullis-system");
    json_decref(d1);
    json_decref(d2);
    pc_free_secret(t1);
    pc_free_secret(t2);
}

static void
test_given_cookie_secret_is_used(void **state)
{
    char *text = NULL;
    const char *given = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
    json_t *docs = render_docs(&(struct ctl_bootstrap_opts){.cookie_secret = given}, &text);
    (void)state;

    assert_string_equal(cookie_secret(docs), given);
    json_decref(docs);
    pc_free_secret(text);
}

static void
test_mesh_modes(void **state)
{
    static const struct {
        const char *mode;
        const char *args;
        bool mesh_rbac;
        bool shared_cm;
    } cases[] = {
        {NULL, "--mesh-config=istio", true, false},
        {"istio", "--mesh-config=istio", true, false},
        {"shared", "--mesh-config=shared", true, true},
        {"none", "--mesh-config=none", false, false},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = NULL;
        json_t *docs =
            render_docs(&(struct ctl_bootstrap_opts){.mesh_config = cases[i].mode}, &text);
        char *args = controller_args(docs);

        assert_non_null(strstr(args, cases[i].args));
        assert_non_null(strstr(args, "--leader-elect"));
        assert_int_equal(find_doc(docs, "Role", "portcullis-controller-mesh") != NULL,
                         cases[i].mesh_rbac);
        assert_int_equal(find_doc(docs, "ConfigMap", "portcullis-mesh") != NULL,
                         cases[i].shared_cm);
        assert_int_equal(strstr(text, "SHARED_MESH_CONFIG=portcullis-mesh") != NULL,
                         cases[i].shared_cm);
        free(args);
        json_decref(docs);
        pc_free_secret(text);
    }
}

static void
test_namespace_moves_everything(void **state)
{
    char *text = NULL;
    json_t *docs = render_docs(&(struct ctl_bootstrap_opts){.namespace = "auth"}, &text), *doc;
    size_t i;
    (void)state;

    assert_null(strstr(text, "portcullis-system"));
    assert_non_null(find_doc(docs, "Namespace", "auth"));
    json_array_foreach(docs, i, doc)
    {
        const char *ns = json_string_value(pc_json_path(doc, "metadata.namespace"));
        if (ns && strcmp(ns, "istio-system") != 0)
            assert_string_equal(ns, "auth");
    }
    json_t *crb = find_doc(docs, "ClusterRoleBinding", "portcullis-controller");
    json_t *subject = json_array_get(json_object_get(crb, "subjects"), 0);
    assert_string_equal(pc_json_str(subject, "namespace"), "auth");
    json_decref(docs);
    pc_free_secret(text);
}

/* --redis-*: authd gets the flags and the password's Secret as a file; nothing else changes. */
static void
test_redis(void **state)
{
    struct ctl_bootstrap_opts o = {.redis_url = "redis://r-master.portcullis-system.svc:6379",
                                   .redis_secret = "r-redis/redis-password",
                                   .redis_username = "portcullis",
                                   .cookie_secret = "s"};
    char *text = NULL, *plain = NULL;
    json_t *docs = render_docs(&o, &text),
           *base = render_docs(&(struct ctl_bootstrap_opts){.cookie_secret = "s"}, &plain);
    json_t *spec =
        pc_json_path(find_doc(docs, "Deployment", "portcullis-authd"), "spec.template.spec");
    json_t *c = json_array_get(json_object_get(spec, "containers"), 0);
    json_t *args = json_object_get(c, "args"),
           *vol = json_array_get(json_object_get(spec, "volumes"), 0);
    size_t n = json_array_size(args);

    (void)state;
    assert_string_equal(json_string_value(json_array_get(args, n - 3)),
                        "--redis-url=redis://r-master.portcullis-system.svc:6379");
    assert_string_equal(json_string_value(json_array_get(args, n - 2)),
                        "--redis-username=portcullis");
    assert_string_equal(json_string_value(json_array_get(args, n - 1)),
                        "--redis-password-file=/etc/portcullis/redis/password");
    assert_string_equal(
        pc_json_str(json_array_get(json_object_get(c, "volumeMounts"), 0), "mountPath"),
        "/etc/portcullis/redis");
    assert_string_equal(pc_json_str(vol, "name"), "redis-password");
    assert_string_equal(pc_json_str(json_object_get(vol, "secret"), "secretName"), "r-redis");
    assert_string_equal(pc_json_str(json_array_get(pc_json_path(vol, "secret.items"), 0), "key"),
                        "redis-password");
    assert_null(strstr(text, "redis-test-password"));
    /* every other document is as without --redis-* */
    assert_int_equal(json_array_size(docs), json_array_size(base));
    for (size_t i = 0; i < json_array_size(docs); i++)
        if (strcmp(pc_json_str(pc_json_path(json_array_get(docs, i), "metadata"), "name"),
                   "portcullis-authd") != 0 ||
            strcmp(pc_json_str(json_array_get(docs, i), "kind"), "Deployment") != 0)
            assert_true(json_equal(json_array_get(docs, i), json_array_get(base, i)));
    json_decref(docs);
    json_decref(base);
    pc_free_secret(text);
    pc_free_secret(plain);
}

/* The RBAC of the AuthorizationPolicies, the controller's flag and admission say the same. */
static void
test_gateway_namespaces(void **state)
{
    static const struct ctl_bootstrap_opts o = {.gateway_namespaces = "istio-system,gw-b",
                                                .mesh_config = "none"};
    char *text = NULL, *args, *cluster_role;
    json_t *docs = render_docs(&o, &text), *doc;
    size_t i, roles = 0;
    (void)state;

    args = controller_args(docs);
    assert_non_null(strstr(args, "--gateway-namespaces=istio-system,gw-b"));
    json_array_foreach(docs, i, doc)
    {
        if (strcmp(pc_json_str(doc, "kind"), "Role") == 0 &&
            strcmp(pc_json_str(json_object_get(doc, "metadata"), "name"),
                   "portcullis-controller-gateway") == 0) {
            const char *ns = pc_json_str(json_object_get(doc, "metadata"), "namespace");

            assert_string_equal(ns, roles++ ? "gw-b" : "istio-system");
        }
    }
    assert_int_equal(roles, 2);
    {
        const char *at = strstr(text, "expression: \"['istio-system', 'gw-b']\"");

        assert_non_null(at); /* in both admission policies */
        assert_non_null(strstr(at + 1, "expression: \"['istio-system', 'gw-b']\""));
    }
    /* Cluster-wide, the controller writes no AuthorizationPolicy. */
    cluster_role = pc_json_dumps_sorted(find_doc(docs, "ClusterRole", "portcullis-controller"));
    assert_null(strstr(cluster_role, "authorizationpolicies"));
    free(cluster_role);
    free(args);
    json_decref(docs);
    pc_free_secret(text);
}

static void
test_bad_options_refused(void **state)
{
    static const struct {
        struct ctl_bootstrap_opts o;
        const char *msg;
    } cases[] = {
        {{.mesh_config = "istiod"}, "unknown --mesh-config \"istiod\""},
        {{.mesh_config = ""}, "unknown --mesh-config"},
        {{.namespace = ""}, "invalid --namespace"},
        {{.namespace = "Auth"}, "invalid --namespace \"Auth\""},
        {{.namespace = "-auth"}, "invalid --namespace"},
        {{.namespace = "a_b"}, "invalid --namespace"},
        {{.namespace = "a234567890123456789012345678901234567890123456789012345678901234"},
         "invalid --namespace"},
        {{.redis_url = "http://r"}, "invalid --redis-url"},
        {{.redis_url = "redis://:pw@r"}, "invalid --redis-url"},
        {{.redis_url = "redis://r\n  evil: 1"}, "invalid --redis-url"},
        {{.redis_url = "redis://r", .redis_secret = "r-redis"}, "invalid --redis-secret"},
        {{.redis_url = "redis://r", .redis_secret = "R/k"}, "invalid --redis-secret"},
        {{.redis_url = "redis://r", .redis_secret = "r/k y"}, "invalid --redis-secret"},
        {{.redis_url = "redis://r", .redis_username = "a b"}, "invalid --redis-username"},
        {{.redis_secret = "r/k"}, "need --redis-url"},
        {{.gateway_namespaces = ""}, "invalid --gateway-namespaces"},
        {{.gateway_namespaces = "istio-system,"}, "invalid --gateway-namespaces"},
        {{.gateway_namespaces = "a,,b"}, "invalid --gateway-namespaces"},
        {{.gateway_namespaces = "Gateways"}, "invalid --gateway-namespaces \"Gateways\""},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pc_diag d = {0};
        char *text = (char *)"untouched";
        assert_int_equal(ctl_bootstrap_render(&cases[i].o, &text, &d), PC_EINVAL);
        assert_null(text);
        assert_non_null(strstr(d.msg, cases[i].msg));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_present),
        cmocka_unit_test(test_every_document_is_an_object),
        cmocka_unit_test(test_every_embedded_file_is_listed),
        cmocka_unit_test(test_cookie_secret_fresh_each_run),
        cmocka_unit_test(test_given_cookie_secret_is_used),
        cmocka_unit_test(test_mesh_modes),
        cmocka_unit_test(test_namespace_moves_everything),
        cmocka_unit_test(test_redis),
        cmocka_unit_test(test_gateway_namespaces),
        cmocka_unit_test(test_bad_options_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
