/*
 * test_revoke.c - what a revocation list means for a session: who matches (sub exactly, email
 * without case), when (issued at or before notBefore), where (hosts, wildcards, ports), the
 * host's current lifetime, and the login that follows a revocation in the same second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "authd.h"

#define T0 1764583200 /* 2025-12-01T10:00:00Z */

static const char list_doc[] = "revocations:\n"
                               "- {user: Alice@Example.com, notBefore: 2025-12-01T10:00:00Z}\n"
                               "- {user: sub-bob, notBefore: 2025-12-01T10:00:00Z,\n"
                               "   hosts: [echo.example.com, \"*.apps.example.com\"]}\n"
                               "- {user: CaseSub, notBefore: 2025-12-01T09:00:00Z}\n";

static const struct {
    const char *what;
    const char *sub, *email;
    int64_t issued_at;
    const char *host;
    bool revoked;
} cases[] = {
    {"email, other case", "s1", "alice@EXAMPLE.com", T0 - 10, "grafana.example.com", true},
    {"email, issued in the revoking second", "s1", "alice@example.com", T0, "x.example.com", true},
    {"email, issued after", "s1", "alice@example.com", T0 + 1, "x.example.com", false},
    {"sub equal to an email entry", "Alice@Example.com", NULL, T0 - 1, "x.example.com", true},
    {"another email", "s1", "alice2@example.com", T0 - 10, "x.example.com", false},
    {"no email, no sub match", "s1", NULL, T0 - 10, "x.example.com", false},
    {"sub, scoped host", "sub-bob", "bob@example.com", T0 - 10, "echo.example.com", true},
    {"sub, scoped host with port and case", "sub-bob", NULL, T0 - 10, "ECHO.example.com:8443",
     true},
    {"sub, trailing dot", "sub-bob", NULL, T0 - 10, "echo.example.com.", true},
    {"sub, wildcard host", "sub-bob", NULL, T0 - 10, "a.b.apps.example.com", true},
    {"sub, wildcard's own name is not under it", "sub-bob", NULL, T0 - 10, "apps.example.com",
     false},
    {"sub, host out of scope", "sub-bob", NULL, T0 - 10, "grafana.example.com", false},
    {"sub, host that is no host name", "sub-bob", NULL, T0 - 10, "echo.example.com@x", false},
    {"sub differs in case", "sub-BOB", NULL, T0 - 10, "echo.example.com", false},
    {"sub entries are exact: CaseSub", "CaseSub", NULL, T0 - 3600, "x.example.com", true},
    {"email rule folds: casesub as email", "z", "casesub", T0 - 3600, "x.example.com", true},
    {"sub entries are exact: casesub", "casesub", NULL, T0 - 3600, "x.example.com", false},
};

static struct authd_revocations *
list_of(const char *doc, int64_t now)
{
    struct pc_revocations l;
    struct pc_diag d = {0};

    assert_int_equal(pc_revocations_parse(doc, strlen(doc), &l, &d), 0);
    return authd_revocations_new(&l, now);
}

static void
test_match(void **state)
{
    struct authd_revocations *r = list_of(list_doc, T0 + 60);

    (void)state;
    assert_int_equal(authd_revocations_count(r), 3);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_session s = {
            .id = {.sub = (char *)cases[i].sub, .email = (char *)cases[i].email},
            .issued_at = cases[i].issued_at};
        bool got = authd_revocations_match(r, &s, cases[i].host) != NULL;

        if (got != cases[i].revoked)
            fail_msg("%s: revoked %d, want %d", cases[i].what, got, cases[i].revoked);
    }
    assert_null(authd_revocations_match(NULL, &(struct authd_session){.id = {.sub = "s"}}, "x"));
    authd_revocations_free(r);
}

static void
test_check(void **state)
{
    struct authd_revocations *r = list_of(list_doc, T0 + 60);
    struct authd_host host = {.id = "ns/echo", .session = {.lifetime = 3600}};
    struct authd_session s = {.id = {.sub = "s1", .email = "alice@example.com"},
                              .issued_at = T0 - 10,
                              .expires_at = T0 + 7200};
    const struct pc_revocation *hit;

    (void)state;
    assert_int_equal(authd_session_check(r, &host, "x.example.com", &s, T0 + 5, &hit),
                     AUTHD_EREVOKED);
    assert_non_null(hit);
    assert_string_equal(hit->user, "Alice@Example.com");
    /* Nothing revoked: the host's lifetime today ends a session minted under a longer one. */
    assert_int_equal(authd_session_check(NULL, &host, "x.example.com", &s, T0 + 3589, &hit), 0);
    assert_null(hit);
    assert_int_equal(authd_session_check(NULL, &host, "x.example.com", &s, T0 + 3590, &hit),
                     PC_EEXPIRED);
    s.issued_at = T0 + 1;
    assert_int_equal(authd_session_check(r, &host, "x.example.com", &s, T0 + 5, &hit), 0);
    authd_revocations_free(r);
}

static void
test_future_and_mint(void **state)
{
    /* Written by a clock 10 minutes ahead: in force up to the moment authd loads it. */
    struct authd_revocations *r =
        list_of("revocations:\n- {user: alice@example.com, notBefore: 2025-12-01T10:10:00Z}\n", T0);
    struct authd_session s = {.id = {.sub = "s1", .email = "alice@example.com"},
                              .issued_at = T0,
                              .refreshed_at = T0,
                              .expires_at = T0 + 3600};
    struct authd_session other = {
        .id = {.sub = "s2", .email = "bob@example.com"}, .issued_at = T0, .refreshed_at = T0};

    (void)state;
    assert_non_null(authd_revocations_match(r, &s, "x.example.com"));
    s.issued_at = T0 + 1;
    assert_null(authd_revocations_match(r, &s, "x.example.com"));
    /* A login in the revoking second comes after the revocation. */
    s.issued_at = T0;
    authd_revocations_mint(r, &s);
    assert_int_equal(s.issued_at, T0 + 1);
    assert_int_equal(s.refreshed_at, T0 + 1);
    assert_null(authd_revocations_match(r, &s, "x.example.com"));
    authd_revocations_mint(r, &other);
    assert_int_equal(other.issued_at, T0);
    authd_revocations_mint(NULL, &other);
    assert_int_equal(other.issued_at, T0);
    authd_revocations_free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_future_and_mint),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
