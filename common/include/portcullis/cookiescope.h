/*
 * cookiescope.h - which cookies a browser sends to which host, and when two owners of one
 * cookie name collide.
 *
 * A browser sends a cookie set with Domain=D to D and every host under it (RFC 6265 §5.1.3),
 * and a host-only cookie to the host that set it. Two owners (ProtectedHosts) that use the
 * same cookie name collide when a host one of them serves receives the other's cookie while
 * the two cannot read each other's sessions (different `binding`, e.g. issuer and client):
 * the browser sends both cookies on every request and sign-out clears only one of them.
 * Owners are added oldest first; the first collision of a new owner is reported and the
 * owner is not recorded (the older one keeps its scope, like a host conflict).
 */
#ifndef PORTCULLIS_COOKIESCOPE_H
#define PORTCULLIS_COOKIESCOPE_H

#include <stddef.h>

struct pc_cookie_owner {
    const char *id;           /* names the owner in messages ("ns/name") */
    const char *name;         /* the cookie name */
    const char *binding;      /* owners with equal bindings share sessions: never a collision */
    const char *domain;       /* the Domain attribute ("example.com" or ".example.com"); NULL or
                                 "": host-only */
    const char *const *hosts; /* lowercase names the owner serves; "*.example.com" wildcards */
    size_t nhosts;
};

struct pc_cookie_scopes;

/* A new, empty set of scopes; free with pc_cookie_scopes_free (NULL is a no-op). */
struct pc_cookie_scopes *pc_cookie_scopes_new(void);
void pc_cookie_scopes_free(struct pc_cookie_scopes *s);

/*
 * Records o. Returns 0, or PC_EINVAL when o collides with an owner added before, with *why a
 * new message naming the host, the cookie and the earlier owner ("host \"a.example.com\"
 * also receives cookie \"_portcullis\" of ns/other (Domain=example.com)"); o is then not
 * recorded. The strings of o are copied.
 */
int pc_cookie_scopes_add(struct pc_cookie_scopes *s, const struct pc_cookie_owner *o, char **why);

#endif
