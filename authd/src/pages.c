/*
 * pages.c - the pages people see when authd answers instead of the app: forbidden (403),
 * errors (failed logins, unknown hosts, bad requests) and signed out, each as HTML or as its
 * JSON twin for API clients; operator templates; request ids. No I/O: template files come
 * through the config's reader.
 *
 * A template is HTML with placeholders "{{name}}" and sections "{{#name}}...{{/name}}" (kept
 * when the value is non-empty) and "{{^name}}...{{/name}}" (kept when it is empty). Every value
 * is HTML-escaped when it is substituted; there is no raw form. A template is checked when it
 * is loaded (unknown names, unterminated tags and unbalanced sections are refused with their
 * line and column), so rendering a page that was accepted cannot fail on its syntax.
 */
#include "authd.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/crypto.h"

#define MAX_DEPTH 8 /* sections inside sections */
#define MAX_TAG 64  /* bytes between "{{" and "}}" */
#define REPLACEMENT "\xef\xbf\xbd"
#define ELLIPSIS "\xe2\x80\xa6"

enum var {
    V_STATUS,
    V_ERROR,
    V_TITLE,
    V_MESSAGE,
    V_EMAIL,
    V_HOST,
    V_REQUEST_ID,
    V_SIGN_OUT_URL,
    V_SIGN_IN_URL,
    V_COUNT
};

static const char *const var_names[V_COUNT] = {
    [V_STATUS] = "status",
    [V_ERROR] = "error",
    [V_TITLE] = "title",
    [V_MESSAGE] = "message",
    [V_EMAIL] = "email",
    [V_HOST] = "host",
    [V_REQUEST_ID] = "request_id",
    [V_SIGN_OUT_URL] = "sign_out_url",
    [V_SIGN_IN_URL] = "sign_in_url",
};

const char *const authd_page_files[AUTHD_PAGE_COUNT] = {
    [AUTHD_PAGE_FORBIDDEN] = "forbidden.html",
    [AUTHD_PAGE_ERROR] = "error.html",
    [AUTHD_PAGE_SIGNED_OUT] = "signed_out.html",
};

struct authd_pages {
    atomic_int refs;              /* configs merged from one head share its pages */
    char *text[AUTHD_PAGE_COUNT]; /* operator templates, checked; NULL: the built-in */
    size_t len[AUTHD_PAGE_COUNT];
};

/* ------------------------------------------------------------------------------------------ */
/* built-in templates: small, one inline style sheet, no external assets */

#define PAGE_HEAD                                                                                  \
    "<!doctype html>\n"                                                                            \
    "<html lang=\"en\">\n"                                                                         \
    "<head>\n"                                                                                     \
    "<meta charset=\"utf-8\">\n"                                                                   \
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"                   \
    "<meta name=\"robots\" content=\"noindex\">\n"                                                 \
    "<title>{{title}}</title>\n"                                                                   \
    "<style>\n"                                                                                    \
    "body{margin:0;background:#f6f8fa;color:#1f2328;"                                              \
    "font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\n"                      \
    "main{box-sizing:border-box;max-width:34rem;margin:2rem auto;padding:1.5rem;"                  \
    "background:#fff;border:1px solid #d0d7de;border-radius:8px}\n"                                \
    "h1{font-size:1.5rem;line-height:1.25;margin:0 0 .75rem}\n"                                    \
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:1rem 0}\n"       \
    "dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}\n"                                     \
    ".actions a{display:inline-block;margin:.25rem .5rem .25rem 0;padding:.6rem 1rem;"             \
    "border:2px solid #0969da;border-radius:6px;background:#0969da;color:#fff;"                    \
    "font-weight:600;text-decoration:none}\n"                                                      \
    ".actions a.secondary{background:#fff;color:#0969da}\n"                                        \
    "a:focus-visible{outline:3px solid #bf5700;outline-offset:2px}\n"                              \
    ".note{color:#57606a;font-size:.875rem}\n"                                                     \
    "@media (max-width:30rem){main{margin:0;border:0;border-radius:0}"                             \
    "dl{grid-template-columns:1fr}dd{margin-bottom:.5rem}}\n"                                      \
    "</style>\n"                                                                                   \
    "</head>\n"                                                                                    \
    "<body>\n"                                                                                     \
    "<main>\n"                                                                                     \
    "<h1>{{title}}</h1>\n"                                                                         \
    "<p>{{message}}</p>\n"

#define PAGE_ID                                                                                    \
    "{{#request_id}}<dt>Request ID</dt><dd><code>{{request_id}}</code></dd>\n{{/request_id}}"

#define PAGE_TAIL "</main>\n</body>\n</html>\n"

static const char builtin_forbidden[] =
    PAGE_HEAD "<dl>\n"
              "{{#email}}<dt>Signed in as</dt><dd>{{email}}</dd>\n{{/email}}"
              "{{#host}}<dt>Site</dt><dd>{{host}}</dd>\n{{/host}}" PAGE_ID "</dl>\n"
              "{{#sign_out_url}}<p class=\"actions\"><a href=\"{{sign_out_url}}\">"
              "Sign out and use another account</a></p>\n{{/sign_out_url}}"
              "<p class=\"note\">If you need access, ask the site's administrator and quote the "
              "request ID.</p>\n" PAGE_TAIL;

static const char builtin_error[] =
    PAGE_HEAD "<dl>\n"
              "{{#email}}<dt>Signed in as</dt><dd>{{email}}</dd>\n{{/email}}"
              "{{#host}}<dt>Site</dt><dd>{{host}}</dd>\n{{/host}}" PAGE_ID
              "<dt>Status</dt><dd>{{status}}</dd>\n"
              "</dl>\n"
              "<p class=\"actions\">"
              "{{#sign_in_url}}<a href=\"{{sign_in_url}}\">Try again</a>{{/sign_in_url}}"
              "{{#sign_out_url}}<a class=\"secondary\" href=\"{{sign_out_url}}\">"
              "Sign out / use another account</a>{{/sign_out_url}}</p>\n"
              "<p class=\"note\">If this keeps happening, contact support and quote the request "
              "ID.</p>\n" PAGE_TAIL;

static const char builtin_signed_out[] =
    PAGE_HEAD "<dl>\n"
              "{{#email}}<dt>Account</dt><dd>{{email}}</dd>\n{{/email}}"
              "{{#host}}<dt>Site</dt><dd>{{host}}</dd>\n{{/host}}" PAGE_ID "</dl>\n"
              "{{#sign_in_url}}<p class=\"actions\"><a href=\"{{sign_in_url}}\">Sign in "
              "again</a></p>\n{{/sign_in_url}}" PAGE_TAIL;

static const char *const builtin[AUTHD_PAGE_COUNT] = {
    [AUTHD_PAGE_FORBIDDEN] = builtin_forbidden,
    [AUTHD_PAGE_ERROR] = builtin_error,
    [AUTHD_PAGE_SIGNED_OUT] = builtin_signed_out,
};

const char *
authd_page_builtin(enum authd_page kind)
{
    return (unsigned)kind < AUTHD_PAGE_COUNT ? builtin[kind] : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* escaping */

/* Length of the valid UTF-8 sequence at s (n bytes left): 1..4, or 0 when it is not one. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
    uint32_t cp, min;
    size_t need;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        need = 2, cp = s[0] & 0x1f, min = 0x80;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        need = 3, cp = s[0] & 0x0f, min = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        need = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

/* The entity or escape for one ASCII byte, NULL when it stands for itself. */
typedef const char *(*escape_fn)(unsigned char c, char tmp[8]);

static const char *
html_escape(unsigned char c, char tmp[8])
{
    (void)tmp;
    switch (c) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '"':
        return "&quot;";
    case '\'':
        return "&#39;";
    case '`':
        return "&#96;";
    case '=':
        return "&#61;";
    case '\t':
    case '\n':
    case '\r':
        return NULL;
    default:
        return c < 0x20 || c == 0x7f ? REPLACEMENT : NULL;
    }
}

static const char *
json_escape(unsigned char c, char tmp[8])
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '<':
    case '>':
    case '&':
        break;
    default:
        if (c >= 0x20 && c != 0x7f)
            return NULL;
    }
    snprintf(tmp, 8, "\\u%04x", c);
    return tmp;
}

/*
 * Appends s escaped by esc: invalid UTF-8 becomes U+FFFD, and a value longer than
 * AUTHD_MAX_PAGE_VALUE bytes is cut at a character boundary and marked with an ellipsis.
 * In JSON, U+2028 and U+2029 are escaped too (JavaScript string literals end at them).
 */
static int
append_escaped(struct pc_buf *b, const char *s, escape_fn esc, bool json)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, run = 0;
    int rc = 0;

    while (i < n && rc == 0) {
        size_t k = utf8_len(u + i, n - i);
        char tmp[8];
        const char *rep = NULL;

        if (i >= AUTHD_MAX_PAGE_VALUE) {
            rc = pc_buf_append(b, s + run, i - run);
            return rc ? rc : pc_buf_appends(b, ELLIPSIS);
        }
        if (k == 0)
            rep = json ? "\\ufffd" : REPLACEMENT;
        else if (k == 1)
            rep = esc(u[i], tmp);
        else if (json && k == 3 && u[i] == 0xe2 && u[i + 1] == 0x80 && (u[i + 2] | 1) == 0xa9)
            rep = u[i + 2] == 0xa8 ? "\\u2028" : "\\u2029";
        if (rep == NULL) {
            i += k;
            continue;
        }
        rc = pc_buf_append(b, s + run, i - run);
        rc = rc ? rc : pc_buf_appends(b, rep);
        i += k ? k : 1;
        run = i;
    }
    return rc ? rc : pc_buf_append(b, s + run, n - run);
}

int
authd_html_escape(struct pc_buf *b, const char *s)
{
    return append_escaped(b, s ? s : "", html_escape, false);
}

/* ------------------------------------------------------------------------------------------ */
/* templates */

struct tag {
    char sigil; /* 0, '#', '^' or '/' */
    int var;
    size_t end; /* offset just past "}}" */
};

static int refuse(const char *text, size_t off, struct pc_diag *diag, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sets diag to "line:col: message" for the byte at off. Returns PC_EPARSE. */
static int
refuse(const char *text, size_t off, struct pc_diag *diag, const char *fmt, ...)
{
    char msg[sizeof(diag->msg)];
    int line = 1, col = 1;
    va_list ap;

    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (diag)
        pc_diag_set(diag, line, col, "%s", msg);
    return PC_EPARSE;
}

static int
lookup(const char *name, size_t n)
{
    for (int v = 0; v < V_COUNT; v++)
        if (strlen(var_names[v]) == n && memcmp(var_names[v], name, n) == 0)
            return v;
    return -1;
}

/* Parses the tag that starts with "{{" at offset at. */
static int
parse_tag(const char *text, size_t len, size_t at, struct tag *t, struct pc_diag *diag)
{
    size_t i = at + 2, close = i, a, z;

    if (i < len && text[i] == '{')
        return refuse(text, at, diag,
                      "\"{{{\": raw placeholders are not supported (every value is HTML-escaped)");
    while (close + 1 < len && close - i <= MAX_TAG &&
           !(text[close] == '}' && text[close + 1] == '}'))
        close++;
    if (close + 1 >= len || close - i > MAX_TAG)
        return refuse(text, at, diag, "unterminated placeholder: \"{{\" without \"}}\"");
    a = i;
    z = close;
    while (a < z && text[a] == ' ')
        a++;
    t->sigil = a < z && strchr("#^/", text[a]) ? text[a++] : 0;
    while (a < z && text[a] == ' ')
        a++;
    while (z > a && text[z - 1] == ' ')
        z--;
    t->var = lookup(text + a, z - a);
    t->end = close + 2;
    if (t->var < 0)
        return refuse(text, at, diag,
                      "unknown placeholder \"{{%.*s}}\" (known: status, error, title, message, "
                      "email, host, request_id, sign_out_url, sign_in_url)",
                      (int)(close - i), text + i);
    return 0;
}

static bool
empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/*
 * Walks a template: checks it (out NULL) or renders it with vals. Sections whose condition
 * fails are still parsed, so checking and rendering see the same errors.
 */
static int
walk(const char *text, size_t len, const char *const *vals, struct pc_buf *out,
     struct pc_diag *diag)
{
    int stack[MAX_DEPTH], depth = 0, skip = -1;
    size_t open_at[MAX_DEPTH], i = 0, run = 0;
    int rc = 0;

    if (memchr(text, '\0', len) != NULL)
        return refuse(text, (size_t)((const char *)memchr(text, '\0', len) - text), diag,
                      "the template contains a NUL byte");
    while (i + 1 < len) {
        const char *p = memchr(text + i, '{', len - i - 1);
        size_t at;
        struct tag t = {0};

        if (p == NULL)
            break;
        at = (size_t)(p - text);
        if (text[at + 1] != '{') {
            i = at + 1;
            continue;
        }
        if (out && skip < 0)
            rc = rc ? rc : pc_buf_append(out, text + run, at - run);
        if (parse_tag(text, len, at, &t, diag))
            return PC_EPARSE;
        if (t.sigil == 0 && out && skip < 0) {
            rc = rc ? rc : authd_html_escape(out, vals[t.var]);
        } else if (t.sigil == '#' || t.sigil == '^') {
            if (depth == MAX_DEPTH)
                return refuse(text, at, diag, "sections nested deeper than %d", MAX_DEPTH);
            if (out && skip < 0 && empty(vals[t.var]) == (t.sigil == '#'))
                skip = depth;
            stack[depth] = t.var;
            open_at[depth++] = at;
        } else if (t.sigil == '/') {
            if (depth == 0 || stack[depth - 1] != t.var)
                return refuse(text, at, diag, "\"{{/%s}}\" closes no open \"{{#%s}}\" section",
                              var_names[t.var], var_names[t.var]);
            if (skip == --depth)
                skip = -1;
        }
        i = run = t.end;
    }
    if (depth > 0)
        return refuse(text, open_at[depth - 1], diag, "section \"{{%s}}\" is never closed",
                      var_names[stack[depth - 1]]);
    if (out && skip < 0)
        rc = rc ? rc : pc_buf_append(out, text + run, len - run);
    return rc;
}

int
authd_template_check(const char *text, size_t len, struct pc_diag *diag)
{
    if (len > AUTHD_MAX_TEMPLATE) {
        refuse(text, 0, diag, "the template is %zu bytes, at most %d are allowed", len,
               AUTHD_MAX_TEMPLATE);
        return PC_ETOOBIG;
    }
    return walk(text, len, NULL, NULL, diag);
}

/* ------------------------------------------------------------------------------------------ */
/* the set of templates */

struct authd_pages *
authd_pages_new(void)
{
    struct authd_pages *p = pc_xcalloc(1, sizeof(*p));

    atomic_init(&p->refs, 1);
    return p;
}

struct authd_pages *
authd_pages_get(struct authd_pages *p)
{
    if (p != NULL)
        atomic_fetch_add(&p->refs, 1);
    return p;
}

void
authd_pages_put(struct authd_pages *p)
{
    if (p == NULL || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    for (int k = 0; k < AUTHD_PAGE_COUNT; k++)
        free(p->text[k]);
    free(p);
}

int
authd_pages_set(struct authd_pages *p, enum authd_page kind, const char *text, size_t len,
                struct pc_diag *diag)
{
    int rc;

    if ((unsigned)kind >= AUTHD_PAGE_COUNT)
        return PC_EINVAL;
    if ((rc = authd_template_check(text, len, diag)) != 0)
        return rc;
    free(p->text[kind]);
    p->text[kind] = pc_xstrndup(text, len);
    p->len[kind] = len;
    return 0;
}

bool
authd_pages_custom(const struct authd_pages *p, enum authd_page kind)
{
    return p != NULL && (unsigned)kind < AUTHD_PAGE_COUNT && p->text[kind] != NULL;
}

int
authd_pages_load(const char *dir, authd_read_file_fn rd, void *ud, struct authd_pages **out,
                 struct pc_diag *diag)
{
    struct authd_pages *p = authd_pages_new();
    int rc = 0, found = 0;

    *out = NULL;
    for (int k = 0; k < AUTHD_PAGE_COUNT && rc == 0; k++) {
        char *path = pc_xasprintf("%s/%s", dir, authd_page_files[k]), *data = NULL;
        size_t len = 0;

        diag->file = authd_page_files[k];
        rc = rd(ud, path, &data, &len);
        if (rc == -ENOENT) {
            rc = 0; /* this page stays the built-in one */
        } else if (rc != 0) {
            pc_diag_set(diag, 0, 0, "cannot read: %s",
                        rc < 0 && rc > -4096 ? strerror(-rc) : pc_strerror(rc));
        } else {
            found++;
            rc = authd_pages_set(p, (enum authd_page)k, data, len, diag);
        }
        free(data);
        free(path);
    }
    if (rc == 0 && found == 0) {
        diag->file = NULL;
        pc_diag_set(diag, 0, 0, "none of forbidden.html, error.html, signed_out.html is there");
        rc = PC_ENOTFOUND;
    }
    if (rc != 0) {
        authd_pages_put(p);
        return rc;
    }
    diag->file = NULL;
    *out = p;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* rendering */

static int
json_field(struct pc_buf *b, const char *name, const char *value, bool first)
{
    int rc = pc_buf_appendf(b, "%s\"%s\":", first ? "" : ",", name);

    if (rc == 0 && value == NULL)
        return pc_buf_appends(b, "null");
    rc = rc ? rc : pc_buf_appends(b, "\"");
    rc = rc ? rc : append_escaped(b, value, json_escape, true);
    return rc ? rc : pc_buf_appends(b, "\"");
}

static int
render_json(const struct authd_page_fields *f, struct pc_buf *out)
{
    int rc = pc_buf_appends(out, "{");

    rc = rc ? rc : json_field(out, "error", f->error ? f->error : "error", true);
    rc = rc ? rc : pc_buf_appendf(out, ",\"status\":%d", f->status);
    rc = rc ? rc : json_field(out, "message", f->message ? f->message : "", false);
    rc = rc ? rc : json_field(out, "host", empty(f->host) ? NULL : f->host, false);
    rc = rc ? rc : json_field(out, "email", empty(f->email) ? NULL : f->email, false);
    rc =
        rc ? rc : json_field(out, "request_id", empty(f->request_id) ? NULL : f->request_id, false);
    return rc ? rc : pc_buf_appends(out, "}\n");
}

/*
 * A link authd puts on a page: a path with one leading "/" (not "//" or "/\\", which browsers
 * take for another host) or an http(s) URL. Anything else (javascript:, data:) is no link.
 */
static const char *
safe_link(const char *url)
{
    if (empty(url))
        return NULL;
    if (url[0] == '/')
        return url[1] == '/' || url[1] == '\\' ? NULL : url;
    return strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0 ? url : NULL;
}

int
authd_page_render(const struct authd_pages *p, enum authd_page kind,
                  const struct authd_page_fields *f, bool json, struct pc_buf *out)
{
    const char *vals[V_COUNT];
    char status[16];
    int rc;

    if ((unsigned)kind >= AUTHD_PAGE_COUNT)
        kind = AUTHD_PAGE_ERROR;
    pc_buf_reset(out);
    if (json)
        return render_json(f, out);
    snprintf(status, sizeof(status), "%d", f->status);
    vals[V_STATUS] = status;
    vals[V_ERROR] = f->error;
    vals[V_TITLE] = f->title;
    vals[V_MESSAGE] = f->message;
    vals[V_EMAIL] = f->email;
    vals[V_HOST] = f->host;
    vals[V_REQUEST_ID] = f->request_id;
    vals[V_SIGN_OUT_URL] = safe_link(f->sign_out_url);
    vals[V_SIGN_IN_URL] = safe_link(f->sign_in_url);
    if (authd_pages_custom(p, kind)) {
        rc = walk(p->text[kind], p->len[kind], vals, out, NULL);
        if (rc == 0)
            return 0;
        /* An operator page that outgrows the reply falls back to the built-in one. */
        pc_buf_reset(out);
    }
    rc = walk(builtin[kind], strlen(builtin[kind]), vals, out, NULL);
    return rc;
}

const char *
authd_page_type(bool json)
{
    return json ? "application/json" : "text/html; charset=utf-8";
}

const char *
authd_page_error_code(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 431:
        return "request_too_large";
    case 503:
        return "unavailable";
    default:
        return "error";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* request ids */

/*
 * A request id is a per-process counter put through a keyed permutation of 50-bit numbers (a
 * four-round Feistel network on two 25-bit halves, keys drawn once per process), written as
 * ten base-32 characters. Within a process ids never repeat (the counter runs for 2^50
 * requests); across processes the random keys make a clash unlikely; and the id tells nothing
 * about how many requests came before it.
 */
static const char id_alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
static uint64_t id_keys[4];
static pthread_once_t id_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t id_counter;

static void
id_init(void)
{
    if (pc_random_bytes(id_keys, sizeof(id_keys)) != 0)
        abort(); /* no randomness: nothing in authd can work */
}

static uint32_t
id_round(uint32_t half, uint64_t key)
{
    uint64_t x = ((uint64_t)half ^ key) * 0x9e3779b97f4a7c15ULL;

    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    return (uint32_t)(x >> 39) & 0x1ffffff;
}

void
authd_request_id(char out[AUTHD_REQUEST_ID_LEN + 1])
{
    uint64_t n;
    uint32_t l, r;

    pthread_once(&id_once, id_init);
    n = atomic_fetch_add(&id_counter, 1);
    l = (uint32_t)(n >> 25) & 0x1ffffff;
    r = (uint32_t)n & 0x1ffffff;
    for (int i = 0; i < 4; i++) {
        uint32_t t = l ^ id_round(r, id_keys[i]);
        l = r;
        r = t;
    }
    n = (uint64_t)l << 25 | r;
    for (int i = AUTHD_REQUEST_ID_LEN - 1; i >= 0; i--, n >>= 5)
        out[i] = id_alphabet[n & 31];
    out[AUTHD_REQUEST_ID_LEN] = '\0';
}

/* This runs for every check, allowed ones included: no formatting, no header scans. */
void
authd_page_ctx_init(struct authd_page_ctx *c, const struct authd_pages *pages, const char *host)
{
    authd_request_id(c->request_id);
    c->pages = pages;
    c->json = false;
    authd_page_ctx_host(c, host);
}

void
authd_page_ctx_host(struct authd_page_ctx *c, const char *host)
{
    size_t n = host ? strnlen(host, sizeof(c->host) - 1) : 0;

    memcpy(c->host, host ? host : "", n);
    c->host[n] = '\0';
}
