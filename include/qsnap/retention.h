/* The remote retention policy as a pure function.
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
 *   collection. Creation times come from manifests only (never from
 *   LastModified, except to date a suspect backup, below).
 * - Deleting a complete backup is up to three kinds of action: manifest first,
 *   then its drill result (when it has one), then its object (a shards backup:
 *   each of its objects, in input order). If a later one fails
 *   (or qsnap stops in between), what is left has no manifest: an incomplete
 *   object or drill result, cleaned up after the grace; a manifest never
 *   points at a missing object.
 * - Suspect times (Qdrant's clock was ahead): a creation time more than
 *   QS_RETENTION_CLOCK_SKEW_S after now is not trusted. Such a backup yields
 *   a warning and is dated by when it was written instead (the manifest's
 *   LastModified at the destination, see qs_retention_backup_time()); from
 *   then on it ages and is pruned like any other backup, so a bogus date can
 *   never pin it forever. It counts toward keep_min only among all dated
 *   backups, never among the genuine ones: the keep_min newest genuine
 *   backups are always kept, whatever suspect ones exist (a bogus date cannot
 *   push good older backups out), and a suspect backup is itself kept while
 *   it is among the keep_min newest dated backups of its collection (so
 *   failing backups under a skewed clock never prune everything). At equal
 *   times a suspect backup counts as the older one.
 * - A suspect backup whose manifest was also written more than the skew after
 *   now (or whose write time is unknown) cannot be dated: it is kept, warned
 *   about and counted toward nothing, as nothing can be said about its age.
 *   Times within the skew are trusted (a backup a little ahead is 0 s old).
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

/* How far in the future a creation time may lie and still be trusted. */
#define QS_RETENTION_CLOCK_SKEW_S 300

struct qs_retention_policy {
    int64_t retention_s;        /* QSNAP_RETENTION, >= 0 */
    uint32_t keep_min;          /* QSNAP_KEEP_MIN */
    int64_t incomplete_grace_s; /* >= 0; normally QS_RETENTION_INCOMPLETE_GRACE_S */
};

/* One backup at the destination. Strings borrowed for the call. */
struct qs_retention_backup {
    const char *collection;       /* grouping key (a collection name or ":full") */
    const char *snapshot;         /* snapshot name (may be NULL for incomplete objects) */
    int64_t created;              /* complete only: creation time from the manifest */
    bool complete;                /* manifest present and readable */
    const char *object_key;       /* relative object key; required */
    const char *manifest_key;     /* complete only: relative manifest key */
    int64_t last_modified;        /* incomplete: the object's LastModified; complete: the
                                     manifest's (when the backup was written; 0 = unknown),
                                     used only to date a backup whose creation time is suspect */
    const char *drill_key;        /* complete only: its drill result's key, NULL when none */
    const char *const *more_keys; /* complete only: the backup's further objects (the other
                                     shard objects of a shards backup), deleted after
                                     object_key; NULL when nmore is 0 */
    size_t nmore;
};

/* One open multipart upload under the prefix. Strings borrowed for the call. */
struct qs_retention_upload {
    const char *key;
    const char *upload_id;
    int64_t initiated;
};

enum qs_retention_action_kind {
    QS_RETENTION_DELETE_MANIFEST,   /* first step of deleting a complete backup */
    QS_RETENTION_DELETE_DRILL,      /* its drill result, when it has one (same index) */
    QS_RETENTION_DELETE_OBJECT,     /* last step: its object(s) (same index) */
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
    char **warnings; /* human-readable, e.g. suspect creation times */
    size_t nwarnings;
    bool *keep;      /* per input backup: true when the plan keeps it */
    size_t nbackups; /* length of keep (= n of the input) */
    /* Counters for metrics (qsnap_prune_deleted_total{kind} and
     * qsnap_backups_stored{location="remote"}). */
    size_t deleted_backups;    /* complete backups deleted (one per manifest+object pair) */
    size_t deleted_incomplete; /* incomplete objects deleted */
    size_t aborted_uploads;    /* multipart uploads aborted */
    size_t kept_complete;      /* complete backups remaining after the plan */
    size_t suspect;            /* complete backups with a suspect creation time (each
                                  has a warning) */
    size_t kept_future;        /* of those, the ones that cannot be dated (kept) */
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

/* Time (qs_retention_backup_time()) of the newest datable complete backup of
 * collection (borrowed; NULL = any) that the plan keeps (plan borrowed, may
 * be NULL: then among all complete backups; backups borrowed). Returns 0 and
 * sets *created (borrowed out-parameter), or QS_ENOTFOUND.
 * Feeds qsnap_backup_last_success_timestamp_seconds. */
int qs_retention_newest(const struct qs_retention_plan *plan,
                        const struct qs_retention_backup *backups, size_t n, const char *collection,
                        int64_t now, int64_t *created);

/* Human-readable action name: "delete-manifest", "delete-drill-result",
 * "delete-object", "delete-incomplete", "abort-upload". Never NULL. */
const char *qs_retention_action_name(enum qs_retention_action_kind kind);

/* ---- backup times and freshness (pure) ------------------------------------ */

/* The time a complete backup is dated by, for retention and freshness: its
 * creation time, unless that lies more than QS_RETENTION_CLOCK_SKEW_S after
 * now (Qdrant's clock was ahead: *suspect, may be NULL, is set to true);
 * then written (when its manifest was written at the destination, 0 =
 * unknown) if that is known and not itself beyond the skew. Returns the time,
 * or -1 when the backup cannot be dated. A suspect creation time never makes
 * a backup look newer than it was written. */
int64_t qs_retention_backup_time(int64_t created, int64_t written, int64_t now, bool *suspect);

/* qsnap_backup_stale: 1 when newest (the time of the newest complete backup,
 * 0 = none) lies more than stale_after_s before now; without a backup, 1 when
 * first_seen (when the collection was first seen; 0 = unknown, counted as
 * long ago) lies more than stale_after_s before now, i.e. after the grace
 * from first sight; else 0. */
int qs_retention_is_stale(int64_t newest, int64_t first_seen, int64_t now, int64_t stale_after_s);

#endif
