/*
 * libFuzzer target: arbitrary Cookie headers through every cookie reader of authd, and the
 * input again as the tail of a state-cookie name (names come from the client and reach the
 * sealing code through the login-state pruning) carrying a value that passes the length checks.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct authd_config *cfg = fuzz_config();
    const struct authd_host *h = cfg->hosts[0];
    struct authd_session *s = NULL;
    struct authd_login_state *st = NULL;
    struct authd_strlist set = {0};
    char *header = fuzz_string(data, size);
    const char *state = size > 40 ? header + size - 40 : "0123456789abcdefghijklmnop";

    if (authd_session_open(&cfg->keys, h, header, 1700000000, &s) == 0)
        authd_session_free(s);
    if (authd_login_state_open(&cfg->keys, h, header, state, 1700000000, &st, &set) == 0)
        authd_login_state_free(st);
    free(authd_cookie_strip(header, h->session.cookie_name));
    authd_session_clear(h, header, true, &set);
    st = authd_login_state_new(h, "/", 1700000000);
    authd_login_state_seal(&cfg->keys, h, st, header, 1700000000, &set);
    authd_login_state_free(st);
    authd_strlist_release(&set);
    free(header);

    /* base64url of 0x01 and 40 zero bytes: the version byte and room for nonce and tag. */
    header = pc_xasprintf("_portcullis_csrf_%.*s="
                          "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; x=1",
                          (int)strnlen((const char *)data, size), (const char *)data);
    st = authd_login_state_new(h, "/", 1700000000);
    authd_login_state_seal(&cfg->keys, h, st, header, 1700000000, &set);
    free(authd_cookie_strip(header, h->session.cookie_name));
    authd_login_state_free(st);
    authd_strlist_release(&set);
    free(header);
    return 0;
}
