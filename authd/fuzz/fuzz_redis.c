/*
 * libFuzzer target: replies from Redis, through the reader a connection uses (hiredis' RESP
 * parser building authd's own reply objects, with their bounds), fed in two parts split where
 * the input's first byte says. Every reply handed on must keep the bounds: strings at most
 * AUTHD_MAX_REDIS_BLOB bytes and NUL-terminated at their length, arrays at most 8 elements,
 * each present.
 */
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "fuzz_common.h"

/* The clock server.c defines in the daemon. */
int64_t
authd_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
check(const struct authd_redis_reply *rep, int depth)
{
    if (rep == NULL || depth > 16)
        abort();
    switch (rep->type) {
    case AUTHD_REDIS_STRING:
    case AUTHD_REDIS_STATUS:
    case AUTHD_REDIS_ERROR:
        if (rep->str == NULL || rep->len > AUTHD_MAX_REDIS_BLOB || rep->str[rep->len] != '\0')
            abort();
        break;
    case AUTHD_REDIS_ARRAY:
        if (rep->nelem > 8)
            abort();
        for (size_t i = 0; i < rep->nelem; i++)
            check(rep->elem[i], depth + 1);
        break;
    default:
        break;
    }
    (void)authd_redis_unavailable(rep);
}

static void
each(void *ud, const struct authd_redis_reply *rep)
{
    (void)ud;
    check(rep, 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    authd_redis_parse((const char *)data + 1, size - 1, (size - 1) * data[0] / 256, each, NULL);
    return 0;
}
