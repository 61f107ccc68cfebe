/*
 * session.c - the encrypted session cookie and the per-login state cookies.
 *
 * A cookie value is base64url(version || nonce || AES-256-GCM(ciphertext || tag)); the
 * authenticated data is version || cookie name, so a value cannot be moved to another cookie
 * name or read by another format. The plaintext is compact JSON with short keys.
 */
#include "authd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/b64.h"
#include "portcullis/buf.h"
#include "portcullis/crypto.h"

#define FORMAT_VERSION 1
#define MAX_PLAINTEXT (AUTHD_CHUNK_SIZE * AUTHD_MAX_CHUNKS)
#define STATE_ID_LEN 12
#define B64URL_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
/* Room left in the Cookie header for the application's own cookies and our state cookies. */
#define MAX_SEALED_VALUE (AUTHD_MAX_COOKIE_HEADER - 3072)

/* ---- keys ---- */

int
authd_keys_init(struct authd_keys *k, const char *const *secrets, const size_t *lens, size_t n)
{
    static const char info_session[] = "portcullis-authd session v1";
    static const char info_state[] = "portcullis-authd login state v1";
    static const char info_redis[] = "portcullis-authd redis sessions v1";
    static const char salt[] = "portcullis-authd cookie keys";

    memset(k, 0, sizeof(*k));
    if (n == 0 || n > AUTHD_MAX_SECRETS)
        return PC_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] < AUTHD_MIN_SECRET ||
            pc_hkdf_sha256(secrets[i], lens[i], salt, sizeof(salt) - 1, info_session,
                           sizeof(info_session) - 1, k->session[i], sizeof(k->session[i])) != 0 ||
            pc_hkdf_sha256(secrets[i], lens[i], salt, sizeof(salt) - 1, info_state,
                           sizeof(info_state) - 1, k->state[i], sizeof(k->state[i])) != 0 ||
            pc_hkdf_sha256(secrets[i], lens[i], salt, sizeof(salt) - 1, info_redis,
                           sizeof(info_redis) - 1, k->redis[i], sizeof(k->redis[i])) != 0) {
            authd_keys_release(k);
            return PC_EINVAL;
        }
    }
    k->n = n;
    return 0;
}

void
authd_keys_release(struct authd_keys *k)
{
    if (k != NULL)
        pc_cleanse(k, sizeof(*k));
}

/* ---- sealing ---- */

/* New authenticated data for cookie `name`: version || name, sized from the name. */
static uint8_t *
build_aad(const char *name, size_t *len)
{
    size_t n = strlen(name);
    uint8_t *aad = pc_xmalloc(n + 1);

    aad[0] = FORMAT_VERSION;
    memcpy(aad + 1, name, n);
    *len = n + 1;
    return aad;
}

/* New cookie value for plaintext pt under key, bound to cookie `name`. */
static char *
seal_value(const uint8_t key[32], const char *name, const char *pt, size_t ptlen)
{
    size_t rawlen = 1 + PC_AEAD_NONCE_LEN + ptlen + PC_AEAD_TAG_LEN, aadlen;
    uint8_t *raw = pc_xmalloc(rawlen), *aad = build_aad(name, &aadlen);
    char *out = NULL;

    raw[0] = FORMAT_VERSION;
    if (pc_random_bytes(raw + 1, PC_AEAD_NONCE_LEN) == 0 &&
        pc_aead_seal(key, raw + 1, aad, aadlen, pt, ptlen, raw + 1 + PC_AEAD_NONCE_LEN) == 0)
        out = pc_b64url_encode(raw, rawlen);
    free(aad);
    free(raw);
    return out;
}

/*
 * Only the canonical base64url text of a value is accepted: a last character with non-zero
 * unused bits would decode to the same bytes, making cookie values malleable.
 */
static bool
canonical_tail(const char *value, size_t vlen)
{
    static const char alphabet[] = B64URL_ALPHABET;
    const char *p;
    int v;

    if (vlen % 4 == 0)
        return true;
    if (vlen % 4 == 1 || (p = memchr(alphabet, value[vlen - 1], 64)) == NULL)
        return false;
    v = (int)(p - alphabet);
    return vlen % 4 == 2 ? (v & 0x0f) == 0 : (v & 0x03) == 0;
}

/* Opens value with any of n keys. Returns 0 with *pt new (NUL-terminated), or PC_EAUTH. */
static int
open_value(const uint8_t (*keys)[32], size_t n, const char *name, const char *value, size_t vlen,
           char **pt)
{
    unsigned char *raw = NULL;
    size_t rawlen = 0, aadlen, ctlen;
    uint8_t *aad = NULL;
    char *out = NULL;
    int rc = PC_EAUTH;

    if (vlen > MAX_PLAINTEXT * 2 || !canonical_tail(value, vlen) ||
        pc_b64url_decode(value, vlen, &raw, &rawlen) != 0)
        goto out;
    if (rawlen < 1 + PC_AEAD_NONCE_LEN + PC_AEAD_TAG_LEN || raw[0] != FORMAT_VERSION)
        goto out;
    aad = build_aad(name, &aadlen);
    ctlen = rawlen - 1 - PC_AEAD_NONCE_LEN;
    out = pc_xmalloc(ctlen - PC_AEAD_TAG_LEN + 1);
    for (size_t i = 0; i < n && rc != 0; i++)
        if (pc_aead_open(keys[i], raw + 1, aad, aadlen, raw + 1 + PC_AEAD_NONCE_LEN, ctlen,
                         (uint8_t *)out) == 0)
            rc = 0;
    if (rc == 0) {
        out[ctlen - PC_AEAD_TAG_LEN] = '\0';
        *pt = out;
        out = NULL;
    }
out:
    if (out != NULL)
        pc_cleanse(out, ctlen - PC_AEAD_TAG_LEN);
    free(out);
    free(aad);
    free(raw);
    return rc;
}

/* ---- Cookie header ---- */

static char *
trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    return s;
}

int
authd_cookie_jar_parse(struct authd_cookie_jar *jar, const char *header)
{
    char *p, *save = NULL, *pair;

    memset(jar, 0, sizeof(*jar));
    if (header == NULL || header[0] == '\0')
        return 0;
    if (strnlen(header, AUTHD_MAX_COOKIE_HEADER + 1) > AUTHD_MAX_COOKIE_HEADER)
        return PC_ETOOBIG;
    jar->buf = pc_xstrdup(header);
    for (p = jar->buf; (pair = strtok_r(p, ";", &save)) != NULL; p = NULL) {
        char *eq = strchr(pair, '='), *name, *value;
        size_t vlen;

        if (eq == NULL)
            continue;
        *eq = '\0';
        name = trim(pair);
        value = trim(eq + 1);
        vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        if (name[0] == '\0')
            continue;
        if (jar->n == AUTHD_MAX_COOKIES) {
            authd_cookie_jar_release(jar);
            return PC_ETOOBIG;
        }
        jar->v[jar->n].name = name;
        jar->v[jar->n++].value = value;
    }
    return 0;
}

void
authd_cookie_jar_release(struct authd_cookie_jar *jar)
{
    if (jar == NULL)
        return;
    if (jar->buf != NULL)
        pc_cleanse(jar->buf, strlen(jar->buf));
    free(jar->buf);
    memset(jar, 0, sizeof(*jar));
}

const char *
authd_cookie_get(const struct authd_cookie_jar *jar, const char *name)
{
    for (size_t i = 0; i < jar->n; i++)
        if (strcmp(jar->v[i].name, name) == 0)
            return jar->v[i].value;
    return NULL;
}

/* True when name is <base>_<digits> (a chunk); *index gets the number. */
static bool
is_chunk(const char *name, const char *base, size_t *index)
{
    size_t blen = strlen(base), v = 0;
    const char *p;

    if (strncmp(name, base, blen) != 0 || name[blen] != '_' || name[blen + 1] == '\0')
        return false;
    for (p = name + blen + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > 1000)
            return false;
        v = v * 10 + (size_t)(*p - '0');
    }
    if (index != NULL)
        *index = v;
    return true;
}

/*
 * True when name is exactly what state_cookie_name writes: <base>_csrf_ and STATE_ID_LEN
 * base64url characters. Names come from the client, so anything else is not authd's.
 */
static bool
is_state_cookie(const char *name, const char *base)
{
    size_t blen = strlen(base);
    const char *id = name + blen + 6;

    if (strncmp(name, base, blen) != 0 || strncmp(name + blen, "_csrf_", 6) != 0)
        return false;
    return strlen(id) == STATE_ID_LEN && strspn(id, B64URL_ALPHABET) == STATE_ID_LEN;
}

static bool
is_own_cookie(const char *name, const char *base)
{
    return strcmp(name, base) == 0 || is_chunk(name, base, NULL) || is_state_cookie(name, base);
}

char *
authd_cookie_strip(const char *header, const char *cookie_name)
{
    struct authd_cookie_jar jar;
    struct pc_buf b;

    if (authd_cookie_jar_parse(&jar, header) != 0)
        return NULL;
    if (jar.n == 0) {
        authd_cookie_jar_release(&jar);
        return NULL;
    }
    pc_buf_init(&b, 0);
    b.secret = true;
    for (size_t i = 0; i < jar.n; i++) {
        if (is_own_cookie(jar.v[i].name, cookie_name))
            continue;
        pc_buf_appendf(&b, "%s%s=%s", b.len ? "; " : "", jar.v[i].name, jar.v[i].value);
    }
    authd_cookie_jar_release(&jar);
    if (b.len == 0) {
        pc_buf_release(&b);
        return NULL;
    }
    return pc_buf_detach(&b);
}

/* ---- Set-Cookie ---- */

static const char *
same_site_name(enum authd_samesite s)
{
    return s == AUTHD_SAMESITE_STRICT ? "Strict" : s == AUTHD_SAMESITE_NONE ? "None" : "Lax";
}

struct cookie_attrs {
    int64_t max_age;
    const char *domain; /* NULL: host-only */
    enum authd_samesite same_site;
};

static void
add_set_cookie(struct authd_strlist *out, const char *name, const char *value,
               const struct cookie_attrs *a)
{
    char *s =
        pc_xasprintf("%s=%s; Path=/; Max-Age=%lld%s%s; Secure; HttpOnly; SameSite=%s", name, value,
                     (long long)(a->max_age > 0 ? a->max_age : 0), a->domain ? "; Domain=" : "",
                     a->domain ? a->domain : "", same_site_name(a->same_site));

    out->v = pc_xrealloc(out->v, (out->n + 1) * sizeof(*out->v));
    out->v[out->n++] = s;
}

static void
add_clear(struct authd_strlist *out, const char *name, const struct authd_host *host,
          const char *domain)
{
    struct cookie_attrs a = {.max_age = 0, .domain = domain, .same_site = host->session.same_site};

    add_set_cookie(out, name, "", &a);
}

static bool
list_has_prefix(const struct authd_strlist *l, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < l->n; i++)
        if (strncmp(l->v[i], name, n) == 0 && l->v[i][n] == '=')
            return true;
    return false;
}

void
authd_session_clear(const struct authd_host *host, const char *cookie_header, bool with_state,
                    struct authd_strlist *set_cookie)
{
    const char *base = host->session.cookie_name;
    struct authd_cookie_jar jar;

    add_clear(set_cookie, base, host, host->session.cookie_domain);
    if (authd_cookie_jar_parse(&jar, cookie_header) != 0)
        return;
    for (size_t i = 0; i < jar.n; i++) {
        const char *name = jar.v[i].name;
        bool state = is_state_cookie(name, base);

        if (list_has_prefix(set_cookie, name))
            continue;
        if (is_chunk(name, base, NULL))
            add_clear(set_cookie, name, host, host->session.cookie_domain);
        else if (state && with_state)
            add_clear(set_cookie, name, host, NULL);
    }
    authd_cookie_jar_release(&jar);
}

/* ---- session payload ---- */

void
authd_identity_release(struct authd_identity *id)
{
    if (id == NULL)
        return;
    free(id->sub);
    free(id->email);
    free(id->preferred_username);
    authd_strlist_release(&id->groups);
    for (size_t i = 0; i < id->nextra; i++) {
        free(id->extra[i].name);
        free(id->extra[i].value);
        authd_strlist_release(&id->extra[i].items);
    }
    free(id->extra);
    memset(id, 0, sizeof(*id));
}

void
authd_session_free(struct authd_session *s)
{
    if (s == NULL)
        return;
    authd_identity_release(&s->id);
    free(s->issuer);
    free(s->client_id);
    pc_free_secret(s->refresh_token);
    pc_free_secret(s->id_token);
    free(s);
}

static void
set_str(json_t *o, const char *key, const char *v)
{
    if (v != NULL)
        json_object_set_new(o, key, json_string(v));
}

static json_t *
identity_to_json(const struct authd_identity *id, json_t *o)
{
    json_t *groups = json_array(), *extra = json_object();

    set_str(o, "sub", id->sub);
    set_str(o, "em", id->email);
    json_object_set_new(o, "ev", json_boolean(id->email_verified));
    set_str(o, "un", id->preferred_username);
    for (size_t i = 0; i < id->groups.n; i++)
        json_array_append_new(groups, json_string(id->groups.v[i]));
    json_object_set_new(o, "g", groups);
    for (size_t i = 0; i < id->nextra; i++) {
        const struct authd_claim *c = &id->extra[i];
        json_t *v = c->value ? json_string(c->value) : json_array();

        for (size_t k = 0; c->value == NULL && k < c->items.n; k++)
            json_array_append_new(v, json_string(c->items.v[k]));
        json_object_set_new(extra, c->name, v);
    }
    json_object_set_new(o, "x", extra);
    return o;
}

static char *
session_to_json(const struct authd_session *s)
{
    json_t *o = identity_to_json(&s->id, json_object());
    char *text;

    set_str(o, "iss", s->issuer);
    set_str(o, "cid", s->client_id);
    json_object_set_new(o, "iat", json_integer(s->issued_at));
    json_object_set_new(o, "exp", json_integer(s->expires_at));
    json_object_set_new(o, "rat", json_integer(s->refreshed_at));
    set_str(o, "rt", s->refresh_token);
    set_str(o, "idt", s->id_token);
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static char *
dup_str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));

    return v != NULL ? pc_xstrdup(v) : NULL;
}

static int
identity_from_json(const json_t *o, struct authd_identity *id)
{
    const json_t *groups = json_object_get(o, "g"), *extra = json_object_get(o, "x"), *v;
    const char *k;
    size_t i;

    id->sub = dup_str(o, "sub");
    id->email = dup_str(o, "em");
    id->preferred_username = dup_str(o, "un");
    id->email_verified = json_is_true(json_object_get(o, "ev"));
    /* No "ev": sealed before authd recorded email_verified; that email was never checked. */
    if (id->sub == NULL || !json_is_array(groups) || !json_is_object(extra) ||
        !json_is_boolean(json_object_get(o, "ev")))
        return PC_EAUTH;
    json_array_foreach(groups, i, v)
    {
        if (!json_is_string(v))
            return PC_EAUTH;
        authd_strlist_add(&id->groups, json_string_value(v));
    }
    id->extra = pc_xcalloc(json_object_size(extra) + 1, sizeof(*id->extra));
    json_object_foreach((json_t *)extra, k, v)
    {
        struct authd_claim *c = &id->extra[id->nextra];
        const json_t *e;
        size_t n;

        if (!json_is_string(v) && !json_is_array(v))
            return PC_EAUTH;
        c->name = pc_xstrdup(k);
        id->nextra++;
        if (json_is_string(v))
            c->value = pc_xstrdup(json_string_value(v));
        json_array_foreach(v, n, e)
        {
            if (!json_is_string(e))
                return PC_EAUTH;
            authd_strlist_add(&c->items, json_string_value(e));
        }
    }
    return 0;
}

static int
session_from_json(const char *text, struct authd_session **out)
{
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    struct authd_session *s = pc_xcalloc(1, sizeof(*s));
    int rc = PC_EAUTH;

    if (!json_is_object(o) || identity_from_json(o, &s->id) != 0)
        goto out;
    s->issuer = dup_str(o, "iss");
    s->client_id = dup_str(o, "cid");
    s->issued_at = json_integer_value(json_object_get(o, "iat"));
    s->expires_at = json_integer_value(json_object_get(o, "exp"));
    s->refreshed_at = json_integer_value(json_object_get(o, "rat"));
    s->refresh_token = dup_str(o, "rt");
    s->id_token = dup_str(o, "idt");
    if (s->issuer == NULL || s->client_id == NULL || !json_is_integer(json_object_get(o, "exp")))
        goto out;
    *out = s;
    s = NULL;
    rc = 0;
out:
    authd_session_free(s);
    json_decref(o);
    return rc;
}

char *
authd_session_encode(const struct authd_session *s)
{
    return session_to_json(s);
}

int
authd_session_decode(const char *text, struct authd_session **out)
{
    *out = NULL;
    return session_from_json(text, out);
}

/* ---- the packed session (Redis values) ---- */

/*
 * The fields of the JSON above in a fixed order, without names: a string is a 4-byte
 * big-endian length (PACK_NONE: absent) and its bytes, a count 4 bytes, a time 8 (two's
 * complement), a flag 1. Read back with no parser's tables to build: a Redis session is read
 * back on every check the held cache does not answer.
 */
#define PACK_NONE 0xffffffffu
enum { PACK_SCALAR = 0, PACK_LIST = 1 };

static void
put_u32(struct pc_buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

    pc_buf_append(b, x, sizeof(x));
}

static void
put_i64(struct pc_buf *b, int64_t v)
{
    uint64_t u = (uint64_t)v;

    put_u32(b, (uint32_t)(u >> 32));
    put_u32(b, (uint32_t)u);
}

static void
put_str(struct pc_buf *b, const char *v)
{
    size_t n = v ? strlen(v) : 0;

    put_u32(b, v ? (uint32_t)n : PACK_NONE);
    pc_buf_append(b, v, n);
}

static void
put_list(struct pc_buf *b, const struct authd_strlist *l)
{
    put_u32(b, (uint32_t)l->n);
    for (size_t i = 0; i < l->n; i++)
        put_str(b, l->v[i]);
}

uint8_t *
authd_session_pack(const struct authd_session *s, size_t *len)
{
    const struct authd_identity *id = &s->id;
    struct pc_buf b;
    uint8_t flag = id->email_verified ? 1 : 0;

    pc_buf_init(&b, 0);
    b.secret = true; /* the refresh token */
    put_str(&b, id->sub);
    put_str(&b, id->email);
    pc_buf_append(&b, &flag, 1);
    put_str(&b, id->preferred_username);
    put_list(&b, &id->groups);
    put_u32(&b, (uint32_t)id->nextra);
    for (size_t i = 0; i < id->nextra; i++) {
        const struct authd_claim *c = &id->extra[i];
        uint8_t kind = c->value ? PACK_SCALAR : PACK_LIST;

        put_str(&b, c->name);
        pc_buf_append(&b, &kind, 1);
        if (c->value)
            put_str(&b, c->value);
        else
            put_list(&b, &c->items);
    }
    put_str(&b, s->issuer);
    put_str(&b, s->client_id);
    put_i64(&b, s->issued_at);
    put_i64(&b, s->expires_at);
    put_i64(&b, s->refreshed_at);
    put_str(&b, s->refresh_token);
    put_str(&b, s->id_token);
    *len = b.len;
    return (uint8_t *)pc_buf_detach(&b);
}

/* A reader of packed bytes: any read past the end, or of a malformed field, sets bad. */
struct unpack {
    const uint8_t *p, *end;
    bool bad;
};

static bool
take(struct unpack *u, size_t n, const uint8_t **at)
{
    if (u->bad || (size_t)(u->end - u->p) < n) {
        u->bad = true;
        return false;
    }
    *at = u->p;
    u->p += n;
    return true;
}

static uint32_t
get_u32(struct unpack *u)
{
    const uint8_t *x;

    if (!take(u, 4, &x))
        return 0;
    return (uint32_t)x[0] << 24 | (uint32_t)x[1] << 16 | (uint32_t)x[2] << 8 | x[3];
}

static int64_t
get_i64(struct unpack *u)
{
    uint64_t hi = get_u32(u), lo = get_u32(u);

    return (int64_t)(hi << 32 | lo);
}

static uint8_t
get_flag(struct unpack *u)
{
    const uint8_t *x;

    if (!take(u, 1, &x))
        return 0;
    if (*x > 1)
        u->bad = true;
    return *x;
}

/* A new string, or NULL when absent (bad when required) or malformed (a NUL inside). */
static char *
get_str(struct unpack *u, bool required)
{
    uint32_t n = get_u32(u);
    const uint8_t *x;

    if (u->bad || (n == PACK_NONE && !required))
        return NULL;
    if (n == PACK_NONE || !take(u, n, &x) || memchr(x, '\0', n) != NULL) {
        u->bad = true;
        return NULL;
    }
    return pc_xstrndup((const char *)x, n);
}

/* A count of items that each take at least 4 bytes: never more than the bytes left allow. */
static uint32_t
get_count(struct unpack *u)
{
    uint32_t n = get_u32(u);

    if (!u->bad && n > (size_t)(u->end - u->p) / 4)
        u->bad = true;
    return u->bad ? 0 : n;
}

static void
get_list(struct unpack *u, struct authd_strlist *l)
{
    uint32_t n = get_count(u);

    if (n == 0)
        return;
    l->v = pc_xcalloc(n, sizeof(*l->v));
    for (uint32_t i = 0; i < n && !u->bad; i++)
        if ((l->v[l->n] = get_str(u, true)) != NULL)
            l->n++;
}

int
authd_session_unpack(const uint8_t *p, size_t len, struct authd_session **out)
{
    struct unpack u = {.p = p, .end = p + len};
    struct authd_session *s = pc_xcalloc(1, sizeof(*s));
    struct authd_identity *id = &s->id;
    uint32_t nextra;

    *out = NULL;
    id->sub = get_str(&u, true);
    id->email = get_str(&u, false);
    id->email_verified = get_flag(&u) == 1;
    id->preferred_username = get_str(&u, false);
    get_list(&u, &id->groups);
    nextra = get_count(&u);
    id->extra = pc_xcalloc((size_t)nextra + 1, sizeof(*id->extra));
    for (uint32_t i = 0; i < nextra && !u.bad; i++) {
        struct authd_claim *c = &id->extra[id->nextra++];

        c->name = get_str(&u, true);
        if (get_flag(&u) == PACK_SCALAR)
            c->value = get_str(&u, true);
        else
            get_list(&u, &c->items);
    }
    s->issuer = get_str(&u, true);
    s->client_id = get_str(&u, true);
    s->issued_at = get_i64(&u);
    s->expires_at = get_i64(&u);
    s->refreshed_at = get_i64(&u);
    s->refresh_token = get_str(&u, false);
    s->id_token = get_str(&u, false);
    if (u.bad || u.p != u.end) {
        authd_session_free(s);
        return PC_EAUTH;
    }
    *out = s;
    return 0;
}

int
authd_session_from_claims(const struct authd_host *host, const json_t *claims, const char *id_token,
                          const char *refresh_token, int64_t now, struct authd_session **out)
{
    struct authd_session *s = pc_xcalloc(1, sizeof(*s));
    int rc;

    *out = NULL;
    if ((rc = authd_identity_from_claims(host, claims, &s->id)) != 0) {
        authd_session_free(s);
        return rc;
    }
    s->issuer = pc_xstrdup(host->oidc.issuer_url);
    s->client_id = pc_xstrdup(host->oidc.client_id);
    s->issued_at = s->refreshed_at = now;
    s->expires_at = now + host->session.lifetime;
    if (refresh_token != NULL)
        s->refresh_token = pc_xstrdup(refresh_token);
    if (id_token != NULL && host->pass_id_token)
        s->id_token = pc_xstrdup(id_token);
    *out = s;
    return 0;
}

/* ---- session cookie ---- */

static struct cookie_attrs
session_attrs(const struct authd_host *host, int64_t max_age)
{
    struct cookie_attrs a = {.max_age = max_age,
                             .domain = host->session.cookie_domain,
                             .same_site = host->session.same_site};

    return a;
}

/* Appends the cookies for value: unchunked, or <name>_0..N of AUTHD_CHUNK_SIZE bytes. */
static size_t
emit_chunks(const struct authd_host *host, const char *value, int64_t max_age,
            struct authd_strlist *set_cookie)
{
    const char *base = host->session.cookie_name;
    struct cookie_attrs a = session_attrs(host, max_age);
    size_t len = strlen(value), nchunks = 0;

    if (len <= AUTHD_CHUNK_SIZE) {
        add_set_cookie(set_cookie, base, value, &a);
        return 0;
    }
    for (size_t off = 0; off < len; off += AUTHD_CHUNK_SIZE, nchunks++) {
        size_t n = len - off < AUTHD_CHUNK_SIZE ? len - off : AUTHD_CHUNK_SIZE;
        char *name = pc_xasprintf("%s_%zu", base, nchunks);
        char *part = pc_xstrndup(value + off, n);

        add_set_cookie(set_cookie, name, part, &a);
        free(name);
        free(part);
    }
    return nchunks;
}

/* Clears chunks (and the unchunked name) that the new value no longer uses. */
static void
clear_stale(const struct authd_host *host, const char *cookie_header, size_t nchunks,
            struct authd_strlist *set_cookie)
{
    const char *base = host->session.cookie_name;
    struct authd_cookie_jar jar;
    size_t idx;

    if (authd_cookie_jar_parse(&jar, cookie_header) != 0)
        return;
    for (size_t i = 0; i < jar.n; i++) {
        const char *name = jar.v[i].name;
        bool stale = (nchunks > 0 && strcmp(name, base) == 0) ||
                     (is_chunk(name, base, &idx) && idx >= nchunks);

        if (stale && !list_has_prefix(set_cookie, name))
            add_clear(set_cookie, name, host, host->session.cookie_domain);
    }
    authd_cookie_jar_release(&jar);
}

int
authd_session_seal(const struct authd_keys *keys, const struct authd_host *host,
                   const struct authd_session *s, const char *cookie_header, int64_t now,
                   struct authd_strlist *set_cookie)
{
    char *pt = session_to_json(s), *value = NULL;
    size_t ptlen = strlen(pt), nchunks;
    int rc = 0;

    if (keys->n == 0) {
        rc = PC_EINVAL;
        goto out;
    }
    if (ptlen > MAX_PLAINTEXT) {
        rc = PC_ETOOBIG;
        goto out;
    }
    if ((value = seal_value(keys->session[0], host->session.cookie_name, pt, ptlen)) == NULL) {
        rc = PC_EIO;
        goto out;
    }
    /* A value the Cookie header bound would refuse on the way back is useless: refuse it now. */
    if (strlen(value) > MAX_SEALED_VALUE) {
        rc = PC_ETOOBIG;
        goto out;
    }
    nchunks = emit_chunks(host, value, s->expires_at - now, set_cookie);
    clear_stale(host, cookie_header, nchunks, set_cookie);
out:
    pc_free_secret(pt);
    free(value);
    return rc;
}

void
authd_session_set_value(const struct authd_host *host, const char *value, int64_t max_age,
                        const char *cookie_header, struct authd_strlist *set_cookie)
{
    clear_stale(host, cookie_header, emit_chunks(host, value, max_age, set_cookie), set_cookie);
}

/* The value of the nth (0-based) cookie called name in jar, or NULL. */
static const char *
cookie_nth(const struct authd_cookie_jar *jar, const char *name, size_t nth)
{
    for (size_t i = 0; i < jar->n; i++)
        if (strcmp(jar->v[i].name, name) == 0 && nth-- == 0)
            return jar->v[i].value;
    return NULL;
}

/*
 * Reassembles <base>_0.. from the nth occurrence of each chunk name into *out (new).
 * PC_ENOTFOUND when there is no such _0. Browsers send cookies of equal path in creation
 * order, and a set of chunks is written at once, so the nth occurrences belong together.
 */
static int
reassemble(const struct authd_cookie_jar *jar, const char *base, size_t nth, char **out)
{
    struct pc_buf b;
    size_t i;
    int rc = 0;

    pc_buf_init(&b, (size_t)AUTHD_CHUNK_SIZE * AUTHD_MAX_CHUNKS);
    b.secret = true;
    for (i = 0; i < AUTHD_MAX_CHUNKS + 1 && rc == 0; i++) {
        char *name = pc_xasprintf("%s_%zu", base, i);
        const char *v = cookie_nth(jar, name, nth);

        free(name);
        if (v == NULL)
            break;
        if (i == AUTHD_MAX_CHUNKS)
            rc = PC_ETOOBIG;
        else
            rc = pc_buf_appends(&b, v);
    }
    if (rc == 0 && i == 0)
        rc = PC_ENOTFOUND;
    if (rc == 0)
        *out = pc_buf_detach(&b);
    pc_buf_release(&b);
    return rc;
}

/*
 * Opens one candidate value into a session for host: 0 with *out new, or PC_EAUTH,
 * PC_EEXPIRED, PC_EINVAL as authd_session_open.
 */
static int
open_candidate(const struct authd_keys *keys, const struct authd_host *host, const char *value,
               int64_t now, struct authd_session **out)
{
    const char *base = host->session.cookie_name;
    struct authd_session *s = NULL;
    char *pt = NULL;
    int rc;

    if ((rc = open_value(keys->session, keys->n, base, value, strlen(value), &pt)) != 0 ||
        (rc = session_from_json(pt, &s)) != 0)
        goto out;
    rc = authd_session_accept(host, s, now);
    if (rc == 0) {
        *out = s;
        s = NULL;
    }
out:
    authd_session_free(s);
    pc_free_secret(pt);
    return rc;
}

int
authd_session_accept(const struct authd_host *host, const struct authd_session *s, int64_t now)
{
    if (s->expires_at <= now)
        return PC_EEXPIRED;
    if (strcmp(s->issuer, host->oidc.issuer_url) != 0 ||
        strcmp(s->client_id, host->oidc.client_id) != 0)
        return PC_EINVAL;
    return 0;
}

/* Which failure to report when no candidate opens: the most specific one seen. */
static int
worse(int seen, int rc)
{
    if (seen == PC_EINVAL || seen == PC_EEXPIRED || seen == PC_ETOOBIG)
        return seen;
    return rc == PC_ENOTFOUND ? seen : rc;
}

/*
 * Every candidate is tried until one is a live session of host's issuer and client: a
 * browser sends every cookie whose domain matches, so a sibling host's shared cookie (or one
 * a sibling subdomain planted) can stand before this host's own. Candidates: each unchunked
 * cookie called name, then up to AUTHD_MAX_CHUNK_SETS sets of chunks.
 */
int
authd_session_open(const struct authd_keys *keys, const struct authd_host *host,
                   const char *cookie_header, int64_t now, struct authd_session **out)
{
    const char *base = host->session.cookie_name;
    struct authd_cookie_jar jar;
    int rc, seen = PC_ENOTFOUND;

    *out = NULL;
    if ((rc = authd_cookie_jar_parse(&jar, cookie_header)) != 0)
        return rc;
    for (size_t i = 0; i < jar.n && *out == NULL; i++)
        if (strcmp(jar.v[i].name, base) == 0)
            seen = worse(seen, open_candidate(keys, host, jar.v[i].value, now, out));
    for (size_t nth = 0; nth < AUTHD_MAX_CHUNK_SETS && *out == NULL; nth++) {
        char *joined = NULL;

        if ((rc = reassemble(&jar, base, nth, &joined)) == PC_ENOTFOUND)
            break;
        seen = worse(seen, rc != 0 ? rc : open_candidate(keys, host, joined, now, out));
        pc_free_secret(joined);
    }
    authd_cookie_jar_release(&jar);
    return *out != NULL ? 0 : seen;
}

bool
authd_session_needs_refresh(const struct authd_host *host, const struct authd_session *s,
                            int64_t now)
{
    return host->session.refresh > 0 && s->refresh_token != NULL &&
           now - s->refreshed_at >= host->session.refresh;
}

/* ---- login state cookies ---- */

struct authd_login_state *
authd_login_state_new(const struct authd_host *host, const char *redirect, int64_t now)
{
    struct authd_login_state *st = pc_xcalloc(1, sizeof(*st));

    st->state = pc_random_token(32);
    st->id = pc_xstrndup(st->state, STATE_ID_LEN);
    st->nonce = pc_random_token(32);
    st->pkce_verifier = pc_random_token(48);
    st->redirect = pc_xstrdup(redirect ? redirect : "/");
    st->host_id = pc_xstrdup(host->id);
    st->expires_at = now + AUTHD_STATE_LIFETIME;
    return st;
}

void
authd_login_state_free(struct authd_login_state *st)
{
    if (st == NULL)
        return;
    free(st->id);
    pc_free_secret(st->state);
    pc_free_secret(st->nonce);
    pc_free_secret(st->pkce_verifier);
    free(st->redirect);
    free(st->host_id);
    free(st);
}

char *
authd_pkce_challenge(const char *verifier)
{
    uint8_t digest[32];

    pc_sha256(verifier, strlen(verifier), digest);
    return pc_b64url_encode(digest, sizeof(digest));
}

static char *
state_cookie_name(const struct authd_host *host, const char *id)
{
    return pc_xasprintf("%s_csrf_%s", host->session.cookie_name, id);
}

static char *
state_to_json(const struct authd_login_state *st)
{
    json_t *o = json_object();
    char *text;

    set_str(o, "st", st->state);
    set_str(o, "no", st->nonce);
    set_str(o, "pv", st->pkce_verifier);
    set_str(o, "rd", st->redirect);
    set_str(o, "h", st->host_id);
    json_object_set_new(o, "exp", json_integer(st->expires_at));
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* Opens one state cookie value. Returns 0 with *out new, PC_EAUTH or PC_EEXPIRED. */
static int
open_state(const struct authd_keys *keys, const char *name, const char *value, int64_t now,
           struct authd_login_state **out)
{
    struct authd_login_state *st = NULL;
    json_t *o = NULL;
    char *pt = NULL;
    int rc;

    if ((rc = open_value(keys->state, keys->n, name, value, strlen(value), &pt)) != 0)
        return rc;
    o = json_loads(pt, JSON_REJECT_DUPLICATES, NULL);
    st = pc_xcalloc(1, sizeof(*st));
    st->state = dup_str(o, "st");
    st->nonce = dup_str(o, "no");
    st->pkce_verifier = dup_str(o, "pv");
    st->redirect = dup_str(o, "rd");
    st->host_id = dup_str(o, "h");
    st->expires_at = json_integer_value(json_object_get(o, "exp"));
    if (!st->state || !st->nonce || !st->pkce_verifier || !st->redirect || !st->host_id)
        rc = PC_EAUTH;
    else if (st->expires_at <= now)
        rc = PC_EEXPIRED;
    if (rc == 0) {
        st->id = pc_xstrndup(st->state, STATE_ID_LEN);
        *out = st;
        st = NULL;
    }
    authd_login_state_free(st);
    json_decref(o);
    pc_free_secret(pt);
    return rc;
}

struct live_state {
    const char *name;
    int64_t expires_at;
};

static int
by_expiry_desc(const void *a, const void *b)
{
    const struct live_state *x = a, *y = b;

    return x->expires_at < y->expires_at ? 1 : x->expires_at > y->expires_at ? -1 : 0;
}

/*
 * Clears the state cookies in jar that are unreadable or expired, and the oldest live ones so
 * that with the new one at most AUTHD_MAX_STATE_COOKIES remain.
 */
static void
prune_states(const struct authd_keys *keys, const struct authd_host *host,
             const struct authd_cookie_jar *jar, int64_t now, struct authd_strlist *set_cookie)
{
    struct live_state live[AUTHD_MAX_COOKIES];
    size_t nlive = 0;

    for (size_t i = 0; i < jar->n; i++) {
        struct authd_login_state *st = NULL;

        if (!is_state_cookie(jar->v[i].name, host->session.cookie_name))
            continue;
        if (open_state(keys, jar->v[i].name, jar->v[i].value, now, &st) == 0) {
            live[nlive].name = jar->v[i].name;
            live[nlive++].expires_at = st->expires_at;
            authd_login_state_free(st);
        } else if (!list_has_prefix(set_cookie, jar->v[i].name)) {
            add_clear(set_cookie, jar->v[i].name, host, NULL);
        }
    }
    qsort(live, nlive, sizeof(*live), by_expiry_desc);
    for (size_t i = AUTHD_MAX_STATE_COOKIES - 1; i < nlive; i++)
        if (!list_has_prefix(set_cookie, live[i].name))
            add_clear(set_cookie, live[i].name, host, NULL);
}

int
authd_login_state_seal(const struct authd_keys *keys, const struct authd_host *host,
                       const struct authd_login_state *st, const char *cookie_header, int64_t now,
                       struct authd_strlist *set_cookie)
{
    struct cookie_attrs a = {.max_age = st->expires_at - now, .same_site = AUTHD_SAMESITE_LAX};
    char *name = state_cookie_name(host, st->id), *pt = state_to_json(st), *value = NULL;
    struct authd_cookie_jar jar;
    int rc = 0;

    if (keys->n == 0 || (value = seal_value(keys->state[0], name, pt, strlen(pt))) == NULL) {
        rc = keys->n == 0 ? PC_EINVAL : PC_EIO;
        goto out;
    }
    if (authd_cookie_jar_parse(&jar, cookie_header) == 0) {
        prune_states(keys, host, &jar, now, set_cookie);
        authd_cookie_jar_release(&jar);
    }
    add_set_cookie(set_cookie, name, value, &a);
out:
    free(name);
    pc_free_secret(pt);
    free(value);
    return rc;
}

int
authd_login_state_open(const struct authd_keys *keys, const struct authd_host *host,
                       const char *cookie_header, const char *state, int64_t now,
                       struct authd_login_state **out, struct authd_strlist *set_cookie)
{
    struct authd_login_state *st = NULL;
    struct authd_cookie_jar jar;
    char *name = NULL, id[STATE_ID_LEN + 1];
    const char *value;
    int rc;

    *out = NULL;
    if (state == NULL || strlen(state) < STATE_ID_LEN + 8 || strlen(state) > 256)
        return PC_ENOTFOUND;
    if ((rc = authd_cookie_jar_parse(&jar, cookie_header)) != 0)
        return rc;
    memcpy(id, state, STATE_ID_LEN);
    id[STATE_ID_LEN] = '\0';
    name = state_cookie_name(host, id);
    rc = PC_ENOTFOUND;
    /* Every cookie of the name, as for sessions: a sibling subdomain can plant one in front. */
    for (size_t k = 0; *out == NULL && (value = cookie_nth(&jar, name, k)) != NULL; k++) {
        int r = open_state(keys, name, value, now, &st);

        if (k == 0)
            add_clear(set_cookie, name, host, NULL);
        if (r == 0 &&
            (strlen(st->state) != strlen(state) || !pc_memeq(st->state, state, strlen(state)) ||
             strcmp(st->host_id, host->id) != 0))
            r = PC_EAUTH;
        if (r == 0) {
            *out = st;
            st = NULL;
        }
        authd_login_state_free(st);
        st = NULL;
        rc = r == 0 || rc == PC_ENOTFOUND ? r : rc;
    }
    authd_login_state_free(st);
    free(name);
    authd_cookie_jar_release(&jar);
    return rc;
}
