/* Restore and restore drills, as blocking worker-thread
 * code: read the manifest (refuse without one), stream the object from the
 * destination through gunzip when needed into Qdrant's snapshot upload
 * (multipart/form-data, checksum and priority=snapshot), with no local
 * staging, then check points_count against the manifest.
 *
 * Two threads move the bytes: a reader thread runs the storage GET and
 * inflates into a bounded qs_pipe; the calling thread runs the upload and
 * reads from the pipe. The reader also hashes what it produces: if the bytes
 * do not match the manifest's SHA-256 it fails the pipe before the last byte
 * is handed over, so Qdrant never receives a complete body. */
#ifndef QSNAP_RESTORE_H
#define QSNAP_RESTORE_H

#include "qsnap/backup.h"
#include "qsnap/drill.h"
#include "qsnap/error.h"
#include "qsnap/job.h"

struct qs_restore_req {
    const char *collection; /* backed-up collection (borrowed) */
    const char *snapshot;   /* snapshot name or "latest"/NULL (borrowed) */
    const char *target;     /* target collection, NULL = same name (borrowed) */
};

/* Restores one backup. env, req, item, err borrowed. item receives the
 * snapshot, sizes and outcome. Returns 0, QS_ENOTFOUND (no such backup),
 * QS_EINVAL (bad names, full-storage backup), or the failure's code. */
int qs_restore_run(const struct qs_backup_env *env, const struct qs_restore_req *req,
                   struct qs_job_item *item, struct qs_error *err);

/* Restore drill of one collection: restores its backup `snapshot` (NULL or
 * "latest" = the newest) into "{collection}__qsnap_drill", compares
 * points_count, and deletes the scratch collection whatever happened. Never
 * touches the real collection. Then stores the outcome beside the backup
 * (drill.h: "{collection}/{snapshot}.drill.json", replacing an earlier
 * result; not when no backup was found or the drill was cancelled; a failed
 * write is logged and does not change the outcome). env, strings, item and
 * err borrowed; item receives the snapshot and outcome as for
 * qs_restore_run(). Returns 0 or the failure's code. */
int qs_restore_drill(const struct qs_backup_env *env, const char *collection, const char *snapshot,
                     struct qs_job_item *item, struct qs_error *err);

/* 1 when name may be used as a restore target: a valid Qdrant collection
 * name that is not a drill scratch name. */
int qs_restore_target_ok(const char *name);

#endif
