/*
 * redis.c - authd's connection to Redis: one pipelined connection (TCP or TLS). A thread of
 * its own connects (the resolver, the TCP connect, the TLS handshake and AUTH/SELECT may each
 * block) and hands the connected socket to the lws thread, which then writes the commands and
 * reads the replies on its own event loop (the socket is adopted as a raw descriptor): a
 * check's Redis read is a write and a read on the loop, with no hand-off between threads and
 * no wake-ups each way. Nothing on the lws thread ever waits for Redis: the socket is
 * non-blocking and commands complete from its reads.
 *
 * Why hiredis' reader and writer over our own socket: Debian's hiredis (0.14) speaks no TLS,
 * and rediss:// is what a Redis with a password across a network needs. hiredis formats the
 * commands (redisFormatCommandArgv) and parses the replies (redisReader, with reply objects of
 * our own so that no array can be longer than a few elements); OpenSSL carries the bytes for
 * rediss://, as it does for authd's other TLS.
 *
 * Who owns the connection (fd, TLS, reader, the commands in flight) goes by r->state: the
 * thread while S_DOWN or S_CONNECTING, the attach job (a completion of the worker pool) while
 * S_ATTACHING, the lws thread while S_SERVING. While serving, the thread only keeps time: a
 * few times a second it looks at the oldest command's deadline and the last read, and when
 * one is due it posts a timer job that the lws thread acts on (drop the connection, send a
 * PING). Commands submitted while not serving are refused at once.
 *
 * Bounds: at most MAX_PENDING commands submitted and not completed (more are refused at once),
 * every command has a deadline (commandTimeout from its submission: the connection is dropped
 * when the oldest one passes it, because replies come in order; noticed within TICK_MS), a
 * reply is at most AUTHD_MAX_REDIS_BLOB bytes and MAX_UNPARSED bytes may arrive without
 * completing one. While the connection is down every command is refused at once, so nothing
 * waits for a reconnect; the thread reconnects with a backoff (100 ms doubling to 2 s), and a
 * PING goes out when nothing was read for a second, so a Redis that stops answering is
 * noticed without traffic.
 *
 * Error replies: those that say this server cannot answer now (authd_redis_unavailable) are
 * told apart from refusals of the command; READONLY, MASTERDOWN and NOAUTH also drop the
 * connection, because it points at a replica (after a failover the address resolves to the
 * new master) or has lost its authentication, and only a new connection mends either.
 *
 * Teardown (lws thread): authd_redis_retire closes a served connection at once (its commands
 * complete with PC_EIO, through the pool, never on the caller's stack) and stops the thread
 * without waiting for it (a getaddrinfo cannot be interrupted); the thread's last completion,
 * after those of its commands, hands r back to the lws thread to be freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "authd.h"
#include "redis_lws.h"
#include "portcullis/log.h"

#define MAX_PENDING 4096
#define MAX_UNPARSED (AUTHD_MAX_REDIS_BLOB + 4096)
#define MAX_ELEMENTS 8
#define IDLE_PING_US 1000000
#define TICK_MS 50
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

enum { S_DOWN, S_CONNECTING, S_ATTACHING, S_SERVING };

struct cmd {
    struct authd_job job; /* a completion through the pool (teardown) */
    char *buf;            /* the formatted command: the thread's own (AUTH, SELECT) only */
    size_t len;
    int64_t deadline_us;
    authd_redis_done_fn done; /* NULL: authd's own (PING, AUTH, SELECT) */
    void *ud;
    const char *what; /* the thread's own: which, for the log */
    int rc;
    struct authd_redis_reply *reply;
    struct cmd *next;
};

/* The thread's message to the lws thread: a connection to adopt, or a timer due. */
struct loop_job {
    struct authd_job job;
    struct authd_redis *r; /* NULL once r is freed first (mu) */
    bool attach;
    int fd;
    SSL *ssl;
    redisReader *reader;
};

struct authd_redis {
    struct authd_redis_config *cfg; /* a copy, owned */
    struct authd_pool *pool;
    struct lws_vhost *vh; /* where the served connection is adopted */
    pthread_t thread;
    bool started;
    int wake[2];
    struct loop_job *attach_out, *timer_out; /* posted, not yet run (jobs_mu) */
    atomic_int state;
    atomic_bool up;
    atomic_int stop;
    atomic_bool retired;
    atomic_llong head_deadline_us; /* the oldest command's deadline while serving, 0: none */
    atomic_llong last_io_us;       /* the last read while serving */
    struct authd_job released;     /* retired: the thread's last completion */
    void (*on_released)(void *ud);
    void *released_ud;
    atomic_ullong connects, disconnects, ok, errors, timeouts, refused;
    /* the connection: its owner's (see above) */
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    redisReader *reader;
    struct lws *wsi; /* serving: the adopted socket */
    struct pc_buf out;
    struct cmd *ihead, *itail; /* written or to be, waiting for their reply, in order */
    int pending;               /* submitted and not completed (lws thread) */
    bool want_write;           /* TLS asked for a write to go on reading */
    bool write_wants_read;     /* TLS asked for a read to go on writing */
    size_t unparsed;
    char why[160]; /* why the connection went down, logged once per change */
};

/* ------------------------------------------------------------------------------------------ */
/* replies: hiredis' reader builds these */

void
authd_redis_reply_free(struct authd_redis_reply *rep)
{
    if (rep == NULL)
        return;
    for (size_t i = 0; i < rep->nelem; i++)
        authd_redis_reply_free(rep->elem[i]);
    free(rep->elem);
    if (rep->str != NULL)
        pc_cleanse(rep->str, rep->len);
    free(rep->str);
    free(rep);
}

static void *
attach(const redisReadTask *task, struct authd_redis_reply *rep)
{
    if (task->parent != NULL) {
        struct authd_redis_reply *p = task->parent->obj;

        if (task->idx < 0 || (size_t)task->idx >= p->nelem) {
            authd_redis_reply_free(rep);
            return NULL;
        }
        p->elem[task->idx] = rep;
    }
    return rep;
}

static void *
create_string(const redisReadTask *task, char *str, size_t len)
{
    struct authd_redis_reply *rep;

    if (len > AUTHD_MAX_REDIS_BLOB)
        return NULL; /* the reader reports out of memory: the connection is dropped */
    rep = pc_xcalloc(1, sizeof(*rep));
    rep->type = task->type == REDIS_REPLY_ERROR    ? AUTHD_REDIS_ERROR
                : task->type == REDIS_REPLY_STATUS ? AUTHD_REDIS_STATUS
                                                   : AUTHD_REDIS_STRING;
    rep->str = pc_xmalloc(len + 1);
    memcpy(rep->str, str, len);
    rep->str[len] = '\0';
    rep->len = len;
    return attach(task, rep);
}

static void *
create_array(const redisReadTask *task, int elements)
{
    struct authd_redis_reply *rep;

    if (elements < 0 || elements > MAX_ELEMENTS)
        return NULL;
    rep = pc_xcalloc(1, sizeof(*rep));
    rep->type = AUTHD_REDIS_ARRAY;
    rep->nelem = (size_t)elements;
    rep->elem = pc_xcalloc((size_t)elements + 1, sizeof(*rep->elem));
    return attach(task, rep);
}

static void *
create_integer(const redisReadTask *task, long long value)
{
    struct authd_redis_reply *rep = pc_xcalloc(1, sizeof(*rep));

    rep->type = AUTHD_REDIS_INTEGER;
    rep->integer = value;
    return attach(task, rep);
}

static void *
create_nil(const redisReadTask *task)
{
    struct authd_redis_reply *rep = pc_xcalloc(1, sizeof(*rep));

    rep->type = AUTHD_REDIS_NIL;
    return attach(task, rep);
}

static void
free_object(void *obj)
{
    authd_redis_reply_free(obj);
}

static redisReplyObjectFunctions reply_fns = {create_string, create_array, create_integer,
                                              create_nil, free_object};

/* ------------------------------------------------------------------------------------------ */
/* error replies */

/* The error codes (an error reply's first word) of a server that cannot answer now. */
static const struct {
    const char *code;
    bool reconnect; /* only a new connection mends it */
} unavailable[] = {
    {"LOADING", false}, {"BUSY", false},      {"TRYAGAIN", false}, {"CLUSTERDOWN", false},
    {"READONLY", true}, {"MASTERDOWN", true}, {"NOAUTH", true},
};

/* The index in unavailable[] of rep's code, -1 when rep is no such error reply. */
static int
unavailable_code(const struct authd_redis_reply *rep)
{
    if (rep == NULL || rep->type != AUTHD_REDIS_ERROR)
        return -1;
    for (size_t i = 0; i < sizeof(unavailable) / sizeof(unavailable[0]); i++) {
        size_t n = strlen(unavailable[i].code);

        if (rep->len >= n && memcmp(rep->str, unavailable[i].code, n) == 0 &&
            (rep->len == n || rep->str[n] == ' '))
            return (int)i;
    }
    return -1;
}

bool
authd_redis_unavailable(const struct authd_redis_reply *rep)
{
    return unavailable_code(rep) >= 0;
}

/* ------------------------------------------------------------------------------------------ */
/* commands */

/* Appends c to the list head..tail (FIFO: replies come in order). */
static void
append_cmd(struct cmd **head, struct cmd **tail, struct cmd *c)
{
    c->next = NULL;
    if (*tail)
        (*tail)->next = c;
    else
        *head = c;
    *tail = c;
}

static void
cmd_free(struct cmd *c)
{
    authd_redis_reply_free(c->reply);
    if (c->buf != NULL)
        pc_cleanse(c->buf, c->len); /* AUTH carries the password */
    free(c->buf);
    free(c);
}

static void
cmd_done(struct authd_job *job)
{
    struct cmd *c = (struct cmd *)job;

    if (c->done != NULL)
        c->done(c->ud, c->rc, c->reply);
    cmd_free(c);
}

static void
count(struct authd_redis *r, int rc)
{
    atomic_fetch_add(rc == 0 ? &r->ok : rc == PC_EEXPIRED ? &r->timeouts : &r->errors, 1);
}

/* A reply read: c completes now, on the lws thread (authd's own are freed). */
static void
complete_now(struct authd_redis *r, struct cmd *c)
{
    count(r, 0);
    if (c->done != NULL)
        r->pending--;
    cmd_done(&c->job);
}

/* No reply: c completes with rc through the pool, never on the caller's stack. */
static void
complete_later(struct authd_redis *r, struct cmd *c, int rc)
{
    c->rc = rc;
    count(r, rc);
    if (c->done == NULL) {
        cmd_free(c);
        return;
    }
    r->pending--;
    authd_pool_complete(r->pool, &c->job);
}

/* The oldest command's deadline, for the thread that keeps time. */
static void
publish_head(struct authd_redis *r)
{
    atomic_store(&r->head_deadline_us, r->ihead ? r->ihead->deadline_us : 0);
}

/* Queues c's bytes to be written and c to wait for its reply (serving, lws thread). */
static void
send_cmd(struct authd_redis *r, struct cmd *c, const char *buf, size_t len)
{
    bool idle = r->out.len == 0;

    pc_buf_append(&r->out, buf, len);
    append_cmd(&r->ihead, &r->itail, c);
    if (r->ihead == c)
        publish_head(r);
    if (idle) /* one write a batch: what this pass of the loop queues goes with it */
        lws_callback_on_writable(r->wsi);
}

static void rearm(struct authd_redis *r);

static void
wake_thread(struct authd_redis *r)
{
    if (write(r->wake[1], "w", 1) < 0 && errno != EAGAIN)
        pc_log(PC_LOG_WARN, "redis", "error", "cannot wake the redis thread", NULL);
}

void
authd_redis_ignore(void *ud, int rc, const struct authd_redis_reply *rep)
{
    (void)ud;
    (void)rc;
    (void)rep;
}

int
authd_redis_command(struct authd_redis *r, int argc, const char *const *argv, const size_t *lens,
                    authd_redis_done_fn done, void *ud)
{
    struct cmd *c;
    char *buf = NULL;
    int n;

    if (r == NULL || !atomic_load(&r->up) || atomic_load(&r->stop) || r->wsi == NULL) {
        if (r != NULL)
            atomic_fetch_add(&r->refused, 1);
        return PC_EIO;
    }
    if (r->pending >= MAX_PENDING) {
        atomic_fetch_add(&r->refused, 1);
        return PC_ETOOBIG;
    }
    if ((n = redisFormatCommandArgv(&buf, argc, (const char **)argv, lens)) < 0)
        return PC_EINVAL;
    c = pc_xcalloc(1, sizeof(*c));
    c->job.done = cmd_done;
    c->deadline_us = authd_mono_us() + r->cfg->command_timeout_ms * 1000;
    c->done = done;
    c->ud = ud;
    r->pending++;
    send_cmd(r, c, buf, (size_t)n);
    free(buf); /* r->out has it; written with authd's secrets, wiped there */
    return 0;
}

bool
authd_redis_up(const struct authd_redis *r)
{
    return r != NULL && atomic_load(&r->up);
}

void
authd_redis_stats(const struct authd_redis *r, struct authd_redis_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (r == NULL)
        return;
    st->up = atomic_load(&r->up);
    st->connects = atomic_load(&r->connects);
    st->disconnects = atomic_load(&r->disconnects);
    st->ok = atomic_load(&r->ok);
    st->errors = atomic_load(&r->errors);
    st->timeouts = atomic_load(&r->timeouts);
    st->refused = atomic_load(&r->refused);
}

/* ------------------------------------------------------------------------------------------ */
/* the connection's bytes (its owner's thread) */

static void
set_why(struct authd_redis *r, const char *what, const char *detail)
{
    snprintf(r->why, sizeof(r->why), "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

static const char *
ssl_error(void)
{
    static __thread char buf[128];
    unsigned long e = ERR_get_error();

    ERR_clear_error();
    if (e == 0)
        return "tls error";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

/* Fails every command in flight: rc for those past their deadline, PC_EIO others. */
static void
fail_all(struct authd_redis *r, int rc)
{
    int64_t now = authd_mono_us();
    struct cmd *list = r->ihead, *c;

    r->ihead = r->itail = NULL;
    while ((c = list) != NULL) {
        list = c->next;
        complete_later(r, c, now >= c->deadline_us ? rc : PC_EIO);
    }
}

static void drain_wake(struct authd_redis *r);

/*
 * Waits for events on fd until deadline_us (the thread, connecting). Returns poll's revents,
 * 0 on timeout, -1 when stopping. A wake byte is drained and the wait goes on.
 */
static int
wait_fd(struct authd_redis *r, short events, int64_t deadline_us)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = r->fd, .events = events},
                              {.fd = r->wake[0], .events = POLLIN}};
        int64_t left = deadline_us - authd_mono_us();

        if (atomic_load(&r->stop))
            return -1;
        if (left <= 0)
            return 0;
        if (poll(p, 2, (int)((left + 999) / 1000)) < 0 && errno != EINTR)
            return -1;
        if (p[0].revents)
            return p[0].revents;
        if (p[1].revents & POLLIN)
            drain_wake(r);
    }
}

/* >0 bytes, 0 nothing now (would block), <0 the connection failed. */
static ssize_t
io_read(struct authd_redis *r, char *buf, size_t n)
{
    ssize_t got;

    if (r->ssl == NULL) {
        got = read(r->fd, buf, n);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (got <= 0)
            set_why(r, got == 0 ? "closed by redis" : "read failed", got ? strerror(errno) : NULL);
        return got <= 0 ? -1 : got;
    }
    /* SSL_get_error reads this thread's error queue: the lws thread's other OpenSSL work (a
     * bearer token's failed signature check) may have left an error there. */
    ERR_clear_error();
    got = SSL_read(r->ssl, buf, (int)n);
    if (got > 0)
        return got;
    switch (SSL_get_error(r->ssl, (int)got)) {
    case SSL_ERROR_WANT_WRITE:
        r->want_write = true; /* TLS has to write before it reads on */
        return 0;
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        set_why(r, "closed by redis", NULL);
        return -1;
    default:
        set_why(r, "tls read failed", ssl_error());
        return -1;
    }
}

static ssize_t
io_write(struct authd_redis *r, const char *buf, size_t n)
{
    ssize_t put;

    if (r->ssl == NULL) {
        put = send(r->fd, buf, n, MSG_NOSIGNAL);
        if (put < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (put < 0)
            set_why(r, "write failed", strerror(errno));
        return put;
    }
    ERR_clear_error(); /* as for SSL_read */
    put = SSL_write(r->ssl, buf, (int)(n > 1 << 20 ? 1 << 20 : n));
    if (put > 0)
        return put;
    switch (SSL_get_error(r->ssl, (int)put)) {
    case SSL_ERROR_WANT_READ:
        r->write_wants_read = true; /* the next read goes on with it */
        return 0;
    case SSL_ERROR_WANT_WRITE:
        return 0;
    default:
        set_why(r, "tls write failed", ssl_error());
        return -1;
    }
}

/* Writes what r->out holds. 0 or -1. */
static int
flush(struct authd_redis *r)
{
    while (r->out.len > 0) {
        ssize_t put = io_write(r, r->out.data, r->out.len);

        if (put < 0)
            return -1;
        if (put == 0)
            return 0;
        memmove(r->out.data, r->out.data + put, r->out.len - (size_t)put);
        r->out.len -= (size_t)put;
        /* the bytes moved down leave a copy behind: AUTH's password, sessions */
        pc_cleanse(r->out.data + r->out.len, (size_t)put);
    }
    return 0;
}

/*
 * Feeds n bytes read from the socket to the reader. -1 (r->why set) when the reply they belong
 * to has now taken more than MAX_UNPARSED bytes without completing, or the reader refused
 * them. Every read from the socket goes through here, the AUTH/SELECT exchange's too.
 */
static int
feed(struct authd_redis *r, const char *buf, size_t n)
{
    r->unparsed += n;
    if (r->unparsed > MAX_UNPARSED || redisReaderFeed(r->reader, buf, n) != 0) {
        set_why(r, "reply over its bound", NULL);
        return -1;
    }
    return 0;
}

/*
 * The next whole reply the reader holds (new), NULL when there is none yet. The bytes after it
 * that the reader holds already count toward the next reply's bound.
 */
static struct authd_redis_reply *
next_reply(struct authd_redis *r)
{
    void *rep = NULL;

    if (redisReaderGetReply(r->reader, &rep) != 0 || rep == NULL)
        return NULL;
    r->unparsed = r->reader->len - r->reader->pos;
    return rep;
}

int
authd_redis_parse(const char *buf, size_t len, size_t split,
                  void (*each)(void *ud, const struct authd_redis_reply *rep), void *ud)
{
    struct authd_redis *r = pc_xcalloc(1, sizeof(*r));
    size_t part = split > 0 && split < len ? split : len;
    int rc = 0;

    r->reader = redisReaderCreateWithFunctions(&reply_fns);
    for (size_t at = 0; rc == 0 && at < len; at += part, part = len - at) {
        struct authd_redis_reply *rep;

        if (feed(r, buf + at, part) != 0) {
            rc = -1;
            break;
        }
        while ((rep = next_reply(r)) != NULL) {
            if (each != NULL)
                each(ud, rep);
            authd_redis_reply_free(rep);
        }
        if (r->reader->err)
            rc = -1;
    }
    redisReaderFree(r->reader);
    free(r);
    return rc;
}

/*
 * Reads what arrived and completes the commands whose replies are whole (serving, lws
 * thread). 0 or -1; -1 also after a reply saying only a new connection helps (the replies read
 * with it are completed first).
 */
static int
receive(struct authd_redis *r)
{
    char buf[16384];
    const char *reconnect = NULL;
    ssize_t got = 0;

    while (reconnect == NULL && (got = io_read(r, buf, sizeof(buf))) > 0) {
        struct authd_redis_reply *rep;

        atomic_store(&r->last_io_us, authd_mono_us());
        if (feed(r, buf, (size_t)got) != 0)
            return -1;
        while ((rep = next_reply(r)) != NULL) {
            struct cmd *c = r->ihead;
            int code = unavailable_code(rep);

            if (c == NULL) { /* nothing asked: not a reply to us */
                authd_redis_reply_free(rep);
                set_why(r, "unexpected reply", NULL);
                return -1;
            }
            r->ihead = c->next;
            if (r->ihead == NULL)
                r->itail = NULL;
            publish_head(r);
            c->next = NULL;
            c->reply = rep;
            complete_now(r, c); /* may submit commands: they go after those in flight */
            if (code >= 0 && unavailable[code].reconnect)
                reconnect = unavailable[code].code;
        }
        if (r->reader->err) {
            set_why(r, "protocol error", r->reader->errstr);
            return -1;
        }
    }
    if (reconnect != NULL) {
        set_why(r, "redis answered", reconnect);
        return -1;
    }
    return got < 0 ? -1 : 0;
}

/* The connection's own objects gone (the fd too unless lws closes it); nothing completed. */
static void
release_conn(int fd, SSL *ssl, redisReader *reader)
{
    if (ssl != NULL)
        SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    if (reader != NULL)
        redisReaderFree(reader);
}

/*
 * The connection is gone (lws thread, from the adopted socket's close, which closes the fd):
 * its commands fail, the thread is told to connect again.
 */
static void
teardown(struct authd_redis *r)
{
    bool was_up = atomic_exchange(&r->up, false);

    release_conn(-1, r->ssl, r->reader);
    r->ssl = NULL;
    r->reader = NULL;
    r->fd = -1;
    r->wsi = NULL;
    r->want_write = r->write_wants_read = false;
    pc_buf_reset(&r->out);
    r->unparsed = 0;
    fail_all(r, PC_EEXPIRED);
    publish_head(r);
    if (atomic_load(&r->stop)) {
        pc_log(PC_LOG_INFO, "redis", "state", "closed", "address", r->cfg->url, NULL);
    } else if (was_up) {
        atomic_fetch_add(&r->disconnects, 1);
        pc_log(PC_LOG_ERROR, "redis", "state", "down", "address", r->cfg->url, "reason", r->why,
               NULL);
    }
    atomic_store(&r->state, S_DOWN); /* the thread's from here */
    wake_thread(r);
}

/* Closes the served connection now (lws thread); teardown runs from its close. */
static void
drop_served(struct authd_redis *r, const char *why)
{
    if (atomic_load(&r->state) != S_SERVING || r->wsi == NULL)
        return;
    set_why(r, why, NULL);
    lws_set_timeout(r->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_SYNC);
}

int
authd_redis_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct authd_redis *r = lws_get_opaque_user_data(wsi);

    (void)user;
    (void)in;
    (void)len;
    if (r == NULL)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        if (receive(r) != 0)
            return -1;
        if (r->write_wants_read) { /* the write TLS held back can go on now */
            r->write_wants_read = false;
            if (flush(r) != 0)
                return -1;
        }
        if (r->want_write || r->out.len > 0) /* asked here, it holds */
            lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        if (r->want_write) {
            r->want_write = false;
            if (receive(r) != 0)
                return -1;
        }
        if (flush(r) != 0)
            return -1;
        if ((r->out.len > 0 && !r->write_wants_read) || r->want_write)
            rearm(r); /* not from here: see rearm */
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (r->why[0] == '\0')
            set_why(r, "connection lost", NULL);
        lws_set_opaque_user_data(wsi, NULL);
        teardown(r);
        return 0;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the lws thread's side of the hand-over and the timer */

/* Takes j's connection: adopted into the loop and served from now on. */
static void
attach_conn(struct authd_redis *r, struct loop_job *j)
{
    lws_adopt_desc_t desc = {.vh = r->vh,
                             .type = LWS_ADOPT_RAW_FILE_DESC,
                             .fd = {.filefd = j->fd},
                             .vh_prot_name = "authd-redis",
                             .opaque = r};

    r->fd = j->fd;
    r->ssl = j->ssl;
    r->reader = j->reader;
    r->why[0] = '\0';
    r->want_write = r->write_wants_read = false; /* the hello's writes may have set one */
    atomic_store(&r->last_io_us, authd_mono_us());
    atomic_store(&r->state, S_SERVING);
    if (r->vh == NULL || (r->wsi = lws_adopt_descriptor_vhost_via_info(&desc)) == NULL) {
        pc_log(PC_LOG_ERROR, "redis", "state", "down", "address", r->cfg->url, "reason",
               "the event loop did not take the connection", NULL);
        release_conn(r->fd, r->ssl, r->reader); /* lws closed nothing */
        r->ssl = NULL;
        r->reader = NULL;
        r->fd = -1;
        atomic_store(&r->state, S_DOWN);
        wake_thread(r);
        return;
    }
    atomic_store(&r->up, true);
    atomic_fetch_add(&r->connects, 1);
    pc_log(PC_LOG_INFO, "redis", "state", "up", "address", r->cfg->url, NULL);
}

/* The timer, due: the oldest command past its deadline ends the connection; idle, a PING;
 * bytes left to write, the socket watched for writability again. */
static void
on_timer(struct authd_redis *r)
{
    static const char *const argv[] = {"PING"};
    int64_t now = authd_mono_us();
    struct cmd *c;
    char *buf = NULL;
    int n;

    if (atomic_load(&r->state) != S_SERVING || atomic_load(&r->stop))
        return;
    if ((r->out.len > 0 && !r->write_wants_read) || r->want_write)
        lws_callback_on_writable(r->wsi);
    if (r->ihead != NULL && r->ihead->deadline_us <= now) {
        drop_served(r, "command timed out");
    } else if (r->ihead == NULL && now - atomic_load(&r->last_io_us) >= IDLE_PING_US &&
               (n = redisFormatCommandArgv(&buf, 1, (const char **)argv, NULL)) > 0) {
        c = pc_xcalloc(1, sizeof(*c));
        c->deadline_us = now + r->cfg->command_timeout_ms * 1000;
        send_cmd(r, c, buf, (size_t)n);
        free(buf);
    }
}

/* Jobs in the pool outlive nothing: r->attach_out and r->timer_out and each job's r. */
static pthread_mutex_t jobs_mu = PTHREAD_MUTEX_INITIALIZER;

static void
loop_job_done(struct authd_job *job)
{
    struct loop_job *j = (struct loop_job *)job;
    struct authd_redis *r;

    pthread_mutex_lock(&jobs_mu);
    if ((r = j->r) != NULL)
        *(j->attach ? &r->attach_out : &r->timer_out) = NULL;
    pthread_mutex_unlock(&jobs_mu);
    if (j->attach && (r == NULL || atomic_load(&r->stop))) { /* let go meanwhile */
        release_conn(j->fd, j->ssl, j->reader);
        if (r != NULL)
            atomic_store(&r->state, S_DOWN);
    } else if (j->attach) {
        attach_conn(r, j);
    } else if (r != NULL) {
        on_timer(r);
    }
    free(j);
}

/* Posts a job to the lws thread (from any thread); a timer only when none is on its way. */
static void
post(struct authd_redis *r, struct loop_job *j)
{
    struct loop_job **slot = j->attach ? &r->attach_out : &r->timer_out;
    bool ok;

    j->job.done = loop_job_done;
    j->r = r;
    pthread_mutex_lock(&jobs_mu);
    if ((ok = *slot == NULL))
        *slot = j;
    pthread_mutex_unlock(&jobs_mu);
    if (ok)
        authd_pool_complete(r->pool, &j->job);
    else
        free(j);
}

/*
 * Has the socket watched for writability again, from outside its writeable callback: lws
 * 4.1's raw-file role clears POLLOUT after that callback returns, which undoes a request made
 * inside it; a write that did not finish would then wait for the next command's deadline.
 */
static void
rearm(struct authd_redis *r)
{
    post(r, pc_xcalloc(1, sizeof(struct loop_job)));
}

/* ------------------------------------------------------------------------------------------ */
/* connecting (the thread) */

static int
tcp_connect(struct authd_redis *r, int64_t deadline_us)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    int err, one = 1;

    snprintf(port, sizeof(port), "%d", r->cfg->port);
    if ((err = getaddrinfo(r->cfg->host, port, &hints, &res)) != 0) {
        set_why(r, "cannot resolve the host", gai_strerror(err));
        return -1;
    }
    set_why(r, "cannot connect", "no address");
    for (struct addrinfo *a = res; a != NULL && r->fd < 0; a = a->ai_next) {
        socklen_t len = sizeof(err);

        r->fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (r->fd < 0)
            continue;
        if (connect(r->fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            set_why(r, "cannot connect", strerror(errno));
        } else if (wait_fd(r, POLLOUT, deadline_us) <= 0) {
            set_why(r, "cannot connect", "timed out");
        } else if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            set_why(r, "cannot connect", strerror(err ? err : errno));
        } else {
            setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            setsockopt(r->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
            break;
        }
        close(r->fd);
        r->fd = -1;
    }
    freeaddrinfo(res);
    return r->fd >= 0 ? 0 : -1;
}

static int
tls_handshake(struct authd_redis *r, int64_t deadline_us)
{
    const char *name = r->cfg->server_name ? r->cfg->server_name : r->cfg->host;
    struct in6_addr ip;
    bool is_ip = inet_pton(AF_INET, name, &ip) == 1 || inet_pton(AF_INET6, name, &ip) == 1;

    r->ssl = SSL_new(r->ctx);
    if (r->ssl == NULL || SSL_set_fd(r->ssl, r->fd) != 1 ||
        (!is_ip && SSL_set_tlsext_host_name(r->ssl, name) != 1) ||
        (!is_ip && SSL_set1_host(r->ssl, name) != 1) ||
        (is_ip && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->ssl), name) != 1)) {
        set_why(r, "tls setup failed", ssl_error());
        return -1;
    }
    /* flush retries a partial SSL_write from r->out, which may have grown (moved) meanwhile */
    SSL_set_mode(r->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    for (;;) {
        int rc, ev;

        ERR_clear_error();
        rc = SSL_connect(r->ssl);

        if (rc == 1)
            return 0;
        switch (SSL_get_error(r->ssl, rc)) {
        case SSL_ERROR_WANT_READ:
            ev = POLLIN;
            break;
        case SSL_ERROR_WANT_WRITE:
            ev = POLLOUT;
            break;
        default:
            set_why(r, "tls handshake failed", ssl_error());
            return -1;
        }
        if (wait_fd(r, (short)ev, deadline_us) <= 0) {
            set_why(r, "tls handshake failed", "timed out");
            return -1;
        }
    }
}

/* Queues AUTH, SELECT and PING as the connection's first commands (the thread's own). */
static void
queue_hello(struct authd_redis *r)
{
    const char *argv[3];
    char db[8];

    if (r->cfg->password != NULL) {
        int n = 0;

        argv[n++] = "AUTH";
        if (r->cfg->username != NULL)
            argv[n++] = r->cfg->username;
        argv[n++] = r->cfg->password;
        struct cmd *c = pc_xcalloc(1, sizeof(*c));
        c->what = "AUTH refused";
        c->len = (size_t)redisFormatCommandArgv(&c->buf, n, argv, NULL);
        pc_buf_append(&r->out, c->buf, c->len);
        append_cmd(&r->ihead, &r->itail, c);
    }
    snprintf(db, sizeof(db), "%d", r->cfg->database);
    argv[0] = "SELECT";
    argv[1] = db;
    struct cmd *s = pc_xcalloc(1, sizeof(*s));
    s->what = "SELECT refused";
    s->len = (size_t)redisFormatCommandArgv(&s->buf, 2, argv, NULL);
    pc_buf_append(&r->out, s->buf, s->len);
    append_cmd(&r->ihead, &r->itail, s);
}

/* Sends the hello commands and reads their replies until deadline. 0 or -1. */
static int
hello(struct authd_redis *r, int64_t deadline_us)
{
    queue_hello(r);
    for (struct cmd *x = r->ihead; x; x = x->next)
        x->deadline_us = deadline_us;
    while (r->ihead != NULL || r->out.len > 0) {
        struct authd_redis_reply *rep;
        char buf[4096];
        ssize_t got;

        if (flush(r) != 0)
            return -1;
        if (wait_fd(r, r->out.len ? POLLIN | POLLOUT : POLLIN, deadline_us) <= 0) {
            set_why(r, "no answer to AUTH/SELECT", "timed out");
            return -1;
        }
        if ((got = io_read(r, buf, sizeof(buf))) < 0 || (got > 0 && feed(r, buf, (size_t)got) != 0))
            return -1;
        while (r->ihead != NULL && (rep = next_reply(r)) != NULL) {
            struct cmd *c = r->ihead;
            bool refused = rep->type == AUTHD_REDIS_ERROR;

            r->ihead = c->next;
            if (r->ihead == NULL)
                r->itail = NULL;
            if (refused)
                set_why(r, c->what, rep->str);
            pc_cleanse(c->buf, c->len); /* AUTH carries the password */
            free(c->buf);
            free(c);
            authd_redis_reply_free(rep);
            if (refused)
                return -1;
        }
        if (r->reader->err) {
            set_why(r, "protocol error", r->reader->errstr);
            return -1;
        }
    }
    /* Nothing was asked after SELECT: bytes already there would answer the first GET. */
    if (r->reader->len > r->reader->pos) {
        set_why(r, "unexpected reply", "after SELECT");
        return -1;
    }
    return 0;
}

static void
free_hello(struct authd_redis *r)
{
    while (r->ihead != NULL) { /* the thread's own, never completions */
        struct cmd *c = r->ihead;

        r->ihead = c->next;
        pc_cleanse(c->buf, c->len); /* AUTH carries the password */
        free(c->buf);
        free(c);
    }
    r->itail = NULL;
}

/* A connection that failed before it was handed over: the thread's own, let go. */
static void
disconnect(struct authd_redis *r)
{
    release_conn(r->fd, r->ssl, r->reader);
    r->fd = -1;
    r->ssl = NULL;
    r->reader = NULL;
    pc_buf_reset(&r->out);
    r->unparsed = 0;
    fail_all(r, PC_EIO); /* the hello's, if any were left */
}

/* Connects and authenticates; then hands the connection to the lws thread. 0 or -1. */
static int
connect_redis(struct authd_redis *r)
{
    int64_t deadline = authd_mono_us() + r->cfg->connect_timeout_ms * 1000;
    struct loop_job *j;

    r->reader = redisReaderCreateWithFunctions(&reply_fns);
    if (tcp_connect(r, deadline) != 0 || (r->ctx && tls_handshake(r, deadline) != 0) ||
        hello(r, deadline) != 0) {
        free_hello(r);
        disconnect(r);
        return -1;
    }
    j = pc_xcalloc(1, sizeof(*j));
    j->attach = true;
    j->fd = r->fd;
    j->ssl = r->ssl;
    j->reader = r->reader;
    r->fd = -1;
    r->ssl = NULL;
    r->reader = NULL;
    atomic_store(&r->state, S_ATTACHING);
    post(r, j);
    return 0;
}

static void
drain_wake(struct authd_redis *r)
{
    char buf[256];

    while (read(r->wake[0], buf, sizeof(buf)) > 0)
        ;
}

/* Sleeps ms (the backoff), cut short by stop only: a wake byte (a teardown's) is drained. */
static void
sleep_ms(struct authd_redis *r, int ms)
{
    int64_t until = authd_mono_us() + ms * 1000LL, left;

    while (!atomic_load(&r->stop) && (left = until - authd_mono_us()) > 0) {
        struct pollfd p = {.fd = r->wake[0], .events = POLLIN};

        if (poll(&p, 1, (int)((left + 999) / 1000)) > 0)
            drain_wake(r);
    }
}

static bool
timer_on_its_way(struct authd_redis *r)
{
    bool on;

    pthread_mutex_lock(&jobs_mu);
    on = r->timer_out != NULL;
    pthread_mutex_unlock(&jobs_mu);
    return on;
}

/* While the lws thread serves: every TICK_MS, a timer job when the oldest command is past its
 * deadline or nothing was read for IDLE_PING_US. */
static void
keep_time(struct authd_redis *r)
{
    struct pollfd p = {.fd = r->wake[0], .events = POLLIN};
    int64_t now = authd_mono_us(), head = atomic_load(&r->head_deadline_us);
    int ms = TICK_MS;

    /* Wakes at the deadline, not after; once a timer is on its way, the lws thread acts and
     * this waits a tick (no spinning while that thread is busy). */
    if (head != 0 && head - now < TICK_MS * 1000LL && !timer_on_its_way(r))
        ms = head <= now ? 0 : (int)((head - now + 999) / 1000);
    if (ms > 0 && poll(&p, 1, ms) > 0)
        drain_wake(r);
    if (atomic_load(&r->state) != S_SERVING || atomic_load(&r->stop))
        return;
    now = authd_mono_us();
    head = atomic_load(&r->head_deadline_us);
    if ((head != 0 && now >= head) ||
        (head == 0 && now - atomic_load(&r->last_io_us) >= IDLE_PING_US))
        post(r, pc_xcalloc(1, sizeof(struct loop_job)));
}

/* A connection shorter than this counts as a failed connect for the backoff. */
#define SERVED_LONG_US 1000000

static void *
run(void *arg)
{
    struct authd_redis *r = arg;
    int backoff = BACKOFF_MIN_MS;
    int64_t served_at = 0; /* when the last connection was handed over; 0: none since */
    bool logged = false;

    while (!atomic_load(&r->stop)) {
        int state = atomic_load(&r->state);

        if (state == S_ATTACHING || state == S_SERVING) {
            keep_time(r);
            continue;
        }
        /* One that ended at once (closed after SELECT, READONLY at the first command, not
         * taken by the loop) is retried with the backoff, not as fast as it fails. */
        if (served_at != 0 && authd_mono_us() - served_at < SERVED_LONG_US) {
            sleep_ms(r, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            served_at = 0;
            continue;
        }
        if (served_at != 0)
            backoff = BACKOFF_MIN_MS;
        served_at = 0;
        atomic_store(&r->state, S_CONNECTING);
        if (connect_redis(r) == 0) {
            served_at = authd_mono_us();
            logged = false;
            continue;
        }
        atomic_store(&r->state, S_DOWN);
        if (!logged && !atomic_load(&r->stop)) /* once per outage, not when let go */
            pc_log(PC_LOG_ERROR, "redis", "state", "down", "address", r->cfg->url, "reason", r->why,
                   NULL);
        logged = true;
        sleep_ms(r, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    /* A served connection is closed by the lws thread just after stop is set (retire, stop):
     * its commands' completions go to the pool first (bounded wait). */
    for (int i = 0; i < 500 && atomic_load(&r->state) == S_SERVING; i++)
        poll(NULL, 0, 10); /* not sleep_ms: stop is set, and that ends it at once */
    /* After every completion of its commands; r is the lws thread's once this is posted. */
    if (atomic_load(&r->retired))
        authd_pool_complete(r->pool, &r->released);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* lifecycle */

static SSL_CTX *
tls_context(const struct authd_redis_config *cfg)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((cfg->ca_file ? SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL)
                      : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int
authd_redis_new(const struct authd_redis_config *cfg, struct authd_pool *pool, struct lws_vhost *vh,
                struct authd_redis **out)
{
    struct authd_redis *r = pc_xcalloc(1, sizeof(*r));

    *out = NULL;
    r->cfg = authd_redis_config_copy(cfg);
    r->pool = pool;
    r->vh = vh;
    r->fd = -1;
    r->wake[0] = r->wake[1] = -1;
    pc_buf_init(&r->out, 0);
    r->out.secret = true; /* AUTH and sessions pass through it */
    if (cfg->tls && (r->ctx = tls_context(cfg)) == NULL) {
        pc_log(PC_LOG_ERROR, "redis", "error", "cannot load the CA for rediss://", "file",
               cfg->ca_file, "reason", ssl_error(), NULL);
        authd_redis_free(r);
        return PC_EINVAL;
    }
    if (pipe2(r->wake, O_NONBLOCK | O_CLOEXEC) != 0 ||
        pthread_create(&r->thread, NULL, run, r) != 0) {
        authd_redis_free(r);
        return -errno;
    }
    r->started = true;
    *out = r;
    return 0;
}

void
authd_redis_stop(struct authd_redis *r)
{
    if (r == NULL || !r->started)
        return;
    atomic_store(&r->stop, 1);
    drop_served(r, "stopped");
    wake_thread(r);
    pthread_join(r->thread, NULL);
    r->started = false;
}

static void
released_done(struct authd_job *job)
{
    struct authd_redis *r =
        (struct authd_redis *)((char *)job - offsetof(struct authd_redis, released));

    pc_log(PC_LOG_INFO, "redis", "state", "released", "address", r->cfg->url, NULL);
    r->on_released(r->released_ud);
}

void
authd_redis_retire(struct authd_redis *r, void (*released)(void *ud), void *ud)
{
    if (r == NULL)
        return;
    r->released.done = released_done;
    r->on_released = released;
    r->released_ud = ud;
    atomic_store(&r->retired, true); /* before stop: the thread reads it after seeing stop */
    atomic_store(&r->stop, 1);
    drop_served(r, "let go");
    wake_thread(r);
}

void
authd_redis_free(struct authd_redis *r)
{
    if (r == NULL)
        return;
    authd_redis_stop(r);
    pthread_mutex_lock(&jobs_mu); /* a job still in the pool lets its connection go alone */
    if (r->attach_out != NULL)
        r->attach_out->r = NULL;
    if (r->timer_out != NULL)
        r->timer_out->r = NULL;
    pthread_mutex_unlock(&jobs_mu);
    fail_all(r, PC_EIO); /* stop closed a served connection; the thread let go of its own */
    authd_redis_config_free(r->cfg);
    if (r->ctx != NULL)
        SSL_CTX_free(r->ctx);
    for (int i = 0; i < 2; i++)
        if (r->wake[i] >= 0)
            close(r->wake[i]);
    pc_buf_release(&r->out);
    free(r);
}
