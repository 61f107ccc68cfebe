/*
 * main.c - portcullis-controller: dispatches to the subcommands.
 *
 *   portcullis-controller run [flags]      watch ProtectedHosts and apply what they stand for
 *   portcullis-controller render -f ...    print what would be applied, without a cluster
 *   portcullis-controller bootstrap        print the install manifests with a new cookie secret
 *   portcullis-controller revoke --user U  end a user's sessions at every authd replica
 */
#include "controller.h"

#include <stdio.h>
#include <string.h>

static void
usage(FILE *f)
{
    fprintf(f, "usage: portcullis-controller run [flags] | render -f FILE|DIR... [flags]\n"
               "       portcullis-controller bootstrap [--mesh-config=MODE] [--namespace NS]\n"
               "       portcullis-controller revoke --user USER [--host HOST]... [flags]\n"
               "       portcullis-controller <command> --help\n");
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "render") == 0)
        return ctl_cmd_render(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0)
        return ctl_cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "bootstrap") == 0)
        return ctl_cmd_bootstrap(argc - 1, argv + 1);
    if (strcmp(argv[1], "revoke") == 0)
        return ctl_cmd_revoke(argc - 1, argv + 1);
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("portcullis-controller %s\n", PORTCULLIS_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "portcullis-controller: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
