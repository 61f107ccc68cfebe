/*
 * test_k8s_watch.c - the watch stream decoder (framing, event types, bounds) and the backoff.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "portcullis/json.h"

#include "portcullis/k8s.h"

#define EV(type, name, rv)                                                                         \
    "{\"type\":\"" type "\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"" name     \
    "\",\"namespace\":\"ns\",\"resourceVersion\":\"" rv "\"},\"data\":{\"k\":\"v\\n\"}}}\n"
#define GONE                                                                                       \
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"        \
    "\"Failure\",\"message\":\"too old resource version: 1 (5)\",\"reason\":\"Expired\","          \
    "\"code\":410}}\n"

/* What the decoder handed on, as "TYPE name rv;" lines, the way a watch would act on them. */
struct record {
    char log[1024];
};

static int
on_event(void *ud, enum k8s_wire_type type, json_t *obj)
{
    static const char *const names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
    struct record *r = ud;
    const json_t *md = json_object_get(obj, "metadata");
    size_t used = strlen(r->log);
    struct pc_diag d = {0};

    if (type == K8S_W_ERROR)
        return k8s_status_json(0, obj, &d);
    snprintf(r->log + used, sizeof(r->log) - used, "%s %s %s;", names[type],
             pc_json_str(md, "name") ? pc_json_str(md, "name") : "-",
             pc_json_str(md, "resourceVersion"));
    return 0;
}

static const struct wire_case {
    const char *name;
    const char *input;
    size_t max_line;
    int rc;
    const char *log;
} cases[] = {
    {"one event", EV("ADDED", "a", "1"), 0, 0, "ADDED a 1;"},
    {"several events in one chunk",
     EV("ADDED", "a", "1") EV("MODIFIED", "a", "2") EV("DELETED", "a", "3"), 0, 0,
     "ADDED a 1;MODIFIED a 2;DELETED a 3;"},
    {"bookmark carries only a resourceVersion",
     EV("ADDED", "a", "1") "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"ConfigMap\","
                           "\"metadata\":{\"resourceVersion\":\"77\"}}}\n",
     0, 0, "ADDED a 1;BOOKMARK - 77;"},
    {"crlf and blank keep-alive lines", "\n\r\n" EV("ADDED", "a", "1") "\n", 0, 0, "ADDED a 1;"},
    {"partial trailing event waits for its newline",
     EV("ADDED", "a", "1") "{\"type\":\"ADDED\",\"object\":{", 0, 0, "ADDED a 1;"},
    {"error 410 gone", EV("ADDED", "a", "1") GONE EV("ADDED", "b", "9"), 0, K8S_EGONE,
     "ADDED a 1;"},
    /* The bound is exactly the first event's size, so the longer second one is over it. */
    {"oversized line", EV("ADDED", "a", "1") EV("ADDED", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "2"),
     sizeof(EV("ADDED", "a", "1")), PC_ETOOBIG, "ADDED a 1;"},
    {"oversized line without newline", "{\"type\":\"ADDED\",\"object\":{\"a\":\"xxxxxxxxxxxxxx", 16,
     PC_ETOOBIG, ""},
    {"garbage", "not json at all\n", 0, PC_EPARSE, ""},
    {"unknown type", "{\"type\":\"RENAMED\",\"object\":{}}\n", 0, PC_EPARSE, ""},
    {"no object", "{\"type\":\"ADDED\"}\n", 0, PC_EPARSE, ""},
    {"object not a map", "{\"type\":\"ADDED\",\"object\":[1]}\n", 0, PC_EPARSE, ""},
    {"not an object", "[1,2]\n", 0, PC_EPARSE, ""},
};

/* Feeds input in pieces of the given sizes (0 = the rest); stops at the first error. */
static int
feed_split(const struct wire_case *c, size_t cut, struct record *r)
{
    struct k8s_wire w;
    struct pc_diag d = {0};
    size_t n = strlen(c->input);
    int rc;

    memset(r, 0, sizeof(*r));
    k8s_wire_init(&w, c->max_line, on_event, r);
    rc = k8s_wire_feed(&w, c->input, cut, &d);
    if (rc == 0)
        rc = k8s_wire_feed(&w, c->input + cut, n - cut, &d);
    /* The decoder explains its own failures; an ERROR event's Status is the callback's. */
    if (rc != 0 && rc != K8S_EGONE)
        assert_true(d.msg[0] != '\0');
    k8s_wire_release(&w);
    return rc;
}

static int
feed_bytes(const struct wire_case *c, struct record *r)
{
    struct k8s_wire w;
    struct pc_diag d = {0};
    int rc = 0;

    memset(r, 0, sizeof(*r));
    k8s_wire_init(&w, c->max_line, on_event, r);
    for (size_t i = 0; c->input[i] && rc == 0; i++)
        rc = k8s_wire_feed(&w, c->input + i, 1, &d);
    k8s_wire_release(&w);
    return rc;
}

static void
test_wire_table(void **state)
{
    struct record r;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct wire_case *c = &cases[i];
        size_t n = strlen(c->input);
        /* Split at every byte offset: the result must not depend on chunk boundaries. */
        for (size_t cut = 0; cut <= n; cut++) {
            int rc = feed_split(c, cut, &r);
            if (rc != c->rc || strcmp(r.log, c->log) != 0)
                fail_msg("case '%s' cut %zu: rc %d log '%s'", c->name, cut, rc, r.log);
        }
        assert_int_equal(feed_bytes(c, &r), c->rc);
        assert_string_equal(r.log, c->log);
    }
}

static void
test_gone_message(void **state)
{
    struct record r = {{0}};
    struct k8s_wire w;
    struct pc_diag d = {0};
    json_t *st = json_loads("{\"message\":\"too old resource version: 1 (5)\",\"reason\":"
                            "\"Expired\",\"code\":410}",
                            0, NULL);

    (void)state;
    assert_int_equal(k8s_status_json(0, st, &d), K8S_EGONE);
    assert_string_equal(d.msg, "too old resource version: 1 (5) (HTTP 410 Expired)");
    json_decref(st);
    k8s_wire_init(&w, 0, on_event, &r);
    assert_int_equal(k8s_wire_feed(&w, GONE, strlen(GONE), &d), K8S_EGONE);
    k8s_wire_release(&w);
}

/* Checks that events arrive in order o0, o1, ... and counts them. */
static int
count_fn(void *ud, enum k8s_wire_type type, json_t *obj)
{
    unsigned *n = ud;
    char want[16];

    snprintf(want, sizeof(want), "o%u", *n);
    assert_int_equal(type, K8S_W_ADDED);
    assert_string_equal(pc_json_str(json_object_get(obj, "metadata"), "name"), want);
    (*n)++;
    return 0;
}

/* A stream of many events in varying chunk sizes decodes to every event, in order. */
static void
test_wire_long_stream(void **state)
{
    struct pc_buf in;
    struct k8s_wire w;
    struct pc_diag d = {0};
    unsigned count = 0;
    size_t off = 0, step = 1;

    (void)state;
    pc_buf_init(&in, 0);
    for (int i = 0; i < 500; i++)
        pc_buf_appendf(&in, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"o%d\"}}}\n",
                       i);
    k8s_wire_init(&w, 0, count_fn, &count);
    while (off < in.len) {
        size_t n = in.len - off < step ? in.len - off : step;
        assert_int_equal(k8s_wire_feed(&w, in.data + off, n, &d), 0);
        off += n;
        step = step * 7 % 113 + 1;
    }
    assert_int_equal(count, 500);
    k8s_wire_release(&w);
    pc_buf_release(&in);
}

static void
on_store_event(void *ud, enum k8s_event_type type, json_t *obj)
{
    static const char *const names[] = {"ADDED", "MODIFIED", "DELETED"};
    struct record *r = ud;
    const json_t *md = json_object_get(obj, "metadata");
    size_t used = strlen(r->log);

    snprintf(r->log + used, sizeof(r->log) - used, "%s %s/%s %s;", names[type],
             pc_json_str(md, "namespace"), pc_json_str(md, "name"),
             pc_json_str(md, "resourceVersion"));
}

/* A list of objects "ns/name@rv ...". */
static json_t *
items(const char *spec)
{
    json_t *a = json_array();
    char ns[32], name[32], rv[32];
    int n;

    while (sscanf(spec, " %31[^/]/%31[^@]@%31s%n", ns, name, rv, &n) == 3) {
        json_array_append_new(a, json_pack("{s:{s:s, s:s, s:s}}", "metadata", "namespace", ns,
                                           "name", name, "resourceVersion", rv));
        spec += n;
    }
    return a;
}

/* A relist after 410 Gone reports what changed while the watch was away, deletions included. */
static void
test_relist_diff(void **state)
{
    static const struct {
        const char *before, *after, *log;
    } t[] = {
        {"", "a/x@1 b/y@2", "ADDED a/x 1;ADDED b/y 2;"},
        {"a/x@1 b/y@2", "a/x@1 b/y@2", ""},
        {"a/x@1 b/y@2", "a/x@3 b/y@2", "MODIFIED a/x 3;"},
        {"a/x@1 b/y@2", "b/y@2", "DELETED a/x 1;"},
        {"a/x@1", "a/z@4", "ADDED a/z 4;DELETED a/x 1;"},
        {"a/x@1 b/x@1", "", "DELETED a/x 1;DELETED b/x 1;"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct record r = {{0}};
        json_t *store = json_object(), *before = items(t[i].before), *after = items(t[i].after);
        k8s_store_replace(store, before, on_store_event, &r);
        memset(&r, 0, sizeof(r));
        k8s_store_replace(store, after, on_store_event, &r);
        if (strcmp(r.log, t[i].log) != 0)
            fail_msg("case %zu: got '%s' want '%s'", i, r.log, t[i].log);
        assert_int_equal(json_object_size(store), json_array_size(after));
        json_decref(before);
        json_decref(after);
        json_decref(store);
    }
}

/* Watched objects lose the bookkeeping nobody reads; everything else stays. */
static void
test_strip_bookkeeping(void **state)
{
    static const struct {
        const char *in, *want;
    } t[] = {
        {"{\"metadata\":{\"name\":\"a\",\"managedFields\":[{\"manager\":\"kubectl\"}]}}",
         "{\"metadata\":{\"name\":\"a\"}}"},
        {"{\"metadata\":{\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
         "\"{}\",\"keep\":\"1\"}},\"spec\":{\"managedFields\":1}}",
         "{\"metadata\":{\"annotations\":{\"keep\":\"1\"}},\"spec\":{\"managedFields\":1}}"},
        {"{\"metadata\":{\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":"
         "\"{}\"}}}",
         "{\"metadata\":{}}"},
        {"{\"kind\":\"NoMetadata\"}", "{\"kind\":\"NoMetadata\"}"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        json_t *obj = json_loads(t[i].in, 0, NULL), *want = json_loads(t[i].want, 0, NULL);

        k8s_strip_bookkeeping(obj);
        if (!json_equal(obj, want))
            fail_msg("case %zu: got %s", i, json_dumps(obj, JSON_COMPACT));
        json_decref(obj);
        json_decref(want);
    }
}

/* The store keeps versions, not objects. */
static void
test_store_keeps_versions(void **state)
{
    struct record r = {{0}};
    json_t *store = json_object(), *list = items("a/x@1 b/y@2");

    (void)state;
    k8s_store_replace(store, list, on_store_event, &r);
    assert_string_equal(json_string_value(json_object_get(store, "a/x")), "1");
    assert_string_equal(json_string_value(json_object_get(store, "b/y")), "2");
    json_decref(list);
    json_decref(store);
}

static void
test_backoff(void **state)
{
    static const struct {
        unsigned attempt;
        long lo, hi;
    } t[] = {
        {0, 375, 500},     {1, 750, 1000},     {2, 1500, 2000},      {5, 12000, 16000},
        {6, 22500, 30000}, {10, 22500, 30000}, {1000, 22500, 30000},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        for (int k = 0; k < 50; k++) {
            long ms = k8s_backoff_ms(t[i].attempt);
            assert_in_range(ms, t[i].lo, t[i].hi);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_table),
        cmocka_unit_test(test_gone_message),
        cmocka_unit_test(test_wire_long_stream),
        cmocka_unit_test(test_relist_diff),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_strip_bookkeeping),
        cmocka_unit_test(test_store_keeps_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
