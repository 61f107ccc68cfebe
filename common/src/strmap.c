/*
 * strmap.c - open-addressing string map (linear probing, load <= 1/2) and a string arena.
 */
#include "portcullis/strmap.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "portcullis/base.h"

/* ---- SipHash-2-4 (Aumasson, Bernstein), keyed once per process ---------------------------- */

static uint64_t sip_k0, sip_k1;
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void
sip_seed(void)
{
    uint64_t k[2] = {0x736f6d6570736575ULL, 0x646f72616e646f6dULL};

    /* Without entropy the map still works; only its collision resistance is lost. */
    if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k))
        k[0] ^= (uint64_t)(uintptr_t)&k;
    sip_k0 = k[0];
    sip_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t
siphash(const char *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL, v1 = 0x646f72616e646f6dULL;
    uint64_t v2 = 0x6c7967656e657261ULL, v3 = 0x7465646279746573ULL;
    uint64_t b = (uint64_t)len << 56, m;
    const unsigned char *p = (const unsigned char *)in;
    size_t i, tail = len & 7;

    pthread_once(&sip_once, sip_seed);
    v3 ^= sip_k1;
    v2 ^= sip_k0;
    v1 ^= sip_k1;
    v0 ^= sip_k0;
    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&m, p + i, 8); /* little-endian hosts; the hash need only be consistent */
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; j < tail; j++)
        b |= (uint64_t)p[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the map ------------------------------------------------------------------------------ */

void
pc_strmap_init(struct pc_strmap *m)
{
    memset(m, 0, sizeof(*m));
}

void
pc_strmap_release(struct pc_strmap *m)
{
    free(m->keys);
    free(m->vals);
    pc_strmap_init(m);
}

/* The slot of key, or of the empty slot where it would go. cap > 0. */
static size_t
slot_of(const struct pc_strmap *m, const char *key, size_t len)
{
    size_t i = (size_t)siphash(key, len) & (m->cap - 1);

    while (m->keys[i] != NULL && (strncmp(m->keys[i], key, len) != 0 || m->keys[i][len] != '\0'))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static void
grow(struct pc_strmap *m)
{
    struct pc_strmap old = *m;

    m->cap = old.cap ? old.cap * 2 : 16;
    m->keys = pc_xcalloc(m->cap, sizeof(*m->keys));
    m->vals = pc_xcalloc(m->cap, sizeof(*m->vals));
    for (size_t i = 0; i < old.cap; i++) {
        if (old.keys[i] != NULL) {
            size_t s = slot_of(m, old.keys[i], strlen(old.keys[i]));

            m->keys[s] = old.keys[i];
            m->vals[s] = old.vals[i];
        }
    }
    free(old.keys);
    free(old.vals);
}

bool
pc_strmap_add(struct pc_strmap *m, const char *key, size_t v, size_t *old)
{
    size_t s, len = strlen(key);

    if ((m->n + 1) * 2 > m->cap)
        grow(m);
    s = slot_of(m, key, len);
    if (m->keys[s] != NULL) {
        if (old)
            *old = m->vals[s];
        return false;
    }
    m->keys[s] = key;
    m->vals[s] = v;
    m->n++;
    return true;
}

void
pc_strmap_put(struct pc_strmap *m, const char *key, size_t v)
{
    size_t s, len = strlen(key);

    if ((m->n + 1) * 2 > m->cap)
        grow(m);
    s = slot_of(m, key, len);
    if (m->keys[s] == NULL)
        m->n++;
    m->keys[s] = key;
    m->vals[s] = v;
}

bool
pc_strmap_getn(const struct pc_strmap *m, const char *key, size_t len, size_t *v)
{
    size_t s;

    /* A NUL inside would let a stored key shorter than len compare equal, then read past it. */
    if (m->cap == 0 || memchr(key, '\0', len) != NULL)
        return false;
    s = slot_of(m, key, len);
    if (m->keys[s] == NULL)
        return false;
    *v = m->vals[s];
    return true;
}

bool
pc_strmap_get(const struct pc_strmap *m, const char *key, size_t *v)
{
    return pc_strmap_getn(m, key, strlen(key), v);
}

/* ---- the arena ---------------------------------------------------------------------------- */

#define CHUNK 16384

struct pc_arena_chunk {
    struct pc_arena_chunk *next;
    size_t used, cap;
    char data[];
};

static char *
arena_alloc(struct pc_arena *a, size_t n)
{
    struct pc_arena_chunk *c = a->head;

    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > CHUNK ? n : CHUNK;

        c = pc_xcalloc(1, sizeof(*c) + cap);
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    c->used += n;
    return c->data + c->used - n;
}

char *
pc_arena_strndup(struct pc_arena *a, const char *s, size_t len)
{
    char *out = arena_alloc(a, len + 1);

    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

char *
pc_arena_strdup(struct pc_arena *a, const char *s)
{
    return pc_arena_strndup(a, s, strlen(s));
}

char *
pc_arena_printf(struct pc_arena *a, const char *fmt, ...)
{
    va_list ap, again;
    char *out;
    int n;

    va_start(ap, fmt);
    va_copy(again, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    out = arena_alloc(a, n > 0 ? (size_t)n + 1 : 1);
    if (n >= 0)
        vsnprintf(out, (size_t)n + 1, fmt, again);
    else
        out[0] = '\0';
    va_end(again);
    return out;
}

void
pc_arena_release(struct pc_arena *a)
{
    for (struct pc_arena_chunk *c = a->head, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
}
