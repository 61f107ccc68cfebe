#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis/base.h"
#include "portcullis/json.h"
#include "portcullis/buf.h"
#include "portcullis/yaml.h"

static void
test_positions(void **state)
{
    const char *text = "listen: 0.0.0.0:4180\nhosts:\n  - id: a\n    hosts: [x.example.com]\n";
    struct pc_ynode *root = NULL;
    struct pc_diag d = {0};

    (void)state;
    assert_int_equal(pc_yaml_load(text, strlen(text), &root, &d), 0);
    const struct pc_ynode *hosts = pc_ynode_get(root, "hosts");
    assert_non_null(hosts);
    assert_int_equal(hosts->type, PC_YNODE_SEQ);
    assert_int_equal(hosts->line, 3);
    const struct pc_ynode *id = pc_ynode_get(hosts->vals[0], "id");
    assert_string_equal(id->value, "a");
    assert_int_equal(id->line, 3);
    assert_int_equal(id->col, 9);
    assert_null(pc_ynode_get(root, "nope"));
    pc_ynode_free(root);
}

static const struct {
    const char *yaml;
    int rc;
    int line;
    const char *msg_part;
    bool aliased; /* pc_yaml_load_aliased */
} errors[] = {
    {"a: 1\na: 2\n", PC_EPARSE, 2, "duplicate key", false},
    {"a: &x 1\nb: *x\n", PC_EPARSE, 2, "aliases are not supported", false},
    {"a: *x\nb: &x 1\n", PC_EPARSE, 1, "names no anchor", true},
    {"a: &x [1, *x]\n", PC_EPARSE, 1, "names no anchor", true}, /* its own value: no cycle */
    {"a: &x 1\n---\nb: *x\n", PC_EPARSE, 3, "names no anchor", true},
    {"a: [1, 2\n", PC_EPARSE, 2, "", false},
    {"a: 1\n---\nb: 2\n", PC_EPARSE, 3, "one YAML document", false},
    {"? [a]\n: 1\n", PC_EPARSE, 1, "scalars", false},
    {"", PC_EPARSE, 1, "empty", false},
};

/* An alias is a copy of its anchor's value, positions of the anchor kept; the latest
 * definition of a name wins. */
static void
test_aliases(void **state)
{
    static const char text[] = "hosts:\n"
                               "- id: a\n"
                               "  oidc: &o1\n"
                               "    clientID: c\n"
                               "    scopes: [openid, email]\n"
                               "- id: b\n"
                               "  oidc: *o1\n"
                               "- id: c\n"
                               "  oidc: &o1 {clientID: d}\n"
                               "- id: d\n"
                               "  oidc: *o1\n"
                               "  name: &n plain\n"
                               "  again: *n\n";
    struct pc_ynode *root = NULL;
    struct pc_diag d = {0};
    const struct pc_ynode *h;

    (void)state;
    assert_int_equal(pc_yaml_load(text, strlen(text), &root, &d), PC_EPARSE);
    assert_non_null(strstr(d.msg, "aliases are not supported"));
    assert_int_equal(pc_yaml_load_aliased(text, strlen(text), &root, &d), 0);
    h = pc_ynode_get(root, "hosts");
    assert_int_equal(h->n, 4);
    assert_string_equal(pc_ynode_get(pc_ynode_get(h->vals[1], "oidc"), "clientID")->value, "c");
    assert_int_equal(pc_ynode_get(pc_ynode_get(h->vals[1], "oidc"), "scopes")->n, 2);
    assert_int_equal(pc_ynode_get(pc_ynode_get(h->vals[1], "oidc"), "clientID")->line, 4);
    assert_ptr_not_equal(pc_ynode_get(h->vals[1], "oidc"), pc_ynode_get(h->vals[0], "oidc"));
    assert_string_equal(pc_ynode_get(pc_ynode_get(h->vals[3], "oidc"), "clientID")->value, "d");
    assert_string_equal(pc_ynode_get(h->vals[3], "again")->value, "plain");
    assert_true(pc_ynode_get(h->vals[3], "again")->plain);
    pc_ynode_free(root);
}

/* "Billion laughs": ten levels of ten aliases each would be 10^10 nodes; the copies count
 * toward the node bound, so loading stops with PC_ETOOBIG after at most that many. */
static void
test_alias_bomb(void **state)
{
    struct pc_buf b;
    struct pc_ynode *root = NULL;
    struct pc_diag d = {0};

    (void)state;
    pc_buf_init(&b, 0);
    pc_buf_appends(&b, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++) {
        pc_buf_appendf(&b, "l%d: &l%d [", i, i);
        for (int j = 0; j < 10; j++)
            pc_buf_appendf(&b, "%s*l%d", j ? ", " : "", i - 1);
        pc_buf_appends(&b, "]\n");
    }
    assert_int_equal(pc_yaml_load_aliased(b.data, b.len, &root, &d), PC_ETOOBIG);
    assert_non_null(strstr(d.msg, "too large"));
    assert_null(root);
    pc_buf_release(&b);
    /* Few nodes, many bytes: one 100 KB string aliased 200 times. */
    pc_buf_init(&b, 0);
    pc_buf_appends(&b, "a: &s \"");
    for (int i = 0; i < 100000; i++)
        pc_buf_append(&b, "x", 1);
    pc_buf_appends(&b, "\"\nb: [");
    for (int i = 0; i < 200; i++)
        pc_buf_appends(&b, i ? ", *s" : "*s");
    pc_buf_appends(&b, "]\n");
    assert_int_equal(pc_yaml_load_aliased(b.data, b.len, &root, &d), PC_ETOOBIG);
    assert_non_null(strstr(d.msg, "bytes"));
    pc_buf_release(&b);
}

static void
test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        struct pc_ynode *root = NULL;
        struct pc_diag d = {0};
        int rc = errors[i].aliased
                     ? pc_yaml_load_aliased(errors[i].yaml, strlen(errors[i].yaml), &root, &d)
                     : pc_yaml_load(errors[i].yaml, strlen(errors[i].yaml), &root, &d);
        assert_int_equal(rc, errors[i].rc);
        assert_int_equal(d.line, errors[i].line);
        assert_non_null(strstr(d.msg, errors[i].msg_part));
    }
}

static void
test_depth_bound(void **state)
{
    char deep[400];
    struct pc_ynode *root = NULL;
    struct pc_diag d = {0};

    (void)state;
    memset(deep, '[', sizeof(deep));
    assert_int_equal(pc_yaml_load(deep, sizeof(deep), &root, &d), PC_ETOOBIG);
}

static void
test_multi_doc_and_json(void **state)
{
    const char *text = "---\na: 1\nb: true\nc: \"1\"\nd: ~\ne: 1.5\nf: x y\n---\n---\n- 1\n";
    struct pc_ynode **docs = NULL;
    size_t n = 0;
    struct pc_diag d = {0};

    (void)state;
    assert_int_equal(pc_yaml_load_all(text, strlen(text), &docs, &n, &d), 0);
    assert_int_equal(n, 2);
    json_t *j = pc_yaml_to_json(docs[0]);
    char *s = pc_json_dumps_sorted(j);
    assert_string_equal(s, "{\"a\":1,\"b\":true,\"c\":\"1\",\"d\":null,\"e\":1.5,\"f\":\"x y\"}");
    free(s);
    json_decref(j);
    pc_yaml_free_all(docs, n);
}

static void
test_emit_roundtrip(void **state)
{
    const char *json = "{\"z\":[1,\"true\",{\"k\":\"v\"}],\"a\":{\"s\":\"line1\\nline2\\n\","
                       "\"n\":null,\"e\":[],\"o\":{},\"num\":\"0.5\",\"b\":false}}";
    json_t *in = json_loads(json, 0, NULL);
    char *yaml = pc_json_to_yaml(in), *again = NULL;
    struct pc_ynode *root = NULL;
    struct pc_diag d = {0};

    (void)state;
    assert_non_null(strstr(yaml, "- \"true\""));
    assert_true(strstr(yaml, "a:") < strstr(yaml, "z:"));
    assert_int_equal(pc_yaml_load(yaml, strlen(yaml), &root, &d), 0);
    json_t *out = pc_yaml_to_json(root);
    assert_true(json_equal(in, out));
    again = pc_json_to_yaml(out);
    assert_string_equal(yaml, again);
    assert_non_null(pc_json_path(out, "z"));
    assert_string_equal(json_string_value(pc_json_path(out, "a.num")), "0.5");
    assert_null(pc_json_path(out, "a.num.x"));
    free(yaml);
    free(again);
    json_decref(in);
    json_decref(out);
    pc_ynode_free(root);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positions),      cmocka_unit_test(test_errors),
        cmocka_unit_test(test_depth_bound),    cmocka_unit_test(test_multi_doc_and_json),
        cmocka_unit_test(test_emit_roundtrip), cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_alias_bomb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
