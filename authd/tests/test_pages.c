/*
 * test_pages.c - the template engine (escaping of every placeholder, sections, refused
 * templates with their line and column), the JSON twin, the built-in pages, operator templates
 * loaded through the config (fallback per file, errors naming file:line) and request ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"

#define HOSTILE "<script>alert(\"x\")</script>' & `=`"
#define HOSTILE_HTML "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; &amp; &#96;&#61;&#96;"

/* Renders text as the error page's template with f. */
static char *
render_with(const char *text, const struct authd_page_fields *f, bool json)
{
    struct authd_pages *p = authd_pages_new();
    struct pc_diag diag = {0};
    struct pc_buf b;

    pc_buf_init(&b, AUTHD_MAX_PAGE);
    assert_int_equal(authd_pages_set(p, AUTHD_PAGE_ERROR, text, strlen(text), &diag), 0);
    assert_int_equal(authd_page_render(p, AUTHD_PAGE_ERROR, f, json, &b), 0);
    authd_pages_put(p);
    return pc_buf_detach(&b);
}

/* Every string placeholder is HTML-escaped, whatever it holds. */
static void
test_every_placeholder_escaped(void **state)
{
    static const char *const names[] = {"error", "title",      "message",      "email",
                                        "host",  "request_id", "sign_out_url", "sign_in_url"};

    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct authd_page_fields f = {.status = 403};
        const char **slot[] = {&f.error, &f.title,      &f.message,      &f.email,
                               &f.host,  &f.request_id, &f.sign_out_url, &f.sign_in_url};
        bool link = strstr(names[i], "_url") != NULL; /* links start with "/" to be kept */
        char *tpl = pc_xasprintf("<a href=\"{{%s}}\">[{{ %s }}]</a>", names[i], names[i]);
        char *want = pc_xasprintf("<a href=\"%s%s\">[%s%s]</a>", link ? "/" : "", HOSTILE_HTML,
                                  link ? "/" : "", HOSTILE_HTML);
        char *out;

        *slot[i] = link ? "/" HOSTILE : HOSTILE;
        out = render_with(tpl, &f, false);
        assert_string_equal(out, want);
        free(out);
        free(tpl);
        free(want);
    }
    {
        struct authd_page_fields f = {.status = 403};
        char *out = render_with("{{status}}", &f, false);

        assert_string_equal(out, "403");
        free(out);
    }
}

/* Links on a page are paths or http(s) URLs: nothing that runs, nothing on another host. */
static void
test_links(void **state)
{
    static const struct {
        const char *url;
        bool kept;
    } cases[] = {
        {"/oauth2/sign_out", true},      {"https://app.example.com/x", true},
        {"http://app.localhost/", true}, {"javascript:alert(1)", false},
        {"//evil.example.com/", false},  {"/\\evil.example.com", false},
        {"data:text/html,x", false},     {" /x", false},
        {"JavaScript:alert(1)", false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_page_fields f = {.sign_out_url = cases[i].url, .sign_in_url = cases[i].url};
        char *out = render_with("{{sign_out_url}}|{{#sign_in_url}}in{{/sign_in_url}}", &f, false);
        struct pc_buf want;

        pc_buf_init(&want, 0);
        if (cases[i].kept) {
            authd_html_escape(&want, cases[i].url);
            pc_buf_appends(&want, "|in");
        } else {
            pc_buf_appends(&want, "|");
        }
        if (strcmp(out, pc_buf_str(&want)) != 0)
            fail_msg("%s: got \"%s\"", cases[i].url, out);
        pc_buf_release(&want);
        free(out);
    }
}

static void
test_values_sanitized(void **state)
{
    static const struct {
        const char *value, *want;
    } cases[] = {
        {"Zo\xc3\xab", "Zo\xc3\xab"},                             /* UTF-8 kept */
        {"bad\xff\xfe", "bad\xef\xbf\xbd\xef\xbf\xbd"},           /* invalid: U+FFFD */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong "/" */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"a\x01"
         "b\x7f",
         "a\xef\xbf\xbd"
         "b\xef\xbf\xbd"}, /* controls */
        {"line\nnext\ttab", "line\nnext\ttab"},
        {"", ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_page_fields f = {.message = cases[i].value};
        char *out = render_with("{{message}}", &f, false);

        assert_string_equal(out, cases[i].want);
        free(out);
    }
}

/* A value over AUTHD_MAX_PAGE_VALUE bytes is cut at a character boundary, with an ellipsis. */
static void
test_long_value_cut(void **state)
{
    char *big = malloc(4001), *out;
    struct authd_page_fields f = {0};

    (void)state;
    for (int i = 0; i < 4000; i += 2)
        memcpy(big + i, "\xc3\xa9", 2); /* é */
    big[4000] = '\0';
    f.message = big;
    out = render_with("{{message}}", &f, false);
    assert_int_equal(strlen(out), AUTHD_MAX_PAGE_VALUE + 3);
    assert_memory_equal(out + AUTHD_MAX_PAGE_VALUE, "\xe2\x80\xa6", 3);
    free(out);
    free(big);
}

static void
test_sections(void **state)
{
    static const char tpl[] = "{{#email}}as {{email}}{{/email}}{{^email}}nobody{{/email}}"
                              "|{{#host}}{{#sign_out_url}}<a href=\"{{sign_out_url}}\">out</a>"
                              "{{/sign_out_url}}{{/host}}";
    struct authd_page_fields with = {.email = "bob@example.com", .host = "h", .sign_out_url = "/o"};
    struct authd_page_fields without = {.email = "", .sign_out_url = "/o"};
    char *out;

    (void)state;
    out = render_with(tpl, &with, false);
    assert_string_equal(out, "as bob@example.com|<a href=\"/o\">out</a>");
    free(out);
    out = render_with(tpl, &without, false);
    assert_string_equal(out, "nobody|");
    free(out);
}

/* Text that only looks like a tag stays text. */
static void
test_accepted(void **state)
{
    static const struct {
        const char *tpl, *want;
    } cases[] = {
        {"a { b } c }} d {", "a { b } c }} d {"},
        {"{{ title }}{{title}}{{  title  }}", "TTT"},
        {"<style>p{color:red}</style>{", "<style>p{color:red}</style>{"},
        {"", ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_page_fields f = {.title = "T"};
        char *out = render_with(cases[i].tpl, &f, false);

        assert_string_equal(out, cases[i].want);
        free(out);
    }
}

/* Unknown names and broken tags are refused at load, with line and column. */
static void
test_refused(void **state)
{
    static const struct {
        const char *tpl;
        int line, col;
        const char *msg;
    } cases[] = {
        {"<p>{{nope}}</p>", 1, 4, "unknown placeholder \"{{nope}}\""},
        {"<p>\n  x {{ Title }}\n", 2, 5, "unknown placeholder \"{{ Title }}\""},
        {"{{{message}}}", 1, 1, "raw placeholders are not supported"},
        {"ok\n{{title", 2, 1, "unterminated placeholder"},
        {"{{#email}}x", 1, 1, "section \"{{email}}\" is never closed"},
        {"x{{/email}}", 1, 2, "\"{{/email}}\" closes no open"},
        {"{{#email}}{{/host}}", 1, 11, "\"{{/host}}\" closes no open"},
        {"{{#nope}}{{/nope}}", 1, 1, "unknown placeholder \"{{#nope}}\""},
        {"{{}}", 1, 1, "unknown placeholder"},
        {"{{#a}}", 1, 1, "unknown placeholder"},
        {"{{#host}}{{#host}}{{#host}}{{#host}}{{#host}}{{#host}}{{#host}}{{#host}}{{#host}}", 1, 73,
         "nested deeper than 8"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pc_diag diag = {0};
        int rc = authd_template_check(cases[i].tpl, strlen(cases[i].tpl), &diag);

        if (rc != PC_EPARSE || diag.line != cases[i].line || diag.col != cases[i].col ||
            strstr(diag.msg, cases[i].msg) == NULL)
            fail_msg("case %zu: rc %d at %d:%d \"%s\"", i, rc, diag.line, diag.col, diag.msg);
    }
    {
        struct pc_diag diag = {0};
        assert_int_equal(authd_template_check("a\0{{title}}", 11, &diag), PC_EPARSE);
        assert_non_null(strstr(diag.msg, "NUL"));
    }
    {
        struct pc_diag diag = {0};
        char *big = calloc(1, AUTHD_MAX_TEMPLATE + 2);
        memset(big, 'x', AUTHD_MAX_TEMPLATE + 1);
        assert_int_equal(authd_template_check(big, AUTHD_MAX_TEMPLATE + 1, &diag), PC_ETOOBIG);
        free(big);
    }
}

/* The JSON twin: the same fields, valid JSON whatever the values hold. */
static void
test_json_twin(void **state)
{
    struct authd_page_fields f = {.status = 403,
                                  .error = "forbidden",
                                  .title = "Access denied",
                                  .message = "q\"b\\s</script>\n\x01 bad\xff \xe2\x80\xa8",
                                  .email = "bob@example.com",
                                  .host = "app.example.com",
                                  .request_id = "abc123defg",
                                  .sign_out_url = "/oauth2/sign_out"};
    json_error_t err;
    json_t *o;
    char *out;

    (void)state;
    out = render_with("<p>{{message}}</p>", &f, true);
    assert_null(strstr(out, "</script>")); /* "<" is \u003c: safe even if sniffed as HTML */
    assert_null(strstr(out, "\xe2\x80\xa8"));
    o = json_loads(out, 0, &err);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 6);
    assert_string_equal(json_string_value(json_object_get(o, "error")), "forbidden");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 403);
    assert_string_equal(json_string_value(json_object_get(o, "message")),
                        "q\"b\\s</script>\n\x01 bad\xef\xbf\xbd \xe2\x80\xa8");
    assert_string_equal(json_string_value(json_object_get(o, "host")), "app.example.com");
    assert_string_equal(json_string_value(json_object_get(o, "email")), "bob@example.com");
    assert_string_equal(json_string_value(json_object_get(o, "request_id")), "abc123defg");
    json_decref(o);
    free(out);

    /* Nothing known: nulls, never a missing key. */
    struct authd_page_fields none = {.status = 401, .error = "unauthorized", .message = "m"};
    out = render_with("x", &none, true);
    assert_string_equal(out, "{\"error\":\"unauthorized\",\"status\":401,\"message\":\"m\","
                             "\"host\":null,\"email\":null,\"request_id\":null}\n");
    free(out);
}

/* The built-in pages: valid templates, say what happened, link nothing external. */
static void
test_builtin(void **state)
{
    struct authd_page_fields f = {.status = 403,
                                  .error = "forbidden",
                                  .title = "Access denied",
                                  .message = "You are signed in, but not allowed.",
                                  .email = "bob@example.com",
                                  .host = "app.example.com",
                                  .request_id = "abc123defg",
                                  .sign_out_url = "/oauth2/sign_out",
                                  .sign_in_url = "/"};
    struct pc_buf b;

    (void)state;
    pc_buf_init(&b, AUTHD_MAX_PAGE);
    for (int k = 0; k < AUTHD_PAGE_COUNT; k++) {
        const char *t = authd_page_builtin((enum authd_page)k), *out;
        struct pc_diag diag = {0};

        assert_int_equal(authd_template_check(t, strlen(t), &diag), 0);
        assert_null(strstr(t, "http://"));
        assert_null(strstr(t, "https://"));
        assert_null(strstr(t, "src="));
        assert_null(strstr(t, "<link"));
        assert_null(strstr(t, "<script"));
        assert_int_equal(authd_page_render(NULL, (enum authd_page)k, &f, false, &b), 0);
        out = pc_buf_str(&b);
        assert_non_null(strstr(out, "<html lang=\"en\">"));
        assert_non_null(strstr(out, "name=\"viewport\""));
        assert_non_null(strstr(out, "<h1>Access denied</h1>"));
        assert_non_null(strstr(out, "bob@example.com"));
        assert_non_null(strstr(out, "app.example.com"));
        assert_non_null(strstr(out, "abc123defg"));
        assert_true(b.len < 4096);
    }
    assert_int_equal(authd_page_render(NULL, AUTHD_PAGE_FORBIDDEN, &f, false, &b), 0);
    assert_non_null(strstr(pc_buf_str(&b), "<a href=\"/oauth2/sign_out\">Sign out and use another "
                                           "account</a>"));
    assert_int_equal(authd_page_render(NULL, AUTHD_PAGE_SIGNED_OUT, &f, false, &b), 0);
    assert_non_null(strstr(pc_buf_str(&b), "<a href=\"/\">Sign in again</a>"));
    /* No account, no sign-out path: neither line is shown. */
    f.email = NULL;
    f.sign_out_url = NULL;
    assert_int_equal(authd_page_render(NULL, AUTHD_PAGE_FORBIDDEN, &f, false, &b), 0);
    assert_null(strstr(pc_buf_str(&b), "Signed in as"));
    assert_null(strstr(pc_buf_str(&b), "Sign out"));
    pc_buf_release(&b);
}

/* An operator page that would not fit the reply falls back to the built-in page. */
static void
test_oversized_falls_back(void **state)
{
    struct pc_buf tpl;
    struct authd_page_fields f = {.status = 403, .title = "T"};
    char *msg = malloc(AUTHD_MAX_PAGE_VALUE + 1), *out;

    (void)state;
    memset(msg, '<', AUTHD_MAX_PAGE_VALUE);
    msg[AUTHD_MAX_PAGE_VALUE] = '\0';
    f.message = msg;
    pc_buf_init(&tpl, 0);
    pc_buf_appends(&tpl, "CUSTOM");
    while (tpl.len + 12 < AUTHD_MAX_TEMPLATE)
        pc_buf_appends(&tpl, "{{message}}");
    out = render_with(pc_buf_str(&tpl), &f, false);
    assert_null(strstr(out, "CUSTOM"));
    assert_non_null(strstr(out, "<h1>T</h1>"));
    free(out);
    free(msg);
    pc_buf_release(&tpl);
}

/* ---- operator templates through the config ---- */

struct files {
    const char *forbidden, *error, *signed_out;
    int error_rc; /* returned for error.html when set */
};

static int
files_reader(void *ud, const char *path, char **data, size_t *len)
{
    const struct files *fs = ud;
    const char *text = NULL;

    if (strstr(path, "secret")) {
        text = "0123456789abcdef0123456789abcdef";
    } else if (strstr(path, "/tpl/forbidden.html")) {
        text = fs->forbidden;
    } else if (strstr(path, "/tpl/error.html")) {
        if (fs->error_rc)
            return fs->error_rc;
        text = fs->error;
    } else if (strstr(path, "/tpl/signed_out.html")) {
        text = fs->signed_out;
    }
    if (text == NULL)
        return -ENOENT;
    *data = strdup(text);
    *len = strlen(text);
    return 0;
}

static int
parse(const char *yaml, const struct files *fs, const char *flag_dir, struct authd_config **cfg,
      char *msg, size_t n)
{
    struct authd_overrides ov = {.templates_dir = flag_dir};
    struct authd_config_opts opts = {
        .file = "config.yaml", .read_file = files_reader, .ud = (void *)fs, .overrides = &ov};
    struct pc_diag diag = {0};
    int rc = authd_config_parse(yaml, strlen(yaml), &opts, cfg, &diag);

    pc_diag_format(&diag, msg, n);
    return rc;
}

#define HEAD                                                                                       \
    "cookieSecretFiles: [/secret]\n"                                                               \
    "hosts:\n"                                                                                     \
    "- {id: a/b, hosts: [a.example.com], oidc: {issuerURL: 'https://idp', clientID: a}}\n"

static void
test_config_templates(void **state)
{
    struct files fs = {.forbidden = "<p>custom {{email}} {{request_id}}</p>"};
    struct authd_config *cfg = NULL;
    struct authd_page_fields f = {.status = 403, .email = "<b>", .request_id = "r1"};
    struct pc_buf b;
    char msg[700];

    (void)state;
    pc_buf_init(&b, AUTHD_MAX_PAGE);
    /* forbidden.html from the directory, the two others missing: built-in */
    assert_int_equal(parse(HEAD "templatesDir: /tpl\n", &fs, NULL, &cfg, msg, sizeof(msg)), 0);
    assert_string_equal(cfg->templates_dir, "/tpl");
    assert_true(authd_pages_custom(cfg->pages, AUTHD_PAGE_FORBIDDEN));
    assert_false(authd_pages_custom(cfg->pages, AUTHD_PAGE_ERROR));
    assert_false(authd_pages_custom(cfg->pages, AUTHD_PAGE_SIGNED_OUT));
    authd_page_render(cfg->pages, AUTHD_PAGE_FORBIDDEN, &f, false, &b);
    assert_string_equal(pc_buf_str(&b), "<p>custom &lt;b&gt; r1</p>");
    authd_page_render(cfg->pages, AUTHD_PAGE_ERROR, &f, false, &b);
    assert_non_null(strstr(pc_buf_str(&b), "<html lang=\"en\">"));
    authd_config_free(cfg);

    /* no templatesDir: built-in pages, nothing read */
    assert_int_equal(parse(HEAD, &fs, NULL, &cfg, msg, sizeof(msg)), 0);
    assert_null(cfg->pages);
    authd_config_free(cfg);

    /* the flag wins over the file */
    assert_int_equal(parse(HEAD "templatesDir: /elsewhere\n", &fs, "/tpl", &cfg, msg, sizeof(msg)),
                     0);
    assert_string_equal(cfg->templates_dir, "/tpl");
    assert_true(authd_pages_custom(cfg->pages, AUTHD_PAGE_FORBIDDEN));
    authd_config_free(cfg);
    pc_buf_release(&b);
}

static void
test_config_templates_refused(void **state)
{
    static const struct {
        struct files fs;
        const char *yaml, *flag, *want;
    } cases[] = {
        {{.error = "<h1>{{title}}</h1>\n<p>{{ mesage }}</p>\n"},
         HEAD "templatesDir: /tpl\n",
         NULL,
         "config.yaml:4:15: templatesDir: /tpl/error.html:2:4: unknown placeholder \"{{ mesage "
         "}}\""},
        {{.signed_out = "{{#email}}"},
         HEAD "templatesDir: /tpl\n",
         "/tpl",
         "config.yaml: --templates-dir: /tpl/signed_out.html:1:1: section \"{{email}}\" is never "
         "closed"},
        {{.forbidden = "ok", .error_rc = -EACCES},
         HEAD "templatesDir: /tpl\n",
         NULL,
         "config.yaml:4:15: templatesDir: /tpl/error.html: cannot read: Permission denied"},
        {{0},
         HEAD "templatesDir: /tpl\n",
         NULL,
         "config.yaml:4:15: templatesDir: \"/tpl\": none of forbidden.html, error.html, "
         "signed_out.html is there"},
        {{0}, HEAD "templatesDir: [a]\n", NULL, "config.yaml:4:15: templatesDir: expected"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct authd_config *cfg = NULL;
        char msg[700];
        int rc = parse(cases[i].yaml, &cases[i].fs, cases[i].flag, &cfg, msg, sizeof(msg));

        if (rc == 0 || strncmp(msg, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("case %zu: rc %d, \"%s\"", i, rc, msg);
        assert_null(cfg);
    }
}

/* --watch-config: the head's pages serve every config merged from it, after the head is gone. */
static void
test_head_pages_shared(void **state)
{
    static const char yaml[] = "cookieSecretFiles: [/secret]\n";
    struct files fs = {.forbidden = "<p>head {{email}}</p>"};
    struct authd_overrides ov = {.templates_dir = "/tpl"};
    struct authd_config_opts opts = {.file = "command line",
                                     .read_file = files_reader,
                                     .ud = &fs,
                                     .overrides = &ov,
                                     .head_only = true};
    struct authd_page_fields f = {.status = 403, .email = "bob"};
    struct authd_config *head = NULL, *merged;
    struct pc_diag diag = {0};
    struct pc_buf b;

    (void)state;
    assert_int_equal(authd_config_parse(yaml, strlen(yaml), &opts, &head, &diag), 0);
    merged = authd_config_with_hosts(head, NULL, 0);
    authd_config_free(head);
    assert_string_equal(merged->templates_dir, "/tpl");
    pc_buf_init(&b, AUTHD_MAX_PAGE);
    assert_int_equal(authd_page_render(merged->pages, AUTHD_PAGE_FORBIDDEN, &f, false, &b), 0);
    assert_string_equal(pc_buf_str(&b), "<p>head bob</p>");
    pc_buf_release(&b);
    authd_config_free(merged);
}

/* ---- request ids ---- */

static int
cmp_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void
test_request_ids(void **state)
{
    enum { N = 20000 };
    char(*ids)[AUTHD_REQUEST_ID_LEN + 1] = calloc(N, sizeof(*ids));

    (void)state;
    for (int i = 0; i < N; i++) {
        authd_request_id(ids[i]);
        assert_int_equal(strlen(ids[i]), AUTHD_REQUEST_ID_LEN);
        assert_int_equal(strspn(ids[i], "0123456789abcdefghjkmnpqrstvwxyz"), AUTHD_REQUEST_ID_LEN);
    }
    /* consecutive ids share no obvious prefix: the counter does not show */
    assert_true(strncmp(ids[0], ids[1], 4) != 0 || strncmp(ids[1], ids[2], 4) != 0);
    qsort(ids, N, sizeof(*ids), cmp_ids);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

static void
test_page_ctx(void **state)
{
    struct authd_page_ctx a, b;
    char *long_host = calloc(1, 1000);

    (void)state;
    authd_page_ctx_init(&a, NULL, "app.example.com:8443");
    authd_page_ctx_init(&b, NULL, NULL);
    assert_false(a.json);
    assert_string_equal(a.host, "app.example.com:8443");
    assert_string_equal(b.host, "");
    assert_string_not_equal(a.request_id, b.request_id);
    memset(long_host, 'a', 999);
    authd_page_ctx_host(&b, long_host);
    assert_int_equal(strlen(b.host), AUTHD_MAX_HOST);
    free(long_host);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_placeholder_escaped),
        cmocka_unit_test(test_links),
        cmocka_unit_test(test_values_sanitized),
        cmocka_unit_test(test_long_value_cut),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_json_twin),
        cmocka_unit_test(test_builtin),
        cmocka_unit_test(test_oversized_falls_back),
        cmocka_unit_test(test_config_templates),
        cmocka_unit_test(test_config_templates_refused),
        cmocka_unit_test(test_head_pages_shared),
        cmocka_unit_test(test_request_ids),
        cmocka_unit_test(test_page_ctx),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
