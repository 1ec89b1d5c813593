/* qsnap: backup sidecar for Qdrant. This file only wires modules together. */
#include <stdio.h>
#include <string.h>

#include "qsnap/api.h"
#include "qsnap/cli.h"
#include "qsnap/config.h"
#include "qsnap/daemon.h"
#include "qsnap/httpc.h"
#include "qsnap/log.h"
#include "qsnap/probe.h"
#include "qsnap/qdrant.h"
#include "qsnap/runner.h"
#include "qsnap/scheduler.h"
#include "qsnap/series.h"
#include "qsnap/storage.h"
#include "qsnap/testhooks.h"

static void usage(FILE *out)
{
    fputs(
        "usage: qsnap COMMAND [OPTIONS]\n"
        "\n"
        "  serve                              run the daemon: scheduler + HTTP endpoint\n"
        "  backup [-c NAME]...                one backup run now, then exit\n"
        "  restore -c NAME [--snapshot SNAP|latest] [--to TARGET] [--no-aliases] [--force]\n"
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
        qs_log_redact(err.msg, sizeof(err.msg));
        fprintf(stderr, "qsnap: invalid configuration: %s\n", err.msg);
        return 2;
    }
    qs_config_apply_log(cfg);
    qs_config_warn_unknown(NULL);
    qs_testhook_apply_clock();
    return 0;
}

/* Probes Qdrant and the destination for check-config, after the effective
 * configuration was printed; returns an exit code. NULL: no probe linked. */
static int (*check_config_probe)(const struct qs_config *cfg) = qs_cli_check_reachability;

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

/* Runs a one-shot command with the loaded configuration. */
static int cmd_oneshot(int (*fn)(const struct qs_config *, int, char **), int argc, char **argv)
{
    struct qs_config cfg;
    int rc = load_config(&cfg);
    if (rc != 0)
        return rc;
    rc = fn(&cfg, argc, argv);
    qs_config_free(&cfg);
    qs_log_clear_secrets();
    return rc;
}

/* The backup service of `qsnap serve`: its parts, each closed by the
 * daemon's shutdown hook. */
struct service {
    struct qs_series *series;
    struct qs_runner *runner;
    struct qs_probe *probe;
    struct qs_scheduler *scheduler;
    struct qs_api *api;
};

static void part_closed(void *ud)
{
    qs_daemon_release(ud);
}

/* Shutdown hook: refuse new triggers, stop the schedule and the probes,
 * cancel the running job; the daemon stays open until each part has
 * closed (one hold each). */
static void on_shutdown(struct qs_daemon *d, void *ud)
{
    struct service *s = ud;
    qs_api_stop(s->api);
    if (s->scheduler != NULL) {
        qs_daemon_hold(d);
        qs_scheduler_close(s->scheduler, part_closed, d);
    }
    if (s->probe != NULL) {
        qs_daemon_hold(d);
        qs_probe_close(s->probe, part_closed, d);
    }
    if (s->runner != NULL) {
        qs_daemon_hold(d);
        qs_runner_close(s->runner, part_closed, d);
    }
}

static int service_start(struct qs_daemon *d, const struct qs_config *cfg,
                         struct qs_storage *storage, struct qs_qdrant *qdrant, struct service *s)
{
    uv_loop_t *loop = qs_daemon_loop(d);
    struct qs_backup_env env = {.cfg = cfg, .storage = storage, .qdrant = qdrant};
    int rc = qs_daemon_on_shutdown(d, on_shutdown, s);
    if (rc == 0)
        rc = qs_series_new(qs_daemon_metrics(d), cfg, &s->series);
    if (rc == 0) {
        struct qs_runner_observer obs = {
            .started = qs_series_on_job_started,
            .phase = qs_series_on_job_phase,
            .item = qs_series_on_job_item,
            .finished = qs_series_on_job_finished,
            .ud = s->series,
        };
        rc = qs_runner_new(loop, &env, &obs, NULL, &s->runner);
    }
    if (rc == 0)
        rc = qs_probe_new(loop, cfg, storage, qdrant, s->series,
                          qs_testhook_ms(QS_TESTHOOK_PROBE_INTERVAL), &s->probe);
    if (rc == 0)
        rc = qs_scheduler_new(loop, cfg, s->runner, s->series, qdrant, &s->scheduler);
    if (rc == 0) {
        struct qs_api_env aenv = {loop, cfg, storage, qdrant, s->runner, s->probe};
        rc = qs_api_new(&aenv, &s->api);
    }
    if (rc == 0)
        rc = qs_api_start(s->api, qs_daemon_http(d));
    if (rc == 0)
        rc = qs_scheduler_start(s->scheduler);
    if (rc == 0)
        rc = qs_probe_start(s->probe);
    if (rc == 0)
        rc = qs_testhook_install(d);
    return rc;
}

static void service_free(struct service *s)
{
    qs_api_free(s->api);
    qs_scheduler_free(s->scheduler);
    qs_probe_free(s->probe);
    qs_runner_free(s->runner);
    qs_series_free(s->series);
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
    qs_error_clear(&err);
    struct qs_daemon *d = NULL;
    struct qs_storage *storage = NULL;
    struct qs_qdrant *qdrant = NULL;
    struct service svc = {0};
    struct qs_daemon_opts dopts = {.http_timeout_ms = qs_testhook_ms(QS_TESTHOOK_HTTP_TIMEOUT)};
    rc = 1;
    if (qs_daemon_new(&cfg, &dopts, &d, &err) != 0 ||
        qs_cli_open_peers(&cfg, &storage, &qdrant, &err) != 0) {
        qs_log(QS_LOG_ERROR, NULL, "cannot start: %s", err.msg);
        goto out;
    }
    int src = service_start(d, &cfg, storage, qdrant, &svc);
    if (src != 0) {
        /* Close what did start through the shutdown path. */
        qs_log(QS_LOG_ERROR, NULL, "cannot start the backup service: %s", qs_strerror(src));
        qs_daemon_shutdown(d, "startup failed");
    }
    if (qs_daemon_run(d) == 0 && src == 0)
        rc = 0;
out:
    /* The parts use the daemon's metrics registry; the loop has closed. */
    service_free(&svc);
    qs_daemon_free(d);
    qs_qdrant_free(qdrant);
    qs_storage_free(storage);
    qs_config_free(&cfg);
    qs_log_clear_secrets();
    return rc;
}

static int run(int argc, char **argv);

int main(int argc, char **argv)
{
    /* Once, before any thread exists (libcurl's rule). */
    if (qs_httpc_global_init() != 0) {
        fprintf(stderr, "qsnap: cannot initialise libcurl\n");
        return 1;
    }
    int rc = run(argc, argv);
    qs_httpc_global_cleanup();
    return rc;
}

static int run(int argc, char **argv)
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
    static const struct {
        const char *name;
        int (*fn)(const struct qs_config *, int, char **);
    } oneshots[] = {
        {"backup", qs_cli_backup},
        {"restore", qs_cli_restore},
        {"list", qs_cli_list},
        {"prune", qs_cli_prune},
    };
    for (size_t i = 0; i < sizeof(oneshots) / sizeof(oneshots[0]); i++)
        if (strcmp(argv[1], oneshots[i].name) == 0)
            return cmd_oneshot(oneshots[i].fn, argc - 2, argv + 2);
    fprintf(stderr, "qsnap: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
