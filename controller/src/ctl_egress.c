/*
 * ctl_egress.c - the ServiceEntries that let authd reach each issuer in a mesh whose
 * outboundTrafficPolicy is REGISTRY_ONLY (--egress-service-entries).
 *
 * One ServiceEntry per distinct issuer host, in authd's namespace and exported only to it
 * (exportTo ["."]), so opening the IdP to authd opens it to nobody else. Each port an issuer
 * URL names on that host is one port of the entry: TLS for https (authd originates TLS
 * itself, so the sidecar passes it through by SNI), HTTP for the http issuers that
 * --allow-insecure-issuers admits. Pure: sets in, objects out.
 */
#include "controller.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/json.h"

static int
compare_strs(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A new array of obj's keys in byte order. */
static json_t *
sorted_keys(const json_t *obj)
{
    size_t n = json_object_size(obj), i = 0;
    const char **v = pc_xcalloc(n + 1, sizeof(*v));
    json_t *out = json_array(), *val;
    const char *k;

    json_object_foreach((json_t *)obj, k, val) v[i++] = k;
    qsort(v, n, sizeof(*v), compare_strs);
    for (i = 0; i < n; i++)
        json_array_append_new(out, json_string(v[i]));
    free(v);
    return out;
}

int
ctl_issuer_endpoint(const char *issuer_url, char **host, int *port, bool *tls)
{
    const char *auth, *end, *at, *colon;
    char *h = NULL;
    long p;

    *host = NULL;
    if (strncmp(issuer_url, "https://", 8) == 0) {
        *tls = true;
        auth = issuer_url + 8;
    } else if (strncmp(issuer_url, "http://", 7) == 0) {
        *tls = false;
        auth = issuer_url + 7;
    } else {
        return PC_EINVAL;
    }
    end = auth + strcspn(auth, "/?#");
    /* userinfo is not part of the host */
    for (at = auth; at < end; at++)
        if (*at == '@')
            auth = at + 1;
    colon = memchr(auth, ':', (size_t)(end - auth));
    p = *tls ? 443 : 80;
    if (colon) {
        char *stop = NULL;

        if (colon + 1 == end || !isdigit((unsigned char)colon[1]))
            return PC_EINVAL;
        p = strtol(colon + 1, &stop, 10);
        if (stop != end || p < 1 || p > 65535)
            return PC_EINVAL;
    }
    h = pc_xstrndup(auth, (size_t)((colon ? colon : end) - auth));
    for (char *c = h; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    /* A ServiceEntry resolved by DNS needs a DNS name (no IPv6 literal, no empty host). */
    if (!ctl_valid_dns_name(h, false)) {
        free(h);
        return PC_EINVAL;
    }
    *host = h;
    *port = (int)p;
    return 0;
}

void
ctl_egress_add(json_t *set, const char *issuer_url)
{
    char *host = NULL, key[16];
    json_t *ports;
    bool tls;
    int port;

    if (!issuer_url || ctl_issuer_endpoint(issuer_url, &host, &port, &tls) < 0)
        return;
    if (!(ports = json_object_get(set, host))) {
        ports = json_object();
        json_object_set_new(set, host, ports);
    }
    snprintf(key, sizeof(key), "%05d", port); /* zero-padded: keys sort as numbers */
    /* The same port named by an https and an http issuer: TLS, the secure reading. */
    if (tls || !json_object_get(ports, key))
        json_object_set_new(ports, key, json_string(tls ? "TLS" : "HTTP"));
    free(host);
}

char *
ctl_egress_name(const char *host)
{
    return ctl_k8s_name("portcullis", "egress", host, 63);
}

static json_t *
render_ports(const json_t *ports)
{
    json_t *out = json_array(), *keys = sorted_keys(ports), *k;
    size_t i, n = json_array_size(keys);

    json_array_foreach(keys, i, k)
    {
        const char *proto = pc_json_str(ports, json_string_value(k));
        int number = atoi(json_string_value(k));
        const char *base = strcmp(proto, "TLS") == 0 ? "https" : "http";
        bool plain = n == 1 || number == (strcmp(proto, "TLS") == 0 ? 443 : 80);
        json_t *name = plain ? json_string(base) : json_sprintf("%s-%d", base, number);

        json_array_append_new(
            out, json_pack("{s:i,s:o,s:s}", "number", number, "name", name, "protocol", proto));
    }
    json_decref(keys);
    return out;
}

json_t *
ctl_render_egress(const json_t *set, const struct ctl_authd_opts *o)
{
    json_t *out = json_array(), *keys = sorted_keys(set), *k;
    const char *ns = o->namespace ? o->namespace : "portcullis-system";
    size_t i;

    json_array_foreach(keys, i, k)
    {
        const char *host = json_string_value(k);
        char *name = ctl_egress_name(host);

        json_array_append_new(out, json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s},s:{s:s}},"
                                             "s:{s:[s],s:s,s:o,s:s,s:[s]}}",
                                             "apiVersion", "networking.istio.io/v1", "kind",
                                             "ServiceEntry", "metadata", "name", name, "namespace",
                                             ns, "labels", CTL_LABEL_MANAGED_BY, "portcullis",
                                             CTL_LABEL_EGRESS, "issuer", "annotations",
                                             CTL_ANNOT_ISSUER_HOST, host, "spec", "hosts", host,
                                             "location", "MESH_EXTERNAL", "ports",
                                             render_ports(json_object_get(set, host)), "resolution",
                                             "DNS", "exportTo", "."));
        free(name);
    }
    json_decref(keys);
    return out;
}

json_t *
ctl_egress_stale(const json_t *existing, const json_t *wanted)
{
    json_t *keep = json_object(), *out = json_array(), *v;
    size_t i;

    json_array_foreach(wanted, i, v)
        json_object_set_new(keep, pc_json_str(json_object_get(v, "metadata"), "name"), json_true());
    json_array_foreach(existing, i, v)
    {
        if (json_is_string(v) && !json_object_get(keep, json_string_value(v)))
            json_array_append(out, v);
    }
    json_decref(keep);
    return out;
}
