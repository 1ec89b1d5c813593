/* Restore and restore drills, as blocking worker-thread code: read the
 * manifest (refuse without one), check that the target's Qdrant can load the
 * backup, stream the object (or each shard object) from the destination
 * through gunzip when needed into Qdrant's snapshot upload
 * (multipart/form-data, checksum and priority=snapshot), with no local
 * staging, re-create payload indexes, check points_count against the
 * manifest, and point the backup's aliases at the target.
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
    const char *snapshot;   /* snapshot (or shards run) name or "latest"/NULL (borrowed) */
    const char *target;     /* target collection, NULL = same name (borrowed) */
    int no_aliases;         /* 1: leave the backup's aliases alone */
    int force;              /* 1: restore even a backup the target's Qdrant version cannot load */
};

/* Restores one backup. env, req, item, err borrowed. item receives the
 * snapshot, sizes and outcome. In order:
 *   - the manifest is read (none: QS_ENOTFOUND; a full-storage backup:
 *     QS_EINVAL);
 *   - the version rule (manifest.h qs_manifest_check_versions: the target's
 *     Qdrant, from GET /, must be the backup's minor version or the next)
 *     refuses, before anything changes, with QS_EINVAL naming both versions,
 *     unless req->force;
 *   - collection method: the snapshot is uploaded (Qdrant creates or
 *     replaces the collection); shards method: the collection is created
 *     from the manifest's collection_config (same shard count; a collection
 *     of that name must not exist unless it has the backup's shard count and
 *     vectors; custom sharding is refused), then every shard is uploaded
 *     (qs_restore_upload_shard); a collection this created is deleted again
 *     when a later step fails;
 *   - the payload indexes of the manifest are re-created, each waited for;
 *   - points_count is checked against the manifest (QS_ECHECKSUM);
 *   - the backup's aliases are pointed at the target (not with
 *     req->no_aliases), last, so an alias moves only to a verified
 *     collection.
 * Version 1 manifests carry no indexes or aliases: those steps do nothing.
 * Returns 0 or the failure's code. */
int qs_restore_run(const struct qs_backup_env *env, const struct qs_restore_req *req,
                   struct qs_job_item *item, struct qs_error *err);

/* Restores shard sh (borrowed, from a shards manifest whose objects are
 * gzip-compressed when compression_level > 0) into the existing collection
 * target (borrowed) through q (borrowed: a client of the Qdrant peer that
 * holds a replica of that shard; a single node's is env->qdrant): streams its
 * object from the destination through gunzip and SHA-256 into
 * POST /collections/{target}/shards/{id}/snapshots/upload?priority=snapshot
 * &checksum=..., with no local staging; bytes that do not match sh fail the
 * upload before its last byte. Returns 0 or the failure's code (err). */
int qs_restore_upload_shard(const struct qs_backup_env *env, struct qs_qdrant *q,
                            const char *target, const struct qs_manifest_shard *sh,
                            int compression_level, struct qs_error *err);

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
