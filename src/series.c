/* The daemon's metrics: registration and what events mean for the series
 * (see series.h). */
#include "qsnap/series.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "qsnap/drill.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"
#include "qsnap/retention.h"

/* What the daemon knows about one collection. Its per-collection series
 * exist only while `present`; they are a projection of this state (series_sync),
 * so they vanish and come back without losing it. */
struct coll_state {
    char *name;
    int present;
    int64_t first_seen;   /* first sight in Qdrant, or the oldest backup if earlier; 0 = never */
    int64_t last_success; /* time of the newest complete backup (retention.h), 0 = none */
    int64_t last_attempt; /* 0 = none */
    double last_duration; /* < 0 = none */
    double last_size;     /* < 0 = none */
    double ok_total, failed_total, bytes_total;
    double failures;       /* failed attempts since the last success */
    int64_t drill_success; /* finish time of the newest successful drill, 0 = none */
};

struct qs_series {
    struct qs_metrics *m;
    const struct qs_config *cfg;
    struct coll_state *colls;
    size_t ncolls;
    int seeded;
    int seen_cluster; /* GET /cluster once said cluster mode */
};

/* The service's families; the HTTP endpoint's and the process's are
 * registered by the daemon and the registry. */
static const enum qs_metric_id families[] = {
    QS_M_BACKUP_LAST_SUCCESS,
    QS_M_BACKUP_AGE,
    QS_M_BACKUP_STALE,
    QS_M_COLLECTION_FIRST_SEEN,
    QS_M_BACKUP_CONSECUTIVE_FAILURES,
    QS_M_BACKUP_LAST_ATTEMPT,
    QS_M_BACKUP_LAST_DURATION,
    QS_M_BACKUP_LAST_SIZE,
    QS_M_BACKUPS_TOTAL,
    QS_M_BACKUP_BYTES_TOTAL,
    QS_M_RESTORE_DRILL_LAST_SUCCESS,
    QS_M_BACKUPS_STORED,
    QS_M_PRUNE_DELETED_TOTAL,
    QS_M_RESTORE_TOTAL,
    QS_M_RESTORE_LAST_SUCCESS,
    QS_M_RESTORE_DRILL_TOTAL,
    QS_M_RESTORE_DRILL_INTERVAL,
    QS_M_BACKUP_IN_PROGRESS,
    QS_M_NEXT_BACKUP,
    QS_M_SCHEDULE_INTERVAL,
    QS_M_QDRANT_UP,
    QS_M_DESTINATION_UP,
    QS_M_CLUSTER_LEADER,
    QS_M_SCHEDULE_SKIPPED,
};

/* The families of one collection: all of them while it is present. */
static const enum qs_metric_id per_collection[] = {
    QS_M_BACKUP_LAST_SUCCESS,
    QS_M_BACKUP_AGE,
    QS_M_BACKUP_STALE,
    QS_M_BACKUP_LAST_ATTEMPT,
    QS_M_BACKUP_LAST_DURATION,
    QS_M_BACKUP_LAST_SIZE,
    QS_M_BACKUP_BYTES_TOTAL,
    QS_M_COLLECTION_FIRST_SEEN,
    QS_M_BACKUP_CONSECUTIVE_FAILURES,
    QS_M_RESTORE_DRILL_LAST_SUCCESS,
};

static void prune_deleted(struct qs_metrics *m, const char *location, const char *kind, double n)
{
    qs_metrics_add(m, QS_MN(PRUNE_DELETED_TOTAL),
                   (const char *[]){"location", location, "kind", kind, NULL}, n);
}

static void stored(struct qs_metrics *m, const char *location, double n)
{
    qs_metrics_set(m, QS_MN(BACKUPS_STORED), (const char *[]){"location", location, NULL}, n);
}

static struct coll_state *coll_find(struct qs_series *s, const char *name)
{
    for (size_t i = 0; i < s->ncolls; i++)
        if (strcmp(s->colls[i].name, name) == 0)
            return &s->colls[i];
    return NULL;
}

/* The state of a collection, created (not present) when new. NULL on ENOMEM. */
static struct coll_state *coll_get(struct qs_series *s, const char *name)
{
    struct coll_state *c = coll_find(s, name);
    if (c != NULL)
        return c;
    char *copy = strdup(name);
    struct coll_state *v = copy != NULL ? realloc(s->colls, (s->ncolls + 1) * sizeof(*v)) : NULL;
    if (v == NULL) {
        free(copy);
        return NULL;
    }
    s->colls = v;
    c = &v[s->ncolls++];
    memset(c, 0, sizeof(*c));
    c->last_duration = c->last_size = -1;
    c->name = copy;
    return c;
}

/* 1 when name is selected for backup: in full mode only the full-storage
 * snapshot; else QSNAP_COLLECTIONS (or every collection), never a drill
 * scratch collection. */
static int is_selected(const struct qs_series *s, const char *name)
{
    const struct qs_config *cfg = s->cfg;
    if (cfg->mode == QS_MODE_FULL)
        return strcmp(name, QS_MANIFEST_FULL_DIR) == 0;
    if (qs_drill_is_scratch(name))
        return 0;
    if (cfg->collections == NULL)
        return 1;
    for (size_t i = 0; i < cfg->ncollections; i++)
        if (strcmp(cfg->collections[i], name) == 0)
            return 1;
    return 0;
}

/* Age and staleness are functions of "now". */
static void refresh_age(struct qs_series *s, const struct coll_state *c, int64_t now)
{
    const char *l[] = {"collection", c->name, NULL};
    if (c->last_success > 0) {
        double age = (double)(now - c->last_success);
        qs_metrics_set(s->m, QS_MN(BACKUP_AGE), l, age < 0 ? 0 : age);
    } else {
        qs_metrics_remove(s->m, QS_MN(BACKUP_AGE), l);
    }
    qs_metrics_set(
        s->m, QS_MN(BACKUP_STALE), l,
        qs_retention_is_stale(c->last_success, c->first_seen, now, s->cfg->stale_after_s));
}

/* Makes the collection's series match its state: all of them while it is
 * present, none otherwise. */
static void series_sync(struct qs_series *s, const struct coll_state *c)
{
    struct qs_metrics *m = s->m;
    const char *l[] = {"collection", c->name, NULL};
    const char *ok[] = {"collection", c->name, "result", "success", NULL};
    const char *failed[] = {"collection", c->name, "result", "failure", NULL};
    if (!c->present) {
        for (size_t i = 0; i < sizeof(per_collection) / sizeof(per_collection[0]); i++)
            qs_metrics_remove(m, qs_metric_defs[per_collection[i]].name, l);
        qs_metrics_remove(m, QS_MN(BACKUPS_TOTAL), ok);
        qs_metrics_remove(m, QS_MN(BACKUPS_TOTAL), failed);
        return;
    }
    qs_metrics_set(m, QS_MN(BACKUP_LAST_SUCCESS), l, (double)c->last_success);
    if (c->last_attempt > 0)
        qs_metrics_set(m, QS_MN(BACKUP_LAST_ATTEMPT), l, (double)c->last_attempt);
    if (c->last_duration >= 0)
        qs_metrics_set(m, QS_MN(BACKUP_LAST_DURATION), l, c->last_duration);
    if (c->last_size >= 0)
        qs_metrics_set(m, QS_MN(BACKUP_LAST_SIZE), l, c->last_size);
    qs_metrics_set(m, QS_MN(BACKUPS_TOTAL), ok, c->ok_total);
    qs_metrics_set(m, QS_MN(BACKUPS_TOTAL), failed, c->failed_total);
    qs_metrics_set(m, QS_MN(BACKUP_BYTES_TOTAL), l, c->bytes_total);
    qs_metrics_set(m, QS_MN(COLLECTION_FIRST_SEEN), l, (double)c->first_seen);
    qs_metrics_set(m, QS_MN(BACKUP_CONSECUTIVE_FAILURES), l, c->failures);
    qs_metrics_set(m, QS_MN(RESTORE_DRILL_LAST_SUCCESS), l, (double)c->drill_success);
    refresh_age(s, c, qs_clock_now());
}

static void note_first_seen(struct coll_state *c, int64_t t)
{
    if (t > 0 && (c->first_seen == 0 || t < c->first_seen))
        c->first_seen = t;
}

/* Marks a selected collection as existing in Qdrant now (or gone). */
static void set_present(struct qs_series *s, struct coll_state *c, int present)
{
    if (present)
        note_first_seen(c, qs_clock_now());
    if (c->present != present) {
        struct qs_log_ctx lc = QS_LOG_CTX_NONE;
        lc.collection = c->name;
        if (present)
            qs_log(QS_LOG_INFO, &lc, "collection is selected for backup and exists in Qdrant");
        else
            qs_log(QS_LOG_INFO, &lc,
                   "collection no longer exists in Qdrant: its series are removed (its backups "
                   "stay at the destination)");
    }
    c->present = present;
    series_sync(s, c);
}

/* A complete backup of c created at `created` (Qdrant's clock) and written
 * at `written` (0 = unknown): moves last_success forward, never trusting a
 * creation time from the future (retention.h). */
static void note_backup(struct coll_state *c, const char *snapshot, int64_t created,
                        int64_t written, int64_t now)
{
    bool suspect = false;
    int64_t t = qs_retention_backup_time(created, written, now, &suspect);
    if (suspect) {
        char ts[21];
        qs_time_rfc3339(created, ts);
        struct qs_log_ctx lc = QS_LOG_CTX_NONE;
        lc.collection = c->name;
        lc.snapshot = snapshot;
        qs_log(QS_LOG_WARN, &lc,
               "backup is dated %s, %lld s ahead of this clock (Qdrant's clock ahead?): not "
               "trusted for freshness; %s",
               ts, (long long)(created - now),
               t >= 0 ? "dated by when it was written instead" : "it cannot be dated");
    }
    if (t > c->last_success)
        c->last_success = t;
}

/* Render hook: age and staleness are functions of "now". */
static void refresh_ages(struct qs_metrics *m, void *ud)
{
    (void)m;
    struct qs_series *s = ud;
    int64_t now = qs_clock_now();
    for (size_t i = 0; i < s->ncolls; i++)
        if (s->colls[i].present)
            refresh_age(s, &s->colls[i], now);
}

/* ---- job events ----------------------------------------------------------- */

void qs_series_on_job_started(void *ud, const struct qs_job *job)
{
    (void)job;
    struct qs_series *s = ud;
    qs_metrics_set(s->m, QS_MN(BACKUP_IN_PROGRESS), NULL, 1);
}

void qs_series_on_job_phase(void *ud, const struct qs_job *job, const char *collection,
                            const char *phase)
{
    struct qs_series *s = ud;
    if (job->kind != QS_JOB_BACKUP || collection == NULL || strcmp(phase, "snapshot") != 0)
        return;
    struct coll_state *c = coll_get(s, collection);
    if (c != NULL) {
        c->last_attempt = qs_clock_now();
        series_sync(s, c);
    }
}

static void backup_item(struct qs_series *s, const struct qs_job_item *it, int64_t now)
{
    /* State is kept for any collection a job touched; series only for the
     * selected ones that exist (a success proves that it does). */
    struct coll_state *c = coll_get(s, it->collection);
    if (c == NULL)
        return;
    if (it->ok) {
        c->ok_total++;
        c->failures = 0;
        note_backup(c, it->snapshot, it->created, now, now);
        c->last_duration = it->duration_s;
        c->last_size = (double)it->size;
        c->bytes_total += (double)it->stored;
        if (it->local_deleted > 0)
            prune_deleted(s->m, "local", "backup", it->local_deleted);
    } else {
        c->failed_total++;
        c->failures++;
    }
    if (it->ok && !c->present && is_selected(s, c->name))
        set_present(s, c, 1);
    else
        series_sync(s, c);
}

void qs_series_on_job_item(void *ud, const struct qs_job *job, const struct qs_job_item *it)
{
    struct qs_series *s = ud;
    int64_t now = qs_clock_now();
    const char *result[] = {"result", it->ok ? "success" : "failure", NULL};
    switch (job->kind) {
    case QS_JOB_BACKUP:
        backup_item(s, it, now);
        break;
    case QS_JOB_RESTORE:
        qs_metrics_add(s->m, QS_MN(RESTORE_TOTAL), result, 1);
        if (it->ok)
            qs_metrics_set(s->m, QS_MN(RESTORE_LAST_SUCCESS), NULL, (double)now);
        break;
    case QS_JOB_DRILL: {
        qs_metrics_add(s->m, QS_MN(RESTORE_DRILL_TOTAL), result, 1);
        struct coll_state *c = it->ok ? coll_get(s, it->collection) : NULL;
        if (c != NULL) {
            c->drill_success = now;
            series_sync(s, c);
        }
        break;
    }
    case QS_JOB_PRUNE:
        break;
    }
}

void qs_series_on_job_finished(void *ud, const struct qs_job *job, const struct qs_prune_result *p)
{
    struct qs_series *s = ud;
    if (p != NULL) {
        prune_deleted(s->m, "remote", "backup", (double)p->deleted_backups);
        prune_deleted(s->m, "remote", "incomplete", (double)p->deleted_incomplete);
        prune_deleted(s->m, "remote", "multipart", (double)p->aborted_uploads);
        stored(s->m, "remote", (double)p->stored);
    }
    if (job->kind == QS_JOB_BACKUP) {
        double local = 0;
        for (size_t i = 0; i < job->nitems; i++)
            if (job->items[i].local_kept > 0)
                local += job->items[i].local_kept;
        stored(s->m, "local", local);
    }
    qs_metrics_set(s->m, QS_MN(BACKUP_IN_PROGRESS), NULL, 0);
}

/* ---- probes and seeding ----------------------------------------------------- */

void qs_series_probed(struct qs_series *s, int qdrant_up, int destination_up)
{
    qs_metrics_set(s->m, QS_MN(QDRANT_UP), NULL, qdrant_up);
    qs_metrics_set(s->m, QS_MN(DESTINATION_UP), NULL, destination_up);
}

void qs_series_listing(struct qs_series *s, char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is_selected(s, names[i]))
            coll_get(s, names[i]);
    for (size_t i = 0; i < s->ncolls; i++) {
        struct coll_state *c = &s->colls[i];
        int exists = 0;
        for (size_t k = 0; k < n && !exists; k++)
            exists = strcmp(names[k], c->name) == 0;
        set_present(s, c, exists && is_selected(s, c->name));
    }
}

void qs_series_seed(struct qs_series *s, const struct qs_catalog *cat)
{
    int64_t now = qs_clock_now();
    size_t drills = 0;
    for (size_t i = 0; i < cat->nbackups; i++) {
        const struct qs_catalog_backup *b = &cat->backups[i];
        struct coll_state *c = coll_get(s, b->m.collection);
        if (c == NULL)
            continue;
        note_backup(c, b->m.snapshot, b->m.created, b->manifest_mtime, now);
        note_first_seen(c, qs_retention_backup_time(b->m.created, b->manifest_mtime, now, NULL));
        if (b->drill_state == 1 && b->drill.ok && b->drill.finished > c->drill_success)
            c->drill_success = b->drill.finished;
        drills += b->drill_state == 1;
    }
    for (size_t i = 0; i < s->ncolls; i++)
        series_sync(s, &s->colls[i]);
    stored(s->m, "remote", (double)cat->nbackups);
    s->seeded = 1;
    QS_INFO("seeded metrics from %zu backups and %zu drill results at the destination",
            cat->nbackups, drills);
}

int qs_series_seeded(const struct qs_series *s)
{
    return s->seeded;
}

void qs_series_next_backup(struct qs_series *s, int64_t t)
{
    qs_metrics_set(s->m, QS_MN(NEXT_BACKUP), NULL, (double)t);
}

/* ---- cluster mode ------------------------------------------------------------------- */

static const char *skip_reason(enum qs_cluster_role role)
{
    return role == QS_CLUSTER_ROLE_FOLLOWER    ? "follower"
           : role == QS_CLUSTER_ROLE_NO_LEADER ? "no_leader"
                                               : "cluster_unknown";
}

void qs_series_cluster_role(struct qs_series *s, enum qs_cluster_role role)
{
    qs_metrics_set(s->m, QS_MN(CLUSTER_LEADER), NULL, role == QS_CLUSTER_ROLE_LEADER);
    if (role == QS_CLUSTER_ROLE_LEADER || role == QS_CLUSTER_ROLE_FOLLOWER ||
        role == QS_CLUSTER_ROLE_NO_LEADER)
        s->seen_cluster = 1;
}

int qs_series_seen_cluster(const struct qs_series *s)
{
    return s->seen_cluster;
}

void qs_series_schedule_skipped(struct qs_series *s, enum qs_job_kind kind,
                                enum qs_cluster_role role)
{
    const char *l[] = {"kind", kind == QS_JOB_DRILL ? "drill" : "backup", "reason",
                       skip_reason(role), NULL};
    qs_metrics_add(s->m, QS_MN(SCHEDULE_SKIPPED), l, 1);
}

int qs_series_present(const struct qs_series *s, char ***names, size_t *n)
{
    for (size_t i = 0; i < s->ncolls; i++) {
        const struct coll_state *c = &s->colls[i];
        if (!c->present || strcmp(c->name, QS_MANIFEST_FULL_DIR) == 0)
            continue;
        char *copy = strdup(c->name);
        char **v = copy != NULL ? realloc(*names, (*n + 1) * sizeof(*v)) : NULL;
        if (v == NULL) {
            free(copy);
            return UV_ENOMEM;
        }
        *names = v;
        v[(*n)++] = copy;
    }
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------------- */

int qs_series_new(struct qs_metrics *metrics, const struct qs_config *cfg, struct qs_series **out)
{
    *out = NULL;
    struct qs_series *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    s->m = metrics;
    s->cfg = cfg;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(families) / sizeof(families[0]); i++)
        rc = qs_metrics_register_id(metrics, families[i]);
    /* Full-storage snapshots exist as long as Qdrant does; collections get
     * their series once a probe has seen them in Qdrant. */
    struct coll_state *full = NULL;
    if (rc == 0 && cfg->mode == QS_MODE_FULL && (full = coll_get(s, QS_MANIFEST_FULL_DIR)) == NULL)
        rc = UV_ENOMEM;
    if (rc == 0)
        rc = qs_metrics_on_render(metrics, refresh_ages, s);
    if (rc != 0) {
        for (size_t i = 0; i < s->ncolls; i++)
            free(s->colls[i].name);
        free(s->colls);
        free(s);
        return rc;
    }
    if (full != NULL)
        set_present(s, full, 1);
    int64_t now = qs_clock_now();
    qs_metrics_set(metrics, QS_MN(BACKUP_IN_PROGRESS), NULL, 0);
    qs_metrics_set(metrics, QS_MN(QDRANT_UP), NULL, 0);
    qs_metrics_set(metrics, QS_MN(DESTINATION_UP), NULL, 0);
    qs_metrics_set(metrics, QS_MN(RESTORE_LAST_SUCCESS), NULL, 0);
    qs_metrics_set(metrics, QS_MN(SCHEDULE_INTERVAL), NULL,
                   (double)qs_cron_interval(&cfg->cron, now));
    qs_metrics_set(metrics, QS_MN(RESTORE_DRILL_INTERVAL), NULL,
                   (double)qs_cron_interval(&cfg->drill_cron, now));
    static const char *const results[] = {"success", "failure"};
    for (size_t i = 0; i < 2; i++) {
        const char *l[] = {"result", results[i], NULL};
        qs_metrics_add(metrics, QS_MN(RESTORE_TOTAL), l, 0);
        qs_metrics_add(metrics, QS_MN(RESTORE_DRILL_TOTAL), l, 0);
    }
    static const char *const kinds[] = {"backup", "incomplete", "multipart"};
    for (size_t i = 0; i < 3; i++)
        prune_deleted(metrics, "remote", kinds[i], 0);
    prune_deleted(metrics, "local", "backup", 0);
    qs_metrics_set(metrics, QS_MN(CLUSTER_LEADER), NULL, 0);
    static const enum qs_cluster_role skips[] = {
        QS_CLUSTER_ROLE_FOLLOWER, QS_CLUSTER_ROLE_NO_LEADER, QS_CLUSTER_ROLE_UNKNOWN};
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < sizeof(skips) / sizeof(skips[0]); i++) {
            const char *l[] = {"kind", k == 0 ? "backup" : "drill", "reason", skip_reason(skips[i]),
                               NULL};
            qs_metrics_add(metrics, QS_MN(SCHEDULE_SKIPPED), l, 0);
        }
    }
    *out = s;
    return 0;
}

void qs_series_free(struct qs_series *s)
{
    if (s == NULL)
        return;
    qs_metrics_off_render(s->m, refresh_ages, s);
    for (size_t i = 0; i < s->ncolls; i++)
        free(s->colls[i].name);
    free(s->colls);
    free(s);
}
