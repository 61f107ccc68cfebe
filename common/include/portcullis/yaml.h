/*
 * yaml.h - YAML documents as a small tree that remembers where every node stands, so
 * configuration errors can say "file:line:col: message"; conversion to and from jansson.
 *
 * Aliases are refused except by pc_yaml_load_aliased (config shards, which only the
 * controller writes). There an alias (*a) is a copy of its anchor's node (&a), which must be
 * complete and in the same document before it; copies count toward PC_YAML_MAX_NODES like
 * written-out values and their scalars toward PC_YAML_MAX_ALIAS_BYTES, so aliases cannot
 * multiply input past a bound ("billion laughs"). Nesting is bounded to PC_YAML_MAX_DEPTH and
 * node count to PC_YAML_MAX_NODES.
 */
#ifndef PORTCULLIS_YAML_H
#define PORTCULLIS_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "portcullis/base.h"

#define PC_YAML_MAX_DEPTH 64
#define PC_YAML_MAX_NODES 200000
#define PC_YAML_MAX_ALIAS_BYTES (16 * 1024 * 1024)

enum pc_ynode_type { PC_YNODE_SCALAR, PC_YNODE_MAP, PC_YNODE_SEQ };

struct pc_ynode {
    enum pc_ynode_type type;
    int line; /* 1-based */
    int col;  /* 1-based */
    /* scalar */
    char *value; /* NUL-terminated */
    size_t len;
    bool plain; /* unquoted: may be null, bool or a number */
    /* map: keys[i] -> vals[i] (keys are scalars); seq: vals[i] */
    size_t n;
    struct pc_ynode **keys;
    struct pc_ynode **vals;
};

/*
 * Parses every document of a YAML stream. *docs is a new array of *ndocs new trees (empty
 * documents are skipped); free with pc_yaml_free_all. On error returns PC_EPARSE or
 * PC_ETOOBIG with the position in diag.
 */
int pc_yaml_load_all(const char *text, size_t len, struct pc_ynode ***docs, size_t *ndocs,
                     struct pc_diag *diag);
/* Parses a stream that must hold exactly one document. */
int pc_yaml_load(const char *text, size_t len, struct pc_ynode **root, struct pc_diag *diag);
/* The same with aliases resolved (see above). */
int pc_yaml_load_aliased(const char *text, size_t len, struct pc_ynode **root,
                         struct pc_diag *diag);
void pc_ynode_free(struct pc_ynode *n);
void pc_yaml_free_all(struct pc_ynode **docs, size_t ndocs);

/* The value of key in a map node, borrowed; NULL when absent or n is not a map. */
const struct pc_ynode *pc_ynode_get(const struct pc_ynode *n, const char *key);
/* "map", "sequence" or "scalar". */
const char *pc_ynode_type_name(const struct pc_ynode *n);

/*
 * New JSON value for a tree (YAML 1.2 core schema for plain scalars: null, true/false,
 * integers, floats; everything quoted is a string).
 */
json_t *pc_yaml_to_json(const struct pc_ynode *n);

/*
 * New YAML text (block style, keys sorted, deterministic) for a JSON value; one document
 * without the leading "---". The caller frees it.
 */
char *pc_json_to_yaml(const json_t *j);
/*
 * The same, but every string with a control character is double-quoted and escaped, so no
 * scalar spans lines and every line of the text is one key or item (config shard entries,
 * which the controller's shard writer reads line by line).
 */
char *pc_json_to_yaml_lines(const json_t *j);

#endif
