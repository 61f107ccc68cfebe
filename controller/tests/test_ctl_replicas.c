/*
 * test_ctl_replicas.c - reading authd replicas' Leases: live or expired, loaded, lagging,
 * rejected, none.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller.h"

/* 2026-01-01T00:00:00Z */
#define NOW 1767225600

static const struct {
    const char *what, *leases;
    unsigned shard;
    long long gen;
    enum ctl_enforce want;
    const char *why; /* substring, NULL when enforced */
} cases[] = {
    {"both replicas loaded it",
     "{\"a\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"00=3,0a=12\"}},"
     "\"spec\":{\"holderIdentity\":\"authd-a\",\"renewTime\":\"2026-01-01T00:00:00.000000Z\","
     "\"leaseDurationSeconds\":15}},"
     "\"b\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"0a=13\"}},"
     "\"spec\":{\"holderIdentity\":\"authd-b\",\"renewTime\":\"2025-12-31T23:59:55Z\","
     "\"leaseDurationSeconds\":15}}}",
     10, 12, CTL_ENFORCED, NULL},
    {"one lags",
     "{\"a\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"0a=12\"}},"
     "\"spec\":{\"holderIdentity\":\"authd-a\",\"renewTime\":\"2026-01-01T00:00:00Z\"}},"
     "\"b\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"0a=11,0b=12\"}},"
     "\"spec\":{\"holderIdentity\":\"authd-b\",\"renewTime\":\"2026-01-01T00:00:00Z\"}}}",
     10, 12, CTL_ENFORCE_PENDING,
     "waiting for authd to load shard portcullis-authd-config-0a generation 12: authd-b (has 11)"},
    {"shard missing from the list",
     "{\"a\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"00=1\"}},"
     "\"spec\":{\"holderIdentity\":\"authd-a\",\"renewTime\":\"2026-01-01T00:00:00Z\"}}}",
     1, 1, CTL_ENFORCE_PENDING, "authd-a (has 0)"},
    {"an expired lease does not count",
     "{\"a\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"0a=12\"}},"
     "\"spec\":{\"holderIdentity\":\"authd-a\",\"renewTime\":\"2026-01-01T00:00:00Z\"}},"
     "\"old\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"0a=1\"}},"
     "\"spec\":{\"holderIdentity\":\"gone\",\"renewTime\":\"2025-12-31T23:50:00Z\","
     "\"leaseDurationSeconds\":15}}}",
     10, 12, CTL_ENFORCED, NULL},
    {"rejected",
     "{\"a\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"0a=11\","
     "\"portcullis.io/rejected\":\"0a=12\"}},"
     "\"spec\":{\"holderIdentity\":\"authd-a\",\"renewTime\":\"2026-01-01T00:00:00Z\"}}}",
     10, 12, CTL_ENFORCE_REJECTED, "generation 12 was rejected by authd-a"},
    {"an older rejection does not matter",
     "{\"a\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"0a=13\","
     "\"portcullis.io/rejected\":\"0a=12\"}},"
     "\"spec\":{\"holderIdentity\":\"authd-a\",\"renewTime\":\"2026-01-01T00:00:00Z\"}}}",
     10, 13, CTL_ENFORCED, NULL},
    {"prefix of another shard name is not it",
     "{\"a\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"0a0=99\"}},"
     "\"spec\":{\"holderIdentity\":\"authd-a\",\"renewTime\":\"2026-01-01T00:00:00Z\"}}}",
     10, 1, CTL_ENFORCE_PENDING, "authd-a (has 0)"},
    {"no replicas", "{}", 0, 1, CTL_ENFORCE_NO_REPLICA, "no portcullis-authd replica"},
    {"no renew time",
     "{\"a\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"00=1\"}},\"spec\":{}}}", 0,
     1, CTL_ENFORCE_NO_REPLICA, "--watch-config"},
};

static void
test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *leases = json_loads(cases[i].leases, 0, NULL);
        char *why = NULL;
        enum ctl_enforce e;

        assert_non_null(leases);
        e = ctl_replicas_enforce(leases, NOW, cases[i].shard, cases[i].gen, &why);
        if (e != cases[i].want)
            fail_msg("%s: got %d (%s), want %d", cases[i].what, e, why ? why : "", cases[i].want);
        if (cases[i].why == NULL)
            assert_null(why);
        else if (why == NULL || strstr(why, cases[i].why) == NULL)
            fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].what, why ? why : "", cases[i].why);
        free(why);
        json_decref(leases);
    }
}

static void
test_min_loaded(void **state)
{
    json_t *leases = json_loads(
        "{\"a\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"00=5,01=7,02=3\","
        "\"portcullis.io/rejected\":\"02=4\"}},"
        "\"spec\":{\"holderIdentity\":\"a\",\"renewTime\":\"2026-01-01T00:00:00Z\"}},"
        "\"b\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"00=6,01=2\"}},"
        "\"spec\":{\"holderIdentity\":\"b\",\"renewTime\":\"2026-01-01T00:00:00Z\"}},"
        "\"gone\":{\"metadata\":{\"annotations\":{\"portcullis.io/loaded\":\"00=1\"}},"
        "\"spec\":{\"holderIdentity\":\"gone\",\"renewTime\":\"2025-01-01T00:00:00Z\"}}}",
        0, NULL);
    long long min[4];

    (void)state;
    ctl_replicas_min_loaded(leases, NOW, 4, min);
    assert_int_equal(min[0], 5); /* the expired lease does not count */
    assert_int_equal(min[1], 2);
    assert_int_equal(min[2], 0); /* b lacks it; a refused a newer one */
    assert_int_equal(min[3], 0);
    json_decref(leases);
    leases = json_object();
    ctl_replicas_min_loaded(leases, NOW, 4, min);
    assert_true(min[0] == LLONG_MAX); /* nobody to wait for */
    json_decref(leases);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cases),
                                       cmocka_unit_test(test_min_loaded)};

    return cmocka_run_group_tests(tests, NULL, NULL);
}
