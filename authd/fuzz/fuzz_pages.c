/*
 * libFuzzer target: operator templates and page values. The input is a template, then a NUL,
 * then a value. A template that passes the check always renders; no value, whatever its bytes,
 * puts markup on a page (every character that could open a tag or leave an attribute is
 * escaped), and the JSON twin is always valid JSON holding the value.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"

/* Bytes the escaped value may never contain. */
static void
check_escaped(const char *out)
{
    if (strpbrk(out, "<>\"'`=") != NULL)
        abort();
}

static void
check_json(const char *out, size_t len)
{
    json_error_t err;
    json_t *o = json_loadb(out, len, 0, &err);

    if (o == NULL || !json_is_string(json_object_get(o, "message")) ||
        !json_is_string(json_object_get(o, "email")))
        abort();
    json_decref(o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, '\0', size);
    size_t tlen = nul ? (size_t)(nul - (const char *)data) : size;
    char *value = nul ? strndup(nul + 1, size - tlen - 1) : strdup("<v>");
    struct authd_pages *p = authd_pages_new();
    struct authd_page_fields f = {.status = 403,
                                  .error = "forbidden",
                                  .title = value,
                                  .message = value,
                                  .email = value[0] ? value : "x",
                                  .host = value,
                                  .request_id = "0123456789",
                                  .sign_out_url = value};
    struct pc_diag diag = {0};
    struct pc_buf b;

    pc_buf_init(&b, AUTHD_MAX_PAGE);
    if (authd_pages_set(p, AUTHD_PAGE_FORBIDDEN, (const char *)data, tlen, &diag) == 0 &&
        authd_page_render(p, AUTHD_PAGE_FORBIDDEN, &f, false, &b) != 0)
        abort();
    pc_buf_reset(&b);
    if (authd_html_escape(&b, value) != 0)
        abort();
    check_escaped(pc_buf_str(&b));
    if (authd_page_render(p, AUTHD_PAGE_FORBIDDEN, &f, true, &b) != 0)
        abort();
    check_json(b.data, b.len);
    pc_buf_release(&b);
    authd_pages_put(p);
    free(value);
    return 0;
}
