/*
 * io_util.h - what the unit tests of authd's I/O side share: server.c's clocks (the pool's
 * deadlines, the issuer registry's backoff and redis.c read them; include this in one file of
 * each test executable) and a listening socket on 127.0.0.1.
 */
#ifndef PORTCULLIS_AUTHD_TESTS_IO_UTIL_H
#define PORTCULLIS_AUTHD_TESTS_IO_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "authd.h"

int64_t
authd_now(void)
{
    return (int64_t)time(NULL);
}

int64_t
authd_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A TCP socket (socket(2) flags: e.g. SOCK_NONBLOCK) listening on 127.0.0.1; *port its port. */
static int
listen_loopback(int flags, int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | flags, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

#endif
