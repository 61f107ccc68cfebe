/*
 * test_http1.c - request heads of the auth port: the target is kept exactly as sent, and
 * anything two HTTP parsers could read differently is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"

/* Parses text (copied, so the parser may write into it). */
static int
parse(const char *text, size_t len, struct authd_http1_req *req, char **copy)
{
    *copy = malloc(len + 1);
    memcpy(*copy, text, len);
    (*copy)[len] = '\0';
    return authd_http1_parse(*copy, len, req);
}

/*
 * Feeds text to authd_http1_parse_resume one byte at a time, as a connection receiving one
 * byte per segment would, until the result is not PC_EMORE. Bytes not yet "received" are LFs,
 * so a parser that read past len would see a bare LF LF and fail. scan is left for the caller.
 */
static int
trickle(const char *text, size_t len, struct authd_http1_req *req, char **copy,
        struct authd_http1_scan *scan)
{
    int rc = PC_EMORE;

    *copy = malloc(len + 1);
    memset(*copy, '\n', len);
    (*copy)[len] = '\0';
    memset(scan, 0, sizeof(*scan));
    memset(req, 0, sizeof(*req));
    for (size_t i = 1; i <= len && rc == PC_EMORE; i++) {
        authd_http1_req_release(req);
        (*copy)[i - 1] = text[i - 1];
        rc = authd_http1_parse_resume(scan, *copy, i, req);
    }
    return rc;
}

static void
test_raw_target(void **state)
{
    static const char *const targets[] = {
        "/ext-authz/admin/..%2fpublic/x", "/ext-authz/admin/../public/x",
        "/ext-authz/public/..;/admin",    "/ext-authz/public/&/../admin",
        "/ext-authz//public/./x",         "/ext-authz/a+b%20c",
        "/ext-authz/%2e%2e/%252e",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        char text[512], *copy;
        struct authd_http1_req req;

        snprintf(text, sizeof(text), "GET %s?rd=%%2Fx&y=1 HTTP/1.1\r\nHost: a\r\n\r\n", targets[i]);
        assert_int_equal(parse(text, strlen(text), &req, &copy), 0);
        assert_string_equal(req.h.path, targets[i]);
        assert_string_equal(req.h.query, "rd=%2Fx&y=1");
        assert_int_equal(strncmp(req.h.uri, targets[i], strlen(targets[i])), 0);
        assert_string_equal(req.h.uri + strlen(targets[i]), "?rd=%2Fx&y=1");
        authd_http1_req_release(&req);
        free(copy);
    }
}

static void
test_fields(void **state)
{
    const char *text = "HEAD /p HTTP/1.1\r\n"
                       "host:  App.Example.com:8443 \r\n"
                       "Cookie: a=1\r\n"
                       "Accept: text/html\r\n"
                       "Accept: application/json\r\n"
                       "X-Forwarded-Proto: http\r\n"
                       "X-Forwarded-Host: fh\r\n"
                       "X-Original-URI: /o?x=1\r\n"
                       "X-Original-URL: https://h/o\r\n"
                       "Authorization: Bearer t\r\n"
                       "X-Requested-With: XMLHttpRequest\r\n"
                       "Sec-Fetch-Mode: navigate\r\n"
                       "cookie: b=2\r\n"
                       "Content-Length: 5\r\n"
                       "\r\nhelloGET /next HTTP/1.1\r\n\r\n";
    struct authd_http1_req req;
    char *copy;

    (void)state;
    assert_int_equal(parse(text, strlen(text), &req, &copy), 0);
    assert_string_equal(req.h.method, "HEAD");
    assert_true(req.h.head);
    assert_string_equal(req.h.query, "");
    assert_string_equal(req.h.host, "App.Example.com:8443");
    assert_string_equal(req.h.cookie, "a=1; b=2");
    assert_string_equal(req.h.accept, "text/html");
    assert_string_equal(req.h.x_forwarded_proto, "http");
    assert_string_equal(req.h.x_forwarded_host, "fh");
    assert_string_equal(req.h.x_original_uri, "/o?x=1");
    assert_string_equal(req.h.x_original_url, "https://h/o");
    assert_string_equal(req.h.authorization, "Bearer t");
    assert_string_equal(req.h.x_requested_with, "XMLHttpRequest");
    assert_string_equal(req.h.sec_fetch_mode, "navigate");
    assert_int_equal(req.content_length, 5);
    assert_true(req.keep_alive);
    assert_memory_equal(copy + req.head_len, "helloGET /next", 14);
    authd_http1_req_release(&req);
    free(copy);
}

static void
test_connection(void **state)
{
    static const struct {
        const char *text;
        bool keep_alive;
    } rows[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, Close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct authd_http1_req req;
        char *copy;

        assert_int_equal(parse(rows[i].text, strlen(rows[i].text), &req, &copy), 0);
        assert_int_equal(req.keep_alive, rows[i].keep_alive);
        authd_http1_req_release(&req);
        free(copy);
    }
}

static void
test_refused(void **state)
{
    static const struct {
        const char *name, *text;
        int want;
    } rows[] = {
        {"incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", PC_EMORE},
        {"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", PC_EPARSE},
        {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", PC_EPARSE},
        {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", PC_EPARSE},
        {"two authorizations",
         "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nauthorization: b\r\n\r\n", PC_EPARSE},
        {"two original uris",
         "GET / HTTP/1.1\r\nHost: h\r\nX-Original-URI: /a\r\nX-Original-URI: /b\r\n\r\n",
         PC_EPARSE},
        {"two forwarded hosts",
         "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: a\r\nX-Forwarded-Host: b\r\n\r\n",
         PC_EPARSE},
        {"cl and te",
         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         PC_EPARSE},
        {"two lengths",
         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", PC_EPARSE},
        {"signed length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n", PC_EPARSE},
        {"bare lf", "GET / HTTP/1.1\nHost: a\r\n\r\n", PC_EPARSE},
        {"bare lf only", "GET / HTTP/1.1\nHost: a\n\n", PC_EPARSE},
        {"bare lf end", "GET / HTTP/1.1\r\nHost: a\r\n\n", PC_EPARSE},
        {"cr in value", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", PC_EPARSE},
        {"ctl in value", "GET / HTTP/1.1\r\nHost: h\r\nCookie: a=\x01\r\n\r\n", PC_EPARSE},
        {"del in value", "GET / HTTP/1.1\r\nHost: h\r\nCookie: a=\x7f\r\n\r\n", PC_EPARSE},
        {"no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", PC_EPARSE},
        {"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", PC_EPARSE},
        {"absolute form", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", PC_EPARSE},
        {"asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", PC_EPARSE},
        {"non-ascii target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", PC_EPARSE},
        {"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", PC_EPARSE},
        {"http/2 line", "GET / HTTP/2.0\r\n\r\n", PC_EPARSE},
        {"no version", "GET /\r\n\r\n", PC_EPARSE},
        {"method with slash", "G/T / HTTP/1.1\r\nHost: a\r\n\r\n", PC_EPARSE},
        {"long method", "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\nHost: a\r\n\r\n", PC_EPARSE},
        {"leading empty line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", PC_EPARSE},
        /* RFC 9112 §3.2: an HTTP/1.1 request needs exactly one valid Host. */
        {"no host", "GET / HTTP/1.1\r\n\r\n", PC_EPARSE},
        {"no host, forwarded host", "GET / HTTP/1.1\r\nX-Forwarded-Host: a\r\n\r\n", PC_EPARSE},
        {"host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", PC_EPARSE},
        {"host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", PC_EPARSE},
        {"host with userinfo", "GET / HTTP/1.1\r\nHost: evil@a\r\n\r\n", PC_EPARSE},
        {"host with query", "GET / HTTP/1.1\r\nHost: a?b\r\n\r\n", PC_EPARSE},
        {"host non-ascii", "GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", PC_EPARSE},
        /* RFC 9112 §6: a lone chunked or nothing. */
        {"te gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", PC_EPARSE},
        {"te identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
         PC_EPARSE},
        {"te chunked then gzip",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", PC_EPARSE},
        {"te gzip then chunked",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", PC_EINVAL},
        {"te chunked twice",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", PC_EPARSE},
        {"te two lines",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
         "chunked\r\n\r\n",
         PC_EPARSE},
        {"te two lines, gzip second",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
         "gzip\r\n\r\n",
         PC_EPARSE},
        {"te parameter", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
         PC_EPARSE},
        {"te empty", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", PC_EPARSE},
        {"te empty element", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n",
         PC_EPARSE},
        {"te junk", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked x\r\n\r\n",
         PC_EPARSE},
        {"te vertical tab",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0b"
         "chunked\r\n\r\n",
         PC_EPARSE},
        {"te in http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", PC_EPARSE},
        {"te then cl",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
         "Content-Length: 3\r\n\r\n",
         PC_EPARSE},
        {"cl list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n", PC_EPARSE},
        {"cl empty", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", PC_EPARSE},
        {"cl too long", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890123456\r\n\r\n",
         PC_EPARSE},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct authd_http1_req req;
        char *copy;
        struct authd_http1_scan scan;
        int rc = parse(rows[i].text, strlen(rows[i].text), &req, &copy);

        if (rc != rows[i].want)
            fail_msg("%s: got %d, want %d", rows[i].name, rc, rows[i].want);
        authd_http1_req_release(&req);
        free(copy);
        /* The same verdict when the head arrives a byte at a time. */
        rc = trickle(rows[i].text, strlen(rows[i].text), &req, &copy, &scan);
        if (rc != rows[i].want)
            fail_msg("%s, trickled: got %d, want %d", rows[i].name, rc, rows[i].want);
        authd_http1_req_release(&req);
        free(copy);
    }
}

/* Framing and Host forms that are accepted, and what they mean. */
static void
test_accepted(void **state)
{
    static const struct {
        const char *name, *text;
        bool chunked;
        int64_t content_length;
        const char *host;
    } rows[] = {
        {"te chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", true, -1,
         "h"},
        {"te case and whitespace",
         "POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: \t CHUNKED \t\r\n\r\n", true, -1, "h"},
        {"cl repeated, same value",
         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", false, 3,
         "h"},
        {"cl leading zeros", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", false, 7,
         "h"},
        {"http/1.0 without host", "GET / HTTP/1.0\r\n\r\n", false, -1, NULL},
        {"host with port", "GET / HTTP/1.1\r\nHost: App.Example.com:8443\r\n\r\n", false, -1,
         "App.Example.com:8443"},
        {"host ipv6", "GET / HTTP/1.1\r\nHost: [::1]:4180\r\n\r\n", false, -1, "[::1]:4180"},
        {"host empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n", false, -1, ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct authd_http1_req req;
        char *copy;
        int rc = parse(rows[i].text, strlen(rows[i].text), &req, &copy);

        if (rc != 0)
            fail_msg("%s: got %d, want 0", rows[i].name, rc);
        assert_int_equal(req.chunked, rows[i].chunked);
        assert_int_equal(req.content_length, rows[i].content_length);
        if (rows[i].host == NULL)
            assert_null(req.h.host);
        else
            assert_string_equal(req.h.host, rows[i].host);
        authd_http1_req_release(&req);
        free(copy);
    }
}

/*
 * A 60 KB head received a byte per read is searched once: the bytes the parser examines over
 * all the reads stay linear in the head's size (a rescan from the start on every read would
 * examine ~n^2/2 = 1.8 G bytes here), and the result is the one of a single read.
 */
static void
test_trickled_head_linear(void **state)
{
    struct pc_buf b;
    struct authd_http1_req req;
    struct authd_http1_scan scan;
    char *copy;

    (void)state;
    pc_buf_init(&b, 0);
    pc_buf_appends(&b, "GET /ext-authz/x HTTP/1.1\r\nHost: app.example.com\r\n");
    for (int i = 0; b.len < 60 * 1024; i++)
        pc_buf_appendf(&b, "X-Pad-%d: %0500d\r\n", i, i);
    pc_buf_appends(&b, "Cookie: a=1\r\n\r\nGET /next HTTP/1.1\r\n");
    assert_int_equal(trickle(b.data, b.len, &req, &copy, &scan), 0);
    assert_int_equal(req.head_len, b.len - strlen("GET /next HTTP/1.1\r\n"));
    assert_string_equal(req.h.host, "app.example.com");
    assert_string_equal(req.h.cookie, "a=1");
    assert_true(scan.examined <= 2 * req.head_len);
    authd_http1_req_release(&req);
    free(copy);
    /* The end of the head split across reads at every position is still found. */
    for (size_t cut = 1; cut < 8; cut++) {
        const char *text = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        size_t len = strlen(text);

        copy = strdup(text);
        memset(&scan, 0, sizeof(scan));
        assert_int_equal(authd_http1_parse_resume(&scan, copy, len - cut, &req), PC_EMORE);
        authd_http1_req_release(&req);
        assert_int_equal(authd_http1_parse_resume(&scan, copy, len, &req), 0);
        assert_int_equal(req.head_len, len);
        authd_http1_req_release(&req);
        free(copy);
    }
    pc_buf_release(&b);
}

static void
test_nul_byte(void **state)
{
    static const char text[] = "GET / HTTP/1.1\r\nCookie: a=1\0b\r\n\r\n";
    struct authd_http1_req req;
    char *copy;

    (void)state;
    assert_int_equal(parse(text, sizeof(text) - 1, &req, &copy), PC_EPARSE);
    authd_http1_req_release(&req);
    free(copy);
}

static void
test_bounds(void **state)
{
    size_t n = AUTHD_MAX_HEAD + 100;
    char *big = malloc(n + 1), *copy;
    struct authd_http1_req req;
    int off;

    (void)state;
    /* No end of head within AUTHD_MAX_HEAD bytes. */
    memset(big, 'a', n);
    off = snprintf(big, n, "GET / HTTP/1.1\r\nX-Pad: ");
    big[off] = 'a';
    assert_int_equal(parse(big, n, &req, &copy), PC_ETOOBIG);
    authd_http1_req_release(&req);
    free(copy);
    /* A target over AUTHD_MAX_TARGET. */
    memset(big, 'a', n);
    memcpy(big, "GET /", 5);
    memcpy(big + 5 + AUTHD_MAX_TARGET, " HTTP/1.1\r\n\r\n", 13);
    assert_int_equal(parse(big, 5 + AUTHD_MAX_TARGET + 13, &req, &copy), PC_ETOOBIG);
    authd_http1_req_release(&req);
    free(copy);
    /* Too many fields. */
    off = snprintf(big, n, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= AUTHD_MAX_FIELDS; i++)
        off += snprintf(big + off, n - (size_t)off, "X-%d: v\r\n", i);
    off += snprintf(big + off, n - (size_t)off, "\r\n");
    assert_int_equal(parse(big, (size_t)off, &req, &copy), PC_ETOOBIG);
    authd_http1_req_release(&req);
    free(copy);
    /* Joined Cookie fields over AUTHD_MAX_COOKIE_HEADER. */
    off = snprintf(big, n, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 10; i++) {
        off += snprintf(big + off, n - (size_t)off, "Cookie: c%d=", i);
        memset(big + off, 'v', 2000);
        off += 2000;
        off += snprintf(big + off, n - (size_t)off, "\r\n");
    }
    off += snprintf(big + off, n - (size_t)off, "\r\n");
    assert_int_equal(parse(big, (size_t)off, &req, &copy), PC_ETOOBIG);
    authd_http1_req_release(&req);
    free(copy);
    free(big);
}

static void
test_query_param(void **state)
{
    static const struct {
        const char *query, *name, *want;
    } rows[] = {
        {"rd=%2Fx%3Fy%3D1&b=2", "rd", "/x?y=1"},
        {"a=1&rd=/z", "rd", "/z"},
        {"ard=1&rd=2", "rd", "2"},
        {"rd", "rd", NULL},
        {"rd=", "rd", ""},
        {"", "rd", NULL},
        {"error_description=a+b%20c", "error_description", "a b c"},
        {"state=abc&state=def", "state", "abc"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *v = authd_query_param(rows[i].query, rows[i].name);

        if (rows[i].want == NULL)
            assert_null(v);
        else
            assert_string_equal(v, rows[i].want);
        free(v);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_target),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_connection),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_trickled_head_linear),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
