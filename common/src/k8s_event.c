/*
 * k8s_event.c - core/v1 Events about the objects a daemon manages.
 *
 * Like client-go's event correlator, repeats of the same event are folded into one Event whose
 * count grows: the Event's name is derived from what it says, so a second create meets 409
 * and bumps the existing one instead.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "portcullis/crypto.h"
#include "portcullis/json.h"

#include "k8s_priv.h"

static struct k8s_ref
events_ref(const char *ns, const char *name)
{
    return (struct k8s_ref){.api_version = "v1", .plural = "events", .namespace = ns, .name = name};
}

/* A metav1.Time for now: RFC 3339 in UTC, whole seconds. */
static void
now_rfc3339(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "<object name>.<16 hex digits of what the event says>". */
static char *
event_name(const struct k8s_event *ev, const json_t *md)
{
    const char *uid = pc_json_str(md, "uid"), *name = pc_json_str(md, "name");
    char *what = pc_xasprintf("%s\n%s\n%s\n%s", uid ? uid : "", ev->type, ev->reason, ev->message);
    char *hex = pc_sha256_hex(what, strlen(what));
    char *out = pc_xasprintf("%.200s.%.16s", name ? name : "unknown", hex);

    free(what);
    free(hex);
    return out;
}

static json_t *
involved_object(const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    json_t *io = json_object();
    static const char *const from_md[] = {"name", "namespace", "uid", "resourceVersion"};

    if (pc_json_str(obj, "apiVersion"))
        json_object_set(io, "apiVersion", json_object_get(obj, "apiVersion"));
    if (pc_json_str(obj, "kind"))
        json_object_set(io, "kind", json_object_get(obj, "kind"));
    for (size_t i = 0; i < sizeof(from_md) / sizeof(from_md[0]); i++)
        if (pc_json_str(md, from_md[i]))
            json_object_set(io, from_md[i], json_object_get(md, from_md[i]));
    return io;
}

static json_t *
event_object(const struct k8s_event *ev, const char *ns, const char *name, const char *component)
{
    char host[256] = "", now[32];

    gethostname(host, sizeof(host) - 1);
    now_rfc3339(now);
    return json_pack("{s:s, s:s, s:{s:s, s:s}, s:o, s:s, s:s, s:s, s:i, s:s, s:s, s:{s:s},"
                     " s:s, s:s}",
                     "apiVersion", "v1", "kind", "Event", "metadata", "name", name, "namespace", ns,
                     "involvedObject", involved_object(ev->involved), "reason", ev->reason,
                     "message", ev->message, "type", ev->type, "count", 1, "firstTimestamp", now,
                     "lastTimestamp", now, "source", "component", component, "reportingComponent",
                     component, "reportingInstance", host);
}

/* The Event exists already: count it once more. */
static int
event_bump(struct k8s_client *c, const char *ns, const char *name, struct pc_diag *diag)
{
    struct k8s_ref ref = events_ref(ns, name);
    json_t *old = NULL, *patch;
    char now[32];
    int rc;

    if ((rc = k8s_get(c, &ref, &old, diag)) < 0)
        return rc;
    now_rfc3339(now);
    patch = json_pack("{s:I, s:s}", "count", json_integer_value(json_object_get(old, "count")) + 1,
                      "lastTimestamp", now);
    rc = k8s_merge_patch(c, &ref, patch, diag);
    json_decref(patch);
    json_decref(old);
    return rc;
}

int
k8s_event(struct k8s_client *c, const struct k8s_event *ev, struct pc_diag *diag)
{
    const json_t *md = json_object_get(ev->involved, "metadata");
    const char *ns = pc_json_str(md, "namespace");
    char *name = event_name(ev, md);
    json_t *obj;
    struct k8s_ref ref;
    int rc;

    ns = ns && *ns ? ns : "default";
    obj = event_object(ev, ns, name, k8s_client_component(c));
    ref = events_ref(ns, NULL);
    rc = k8s_create(c, &ref, obj, diag);
    if (rc == K8S_ECONFLICT)
        rc = event_bump(c, ns, name, diag);
    json_decref(obj);
    free(name);
    return rc;
}
