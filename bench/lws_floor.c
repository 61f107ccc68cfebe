/*
 * lws_floor.c - the second benchmark floor (docs/design.md §7): a bare libwebsockets HTTP server
 * that answers every request with 200, one header (content-length: 0) and no body, on one
 * service thread with keep-alive. authd runs on the same library, so the gap between this and
 * authd's check is what authd itself costs.
 *
 * usage: lws_floor PORT [ADDRESS]   (default 127.0.0.1; SIGTERM/SIGINT stop it)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* Writes "HTTP/1.1 200 OK" + content-length: 0 and ends the transaction (keep-alive). */
static int
answer(struct lws *wsi)
{
    uint8_t buf[LWS_PRE + 256];
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;

    if (lws_add_http_header_status(wsi, HTTP_STATUS_OK, &p, end) ||
        lws_add_http_header_content_length(wsi, 0, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return 1;
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return answer(wsi);
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"http", callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int
main(int argc, char **argv)
{
    struct lws_context_creation_info info;
    struct lws_context *ctx;

    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [ADDRESS]\n", argv[0]);
        return 2;
    }
    lws_set_log_level(LLL_ERR, NULL);
    memset(&info, 0, sizeof(info));
    info.port = atoi(argv[1]);
    info.iface = argc > 2 ? argv[2] : "127.0.0.1";
    info.protocols = protocols;
    info.count_threads = 1;
    info.keepalive_timeout = 60;
    info.timeout_secs = 60;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    ctx = lws_create_context(&info);
    if (ctx == NULL) {
        fprintf(stderr, "lws_floor: cannot create the context on port %d\n", info.port);
        return 1;
    }
    while (!stopping && lws_service(ctx, 0) >= 0)
        ;
    lws_context_destroy(ctx);
    return 0;
}
