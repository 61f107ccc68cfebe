/*
 * buf.c - bounded, NUL-terminated growable buffer.
 */
#include "portcullis/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/base.h"

void
pc_buf_init(struct pc_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

/* Grows capacity to hold need bytes plus the terminator. */
static void
reserve(struct pc_buf *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 64;

    if (need + 1 <= b->cap)
        return;
    while (cap < need + 1)
        cap *= 2;
    if (b->secret && b->data != NULL) {
        /* realloc could leave a copy of the secret behind: move it by hand. */
        char *p = pc_xmalloc(cap);
        memcpy(p, b->data, b->len + 1);
        pc_cleanse(b->data, b->cap);
        free(b->data);
        b->data = p;
    } else {
        b->data = pc_xrealloc(b->data, cap);
    }
    b->cap = cap;
}

int
pc_buf_append(struct pc_buf *b, const void *p, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len || (b->max && b->len + n > b->max))
        return PC_ETOOBIG;
    reserve(b, b->len + n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int
pc_buf_appends(struct pc_buf *b, const char *s)
{
    return pc_buf_append(b, s, strlen(s));
}

int
pc_buf_appendf(struct pc_buf *b, const char *fmt, ...)
{
    char small[256];
    char *big = NULL;
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return PC_EINVAL;
    if ((size_t)n < sizeof(small))
        return pc_buf_append(b, small, (size_t)n);
    big = pc_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc = pc_buf_append(b, big, (size_t)n);
    if (b->secret)
        pc_cleanse(big, (size_t)n);
    free(big);
    return rc;
}

const char *
pc_buf_str(const struct pc_buf *b)
{
    return b->data ? b->data : "";
}

void
pc_buf_reset(struct pc_buf *b)
{
    if (b->data) {
        if (b->secret)
            pc_cleanse(b->data, b->len);
        b->data[0] = '\0';
    }
    b->len = 0;
}

void
pc_buf_release(struct pc_buf *b)
{
    if (b->data && b->secret)
        pc_cleanse(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

char *
pc_buf_detach(struct pc_buf *b)
{
    char *p = b->data ? b->data : pc_xstrdup("");

    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
