/* Per-collection series against the Qdrant stand-in and a file://
 * destination: series exist only for selected collections that exist in
 * Qdrant, appear and vanish with them, never for drill scratch collections
 * or names POSTed that do not exist; the grace from first sight (also across
 * a restart, through the injectable clock); backup times from the future
 * (Qdrant's clock ahead) neither hide staleness nor pin retention. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qsnap/catalog.h"
#include "qsnap/error.h"
#include "qsnap/manifest.h"
#include "qsnap/retention.h"
#include "qsnap/storage.h"
#include "qsnap/util.h"
#include "support.h"

#define TOKEN "series-test-admin-token-0123456789"
#define AUTH "Authorization: Bearer " TOKEN

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(series, .init = setup, .fini = teardown, .timeout = 0);

/* ---- the world: stand-in, file:// destination, daemon ------------------------ */

struct world {
    struct qs_test_standin qd;
    char *dir;
    struct qs_storage *st;
    char dest[600], qurl[128];
    struct qs_test_daemon d;
    int running;
};

static void world_open(struct world *w)
{
    memset(w, 0, sizeof(*w));
    cr_assert_eq(qs_test_standin_start(&w->qd, NULL), 0, "Qdrant stand-in did not start");
    w->dir = qs_test_mkdtemp("series");
    snprintf(w->dest, sizeof(w->dest), "QSNAP_DESTINATION=file://%s", w->dir);
    snprintf(w->qurl, sizeof(w->qurl), "QSNAP_QDRANT_URL=%s", w->qd.url);
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    o.kind = QS_DEST_FILE;
    o.path = w->dir;
    struct qs_error err;
    cr_assert_eq(qs_storage_new(&o, &w->st, &err), 0, "%s", err.msg);
}

static void daemon_stop(struct world *w)
{
    if (!w->running)
        return;
    w->running = 0;
    int st = qs_test_daemon_stop(&w->d, 30);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "daemon did not exit 0 on SIGTERM (status %d)", st);
}

static void world_close(struct world *w)
{
    daemon_stop(w);
    qs_test_standin_stop(&w->qd);
    qs_storage_free(w->st);
    qs_test_rmrf(w->dir);
    free(w->dir);
}

/* The daemon's environment: the world, fast probes, then extra. */
static char **env_of(struct world *w, const char *const *extra)
{
    static char *env[32];
    size_t n = 0;
    env[n++] = w->dest;
    env[n++] = w->qurl;
    env[n++] = "QSNAP_ADMIN_TOKEN=" TOKEN;
    env[n++] = "QSNAP_LOG_FORMAT=json";
    env[n++] = "QSNAP_SCHEDULE=off";
    env[n++] = "QSNAP_TEST_PROBE_INTERVAL_MS=200";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
        env[n++] = (char *)extra[i];
    env[n] = NULL;
    return env;
}

/* Starts the daemon and waits for its first probe (which seeds the state). */
static void daemon_start(struct world *w, const char *const *extra)
{
    int rc = qs_test_daemon_start(&w->d, env_of(w, extra));
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", w->d.url);
    if (rc != 0 || qs_test_wait_http(url, 30) != 0) {
        char *log = qs_test_read_file(w->d.log, NULL);
        qs_test_daemon_stop(&w->d, 5);
        cr_assert_fail("daemon did not become ready; log:\n%s", log ? log : "(none)");
    }
    w->running = 1;
}

static char *daemon_log(struct world *w)
{
    char *log = qs_test_read_file(w->d.log, NULL);
    return log != NULL ? log : strdup("");
}

/* ---- HTTP ------------------------------------------------------------------- */

static long http(const char *method, const char *url, const char *auth, const char *body,
                 char **out)
{
    const char *h[] = {"Content-Type: application/json", auth, NULL};
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http(method, url, h, body, body != NULL ? strlen(body) : 0, &r), 0,
                 "%s %s: no answer", method, url);
    long st = r.status;
    if (out != NULL) {
        *out = r.body;
        r.body = NULL;
    }
    qs_test_resp_free(&r);
    return st;
}

static void standin(struct world *w, const char *method, const char *path, const char *body)
{
    char url[300], *out = NULL;
    snprintf(url, sizeof(url), "%s%s", w->qd.url, path);
    long st = http(method, url, NULL, body, &out);
    cr_assert_eq(st, 200, "stand-in %s %s: %ld %s", method, path, st, out);
    free(out);
}

static void make_collection(struct world *w, const char *name)
{
    char body[300];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"points\":200,\"dim\":8}", name);
    standin(w, "POST", "/__standin/collections", body);
}

static void drop_collection(struct world *w, const char *name)
{
    char path[300];
    snprintf(path, sizeof(path), "/__standin/collections/%s", name);
    standin(w, "DELETE", path, NULL);
}

/* POST /v1/backup[?collection=c]; the status, the body in *out (owned). */
static long post_backup(struct world *w, const char *collection, char **out)
{
    char url[300];
    if (collection != NULL)
        snprintf(url, sizeof(url), "%s/v1/backup?collection=%s", w->d.url, collection);
    else
        snprintf(url, sizeof(url), "%s/v1/backup", w->d.url);
    return http("POST", url, AUTH, "", out);
}

/* Runs a backup job to its end; returns the job (caller deletes). */
static cJSON *backup_job(struct world *w, const char *collection)
{
    char *body = NULL;
    long st = post_backup(w, collection, &body);
    cr_assert_eq(st, 202, "POST /v1/backup: %ld %s", st, body);
    cJSON *j = cJSON_Parse(body);
    char id[64];
    snprintf(id, sizeof(id), "%s", qs_test_jstr(j, "job"));
    cJSON_Delete(j);
    free(body);
    char url[300];
    snprintf(url, sizeof(url), "%s/v1/jobs/%s", w->d.url, id);
    double end = qs_monotonic() + 120;
    for (;;) {
        char *out = NULL;
        cr_assert_eq(http("GET", url, NULL, NULL, &out), 200, "%s", out);
        j = cJSON_Parse(out);
        free(out);
        const char *state = qs_test_jstr(j, "state");
        if (strcmp(state, "running") != 0 && strcmp(state, "queued") != 0)
            return j;
        cJSON_Delete(j);
        cr_assert_lt(qs_monotonic(), end, "backup job still running");
        usleep(100000);
    }
}

/* ---- metrics ---------------------------------------------------------------- */

static char *scrape(struct world *w)
{
    return qs_test_daemon_metrics(&w->d);
}

static double series(const char *text, const char *name, const char *coll)
{
    char s[300];
    snprintf(s, sizeof(s), "%s{collection=\"%s\"}", name, coll);
    return qs_test_metric(text, s);
}

/* 1 when any series carries collection="coll". */
static int has_series(const char *text, const char *coll)
{
    char needle[300];
    snprintf(needle, sizeof(needle), "collection=\"%s\"", coll);
    return strstr(text, needle) != NULL;
}

/* Every per-collection family of the metric contract. */
static const char *const FAMILIES[] = {
    "qsnap_backup_last_success_timestamp_seconds",
    "qsnap_backup_stale",
    "qsnap_backup_bytes_total",
    "qsnap_collection_first_seen_timestamp_seconds",
    "qsnap_backup_consecutive_failures",
    "qsnap_restore_drill_last_success_timestamp_seconds",
};

static void assert_full_series(const char *text, const char *coll)
{
    for (size_t i = 0; i < sizeof(FAMILIES) / sizeof(FAMILIES[0]); i++)
        cr_assert(!isnan(series(text, FAMILIES[i], coll)), "%s{collection=\"%s\"} missing:\n%s",
                  FAMILIES[i], coll, text);
    cr_assert(!isnan(qs_test_backups_total(text, coll, "success")), "%s", text);
    cr_assert(!isnan(qs_test_backups_total(text, coll, "failure")), "%s", text);
}

/* Polls /metrics until has_series(coll) == want; returns the last scrape. */
static char *wait_series(struct world *w, const char *coll, int want, double timeout_s)
{
    double end = qs_monotonic() + timeout_s;
    for (;;) {
        char *mt = scrape(w);
        if (has_series(mt, coll) == want)
            return mt;
        cr_assert_lt(qs_monotonic(), end, "series of %s still %s after %.0f s:\n%s", coll,
                     want ? "absent" : "present", timeout_s, mt);
        free(mt);
        usleep(100000);
    }
}

static void assert_promtool(const char *text)
{
    char *out = NULL;
    int rc = qs_test_promtool_check(text, &out);
    cr_assert_eq(rc, 0, "promtool check metrics failed:\n%s", out);
    free(out);
}

/* Number of backups of coll listed by GET /v1/backups. */
static int listed(struct world *w, const char *coll)
{
    char url[300], *out = NULL;
    snprintf(url, sizeof(url), "%s/v1/backups?collection=%s", w->d.url, coll);
    cr_assert_eq(http("GET", url, NULL, NULL, &out), 200, "%s", out);
    cJSON *j = cJSON_Parse(out);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(j, "backups"));
    cJSON_Delete(j);
    free(out);
    return n;
}

/* ---- tests ------------------------------------------------------------------ */

Test(series, appear_and_vanish_with_collections)
{
    struct world w;
    world_open(&w);
    make_collection(&w, "alpha");
    make_collection(&w, "beta");
    daemon_start(&w, NULL);
    char *mt = scrape(&w);
    assert_full_series(mt, "alpha");
    assert_full_series(mt, "beta");
    cr_assert_eq(series(mt, "qsnap_backup_stale", "alpha"), 0.0, "inside its grace:\n%s", mt);
    assert_promtool(mt);
    free(mt);

    /* A scratch collection never gets series, a new collection does (the
     * scratch one is created first, so the probe that shows gamma saw it). */
    make_collection(&w, "alpha__qsnap_drill");
    make_collection(&w, "gamma");
    mt = wait_series(&w, "gamma", 1, 15);
    assert_full_series(mt, "gamma");
    cr_assert(!has_series(mt, "alpha__qsnap_drill"), "%s", mt);
    free(mt);

    /* "All collections" skips the scratch collection. */
    cJSON *job = backup_job(&w, NULL);
    char *jt = cJSON_PrintUnformatted(job);
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded", "%s", jt);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(job, "collections")), 3, "%s", jt);
    cr_assert_null(strstr(jt, "alpha__qsnap_drill"), "%s", jt);
    free(jt);
    cJSON_Delete(job);
    mt = scrape(&w);
    cr_assert_eq(qs_test_backups_total(mt, "beta", "success"), 1.0, "%s", mt);
    double beta_last = series(mt, "qsnap_backup_last_success_timestamp_seconds", "beta");
    cr_assert_gt(beta_last, 1e9);
    cr_assert(!has_series(mt, "alpha__qsnap_drill"), "%s", mt);
    free(mt);

    /* Scratch names and collections that do not exist start no job and
     * create no series. */
    char *body = NULL;
    cr_assert_eq(post_backup(&w, "alpha__qsnap_drill", &body), 400, "%s", body);
    cr_assert_not_null(strstr(body, "never backed up"), "%s", body);
    free(body);
    cr_assert_eq(post_backup(&w, "nope", &body), 404, "%s", body);
    cr_assert_not_null(strstr(body, "collection 'nope' does not exist in Qdrant"), "%s", body);
    free(body);
    mt = scrape(&w);
    cr_assert(!has_series(mt, "nope"), "%s", mt);
    free(mt);

    /* A deleted collection loses every series at the next probe; its backup
     * stays listed. */
    drop_collection(&w, "beta");
    mt = wait_series(&w, "beta", 0, 15);
    assert_full_series(mt, "alpha");
    assert_promtool(mt);
    free(mt);
    cr_assert_eq(listed(&w, "beta"), 1);
    cr_assert_eq(post_backup(&w, "beta", &body), 404, "%s", body);
    free(body);
    mt = scrape(&w);
    cr_assert(!has_series(mt, "beta"), "%s", mt);
    free(mt);
    char *log = daemon_log(&w);
    cr_assert_not_null(strstr(log, "no longer exists in Qdrant"), "%s", log);
    free(log);

    /* It comes back (e.g. restored): its series return as they were. */
    make_collection(&w, "beta");
    mt = wait_series(&w, "beta", 1, 15);
    cr_assert_eq(series(mt, "qsnap_backup_last_success_timestamp_seconds", "beta"), beta_last, "%s",
                 mt);
    cr_assert_eq(qs_test_backups_total(mt, "beta", "success"), 1.0, "%s", mt);
    cr_assert_eq(series(mt, "qsnap_backup_stale", "beta"), 0.0, "%s", mt);
    free(mt);
    daemon_stop(&w);
    world_close(&w);
}

Test(series, only_selected_collections)
{
    struct world w;
    world_open(&w);
    make_collection(&w, "picked");
    make_collection(&w, "other");
    const char *extra[] = {"QSNAP_COLLECTIONS=picked,ghost", NULL};
    daemon_start(&w, extra);
    char *mt = scrape(&w);
    assert_full_series(mt, "picked");
    cr_assert(!has_series(mt, "other"), "not selected:\n%s", mt);
    cr_assert(!has_series(mt, "ghost"), "does not exist in Qdrant:\n%s", mt);
    free(mt);
    /* A scheduled-style run fails for the missing one: still no series. */
    cJSON *job = backup_job(&w, NULL);
    cr_assert_str_eq(qs_test_jstr(job, "state"), "failed");
    cJSON_Delete(job);
    mt = scrape(&w);
    cr_assert(!has_series(mt, "ghost"), "%s", mt);
    cr_assert_eq(qs_test_backups_total(mt, "picked", "success"), 1.0, "%s", mt);
    /* An explicit backup of an existing but unselected collection works
     * and creates no series either. */
    free(mt);
    job = backup_job(&w, "other");
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
    cJSON_Delete(job);
    mt = scrape(&w);
    cr_assert(!has_series(mt, "other"), "%s", mt);
    assert_promtool(mt);
    free(mt);
    world_close(&w);
}

Test(series, failures_count_until_a_success)
{
    struct world w;
    world_open(&w);
    make_collection(&w, "flaky");
    daemon_start(&w, NULL);
    for (int i = 1; i <= 2; i++) {
        /* a corrupted download fails the attempt (no retry) */
        standin(&w, "POST", "/__standin/faults", "{\"flip_byte\":true}");
        cJSON *job = backup_job(&w, "flaky");
        cr_assert_str_eq(qs_test_jstr(job, "state"), "failed");
        cJSON_Delete(job);
        char *mt = scrape(&w);
        cr_assert_eq(series(mt, "qsnap_backup_consecutive_failures", "flaky"), (double)i, "%s", mt);
        free(mt);
    }
    cJSON *job = backup_job(&w, "flaky");
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
    cJSON_Delete(job);
    char *mt = scrape(&w);
    cr_assert_eq(series(mt, "qsnap_backup_consecutive_failures", "flaky"), 0.0, "%s", mt);
    cr_assert_eq(qs_test_backups_total(mt, "flaky", "failure"), 2.0, "%s", mt);
    free(mt);
    world_close(&w);
}

/* A collection never backed up is not stale before QSNAP_STALE_AFTER has
 * passed since qsnap first saw it; after that it is. */
Test(series, grace_from_first_sight)
{
    struct world w;
    world_open(&w);
    make_collection(&w, "fresh");
    const char *extra[] = {"QSNAP_STALE_AFTER=4s", NULL};
    daemon_start(&w, extra);
    char *mt = scrape(&w);
    double first = series(mt, "qsnap_collection_first_seen_timestamp_seconds", "fresh");
    cr_assert_gt(first, 1e9, "%s", mt);
    cr_assert_eq(series(mt, "qsnap_backup_stale", "fresh"), 0.0, "inside the grace:\n%s", mt);
    cr_assert_eq(series(mt, "qsnap_backup_last_success_timestamp_seconds", "fresh"), 0.0);
    cr_assert(isnan(series(mt, "qsnap_backup_age_seconds", "fresh")), "%s", mt);
    free(mt);
    double end = qs_monotonic() + 30;
    for (;;) {
        mt = scrape(&w);
        double stale = series(mt, "qsnap_backup_stale", "fresh");
        free(mt);
        if (stale == 1.0)
            break;
        /* Never stale before the grace has passed; stale = 0 was rendered
         * at most 4 s after first sight (allow 3 s for the scrape). */
        cr_assert_leq((double)time(NULL), first + 4 + 3, "still in its grace long after it");
        cr_assert_lt(qs_monotonic(), end, "never became stale");
        usleep(200000);
    }
    cr_assert_geq((double)time(NULL), first + 4, "stale before the grace had passed");
    cJSON *job = backup_job(&w, "fresh");
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
    cJSON_Delete(job);
    mt = scrape(&w);
    cr_assert_eq(series(mt, "qsnap_backup_stale", "fresh"), 0.0, "%s", mt);
    free(mt);
    world_close(&w);
}

/* A restart does not reset the grace of a collection that was backed up:
 * first sight is then its oldest backup. The injectable clock jumps ahead. */
Test(series, restart_keeps_first_sight_from_the_oldest_backup)
{
    struct world w;
    world_open(&w);
    make_collection(&w, "kept");
    daemon_start(&w, NULL);
    cJSON *job = backup_job(&w, "kept");
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
    cJSON_Delete(job);
    daemon_stop(&w);
    struct qs_catalog cat;
    struct qs_error err;
    cr_assert_eq(qs_catalog_load(w.st, "kept", 0, &cat, &err), 0, "%s", err.msg);
    cr_assert_eq(cat.nbackups, 1);
    int64_t created = cat.backups[0].m.created;
    qs_catalog_deinit(&cat);

    /* Two days later a new collection appears; the old one's backup is stale. */
    make_collection(&w, "newcomer");
    char clock[64];
    snprintf(clock, sizeof(clock), "QSNAP_TEST_NOW=%lld", (long long)(qs_clock_now() + 2 * 86400));
    const char *extra[] = {clock, "QSNAP_STALE_AFTER=26h", NULL};
    daemon_start(&w, extra);
    char *mt = scrape(&w);
    cr_assert_eq(series(mt, "qsnap_collection_first_seen_timestamp_seconds", "kept"),
                 (double)created, "%s", mt);
    cr_assert_eq(series(mt, "qsnap_backup_last_success_timestamp_seconds", "kept"), (double)created,
                 "%s", mt);
    cr_assert_eq(series(mt, "qsnap_backup_stale", "kept"), 1.0, "%s", mt);
    cr_assert_gt(series(mt, "qsnap_collection_first_seen_timestamp_seconds", "newcomer"),
                 (double)created + 86400, "%s", mt);
    cr_assert_eq(series(mt, "qsnap_backup_stale", "newcomer"), 0.0, "%s", mt);
    assert_promtool(mt);
    free(mt);
    world_close(&w);
}

/* Issue: a backup taken while Qdrant's clock ran ahead was trusted, so the
 * collection looked fresh for good and retention never pruned it. */
Test(series, future_dated_backup_neither_hides_staleness_nor_pins_retention)
{
    struct world w;
    world_open(&w);
    make_collection(&w, "ahead");
    standin(&w, "POST", "/__standin/time", "{\"offset_s\":2592000}"); /* 30 days */
    daemon_start(&w, NULL);
    int64_t before = qs_clock_now();
    cJSON *job = backup_job(&w, "ahead");
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
    cJSON_Delete(job);
    int64_t after = qs_clock_now();
    struct qs_catalog cat;
    struct qs_error err;
    cr_assert_eq(qs_catalog_load(w.st, "ahead", 0, &cat, &err), 0, "%s", err.msg);
    cr_assert_eq(cat.nbackups, 1);
    cr_assert_gt(cat.backups[0].m.created, after + 29 * 86400, "the backup is not future-dated");
    char *snap = strdup(cat.backups[0].m.snapshot);
    qs_catalog_deinit(&cat);

    /* Dated by when it was written, with a warning naming it. */
    char *mt = scrape(&w);
    double last = series(mt, "qsnap_backup_last_success_timestamp_seconds", "ahead");
    cr_assert(last >= (double)before && last <= (double)after + 1, "last success %f:\n%s", last,
              mt);
    free(mt);
    char *log = daemon_log(&w);
    cr_assert_not_null(strstr(log, "ahead of this clock"), "%s", log);
    cr_assert_not_null(strstr(log, snap), "%s", log);
    cr_assert_not_null(strstr(log, "\"collection\":\"ahead\""), "%s", log);
    free(log);
    daemon_stop(&w);

    /* Two days later (restart; seeded from the manifest): stale. */
    char clock[64];
    snprintf(clock, sizeof(clock), "QSNAP_TEST_NOW=%lld", (long long)(after + 2 * 86400));
    const char *extra[] = {clock, "QSNAP_STALE_AFTER=26h", NULL};
    daemon_start(&w, extra);
    mt = scrape(&w);
    cr_assert_eq(series(mt, "qsnap_backup_stale", "ahead"), 1.0, "%s", mt);
    cr_assert_geq(series(mt, "qsnap_backup_age_seconds", "ahead"), 2 * 86400 - 60, "%s", mt);
    free(mt);
    log = daemon_log(&w);
    cr_assert_not_null(strstr(log, "ahead of this clock"), "%s", log);
    free(log);
    daemon_stop(&w);

    /* Eight days later retention (7 d) prunes it like any other backup:
     * keep_min protects it while it is the only one, not once a newer
     * (genuine) backup exists. */
    char clock8[64];
    snprintf(clock8, sizeof(clock8), "QSNAP_TEST_NOW=%lld", (long long)(after + 8 * 86400));
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "prune", NULL};
    char *env[] = {
        w.dest, clock8, "QSNAP_RETENTION=7d", "QSNAP_KEEP_MIN=1", "QSNAP_LOG_FORMAT=json", NULL};
    char *out = NULL;
    cr_assert_eq(qs_test_run(argv, env, &out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "deleted: 0 backups"), "%s", out);
    free(out);
    standin(&w, "POST", "/__standin/time", "{\"offset_s\":0}");
    char *bargv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "backup", "-c", "ahead", NULL};
    char *benv[] = {w.dest, w.qurl, "QSNAP_LOG_FORMAT=json", NULL};
    cr_assert_eq(qs_test_run(bargv, benv, &out), 0, "%s", out);
    free(out);
    cr_assert_eq(qs_test_run(argv, env, &out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "deleted: 1 backups"), "%s", out);
    char want[400];
    snprintf(want, sizeof(want), "delete-manifest ahead/%s.json (written ", snap);
    cr_assert_not_null(strstr(out, want), "%s", out);
    free(out);
    cr_assert_eq(qs_catalog_load(w.st, "ahead", 0, &cat, &err), 0, "%s", err.msg);
    cr_assert_eq(cat.nbackups, 1);
    cr_assert_str_neq(cat.backups[0].m.snapshot, snap);
    qs_catalog_deinit(&cat);
    free(snap);
    world_close(&w);
}
