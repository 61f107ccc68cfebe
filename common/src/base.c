/*
 * base.c - error strings, aborting allocators, diagnostics, secret wiping.
 */
#include "portcullis/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

const char *
pc_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case PC_EPARSE:
        return "malformed input";
    case PC_ETOOBIG:
        return "too big";
    case PC_EMORE:
        return "need more input";
    case PC_EAUTH:
        return "authentication failed";
    case PC_ENOTFOUND:
        return "not found";
    case PC_EINVAL:
        return "invalid value";
    case PC_EEXPIRED:
        return "expired";
    case PC_EIO:
        return "i/o failure";
    default:
        return code < 0 && code > -4096 ? strerror(-code) : "unknown error";
    }
}

static void *
check(void *p)
{
    if (p == NULL) {
        fputs("fatal: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *
pc_xmalloc(size_t n)
{
    return check(malloc(n ? n : 1));
}

void *
pc_xcalloc(size_t n, size_t size)
{
    return check(calloc(n ? n : 1, size ? size : 1));
}

void *
pc_xrealloc(void *p, size_t n)
{
    return check(realloc(p, n ? n : 1));
}

char *
pc_xstrdup(const char *s)
{
    return check(strdup(s));
}

char *
pc_xstrndup(const char *s, size_t n)
{
    return check(strndup(s, n));
}

char *
pc_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;

    va_start(ap, fmt);
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (n < 0)
        check(NULL);
    return out;
}

void
pc_cleanse(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

void
pc_free_secret(char *s)
{
    if (s == NULL)
        return;
    pc_cleanse(s, strlen(s));
    free(s);
}

void
pc_diag_set(struct pc_diag *d, int line, int col, const char *fmt, ...)
{
    va_list ap;

    if (d == NULL)
        return;
    d->line = line;
    d->col = col;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
    va_end(ap);
}

bool
pc_diag_format(const struct pc_diag *d, char *out, size_t outlen)
{
    const char *file = d->file ? d->file : "";
    const char *sep = d->file ? ":" : "";
    int n;

    if (d->line > 0 && d->col > 0)
        n = snprintf(out, outlen, "%s%s%d:%d: %s", file, sep, d->line, d->col, d->msg);
    else if (d->line > 0)
        n = snprintf(out, outlen, "%s%s%d: %s", file, sep, d->line, d->msg);
    else if (d->file)
        n = snprintf(out, outlen, "%s: %s", file, d->msg);
    else
        n = snprintf(out, outlen, "%s", d->msg);
    return n >= 0 && (size_t)n < outlen;
}

void
pc_diag_fold(struct pc_diag *d)
{
    char tmp[sizeof(d->msg) + 32]; /* room for "file:line:col: " around a full message */
    size_t n;

    pc_diag_format(d, tmp, sizeof(tmp));
    n = strnlen(tmp, sizeof(d->msg) - 1); /* a long file name cuts the message's end */
    memcpy(d->msg, tmp, n);
    d->msg[n] = '\0';
    d->file = NULL;
    d->line = d->col = 0;
}
