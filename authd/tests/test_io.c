/*
 * test_io.c - the testable pieces of authd's I/O side: Prometheus rendering (metrics.c), the
 * check-path session cache (sesscache.c) and the worker pool's completion queue (work.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authd.h"

/* ------------------------------------------------------------------------------------------ */
/* metrics */

static void
test_metrics_render(void **state)
{
    struct authd_metrics *m = authd_metrics_new();
    struct pc_buf b;

    (void)state;
    pc_buf_init(&b, 0);
    authd_metrics_decision(m, "ns/app", "envoy", "allow", 40);
    authd_metrics_decision(m, "ns/app", "envoy", "allow", 700);
    authd_metrics_decision(m, "ns/\"q\"", "nginx", "forbidden", 2000000);
    authd_metrics_idp(m, "https://idp", "token", "timeout");
    authd_metrics_reload(m, false);
    assert_int_equal(authd_metrics_render(m, &b), 0);
    const char *t = pc_buf_str(&b);
    static const char *const want[] = {
        "portcullis_authd_decisions_total{host=\"ns/app\",door=\"envoy\",outcome=\"allow\"} 2\n",
        "portcullis_authd_decisions_total{host=\"ns/\\\"q\\\"\",door=\"nginx\","
        "outcome=\"forbidden\"} 1\n",
        "portcullis_authd_check_duration_seconds_bucket{le=\"5e-05\"} 1\n",
        "portcullis_authd_check_duration_seconds_bucket{le=\"0.001\"} 2\n",
        "portcullis_authd_check_duration_seconds_bucket{le=\"1\"} 2\n",
        "portcullis_authd_check_duration_seconds_bucket{le=\"+Inf\"} 3\n",
        "portcullis_authd_check_duration_seconds_count 3\n",
        "portcullis_authd_idp_requests_total{issuer=\"https://idp\",kind=\"token\","
        "result=\"timeout\"} 1\n",
        "portcullis_authd_config_reloads_total{result=\"failure\"} 1\n",
        "portcullis_authd_config_reloads_total{result=\"success\"} 0\n",
        "# TYPE portcullis_authd_check_duration_seconds histogram\n",
        "portcullis_authd_build_info{version=\"",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(t, want[i]))
            fail_msg("missing: %s", want[i]);
    pc_buf_release(&b);
    authd_metrics_free(m);
}

static void
test_metrics_bounded(void **state)
{
    struct authd_metrics *m = authd_metrics_new();
    struct pc_buf b;
    char host[32];

    (void)state;
    for (int i = 0; i < 5000; i++) {
        snprintf(host, sizeof(host), "h%d", i);
        authd_metrics_decision(m, host, "envoy", "unknown_host", 1);
    }
    pc_buf_init(&b, 0);
    assert_int_equal(authd_metrics_render(m, &b), 0);
    assert_non_null(strstr(pc_buf_str(&b), "host=\"_other\""));
    assert_null(strstr(pc_buf_str(&b), "host=\"h4999\""));
    pc_buf_release(&b);
    authd_metrics_free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* session cache */

static const char cfg_text[] = "cookieSecretFiles: [mem]\n"
                               "hosts:\n"
                               "- id: ns/a\n"
                               "  hosts: [a.example.com]\n"
                               "  oidc: {issuerURL: 'https://idp', clientID: a}\n"
                               "- id: ns/r\n"
                               "  hosts: [r.example.com]\n"
                               "  oidc: {issuerURL: 'https://idp', clientID: r}\n"
                               "  session: {refresh: 1m}\n";

static int
read_mem(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    (void)path;
    *data = pc_xstrdup("0123456789abcdef0123456789abcdef0123");
    *len = strlen(*data);
    return 0;
}

static struct authd_session *
session(int64_t expires_at)
{
    struct authd_session *s = pc_xcalloc(1, sizeof(*s));

    s->id.sub = pc_xstrdup("alice");
    s->expires_at = expires_at;
    return s;
}

static void
test_sesscache(void **state)
{
    struct authd_config_opts opts = {.read_file = read_mem};
    struct authd_config *cfg = NULL;
    struct pc_diag d = {0};
    struct authd_sesscache *c = authd_sesscache_new(16);
    const struct authd_session *got;

    (void)state;
    assert_int_equal(authd_config_parse(cfg_text, strlen(cfg_text), &opts, &cfg, &d), 0);
    const struct authd_host *a = &cfg->hosts[0], *r = &cfg->hosts[1];
    struct authd_session *s = session(1000);

    assert_null(authd_sesscache_get(c, 1, a, "_portcullis=x", 10));
    assert_ptr_equal(authd_sesscache_put(c, 1, a, "_portcullis=x", s), s);
    assert_ptr_equal(authd_sesscache_get(c, 1, a, "_portcullis=x", 10), s);
    /* every key part counts: cookie bytes, generation, host */
    assert_null(authd_sesscache_get(c, 1, a, "_portcullis=y", 10));
    assert_null(authd_sesscache_get(c, 2, a, "_portcullis=x", 10));
    assert_null(authd_sesscache_get(c, 1, r, "_portcullis=x", 10));
    assert_null(authd_sesscache_get(c, 1, a, NULL, 10));
    /* expired at the hit: dropped */
    assert_null(authd_sesscache_get(c, 1, a, "_portcullis=x", 1000));
    assert_null(authd_sesscache_get(c, 1, a, "_portcullis=x", 10));
    /* refresh-enabled hosts and missing cookies are not cached: caller keeps ownership */
    s = session(1000);
    assert_null(authd_sesscache_put(c, 1, r, "_portcullis=x", s));
    assert_null(authd_sesscache_put(c, 1, a, NULL, s));
    authd_session_free(s);
    got = authd_sesscache_put(c, 1, a, "k=1", session(1000));
    assert_non_null(got);
    authd_sesscache_free(c);
    authd_config_free(cfg);
}

/* ------------------------------------------------------------------------------------------ */
/* worker pool */

struct tjob {
    struct authd_job job;
    int *done_count;
    pthread_t runner;
    bool ran;
};

static void
tjob_run(struct authd_job *job)
{
    struct tjob *t = (struct tjob *)job;

    t->runner = pthread_self();
    t->ran = true;
}

static void
tjob_done(struct authd_job *job)
{
    struct tjob *t = (struct tjob *)job;

    assert_true(t->ran);
    assert_false(pthread_equal(t->runner, pthread_self()));
    (*t->done_count)++;
    free(t);
}

static void
wake(void *ud)
{
    (void)ud;
}

static void
test_pool(void **state)
{
    struct authd_pool *p = authd_pool_new(3, wake, NULL);
    int done = 0;

    (void)state;
    for (int i = 0; i < 50; i++) {
        struct tjob *t = pc_xcalloc(1, sizeof(*t));
        t->job.run = tjob_run;
        t->job.done = tjob_done;
        t->done_count = &done;
        authd_pool_submit(p, &t->job);
    }
    for (int i = 0; i < 500 && done < 50; i++) {
        authd_pool_drain(p);
        usleep(1000);
    }
    assert_int_equal(done, 50);
    assert_int_equal(authd_pool_inflight(p), 0);
    authd_pool_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_render),
        cmocka_unit_test(test_metrics_bounded),
        cmocka_unit_test(test_sesscache),
        cmocka_unit_test(test_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
