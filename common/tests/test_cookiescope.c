/*
 * test_cookiescope.c - cookie-name collisions: each case adds an older owner, then a newer
 * one, and expects the newer one to collide (with a message naming the older) or not.
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
#include "portcullis/cookiescope.h"

struct side {
    const char *name, *binding, *domain;
    const char *hosts[3];
};

static const struct {
    const char *what;
    struct side older, newer;
    const char *want; /* NULL: no collision; else a substring of the message */
} cases[] = {
    {"shared domain over another client's host-only host",
     {"_p", "idp|a", ".example.com", {"a.example.com"}},
     {"_p", "idp|b", NULL, {"b.example.com"}},
     "host \"b.example.com\" also receives cookie \"_p\" of older (Domain=example.com)"},
    {"newer shares a domain over the older host",
     {"_p", "idp|a", NULL, {"a.example.com"}},
     {"_p", "idp|b", "example.com", {"b.example.com"}},
     "cookie \"_p\" with Domain=example.com also reaches a host of older"},
    {"same issuer and client share on purpose",
     {"_p", "idp|a", ".example.com", {"a.example.com"}},
     {"_p", "idp|a", NULL, {"b.example.com"}},
     NULL},
    {"another cookie name",
     {"_p", "idp|a", ".example.com", {"a.example.com"}},
     {"_q", "idp|b", NULL, {"b.example.com"}},
     NULL},
    {"host-only hosts never collide",
     {"_p", "idp|a", NULL, {"a.example.com", "*.example.com"}},
     {"_p", "idp|b", NULL, {"b.example.com"}},
     NULL},
    {"domain elsewhere",
     {"_p", "idp|a", ".example.com", {"a.example.com"}},
     {"_p", "idp|b", NULL, {"b.example.org", "example.community"}},
     NULL},
    {"domain is the host itself",
     {"_p", "idp|a", "b.example.com", {"b.example.com"}},
     {"_p", "idp|b", NULL, {"x.org", "b.example.com"}},
     "host \"b.example.com\""},
    {"a subdomain domain does not reach its parent",
     {"_p", "idp|a", ".apps.example.com", {"x.apps.example.com"}},
     {"_p", "idp|b", NULL, {"example.com", "other.example.com"}},
     NULL},
    {"wildcard under a domain",
     {"_p", "idp|a", ".example.com", {"a.example.com"}},
     {"_p", "idp|b", NULL, {"*.apps.example.com"}},
     "host \"*.apps.example.com\""},
    {"domain under a wildcard",
     {"_p", "idp|a", ".x.apps.example.com", {"a.x.apps.example.com"}},
     {"_p", "idp|b", NULL, {"*.apps.example.com"}},
     "of older (Domain=x.apps.example.com)"},
    {"newer domain under an older wildcard",
     {"_p", "idp|a", NULL, {"*.apps.example.com"}},
     {"_p", "idp|b", ".x.apps.example.com", {"y.x.apps.example.com"}},
     "Domain=x.apps.example.com also reaches a host of older"},
    {"newer domain above an older wildcard",
     {"_p", "idp|a", NULL, {"*.apps.example.com"}},
     {"_p", "idp|b", ".example.com", {"b.example.com"}},
     "also reaches a host of older"},
    {"two domains, one inside the other",
     {"_p", "idp|a", ".example.com", {"a.example.com"}},
     {"_p", "idp|b", ".b.example.com", {"x.b.example.com"}},
     "host \"x.b.example.com\""},
    {"label boundaries: notexample.com is not under example.com",
     {"_p", "idp|a", ".example.com", {"a.example.com"}},
     {"_p", "idp|b", NULL, {"notexample.com"}},
     NULL},
};

static size_t
count(const char *const *hosts)
{
    size_t n = 0;

    while (n < 3 && hosts[n] != NULL)
        n++;
    return n;
}

static struct pc_cookie_owner
owner(const char *id, const struct side *s)
{
    struct pc_cookie_owner o = {.id = id,
                                .name = s->name,
                                .binding = s->binding,
                                .domain = s->domain,
                                .hosts = s->hosts,
                                .nhosts = count(s->hosts)};

    return o;
}

static void
test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pc_cookie_scopes *s = pc_cookie_scopes_new();
        struct pc_cookie_owner a = owner("older", &cases[i].older);
        struct pc_cookie_owner b = owner("newer", &cases[i].newer);
        char *why = NULL;
        int rc;

        assert_int_equal(pc_cookie_scopes_add(s, &a, &why), 0);
        assert_null(why);
        rc = pc_cookie_scopes_add(s, &b, &why);
        if (cases[i].want == NULL && rc != 0)
            fail_msg("%s: unexpected collision: %s", cases[i].what, why);
        if (cases[i].want != NULL && (rc != PC_EINVAL || strstr(why, cases[i].want) == NULL))
            fail_msg("%s: got %d \"%s\", want \"%s\"", cases[i].what, rc, why ? why : "",
                     cases[i].want);
        free(why);
        pc_cookie_scopes_free(s);
    }
}

/* A refused owner is not recorded: a third owner does not collide with it. */
static void
test_refused_not_recorded(void **state)
{
    struct side a = {"_p", "idp|a", NULL, {"a.example.com"}};
    struct side b = {"_p", "idp|b", ".example.com", {"b.example.com"}};
    struct side c = {"_p", "idp|c", NULL, {"c.example.com"}};
    struct pc_cookie_scopes *s = pc_cookie_scopes_new();
    struct pc_cookie_owner oa = owner("a", &a), ob = owner("b", &b), oc = owner("c", &c);
    char *why = NULL;

    (void)state;
    assert_int_equal(pc_cookie_scopes_add(s, &oa, &why), 0);
    assert_int_equal(pc_cookie_scopes_add(s, &ob, &why), PC_EINVAL);
    free(why);
    assert_int_equal(pc_cookie_scopes_add(s, &oc, &why), 0);
    assert_null(why);
    pc_cookie_scopes_free(s);
    pc_cookie_scopes_free(NULL);
}

/* 10,000 host-only owners on one name and a domain owner over all of them. */
static void
test_many(void **state)
{
    struct pc_cookie_scopes *s = pc_cookie_scopes_new();
    char *why = NULL;

    (void)state;
    for (int i = 0; i < 10000; i++) {
        char host[64], binding[32], id[32];
        const char *hosts[] = {host};
        struct pc_cookie_owner o = {
            .id = id, .name = "_p", .binding = binding, .hosts = hosts, .nhosts = 1};

        snprintf(host, sizeof(host), "app-%d.team-%d.example.com", i, i % 100);
        snprintf(binding, sizeof(binding), "idp|client-%d", i);
        snprintf(id, sizeof(id), "ns/app-%d", i);
        assert_int_equal(pc_cookie_scopes_add(s, &o, &why), 0);
    }
    {
        const char *hosts[] = {"portal.example.com"};
        struct pc_cookie_owner o = {.id = "ns/portal",
                                    .name = "_p",
                                    .binding = "idp|portal",
                                    .domain = ".team-7.example.com",
                                    .hosts = hosts,
                                    .nhosts = 1};

        assert_int_equal(pc_cookie_scopes_add(s, &o, &why), PC_EINVAL);
        assert_non_null(strstr(why, "Domain=team-7.example.com also reaches a host of ns/app-"));
        free(why);
    }
    pc_cookie_scopes_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_refused_not_recorded),
        cmocka_unit_test(test_many),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
