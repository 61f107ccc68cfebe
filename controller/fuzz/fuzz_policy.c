/*
 * fuzz_policy.c - ProtectedHostPolicy JSON -> canonical policy, then a few ProtectedHosts
 * admitted under it.
 *
 * Invariants beyond "no crash, no leak": a refused ProtectedHost always has a message and never
 * issuer prefixes; an accepted one has prefixes (a policy is installed); and the canonical
 * form parses again to itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "controller.h"

static const char *const specs[] = {
    "{\"hosts\":[\"app.team-a.example.com\"],\"oidc\":{\"issuerURL\":"
    "\"https://idp.example.com/realms/a\",\"clientID\":\"c\"}}",
    "{\"hosts\":[\"*.team-a.example.com\",\"b.example.com\"],\"gateway\":{\"namespace\":"
    "\"istio-system\",\"name\":\"public\"},\"oidc\":{\"issuerURL\":\"https://i/x\","
    "\"clientID\":\"c\"}}",
    "{\"hosts\":[\"a.b\"],\"gateway\":{\"selector\":{\"istio\":\"x\",\"k\":\"v\"}},"
    "\"oidc\":{\"issuerURL\":\"https://idp.example.com/\",\"clientID\":\"c\"}}",
};

static json_t *
labels(void *ud, const char *ns)
{
    (void)ud;
    return strcmp(ns, "unknown") == 0 ? NULL : json_pack("{s:s,s:s}", "tenant", ns, "tier", "x");
}

static void
admit_all(const json_t *policy)
{
    static const char *const namespaces[] = {"team-a", "team-b", "unknown"};
    struct ctl_tenancy t = {.policy = policy, .labels = labels};

    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        json_t *in = json_loads(specs[i], 0, NULL), *spec = NULL;
        struct ctl_errors errs = {0};

        if (ctl_spec_normalize(in, false, &spec, &errs) != 0)
            abort();
        for (size_t n = 0; n < sizeof(namespaces) / sizeof(namespaces[0]); n++) {
            json_t *prefixes = NULL;
            char *msg = NULL;
            enum ctl_verdict v = ctl_policy_admit(&t, namespaces[n], spec, &msg, &prefixes);

            if ((v == CTL_ACCEPTED) != (msg == NULL) || (v != CTL_ACCEPTED && prefixes) ||
                (v == CTL_ACCEPTED && !prefixes))
                abort();
            free(msg);
            json_decref(prefixes);
        }
        ctl_errors_release(&errs);
        json_decref(spec);
        json_decref(in);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *obj = json_loadb((const char *)data, size, 0, NULL), *policy = NULL, *again = NULL;
    json_t *wrapped;
    struct ctl_errors errs = {0};

    if (!obj)
        return 0;
    if (ctl_policy_normalize(obj, &policy, &errs) == 0) {
        admit_all(policy);
        wrapped = json_pack("{s:{s:s},s:O}", "metadata", "name", CTL_POLICY_NAME, "spec", policy);
        if (ctl_policy_normalize(wrapped, &again, &errs) != 0 || !json_equal(policy, again))
            abort();
        json_decref(wrapped);
    }
    ctl_errors_release(&errs);
    json_decref(again);
    json_decref(policy);
    json_decref(obj);
    return 0;
}
