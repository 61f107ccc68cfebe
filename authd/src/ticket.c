/*
 * ticket.c - sessions kept in Redis: the ticket cookie that names one, and the sealed value
 * Redis holds for it. No I/O.
 *
 * A ticket is a random id (16 bytes) and a random secret (32 bytes); the cookie value is
 * "t1." + base64url(id || secret), 67 characters. Redis holds, under a key named by a hash of
 * the whole ticket (key_name), version || nonce || AES-256-GCM(packed session) with the key
 *     HKDF-SHA256(ikm = secret, salt = keys->redis[i], info = "portcullis-authd redis session
 *                 v1" || id)
 * and the authenticated data version || id || cookie name. Redis never sees the secret, so a
 * reader of Redis can neither read a session nor turn one into a cookie; the salt comes from
 * authd's cookie secret, so a writer of Redis cannot mint a session for a ticket of its own.
 */
#include "authd.h"

#include <stdlib.h>
#include <string.h>

#include "portcullis/b64.h"
#include "portcullis/crypto.h"

#define BLOB_VERSION 2 /* 1 sealed the session's JSON; its values no longer open */
#define TICKET_PREFIX "t1."
#define TICKET_B64_LEN 64 /* base64url of 48 bytes: no padding, always canonical */

int
authd_ticket_new(struct authd_ticket *t)
{
    if (pc_random_bytes(t->id, sizeof(t->id)) != 0 ||
        pc_random_bytes(t->secret, sizeof(t->secret)) != 0)
        return PC_EIO;
    return 0;
}

void
authd_ticket_wipe(struct authd_ticket *t)
{
    pc_cleanse(t, sizeof(*t));
}

static bool
blank(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Read pair by pair in place, not through the cookie jar: a header padded past the jar's
 * bounds (AUTHD_MAX_COOKIES, AUTHD_MAX_COOKIE_HEADER; a sibling subdomain can set that many
 * cookies) gave the jar no ticket, and a sign-out deleted nothing while its page said it was
 * done. libwebsockets bounds the header itself; nothing is copied or allocated.
 */
size_t
authd_ticket_find_all(const char *name, const char *header, struct authd_ticket *out, size_t max,
                      bool *more)
{
    const char *p = header;
    size_t nlen = strlen(name), n = 0;

    *more = false;
    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, ';'), *eq, *v, *ve;
        struct authd_ticket t;

        if (end == NULL)
            end = p + strlen(p);
        while (p < end && blank(*p))
            p++;
        eq = memchr(p, '=', (size_t)(end - p));
        if (eq != NULL) {
            const char *ne = eq;

            while (ne > p && blank(ne[-1]))
                ne--;
            for (v = eq + 1; v < end && blank(*v); v++)
                ;
            for (ve = end; ve > v && blank(ve[-1]); ve--)
                ;
            if (ve - v >= 2 && *v == '"' && ve[-1] == '"') {
                v++;
                ve--;
            }
            if ((size_t)(ne - p) == nlen && memcmp(p, name, nlen) == 0 &&
                authd_ticket_parse(v, (size_t)(ve - v), &t) == 0) {
                if (n < max)
                    out[n++] = t;
                else
                    *more = true;
                authd_ticket_wipe(&t);
            }
        }
        p = *end ? end + 1 : end;
    }
    return n;
}

char *
authd_ticket_format(const struct authd_ticket *t)
{
    uint8_t raw[AUTHD_TICKET_ID_LEN + AUTHD_TICKET_SECRET_LEN];
    char *b64, *out;

    memcpy(raw, t->id, AUTHD_TICKET_ID_LEN);
    memcpy(raw + AUTHD_TICKET_ID_LEN, t->secret, AUTHD_TICKET_SECRET_LEN);
    b64 = pc_b64url_encode(raw, sizeof(raw));
    out = pc_xasprintf("%s%s", TICKET_PREFIX, b64);
    pc_cleanse(raw, sizeof(raw));
    pc_free_secret(b64);
    return out;
}

/* One of base64url's 64 characters (no padding). */
static bool
b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int
authd_ticket_parse(const char *value, size_t len, struct authd_ticket *t)
{
    const size_t plen = sizeof(TICKET_PREFIX) - 1;
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    int rc = PC_EPARSE;

    memset(t, 0, sizeof(*t));
    if (len != plen + TICKET_B64_LEN || memcmp(value, TICKET_PREFIX, plen) != 0)
        return PC_EPARSE;
    for (size_t i = plen; i < len; i++)
        if (!b64url_char(value[i]))
            return PC_EPARSE;
    if (pc_b64url_decode(value + plen, TICKET_B64_LEN, &raw, &rawlen) == 0 &&
        rawlen == AUTHD_TICKET_ID_LEN + AUTHD_TICKET_SECRET_LEN) {
        memcpy(t->id, raw, AUTHD_TICKET_ID_LEN);
        memcpy(t->secret, raw + AUTHD_TICKET_ID_LEN, AUTHD_TICKET_SECRET_LEN);
        rc = 0;
    }
    if (raw != NULL)
        pc_cleanse(raw, rawlen);
    free(raw);
    return rc;
}

/*
 * "<prefix><kind><b64url(SHA-256(label || id || secret)[0..18))>": a key name only the holder
 * of the whole ticket can compute, so a sign-out (DEL) needs the secret as much as a read, and
 * the names Redis lists give away neither half.
 */
static char *
key_name(const char *prefix, const char *kind, const struct authd_ticket *t)
{
    static const char label[] = "portcullis-authd redis key v1";
    uint8_t buf[sizeof(label) - 1 + sizeof(t->id) + sizeof(t->secret)], digest[32];
    char *b64, *out;

    memcpy(buf, label, sizeof(label) - 1);
    memcpy(buf + sizeof(label) - 1, t->id, sizeof(t->id));
    memcpy(buf + sizeof(label) - 1 + sizeof(t->id), t->secret, sizeof(t->secret));
    pc_sha256(buf, sizeof(buf), digest);
    b64 = pc_b64url_encode(digest, 18);
    out = pc_xasprintf("%s%s%s", prefix, kind, b64);
    pc_cleanse(buf, sizeof(buf));
    free(b64);
    return out;
}

char *
authd_ticket_redis_key(const char *prefix, const struct authd_ticket *t)
{
    return key_name(prefix, "s:", t);
}

char *
authd_ticket_lock_key(const char *prefix, const struct authd_ticket *t)
{
    return key_name(prefix, "l:", t);
}

/* The AEAD key of t under the salt of cookie secret i. */
static int
derive(const struct authd_keys *k, size_t i, const struct authd_ticket *t, uint8_t out[32])
{
    static const char info[] = "portcullis-authd redis session v1";
    uint8_t buf[sizeof(info) - 1 + AUTHD_TICKET_ID_LEN];
    int rc;

    memcpy(buf, info, sizeof(info) - 1);
    memcpy(buf + sizeof(info) - 1, t->id, AUTHD_TICKET_ID_LEN);
    rc = pc_hkdf_sha256(t->secret, sizeof(t->secret), k->redis[i], sizeof(k->redis[i]), buf,
                        sizeof(buf), out, 32);
    return rc == 0 ? 0 : PC_EIO;
}

/* New authenticated data: version || id || cookie name. */
static uint8_t *
build_aad(const struct authd_host *host, const struct authd_ticket *t, size_t *len)
{
    size_t n = strlen(host->session.cookie_name);
    uint8_t *aad = pc_xmalloc(1 + AUTHD_TICKET_ID_LEN + n);

    aad[0] = BLOB_VERSION;
    memcpy(aad + 1, t->id, AUTHD_TICKET_ID_LEN);
    memcpy(aad + 1 + AUTHD_TICKET_ID_LEN, host->session.cookie_name, n);
    *len = 1 + AUTHD_TICKET_ID_LEN + n;
    return aad;
}

int
authd_ticket_seal(const struct authd_keys *k, const struct authd_host *host,
                  const struct authd_ticket *t, const struct authd_session *s, uint8_t **blob,
                  size_t *len)
{
    uint8_t key[32], *pt = NULL, *raw = NULL, *aad = NULL;
    size_t ptlen = 0, rawlen, aadlen;
    int rc = 0;

    *blob = NULL;
    *len = 0;
    if (k->n == 0)
        return PC_EINVAL;
    pt = authd_session_pack(s, &ptlen);
    rawlen = 1 + PC_AEAD_NONCE_LEN + ptlen + PC_AEAD_TAG_LEN;
    if (rawlen > AUTHD_MAX_REDIS_BLOB) {
        rc = PC_ETOOBIG;
        goto out;
    }
    raw = pc_xmalloc(rawlen);
    aad = build_aad(host, t, &aadlen);
    raw[0] = BLOB_VERSION;
    if ((rc = derive(k, 0, t, key)) != 0 || pc_random_bytes(raw + 1, PC_AEAD_NONCE_LEN) != 0 ||
        pc_aead_seal(key, raw + 1, aad, aadlen, pt, ptlen, raw + 1 + PC_AEAD_NONCE_LEN) != 0) {
        rc = PC_EIO;
        goto out;
    }
    *blob = raw;
    *len = rawlen;
    raw = NULL;
out:
    pc_cleanse(key, sizeof(key));
    pc_cleanse(pt, ptlen);
    free(pt);
    free(raw);
    free(aad);
    return rc;
}

/* Decrypts blob with any key into *pt (new, *ptlen bytes). 0 or PC_EAUTH. */
static int
open_blob(const struct authd_keys *k, const struct authd_host *host, const struct authd_ticket *t,
          const uint8_t *blob, size_t len, uint8_t **pt, size_t *ptlen)
{
    size_t ctlen = len - 1 - PC_AEAD_NONCE_LEN, aadlen;
    uint8_t key[32], *aad = build_aad(host, t, &aadlen);
    uint8_t *out = pc_xmalloc(ctlen - PC_AEAD_TAG_LEN + 1);
    int rc = PC_EAUTH;

    for (size_t i = 0; i < k->n && rc != 0; i++)
        if (derive(k, i, t, key) == 0 &&
            pc_aead_open(key, blob + 1, aad, aadlen, blob + 1 + PC_AEAD_NONCE_LEN, ctlen, out) == 0)
            rc = 0;
    pc_cleanse(key, sizeof(key));
    free(aad);
    if (rc == 0) {
        *pt = out;
        *ptlen = ctlen - PC_AEAD_TAG_LEN;
        return 0;
    }
    free(out); /* pc_aead_open cleansed it */
    return rc;
}

int
authd_ticket_open(const struct authd_keys *k, const struct authd_host *host,
                  const struct authd_ticket *t, const void *blob, size_t len, int64_t now,
                  struct authd_session **out)
{
    const uint8_t *b = blob;
    struct authd_session *s = NULL;
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    int rc;

    *out = NULL;
    if (len > AUTHD_MAX_REDIS_BLOB)
        return PC_ETOOBIG;
    if (len < 1 + PC_AEAD_NONCE_LEN + PC_AEAD_TAG_LEN)
        return PC_EAUTH;
    /* A value of another version, or one that opens but does not unpack, is authd's for this
     * ticket: the user's, refused, never "someone else's" that a later ticket may pass over. */
    if (b[0] != BLOB_VERSION)
        return PC_EPARSE;
    if ((rc = open_blob(k, host, t, b, len, &pt, &ptlen)) != 0)
        goto out;
    if (authd_session_unpack(pt, ptlen, &s) != 0) {
        rc = PC_EPARSE;
        goto out;
    }
    if ((rc = authd_session_accept(host, s, now)) == 0) {
        *out = s;
        s = NULL;
    }
out:
    authd_session_free(s);
    if (pt != NULL)
        pc_cleanse(pt, ptlen);
    free(pt);
    return rc;
}
