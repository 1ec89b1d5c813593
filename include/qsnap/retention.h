/* The remote retention policy (SPEC section 5) as a pure function.
 *
 * Input: the backups found at the destination (complete ones with the
 * creation time from their manifest, incomplete objects with their
 * LastModified), the open multipart uploads under the prefix, the time "now"
 * and the settings. Output: a plan, i.e. the actions to take in order, each
 * with a reason, plus warnings. Executing the plan is the caller's job.
 *
 * Rules:
 * - A complete backup is deleted when now - created > retention_s (strictly)
 *   AND it is not among the keep_min newest complete backups of its
 *   collection. Creation times come from manifests only.
 * - Deleting a complete backup is two actions, manifest first, then object:
 *   if the second fails, the object is merely incomplete and is cleaned up
 *   later; a manifest never points at a missing object.
 * - A manifest dated in the future (created > now, clock skew) is never
 *   deleted and yields a warning. It does NOT count toward keep_min: the
 *   keep_min newest backups are chosen among those not in the future, so a
 *   bogus date cannot push good older backups out.
 * - Incomplete objects (no manifest) are deleted when
 *   now - last_modified > incomplete_grace_s; multipart uploads are aborted
 *   when now - initiated > incomplete_grace_s. Younger ones are kept: they may
 *   be uploads in progress.
 * - Several backups on one day are just backups (no thinning); whether the
 *   collection still exists in Qdrant plays no role.
 * Backups whose manifest cannot be read must not be passed in at all (they are
 * left alone and do not count).
 */
#ifndef QSNAP_RETENTION_H
#define QSNAP_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qsnap/error.h"

/* Default grace period for incomplete objects and multipart uploads. */
#define QS_RETENTION_INCOMPLETE_GRACE_S (24 * 3600)

struct qs_retention_policy {
    int64_t retention_s;        /* QSNAP_RETENTION, >= 0 */
    uint32_t keep_min;          /* QSNAP_KEEP_MIN */
    int64_t incomplete_grace_s; /* >= 0; normally QS_RETENTION_INCOMPLETE_GRACE_S */
};

/* One backup at the destination. Strings borrowed for the call. */
struct qs_retention_backup {
    const char *collection;   /* grouping key (a collection name or ":full") */
    const char *snapshot;     /* snapshot name (may be NULL for incomplete objects) */
    int64_t created;          /* complete only: creation time from the manifest */
    bool complete;            /* manifest present and readable */
    const char *object_key;   /* relative object key; required */
    const char *manifest_key; /* complete only: relative manifest key */
    int64_t last_modified;    /* incomplete only: the object's LastModified */
};

/* One open multipart upload under the prefix. Strings borrowed for the call. */
struct qs_retention_upload {
    const char *key;
    const char *upload_id;
    int64_t initiated;
};

enum qs_retention_action_kind {
    QS_RETENTION_DELETE_MANIFEST,   /* first half of deleting a complete backup */
    QS_RETENTION_DELETE_OBJECT,     /* second half (same backup as the action before) */
    QS_RETENTION_DELETE_INCOMPLETE, /* object without manifest, older than the grace */
    QS_RETENTION_ABORT_UPLOAD,      /* multipart upload started before the grace */
};

/* One action. Strings owned by the plan. */
struct qs_retention_action {
    enum qs_retention_action_kind kind;
    char *collection; /* may be NULL for uploads */
    char *snapshot;   /* may be NULL */
    char *key;        /* object or manifest key to delete, or the upload's key */
    char *upload_id;  /* ABORT_UPLOAD only, else NULL */
    size_t index;     /* index into the backups (or uploads) input array */
    char reason[160]; /* e.g. "created 2025-01-01T03:00:00Z, 8d old > retention 7d, ..." */
};

/* The plan. Arrays and strings owned; free with qs_retention_plan_deinit(). */
struct qs_retention_plan {
    struct qs_retention_action *actions; /* in execution order */
    size_t nactions;
    char **warnings; /* human-readable, e.g. future-dated manifests */
    size_t nwarnings;
    bool *keep;      /* per input backup: true when the plan keeps it */
    size_t nbackups; /* length of keep (= n of the input) */
    /* Counters for metrics (qsnap_prune_deleted_total{kind} and
     * qsnap_backups_stored{location="remote"}). */
    size_t deleted_backups;    /* complete backups deleted (one per manifest+object pair) */
    size_t deleted_incomplete; /* incomplete objects deleted */
    size_t aborted_uploads;    /* multipart uploads aborted */
    size_t kept_complete;      /* complete backups remaining after the plan */
    size_t kept_future;        /* of those, future-dated ones (each has a warning) */
};

/* Computes the plan. backups (n) and uploads (nuploads) borrowed, may be NULL
 * when their count is 0; policy borrowed; out borrowed (filled; caller deinits
 * even on error). Returns 0, QS_EINVAL (negative retention or grace, or an
 * entry without its key; err names it) or UV_ENOMEM. err borrowed, may be
 * NULL. Deterministic: backups are processed per collection (byte order),
 * oldest first, then incomplete objects, then uploads, each in input order. */
int qs_retention_plan(const struct qs_retention_backup *backups, size_t n,
                      const struct qs_retention_upload *uploads, size_t nuploads, int64_t now,
                      const struct qs_retention_policy *policy, struct qs_retention_plan *out,
                      struct qs_error *err);

/* Frees everything in plan (borrowed; may be NULL) and zeroes it. */
void qs_retention_plan_deinit(struct qs_retention_plan *plan);

/* Number of complete backups of collection (borrowed; NULL = all collections)
 * that the plan keeps. plan and backups borrowed; backups must be the array the
 * plan was computed from (plan may be NULL: then all complete backups count).
 * This is qsnap_backups_stored{location="remote"} after pruning. */
size_t qs_retention_count_kept(const struct qs_retention_plan *plan,
                               const struct qs_retention_backup *backups, size_t n,
                               const char *collection);

/* Creation time of the newest complete, not future-dated backup of collection
 * (borrowed; NULL = any) that the plan keeps (plan borrowed, may be NULL: then
 * among all complete backups; backups borrowed). Returns 0 and sets *created
 * (borrowed out-parameter), or QS_ENOTFOUND.
 * Feeds qsnap_backup_last_success_timestamp_seconds. */
int qs_retention_newest(const struct qs_retention_plan *plan,
                        const struct qs_retention_backup *backups, size_t n, const char *collection,
                        int64_t now, int64_t *created);

/* Human-readable action name: "delete-manifest", "delete-object",
 * "delete-incomplete", "abort-upload". Never NULL. */
const char *qs_retention_action_name(enum qs_retention_action_kind kind);

#endif
