/*
 * server.c - the libwebsockets side: one context, one service thread, two vhosts (the auth
 * port and the admin port), request reading, reply writing and deferred replies.
 *
 * Debian's libwebsockets 4.1.6 has no SMP, so everything here runs on the single service
 * thread. Synchronous replies are built in srv->scratch (reused, so the check path allocates
 * nothing here) and written with one lws_write: status line, headers and body in one segment,
 * which avoids a Nagle/delayed-ACK stall between a header write and a body write.
 *
 * The auth port is a raw-socket vhost with authd's own HTTP/1.1 request parser (http1.c): lws
 * hands its HTTP callbacks the path already percent-decoded, dot-segment-resolved and cut at
 * ";" or "&", so "/admin/..%2fpublic/x" would be decided as "/public/x" while the upstream
 * serves "/admin/...". Decisions must see the target exactly as the proxy sent it. Keep-alive,
 * bodies (skipped), deferred replies and timeouts are handled here; lws only moves bytes.
 *
 * The admin port keeps lws's HTTP server: its paths are fixed strings, nothing is decided there.
 * lws hands that path decoded and normalised, and the query as decoded "k=v" fragments, which
 * read_request re-encodes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <libwebsockets.h>

#include "authd.h"
#include "redis_lws.h"
#include "portcullis/log.h"

#define ARENA_SIZE (160 * 1024)
#define MAX_HEADER_DATA 32768
#define OUT_SIZE (64 * 1024)
#define DEFER_TIMEOUT_SECS 30
#define DRAIN_SECS 10
#define HEAD_TIMEOUT_SECS 15       /* a request head must arrive within this */
#define KEEPALIVE_SECS 300         /* idle keep-alive: longer than proxies' pools expect */
#define MAX_SKIPPED_BODY (1 << 20) /* larger bodies close the connection instead */

struct server_priv {
    struct authd_server pub;
    struct ev_loop *loop; /* epoll through libev; NULL: libwebsockets' own poll() loop */
    struct lws_vhost *auth_vh, *admin_vh;
    lws_sorted_usec_list_t tick;
    int pending; /* deferred replies not yet written or abandoned */
};

/* Per-connection state (lws allocates it, zeroed, for each wsi). */
struct conn {
    struct authd_pending *pending;
    /* auth port (raw socket) only */
    struct pc_buf in;             /* bytes received and not yet parsed */
    struct authd_http1_scan scan; /* how far the head at the front of in was searched */
    int64_t discard;              /* request body bytes still to skip */
    bool busy;                    /* a deferred reply is in flight: parsing waits */
    bool close_after;             /* close once the current reply is written */
    bool closing;                 /* the last reply is written: close when writeable */
};

struct authd_pending {
    struct server_priv *sp;
    struct lws *wsi; /* NULL once the connection closed */
    struct authd_reply reply;
    bool head;
    bool ready;
    int refs; /* the connection and the work each hold one */
};

/* The request being read: a bump arena of NUL-terminated strings. */
struct arena {
    char *p;
    size_t used, cap;
};

static char arena_mem[ARENA_SIZE];
static unsigned char out_mem[LWS_PRE + OUT_SIZE];

int64_t
authd_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

int64_t
authd_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------------------------------ */
/* replies */

void
authd_reply_init(struct authd_reply *r)
{
    memset(r, 0, sizeof(*r));
    pc_buf_init(&r->headers, 48 * 1024);
    pc_buf_init(&r->body, 64 * 1024);
    r->status = 500;
}

void
authd_reply_reset(struct authd_reply *r)
{
    pc_buf_reset(&r->headers);
    pc_buf_reset(&r->body);
    r->status = 500;
    r->content_type[0] = '\0';
    r->close = false;
    r->plain_http = false;
    memset(&r->page, 0, sizeof(r->page));
}

void
authd_reply_release(struct authd_reply *r)
{
    pc_buf_release(&r->headers);
    pc_buf_release(&r->body);
}

int
authd_reply_header(struct authd_reply *r, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    int rc;

    if (memchr(name, '\r', nl) || memchr(name, '\n', nl) || memchr(name, ':', nl) ||
        memchr(value, '\r', vl) || memchr(value, '\n', vl))
        return PC_EINVAL;
    if (r->plain_http && strcasecmp(name, "Set-Cookie") == 0) {
        const char *secure = strstr(value, "; Secure");
        if (secure != NULL) {
            rc = pc_buf_appendf(&r->headers, "Set-Cookie: %.*s%s\r\n", (int)(secure - value), value,
                                secure + strlen("; Secure"));
            return rc;
        }
    }
    /* Plain appends: this runs for every identity header of every allowed check. */
    rc = pc_buf_append(&r->headers, name, nl);
    rc = rc ? rc : pc_buf_append(&r->headers, ": ", 2);
    rc = rc ? rc : pc_buf_append(&r->headers, value, vl);
    return rc ? rc : pc_buf_append(&r->headers, "\r\n", 2);
}

void
authd_reply_type(struct authd_reply *r, const char *type)
{
    snprintf(r->content_type, sizeof(r->content_type), "%s", type ? type : "");
}

void
authd_reply_render(struct authd_reply *r, enum authd_page kind, const struct authd_page_fields *f)
{
    struct authd_page_fields full = *f;

    if (!full.request_id && r->page.request_id[0])
        full.request_id = r->page.request_id;
    if (!full.host && r->page.host[0])
        full.host = r->page.host;
    r->status = f->status;
    authd_reply_type(r, authd_page_type(r->page.json));
    authd_page_render(r->page.pages, kind, &full, r->page.json, &r->body);
    authd_reply_header(r, "Cache-Control", "no-store");
}

void
authd_reply_page(struct authd_reply *r, int status, const char *title, const char *msg)
{
    authd_reply_render(r, AUTHD_PAGE_ERROR,
                       &(struct authd_page_fields){.status = status,
                                                   .error = authd_page_error_code(status),
                                                   .title = title,
                                                   .message = msg});
}

void
authd_reply_json(struct authd_reply *r, int status, const char *json)
{
    r->status = status;
    authd_reply_type(r, "application/json");
    pc_buf_reset(&r->body);
    pc_buf_appends(&r->body, json);
}

/* Appends s to p (bounded by end); false when it does not fit. */
static bool
put(unsigned char **p, unsigned char *end, const char *s, size_t n)
{
    if ((size_t)(end - *p) < n)
        return false;
    memcpy(*p, s, n);
    *p += n;
    return true;
}

static bool
build_head(struct lws *wsi, const struct authd_reply *r, unsigned char **p, unsigned char *end)
{
    char num[24];
    int n;

    if (lws_add_http_header_status(wsi, (unsigned int)r->status, p, end))
        return false;
    if (r->headers.len && !put(p, end, r->headers.data, r->headers.len))
        return false;
    if (r->content_type[0] &&
        !(put(p, end, "content-type: ", 14) &&
          put(p, end, r->content_type, strlen(r->content_type)) && put(p, end, "\r\n", 2)))
        return false;
    n = snprintf(num, sizeof(num), "%zu\r\n", r->body.len);
    if (!put(p, end, "content-length: ", 16) || !put(p, end, num, (size_t)n))
        return false;
    if (r->close && !put(p, end, "connection: close\r\n", 19))
        return false;
    return !lws_finalize_http_header(wsi, p, end);
}

/*
 * Writes r as one segment. Returns 0 to keep the connection, -1 to close it (lws convention
 * for a callback's return value).
 */
static int
write_reply(struct lws *wsi, const struct authd_reply *r, bool head)
{
    size_t need = LWS_PRE + 1024 + r->headers.len + r->body.len;
    unsigned char *buf = need <= sizeof(out_mem) ? out_mem : pc_xmalloc(need);
    size_t cap = buf == out_mem ? sizeof(out_mem) : need;
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + cap;
    int rc = -1;

    if (!build_head(wsi, r, &p, end))
        goto out;
    if (!head && r->body.len && !put(&p, end, r->body.data, r->body.len))
        goto out;
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0)
        goto out;
    if (r->close)
        goto out;
    rc = lws_http_transaction_completed(wsi) ? -1 : 0;
out:
    if (buf != out_mem)
        free(buf);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* deferred replies */

struct authd_pending *
authd_pending_new(void *connp)
{
    struct lws *wsi = connp;
    struct conn *c = lws_wsi_user(wsi);
    struct server_priv *sp = lws_context_user(lws_get_context(wsi));
    struct authd_pending *p = pc_xcalloc(1, sizeof(*p));

    p->sp = sp;
    p->wsi = wsi;
    p->refs = 2;
    authd_reply_init(&p->reply);
    c->pending = p;
    sp->pending++;
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, DEFER_TIMEOUT_SECS);
    return p;
}

static void
pending_put(struct authd_pending *p)
{
    if (--p->refs > 0)
        return;
    authd_reply_release(&p->reply);
    free(p);
}

/* The connection side lets go: written or closed. */
static void
pending_detach(struct conn *c)
{
    struct authd_pending *p = c->pending;

    c->pending = NULL;
    p->wsi = NULL;
    p->sp->pending--;
    pending_put(p);
}

void
authd_pending_finish(struct authd_pending *p, const struct authd_reply *r)
{
    if (p->wsi) {
        p->reply.status = r->status;
        authd_reply_type(&p->reply, r->content_type);
        p->reply.close = r->close;
        pc_buf_reset(&p->reply.headers);
        pc_buf_reset(&p->reply.body);
        pc_buf_append(&p->reply.headers, r->headers.data ? r->headers.data : "", r->headers.len);
        pc_buf_append(&p->reply.body, r->body.data ? r->body.data : "", r->body.len);
        p->ready = true;
        lws_callback_on_writable(p->wsi);
    }
    pending_put(p);
}

/* ------------------------------------------------------------------------------------------ */
/* reading requests */

static char *
arena_alloc(struct arena *a, size_t n)
{
    char *s;

    if (n > a->cap - a->used)
        return NULL;
    s = a->p + a->used;
    a->used += n;
    return s;
}

/* Copies header token tok into the arena; NULL when absent. */
static const char *
hdr_token(struct lws *wsi, struct arena *a, enum lws_token_indexes tok, bool *overflow)
{
    int len = lws_hdr_total_length(wsi, tok);
    char *s;

    if (len <= 0)
        return NULL;
    if (!(s = arena_alloc(a, (size_t)len + 1)) || lws_hdr_copy(wsi, s, len + 1, tok) < 0) {
        *overflow = true;
        return NULL;
    }
    return s;
}

/* Copies a header lws does not know by token ("x-original-uri:"). */
static const char *
hdr_custom(struct lws *wsi, struct arena *a, const char *name, bool *overflow)
{
    int nlen = (int)strlen(name);
    int len = lws_hdr_custom_length(wsi, name, nlen);
    char *s;

    if (len <= 0)
        return NULL;
    if (!(s = arena_alloc(a, (size_t)len + 1)) ||
        lws_hdr_custom_copy(wsi, s, len + 1, name, nlen) < 0) {
        *overflow = true;
        return NULL;
    }
    return s;
}

/* Percent-encodes s (n bytes) into the arena, keeping the characters in `keep`. */
static bool
encode(struct arena *a, const char *s, size_t n, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    char *o = arena_alloc(a, n * 3);

    if (!o)
        return false;
    a->used -= n * 3;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            (ch && strchr(keep, ch))) {
            a->p[a->used++] = (char)ch;
        } else {
            a->p[a->used++] = '%';
            a->p[a->used++] = hex[ch >> 4];
            a->p[a->used++] = hex[ch & 15];
        }
    }
    return true;
}

/* The query re-encoded from lws's decoded "k=v" fragments. */
static const char *
read_query(struct lws *wsi, struct arena *a, bool *overflow)
{
    char frag[8192], *c;
    size_t start = a->used;
    int len;

    for (int i = 0;
         (len = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i)) >= 0;
         i++) {
        char *eq = memchr(frag, '=', (size_t)len);
        size_t klen = eq ? (size_t)(eq - frag) : (size_t)len;

        if (i > 0 && !(c = arena_alloc(a, 1)))
            goto fail;
        if (i > 0)
            *c = '&';
        if (!encode(a, frag, klen, "-._~"))
            goto fail;
        if (!eq)
            continue;
        if (!(c = arena_alloc(a, 1)))
            goto fail;
        *c = '=';
        if (!encode(a, eq + 1, (size_t)len - klen - 1, "-._~/:@,"))
            goto fail;
    }
    if (!(c = arena_alloc(a, 1)))
        goto fail;
    *c = '\0';
    return a->p + start;
fail:
    *overflow = true;
    return "";
}

static const char *
method_of(struct lws *wsi)
{
    static const struct {
        enum lws_token_indexes tok;
        const char *name;
    } m[] = {
        {WSI_TOKEN_GET_URI, "GET"},         {WSI_TOKEN_POST_URI, "POST"},
        {WSI_TOKEN_HEAD_URI, "HEAD"},       {WSI_TOKEN_PUT_URI, "PUT"},
        {WSI_TOKEN_DELETE_URI, "DELETE"},   {WSI_TOKEN_PATCH_URI, "PATCH"},
        {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
    };

    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        if (lws_hdr_total_length(wsi, m[i].tok) > 0)
            return m[i].name;
    return "GET";
}

/* Fills h from the request on wsi. Returns false when it does not fit the bounds. */
static bool
read_request(struct lws *wsi, const char *in, struct authd_http *h)
{
    struct arena a = {.p = arena_mem, .cap = sizeof(arena_mem)};
    bool overflow = false;
    size_t pstart;
    char *uri;

    memset(h, 0, sizeof(*h));
    h->method = method_of(wsi);
    h->head = !strcmp(h->method, "HEAD");
    pstart = a.used;
    if (!encode(&a, in, strlen(in), "-._~/!$&'()*+,;=:@") || !arena_alloc(&a, 1))
        return false;
    a.p[a.used - 1] = '\0';
    h->path = a.p + pstart;
    h->query = read_query(wsi, &a, &overflow);
    if (!(uri = arena_alloc(&a, strlen(h->path) + strlen(h->query) + 2)))
        return false;
    sprintf(uri, "%s%s%s", h->path, *h->query ? "?" : "", h->query);
    h->uri = uri;
    h->host = hdr_token(wsi, &a, WSI_TOKEN_HOST, &overflow);
    h->cookie = hdr_token(wsi, &a, WSI_TOKEN_HTTP_COOKIE, &overflow);
    h->authorization = hdr_token(wsi, &a, WSI_TOKEN_HTTP_AUTHORIZATION, &overflow);
    h->accept = hdr_token(wsi, &a, WSI_TOKEN_HTTP_ACCEPT, &overflow);
    h->x_requested_with = hdr_custom(wsi, &a, "x-requested-with:", &overflow);
    h->sec_fetch_mode = hdr_custom(wsi, &a, "sec-fetch-mode:", &overflow);
    h->x_forwarded_proto = hdr_custom(wsi, &a, "x-forwarded-proto:", &overflow);
    h->x_forwarded_host = hdr_custom(wsi, &a, "x-forwarded-host:", &overflow);
    h->x_original_uri = hdr_custom(wsi, &a, "x-original-uri:", &overflow);
    if (!h->x_original_uri && !strcmp(h->path, "/oauth2/auth"))
        h->x_original_url = hdr_custom(wsi, &a, "x-original-url:", &overflow);
    return !overflow;
}

/* ------------------------------------------------------------------------------------------ */
/* the auth port: HTTP/1.1 over a raw socket */

static const char *
reason_phrase(int status)
{
    static const struct {
        int status;
        const char *text;
    } phrases[] = {
        {200, "OK"},
        {202, "Accepted"},
        {302, "Found"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    };

    for (size_t i = 0; i < sizeof(phrases) / sizeof(phrases[0]); i++)
        if (phrases[i].status == status)
            return phrases[i].text;
    return "Unknown";
}

static bool
build_raw_head(const struct authd_reply *r, unsigned char **p, unsigned char *end)
{
    char line[96];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", r->status, reason_phrase(r->status));

    if (!put(p, end, line, (size_t)n))
        return false;
    if (r->headers.len && !put(p, end, r->headers.data, r->headers.len))
        return false;
    if (r->content_type[0] &&
        !(put(p, end, "content-type: ", 14) &&
          put(p, end, r->content_type, strlen(r->content_type)) && put(p, end, "\r\n", 2)))
        return false;
    n = snprintf(line, sizeof(line), "content-length: %zu\r\n", r->body.len);
    if (!put(p, end, line, (size_t)n))
        return false;
    if (r->close && !put(p, end, "connection: close\r\n", 19))
        return false;
    return put(p, end, "\r\n", 2);
}

/*
 * Writes r on the raw connection as one segment (lws buffers what the socket does not take).
 * A reply that closes marks the connection, which closes once lws flushed it.
 * Returns 0, or -1 to close now.
 */
static int
raw_send(struct lws *wsi, struct conn *c, struct authd_reply *r, bool head)
{
    struct server_priv *sp = lws_context_user(lws_get_context(wsi));
    size_t need = LWS_PRE + 1024 + r->headers.len + r->body.len;
    unsigned char *buf = need <= sizeof(out_mem) ? out_mem : pc_xmalloc(need);
    size_t cap = buf == out_mem ? sizeof(out_mem) : need;
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + cap;
    int rc = -1;

    if (c->close_after || sp->pub.draining)
        r->close = true;
    if (!build_raw_head(r, &p, end) ||
        (!head && r->body.len && !put(&p, end, r->body.data, r->body.len)))
        goto out;
    if (lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_RAW) < 0)
        goto out;
    rc = 0;
    if (r->close) {
        c->closing = true;
        lws_callback_on_writable(wsi);
    }
out:
    if (buf != out_mem)
        free(buf);
    return rc;
}

/* Answers a head that could not be parsed, and closes. */
static int
raw_refuse(struct lws *wsi, struct conn *c, struct authd_reply *r, int rc)
{
    authd_reply_reset(r);
    if (rc == PC_ETOOBIG)
        authd_reply_page(r, 431, "request too large", "request head too large");
    else if (rc == PC_EINVAL)
        authd_reply_page(r, 501, "not implemented", "transfer coding not implemented");
    else
        authd_reply_page(r, 400, "bad request", "malformed or ambiguous HTTP request");
    c->close_after = true;
    return raw_send(wsi, c, r, false);
}

/* Drops n parsed bytes from the front of the input buffer. */
static void
consume(struct conn *c, size_t n)
{
    memmove(c->in.data, c->in.data + n, c->in.len - n);
    c->in.len -= n;
    c->in.data[c->in.len] = '\0';
    memset(&c->scan, 0, sizeof(c->scan)); /* a new head starts at the front */
}

/* What follows the head: the body is skipped (bounded), or the connection ends after it. */
static size_t
body_plan(struct conn *c, const struct authd_http1_req *req)
{
    size_t avail = c->in.len - req->head_len;
    size_t take = 0;

    if (!req->keep_alive || req->chunked || req->content_length > MAX_SKIPPED_BODY)
        c->close_after = true;
    else if (req->content_length > 0) {
        take = (size_t)req->content_length < avail ? (size_t)req->content_length : avail;
        c->discard = req->content_length - (int64_t)take;
    }
    return take;
}

/* Serves every complete request in the input buffer, one at a time. Returns 0 or -1. */
static int
raw_serve(struct server_priv *sp, struct lws *wsi, struct conn *c)
{
    struct authd_reply *r = &sp->pub.scratch;

    while (!c->busy && !c->closing && c->in.len > 0 && c->discard == 0) {
        struct authd_http1_req req;
        size_t body;
        int rc = authd_http1_parse_resume(&c->scan, c->in.data, c->in.len, &req);

        if (rc == PC_EMORE) {
            authd_http1_req_release(&req);
            return 0;
        }
        if (rc) {
            authd_http1_req_release(&req);
            return raw_refuse(wsi, c, r, rc);
        }
        body = body_plan(c, &req);
        authd_reply_reset(r);
        r->plain_http = strcmp(authd_door_scheme(&req.h), "http") == 0;
        rc = authd_door_handle(&sp->pub, &req.h, wsi, r);
        if (rc == 1) {
            c->busy = true;
            if (c->pending)
                c->pending->head = req.h.head;
        } else {
            rc = raw_send(wsi, c, r, req.h.head);
        }
        authd_http1_req_release(&req);
        consume(c, req.head_len + body);
        if (rc < 0)
            return -1;
    }
    if (!c->busy && !c->closing)
        lws_set_timeout(
            wsi, c->in.len ? PENDING_TIMEOUT_HTTP_CONTENT : PENDING_TIMEOUT_HTTP_KEEPALIVE_IDLE,
            c->in.len ? HEAD_TIMEOUT_SECS : KEEPALIVE_SECS);
    return 0;
}

static int
raw_rx(struct server_priv *sp, struct lws *wsi, struct conn *c, const char *data, size_t len)
{
    int64_t skip = c->discard < (int64_t)len ? c->discard : (int64_t)len;

    c->discard -= skip;
    data += skip;
    len -= (size_t)skip;
    if (c->closing || len == 0)
        return 0;
    /* The head timeout starts with its first byte and is not extended by a trickle. */
    if (c->in.len == 0 && !c->busy)
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, HEAD_TIMEOUT_SECS);
    if (pc_buf_append(&c->in, data, len))
        return raw_refuse(wsi, c, &sp->pub.scratch, PC_ETOOBIG);
    return raw_serve(sp, wsi, c);
}

/* Writes a completed deferred reply, then serves what arrived meanwhile. */
static int
raw_writeable(struct server_priv *sp, struct lws *wsi, struct conn *c)
{
    struct authd_pending *p = c->pending;
    int rc;

    if (c->closing)
        return -1;
    if (!p || !p->ready)
        return 0;
    c->pending = NULL;
    p->wsi = NULL;
    p->sp->pending--;
    c->busy = false;
    rc = raw_send(wsi, c, &p->reply, p->head);
    pending_put(p);
    return rc < 0 ? -1 : raw_serve(sp, wsi, c);
}

static int
raw_callback(struct lws *wsi, enum lws_callback_reasons reason, struct server_priv *sp,
             struct conn *c, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT:
        pc_buf_init(&c->in, 2 * AUTHD_MAX_HEAD);
        c->in.secret = true; /* cookies and tokens pass through it */
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_KEEPALIVE_IDLE, KEEPALIVE_SECS);
        return 0;
    case LWS_CALLBACK_RAW_RX:
        return raw_rx(sp, wsi, c, in, len);
    case LWS_CALLBACK_RAW_WRITEABLE:
        return raw_writeable(sp, wsi, c);
    case LWS_CALLBACK_RAW_CLOSE:
        if (c->pending)
            pending_detach(c);
        pc_buf_release(&c->in);
        return 0;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* lws callbacks */

static bool
has_body(struct lws *wsi)
{
    char cl[32];

    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return true;
    if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return false;
    return strtoll(cl, NULL, 10) > 0;
}

static int
on_http(struct lws *wsi, struct server_priv *sp, const char *in, bool admin)
{
    struct authd_server *srv = &sp->pub;
    struct authd_reply *r = &srv->scratch;
    struct authd_http h;
    int rc;

    authd_reply_reset(r);
    if (!read_request(wsi, in, &h)) {
        authd_reply_page(r, 431, "request too large", "request headers too large");
        r->close = true;
        return write_reply(wsi, r, false);
    }
    r->plain_http = h.x_forwarded_proto && strcasecmp(h.x_forwarded_proto, "http") == 0;
    if (admin)
        rc = authd_admin_handle(srv, &h, r);
    else
        rc = authd_door_handle(srv, &h, wsi, r);
    if (rc == 1) {
        /* Deferred: the connection waits for authd_pending_finish. */
        struct conn *c = lws_wsi_user(wsi);
        if (c && c->pending)
            c->pending->head = h.head;
        return 0;
    }
    /* An unread request body would be parsed as the next request: close instead. */
    if (srv->draining || has_body(wsi))
        r->close = true;
    return write_reply(wsi, r, h.head);
}

static int
on_writeable(struct lws *wsi, struct conn *c)
{
    struct authd_pending *p = c ? c->pending : NULL;
    int rc;

    if (!p || !p->ready)
        return 0;
    /* Detach first: completing the transaction may free the per-connection data. */
    c->pending = NULL;
    p->wsi = NULL;
    p->sp->pending--;
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    if (p->sp->pub.draining)
        p->reply.close = true;
    rc = write_reply(wsi, &p->reply, p->head);
    pending_put(p);
    return rc;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len,
         bool admin)
{
    struct lws_context *ctx = lws_get_context(wsi);
    struct server_priv *sp = ctx ? lws_context_user(ctx) : NULL;
    struct conn *c = user;

    switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT:
    case LWS_CALLBACK_RAW_RX:
    case LWS_CALLBACK_RAW_WRITEABLE:
    case LWS_CALLBACK_RAW_CLOSE:
        return c ? raw_callback(wsi, reason, sp, c, in, len) : 0;
    case LWS_CALLBACK_HTTP:
        if (c)
            c->pending = NULL;
        return on_http(wsi, sp, in ? in : "/", admin);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return on_writeable(wsi, c);
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (c && c->pending)
            pending_detach(c);
        return 0;
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return sp && sp->pub.draining ? 1 : 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (sp && sp->pub.pool)
            authd_pool_drain(sp->pub.pool);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static int
auth_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    return callback(wsi, reason, user, in, len, false);
}

static int
admin_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    return callback(wsi, reason, user, in, len, true);
}

static const struct lws_protocols auth_protocols[] = {
    {"authd-http", auth_cb, sizeof(struct conn), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
/* The admin vhost also serves authd's Redis connection (adopted there by redis.c). */
static const struct lws_protocols admin_protocols[] = {
    {"authd-admin", admin_cb, sizeof(struct conn), 0, 0, NULL, 0},
    AUTHD_REDIS_PROTOCOL,
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ------------------------------------------------------------------------------------------ */
/* context */

static void
lws_log_emit(int level, const char *line)
{
    char msg[512];
    size_t n = strlen(line);

    (void)level;
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    snprintf(msg, sizeof(msg), "%.*s", (int)n, line);
    pc_log(PC_LOG_WARN, "lws", "msg", msg, NULL);
}

static void
wake(void *ud)
{
    struct server_priv *sp = ud;

    if (sp->pub.lws)
        lws_cancel_service(sp->pub.lws);
}

/*
 * Once a second, and never cancelled before the context goes. Besides its own work, it bounds
 * how late libwebsockets' connection timeouts fire on the libev loop: lws 4.1's libev plugin
 * does not move its timer earlier when a sooner timeout is set, so a 15 s head timeout set
 * after the 300 s keep-alive one fires at the next wake-up — at most a second late with this.
 */
static void
tick(lws_sorted_usec_list_t *sul)
{
    struct server_priv *sp =
        (struct server_priv *)((char *)sul - offsetof(struct server_priv, tick));
    int64_t now = authd_now();

    authd_oidc_tick(sp->pub.oidc, now);
    authd_refresh_expire(sp->pub.refresh, now);
    lws_sul_schedule(sp->pub.lws, 0, &sp->tick, tick, LWS_US_PER_SEC);
}

/* Splits "addr:port" / "[v6]:port" / ":port". iface gets NULL for wildcard addresses. */
static int
parse_listen(const char *spec, char *iface, size_t iflen, int *port, bool *v4)
{
    const char *colon = strrchr(spec, ':');
    const char *h = spec;
    size_t hlen;
    char *end;
    long p;

    if (!colon)
        return PC_EINVAL;
    p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535)
        return PC_EINVAL;
    hlen = (size_t)(colon - spec);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= iflen)
        return PC_EINVAL;
    memcpy(iface, h, hlen);
    iface[hlen] = '\0';
    *port = (int)p;
    struct in_addr a4;
    *v4 = inet_pton(AF_INET, iface, &a4) == 1;
    if (!strcmp(iface, "") || !strcmp(iface, "0.0.0.0") || !strcmp(iface, "::") ||
        !strcmp(iface, "*"))
        iface[0] = '\0';
    return 0;
}

static struct lws_vhost *
make_vhost(struct server_priv *sp, const char *name, const char *spec,
           const struct lws_protocols *protos, bool raw)
{
    struct lws_context_creation_info info;
    char iface[128];
    bool v4 = false;
    int port;
    struct lws_vhost *vh;

    if (parse_listen(spec, iface, sizeof(iface), &port, &v4)) {
        pc_log(PC_LOG_ERROR, "listen", "error", "invalid listen address", "address", spec, NULL);
        return NULL;
    }
    memset(&info, 0, sizeof(info));
    info.vhost_name = name;
    info.port = port;
    info.iface = iface[0] ? iface : NULL;
    info.protocols = protos;
    info.keepalive_timeout = KEEPALIVE_SECS;
    info.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    if (raw) {
        info.options |= LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG;
        info.listen_accept_role = "raw-skt";
        info.listen_accept_protocol = protos[0].name;
    }
    if (v4 && iface[0])
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    vh = lws_create_vhost(sp->pub.lws, &info);
    if (!vh)
        pc_log(PC_LOG_ERROR, "listen", "error", "cannot listen", "address", spec, NULL);
    return vh;
}

int
authd_server_new(const struct authd_server_opts *opts, struct authd_server **out)
{
    struct server_priv *sp = pc_xcalloc(1, sizeof(*sp));
    struct authd_server *srv = &sp->pub;
    struct lws_context_creation_info info;
    const struct authd_config *cfg = opts->cfg;

    srv->config_path = opts->config_path;
    srv->overrides = opts->overrides;
    srv->debug_logs = opts->debug_logs;
    srv->no_config = opts->no_config;
    srv->started_at = authd_now();
    authd_reply_init(&srv->scratch);
    srv->metrics = authd_metrics_new();
    if (!opts->no_config)
        authd_metrics_loaded(srv->metrics);
    srv->refresh = authd_refresh_new();
    srv->sessions = authd_sesscache_new(1024);
    srv->replay = authd_replay_new(AUTHD_REPLAY_STATES);
    srv->cfg = authd_cfgref_new(opts->cfg);

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.user = sp;
    info.max_http_header_data = MAX_HEADER_DATA;
    info.max_http_header_pool = 1024;
    info.timeout_secs = 15;
    /*
     * epoll, not poll(): poll() scans every connection on each wake-up, which with a gateway's
     * many keep-alive connections was a third of authd's CPU per check. libwebsockets runs on
     * a libev loop of ours (one iteration per service step, as with lws_service) when its
     * libev plugin (Debian: libwebsockets-evlib-ev) can be loaded; else on poll().
     */
    sp->loop = ev_loop_new(EVBACKEND_EPOLL);
    if (sp->loop) {
        info.options |= LWS_SERVER_OPTION_LIBEV;
        info.foreign_loops = (void **)&sp->loop;
        srv->lws = lws_create_context(&info);
        if (!srv->lws) {
            pc_log(PC_LOG_WARN, "start", "event_loop", "poll", "why",
                   "libwebsockets on libev failed to start (is its plugin, "
                   "libwebsockets-evlib-ev, installed?)", NULL);
            ev_loop_destroy(sp->loop);
            sp->loop = NULL;
            info.options &= ~LWS_SERVER_OPTION_LIBEV;
            info.foreign_loops = NULL;
        }
    }
    if (!srv->lws)
        srv->lws = lws_create_context(&info);
    srv->event_loop = sp->loop ? "epoll" : "poll";
    if (!srv->lws) {
        pc_log(PC_LOG_ERROR, "start", "error", "cannot create the lws context", NULL);
        goto fail;
    }
    sp->auth_vh = make_vhost(sp, "auth", cfg->listen, auth_protocols, true);
    sp->admin_vh = make_vhost(sp, "admin", cfg->admin_listen, admin_protocols, false);
    if (!sp->auth_vh || !sp->admin_vh)
        goto fail;
    srv->loop_vh = sp->admin_vh;
    srv->pool = authd_pool_new(opts->workers > 0 ? opts->workers : AUTHD_IDP_WORKERS, wake, sp);
    srv->store = authd_store_new(srv);
    authd_store_sync(srv->store, cfg);
    srv->oidc = authd_oidc_new(srv);
    authd_oidc_sync(srv->oidc, cfg);
    if (srv->config_path &&
        authd_watch_start(srv, srv->config_path,
                          opts->reload_interval_ms > 0 ? opts->reload_interval_ms : 2000,
                          &srv->watch))
        pc_log(PC_LOG_WARN, "reload", "error", "cannot watch the config file", NULL);
    srv->revoke = authd_revoke_new(srv, opts->revocations_file, opts->kube != NULL);
    if (opts->kube && authd_kube_start(srv, opts->kube, &srv->kube))
        goto fail;
    lws_sul_schedule(srv->lws, 0, &sp->tick, tick, LWS_US_PER_SEC);
    *out = srv;
    return 0;
fail:
    authd_server_free(srv);
    return PC_EIO;
}

void
authd_server_stop(struct authd_server *srv)
{
    atomic_store(&srv->stopping, 1);
    if (srv->lws)
        lws_cancel_service(srv->lws);
}

/* One pass of the event loop: waits for something to do (a wake, a timer, I/O) and does it. */
static int
service(struct server_priv *sp)
{
    if (sp->loop) {
        ev_run(sp->loop, EVRUN_ONCE);
        return 0;
    }
    return lws_service(sp->pub.lws, 0);
}

int
authd_server_run(struct authd_server *srv)
{
    struct server_priv *sp = (struct server_priv *)srv;
    int64_t deadline;

    while (!atomic_load(&srv->stopping))
        if (service(sp) < 0)
            return PC_EIO;
    /*
     * Graceful shutdown: stop accepting (new connections are closed as they arrive: lws 4.1's
     * lws_context_deprecate crashes with explicit vhosts), let deferred replies finish,
     * answer anything still arriving on open connections with "Connection: close".
     */
    srv->draining = true;
    pc_log(PC_LOG_INFO, "shutdown", "phase", "draining", NULL);
    deadline = authd_mono_us() + DRAIN_SECS * 1000000LL;
    while (sp->pending > 0 && authd_mono_us() < deadline)
        if (service(sp) < 0)
            break;
    return 0;
}

void
authd_server_free(struct authd_server *srv)
{
    struct server_priv *sp = (struct server_priv *)srv;

    if (!srv)
        return;
    authd_watch_stop(srv->watch);
    authd_kube_stop(srv->kube);
    authd_revoke_stop(srv->revoke);
    if (srv->lws)
        lws_sul_cancel(&sp->tick);
    /* Redis commands end (PC_EIO); then workers finish (bounded by the HTTP timeouts); the
     * done() of both runs here. */
    authd_store_stop(srv->store);
    authd_pool_free(srv->pool);
    srv->pool = NULL;
    authd_kube_free(srv->kube);
    authd_revoke_free(srv->revoke);
    if (srv->lws)
        lws_context_destroy(srv->lws);
    if (sp->loop)
        ev_loop_destroy(sp->loop);
    authd_oidc_free(srv->oidc);
    authd_refresh_free(srv->refresh);
    authd_sesscache_free(srv->sessions);
    authd_store_free(srv->store);
    authd_replay_free(srv->replay);
    authd_metrics_free(srv->metrics);
    authd_cfgref_put(srv->cfg);
    authd_reply_release(&srv->scratch);
    free(sp);
}

void
authd_server_config_loaded(struct authd_server *srv, struct authd_cfgref *ref,
                           const struct pc_diag *diag, int rc)
{
    char msg[700];

    if (rc || !ref) {
        pc_diag_format(diag, msg, sizeof(msg));
        pc_log(PC_LOG_ERROR, "config_reload", "result", "failure", "error", msg, NULL);
        authd_metrics_reload(srv->metrics, false);
        authd_cfgref_put(ref);
        return;
    }
    if (strcmp(srv->cfg->cfg->listen, ref->cfg->listen) ||
        strcmp(srv->cfg->cfg->admin_listen, ref->cfg->admin_listen))
        pc_log(PC_LOG_WARN, "config_reload", "error",
               "listen/adminListen changes take effect after a restart", NULL);
    authd_cfgref_put(srv->cfg);
    srv->cfg = ref;
    srv->no_config = false;
    authd_store_sync(srv->store, ref->cfg);
    authd_oidc_sync(srv->oidc, ref->cfg);
    authd_metrics_reload(srv->metrics, true);
    snprintf(msg, sizeof(msg), "%zu", ref->cfg->nhosts);
    pc_log(PC_LOG_INFO, "config_reload", "result", "success", "hosts", msg, NULL);
}
