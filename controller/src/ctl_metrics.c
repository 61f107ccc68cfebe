/*
 * ctl_metrics.c - the controller's counters and its admin listener (/healthz, /readyz,
 * /metrics).
 *
 * The listener is deliberately tiny: one thread, poll() on the listening socket, one request
 * per connection read with a short deadline and a size bound, then the answer and close.
 * Prometheus and kubelet probes need nothing more, and nothing here touches the reconciler.
 */
#include "controller.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const double apply_bounds[CTL_APPLY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                       0.25,  0.5,  1,     2.5,  5};

void
ctl_metrics_init(struct ctl_metrics *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->mu, NULL);
}

void
ctl_metrics_release(struct ctl_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void
ctl_metrics_reconcile(struct ctl_metrics *m, enum ctl_result r)
{
    pthread_mutex_lock(&m->mu);
    m->reconciles[r]++;
    pthread_mutex_unlock(&m->mu);
}

void
ctl_metrics_apply(struct ctl_metrics *m, double secs)
{
    pthread_mutex_lock(&m->mu);
    m->applies++;
    m->apply_seconds_sum += secs;
    for (size_t i = 0; i < CTL_APPLY_BUCKETS; i++)
        if (secs <= apply_bounds[i])
            m->apply_buckets[i]++;
    pthread_mutex_unlock(&m->mu);
}

void
ctl_metrics_inc(struct ctl_metrics *m, unsigned long *field)
{
    pthread_mutex_lock(&m->mu);
    (*field)++;
    pthread_mutex_unlock(&m->mu);
}

static void
counter(struct pc_buf *b, const char *name, const char *help, unsigned long v)
{
    pc_buf_appendf(b, "# HELP %s %s\n# TYPE %s counter\n%s %lu\n", name, help, name, name, v);
}

char *
ctl_metrics_text(struct ctl_metrics *m, size_t queue_depth, bool leader, bool synced)
{
    static const char *const results[CTL_RESULT_N] = {"success", "error", "retry"};
    const char *h = "portcullis_controller_apply_duration_seconds";
    struct pc_buf b;

    pc_buf_init(&b, 0);
    pthread_mutex_lock(&m->mu);
    pc_buf_appends(&b, "# HELP portcullis_controller_reconciles_total Reconciles by result.\n"
                       "# TYPE portcullis_controller_reconciles_total counter\n");
    for (int i = 0; i < CTL_RESULT_N; i++)
        pc_buf_appendf(&b, "portcullis_controller_reconciles_total{result=\"%s\"} %lu\n",
                       results[i], m->reconciles[i]);
    counter(&b, "portcullis_controller_watch_restarts_total",
            "Relists of a watch after it broke or expired (410 Gone).", m->watch_relists);
    counter(&b, "portcullis_controller_status_writes_total", "Status subresource writes.",
            m->status_writes);
    counter(&b, "portcullis_controller_authd_config_writes_total",
            "Writes of the authd config Secret.", m->authd_writes);
    counter(&b, "portcullis_controller_mesh_config_writes_total", "Writes of the mesh config.",
            m->mesh_writes);
    counter(&b, "portcullis_controller_policy_deletes_total", "AuthorizationPolicies deleted.",
            m->policy_deletes);
    counter(&b, "portcullis_controller_events_total", "Events posted about ProtectedHosts.",
            m->events);
    pc_buf_appendf(&b, "# HELP %s Duration of writes to the API server.\n# TYPE %s histogram\n", h,
                   h);
    for (size_t i = 0; i < CTL_APPLY_BUCKETS; i++)
        pc_buf_appendf(&b, "%s_bucket{le=\"%g\"} %lu\n", h, apply_bounds[i], m->apply_buckets[i]);
    pc_buf_appendf(&b, "%s_bucket{le=\"+Inf\"} %lu\n%s_sum %.6f\n%s_count %lu\n", h, m->applies, h,
                   m->apply_seconds_sum, h, m->applies);
    pthread_mutex_unlock(&m->mu);
    pc_buf_appendf(&b,
                   "# HELP portcullis_controller_queue_depth Keys waiting in the work queue.\n"
                   "# TYPE portcullis_controller_queue_depth gauge\n"
                   "portcullis_controller_queue_depth %zu\n"
                   "# HELP portcullis_controller_leader 1 while this replica leads.\n"
                   "# TYPE portcullis_controller_leader gauge\n"
                   "portcullis_controller_leader %d\n"
                   "# HELP portcullis_controller_caches_synced 1 once every watch listed.\n"
                   "# TYPE portcullis_controller_caches_synced gauge\n"
                   "portcullis_controller_caches_synced %d\n",
                   queue_depth, leader ? 1 : 0, synced ? 1 : 0);
    return pc_buf_detach(&b);
}

/* ---- the listener ------------------------------------------------------------------------ */

struct ctl_http {
    int fd;
    int wake[2]; /* a pipe: stop writes to it */
    pthread_t thread;
    ctl_http_fn fn;
    void *ud;
};

static int
split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon = strrchr(addr, ':');
    size_t n;

    if (!colon)
        return PC_EINVAL;
    n = (size_t)(colon - addr);
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
        addr++;
        n -= 2;
    }
    if (n >= hostlen || strlen(colon + 1) >= portlen || colon[1] == '\0')
        return PC_EINVAL;
    memcpy(host, addr, n);
    host[n] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static int
listen_on(const char *addr, int *port_out, struct pc_diag *d)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char host[256], port[16];
    int fd = -1, one = 1;

    if (split_addr(addr, host, sizeof(host), port, sizeof(port)) < 0) {
        pc_diag_set(d, 0, 0, "metrics address \"%s\" must be HOST:PORT or :PORT", addr);
        return PC_EINVAL;
    }
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0 || !res) {
        pc_diag_set(d, 0, 0, "metrics address \"%s\" does not resolve", addr);
        return PC_EINVAL;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
        pc_diag_set(d, 0, 0, "cannot listen on \"%s\": %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0 && port_out) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        getsockname(fd, (struct sockaddr *)&ss, &len);
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd < 0 ? PC_EIO : fd;
}

/* Reads the request head (bounded, 2 s); returns the path or NULL. */
static char *
read_path(int fd, char *buf, size_t len)
{
    size_t n = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char *sp, *end;

    while (n + 1 < len && !memmem(buf, n, "\r\n\r\n", 4)) {
        ssize_t r;

        if (poll(&p, 1, 2000) <= 0)
            return NULL;
        r = read(fd, buf + n, len - 1 - n);
        if (r <= 0)
            return NULL;
        n += (size_t)r;
    }
    buf[n] = '\0';
    sp = strchr(buf, ' ');
    if (!sp)
        return NULL;
    end = strpbrk(sp + 1, " ?\r\n");
    if (!end)
        return NULL;
    *end = '\0';
    return sp + 1;
}

static void
serve_one(struct ctl_http *h, int fd)
{
    char buf[4096], *path = read_path(fd, buf, sizeof(buf));
    int status = 400;
    char *body = path ? h->fn(h->ud, path, &status) : pc_xstrdup("bad request\n");
    char *resp = pc_xasprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                              "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                              status, status == 200 ? "OK" : "Error", strlen(body), body);
    size_t off = 0, len = strlen(resp);

    while (off < len) {
        ssize_t w = write(fd, resp + off, len - off);

        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(resp);
    free(body);
}

static void *
http_loop(void *arg)
{
    struct ctl_http *h = arg;
    struct pollfd p[2] = {{.fd = h->fd, .events = POLLIN}, {.fd = h->wake[0], .events = POLLIN}};

    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (p[0].revents & POLLIN) {
            int c = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);

            if (c >= 0) {
                serve_one(h, c);
                close(c);
            }
        }
    }
    return NULL;
}

struct ctl_http *
ctl_http_start(const char *addr, ctl_http_fn fn, void *ud, int *port_out, struct pc_diag *d)
{
    int fd = listen_on(addr, port_out, d);
    struct ctl_http *h;

    if (fd < 0)
        return NULL;
    h = pc_xcalloc(1, sizeof(*h));
    h->fd = fd;
    h->fn = fn;
    h->ud = ud;
    if (pipe2(h->wake, O_CLOEXEC) < 0)
        abort();
    if (pthread_create(&h->thread, NULL, http_loop, h) != 0)
        abort();
    return h;
}

void
ctl_http_stop(struct ctl_http *h)
{
    if (!h)
        return;
    if (write(h->wake[1], "x", 1) < 0) {
        /* the thread still ends: closing the fds below wakes poll with an error */
    }
    pthread_join(h->thread, NULL);
    close(h->fd);
    close(h->wake[0]);
    close(h->wake[1]);
    free(h);
}
