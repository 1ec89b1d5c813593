/* Jobs: one backup, restore, drill or prune run, with an explicit state
 * machine that changes only on the loop thread.
 *
 *   QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED
 *   QUEUED -> CANCELLED
 *
 * While RUNNING, the job has a phase ("snapshot", "stream", "verify",
 * "manifest", "prune-local", "prune-remote", "download", "create", "upload",
 * "indexes", "check", "aliases")
 * and per-collection outcomes. The work itself runs on one worker thread; it
 * reports through struct qs_progress, whose daemon implementation queues
 * events and wakes the loop with a uv_async_t, so that state, metrics and the
 * job's JSON are only ever touched by the loop thread. Progress bytes are the
 * one shared counter (atomic). */
#ifndef QSNAP_JOB_H
#define QSNAP_JOB_H

#include <stdatomic.h>
#include <stdint.h>

#include "qsnap/util.h"

enum qs_job_kind {
    QS_JOB_BACKUP = 0,
    QS_JOB_RESTORE,
    QS_JOB_DRILL,
    QS_JOB_PRUNE,
};

enum qs_job_state {
    QS_JOB_QUEUED = 0,
    QS_JOB_RUNNING,
    QS_JOB_SUCCEEDED,
    QS_JOB_FAILED,
    QS_JOB_CANCELLED,
};

/* Outcome of one collection inside a job. Strings owned by the job. */
struct qs_job_item {
    char *collection;
    char *snapshot;    /* NULL until known */
    char *object;      /* object key, NULL until known */
    int done;          /* 1 when finished */
    int ok;            /* 1 on success */
    int64_t created;   /* snapshot creation time (backups), 0 if unknown */
    uint64_t size;     /* snapshot bytes */
    uint64_t stored;   /* bytes stored at the destination */
    double duration_s; /* wall time for this collection */
    int local_kept;    /* backups: Qdrant-side snapshots kept after local pruning, -1 unknown */
    int local_deleted; /* backups: Qdrant-side snapshots deleted by local pruning */
    char *error;       /* NULL on success */
    const char *phase; /* static: the phase that failed ("stream", "verify", ...), NULL on
                          success */
};

struct qs_job {
    char id[40];
    enum qs_job_kind kind;
    enum qs_job_state state;
    const char *phase;  /* static string, NULL when not running */
    char *current;      /* collection in progress (owned), NULL if none */
    char *trigger;      /* "schedule", "api", "cli", "drill" (owned) */
    int64_t created_at; /* wall-clock seconds */
    int64_t started_at;
    int64_t finished_at;
    double started_mono;         /* for durations */
    atomic_uint_least64_t bytes; /* bytes moved so far (worker increments) */
    struct qs_cancel cancel;
    struct qs_job_item *items; /* owned array */
    size_t nitems;
    char *error; /* job-level error (owned), NULL if none */
};

/* Heap job in state QUEUED with a fresh id. kind/trigger borrowed (copied).
 * Returns NULL on allocation failure. Caller frees with qs_job_free. */
struct qs_job *qs_job_new(enum qs_job_kind kind, const char *trigger);
void qs_job_free(struct qs_job *job);

/* The only way the state changes. Illegal moves return QS_EINVAL and leave the
 * job unchanged. Entering RUNNING stamps started_at; entering a final state
 * stamps finished_at. error (borrowed, may be NULL) is kept for FAILED. */
int qs_job_transition(struct qs_job *job, enum qs_job_state to, const char *error);

/* Sets the phase (static string) and current collection (borrowed, copied;
 * NULL clears). Only while RUNNING; returns QS_EINVAL otherwise. */
int qs_job_set_phase(struct qs_job *job, const char *collection, const char *phase);

/* Frees the strings of item (borrowed; NULL accepted) and zeroes it. */
void qs_job_item_deinit(struct qs_job_item *item);

/* Deep copy of src (borrowed) into dst (borrowed, its old strings are not
 * freed). Returns 0, or UV_ENOMEM with dst zeroed. */
int qs_job_item_copy(struct qs_job_item *dst, const struct qs_job_item *src);

/* Finds or appends the item for collection (borrowed). NULL on ENOMEM.
 * Appending may move the array: earlier item pointers become invalid. */
struct qs_job_item *qs_job_item(struct qs_job *job, const char *collection);

/* Counts finished items by outcome. */
void qs_job_counts(const struct qs_job *job, size_t *ok, size_t *failed);

/* 1 for SUCCEEDED, FAILED, CANCELLED. */
int qs_job_is_final(const struct qs_job *job);

const char *qs_job_state_name(enum qs_job_state s);
const char *qs_job_kind_name(enum qs_job_kind k);

/* JSON for GET /v1/jobs/{id}: id, kind, state, phase, collection, bytes,
 * created/started/finished (RFC 3339), error, items[]. Appends to out
 * (borrowed), with every registered secret redacted (log.h). Returns 0 or
 * UV_ENOMEM. */
int qs_job_to_json(const struct qs_job *job, struct qs_buf *out);

/* How the work reports back. Implemented by the daemon (queue + uv_async)
 * and by the CLI (direct logging). All callbacks run on the worker thread;
 * strings are borrowed for the call. */
struct qs_progress {
    void (*phase)(struct qs_progress *p, const char *collection, const char *phase);
    void (*item_done)(struct qs_progress *p, const struct qs_job_item *item);
    atomic_uint_least64_t *bytes; /* may be NULL */
    struct qs_cancel *cancel;     /* may be NULL */
    const char *job_id;           /* for log context, may be NULL */
};

void qs_progress_phase(struct qs_progress *p, const char *collection, const char *phase);
void qs_progress_item_done(struct qs_progress *p, const struct qs_job_item *item);
void qs_progress_bytes(struct qs_progress *p, uint64_t n);

#endif
