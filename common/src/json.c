/*
 * json.c - dotted-path lookups and deterministic dumps over jansson.
 */
#include "portcullis/json.h"

#include <string.h>

json_t *
pc_json_path(const json_t *root, const char *dotted)
{
    const json_t *cur = root;
    const char *p = dotted;

    while (cur != NULL && *p != '\0') {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);

        if (!json_is_object(cur))
            return NULL;
        cur = json_object_getn(cur, p, n);
        p += n + (dot != NULL);
    }
    return (json_t *)cur;
}

const char *
pc_json_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

char *
pc_json_dumps_sorted(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}
