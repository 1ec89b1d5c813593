/* The daemon's job runner: one job at a time on its own worker thread, the
 * job's bookkeeping on the loop thread, and the last QS_RUNNER_DONE_JOBS
 * finished jobs kept for GET /v1/jobs/{id}.
 *
 * The worker runs qs_jobs_run() and reports through a mutex-protected event
 * queue (phase changes, per-collection results, the end) that the loop
 * drains after a uv_async_t wake-up; the job's state changes there, never on
 * the worker. The byte counter and the cancel flag are the only state the
 * two threads share (atomics). What the events mean for metrics is not the
 * runner's business: it passes them to an observer.
 *
 * Every function is called on the loop thread. */
#ifndef QSNAP_RUNNER_H
#define QSNAP_RUNNER_H

#include <uv.h>

#include "qsnap/backup.h"
#include "qsnap/job.h"
#include "qsnap/jobs.h"
#include "qsnap/prune.h"

#define QS_RUNNER_DONE_JOBS 32

/* Told about a job's progress, on the loop thread. job and the other
 * pointers are borrowed for the call; ud as given. Any member may be NULL. */
struct qs_runner_observer {
    void (*started)(void *ud, const struct qs_job *job);
    void (*phase)(void *ud, const struct qs_job *job, const char *collection, const char *phase);
    void (*item)(void *ud, const struct qs_job *job, const struct qs_job_item *item);
    /* job is final; prune is NULL when no remote pruning ran. */
    void (*finished)(void *ud, const struct qs_job *job, const struct qs_prune_result *prune);
    void *ud;
};

/* Creates the worker thread (uv_thread_create's contract). */
typedef int (*qs_thread_create_fn)(uv_thread_t *tid, uv_thread_cb entry, void *arg);

struct qs_runner_opts {
    qs_thread_create_fn thread_create; /* NULL = uv_thread_create */
};

struct qs_runner;

/* loop, env (cfg, storage, qdrant; its progress is ignored) and the
 * observer's ud borrowed: they must outlive the runner; obs and opts are
 * copied (NULL = none / defaults). Returns 0 or a negative code; *out owned
 * by the caller (qs_runner_free). */
int qs_runner_new(uv_loop_t *loop, const struct qs_backup_env *env,
                  const struct qs_runner_observer *obs, const struct qs_runner_opts *opts,
                  struct qs_runner **out);

/* Starts job (QUEUED) with params on a worker thread. On 0 the runner owns
 * both (params is moved out and left zeroed; job stays readable through
 * qs_runner_current/qs_runner_find until it leaves the archive). On failure
 * the runner takes nothing over and changes nothing: QS_EBUSY (a job is
 * running), QS_ECANCELED (the runner is closing), or the thread-creation
 * error; the caller still owns job and params. */
int qs_runner_start(struct qs_runner *r, struct qs_job *job, struct qs_job_params *params);

/* The running job (borrowed), or NULL. */
const struct qs_job *qs_runner_current(const struct qs_runner *r);

/* The running or an archived job with this id (borrowed), or NULL (the
 * result is borrowed from the runner). */
const struct qs_job *qs_runner_find(const struct qs_runner *r, const char *id);

/* Refuses new jobs, cancels the running one and calls done(ud) once its
 * worker has been joined and the runner's handle is closed (at once when it
 * is already closed). done may be NULL; ud borrowed until then. */
void qs_runner_close(struct qs_runner *r, void (*done)(void *ud), void *ud);

/* Frees a closed (or never used) runner and its archive. NULL accepted. */
void qs_runner_free(struct qs_runner *r);

#endif
