/* libFuzzer target: revocation list document → list → document → list (the same list). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portcullis/revocations.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pc_revocations l, back;
    struct pc_diag d = {0};
    char *text;

    if (pc_revocations_parse((const char *)data, size, &l, &d) == 0) {
        text = pc_revocations_to_yaml(&l);
        if (pc_revocations_parse(text, strlen(text), &back, &d) != 0 || back.n != l.n)
            abort();
        pc_revocations_release(&back);
        free(text);
    }
    pc_revocations_release(&l);
    return 0;
}
