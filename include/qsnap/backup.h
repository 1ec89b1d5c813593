/* A backup run, as blocking worker-thread code.
 *
 * For each collection: create a snapshot in Qdrant (retried), stream its
 * download through SHA-256 (and gzip when configured) into a streaming put at
 * the destination, verify the digest against Qdrant's checksum and the sizes
 * against the stored object, write the manifest last, then prune Qdrant-side
 * snapshots per QSNAP_LOCAL_KEEP. A failure of one collection is recorded and
 * the run goes on with the next. Nothing here touches the libuv loop: the run
 * reports through struct qs_progress (job.h), which the daemon marshals to
 * the loop thread and the CLI logs directly. */
#ifndef QSNAP_BACKUP_H
#define QSNAP_BACKUP_H

#include <stddef.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/job.h"
#include "qsnap/qdrant.h"
#include "qsnap/storage.h"

/* What a run works with. Everything borrowed; the pointers must stay valid
 * for the whole run. One env is used by one worker thread at a time. */
struct qs_backup_env {
    const struct qs_config *cfg;
    struct qs_storage *storage;
    struct qs_qdrant *qdrant;
    struct qs_progress *progress; /* may be NULL */
};

/* Outcome counts of a run. */
struct qs_backup_summary {
    size_t ok;
    size_t failed;
};

/* Backs up collections (borrowed, n names; n == 0 means QSNAP_COLLECTIONS, or
 * every collection Qdrant lists when that is unset, except restore-drill
 * scratch collections). In full mode the names
 * are ignored and one full-storage snapshot is taken. Returns 0 when every
 * collection succeeded, QS_ECANCELED when cancelled, otherwise a negative
 * code with err describing the first failure (summary tells partial from
 * total failure). summary and err borrowed, may be NULL. */
int qs_backup_run(const struct qs_backup_env *env, char *const *collections, size_t n,
                  struct qs_backup_summary *summary, struct qs_error *err);

/* Backs up one collection (collection borrowed; NULL in full mode). item
 * (borrowed) receives the outcome: snapshot, object, sizes, duration,
 * error. Returns 0 or a negative code (err filled). */
int qs_backup_collection(const struct qs_backup_env *env, const char *collection,
                         struct qs_job_item *item, struct qs_error *err);

/* Pings url (borrowed) with GET through the shared HTTP client (10 s
 * timeout, at most 3 redirects, http and https only). 0 on a 2xx answer. The
 * URL never appears in logs or err (it may carry a token). */
int qs_heartbeat_ping(const char *url, struct qs_error *err);

#endif
