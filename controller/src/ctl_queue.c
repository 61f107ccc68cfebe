/*
 * ctl_queue.c - the controller's work queue.
 *
 * Reconciliation is level-based, so a key only says "look at this again"; adding it ten
 * times before the worker gets to it must cost one reconcile. Pending keys live in a jansson
 * object (key -> due time in ms) and the failure counts in another; the queue is small
 * (one key per ProtectedHost at most), so picking the earliest due key by a scan is fine.
 */
#include "controller.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ctl_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    json_t *pending;    /* key -> due (ms, monotonic) */
    json_t *processing; /* key -> true */
    json_t *dirty;      /* added while processing: key -> due */
    json_t *failures;   /* key -> count */
    bool shutdown;
};

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct ctl_queue *
ctl_queue_new(void)
{
    struct ctl_queue *q = pc_xcalloc(1, sizeof(*q));
    pthread_condattr_t ca;

    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    q->pending = json_object();
    q->processing = json_object();
    q->dirty = json_object();
    q->failures = json_object();
    return q;
}

void
ctl_queue_free(struct ctl_queue *q)
{
    if (!q)
        return;
    json_decref(q->pending);
    json_decref(q->processing);
    json_decref(q->dirty);
    json_decref(q->failures);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* Records key as due at `due` in set, keeping an earlier due time. */
static void
schedule(json_t *set, const char *key, long long due)
{
    json_t *cur = json_object_get(set, key);

    if (!cur || json_integer_value(cur) > due)
        json_object_set_new(set, key, json_integer(due));
}

void
ctl_queue_add_after(struct ctl_queue *q, const char *key, long delay_ms)
{
    long long due = now_ms() + (delay_ms > 0 ? delay_ms : 0);

    pthread_mutex_lock(&q->mu);
    if (!q->shutdown) {
        schedule(json_object_get(q->processing, key) ? q->dirty : q->pending, key, due);
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
}

void
ctl_queue_add_first(struct ctl_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    if (!q->shutdown) {
        /* Due "at the epoch": before anything scheduled for now or later. */
        schedule(json_object_get(q->processing, key) ? q->dirty : q->pending, key, 0);
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
}

void
ctl_queue_add(struct ctl_queue *q, const char *key)
{
    ctl_queue_add_after(q, key, 0);
}

long
ctl_queue_retry(struct ctl_queue *q, const char *key)
{
    json_int_t n;
    long delay;

    pthread_mutex_lock(&q->mu);
    n = json_integer_value(json_object_get(q->failures, key));
    json_object_set_new(q->failures, key, json_integer(n + 1));
    pthread_mutex_unlock(&q->mu);
    delay = k8s_backoff_ms((unsigned)(n < 30 ? n : 30));
    ctl_queue_add_after(q, key, delay);
    return delay;
}

void
ctl_queue_forget(struct ctl_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    json_object_del(q->failures, key);
    pthread_mutex_unlock(&q->mu);
}

/* The earliest pending key and its due time; NULL when none. Called locked. */
static const char *
earliest(struct ctl_queue *q, long long *due)
{
    const char *key, *best = NULL;
    json_t *v;

    json_object_foreach(q->pending, key, v)
    {
        if (!best || json_integer_value(v) < *due) {
            best = key;
            *due = json_integer_value(v);
        }
    }
    return best;
}

char *
ctl_queue_get(struct ctl_queue *q)
{
    char *out = NULL;

    pthread_mutex_lock(&q->mu);
    while (!q->shutdown && !out) {
        long long due = 0, now = now_ms();
        const char *key = earliest(q, &due);
        struct timespec ts;

        if (key && due <= now) {
            out = pc_xstrdup(key);
            json_object_del(q->pending, key);
            json_object_set_new(q->processing, out, json_true());
        } else if (key) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += (due - now) / 1000;
            ts.tv_nsec += ((due - now) % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&q->cv, &q->mu, &ts);
        } else {
            pthread_cond_wait(&q->cv, &q->mu);
        }
    }
    pthread_mutex_unlock(&q->mu);
    return out;
}

void
ctl_queue_done(struct ctl_queue *q, const char *key)
{
    json_t *again;

    pthread_mutex_lock(&q->mu);
    json_object_del(q->processing, key);
    again = json_object_get(q->dirty, key);
    if (again) {
        schedule(q->pending, key, json_integer_value(again));
        json_object_del(q->dirty, key);
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
}

size_t
ctl_queue_len(struct ctl_queue *q)
{
    size_t n;

    pthread_mutex_lock(&q->mu);
    n = json_object_size(q->pending) + json_object_size(q->dirty);
    pthread_mutex_unlock(&q->mu);
    return n;
}

void
ctl_queue_shutdown(struct ctl_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->shutdown = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

double
ctl_mono_secs(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
