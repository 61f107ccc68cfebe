/*
 * shards.c - authd's hosts from the config Secrets portcullis-authd-config-<xx> (--watch-config).
 *
 * Every shard keeps two versions: the newest the API server sent, parsed alone, and the one
 * that was merged last (what authd enforces for it). A merge takes the shards in name order
 * and, for each, the newest version when it parsed and fits with the shards before it (no id
 * or host name twice, no session cookie reaching another's host with another issuer or
 * client), else the version loaded before, else nothing: a bad shard is refused alone and the
 * lower shard name keeps what two claim. Pure: JSON objects in, configs and reports out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/b64.h"
#include "portcullis/buf.h"
#include "portcullis/cookiescope.h"
#include "portcullis/json.h"

#define GENERATION_ANNOTATION "portcullis.io/generation"
#define DATA_KEY "hosts.yaml"

struct shard {
    bool present;                  /* the Secret exists */
    long long newest_gen;          /* its portcullis.io/generation */
    struct authd_hostlist *newest; /* NULL when the newest version did not parse */
    bool refusal_reported;         /* the newest version's refusal went into a merge result */
    long long loaded_gen;
    struct authd_hostlist *loaded; /* the version merged last, NULL for none */
};

struct authd_shards {
    bool allow_insecure_issuers;
    bool dropped; /* a loaded shard was deleted since the last merge */
    struct shard v[AUTHD_MAX_SHARDS];
};

struct authd_shards *
authd_shards_new(bool allow_insecure_issuers)
{
    struct authd_shards *s = pc_xcalloc(1, sizeof(*s));

    s->allow_insecure_issuers = allow_insecure_issuers;
    return s;
}

static void
shard_clear(struct shard *sh)
{
    authd_hostlist_put(sh->newest);
    authd_hostlist_put(sh->loaded);
    memset(sh, 0, sizeof(*sh));
}

void
authd_shards_free(struct authd_shards *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < AUTHD_MAX_SHARDS; i++)
        shard_clear(&s->v[i]);
    free(s);
}

int
authd_shard_index(const char *name)
{
    static const char hex[] = "0123456789abcdef";
    size_t plen = strlen(AUTHD_SHARD_PREFIX);
    const char *hi, *lo;

    if (name == NULL || strncmp(name, AUTHD_SHARD_PREFIX, plen) != 0 || strlen(name) != plen + 2)
        return PC_EINVAL;
    hi = strchr(hex, name[plen]);
    lo = strchr(hex, name[plen + 1]);
    if (name[plen] == '\0' || name[plen + 1] == '\0' || hi == NULL || lo == NULL)
        return PC_EINVAL;
    return (int)((hi - hex) * 16 + (lo - hex));
}

/* The generation annotation: a decimal >= 0. PC_EINVAL when absent or malformed. */
static int
generation_of(const json_t *md, long long *out)
{
    const char *g = pc_json_str(json_object_get(md, "annotations"), GENERATION_ANNOTATION);
    char *end;

    *out = 0;
    if (g == NULL || *g < '0' || *g > '9')
        return PC_EINVAL;
    errno = 0;
    *out = strtoll(g, &end, 10);
    if (errno != 0 || *end != '\0') {
        *out = 0;
        return PC_EINVAL;
    }
    return 0;
}

/* Parses the hosts.yaml of secret (base64 in data) into *out, diagnostics naming file. */
static int
parse_version(const struct authd_shards *s, const json_t *secret, const char *file,
              struct authd_hostlist **out, struct pc_diag *diag)
{
    const char *b64 = pc_json_str(json_object_get(secret, "data"), DATA_KEY);
    unsigned char *text = NULL;
    size_t len = 0;
    int rc;

    diag->file = file;
    if (b64 == NULL) {
        pc_diag_set(diag, 0, 0, "the Secret has no data key \"%s\"", DATA_KEY);
        return PC_EINVAL;
    }
    if (pc_b64_decode(b64, strlen(b64), &text, &len) != 0) {
        pc_diag_set(diag, 0, 0, "data key \"%s\" is not base64", DATA_KEY);
        return PC_EPARSE;
    }
    rc =
        authd_hostlist_parse((const char *)text, len,
                             &(struct authd_hostlist_opts){
                                 .file = file, .allow_insecure_issuers = s->allow_insecure_issuers},
                             out, diag);
    pc_cleanse(text, len); /* holds client secrets */
    free(text);
    return rc;
}

int
authd_shards_apply(struct authd_shards *s, const struct authd_shard_change *ch,
                   struct pc_diag *diag)
{
    const json_t *md = json_object_get(ch->secret, "metadata");
    const char *name = pc_json_str(md, "name");
    int i = authd_shard_index(name);
    struct authd_hostlist *l = NULL;
    char file[128];
    struct shard *sh;
    long long gen;
    int rc;

    memset(diag, 0, sizeof(*diag));
    if (i < 0) {
        pc_diag_set(diag, 0, 0, "secret \"%.100s\" is not named %s<xx> (two hex digits)",
                    name ? name : "", AUTHD_SHARD_PREFIX);
        return PC_EINVAL;
    }
    sh = &s->v[i];
    if (ch->deleted) {
        s->dropped = s->dropped || sh->loaded != NULL;
        shard_clear(sh);
        return 0;
    }
    snprintf(file, sizeof(file), "%s/%s", name, DATA_KEY);
    if ((rc = generation_of(md, &gen)) != 0) {
        diag->file = file;
        pc_diag_set(diag, 0, 0, "annotation %s is missing or not a decimal number",
                    GENERATION_ANNOTATION);
    } else {
        rc = parse_version(s, ch->secret, file, &l, diag);
    }
    if (rc != 0)
        pc_diag_fold(diag); /* file is about to go */
    sh->present = true;
    sh->newest_gen = gen;
    authd_hostlist_put(sh->newest);
    sh->newest = l;
    sh->refusal_reported = false;
    return rc;
}

/* ---- merging ---- */

struct merge {
    struct authd_shards *s;
    struct pc_strmap ids;   /* id -> the shard that has it */
    struct pc_strmap names; /* host name -> the shard */
    struct pc_cookie_scopes *scopes;
    struct authd_hostlist *parts[AUTHD_MAX_SHARDS];
    int part_shard[AUTHD_MAX_SHARDS];
    size_t nparts;
};

static void
shard_label(char out[3], int i)
{
    static const char hex[] = "0123456789abcdef";

    out[0] = hex[(i >> 4) & 15];
    out[1] = hex[i & 15];
    out[2] = '\0';
}

/* "<shard>/hosts.yaml:line:col: hosts[j] (id x): " in front of why, new. */
static char *
refusal(int i, const struct authd_hostlist *l, size_t j, const char *why)
{
    char sh[3];

    shard_label(sh, i);
    return pc_xasprintf("%s%s/%s:%d:%d: hosts[%zu] (id %s): %s", AUTHD_SHARD_PREFIX, sh, DATA_KEY,
                        l->pos[j].line, l->pos[j].col, j, l->hosts[j].id, why);
}

/* Why an id or host name of l is already taken by an earlier shard (new), or NULL. */
static char *
taken(const struct merge *m, int i, const struct authd_hostlist *l)
{
    char by[3], *why, *out;
    size_t shard;

    for (size_t j = 0; j < l->n; j++) {
        const struct authd_host *h = &l->hosts[j];

        if (pc_strmap_get(&m->ids, h->id, &shard)) {
            shard_label(by, (int)shard);
            why = pc_xasprintf("id \"%s\" is already used by shard %s (the lower shard keeps it)",
                               h->id, by);
            out = refusal(i, l, j, why);
            free(why);
            return out;
        }
        for (size_t k = 0; k < h->hosts.n; k++) {
            if (!pc_strmap_get(&m->names, h->hosts.v[k], &shard))
                continue;
            shard_label(by, (int)shard);
            why = pc_xasprintf("host \"%s\" is already protected by shard %s (the lower shard "
                               "keeps it)",
                               h->hosts.v[k], by);
            out = refusal(i, l, j, why);
            free(why);
            return out;
        }
    }
    return NULL;
}

/* Records the cookie scopes of l's entries; on a collision returns why (new). */
static char *
claim_cookies(struct pc_cookie_scopes *scopes, int i, const struct authd_hostlist *l)
{
    char sh[3], *label, *why = NULL, *out = NULL;

    shard_label(sh, i);
    for (size_t j = 0; j < l->n && out == NULL; j++) {
        label = pc_xasprintf("%s (shard %s)", l->hosts[j].id, sh);
        if (authd_host_cookie_claim(scopes, &l->hosts[j], label, &why) != 0) {
            char *msg = pc_xasprintf("session: %s, which has another issuer or client (the "
                                     "lower shard keeps it)",
                                     why);
            out = refusal(i, l, j, msg);
            free(msg);
        }
        free(why);
        why = NULL;
        free(label);
    }
    return out;
}

/* A collision left part of a refused list in the scopes: start again from the accepted ones. */
static void
rebuild_scopes(struct merge *m)
{
    char *why;

    pc_cookie_scopes_free(m->scopes);
    m->scopes = pc_cookie_scopes_new();
    for (size_t p = 0; p < m->nparts; p++) {
        why = claim_cookies(m->scopes, m->part_shard[p], m->parts[p]);
        free(why); /* accepted together before: cannot collide now */
    }
}

/* Adds l of shard i when it fits with the parts before it. Returns NULL, or why not (new). */
static char *
try_add(struct merge *m, int i, struct authd_hostlist *l)
{
    char *why = taken(m, i, l);

    if (why == NULL && (why = claim_cookies(m->scopes, i, l)) != NULL)
        rebuild_scopes(m);
    if (why != NULL)
        return why;
    /* Keys borrowed from l, which outlives the merge. */
    for (size_t j = 0; j < l->n; j++) {
        pc_strmap_add(&m->ids, l->hosts[j].id, (size_t)i, NULL);
        for (size_t k = 0; k < l->hosts[j].hosts.n; k++)
            pc_strmap_add(&m->names, l->hosts[j].hosts.v[k], (size_t)i, NULL);
    }
    m->part_shard[m->nparts] = i;
    m->parts[m->nparts++] = l;
    return NULL;
}

static void
note_refused(struct authd_shards_result *r, int i, long long gen, char *why)
{
    struct authd_shard_refusal *f;

    r->refused = pc_xrealloc(r->refused, (r->nrefused + 1) * sizeof(*r->refused));
    f = &r->refused[r->nrefused++];
    f->index = i;
    shard_label(f->shard, i);
    f->generation = gen;
    f->why = why;
}

/* Picks what shard i contributes and records it in sh->loaded. */
static void
merge_shard(struct merge *m, int i, struct authd_shards_result *r, struct pc_buf *loaded,
            struct pc_buf *rejected)
{
    struct shard *sh = &m->s->v[i];
    struct authd_hostlist *pick = NULL;
    long long gen = 0;
    char *why = NULL;

    if (sh->newest != NULL && (why = try_add(m, i, sh->newest)) == NULL) {
        pick = sh->newest;
        gen = sh->newest_gen;
    } else {
        /* A parse failure (why NULL) was reported when the version arrived. */
        if (why != NULL && !sh->refusal_reported) {
            note_refused(r, i, sh->newest_gen, why);
            sh->refusal_reported = true;
        } else {
            free(why);
        }
        why = NULL;
        pc_buf_appendf(rejected, "%s%02x=%lld", rejected->len ? "," : "", (unsigned)i,
                       sh->newest_gen);
        r->nrejected++;
        /* The version loaded before keeps serving while it still fits. */
        if (sh->loaded != NULL && sh->loaded != sh->newest &&
            (why = try_add(m, i, sh->loaded)) == NULL) {
            pick = sh->loaded;
            gen = sh->loaded_gen;
        }
        if (pick == NULL)
            free(why);
    }
    if (pick != sh->loaded) {
        r->changed = true;
        if (pick != NULL)
            authd_hostlist_get(pick);
        authd_hostlist_put(sh->loaded);
        sh->loaded = pick;
    }
    sh->loaded_gen = gen;
    if (pick != NULL) {
        pc_buf_appendf(loaded, "%s%02x=%lld", loaded->len ? "," : "", (unsigned)i, gen);
        r->nloaded++;
    }
}

int
authd_shards_merge(struct authd_shards *s, const struct authd_config *head,
                   struct authd_shards_result *r)
{
    struct merge m = {.s = s};
    struct pc_buf loaded, rejected;

    memset(r, 0, sizeof(*r));
    pc_buf_init(&loaded, 0);
    pc_buf_init(&rejected, 0);
    m.scopes = pc_cookie_scopes_new();
    r->changed = s->dropped;
    s->dropped = false;
    for (int i = 0; i < AUTHD_MAX_SHARDS; i++)
        if (s->v[i].present)
            merge_shard(&m, i, r, &loaded, &rejected);
    r->cfg = authd_config_with_hosts(head, m.parts, m.nparts);
    r->loaded = pc_buf_detach(&loaded);
    r->rejected = pc_buf_detach(&rejected);
    pc_cookie_scopes_free(m.scopes);
    pc_strmap_release(&m.ids);
    pc_strmap_release(&m.names);
    return 0;
}

void
authd_shards_result_release(struct authd_shards_result *r)
{
    authd_config_free(r->cfg);
    free(r->loaded);
    free(r->rejected);
    for (size_t i = 0; i < r->nrefused; i++)
        free(r->refused[i].why);
    free(r->refused);
    memset(r, 0, sizeof(*r));
}
