/* libFuzzer target: YAML stream → tree → JSON → YAML. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "portcullis/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pc_ynode **docs = NULL;
    size_t n = 0;
    struct pc_diag d = {0};

    if (pc_yaml_load_all((const char *)data, size, &docs, &n, &d) != 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        json_t *j = pc_yaml_to_json(docs[i]);
        free(pc_json_to_yaml(j));
        json_decref(j);
    }
    pc_yaml_free_all(docs, n);
    return 0;
}
