/*
 * fuzz_watch.c - the watch stream decoder on arbitrary bytes in arbitrary chunks. The first
 * byte picks the chunk size, so framing across chunk boundaries is explored too.
 */
#include <stddef.h>
#include <stdint.h>

#include "portcullis/k8s.h"

static int
on_event(void *ud, enum k8s_wire_type type, json_t *obj)
{
    struct pc_diag d = {0};

    (void)ud;
    if (type == K8S_W_ERROR)
        return k8s_status_json(0, obj, &d) == K8S_EGONE ? K8S_EGONE : 0;
    /* What the watch does with every object: look up its key and version. */
    json_t *md = json_object_get(obj, "metadata");
    (void)json_string_value(json_object_get(md, "name"));
    (void)json_string_value(json_object_get(md, "resourceVersion"));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct k8s_wire w;
    struct pc_diag d = {0};
    size_t chunk;

    if (size == 0)
        return 0;
    chunk = (size_t)data[0] % 64 + 1;
    data++, size--;
    k8s_wire_init(&w, 4096, on_event, NULL);
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (k8s_wire_feed(&w, (const char *)data + off, n, &d) != 0)
            break;
    }
    k8s_wire_release(&w);
    return 0;
}
