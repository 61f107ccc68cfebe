/*
 * store.c - the sessions of session.store: redis hosts, on the I/O side: the sessions this
 * replica holds (keyed by ticket), reads from Redis when a ticket is not held or is due for
 * revalidation (concurrent reads of one ticket share one GET), the write at login, the delete
 * at sign-out, refresh single-flight across replicas, and what happens while Redis is down.
 * lws thread only.
 *
 * A held session serves checks for redis.revalidate seconds after Redis last confirmed it;
 * then the next check asks Redis again (its reply waits, never the loop), so a sign-out at
 * another replica ends it here within revalidate. While Redis is down or does not answer (or
 * answers that it cannot now: authd_redis_unavailable), a held session keeps passing for
 * redis.grace seconds after its last confirmation; nothing else does, and a new login gets a
 * page saying why. Any other error reply refuses that ticket, held or not.
 *
 * Refresh: the replica whose check finds the session due takes <prefix>l:<ticket> (SET NX PX
 * 15 s) and reads the session again under it (another replica may have refreshed it just
 * before); only the lock holder of a session still due calls the token endpoint, writes the
 * refreshed session (SET XX: never resurrecting a signed-out one) and lets the lock go. The ticket
 * does not change, so the browser is sent nothing; other replicas see the refreshed session when
 * they revalidate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/crypto.h"
#include "portcullis/json.h"
#include "portcullis/log.h"

#define HELD_SLOTS 4096
#define MAX_FETCHES 1024
#define MAX_TICKETS 4
#define SIGN_OUT_TICKETS 32 /* a sign-out deletes them all, or is not one */
#define LOCK_MS 15000
#define REFRESH_RETRY_US (30 * 1000000LL)
#define LOCKED_RETRY_US (2 * 1000000LL)

struct held {
    struct authd_ticket t;
    char *cookie_name; /* the name it was opened under (its authenticated data) */
    struct authd_session *s;
    int64_t verified_us;      /* when Redis last confirmed it */
    int64_t refresh_after_us; /* no refresh attempt before */
    bool refreshing;
};

struct waiter {
    authd_store_cont_fn cont;
    void *ud;
    struct waiter *next;
};

/*
 * The read of a request's tickets at a host (config generation), and the checks waiting. The
 * tickets are read in the order of the Cookie header, one GET at a time: the first that opens
 * for the host is the session; one Redis does not know ends the read (fetch_done says why).
 */
struct fetch {
    struct authd_store *st;
    struct authd_ticket t[MAX_TICKETS];
    size_t n, i;  /* the tickets; the one being read */
    int rc;       /* what the tickets read so far said: PC_ENOTFOUND, or why one did not open */
    bool refused; /* a read got an error reply that refuses the command */
    struct authd_cfgref *cfg;
    const struct authd_host *host; /* borrowed from cfg */
    struct waiter *waiters;
    struct fetch *next;
};

/* The old connections of a reload, until their threads have ended. */
struct retired {
    struct authd_store *st;
    struct authd_redis *r;
    struct retired *next;
};

enum { SRC_HELD, SRC_REDIS, SRC_GRACE, SRC_MISSING, SRC_DOWN, SRC_REFUSED, NSRC };
static const char *const src_names[NSRC] = {"held", "redis", "grace", "missing", "down", "refused"};
enum { RF_DONE, RF_LOCKED, RF_DONE_ELSEWHERE, RF_FAILED, RF_REVOKED, NRF };
static const char *const rf_names[NRF] = {"done", "locked_elsewhere", "done_elsewhere", "failed",
                                          "revoked"};

/*
 * The check path's shortcut: a Cookie header seen before, and the held entry its ticket
 * found, so an identical header needs no cookie or ticket parsing (a browser sends the same
 * header on every request). Compared in full; the entry must still hold the same ticket.
 */
struct by_header {
    uint64_t hash;
    char *cookie;
    size_t len;
    uint32_t held;
    struct authd_ticket t;
};
#define MAX_HEADER_CACHED 8192

struct authd_store {
    struct authd_server *srv;
    struct by_header by_header[HELD_SLOTS];
    struct authd_redis *redis;
    struct authd_redis_config *cfg; /* what redis was started with; NULL: none */
    struct retired *retired;
    struct held held[HELD_SLOTS];
    struct fetch *fetches;
    size_t nfetches;
    unsigned long long sessions[NSRC], refreshes[NRF], saved, save_failed, signed_out;
};

/* ------------------------------------------------------------------------------------------ */
/* held sessions */

static struct held *
slot_of(struct authd_store *st, const struct authd_ticket *t)
{
    uint32_t h;

    memcpy(&h, t->id, sizeof(h)); /* the id is random */
    return &st->held[h % HELD_SLOTS];
}

static void
held_clear(struct held *e)
{
    authd_session_free(e->s);
    free(e->cookie_name);
    pc_cleanse(e, sizeof(*e));
}

/* The held entry of t opened under cookie_name, or NULL. */
static struct held *
held_find(struct authd_store *st, const struct authd_ticket *t, const char *cookie_name)
{
    struct held *e = slot_of(st, t);

    if (e->s == NULL || !pc_memeq(e->t.id, t->id, sizeof(t->id)) ||
        !pc_memeq(e->t.secret, t->secret, sizeof(t->secret)) ||
        strcmp(e->cookie_name, cookie_name) != 0)
        return NULL;
    return e;
}

/*
 * Holds s for t. The same session read again (a revalidation) keeps its refresh state: a
 * refresh in flight stays the only one, and a failed one is not tried again before its time.
 */
static void
held_put(struct authd_store *st, const struct authd_ticket *t, const char *cookie_name,
         struct authd_session *s)
{
    struct held *e = slot_of(st, t);
    struct held *same = held_find(st, t, cookie_name);
    int64_t refresh_after_us = same ? same->refresh_after_us : 0;
    bool refreshing = same ? same->refreshing : false;

    held_clear(e);
    e->t = *t;
    e->cookie_name = pc_xstrdup(cookie_name);
    e->s = s;
    e->verified_us = authd_mono_us();
    e->refresh_after_us = refresh_after_us;
    e->refreshing = refreshing;
}

static void
held_drop(struct authd_store *st, const struct authd_ticket *t)
{
    struct held *e = slot_of(st, t);

    if (e->s != NULL && pc_memeq(e->t.id, t->id, sizeof(t->id)))
        held_clear(e);
}

/* The tickets in the request's cookies of host's name (at most MAX_TICKETS). */
static size_t
tickets_of(const struct authd_host *host, const char *cookie_header, struct authd_ticket *out)
{
    struct authd_cookie_jar jar;
    size_t n = 0;

    if (authd_cookie_jar_parse(&jar, cookie_header) != 0)
        return 0;
    for (size_t i = 0; i < jar.n && n < MAX_TICKETS; i++)
        if (strcmp(jar.v[i].name, host->session.cookie_name) == 0 &&
            authd_ticket_parse(jar.v[i].value, strlen(jar.v[i].value), &out[n]) == 0)
            n++;
    authd_cookie_jar_release(&jar);
    return n;
}

/* st->cfg is NULL once the redis section is gone: then nothing held serves. */
static bool
fresh(const struct authd_store *st, const struct held *e, int64_t now_us)
{
    return st->cfg != NULL && now_us - e->verified_us < st->cfg->revalidate * 1000000LL;
}

static bool
in_grace(const struct authd_store *st, const struct held *e, int64_t now_us)
{
    return st->cfg != NULL && now_us - e->verified_us < st->cfg->grace * 1000000LL;
}

/* ------------------------------------------------------------------------------------------ */
/* the check path */

bool
authd_store_up(const struct authd_store *st)
{
    return st != NULL && authd_redis_up(st->redis);
}

static int lookup_parsed(struct authd_store *st, const struct authd_host *host,
                         const char *cookie_header, uint64_t h, int64_t now,
                         const struct authd_session **s);

static void
by_header_clear(struct by_header *b)
{
    if (b->cookie != NULL)
        pc_cleanse(b->cookie, b->len);
    free(b->cookie);
    pc_cleanse(b, sizeof(*b));
}

/* The fresh held session of this exact header and host, or NULL. */
static const struct authd_session *
by_header_get(struct authd_store *st, const struct authd_host *host, const char *cookie, size_t len,
              uint64_t h, int64_t now)
{
    struct by_header *b = &st->by_header[h % HELD_SLOTS];
    struct held *e;

    if (b->cookie == NULL || b->hash != h || b->len != len || memcmp(b->cookie, cookie, len) != 0)
        return NULL;
    e = &st->held[b->held];
    if (e->s == NULL || !pc_memeq(&e->t, &b->t, sizeof(b->t)) ||
        strcmp(e->cookie_name, host->session.cookie_name) != 0 ||
        authd_session_accept(host, e->s, now) != 0 || !fresh(st, e, authd_mono_us()))
        return NULL;
    return e->s;
}

static void
by_header_put(struct authd_store *st, const char *cookie, size_t len, uint64_t h,
              const struct held *e)
{
    struct by_header *b = &st->by_header[h % HELD_SLOTS];

    by_header_clear(b);
    b->hash = h;
    b->cookie = pc_xstrndup(cookie, len);
    b->len = len;
    b->held = (uint32_t)(e - st->held);
    b->t = e->t;
}

int
authd_store_lookup(struct authd_store *st, const struct authd_host *host, const char *cookie_header,
                   int64_t now, const struct authd_session **s)
{
    size_t len = cookie_header ? strnlen(cookie_header, MAX_HEADER_CACHED + 1) : 0;
    uint64_t h = 0;

    if (st != NULL && st->cfg != NULL && len > 0 && len <= MAX_HEADER_CACHED) {
        h = authd_hash_bytes(cookie_header, len);
        if ((*s = by_header_get(st, host, cookie_header, len, h, now)) != NULL) {
            st->sessions[SRC_HELD]++;
            return 0;
        }
    }
    return lookup_parsed(st, host, cookie_header, len <= MAX_HEADER_CACHED ? h : 0, now, s);
}

/* The lookup after parsing the header's tickets; h: its hash (0: not to be remembered). */
static int
lookup_parsed(struct authd_store *st, const struct authd_host *host, const char *cookie_header,
              uint64_t h, int64_t now, const struct authd_session **s)
{
    struct authd_ticket t[MAX_TICKETS];
    size_t n = tickets_of(host, cookie_header, t);
    int64_t now_us = authd_mono_us();
    struct held *stale = NULL;
    int rc = PC_ENOTFOUND;

    *s = NULL;
    if (st == NULL || st->cfg == NULL)
        rc = n ? PC_EIO : PC_ENOTFOUND;
    /*
     * The first ticket decides here: held and fresh, it is the session; held but due, Redis is
     * asked about it; anything else (not held, expired, another issuer's or client's), the
     * fetch, which reads on past a ticket only when it does not open with this host's keys
     * (fetch_done). A later held ticket never stands in for the first.
     */
    if (st && st->cfg && n > 0) {
        struct held *e = held_find(st, &t[0], host->session.cookie_name);
        int arc = e ? authd_session_accept(host, e->s, now) : PC_ENOTFOUND;

        if (arc == PC_EEXPIRED)
            held_clear(e);
        if (arc == 0 && fresh(st, e, now_us)) {
            *s = e->s;
            if (h != 0)
                by_header_put(st, cookie_header, strlen(cookie_header), h, e);
        } else if (arc == 0) {
            stale = e;
        }
    }
    if (*s != NULL) {
        st->sessions[SRC_HELD]++;
        rc = 0;
    } else if (n > 0 && authd_store_up(st)) {
        rc = PC_EMORE;
    } else if (stale != NULL && in_grace(st, stale, now_us)) {
        *s = stale->s;
        st->sessions[SRC_GRACE]++;
        rc = 0;
    } else if (n > 0) {
        st->sessions[SRC_DOWN]++;
        rc = PC_EIO;
    }
    for (size_t i = 0; i < n; i++)
        authd_ticket_wipe(&t[i]);
    return rc;
}

/*
 * Why Redis did not do what was asked, for the log: an error reply's code (its first word,
 * bounded: the rest is Redis's text), or that the reply was of another type.
 */
static const char *
reply_why(const struct authd_redis_reply *rep, char *buf, size_t size)
{
    size_t n = 0;

    if (rep->type != AUTHD_REDIS_ERROR)
        return "unexpected reply";
    while (n < rep->len && n + 1 < size && rep->str[n] != ' ' && rep->str[n] != '\0')
        n++;
    snprintf(buf, size, "%.*s", (int)n, rep->str);
    return buf;
}

static void
fetch_unlink(struct authd_store *st, struct fetch *f)
{
    for (struct fetch **pp = &st->fetches; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            st->nfetches--;
            return;
        }
}

/* Ends f: every waiter told, f freed. src: where the answer came from, for the metrics. */
static void
fetch_finish(struct fetch *f, int src, int rc, const struct authd_session *s)
{
    fetch_unlink(f->st, f);
    if (src >= 0)
        f->st->sessions[src]++;
    for (struct waiter *w = f->waiters, *next; w; w = next) {
        next = w->next;
        w->cont(w->ud, rc, s);
        free(w);
    }
    authd_cfgref_put(f->cfg);
    for (size_t i = 0; i < f->n; i++)
        authd_ticket_wipe(&f->t[i]);
    free(f);
}

static void fetch_done(void *ud, int rc, const struct authd_redis_reply *rep);

/* Sends the GET of the ticket f->i. 0, or why it was not sent. */
static int
fetch_get(struct fetch *f)
{
    char *key;
    int rc;

    if (f->st->cfg == NULL)
        return PC_EIO;
    key = authd_ticket_redis_key(f->st->cfg->key_prefix, &f->t[f->i]);
    rc = authd_redis_command(f->st->redis, 2, (const char *const[]){"GET", key}, NULL, fetch_done,
                             f);
    free(key);
    return rc;
}

/* Redis gave no answer for the ticket f->i: held within its grace, it may serve. */
static void
fetch_unanswered(struct fetch *f)
{
    struct held *e = held_find(f->st, &f->t[f->i], f->host->session.cookie_name);

    if (e != NULL && in_grace(f->st, e, authd_mono_us()) &&
        authd_session_accept(f->host, e->s, authd_now()) == 0) {
        fetch_finish(f, SRC_GRACE, 0, e->s);
        return;
    }
    fetch_finish(f, SRC_DOWN, PC_EIO, NULL);
}

static void
fetch_done(void *ud, int rc, const struct authd_redis_reply *rep)
{
    struct fetch *f = ud;
    struct authd_store *st = f->st;
    const struct authd_ticket *t = &f->t[f->i];
    const char *name = f->host->session.cookie_name;
    struct authd_session *s = NULL;
    bool next = true; /* the next ticket may still be the session */
    char why[32];

    if (rc != 0 || authd_redis_unavailable(rep)) {
        fetch_unanswered(f); /* no answer, or "cannot answer now" (LOADING, READONLY, ...) */
        return;
    }
    if (rep->type == AUTHD_REDIS_STRING) {
        rc = authd_ticket_open(&f->cfg->cfg->keys, f->host, t, rep->str, rep->len, authd_now(), &s);
        if (rc == 0) {
            held_put(st, t, name, s);
            fetch_finish(f, SRC_REDIS, 0, s);
            return;
        }
        f->rc = rc;
        /* Only a ticket that does not open with this host's keys is someone else's; one that
         * opens but is refused (expired, another issuer) is the user's and ends the read. */
        next = rc == PC_EAUTH;
    } else if (rep->type == AUTHD_REDIS_NIL) {
        /*
         * Signed out, expired, or never there: the lookup ends here. A later ticket is not
         * tried: one planted for a parent domain would otherwise sign the user in as its
         * owner as soon as the user's own session ended.
         */
        next = false;
    } else {
        /* Neither the session nor its absence: this ticket opens nothing, held or not, and a
         * later one does not stand in for it either. */
        pc_log(PC_LOG_WARN, "redis", "error", "session read refused", "reason",
               reply_why(rep, why, sizeof(why)), NULL);
        f->refused = true;
        next = false;
    }
    /* Only a value that does not open for this host (another host's or cookie secret's ticket
     * of the same cookie name) is skipped. */
    held_drop(st, t);
    if (next && ++f->i < f->n) {
        if (fetch_get(f) != 0)
            fetch_unanswered(f);
        return;
    }
    fetch_finish(f, f->refused ? SRC_REFUSED : SRC_MISSING, f->refused ? PC_EIO : f->rc, NULL);
}

static struct fetch *
fetch_find(struct authd_store *st, const struct authd_ticket *t, size_t n,
           const struct authd_host *host)
{
    /* The first ticket's id narrows the search cheaply (ids alone open nothing: the Redis key
     * and the session key need the secret); the whole list is compared in constant time. */
    for (struct fetch *f = st->fetches; f; f = f->next)
        if (f->n == n && f->host == host && f->cfg == st->srv->cfg &&
            memcmp(f->t[0].id, t[0].id, sizeof(t[0].id)) == 0 && pc_memeq(f->t, t, n * sizeof(*t)))
            return f;
    return NULL;
}

int
authd_store_fetch(struct authd_store *st, const struct authd_host *host, const char *cookie_header,
                  authd_store_cont_fn cont, void *ud)
{
    struct authd_ticket t[MAX_TICKETS];
    size_t n = tickets_of(host, cookie_header, t);
    struct waiter *w;
    struct fetch *f;
    int rc;

    if (n == 0)
        return PC_ENOTFOUND;
    if ((f = fetch_find(st, t, n, host)) == NULL) {
        if (st->nfetches >= MAX_FETCHES) {
            rc = PC_ETOOBIG;
            goto out;
        }
        f = pc_xcalloc(1, sizeof(*f));
        f->st = st;
        memcpy(f->t, t, n * sizeof(*t));
        f->n = n;
        f->rc = PC_ENOTFOUND;
        f->cfg = authd_cfgref_get(st->srv->cfg);
        f->host = host;
        if ((rc = fetch_get(f)) != 0) {
            fetch_finish(f, -1, rc, NULL); /* no waiters yet */
            goto out;
        }
        f->next = st->fetches;
        st->fetches = f;
        st->nfetches++;
    }
    w = pc_xcalloc(1, sizeof(*w));
    w->cont = cont;
    w->ud = ud;
    w->next = f->waiters;
    f->waiters = w;
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        authd_ticket_wipe(&t[i]);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* login: the new session goes to Redis, the browser gets its ticket */

struct save {
    struct authd_store *st;
    struct authd_cfgref *cfg;
    const struct authd_host *host;
    struct authd_session *s;
    struct authd_ticket t;
    char *cookie_header;
    authd_store_saved_fn done;
    void *ud;
};

static void
save_free(struct save *v)
{
    authd_session_free(v->s);
    authd_cfgref_put(v->cfg);
    authd_ticket_wipe(&v->t);
    free(v->cookie_header);
    free(v);
}

static void
save_done(void *ud, int rc, const struct authd_redis_reply *rep)
{
    struct save *v = ud;
    struct authd_strlist set_cookie = {0};
    char *value, why[32];

    if (rc == 0 && rep->type != AUTHD_REDIS_STATUS) {
        pc_log(PC_LOG_ERROR, "redis", "error", "session write refused", "reason",
               reply_why(rep, why, sizeof(why)), NULL);
        rc = PC_EIO;
    }
    if (rc != 0) {
        v->st->save_failed++;
        v->done(v->ud, rc == PC_EEXPIRED ? rc : PC_EIO, NULL, NULL);
        save_free(v);
        return;
    }
    value = authd_ticket_format(&v->t);
    authd_session_set_value(v->host, value, v->s->expires_at - authd_now(), v->cookie_header,
                            &set_cookie);
    pc_free_secret(value);
    v->st->saved++;
    held_put(v->st, &v->t, v->host->session.cookie_name, v->s);
    v->done(v->ud, 0, v->s, &set_cookie);
    v->s = NULL; /* held now */
    authd_strlist_release(&set_cookie);
    save_free(v);
}

/* SET key blob PX ms [XX]: writes t's session for the rest of its life. */
static int
write_session(struct authd_store *st, const struct authd_keys *keys, const struct authd_host *host,
              const struct authd_ticket *t, const struct authd_session *s, bool existing,
              authd_redis_done_fn done, void *ud)
{
    int64_t ms = (s->expires_at - authd_now()) * 1000;
    uint8_t *blob = NULL;
    size_t len = 0;
    char *key, px[24];
    int rc;

    if (st->cfg == NULL)
        return PC_EIO;
    if (ms <= 0)
        return PC_EEXPIRED;
    if ((rc = authd_ticket_seal(keys, host, t, s, &blob, &len)) != 0)
        return rc;
    key = authd_ticket_redis_key(st->cfg->key_prefix, t);
    snprintf(px, sizeof(px), "%lld", (long long)ms);
    const char *argv[] = {"SET", key, (const char *)blob, "PX", px, "XX"};
    size_t lens[] = {3, strlen(key), len, 2, strlen(px), 2};
    rc = authd_redis_command(st->redis, existing ? 6 : 5, argv, lens, done, ud);
    free(key);
    free(blob);
    return rc;
}

int
authd_store_save(struct authd_store *st, const struct authd_host *host, struct authd_session *s,
                 const char *cookie_header, authd_store_saved_fn done, void *ud)
{
    struct save *v;
    int rc;

    if (st == NULL || st->cfg == NULL) {
        authd_session_free(s);
        return PC_EINVAL;
    }
    v = pc_xcalloc(1, sizeof(*v));
    v->st = st;
    v->cfg = authd_cfgref_get(st->srv->cfg);
    v->host = host;
    v->s = s;
    v->cookie_header = cookie_header ? pc_xstrdup(cookie_header) : NULL;
    v->done = done;
    v->ud = ud;
    if ((rc = authd_ticket_new(&v->t)) == 0)
        rc = write_session(st, &v->cfg->cfg->keys, host, &v->t, s, false, save_done, v);
    if (rc != 0) {
        st->save_failed++;
        save_free(v);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* sign-out */

struct drop {
    struct authd_store *st;
    authd_store_dropped_fn done;
    void *ud;
    struct authd_ticket t[SIGN_OUT_TICKETS];
    size_t n;
};

/* Only DEL's integer reply (how many of the keys existed: 0 is fine too) says they are gone. */
static void
drop_done(void *ud, int rc, const struct authd_redis_reply *rep)
{
    struct drop *d = ud;
    char why[32];

    if (rc == 0 && (rep->type != AUTHD_REDIS_INTEGER || rep->integer < 0)) {
        pc_log(PC_LOG_ERROR, "redis", "error", "session delete refused", "reason",
               reply_why(rep, why, sizeof(why)), NULL);
        rc = PC_EIO;
    }
    if (rc == 0)
        d->st->signed_out++;
    /* A GET sent before the DEL may have put a session back since authd_store_forget: its
     * reply came first (one connection, in order), so dropping now is after it. */
    for (size_t i = 0; i < d->n; i++) {
        held_drop(d->st, &d->t[i]);
        authd_ticket_wipe(&d->t[i]);
    }
    d->done(d->ud, rc == 0 ? 0 : PC_EIO);
    free(d);
}

int
authd_store_sign_out(struct authd_store *st, const struct authd_host *host,
                     const char *cookie_header, const struct authd_session **held,
                     authd_store_dropped_fn done, void *ud)
{
    struct authd_ticket t[SIGN_OUT_TICKETS];
    bool more = false;
    size_t n = cookie_header ? authd_ticket_find_all(host->session.cookie_name, cookie_header, t,
                                                     SIGN_OUT_TICKETS, &more)
                             : 0;
    const char *argv[1 + SIGN_OUT_TICKETS];
    char *keys[SIGN_OUT_TICKETS] = {0};
    struct drop *d;
    int rc = PC_ENOTFOUND;

    *held = NULL;
    if (more) { /* a sign-out that deletes only some would leave a session behind */
        for (size_t i = 0; i < n; i++)
            authd_ticket_wipe(&t[i]);
        return PC_ETOOBIG;
    }
    if (st == NULL || st->cfg == NULL)
        return n ? PC_EIO : PC_ENOTFOUND;
    argv[0] = "DEL";
    for (size_t i = 0; i < n; i++) {
        struct held *e = held_find(st, &t[i], host->session.cookie_name);

        if (e != NULL && *held == NULL)
            *held = e->s; /* for the page and the IdP's id_token_hint; dropped by done */
        keys[i] = authd_ticket_redis_key(st->cfg->key_prefix, &t[i]);
        argv[1 + i] = keys[i];
    }
    if (n > 0) {
        d = pc_xcalloc(1, sizeof(*d));
        d->st = st;
        d->done = done;
        d->ud = ud;
        memcpy(d->t, t, n * sizeof(*t));
        d->n = n;
        if ((rc = authd_redis_command(st->redis, (int)(1 + n), argv, NULL, drop_done, d)) != 0) {
            for (size_t i = 0; i < n; i++)
                authd_ticket_wipe(&d->t[i]);
            free(d);
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
        authd_ticket_wipe(&t[i]);
    }
    return rc;
}

void
authd_store_forget(struct authd_store *st, const struct authd_host *host, const char *cookie_header)
{
    struct authd_ticket t[SIGN_OUT_TICKETS];
    bool more;
    size_t n = st && cookie_header ? authd_ticket_find_all(host->session.cookie_name, cookie_header,
                                                           t, SIGN_OUT_TICKETS, &more)
                                   : 0;

    for (size_t i = 0; i < n; i++) {
        held_drop(st, &t[i]);
        authd_ticket_wipe(&t[i]);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* refresh */

struct refresh {
    struct authd_store *st;
    struct authd_cfgref *cfg;
    const struct authd_host *host;
    struct authd_ticket t;
    struct authd_session *old; /* a copy: the held one may be replaced meanwhile */
    struct authd_session *next;
    char token[24]; /* the lock's value: only its holder lets it go */
};

static void
refresh_free(struct refresh *f)
{
    authd_session_free(f->old);
    authd_session_free(f->next);
    authd_cfgref_put(f->cfg);
    authd_ticket_wipe(&f->t);
    free(f);
}

/* Ends a refresh: the lock let go (when held), the held entry told, logged and counted. */
static void
refresh_end(struct refresh *f, int result, const char *why, bool locked)
{
    static const char unlock[] =
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
        "return 0";
    struct held *e = held_find(f->st, &f->t, f->host->session.cookie_name);
    int64_t now_us = authd_mono_us();
    char *lock;

    if (locked && f->st->cfg != NULL) {
        lock = authd_ticket_lock_key(f->st->cfg->key_prefix, &f->t);
        authd_redis_command(f->st->redis, 5,
                            (const char *const[]){"EVAL", unlock, "1", lock, f->token}, NULL,
                            authd_redis_ignore, NULL);
        free(lock);
    }
    if (e != NULL) {
        e->refreshing = false;
        e->refresh_after_us = now_us + (result == RF_LOCKED ? LOCKED_RETRY_US : REFRESH_RETRY_US);
        if (result == RF_LOCKED && f->st->cfg) /* the other replica's result: read it soon */
            e->verified_us = now_us - f->st->cfg->revalidate * 1000000LL + LOCKED_RETRY_US;
        if ((result == RF_DONE || result == RF_DONE_ELSEWHERE) && f->next != NULL) {
            authd_session_free(e->s);
            e->s = f->next;
            f->next = NULL;
            e->verified_us = now_us;
        }
    }
    if (result == RF_REVOKED)
        held_drop(f->st, &f->t);
    f->st->refreshes[result]++;
    if (result != RF_LOCKED && result != RF_DONE_ELSEWHERE)
        pc_log(result == RF_DONE ? PC_LOG_INFO : PC_LOG_WARN, "refresh", "policy", f->host->id,
               "user", f->old->id.email ? f->old->id.email : f->old->id.sub, "store", "redis",
               "result", rf_names[result], "reason", why, NULL);
    refresh_free(f);
}

static void
written(void *ud, int rc, const struct authd_redis_reply *rep)
{
    struct refresh *f = ud;

    if (rc == 0 && rep->type == AUTHD_REDIS_NIL) /* signed out meanwhile: stays so */
        refresh_end(f, RF_REVOKED, "signed out during the refresh", true);
    else if (rc != 0 || rep->type != AUTHD_REDIS_STATUS)
        refresh_end(f, RF_FAILED, "the refreshed session could not be written", true);
    else
        refresh_end(f, RF_DONE, NULL, true);
}

static void
revoked(void *ud, int rc, const struct authd_redis_reply *rep)
{
    (void)rc;
    (void)rep;
    refresh_end(ud, RF_REVOKED, "the identity provider refused the refresh token", true);
}

static void
token_done(void *ud, int rc, long status, json_t *body, const char *error)
{
    struct refresh *f = ud;
    const char *idt = body ? pc_json_str(body, "id_token") : NULL;
    const char *rt = body ? pc_json_str(body, "refresh_token") : NULL;
    const char *why = NULL;
    json_t *claims = NULL;
    char *key;

    if (rc == PC_EAUTH && (status == 400 || status == 401) && f->st->cfg != NULL) {
        key = authd_ticket_redis_key(f->st->cfg->key_prefix, &f->t);
        if (authd_redis_command(f->st->redis, 2, (const char *const[]){"DEL", key}, NULL, revoked,
                                f) != 0)
            refresh_end(f, RF_REVOKED, "the identity provider refused the refresh token", true);
        free(key);
        return;
    }
    if (rc) {
        refresh_end(f, RF_FAILED, error ? error : pc_strerror(rc), true);
        return;
    }
    if (idt) {
        struct authd_jwt_expect ex = {.issuer = f->host->oidc.issuer_url,
                                      .client_id = f->host->oidc.client_id,
                                      .now = authd_now()};
        struct authd_issuer *iss = authd_oidc_issuer(f->st->srv->oidc, f->host->oidc.issuer_url);

        rc = iss && iss->jwks ? authd_jwt_verify(iss->jwks, idt, &ex, &claims, &why) : PC_ENOTFOUND;
    }
    if (!rc)
        rc = authd_session_refreshed(f->host, f->old, claims, idt, rt, authd_now(), &f->next);
    json_decref(claims);
    if (!rc)
        rc = write_session(f->st, &f->cfg->cfg->keys, f->host, &f->t, f->next, true, written, f);
    if (rc)
        refresh_end(f, RF_FAILED, why ? why : pc_strerror(rc), true);
}

/* The lock is ours and the session as Redis holds it now is still due: refresh it at the IdP. */
static void
refresh_at_idp(struct refresh *f)
{
    const struct authd_issuer *iss = authd_oidc_issuer(f->st->srv->oidc, f->host->oidc.issuer_url);
    struct authd_token_opts opts = {.host = f->host,
                                    .issuer = iss,
                                    .grant_type = "refresh_token",
                                    .refresh_token = f->old->refresh_token,
                                    .kind = "refresh",
                                    .done = token_done,
                                    .ud = f};

    if (!iss || !iss->token_endpoint || authd_oidc_token(f->st->srv->oidc, &opts) != 0)
        refresh_end(f, RF_FAILED, "the identity provider is busy or not discovered", true);
}

/*
 * The session read again under the lock: another replica may have refreshed it (and had the
 * IdP rotate the refresh token) between this replica's read and its lock. Then that result is
 * taken, and the IdP is not called; else the refresh goes on from what Redis holds.
 */
static void
reread(void *ud, int rc, const struct authd_redis_reply *rep)
{
    struct refresh *f = ud;
    struct authd_session *now = NULL;
    int64_t t = authd_now();

    if (rc == 0 && rep->type == AUTHD_REDIS_NIL) {
        refresh_end(f, RF_REVOKED, "signed out before the refresh", true);
        return;
    }
    if (rc != 0 || rep->type != AUTHD_REDIS_STRING ||
        authd_ticket_open(&f->cfg->cfg->keys, f->host, &f->t, rep->str, rep->len, t, &now) != 0) {
        refresh_end(f, RF_FAILED, "the session could not be read under the lock", true);
        return;
    }
    if (!authd_session_needs_refresh(f->host, now, t)) {
        f->next = now; /* refreshed elsewhere: held here from now on */
        refresh_end(f, RF_DONE_ELSEWHERE, NULL, true);
        return;
    }
    authd_session_free(f->old);
    f->old = now;
    refresh_at_idp(f);
}

static void
locked(void *ud, int rc, const struct authd_redis_reply *rep)
{
    struct refresh *f = ud;
    char *key;

    if (rc != 0 || (rep->type != AUTHD_REDIS_STATUS && rep->type != AUTHD_REDIS_NIL)) {
        refresh_end(f, RF_FAILED, "the refresh lock could not be taken", false);
        return;
    }
    if (rep->type == AUTHD_REDIS_NIL) { /* another replica refreshes it */
        refresh_end(f, RF_LOCKED, NULL, false);
        return;
    }
    key = authd_ticket_redis_key(f->st->cfg ? f->st->cfg->key_prefix : "", &f->t);
    if (f->st->cfg == NULL ||
        authd_redis_command(f->st->redis, 2, (const char *const[]){"GET", key}, NULL, reread, f))
        refresh_end(f, RF_FAILED, "the session could not be read under the lock", true);
    free(key);
}

void
authd_store_refresh(struct authd_store *st, const struct authd_host *host,
                    const char *cookie_header)
{
    struct authd_ticket t[MAX_TICKETS];
    size_t n = st && st->cfg ? tickets_of(host, cookie_header, t) : 0;
    int64_t now_us = authd_mono_us();
    struct held *e = NULL;
    struct refresh *f;
    char *lock, *text;

    for (size_t i = 0; i < n && e == NULL; i++)
        e = held_find(st, &t[i], host->session.cookie_name);
    if (e == NULL || e->refreshing || now_us < e->refresh_after_us ||
        !authd_session_needs_refresh(host, e->s, authd_now()))
        goto out;
    f = pc_xcalloc(1, sizeof(*f));
    f->st = st;
    f->cfg = authd_cfgref_get(st->srv->cfg);
    f->host = host;
    f->t = e->t;
    text = authd_session_encode(e->s);
    authd_session_decode(text, &f->old);
    pc_free_secret(text);
    text = pc_random_token(16);
    snprintf(f->token, sizeof(f->token), "%s", text);
    free(text);
    lock = authd_ticket_lock_key(st->cfg->key_prefix, &f->t);
    if (f->old != NULL &&
        authd_redis_command(st->redis, 6,
                            (const char *const[]){"SET", lock, f->token, "NX", "PX", "15000"}, NULL,
                            locked, f) == 0)
        e->refreshing = true;
    else
        refresh_free(f);
    free(lock);
out:
    for (size_t i = 0; i < n; i++)
        authd_ticket_wipe(&t[i]);
}

/* ------------------------------------------------------------------------------------------ */
/* lifecycle, metrics */

struct authd_store *
authd_store_new(struct authd_server *srv)
{
    struct authd_store *st = pc_xcalloc(1, sizeof(*st));

    st->srv = srv;
    return st;
}

static bool
same_settings(const struct authd_redis_config *a, const struct authd_redis_config *b)
{
#define SAME(f) ((a->f == NULL && b->f == NULL) || (a->f && b->f && strcmp(a->f, b->f) == 0))
    return SAME(url) && SAME(username) && SAME(password) && SAME(ca_file) && SAME(server_name) &&
           a->database == b->database && a->connect_timeout_ms == b->connect_timeout_ms &&
           a->command_timeout_ms == b->command_timeout_ms;
#undef SAME
}

/* The old connection's thread has ended, its commands completed: nothing is left to wait for. */
static void
released(void *ud)
{
    struct retired *x = ud;

    for (struct retired **pp = &x->st->retired; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    authd_redis_free(x->r);
    free(x);
}

/*
 * Lets the connection go without waiting on the lws thread: its thread may be inside a
 * getaddrinfo that outlasts the checks' patience. Its commands complete (PC_EIO) through the
 * pool as usual, then released() frees it.
 */
static void
retire(struct authd_store *st)
{
    struct retired *x;

    if (st->redis == NULL)
        return;
    x = pc_xcalloc(1, sizeof(*x));
    x->st = st;
    x->r = st->redis;
    x->next = st->retired;
    st->retired = x;
    authd_redis_retire(st->redis, released, x);
    st->redis = NULL;
}

void
authd_store_sync(struct authd_store *st, const struct authd_config *cfg)
{
    const struct authd_redis_config *want = cfg->redis;
    struct authd_redis_config *old = st->cfg;

    if (want != NULL && old != NULL && same_settings(want, old)) {
        old->revalidate = want->revalidate; /* these apply at once */
        old->grace = want->grace;
        free(old->key_prefix);
        old->key_prefix = pc_xstrdup(want->key_prefix);
        return;
    }
    if (want == NULL && old == NULL)
        return;
    retire(st);
    authd_redis_config_free(old);
    st->cfg = NULL;
    if (want == NULL)
        return;
    st->cfg = authd_redis_config_copy(want);
    if (authd_redis_new(want, st->srv->pool, st->srv->loop_vh, &st->redis) != 0)
        pc_log(PC_LOG_ERROR, "redis", "error", "cannot start the redis connection", "address",
               want->url, NULL);
}

void
authd_store_stop(struct authd_store *st)
{
    if (st == NULL)
        return;
    authd_redis_stop(st->redis);
    for (struct retired *x = st->retired; x; x = x->next)
        authd_redis_stop(x->r); /* at shutdown waiting is fine; the pool then runs released() */
}

void
authd_store_free(struct authd_store *st)
{
    if (st == NULL)
        return;
    authd_redis_free(st->redis);
    while (st->retired != NULL) /* only when the pool never ran their release */
        released(st->retired);
    authd_redis_config_free(st->cfg);
    for (size_t i = 0; i < HELD_SLOTS; i++) {
        if (st->held[i].s != NULL)
            held_clear(&st->held[i]);
        by_header_clear(&st->by_header[i]);
    }
    free(st);
}

void
authd_store_metrics(const struct authd_store *st, struct pc_buf *out)
{
    struct authd_redis_stats rs;

    if (st == NULL || st->cfg == NULL)
        return;
    authd_redis_stats(st->redis, &rs);
    pc_buf_appendf(out,
                   "# HELP portcullis_authd_redis_up 1 while authd is connected to Redis.\n"
                   "# TYPE portcullis_authd_redis_up gauge\n"
                   "portcullis_authd_redis_up %d\n"
                   "# HELP portcullis_authd_redis_connections_total Connections made and lost.\n"
                   "# TYPE portcullis_authd_redis_connections_total counter\n"
                   "portcullis_authd_redis_connections_total{event=\"connected\"} %llu\n"
                   "portcullis_authd_redis_connections_total{event=\"lost\"} %llu\n"
                   "# HELP portcullis_authd_redis_commands_total Redis commands by result "
                   "(refused: not sent, Redis down or too many pending).\n"
                   "# TYPE portcullis_authd_redis_commands_total counter\n"
                   "portcullis_authd_redis_commands_total{result=\"ok\"} %llu\n"
                   "portcullis_authd_redis_commands_total{result=\"error\"} %llu\n"
                   "portcullis_authd_redis_commands_total{result=\"timeout\"} %llu\n"
                   "portcullis_authd_redis_commands_total{result=\"refused\"} %llu\n"
                   "# HELP portcullis_authd_redis_sessions_total Sessions of redis-store hosts "
                   "looked up, by where the answer came from.\n"
                   "# TYPE portcullis_authd_redis_sessions_total counter\n",
                   rs.up ? 1 : 0, rs.connects, rs.disconnects, rs.ok, rs.errors, rs.timeouts,
                   rs.refused);
    for (int i = 0; i < NSRC; i++)
        pc_buf_appendf(out, "portcullis_authd_redis_sessions_total{source=\"%s\"} %llu\n",
                       src_names[i], st->sessions[i]);
    pc_buf_appendf(out, "# HELP portcullis_authd_redis_refreshes_total Session refreshes of "
                        "redis-store hosts started here, by result.\n"
                        "# TYPE portcullis_authd_redis_refreshes_total counter\n");
    for (int i = 0; i < NRF; i++)
        pc_buf_appendf(out, "portcullis_authd_redis_refreshes_total{result=\"%s\"} %llu\n",
                       rf_names[i], st->refreshes[i]);
    pc_buf_appendf(out,
                   "# HELP portcullis_authd_redis_writes_total Sessions written at login and "
                   "deleted at sign-out.\n"
                   "# TYPE portcullis_authd_redis_writes_total counter\n"
                   "portcullis_authd_redis_writes_total{op=\"login\",result=\"ok\"} %llu\n"
                   "portcullis_authd_redis_writes_total{op=\"login\",result=\"failure\"} %llu\n"
                   "portcullis_authd_redis_writes_total{op=\"sign_out\",result=\"ok\"} %llu\n",
                   st->saved, st->save_failed, st->signed_out);
}
