/* Prometheus metrics registry and text exposition (format 0.0.4).
 *
 * A registry holds metric families (gauge or counter) with a HELP text and a
 * fixed list of label names; each family holds series keyed by label values.
 * Values are doubles.
 *
 * Threading: a registry is NOT thread-safe. Values are changed and the
 * registry is rendered on the loop thread only. Worker threads hand their
 * results back to the loop (uv_queue_work's after_work_cb, uv_async_t) and the
 * loop-side code updates the metrics.
 *
 * Labels are passed as a NULL-terminated list of name/value pairs, e.g.
 *
 *     qs_metrics_register(m, "app_queue_age_seconds", QS_METRIC_GAUGE,
 *                         "Seconds the oldest item has waited.",
 *                         (const char *[]){"queue", NULL});
 *     qs_metrics_set(m, "app_queue_age_seconds",
 *                    (const char *[]){"queue", "q1", NULL}, 42.0);
 *
 * qsnap's own families are declared in one table (metric_names.def) and
 * registered by id (qs_metrics_register_id), named in code with QS_MN(ID).
 *
 * The pairs must name exactly the labels declared at registration (in any
 * order). A family without labels takes NULL as its label list.
 *
 * The process_* metrics are read from /proc/self and getrlimit() at render
 * time (memory-backed, no disk I/O on the loop thread).
 *
 * Rendering is deterministic: families sorted by name, series sorted by their
 * label values (compared label by label in declaration order).
 *
 * Render cache (qs_metrics_render_cached(), what GET /metrics serves): the
 * exposition is rendered again only when
 *   - something changed since the last render: a series was created or
 *     removed, a value set to a different value or added to (outside the
 *     render itself), a family registered, a render hook added or removed; or
 *   - the last render is QS_METRICS_MAX_AGE_MS (1 s) old or older;
 * otherwise the bytes of the last render are served again. Values set by the
 * modules are therefore exact at every scrape; values computed at render time
 * -- the process_* metrics and whatever the render hooks compute (backup
 * ages, staleness, the HTTP endpoint's connection figures) -- are at most
 * 1 s old.
 */
#ifndef QSNAP_METRICS_H
#define QSNAP_METRICS_H

#include <stdint.h>

#include "qsnap/metric_names.h"
#include "qsnap/util.h"

/* Flags for qs_metrics_new(). */
enum {
    QS_METRICS_PROCESS = 1,    /* process_* metrics from /proc/self, computed at render */
    QS_METRICS_BUILD_INFO = 2, /* qsnap_build_info{version="..."} 1 */
    QS_METRICS_DEFAULT = QS_METRICS_PROCESS | QS_METRICS_BUILD_INFO,
};

struct qs_metrics;

/* Called right before rendering (on the loop thread) so a module can refresh
 * computed gauges, e.g. qsnap_backup_age_seconds = now - last success.
 * m is borrowed; ud is the pointer given at registration. */
typedef void (*qs_metrics_render_fn)(struct qs_metrics *m, void *ud);

/* New empty registry (flags: QS_METRICS_*). Returns NULL when out of memory.
 * Caller frees with qs_metrics_free(). */
struct qs_metrics *qs_metrics_new(unsigned flags);

/* Frees the registry and every series. NULL is accepted. */
void qs_metrics_free(struct qs_metrics *m);

/* Declares a family. name, help and label_names are copied (borrowed for the
 * call); label_names is NULL-terminated or NULL for none. Registering the
 * same name again with the same type and labels is a no-op returning 0.
 * Returns QS_EINVAL for an invalid metric or label name, a counter whose name
 * does not end in "_total", a duplicate label name, or a conflicting
 * re-registration; UV_ENOMEM when out of memory. */
int qs_metrics_register(struct qs_metrics *m, const char *name, enum qs_metric_type type,
                        const char *help, const char *const *label_names);

/* Declares family id of the metric table (metric_names.def), as
 * qs_metrics_register() does with its name, type, help and labels. */
int qs_metrics_register_id(struct qs_metrics *m, enum qs_metric_id id);

/* Sets the series identified by labels (name/value pairs, borrowed,
 * NULL-terminated, NULL when the family has no labels) to value, creating it
 * when absent. Returns 0, QS_ENOTFOUND for an unregistered family, QS_EINVAL
 * when the labels do not match the family's declaration. */
int qs_metrics_set(struct qs_metrics *m, const char *name, const char *const *labels, double value);

/* Adds delta to the series (created at 0 when absent). Counters refuse a
 * negative delta with QS_EINVAL. Other errors as qs_metrics_set(). */
int qs_metrics_add(struct qs_metrics *m, const char *name, const char *const *labels, double delta);

/* Reads a series into *out. Returns 0, QS_ENOTFOUND (family or series
 * absent) or QS_EINVAL. */
int qs_metrics_get(const struct qs_metrics *m, const char *name, const char *const *labels,
                   double *out);

/* Removes one series. Returns 0, QS_ENOTFOUND (family or series absent) or
 * QS_EINVAL. */
int qs_metrics_remove(struct qs_metrics *m, const char *name, const char *const *labels);

/* Removes every series of a family (the family stays registered). Returns 0
 * or QS_ENOTFOUND. */
int qs_metrics_clear(struct qs_metrics *m, const char *name);

/* Registers a render hook (cb called before each render, in registration
 * order). ud borrowed: it must outlive the registration. Returns 0 or
 * UV_ENOMEM. */
int qs_metrics_on_render(struct qs_metrics *m, qs_metrics_render_fn cb, void *ud);

/* Unregisters a hook registered with the same cb and ud. Returns 0 or
 * QS_ENOTFOUND. */
int qs_metrics_off_render(struct qs_metrics *m, qs_metrics_render_fn cb, void *ud);

/* Runs the render hooks, refreshes the process metrics (when enabled) and
 * appends the whole registry in the text format 0.0.4 to out (borrowed,
 * initialised by the caller). Families without series are left out.
 * Returns 0 or UV_ENOMEM. */
int qs_metrics_render(struct qs_metrics *m, struct qs_buf *out);

/* How old a cached exposition may get before it is rendered again. */
#define QS_METRICS_MAX_AGE_MS 1000

/* The exposition through the render cache (see above). now_ms is a monotonic
 * clock in milliseconds (e.g. uv_now()); a clock that went backwards renders
 * again. *text and *len get the bytes (borrowed from m, valid until the next
 * render or qs_metrics_free()); *version (may be NULL) a number that changes
 * exactly when a render happened, so a caller can keep what it derives from
 * the bytes (e.g. their gzip form). Returns 0 or UV_ENOMEM (nothing cached
 * then). */
int qs_metrics_render_cached(struct qs_metrics *m, uint64_t now_ms, const char **text, size_t *len,
                             uint64_t *version);

/* Content-Type of the rendered text. */
#define QS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Appends a label value escaped per the text format (\\, \", \n) to out.
 * Returns 0 or UV_ENOMEM. Exposed for tests. */
int qs_metrics_escape_label(struct qs_buf *out, const char *value);

/* Formats a sample value ("NaN", "+Inf", "-Inf", shortest round-trip
 * decimal otherwise) into out (>= 32 bytes). Exposed for tests. */
void qs_metrics_format_value(double v, char out[static 32]);

#endif
