/* The daemon's HTTP API: GET /readyz, POST /v1/backup[?collection=c],
 * POST /v1/restore, GET /v1/jobs/{id}, GET /v1/backups[?collection=c].
 * /readyz answers 200 {"status": "ready"} or 503 {"error": why} from the
 * last probe, with the probe's cluster view ("cluster": cluster.h's
 * qs_cluster_view_to_json) once a probe has returned.
 *
 * Handlers run on the loop thread: they check the request (parameters,
 * body, names: the same rules and messages as the configuration and the
 * CLI) and answer at once, or run a short look-up on libuv's threadpool
 * (the catalog listing of GET /v1/backups, the backup a restore names, the
 * existence in Qdrant of the collection POST /v1/backup?collection= names,
 * so that a name that does not exist starts no job and creates no series)
 * and answer from its after-work callback. Jobs are started through the
 * runner; a trigger while a job runs gets 409, after qs_api_stop() 503. */
#ifndef QSNAP_API_H
#define QSNAP_API_H

#include <uv.h>

#include "qsnap/config.h"
#include "qsnap/http.h"
#include "qsnap/probe.h"
#include "qsnap/qdrant.h"
#include "qsnap/runner.h"
#include "qsnap/storage.h"

/* The objects the routes work with; all borrowed, they must outlive the
 * HTTP server's routes. */
struct qs_api_env {
    uv_loop_t *loop;
    const struct qs_config *cfg;
    struct qs_storage *storage;
    struct qs_qdrant *qdrant;
    struct qs_runner *runner;
    struct qs_probe *probe;
};

struct qs_api;

/* env is copied. Returns 0 or UV_ENOMEM; *out owned by the caller
 * (qs_api_free, once the HTTP server is closed). */
int qs_api_new(const struct qs_api_env *env, struct qs_api **out);

/* Registers the routes and the bearer check of the POST routes on http
 * (borrowed). Returns 0 or a negative code (routes added before the failure
 * stay: api must outlive the server either way). */
int qs_api_start(struct qs_api *api, struct qs_http_server *http);

/* From now on /readyz and the job triggers answer 503 (shutting down). */
void qs_api_stop(struct qs_api *api); /* api borrowed, NULL accepted */

/* NULL accepted. */
void qs_api_free(struct qs_api *api);

#endif
