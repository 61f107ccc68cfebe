/*
 * metrics.c - Prometheus counters and the check-duration histogram.
 *
 * Everything is updated on the lws service thread, so no locks: worker results are counted
 * when their completions are drained. Labelled counters live in small tables keyed by their
 * label values (copied), bounded so a flood of distinct hosts cannot grow memory without end:
 * past the bound, new label sets are counted under host="_other".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authd.h"

#define MAX_SERIES 2048

/* Upper bounds of the check-duration buckets, in microseconds. */
static const int64_t bucket_us[] = {50,    100,   250,   500,    1000,   2500,   5000,
                                    10000, 25000, 50000, 100000, 250000, 1000000};
#define NBUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

struct series {
    char *l[3]; /* label values */
    uint64_t count;
    uint32_t hash;
    struct series *next;
};

struct table {
    const char *names[3];
    struct series *slots[256];
    size_t n;
};

struct authd_metrics {
    struct table decisions;
    struct table idp;
    uint64_t reload_ok, reload_fail;
    uint64_t state_replays;
    struct authd_metrics_gauges gauges;
    int64_t last_load; /* Unix seconds, 0 before the first */
    size_t shards_loaded, shards_rejected;
    size_t revocations; /* entries in force */
    uint64_t revocation_rejections, sessions_revoked;
    uint64_t shard_rejections[AUTHD_MAX_SHARDS + 1]; /* last: names that are not a shard's */
    uint64_t hist[NBUCKETS + 1];                     /* last: +Inf */
    uint64_t hist_count;
    int64_t hist_sum_us;
};

static uint32_t
fnv(uint32_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (h ^ 0xff) * 16777619u;
}

static void
table_add(struct table *t, const char *a, const char *b, const char *c)
{
    uint32_t h = fnv(fnv(fnv(2166136261u, a), b), c);
    struct series **slot = &t->slots[h & 255];

    for (struct series *s = *slot; s; s = s->next) {
        if (s->hash == h && !strcmp(s->l[0], a) && !strcmp(s->l[1], b) && !strcmp(s->l[2], c)) {
            s->count++;
            return;
        }
    }
    /* Past the bound only "_other" series are created (few: doors x outcomes). */
    if (t->n >= MAX_SERIES && strcmp(a, "_other")) {
        table_add(t, "_other", b, c);
        return;
    }
    struct series *s = pc_xcalloc(1, sizeof(*s));
    s->l[0] = pc_xstrdup(a);
    s->l[1] = pc_xstrdup(b);
    s->l[2] = pc_xstrdup(c);
    s->hash = h;
    s->count = 1;
    s->next = *slot;
    *slot = s;
    t->n++;
}

static void
table_release(struct table *t)
{
    for (size_t i = 0; i < 256; i++) {
        struct series *s = t->slots[i];
        while (s) {
            struct series *next = s->next;
            for (int j = 0; j < 3; j++)
                free(s->l[j]);
            free(s);
            s = next;
        }
    }
}

struct authd_metrics *
authd_metrics_new(void)
{
    struct authd_metrics *m = pc_xcalloc(1, sizeof(*m));

    m->decisions.names[0] = "host";
    m->decisions.names[1] = "door";
    m->decisions.names[2] = "outcome";
    m->idp.names[0] = "issuer";
    m->idp.names[1] = "kind";
    m->idp.names[2] = "result";
    return m;
}

void
authd_metrics_free(struct authd_metrics *m)
{
    if (!m)
        return;
    table_release(&m->decisions);
    table_release(&m->idp);
    free(m);
}

void
authd_metrics_decision(struct authd_metrics *m, const char *host, const char *door,
                       const char *outcome, int64_t duration_us)
{
    size_t i = 0;

    table_add(&m->decisions, host ? host : "", door, outcome);
    while (i < NBUCKETS && duration_us > bucket_us[i])
        i++;
    m->hist[i]++;
    m->hist_count++;
    m->hist_sum_us += duration_us;
}

void
authd_metrics_idp(struct authd_metrics *m, const char *issuer, const char *kind, const char *result)
{
    table_add(&m->idp, issuer ? issuer : "", kind, result);
}

void
authd_metrics_reload(struct authd_metrics *m, bool ok)
{
    if (ok) {
        m->reload_ok++;
        authd_metrics_loaded(m);
    } else {
        m->reload_fail++;
    }
}

void
authd_metrics_loaded(struct authd_metrics *m)
{
    m->last_load = (int64_t)time(NULL);
}

void
authd_metrics_shards(struct authd_metrics *m, size_t loaded, size_t rejected)
{
    m->shards_loaded = loaded;
    m->shards_rejected = rejected;
}

void
authd_metrics_shard_rejected(struct authd_metrics *m, int shard)
{
    m->shard_rejections[shard >= 0 && shard < AUTHD_MAX_SHARDS ? shard : AUTHD_MAX_SHARDS]++;
}

void
authd_metrics_revocations(struct authd_metrics *m, bool loaded, size_t entries)
{
    if (loaded)
        m->revocations = entries;
    else
        m->revocation_rejections++;
}

void
authd_metrics_revoked(struct authd_metrics *m)
{
    m->sessions_revoked++;
}

static int
render_revocations(const struct authd_metrics *m, struct pc_buf *out)
{
    return pc_buf_appendf(
        out,
        "# HELP portcullis_authd_revocations Revocation list entries in force.\n"
        "# TYPE portcullis_authd_revocations gauge\n"
        "portcullis_authd_revocations %zu\n"
        "# HELP portcullis_authd_revocation_rejections_total Revocation list versions refused.\n"
        "# TYPE portcullis_authd_revocation_rejections_total counter\n"
        "portcullis_authd_revocation_rejections_total %llu\n"
        "# HELP portcullis_authd_sessions_revoked_total Checks refused for a revoked session.\n"
        "# TYPE portcullis_authd_sessions_revoked_total counter\n"
        "portcullis_authd_sessions_revoked_total %llu\n",
        m->revocations, (unsigned long long)m->revocation_rejections,
        (unsigned long long)m->sessions_revoked);
}

static int
render_shards(const struct authd_metrics *m, struct pc_buf *out)
{
    const char *r = "portcullis_authd_config_shard_rejections_total";
    int rc = pc_buf_appendf(
        out,
        "# HELP portcullis_authd_config_last_load_timestamp_seconds When the config being "
        "served was loaded.\n"
        "# TYPE portcullis_authd_config_last_load_timestamp_seconds gauge\n"
        "portcullis_authd_config_last_load_timestamp_seconds %lld\n"
        "# HELP portcullis_authd_config_shards Config Secret shards (--watch-config): loaded, "
        "or whose newest version is rejected.\n"
        "# TYPE portcullis_authd_config_shards gauge\n"
        "portcullis_authd_config_shards{state=\"loaded\"} %zu\n"
        "portcullis_authd_config_shards{state=\"rejected\"} %zu\n"
        "# HELP %s Config Secret versions rejected, by shard.\n# TYPE %s counter\n",
        (long long)m->last_load, m->shards_loaded, m->shards_rejected, r, r);

    for (int i = 0; i <= AUTHD_MAX_SHARDS && !rc; i++) {
        if (m->shard_rejections[i] == 0)
            continue;
        if (i == AUTHD_MAX_SHARDS)
            rc = pc_buf_appendf(out, "%s{shard=\"other\"} %llu\n", r,
                                (unsigned long long)m->shard_rejections[i]);
        else
            rc = pc_buf_appendf(out, "%s{shard=\"%02x\"} %llu\n", r, (unsigned)i,
                                (unsigned long long)m->shard_rejections[i]);
    }
    return rc;
}

void
authd_metrics_state_replay(struct authd_metrics *m)
{
    m->state_replays++;
}

void
authd_metrics_set_gauges(struct authd_metrics *m, const struct authd_metrics_gauges *g)
{
    m->gauges = *g;
}

static int
render_idp_and_states(const struct authd_metrics *m, struct pc_buf *out)
{
    return pc_buf_appendf(
        out,
        "# HELP portcullis_authd_idp_jobs IdP calls waiting for a worker or running.\n"
        "# TYPE portcullis_authd_idp_jobs gauge\n"
        "portcullis_authd_idp_jobs{state=\"queued\"} %d\n"
        "portcullis_authd_idp_jobs{state=\"running\"} %d\n"
        "# HELP portcullis_authd_login_state_replays_total Callbacks refused because their "
        "login state was already exchanged.\n"
        "# TYPE portcullis_authd_login_state_replays_total counter\n"
        "portcullis_authd_login_state_replays_total %llu\n"
        "# HELP portcullis_authd_login_states_evicted_total Exchanged login states forgotten "
        "before their expiry because the set was full.\n"
        "# TYPE portcullis_authd_login_states_evicted_total counter\n"
        "portcullis_authd_login_states_evicted_total %llu\n",
        m->gauges.idp_queued, m->gauges.idp_running, (unsigned long long)m->state_replays,
        (unsigned long long)m->gauges.states_evicted);
}

/* Appends a label value escaped per the exposition format (\\, \", \n). */
static int
append_label(struct pc_buf *out, const char *v)
{
    int rc = 0;

    for (; *v && !rc; v++) {
        if (*v == '\\' || *v == '"')
            rc = pc_buf_appendf(out, "\\%c", *v);
        else if (*v == '\n')
            rc = pc_buf_appends(out, "\\n");
        else
            rc = pc_buf_append(out, v, 1);
    }
    return rc;
}

static int
render_table(const struct table *t, const char *name, const char *help, struct pc_buf *out)
{
    int rc = pc_buf_appendf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);

    for (size_t i = 0; i < 256 && !rc; i++) {
        for (const struct series *s = t->slots[i]; s && !rc; s = s->next) {
            rc = pc_buf_appendf(out, "%s{", name);
            for (int j = 0; j < 3 && !rc; j++) {
                rc = pc_buf_appendf(out, "%s%s=\"", j ? "," : "", t->names[j]);
                rc = rc ? rc : append_label(out, s->l[j]);
                rc = rc ? rc : pc_buf_appends(out, "\"");
            }
            rc = rc ? rc : pc_buf_appendf(out, "} %llu\n", (unsigned long long)s->count);
        }
    }
    return rc;
}

static int
render_histogram(const struct authd_metrics *m, struct pc_buf *out)
{
    const char *n = "portcullis_authd_check_duration_seconds";
    uint64_t cum = 0;
    int rc = pc_buf_appendf(out,
                            "# HELP %s Time to answer a check (Envoy or nginx door).\n"
                            "# TYPE %s histogram\n",
                            n, n);

    for (size_t i = 0; i < NBUCKETS && !rc; i++) {
        cum += m->hist[i];
        rc = pc_buf_appendf(out, "%s_bucket{le=\"%g\"} %llu\n", n, (double)bucket_us[i] / 1e6,
                            (unsigned long long)cum);
    }
    cum += m->hist[NBUCKETS];
    rc = rc ? rc
            : pc_buf_appendf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", n,
                             (unsigned long long)cum, n, (double)m->hist_sum_us / 1e6, n,
                             (unsigned long long)m->hist_count);
    return rc;
}

int
authd_metrics_render(const struct authd_metrics *m, struct pc_buf *out)
{
    int rc = render_table(&m->decisions, "portcullis_authd_decisions_total",
                          "Check decisions by host policy, front door and outcome.", out);

    rc = rc ? rc : render_histogram(m, out);
    rc = rc ? rc
            : render_table(&m->idp, "portcullis_authd_idp_requests_total",
                           "Requests to identity providers by issuer, kind and result.", out);
    rc = rc ? rc : render_idp_and_states(m, out);
    rc = rc ? rc
            : pc_buf_appendf(out,
                             "# HELP portcullis_authd_config_reloads_total Config reloads by "
                             "result.\n"
                             "# TYPE portcullis_authd_config_reloads_total counter\n"
                             "portcullis_authd_config_reloads_total{result=\"success\"} %llu\n"
                             "portcullis_authd_config_reloads_total{result=\"failure\"} %llu\n",
                             (unsigned long long)m->reload_ok, (unsigned long long)m->reload_fail);
    rc = rc ? rc : render_shards(m, out);
    rc = rc ? rc : render_revocations(m, out);
    rc = rc ? rc
            : pc_buf_appendf(out,
                             "# HELP portcullis_authd_build_info Build information.\n"
                             "# TYPE portcullis_authd_build_info gauge\n"
                             "portcullis_authd_build_info{version=\"%s\"} 1\n",
                             PORTCULLIS_VERSION);
    return rc;
}
