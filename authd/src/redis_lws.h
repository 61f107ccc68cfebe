/*
 * redis_lws.h - the libwebsockets protocol on which redis.c serves its connection: list
 * AUTHD_REDIS_PROTOCOL in the protocols of the vhost given to authd_redis_new.
 */
#ifndef PORTCULLIS_AUTHD_REDIS_LWS_H
#define PORTCULLIS_AUTHD_REDIS_LWS_H

#include <libwebsockets.h>

int authd_redis_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len);

#define AUTHD_REDIS_PROTOCOL                                                                       \
    {                                                                                              \
        "authd-redis", authd_redis_lws_callback, 0, 0, 0, NULL, 0                                  \
    }

#endif
