/*
 * ctl_events.c - the Events about ProtectedHosts, posted by their own thread.
 *
 * An Event is a write the apiserver pays for like a policy or a status, but nothing waits for
 * it. So the key workers only queue them (ctl_event_post) and go on; this thread posts them,
 * behind the reconciles: while the key workers have a backlog (a thousand ProtectedHosts
 * applied at once) an Event waits up to EVENT_DEFER_SECS, then they go out at most
 * EVENTS_PER_SEC a second until the backlog is gone. One Event waits per object and kind
 * (the Ready transition, the provider snippet): a newer one replaces it, as the status itself
 * only says the last word, so a host that went Propagating → Ready during a burst gets one
 * Event, Ready. At most MAX_PENDING wait; past that the key worker posts its Event itself.
 */
#include "controller.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portcullis/json.h"
#include "portcullis/log.h"

#define EVENT_DEFER_SECS 10.0
/* Events waiting at most: past it, an Event is posted by the thread that has it (a key
 * worker), as if there were no queue, so a burst of 10,000 hosts holds no 20,000 Events. */
#define MAX_PENDING 1024
#define EVENTS_PER_SEC 20
#define RECHECK_MS 200

/* What k8s_event needs of the involved object: its identity, never its spec or status. */
static json_t *
identity_of(const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    json_t *out = json_pack("{s:{}}", "metadata");
    json_t *omd = json_object_get(out, "metadata");
    static const char *const keys[] = {"name", "namespace", "uid", "resourceVersion"};

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (json_object_get(md, keys[i]))
            json_object_set(omd, keys[i], json_object_get(md, keys[i]));
    if (json_object_get(obj, "apiVersion"))
        json_object_set(out, "apiVersion", json_object_get(obj, "apiVersion"));
    if (json_object_get(obj, "kind"))
        json_object_set(out, "kind", json_object_get(obj, "kind"));
    return out;
}

static void post(struct ctl_ctx *c, const char *key, json_t *ev);

void
ctl_event_post(struct ctl_ctx *c, const char *kind, const json_t *involved, const char *type,
               const char *reason, const char *message)
{
    const json_t *md = json_object_get(involved, "metadata");
    const char *ns = pc_json_str(md, "namespace"), *name = pc_json_str(md, "name");
    char *key = pc_xasprintf("%s:%s/%s", kind, ns ? ns : "", name ? name : "");
    json_t *prev, *ev;
    bool queued = false;

    pthread_mutex_lock(&c->ev_mu);
    prev = json_object_get(c->ev_pending, key);
    ev = json_pack("{s:o, s:s, s:s, s:s, s:f}", "involved", identity_of(involved), "type", type,
                   "reason", reason ? reason : "", "message", message ? message : "", "since",
                   prev ? json_real_value(json_object_get(prev, "since")) : ctl_mono_secs());
    if (prev || json_object_size(c->ev_pending) < MAX_PENDING) {
        json_object_set(c->ev_pending, key, ev);
        queued = true;
    }
    pthread_mutex_unlock(&c->ev_mu);
    if (queued)
        ctl_queue_add(c->eq, key);
    else
        post(c, key, ev);
    json_decref(ev);
    free(key);
}

/* Milliseconds the Event queued at since should still wait; 0: post it now. */
static long
event_delay_ms(struct ctl_ctx *c, double since, double last_post)
{
    double now = ctl_mono_secs();

    if (ctl_queue_len(c->q) <= CTL_BUSY_KEYS)
        return 0;
    if (now - since < EVENT_DEFER_SECS)
        return RECHECK_MS;
    if (now - last_post < 1.0 / EVENTS_PER_SEC)
        return (long)((1.0 / EVENTS_PER_SEC - (now - last_post)) * 1000) + 1;
    return 0;
}

static void
post(struct ctl_ctx *c, const char *key, json_t *ev)
{
    struct k8s_event e = {.involved = json_object_get(ev, "involved"),
                          .type = pc_json_str(ev, "type"),
                          .reason = pc_json_str(ev, "reason"),
                          .message = pc_json_str(ev, "message")};
    struct pc_diag d = {0};

    if (k8s_event(c->kc, &e, &d) < 0)
        pc_log(PC_LOG_DEBUG, "event_failed", "key", key, "error", d.msg, NULL);
    else
        ctl_metrics_inc(&c->m, &c->m.events);
}

void *
ctl_event_worker(void *arg)
{
    struct ctl_ctx *c = arg;
    double last_post = 0;
    char *key;

    while ((key = ctl_queue_get(c->eq)) != NULL) {
        json_t *ev;
        long delay;

        pthread_mutex_lock(&c->ev_mu);
        ev = json_incref(json_object_get(c->ev_pending, key));
        pthread_mutex_unlock(&c->ev_mu);
        if (ev && (delay = event_delay_ms(c, json_real_value(json_object_get(ev, "since")),
                                          last_post)) > 0) {
            ctl_queue_add_after(c->eq, key, delay);
        } else if (ev) {
            pthread_mutex_lock(&c->ev_mu);
            /* Posted as it is now: a newer one queued meanwhile stays for its own turn. */
            if (json_object_get(c->ev_pending, key) == ev)
                json_object_del(c->ev_pending, key);
            pthread_mutex_unlock(&c->ev_mu);
            post(c, key, ev);
            last_post = ctl_mono_secs();
        }
        json_decref(ev);
        ctl_queue_done(c->eq, key);
        free(key);
    }
    return NULL;
}
