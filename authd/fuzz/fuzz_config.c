/* libFuzzer target: authd config parsing from memory, then host matching on the result. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct authd_config_opts opts = {.file = "fuzz.yaml", .read_file = fuzz_reader};
    struct authd_config *cfg = NULL;
    struct pc_diag diag = {0};
    char line[700];

    if (authd_config_parse((const char *)data, size, &opts, &cfg, &diag) != 0) {
        pc_diag_format(&diag, line, sizeof(line));
        return 0;
    }
    for (size_t i = 0; i < cfg->nhosts; i++)
        for (size_t j = 0; j < cfg->hosts[i]->hosts.n; j++) {
            const char *name = cfg->hosts[i]->hosts.v[j];

            /* Every exact name matches its own entry. */
            if (name[0] != '*' && authd_config_match_host(cfg, name) != cfg->hosts[i])
                abort();
        }
    authd_config_free(cfg);
    return 0;
}
