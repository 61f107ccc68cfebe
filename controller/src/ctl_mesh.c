/*
 * ctl_mesh.c - merging portcullis's extension provider into Istio's mesh config.
 *
 * The mesh config belongs to whoever installed Istio; portcullis owns one list entry in it.
 * So the text is parsed into a tree that keeps every key in its order and every scalar as
 * written (plain or quoted), and written back with only that entry replaced. Reading the
 * YAML as JSON would lose both: "1.10" would become 1.1 and keys would be re-sorted.
 *
 * Scalar styles are chosen so that a second merge reproduces the first byte for byte:
 * plain stays plain, anything quoted comes back single-quoted (double-quoted when it needs
 * escapes), multi-line text as a literal block.
 */
#include "controller.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "portcullis/json.h"
#include "portcullis/yaml.h"

static int
write_handler(void *data, unsigned char *p, size_t n)
{
    return pc_buf_append(data, p, n) == 0;
}

static int
emit(yaml_emitter_t *e, yaml_event_t *ev)
{
    return yaml_emitter_emit(e, ev) ? 0 : PC_EINVAL;
}

static int
emit_scalar(yaml_emitter_t *e, const char *s, size_t len, bool plain, yaml_scalar_style_t style)
{
    yaml_event_t ev;

    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, plain, 1, style);
    return emit(e, &ev);
}

/* Whether a YAML 1.1 or 1.2 reader could take s for something other than a string. */
static bool
looks_typed(const char *s)
{
    static const char *const words[] = {"null", "~", "true", "false", "yes",   "no",   "on", "off",
                                        "y",    "n", ".inf", "-.inf", "+.inf", ".nan", NULL};

    if (*s == '\0')
        return true;
    for (size_t i = 0; words[i]; i++)
        if (strcasecmp(s, words[i]) == 0)
            return true;
    if (!isdigit((unsigned char)s[0]) && !strchr("+-.", s[0]))
        return false;
    return strspn(s, "0123456789abcdefABCDEFxXoO._:+-") == strlen(s);
}

static int
emit_json_string(yaml_emitter_t *e, const char *s, size_t len)
{
    if (strchr(s, '\n'))
        return emit_scalar(e, s, len, false, YAML_LITERAL_SCALAR_STYLE);
    if (looks_typed(s))
        return emit_scalar(e, s, len, false, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
    return emit_scalar(e, s, len, true, YAML_PLAIN_SCALAR_STYLE);
}

static int emit_json(yaml_emitter_t *e, const json_t *j);

static int
emit_json_container(yaml_emitter_t *e, const json_t *j)
{
    yaml_event_t ev;
    const char *key;
    json_t *v;
    size_t i;
    int rc;

    if (json_is_object(j)) {
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                            json_object_size(j) ? YAML_BLOCK_MAPPING_STYLE
                                                                : YAML_FLOW_MAPPING_STYLE);
        rc = emit(e, &ev);
        json_object_foreach((json_t *)j, key, v)
        {
            rc = rc ? rc : emit_json_string(e, key, strlen(key));
            rc = rc ? rc : emit_json(e, v);
        }
        yaml_mapping_end_event_initialize(&ev);
        return rc ? rc : emit(e, &ev);
    }
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                         json_array_size(j) ? YAML_BLOCK_SEQUENCE_STYLE
                                                            : YAML_FLOW_SEQUENCE_STYLE);
    rc = emit(e, &ev);
    json_array_foreach(j, i, v) rc = rc ? rc : emit_json(e, v);
    yaml_sequence_end_event_initialize(&ev);
    return rc ? rc : emit(e, &ev);
}

static int
emit_json(yaml_emitter_t *e, const json_t *j)
{
    char num[64];

    switch (json_typeof(j)) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        return emit_json_container(e, j);
    case JSON_STRING:
        return emit_json_string(e, json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        break;
    case JSON_REAL:
        snprintf(num, sizeof(num), "%.17g", json_real_value(j));
        break;
    case JSON_TRUE:
        strcpy(num, "true");
        break;
    case JSON_FALSE:
        strcpy(num, "false");
        break;
    default:
        strcpy(num, "null");
        break;
    }
    return emit_scalar(e, num, strlen(num), true, YAML_PLAIN_SCALAR_STYLE);
}

static int
emit_ynode_scalar(yaml_emitter_t *e, const struct pc_ynode *n)
{
    /* A multi-line plain scalar cannot be written plain again: literal is what it rereads as. */
    if (memchr(n->value, '\n', n->len))
        return emit_scalar(e, n->value, n->len, false, YAML_LITERAL_SCALAR_STYLE);
    if (n->plain)
        return emit_scalar(e, n->value, n->len, true, YAML_PLAIN_SCALAR_STYLE);
    return emit_scalar(e, n->value, n->len, false, YAML_ANY_SCALAR_STYLE);
}

static int
emit_ynode(yaml_emitter_t *e, const struct pc_ynode *n)
{
    yaml_event_t ev;
    int rc;

    if (n->type == PC_YNODE_SCALAR)
        return emit_ynode_scalar(e, n);
    if (n->type == PC_YNODE_MAP) {
        yaml_mapping_start_event_initialize(
            &ev, NULL, NULL, 1, n->n ? YAML_BLOCK_MAPPING_STYLE : YAML_FLOW_MAPPING_STYLE);
        rc = emit(e, &ev);
        for (size_t i = 0; rc == 0 && i < n->n; i++) {
            rc = emit_ynode(e, n->keys[i]);
            rc = rc ? rc : emit_ynode(e, n->vals[i]);
        }
        yaml_mapping_end_event_initialize(&ev);
        return rc ? rc : emit(e, &ev);
    }
    yaml_sequence_start_event_initialize(
        &ev, NULL, NULL, 1, n->n ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE);
    rc = emit(e, &ev);
    for (size_t i = 0; rc == 0 && i < n->n; i++)
        rc = emit_ynode(e, n->vals[i]);
    yaml_sequence_end_event_initialize(&ev);
    return rc ? rc : emit(e, &ev);
}

/* An emitter writing to out; the document is started. */
static void
start(yaml_emitter_t *e, struct pc_buf *out)
{
    yaml_event_t ev;

    pc_buf_init(out, 0);
    if (!yaml_emitter_initialize(e))
        abort();
    yaml_emitter_set_output(e, write_handler, out);
    yaml_emitter_set_unicode(e, 1);
    yaml_emitter_set_width(e, -1);
    yaml_emitter_set_indent(e, 2);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    if (emit(e, &ev) != 0)
        abort();
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    if (emit(e, &ev) != 0)
        abort();
}

/* Ends the document; returns the text (new) or NULL when rc or the emitter failed. */
static char *
finish(yaml_emitter_t *e, struct pc_buf *out, int rc)
{
    yaml_event_t ev;

    yaml_document_end_event_initialize(&ev, 1);
    rc = rc ? rc : emit(e, &ev);
    yaml_stream_end_event_initialize(&ev);
    rc = rc ? rc : emit(e, &ev);
    yaml_emitter_delete(e);
    if (rc != 0) {
        pc_buf_release(out);
        return NULL;
    }
    return pc_buf_detach(out);
}

char *
ctl_yaml_ordered(const json_t *j)
{
    yaml_emitter_t e;
    struct pc_buf out;
    char *text;

    start(&e, &out);
    text = finish(&e, &out, emit_json(&e, j));
    if (!text)
        abort(); /* only events built wrong make the emitter fail */
    return text;
}

/* Our entries: each names one provider; a NULL value removes every entry of that name. */
struct ours {
    const char *name[2];
    const json_t *value[2];
    size_t n;
};

/* The index in o of the entry item is named after, or -1. */
static int
which(const struct pc_ynode *item, const struct ours *o)
{
    const struct pc_ynode *name = pc_ynode_get(item, "name");

    for (size_t k = 0; name && name->type == PC_YNODE_SCALAR && k < o->n; k++)
        if (strcmp(name->value, o->name[k]) == 0)
            return (int)k;
    return -1;
}

static bool
is_null(const struct pc_ynode *n)
{
    return n->type == PC_YNODE_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->value, "null") == 0 || strcmp(n->value, "~") == 0);
}

/*
 * The provider list: each of ours replaces the first entry with its name, later duplicates
 * go; one not there yet is appended.
 */
static int
emit_providers(yaml_emitter_t *e, const struct pc_ynode *list, const struct ours *o)
{
    bool done[2] = {false, false};
    yaml_event_t ev;
    int rc;

    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
    rc = emit(e, &ev);
    for (size_t i = 0; list && rc == 0 && i < list->n; i++) {
        int k = which(list->vals[i], o);

        if (k < 0)
            rc = emit_ynode(e, list->vals[i]);
        else if (!done[k] && o->value[k])
            rc = emit_json(e, o->value[k]);
        if (k >= 0)
            done[k] = true;
    }
    for (size_t k = 0; rc == 0 && k < o->n; k++)
        if (!done[k] && o->value[k])
            rc = emit_json(e, o->value[k]);
    yaml_sequence_end_event_initialize(&ev);
    return rc ? rc : emit(e, &ev);
}

static int
emit_mesh(yaml_emitter_t *e, const struct pc_ynode *root, const struct ours *o)
{
    yaml_event_t ev;
    bool seen = false;
    int rc;

    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    rc = emit(e, &ev);
    for (size_t i = 0; root && rc == 0 && i < root->n; i++) {
        rc = emit_ynode(e, root->keys[i]);
        if (rc == 0 && strcmp(root->keys[i]->value, "extensionProviders") == 0) {
            rc = emit_providers(e, is_null(root->vals[i]) ? NULL : root->vals[i], o);
            seen = true;
        } else if (rc == 0) {
            rc = emit_ynode(e, root->vals[i]);
        }
    }
    if (rc == 0 && !seen && o->value[0]) {
        rc = emit_scalar(e, "extensionProviders", 18, true, YAML_PLAIN_SCALAR_STYLE);
        rc = rc ? rc : emit_providers(e, NULL, o);
    }
    yaml_mapping_end_event_initialize(&ev);
    return rc ? rc : emit(e, &ev);
}

static int
check_mesh(const struct pc_ynode *root, struct pc_diag *d)
{
    const struct pc_ynode *ep;

    if (root->type != PC_YNODE_MAP) {
        pc_diag_set(d, root->line, root->col, "mesh: must be a map, not a %s",
                    pc_ynode_type_name(root));
        return PC_EINVAL;
    }
    ep = pc_ynode_get(root, "extensionProviders");
    if (ep && ep->type != PC_YNODE_SEQ && !is_null(ep)) {
        pc_diag_set(d, ep->line, ep->col, "extensionProviders: must be a list, not a %s",
                    pc_ynode_type_name(ep));
        return PC_EINVAL;
    }
    for (size_t i = 0; ep && ep->type == PC_YNODE_SEQ && i < ep->n; i++) {
        if (ep->vals[i]->type != PC_YNODE_MAP) {
            pc_diag_set(d, ep->vals[i]->line, ep->vals[i]->col,
                        "extensionProviders[%zu]: must be a map", i);
            return PC_EINVAL;
        }
    }
    return 0;
}

/* Writes mesh with our entries in place (ctl_mesh_merge_pair). */
static int
merge(const char *mesh, const struct ours *o, char **out, struct pc_diag *d)
{
    struct pc_ynode **docs = NULL;
    size_t ndocs = 0;
    yaml_emitter_t e;
    struct pc_buf buf;
    int rc = 0;

    *out = NULL;
    if (mesh && (rc = pc_yaml_load_all(mesh, strlen(mesh), &docs, &ndocs, d)) < 0)
        return rc;
    if (ndocs > 1) {
        pc_diag_set(d, docs[1]->line, docs[1]->col, "mesh: must be one YAML document");
        rc = PC_EINVAL;
    } else if (ndocs == 1 && !is_null(docs[0])) {
        rc = check_mesh(docs[0], d);
    }
    if (rc == 0) {
        start(&e, &buf);
        *out = finish(&e, &buf, emit_mesh(&e, ndocs && !is_null(docs[0]) ? docs[0] : NULL, o));
        if (!*out) {
            pc_diag_set(d, 0, 0, "mesh: cannot be written back as YAML");
            rc = PC_EINVAL;
        }
    }
    pc_yaml_free_all(docs, ndocs);
    return rc;
}

int
ctl_mesh_merge(const char *mesh, const json_t *provider, char **out, struct pc_diag *d)
{
    struct ours o = {.name = {pc_json_str(provider, "name")}, .value = {provider}, .n = 1};
    int rc;

    *out = NULL;
    if ((rc = ctl_provider_check(provider, d)) < 0)
        return rc;
    return merge(mesh, &o, out, d);
}

int
ctl_mesh_merge_pair(const char *mesh, const json_t *provider, const json_t *local, char **out,
                    struct pc_diag *d)
{
    struct ours o = {.name = {pc_json_str(provider, "name"), CTL_LOCAL_PROVIDER},
                     .value = {provider, local},
                     .n = 2};
    int rc;

    *out = NULL;
    if ((rc = ctl_provider_check(provider, d)) < 0 ||
        (local && (rc = ctl_provider_check(local, d)) < 0))
        return rc;
    return merge(mesh, &o, out, d);
}
