/*
 * revocations.c - the revocation list document (portcullis/revocations.h): parse, add, prune,
 * write. Pure: no files, no clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "portcullis/revocations.h"
#include "portcullis/yaml.h"

void
pc_revocations_init(struct pc_revocations *l)
{
    l->v = NULL;
    l->n = 0;
}

static void
entry_release(struct pc_revocation *e)
{
    free(e->user);
    for (size_t i = 0; i < e->nhosts; i++)
        free(e->hosts[i]);
    free(e->hosts);
    memset(e, 0, sizeof(*e));
}

void
pc_revocations_release(struct pc_revocations *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        entry_release(&l->v[i]);
    free(l->v);
    pc_revocations_init(l);
}

void
pc_revocations_time(int64_t t, char out[24])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 24, "1970-01-01T00:00:00Z");
}

/*
 * "YYYY-MM-DDTHH:MM:SSZ" only, what the command writes; a value that does not come back
 * unchanged from formatting (month 13, day 32, leap seconds) is refused.
 */
static int
parse_time(const char *s, int64_t *out)
{
    struct tm tm = {0};
    char back[24];
    int n = 0;
    time_t t;

    if (strlen(s) != 20 ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n != 20 || tm.tm_year < 1970)
        return PC_EPARSE;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    if ((t = timegm(&tm)) == (time_t)-1)
        return PC_EPARSE;
    pc_revocations_time(t, back);
    if (strcmp(back, s) != 0)
        return PC_EPARSE;
    *out = t;
    return 0;
}

/* A user is what an IdP puts in sub or email: no control characters (it is logged). */
static int
check_user(const char *u, struct pc_diag *d, int line, int col)
{
    size_t n = strlen(u);

    if (n == 0 || n > PC_REVOKE_MAX_USER) {
        pc_diag_set(d, line, col, "user: must be 1 to %d bytes", PC_REVOKE_MAX_USER);
        return n ? PC_ETOOBIG : PC_EINVAL;
    }
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            pc_diag_set(d, line, col, "user: control characters are not allowed");
            return PC_EINVAL;
        }
    /* jansson refuses invalid UTF-8, which is also how the list is written. */
    json_t *s = json_string(u);
    if (s == NULL) {
        pc_diag_set(d, line, col, "user: must be UTF-8");
        return PC_EINVAL;
    }
    json_decref(s);
    return 0;
}

/* New lowercase copy of a host name ("*." prefix allowed), or NULL with diag set. */
static char *
norm_host(const char *h, struct pc_diag *d, int line, int col)
{
    size_t n = strlen(h);
    const char *p = h;
    char *out;

    if (n == 0 || n > PC_REVOKE_MAX_HOST) {
        pc_diag_set(d, line, col, "hosts: a host name is 1 to %d bytes", PC_REVOKE_MAX_HOST);
        return NULL;
    }
    if (!strncmp(p, "*.", 2))
        p += 2;
    if (*p == '\0' || *p == '.' || *p == '-' || strstr(p, ".."))
        goto bad;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-'))
            goto bad;
    out = pc_xstrdup(h);
    for (char *q = out; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    return out;
bad:
    pc_diag_set(d, line, col, "hosts: \"%.64s\" is not a host name", h);
    return NULL;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts e's hosts and drops repeats, so entries compare by their host sets. */
static void
canon_hosts(struct pc_revocation *e)
{
    size_t k = 0;

    if (e->nhosts < 2)
        return;
    qsort(e->hosts, e->nhosts, sizeof(*e->hosts), cmp_str);
    for (size_t i = 0; i < e->nhosts; i++) {
        if (k > 0 && !strcmp(e->hosts[k - 1], e->hosts[i])) {
            free(e->hosts[i]);
            continue;
        }
        e->hosts[k++] = e->hosts[i];
    }
    e->nhosts = k;
}

static bool
same_target(const struct pc_revocation *a, const struct pc_revocation *b)
{
    if (strcmp(a->user, b->user) || a->nhosts != b->nhosts)
        return false;
    for (size_t i = 0; i < a->nhosts; i++)
        if (strcmp(a->hosts[i], b->hosts[i]))
            return false;
    return true;
}

/* Appends e (taken over) or folds it into an entry for the same user and hosts. */
static int
put_entry(struct pc_revocations *l, struct pc_revocation *e, struct pc_diag *d, int line, int col)
{
    canon_hosts(e);
    for (size_t i = 0; i < l->n; i++)
        if (same_target(&l->v[i], e)) {
            if (e->not_before > l->v[i].not_before)
                l->v[i].not_before = e->not_before;
            entry_release(e);
            return 0;
        }
    if (l->n >= PC_REVOKE_MAX_ENTRIES) {
        pc_diag_set(d, line, col, "revocations: more than %d entries", PC_REVOKE_MAX_ENTRIES);
        entry_release(e);
        return PC_ETOOBIG;
    }
    l->v = pc_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = *e;
    memset(e, 0, sizeof(*e));
    return 0;
}

int
pc_revocations_add(struct pc_revocations *l, const char *user, int64_t not_before,
                   const char *const *hosts, size_t nhosts, struct pc_diag *diag)
{
    struct pc_revocation e = {0};
    int rc;

    if ((rc = check_user(user ? user : "", diag, 0, 0)) != 0)
        return rc;
    if (nhosts > PC_REVOKE_MAX_HOSTS) {
        pc_diag_set(diag, 0, 0, "hosts: at most %d per entry", PC_REVOKE_MAX_HOSTS);
        return PC_ETOOBIG;
    }
    e.user = pc_xstrdup(user);
    e.not_before = not_before;
    e.hosts = pc_xcalloc(nhosts ? nhosts : 1, sizeof(*e.hosts));
    for (size_t i = 0; i < nhosts; i++, e.nhosts++)
        if ((e.hosts[i] = norm_host(hosts[i], diag, 0, 0)) == NULL) {
            entry_release(&e);
            return PC_EINVAL;
        }
    return put_entry(l, &e, diag, 0, 0);
}

size_t
pc_revocations_prune(struct pc_revocations *l, int64_t before)
{
    size_t k = 0, dropped = 0;

    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].not_before < before) {
            entry_release(&l->v[i]);
            dropped++;
            continue;
        }
        l->v[k++] = l->v[i];
    }
    l->n = k;
    return dropped;
}

/* ---- parsing ---------------------------------------------------------------------------- */

static int
fail(struct pc_diag *d, const struct pc_ynode *n, int rc, const char *msg)
{
    pc_diag_set(d, n ? n->line : 0, n ? n->col : 0, "%s", msg);
    return rc;
}

static bool
is_null(const struct pc_ynode *n)
{
    return n == NULL ||
           (n->type == PC_YNODE_SCALAR && n->plain &&
            (!strcmp(n->value, "") || !strcmp(n->value, "null") || !strcmp(n->value, "~")));
}

static int
parse_hosts(const struct pc_ynode *n, struct pc_revocation *e, struct pc_diag *d)
{
    if (is_null(n))
        return 0;
    if (n->type != PC_YNODE_SEQ)
        return fail(d, n, PC_EPARSE, "hosts: must be a list of host names");
    if (n->n > PC_REVOKE_MAX_HOSTS)
        return fail(d, n, PC_ETOOBIG, "hosts: at most 16 per entry");
    e->hosts = pc_xcalloc(n->n ? n->n : 1, sizeof(*e->hosts));
    for (size_t i = 0; i < n->n; i++, e->nhosts++) {
        const struct pc_ynode *h = n->vals[i];

        if (h->type != PC_YNODE_SCALAR)
            return fail(d, h, PC_EPARSE, "hosts: must be a list of host names");
        if ((e->hosts[i] = norm_host(h->value, d, h->line, h->col)) == NULL)
            return strlen(h->value) > PC_REVOKE_MAX_HOST ? PC_ETOOBIG : PC_EINVAL;
    }
    return 0;
}

static int
parse_entry(const struct pc_ynode *n, struct pc_revocation *e, struct pc_diag *d)
{
    const struct pc_ynode *user, *nb;
    int rc;

    if (n->type != PC_YNODE_MAP)
        return fail(d, n, PC_EPARSE, "revocations: each entry is a map (user, notBefore, hosts)");
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->keys[i]->value;

        if (strcmp(k, "user") && strcmp(k, "notBefore") && strcmp(k, "hosts"))
            return fail(d, n->keys[i], PC_EPARSE, "unknown key (user, notBefore, hosts)");
    }
    user = pc_ynode_get(n, "user");
    nb = pc_ynode_get(n, "notBefore");
    if (user == NULL || user->type != PC_YNODE_SCALAR || is_null(user))
        return fail(d, user ? user : n, PC_EPARSE, "user: required, a string");
    if ((rc = check_user(user->value, d, user->line, user->col)) != 0)
        return rc;
    if (strlen(user->value) != user->len)
        return fail(d, user, PC_EINVAL, "user: NUL bytes are not allowed");
    if (nb == NULL || nb->type != PC_YNODE_SCALAR || parse_time(nb->value, &e->not_before) != 0)
        return fail(d, nb ? nb : n, PC_EPARSE,
                    "notBefore: required, a UTC time like \"2026-12-01T10:00:00Z\"");
    e->user = pc_xstrdup(user->value);
    return parse_hosts(pc_ynode_get(n, "hosts"), e, d);
}

static int
parse_root(const struct pc_ynode *root, struct pc_revocations *l, struct pc_diag *d)
{
    const struct pc_ynode *list;
    int rc = 0;

    if (root->type != PC_YNODE_MAP)
        return fail(d, root, PC_EPARSE, "must be a map with the key revocations");
    for (size_t i = 0; i < root->n; i++)
        if (strcmp(root->keys[i]->value, "revocations"))
            return fail(d, root->keys[i], PC_EPARSE, "unknown key (revocations)");
    list = pc_ynode_get(root, "revocations");
    if (is_null(list))
        return 0;
    if (list->type != PC_YNODE_SEQ)
        return fail(d, list, PC_EPARSE, "revocations: must be a list");
    if (list->n > PC_REVOKE_MAX_ENTRIES)
        return fail(d, list, PC_ETOOBIG, "revocations: more than 1000 entries");
    for (size_t i = 0; rc == 0 && i < list->n; i++) {
        struct pc_revocation e = {0};

        rc = parse_entry(list->vals[i], &e, d);
        if (rc == 0)
            rc = put_entry(l, &e, d, list->vals[i]->line, list->vals[i]->col);
        else
            entry_release(&e);
    }
    return rc;
}

int
pc_revocations_parse(const char *text, size_t len, struct pc_revocations *l, struct pc_diag *diag)
{
    struct pc_ynode **docs = NULL;
    size_t ndocs = 0;
    int rc;

    pc_revocations_init(l);
    if (len > PC_REVOKE_MAX_DOC) {
        pc_diag_set(diag, 0, 0, "the document is over %d bytes", PC_REVOKE_MAX_DOC);
        return PC_ETOOBIG;
    }
    if ((rc = pc_yaml_load_all(text, len, &docs, &ndocs, diag)) != 0)
        return rc;
    if (ndocs > 1)
        rc = fail(diag, docs[1], PC_EPARSE, "one document only");
    else if (ndocs == 1)
        rc = parse_root(docs[0], l, diag);
    pc_yaml_free_all(docs, ndocs);
    if (rc != 0)
        pc_revocations_release(l);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------------- */

char *
pc_revocations_to_yaml(const struct pc_revocations *l)
{
    json_t *list = json_array(), *root;
    char when[24], *out;

    for (size_t i = 0; i < l->n; i++) {
        const struct pc_revocation *e = &l->v[i];
        json_t *o = json_object();

        pc_revocations_time(e->not_before, when);
        json_object_set_new(o, "user", json_string(e->user));
        json_object_set_new(o, "notBefore", json_string(when));
        if (e->nhosts > 0) {
            json_t *hosts = json_array();

            for (size_t k = 0; k < e->nhosts; k++)
                json_array_append_new(hosts, json_string(e->hosts[k]));
            json_object_set_new(o, "hosts", hosts);
        }
        json_array_append_new(list, o);
    }
    root = json_pack("{s:o}", "revocations", list);
    out = pc_json_to_yaml(root);
    json_decref(root);
    return out;
}
