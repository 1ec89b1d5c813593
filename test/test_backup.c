/* Backups end to end: the real qsnap binary (serve and the one-shot commands)
 * against the Qdrant stand-in and radosgw (or a file:// directory). Objects
 * are checked independently of qsnap: downloaded with libcurl's own SigV4
 * signing (or read from the directory), hashed here and compared with the
 * checksum Qdrant reported for the snapshot. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <zlib.h>

#include "qsnap/util.h"
#include "support.h"

#define TOKEN "backup-test-token-0123456789"
#define AUTH "Authorization: Bearer " TOKEN

struct dest;
static void dest_cleanup(struct dest *d);

/* What the running test started, so that teardown cleans up after a failed
 * assertion too (criterion runs .fini after one). */
static struct dest *g_dest;
static struct qs_test_standin *g_standin;
static struct qs_test_daemon *g_daemon;
static pid_t g_web;

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    if (g_daemon != NULL && g_daemon->pid > 0)
        qs_test_daemon_stop(g_daemon, 10);
    if (g_standin != NULL && g_standin->pid > 0)
        qs_test_standin_stop(g_standin);
    if (g_dest != NULL)
        dest_cleanup(g_dest);
    if (g_web > 0)
        qs_test_kill(g_web);
    g_web = -1;
    g_dest = NULL;
    g_standin = NULL;
    g_daemon = NULL;
    curl_global_cleanup();
}

TestSuite(backup, .init = setup, .fini = teardown);

/* ---- destinations ------------------------------------------------------------ */

struct dest {
    int s3;
    char prefix[128];  /* s3: key prefix inside the bucket */
    char *dir;         /* file: the directory (owned) */
    char env[8][1200]; /* QSNAP_* variables selecting this destination */
    size_t nenv;
};

static void dest_s3(struct dest *d, const char *tag)
{
    static int counter;
    memset(d, 0, sizeof(*d));
    g_dest = d;
    d->s3 = 1;
    snprintf(d->prefix, sizeof(d->prefix), "t-backup-%ld-%d-%s-%d", (long)getpid(),
             (int)(time(NULL) % 100000), tag, ++counter);
    snprintf(d->env[d->nenv++], sizeof(d->env[0]), "QSNAP_DESTINATION=s3://%s/%s",
             qs_test_env("QSNAP_TEST_S3_BUCKET"), d->prefix);
    snprintf(d->env[d->nenv++], sizeof(d->env[0]), "QSNAP_S3_ENDPOINT=%s",
             qs_test_env("QSNAP_TEST_S3_ENDPOINT"));
    snprintf(d->env[d->nenv++], sizeof(d->env[0]), "QSNAP_S3_ACCESS_KEY_ID=%s",
             qs_test_env("QSNAP_TEST_S3_ACCESS_KEY"));
    snprintf(d->env[d->nenv++], sizeof(d->env[0]), "QSNAP_S3_SECRET_ACCESS_KEY=%s",
             qs_test_env("QSNAP_TEST_S3_SECRET_KEY"));
    snprintf(d->env[d->nenv++], sizeof(d->env[0]), "QSNAP_S3_REGION=%s", qs_test_s3_region());
}

static void dest_file(struct dest *d)
{
    memset(d, 0, sizeof(*d));
    g_dest = d;
    d->dir = qs_test_mkdtemp("backup-dest");
    snprintf(d->env[d->nenv++], sizeof(d->env[0]), "QSNAP_DESTINATION=file://%s", d->dir);
}

struct hash_sink {
    struct qs_sha256 h;
    uint64_t n;
    struct qs_buf *keep; /* optional: keep the bytes too */
    z_stream z;          /* gunzip before hashing when inflating */
    int inflating;
    int zdone;
    int zerr;
};

static void hash_bytes(struct hash_sink *s, const void *p, size_t len)
{
    qs_sha256_update(&s->h, p, len);
    s->n += len;
    if (s->keep != NULL)
        qs_buf_append(s->keep, p, len);
}

static size_t hash_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    struct hash_sink *s = ud;
    size_t len = size * nmemb;
    if (!s->inflating) {
        hash_bytes(s, p, len);
        return len;
    }
    unsigned char out[65536];
    s->z.next_in = (Bytef *)p;
    s->z.avail_in = (uInt)len;
    while (s->z.avail_in > 0 && !s->zdone && !s->zerr) {
        s->z.next_out = out;
        s->z.avail_out = sizeof(out);
        int zr = inflate(&s->z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            s->zerr = 1;
        hash_bytes(s, out, sizeof(out) - s->z.avail_out);
        if (zr == Z_STREAM_END)
            s->zdone = 1;
    }
    return len;
}

/* Downloads key (relative to the destination) and hashes it; gunzips first
 * when inflate is set. Returns 0, or -1 when the object does not exist. */
static int dest_hash(const struct dest *d, const char *key, int inflate_it, char sha[65],
                     uint64_t *n, struct qs_buf *keep)
{
    struct hash_sink s = {.keep = keep, .inflating = inflate_it};
    cr_assert_eq(qs_sha256_init(&s.h), 0);
    if (inflate_it)
        cr_assert_eq(inflateInit2(&s.z, 15 + 16), Z_OK);
    int found = 0;
    if (d->s3) {
        char path[1500];
        size_t k = (size_t)snprintf(path, sizeof(path), "%s/", d->prefix);
        for (const char *p = key; *p != '\0' && k + 4 < sizeof(path); p++) {
            if (*p == ':') { /* as SigV4 encodes it (":full", ":.hidden") */
                memcpy(path + k, "%3A", 3);
                k += 3;
            } else {
                path[k++] = *p;
            }
        }
        path[k] = '\0';
        long st = qs_test_s3_request("GET", path, hash_cb, &s);
        cr_assert(st == 200 || st == 404, "GET %s: HTTP %ld", path, st);
        found = st == 200;
    } else {
        char path[1500];
        snprintf(path, sizeof(path), "%s/%s", d->dir, key);
        FILE *f = fopen(path, "rb");
        if (f != NULL) {
            found = 1;
            char buf[65536];
            size_t r;
            while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
                hash_cb(buf, 1, r, &s);
            fclose(f);
        }
    }
    if (inflate_it) {
        cr_assert(!found || (s.zdone && !s.zerr), "%s: not a complete gzip stream", key);
        inflateEnd(&s.z);
    }
    qs_sha256_final(&s.h, sha);
    *n = s.n;
    return found ? 0 : -1;
}

/* Whole object as a NUL-terminated buffer (owned), or NULL when missing. */
static char *dest_read(const struct dest *d, const char *key)
{
    struct qs_buf b;
    qs_buf_init(&b);
    char sha[65];
    uint64_t n;
    if (dest_hash(d, key, 0, sha, &n, &b) != 0) {
        qs_buf_free(&b);
        return NULL;
    }
    if (b.data == NULL)
        return strdup("");
    return b.data;
}

/* Keys below "sub/" of the destination, one per line (owned string), hidden
 * files of a file:// destination excluded. *count receives their number. */
static char *dest_list(const struct dest *d, const char *sub, int *count)
{
    struct qs_buf out;
    qs_buf_init(&out);
    qs_buf_append(&out, "", 0);
    *count = 0;
    if (d->s3) {
        char q[1200], prefix[600];
        size_t k = 0;
        snprintf(prefix, sizeof(prefix), "%s/%s/", d->prefix, sub);
        for (const char *p = prefix; *p != '\0' && k + 4 < sizeof(q); p++) {
            if (*p == '/') {
                memcpy(q + k, "%2F", 3);
                k += 3;
            } else {
                q[k++] = *p;
            }
        }
        q[k] = '\0';
        char path[1400];
        snprintf(path, sizeof(path), "?list-type=2&prefix=%s", q);
        struct qs_buf b;
        qs_buf_init(&b);
        long st = qs_test_s3_request("GET", path, qs_test_buf_sink, &b);
        cr_assert_eq(st, 200, "list %s: HTTP %ld: %s", prefix, st, b.data ? b.data : "");
        cr_assert_null(strstr(b.data, "<IsTruncated>true"));
        for (const char *p = b.data; (p = strstr(p, "<Key>")) != NULL;) {
            p += 5;
            const char *e = strstr(p, "</Key>");
            cr_assert_not_null(e);
            qs_buf_append(&out, p, (size_t)(e - p));
            qs_buf_append(&out, "\n", 1);
            (*count)++;
            p = e;
        }
        qs_buf_free(&b);
    } else {
        char path[1200];
        snprintf(path, sizeof(path), "%s/%s", d->dir, sub);
        DIR *dir = opendir(path);
        struct dirent *e;
        while (dir != NULL && (e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            qs_buf_printf(&out, "%s/%s\n", sub, e->d_name);
            (*count)++;
        }
        if (dir != NULL)
            closedir(dir);
    }
    return out.data;
}

/* Deletes everything this test stored. */
static void dest_cleanup(struct dest *d)
{
    if (d->s3) {
        for (int round = 0; round < 5; round++) {
            char q[300];
            snprintf(q, sizeof(q), "?list-type=2&prefix=%s%%2F", d->prefix);
            struct qs_buf b;
            qs_buf_init(&b);
            if (qs_test_s3_request("GET", q, qs_test_buf_sink, &b) != 200 || b.data == NULL) {
                qs_buf_free(&b);
                break;
            }
            int n = 0;
            for (const char *p = b.data; (p = strstr(p, "<Key>")) != NULL; n++) {
                p += 5;
                const char *e = strstr(p, "</Key>");
                if (e == NULL)
                    break;
                char *key = strndup(p, (size_t)(e - p));
                struct qs_buf ignore;
                qs_buf_init(&ignore);
                qs_test_s3_request("DELETE", key, qs_test_buf_sink, &ignore);
                qs_buf_free(&ignore);
                free(key);
                p = e;
            }
            qs_buf_free(&b);
            if (n == 0)
                break;
        }
    } else if (d->dir != NULL) {
        qs_test_rmrf(d->dir);
        free(d->dir);
        d->dir = NULL;
    }
}

/* ---- the stand-in ------------------------------------------------------------- */

static void standin_start(struct qs_test_standin *s)
{
    g_standin = s;
    cr_assert_eq(qs_test_standin_start(s, NULL), 0, "Qdrant stand-in did not start");
}

static void standin_post(const struct qs_test_standin *s, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", s->url, path);
    cJSON_Delete(qs_test_http_json("POST", url, body, 200));
}

static void make_collection(const struct qs_test_standin *s, const char *name, int mib)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"size_mib\":%d,\"dim\":1536}", name, mib);
    standin_post(s, "/__standin/collections", body);
}

/* Qdrant's snapshot list of a collection (owned cJSON array). */
static cJSON *standin_snapshots(const struct qs_test_standin *s, const char *coll)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/collections/%s/snapshots", s->url, coll);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    cJSON *res = cJSON_DetachItemFromObjectCaseSensitive(j, "result");
    cJSON_Delete(j);
    cr_assert(cJSON_IsArray(res));
    return res;
}

/* Qdrant's list of full-storage snapshots (owned cJSON array). */
static cJSON *standin_full_snapshots(const struct qs_test_standin *s)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/snapshots", s->url);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    cJSON *res = cJSON_DetachItemFromObjectCaseSensitive(j, "result");
    cJSON_Delete(j);
    cr_assert(cJSON_IsArray(res));
    return res;
}

/* The snapshot named snap in Qdrant's list, or NULL. */
static const cJSON *find_named(const cJSON *arr, const char *snap)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, snap) == 0)
            return e;
    }
    return NULL;
}

static double standin_points(const struct qs_test_standin *s, const char *coll)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/state", s->url);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(j, "collections"), coll);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "points_count");
    cr_assert(cJSON_IsNumber(p), "stand-in state has no collection %s", coll);
    double v = p->valuedouble;
    cJSON_Delete(j);
    return v;
}

/* Creates a snapshot directly in Qdrant (not through qsnap); returns its name. */
static char *standin_snapshot_now(const struct qs_test_standin *s, const char *coll)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/collections/%s/snapshots?wait=true", s->url, coll);
    cJSON *j = qs_test_http_json("POST", url, "", 200);
    const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "result"), "name");
    cr_assert(cJSON_IsString(n));
    char *name = strdup(n->valuestring);
    cJSON_Delete(j);
    return name;
}

/* ---- qsnap ------------------------------------------------------------------ */

/* env for qsnap: the destination, the stand-in and up to 10 extras. The
 * returned array points into a static buffer valid until the next call. */
static char **qsnap_env(const struct dest *d, const struct qs_test_standin *s,
                        const char *const *extra)
{
    static char *env[32];
    static char qurl[128];
    size_t n = 0;
    for (size_t i = 0; i < d->nenv; i++)
        env[n++] = (char *)d->env[i];
    snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=%s", s->url);
    env[n++] = qurl;
    env[n++] = "QSNAP_ADMIN_TOKEN=" TOKEN;
    env[n++] = "QSNAP_LOG_FORMAT=json";
    env[n++] = "QSNAP_COMPRESSION=none";
    env[n++] = "QSNAP_LOCAL_KEEP=1";
    env[n++] = "QSNAP_SCHEDULE=off";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
        env[n++] = (char *)extra[i];
    env[n] = NULL;
    return env;
}

static void daemon_start(struct qs_test_daemon *dm, const struct dest *d,
                         const struct qs_test_standin *s, const char *const *extra)
{
    g_daemon = dm;
    int rc = qs_test_daemon_start(dm, qsnap_env(d, s, extra));
    if (rc != 0) {
        char *log = qs_test_read_file(dm->log, NULL);
        qs_test_daemon_stop(dm, 5);
        cr_assert_fail("daemon did not start; log:\n%s", log ? log : "(none)");
    }
    /* Ready = the first probe (which also seeds the metrics) has finished. */
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", dm->url);
    if (qs_test_wait_http(url, 30) != 0) {
        char *log = qs_test_read_file(dm->log, NULL);
        qs_test_daemon_stop(dm, 5);
        cr_assert_fail("daemon never became ready; log:\n%s", log ? log : "(none)");
    }
}

static void daemon_stop(struct qs_test_daemon *dm)
{
    int st = qs_test_daemon_stop(dm, 30);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "daemon did not exit 0 on SIGTERM (status %d)", st);
}

static int run_qsnap(const struct dest *d, const struct qs_test_standin *s,
                     const char *const *extra, char *const args[], char **out)
{
    char *argv[16];
    size_t n = 0;
    argv[n++] = (char *)qs_test_env("QSNAP_TEST_BINARY");
    for (size_t i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return qs_test_run(argv, qsnap_env(d, s, extra), out);
}

static double metric_c(const char *text, const char *name, const char *coll)
{
    char s[512];
    snprintf(s, sizeof(s), "%s{collection=\"%s\"}", name, coll);
    return qs_test_metric(text, s);
}

static void assert_promtool(const char *text)
{
    char *out = NULL;
    int rc = qs_test_promtool_check(text, &out);
    cr_assert_eq(rc, 0, "promtool check metrics failed: %s\n--- input ---\n%s", out, text);
    free(out);
}

/* POST /v1/backup[?query]; returns the job id (owned) on 202, else NULL with
 * *status set. */
static char *post_backup(const struct qs_test_daemon *dm, const char *query, long *status,
                         char **body)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/v1/backup%s%s", dm->url, query != NULL ? "?" : "",
             query != NULL ? query : "");
    const char *h[] = {AUTH, NULL};
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("POST", url, h, "", 0, &r), 0);
    *status = r.status;
    char *id = NULL;
    if (r.status == 202) {
        cJSON *j = cJSON_Parse(r.body);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "job");
        cr_assert(cJSON_IsString(v), "202 without a job id: %s", r.body);
        id = strdup(v->valuestring);
        cJSON_Delete(j);
    }
    if (body != NULL) {
        *body = r.body;
        r.body = NULL;
    }
    qs_test_resp_free(&r);
    return id;
}

/* Polls GET /v1/jobs/{id} until the job is final; returns its JSON (owned). */
static cJSON *wait_job(const struct qs_test_daemon *dm, const char *id, double timeout_s)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/jobs/%s", dm->url, id);
    double end = qs_test_now_s() + timeout_s;
    for (;;) {
        cJSON *j = qs_test_http_json("GET", url, NULL, 200);
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "state");
        cr_assert(cJSON_IsString(st));
        if (strcmp(st->valuestring, "succeeded") == 0 || strcmp(st->valuestring, "failed") == 0 ||
            strcmp(st->valuestring, "cancelled") == 0)
            return j;
        cJSON_Delete(j);
        cr_assert_lt(qs_test_now_s(), end, "job %s still running after %.0f s", id, timeout_s);
        usleep(200000);
    }
}

/* The job item of coll (borrowed from job). */
static const cJSON *job_item(const cJSON *job, const char *coll)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(job, "collections"))
    {
        const char *c = qs_test_jstr(e, "collection");
        if (c != NULL && strcmp(c, coll) == 0)
            return e;
    }
    cr_assert_fail("job has no item for %s", coll);
    return NULL;
}

/* ---- verification of one backup ------------------------------------------------ */

/* Checks backup `snap` of `coll`: the manifest has every field a manifest
 * holds, with the right values, the object hashes to Qdrant's checksum, sizes
 * agree. level: 0 none, else gzip level. Returns the manifest's creation
 * time. */
static int64_t verify_backup(const struct dest *d, const struct qs_test_standin *s,
                             const char *coll, const char *snap, int level)
{
    int full = strcmp(coll, ":full") == 0;
    cJSON *snaps = full ? standin_full_snapshots(s) : standin_snapshots(s, coll);
    const cJSON *q = find_named(snaps, snap);
    cr_assert_not_null(q, "Qdrant no longer lists %s (local keep must keep the newest)", snap);
    const char *checksum = qs_test_jstr(q, "checksum");
    const char *ctime = qs_test_jstr(q, "creation_time");
    cr_assert_not_null(checksum);
    cr_assert_not_null(ctime);
    uint64_t size = (uint64_t)qs_test_jnum(q, "size");

    char key[1024], mkey[1100];
    snprintf(key, sizeof(key), "%s/%s%s", coll, snap, level > 0 ? ".gz" : "");
    snprintf(mkey, sizeof(mkey), "%s/%s.json", coll, snap);
    char *mtext = dest_read(d, mkey);
    cr_assert_not_null(mtext, "no manifest %s", mkey);
    cJSON *m = cJSON_Parse(mtext);
    cr_assert_not_null(m, "manifest is not JSON: %s", mtext);

    /* A manifest holds: collection, snapshot name, creation time, size,
     * sha256, compression, stored size, Qdrant version, points_count, vector
     * config, qsnap version. */
    cr_assert_str_eq(qs_test_jstr(m, "collection"), coll);
    cr_assert_str_eq(qs_test_jstr(m, "snapshot"), snap);
    const char *created = qs_test_jstr(m, "created");
    cr_assert_not_null(created);
    char want_created[32];
    snprintf(want_created, sizeof(want_created), "%.19sZ", ctime);
    cr_assert_str_eq(created, want_created, "manifest created %s, Qdrant says %s", created, ctime);
    int64_t t = 0;
    cr_assert_eq(qs_time_parse(created, &t), 0);
    cr_assert_eq((uint64_t)qs_test_jnum(m, "size"), size);
    cr_assert_str_eq(qs_test_jstr(m, "sha256"), checksum);
    cr_assert_str_eq(qs_test_jstr(m, "compression"), level > 0 ? "gzip" : "none");
    cr_assert_str_eq(qs_test_jstr(m, "qdrant_version"), "1.13.2");
    if (full) {
        cr_assert_str_eq(qs_test_jstr(m, "mode"), "full");
    } else {
        cr_assert_str_eq(qs_test_jstr(m, "mode"), "collections");
        cr_assert_eq(qs_test_jnum(m, "points_count"), standin_points(s, coll));
        const cJSON *vec = cJSON_GetObjectItemCaseSensitive(m, "vectors");
        cr_assert(cJSON_IsObject(vec), "manifest vectors: %s", mtext);
        cr_assert_eq(qs_test_jnum(vec, "size"), 1536.0, "vector config: %s", mtext);
        cr_assert_str_eq(qs_test_jstr(vec, "distance"), "Cosine");
    }
    cr_assert_str_eq(qs_test_jstr(m, "qsnap_version"), QSNAP_VERSION);
    cr_assert_str_eq(qs_test_jstr(m, "object"), key);
    uint64_t stored_size = (uint64_t)qs_test_jnum(m, "stored_size");

    /* The object, hashed here. */
    char sha[65];
    uint64_t n = 0;
    cr_assert_eq(dest_hash(d, key, level > 0, sha, &n, NULL), 0, "no object %s", key);
    cr_assert_str_eq(sha, checksum, "object %s does not hash to Qdrant's checksum", key);
    cr_assert_eq(n, size);
    if (level == 0) {
        cr_assert_eq(stored_size, size);
    } else {
        /* The stored (compressed) bytes. */
        char zsha[65];
        uint64_t zn = 0;
        cr_assert_eq(dest_hash(d, key, 0, zsha, &zn, NULL), 0);
        cr_assert_eq(zn, stored_size);
        cr_assert_eq(qs_test_jnum(m, "compression_level"), (double)level);
    }
    cJSON_Delete(m);
    free(mtext);
    cJSON_Delete(snaps);
    return t;
}

/* Number of Qdrant-side snapshots of coll. */
static int local_count(const struct qs_test_standin *s, const char *coll)
{
    cJSON *a = standin_snapshots(s, coll);
    int n = cJSON_GetArraySize(a);
    cJSON_Delete(a);
    return n;
}

/* ---- tests ---------------------------------------------------------------------- */

static const char *const COLLS[] = {"agent-memory-notes", "docs", "bulk"};
static const int COLL_MIB[] = {2, 40, 300};

/* Three collections through POST /v1/backup, then through `qsnap backup`,
 * then a restart: objects, manifests, local pruning, metrics. */
Test(backup, three_collections_api_cli_restart)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_s3(&d, "three");
    for (size_t i = 0; i < 3; i++)
        make_collection(&s, COLLS[i], COLL_MIB[i]);
    /* A snapshot qsnap never uploaded: local pruning must leave it alone. */
    char *foreign = standin_snapshot_now(&s, "docs");
    usleep(1100000); /* Qdrant names snapshots to the second */

    static struct qs_test_daemon dm;
    daemon_start(&dm, &d, &s, NULL);
    long st = 0;
    char *id = post_backup(&dm, NULL, &st, NULL);
    cr_assert_eq(st, 202);
    cJSON *job = wait_job(&dm, id, 600);
    char *jtext = cJSON_PrintUnformatted(job);
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded", "job: %s", jtext);
    cr_assert_str_eq(qs_test_jstr(job, "trigger"), "api");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(job, "collections")), 3, "job: %s", jtext);
    char *first[3];
    int64_t created[3];
    char *mt = qs_test_daemon_metrics(&dm);
    for (size_t i = 0; i < 3; i++) {
        const cJSON *it = job_item(job, COLLS[i]);
        cr_assert_str_eq(qs_test_jstr(it, "result"), "success", "job: %s", jtext);
        first[i] = strdup(qs_test_jstr(it, "snapshot"));
        created[i] = verify_backup(&d, &s, COLLS[i], first[i], 0);
        double size = qs_test_jnum(it, "size");
        cr_assert_eq(qs_test_jnum(it, "stored_size"), size);
        cr_assert_eq(metric_c(mt, "qsnap_backup_last_success_timestamp_seconds", COLLS[i]),
                     (double)created[i]);
        cr_assert_eq(metric_c(mt, "qsnap_backup_last_size_bytes", COLLS[i]), size);
        cr_assert_eq(metric_c(mt, "qsnap_backup_bytes_total", COLLS[i]), size);
        cr_assert_eq(metric_c(mt, "qsnap_backup_stale", COLLS[i]), 0.0);
        cr_assert_eq(qs_test_backups_total(mt, COLLS[i], "success"), 1.0);
        cr_assert_eq(qs_test_backups_total(mt, COLLS[i], "failure"), 0.0);
    }
    cr_assert_eq(qs_test_metric(mt, "qsnap_backup_in_progress"), 0.0);
    assert_promtool(mt);
    free(mt);
    free(jtext);
    cJSON_Delete(job);
    free(id);
    /* The foreign snapshot stays; qsnap's own newest is kept (LOCAL_KEEP=1). */
    cr_assert_eq(local_count(&s, "docs"), 2);
    cr_assert_eq(local_count(&s, COLLS[0]), 1);
    cr_assert_eq(local_count(&s, "bulk"), 1);

    /* GET /v1/backups lists the three. */
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/backups", dm.url);
    cJSON *bl = qs_test_http_json("GET", url, NULL, 200);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(bl, "backups")), 3);
    cJSON_Delete(bl);
    daemon_stop(&dm);

    /* The same through the command line. */
    char *out = NULL;
    char *args[] = {"backup", NULL};
    int rc = run_qsnap(&d, &s, NULL, args, &out);
    cr_assert_eq(rc, 0, "qsnap backup exited %d:\n%s", rc, out);
    free(out);
    char *largs[] = {"list", "--json", NULL};
    rc = run_qsnap(&d, &s, NULL, largs, &out);
    cr_assert_eq(rc, 0, "qsnap list: %s", out);
    cJSON *lj = cJSON_Parse(strchr(out, '{'));
    cr_assert_not_null(lj, "qsnap list --json: %s", out);
    const cJSON *arr = cJSON_GetObjectItem(lj, "backups");
    cr_assert_eq(cJSON_GetArraySize(arr), 6, "%s", out);
    int64_t newest[3] = {0, 0, 0};
    for (size_t i = 0; i < 3; i++) {
        /* Newest first: the first entry of each collection is the CLI's. */
        const cJSON *e;
        const char *snap = NULL;
        cJSON_ArrayForEach(e, arr)
        {
            if (strcmp(qs_test_jstr(e, "collection"), COLLS[i]) == 0) {
                snap = qs_test_jstr(e, "snapshot");
                break;
            }
        }
        cr_assert_not_null(snap);
        cr_assert_str_neq(snap, first[i], "the CLI run made no new backup of %s", COLLS[i]);
        newest[i] = verify_backup(&d, &s, COLLS[i], snap, 0);
        cr_assert_geq(newest[i], created[i]);
        /* LOCAL_KEEP=1: the first backup's local snapshot is gone. */
        cJSON *ls = standin_snapshots(&s, COLLS[i]);
        cr_assert_null(find_named(ls, first[i]), "%s still in Qdrant", first[i]);
        cr_assert_not_null(find_named(ls, snap));
        if (strcmp(COLLS[i], "docs") == 0)
            cr_assert_not_null(find_named(ls, foreign), "a snapshot qsnap never uploaded "
                                                        "was deleted");
        cr_assert_eq(cJSON_GetArraySize(ls), strcmp(COLLS[i], "docs") == 0 ? 2 : 1);
        cJSON_Delete(ls);
        /* The older backups stay complete at the destination. */
        char mkey[600];
        snprintf(mkey, sizeof(mkey), "%s/%s.json", COLLS[i], first[i]);
        char *old = dest_read(&d, mkey);
        cr_assert_not_null(old, "first backup's manifest vanished");
        free(old);
    }
    cJSON_Delete(lj);
    free(out);

    /* Restart: before any run, metrics come from the manifests. */
    daemon_start(&dm, &d, &s, NULL);
    mt = qs_test_daemon_metrics(&dm);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(metric_c(mt, "qsnap_backup_last_success_timestamp_seconds", COLLS[i]),
                     (double)newest[i], "%s", mt);
        cr_assert_eq(metric_c(mt, "qsnap_backup_stale", COLLS[i]), 0.0);
        cr_assert_eq(qs_test_backups_total(mt, COLLS[i], "success"), 0.0);
        double age = metric_c(mt, "qsnap_backup_age_seconds", COLLS[i]);
        cr_assert(age >= 0 && age < 900, "age %f", age);
    }
    cr_assert_eq(qs_test_metric(mt, "qsnap_backups_stored{location=\"remote\"}"), 6.0, "%s", mt);
    assert_promtool(mt);
    free(mt);
    daemon_stop(&dm);

    for (size_t i = 0; i < 3; i++)
        free(first[i]);
    free(foreign);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* A byte flipped in one collection's download: that collection fails with
 * nothing left at the destination, the others succeed, metrics count it. */
Test(backup, corrupt_download_fails_one_collection)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_s3(&d, "flip");
    const char *colls[] = {"flip-one", "flip-two", "flip-three"};
    for (size_t i = 0; i < 3; i++)
        make_collection(&s, colls[i], 2);
    /* The order makes flip-two the first download, which gets the flip. */
    const char *extra[] = {"QSNAP_COLLECTIONS=flip-two,flip-one,flip-three", NULL};
    static struct qs_test_daemon dm;
    daemon_start(&dm, &d, &s, extra);
    char *mt = qs_test_daemon_metrics(&dm);
    cr_assert_eq(qs_test_backups_total(mt, "flip-two", "failure"), 0.0, "%s", mt);
    free(mt);
    standin_post(&s, "/__standin/faults", "{\"flip_byte\":true}");
    long st = 0;
    char *id = post_backup(&dm, NULL, &st, NULL);
    cr_assert_eq(st, 202);
    cJSON *job = wait_job(&dm, id, 120);
    char *jtext = cJSON_PrintUnformatted(job);
    cr_assert_str_eq(qs_test_jstr(job, "state"), "failed", "%s", jtext);
    const cJSON *bad = job_item(job, "flip-two");
    cr_assert_str_eq(qs_test_jstr(bad, "result"), "failure", "%s", jtext);
    cr_assert_not_null(strstr(qs_test_jstr(bad, "error"), "checksum"), "%s", jtext);
    cr_assert_not_null(strstr(qs_test_jstr(job, "error"), "1 of 3"), "%s", jtext);
    for (size_t i = 0; i < 3; i += 2) {
        const cJSON *it = job_item(job, colls[i]);
        cr_assert_str_eq(qs_test_jstr(it, "result"), "success", "%s", jtext);
        verify_backup(&d, &s, colls[i], qs_test_jstr(it, "snapshot"), 0);
    }
    int n = 0;
    char *keys = dest_list(&d, "flip-two", &n);
    cr_assert_eq(n, 0, "objects left for the failed collection:\n%s", keys);
    free(keys);
    keys = dest_list(&d, "flip-one", &n);
    cr_assert_eq(n, 2, "flip-one should hold an object and a manifest:\n%s", keys);
    free(keys);

    mt = qs_test_daemon_metrics(&dm);
    cr_assert_eq(qs_test_backups_total(mt, "flip-two", "failure"), 1.0, "%s", mt);
    cr_assert_eq(qs_test_backups_total(mt, "flip-two", "success"), 0.0);
    cr_assert_eq(qs_test_backups_total(mt, "flip-one", "success"), 1.0);
    cr_assert_eq(qs_test_backups_total(mt, "flip-three", "success"), 1.0);
    cr_assert_eq(qs_test_backups_total(mt, "flip-one", "failure"), 0.0);
    cr_assert_eq(metric_c(mt, "qsnap_backup_last_success_timestamp_seconds", "flip-two"), 0.0);
    /* Never backed up, but first seen moments ago: inside its grace. */
    cr_assert_eq(metric_c(mt, "qsnap_backup_stale", "flip-two"), 0.0);
    cr_assert_gt(metric_c(mt, "qsnap_collection_first_seen_timestamp_seconds", "flip-two"), 1e9);
    cr_assert_eq(metric_c(mt, "qsnap_backup_consecutive_failures", "flip-two"), 1.0);
    cr_assert_eq(metric_c(mt, "qsnap_backup_consecutive_failures", "flip-one"), 0.0);
    cr_assert_gt(metric_c(mt, "qsnap_backup_last_attempt_timestamp_seconds", "flip-two"), 0.0);
    assert_promtool(mt);
    free(mt);
    free(jtext);
    cJSON_Delete(job);
    free(id);

    /* The next run, without the fault, succeeds for all three. */
    id = post_backup(&dm, NULL, &st, NULL);
    cr_assert_eq(st, 202);
    job = wait_job(&dm, id, 120);
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
    verify_backup(&d, &s, "flip-two", qs_test_jstr(job_item(job, "flip-two"), "snapshot"), 0);
    cJSON_Delete(job);
    free(id);
    mt = qs_test_daemon_metrics(&dm);
    cr_assert_eq(qs_test_backups_total(mt, "flip-two", "failure"), 1.0);
    cr_assert_eq(qs_test_backups_total(mt, "flip-two", "success"), 1.0);
    cr_assert_eq(metric_c(mt, "qsnap_backup_consecutive_failures", "flip-two"), 0.0);
    free(mt);
    daemon_stop(&dm);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* The same fault through `qsnap backup` to a file:// destination: exit 3. */
Test(backup, corrupt_download_cli_exits_3)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_file(&d);
    make_collection(&s, "cli-a", 2);
    make_collection(&s, "cli-b", 2);
    standin_post(&s, "/__standin/faults", "{\"flip_byte\":true}");
    char *out = NULL;
    char *args[] = {"backup", "-c", "cli-b", "-c", "cli-a", NULL};
    int rc = run_qsnap(&d, &s, NULL, args, &out);
    cr_assert_eq(rc, 3, "qsnap backup exited %d (want 3, partial success):\n%s", rc, out);
    cr_assert_not_null(strstr(out, "FAILED   cli-b"), "%s", out);
    cr_assert_not_null(strstr(out, "ok       cli-a"), "%s", out);
    free(out);
    int n = 0;
    char *keys = dest_list(&d, "cli-b", &n);
    cr_assert_eq(n, 0, "left behind for the failed collection:\n%s", keys);
    free(keys);
    /* No temporaries either (hidden files of the failed collection). */
    char path[1200];
    snprintf(path, sizeof(path), "%s/cli-b", d.dir);
    DIR *dir = opendir(path);
    struct dirent *e;
    while (dir != NULL && (e = readdir(dir)) != NULL)
        cr_assert(strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0, "left in cli-b: %s",
                  e->d_name);
    if (dir != NULL)
        closedir(dir);

    char *largs[] = {"list", "--json", NULL};
    rc = run_qsnap(&d, &s, NULL, largs, &out);
    cr_assert_eq(rc, 0, "%s", out);
    cJSON *lj = cJSON_Parse(strchr(out, '{'));
    cr_assert_not_null(lj, "%s", out);
    const cJSON *arr = cJSON_GetObjectItem(lj, "backups");
    cr_assert_eq(cJSON_GetArraySize(arr), 1, "%s", out);
    const cJSON *b = cJSON_GetArrayItem(arr, 0);
    cr_assert_str_eq(qs_test_jstr(b, "collection"), "cli-a");
    verify_backup(&d, &s, "cli-a", qs_test_jstr(b, "snapshot"), 0);
    cJSON_Delete(lj);
    free(out);

    /* All collections failing is a failure (1), not a partial success. */
    standin_post(&s, "/__standin/faults", "{\"flip_byte\":true}");
    char *args1[] = {"backup", "-c", "cli-b", NULL};
    rc = run_qsnap(&d, &s, NULL, args1, &out);
    cr_assert_eq(rc, 1, "qsnap backup exited %d (want 1):\n%s", rc, out);
    free(out);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* gzip while streaming, to a file:// destination: the stored object
 * decompresses to exactly the snapshot Qdrant produced. */
Test(backup, gzip_to_file_destination)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_file(&d);
    make_collection(&s, "zipped", 8);
    const char *extra[] = {"QSNAP_COMPRESSION=gzip:1", NULL};
    char *out = NULL;
    char *args[] = {"backup", "-c", "zipped", NULL};
    int rc = run_qsnap(&d, &s, extra, args, &out);
    cr_assert_eq(rc, 0, "qsnap backup exited %d:\n%s", rc, out);
    free(out);
    cJSON *snaps = standin_snapshots(&s, "zipped");
    cr_assert_eq(cJSON_GetArraySize(snaps), 1);
    const char *snap = qs_test_jstr(cJSON_GetArrayItem(snaps, 0), "name");
    verify_backup(&d, &s, "zipped", snap, 1);
    /* Only the .gz object and the manifest; the plain name does not exist. */
    int n = 0;
    char *keys = dest_list(&d, "zipped", &n);
    cr_assert_eq(n, 2, "%s", keys);
    char plain[1200];
    snprintf(plain, sizeof(plain), "%s/zipped/%s", d.dir, snap);
    struct stat sb;
    cr_assert_neq(stat(plain, &sb), 0, "uncompressed object exists next to the .gz");
    free(keys);
    cJSON_Delete(snaps);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* gzip to S3 through the daemon: the compressed length is unknown up front,
 * so the object goes up in several multipart parts (5 MiB parts here). */
Test(backup, gzip_to_s3_multipart)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_s3(&d, "gzip");
    make_collection(&s, "zipped-s3", 24);
    const char *extra[] = {"QSNAP_COMPRESSION=gzip:6", "QSNAP_S3_PART_SIZE=5MiB", NULL};
    static struct qs_test_daemon dm;
    daemon_start(&dm, &d, &s, extra);
    long st = 0;
    char *id = post_backup(&dm, "collection=zipped-s3", &st, NULL);
    cr_assert_eq(st, 202);
    cJSON *job = wait_job(&dm, id, 300);
    char *jtext = cJSON_PrintUnformatted(job);
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded", "%s", jtext);
    const cJSON *it = job_item(job, "zipped-s3");
    const char *obj = qs_test_jstr(it, "object");
    cr_assert_not_null(obj);
    cr_assert_eq(strcmp(obj + strlen(obj) - 3, ".gz"), 0, "object %s", obj);
    double size = qs_test_jnum(it, "size"), stored = qs_test_jnum(it, "stored_size");
    cr_assert(stored < size && stored > 5.0 * 1048576 * 2, "stored %.0f of %.0f", stored, size);
    verify_backup(&d, &s, "zipped-s3", qs_test_jstr(it, "snapshot"), 6);
    char *mt = qs_test_daemon_metrics(&dm);
    /* Bytes streamed to the destination: the compressed ones. */
    cr_assert_eq(metric_c(mt, "qsnap_backup_bytes_total", "zipped-s3"), stored);
    cr_assert_eq(metric_c(mt, "qsnap_backup_last_size_bytes", "zipped-s3"), size);
    free(mt);
    free(jtext);
    cJSON_Delete(job);
    free(id);
    daemon_stop(&dm);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* Only one job at a time: a trigger while a backup runs gets 409. */
Test(backup, trigger_while_running_is_409)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_s3(&d, "busy");
    make_collection(&s, "slow-coll", 2);
    static struct qs_test_daemon dm;
    daemon_start(&dm, &d, &s, NULL);
    standin_post(&s, "/__standin/faults", "{\"create_delay_s\":3}");
    long st = 0;
    char *id = post_backup(&dm, "collection=slow-coll", &st, NULL);
    cr_assert_eq(st, 202);
    char *body = NULL;
    char *id2 = post_backup(&dm, NULL, &st, &body);
    cr_assert_null(id2);
    cr_assert_eq(st, 409, "second trigger answered %ld: %s", st, body);
    cJSON *bj = cJSON_Parse(body);
    cr_assert_not_null(bj, "%s", body);
    cr_assert_str_eq(qs_test_jstr(bj, "job"), id, "409 should name the running job: %s", body);
    cr_assert_not_null(qs_test_jstr(bj, "error"));
    cJSON_Delete(bj);
    free(body);
    /* Restore shares the lock. */
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/restore", dm.url);
    const char *h[] = {AUTH, "Content-Type: application/json", NULL};
    struct qs_test_resp r;
    const char *rb = "{\"collection\":\"slow-coll\"}";
    cr_assert_eq(qs_test_http("POST", url, h, rb, strlen(rb), &r), 0);
    cr_assert_eq(r.status, 409, "restore during a backup answered %ld: %s", r.status, r.body);
    qs_test_resp_free(&r);
    char *mt = qs_test_daemon_metrics(&dm);
    cr_assert_eq(qs_test_metric(mt, "qsnap_backup_in_progress"), 1.0);
    free(mt);

    cJSON *job = wait_job(&dm, id, 120);
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
    cJSON_Delete(job);
    free(id);
    mt = qs_test_daemon_metrics(&dm);
    cr_assert_eq(qs_test_metric(mt, "qsnap_backup_in_progress"), 0.0);
    cr_assert_eq(qs_test_backups_total(mt, "slow-coll", "success"), 1.0);
    free(mt);
    /* The lock is free again. */
    standin_post(&s, "/__standin/faults", "{\"create_delay_s\":0}");
    id = post_backup(&dm, NULL, &st, NULL);
    cr_assert_eq(st, 202);
    job = wait_job(&dm, id, 120);
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
    cJSON_Delete(job);
    free(id);
    daemon_stop(&dm);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* Returns the id of the first job the log says was started by trigger
 * (owned), or NULL. */
static char *job_from_log(const char *log_path, const char *trigger)
{
    char *log = qs_test_read_file(log_path, NULL);
    if (log == NULL)
        return NULL;
    char want[64];
    snprintf(want, sizeof(want), "(trigger: %s)", trigger);
    char *id = NULL;
    for (char *line = strtok(log, "\n"); line != NULL && id == NULL; line = strtok(NULL, "\n")) {
        if (strstr(line, want) == NULL)
            continue;
        cJSON *j = cJSON_Parse(line);
        const char *v = qs_test_jstr(j, "job");
        if (v != NULL)
            id = strdup(v);
        cJSON_Delete(j);
    }
    free(log);
    return id;
}

/* The schedule fires at its cron time, driven through the injectable clock:
 * "5 3 * * *" with the clock starting at 03:04:57 UTC. */
Test(backup, scheduled_run_fires_at_cron_time)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_s3(&d, "sched");
    make_collection(&s, "sched-coll", 2);
    int64_t start = qs_timegm(2031, 3, 14, 3, 4, 57);
    int64_t fire = qs_timegm(2031, 3, 14, 3, 5, 0);
    char now_env[64];
    snprintf(now_env, sizeof(now_env), "QSNAP_TEST_NOW=%lld", (long long)start);
    const char *extra[] = {"QSNAP_SCHEDULE=5 3 * * *", now_env, NULL};
    static struct qs_test_daemon dm;
    double t0 = qs_test_now_s();
    daemon_start(&dm, &d, &s, extra);
    char *mt = qs_test_daemon_metrics(&dm);
    cr_assert_eq(qs_test_metric(mt, "qsnap_next_backup_timestamp_seconds"), (double)fire, "%s", mt);
    cr_assert_eq(qs_test_metric(mt, "qsnap_schedule_interval_seconds"), 86400.0);
    double before = qs_test_backups_total(mt, "sched-coll", "success");
    free(mt);
    /* Not yet: the clock is before 03:05:00 for a few more seconds. */
    if (qs_test_now_s() - t0 < 2.0) {
        cr_assert(before == 0.0 || isnan(before), "a backup ran before its time");
        cr_assert_null(job_from_log(dm.log, "schedule"), "a scheduled job started early");
    }
    double ran = -1;
    while (qs_test_now_s() - t0 < 15) {
        mt = qs_test_daemon_metrics(&dm);
        double ok = qs_test_backups_total(mt, "sched-coll", "success");
        if (ok == 1.0) {
            ran = qs_test_now_s() - t0;
            double attempt =
                metric_c(mt, "qsnap_backup_last_attempt_timestamp_seconds", "sched-coll");
            cr_assert(attempt >= (double)fire && attempt <= (double)fire + 5,
                      "attempt at %.0f, scheduled for %lld", attempt, (long long)fire);
            cr_assert_eq(qs_test_metric(mt, "qsnap_next_backup_timestamp_seconds"),
                         (double)(fire + 86400), "%s", mt);
            free(mt);
            break;
        }
        free(mt);
        usleep(200000);
    }
    cr_assert_geq(ran, 0, "no scheduled backup within 15 s");
    cr_assert_geq(ran, 1.5, "the scheduled backup ran %.1f s after start, before 03:05:00", ran);
    char *id = job_from_log(dm.log, "schedule");
    cr_assert_not_null(id, "no 'trigger: schedule' job in the log");
    cJSON *job = wait_job(&dm, id, 60);
    cr_assert_str_eq(qs_test_jstr(job, "trigger"), "schedule");
    cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
    verify_backup(&d, &s, "sched-coll", qs_test_jstr(job_item(job, "sched-coll"), "snapshot"), 0);
    cJSON_Delete(job);
    free(id);
    daemon_stop(&dm);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* Several runs in quick succession never reuse a snapshot name: Qdrant names
 * snapshots to the second and would overwrite the earlier one. */
Test(backup, quick_successive_runs_get_distinct_snapshots)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_s3(&d, "guard");
    make_collection(&s, "quick", 1);
    static struct qs_test_daemon dm;
    daemon_start(&dm, &d, &s, NULL);
    char *names[3];
    for (int i = 0; i < 3; i++) {
        long st = 0;
        char *id = post_backup(&dm, "collection=quick", &st, NULL);
        cr_assert_eq(st, 202);
        cJSON *job = wait_job(&dm, id, 60);
        cr_assert_str_eq(qs_test_jstr(job, "state"), "succeeded");
        names[i] = strdup(qs_test_jstr(job_item(job, "quick"), "snapshot"));
        for (int k = 0; k < i; k++)
            cr_assert_str_neq(names[k], names[i], "run %d reused snapshot name %s", i + 1,
                              names[i]);
        cJSON_Delete(job);
        free(id);
    }
    /* Three complete backups at the destination, each with its own object. */
    for (int i = 0; i < 3; i++) {
        char mkey[600];
        snprintf(mkey, sizeof(mkey), "quick/%s.json", names[i]);
        char *mtext = dest_read(&d, mkey);
        cr_assert_not_null(mtext, "no manifest for %s", names[i]);
        cJSON *m = cJSON_Parse(mtext);
        char key[600], sha[65];
        snprintf(key, sizeof(key), "quick/%s", names[i]);
        uint64_t n = 0;
        cr_assert_eq(dest_hash(&d, key, 0, sha, &n, NULL), 0);
        cr_assert_str_eq(sha, qs_test_jstr(m, "sha256"));
        cJSON_Delete(m);
        free(mtext);
    }
    verify_backup(&d, &s, "quick", names[2], 0);
    cr_assert_eq(local_count(&s, "quick"), 1);
    for (int i = 0; i < 3; i++)
        free(names[i]);
    daemon_stop(&dm);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* A static web server on loopback whose request log is at log_path; serves
 * dir. Returns its base URL in url. */
static void web_start(const char *dir, const char *log_path, char *url, size_t cap)
{
    int port = qs_test_free_port();
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_PYTHON"),
                    "-m",
                    "http.server",
                    portstr,
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    (char *)dir,
                    NULL};
    g_web = qs_test_spawn(argv, NULL, log_path);
    cr_assert_gt(g_web, 0);
    snprintf(url, cap, "http://127.0.0.1:%d", port);
    char probe[128];
    snprintf(probe, sizeof(probe), "%s/", url);
    cr_assert_eq(qs_test_wait_http(probe, 20), 0, "web server did not start");
}

static int count_in_file(const char *path, const char *needle)
{
    char *t = qs_test_read_file(path, NULL);
    int n = 0;
    for (const char *p = t; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(t);
    return n;
}

/* QSNAP_HEARTBEAT_URL is pinged after a fully successful run only. */
Test(backup, heartbeat_after_full_success_only)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_file(&d);
    make_collection(&s, "hb-a", 1);
    make_collection(&s, "hb-b", 1);
    char *web = qs_test_mkdtemp("backup-web");
    char beat[600], log[600], url[128], env[300];
    snprintf(beat, sizeof(beat), "%s/beat", web);
    FILE *f = fopen(beat, "w");
    cr_assert_not_null(f);
    fputs("ok\n", f);
    fclose(f);
    snprintf(log, sizeof(log), "%s.log", web);
    web_start(web, log, url, sizeof(url));
    snprintf(env, sizeof(env), "QSNAP_HEARTBEAT_URL=%s/beat", url);
    const char *extra[] = {env, NULL};
    int before = count_in_file(log, "GET /beat");

    /* Partial failure: no ping. */
    standin_post(&s, "/__standin/faults", "{\"flip_byte\":true}");
    char *out = NULL;
    char *args[] = {"backup", "-c", "hb-a", "-c", "hb-b", NULL};
    int rc = run_qsnap(&d, &s, extra, args, &out);
    cr_assert_eq(rc, 3, "%s", out);
    free(out);
    cr_assert_eq(count_in_file(log, "GET /beat"), before, "heartbeat sent after a failed run");

    /* Full success: one ping. */
    rc = run_qsnap(&d, &s, extra, args, &out);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    cr_assert_eq(count_in_file(log, "GET /beat"), before + 1, "no heartbeat after a good run");

    qs_test_kill(g_web);
    g_web = -1;
    qs_test_rmrf(web);
    unlink(log);
    free(web);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* QSNAP_MAX_BANDWIDTH caps the upload rate. */
Test(backup, bandwidth_cap_slows_the_stream)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_file(&d);
    make_collection(&s, "capped", 8);
    cJSON *pre = standin_snapshots(&s, "capped");
    cr_assert_eq(cJSON_GetArraySize(pre), 0);
    cJSON_Delete(pre);
    const char *extra[] = {"QSNAP_MAX_BANDWIDTH=4MiB/s", NULL};
    char *out = NULL;
    char *args[] = {"backup", "-c", "capped", NULL};
    double t0 = qs_test_now_s();
    int rc = run_qsnap(&d, &s, extra, args, &out);
    double took = qs_test_now_s() - t0;
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    cJSON *snaps = standin_snapshots(&s, "capped");
    const cJSON *q = cJSON_GetArrayItem(snaps, 0);
    cr_assert_not_null(q);
    double mib = qs_test_jnum(q, "size") / 1048576.0;
    /* About 8 MiB at 4 MiB/s: at least ~1.9 s (the first chunk is free). */
    cr_assert_geq(took, (mib - 0.5) / 4.0, "%.1f MiB in %.2f s: faster than 4 MiB/s", mib, took);
    cr_assert_lt(took, 60.0);
    verify_backup(&d, &s, "capped", qs_test_jstr(q, "name"), 0);
    cJSON_Delete(snaps);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* QSNAP_MODE=full backs up one full-storage snapshot under ":full". */
Test(backup, full_storage_mode)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_file(&d);
    make_collection(&s, "full-a", 1);
    make_collection(&s, "full-b", 1);
    const char *extra[] = {"QSNAP_MODE=full", NULL};
    char *out = NULL;
    char *args[] = {"backup", NULL};
    int rc = run_qsnap(&d, &s, extra, args, &out);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    char *largs[] = {"list", "--json", NULL};
    rc = run_qsnap(&d, &s, extra, largs, &out);
    cr_assert_eq(rc, 0, "%s", out);
    cJSON *lj = cJSON_Parse(strchr(out, '{'));
    cr_assert_not_null(lj, "%s", out);
    const cJSON *arr = cJSON_GetObjectItem(lj, "backups");
    cr_assert_eq(cJSON_GetArraySize(arr), 1, "%s", out);
    const cJSON *b = cJSON_GetArrayItem(arr, 0);
    cr_assert_str_eq(qs_test_jstr(b, "collection"), ":full");
    cr_assert_str_eq(qs_test_jstr(b, "mode"), "full");
    verify_backup(&d, &s, ":full", qs_test_jstr(b, "snapshot"), 0);
    cJSON_Delete(lj);
    free(out);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* ---- helpers of the tests below ------------------------------------------------ */

/* `qsnap list --json` (owned cJSON) after asserting it exits 0. */
static cJSON *list_json(const struct dest *d, const struct qs_test_standin *s)
{
    char *out = NULL;
    char *largs[] = {"list", "--json", NULL};
    int rc = run_qsnap(d, s, NULL, largs, &out);
    cr_assert_eq(rc, 0, "qsnap list exited %d:\n%s", rc, out);
    cJSON *lj = cJSON_Parse(strchr(out, '{'));
    cr_assert_not_null(lj, "%s", out);
    free(out);
    return lj;
}

/* ---- a missing (unmounted) file:// destination -------------------------------- */

Test(backup, missing_file_destination_is_an_error)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_file(&d);
    make_collection(&s, "m", 1);
    char *out = NULL;
    char *args[] = {"backup", "-c", "m", NULL};
    int rc = run_qsnap(&d, &s, NULL, args, &out);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    cJSON *lj = list_json(&d, &s);
    char *snap =
        strdup(qs_test_jstr(cJSON_GetArrayItem(cJSON_GetObjectItem(lj, "backups"), 0), "snapshot"));
    cJSON_Delete(lj);

    static struct qs_test_daemon dm;
    daemon_start(&dm, &d, &s, NULL);
    char url[1200];
    snprintf(url, sizeof(url), "%s/v1/backups?collection=other", dm.url);
    const char *h[] = {AUTH, NULL};
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("GET", url, h, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200, "a collection without backups is simply empty: %s", r.body);
    qs_test_resp_free(&r);

    /* The volume goes away. */
    char moved[1200];
    snprintf(moved, sizeof(moved), "%s.away", d.dir);
    cr_assert_eq(rename(d.dir, moved), 0);
    char gone[1300];
    snprintf(gone, sizeof(gone), "file destination %s does not exist", d.dir);

    snprintf(url, sizeof(url), "%s/v1/backups", dm.url);
    cr_assert_eq(qs_test_http("GET", url, h, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 503, "GET /v1/backups: %ld %s", r.status, r.body);
    cr_assert_not_null(strstr(r.body, gone), "%s", r.body);
    qs_test_resp_free(&r);
    char body[1200];
    const char *hj[] = {AUTH, "Content-Type: application/json", NULL};
    snprintf(url, sizeof(url), "%s/v1/restore", dm.url);
    const char *latest = "{\"collection\":\"m\",\"target\":\"m-copy\"}";
    cr_assert_eq(qs_test_http("POST", url, hj, latest, strlen(latest), &r), 0);
    cr_assert_eq(r.status, 503, "restore latest: %ld %s", r.status, r.body);
    cr_assert_not_null(strstr(r.body, gone), "%s", r.body);
    qs_test_resp_free(&r);
    snprintf(body, sizeof(body), "{\"collection\":\"m\",\"snapshot\":\"%s\",\"target\":\"m-copy\"}",
             snap);
    cr_assert_eq(qs_test_http("POST", url, hj, body, strlen(body), &r), 0);
    cr_assert_eq(r.status, 503, "restore by name: %ld %s", r.status, r.body);
    cr_assert_not_null(strstr(r.body, gone), "%s", r.body);
    qs_test_resp_free(&r);

    char *largs[] = {"list", NULL};
    rc = run_qsnap(&d, &s, NULL, largs, &out);
    cr_assert_eq(rc, 1, "qsnap list exited %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, gone), "%s", out);
    free(out);
    char *rargs[] = {"restore", "-c", "m", "--to", "m-copy", NULL};
    rc = run_qsnap(&d, &s, NULL, rargs, &out);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert_not_null(strstr(out, gone), "%s", out);
    cr_assert_null(strstr(out, "no backup"), "%s", out);
    free(out);

    /* Back: everything is there again. */
    cr_assert_eq(rename(moved, d.dir), 0);
    snprintf(url, sizeof(url), "%s/v1/backups", dm.url);
    cr_assert_eq(qs_test_http("GET", url, h, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_not_null(strstr(r.body, snap), "%s", r.body);
    qs_test_resp_free(&r);
    daemon_stop(&dm);
    free(snap);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

/* ---- a snapshot name handed out twice (Qdrant's clock stands still) ----------- */

/* The stand-in's state of collection coll (owned). */
static cJSON *standin_coll_state(const struct qs_test_standin *s, const char *coll)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/state", s->url);
    cJSON *j = qs_test_http_json("GET", url, NULL, 200);
    cJSON *c = cJSON_DetachItemFromObjectCaseSensitive(cJSON_GetObjectItem(j, "collections"), coll);
    cJSON_Delete(j);
    cr_assert_not_null(c, "stand-in has no collection %s", coll);
    return c;
}

/* Checks that the backup whose manifest text was `mtext` is still complete
 * and unchanged: same manifest bytes, object hashing to its sha256, listed. */
static void assert_backup_intact(const struct dest *d, const struct qs_test_standin *s,
                                 const char *coll, const char *snap, const char *mtext)
{
    char key[1024], mkey[1100];
    snprintf(key, sizeof(key), "%s/%s", coll, snap);
    snprintf(mkey, sizeof(mkey), "%s/%s.json", coll, snap);
    char *now = dest_read(d, mkey);
    cr_assert_not_null(now, "the manifest %s of the older backup is gone", mkey);
    cr_assert_str_eq(now, mtext, "the manifest %s changed", mkey);
    free(now);
    cJSON *m = cJSON_Parse(mtext);
    char sha[65];
    uint64_t n = 0;
    cr_assert_eq(dest_hash(d, key, 0, sha, &n, NULL), 0,
                 "the object %s of the older backup is gone", key);
    cr_assert_str_eq(sha, qs_test_jstr(m, "sha256"), "the object %s changed", key);
    cr_assert_eq(n, (uint64_t)qs_test_jnum(m, "size"));
    cJSON_Delete(m);
    cJSON *lj = list_json(d, s);
    const cJSON *arr = cJSON_GetObjectItem(lj, "backups");
    int found = 0;
    const cJSON *b;
    cJSON_ArrayForEach(b, arr) found += strcmp(qs_test_jstr(b, "snapshot"), snap) == 0;
    cr_assert_eq(found, 1, "the older backup is not listed");
    cJSON_Delete(lj);
}

/* With Qdrant's clock frozen every snapshot gets the same name. A good
 * backup, then a corrupted download of the same name: the good backup must
 * survive untouched and restorable. A second backup in the same second is
 * refused (not stored under another key: a backup's key is its snapshot
 * name), naming the existing backup and the clock. */
static void same_snapshot_name(int s3)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    if (s3)
        dest_s3(&d, "frozen");
    else
        dest_file(&d);
    make_collection(&s, "frozen", 2);
    standin_post(&s, "/__standin/time", "{\"offset_s\":0,\"freeze\":true}");

    char *out = NULL;
    char *args[] = {"backup", "-c", "frozen", NULL};
    int rc = run_qsnap(&d, &s, NULL, args, &out);
    cr_assert_eq(rc, 0, "first backup exited %d:\n%s", rc, out);
    free(out);
    cJSON *lj = list_json(&d, &s);
    const cJSON *arr = cJSON_GetObjectItem(lj, "backups");
    cr_assert_eq(cJSON_GetArraySize(arr), 1);
    char *snap = strdup(qs_test_jstr(cJSON_GetArrayItem(arr, 0), "snapshot"));
    cJSON_Delete(lj);
    verify_backup(&d, &s, "frozen", snap, 0);
    char mkey[1100];
    snprintf(mkey, sizeof(mkey), "frozen/%s.json", snap);
    char *mtext = dest_read(&d, mkey);
    cr_assert_not_null(mtext);

    /* The same name again, and its download corrupted. */
    standin_post(&s, "/__standin/faults", "{\"flip_byte\":true}");
    rc = run_qsnap(&d, &s, NULL, args, &out);
    cr_assert_eq(rc, 1, "second backup exited %d:\n%s", rc, out);
    char want[600];
    snprintf(want, sizeof(want), "Qdrant named a new snapshot %s again", snap);
    cr_assert_not_null(strstr(out, want), "%s", out);
    snprintf(want, sizeof(want), "%s already exists at the destination", mkey);
    cr_assert_not_null(strstr(out, want), "%s", out);
    cr_assert_not_null(strstr(out, "asking Qdrant for another snapshot"), "%s", out);
    cr_assert_not_null(strstr(out, "\"msg\":\"backup failed\""), "%s", out);
    cr_assert_not_null(strstr(out, "\"phase\":\"snapshot\""), "%s", out);
    free(out);
    assert_backup_intact(&d, &s, "frozen", snap, mtext);

    /* A second backup in the same second, no fault: refused as well. */
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/faults", s.url);
    cJSON_Delete(qs_test_http_json("DELETE", url, NULL, 200));
    rc = run_qsnap(&d, &s, NULL, args, &out);
    cr_assert_eq(rc, 1, "same-second backup exited %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, want), "%s", out);
    free(out);
    assert_backup_intact(&d, &s, "frozen", snap, mtext);
    int n = 0;
    char *keys = dest_list(&d, "frozen", &n);
    cr_assert_eq(n, 2, "only the older backup's object and manifest:\n%s", keys);
    free(keys);

    /* Still restorable, byte for byte. */
    char *rargs[] = {"restore", "-c", "frozen", "--to", "frozen-copy", NULL};
    rc = run_qsnap(&d, &s, NULL, rargs, &out);
    cr_assert_eq(rc, 0, "restore exited %d:\n%s", rc, out);
    free(out);
    cJSON *m = cJSON_Parse(mtext);
    cJSON *c = standin_coll_state(&s, "frozen-copy");
    cr_assert_str_eq(qs_test_jstr(c, "restored_from_sha256"), qs_test_jstr(m, "sha256"));
    cJSON_Delete(c);
    cJSON_Delete(m);

    /* Once the clock moves again, backups resume. */
    standin_post(&s, "/__standin/time", "{\"offset_s\":0,\"freeze\":false}");
    usleep(1100000);
    rc = run_qsnap(&d, &s, NULL, args, &out);
    cr_assert_eq(rc, 0, "backup after the clock moved exited %d:\n%s", rc, out);
    free(out);
    lj = list_json(&d, &s);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(lj, "backups")), 2);
    cJSON_Delete(lj);
    assert_backup_intact(&d, &s, "frozen", snap, mtext);
    free(mtext);
    free(snap);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

Test(backup, same_snapshot_name_file_keeps_the_older_backup)
{
    same_snapshot_name(0);
}

Test(backup, same_snapshot_name_s3_keeps_the_older_backup)
{
    same_snapshot_name(1);
}

/* Two `qsnap backup` processes within the same second (the in-process guard
 * cannot see the other one), or a clock that stood still for a moment: the
 * second backup gets a snapshot name of its own once Qdrant's clock has moved
 * on, and both backups are kept. */
static void same_second_moving_clock(int s3)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    if (s3)
        dest_s3(&d, "second");
    else
        dest_file(&d);
    make_collection(&s, "twice", 1);
    standin_post(&s, "/__standin/time", "{\"offset_s\":0,\"freeze\":true}");
    char *out = NULL;
    char *args[] = {"backup", "-c", "twice", NULL};
    int rc = run_qsnap(&d, &s, NULL, args, &out);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);

    /* The same name again; the clock moves on while qsnap waits to ask
     * once more. */
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "backup", "-c", "twice", NULL};
    char log[600];
    snprintf(log, sizeof(log), "%s.log", s.dir);
    pid_t pid = qs_test_spawn(argv, qsnap_env(&d, &s, NULL), log);
    cr_assert_gt(pid, 0);
    double end = qs_test_now_s() + 30;
    char *text = NULL;
    for (;;) {
        free(text);
        text = qs_test_read_file(log, NULL);
        if (text != NULL && strstr(text, "asking Qdrant for another snapshot") != NULL)
            break;
        cr_assert_lt(qs_test_now_s(), end, "qsnap never asked again:\n%s", text ? text : "");
        usleep(20000);
    }
    free(text);
    standin_post(&s, "/__standin/time", "{\"offset_s\":0,\"freeze\":false}");
    int status = 0;
    cr_assert_eq(qs_test_wait_exit(pid, 60, &status), 0);
    text = qs_test_read_file(log, NULL);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "second backup failed:\n%s", text);
    free(text);
    unlink(log);

    cJSON *lj = list_json(&d, &s);
    const cJSON *arr = cJSON_GetObjectItem(lj, "backups");
    cr_assert_eq(cJSON_GetArraySize(arr), 2);
    cr_assert_str_neq(qs_test_jstr(cJSON_GetArrayItem(arr, 0), "snapshot"),
                      qs_test_jstr(cJSON_GetArrayItem(arr, 1), "snapshot"));
    cJSON_Delete(lj);
    /* Qdrant keeps only the newest (QSNAP_LOCAL_KEEP=1), never the deleted
     * one with the taken name. */
    cr_assert_eq(local_count(&s, "twice"), 1);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

Test(backup, same_second_file_gets_its_own_name)
{
    same_second_moving_clock(0);
}

Test(backup, same_second_s3_gets_its_own_name)
{
    same_second_moving_clock(1);
}

/* ---- collection names Qdrant allows ----------------------------------------------- */

/* A leading dot and the longest names (the limit is derived in
 * test_manifest.c from Qdrant v1.13.2's rules) are backed up, listed and
 * restored; keys escape the dot so nothing is hidden. */
static void odd_names(int s3)
{
    static struct qs_test_standin s;
    g_standin = &s;
    const char *peer[] = {"--peer-id", "1", NULL}; /* the shortest snapshot names */
    cr_assert_eq(qs_test_standin_start(&s, peer), 0);
    static struct dest d;
    if (s3)
        dest_s3(&d, "names");
    else
        dest_file(&d);
    /* 211 bytes: the stand-in's own archive name ("-arc-" and 8 random
     * characters) is 2 bytes longer than Qdrant's. */
    char longname[212];
    memset(longname, 'l', 211);
    longname[211] = '\0';
    make_collection(&s, ".hidden", 1);
    make_collection(&s, longname, 1);
    char colls[300];
    snprintf(colls, sizeof(colls), "QSNAP_COLLECTIONS=.hidden,%s", longname);
    const char *extra[] = {colls, NULL};
    char *out = NULL;
    char *args[] = {"check-config", NULL};
    int rc = run_qsnap(&d, &s, extra, args, &out);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    char *bargs[] = {"backup", NULL};
    rc = run_qsnap(&d, &s, extra, bargs, &out);
    cr_assert_eq(rc, 0, "backup exited %d:\n%s", rc, out);
    free(out);

    cJSON *lj = list_json(&d, &s);
    const cJSON *arr = cJSON_GetObjectItem(lj, "backups");
    cr_assert_eq(cJSON_GetArraySize(arr), 2);
    const cJSON *b;
    int seen = 0;
    cJSON_ArrayForEach(b, arr)
    {
        const char *c = qs_test_jstr(b, "collection");
        const char *snap = qs_test_jstr(b, "snapshot");
        char key[1200];
        if (strcmp(c, ".hidden") == 0) {
            snprintf(key, sizeof(key), ":.hidden/:%s", snap);
            cr_assert_str_eq(qs_test_jstr(b, "object"), key);
            seen |= 1;
        } else {
            cr_assert_str_eq(c, longname);
            snprintf(key, sizeof(key), "%s/%s", longname, snap);
            cr_assert_str_eq(qs_test_jstr(b, "object"), key);
            seen |= 2;
        }
        char sha[65];
        uint64_t n;
        cr_assert_eq(dest_hash(&d, key, 0, sha, &n, NULL), 0, "no object %s", key);
        cr_assert_str_eq(sha, qs_test_jstr(b, "sha256"));
    }
    cr_assert_eq(seen, 3);
    cJSON_Delete(lj);

    char *rargs[] = {"restore", "-c", ".hidden", "--to", "hidden-copy", NULL};
    rc = run_qsnap(&d, &s, extra, rargs, &out);
    cr_assert_eq(rc, 0, "restore exited %d:\n%s", rc, out);
    free(out);
    cJSON *c = standin_coll_state(&s, "hidden-copy");
    cr_assert_not_null(qs_test_jstr(c, "restored_from_sha256"));
    cJSON_Delete(c);
    /* Local pruning found the verified backups (it lists by the same keys). */
    cr_assert_eq(local_count(&s, ".hidden"), 1);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}

Test(backup, leading_dot_and_long_names_file)
{
    odd_names(0);
}

Test(backup, leading_dot_and_long_names_s3)
{
    odd_names(1);
}

/* ---- the phase that failed --------------------------------------------------- */

/* The "backup failed" log line in out names phase. */
static void assert_failed_in(const char *out, const char *phase)
{
    const char *line = strstr(out, "\"msg\":\"backup failed\"");
    cr_assert_not_null(line, "no failure line:\n%s", out);
    const char *end = strchr(line, '\n');
    char want[64];
    snprintf(want, sizeof(want), "\"phase\":\"%s\"", phase);
    const char *p = strstr(line, want);
    cr_assert(p != NULL && (end == NULL || p < end), "the failure is not logged in phase %s:\n%s",
              phase, out);
}

/* A checksum mismatch fails in "verify", in the log line and the job item;
 * a manifest that cannot be written fails in "manifest" (and its object,
 * which this run stored, is removed). */
Test(backup, failures_name_their_phase)
{
    static struct qs_test_standin s;
    standin_start(&s);
    static struct dest d;
    dest_file(&d);
    make_collection(&s, "ph", 2);

    static struct qs_test_daemon dm;
    daemon_start(&dm, &d, &s, NULL);
    standin_post(&s, "/__standin/faults", "{\"flip_byte\":true}");
    long st = 0;
    char *id = post_backup(&dm, "collection=ph", &st, NULL);
    cr_assert_eq(st, 202);
    cJSON *job = wait_job(&dm, id, 120);
    char *jtext = cJSON_PrintUnformatted(job);
    const cJSON *it = job_item(job, "ph");
    cr_assert_str_eq(qs_test_jstr(it, "result"), "failure", "%s", jtext);
    cr_assert_not_null(qs_test_jstr(it, "phase"), "%s", jtext);
    cr_assert_str_eq(qs_test_jstr(it, "phase"), "verify", "%s", jtext);
    free(jtext);
    cJSON_Delete(job);
    free(id);
    char *log = qs_test_read_file(dm.log, NULL); /* stopping removes it */
    cr_assert_not_null(log);
    assert_failed_in(log, "verify");
    free(log);
    daemon_stop(&dm);

    /* Manifest: a directory where the manifest must go. */
    standin_post(&s, "/__standin/time", "{\"offset_s\":0,\"freeze\":true}");
    char *snap = standin_snapshot_now(&s, "ph"); /* the name the backup will get */
    char path[1400];
    snprintf(path, sizeof(path), "%s/ph/%s.json", d.dir, snap);
    char cmd[1600];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", path);
    cr_assert_eq(system(cmd), 0);
    char *out = NULL;
    char *args[] = {"backup", "-c", "ph", NULL};
    int rc = run_qsnap(&d, &s, NULL, args, &out);
    cr_assert_eq(rc, 1, "backup exited %d:\n%s", rc, out);
    assert_failed_in(out, "manifest");
    cr_assert_not_null(strstr(out, "already exists"), "%s", out);
    free(out);
    int n = 0;
    char *keys = dest_list(&d, "ph", &n);
    cr_assert_eq(n, 1, "only the directory in the manifest's place is left:\n%s", keys);
    free(keys);
    free(snap);
    dest_cleanup(&d);
    qs_test_standin_stop(&s);
}
