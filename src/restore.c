#include "qsnap/restore.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>
#include <zlib.h>

#include "qsnap/catalog.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"
#include "qsnap/pipe.h"

#define PIPE_CAP (4 * 1024 * 1024)
#define MANIFEST_MAX (1024 * 1024)

int qs_restore_target_ok(const char *name)
{
    return name != NULL && qs_manifest_is_valid_collection_name(name) && !qs_drill_is_scratch(name);
}

struct reader {
    const struct qs_backup_env *env;
    const struct qs_manifest *m;
    struct qs_pipe pipe;
    struct qs_sha256 sha;
    z_stream z;
    int z_ready;
    int z_end;
    unsigned char *zout;
    uint64_t produced;
    int upload_stopped; /* the pipe was failed by the upload side */
    struct qs_error err;
    int rc;
};

#define ZOUT (256 * 1024)

static struct qs_cancel *cancel_of(const struct qs_backup_env *env)
{
    return env->progress != NULL ? env->progress->cancel : NULL;
}

/* Hands bytes of the snapshot (as Qdrant produced it) to the pipe, hashing
 * them; holds back the final verdict until the end. */
static int produce(struct reader *r, const void *data, size_t len)
{
    if (r->produced + len > r->m->size)
        return qs_error_set(&r->err, QS_ECHECKSUM,
                            "stored object expands beyond the manifest size of %llu bytes",
                            (unsigned long long)r->m->size);
    qs_sha256_update(&r->sha, data, len);
    r->produced += len;
    qs_progress_bytes(r->env->progress, len);
    int rc = qs_pipe_write(&r->pipe, data, len);
    if (rc != 0) {
        r->upload_stopped = 1;
        return qs_error_set(&r->err, rc, "upload side stopped");
    }
    return 0;
}

static int reader_sink(const void *data, size_t len, void *ud)
{
    struct reader *r = ud;
    if (!r->z_ready)
        return produce(r, data, len);
    if (r->z_end && len > 0)
        return qs_error_set(&r->err, QS_ECHECKSUM, "trailing data after the gzip stream");
    r->z.next_in = (Bytef *)(uintptr_t)data;
    r->z.avail_in = (uInt)len;
    while (r->z.avail_in > 0 && !r->z_end) {
        r->z.next_out = r->zout;
        r->z.avail_out = ZOUT;
        int zr = inflate(&r->z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            return qs_error_set(&r->err, QS_ECHECKSUM, "stored object is not valid gzip: %s",
                                r->z.msg != NULL ? r->z.msg : "inflate failed");
        int prc = produce(r, r->zout, ZOUT - r->z.avail_out);
        if (prc != 0)
            return prc;
        if (zr == Z_STREAM_END)
            r->z_end = 1;
        if (zr == Z_BUF_ERROR)
            break;
    }
    return 0;
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    r->rc =
        qs_storage_get(r->env->storage, r->m->object, reader_sink, r, cancel_of(r->env), &r->err);
    if (r->rc == 0 && r->z_ready && !r->z_end)
        r->rc = qs_error_set(&r->err, QS_ECHECKSUM, "stored object: gzip stream is truncated");
    if (r->rc == 0 && r->produced != r->m->size)
        r->rc = qs_error_set(&r->err, QS_ECHECKSUM,
                             "stored object yields %llu bytes, manifest says %llu",
                             (unsigned long long)r->produced, (unsigned long long)r->m->size);
    if (r->rc == 0) {
        char sha[65];
        qs_sha256_final(&r->sha, sha);
        if (strcmp(sha, r->m->sha256) != 0)
            r->rc = qs_error_set(&r->err, QS_ECHECKSUM,
                                 "stored object does not match its manifest: sha256 %s, "
                                 "manifest %s",
                                 sha, r->m->sha256);
    }
    if (r->rc != 0)
        qs_pipe_fail(&r->pipe, r->rc); /* Qdrant must not get a complete body */
    else
        qs_pipe_close(&r->pipe);
    return NULL;
}

static ssize_t pipe_source(void *buf, size_t cap, void *ud)
{
    struct reader *r = ud;
    return qs_pipe_read(&r->pipe, buf, cap);
}

static int load_manifest(const struct qs_backup_env *env, const char *collection,
                         const char *snapshot, struct qs_manifest *m, struct qs_error *err)
{
    if (snapshot == NULL || strcmp(snapshot, "latest") == 0) {
        struct qs_catalog cat;
        int rc = qs_catalog_load(env->storage, collection, 0, &cat, err);
        if (rc == 0)
            rc = qs_catalog_take_latest(&cat, collection, m, err);
        qs_catalog_deinit(&cat);
        return rc;
    }
    char key[QS_MANIFEST_KEY_MAX];
    if (qs_manifest_key(collection, snapshot, key, sizeof(key)) != 0)
        return qs_error_set(err, QS_EINVAL, "invalid snapshot name");
    struct qs_buf buf;
    qs_buf_init(&buf);
    int rc = qs_storage_get_buffer(env->storage, key, MANIFEST_MAX, &buf, cancel_of(env), err);
    if (rc == QS_ENOTFOUND)
        rc = qs_error_set(err, QS_ENOTFOUND,
                          "backup '%s' of collection '%s' not found (no manifest)", snapshot,
                          collection);
    if (rc == 0) {
        rc = qs_manifest_parse(buf.data, buf.len, m, err);
        if (rc != 0)
            qs_error_prefix(err, "manifest %s", key);
    }
    qs_buf_free(&buf);
    return rc;
}

/* Points counts seen by a restore, -1 while unknown. */
struct points {
    int64_t expected; /* the manifest's points_count */
    int64_t restored; /* what Qdrant reports after the upload */
};

static int restore(const struct qs_backup_env *env, const struct qs_restore_req *req,
                   struct qs_job_item *item, struct points *pts, struct qs_error *err)
{
    const char *target = req->target != NULL ? req->target : req->collection;
    double t0 = qs_monotonic();
    struct qs_manifest m = {0};
    struct reader r;
    memset(&r, 0, sizeof(r));
    int rc, pipe_ready = 0;
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.job = env->progress != NULL ? env->progress->job_id : NULL;
    c.collection = target;

    if (!qs_manifest_is_valid_collection_name(req->collection) ||
        !qs_manifest_is_valid_collection_name(target)) {
        rc = qs_error_set(err, QS_EINVAL, "invalid collection name");
        goto out;
    }
    qs_progress_phase(env->progress, target, "manifest");
    rc = load_manifest(env, req->collection, req->snapshot, &m, err);
    if (rc != 0)
        goto out;
    free(item->snapshot);
    item->snapshot = strdup(m.snapshot);
    free(item->object);
    item->object = strdup(m.object);
    item->size = m.size;
    item->created = m.created;
    pts->expected = m.points_count;
    c.snapshot = m.snapshot;
    if (m.mode == QS_MODE_FULL) {
        rc = qs_error_set(err, QS_EINVAL,
                          "'%s' is a full-storage snapshot: Qdrant restores those only at "
                          "startup (--storage-snapshot); see the runbook",
                          m.snapshot);
        goto out;
    }
    qs_log(QS_LOG_INFO, &c, "restoring %s of collection %s (%llu bytes)", m.snapshot,
           req->collection, (unsigned long long)m.size);

    /* Stream: storage -> (gunzip) -> pipe -> Qdrant upload. */
    qs_progress_phase(env->progress, target, "upload");
    r.env = env;
    r.m = &m;
    if (qs_pipe_init(&r.pipe, PIPE_CAP) != 0 || qs_sha256_init(&r.sha) != 0) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto out;
    }
    pipe_ready = 1;
    if (m.compression_level > 0) {
        if (inflateInit2(&r.z, 15 + 16) != Z_OK || (r.zout = malloc(ZOUT)) == NULL) {
            rc = qs_error_set(err, UV_ENOMEM, "gzip: cannot initialise");
            goto out;
        }
        r.z_ready = 1;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, reader_main, &r) != 0) {
        rc = qs_error_set(err, UV_EAGAIN, "cannot start reader thread");
        goto out;
    }
    struct qs_error uerr;
    qs_error_clear(&uerr);
    int urc =
        qs_qdrant_upload_snapshot(env->qdrant, target, m.snapshot, pipe_source, &r, (int64_t)m.size,
                                  m.sha256, "snapshot", cancel_of(env), &uerr);
    if (urc != 0)
        qs_pipe_fail(&r.pipe, urc); /* unblock the reader */
    pthread_join(th, NULL);
    if (r.rc != 0 && !(urc != 0 && r.upload_stopped)) {
        /* The reader's reason is the real one (e.g. tampered object), unless
         * it only stopped because the upload failed (e.g. Qdrant timed out). */
        rc = r.rc;
        if (err != NULL)
            *err = r.err;
        goto out;
    }
    if (urc != 0) {
        rc = urc;
        if (err != NULL)
            *err = uerr;
        goto out;
    }

    /* Check what Qdrant now holds. */
    qs_progress_phase(env->progress, target, "check");
    struct qs_collection_info info = {0};
    rc = qs_qdrant_collection_info(env->qdrant, target, &info, err);
    if (rc == 0)
        pts->restored = (int64_t)info.points_count;
    if (rc == 0 && m.points_count >= 0 && (int64_t)info.points_count != m.points_count)
        rc = qs_error_set(err, QS_ECHECKSUM,
                          "collection '%s' reports %llu points after restore, backup had %lld",
                          target, (unsigned long long)info.points_count, (long long)m.points_count);
    qs_collection_info_deinit(&info);
out:
    if (r.z_ready)
        inflateEnd(&r.z);
    free(r.zout);
    qs_sha256_deinit(&r.sha);
    if (pipe_ready)
        qs_pipe_deinit(&r.pipe);
    item->done = 1;
    item->ok = rc == 0;
    item->duration_s = qs_monotonic() - t0;
    item->stored = m.stored_size;
    if (rc != 0) {
        free(item->error);
        item->error = strdup(err != NULL ? err->msg : qs_strerror(rc));
        c.error = item->error;
        qs_log(QS_LOG_ERROR, &c, "restore failed");
    } else {
        c.duration_s = item->duration_s;
        c.bytes = (int64_t)m.size;
        qs_log(QS_LOG_INFO, &c, "restore complete, points_count matches the manifest");
    }
    qs_manifest_deinit(&m);
    return rc;
}

int qs_restore_run(const struct qs_backup_env *env, const struct qs_restore_req *req,
                   struct qs_job_item *item, struct qs_error *err)
{
    struct points pts = {-1, -1};
    return restore(env, req, item, &pts, err);
}

/* Stores r beside the backup it tested, replacing an earlier result of the
 * same backup (a drill result is no backup: the one put that may replace). */
static void store_drill_result(const struct qs_backup_env *env, const struct qs_drill_result *r)
{
    char key[QS_MANIFEST_KEY_MAX];
    struct qs_buf js;
    qs_buf_init(&js);
    struct qs_error e;
    qs_error_clear(&e);
    int rc = qs_manifest_drill_key(r->collection, r->snapshot, key, sizeof(key));
    if (rc == 0)
        rc = qs_drill_result_to_json(r, &js);
    if (rc != 0)
        qs_error_set(&e, rc, "cannot render the drill result");
    else
        rc =
            qs_storage_replace_buffer(env->storage, key, js.data, js.len, NULL, cancel_of(env), &e);
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.job = env->progress != NULL ? env->progress->job_id : NULL;
    c.collection = r->collection;
    c.snapshot = r->snapshot;
    if (rc != 0) {
        c.error = e.msg;
        qs_log(QS_LOG_ERROR, &c, "could not store the drill result");
    } else {
        qs_log(QS_LOG_DEBUG, &c, "drill result stored as %s", key);
    }
    qs_buf_free(&js);
}

int qs_restore_drill(const struct qs_backup_env *env, const char *collection, const char *snapshot,
                     struct qs_job_item *item, struct qs_error *err)
{
    char scratch[QS_MANIFEST_KEY_MAX];
    if (qs_drill_scratch_name(collection, scratch, sizeof(scratch)) != 0)
        return qs_error_set(err, QS_EINVAL, "collection name too long for a drill");
    double t0 = qs_monotonic();
    /* A leftover from a crashed drill must not be mistaken for success. */
    qs_qdrant_delete_collection(env->qdrant, scratch, NULL);
    struct qs_restore_req req = {.collection = collection,
                                 .snapshot = snapshot != NULL ? snapshot : "latest",
                                 .target = scratch};
    struct points pts = {-1, -1};
    int rc = restore(env, &req, item, &pts, err);
    struct qs_error e;
    qs_error_clear(&e);
    if (qs_qdrant_delete_collection(env->qdrant, scratch, &e) != 0 && e.code != QS_ENOTFOUND) {
        struct qs_log_ctx c = QS_LOG_CTX_NONE;
        c.collection = scratch;
        c.error = e.msg;
        qs_log(QS_LOG_ERROR, &c, "could not delete drill scratch collection");
        if (rc == 0) {
            rc = e.code != 0 ? e.code : QS_EIO;
            if (err != NULL)
                *err = e;
            item->ok = 0;
            free(item->error);
            item->error = strdup(e.msg);
        }
    }
    /* Record the outcome beside the backup that was tested (when one was
     * found); a cancelled drill has no outcome. */
    if (item->snapshot != NULL && rc != QS_ECANCELED && !qs_cancel_requested(cancel_of(env))) {
        /* The record owns its strings (drill.h): copies. */
        const char *error = rc != 0 ? item->error : NULL;
        struct qs_drill_result r = {
            .collection = strdup(collection),
            .snapshot = strdup(item->snapshot),
            .ok = rc == 0,
            .finished = qs_clock_now(),
            .duration_s = qs_monotonic() - t0,
            .points_expected = pts.expected,
            .points_restored = pts.restored,
            .error = error != NULL ? strdup(error) : NULL,
        };
        if (r.collection == NULL || r.snapshot == NULL || (error != NULL && r.error == NULL))
            QS_ERROR("out of memory: the drill result of %s is not stored", collection);
        else
            store_drill_result(env, &r);
        qs_drill_result_deinit(&r);
    }
    return rc;
}
