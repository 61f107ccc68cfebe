/*
 * spec_util.h - helpers the renderer's unit tests share: a canonical spec from JSON text, and
 * a value as compact sorted JSON to compare with.
 */
#ifndef PORTCULLIS_CTL_TESTS_SPEC_UTIL_H
#define PORTCULLIS_CTL_TESTS_SPEC_UTIL_H

#include <jansson.h>

#include "controller.h"

/* The canonical spec of text (a ProtectedHost spec as JSON); fails the test when invalid. */
static json_t *
spec_of(const char *text)
{
    json_t *in = json_loads(text, 0, NULL), *out = NULL;
    struct ctl_errors errs = {0};

    assert_non_null(in);
    if (ctl_spec_normalize(in, false, &out, &errs) != 0)
        fail_msg("invalid: %s", errs.msg[0]);
    json_decref(in);
    return out;
}

/* New compact JSON text of j, keys sorted. */
static char *
dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

#endif
