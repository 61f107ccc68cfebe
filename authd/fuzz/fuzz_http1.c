/*
 * libFuzzer target: whole request heads of the auth port, through everything the check path
 * does with them before any I/O: the HTTP/1.1 head parser, host matching (Host and
 * X-Forwarded-Host), the Envoy prefix, query parameters (rd, state, code), redirect
 * validation, the Cookie header (session, strip), the bearer header and the decision.
 * Properties checked: a skip verdict never covers a path with dot segments, encoded slashes or
 * dots, path parameters or doubled slashes; a head read in pieces (cut at growing offsets)
 * gets the verdict and length it gets in one read.
 */
#include <stddef.h>
#include <stdint.h>
#include <strings.h>

#include "fuzz_common.h"

static bool
contains_ci(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);

    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(s + i, needle, k) == 0)
            return true;
    return false;
}

static void
check_skip(const struct authd_decision *d, const char *path)
{
    static const char *const bad[] = {"/../", "/./", "//", ";", "%2e", "%2f", "%5c", "%25", NULL};
    size_t n = strcspn(path, "?#");
    char tmp[AUTHD_MAX_TARGET + 2];

    if (d->verdict != AUTHD_SKIP || n + 2 > sizeof(tmp))
        return;
    memcpy(tmp, path, n);
    tmp[n] = '/';
    tmp[n + 1] = '\0';
    for (size_t i = 0; bad[i] != NULL; i++)
        if (contains_ci(tmp, n + 1, bad[i]))
            abort();
}

static void
query_params(const struct authd_config *cfg, const char *host, const char *query)
{
    static const char *const names[] = {"rd", "state", "code", "error", NULL};

    for (size_t i = 0; names[i] != NULL; i++) {
        char *v = authd_query_param(query, names[i]), *out = NULL;

        if (v != NULL && authd_redirect_validate(cfg, host, v, &out) == 0 && out[0] != '/' &&
            strncmp(out, "http://", 7) != 0 && strncmp(out, "https://", 8) != 0)
            abort();
        free(out);
        free(v);
    }
}

static void
decide(const struct authd_config *cfg, const struct authd_http *h, const char *path,
       enum authd_door door, const char *host)
{
    struct authd_session *s = NULL;
    struct authd_request req = {.door = door,
                                .method = h->method,
                                .host = host,
                                .path = path,
                                .accept = h->accept,
                                .x_requested_with = h->x_requested_with,
                                .sec_fetch_mode = h->sec_fetch_mode,
                                .authorization = h->authorization,
                                .cookie = h->cookie,
                                .x_forwarded_proto = h->x_forwarded_proto};
    struct authd_decide_input in = {.req = &req, .bearer_rc = PC_ENOTFOUND, .now = 1700000000};
    struct authd_decision d;

    in.host = authd_config_match_host(cfg, host);
    in.session_rc =
        in.host ? authd_session_open(&cfg->keys, in.host, h->cookie, in.now, &s) : PC_ENOTFOUND;
    in.session = s;
    if (authd_decide(&in, &d) == 0)
        check_skip(&d, path);
    authd_decision_release(&d);
    authd_session_free(s);
}

/*
 * The result of parsing data read in pieces of 1, 2, 3, ... bytes, as a connection would. Bytes
 * not yet read are LFs: a parser that looked past what it was given would see a bare LF LF.
 */
static int
parse_in_pieces(const uint8_t *data, size_t size, size_t *head_len)
{
    char *buf = malloc(size + 1);
    struct authd_http1_scan scan = {0};
    struct authd_http1_req req;
    int rc = PC_EMORE;

    memset(buf, '\n', size);
    buf[size] = '\0';
    for (size_t len = 0, step = 1; rc == PC_EMORE && len < size; step++) {
        size_t prev = len;

        len = len + step < size ? len + step : size;
        memcpy(buf + prev, data + prev, len - prev);
        rc = authd_http1_parse_resume(&scan, buf, len, &req);
        *head_len = req.head_len;
        authd_http1_req_release(&req);
    }
    if (scan.examined > 2 * size)
        abort();
    free(buf);
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct authd_config *cfg = fuzz_config();
    char *buf = fuzz_string(data, size), *bearer;
    struct authd_http1_req req;
    const struct authd_http *h = &req.h;
    const char *orig;
    struct authd_origin direct, nginx;
    size_t pieces_len = 0;
    int rc = authd_http1_parse(buf, size, &req);

    if (parse_in_pieces(data, size, &pieces_len) != rc || (rc == 0 && pieces_len != req.head_len))
        abort();
    if (rc == 0) {
        if (req.head_len > size || strchr(h->path, '?') != NULL)
            abort();
        if (authd_origin_direct(cfg, h, &direct) == 0)
            query_params(cfg, direct.host, h->query);
        free(authd_cookie_strip(h->cookie, "_portcullis"));
        bearer = authd_bearer_from_header(h->authorization);
        free(bearer);
        if ((orig = authd_envoy_original_path("/ext-authz", h->uri)) != NULL)
            decide(cfg, h, orig, AUTHD_DOOR_ENVOY, h->host ? h->host : "");
        if (authd_origin_nginx(cfg, h, &nginx) == 0)
            decide(cfg, h, nginx.path, AUTHD_DOOR_NGINX, nginx.host);
    }
    authd_http1_req_release(&req);
    free(buf);
    return 0;
}
