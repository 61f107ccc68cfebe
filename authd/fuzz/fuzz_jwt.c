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
        if (authd_identity_from_claims(fuzz_config()->hosts[0], claims, &id) == 0)
            authd_identity_release(&id);
        json_decref(claims);
    }
    e.audiences = &auds;
    if (authd_jwt_verify(ks, token, &e, &claims, NULL) == 0)
        json_decref(claims);
}

static int
hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/*
 * Checks one header value (or list item) of n bytes: printable ASCII, no space at either end
 * (HTTP would drop it), escapes well formed. Decodes it into out (n + 1 bytes).
 */
static void
check_item(const char *s, size_t n, char *out)
{
    size_t j = 0;

    if (n > 0 && (s[0] == ' ' || s[n - 1] == ' '))
        abort();
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            abort();
        if (s[i] != '%') {
            out[j++] = s[i];
            continue;
        }
        if (i + 2 >= n || hex_digit(s[i + 1]) < 0 || hex_digit(s[i + 2]) < 0)
            abort();
        out[j++] = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
        i += 2;
    }
    out[j] = '\0';
}

/*
 * Identity header values are header-safe, and the groups header, split at "," and
 * percent-decoded, gives back exactly the identity's groups.
 */
static void
check_headers(const struct authd_identity *id)
{
    static const char *const single[] = {"sub", "email", "preferred_username"};
    char *v, *item;
    const char *p;
    size_t k = 0;

    for (size_t c = 0; c < sizeof(single) / sizeof(single[0]); c++) {
        v = authd_identity_claim(id, single[c]);
        item = malloc(strlen(v) + 1);
        check_item(v, strlen(v), item);
        free(item);
        free(v);
    }
    v = authd_identity_claim(id, "groups");
    item = malloc(strlen(v) + 1);
    for (p = v; id->groups.n > 0; k++) {
        size_t len = strcspn(p, ",");

        check_item(p, len, item);
        if (k >= id->groups.n || strcmp(item, id->groups.v[k]) != 0)
            abort();
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    if (id->groups.n == 0 ? *v != '\0' : k + 1 != id->groups.n)
        abort();
    free(item);
    free(v);
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

        if (authd_identity_from_claims(fuzz_config()->hosts[0], j, &id) == 0) {
            check_headers(&id);
            authd_identity_release(&id);
        }
        json_decref(j);
    }
    free(in);
    return 0;
}
