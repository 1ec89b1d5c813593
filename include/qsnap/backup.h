/* A backup run, as blocking worker-thread code.
 *
 * For each collection: record its configuration, payload schema, aliases and
 * Qdrant's version, then, with the collection method, create a snapshot in
 * Qdrant (retried), stream its download through SHA-256 (and gzip when
 * configured) into a streaming put at the destination, verify the digest
 * against Qdrant's checksum and the sizes against the stored object, write
 * the manifest last, then prune Qdrant-side snapshots per QSNAP_LOCAL_KEEP;
 * with the shards method, stream every shard straight from Qdrant into its
 * own object (SHA-256 and tar structure checked while streaming), then write
 * the manifest listing them. A failure of one collection is recorded and
 * the run goes on with the next. Nothing here touches the libuv loop: the run
 * reports through struct qs_progress (job.h), which the daemon marshals to
 * the loop thread and the CLI logs directly. */
#ifndef QSNAP_BACKUP_H
#define QSNAP_BACKUP_H

#include <stddef.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/job.h"
#include "qsnap/manifest.h"
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

/* A fresh random token of a backup run (32 lower-case hex characters and a
 * NUL into out). Every object a run stores carries it in its metadata
 * ("qsnap-run"), so the run recognises its own objects (an answer lost after
 * a commit) and never deletes another's. 0 or QS_EIO. */
int qs_backup_run_token(char out[33]);

/* Streams shard shard_id of collection (borrowed) from q (borrowed: a client
 * of the Qdrant peer that holds the shard; a single node's is env->qdrant)
 * into the destination as the object key (borrowed), through SHA-256, the
 * tar check and gzip when configured (qs_qdrant_stream_shard); retryable
 * failures are retried from the start with backoff. The object carries
 * run_token (borrowed, qs_backup_run_token) in its metadata. On success out
 * (borrowed) holds the shard's id, object key (owned by out: free it, or
 * hand it to a manifest), sizes and SHA-256, and the stored size was checked
 * with HEAD. On failure nothing this call stored is left at the destination
 * and out is empty. */
int qs_backup_stream_shard(const struct qs_backup_env *env, struct qs_qdrant *q,
                           const char *collection, uint32_t shard_id, const char *key,
                           const char *run_token, struct qs_manifest_shard *out,
                           struct qs_error *err);

/* Pings url (borrowed) with GET through the shared HTTP client (10 s
 * timeout, at most 3 redirects, http and https only). 0 on a 2xx answer. The
 * URL never appears in logs or err (it may carry a token). */
int qs_heartbeat_ping(const char *url, struct qs_error *err);

#endif
