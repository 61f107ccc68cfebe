/*
 * fuzz_ingress.c - an Ingress as a watch delivers it (any JSON) -> summary -> what goes on it.
 *
 * Invariants beyond "no crash, no leak": the summary keeps at most CTL_INGRESS_MAX_PATHS
 * paths (else null); a plan never wants annotations for an Ingress it leaves alone, and what
 * it wants always carries the mark; the report of its outcomes stays bounded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"
#include "portcullis/json.h"

static const char VIEWS[] =
    "[{\"id\":\"a/one\",\"class\":\"nginx\",\"hosts\":[\"one.example.com\",\"*.apps.example.com\"],"
    "\"headers\":[\"X-User\"],\"scheme\":\"\",\"callback\":\"/oauth2/callback\"},"
    "{\"id\":\"b/two\",\"class\":\"alb\",\"hosts\":[\"two.example.com\"],\"headers\":[],"
    "\"scheme\":\"https\",\"callback\":\"/cb\"}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *ing = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    json_t *views = json_loads(VIEWS, 0, NULL), *s, *named, *paths;
    struct ctl_authd_opts o = {0};
    struct ctl_ingress_index x;
    struct ctl_ingress_plan p;
    const char *reason;
    char *msg;

    if (!ing || !json_is_object(ing))
        goto out;
    s = ctl_ingress_summary(ing);
    paths = json_object_get(s, "paths");
    if (!json_is_null(paths) && json_array_size(paths) > CTL_INGRESS_MAX_PATHS)
        abort();
    ctl_ingress_index_init(&x, views);
    named = ctl_ingress_index_match(&x, s);
    ctl_ingress_decide(s, named, &o, &p);
    if (p.want && !pc_json_str(p.want, CTL_ANNOT_PROTECTED_BY))
        abort();
    ctl_ingress_report(p.outcomes, "nginx", &reason, &msg);
    if (strlen(msg) > 4096)
        abort();
    free(msg);
    ctl_ingress_plan_release(&p);
    json_decref(named);
    ctl_ingress_index_release(&x);
    json_decref(s);
out:
    json_decref(views);
    json_decref(ing);
    return 0;
}
