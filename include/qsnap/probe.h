/* Readiness probes of the daemon: every interval (30 s) Qdrant and the
 * destination are probed on libuv's threadpool; Qdrant's collections are
 * listed (collections mode), Qdrant's cluster view is read (GET /cluster,
 * with QSNAP_CLUSTER=auto; cluster.h) and, until it has worked once, the
 * destination's manifests and drill results are loaded to seed the metrics.
 * The outcome goes to the series (series.h: qsnap_cluster_leader too) and
 * is kept for /readyz. The cluster view does not decide readiness.
 *
 * Loop thread only; the probing itself runs on the threadpool. */
#ifndef QSNAP_PROBE_H
#define QSNAP_PROBE_H

#include <stdint.h>

#include <uv.h>

#include "qsnap/cluster.h"
#include "qsnap/config.h"
#include "qsnap/qdrant.h"
#include "qsnap/series.h"
#include "qsnap/storage.h"

#define QS_PROBE_INTERVAL_MS 30000

/* The last probe's outcome. */
struct qs_probe_status {
    int probed;               /* 0 until the first probe has returned */
    int qdrant_up;            /* 1 when Qdrant answered */
    int destination_up;       /* 1 when the destination answered */
    const char *qdrant_error; /* borrowed from the prober until the next probe; "" when up */
    const char *destination_error;
    const struct qs_cluster_view *cluster; /* borrowed from the prober until the next probe */
};

struct qs_probe;

/* Every pointer borrowed: it must outlive the prober. interval_ms 0 =
 * QS_PROBE_INTERVAL_MS. Returns 0 or a negative code; *out owned by the
 * caller (qs_probe_free, after qs_probe_close has called back). */
int qs_probe_new(uv_loop_t *loop, const struct qs_config *cfg, struct qs_storage *storage,
                 struct qs_qdrant *qdrant, struct qs_series *series, uint64_t interval_ms,
                 struct qs_probe **out);

/* Probes now (seeding the metrics) and every interval from then on. */
int qs_probe_start(struct qs_probe *p);

/* The last outcome (*st borrowed; its strings as documented above). */
void qs_probe_status(const struct qs_probe *p, struct qs_probe_status *st);

/* Stops probing and calls done(ud) once a probe in flight has returned and
 * the timer is closed (done may be NULL; ud borrowed until then). */
void qs_probe_close(struct qs_probe *p, void (*done)(void *ud), void *ud);

/* Frees a closed prober. NULL accepted. */
void qs_probe_free(struct qs_probe *p);

#endif
