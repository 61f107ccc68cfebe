/*
 * revocations.h - the revocation list: per user, a not-before time before which that user's
 * sessions no longer count. authd reads it (from the Secret portcullis-revocations in its
 * namespace, or from --revocations FILE); `portcullis-controller revoke` writes it. Parsing
 * and writing only: what a match means is authd's business.
 *
 * The document (YAML; the Secret's key revocations.yaml):
 *
 *   revocations:
 *     - user: alice@example.com          # an email (case-insensitive) or a sub (exact)
 *       notBefore: "2026-12-01T10:00:00Z" # sessions issued at or before this are refused
 *       hosts: [echo.example.com]         # optional: only there; absent or empty: everywhere
 *
 * Every length is bounded here, where the document enters: the document, the number of
 * entries, a user, the hosts of an entry and a host name.
 */
#ifndef PORTCULLIS_REVOCATIONS_H
#define PORTCULLIS_REVOCATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "portcullis/base.h"

#define PC_REVOKE_SECRET "portcullis-revocations" /* the Secret in authd's namespace */
#define PC_REVOKE_KEY "revocations.yaml"          /* its data key */
#define PC_REVOKE_MAX_DOC (512 * 1024)            /* bytes of the document (a Secret holds 1 MiB) */
#define PC_REVOKE_MAX_ENTRIES 1000                /* entries of the list */
#define PC_REVOKE_MAX_USER 256                    /* bytes of a user: an email or a sub */
#define PC_REVOKE_MAX_HOSTS 16                    /* hosts of one entry */
#define PC_REVOKE_MAX_HOST 253                    /* bytes of one host name ("*." included) */

/* One entry. Strings are new, owned by the list. */
struct pc_revocation {
    char *user;
    int64_t not_before; /* Unix seconds */
    char **hosts;       /* lowercase, sorted, unique; "*.example.com" wildcards kept */
    size_t nhosts;      /* 0: every host */
};

struct pc_revocations {
    struct pc_revocation *v;
    size_t n;
};

void pc_revocations_init(struct pc_revocations *l);
void pc_revocations_release(struct pc_revocations *l);

/*
 * Parses a document into l (initialised by the call; release it whatever the result). Empty
 * text, an empty document and `revocations: []` are an empty list. Returns 0, PC_EPARSE (not
 * YAML, wrong shape, unknown key, a bad time), PC_EINVAL (a user or host that is empty, has
 * control characters or is no host name) or PC_ETOOBIG (a bound above), with "line:col:
 * message" in diag.
 */
int pc_revocations_parse(const char *text, size_t len, struct pc_revocations *l,
                         struct pc_diag *diag);

/*
 * Records that user's sessions issued at or before not_before end, on hosts (nhosts 0: on
 * every host). An entry with the same user and the same hosts keeps the later time instead of
 * a second entry. Returns 0, PC_EINVAL (user or a host is not acceptable, as for parse) or
 * PC_ETOOBIG (PC_REVOKE_MAX_ENTRIES already, or too many or too long strings), with diag.
 */
int pc_revocations_add(struct pc_revocations *l, const char *user, int64_t not_before,
                       const char *const *hosts, size_t nhosts, struct pc_diag *diag);

/* Drops the entries whose not_before is before `before`. Returns how many were dropped. */
size_t pc_revocations_prune(struct pc_revocations *l, int64_t before);

/* New document for l (deterministic: entries in list order, keys sorted); the caller frees. */
char *pc_revocations_to_yaml(const struct pc_revocations *l);

/* Formats t as "YYYY-MM-DDTHH:MM:SSZ" into out. */
void pc_revocations_time(int64_t t, char out[24]);

#endif
