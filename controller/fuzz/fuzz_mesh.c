/*
 * fuzz_mesh.c - merging the provider into arbitrary mesh config text.
 *
 * Beyond "no crash, no leak": a merge that succeeds is a fixed point (merging its output
 * again gives the same bytes), and the output parses as YAML again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *provider;
    struct pc_diag d = {0};
    char *text, *once = NULL, *twice = NULL;

    if (!provider) {
        json_t *names = json_pack("{s:b}", "x-auth-request-user", 1);
        struct ctl_authd_opts o = {0};

        provider = ctl_render_provider(names, &o);
        json_decref(names);
    }
    text = pc_xstrndup((const char *)data, size);
    if (ctl_mesh_merge(text, provider, &once, &d) == 0) {
        if (ctl_mesh_merge(once, provider, &twice, &d) != 0 || strcmp(once, twice) != 0)
            abort();
    }
    free(once);
    free(twice);
    free(text);
    return 0;
}
