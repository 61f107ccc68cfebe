/*
 * redirect.c - where authd may send a browser after login or sign-out: a local path or a URL
 * on a host portcullis protects, nothing else (no open redirects).
 */
#include "authd.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOST_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-."

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * Raw characters that browsers strip or reinterpret (controls, whitespace, backslash,
 * non-ASCII), and percent-encoded controls and backslashes, are refused outright.
 */
static bool
has_bad_chars(const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return true;
        if (c == '%') {
            int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]), v;

            if (hi < 0 || lo < 0)
                return true;
            v = hi * 16 + lo;
            if (v < 0x20 || v == 0x7f || v == '\\')
                return true;
        }
    }
    return false;
}

static bool
is_relative(const char *t)
{
    /* "/%2f" and "/%5c" decode to "//" and "/\" in lenient upstreams. */
    if (t[0] != '/' || t[1] == '/' || t[1] == '\\')
        return false;
    return strncasecmp(t + 1, "%2f", 3) != 0 && strncasecmp(t + 1, "%5c", 3) != 0;
}

/* True when name (lowercase, no port) is inside cookie domain d (".example.com" or bare). */
static bool
in_cookie_domain(const char *name, const char *d)
{
    size_t nlen = strlen(name), dlen;

    if (d == NULL)
        return false;
    if (d[0] == '.')
        d++;
    dlen = strlen(d);
    if (nlen == dlen)
        return strcmp(name, d) == 0;
    return nlen > dlen && name[nlen - dlen - 1] == '.' && strcmp(name + nlen - dlen, d) == 0;
}

static bool
same_host(const char *name, const char *host_name)
{
    size_t n;

    if (host_name == NULL)
        return false;
    n = strcspn(host_name, ":");
    return strlen(name) == n && strncasecmp(name, host_name, n) == 0;
}

static bool
host_allowed(const struct authd_config *cfg, const char *host_name, const char *name)
{
    if (same_host(name, host_name))
        return true;
    if (cfg == NULL)
        return false;
    if (authd_config_match_host(cfg, name) != NULL)
        return true;
    for (size_t i = 0; i < cfg->nhosts; i++)
        if (in_cookie_domain(name, cfg->hosts[i]->session.cookie_domain))
            return true;
    return false;
}

/* Splits and checks the authority of an absolute URL; *name gets the lowercase host (new). */
static int
parse_authority(const char *auth, size_t n, char **name)
{
    size_t hlen = strspn(auth, HOST_CHARS);
    const char *port = auth + hlen;

    if (hlen == 0 || hlen > n || auth[0] == '.' || auth[0] == '-')
        return PC_EINVAL;
    if (port < auth + n) {
        size_t plen = n - hlen - 1;

        if (*port != ':' || plen == 0 || plen > 5 || strspn(port + 1, "0123456789") < plen ||
            atoi(port + 1) == 0 || atoi(port + 1) > 65535)
            return PC_EINVAL;
    }
    *name = pc_xstrndup(auth, hlen);
    while (hlen > 0 && (*name)[hlen - 1] == '.')
        (*name)[--hlen] = '\0';
    for (char *p = *name; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return hlen > 0 ? 0 : PC_EINVAL;
}

static int
validate_absolute(const struct authd_config *cfg, const char *host_name, const char *t, char **out)
{
    const char *auth;
    char *name = NULL, *scheme;
    size_t alen, hlen;
    int rc;

    if (strncasecmp(t, "https://", 8) == 0) {
        scheme = "https";
        auth = t + 8;
    } else if (strncasecmp(t, "http://", 7) == 0) {
        scheme = "http";
        auth = t + 7;
    } else {
        return PC_EINVAL;
    }
    alen = strcspn(auth, "/?#");
    if (memchr(auth, '@', alen) != NULL)
        return PC_EINVAL;
    if ((rc = parse_authority(auth, alen, &name)) != 0)
        goto out;
    if (!host_allowed(cfg, host_name, name)) {
        rc = PC_EINVAL;
        goto out;
    }
    hlen = strspn(auth, HOST_CHARS);
    *out = pc_xasprintf("%s://%s%.*s%s%s", scheme, name, (int)(alen - hlen), auth + hlen,
                        auth[alen] == '\0' ? "/" : "", auth + alen);
out:
    free(name);
    return rc;
}

int
authd_redirect_validate(const struct authd_config *cfg, const char *host_name, const char *target,
                        char **out)
{
    *out = NULL;
    if (target == NULL || target[0] == '\0')
        return PC_EINVAL;
    if (strnlen(target, AUTHD_MAX_REDIRECT + 1) > AUTHD_MAX_REDIRECT)
        return PC_ETOOBIG;
    if (has_bad_chars(target))
        return PC_EINVAL;
    if (target[0] == '/') {
        if (!is_relative(target))
            return PC_EINVAL;
        *out = pc_xstrdup(target);
        return 0;
    }
    return validate_absolute(cfg, host_name, target, out);
}
