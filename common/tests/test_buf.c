#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis/base.h"
#include "portcullis/buf.h"

static void
test_append_and_bound(void **state)
{
    struct pc_buf b;

    (void)state;
    pc_buf_init(&b, 8);
    assert_string_equal(pc_buf_str(&b), "");
    assert_int_equal(pc_buf_appends(&b, "abcd"), 0);
    assert_int_equal(pc_buf_appendf(&b, "%d", 123), 0);
    assert_string_equal(pc_buf_str(&b), "abcd123");
    assert_int_equal(pc_buf_appends(&b, "xy"), PC_ETOOBIG);
    assert_string_equal(pc_buf_str(&b), "abcd123");
    assert_int_equal(pc_buf_appends(&b, "z"), 0);
    assert_int_equal(b.len, 8);
    pc_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(pc_buf_str(&b), "");
    pc_buf_release(&b);
    assert_null(b.data);
}

static void
test_growth_and_detach(void **state)
{
    struct pc_buf b;
    char *s;

    (void)state;
    pc_buf_init(&b, 0);
    b.secret = true;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pc_buf_appendf(&b, "%03d", i % 1000), 0);
    assert_int_equal(b.len, 3000);
    assert_memory_equal(b.data + 2997, "999", 3);
    assert_int_equal(pc_buf_appendf(&b, "%0300d", 7), 0);
    assert_int_equal(b.len, 3300);
    s = pc_buf_detach(&b);
    assert_int_equal(strlen(s), 3300);
    assert_null(b.data);
    free(s);
}

static void
test_diag_format(void **state)
{
    struct pc_diag d = {.file = "a.yaml"};
    char out[128];

    (void)state;
    pc_diag_set(&d, 3, 7, "unknown key \"%s\"", "x");
    pc_diag_format(&d, out, sizeof(out));
    assert_string_equal(out, "a.yaml:3:7: unknown key \"x\"");
    d.line = 0;
    pc_diag_format(&d, out, sizeof(out));
    assert_string_equal(out, "a.yaml: unknown key \"x\"");
    assert_string_equal(pc_strerror(PC_ETOOBIG), "too big");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_bound),
        cmocka_unit_test(test_growth_and_detach),
        cmocka_unit_test(test_diag_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
