/*
 * test_ctl_events.c - the Event queue: one Event waits per object and kind, the newest wins,
 * and only the involved object's identity is kept (never its spec or status).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller.h"
#include "portcullis/json.h"

static json_t *
host(const char *name)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:[s]}, s:{s:[]}}", "apiVersion",
                     CTL_GROUP_VERSION, "kind", "ProtectedHost", "metadata", "name", name,
                     "namespace", "apps", "uid", "u-1", "spec", "hosts", "a.example.com", "status",
                     "conditions");
}

static void
test_newest_event_per_object_and_kind_waits(void **state)
{
    struct ctl_run_opts o = {0};
    struct ctl_ctx c;
    json_t *a = host("a"), *b = host("b"), *ev;
    char *k;

    (void)state;
    ctl_ctx_init(&c, &o, NULL);
    ctl_event_post(&c, "ready", a, "Warning", "Propagating", "authd-b lags");
    ctl_event_post(&c, "ready", a, "Normal", "Ready", "every authd replica enforces it");
    ctl_event_post(&c, "snippet", a, "Normal", "ProviderSnippet", "extensionProviders: []");
    ctl_event_post(&c, "ready", b, "Normal", "Ready", "every authd replica enforces it");
    assert_int_equal(json_object_size(c.ev_pending), 3);
    assert_int_equal(ctl_queue_len(c.eq), 3);
    ev = json_object_get(c.ev_pending, "ready:apps/a");
    assert_string_equal(pc_json_str(ev, "reason"), "Ready");
    assert_string_equal(pc_json_str(ev, "type"), "Normal");
    assert_string_equal(pc_json_str(pc_json_path(ev, "involved.metadata"), "uid"), "u-1");
    assert_string_equal(pc_json_str(json_object_get(ev, "involved"), "kind"), "ProtectedHost");
    assert_null(json_object_get(json_object_get(ev, "involved"), "spec"));
    assert_null(json_object_get(json_object_get(ev, "involved"), "status"));
    k = ctl_queue_get(c.eq);
    assert_non_null(json_object_get(c.ev_pending, k));
    ctl_queue_done(c.eq, k);
    free(k);
    ctl_ctx_release(&c);
    json_decref(a);
    json_decref(b);
}

/* Past the bound, an Event is not queued (the caller posts it; here, with no API, it fails). */
static void
test_pending_events_are_bounded(void **state)
{
    struct ctl_run_opts o = {0};
    struct ctl_ctx c;
    char name[32];

    (void)state;
    ctl_ctx_init(&c, &o, NULL);
    c.kc = k8s_client_new(&(struct k8s_config){.server = "https://127.0.0.1:1"}, "test");
    for (int i = 0; i < 1100; i++) {
        json_t *h;

        snprintf(name, sizeof(name), "h-%d", i);
        h = host(name);
        ctl_event_post(&c, "ready", h, "Normal", "Ready", "every authd replica enforces it");
        json_decref(h);
    }
    assert_int_equal(json_object_size(c.ev_pending), 1024);
    k8s_client_free(c.kc);
    ctl_ctx_release(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_newest_event_per_object_and_kind_waits),
        cmocka_unit_test(test_pending_events_are_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
