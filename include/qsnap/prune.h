/* Remote pruning: load the catalog, plan with the pure
 * retention policy, then execute the plan (manifest, then the backup's drill
 * result, then its object or shard objects, so an interrupted prune leaves at worst an
 * incomplete object or drill result, never a manifest that points at
 * nothing; when deleting a manifest fails, its drill result and object are
 * left alone). Blocking: worker threads and CLI only. */
#ifndef QSNAP_PRUNE_H
#define QSNAP_PRUNE_H

#include <stddef.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/job.h"
#include "qsnap/storage.h"
#include "qsnap/util.h"

struct qs_prune_result {
    size_t deleted_backups;    /* complete backups removed (manifest, drill result, object) */
    size_t deleted_incomplete; /* objects and drill results without manifest removed */
    size_t aborted_uploads;    /* multipart uploads aborted / temporaries removed */
    size_t failed;             /* actions that failed (logged) */
    size_t stored;             /* complete backups kept */
    size_t unreadable;         /* manifests that could not be parsed (left alone) */
    struct qs_buf report;      /* one line per planned action (owned) */
};

void qs_prune_result_init(struct qs_prune_result *r);
void qs_prune_result_deinit(struct qs_prune_result *r);

/* Plans and (unless dry_run) executes. storage, cfg, progress borrowed
 * (progress may be NULL). now: the time the policy is evaluated at. Returns
 * 0 when the plan was computed and every action succeeded; a failed action
 * is logged, counted and makes the result QS_EIO, but the remaining actions
 * still run. */
int qs_prune_run(struct qs_storage *storage, const struct qs_config *cfg, int dry_run, int64_t now,
                 struct qs_progress *progress, struct qs_prune_result *out, struct qs_error *err);

#endif
