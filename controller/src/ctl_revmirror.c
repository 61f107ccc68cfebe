/*
 * ctl_revmirror.c - sidecar mode: the central revocation list copied into every namespace
 * with sidecar ProtectedHosts.
 *
 * `revoke` writes one list, PC_REVOKE_SECRET in authd's namespace. An authd sidecar may read
 * only the Secret of that name in its own namespace (its Role, deploy/components/sidecar), so
 * the global writer keeps a copy there in every namespace it writes a sidecar shard to:
 *   - a copy holds the central list's exact content, the newest version authd accepts; it is
 *     never read back or merged (an entry the central list dropped is dropped everywhere);
 *   - a namespace's copy is written before its shard, and a namespace's first shard waits for
 *     it, so no sidecar enforces a host without the revocations; it goes after the shard;
 *   - the central list is watched by name, metadata only, and read by GET when its
 *     resourceVersion moves; the change queues CTL_KEY_REVOCATIONS, which the global writer
 *     takes without the pacing of its passes: one GET, then one apply per namespace;
 *   - a copy changed or deleted by someone else (its watch event brings a resourceVersion the
 *     writer did not leave there) is written again.
 * A namespace that does not grant the write has its sidecar hosts say Ready=False, naming it.
 */
#include "controller.h"

#include <stdlib.h>
#include <string.h>

#include "portcullis/crypto.h"
#include "portcullis/json.h"
#include "portcullis/log.h"

static const struct k8s_ref secret_ref = {.api_version = "v1", .plural = "secrets"};

void
ctl_revmirror_init(struct ctl_revmirror *m)
{
    memset(m, 0, sizeof(*m));
    m->central_rv = pc_xstrdup("");
    m->copy_rv = json_object();
    m->dirty = json_object();
    m->written = json_object();
}

void
ctl_revmirror_release(struct ctl_revmirror *m)
{
    free(m->central_rv);
    json_decref(m->copy_rv);
    json_decref(m->dirty);
    free(m->fetched_rv);
    free(m->b64);
    free(m->hash);
    free(m->error);
    json_decref(m->written);
}

/* ---- watch side ------------------------------------------------------------------------ */

void
ctl_on_revocations(void *ud, enum k8s_event_type type, json_t *obj)
{
    struct ctl_ctx *c = ((struct ctl_watch_slot *)ud)->c;
    const char *rv = pc_json_str(json_object_get(obj, "metadata"), "resourceVersion");
    bool changed;

    if (type == K8S_DELETED || !rv)
        rv = "";
    pthread_mutex_lock(&c->mu);
    changed = strcmp(c->rm.central_rv, rv) != 0;
    ctl_replace(&c->rm.central_rv, pc_xstrdup(rv));
    pthread_mutex_unlock(&c->mu);
    if (changed)
        ctl_queue_add(c->gq, CTL_KEY_REVOCATIONS);
}

void
ctl_revmirror_note_copy(struct ctl_ctx *c, enum k8s_event_type type, const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *ns = pc_json_str(md, "namespace"), *rv = pc_json_str(md, "resourceVersion");
    const char *mine;
    bool foreign;

    if (!ns)
        return;
    pthread_mutex_lock(&c->mu);
    mine = pc_json_str(c->rm.copy_rv, ns);
    foreign = type == K8S_DELETED || !rv || !mine || strcmp(mine, rv) != 0;
    if (foreign)
        json_object_set_new(c->rm.dirty, ns, json_true());
    pthread_mutex_unlock(&c->mu);
    if (foreign)
        ctl_queue_add(c->gq, CTL_KEY_REVOCATIONS);
}

/* ---- the global writer ----------------------------------------------------------------- */

void
ctl_revmirror_forget(struct ctl_ctx *c)
{
    struct ctl_revmirror *m = &c->rm;

    /* Another leader may have written newer copies meanwhile: nothing held is written again
     * before the central list is read. */
    ctl_replace(&m->fetched_rv, NULL);
    ctl_replace(&m->b64, NULL);
    ctl_replace(&m->hash, NULL);
    json_object_clear(m->written);
}

/* The newest version read is got (NULL: absent) at rv: what the copies hold from now on. */
static void
take_version(struct ctl_ctx *c, const json_t *got, const char *rv)
{
    struct ctl_revmirror *m = &c->rm;
    const char *ns = c->o.authd.namespace;
    struct pc_diag d = {0};
    char *b64 = NULL;

    if (ctl_revcopy_source(got, &b64, &d) == 0) {
        if (!m->b64 || strcmp(m->b64, b64) != 0) {
            ctl_replace(&m->hash, pc_sha256_hex(b64, strlen(b64)));
            pc_log(PC_LOG_INFO, "revocations_read", "secret", PC_REVOKE_SECRET, "namespace", ns,
                   "version", rv, NULL);
        }
        ctl_replace(&m->b64, b64);
        ctl_replace(&m->error, NULL);
    } else {
        /* authd refuses it too and keeps the version before: so do the copies. */
        pc_log(PC_LOG_WARN, "revocations_not_copied", "secret", PC_REVOKE_SECRET, "namespace", ns,
               "version", rv, "error", d.msg, "copies",
               m->b64 ? "keep the version before" : "none written", NULL);
        ctl_replace(&m->error,
                    m->b64 ? NULL
                           : pc_xasprintf("revocation list %s/%s is refused (%s) and no version "
                                          "before it was read: nothing is copied to the sidecar "
                                          "namespaces until it is fixed",
                                          ns, PC_REVOKE_SECRET, d.msg));
    }
    ctl_replace(&m->fetched_rv, pc_xstrdup(rv));
}

/*
 * Reads the central list when the watch saw another version than the one read last. Returns
 * 0, or -1 when it cannot be read (m->error says why; what was read before stays).
 */
static int
refresh(struct ctl_ctx *c)
{
    struct ctl_revmirror *m = &c->rm;
    struct k8s_ref ref = secret_ref;
    struct pc_diag d = {0};
    json_t *got = NULL;
    const char *rv;
    char *want;
    int rc;

    pthread_mutex_lock(&c->mu);
    want = pc_xstrdup(m->central_rv);
    pthread_mutex_unlock(&c->mu);
    if (m->fetched_rv && strcmp(m->fetched_rv, want) == 0) {
        free(want);
        return 0;
    }
    ref.namespace = c->o.authd.namespace;
    ref.name = PC_REVOKE_SECRET;
    if ((rc = k8s_get(c->kc, &ref, &got, &d)) == K8S_ENOTFOUND)
        rc = 0;
    if (rc < 0) {
        ctl_replace(&m->error, pc_xasprintf("revocation list %s/%s: cannot read it: %s",
                                            ref.namespace, PC_REVOKE_SECRET, d.msg));
        pc_log(PC_LOG_WARN, "revocations_read_failed", "error", m->error, NULL);
    } else {
        rv = pc_json_str(json_object_get(got, "metadata"), "resourceVersion");
        take_version(c, got, got ? (rv ? rv : "?") : "");
    }
    json_decref(got);
    free(want);
    return rc < 0 ? -1 : 0;
}

static int
apply_copy(struct ctl_ctx *c, const char *ns, char **error)
{
    struct ctl_revmirror *m = &c->rm;
    json_t *copy = ctl_render_revocations_copy(ns, m->b64, c->o.authd.namespace), *got = NULL;
    struct pc_diag d = {0};
    const char *rv;
    int rc = ctl_timed_apply_out(c, &secret_ref, copy, &got, &d);

    if (rc < 0) {
        *error = ctl_sidecar_write_error("revocation list", ns, PC_REVOKE_SECRET, d.msg);
        pc_log(PC_LOG_WARN, "revocations_copy_failed", "error", *error, NULL);
    } else {
        rv = pc_json_str(json_object_get(got, "metadata"), "resourceVersion");
        pthread_mutex_lock(&c->mu);
        json_object_set_new(c->rm.copy_rv, ns, json_string(rv ? rv : ""));
        pthread_mutex_unlock(&c->mu);
        json_object_set_new(m->written, ns, json_string(m->hash));
        pc_log(PC_LOG_INFO, "revocations_copied", "namespace", ns, NULL);
    }
    json_decref(copy);
    json_decref(got);
    return rc;
}

/* Brings the copy of each namespace of the set nss to m->b64; errors (new) into errors. */
static int
write_copies(struct ctl_ctx *c, const json_t *nss, const json_t *dirty, json_t *errors)
{
    struct ctl_revmirror *m = &c->rm;
    json_t *due = m->b64 ? ctl_revcopy_due(nss, m->written, dirty, m->hash, c->o.authd.namespace)
                         : json_array();
    const char *ns;
    json_t *v;
    size_t i;
    int rc = 0;

    json_array_foreach(due, i, v)
    {
        char *error = NULL;

        if (apply_copy(c, json_string_value(v), &error) < 0) {
            /* Due again next time, dirty or not. */
            json_object_del(m->written, json_string_value(v));
            json_object_set_new(errors, json_string_value(v), json_string(error));
            rc = -1;
        }
        free(error);
    }
    /* The rest holds what can be copied, unless the central list cannot be. */
    json_object_foreach((json_t *)nss, ns, v)
    {
        if (!json_object_get(errors, ns) && m->error && strcmp(ns, c->o.authd.namespace) != 0) {
            json_object_set_new(errors, ns, json_string(m->error));
            rc = -1;
        }
    }
    json_decref(due);
    return rc;
}

int
ctl_revmirror_write(struct ctl_ctx *c, const json_t *nss, json_t *errors)
{
    json_t *dirty;
    int rc;

    /* No sidecar namespace: nothing to copy, and the central list need not be read. */
    if (json_object_size(nss) == 0)
        return 0;
    rc = refresh(c);
    pthread_mutex_lock(&c->mu);
    dirty = c->rm.dirty; /* copies outside the sidecar namespaces are none of ours */
    c->rm.dirty = json_object();
    pthread_mutex_unlock(&c->mu);
    if (write_copies(c, nss, dirty, errors) < 0)
        rc = -1;
    json_decref(dirty);
    return rc;
}

void
ctl_revmirror_dropped(struct ctl_ctx *c, const char *ns)
{
    json_object_del(c->rm.written, ns);
    pthread_mutex_lock(&c->mu);
    json_object_del(c->rm.copy_rv, ns);
    json_object_del(c->rm.dirty, ns);
    pthread_mutex_unlock(&c->mu);
}

int
ctl_revmirror_pass(struct ctl_ctx *c)
{
    json_t *errors = json_object(), *result = json_object(), *ids = json_array(), *moved;
    int rc = ctl_revmirror_write(c, c->sidecar_hash, errors);
    const char *ns;
    json_t *v;

    json_object_foreach(c->sidecar_hash, ns, v) json_object_set_new(
        result, ns, json_pack("{s:O?}", "revError", json_object_get(errors, ns)));
    pthread_mutex_lock(&c->hmu);
    moved = ctl_sidecar_record(c, result);
    for (size_t i = 0; i < c->hosts.n; i++) {
        if (c->hosts.v[i]->sidecar && json_object_get(moved, c->hosts.v[i]->ns))
            json_array_append_new(ids, json_string(c->hosts.v[i]->id));
    }
    pthread_mutex_unlock(&c->hmu);
    ctl_queue_hosts_first(c, ids);
    json_decref(moved);
    json_decref(ids);
    json_decref(result);
    json_decref(errors);
    return rc;
}
