/*
 * test_redis.c - redis.c, authd's connection to Redis, against peers that are not Redis: a
 * hostile one that floods a reply that never ends (on the AUTH/SELECT exchange and after it),
 * which authd must drop once MAX_UNPARSED bytes complete no reply; a broken one that accepts
 * the AUTH/SELECT exchange and then never answers, to see the order in which a connection let
 * go (authd_redis_retire) hands back its commands and itself; and which error replies mean
 * "cannot answer now". The connection is served on a libwebsockets loop run by the test's
 * thread, as authd's lws thread does. Real Redis behaviour is tested end to end
 * (e2e/tests/test_redis_*.py).
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
#include <stdatomic.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "authd.h"
#include "redis_lws.h"
#include "io_util.h"

#define PEER_WAIT_MS 20000 /* every wait of the peer; authd's connectTimeout is 3x this */

/* ------------------------------------------------------------------------------------------ */
/* a peer on 127.0.0.1 that takes one connection */

struct peer {
    int lfd, port;
    const char *greeting; /* sent once authd's first command arrived; NULL: none */
    size_t flood;         /* bytes of a bulk string that never ends, then silence */
    bool closed;          /* authd closed the connection within PEER_WAIT_MS */
    atomic_bool done;     /* the peer let its connection go */
    pthread_t thread;
};

static bool
wait_in(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, PEER_WAIT_MS) == 1;
}

/* Until authd closes (read 0 or an error), at most PEER_WAIT_MS. */
static bool
wait_closed(int fd)
{
    char buf[4096];

    while (wait_in(fd)) {
        ssize_t got = recv(fd, buf, sizeof(buf), 0);

        if (got <= 0)
            return true;
    }
    return false;
}

static void *
peer_run(void *arg)
{
    struct peer *p = arg;
    char buf[4096];
    int fd;

    if (!wait_in(p->lfd) || (fd = accept(p->lfd, NULL, NULL)) < 0)
        return NULL;
    if (wait_in(fd) && recv(fd, buf, sizeof(buf), 0) > 0) {
        bool failed = false;
        size_t sent = 0;

        if (p->greeting)
            failed = send(fd, p->greeting, strlen(p->greeting), MSG_NOSIGNAL) < 0;
        if (p->flood && !failed)
            failed = send(fd, "$100000000\r\n", 12, MSG_NOSIGNAL) < 0;
        memset(buf, 'x', sizeof(buf));
        while (!failed && sent < p->flood) {
            ssize_t put = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);

            failed = put < 0;
            sent += put > 0 ? (size_t)put : 0;
        }
        p->closed = failed || wait_closed(fd);
    }
    close(fd);
    atomic_store(&p->done, true);
    return NULL;
}

static void
peer_start(struct peer *p)
{
    p->lfd = listen_loopback(SOCK_CLOEXEC, &p->port);
    assert_int_equal(pthread_create(&p->thread, NULL, peer_run, p), 0);
}

static void
peer_join(struct peer *p)
{
    pthread_join(p->thread, NULL);
    close(p->lfd);
}

/* ------------------------------------------------------------------------------------------ */
/* the loop: a libwebsockets context with the "authd-redis" protocol, and the pool it drains */

struct loop {
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct authd_pool *pool;
    lws_sorted_usec_list_t tick;
};

static const struct lws_protocols protocols[] = {
    AUTHD_REDIS_PROTOCOL,
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* lws_service returns at least this often (it waits for its timers, not for a timeout). */
static void
tick(lws_sorted_usec_list_t *sul)
{
    struct loop *l = lws_container_of(sul, struct loop, tick);

    lws_sul_schedule(l->ctx, 0, &l->tick, tick, 10 * LWS_US_PER_MS);
}

static void
wake_loop(void *ud)
{
    struct loop *l = ud;

    lws_cancel_service(l->ctx);
}

static void
loop_start(struct loop *l)
{
    struct lws_context_creation_info info;

    memset(l, 0, sizeof(*l));
    memset(&info, 0, sizeof(info));
    lws_set_log_level(LLL_ERR, NULL);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.port = CONTEXT_PORT_NO_LISTEN;
    assert_non_null(l->ctx = lws_create_context(&info));
    info.vhost_name = "test";
    info.protocols = protocols;
    assert_non_null(l->vh = lws_create_vhost(l->ctx, &info));
    l->pool = authd_pool_new(1, wake_loop, l);
    lws_sul_schedule(l->ctx, 0, &l->tick, tick, 10 * LWS_US_PER_MS);
}

/* One pass: the completions, then I/O and timers. */
static void
loop_once(struct loop *l)
{
    authd_pool_drain(l->pool);
    lws_service(l->ctx, 0);
    authd_pool_drain(l->pool);
}

/* The pool freed first (its last drain runs what is left), then the context. */
static void
loop_end(struct loop *l)
{
    if (l->pool != NULL)
        authd_pool_free(l->pool);
    lws_sul_cancel(&l->tick);
    lws_context_destroy(l->ctx);
}

static struct authd_redis_config *
config_for(int port)
{
    struct authd_redis_config *c = pc_xcalloc(1, sizeof(*c));
    char url[64];

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    c->url = pc_xstrdup(url);
    c->host = pc_xstrdup("127.0.0.1");
    c->port = port;
    c->key_prefix = pc_xstrdup("portcullis:");
    c->connect_timeout_ms = 3 * PEER_WAIT_MS;
    c->command_timeout_ms = 3 * PEER_WAIT_MS;
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* bounds */

/*
 * A reply that never completes is dropped once MAX_UNPARSED bytes of it arrived, whether it
 * answers the AUTH/SELECT exchange or comes after it, long before connectTimeout.
 */
static void
test_unending_reply_is_dropped(void **state)
{
    static const struct {
        const char *name, *greeting;
    } cases[] = {
        {"the reply to SELECT", NULL},
        {"a reply after SELECT's +OK", "+OK\r\n"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct peer p = {.greeting = cases[i].greeting, .flood = 2 << 20};
        struct authd_redis_config *cfg;
        struct authd_redis *r = NULL;
        struct loop l;

        loop_start(&l);
        peer_start(&p);
        cfg = config_for(p.port);
        assert_int_equal(authd_redis_new(cfg, l.pool, l.vh, &r), 0);
        while (!atomic_load(&p.done)) /* bounded by the peer's own waits */
            loop_once(&l);
        peer_join(&p);
        if (!p.closed)
            fail_msg("%s: 2 MiB that complete no reply were taken in", cases[i].name);
        authd_redis_free(r);
        authd_redis_config_free(cfg);
        loop_end(&l);
    }
}

/* What the reader hands on, and where it stops: the same bounds at any split of the bytes. */
static void
count_reply(void *ud, const struct authd_redis_reply *rep)
{
    (*(int *)ud)++;
    (void)rep;
}

static void
test_parse_bounds(void **state)
{
    static const struct {
        const char *in;
        int rc, replies;
    } cases[] = {
        {"+OK\r\n$5\r\nhello\r\n:42\r\n$-1\r\n-ERR x\r\n*2\r\n$1\r\na\r\n:1\r\n", 0, 6},
        {"*8\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n:7\r\n:8\r\n", 0, 1},
        {"*9\r\n:1\r\n", -1, 0},     /* arrays: at most 8 elements */
        {"+OK\r\n?what\r\n", -1, 1}, /* not RESP */
        {"$3\r\nab", 0, 0},          /* not whole yet */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].in);

        for (size_t split = 0; split < len; split++) {
            int n = 0, rc = authd_redis_parse(cases[i].in, len, split, count_reply, &n);

            if (rc != cases[i].rc || n != cases[i].replies)
                fail_msg("case %zu split %zu: rc %d, %d replies", i, split, rc, n);
        }
    }
    /* a bulk string of AUTHD_MAX_REDIS_BLOB bytes is a reply, one more byte is not; bytes
     * that complete no reply end the read past AUTHD_MAX_REDIS_BLOB + 4 KiB */
    for (size_t extra = 0; extra < 2; extra++) {
        size_t n = AUTHD_MAX_REDIS_BLOB + extra, at;
        char *buf = malloc(n + 32);
        int got = 0;

        at = (size_t)snprintf(buf, 32, "$%zu\r\n", n);
        memset(buf + at, 'x', n);
        memcpy(buf + at + n, "\r\n", 2);
        assert_int_equal(authd_redis_parse(buf, at + n + 2, at + 7, count_reply, &got),
                         extra ? -1 : 0);
        assert_int_equal(got, extra ? 0 : 1);
        free(buf);
    }
    {
        size_t n = AUTHD_MAX_REDIS_BLOB + 8192;
        char *buf = malloc(n);
        int got = 0;

        memcpy(buf, "$100000000\r\n", 13);
        memset(buf + 13, 'x', n - 13);
        assert_int_equal(authd_redis_parse(buf, n, 13, count_reply, &got), -1);
        assert_int_equal(got, 0);
        free(buf);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* error replies */

static void
test_unavailable_error_replies(void **state)
{
    static const struct {
        enum authd_redis_type type;
        const char *str;
        bool unavailable;
    } cases[] = {
        {AUTHD_REDIS_ERROR, "LOADING Redis is loading the dataset in memory", true},
        {AUTHD_REDIS_ERROR, "BUSY Redis is busy running a script.", true},
        {AUTHD_REDIS_ERROR, "TRYAGAIN Multiple keys request during rehashing of slot", true},
        {AUTHD_REDIS_ERROR, "CLUSTERDOWN The cluster is down", true},
        {AUTHD_REDIS_ERROR, "READONLY You can't write against a read only replica.", true},
        {AUTHD_REDIS_ERROR, "MASTERDOWN Link with MASTER is down", true},
        {AUTHD_REDIS_ERROR, "NOAUTH Authentication required.", true},
        {AUTHD_REDIS_ERROR, "READONLY", true},
        {AUTHD_REDIS_ERROR, "WRONGTYPE Operation against a key holding the wrong kind", false},
        {AUTHD_REDIS_ERROR, "NOPERM User portcullis has no permissions to run 'get'", false},
        {AUTHD_REDIS_ERROR, "ERR unknown command 'GET'", false},
        {AUTHD_REDIS_ERROR, "LOADINGX", false},
        {AUTHD_REDIS_ERROR, "loading", false},
        {AUTHD_REDIS_ERROR, "", false},
        {AUTHD_REDIS_STATUS, "READONLY", false},
        {AUTHD_REDIS_STRING, "LOADING", false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_redis_reply rep = {
            .type = cases[i].type, .str = (char *)cases[i].str, .len = strlen(cases[i].str)};

        if (authd_redis_unavailable(&rep) != cases[i].unavailable)
            fail_msg("\"%s\" (type %d): want %d", cases[i].str, cases[i].type,
                     cases[i].unavailable);
    }
    assert_false(authd_redis_unavailable(NULL));
}

/* ------------------------------------------------------------------------------------------ */
/* letting a connection go */

/* What the "lws thread" saw, in order: 'c' a command's completion, 'r' the release. */
struct seen {
    char what[16];
    int rc[16];
    size_t n;
    struct authd_redis *r;
};

static void
command_done(void *ud, int rc, const struct authd_redis_reply *rep)
{
    struct seen *s = ud;

    (void)rep;
    s->rc[s->n] = rc;
    s->what[s->n++] = 'c';
}

static void
released(void *ud)
{
    struct seen *s = ud;

    s->what[s->n++] = 'r';
    authd_redis_free(s->r); /* its thread has ended: nothing to wait for */
    s->r = NULL;
}

/* Runs the loop, as the lws thread does, until the release ran (bounded: 10 s). */
static void
drain_until_released(struct loop *l, struct seen *s)
{
    for (int i = 0; i < 1000 && s->r != NULL; i++)
        loop_once(l);
    assert_null(s->r);
}

static void
wait_up(struct loop *l, struct authd_redis *r)
{
    for (int i = 0; i < 1000 && !authd_redis_up(r); i++)
        loop_once(l);
    assert_true(authd_redis_up(r));
}

/*
 * A connection let go with commands in flight: retire returns at once; the commands complete
 * (PC_EIO) on the draining thread, then the release, exactly once, after all of them; at
 * shutdown (stop before the pool's last drain) the release is not lost. ASan checks that
 * nothing is used after it is freed or leaked.
 */
static void
test_retire_completes_commands_then_releases(void **state)
{
    static const struct {
        const char *name;
        int commands;
        bool up, shutdown;
    } cases[] = {
        {"reload, commands in flight", 3, true, false},
        {"shutdown, commands in flight", 2, true, true},
        {"reload while connecting", 0, false, false},
        {"shutdown while connecting", 0, false, true},
    };
    static const char *const get[] = {"GET", "portcullis:s:x"};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct seen s = {0};
        struct peer p = {.greeting = "+OK\r\n"};
        struct authd_redis_config *cfg;
        char want[16] = {0};
        struct loop l;

        loop_start(&l);
        if (cases[i].up)
            peer_start(&p); /* answers SELECT, then nothing */
        else
            p.lfd = listen_loopback(SOCK_CLOEXEC, &p.port); /* takes connections, never answers */
        cfg = config_for(p.port);
        assert_int_equal(authd_redis_new(cfg, l.pool, l.vh, &s.r), 0);
        if (cases[i].up)
            wait_up(&l, s.r);
        for (int c = 0; c < cases[i].commands; c++) {
            assert_int_equal(authd_redis_command(s.r, 2, get, NULL, command_done, &s), 0);
            want[c] = 'c';
        }
        want[cases[i].commands] = 'r';
        authd_redis_retire(s.r, released, &s);
        assert_int_equal(s.n, 0); /* nothing runs on the caller's thread */
        if (cases[i].shutdown) {
            authd_redis_stop(s.r);   /* waits for the thread */
            authd_pool_free(l.pool); /* the last drain runs what the thread completed */
            l.pool = NULL;
        } else {
            drain_until_released(&l, &s);
        }
        if (strcmp(s.what, want) != 0)
            fail_msg("%s: saw \"%s\", want \"%s\"", cases[i].name, s.what, want);
        for (int c = 0; c < cases[i].commands; c++)
            assert_int_equal(s.rc[c], PC_EIO);
        if (cases[i].up)
            peer_join(&p);
        else
            close(p.lfd);
        loop_end(&l);
        authd_redis_config_free(cfg);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* writes that do not finish at once; connections that end at once */

/* A peer that answers SELECT, reads nothing for a second, then counts what arrives. */
struct slow_peer {
    int lfd, port;
    atomic_size_t got;
    atomic_bool done;
    pthread_t thread;
};

static void *
slow_run(void *arg)
{
    struct slow_peer *p = arg;
    char buf[65536];
    ssize_t n;
    int fd;

    if (!wait_in(p->lfd) || (fd = accept(p->lfd, NULL, NULL)) < 0) {
        atomic_store(&p->done, true);
        return NULL;
    }
    if (wait_in(fd) && recv(fd, buf, sizeof(buf), 0) > 0 &&
        send(fd, "+OK\r\n", 5, MSG_NOSIGNAL) == 5) {
        sleep(1); /* the socket buffers fill up meanwhile */
        while (wait_in(fd) && (n = recv(fd, buf, sizeof(buf), 0)) > 0)
            if (atomic_fetch_add(&p->got, (size_t)n) + (size_t)n >= 20000000)
                break;
    }
    close(fd);
    atomic_store(&p->done, true);
    return NULL;
}

/*
 * A batch of commands larger than the socket's buffers, to a Redis that stops reading for a
 * second (a fork, an fsync): the write goes on when the socket drains, it does not wait for
 * the next command or a deadline.
 */
static void
test_a_write_that_does_not_finish_goes_on(void **state)
{
    static char val[200000];
    const char *argv[] = {"SET", "k", val};
    size_t lens[] = {3, 1, sizeof(val)};
    struct slow_peer p = {0};
    struct authd_redis_config *cfg;
    struct authd_redis *r = NULL;
    struct loop l;

    (void)state;
    memset(val, 'v', sizeof(val));
    loop_start(&l);
    p.lfd = listen_loopback(SOCK_CLOEXEC, &p.port);
    assert_int_equal(pthread_create(&p.thread, NULL, slow_run, &p), 0);
    cfg = config_for(p.port);
    assert_int_equal(authd_redis_new(cfg, l.pool, l.vh, &r), 0);
    wait_up(&l, r);
    for (int i = 0; i < 100; i++) /* 20 MB */
        assert_int_equal(authd_redis_command(r, 3, argv, lens, authd_redis_ignore, NULL), 0);
    while (!atomic_load(&p.done)) /* bounded by the peer's PEER_WAIT_MS */
        loop_once(&l);
    pthread_join(p.thread, NULL);
    close(p.lfd);
    if (atomic_load(&p.got) < 20000000)
        fail_msg("the peer got %zu of 20,000,000 bytes", atomic_load(&p.got));
    authd_redis_free(r);
    authd_redis_config_free(cfg);
    loop_end(&l);
}

/* A peer that answers SELECT on every connection it takes, and counts them. */
struct many_peer {
    int lfd, port;
    atomic_int accepted;
    atomic_bool stop;
    pthread_t thread;
};

static void *
many_run(void *arg)
{
    struct many_peer *p = arg;
    char buf[4096];

    while (!atomic_load(&p->stop)) {
        struct pollfd pf = {.fd = p->lfd, .events = POLLIN};
        int fd;

        if (poll(&pf, 1, 50) != 1 || (fd = accept(p->lfd, NULL, NULL)) < 0)
            continue;
        atomic_fetch_add(&p->accepted, 1);
        if (wait_in(fd) && recv(fd, buf, sizeof(buf), 0) > 0)
            (void)!send(fd, "+OK\r\n", 5, MSG_NOSIGNAL);
        close(fd);
    }
    return NULL;
}

/*
 * A connection that ends as soon as it is up (here: no loop takes it) is retried with the
 * backoff (100 ms doubling), not as fast as it fails: a few connections in two seconds.
 */
static void
test_a_connection_that_ends_at_once_is_retried_with_the_backoff(void **state)
{
    struct many_peer p = {0};
    struct authd_redis_config *cfg;
    struct authd_redis *r = NULL;
    struct loop l;
    int64_t end;

    (void)state;
    loop_start(&l);
    p.lfd = listen_loopback(SOCK_CLOEXEC, &p.port);
    assert_int_equal(pthread_create(&p.thread, NULL, many_run, &p), 0);
    cfg = config_for(p.port);
    assert_int_equal(authd_redis_new(cfg, l.pool, NULL, &r), 0); /* no vhost to adopt it */
    end = authd_mono_us() + 2000000;
    while (authd_mono_us() < end)
        loop_once(&l);
    authd_redis_free(r);
    atomic_store(&p.stop, true);
    pthread_join(p.thread, NULL);
    close(p.lfd);
    if (atomic_load(&p.accepted) > 8)
        fail_msg("%d connections in 2 s", atomic_load(&p.accepted));
    assert_true(atomic_load(&p.accepted) >= 2);
    authd_redis_config_free(cfg);
    loop_end(&l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unending_reply_is_dropped),
        cmocka_unit_test(test_parse_bounds),
        cmocka_unit_test(test_unavailable_error_replies),
        cmocka_unit_test(test_retire_completes_commands_then_releases),
        cmocka_unit_test(test_a_write_that_does_not_finish_goes_on),
        cmocka_unit_test(test_a_connection_that_ends_at_once_is_retried_with_the_backoff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
