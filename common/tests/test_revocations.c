/*
 * test_revocations.c - the revocation list document: what parses (and into what), what is
 * refused (and where), the bounds, add/prune, and the writer's round trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis/base.h"
#include "portcullis/buf.h"
#include "portcullis/revocations.h"

#define T0 1764583200 /* 2025-12-01T10:00:00Z */

static const struct {
    const char *doc;
    size_t n;           /* entries */
    const char *user0;  /* first entry's user */
    int64_t nb0;        /* its notBefore */
    const char *hosts0; /* its hosts joined with "," */
} good[] = {
    {"", 0, NULL, 0, ""},
    {"revocations: []\n", 0, NULL, 0, ""},
    {"revocations:\n", 0, NULL, 0, ""},
    {"revocations:\n- user: alice@example.com\n  notBefore: \"2025-12-01T10:00:00Z\"\n", 1,
     "alice@example.com", T0, ""},
    {"revocations:\n- {user: 1234, notBefore: 2025-12-01T10:00:00Z, hosts: [B.Example.com, "
     "\"*.apps.example.com\", b.example.com]}\n",
     1, "1234", T0, "*.apps.example.com,b.example.com"},
    /* The same user and hosts twice: one entry with the later time. */
    {"revocations:\n- {user: bob, notBefore: 2025-12-01T10:00:00Z}\n"
     "- {user: bob, notBefore: 2025-12-01T10:00:05Z}\n",
     1, "bob", T0 + 5, ""},
    {"revocations:\n- {user: bob, notBefore: 2025-12-01T10:00:00Z}\n"
     "- {user: bob, notBefore: 2025-12-01T10:00:00Z, hosts: [a.example.com]}\n",
     2, "bob", T0, ""},
};

static const struct {
    const char *doc;
    int rc;
    const char *msg; /* substring of the diagnostic */
    int line;
} bad[] = {
    {"revocations: [", PC_EPARSE, "", 0},
    {"- a\n", PC_EPARSE, "must be a map", 1},
    {"revocation: []\n", PC_EPARSE, "unknown key", 1},
    {"revocations: {}\n", PC_EPARSE, "must be a list", 1},
    {"revocations:\n- alice\n", PC_EPARSE, "each entry is a map", 2},
    {"revocations:\n- {notBefore: 2025-12-01T10:00:00Z}\n", PC_EPARSE, "user: required", 2},
    {"revocations:\n- {user: \"\", notBefore: 2025-12-01T10:00:00Z}\n", PC_EINVAL, "user:", 2},
    {"revocations:\n- {user: \"a\\tb\", notBefore: 2025-12-01T10:00:00Z}\n", PC_EINVAL,
     "control characters", 2},
    {"revocations:\n- {user: a, notBefore: 2025-12-01T10:00:00+01:00}\n", PC_EPARSE, "notBefore",
     2},
    {"revocations:\n- {user: a, notBefore: 2025-13-01T10:00:00Z}\n", PC_EPARSE, "notBefore", 2},
    {"revocations:\n- {user: a, notBefore: 1764583200}\n", PC_EPARSE, "notBefore", 2},
    {"revocations:\n- {user: a}\n", PC_EPARSE, "notBefore: required", 2},
    {"revocations:\n- {user: a, notBefore: 2025-12-01T10:00:00Z, groups: [x]}\n", PC_EPARSE,
     "unknown key", 2},
    {"revocations:\n- {user: a, notBefore: 2025-12-01T10:00:00Z, hosts: a.example.com}\n",
     PC_EPARSE, "hosts: must be a list", 2},
    {"revocations:\n- {user: a, notBefore: 2025-12-01T10:00:00Z, hosts: [\"a b\"]}\n", PC_EINVAL,
     "is not a host name", 2},
    {"revocations:\n- {user: a, notBefore: 2025-12-01T10:00:00Z, hosts: [\"*.\"]}\n", PC_EINVAL,
     "is not a host name", 2},
    {"revocations: []\n---\nrevocations: []\n", PC_EPARSE, "one document", 3},
};

static void
join_hosts(const struct pc_revocation *e, char *out, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < e->nhosts; i++)
        snprintf(out + strlen(out), n - strlen(out), "%s%s", i ? "," : "", e->hosts[i]);
}

static void
test_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct pc_revocations l;
        struct pc_diag d = {0};
        char hosts[512];

        assert_int_equal(pc_revocations_parse(good[i].doc, strlen(good[i].doc), &l, &d), 0);
        assert_int_equal(l.n, good[i].n);
        if (l.n > 0) {
            assert_string_equal(l.v[0].user, good[i].user0);
            assert_int_equal(l.v[0].not_before, good[i].nb0);
            join_hosts(&l.v[0], hosts, sizeof(hosts));
            assert_string_equal(hosts, good[i].hosts0);
        }
        pc_revocations_release(&l);
    }
}

static void
test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pc_revocations l;
        struct pc_diag d = {0};
        int rc = pc_revocations_parse(bad[i].doc, strlen(bad[i].doc), &l, &d);

        if (rc != bad[i].rc || !strstr(d.msg, bad[i].msg) || (bad[i].line && d.line != bad[i].line))
            fail_msg("case %zu: rc %d line %d msg \"%s\"", i, rc, d.line, d.msg);
        assert_int_equal(l.n, 0);
        pc_revocations_release(&l);
    }
}

/* A list of n distinct users as a document. */
static char *
doc_of(size_t n, const char *user_prefix)
{
    struct pc_buf b;

    pc_buf_init(&b, 0);
    pc_buf_appends(&b, "revocations:\n");
    for (size_t i = 0; i < n; i++)
        pc_buf_appendf(&b, "- {user: %s%zu, notBefore: 2025-12-01T10:00:00Z}\n", user_prefix, i);
    return pc_buf_detach(&b);
}

static void
test_bounds(void **state)
{
    struct pc_revocations l;
    struct pc_diag d = {0};
    char user[PC_REVOKE_MAX_USER + 2], *doc;
    const char *hosts[PC_REVOKE_MAX_HOSTS + 1];

    (void)state;
    doc = doc_of(PC_REVOKE_MAX_ENTRIES, "u");
    assert_int_equal(pc_revocations_parse(doc, strlen(doc), &l, &d), 0);
    assert_int_equal(l.n, PC_REVOKE_MAX_ENTRIES);
    /* The list is full: a new user is refused, a user already there folds in. */
    assert_int_equal(pc_revocations_add(&l, "one-more", T0, NULL, 0, &d), PC_ETOOBIG);
    assert_non_null(strstr(d.msg, "more than 1000 entries"));
    assert_int_equal(pc_revocations_add(&l, "u7", T0 + 9, NULL, 0, &d), 0);
    assert_int_equal(l.n, PC_REVOKE_MAX_ENTRIES);
    assert_int_equal(l.v[7].not_before, T0 + 9);
    pc_revocations_release(&l);
    free(doc);

    doc = doc_of(PC_REVOKE_MAX_ENTRIES + 1, "u");
    assert_int_equal(pc_revocations_parse(doc, strlen(doc), &l, &d), PC_ETOOBIG);
    free(doc);

    memset(user, 'a', sizeof(user) - 1);
    user[PC_REVOKE_MAX_USER] = '\0';
    pc_revocations_init(&l);
    assert_int_equal(pc_revocations_add(&l, user, T0, NULL, 0, &d), 0);
    user[PC_REVOKE_MAX_USER] = 'a';
    user[PC_REVOKE_MAX_USER + 1] = '\0';
    assert_int_equal(pc_revocations_add(&l, user, T0, NULL, 0, &d), PC_ETOOBIG);
    for (size_t i = 0; i <= PC_REVOKE_MAX_HOSTS; i++)
        hosts[i] = "a.example.com";
    assert_int_equal(pc_revocations_add(&l, "x", T0, hosts, PC_REVOKE_MAX_HOSTS + 1, &d),
                     PC_ETOOBIG);
    assert_int_equal(pc_revocations_add(&l, "x", T0, hosts, PC_REVOKE_MAX_HOSTS, &d), 0);
    assert_int_equal(l.v[1].nhosts, 1); /* repeats dropped */
    assert_int_equal(pc_revocations_add(&l, "\xff\xfe", T0, NULL, 0, &d), PC_EINVAL);
    pc_revocations_release(&l);

    /* The whole document is bounded before it is parsed. */
    doc = pc_xcalloc(PC_REVOKE_MAX_DOC + 2, 1);
    memset(doc, ' ', PC_REVOKE_MAX_DOC + 1);
    assert_int_equal(pc_revocations_parse(doc, PC_REVOKE_MAX_DOC + 1, &l, &d), PC_ETOOBIG);
    free(doc);
}

static void
test_prune_and_write(void **state)
{
    const char *hosts[] = {"Echo.example.com"};
    struct pc_revocations l, back;
    struct pc_diag d = {0};
    char *text;

    (void)state;
    pc_revocations_init(&l);
    assert_int_equal(pc_revocations_add(&l, "old", T0 - 3600, NULL, 0, &d), 0);
    assert_int_equal(pc_revocations_add(&l, "alice@example.com", T0, hosts, 1, &d), 0);
    assert_int_equal(pc_revocations_add(&l, "new", T0 + 1, NULL, 0, &d), 0);
    assert_int_equal(pc_revocations_prune(&l, T0), 1);
    assert_int_equal(l.n, 2);
    text = pc_revocations_to_yaml(&l);
    assert_string_equal(text, "revocations:\n"
                              "- hosts:\n"
                              "  - echo.example.com\n"
                              "  notBefore: 2025-12-01T10:00:00Z\n"
                              "  user: alice@example.com\n"
                              "- notBefore: 2025-12-01T10:00:01Z\n"
                              "  user: new\n");
    assert_int_equal(pc_revocations_parse(text, strlen(text), &back, &d), 0);
    assert_int_equal(back.n, 2);
    assert_string_equal(back.v[0].hosts[0], "echo.example.com");
    assert_int_equal(back.v[1].not_before, T0 + 1);
    pc_revocations_release(&back);
    pc_revocations_release(&l);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_prune_and_write),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
