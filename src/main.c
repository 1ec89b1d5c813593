/* qsnap: backup sidecar for Qdrant. This file only wires modules together. */
#include <stdio.h>
#include <string.h>

#include "qsnap/config.h"
#include "qsnap/daemon.h"
#include "qsnap/log.h"

static void usage(FILE *out)
{
    fputs(
        "usage: qsnap COMMAND [OPTIONS]\n"
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

/* Loads the configuration from the environment and applies its log settings.
 * Returns 0, or 2 (the exit code) after printing the reason. */
static int load_config(struct qs_config *cfg)
{
    struct qs_error err;
    if (qs_config_load(cfg, NULL, NULL, &err) != 0) {
        fprintf(stderr, "qsnap: invalid configuration: %s\n", err.msg);
        return 2;
    }
    qs_config_apply_log(cfg);
    qs_config_warn_unknown(NULL);
    return 0;
}

/* Probes Qdrant and the destination for check-config, after the effective
 * configuration was printed; returns an exit code. NULL: no probe linked. */
static int (*check_config_probe)(const struct qs_config *cfg) = NULL;

static int cmd_check_config(int argc, char **argv)
{
    if (argc > 0) {
        fprintf(stderr, "qsnap: check-config takes no arguments (got '%s')\n", argv[0]);
        return 2;
    }
    struct qs_config cfg;
    int rc = load_config(&cfg);
    if (rc != 0)
        return rc;
    qs_config_print(&cfg, stdout);
    fflush(stdout);
    if (check_config_probe != NULL)
        rc = check_config_probe(&cfg);
    qs_config_free(&cfg);
    qs_log_clear_secrets();
    return rc;
}

static int cmd_serve(int argc, char **argv)
{
    if (argc > 0) {
        fprintf(stderr, "qsnap: serve takes no arguments (got '%s')\n", argv[0]);
        return 2;
    }
    struct qs_config cfg;
    int rc = load_config(&cfg);
    if (rc != 0)
        return rc;
    struct qs_error err;
    struct qs_daemon *d = NULL;
    if (qs_daemon_new(&cfg, &d, &err) != 0) {
        qs_log(QS_LOG_ERROR, NULL, "cannot start: %s", err.msg);
        qs_config_free(&cfg);
        qs_log_clear_secrets();
        return 1;
    }
    rc = qs_daemon_run(d) == 0 ? 0 : 1;
    qs_daemon_free(d);
    qs_config_free(&cfg);
    qs_log_clear_secrets();
    return rc;
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
    if (strcmp(argv[1], "check-config") == 0)
        return cmd_check_config(argc - 2, argv + 2);
    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    fprintf(stderr, "qsnap: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
