/* libFuzzer target: redirect targets, path lists and the decision engine on arbitrary paths. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct authd_config *cfg = fuzz_config();
    char *in = fuzz_string(data, size), *out = NULL;
    struct authd_request req = {.door = AUTHD_DOOR_ENVOY,
                                .method = "GET",
                                .path = in,
                                .host = "app.example.com",
                                .cookie = in};
    struct authd_decide_input di = {
        .req = &req, .session_rc = PC_ENOTFOUND, .bearer_rc = PC_ENOTFOUND, .now = 1700000000};
    struct authd_decision d;

    if (authd_redirect_validate(cfg, "app.example.com", in, &out) == 0) {
        char *again = NULL;

        /* A validated target stays valid: normalisation is idempotent. */
        if (authd_redirect_validate(cfg, "app.example.com", out, &again) != 0 ||
            strcmp(out, again) != 0)
            abort();
        free(again);
    }
    free(out);
    (void)authd_config_match_host(cfg, in);
    (void)authd_envoy_original_path("/ext-authz", in);
    di.host = authd_config_match_host(cfg, req.host);
    if (authd_decide(&di, &d) == 0)
        authd_decision_release(&d);
    req.host = in;
    req.path = "/";
    di.host = authd_config_match_host(cfg, in);
    if (authd_decide(&di, &d) == 0)
        authd_decision_release(&d);
    free(in);
    return 0;
}
