/*
 * http1.c - HTTP/1.1 request heads of the auth port, parsed as they arrived.
 *
 * authd decides on the path the upstream will get, so the request target is kept exactly as
 * the proxy sent it: no percent-decoding, no dot-segment removal, no slash merging, no
 * splitting at ";" or "&" (libwebsockets does all of these to the URI it hands its callbacks,
 * which let "/admin/..%2fpublic/x" be decided as "/public/x"). Anything a strict reading of
 * RFC 9112 would refuse, or that two parsers could read differently (obs-fold, whitespace
 * before the colon, no Host or a second one, Content-Length together with Transfer-Encoding,
 * any Transfer-Encoding but a lone "chunked", bare LF, control characters), is refused with 400.
 *
 * A head may arrive a byte at a time: the search for its end resumes where the last read
 * stopped (struct authd_http1_scan), and the lines are parsed once, when it is complete.
 */
#include "authd.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portcullis/http.h"

#define MAX_METHOD 16

static bool
is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Request-target characters: visible ASCII except "#" (a fragment never reaches a server). */
static bool
is_target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '#';
}

/* Field-value characters: HTAB, visible ASCII, SP, obs-text. */
static bool
is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Parses "METHOD SP /target SP HTTP/1.x" (line NUL-terminated, CR removed). */
static int
request_line(char *line, struct authd_http1_req *req)
{
    char *sp1 = strchr(line, ' '), *sp2, *q;
    size_t mlen, tlen;

    if (sp1 == NULL || (sp2 = strchr(sp1 + 1, ' ')) == NULL)
        return PC_EPARSE;
    mlen = (size_t)(sp1 - line);
    tlen = (size_t)(sp2 - sp1 - 1);
    if (mlen == 0 || mlen > MAX_METHOD || tlen == 0 || sp1[1] != '/')
        return PC_EPARSE;
    if (tlen > AUTHD_MAX_TARGET)
        return PC_ETOOBIG;
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)line[i]))
            return PC_EPARSE;
    for (size_t i = 0; i < tlen; i++)
        if (!is_target_char((unsigned char)sp1[1 + i]))
            return PC_EPARSE;
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        req->http11 = req->keep_alive = true;
    else if (strcmp(sp2 + 1, "HTTP/1.0") != 0)
        return PC_EPARSE;
    *sp1 = '\0';
    *sp2 = '\0';
    req->h.method = line;
    req->h.head = strcmp(line, "HEAD") == 0;
    req->h.uri = sp1 + 1;
    q = strchr(req->h.uri, '?');
    req->h.query = q != NULL ? q + 1 : "";
    memcpy(req->path, req->h.uri, q != NULL ? (size_t)(q - req->h.uri) : tlen);
    req->path[q != NULL ? (size_t)(q - req->h.uri) : tlen] = '\0';
    req->h.path = req->path;
    return 0;
}

/* A header that may appear once; a second copy is refused. */
static int
once(const char **slot, const char *value)
{
    if (*slot != NULL)
        return PC_EPARSE;
    *slot = value;
    return 0;
}

static int
content_length(struct authd_http1_req *req, const char *v)
{
    int64_t n = 0;

    if (*v == '\0' || strspn(v, "0123456789") != strlen(v) || strlen(v) > 15)
        return PC_EPARSE;
    for (; *v; v++)
        n = n * 10 + (*v - '0');
    if (req->content_length >= 0 && req->content_length != n)
        return PC_EPARSE;
    req->content_length = n;
    return 0;
}

/*
 * Host = uri-host [":" port] (RFC 9112 §3.2, RFC 3986 §3.2.2): reg-name, IPv4 or IP-literal
 * characters only. A value with anything else ("/", "@", "?", space, ...) is invalid: 400.
 */
static int
host(struct authd_http *h, const char *v)
{
    for (const char *p = v; *p != '\0'; p++)
        if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9') &&
            strchr("-._~!$&'()*+,;=%:[]", *p) == NULL)
            return PC_EPARSE;
    return once(&h->host, v);
}

/*
 * Transfer-Encoding: only a lone "chunked" (any case) is accepted. Without chunked last the
 * body has no reliable length (400, RFC 9112 §6.3); chunked twice is not allowed (§7); a
 * second field line is refused rather than joined, as proxies differ on which one counts;
 * codings before chunked are well framed but not implemented (501).
 */
static int
transfer_encoding(struct authd_http1_req *req, const char *v)
{
    size_t ncodings = 0, nchunked = 0;
    bool last_chunked = false;

    if (req->chunked)
        return PC_EPARSE;
    for (;;) {
        size_t len = 0;

        v += strspn(v, " \t");
        while (is_tchar((unsigned char)v[len]))
            len++;
        if (len == 0)
            return PC_EPARSE; /* empty element, or parameters */
        last_chunked = len == 7 && strncasecmp(v, "chunked", 7) == 0;
        nchunked += last_chunked;
        ncodings++;
        v += len;
        v += strspn(v, " \t");
        if (*v == '\0')
            break;
        if (*v++ != ',')
            return PC_EPARSE;
    }
    if (!last_chunked || nchunked > 1)
        return PC_EPARSE;
    if (ncodings > 1)
        return PC_EINVAL;
    req->chunked = true;
    return 0;
}

/* True when the comma-separated list v holds token (case-insensitive). */
static bool
has_token(const char *v, const char *token)
{
    size_t n = strlen(token);

    while (*v != '\0') {
        v += strspn(v, " \t,");
        size_t len = strcspn(v, ",");
        size_t t = len;

        while (t > 0 && (v[t - 1] == ' ' || v[t - 1] == '\t'))
            t--;
        if (t == n && strncasecmp(v, token, n) == 0)
            return true;
        v += len;
    }
    return false;
}

static int
cookie(struct authd_http1_req *req, const char *v)
{
    if (req->h.cookie == NULL) {
        req->h.cookie = v;
        return 0;
    }
    /* Several Cookie lines (an HTTP/2 client through a proxy) are one list. */
    if (req->cookies.len == 0 && pc_buf_appends(&req->cookies, req->h.cookie) != 0)
        return PC_ETOOBIG;
    if (pc_buf_appends(&req->cookies, "; ") != 0 || pc_buf_appends(&req->cookies, v) != 0)
        return PC_ETOOBIG;
    req->h.cookie = pc_buf_str(&req->cookies);
    return 0;
}

static int
field(struct authd_http1_req *req, const char *name, const char *v)
{
    struct authd_http *h = &req->h;

    if (strcasecmp(name, "host") == 0)
        return host(h, v);
    if (strcasecmp(name, "cookie") == 0)
        return cookie(req, v);
    if (strcasecmp(name, "authorization") == 0)
        return once(&h->authorization, v);
    if (strcasecmp(name, "x-forwarded-proto") == 0)
        return once(&h->x_forwarded_proto, v);
    if (strcasecmp(name, "x-forwarded-host") == 0)
        return once(&h->x_forwarded_host, v);
    if (strcasecmp(name, "x-original-uri") == 0)
        return once(&h->x_original_uri, v);
    if (strcasecmp(name, "x-original-url") == 0)
        return once(&h->x_original_url, v);
    if (strcasecmp(name, "content-length") == 0)
        return content_length(req, v);
    if (strcasecmp(name, "transfer-encoding") == 0)
        return transfer_encoding(req, v);
    if (strcasecmp(name, "connection") == 0 && has_token(v, "close"))
        req->close = true;
    else if (strcasecmp(name, "connection") == 0 && has_token(v, "keep-alive"))
        req->keep_alive_asked = true;
    else if (strcasecmp(name, "accept") == 0 && h->accept == NULL)
        h->accept = v;
    else if (strcasecmp(name, "x-requested-with") == 0 && h->x_requested_with == NULL)
        h->x_requested_with = v;
    else if (strcasecmp(name, "sec-fetch-mode") == 0 && h->sec_fetch_mode == NULL)
        h->sec_fetch_mode = v;
    return 0;
}

/* Parses one "name: value" line (NUL-terminated, CR removed) in place. */
static int
header_line(char *line, struct authd_http1_req *req)
{
    char *colon = strchr(line, ':'), *v, *end;

    if (colon == NULL || colon == line)
        return PC_EPARSE;
    for (char *p = line; p < colon; p++)
        if (!is_tchar((unsigned char)*p))
            return PC_EPARSE; /* includes whitespace before the colon and obs-fold */
    *colon = '\0';
    v = colon + 1;
    for (char *p = v; *p != '\0'; p++)
        if (!is_value_char((unsigned char)*p))
            return PC_EPARSE;
    v += strspn(v, " \t");
    end = v + strlen(v);
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    return field(req, line, v);
}

/*
 * Searches the first AUTHD_MAX_HEAD bytes for the end of the head (CRLF CRLF), from where the
 * last call stopped: only the three bytes before are looked at again, for an end split across
 * reads. On 0, scanned is the head's length. A bare LF LF never completes as CRLF CRLF: it is
 * refused as soon as it arrives rather than waiting for bytes that will not come.
 */
static int
find_end(struct authd_http1_scan *s, const char *buf, size_t len)
{
    size_t n = len < AUTHD_MAX_HEAD ? len : AUTHD_MAX_HEAD;

    while (s->scanned < n) {
        const char *nl = memchr(buf + s->scanned, '\n', n - s->scanned);
        size_t at = nl != NULL ? (size_t)(nl - buf) : n;

        s->examined += (nl != NULL ? at + 1 : n) - s->scanned;
        s->scanned = nl != NULL ? at + 1 : n;
        if (nl == NULL || at == 0)
            continue;
        if (buf[at - 1] == '\n')
            return PC_EPARSE;
        if (at >= 3 && buf[at - 1] == '\r' && buf[at - 2] == '\n' && buf[at - 3] == '\r')
            return 0;
    }
    return len >= AUTHD_MAX_HEAD ? PC_ETOOBIG : PC_EMORE;
}

static int
parse_lines(char *buf, char *end, struct authd_http1_req *req)
{
    size_t nfields = 0;
    char *line = buf;
    int rc = 0;

    while (rc == 0 && line < end - 2) {
        char *nl = memchr(line, '\n', (size_t)(end - line));

        /* Every line ends in CRLF; a bare LF or CR inside a line is refused. */
        if (nl == NULL || nl == line || nl[-1] != '\r' || memchr(line, '\0', (size_t)(nl - line)))
            return PC_EPARSE;
        nl[-1] = '\0';
        if (memchr(line, '\r', (size_t)(nl - 1 - line)) != NULL)
            return PC_EPARSE;
        if (line == buf)
            rc = request_line(line, req);
        else if (++nfields > AUTHD_MAX_FIELDS)
            rc = PC_ETOOBIG;
        else
            rc = header_line(line, req);
        line = nl + 1;
    }
    return rc;
}

/* What the whole head says about framing and the connection, once every line is read. */
static int
finish(struct authd_http1_req *req)
{
    if (req->http11 && req->h.host == NULL)
        return PC_EPARSE; /* RFC 9112 §3.2 */
    /* The classic request-smuggling ambiguity; and an HTTP/1.0 message with
     * Transfer-Encoding has faulty framing (RFC 9112 §6.1). */
    if (req->chunked && (req->content_length >= 0 || !req->http11))
        return PC_EPARSE;
    if (req->close)
        req->keep_alive = false;
    else if (req->keep_alive_asked)
        req->keep_alive = true;
    return 0;
}

int
authd_http1_parse_resume(struct authd_http1_scan *scan, char *buf, size_t len,
                         struct authd_http1_req *req)
{
    int rc;

    memset(req, 0, sizeof(*req));
    pc_buf_init(&req->cookies, AUTHD_MAX_COOKIE_HEADER + 1);
    req->cookies.secret = true;
    req->content_length = -1;
    if ((rc = find_end(scan, buf, len)) != 0)
        return rc;
    req->head_len = scan->scanned;
    scan->examined += req->head_len; /* the lines, each read once */
    if ((rc = parse_lines(buf, buf + req->head_len, req)) != 0)
        return rc;
    return finish(req);
}

int
authd_http1_parse(char *buf, size_t len, struct authd_http1_req *req)
{
    struct authd_http1_scan scan = {0};

    return authd_http1_parse_resume(&scan, buf, len, req);
}

void
authd_http1_req_release(struct authd_http1_req *req)
{
    if (req == NULL)
        return;
    pc_buf_release(&req->cookies);
}

char *
authd_query_param(const char *query, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = query;

    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len > nlen && !strncmp(p, name, nlen) && p[nlen] == '=')
            return pc_url_decode(p + nlen + 1, len - nlen - 1, true);
        p = end ? end + 1 : NULL;
    }
    return NULL;
}
