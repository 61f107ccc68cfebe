/*
 * mint_session.c - a benchmark tool, not part of the product: seals a valid authd session
 * cookie with authd's own session code, so the benchmark can exercise the check path of a
 * logged-in user without driving an IdP login for authd.
 *
 * usage: mint_session CONFIG HOST SUB EMAIL GROUP[,GROUP...]
 * prints the Cookie request header value ("name=value" or "name_0=...; name_1=...") on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "authd.h"

/* The ID-token claims a login by SUB would have produced. */
static json_t *
claims_new(const char *sub, const char *email, const char *groups)
{
    json_t *claims = json_pack("{s:s, s:s, s:s}", "sub", sub, "email", email,
                               "preferred_username", sub);
    json_t *list = json_array();
    char *copy = strdup(groups), *save = NULL;

    for (char *g = strtok_r(copy, ",", &save); g != NULL; g = strtok_r(NULL, ",", &save))
        json_array_append_new(list, json_string(g));
    free(copy);
    json_object_set_new(claims, "groups", list);
    return claims;
}

/* Prints the "name=value" part of every Set-Cookie value that sets a cookie, "; "-joined. */
static int
print_cookie_header(const struct authd_strlist *set_cookie)
{
    int printed = 0;

    for (size_t i = 0; i < set_cookie->n; i++) {
        const char *v = set_cookie->v[i];
        size_t len = strcspn(v, ";");

        if (strstr(v, "Max-Age=0") != NULL)
            continue; /* a clearing cookie */
        printf("%s%.*s", printed ? "; " : "", (int)len, v);
        printed++;
    }
    printf("\n");
    return printed > 0 ? 0 : -1;
}

static int
mint(const struct authd_config *cfg, const char *host_name, char **argv)
{
    const struct authd_host *host = authd_config_match_host(cfg, host_name);
    struct authd_strlist set_cookie = {0};
    struct authd_session *s = NULL;
    json_t *claims = NULL;
    int64_t now = (int64_t)time(NULL);
    int rc = -1;

    if (host == NULL) {
        fprintf(stderr, "mint_session: no host \"%s\" in the config\n", host_name);
        return -1;
    }
    claims = claims_new(argv[0], argv[1], argv[2]);
    if (authd_session_from_claims(host, claims, NULL, NULL, now, &s) != 0 ||
        authd_session_seal(&cfg->keys, host, s, NULL, now, &set_cookie) != 0) {
        fprintf(stderr, "mint_session: cannot seal a session for \"%s\"\n", host_name);
        goto out;
    }
    rc = print_cookie_header(&set_cookie);
out:
    authd_strlist_release(&set_cookie);
    authd_session_free(s);
    json_decref(claims);
    return rc;
}

int
main(int argc, char **argv)
{
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};
    char msg[1024];
    int rc;

    if (argc != 6) {
        fprintf(stderr, "usage: %s CONFIG HOST SUB EMAIL GROUP[,GROUP...]\n", argv[0]);
        return 2;
    }
    rc = authd_config_load(argv[1], &cfg, &diag);
    if (rc != 0) {
        pc_diag_format(&diag, msg, sizeof(msg));
        fprintf(stderr, "mint_session: %s\n", msg);
        return 1;
    }
    rc = mint(cfg, argv[2], argv + 3);
    authd_config_free(cfg);
    return rc == 0 ? 0 : 1;
}
