#include "qsnap/backup.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>
#include <zlib.h>

#include "qsnap/drill.h"
#include "qsnap/httpc.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"

#define RETRY_ATTEMPTS 5
#define RETRY_BASE_MS 1000
#define RETRY_CAP_MS 30000

static int discard(const void *data, size_t len, void *ud)
{
    (void)data;
    (void)len;
    (void)ud;
    return 0;
}

int qs_heartbeat_ping(const char *url, struct qs_error *err)
{
    static const struct qs_httpc_limits lim = {
        .connect_timeout_ms = 10000, .timeout_ms = 10000, .max_redirects = 3};
    struct qs_httpc_req r;
    qs_httpc_req_init(&r, "GET", url, "heartbeat");
    r.secret_url = 1; /* the URL may carry a token */
    r.sink = discard;
    r.limits = &lim;
    int rc = qs_httpc_perform(NULL, &r, err);
    qs_httpc_req_deinit(&r);
    return rc;
}

/* ---- never two creates of one collection in the same second ----------------
 */

#define CREATE_GUARD_SLOTS 64
static pthread_mutex_t guard_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char name[256];
    int64_t second;
} guard[CREATE_GUARD_SLOTS];
static size_t guard_next;

/* Waits until the wall-clock second differs from the one of the previous
 * create of this collection, then records the current second. Qdrant names
 * snapshots to the second and silently overwrites a same-second one. */
static int create_guard(const char *collection, struct qs_cancel *cancel)
{
    const char *key = collection != NULL ? collection : QS_MANIFEST_FULL_DIR;
    pthread_mutex_lock(&guard_mu);
    size_t slot = CREATE_GUARD_SLOTS;
    for (size_t i = 0; i < CREATE_GUARD_SLOTS; i++)
        if (strcmp(guard[i].name, key) == 0)
            slot = i;
    int64_t last = slot < CREATE_GUARD_SLOTS ? guard[slot].second : -1;
    pthread_mutex_unlock(&guard_mu);
    /* Real time, not the injectable clock: this is about Qdrant's clock. */
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if ((int64_t)ts.tv_sec > last)
            break;
        if (qs_sleep_cancellable(1000 - ts.tv_nsec / 1000000L + 5, cancel) != 0)
            return QS_ECANCELED;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pthread_mutex_lock(&guard_mu);
    if (slot == CREATE_GUARD_SLOTS) {
        slot = guard_next++ % CREATE_GUARD_SLOTS;
        qs_strlcpy(guard[slot].name, key, sizeof(guard[slot].name));
    }
    /* Qdrant's second may lag ours slightly; be conservative by one. */
    guard[slot].second = (int64_t)now.tv_sec + 1;
    pthread_mutex_unlock(&guard_mu);
    return 0;
}

/* ---- streaming ------------------------------------------------------------
 */

struct stream {
    const struct qs_backup_env *env;
    struct qs_storage_put *put;
    int level; /* 0 = none */
    z_stream z;
    int z_ready;
    unsigned char *zout; /* owned, ZOUT bytes */
    uint64_t in_bytes;
    uint64_t out_bytes;
    struct qs_error *err;
};

#define ZOUT (256 * 1024)

static int emit(struct stream *s, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    int rc = qs_storage_put_write(s->put, data, len, s->err);
    if (rc != 0)
        return rc;
    s->out_bytes += len;
    qs_progress_bytes(s->env->progress, len);
    return 0; /* QSNAP_MAX_BANDWIDTH is enforced by the storage put */
}

static int deflate_some(struct stream *s, int flush)
{
    for (;;) {
        s->z.next_out = s->zout;
        s->z.avail_out = ZOUT;
        int zr = deflate(&s->z, flush);
        if (zr == Z_STREAM_ERROR)
            return qs_error_set(s->err, QS_EIO, "gzip: deflate failed");
        size_t have = ZOUT - s->z.avail_out;
        int rc = emit(s, s->zout, have);
        if (rc != 0)
            return rc;
        if (flush == Z_FINISH ? zr == Z_STREAM_END : s->z.avail_out != 0)
            return 0;
    }
}

static int stream_sink(const void *data, size_t len, void *ud)
{
    struct stream *s = ud;
    s->in_bytes += len;
    if (s->level == 0)
        return emit(s, data, len);
    s->z.next_in = (Bytef *)(uintptr_t)data;
    s->z.avail_in = (uInt)len;
    return deflate_some(s, Z_NO_FLUSH);
}

/* ---- helpers
 * ------------------------------------------------------------------ */

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src != NULL ? strdup(src) : NULL;
}

static struct qs_cancel *cancel_of(const struct qs_backup_env *env)
{
    return env->progress != NULL ? env->progress->cancel : NULL;
}

static void log_ctx(struct qs_log_ctx *ctx, const struct qs_backup_env *env, const char *coll,
                    const char *snap, const char *phase)
{
    *ctx = QS_LOG_CTX_NONE;
    ctx->job = env->progress != NULL ? env->progress->job_id : NULL;
    ctx->collection = coll;
    ctx->snapshot = snap;
    ctx->phase = phase;
}

/* After a failed attempt (0-based attempt number): returns 1 after sleeping
 * the backoff when the error is retryable and attempts remain, else 0. */
static int should_retry(const struct qs_backup_env *env, const char *what, const char *coll,
                        int attempt, int rc, struct qs_error *err)
{
    if (rc == 0 || err == NULL || !err->retryable || attempt + 1 >= RETRY_ATTEMPTS)
        return 0;
    long d = qs_httpc_backoff_ms(attempt + 1, RETRY_BASE_MS, RETRY_CAP_MS);
    struct qs_log_ctx c;
    log_ctx(&c, env, coll, NULL, NULL);
    c.error = err->msg;
    qs_log(QS_LOG_WARN, &c, "%s failed (attempt %d of %d), retrying in %ld ms", what, attempt + 1,
           RETRY_ATTEMPTS, d);
    if (qs_sleep_cancellable(d, cancel_of(env)) != 0) {
        qs_error_set(err, QS_ECANCELED, "%s: cancelled", what);
        return 0;
    }
    return 1;
}

/* ---- what this run stored ---------------------------------------------------
 *
 * Every object a run stores carries a random token of that run in its
 * metadata. A key that holds an object with another token (or none) was not
 * written by this run and is never deleted by it. */

#define RUN_META "qsnap-run"

static int new_run_token(char out[33])
{
    unsigned char rnd[16];
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0)
        return QS_EIO;
    qs_hex(rnd, sizeof(rnd), out);
    return 0;
}

/* 1 when key holds an object this run (run_token) stored, else 0. */
static int run_owns(const struct qs_backup_env *env, const char *key, const char *run_token)
{
    struct qs_storage_stat st;
    struct qs_error e;
    qs_error_clear(&e);
    if (qs_storage_head(env->storage, key, &st, &e) != 0)
        return 0;
    const char *t = qs_storage_meta_get(&st.meta, RUN_META);
    int own = t != NULL && strcmp(t, run_token) == 0;
    qs_storage_stat_deinit(&st);
    return own;
}

/* Refuses to back snapshot `snap` up when its object or manifest key is
 * taken: Qdrant names snapshots to the second, so a clock that stood still or
 * stepped back hands out a name an existing backup already has. Refusing
 * (rather than storing under another key) keeps the rule that a backup's
 * key is its snapshot name, which restores and Qdrant-side pruning rely on,
 * and tells the operator about the clock. 0 when both keys are free,
 * UV_EEXIST (not retryable) when one is taken. */
static int check_keys_free(const struct qs_backup_env *env, const char *snap, const char *key,
                           const char *mkey, struct qs_error *err)
{
    const char *keys[] = {mkey, key};
    for (size_t i = 0; i < 2; i++) {
        struct qs_storage_stat st;
        int rc = qs_storage_head(env->storage, keys[i], &st, err);
        if (rc == QS_ENOTFOUND)
            continue;
        if (rc != 0)
            return rc;
        qs_storage_stat_deinit(&st);
        if (err != NULL)
            err->retryable = 0; /* no retry can change this */
        return qs_error_set(err, UV_EEXIST,
                            "%s already exists at the destination: Qdrant named a new snapshot "
                            "%s again, even after its clock should have moved on (it names "
                            "snapshots to the second: is its clock stopped or set back?). The "
                            "existing %s was left untouched; no new backup was made",
                            keys[i], snap, i == 0 ? "backup" : "object");
    }
    return 0;
}

/* Streams snapshot `snap` of `coll` (NULL: full) to object key `key`.
 * Fills item->stored and *sha_out. Aborts the put on any failure. */
static int stream_snapshot(const struct qs_backup_env *env, const char *coll,
                           const struct qs_snapshot_info *snap, const char *key,
                           const char *run_token, struct qs_job_item *item, char sha_out[65],
                           uint64_t *dl_size, struct qs_error *err)
{
    const struct qs_config *cfg = env->cfg;
    struct stream s = {.env = env, .level = cfg->compression_level, .err = err};
    struct qs_storage_meta meta;
    qs_storage_meta_init(&meta);
    int64_t size = s.level > 0 ? -1 : (int64_t)snap->size;
    int rc;
    if (s.level > 0) {
        if (deflateInit2(&s.z, s.level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return qs_error_set(err, UV_ENOMEM, "gzip: cannot initialise");
        s.z_ready = 1;
        s.zout = malloc(ZOUT);
        if (s.zout == NULL) {
            rc = qs_error_set(err, UV_ENOMEM, "gzip: out of memory");
            goto out;
        }
    }
    rc = qs_storage_meta_set(&meta, "qsnap-sha256", snap->checksum);
    if (rc == 0)
        rc = qs_storage_meta_set(&meta, "qsnap-compression", s.level > 0 ? "gzip" : "none");
    if (rc == 0)
        rc = qs_storage_meta_set(&meta, RUN_META, run_token);
    if (rc != 0) {
        rc = qs_error_set(err, rc, "cannot build object metadata");
        goto out;
    }
    rc = qs_storage_put_begin(env->storage, key, size, &meta, cancel_of(env), &s.put, err);
    if (rc != 0)
        goto out;
    rc = qs_qdrant_download_snapshot(env->qdrant, coll, snap->name, stream_sink, &s, cancel_of(env),
                                     dl_size, sha_out, err);
    if (rc == 0 && s.level > 0)
        rc = deflate_some(&s, Z_FINISH);
    if (rc == 0)
        rc = qs_storage_put_finish(s.put, &item->stored, err);
    else
        qs_storage_put_abort(s.put);
    s.put = NULL;
    if (rc == 0 && item->stored != s.out_bytes)
        rc = qs_error_set(err, QS_ECHECKSUM, "stored %llu bytes but streamed %llu",
                          (unsigned long long)item->stored, (unsigned long long)s.out_bytes);
out:
    qs_storage_meta_deinit(&meta);
    if (s.z_ready)
        deflateEnd(&s.z);
    free(s.zout);
    return rc;
}

/* Deletes Qdrant-side snapshots of coll beyond QSNAP_LOCAL_KEEP, newest kept,
 * only among those whose backup is complete at the destination (verified):
 * snapshots qsnap did not upload and verify are never touched. */
static int prune_local(const struct qs_backup_env *env, const char *coll, const char *dir,
                       struct qs_job_item *item, struct qs_error *err)
{
    struct qs_snapshot_info *snaps = NULL;
    size_t nsnaps = 0;
    int rc = qs_qdrant_list_snapshots(env->qdrant, coll, &snaps, &nsnaps, err);
    if (rc != 0)
        return rc;
    struct qs_storage_list objs;
    qs_storage_list_init(&objs);
    char prefix[QS_MANIFEST_KEY_MAX];
    rc = qs_manifest_key_prefix(dir, prefix, sizeof(prefix));
    if (rc == 0)
        rc = qs_storage_list(env->storage, prefix, &objs, err);
    else
        qs_error_set(err, rc, "invalid collection name");
    if (rc != 0) {
        qs_storage_list_deinit(&objs);
        free(snaps);
        return rc;
    }
    size_t nobjs = objs.n;
    struct qs_listed_key *keys = calloc(nobjs + 1, sizeof(*keys));
    struct qs_manifest_listing listing = {0};
    if (keys == NULL) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nobjs; i++) {
        keys[i].key = objs.items[i].key;
        keys[i].size = objs.items[i].size;
        keys[i].last_modified = objs.items[i].mtime;
    }
    rc = qs_manifest_classify(keys, nobjs, &listing);
    if (rc != 0)
        goto done;
    qs_snapshot_infos_sort_newest_first(snaps, nsnaps);
    uint32_t kept = 0;
    for (size_t i = 0; i < nsnaps; i++) {
        int verified = 0;
        for (size_t k = 0; k < listing.ncomplete && !verified; k++)
            verified = strcmp(listing.complete[k].snapshot, snaps[i].name) == 0;
        if (!verified)
            continue;
        if (kept < env->cfg->local_keep) {
            kept++;
            continue;
        }
        item->local_deleted++;
        struct qs_error e;
        qs_error_clear(&e);
        struct qs_log_ctx c;
        log_ctx(&c, env, coll, snaps[i].name, "prune-local");
        if (qs_qdrant_delete_snapshot(env->qdrant, coll, snaps[i].name, &e) != 0) {
            c.error = e.msg;
            qs_log(QS_LOG_WARN, &c, "could not delete local snapshot");
            item->local_deleted--;
            kept++;
        } else {
            qs_log(QS_LOG_INFO, &c, "deleted local snapshot (uploaded and verified)");
        }
    }
    item->local_kept = (int)kept;
done:
    qs_manifest_listing_deinit(&listing);
    free(keys);
    qs_storage_list_deinit(&objs);
    free(snaps);
    return rc;
}

/* Enters a phase: the job's progress, this collection's log lines and, on
 * failure, its job item all name the phase that was running. */
static void enter_phase(const struct qs_backup_env *env, const char *dir, const char **phase,
                        struct qs_log_ctx *c, const char *next)
{
    *phase = next;
    c->phase = next;
    qs_progress_phase(env->progress, dir, next);
}

/* Writes the manifest (last). A manifest already under mkey is this run's own
 * when it holds exactly the bytes this run meant to write (an earlier attempt
 * whose answer was lost stored it); anything else is refused. */
static int write_manifest(const struct qs_backup_env *env, const char *dir, const char *mkey,
                          const struct qs_buf *mjson, struct qs_error *err)
{
    int rc;
    for (int a = 0;; a++) {
        rc = qs_storage_put_buffer(env->storage, mkey, mjson->data, mjson->len, NULL,
                                   cancel_of(env), err);
        if (!should_retry(env, "write manifest", dir, a, rc, err))
            break;
    }
    if (rc != UV_EEXIST)
        return rc;
    struct qs_buf have;
    qs_buf_init(&have);
    struct qs_error e;
    qs_error_clear(&e);
    int same =
        qs_storage_get_buffer(env->storage, mkey, mjson->len + 1, &have, cancel_of(env), &e) == 0 &&
        have.len == mjson->len && memcmp(have.data, mjson->data, have.len) == 0;
    qs_buf_free(&have);
    if (same) {
        qs_error_clear(err);
        return 0;
    }
    return rc;
}

int qs_backup_collection(const struct qs_backup_env *env, const char *collection,
                         struct qs_job_item *item, struct qs_error *err)
{
    const struct qs_config *cfg = env->cfg;
    const char *coll = cfg->mode == QS_MODE_FULL ? NULL : collection;
    const char *dir = coll != NULL ? coll : QS_MANIFEST_FULL_DIR;
    double t0 = qs_monotonic();
    item->local_kept = -1;
    struct qs_collection_info info = {0};
    struct qs_snapshot_info snap = {0};
    struct qs_manifest m = {0};
    struct qs_buf mjson;
    qs_buf_init(&mjson);
    char key[QS_MANIFEST_KEY_MAX] = "", mkey[QS_MANIFEST_KEY_MAX] = "", sha[65] = "";
    char version[64] = "unknown", run_token[33] = "";
    int created = 0, streaming = 0, stored = 0, rc;
    const char *phase = "snapshot";
    struct qs_log_ctx c;
    log_ctx(&c, env, dir, NULL, phase);

    if (coll != NULL && !qs_manifest_is_valid_collection_name(coll)) {
        rc = qs_error_set(err, QS_EINVAL, "invalid collection name");
        goto fail;
    }
    if ((rc = new_run_token(run_token)) != 0) {
        rc = qs_error_set(err, rc, "no random bytes for the run token");
        goto fail;
    }
    /* Facts at backup time, for the manifest. */
    if (coll != NULL) {
        for (int a = 0;; a++) {
            rc = qs_qdrant_collection_info(env->qdrant, coll, &info, err);
            if (!should_retry(env, "collection info", dir, a, rc, err))
                break;
        }
        if (rc != 0)
            goto fail;
    }
    if (qs_qdrant_version(env->qdrant, version, sizeof(version), NULL) != 0)
        qs_strlcpy(version, "unknown", sizeof(version));

    /* 1. snapshot, under a name no backup has yet. Qdrant names snapshots
     * to the second: a second backup within the same second (another
     * process), or a clock that stood still or stepped back, repeats a name
     * an existing backup has. Then this run's snapshot is deleted and Qdrant
     * asked once more after its second has changed; a name that comes back
     * again is refused (see check_keys_free). */
    enter_phase(env, dir, &phase, &c, "snapshot");
    for (int round = 0;; round++) {
        for (int a = 0;; a++) {
            rc = create_guard(coll, cancel_of(env));
            if (rc == 0)
                rc = qs_qdrant_create_snapshot(env->qdrant, coll, &snap, err);
            if (!should_retry(env, "create snapshot", dir, a, rc, err))
                break;
        }
        if (rc != 0)
            goto fail;
        created = 1;
        set_str(&item->snapshot, snap.name);
        item->size = snap.size;
        item->created = snap.creation_time > 0 ? snap.creation_time : qs_clock_now();
        c.snapshot = item->snapshot;
        qs_log(QS_LOG_INFO, &c, "snapshot created (%llu bytes)", (unsigned long long)snap.size);
        if (!qs_manifest_is_valid_snapshot_name(snap.name)) {
            rc = qs_error_set(err, QS_EPROTO, "Qdrant returned an unusable snapshot name");
            goto fail;
        }
        if (!qs_is_sha256_hex(snap.checksum)) {
            rc = qs_error_set(err, QS_EPROTO,
                              "Qdrant did not report a checksum for snapshot %s: cannot verify",
                              snap.name);
            goto fail;
        }
        rc = qs_manifest_object_key(dir, snap.name, cfg->compression_level > 0, key, sizeof(key));
        if (rc == 0)
            rc = qs_manifest_key(dir, snap.name, mkey, sizeof(mkey));
        if (rc != 0) {
            rc = qs_error_set(err, rc, "cannot build object key for %s", snap.name);
            goto fail;
        }
        set_str(&item->object, key);
        for (int a = 0;; a++) {
            rc = check_keys_free(env, snap.name, key, mkey, err);
            if (!should_retry(env, "check the destination", dir, a, rc, err))
                break;
        }
        if (rc != UV_EEXIST || round > 0)
            break;
        c.error = err != NULL ? err->msg : NULL;
        qs_log(QS_LOG_WARN, &c,
               "snapshot name already taken at the destination; asking Qdrant "
               "for another snapshot once its clock has moved on");
        c.error = NULL;
        struct qs_error e;
        qs_error_clear(&e);
        if (qs_qdrant_delete_snapshot(env->qdrant, coll, snap.name, &e) != 0) {
            c.error = e.msg;
            qs_log(QS_LOG_WARN, &c, "could not delete the snapshot with the taken name");
            c.error = NULL;
        }
        created = 0;
    }
    if (rc != 0)
        goto fail;

    /* 2. stream (retried from the start: a failed put was aborted) */
    enter_phase(env, dir, &phase, &c, "stream");
    streaming = 1;
    uint64_t dl_size = 0;
    for (int a = 0;; a++) {
        rc = stream_snapshot(env, coll, &snap, key, run_token, item, sha, &dl_size, err);
        if (rc == UV_EEXIST && a + 1 < RETRY_ATTEMPTS && run_owns(env, key, run_token)) {
            /* An earlier attempt stored it but its answer was lost: the bytes
             * of that attempt are not the ones hashed now, so store anew. */
            struct qs_error e;
            qs_error_clear(&e);
            if (qs_storage_delete(env->storage, key, &e) == 0)
                continue;
        }
        if (!should_retry(env, "stream snapshot", dir, a, rc, err))
            break;
    }
    if (rc != 0)
        goto fail;
    stored = 1;

    /* 3. verify */
    enter_phase(env, dir, &phase, &c, "verify");
    if (strcmp(sha, snap.checksum) != 0) {
        rc = qs_error_set(err, QS_ECHECKSUM,
                          "checksum mismatch: streamed sha256 %s, Qdrant reported %s", sha,
                          snap.checksum);
        goto fail;
    }
    if (dl_size != snap.size) {
        rc = qs_error_set(err, QS_ECHECKSUM,
                          "size mismatch: streamed %llu bytes, Qdrant reported %llu",
                          (unsigned long long)dl_size, (unsigned long long)snap.size);
        goto fail;
    }
    struct qs_storage_stat st;
    memset(&st, 0, sizeof(st));
    rc = qs_storage_head(env->storage, key, &st, err);
    if (rc == 0) {
        if (st.size != item->stored)
            rc = qs_error_set(err, QS_ECHECKSUM, "stored object has %llu bytes, expected %llu",
                              (unsigned long long)st.size, (unsigned long long)item->stored);
        qs_storage_stat_deinit(&st);
    }
    if (rc != 0)
        goto fail;

    /* 4. manifest, last */
    enter_phase(env, dir, &phase, &c, "manifest");
    m.format = QS_MANIFEST_FORMAT;
    m.collection = strdup(dir);
    m.snapshot = strdup(snap.name);
    m.created = item->created;
    m.size = snap.size;
    memcpy(m.sha256, sha, sizeof(m.sha256));
    m.compression_level = cfg->compression_level;
    m.stored_size = item->stored;
    m.object = strdup(key);
    m.qdrant_version = strdup(version);
    m.points_count = coll != NULL ? (int64_t)info.points_count : -1;
    m.vectors = coll != NULL && info.vectors_json != NULL ? strdup(info.vectors_json) : NULL;
    m.qsnap_version = strdup(QSNAP_VERSION);
    m.mode = cfg->mode;
    rc = qs_manifest_to_json(&m, &mjson);
    if (rc != 0) {
        rc = qs_error_set(err, rc, "cannot render manifest");
        goto fail;
    }
    if ((rc = write_manifest(env, dir, mkey, &mjson, err)) != 0)
        goto fail;
    item->duration_s = qs_monotonic() - t0;
    item->ok = 1;
    item->done = 1;
    c.bytes = (int64_t)item->stored;
    c.duration_s = item->duration_s;
    qs_log(QS_LOG_INFO, &c, "backup complete");

    /* 5. local pruning (failures here do not fail the backup) */
    enter_phase(env, dir, &phase, &c, "prune-local");
    struct qs_error perr;
    qs_error_clear(&perr);
    if (prune_local(env, coll, dir, item, &perr) != 0) {
        c.error = perr.msg;
        qs_log(QS_LOG_WARN, &c, "local snapshot pruning failed");
    }
    rc = 0;
    goto done;

fail:
    if (rc == 0)
        rc = QS_EIO;
    if (err != NULL && err->code == QS_ECANCELED)
        rc = QS_ECANCELED;
    item->ok = 0;
    item->done = 1;
    item->phase = phase;
    item->duration_s = qs_monotonic() - t0;
    set_str(&item->error, err != NULL ? err->msg : qs_strerror(rc));
    c.phase = phase;
    c.error = item->error;
    qs_log(QS_LOG_ERROR, &c, "backup failed");
    /* Never leave an unverified object behind, and never delete one this
     * run did not store: an object under the key with another run's token
     * (or none) is an existing backup. An object of this run whose put
     * reported a failure (e.g. an answer lost after the commit) still carries
     * this run's token. */
    if (stored || (streaming && run_owns(env, key, run_token))) {
        struct qs_error e;
        qs_error_clear(&e);
        if (qs_storage_delete(env->storage, key, &e) != 0) {
            c.error = e.msg;
            qs_log(QS_LOG_ERROR, &c, "could not remove unverified object %s", key);
        }
    }
    if (created) {
        /* The snapshot was never verified at the destination: free Qdrant's
         * disk rather than keep an unusable copy. */
        struct qs_error e;
        qs_error_clear(&e);
        if (qs_qdrant_delete_snapshot(env->qdrant, coll, snap.name, &e) != 0) {
            c.error = e.msg;
            qs_log(QS_LOG_WARN, &c, "could not delete local snapshot of failed backup");
        }
    }
done:
    qs_collection_info_deinit(&info);
    qs_manifest_deinit(&m);
    qs_buf_free(&mjson);
    return rc;
}

static void item_deinit(struct qs_job_item *it)
{
    free(it->collection);
    free(it->snapshot);
    free(it->object);
    free(it->error);
    memset(it, 0, sizeof(*it));
}

int qs_backup_run(const struct qs_backup_env *env, char *const *collections, size_t n,
                  struct qs_backup_summary *summary, struct qs_error *err)
{
    const struct qs_config *cfg = env->cfg;
    struct qs_backup_summary sum = {0};
    char **listed = NULL;
    size_t nlisted = 0;
    char *const *names = collections;
    char *full[] = {QS_MANIFEST_FULL_DIR};
    int rc = 0;
    struct qs_error first;
    qs_error_clear(&first);

    if (cfg->mode == QS_MODE_FULL) {
        names = full;
        n = 1;
    } else if (n == 0 && cfg->collections != NULL) {
        names = cfg->collections;
        n = cfg->ncollections;
    } else if (n == 0) {
        for (int a = 0;; a++) {
            rc = qs_qdrant_list_collections(env->qdrant, &listed, &nlisted, err);
            if (!should_retry(env, "list collections", NULL, a, rc, err))
                break;
        }
        if (rc != 0) {
            if (summary != NULL)
                *summary = sum;
            return rc;
        }
        /* Restore-drill scratch collections are never backed up. */
        size_t kept = 0;
        for (size_t i = 0; i < nlisted; i++) {
            if (qs_drill_is_scratch(listed[i]))
                free(listed[i]);
            else
                listed[kept++] = listed[i];
        }
        nlisted = kept;
        names = listed;
        n = nlisted;
        if (n == 0)
            QS_WARN("Qdrant has no collections: nothing to back up");
    }

    for (size_t i = 0; i < n; i++) {
        if (qs_cancel_requested(cancel_of(env))) {
            rc = qs_error_set(err, QS_ECANCELED, "backup cancelled");
            break;
        }
        struct qs_job_item item = {0};
        item.collection = strdup(names[i]);
        struct qs_error e;
        qs_error_clear(&e);
        int r = qs_backup_collection(env, cfg->mode == QS_MODE_FULL ? NULL : names[i], &item, &e);
        qs_progress_item_done(env->progress, &item);
        item_deinit(&item);
        if (r == 0) {
            sum.ok++;
            continue;
        }
        sum.failed++;
        if (first.code == 0)
            first = e;
        if (r == QS_ECANCELED) {
            rc = QS_ECANCELED;
            break;
        }
    }
    qs_qdrant_strv_free(listed, nlisted);
    if (rc == 0 && sum.failed > 0) {
        rc = first.code != 0 ? first.code : QS_EIO;
        if (err != NULL) {
            *err = first;
            qs_error_prefix(err, "%zu of %zu collections failed, first", sum.failed,
                            sum.failed + sum.ok);
        }
    }
    if (rc == 0 && cfg->heartbeat_url != NULL) {
        struct qs_error e;
        qs_error_clear(&e);
        if (qs_heartbeat_ping(cfg->heartbeat_url, &e) != 0)
            qs_log(QS_LOG_WARN, &(struct qs_log_ctx){.bytes = -1, .duration_s = -1, .error = e.msg},
                   "heartbeat ping failed");
        else
            QS_INFO("heartbeat sent");
    }
    if (summary != NULL)
        *summary = sum;
    return rc;
}
