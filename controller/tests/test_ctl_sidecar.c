/*
 * test_ctl_sidecar.c - what the global writer records of a namespace in sidecar mode: its
 * shard's generation and error from a pass, its revocation list's copy error from a pass or
 * from a copy pass alone, and which namespaces' hosts must have their statuses written again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller.h"

struct step {
    const char *result; /* a pass's result (ctl_sidecar_pass, ctl_revmirror_pass) as JSON */
    const char *moved;  /* the namespaces whose hosts' statuses are written again */
    const char *state;  /* what is recorded of namespace a afterwards, "null" when nothing */
};

/* Each sequence runs on a fresh context, one step after another. */
static const struct step *const sequences[] = {
    (const struct step[]){
        /* The first shard pass: the shard written, its copy refused. */
        {"{\"a\":{\"gen\":1,\"revError\":\"denied\"}}", "{\"a\":true}",
         "{\"error\":null,\"gen\":1,\"revError\":\"denied\"}"},
        /* The copy pass that succeeds clears it and leaves the shard's record alone. */
        {"{\"a\":{\"revError\":null}}", "{\"a\":true}",
         "{\"error\":null,\"gen\":1,\"revError\":null}"},
        /* Nothing changed: nobody's status is written again. */
        {"{\"a\":{\"revError\":null}}", "{}", "{\"error\":null,\"gen\":1,\"revError\":null}"},
        {NULL, NULL, NULL},
    },
    (const struct step[]){
        /* A shard that failed keeps its error through copy passes. */
        {"{\"a\":{\"gen\":0,\"error\":\"boom\"}}", "{\"a\":true}",
         "{\"error\":\"boom\",\"gen\":0,\"revError\":null}"},
        {"{\"a\":{\"revError\":\"denied\"}}", "{\"a\":true}",
         "{\"error\":\"boom\",\"gen\":0,\"revError\":\"denied\"}"},
        {"{\"a\":{\"gen\":2,\"revError\":\"denied\"}}", "{\"a\":true}",
         "{\"error\":null,\"gen\":2,\"revError\":\"denied\"}"},
        /* The namespace's last host went: nothing of it is kept. */
        {"{\"a\":{\"gone\":true}}", "{}", "null"},
        {NULL, NULL, NULL},
    },
    (const struct step[]){
        /* A copy pass says nothing of a namespace no shard pass wrote yet. */
        {"{\"a\":{\"revError\":\"denied\"}}", "{}", "null"},
        {NULL, NULL, NULL},
    },
};

static char *
dump(const json_t *j)
{
    return j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : strdup("null");
}

static void
assert_json(const json_t *j, const char *want, size_t seq, size_t step)
{
    char *s = dump(j);

    if (strcmp(s, want) != 0)
        fail_msg("sequence %zu step %zu: got %s, want %s", seq, step, s, want);
    free(s);
}

static void
test_record(void **state)
{
    (void)state;
    for (size_t q = 0; q < sizeof(sequences) / sizeof(sequences[0]); q++) {
        struct ctl_ctx c;

        ctl_ctx_init(&c, &(struct ctl_run_opts){.authd = {.namespace = "portcullis-system"}}, NULL);
        for (size_t i = 0; sequences[q][i].result; i++) {
            const struct step *k = &sequences[q][i];
            json_t *result = json_loads(k->result, 0, NULL), *moved, *st;

            assert_non_null(result);
            moved = ctl_sidecar_record(&c, result);
            assert_json(moved, k->moved, q, i);
            st = json_deep_copy(json_object_get(c.sidecar_state, "a"));
            json_object_del(st, "at"); /* a clock */
            assert_json(st, k->state, q, i);
            json_decref(st);
            json_decref(moved);
            json_decref(result);
        }
        ctl_ctx_release(&c);
    }
}

static void
test_rev_error_of_a_host(void **state)
{
    struct ctl_ctx c;
    struct ctl_host side = {.ns = (char *)"a", .sidecar = true};
    struct ctl_host central = {.ns = (char *)"a", .sidecar = false};
    json_t *r = json_loads("{\"a\":{\"gen\":1,\"revError\":\"denied\"}}", 0, NULL);

    (void)state;
    ctl_ctx_init(&c, &(struct ctl_run_opts){.authd = {.namespace = "portcullis-system"}}, NULL);
    json_decref(ctl_sidecar_record(&c, r));
    assert_string_equal(ctl_sidecar_rev_error(&c, &side), "denied");
    /* A gateway host in the same namespace reads the central list, not the copy. */
    assert_null(ctl_sidecar_rev_error(&c, &central));
    json_decref(r);
    ctl_ctx_release(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_rev_error_of_a_host),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
