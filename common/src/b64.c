/*
 * b64.c - base64url without padding (RFC 4648 §5) and standard base64 with padding.
 */
#include "portcullis/b64.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/base.h"

static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *
encode(const void *p, size_t n, const char *alphabet, bool pad)
{
    const unsigned char *in = p;
    char *out = pc_xmalloc((n + 2) / 3 * 4 + 1);
    size_t o = 0, i = 0;

    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = alphabet[v >> 6 & 63];
        else if (pad)
            out[o++] = '=';
        if (pad)
            out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static int
value_of(unsigned char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

static int
decode(const char *s, size_t n, bool url, unsigned char **out, size_t *outlen)
{
    unsigned char *buf = NULL;
    uint32_t acc = 0;
    size_t o = 0, bits = 0;

    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return PC_EPARSE;
    buf = pc_xmalloc(n / 4 * 3 + 3);
    for (size_t i = 0; i < n; i++) {
        int v = value_of((unsigned char)s[i], url);
        if (v < 0) {
            free(buf);
            return PC_EPARSE;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
        }
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
}

char *
pc_b64url_encode(const void *p, size_t n)
{
    return encode(p, n, url_alphabet, false);
}

int
pc_b64url_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
    return decode(s, n, true, out, outlen);
}

char *
pc_b64_encode(const void *p, size_t n)
{
    return encode(p, n, std_alphabet, true);
}

int
pc_b64_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
    return decode(s, n, false, out, outlen);
}
