/*
 * k8s_client.c - requests to the Kubernetes API over libcurl.
 *
 * libcurl is used directly rather than through common/http.h for two reasons: the client keeps
 * a small pool of easy handles so requests reuse keep-alive TLS connections (a handshake per
 * request would dominate applying a thousand objects), and watches need curl's progress
 * callback to stop an idle stream within a second.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "portcullis/json.h"

#include "k8s_priv.h"

#define POOL_MAX 4
#define MAX_RESPONSE (64u << 20)
#define TOKEN_RECHECK_SECS 60
#define LIST_PAGE 500

struct k8s_client {
    struct k8s_config cfg; /* deep copy */
    char *component;       /* "portcullis-controller" */
    char *user_agent;      /* "<component>/<version>" */
    pthread_mutex_t lock;  /* guards everything below */
    char *token;           /* current bearer token (secret), NULL when none */
    time_t token_checked;
    struct timespec token_mtime;
    CURL *pool[POOL_MAX];
    int npool;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *
dup_or_null(const char *s)
{
    return s ? pc_xstrdup(s) : NULL;
}

struct k8s_client *
k8s_client_new(const struct k8s_config *cfg, const char *component)
{
    struct k8s_client *c = pc_xcalloc(1, sizeof(*c));

    pthread_once(&curl_once, curl_init_once);
    c->cfg.server = dup_or_null(cfg->server);
    c->cfg.ca_file = dup_or_null(cfg->ca_file);
    c->cfg.ca_pem = dup_or_null(cfg->ca_pem);
    c->cfg.insecure_skip_verify = cfg->insecure_skip_verify;
    c->cfg.token = dup_or_null(cfg->token);
    c->cfg.token_file = dup_or_null(cfg->token_file);
    c->cfg.client_cert_pem = dup_or_null(cfg->client_cert_pem);
    c->cfg.client_key_pem = dup_or_null(cfg->client_key_pem);
    c->cfg.namespace = pc_xstrdup(cfg->namespace ? cfg->namespace : "default");
    c->cfg.sa_dir = dup_or_null(cfg->sa_dir);
    c->token = dup_or_null(cfg->token);
    c->component = pc_xstrdup(component ? component : "portcullis");
    c->user_agent = pc_xasprintf("%s/%s", c->component, PORTCULLIS_VERSION);
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void
k8s_client_free(struct k8s_client *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->npool; i++)
        curl_easy_cleanup(c->pool[i]);
    pc_free_secret(c->token);
    k8s_config_release(&c->cfg);
    free(c->component);
    free(c->user_agent);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const char *
k8s_client_namespace(const struct k8s_client *c)
{
    return c->cfg.namespace;
}

const char *
k8s_client_component(const struct k8s_client *c)
{
    return c->component;
}

/* ---- paths ------------------------------------------------------------------------------ */

char *
k8s_path(const struct k8s_ref *ref)
{
    struct pc_buf b;

    pc_buf_init(&b, 0);
    pc_buf_appendf(&b, "/%s/%s", strchr(ref->api_version, '/') ? "apis" : "api", ref->api_version);
    if (ref->namespace)
        pc_buf_appendf(&b, "/namespaces/%s", ref->namespace);
    pc_buf_appendf(&b, "/%s", ref->plural);
    if (ref->name)
        pc_buf_appendf(&b, "/%s", ref->name);
    if (ref->name && ref->subresource)
        pc_buf_appendf(&b, "/%s", ref->subresource);
    return pc_buf_detach(&b);
}

/* ---- credentials ------------------------------------------------------------------------ */

/*
 * Re-reads the token file when it changed; kubelet rotates projected tokens. Called with the
 * lock held; checks at most every TOKEN_RECHECK_SECS unless force.
 */
static void
token_refresh_locked(struct k8s_client *c, bool force)
{
    struct stat st;
    time_t now = time(NULL);
    char *tok = NULL;

    if (!c->cfg.token_file || (!force && c->token && now - c->token_checked < TOKEN_RECHECK_SECS))
        return;
    c->token_checked = now;
    if (stat(c->cfg.token_file, &st) != 0)
        return; /* keep the old token: a rotation replaces the file atomically */
    if (c->token && st.st_mtim.tv_sec == c->token_mtime.tv_sec &&
        st.st_mtim.tv_nsec == c->token_mtime.tv_nsec)
        return;
    if (k8s_read_file(c->cfg.token_file, &tok, NULL) < 0)
        return;
    for (size_t n = strlen(tok); n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r'); n--)
        tok[n - 1] = '\0';
    pc_free_secret(c->token);
    c->token = tok;
    c->token_mtime = st.st_mtim;
}

/* A new "Authorization: Bearer ..." line (secret), or NULL without a token. */
static char *
auth_header(struct k8s_client *c, bool force_reread)
{
    char *h = NULL;

    pthread_mutex_lock(&c->lock);
    token_refresh_locked(c, force_reread);
    if (c->token && *c->token)
        h = pc_xasprintf("Authorization: Bearer %s", c->token);
    pthread_mutex_unlock(&c->lock);
    return h;
}

/* ---- transport -------------------------------------------------------------------------- */

static CURL *
handle_get(struct k8s_client *c)
{
    CURL *h = NULL;

    pthread_mutex_lock(&c->lock);
    if (c->npool > 0)
        h = c->pool[--c->npool];
    pthread_mutex_unlock(&c->lock);
    if (!h && !(h = curl_easy_init()))
        abort(); /* allocation failure, as pc_xmalloc does */
    return h;
}

static void
handle_put(struct k8s_client *c, CURL *h)
{
    pthread_mutex_lock(&c->lock);
    if (c->npool < POOL_MAX) {
        c->pool[c->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    if (h)
        curl_easy_cleanup(h);
}

struct xfer_state {
    struct k8s_xfer *x;
    CURL *h;
    int cb_rc; /* what on_data returned, when it aborted */
};

static size_t
on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer_state *st = ud;
    size_t n = size * nmemb;

    if (st->x->status == 0)
        curl_easy_getinfo(st->h, CURLINFO_RESPONSE_CODE, &st->x->status);
    /* Error answers are buffered even on streams so their Status can be read. */
    if (st->x->on_data && st->x->status >= 200 && st->x->status < 300) {
        st->cb_rc = st->x->on_data(st->x->ud, p, n);
        return st->cb_rc ? 0 : n;
    }
    return pc_buf_append(&st->x->resp, p, n) == 0 ? n : 0;
}

static int
on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const struct xfer_state *st = ud;

    (void)dt, (void)dn, (void)ut, (void)un;
    return st->x->stop && atomic_load(st->x->stop) ? 1 : 0;
}

static void
set_tls(const struct k8s_client *c, CURL *h)
{
    if (c->cfg.ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_file);
    if (c->cfg.ca_pem) {
        struct curl_blob ca = {c->cfg.ca_pem, strlen(c->cfg.ca_pem), CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
    }
    if (c->cfg.client_cert_pem && c->cfg.client_key_pem) {
        struct curl_blob crt = {c->cfg.client_cert_pem, strlen(c->cfg.client_cert_pem),
                                CURL_BLOB_COPY};
        struct curl_blob key = {c->cfg.client_key_pem, strlen(c->cfg.client_key_pem),
                                CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &crt);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (c->cfg.insecure_skip_verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

static struct curl_slist *
build_headers(struct k8s_client *c, const struct k8s_xfer *x, bool reread)
{
    struct curl_slist *hs = NULL;
    char ct[160];
    char *auth = auth_header(c, reread);

    snprintf(ct, sizeof(ct), "Accept: %s", x->accept ? x->accept : "application/json");
    hs = curl_slist_append(hs, ct);
    if (x->body) {
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 x->content_type ? x->content_type : "application/json");
        hs = curl_slist_append(hs, ct);
    }
    if (auth)
        hs = curl_slist_append(hs, auth);
    pc_free_secret(auth);
    if (!hs)
        abort();
    return hs;
}

/* Frees a header list after wiping its lines, one of which holds the token. */
static void
free_headers(struct curl_slist *hs)
{
    for (struct curl_slist *l = hs; l; l = l->next)
        pc_cleanse(l->data, strlen(l->data));
    curl_slist_free_all(hs);
}

static void
set_request(struct k8s_client *c, CURL *h, const struct k8s_xfer *x, char *url)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, x->method ? x->method : "GET");
    if (x->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, x->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    }
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    if (x->low_speed_secs > 0) {
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, x->low_speed_secs);
    }
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    set_tls(c, h);
}

static int
xfer_once(struct k8s_client *c, CURL *h, struct k8s_xfer *x, bool reread, struct pc_diag *diag)
{
    struct xfer_state st = {.x = x, .h = h};
    char *url = pc_xasprintf("%s%s", c->cfg.server, x->path);
    struct curl_slist *hs = build_headers(c, x, reread);
    CURLcode cc;
    int rc = 0;

    curl_easy_reset(h);
    set_request(c, h, x, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &st);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &st);
    x->status = 0;
    pc_buf_reset(&x->resp);
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x->status);
    if (cc == CURLE_WRITE_ERROR && st.cb_rc)
        rc = st.cb_rc;
    else if (cc == CURLE_WRITE_ERROR)
        rc = PC_ETOOBIG;
    else if (cc == CURLE_ABORTED_BY_CALLBACK)
        rc = -ECANCELED;
    else if (cc != CURLE_OK)
        rc = PC_EIO;
    if (rc < 0 && rc != st.cb_rc)
        pc_diag_set(diag, 0, 0, "%s '%s' failed: %s", x->method ? x->method : "GET", x->path,
                    rc == PC_ETOOBIG ? "response too big" : curl_easy_strerror(cc));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    free_headers(hs);
    free(url);
    return rc;
}

int
k8s_xfer_do(struct k8s_client *c, struct k8s_xfer *x, struct pc_diag *diag)
{
    CURL *h = handle_get(c);
    int rc;

    if (x->resp.max == 0)
        pc_buf_init(&x->resp, MAX_RESPONSE);
    rc = xfer_once(c, h, x, false, diag);
    /* A rotated token shows up as 401 before the next periodic check: re-read and retry. */
    if (rc == 0 && x->status == 401 && c->cfg.token_file && !x->on_data)
        rc = xfer_once(c, h, x, true, diag);
    handle_put(c, h);
    return rc;
}

/* ---- Status errors ---------------------------------------------------------------------- */

static int
code_for_status(long s)
{
    switch (s) {
    case 404:
        return K8S_ENOTFOUND;
    case 409:
        return K8S_ECONFLICT;
    case 410:
        return K8S_EGONE;
    case 400:
    case 422:
        return K8S_EINVALID;
    case 401:
    case 403:
        return K8S_EFORBIDDEN;
    default:
        return K8S_EHTTP;
    }
}

/* Writes at most 200 bytes of a non-JSON body into msg, printable ASCII only. */
static void
body_excerpt(const char *body, size_t len, char *out, size_t outlen)
{
    size_t i, n = len < 200 ? len : 200;

    if (n >= outlen)
        n = outlen - 1;
    for (i = 0; i < n; i++)
        out[i] = body[i] >= 0x20 && body[i] < 0x7f ? body[i] : ' ';
    out[i] = '\0';
}

int
k8s_status_json(long http_status, const json_t *st, struct pc_diag *diag)
{
    const char *msg = pc_json_str(st, "message");
    const char *reason = pc_json_str(st, "reason");

    if (http_status == 0)
        http_status = (long)json_integer_value(json_object_get(st, "code"));
    pc_diag_set(diag, 0, 0, "%s (HTTP %ld%s%s)", msg && *msg ? msg : "no message", http_status,
                reason ? " " : "", reason ? reason : "");
    return code_for_status(http_status);
}

int
k8s_status_error(long http_status, const char *body, size_t len, struct pc_diag *diag)
{
    json_t *j = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    char ex[208];
    int rc;

    if (pc_json_str(j, "message")) {
        rc = k8s_status_json(http_status, j, diag);
        json_decref(j);
        return rc;
    }
    json_decref(j);
    body_excerpt(body ? body : "", body ? len : 0, ex, sizeof(ex));
    pc_diag_set(diag, 0, 0, "HTTP %ld%s%s", http_status, ex[0] ? ": " : "", ex);
    return code_for_status(http_status);
}

/* ---- requests --------------------------------------------------------------------------- */

int
k8s_request(struct k8s_client *c, const struct k8s_request *req, json_t **out, struct pc_diag *diag)
{
    char *path = k8s_path(req->ref), *body = NULL;
    struct k8s_xfer x = {.method = req->method,
                         .content_type = req->content_type,
                         .timeout_ms = req->timeout_ms ? req->timeout_ms : 30000,
                         .stop = req->stop};
    bool one = req->ref->name != NULL && req->ref->name[0] != '\0';
    json_error_t jerr;
    int rc;

    if (out)
        *out = NULL;
    if (req->ref->metadata_only)
        x.accept = one ? K8S_ACCEPT_METADATA : K8S_ACCEPT_METADATA_LIST;
    x.path = req->query ? pc_xasprintf("%s?%s", path, req->query) : pc_xstrdup(path);
    if (req->body) {
        if (!(body = json_dumps(req->body, JSON_COMPACT)))
            abort();
        x.body = body;
        x.body_len = strlen(body);
    }
    if ((rc = k8s_xfer_do(c, &x, diag)) < 0)
        goto out;
    if (x.status < 200 || x.status > 299) {
        rc = k8s_status_error(x.status, x.resp.data, x.resp.len, diag);
        goto out;
    }
    if (out && !(*out = json_loadb(pc_buf_str(&x.resp), x.resp.len, 0, &jerr))) {
        pc_diag_set(diag, 0, 0, "%s '%s': bad JSON answer: %s", x.method, path, jerr.text);
        rc = PC_EPARSE;
    }
out:
    pc_buf_release(&x.resp);
    free((char *)x.path);
    free(path);
    free(body);
    return rc;
}

int
k8s_get(struct k8s_client *c, const struct k8s_ref *ref, json_t **out, struct pc_diag *diag)
{
    return k8s_request(c, &(struct k8s_request){.method = "GET", .ref = ref}, out, diag);
}

/* ref with name and namespace filled in from obj's metadata where ref leaves them NULL. */
static struct k8s_ref
ref_from_obj(const struct k8s_ref *ref, const json_t *obj, bool with_name)
{
    struct k8s_ref r = *ref;
    const json_t *md = json_object_get(obj, "metadata");

    if (!r.namespace)
        r.namespace = json_string_value(json_object_get(md, "namespace"));
    if (with_name && !r.name)
        r.name = json_string_value(json_object_get(md, "name"));
    if (!with_name)
        r.name = NULL;
    return r;
}

static int
need_name(const struct k8s_ref *r, struct pc_diag *diag)
{
    if (r->name && *r->name)
        return 0;
    pc_diag_set(diag, 0, 0, "missing object name for '%s'", r->plural);
    return PC_EINVAL;
}

int
k8s_create(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj, struct pc_diag *diag)
{
    struct k8s_ref r = ref_from_obj(ref, obj, false);

    return k8s_request(c, &(struct k8s_request){.method = "POST", .ref = &r, .body = obj}, NULL,
                       diag);
}

static int apply(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj,
                 const struct k8s_apply_opts *o, json_t **out, struct pc_diag *diag);

int
k8s_apply(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj, struct pc_diag *diag)
{
    return k8s_apply_out(c, ref, obj, NULL, diag);
}

int
k8s_apply_out(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj, json_t **out,
              struct pc_diag *diag)
{
    return apply(c, ref, obj, &(struct k8s_apply_opts){.manager = "portcullis", .force = true}, out,
                 diag);
}

int
k8s_apply_as(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj,
             const struct k8s_apply_opts *o, struct pc_diag *diag)
{
    return apply(c, ref, obj, o, NULL, diag);
}

static int
apply(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj,
      const struct k8s_apply_opts *o, json_t **out, struct pc_diag *diag)
{
    struct k8s_ref r = ref_from_obj(ref, obj, true);
    char query[160];

    if (need_name(&r, diag) < 0)
        return PC_EINVAL;
    /* Field manager names are the caller's constants; a bad one is a bug, not input. */
    if (strspn(o->manager, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(o->manager) ||
        strlen(o->manager) > 128) {
        pc_diag_set(diag, 0, 0, "bad field manager '%s'", o->manager);
        return PC_EINVAL;
    }
    snprintf(query, sizeof(query), "fieldManager=%s%s", o->manager, o->force ? "&force=true" : "");
    return k8s_request(c,
                       &(struct k8s_request){.method = "PATCH",
                                             .ref = &r,
                                             .query = query,
                                             .body = obj,
                                             .content_type = "application/apply-patch+yaml"},
                       out, diag);
}

int
k8s_update(struct k8s_client *c, const struct k8s_ref *ref, const json_t *obj, struct pc_diag *diag)
{
    struct k8s_ref r = ref_from_obj(ref, obj, true);

    if (need_name(&r, diag) < 0)
        return PC_EINVAL;
    return k8s_request(
        c,
        &(struct k8s_request){
            .method = "PUT", .ref = &r, .query = "fieldManager=portcullis", .body = obj},
        NULL, diag);
}

int
k8s_merge_patch(struct k8s_client *c, const struct k8s_ref *ref, const json_t *patch,
                struct pc_diag *diag)
{
    if (need_name(ref, diag) < 0)
        return PC_EINVAL;
    return k8s_request(c,
                       &(struct k8s_request){.method = "PATCH",
                                             .ref = ref,
                                             .query = "fieldManager=portcullis",
                                             .body = patch,
                                             .content_type = "application/merge-patch+json"},
                       NULL, diag);
}

int
k8s_delete(struct k8s_client *c, const struct k8s_ref *ref, struct pc_diag *diag)
{
    if (need_name(ref, diag) < 0)
        return PC_EINVAL;
    return k8s_request(c, &(struct k8s_request){.method = "DELETE", .ref = ref}, NULL, diag);
}

/* ---- lists ------------------------------------------------------------------------------ */

void
k8s_list_release(struct k8s_list *l)
{
    json_decref(l->items);
    free(l->resource_version);
    l->items = NULL;
    l->resource_version = NULL;
}

/* A list's items carry no apiVersion/kind; give them the list's (kind minus "List"). */
static void
tag_items(json_t *page, json_t *items)
{
    const char *av = json_string_value(json_object_get(page, "apiVersion"));
    const char *kind = json_string_value(json_object_get(page, "kind"));
    size_t i, klen = kind ? strlen(kind) : 0;
    json_t *it;

    if (klen > 4 && strcmp(kind + klen - 4, "List") == 0)
        klen -= 4;
    json_array_foreach(items, i, it)
    {
        if (av && !json_object_get(it, "apiVersion"))
            json_object_set_new(it, "apiVersion", json_string(av));
        if (kind && !json_object_get(it, "kind"))
            json_object_set_new(it, "kind", json_stringn(kind, klen));
    }
}

/* Appends "&name=<encoded value>" when value is set. */
static void
append_param(struct pc_buf *b, const char *name, const char *value)
{
    char *e;

    if (!value || !*value)
        return;
    e = curl_easy_escape(NULL, value, 0);
    pc_buf_appendf(b, "&%s=%s", name, e);
    curl_free(e);
}

/* The query of one page: limit, continue token and selectors, URL-encoded. */
static char *
page_query(const struct k8s_ref *ref, int limit, const char *cont)
{
    struct pc_buf b;

    pc_buf_init(&b, 0);
    pc_buf_appendf(&b, "limit=%d", limit);
    append_param(&b, "continue", cont);
    append_param(&b, "labelSelector", ref->label_selector);
    append_param(&b, "fieldSelector", ref->field_selector);
    return pc_buf_detach(&b);
}

int
k8s_list_pages(struct k8s_client *c, struct k8s_pages *p, struct pc_diag *diag)
{
    struct k8s_ref r = *p->ref;
    json_t *page = NULL;
    char *cont = NULL, *q;
    int rc;

    r.name = NULL;
    p->resource_version = NULL;
    do {
        q = page_query(&r, p->page_size > 0 ? p->page_size : LIST_PAGE, cont);
        rc = k8s_request(c, &(struct k8s_request){.method = "GET", .ref = &r, .query = q}, &page,
                         diag);
        free(q);
        free(cont);
        cont = NULL;
        if (rc < 0)
            break;
        json_t *md = json_object_get(page, "metadata"), *items = json_object_get(page, "items");
        tag_items(page, items);
        free(p->resource_version);
        p->resource_version = dup_or_null(pc_json_str(md, "resourceVersion"));
        cont = dup_or_null(pc_json_str(md, "continue"));
        rc = p->fn(p->ud, items);
        json_decref(page);
        page = NULL;
    } while (rc == 0 && cont && *cont);
    free(cont);
    return rc;
}

static int
collect_page(void *ud, json_t *items)
{
    /* An empty PartialObjectMetadataList has "items": null. */
    if (!json_is_array(items))
        return 0;
    return json_array_extend(ud, items) == 0 ? 0 : PC_EINVAL;
}

int
k8s_list(struct k8s_client *c, const struct k8s_ref *ref, struct k8s_list *out,
         struct pc_diag *diag)
{
    struct k8s_pages p = {.ref = ref, .fn = collect_page};
    int rc;

    p.ud = out->items = json_array();
    rc = k8s_list_pages(c, &p, diag);
    out->resource_version = p.resource_version;
    return rc;
}

/* ---- stopping threads ------------------------------------------------------------------- */

void
k8s_stop_init(struct k8s_stop *s)
{
    atomic_init(&s->flag, false);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

void
k8s_stop_release(struct k8s_stop *s)
{
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
}

void
k8s_stop_raise(struct k8s_stop *s)
{
    pthread_mutex_lock(&s->lock);
    atomic_store(&s->flag, true);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void
k8s_stop_nap(struct k8s_stop *s, long ms)
{
    k8s_stop_nap_until(s, ms, NULL, NULL);
}

void
k8s_stop_wake(struct k8s_stop *s)
{
    pthread_cond_broadcast(&s->cond);
}

void
k8s_stop_nap_until(struct k8s_stop *s, long ms, bool (*ready)(void *ud), void *ud)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    while (!atomic_load(&s->flag) && !(ready && ready(ud)))
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&s->lock);
}
