/*
 * test_ctl_ingress.c - ingress-nginx mode: spec.ingress, Ingress summaries, which
 * ProtectedHosts name which Ingress, what goes on it (annotated, the sign-in route, left alone)
 * and what the ProtectedHost's Ready says about it.
 *
 * JSON in the tables is written with ' for " (J() swaps them back).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "controller.h"
#include "portcullis/json.h"

static json_t *
J(const char *s)
{
    char *copy = pc_xstrdup(s);
    json_error_t err;
    json_t *j;

    for (char *p = copy; *p; p++)
        if (*p == '\'')
            *p = '"';
    j = json_loads(copy, 0, &err);
    if (!j)
        fail_msg("bad test JSON %s: %s", s, err.text);
    free(copy);
    return j;
}

#define BASE "'hosts':['app.example.com'],'oidc':{'issuerURL':'https://idp','clientID':'c'}"

/* ---- spec.ingress ----------------------------------------------------------------------- */

struct spec_case {
    const char *spec;
    const char *error;   /* substring of the joined errors, NULL: valid */
    const char *ingress; /* the canonical spec.ingress, NULL: none */
};

static const struct spec_case spec_cases[] = {
    {"{" BASE "}", NULL, NULL},
    {"{" BASE ",'ingress':{'className':'nginx'}}", NULL, "{'className':'nginx'}"},
    {"{" BASE ",'ingress':{'className':'nginx','scheme':'http'}}", NULL,
     "{'className':'nginx','scheme':'http'}"},
    {"{" BASE ",'ingress':{}}", "spec.ingress.className: Required value", NULL},
    {"{" BASE ",'ingress':{'className':'Nginx'}}", "\"Nginx\" is not an IngressClass name", NULL},
    {"{" BASE ",'ingress':{'className':7}}", "spec.ingress.className: must be a string", NULL},
    {"{" BASE ",'ingress':{'className':'nginx','scheme':'ftp'}}",
     "spec.ingress.scheme: Unsupported value: \"ftp\"", NULL},
    {"{" BASE ",'ingress':{'className':'nginx','class':'x'}}", "spec.ingress.class: unknown field",
     NULL},
    {"{" BASE ",'ingress':'nginx'}", "spec.ingress: must be an object", NULL},
    {"{" BASE ",'ingress':null}", NULL, NULL},
    /* ingress-nginx refuses header names outside [A-Za-z0-9_-] (the location is denied) */
    {"{" BASE ",'ingress':{'className':'nginx'},'upstreamHeaders':[{'name':'X.User',"
     "'claim':'sub'}]}",
     "spec.upstreamHeaders[0].name: \"X.User\": with spec.ingress only", NULL},
    {"{" BASE ",'upstreamHeaders':[{'name':'X.User','claim':'sub'}]}", NULL, NULL},
    {"{" BASE ",'ingress':{'className':'nginx'},'upstreamHeaders':[{'name':'X-User_1',"
     "'claim':'sub'}]}",
     NULL, "{'className':'nginx'}"},
};

static void
test_spec(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(spec_cases) / sizeof(spec_cases[0]); i++) {
        const struct spec_case *c = &spec_cases[i];
        json_t *spec = J(c->spec), *out = NULL;
        struct ctl_errors errs = {0};
        int rc = ctl_spec_normalize(spec, false, &out, &errs);
        char *joined = ctl_errors_join(&errs, "; ");

        if (c->error) {
            if (rc == 0 || !strstr(joined, c->error))
                fail_msg("case %zu: errors \"%s\", want \"%s\"", i, joined, c->error);
        } else if (rc != 0) {
            fail_msg("case %zu: refused: %s", i, joined);
        } else {
            json_t *want = c->ingress ? J(c->ingress) : NULL;
            const json_t *got = json_object_get(out, "ingress");

            if (!(want ? got && json_equal(want, got) : got == NULL))
                fail_msg("case %zu: spec.ingress %s", i,
                         got ? json_dumps(got, JSON_COMPACT) : "absent");
            assert_true((ctl_ingress_class(out) != NULL) == (want != NULL));
            json_decref(want);
        }
        free(joined);
        ctl_errors_release(&errs);
        json_decref(out);
        json_decref(spec);
    }
}

static void
test_view_and_annotations(void **state)
{
    struct ctl_authd_opts o = {0};
    json_t *spec = J("{" BASE ",'ingress':{'className':'nginx'},'passIDToken':true}");
    json_t *canon = NULL, *view, *ann;
    struct ctl_errors errs = {0};

    (void)state;
    assert_int_equal(ctl_spec_normalize(spec, false, &canon, &errs), 0);
    view = ctl_ingress_view("team/app", canon);
    assert_string_equal(pc_json_str(view, "class"), "nginx");
    assert_string_equal(pc_json_str(view, "callback"), "/oauth2/callback");
    assert_string_equal(pc_json_str(view, "scheme"), "");
    ann = ctl_ingress_annotations(view, &o, "https");
    assert_string_equal(
        pc_json_str(ann, CTL_ANNOT_AUTH_URL),
        "http://portcullis-authd.portcullis-system.svc.cluster.local:4180/oauth2/auth");
    assert_string_equal(pc_json_str(ann, CTL_ANNOT_AUTH_SIGNIN),
                        "https://$http_host/oauth2/start?rd=$escaped_request_uri");
    assert_string_equal(pc_json_str(ann, CTL_ANNOT_AUTH_HEADERS),
                        "X-Auth-Request-User,X-Auth-Request-Email,"
                        "X-Auth-Request-Preferred-Username,X-Auth-Request-Groups,Authorization");
    assert_int_equal(json_object_size(ann), 3);
    json_decref(ann);
    o = (struct ctl_authd_opts){.namespace = "auth", .service = "gate", .port = 8080};
    json_object_set_new(view, "scheme", json_string("http"));
    ann = ctl_ingress_annotations(view, &o, "https");
    assert_string_equal(pc_json_str(ann, CTL_ANNOT_AUTH_URL),
                        "http://gate.auth.svc.cluster.local:8080/oauth2/auth");
    assert_string_equal(pc_json_str(ann, CTL_ANNOT_AUTH_SIGNIN),
                        "http://$http_host/oauth2/start?rd=$escaped_request_uri");
    json_decref(ann);
    json_decref(view);
    json_decref(spec);
    spec = J("{" BASE "}");
    assert_null(ctl_ingress_view("team/app", spec));
    ctl_errors_release(&errs);
    json_decref(canon);
    json_decref(spec);
}

/* ---- host patterns ------------------------------------------------------------------------- */

struct overlap_case {
    const char *a, *b;
    bool overlap;
};

static const struct overlap_case overlap_cases[] = {
    {"app.example.com", "app.example.com", true},
    {"app.example.com", "api.example.com", false},
    {"*.apps.example.com", "a.apps.example.com", true},
    {"*.apps.example.com", "a.b.apps.example.com", true},
    {"*.apps.example.com", "apps.example.com", false},
    {"*.apps.example.com", "xapps.example.com", false},
    {"*.apps.example.com", "a.xapps.example.com", false},
    {"a.apps.example.com", "*.apps.example.com", true},
    {"*.apps.example.com", "*.apps.example.com", true},
    {"*.example.com", "*.apps.example.com", true},
    {"*.apps.example.com", "*.example.com", true},
    {"*.apps.example.com", "*.other.example.com", false},
};

static void
test_overlap(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(overlap_cases) / sizeof(overlap_cases[0]); i++) {
        const struct overlap_case *c = &overlap_cases[i];

        if (ctl_ingress_hosts_overlap(c->a, c->b) != c->overlap)
            fail_msg("%s vs %s: want %d", c->a, c->b, c->overlap);
    }
}

/* ---- summaries ------------------------------------------------------------------------------ */

static void
test_summary(void **state)
{
    json_t *ing = J("{'metadata':{'namespace':'team','name':'app','annotations':{"
                    "'nginx.ingress.kubernetes.io/auth-url':'http://x/auth',"
                    "'portcullis.io/protected-by':'team/app','other':'y'}},"
                    "'spec':{'ingressClassName':'nginx','tls':[{'hosts':['app.example.com']}],"
                    "'rules':[{'host':'app.example.com','http':{'paths':[{'path':'/'},"
                    "{'path':'/api'},{'pathType':'ImplementationSpecific'}]}},"
                    "{'host':'app.example.com','http':{'paths':[{'path':'/'}]}},"
                    "{'http':{'paths':[{'path':'/x'}]}},{'host':'b.example.com'}]}}");
    json_t *want = J("{'ns':'team','name':'app','class':'nginx','hosts':['app.example.com',"
                     "'b.example.com'],'paths':['/','/api','/x'],'tls':true,'ann':{"
                     "'url':'http://x/auth','by':'team/app'}}");
    json_t *s = ctl_ingress_summary(ing), *legacy, *many;
    char *dump = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);

    (void)state;
    if (!json_equal(s, want))
        fail_msg("summary %s", dump);
    free(dump);
    json_decref(s);
    json_decref(want);
    json_decref(ing);
    /* the class annotation ingress-nginx still reads, when ingressClassName is absent */
    legacy = J("{'metadata':{'name':'a','annotations':{'kubernetes.io/ingress.class':'nginx'}},"
               "'spec':{}}");
    s = ctl_ingress_summary(legacy);
    assert_string_equal(pc_json_str(s, "class"), "nginx");
    assert_false(json_is_true(json_object_get(s, "tls")));
    json_decref(s);
    json_decref(legacy);
    /* too many paths to be a sign-in route: null */
    many = J("{'spec':{'rules':[{'host':'a.b','http':{'paths':[]}}]}}");
    for (int i = 0; i <= CTL_INGRESS_MAX_PATHS; i++) {
        char p[16];

        snprintf(p, sizeof(p), "/oauth2/%d", i);
        json_array_append_new(
            pc_json_path(json_array_get(pc_json_path(many, "spec.rules"), 0), "http.paths"),
            json_pack("{s:s}", "path", p));
    }
    s = ctl_ingress_summary(many);
    assert_true(json_is_null(json_object_get(s, "paths")));
    json_decref(s);
    json_decref(many);
}

/* ---- which views name an Ingress ---------------------------------------------------------- */

struct match_case {
    const char *hosts; /* the Ingress's rule hosts (JSON array) */
    const char *ids;   /* the views matched, space-separated */
};

static const char *const match_views =
    "[{'id':'a/one','hosts':['one.example.com']},"
    "{'id':'a/wild','hosts':['*.apps.example.com']},"
    "{'id':'b/two','hosts':['two.example.com','x.apps.example.com']},"
    "{'id':'b/deep','hosts':['a.b.deep.example.com']}]";

static const struct match_case match_cases[] = {
    {"['one.example.com']", "a/one"},
    {"['nobody.example.com']", ""},
    {"['q.apps.example.com']", "a/wild"},
    {"['x.apps.example.com']", "a/wild b/two"},
    {"['*.apps.example.com']", "a/wild b/two"},
    {"['*.example.com']", "a/one a/wild b/two b/deep"},
    {"['*.deep.example.com']", "b/deep"},
    {"['two.example.com','one.example.com']", "a/one b/two"},
};

static void
test_match(void **state)
{
    json_t *views = J(match_views);
    struct ctl_ingress_index x;

    (void)state;
    ctl_ingress_index_init(&x, views);
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        json_t *s = json_pack("{s:o}", "hosts", J(match_cases[i].hosts));
        json_t *got = ctl_ingress_index_match(&x, s), *v;
        struct pc_buf b;
        size_t j;

        pc_buf_init(&b, 0);
        json_array_foreach(got, j, v)
            pc_buf_appendf(&b, "%s%s", j ? " " : "", pc_json_str(v, "id"));
        if (strcmp(pc_buf_str(&b), match_cases[i].ids) != 0)
            fail_msg("%s: matched \"%s\", want \"%s\"", match_cases[i].hosts, pc_buf_str(&b),
                     match_cases[i].ids);
        pc_buf_release(&b);
        json_decref(got);
        json_decref(s);
    }
    ctl_ingress_index_release(&x);
    json_decref(views);
}

/* ---- the decision --------------------------------------------------------------------------- */

#define URL "http://portcullis-authd.portcullis-system.svc.cluster.local:4180/oauth2/auth"
#define SIGNIN(s) s "://$http_host/oauth2/start?rd=$escaped_request_uri"

#define V_APP                                                                                      \
    "{'id':'team/app','class':'nginx','hosts':['app.example.com'],'headers':['X-User'],"           \
    "'scheme':'','callback':'/oauth2/callback'}"
#define V_API                                                                                      \
    "{'id':'team/api','class':'nginx','hosts':['api.example.com'],'headers':['X-User',"            \
    "'X-Groups'],'scheme':'','callback':'/login/done'}"
#define V_ALB                                                                                      \
    "{'id':'team/alb','class':'alb','hosts':['app.example.com'],'headers':[],'scheme':'',"         \
    "'callback':'/oauth2/callback'}"
#define V_HTTPS                                                                                    \
    "{'id':'team/sec','class':'nginx','hosts':['api.example.com'],'headers':[],'scheme':"          \
    "'https','callback':'/oauth2/callback'}"

#define S(cls, hosts, paths, tls, ann)                                                             \
    "{'ns':'team','name':'ing','class':'" cls "','hosts':" hosts ",'paths':" paths ",'tls':" tls   \
    ",'ann':" ann "}"

struct decide_case {
    const char *what;
    const char *summary;
    const char *views;
    bool write;
    const char *want;     /* the annotations wanted (JSON), NULL: none */
    const char *outcomes; /* view id -> [outcome, message substring] */
};

#define OURS(signin, headers, by)                                                                  \
    "{'" CTL_ANNOT_AUTH_URL "':'" URL "','" CTL_ANNOT_AUTH_SIGNIN "':'" signin                     \
    "','" CTL_ANNOT_AUTH_HEADERS "':'" headers "','" CTL_ANNOT_PROTECTED_BY "':'" by "'}"
#define HAVE(signin, headers, by)                                                                  \
    "{'url':'" URL "','signin':'" signin "','headers':'" headers "','by':'" by "'}"

static const struct decide_case decide_cases[] = {
    {"a new Ingress is annotated, http without tls",
     S("nginx", "['app.example.com']", "['/']", "false", "{}"), "[" V_APP "]", true,
     OURS(SIGNIN("http"), "X-User", "team/app"), "{'team/app':[0,'']}"},
    {"tls: https", S("nginx", "['app.example.com']", "['/']", "true", "{}"), "[" V_APP "]", true,
     OURS(SIGNIN("https"), "X-User", "team/app"), "{'team/app':[0,'']}"},
    {"already as wanted: no write",
     S("nginx", "['app.example.com']", "['/']", "false",
       HAVE(SIGNIN("http"), "X-User", "team/app")),
     "[" V_APP "]", false, OURS(SIGNIN("http"), "X-User", "team/app"), "{'team/app':[0,'']}"},
    {"one of ours changed by hand: written again",
     S("nginx", "['app.example.com']", "['/']", "false",
       HAVE(SIGNIN("http"), "X-Other", "team/app")),
     "[" V_APP "]", true, OURS(SIGNIN("http"), "X-User", "team/app"), "{'team/app':[0,'']}"},
    {"two ProtectedHosts on one Ingress: one set, every header",
     S("nginx", "['app.example.com','api.example.com']", "['/']", "false", "{}"),
     "[" V_APP "," V_API "]", true, OURS(SIGNIN("http"), "X-User,X-Groups", "team/app,team/api"),
     "{'team/app':[0,''],'team/api':[0,'']}"},
    {"a host no ProtectedHost names is noted",
     S("nginx", "['app.example.com','open.example.com']", "['/']", "false", "{}"), "[" V_APP "]",
     true, OURS(SIGNIN("http"), "X-User", "team/app"),
     "{'team/app':[0,'it also serves open.example.com']}"},
    {"another class: left alone", S("traefik", "['app.example.com']", "['/']", "false", "{}"),
     "[" V_APP "]", false, NULL,
     "{'team/app':[2,'Ingress team/ing serves app.example.com with class']}"},
    {"no class: left alone", S("", "['app.example.com']", "['/']", "false", "{}"), "[" V_APP "]",
     false, NULL, "{'team/app':[2,'without an ingressClassName']}"},
    {"views of two classes: the one of its class annotates",
     S("nginx", "['app.example.com']", "['/']", "false", "{}"), "[" V_APP "," V_ALB "]", true,
     OURS(SIGNIN("http"), "X-User", "team/app"),
     "{'team/app':[0,''],'team/alb':[2,'not annotated']}"},
    {"another gate's auth-url: left alone",
     S("nginx", "['app.example.com']", "['/']", "false", "{'url':'http://oauth2-proxy/auth'}"),
     "[" V_APP "]", false, NULL, "{'team/app':[2,'which portcullis did not set: left alone']}"},
    {"the same auth-url set by someone else: ours too (shared ownership)",
     S("nginx", "['app.example.com']", "['/']", "false", "{'url':'" URL "'}"), "[" V_APP "]", true,
     OURS(SIGNIN("http"), "X-User", "team/app"), "{'team/app':[0,'']}"},
    {"our own auth-url from before (authd moved): rewritten",
     S("nginx", "['app.example.com']", "['/']", "false",
       "{'url':'http://old/auth','by':'team/app'}"),
     "[" V_APP "]", true, OURS(SIGNIN("http"), "X-User", "team/app"), "{'team/app':[0,'']}"},
    {"the sign-in route is never annotated",
     S("nginx", "['app.example.com']", "['/oauth2/','/oauth2']", "false", "{}"), "[" V_APP "]",
     false, NULL, "{'team/app':[1,'team/ing']}"},
    {"a custom callback path counts as authd's",
     S("nginx", "['api.example.com']", "['/oauth2/','/login/done']", "false", "{}"), "[" V_API "]",
     false, NULL, "{'team/api':[1,'']}"},
    {"the sign-in route we annotated before: released",
     S("nginx", "['app.example.com']", "['/oauth2/']", "false",
       HAVE(SIGNIN("http"), "X-User", "team/app")),
     "[" V_APP "]", true, NULL, "{'team/app':[1,'']}"},
    {"a path outside /oauth2 makes it the app's",
     S("nginx", "['app.example.com']", "['/oauth2/','/oauth2x']", "false", "{}"), "[" V_APP "]",
     true, OURS(SIGNIN("http"), "X-User", "team/app"), "{'team/app':[0,'']}"},
    {"too many paths: the app's", S("nginx", "['app.example.com']", "null", "false", "{}"),
     "[" V_APP "]", true, OURS(SIGNIN("http"), "X-User", "team/app"), "{'team/app':[0,'']}"},
    {"no ProtectedHost any more: our annotations go",
     S("nginx", "['app.example.com']", "['/']", "false",
       HAVE(SIGNIN("http"), "X-User", "team/app")),
     "[]", true, NULL, "{}"},
    {"never ours: nothing to do",
     S("nginx", "['app.example.com']", "['/']", "false", "{'url':'http://oauth2-proxy/auth'}"),
     "[]", false, NULL, "{}"},
    {"disagreeing schemes: left alone",
     S("nginx", "['app.example.com','api.example.com']", "['/']", "false", "{}"),
     "[" V_APP "," V_HTTPS "]", false, NULL,
     "{'team/app':[2,'ask for sign-in scheme http and https'],'team/sec':[2,'']}"},
    {"an explicit scheme wins over tls", S("nginx", "['api.example.com']", "['/']", "false", "{}"),
     "[" V_HTTPS "]", true, OURS(SIGNIN("https"), "", "team/sec"), "{'team/sec':[0,'']}"},
};

static void
check_outcomes(const struct decide_case *c, const json_t *got)
{
    json_t *want = J(c->outcomes), *w;
    const char *id;

    if (json_object_size(want) != json_object_size(got))
        fail_msg("%s: outcomes %s", c->what, json_dumps(got, JSON_COMPACT));
    json_object_foreach(want, id, w)
    {
        const json_t *g = json_object_get(got, id);
        const char *msg = json_string_value(json_array_get(g, 1));

        if (!g ||
            json_integer_value(json_array_get(g, 0)) != json_integer_value(json_array_get(w, 0)) ||
            !strstr(msg, json_string_value(json_array_get(w, 1))))
            fail_msg("%s: %s got %s", c->what, id, g ? json_dumps(g, JSON_COMPACT) : "nothing");
    }
    json_decref(want);
}

static void
test_decide(void **state)
{
    struct ctl_authd_opts o = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
        const struct decide_case *c = &decide_cases[i];
        json_t *s = J(c->summary), *views = J(c->views), *want = c->want ? J(c->want) : NULL;
        struct ctl_ingress_plan p;

        ctl_ingress_decide(s, views, &o, &p);
        if (p.write != c->write)
            fail_msg("%s: write %d", c->what, p.write);
        if (want ? !p.want || !json_equal(want, p.want) : p.want != NULL)
            fail_msg("%s: want %s", c->what, p.want ? json_dumps(p.want, JSON_COMPACT) : "NULL");
        check_outcomes(c, p.outcomes);
        ctl_ingress_plan_release(&p);
        json_decref(want);
        json_decref(views);
        json_decref(s);
    }
}

/* ---- Ready --------------------------------------------------------------------------------- */

struct report_case {
    const char *outcomes;
    const char *reason; /* NULL: fine */
    const char *message;
};

static const struct report_case report_cases[] = {
    {"{}", "NoIngress", "no Ingress of class \"nginx\" serves its hosts"},
    {"{'team/login':[1,'team/login']}", "NoIngress",
     "no Ingress of class \"nginx\" serves its hosts but the sign-in route: team/login is the "
     "sign-in route"},
    {"{'team/app':[0,'']}", NULL, "Ingress team/app annotated (class \"nginx\")"},
    {"{'team/app':[0,''],'team/api':[0,'it also serves x'],'team/login':[1,'']}", NULL,
     "Ingresses team/app, team/api (it also serves x) annotated (class \"nginx\"); team/login is "
     "the sign-in route"},
    {"{'team/app':[0,''],'team/old':[2,'Ingress team/old carries auth-url']}", "IngressConflict",
     "Ingress team/old carries auth-url"},
    {"{'team/a':[3,'Ingress team/a: forbidden'],'team/b':[2,'Ingress team/b: class']}",
     "IngressConflict", "Ingress team/a: forbidden; Ingress team/b: class"},
    {"{'team/a':[3,'Ingress team/a: forbidden']}", "IngressNotApplied",
     "Ingress team/a: forbidden"},
};

static void
test_report(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(report_cases) / sizeof(report_cases[0]); i++) {
        const struct report_case *c = &report_cases[i];
        json_t *o = J(c->outcomes);
        const char *reason = "unset";
        char *msg = NULL;

        ctl_ingress_report(o, "nginx", &reason, &msg);
        if (c->reason ? !reason || strcmp(reason, c->reason) : reason != NULL)
            fail_msg("case %zu: reason %s", i, reason ? reason : "NULL");
        if (strcmp(msg, c->message) != 0)
            fail_msg("case %zu: message \"%s\"", i, msg);
        free(msg);
        json_decref(o);
    }
}

/* A thousand conflicting Ingresses still make a status message of bounded size. */
static void
test_report_bounded(void **state)
{
    json_t *o = json_object();
    const char *reason;
    char *msg;

    (void)state;
    for (int i = 0; i < 1000; i++) {
        char id[32];

        snprintf(id, sizeof(id), "team/ing-%d", i);
        json_object_set_new(
            o, id,
            json_pack("[i,s]", CTL_ING_CONFLICT, "Ingress team/ing carries auth-url \"...\""));
    }
    ctl_ingress_report(o, "nginx", &reason, &msg);
    assert_string_equal(reason, "IngressConflict");
    assert_true(strlen(msg) < 1200);
    assert_non_null(strstr(msg, "more)"));
    free(msg);
    json_decref(o);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec),    cmocka_unit_test(test_view_and_annotations),
        cmocka_unit_test(test_overlap), cmocka_unit_test(test_summary),
        cmocka_unit_test(test_match),   cmocka_unit_test(test_decide),
        cmocka_unit_test(test_report),  cmocka_unit_test(test_report_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
