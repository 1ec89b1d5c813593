/* Collection fidelity and the shards method end to end,
 * with the Qdrant stand-in and both destinations (radosgw and file://):
 *   - a collection with three shards, a keyword and an integer payload
 *     index and two aliases, backed up with each method and restored under
 *     new names: the same points (ids, vectors, payloads), the same indexes,
 *     the aliases re-pointed or (opted out) left alone, points_count checked;
 *     a shards backup writes nothing to Qdrant's snapshot directory;
 *   - a shard stream Qdrant cuts mid-archive fails the run with no manifest
 *     and nothing left at the destination (a single cut is retried);
 *   - a version 1 manifest written by the previous release (a captured
 *     fixture) is listed, restored and pruned;
 *   - a backup of a Qdrant version the target cannot load is refused naming
 *     both versions, before anything changes, and restores when forced;
 *   - restore drills pass with both methods and leave the aliases alone;
 *   - a shards restore over an existing collection and of a custom-sharded
 *     collection. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qsnap/error.h"
#include "qsnap/manifest.h"
#include "qsnap/storage.h"
#include "qsnap/util.h"
#include "support.h"

#define TOKEN "fidelity-test-admin-token-0123456789"
#define AUTH "Authorization: Bearer " TOKEN
#define POINTS 240

/* Every variable qsnap reads, unset first ("K=" unsets K). */
#define CLEAN_ENV                                                                                  \
    "QSNAP_QDRANT_URL=", "QSNAP_QDRANT_API_KEY=", "QSNAP_QDRANT_API_KEY_FILE=",                    \
        "QSNAP_DESTINATION=", "QSNAP_S3_ENDPOINT=", "QSNAP_S3_REGION=", "QSNAP_S3_ACCESS_KEY_ID=", \
        "QSNAP_S3_ACCESS_KEY_ID_FILE=", "QSNAP_S3_SECRET_ACCESS_KEY=",                             \
        "QSNAP_S3_SECRET_ACCESS_KEY_FILE=", "QSNAP_S3_URI_STYLE=", "QSNAP_S3_CA_FILE=",            \
        "QSNAP_S3_PART_SIZE=", "QSNAP_JITTER=", "QSNAP_COLLECTIONS=", "QSNAP_MODE=",               \
        "QSNAP_SNAPSHOT_METHOD=", "QSNAP_RETENTION=", "QSNAP_KEEP_MIN=", "QSNAP_MAX_BANDWIDTH=",   \
        "QSNAP_ADMIN_TOKEN_FILE=", "QSNAP_STALE_AFTER=", "QSNAP_HEARTBEAT_URL=",                   \
        "QSNAP_LOG_LEVEL=", "QSNAP_LOG_FORMAT=json", "QSNAP_SCHEDULE=off", "QSNAP_LOCAL_KEEP=1",   \
        "QSNAP_COMPRESSION=none", "QSNAP_DRILL_SCHEDULE=", "QSNAP_TEST_NOW="

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(fidelity, .init = setup, .fini = teardown, .timeout = 0);

/* ---- the world: a destination and the stand-in ---------------------------- */

static void world_open(struct qs_test_world *w, int s3, const char *tag)
{
    qs_test_world_open(w, s3, "fidelity", tag);
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

/* Runs qsnap with args (NULL-terminated) and the world's environment plus
 * extra; returns the exit code, the output in *out (owned). */
static int qsnap(struct qs_test_world *w, const char *const *extra, char **out,
                 const char *const *args)
{
    char *argv[16];
    size_t n = 0;
    argv[n++] = (char *)qs_test_env("QSNAP_TEST_BINARY");
    for (size_t i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return qs_test_run(argv, world_env(w, extra), out);
}

/* qsnap backup -c coll with QSNAP_SNAPSHOT_METHOD=method, which must succeed. */
static void backup(struct qs_test_world *w, const char *coll, const char *method)
{
    char m[64];
    snprintf(m, sizeof(m), "QSNAP_SNAPSHOT_METHOD=%s", method);
    const char *extra[] = {m, NULL};
    const char *args[] = {"backup", "-c", coll, NULL};
    char *out = NULL;
    int rc = qsnap(w, extra, &out, args);
    cr_assert_eq(rc, 0, "backup of %s (%s) failed (%d):\n%s", coll, method, rc, out);
    free(out);
}

/* Every key at the destination, one per line (owned). */
static char *dest_keys(struct qs_test_world *w, const char *prefix, size_t *n)
{
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    struct qs_error err;
    cr_assert_eq(qs_storage_list(w->st, prefix, &l, &err), 0, "%s", err.msg);
    struct qs_buf b;
    qs_buf_init(&b);
    qs_buf_printf(&b, "%s", "");
    for (size_t i = 0; i < l.n; i++)
        qs_buf_printf(&b, "%s\n", l.items[i].key);
    if (n != NULL)
        *n = l.n;
    qs_storage_list_deinit(&l);
    return b.data;
}

/* Open multipart uploads (S3) or temporaries (file://) under the prefix. */
static size_t dest_uploads(struct qs_test_world *w)
{
    struct qs_storage_uploads u;
    qs_storage_uploads_init(&u);
    struct qs_error err;
    cr_assert_eq(qs_storage_list_uploads(w->st, "", &u, &err), 0, "%s", err.msg);
    size_t n = u.n;
    qs_storage_uploads_deinit(&u);
    return n;
}

/* ---- the stand-in's API ------------------------------------------------------- */

/* A request to the stand-in; returns its JSON answer (owned). */
static cJSON *qd(struct qs_test_world *w, const char *method, const char *path, const char *body,
                 long want)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", w->qd.url, path);
    return qs_test_http_json(method, url, body, want);
}

/* The envelope's result of a 200 answer (owned by the caller via *root). */
static const cJSON *qd_result(struct qs_test_world *w, const char *method, const char *path,
                              const char *body, cJSON **root)
{
    *root = qd(w, method, path, body, 200);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(*root, "result");
    cr_assert_not_null(res, "%s %s: no result", method, path);
    return res;
}

static void qd_ok(struct qs_test_world *w, const char *method, const char *path, const char *body)
{
    cJSON_Delete(qd(w, method, path, body, 200));
}

/* The collection under test: three shards, POINTS points with a keyword
 * ("city") and an integer ("year") payload, an index on each (the integer
 * one with parameters), and the aliases a1-NAME and a2-NAME. */
static void make_collection(struct qs_test_world *w, const char *name, int npoints)
{
    char path[256], body[256];
    snprintf(path, sizeof(path), "/collections/%s", name);
    qd_ok(w, "PUT", path,
          "{\"vectors\":{\"size\":4,\"distance\":\"Cosine\"},\"shard_number\":3,"
          "\"optimizers_config\":{\"indexing_threshold\":1000}}");
    struct qs_buf b;
    qs_buf_init(&b);
    qs_buf_printf(&b, "{\"points\":[");
    for (int i = 0; i < npoints; i++)
        qs_buf_printf(&b,
                      "%s{\"id\":%d,\"vector\":[%d.5,%d.25,0.5,%d],\"payload\":{\"city\":\"c%d\","
                      "\"year\":%d}}",
                      i > 0 ? "," : "", i * 7 + 1, i % 11, i % 5, i % 3 + 1, i % 6, 1990 + i % 30);
    qs_buf_printf(&b, "]}");
    snprintf(path, sizeof(path), "/collections/%s/points?wait=true", name);
    qd_ok(w, "PUT", path, b.data);
    qs_buf_free(&b);
    snprintf(path, sizeof(path), "/collections/%s/index?wait=true", name);
    qd_ok(w, "PUT", path, "{\"field_name\":\"city\",\"field_schema\":\"keyword\"}");
    qd_ok(w, "PUT", path,
          "{\"field_name\":\"year\",\"field_schema\":{\"type\":\"integer\",\"range\":true,"
          "\"lookup\":false}}");
    snprintf(
        body, sizeof(body),
        "{\"actions\":[{\"create_alias\":{\"collection_name\":\"%s\",\"alias_name\":\"a1-%s\"}},"
        "{\"create_alias\":{\"collection_name\":\"%s\",\"alias_name\":\"a2-%s\"}}]}",
        name, name, name, name);
    qd_ok(w, "POST", "/collections/aliases", body);
}

/* Every point of coll (ids, vectors, payloads), by id (caller deletes). */
static cJSON *all_points(struct qs_test_world *w, const char *coll)
{
    return qs_test_all_points(w->qd.url, coll);
}

static cJSON *collection_info(struct qs_test_world *w, const char *coll)
{
    char path[256];
    snprintf(path, sizeof(path), "/collections/%s", coll);
    cJSON *root;
    qd_result(w, "GET", path, NULL, &root);
    return root;
}

static int collection_exists(struct qs_test_world *w, const char *coll)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/collections/%s", w->qd.url, coll);
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("GET", url, NULL, NULL, 0, &r), 0);
    long st = r.status;
    qs_test_resp_free(&r);
    cr_assert(st == 200 || st == 404, "GET %s: %ld", url, st);
    return st == 200;
}

/* target holds the same points as source (every id, vector and payload, as
 * Qdrant's API shows them), the same payload indexes and points_count, and
 * the configuration the backup recorded (its shard count included). */
static void assert_same_collection(struct qs_test_world *w, const char *source, const char *target)
{
    cJSON *a = all_points(w, source), *b = all_points(w, target);
    cr_assert_eq(cJSON_GetArraySize(a), POINTS, "source has %d points", cJSON_GetArraySize(a));
    cr_assert_eq(cJSON_GetArraySize(b), cJSON_GetArraySize(a), "%s has %d points, %s has %d",
                 target, cJSON_GetArraySize(b), source, cJSON_GetArraySize(a));
    for (int i = 0; i < cJSON_GetArraySize(a); i++) {
        const cJSON *pa = cJSON_GetArrayItem(a, i), *pb = cJSON_GetArrayItem(b, i);
        if (!cJSON_Compare(pa, pb, 1)) {
            char *x = cJSON_PrintUnformatted(pa), *y = cJSON_PrintUnformatted(pb);
            cr_assert_fail("point %d differs:\n%s: %s\n%s: %s", i, source, x, target, y);
        }
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON *ia = collection_info(w, source), *ib = collection_info(w, target);
    const cJSON *ra = cJSON_GetObjectItem(ia, "result"), *rb = cJSON_GetObjectItem(ib, "result");
    const cJSON *sa = cJSON_GetObjectItem(ra, "payload_schema");
    const cJSON *sb = cJSON_GetObjectItem(rb, "payload_schema");
    cr_assert_eq(cJSON_GetArraySize(sa), 2);
    cr_assert(cJSON_Compare(sa, sb, 1), "payload indexes differ:\n%s\n%s", cJSON_Print(sa),
              cJSON_Print(sb));
    cr_assert_eq(qs_test_jnum(ra, "points_count"), qs_test_jnum(rb, "points_count"));
    const cJSON *ca = cJSON_GetObjectItem(ra, "config"), *cb = cJSON_GetObjectItem(rb, "config");
    cr_assert(cJSON_Compare(ca, cb, 1), "configurations differ:\n%s\n%s", cJSON_Print(ca),
              cJSON_Print(cb));
    cr_assert_eq(qs_test_jnum(cJSON_GetObjectItem(cb, "params"), "shard_number"), 3);
    cJSON_Delete(ia);
    cJSON_Delete(ib);
}

/* The collection alias points at, or NULL (static buffer). */
static const char *alias_target(struct qs_test_world *w, const char *alias)
{
    static char out[256];
    cJSON *root;
    const cJSON *res = qd_result(w, "GET", "/aliases", NULL, &root);
    const cJSON *a;
    const char *found = NULL;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(res, "aliases"))
    {
        if (strcmp(qs_test_jstr(a, "alias_name"), alias) == 0) {
            qs_strlcpy(out, qs_test_jstr(a, "collection_name"), sizeof(out));
            found = out;
        }
    }
    cJSON_Delete(root);
    return found;
}

static void assert_aliases_at(struct qs_test_world *w, const char *coll, const char *at)
{
    char a[128];
    for (int i = 1; i <= 2; i++) {
        snprintf(a, sizeof(a), "a%d-%s", i, coll);
        const char *t = alias_target(w, a);
        cr_assert_not_null(t, "alias %s is gone", a);
        cr_assert_str_eq(t, at, "alias %s points at %s, not %s", a, t, at);
    }
}

static cJSON *standin_state(struct qs_test_world *w)
{
    return qd(w, "GET", "/__standin/state", NULL, 200);
}

static double counter(struct qs_test_world *w, const char *name)
{
    cJSON *st = standin_state(w);
    double v = qs_test_jnum(cJSON_GetObjectItem(st, "counters"), name);
    cJSON_Delete(st);
    return v;
}

/* ---- backups made with each method restore the whole collection -------------- */

static void both_methods(int s3)
{
    struct qs_test_world w;
    world_open(&w, s3, "methods");
    make_collection(&w, "mem", POINTS);

    /* The collection method: a snapshot file in Qdrant's snapshot directory. */
    qd_ok(&w, "DELETE", "/__standin/counters", NULL);
    backup(&w, "mem", "collection");
    cr_assert_gt(counter(&w, "snapshot_files_bytes"), 0);
    sleep(1); /* a new second: a new run name */

    /* The shards method: nothing written there; transient stream files only. */
    qd_ok(&w, "DELETE", "/__standin/counters", NULL);
    backup(&w, "mem", "shards");
    cr_assert_eq(counter(&w, "snapshot_files_bytes"), 0, "the shards method wrote a snapshot file");
    cr_assert_eq(counter(&w, "storage_tmp_bytes"), 0);
    cr_assert_eq(counter(&w, "shard_streams"), 3);
    cr_assert_eq(counter(&w, "creates"), 0);

    /* The destination: the collection snapshot and its manifest, one shards
     * run's three objects and its manifest, as one backup each. */
    size_t n = 0;
    char *keys = dest_keys(&w, "", &n);
    cr_assert_eq(n, 6, "%s", keys);
    cr_assert_not_null(strstr(keys, "-shards-"), "%s", keys);
    for (int id = 0; id < 3; id++) {
        char want[64];
        snprintf(want, sizeof(want), "/shard-%d.snapshot\n", id);
        cr_assert_not_null(strstr(keys, want), "%s", keys);
    }
    free(keys);
    const char *list[] = {"list", "--json", NULL};
    char *out = NULL;
    cr_assert_eq(qsnap(&w, NULL, &out, list), 0, "%s", out);
    cJSON *l = cJSON_Parse(out);
    cr_assert_not_null(l, "%s", out);
    free(out);
    const cJSON *backups = cJSON_GetObjectItem(l, "backups");
    cr_assert_eq(cJSON_GetArraySize(backups), 2);
    const cJSON *shards = cJSON_GetArrayItem(backups, 0); /* newest first */
    const cJSON *coll = cJSON_GetArrayItem(backups, 1);
    cr_assert_str_eq(qs_test_jstr(shards, "method"), "shards");
    cr_assert_str_eq(qs_test_jstr(coll, "method"), "collection");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(shards, "shards")), 3);
    cr_assert_eq(qs_test_jnum(shards, "points_count"), POINTS);
    cr_assert_eq(qs_test_jnum(shards, "format"), 2);
    cr_assert(cJSON_Compare(cJSON_GetObjectItem(shards, "aliases"),
                            cJSON_GetObjectItem(coll, "aliases"), 1));
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(shards, "aliases")), 2);
    char run[300], snap[300];
    qs_strlcpy(run, qs_test_jstr(shards, "snapshot"), sizeof(run));
    qs_strlcpy(snap, qs_test_jstr(coll, "snapshot"), sizeof(snap));
    cJSON_Delete(l);

    /* The shards backup under a new name, aliases moved to it. */
    const char *r1[] = {"restore", "-c", "mem", "--snapshot", run, "--to", "mem-shards", NULL};
    cr_assert_eq(qsnap(&w, NULL, &out, r1), 0, "%s", out);
    cr_assert_not_null(strstr(out, "2 payload indexes re-created"), "%s", out);
    free(out);
    assert_same_collection(&w, "mem", "mem-shards");
    assert_aliases_at(&w, "mem", "mem-shards");
    cJSON *st = standin_state(&w);
    const cJSON *u;
    int shard_uploads = 0;
    cJSON_ArrayForEach(u, cJSON_GetObjectItem(st, "uploads"))
    {
        if (strcmp(qs_test_jstr(u, "collection"), "mem-shards") != 0)
            continue;
        shard_uploads++;
        cr_assert_str_eq(qs_test_jstr(u, "priority"), "snapshot");
        cr_assert_str_eq(qs_test_jstr(u, "checksum_param"), qs_test_jstr(u, "sha256"));
        cr_assert_eq(qs_test_jnum(u, "status"), 200);
    }
    cr_assert_eq(shard_uploads, 3);
    cJSON_Delete(st);

    /* The collection backup under another name, aliases left alone. */
    const char *r2[] = {"restore", "-c",       "mem",          "--snapshot", snap,
                        "--to",    "mem-coll", "--no-aliases", NULL};
    cr_assert_eq(qsnap(&w, NULL, &out, r2), 0, "%s", out);
    cr_assert_not_null(strstr(out, "2 aliases of the backup left as they are"), "%s", out);
    free(out);
    assert_same_collection(&w, "mem", "mem-coll");
    assert_aliases_at(&w, "mem", "mem-shards");

    /* ...and again with the aliases: they move. */
    const char *r3[] = {"restore", "-c", "mem", "--snapshot", snap, "--to", "mem-coll", NULL};
    cr_assert_eq(qsnap(&w, NULL, &out, r3), 0, "%s", out);
    free(out);
    assert_aliases_at(&w, "mem", "mem-coll");
    assert_same_collection(&w, "mem", "mem-coll");
    world_close(&w);
}

Test(fidelity, both_methods_restore_the_whole_collection_file)
{
    both_methods(0);
}

Test(fidelity, both_methods_restore_the_whole_collection_s3)
{
    both_methods(1);
}

/* ---- a shard stream Qdrant cuts ---------------------------------------------- */

/* Keeps the stand-in's one-shot fault "cut the next stream of shard 1 after
 * 3000 bytes" armed while running is set, so every attempt is cut. */
struct rearm {
    struct qs_test_world *w;
    atomic_int running;
    atomic_int armed; /* times the fault was set */
};

static void *rearm_main(void *arg)
{
    struct rearm *r = arg;
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/faults", r->w->qd.url);
    static const char arm[] = "{\"cut_shard_stream_after\":3000,\"cut_shard_stream_shard\":1}";
    const char *h[] = {"Content-Type: application/json", NULL};
    while (atomic_load(&r->running)) {
        struct qs_test_resp resp;
        if (qs_test_http("GET", url, NULL, NULL, 0, &resp) == 0) {
            int consumed = strstr(resp.body, "cut_shard_stream_after") == NULL;
            qs_test_resp_free(&resp);
            if (consumed && qs_test_http("POST", url, h, arm, sizeof(arm) - 1, &resp) == 0) {
                atomic_fetch_add(&r->armed, 1);
                qs_test_resp_free(&resp);
            }
        }
        usleep(20000);
    }
    return NULL;
}

static void truncated_stream(int s3)
{
    struct qs_test_world w;
    world_open(&w, s3, "cut");
    make_collection(&w, "mem", POINTS);
    struct rearm r = {.w = &w};
    atomic_store(&r.running, 1);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, rearm_main, &r), 0);
    while (atomic_load(&r.armed) == 0)
        usleep(10000);
    qd_ok(&w, "DELETE", "/__standin/counters", NULL);

    const char *extra[] = {"QSNAP_SNAPSHOT_METHOD=shards", NULL};
    const char *args[] = {"backup", "-c", "mem", NULL};
    char *out = NULL;
    int rc = qsnap(&w, extra, &out, args);
    atomic_store(&r.running, 0);
    pthread_join(th, NULL);
    cr_assert_eq(rc, 1, "a backup of a cut shard stream did not fail (%d):\n%s", rc, out);
    cr_assert_not_null(strstr(out, "stream shard 1 of collection 'mem': Qdrant ended the stream "
                                   "before the end of the archive: tar archive cut at byte 3000"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "attempt 4 of 5"), "not retried:\n%s", out);
    free(out);
    /* shard 0 once, shard 1 five times; shard 2 never */
    cr_assert_eq(counter(&w, "shard_streams"), 6);
    /* Nothing left: no manifest, no shard object (shard 0 had been stored),
     * no open upload or temporary. */
    size_t n = 0;
    char *keys = dest_keys(&w, "", &n);
    cr_assert_eq(n, 0, "left at the destination:\n%s", keys);
    free(keys);
    cr_assert_eq(dest_uploads(&w), 0);

    /* One cut is retried: the run succeeds with exactly its objects. */
    qd_ok(&w, "POST", "/__standin/faults",
          "{\"cut_shard_stream_after\":700,\"cut_shard_stream_shard\":2}");
    sleep(1);
    rc = qsnap(&w, extra, &out, args);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, "tar archive cut at byte 700"), "%s", out);
    free(out);
    keys = dest_keys(&w, "", &n);
    cr_assert_eq(n, 4, "%s", keys);
    free(keys);
    cr_assert_eq(dest_uploads(&w), 0);
    world_close(&w);
}

Test(fidelity, cut_shard_stream_fails_the_run_and_leaves_nothing_file)
{
    truncated_stream(0);
}

Test(fidelity, cut_shard_stream_fails_the_run_and_leaves_nothing_s3)
{
    truncated_stream(1);
}

/* ---- a version 1 manifest of the previous release ------------------------------ */

#define V1_SNAP "legacy-7310877421759408-2026-12-06-06-18-25.snapshot"

/* Copies the fixture (a gzip backup of collection "legacy", 12 points,
 * written by the release before format 2) to the destination. */
static void put_fixture(struct qs_test_world *w)
{
    static const char *const files[] = {V1_SNAP ".gz", V1_SNAP ".json"};
    for (size_t i = 0; i < 2; i++) {
        char path[1024], key[300];
        snprintf(path, sizeof(path), "%s/test/fixtures/manifest-v1/legacy/%s",
                 qs_test_env("QSNAP_TEST_SOURCE_ROOT"), files[i]);
        size_t len = 0;
        char *data = qs_test_read_file(path, &len);
        cr_assert_not_null(data, "%s", path);
        snprintf(key, sizeof(key), "legacy/%s", files[i]);
        struct qs_error err;
        cr_assert_eq(qs_storage_put_buffer(w->st, key, data, len, NULL, NULL, &err), 0, "%s",
                     err.msg);
        free(data);
    }
}

static void version1(int s3)
{
    struct qs_test_world w;
    world_open(&w, s3, "v1");
    put_fixture(&w);
    char *out = NULL;
    const char *list[] = {"list", "--json", NULL};
    cr_assert_eq(qsnap(&w, NULL, &out, list), 0, "%s", out);
    cJSON *l = cJSON_Parse(out);
    free(out);
    const cJSON *b = cJSON_GetArrayItem(cJSON_GetObjectItem(l, "backups"), 0);
    cr_assert_not_null(b);
    cr_assert_str_eq(qs_test_jstr(b, "snapshot"), V1_SNAP);
    cr_assert_eq(qs_test_jnum(b, "format"), 1);
    cr_assert_str_eq(qs_test_jstr(b, "method"), "collection");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(b, "aliases")));
    cJSON_Delete(l);

    /* restores, with nothing to re-create */
    const char *restore[] = {"restore", "-c", "legacy", NULL};
    cr_assert_eq(qsnap(&w, NULL, &out, restore), 0, "%s", out);
    cr_assert_not_null(strstr(out, "restored " V1_SNAP " into collection legacy"), "%s", out);
    free(out);
    cJSON *info = collection_info(&w, "legacy");
    cr_assert_eq(qs_test_jnum(cJSON_GetObjectItem(info, "result"), "points_count"), 12);
    cJSON_Delete(info);

    /* pruned (manifest first) once a newer backup exists and it is old */
    backup(&w, "legacy", "shards");
    char now[64];
    snprintf(now, sizeof(now), "QSNAP_TEST_NOW=%lld", (long long)time(NULL) + 400 * 86400);
    const char *extra[] = {"QSNAP_KEEP_MIN=1", now, NULL};
    const char *prune[] = {"prune", NULL};
    cr_assert_eq(qsnap(&w, extra, &out, prune), 0, "%s", out);
    char *m = strstr(out, "delete-manifest legacy/" V1_SNAP ".json");
    char *o = strstr(out, "delete-object legacy/" V1_SNAP ".gz");
    cr_assert(m != NULL && o != NULL && m < o, "not pruned manifest first:\n%s", out);
    cr_assert_not_null(strstr(out, "deleted: 1 backups, 0 incomplete objects"), "%s", out);
    free(out);
    size_t n = 0;
    char *keys = dest_keys(&w, "", &n);
    cr_assert_null(strstr(keys, V1_SNAP), "%s", keys);
    cr_assert_eq(n, 2, "the shards backup (manifest and one shard) is kept:\n%s", keys);
    free(keys);
    world_close(&w);
}

Test(fidelity, version1_manifest_is_listed_restored_and_pruned_file)
{
    version1(0);
}

Test(fidelity, version1_manifest_is_listed_restored_and_pruned_s3)
{
    version1(1);
}

/* ---- the version guard ------------------------------------------------------------ */

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

static long post(struct qs_test_daemon *d, const char *path, const char *json, char **body)
{
    char url[128];
    snprintf(url, sizeof(url), "%s%s", d->url, path);
    const char *h[] = {"Content-Type: application/json", AUTH, NULL};
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("POST", url, h, json, strlen(json), &r), 0);
    long st = r.status;
    *body = r.body;
    r.body = NULL;
    qs_test_resp_free(&r);
    return st;
}

/* Runs a restore job to its end; returns the job (caller deletes). */
static cJSON *restore_job(struct qs_test_daemon *d, const char *json)
{
    char *body = NULL;
    long st = post(d, "/v1/restore", json, &body);
    cr_assert_eq(st, 202, "POST /v1/restore %s: %ld %s", json, st, body);
    cJSON *j = cJSON_Parse(body);
    free(body);
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/jobs/%s", d->url, qs_test_jstr(j, "job"));
    cJSON_Delete(j);
    double end = qs_monotonic() + 120;
    for (;;) {
        j = qs_test_http_json("GET", url, NULL, 200);
        const char *s = qs_test_jstr(j, "state");
        if (strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0)
            return j;
        cJSON_Delete(j);
        cr_assert_lt(qs_monotonic(), end, "restore job still running");
        usleep(100000);
    }
}

Test(fidelity, too_old_a_backup_is_refused_naming_both_versions_and_restores_forced)
{
    struct qs_test_world w;
    world_open(&w, 0, "version");
    make_collection(&w, "mem", POINTS);
    /* made by Qdrant 1.11, restored into 1.13 */
    qd_ok(&w, "POST", "/__standin/version", "{\"version\":\"1.11.4\"}");
    backup(&w, "mem", "shards");
    qd_ok(&w, "POST", "/__standin/version", "{\"version\":\"1.13.2\"}");
    qd_ok(&w, "DELETE", "/__standin/counters", NULL);

    char *out = NULL;
    const char *args[] = {"restore", "-c", "mem", "--to", "old", NULL};
    cr_assert_eq(qsnap(&w, NULL, &out, args), 1, "%s", out);
    cr_assert_not_null(strstr(out, "the backup was made by Qdrant 1.11.4 and the target runs "
                                   "Qdrant 1.13.2, which cannot load it"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "--force"), "%s", out);
    free(out);
    /* before any byte moved */
    cr_assert_eq(collection_exists(&w, "old"), 0);
    cr_assert_eq(counter(&w, "shard_uploads"), 0);
    assert_aliases_at(&w, "mem", "mem");

    const char *extra[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, NULL};
    struct qs_test_daemon d;
    daemon_start(&d, &w, extra);
    char *body = NULL;
    cr_assert_eq(post(&d, "/v1/restore", "{\"collection\":\"mem\",\"force\":\"yes\"}", &body), 400);
    cr_assert_not_null(strstr(body, "field 'force': must be true or false"), "%s", body);
    free(body);
    cr_assert_eq(post(&d, "/v1/restore", "{\"collection\":\"mem\",\"alias\":false}", &body), 400);
    cr_assert_not_null(strstr(body, "accepted: collection, snapshot, target, aliases, force"), "%s",
                       body);
    free(body);
    cJSON *j = restore_job(&d, "{\"collection\":\"mem\",\"target\":\"old\"}");
    cr_assert_str_eq(qs_test_jstr(j, "state"), "failed");
    cr_assert_not_null(strstr(qs_test_jstr(j, "error"), "Qdrant 1.11.4"), "%s",
                       qs_test_jstr(j, "error"));
    cJSON_Delete(j);
    cr_assert_eq(collection_exists(&w, "old"), 0);
    /* forced, aliases left alone */
    j = restore_job(&d, "{\"collection\":\"mem\",\"target\":\"old\",\"force\":true,"
                        "\"aliases\":false}");
    char *txt = cJSON_PrintUnformatted(j);
    cr_assert_str_eq(qs_test_jstr(j, "state"), "succeeded", "%s", txt);
    free(txt);
    cJSON_Delete(j);
    char *log = qs_test_read_file(d.log, NULL);
    cr_assert_not_null(log);
    cr_assert_not_null(strstr(log, "restoring anyway (force)"), "%s", log);
    free(log);
    daemon_stop(&d);
    assert_same_collection(&w, "mem", "old");
    assert_aliases_at(&w, "mem", "mem");
    world_close(&w);
}

/* ---- drills ---------------------------------------------------------------------- */

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

Test(fidelity, drills_pass_with_both_methods_and_leave_aliases_alone)
{
    struct qs_test_world w;
    world_open(&w, 1, "drill");
    make_collection(&w, "dc", POINTS);
    make_collection(&w, "ds", POINTS);
    backup(&w, "dc", "collection");
    backup(&w, "ds", "shards");
    /* QSNAP_TEST_NOW 3 s before the next full minute. */
    int64_t now = time(NULL), next = (now / 60 + 1) * 60;
    if (next - now < 10)
        next += 60;
    char clock[64];
    snprintf(clock, sizeof(clock), "QSNAP_TEST_NOW=%lld", (long long)(next - 3));
    const char *extra[] = {"QSNAP_DRILL_SCHEDULE=* * * * *", "QSNAP_COLLECTIONS=dc,ds", clock,
                           NULL};
    struct qs_test_daemon d;
    daemon_start(&d, &w, extra);
    int rc = wait_log(&d, "drill job succeeded", 60);
    char *log = qs_test_read_file(d.log, NULL);
    cr_assert_eq(rc, 0, "no drill succeeded:\n%s", log);
    cr_assert_not_null(strstr(log, "2 ok, 0 failed"), "%s", log);
    free(log);
    char *mt = qs_test_daemon_metrics(&d);
    cr_assert_eq(qs_test_metric(mt, "qsnap_restore_drill_total{result=\"success\"}"), 2, "%s", mt);
    /* one backup each: the shards run counts once */
    cr_assert_eq(qs_test_metric(mt, "qsnap_backups_stored{location=\"remote\"}"), 2, "%s", mt);
    cr_assert_gt(
        qs_test_metric(mt, "qsnap_backup_last_success_timestamp_seconds{collection=\"ds\"}"), 0,
        "%s", mt);
    free(mt);
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/backups?collection=ds", d.url);
    cJSON *list = qs_test_http_json("GET", url, NULL, 200);
    const cJSON *backups = cJSON_GetObjectItem(list, "backups");
    cr_assert_eq(cJSON_GetArraySize(backups), 1, "a shards run is one backup");
    const cJSON *b = cJSON_GetArrayItem(backups, 0);
    cr_assert_str_eq(qs_test_jstr(b, "method"), "shards");
    cr_assert_str_eq(qs_test_jstr(cJSON_GetObjectItem(b, "drill"), "result"), "success");
    cr_assert_eq(qs_test_jnum(cJSON_GetObjectItem(b, "drill"), "points_restored"), POINTS);
    cJSON_Delete(list);
    daemon_stop(&d);
    /* scratch collections gone, real ones and their aliases untouched */
    cr_assert_eq(collection_exists(&w, "dc__qsnap_drill"), 0);
    cr_assert_eq(collection_exists(&w, "ds__qsnap_drill"), 0);
    assert_aliases_at(&w, "dc", "dc");
    assert_aliases_at(&w, "ds", "ds");
    world_close(&w);
}

/* ---- restoring shards over an existing collection ---------------------------------- */

Test(fidelity, shards_restore_over_an_existing_collection)
{
    struct qs_test_world w;
    world_open(&w, 0, "over");
    make_collection(&w, "mem", POINTS);
    backup(&w, "mem", "shards");
    /* another shard count: refused, left as it was */
    qd_ok(&w, "PUT", "/collections/two",
          "{\"vectors\":{\"size\":4,\"distance\":\"Cosine\"},\"shard_number\":2}");
    char *out = NULL;
    const char *to_two[] = {"restore", "-c", "mem", "--to", "two", NULL};
    cr_assert_eq(qsnap(&w, NULL, &out, to_two), 1, "%s", out);
    cr_assert_not_null(strstr(out, "collection 'two' exists with another shard count than backup"),
                       "%s", out);
    free(out);
    cr_assert_eq(collection_exists(&w, "two"), 1, "refusing deleted the collection");
    cr_assert_eq(counter(&w, "shard_uploads"), 0);
    /* the same shape: its points are replaced */
    qd_ok(&w, "PUT", "/collections/same",
          "{\"vectors\":{\"size\":4,\"distance\":\"Cosine\"},\"shard_number\":3}");
    qd_ok(&w, "PUT", "/collections/same/points?wait=true",
          "{\"points\":[{\"id\":999999,\"vector\":[1,2,3,4]}]}");
    const char *to_same[] = {"restore", "-c", "mem", "--to", "same", "--no-aliases", NULL};
    cr_assert_eq(qsnap(&w, NULL, &out, to_same), 0, "%s", out);
    free(out);
    cJSON *info = collection_info(&w, "same");
    cr_assert_eq(qs_test_jnum(cJSON_GetObjectItem(info, "result"), "points_count"), POINTS);
    cJSON_Delete(info);
    /* A failure after the collection was created removes it again: a
     * shard upload that fails. */
    qd_ok(&w, "POST", "/__standin/faults", "{\"fail_shard_uploads\":1,\"upload_status\":400}");
    const char *to_new[] = {"restore", "-c", "mem", "--to", "fresh", NULL};
    cr_assert_eq(qsnap(&w, NULL, &out, to_new), 1, "%s", out);
    free(out);
    cr_assert_eq(collection_exists(&w, "fresh"), 0, "a half-restored collection was left");
    assert_aliases_at(&w, "mem", "mem");
    world_close(&w);
}

Test(fidelity, custom_sharding_is_refused_by_the_shards_method)
{
    struct qs_test_world w;
    world_open(&w, 0, "custom");
    qd_ok(&w, "PUT", "/collections/tenants",
          "{\"vectors\":{\"size\":4,\"distance\":\"Cosine\"},\"sharding_method\":\"custom\"}");
    const char *extra[] = {"QSNAP_SNAPSHOT_METHOD=shards", NULL};
    const char *args[] = {"backup", "-c", "tenants", NULL};
    char *out = NULL;
    cr_assert_eq(qsnap(&w, extra, &out, args), 1, "%s", out);
    cr_assert_not_null(strstr(out, "collection 'tenants' uses custom sharding"), "%s", out);
    cr_assert_not_null(strstr(out, "QSNAP_SNAPSHOT_METHOD=collection"), "%s", out);
    free(out);
    size_t n = 0;
    free(dest_keys(&w, "", &n));
    cr_assert_eq(n, 0);
    world_close(&w);
}
