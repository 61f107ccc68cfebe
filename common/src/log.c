/*
 * log.c - logfmt lines on stderr, one write(2) per event so concurrent threads never
 * interleave within a line.
 */
#include "portcullis/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "portcullis/base.h"

#define LINE_MAX_BYTES 4096

static atomic_int min_level = PC_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
pc_log_set_level(enum pc_log_level level)
{
    atomic_store(&min_level, (int)level);
}

int
pc_log_parse_level(const char *s, enum pc_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum pc_log_level)i;
            return 0;
        }
    }
    return PC_EINVAL;
}

struct line {
    char buf[LINE_MAX_BYTES];
    size_t len;
};

static void
put(struct line *l, const char *s, size_t n)
{
    if (n > sizeof(l->buf) - 1 - l->len)
        n = sizeof(l->buf) - 1 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static int
needs_quotes(const char *v)
{
    if (*v == '\0')
        return 1;
    for (; *v; v++)
        if ((unsigned char)*v <= ' ' || *v == '=' || *v == '"' || *v == '\\' || *v == 0x7f)
            return 1;
    return 0;
}

static void
put_value(struct line *l, const char *v)
{
    static const char hex[] = "0123456789abcdef";

    if (!needs_quotes(v)) {
        put(l, v, strlen(v));
        return;
    }
    put(l, "\"", 1);
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(l, esc, 2);
        } else if (c < ' ' || c == 0x7f) {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            put(l, esc, 4);
        } else {
            put(l, (const char *)&c, 1);
        }
    }
    put(l, "\"", 1);
}

void
pc_log(enum pc_log_level level, const char *event, ...)
{
    struct line l = {.len = 0};
    struct timespec ts;
    struct tm tm;
    char stamp[64];
    const char *key;
    va_list ap;

    if ((int)level < atomic_load(&min_level))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof(stamp), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ level=%s event=", ts.tv_nsec / 1000000,
             level_names[level]);
    put(&l, stamp, strlen(stamp));
    put_value(&l, event);
    va_start(ap, event);
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *val = va_arg(ap, const char *);
        put(&l, " ", 1);
        put(&l, key, strlen(key));
        put(&l, "=", 1);
        put_value(&l, val ? val : "");
    }
    va_end(ap);
    l.buf[l.len++] = '\n';
    ssize_t w = write(STDERR_FILENO, l.buf, l.len);
    (void)w;
}
