/*
 * ctl_pack.c - the ProtectedHost cache's texts, deflated against a typical ProtectedHost.
 *
 * The controller keeps every ProtectedHost it watches as compact JSON (ctl_reconcile.c). With
 * the schema's defaults filled in by the apiserver, an ordinary one is about 1.7 KB, almost
 * all of it the same field names and default values as every other; at 10,000 hosts that was
 * the largest part of the controller's memory. Raw deflate (zlib) with a preset dictionary of
 * such an object brings one down to about a hundred bytes, as base64url so the cache stays a
 * jansson object of strings. Inflating is bounded by the largest object a watch line carries.
 */
#include "controller.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "portcullis/b64.h"

/* A ProtectedHost as the apiserver returns it, in its order, with the CRD's defaults and a
 * status: what most cached texts repeat. */
static const char dictionary[] =
    "{\"apiVersion\":\"portcullis.io/v1alpha1\",\"kind\":\"ProtectedHost\",\"metadata\":{"
    "\"annotations\":{},\"labels\":{},\"deletionTimestamp\":\"2026-01-01T00:00:00Z\","
    "\"creationTimestamp\":\"2026-01-01T00:00:00Z\",\"finalizers\":[\"" CTL_FINALIZER "\"],"
    "\"generation\":1,\"name\":\"\",\"namespace\":\"\",\"resourceVersion\":\"\",\"uid\":\"\"},"
    "\"spec\":{\"access\":{\"allowUnverifiedEmail\":false,\"allowedEmailDomains\":[],"
    "\"allowedEmails\":[],\"allowedGroups\":[\"\"]},\"bearerTokens\":{\"audiences\":[],"
    "\"enabled\":false},\"gateway\":{\"namespace\":\"istio-system\"},\"hosts\":[\"\"],"
    "\"mode\":\"Enforce\",\"oidc\":{\"callbackPath\":\"/oauth2/callback\",\"claims\":{"
    "\"email\":\"email\",\"groups\":\"groups\",\"username\":\"preferred_username\"},"
    "\"clientID\":\"\",\"clientSecretRef\":{\"key\":\"client-secret\",\"name\":\"\"},"
    "\"issuerURL\":\"https://\",\"scopes\":[\"openid\",\"email\",\"profile\"]},"
    "\"passIDToken\":false,\"paths\":{\"api\":[],\"skip\":[]},\"session\":{"
    "\"cookieDomain\":\"\",\"cookieName\":\"_portcullis\",\"lifetime\":\"12h\",\"refresh\":"
    "\"0s\",\"sameSite\":\"Lax\",\"store\":\"cookie\"},\"upstreamHeaders\":[{\"claim\":"
    "\"sub\",\"name\":\"X-Auth-Request-User\"},{\"claim\":\"email\",\"name\":"
    "\"X-Auth-Request-Email\"},{\"claim\":\"preferred_username\",\"name\":"
    "\"X-Auth-Request-Preferred-Username\"},{\"claim\":\"groups\",\"name\":"
    "\"X-Auth-Request-Groups\"}]},\"status\":{\"observedGeneration\":1,\"conditions\":[{"
    "\"type\":\"Accepted\",\"status\":\"True\",\"reason\":\"Accepted\",\"message\":\"spec is "
    "valid and its hosts and session cookie are not claimed by an older ProtectedHost\","
    "\"observedGeneration\":1,\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"},{\"type\":"
    "\"Ready\",\"status\":\"True\",\"reason\":\"Ready\",\"message\":\"every authd replica "
    "enforces it\",\"observedGeneration\":1,\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"}],"
    "\"authorizationPolicy\":\"istio-system/portcullis-\"}}";

char *
ctl_pack_text(const char *text, size_t len)
{
    z_stream z = {0};
    uLong cap;
    unsigned char *out;
    char *b64 = NULL;

    if (deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    if (deflateSetDictionary(&z, (const Bytef *)dictionary, sizeof(dictionary) - 1) != Z_OK)
        abort();
    cap = deflateBound(&z, (uLong)len);
    out = pc_xmalloc(cap);
    z.next_in = (Bytef *)(uintptr_t)text;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        abort(); /* deflateBound says it fits */
    b64 = pc_b64url_encode(out, z.total_out);
    deflateEnd(&z);
    free(out);
    return b64;
}

int
ctl_unpack_text(const char *packed, size_t max, char **text)
{
    unsigned char *in = NULL, chunk[16384];
    size_t inlen = 0;
    struct pc_buf b;
    z_stream z = {0};
    int zr;

    *text = NULL;
    if (pc_b64url_decode(packed, strlen(packed), &in, &inlen) != 0 || inlen > UINT32_MAX) {
        free(in);
        return PC_EINVAL;
    }
    if (inflateInit2(&z, -15) != Z_OK ||
        inflateSetDictionary(&z, (const Bytef *)dictionary, sizeof(dictionary) - 1) != Z_OK)
        abort();
    pc_buf_init(&b, max);
    z.next_in = in;
    z.avail_in = (uInt)inlen;
    do {
        z.next_out = chunk;
        z.avail_out = sizeof(chunk);
        zr = inflate(&z, Z_NO_FLUSH);
        if ((zr == Z_OK || zr == Z_STREAM_END) &&
            pc_buf_append(&b, chunk, sizeof(chunk) - z.avail_out) != 0)
            zr = Z_BUF_ERROR; /* past max */
    } while (zr == Z_OK && (z.avail_in > 0 || z.avail_out == 0));
    /* Anything but the stream's end with all input used is refused (truncated, corrupt). */
    if (zr == Z_STREAM_END && z.avail_in == 0)
        *text = pc_buf_detach(&b);
    inflateEnd(&z);
    pc_buf_release(&b);
    free(in);
    return *text ? 0 : PC_EINVAL;
}
