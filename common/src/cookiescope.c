/*
 * cookiescope.c - cookie-name collisions between owners, by domain matching.
 *
 * Every lookup goes through one map of keys, each naming a chain of records {binding, owner
 * message}; a key only holds the first owner of each binding, in the order they came. For a
 * cookie name N:
 *   "d|N|D"  owners whose Domain is D
 *   "D|N|S"  owners with a Domain that is S or under S (every suffix S of the Domain)
 *   "h|N|S"  owners serving a host that is S or under S (every suffix of each host; of a
 *            wildcard "*.s", every suffix of s)
 *   "w|N|s"  owners serving the wildcard "*.s"
 * so a new owner is checked in time proportional to its own hosts' labels, whatever the
 * number of owners before it. Keys and each owner's binding and message live in an arena:
 * authd checks every host of every config shard on each merge, about a hundred bytes a key.
 */
#include "portcullis/cookiescope.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/base.h"
#include "portcullis/strmap.h"

#define NONE SIZE_MAX

struct record {
    const char *binding, *msg; /* in the arena */
    size_t next;               /* the next record under the same key, or NONE */
};

struct pc_cookie_scopes {
    struct pc_strmap index; /* key -> its first record */
    struct record *v;
    size_t n, cap;
    struct pc_arena arena;
};

struct pc_cookie_scopes *
pc_cookie_scopes_new(void)
{
    return pc_xcalloc(1, sizeof(struct pc_cookie_scopes));
}

void
pc_cookie_scopes_free(struct pc_cookie_scopes *s)
{
    if (s == NULL)
        return;
    pc_strmap_release(&s->index);
    free(s->v);
    pc_arena_release(&s->arena);
    free(s);
}

/* The first record of key kind|name|at, or NONE. */
static size_t
first(const struct pc_cookie_scopes *s, const char *kind, const char *name, const char *at)
{
    char *key = pc_xasprintf("%s|%s|%s", kind, name, at);
    size_t r;

    if (!pc_strmap_get(&s->index, key, &r))
        r = NONE;
    free(key);
    return r;
}

/* The message of an owner under key with another binding than b, or NULL. Borrowed. */
static const char *
other(const struct pc_cookie_scopes *s, const char *kind, const char *name, const char *at,
      const char *b)
{
    for (size_t r = first(s, kind, name, at); r != NONE; r = s->v[r].next)
        if (strcmp(s->v[r].binding, b) != 0)
            return s->v[r].msg;
    return NULL;
}

static size_t
new_record(struct pc_cookie_scopes *s, const char *b, const char *msg)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = pc_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n] = (struct record){.binding = b, .msg = msg, .next = NONE};
    return s->n++;
}

/*
 * b and msg: the owner's copies in the arena. A key keeps at most two records: other() wants
 * the first owner whose binding differs from the one asking, and one of the first two always
 * does when there are two, so a third binding would only make every insert walk longer
 * (10,000 clients under one domain: quadratic).
 */
static void
record(struct pc_cookie_scopes *s, const char *kind, const char *name, const char *at,
       const char *b, const char *msg)
{
    size_t r = first(s, kind, name, at), added;

    if (r == NONE) {
        char *key = pc_arena_printf(&s->arena, "%s|%s|%s", kind, name, at);

        pc_strmap_add(&s->index, key, new_record(s, b, msg), NULL);
        return;
    }
    if (strcmp(s->v[r].binding, b) == 0 || s->v[r].next != NONE)
        return;
    added = new_record(s, b, msg); /* may move s->v: index it after */
    s->v[r].next = added;
}

/* The next suffix of a dotted name ("a.b.c" -> "b.c" -> "c" -> NULL). */
static const char *
parent(const char *n)
{
    const char *dot = strchr(n, '.');

    return dot != NULL && dot[1] != '\0' ? dot + 1 : NULL;
}

/* A host's base: "*.s" -> "s"; *wild tells which. */
static const char *
base_of(const char *host, bool *wild)
{
    *wild = strncmp(host, "*.", 2) == 0;
    return *wild ? host + 2 : host;
}

/* Why host of o receives an earlier owner's domain cookie, or NULL. */
static const char *
host_collides(const struct pc_cookie_scopes *s, const struct pc_cookie_owner *o, const char *host)
{
    bool wild;
    const char *b = base_of(host, &wild), *m = NULL;

    for (const char *sfx = b; sfx != NULL && m == NULL; sfx = parent(sfx))
        m = other(s, "d", o->name, sfx, o->binding);
    /* Some host under "*.s" is, or is under, a Domain below s. */
    if (m == NULL && wild)
        m = other(s, "D", o->name, b, o->binding);
    return m;
}

/* Why o's own Domain d reaches a host an earlier owner serves, or NULL. */
static const char *
domain_collides(const struct pc_cookie_scopes *s, const struct pc_cookie_owner *o, const char *d)
{
    const char *m = other(s, "h", o->name, d, o->binding);

    for (const char *sfx = d; sfx != NULL && m == NULL; sfx = parent(sfx))
        m = other(s, "w", o->name, sfx, o->binding);
    return m;
}

static void
record_owner(struct pc_cookie_scopes *s, const struct pc_cookie_owner *o, const char *d)
{
    const char *msg, *b = pc_arena_strdup(&s->arena, o->binding);
    bool wild;

    if (d == NULL)
        msg = pc_arena_strdup(&s->arena, o->id);
    else
        msg = pc_arena_printf(&s->arena, "%s (Domain=%s)", o->id, d);
    if (d != NULL) {
        record(s, "d", o->name, d, b, msg);
        for (const char *sfx = d; sfx != NULL; sfx = parent(sfx))
            record(s, "D", o->name, sfx, b, msg);
    }
    for (size_t i = 0; i < o->nhosts; i++) {
        const char *base = base_of(o->hosts[i], &wild);

        for (const char *sfx = base; sfx != NULL; sfx = parent(sfx))
            record(s, "h", o->name, sfx, b, msg);
        if (wild)
            record(s, "w", o->name, base, b, msg);
    }
}

int
pc_cookie_scopes_add(struct pc_cookie_scopes *s, const struct pc_cookie_owner *o, char **why)
{
    const char *d = o->domain != NULL && o->domain[0] == '.' ? o->domain + 1 : o->domain;
    const char *m = NULL;

    *why = NULL;
    if (d != NULL && d[0] == '\0')
        d = NULL;
    for (size_t i = 0; i < o->nhosts && m == NULL; i++)
        if ((m = host_collides(s, o, o->hosts[i])) != NULL)
            *why = pc_xasprintf("host \"%s\" also receives cookie \"%s\" of %s", o->hosts[i],
                                o->name, m);
    if (m == NULL && d != NULL && (m = domain_collides(s, o, d)) != NULL)
        *why =
            pc_xasprintf("cookie \"%s\" with Domain=%s also reaches a host of %s", o->name, d, m);
    if (m != NULL)
        return PC_EINVAL;
    record_owner(s, o, d);
    return 0;
}
