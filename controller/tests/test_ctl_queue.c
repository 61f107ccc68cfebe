/*
 * test_ctl_queue.c - the coalescing work queue: one reconcile per burst, re-adds while
 * processing, delays, backoff and shutdown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "controller.h"

static long long
ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
test_coalesces(void **state)
{
    struct ctl_queue *q = ctl_queue_new();
    char *k;

    (void)state;
    for (int i = 0; i < 5; i++)
        ctl_queue_add(q, "ph:a/b");
    ctl_queue_add(q, "global");
    assert_int_equal(ctl_queue_len(q), 2);
    k = ctl_queue_get(q);
    assert_non_null(k);
    ctl_queue_done(q, k);
    free(k);
    k = ctl_queue_get(q);
    ctl_queue_done(q, k);
    free(k);
    assert_int_equal(ctl_queue_len(q), 0);
    ctl_queue_free(q);
}

static void
test_readded_while_processing(void **state)
{
    struct ctl_queue *q = ctl_queue_new();
    char *k, *k2;

    (void)state;
    ctl_queue_add(q, "x");
    k = ctl_queue_get(q);
    ctl_queue_add(q, "x"); /* changed again while being worked on */
    ctl_queue_add(q, "x");
    ctl_queue_add(q, "y");
    k2 = ctl_queue_get(q);
    assert_string_equal(k2, "y"); /* x is not handed out twice at once */
    ctl_queue_done(q, k2);
    free(k2);
    ctl_queue_done(q, k);
    free(k);
    assert_int_equal(ctl_queue_len(q), 1);
    k = ctl_queue_get(q);
    assert_string_equal(k, "x");
    ctl_queue_done(q, k);
    free(k);
    assert_int_equal(ctl_queue_len(q), 0);
    ctl_queue_free(q);
}

static void
test_delay_and_order(void **state)
{
    struct ctl_queue *q = ctl_queue_new();
    long long t0 = ms_now();
    char *k;

    (void)state;
    ctl_queue_add_after(q, "late", 150);
    ctl_queue_add_after(q, "soon", 30);
    k = ctl_queue_get(q);
    assert_string_equal(k, "soon");
    assert_true(ms_now() - t0 >= 25);
    ctl_queue_done(q, k);
    free(k);
    ctl_queue_add(q, "late"); /* an earlier due time wins */
    k = ctl_queue_get(q);
    assert_string_equal(k, "late");
    assert_true(ms_now() - t0 < 140);
    ctl_queue_done(q, k);
    free(k);
    ctl_queue_free(q);
}

/* A key whose wait is over goes ahead of a backlog. */
static void
test_add_first(void **state)
{
    struct ctl_queue *q = ctl_queue_new();
    char *k;

    (void)state;
    for (int i = 0; i < 100; i++) {
        char key[16];

        snprintf(key, sizeof(key), "k%d", i);
        ctl_queue_add(q, key);
    }
    ctl_queue_add_first(q, "k77");
    k = ctl_queue_get(q);
    assert_string_equal(k, "k77");
    ctl_queue_done(q, k);
    free(k);
    ctl_queue_add_first(q, "new");
    k = ctl_queue_get(q);
    assert_string_equal(k, "new");
    ctl_queue_done(q, k);
    free(k);
    ctl_queue_free(q);
}

static void
test_backoff_grows_and_resets(void **state)
{
    struct ctl_queue *q = ctl_queue_new();
    long d1, d2, d3, d4;

    (void)state;
    d1 = ctl_queue_retry(q, "k");
    d2 = ctl_queue_retry(q, "k");
    d3 = ctl_queue_retry(q, "k");
    assert_true(d2 > d1 / 2 && d3 > d2 / 2); /* doubling, with jitter */
    assert_true(d3 >= d1);
    for (int i = 0; i < 40; i++)
        d4 = ctl_queue_retry(q, "k");
    assert_true(d4 <= 60000); /* capped */
    ctl_queue_forget(q, "k");
    d4 = ctl_queue_retry(q, "k");
    assert_true(d4 <= d3);
    assert_int_equal(ctl_queue_len(q), 1);
    ctl_queue_free(q);
}

static void
test_shutdown(void **state)
{
    struct ctl_queue *q = ctl_queue_new();

    (void)state;
    ctl_queue_add_after(q, "never", 100000);
    ctl_queue_shutdown(q);
    assert_null(ctl_queue_get(q));
    ctl_queue_add(q, "ignored");
    assert_null(ctl_queue_get(q));
    ctl_queue_free(q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coalesces),       cmocka_unit_test(test_readded_while_processing),
        cmocka_unit_test(test_delay_and_order), cmocka_unit_test(test_backoff_grows_and_resets),
        cmocka_unit_test(test_shutdown),        cmocka_unit_test(test_add_first),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
