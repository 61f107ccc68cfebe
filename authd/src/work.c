/*
 * work.c - a small pool of worker threads for blocking work (IdP HTTP calls) and a completion
 * queue drained on the lws service thread.
 *
 * Workers never touch lws or the config: a job carries copies of what it needs, and its done()
 * callback runs on the lws thread after the wake function (lws_cancel_service) fired.
 */
#include <pthread.h>
#include <stdlib.h>

#include "authd.h"

struct authd_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct authd_job *todo_head, *todo_tail; /* FIFO */
    struct authd_job *done_head, *done_tail; /* FIFO */
    pthread_t *threads;
    int nthreads;
    bool stop;
    atomic_int inflight;
    void (*wake)(void *ud);
    void *wake_ud;
};

static void
push(struct authd_job **head, struct authd_job **tail, struct authd_job *job)
{
    job->next = NULL;
    if (*tail)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

static struct authd_job *
pop(struct authd_job **head, struct authd_job **tail)
{
    struct authd_job *job = *head;

    if (job) {
        *head = job->next;
        if (!*head)
            *tail = NULL;
        job->next = NULL;
    }
    return job;
}

static void *
worker(void *arg)
{
    struct authd_pool *p = arg;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct authd_job *job;

        while (!p->stop && !p->todo_head)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        job = pop(&p->todo_head, &p->todo_tail);
        pthread_mutex_unlock(&p->mu);
        if (job->run)
            job->run(job);
        authd_pool_complete(p, job);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct authd_pool *
authd_pool_new(int nthreads, void (*wake)(void *ud), void *ud)
{
    struct authd_pool *p = pc_xcalloc(1, sizeof(*p));

    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->wake = wake;
    p->wake_ud = ud;
    p->threads = pc_xcalloc((size_t)nthreads, sizeof(*p->threads));
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->nthreads++;
    }
    return p;
}

void
authd_pool_submit(struct authd_pool *p, struct authd_job *job)
{
    atomic_fetch_add(&p->inflight, 1);
    pthread_mutex_lock(&p->mu);
    push(&p->todo_head, &p->todo_tail, job);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void
authd_pool_complete(struct authd_pool *p, struct authd_job *job)
{
    pthread_mutex_lock(&p->mu);
    push(&p->done_head, &p->done_tail, job);
    pthread_mutex_unlock(&p->mu);
    if (p->wake)
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
authd_pool_free(struct authd_pool *p)
{
    struct authd_job *job;

    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    /* Jobs never started complete with run skipped; done() sees their empty result. */
    while ((job = pop(&p->todo_head, &p->todo_tail)))
        push(&p->done_head, &p->done_tail, job);
    p->wake = NULL;
    authd_pool_drain(p);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
