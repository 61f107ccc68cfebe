/*
 * http.h - a blocking HTTP client over libcurl with explicit timeouts and bounded responses.
 *
 * Call pc_http_global_init once before threads start. Each call is independent and
 * thread-safe.
 */
#ifndef PORTCULLIS_HTTP_H
#define PORTCULLIS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "portcullis/buf.h"

/*
 * Streaming receiver: called with each chunk of the body as it arrives. Returning non-zero
 * aborts the transfer (pc_http_do then returns that value).
 */
typedef int (*pc_http_on_data)(void *ud, const char *p, size_t n);

struct pc_http_request {
    const char *method;         /* default "GET" */
    const char *url;            /* required */
    const char *const *headers; /* NULL-terminated "Name: value" lines, borrowed */
    const char *body;           /* may be NULL */
    size_t body_len;
    const char *basic_user; /* HTTP Basic credentials when non-NULL */
    const char *basic_password;
    const char *bearer_token;    /* Authorization: Bearer when non-NULL */
    long timeout_ms;             /* whole transfer; 0 = none (streams only) */
    long connect_timeout_ms;     /* default 5000 */
    long low_speed_secs;         /* abort when below 1 byte/s this long; 0 = off */
    size_t max_response;         /* body bound, default 1 MiB */
    const char *ca_file;         /* PEM file of trusted CAs */
    const char *ca_pem;          /* PEM text of trusted CAs */
    const char *client_cert_pem; /* PEM text */
    const char *client_key_pem;  /* PEM text */
    bool insecure_skip_verify;
    pc_http_on_data on_data; /* stream the body instead of buffering it */
    void *ud;
};

struct pc_http_response {
    long status;
    struct pc_buf body; /* unused when streaming */
    char content_type[128];
    char error[256]; /* transport error text, "" on success */
};

int pc_http_global_init(void);
/*
 * Performs one request. Returns 0 when a response arrived (any status), PC_EIO on transport
 * failure or timeout (resp->error says which), PC_ETOOBIG when the body exceeds its bound,
 * or the non-zero value an on_data callback returned. Release resp with
 * pc_http_response_release either way.
 */
int pc_http_do(const struct pc_http_request *req, struct pc_http_response *resp);
void pc_http_response_release(struct pc_http_response *resp);

/* New application/x-www-form-urlencoded / URL-component encoding of s; the caller frees it. */
char *pc_url_encode(const char *s);
/* New decoded copy of a percent-encoded string ('+' as space when form is true); NULL when
 * malformed. */
char *pc_url_decode(const char *s, size_t n, bool form);
/*
 * Whether url is within prefix: equal to it, or below it at a '/' ("https://idp/realms/a"
 * covers ".../realms/a/x", never ".../realms/ab", "https://idp.evil" or "https://idp@evil").
 * A url with a "." or ".." path segment (also percent-encoded) is within nothing: a client or
 * server would squash it to somewhere else. Compared byte for byte: no case folding.
 */
bool pc_url_within(const char *url, const char *prefix);

#endif
