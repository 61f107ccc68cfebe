/*
 * test_ctl_revoke.c - what `revoke` writes: the entry added to what was there, expired entries
 * dropped by the retention, the list's bound refused rather than evicted, bad input named, and
 * the retention taken from the ProtectedHosts' lifetimes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller.h"
#include "portcullis/buf.h"

#define T0 1764583200 /* 2025-12-01T10:00:00Z */

static void
test_update(void **state)
{
    const char *hosts[] = {"Echo.example.com"};
    struct ctl_revoke_req req = {.user = "alice@example.com", .now = T0, .retain = 3600};
    struct ctl_revoke_result res;
    struct pc_diag d = {0};
    char *out = NULL, *again = NULL;

    (void)state;
    /* Nothing there yet. */
    assert_int_equal(ctl_revoke_update(NULL, &req, &out, &res, &d), 0);
    assert_string_equal(out, "revocations:\n- notBefore: 2025-12-01T10:00:00Z\n"
                             "  user: alice@example.com\n");
    assert_int_equal(res.entries, 1);
    /* An hour and a second later, with a host: the first entry is past the retention. */
    req.now = T0 + 3601;
    req.user = "bob";
    req.hosts = hosts;
    req.nhosts = 1;
    assert_int_equal(ctl_revoke_update(out, &req, &again, &res, &d), 0);
    assert_string_equal(again, "revocations:\n- hosts:\n  - echo.example.com\n"
                               "  notBefore: 2025-12-01T11:00:01Z\n  user: bob\n");
    assert_int_equal(res.dropped, 1);
    free(again);
    /* Without a retention everything stays. */
    req.retain = 0;
    assert_int_equal(ctl_revoke_update(out, &req, &again, &res, &d), 0);
    assert_int_equal(res.entries, 2);
    assert_int_equal(res.dropped, 0);
    free(again);
    free(out);
}

static void
test_refusals(void **state)
{
    const char *bad_host[] = {"not a host"};
    struct ctl_revoke_req req = {.user = "alice", .now = T0, .retain = 3600};
    struct ctl_revoke_result res;
    struct pc_diag d = {0};
    struct pc_buf full;
    char *out = NULL;

    (void)state;
    assert_int_equal(ctl_revoke_update("revocations: [", &req, &out, &res, &d), PC_EPARSE);
    assert_non_null(strstr(d.msg, "1:"));
    assert_null(out);
    req.hosts = bad_host;
    req.nhosts = 1;
    assert_int_equal(ctl_revoke_update(NULL, &req, &out, &res, &d), PC_EINVAL);
    req.nhosts = 0;
    req.user = "bad\nuser";
    assert_int_equal(ctl_revoke_update(NULL, &req, &out, &res, &d), PC_EINVAL);

    /* A full list of live entries: refused, with what to do instead. */
    pc_buf_init(&full, 0);
    pc_buf_appends(&full, "revocations:\n");
    for (int i = 0; i < PC_REVOKE_MAX_ENTRIES; i++)
        pc_buf_appendf(&full, "- {user: u%d, notBefore: 2025-12-01T09:30:00Z}\n", i);
    req.user = "one-more";
    assert_int_equal(ctl_revoke_update(pc_buf_str(&full), &req, &out, &res, &d), PC_ETOOBIG);
    assert_non_null(strstr(d.msg, "nothing is evicted"));
    /* Once they are past the retention, they make room. */
    req.now = T0 + 1800;
    req.retain = 600;
    assert_int_equal(ctl_revoke_update(pc_buf_str(&full), &req, &out, &res, &d), 0);
    assert_int_equal(res.entries, 1);
    assert_int_equal(res.dropped, PC_REVOKE_MAX_ENTRIES);
    free(out);
    pc_buf_release(&full);
}

static void
test_longest_lifetime(void **state)
{
    json_t *items = json_loads("[{\"spec\": {\"session\": {\"lifetime\": \"1h\"}}},"
                               " {\"spec\": {}},"
                               " {\"spec\": {\"session\": {\"lifetime\": \"30h\"}}},"
                               " {\"spec\": {\"session\": {\"lifetime\": \"bogus\"}}}]",
                               0, NULL);
    json_t *empty = json_array();

    (void)state;
    assert_int_equal(ctl_revoke_longest_lifetime(items), 30 * 3600);
    json_array_remove(items, 2);
    assert_int_equal(ctl_revoke_longest_lifetime(items), 12 * 3600); /* the default */
    assert_int_equal(ctl_revoke_longest_lifetime(empty), 0);
    json_decref(items);
    json_decref(empty);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_longest_lifetime),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
