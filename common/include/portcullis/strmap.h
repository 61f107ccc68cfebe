/*
 * strmap.h - a compact hash map from strings to size_t, and an arena for the strings.
 *
 * authd holds an index entry per host name and, while it merges config shards, a few more per
 * host (ids, names, cookie scopes); at 10,000 hosts a jansson object spends several hundred
 * bytes on each. A pc_strmap is two arrays (key pointers, values) with open addressing at a
 * load of at most one half: 32 bytes an entry. Keys are borrowed: they must outlive the map
 * (an arena, or the config that owns them). The hash is SipHash-2-4 under a key drawn from
 * the kernel once per process, so names chosen to collide cannot make inserts quadratic.
 */
#ifndef PORTCULLIS_STRMAP_H
#define PORTCULLIS_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

struct pc_strmap {
    const char **keys; /* cap slots, NULL: empty */
    size_t *vals;
    size_t cap, n;
};

/* An empty map ({0} is one too). */
void pc_strmap_init(struct pc_strmap *m);
/* Frees the arrays (not the keys); the map is empty again. */
void pc_strmap_release(struct pc_strmap *m);
/* Adds key -> v unless key is there. Returns true when added; *old (may be NULL) gets the
 * value already there otherwise. key is borrowed. */
bool pc_strmap_add(struct pc_strmap *m, const char *key, size_t v, size_t *old);
/* Sets key -> v, replacing a value already there. key is borrowed. */
void pc_strmap_put(struct pc_strmap *m, const char *key, size_t v);
/* The value of key (len bytes, no NUL needed) in *v; false when absent (or key holds a NUL). */
bool pc_strmap_getn(const struct pc_strmap *m, const char *key, size_t len, size_t *v);
bool pc_strmap_get(const struct pc_strmap *m, const char *key, size_t *v);

/* Strings allocated in chunks and freed together: no per-string malloc overhead. */
struct pc_arena {
    struct pc_arena_chunk *head;
};

/* A copy of s (len bytes, then a NUL) in a; stable until pc_arena_release. */
char *pc_arena_strndup(struct pc_arena *a, const char *s, size_t len);
char *pc_arena_strdup(struct pc_arena *a, const char *s);
/* printf into the arena. */
char *pc_arena_printf(struct pc_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pc_arena_release(struct pc_arena *a);

#endif
