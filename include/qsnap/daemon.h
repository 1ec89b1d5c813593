/* `qsnap serve`: the daemon's loop, HTTP endpoint, metrics and shutdown.
 *
 * The daemon owns a private uv_loop_t (never uv_default_loop()), the HTTP
 * server and the metrics registry. Other modules hook in between
 * qs_daemon_new() and qs_daemon_run() (main.c wires them): they reach the
 * loop, server and registry through the accessors below, add their routes
 * with qs_http_route(), register metrics, and register shutdown hooks.
 *
 * Built-in routes: GET /healthz -> 200 {"status":"ok"}; GET /metrics ->
 * Prometheus text 0.0.4 (gzip when accepted), including the HTTP endpoint's
 * own counters (qsnap_http_connections_{accepted,shed,refused,timed_out}_total,
 * qsnap_http_requests_busy_total, qsnap_http_connections_open).
 *
 * At start the soft RLIMIT_NOFILE is raised to the hard limit (at most
 * 65536), so connection floods meet the HTTP server's own caps instead of
 * accept() failing; a warning says when the hard limit is too low.
 *
 * Shutdown (first SIGTERM/SIGINT, or qs_daemon_shutdown()):
 *   1. the listener stops accepting; connections in progress continue;
 *   2. every shutdown hook runs once (registration order), on the loop thread;
 *      a hook asks its work to cancel and, when it must wait for that work to
 *      end, calls qs_daemon_hold() and later qs_daemon_release();
 *   3. when no hold remains: the HTTP server, the signal handlers and any
 *      handle still open are closed, the loop runs until uv_loop_close()
 *      returns 0 (logged as "loop closed"), and qs_daemon_run() returns 0;
 *   4. if holds remain QS_DAEMON_DEADLINE_S seconds after the signal, the
 *      process logs a warning and exits with status 0 at once (so the
 *      process is gone well within the pod's 30 s grace period).
 * A second signal exits with status 0 immediately. SIGPIPE is ignored.

 */
#ifndef QSNAP_DAEMON_H
#define QSNAP_DAEMON_H

#include <uv.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/http.h"
#include "qsnap/metrics.h"

#define QS_DAEMON_DEADLINE_S 20

struct qs_daemon;

/* Shutdown hook: d borrowed, ud as registered. Runs on the loop thread. */
typedef void (*qs_daemon_shutdown_fn)(struct qs_daemon *d, void *ud);

struct qs_daemon_opts {
    uint64_t http_timeout_ms; /* HTTP per-connection deadline, 0 = the server's default */
};

/* Creates the loop, the metrics registry and the HTTP server, and binds the
 * listen address (cfg->listen_host, cfg->listen_port). cfg is borrowed and
 * must outlive the daemon; opts borrowed for the call (NULL = defaults).
 * Returns 0, or a negative code with the reason in err (borrowed, may be
 * NULL) and nothing to free; *out is owned by the caller (qs_daemon_free()). */
int qs_daemon_new(const struct qs_config *cfg, const struct qs_daemon_opts *opts,
                  struct qs_daemon **out, struct qs_error *err);

/* Runs the loop until shutdown has completed. Returns 0 after a clean
 * shutdown (loop closed), or a negative code when the loop could not be
 * closed. Call once. */
int qs_daemon_run(struct qs_daemon *d);

/* Frees everything (closing what is still open when qs_daemon_run() was not
 * called). NULL accepted. */
void qs_daemon_free(struct qs_daemon *d);

/* Accessors; the results are borrowed from d. */
uv_loop_t *qs_daemon_loop(struct qs_daemon *d);
struct qs_http_server *qs_daemon_http(struct qs_daemon *d);
struct qs_metrics *qs_daemon_metrics(struct qs_daemon *d);

/* Registers a shutdown hook (ud borrowed; must stay valid until the hook has
 * run or the daemon is freed). Returns 0, UV_ENOMEM, or QS_EBUSY when shutdown
 * has already started. */
int qs_daemon_on_shutdown(struct qs_daemon *d, qs_daemon_shutdown_fn cb, void *ud);

/* Keeps shutdown from completing until the matching qs_daemon_release().
 * Loop thread only. */
void qs_daemon_hold(struct qs_daemon *d);
void qs_daemon_release(struct qs_daemon *d);

/* Starts shutdown as a signal would (reason borrowed, logged). Idempotent. */
void qs_daemon_shutdown(struct qs_daemon *d, const char *reason);

#endif
