/*
 * ctl_run.c - `portcullis-controller run`.
 */
#include "controller.h"

#include <stdio.h>

int
ctl_cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "run: not available in this build\n");
    return 2;
}
