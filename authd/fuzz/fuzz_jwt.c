/*
 * libFuzzer target: JWKS parsing and token verification. Input: a JWKS document, a blank line,
 * a compact token; without the blank line the whole input is tried as both.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"

static void
verify(const struct authd_jwks *ks, const char *token)
{
    static char *auds_v[] = {"api"};
    static const struct authd_strlist auds = {.v = auds_v, .n = 1};
    struct authd_jwt_expect e = {
        .issuer = "https://idp", .client_id = "app", .nonce = "n", .now = 1700000000};
    struct authd_identity id;
    json_t *claims = NULL;

    if (authd_jwt_verify(ks, token, &e, &claims, NULL) == 0) {
        if (authd_identity_from_claims(&fuzz_config()->hosts[0], claims, &id) == 0)
            authd_identity_release(&id);
        json_decref(claims);
    }
    e.audiences = &auds;
    if (authd_jwt_verify(ks, token, &e, &claims, NULL) == 0)
        json_decref(claims);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_string(data, size), *sep = strstr(in, "\n\n"), *token = in;
    struct authd_jwks *ks = NULL;
    json_t *j;

    if (sep != NULL) {
        *sep = '\0';
        token = sep + 2;
    }
    if (authd_jwks_parse(in, strlen(in), &ks) == 0) {
        verify(ks, token);
        authd_jwks_free(ks);
    }
    verify(NULL, token);
    /* Claim extraction on arbitrary JSON objects. */
    if ((j = json_loads(token, 0, NULL)) != NULL) {
        struct authd_identity id;

        if (authd_identity_from_claims(&fuzz_config()->hosts[0], j, &id) == 0)
            authd_identity_release(&id);
        json_decref(j);
    }
    free(in);
    return 0;
}
