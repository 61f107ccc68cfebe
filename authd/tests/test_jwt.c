/*
 * test_jwt.c - JWKS parsing and the token verification matrix. Keys are generated here with
 * OpenSSL and tokens are signed here with OpenSSL directly, so the verifier is checked
 * against an independent signer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "authd.h"
#include "portcullis/b64.h"

#define NOW 1700000000
#define ISS "https://idp.example.com/realms/main"

static EVP_PKEY *rsa_key, *rsa_other, *ec_key, *ec384_key;
static struct authd_jwks *jwks;
static char *rsa_pem; /* public key PEM, the HS256 confusion "secret" */

static char *
b64_bn_param(EVP_PKEY *k, const char *name)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    int n;
    char *out;

    assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
    n = BN_bn2bin(bn, buf);
    out = pc_b64url_encode(buf, (size_t)n);
    BN_free(bn);
    return out;
}

static char *
b64_coord(EVP_PKEY *k, const char *name, int len)
{
    BIGNUM *bn = NULL;
    unsigned char buf[66];
    char *out;

    assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
    assert_int_equal(BN_bn2binpad(bn, buf, len), len);
    out = pc_b64url_encode(buf, (size_t)len);
    BN_free(bn);
    return out;
}

static json_t *
rsa_jwk(EVP_PKEY *k, const char *kid)
{
    char *n = b64_bn_param(k, OSSL_PKEY_PARAM_RSA_N), *e = b64_bn_param(k, OSSL_PKEY_PARAM_RSA_E);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", kid, "use", "sig", "n",
                          n, "e", e);

    free(n);
    free(e);
    return j;
}

static json_t *
ec_jwk(EVP_PKEY *k, const char *kid, const char *crv, int len)
{
    char *x = b64_coord(k, OSSL_PKEY_PARAM_EC_PUB_X, len);
    char *y = b64_coord(k, OSSL_PKEY_PARAM_EC_PUB_Y, len);
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "kid", kid, "crv", crv, "x", x, "y", y);

    free(x);
    free(y);
    return j;
}

static int
setup(void **state)
{
    json_t *doc = json_pack("{s:[]}", "keys"), *keys = json_object_get(doc, "keys"), *enc;
    BIO *bio = BIO_new(BIO_s_mem());
    char *text, *data;
    long len;

    (void)state;
    rsa_key = EVP_RSA_gen(2048);
    rsa_other = EVP_RSA_gen(2048);
    ec_key = EVP_EC_gen("P-256");
    ec384_key = EVP_EC_gen("P-384");
    json_array_append_new(keys, rsa_jwk(rsa_key, "rsa1"));
    json_array_append_new(keys, ec_jwk(ec_key, "ec1", "P-256", 32));
    json_array_append_new(keys, ec_jwk(ec384_key, "ec384", "P-384", 48));
    enc = rsa_jwk(rsa_other, "enc1");
    json_object_set_new(enc, "use", json_string("enc"));
    json_array_append_new(keys, enc);
    enc = rsa_jwk(rsa_key, "rsa384only");
    json_object_set_new(enc, "alg", json_string("RS384"));
    json_array_append_new(keys, enc);
    json_array_append_new(
        keys, json_pack("{s:s, s:s, s:s}", "kty", "oct", "kid", "hmac", "k", "c2VjcmV0"));
    json_array_append_new(keys, json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "kid", "bad", "crv",
                                          "P-256", "x", "AAAA"));
    text = json_dumps(doc, 0);
    assert_int_equal(authd_jwks_parse(text, strlen(text), &jwks), 0);
    free(text);
    json_decref(doc);
    PEM_write_bio_PUBKEY(bio, rsa_key);
    len = BIO_get_mem_data(bio, &data);
    rsa_pem = strndup(data, (size_t)len);
    BIO_free(bio);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    authd_jwks_free(jwks);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(ec384_key);
    free(rsa_pem);
    return 0;
}

/* JWS signature of input with key for alg (RS*, ES* as raw r||s, HS256 with rsa_pem). */
static char *
sign(const char *alg, EVP_PKEY *key, const char *input)
{
    unsigned char sig[1024], *p;
    size_t siglen = sizeof(sig);
    const EVP_MD *md = strstr(alg, "384") ? EVP_sha384() : EVP_sha256();
    EVP_MD_CTX *ctx;
    EVP_PKEY_CTX *pctx = NULL;

    if (strcmp(alg, "none") == 0)
        return strdup("AAAA");
    if (strcmp(alg, "HS256") == 0) {
        unsigned int n = 0;

        HMAC(EVP_sha256(), rsa_pem, (int)strlen(rsa_pem), (const unsigned char *)input,
             strlen(input), sig, &n);
        return pc_b64url_encode(sig, n);
    }
    ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(ctx, &pctx, md, NULL, key), 1);
    if (alg[0] == 'P') {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input, strlen(input)),
                     1);
    EVP_MD_CTX_free(ctx);
    if (alg[0] == 'E') {
        int len = strstr(alg, "384") ? 48 : 32;
        unsigned char raw[96];
        const unsigned char *q = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)siglen);

        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, len);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + len, len);
        ECDSA_SIG_free(es);
        return pc_b64url_encode(raw, (size_t)len * 2);
    }
    p = sig;
    return pc_b64url_encode(p, siglen);
}

/* header fields: alg, kid (NULL: none), typ; claims as a JSON text. */
static char *
make_token(const char *alg, const char *kid, EVP_PKEY *key, const char *claims)
{
    json_t *h = json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT");
    char *htext, *hb, *cb, *input, *sig, *tok;

    if (kid != NULL)
        json_object_set_new(h, "kid", json_string(kid));
    htext = json_dumps(h, JSON_COMPACT);
    hb = pc_b64url_encode(htext, strlen(htext));
    cb = pc_b64url_encode(claims, strlen(claims));
    input = pc_xasprintf("%s.%s", hb, cb);
    sig = sign(alg, key, input);
    tok = pc_xasprintf("%s.%s", input, sig);
    json_decref(h);
    free(htext);
    free(hb);
    free(cb);
    free(input);
    free(sig);
    return tok;
}

#define GOOD                                                                                       \
    "\"iss\":\"" ISS "\",\"sub\":\"u1\",\"aud\":\"app\",\"iat\":1700000000,"                       \
    "\"exp\":1700000300,\"nonce\":\"n1\""

/* GOOD claims updated with the override object (the payload must not repeat keys). */
static char *
merged(const char *override)
{
    json_t *base = json_loads("{" GOOD "}", 0, NULL), *o = json_loads(override, 0, NULL);
    char *text;

    assert_non_null(o);
    if (json_object_get(o, "replace_all") != NULL) {
        json_decref(base);
        base = json_incref(json_object_get(o, "replace_all"));
    } else {
        json_object_update(base, o);
    }
    text = json_dumps(base, JSON_COMPACT);
    json_decref(base);
    json_decref(o);
    return text;
}

static void
test_jwks_parse(void **state)
{
    struct authd_jwks *ks = NULL;

    (void)state;
    assert_int_equal(jwks->n, 4); /* rsa1, ec1, ec384, rsa384only; enc/oct/bad skipped */
    assert_non_null(authd_jwks_find(jwks, "rsa1"));
    assert_int_equal(authd_jwks_find(jwks, "ec1")->type, AUTHD_KEY_EC_P256);
    assert_int_equal(authd_jwks_find(jwks, "ec384")->type, AUTHD_KEY_EC_P384);
    assert_null(authd_jwks_find(jwks, "enc1"));
    assert_null(authd_jwks_find(jwks, "hmac"));
    assert_null(authd_jwks_find(jwks, NULL));
    assert_non_null(strstr(authd_jwks_find(jwks, "rsa1")->pem, "BEGIN PUBLIC KEY"));
    assert_int_equal(authd_jwks_parse("{\"keys\": 3}", 11, &ks), PC_EPARSE);
    assert_int_equal(authd_jwks_parse("[]", 2, &ks), PC_EPARSE);
    assert_int_equal(authd_jwks_parse("{\"keys\": []}", 12, &ks), 0);
    assert_int_equal(ks->n, 0);
    authd_jwks_free(ks);
}

static void
test_verify_matrix(void **state)
{
    static char *api_v[] = {"api"};
    static const struct authd_strlist api = {.v = api_v, .n = 1};
    static const struct authd_strlist none = {0};
    static const struct {
        const char *name, *alg, *kid;
        int key; /* 0 rsa, 1 rsa_other, 2 ec, 3 ec384 */
        const char *claims;
        const struct authd_strlist *audiences;
        int want;
        const char *why;
    } cases[] = {
        {"valid RS256", "RS256", "rsa1", 0, "{}", NULL, 0, "ok"},
        {"valid RS384", "RS384", "rsa1", 0, "{}", NULL, 0, "ok"},
        {"valid PS256", "PS256", "rsa1", 0, "{}", NULL, 0, "ok"},
        {"valid ES256", "ES256", "ec1", 2, "{}", NULL, 0, "ok"},
        {"valid ES384", "ES384", "ec384", 3, "{}", NULL, 0, "ok"},
        {"aud array", "RS256", "rsa1", 0, "{\"aud\":[\"x\",\"app\"],\"azp\":\"app\"}", NULL, 0,
         "ok"},
        {"exp within leeway", "RS256", "rsa1", 0, "{\"exp\":1699999950}", NULL, 0, "ok"},
        {"expired", "RS256", "rsa1", 0, "{\"exp\":1699999939}", NULL, PC_EEXPIRED, "expired"},
        {"no exp", "RS256", "rsa1", 0,
         "{\"replace_all\":{\"iss\":\"" ISS "\",\"sub\":\"u\","
         "\"aud\":\"app\",\"nonce\":\"n1\"}}",
         NULL, PC_EINVAL, NULL},
        {"nbf future", "RS256", "rsa1", 0, "{\"nbf\":1700000120}", NULL, PC_EINVAL,
         "nbf in the future"},
        {"iat future", "RS256", "rsa1", 0, "{\"iat\":1700000120}", NULL, PC_EINVAL,
         "iat in the future"},
        {"wrong iss", "RS256", "rsa1", 0, "{\"iss\":\"https://evil\"}", NULL, PC_EINVAL,
         "iss mismatch"},
        {"iss prefix", "RS256", "rsa1", 0, "{\"iss\":\"" ISS "/\"}", NULL, PC_EINVAL,
         "iss mismatch"},
        {"wrong aud", "RS256", "rsa1", 0, "{\"aud\":\"other\"}", NULL, PC_EINVAL, "aud mismatch"},
        {"azp mismatch", "RS256", "rsa1", 0, "{\"aud\":[\"app\"],\"azp\":\"other\"}", NULL,
         PC_EINVAL, "azp mismatch"},
        {"bad signature", "RS256", "rsa1", 1, "{}", NULL, PC_EAUTH, "bad signature"},
        {"alg none", "none", "rsa1", 0, "{}", NULL, PC_EAUTH, NULL},
        {"HS256 with RSA PEM", "HS256", "rsa1", 0, "{}", NULL, PC_EAUTH, NULL},
        {"unknown kid", "RS256", "rsa9", 0, "{}", NULL, PC_ENOTFOUND, "unknown kid"},
        {"no kid", "RS256", NULL, 0, "{}", NULL, PC_ENOTFOUND, "unknown kid"},
        {"enc key kid", "RS256", "enc1", 1, "{}", NULL, PC_ENOTFOUND, "unknown kid"},
        {"ES256 on RSA key", "ES256", "rsa1", 2, "{}", NULL, PC_EAUTH, "alg not allowed for key"},
        {"RS256 on EC key", "RS256", "ec1", 0, "{}", NULL, PC_EAUTH, NULL},
        {"ES384 on P-256", "ES384", "ec1", 3, "{}", NULL, PC_EAUTH, NULL},
        {"jwk alg pins RS384", "RS256", "rsa384only", 0, "{}", NULL, PC_EAUTH, NULL},
        {"jwk alg RS384 ok", "RS384", "rsa384only", 0, "{}", NULL, 0, "ok"},
        {"nonce mismatch", "RS256", "rsa1", 0, "{\"nonce\":\"n2\"}", NULL, PC_EINVAL,
         "nonce mismatch"},
        {"bearer aud", "RS256", "rsa1", 0, "{\"aud\":[\"api\"],\"azp\":\"svc\"}", &api, 0, "ok"},
        {"bearer wrong aud", "RS256", "rsa1", 0, "{\"aud\":\"app\"}", &api, PC_EINVAL,
         "aud mismatch"},
        {"bearer default aud", "RS256", "rsa1", 0, "{\"azp\":\"svc\"}", &none, 0, "ok"},
    };
    EVP_PKEY *keys[] = {rsa_key, rsa_other, ec_key, ec384_key};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = merged(cases[i].claims);
        char *tok = make_token(cases[i].alg, cases[i].kid, keys[cases[i].key], text);
        struct authd_jwt_expect e = {.issuer = ISS,
                                     .client_id = "app",
                                     .now = NOW,
                                     .audiences = cases[i].audiences,
                                     .nonce = cases[i].audiences ? NULL : "n1"};
        json_t *claims = NULL;
        const char *why = NULL;
        int rc = authd_jwt_verify(jwks, tok, &e, &claims, &why);

        if (rc != cases[i].want || (cases[i].why && strcmp(why, cases[i].why) != 0))
            fail_msg("%s: rc %d (%s), want %d (%s)", cases[i].name, rc, why, cases[i].want,
                     cases[i].why ? cases[i].why : "-");
        if (rc == 0)
            assert_string_equal(json_string_value(json_object_get(claims, "sub")), "u1");
        else
            assert_null(claims);
        json_decref(claims);
        free(tok);
        free(text);
    }
}

static void
test_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "..",
        "eyJhbGciOiJSUzI1NiJ9..sig",
        "!!.!!.!!",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.",
        "bm90IGpzb24.bm90IGpzb24.c2ln",
    };
    struct authd_jwt_expect e = {.issuer = ISS, .client_id = "app", .now = NOW};
    json_t *claims = NULL;
    char *big = calloc(1, AUTHD_MAX_TOKEN + 2);

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(authd_jwt_verify(jwks, bad[i], &e, &claims, NULL), PC_EPARSE);
    memset(big, 'a', AUTHD_MAX_TOKEN + 1);
    assert_int_equal(authd_jwt_verify(jwks, big, &e, &claims, NULL), PC_ETOOBIG);
    assert_int_equal(authd_jwt_verify(jwks, NULL, &e, &claims, NULL), PC_EPARSE);
    assert_int_equal(authd_jwt_verify(NULL, "a.b.c", &e, &claims, NULL), PC_EPARSE);
    free(big);
}

/* A JWT access token with typ at+jwt (RFC 9068) still verifies. */
static void
test_typ_at_jwt(void **state)
{
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "at+jwt", "kid", "rsa1");
    const char *claims = "{" GOOD "}";
    char *htext = json_dumps(h, JSON_COMPACT), *hb = pc_b64url_encode(htext, strlen(htext));
    char *cb = pc_b64url_encode(claims, strlen(claims)), *input = pc_xasprintf("%s.%s", hb, cb);
    char *sig = sign("RS256", rsa_key, input), *tok = pc_xasprintf("%s.%s", input, sig);
    struct authd_jwt_expect e = {.issuer = ISS, .client_id = "app", .now = NOW};
    json_t *out = NULL;
    const char *why = NULL;

    (void)state;
    assert_int_equal(authd_jwt_verify(jwks, tok, &e, &out, &why), 0);
    json_decref(out);
    free(tok);
    free(cb);
    free(input);
    free(sig);
    /* A payload that repeats a key is refused even when signed. */
    claims = "{\"sub\":\"u1\",\"sub\":\"admin\"," GOOD "}";
    cb = pc_b64url_encode(claims, strlen(claims));
    input = pc_xasprintf("%s.%s", hb, cb);
    sig = sign("RS256", rsa_key, input);
    tok = pc_xasprintf("%s.%s", input, sig);
    assert_int_equal(authd_jwt_verify(jwks, tok, &e, &out, &why), PC_EPARSE);
    json_decref(h);
    free(htext);
    free(hb);
    free(cb);
    free(input);
    free(sig);
    free(tok);
}

static void
test_identity(void **state)
{
    struct authd_host h = {0};
    struct authd_upstream_header hdrs[] = {
        {"X-User", "sub"}, {"X-Name", "name"}, {"X-Age", "age"}, {"X-Teams", "teams"}};
    struct authd_identity id;
    json_t *claims = json_loads("{\"sub\":\"u\",\"mail\":\"a@b\",\"name\":\"N\",\"age\":42,"
                                "\"teams\":[\"a,b\",\"c\",3],\"realm_access\":{\"roles\":[\"r1\","
                                "\"r2\",7]}}",
                                0, NULL);

    (void)state;
    h.oidc.claim_groups = "realm_access.roles";
    h.oidc.claim_email = "mail";
    h.oidc.claim_username = "preferred_username";
    h.upstream_headers = hdrs;
    h.nupstream_headers = 4;
    assert_int_equal(authd_identity_from_claims(&h, claims, &id), 0);
    assert_string_equal(id.sub, "u");
    assert_string_equal(id.email, "a@b");
    assert_false(id.email_verified); /* no email_verified claim */
    assert_null(id.preferred_username);
    assert_int_equal(id.groups.n, 2);
    assert_string_equal(id.groups.v[1], "r2");
    assert_int_equal(id.nextra, 3);
    assert_string_equal(id.extra[0].value, "N");
    assert_string_equal(id.extra[1].value, "42");
    /* An array stays a list of its string items, so a "," inside one is not a separator. */
    assert_null(id.extra[2].value);
    assert_int_equal(id.extra[2].items.n, 2);
    assert_string_equal(id.extra[2].items.v[0], "a,b");
    {
        char *v = authd_identity_claim(&id, "teams");

        assert_string_equal(v, "a%2Cb,c");
        free(v);
    }
    authd_identity_release(&id);
    json_object_set_new(claims, "realm_access", json_pack("{s:s}", "roles", "solo"));
    assert_int_equal(authd_identity_from_claims(&h, claims, &id), 0);
    assert_int_equal(id.groups.n, 1);
    assert_string_equal(id.groups.v[0], "solo");
    authd_identity_release(&id);
    {
        /* OIDC Core §5.1: only a true email_verified counts (a few IdPs send "true"). */
        static const struct {
            const char *json;
            bool want;
        } ev[] = {{"true", true}, {"\"true\"", true}, {"false", false},    {"\"false\"", false},
                  {"1", false},   {"null", false},    {"\"TRUE\"", false}, {"[true]", false}};

        for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++) {
            json_object_set_new(claims, "email_verified",
                                json_loads(ev[i].json, JSON_DECODE_ANY, NULL));
            assert_int_equal(authd_identity_from_claims(&h, claims, &id), 0);
            if (id.email_verified != ev[i].want)
                fail_msg("email_verified %s: got %d", ev[i].json, id.email_verified);
            authd_identity_release(&id);
        }
    }
    json_object_del(claims, "sub");
    assert_int_equal(authd_identity_from_claims(&h, claims, &id), PC_EINVAL);
    authd_identity_release(&id);
    json_decref(claims);
}

/* A JWKS with one RSA key (modulus of k, exponent e_b64) under kid "weak"; new. */
static struct authd_jwks *
jwks_with_exponent(EVP_PKEY *k, const char *e_b64)
{
    json_t *doc = json_pack("{s:[o]}", "keys", rsa_jwk(k, "weak"));
    json_t *jwk = json_array_get(json_object_get(doc, "keys"), 0);
    struct authd_jwks *ks = NULL;
    char *text;

    json_object_set_new(jwk, "e", json_string(e_b64));
    text = json_dumps(doc, 0);
    assert_int_equal(authd_jwks_parse(text, strlen(text), &ks), 0);
    free(text);
    json_decref(doc);
    return ks;
}

/*
 * Keys that make forgery trivial are never used: an RSA exponent of 1 turns the signature into
 * the padded digest itself (anyone can "sign"), RSA moduli under 2048 bits, EC points that are
 * not on the named curve.
 */
static void
test_weak_keys(void **state)
{
    static const unsigned char sha256_prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                  0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                  0x01, 0x05, 0x00, 0x04, 0x20};
    struct authd_jwt_expect e = {.issuer = ISS, .client_id = "app", .now = NOW};
    const char *hdr = "{\"alg\":\"RS256\",\"kid\":\"weak\"}", *why = NULL;
    unsigned char em[256];
    char *hb, *cb, *input, *sig, *tok, *text;
    struct authd_jwks *ks;
    json_t *out = NULL;
    EVP_PKEY *small;

    (void)state;
    /* e = 1: the "signature" is EMSA-PKCS1-v1_5(SHA-256(input)), computed without a key. */
    hb = pc_b64url_encode(hdr, strlen(hdr));
    cb = pc_b64url_encode("{" GOOD "}", strlen("{" GOOD "}"));
    input = pc_xasprintf("%s.%s", hb, cb);
    memset(em, 0xff, sizeof(em));
    em[0] = 0x00;
    em[1] = 0x01;
    em[sizeof(em) - 32 - sizeof(sha256_prefix) - 1] = 0x00;
    memcpy(em + sizeof(em) - 32 - sizeof(sha256_prefix), sha256_prefix, sizeof(sha256_prefix));
    SHA256((const unsigned char *)input, strlen(input), em + sizeof(em) - 32);
    sig = pc_b64url_encode(em, sizeof(em));
    tok = pc_xasprintf("%s.%s", input, sig);
    ks = jwks_with_exponent(rsa_key, "AQ"); /* e = 1 */
    assert_int_not_equal(authd_jwt_verify(ks, tok, &e, &out, &why), 0);
    assert_null(out);
    assert_null(authd_jwks_find(ks, "weak"));
    authd_jwks_free(ks);
    ks = jwks_with_exponent(rsa_key, "AAE"); /* e = 1 with a leading zero byte */
    assert_null(authd_jwks_find(ks, "weak"));
    authd_jwks_free(ks);
    ks = jwks_with_exponent(rsa_key, "AQAB"); /* 65537: the same modulus is fine */
    assert_non_null(authd_jwks_find(ks, "weak"));
    authd_jwks_free(ks);

    /* RSA-1024 is refused. */
    small = EVP_RSA_gen(1024);
    ks = jwks_with_exponent(small, "AQAB");
    assert_null(authd_jwks_find(ks, "weak"));
    authd_jwks_free(ks);
    EVP_PKEY_free(small);

    /* A P-256 point off the curve (x, y = 1, 1) is refused. */
    text = pc_xasprintf("{\"keys\":[{\"kty\":\"EC\",\"kid\":\"off\",\"crv\":\"P-256\",\"x\":\"%s\","
                        "\"y\":\"%s\"}]}",
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE",
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE");
    assert_int_equal(authd_jwks_parse(text, strlen(text), &ks), 0);
    assert_null(authd_jwks_find(ks, "off"));
    authd_jwks_free(ks);
    free(text);
    free(hb);
    free(cb);
    free(input);
    free(sig);
    free(tok);
}

/* A token with the header given as JSON text, signed with key for alg. */
static char *
token_with_header(const char *alg, EVP_PKEY *key, const char *header)
{
    const char *claims = "{" GOOD "}";
    char *hb = pc_b64url_encode(header, strlen(header));
    char *cb = pc_b64url_encode(claims, strlen(claims)), *input = pc_xasprintf("%s.%s", hb, cb);
    char *sig = sign(alg, key, input), *tok = pc_xasprintf("%s.%s", input, sig);

    free(hb);
    free(cb);
    free(input);
    free(sig);
    return tok;
}

/*
 * JWS header parameters. authd implements no extension, so any "crit" makes the token invalid
 * (RFC 7515 §4.1.11), and "b64" (RFC 7797, unencoded payloads) is refused with or without it.
 * Keys come from the issuer's JWKS by "kid" only: "jwk", "jku", "x5u", "x5c" in the header are
 * never used to find or build one.
 */
static void
test_header_params(void **state)
{
    static const struct {
        const char *name, *header;
        int key; /* 0 rsa_key (the JWKS's rsa1), 1 rsa_other (not in the JWKS) */
        int want;
    } cases[] = {
        {"plain", "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", 0, 0},
        {"crit unknown extension",
         "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"x-ext\"],"
         "\"x-ext\":1}",
         0, PC_EAUTH},
        {"crit names a registered parameter",
         "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"exp\"],\"exp\":1700000300}", 0, PC_EAUTH},
        {"crit empty", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[]}", 0, PC_EAUTH},
        {"crit not a list", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":\"x-ext\"}", 0, PC_EAUTH},
        {"crit null", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":null}", 0, PC_EAUTH},
        {"crit unknown kid", "{\"alg\":\"RS256\",\"kid\":\"rsa9\",\"crit\":[\"x-ext\"]}", 0,
         PC_EAUTH},
        {"b64 false with crit",
         "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"b64\":false,\"crit\":[\"b64\"]}", 0, PC_EAUTH},
        {"b64 false without crit", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"b64\":false}", 0,
         PC_EAUTH},
        {"b64 true", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"b64\":true}", 0, PC_EAUTH},
        /* Ignored: the token verifies with the JWKS key, or not at all. */
        {"jku ignored", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"jku\":\"https://evil/jwks\"}", 0, 0},
        {"x5u ignored", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"x5u\":\"https://evil/cert\"}", 0, 0},
        {"jku with own key", "{\"alg\":\"RS256\",\"kid\":\"evil\",\"jku\":\"https://evil/jwks\"}",
         1, PC_ENOTFOUND},
        {"x5u with own key, no kid", "{\"alg\":\"RS256\",\"x5u\":\"https://evil/cert\"}", 1,
         PC_ENOTFOUND},
        {"x5c with own key, JWKS kid", "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"x5c\":[\"MIIB\"]}", 1,
         PC_EAUTH},
    };
    EVP_PKEY *keys[] = {rsa_key, rsa_other};
    struct authd_jwt_expect e = {.issuer = ISS, .client_id = "app", .now = NOW, .nonce = "n1"};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = token_with_header("RS256", keys[cases[i].key], cases[i].header);
        json_t *claims = NULL;
        const char *why = NULL;
        int rc = authd_jwt_verify(jwks, tok, &e, &claims, &why);

        if (rc != cases[i].want)
            fail_msg("%s: rc %d (%s), want %d", cases[i].name, rc, why, cases[i].want);
        json_decref(claims);
        free(tok);
    }
    /* A "jwk" header holding the signer's own public key (CVE-2018-0114) is not trusted. */
    {
        json_t *jwk = rsa_jwk(rsa_other, "evil"), *h;
        char *text, *tok;
        json_t *claims = NULL;

        for (int with_kid = 0; with_kid < 2; with_kid++) {
            h = json_pack("{s:s, s:O}", "alg", "RS256", "jwk", jwk);
            if (with_kid)
                json_object_set_new(h, "kid", json_string("rsa1"));
            text = json_dumps(h, JSON_COMPACT);
            tok = token_with_header("RS256", rsa_other, text);
            assert_int_equal(authd_jwt_verify(jwks, tok, &e, &claims, NULL),
                             with_kid ? PC_EAUTH : PC_ENOTFOUND);
            assert_null(claims);
            json_decref(h);
            free(text);
            free(tok);
        }
        json_decref(jwk);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwks_parse),    cmocka_unit_test(test_verify_matrix),
        cmocka_unit_test(test_malformed),     cmocka_unit_test(test_typ_at_jwt),
        cmocka_unit_test(test_identity),      cmocka_unit_test(test_weak_keys),
        cmocka_unit_test(test_header_params),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
