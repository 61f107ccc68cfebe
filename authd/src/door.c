/*
 * door.c - the auth port's front doors: Envoy ext_authz (any path under extAuthzPathPrefix),
 * nginx auth_request (GET /oauth2/auth) and the direct endpoints (/oauth2/start, callback,
 * sign_out, userinfo). Every check goes through the core's authd_decide; this file turns the
 * decision into a reply, counts it and logs it.
 *
 * Logging on the check path: allowed checks log at debug level (one line per request at
 * 50k req/s would cost more than the check), every other outcome at info. Logins, sign-outs
 * and refreshes always log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/log.h"

struct check {
    struct authd_server *srv;
    const struct authd_http *h;
    enum authd_door door;
    const char *host_name;
    const char *path; /* original path+query */
    const struct authd_host *host;
    const struct authd_session *session; /* borrowed: from the cache or `owned` */
    struct authd_session *owned;
    struct authd_identity bearer;
    bool has_bearer;
    struct authd_strlist set_cookie;
    struct authd_decision d;
    int64_t t0;
};

const char *
authd_door_scheme(const struct authd_http *h)
{
    if (h->x_forwarded_proto && !strcmp(h->x_forwarded_proto, "http"))
        return "http";
    return "https";
}

static const char *
verdict_name(const struct authd_decision *d)
{
    static const char *const names[] = {
        [AUTHD_ALLOW] = "allow",          [AUTHD_SKIP] = "skip",
        [AUTHD_LOGIN_REDIRECT] = "login", [AUTHD_UNAUTHORIZED] = "unauthorized",
        [AUTHD_FORBIDDEN] = "forbidden",  [AUTHD_UNKNOWN_HOST] = "unknown_host",
        [AUTHD_CALLBACK] = "callback",    [AUTHD_SIGN_OUT] = "sign_out",
    };

    if ((size_t)d->verdict < sizeof(names) / sizeof(names[0]) && names[d->verdict])
        return names[d->verdict];
    return "unknown";
}

/*
 * A reply that may be a page: X-Request-Id, and JSON or HTML. Allowed checks skip both (the
 * proxies drop the header on allow, and scanning Accept costs more than the id).
 */
static void
page_of(struct authd_reply *r, const struct authd_http *h)
{
    authd_reply_header(r, "X-Request-Id", r->page.request_id);
    r->page.json = authd_wants_json(h->accept, h->x_requested_with);
}

/* Verifies "Authorization: Bearer <JWT>" for hosts that accept bearer tokens. */
static int
open_bearer(struct check *c)
{
    const char *a = c->h->authorization;
    const struct authd_issuer *iss;
    json_t *claims = NULL;
    int rc;

    if (!c->host->bearer.enabled || !a || strncasecmp(a, "Bearer ", 7))
        return PC_ENOTFOUND;
    iss = authd_oidc_issuer(c->srv->oidc, c->host->oidc.issuer_url);
    if (!iss || !iss->jwks)
        return PC_EIO;
    struct authd_jwt_expect ex = {.issuer = c->host->oidc.issuer_url,
                                  .client_id = c->host->oidc.client_id,
                                  .audiences = &c->host->bearer.audiences,
                                  .now = authd_now()};
    rc = authd_jwt_verify(iss->jwks, a + 7, &ex, &claims, NULL);
    /* An unknown kid may be a rotated key: refetch in the background, answer 401 now. */
    if (rc == PC_ENOTFOUND)
        authd_oidc_jwks_refetch(c->srv->oidc, c->host->oidc.issuer_url);
    if (!rc)
        rc = authd_identity_from_claims(c->host, claims, &c->bearer);
    json_decref(claims);
    c->has_bearer = rc == 0;
    return rc == PC_ENOTFOUND ? PC_EAUTH : rc;
}

static void
add_decision_headers(struct authd_reply *r, const struct authd_decision *d)
{
    for (size_t i = 0; i < d->nheaders; i++)
        authd_reply_header(r, d->headers[i].name, d->headers[i].value);
}

/* A login redirect: the state's return target is the original URL, validated. */
static void
login_redirect(struct check *c, struct authd_reply *r)
{
    char *target = NULL;

    if (!c->d.original_url ||
        authd_redirect_validate(c->srv->cfg->cfg, c->host_name, c->d.original_url, &target))
        target = pc_xstrdup("/");
    authd_login_start(c->srv, c->host, c->h, c->host_name, target, r);
    free(target);
}

static void
denial(struct check *c, struct authd_reply *r)
{
    r->status = c->d.status;
    authd_reply_type(r, c->d.content_type);
    if (c->d.www_authenticate)
        authd_reply_header(r, "WWW-Authenticate", c->d.www_authenticate);
    authd_reply_header(r, "Cache-Control", "no-store");
    if (c->d.body)
        pc_buf_appends(&r->body, c->d.body);
}

/* Turns the decision into the reply. Returns 1 when deferred (callback). */
static int
respond(struct check *c, void *conn, struct authd_reply *r)
{
    const char *query;

    switch (c->d.verdict) {
    case AUTHD_CALLBACK:
        if (c->door == AUTHD_DOOR_NGINX)
            break;
        query = strchr(c->path, '?');
        return authd_login_callback(c->srv, c->host, c->h, c->host_name, query ? query + 1 : "",
                                    conn, r);
    case AUTHD_SIGN_OUT:
        if (c->door == AUTHD_DOOR_NGINX)
            break;
        query = strchr(c->path, '?');
        return authd_login_sign_out(c->srv, c->host, c->h, c->host_name, query ? query + 1 : "",
                                    conn, r);
    case AUTHD_LOGIN_REDIRECT:
        if (!c->d.report_only) {
            login_redirect(c, r);
            return 0;
        }
        break;
    default:
        break;
    }
    if (c->d.status == 200 || c->d.status == 202) {
        r->status = c->d.status;
        add_decision_headers(r, &c->d);
        for (size_t i = 0; i < c->set_cookie.n; i++)
            authd_reply_header(r, "Set-Cookie", c->set_cookie.v[i]);
        return 0;
    }
    if (c->d.verdict == AUTHD_CALLBACK || c->d.verdict == AUTHD_SIGN_OUT) {
        /* nginx: authd's own endpoints are routed to authd directly, never checked. */
        authd_reply_page(r, 401, "unauthorized", "authd endpoint behind auth_request");
        return 0;
    }
    denial(c, r);
    return 0;
}

static const char *
user_of(const struct check *c)
{
    const struct authd_identity *id = c->has_bearer ? &c->bearer
                                      : c->session  ? &c->session->id
                                                    : NULL;

    if (!id)
        return NULL;
    return authd_identity_email(c->host, id) ? authd_identity_email(c->host, id) : id->sub;
}

static void
account(struct check *c, const struct authd_reply *r)
{
    const char *door = c->door == AUTHD_DOOR_ENVOY ? "envoy" : "nginx";
    const char *outcome = verdict_name(&c->d);
    int64_t us = authd_mono_us() - c->t0;
    enum pc_log_level lvl =
        c->d.verdict == AUTHD_ALLOW || c->d.verdict == AUTHD_SKIP ? PC_LOG_DEBUG : PC_LOG_INFO;
    char lat[24], status[8];

    authd_metrics_decision(c->srv->metrics, c->host ? c->host->id : "_unknown", door, outcome, us);
    if (lvl == PC_LOG_DEBUG && !c->srv->debug_logs)
        return;
    snprintf(lat, sizeof(lat), "%lld", (long long)us);
    snprintf(status, sizeof(status), "%d", r->status);
    pc_log(lvl, "check", "host", c->host_name, "policy", c->host ? c->host->id : NULL, "door", door,
           "decision", outcome, "status", status, "report_only",
           c->d.report_only ? "true" : "false", "user", user_of(c), "reason", c->d.reason,
           "latency_us", lat, "request_id", r->page.request_id, NULL);
}

/* The session from the cache, or opened (and cached when cacheable). */
static int
find_session(struct check *c, const struct authd_config *cfg, int64_t now)
{
    uint64_t gen = c->srv->cfg->generation;
    int rc;

    c->session = authd_sesscache_get(c->srv->sessions, gen, c->host, c->h->cookie, now);
    if (c->session)
        return 0;
    rc = authd_session_open(&cfg->keys, c->host, c->h->cookie, now, &c->owned);
    if (rc)
        return rc;
    c->session = authd_sesscache_put(c->srv->sessions, gen, c->host, c->h->cookie, c->owned);
    if (c->session)
        c->owned = NULL;
    else
        c->session = c->owned;
    return 0;
}

/* The path is the host's callback or sign-out path: handled without a session lookup. */
static bool
is_own_endpoint(const struct authd_host *host, const char *path)
{
    size_t n = strcspn(path, "?#");

    return (strlen(host->oidc.callback_path) == n && !strncmp(path, host->oidc.callback_path, n)) ||
           (strlen(host->oidc.sign_out_path) == n && !strncmp(path, host->oidc.sign_out_path, n));
}

static int
decide_and_respond(struct check *c, void *conn, struct authd_reply *r, int session_rc)
{
    int64_t now = authd_now();
    int bearer_rc = c->host ? open_bearer(c) : PC_ENOTFOUND, rc;
    bool redis = c->host && c->host->session.store == AUTHD_STORE_REDIS;

    /* Every session a check uses, from a cookie or from Redis, passes the revocation list
     * (and the host's lifetime) here. */
    if (session_rc == 0 && c->session &&
        (session_rc = authd_revoke_session(c->srv, c->host, c->host_name, c->session, now,
                                           r->page.request_id)) != 0)
        c->session = NULL;
    struct authd_request req = {
        .door = c->door,
        .method = c->h->method,
        .host = c->host_name,
        .path = c->path,
        .accept = c->h->accept,
        .x_requested_with = c->h->x_requested_with,
        .sec_fetch_mode = c->h->sec_fetch_mode,
        .authorization = c->h->authorization,
        .cookie = c->h->cookie,
        .x_forwarded_proto = c->h->x_forwarded_proto,
    };
    struct authd_decide_input in = {.req = &req,
                                    .host = c->host,
                                    .session_rc = session_rc,
                                    .session = c->session,
                                    .bearer_rc = bearer_rc,
                                    .bearer = c->has_bearer ? &c->bearer : NULL,
                                    .now = now,
                                    .pages = r->page.pages,
                                    .request_id = r->page.request_id};
    authd_decide(&in, &c->d);
    if (c->d.refresh_due && redis) {
        authd_store_refresh(c->srv->store, c->host, c->h->cookie);
    } else if (c->d.refresh_due && c->owned && c->owned->refresh_token &&
               authd_refresh_check(c->srv, c->host, &c->owned, c->h->cookie, &c->set_cookie) ==
                   PC_EEXPIRED) {
        /* The IdP revoked this session: decide again as if it had expired. */
        authd_decision_release(&c->d);
        authd_session_free(c->owned);
        c->owned = NULL;
        c->session = NULL;
        in.session_rc = PC_EEXPIRED;
        in.session = NULL;
        authd_decide(&in, &c->d);
    }
    if (c->d.verdict != AUTHD_ALLOW && c->d.verdict != AUTHD_SKIP) /* a page may follow */
        page_of(r, c->h);
    rc = respond(c, conn, r);
    if (rc == 0 && c->door == AUTHD_DOOR_ENVOY)
        authd_envoy_safe_reply(r); /* before accounting: log and metrics show what was sent */
    account(c, r);
    return rc;
}

static int defer_check(struct check *c, void *conn, const struct authd_reply *r, bool userinfo);

static int
check(struct check *c, void *conn, struct authd_reply *r)
{
    const struct authd_config *cfg = c->srv->cfg->cfg;
    int64_t now = authd_now();
    int session_rc = PC_ENOTFOUND;

    c->host = authd_config_match_host(cfg, c->host_name);
    if (c->host && c->host->session.store == AUTHD_STORE_REDIS) {
        if (!is_own_endpoint(c->host, c->path))
            session_rc = authd_store_lookup(c->srv->store, c->host, c->h->cookie, now, &c->session);
        if (session_rc == PC_EMORE && defer_check(c, conn, r, false) == 0)
            return 1; /* the reply waits for Redis, the loop does not */
        if (session_rc == PC_EMORE)
            session_rc = PC_EIO;
    } else if (c->host) {
        session_rc = find_session(c, cfg, now);
    }
    return decide_and_respond(c, conn, r, session_rc);
}

static void
check_release(struct check *c)
{
    authd_decision_release(&c->d);
    authd_session_free(c->owned);
    authd_identity_release(&c->bearer);
    authd_strlist_release(&c->set_cookie);
}

static int
run_check(struct authd_server *srv, const struct authd_http *h, enum authd_door door,
          const char *host_name, const char *path, void *conn, struct authd_reply *r)
{
    struct check c = {.srv = srv,
                      .h = h,
                      .door = door,
                      .host_name = host_name,
                      .path = path,
                      .t0 = authd_mono_us()};
    int rc = check(&c, conn, r);

    check_release(&c);
    return rc;
}

static void
userinfo_reply(struct authd_server *srv, const struct authd_host *host,
               const struct authd_session *s, struct authd_reply *r)
{
    json_t *o, *groups;
    char *text;

    if (s != NULL &&
        authd_revoke_session(srv, host, r->page.host, s, authd_now(), r->page.request_id) != 0)
        s = NULL; /* revoked, or older than the host's lifetime */
    if (s == NULL) {
        authd_reply_json(r, 401, "{\"error\":\"unauthorized\"}\n");
        return;
    }
    groups = json_array();
    for (size_t i = 0; i < s->id.groups.n; i++)
        json_array_append_new(groups, json_string(s->id.groups.v[i]));
    o = json_pack("{s:s?, s:s?, s:s?, s:o}", "user", s->id.sub, "email",
                  authd_identity_email(host, &s->id), "preferredUsername", s->id.preferred_username,
                  "groups", groups);
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    authd_reply_json(r, 200, text ? text : "{}");
    authd_reply_header(r, "Cache-Control", "no-store");
    free(text);
    json_decref(o);
}

/* ------------------------------------------------------------------------------------------ */
/* checks waiting for Redis (session.store: redis) */

/* clang-format off */
#define HTTP_FIELDS(X)                                                                             \
    X(method) X(path) X(query) X(uri) X(host) X(cookie) X(authorization) X(accept)                 \
    X(x_requested_with) X(sec_fetch_mode) X(x_forwarded_proto) X(x_forwarded_host)                \
    X(x_original_uri) X(x_original_url)
/* clang-format on */

/* A check (or userinfo) whose session Redis is asked for: the request copied, since the
 * connection's buffers serve the next request meanwhile. */
struct deferred {
    struct check c;
    struct authd_http h;
    char *host_name, *path;
    struct authd_cfgref *cfg; /* keeps c.host alive */
    struct authd_pending *pending;
    struct authd_page_ctx page;
    bool plain_http, userinfo;
};

static void
copy_http(struct authd_http *to, const struct authd_http *from)
{
    *to = *from;
#define COPY(f) to->f = from->f ? pc_xstrdup(from->f) : NULL;
    HTTP_FIELDS(COPY)
#undef COPY
}

static void
deferred_free(struct deferred *d)
{
    check_release(&d->c);
#define FREE(f) pc_free_secret((char *)d->h.f);
    HTTP_FIELDS(FREE)
#undef FREE
    free(d->host_name);
    free(d->path);
    authd_cfgref_put(d->cfg);
    free(d);
}

static void
resumed(void *ud, int rc, const struct authd_session *s)
{
    struct deferred *d = ud;
    struct authd_reply r;

    authd_reply_init(&r);
    r.page = d->page;
    r.plain_http = d->plain_http;
    d->c.session = s;
    if (d->userinfo)
        userinfo_reply(d->c.srv, d->c.host, rc == 0 ? s : NULL, &r);
    else
        decide_and_respond(&d->c, NULL, &r, rc);
    authd_pending_finish(d->pending, &r);
    authd_reply_release(&r);
    deferred_free(d);
}

/* Starts the Redis read for c; 0 when the reply is deferred (conn waits), else an error. */
static int
defer_check(struct check *c, void *conn, const struct authd_reply *r, bool userinfo)
{
    struct deferred *d = pc_xcalloc(1, sizeof(*d));
    int rc;

    d->c = *c;
    copy_http(&d->h, c->h);
    d->host_name = pc_xstrdup(c->host_name);
    d->path = pc_xstrdup(c->path);
    d->c.h = &d->h;
    d->c.host_name = d->host_name;
    d->c.path = d->path;
    d->cfg = authd_cfgref_get(c->srv->cfg);
    d->page = r->page;
    d->plain_http = r->plain_http;
    d->userinfo = userinfo;
    if ((rc = authd_store_fetch(c->srv->store, c->host, d->h.cookie, resumed, d)) != 0) {
        d->c = (struct check){0};
        deferred_free(d);
        return rc;
    }
    d->pending = authd_pending_new(conn);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* direct endpoints */

static int
userinfo(struct authd_server *srv, const struct authd_host *host, const struct authd_http *h,
         void *conn, struct authd_reply *r)
{
    struct authd_session *s = NULL;
    const struct authd_session *held = NULL;
    int rc;

    if (host->session.store != AUTHD_STORE_REDIS) {
        authd_session_open(&srv->cfg->cfg->keys, host, h->cookie, authd_now(), &s);
        userinfo_reply(srv, host, s, r);
        authd_session_free(s);
        return 0;
    }
    rc = authd_store_lookup(srv->store, host, h->cookie, authd_now(), &held);
    if (rc == PC_EMORE) {
        struct check c = {.srv = srv, .h = h, .host = host, .host_name = "", .path = h->path};

        if (defer_check(&c, conn, r, true) == 0)
            return 1;
    }
    userinfo_reply(srv, host, held, r);
    return 0;
}

static bool
is_direct_path(const char *path)
{
    return !strcmp(path, "/oauth2/callback") || !strcmp(path, "/oauth2/sign_out") ||
           !strcmp(path, "/oauth2/start") || !strcmp(path, "/oauth2/userinfo");
}

/* The proxy's headers name different hosts or paths: 400, never a guess between them. */
static void
refuse(struct authd_server *srv, const char *door, const struct authd_origin *o,
       struct authd_reply *r)
{
    authd_reply_page(r, 400, "bad request", o->why);
    authd_reply_header(r, "Cache-Control", "no-store");
    if (!strcmp(door, "nginx"))
        authd_metrics_decision(srv->metrics, "_unknown", door, "bad_request", 0);
    pc_log(PC_LOG_INFO, "origin", "door", door, "status", "400", "reason", o->why, "request_id",
           r->page.request_id, NULL);
}

static int
direct(struct authd_server *srv, const struct authd_http *h, void *conn, struct authd_reply *r)
{
    struct authd_origin o;

    page_of(r, h);
    if (authd_origin_direct(srv->cfg->cfg, h, &o)) {
        refuse(srv, "direct", &o, r);
        return 0;
    }
    const char *host_name = o.host;
    const struct authd_host *host = authd_config_match_host(srv->cfg->cfg, host_name);
    bool own = host && (!strcmp(h->path, host->oidc.callback_path) ||
                        !strcmp(h->path, host->oidc.sign_out_path));
    char *rd, *target = NULL;

    authd_page_ctx_host(&r->page, host_name);
    if (!own && !is_direct_path(h->path)) {
        authd_reply_page(r, 404, "not found", "unknown path");
        return 0;
    }
    if (!host) {
        authd_reply_page(r, 403, "forbidden", "no policy for this host");
        return 0;
    }
    if (!strcmp(h->path, "/oauth2/callback") || !strcmp(h->path, host->oidc.callback_path))
        return authd_login_callback(srv, host, h, host_name, h->query, conn, r);
    if (!strcmp(h->path, "/oauth2/sign_out") || !strcmp(h->path, host->oidc.sign_out_path)) {
        return authd_login_sign_out(srv, host, h, host_name, h->query, conn, r);
    } else if (!strcmp(h->path, "/oauth2/start")) {
        rd = authd_query_param(h->query, "rd");
        if (!rd || authd_redirect_validate(srv->cfg->cfg, host_name, rd, &target))
            target = pc_xstrdup("/");
        authd_login_start(srv, host, h, host_name, target, r);
        free(rd);
        free(target);
    } else {
        return userinfo(srv, host, h, conn, r);
    }
    return 0;
}

/* The nginx door: the original host and path as the proxy asserts them (origin.c). */
static int
nginx_check(struct authd_server *srv, const struct authd_http *h, void *conn, struct authd_reply *r)
{
    struct authd_origin o;

    if (authd_origin_nginx(srv->cfg->cfg, h, &o)) {
        page_of(r, h);
        refuse(srv, "nginx", &o, r);
        return 0;
    }
    authd_page_ctx_host(&r->page, o.host);
    return run_check(srv, h, AUTHD_DOOR_NGINX, o.host, o.path, conn, r);
}

void
authd_envoy_safe_reply(struct authd_reply *r)
{
    if (r->status < 500)
        return;
    r->status = 401;
    authd_reply_header(r, "WWW-Authenticate", "Bearer realm=\"portcullis\"");
    if (strcasestr(pc_buf_str(&r->headers), "\nRetry-After:") == NULL &&
        strncasecmp(pc_buf_str(&r->headers), "Retry-After:", 12) != 0)
        authd_reply_header(r, "Retry-After", "5");
}

/*
 * Started before its config file existed, or before the config Secrets were listed
 * (--watch-config): nothing can be decided yet. 503 rather than the
 * unknown-host 403: the host may well be protected, authd just does not know yet, and through
 * Envoy a 5xx becomes statusOnError (503, failing closed) like an unreachable authorizer.
 */
static void
no_config(struct authd_reply *r)
{
    authd_reply_page(r, 503, "not ready", "authd has not loaded its config yet");
    authd_reply_header(r, "Retry-After", "5");
}

int
authd_door_handle(struct authd_server *srv, const struct authd_http *h, void *conn,
                  struct authd_reply *r)
{
    /* The id of this request: on its pages, in X-Request-Id and in its log lines. */
    authd_page_ctx_init(&r->page, srv->cfg->cfg->pages, h->host);
    if (srv->no_config || !authd_revoke_ready(srv->revoke)) {
        page_of(r, h);
        no_config(r);
        return 0;
    }
    const char *orig = authd_envoy_original_path(srv->cfg->cfg->ext_authz_prefix, h->uri);

    if (orig)
        return run_check(srv, h, AUTHD_DOOR_ENVOY, h->host ? h->host : "", orig, conn, r);
    if (!strcmp(h->path, "/oauth2/auth"))
        return nginx_check(srv, h, conn, r);
    return direct(srv, h, conn, r);
}
