/*
 * libFuzzer target: two config Secret shards from one input (split where its first byte says),
 * each parsed alone, then merged; every exact host name of the merged config matches its own
 * entry, whatever the shards claimed.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "portcullis/b64.h"

static void
apply(struct authd_shards *s, const char *name, const uint8_t *p, size_t n)
{
    char *b64 = pc_b64_encode(p, n);
    json_t *secret =
        json_pack("{s:{s:s, s:{s:s}}, s:{s:s}}", "metadata", "name", name, "annotations",
                  "portcullis.io/generation", "1", "data", "hosts.yaml", b64);
    struct pc_diag diag;

    authd_shards_apply(s, &(struct authd_shard_change){.secret = secret}, &diag);
    json_decref(secret);
    free(b64);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct authd_shards *s = authd_shards_new(true);
    struct authd_config *head = authd_config_placeholder(NULL);
    struct authd_shards_result r;
    size_t cut = size ? data[0] % size : 0;

    if (size > 0) {
        apply(s, "portcullis-authd-config-00", data + 1, cut ? cut - 1 : 0);
        apply(s, "portcullis-authd-config-01", data + (cut ? cut : 1), size - (cut ? cut : 1));
    }
    authd_shards_merge(s, head, &r);
    for (size_t i = 0; i < r.cfg->nhosts; i++)
        for (size_t j = 0; j < r.cfg->hosts[i]->hosts.n; j++) {
            const char *name = r.cfg->hosts[i]->hosts.v[j];

            if (name[0] != '*' && authd_config_match_host(r.cfg, name) != r.cfg->hosts[i])
                abort();
        }
    authd_shards_result_release(&r);
    authd_shards_free(s);
    authd_config_free(head);
    return 0;
}
