/*
 * json.h - small helpers over jansson.
 */
#ifndef PORTCULLIS_JSON_H
#define PORTCULLIS_JSON_H

#include <jansson.h>

/* The value at a dotted path ("realm_access.roles"), borrowed from root; NULL when absent. */
json_t *pc_json_path(const json_t *root, const char *dotted);
/* The string value of obj[key], borrowed; NULL when absent or not a string. */
const char *pc_json_str(const json_t *obj, const char *key);
/* New compact JSON text with sorted keys; the caller frees it. */
char *pc_json_dumps_sorted(const json_t *j);

#endif
