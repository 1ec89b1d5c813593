/* qsnap: backup sidecar for Qdrant. This file only wires modules together. */
#include <stdio.h>
#include <string.h>

#include "qsnap/log.h"

static void usage(FILE *out)
{
    fputs("usage: qsnap COMMAND [OPTIONS]\n"
          "\n"
          "  serve                              run the daemon: scheduler + HTTP endpoint\n"
          "  backup [-c NAME]...                one backup run now, then exit\n"
          "  restore -c NAME [--snapshot SNAP|latest] [--to TARGET]\n"
          "                                     restore one collection, then exit\n"
          "  list [-c NAME] [--json]            list backups held at the destination\n"
          "  prune [--dry-run]                  apply the retention policy now\n"
          "  check-config                       validate configuration, print it (secrets redacted)\n"
          "  --version | --help\n"
          "\n"
          "Configuration comes from QSNAP_* environment variables (see README).\n"
          "Exit codes: 0 success, 1 failure, 2 bad usage or configuration, 3 partial success.\n",
          out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("qsnap %s\n", QSNAP_VERSION);
        return 0;
    }
    fprintf(stderr, "qsnap: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
