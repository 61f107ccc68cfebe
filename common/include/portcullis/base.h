/*
 * base.h - error codes, aborting allocators, diagnostics and secret wiping shared by every
 * portcullis module.
 *
 * Fallible functions return 0 or a negative code: -errno for system errors, or one of the
 * PC_E* codes below for parse, authentication and size failures.
 */
#ifndef PORTCULLIS_BASE_H
#define PORTCULLIS_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum {
    PC_EPARSE = -1001,    /* malformed input */
    PC_ETOOBIG = -1002,   /* input or output over its bound */
    PC_EMORE = -1003,     /* incremental parser needs more bytes */
    PC_EAUTH = -1004,     /* authentication or integrity check failed */
    PC_ENOTFOUND = -1005, /* looked-up item absent */
    PC_EINVAL = -1006,    /* well-formed but not acceptable */
    PC_EEXPIRED = -1007,  /* valid once, expired now */
    PC_EIO = -1008,       /* network or file transport failure */
};

/* A static, lowercase description of a PC_E* code or -errno. */
const char *pc_strerror(int code);

/* Allocators that abort the process on failure; never return NULL. */
void *pc_xmalloc(size_t n);
void *pc_xcalloc(size_t n, size_t size);
void *pc_xrealloc(void *p, size_t n);
char *pc_xstrdup(const char *s);
char *pc_xstrndup(const char *s, size_t n);
/* A new formatted string; the caller frees it. */
char *pc_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Overwrites n bytes at p in a way the compiler cannot elide. NULL is a no-op. */
void pc_cleanse(void *p, size_t n);
/* Cleanses and frees a NUL-terminated secret string; NULL is a no-op. */
void pc_free_secret(char *s);

/*
 * A caller-provided diagnostic: where a problem is and what it is. line and col are 1-based
 * (0 when unknown); file is borrowed and may be NULL.
 */
struct pc_diag {
    const char *file;
    int line;
    int col;
    char msg[512];
};

void pc_diag_set(struct pc_diag *d, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Formats "file:line:col: message" (parts that are unknown are left out) into out; false when
 * it had to be cut to fit outlen (out is NUL-terminated either way). */
bool pc_diag_format(const struct pc_diag *d, char *out, size_t outlen);
/* Moves file, line and column into the message ("file:line:col: message"), for a file name
 * that is about to be freed; d->file is NULL afterwards. */
void pc_diag_fold(struct pc_diag *d);

#endif
