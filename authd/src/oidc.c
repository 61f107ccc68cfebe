/*
 * oidc.c - everything authd asks an identity provider: discovery, the JWKS, token endpoint
 * calls. The HTTP happens on the worker pool (common/http.h, blocking, with timeouts); parsing
 * and state changes happen on the lws thread when the completion is drained, so the issuer
 * registry needs no lock. The check path only ever reads this registry.
 *
 * Discovery and JWKS are fetched when an issuer appears in the config and retried with
 * exponential backoff (1 s .. 60 s); the JWKS is refreshed hourly and, on an unknown "kid",
 * at most once per issuer per 30 s.
 *
 * Every call is a pool job keyed by its issuer with a deadline fixed when it is submitted: the
 * time it waits for a worker counts against its timeout, and curl gets only what is left. The
 * pool refuses a call at once when the issuer's queue is full; callers answer or back off.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/http.h"
#include "portcullis/json.h"
#include "portcullis/log.h"

#define CONNECT_TIMEOUT_MS 2000
#define TOTAL_TIMEOUT_MS 5000
#define MAX_BACKOFF 60
#define JWKS_REFRESH_SECS 3600
#define JWKS_REFETCH_MIN_SECS 30
#define MAX_ISSUERS 1024

/* An ID token waiting for a JWKS refetch. */
struct waiter {
    char *token;
    char *issuer, *client_id, *nonce;
    int64_t now;
    authd_verify_done_fn done;
    void *ud;
    struct waiter *next;
};

struct reg_entry {
    struct authd_issuer iss;
    struct waiter *waiters;
    /* The allowedURLPrefixes of the hosts that use this issuer, one list per host (copies):
     * every URL fetched for it must be within each (authd_url_allowed). */
    struct authd_strlist *allow;
    size_t nallow;
};

struct authd_oidc {
    struct authd_server *srv;
    struct reg_entry *v[MAX_ISSUERS];
    size_t n;
};

/* One HTTP call on a worker. */
struct http_job {
    struct authd_job job;
    struct authd_oidc *o;
    char *url;
    char *body;
    char *user, *password;
    char *issuer;
    const char *kind;
    struct pc_http_response resp;
    int rc;
    void (*cb)(struct http_job *j);
    authd_token_done_fn token_done;
    void *ud;
};

/* ------------------------------------------------------------------------------------------ */
/* HTTP jobs */

static void
http_run(struct authd_job *job)
{
    struct http_job *j = (struct http_job *)job;
    int64_t left_ms = (j->job.deadline_us - authd_mono_us()) / 1000;
    static const char *const form_headers[] = {
        "Accept: application/json", "Content-Type: application/x-www-form-urlencoded", NULL};
    static const char *const get_headers[] = {"Accept: application/json", NULL};
    struct pc_http_request req = {
        .method = j->body ? "POST" : "GET",
        .url = j->url,
        .headers = j->body ? form_headers : get_headers,
        .body = j->body,
        .body_len = j->body ? strlen(j->body) : 0,
        .basic_user = j->user,
        .basic_password = j->password,
        .connect_timeout_ms = CONNECT_TIMEOUT_MS,
        .max_response = 1024 * 1024,
    };

    /* The deadline was set at submission: time spent queued is not given again. */
    if (left_ms <= 0) {
        snprintf(j->resp.error, sizeof(j->resp.error), "timed out before the request was sent");
        j->rc = PC_EIO;
        return;
    }
    req.timeout_ms = left_ms;
    if (req.connect_timeout_ms > left_ms)
        req.connect_timeout_ms = left_ms;
    j->rc = pc_http_do(&req, &j->resp);
}

static const char *
result_label(const struct http_job *j)
{
    if (j->job.status == PC_EEXPIRED)
        return "expired";
    if (j->rc)
        return strstr(j->resp.error, "timed out") ? "timeout" : "error";
    return j->resp.status >= 200 && j->resp.status < 300 ? "ok" : "http_error";
}

static void
http_job_free(struct http_job *j)
{
    if (j->resp.body.data)
        pc_cleanse(j->resp.body.data, j->resp.body.len);
    pc_http_response_release(&j->resp);
    free(j->url);
    pc_free_secret(j->body);
    free(j->user);
    pc_free_secret(j->password);
    free(j->issuer);
    free(j);
}

static void
http_done(struct authd_job *job)
{
    struct http_job *j = (struct http_job *)job;

    if (job->status == PC_EEXPIRED)
        snprintf(j->resp.error, sizeof(j->resp.error), "timed out waiting for a worker");
    authd_metrics_idp(j->o->srv->metrics, j->issuer, j->kind, result_label(j));
    j->cb(j);
    http_job_free(j);
}

/* A new job for url; timeout_ms (0: the default) counts from now, queueing included. */
static struct http_job *
http_job_new(struct authd_oidc *o, const char *issuer, const char *kind, const char *url,
             long timeout_ms)
{
    struct http_job *j = pc_xcalloc(1, sizeof(*j));

    j->job.run = http_run;
    j->job.done = http_done;
    j->o = o;
    j->issuer = pc_xstrdup(issuer);
    j->job.key = j->issuer;
    j->job.deadline_us =
        authd_mono_us() + 1000 * (int64_t)(timeout_ms > 0 ? timeout_ms : TOTAL_TIMEOUT_MS);
    j->kind = kind;
    j->url = pc_xstrdup(url);
    j->rc = PC_EIO; /* what done() sees if the pool shuts down before running it */
    snprintf(j->resp.error, sizeof(j->resp.error), "shutting down");
    return j;
}

static struct reg_entry *find(struct authd_oidc *o, const char *url);

/*
 * Hands j to the pool. A URL outside the issuer's allowedURLPrefixes is refused here, before
 * any connection (logged, counted, j freed): returns -EPERM. When the issuer's queue is full
 * the call is refused too: -EAGAIN. Either way the caller answers or backs off.
 */
static int
submit(struct authd_oidc *o, struct http_job *j)
{
    struct reg_entry *e = find(o, j->issuer);
    int rc;

    if (e && !authd_url_allowed(e->allow, e->nallow, j->url)) {
        authd_metrics_idp(o->srv->metrics, j->issuer, j->kind, "refused");
        pc_log(PC_LOG_WARN, "idp_url_refused", "issuer", j->issuer, "kind", j->kind, "url", j->url,
               "reason", "outside the host's allowedURLPrefixes (the admin policy's issuers)",
               NULL);
        http_job_free(j);
        return -EPERM;
    }
    rc = authd_pool_submit(o->srv->pool, &j->job);
    if (rc) {
        authd_metrics_idp(o->srv->metrics, j->issuer, j->kind, "rejected");
        pc_log(PC_LOG_WARN, "idp_rejected", "issuer", j->issuer, "kind", j->kind, "reason",
               "queue full", NULL);
        http_job_free(j);
    }
    return rc;
}

/* The body as a JSON object, or NULL. */
static json_t *
body_json(const struct http_job *j)
{
    if (j->rc || !j->resp.body.data)
        return NULL;
    json_t *v = json_loadb(j->resp.body.data, j->resp.body.len, 0, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* registry */

static struct reg_entry *
find(struct authd_oidc *o, const char *url)
{
    for (size_t i = 0; i < o->n; i++)
        if (!strcmp(o->v[i]->iss.url, url))
            return o->v[i];
    return NULL;
}

struct authd_issuer *
authd_oidc_issuer(struct authd_oidc *o, const char *url)
{
    struct reg_entry *e = url ? find(o, url) : NULL;

    return e ? &e->iss : NULL;
}

static void
issuer_clear_discovery(struct authd_issuer *iss)
{
    free(iss->authorization_endpoint);
    free(iss->token_endpoint);
    free(iss->end_session_endpoint);
    free(iss->jwks_uri);
    iss->authorization_endpoint = iss->token_endpoint = NULL;
    iss->end_session_endpoint = iss->jwks_uri = NULL;
    iss->discovered = false;
}

static void run_waiters(struct authd_oidc *o, struct reg_entry *e);

static void
allow_clear(struct reg_entry *e)
{
    for (size_t i = 0; i < e->nallow; i++)
        authd_strlist_release(&e->allow[i]);
    free(e->allow);
    e->allow = NULL;
    e->nallow = 0;
}

/* Records a host's prefixes for its issuer (a list equal to one recorded counts once). */
static void
allow_add(struct reg_entry *e, const struct authd_strlist *l)
{
    struct authd_strlist *copy;

    if (l->n == 0)
        return;
    for (size_t i = 0; i < e->nallow; i++) {
        bool same = e->allow[i].n == l->n;

        for (size_t j = 0; same && j < l->n; j++)
            same = strcmp(e->allow[i].v[j], l->v[j]) == 0;
        if (same)
            return;
    }
    e->allow = pc_xrealloc(e->allow, (e->nallow + 1) * sizeof(*e->allow));
    copy = &e->allow[e->nallow++];
    memset(copy, 0, sizeof(*copy));
    for (size_t j = 0; j < l->n; j++)
        authd_strlist_add(copy, l->v[j]);
}

static void
entry_free(struct authd_oidc *o, struct reg_entry *e)
{
    authd_jwks_free(e->iss.jwks);
    e->iss.jwks = NULL;
    run_waiters(o, e); /* they fail with "unknown kid" */
    issuer_clear_discovery(&e->iss);
    allow_clear(e);
    free(e->iss.url);
    free(e);
}

static void
failed(struct authd_oidc *o, struct authd_issuer *iss, const char *what, const char *why)
{
    int64_t delay = 1;

    (void)o;
    iss->busy = false;
    iss->failures++;
    for (int i = 1; i < iss->failures && delay < MAX_BACKOFF; i++)
        delay *= 2;
    if (delay > MAX_BACKOFF)
        delay = MAX_BACKOFF;
    iss->retry_at = authd_now() + delay;
    pc_log(PC_LOG_WARN, "idp_fetch", "issuer", iss->url, "kind", what, "error", why, NULL);
}

static int fetch_jwks(struct authd_oidc *o, struct authd_issuer *iss);

static void
discovery_parse(struct authd_issuer *iss, const json_t *doc)
{
    const json_t *methods = json_object_get(doc, "token_endpoint_auth_methods_supported");
    const char *s;

    issuer_clear_discovery(iss);
    iss->authorization_endpoint = pc_xstrdup(pc_json_str(doc, "authorization_endpoint"));
    iss->token_endpoint = pc_xstrdup(pc_json_str(doc, "token_endpoint"));
    iss->jwks_uri = pc_xstrdup(pc_json_str(doc, "jwks_uri"));
    if ((s = pc_json_str(doc, "end_session_endpoint")))
        iss->end_session_endpoint = pc_xstrdup(s);
    /* RFC 8414: absent means client_secret_basic. */
    iss->token_auth_basic = true;
    if (json_is_array(methods)) {
        size_t i;
        json_t *m;
        iss->token_auth_basic = false;
        json_array_foreach(methods, i, m) if (json_is_string(m) &&
                                              !strcmp(json_string_value(m), "client_secret_basic"))
            iss->token_auth_basic = true;
    }
    iss->discovered = true;
}

static void
discovery_done(struct http_job *j)
{
    struct reg_entry *e = find(j->o, j->issuer);
    json_t *doc = body_json(j);
    const char *iss_claim = doc ? pc_json_str(doc, "issuer") : NULL;

    if (!e)
        goto out;
    if (!doc || j->resp.status != 200) {
        failed(j->o, &e->iss, "discovery", j->rc ? j->resp.error : "not a JSON 200 response");
    } else if (!iss_claim || strcmp(iss_claim, e->iss.url)) {
        failed(j->o, &e->iss, "discovery", "issuer in the document does not match issuerURL");
    } else if (!pc_json_str(doc, "authorization_endpoint") || !pc_json_str(doc, "token_endpoint") ||
               !pc_json_str(doc, "jwks_uri")) {
        failed(j->o, &e->iss, "discovery", "document lacks an endpoint or jwks_uri");
    } else {
        discovery_parse(&e->iss, doc);
        e->iss.busy = false;
        pc_log(PC_LOG_INFO, "idp_discovered", "issuer", e->iss.url, NULL);
        fetch_jwks(j->o, &e->iss);
    }
out:
    json_decref(doc);
}

static void
fetch_discovery(struct authd_oidc *o, struct authd_issuer *iss)
{
    char *url = pc_xasprintf("%s/.well-known/openid-configuration", iss->url);
    struct http_job *j;
    int rc;

    /* An issuer URL ending in "/" must not produce "//.well-known". */
    if (iss->url[0] && iss->url[strlen(iss->url) - 1] == '/') {
        free(url);
        url = pc_xasprintf("%s.well-known/openid-configuration", iss->url);
    }
    j = http_job_new(o, iss->url, "discovery", url, 0);
    free(url);
    j->cb = discovery_done;
    iss->busy = true;
    if ((rc = submit(o, j)))
        failed(o, iss, "discovery",
               rc == -EPERM ? "the URL is outside allowedURLPrefixes"
                            : "the issuer's queue is full");
}

static void
jwks_done(struct http_job *j)
{
    struct reg_entry *e = find(j->o, j->issuer);
    struct authd_jwks *ks = NULL;
    int rc;

    if (!e)
        return;
    if (j->rc || j->resp.status != 200) {
        failed(j->o, &e->iss, "jwks", j->rc ? j->resp.error : "non-200 response");
    } else if ((rc = authd_jwks_parse(j->resp.body.data ? j->resp.body.data : "", j->resp.body.len,
                                      &ks))) {
        failed(j->o, &e->iss, "jwks", pc_strerror(rc));
    } else {
        authd_jwks_free(e->iss.jwks);
        e->iss.jwks = ks;
        e->iss.jwks_fetched_at = authd_now();
        e->iss.failures = 0;
        e->iss.busy = false;
        pc_log(PC_LOG_INFO, "idp_jwks", "issuer", e->iss.url, NULL);
    }
    run_waiters(j->o, e);
}

/* Returns 0, or -EAGAIN when the fetch was refused (then iss is backing off). */
static int
fetch_jwks(struct authd_oidc *o, struct authd_issuer *iss)
{
    struct http_job *j = http_job_new(o, iss->url, "jwks", iss->jwks_uri, 0);
    int rc;

    j->cb = jwks_done;
    iss->busy = true;
    if ((rc = submit(o, j)))
        failed(o, iss, "jwks",
               rc == -EPERM ? "the URL is outside allowedURLPrefixes"
                            : "the issuer's queue is full");
    return rc;
}

static void
start(struct authd_oidc *o, struct authd_issuer *iss)
{
    if (iss->busy)
        return;
    if (!iss->discovered)
        fetch_discovery(o, iss);
    else
        fetch_jwks(o, iss);
}

struct authd_oidc *
authd_oidc_new(struct authd_server *srv)
{
    struct authd_oidc *o = pc_xcalloc(1, sizeof(*o));

    o->srv = srv;
    return o;
}

void
authd_oidc_free(struct authd_oidc *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++)
        entry_free(o, o->v[i]);
    free(o);
}

void
authd_oidc_sync(struct authd_oidc *o, const struct authd_config *cfg)
{
    size_t k = 0;

    for (size_t i = 0; i < o->n; i++) {
        o->v[i]->iss.used = false;
        allow_clear(o->v[i]);
    }
    for (size_t h = 0; h < cfg->nhosts; h++) {
        const char *url = cfg->hosts[h]->oidc.issuer_url;
        struct reg_entry *e = find(o, url);

        if (!e && o->n < MAX_ISSUERS) {
            e = pc_xcalloc(1, sizeof(*e));
            e->iss.url = pc_xstrdup(url);
            o->v[o->n++] = e;
        }
        if (e) {
            e->iss.used = true;
            allow_add(e, &cfg->hosts[h]->oidc.url_prefixes);
        }
    }
    /* Issuers no longer configured go; jobs in flight look them up by URL and find nothing. */
    for (size_t i = 0; i < o->n; i++) {
        if (o->v[i]->iss.used)
            o->v[k++] = o->v[i];
        else
            entry_free(o, o->v[i]);
    }
    o->n = k;
    for (size_t i = 0; i < o->n; i++)
        if (!o->v[i]->iss.discovered || !o->v[i]->iss.jwks)
            start(o, &o->v[i]->iss);
}

void
authd_oidc_tick(struct authd_oidc *o, int64_t now)
{
    for (size_t i = 0; i < o->n; i++) {
        struct authd_issuer *iss = &o->v[i]->iss;

        if (iss->busy)
            continue;
        if ((!iss->discovered || !iss->jwks) && now >= iss->retry_at)
            start(o, iss);
        else if (iss->jwks && now - iss->jwks_fetched_at >= JWKS_REFRESH_SECS &&
                 now >= iss->retry_at)
            fetch_jwks(o, iss);
    }
}

bool
authd_oidc_ready(struct authd_oidc *o, const struct authd_config *cfg)
{
    for (size_t h = 0; h < cfg->nhosts; h++) {
        const struct authd_issuer *iss = authd_oidc_issuer(o, cfg->hosts[h]->oidc.issuer_url);
        if (!iss || !iss->discovered || !iss->jwks)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* ID token verification with one JWKS refetch on an unknown kid */

static int
verify_now(const struct authd_issuer *iss, const char *token, const struct authd_jwt_expect *expect,
           json_t **claims, const char **why)
{
    static const struct authd_jwks empty = {0};

    return authd_jwt_verify(iss->jwks ? iss->jwks : &empty, token, expect, claims, why);
}

static void
waiter_free(struct waiter *w)
{
    pc_free_secret(w->token);
    free(w->issuer);
    free(w->client_id);
    free(w->nonce);
    free(w);
}

static void
run_waiters(struct authd_oidc *o, struct reg_entry *e)
{
    struct waiter *w = e->waiters;

    (void)o;
    e->waiters = NULL;
    while (w) {
        struct waiter *next = w->next;
        struct authd_jwt_expect ex = {
            .issuer = w->issuer, .client_id = w->client_id, .nonce = w->nonce, .now = w->now};
        json_t *claims = NULL;
        const char *why = "unknown kid";
        int rc = e->iss.jwks ? verify_now(&e->iss, w->token, &ex, &claims, &why) : PC_ENOTFOUND;

        w->done(w->ud, rc, claims, why);
        waiter_free(w);
        w = next;
    }
}

int
authd_oidc_verify(struct authd_oidc *o, const char *issuer_url, const char *token,
                  const struct authd_jwt_expect *expect, authd_verify_done_fn done, void *ud)
{
    struct reg_entry *e = find(o, issuer_url);
    json_t *claims = NULL;
    const char *why = "unknown issuer";
    int64_t now = authd_now();
    int rc;

    if (!e) {
        done(ud, PC_ENOTFOUND, NULL, why);
        return 0;
    }
    rc = verify_now(&e->iss, token, expect, &claims, &why);
    if (rc != PC_ENOTFOUND || !e->iss.discovered ||
        (!e->iss.busy && now - e->iss.jwks_refetch_at < JWKS_REFETCH_MIN_SECS)) {
        done(ud, rc, claims, why);
        return 0;
    }
    struct waiter *w = pc_xcalloc(1, sizeof(*w));
    w->token = pc_xstrdup(token);
    w->issuer = pc_xstrdup(expect->issuer);
    w->client_id = expect->client_id ? pc_xstrdup(expect->client_id) : NULL;
    w->nonce = expect->nonce ? pc_xstrdup(expect->nonce) : NULL;
    w->now = expect->now;
    w->done = done;
    w->ud = ud;
    w->next = e->waiters;
    e->waiters = w;
    if (!e->iss.busy) {
        e->iss.jwks_refetch_at = now;
        if (fetch_jwks(o, &e->iss)) {
            run_waiters(o, e); /* refused: they fail now rather than wait for nothing */
            return 0;
        }
    }
    return 1;
}

void
authd_oidc_jwks_refetch(struct authd_oidc *o, const char *issuer_url)
{
    struct reg_entry *e = find(o, issuer_url);
    int64_t now = authd_now();

    if (!e || !e->iss.discovered || e->iss.busy ||
        now - e->iss.jwks_refetch_at < JWKS_REFETCH_MIN_SECS)
        return;
    e->iss.jwks_refetch_at = now;
    fetch_jwks(o, &e->iss);
}

/* ------------------------------------------------------------------------------------------ */
/* token endpoint */

static void
token_done(struct http_job *j)
{
    json_t *body = body_json(j);
    int rc = 0;

    if (j->rc)
        rc = j->rc;
    else if (j->resp.status < 200 || j->resp.status >= 300)
        rc = PC_EAUTH;
    else if (!body)
        rc = PC_EPARSE;
    j->token_done(j->ud, rc, j->resp.status, body, j->rc ? j->resp.error : NULL);
    json_decref(body);
}

static void
form_add(struct pc_buf *b, const char *k, const char *v)
{
    char *e;

    if (!v)
        return;
    e = pc_url_encode(v);
    pc_buf_appendf(b, "%s%s=%s", b->len ? "&" : "", k, e);
    pc_free_secret(e);
}

int
authd_oidc_token(struct authd_oidc *o, const struct authd_token_opts *opts)
{
    const struct authd_host *host = opts->host;
    const struct authd_issuer *iss = opts->issuer;
    struct pc_buf form;
    struct http_job *j;

    if (!iss || !iss->token_endpoint)
        return PC_ENOTFOUND;
    pc_buf_init(&form, 64 * 1024);
    form.secret = true;
    form_add(&form, "grant_type", opts->grant_type);
    form_add(&form, "code", opts->code);
    form_add(&form, "redirect_uri", opts->redirect_uri);
    form_add(&form, "code_verifier", opts->code_verifier);
    form_add(&form, "refresh_token", opts->refresh_token);
    j = http_job_new(o, iss->url, opts->kind, iss->token_endpoint, opts->timeout_ms);
    if (host->oidc.client_secret && iss->token_auth_basic) {
        /* RFC 6749 2.3.1: form-encode the credentials before Basic. */
        j->user = pc_url_encode(host->oidc.client_id);
        j->password = pc_url_encode(host->oidc.client_secret);
    } else {
        form_add(&form, "client_id", host->oidc.client_id);
        form_add(&form, "client_secret", host->oidc.client_secret);
    }
    j->body = pc_buf_detach(&form);
    j->cb = token_done;
    j->token_done = opts->done;
    j->ud = opts->ud;
    return submit(o, j);
}
