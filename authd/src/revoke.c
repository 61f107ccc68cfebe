/*
 * revoke.c - what the revocation list means for a session (pure: no I/O, now is a parameter).
 *
 * The list (portcullis/revocations.h) is indexed by user twice, once as a sub (exact) and once
 * as an email (ASCII case folded), so a check costs two hash lookups whatever the list's size;
 * with an empty list it costs nothing. authd_session_check is the one gate every session store
 * passes an opened session through before a decision sees it.
 */
#include <stdlib.h>
#include <string.h>

#include "authd.h"

struct authd_revocations {
    struct pc_revocations list;
    json_t *by_sub;   /* user -> [entry index, ...] */
    json_t *by_email; /* lowercase user -> [entry index, ...] */
};

/* Lowercase (ASCII) copy of s into out; false when it does not fit. */
static bool
fold(const char *s, char *out, size_t outlen)
{
    size_t n = strlen(s);

    if (n >= outlen)
        return false;
    for (size_t i = 0; i <= n; i++)
        out[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
    return true;
}

static void
index_add(json_t *map, const char *key, size_t i)
{
    json_t *a = json_object_get(map, key);

    if (a == NULL) {
        a = json_array();
        json_object_set_new(map, key, a);
    }
    json_array_append_new(a, json_integer((json_int_t)i));
}

struct authd_revocations *
authd_revocations_new(struct pc_revocations *l, int64_t now)
{
    struct authd_revocations *r = pc_xcalloc(1, sizeof(*r));
    char key[PC_REVOKE_MAX_USER + 1];

    r->list = *l;
    pc_revocations_init(l);
    r->by_sub = json_object();
    r->by_email = json_object();
    for (size_t i = 0; i < r->list.n; i++) {
        struct pc_revocation *e = &r->list.v[i];

        /* A time ahead of this clock (the revoking machine's clock is ahead) means "up to
         * now": sessions issued from here on are the user's new logins. */
        if (e->not_before > now)
            e->not_before = now;
        index_add(r->by_sub, e->user, i);
        if (fold(e->user, key, sizeof(key)))
            index_add(r->by_email, key, i);
    }
    return r;
}

void
authd_revocations_free(struct authd_revocations *r)
{
    if (r == NULL)
        return;
    pc_revocations_release(&r->list);
    json_decref(r->by_sub);
    json_decref(r->by_email);
    free(r);
}

size_t
authd_revocations_count(const struct authd_revocations *r)
{
    return r ? r->list.n : 0;
}

/* An entry's hosts against the request's host name (normalised). */
static bool
host_in_scope(const struct pc_revocation *e, const char *name)
{
    size_t n = strlen(name);

    if (e->nhosts == 0)
        return true;
    for (size_t i = 0; i < e->nhosts; i++) {
        const char *h = e->hosts[i];

        if (!strcmp(h, name))
            return true;
        if (!strncmp(h, "*.", 2) && n > strlen(h) - 1 && !strcmp(name + n - (strlen(h) - 1), h + 1))
            return true;
    }
    return false;
}

/* The entries of the user behind id, by sub and by email: the two index arrays (or NULL). */
static void
entries_of(const struct authd_revocations *r, const struct authd_identity *id, json_t **sub,
           json_t **email)
{
    char key[PC_REVOKE_MAX_USER + 1];

    *sub = id->sub ? json_object_get(r->by_sub, id->sub) : NULL;
    *email =
        id->email && fold(id->email, key, sizeof(key)) ? json_object_get(r->by_email, key) : NULL;
}

const struct pc_revocation *
authd_revocations_match(const struct authd_revocations *r, const struct authd_session *s,
                        const char *host_name)
{
    char name[AUTHD_MAX_HOST + 1];
    json_t *lists[2], *v;
    size_t i;

    if (r == NULL || r->list.n == 0)
        return NULL;
    entries_of(r, &s->id, &lists[0], &lists[1]);
    if (lists[0] == NULL && lists[1] == NULL)
        return NULL;
    /* A host name that cannot be normalised matches no scoped entry, only unscoped ones. */
    if (!authd_host_normalize(host_name, name, sizeof(name)))
        name[0] = '\0';
    for (int k = 0; k < 2; k++)
        json_array_foreach(lists[k], i, v)
        {
            const struct pc_revocation *e = &r->list.v[json_integer_value(v)];

            if (s->issued_at <= e->not_before && host_in_scope(e, name))
                return e;
        }
    return NULL;
}

static int64_t
latest_of(const struct authd_revocations *r, const struct authd_identity *id)
{
    int64_t latest = INT64_MIN;
    json_t *lists[2], *v;
    size_t i;

    if (r == NULL || r->list.n == 0)
        return latest;
    entries_of(r, id, &lists[0], &lists[1]);
    for (int k = 0; k < 2; k++)
        json_array_foreach(lists[k], i, v)
        {
            int64_t nb = r->list.v[json_integer_value(v)].not_before;

            if (nb > latest)
                latest = nb;
        }
    return latest;
}

int
authd_session_check(const struct authd_revocations *r, const struct authd_host *host,
                    const char *host_name, const struct authd_session *s, int64_t now,
                    const struct pc_revocation **hit)
{
    *hit = NULL;
    /*
     * The host's lifetime as configured now, not only the expiry sealed at login: a shorter
     * lifetime applies to the sessions already out there (as oauth2-proxy does), and it is what
     * lets a revocation older than the longest lifetime be dropped from the list.
     */
    if (s->issued_at + host->session.lifetime <= now)
        return PC_EEXPIRED;
    if ((*hit = authd_revocations_match(r, s, host_name)) != NULL)
        return AUTHD_EREVOKED;
    return 0;
}

void
authd_revocations_mint(const struct authd_revocations *r, struct authd_session *s)
{
    int64_t latest = latest_of(r, &s->id);

    /*
     * A login completed after this replica loaded the user's revocation comes after it, even
     * within the same second: without this, a user revoked at second T who logs in again at T
     * would be refused until T+1 and bounce between authd and the IdP meanwhile.
     */
    if (latest != INT64_MIN && s->issued_at <= latest) {
        s->refreshed_at += latest + 1 - s->issued_at;
        s->issued_at = latest + 1;
    }
}
