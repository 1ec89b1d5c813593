/* The daemon's metrics: registration of the service's families (from the
 * metric table, metric_names.def) and what each event means for them.
 *
 * Per-collection series exist only for collections that are selected for
 * backup and exist in Qdrant: a probe's listing of Qdrant's collections
 * makes a selected collection present; a collection that is gone loses its
 * series at the next listing (its state is kept: the series come back as
 * they were if it returns), and restore-drill scratch collections never get
 * any. The series project a per-collection state seeded at startup from the
 * destination (newest and oldest backup, drill results), so freshness, the
 * grace from first sight and drill times survive a restart. A backup time
 * from the future beyond QS_RETENTION_CLOCK_SKEW_S is logged and not trusted
 * for freshness (retention.h).
 *
 * Loop thread only (like the registry). The qs_series_on_* functions have
 * the shapes of struct qs_runner_observer's members (ud = the series). */
#ifndef QSNAP_SERIES_H
#define QSNAP_SERIES_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/catalog.h"
#include "qsnap/cluster.h"
#include "qsnap/config.h"
#include "qsnap/job.h"
#include "qsnap/metrics.h"
#include "qsnap/prune.h"

struct qs_series;

/* metrics and cfg borrowed (they must outlive the series). Registers the
 * families, sets the schedule gauges and the counters that must exist at 0,
 * and hooks the age refresh into rendering. Returns 0 or a negative code;
 * *out owned by the caller (qs_series_free). */
int qs_series_new(struct qs_metrics *metrics, const struct qs_config *cfg, struct qs_series **out);

/* Unhooks from rendering and frees. NULL accepted. */
void qs_series_free(struct qs_series *s);

/* Job events (runner observer shapes; ud is the series, job borrowed). */
void qs_series_on_job_started(void *ud, const struct qs_job *job);
void qs_series_on_job_phase(void *ud, const struct qs_job *job, const char *collection,
                            const char *phase);
void qs_series_on_job_item(void *ud, const struct qs_job *job, const struct qs_job_item *item);
void qs_series_on_job_finished(void *ud, const struct qs_job *job,
                               const struct qs_prune_result *prune);

/* A probe's outcome: Qdrant and the destination up or not. */
void qs_series_probed(struct qs_series *s, int qdrant_up, int destination_up);

/* Qdrant's collections (borrowed, n names) as a probe listed them: the
 * selected ones are present, every other one is not. */
void qs_series_listing(struct qs_series *s, char *const *names, size_t n);

/* Seeds the collections' state from the destination's backups and drill
 * results (cat borrowed; loaded with QS_CATALOG_DRILLS). */
void qs_series_seed(struct qs_series *s, const struct qs_catalog *cat);

/* 1 once qs_series_seed() ran. */
int qs_series_seeded(const struct qs_series *s);

/* The next scheduled backup (0 = off). */
void qs_series_next_backup(struct qs_series *s, int64_t t);

/* The leader rule's outcome of one look at GET /cluster (a probe's or a
 * scheduled time's): qsnap_cluster_leader is 1 for LEADER (this sidecar runs
 * the scheduled work because its peer leads a cluster), 0 for every other
 * role (a single node and QSNAP_CLUSTER=off included). */
void qs_series_cluster_role(struct qs_series *s, enum qs_cluster_role role);

/* 1 once any look at GET /cluster (a probe's or a scheduled time's) found
 * Qdrant in cluster mode in this process. s borrowed. */
int qs_series_seen_cluster(const struct qs_series *s);

/* A scheduled run of kind (QS_JOB_BACKUP or QS_JOB_DRILL) was not started
 * because of role (FOLLOWER, NO_LEADER or UNKNOWN): counted in
 * qsnap_schedule_skipped_total. */
void qs_series_schedule_skipped(struct qs_series *s, enum qs_job_kind kind,
                                enum qs_cluster_role role);

/* The collections that have series (present), full-storage snapshots
 * excepted, appended to *names (owned by the caller, n entries, grown with
 * realloc). Returns 0 or UV_ENOMEM (what was appended stays). */
int qs_series_present(const struct qs_series *s, char ***names, size_t *n);

#endif
