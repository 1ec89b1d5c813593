#include "qsnap/cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qsnap/backup.h"
#include "qsnap/catalog.h"
#include "qsnap/drill.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"
#include "qsnap/prune.h"
#include "qsnap/qdrant.h"
#include "qsnap/restore.h"
#include "qsnap/storage.h"

static int64_t test_clock_offset;

static int64_t offset_clock(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec + test_clock_offset;
}

void qs_cli_apply_test_clock(void)
{
    const char *v = getenv("QSNAP_TEST_NOW");
    if (v == NULL || *v == '\0')
        return;
    char *end;
    long long t = strtoll(v, &end, 10);
    if (*end != '\0' || t <= 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    test_clock_offset = (int64_t)t - (int64_t)ts.tv_sec;
    qs_clock_set(offset_clock, NULL);
    QS_WARN("test clock in use: time is shifted by %lld s", (long long)test_clock_offset);
}

int qs_cli_open_peers(const struct qs_config *cfg, struct qs_storage **storage,
                      struct qs_qdrant **qdrant, struct qs_error *err)
{
    *storage = NULL;
    *qdrant = NULL;
    int rc = qs_storage_new_from_config(cfg, storage, err);
    if (rc != 0)
        return rc;
    struct qs_qdrant_opts qo = {.url = cfg->qdrant_url, .api_key = cfg->qdrant_api_key};
    const char *t = getenv("QSNAP_TEST_QDRANT_TIMEOUT_MS");
    if (t != NULL)
        qo.snapshot_timeout_ms = qo.request_timeout_ms = atol(t);
    rc = qs_qdrant_new(&qo, qdrant, err);
    if (rc != 0) {
        qs_storage_free(*storage);
        *storage = NULL;
    }
    return rc;
}

/* CLI progress: log phases, nothing else. */
static void cli_phase(struct qs_progress *p, const char *collection, const char *phase)
{
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.collection = collection;
    c.phase = phase;
    c.job = p->job_id;
    qs_log(QS_LOG_DEBUG, &c, "phase %s", phase);
}

struct cli_items {
    struct qs_progress p;
    size_t ok, failed;
    int print; /* print one line per item to stdout */
};

static void cli_item(struct qs_progress *p, const struct qs_job_item *it)
{
    struct cli_items *ci = (struct cli_items *)p;
    if (it->ok)
        ci->ok++;
    else
        ci->failed++;
    if (ci->print)
        printf("%-8s %s %s%s%s\n", it->ok ? "ok" : "FAILED", it->collection,
               it->snapshot != NULL ? it->snapshot : "-", it->error != NULL ? ": " : "",
               it->error != NULL ? it->error : "");
}

static struct qs_cancel cli_cancel;

static void on_signal(int sig)
{
    (void)sig;
    /* First signal: cancel (uploads are aborted); second: leave at once. */
    if (qs_cancel_requested(&cli_cancel))
        _exit(1);
    qs_cancel_request(&cli_cancel);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "qsnap %s: %s (see qsnap --help)\n", cmd, msg);
    return 2;
}

int qs_cli_backup(const struct qs_config *cfg, int argc, char **argv)
{
    char **names = calloc((size_t)argc + 1, sizeof(char *));
    size_t n = 0;
    if (names == NULL)
        return 1;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--collection") == 0) && i + 1 < argc) {
            if (!qs_manifest_is_valid_collection_name(argv[i + 1])) {
                free(names);
                return usage_error("backup", "-c: not a valid collection name");
            }
            if (qs_drill_is_scratch(argv[i + 1])) {
                free(names);
                return usage_error("backup",
                                   "-c: restore-drill scratch collections (*" QS_DRILL_SUFFIX
                                   ") are never backed up");
            }
            names[n++] = argv[++i];
        } else {
            free(names);
            return usage_error("backup", "unexpected argument");
        }
    }
    struct qs_storage *st;
    struct qs_qdrant *q;
    struct qs_error err;
    qs_error_clear(&err);
    if (qs_cli_open_peers(cfg, &st, &q, &err) != 0) {
        fprintf(stderr, "qsnap backup: %s\n", err.msg);
        free(names);
        return 1;
    }
    install_signals();
    struct cli_items ci = {.p = {.phase = cli_phase,
                                 .item_done = cli_item,
                                 .cancel = &cli_cancel,
                                 .job_id = "cli-backup"},
                           .print = 1};
    struct qs_backup_env env = {.cfg = cfg, .storage = st, .qdrant = q, .progress = &ci.p};
    struct qs_backup_summary sum = {0};
    int rc = qs_backup_run(&env, names, n, &sum, &err);
    if (rc != QS_ECANCELED) {
        struct qs_prune_result pr;
        qs_prune_result_init(&pr);
        struct qs_error perr;
        qs_error_clear(&perr);
        if (qs_prune_run(st, cfg, 0, qs_clock_now(), &ci.p, &pr, &perr) != 0)
            fprintf(stderr, "qsnap backup: remote pruning failed: %s\n", perr.msg);
        qs_prune_result_deinit(&pr);
    }
    qs_qdrant_free(q);
    qs_storage_free(st);
    free(names);
    if (rc != 0)
        fprintf(stderr, "qsnap backup: %s\n", err.msg);
    if (rc == 0)
        return 0;
    return sum.ok > 0 && sum.failed > 0 ? 3 : 1;
}

int qs_cli_restore(const struct qs_config *cfg, int argc, char **argv)
{
    const char *coll = NULL, *snap = "latest", *target = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            return usage_error("restore", "missing value after an option");
        if (strcmp(a, "-c") == 0 || strcmp(a, "--collection") == 0)
            coll = argv[++i];
        else if (strcmp(a, "--snapshot") == 0 || strcmp(a, "-s") == 0)
            snap = argv[++i];
        else if (strcmp(a, "--to") == 0)
            target = argv[++i];
        else
            return usage_error("restore", "unexpected argument");
    }
    if (coll == NULL)
        return usage_error("restore", "-c NAME is required");
    if (!qs_manifest_is_valid_collection_name(coll))
        return usage_error("restore", "-c: not a valid collection name");
    if (target != NULL && !qs_restore_target_ok(target))
        return usage_error("restore", "--to: not a valid collection name");
    if (strcmp(snap, "latest") != 0 && !qs_manifest_is_valid_snapshot_name(snap))
        return usage_error("restore", "--snapshot: not a valid snapshot name");
    struct qs_storage *st;
    struct qs_qdrant *q;
    struct qs_error err;
    qs_error_clear(&err);
    if (qs_cli_open_peers(cfg, &st, &q, &err) != 0) {
        fprintf(stderr, "qsnap restore: %s\n", err.msg);
        return 1;
    }
    install_signals();
    struct cli_items ci = {
        .p = {.phase = cli_phase, .cancel = &cli_cancel, .job_id = "cli-restore"}};
    struct qs_backup_env env = {.cfg = cfg, .storage = st, .qdrant = q, .progress = &ci.p};
    struct qs_restore_req req = {.collection = coll, .snapshot = snap, .target = target};
    struct qs_job_item item = {0};
    int rc = qs_restore_run(&env, &req, &item, &err);
    if (rc == 0)
        printf("restored %s into collection %s\n", item.snapshot, target != NULL ? target : coll);
    else
        fprintf(stderr, "qsnap restore: %s\n", err.msg);
    free(item.snapshot);
    free(item.object);
    free(item.error);
    qs_qdrant_free(q);
    qs_storage_free(st);
    return rc == 0 ? 0 : 1;
}

int qs_cli_list(const struct qs_config *cfg, int argc, char **argv)
{
    const char *coll = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--collection") == 0) && i + 1 < argc)
            coll = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            return usage_error("list", "unexpected argument");
    }
    if (coll != NULL && !qs_manifest_is_valid_collection_name(coll) &&
        strcmp(coll, QS_MANIFEST_FULL_DIR) != 0)
        return usage_error("list", "-c: not a valid collection name");
    struct qs_storage *st = NULL;
    struct qs_error err;
    qs_error_clear(&err);
    if (qs_storage_new_from_config(cfg, &st, &err) != 0) {
        fprintf(stderr, "qsnap list: %s\n", err.msg);
        return 1;
    }
    struct qs_catalog cat;
    int rc = qs_catalog_load(st, coll, QS_CATALOG_DRILLS, &cat, &err);
    if (rc != 0) {
        fprintf(stderr, "qsnap list: %s\n", err.msg);
    } else if (json) {
        struct qs_buf b;
        qs_buf_init(&b);
        rc = qs_catalog_to_json(&cat, &b);
        if (rc == 0)
            printf("%s\n", b.data);
        qs_buf_free(&b);
    } else {
        printf("%-24s %-21s %14s %-5s %-28s %s\n", "COLLECTION", "CREATED", "SIZE", "COMPR",
               "DRILL", "SNAPSHOT");
        for (size_t i = 0; i < cat.nbackups; i++) {
            const struct qs_catalog_backup *b = &cat.backups[i];
            const struct qs_manifest *m = &b->m;
            char t[21], drill[40] = "-", dt[21];
            qs_time_rfc3339(m->created, t);
            if (b->drill_state == 1) {
                qs_time_rfc3339(b->drill.finished, dt);
                snprintf(drill, sizeof(drill), "%s %s", b->drill.ok ? "ok" : "FAILED", dt);
            } else if (b->drill_state < 0) {
                snprintf(drill, sizeof(drill), "unreadable");
            }
            printf("%-24s %-21s %14llu %-5s %-28s %s\n", m->collection, t,
                   (unsigned long long)m->size, m->compression_level > 0 ? "gzip" : "none", drill,
                   m->snapshot);
        }
        if (cat.nincomplete > 0)
            printf("(%zu incomplete objects without manifest)\n", cat.nincomplete);
    }
    qs_catalog_deinit(&cat);
    qs_storage_free(st);
    return rc == 0 ? 0 : 1;
}

int qs_cli_prune(const struct qs_config *cfg, int argc, char **argv)
{
    int dry = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0 || strcmp(argv[i], "-n") == 0)
            dry = 1;
        else
            return usage_error("prune", "unexpected argument");
    }
    struct qs_storage *st = NULL;
    struct qs_error err;
    qs_error_clear(&err);
    if (qs_storage_new_from_config(cfg, &st, &err) != 0) {
        fprintf(stderr, "qsnap prune: %s\n", err.msg);
        return 1;
    }
    struct qs_prune_result pr;
    qs_prune_result_init(&pr);
    struct qs_progress p = {.phase = cli_phase, .cancel = &cli_cancel, .job_id = "cli-prune"};
    int rc = qs_prune_run(st, cfg, dry, qs_clock_now(), &p, &pr, &err);
    if (pr.report.len > 0)
        fputs(pr.report.data, stdout);
    printf("%s: %zu backups, %zu incomplete objects, %zu uploads%s; %zu backups "
           "kept\n",
           dry ? "would delete" : "deleted", pr.deleted_backups, pr.deleted_incomplete,
           pr.aborted_uploads, dry ? " (dry run: nothing deleted)" : "", pr.stored);
    if (rc != 0)
        fprintf(stderr, "qsnap prune: %s\n", err.msg);
    qs_prune_result_deinit(&pr);
    qs_storage_free(st);
    return rc == 0 ? 0 : 1;
}

int qs_cli_check_reachability(const struct qs_config *cfg)
{
    struct qs_storage *st;
    struct qs_qdrant *q;
    struct qs_error err;
    qs_error_clear(&err);
    if (qs_cli_open_peers(cfg, &st, &q, &err) != 0) {
        printf("# peers: %s\n", err.msg);
        return 1;
    }
    int bad = 0;
    qs_error_clear(&err);
    if (qs_qdrant_probe(q, &err) == 0) {
        printf("# qdrant: reachable\n");
    } else {
        printf("# qdrant: UNREACHABLE: %s\n", err.msg);
        bad = 1;
    }
    qs_error_clear(&err);
    if (qs_storage_probe(st, &err) == 0) {
        printf("# destination: reachable\n");
    } else {
        printf("# destination: UNREACHABLE: %s\n", err.msg);
        bad = 1;
    }
    qs_qdrant_free(q);
    qs_storage_free(st);
    return bad;
}
