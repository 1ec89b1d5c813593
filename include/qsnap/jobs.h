/* The job sequences, written once for the daemon's worker and the CLI:
 * blocking code that runs on the calling thread (a job worker or the CLI's
 * main thread) and reports through env->progress.
 *
 *   backup job:  qs_backup_run, then remote pruning unless the run was
 *                cancelled or the leader rule (cluster.h, asked then) says
 *                this sidecar is not the one that prunes: a follower, no
 *                leader, or Qdrant could not be asked -- logged, never the
 *                job's outcome (nor is a pruning failure);
 *   drill job:   a restore drill of each named collection's newest backup
 *                (collections without a backup, and full-storage backups,
 *                are passed over), stopping when cancelled;
 *   restore job: one restore, reported as one item;
 *   prune job:   remote pruning.
 *
 * A job's parameters (struct qs_job_params) own their strings, so they can be
 * handed to a worker thread as they are. */
#ifndef QSNAP_JOBS_H
#define QSNAP_JOBS_H

#include <stddef.h>

#include "qsnap/backup.h"
#include "qsnap/error.h"
#include "qsnap/job.h"
#include "qsnap/prune.h"

/* What a job runs. Every string is owned (freed by qs_job_params_deinit); a
 * zeroed struct is a valid empty value. */
struct qs_job_params {
    enum qs_job_kind kind;
    char **collections; /* backup: names (none = the configured selection); drill: targets */
    size_t ncollections;
    char *collection; /* restore: the backed-up collection */
    char *snapshot;   /* restore: snapshot name, NULL or "latest" = newest */
    char *target;     /* restore: target collection, NULL = same name */
    int no_aliases;   /* restore: leave the backup's aliases alone */
    int force;        /* restore: even when the target's Qdrant version cannot load it */
};

/* Frees what p (borrowed; NULL accepted) owns and zeroes it. */
void qs_job_params_deinit(struct qs_job_params *p);

/* Appends a copy of name (borrowed) to p->collections. Returns 0 or
 * UV_ENOMEM (p unchanged). */
int qs_job_params_add_collection(struct qs_job_params *p, const char *name);

/* How a job ended. */
struct qs_jobs_outcome {
    int rc;                           /* 0, QS_ECANCELED, or the first failure's code */
    struct qs_error err;              /* the first failure, when rc != 0 */
    int pruned;                       /* 1 when remote pruning ran (prune is filled) */
    struct qs_prune_result prune;     /* owned: qs_jobs_outcome_deinit */
    struct qs_backup_summary summary; /* backups: items by outcome */
};

/* Initialise / release o (borrowed; deinit accepts NULL). */
void qs_jobs_outcome_init(struct qs_jobs_outcome *o);
void qs_jobs_outcome_deinit(struct qs_jobs_outcome *o);

/* Backup of collections (borrowed, n names; n == 0 = the configured
 * selection), then remote pruning unless the backup was cancelled or the
 * leader rule skips it (out->pruned stays 0). env and out borrowed (out
 * initialised by the caller). Returns out->rc: the backup's result (pruning
 * never changes it). */
int qs_jobs_backup_and_prune(const struct qs_backup_env *env, char *const *collections, size_t n,
                             struct qs_jobs_outcome *out);

/* Restore drill of each of collections (borrowed, n names): the newest
 * backup of each, in order, until cancelled. Returns 0 when every drill
 * succeeded (or there was nothing to drill), QS_ECANCELED, or the code of the
 * first failure (err, borrowed, may be NULL, receives it); later collections
 * are drilled after a failure. */
int qs_jobs_drill(const struct qs_backup_env *env, char *const *collections, size_t n,
                  struct qs_error *err);

/* Runs the job p (borrowed) describes on the calling thread. env and out
 * borrowed (out initialised by the caller). Returns out->rc. */
int qs_jobs_run(const struct qs_backup_env *env, const struct qs_job_params *p,
                struct qs_jobs_outcome *out);

#endif
