/*
 * test_strmap.c - the string map against a plain list, and the arena.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis/strmap.h"

/* Many keys, added twice (the second add keeps the first value), every one found again; keys
 * that differ only in length or by a prefix are distinct. */
static void
test_map_many(void **state)
{
    struct pc_arena a = {0};
    struct pc_strmap m = {0};
    enum { N = 20000 };
    const char **keys = calloc(N, sizeof(*keys));
    size_t v, old;

    (void)state;
    for (size_t i = 0; i < N; i++) {
        keys[i] = pc_arena_printf(&a, "host-%zu.example.com", i);
        assert_true(pc_strmap_add(&m, keys[i], i, NULL));
    }
    for (size_t i = 0; i < N; i++) {
        assert_false(pc_strmap_add(&m, keys[i], i + 1, &old));
        assert_int_equal(old, i);
    }
    assert_int_equal(m.n, N);
    assert_true(m.cap >= 2 * m.n);
    for (size_t i = 0; i < N; i++) {
        assert_true(pc_strmap_get(&m, keys[i], &v));
        assert_int_equal(v, i);
    }
    assert_false(pc_strmap_get(&m, "host-1.example.co", &v));
    assert_false(pc_strmap_get(&m, "host-1.example.comm", &v));
    assert_false(pc_strmap_get(&m, "", &v));
    assert_true(pc_strmap_getn(&m, "host-7.example.com:443", strlen("host-7.example.com"), &v));
    assert_int_equal(v, 7);
    pc_strmap_release(&m);
    assert_false(pc_strmap_get(&m, keys[0], &v));
    free(keys);
    pc_arena_release(&a);
}

static void
test_map_empty_key_and_empty_map(void **state)
{
    struct pc_strmap m;
    size_t v;

    (void)state;
    pc_strmap_init(&m);
    assert_false(pc_strmap_get(&m, "a", &v));
    assert_true(pc_strmap_add(&m, "", 5, NULL));
    assert_true(pc_strmap_get(&m, "", &v));
    assert_int_equal(v, 5);
    assert_false(pc_strmap_get(&m, "a", &v));
    pc_strmap_release(&m);
}

/* Strings longer than a chunk get their own; every copy stays intact. */
static void
test_arena(void **state)
{
    struct pc_arena a = {0};
    char *big = malloc(40000), *copies[100];

    (void)state;
    memset(big, 'x', 39999);
    big[39999] = '\0';
    for (int i = 0; i < 100; i++)
        copies[i] = i % 10 == 0 ? pc_arena_strdup(&a, big) : pc_arena_printf(&a, "s%d", i);
    for (int i = 0; i < 100; i++) {
        char want[16];

        if (i % 10 == 0) {
            assert_string_equal(copies[i], big);
            continue;
        }
        snprintf(want, sizeof(want), "s%d", i);
        assert_string_equal(copies[i], want);
    }
    assert_string_equal(pc_arena_strndup(&a, "abcdef", 3), "abc");
    free(big);
    pc_arena_release(&a);
    assert_null(a.head);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_many),
        cmocka_unit_test(test_map_empty_key_and_empty_map),
        cmocka_unit_test(test_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
