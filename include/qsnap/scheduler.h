/* The daemon's schedules: scheduled backups (QSNAP_SCHEDULE, each fire time
 * delayed by a random jitter of up to QSNAP_JITTER) and restore drills
 * (QSNAP_DRILL_SCHEDULE, of the collections that have series). A trigger
 * that finds a job running is skipped with a warning; the next fire time is
 * computed from the trigger's time either way.
 *
 * The leader rule (cluster.h): with QSNAP_CLUSTER=auto, a fire time first
 * asks Qdrant's GET /cluster on libuv's threadpool; what is due starts only
 * when the answer lets this sidecar run scheduled work (a single node, or
 * its peer is the Raft leader). Otherwise it is skipped, logged with the
 * reason (info for a follower naming the leader, a warning without a
 * leader, an error when Qdrant could not be asked) and counted
 * (qs_series_schedule_skipped); either way the answer sets
 * qsnap_cluster_leader. QSNAP_CLUSTER=off starts at once, as without the rule.
 *
 * Loop thread only. */
#ifndef QSNAP_SCHEDULER_H
#define QSNAP_SCHEDULER_H

#include <stdint.h>

#include <uv.h>

#include "qsnap/config.h"
#include "qsnap/cron.h"
#include "qsnap/qdrant.h"
#include "qsnap/runner.h"
#include "qsnap/series.h"

struct qs_scheduler;

/* Every pointer borrowed: it must outlive the scheduler (qdrant is only
 * used with QSNAP_CLUSTER=auto and may then not be NULL). Returns 0 or a
 * negative code; *out owned by the caller (qs_scheduler_free, after
 * qs_scheduler_close has called back). */
int qs_scheduler_new(uv_loop_t *loop, const struct qs_config *cfg, struct qs_runner *runner,
                     struct qs_series *series, struct qs_qdrant *qdrant, struct qs_scheduler **out);

/* Computes the first fire times (from qs_clock_now()) and starts the timer. */
int qs_scheduler_start(struct qs_scheduler *s);

/* Runs what is due at `now`: starts a backup and/or a drill whose time has
 * come (or skips it with a warning while a job runs) and moves its fire time
 * on; with QSNAP_CLUSTER=auto the start waits for the leader check (above),
 * and a fire time that comes while the previous check is still out is
 * skipped as cluster_unknown. The timer calls it; exposed so that tests can
 * drive the schedule. */
void qs_scheduler_tick(struct qs_scheduler *s, int64_t now);

/* The next fire times (UTC seconds, 0 = off). */
int64_t qs_scheduler_next_backup(const struct qs_scheduler *s);
int64_t qs_scheduler_next_drill(const struct qs_scheduler *s);

/* Stops the schedule and calls done(ud) once a leader check in flight has
 * returned (what it was for is not started) and the timer is closed (done
 * may be NULL; ud borrowed until then). */
void qs_scheduler_close(struct qs_scheduler *s, void (*done)(void *ud), void *ud);

/* Frees a closed scheduler. NULL accepted. */
void qs_scheduler_free(struct qs_scheduler *s);

/* The first time after `now` that cron (borrowed) fires, plus a random
 * delay of 0..jitter_s seconds; 0 when the schedule is off. */
int64_t qs_scheduler_next_fire(const struct qs_cron *cron, int64_t now, int64_t jitter_s);

#endif
