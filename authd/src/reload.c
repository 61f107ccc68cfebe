/*
 * reload.c - reference-counted configs and the config watcher thread.
 *
 * The watcher sleeps in poll() on an inotify descriptor watching the config file's directory
 * (a Kubernetes ConfigMap/Secret volume replaces files by renaming a "..data" symlink, which
 * shows up there as IN_MOVED_TO/IN_CREATE) with a timeout that doubles as the periodic stat
 * fallback (filesystems without inotify, missed events). Whenever the digest of the config and
 * its secret files changes, it parses the file on its own thread and posts the result to the
 * lws thread through the worker pool's completion queue; the lws thread swaps the pointer.
 * The file, and its directory, may not exist yet when authd starts (a Secret volume mounted
 * optional: true); the directory watch is (re)added as soon as the directory exists.
 * Work in flight holds its own reference, so a swap never frees a config someone still uses.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authd.h"
#include "portcullis/crypto.h"
#include "portcullis/log.h"

#define DEBOUNCE_MS 150
#define MAX_CONFIG_BYTES (8 * 1024 * 1024)

struct authd_cfgref *
authd_cfgref_new(struct authd_config *cfg)
{
    static atomic_ullong generation;
    struct authd_cfgref *r = pc_xcalloc(1, sizeof(*r));

    r->cfg = cfg;
    atomic_init(&r->refs, 1);
    r->generation = atomic_fetch_add(&generation, 1) + 1;
    return r;
}

struct authd_cfgref *
authd_cfgref_get(struct authd_cfgref *r)
{
    atomic_fetch_add(&r->refs, 1);
    return r;
}

void
authd_cfgref_put(struct authd_cfgref *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    authd_config_free(r->cfg);
    free(r);
}

/* ------------------------------------------------------------------------------------------ */
/* digest */

static int
read_all(const char *path, struct pc_buf *b)
{
    char chunk[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    int rc = 0;

    if (fd < 0)
        return -errno;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        if ((rc = pc_buf_append(b, chunk, (size_t)n)))
            break;
    if (n < 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* Template files count like secret files: a changed page reloads the config (and its pages). */
static void
digest_templates(struct pc_buf *b, const char *dir)
{
    for (int k = 0; dir && k < AUTHD_PAGE_COUNT; k++) {
        char *path = pc_xasprintf("%s/%s", dir, authd_page_files[k]);
        struct stat st;

        if (stat(path, &st) == 0)
            pc_buf_appendf(b, "\n%s:%llu:%lld:%lld.%09ld", authd_page_files[k],
                           (unsigned long long)st.st_ino, (long long)st.st_size,
                           (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
        free(path);
    }
}

int
authd_config_digest(const char *path, const struct authd_config *cfg, uint8_t out[32])
{
    struct pc_buf b;
    int rc;

    pc_buf_init(&b, MAX_CONFIG_BYTES);
    rc = path ? read_all(path, &b) : 0;
    for (size_t i = 0; !rc && cfg && i < cfg->secret_files.n; i++) {
        struct stat st;
        /* Secret files are compared by identity, not content, so no secret is hashed. */
        if (stat(cfg->secret_files.v[i], &st) == 0)
            pc_buf_appendf(&b, "\n%llu:%lld:%lld.%09ld", (unsigned long long)st.st_ino,
                           (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    }
    if (!rc && cfg)
        digest_templates(&b, cfg->templates_dir);
    if (!rc)
        pc_sha256(b.data ? b.data : "", b.len, out);
    pc_buf_release(&b);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* watcher */

struct authd_watch {
    struct authd_server *srv;
    struct authd_pool *pool;
    char *path;
    char *dir;
    int interval_ms;
    int ifd, stopfd;
    int wd; /* inotify watch on dir, -1 while dir does not exist (yet) */
    pthread_t thread;
    uint8_t digest[32];           /* what the last load attempt (good or bad) was made from */
    struct authd_strlist secrets; /* secret files of the last good config (own copy) */
    char *templates_dir;          /* and its templatesDir */
};

/* A reload result on its way to the lws thread. */
struct reload_job {
    struct authd_job job;
    struct authd_server *srv;
    struct authd_cfgref *ref;
    struct pc_diag diag;
    int rc;
};

static void
reload_done(struct authd_job *job)
{
    struct reload_job *j = (struct reload_job *)job;

    authd_server_config_loaded(j->srv, j->ref, &j->diag, j->rc);
    free(j);
}

static void
copy_secrets(struct authd_watch *w, const struct authd_config *cfg)
{
    authd_strlist_release(&w->secrets);
    for (size_t i = 0; cfg && i < cfg->secret_files.n; i++)
        authd_strlist_add(&w->secrets, cfg->secret_files.v[i]);
    free(w->templates_dir);
    w->templates_dir = cfg && cfg->templates_dir ? pc_xstrdup(cfg->templates_dir) : NULL;
}

/* Loads the file when its digest changed and posts the outcome. */
static void
check(struct authd_watch *w)
{
    struct reload_job *j;
    struct authd_config *cfg = NULL;
    struct authd_config tmp = {0};
    uint8_t d[32];

    tmp.secret_files = w->secrets;
    tmp.templates_dir = w->templates_dir;
    if (authd_config_digest(w->path, &tmp, d) || pc_memeq(d, w->digest, 32))
        return;
    memcpy(w->digest, d, 32);
    j = pc_xcalloc(1, sizeof(*j));
    j->job.done = reload_done;
    j->srv = w->srv;
    j->rc = authd_config_load_with(w->path, w->srv->overrides, &cfg, &j->diag);
    if (j->rc == 0) {
        /* The digest covers the new config's secret files from now on. */
        copy_secrets(w, cfg);
        tmp.secret_files = w->secrets;
        tmp.templates_dir = w->templates_dir;
        authd_config_digest(w->path, &tmp, w->digest);
        j->ref = authd_cfgref_new(cfg);
    }
    authd_pool_complete(w->pool, &j->job);
}

#define DIR_EVENTS                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF |           \
     IN_MOVE_SELF)

/*
 * Watches the config file's directory. It may not exist yet (authd started before its volume
 * was filled) or may go away and come back; the loop calls this until it succeeds.
 */
static void
add_dir_watch(struct authd_watch *w)
{
    if (w->ifd >= 0 && w->wd < 0)
        w->wd = inotify_add_watch(w->ifd, w->dir, DIR_EVENTS);
}

/* Reads all pending events; a watch the kernel dropped (directory gone) is re-added later. */
static void
drain_inotify(struct authd_watch *w)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;

    while ((n = read(w->ifd, buf, sizeof(buf))) > 0) {
        for (ssize_t off = 0; off < n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);

            if (ev->mask & IN_IGNORED)
                w->wd = -1;
            off += (ssize_t)(sizeof(*ev) + ev->len);
        }
    }
}

static void *
watch_main(void *arg)
{
    struct authd_watch *w = arg;

    for (;;) {
        struct pollfd fds[2] = {{.fd = w->stopfd, .events = POLLIN},
                                {.fd = w->ifd, .events = POLLIN}};
        int n = poll(fds, w->ifd >= 0 ? 2 : 1, w->interval_ms);

        if (n < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            break;
        if (n > 0 && fds[1].revents) {
            /* Let a writer finish (several events per update) before reading. */
            usleep(DEBOUNCE_MS * 1000);
            drain_inotify(w);
        }
        add_dir_watch(w);
        check(w);
    }
    return NULL;
}

int
authd_watch_start(struct authd_server *srv, const char *path, int interval_ms,
                  struct authd_watch **out)
{
    struct authd_watch *w = pc_xcalloc(1, sizeof(*w));
    char *tmp = pc_xstrdup(path);

    w->srv = srv;
    w->pool = srv->pool;
    w->path = pc_xstrdup(path);
    w->dir = pc_xstrdup(dirname(tmp));
    free(tmp);
    w->interval_ms = interval_ms;
    w->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    w->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    w->wd = -1;
    add_dir_watch(w);
    /* The running config was loaded from what is on disk now. */
    copy_secrets(w, srv->cfg ? srv->cfg->cfg : NULL);
    authd_config_digest(path, srv->cfg ? srv->cfg->cfg : NULL, w->digest);
    if (w->stopfd < 0 || pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        w->thread = 0;
        authd_watch_stop(w);
        return PC_EIO;
    }
    *out = w;
    return 0;
}

void
authd_watch_stop(struct authd_watch *w)
{
    uint64_t one = 1;

    if (!w)
        return;
    if (w->thread) {
        ssize_t n = write(w->stopfd, &one, sizeof(one));
        (void)n;
        pthread_join(w->thread, NULL);
    }
    if (w->ifd >= 0)
        close(w->ifd);
    if (w->stopfd >= 0)
        close(w->stopfd);
    authd_strlist_release(&w->secrets);
    free(w->templates_dir);
    free(w->path);
    free(w->dir);
    free(w);
}
