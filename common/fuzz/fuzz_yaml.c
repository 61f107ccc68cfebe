/*
 * libFuzzer target: YAML stream → tree → JSON → YAML (both emitters), and the same input as
 * one document with aliases resolved (config shards): whatever it expands to stays within
 * the node and byte bounds, and its JSON written one line a key parses back to the same JSON.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
roundtrip_lines(const json_t *j)
{
    char *text = pc_json_to_yaml_lines(j);
    struct pc_ynode *back = NULL;
    struct pc_diag d = {0};

    if (pc_yaml_load(text, strlen(text), &back, &d) == 0) {
        json_t *again = pc_yaml_to_json(back);

        if (!json_equal(j, again))
            abort(); /* the one-line writer changed a value */
        json_decref(again);
        pc_ynode_free(back);
    }
    free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pc_ynode **docs = NULL, *root = NULL;
    size_t n = 0;
    struct pc_diag d = {0};

    if (pc_yaml_load_all((const char *)data, size, &docs, &n, &d) == 0) {
        for (size_t i = 0; i < n; i++) {
            json_t *j = pc_yaml_to_json(docs[i]);

            free(pc_json_to_yaml(j));
            json_decref(j);
        }
        pc_yaml_free_all(docs, n);
    }
    if (pc_yaml_load_aliased((const char *)data, size, &root, &d) == 0) {
        json_t *j = pc_yaml_to_json(root);

        roundtrip_lines(j);
        json_decref(j);
        pc_ynode_free(root);
    }
    return 0;
}
