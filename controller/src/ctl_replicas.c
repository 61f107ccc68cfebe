/*
 * ctl_replicas.c - which authd replicas enforce which config: read from the Lease each
 * replica keeps in authd's namespace (portcullis-authd-<pod>, label
 * portcullis.io/authd-replica). A replica counts while its Lease is renewed; its
 * portcullis.io/loaded annotation lists "shard=generation" pairs ("00=12,0a=9"), and
 * portcullis.io/rejected the shards whose newest version it refused. Pure: no I/O, the time is
 * a parameter.
 */
#include "controller.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/buf.h"
#include "portcullis/json.h"

/* The generation of shard in a "00=12,0a=9" list, or -1. */
static long long
listed(const char *list, const char *shard)
{
    size_t n = strlen(shard);

    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *comma = strchr(p, ',');

        if (strncmp(p, shard, n) == 0 && p[n] == '=')
            return strtoll(p + n + 1, NULL, 10);
        p = comma ? comma + 1 : NULL;
    }
    return -1;
}

/* Whether lease is renewed recently enough to speak for a running replica. */
static bool
alive(const json_t *lease, time_t now)
{
    const json_t *spec = json_object_get(lease, "spec");
    const char *renew = pc_json_str(spec, "renewTime");
    json_int_t secs = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
    time_t t;

    if (renew == NULL || k8s_parse_time(renew, &t) < 0)
        return false;
    /* Clamped: the Lease's writer sets it, and t + secs must not overflow. */
    return now <= t + (secs > 0 && secs <= 86400 ? secs : 15);
}

void
ctl_replicas_min_loaded(const json_t *leases, time_t now, unsigned n, long long *min)
{
    const char *name;
    json_t *lease;

    for (unsigned s = 0; s < n; s++)
        min[s] = LLONG_MAX;
    json_object_foreach((json_t *)leases, name, lease)
    {
        const json_t *ann = pc_json_path(lease, "metadata.annotations");

        if (!alive(lease, now))
            continue;
        for (unsigned s = 0; s < n; s++) {
            char key[8];
            long long have, refused;

            snprintf(key, sizeof(key), "%02x", s & 0xff);
            have = listed(pc_json_str(ann, CTL_ANNOT_LOADED), key);
            refused = listed(pc_json_str(ann, CTL_ANNOT_REJECTED), key);
            if (refused < 0 && have < min[s])
                min[s] = have < 0 ? 0 : have;
        }
    }
}

enum ctl_enforce
ctl_replicas_enforce(const json_t *leases, time_t now, unsigned shard, long long gen, char **why)
{
    struct pc_buf lag, bad;
    char key[8];
    size_t live = 0;
    const char *name;
    json_t *lease;
    enum ctl_enforce e = CTL_ENFORCED;

    *why = NULL;
    snprintf(key, sizeof(key), "%02x", shard & 0xff);
    pc_buf_init(&lag, 0);
    pc_buf_init(&bad, 0);
    json_object_foreach((json_t *)leases, name, lease)
    {
        const json_t *ann = pc_json_path(lease, "metadata.annotations");
        const char *who = pc_json_str(json_object_get(lease, "spec"), "holderIdentity");
        long long have = listed(pc_json_str(ann, CTL_ANNOT_LOADED), key);
        long long refused = listed(pc_json_str(ann, CTL_ANNOT_REJECTED), key);

        if (!alive(lease, now))
            continue;
        live++;
        who = who ? who : name;
        if (refused >= gen)
            pc_buf_appendf(&bad, "%s%s", bad.len ? ", " : "", who);
        else if (have < gen)
            pc_buf_appendf(&lag, "%s%s (has %lld)", lag.len ? ", " : "", who, have < 0 ? 0 : have);
    }
    if (live == 0) {
        e = CTL_ENFORCE_NO_REPLICA;
        *why = pc_xasprintf("no portcullis-authd replica reports the config it enforces "
                            "(Leases labelled %s); is portcullis-authd running with "
                            "--watch-config?",
                            CTL_LABEL_AUTHD_REPLICA);
    } else if (bad.len) {
        e = CTL_ENFORCE_REJECTED;
        *why = pc_xasprintf("authd config shard %s-%s generation %lld was rejected by %s "
                            "(see that replica's log)",
                            CTL_AUTHD_SECRET, key, gen, bad.data);
    } else if (lag.len) {
        e = CTL_ENFORCE_PENDING;
        *why = pc_xasprintf("waiting for authd to load shard %s-%s generation %lld: %s",
                            CTL_AUTHD_SECRET, key, gen, lag.data);
    }
    pc_buf_release(&lag);
    pc_buf_release(&bad);
    return e;
}
