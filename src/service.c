#include "qsnap/service.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "qsnap/backup.h"
#include "qsnap/catalog.h"
#include "qsnap/daemon.h"
#include "qsnap/drill.h"
#include "qsnap/job.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"
#include "qsnap/prune.h"
#include "qsnap/restore.h"
#include "qsnap/retention.h"

#define DONE_JOBS 32
#define PROBE_INTERVAL_MS 30000
#define SCHEDULE_TICK_MAX_MS 30000

enum ev_type {
    EV_PHASE,
    EV_ITEM,
    EV_DONE,
};

struct event {
    struct event *next;
    enum ev_type type;
    char *collection;             /* EV_PHASE */
    const char *phase;            /* EV_PHASE, static */
    struct qs_job_item item;      /* EV_ITEM, deep copy owned */
    int rc;                       /* EV_DONE */
    struct qs_error err;          /* EV_DONE */
    struct qs_prune_result prune; /* EV_DONE, backups only */
    int pruned;
};

/* Parameters of the running job, owned by the worker until EV_DONE. */
struct run {
    struct qs_service *svc;
    struct qs_job *job; /* borrowed: the loop owns the job */
    struct qs_progress progress;
    char **collections; /* owned */
    size_t ncollections;
    char *restore_collection, *restore_snapshot, *restore_target; /* owned */
};

/* What the service knows about one collection. Its per-collection series
 * exist only while `present` (selected for backup and seen in Qdrant at the
 * last probe, or just backed up); they are a projection of this state
 * (series_sync), so they vanish and come back without losing it. */
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

struct qs_service {
    uv_loop_t *loop;
    struct qs_http_server *http;
    struct qs_metrics *metrics;
    const struct qs_config *cfg;
    struct qs_storage *storage;
    struct qs_qdrant *qdrant;

    uv_async_t async;
    uv_timer_t sched_timer;
    uv_timer_t probe_timer;
    int handles_open;

    pthread_mutex_t mu;
    struct event *ev_head, *ev_tail;

    struct qs_job *current;
    struct run *run;
    uv_thread_t thread;
    struct qs_job *done[DONE_JOBS];
    size_t ndone;

    int64_t next_backup; /* 0 = off */
    int64_t next_drill;

    int probed;
    int probing;
    int seeded; /* metrics seeded from the destination's manifests */
    uint64_t probe_interval_ms;
    int qdrant_up, dest_up;
    char qdrant_err[300], dest_err[300];

    struct coll_state *colls;
    size_t ncolls;

    int shutting_down;
    void (*shutdown_cb)(void *);
    void *shutdown_ud;
};

/* ---- metrics ---------------------------------------------------------------
 */

static const char *const L_COLL[] = {"collection", NULL};
static const char *const L_COLL_RESULT[] = {"collection", "result", NULL};
static const char *const L_RESULT[] = {"result", NULL};
static const char *const L_LOC[] = {"location", NULL};
static const char *const L_LOC_KIND[] = {"location", "kind", NULL};

static void register_metrics(struct qs_metrics *m)
{
    struct {
        const char *name;
        enum qs_metric_type type;
        const char *help;
        const char *const *labels;
    } defs[] = {
        {"qsnap_backup_last_success_timestamp_seconds", QS_METRIC_GAUGE,
         "Creation time of the newest complete backup (0 when none; one dated in the future "
         "counts from when it was written).",
         L_COLL},
        {"qsnap_backup_age_seconds", QS_METRIC_GAUGE,
         "Seconds since the newest complete backup was created.", L_COLL},
        {"qsnap_backup_stale", QS_METRIC_GAUGE,
         "1 when the newest backup is older than QSNAP_STALE_AFTER, or none exists and the "
         "collection was first seen longer ago than that.",
         L_COLL},
        {"qsnap_collection_first_seen_timestamp_seconds", QS_METRIC_GAUGE,
         "When qsnap first saw the collection in Qdrant, or the creation time of its oldest "
         "backup if earlier.",
         L_COLL},
        {"qsnap_backup_consecutive_failures", QS_METRIC_GAUGE,
         "Failed backup attempts since the last successful backup.", L_COLL},
        {"qsnap_backup_last_attempt_timestamp_seconds", QS_METRIC_GAUGE,
         "Start time of the last backup attempt.", L_COLL},
        {"qsnap_backup_last_duration_seconds", QS_METRIC_GAUGE,
         "Duration of the last successful backup.", L_COLL},
        {"qsnap_backup_last_size_bytes", QS_METRIC_GAUGE,
         "Snapshot size of the last successful backup.", L_COLL},
        {"qsnap_backups_total", QS_METRIC_COUNTER, "Backup attempts by outcome.", L_COLL_RESULT},
        {"qsnap_backup_bytes_total", QS_METRIC_COUNTER, "Bytes streamed to the destination.",
         L_COLL},
        {"qsnap_backups_stored", QS_METRIC_GAUGE, "Complete backups held.", L_LOC},
        {"qsnap_prune_deleted_total", QS_METRIC_COUNTER, "Objects deleted by retention.",
         L_LOC_KIND},
        {"qsnap_restore_total", QS_METRIC_COUNTER, "Restores by outcome.", L_RESULT},
        {"qsnap_restore_last_success_timestamp_seconds", QS_METRIC_GAUGE,
         "Time of the last successful restore.", NULL},
        {"qsnap_restore_drill_last_success_timestamp_seconds", QS_METRIC_GAUGE,
         "Finish time of the newest restore drill that restored and matched points_count (0 "
         "when none).",
         L_COLL},
        {"qsnap_restore_drill_total", QS_METRIC_COUNTER, "Restore drills by outcome.", L_RESULT},
        {"qsnap_restore_drill_interval_seconds", QS_METRIC_GAUGE,
         "Expected interval between restore drills (0 when drills are off).", NULL},
        {"qsnap_backup_in_progress", QS_METRIC_GAUGE, "1 while a job runs.", NULL},
        {"qsnap_next_backup_timestamp_seconds", QS_METRIC_GAUGE,
         "Next scheduled backup (0 when the schedule is off).", NULL},
        {"qsnap_schedule_interval_seconds", QS_METRIC_GAUGE,
         "Expected interval between scheduled backups.", NULL},
        {"qsnap_qdrant_up", QS_METRIC_GAUGE, "1 when Qdrant answered the last probe.", NULL},
        {"qsnap_destination_up", QS_METRIC_GAUGE, "1 when the destination answered the last probe.",
         NULL},
    };
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
        qs_metrics_register(m, defs[i].name, defs[i].type, defs[i].help, defs[i].labels);
    qs_metrics_set(m, "qsnap_backup_in_progress", NULL, 0);
    qs_metrics_set(m, "qsnap_qdrant_up", NULL, 0);
    qs_metrics_set(m, "qsnap_destination_up", NULL, 0);
    qs_metrics_set(m, "qsnap_restore_last_success_timestamp_seconds", NULL, 0);
    static const char *const results[] = {"success", "failure"};
    for (size_t i = 0; i < 2; i++) {
        qs_metrics_add(m, "qsnap_restore_total", (const char *[]){"result", results[i], NULL}, 0);
        qs_metrics_add(m, "qsnap_restore_drill_total", (const char *[]){"result", results[i], NULL},
                       0);
    }
    static const char *const kinds[] = {"backup", "incomplete", "multipart"};
    for (size_t i = 0; i < 3; i++)
        qs_metrics_add(m, "qsnap_prune_deleted_total",
                       (const char *[]){"location", "remote", "kind", kinds[i], NULL}, 0);
    qs_metrics_add(m, "qsnap_prune_deleted_total",
                   (const char *[]){"location", "local", "kind", "backup", NULL}, 0);
}

static struct coll_state *coll_find(struct qs_service *svc, const char *name)
{
    for (size_t i = 0; i < svc->ncolls; i++)
        if (strcmp(svc->colls[i].name, name) == 0)
            return &svc->colls[i];
    return NULL;
}

/* The state of a collection, created (not present) when new. NULL on ENOMEM. */
static struct coll_state *coll_get(struct qs_service *svc, const char *name)
{
    struct coll_state *c = coll_find(svc, name);
    if (c != NULL)
        return c;
    struct coll_state *v = realloc(svc->colls, (svc->ncolls + 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    svc->colls = v;
    c = &v[svc->ncolls];
    memset(c, 0, sizeof(*c));
    c->last_duration = c->last_size = -1;
    c->name = strdup(name);
    if (c->name == NULL)
        return NULL;
    svc->ncolls++;
    return c;
}

/* 1 when name is selected for backup: in full mode only the full-storage
 * snapshot; else QSNAP_COLLECTIONS (or every collection), never a drill
 * scratch collection. */
static int is_selected(const struct qs_service *svc, const char *name)
{
    const struct qs_config *cfg = svc->cfg;
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
static void refresh_age(struct qs_service *svc, const struct coll_state *c, int64_t now)
{
    struct qs_metrics *m = svc->metrics;
    const char *l[] = {"collection", c->name, NULL};
    if (c->last_success > 0) {
        double age = (double)(now - c->last_success);
        qs_metrics_set(m, "qsnap_backup_age_seconds", l, age < 0 ? 0 : age);
    } else {
        qs_metrics_remove(m, "qsnap_backup_age_seconds", l);
    }
    qs_metrics_set(
        m, "qsnap_backup_stale", l,
        qs_retention_is_stale(c->last_success, c->first_seen, now, svc->cfg->stale_after_s));
}

/* Makes the collection's series match its state: all of them while it is
 * present, none otherwise. */
static void series_sync(struct qs_service *svc, const struct coll_state *c)
{
    static const char *const families[] = {
        "qsnap_backup_last_success_timestamp_seconds",
        "qsnap_backup_age_seconds",
        "qsnap_backup_stale",
        "qsnap_backup_last_attempt_timestamp_seconds",
        "qsnap_backup_last_duration_seconds",
        "qsnap_backup_last_size_bytes",
        "qsnap_backup_bytes_total",
        "qsnap_collection_first_seen_timestamp_seconds",
        "qsnap_backup_consecutive_failures",
        "qsnap_restore_drill_last_success_timestamp_seconds",
    };
    struct qs_metrics *m = svc->metrics;
    const char *l[] = {"collection", c->name, NULL};
    const char *ok[] = {"collection", c->name, "result", "success", NULL};
    const char *failed[] = {"collection", c->name, "result", "failure", NULL};
    if (!c->present) {
        for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
            qs_metrics_remove(m, families[i], l);
        qs_metrics_remove(m, "qsnap_backups_total", ok);
        qs_metrics_remove(m, "qsnap_backups_total", failed);
        return;
    }
    qs_metrics_set(m, "qsnap_backup_last_success_timestamp_seconds", l, (double)c->last_success);
    if (c->last_attempt > 0)
        qs_metrics_set(m, "qsnap_backup_last_attempt_timestamp_seconds", l,
                       (double)c->last_attempt);
    if (c->last_duration >= 0)
        qs_metrics_set(m, "qsnap_backup_last_duration_seconds", l, c->last_duration);
    if (c->last_size >= 0)
        qs_metrics_set(m, "qsnap_backup_last_size_bytes", l, c->last_size);
    qs_metrics_set(m, "qsnap_backups_total", ok, c->ok_total);
    qs_metrics_set(m, "qsnap_backups_total", failed, c->failed_total);
    qs_metrics_set(m, "qsnap_backup_bytes_total", l, c->bytes_total);
    qs_metrics_set(m, "qsnap_collection_first_seen_timestamp_seconds", l, (double)c->first_seen);
    qs_metrics_set(m, "qsnap_backup_consecutive_failures", l, c->failures);
    qs_metrics_set(m, "qsnap_restore_drill_last_success_timestamp_seconds", l,
                   (double)c->drill_success);
    refresh_age(svc, c, qs_clock_now());
}

static void note_first_seen(struct coll_state *c, int64_t t)
{
    if (t > 0 && (c->first_seen == 0 || t < c->first_seen))
        c->first_seen = t;
}

/* Marks a selected collection as existing in Qdrant now (or gone). */
static void set_present(struct qs_service *svc, struct coll_state *c, int present)
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
    series_sync(svc, c);
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
    struct qs_service *svc = ud;
    int64_t now = qs_clock_now();
    for (size_t i = 0; i < svc->ncolls; i++)
        if (svc->colls[i].present)
            refresh_age(svc, &svc->colls[i], now);
}

/* ---- events (worker -> loop)
 * ---------------------------------------------------- */

static void push_event(struct qs_service *svc, struct event *ev)
{
    pthread_mutex_lock(&svc->mu);
    if (svc->ev_tail != NULL)
        svc->ev_tail->next = ev;
    else
        svc->ev_head = ev;
    svc->ev_tail = ev;
    pthread_mutex_unlock(&svc->mu);
    uv_async_send(&svc->async);
}

static char *dup_s(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static void item_copy(struct qs_job_item *dst, const struct qs_job_item *src)
{
    *dst = *src;
    dst->collection = dup_s(src->collection);
    dst->snapshot = dup_s(src->snapshot);
    dst->object = dup_s(src->object);
    dst->error = dup_s(src->error);
}

static void item_free(struct qs_job_item *it)
{
    free(it->collection);
    free(it->snapshot);
    free(it->object);
    free(it->error);
}

static void progress_phase_cb(struct qs_progress *p, const char *collection, const char *phase)
{
    struct run *run = (struct run *)((char *)p - offsetof(struct run, progress));
    struct event *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        return;
    ev->type = EV_PHASE;
    ev->collection = dup_s(collection);
    ev->phase = phase;
    push_event(run->svc, ev);
}

static void progress_item_cb(struct qs_progress *p, const struct qs_job_item *item)
{
    struct run *run = (struct run *)((char *)p - offsetof(struct run, progress));
    struct event *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        return;
    ev->type = EV_ITEM;
    item_copy(&ev->item, item);
    push_event(run->svc, ev);
}

static void run_free(struct run *run)
{
    if (run == NULL)
        return;
    for (size_t i = 0; i < run->ncollections; i++)
        free(run->collections[i]);
    free(run->collections);
    free(run->restore_collection);
    free(run->restore_snapshot);
    free(run->restore_target);
    free(run);
}

/* ---- the worker
 * ---------------------------------------------------------------------- */

static void worker_main(void *arg)
{
    struct run *run = arg;
    struct qs_service *svc = run->svc;
    struct qs_backup_env env = {
        .cfg = svc->cfg,
        .storage = svc->storage,
        .qdrant = svc->qdrant,
        .progress = &run->progress,
    };
    struct event *done = calloc(1, sizeof(*done));
    struct qs_error err;
    qs_error_clear(&err);
    int rc = 0;
    qs_prune_result_init(&done->prune);
    switch (run->job->kind) {
    case QS_JOB_BACKUP: {
        struct qs_backup_summary sum;
        rc = qs_backup_run(&env, run->collections, run->ncollections, &sum, &err);
        if (rc != QS_ECANCELED && !qs_cancel_requested(run->progress.cancel)) {
            struct qs_error perr;
            qs_error_clear(&perr);
            if (qs_prune_run(svc->storage, svc->cfg, 0, qs_clock_now(), &run->progress,
                             &done->prune, &perr) != 0)
                qs_log(QS_LOG_ERROR,
                       &(struct qs_log_ctx){.job = run->job->id,
                                            .phase = "prune-remote",
                                            .error = perr.msg,
                                            .bytes = -1,
                                            .duration_s = -1},
                       "remote pruning failed");
            done->pruned = 1;
        }
        break;
    }
    case QS_JOB_RESTORE: {
        struct qs_job_item item = {0};
        item.collection =
            dup_s(run->restore_target != NULL ? run->restore_target : run->restore_collection);
        struct qs_restore_req req = {
            .collection = run->restore_collection,
            .snapshot = run->restore_snapshot,
            .target = run->restore_target,
        };
        rc = qs_restore_run(&env, &req, &item, &err);
        qs_progress_item_done(&run->progress, &item);
        item_free(&item);
        break;
    }
    case QS_JOB_DRILL: {
        /* The collections that have series (chosen on the loop), each with
         * the backup a restore of "latest" would use. */
        struct qs_catalog cat;
        rc = qs_catalog_load(svc->storage, NULL, 0, &cat, &err);
        size_t failed = 0, drilled = 0;
        for (size_t i = 0; rc == 0 && i < run->ncollections; i++) {
            const char *c = run->collections[i];
            const struct qs_catalog_backup *b = qs_catalog_find(&cat, c, NULL);
            if (b == NULL || b->m.mode == QS_MODE_FULL)
                continue;
            if (qs_cancel_requested(run->progress.cancel)) {
                rc = qs_error_set(&err, QS_ECANCELED, "drill cancelled");
                break;
            }
            struct qs_job_item item = {0};
            item.collection = strdup(c);
            struct qs_error e;
            qs_error_clear(&e);
            if (qs_restore_drill(&env, c, b->m.snapshot, &item, &e) != 0) {
                if (failed++ == 0)
                    err = e;
            }
            drilled++;
            qs_progress_item_done(&run->progress, &item);
            item_free(&item);
        }
        qs_catalog_deinit(&cat);
        if (rc == 0 && drilled == 0)
            QS_INFO("restore drill: no backed-up collection to drill");
        if (rc == 0 && failed > 0)
            rc = err.code != 0 ? err.code : QS_EIO;
        break;
    }
    case QS_JOB_PRUNE:
        rc = qs_prune_run(svc->storage, svc->cfg, 0, qs_clock_now(), &run->progress, &done->prune,
                          &err);
        done->pruned = 1;
        break;
    }
    done->type = EV_DONE;
    done->rc = rc;
    done->err = err;
    push_event(svc, done);
}

/* ---- loop side
 * ---------------------------------------------------------------------------
 */

static void maybe_finish_shutdown(struct qs_service *svc);
static void schedule_next(struct qs_service *svc);

static void apply_item(struct qs_service *svc, struct qs_job *job, const struct qs_job_item *it)
{
    struct qs_job_item *dst = qs_job_item(job, it->collection);
    if (dst != NULL) {
        char *name = dst->collection;
        item_free(&(struct qs_job_item){
            .snapshot = dst->snapshot, .object = dst->object, .error = dst->error});
        item_copy(dst, it);
        free(dst->collection);
        dst->collection = name;
    }
    struct qs_metrics *m = svc->metrics;
    int64_t now = qs_clock_now();
    if (job->kind == QS_JOB_BACKUP) {
        /* State is kept for any collection a job touched; series only for
         * the selected ones that exist (a success proves that it does). */
        struct coll_state *c = coll_get(svc, it->collection);
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
                qs_metrics_add(m, "qsnap_prune_deleted_total",
                               (const char *[]){"location", "local", "kind", "backup", NULL},
                               it->local_deleted);
        } else {
            c->failed_total++;
            c->failures++;
        }
        if (it->ok && !c->present && is_selected(svc, c->name))
            set_present(svc, c, 1);
        else
            series_sync(svc, c);
    } else if (job->kind == QS_JOB_RESTORE) {
        qs_metrics_add(m, "qsnap_restore_total",
                       (const char *[]){"result", it->ok ? "success" : "failure", NULL}, 1);
        if (it->ok)
            qs_metrics_set(m, "qsnap_restore_last_success_timestamp_seconds", NULL, (double)now);
    } else if (job->kind == QS_JOB_DRILL) {
        qs_metrics_add(m, "qsnap_restore_drill_total",
                       (const char *[]){"result", it->ok ? "success" : "failure", NULL}, 1);
        struct coll_state *c = it->ok ? coll_get(svc, it->collection) : NULL;
        if (c != NULL) {
            c->drill_success = now;
            series_sync(svc, c);
        }
    }
}

static void archive_job(struct qs_service *svc, struct qs_job *job)
{
    if (svc->ndone == DONE_JOBS) {
        qs_job_free(svc->done[0]);
        memmove(svc->done, svc->done + 1, (DONE_JOBS - 1) * sizeof(svc->done[0]));
        svc->ndone--;
    }
    svc->done[svc->ndone++] = job;
}

static void apply_done(struct qs_service *svc, struct event *ev)
{
    struct qs_job *job = svc->current;
    uv_thread_join(&svc->thread);
    struct qs_metrics *m = svc->metrics;
    if (ev->pruned) {
        const struct qs_prune_result *p = &ev->prune;
        qs_metrics_add(m, "qsnap_prune_deleted_total",
                       (const char *[]){"location", "remote", "kind", "backup", NULL},
                       (double)p->deleted_backups);
        qs_metrics_add(m, "qsnap_prune_deleted_total",
                       (const char *[]){"location", "remote", "kind", "incomplete", NULL},
                       (double)p->deleted_incomplete);
        qs_metrics_add(m, "qsnap_prune_deleted_total",
                       (const char *[]){"location", "remote", "kind", "multipart", NULL},
                       (double)p->aborted_uploads);
        qs_metrics_set(m, "qsnap_backups_stored", (const char *[]){"location", "remote", NULL},
                       (double)p->stored);
    }
    if (job->kind == QS_JOB_BACKUP) {
        double local = 0;
        for (size_t i = 0; i < job->nitems; i++)
            if (job->items[i].local_kept > 0)
                local += job->items[i].local_kept;
        qs_metrics_set(m, "qsnap_backups_stored", (const char *[]){"location", "local", NULL},
                       local);
    }
    enum qs_job_state to = ev->rc == 0 ? QS_JOB_SUCCEEDED
                           : ev->rc == QS_ECANCELED || qs_cancel_requested(&job->cancel)
                               ? QS_JOB_CANCELLED
                               : QS_JOB_FAILED;
    qs_job_transition(job, to, ev->rc != 0 ? ev->err.msg : NULL);
    size_t ok = 0, failed = 0;
    qs_job_counts(job, &ok, &failed);
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.job = job->id;
    c.duration_s = qs_monotonic() - job->started_mono;
    c.error = job->error;
    qs_log(ev->rc == 0 ? QS_LOG_INFO : QS_LOG_ERROR, &c, "%s job %s: %zu ok, %zu failed",
           qs_job_kind_name(job->kind), qs_job_state_name(job->state), ok, failed);
    qs_metrics_set(m, "qsnap_backup_in_progress", NULL, 0);
    run_free(svc->run);
    svc->run = NULL;
    svc->current = NULL;
    archive_job(svc, job);
    maybe_finish_shutdown(svc);
}

static void async_cb(uv_async_t *h)
{
    struct qs_service *svc = h->data;
    pthread_mutex_lock(&svc->mu);
    struct event *ev = svc->ev_head;
    svc->ev_head = svc->ev_tail = NULL;
    pthread_mutex_unlock(&svc->mu);
    while (ev != NULL) {
        struct event *next = ev->next;
        struct qs_job *job = svc->current;
        if (job != NULL) {
            switch (ev->type) {
            case EV_PHASE:
                qs_job_set_phase(job, ev->collection, ev->phase);
                if (job->kind == QS_JOB_BACKUP && ev->collection != NULL &&
                    strcmp(ev->phase, "snapshot") == 0) {
                    struct coll_state *c = coll_get(svc, ev->collection);
                    if (c != NULL) {
                        c->last_attempt = qs_clock_now();
                        series_sync(svc, c);
                    }
                }
                break;
            case EV_ITEM:
                apply_item(svc, job, &ev->item);
                break;
            case EV_DONE:
                apply_done(svc, ev);
                break;
            }
        }
        free(ev->collection);
        item_free(&ev->item);
        qs_prune_result_deinit(&ev->prune);
        free(ev);
        ev = next;
    }
}

/* Starts a job. On success the service owns job and run. */
static int start_job(struct qs_service *svc, struct qs_job *job, struct run *run)
{
    if (svc->current != NULL)
        return QS_EBUSY;
    if (svc->shutting_down)
        return QS_ECANCELED;
    run->svc = svc;
    run->job = job;
    run->progress.phase = progress_phase_cb;
    run->progress.item_done = progress_item_cb;
    run->progress.bytes = &job->bytes;
    run->progress.cancel = &job->cancel;
    run->progress.job_id = job->id;
    qs_job_transition(job, QS_JOB_RUNNING, NULL);
    svc->current = job;
    svc->run = run;
    int rc = uv_thread_create(&svc->thread, worker_main, run);
    if (rc != 0) {
        svc->current = NULL;
        svc->run = NULL;
        qs_job_transition(job, QS_JOB_FAILED, "cannot start worker thread");
        archive_job(svc, job);
        run_free(run);
        return rc;
    }
    qs_metrics_set(svc->metrics, "qsnap_backup_in_progress", NULL, 1);
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.job = job->id;
    qs_log(QS_LOG_INFO, &c, "%s job started (trigger: %s)", qs_job_kind_name(job->kind),
           job->trigger);
    return 0;
}

static int start_backup(struct qs_service *svc, const char *trigger, const char *collection,
                        struct qs_job **out)
{
    if (svc->current != NULL)
        return QS_EBUSY;
    struct qs_job *job = qs_job_new(QS_JOB_BACKUP, trigger);
    struct run *run = calloc(1, sizeof(*run));
    if (job == NULL || run == NULL) {
        qs_job_free(job);
        free(run);
        return UV_ENOMEM;
    }
    if (collection != NULL) {
        run->collections = calloc(1, sizeof(char *));
        if (run->collections == NULL || (run->collections[0] = strdup(collection)) == NULL) {
            qs_job_free(job);
            run_free(run);
            return UV_ENOMEM;
        }
        run->ncollections = 1;
    }
    int rc = start_job(svc, job, run);
    if (rc == QS_EBUSY || rc == QS_ECANCELED) {
        qs_job_free(job);
        run_free(run);
        return rc;
    }
    if (out != NULL)
        *out = job;
    return rc;
}

/* ---- schedules
 * -----------------------------------------------------------------------------
 */

static int64_t next_fire(const struct qs_cron *cron, int64_t now, int64_t jitter_s)
{
    int64_t t = qs_cron_next(cron, now);
    if (t < 0)
        return 0;
    if (jitter_s > 0) {
        uint64_t r = 0;
        uv_random(NULL, NULL, &r, sizeof(r), 0, NULL);
        t += (int64_t)(r % (uint64_t)(jitter_s + 1));
    }
    return t;
}

/* Drills test the collections that have series: selected for backup and
 * present in Qdrant. */
static int drill_targets(struct qs_service *svc, struct run *run)
{
    run->collections = calloc(svc->ncolls + 1, sizeof(char *));
    if (run->collections == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < svc->ncolls; i++) {
        const struct coll_state *c = &svc->colls[i];
        if (!c->present || strcmp(c->name, QS_MANIFEST_FULL_DIR) == 0)
            continue;
        if ((run->collections[run->ncollections] = strdup(c->name)) == NULL)
            return UV_ENOMEM;
        run->ncollections++;
    }
    return 0;
}

static void sched_cb(uv_timer_t *t)
{
    struct qs_service *svc = t->data;
    if (svc->shutting_down)
        return;
    int64_t now = qs_clock_now();
    if (svc->next_backup > 0 && now >= svc->next_backup) {
        int rc = start_backup(svc, "schedule", NULL, NULL);
        if (rc == QS_EBUSY)
            QS_WARN("scheduled backup skipped: another job is running");
        else if (rc != 0)
            QS_ERROR("scheduled backup could not start: %s", qs_strerror(rc));
        svc->next_backup = next_fire(&svc->cfg->cron, now, svc->cfg->jitter_s);
    }
    if (svc->next_drill > 0 && now >= svc->next_drill) {
        struct qs_job *job = qs_job_new(QS_JOB_DRILL, "drill");
        struct run *run = calloc(1, sizeof(*run));
        int rc = job != NULL && run != NULL ? drill_targets(svc, run) : UV_ENOMEM;
        if (rc == 0)
            rc = start_job(svc, job, run);
        if (rc != 0) {
            if (rc == QS_EBUSY)
                QS_WARN("restore drill skipped: another job is running");
            qs_job_free(job);
            run_free(run);
        }
        svc->next_drill = next_fire(&svc->cfg->drill_cron, now, 0);
    }
    schedule_next(svc);
}

static void schedule_next(struct qs_service *svc)
{
    int64_t now = qs_clock_now();
    qs_metrics_set(svc->metrics, "qsnap_next_backup_timestamp_seconds", NULL,
                   (double)svc->next_backup);
    int64_t soonest = 0;
    if (svc->next_backup > 0)
        soonest = svc->next_backup;
    if (svc->next_drill > 0 && (soonest == 0 || svc->next_drill < soonest))
        soonest = svc->next_drill;
    uint64_t ms = SCHEDULE_TICK_MAX_MS;
    if (soonest > 0) {
        int64_t d = soonest - now;
        if (d <= 0)
            ms = 1;
        else if ((uint64_t)d * 1000 < ms)
            ms = (uint64_t)d * 1000;
    }
    uv_timer_start(&svc->sched_timer, sched_cb, ms, 0);
}

/* ---- probes and seeding (threadpool)
 * ------------------------------------------------------- */

struct probe_work {
    uv_work_t req;
    struct qs_service *svc;
    int seed; /* also load the catalog to seed metrics */
    int qdrant_rc, dest_rc;
    struct qs_error qerr, derr;
    int listed; /* qcolls holds Qdrant's collections */
    char **qcolls;
    size_t nqcolls;
    struct qs_catalog cat;
    int cat_rc;
};

static void probe_work_cb(uv_work_t *req)
{
    struct probe_work *w = req->data;
    struct qs_service *svc = w->svc;
    qs_error_clear(&w->qerr);
    qs_error_clear(&w->derr);
    w->qdrant_rc = qs_qdrant_probe(svc->qdrant, &w->qerr);
    if (w->qdrant_rc == 0 && svc->cfg->mode == QS_MODE_COLLECTIONS) {
        struct qs_error e;
        qs_error_clear(&e);
        w->listed = qs_qdrant_list_collections(svc->qdrant, &w->qcolls, &w->nqcolls, &e) == 0;
        if (!w->listed)
            qs_log(QS_LOG_WARN, &(struct qs_log_ctx){.error = e.msg, .bytes = -1, .duration_s = -1},
                   "could not list Qdrant's collections");
    }
    w->dest_rc = qs_storage_probe(svc->storage, &w->derr);
    w->cat_rc = -1;
    if (w->seed && w->dest_rc == 0) {
        struct qs_error e;
        qs_error_clear(&e);
        w->cat_rc = qs_catalog_load(svc->storage, NULL, QS_CATALOG_DRILLS, &w->cat, &e);
        if (w->cat_rc != 0)
            qs_log(QS_LOG_WARN, &(struct qs_log_ctx){.error = e.msg, .bytes = -1, .duration_s = -1},
                   "could not read the destination's manifests");
    }
}

/* Seeds the collections' state from the destination's backups and drill
 * results, so that freshness, grace and drills survive a restart. */
static void seed(struct qs_service *svc, const struct qs_catalog *cat)
{
    int64_t now = qs_clock_now();
    size_t drills = 0;
    for (size_t i = 0; i < cat->nbackups; i++) {
        const struct qs_catalog_backup *b = &cat->backups[i];
        struct coll_state *c = coll_get(svc, b->m.collection);
        if (c == NULL)
            continue;
        note_backup(c, b->m.snapshot, b->m.created, b->manifest_mtime, now);
        note_first_seen(c, qs_retention_backup_time(b->m.created, b->manifest_mtime, now, NULL));
        if (b->drill_state == 1 && b->drill.ok && b->drill.finished > c->drill_success)
            c->drill_success = b->drill.finished;
        drills += b->drill_state == 1;
    }
    for (size_t i = 0; i < svc->ncolls; i++)
        series_sync(svc, &svc->colls[i]);
    qs_metrics_set(svc->metrics, "qsnap_backups_stored",
                   (const char *[]){"location", "remote", NULL}, (double)cat->nbackups);
    svc->seeded = 1;
    QS_INFO("seeded metrics from %zu backups and %zu drill results at the destination",
            cat->nbackups, drills);
}

/* Qdrant's collections as listed by a probe: the selected ones are present
 * (series), every other one is not. */
static void apply_listing(struct qs_service *svc, char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is_selected(svc, names[i]))
            coll_get(svc, names[i]);
    for (size_t i = 0; i < svc->ncolls; i++) {
        struct coll_state *c = &svc->colls[i];
        int exists = 0;
        for (size_t k = 0; k < n && !exists; k++)
            exists = strcmp(names[k], c->name) == 0;
        set_present(svc, c, exists && is_selected(svc, c->name));
    }
}

static void probe_after_cb(uv_work_t *req, int status)
{
    struct probe_work *w = req->data;
    struct qs_service *svc = w->svc;
    svc->probing = 0;
    if (status == 0) {
        if (w->qdrant_rc == 0 && !svc->qdrant_up)
            QS_INFO("Qdrant is reachable");
        if (w->qdrant_rc != 0 && (svc->qdrant_up || !svc->probed))
            qs_log(QS_LOG_WARN,
                   &(struct qs_log_ctx){.error = w->qerr.msg, .bytes = -1, .duration_s = -1},
                   "Qdrant probe failed");
        if (w->dest_rc != 0 && (svc->dest_up || !svc->probed))
            qs_log(QS_LOG_WARN,
                   &(struct qs_log_ctx){.error = w->derr.msg, .bytes = -1, .duration_s = -1},
                   "destination probe failed");
        svc->qdrant_up = w->qdrant_rc == 0;
        svc->dest_up = w->dest_rc == 0;
        snprintf(svc->qdrant_err, sizeof(svc->qdrant_err), "%s", w->qerr.msg);
        snprintf(svc->dest_err, sizeof(svc->dest_err), "%s", w->derr.msg);
        svc->probed = 1;
        qs_metrics_set(svc->metrics, "qsnap_qdrant_up", NULL, svc->qdrant_up);
        qs_metrics_set(svc->metrics, "qsnap_destination_up", NULL, svc->dest_up);
        if (w->cat_rc == 0)
            seed(svc, &w->cat);
        if (w->listed)
            apply_listing(svc, w->qcolls, w->nqcolls);
    }
    qs_catalog_deinit(&w->cat);
    qs_qdrant_strv_free(w->qcolls, w->nqcolls);
    free(w);
    maybe_finish_shutdown(svc);
}

static void start_probe(struct qs_service *svc, int seed)
{
    if (svc->probing || svc->shutting_down)
        return;
    struct probe_work *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return;
    w->req.data = w;
    w->svc = svc;
    w->seed = seed;
    svc->probing = 1;
    if (uv_queue_work(svc->loop, &w->req, probe_work_cb, probe_after_cb) != 0) {
        svc->probing = 0;
        free(w);
    }
}

static void probe_timer_cb(uv_timer_t *t)
{
    struct qs_service *svc = t->data;
    start_probe(svc, !svc->seeded);
}

/* ---- HTTP
 * ---------------------------------------------------------------------------------
 */

static void respond_json(struct qs_http_req *req, int status, const char *json)
{
    qs_http_respond(req, status, "application/json", json, strlen(json));
}

static void h_readyz(struct qs_http_req *req, void *ud)
{
    struct qs_service *svc = ud;
    if (svc->shutting_down) {
        qs_http_respond_json_error(req, 503, "shutting down");
        return;
    }
    if (!svc->probed) {
        qs_http_respond_json_error(req, 503,
                                   "first probe of Qdrant and the destination "
                                   "still running");
        return;
    }
    if (!svc->qdrant_up || !svc->dest_up) {
        char msg[700];
        snprintf(msg, sizeof(msg), "%s%s%s%s%s",
                 svc->qdrant_up ? "" : "qdrant: ", svc->qdrant_up ? "" : svc->qdrant_err,
                 !svc->qdrant_up && !svc->dest_up ? "; " : "",
                 svc->dest_up ? "" : "destination: ", svc->dest_up ? "" : svc->dest_err);
        {
            qs_http_respond_json_error(req, 503, msg);
            return;
        }
    }
    respond_json(req, 200, "{\"status\":\"ready\"}");
}

static int check_auth(struct qs_service *svc, struct qs_http_req *req)
{
    int a = qs_http_bearer_ok(req, svc->cfg->admin_token);
    if (a == 403)
        qs_http_respond_json_error(req, 403,
                                   "POST endpoints are disabled: no admin token "
                                   "configured (QSNAP_ADMIN_TOKEN)");
    else if (a != 0)
        qs_http_respond_ex(req, 401, "application/json",
                           "WWW-Authenticate: Bearer realm=\"qsnap\"\r\n",
                           "{\"error\":\"missing or invalid bearer token\"}", 43, 0);
    return a;
}

static void respond_busy(struct qs_service *svc, struct qs_http_req *req)
{
    char body[200];
    snprintf(body, sizeof(body), "{\"error\":\"a job is already running\",\"job\":\"%s\"}",
             svc->current != NULL ? svc->current->id : "");
    respond_json(req, 409, body);
}

static void respond_job(struct qs_http_req *req, const struct qs_job *job)
{
    char body[120];
    snprintf(body, sizeof(body), "{\"job\":\"%s\"}", job->id);
    qs_http_respond_ex(req, 202, "application/json", NULL, body, strlen(body), 0);
}

/* Backup of one collection: validate on the loop, check on the pool that
 * the collection exists in Qdrant (so a name that does not exist starts no
 * job and creates no series), then start the job on the loop. */
struct backup_work {
    uv_work_t req;
    struct qs_service *svc;
    struct qs_http_req *http;
    char *collection;
    int rc;
    struct qs_error err;
};

static void backup_lookup_cb(uv_work_t *req)
{
    struct backup_work *w = req->data;
    qs_error_clear(&w->err);
    struct qs_collection_info info;
    memset(&info, 0, sizeof(info));
    w->rc = qs_qdrant_collection_info(w->svc->qdrant, w->collection, &info, &w->err);
    if (w->rc == 0)
        qs_collection_info_deinit(&info);
}

static void start_backup_answer(struct qs_service *svc, struct qs_http_req *req,
                                const char *collection)
{
    struct qs_job *job = NULL;
    int rc = start_backup(svc, "api", collection, &job);
    if (rc == QS_EBUSY)
        respond_busy(svc, req);
    else if (rc == QS_ECANCELED)
        qs_http_respond_json_error(req, 503, "shutting down");
    else if (rc != 0)
        qs_http_respond_json_error(req, 500, "could not start the backup job");
    else
        respond_job(req, job);
}

static void backup_after_cb(uv_work_t *req, int status)
{
    struct backup_work *w = req->data;
    struct qs_service *svc = w->svc;
    if (status != 0 || svc->shutting_down) {
        qs_http_respond_json_error(w->http, 503, "shutting down");
    } else if (w->rc == QS_ENOTFOUND) {
        char msg[400];
        snprintf(msg, sizeof(msg), "collection '%s' does not exist in Qdrant", w->collection);
        qs_http_respond_json_error(w->http, 404, msg);
    } else if (w->rc != 0) {
        char msg[700];
        snprintf(msg, sizeof(msg), "Qdrant lookup failed: %s", w->err.msg);
        qs_http_respond_json_error(w->http, 503, msg);
    } else {
        start_backup_answer(svc, w->http, w->collection);
    }
    free(w->collection);
    free(w);
}

static void h_backup(struct qs_http_req *req, void *ud)
{
    struct qs_service *svc = ud;
    if (check_auth(svc, req) != 0)
        return;
    char coll[1024];
    int q = qs_http_req_query_param(req, "collection", coll, sizeof(coll));
    if (q < 0 || (q == 1 && !qs_manifest_is_valid_collection_name(coll))) {
        qs_http_respond_json_error(req, 400,
                                   "query parameter 'collection': not a valid "
                                   "collection name");
        return;
    }
    if (q == 1 && svc->cfg->mode == QS_MODE_FULL) {
        qs_http_respond_json_error(req, 400,
                                   "query parameter 'collection': not "
                                   "supported in full mode");
        return;
    }
    if (q == 1 && qs_drill_is_scratch(coll)) {
        qs_http_respond_json_error(req, 400,
                                   "query parameter 'collection': restore-drill scratch "
                                   "collections (*" QS_DRILL_SUFFIX ") are never backed up");
        return;
    }
    if (svc->shutting_down) {
        qs_http_respond_json_error(req, 503, "shutting down");
        return;
    }
    if (svc->current != NULL) {
        respond_busy(svc, req);
        return;
    }
    if (q == 0) {
        start_backup_answer(svc, req, NULL);
        return;
    }
    struct backup_work *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->collection = strdup(coll)) == NULL) {
        free(w);
        qs_http_respond_json_error(req, 500, "out of memory");
        return;
    }
    w->req.data = w;
    w->svc = svc;
    w->http = req;
    if (uv_queue_work(svc->loop, &w->req, backup_lookup_cb, backup_after_cb) != 0) {
        qs_http_respond_json_error(req, 500, "could not queue the lookup");
        free(w->collection);
        free(w);
    }
}

/* Restore: validate the body on the loop, look the backup up on the pool,
 * then start the job on the loop. */
struct restore_work {
    uv_work_t req;
    struct qs_service *svc;
    struct qs_http_req *http;
    char *collection, *snapshot, *target;
    int rc;
    struct qs_error err;
};

static void restore_lookup_cb(uv_work_t *req)
{
    struct restore_work *w = req->data;
    qs_error_clear(&w->err);
    if (w->snapshot == NULL || strcmp(w->snapshot, "latest") == 0) {
        struct qs_catalog cat;
        w->rc = qs_catalog_load(w->svc->storage, w->collection, 0, &cat, &w->err);
        if (w->rc == 0 && qs_catalog_find(&cat, w->collection, NULL) == NULL)
            w->rc =
                qs_error_set(&w->err, QS_ENOTFOUND, "no backup of collection '%s'", w->collection);
        qs_catalog_deinit(&cat);
        return;
    }
    char key[QS_MANIFEST_KEY_MAX];
    if (qs_manifest_key(w->collection, w->snapshot, key, sizeof(key)) != 0) {
        w->rc = qs_error_set(&w->err, QS_EINVAL, "field 'snapshot': not a valid snapshot name");
        return;
    }
    struct qs_storage_stat st;
    memset(&st, 0, sizeof(st));
    w->rc = qs_storage_head(w->svc->storage, key, &st, &w->err);
    if (w->rc == QS_ENOTFOUND)
        qs_error_set(&w->err, QS_ENOTFOUND, "backup '%s' of collection '%s' not found", w->snapshot,
                     w->collection);
    if (w->rc == 0)
        qs_storage_stat_deinit(&st);
}

static void restore_work_free(struct restore_work *w)
{
    free(w->collection);
    free(w->snapshot);
    free(w->target);
    free(w);
}

static void restore_after_cb(uv_work_t *req, int status)
{
    struct restore_work *w = req->data;
    struct qs_service *svc = w->svc;
    if (status != 0 || svc->shutting_down) {
        qs_http_respond_json_error(w->http, 503, "shutting down");
    } else if (w->rc == QS_ENOTFOUND) {
        qs_http_respond_json_error(w->http, 404, w->err.msg);
    } else if (w->rc == QS_EINVAL) {
        qs_http_respond_json_error(w->http, 400, w->err.msg);
    } else if (w->rc != 0) {
        char msg[700];
        snprintf(msg, sizeof(msg), "destination lookup failed: %s", w->err.msg);
        qs_http_respond_json_error(w->http, 503, msg);
    } else if (svc->current != NULL) {
        respond_busy(svc, w->http);
    } else {
        struct qs_job *job = qs_job_new(QS_JOB_RESTORE, "api");
        struct run *run = calloc(1, sizeof(*run));
        int rc = UV_ENOMEM;
        if (job != NULL && run != NULL) {
            run->restore_collection = w->collection;
            run->restore_snapshot = w->snapshot;
            run->restore_target = w->target;
            w->collection = w->snapshot = w->target = NULL;
            rc = start_job(svc, job, run);
        }
        if (rc == 0) {
            respond_job(w->http, job);
        } else {
            if (rc == QS_EBUSY || rc == QS_ECANCELED || rc == UV_ENOMEM) {
                qs_job_free(job);
                run_free(run);
            }
            qs_http_respond_json_error(w->http, rc == QS_EBUSY ? 409 : 500,
                                       "could not start the restore job");
        }
    }
    restore_work_free(w);
}

static int json_opt_string(struct qs_http_req *req, cJSON *root, const char *field, char **out)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        char msg[120];
        snprintf(msg, sizeof(msg), "field '%s': must be a string", field);
        qs_http_respond_json_error(req, 400, msg);
        return -1;
    }
    *out = strdup(v->valuestring);
    return 0;
}

static void h_restore(struct qs_http_req *req, void *ud)
{
    struct qs_service *svc = ud;
    if (check_auth(svc, req) != 0)
        return;
    if (svc->shutting_down) {
        qs_http_respond_json_error(req, 503, "shutting down");
        return;
    }
    if (svc->current != NULL) {
        respond_busy(svc, req);
        return;
    }
    size_t len = 0;
    const char *body = qs_http_req_body(req, &len);
    cJSON *root = NULL;
    struct qs_error jerr;
    if (qs_json_parse(body, len, &root, &jerr) != 0 || !cJSON_IsObject(root)) {
        char msg[600];
        snprintf(msg, sizeof(msg), "body: must be a JSON object like {\"collection\":\"c\"}%s%s",
                 root == NULL ? ": " : "", root == NULL ? jerr.msg : "");
        cJSON_Delete(root);
        qs_http_respond_json_error(req, 400, msg);
        return;
    }
    /* A misspelt field must not fall back to a default ("snaphsot" would
     * restore the latest backup instead of the one asked for). */
    static const char *const restore_fields[] = {"collection", "snapshot", "target", NULL};
    for (const cJSON *f = root->child; f != NULL; f = f->next) {
        size_t k = 0;
        while (restore_fields[k] != NULL && strcmp(restore_fields[k], f->string) != 0)
            k++;
        if (restore_fields[k] == NULL) {
            char name[68], msg[160];
            size_t n = 0;
            for (; f->string[n] != '\0' && n < 64; n++)
                name[n] = f->string[n] > 0x20 && f->string[n] < 0x7f ? f->string[n] : '?';
            name[n] = '\0';
            snprintf(msg, sizeof(msg),
                     "body: unknown field '%s' (accepted: collection, snapshot, target)", name);
            cJSON_Delete(root);
            qs_http_respond_json_error(req, 400, msg);
            return;
        }
    }
    struct restore_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        cJSON_Delete(root);
        {
            qs_http_respond_json_error(req, 500, "out of memory");
            return;
        }
    }
    w->svc = svc;
    w->http = req;
    w->req.data = w;
    int bad = json_opt_string(req, root, "collection", &w->collection) ||
              json_opt_string(req, root, "snapshot", &w->snapshot) ||
              json_opt_string(req, root, "target", &w->target);
    cJSON_Delete(root);
    if (bad) {
        restore_work_free(w);
        return;
    }
    const char *msg = NULL;
    if (w->collection == NULL)
        msg = "field 'collection': required";
    else if (!qs_manifest_is_valid_collection_name(w->collection))
        msg = "field 'collection': not a valid collection name";
    else if (w->snapshot != NULL && strcmp(w->snapshot, "latest") != 0 &&
             !qs_manifest_is_valid_snapshot_name(w->snapshot))
        msg = "field 'snapshot': not a valid snapshot name";
    else if (w->target != NULL && !qs_restore_target_ok(w->target))
        msg = "field 'target': not a valid collection name (Qdrant forbids empty "
              "names, names "
              "over 255 characters and the characters < > : \" / \\ | ? *)";
    if (msg != NULL) {
        qs_http_respond_json_error(req, 400, msg);
        {
            restore_work_free(w);
            return;
        }
    }
    if (uv_queue_work(svc->loop, &w->req, restore_lookup_cb, restore_after_cb) != 0) {
        qs_http_respond_json_error(req, 500, "could not queue the lookup");
        restore_work_free(w);
    }
}

static const struct qs_job *find_job(const struct qs_service *svc, const char *id)
{
    if (svc->current != NULL && strcmp(svc->current->id, id) == 0)
        return svc->current;
    for (size_t i = 0; i < svc->ndone; i++)
        if (strcmp(svc->done[i]->id, id) == 0)
            return svc->done[i];
    return NULL;
}

static void h_job(struct qs_http_req *req, void *ud)
{
    struct qs_service *svc = ud;
    const struct qs_job *job = find_job(svc, qs_http_req_path_rest(req));
    if (job == NULL) {
        qs_http_respond_json_error(req, 404, "no such job");
        return;
    }
    struct qs_buf b;
    qs_buf_init(&b);
    if (qs_job_to_json(job, &b) != 0) {
        qs_buf_free(&b);
        {
            qs_http_respond_json_error(req, 500, "out of memory");
            return;
        }
    }
    qs_http_respond(req, 200, "application/json", b.data, b.len);
    qs_buf_free(&b);
}

struct list_work {
    uv_work_t req;
    struct qs_service *svc;
    struct qs_http_req *http;
    char *collection;
    int rc;
    struct qs_error err;
    struct qs_buf out;
};

static void list_work_cb(uv_work_t *req)
{
    struct list_work *w = req->data;
    struct qs_catalog cat;
    qs_error_clear(&w->err);
    w->rc = qs_catalog_load(w->svc->storage, w->collection, QS_CATALOG_DRILLS, &cat, &w->err);
    if (w->rc == 0)
        w->rc = qs_catalog_to_json(&cat, &w->out);
    qs_catalog_deinit(&cat);
}

static void list_after_cb(uv_work_t *req, int status)
{
    struct list_work *w = req->data;
    if (status != 0) {
        qs_http_respond_json_error(w->http, 503, "shutting down");
    } else if (w->rc != 0) {
        char msg[700];
        snprintf(msg, sizeof(msg), "destination listing failed: %s", w->err.msg);
        qs_http_respond_json_error(w->http, 503, msg);
    } else {
        qs_http_respond(w->http, 200, "application/json", w->out.data, w->out.len);
    }
    qs_buf_free(&w->out);
    free(w->collection);
    free(w);
}

static void h_backups(struct qs_http_req *req, void *ud)
{
    struct qs_service *svc = ud;
    char coll[1024];
    int q = qs_http_req_query_param(req, "collection", coll, sizeof(coll));
    if (q < 0 || (q == 1 && !qs_manifest_is_valid_collection_name(coll) &&
                  strcmp(coll, QS_MANIFEST_FULL_DIR) != 0)) {
        qs_http_respond_json_error(req, 400,
                                   "query parameter 'collection': not a valid "
                                   "collection name");
        return;
    }
    struct list_work *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        qs_http_respond_json_error(req, 500, "out of memory");
        return;
    }
    w->req.data = w;
    w->svc = svc;
    w->http = req;
    qs_buf_init(&w->out);
    w->collection = q == 1 ? strdup(coll) : NULL;
    if (uv_queue_work(svc->loop, &w->req, list_work_cb, list_after_cb) != 0) {
        qs_http_respond_json_error(req, 500, "could not queue the listing");
        free(w->collection);
        free(w);
    }
}

/* ---- lifecycle
 * ------------------------------------------------------------------------------
 */

int qs_service_new(uv_loop_t *loop, struct qs_http_server *http, struct qs_metrics *metrics,
                   const struct qs_config *cfg, struct qs_storage *storage,
                   struct qs_qdrant *qdrant, struct qs_service **out)
{
    struct qs_service *svc = calloc(1, sizeof(*svc));
    if (svc == NULL)
        return UV_ENOMEM;
    svc->loop = loop;
    svc->http = http;
    svc->metrics = metrics;
    svc->cfg = cfg;
    svc->storage = storage;
    svc->qdrant = qdrant;
    pthread_mutex_init(&svc->mu, NULL);
    *out = svc;
    return 0;
}

int qs_service_start(struct qs_service *svc)
{
    register_metrics(svc->metrics);
    qs_metrics_on_render(svc->metrics, refresh_ages, svc);
    int64_t now = qs_clock_now();
    /* Full-storage snapshots exist as long as Qdrant does; collections get
     * their series once a probe has seen them in Qdrant. */
    if (svc->cfg->mode == QS_MODE_FULL) {
        struct coll_state *c = coll_get(svc, QS_MANIFEST_FULL_DIR);
        if (c == NULL)
            return UV_ENOMEM;
        set_present(svc, c, 1);
    }
    qs_metrics_set(svc->metrics, "qsnap_schedule_interval_seconds", NULL,
                   (double)qs_cron_interval(&svc->cfg->cron, now));
    qs_metrics_set(svc->metrics, "qsnap_restore_drill_interval_seconds", NULL,
                   (double)qs_cron_interval(&svc->cfg->drill_cron, now));
    svc->probe_interval_ms = qs_daemon_test_knob_ms("QSNAP_TEST_PROBE_INTERVAL_MS");
    if (svc->probe_interval_ms == 0)
        svc->probe_interval_ms = PROBE_INTERVAL_MS;
    int rc = uv_async_init(svc->loop, &svc->async, async_cb);
    if (rc != 0)
        return rc;
    svc->async.data = svc;
    uv_timer_init(svc->loop, &svc->sched_timer);
    svc->sched_timer.data = svc;
    uv_timer_init(svc->loop, &svc->probe_timer);
    svc->probe_timer.data = svc;
    svc->handles_open = 3;
    /* What each route accepts: the server refuses other query parameters
     * (400) and checks the token (401/403) before the body is read and the
     * handler runs; the handlers' own checks stay as a second line. */
    static const char *const p_collection[] = {"collection", NULL};
    const struct {
        const char *method, *path;
        qs_http_handler_fn fn;
        struct qs_http_route_opts opts;
    } routes[] = {
        {"GET", "/readyz", h_readyz, {NULL, 0}},
        {"POST", "/v1/backup", h_backup, {p_collection, QS_HTTP_ROUTE_BEARER}},
        {"POST", "/v1/restore", h_restore, {NULL, QS_HTTP_ROUTE_BEARER}},
        {"GET", "/v1/jobs/", h_job, {NULL, 0}},
        {"GET", "/v1/backups", h_backups, {p_collection, 0}},
    };
    rc = qs_http_server_set_bearer(svc->http, svc->cfg->admin_token,
                                   "POST endpoints are disabled: no admin token configured "
                                   "(QSNAP_ADMIN_TOKEN)");
    for (size_t i = 0; rc == 0 && i < sizeof(routes) / sizeof(routes[0]); i++)
        rc = qs_http_route_ex(svc->http, routes[i].method, routes[i].path, routes[i].fn, svc,
                              &routes[i].opts);
    if (rc != 0)
        return rc;
    svc->next_backup = next_fire(&svc->cfg->cron, now, svc->cfg->jitter_s);
    svc->next_drill = next_fire(&svc->cfg->drill_cron, now, 0);
    if (svc->next_backup > 0) {
        char t[21];
        qs_time_rfc3339(svc->next_backup, t);
        QS_INFO("next scheduled backup at %s", t);
    } else {
        QS_INFO("backup schedule is off");
    }
    schedule_next(svc);
    start_probe(svc, 1);
    uv_timer_start(&svc->probe_timer, probe_timer_cb, svc->probe_interval_ms,
                   svc->probe_interval_ms);
    return 0;
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct qs_service *svc = h->data;
    if (--svc->handles_open == 0 && svc->shutdown_cb != NULL) {
        void (*cb)(void *) = svc->shutdown_cb;
        svc->shutdown_cb = NULL;
        cb(svc->shutdown_ud);
    }
}

static void maybe_finish_shutdown(struct qs_service *svc)
{
    if (!svc->shutting_down || svc->current != NULL || svc->probing || svc->async.data == NULL)
        return;
    if (uv_is_closing((uv_handle_t *)&svc->async))
        return;
    uv_close((uv_handle_t *)&svc->async, handle_closed_cb);
    uv_close((uv_handle_t *)&svc->sched_timer, handle_closed_cb);
    uv_close((uv_handle_t *)&svc->probe_timer, handle_closed_cb);
}

void qs_service_shutdown(struct qs_service *svc, void (*done)(void *ud), void *ud)
{
    svc->shutdown_cb = done;
    svc->shutdown_ud = ud;
    if (svc->handles_open == 0) {
        svc->shutdown_cb = NULL;
        if (done != NULL)
            done(ud);
        return;
    }
    if (!svc->shutting_down) {
        svc->shutting_down = 1;
        uv_timer_stop(&svc->sched_timer);
        uv_timer_stop(&svc->probe_timer);
        if (svc->current != NULL) {
            struct qs_log_ctx c = QS_LOG_CTX_NONE;
            c.job = svc->current->id;
            qs_log(QS_LOG_INFO, &c, "cancelling the running job");
            qs_cancel_request(&svc->current->cancel);
        }
    }
    maybe_finish_shutdown(svc);
}

void qs_service_free(struct qs_service *svc)
{
    if (svc == NULL)
        return;
    if (svc->metrics != NULL)
        qs_metrics_off_render(svc->metrics, refresh_ages, svc);
    for (size_t i = 0; i < svc->ndone; i++)
        qs_job_free(svc->done[i]);
    for (size_t i = 0; i < svc->ncolls; i++)
        free(svc->colls[i].name);
    free(svc->colls);
    struct event *ev = svc->ev_head;
    while (ev != NULL) {
        struct event *next = ev->next;
        free(ev->collection);
        item_free(&ev->item);
        qs_prune_result_deinit(&ev->prune);
        free(ev);
        ev = next;
    }
    pthread_mutex_destroy(&svc->mu);
    free(svc);
}
