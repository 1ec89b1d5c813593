/* The daemon's backup service: jobs, schedules, probes, metrics and the
 * /readyz and /v1 routes (SPEC sections 4-8).
 *
 * Everything here runs on the loop thread except the jobs themselves: one
 * job at a time runs on its own worker thread (uv_thread_t) and reports
 * through a mutex-protected event queue drained on the loop after a
 * uv_async_t wake-up. Short blocking look-ups (probes, catalog listings for
 * GET /v1/backups and restore validation, the startup seeding of metrics)
 * run on libuv's threadpool with uv_queue_work. Job state, metrics and the
 * HTTP answers are only ever touched on the loop thread.
 *
 * Per-collection series (SPEC section 12) exist only for collections that
 * are selected for backup and exist in Qdrant: the probe lists Qdrant's
 * collections, a collection that is gone loses its series at the next probe
 * (its state is kept: the series come back as they were if it returns), and
 * restore-drill scratch collections never get any. The series project a
 * per-collection state seeded at startup from the destination (newest and
 * oldest backup, drill results), so freshness, the grace from first sight
 * and drill times survive a restart. A backup time from the future beyond
 * QS_RETENTION_CLOCK_SKEW_S is logged and not trusted for freshness
 * (retention.h). POST /v1/backup?collection=c answers 404 when c does not
 * exist in Qdrant, before any job starts.
 *
 * Test-only knob (not part of the configuration contract):
 * QSNAP_TEST_PROBE_INTERVAL_MS replaces the 30 s probe interval. */
#ifndef QSNAP_SERVICE_H
#define QSNAP_SERVICE_H

#include <uv.h>

#include "qsnap/config.h"
#include "qsnap/http.h"
#include "qsnap/metrics.h"
#include "qsnap/qdrant.h"
#include "qsnap/storage.h"

struct qs_service;

/* All pointers borrowed: they must outlive the service. Returns 0 or
 * UV_ENOMEM; *out owned by the caller (qs_service_free after shutdown). */
int qs_service_new(uv_loop_t *loop, struct qs_http_server *http, struct qs_metrics *metrics,
                   const struct qs_config *cfg, struct qs_storage *storage,
                   struct qs_qdrant *qdrant, struct qs_service **out);

/* Registers routes and metrics, seeds metrics from the destination's
 * manifests, starts the probe and schedule timers. */
int qs_service_start(struct qs_service *svc);

/* Stops timers and triggers, cancels the running job (its multipart upload
 * is aborted, no manifest is written) and calls done(ud) on the loop once
 * the worker has ended and the service's handles are closed. */
void qs_service_shutdown(struct qs_service *svc, void (*done)(void *ud), void *ud);

/* Frees a service that was shut down (or never started). NULL accepted. */
void qs_service_free(struct qs_service *svc);

#endif
