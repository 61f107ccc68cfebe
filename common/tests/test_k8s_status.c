/*
 * test_k8s_status.c - API paths and the mapping of error answers (Status objects) to codes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis/k8s.h"

#define STATUS(reason, code, msg)                                                                  \
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","           \
    "\"message\":\"" msg "\",\"reason\":\"" reason "\",\"code\":" #code "}"

static void
test_status_table(void **state)
{
    static const struct {
        long http;
        const char *body;
        int rc;
        const char *msg;
    } t[] = {
        {404, STATUS("NotFound", 404, "configmaps \\\"x\\\" not found"), K8S_ENOTFOUND,
         "configmaps \"x\" not found (HTTP 404 NotFound)"},
        {409, STATUS("Conflict", 409, "the object has been modified"), K8S_ECONFLICT,
         "the object has been modified (HTTP 409 Conflict)"},
        {409, STATUS("AlreadyExists", 409, "leases \\\"l\\\" already exists"), K8S_ECONFLICT,
         "leases \"l\" already exists (HTTP 409 AlreadyExists)"},
        {410, STATUS("Expired", 410, "too old resource version"), K8S_EGONE,
         "too old resource version (HTTP 410 Expired)"},
        {422, STATUS("Invalid", 422, "spec.hosts: Required value"), K8S_EINVALID,
         "spec.hosts: Required value (HTTP 422 Invalid)"},
        {400, STATUS("BadRequest", 400, "bad"), K8S_EINVALID, "bad (HTTP 400 BadRequest)"},
        {403, STATUS("Forbidden", 403, "forbidden: no"), K8S_EFORBIDDEN,
         "forbidden: no (HTTP 403 Forbidden)"},
        {401, "{\"kind\":\"Status\",\"message\":\"Unauthorized\",\"code\":401}", K8S_EFORBIDDEN,
         "Unauthorized (HTTP 401)"},
        {500, STATUS("InternalError", 500, "etcd down"), K8S_EHTTP,
         "etcd down (HTTP 500 InternalError)"},
        {502, "<html>\r\nbad gateway</html>", K8S_EHTTP, "HTTP 502: <html>  bad gateway</html>"},
        {503, "", K8S_EHTTP, "HTTP 503"},
        {429, "{\"not\":\"a status\"}", K8S_EHTTP, "HTTP 429: {\"not\":\"a status\"}"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct pc_diag d = {0};
        assert_int_equal(k8s_status_error(t[i].http, t[i].body, strlen(t[i].body), &d), t[i].rc);
        assert_string_equal(d.msg, t[i].msg);
    }
}

/* 404 and 409 must stay distinguishable from each other and from transport failures. */
static void
test_codes_distinct(void **state)
{
    static const int codes[] = {K8S_ENOTFOUND,  K8S_ECONFLICT, K8S_EGONE, K8S_EINVALID,
                                K8S_EFORBIDDEN, K8S_EHTTP,     PC_EIO,    PC_EPARSE};

    (void)state;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        for (size_t j = i + 1; j < sizeof(codes) / sizeof(codes[0]); j++)
            assert_int_not_equal(codes[i], codes[j]);
}

static void
test_path_table(void **state)
{
    static const struct {
        struct k8s_ref ref;
        const char *path;
    } t[] = {
        {{.api_version = "v1", .plural = "configmaps"}, "/api/v1/configmaps"},
        {{.api_version = "v1", .plural = "configmaps", .namespace = "ns", .name = "x"},
         "/api/v1/namespaces/ns/configmaps/x"},
        {{.api_version = "portcullis.io/v1alpha1",
          .plural = "protectedhosts",
          .namespace = "a",
          .name = "echo",
          .subresource = "status"},
         "/apis/portcullis.io/v1alpha1/namespaces/a/protectedhosts/echo/status"},
        {{.api_version = "coordination.k8s.io/v1", .plural = "leases", .namespace = "s"},
         "/apis/coordination.k8s.io/v1/namespaces/s/leases"},
        {{.api_version = "apiextensions.k8s.io/v1",
          .plural = "customresourcedefinitions",
          .name = "x.io"},
         "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.io"},
        /* A subresource needs an object. */
        {{.api_version = "v1", .plural = "pods", .subresource = "status"}, "/api/v1/pods"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *p = k8s_path(&t[i].ref);
        assert_string_equal(p, t[i].path);
        free(p);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_codes_distinct),
        cmocka_unit_test(test_path_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
