/*
 * test_io.c - the testable pieces of authd's I/O side: Prometheus rendering (metrics.c), the
 * check-path session cache (sesscache.c), the worker pool's scheduler and completion queue
 * (work.c), the set of exchanged login states (replay.c) and the issuer registry's gate on
 * outbound URLs (oidc.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "authd.h"
#include "io_util.h"

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
    authd_metrics_state_replay(m);
    authd_metrics_set_gauges(m, &(struct authd_metrics_gauges){3, 2, 7});
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
        "portcullis_authd_idp_jobs{state=\"queued\"} 3\n",
        "portcullis_authd_idp_jobs{state=\"running\"} 2\n",
        "portcullis_authd_login_state_replays_total 1\n",
        "portcullis_authd_login_states_evicted_total 7\n",
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
    const struct authd_host *a = cfg->hosts[0], *r = cfg->hosts[1];
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
/* scheduler: one table row is a script of operations on a fresh scheduler */

enum sop { PUSH, NEXT, EXPIRED, FINISH, WAKE_AT, COUNTS, END };

struct step {
    enum sop op;
    int id;          /* PUSH/FINISH: the job; NEXT/EXPIRED: the job wanted, 0 for none */
    const char *key; /* PUSH */
    int64_t t;       /* PUSH: deadline; NEXT/EXPIRED: now; WAKE_AT: wanted value */
    int want;        /* PUSH: rc; NEXT/EXPIRED: 1 when the job must come back expired;
                        COUNTS: queued * 100 + running */
};

/* Steps, every field given (-Wmissing-field-initializers). */
/* clang-format off */
#define PUSH_(id, key, deadline, rc) {PUSH, id, key, deadline, rc}
#define NEXT_(id, now, expired) {NEXT, id, NULL, now, expired}
#define EXPIRED_(id, now) {EXPIRED, id, NULL, now, 1}
#define FINISH_(id) {FINISH, id, NULL, 0, 0}
#define WAKE_AT_(at) {WAKE_AT, 0, NULL, at, 0}
#define COUNTS_(queued, running) {COUNTS, 0, NULL, 0, (queued) * 100 + (running)}
#define END_ {END, 0, NULL, 0, 0}
/* clang-format on */

static const struct {
    const char *name;
    struct authd_sched_limits lim;
    struct step steps[16];
} sched_cases[] = {
    {"a saturated key does not hold up another key",
     {1, 8, 8},
     {PUSH_(1, "a", 0, 0), PUSH_(2, "a", 0, 0), PUSH_(3, "b", 0, 0), NEXT_(1, 0, 0), NEXT_(3, 0, 0),
      NEXT_(0, 0, 0), COUNTS_(1, 2), FINISH_(1), NEXT_(2, 0, 0), NEXT_(0, 0, 0), END_}},
    {"one key runs up to its limit, in submission order",
     {2, 8, 8},
     {PUSH_(1, "a", 0, 0), PUSH_(2, "a", 0, 0), PUSH_(3, "a", 0, 0), NEXT_(1, 0, 0), NEXT_(2, 0, 0),
      NEXT_(0, 0, 0), FINISH_(2), NEXT_(3, 0, 0), END_}},
    {"a key's queue is bounded, other keys still queue",
     {1, 2, 8},
     {PUSH_(1, "a", 0, 0), PUSH_(2, "a", 0, 0), PUSH_(3, "a", 0, -EAGAIN), PUSH_(4, "b", 0, 0),
      NEXT_(1, 0, 0), PUSH_(5, "a", 0, 0), PUSH_(6, "a", 0, -EAGAIN), END_}},
    {"the whole queue is bounded",
     {1, 8, 3},
     {PUSH_(1, "a", 0, 0), PUSH_(2, "b", 0, 0), PUSH_(3, "c", 0, 0), PUSH_(4, "d", 0, -EAGAIN),
      NEXT_(1, 0, 0), PUSH_(4, "d", 0, 0), END_}},
    {"running jobs do not count against the queue",
     {4, 1, 1},
     {PUSH_(1, "a", 0, 0), NEXT_(1, 0, 0), PUSH_(2, "a", 0, 0), NEXT_(2, 0, 0), PUSH_(3, "a", 0, 0),
      COUNTS_(1, 2), END_}},
    {"a job whose deadline passed while queued is handed out expired",
     {1, 8, 8},
     {PUSH_(1, "a", 100, 0), PUSH_(2, "b", 0, 0), NEXT_(1, 100, 1), NEXT_(2, 100, 0), COUNTS_(0, 1),
      END_}},
    {"a job before its deadline starts",
     {1, 8, 8},
     {PUSH_(1, "a", 100, 0), NEXT_(1, 99, 0), COUNTS_(0, 1), END_}},
    {"an expired job of a saturated key is still found",
     {1, 8, 8},
     {PUSH_(1, "a", 0, 0), PUSH_(2, "a", 100, 0), PUSH_(3, "a", 300, 0), NEXT_(1, 50, 0),
      EXPIRED_(0, 99), WAKE_AT_(100), EXPIRED_(2, 150), WAKE_AT_(300), NEXT_(0, 150, 0),
      COUNTS_(1, 1), END_}},
    {"an expired job holds no running place",
     {1, 8, 8},
     {PUSH_(1, "a", 10, 0), NEXT_(1, 20, 1), FINISH_(1), COUNTS_(0, 0), PUSH_(2, "a", 0, 0),
      NEXT_(2, 20, 0), END_}},
    {"jobs without a key share one class",
     {1, 8, 8},
     {PUSH_(1, NULL, 0, 0), PUSH_(2, NULL, 0, 0), PUSH_(3, "a", 0, 0), NEXT_(1, 0, 0),
      NEXT_(3, 0, 0), NEXT_(0, 0, 0), WAKE_AT_(0), END_}},
};

static void
test_sched(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(sched_cases) / sizeof(sched_cases[0]); c++) {
        struct authd_sched *s = authd_sched_new(&sched_cases[c].lim);
        struct authd_job jobs[8] = {0}, *got;
        int queued, running;

        for (const struct step *st = sched_cases[c].steps; st->op != END; st++) {
            const char *name = sched_cases[c].name;
            long at = (long)(st - sched_cases[c].steps);
            switch (st->op) {
            case PUSH:
                jobs[st->id] = (struct authd_job){.key = st->key, .deadline_us = st->t};
                if (authd_sched_push(s, &jobs[st->id]) != st->want)
                    fail_msg("%s: step %ld: push %d", name, at, st->id);
                break;
            case NEXT:
            case EXPIRED:
                got = st->op == NEXT ? authd_sched_next(s, st->t) : authd_sched_expired(s, st->t);
                if (got != (st->id ? &jobs[st->id] : NULL))
                    fail_msg("%s: step %ld: got job %ld, want %d", name, at,
                             got ? (long)(got - jobs) : 0L, st->id);
                if (got && got->status != (st->want ? PC_EEXPIRED : 0))
                    fail_msg("%s: step %ld: status %d", name, at, got->status);
                break;
            case FINISH:
                authd_sched_finish(s, &jobs[st->id]);
                break;
            case WAKE_AT:
                if (authd_sched_wake_at(s) != st->t)
                    fail_msg("%s: step %ld: wake at %lld", name, at,
                             (long long)authd_sched_wake_at(s));
                break;
            case COUNTS:
                authd_sched_counts(s, &queued, &running);
                if (queued * 100 + running != st->want)
                    fail_msg("%s: step %ld: %d queued, %d running", name, at, queued, running);
                break;
            case END:
                break;
            }
        }
        while (authd_sched_take(s))
            ;
        authd_sched_free(s);
    }
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
    static const char *const keys[] = {"k0", "k1", "k2", "k3", "k4"};

    for (int i = 0; i < 50; i++) {
        struct tjob *t = pc_xcalloc(1, sizeof(*t));
        t->job.run = tjob_run;
        t->job.done = tjob_done;
        t->job.key = keys[i % 5];
        t->done_count = &done;
        assert_int_equal(authd_pool_submit(p, &t->job), 0);
    }
    for (int i = 0; i < 500 && done < 50; i++) {
        authd_pool_drain(p);
        usleep(1000);
    }
    assert_int_equal(done, 50);
    assert_int_equal(authd_pool_inflight(p), 0);
    authd_pool_free(p);
}

/* A job that runs until released, so a test can hold workers busy as a hanging IdP would. */
struct bjob {
    struct authd_job job;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    bool *release;
    bool started, ran, done;
    int status;
};

static void
bjob_run(struct authd_job *job)
{
    struct bjob *b = (struct bjob *)job;

    pthread_mutex_lock(b->mu);
    b->started = true;
    pthread_cond_broadcast(b->cv);
    while (!*b->release)
        pthread_cond_wait(b->cv, b->mu);
    b->ran = true;
    pthread_mutex_unlock(b->mu);
}

static void
bjob_done(struct authd_job *job)
{
    struct bjob *b = (struct bjob *)job;

    b->done = true;
    b->status = job->status;
}

/* Drains completions until *flag is true; false when that does not happen within ~10 s. */
static bool
drain_until(struct authd_pool *p, const bool *flag)
{
    for (int i = 0; i < 10000 && !*flag; i++) {
        authd_pool_drain(p);
        if (!*flag)
            usleep(1000);
    }
    return *flag;
}

static int64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
test_pool_isolates_a_hanging_key(void **state)
{
    /* Two workers: each key runs at most one job at once. */
    struct authd_pool *p = authd_pool_new(2, wake, NULL);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    bool release = false;
    struct bjob hang = {0}, queued = {0}, late = {0}, other = {0},
                more[AUTHD_IDP_QUEUED_PER_ISSUER];
    struct bjob *all[] = {&hang, &queued, &late, &other};

    (void)state;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        *all[i] = (struct bjob){.job = {.run = bjob_run, .done = bjob_done, .key = "hangs"},
                                .mu = &mu,
                                .cv = &cv,
                                .release = &release};
    other.job.key = "fine";
    late.job.deadline_us = now_us() + 20000; /* passes while every worker is busy */
    assert_int_equal(authd_pool_submit(p, &hang.job), 0);
    pthread_mutex_lock(&mu);
    while (!hang.started)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    assert_int_equal(authd_pool_submit(p, &queued.job), 0);
    assert_int_equal(authd_pool_submit(p, &late.job), 0);
    /* Another key overtakes the queue of the hanging one and gets the second worker. */
    assert_int_equal(authd_pool_submit(p, &other.job), 0);
    pthread_mutex_lock(&mu);
    while (!other.started)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    /* Both workers are held; the job whose deadline passed is completed unstarted anyway. */
    assert_true(drain_until(p, &late.done));
    assert_int_equal(late.status, PC_EEXPIRED);
    pthread_mutex_lock(&mu);
    assert_false(late.started || queued.started);
    pthread_mutex_unlock(&mu);
    assert_false(hang.done || queued.done || other.done);
    /* The hanging key's queue is bounded: beyond it a submission is refused at once. */
    int accepted = 0;
    for (int i = 0; i < AUTHD_IDP_QUEUED_PER_ISSUER; i++) {
        more[i] = queued;
        more[i].started = false;
        accepted += authd_pool_submit(p, &more[i].job) == 0;
    }
    assert_int_equal(accepted, AUTHD_IDP_QUEUED_PER_ISSUER - 1); /* `queued` holds one place */
    int q, r;
    authd_pool_counts(p, &q, &r);
    assert_int_equal(q, AUTHD_IDP_QUEUED_PER_ISSUER);
    assert_int_equal(r, 2);
    pthread_mutex_lock(&mu);
    release = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    assert_true(drain_until(p, &hang.done) && drain_until(p, &other.done));
    assert_true(drain_until(p, &queued.done));
    assert_true(drain_until(p, &more[accepted - 1].done));
    assert_true(hang.ran && queued.ran && other.ran);
    assert_int_equal(queued.status, 0);
    assert_int_equal(authd_pool_inflight(p), 0);
    authd_pool_free(p);
}

/* ------------------------------------------------------------------------------------------ */
/* exchanged login states */

static void
test_replay(void **state)
{
    struct authd_replay *r = authd_replay_new(2);

    (void)state;
    assert_int_equal(authd_replay_claim(r, "a", 100, 10), 0);
    assert_int_equal(authd_replay_claim(r, "a", 100, 11), -EALREADY);
    assert_int_equal(authd_replay_claim(r, "b", 100, 11), 0);
    /* full: the oldest is forgotten, and counted */
    assert_int_equal(authd_replay_claim(r, "c", 100, 12), 0);
    assert_int_equal(authd_replay_evicted(r), 1);
    assert_int_equal(authd_replay_claim(r, "a", 100, 12), 0);
    assert_int_equal(authd_replay_evicted(r), 2);
    assert_int_equal(authd_replay_claim(r, "c", 100, 13), -EALREADY);
    /* released (its exchange never started): claimable again, without evicting */
    authd_replay_release(r, "c", 13);
    assert_int_equal(authd_replay_claim(r, "c", 100, 13), 0);
    assert_int_equal(authd_replay_claim(r, "c", 100, 14), -EALREADY);
    assert_int_equal(authd_replay_claim(r, "a", 100, 14), -EALREADY);
    /* at its expiry a state is forgotten (its cookie is refused by then anyway) */
    assert_int_equal(authd_replay_claim(r, "a", 200, 100), 0);
    assert_int_equal(authd_replay_claim(r, "a", 200, 101), -EALREADY);
    assert_int_equal(authd_replay_evicted(r), 2);
    authd_replay_free(r);
    /* claims refused as busy and released never push anything out */
    r = authd_replay_new(2);
    assert_int_equal(authd_replay_claim(r, "victim", 100, 10), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(authd_replay_claim(r, "x", 100, 10), 0);
        authd_replay_release(r, "x", 10);
    }
    assert_int_equal(authd_replay_claim(r, "victim", 100, 10), -EALREADY);
    assert_int_equal(authd_replay_evicted(r), 0);
    authd_replay_free(r);
}

/* ------------------------------------------------------------------------------------------ */
/* oidc: a URL outside the hosts' allowedURLPrefixes is refused before any connection */

/* A listening socket on 127.0.0.1 where the issuer would be: it sees whether authd connects. */
static int
issuer_socket(int *port)
{
    return listen_loopback(SOCK_NONBLOCK, port);
}

static int
secret_reader(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    (void)path;
    *data = strdup("0123456789abcdef0123456789abcdef\n");
    *len = strlen(*data);
    return 0;
}

/* Two hosts of one issuer; the second's allowedURLPrefixes is second_prefix. */
static struct authd_config *
two_hosts(int port, const char *second_prefix)
{
    char *text = pc_xasprintf("allowInsecureIssuers: true\ncookieSecretFiles: [mem]\nhosts:\n"
                              "- id: a/one\n  hosts: [one.test]\n"
                              "  oidc: {issuerURL: 'http://127.0.0.1:%d/realms/a', clientID: one,\n"
                              "         allowedURLPrefixes: ['http://127.0.0.1:%d/realms/a']}\n"
                              "- id: b/two\n  hosts: [two.test]\n"
                              "  oidc: {issuerURL: 'http://127.0.0.1:%d/realms/a', clientID: two,\n"
                              "         allowedURLPrefixes: ['%s']}\n",
                              port, port, port, second_prefix);
    struct authd_config_opts opts = {.file = "inline", .read_file = secret_reader};
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};

    if (authd_config_parse(text, strlen(text), &opts, &cfg, &diag) != 0)
        fail_msg("config: %s", diag.msg);
    free(text);
    return cfg;
}

static bool
metrics_have(struct authd_metrics *m, const char *line)
{
    struct pc_buf b;
    bool found;

    pc_buf_init(&b, 0);
    assert_int_equal(authd_metrics_render(m, &b), 0);
    found = strstr(pc_buf_str(&b), line) != NULL;
    pc_buf_release(&b);
    return found;
}

static void
test_oidc_refuses_urls_outside_prefixes(void **state)
{
    struct authd_server srv = {.metrics = authd_metrics_new(),
                               .pool = authd_pool_new(1, wake, NULL)};
    struct authd_oidc *o = authd_oidc_new(&srv);
    int port, fd = issuer_socket(&port), conn = -1;
    char *other, *issuer, *refused;
    struct authd_config *cfg;
    struct authd_issuer *iss;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    (void)state;
    issuer = pc_xasprintf("http://127.0.0.1:%d/realms/a", port);
    other = pc_xasprintf("http://127.0.0.1:%d/realms/b", port);
    refused = pc_xasprintf("portcullis_authd_idp_requests_total{issuer=\"%s\",kind=\"discovery\","
                           "result=\"refused\"} 1\n",
                           issuer);
    /* One host of the issuer does not allow its discovery URL: nothing is sent at all. */
    cfg = two_hosts(port, other);
    authd_oidc_sync(o, cfg);
    iss = authd_oidc_issuer(o, issuer);
    assert_non_null(iss);
    assert_false(iss->busy);
    assert_false(iss->discovered);
    assert_int_equal(iss->failures, 1);
    assert_int_equal(authd_pool_inflight(srv.pool), 0); /* no job that could connect */
    assert_true(metrics_have(srv.metrics, refused));
    assert_int_equal(accept(fd, NULL, NULL), -1);
    assert_int_equal(errno, EAGAIN);
    authd_config_free(cfg);
    /* Both allow it: the discovery request reaches the issuer's address. */
    cfg = two_hosts(port, issuer);
    authd_oidc_sync(o, cfg);
    assert_true(iss->busy);
    assert_true(poll(&pfd, 1, 10000) == 1); /* bounded: the worker connects at once */
    conn = accept(fd, NULL, NULL);
    assert_true(conn >= 0);
    close(conn); /* the fetch fails; its completion is drained below */
    for (int i = 0; i < 1000 && authd_pool_inflight(srv.pool) > 0; i++) {
        authd_pool_drain(srv.pool);
        usleep(10000);
    }
    authd_pool_drain(srv.pool);
    assert_int_equal(authd_pool_inflight(srv.pool), 0);
    authd_config_free(cfg);
    authd_oidc_free(o);
    authd_pool_free(srv.pool);
    authd_metrics_free(srv.metrics);
    close(fd);
    free(refused);
    free(other);
    free(issuer);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_render),
        cmocka_unit_test(test_metrics_bounded),
        cmocka_unit_test(test_sesscache),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_sched),
        cmocka_unit_test(test_pool_isolates_a_hanging_key),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_oidc_refuses_urls_outside_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
