#include "qsnap/cli.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qsnap/catalog.h"
#include "qsnap/cluster.h"
#include "qsnap/drill.h"
#include "qsnap/jobs.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"
#include "qsnap/prune.h"
#include "qsnap/qdrant.h"
#include "qsnap/restore.h"
#include "qsnap/storage.h"
#include "qsnap/testhooks.h"

int qs_cli_open_peers(const struct qs_config *cfg, struct qs_storage **storage,
                      struct qs_qdrant **qdrant, struct qs_error *err)
{
    *storage = NULL;
    *qdrant = NULL;
    int rc = qs_storage_new_from_config(cfg, storage, err);
    if (rc != 0)
        return rc;
    struct qs_qdrant_opts qo = {.url = cfg->qdrant_url, .api_key = cfg->qdrant_api_key};
    qo.snapshot_timeout_ms = qo.request_timeout_ms =
        (long)qs_testhook_ms(QS_TESTHOOK_QDRANT_TIMEOUT);
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

/* CLI progress of a backup: one line per collection on stdout. */
static void cli_item(struct qs_progress *p, const struct qs_job_item *it)
{
    (void)p;
    char line[2048];
    snprintf(line, sizeof(line), "%-8s %s %s%s%s", it->ok ? "ok" : "FAILED", it->collection,
             it->snapshot != NULL ? it->snapshot : "-", it->error != NULL ? ": " : "",
             it->error != NULL ? it->error : "");
    qs_log_redact(line, sizeof(line));
    printf("%s\n", line);
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
    qs_on_stop_signals(on_signal);
    signal(SIGPIPE, SIG_IGN);
}

static int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "qsnap %s: %s (see qsnap --help)\n", cmd, msg);
    return 2;
}

/* A usage error for a collection name the one rule refuses (manifest.h):
 * the same message as the configuration and the HTTP API give. Returns 2,
 * or 0 when name is fine. */
static int name_error(const char *cmd, const char *option, const char *name)
{
    char why[400], msg[480];
    if (qs_manifest_collection_name_error(name, why, sizeof(why)) == 0)
        return 0;
    snprintf(msg, sizeof(msg), "%s: %s", option, why);
    return usage_error(cmd, msg);
}

/* Prints "qsnap CMD: MSG" on stderr. Messages quote peers' answers: every
 * registered secret is redacted, as in log lines. */
static void cli_error(const char *cmd, const char *msg)
{
    char buf[2048];
    snprintf(buf, sizeof(buf), "qsnap %s: %s", cmd, msg);
    qs_log_redact(buf, sizeof(buf));
    fprintf(stderr, "%s\n", buf);
}

int qs_cli_backup(const struct qs_config *cfg, int argc, char **argv)
{
    char **names = calloc((size_t)argc + 1, sizeof(char *));
    size_t n = 0;
    if (names == NULL)
        return 1;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--collection") == 0) && i + 1 < argc) {
            if (name_error("backup", "-c", argv[i + 1]) != 0) {
                free(names);
                return 2;
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
        cli_error("backup", err.msg);
        free(names);
        return 1;
    }
    install_signals();
    struct qs_progress p = {
        .phase = cli_phase, .item_done = cli_item, .cancel = &cli_cancel, .job_id = "cli-backup"};
    struct qs_backup_env env = {.cfg = cfg, .storage = st, .qdrant = q, .progress = &p};
    struct qs_jobs_outcome o;
    qs_jobs_outcome_init(&o);
    int rc = qs_jobs_backup_and_prune(&env, names, n, &o);
    qs_qdrant_free(q);
    qs_storage_free(st);
    free(names);
    if (rc != 0)
        cli_error("backup", o.err.msg);
    int partial = o.summary.ok > 0 && o.summary.failed > 0;
    qs_jobs_outcome_deinit(&o);
    if (rc == 0)
        return 0;
    return partial ? 3 : 1;
}

int qs_cli_restore(const struct qs_config *cfg, int argc, char **argv)
{
    const char *coll = NULL, *snap = "latest", *target = NULL;
    int no_aliases = 0, force = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--no-aliases") == 0) {
            no_aliases = 1;
            continue;
        }
        if (strcmp(a, "--force") == 0) {
            force = 1;
            continue;
        }
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
    if (name_error("restore", "-c", coll) != 0)
        return 2;
    if (target != NULL && !qs_restore_target_ok(target))
        return usage_error("restore", "--to: not a valid collection name");
    if (strcmp(snap, "latest") != 0 && !qs_manifest_is_valid_snapshot_name(snap))
        return usage_error("restore", "--snapshot: not a valid snapshot name");
    struct qs_storage *st;
    struct qs_qdrant *q;
    struct qs_error err;
    qs_error_clear(&err);
    if (qs_cli_open_peers(cfg, &st, &q, &err) != 0) {
        cli_error("restore", err.msg);
        return 1;
    }
    install_signals();
    struct qs_progress p = {.phase = cli_phase, .cancel = &cli_cancel, .job_id = "cli-restore"};
    struct qs_backup_env env = {.cfg = cfg, .storage = st, .qdrant = q, .progress = &p};
    struct qs_restore_req req = {.collection = coll,
                                 .snapshot = snap,
                                 .target = target,
                                 .no_aliases = no_aliases,
                                 .force = force};
    struct qs_job_item item = {0};
    int rc = qs_restore_run(&env, &req, &item, &err);
    if (rc == 0)
        printf("restored %s into collection %s\n", item.snapshot, target != NULL ? target : coll);
    else
        cli_error("restore", err.msg);
    qs_job_item_deinit(&item);
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
    if (coll != NULL && strcmp(coll, QS_MANIFEST_FULL_DIR) != 0 &&
        name_error("list", "-c", coll) != 0)
        return 2;
    struct qs_storage *st = NULL;
    struct qs_error err;
    qs_error_clear(&err);
    if (qs_storage_new_from_config(cfg, &st, &err) != 0) {
        cli_error("list", err.msg);
        return 1;
    }
    struct qs_catalog cat;
    int rc = qs_catalog_load(st, coll, QS_CATALOG_DRILLS, &cat, &err);
    if (rc != 0) {
        cli_error("list", err.msg);
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
        cli_error("prune", err.msg);
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
        cli_error("prune", err.msg);
    qs_prune_result_deinit(&pr);
    qs_storage_free(st);
    return rc == 0 ? 0 : 1;
}

/* One line of check-config's probe report on stdout, secrets redacted. */
static void probe_line(const char *peer, int rc, const char *msg)
{
    char line[2048];
    if (rc == 0)
        snprintf(line, sizeof(line), "# %s: reachable", peer);
    else
        snprintf(line, sizeof(line), "# %s: UNREACHABLE: %s", peer, msg);
    qs_log_redact(line, sizeof(line));
    printf("%s\n", line);
}

/* One line of check-config's report on stdout, secrets redacted. */
static void report_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void report_line(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    qs_log_redact(line, sizeof(line));
    printf("%s\n", line);
}

/* check-config's cluster view: whether Qdrant is in cluster mode, this
 * peer, the leader, every peer with its REST URL, and whether this sidecar
 * runs the scheduled work. Returns 1 when Qdrant could not be asked, or
 * when QSNAP_MODE=full meets a cluster. */
static int cluster_report(const struct qs_config *cfg, struct qs_qdrant *q)
{
    struct qs_cluster_view v;
    qs_cluster_view_init(&v);
    enum qs_cluster_role role = qs_cluster_view_check(q, cfg, &v);
    char why[700];
    qs_cluster_view_reason(&v, why, sizeof(why));
    const char *runs = qs_cluster_role_runs_scheduled(role) ? "yes" : "no";
    const struct qs_cluster_info *ci = &v.info;
    int full_refused = 0;
    switch (role) {
    case QS_CLUSTER_ROLE_OFF:
        report_line("# cluster: off (%s); runs scheduled backups, drills and pruning: %s", why,
                    runs);
        break;
    case QS_CLUSTER_ROLE_SINGLE:
        report_line("# cluster: disabled (%s); runs scheduled backups, drills and pruning: %s", why,
                    runs);
        break;
    case QS_CLUSTER_ROLE_UNKNOWN:
        report_line("# cluster: UNKNOWN: %s; scheduled backups, drills and pruning are skipped "
                    "until Qdrant answers",
                    why);
        break;
    default: {
        char leader[24] = "none";
        if (ci->leader != 0)
            snprintf(leader, sizeof(leader), "%" PRIu64, ci->leader);
        report_line("# cluster: enabled; this peer: %" PRIu64 "; leader: %s; term %" PRIu64
                    "; this sidecar is the leader's: %s; runs scheduled backups, drills and "
                    "pruning: %s (%s)",
                    ci->peer_id, leader, ci->term, role == QS_CLUSTER_ROLE_LEADER ? "yes" : "no",
                    runs, why);
        if (cfg->mode == QS_MODE_FULL) {
            report_line("# cluster: backups will fail: %s", QS_CLUSTER_FULL_MODE_REFUSAL);
            full_refused = 1;
        }
        for (size_t i = 0; i < ci->npeers; i++) {
            const struct qs_cluster_peer *p = &ci->peers[i];
            int me = p->id == ci->peer_id, lead = p->id == ci->leader;
            const char *tag = me && lead ? " (this peer, leader)"
                              : me       ? " (this peer)"
                              : lead     ? " (leader)"
                                         : "";
            report_line("# cluster peer %" PRIu64 "%s: uri %s, REST %s", p->id, tag, p->uri,
                        p->rest_url != NULL ? p->rest_url : "unknown (no host in the uri)");
        }
        break;
    }
    }
    qs_cluster_view_deinit(&v);
    return role == QS_CLUSTER_ROLE_UNKNOWN || full_refused;
}

int qs_cli_check_reachability(const struct qs_config *cfg)
{
    struct qs_storage *st;
    struct qs_qdrant *q;
    struct qs_error err;
    qs_error_clear(&err);
    if (qs_cli_open_peers(cfg, &st, &q, &err) != 0) {
        char line[2048];
        snprintf(line, sizeof(line), "# peers: %s", err.msg);
        qs_log_redact(line, sizeof(line));
        printf("%s\n", line);
        return 1;
    }
    qs_error_clear(&err);
    int qrc = qs_qdrant_probe(q, &err);
    probe_line("qdrant", qrc, err.msg);
    qs_error_clear(&err);
    int drc = qs_storage_probe(st, &err);
    probe_line("destination", drc, err.msg);
    int crc = cluster_report(cfg, q);
    qs_qdrant_free(q);
    qs_storage_free(st);
    return qrc != 0 || drc != 0 || crc != 0;
}
