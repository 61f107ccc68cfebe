/*
 * mint_session.c - a benchmark tool, not part of the product: seals a valid authd session
 * cookie with authd's own session code, so the benchmark can exercise the check path of a
 * logged-in user without driving an IdP login for authd.
 *
 * usage: mint_session CONFIG HOST SUB EMAIL GROUP[,GROUP...]
 * prints the Cookie request header value ("name=value" or "name_0=...; name_1=...") on stdout.
 *
 * usage: mint_session --redis N RESP_FILE CONFIG HOST SUB EMAIL GROUP[,GROUP...]
 * for a session.store: redis host: N sessions sealed as authd seals them for Redis, their SET
 * commands written to RESP_FILE (for redis-cli --pipe), one Cookie header (the ticket) per
 * line on stdout.
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

/* Appends one RESP bulk string. */
static void
resp_bulk(FILE *f, const void *p, size_t n)
{
    fprintf(f, "$%zu\r\n", n);
    fwrite(p, 1, n, f);
    fputs("\r\n", f);
}

/* One ticket: its session's SET (with the session's lifetime as PX) to resp, its cookie out. */
static int
mint_ticket(const struct authd_config *cfg, const struct authd_host *host,
            const struct authd_session *s, FILE *resp)
{
    struct authd_ticket t;
    uint8_t *blob = NULL;
    size_t len = 0;
    char *key = NULL, *value = NULL, px[24];
    int rc = -1;

    if (authd_ticket_new(&t) != 0 || authd_ticket_seal(&cfg->keys, host, &t, s, &blob, &len) != 0)
        goto out;
    key = authd_ticket_redis_key(cfg->redis->key_prefix, &t);
    value = authd_ticket_format(&t);
    snprintf(px, sizeof(px), "%lld", (long long)(s->expires_at - (int64_t)time(NULL)) * 1000);
    fputs("*5\r\n", resp);
    resp_bulk(resp, "SET", 3);
    resp_bulk(resp, key, strlen(key));
    resp_bulk(resp, blob, len);
    resp_bulk(resp, "PX", 2);
    resp_bulk(resp, px, strlen(px));
    printf("%s=%s\n", host->session.cookie_name, value);
    rc = 0;
out:
    free(key);
    free(value);
    free(blob);
    return rc;
}

static int
mint_redis(const struct authd_config *cfg, const char *host_name, long n, const char *resp_path,
           char **argv)
{
    const struct authd_host *host = authd_config_match_host(cfg, host_name);
    struct authd_session *s = NULL;
    json_t *claims = NULL;
    FILE *resp = NULL;
    int rc = -1;

    if (host == NULL || host->session.store != AUTHD_STORE_REDIS || cfg->redis == NULL) {
        fprintf(stderr, "mint_session: no session.store: redis host \"%s\"\n", host_name);
        return -1;
    }
    if ((resp = fopen(resp_path, "we")) == NULL) {
        perror(resp_path);
        return -1;
    }
    claims = claims_new(argv[0], argv[1], argv[2]);
    if (authd_session_from_claims(host, claims, NULL, NULL, (int64_t)time(NULL), &s) == 0)
        for (rc = 0; rc == 0 && n-- > 0;)
            rc = mint_ticket(cfg, host, s, resp);
    if (rc != 0)
        fprintf(stderr, "mint_session: cannot seal a session for \"%s\"\n", host_name);
    authd_session_free(s);
    json_decref(claims);
    return fclose(resp) == 0 ? rc : -1;
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
    const char *resp = NULL;
    char msg[1024];
    long n = 0;
    int rc;

    if (argc == 9 && strcmp(argv[1], "--redis") == 0) {
        n = strtol(argv[2], NULL, 10);
        resp = argv[3];
        argv += 3;
        argc -= 3;
    }
    if (argc != 6 || (resp != NULL && (n < 1 || n > 1000000))) {
        fprintf(stderr,
                "usage: %s [--redis N RESP_FILE] CONFIG HOST SUB EMAIL GROUP[,GROUP...]\n",
                argv[0]);
        return 2;
    }
    rc = authd_config_load(argv[1], &cfg, &diag);
    if (rc != 0) {
        pc_diag_format(&diag, msg, sizeof(msg));
        fprintf(stderr, "mint_session: %s\n", msg);
        return 1;
    }
    rc = resp ? mint_redis(cfg, argv[2], n, resp, argv + 3) : mint(cfg, argv[2], argv + 3);
    authd_config_free(cfg);
    return rc == 0 ? 0 : 1;
}
