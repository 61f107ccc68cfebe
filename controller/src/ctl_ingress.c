/*
 * ctl_ingress.c - ingress-nginx mode, the pure part: spec.ingress, what an Ingress is to the
 * controller (its summary), which ProtectedHosts name it and what goes on it.
 *
 * A ProtectedHost with spec.ingress is enforced by ingress-nginx instead of an Istio gateway:
 * the controller puts auth-url, auth-signin and auth-response-headers on every Ingress of the
 * class whose rules name one of its hosts, in any namespace (a host belongs to its oldest
 * ProtectedHost cluster-wide, as at a shared gateway). Everything the annotations say is
 * host-agnostic but the response headers and the sign-in scheme: authd picks the policy by
 * the host, so one Ingress serving hosts of several ProtectedHosts gets one set of
 * annotations (the headers of all of them). No I/O here: ctl_ingress_run.c watches and
 * writes, `render` prints ctl_ingress_annotations.
 */
#include "controller.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "portcullis/json.h"

#define OAUTH2_PREFIX "/oauth2"
/* What one Ingress may bring into the summary (an Ingress is at most ~1.5 MB). */
#define MAX_HOSTS 256
#define MAX_SHOWN 256 /* bytes of a foreign annotation value quoted in a message */

/* ---- spec.ingress ------------------------------------------------------------------------ */

json_t *
ctl_ingress_normalize(struct ctl_errors *e, const json_t *spec)
{
    const json_t *in = json_object_get(spec, "ingress"), *v;
    const char *key, *cls = NULL, *scheme = NULL;
    json_t *out;

    if (!in || json_is_null(in))
        return NULL;
    if (!json_is_object(in)) {
        ctl_errors_add(e, "spec.ingress: must be an object");
        return NULL;
    }
    json_object_foreach((json_t *)in, key, v)
    {
        if (strcmp(key, "className") == 0 && json_is_string(v))
            cls = json_string_value(v);
        else if (strcmp(key, "scheme") == 0 && json_is_string(v))
            scheme = json_string_value(v);
        else if (strcmp(key, "className") == 0 || strcmp(key, "scheme") == 0)
            ctl_errors_add(e, "spec.ingress.%s: must be a string", key);
        else
            ctl_errors_add(e, "spec.ingress.%s: unknown field", key);
    }
    if (!cls)
        ctl_errors_add(e, "spec.ingress.className: Required value: the IngressClass of the "
                          "Ingresses that serve the hosts");
    else if (!ctl_valid_dns_name(cls, false))
        ctl_errors_add(e, "spec.ingress.className: \"%s\" is not an IngressClass name", cls);
    if (scheme && strcmp(scheme, "https") && strcmp(scheme, "http"))
        ctl_errors_add(e,
                       "spec.ingress.scheme: Unsupported value: \"%s\": supported values: "
                       "\"https\", \"http\"",
                       scheme);
    out = json_pack("{s:s}", "className", cls ? cls : "");
    if (scheme)
        json_object_set_new(out, "scheme", json_string(scheme));
    return out;
}

/* ingress-nginx refuses a location whose auth-response-headers has another character. */
static bool
nginx_header_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return false;
    return true;
}

void
ctl_ingress_check(struct ctl_errors *e, const json_t *spec)
{
    size_t i;
    json_t *h;

    if (!ctl_ingress_class(spec))
        return;
    json_array_foreach(json_object_get(spec, "upstreamHeaders"), i, h)
    {
        const char *name = pc_json_str(h, "name");

        if (name && ctl_valid_header_name(name) && !nginx_header_name(name))
            ctl_errors_add(e,
                           "spec.upstreamHeaders[%zu].name: \"%s\": with spec.ingress only "
                           "letters, digits, '-' and '_' (ingress-nginx refuses the location "
                           "otherwise)",
                           i, name);
    }
}

const char *
ctl_ingress_class(const json_t *spec)
{
    return pc_json_str(json_object_get(spec, "ingress"), "className");
}

/* ---- what a ProtectedHost asks for -------------------------------------------------------- */

json_t *
ctl_ingress_view(const char *id, const json_t *spec)
{
    const json_t *ing = json_object_get(spec, "ingress");
    const char *scheme = pc_json_str(ing, "scheme");
    json_t *headers = json_array(), *h;
    size_t i;

    if (!ctl_ingress_class(spec)) {
        json_decref(headers);
        return NULL;
    }
    json_array_foreach(json_object_get(spec, "upstreamHeaders"), i, h)
        json_array_append(headers, json_object_get(h, "name"));
    if (json_is_true(json_object_get(spec, "passIDToken")))
        json_array_append_new(headers, json_string("Authorization"));
    return json_pack("{s:s,s:s,s:O,s:o,s:s,s:s}", "id", id, "class", ctl_ingress_class(spec),
                     "hosts", json_object_get(spec, "hosts"), "headers", headers, "scheme",
                     scheme ? scheme : "", "callback",
                     pc_json_str(json_object_get(spec, "oidc"), "callbackPath"));
}

char *
ctl_ingress_view_text(const char *id, const json_t *spec)
{
    json_t *v = ctl_ingress_view(id, spec);
    char *text = v ? pc_json_dumps_sorted(v) : NULL;

    json_decref(v);
    return text;
}

char *
ctl_ingress_auth_url(const struct ctl_authd_opts *o)
{
    return pc_xasprintf("http://%s.%s.svc.cluster.local:%d/oauth2/auth",
                        o->service ? o->service : "portcullis-authd",
                        o->namespace ? o->namespace : "portcullis-system",
                        o->port > 0 ? o->port : 4180);
}

/* Appends the names of headers (an array of strings) not in out yet (case-insensitively). */
static void
add_headers(json_t *out, const json_t *headers)
{
    size_t i, j;
    json_t *h, *k;

    json_array_foreach(headers, i, h)
    {
        bool seen = false;

        json_array_foreach(out, j, k) seen =
            seen || strcasecmp(json_string_value(k), json_string_value(h)) == 0;
        if (!seen)
            json_array_append(out, h);
    }
}

static json_t *
annotations(const struct ctl_authd_opts *o, const char *scheme, const json_t *headers)
{
    char *url = ctl_ingress_auth_url(o);
    struct pc_buf b;
    size_t i;
    json_t *h, *out;

    pc_buf_init(&b, 0);
    json_array_foreach(headers, i, h)
        pc_buf_appendf(&b, "%s%s", i ? "," : "", json_string_value(h));
    /* $http_host, not $host: the port stays (and it is the host X-Original-URL names). The
     * rd parameter makes ingress-nginx return the URL as it is, escaped request URI included. */
    out = json_pack("{s:s,s:s+,s:s}", CTL_ANNOT_AUTH_URL, url, CTL_ANNOT_AUTH_SIGNIN, scheme,
                    "://$http_host" OAUTH2_PREFIX "/start?rd=$escaped_request_uri",
                    CTL_ANNOT_AUTH_HEADERS, pc_buf_str(&b));
    pc_buf_release(&b);
    free(url);
    return out;
}

json_t *
ctl_ingress_annotations(const json_t *view, const struct ctl_authd_opts *o, const char *scheme)
{
    const char *own = pc_json_str(view, "scheme");

    return annotations(o, own && *own ? own : scheme, json_object_get(view, "headers"));
}

/* ---- what an Ingress is -------------------------------------------------------------------- */

static void
add_unique(json_t *set, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(set, i, v)
    {
        if (strcmp(json_string_value(v), s) == 0)
            return;
    }
    json_array_append_new(set, json_string(s));
}

static void
summarize_rules(json_t *out, const json_t *rules)
{
    json_t *hosts = json_object_get(out, "hosts"), *paths = json_object_get(out, "paths");
    size_t i, j;
    json_t *r, *p;

    json_array_foreach(rules, i, r)
    {
        const char *host = pc_json_str(r, "host");

        if (host && *host && json_array_size(hosts) < MAX_HOSTS)
            add_unique(hosts, host);
        json_array_foreach(pc_json_path(r, "http.paths"), j, p)
        {
            const char *path = pc_json_str(p, "path");

            if (json_is_array(paths))
                add_unique(paths, path && *path ? path : "/");
            if (json_array_size(paths) > CTL_INGRESS_MAX_PATHS)
                json_object_set_new(out, "paths", paths = json_null());
        }
    }
}

json_t *
ctl_ingress_summary(const json_t *ing)
{
    static const char *const keep[][2] = {{CTL_ANNOT_AUTH_URL, "url"},
                                          {CTL_ANNOT_AUTH_SIGNIN, "signin"},
                                          {CTL_ANNOT_AUTH_HEADERS, "headers"},
                                          {CTL_ANNOT_PROTECTED_BY, "by"}};
    const json_t *md = json_object_get(ing, "metadata"), *spec = json_object_get(ing, "spec");
    const json_t *annot = json_object_get(md, "annotations");
    const char *cls = pc_json_str(spec, "ingressClassName");
    const char *ns = pc_json_str(md, "namespace"), *name = pc_json_str(md, "name");
    json_t *out, *ann = json_object();

    if (!cls)
        cls = pc_json_str(annot, "kubernetes.io/ingress.class");
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        if (pc_json_str(annot, keep[i][0]))
            json_object_set_new(ann, keep[i][1], json_string(pc_json_str(annot, keep[i][0])));
    out = json_pack("{s:s,s:s,s:s,s:[],s:[],s:b,s:o}", "ns", ns ? ns : "", "name", name ? name : "",
                    "class", cls ? cls : "", "hosts", "paths", "tls",
                    json_array_size(json_object_get(spec, "tls")) > 0, "ann", ann);
    summarize_rules(out, json_object_get(spec, "rules"));
    return out;
}

/* ---- host patterns --------------------------------------------------------------------------- */

/* Whether name lies strictly below domain ("a.b.c" below "b.c"). */
static bool
below(const char *name, const char *domain)
{
    size_t n = strlen(name), d = strlen(domain);

    return n > d + 1 && name[n - d - 1] == '.' && strcmp(name + n - d, domain) == 0;
}

bool
ctl_ingress_hosts_overlap(const char *a, const char *b)
{
    bool wa = strncmp(a, "*.", 2) == 0, wb = strncmp(b, "*.", 2) == 0;
    const char *sa = wa ? a + 2 : a, *sb = wb ? b + 2 : b;

    if (!wa && !wb)
        return strcmp(a, b) == 0;
    if (wa && wb)
        return strcmp(sa, sb) == 0 || below(sa, sb) || below(sb, sa);
    return wa ? below(b, sa) : below(a, sb);
}

void
ctl_ingress_index_init(struct ctl_ingress_index *x, const json_t *views)
{
    size_t i, j;
    json_t *v, *h;

    x->views = views;
    x->hosts = json_object();
    json_array_foreach(views, i, v)
    {
        json_array_foreach(json_object_get(v, "hosts"), j, h)
        {
            const char *host = json_string_value(h);
            json_t *list = json_object_get(x->hosts, host);

            if (!list)
                json_object_set_new(x->hosts, host, list = json_array());
            json_array_append_new(list, json_integer((json_int_t)i));
        }
    }
}

void
ctl_ingress_index_release(struct ctl_ingress_index *x)
{
    json_decref(x->hosts);
    x->hosts = NULL;
}

/* The indices of the views one Ingress names: few, so a small set kept sorted. */
struct marks {
    size_t *v, n, cap;
};

static void
mark(const struct ctl_ingress_index *x, const char *host, struct marks *seen)
{
    size_t i, at;
    json_t *n;

    json_array_foreach(json_object_get(x->hosts, host), i, n)
    {
        size_t idx = (size_t)json_integer_value(n);

        for (at = 0; at < seen->n && seen->v[at] < idx; at++)
            ;
        if (at < seen->n && seen->v[at] == idx)
            continue;
        if (seen->n == seen->cap) {
            seen->cap = seen->cap ? 2 * seen->cap : 8;
            seen->v = pc_xrealloc(seen->v, seen->cap * sizeof(*seen->v));
        }
        memmove(seen->v + at + 1, seen->v + at, (seen->n - at) * sizeof(*seen->v));
        seen->v[at] = idx;
        seen->n++;
    }
}

/* Marks the views with a host that overlaps g: g itself, the wildcards above it, and for a
 * wildcard g every host below it (a scan: wildcard rules are rare). */
static void
mark_host(const struct ctl_ingress_index *x, const char *g, struct marks *seen)
{
    bool wild = strncmp(g, "*.", 2) == 0;
    const char *base = wild ? g + 2 : g;
    const char *key;
    json_t *v;

    mark(x, g, seen);
    for (const char *p = strchr(base, '.'); p; p = strchr(p + 1, '.')) {
        char *w = pc_xasprintf("*%s", p);

        mark(x, w, seen);
        free(w);
    }
    if (wild) {
        char *w = pc_xasprintf("*.%s", base);

        mark(x, w, seen);
        free(w);
        json_object_foreach(x->hosts, key, v)
        {
            if (below(strncmp(key, "*.", 2) == 0 ? key + 2 : key, base))
                mark(x, key, seen);
        }
    } else {
        char *w = pc_xasprintf("*.%s", base);

        mark(x, w, seen);
        free(w);
    }
}

json_t *
ctl_ingress_index_match(const struct ctl_ingress_index *x, const json_t *summary)
{
    struct marks seen = {0};
    json_t *out = json_array(), *h;
    size_t i;

    json_array_foreach(json_object_get(summary, "hosts"), i, h)
        mark_host(x, json_string_value(h), &seen);
    for (i = 0; i < seen.n; i++)
        json_array_append(out, json_array_get(x->views, seen.v[i]));
    free(seen.v);
    return out;
}

/* ---- the decision ------------------------------------------------------------------------ */

static void
outcome(struct ctl_ingress_plan *p, const json_t *view, enum ctl_ingress_outcome kind,
        const char *msg)
{
    json_object_set_new(p->outcomes, pc_json_str(view, "id"),
                        json_pack("[i,s]", (int)kind, msg ? msg : ""));
}

static void
outcome_all(struct ctl_ingress_plan *p, const json_t *views, enum ctl_ingress_outcome kind,
            const char *msg)
{
    size_t i;
    json_t *v;

    json_array_foreach(views, i, v) outcome(p, v, kind, msg);
}

/* The hosts of view that the Ingress's rules name, ", "-joined (new). */
static char *
named_hosts(const json_t *view, const json_t *summary)
{
    struct pc_buf b;
    size_t i, j;
    json_t *h, *g;

    pc_buf_init(&b, 0);
    json_array_foreach(json_object_get(summary, "hosts"), i, g)
    {
        bool hit = false;

        json_array_foreach(json_object_get(view, "hosts"), j, h) hit =
            hit || ctl_ingress_hosts_overlap(json_string_value(h), json_string_value(g));
        if (hit)
            pc_buf_appendf(&b, "%s%s", b.len ? ", " : "", json_string_value(g));
    }
    return pc_buf_detach(&b);
}

/* Every path authd's own (/oauth2/..., a callback path): the login route, never annotated. */
static bool
signin_route(const json_t *summary, const json_t *views)
{
    const json_t *paths = json_object_get(summary, "paths");
    size_t i, j;
    json_t *p, *v;

    if (!json_is_array(paths) || json_array_size(paths) == 0)
        return false;
    json_array_foreach(paths, i, p)
    {
        const char *s = json_string_value(p);
        bool ours = strcmp(s, OAUTH2_PREFIX) == 0 ||
                    strncmp(s, OAUTH2_PREFIX "/", sizeof(OAUTH2_PREFIX)) == 0;

        json_array_foreach(views, j, v) ours = ours || strcmp(s, pc_json_str(v, "callback")) == 0;
        if (!ours)
            return false;
    }
    return true;
}

/* The sign-in scheme every view agrees on (borrowed), or NULL with *why new. */
static const char *
agreed_scheme(const json_t *summary, const json_t *views, char **why)
{
    const char *from_tls = json_is_true(json_object_get(summary, "tls")) ? "https" : "http";
    const char *agreed = NULL, *first = NULL;
    size_t i;
    json_t *v;

    json_array_foreach(views, i, v)
    {
        const char *s = pc_json_str(v, "scheme");

        s = *s ? s : from_tls;
        if (agreed && strcmp(agreed, s)) {
            *why = pc_xasprintf("ProtectedHosts %s and %s share it but ask for sign-in scheme "
                                "%s and %s: not annotated",
                                first, pc_json_str(v, "id"), agreed, s);
            return NULL;
        }
        agreed = s;
        first = pc_json_str(v, "id");
    }
    return agreed;
}

/* The Ingress's hosts no view names, as a note for the annotated outcome (new, "" if none). */
static char *
unnamed_note(const json_t *summary, const json_t *views)
{
    struct pc_buf b;
    size_t i, j, k;
    json_t *g, *v, *h;

    pc_buf_init(&b, 0);
    json_array_foreach(json_object_get(summary, "hosts"), i, g)
    {
        bool hit = false;

        json_array_foreach(views, j, v) json_array_foreach(json_object_get(v, "hosts"), k, h) hit =
            hit || ctl_ingress_hosts_overlap(json_string_value(h), json_string_value(g));
        if (!hit)
            pc_buf_appendf(&b, "%s%s", b.len ? ", " : "", json_string_value(g));
    }
    if (b.len == 0) {
        pc_buf_release(&b);
        return pc_xstrdup("");
    }
    {
        char *note = pc_xasprintf("it also serves %s, which authd decides by its own "
                                  "ProtectedHost or refuses (403)",
                                  b.data);

        pc_buf_release(&b);
        return note;
    }
}

static bool
same_ann(const json_t *have, const json_t *want)
{
    static const char *const pairs[][2] = {{"url", CTL_ANNOT_AUTH_URL},
                                           {"signin", CTL_ANNOT_AUTH_SIGNIN},
                                           {"headers", CTL_ANNOT_AUTH_HEADERS},
                                           {"by", CTL_ANNOT_PROTECTED_BY}};

    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        const char *a = pc_json_str(have, pairs[i][0]), *b = pc_json_str(want, pairs[i][1]);

        if (!a || !b || strcmp(a, b) != 0)
            return false;
    }
    return true;
}

/* The views of the Ingress's class; the others get a conflict outcome. New array. */
static json_t *
of_class(struct ctl_ingress_plan *p, const json_t *summary, const json_t *views, const char *id)
{
    const char *cls = pc_json_str(summary, "class");
    json_t *mine = json_array(), *v;
    size_t i;

    json_array_foreach(views, i, v)
    {
        char *hosts, *msg;

        if (strcmp(pc_json_str(v, "class"), cls) == 0) {
            json_array_append(mine, v);
            continue;
        }
        hosts = named_hosts(v, summary);
        msg = *cls ? pc_xasprintf("Ingress %s serves %s with class \"%s\", not \"%s\": not "
                                  "annotated",
                                  id, hosts, cls, pc_json_str(v, "class"))
                   : pc_xasprintf("Ingress %s serves %s without an ingressClassName: not "
                                  "annotated (class \"%s\" wanted)",
                                  id, hosts, pc_json_str(v, "class"));
        outcome(p, v, CTL_ING_CONFLICT, msg);
        free(msg);
        free(hosts);
    }
    return mine;
}

static json_t *
wanted(const json_t *mine, const struct ctl_authd_opts *o, const char *scheme)
{
    json_t *headers = json_array(), *out, *v;
    struct pc_buf by;
    size_t i;

    pc_buf_init(&by, 0);
    json_array_foreach(mine, i, v)
    {
        add_headers(headers, json_object_get(v, "headers"));
        pc_buf_appendf(&by, "%s%s", i ? "," : "", pc_json_str(v, "id"));
    }
    out = annotations(o, scheme, headers);
    json_object_set_new(out, CTL_ANNOT_PROTECTED_BY, json_string(by.data));
    pc_buf_release(&by);
    json_decref(headers);
    return out;
}

void
ctl_ingress_decide(const json_t *summary, const json_t *views, const struct ctl_authd_opts *o,
                   struct ctl_ingress_plan *p)
{
    const json_t *have = json_object_get(summary, "ann");
    char *id = pc_xasprintf("%s/%s", pc_json_str(summary, "ns"), pc_json_str(summary, "name"));
    char *why = NULL, *note = NULL;
    const char *scheme, *url = pc_json_str(have, "url");
    json_t *mine;

    memset(p, 0, sizeof(*p));
    p->outcomes = json_object();
    mine = of_class(p, summary, views, id);
    /* Nothing of ours belongs here: what we wrote before (our marker says so) goes. */
    p->write = pc_json_str(have, "by") != NULL;
    if (json_array_size(mine) == 0)
        goto out;
    if (signin_route(summary, mine)) {
        outcome_all(p, mine, CTL_ING_SIGNIN, id);
        goto out;
    }
    p->write = false;
    if (!(scheme = agreed_scheme(summary, mine, &why))) {
        char *msg = pc_xasprintf("Ingress %s: %s", id, why);

        outcome_all(p, mine, CTL_ING_CONFLICT, msg);
        free(msg);
        goto out;
    }
    p->want = wanted(mine, o, scheme);
    if (url && !pc_json_str(have, "by") &&
        strcmp(url, pc_json_str(p->want, CTL_ANNOT_AUTH_URL)) != 0) {
        /* Another gate protects it already: never replaced, never half-merged. */
        char *msg = pc_xasprintf("Ingress %s carries auth-url \"%.*s\", which portcullis did "
                                 "not set: left alone",
                                 id, MAX_SHOWN, url);

        outcome_all(p, mine, CTL_ING_CONFLICT, msg);
        free(msg);
        json_decref(p->want);
        p->want = NULL;
        goto out;
    }
    p->write = !same_ann(have, p->want);
    note = unnamed_note(summary, mine);
    outcome_all(p, mine, CTL_ING_ANNOTATED, note);
out:
    free(note);
    free(why);
    free(id);
    json_decref(mine);
}

void
ctl_ingress_plan_release(struct ctl_ingress_plan *p)
{
    json_decref(p->want);
    json_decref(p->outcomes);
    memset(p, 0, sizeof(*p));
}

/* ---- what a ProtectedHost's status says --------------------------------------------------- */

#define REPORT_MAX 1024

/* Appends s to b unless b is full; counts what was left out. */
static void
report_add(struct pc_buf *b, size_t *left_out, const char *sep, const char *s)
{
    if (b->len + strlen(s) + strlen(sep) > REPORT_MAX) {
        (*left_out)++;
        return;
    }
    pc_buf_appendf(b, "%s%s", b->len ? sep : "", s);
}

static char *
report_finish(struct pc_buf *b, size_t left_out)
{
    if (left_out)
        pc_buf_appendf(b, " (%zu more)", left_out);
    return pc_buf_detach(b);
}

void
ctl_ingress_report(const json_t *outcomes, const char *cls, const char **reason, char **message)
{
    struct pc_buf bad, ok, notes;
    size_t bad_out = 0, ok_out = 0, notes_out = 0, nok = 0, nsignin = 0;
    enum ctl_ingress_outcome worst = CTL_ING_ANNOTATED;
    const char *ing;
    json_t *o;

    pc_buf_init(&bad, 0);
    pc_buf_init(&ok, 0);
    pc_buf_init(&notes, 0);
    json_object_foreach((json_t *)outcomes, ing, o)
    {
        enum ctl_ingress_outcome k =
            (enum ctl_ingress_outcome)json_integer_value(json_array_get(o, 0));
        const char *msg = json_string_value(json_array_get(o, 1));

        if (k == CTL_ING_CONFLICT || k == CTL_ING_FAILED) {
            worst = worst == CTL_ING_CONFLICT ? worst : k;
            report_add(&bad, &bad_out, "; ", msg);
        } else if (k == CTL_ING_SIGNIN) {
            char *s = pc_xasprintf("%s is the sign-in route", ing);

            nsignin++;
            report_add(&notes, &notes_out, "; ", s);
            free(s);
        } else {
            char *s = *msg ? pc_xasprintf("%s (%s)", ing, msg) : pc_xstrdup(ing);

            nok++;
            report_add(&ok, &ok_out, ", ", s);
            free(s);
        }
    }
    if (bad.len) {
        *reason = worst == CTL_ING_CONFLICT ? "IngressConflict" : "IngressNotApplied";
        *message = report_finish(&bad, bad_out);
    } else if (nok == 0) {
        *reason = "NoIngress";
        *message = pc_xasprintf("no Ingress of class \"%s\" serves its hosts%s%s", cls,
                                nsignin ? " but the sign-in route: " : "",
                                nsignin ? pc_buf_str(&notes) : "");
    } else {
        char *list = report_finish(&ok, ok_out), *extra = report_finish(&notes, notes_out);

        *reason = NULL;
        *message = pc_xasprintf("Ingress%s %s annotated (class \"%s\")%s%s", nok > 1 ? "es" : "",
                                list, cls, *extra ? "; " : "", extra);
        free(list);
        free(extra);
    }
    pc_buf_release(&bad);
    pc_buf_release(&ok);
    pc_buf_release(&notes);
}
