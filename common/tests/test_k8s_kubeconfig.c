/*
 * test_k8s_kubeconfig.c - kubeconfig and in-cluster configuration.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "portcullis/k8s.h"

static char dir[64];

static char *
write_file(const char *name, const char *text)
{
    char *path = pc_xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int
setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/test_k8s_kubeconfig.XXXXXX");
    assert_non_null(mkdtemp(dir));
    free(write_file("ca.pem", "CA-PEM\n"));
    free(write_file("client.crt", "CRT-PEM\n"));
    free(write_file("client.key", "KEY-PEM\n"));
    free(write_file("token", "file-token\n"));
    free(write_file("namespace", "sa-ns\n"));
    return 0;
}

static int
teardown(void **state)
{
    static const char *const files[] = {"ca.pem",    "client.crt", "client.key", "token",
                                        "namespace", "kubeconfig", "ca.crt"};
    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char *p = pc_xasprintf("%s/%s", dir, files[i]);
        unlink(p);
        free(p);
    }
    rmdir(dir);
    return 0;
}

#define CLUSTERS                                                                                   \
    "clusters:\n"                                                                                  \
    "- name: c1\n"                                                                                 \
    "  cluster:\n"                                                                                 \
    "    server: https://127.0.0.1:6443/\n"                                                        \
    "    certificate-authority-data: Q0EtREFUQQo=\n" /* "CA-DATA\n" */                             \
    "- name: c2\n"                                                                                 \
    "  cluster:\n"                                                                                 \
    "    server: https://10.0.0.2\n"                                                               \
    "    certificate-authority: ca.pem\n"                                                          \
    "- name: c3\n"                                                                                 \
    "  cluster: {server: 'https://c3:443', insecure-skip-tls-verify: true}\n"
#define USERS                                                                                      \
    "users:\n"                                                                                     \
    "- name: tok\n"                                                                                \
    "  user: {token: s3cret}\n"                                                                    \
    "- name: certdata\n"                                                                           \
    "  user:\n"                                                                                    \
    "    client-certificate-data: Q1JULURBVEEK\n" /* "CRT-DATA\n" */                               \
    "    client-key-data: S0VZLURBVEEK\n"         /* "KEY-DATA\n" */                               \
    "- name: certfile\n"                                                                           \
    "  user: {client-certificate: client.crt, client-key: client.key, tokenFile: token}\n"         \
    "- name: halfcert\n"                                                                           \
    "  user: {client-certificate: client.crt}\n"
#define CONTEXTS                                                                                   \
    "contexts:\n"                                                                                  \
    "- name: a\n"                                                                                  \
    "  context: {cluster: c1, user: tok, namespace: team-a}\n"                                     \
    "- name: b\n"                                                                                  \
    "  context: {cluster: c2, user: certdata}\n"                                                   \
    "- name: c\n"                                                                                  \
    "  context: {cluster: c3, user: certfile}\n"                                                   \
    "- name: half\n"                                                                               \
    "  context: {cluster: c1, user: halfcert}\n"                                                   \
    "- name: nouser\n"                                                                             \
    "  context: {cluster: c1}\n"                                                                   \
    "- name: ghost\n"                                                                              \
    "  context: {cluster: nowhere, user: tok}\n"

struct expect {
    const char *server, *ca_pem, *ca_file, *token, *token_file, *cert, *key, *ns;
    bool insecure;
};

static const char *
rel(const char *s, char *buf, size_t n)
{
    if (!s || s[0] == '/' || strncmp(s, "DIR/", 4) != 0)
        return s;
    snprintf(buf, n, "%s/%s", dir, s + 4);
    return buf;
}

static void
check_str(const char *what, const char *got, const char *want)
{
    char buf[256];

    want = rel(want, buf, sizeof(buf));
    if ((got == NULL) != (want == NULL) || (got && strcmp(got, want) != 0))
        fail_msg("%s: got '%s' want '%s'", what, got ? got : "(null)", want ? want : "(null)");
}

static void
test_contexts(void **state)
{
    static const struct {
        const char *current, *context;
        struct expect e;
    } t[] = {
        {"a",
         NULL,
         {.server = "https://127.0.0.1:6443",
          .ca_pem = "CA-DATA\n",
          .token = "s3cret",
          .ns = "team-a"}},
        {"a",
         "b",
         {.server = "https://10.0.0.2",
          .ca_file = "DIR/ca.pem",
          .cert = "CRT-DATA\n",
          .key = "KEY-DATA\n",
          .ns = "default"}},
        {"",
         "c",
         {.server = "https://c3:443",
          .insecure = true,
          .cert = "CRT-PEM\n",
          .key = "KEY-PEM\n",
          .token_file = "DIR/token",
          .ns = "default"}},
        {"nouser",
         NULL,
         {.server = "https://127.0.0.1:6443", .ca_pem = "CA-DATA\n", .ns = "default"}},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *text = pc_xasprintf(
            "apiVersion: v1\nkind: Config\ncurrent-context: '%s'\n" CLUSTERS USERS CONTEXTS,
            t[i].current);
        char *path = write_file("kubeconfig", text);
        struct k8s_config c;
        struct pc_diag d = {0};
        k8s_config_init(&c);
        if (k8s_config_from_kubeconfig(&c, path, t[i].context, &d) != 0)
            fail_msg("case %zu: %s", i, d.msg);
        check_str("server", c.server, t[i].e.server);
        check_str("ca_pem", c.ca_pem, t[i].e.ca_pem);
        check_str("ca_file", c.ca_file, t[i].e.ca_file);
        check_str("token", c.token, t[i].e.token);
        check_str("token_file", c.token_file, t[i].e.token_file);
        check_str("cert", c.client_cert_pem, t[i].e.cert);
        check_str("key", c.client_key_pem, t[i].e.key);
        check_str("namespace", c.namespace, t[i].e.ns);
        assert_int_equal(c.insecure_skip_verify, t[i].e.insecure);
        k8s_config_release(&c);
        free(path);
        free(text);
    }
}

static void
test_errors(void **state)
{
    static const struct {
        const char *text, *context;
        int rc;
        int line;
        const char *msg;
    } t[] = {
        {"apiVersion: v1\n" CLUSTERS USERS CONTEXTS, NULL, PC_EINVAL, 1,
         "missing field 'current-context' (and no context was named)"},
        {"current-context: zz\n" CLUSTERS USERS CONTEXTS, NULL, PC_EINVAL, 0,
         "context 'zz' not found in 'contexts'"},
        {"current-context: ghost\n" CLUSTERS USERS CONTEXTS, NULL, PC_EINVAL, 0,
         "cluster 'nowhere' not found in 'clusters'"},
        {"current-context: half\n" CLUSTERS USERS CONTEXTS, NULL, PC_EINVAL, 0,
         "user needs both a client certificate and a client key"},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: y}}]\n"
         "clusters: [{name: y, cluster: {insecure-skip-tls-verify: true}}]\n",
         NULL, PC_EINVAL, 3, "missing field 'server'"},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: y}}]\n"
         "clusters: [{name: y, cluster: {server: [1]}}]\n",
         NULL, PC_EINVAL, 3, "field 'server' must be a string"},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: y, user: u}}]\n"
         "clusters: [{name: y, cluster: {server: 'https://y'}}]\n"
         "users: [{name: u, user: {client-certificate-data: '!!!', client-key-data: 'S0'}}]\n",
         NULL, PC_EINVAL, 4, "field 'client-certificate-data' is not base64"},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: y, user: u}}]\n"
         "clusters: [{name: y, cluster: {server: 'https://y'}}]\n"
         "users: [{name: u, user: {exec: {command: aws}}}]\n",
         NULL, PC_EINVAL, 4, "unsupported user credential 'exec'"},
        {"- a list\n", NULL, PC_EINVAL, 1, "kubeconfig must be a map"},
        {"current-context: [unterminated\n", NULL, PC_EPARSE, -1, NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *path = write_file("kubeconfig", t[i].text);
        struct k8s_config c;
        struct pc_diag d = {0};
        int rc;
        k8s_config_init(&c);
        rc = k8s_config_from_kubeconfig(&c, path, t[i].context, &d);
        if (rc != t[i].rc || (t[i].msg && strcmp(d.msg, t[i].msg) != 0) ||
            (t[i].line >= 0 && t[i].line && d.line != t[i].line))
            fail_msg("case %zu: rc %d line %d msg '%s'", i, rc, d.line, d.msg);
        assert_string_equal(d.file, path);
        assert_null(c.server); /* nothing half-filled on failure */
        k8s_config_release(&c);
        free(path);
    }
}

static void
test_missing_file(void **state)
{
    struct k8s_config c;
    struct pc_diag d = {0};
    char buf[600];

    (void)state;
    k8s_config_init(&c);
    setenv("KUBECONFIG", "/nonexistent/kubeconfig:/other", 1);
    assert_int_equal(k8s_config_load(&c, NULL, NULL, &d), -ENOENT);
    pc_diag_format(&d, buf, sizeof(buf));
    assert_non_null(strstr(buf, "/nonexistent/kubeconfig"));
    unsetenv("KUBECONFIG");
}

static void
test_kubeconfig_env(void **state)
{
    char *path = write_file("kubeconfig", "current-context: a\n" CLUSTERS USERS CONTEXTS);
    struct k8s_config c;
    struct pc_diag d = {0};

    (void)state;
    k8s_config_init(&c);
    setenv("KUBECONFIG", path, 1);
    setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1); /* KUBECONFIG wins */
    assert_int_equal(k8s_config_load(&c, NULL, NULL, &d), 0);
    assert_string_equal(c.token, "s3cret");
    k8s_config_release(&c);
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    free(path);
}

static void
test_in_cluster(void **state)
{
    struct k8s_config c;
    struct pc_diag d = {0};
    char want[128];

    (void)state;
    k8s_config_init(&c);
    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(k8s_config_in_cluster(&c, dir, &d), PC_ENOTFOUND);
    assert_non_null(strstr(d.msg, "KUBERNETES_SERVICE_HOST"));

    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(k8s_config_in_cluster(&c, dir, &d), 0);
    assert_string_equal(c.server, "https://10.96.0.1:443");
    snprintf(want, sizeof(want), "%s/token", dir);
    assert_string_equal(c.token_file, want);
    snprintf(want, sizeof(want), "%s/ca.crt", dir);
    assert_string_equal(c.ca_file, want);
    assert_string_equal(c.namespace, "sa-ns");
    assert_null(c.token); /* read by the client, and re-read when kubelet rotates it */
    k8s_config_release(&c);

    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    assert_int_equal(k8s_config_in_cluster(&c, dir, &d), 0);
    assert_string_equal(c.server, "https://[fd00::1]:443");
    k8s_config_release(&c);

    assert_int_equal(k8s_config_in_cluster(&c, "/nonexistent", &d), -ENOENT);
    assert_non_null(strstr(d.msg, "/nonexistent/token"));
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contexts),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_missing_file), cmocka_unit_test(test_kubeconfig_env),
        cmocka_unit_test(test_in_cluster),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
