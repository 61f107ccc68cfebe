/*
 * fuzz_common.h - a fixed in-memory authd config for the fuzz targets.
 */
#ifndef AUTHD_FUZZ_COMMON_H
#define AUTHD_FUZZ_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "authd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline int
fuzz_reader(void *ud, const char *path, char **data, size_t *len)
{
    (void)ud;
    (void)path;
    *data = strdup("fuzz-secret-0123456789abcdef0123456789");
    *len = strlen(*data);
    return 0;
}

/* The config text parses (or the target aborts): new. */
static inline struct authd_config *
fuzz_parse_config(const char *text)
{
    struct authd_config_opts opts = {.read_file = fuzz_reader};
    struct authd_config *cfg = NULL;
    struct pc_diag diag;

    if (authd_config_parse(text, strlen(text), &opts, &cfg, &diag) != 0)
        abort();
    return cfg;
}

static inline const struct authd_config *
fuzz_config(void)
{
    static const char text[] =
        "cookieSecretFiles: [a, b]\n"
        "hosts:\n"
        "- id: ns/app\n"
        "  hosts: [app.example.com, '*.apps.example.com']\n"
        "  oidc: {issuerURL: 'https://idp', clientID: app}\n"
        "  access: {allowedGroups: [admins], allowedEmailDomains: [example.com]}\n"
        "  paths: {skip: [/healthz, /static/, /pub*], api: [/api/]}\n"
        "  session: {cookieDomain: .example.com, refresh: 1m}\n"
        "  passIDToken: true\n"
        "  bearerTokens: {enabled: true}\n";
    static struct authd_config *cfg;

    if (cfg == NULL)
        cfg = fuzz_parse_config(text);
    return cfg;
}

/* A NUL-terminated copy of the input; the caller frees it. */
static inline char *
fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
