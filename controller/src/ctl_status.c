/*
 * ctl_status.c - a ProtectedHost's status (conditions Accepted and Ready) and its Events.
 *
 * A status is written only when what it says changed (transition times aside), and an Event
 * is recorded when the Ready reason changes, so a steady controller writes nothing.
 */
#include "controller.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "portcullis/crypto.h"
#include "portcullis/json.h"
#include "portcullis/log.h"

static const struct k8s_ref ph_ref = {.api_version = CTL_GROUP_VERSION, .plural = "protectedhosts"};

struct cond {
    const char *status, *reason;
    char *message; /* new */
};

static bool
same_str(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

static void
rfc3339_now(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
ready_condition(const struct ctl_host *h, const struct ctl_status_in *in, struct cond *r)
{
    enum ctl_verdict v = in->verdict;

    r->status = "False";
    if (ctl_verdict_reason(v) != NULL) {
        r->reason = ctl_verdict_reason(v);
        r->message = pc_xstrdup(in->message);
    } else if (in->policy_error) {
        r->reason = "ApplyFailed";
        r->message = pc_xasprintf("AuthorizationPolicy: %s", in->policy_error);
    } else if (v == CTL_SECRET_MISSING) {
        r->reason = "SecretNotFound";
        r->message = pc_xstrdup(in->message);
    } else if (in->authd_error) {
        r->reason = "ApplyFailed";
        r->message = pc_xstrdup(in->authd_error);
    } else if (in->ingress_reason) {
        r->reason = in->ingress_reason;
        r->message = pc_xstrdup(in->ingress_message);
    } else if (in->mesh_error && !in->ingress_message) { /* ingress-nginx needs no provider */
        r->reason = "ProviderNotRegistered";
        r->message = pc_xasprintf("extension provider %s: %s", CTL_PROVIDER_NAME, in->mesh_error);
    } else if (in->egress_error) {
        r->reason = "EgressNotApplied";
        r->message = pc_xasprintf("issuer ServiceEntries: %s", in->egress_error);
    } else if (in->enforce != CTL_ENFORCED) {
        r->reason = in->enforce == CTL_ENFORCE_REJECTED     ? "AuthdRejected"
                    : in->enforce == CTL_ENFORCE_NO_REPLICA ? "AuthdNotReporting"
                                                            : "Propagating";
        r->message = pc_xstrdup(in->enforce_why ? in->enforce_why : "");
    } else if (in->ingress_message) {
        r->status = "True";
        r->reason = "Applied";
        r->message = pc_xasprintf("authd config applied; %s; every authd replica enforces it",
                                  in->ingress_message);
    } else {
        r->status = "True";
        r->reason = "Applied";
        r->message = pc_xasprintf("AuthorizationPolicy %s/%s, authd config and mesh provider "
                                  "applied; every authd replica enforces it",
                                  in->policy_ns, h->policy_name);
    }
}

/* The previous lastTransitionTime when status is unchanged, else now. */
static json_t *
condition(const json_t *old_conds, const char *type, const struct cond *k, long long gen)
{
    char now[32];
    const char *ltt = NULL;
    size_t i;
    json_t *o;

    json_array_foreach(old_conds, i, o)
    {
        if (same_str(pc_json_str(o, "type"), type) && same_str(pc_json_str(o, "status"), k->status))
            ltt = pc_json_str(o, "lastTransitionTime");
    }
    rfc3339_now(now, sizeof(now));
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}", "type", type, "status", k->status, "reason",
                     k->reason, "message", k->message ? k->message : "", "observedGeneration",
                     (json_int_t)gen, "lastTransitionTime", ltt ? ltt : now);
}

static json_t *
desired_status(const struct ctl_host *h, const struct ctl_status_in *in)
{
    const json_t *old = pc_json_path(in->obj, "status.conditions");
    enum ctl_verdict v = in->verdict;
    long long gen = json_integer_value(pc_json_path(in->obj, "metadata.generation"));
    struct cond acc = {"True", "Accepted", NULL}, ready = {0};
    json_t *st;

    if (ctl_verdict_reason(v) != NULL) {
        acc.status = "False";
        acc.reason = ctl_verdict_reason(v);
        acc.message = pc_xstrdup(in->message);
    } else {
        acc.message = pc_xstrdup("spec is valid and its hosts and session cookie are not "
                                 "claimed by an older ProtectedHost");
    }
    ready_condition(h, in, &ready);
    st = json_pack("{s:I,s:[o,o]}", "observedGeneration", (json_int_t)gen, "conditions",
                   condition(old, "Accepted", &acc, gen), condition(old, "Ready", &ready, gen));
    if (in->policy_ns)
        json_object_set_new(st, "authorizationPolicy",
                            json_sprintf("%s/%s", in->policy_ns, h->policy_name));
    free(acc.message);
    free(ready.message);
    return st;
}

static const char *
cond_field(const json_t *status, const char *type, const char *field)
{
    size_t i;
    json_t *o;

    json_array_foreach(json_object_get(status, "conditions"), i, o)
    {
        if (same_str(pc_json_str(o, "type"), type))
            return pc_json_str(o, field);
    }
    return NULL;
}

/* New text of what a status says, transition times aside: equal texts, equal statuses. */
static char *
essence(const json_t *status)
{
    static const char *const types[] = {"Accepted", "Ready"};
    json_t *e = json_pack("{s:O?,s:s?}", "observedGeneration",
                          json_object_get(status, "observedGeneration"), "authorizationPolicy",
                          pc_json_str(status, "authorizationPolicy"));
    char *text;

    for (size_t t = 0; t < 2; t++)
        json_object_set_new(e, types[t],
                            json_pack("[s?,s?,s?]", cond_field(status, types[t], "status"),
                                      cond_field(status, types[t], "reason"),
                                      cond_field(status, types[t], "message")));
    text = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(e);
    return text;
}

/* The Ready reason inside an essence text. */
static char *
essence_ready_reason(const char *text)
{
    json_t *e = json_loads(text, 0, NULL);
    const char *r = json_string_value(json_array_get(json_object_get(e, "Ready"), 1));
    char *out = r ? pc_xstrdup(r) : NULL;

    json_decref(e);
    return out;
}

static void
record_event(struct ctl_ctx *c, const struct ctl_host *h, const struct ctl_status_in *in,
             const json_t *st)
{
    const char *ready = cond_field(st, "Ready", "status");

    (void)h;
    ctl_event_post(c, "ready", in->obj, same_str(ready, "True") ? "Normal" : "Warning",
                   cond_field(st, "Ready", "reason"), cond_field(st, "Ready", "message"));
}

static int
apply_status(struct ctl_ctx *c, const struct ctl_host *h, const json_t *st)
{
    json_t *body =
        json_pack("{s:s,s:s,s:{s:s,s:s},s:O}", "apiVersion", CTL_GROUP_VERSION, "kind",
                  "ProtectedHost", "metadata", "name", h->name, "namespace", h->ns, "status", st);
    struct k8s_ref ref = ph_ref;
    struct pc_diag d = {0};
    int rc;

    ref.subresource = "status";
    rc = ctl_timed_apply(c, &ref, body, &d);
    if (rc == 0)
        ctl_metrics_inc(&c->m, &c->m.status_writes);
    else if (rc != K8S_ENOTFOUND)
        pc_log(PC_LOG_WARN, "status_write_failed", "owner", h->id, "error", d.msg, NULL);
    json_decref(body);
    return rc;
}

/* A copy of *field, read under hmu (a resync may clear it meanwhile). */
static char *
locked_copy(struct ctl_ctx *c, char *const *field)
{
    char *copy;

    pthread_mutex_lock(&c->hmu);
    copy = *field ? pc_xstrdup(*field) : NULL;
    pthread_mutex_unlock(&c->hmu);
    return copy;
}

/* Stores value (taken) in *field under hmu. */
static void
locked_set(struct ctl_ctx *c, char **field, char *value)
{
    pthread_mutex_lock(&c->hmu);
    free(*field);
    *field = value;
    pthread_mutex_unlock(&c->hmu);
}

int
ctl_status_write(struct ctl_ctx *c, struct ctl_host *h, const struct ctl_status_in *in)
{
    json_t *st = desired_status(h, in);
    char *want = essence(st), *have = locked_copy(c, &h->status_sig), *was = NULL;
    int rc = 0;

    if (!have)
        have = essence(pc_json_path(in->obj, "status"));
    if (strcmp(want, have) != 0 && (rc = apply_status(c, h, st)) == 0) {
        was = essence_ready_reason(have);
        if (!same_str(was, cond_field(st, "Ready", "reason")))
            record_event(c, h, in, st);
        locked_set(c, &h->status_sig, want);
        want = NULL;
    }
    free(was);
    free(want);
    free(have);
    json_decref(st);
    return rc == K8S_ENOTFOUND ? 0 : rc;
}

void
ctl_snippet_event(struct ctl_ctx *c, struct ctl_host *h, const json_t *obj, const char *snippet)
{
    char *sig = pc_sha256_hex(snippet, strlen(snippet)), *had = locked_copy(c, &h->snippet_sig);

    if (same_str(had, sig)) {
        free(sig);
    } else {
        ctl_event_post(c, "snippet", obj, "Normal", "ProviderSnippet", snippet);
        locked_set(c, &h->snippet_sig, sig);
    }
    free(had);
}
