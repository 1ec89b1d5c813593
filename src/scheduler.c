/* The daemon's schedules (see scheduler.h). */
#include "qsnap/scheduler.h"

#include <stdlib.h>

#include "qsnap/cluster.h"
#include "qsnap/jobs.h"
#include "qsnap/log.h"

/* The timer wakes up at least this often, so a clock that jumps is noticed. */
#define TICK_MAX_MS 30000

struct qs_scheduler {
    uv_loop_t *loop;
    const struct qs_config *cfg;
    struct qs_runner *runner;
    struct qs_series *series;
    struct qs_qdrant *qdrant;
    uv_timer_t timer;
    int timer_open;
    int closing;
    int checking;        /* a leader check is on the threadpool */
    int64_t next_backup; /* 0 = off */
    int64_t next_drill;
    void (*close_cb)(void *);
    void *close_ud;
};

int64_t qs_scheduler_next_fire(const struct qs_cron *cron, int64_t now, int64_t jitter_s)
{
    int64_t t = qs_cron_next(cron, now);
    if (t < 0)
        return 0;
    if (jitter_s > 0) {
        uint64_t r = 0;
        uv_random(NULL, NULL, &r, sizeof(r), 0, NULL);
        t += (int64_t)(r % (uint64_t)(jitter_s + 1));
    }
    return t;
}

/* Starts a job of this kind; the caller keeps nothing either way. */
static void trigger(struct qs_scheduler *s, enum qs_job_kind kind, const char *what)
{
    struct qs_job_params params = {.kind = kind};
    struct qs_job *job = qs_job_new(kind, kind == QS_JOB_DRILL ? "drill" : "schedule");
    int rc = job != NULL ? 0 : UV_ENOMEM;
    /* Drills test the collections that have series: selected for backup
     * and present in Qdrant. */
    if (rc == 0 && kind == QS_JOB_DRILL)
        rc = qs_series_present(s->series, &params.collections, &params.ncollections);
    if (rc == 0)
        rc = qs_runner_start(s->runner, job, &params);
    if (rc == 0)
        return;
    if (rc == QS_EBUSY)
        QS_WARN("%s skipped: another job is running", what);
    else
        QS_ERROR("%s could not start: %s", what, qs_strerror(rc));
    /* A start that failed took nothing over. */
    qs_job_free(job);
    qs_job_params_deinit(&params);
}

/* What is due at one fire time. */
struct due {
    int backup, drill;
};

static void start_due(struct qs_scheduler *s, struct due d)
{
    if (d.backup)
        trigger(s, QS_JOB_BACKUP, "scheduled backup");
    if (d.drill)
        trigger(s, QS_JOB_DRILL, "restore drill");
}

/* Logs and counts what the leader rule did not let start. */
static void skip_due(struct qs_scheduler *s, struct due d, const struct qs_cluster_view *v)
{
    char why[700];
    qs_cluster_view_reason(v, why, sizeof(why));
    enum qs_log_level level = v->role == QS_CLUSTER_ROLE_FOLLOWER    ? QS_LOG_INFO
                              : v->role == QS_CLUSTER_ROLE_NO_LEADER ? QS_LOG_WARN
                                                                     : QS_LOG_ERROR;
    static const char *const what[] = {"scheduled backup", "restore drill"};
    for (int k = 0; k < 2; k++) {
        if (k == 0 ? !d.backup : !d.drill)
            continue;
        if (v->role == QS_CLUSTER_ROLE_FOLLOWER)
            qs_log(level, NULL, "%s skipped: %s; the leader's sidecar runs it", what[k], why);
        else
            qs_log(level, NULL,
                   "%s skipped: %s; in cluster mode only the Raft leader's sidecar runs it, "
                   "never on a guess",
                   what[k], why);
        qs_series_schedule_skipped(s->series, k == 0 ? QS_JOB_BACKUP : QS_JOB_DRILL, v->role);
    }
}

/* One leader check on the threadpool; owned by the scheduler until after_cb. */
struct check {
    uv_work_t req;
    struct qs_scheduler *s;
    struct due due;
    struct qs_cluster_view view;
};

static void maybe_closed(struct qs_scheduler *s);

static void check_work_cb(uv_work_t *req)
{
    struct check *c = req->data;
    qs_cluster_view_check(c->s->qdrant, c->s->cfg, &c->view);
}

static void check_after_cb(uv_work_t *req, int status)
{
    struct check *c = req->data;
    struct qs_scheduler *s = c->s;
    s->checking = 0;
    if (status == 0 && !s->closing) {
        qs_series_cluster_role(s->series, c->view.role);
        enum qs_cluster_role r = c->view.role;
        if (r == QS_CLUSTER_ROLE_UNKNOWN && !qs_series_seen_cluster(s->series) &&
            c->view.err.code == QS_ETRANSPORT) {
            /* Qdrant does not answer at all and was never seen in cluster
             * mode: run as a single node would, so the run fails and is
             * counted (qsnap_backup_consecutive_failures) instead of being
             * skipped quietly. A peer of a cluster cannot back anything up
             * through a Qdrant that does not answer either. */
            char why[700];
            qs_cluster_view_reason(&c->view, why, sizeof(why));
            QS_WARN("%s; Qdrant was never seen in cluster mode: running as a single node", why);
            start_due(s, c->due);
        } else if (qs_cluster_role_runs_scheduled(r)) {
            if (c->view.role == QS_CLUSTER_ROLE_LEADER) {
                char why[300];
                qs_cluster_view_reason(&c->view, why, sizeof(why));
                QS_INFO("%s: this sidecar runs the scheduled work", why);
            }
            start_due(s, c->due);
        } else {
            skip_due(s, c->due, &c->view);
        }
    }
    qs_cluster_view_deinit(&c->view);
    free(c);
    maybe_closed(s);
}

/* What is due starts now (QSNAP_CLUSTER=off) or once the leader check has
 * answered. */
static void run_due(struct qs_scheduler *s, struct due d)
{
    if (s->cfg->cluster == QS_CLUSTER_OFF) {
        start_due(s, d);
        return;
    }
    struct qs_cluster_view v;
    qs_cluster_view_init(&v);
    v.setting = s->cfg->cluster;
    v.role = QS_CLUSTER_ROLE_UNKNOWN;
    if (s->checking) {
        qs_strlcpy(v.err.msg, "the previous scheduled time's GET /cluster has not returned yet",
                   sizeof(v.err.msg));
        skip_due(s, d, &v);
        return;
    }
    struct check *c = calloc(1, sizeof(*c));
    int rc = c != NULL ? 0 : UV_ENOMEM;
    if (c != NULL) {
        c->req.data = c;
        c->s = s;
        c->due = d;
        qs_cluster_view_init(&c->view);
        rc = uv_queue_work(s->loop, &c->req, check_work_cb, check_after_cb);
    }
    if (rc != 0) {
        free(c);
        qs_error_set(&v.err, rc, "could not queue the check: %s", qs_strerror(rc));
        skip_due(s, d, &v);
        return;
    }
    s->checking = 1;
}

static void timer_cb(uv_timer_t *t);

/* Arms the timer for the sooner fire time (at most TICK_MAX_MS away). */
static void arm(struct qs_scheduler *s, int64_t now)
{
    qs_series_next_backup(s->series, s->next_backup);
    int64_t soonest = 0;
    if (s->next_backup > 0)
        soonest = s->next_backup;
    if (s->next_drill > 0 && (soonest == 0 || s->next_drill < soonest))
        soonest = s->next_drill;
    uint64_t ms = TICK_MAX_MS;
    if (soonest > 0) {
        int64_t d = soonest - now;
        if (d <= 0)
            ms = 1;
        else if ((uint64_t)d * 1000 < ms)
            ms = (uint64_t)d * 1000;
    }
    uv_timer_start(&s->timer, timer_cb, ms, 0);
}

void qs_scheduler_tick(struct qs_scheduler *s, int64_t now)
{
    if (s->closing)
        return;
    struct due d = {0, 0};
    if (s->next_backup > 0 && now >= s->next_backup) {
        d.backup = 1;
        s->next_backup = qs_scheduler_next_fire(&s->cfg->cron, now, s->cfg->jitter_s);
    }
    if (s->next_drill > 0 && now >= s->next_drill) {
        d.drill = 1;
        s->next_drill = qs_scheduler_next_fire(&s->cfg->drill_cron, now, 0);
    }
    if (d.backup || d.drill)
        run_due(s, d);
    arm(s, now);
}

static void timer_cb(uv_timer_t *t)
{
    qs_scheduler_tick(t->data, qs_clock_now());
}

int qs_scheduler_start(struct qs_scheduler *s)
{
    if (s->closing)
        return QS_ECANCELED;
    int64_t now = qs_clock_now();
    s->next_backup = qs_scheduler_next_fire(&s->cfg->cron, now, s->cfg->jitter_s);
    s->next_drill = qs_scheduler_next_fire(&s->cfg->drill_cron, now, 0);
    if (s->next_backup > 0) {
        char t[21];
        qs_time_rfc3339(s->next_backup, t);
        QS_INFO("next scheduled backup at %s", t);
    } else {
        QS_INFO("backup schedule is off");
    }
    arm(s, now);
    return 0;
}

int64_t qs_scheduler_next_backup(const struct qs_scheduler *s)
{
    return s->next_backup;
}

int64_t qs_scheduler_next_drill(const struct qs_scheduler *s)
{
    return s->next_drill;
}

static void timer_closed_cb(uv_handle_t *h)
{
    struct qs_scheduler *s = h->data;
    s->timer_open = 0;
    void (*cb)(void *) = s->close_cb;
    s->close_cb = NULL;
    if (cb != NULL)
        cb(s->close_ud);
}

/* Closes the timer once closing and no check is out. */
static void maybe_closed(struct qs_scheduler *s)
{
    if (!s->closing || s->checking || !s->timer_open || uv_is_closing((uv_handle_t *)&s->timer))
        return;
    uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
}

void qs_scheduler_close(struct qs_scheduler *s, void (*done)(void *ud), void *ud)
{
    s->closing = 1;
    if (!s->timer_open) {
        if (done != NULL)
            done(ud);
        return;
    }
    s->close_cb = done;
    s->close_ud = ud;
    uv_timer_stop(&s->timer);
    maybe_closed(s);
}

int qs_scheduler_new(uv_loop_t *loop, const struct qs_config *cfg, struct qs_runner *runner,
                     struct qs_series *series, struct qs_qdrant *qdrant, struct qs_scheduler **out)
{
    *out = NULL;
    struct qs_scheduler *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    s->loop = loop;
    s->cfg = cfg;
    s->runner = runner;
    s->series = series;
    s->qdrant = qdrant;
    if (cfg->cluster != QS_CLUSTER_OFF && qdrant == NULL) {
        free(s);
        return QS_EINVAL;
    }
    int rc = uv_timer_init(loop, &s->timer);
    if (rc != 0) {
        free(s);
        return rc;
    }
    s->timer.data = s;
    s->timer_open = 1;
    *out = s;
    return 0;
}

void qs_scheduler_free(struct qs_scheduler *s)
{
    free(s);
}
