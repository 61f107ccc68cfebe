/*
 * login.c - the OIDC login flow on the I/O side: /oauth2/start (or a login redirect from a
 * check), the callback (code exchange + ID token verification, deferred while the IdP works),
 * sign-out, userinfo, and session refresh in the background.
 *
 * Refresh behaviour: a check whose session is older than session.refresh is answered at once
 * from that session. The first such check starts one refresh_token grant (single-flight, keyed
 * by SHA-256 of the session's refresh token, which identifies the session); checks arriving
 * meanwhile keep using the old session. Once the IdP answered, every allowed check carrying the
 * old session within the next 60 s gets the refreshed cookie as Set-Cookie (Envoy passes it to
 * the browser through headersToDownstreamOnAllow). The refreshed session keeps its original
 * login time and expiry. If the IdP refuses the refresh token (HTTP 400/401, e.g.
 * invalid_grant), the session is treated as logged out; if the IdP is unreachable, the old
 * session stays valid until its own expiry and a refresh is retried after 30 s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/crypto.h"
#include "portcullis/http.h"
#include "portcullis/json.h"
#include "portcullis/log.h"

#define REFRESH_KEEP_SECS 60
#define REFRESH_RETRY_SECS 30

static char *
redirect_uri(const struct authd_host *host, const struct authd_http *h, const char *host_name)
{
    return pc_xasprintf("%s://%s%s", authd_door_scheme(h), host_name, host->oidc.callback_path);
}

static void
add_set_cookies(struct authd_reply *r, const struct authd_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        authd_reply_header(r, "Set-Cookie", l->v[i]);
}

static void
redirect(struct authd_reply *r, const char *location)
{
    r->status = 302;
    authd_reply_header(r, "Location", location);
    authd_reply_header(r, "Cache-Control", "no-store");
}

/*
 * The page of a login that failed: what went wrong, a new login (retry: where it starts, the
 * page the user wanted when known) and the host's sign-out, which also ends the IdP's session
 * so that another account can be used.
 */
static void
login_failed(struct authd_reply *r, const struct authd_host *host, int status, const char *msg,
             const char *retry)
{
    authd_reply_render(r, AUTHD_PAGE_ERROR,
                       &(struct authd_page_fields){.status = status,
                                                   .error = "login_failed",
                                                   .title = "Sign-in failed",
                                                   .message = msg,
                                                   .sign_in_url = retry ? retry : "/",
                                                   .sign_out_url = host->oidc.sign_out_path});
}

/* What a login at a redis-store host says while Redis cannot be reached. */
static const char redis_down_msg[] =
    "Sign-in is not available right now: the session store (Redis) cannot be reached. "
    "Sessions already open keep working for a while. Try again shortly.";

/* ------------------------------------------------------------------------------------------ */
/* start */

static char *
authorize_url(const struct authd_issuer *iss, const struct authd_host *host,
              const struct authd_login_state *st, const char *ruri)
{
    struct pc_buf b;
    char *scope, *challenge = authd_pkce_challenge(st->pkce_verifier);
    struct pc_buf sc;

    pc_buf_init(&sc, 0);
    for (size_t i = 0; i < host->oidc.scopes.n; i++)
        pc_buf_appendf(&sc, "%s%s", i ? " " : "", host->oidc.scopes.v[i]);
    scope = pc_buf_detach(&sc);
    pc_buf_init(&b, 0);
    pc_buf_appends(&b, iss->authorization_endpoint);
    pc_buf_appends(&b, strchr(iss->authorization_endpoint, '?') ? "&" : "?");
    const char *kv[][2] = {
        {"response_type", "code"},     {"client_id", host->oidc.client_id},
        {"redirect_uri", ruri},        {"scope", scope},
        {"state", st->state},          {"nonce", st->nonce},
        {"code_challenge", challenge}, {"code_challenge_method", "S256"},
    };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
        char *e = pc_url_encode(kv[i][1]);
        pc_buf_appendf(&b, "%s%s=%s", i ? "&" : "", kv[i][0], e);
        free(e);
    }
    free(scope);
    free(challenge);
    return pc_buf_detach(&b);
}

void
authd_login_start(struct authd_server *srv, const struct authd_host *host,
                  const struct authd_http *h, const char *host_name, const char *target,
                  struct authd_reply *r)
{
    const struct authd_config *cfg = srv->cfg->cfg;
    const struct authd_issuer *iss = authd_oidc_issuer(srv->oidc, host->oidc.issuer_url);
    struct authd_strlist set_cookie = {0};
    struct authd_login_state *st = NULL;
    char *ruri = NULL, *url = NULL;

    if (!iss || !iss->discovered) {
        login_failed(r, host, 503,
                     "Sign-in is not available yet: the identity provider's discovery document "
                     "has not been fetched. Try again shortly.",
                     target);
        authd_reply_header(r, "Retry-After", "5");
        return;
    }
    if (host->session.store == AUTHD_STORE_REDIS && !authd_store_up(srv->store)) {
        /* The login could not be kept: say so now, not after the IdP's form. */
        login_failed(r, host, 503, redis_down_msg, target);
        authd_reply_header(r, "Retry-After", "5");
        pc_log(PC_LOG_WARN, "login", "host", host_name, "policy", host->id, "result", "failure",
               "reason", srv->cfg->cfg->redis ? "redis: down" : "redis: not configured",
               "request_id", r->page.request_id, NULL);
        return;
    }
    st = authd_login_state_new(host, target, authd_now());
    if (authd_login_state_seal(&cfg->keys, host, st, h->cookie, authd_now(), &set_cookie)) {
        login_failed(r, host, 500, "The login state could not be sealed.", target);
        goto out;
    }
    ruri = redirect_uri(host, h, host_name);
    url = authorize_url(iss, host, st, ruri);
    redirect(r, url);
    add_set_cookies(r, &set_cookie);
out:
    authd_login_state_free(st);
    authd_strlist_release(&set_cookie);
    free(ruri);
    free(url);
}

/* ------------------------------------------------------------------------------------------ */
/* callback */

struct callback_ctx {
    struct authd_server *srv;
    struct authd_cfgref *cfg;
    const struct authd_host *host; /* borrowed from cfg */
    struct authd_pending *pending;
    struct authd_login_state *st;
    struct authd_strlist set_cookie;
    char *cookie_header;
    char *refresh_token;
    char *id_token;
    char *host_name;
    int64_t t0;
    bool envoy;                 /* arrived through the Envoy door: never answer 5xx */
    bool plain_http;            /* see struct authd_reply */
    struct authd_page_ctx page; /* the request's id and page settings */
};

static void
callback_free(struct callback_ctx *c)
{
    authd_login_state_free(c->st);
    authd_strlist_release(&c->set_cookie);
    free(c->cookie_header);
    pc_free_secret(c->refresh_token);
    pc_free_secret(c->id_token);
    free(c->host_name);
    authd_cfgref_put(c->cfg);
    free(c);
}

static void
log_login(const struct callback_ctx *c, const char *result, const char *user, const char *why)
{
    char lat[32];

    snprintf(lat, sizeof(lat), "%lld", (long long)(authd_mono_us() - c->t0));
    pc_log(strcmp(result, "ok") ? PC_LOG_WARN : PC_LOG_INFO, "login", "host", c->host_name,
           "policy", c->host->id, "result", result, "user", user, "reason", why, "latency_us", lat,
           "request_id", c->page.request_id, NULL);
}

/* Finishes the callback with an error page. */
static void
callback_fail(struct callback_ctx *c, int status, const char *msg, const char *why)
{
    struct authd_reply r;

    authd_reply_init(&r);
    r.plain_http = c->plain_http;
    r.page = c->page;
    authd_reply_header(&r, "X-Request-Id", c->page.request_id);
    login_failed(&r, c->host, status, msg, c->st->redirect);
    add_set_cookies(&r, &c->set_cookie); /* clears the used state cookie */
    if (c->envoy)
        authd_envoy_safe_reply(&r);
    log_login(c, "failure", NULL, why);
    authd_pending_finish(c->pending, &r);
    authd_reply_release(&r);
    callback_free(c);
}

/* The login succeeded: back to where the user was going, with the session's cookies. */
static void
callback_ok(struct callback_ctx *c, const struct authd_session *s)
{
    struct authd_reply r;

    authd_reply_init(&r);
    r.plain_http = c->plain_http;
    authd_reply_header(&r, "X-Request-Id", c->page.request_id);
    redirect(&r, c->st->redirect);
    add_set_cookies(&r, &c->set_cookie);
    log_login(c, "ok", s->id.email ? s->id.email : s->id.sub, "code");
    authd_pending_finish(c->pending, &r);
    authd_reply_release(&r);
    callback_free(c);
}

static void
saved(void *ud, int rc, const struct authd_session *s, const struct authd_strlist *set_cookie)
{
    struct callback_ctx *c = ud;

    if (rc) {
        callback_fail(c, 503, redis_down_msg,
                      rc == PC_EEXPIRED ? "redis: session write timed out"
                                        : "redis: session write failed");
        return;
    }
    for (size_t i = 0; i < set_cookie->n; i++)
        authd_strlist_add(&c->set_cookie, set_cookie->v[i]);
    callback_ok(c, s);
}

static void
verify_done(void *ud, int rc, json_t *claims, const char *why)
{
    struct callback_ctx *c = ud;
    struct authd_session *s = NULL;
    int64_t now = authd_now();

    if (rc) {
        callback_fail(c, 502, "The identity provider's ID token was not accepted.",
                      why ? why : pc_strerror(rc));
        json_decref(claims);
        return;
    }
    rc = authd_session_from_claims(c->host, claims, c->id_token, c->refresh_token, now, &s);
    json_decref(claims);
    if (rc == 0)
        authd_revoke_login(c->srv, s);
    if (!rc && c->host->session.store == AUTHD_STORE_REDIS) {
        if (authd_store_save(c->srv->store, c->host, s, c->cookie_header, saved, c))
            callback_fail(c, 503, redis_down_msg, "redis: down");
        return; /* s taken */
    }
    if (rc ||
        authd_session_seal(&c->cfg->cfg->keys, c->host, s, c->cookie_header, now, &c->set_cookie)) {
        callback_fail(c, 502, "The session could not be created.", "session");
        authd_session_free(s);
        return;
    }
    callback_ok(c, s);
    authd_session_free(s);
}

static void
token_done(void *ud, int rc, long status, json_t *body, const char *error)
{
    struct callback_ctx *c = ud;
    const char *idt = body ? pc_json_str(body, "id_token") : NULL;
    const char *rt = body ? pc_json_str(body, "refresh_token") : NULL;
    const char *err = body ? pc_json_str(body, "error") : NULL;

    if (rc == PC_EIO) {
        bool timeout = error && strstr(error, "timed out");
        callback_fail(c, timeout ? 504 : 502,
                      timeout ? "The identity provider did not answer in time."
                              : "The identity provider did not answer.",
                      error);
        return;
    }
    if (rc == PC_EAUTH && err && !strcmp(err, "invalid_grant")) {
        callback_fail(c, 400,
                      "The identity provider refused the authorization code "
                      "(expired or already used). Start the sign-in again.",
                      err);
        return;
    }
    if (rc || !idt) {
        char why[64];
        snprintf(why, sizeof(why), "token endpoint status %ld", status);
        callback_fail(c, 502, "The identity provider refused the code exchange.", err ? err : why);
        return;
    }
    c->id_token = pc_xstrdup(idt);
    c->refresh_token = rt ? pc_xstrdup(rt) : NULL;
    struct authd_jwt_expect ex = {.issuer = c->host->oidc.issuer_url,
                                  .client_id = c->host->oidc.client_id,
                                  .nonce = c->st->nonce,
                                  .now = authd_now()};
    authd_oidc_verify(c->srv->oidc, c->host->oidc.issuer_url, c->id_token, &ex, verify_done, c);
}

/* An OAuth2 error code as IdPs send them (RFC 6749 4.1.2.1): "access_denied", ... */
static bool
is_error_code(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");

    return n > 0 && n <= 64 && s[n] == '\0';
}

/* Validates the callback request synchronously; on success starts the code exchange. */
int
authd_login_callback(struct authd_server *srv, const struct authd_host *host,
                     const struct authd_http *h, const char *host_name, const char *query,
                     void *conn, struct authd_reply *r)
{
    struct authd_strlist set_cookie = {0};
    struct authd_login_state *st = NULL;
    char *state = authd_query_param(query, "state");
    char *code = authd_query_param(query, "code");
    char *error = authd_query_param(query, "error");
    char *ruri = NULL;
    struct callback_ctx *c = NULL;
    int rc = 0, orc;

    if (error) {
        /* The IdP's words come from the query, so anyone can craft them: the page shows only a
         * well-formed error code, the description goes to the log. */
        char *desc = authd_query_param(query, "error_description");
        char *msg = pc_xasprintf("The identity provider refused the sign-in (\"%s\").",
                                 is_error_code(error) ? error : "unknown error");
        login_failed(r, host, 403, msg, NULL);
        pc_log(PC_LOG_WARN, "login", "host", host_name, "policy", host->id, "result", "failure",
               "reason", error, "detail", desc, "request_id", r->page.request_id, NULL);
        free(desc);
        free(msg);
        goto out;
    }
    orc = state ? authd_login_state_open(&srv->cfg->cfg->keys, host, h->cookie, state, authd_now(),
                                         &st, &set_cookie)
                : PC_ENOTFOUND;
    if (orc || !code) {
        login_failed(r, host, 400,
                     orc == PC_EEXPIRED
                         ? "The sign-in took too long. Start it again."
                         : "This browser has no matching login in progress (the "
                           "login state cookie is missing or invalid). Start the sign-in again.",
                     st ? st->redirect : NULL);
        add_set_cookies(r, &set_cookie);
        pc_log(PC_LOG_WARN, "login", "host", host_name, "policy", host->id, "result", "failure",
               "reason", orc ? pc_strerror(orc) : "no code", "request_id", r->page.request_id,
               NULL);
        goto out;
    }
    const struct authd_issuer *iss = authd_oidc_issuer(srv->oidc, host->oidc.issuer_url);
    if (!iss || !iss->discovered) {
        login_failed(r, host, 503,
                     "The identity provider's discovery document is not loaded. "
                     "Try again shortly.",
                     st->redirect);
        goto out;
    }
    /* One state, one code exchange: a replayed callback never reaches the token endpoint. */
    if (authd_replay_claim(srv->replay, st->state, st->expires_at, authd_now())) {
        login_failed(r, host, 400, "This login was already used. Start the sign-in again.",
                     st->redirect);
        add_set_cookies(r, &set_cookie);
        authd_metrics_state_replay(srv->metrics);
        pc_log(PC_LOG_WARN, "login", "host", host_name, "policy", host->id, "result", "failure",
               "reason", "state already used", "request_id", r->page.request_id, NULL);
        goto out;
    }
    c = pc_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->cfg = authd_cfgref_get(srv->cfg);
    c->host = host;
    c->st = st;
    st = NULL;
    c->set_cookie = set_cookie;
    set_cookie = (struct authd_strlist){0};
    c->cookie_header = h->cookie ? pc_xstrdup(h->cookie) : NULL;
    c->host_name = pc_xstrdup(host_name);
    c->t0 = authd_mono_us();
    c->envoy = authd_envoy_original_path(srv->cfg->cfg->ext_authz_prefix, h->uri) != NULL;
    c->plain_http = r->plain_http;
    c->page = r->page;
    ruri = redirect_uri(host, h, host_name);
    struct authd_token_opts opts = {.host = host,
                                    .issuer = iss,
                                    .grant_type = "authorization_code",
                                    .code = code,
                                    .redirect_uri = ruri,
                                    .timeout_ms = c->envoy ? AUTHD_ENVOY_IDP_TIMEOUT_MS : 0,
                                    .code_verifier = c->st->pkce_verifier,
                                    .kind = "token",
                                    .done = token_done,
                                    .ud = c};
    if (authd_oidc_token(srv->oidc, &opts)) {
        /* Refused at once (the issuer's queue is full): no exchange, so the state stays usable
         * and the cookie stays set; reloading the callback retries. */
        authd_replay_release(srv->replay, c->st->state, authd_now());
        login_failed(r, host, 503, "The identity provider is busy. Try again shortly.",
                     c->st->redirect);
        authd_reply_header(r, "Retry-After", "5");
        pc_log(PC_LOG_WARN, "login", "host", host_name, "policy", host->id, "result", "failure",
               "reason", "idp busy", "request_id", r->page.request_id, NULL);
        callback_free(c);
        goto out;
    }
    c->pending = authd_pending_new(conn);
    rc = 1;
out:
    authd_login_state_free(st);
    authd_strlist_release(&set_cookie);
    free(state);
    pc_free_secret(code);
    free(error);
    free(ruri);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* sign-out */

static char *
absolute(const struct authd_http *h, const char *host_name, const char *target)
{
    if (target[0] == '/')
        return pc_xasprintf("%s://%s%s", authd_door_scheme(h), host_name, target);
    return pc_xstrdup(target);
}

/*
 * Signed out, and nowhere to send the browser: no IdP session to end, no rd. Redirecting to
 * "/" would start a new login at once (silently, while the IdP's own session lasts), so the
 * user gets a page saying what happened instead. Through Envoy any 200 lets the request
 * through to the app, so there the page comes with 401: the browser is no longer signed in.
 */
static void
signed_out(struct authd_reply *r, const struct authd_session *s, bool envoy)
{
    authd_reply_render(
        r, AUTHD_PAGE_SIGNED_OUT,
        &(struct authd_page_fields){
            .status = envoy ? 401 : 200,
            .error = "signed_out",
            .title = "Signed out",
            .message = "You are signed out of this site. Your sign-in at the identity provider "
                       "may still be active: close the browser to end it.",
            .email = s ? (s->id.email ? s->id.email : s->id.sub) : NULL,
            .sign_in_url = "/",
        });
    if (envoy)
        authd_reply_header(r, "WWW-Authenticate", "Bearer realm=\"portcullis\"");
}

static const char *
user_of(const struct authd_session *s)
{
    return s ? (s->id.email ? s->id.email : s->id.sub) : NULL;
}

static void
log_signed_out(const char *host_name, const char *policy, const char *user, const char *result,
               const char *request_id)
{
    pc_log(PC_LOG_INFO, "sign_out", "host", host_name, "policy", policy, "user", user, "result",
           result, "request_id", request_id, NULL);
}

/*
 * A sign-out whose reply waits for Redis to delete the session: ok is sent only once DEL
 * answered, fail (not signed out) when it did not.
 */
struct sign_out {
    struct authd_pending *pending;
    struct authd_reply ok, fail;
    const char *result; /* ok's kind, static */
    char *host_name, *policy, *user;
};

static void
sign_out_done(void *ud, int rc)
{
    struct sign_out *so = ud;

    if (rc)
        pc_log(PC_LOG_ERROR, "sign_out", "host", so->host_name, "policy", so->policy, "user",
               so->user, "error", "the session could not be deleted in Redis", "reason",
               pc_strerror(rc), "request_id", so->ok.page.request_id, NULL);
    else
        log_signed_out(so->host_name, so->policy, so->user, so->result, so->ok.page.request_id);
    authd_pending_finish(so->pending, rc ? &so->fail : &so->ok);
    authd_reply_release(&so->ok);
    authd_reply_release(&so->fail);
    free(so->host_name);
    free(so->policy);
    free(so->user);
    free(so);
}

/* The reply: cookies cleared, then the IdP's end_session_endpoint, rd, or the page. Returns
 * which of the three, for the log. */
static const char *
sign_out_reply(struct authd_server *srv, const struct authd_host *host, const struct authd_http *h,
               const char *host_name, const char *target, const struct authd_session *s,
               struct authd_reply *r)
{
    const struct authd_issuer *iss = authd_oidc_issuer(srv->oidc, host->oidc.issuer_url);
    struct authd_strlist set_cookie = {0};
    bool end_session = iss && iss->end_session_endpoint;
    char *abs = NULL;
    struct pc_buf b;

    authd_session_clear(host, h->cookie, true, &set_cookie);
    pc_buf_init(&b, 0);
    if (end_session) {
        char *e;
        abs = absolute(h, host_name, target ? target : "/");
        pc_buf_appendf(&b, "%s%s", iss->end_session_endpoint,
                       strchr(iss->end_session_endpoint, '?') ? "&" : "?");
        e = pc_url_encode(host->oidc.client_id);
        pc_buf_appendf(&b, "client_id=%s", e);
        free(e);
        e = pc_url_encode(abs);
        pc_buf_appendf(&b, "&post_logout_redirect_uri=%s", e);
        free(e);
        if (s && s->id_token) {
            e = pc_url_encode(s->id_token);
            pc_buf_appendf(&b, "&id_token_hint=%s", e);
            pc_free_secret(e);
        }
    } else if (target) {
        pc_buf_appends(&b, target);
    }
    if (end_session || target)
        redirect(r, pc_buf_str(&b));
    else
        signed_out(r, s,
                   authd_envoy_original_path(srv->cfg->cfg->ext_authz_prefix, h->uri) != NULL);
    add_set_cookies(r, &set_cookie);
    b.secret = true;
    pc_buf_release(&b);
    authd_strlist_release(&set_cookie);
    free(abs);
    return end_session ? "end_session" : target ? "redirect" : "page";
}

/*
 * Not signed out: a copy of the cookie may still open the session. The browser's cookies are
 * cleared all the same; the page says to retry.
 */
static void
sign_out_not_completed(const struct authd_host *host, const struct authd_http *h,
                       struct authd_reply *r)
{
    struct authd_strlist set_cookie = {0};

    authd_session_clear(host, h->cookie, true, &set_cookie);
    authd_reply_page(r, 503, "Sign-out not completed",
                     "Your session could not be ended because the session store did not "
                     "confirm it. Sign out again in a moment.");
    authd_reply_header(r, "Cache-Control", "no-store");
    add_set_cookies(r, &set_cookie);
    authd_strlist_release(&set_cookie);
}

/* A new reply with r's status, page context, type, headers and body. */
static void
reply_copy(struct authd_reply *dst, const struct authd_reply *r)
{
    authd_reply_init(dst);
    dst->status = r->status;
    dst->page = r->page;
    dst->plain_http = r->plain_http;
    authd_reply_type(dst, r->content_type);
    pc_buf_append(&dst->headers, r->headers.data ? r->headers.data : "", r->headers.len);
    pc_buf_append(&dst->body, r->body.data ? r->body.data : "", r->body.len);
}

/*
 * A redis-store host: the sessions of the request's tickets are deleted in Redis before the
 * browser is told it is signed out, so a copy of the cookie is refused from then on. The reply
 * waits for DEL's answer; a DEL not sent, not answered within commandTimeout, or answered
 * with an error is not a sign-out (503).
 */
static int
sign_out_redis(struct authd_server *srv, const struct authd_host *host, const struct authd_http *h,
               const char *host_name, const char *target, void *conn, struct authd_reply *r)
{
    struct sign_out *so = pc_xcalloc(1, sizeof(*so));
    const struct authd_session *s = NULL;
    int rc = authd_store_sign_out(srv->store, host, h->cookie, &s, sign_out_done, so);

    if (rc == PC_ENOTFOUND) { /* no ticket: nothing to delete */
        const char *result = sign_out_reply(srv, host, h, host_name, target, NULL, r);

        log_signed_out(host_name, host->id, NULL, result, r->page.request_id);
    } else if (rc != 0) {
        sign_out_not_completed(host, h, r);
        pc_log(PC_LOG_ERROR, "sign_out", "host", host_name, "policy", host->id, "error",
               "the session could not be deleted in Redis", "reason",
               rc == PC_ETOOBIG ? "more session cookies than a sign-out deletes (32)"
                                : pc_strerror(rc),
               "request_id", r->page.request_id, NULL);
    } else {
        so->host_name = pc_xstrdup(host_name);
        so->policy = pc_xstrdup(host->id);
        so->user = user_of(s) ? pc_xstrdup(user_of(s)) : NULL;
        so->result = sign_out_reply(srv, host, h, host_name, target, s, r);
        reply_copy(&so->ok, r);
        authd_reply_init(&so->fail);
        so->fail.page = r->page;
        so->fail.plain_http = r->plain_http;
        sign_out_not_completed(host, h, &so->fail);
        so->pending = authd_pending_new(conn);
    }
    authd_store_forget(srv->store, host, h->cookie);
    if (rc != 0)
        free(so);
    return rc == 0;
}

int
authd_login_sign_out(struct authd_server *srv, const struct authd_host *host,
                     const struct authd_http *h, const char *host_name, const char *query,
                     void *conn, struct authd_reply *r)
{
    struct authd_session *s = NULL;
    char *rd = authd_query_param(query, "rd"), *target = NULL;
    int rc = 0;

    if (!rd || authd_redirect_validate(srv->cfg->cfg, host_name, rd, &target))
        target = NULL;
    if (host->session.store == AUTHD_STORE_REDIS) {
        rc = sign_out_redis(srv, host, h, host_name, target, conn, r);
    } else {
        const char *result;

        authd_session_open(&srv->cfg->cfg->keys, host, h->cookie, authd_now(), &s);
        result = sign_out_reply(srv, host, h, host_name, target, s, r);
        log_signed_out(host_name, host->id, user_of(s), result, r->page.request_id);
    }
    authd_session_free(s);
    free(rd);
    free(target);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* refresh */

enum refresh_state { RF_INFLIGHT, RF_DONE, RF_FAILED, RF_REVOKED };

struct refresh_entry {
    uint8_t key[32];
    enum refresh_state state;
    int64_t until; /* entry dropped after this */
    struct authd_strlist set_cookie;
    struct refresh_entry *next;
};

struct authd_refresh {
    struct refresh_entry *head;
};

struct refresh_ctx {
    struct authd_server *srv;
    struct authd_cfgref *cfg;
    const struct authd_host *host;
    struct authd_session *old;
    char *cookie_header;
    uint8_t key[32];
};

struct authd_refresh *
authd_refresh_new(void)
{
    return pc_xcalloc(1, sizeof(struct authd_refresh));
}

static void
entry_free(struct refresh_entry *e)
{
    authd_strlist_release(&e->set_cookie);
    free(e);
}

void
authd_refresh_free(struct authd_refresh *t)
{
    if (!t)
        return;
    while (t->head) {
        struct refresh_entry *e = t->head;
        t->head = e->next;
        entry_free(e);
    }
    free(t);
}

void
authd_refresh_expire(struct authd_refresh *t, int64_t now)
{
    for (struct refresh_entry **pp = &t->head; *pp;) {
        struct refresh_entry *e = *pp;
        if (e->state != RF_INFLIGHT && now > e->until) {
            *pp = e->next;
            entry_free(e);
        } else {
            pp = &e->next;
        }
    }
}

static struct refresh_entry *
lookup(struct authd_refresh *t, const uint8_t key[32])
{
    for (struct refresh_entry *e = t->head; e; e = e->next)
        if (!memcmp(e->key, key, 32))
            return e;
    return NULL;
}

static void
refresh_finish(struct refresh_ctx *c, enum refresh_state st, const char *why)
{
    struct refresh_entry *e = lookup(c->srv->refresh, c->key);

    if (e) {
        e->state = st;
        e->until = authd_now() + (st == RF_FAILED ? REFRESH_RETRY_SECS : REFRESH_KEEP_SECS);
        if (st == RF_REVOKED)
            e->until = c->old->expires_at;
    }
    pc_log(st == RF_DONE ? PC_LOG_INFO : PC_LOG_WARN, "refresh", "policy", c->host->id, "user",
           c->old->id.email ? c->old->id.email : c->old->id.sub, "result",
           st == RF_DONE      ? "ok"
           : st == RF_REVOKED ? "revoked"
                              : "failure",
           "reason", why, NULL);
    authd_session_free(c->old);
    free(c->cookie_header);
    authd_cfgref_put(c->cfg);
    free(c);
}

int
authd_session_refreshed(const struct authd_host *host, const struct authd_session *old,
                        const json_t *claims, const char *idt, const char *rt, int64_t now,
                        struct authd_session **out)
{
    struct authd_session *s = NULL;
    char *text;
    int rc;

    *out = NULL;
    if (claims == NULL) {
        /* No ID token in the response: the old identity, the new refresh token if any. */
        text = authd_session_encode(old);
        rc = authd_session_decode(text, &s);
        pc_free_secret(text);
        if (rc)
            return rc;
        if (rt) {
            pc_free_secret(s->refresh_token);
            s->refresh_token = pc_xstrdup(rt);
        }
        s->refreshed_at = now;
        *out = s;
        return 0;
    }
    if ((rc = authd_session_from_claims(host, claims, idt ? idt : old->id_token,
                                        rt ? rt : old->refresh_token, now, &s)))
        return rc;
    /* OIDC Core 12.2: a refreshed ID token is about the same user, or it is not accepted. */
    if (strcmp(s->id.sub, old->id.sub) != 0) {
        authd_session_free(s);
        return PC_EAUTH;
    }
    s->issued_at = old->issued_at;
    s->expires_at = old->expires_at;
    *out = s;
    return 0;
}

/* Builds the refreshed session and seals it into the cookies of the refresh entry. */
static int
refresh_seal(struct refresh_ctx *c, json_t *claims, const char *idt, const char *rt,
             struct authd_strlist *out)
{
    struct authd_session *s = NULL;
    int64_t now = authd_now();
    int rc = authd_session_refreshed(c->host, c->old, claims, idt, rt, now, &s);

    if (!rc)
        rc = authd_session_seal(&c->cfg->cfg->keys, c->host, s, c->cookie_header, now, out);
    authd_session_free(s);
    return rc;
}

static void
refresh_token_done(void *ud, int rc, long status, json_t *body, const char *error)
{
    struct refresh_ctx *c = ud;
    struct refresh_entry *e = lookup(c->srv->refresh, c->key);
    const char *idt = body ? pc_json_str(body, "id_token") : NULL;
    const char *rt = body ? pc_json_str(body, "refresh_token") : NULL;
    json_t *claims = NULL;
    const char *why = NULL;

    if (rc == PC_EAUTH && (status == 400 || status == 401)) {
        refresh_finish(c, RF_REVOKED, body ? pc_json_str(body, "error") : "refused");
        return;
    }
    if (rc || !e) {
        refresh_finish(c, RF_FAILED, error ? error : pc_strerror(rc));
        return;
    }
    if (idt) {
        /* No nonce in refreshed ID tokens; the kid must be known already (no refetch here). */
        struct authd_jwt_expect ex = {.issuer = c->host->oidc.issuer_url,
                                      .client_id = c->host->oidc.client_id,
                                      .now = authd_now()};
        struct authd_issuer *iss = authd_oidc_issuer(c->srv->oidc, c->host->oidc.issuer_url);
        rc = iss && iss->jwks ? authd_jwt_verify(iss->jwks, idt, &ex, &claims, &why) : PC_ENOTFOUND;
        if (!rc)
            rc = refresh_seal(c, claims, idt, rt, &e->set_cookie);
        json_decref(claims);
    } else {
        rc = refresh_seal(c, NULL, NULL, rt, &e->set_cookie);
    }
    refresh_finish(c, rc ? RF_FAILED : RF_DONE, rc ? (why ? why : pc_strerror(rc)) : NULL);
}

int
authd_refresh_check(struct authd_server *srv, const struct authd_host *host,
                    struct authd_session **s, const char *cookie_header,
                    struct authd_strlist *set_cookie)
{
    struct authd_refresh *t = srv->refresh;
    struct refresh_entry *e;
    uint8_t key[32];

    pc_sha256((*s)->refresh_token, strlen((*s)->refresh_token), key);
    if ((e = lookup(t, key))) {
        if (e->state == RF_REVOKED)
            return PC_EEXPIRED;
        for (size_t i = 0; e->state == RF_DONE && i < e->set_cookie.n; i++)
            authd_strlist_add(set_cookie, e->set_cookie.v[i]);
        return 0;
    }
    const struct authd_issuer *iss = authd_oidc_issuer(srv->oidc, host->oidc.issuer_url);
    if (!iss || !iss->token_endpoint)
        return 0;
    struct refresh_ctx *c = pc_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->cfg = authd_cfgref_get(srv->cfg);
    c->host = host;
    c->old = *s;
    c->cookie_header = cookie_header ? pc_xstrdup(cookie_header) : NULL;
    memcpy(c->key, key, 32);
    e = pc_xcalloc(1, sizeof(*e));
    memcpy(e->key, key, 32);
    e->state = RF_FAILED; /* until the call is queued: a refused one is retried later */
    e->until = authd_now() + REFRESH_RETRY_SECS;
    e->next = t->head;
    t->head = e;
    struct authd_token_opts opts = {.host = host,
                                    .issuer = iss,
                                    .grant_type = "refresh_token",
                                    .refresh_token = c->old->refresh_token,
                                    .kind = "refresh",
                                    .done = refresh_token_done,
                                    .ud = c};
    if (authd_oidc_token(srv->oidc, &opts)) {
        /* The issuer's queue is full: keep the session as it is and retry later. */
        free(c->cookie_header);
        authd_cfgref_put(c->cfg);
        free(c);
        return 0;
    }
    e->state = RF_INFLIGHT;
    *s = NULL;
    return 0;
}
