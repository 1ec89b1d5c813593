/* The daemon's HTTP API (see api.h). */
#include "qsnap/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "qsnap/catalog.h"
#include "qsnap/cluster.h"
#include "qsnap/drill.h"
#include "qsnap/job.h"
#include "qsnap/jobs.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"
#include "qsnap/restore.h"

#define NO_TOKEN_MSG "POST endpoints are disabled: no admin token configured (QSNAP_ADMIN_TOKEN)"

struct qs_api {
    struct qs_api_env env;
    int stopped;
};

/* ---- answers ------------------------------------------------------------- */

static void respond_json(struct qs_http_req *req, int status, const char *json)
{
    qs_http_respond(req, status, "application/json", json, strlen(json));
}

static void respond_stopped(struct qs_http_req *req)
{
    qs_http_respond_json_error(req, 503, "shutting down");
}

static void respond_busy(struct qs_api *api, struct qs_http_req *req)
{
    const struct qs_job *cur = qs_runner_current(api->env.runner);
    char body[200];
    snprintf(body, sizeof(body), "{\"error\":\"a job is already running\",\"job\":\"%s\"}",
             cur != NULL ? cur->id : "");
    respond_json(req, 409, body);
}

/* The job triggers' common refusals; 1 when req was answered. */
static int refuse_trigger(struct qs_api *api, struct qs_http_req *req)
{
    int a = qs_http_bearer_ok(req, api->env.cfg->admin_token);
    if (a == 403) {
        qs_http_respond_json_error(req, 403, NO_TOKEN_MSG);
        return 1;
    }
    if (a != 0) {
        static const char body[] = "{\"error\":\"missing or invalid bearer token\"}";
        qs_http_respond_ex(req, 401, "application/json",
                           "WWW-Authenticate: Bearer realm=\"qsnap\"\r\n", body, sizeof(body) - 1,
                           0);
        return 1;
    }
    if (api->stopped) {
        respond_stopped(req);
        return 1;
    }
    if (qs_runner_current(api->env.runner) != NULL) {
        respond_busy(api, req);
        return 1;
    }
    return 0;
}

/* 400 when name (from `where`, e.g. "field 'collection'") is refused by the
 * collection-name rule, with the rule's message. 1 when req was answered. */
static int refuse_collection_name(struct qs_http_req *req, const char *where, const char *name)
{
    char why[400], msg[480];
    if (qs_manifest_collection_name_error(name, why, sizeof(why)) == 0)
        return 0;
    snprintf(msg, sizeof(msg), "%s: %s", where, why);
    qs_http_respond_json_error(req, 400, msg);
    return 1;
}

/* The optional ?collection= of a route into out (cap bytes): 0 when absent,
 * 1 when present and a valid name (or, with full_ok, the full-storage
 * snapshot's directory), -1 after answering 400. */
static int collection_param(struct qs_http_req *req, char *out, size_t cap, int full_ok)
{
    int q = qs_http_req_query_param(req, "collection", out, cap);
    if (q < 0) {
        qs_http_respond_json_error(req, 400, "query parameter 'collection': malformed or too long");
        return -1;
    }
    if (q == 1 && !(full_ok && strcmp(out, QS_MANIFEST_FULL_DIR) == 0) &&
        refuse_collection_name(req, "query parameter 'collection'", out))
        return -1;
    return q;
}

/* Starts a job and answers 202 {"job": id}, or the reason it did not start.
 * params is the caller's until it is started; what a failed start left
 * behind is freed here. */
static void start_job(struct qs_api *api, struct qs_http_req *req, enum qs_job_kind kind,
                      struct qs_job_params *params)
{
    struct qs_job *job = qs_job_new(kind, "api");
    int rc = job != NULL ? qs_runner_start(api->env.runner, job, params) : UV_ENOMEM;
    if (rc == 0) {
        char body[120];
        snprintf(body, sizeof(body), "{\"job\":\"%s\"}", job->id);
        qs_http_respond_ex(req, 202, "application/json", NULL, body, strlen(body), 0);
        return;
    }
    qs_job_free(job);
    qs_job_params_deinit(params);
    if (rc == QS_EBUSY)
        respond_busy(api, req);
    else if (rc == QS_ECANCELED)
        respond_stopped(req);
    else
        qs_http_respond_json_error(req, 500, "could not start the job");
}

/* ---- look-ups on the threadpool -------------------------------------------- */

/* One look-up: the request waits for its answer until after_cb. */
struct lookup {
    uv_work_t req;
    struct qs_api *api;
    struct qs_http_req *http;
    char *collection, *snapshot, *target;
    int no_aliases, force; /* restore */
    int rc;
    struct qs_error err;
    struct qs_buf out;
};

static struct lookup *lookup_new(struct qs_api *api, struct qs_http_req *http)
{
    struct lookup *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->req.data = w;
    w->api = api;
    w->http = http;
    qs_error_clear(&w->err);
    qs_buf_init(&w->out);
    return w;
}

static void lookup_free(struct lookup *w)
{
    free(w->collection);
    free(w->snapshot);
    free(w->target);
    qs_buf_free(&w->out);
    free(w);
}

/* Queues w (owned) or answers 500 and frees it. */
static void lookup_queue(struct lookup *w, uv_work_cb work, uv_after_work_cb after)
{
    if (uv_queue_work(w->api->env.loop, &w->req, work, after) != 0) {
        qs_http_respond_json_error(w->http, 500, "could not queue the look-up");
        lookup_free(w);
    }
}

/* 503 with the look-up's reason, after `what`. */
static void respond_lookup_failed(struct lookup *w, const char *what)
{
    char msg[700];
    snprintf(msg, sizeof(msg), "%s: %s", what, w->err.msg);
    qs_http_respond_json_error(w->http, 503, msg);
}

/* ---- GET /readyz ------------------------------------------------------------- */

/* Answers /readyz: {"status": "ready"} (200) or {"error": why} (503), with
 * the cluster view of the last probe (cluster.h) when there was one. */
static void respond_ready(struct qs_http_req *req, int status, const char *error,
                          const struct qs_cluster_view *cluster)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *c = NULL;
    int bad = o == NULL || (error == NULL ? cJSON_AddStringToObject(o, "status", "ready")
                                          : cJSON_AddStringToObject(o, "error", error)) == NULL;
    if (!bad && cluster != NULL) {
        bad = qs_cluster_view_to_json(cluster, &c) != 0;
        if (!bad)
            cJSON_AddItemToObject(o, "cluster", c);
    }
    char *text = bad ? NULL : cJSON_PrintUnformatted(o);
    /* Errors quote Qdrant's and the destination's answers: no secret leaves. */
    char *body = text != NULL ? qs_log_redacted(text) : NULL;
    if (body != NULL)
        respond_json(req, status, body);
    else
        qs_http_respond_json_error(req, 500, "out of memory");
    free(body);
    cJSON_free(text);
    cJSON_Delete(o);
}

static void h_readyz(struct qs_http_req *req, void *ud)
{
    struct qs_api *api = ud;
    if (api->stopped) {
        respond_stopped(req);
        return;
    }
    struct qs_probe_status st;
    qs_probe_status(api->env.probe, &st);
    if (!st.probed) {
        respond_ready(req, 503, "first probe of Qdrant and the destination still running", NULL);
        return;
    }
    if (!st.qdrant_up || !st.destination_up) {
        char msg[700];
        snprintf(msg, sizeof(msg), "%s%s%s%s%s",
                 st.qdrant_up ? "" : "qdrant: ", st.qdrant_up ? "" : st.qdrant_error,
                 !st.qdrant_up && !st.destination_up ? "; " : "",
                 st.destination_up ? "" : "destination: ",
                 st.destination_up ? "" : st.destination_error);
        respond_ready(req, 503, msg, st.cluster);
        return;
    }
    respond_ready(req, 200, NULL, st.cluster);
}

/* ---- POST /v1/backup ----------------------------------------------------------- */

static void backup_lookup_cb(uv_work_t *req)
{
    struct lookup *w = req->data;
    struct qs_collection_info info;
    memset(&info, 0, sizeof(info));
    w->rc = qs_qdrant_collection_info(w->api->env.qdrant, w->collection, &info, &w->err);
    if (w->rc == 0)
        qs_collection_info_deinit(&info);
}

static void start_backup(struct qs_api *api, struct qs_http_req *req, const char *collection)
{
    struct qs_job_params params = {.kind = QS_JOB_BACKUP};
    if (collection != NULL && qs_job_params_add_collection(&params, collection) != 0) {
        qs_http_respond_json_error(req, 500, "out of memory");
        return;
    }
    start_job(api, req, QS_JOB_BACKUP, &params);
}

static void backup_after_cb(uv_work_t *req, int status)
{
    struct lookup *w = req->data;
    if (status != 0 || w->api->stopped) {
        respond_stopped(w->http);
    } else if (w->rc == QS_ENOTFOUND) {
        char msg[400], shown[80];
        snprintf(msg, sizeof(msg), "collection '%s' does not exist in Qdrant",
                 qs_printable(shown, sizeof(shown), w->collection, 64));
        qs_http_respond_json_error(w->http, 404, msg);
    } else if (w->rc != 0) {
        respond_lookup_failed(w, "Qdrant lookup failed");
    } else {
        start_backup(w->api, w->http, w->collection);
    }
    lookup_free(w);
}

static void h_backup(struct qs_http_req *req, void *ud)
{
    struct qs_api *api = ud;
    char coll[1024];
    int q = collection_param(req, coll, sizeof(coll), 0);
    if (q < 0)
        return;
    if (q == 1) {
        if (api->env.cfg->mode == QS_MODE_FULL) {
            qs_http_respond_json_error(req, 400,
                                       "query parameter 'collection': not supported in full mode");
            return;
        }
        if (qs_drill_is_scratch(coll)) {
            qs_http_respond_json_error(req, 400,
                                       "query parameter 'collection': restore-drill scratch "
                                       "collections (*" QS_DRILL_SUFFIX ") are never backed up");
            return;
        }
    }
    if (refuse_trigger(api, req))
        return;
    if (q == 0) {
        start_backup(api, req, NULL);
        return;
    }
    struct lookup *w = lookup_new(api, req);
    if (w == NULL || (w->collection = strdup(coll)) == NULL) {
        free(w);
        qs_http_respond_json_error(req, 500, "out of memory");
        return;
    }
    lookup_queue(w, backup_lookup_cb, backup_after_cb);
}

/* ---- POST /v1/restore -------------------------------------------------------- */

static void restore_lookup_cb(uv_work_t *req)
{
    struct lookup *w = req->data;
    struct qs_storage *st = w->api->env.storage;
    if (w->snapshot == NULL || strcmp(w->snapshot, "latest") == 0) {
        struct qs_catalog cat;
        w->rc = qs_catalog_load(st, w->collection, 0, &cat, &w->err);
        if (w->rc == 0 && qs_catalog_find(&cat, w->collection, NULL) == NULL)
            w->rc =
                qs_error_set(&w->err, QS_ENOTFOUND, "no backup of collection '%s'", w->collection);
        qs_catalog_deinit(&cat);
        return;
    }
    char key[QS_MANIFEST_KEY_MAX];
    if (qs_manifest_key(w->collection, w->snapshot, key, sizeof(key)) != 0) {
        w->rc = qs_error_set(&w->err, QS_EINVAL, "field 'snapshot': not a valid snapshot name");
        return;
    }
    struct qs_storage_stat stat;
    memset(&stat, 0, sizeof(stat));
    w->rc = qs_storage_head(st, key, &stat, &w->err);
    if (w->rc == QS_ENOTFOUND)
        qs_error_set(&w->err, QS_ENOTFOUND, "backup '%s' of collection '%s' not found", w->snapshot,
                     w->collection);
    if (w->rc == 0)
        qs_storage_stat_deinit(&stat);
}

static void restore_after_cb(uv_work_t *req, int status)
{
    struct lookup *w = req->data;
    if (status != 0 || w->api->stopped) {
        respond_stopped(w->http);
    } else if (w->rc == QS_ENOTFOUND) {
        qs_http_respond_json_error(w->http, 404, w->err.msg);
    } else if (w->rc == QS_EINVAL) {
        qs_http_respond_json_error(w->http, 400, w->err.msg);
    } else if (w->rc != 0) {
        respond_lookup_failed(w, "destination lookup failed");
    } else {
        struct qs_job_params params = {
            .kind = QS_JOB_RESTORE,
            .collection = w->collection,
            .snapshot = w->snapshot,
            .target = w->target,
            .no_aliases = w->no_aliases,
            .force = w->force,
        };
        w->collection = w->snapshot = w->target = NULL;
        start_job(w->api, w->http, QS_JOB_RESTORE, &params);
    }
    lookup_free(w);
}

/* The fields of a restore request; a misspelt field must not fall back to a
 * default ("snaphsot" would restore the latest backup instead of the one
 * asked for). */
static const char *const restore_fields[] = {"collection", "snapshot", "target",
                                             "aliases",    "force",    NULL};

/* Copies the optional string field into *out (owned). 0, or -1 after
 * answering 400. */
static int json_opt_string(struct qs_http_req *req, cJSON *root, const char *field, char **out)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        char msg[120];
        snprintf(msg, sizeof(msg), "field '%s': must be a string", field);
        qs_http_respond_json_error(req, 400, msg);
        return -1;
    }
    *out = strdup(v->valuestring);
    if (*out == NULL) {
        qs_http_respond_json_error(req, 500, "out of memory");
        return -1;
    }
    return 0;
}

/* The optional boolean field into *out (def when absent or null). 0, or -1
 * after answering 400. */
static int json_opt_bool(struct qs_http_req *req, cJSON *root, const char *field, int def, int *out)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    *out = def;
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v)) {
        char msg[120];
        snprintf(msg, sizeof(msg), "field '%s': must be true or false", field);
        qs_http_respond_json_error(req, 400, msg);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Parses the body into w's fields. 0, or -1 after answering 400. */
static int parse_restore_body(struct qs_http_req *req, struct lookup *w)
{
    size_t len = 0;
    const char *body = qs_http_req_body(req, &len);
    cJSON *root = NULL;
    struct qs_error jerr;
    if (qs_json_parse(body, len, &root, &jerr) != 0 || !cJSON_IsObject(root)) {
        char msg[600];
        snprintf(msg, sizeof(msg), "body: must be a JSON object like {\"collection\":\"c\"}%s%s",
                 root == NULL ? ": " : "", root == NULL ? jerr.msg : "");
        cJSON_Delete(root);
        qs_http_respond_json_error(req, 400, msg);
        return -1;
    }
    for (const cJSON *f = root->child; f != NULL; f = f->next) {
        size_t k = 0;
        while (restore_fields[k] != NULL && strcmp(restore_fields[k], f->string) != 0)
            k++;
        if (restore_fields[k] == NULL) {
            char name[72], msg[160];
            snprintf(msg, sizeof(msg),
                     "body: unknown field '%s' (accepted: collection, snapshot, target, "
                     "aliases, force)",
                     qs_printable(name, sizeof(name), f->string, 64));
            cJSON_Delete(root);
            qs_http_respond_json_error(req, 400, msg);
            return -1;
        }
    }
    int aliases = 1;
    int bad = json_opt_string(req, root, "collection", &w->collection) ||
              json_opt_string(req, root, "snapshot", &w->snapshot) ||
              json_opt_string(req, root, "target", &w->target) ||
              json_opt_bool(req, root, "aliases", 1, &aliases) ||
              json_opt_bool(req, root, "force", 0, &w->force);
    w->no_aliases = !aliases;
    cJSON_Delete(root);
    if (bad)
        return -1;
    const char *msg = NULL;
    if (w->collection == NULL)
        msg = "field 'collection': required";
    else if (refuse_collection_name(req, "field 'collection'", w->collection))
        return -1;
    else if (w->snapshot != NULL && strcmp(w->snapshot, "latest") != 0 &&
             !qs_manifest_is_valid_snapshot_name(w->snapshot))
        msg = "field 'snapshot': not a valid snapshot name";
    else if (w->target != NULL && !qs_restore_target_ok(w->target))
        msg = "field 'target': not a valid collection name (Qdrant forbids empty names, names "
              "over 255 characters and the characters < > : \" / \\ | ? *)";
    if (msg != NULL) {
        qs_http_respond_json_error(req, 400, msg);
        return -1;
    }
    return 0;
}

static void h_restore(struct qs_http_req *req, void *ud)
{
    struct qs_api *api = ud;
    if (refuse_trigger(api, req))
        return;
    struct lookup *w = lookup_new(api, req);
    if (w == NULL) {
        qs_http_respond_json_error(req, 500, "out of memory");
        return;
    }
    if (parse_restore_body(req, w) != 0) {
        lookup_free(w);
        return;
    }
    lookup_queue(w, restore_lookup_cb, restore_after_cb);
}

/* ---- GET /v1/jobs/{id} --------------------------------------------------------- */

static void h_job(struct qs_http_req *req, void *ud)
{
    struct qs_api *api = ud;
    const struct qs_job *job = qs_runner_find(api->env.runner, qs_http_req_path_rest(req));
    if (job == NULL) {
        qs_http_respond_json_error(req, 404, "no such job");
        return;
    }
    struct qs_buf b;
    qs_buf_init(&b);
    if (qs_job_to_json(job, &b) != 0)
        qs_http_respond_json_error(req, 500, "out of memory");
    else
        qs_http_respond(req, 200, "application/json", b.data, b.len);
    qs_buf_free(&b);
}

/* ---- GET /v1/backups ------------------------------------------------------------- */

static void list_work_cb(uv_work_t *req)
{
    struct lookup *w = req->data;
    struct qs_catalog cat;
    w->rc = qs_catalog_load(w->api->env.storage, w->collection, QS_CATALOG_DRILLS, &cat, &w->err);
    if (w->rc == 0)
        w->rc = qs_catalog_to_json(&cat, &w->out);
    qs_catalog_deinit(&cat);
}

static void list_after_cb(uv_work_t *req, int status)
{
    struct lookup *w = req->data;
    if (status != 0)
        respond_stopped(w->http);
    else if (w->rc != 0)
        respond_lookup_failed(w, "destination listing failed");
    else
        qs_http_respond(w->http, 200, "application/json", w->out.data, w->out.len);
    lookup_free(w);
}

static void h_backups(struct qs_http_req *req, void *ud)
{
    struct qs_api *api = ud;
    char coll[1024];
    int q = collection_param(req, coll, sizeof(coll), 1);
    if (q < 0)
        return;
    struct lookup *w = lookup_new(api, req);
    if (w == NULL || (q == 1 && (w->collection = strdup(coll)) == NULL)) {
        free(w);
        qs_http_respond_json_error(req, 500, "out of memory");
        return;
    }
    lookup_queue(w, list_work_cb, list_after_cb);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

int qs_api_new(const struct qs_api_env *env, struct qs_api **out)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return UV_ENOMEM;
    (*out)->env = *env;
    return 0;
}

int qs_api_start(struct qs_api *api, struct qs_http_server *http)
{
    /* What each route accepts: the server refuses other query parameters
     * (400) and checks the token (401/403) before the body is read and the
     * handler runs; the handlers' own token check stays as a second line. */
    static const char *const p_collection[] = {"collection", NULL};
    const struct {
        const char *method, *path;
        qs_http_handler_fn fn;
        struct qs_http_route_opts opts;
    } routes[] = {
        {"GET", "/readyz", h_readyz, {NULL, 0}},
        {"POST", "/v1/backup", h_backup, {p_collection, QS_HTTP_ROUTE_BEARER}},
        {"POST", "/v1/restore", h_restore, {NULL, QS_HTTP_ROUTE_BEARER}},
        {"GET", "/v1/jobs/", h_job, {NULL, 0}},
        {"GET", "/v1/backups", h_backups, {p_collection, 0}},
    };
    int rc = qs_http_server_set_bearer(http, api->env.cfg->admin_token, NO_TOKEN_MSG);
    for (size_t i = 0; rc == 0 && i < sizeof(routes) / sizeof(routes[0]); i++)
        rc = qs_http_route_ex(http, routes[i].method, routes[i].path, routes[i].fn, api,
                              &routes[i].opts);
    return rc;
}

void qs_api_stop(struct qs_api *api)
{
    if (api != NULL)
        api->stopped = 1;
}

void qs_api_free(struct qs_api *api)
{
    free(api);
}
