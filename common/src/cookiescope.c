/*
 * cookiescope.c - cookie-name collisions between owners, by domain matching.
 *
 * Every lookup goes through one jansson object of indexes, each key mapping to an object
 * {binding: owner message}; a key only holds the first owner of each binding. For a cookie
 * name N:
 *   "d|N|D"  owners whose Domain is D
 *   "D|N|S"  owners with a Domain that is S or under S (every suffix S of the Domain)
 *   "h|N|S"  owners serving a host that is S or under S (every suffix of each host; of a
 *            wildcard "*.s", every suffix of s)
 *   "w|N|s"  owners serving the wildcard "*.s"
 * so a new owner is checked in time proportional to its own hosts' labels, whatever the
 * number of owners before it.
 */
#include "portcullis/cookiescope.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "portcullis/base.h"

struct pc_cookie_scopes {
    json_t *index;
};

struct pc_cookie_scopes *
pc_cookie_scopes_new(void)
{
    struct pc_cookie_scopes *s = pc_xcalloc(1, sizeof(*s));

    s->index = json_object();
    return s;
}

void
pc_cookie_scopes_free(struct pc_cookie_scopes *s)
{
    if (s == NULL)
        return;
    json_decref(s->index);
    free(s);
}

/* The message of an owner under key with another binding than b, or NULL. Borrowed. */
static const char *
other(const struct pc_cookie_scopes *s, const char *kind, const char *name, const char *at,
      const char *b)
{
    char *key = pc_xasprintf("%s|%s|%s", kind, name, at);
    const json_t *owners = json_object_get(s->index, key);
    const char *binding, *found = NULL;
    json_t *v;

    free(key);
    json_object_foreach((json_t *)owners, binding, v)
    {
        if (strcmp(binding, b) != 0) {
            found = json_string_value(v);
            break;
        }
    }
    return found;
}

static void
record(struct pc_cookie_scopes *s, const char *kind, const char *name, const char *at,
       const char *b, const char *msg)
{
    char *key = pc_xasprintf("%s|%s|%s", kind, name, at);
    json_t *owners = json_object_get(s->index, key);

    if (owners == NULL) {
        owners = json_object();
        json_object_set_new(s->index, key, owners);
    }
    if (json_object_get(owners, b) == NULL)
        json_object_set_new(owners, b, json_string(msg));
    free(key);
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
    char *msg = d ? pc_xasprintf("%s (Domain=%s)", o->id, d) : pc_xasprintf("%s", o->id);
    bool wild;

    if (d != NULL) {
        record(s, "d", o->name, d, o->binding, msg);
        for (const char *sfx = d; sfx != NULL; sfx = parent(sfx))
            record(s, "D", o->name, sfx, o->binding, msg);
    }
    for (size_t i = 0; i < o->nhosts; i++) {
        const char *b = base_of(o->hosts[i], &wild);

        for (const char *sfx = b; sfx != NULL; sfx = parent(sfx))
            record(s, "h", o->name, sfx, o->binding, msg);
        if (wild)
            record(s, "w", o->name, b, o->binding, msg);
    }
    free(msg);
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
