/*
 * sesscache.c - a small direct-mapped cache of opened sessions for the check path.
 *
 * Opening a session costs base64 decoding, AES-GCM and a JSON parse with a dozen allocations;
 * a browser sends the same Cookie header on every request. An entry is keyed by the exact
 * Cookie header bytes (compared in full, the hash only picks the slot), the host policy and the
 * config generation, so a reload (new keys, new policies) never reuses an entry. Expiry is
 * checked on every hit. Hosts with session.refresh > 0 are not cached (refresh needs the
 * session's ownership). lws thread only: no locks.
 */
#include <stdlib.h>
#include <string.h>

#include "authd.h"

#define MAX_COOKIE_CACHED 8192

struct slot {
    uint64_t hash;
    uint64_t generation;
    const struct authd_host *host;
    char *cookie;
    size_t len;
    struct authd_session *s;
};

struct authd_sesscache {
    size_t n;
    struct slot *v;
};

/* Slot selection only (entries are compared in full): 8 bytes per step. */
uint64_t
authd_hash_bytes(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ull ^ n, w;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h ^ (h >> 32);
}

struct authd_sesscache *
authd_sesscache_new(size_t n)
{
    struct authd_sesscache *c = pc_xcalloc(1, sizeof(*c));

    c->n = n;
    c->v = pc_xcalloc(n, sizeof(*c->v));
    return c;
}

static void
slot_clear(struct slot *sl)
{
    if (sl->cookie)
        pc_cleanse(sl->cookie, sl->len);
    free(sl->cookie);
    authd_session_free(sl->s);
    memset(sl, 0, sizeof(*sl));
}

void
authd_sesscache_free(struct authd_sesscache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        slot_clear(&c->v[i]);
    free(c->v);
    free(c);
}

const struct authd_session *
authd_sesscache_get(struct authd_sesscache *c, uint64_t generation, const struct authd_host *host,
                    const char *cookie, int64_t now)
{
    size_t len = cookie ? strlen(cookie) : 0;
    uint64_t h;
    struct slot *sl;

    if (!len || len > MAX_COOKIE_CACHED)
        return NULL;
    h = authd_hash_bytes(cookie, len);
    sl = &c->v[h % c->n];
    if (!sl->s || sl->hash != h || sl->generation != generation || sl->host != host ||
        sl->len != len || memcmp(sl->cookie, cookie, len))
        return NULL;
    if (sl->s->expires_at <= now) {
        slot_clear(sl);
        return NULL;
    }
    return sl->s;
}

const struct authd_session *
authd_sesscache_put(struct authd_sesscache *c, uint64_t generation, const struct authd_host *host,
                    const char *cookie, struct authd_session *s)
{
    size_t len = cookie ? strlen(cookie) : 0;
    struct slot *sl;
    uint64_t h;

    if (!len || len > MAX_COOKIE_CACHED || host->session.refresh > 0)
        return NULL;
    h = authd_hash_bytes(cookie, len);
    sl = &c->v[h % c->n];
    slot_clear(sl);
    sl->hash = h;
    sl->generation = generation;
    sl->host = host;
    sl->cookie = pc_xstrndup(cookie, len);
    sl->len = len;
    sl->s = s;
    return s;
}
