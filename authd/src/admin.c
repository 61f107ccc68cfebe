/*
 * admin.c - the admin port: liveness, readiness and Prometheus metrics. Never on the auth port.
 */
#include <string.h>

#include "authd.h"

static void
readyz(struct authd_server *srv, struct authd_reply *r)
{
    const struct authd_config *cfg = srv->cfg ? srv->cfg->cfg : NULL;

    if (srv->draining)
        authd_reply_json(r, 503, "{\"ready\":false,\"reason\":\"shutting down\"}\n");
    else if (!cfg)
        authd_reply_json(r, 503, "{\"ready\":false,\"reason\":\"no config\"}\n");
    else if (srv->no_config && srv->kube)
        authd_reply_json(r, 503, "{\"ready\":false,\"reason\":\"config shards not listed yet\"}\n");
    else if (srv->no_config)
        authd_reply_json(r, 503, "{\"ready\":false,\"reason\":\"config file not found\"}\n");
    else if (!authd_revoke_ready(srv->revoke))
        authd_reply_json(r, 503, "{\"ready\":false,\"reason\":\"revocation list not loaded\"}\n");
    else if (!authd_oidc_ready(srv->oidc, cfg))
        authd_reply_json(r, 503,
                         "{\"ready\":false,\"reason\":\"issuer discovery or JWKS pending\"}\n");
    else if (cfg->redis && !authd_store_up(srv->store))
        /* Still ready: held sessions and cookie-store hosts keep being served, and taking
         * every replica out of its Service would refuse them too. */
        authd_reply_json(r, 200, "{\"ready\":true,\"redis\":\"down\"}\n");
    else if (cfg->redis)
        authd_reply_json(r, 200, "{\"ready\":true,\"redis\":\"up\"}\n");
    else
        authd_reply_json(r, 200, "{\"ready\":true}\n");
}

int
authd_admin_handle(struct authd_server *srv, const struct authd_http *h, struct authd_reply *r)
{
    if (!strcmp(h->path, "/healthz")) {
        r->status = 200;
        authd_reply_type(r, "text/plain");
        pc_buf_appends(&r->body, "ok\n");
    } else if (!strcmp(h->path, "/readyz")) {
        readyz(srv, r);
    } else if (!strcmp(h->path, "/metrics")) {
        r->status = 200;
        authd_reply_type(r, "text/plain; version=0.0.4");
        size_t max = r->body.max;
        r->body.max = 0; /* unbounded here: the series tables are bounded instead */
        struct authd_metrics_gauges g = {.states_evicted = authd_replay_evicted(srv->replay)};
        authd_pool_counts(srv->pool, &g.idp_queued, &g.idp_running);
        authd_metrics_set_gauges(srv->metrics, &g);
        authd_metrics_render(srv->metrics, &r->body);
        authd_store_metrics(srv->store, &r->body);
        r->body.max = max;
    } else {
        authd_reply_page(r, 404, "not found", "unknown admin path");
    }
    return 0;
}
