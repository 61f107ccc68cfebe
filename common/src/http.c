/*
 * http.c - one blocking HTTP exchange per call over a fresh libcurl easy handle: explicit
 * timeouts, http/https only, no redirects followed, bounded or streamed bodies.
 */
#include "portcullis/http.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "portcullis/base.h"

#define DEFAULT_MAX_RESPONSE (1024 * 1024)

struct transfer {
    const struct pc_http_request *req;
    struct pc_http_response *resp;
    int callback_rc; /* what aborted the transfer from inside a callback */
};

int
pc_http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : PC_EIO;
}

static size_t
on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct transfer *t = ud;
    size_t n = size * nmemb;
    int rc;

    if (t->req->on_data != NULL)
        rc = t->req->on_data(t->req->ud, p, n);
    else
        rc = pc_buf_append(&t->resp->body, p, n);
    if (rc != 0) {
        t->callback_rc = rc;
        return 0; /* aborts the transfer */
    }
    return n;
}

static struct curl_slist *
build_headers(const struct pc_http_request *req)
{
    struct curl_slist *list = NULL;
    char *auth = NULL;

    for (const char *const *h = req->headers; h != NULL && *h != NULL; h++)
        list = curl_slist_append(list, *h);
    if (req->bearer_token != NULL) {
        auth = pc_xasprintf("Authorization: Bearer %s", req->bearer_token);
        list = curl_slist_append(list, auth);
        pc_free_secret(auth);
    }
    list = curl_slist_append(list, "Expect:");
    return list;
}

static void
set_blob(CURL *c, CURLoption opt, const char *pem)
{
    struct curl_blob blob = {.data = (void *)pem, .len = strlen(pem), .flags = CURL_BLOB_COPY};

    curl_easy_setopt(c, opt, &blob);
}

static void
set_tls(CURL *c, const struct pc_http_request *req)
{
    if (req->ca_file != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, req->ca_file);
    if (req->ca_pem != NULL)
        set_blob(c, CURLOPT_CAINFO_BLOB, req->ca_pem);
    if (req->client_cert_pem != NULL) {
        set_blob(c, CURLOPT_SSLCERT_BLOB, req->client_cert_pem);
        curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (req->client_key_pem != NULL) {
        set_blob(c, CURLOPT_SSLKEY_BLOB, req->client_key_pem);
        curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (req->insecure_skip_verify) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

static void
set_request(CURL *c, const struct pc_http_request *req, struct transfer *t)
{
    const char *method = req->method ? req->method : "GET";

    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 0L);
    if (req->low_speed_secs > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, req->low_speed_secs);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (req->body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    if (req->basic_user != NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, req->basic_user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, req->basic_password ? req->basic_password : "");
    }
    set_tls(c, req);
}

int
pc_http_do(const struct pc_http_request *req, struct pc_http_response *resp)
{
    struct transfer t = {.req = req, .resp = resp};
    struct curl_slist *headers = NULL;
    char *ctype = NULL;
    CURL *c = NULL;
    CURLcode cc;
    int rc = 0;

    memset(resp, 0, sizeof(*resp));
    pc_buf_init(&resp->body, req->max_response ? req->max_response : DEFAULT_MAX_RESPONSE);
    c = curl_easy_init();
    if (c == NULL)
        abort();
    headers = build_headers(req);
    set_request(c, req, &t);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, resp->error);
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype != NULL)
        snprintf(resp->content_type, sizeof(resp->content_type), "%s", ctype);
    if (t.callback_rc != 0) {
        rc = t.callback_rc;
        if (rc == PC_ETOOBIG)
            snprintf(resp->error, sizeof(resp->error), "response body too big");
    } else if (cc != CURLE_OK) {
        if (resp->error[0] == '\0')
            snprintf(resp->error, sizeof(resp->error), "%s", curl_easy_strerror(cc));
        rc = PC_EIO;
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return rc;
}

void
pc_http_response_release(struct pc_http_response *resp)
{
    pc_buf_release(&resp->body);
}

char *
pc_url_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = pc_xmalloc(strlen(s) * 3 + 1), *o = out;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *
pc_url_decode(const char *s, size_t n, bool form)
{
    char *out = pc_xmalloc(n + 1), *o = out;

    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = form && s[i] == '+' ? ' ' : s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
        int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi << 4 | lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* Length of the dot ("." or "%2e") at s, or 0. */
static size_t
dot_at(const char *s)
{
    if (s[0] == '.')
        return 1;
    return s[0] == '%' && s[1] == '2' && (s[2] == 'e' || s[2] == 'E') ? 3 : 0;
}

static bool
has_dot_segment(const char *url)
{
    for (const char *p = strchr(url, '/'); p; p = strchr(p + 1, '/')) {
        const char *q = p + 1;
        size_t n, dots = 0;

        while (dots < 3 && (n = dot_at(q)) > 0) {
            q += n;
            dots++;
        }
        if ((dots == 1 || dots == 2) && (*q == '/' || *q == '\0'))
            return true;
    }
    return false;
}

bool
pc_url_within(const char *url, const char *prefix)
{
    size_t n = strlen(prefix);

    if (n == 0 || has_dot_segment(url) || strncmp(url, prefix, n) != 0)
        return false;
    return url[n] == '\0' || url[n] == '/' || prefix[n - 1] == '/';
}
