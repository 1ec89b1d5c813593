/* Restore end to end: `qsnap backup` of stand-in collections to file:// or
 * radosgw, then `qsnap restore` and `POST /v1/restore` back into the Qdrant
 * stand-in, which reports the SHA-256 of what it received and the points it
 * holds. Failure cases (incompatible collection, Qdrant stalling mid-upload,
 * tampered object, missing manifest), request validation, auth, 409, job
 * polling, metrics, and restore drills. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qsnap/catalog.h"
#include "qsnap/error.h"
#include "qsnap/manifest.h"
#include "qsnap/qdrant.h"
#include "qsnap/restore.h"
#include "qsnap/storage.h"
#include "qsnap/util.h"
#include "support.h"

#define TOKEN "restore-test-admin-token-0123456789"
#define AUTH "Authorization: Bearer " TOKEN

/* Every variable qsnap reads, unset first ("K=" unsets K). */
#define CLEAN_ENV                                                                                  \
    "QSNAP_QDRANT_URL=", "QSNAP_QDRANT_API_KEY=", "QSNAP_QDRANT_API_KEY_FILE=",                    \
        "QSNAP_DESTINATION=", "QSNAP_S3_ENDPOINT=", "QSNAP_S3_REGION=", "QSNAP_S3_ACCESS_KEY_ID=", \
        "QSNAP_S3_ACCESS_KEY_ID_FILE=", "QSNAP_S3_SECRET_ACCESS_KEY=",                             \
        "QSNAP_S3_SECRET_ACCESS_KEY_FILE=", "QSNAP_S3_URI_STYLE=", "QSNAP_S3_CA_FILE=",            \
        "QSNAP_S3_PART_SIZE=", "QSNAP_JITTER=", "QSNAP_COLLECTIONS=", "QSNAP_MODE=",               \
        "QSNAP_RETENTION=", "QSNAP_KEEP_MIN=", "QSNAP_MAX_BANDWIDTH=", "QSNAP_ADMIN_TOKEN_FILE=",  \
        "QSNAP_STALE_AFTER=", "QSNAP_HEARTBEAT_URL=", "QSNAP_LOG_LEVEL=", "QSNAP_LOG_FORMAT=json", \
        "QSNAP_SCHEDULE=off", "QSNAP_LOCAL_KEEP=1"

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(restore, .init = setup, .fini = teardown, .timeout = 0);

/* ---- the destination -------------------------------------------------------- */

static void world_open(struct qs_test_world *w, int s3, const char *tag)
{
    qs_test_world_open(w, s3, "restore", tag);
}

static void world_close(struct qs_test_world *w)
{
    qs_test_world_close(w);
}

/* The environment for qsnap: clean slate, the world, then extra (NULL-
 * terminated, may be NULL). Valid until the next call. */
static char **world_env(struct qs_test_world *w, const char *const *extra)
{
    static char *const clean[] = {CLEAN_ENV, NULL};
    return qs_test_world_env(w, clean, extra);
}

static int qsnap(struct qs_test_world *w, const char *const *extra, char **out, const char *a1,
                 const char *a2, const char *a3, const char *a4, const char *a5, const char *a6,
                 const char *a7)
{
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"),
                    (char *)a1,
                    (char *)a2,
                    (char *)a3,
                    (char *)a4,
                    (char *)a5,
                    (char *)a6,
                    (char *)a7,
                    NULL};
    return qs_test_run(argv, world_env(w, extra), out);
}

/* The newest manifest of coll at the destination (caller deinits). */
static void latest_manifest(struct qs_test_world *w, const char *coll, struct qs_manifest *m)
{
    struct qs_catalog cat;
    struct qs_error err;
    cr_assert_eq(qs_catalog_load(w->st, coll, 0, &cat, &err), 0, "%s", err.msg);
    const struct qs_catalog_backup *b = qs_catalog_find(&cat, coll, NULL);
    cr_assert_not_null(b, "no backup of %s", coll);
    *m = b->m;
    memset((void *)&b->m, 0, sizeof(b->m));
    qs_catalog_deinit(&cat);
}

/* ---- the stand-in ----------------------------------------------------------- */

static void standin_post(struct qs_test_world *w, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", w->qd.url, path);
    cJSON_Delete(qs_test_http_json("POST", url, body, 200));
}

static void make_collection(struct qs_test_world *w, const char *name, int points, int dim)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"points\":%d,\"dim\":%d}", name, points, dim);
    standin_post(w, "/__standin/collections", body);
}

static cJSON *standin_state(struct qs_test_world *w)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/state", w->qd.url);
    return qs_test_http_json("GET", url, NULL, 200);
}

/* A collection in the stand-in's state (borrowed from st) or NULL. */
static const cJSON *state_coll(const cJSON *st, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(st, "collections"),
                                            name);
}

/* The last upload the stand-in received for coll (borrowed) or NULL. */
static const cJSON *last_upload(const cJSON *st, const char *coll)
{
    const cJSON *e, *found = NULL;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(st, "uploads"))
    {
        const char *c = qs_test_jstr(e, "collection");
        if (c != NULL && strcmp(c, coll) == 0)
            found = e;
    }
    return found;
}

/* Asserts that the stand-in received exactly the snapshot of m for target,
 * with the manifest's checksum, and now holds its points. */
static void assert_restored(struct qs_test_world *w, const char *target,
                            const struct qs_manifest *m)
{
    cJSON *st = standin_state(w);
    const cJSON *up = last_upload(st, target);
    cr_assert_not_null(up, "no upload to %s", target);
    cr_assert_str_eq(qs_test_jstr(up, "sha256"), m->sha256,
                     "uploaded bytes differ from the backup");
    cr_assert_str_eq(qs_test_jstr(up, "checksum_param"), m->sha256);
    cr_assert_str_eq(qs_test_jstr(up, "priority"), "snapshot");
    cr_assert_eq(qs_test_jnum(up, "size"), (double)m->size);
    cr_assert_eq(qs_test_jnum(up, "status"), 200);
    const cJSON *c = state_coll(st, target);
    cr_assert_not_null(c, "collection %s does not exist after the restore", target);
    cr_assert_eq(qs_test_jnum(c, "points_count"), (double)m->points_count);
    cr_assert_str_eq(qs_test_jstr(c, "restored_from_sha256"), m->sha256);
    cJSON_Delete(st);
}

/* Restores so far of coll (0 when it was never restored). */
static double restores_of(struct qs_test_world *w, const char *coll)
{
    cJSON *st = standin_state(w);
    const cJSON *c = state_coll(st, coll);
    cr_assert_not_null(c, "collection %s is gone", coll);
    double n = qs_test_jnum(c, "restores");
    cJSON_Delete(st);
    return n;
}

static void backup(struct qs_test_world *w, const char *coll, const char *compression)
{
    char comp[64];
    snprintf(comp, sizeof(comp), "QSNAP_COMPRESSION=%s", compression);
    const char *extra[] = {comp, NULL};
    char *out = NULL;
    int rc = qsnap(w, extra, &out, "backup", "-c", coll, NULL, NULL, NULL, NULL);
    cr_assert_eq(rc, 0, "backup of %s failed (%d):\n%s", coll, rc, out);
    free(out);
}

/* ---- CLI -------------------------------------------------------------------- */

static void cli_roundtrip(int s3)
{
    struct qs_test_world w;
    world_open(&w, s3, "cli");
    make_collection(&w, "c", 3000, 64);
    backup(&w, "c", "none");
    struct qs_manifest m;
    latest_manifest(&w, "c", &m);
    cr_assert_eq(m.points_count, 3000);

    /* to a new name */
    char *out = NULL;
    int rc = qsnap(&w, NULL, &out, "restore", "-c", "c", "--to", "c-copy", NULL, NULL);
    cr_assert_eq(rc, 0, "restore failed (%d):\n%s", rc, out);
    char want[600];
    snprintf(want, sizeof(want), "restored %s into collection c-copy", m.snapshot);
    cr_assert_not_null(strstr(out, want), "%s", out);
    free(out);
    assert_restored(&w, "c-copy", &m);
    cr_assert_eq(restores_of(&w, "c"), 0, "the original was touched");

    /* over the original, by name */
    rc = qsnap(&w, NULL, &out, "restore", "-c", "c", "--snapshot", m.snapshot, NULL, NULL);
    cr_assert_eq(rc, 0, "restore failed (%d):\n%s", rc, out);
    free(out);
    assert_restored(&w, "c", &m);
    cr_assert_eq(restores_of(&w, "c"), 1);
    qs_manifest_deinit(&m);
    world_close(&w);
}

Test(restore, cli_file_to_new_name_and_over_original)
{
    cli_roundtrip(0);
}

Test(restore, cli_s3_to_new_name_and_over_original)
{
    cli_roundtrip(1);
}

Test(restore, gzip_backup_restores)
{
    struct qs_test_world w;
    world_open(&w, 1, "gzip");
    make_collection(&w, "zipped", 2000, 128);
    backup(&w, "zipped", "gzip:1");
    struct qs_manifest m;
    latest_manifest(&w, "zipped", &m);
    cr_assert_gt(m.compression_level, 0, "backup was not compressed");
    cr_assert_neq(m.stored_size, m.size);
    char *out = NULL;
    int rc = qsnap(&w, NULL, &out, "restore", "-c", "zipped", "--to", "unzipped", NULL, NULL);
    cr_assert_eq(rc, 0, "restore failed (%d):\n%s", rc, out);
    free(out);
    assert_restored(&w, "unzipped", &m);
    qs_manifest_deinit(&m);
    world_close(&w);
}

Test(restore, cli_exit_codes)
{
    struct qs_test_world w;
    world_open(&w, 0, "exit");
    make_collection(&w, "c", 500, 16);
    backup(&w, "c", "none");
    struct qs_manifest m;
    latest_manifest(&w, "c", &m);
    char *out = NULL;
    /* 2: bad usage */
    cr_assert_eq(qsnap(&w, NULL, &out, "restore", NULL, NULL, NULL, NULL, NULL, NULL), 2, "%s",
                 out);
    cr_assert_not_null(strstr(out, "-c NAME is required"), "%s", out);
    free(out);
    cr_assert_eq(qsnap(&w, NULL, &out, "restore", "-c", "c", "--to", "a:b", NULL, NULL), 2, "%s",
                 out);
    cr_assert_not_null(strstr(out, "--to"), "%s", out);
    free(out);
    cr_assert_eq(qsnap(&w, NULL, &out, "restore", "-c", "c", "--to", "c__qsnap_drill", NULL, NULL),
                 2, "drill scratch names are reserved: %s", out);
    free(out);
    cr_assert_eq(qsnap(&w, NULL, &out, "restore", "-c", "c", "--bogus", "x", NULL, NULL), 2, "%s",
                 out);
    free(out);
    cr_assert_eq(qsnap(&w, NULL, &out, "restore", "-c", NULL, NULL, NULL, NULL, NULL), 2, "%s",
                 out);
    free(out);
    /* 2: invalid configuration */
    const char *bad[] = {"QSNAP_DESTINATION=ftp://nowhere", NULL};
    cr_assert_eq(qsnap(&w, bad, &out, "restore", "-c", "c", NULL, NULL, NULL, NULL), 2, "%s", out);
    free(out);
    /* 1: no such backup / no manifest */
    cr_assert_eq(qsnap(&w, NULL, &out, "restore", "-c", "nothing", NULL, NULL, NULL, NULL), 1, "%s",
                 out);
    cr_assert_not_null(strstr(out, "no backup of collection 'nothing'"), "%s", out);
    free(out);
    cr_assert_eq(qsnap(&w, NULL, &out, "restore", "-c", "c", "--snapshot",
                       "c-1-2020-01-01-00-00-00.snapshot", NULL, NULL),
                 1, "%s", out);
    cr_assert_not_null(strstr(out, "not found (no manifest)"), "%s", out);
    free(out);
    /* 1: Qdrant refuses the snapshot; the collection is untouched */
    standin_post(&w, "/__standin/faults", "{\"fail_uploads\":1,\"upload_status\":400}");
    cr_assert_eq(qsnap(&w, NULL, &out, "restore", "-c", "c", NULL, NULL, NULL, NULL), 1, "%s", out);
    cr_assert_not_null(strstr(out, "not compatible"), "%s", out);
    free(out);
    cr_assert_eq(restores_of(&w, "c"), 0);
    /* 0 */
    cr_assert_eq(qsnap(&w, NULL, &out, "restore", "-c", "c", "--snapshot", "latest", NULL, NULL), 0,
                 "%s", out);
    free(out);
    assert_restored(&w, "c", &m);
    qs_manifest_deinit(&m);
    world_close(&w);
}

/* ---- the daemon ------------------------------------------------------------- */

static void daemon_start(struct qs_test_daemon *d, struct qs_test_world *w,
                         const char *const *extra)
{
    int rc = qs_test_daemon_start(d, world_env(w, extra));
    if (rc != 0) {
        char *log = qs_test_read_file(d->log, NULL);
        qs_test_daemon_stop(d, 5);
        cr_assert_fail("daemon did not start; log:\n%s", log ? log : "(none)");
    }
}

static void daemon_stop(struct qs_test_daemon *d)
{
    int st = qs_test_daemon_stop(d, 30);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "daemon did not exit 0 on SIGTERM (status %d)", st);
}

/* POST /v1/restore; returns the status, the body in *body (owned). */
static long post_restore(struct qs_test_daemon *d, const char *auth, const char *json, char **body)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/restore", d->url);
    const char *h[] = {"Content-Type: application/json", auth, NULL};
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("POST", url, h, json, strlen(json), &r), 0);
    long st = r.status;
    *body = r.body;
    r.body = NULL;
    qs_test_resp_free(&r);
    return st;
}

/* POST /v1/restore that must answer 202; returns the job id (owned). */
static char *start_restore(struct qs_test_daemon *d, const char *json)
{
    char *body = NULL;
    long st = post_restore(d, AUTH, json, &body);
    cr_assert_eq(st, 202, "POST /v1/restore %s: %ld %s", json, st, body);
    cJSON *j = cJSON_Parse(body);
    const char *id = qs_test_jstr(j, "job");
    cr_assert_not_null(id, "%s", body);
    char *r = strdup(id);
    cJSON_Delete(j);
    free(body);
    return r;
}

static cJSON *wait_job(struct qs_test_daemon *d, const char *id, double timeout_s)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/jobs/%s", d->url, id);
    double end = qs_monotonic() + timeout_s;
    for (;;) {
        cJSON *j = qs_test_http_json("GET", url, NULL, 200);
        const char *st = qs_test_jstr(j, "state");
        cr_assert_not_null(st);
        if (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0 ||
            strcmp(st, "cancelled") == 0)
            return j;
        cJSON_Delete(j);
        cr_assert_lt(qs_monotonic(), end, "job %s still running after %.0f s", id, timeout_s);
        usleep(100000);
    }
}

/* Runs one restore job to its end; asserts its final state and, for a
 * failure, that `error` contains want_err. */
static void restore_job(struct qs_test_daemon *d, const char *json, const char *want_state,
                        const char *want_err)
{
    char *id = start_restore(d, json);
    cJSON *j = wait_job(d, id, 120);
    char *txt = cJSON_PrintUnformatted(j);
    cr_assert_str_eq(qs_test_jstr(j, "state"), want_state, "%s", txt);
    cr_assert_str_eq(qs_test_jstr(j, "kind"), "restore", "%s", txt);
    if (want_err != NULL) {
        const char *e = qs_test_jstr(j, "error");
        cr_assert_not_null(e, "failed job without error: %s", txt);
        cr_assert_not_null(strstr(e, want_err), "want \"%s\" in the error: %s", want_err, txt);
    } else {
        cr_assert_null(qs_test_jstr(j, "error"), "%s", txt);
    }
    free(txt);
    cJSON_Delete(j);
    free(id);
}

/* Value of one series ("name{labels}" exactly as rendered) or -1. */
static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static void expect_400(struct qs_test_daemon *d, const char *json, const char *want)
{
    char *body = NULL;
    long st = post_restore(d, AUTH, json, &body);
    cr_assert_eq(st, 400, "%s -> %ld %s", json, st, body);
    cr_assert_not_null(strstr(body, want), "%s -> %s (want \"%s\")", json, body, want);
    cr_assert_not_null(strstr(body, "\"error\""), "%s", body);
    free(body);
}

Test(restore, http_validation_auth_and_lookup)
{
    struct qs_test_world w;
    world_open(&w, 0, "http");
    make_collection(&w, "c", 500, 16);
    backup(&w, "c", "none");
    const char *extra[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, NULL};
    struct qs_test_daemon d;
    daemon_start(&d, &w, extra);
    char *body = NULL;
    /* auth */
    cr_assert_eq(post_restore(&d, "X-Nothing: 1", "{\"collection\":\"c\"}", &body), 401, "%s",
                 body);
    free(body);
    cr_assert_eq(post_restore(&d, "Authorization: Bearer restore-test-admin-token-0123456780",
                              "{\"collection\":\"c\"}", &body),
                 401, "%s", body);
    free(body);
    /* malformed bodies and types: 400 naming the field */
    expect_400(&d, "{\"collection\":", "body");
    expect_400(&d, "[1,2]", "body");
    expect_400(&d, "{}", "'collection'");
    expect_400(&d, "{\"collection\":5}", "'collection'");
    expect_400(&d, "{\"collection\":\"c\",\"snapshot\":1}", "'snapshot'");
    expect_400(&d, "{\"collection\":\"c\",\"target\":true}", "'target'");
    expect_400(&d, "{\"collection\":\"c\",\"target\":\"a:b\"}", "'target'");
    expect_400(&d, "{\"collection\":\"c\",\"target\":\"../x\"}", "'target'");
    expect_400(&d, "{\"collection\":\"c\",\"target\":\"\"}", "'target'");
    expect_400(&d, "{\"collection\":\"c\",\"target\":\"c__qsnap_drill\"}", "'target'");
    char longname[300];
    memset(longname, 'x', 256);
    longname[256] = '\0';
    char json[400];
    snprintf(json, sizeof(json), "{\"collection\":\"c\",\"target\":\"%s\"}", longname);
    expect_400(&d, json, "'target'");
    expect_400(&d, "{\"collection\":\"a/b\"}", "'collection'");
    expect_400(&d, "{\"collection\":\"c\",\"snapshot\":\"../etc\"}", "'snapshot'");
    /* 213 bytes, the longest name Qdrant can snapshot, is accepted as far as
     * the lookup; 214 can never have a backup */
    longname[214] = '\0';
    snprintf(json, sizeof(json), "{\"collection\":\"%s\"}", longname);
    expect_400(&d, json, "'collection'");
    longname[213] = '\0';
    snprintf(json, sizeof(json), "{\"collection\":\"%s\"}", longname);
    cr_assert_eq(post_restore(&d, AUTH, json, &body), 404, "%s", body);
    free(body);
    /* unknown collection or snapshot: 404 */
    cr_assert_eq(post_restore(&d, AUTH, "{\"collection\":\"nope\"}", &body), 404, "%s", body);
    cr_assert_not_null(strstr(body, "nope"), "%s", body);
    free(body);
    cr_assert_eq(post_restore(&d, AUTH,
                              "{\"collection\":\"c\",\"snapshot\":\"c-1-2020-01-01-00-00-00."
                              "snapshot\"}",
                              &body),
                 404, "%s", body);
    free(body);
    /* nothing was sent to Qdrant */
    cJSON *st = standin_state(&w);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "uploads")), 0);
    cJSON_Delete(st);
    /* wrong method, unknown job */
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/restore", d.url);
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("GET", url, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 405);
    qs_test_resp_free(&r);
    snprintf(url, sizeof(url), "%s/v1/jobs/restore-0-0-nope", d.url);
    cr_assert_eq(qs_test_http("GET", url, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 404);
    qs_test_resp_free(&r);
    daemon_stop(&d);

    /* no token configured: 403 */
    daemon_start(&d, &w, NULL);
    cr_assert_eq(post_restore(&d, AUTH, "{\"collection\":\"c\"}", &body), 403, "%s", body);
    free(body);
    daemon_stop(&d);
    world_close(&w);
}

Test(restore, http_restore_success_failures_and_metrics)
{
    struct qs_test_world w;
    world_open(&w, 0, "jobs");
    make_collection(&w, "c", 1500, 32);
    backup(&w, "c", "none");
    struct qs_manifest m;
    latest_manifest(&w, "c", &m);
    const char *extra[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, NULL};
    struct qs_test_daemon d;
    daemon_start(&d, &w, extra);

    /* success to a new name */
    restore_job(&d, "{\"collection\":\"c\",\"snapshot\":\"latest\",\"target\":\"c-new\"}",
                "succeeded", NULL);
    assert_restored(&w, "c-new", &m);
    char *mt = qs_test_daemon_metrics(&d);
    cr_assert_eq(metric(mt, "qsnap_restore_total{result=\"success\"}"), 1, "%s", mt);
    cr_assert_gt(metric(mt, "qsnap_restore_last_success_timestamp_seconds"), 1e9, "%s", mt);
    free(mt);

    /* Qdrant answers 400 (incompatible collection): failed job, original intact */
    standin_post(&w, "/__standin/faults", "{\"fail_uploads\":1,\"upload_status\":400}");
    restore_job(&d, "{\"collection\":\"c\"}", "failed", "not compatible");
    cr_assert_eq(restores_of(&w, "c"), 0);

    /* tampered object: one byte changed, same size */
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", w.dir, m.object);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    unsigned char b;
    off_t off = (off_t)(m.size / 2);
    cr_assert_eq(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    cr_assert_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
    restore_job(&d, "{\"collection\":\"c\"}", "failed", "does not match its manifest");
    cr_assert_eq(restores_of(&w, "c"), 0, "a tampered snapshot reached the collection");
    cJSON *st = standin_state(&w);
    const cJSON *up = last_upload(st, "c");
    cr_assert(up == NULL || qs_test_jnum(up, "status") != 200, "Qdrant accepted a tampered body");
    cJSON_Delete(st);

    mt = qs_test_daemon_metrics(&d);
    cr_assert_eq(metric(mt, "qsnap_restore_total{result=\"failure\"}"), 2, "%s", mt);
    cr_assert_eq(metric(mt, "qsnap_restore_total{result=\"success\"}"), 1, "%s", mt);
    free(mt);

    /* the manifest is missing: refused before any job */
    char mpath[1300];
    snprintf(mpath, sizeof(mpath), "%s/c/%s.json", w.dir, m.snapshot);
    cr_assert_eq(unlink(mpath), 0, "%s: %s", mpath, strerror(errno));
    char json[600], *body = NULL;
    snprintf(json, sizeof(json), "{\"collection\":\"c\",\"snapshot\":\"%s\"}", m.snapshot);
    cr_assert_eq(post_restore(&d, AUTH, json, &body), 404, "%s", body);
    free(body);
    cr_assert_eq(post_restore(&d, AUTH, "{\"collection\":\"c\"}", &body), 404, "%s", body);
    cr_assert_not_null(strstr(body, "no backup"), "%s", body);
    free(body);
    cr_assert_eq(restores_of(&w, "c"), 0);
    daemon_stop(&d);
    qs_manifest_deinit(&m);
    world_close(&w);
}

Test(restore, qdrant_stalls_mid_upload_and_409_while_running)
{
    struct qs_test_world w;
    world_open(&w, 0, "stall");
    standin_post(&w, "/__standin/collections", "{\"name\":\"big\",\"size_mib\":24,\"dim\":256}");
    backup(&w, "big", "none");
    const char *extra[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, "QSNAP_TEST_QDRANT_TIMEOUT_MS=2000", NULL};
    struct qs_test_daemon d;
    daemon_start(&d, &w, extra);
    /* The stand-in stops answering for 8 s from now. */
    standin_post(&w, "/__standin/faults", "{\"stall_s\":8}");
    char *id = start_restore(&d, "{\"collection\":\"big\"}");
    /* Only one job at a time: restore and backup share the lock. */
    char *body = NULL;
    cr_assert_eq(post_restore(&d, AUTH, "{\"collection\":\"big\",\"target\":\"other\"}", &body),
                 409, "%s", body);
    cr_assert_not_null(strstr(body, id), "409 should name the running job: %s", body);
    free(body);
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/backup", d.url);
    const char *h[] = {AUTH, NULL};
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("POST", url, h, "", 0, &r), 0);
    cr_assert_eq(r.status, 409, "%s", r.body);
    qs_test_resp_free(&r);

    double t0 = qs_monotonic();
    cJSON *j = wait_job(&d, id, 60);
    char *txt = cJSON_PrintUnformatted(j);
    cr_assert_str_eq(qs_test_jstr(j, "state"), "failed", "%s", txt);
    cr_assert_not_null(qs_test_jstr(j, "error"), "%s", txt);
    /* the upload's reason, not the reader's "sink failed" */
    cr_assert_not_null(strstr(qs_test_jstr(j, "error"), "timed out"), "%s", txt);
    cr_assert_null(strstr(qs_test_jstr(j, "error"), "sink failed"), "%s", txt);
    cr_assert_lt(qs_monotonic() - t0, 8, "the timeout did not cut the stalled upload: %s", txt);
    free(txt);
    cJSON_Delete(j);
    free(id);
    /* after the stall, nothing reached the real collection */
    usleep(8 * 1000 * 1000);
    cr_assert_eq(restores_of(&w, "big"), 0);
    daemon_stop(&d);
    world_close(&w);
}

/* ---- drills ----------------------------------------------------------------- */

/* Waits for the daemon's log to contain needle. */
static int wait_log(struct qs_test_daemon *d, const char *needle, double timeout_s)
{
    double end = qs_monotonic() + timeout_s;
    while (qs_monotonic() < end) {
        char *log = qs_test_read_file(d->log, NULL);
        int found = log != NULL && strstr(log, needle) != NULL;
        free(log);
        if (found)
            return 0;
        usleep(100000);
    }
    return -1;
}

/* QSNAP_TEST_NOW 3 s before the next full minute. */
static void drill_clock(char *buf, size_t cap)
{
    int64_t now = qs_clock_now();
    int64_t next = (now / 60 + 1) * 60;
    if (next - now < 10)
        next += 60;
    snprintf(buf, cap, "QSNAP_TEST_NOW=%lld", (long long)(next - 3));
}

/* Rewrites the newest manifest of coll with points_count + 1. */
static void corrupt_points(struct qs_test_world *w, const char *coll)
{
    struct qs_manifest m;
    latest_manifest(w, coll, &m);
    m.points_count += 1;
    struct qs_buf js;
    qs_buf_init(&js);
    cr_assert_eq(qs_manifest_to_json(&m, &js), 0);
    char key[QS_MANIFEST_KEY_MAX];
    cr_assert_eq(qs_manifest_key(coll, m.snapshot, key, sizeof(key)), 0);
    struct qs_error err;
    /* puts never replace: remove the old manifest first */
    cr_assert_eq(qs_storage_delete(w->st, key, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_storage_put_buffer(w->st, key, js.data, js.len, NULL, NULL, &err), 0, "%s",
                 err.msg);
    qs_buf_free(&js);
    qs_manifest_deinit(&m);
}

/* The drill result stored beside the newest backup of coll (caller deletes),
 * or NULL when there is none. */
static cJSON *drill_result(struct qs_test_world *w, const char *coll)
{
    struct qs_manifest m;
    latest_manifest(w, coll, &m);
    char key[QS_MANIFEST_KEY_MAX];
    cr_assert_eq(qs_manifest_drill_key(coll, m.snapshot, key, sizeof(key)), 0);
    qs_manifest_deinit(&m);
    struct qs_buf b;
    qs_buf_init(&b);
    struct qs_error err;
    int rc = qs_storage_get_buffer(w->st, key, 65536, &b, NULL, &err);
    cr_assert(rc == 0 || rc == QS_ENOTFOUND, "%s: %s", key, err.msg);
    cJSON *j = rc == 0 ? cJSON_Parse(b.data) : NULL;
    cr_assert(rc != 0 || j != NULL, "%s is not JSON: %s", key, b.data);
    qs_buf_free(&b);
    return j;
}

/* The "drill" object of the newest backup of coll in a {"backups":[...]}
 * listing (borrowed from list; cJSON null when never drilled). */
static const cJSON *listed_drill(const cJSON *list, const char *coll)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(list, "backups"))
    {
        if (strcmp(qs_test_jstr(e, "collection"), coll) == 0) {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "drill");
            cr_assert_not_null(d, "backup of %s listed without \"drill\"", coll);
            return d;
        }
    }
    cr_assert_fail("no backup of %s listed", coll);
    return NULL;
}

static cJSON *get_backups(struct qs_test_daemon *d)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/backups", d->url);
    return qs_test_http_json("GET", url, NULL, 200);
}

static void wait_ready(struct qs_test_daemon *d)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/readyz", d->url);
    cr_assert_eq(qs_test_wait_http(url, 30), 0, "daemon never became ready");
}

Test(restore, drill_restores_into_scratch_and_cleans_up)
{
    struct qs_test_world w;
    world_open(&w, 0, "drill");
    make_collection(&w, "good", 800, 16);
    make_collection(&w, "bad", 600, 16);
    backup(&w, "good", "none");
    backup(&w, "bad", "none");
    corrupt_points(&w, "bad"); /* the drill's points_count check must fail */
    char clock[64];
    drill_clock(clock, sizeof(clock));
    const char *extra[] = {"QSNAP_DRILL_SCHEDULE=* * * * *", clock, NULL};
    struct qs_test_daemon d;
    daemon_start(&d, &w, extra);
    int rc = wait_log(&d, "drill job failed", 30);
    char *log = qs_test_read_file(d.log, NULL);
    cr_assert_eq(rc, 0, "no drill finished:\n%s", log);
    cr_assert_not_null(strstr(log, "1 ok, 1 failed"), "%s", log);
    free(log);

    cJSON *st = standin_state(&w);
    /* both scratch collections were created (uploads accepted) and deleted */
    const cJSON *up = last_upload(st, "good__qsnap_drill");
    cr_assert_not_null(up, "no drill upload for good");
    cr_assert_eq(qs_test_jnum(up, "status"), 200);
    up = last_upload(st, "bad__qsnap_drill");
    cr_assert_not_null(up, "no drill upload for bad");
    cr_assert_eq(qs_test_jnum(up, "status"), 200);
    cr_assert_null(state_coll(st, "good__qsnap_drill"), "scratch collection left behind");
    cr_assert_null(state_coll(st, "bad__qsnap_drill"), "failed drill left its scratch collection");
    /* the real collections were not touched */
    cr_assert_eq(qs_test_jnum(state_coll(st, "good"), "restores"), 0);
    cr_assert_eq(qs_test_jnum(state_coll(st, "bad"), "restores"), 0);
    cJSON_Delete(st);

    /* Each drill's result is stored beside the backup it tested. */
    cJSON *good = drill_result(&w, "good"), *bad = drill_result(&w, "bad");
    cr_assert_not_null(good, "no drill result for good");
    cr_assert_not_null(bad, "no drill result for bad");
    cr_assert_str_eq(qs_test_jstr(good, "result"), "success");
    cr_assert_eq(qs_test_jnum(good, "points_expected"), 800);
    cr_assert_eq(qs_test_jnum(good, "points_restored"), 800);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(good, "error")));
    cr_assert_str_eq(qs_test_jstr(bad, "result"), "failure");
    cr_assert_eq(qs_test_jnum(bad, "points_expected"), 601);
    cr_assert_eq(qs_test_jnum(bad, "points_restored"), 600);
    cr_assert_not_null(strstr(qs_test_jstr(bad, "error"), "601"), "%s", qs_test_jstr(bad, "error"));
    int64_t good_finished = 0;
    cr_assert_eq(qs_time_parse(qs_test_jstr(good, "finished"), &good_finished), 0);

    char *mt = qs_test_daemon_metrics(&d);
    double gm = metric(mt, "qsnap_restore_drill_last_success_timestamp_seconds{collection="
                           "\"good\"}");
    cr_assert(gm >= (double)good_finished - 2 && gm <= (double)good_finished + 2,
              "drill metric %f, result finished %lld", gm, (long long)good_finished);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_last_success_timestamp_seconds{collection="
                            "\"bad\"}"),
                 0, "a failed drill set the drill metric:\n%s", mt);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_total{result=\"success\"}"), 1, "%s", mt);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_total{result=\"failure\"}"), 1, "%s", mt);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_interval_seconds"), 60, "%s", mt);
    /* drills are not restores */
    cr_assert_eq(metric(mt, "qsnap_restore_total{result=\"success\"}"), 0, "%s", mt);
    char *pout = NULL;
    cr_assert_eq(qs_test_promtool_check(mt, &pout), 0, "promtool: %s", pout);
    free(pout);
    free(mt);

    /* GET /v1/backups shows each backup's drill result. */
    cJSON *list = get_backups(&d);
    const cJSON *ld = listed_drill(list, "good");
    cr_assert_str_eq(qs_test_jstr(ld, "result"), "success");
    cr_assert_str_eq(qs_test_jstr(ld, "finished"), qs_test_jstr(good, "finished"));
    cr_assert_eq(qs_test_jnum(ld, "points_restored"), 800);
    ld = listed_drill(list, "bad");
    cr_assert_str_eq(qs_test_jstr(ld, "result"), "failure");
    cr_assert_not_null(strstr(qs_test_jstr(ld, "error"), "601"));
    cJSON_Delete(list);
    daemon_stop(&d);

    /* After a restart (no drills scheduled) the results are seeded. */
    daemon_start(&d, &w, NULL);
    wait_ready(&d);
    mt = qs_test_daemon_metrics(&d);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_last_success_timestamp_seconds{collection="
                            "\"good\"}"),
                 (double)good_finished, "%s", mt);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_last_success_timestamp_seconds{collection="
                            "\"bad\"}"),
                 0, "%s", mt);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_total{result=\"failure\"}"), 0, "%s", mt);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_interval_seconds"), 0, "%s", mt);
    free(mt);
    list = get_backups(&d);
    cr_assert_str_eq(qs_test_jstr(listed_drill(list, "good"), "result"), "success");
    cr_assert_str_eq(qs_test_jstr(listed_drill(list, "bad"), "result"), "failure");
    cJSON_Delete(list);
    daemon_stop(&d);

    /* qsnap list shows them too. */
    char *out = NULL;
    cr_assert_eq(qsnap(&w, NULL, &out, "list", "--json", NULL, NULL, NULL, NULL, NULL), 0, "%s",
                 out);
    list = cJSON_Parse(out);
    cr_assert_not_null(list, "%s", out);
    cr_assert_str_eq(qs_test_jstr(listed_drill(list, "good"), "finished"),
                     qs_test_jstr(good, "finished"));
    cr_assert_str_eq(qs_test_jstr(listed_drill(list, "bad"), "result"), "failure");
    cJSON_Delete(list);
    free(out);
    cr_assert_eq(qsnap(&w, NULL, &out, "list", NULL, NULL, NULL, NULL, NULL, NULL), 0, "%s", out);
    char want[64];
    snprintf(want, sizeof(want), "ok %s", qs_test_jstr(good, "finished"));
    cr_assert_not_null(strstr(out, "DRILL"), "%s", out);
    cr_assert_not_null(strstr(out, want), "%s", out);
    cr_assert_not_null(strstr(out, "FAILED "), "%s", out);
    free(out);
    cJSON_Delete(good);
    cJSON_Delete(bad);
    world_close(&w);
}

Test(restore, failing_drill_leaves_no_scratch_collection)
{
    struct qs_test_world w;
    world_open(&w, 0, "drillfail");
    make_collection(&w, "c", 500, 16);
    backup(&w, "c", "none");
    standin_post(&w, "/__standin/faults", "{\"fail_uploads\":1,\"upload_status\":500}");
    char clock[64];
    drill_clock(clock, sizeof(clock));
    const char *extra[] = {"QSNAP_DRILL_SCHEDULE=* * * * *", clock, NULL};
    struct qs_test_daemon d;
    daemon_start(&d, &w, extra);
    int rc = wait_log(&d, "drill job failed", 30);
    char *log = qs_test_read_file(d.log, NULL);
    cr_assert_eq(rc, 0, "no failed drill:\n%s", log);
    /* The upload failed, so there was no scratch collection to delete:
     * that is no error. */
    cr_assert_null(strstr(log, "could not delete drill scratch collection"), "%s", log);
    free(log);
    cJSON *st = standin_state(&w);
    const cJSON *up = last_upload(st, "c__qsnap_drill");
    cr_assert_not_null(up, "the drill did not try");
    cr_assert_eq(qs_test_jnum(up, "status"), 500);
    cr_assert_null(state_coll(st, "c__qsnap_drill"), "scratch collection left behind");
    cr_assert_eq(qs_test_jnum(state_coll(st, "c"), "restores"), 0);
    cJSON_Delete(st);
    char *mt = qs_test_daemon_metrics(&d);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_last_success_timestamp_seconds{collection=\"c\"}"),
                 0, "%s", mt);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_total{result=\"failure\"}"), 1, "%s", mt);
    cr_assert_eq(metric(mt, "qsnap_restore_drill_total{result=\"success\"}"), 0, "%s", mt);
    free(mt);
    daemon_stop(&d);
    /* The failure is recorded; the restore never got to count points. */
    cJSON *r = drill_result(&w, "c");
    cr_assert_not_null(r, "no drill result");
    cr_assert_str_eq(qs_test_jstr(r, "result"), "failure");
    cr_assert_eq(qs_test_jnum(r, "points_expected"), 500);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(r, "points_restored")));
    cr_assert_not_null(strstr(qs_test_jstr(r, "error"), "500"), "%s", qs_test_jstr(r, "error"));
    cJSON_Delete(r);
    world_close(&w);
}

/* A newer drill of the same backup replaces its result (the result is not a
 * backup object); the catalog reports the latest one. */
Test(restore, newer_drill_replaces_the_result)
{
    struct qs_test_world w;
    world_open(&w, 0, "redrill");
    make_collection(&w, "c", 300, 16);
    backup(&w, "c", "none");
    struct qs_qdrant_opts qo = {.url = w.qd.url};
    struct qs_qdrant *q = NULL;
    struct qs_error err;
    cr_assert_eq(qs_qdrant_new(&qo, &q, &err), 0, "%s", err.msg);
    struct qs_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    struct qs_backup_env env = {.cfg = &cfg, .storage = w.st, .qdrant = q, .progress = NULL};
    struct qs_manifest m;
    latest_manifest(&w, "c", &m);

    struct qs_job_item item = {0};
    cr_assert_eq(qs_restore_drill(&env, "c", m.snapshot, &item, &err), 0, "%s", err.msg);
    cr_assert_str_eq(item.snapshot, m.snapshot);
    free(item.snapshot);
    free(item.object);
    free(item.error);
    cJSON *r = drill_result(&w, "c");
    cr_assert_not_null(r);
    cr_assert_str_eq(qs_test_jstr(r, "result"), "success");
    cr_assert_str_eq(qs_test_jstr(r, "snapshot"), m.snapshot);
    cJSON_Delete(r);

    standin_post(&w, "/__standin/faults", "{\"fail_uploads\":1,\"upload_status\":500}");
    memset(&item, 0, sizeof(item));
    cr_assert_neq(qs_restore_drill(&env, "c", m.snapshot, &item, &err), 0);
    free(item.snapshot);
    free(item.object);
    free(item.error);
    r = drill_result(&w, "c");
    cr_assert_not_null(r);
    cr_assert_str_eq(qs_test_jstr(r, "result"), "failure");
    cJSON_Delete(r);

    struct qs_catalog cat;
    cr_assert_eq(qs_catalog_load(w.st, "c", QS_CATALOG_DRILLS, &cat, &err), 0, "%s", err.msg);
    cr_assert_eq(cat.nbackups, 1);
    cr_assert_eq(cat.backups[0].drill_state, 1);
    cr_assert_eq(cat.backups[0].drill.ok, 0);
    cr_assert_eq(cat.nincomplete, 0, "a drill result counted as an incomplete object");
    qs_catalog_deinit(&cat);
    qs_manifest_deinit(&m);
    qs_qdrant_free(q);
    world_close(&w);
}

/* A newer qsnap wrote a backup in a newer manifest format: "latest" must not
 * quietly restore the older backup this qsnap can read, but refuse and name
 * the manifest and its format version. An older backup named explicitly
 * still restores. */
Test(restore, latest_refuses_a_newer_format_manifest)
{
    struct qs_test_world w;
    world_open(&w, 0, "newer");
    make_collection(&w, "c", 500, 16);
    backup(&w, "c", "none");
    struct qs_manifest m;
    latest_manifest(&w, "c", &m);

    /* A later backup written by a future qsnap (format 3). */
    const char *later = "c-1-2099-01-01-00-00-00.snapshot";
    char key[QS_MANIFEST_KEY_MAX], mkey[QS_MANIFEST_KEY_MAX];
    cr_assert_eq(qs_manifest_object_key("c", later, 0, key, sizeof(key)), 0);
    cr_assert_eq(qs_manifest_key("c", later, mkey, sizeof(mkey)), 0);
    struct qs_manifest f = m;
    f.snapshot = (char *)later;
    f.object = key;
    f.created = m.created + 3600;
    struct qs_buf js;
    qs_buf_init(&js);
    cr_assert_eq(qs_manifest_to_json(&f, &js), 0);
    char *fmt = strstr(js.data, "\"format\": 2");
    cr_assert_not_null(fmt);
    fmt[strlen("\"format\": ")] = '3';
    struct qs_error err;
    cr_assert_eq(qs_storage_put_buffer(w.st, key, "future", 6, NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_storage_put_buffer(w.st, mkey, js.data, js.len, NULL, NULL, &err), 0, "%s",
                 err.msg);
    qs_buf_free(&js);

    char *out = NULL;
    int rc = qsnap(&w, NULL, &out, "restore", "-c", "c", "--to", "c-copy", NULL, NULL);
    cr_assert_neq(rc, 0, "restore of latest succeeded:\n%s", out);
    cr_assert_not_null(strstr(out, mkey), "the manifest is not named:\n%s", out);
    cr_assert_not_null(strstr(out, "version 3 is newer than this qsnap understands"), "%s", out);
    free(out);
    cJSON *st = standin_state(&w);
    cr_assert_null(last_upload(st, "c-copy"), "something was restored");
    cJSON_Delete(st);

    rc = qsnap(&w, NULL, &out, "restore", "-c", "c", "--snapshot", m.snapshot, "--to", "c-copy");
    cr_assert_eq(rc, 0, "restore of the older backup by name failed (%d):\n%s", rc, out);
    free(out);
    assert_restored(&w, "c-copy", &m);
    qs_manifest_deinit(&m);
    world_close(&w);
}
