/*
 * work.c - a small pool of worker threads for blocking work (IdP HTTP calls) and a completion
 * queue drained on the lws service thread.
 *
 * Workers never touch lws or the config: a job carries copies of what it needs, and its done()
 * callback runs on the lws thread after the wake function (lws_cancel_service) fired.
 *
 * Which queued job runs next is the scheduler's choice (authd_sched_*, pure, below): each job
 * has a key (its issuer) and a deadline set when it was submitted. A key runs a bounded number
 * of jobs at once and queues a bounded number more, so one issuer that hangs cannot take every
 * worker, and jobs of other keys overtake its queue. A job whose deadline passes while it waits
 * is completed without running, by a worker or, when every worker is busy, by the reaper
 * thread, which sleeps until the earliest deadline in the queue.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authd.h"

/* ------------------------------------------------------------------------------------------ */
/* scheduler */

/* Per-key counts; an entry exists while its key has a job queued or running. */
struct keystat {
    char *key;
    int queued, running;
};

struct authd_sched {
    struct authd_sched_limits lim;
    struct authd_job *head, *tail; /* submission order */
    int queued, running;
    struct keystat *keys;
    size_t nkeys, capkeys;
};

/* Appends job to the list head..tail (FIFO). */
static void
append(struct authd_job **head, struct authd_job **tail, struct authd_job *job)
{
    job->next = NULL;
    if (*tail)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

static const char *
key_of(const struct authd_job *job)
{
    return job->key ? job->key : "";
}

static struct keystat *
keystat_find(struct authd_sched *s, const char *key)
{
    for (size_t i = 0; i < s->nkeys; i++)
        if (!strcmp(s->keys[i].key, key))
            return &s->keys[i];
    return NULL;
}

static struct keystat *
keystat_get(struct authd_sched *s, const char *key)
{
    struct keystat *k = keystat_find(s, key);

    if (k)
        return k;
    if (s->nkeys == s->capkeys) {
        s->capkeys = s->capkeys ? 2 * s->capkeys : 8;
        s->keys = pc_xrealloc(s->keys, s->capkeys * sizeof(*s->keys));
    }
    k = &s->keys[s->nkeys++];
    *k = (struct keystat){.key = pc_xstrdup(key)};
    return k;
}

/* Drops the entry once its key has nothing queued or running. */
static void
keystat_settle(struct authd_sched *s, struct keystat *k)
{
    if (k->queued || k->running)
        return;
    free(k->key);
    *k = s->keys[--s->nkeys];
}

struct authd_sched *
authd_sched_new(const struct authd_sched_limits *lim)
{
    struct authd_sched *s = pc_xcalloc(1, sizeof(*s));

    s->lim = *lim;
    return s;
}

void
authd_sched_free(struct authd_sched *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nkeys; i++)
        free(s->keys[i].key);
    free(s->keys);
    free(s);
}

int
authd_sched_push(struct authd_sched *s, struct authd_job *job)
{
    struct keystat *k = keystat_find(s, key_of(job));

    if (s->queued >= s->lim.queued || (k && k->queued >= s->lim.queued_per_key))
        return -EAGAIN;
    k = k ? k : keystat_get(s, key_of(job));
    k->queued++;
    s->queued++;
    job->status = 0;
    append(&s->head, &s->tail, job);
    return 0;
}

/* Unlinks job (prev is the job before it, NULL for the head) and updates the counts. */
static struct authd_job *
unlink_job(struct authd_sched *s, struct authd_job *prev, struct authd_job *job, bool runs)
{
    struct keystat *k = keystat_find(s, key_of(job));

    if (prev)
        prev->next = job->next;
    else
        s->head = job->next;
    if (s->tail == job)
        s->tail = prev;
    job->next = NULL;
    s->queued--;
    k->queued--;
    if (runs) {
        k->running++;
        s->running++;
    }
    keystat_settle(s, k);
    return job;
}

struct authd_job *
authd_sched_expired(struct authd_sched *s, int64_t now_us)
{
    for (struct authd_job *prev = NULL, *j = s->head; j; prev = j, j = j->next) {
        if (j->deadline_us && j->deadline_us <= now_us) {
            j->status = PC_EEXPIRED;
            return unlink_job(s, prev, j, false);
        }
    }
    return NULL;
}

struct authd_job *
authd_sched_next(struct authd_sched *s, int64_t now_us)
{
    struct authd_job *j = authd_sched_expired(s, now_us);

    if (j)
        return j;
    for (struct authd_job *prev = NULL; (j = prev ? prev->next : s->head); prev = j) {
        if (keystat_find(s, key_of(j))->running < s->lim.running_per_key)
            return unlink_job(s, prev, j, true);
    }
    return NULL;
}

void
authd_sched_finish(struct authd_sched *s, const struct authd_job *job)
{
    struct keystat *k = keystat_find(s, key_of(job));

    if (!k || k->running == 0)
        return;
    k->running--;
    s->running--;
    keystat_settle(s, k);
}

struct authd_job *
authd_sched_take(struct authd_sched *s)
{
    return s->head ? unlink_job(s, NULL, s->head, false) : NULL;
}

int64_t
authd_sched_wake_at(const struct authd_sched *s)
{
    int64_t at = 0;

    for (const struct authd_job *j = s->head; j; j = j->next)
        if (j->deadline_us && (!at || j->deadline_us < at))
            at = j->deadline_us;
    return at;
}

void
authd_sched_counts(const struct authd_sched *s, int *queued, int *running)
{
    *queued = s->queued;
    *running = s->running;
}

/* ------------------------------------------------------------------------------------------ */
/* pool */

struct authd_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* workers: a job was queued or a key's running job finished */
    pthread_cond_t reap_cv; /* reaper: a job was queued (maybe with an earlier deadline) */
    struct authd_sched *sched;
    struct authd_job *done_head, *done_tail; /* FIFO */
    pthread_t *threads;
    int nthreads;
    pthread_t reaper;
    bool reaper_started;
    bool stop;
    atomic_int inflight;
    void (*wake)(void *ud);
    void *wake_ud;
};

/* The clock of job deadlines: authd_mono_us's, read here so the pool stands on its own. */
static int64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *
worker(void *arg)
{
    struct authd_pool *p = arg;
    struct authd_job *job = NULL;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !(job = authd_sched_next(p->sched, mono_us())))
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        pthread_mutex_unlock(&p->mu);
        if (job->status == 0 && job->run)
            job->run(job);
        pthread_mutex_lock(&p->mu);
        if (job->status == 0) {
            authd_sched_finish(p->sched, job);
            pthread_cond_broadcast(&p->cv); /* its key may run the next one */
        }
        pthread_mutex_unlock(&p->mu);
        authd_pool_complete(p, job);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Completes queued jobs whose deadline passed while no worker was free to notice. */
static void *
reaper(void *arg)
{
    struct authd_pool *p = arg;
    struct authd_job *job;

    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if ((job = authd_sched_expired(p->sched, mono_us()))) {
            pthread_mutex_unlock(&p->mu);
            authd_pool_complete(p, job);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        int64_t at = authd_sched_wake_at(p->sched);
        if (!at) {
            pthread_cond_wait(&p->reap_cv, &p->mu);
        } else {
            struct timespec ts = {.tv_sec = at / 1000000, .tv_nsec = (at % 1000000) * 1000};
            pthread_cond_timedwait(&p->reap_cv, &p->mu, &ts);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct authd_pool *
authd_pool_new(int nthreads, void (*wake)(void *ud), void *ud)
{
    struct authd_pool *p = pc_xcalloc(1, sizeof(*p));
    struct authd_sched_limits lim = {
        .running_per_key = nthreads / 2 < AUTHD_IDP_RUNNING_PER_ISSUER
                               ? nthreads / 2
                               : AUTHD_IDP_RUNNING_PER_ISSUER,
        .queued_per_key = AUTHD_IDP_QUEUED_PER_ISSUER,
        .queued = AUTHD_IDP_QUEUED,
    };
    pthread_condattr_t ca;

    if (lim.running_per_key < 1)
        lim.running_per_key = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->reap_cv, &ca);
    pthread_condattr_destroy(&ca);
    p->sched = authd_sched_new(&lim);
    p->wake = wake;
    p->wake_ud = ud;
    p->threads = pc_xcalloc((size_t)nthreads, sizeof(*p->threads));
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->nthreads++;
    }
    p->reaper_started = pthread_create(&p->reaper, NULL, reaper, p) == 0;
    return p;
}

int
authd_pool_submit(struct authd_pool *p, struct authd_job *job)
{
    int rc;

    pthread_mutex_lock(&p->mu);
    rc = authd_sched_push(p->sched, job);
    if (rc == 0) {
        atomic_fetch_add(&p->inflight, 1);
        pthread_cond_signal(&p->cv);
        pthread_cond_signal(&p->reap_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void
authd_pool_complete(struct authd_pool *p, struct authd_job *job)
{
    bool first;

    pthread_mutex_lock(&p->mu);
    first = p->done_head == NULL;
    append(&p->done_head, &p->done_tail, job);
    pthread_mutex_unlock(&p->mu);
    /* One wake a batch: authd_pool_drain takes the whole list, so a job added to a list it
     * has not taken yet goes with the one whose wake is on its way. */
    if (first && p->wake)
        p->wake(p->wake_ud);
}

int
authd_pool_drain(struct authd_pool *p)
{
    struct authd_job *list;
    int n = 0;

    /* Take the whole list at once so done() may submit new jobs without deadlock. */
    pthread_mutex_lock(&p->mu);
    list = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (list) {
        struct authd_job *job = list;

        list = job->next;
        job->next = NULL;
        if (job->run)
            atomic_fetch_sub(&p->inflight, 1);
        job->done(job);
        n++;
    }
    return n;
}

int
authd_pool_inflight(struct authd_pool *p)
{
    return atomic_load(&p->inflight);
}

void
authd_pool_counts(struct authd_pool *p, int *queued, int *running)
{
    pthread_mutex_lock(&p->mu);
    authd_sched_counts(p->sched, queued, running);
    pthread_mutex_unlock(&p->mu);
}

void
authd_pool_free(struct authd_pool *p)
{
    struct authd_job *job;

    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_cond_broadcast(&p->reap_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    if (p->reaper_started)
        pthread_join(p->reaper, NULL);
    /* Jobs never started complete with run skipped; done() sees their status. */
    while ((job = authd_sched_take(p->sched))) {
        job->status = -ECANCELED;
        append(&p->done_head, &p->done_tail, job);
    }
    p->wake = NULL;
    authd_pool_drain(p);
    authd_sched_free(p->sched);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->reap_cv);
    free(p);
}
