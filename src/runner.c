/* The daemon's job runner: worker thread, event queue, job bookkeeping and
 * the archive of finished jobs (see runner.h). */
#include "qsnap/runner.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/log.h"

enum ev_type {
    EV_PHASE,
    EV_ITEM,
    EV_DONE,
};

/* One report of the worker, owned by the queue and then the loop. */
struct event {
    struct event *next;
    enum ev_type type;
    char *collection;              /* EV_PHASE */
    const char *phase;             /* EV_PHASE, static */
    struct qs_job_item item;       /* EV_ITEM, deep copy */
    struct qs_jobs_outcome result; /* EV_DONE */
};

/* The running job's worker side. The runner owns it from a successful start
 * until the worker has been joined. */
struct run {
    struct qs_runner *r;
    struct qs_job *job; /* owned by the runner; the worker reads kind and id */
    struct qs_job_params params;
    struct qs_progress progress;
    struct event *done; /* allocated before the start, so the end always reaches the loop */
};

struct qs_runner {
    uv_loop_t *loop;
    struct qs_backup_env env;
    struct qs_runner_observer obs;
    qs_thread_create_fn thread_create;

    uv_async_t async;
    int async_open;
    pthread_mutex_t mu;
    struct event *ev_head, *ev_tail;

    struct qs_job *current;
    struct run *run;
    uv_thread_t thread;
    struct qs_job *done[QS_RUNNER_DONE_JOBS];
    size_t ndone;

    int closing;
    void (*close_cb)(void *);
    void *close_ud;
};

static void event_free(struct event *ev)
{
    free(ev->collection);
    qs_job_item_deinit(&ev->item);
    qs_jobs_outcome_deinit(&ev->result);
    free(ev);
}

static void push_event(struct qs_runner *r, struct event *ev)
{
    pthread_mutex_lock(&r->mu);
    if (r->ev_tail != NULL)
        r->ev_tail->next = ev;
    else
        r->ev_head = ev;
    r->ev_tail = ev;
    pthread_mutex_unlock(&r->mu);
    uv_async_send(&r->async);
}

/* ---- the worker --------------------------------------------------------- */

static struct run *run_of(struct qs_progress *p)
{
    return (struct run *)((char *)p - offsetof(struct run, progress));
}

static void progress_phase_cb(struct qs_progress *p, const char *collection, const char *phase)
{
    struct event *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        return;
    ev->type = EV_PHASE;
    ev->collection = collection != NULL ? strdup(collection) : NULL;
    ev->phase = phase;
    push_event(run_of(p)->r, ev);
}

static void progress_item_cb(struct qs_progress *p, const struct qs_job_item *item)
{
    struct event *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        return;
    if (qs_job_item_copy(&ev->item, item) != 0) {
        free(ev);
        return;
    }
    ev->type = EV_ITEM;
    push_event(run_of(p)->r, ev);
}

static void worker_main(void *arg)
{
    struct run *run = arg;
    struct qs_backup_env env = run->r->env;
    env.progress = &run->progress;
    struct event *done = run->done;
    qs_jobs_run(&env, &run->params, &done->result);
    push_event(run->r, done);
}

/* ---- the loop side ------------------------------------------------------ */

static void archive(struct qs_runner *r, struct qs_job *job)
{
    if (r->ndone == QS_RUNNER_DONE_JOBS) {
        qs_job_free(r->done[0]);
        memmove(r->done, r->done + 1, (QS_RUNNER_DONE_JOBS - 1) * sizeof(r->done[0]));
        r->ndone--;
    }
    r->done[r->ndone++] = job;
}

static void maybe_closed(struct qs_runner *r);

static void apply_item(struct qs_job *job, const struct qs_job_item *it)
{
    struct qs_job_item *dst = qs_job_item(job, it->collection);
    if (dst == NULL)
        return;
    struct qs_job_item copy;
    if (qs_job_item_copy(&copy, it) != 0)
        return;
    /* The item keeps its own name string. */
    free(copy.collection);
    copy.collection = dst->collection;
    dst->collection = NULL;
    qs_job_item_deinit(dst);
    *dst = copy;
}

static void apply_done(struct qs_runner *r, struct event *ev)
{
    struct qs_job *job = r->current;
    uv_thread_join(&r->thread);
    const struct qs_jobs_outcome *o = &ev->result;
    enum qs_job_state to = o->rc == 0 ? QS_JOB_SUCCEEDED
                           : o->rc == QS_ECANCELED || qs_cancel_requested(&job->cancel)
                               ? QS_JOB_CANCELLED
                               : QS_JOB_FAILED;
    qs_job_transition(job, to, o->rc != 0 ? o->err.msg : NULL);
    size_t ok = 0, failed = 0;
    qs_job_counts(job, &ok, &failed);
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.job = job->id;
    c.duration_s = qs_monotonic() - job->started_mono;
    c.error = job->error;
    qs_log(o->rc == 0 ? QS_LOG_INFO : QS_LOG_ERROR, &c, "%s job %s: %zu ok, %zu failed",
           qs_job_kind_name(job->kind), qs_job_state_name(job->state), ok, failed);
    if (r->obs.finished != NULL)
        r->obs.finished(r->obs.ud, job, o->pruned ? &o->prune : NULL);
    qs_job_params_deinit(&r->run->params);
    free(r->run);
    r->run = NULL;
    r->current = NULL;
    archive(r, job);
    maybe_closed(r);
}

static void async_cb(uv_async_t *h)
{
    struct qs_runner *r = h->data;
    pthread_mutex_lock(&r->mu);
    struct event *ev = r->ev_head;
    r->ev_head = r->ev_tail = NULL;
    pthread_mutex_unlock(&r->mu);
    while (ev != NULL) {
        struct event *next = ev->next;
        struct qs_job *job = r->current;
        if (job != NULL) {
            switch (ev->type) {
            case EV_PHASE:
                qs_job_set_phase(job, ev->collection, ev->phase);
                if (r->obs.phase != NULL)
                    r->obs.phase(r->obs.ud, job, ev->collection, ev->phase);
                break;
            case EV_ITEM:
                apply_item(job, &ev->item);
                if (r->obs.item != NULL)
                    r->obs.item(r->obs.ud, job, &ev->item);
                break;
            case EV_DONE:
                apply_done(r, ev);
                break;
            }
        }
        event_free(ev);
        ev = next;
    }
}

int qs_runner_start(struct qs_runner *r, struct qs_job *job, struct qs_job_params *params)
{
    if (r->current != NULL)
        return QS_EBUSY;
    if (r->closing)
        return QS_ECANCELED;
    struct run *run = calloc(1, sizeof(*run));
    struct event *done = calloc(1, sizeof(*done));
    if (run == NULL || done == NULL) {
        free(run);
        free(done);
        return UV_ENOMEM;
    }
    done->type = EV_DONE;
    qs_jobs_outcome_init(&done->result);
    run->done = done;
    run->r = r;
    run->job = job;
    run->params = *params;
    run->progress.phase = progress_phase_cb;
    run->progress.item_done = progress_item_cb;
    run->progress.bytes = &job->bytes;
    run->progress.cancel = &job->cancel;
    run->progress.job_id = job->id;
    int rc = r->thread_create(&r->thread, worker_main, run);
    if (rc != 0) {
        /* Nothing was taken over: job and params are still the caller's. */
        event_free(done);
        free(run);
        return rc;
    }
    /* The worker never reads the job's state; the loop changes it before
     * any of the worker's events can be drained. */
    memset(params, 0, sizeof(*params));
    qs_job_transition(job, QS_JOB_RUNNING, NULL);
    r->current = job;
    r->run = run;
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.job = job->id;
    qs_log(QS_LOG_INFO, &c, "%s job started (trigger: %s)", qs_job_kind_name(job->kind),
           job->trigger);
    if (r->obs.started != NULL)
        r->obs.started(r->obs.ud, job);
    return 0;
}

const struct qs_job *qs_runner_current(const struct qs_runner *r)
{
    return r->current;
}

const struct qs_job *qs_runner_find(const struct qs_runner *r, const char *id)
{
    if (r->current != NULL && strcmp(r->current->id, id) == 0)
        return r->current;
    for (size_t i = 0; i < r->ndone; i++)
        if (strcmp(r->done[i]->id, id) == 0)
            return r->done[i];
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void async_closed_cb(uv_handle_t *h)
{
    struct qs_runner *r = h->data;
    r->async_open = 0;
    void (*cb)(void *) = r->close_cb;
    r->close_cb = NULL;
    if (cb != NULL)
        cb(r->close_ud);
}

static void maybe_closed(struct qs_runner *r)
{
    if (!r->closing || r->current != NULL || !r->async_open ||
        uv_is_closing((uv_handle_t *)&r->async))
        return;
    uv_close((uv_handle_t *)&r->async, async_closed_cb);
}

void qs_runner_close(struct qs_runner *r, void (*done)(void *ud), void *ud)
{
    if (!r->async_open) {
        if (done != NULL)
            done(ud);
        return;
    }
    r->close_cb = done;
    r->close_ud = ud;
    if (!r->closing) {
        r->closing = 1;
        if (r->current != NULL) {
            struct qs_log_ctx c = QS_LOG_CTX_NONE;
            c.job = r->current->id;
            qs_log(QS_LOG_INFO, &c, "cancelling the running job");
            qs_cancel_request(&r->current->cancel);
        }
    }
    maybe_closed(r);
}

int qs_runner_new(uv_loop_t *loop, const struct qs_backup_env *env,
                  const struct qs_runner_observer *obs, const struct qs_runner_opts *opts,
                  struct qs_runner **out)
{
    *out = NULL;
    struct qs_runner *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return UV_ENOMEM;
    r->loop = loop;
    r->env = *env;
    r->env.progress = NULL;
    if (obs != NULL)
        r->obs = *obs;
    r->thread_create =
        opts != NULL && opts->thread_create != NULL ? opts->thread_create : uv_thread_create;
    int rc = pthread_mutex_init(&r->mu, NULL);
    if (rc != 0) {
        free(r);
        return -rc;
    }
    rc = uv_async_init(loop, &r->async, async_cb);
    if (rc != 0) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return rc;
    }
    r->async.data = r;
    r->async_open = 1;
    *out = r;
    return 0;
}

void qs_runner_free(struct qs_runner *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->ndone; i++)
        qs_job_free(r->done[i]);
    struct event *ev = r->ev_head;
    while (ev != NULL) {
        struct event *next = ev->next;
        event_free(ev);
        ev = next;
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}
