/*
 * buf.h - a growable byte buffer with an upper bound, always NUL-terminated.
 *
 * Sizes that come from the network go through a bounded buffer: appends past `max` fail with
 * PC_ETOOBIG and leave the buffer unchanged.
 */
#ifndef PORTCULLIS_BUF_H
#define PORTCULLIS_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct pc_buf {
    char *data; /* NUL-terminated once anything was appended; NULL before */
    size_t len;
    size_t cap;
    size_t max;  /* bound on len; 0 means unbounded */
    bool secret; /* cleanse on growth and release */
};

/* Initialises an empty buffer bounded to max bytes (0: unbounded). */
void pc_buf_init(struct pc_buf *b, size_t max);
/* Appends n bytes. Returns 0 or PC_ETOOBIG. */
int pc_buf_append(struct pc_buf *b, const void *p, size_t n);
int pc_buf_appends(struct pc_buf *b, const char *s);
int pc_buf_appendf(struct pc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The contents as a string: borrowed until the next change; "" when empty. */
const char *pc_buf_str(const struct pc_buf *b);
/* Empties the buffer, keeping its memory. */
void pc_buf_reset(struct pc_buf *b);
/* Frees the memory (cleansed first for secret buffers); the buffer is empty and reusable. */
void pc_buf_release(struct pc_buf *b);
/* Hands the contents to the caller (new, never NULL) and leaves the buffer empty. */
char *pc_buf_detach(struct pc_buf *b);

#endif
