/*
 * libFuzzer target: sessions kept in Redis. The input's first line goes through the ticket
 * cookie parser (and, as a Cookie header value, through the session-cookie readers of a
 * redis-store host and the sign-out's ticket finder); the rest is opened as a value read from
 * Redis, raw and XORed into a value authd sealed (so the tag check is passed by nothing but authd's
 * own bytes), and read directly by the decoders behind the tag: as session JSON (cookies) and as a
 * packed session (Redis values; what unpacks must pack to the same bytes).
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"

static const struct authd_config *
redis_config(void)
{
    static const char text[] = "cookieSecretFiles: [a]\n"
                               "redis: {url: 'redis://127.0.0.1'}\n"
                               "hosts:\n"
                               "- id: ns/app\n"
                               "  hosts: [app.example.com]\n"
                               "  oidc: {issuerURL: 'https://idp', clientID: app}\n"
                               "  session: {store: redis, refresh: 1m}\n";
    static struct authd_config *cfg;

    if (cfg == NULL)
        cfg = fuzz_parse_config(text);
    return cfg;
}

static void
open_free(const struct authd_config *cfg, const struct authd_ticket *t, const uint8_t *b, size_t n)
{
    struct authd_session *s = NULL;

    if (authd_ticket_open(&cfg->keys, cfg->hosts[0], t, b, n, 1700000000, &s) == 0)
        authd_session_free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct authd_config *cfg = redis_config();
    const uint8_t *nl = memchr(data, '\n', size);
    size_t first = nl ? (size_t)(nl - data) : size, rest = nl ? size - first - 1 : 0;
    const uint8_t *blob = nl ? nl + 1 : data + size;
    struct authd_ticket t = {{0}, {0}}, fixed = {{1}, {2}};
    struct authd_session *s = NULL;
    char *line = fuzz_string(data, first), *text = fuzz_string(blob, rest);
    char *header = pc_xasprintf("_portcullis=%s", line);
    uint8_t *sealed = NULL, *mixed;
    size_t slen = 0;

    if (authd_ticket_parse(line, first, &t) == 0)
        free(authd_ticket_format(&t));
    {
        struct authd_ticket all[3];
        bool more = false;
        size_t found = authd_ticket_find_all("_portcullis", header, all, 3, &more);

        if (found > 3 || (more && found != 3))
            abort();
    }
    open_free(cfg, &t, blob, rest);
    if (authd_session_open(&cfg->keys, cfg->hosts[0], header, 1700000000, &s) == 0)
        authd_session_free(s);
    if (authd_session_decode(text, &s) == 0) {
        authd_session_free(s);
        s = NULL;
    }
    if (authd_session_unpack(blob, rest, &s) == 0) { /* the packed form is canonical */
        size_t plen = 0;
        uint8_t *again = authd_session_pack(s, &plen);

        if (plen != rest || memcmp(again, blob, rest) != 0)
            abort();
        free(again);
        authd_session_free(s);
        s = NULL;
    }
    json_t *claims = json_pack("{s:s}", "sub", "u");
    if (authd_session_from_claims(cfg->hosts[0], claims, NULL, "rt", 1700000000, &s) == 0 &&
        authd_ticket_seal(&cfg->keys, cfg->hosts[0], &fixed, s, &sealed, &slen) == 0) {
        mixed = malloc(slen);
        memcpy(mixed, sealed, slen);
        for (size_t i = 0; i < rest && i < slen; i++)
            mixed[i] ^= blob[i];
        open_free(cfg, &fixed, mixed, slen);
        open_free(cfg, &fixed, mixed, rest < slen ? rest : slen);
        free(mixed);
    }
    json_decref(claims);
    authd_session_free(s);
    free(sealed);
    free(header);
    free(line);
    free(text);
    return 0;
}
