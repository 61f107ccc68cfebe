/*
 * test_k8s_lease.c - the leader-election decision and Kubernetes time parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis/k8s.h"

/* 2024-01-02T03:04:05Z */
#define T0 ((time_t)1704164645)

static void
test_parse_time(void **state)
{
    static const struct {
        const char *s;
        int rc;
        time_t t;
    } t[] = {
        {"2024-01-02T03:04:05Z", 0, T0},       {"2024-01-02T03:04:05.123456Z", 0, T0},
        {"2024-01-02T04:04:05+01:00", 0, T0},  {"2024-01-02T02:04:05.5-01:00", 0, T0},
        {"1970-01-01T00:00:00Z", 0, 0},        {"2024-01-02 03:04:05Z", PC_EPARSE, 0},
        {"2024-01-02T03:04:05", PC_EPARSE, 0}, {"2024-01-02T03:04:05Zjunk", PC_EPARSE, 0},
        {"2024-1-2T3:4:5Z", PC_EPARSE, 0},     {"", PC_EPARSE, 0},
        {"yesterday", PC_EPARSE, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        time_t out = 0;
        int rc = k8s_parse_time(t[i].s, &out);
        if (rc != t[i].rc || (rc == 0 && out != t[i].t))
            fail_msg("'%s': rc %d time %lld", t[i].s, rc, (long long)out);
    }
}

static void
test_acquirable(void **state)
{
    static const struct {
        const char *spec;
        time_t now;
        bool ok;
    } t[] = {
        {"{}", T0, true},
        {"{\"holderIdentity\":\"\"}", T0, true},
        {"{\"holderIdentity\":\"me\",\"renewTime\":\"2024-01-02T03:04:05.000000Z\","
         "\"leaseDurationSeconds\":15}",
         T0 + 1, true},
        {"{\"holderIdentity\":\"other\",\"renewTime\":\"2024-01-02T03:04:05.000000Z\","
         "\"leaseDurationSeconds\":15}",
         T0 + 14, false},
        {"{\"holderIdentity\":\"other\",\"renewTime\":\"2024-01-02T03:04:05.000000Z\","
         "\"leaseDurationSeconds\":15}",
         T0 + 15, true},
        {"{\"holderIdentity\":\"other\",\"acquireTime\":\"2024-01-02T03:04:05.000000Z\","
         "\"leaseDurationSeconds\":15}",
         T0 + 3, false},
        {"{\"holderIdentity\":\"other\",\"leaseDurationSeconds\":15}", T0, true},
        {"{\"holderIdentity\":\"other\",\"renewTime\":\"garbage\"}", T0, true},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        json_t *lease = json_pack("{s:o}", "spec", json_loads(t[i].spec, 0, NULL));
        if (k8s_lease_acquirable(lease, "me", t[i].now) != t[i].ok)
            fail_msg("case %zu (%s) at +%lld", i, t[i].spec, (long long)(t[i].now - T0));
        json_decref(lease);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_acquirable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
