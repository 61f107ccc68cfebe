/*
 * replay.c - the login states this process already took to the token endpoint, so that one
 * state cookie drives at most one code exchange however often its callback is replayed.
 *
 * A ring in claim order of SHA-256 prefixes with the state's own expiry. A claim first drops
 * expired entries from the old end; when the ring is still full the oldest entry is dropped
 * (counted): replaying that state then costs an attacker `capacity` fresh claims, each itself
 * a token call the per-issuer limits of the worker pool already bound. The set lives in one
 * process: each replica remembers only the states it exchanged.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "authd.h"
#include "portcullis/crypto.h"

#define KEY_BYTES 16

struct entry {
    uint8_t key[KEY_BYTES];
    int64_t expires_at; /* 0: released */
};

struct authd_replay {
    struct entry *v;
    size_t cap, head, n;
    uint64_t evicted;
};

static void
key_of(const char *state, uint8_t key[KEY_BYTES])
{
    uint8_t h[32];

    pc_sha256(state, strlen(state), h);
    memcpy(key, h, KEY_BYTES);
}

struct authd_replay *
authd_replay_new(size_t cap)
{
    struct authd_replay *r = pc_xcalloc(1, sizeof(*r));

    r->cap = cap ? cap : 1;
    r->v = pc_xcalloc(r->cap, sizeof(*r->v));
    return r;
}

void
authd_replay_free(struct authd_replay *r)
{
    if (!r)
        return;
    free(r->v);
    free(r);
}

static struct entry *
at(struct authd_replay *r, size_t i)
{
    return &r->v[(r->head + i) % r->cap];
}

static struct entry *
lookup(struct authd_replay *r, const uint8_t key[KEY_BYTES], int64_t now)
{
    for (size_t i = 0; i < r->n; i++) {
        struct entry *e = at(r, i);
        if (e->expires_at > now && !memcmp(e->key, key, KEY_BYTES))
            return e;
    }
    return NULL;
}

int
authd_replay_claim(struct authd_replay *r, const char *state, int64_t expires_at, int64_t now)
{
    uint8_t key[KEY_BYTES];

    key_of(state, key);
    if (lookup(r, key, now))
        return -EALREADY;
    while (r->n && at(r, 0)->expires_at <= now) {
        r->head = (r->head + 1) % r->cap;
        r->n--;
    }
    if (r->n == r->cap) {
        r->head = (r->head + 1) % r->cap;
        r->n--;
        r->evicted++;
    }
    struct entry *e = at(r, r->n++);
    memcpy(e->key, key, KEY_BYTES);
    e->expires_at = expires_at;
    return 0;
}

void
authd_replay_release(struct authd_replay *r, const char *state, int64_t now)
{
    uint8_t key[KEY_BYTES];
    struct entry *e;

    key_of(state, key);
    /* The slot goes too (the newest entry takes it): a released state must not hold one, or
     * claims refused as busy could flush the set without any token call. */
    if ((e = lookup(r, key, now))) {
        *e = *at(r, r->n - 1);
        r->n--;
    }
}

uint64_t
authd_replay_evicted(const struct authd_replay *r)
{
    return r->evicted;
}
