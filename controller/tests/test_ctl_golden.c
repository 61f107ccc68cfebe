/*
 * test_ctl_golden.c - `render` output for the examples, byte for byte against
 * controller/tests/golden/<case>/. After an intended change, regenerate with
 *
 *   CTL_UPDATE_GOLDEN=1 build/test_ctl_golden
 *
 * and review the diff. Paths are relative to the repository root (CTL_SOURCE_ROOT).
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "controller.h"

#define GOLDEN "controller/tests/golden"

struct golden_case {
    const char *name;
    int exit_code;
    const char *args[12]; /* after "render", NULL-terminated */
};

static const struct golden_case cases[] = {
    {"echoserver", 0, {"-f", "examples/echoserver.yaml"}},
    {"grafana", 0, {"-f", "examples/grafana.yaml"}},
    {"api-bearer", 0, {"-f", "examples/api-bearer.yaml"}},
    {"two-apps", 0, {"-f", "examples/two-apps.yaml"}},
    {"all-examples",
     0,
     {"-f", "examples/api-bearer.yaml", "-f", "examples/echoserver.yaml", "-f",
      "examples/grafana.yaml", "-f", "examples/two-apps.yaml"}},
    {"secret-file",
     0,
     {"-f", "examples/echoserver.yaml", "--secret-file",
      "test-auth/echo-oidc/client-secret=controller/tests/data/"
      "echo-client-secret.txt",
      "--authd-namespace", "auth", "--authd-service", "authd", "--authd-port", "8080",
      "--allow-insecure-issuers"}},
    /* A ServiceEntry per distinct issuer host, in authd's namespace. */
    {"egress",
     0,
     {"-f", "examples/echoserver.yaml", "controller/tests/data/egress.yaml",
      "--egress-service-entries", "--authd-namespace", "auth"}},
    /* spec.ingress: no AuthorizationPolicy, the Ingress annotations instead. */
    {"ingress-nginx", 0, {"-f", "examples/ingress-nginx/wiki.yaml"}},
    /* Sidecar mode next to a gateway host: the workload's policy, the local provider, the
     * namespace's ServiceEntry and shard; the central shards without the sidecar entry. */
    {"sidecar", 0, {"-f", "examples/echoserver.yaml", "examples/sidecar/protectedhost.yaml"}},
    {"invalid", 1, {"-f", "controller/tests/data/invalid.yaml"}},
    /* Under an admin policy: authd's entry carries the issuer prefixes that admitted it. */
    {"policy",
     0,
     {"-f", "examples/echoserver.yaml", "--policy", "controller/tests/data/policy.yaml"}},
    /* Outside it (host, gateway, issuer, namespace): refused, one line each, nothing written. */
    {"policy-refused",
     1,
     {"-f", "controller/tests/data/tenants.yaml", "--policy", "controller/tests/data/policy.yaml"}},
    /* The policy comes from --policy only, never from the files it judges. */
    {"policy-among-inputs",
     1,
     {"-f", "examples/echoserver.yaml", "controller/tests/data/policy.yaml"}},
    {"cookie-conflict", 1, {"-f", "controller/tests/data/cookie-conflict.yaml"}},
    /* What a shell makes of "-f examples/<glob>.yaml": one -f, several paths. */
    {"one-f-many-paths",
     0,
     {"-f", "examples/api-bearer.yaml", "examples/echoserver.yaml", "examples/grafana.yaml",
      "examples/two-apps.yaml"}},
    /* Refused arguments are named. */
    {"path-without-f", 2, {"examples/echoserver.yaml"}},
    {"bad-port", 2, {"--authd-port", "80x", "-f", "examples/echoserver.yaml"}},
    {"bad-secret-file", 2, {"--secret-file", "nopath", "-f", "examples/echoserver.yaml"}},
};

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct pc_buf b;
    char chunk[4096];
    size_t n;

    if (!f)
        return NULL;
    pc_buf_init(&b, 0);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        pc_buf_append(&b, chunk, n);
    fclose(f);
    return pc_buf_detach(&b);
}

static void
spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs render with stdout and stderr captured into dir/stdout.yaml and dir/stderr.txt. */
static int
run_render(const struct golden_case *c, const char *dir)
{
    char *argv[16] = {(char *)"render"};
    int argc = 1, rc, out_fd = dup(1), err_fd = dup(2);
    char *out = pc_xasprintf("%s/stdout.yaml", dir), *err = pc_xasprintf("%s/stderr.txt", dir);
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    for (size_t i = 0; c->args[i]; i++)
        argv[argc++] = (char *)c->args[i];
    fflush(stdout);
    fflush(stderr);
    dup2(fo, 1);
    dup2(fe, 2);
    rc = ctl_cmd_render(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    close(fo);
    close(fe);
    close(out_fd);
    close(err_fd);
    free(out);
    free(err);
    return rc;
}

static void
check_file(const char *got_dir, const char *want_dir, const char *name, bool update)
{
    char *got_path = pc_xasprintf("%s/%s", got_dir, name);
    char *want_path = pc_xasprintf("%s/%s", want_dir, name);
    char *got = slurp(got_path), *want = slurp(want_path);

    assert_non_null(got);
    if (update) {
        spit(want_path, got);
    } else {
        if (!want)
            fail_msg("%s: missing (regenerate with CTL_UPDATE_GOLDEN=1)", want_path);
        if (strcmp(got, want) != 0)
            fail_msg("%s differs from %s (regenerate with CTL_UPDATE_GOLDEN=1 after review)",
                     got_path, want_path);
    }
    free(got);
    free(want);
    free(got_path);
    free(want_path);
}

static void
test_golden(void **state)
{
    bool update = getenv("CTL_UPDATE_GOLDEN") != NULL;

    (void)state;
    assert_int_equal(chdir(CTL_SOURCE_ROOT), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char tmpl[] = "/tmp/ctl-golden-XXXXXX";
        char *dir = mkdtemp(tmpl);
        char *want = pc_xasprintf("%s/%s", GOLDEN, cases[i].name);
        char *cmd;

        assert_non_null(dir);
        assert_int_equal(run_render(&cases[i], dir), cases[i].exit_code);
        if (update)
            mkdir(want, 0755);
        check_file(dir, want, "stdout.yaml", update);
        check_file(dir, want, "stderr.txt", update);
        cmd = pc_xasprintf("rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(want);
    }
}

/* One -f with several paths renders exactly what one -f per path renders. */
static void
test_one_f_is_many_f(void **state)
{
    char *a, *b;

    (void)state;
    assert_int_equal(chdir(CTL_SOURCE_ROOT), 0);
    a = slurp(GOLDEN "/all-examples/stdout.yaml");
    b = slurp(GOLDEN "/one-f-many-paths/stdout.yaml");
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void
test_outdir_matches_stream(void **state)
{
    static const struct golden_case c = {"outdir",
                                         0,
                                         {"-f", "examples/api-bearer.yaml", "-f",
                                          "examples/echoserver.yaml", "-f", "examples/grafana.yaml",
                                          "-f", "examples/two-apps.yaml", "-o", NULL}};
    struct golden_case oc = c;
    char tmpl[] = "/tmp/ctl-golden-XXXXXX";
    char *dir = mkdtemp(tmpl), *out = pc_xasprintf("%s/out", dir);
    char *files[] = {"authorizationpolicy-portcullis-test-auth-echo.yaml", "mesh-config.yaml",
                     "istio-values.yaml", "authd-config-secrets.yaml"};
    char *stream = NULL, *cmd;

    (void)state;
    assert_int_equal(chdir(CTL_SOURCE_ROOT), 0);
    oc.args[9] = out;
    assert_int_equal(run_render(&oc, dir), 0);
    stream = slurp(GOLDEN "/all-examples/stdout.yaml");
    assert_non_null(stream);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char *p = pc_xasprintf("%s/%s", out, files[i]);
        char *text = slurp(p);

        assert_non_null(text);
        assert_non_null(strstr(stream, text)); /* each file is one document of the stream */
        free(text);
        free(p);
    }
    free(stream);
    cmd = pc_xasprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_outdir_matches_stream),
        cmocka_unit_test(test_one_f_is_many_f),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
