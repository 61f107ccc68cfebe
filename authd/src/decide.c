/*
 * decide.c - the decision engine shared by every front door: request + host policy + session
 * or bearer identity in, verdict + headers out. No I/O.
 */
#include "authd.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portcullis/buf.h"

/* ---- paths ---- */

static size_t
path_len(const char *path)
{
    return strcspn(path, "?#");
}

/*
 * Dot segments, encoded dots/slashes/backslashes, doubled slashes, path parameters (Tomcat and
 * Jetty resolve "/public/..;/admin" to "/admin") and double encoding ("%252e" is "." to an
 * upstream that decodes twice) could make a skip prefix cover a path the upstream resolves
 * elsewhere; such paths never skip.
 */
static bool
is_ambiguous(const char *path, size_t n)
{
    static const char *const bad[] = {"/./", "/../", "//",  "\\",  ";",   "%2e", "%2E", "%2f",
                                      "%2F", "%5c",  "%5C", "%00", "%25", "%3b", "%3B", NULL};
    char tmp[AUTHD_MAX_REDIRECT * 4 + 2];

    if (n + 2 > sizeof(tmp))
        return true;
    memcpy(tmp, path, n);
    tmp[n] = '/'; /* so "/a/.." ends like "/a/../" */
    tmp[n + 1] = '\0';
    for (size_t i = 0; bad[i] != NULL; i++)
        if (strstr(tmp, bad[i]) != NULL)
            return true;
    return false;
}

static bool
entry_matches(const char *e, const char *path, size_t n)
{
    size_t elen = strlen(e);

    if (elen > 0 && e[elen - 1] == '*')
        return n >= elen - 1 && strncmp(path, e, elen - 1) == 0;
    if (elen > 0 && e[elen - 1] == '/')
        return n >= elen && strncmp(path, e, elen) == 0;
    return n == elen && strncmp(path, e, n) == 0;
}

bool
authd_path_matches(const struct authd_strlist *list, const char *path)
{
    size_t n;

    if (list == NULL || path == NULL)
        return false;
    n = path_len(path);
    for (size_t i = 0; i < list->n; i++)
        if (entry_matches(list->v[i], path, n))
            return true;
    return false;
}

static bool
path_is(const char *want, const char *path)
{
    size_t n = path_len(path);

    return want != NULL && strlen(want) == n && strncmp(want, path, n) == 0;
}

const char *
authd_envoy_original_path(const char *prefix, const char *path)
{
    size_t plen;

    if (prefix == NULL || path == NULL)
        return NULL;
    plen = strlen(prefix);
    if (plen == 1 && prefix[0] == '/')
        return path[0] == '/' ? path : NULL;
    if (strncmp(path, prefix, plen) != 0)
        return NULL;
    if (path[plen] == '/')
        return path + plen;
    if (path[plen] == '\0' || path[plen] == '?')
        return "/";
    return NULL;
}

/* ---- identity ---- */

/*
 * Claim values become header values. Control characters would split or end a header, and
 * bytes over 0x7e reach applications that decode them as Latin-1, UTF-8 or not at all (and,
 * unchecked, as invalid UTF-8): all of them, and "%" itself so the result stays unambiguous,
 * are percent-encoded. So is a space that starts or ends the value (HTTP drops it) and, in a
 * list (groups), a "," inside an item, which would otherwise split it in two. Printable ASCII
 * without those (nearly every claim) is unchanged.
 */
static bool
must_encode(const unsigned char *s, size_t i, size_t n, bool list_item)
{
    return s[i] < 0x20 || s[i] > 0x7e || s[i] == '%' || (list_item && s[i] == ',') ||
           (s[i] == ' ' && (i == 0 || i == n - 1));
}

static void
append_encoded(struct pc_buf *b, const char *s, bool list_item)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), run = 0;

    for (size_t i = 0; i < n; i++) {
        char pct[3] = {'%', hex[u[i] >> 4], hex[u[i] & 15]};

        if (!must_encode(u, i, n, list_item))
            continue;
        pc_buf_append(b, s + run, i - run);
        pc_buf_append(b, pct, 3);
        run = i + 1;
    }
    pc_buf_append(b, s + run, n - run);
}

static char *
encoded(const char *s)
{
    struct pc_buf b;

    pc_buf_init(&b, 0);
    append_encoded(&b, s != NULL ? s : "", false);
    return pc_buf_detach(&b);
}

/* The items, each encoded as a list item (its "," too), joined with ",". */
static char *
encoded_list(const struct authd_strlist *l)
{
    struct pc_buf b;

    pc_buf_init(&b, 0);
    for (size_t i = 0; i < l->n; i++) {
        if (i > 0)
            pc_buf_append(&b, ",", 1);
        append_encoded(&b, l->v[i], true);
    }
    return pc_buf_detach(&b);
}

char *
authd_identity_claim(const struct authd_identity *id, const char *claim)
{
    if (id == NULL || claim == NULL)
        return pc_xstrdup("");
    if (strcmp(claim, "sub") == 0)
        return encoded(id->sub);
    if (strcmp(claim, "email") == 0)
        return encoded(id->email);
    if (strcmp(claim, "preferred_username") == 0)
        return encoded(id->preferred_username);
    if (strcmp(claim, "groups") == 0)
        return encoded_list(&id->groups);
    for (size_t i = 0; i < id->nextra; i++)
        if (strcmp(id->extra[i].name, claim) == 0)
            return id->extra[i].value ? encoded(id->extra[i].value)
                                      : encoded_list(&id->extra[i].items);
    return pc_xstrdup("");
}

/* ---- access ---- */

static bool
email_domain_in(const struct authd_strlist *domains, const char *email)
{
    const char *at = email ? strrchr(email, '@') : NULL;

    if (at == NULL || at == email)
        return false;
    for (size_t i = 0; i < domains->n; i++)
        if (strcasecmp(at + 1, domains->v[i]) == 0)
            return true;
    return false;
}

static bool
email_in(const struct authd_strlist *emails, const char *email)
{
    for (size_t i = 0; email != NULL && i < emails->n; i++)
        if (strcasecmp(email, emails->v[i]) == 0)
            return true;
    return false;
}

static bool
group_in(const struct authd_strlist *allowed, const struct authd_strlist *groups)
{
    for (size_t i = 0; i < groups->n; i++)
        if (authd_strlist_contains(allowed, groups->v[i]))
            return true;
    return false;
}

const char *
authd_identity_email(const struct authd_host *host, const struct authd_identity *id)
{
    if (id == NULL || id->email == NULL)
        return NULL;
    return id->email_verified || host->access.allow_unverified_email ? id->email : NULL;
}

static bool
has_email_rules(const struct authd_host *host)
{
    return host->access.email_domains.n > 0 || host->access.emails.n > 0;
}

bool
authd_access_allows(const struct authd_host *host, const struct authd_identity *id,
                    const char **why)
{
    const char *dummy, *email;

    why = why ? why : &dummy;
    *why = "allowed";
    if (host->access.groups.n == 0 && host->access.email_domains.n == 0 &&
        host->access.emails.n == 0)
        return true;
    if (host->access.groups.n > 0 && group_in(&host->access.groups, &id->groups))
        return true;
    email = authd_identity_email(host, id);
    if (host->access.email_domains.n > 0 && email_domain_in(&host->access.email_domains, email))
        return true;
    if (host->access.emails.n > 0 && email_in(&host->access.emails, email))
        return true;
    *why = email == NULL && id->email != NULL && has_email_rules(host) ? "email-unverified"
                                                                       : "forbidden";
    return false;
}

/* ---- request classification ---- */

static bool
contains_ci(const char *hay, const char *needle)
{
    return hay != NULL && strcasestr(hay, needle) != NULL;
}

bool
authd_wants_json(const char *accept, const char *x_requested_with)
{
    return (contains_ci(accept, "application/json") && !contains_ci(accept, "text/html")) ||
           (x_requested_with && strcasecmp(x_requested_with, "XMLHttpRequest") == 0);
}

static bool
wants_json(const struct authd_request *r)
{
    return authd_wants_json(r->accept, r->x_requested_with);
}

/* True when a missing login must be answered 401 rather than a redirect to the IdP. */
static bool
wants_401(const struct authd_request *r, const struct authd_host *host)
{
    if (r->door == AUTHD_DOOR_NGINX || wants_json(r))
        return true;
    if (r->path != NULL && authd_path_matches(&host->paths.api, r->path))
        return true;
    if (r->sec_fetch_mode != NULL && r->sec_fetch_mode[0] != '\0' &&
        strcasecmp(r->sec_fetch_mode, "navigate") != 0)
        return true;
    return r->method != NULL && strcasecmp(r->method, "GET") != 0 &&
           strcasecmp(r->method, "HEAD") != 0;
}

char *
authd_bearer_from_header(const char *authorization)
{
    const char *p;
    size_t n;

    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    p = authorization + 7;
    while (*p == ' ')
        p++;
    n = strcspn(p, " \t");
    if (n == 0 || n > AUTHD_MAX_TOKEN || p[n] != '\0')
        return NULL;
    return pc_xstrndup(p, n);
}

/* ---- output ---- */

static void
add_header(struct authd_decision *d, const char *name, char *value)
{
    d->headers = pc_xrealloc(d->headers, (d->nheaders + 1) * sizeof(*d->headers));
    d->headers[d->nheaders].name = pc_xstrdup(name);
    d->headers[d->nheaders++].value = value;
}

/*
 * Every configured identity header is set, empty when unknown, so a client can never smuggle
 * one through; the Cookie header goes upstream without authd's cookies.
 */
static void
identity_headers(struct authd_decision *d, const struct authd_decide_input *in,
                 const struct authd_identity *id)
{
    const struct authd_host *h = in->host;
    char *cookie;

    for (size_t i = 0; i < h->nupstream_headers; i++) {
        const char *claim = h->upstream_headers[i].claim;
        /* An app that picks its user by email must never see one the IdP did not verify. */
        bool hide =
            id != NULL && strcmp(claim, "email") == 0 && authd_identity_email(h, id) == NULL;

        add_header(d, h->upstream_headers[i].name,
                   hide ? pc_xstrdup("") : authd_identity_claim(id, claim));
    }
    if (h->pass_id_token && id != NULL && in->session_rc == 0 && in->session != NULL &&
        id == &in->session->id && in->session->id_token != NULL)
        add_header(d, "Authorization", pc_xasprintf("Bearer %s", in->session->id_token));
    cookie = authd_cookie_strip(in->req->cookie, h->session.cookie_name);
    add_header(d, "Cookie", cookie ? cookie : pc_xstrdup(""));
}

static int
allow_status(const struct authd_request *r)
{
    return r->door == AUTHD_DOOR_NGINX ? 202 : 200;
}

/* The page for a 401/403 (or its JSON twin); host and request id come from the request. */
static void
set_body(struct authd_decision *d, const struct authd_decide_input *in, enum authd_page kind,
         const struct authd_page_fields *f)
{
    struct authd_page_fields full = *f;
    bool json = wants_json(in->req);
    struct pc_buf b;

    full.host = in->req->host;
    full.request_id = in->request_id;
    pc_buf_init(&b, AUTHD_MAX_PAGE);
    authd_page_render(in->pages, kind, &full, json, &b);
    d->content_type = pc_xstrdup(authd_page_type(json));
    d->body = pc_buf_detach(&b);
}

/* The account a page names: its email (verified or not: it is the user's own), else the
 * username, else the subject. */
static const char *
account_name(const struct authd_identity *id)
{
    return id->email ? id->email : id->preferred_username ? id->preferred_username : id->sub;
}

static void
forbidden_page(struct authd_decision *d, const struct authd_decide_input *in,
               const struct authd_identity *id, const char *why)
{
    bool unverified = strcmp(why, "email-unverified") == 0;

    set_body(d, in, AUTHD_PAGE_FORBIDDEN,
             &(struct authd_page_fields){
                 .status = 403,
                 .error = "forbidden",
                 .title = "Access denied",
                 .message = unverified ? "You are signed in, but your identity provider has not "
                                         "verified your email address, so it cannot give you "
                                         "access to this site."
                                       : "You are signed in, but your account is not allowed to "
                                         "use this site.",
                 .email = account_name(id),
                 .sign_out_url = in->host->oidc.sign_out_path,
             });
}

/* scheme://host[:port]/path of the request, with a safe host and path, for the login's return. */
static char *
original_url(const struct authd_request *r)
{
    const char *proto = r->x_forwarded_proto, *scheme = "https";
    char *url, *ok = NULL;

    if (proto != NULL && strncasecmp(proto, "http", 4) == 0 &&
        (proto[4] == '\0' || proto[4] == ','))
        scheme = "http";
    url = pc_xasprintf("%s://%s%s", scheme, r->host ? r->host : "",
                       r->path && r->path[0] == '/' ? r->path : "/");
    if (authd_redirect_validate(NULL, r->host, url, &ok) != 0)
        ok = NULL;
    free(url);
    return ok;
}

static void
not_authenticated(struct authd_decision *d, const struct authd_decide_input *in)
{
    const struct authd_request *r = in->req;
    bool bearer_bad = in->host->bearer.enabled && in->bearer_rc != PC_ENOTFOUND;

    d->reason = bearer_bad                         ? "invalid-bearer"
                : in->session_rc == PC_EEXPIRED    ? "session-expired"
                : in->session_rc == AUTHD_EREVOKED ? "session-revoked"
                : in->session_rc == PC_EINVAL      ? "session-other-client"
                : in->session_rc == PC_ENOTFOUND   ? "no-session"
                                                   : "session-invalid";
    if (bearer_bad || wants_401(r, in->host)) {
        d->verdict = AUTHD_UNAUTHORIZED;
        d->status = 401;
        d->www_authenticate = pc_xstrdup(bearer_bad ? "Bearer realm=\"portcullis\", "
                                                      "error=\"invalid_token\""
                                                    : "Bearer realm=\"portcullis\"");
        set_body(d, in, AUTHD_PAGE_ERROR,
                 &(struct authd_page_fields){
                     .status = 401,
                     .error = bearer_bad ? "invalid_token" : "unauthorized",
                     .title = "Sign-in required",
                     .message = bearer_bad ? "The bearer token was not accepted: it is invalid, "
                                             "expired, or meant for another audience."
                                           : "You are not signed in, or your session has ended. "
                                             "This address needs a session or a bearer token.",
                 });
        return;
    }
    d->verdict = AUTHD_LOGIN_REDIRECT;
    d->status = 302;
    d->original_url = original_url(r);
    if (d->original_url == NULL)
        d->original_url = pc_xstrdup("/");
}

static const struct authd_identity *
pick_identity(const struct authd_decide_input *in, const char **source)
{
    if (in->host->bearer.enabled && in->bearer_rc != PC_ENOTFOUND) {
        *source = "bearer";
        return in->bearer_rc == 0 ? in->bearer : NULL;
    }
    *source = "session";
    return in->session_rc == 0 && in->session != NULL ? &in->session->id : NULL;
}

static void
decide_host(struct authd_decision *d, const struct authd_decide_input *in)
{
    const struct authd_request *r = in->req;
    const struct authd_identity *id;
    const char *source = NULL, *why = NULL;

    if (authd_path_matches(&in->host->paths.skip, r->path) &&
        !is_ambiguous(r->path, path_len(r->path))) {
        d->verdict = AUTHD_SKIP;
        d->status = allow_status(r);
        d->reason = "skip";
        identity_headers(d, in, NULL);
        return;
    }
    if ((id = pick_identity(in, &source)) == NULL) {
        not_authenticated(d, in);
    } else if (!authd_access_allows(in->host, id, &why)) {
        d->verdict = AUTHD_FORBIDDEN;
        d->status = 403;
        d->reason = why;
        forbidden_page(d, in, id, why);
    } else {
        d->verdict = AUTHD_ALLOW;
        d->status = allow_status(r);
        d->reason = source;
        d->refresh_due = in->session_rc == 0 && in->session != NULL && id == &in->session->id &&
                         authd_session_needs_refresh(in->host, in->session, in->now);
    }
    if (d->verdict == AUTHD_ALLOW || in->host->mode == AUTHD_MODE_REPORT_ONLY)
        identity_headers(d, in, id);
}

/* ReportOnly: the verdict is kept for logs and metrics, the door answers allow. */
static void
apply_report_only(struct authd_decision *d, const struct authd_request *r)
{
    d->report_only = true;
    if (d->verdict == AUTHD_ALLOW || d->verdict == AUTHD_SKIP)
        return;
    d->status = allow_status(r);
    free(d->content_type);
    free(d->body);
    free(d->www_authenticate);
    d->content_type = d->body = d->www_authenticate = NULL;
}

int
authd_decide(const struct authd_decide_input *in, struct authd_decision *out)
{
    const struct authd_request *r = in ? in->req : NULL;

    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return PC_EINVAL;
    if (in->host == NULL) {
        out->verdict = AUTHD_UNKNOWN_HOST;
        out->status = 403;
        out->reason = "unknown-host";
        set_body(out, in, AUTHD_PAGE_ERROR,
                 &(struct authd_page_fields){
                     .status = 403,
                     .error = "unknown_host",
                     .title = "Unknown site",
                     .message = "This gateway has no sign-in policy for this site, so it "
                                "refuses every request to it.",
                 });
        return 0;
    }
    if (r->path == NULL || r->path[0] != '/') {
        out->verdict = AUTHD_FORBIDDEN;
        out->status = 403;
        out->reason = "bad-path";
        set_body(out, in, AUTHD_PAGE_ERROR,
                 &(struct authd_page_fields){
                     .status = 403,
                     .error = "forbidden",
                     .title = "Bad request",
                     .message = "The address of this request is not a valid path.",
                 });
        return 0;
    }
    if (path_is(in->host->oidc.callback_path, r->path) ||
        path_is(in->host->oidc.sign_out_path, r->path)) {
        out->verdict =
            path_is(in->host->oidc.callback_path, r->path) ? AUTHD_CALLBACK : AUTHD_SIGN_OUT;
        out->reason = out->verdict == AUTHD_CALLBACK ? "callback" : "sign-out";
        return 0;
    }
    decide_host(out, in);
    if (in->host->mode == AUTHD_MODE_REPORT_ONLY)
        apply_report_only(out, r);
    return 0;
}

void
authd_decision_release(struct authd_decision *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nheaders; i++) {
        free(d->headers[i].name);
        pc_free_secret(d->headers[i].value);
    }
    free(d->headers);
    free(d->content_type);
    free(d->body);
    free(d->www_authenticate);
    free(d->original_url);
    memset(d, 0, sizeof(*d));
}
