#include "qsnap/backup.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>
#include <zlib.h>

#include "qsnap/cluster.h"
#include "qsnap/drill.h"
#include "qsnap/httpc.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"
#include "qsnap/testhooks.h"

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
    long base = (long)qs_testhook_ms(QS_TESTHOOK_RETRY_BASE);
    long d = qs_httpc_backoff_ms(attempt + 1, base > 0 ? base : RETRY_BASE_MS, RETRY_CAP_MS);
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

/* Where the bytes of one object come from: a collection (or full-storage)
 * snapshot Qdrant wrote, or one shard streamed straight from Qdrant. */
struct source {
    struct qs_qdrant *q;
    const char *coll;     /* NULL: full-storage snapshot */
    const char *snapshot; /* collection snapshots: Qdrant's name */
    int64_t shard;        /* >= 0: this shard is streamed; -1: a snapshot file */
};

static int fetch(const struct source *src, qs_sink_fn sink, void *ud, struct qs_cancel *cancel,
                 uint64_t *size, char sha[65], struct qs_error *err)
{
    if (src->shard >= 0)
        return qs_qdrant_stream_shard(src->q, src->coll, (uint32_t)src->shard, sink, ud, cancel,
                                      size, sha, err);
    return qs_qdrant_download_snapshot(src->q, src->coll, src->snapshot, sink, ud, cancel, size,
                                       sha, err);
}

/* Streams src to object key `key` (size: exact bytes when known, else -1;
 * sha_meta: Qdrant's checksum for the object metadata, NULL when unknown).
 * Fills *stored, sha_out and *dl_size. Aborts the put on any failure. */
static int stream_object(const struct qs_backup_env *env, const struct source *src, int64_t size,
                         const char *sha_meta, const char *key, const char *run_token,
                         uint64_t *stored, char sha_out[65], uint64_t *dl_size,
                         struct qs_error *err)
{
    const struct qs_config *cfg = env->cfg;
    struct stream s = {.env = env, .level = cfg->compression_level, .err = err};
    struct qs_storage_meta meta;
    qs_storage_meta_init(&meta);
    if (s.level > 0)
        size = -1;
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
    rc = sha_meta != NULL ? qs_storage_meta_set(&meta, "qsnap-sha256", sha_meta) : 0;
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
    rc = fetch(src, stream_sink, &s, cancel_of(env), dl_size, sha_out, err);
    if (rc == 0 && s.level > 0)
        rc = deflate_some(&s, Z_FINISH);
    if (rc == 0)
        rc = qs_storage_put_finish(s.put, stored, err);
    else
        qs_storage_put_abort(s.put);
    s.put = NULL;
    if (rc == 0 && *stored != s.out_bytes)
        rc = qs_error_set(err, QS_ECHECKSUM, "stored %llu bytes but streamed %llu",
                          (unsigned long long)*stored, (unsigned long long)s.out_bytes);
out:
    qs_storage_meta_deinit(&meta);
    if (s.z_ready)
        deflateEnd(&s.z);
    free(s.zout);
    return rc;
}

/* stream_object(), retried from the start while the failure is retryable (a
 * failed put was aborted). *stored_any is set when this run may have stored
 * an object under key (its answer may have been lost). */
static int stream_retried(const struct qs_backup_env *env, const char *dir,
                          const struct source *src, int64_t size, const char *sha_meta,
                          const char *key, const char *run_token, uint64_t *stored,
                          char sha_out[65], uint64_t *dl_size, struct qs_error *err)
{
    int rc;
    for (int a = 0;; a++) {
        rc = stream_object(env, src, size, sha_meta, key, run_token, stored, sha_out, dl_size, err);
        if (rc == UV_EEXIST && a + 1 < RETRY_ATTEMPTS && run_owns(env, key, run_token)) {
            /* An earlier attempt stored it but its answer was lost: the bytes
             * of that attempt are not the ones hashed now, so store anew. */
            struct qs_error e;
            qs_error_clear(&e);
            if (qs_storage_delete(env->storage, key, &e) == 0)
                continue;
        }
        if (!should_retry(env, src->shard >= 0 ? "stream shard" : "stream snapshot", dir, a, rc,
                          err))
            break;
    }
    return rc;
}

/* Removes the object under key when this run stored it (never another
 * run's, never an existing backup's). */
static void remove_own(const struct qs_backup_env *env, struct qs_log_ctx *c, const char *key,
                       const char *run_token)
{
    if (!run_owns(env, key, run_token))
        return;
    struct qs_error e;
    qs_error_clear(&e);
    if (qs_storage_delete(env->storage, key, &e) != 0) {
        c->error = e.msg;
        qs_log(QS_LOG_ERROR, c, "could not remove unverified object %s", key);
        c->error = NULL;
    }
}

/* The manifest write failed and whether it was stored cannot be told: the
 * nobj objects it names are kept, since deleting them could leave a stored
 * manifest naming objects that are gone. If no manifest names them, pruning
 * removes them as incomplete objects after 24 hours. */
static void keep_in_doubt(struct qs_log_ctx *c, size_t nobj)
{
    qs_log(QS_LOG_ERROR, c,
           "keeping the %zu stored object(s) of this run: its manifest may be stored; without "
           "a manifest they are pruned as incomplete after 24 h",
           nobj);
}

int qs_backup_run_token(char out[33])
{
    return new_run_token(out);
}

int qs_backup_stream_shard(const struct qs_backup_env *env, struct qs_qdrant *q,
                           const char *collection, uint32_t shard_id, const char *key,
                           const char *run_token, struct qs_manifest_shard *out,
                           struct qs_error *err)
{
    memset(out, 0, sizeof(*out));
    struct source src = {.q = q, .coll = collection, .shard = shard_id};
    uint64_t stored = 0, size = 0;
    char sha[65] = "";
    int rc =
        stream_retried(env, collection, &src, -1, NULL, key, run_token, &stored, sha, &size, err);
    struct qs_storage_stat st;
    memset(&st, 0, sizeof(st));
    if (rc == 0 && (rc = qs_storage_head(env->storage, key, &st, err)) == 0) {
        if (st.size != stored)
            rc = qs_error_set(err, QS_ECHECKSUM, "stored object %s has %llu bytes, expected %llu",
                              key, (unsigned long long)st.size, (unsigned long long)stored);
        qs_storage_stat_deinit(&st);
    }
    if (rc == 0 && (out->object = strdup(key)) == NULL)
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    if (rc != 0) {
        struct qs_log_ctx c;
        log_ctx(&c, env, collection, NULL, "stream");
        remove_own(env, &c, key, run_token);
        return rc;
    }
    out->id = shard_id;
    out->size = size;
    out->stored_size = stored;
    memcpy(out->sha256, sha, sizeof(out->sha256));
    return 0;
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

/* 1 when mkey holds exactly the bytes of mjson (borrowed), 0 when it holds
 * other bytes, QS_ENOTFOUND when it holds nothing, another negative code when
 * that cannot be told (then e says why). */
static int manifest_is(const struct qs_backup_env *env, const char *mkey,
                       const struct qs_buf *mjson, struct qs_error *e)
{
    struct qs_buf have;
    qs_buf_init(&have);
    int rc = qs_storage_get_buffer(env->storage, mkey, mjson->len + 1, &have, cancel_of(env), e);
    int same = have.len == mjson->len && memcmp(have.data, mjson->data, have.len) == 0;
    qs_buf_free(&have);
    if (rc == QS_ETOOBIG)
        return 0;
    return rc != 0 ? rc : same;
}

/* 1 when a put that failed with err (borrowed) may still have stored its
 * object: no answer came (a transport failure or a timeout after the request
 * went out) or the server failed while handling it (500, 502, 504). A
 * refusal (4xx, 503 SlowDown) or a local failure stored nothing. */
static int outcome_unknown(const struct qs_error *err)
{
    if (err->code == QS_ETRANSPORT)
        return 1;
    return err->http_status == 500 || err->http_status == 502 || err->http_status == 504;
}

/* Writes the manifest (last). A manifest already under mkey is this run's own
 * when it holds exactly the bytes this run meant to write (an earlier attempt
 * whose answer was lost stored it); anything else is refused. When every
 * attempt failed and one of them may still have stored it (outcome_unknown),
 * the key is read back: the manifest found there as written counts as
 * written; when the key cannot be read, or is empty (the request of an
 * attempt that timed out may still be committed), *in_doubt is set and the
 * caller must keep the objects the manifest names. err is required. */
static int write_manifest(const struct qs_backup_env *env, const char *dir, const char *mkey,
                          const struct qs_buf *mjson, int *in_doubt, struct qs_error *err)
{
    int rc, unknown = 0;
    for (int a = 0;; a++) {
        rc = qs_storage_put_buffer(env->storage, mkey, mjson->data, mjson->len, NULL,
                                   cancel_of(env), err);
        unknown |= rc != 0 && outcome_unknown(err);
        if (!should_retry(env, "write manifest", dir, a, rc, err))
            break;
    }
    if (rc == 0 || (!unknown && rc != UV_EEXIST))
        return rc; /* stored, or every attempt was refused */
    struct qs_error e;
    qs_error_clear(&e);
    int is = manifest_is(env, mkey, mjson, &e);
    if (is == 1) {
        struct qs_log_ctx c;
        log_ctx(&c, env, dir, NULL, NULL);
        c.error = err->msg;
        if (rc != UV_EEXIST)
            qs_log(QS_LOG_WARN, &c,
                   "writing manifest %s reported a failure, but it is stored as written", mkey);
        qs_error_clear(err);
        return 0;
    }
    if (is == 0 || !unknown)
        return rc; /* another manifest holds the key, or it was taken before this run */
    *in_doubt = 1;
    if (is == QS_ENOTFOUND)
        return qs_error_prefix(err,
                               "manifest %s is not stored, but an attempt whose answer never "
                               "came may still store it",
                               mkey);
    return qs_error_prefix(err, "manifest %s may or may not be stored (reading it back: %s)", mkey,
                           e.msg);
}

/* What a backup records about the collection besides its data. */
struct facts {
    struct qs_collection_info info; /* collections mode */
    char **aliases;                 /* collections mode: the aliases pointing at it */
    size_t naliases;
    char version[64]; /* Qdrant's version (GET /) */
};

static void facts_deinit(struct facts *f)
{
    qs_collection_info_deinit(&f->info);
    qs_qdrant_strv_free(f->aliases, f->naliases);
    memset(f, 0, sizeof(*f));
}

/* Reads the facts at backup time, each read retried. coll NULL: full mode
 * (the version only). */
static int gather_facts(const struct qs_backup_env *env, const char *coll, const char *dir,
                        struct facts *f, struct qs_error *err)
{
    int rc;
    if (coll != NULL) {
        for (int a = 0;; a++) {
            rc = qs_qdrant_collection_info(env->qdrant, coll, &f->info, err);
            if (!should_retry(env, "collection info", dir, a, rc, err))
                break;
        }
        if (rc != 0)
            return rc;
        for (int a = 0;; a++) {
            rc = qs_qdrant_collection_aliases(env->qdrant, coll, &f->aliases, &f->naliases, err);
            if (!should_retry(env, "list aliases", dir, a, rc, err))
                break;
        }
        if (rc != 0)
            return rc;
    }
    /* The version decides where the backup can be restored: it must be
     * known. */
    for (int a = 0;; a++) {
        rc = qs_qdrant_version(env->qdrant, f->version, sizeof(f->version), err);
        if (!should_retry(env, "read Qdrant's version", dir, a, rc, err))
            break;
    }
    return rc;
}

/* Fills what every manifest of this run holds; the data fields (snapshot,
 * sizes, objects) are the caller's. */
static int manifest_facts(struct qs_manifest *m, const struct qs_backup_env *env, const char *dir,
                          const char *coll, const struct facts *f, int64_t created)
{
    m->format = QS_MANIFEST_FORMAT;
    m->mode = env->cfg->mode;
    m->method = coll != NULL ? env->cfg->method : QS_METHOD_COLLECTION;
    m->collection = strdup(dir);
    m->created = created;
    m->compression_level = env->cfg->compression_level;
    m->qdrant_version = strdup(f->version);
    m->qsnap_version = strdup(QSNAP_VERSION);
    m->points_count = coll != NULL ? (int64_t)f->info.points_count : -1;
    int bad = m->collection == NULL || m->qdrant_version == NULL || m->qsnap_version == NULL;
    if (coll != NULL) {
        m->vectors = strdup(f->info.vectors_json != NULL ? f->info.vectors_json : "{}");
        m->collection_config = strdup(f->info.config_json != NULL ? f->info.config_json : "{}");
        m->payload_schema =
            strdup(f->info.payload_schema_json != NULL ? f->info.payload_schema_json : "{}");
        m->has_aliases = 1;
        m->aliases = calloc(f->naliases + 1, sizeof(*m->aliases));
        bad |= m->vectors == NULL || m->collection_config == NULL || m->payload_schema == NULL ||
               m->aliases == NULL;
        for (size_t i = 0; !bad && i < f->naliases; i++) {
            m->aliases[i] = strdup(f->aliases[i]);
            bad |= m->aliases[i] == NULL;
            m->naliases += m->aliases[i] != NULL;
        }
    }
    return bad ? UV_ENOMEM : 0;
}

/* Renders and writes the manifest (last); *in_doubt as in write_manifest(). */
static int finish_manifest(const struct qs_backup_env *env, const char *dir, const char *mkey,
                           const struct qs_manifest *m, int *in_doubt, struct qs_error *err)
{
    struct qs_buf mjson;
    qs_buf_init(&mjson);
    int rc = qs_manifest_to_json(m, &mjson);
    if (rc != 0)
        rc = qs_error_set(err, rc, "cannot render manifest");
    else
        rc = write_manifest(env, dir, mkey, &mjson, in_doubt, err);
    qs_buf_free(&mjson);
    return rc;
}

/* A backup failed: the job item and the log say how. */
static int record_failure(struct qs_job_item *item, struct qs_log_ctx *c, const char *phase,
                          double t0, int rc, struct qs_error *err)
{
    if (rc == 0)
        rc = QS_EIO;
    if (err != NULL && err->code == QS_ECANCELED)
        rc = QS_ECANCELED;
    item->ok = 0;
    item->done = 1;
    item->phase = phase;
    item->duration_s = qs_monotonic() - t0;
    set_str(&item->error, err != NULL ? err->msg : qs_strerror(rc));
    c->phase = phase;
    c->error = item->error;
    qs_log(QS_LOG_ERROR, c, "backup failed");
    c->error = NULL;
    return rc;
}

static void record_success(struct qs_job_item *item, struct qs_log_ctx *c, double t0)
{
    item->duration_s = qs_monotonic() - t0;
    item->ok = 1;
    item->done = 1;
    c->bytes = (int64_t)item->stored;
    c->duration_s = item->duration_s;
    qs_log(QS_LOG_INFO, c, "backup complete");
}

/* Refuses a run name whose manifest or objects exist already (see
 * check_keys_free): 0 when free, UV_EEXIST (not retryable) when taken. */
static int check_run_free(const struct qs_backup_env *env, const char *coll, const char *run,
                          const char *mkey, struct qs_error *err)
{
    char prefix[QS_MANIFEST_KEY_MAX];
    int rc = qs_manifest_run_prefix(coll, run, prefix, sizeof(prefix));
    if (rc != 0)
        return qs_error_set(err, rc, "cannot build the key prefix of run %s", run);
    struct qs_storage_stat st;
    const char *taken = NULL;
    rc = qs_storage_head(env->storage, mkey, &st, err);
    if (rc == 0) {
        qs_storage_stat_deinit(&st);
        taken = mkey;
    } else if (rc != QS_ENOTFOUND) {
        return rc;
    } else {
        struct qs_storage_list l;
        qs_storage_list_init(&l);
        rc = qs_storage_list(env->storage, prefix, &l, err);
        if (rc == 0 && l.n > 0)
            taken = prefix;
        qs_storage_list_deinit(&l);
        if (rc != 0)
            return rc;
    }
    if (taken == NULL)
        return 0;
    if (err != NULL)
        err->retryable = 0;
    return qs_error_set(err, UV_EEXIST,
                        "%s already exists at the destination: the run name %s was used before, "
                        "even after the clock should have moved on (is the clock stopped or set "
                        "back?). The existing backup was left untouched; no new backup was made",
                        taken, run);
}

/* Where each shard of a cluster backup is read from: the peers holding an
 * Active replica of it, in the order of qs_cluster_active_peers(). */
struct shard_sources {
    struct qs_collection_cluster cc;
    struct qs_cluster_clients clients;
    uint64_t *peers; /* owned: nshards rows of npeers_max ids */
    size_t *npeers;  /* owned: nshards counts */
    size_t npeers_max;
    uint64_t *failed; /* owned: peers a shard could not be streamed from in this run */
    size_t nfailed;
};

static void sources_deinit(struct shard_sources *s)
{
    qs_cluster_clients_deinit(&s->clients);
    qs_collection_cluster_deinit(&s->cc);
    free(s->peers);
    free(s->npeers);
    free(s->failed);
    memset(s, 0, sizeof(*s));
}

/* Reads the collection's shard placement and picks, for every shard, the
 * peers it may be streamed from. Any shard in transfer or without an Active
 * replica fails the collection before anything is stored. */
static int sources_init(struct shard_sources *s, const struct qs_backup_env *env,
                        const struct qs_cluster_info *ci, const char *coll, uint32_t nshards,
                        struct qs_error *err)
{
    memset(s, 0, sizeof(*s));
    int rc;
    for (int a = 0;; a++) {
        rc = qs_cluster_collection_get(env->qdrant, coll, &s->cc, err);
        if (!should_retry(env, "read the collection's shard placement", coll, a, rc, err))
            break;
    }
    if (rc != 0)
        return rc;
    if (s->cc.shard_count != nshards) {
        rc = qs_error_set(err, QS_EPROTO,
                          "collection '%s' reports %u shards but its cluster placement %u", coll,
                          (unsigned)nshards, (unsigned)s->cc.shard_count);
        goto fail;
    }
    s->npeers_max = ci->npeers > 0 ? ci->npeers : 1;
    s->peers = calloc((size_t)nshards * s->npeers_max, sizeof(*s->peers));
    s->npeers = calloc(nshards, sizeof(*s->npeers));
    s->failed = calloc(s->npeers_max, sizeof(*s->failed));
    if (s->peers == NULL || s->npeers == NULL || s->failed == NULL ||
        qs_cluster_clients_init(&s->clients, env->qdrant, ci) != 0) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto fail;
    }
    for (uint32_t id = 0; id < nshards; id++) {
        rc = qs_cluster_active_peers(&s->cc, id, s->peers + (size_t)id * s->npeers_max,
                                     s->npeers_max, err);
        if (rc < 0) {
            if (err != NULL)
                err->retryable = 0;
            qs_error_prefix(err, "collection '%s' cannot be backed up", coll);
            goto fail;
        }
        s->npeers[id] = (size_t)rc;
    }
    return 0;
fail:
    sources_deinit(s);
    return rc;
}

static int peer_failed(const struct shard_sources *s, uint64_t id)
{
    for (size_t i = 0; i < s->nfailed; i++)
        if (s->failed[i] == id)
            return 1;
    return 0;
}

/* 0 when, as the placement reads now, peer's replica of shard id is Active
 * and no transfer touches the shard; else a negative code with err naming
 * the replicas' states. Qdrant streams a shard from any local replica
 * whatever its state, so this is asked before and after each stream: a
 * replica marked Dead or being rebuilt meanwhile never goes into a backup. */
static int replica_still_active(const struct qs_backup_env *env, const char *coll, uint32_t id,
                                uint64_t peer, size_t cap, struct qs_error *err)
{
    struct qs_collection_cluster cc;
    int rc;
    for (int a = 0;; a++) {
        rc = qs_cluster_collection_get(env->qdrant, coll, &cc, err);
        if (!should_retry(env, "read the collection's shard placement", coll, a, rc, err))
            break;
    }
    if (rc != 0)
        return rc;
    uint64_t *act = calloc(cap > 0 ? cap : 1, sizeof(*act));
    if (act == NULL) {
        qs_collection_cluster_deinit(&cc);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    int n = qs_cluster_active_peers(&cc, id, act, cap, err);
    rc = n < 0 ? n : QS_ENOTFOUND;
    for (int i = 0; i < n; i++)
        if (act[i] == peer)
            rc = 0;
    if (rc == QS_ENOTFOUND && n >= 0) {
        char what[600];
        qs_cluster_describe_shard(&cc, id, what, sizeof(what));
        rc = qs_error_set(err, QS_ENOTFOUND,
                          "the replica of shard %u on peer %" PRIu64 " is no longer Active (%s)",
                          (unsigned)id, peer, what);
    }
    free(act);
    qs_collection_cluster_deinit(&cc);
    return rc;
}

/* Streams shard id of a cluster backup from the first of its Active peers
 * that serves it: peers that already failed in this run are tried last, a
 * peer that fails (or whose replica is not Active before or after its
 * stream) is remembered and the next one tried. */
static int stream_cluster_shard(const struct qs_backup_env *env, struct shard_sources *s,
                                const char *coll, uint32_t id, const char *key,
                                const char *run_token, struct qs_manifest_shard *out,
                                struct qs_log_ctx *c, struct qs_error *err)
{
    const uint64_t *row = s->peers + (size_t)id * s->npeers_max;
    size_t n = s->npeers[id];
    uint64_t *order = calloc(n > 0 ? n : 1, sizeof(*order));
    if (order == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++)
            if (peer_failed(s, row[i]) == pass)
                order[k++] = row[i];
    int rc = QS_ENOTFOUND;
    char tried[256] = "";
    size_t tlen = 0;
    for (size_t i = 0; i < k; i++) {
        struct qs_qdrant *q;
        rc = qs_cluster_clients_get(&s->clients, order[i], &q, err);
        if (rc == 0)
            rc = replica_still_active(env, coll, id, order[i], s->npeers_max, err);
        if (rc == 0)
            rc = qs_backup_stream_shard(env, q, coll, id, key, run_token, out, err);
        if (rc == 0 &&
            (rc = replica_still_active(env, coll, id, order[i], s->npeers_max, err)) != 0) {
            qs_error_prefix(err, "shard %u streamed from peer %" PRIu64 " is not kept",
                            (unsigned)id, order[i]);
            remove_own(env, c, key, run_token);
            free(out->object);
            memset(out, 0, sizeof(*out));
        }
        if (rc == 0) {
            out->peer_id = order[i];
            free(order);
            return 0;
        }
        if (rc == QS_ECANCELED || (err != NULL && err->code == QS_ECANCELED) ||
            qs_cancel_requested(cancel_of(env))) {
            free(order);
            return rc;
        }
        int w =
            snprintf(tried + tlen, sizeof(tried) - tlen, "%s%" PRIu64, i > 0 ? ", " : "", order[i]);
        if (w > 0 && (size_t)w < sizeof(tried) - tlen)
            tlen += (size_t)w;
        if (!peer_failed(s, order[i]) && s->nfailed < s->npeers_max)
            s->failed[s->nfailed++] = order[i];
        c->error = err != NULL ? err->msg : NULL;
        qs_log(i + 1 < k ? QS_LOG_WARN : QS_LOG_ERROR, c,
               "shard %u could not be streamed from peer %" PRIu64 "%s", (unsigned)id, order[i],
               i + 1 < k ? "; trying the next Active replica" : "");
        c->error = NULL;
    }
    free(order);
    if (err != NULL)
        err->retryable = 0;
    return qs_error_wrap(err, rc,
                         "shard %u: no peer holding an Active replica served it (tried peer%s "
                         "%s)",
                         (unsigned)id, k > 1 ? "s" : "", tried);
}

/* The topology of a cluster backup into m (shards' peer ids are set as they
 * are streamed). */
static int manifest_cluster(struct qs_manifest *m, const struct qs_cluster_info *ci,
                            const struct facts *f)
{
    m->has_cluster = 1;
    m->cluster.peer_id = ci->peer_id;
    m->cluster.shard_count = f->info.shard_number;
    m->cluster.replication_factor = f->info.replication_factor > 0 ? f->info.replication_factor : 1;
    m->cluster.peers = calloc(ci->npeers > 0 ? ci->npeers : 1, sizeof(*m->cluster.peers));
    if (m->cluster.peers == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < ci->npeers; i++) {
        m->cluster.peers[i].id = ci->peers[i].id;
        if ((m->cluster.peers[i].uri = strdup(ci->peers[i].uri)) == NULL)
            return UV_ENOMEM;
        m->cluster.npeers++;
    }
    return 0;
}

/* The shards method: every shard streamed from Qdrant into its own object,
 * then the manifest listing them. ci: the cluster's peers in cluster mode
 * (each shard then streamed from a peer holding an Active replica of it),
 * NULL for a single node. */
static int backup_shards(const struct qs_backup_env *env, const char *coll, const struct facts *f,
                         const struct qs_cluster_info *ci, const char *run_token,
                         struct qs_job_item *item, struct qs_log_ctx *c, const char **phase,
                         struct qs_error *err)
{
    const struct qs_config *cfg = env->cfg;
    struct qs_manifest m = {0};
    struct shard_sources src;
    memset(&src, 0, sizeof(src));
    char run[300] = "", mkey[QS_MANIFEST_KEY_MAX] = "";
    int rc, in_doubt = 0;
    if (strcmp(f->info.sharding_method, "custom") == 0)
        return qs_error_set(err, QS_EINVAL,
                            "collection '%s' uses custom sharding: its shard keys cannot be "
                            "re-created from a shards backup; %s",
                            coll,
                            ci != NULL ? "in a Qdrant cluster qsnap backs up no such collection"
                                       : "back it up with QSNAP_SNAPSHOT_METHOD=collection");
    if (f->info.shard_number == 0 || f->info.shard_number > QS_MANIFEST_MAX_SHARDS)
        return qs_error_set(err, QS_EPROTO, "collection '%s' reports %u shards", coll,
                            (unsigned)f->info.shard_number);
    enter_phase(env, coll, phase, c, "snapshot");
    if (ci != NULL && (rc = sources_init(&src, env, ci, coll, f->info.shard_number, err)) != 0)
        return rc;

    /* A run name no backup has yet, unique to the second like Qdrant's
     * snapshot names: a second run in the same second (another process), or
     * a clock that stood still or stepped back, would repeat one. Then the
     * next second is waited for once; a name taken again is refused. */
    int64_t started = 0;
    for (int round = 0;; round++) {
        rc = create_guard(coll, cancel_of(env));
        started = qs_clock_now();
        if (rc == 0)
            rc = qs_manifest_run_name(coll, started, run, sizeof(run));
        if (rc == 0)
            rc = qs_manifest_key(coll, run, mkey, sizeof(mkey));
        if (rc != 0) {
            rc = qs_error_wrap(err, rc, "cannot name the shards run of '%s'", coll);
            goto out;
        }
        set_str(&item->snapshot, run);
        c->snapshot = item->snapshot;
        for (int a = 0;; a++) {
            rc = check_run_free(env, coll, run, mkey, err);
            if (!should_retry(env, "check the destination", coll, a, rc, err))
                break;
        }
        if (rc != UV_EEXIST || round > 0)
            break;
        c->error = err != NULL ? err->msg : NULL;
        qs_log(QS_LOG_WARN, c,
               "run name already taken at the destination; trying again once "
               "the clock has moved on");
        c->error = NULL;
    }
    if (rc != 0)
        goto out;
    char prefix[QS_MANIFEST_KEY_MAX];
    qs_manifest_run_prefix(coll, run, prefix, sizeof(prefix));
    set_str(&item->object, prefix);
    item->created = started;

    if ((rc = manifest_facts(&m, env, coll, coll, f, item->created)) != 0 ||
        (m.snapshot = strdup(run)) == NULL ||
        (m.shards = calloc(f->info.shard_number, sizeof(*m.shards))) == NULL ||
        (ci != NULL && manifest_cluster(&m, ci, f) != 0)) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto out;
    }
    m.method = QS_METHOD_SHARDS; /* in cluster mode whatever QSNAP_SNAPSHOT_METHOD says */
    enter_phase(env, coll, phase, c, "stream");
    for (uint32_t id = 0; id < f->info.shard_number; id++) {
        if (qs_cancel_requested(cancel_of(env))) {
            rc = qs_error_set(err, QS_ECANCELED, "backup cancelled");
            goto out;
        }
        char key[QS_MANIFEST_KEY_MAX];
        rc = qs_manifest_shard_key(coll, run, id, cfg->compression_level > 0, key, sizeof(key));
        if (rc != 0) {
            rc = qs_error_set(err, rc, "cannot build the key of shard %u", (unsigned)id);
            goto out;
        }
        if (ci != NULL)
            rc = stream_cluster_shard(env, &src, coll, id, key, run_token, &m.shards[m.nshards], c,
                                      err);
        else
            rc = qs_backup_stream_shard(env, env->qdrant, coll, id, key, run_token,
                                        &m.shards[m.nshards], err);
        if (rc != 0)
            goto out;
        const struct qs_manifest_shard *sh = &m.shards[m.nshards++];
        m.size += sh->size;
        m.stored_size += sh->stored_size;
        if (ci != NULL)
            qs_log(QS_LOG_INFO, c, "shard %u stored (%llu bytes) from peer %" PRIu64, (unsigned)id,
                   (unsigned long long)sh->size, sh->peer_id);
        else
            qs_log(QS_LOG_INFO, c, "shard %u stored (%llu bytes)", (unsigned)id,
                   (unsigned long long)sh->size);
    }
    item->size = m.size;
    item->stored = m.stored_size;

    enter_phase(env, coll, phase, c, "manifest");
    rc = finish_manifest(env, coll, mkey, &m, &in_doubt, err);
out:
    if (rc != 0 && in_doubt) {
        keep_in_doubt(c, m.nshards);
    } else if (rc != 0) {
        /* Never leave a shard object without its manifest: remove what this
         * run stored (nothing another run or backup owns). */
        for (size_t i = 0; i < m.nshards; i++)
            remove_own(env, c, m.shards[i].object, run_token);
    }
    qs_manifest_deinit(&m);
    sources_deinit(&src);
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
    struct facts f;
    memset(&f, 0, sizeof(f));
    struct qs_snapshot_info snap = {0};
    struct qs_manifest m = {0};
    struct qs_cluster_view view;
    qs_cluster_view_init(&view);
    char key[QS_MANIFEST_KEY_MAX] = "", mkey[QS_MANIFEST_KEY_MAX] = "", sha[65] = "";
    char run_token[33] = "";
    int created = 0, streaming = 0, stored = 0, in_doubt = 0, rc;
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
    if ((rc = gather_facts(env, coll, dir, &f, err)) != 0)
        goto fail;

    /* In a Qdrant cluster every collection is backed up shard by shard,
     * each shard from a peer holding an Active replica of it; a full
     * snapshot would hold one peer's shards only. */
    int cluster = 0;
    for (int a = 0;; a++) {
        cluster = qs_cluster_mode(env->qdrant, cfg, &view, err);
        if (cluster >= 0 || !should_retry(env, "read GET /cluster", dir, a, cluster, err))
            break;
    }
    /* Qdrant answered gather_facts a moment ago: whatever stops it
     * answering now, a guess could back up the local shards only. */
    if (cluster < 0) {
        rc = cluster;
        goto fail;
    }
    if (coll == NULL && cluster == 1) {
        rc = qs_error_set(err, QS_EINVAL, "%s", QS_CLUSTER_FULL_MODE_REFUSAL);
        goto fail;
    }
    if (coll != NULL && (cfg->method == QS_METHOD_SHARDS || cluster == 1)) {
        rc = backup_shards(env, coll, &f, cluster == 1 ? &view.info : NULL, run_token, item, &c,
                           &phase, err);
        if (rc != 0)
            goto fail;
        record_success(item, &c, t0);
        goto done;
    }

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
    struct source src = {.q = env->qdrant, .coll = coll, .snapshot = snap.name, .shard = -1};
    rc = stream_retried(env, dir, &src, (int64_t)snap.size, snap.checksum, key, run_token,
                        &item->stored, sha, &dl_size, err);
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
    if (manifest_facts(&m, env, dir, coll, &f, item->created) != 0 ||
        (m.snapshot = strdup(snap.name)) == NULL || (m.object = strdup(key)) == NULL) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto fail;
    }
    m.size = snap.size;
    memcpy(m.sha256, sha, sizeof(m.sha256));
    m.stored_size = item->stored;
    if ((rc = finish_manifest(env, dir, mkey, &m, &in_doubt, err)) != 0)
        goto fail;
    record_success(item, &c, t0);

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
    rc = record_failure(item, &c, phase, t0, rc, err);
    /* Never leave an unverified object behind, and never delete one this
     * run did not store: an object under the key with another run's token
     * (or none) is an existing backup. An object of this run whose put
     * reported a failure (e.g. an answer lost after the commit) still carries
     * this run's token. */
    if (in_doubt)
        keep_in_doubt(&c, 1);
    else if (stored || streaming)
        remove_own(env, &c, key, run_token);
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
    facts_deinit(&f);
    qs_manifest_deinit(&m);
    qs_cluster_view_deinit(&view);
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
