/*
 * origin.c - the app request behind a request on the auth port: the host and path the proxy in
 * front asserts, read from the headers it sets itself.
 *
 * authd cannot tell a header the proxy set from one it passed through from the client: nginx
 * forwards every client header it does not override, and ingress-nginx's auth subrequest sets
 * X-Original-URL ($scheme://$http_host$request_uri) and Host (authd's Service) but passes the
 * client's X-Forwarded-Host and X-Original-URI on unchanged. So no header is preferred over
 * another: every header present that names the host must name the same host, every header that
 * names the path the same path, and a disagreement is refused (400) rather than settled by
 * picking one, which would let the client pick the laxer policy. Host counts as a claim only
 * when it names a protected host: a proxy that addresses authd by its own name says nothing
 * about the app there. The Envoy door does not come here: Envoy hands authd the :authority it
 * routed on as Host, and that alone decides.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "authd.h"

struct claim {
    const char *header;
    const char *value; /* NULL: not claimed */
};

/* Splits "http(s)://authority[/path]" into host (copied, bounded) and path (borrowed). */
static int
split_url(const char *url, struct authd_origin *o, char *host, size_t hostlen)
{
    const char *auth;
    size_t n;

    if (strncasecmp(url, "https://", 8) == 0)
        auth = url + 8;
    else if (strncasecmp(url, "http://", 7) == 0)
        auth = url + 7;
    else
        return PC_EINVAL;
    n = strcspn(auth, "/?#");
    if (auth[n] != '\0' && auth[n] != '/')
        return PC_EINVAL;
    if (n >= hostlen)
        return PC_ETOOBIG;
    memcpy(host, auth, n);
    host[n] = '\0';
    o->path = auth[n] == '/' ? auth + n : "/";
    return 0;
}

/* The claims must name one host; o->host gets the first claim (or fallback when none). */
static int
agree(struct authd_origin *o, const struct claim *c, size_t n, const char *fallback)
{
    const struct claim *first = NULL;
    const char *v;

    for (size_t i = 0; i < n; i++) {
        if (c[i].value == NULL)
            continue;
        if (first == NULL) {
            first = &c[i];
        } else if (!authd_host_same(first->value, c[i].value)) {
            snprintf(o->why, sizeof(o->why), "%s and %s name different hosts", first->header,
                     c[i].header);
            return PC_EINVAL;
        }
    }
    v = first ? first->value : fallback ? fallback : "";
    if (strlen(v) > AUTHD_MAX_HOST) {
        snprintf(o->why, sizeof(o->why), "%s is too long", first ? first->header : "Host");
        return PC_ETOOBIG;
    }
    memcpy(o->host, v, strlen(v) + 1);
    return 0;
}

static const char *
nonempty(const char *v)
{
    return v && *v ? v : NULL;
}

/* Host when it names a protected host: then it is the proxy's own statement of the app. */
static const char *
host_claim(const struct authd_config *cfg, const struct authd_http *h)
{
    return authd_config_match_host(cfg, h->host) ? h->host : NULL;
}

static void
origin_init(struct authd_origin *o, const char *path)
{
    o->host[0] = '\0';
    o->path = path;
    o->why[0] = '\0';
}

int
authd_origin_nginx(const struct authd_config *cfg, const struct authd_http *h,
                   struct authd_origin *o)
{
    char url_host[AUTHD_MAX_HOST + 1];
    const char *url = nonempty(h->x_original_url), *uri = nonempty(h->x_original_uri);
    int rc;

    origin_init(o, uri ? uri : "/");
    if (url && (rc = split_url(url, o, url_host, sizeof(url_host))) != 0) {
        snprintf(o->why, sizeof(o->why), "X-Original-URL is %s",
                 rc == PC_ETOOBIG ? "too long" : "not an http(s) URL with a path");
        return rc;
    }
    if (url && uri && strcmp(o->path, uri) != 0) {
        snprintf(o->why, sizeof(o->why), "X-Original-URL and X-Original-URI name different paths");
        return PC_EINVAL;
    }
    const struct claim c[] = {{"X-Original-URL", url ? url_host : NULL},
                              {"X-Forwarded-Host", nonempty(h->x_forwarded_host)},
                              {"Host", host_claim(cfg, h)}};
    return agree(o, c, sizeof(c) / sizeof(c[0]), h->host);
}

int
authd_origin_direct(const struct authd_config *cfg, const struct authd_http *h,
                    struct authd_origin *o)
{
    origin_init(o, h->path);
    const struct claim c[] = {{"X-Forwarded-Host", nonempty(h->x_forwarded_host)},
                              {"Host", host_claim(cfg, h)}};
    return agree(o, c, sizeof(c) / sizeof(c[0]), h->host);
}
