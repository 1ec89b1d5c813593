/* The job sequences shared by the daemon's worker and the CLI (see jobs.h). */
#include "qsnap/jobs.h"

#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "qsnap/catalog.h"
#include "qsnap/cluster.h"
#include "qsnap/log.h"
#include "qsnap/restore.h"

void qs_job_params_deinit(struct qs_job_params *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->ncollections; i++)
        free(p->collections[i]);
    free(p->collections);
    free(p->collection);
    free(p->snapshot);
    free(p->target);
    memset(p, 0, sizeof(*p));
}

int qs_job_params_add_collection(struct qs_job_params *p, const char *name)
{
    char *copy = strdup(name);
    char **v = copy != NULL ? realloc(p->collections, (p->ncollections + 1) * sizeof(*v)) : NULL;
    if (v == NULL) {
        free(copy);
        return UV_ENOMEM;
    }
    p->collections = v;
    p->collections[p->ncollections++] = copy;
    return 0;
}

void qs_jobs_outcome_init(struct qs_jobs_outcome *o)
{
    memset(o, 0, sizeof(*o));
    qs_error_clear(&o->err);
    qs_prune_result_init(&o->prune);
}

void qs_jobs_outcome_deinit(struct qs_jobs_outcome *o)
{
    if (o != NULL)
        qs_prune_result_deinit(&o->prune);
}

static const char *job_id(const struct qs_backup_env *env)
{
    return env->progress != NULL ? env->progress->job_id : NULL;
}

static struct qs_cancel *cancel_of(const struct qs_backup_env *env)
{
    return env->progress != NULL ? env->progress->cancel : NULL;
}

/* The leader rule (cluster.h) for remote pruning, asked now: 1 when this
 * sidecar may prune; otherwise logs why not. */
static int may_prune(const struct qs_backup_env *env)
{
    struct qs_cluster_view v;
    qs_cluster_view_init(&v);
    enum qs_cluster_role role = qs_cluster_view_check(env->qdrant, env->cfg, &v);
    int ok = qs_cluster_role_runs_scheduled(role);
    if (!ok) {
        char why[700];
        qs_cluster_view_reason(&v, why, sizeof(why));
        struct qs_log_ctx c = QS_LOG_CTX_NONE;
        c.job = job_id(env);
        c.phase = "prune-remote";
        qs_log(role == QS_CLUSTER_ROLE_FOLLOWER    ? QS_LOG_INFO
               : role == QS_CLUSTER_ROLE_NO_LEADER ? QS_LOG_WARN
                                                   : QS_LOG_ERROR,
               &c,
               "remote pruning skipped: %s; in cluster mode only the Raft leader's sidecar prunes",
               why);
    }
    qs_cluster_view_deinit(&v);
    return ok;
}

int qs_jobs_backup_and_prune(const struct qs_backup_env *env, char *const *collections, size_t n,
                             struct qs_jobs_outcome *out)
{
    out->rc = qs_backup_run(env, collections, n, &out->summary, &out->err);
    if (out->rc == QS_ECANCELED || qs_cancel_requested(cancel_of(env)))
        return out->rc;
    if (!may_prune(env))
        return out->rc;
    struct qs_error perr;
    qs_error_clear(&perr);
    if (qs_prune_run(env->storage, env->cfg, 0, qs_clock_now(), env->progress, &out->prune,
                     &perr) != 0) {
        struct qs_log_ctx c = QS_LOG_CTX_NONE;
        c.job = job_id(env);
        c.phase = "prune-remote";
        c.error = perr.msg;
        qs_log(QS_LOG_ERROR, &c, "remote pruning failed");
    }
    out->pruned = 1;
    return out->rc;
}

int qs_jobs_drill(const struct qs_backup_env *env, char *const *collections, size_t n,
                  struct qs_error *err)
{
    struct qs_catalog cat;
    struct qs_error first;
    qs_error_clear(&first);
    int rc = qs_catalog_load(env->storage, NULL, 0, &cat, &first);
    size_t failed = 0, drilled = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct qs_catalog_backup *b = qs_catalog_find(&cat, collections[i], NULL);
        if (b == NULL || b->m.mode == QS_MODE_FULL)
            continue;
        if (qs_cancel_requested(cancel_of(env))) {
            rc = qs_error_set(&first, QS_ECANCELED, "drill cancelled");
            break;
        }
        struct qs_job_item item = {0};
        item.collection = strdup(collections[i]);
        struct qs_error e;
        qs_error_clear(&e);
        if (qs_restore_drill(env, collections[i], b->m.snapshot, &item, &e) != 0 && failed++ == 0)
            first = e;
        drilled++;
        qs_progress_item_done(env->progress, &item);
        qs_job_item_deinit(&item);
    }
    qs_catalog_deinit(&cat);
    if (rc == 0 && drilled == 0)
        QS_INFO("restore drill: no backed-up collection to drill");
    if (rc == 0 && failed > 0)
        rc = first.code != 0 ? first.code : QS_EIO;
    if (rc != 0 && err != NULL)
        *err = first;
    return rc;
}

/* One restore, reported as one item named after the collection restored
 * into. */
static int run_restore(const struct qs_backup_env *env, const struct qs_job_params *p,
                       struct qs_error *err)
{
    struct qs_job_item item = {0};
    item.collection = strdup(p->target != NULL ? p->target : p->collection);
    struct qs_restore_req req = {
        .collection = p->collection,
        .snapshot = p->snapshot,
        .target = p->target,
        .no_aliases = p->no_aliases,
        .force = p->force,
    };
    int rc = qs_restore_run(env, &req, &item, err);
    qs_progress_item_done(env->progress, &item);
    qs_job_item_deinit(&item);
    return rc;
}

int qs_jobs_run(const struct qs_backup_env *env, const struct qs_job_params *p,
                struct qs_jobs_outcome *out)
{
    switch (p->kind) {
    case QS_JOB_BACKUP:
        return qs_jobs_backup_and_prune(env, p->collections, p->ncollections, out);
    case QS_JOB_RESTORE:
        out->rc = run_restore(env, p, &out->err);
        break;
    case QS_JOB_DRILL:
        out->rc = qs_jobs_drill(env, p->collections, p->ncollections, &out->err);
        break;
    case QS_JOB_PRUNE:
        out->rc = qs_prune_run(env->storage, env->cfg, 0, qs_clock_now(), env->progress,
                               &out->prune, &out->err);
        out->pruned = 1;
        break;
    default:
        out->rc = qs_error_set(&out->err, QS_EINVAL, "unknown job kind");
    }
    return out->rc;
}
