/*
 * jwt.c - JWKS documents into PEM keys, and ID / bearer token verification.
 *
 * libjwt 1.10.2 trusts the token's "alg" header and decodes without verifying when given no
 * key (docs/design.md §5); it also refuses any "typ" but JWT (RFC 9068 access tokens say at+jwt)
 * and has no PS*. So the key is chosen here by "kid", the algorithm is checked against the
 * key type, and the signature is verified with OpenSSL's EVP_DigestVerify on that key; the
 * claims are checked here as well.
 */
#include "authd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "portcullis/b64.h"
#include "portcullis/crypto.h"
#include "portcullis/json.h"

#define MAX_JWKS (1024 * 1024)
#define MIN_RSA_BITS 2048

/* ---- JWK -> PEM ---- */

static BIGNUM *
b64_bn(const json_t *jwk, const char *key, size_t want_len)
{
    const char *s = json_string_value(json_object_get(jwk, key));
    unsigned char *raw = NULL;
    size_t len = 0;
    BIGNUM *bn = NULL;

    if (s == NULL || pc_b64url_decode(s, strlen(s), &raw, &len) != 0)
        return NULL;
    if (len > 0 && (want_len == 0 || len == want_len))
        bn = BN_bin2bn(raw, (int)len, NULL);
    free(raw);
    return bn;
}

static char *
pkey_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *pem = NULL;
    long len;

    if (bio != NULL && PEM_write_bio_PUBKEY(bio, pkey) == 1 &&
        (len = BIO_get_mem_data(bio, &data)) > 0)
        pem = pc_xstrndup(data, (size_t)len);
    BIO_free(bio);
    return pem;
}

static EVP_PKEY *
pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;

    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *
rsa_key(const json_t *jwk)
{
    BIGNUM *n = b64_bn(jwk, "n", 0), *e = b64_bn(jwk, "e", 0);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;

    /* e = 1 would make the signature the padded digest itself: anyone could sign. */
    if (n == NULL || e == NULL || bld == NULL || BN_num_bits(n) < MIN_RSA_BITS ||
        BN_num_bits(n) > 16384 || !BN_is_odd(e) || BN_num_bits(e) < 2 || BN_num_bits(e) > 64)
        goto out;
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        goto out;
    pkey = pkey_fromdata("RSA", bld);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

static EVP_PKEY *
ec_key(const json_t *jwk, const char *group, size_t coord_len)
{
    const char *xs = json_string_value(json_object_get(jwk, "x"));
    const char *ys = json_string_value(json_object_get(jwk, "y"));
    unsigned char *x = NULL, *y = NULL, point[1 + 2 * 66];
    size_t xlen = 0, ylen = 0;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;

    if (xs == NULL || ys == NULL || pc_b64url_decode(xs, strlen(xs), &x, &xlen) != 0 ||
        pc_b64url_decode(ys, strlen(ys), &y, &ylen) != 0 || xlen != coord_len || ylen != coord_len)
        goto out;
    point[0] = 0x04;
    memcpy(point + 1, x, coord_len);
    memcpy(point + 1 + coord_len, y, coord_len);
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * coord_len))
        goto out;
    pkey = pkey_fromdata("EC", bld);
out:
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return pkey;
}

/* Converts one JWK; false when it is skipped (encryption key, unsupported, malformed). */
static bool
parse_jwk(const json_t *jwk, struct authd_jwk *out)
{
    const char *kty = pc_json_str(jwk, "kty"), *use = pc_json_str(jwk, "use");
    const char *crv = pc_json_str(jwk, "crv"), *kid = pc_json_str(jwk, "kid");
    const char *alg = pc_json_str(jwk, "alg");

    EVP_PKEY *pkey = NULL;

    memset(out, 0, sizeof(*out));
    if (kty == NULL || (use != NULL && strcmp(use, "sig") != 0))
        return false;
    if (strcmp(kty, "RSA") == 0) {
        out->type = AUTHD_KEY_RSA;
        pkey = rsa_key(jwk);
    } else if (strcmp(kty, "EC") == 0 && crv != NULL && strcmp(crv, "P-256") == 0) {
        out->type = AUTHD_KEY_EC_P256;
        pkey = ec_key(jwk, "prime256v1", 32);
    } else if (strcmp(kty, "EC") == 0 && crv != NULL && strcmp(crv, "P-384") == 0) {
        out->type = AUTHD_KEY_EC_P384;
        pkey = ec_key(jwk, "secp384r1", 48);
    }
    if (pkey == NULL || (out->pem = pkey_pem(pkey)) == NULL) {
        EVP_PKEY_free(pkey);
        return false;
    }
    out->pkey = pkey;
    out->kid = kid ? pc_xstrdup(kid) : NULL;
    out->alg = alg ? pc_xstrdup(alg) : NULL;
    return true;
}

int
authd_jwks_parse(const char *json, size_t len, struct authd_jwks **out)
{
    json_t *doc, *keys, *jwk;
    struct authd_jwks *ks;
    size_t i;

    *out = NULL;
    if (len > MAX_JWKS)
        return PC_ETOOBIG;
    doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        json_decref(doc);
        return PC_EPARSE;
    }
    ks = pc_xcalloc(1, sizeof(*ks));
    ks->keys = pc_xcalloc(json_array_size(keys) + 1, sizeof(*ks->keys));
    json_array_foreach(keys, i, jwk)
    {
        if (json_is_object(jwk) && parse_jwk(jwk, &ks->keys[ks->n]))
            ks->n++;
    }
    json_decref(doc);
    *out = ks;
    return 0;
}

void
authd_jwks_free(struct authd_jwks *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n; i++) {
        free(ks->keys[i].kid);
        free(ks->keys[i].alg);
        free(ks->keys[i].pem);
        EVP_PKEY_free(ks->keys[i].pkey);
    }
    free(ks->keys);
    free(ks);
}

const struct authd_jwk *
authd_jwks_find(const struct authd_jwks *ks, const char *kid)
{
    if (ks == NULL || kid == NULL)
        return NULL;
    for (size_t i = 0; i < ks->n; i++)
        if (ks->keys[i].kid != NULL && strcmp(ks->keys[i].kid, kid) == 0)
            return &ks->keys[i];
    return NULL;
}

/* ---- token verification ---- */

static bool
is_b64url(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];

        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

static json_t *
decode_part(const char *s, size_t n)
{
    unsigned char *raw = NULL;
    size_t len = 0;
    json_t *j;

    if (n == 0 || !is_b64url(s, n) || pc_b64url_decode(s, n, &raw, &len) != 0)
        return NULL;
    j = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Splits a compact JWS and decodes its header and payload (both new). */
static int
split_token(const char *token, json_t **header, json_t **payload)
{
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    size_t siglen;

    if (d2 == NULL || strchr(d2 + 1, '.') != NULL)
        return PC_EPARSE;
    siglen = strlen(d2 + 1);
    if (siglen == 0 || !is_b64url(d2 + 1, siglen))
        return PC_EPARSE;
    *header = decode_part(token, (size_t)(d1 - token));
    *payload = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (*header == NULL || *payload == NULL) {
        json_decref(*header);
        json_decref(*payload);
        *header = *payload = NULL;
        return PC_EPARSE;
    }
    return 0;
}

/* How a header "alg" is verified on a key type. */
struct alg_spec {
    const char *name;
    enum authd_key_type type;
    const char *md;
    bool pss;
    int ec_len; /* bytes of r and of s; 0 for RSA */
};

static const struct alg_spec algs[] = {
    {"RS256", AUTHD_KEY_RSA, "SHA256", false, 0},
    {"RS384", AUTHD_KEY_RSA, "SHA384", false, 0},
    {"RS512", AUTHD_KEY_RSA, "SHA512", false, 0},
    {"PS256", AUTHD_KEY_RSA, "SHA256", true, 0},
    {"PS384", AUTHD_KEY_RSA, "SHA384", true, 0},
    {"PS512", AUTHD_KEY_RSA, "SHA512", true, 0},
    {"ES256", AUTHD_KEY_EC_P256, "SHA256", false, 32},
    {"ES384", AUTHD_KEY_EC_P384, "SHA384", false, 48},
};

/*
 * Header parameters that change how a JWS must be read. authd implements no extension, so a
 * "crit" of any form makes the token invalid (RFC 7515 §4.1.11: listed extensions must be
 * understood; an empty list is not allowed either), and "b64" (RFC 7797: the payload is not
 * base64url, signed as is) is refused even without "crit". Keys are taken from the issuer's
 * JWKS by "kid" only: "jwk", "jku", "x5u", "x5c" are never read.
 */
static bool
header_supported(const json_t *header)
{
    return json_object_get(header, "crit") == NULL && json_object_get(header, "b64") == NULL;
}

/* The verification recipe for alg on key k, or NULL when not allowed ("none", HS*, ...). */
static const struct alg_spec *
allowed_alg(const struct authd_jwk *k, const char *alg)
{
    if (alg == NULL || (k->alg != NULL && strcmp(k->alg, alg) != 0))
        return NULL;
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcmp(algs[i].name, alg) == 0 && algs[i].type == k->type)
            return &algs[i];
    return NULL;
}

/* JWS ECDSA signatures are r||s; OpenSSL wants DER. Returns new DER bytes or NULL. */
static unsigned char *
ecdsa_der(const unsigned char *raw, size_t rawlen, int ec_len, size_t *derlen)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r, *s;
    unsigned char *der = NULL;
    int n;

    if (sig == NULL || rawlen != (size_t)ec_len * 2) {
        ECDSA_SIG_free(sig);
        return NULL;
    }
    r = BN_bin2bn(raw, ec_len, NULL);
    s = BN_bin2bn(raw + ec_len, ec_len, NULL);
    if (r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
    } else if ((n = i2d_ECDSA_SIG(sig, &der)) > 0) {
        *derlen = (size_t)n;
    }
    ECDSA_SIG_free(sig);
    return der;
}

static int
digest_verify(const struct alg_spec *a, EVP_PKEY *pkey, const char *input, size_t inlen,
              const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = 0;

    if (ctx != NULL && EVP_DigestVerifyInit_ex(ctx, &pctx, a->md, NULL, NULL, pkey, NULL) == 1 &&
        (!a->pss || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1)))
        ok = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)input, inlen) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) /* a forged signature is not an error of this thread's other OpenSSL work */
        ERR_clear_error();
    return ok ? 0 : PC_EAUTH;
}

/* Verifies the signature of token with key k, only ever with a key and an allowed algorithm. */
static int
verify_signature(const char *token, const struct authd_jwk *k, const struct alg_spec *a)
{
    const char *dot = strrchr(token, '.');
    unsigned char *sig = NULL, *der = NULL;
    size_t siglen = 0, derlen = 0;
    int rc = PC_EAUTH;

    if (k->pkey == NULL || a == NULL || dot == NULL ||
        pc_b64url_decode(dot + 1, strlen(dot + 1), &sig, &siglen) != 0)
        return PC_EAUTH;
    if (a->ec_len > 0) {
        if ((der = ecdsa_der(sig, siglen, a->ec_len, &derlen)) != NULL)
            rc = digest_verify(a, k->pkey, token, (size_t)(dot - token), der, derlen);
    } else {
        rc = digest_verify(a, k->pkey, token, (size_t)(dot - token), sig, siglen);
    }
    OPENSSL_free(der);
    free(sig);
    return rc;
}

static bool
aud_has(const json_t *aud, const char *want)
{
    const json_t *v;
    size_t i;

    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return true;
    }
    return false;
}

static int
check_audience(const json_t *claims, const struct authd_jwt_expect *e, const char **why)
{
    const json_t *aud = json_object_get(claims, "aud"), *azp = json_object_get(claims, "azp");
    const struct authd_strlist *auds = e->audiences;

    if (auds != NULL && auds->n > 0) {
        for (size_t i = 0; i < auds->n; i++)
            if (aud_has(aud, auds->v[i]))
                return 0;
        *why = "aud mismatch";
        return PC_EINVAL;
    }
    if (e->client_id == NULL || !aud_has(aud, e->client_id)) {
        *why = "aud mismatch";
        return PC_EINVAL;
    }
    if (auds == NULL && azp != NULL &&
        (!json_is_string(azp) || strcmp(json_string_value(azp), e->client_id) != 0)) {
        *why = "azp mismatch";
        return PC_EINVAL;
    }
    return 0;
}

static int
check_times(const json_t *claims, const struct authd_jwt_expect *e, const char **why)
{
    const json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    const json_t *iat = json_object_get(claims, "iat");
    double leeway = (double)(e->leeway > 0 ? e->leeway : AUTHD_JWT_LEEWAY), now = (double)e->now;

    if (!json_is_number(exp) || (nbf != NULL && !json_is_number(nbf)) ||
        (iat != NULL && !json_is_number(iat))) {
        *why = "exp missing or a time claim not a number";
        return PC_EINVAL;
    }
    if (json_number_value(exp) + leeway <= now) {
        *why = "expired";
        return PC_EEXPIRED;
    }
    if (nbf != NULL && json_number_value(nbf) - leeway > now) {
        *why = "nbf in the future";
        return PC_EINVAL;
    }
    if (iat != NULL && json_number_value(iat) - leeway > now) {
        *why = "iat in the future";
        return PC_EINVAL;
    }
    return 0;
}

static int
check_claims(const json_t *claims, const struct authd_jwt_expect *e, const char **why)
{
    const char *iss = pc_json_str(claims, "iss"), *nonce = pc_json_str(claims, "nonce");
    int rc;

    if (e->issuer == NULL || iss == NULL || strcmp(iss, e->issuer) != 0) {
        *why = "iss mismatch";
        return PC_EINVAL;
    }
    if ((rc = check_audience(claims, e, why)) != 0 || (rc = check_times(claims, e, why)) != 0)
        return rc;
    if (e->nonce != NULL && (nonce == NULL || strlen(nonce) != strlen(e->nonce) ||
                             !pc_memeq(nonce, e->nonce, strlen(nonce)))) {
        *why = "nonce mismatch";
        return PC_EINVAL;
    }
    return 0;
}

int
authd_jwt_verify(const struct authd_jwks *ks, const char *token,
                 const struct authd_jwt_expect *expect, json_t **claims, const char **why)
{
    json_t *header = NULL, *payload = NULL;
    const struct authd_jwk *k;
    const struct alg_spec *a;
    const char *dummy;
    int rc;

    why = why ? why : &dummy;
    *claims = NULL;
    *why = "ok";
    if (token == NULL || strnlen(token, AUTHD_MAX_TOKEN + 1) > AUTHD_MAX_TOKEN) {
        *why = token ? "token too big" : "no token";
        return token ? PC_ETOOBIG : PC_EPARSE;
    }
    if ((rc = split_token(token, &header, &payload)) != 0) {
        *why = "malformed token";
        return rc;
    }
    if (!header_supported(header)) {
        *why = "crit or b64 header not supported";
        rc = PC_EAUTH;
    } else if ((k = authd_jwks_find(ks, pc_json_str(header, "kid"))) == NULL) {
        *why = "unknown kid";
        rc = PC_ENOTFOUND;
    } else if ((a = allowed_alg(k, pc_json_str(header, "alg"))) == NULL) {
        *why = "alg not allowed for key";
        rc = PC_EAUTH;
    } else if (verify_signature(token, k, a) != 0) {
        *why = "bad signature";
        rc = PC_EAUTH;
    } else if ((rc = check_claims(payload, expect, why)) == 0) {
        *claims = payload;
        payload = NULL;
    }
    json_decref(header);
    json_decref(payload);
    return rc;
}

/* ---- identity ---- */

/* A scalar claim as a string (numbers and bools rendered), new; NULL for other types. */
static char *
claim_string(const json_t *v)
{
    if (json_is_string(v))
        return pc_xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return pc_xasprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return pc_xasprintf("%g", json_real_value(v));
    if (json_is_boolean(v))
        return pc_xstrdup(json_is_true(v) ? "true" : "false");
    return NULL;
}

/* Fills c from claim value v: a scalar, or an array's string items. False when neither. */
static bool
extra_claim(struct authd_claim *c, const json_t *v)
{
    const json_t *e;
    size_t i;

    if (json_is_array(v)) {
        json_array_foreach(v, i, e)
        {
            if (json_is_string(e) && c->items.n < 1024)
                authd_strlist_add(&c->items, json_string_value(e));
        }
        return true;
    }
    return (c->value = claim_string(v)) != NULL;
}

static char *
path_string(const json_t *claims, const char *path)
{
    const json_t *v = path ? pc_json_path(claims, path) : NULL;

    return json_is_string(v) ? pc_xstrdup(json_string_value(v)) : NULL;
}

static void
add_groups(struct authd_identity *id, const json_t *v)
{
    const json_t *e;
    size_t i;

    if (json_is_string(v)) {
        authd_strlist_add(&id->groups, json_string_value(v));
        return;
    }
    json_array_foreach(v, i, e)
    {
        if (json_is_string(e) && id->groups.n < 1024)
            authd_strlist_add(&id->groups, json_string_value(e));
    }
}

/* OIDC Core §5.1: a boolean; a few IdPs send the string "true". */
static bool
email_verified(const json_t *claims)
{
    const json_t *v = json_object_get(claims, "email_verified");
    const char *s = json_string_value(v);

    return json_is_true(v) || (s != NULL && strcmp(s, "true") == 0);
}

static bool
is_core_claim(const char *claim)
{
    return strcmp(claim, "sub") == 0 || strcmp(claim, "email") == 0 ||
           strcmp(claim, "preferred_username") == 0 || strcmp(claim, "groups") == 0;
}

int
authd_identity_from_claims(const struct authd_host *host, const json_t *claims,
                           struct authd_identity *id)
{
    memset(id, 0, sizeof(*id));
    if ((id->sub = path_string(claims, "sub")) == NULL)
        return PC_EINVAL;
    id->email = path_string(claims, host->oidc.claim_email);
    id->email_verified = email_verified(claims);
    id->preferred_username = path_string(claims, host->oidc.claim_username);
    if (host->oidc.claim_groups != NULL)
        add_groups(id, pc_json_path(claims, host->oidc.claim_groups));
    id->extra = pc_xcalloc(host->nupstream_headers + 1, sizeof(*id->extra));
    for (size_t i = 0; i < host->nupstream_headers; i++) {
        const char *claim = host->upstream_headers[i].claim;
        struct authd_claim *c = &id->extra[id->nextra];

        if (is_core_claim(claim) || !extra_claim(c, pc_json_path(claims, claim)))
            continue;
        c->name = pc_xstrdup(claim);
        id->nextra++;
    }
    return 0;
}
