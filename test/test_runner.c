/* The job runner, the schedule and the API's job triggers on a private
 * loop: ownership when a job cannot start (a start that fails takes nothing
 * over, so the caller frees job and parameters exactly once), a job that
 * runs to the end, the schedule's skip-with-warning, and the leader rule's
 * check when Qdrant cannot be asked. The destination is a temporary file://
 * directory, the API listens on a loopback port of this process, no job here
 * talks to Qdrant, and the leader check goes to a loopback port nothing
 * listens on. Run under the sanitizer build, a double free or a leak fails
 * these tests. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "qsnap/api.h"
#include "qsnap/config.h"
#include "qsnap/http.h"
#include "qsnap/jobs.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"
#include "qsnap/metric_names.h"
#include "qsnap/metrics.h"
#include "qsnap/qdrant.h"
#include "qsnap/runner.h"
#include "qsnap/scheduler.h"
#include "qsnap/series.h"
#include "qsnap/storage.h"
#include "support.h"

/* ---- a thread creation that fails, or counts ------------------------------ */

static int creates, create_result;

static int failing_create(uv_thread_t *tid, uv_thread_cb entry, void *arg)
{
    (void)tid;
    (void)entry;
    (void)arg;
    creates++;
    return create_result;
}

static int counting_create(uv_thread_t *tid, uv_thread_cb entry, void *arg)
{
    creates++;
    return uv_thread_create(tid, entry, arg);
}

/* ---- the fixture ----------------------------------------------------------- */

#define API_TOKEN "runner-test-admin-token-0123456789"

struct fixture {
    uv_loop_t loop;
    char *dir;
    char dest[600];
    const char *cluster; /* QSNAP_CLUSTER, "off" unless a test sets it before setup */
    char qdrant_url[64]; /* QSNAP_QDRANT_URL: a loopback port nobody listens on */
    struct qs_config cfg;
    struct qs_storage *storage;
    struct qs_qdrant *qdrant;
    struct qs_metrics *metrics;
    struct qs_series *series;
    struct qs_runner *runner;
    struct qs_scheduler *scheduler;
    int closed;
    /* what the observer saw */
    int started, finished;
    enum qs_job_state final_state;
    int pruned;
};

static const char *fixture_env(const char *name, void *ud)
{
    struct fixture *f = ud;
    if (strcmp(name, "QSNAP_DESTINATION") == 0)
        return f->dest;
    if (strcmp(name, "QSNAP_SCHEDULE") == 0 || strcmp(name, "QSNAP_DRILL_SCHEDULE") == 0)
        return "* * * * *";
    if (strcmp(name, "QSNAP_COLLECTIONS") == 0)
        return "alpha,beta";
    if (strcmp(name, "QSNAP_CLUSTER") == 0)
        return f->cluster;
    if (strcmp(name, "QSNAP_QDRANT_URL") == 0)
        return f->qdrant_url;
    if (strcmp(name, "QSNAP_ADMIN_TOKEN") == 0)
        return API_TOKEN;
    return NULL;
}

static void obs_started(void *ud, const struct qs_job *job)
{
    (void)job;
    ((struct fixture *)ud)->started++;
}

static void obs_finished(void *ud, const struct qs_job *job, const struct qs_prune_result *prune)
{
    struct fixture *f = ud;
    f->finished++;
    f->final_state = job->state;
    f->pruned = prune != NULL;
}

static void fixture_setup_cluster(struct fixture *f, qs_thread_create_fn create,
                                  const char *cluster)
{
    memset(f, 0, sizeof(*f));
    f->cluster = cluster;
    snprintf(f->qdrant_url, sizeof(f->qdrant_url), "http://127.0.0.1:%d", qs_test_free_port());
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    f->dir = qs_test_mkdtemp("runner");
    cr_assert_not_null(f->dir);
    snprintf(f->dest, sizeof(f->dest), "file://%s", f->dir);
    struct qs_error err;
    cr_assert_eq(qs_config_load(&f->cfg, fixture_env, f, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_storage_new_from_config(&f->cfg, &f->storage, &err), 0, "%s", err.msg);
    struct qs_qdrant_opts qo = {.url = f->cfg.qdrant_url};
    cr_assert_eq(qs_qdrant_new(&qo, &f->qdrant, &err), 0, "%s", err.msg);
    f->metrics = qs_metrics_new(0);
    cr_assert_not_null(f->metrics);
    cr_assert_eq(qs_series_new(f->metrics, &f->cfg, &f->series), 0);
    struct qs_backup_env env = {.cfg = &f->cfg, .storage = f->storage, .qdrant = f->qdrant};
    struct qs_runner_observer obs = {.started = obs_started, .finished = obs_finished, .ud = f};
    struct qs_runner_opts opts = {.thread_create = create};
    cr_assert_eq(qs_runner_new(&f->loop, &env, &obs, &opts, &f->runner), 0);
    cr_assert_eq(
        qs_scheduler_new(&f->loop, &f->cfg, f->runner, f->series, f->qdrant, &f->scheduler), 0);
    creates = 0;
}

static void fixture_setup(struct fixture *f, qs_thread_create_fn create)
{
    fixture_setup_cluster(f, create, "off");
}

static void part_closed(void *ud)
{
    ((struct fixture *)ud)->closed++;
}

static void fixture_teardown(struct fixture *f)
{
    qs_scheduler_close(f->scheduler, part_closed, f);
    qs_runner_close(f->runner, part_closed, f);
    for (int i = 0; i < 100 && f->closed < 2; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    cr_assert_eq(f->closed, 2, "runner and scheduler did not close");
    cr_assert_eq(uv_loop_close(&f->loop), 0, "a handle is still open");
    qs_scheduler_free(f->scheduler);
    qs_runner_free(f->runner);
    qs_series_free(f->series);
    qs_metrics_free(f->metrics);
    qs_storage_free(f->storage);
    qs_qdrant_free(f->qdrant);
    qs_config_free(&f->cfg);
    qs_test_rmrf(f->dir);
    free(f->dir);
    qs_log_clear_secrets();
}

/* ---- the runner ------------------------------------------------------------- */

Test(runner, failed_start_takes_nothing_over)
{
    struct fixture f;
    fixture_setup(&f, failing_create);
    create_result = UV_EAGAIN;
    struct qs_job *job = qs_job_new(QS_JOB_BACKUP, "api");
    struct qs_job_params params = {.kind = QS_JOB_BACKUP};
    cr_assert_eq(qs_job_params_add_collection(&params, "alpha"), 0);
    char **names = params.collections;

    cr_assert_eq(qs_runner_start(f.runner, job, &params), UV_EAGAIN);
    cr_assert_eq(creates, 1);
    /* Nothing changed: the job never ran, the parameters are still ours. */
    cr_assert_eq(job->state, QS_JOB_QUEUED);
    cr_assert_eq(params.collections, names);
    cr_assert_eq(params.ncollections, 1);
    cr_assert_str_eq(params.collections[0], "alpha");
    cr_assert_null(qs_runner_current(f.runner));
    cr_assert_null(qs_runner_find(f.runner, job->id), "a job that never started is not kept");
    cr_assert_eq(f.started, 0);
    /* The caller frees both, once. */
    qs_job_free(job);
    qs_job_params_deinit(&params);
    fixture_teardown(&f);
}

Test(runner, job_runs_to_the_end_and_is_archived)
{
    struct fixture f;
    fixture_setup(&f, counting_create);
    struct qs_job *job = qs_job_new(QS_JOB_PRUNE, "api");
    struct qs_job_params params = {.kind = QS_JOB_PRUNE};
    cr_assert_eq(qs_runner_start(f.runner, job, &params), 0);
    cr_assert_eq(creates, 1);
    cr_assert_eq(qs_runner_current(f.runner), job);
    cr_assert_eq(job->state, QS_JOB_RUNNING);
    cr_assert_eq(f.started, 1);
    /* A second job while one runs is refused, and stays the caller's. */
    struct qs_job *second = qs_job_new(QS_JOB_PRUNE, "api");
    struct qs_job_params p2 = {.kind = QS_JOB_PRUNE};
    cr_assert_eq(qs_runner_start(f.runner, second, &p2), QS_EBUSY);
    qs_job_free(second);
    for (int i = 0; i < 1000 && f.finished == 0; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    cr_assert_eq(f.finished, 1);
    cr_assert_eq(f.final_state, QS_JOB_SUCCEEDED);
    cr_assert(f.pruned, "a prune job reports its pruning result");
    cr_assert_null(qs_runner_current(f.runner));
    const struct qs_job *kept = qs_runner_find(f.runner, job->id);
    cr_assert_eq(kept, job, "the finished job is archived");
    fixture_teardown(&f);
}

Test(runner, closing_runner_refuses_jobs)
{
    struct fixture f;
    fixture_setup(&f, counting_create);
    qs_runner_close(f.runner, NULL, NULL);
    struct qs_job *job = qs_job_new(QS_JOB_PRUNE, "api");
    struct qs_job_params params = {.kind = QS_JOB_PRUNE};
    cr_assert_eq(qs_runner_start(f.runner, job, &params), QS_ECANCELED);
    cr_assert_eq(creates, 0);
    qs_job_free(job);
    fixture_teardown(&f);
}

/* ---- the schedule ----------------------------------------------------------- */

/* A scheduled drill and a scheduled backup whose worker thread cannot start:
 * each is tried once, then freed once by the scheduler (a double free here
 * aborts the sanitizer build), and the schedule moves on. */
Test(scheduler, jobs_whose_thread_cannot_start_are_freed_once)
{
    struct fixture f;
    fixture_setup(&f, failing_create);
    create_result = UV_EAGAIN;
    /* Drills test the collections that have series: make alpha present. */
    char *listed[] = {"alpha"};
    qs_series_listing(f.series, listed, 1);
    cr_assert_eq(qs_scheduler_start(f.scheduler), 0);
    int64_t backup_at = qs_scheduler_next_backup(f.scheduler);
    int64_t drill_at = qs_scheduler_next_drill(f.scheduler);
    cr_assert_gt(backup_at, 0);
    cr_assert_gt(drill_at, 0);
    int64_t now = backup_at > drill_at ? backup_at : drill_at;

    qs_scheduler_tick(f.scheduler, now);
    cr_assert_eq(creates, 2, "one backup and one drill were tried (%d)", creates);
    cr_assert_null(qs_runner_current(f.runner));
    cr_assert_eq(f.started, 0);
    cr_assert_gt(qs_scheduler_next_backup(f.scheduler), now, "the schedule moves on");
    cr_assert_gt(qs_scheduler_next_drill(f.scheduler), now);

    /* Again, a minute later: still no double free, nothing kept. */
    qs_scheduler_tick(f.scheduler, now + 60);
    cr_assert_eq(creates, 4);
    fixture_teardown(&f);
}

Test(scheduler, trigger_while_a_job_runs_is_skipped)
{
    struct fixture f;
    fixture_setup(&f, counting_create);
    struct qs_job *job = qs_job_new(QS_JOB_PRUNE, "api");
    struct qs_job_params params = {.kind = QS_JOB_PRUNE};
    cr_assert_eq(qs_runner_start(f.runner, job, &params), 0);
    cr_assert_eq(qs_scheduler_start(f.scheduler), 0);
    int64_t at = qs_scheduler_next_backup(f.scheduler);
    qs_scheduler_tick(f.scheduler, at);
    cr_assert_eq(creates, 1, "the scheduled backup started no second worker");
    cr_assert_eq(qs_runner_current(f.runner), job);
    cr_assert_gt(qs_scheduler_next_backup(f.scheduler), at);
    for (int i = 0; i < 1000 && f.finished == 0; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    cr_assert_eq(f.finished, 1);
    fixture_teardown(&f);
}

/* The leader rule, when Qdrant cannot be asked at the scheduled time (its
 * port refuses) after a look at GET /cluster found a cluster: nothing starts,
 * both the backup and the drill are counted as skipped (cluster_unknown),
 * and qsnap_cluster_leader stays 0. The check runs on the threadpool: the
 * tick itself starts nothing and returns at once. */
Test(scheduler, leader_check_that_cannot_ask_skips_and_counts)
{
    struct fixture f;
    fixture_setup_cluster(&f, counting_create, "auto");
    char *listed[] = {"alpha"};
    qs_series_listing(f.series, listed, 1);
    qs_series_cluster_role(f.series, QS_CLUSTER_ROLE_FOLLOWER); /* a probe saw a cluster */
    cr_assert_eq(qs_scheduler_start(f.scheduler), 0);
    int64_t now = qs_scheduler_next_backup(f.scheduler);
    if (qs_scheduler_next_drill(f.scheduler) > now)
        now = qs_scheduler_next_drill(f.scheduler);
    const char *backup[] = {"kind", "backup", "reason", "cluster_unknown", NULL};
    const char *drill[] = {"kind", "drill", "reason", "cluster_unknown", NULL};
    double v = -1;
    cr_assert_eq(qs_metrics_get(f.metrics, QS_MN(SCHEDULE_SKIPPED), backup, &v), 0);
    cr_assert_eq(v, 0.0, "the skip series exist at 0");

    qs_scheduler_tick(f.scheduler, now);
    cr_assert_eq(creates, 0, "nothing starts before the check answered");
    for (int i = 0; i < 2000; i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        if (qs_metrics_get(f.metrics, QS_MN(SCHEDULE_SKIPPED), drill, &v) == 0 && v > 0)
            break;
        usleep(5000);
    }
    cr_assert_eq(qs_metrics_get(f.metrics, QS_MN(SCHEDULE_SKIPPED), backup, &v), 0);
    cr_assert_eq(v, 1.0);
    cr_assert_eq(qs_metrics_get(f.metrics, QS_MN(SCHEDULE_SKIPPED), drill, &v), 0);
    cr_assert_eq(v, 1.0);
    cr_assert_eq(creates, 0, "no job started on a guess");
    cr_assert_null(qs_runner_current(f.runner));
    cr_assert_eq(f.started, 0);
    cr_assert_eq(qs_metrics_get(f.metrics, QS_MN(CLUSTER_LEADER), NULL, &v), 0);
    cr_assert_eq(v, 0.0);
    cr_assert_gt(qs_scheduler_next_backup(f.scheduler), now, "the schedule moves on");
    fixture_teardown(&f);
}

/* The same refused port, but no look at GET /cluster ever found a cluster
 * (a single node whose Qdrant is down): the scheduled backup starts as a
 * single node's would (so it fails and is counted like any failed run
 * instead of being skipped quietly); nothing is counted as skipped. */
Test(scheduler, qdrant_down_never_seen_in_cluster_mode_runs_as_a_single_node)
{
    struct fixture f;
    fixture_setup_cluster(&f, counting_create, "auto");
    cr_assert_eq(qs_scheduler_start(f.scheduler), 0);
    int64_t now = qs_scheduler_next_backup(f.scheduler);
    const char *backup[] = {"kind", "backup", "reason", "cluster_unknown", NULL};
    qs_scheduler_tick(f.scheduler, now);
    cr_assert_eq(creates, 0, "nothing starts before the check answered");
    for (int i = 0; i < 2000 && creates == 0; i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    cr_assert_eq(creates, 1, "the scheduled backup started");
    double v = -1;
    cr_assert_eq(qs_metrics_get(f.metrics, QS_MN(SCHEDULE_SKIPPED), backup, &v), 0);
    cr_assert_eq(v, 0.0, "nothing was skipped");
    const struct qs_job *job = qs_runner_current(f.runner);
    cr_assert_not_null(job, "a job runs");
    cr_assert_eq(job->kind, QS_JOB_BACKUP);
    fixture_teardown(&f); /* cancels the run (Qdrant's retries would take long) */
}

/* Closing while a leader check is out: the scheduler closes only after the
 * check has returned, and what it was for is not started. */
Test(scheduler, close_waits_for_the_leader_check)
{
    struct fixture f;
    fixture_setup_cluster(&f, counting_create, "auto");
    cr_assert_eq(qs_scheduler_start(f.scheduler), 0);
    qs_scheduler_tick(f.scheduler, qs_scheduler_next_backup(f.scheduler));
    qs_scheduler_close(f.scheduler, part_closed, &f);
    cr_assert_eq(f.closed, 0, "closed with the check still out");
    qs_runner_close(f.runner, part_closed, &f);
    for (int i = 0; i < 2000 && f.closed < 2; i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    cr_assert_eq(f.closed, 2);
    cr_assert_eq(creates, 0);
    const char *backup[] = {"kind", "backup", "reason", "cluster_unknown", NULL};
    double v;
    cr_assert_eq(qs_metrics_get(f.metrics, QS_MN(SCHEDULE_SKIPPED), backup, &v), 0);
    cr_assert_eq(v, 0.0, "a check that returns after the close counts nothing");
    /* Closed already: teardown's close calls back at once. */
    f.closed = 0;
    fixture_teardown(&f);
}

/* ---- the API's job triggers -------------------------------------------------- */

struct api_client {
    int port;
    long backup_status, restore_status;
    char backup_body[256], restore_body[256];
    int done; /* atomic */
};

static void api_post(int port, const char *path, const char *body, long *status, char *out,
                     size_t cap)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    const char *h[] = {"Authorization: Bearer " API_TOKEN, "Content-Type: application/json", NULL};
    struct qs_test_resp r;
    *status = -1;
    if (qs_test_http("POST", url, h, body, strlen(body), &r) == 0) {
        *status = r.status;
        qs_strlcpy(out, r.body != NULL ? r.body : "", cap);
        qs_test_resp_free(&r);
    }
}

static void *api_client_main(void *arg)
{
    struct api_client *c = arg;
    api_post(c->port, "/v1/backup", "", &c->backup_status, c->backup_body, sizeof(c->backup_body));
    api_post(c->port, "/v1/restore", "{\"collection\":\"alpha\",\"snapshot\":\"alpha-1.snapshot\"}",
             &c->restore_status, c->restore_body, sizeof(c->restore_body));
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void http_closed(void *ud)
{
    *(int *)ud = 1;
}

/* POST /v1/backup and POST /v1/restore (after its look-up found the backup)
 * when the worker thread cannot start: each answers 500, the job and its
 * parameters are freed once by the route (a double free or a leak fails the
 * sanitizer build) and nothing is left running. */
Test(api, triggers_whose_thread_cannot_start_answer_500_and_free_once)
{
    struct fixture f;
    fixture_setup(&f, failing_create);
    create_result = UV_EAGAIN;
    /* The backup the restore names: its look-up only needs the manifest. */
    char key[QS_MANIFEST_KEY_MAX];
    cr_assert_eq(qs_manifest_key("alpha", "alpha-1.snapshot", key, sizeof(key)), 0);
    struct qs_error err;
    cr_assert_eq(qs_storage_put_buffer(f.storage, key, "{}", 2, NULL, NULL, &err), 0, "%s",
                 err.msg);

    struct qs_http_server *http;
    struct qs_api *api;
    struct qs_api_env env = {
        .loop = &f.loop, .cfg = &f.cfg, .storage = f.storage, .runner = f.runner};
    cr_assert_eq(qs_http_server_new(&f.loop, NULL, &http), 0);
    cr_assert_eq(qs_api_new(&env, &api), 0);
    cr_assert_eq(qs_api_start(api, http), 0);
    cr_assert_eq(qs_http_server_listen(http, "127.0.0.1", 0, NULL), 0);
    struct api_client c = {.port = qs_http_server_port(http)};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, api_client_main, &c), 0);
    for (int i = 0; i < 60000 && !__atomic_load_n(&c.done, __ATOMIC_ACQUIRE); i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    pthread_join(th, NULL);

    cr_assert_eq(c.backup_status, 500, "%ld %s", c.backup_status, c.backup_body);
    cr_assert_not_null(strstr(c.backup_body, "could not start the job"), "%s", c.backup_body);
    cr_assert_eq(c.restore_status, 500, "%ld %s", c.restore_status, c.restore_body);
    cr_assert_not_null(strstr(c.restore_body, "could not start the job"), "%s", c.restore_body);
    cr_assert_eq(creates, 2, "each trigger tried one thread (%d)", creates);
    cr_assert_null(qs_runner_current(f.runner));
    cr_assert_eq(f.started, 0);

    int closed = 0;
    qs_http_server_close(http, http_closed, &closed);
    for (int i = 0; i < 1000 && !closed; i++)
        uv_run(&f.loop, UV_RUN_ONCE);
    cr_assert_eq(closed, 1);
    qs_api_free(api);
    fixture_teardown(&f);
}
