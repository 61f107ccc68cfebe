/*
 * yaml.c - YAML streams into position-carrying trees (libyaml's event parser), and JSON
 * values out as deterministic block YAML (libyaml's emitter).
 */
#include "portcullis/yaml.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "portcullis/buf.h"
#include "portcullis/strmap.h"

struct loader {
    yaml_parser_t parser;
    size_t nodes; /* nodes built, copies of aliased ones included */
    struct pc_diag *diag;
    bool aliases; /* else an alias is an error */
    /* Nodes with an anchor (&name), complete: aliases (*name) copy them. Per document. */
    struct pc_strmap anchors; /* name (in names) -> index in anchored */
    struct pc_arena names;
    const struct pc_ynode **anchored;
    size_t nanchored;
    size_t copied; /* bytes of scalars copied for aliases, the whole stream */
};

static struct pc_ynode *
node_new(enum pc_ynode_type type, const yaml_mark_t *mark)
{
    struct pc_ynode *n = pc_xcalloc(1, sizeof(*n));

    n->type = type;
    n->line = (int)mark->line + 1;
    n->col = (int)mark->column + 1;
    return n;
}

void
pc_ynode_free(struct pc_ynode *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            pc_ynode_free(n->keys[i]);
        pc_ynode_free(n->vals[i]);
    }
    free(n->keys);
    free(n->vals);
    free(n->value);
    free(n);
}

void
pc_yaml_free_all(struct pc_ynode **docs, size_t ndocs)
{
    for (size_t i = 0; i < ndocs; i++)
        pc_ynode_free(docs[i]);
    free(docs);
}

static int
next_event(struct loader *l, yaml_event_t *ev)
{
    if (yaml_parser_parse(&l->parser, ev))
        return 0;
    pc_diag_set(l->diag, (int)l->parser.problem_mark.line + 1,
                (int)l->parser.problem_mark.column + 1, "%s%s%s",
                l->parser.problem ? l->parser.problem : "invalid YAML",
                l->parser.context ? " " : "", l->parser.context ? l->parser.context : "");
    return PC_EPARSE;
}

static void
push(struct pc_ynode *parent, struct pc_ynode *key, struct pc_ynode *val)
{
    if ((parent->n & (parent->n - 1)) == 0) {
        size_t cap = parent->n ? parent->n * 2 : 4;
        parent->vals = pc_xrealloc(parent->vals, cap * sizeof(*parent->vals));
        if (parent->type == PC_YNODE_MAP)
            parent->keys = pc_xrealloc(parent->keys, cap * sizeof(*parent->keys));
    }
    if (parent->type == PC_YNODE_MAP)
        parent->keys[parent->n] = key;
    parent->vals[parent->n++] = val;
}

static int load_node(struct loader *l, yaml_event_t *ev, int depth, struct pc_ynode **out);

static int
too_big(struct loader *l, int depth, const yaml_mark_t *mark)
{
    if (depth <= PC_YAML_MAX_DEPTH && ++l->nodes <= PC_YAML_MAX_NODES)
        return 0;
    pc_diag_set(l->diag, (int)mark->line + 1, (int)mark->column + 1,
                "document nested too deeply or too large");
    return PC_ETOOBIG;
}

static void
forget_anchors(struct loader *l)
{
    pc_strmap_release(&l->anchors);
    pc_arena_release(&l->names);
    free(l->anchored);
    l->anchored = NULL;
    l->nanchored = 0;
}

static void
add_anchor(struct loader *l, const yaml_char_t *name, const struct pc_ynode *n)
{
    if (name == NULL || !l->aliases)
        return;
    if ((l->nanchored & (l->nanchored - 1)) == 0)
        l->anchored =
            pc_xrealloc(l->anchored, (l->nanchored ? l->nanchored * 2 : 4) * sizeof(*l->anchored));
    l->anchored[l->nanchored] = n;
    /* The latest definition of a name wins. */
    pc_strmap_put(&l->anchors, pc_arena_strdup(&l->names, (const char *)name), l->nanchored++);
}

/*
 * A copy of src at depth, counted like parsed nodes: an alias costs what writing the value
 * out would, so no stream of aliases can build more than PC_YAML_MAX_NODES nodes.
 */
static int
copy_node(struct loader *l, const struct pc_ynode *src, int depth, const yaml_mark_t *mark,
          struct pc_ynode **out)
{
    struct pc_ynode *n;
    int rc;

    *out = NULL;
    if ((rc = too_big(l, depth, mark)) != 0)
        return rc;
    if (src->value && (l->copied += src->len) > PC_YAML_MAX_ALIAS_BYTES) {
        pc_diag_set(l->diag, (int)mark->line + 1, (int)mark->column + 1,
                    "aliases expand to more than %d bytes", PC_YAML_MAX_ALIAS_BYTES);
        return PC_ETOOBIG;
    }
    n = pc_xcalloc(1, sizeof(*n));
    n->type = src->type;
    n->line = src->line;
    n->col = src->col;
    n->plain = src->plain;
    if (src->value) {
        n->value = pc_xstrndup(src->value, src->len);
        n->len = src->len;
    }
    for (size_t i = 0; i < src->n; i++) {
        struct pc_ynode *k = NULL, *v = NULL;

        if ((src->keys && (rc = copy_node(l, src->keys[i], depth + 1, mark, &k)) != 0) ||
            (rc = copy_node(l, src->vals[i], depth + 1, mark, &v)) != 0) {
            pc_ynode_free(k);
            pc_ynode_free(n);
            return rc;
        }
        push(n, k, v);
    }
    *out = n;
    return 0;
}

/* The alias ev names, copied; an anchor not defined before it (or its own) is an error. */
static int
load_alias(struct loader *l, const yaml_event_t *ev, int depth, struct pc_ynode **out)
{
    const char *name = (const char *)ev->data.alias.anchor;
    size_t i;

    if (!l->aliases) {
        pc_diag_set(l->diag, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                    "aliases are not supported here: write the value out");
        return PC_EPARSE;
    }
    if (name != NULL && pc_strmap_get(&l->anchors, name, &i))
        return copy_node(l, l->anchored[i], depth, &ev->start_mark, out);
    pc_diag_set(l->diag, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                "alias *%s names no anchor before it", name ? name : "");
    return PC_EPARSE;
}

/* Loads children until the closing event of a mapping or sequence. */
static int
load_children(struct loader *l, struct pc_ynode *parent, int depth)
{
    yaml_event_type_t end =
        parent->type == PC_YNODE_MAP ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    for (;;) {
        yaml_event_t ev;
        struct pc_ynode *key = NULL, *val = NULL;
        int rc = next_event(l, &ev);

        if (rc != 0)
            return rc;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return 0;
        }
        rc = load_node(l, &ev, depth + 1, parent->type == PC_YNODE_MAP ? &key : &val);
        if (rc == 0 && parent->type == PC_YNODE_MAP) {
            if (key->type != PC_YNODE_SCALAR) {
                pc_diag_set(l->diag, key->line, key->col, "mapping keys must be scalars");
                rc = PC_EPARSE;
            } else if (pc_ynode_get(parent, key->value) != NULL) {
                pc_diag_set(l->diag, key->line, key->col, "duplicate key \"%s\"", key->value);
                rc = PC_EPARSE;
            } else if ((rc = next_event(l, &ev)) == 0) {
                rc = load_node(l, &ev, depth + 1, &val);
            }
        }
        if (rc != 0) {
            pc_ynode_free(key);
            pc_ynode_free(val);
            return rc;
        }
        push(parent, key, val);
    }
}

/* Builds the node that starts with ev (consumed). */
static int
load_node(struct loader *l, yaml_event_t *ev, int depth, struct pc_ynode **out)
{
    struct pc_ynode *n = NULL;
    int rc = 0;

    if (ev->type == YAML_ALIAS_EVENT) {
        rc = load_alias(l, ev, depth, out);
        yaml_event_delete(ev);
        return rc;
    }
    if ((rc = too_big(l, depth, &ev->start_mark)) != 0) {
        yaml_event_delete(ev);
        return rc;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n = node_new(PC_YNODE_SCALAR, &ev->start_mark);
        n->value = pc_xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->len = ev->data.scalar.length;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        add_anchor(l, ev->data.scalar.anchor, n);
        break;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
        n = node_new(ev->type == YAML_MAPPING_START_EVENT ? PC_YNODE_MAP : PC_YNODE_SEQ,
                     &ev->start_mark);
        /* Registered once complete: an alias inside its own value finds no anchor. */
        if ((rc = load_children(l, n, depth)) == 0)
            add_anchor(l,
                       ev->type == YAML_MAPPING_START_EVENT ? ev->data.mapping_start.anchor
                                                            : ev->data.sequence_start.anchor,
                       n);
        break;
    default:
        pc_diag_set(l->diag, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                    "unexpected YAML event");
        rc = PC_EPARSE;
        break;
    }
    yaml_event_delete(ev);
    if (rc != 0) {
        pc_ynode_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

static int
is_empty_doc(const struct pc_ynode *n)
{
    return n->type == PC_YNODE_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0);
}

static int
load_stream(struct loader *l, struct pc_ynode ***docs, size_t *ndocs)
{
    for (;;) {
        yaml_event_t ev;
        struct pc_ynode *root = NULL;
        int rc = next_event(l, &ev);

        if (rc != 0)
            return rc;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (ev.type != YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev); /* stream start, document end */
            continue;
        }
        yaml_event_delete(&ev);
        forget_anchors(l); /* anchors never reach into the next document */
        if ((rc = next_event(l, &ev)) != 0 || (rc = load_node(l, &ev, 0, &root)) != 0)
            return rc;
        if (is_empty_doc(root)) {
            pc_ynode_free(root);
            continue;
        }
        if ((*ndocs & (*ndocs + 1)) == 0 || *ndocs == 0)
            *docs = pc_xrealloc(*docs, (*ndocs * 2 + 2) * sizeof(**docs));
        (*docs)[(*ndocs)++] = root;
    }
}

static int
load_all(const char *text, size_t len, bool aliases, struct pc_ynode ***docs, size_t *ndocs,
         struct pc_diag *diag)
{
    struct loader l = {.diag = diag, .aliases = aliases};
    int rc;

    *docs = NULL;
    *ndocs = 0;
    if (!yaml_parser_initialize(&l.parser))
        abort();
    yaml_parser_set_input_string(&l.parser, (const unsigned char *)text, len);
    rc = load_stream(&l, docs, ndocs);
    forget_anchors(&l);
    yaml_parser_delete(&l.parser);
    if (rc != 0) {
        pc_yaml_free_all(*docs, *ndocs);
        *docs = NULL;
        *ndocs = 0;
    }
    return rc;
}

int
pc_yaml_load_all(const char *text, size_t len, struct pc_ynode ***docs, size_t *ndocs,
                 struct pc_diag *diag)
{
    return load_all(text, len, false, docs, ndocs, diag);
}

static int
load_one(const char *text, size_t len, bool aliases, struct pc_ynode **root, struct pc_diag *diag)
{
    struct pc_ynode **docs = NULL;
    size_t ndocs = 0;
    int rc = load_all(text, len, aliases, &docs, &ndocs, diag);

    if (rc != 0)
        return rc;
    if (ndocs != 1) {
        pc_diag_set(diag, ndocs ? docs[1]->line : 1, ndocs ? docs[1]->col : 1,
                    ndocs ? "expected one YAML document, found several" : "empty document");
        pc_yaml_free_all(docs, ndocs);
        return PC_EPARSE;
    }
    *root = docs[0];
    free(docs);
    return 0;
}

int
pc_yaml_load(const char *text, size_t len, struct pc_ynode **root, struct pc_diag *diag)
{
    return load_one(text, len, false, root, diag);
}

int
pc_yaml_load_aliased(const char *text, size_t len, struct pc_ynode **root, struct pc_diag *diag)
{
    return load_one(text, len, true, root, diag);
}

const struct pc_ynode *
pc_ynode_get(const struct pc_ynode *n, const char *key)
{
    if (n == NULL || n->type != PC_YNODE_MAP)
        return NULL;
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->keys[i]->value, key) == 0)
            return n->vals[i];
    return NULL;
}

const char *
pc_ynode_type_name(const struct pc_ynode *n)
{
    switch (n->type) {
    case PC_YNODE_MAP:
        return "map";
    case PC_YNODE_SEQ:
        return "sequence";
    default:
        return "scalar";
    }
}

static int
one_of(const char *s, const char *a, const char *b, const char *c)
{
    return strcmp(s, a) == 0 || strcmp(s, b) == 0 || strcmp(s, c) == 0;
}

/* Counts the digits at *s and advances past them. */
static size_t
digits(const char **s)
{
    size_t n = 0;

    while (**s >= '0' && **s <= '9') {
        (*s)++;
        n++;
    }
    return n;
}

/* 1 for an integer, 2 for a float, 0 for neither (YAML 1.2 core schema, decimal only). */
static int
number_kind(const char *s)
{
    size_t whole, frac = 0;
    int kind = 1;

    if (*s == '-' || *s == '+')
        s++;
    whole = digits(&s);
    if (*s == '.') {
        s++;
        frac = digits(&s);
        kind = 2;
    }
    if (whole + frac == 0)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        if (digits(&s) == 0)
            return 0;
        kind = 2;
    }
    return *s == '\0' ? kind : 0;
}

/* YAML 1.2 core schema resolution of a plain scalar. */
static json_t *
plain_scalar(const char *s)
{
    int kind;

    if (*s == '\0' || strcmp(s, "~") == 0 || one_of(s, "null", "Null", "NULL"))
        return json_null();
    if (one_of(s, "true", "True", "TRUE"))
        return json_true();
    if (one_of(s, "false", "False", "FALSE"))
        return json_false();
    kind = number_kind(s);
    if (kind == 1) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno == 0)
            return json_integer(v);
    }
    if (kind != 0)
        return json_real(strtod(s, NULL));
    return json_string(s);
}

json_t *
pc_yaml_to_json(const struct pc_ynode *n)
{
    json_t *out = NULL;

    switch (n->type) {
    case PC_YNODE_SCALAR:
        out = n->plain ? plain_scalar(n->value) : json_stringn(n->value, n->len);
        return out ? out : json_string(""); /* invalid UTF-8 becomes "" */
    case PC_YNODE_SEQ:
        out = json_array();
        for (size_t i = 0; i < n->n; i++)
            json_array_append_new(out, pc_yaml_to_json(n->vals[i]));
        return out;
    case PC_YNODE_MAP:
        out = json_object();
        for (size_t i = 0; i < n->n; i++)
            json_object_set_new(out, n->keys[i]->value, pc_yaml_to_json(n->vals[i]));
        return out;
    }
    return json_null();
}

/* ---- emitting ---- */

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
emit_scalar(yaml_emitter_t *e, const char *s, size_t len, yaml_scalar_style_t style)
{
    yaml_event_t ev;

    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1, style);
    return emit(e, &ev);
}

static bool
has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

/*
 * Strings that a reader would resolve to another type must be quoted. one_line: a string
 * with a control character is double-quoted (escaped) instead of a literal block, so every
 * scalar stays on its own line.
 */
static yaml_scalar_style_t
string_style(const char *s, size_t len, bool one_line)
{
    json_t *plain = plain_scalar(s);
    int is_string = json_is_string(plain);

    json_decref(plain);
    if (!is_string || (one_line && has_control(s, len)))
        return YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    if (strchr(s, '\n') != NULL)
        return YAML_LITERAL_SCALAR_STYLE;
    return YAML_ANY_SCALAR_STYLE;
}

static int
compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int emit_value(yaml_emitter_t *e, const json_t *j, bool one_line);

static int
emit_object(yaml_emitter_t *e, const json_t *j, bool one_line)
{
    size_t n = json_object_size(j), i = 0;
    const char **keys = pc_xcalloc(n, sizeof(*keys));
    const char *key;
    json_t *val;
    yaml_event_t ev;
    int rc;

    json_object_foreach((json_t *)j, key, val) keys[i++] = key;
    qsort(keys, n, sizeof(*keys), compare_keys);
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                        n ? YAML_BLOCK_MAPPING_STYLE : YAML_FLOW_MAPPING_STYLE);
    rc = emit(e, &ev);
    for (i = 0; rc == 0 && i < n; i++) {
        rc = emit_scalar(e, keys[i], strlen(keys[i]),
                         string_style(keys[i], strlen(keys[i]), one_line));
        if (rc == 0)
            rc = emit_value(e, json_object_get(j, keys[i]), one_line);
    }
    free(keys);
    yaml_mapping_end_event_initialize(&ev);
    return rc ? rc : emit(e, &ev);
}

static int
emit_array(yaml_emitter_t *e, const json_t *j, bool one_line)
{
    size_t n = json_array_size(j);
    yaml_event_t ev;
    int rc;

    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                         n ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE);
    rc = emit(e, &ev);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = emit_value(e, json_array_get(j, i), one_line);
    yaml_sequence_end_event_initialize(&ev);
    return rc ? rc : emit(e, &ev);
}

static int
emit_value(yaml_emitter_t *e, const json_t *j, bool one_line)
{
    char num[64];

    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return emit_object(e, j, one_line);
    case JSON_ARRAY:
        return emit_array(e, j, one_line);
    case JSON_STRING:
        return emit_scalar(e, json_string_value(j), json_string_length(j),
                           string_style(json_string_value(j), json_string_length(j), one_line));
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        break;
    case JSON_REAL:
        snprintf(num, sizeof(num), "%.17g", json_real_value(j));
        if (strpbrk(num, ".eni") == NULL)
            strcat(num, ".0");
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
    return emit_scalar(e, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
}

static char *
to_yaml(const json_t *j, bool one_line)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    struct pc_buf out;
    int rc;

    pc_buf_init(&out, 0);
    if (!yaml_emitter_initialize(&e))
        abort();
    yaml_emitter_set_output(&e, write_handler, &out);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    yaml_emitter_set_indent(&e, 2);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    rc = emit(&e, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    rc = rc ? rc : emit(&e, &ev);
    rc = rc ? rc : emit_value(&e, j, one_line);
    yaml_document_end_event_initialize(&ev, 1);
    rc = rc ? rc : emit(&e, &ev);
    yaml_stream_end_event_initialize(&ev);
    rc = rc ? rc : emit(&e, &ev);
    yaml_emitter_delete(&e);
    if (rc != 0)
        abort(); /* the emitter only fails on events we built wrong */
    return pc_buf_detach(&out);
}

char *
pc_json_to_yaml(const json_t *j)
{
    return to_yaml(j, false);
}

char *
pc_json_to_yaml_lines(const json_t *j)
{
    return to_yaml(j, true);
}
