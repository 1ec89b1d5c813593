/* Fault injection: the real qsnap binary against the Qdrant stand-in (with
 * its fault hooks) and radosgw behind a loopback TCP fault proxy (test/proxy.h)
 * that cuts, stalls, refuses or answers 503 SlowDown. After every case the
 * same invariants are checked (check_invariants):
 *   - every manifest names an object whose SHA-256 and size match it;
 *   - no multipart upload is left open under the test's prefix;
 *   - no incomplete object (one without a manifest) and, for file://, no
 *     temporary file;
 *   - no secret (S3 secret key, admin token, Qdrant API key) in qsnap's logs.
 * The `security` suite reviews the HTTP endpoint from the outside. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <zlib.h>

#include "proxy.h"
#include "qsnap/manifest.h"
#include "qsnap/qdrant.h"
#include "qsnap/util.h"
#include "support.h"

#define TOKEN "faults-admin-token-0123456789abcdef"
#define AUTH "Authorization: Bearer " TOKEN
#define QDRANT_KEY "faults-qdrant-api-key-9876543210"
#define MiB (1024 * 1024)

/* ---- per-test state, released by teardown even after a failed assertion --- */

struct env {
    struct qs_test_standin standin;
    int standin_up;
    struct qs_proxy *proxy;
    char prefix[160]; /* S3 key prefix inside the bucket ("" for file://) */
    char *dir;        /* file:// destination (owned) */
    char *mnt;        /* tmpfs mount point (owned) */
    int mounted;
    pid_t daemon;
    int port;
    char url[64];
    char log[600]; /* daemon log file, kept across restarts */
};

static struct env E;

static void s3_cleanup_prefix(void);

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&E, 0, sizeof(E));
    E.daemon = -1;
}

static void teardown(void)
{
    if (E.daemon > 0)
        qs_test_kill(E.daemon);
    E.daemon = -1;
    if (E.standin_up)
        qs_test_standin_stop(&E.standin);
    E.standin_up = 0;
    if (E.proxy != NULL)
        qs_proxy_free(E.proxy);
    E.proxy = NULL;
    if (E.prefix[0] != '\0')
        s3_cleanup_prefix();
    if (E.mounted)
        umount2(E.mnt, MNT_DETACH);
    E.mounted = 0;
    if (E.mnt != NULL) {
        rmdir(E.mnt);
        free(E.mnt);
        E.mnt = NULL;
    }
    if (E.dir != NULL) {
        qs_test_rmrf(E.dir);
        free(E.dir);
        E.dir = NULL;
    }
    if (E.log[0] != '\0')
        unlink(E.log);
    E.log[0] = '\0';
    curl_global_cleanup();
}

TestSuite(faults, .init = setup, .fini = teardown);
TestSuite(security, .init = setup, .fini = teardown);

/* ---- direct S3 access (libcurl's own SigV4, never through the proxy) -------- */

struct hash_sink {
    struct qs_sha256 h;
    uint64_t n;
    struct qs_buf *keep;
    z_stream z;
    int inflating, zdone, zerr;
};

static size_t hash_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    struct hash_sink *s = ud;
    size_t len = size * nmemb;
    if (s->keep != NULL)
        qs_buf_append(s->keep, p, len);
    if (!s->inflating) {
        qs_sha256_update(&s->h, p, len);
        s->n += len;
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
        qs_sha256_update(&s->h, out, sizeof(out) - s->z.avail_out);
        s->n += sizeof(out) - s->z.avail_out;
        if (zr == Z_STREAM_END)
            s->zdone = 1;
    }
    return len;
}

/* Text between <tag> and </tag> starting at *p; advances *p. Owned or NULL. */
static char *xml_next(const char **p, const char *tag)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = strstr(*p, open);
    if (a == NULL)
        return NULL;
    a += strlen(open);
    const char *b = strstr(a, close);
    if (b == NULL)
        return NULL;
    *p = b + strlen(close);
    /* keys here never contain entities other than &amp; (none are used) */
    return strndup(a, (size_t)(b - a));
}

/* Keys under "E.prefix/" (full keys). Returns the count; *keys owned. */
static size_t s3_keys(char ***keys)
{
    char q[400];
    snprintf(q, sizeof(q), "?list-type=2&prefix=%s%%2F", E.prefix);
    struct qs_buf b;
    qs_buf_init(&b);
    long st = qs_test_s3_request("GET", q, qs_test_buf_sink, &b);
    cr_assert_eq(st, 200, "list: HTTP %ld", st);
    cr_assert_null(strstr(b.data, "<IsTruncated>true"));
    size_t n = 0;
    char **v = calloc(1024, sizeof(*v));
    const char *p = b.data;
    char *k;
    while (n < 1023 && (k = xml_next(&p, "Key")) != NULL)
        v[n++] = k;
    qs_buf_free(&b);
    *keys = v;
    return n;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Open multipart uploads under the prefix: count, keys and ids (owned). */
static size_t s3_uploads(char ***keys, char ***ids)
{
    char q[400];
    snprintf(q, sizeof(q), "?prefix=%s%%2F&uploads=", E.prefix);
    struct qs_buf b;
    qs_buf_init(&b);
    long st = qs_test_s3_request("GET", q, qs_test_buf_sink, &b);
    cr_assert_eq(st, 200, "list uploads: HTTP %ld: %s", st, b.data ? b.data : "");
    size_t n = 0;
    char **kv = calloc(1024, sizeof(*kv)), **iv = calloc(1024, sizeof(*iv));
    const char *p = b.data;
    const char *u;
    while (n < 1023 && (u = strstr(p, "<Upload>")) != NULL) {
        p = u;
        kv[n] = xml_next(&p, "Key");
        iv[n] = xml_next(&p, "UploadId");
        n++;
    }
    qs_buf_free(&b);
    *keys = kv;
    *ids = iv;
    return n;
}

static void s3_cleanup_prefix(void)
{
    char **k, **ids;
    size_t n = s3_uploads(&k, &ids);
    for (size_t i = 0; i < n; i++) {
        char path[1500];
        if (k[i] == NULL || ids[i] == NULL)
            continue;
        snprintf(path, sizeof(path), "%s?uploadId=%s", k[i], ids[i]);
        struct qs_buf ig;
        qs_buf_init(&ig);
        qs_test_s3_request("DELETE", path, qs_test_buf_sink, &ig);
        qs_buf_free(&ig);
    }
    strv_free(k, n);
    strv_free(ids, n);
    n = s3_keys(&k);
    for (size_t i = 0; i < n; i++) {
        struct qs_buf ig;
        qs_buf_init(&ig);
        qs_test_s3_request("DELETE", k[i], qs_test_buf_sink, &ig);
        qs_buf_free(&ig);
    }
    strv_free(k, n);
    E.prefix[0] = '\0';
}

/* ---- destinations ------------------------------------------------------------- */

/* Reads key (relative to the destination) into keep and/or hashes it. Returns
 * 0, or -1 when missing. */
static int dest_fetch(const char *key, int gunzip, char sha[65], uint64_t *n, struct qs_buf *keep)
{
    struct hash_sink s = {.keep = keep, .inflating = gunzip};
    cr_assert_eq(qs_sha256_init(&s.h), 0);
    if (gunzip)
        cr_assert_eq(inflateInit2(&s.z, 15 + 16), Z_OK);
    int found = 0;
    char path[1500];
    if (E.dir == NULL) {
        snprintf(path, sizeof(path), "%s/%s", E.prefix, key);
        long st = qs_test_s3_request("GET", path, hash_cb, &s);
        cr_assert(st == 200 || st == 404, "GET %s: HTTP %ld", path, st);
        found = st == 200;
    } else {
        snprintf(path, sizeof(path), "%s/%s", E.dir, key);
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
    if (gunzip) {
        cr_assert(!found || (s.zdone && !s.zerr), "%s: not a complete gzip stream", key);
        inflateEnd(&s.z);
    }
    qs_sha256_final(&s.h, sha);
    if (n != NULL)
        *n = s.n;
    return found ? 0 : -1;
}

/* Relative keys at the destination (owned); temporaries of a file://
 * destination are returned in *tmps (count). */
static size_t dest_keys(char ***keys, size_t *tmps)
{
    *tmps = 0;
    if (E.dir == NULL) {
        char **full;
        size_t n = s3_keys(&full);
        size_t plen = strlen(E.prefix) + 1;
        for (size_t i = 0; i < n; i++)
            memmove(full[i], full[i] + plen, strlen(full[i] + plen) + 1);
        *keys = full;
        return n;
    }
    char **v = calloc(1024, sizeof(*v));
    size_t n = 0;
    DIR *top = opendir(E.dir);
    struct dirent *c;
    while (top != NULL && (c = readdir(top)) != NULL) {
        if (strcmp(c->d_name, ".") == 0 || strcmp(c->d_name, "..") == 0)
            continue;
        if (strstr(c->d_name, ".qsnap-") != NULL) {
            (*tmps)++;
            continue;
        }
        char sub[1200];
        snprintf(sub, sizeof(sub), "%s/%s", E.dir, c->d_name);
        DIR *d = opendir(sub);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL && n < 1023) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (strstr(e->d_name, ".qsnap-tmp-") != NULL || strstr(e->d_name, ".qsnap-mtmp-")) {
                (*tmps)++;
                continue;
            }
            if (e->d_name[0] == '.')
                continue; /* metadata sidecars */
            char k[1200];
            snprintf(k, sizeof(k), "%s/%s", c->d_name, e->d_name);
            v[n++] = strdup(k);
        }
        if (d != NULL)
            closedir(d);
    }
    if (top != NULL)
        closedir(top);
    *keys = v;
    return n;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* ---- the invariants ------------------------------------------------------------ */

/* Secrets that must never be logged. */
static const char *secret_values(size_t i)
{
    switch (i) {
    case 0:
        return qs_test_env("QSNAP_TEST_S3_SECRET_KEY");
    case 1:
        return TOKEN;
    case 2:
        return QDRANT_KEY;
    default:
        return NULL;
    }
}

static void assert_no_secret(const char *what, const char *text)
{
    for (size_t i = 0; secret_values(i) != NULL; i++)
        cr_assert_null(strstr(text, secret_values(i)), "%s contains secret #%zu:\n%s", what, i,
                       text);
}

/* The object that o (a manifest, or one shard of it; borrowed) names under
 * "object" exists, hashes to its "sha256" and has its "size"; marks it in
 * referenced (by index in keys). */
static void check_named_object(const char *mkey, const cJSON *o, int gz, char **keys, size_t n,
                               char *referenced)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(o, "object");
    const cJSON *msha = cJSON_GetObjectItemCaseSensitive(o, "sha256");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "size");
    cr_assert(cJSON_IsString(obj) && cJSON_IsString(msha) && cJSON_IsNumber(size),
              "manifest %s lacks object, sha256 or size", mkey);
    char sha[65];
    uint64_t got = 0;
    cr_assert_eq(dest_fetch(obj->valuestring, gz, sha, &got, NULL), 0,
                 "manifest %s names a missing object %s", mkey, obj->valuestring);
    cr_assert_str_eq(sha, msha->valuestring, "object %s does not hash to its manifest",
                     obj->valuestring);
    cr_assert_eq(got, (uint64_t)size->valuedouble, "object %s size", obj->valuestring);
    for (size_t j = 0; j < n; j++)
        if (strcmp(keys[j], obj->valuestring) == 0)
            referenced[j] = 1;
}

/* Asserts the invariants; returns the number of complete backups found. */
static size_t check_invariants(const char *extra_log)
{
    char **keys;
    size_t tmps = 0;
    size_t n = dest_keys(&keys, &tmps);
    cr_assert_eq(tmps, 0, "temporary files left at the destination");
    size_t manifests = 0;
    char *referenced = calloc(n + 1, 1);
    for (size_t i = 0; i < n; i++) {
        if (!ends_with(keys[i], ".json"))
            continue;
        manifests++;
        struct qs_buf b;
        qs_buf_init(&b);
        char sha[65];
        cr_assert_eq(dest_fetch(keys[i], 0, sha, NULL, &b), 0);
        cJSON *m = cJSON_ParseWithLength(b.data, b.len);
        cr_assert_not_null(m, "manifest %s is not JSON", keys[i]);
        const cJSON *comp = cJSON_GetObjectItemCaseSensitive(m, "compression");
        cr_assert(cJSON_IsString(comp), "manifest %s lacks compression: %s", keys[i], b.data);
        int gz = strcmp(comp->valuestring, "gzip") == 0;
        const cJSON *shards = cJSON_GetObjectItemCaseSensitive(m, "shards");
        if (cJSON_GetArraySize(shards) > 0) {
            /* the shards method: every shard object it names */
            const cJSON *sh;
            cJSON_ArrayForEach(sh, shards)
            {
                check_named_object(keys[i], sh, gz, keys, n, referenced);
            }
        } else {
            check_named_object(keys[i], m, gz, keys, n, referenced);
            cr_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "stored_size")),
                      "manifest %s lacks stored_size: %s", keys[i], b.data);
        }
        cJSON_Delete(m);
        qs_buf_free(&b);
    }
    for (size_t i = 0; i < n; i++)
        cr_assert(ends_with(keys[i], ".json") || referenced[i],
                  "object %s has no manifest (incomplete object left)", keys[i]);
    free(referenced);
    strv_free(keys, n);
    if (E.dir == NULL) {
        char **uk, **ui;
        size_t nu = s3_uploads(&uk, &ui);
        cr_assert_eq(nu, 0, "%zu multipart upload(s) left open (first: %s)", nu,
                     nu > 0 && uk[0] ? uk[0] : "");
        strv_free(uk, nu);
        strv_free(ui, nu);
    }
    if (E.log[0] != '\0') {
        char *log = qs_test_read_file(E.log, NULL);
        if (log != NULL)
            assert_no_secret("qsnap's log", log);
        free(log);
    }
    if (extra_log != NULL)
        assert_no_secret("qsnap's output", extra_log);
    return manifests;
}

/* ---- peers ------------------------------------------------------------------------ */

static void standin_start(void)
{
    const char *args[] = {"--api-key", QDRANT_KEY, NULL};
    cr_assert_eq(qs_test_standin_start(&E.standin, args), 0, "Qdrant stand-in did not start");
    E.standin_up = 1;
}

static cJSON *http_json(const char *method, const char *url, const char *body, long want)
{
    const char *const h[] = {"Content-Type: application/json", "api-key: " QDRANT_KEY, AUTH, NULL};
    return qs_test_http_json_h(method, url, h, body, want);
}

static void standin_post(const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", E.standin.url, path);
    cJSON_Delete(http_json("POST", url, body, 200));
}

static void make_collection(const char *name, int mib)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"size_mib\":%d,\"dim\":1536}", name, mib);
    standin_post("/__standin/collections", body);
}

static double standin_counter(const char *name)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/__standin/state", E.standin.url);
    cJSON *j = http_json("GET", url, NULL, 200);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(j, "counters"), name);
    cr_assert(cJSON_IsNumber(v), "stand-in has no counter %s", name);
    double d = v->valuedouble;
    cJSON_Delete(j);
    return d;
}

/* S3 destination through a fresh proxy in front of radosgw. */
static void dest_s3_proxied(const char *tag)
{
    static int counter;
    const char *ep = qs_test_env("QSNAP_TEST_S3_ENDPOINT");
    const char *colon = strrchr(ep, ':');
    cr_assert(strncmp(ep, "http://127.0.0.1:", 17) == 0 && colon != NULL,
              "QSNAP_TEST_S3_ENDPOINT must be http://127.0.0.1:PORT (got %s)", ep);
    E.proxy = qs_proxy_new("127.0.0.1", atoi(colon + 1));
    cr_assert_not_null(E.proxy);
    snprintf(E.prefix, sizeof(E.prefix), "t-faults-%ld-%ld-%s-%d", (long)getpid(),
             (long)(time(NULL) % 100000), tag, ++counter);
}

/* The environment of every qsnap process of a test (static storage). */
static char **qsnap_env(const char *const *extra)
{
    static char *env[48];
    static char v[12][1200];
    size_t n = 0, k = 0;
    if (E.dir != NULL) {
        snprintf(v[k], sizeof(v[k]), "QSNAP_DESTINATION=file://%s", E.dir);
        env[n++] = v[k++];
    } else {
        snprintf(v[k], sizeof(v[k]), "QSNAP_DESTINATION=s3://%s/%s",
                 qs_test_env("QSNAP_TEST_S3_BUCKET"), E.prefix);
        env[n++] = v[k++];
        snprintf(v[k], sizeof(v[k]), "QSNAP_S3_ENDPOINT=%s", qs_proxy_url(E.proxy));
        env[n++] = v[k++];
        snprintf(v[k], sizeof(v[k]), "QSNAP_S3_ACCESS_KEY_ID=%s",
                 qs_test_env("QSNAP_TEST_S3_ACCESS_KEY"));
        env[n++] = v[k++];
        snprintf(v[k], sizeof(v[k]), "QSNAP_S3_SECRET_ACCESS_KEY=%s",
                 qs_test_env("QSNAP_TEST_S3_SECRET_KEY"));
        env[n++] = v[k++];
        snprintf(v[k], sizeof(v[k]), "QSNAP_S3_REGION=%s", qs_test_s3_region());
        env[n++] = v[k++];
        env[n++] = "QSNAP_S3_PART_SIZE=5MiB";
    }
    snprintf(v[k], sizeof(v[k]), "QSNAP_QDRANT_URL=%s", E.standin.url);
    env[n++] = v[k++];
    env[n++] = "QSNAP_QDRANT_API_KEY=" QDRANT_KEY;
    env[n++] = "QSNAP_ADMIN_TOKEN=" TOKEN;
    env[n++] = "QSNAP_LOG_FORMAT=json";
    env[n++] = "QSNAP_LOG_LEVEL=debug";
    env[n++] = "QSNAP_COMPRESSION=none";
    env[n++] = "QSNAP_LOCAL_KEEP=1";
    env[n++] = "QSNAP_SCHEDULE=off";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 47; i++)
        env[n++] = (char *)extra[i];
    env[n] = NULL;
    return env;
}

/* Starts `qsnap serve` with its log appended to E.log. wait_ready: wait for
 * /readyz 200 as well. */
static void daemon_start(const char *const *extra, int wait_ready)
{
    if (E.log[0] == '\0') {
        char *dir = qs_test_mkdtemp("faults-log");
        snprintf(E.log, sizeof(E.log), "%s.log", dir);
        qs_test_rmrf(dir);
        free(dir);
    }
    E.port = qs_test_free_port();
    snprintf(E.url, sizeof(E.url), "http://127.0.0.1:%d", E.port);
    char listen[64];
    snprintf(listen, sizeof(listen), "QSNAP_LISTEN=127.0.0.1:%d", E.port);
    char **base = qsnap_env(extra);
    char *env[64];
    size_t n = 0;
    env[n++] = listen;
    for (size_t i = 0; base[i] != NULL && n < 63; i++)
        env[n++] = base[i];
    env[n] = NULL;
    const char *vg = getenv("QSNAP_TEST_VALGRIND");
    char *argv[16];
    size_t a = 0;
    char *vgcopy = NULL;
    if (vg != NULL && *vg != '\0') {
        /* the same wrapper support.c applies (scripts/valgrind.sh) */
        vgcopy = strdup(vg);
        for (char *t = strtok(vgcopy, " "); t != NULL && a < 12; t = strtok(NULL, " "))
            argv[a++] = t;
    }
    argv[a++] = (char *)qs_test_env("QSNAP_TEST_BINARY");
    argv[a++] = "serve";
    argv[a] = NULL;
    E.daemon = qs_test_spawn(argv, env, E.log);
    free(vgcopy);
    cr_assert_gt(E.daemon, 0);
    char url[128];
    snprintf(url, sizeof(url), "%s/%s", E.url, wait_ready ? "readyz" : "healthz");
    if (qs_test_wait_http(url, vg != NULL && *vg != '\0' ? 120 : 40) != 0) {
        char *log = qs_test_read_file(E.log, NULL);
        cr_assert_fail("daemon did not become %s; log:\n%s", wait_ready ? "ready" : "healthy",
                       log ? log : "(none)");
    }
}

/* SIGTERM; returns the seconds it took to exit 0 (asserted). */
static double daemon_term(double limit_s)
{
    double t0 = qs_test_now_s();
    kill(E.daemon, SIGTERM);
    int st = 0;
    int rc = qs_test_wait_exit(E.daemon, limit_s, &st);
    double dt = qs_test_now_s() - t0;
    if (rc != 0)
        qs_test_kill(E.daemon);
    E.daemon = -1;
    cr_assert_eq(rc, 0, "qsnap did not exit within %.0f s of SIGTERM", limit_s);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "qsnap exit status %d after SIGTERM", st);
    return dt;
}

static char *daemon_get(const char *path, long *status)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", E.url, path);
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("GET", url, NULL, NULL, 0, &r), 0, "GET %s: no answer", path);
    if (status != NULL)
        *status = r.status;
    char *b = r.body;
    r.body = NULL;
    qs_test_resp_free(&r);
    return b;
}

static char *post_backup(void)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/backup", E.url);
    const char *h[] = {AUTH, NULL};
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("POST", url, h, "", 0, &r), 0);
    cr_assert_eq(r.status, 202, "POST /v1/backup: %ld %s", r.status, r.body);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "job");
    cr_assert(cJSON_IsString(v));
    char *id = strdup(v->valuestring);
    cJSON_Delete(j);
    qs_test_resp_free(&r);
    return id;
}

static cJSON *job_get(const char *id)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/jobs/%s", E.url, id);
    return http_json("GET", url, NULL, 200);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static cJSON *wait_job(const char *id, double timeout_s)
{
    double end = qs_test_now_s() + timeout_s;
    for (;;) {
        cJSON *j = job_get(id);
        const char *st = jstr(j, "state");
        if (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0 ||
            strcmp(st, "cancelled") == 0)
            return j;
        cJSON_Delete(j);
        cr_assert_lt(qs_test_now_s(), end, "job %s still running after %.0f s", id, timeout_s);
        usleep(200000);
    }
}

/* Runs one backup through the API and returns the final job (owned). */
static cJSON *backup_now(double timeout_s)
{
    char *id = post_backup();
    cJSON *j = wait_job(id, timeout_s);
    free(id);
    return j;
}

static void assert_job(cJSON *job, const char *state)
{
    char *t = cJSON_PrintUnformatted(job);
    cr_assert_str_eq(jstr(job, "state"), state, "job: %s", t);
    free(t);
}

/* Waits until the running job has streamed at least bytes. */
static void wait_job_bytes(const char *id, double bytes, double timeout_s)
{
    double end = qs_test_now_s() + timeout_s;
    for (;;) {
        cJSON *j = job_get(id);
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "bytes");
        double v = cJSON_IsNumber(b) ? b->valuedouble : 0;
        char *t = cJSON_PrintUnformatted(j);
        int running = strcmp(jstr(j, "state"), "running") == 0;
        cJSON_Delete(j);
        cr_assert(running, "job ended before %.0f bytes: %s", bytes, t);
        free(t);
        if (v >= bytes)
            return;
        cr_assert_lt(qs_test_now_s(), end, "job %s streamed only %.0f bytes", id, v);
        usleep(100000);
    }
}

static int log_contains(const char *needle)
{
    char *log = qs_test_read_file(E.log, NULL);
    int found = log != NULL && strstr(log, needle) != NULL;
    free(log);
    return found;
}

/* ---- S3 faults ---------------------------------------------------------------- */

Test(faults, s3_connection_cut_mid_upload)
{
    standin_start();
    dest_s3_proxied("cut");
    make_collection("cut", 24);
    daemon_start(NULL, 1);
    /* 8 MiB into the upload: inside the second 5 MiB part */
    qs_proxy_cut_after(E.proxy, 8 * MiB);
    cJSON *job = backup_now(300);
    assert_job(job, "succeeded");
    cJSON_Delete(job);
    struct qs_proxy_stats ps;
    qs_proxy_stats(E.proxy, &ps);
    cr_assert_eq(ps.cuts, 1, "the proxy never cut a connection");
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1);
}

Test(faults, s3_slowdown_then_recovers)
{
    standin_start();
    dest_s3_proxied("slow");
    make_collection("slow", 12);
    daemon_start(NULL, 1);
    qs_proxy_inject_503(E.proxy, 4);
    cJSON *job = backup_now(300);
    assert_job(job, "succeeded");
    cJSON_Delete(job);
    struct qs_proxy_stats ps;
    qs_proxy_stats(E.proxy, &ps);
    /* an injection slot is spent per new connection; a connection the client
     * drops before sending a request is not counted */
    cr_assert(ps.injected >= 2 && ps.injected <= 4, "the proxy answered %llu requests with 503",
              (unsigned long long)ps.injected);
    /* The single PUT cannot be resumed: the backup re-streams and logs it. */
    cr_assert(log_contains("SlowDown") || log_contains("503") || log_contains("retrying"),
              "no retry of the 503 was logged");
    char *mt = daemon_get("/metrics", NULL);
    cr_assert_eq(qs_test_backups_total(mt, "slow", "success"), 1.0, "%s", mt);
    free(mt);
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1);
}

/* Backs coll up while the proxy loses every answer to the methods (as for
 * qs_proxy_lose_answers) on manifest keys; asserts the job's state, that the
 * job or the log holds `says`, the backups_total result, and that what is
 * left is the stored manifest with its object. */
static void backup_losing_manifest_answers(const char *coll, const char *methods, const char *state,
                                           const char *says, const char *result)
{
    standin_start();
    dest_s3_proxied(coll);
    make_collection(coll, 2);
    const char *fast[] = {"QSNAP_TEST_RETRY_BASE_MS=20", NULL};
    daemon_start(fast, 1);
    qs_proxy_lose_answers(E.proxy, methods, ".json");
    cJSON *job = backup_now(120);
    assert_job(job, state);
    char *t = cJSON_PrintUnformatted(job);
    cr_assert(strstr(t, says) != NULL || log_contains(says), "'%s' not said; job: %s", says, t);
    free(t);
    cJSON_Delete(job);
    struct qs_proxy_stats ps;
    qs_proxy_stats(E.proxy, &ps);
    /* every attempt of the backup (5) and of the S3 client (6 each) */
    cr_assert_geq(ps.lost, 25, "the proxy lost only %llu answers", (unsigned long long)ps.lost);
    qs_proxy_lose_answers(E.proxy, NULL, NULL);
    char *mt = daemon_get("/metrics", NULL);
    cr_assert_eq(qs_test_backups_total(mt, coll, result), 1.0, "%s", mt);
    free(mt);
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1, "the stored manifest and its object must both stay");
}

/* The manifest PUT reaches radosgw, which stores it, but no answer of it (nor
 * of its retries, which the If-None-Match condition refuses) comes back: the
 * backup reads the key back, finds its own manifest and succeeds, and the
 * object it names is kept (deleting it would leave a stored manifest naming
 * a missing object). */
Test(faults, s3_manifest_stored_but_every_answer_lost)
{
    backup_losing_manifest_answers("lost", "PUT", "succeeded",
                                   "reported a failure, but it is stored as written", "success");
}

/* As above, and reading the manifest back fails too: whether it is stored
 * cannot be told, so the backup fails and keeps the object the manifest may
 * name. What is left is the complete backup (the manifest was stored). Not
 * HEAD: the check that the keys are free comes first. */
Test(faults, s3_manifest_in_doubt_keeps_its_object)
{
    backup_losing_manifest_answers("doubt", "PUT|GET", "failed", "may or may not be stored",
                                   "failure");
    cr_assert(log_contains("keeping the 1 stored object(s) of this run"), "no keep logged");
}

/* The shards method, manifest in doubt: every shard object of the run stays
 * with the manifest that names them. */
Test(faults, s3_manifest_in_doubt_keeps_every_shard_object)
{
    standin_start();
    dest_s3_proxied("doubt-shards");
    standin_post("/__standin/collections",
                 "{\"name\":\"ds\",\"points\":60,\"dim\":8,\"shard_number\":3}");
    const char *env[] = {"QSNAP_TEST_RETRY_BASE_MS=20", "QSNAP_SNAPSHOT_METHOD=shards", NULL};
    daemon_start(env, 1);
    qs_proxy_lose_answers(E.proxy, "PUT|GET", ".json");
    cJSON *job = backup_now(120);
    assert_job(job, "failed");
    char *t = cJSON_PrintUnformatted(job);
    cr_assert(strstr(t, "may or may not be stored") != NULL, "job: %s", t);
    free(t);
    cJSON_Delete(job);
    cr_assert(log_contains("keeping the 3 stored object(s) of this run"), "no keep logged");
    qs_proxy_lose_answers(E.proxy, NULL, NULL);
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1, "the stored manifest and its shards must all stay");
    char **keys;
    size_t tmps = 0, n = dest_keys(&keys, &tmps);
    cr_assert_eq(n, 4, "3 shard objects and their manifest, nothing else");
    strv_free(keys, n);
}

Test(faults, s3_unreachable_at_startup_then_back)
{
    standin_start();
    dest_s3_proxied("down");
    make_collection("down", 2);
    qs_proxy_set_refuse(E.proxy, 1);
    daemon_start(NULL, 0);
    /* /readyz: 503 naming the destination once the first probe is done */
    long st = 0;
    char *body = NULL;
    double end = qs_test_now_s() + 60;
    for (;;) {
        body = daemon_get("/readyz", &st);
        if (st == 503 && strstr(body, "destination: ") != NULL)
            break;
        cr_assert_lt(qs_test_now_s(), end, "/readyz: %ld %s", st, body);
        free(body);
        usleep(200000);
    }
    assert_no_secret("/readyz", body);
    cr_assert_not_null(strstr(body, "\"error\""), "%s", body);
    cr_assert_null(strstr(body, "qdrant:"), "Qdrant is up: %s", body);
    free(body);
    char *mt = daemon_get("/metrics", NULL);
    cr_assert_eq(qs_test_metric(mt, "qsnap_destination_up"), 0.0, "%s", mt);
    cr_assert_eq(qs_test_metric(mt, "qsnap_qdrant_up"), 1.0, "%s", mt);
    free(mt);

    cJSON *job = backup_now(300);
    assert_job(job, "failed");
    char *jt = cJSON_PrintUnformatted(job);
    assert_no_secret("job", jt);
    free(jt);
    cJSON_Delete(job);
    mt = daemon_get("/metrics", NULL);
    cr_assert_eq(qs_test_backups_total(mt, "down", "failure"), 1.0, "%s", mt);
    cr_assert_eq(qs_test_backups_total(mt, "down", "success"), 0.0, "%s", mt);
    /* never backed up, but first seen moments ago: inside its grace */
    cr_assert_eq(qs_test_metric(mt, "qsnap_backup_stale{collection=\"down\"}"), 0.0, "%s", mt);
    cr_assert_eq(qs_test_metric(mt, "qsnap_backup_consecutive_failures{collection=\"down\"}"), 1.0,
                 "%s", mt);
    cr_assert_eq(qs_test_metric(mt, "qsnap_backup_in_progress"), 0.0, "%s", mt);
    free(mt);

    /* back: the next probe turns ready, and a backup succeeds */
    qs_proxy_set_refuse(E.proxy, 0);
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", E.url);
    cr_assert_eq(qs_test_wait_http(url, 45), 0, "never ready after the destination came back");
    mt = daemon_get("/metrics", NULL);
    cr_assert_eq(qs_test_metric(mt, "qsnap_destination_up"), 1.0, "%s", mt);
    free(mt);
    job = backup_now(300);
    assert_job(job, "succeeded");
    cJSON_Delete(job);
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1);
}

/* S3 goes away while a snapshot streams into its PUT: the upload fails inside
 * the download's sink. The job item must name that S3 failure (the cause), not
 * only that writing the stream failed, in the phase that failed. */
Test(faults, s3_failure_mid_stream_names_the_cause)
{
    standin_start();
    dest_s3_proxied("cause");
    make_collection("cause", 48);
    const char *extra[] = {"QSNAP_MAX_BANDWIDTH=8MiB/s", NULL};
    daemon_start(extra, 1);
    char *id = post_backup();
    wait_job_bytes(id, 8.0 * MiB, 120);
    /* open connections are reset, new ones refused (also for the retries) */
    qs_proxy_set_refuse(E.proxy, 1);
    qs_proxy_reset_all(E.proxy);
    cJSON *job = wait_job(id, 300);
    free(id);
    char *jt = cJSON_PrintUnformatted(job);
    assert_job(job, "failed");
    const cJSON *item = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(job, "collections"), 0);
    const char *error = jstr(item, "error");
    cr_assert_str_eq(jstr(item, "phase"), "stream", "%s", jt);
    cr_assert_not_null(strstr(error, "writing the stream failed: s3 PUT cause/"),
                       "the item's error does not name the S3 failure: %s", jt);
    cr_assert_null(strstr(error, ": ETRANSPORT"), "only the code of the cause: %s", jt);
    free(jt);
    cJSON_Delete(job);
    qs_proxy_set_refuse(E.proxy, 0);
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 0, "a failed backup left a manifest");
}

/* ---- Qdrant faults ---------------------------------------------------------------- */

Test(faults, qdrant_500_on_create_is_retried)
{
    standin_start();
    dest_s3_proxied("q500");
    make_collection("q500", 2);
    daemon_start(NULL, 1);
    standin_post("/__standin/faults", "{\"fail_creates\":2}");
    double creates0 = standin_counter("creates");
    cJSON *job = backup_now(300);
    assert_job(job, "succeeded");
    cJSON_Delete(job);
    cr_assert_eq(standin_counter("creates") - creates0, 3.0, "2 failed creates + 1 success");
    cr_assert(log_contains("create snapshot failed"), "the retry was not logged");
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1);
}

Test(faults, qdrant_dies_mid_download)
{
    standin_start();
    dest_s3_proxied("qcut");
    make_collection("qcut", 16);
    daemon_start(NULL, 1);
    /* the connection closes 7 MiB into the download (a part was uploaded) */
    standin_post("/__standin/faults", "{\"cut_download_after\":7340032}");
    cJSON *job = backup_now(300);
    assert_job(job, "succeeded");
    cJSON_Delete(job);
    cr_assert_geq(standin_counter("downloads"), 2.0, "the cut download was not retried");
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1);
}

Test(faults, qdrant_stalls_until_timeouts)
{
    standin_start();
    dest_s3_proxied("stall");
    make_collection("stall", 2);
    const char *extra[] = {"QSNAP_TEST_QDRANT_TIMEOUT_MS=1500", "QSNAP_COLLECTIONS=stall", NULL};
    daemon_start(extra, 1);
    standin_post("/__standin/faults", "{\"stall_s\":600}");
    double t0 = qs_test_now_s();
    cJSON *job = backup_now(300);
    double dt = qs_test_now_s() - t0;
    assert_job(job, "failed");
    char *jt = cJSON_PrintUnformatted(job);
    cr_assert(strstr(jt, "time") != NULL || strstr(jt, "Timeout") != NULL,
              "the failure does not say it timed out: %s", jt);
    free(jt);
    cJSON_Delete(job);
    cr_assert_lt(dt, 120.0, "a stalled Qdrant held the job %.0f s", dt);
    char *mt = daemon_get("/metrics", NULL);
    cr_assert_eq(qs_test_backups_total(mt, "stall", "failure"), 1.0, "%s", mt);
    free(mt);
    /* Qdrant recovers: the next run succeeds */
    standin_post("/__standin/faults", "{\"stall_s\":0}");
    job = backup_now(300);
    assert_job(job, "succeeded");
    cJSON_Delete(job);
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1);
}

Test(faults, qdrant_corrupted_snapshot)
{
    standin_start();
    dest_s3_proxied("flip");
    make_collection("flip", 12);
    daemon_start(NULL, 1);
    standin_post("/__standin/faults", "{\"flip_byte\":true}");
    cJSON *job = backup_now(300);
    assert_job(job, "failed");
    char *jt = cJSON_PrintUnformatted(job);
    cr_assert_not_null(strstr(jt, "checksum"), "%s", jt);
    free(jt);
    cJSON_Delete(job);
    cr_assert_eq(check_invariants(NULL), 0, "a corrupted snapshot became a backup");
    job = backup_now(300);
    assert_job(job, "succeeded");
    cJSON_Delete(job);
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1);
}

/* ---- signals ------------------------------------------------------------------------ */

/* A known size goes to S3 as one streaming PUT; gzip makes the size unknown,
 * so these two cases use gzip to exercise the multipart path. */
Test(faults, sigterm_mid_upload_aborts_multipart)
{
    standin_start();
    dest_s3_proxied("term");
    make_collection("term", 96);
    const char *extra[] = {"QSNAP_MAX_BANDWIDTH=8MiB/s", "QSNAP_COMPRESSION=gzip:1", NULL};
    daemon_start(extra, 1);
    char *id = post_backup();
    wait_job_bytes(id, 12.0 * MiB, 120);
    free(id);
    /* a multipart upload is open now */
    char **uk, **ui;
    size_t nu = s3_uploads(&uk, &ui);
    strv_free(uk, nu);
    strv_free(ui, nu);
    cr_assert_eq(nu, 1, "expected one open multipart upload mid-backup");
    double dt = daemon_term(25);
    cr_assert_lt(dt, 25.0);
    cr_assert_eq(check_invariants(NULL), 0, "a manifest was written for an aborted backup");
    cr_assert(log_contains("abort") || log_contains("cancel"), "no abort was logged");
}

Test(faults, sigterm_mid_single_put_stores_nothing)
{
    standin_start();
    dest_s3_proxied("term1");
    make_collection("term1", 96);
    const char *extra[] = {"QSNAP_MAX_BANDWIDTH=8MiB/s", NULL};
    daemon_start(extra, 1);
    char *id = post_backup();
    wait_job_bytes(id, 12.0 * MiB, 120);
    free(id);
    double dt = daemon_term(25);
    cr_assert_lt(dt, 25.0);
    /* The PUT was cut off mid-body: S3 keeps nothing, and no manifest exists. */
    char **uk, **ui;
    size_t nu = s3_uploads(&uk, &ui);
    strv_free(uk, nu);
    strv_free(ui, nu);
    cr_assert_eq(nu, 0, "a single PUT must not leave a multipart upload");
    cr_assert_eq(check_invariants(NULL), 0, "a manifest was written for an aborted backup");
    cr_assert(log_contains("cancel"), "no cancellation was logged");
}

Test(faults, sigkill_mid_upload_then_restart_sweeps_orphan)
{
    standin_start();
    dest_s3_proxied("kill");
    make_collection("kill", 96);
    const char *slow[] = {"QSNAP_MAX_BANDWIDTH=8MiB/s", "QSNAP_COMPRESSION=gzip:1", NULL};
    daemon_start(slow, 1);
    char *id = post_backup();
    wait_job_bytes(id, 12.0 * MiB, 120);
    free(id);
    qs_test_kill(E.daemon);
    E.daemon = -1;
    char **uk, **ui;
    size_t nu = s3_uploads(&uk, &ui);
    strv_free(uk, nu);
    strv_free(ui, nu);
    cr_assert_eq(nu, 1, "SIGKILL should leave the multipart upload open");

    /* Restart 25 h later (test clock): the next run succeeds and the sweep
     * aborts the orphaned upload (unfinished uploads older than 24 h are
     * aborted). */
    char later[64];
    snprintf(later, sizeof(later), "QSNAP_TEST_NOW=%lld", (long long)time(NULL) + 25 * 3600);
    const char *extra[] = {later, NULL};
    usleep(1100000); /* never two snapshots of a collection in one second */
    daemon_start(extra, 1);
    cJSON *job = backup_now(300);
    assert_job(job, "succeeded");
    cJSON_Delete(job);
    char *mt = daemon_get("/metrics", NULL);
    double swept =
        qs_test_metric(mt, "qsnap_prune_deleted_total{kind=\"multipart\",location=\"remote\"}");
    if (isnan(swept))
        swept =
            qs_test_metric(mt, "qsnap_prune_deleted_total{location=\"remote\",kind=\"multipart\"}");
    cr_assert_eq(swept, 1.0, "the orphaned upload was not counted as swept:\n%s", mt);
    free(mt);
    daemon_term(25);
    cr_assert_eq(check_invariants(NULL), 1);
}

/* ---- file:// on a full filesystem -------------------------------------------------- */

Test(faults, file_destination_full_filesystem)
{
    if (geteuid() != 0)
        cr_skip_test("mounting a tmpfs needs root (CI runs as root)");
    standin_start();
    E.mnt = qs_test_mkdtemp("faults-tmpfs");
    cr_assert_eq(mount("qsnap-test", E.mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=0755"), 0,
                 "mount tmpfs: %s", strerror(errno));
    E.mounted = 1;
    E.dir = strdup(E.mnt);
    make_collection("full", 24);
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "backup", NULL};
    char *out = NULL;
    int rc = qs_test_run(argv, qsnap_env(NULL), &out);
    cr_assert_eq(rc, 1, "qsnap backup on a full filesystem exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "No space left") != NULL || strstr(out, "ENOSPC") != NULL,
              "the failure does not name the full disk:\n%s", out);
    /* ... and it is reported in the phase that failed, not as "snapshot". */
    const char *failed = strstr(out, "\"msg\":\"backup failed\"");
    cr_assert_not_null(failed, "%s", out);
    const char *eol = strchr(failed, '\n');
    const char *ph = strstr(failed, "\"phase\":\"stream\"");
    cr_assert(ph != NULL && (eol == NULL || ph < eol), "not failed in phase stream:\n%s", out);
    cr_assert_eq(check_invariants(out), 0);
    free(out);
    /* the temporaries are gone, so the space is free again */
    struct stat sb;
    char **keys;
    size_t tmps;
    size_t n = dest_keys(&keys, &tmps);
    strv_free(keys, n);
    cr_assert_eq(n, 0);
    cr_assert_eq(stat(E.mnt, &sb), 0);
    /* a collection that fits now succeeds on the same filesystem */
    make_collection("fits", 2);
    const char *extra[] = {"QSNAP_COLLECTIONS=fits", NULL};
    rc = qs_test_run(argv, qsnap_env(extra), &out);
    cr_assert_eq(rc, 0, "qsnap backup of a small collection exited %d:\n%s", rc, out);
    cr_assert_eq(check_invariants(out), 1);
    free(out);
    free(E.dir);
    E.dir = NULL;
}

/* ---- HTTP security review --------------------------------------------------------------- */

/* Raw request over a socket (libcurl normalises paths); returns the status
 * line's code and the response in *resp (owned). */
/* 1 when b holds a whole response: its head and, when it says one, a body of
 * Content-Length bytes. A response without a length is whole at the close. */
static int response_complete(const struct qs_buf *b)
{
    const char *head_end = b->data != NULL ? strstr(b->data, "\r\n\r\n") : NULL;
    if (head_end == NULL)
        return 0;
    const char *cl = strcasestr(b->data, "\r\ncontent-length:");
    if (cl == NULL || cl > head_end)
        return 0;
    size_t body = strtoul(cl + strlen("\r\ncontent-length:"), NULL, 10);
    return b->len >= (size_t)(head_end + 4 - b->data) + body;
}

/* Sends req on a new connection and reads the answer: until the server
 * closes, 10 s pass, or a whole response arrived (the server keeps the
 * connection open for the next request). */
static int raw_http(const char *req, char **resp)
{
    char cmd[64];
    (void)cmd;
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    curl_easy_setopt(c, CURLOPT_URL, E.url);
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    size_t sent = 0, len = strlen(req);
    while (sent < len) {
        size_t n = 0;
        CURLcode rc = curl_easy_send(c, req + sent, len - sent, &n);
        if (rc == CURLE_AGAIN) {
            usleep(1000);
            continue;
        }
        cr_assert_eq(rc, CURLE_OK);
        sent += n;
    }
    struct qs_buf b;
    qs_buf_init(&b);
    double end = qs_test_now_s() + 10;
    for (;;) {
        char buf[4096];
        size_t n = 0;
        CURLcode rc = curl_easy_recv(c, buf, sizeof(buf), &n);
        if (rc == CURLE_AGAIN) {
            if (qs_test_now_s() > end)
                break;
            usleep(1000);
            continue;
        }
        if (rc != CURLE_OK || n == 0)
            break;
        qs_buf_append(&b, buf, n);
        if (response_complete(&b))
            break;
    }
    curl_easy_cleanup(c);
    int status = 0;
    if (b.data != NULL)
        sscanf(b.data, "HTTP/1.%*d %d", &status);
    *resp = b.data != NULL ? b.data : strdup("");
    return status;
}

static int raw_status(const char *req)
{
    char *r;
    int st = raw_http(req, &r);
    assert_no_secret("response", r);
    free(r);
    return st;
}

static void security_daemon(void)
{
    standin_start();
    E.dir = qs_test_mkdtemp("faults-sec");
    make_collection("sec", 1);
    daemon_start(NULL, 1);
}

Test(security, method_and_path_tricks_never_reach_post_handlers)
{
    security_daemon();
    const char *body = "{\"collection\":\"sec\"}";
    char req[1024];
    /* each of these must be refused before any job starts */
    const struct {
        const char *line;
        int want;
    } cases[] = {
        {"POST //v1/restore", 400},   {"POST /v1//restore", 400},  {"POST /v1/%2Frestore", 400},
        {"POST /v1%2Frestore", 400},  {"POST /v1/./restore", 400}, {"POST /v1/x/../restore", 400},
        {"POST /v1/restore%00", 400}, {"POST /V1/RESTORE", 404},   {"HEAD /v1/restore", 405},
        {"GET /v1/restore", 405},     {"PUT /v1/backup", 405},     {"POST /v1/backup/", 404},
        {"POST /v1/restore", 401},    {"POST /v1/backup", 401},    {"POST http://x/v1/backup", 401},
        {"OPTIONS * ", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(req, sizeof(req),
                 "%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 cases[i].line, strlen(body), body);
        int st = raw_status(req);
        if (strncmp(cases[i].line, "OPTIONS", 7) == 0 ||
            strncmp(cases[i].line, "POST http", 9) == 0)
            cr_assert(st == 400 || st == 401 || st == 404 || st == 405, "%s answered %d",
                      cases[i].line, st);
        else
            cr_assert_eq(st, cases[i].want, "%s answered %d (want %d)", cases[i].line, st,
                         cases[i].want);
    }
    /* wrong tokens: missing, other scheme, prefix, longer, case-changed */
    const char *auths[] = {"",
                           "Authorization: Basic " TOKEN "\r\n",
                           "Authorization: Bearer faults-admin-token\r\n",
                           "Authorization: Bearer " TOKEN "x\r\n",
                           "Authorization: Bearer FAULTS-ADMIN-TOKEN-0123456789ABCDEF\r\n",
                           "Authorization: Bearer\r\n",
                           "Authorization: " TOKEN "\r\n"};
    for (size_t i = 0; i < sizeof(auths) / sizeof(auths[0]); i++) {
        snprintf(req, sizeof(req),
                 "POST /v1/backup HTTP/1.1\r\nHost: x\r\n%sContent-Length: 0\r\n\r\n", auths[i]);
        char *r;
        int st = raw_http(req, &r);
        cr_assert_eq(st, 401, "auth case %zu answered %d", i, st);
        cr_assert_null(strstr(r, TOKEN), "the token was echoed: %s", r);
        cr_assert_null(strstr(r, "faults-admin"), "part of the token was echoed: %s", r);
        free(r);
    }
    /* nothing ran */
    char *mt = daemon_get("/metrics", NULL);
    cr_assert(isnan(qs_test_backups_total(mt, "sec", "success")) ||
                  qs_test_backups_total(mt, "sec", "success") == 0.0,
              "%s", mt);
    cr_assert_eq(qs_test_metric(mt, "qsnap_backup_in_progress"), 0.0);
    free(mt);
    daemon_term(25);
    check_invariants(NULL);
}

Test(security, names_from_requests_are_validated)
{
    security_daemon();
    char longname[400];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    char bodies[12][600];
    snprintf(bodies[0], sizeof(bodies[0]), "{\"collection\":\"../../etc\"}");
    snprintf(bodies[1], sizeof(bodies[1]), "{\"collection\":\"sec\",\"snapshot\":\"../x.json\"}");
    snprintf(bodies[2], sizeof(bodies[2]), "{\"collection\":\"a/b\"}");
    snprintf(bodies[3], sizeof(bodies[3]), "{\"collection\":\"bad\\u0001name\"}");
    snprintf(bodies[4], sizeof(bodies[4]), "{\"collection\":\"%s\"}", longname);
    snprintf(bodies[5], sizeof(bodies[5]), "{\"collection\":\"sec\",\"target\":\"../y\"}");
    snprintf(bodies[6], sizeof(bodies[6]), "{\"collection\":\"sec\",\"snapshot\":\"a\\nb\"}");
    snprintf(bodies[7], sizeof(bodies[7]), "{\"collection\":\"..\"}");
    /* strict JSON: U+0000 would cut the name to "sec", trailing data, a
     * field twice, a misspelt field that would fall back to "latest" */
    snprintf(bodies[8], sizeof(bodies[8]), "{\"collection\":\"sec\\u0000../../x\"}");
    snprintf(bodies[9], sizeof(bodies[9]), "{\"collection\":\"sec\"}{\"target\":\"x\"}");
    snprintf(bodies[10], sizeof(bodies[10]), "{\"collection\":\"x\",\"collection\":\"sec\"}");
    snprintf(bodies[11], sizeof(bodies[11]), "{\"collection\":\"sec\",\"snaphsot\":\"s\"}");
    const char *why[12] = {[8] = "U+0000",
                           [9] = "after the JSON value",
                           [10] = "\\\"collection\\\"",
                           [11] = "'snaphsot'"};
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/restore", E.url);
    const char *h[] = {AUTH, "Content-Type: application/json", NULL};
    for (size_t i = 0; i < 12; i++) {
        struct qs_test_resp r;
        cr_assert_eq(qs_test_http("POST", url, h, bodies[i], strlen(bodies[i]), &r), 0);
        cr_assert_eq(r.status, 400, "restore body %zu answered %ld: %s", i, r.status, r.body);
        cr_assert_not_null(strstr(r.body, "\"error\""));
        if (why[i] != NULL)
            cr_assert_not_null(strstr(r.body, why[i]), "body %zu: %s", i, r.body);
        for (const char *p = r.body; *p; p++)
            cr_assert((unsigned char)*p >= 0x20, "control character in the error body");
        assert_no_secret("error body", r.body);
        qs_test_resp_free(&r);
    }
    const char *queries[] = {"collection=..%2F..%2Fetc", "collection=a%2Fb", "collection=%01",
                             "collection=%ZZ", "collection=a%00b"};
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        snprintf(url, sizeof(url), "%s/v1/backup?%s", E.url, queries[i]);
        struct qs_test_resp r;
        cr_assert_eq(qs_test_http("POST", url, h, "", 0, &r), 0);
        cr_assert_eq(r.status, 400, "backup ?%s answered %ld: %s", queries[i], r.status, r.body);
        qs_test_resp_free(&r);
    }
    char lurl[600];
    snprintf(lurl, sizeof(lurl), "%s/v1/backup?collection=%s", E.url, longname);
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("POST", lurl, h, "", 0, &r), 0);
    cr_assert_eq(r.status, 400, "over-long name answered %ld", r.status);
    qs_test_resp_free(&r);
    /* job ids are not paths either */
    snprintf(url, sizeof(url), "%s/v1/jobs/..%%2F..%%2Fetc%%2Fpasswd", E.url);
    cr_assert_eq(qs_test_http("GET", url, NULL, NULL, 0, &r), 0);
    cr_assert(r.status == 400 || r.status == 404, "job id traversal answered %ld", r.status);
    qs_test_resp_free(&r);
    /* nothing escaped the destination directory */
    char parent[1200];
    snprintf(parent, sizeof(parent), "%s/../etc", E.dir);
    cr_assert_neq(access(parent, F_OK), 0);
    daemon_term(25);
    check_invariants(NULL);
}

Test(security, body_and_connection_limits)
{
    security_daemon();
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/restore", E.url);
    size_t big = 64 * 1024 + 1;
    char *body = malloc(big);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    const char *h[] = {AUTH, "Content-Type: application/json", NULL};
    struct qs_test_resp r;
    qs_test_http("POST", url, h, body, big, &r);
    cr_assert_eq(r.status, 413, "a 64 KiB + 1 body answered %ld", r.status);
    qs_test_resp_free(&r);
    /* the limit also holds without authentication and for chunked bodies */
    const char *h2[] = {"Transfer-Encoding: chunked", NULL};
    qs_test_http("POST", url, h2, body, big, &r);
    cr_assert(r.status == 413 || r.status == 401, "chunked oversize answered %ld", r.status);
    qs_test_resp_free(&r);
    free(body);
    /* an idle connection is cut off (deadline 10 s by default) */
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, E.url);
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    double t0 = qs_test_now_s();
    int closed = 0;
    while (qs_test_now_s() - t0 < 30) {
        char buf[256];
        size_t n = 0;
        CURLcode rc = curl_easy_recv(c, buf, sizeof(buf), &n);
        if (rc == CURLE_AGAIN) {
            usleep(50000);
            continue;
        }
        closed = 1;
        break;
    }
    curl_easy_cleanup(c);
    cr_assert(closed, "an idle connection stayed open for 30 s");
    /* still serving */
    char hz[128];
    snprintf(hz, sizeof(hz), "%s/healthz", E.url);
    cr_assert_eq(qs_test_wait_http(hz, 5), 0);
    daemon_term(25);
    check_invariants(NULL);
}

/* Regression (found by fuzz_qdrant): a Qdrant error body of only whitespace
 * produced an empty message. */
Test(security, qdrant_whitespace_error_body_has_a_message)
{
    struct qs_error err;
    int rc = qs_qdrant_parse_answer(QS_QDRANT_ANSWER_ERROR, "\r\n\r\n  \t", 7, &err);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_str_eq(err.msg, "(empty body)");
    rc = qs_qdrant_parse_answer(QS_QDRANT_ANSWER_ERROR, "{\"status\":{\"error\":\"boom\"}}", 27,
                                &err);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_str_eq(err.msg, "boom");
    rc =
        qs_qdrant_parse_answer(QS_QDRANT_ANSWER_SNAPSHOTS, "{\"result\":[{\"name\":1}]}", 23, &err);
    cr_assert_eq(rc, QS_EPROTO);
}

/* JSON from outside is parsed strictly everywhere: a U+0000 would cut a name
 * short (a snapshot "c1\u0000x" was stored as object c1/c1), and data after
 * the value is not silently ignored. */
Test(security, qdrant_answers_and_manifests_are_parsed_strictly)
{
    struct qs_error err;
    const char *answers[] = {
        "{\"result\":[{\"name\":\"c1\\u0000x.snapshot\",\"creation_time\":\"2025-01-01T00:00:00\","
        "\"size\":1,\"checksum\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\"}],"
        "\"status\":\"ok\"}",
        "{\"result\":[],\"status\":\"ok\"} {\"result\":[]}",
        "{\"result\":[],\"result\":[{\"name\":\"x\"}],\"status\":\"ok\"}",
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        int rc = qs_qdrant_parse_answer(QS_QDRANT_ANSWER_SNAPSHOTS, answers[i], strlen(answers[i]),
                                        &err);
        cr_assert_eq(rc, QS_EPROTO, "answer %zu accepted (%d)", i, rc);
        cr_assert_not_null(strstr(err.msg, "not JSON"), "%s", err.msg);
    }
    const char *ok = "{\"result\":[],\"status\":\"ok\"}\n";
    cr_assert_eq(qs_qdrant_parse_answer(QS_QDRANT_ANSWER_SNAPSHOTS, ok, strlen(ok), &err), 0, "%s",
                 err.msg);
    const char *cols =
        "{\"result\":{\"collections\":[{\"name\":\"a\\u0000b\"}]},\"status\":\"ok\"}";
    cr_assert_eq(qs_qdrant_parse_answer(QS_QDRANT_ANSWER_COLLECTIONS, cols, strlen(cols), &err),
                 QS_EPROTO);
    cr_assert_not_null(strstr(err.msg, "U+0000"), "%s", err.msg);

    /* a manifest whose collection holds U+0000, or with trailing data */
    const char *m1 = "{\"format\":1,\"collection\":\"agent-memory\\u0000../../x\"}";
    struct qs_manifest m;
    cr_assert_eq(qs_manifest_parse(m1, strlen(m1), &m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "U+0000"), "%s", err.msg);
    const char *m2 = "{\"format\":1} x";
    cr_assert_eq(qs_manifest_parse(m2, strlen(m2), &m, &err), QS_EINVAL);
    cr_assert_not_null(strstr(err.msg, "after the JSON value"), "%s", err.msg);
}
