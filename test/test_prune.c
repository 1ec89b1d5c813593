/* `qsnap prune` against radosgw (QSNAP_TEST_S3_*) and a file:// directory:
 * a destination pre-seeded with complete backups, incomplete objects and
 * unfinished uploads, pruned by the built binary with its clock set through
 * QSNAP_TEST_NOW. Checks the survivors the retention rules imply, that
 * --dry-run lists the same actions and deletes nothing, and that a prune
 * killed part-way never leaves a manifest without its object. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qsnap/error.h"
#include "qsnap/manifest.h"
#include "qsnap/storage.h"
#include "qsnap/util.h"
#include "support.h"

#define DAY ((int64_t)86400)
#define MiB ((size_t)1 << 20)

/* Every variable qsnap reads, unset first ("K=" unsets K). */
#define CLEAN_ENV                                                                                  \
    "QSNAP_QDRANT_URL=", "QSNAP_QDRANT_API_KEY=", "QSNAP_QDRANT_API_KEY_FILE=",                    \
        "QSNAP_DESTINATION=", "QSNAP_S3_ENDPOINT=", "QSNAP_S3_REGION=", "QSNAP_S3_ACCESS_KEY_ID=", \
        "QSNAP_S3_ACCESS_KEY_ID_FILE=", "QSNAP_S3_SECRET_ACCESS_KEY=",                             \
        "QSNAP_S3_SECRET_ACCESS_KEY_FILE=", "QSNAP_S3_URI_STYLE=", "QSNAP_S3_CA_FILE=",            \
        "QSNAP_S3_PART_SIZE=", "QSNAP_SCHEDULE=", "QSNAP_JITTER=", "QSNAP_COLLECTIONS=",           \
        "QSNAP_MODE=", "QSNAP_LOCAL_KEEP=", "QSNAP_COMPRESSION=", "QSNAP_MAX_BANDWIDTH=",          \
        "QSNAP_LISTEN=", "QSNAP_ADMIN_TOKEN=", "QSNAP_ADMIN_TOKEN_FILE=", "QSNAP_STALE_AFTER=",    \
        "QSNAP_DRILL_SCHEDULE=", "QSNAP_HEARTBEAT_URL=", "QSNAP_LOG_FORMAT=",                      \
        "QSNAP_TEST_QDRANT_TIMEOUT_MS=", "QSNAP_RETENTION=7d", "QSNAP_KEEP_MIN=3",                 \
        "QSNAP_LOG_LEVEL=info"

enum backend { BK_S3, BK_FILE };

/* One destination and the environment that points qsnap at it. */
struct dest {
    enum backend kind;
    struct qs_storage *st;
    char prefix[256];
    char *dir;
    char destination[700];
    char endpoint[300], region[100], access[200], secret[200];
    char now[64];
    char *env[64];
};

static void dest_open(struct dest *d, enum backend kind, const char *tag)
{
    static atomic_int seq;
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    size_t n = 0;
    static char *const clean[] = {CLEAN_ENV, NULL};
    for (size_t i = 0; clean[i] != NULL; i++)
        d->env[n++] = clean[i];
    if (kind == BK_S3) {
        snprintf(d->prefix, sizeof(d->prefix), "test-prune/%ld-%d-%s", (long)getpid(),
                 atomic_fetch_add(&seq, 1), tag);
        qs_test_s3_opts(&o, d->prefix);
        o.part_size = 5 * MiB;
        snprintf(d->destination, sizeof(d->destination), "QSNAP_DESTINATION=s3://%s/%s", o.bucket,
                 d->prefix);
        snprintf(d->endpoint, sizeof(d->endpoint), "QSNAP_S3_ENDPOINT=%s", o.endpoint);
        snprintf(d->region, sizeof(d->region), "QSNAP_S3_REGION=%s", o.region);
        snprintf(d->access, sizeof(d->access), "QSNAP_S3_ACCESS_KEY_ID=%s", o.access_key_id);
        snprintf(d->secret, sizeof(d->secret), "QSNAP_S3_SECRET_ACCESS_KEY=%s",
                 o.secret_access_key);
        d->env[n++] = d->destination;
        d->env[n++] = d->endpoint;
        d->env[n++] = d->region;
        d->env[n++] = d->access;
        d->env[n++] = d->secret;
        d->env[n++] = "QSNAP_S3_URI_STYLE=path";
    } else {
        d->dir = qs_test_mkdtemp("prune");
        o.kind = QS_DEST_FILE;
        o.path = d->dir;
        snprintf(d->destination, sizeof(d->destination), "QSNAP_DESTINATION=file://%s", d->dir);
        d->env[n++] = d->destination;
    }
    d->env[n++] = d->now;
    d->env[n] = NULL;
    struct qs_error err;
    cr_assert_eq(qs_storage_new(&o, &d->st, &err), 0, "%s", err.msg);
}

static void dest_set_now(struct dest *d, int64_t now)
{
    snprintf(d->now, sizeof(d->now), "QSNAP_TEST_NOW=%lld", (long long)now);
}

static void dest_close(struct dest *d)
{
    if (d->kind == BK_S3 && d->st != NULL) {
        struct qs_storage_list l;
        qs_storage_list_init(&l);
        struct qs_error err;
        if (qs_storage_list(d->st, "", &l, &err) == 0)
            for (size_t i = 0; i < l.n; i++)
                qs_storage_delete(d->st, l.items[i].key, &err);
        qs_storage_list_deinit(&l);
        struct qs_storage_uploads u;
        qs_storage_uploads_init(&u);
        if (qs_storage_list_uploads(d->st, "", &u, &err) == 0)
            for (size_t i = 0; i < u.n; i++)
                qs_storage_abort_upload(d->st, u.items[i].key, u.items[i].upload_id, &err);
        qs_storage_uploads_deinit(&u);
    }
    qs_storage_free(d->st);
    if (d->dir != NULL) {
        qs_test_rmrf(d->dir);
        free(d->dir);
    }
}

/* Sets the mtime of a file:// key (no-op for S3, whose LastModified cannot
 * be backdated). */
static void set_mtime(struct dest *d, const char *key, int64_t t)
{
    if (d->kind != BK_FILE)
        return;
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", d->dir, key);
    struct timespec ts[2] = {{.tv_sec = (time_t)t}, {.tv_sec = (time_t)t}};
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0, "utimensat %s: %s", path, strerror(errno));
}

/* Qdrant-style snapshot name for a creation time. */
static void snap_name(const char *coll, int64_t t, const char *suffix, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y-%m-%d-%H-%M-%S", &tm);
    snprintf(out, cap, "%s-4242%s-%s.snapshot", coll, suffix, stamp);
}

/* Writes a complete backup (object, then manifest) created at `created`.
 * Object and manifest keys go to obj/man when not NULL. file:// keys get
 * `created` as their mtime. */
static void seed_backup(struct dest *d, const char *coll, int64_t created, char *obj, char *man)
{
    char snap[300], okey[QS_MANIFEST_KEY_MAX], mkey[QS_MANIFEST_KEY_MAX];
    snap_name(coll, created, "", snap, sizeof(snap));
    cr_assert_eq(qs_manifest_object_key(coll, snap, 0, okey, sizeof(okey)), 0);
    cr_assert_eq(qs_manifest_key(coll, snap, mkey, sizeof(mkey)), 0);
    char body[400];
    int blen = snprintf(body, sizeof(body), "snapshot bytes of %s", snap);
    struct qs_manifest m = {
        .format = QS_MANIFEST_FORMAT_V1,
        .collection = (char *)coll,
        .snapshot = snap,
        .created = created,
        .size = (uint64_t)blen,
        .stored_size = (uint64_t)blen,
        .object = okey,
        .qdrant_version = "1.13.2",
        .points_count = 10,
        .vectors = "{\"size\":4,\"distance\":\"Cosine\"}",
        .qsnap_version = "test",
        .mode = QS_MODE_COLLECTIONS,
    };
    qs_sha256_hex(body, (size_t)blen, m.sha256);
    struct qs_buf js;
    qs_buf_init(&js);
    cr_assert_eq(qs_manifest_to_json(&m, &js), 0);
    struct qs_error err;
    cr_assert_eq(qs_storage_put_buffer(d->st, okey, body, (size_t)blen, NULL, NULL, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(qs_storage_put_buffer(d->st, mkey, js.data, js.len, NULL, NULL, &err), 0, "%s",
                 err.msg);
    qs_buf_free(&js);
    set_mtime(d, okey, created);
    set_mtime(d, mkey, created);
    if (obj != NULL)
        strcpy(obj, okey);
    if (man != NULL)
        strcpy(man, mkey);
}

/* The drill result of the backup of coll created at `created` (written at
 * `t`: file:// mtime); its key goes to key. */
static void seed_drill(struct dest *d, const char *coll, int64_t created, int64_t t, char *key)
{
    char snap[300];
    snap_name(coll, created, "", snap, sizeof(snap));
    cr_assert_eq(qs_manifest_drill_key(coll, snap, key, QS_MANIFEST_KEY_MAX), 0);
    char body[600];
    int n = snprintf(body, sizeof(body),
                     "{\"format\":1,\"collection\":\"%s\",\"snapshot\":\"%s\","
                     "\"result\":\"success\",\"finished\":\"2025-02-01T04:00:07Z\","
                     "\"points_expected\":10,\"points_restored\":10,\"error\":null}\n",
                     coll, snap);
    struct qs_error err;
    cr_assert_eq(qs_storage_put_buffer(d->st, key, body, (size_t)n, NULL, NULL, &err), 0, "%s",
                 err.msg);
    set_mtime(d, key, t);
}

/* An object without manifest, last modified at t (file:// only). */
static void seed_incomplete(struct dest *d, const char *coll, int64_t t, const char *tag, char *key)
{
    char snap[300];
    snap_name(coll, t, tag, snap, sizeof(snap));
    snprintf(key, QS_MANIFEST_KEY_MAX, "%s/%s", coll, snap);
    struct qs_error err;
    cr_assert_eq(qs_storage_put_buffer(d->st, key, "partial", 7, NULL, NULL, &err), 0, "%s",
                 err.msg);
    set_mtime(d, key, t);
}

/* A leftover temporary of a file:// destination for key, modified at t. */
static void seed_file_temporary(struct dest *d, const char *key, int64_t t)
{
    const char *slash = strrchr(key, '/');
    char rel[1200];
    snprintf(rel, sizeof(rel), "%.*s/.%s.qsnap-tmp-Ab12Cd", (int)(slash - key), key, slash + 1);
    char path[1400];
    snprintf(path, sizeof(path), "%s/%s", d->dir, rel);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs("half an upload", f);
    fclose(f);
    set_mtime(d, rel, t);
}

/* Sorted list of what the destination holds: keys, plus "upload KEY" for
 * unfinished uploads. Newline-separated, owned. */
static char *snapshot_state(struct dest *d)
{
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    struct qs_error err;
    cr_assert_eq(qs_storage_list(d->st, "", &l, &err), 0, "%s", err.msg);
    struct qs_buf b;
    qs_buf_init(&b);
    for (size_t i = 0; i < l.n; i++)
        qs_buf_printf(&b, "%s\n", l.items[i].key);
    qs_storage_list_deinit(&l);
    struct qs_storage_uploads u;
    qs_storage_uploads_init(&u);
    cr_assert_eq(qs_storage_list_uploads(d->st, "", &u, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < u.n; i++)
        qs_buf_printf(&b, "upload %s\n", u.items[i].key);
    qs_storage_uploads_deinit(&u);
    char *s = strdup(b.data != NULL ? b.data : "");
    qs_buf_free(&b);
    return s;
}

static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

/* The "ACTION KEY" part of the report lines of `qsnap prune` output (JSON log
 * lines on stderr are skipped), newline-separated, owned. */
static char *report_actions(const char *out)
{
    struct qs_buf b;
    qs_buf_init(&b);
    static const char *const acts[] = {"delete-manifest ", "delete-drill-result ", "delete-object ",
                                       "delete-incomplete ", "abort-upload "};
    for (const char *p = out; *p != '\0';) {
        const char *e = strchr(p, '\n');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
            if (strncmp(p, acts[i], strlen(acts[i])) == 0) {
                const char *paren = memmem(p, n, " (", 2);
                size_t k = paren != NULL ? (size_t)(paren - p) : n;
                qs_buf_printf(&b, "%.*s\n", (int)k, p);
            }
        p += n + (e != NULL ? 1 : 0);
    }
    char *s = strdup(b.data != NULL ? b.data : "");
    qs_buf_free(&b);
    return s;
}

static int run_prune(struct dest *d, int dry, char **out)
{
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "prune", dry ? "--dry-run" : NULL,
                    NULL};
    return qs_test_run(argv, d->env, out);
}

/* Expected survivors and actions, built alongside the seeding. */
struct model {
    struct qs_buf keep;    /* keys that must remain */
    struct qs_buf actions; /* "ACTION KEY" lines in plan order */
};

static void model_init(struct model *m)
{
    qs_buf_init(&m->keep);
    qs_buf_init(&m->actions);
}

static void model_free(struct model *m)
{
    qs_buf_free(&m->keep);
    qs_buf_free(&m->actions);
}

/* Checks that every line of `want` is in `have` and that `have` has exactly
 * as many lines. */
static void assert_same_lines(const char *have, const char *want, const char *what)
{
    size_t nh = 0, nw = 0;
    for (const char *p = have; *p; p++)
        nh += *p == '\n';
    for (const char *p = want; *p; p++)
        nw += *p == '\n';
    char line[1400];
    for (const char *p = want; *p != '\0';) {
        const char *e = strchr(p, '\n');
        size_t n = (size_t)(e - p);
        snprintf(line, sizeof(line), "%.*s", (int)n, p);
        cr_assert(has_line(have, line), "%s: missing \"%s\"\nhave:\n%s\nwant:\n%s", what, line,
                  have, want);
        p = e + 1;
    }
    cr_assert_eq(nh, nw, "%s: %zu lines, want %zu\nhave:\n%s\nwant:\n%s", what, nh, nw, have, want);
}

/* Seeds alpha and beta with backups 1..12 days old and gamma with backups
 * 10, 11, 11.5 and 12 days old (relative to `now`), recording what
 * retention 7d / keep-min 3 keeps and deletes. Dates are 10 minutes younger
 * than whole days so that the real time passing during the test does not
 * move a backup across the 7-day line. alpha's odd-day backups carry a
 * drill result, which goes with its backup (after the manifest). */
static void seed_backups(struct dest *d, int64_t now, struct model *m)
{
    static const char *const colls[] = {"alpha", "beta"};
    char obj[QS_MANIFEST_KEY_MAX], man[QS_MANIFEST_KEY_MAX], drill[QS_MANIFEST_KEY_MAX];
    for (size_t c = 0; c < 2; c++) {
        for (int k = 12; k >= 1; k--) { /* oldest first: the plan's order */
            int64_t created = now - k * DAY + 600;
            seed_backup(d, colls[c], created, obj, man);
            int drilled = c == 0 && k % 2 == 1;
            if (drilled)
                seed_drill(d, colls[c], created, created + 3600, drill);
            if (k > 7) {
                qs_buf_printf(&m->actions, "delete-manifest %s\n", man);
                if (drilled)
                    qs_buf_printf(&m->actions, "delete-drill-result %s\n", drill);
                qs_buf_printf(&m->actions, "delete-object %s\n", obj);
            } else {
                qs_buf_printf(&m->keep, "%s\n%s\n", obj, man);
                if (drilled)
                    qs_buf_printf(&m->keep, "%s\n", drill);
            }
        }
    }
    /* gamma: only old backups; the three newest stay, whatever their age. */
    const int64_t ages[] = {12 * DAY, 11 * DAY + DAY / 2, 11 * DAY, 10 * DAY};
    for (size_t i = 0; i < 4; i++) {
        seed_backup(d, "gamma", now - ages[i] + 600, obj, man);
        if (i == 0)
            qs_buf_printf(&m->actions, "delete-manifest %s\ndelete-object %s\n", man, obj);
        else
            qs_buf_printf(&m->keep, "%s\n%s\n", obj, man);
    }
}

/* Dry run, then the real prune; checks the report, the survivors and that
 * the dry run changed nothing. */
static void prune_and_check(struct dest *d, struct model *m, const char *summary)
{
    char *before = snapshot_state(d);
    char *out = NULL;
    cr_assert_eq(run_prune(d, 1, &out), 0, "dry run failed:\n%s", out);
    cr_assert_not_null(strstr(out, "dry run: nothing deleted"), "%s", out);
    char *dry_actions = report_actions(out);
    cr_assert_str_eq(dry_actions, m->actions.data != NULL ? m->actions.data : "",
                     "dry-run plan differs:\n%s", out);
    free(out);
    char *after_dry = snapshot_state(d);
    cr_assert_str_eq(after_dry, before, "the dry run changed the destination");
    free(after_dry);

    cr_assert_eq(run_prune(d, 0, &out), 0, "prune failed:\n%s", out);
    char *real_actions = report_actions(out);
    cr_assert_str_eq(real_actions, dry_actions, "the prune and its dry run differ:\n%s", out);
    cr_assert_not_null(strstr(out, summary), "want \"%s\" in:\n%s", summary, out);
    /* one log line per deletion */
    size_t logged = 0;
    for (const char *p = out; (p = strstr(p, "\"phase\":\"prune-remote\"")) != NULL; p++)
        logged++;
    size_t nact = 0;
    for (const char *p = real_actions; *p; p++)
        nact += *p == '\n';
    cr_assert_geq(logged, nact, "%zu log lines for %zu actions:\n%s", logged, nact, out);
    free(out);
    free(real_actions);
    free(dry_actions);
    char *after = snapshot_state(d);
    assert_same_lines(after, m->keep.data != NULL ? m->keep.data : "", "survivors");
    free(after);
    free(before);
}

/* file://: the whole scenario in one run, ages set through mtimes. */
Test(prune_file, survivors_and_dry_run)
{
    struct dest d;
    dest_open(&d, BK_FILE, "scenario");
    int64_t now = qs_clock_now();
    dest_set_now(&d, now);
    struct model m;
    model_init(&m);
    seed_backups(&d, now, &m);
    char old[QS_MANIFEST_KEY_MAX], fresh[QS_MANIFEST_KEY_MAX];
    seed_incomplete(&d, "alpha", now - 2 * DAY, "-old", old);
    seed_incomplete(&d, "beta", now - 3600, "-fresh", fresh);
    qs_buf_printf(&m.actions, "delete-incomplete %s\n", old);
    qs_buf_printf(&m.keep, "%s\n", fresh);
    /* Drill results whose backup is gone: incomplete, never a backup. */
    char drill_old[QS_MANIFEST_KEY_MAX], drill_fresh[QS_MANIFEST_KEY_MAX];
    seed_drill(&d, "beta", now - 40 * DAY, now - 2 * DAY, drill_old);
    seed_drill(&d, "gamma", now - 41 * DAY, now - 3600, drill_fresh);
    qs_buf_printf(&m.actions, "delete-incomplete %s\n", drill_old);
    qs_buf_printf(&m.keep, "%s\n", drill_fresh);
    /* Temporaries are the file:// backend's unfinished uploads. */
    char tmp_old[QS_MANIFEST_KEY_MAX], tmp_fresh[QS_MANIFEST_KEY_MAX];
    snprintf(tmp_old, sizeof(tmp_old), "gamma/gamma-4242-upload-2d.snapshot");
    snprintf(tmp_fresh, sizeof(tmp_fresh), "beta/beta-4242-upload-1h.snapshot");
    seed_file_temporary(&d, tmp_old, now - 2 * DAY);
    seed_file_temporary(&d, tmp_fresh, now - 3600);
    qs_buf_printf(&m.actions, "abort-upload %s\n", tmp_old);
    qs_buf_printf(&m.keep, "upload %s\n", tmp_fresh);

    prune_and_check(&d, &m,
                    "deleted: 11 backups, 2 incomplete objects, 1 uploads; 17 backups kept");

    /* A second prune has nothing left to do. */
    char *out = NULL;
    cr_assert_eq(run_prune(&d, 0, &out), 0, "%s", out);
    char *acts = report_actions(out);
    cr_assert_str_eq(acts, "", "second prune acted:\n%s", out);
    free(acts);
    free(out);
    model_free(&m);
    dest_close(&d);
}

/* radosgw: LastModified cannot be backdated, so the clock moves instead.
 * Run 1 at real+2d: the incomplete object and the multipart upload written
 * now look two days old. Run 2 at real+1h: a fresh incomplete object (one
 * hour old from there) must stay. */
Test(prune_s3, survivors_and_dry_run)
{
    struct dest d;
    dest_open(&d, BK_S3, "scenario");
    int64_t real = qs_clock_now();
    int64_t t1 = real + 2 * DAY;
    dest_set_now(&d, t1);
    struct model m;
    model_init(&m);
    seed_backups(&d, t1, &m);
    char old[QS_MANIFEST_KEY_MAX], drill_old[QS_MANIFEST_KEY_MAX];
    seed_incomplete(&d, "alpha", real, "-old", old);
    qs_buf_printf(&m.actions, "delete-incomplete %s\n", old);
    seed_drill(&d, "beta", real - 40 * DAY, real, drill_old); /* its backup is gone */
    qs_buf_printf(&m.actions, "delete-incomplete %s\n", drill_old);

    /* An open multipart upload (more than one part written). */
    struct qs_error err;
    struct qs_storage_put *put = NULL;
    const char *mp_key = "gamma/gamma-4242-upload-2d.snapshot";
    cr_assert_eq(qs_storage_put_begin(d.st, mp_key, -1, NULL, NULL, &put, &err), 0, "%s", err.msg);
    unsigned char *buf = calloc(1, 6 * MiB);
    cr_assert_eq(qs_storage_put_write(put, buf, 6 * MiB, &err), 0, "%s", err.msg);
    free(buf);
    char *state = snapshot_state(&d);
    char want_up[200];
    snprintf(want_up, sizeof(want_up), "upload %s", mp_key);
    cr_assert(has_line(state, want_up), "multipart upload not open:\n%s", state);
    free(state);
    qs_buf_printf(&m.actions, "abort-upload %s\n", mp_key);

    prune_and_check(&d, &m,
                    "deleted: 11 backups, 2 incomplete objects, 1 uploads; 17 backups kept");
    qs_storage_put_abort(put); /* already aborted by the prune: must not matter */

    /* Run 2: an upload in progress (object written just now) stays. */
    char fresh[QS_MANIFEST_KEY_MAX];
    seed_incomplete(&d, "beta", real, "-fresh", fresh);
    qs_buf_printf(&m.keep, "%s\n", fresh);
    qs_buf_reset(&m.actions);
    dest_set_now(&d, qs_clock_now() + 3600);
    prune_and_check(&d, &m, "deleted: 0 backups, 0 incomplete objects, 0 uploads");
    model_free(&m);
    dest_close(&d);
}

/* ---- shards runs ------------------------------------------------------------ */

/* A shards backup of coll created at `created`: nshards shard objects and
 * its format 2 manifest (written last). The name of the run goes to run;
 * the model records its deletion (manifest, drill result, every shard) when
 * doomed, else its keys as survivors. */
static void seed_shards_backup(struct dest *d, const char *coll, int64_t created, int nshards,
                               int drilled, int doomed, struct model *model)
{
    char run[300], mkey[QS_MANIFEST_KEY_MAX], dkey[QS_MANIFEST_KEY_MAX];
    cr_assert_eq(qs_manifest_run_name(coll, created, run, sizeof(run)), 0);
    cr_assert_eq(qs_manifest_key(coll, run, mkey, sizeof(mkey)), 0);
    struct qs_manifest m = {
        .format = QS_MANIFEST_FORMAT,
        .method = QS_METHOD_SHARDS,
        .collection = (char *)coll,
        .snapshot = run,
        .created = created,
        .qdrant_version = "1.13.2",
        .points_count = 10,
        .vectors = "{\"size\":4,\"distance\":\"Cosine\"}",
        .collection_config = "{\"params\":{\"shard_number\":3}}",
        .payload_schema = "{}",
        .has_aliases = 1,
        .qsnap_version = "test",
        .mode = QS_MODE_COLLECTIONS,
    };
    struct qs_manifest_shard sh[8];
    struct qs_error err;
    if (doomed)
        qs_buf_printf(&model->actions, "delete-manifest %s\n", mkey);
    else
        qs_buf_printf(&model->keep, "%s\n", mkey);
    if (drilled) {
        cr_assert_eq(qs_manifest_drill_key(coll, run, dkey, sizeof(dkey)), 0);
        cr_assert_eq(qs_storage_put_buffer(d->st, dkey, "{}", 2, NULL, NULL, &err), 0, "%s",
                     err.msg);
        qs_buf_printf(doomed ? &model->actions : &model->keep, "%s%s\n",
                      doomed ? "delete-drill-result " : "", dkey);
    }
    for (int i = 0; i < nshards; i++) {
        char key[QS_MANIFEST_KEY_MAX], body[64];
        cr_assert_eq(qs_manifest_shard_key(coll, run, (uint32_t)i, 0, key, sizeof(key)), 0);
        int n = snprintf(body, sizeof(body), "shard %d of %s", i, run + strlen(run) - 19);
        cr_assert_eq(qs_storage_put_buffer(d->st, key, body, (size_t)n, NULL, NULL, &err), 0, "%s",
                     err.msg);
        sh[i] = (struct qs_manifest_shard){.id = (uint32_t)i,
                                           .object = strdup(key),
                                           .size = (uint64_t)n,
                                           .stored_size = (uint64_t)n};
        qs_sha256_hex(body, (size_t)n, sh[i].sha256);
        m.size += (uint64_t)n;
        m.stored_size += (uint64_t)n;
        qs_buf_printf(doomed ? &model->actions : &model->keep, "%s%s\n",
                      doomed ? "delete-object " : "", key);
    }
    m.shards = sh;
    m.nshards = (size_t)nshards;
    struct qs_buf js;
    qs_buf_init(&js);
    cr_assert_eq(qs_manifest_to_json(&m, &js), 0);
    cr_assert_eq(qs_storage_put_buffer(d->st, mkey, js.data, js.len, NULL, NULL, &err), 0, "%s",
                 err.msg);
    qs_buf_free(&js);
    for (int i = 0; i < nshards; i++)
        free(sh[i].object);
}

/* A shards run is one backup: pruned whole, manifest first, then its drill
 * result, then each shard object; shard objects of a run without manifest
 * are incomplete, each on its own; a manifest whose shard object is missing
 * is left alone. */
static void shards_runs(enum backend kind)
{
    struct dest d;
    dest_open(&d, kind, "shards");
    /* S3 cannot backdate LastModified: the clock moves forward instead. */
    int64_t now = qs_clock_now() + 2 * DAY;
    dest_set_now(&d, now);
    struct model m;
    model_init(&m);
    seed_shards_backup(&d, "sigma", now - 12 * DAY, 3, 1, 1, &m);
    seed_shards_backup(&d, "sigma", now - 3 * DAY, 3, 0, 0, &m);
    seed_shards_backup(&d, "sigma", now - 2 * DAY, 3, 1, 0, &m);
    seed_shards_backup(&d, "sigma", now - 1 * DAY, 3, 0, 0, &m);
    /* a run that never got its manifest, two days before now */
    struct qs_error err;
    char run[300], key[QS_MANIFEST_KEY_MAX];
    cr_assert_eq(qs_manifest_run_name("sigma", now - 2 * DAY - 60, run, sizeof(run)), 0);
    for (uint32_t i = 0; i < 2; i++) {
        cr_assert_eq(qs_manifest_shard_key("sigma", run, i, 1, key, sizeof(key)), 0);
        cr_assert_eq(qs_storage_put_buffer(d.st, key, "partial", 7, NULL, NULL, &err), 0, "%s",
                     err.msg);
        set_mtime(&d, key, now - 2 * DAY);
        qs_buf_printf(&m.actions, "delete-incomplete %s\n", key);
    }
    /* a broken run: its manifest lists a shard that is gone */
    struct model broken;
    model_init(&broken);
    seed_shards_backup(&d, "tau", now - 30 * DAY, 2, 0, 0, &broken);
    cr_assert_eq(qs_manifest_run_name("tau", now - 30 * DAY, run, sizeof(run)), 0);
    cr_assert_eq(qs_manifest_shard_key("tau", run, 1, 0, key, sizeof(key)), 0);
    cr_assert_eq(qs_storage_delete(d.st, key, &err), 0, "%s", err.msg);
    for (const char *p = broken.keep.data; *p != '\0';) {
        const char *e = strchr(p, '\n');
        if (strncmp(p, key, (size_t)(e - p)) != 0)
            qs_buf_printf(&m.keep, "%.*s\n", (int)(e - p + 1) - 1, p);
        p = e + 1;
    }
    model_free(&broken);

    prune_and_check(&d, &m, "deleted: 1 backups, 2 incomplete objects, 0 uploads; 3 backups kept");
    model_free(&m);
    dest_close(&d);
}

Test(prune_file, shards_runs)
{
    shards_runs(BK_FILE);
}

Test(prune_s3, shards_runs)
{
    shards_runs(BK_S3);
}

/* ---- interrupted prune ---------------------------------------------------- */

/* Starts `qsnap prune` with stderr on a pipe of one page: once the pipe is
 * full, qsnap blocks in its next log line. Returns the pid; *fd is the read
 * end. */
static pid_t spawn_prune_piped(struct dest *d, int *fd)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_assert_geq(fcntl(p[1], F_SETPIPE_SZ, 4096), 0, "F_SETPIPE_SZ: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        for (size_t i = 0; d->env[i] != NULL; i++) {
            const char *eq = strchr(d->env[i], '=');
            char name[256];
            snprintf(name, sizeof(name), "%.*s", (int)(eq - d->env[i]), d->env[i]);
            if (eq[1] == '\0')
                unsetenv(name);
            else
                setenv(name, eq + 1, 1);
        }
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(p[1], 2);
        char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "prune", NULL};
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    *fd = p[0];
    return pid;
}

/* Reads the pipe until `needle` arrived, then `extra` more bytes, then stops
 * reading (so qsnap blocks once the pipe is full: where exactly depends on
 * `extra`). Returns 0, or -1 on EOF or after 60 s. */
static int read_until(int fd, const char *needle, size_t extra)
{
    struct qs_buf b;
    qs_buf_init(&b);
    int found = -1;
    size_t more = 0;
    double end = qs_monotonic() + 60;
    while ((found != 0 || more < extra) && qs_monotonic() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        char chunk[512];
        size_t want = found == 0 ? extra - more : sizeof(chunk);
        if (want > sizeof(chunk))
            want = sizeof(chunk);
        ssize_t n = read(fd, chunk, want);
        if (n <= 0) {
            found = -1;
            break;
        }
        if (found == 0) {
            more += (size_t)n;
            continue;
        }
        qs_buf_append(&b, chunk, (size_t)n);
        qs_buf_append(&b, "", 1);
        b.len--;
        if (strstr(b.data, needle) != NULL)
            found = 0;
    }
    qs_buf_free(&b);
    return found;
}

/* Every manifest has its object; returns the number of manifests. */
static size_t check_invariant(struct dest *d, size_t *objects)
{
    struct qs_storage_list l;
    qs_storage_list_init(&l);
    struct qs_error err;
    cr_assert_eq(qs_storage_list(d->st, "", &l, &err), 0, "%s", err.msg);
    size_t manifests = 0;
    *objects = 0;
    for (size_t i = 0; i < l.n; i++) {
        const char *k = l.items[i].key;
        size_t n = strlen(k);
        if (n > 5 && strcmp(k + n - 5, ".json") == 0) {
            manifests++;
            int found = 0;
            for (size_t j = 0; j < l.n && !found; j++)
                found = strlen(l.items[j].key) == n - 5 && strncmp(l.items[j].key, k, n - 5) == 0;
            cr_assert(found, "manifest %s has no object", k);
        } else {
            (*objects)++;
        }
    }
    qs_storage_list_deinit(&l);
    return manifests;
}

static void interrupted(enum backend kind)
{
    struct dest d;
    dest_open(&d, kind, "interrupted");
    int64_t real = qs_clock_now();
    /* S3: at real+2d the objects written now look 2 days old, so an object
     * whose manifest went before the kill is cleaned up by the next prune. */
    int64_t now = kind == BK_S3 ? real + 2 * DAY : real;
    dest_set_now(&d, now);
    const size_t N = 80;
    for (size_t i = 0; i < N; i++)
        seed_backup(&d, "delta", now - 8 * DAY - (int64_t)i * 3600, NULL, NULL);
    size_t objects = 0;
    cr_assert_eq(check_invariant(&d, &objects), N);

    /* Several kills, each at a different point of the deletion sequence
     * (the pipe fills after a different number of bytes each time). */
    size_t left = N;
    for (size_t round = 0; round < 6; round++) {
        int fd = -1;
        pid_t pid = spawn_prune_piped(&d, &fd);
        int seen = read_until(fd, "delete-manifest", round * 150);
        usleep(400 * 1000); /* let it fill the pipe and block in a log write */
        qs_test_kill(pid);
        close(fd);
        cr_assert_eq(seen, 0, "round %zu: no deletion was logged", round);
        size_t manifests = check_invariant(&d, &objects);
        cr_assert_lt(manifests, left, "round %zu: nothing was deleted before the kill", round);
        cr_assert_gt(manifests, 3, "round %zu: the prune finished before the kill", round);
        cr_assert_geq(objects, manifests);
        left = manifests;
    }

    char *out = NULL;
    cr_assert_eq(run_prune(&d, 0, &out), 0, "second prune failed:\n%s", out);
    free(out);
    cr_assert_eq(check_invariant(&d, &objects), 3);
    cr_assert_eq(objects, 3, "objects left behind by the interrupted prune were not cleaned up");
    dest_close(&d);
}

Test(prune_file, interrupted_prune_leaves_no_orphan_manifest)
{
    interrupted(BK_FILE);
}

Test(prune_s3, interrupted_prune_leaves_no_orphan_manifest)
{
    interrupted(BK_S3);
}

/* ---- pruning after a backup in the daemon: metrics ------------------------ */

static double metric_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static char *http_body(const char *method, const char *url, const char *const *h, const char *body,
                       long want)
{
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http(method, url, h, body, body != NULL ? strlen(body) : 0, &r), 0,
                 "%s %s: no answer", method, url);
    cr_assert_eq(r.status, want, "%s %s: HTTP %ld: %s", method, url, r.status, r.body);
    char *s = r.body;
    r.body = NULL;
    qs_test_resp_free(&r);
    return s;
}

Test(prune_file, backup_job_prunes_and_counts_in_metrics)
{
    struct dest d;
    dest_open(&d, BK_FILE, "daemon");
    int64_t now = qs_clock_now();
    struct model m;
    model_init(&m);
    char obj[QS_MANIFEST_KEY_MAX];
    for (int k = 12; k >= 1; k--)
        seed_backup(&d, "alpha", now - k * DAY + 600, NULL, NULL);
    seed_incomplete(&d, "alpha", now - 2 * DAY, "-old", obj);
    seed_file_temporary(&d, "alpha/alpha-4242-upload-2d.snapshot", now - 2 * DAY);
    model_free(&m);

    struct qs_test_standin s;
    cr_assert_eq(qs_test_standin_start(&s, NULL), 0, "Qdrant stand-in did not start");
    char url[300];
    snprintf(url, sizeof(url), "%s/__standin/collections", s.url);
    free(http_body("POST", url, NULL, "{\"name\":\"alpha\",\"points\":300,\"dim\":8}", 200));
    char qurl[128];
    snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=%s", s.url);
    char *env[80];
    size_t n = 0;
    for (size_t i = 0; d.env[i] != NULL; i++)
        if (d.env[i][0] != '\0' && strcmp(d.env[i], "QSNAP_LISTEN=") != 0)
            env[n++] = d.env[i];
    env[n++] = qurl;
    env[n++] = "QSNAP_ADMIN_TOKEN=prune-test-admin-token-0123456789";
    env[n++] = "QSNAP_SCHEDULE=off";
    env[n++] = "QSNAP_COLLECTIONS=alpha";
    env[n++] = "QSNAP_LOG_FORMAT=json";
    env[n] = NULL;
    struct qs_test_daemon dm;
    if (qs_test_daemon_start(&dm, env) != 0) {
        char *log = qs_test_read_file(dm.log, NULL);
        qs_test_daemon_stop(&dm, 5);
        qs_test_standin_stop(&s);
        cr_assert_fail("daemon did not start:\n%s", log);
    }
    snprintf(url, sizeof(url), "%s/v1/backup", dm.url);
    const char *h[] = {"Authorization: Bearer prune-test-admin-token-0123456789", NULL};
    char *body = http_body("POST", url, h, "", 202);
    const char *q = strstr(body, "\"job\":\"");
    cr_assert_not_null(q, "%s", body);
    char id[128];
    snprintf(id, sizeof(id), "%.*s", (int)strcspn(q + 7, "\""), q + 7);
    free(body);
    snprintf(url, sizeof(url), "%s/v1/jobs/%s", dm.url, id);
    double end = qs_monotonic() + 60;
    for (;;) {
        body = http_body("GET", url, NULL, NULL, 200);
        if (strstr(body, "\"state\":\"succeeded\"") != NULL)
            break;
        cr_assert_null(strstr(body, "\"state\":\"failed\""), "%s", body);
        cr_assert_lt(qs_monotonic(), end, "backup job still running: %s", body);
        free(body);
        usleep(100000);
    }
    free(body);
    snprintf(url, sizeof(url), "%s/metrics", dm.url);
    char *mt = http_body("GET", url, NULL, NULL, 200);
    cr_assert_eq(metric_value(mt, "qsnap_prune_deleted_total{location=\"remote\",kind=\"backup\"}"),
                 5, "%s", mt);
    cr_assert_eq(
        metric_value(mt, "qsnap_prune_deleted_total{location=\"remote\",kind=\"incomplete\"}"), 1,
        "%s", mt);
    cr_assert_eq(
        metric_value(mt, "qsnap_prune_deleted_total{location=\"remote\",kind=\"multipart\"}"), 1,
        "%s", mt);
    cr_assert_eq(metric_value(mt, "qsnap_backups_stored{location=\"remote\"}"), 8, "%s", mt);
    free(mt);
    char *log = qs_test_read_file(dm.log, NULL);
    size_t logged = 0;
    for (const char *p = log; (p = strstr(p, "\"msg\":\"delete-")) != NULL; p++)
        logged++;
    cr_assert_eq(logged, 5 * 2 + 1, "one log line per deletion:\n%s", log);
    cr_assert_not_null(strstr(log, "\"msg\":\"abort-upload "), "%s", log);
    free(log);
    int st = qs_test_daemon_stop(&dm, 30);
    qs_test_standin_stop(&s);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "daemon exit status %d", st);
    /* 7 dated backups within 7 days plus the new one remain */
    char *state = snapshot_state(&d);
    size_t manifests = 0;
    for (const char *p = state; (p = strstr(p, ".json\n")) != NULL; p++)
        manifests++;
    cr_assert_eq(manifests, 8, "%s", state);
    cr_assert_null(strstr(state, "upload "), "%s", state);
    free(state);
    dest_close(&d);
}
