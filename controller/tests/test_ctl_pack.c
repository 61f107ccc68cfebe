/*
 * test_ctl_pack.c - the cache's packed texts: what goes in comes out, an ordinary
 * ProtectedHost packs small, and corrupt, truncated or oversized input is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller.h"

/* An ordinary ProtectedHost as the apiserver returns it (defaults filled in, a status). */
static const char ordinary[] =
    "{\"apiVersion\":\"portcullis.io/v1alpha1\",\"kind\":\"ProtectedHost\",\"metadata\":{"
    "\"creationTimestamp\":\"2026-12-01T13:49:51Z\",\"finalizers\":[\"portcullis.io/cleanup\"],"
    "\"generation\":1,\"name\":\"ph-4711\",\"namespace\":\"bench\",\"resourceVersion\":\"90211\","
    "\"uid\":\"9a1e22c3-1111-4bbb-9ccc-77aa88bb99dd\"},\"spec\":{\"access\":{"
    "\"allowUnverifiedEmail\":false,\"allowedEmailDomains\":[],\"allowedEmails\":[],"
    "\"allowedGroups\":[\"team-11-devs\",\"team-11-admins\"]},\"bearerTokens\":{\"audiences\":[],"
    "\"enabled\":false},\"gateway\":{\"namespace\":\"istio-system\"},\"hosts\":["
    "\"app-4711.apps.example.com\"],\"mode\":\"Enforce\",\"oidc\":{\"callbackPath\":"
    "\"/oauth2/callback\",\"claims\":{\"email\":\"email\",\"groups\":\"groups\",\"username\":"
    "\"preferred_username\"},\"clientID\":\"bench\",\"clientSecretRef\":{\"key\":\"client-secret\","
    "\"name\":\"oidc\"},\"issuerURL\":\"https://idp.bench.invalid\",\"scopes\":[\"openid\","
    "\"email\",\"profile\"]},\"passIDToken\":false,\"paths\":{\"api\":[],\"skip\":[]},\"session\":{"
    "\"cookieDomain\":\"\",\"cookieName\":\"_portcullis\",\"lifetime\":\"12h\",\"refresh\":\"0s\","
    "\"sameSite\":\"Lax\",\"store\":\"cookie\"},\"upstreamHeaders\":[{\"claim\":\"sub\",\"name\":"
    "\"X-Auth-Request-User\"},{\"claim\":\"email\",\"name\":\"X-Auth-Request-Email\"},{\"claim\":"
    "\"preferred_username\",\"name\":\"X-Auth-Request-Preferred-Username\"},{\"claim\":\"groups\","
    "\"name\":\"X-Auth-Request-Groups\"}]}}";

static void
test_round_trip_and_size(void **state)
{
    char *packed = ctl_pack_text(ordinary, strlen(ordinary)), *back = NULL;

    (void)state;
    assert_int_equal(ctl_unpack_text(packed, CTL_MAX_OBJECT_TEXT, &back), 0);
    assert_string_equal(back, ordinary);
    /* The point of packing: an ordinary host costs a fraction of its text. */
    assert_true(strlen(packed) * 5 < strlen(ordinary));
    free(back);
    free(packed);
}

static void
test_unlike_the_dictionary_and_empty(void **state)
{
    size_t n = 300000;
    char *big = malloc(n + 1), *packed, *back = NULL;
    uint32_t x = 12345;

    (void)state;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (char)(' ' + (x >> 16) % 90);
    }
    big[n] = '\0';
    packed = ctl_pack_text(big, n);
    assert_int_equal(ctl_unpack_text(packed, CTL_MAX_OBJECT_TEXT, &back), 0);
    assert_memory_equal(back, big, n + 1);
    free(back);
    /* More than max: refused, not cut. */
    assert_int_equal(ctl_unpack_text(packed, n - 1, &back), PC_EINVAL);
    assert_null(back);
    free(packed);
    free(big);
    packed = ctl_pack_text("", 0);
    assert_int_equal(ctl_unpack_text(packed, 10, &back), 0);
    assert_string_equal(back, "");
    free(back);
    free(packed);
}

static void
test_corrupt_and_truncated_refused(void **state)
{
    char *packed = ctl_pack_text(ordinary, strlen(ordinary)), *back = NULL;
    size_t len = strlen(packed);

    (void)state;
    packed[len / 2] = '\0'; /* truncated */
    assert_int_equal(ctl_unpack_text(packed, CTL_MAX_OBJECT_TEXT, &back), PC_EINVAL);
    assert_null(back);
    assert_int_equal(ctl_unpack_text("not base64!", CTL_MAX_OBJECT_TEXT, &back), PC_EINVAL);
    assert_int_equal(ctl_unpack_text("AAAAAAAAAAAAAAAA", CTL_MAX_OBJECT_TEXT, &back), PC_EINVAL);
    assert_null(back);
    free(packed);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_size),
        cmocka_unit_test(test_unlike_the_dictionary_and_empty),
        cmocka_unit_test(test_corrupt_and_truncated_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
