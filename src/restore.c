#include "qsnap/restore.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <uv.h>
#include <zlib.h>

#include "qsnap/catalog.h"
#include "qsnap/cluster.h"
#include "qsnap/log.h"
#include "qsnap/manifest.h"
#include "qsnap/pipe.h"
#include "qsnap/testhooks.h"

#define PIPE_CAP (4 * 1024 * 1024)
#define MANIFEST_MAX (1024 * 1024)
#define ACTIVE_WAIT_MS (10 * 60 * 1000) /* a cluster restore's wait for Active replicas */
#define ACTIVE_POLL_MS 200

int qs_restore_target_ok(const char *name)
{
    return name != NULL && qs_manifest_is_valid_collection_name(name) && !qs_drill_is_scratch(name);
}

/* One stored object and what it must yield. */
struct stored {
    const char *key;    /* object key */
    uint64_t size;      /* bytes as Qdrant produced them */
    const char *sha256; /* their SHA-256 */
    int compressed;     /* gzip */
};

struct reader {
    const struct qs_backup_env *env;
    const struct stored *m;
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
    r->rc = qs_storage_get(r->env->storage, r->m->key, reader_sink, r, cancel_of(r->env), &r->err);
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

/* Where the bytes go: Qdrant's snapshot upload of a collection, or of one
 * shard. */
struct upload {
    struct qs_qdrant *q;
    const char *target;
    const char *filename;
    int64_t shard; /* -1: the collection snapshot upload */
};

/* Streams object o from the destination (through gunzip and SHA-256, on a
 * reader thread) into the upload u. A digest or size mismatch fails the
 * pipe before the last byte, so Qdrant never gets a whole body. */
static int stream_into_qdrant(const struct qs_backup_env *env, const struct stored *o,
                              const struct upload *u, struct qs_error *err)
{
    struct reader r;
    memset(&r, 0, sizeof(r));
    r.env = env;
    r.m = o;
    int rc = 0, pipe_ready = 0;
    if (qs_pipe_init(&r.pipe, PIPE_CAP) != 0 || qs_sha256_init(&r.sha) != 0) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto out;
    }
    pipe_ready = 1;
    if (o->compressed) {
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
    int urc = u->shard >= 0 ? qs_qdrant_upload_shard(u->q, u->target, (uint32_t)u->shard,
                                                     u->filename, pipe_source, &r, (int64_t)o->size,
                                                     o->sha256, "snapshot", cancel_of(env), &uerr)
                            : qs_qdrant_upload_snapshot(u->q, u->target, u->filename, pipe_source,
                                                        &r, (int64_t)o->size, o->sha256, "snapshot",
                                                        cancel_of(env), &uerr);
    if (urc != 0)
        qs_pipe_fail(&r.pipe, urc); /* unblock the reader */
    pthread_join(th, NULL);
    if (r.rc != 0 && !(urc != 0 && r.upload_stopped)) {
        /* The reader's reason is the real one (e.g. tampered object), unless
         * it only stopped because the upload failed (e.g. Qdrant timed out). */
        rc = r.rc;
        if (err != NULL)
            *err = r.err;
    } else if (urc != 0) {
        rc = urc;
        if (err != NULL)
            *err = uerr;
    }
out:
    if (r.z_ready)
        inflateEnd(&r.z);
    free(r.zout);
    qs_sha256_deinit(&r.sha);
    if (pipe_ready)
        qs_pipe_deinit(&r.pipe);
    return rc;
}

int qs_restore_upload_shard(const struct qs_backup_env *env, struct qs_qdrant *q,
                            const char *target, const struct qs_manifest_shard *sh,
                            int compression_level, struct qs_error *err)
{
    char filename[48];
    snprintf(filename, sizeof(filename), "shard-%" PRIu32 ".snapshot", sh->id);
    struct stored o = {sh->object, sh->size, sh->sha256, compression_level > 0};
    struct upload u = {q, target, filename, sh->id};
    return stream_into_qdrant(env, &o, &u, err);
}

/* Points counts seen by a restore, -1 while unknown. */
struct points {
    int64_t expected; /* the manifest's points_count */
    int64_t restored; /* what Qdrant reports after the upload */
};

/* Refuses, before any byte moves, a backup the target Qdrant cannot load,
 * unless forced. */
static int check_version(const struct qs_backup_env *env, const struct qs_manifest *m,
                         const struct qs_restore_req *req, struct qs_log_ctx *c,
                         struct qs_error *err)
{
    char target[64];
    int rc = qs_qdrant_version(env->qdrant, target, sizeof(target), err);
    if (rc != 0)
        return qs_error_prefix(err, "cannot check which snapshots the target Qdrant loads");
    char why[400];
    if (qs_manifest_check_versions(m->qdrant_version, target, why, sizeof(why)) == 0)
        return 0;
    if (req->force) {
        c->error = why;
        qs_log(QS_LOG_WARN, c, "restoring anyway (force)");
        c->error = NULL;
        return 0;
    }
    return qs_error_set(err, QS_EINVAL,
                        "refusing to restore %s: %s; nothing was changed. To restore anyway, "
                        "force it (\"force\": true, or --force)",
                        m->snapshot, why);
}

/* The flat body of PUT /collections/{c} from the `config` object that GET
 * /collections/{c} answered: params flattened, optimizer_config spelled
 * optimizers_config; read_fan_out_factor, which PUT does not take, left
 * out. Owned (cJSON_free), or NULL with err set. */
static char *create_body(const char *config_json, struct qs_error *err)
{
    cJSON *cfg = NULL, *body = NULL;
    char *out = NULL;
    if (qs_json_parse(config_json, strlen(config_json), &cfg, NULL) != 0 || !cJSON_IsObject(cfg)) {
        qs_error_set(err, QS_EINVAL, "the manifest's collection_config is not a JSON object");
        goto done;
    }
    if ((body = cJSON_CreateObject()) == NULL)
        goto nomem;
    for (cJSON *it = cfg->child; it != NULL; it = it->next) {
        if (strcmp(it->string, "params") == 0) {
            for (cJSON *p = it->child; p != NULL; p = p->next) {
                if (strcmp(p->string, "read_fan_out_factor") == 0)
                    continue;
                cJSON *dup = cJSON_Duplicate(p, 1);
                if (dup == NULL || !cJSON_AddItemToObject(body, p->string, dup)) {
                    cJSON_Delete(dup);
                    goto nomem;
                }
            }
            continue;
        }
        const char *name =
            strcmp(it->string, "optimizer_config") == 0 ? "optimizers_config" : it->string;
        cJSON *dup = cJSON_Duplicate(it, 1);
        if (dup == NULL || !cJSON_AddItemToObject(body, name, dup)) {
            cJSON_Delete(dup);
            goto nomem;
        }
    }
    if ((out = cJSON_PrintUnformatted(body)) == NULL)
        goto nomem;
    goto done;
nomem:
    qs_error_set(err, UV_ENOMEM, "out of memory");
done:
    cJSON_Delete(cfg);
    cJSON_Delete(body);
    return out;
}

/* A string member of the manifest's collection_config.params (borrowed from
 * root, which the caller deletes), or NULL. */
static const cJSON *config_param(const char *config_json, const char *name, cJSON **root)
{
    *root = NULL;
    if (config_json == NULL || qs_json_parse(config_json, strlen(config_json), root, NULL) != 0)
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(*root, "params"),
                                            name);
}

/* 1 when the JSON texts a and b (borrowed, may be NULL) hold equal values. */
static int same_json(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    cJSON *x = NULL, *y = NULL;
    qs_json_parse(a, strlen(a), &x, NULL);
    qs_json_parse(b, strlen(b), &y, NULL);
    int same = x != NULL && y != NULL && cJSON_Compare(x, y, 1);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return same;
}

/* The collection a shards backup is restored into: created from the
 * manifest's configuration when it does not exist (*created = 1), else
 * accepted only when it has the backup's shards and vectors (each shard
 * upload then replaces that shard's points). */
static int prepare_target(const struct qs_backup_env *env, const struct qs_manifest *m,
                          const char *target, int cluster, int *created, struct qs_error *err)
{
    *created = 0;
    cJSON *root = NULL;
    const cJSON *sm = config_param(m->collection_config, "sharding_method", &root);
    int custom = cJSON_IsString(sm) && strcmp(sm->valuestring, "custom") == 0;
    cJSON_Delete(root);
    if (custom)
        return qs_error_set(err, QS_EINVAL,
                            "backup %s is of a collection with custom sharding: qsnap cannot "
                            "re-create its shard keys",
                            m->snapshot);
    const cJSON *sn = config_param(m->collection_config, "shard_number", &root);
    int consistent = cJSON_IsNumber(sn) && sn->valuedouble == (double)m->nshards;
    cJSON_Delete(root);
    for (size_t i = 0; consistent && i < m->nshards; i++)
        consistent = m->shards[i].id == i;
    if (!consistent)
        return qs_error_set(err, QS_EINVAL,
                            "manifest of %s: its shards are not 0..%zu of its collection_config's "
                            "shard_number",
                            m->snapshot, m->nshards - 1);

    struct qs_collection_info info = {0};
    int rc = qs_qdrant_collection_info(env->qdrant, target, &info, err);
    if (rc == 0 && cluster && info.points_count > 0) {
        /* After an upload into one replica Qdrant marks the others Dead and
         * re-synchronises them, but later, through consensus: replicas of an
         * existing collection holding as many points (a roll-back) would
         * look restored while they still serve the old data. An empty one
         * is fine: its replicas hold the restored points only once
         * re-synchronised, which the wait checks. */
        qs_collection_info_deinit(&info);
        return qs_error_set(err, QS_EINVAL,
                            "collection '%s' exists and holds points: in a Qdrant cluster qsnap "
                            "restores only into a new or empty collection, since nothing tells "
                            "when Qdrant has replaced the data of the other replicas; delete it "
                            "first, or restore under another name and re-point the aliases; "
                            "nothing was changed",
                            target);
    }
    if (rc == 0) {
        const int shards_ok = info.shard_number == m->nshards && info.sharding_method[0] == '\0';
        const int vectors_ok = same_json(info.vectors_json, m->vectors);
        qs_collection_info_deinit(&info);
        if (shards_ok && vectors_ok)
            return 0;
        return qs_error_set(err, QS_EINVAL,
                            "collection '%s' exists with %s than backup %s (%zu shards): a shards "
                            "backup restores only into a new collection or one with the same "
                            "shard count and vectors; delete it first or restore under another "
                            "name",
                            target, shards_ok ? "other vectors" : "another shard count",
                            m->snapshot, m->nshards);
    }
    if (rc != QS_ENOTFOUND)
        return rc;
    char *body = create_body(m->collection_config, err);
    if (body == NULL)
        return err != NULL ? err->code : QS_EINVAL;
    rc = qs_qdrant_create_collection(env->qdrant, target, body, err);
    cJSON_free(body);
    if (rc == 0)
        *created = 1;
    return rc;
}

/* Re-creates the backup's payload indexes on target, each waited for. */
static int create_indexes(const struct qs_backup_env *env, const struct qs_manifest *m,
                          const char *target, struct qs_log_ctx *c, struct qs_error *err)
{
    cJSON *schema = NULL;
    if (m->payload_schema == NULL)
        return 0; /* a version 1 manifest: the snapshot brought what it had */
    if (qs_json_parse(m->payload_schema, strlen(m->payload_schema), &schema, NULL) != 0)
        return qs_error_set(err, QS_EINVAL, "the manifest's payload_schema is not JSON");
    int rc = 0;
    size_t n = 0;
    for (const cJSON *f = schema->child; rc == 0 && f != NULL; f = f->next) {
        /* {data_type, params?, points}: params (which carries "type") when
         * the index was made with them, else the data type. */
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(f, "params");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "data_type");
        char *js = cJSON_IsObject(params) ? cJSON_PrintUnformatted(params)
                   : cJSON_IsString(type) ? cJSON_PrintUnformatted(type)
                                          : NULL;
        if (js == NULL) {
            rc = qs_error_set(err, QS_EINVAL,
                              "the manifest's payload_schema entry '%.100s' has no data_type",
                              f->string);
            break;
        }
        rc = qs_qdrant_create_index(env->qdrant, target, f->string, js, err);
        cJSON_free(js);
        n += rc == 0;
    }
    cJSON_Delete(schema);
    if (rc == 0 && n > 0)
        qs_log(QS_LOG_INFO, c, "%zu payload indexes re-created", n);
    return rc;
}

/* ---- into a Qdrant cluster ------------------------------------------------------- */

/* How long a restore waits for the replicas, in ms. */
static uint64_t active_wait_ms(void)
{
    uint64_t limit = qs_testhook_ms(QS_TESTHOOK_ACTIVE_WAIT);
    return limit != 0 ? limit : ACTIVE_WAIT_MS;
}

/* Waits until every replica of shards 0..nshards-1 of target is Active and
 * no transfer runs, as the peer of env->qdrant sees it, at the latest until
 * the monotonic time end (0: active_wait_ms() from now). what names the
 * moment for the message ("after its creation"). */
static int wait_all_active(const struct qs_backup_env *env, const char *target, uint32_t nshards,
                           const char *what, double end, struct qs_error *err)
{
    uint64_t limit = active_wait_ms();
    if (end <= 0)
        end = qs_monotonic() + (double)limit / 1000.0;
    char why[600] = "";
    for (;;) {
        struct qs_collection_cluster cc;
        int rc = qs_cluster_collection_get(env->qdrant, target, &cc, err);
        if (rc != 0 && !(err != NULL && err->retryable))
            return qs_error_prefix(err, "cannot read the shard placement of '%s'", target);
        if (rc == 0) {
            int all = qs_cluster_all_active(&cc, nshards, why, sizeof(why));
            qs_collection_cluster_deinit(&cc);
            if (all)
                return 0;
        }
        if (qs_monotonic() >= end)
            break;
        if (qs_sleep_cancellable(ACTIVE_POLL_MS, cancel_of(env)) != 0)
            return qs_error_set(err, QS_ECANCELED, "restore cancelled");
    }
    if (err != NULL)
        err->retryable = 0;
    return qs_error_set(err, UV_ETIMEDOUT,
                        "the replicas of collection '%s' did not all become Active %s within "
                        "%llu s: %s",
                        target, what, (unsigned long long)(limit / 1000), why);
}

/* The points_count of peer q's local replica of shard sid of target (-1 when
 * it holds none), from its GET /collections/{c}/cluster. */
static int local_points(struct qs_qdrant *q, const char *target, uint32_t sid, int64_t *out,
                        struct qs_error *err)
{
    struct qs_collection_cluster cc;
    int rc = qs_cluster_collection_get(q, target, &cc, err);
    if (rc != 0)
        return rc;
    *out = -1;
    for (size_t i = 0; i < cc.nlocal; i++)
        if (cc.local[i].shard_id == sid)
            *out = (int64_t)cc.local[i].points_count;
    qs_collection_cluster_deinit(&cc);
    return 0;
}

/* local_points() of the replica a shard was just uploaded to, asked again
 * (a few times, a second apart) when the question fails. */
static int points_after_upload(const struct qs_backup_env *env, struct qs_qdrant *q,
                               const char *target, uint32_t sid, int64_t *out, struct qs_error *err)
{
    int rc = 0;
    for (int a = 0; a < 5; a++) {
        if (a > 0 && qs_sleep_cancellable(1000, cancel_of(env)) != 0)
            return qs_error_set(err, QS_ECANCELED, "restore cancelled");
        if ((rc = local_points(q, target, sid, out, err)) == 0)
            break;
    }
    return rc;
}

/* 1 when peer holds a replica of some shard in placement cc. */
static int holds_replica(const struct qs_collection_cluster *cc, uint64_t peer)
{
    if (cc->peer_id == peer && cc->nlocal > 0)
        return 1;
    for (size_t i = 0; i < cc->nremote; i++)
        if (cc->remote[i].peer_id == peer)
            return 1;
    return 0;
}

/* 1 when every peer's replica of every shard holds as many points as the
 * replica the shard was uploaded to (want[sid]); else 0 with why. A replica
 * that Qdrant has yet to mark Dead after a priority=snapshot upload (the
 * state change is a consensus proposal that lands after the answer) still
 * has its old points: Active alone does not tell it was re-synchronised.
 * Only the peers the placement names are asked: a peer that is down but
 * holds nothing of target does not hold the restore up. */
static int replicas_synced(struct qs_cluster_clients *clients, const char *target,
                           const int64_t *want, uint32_t nshards, char *why, size_t cap)
{
    const struct qs_cluster_info *ci = clients->info;
    struct qs_collection_cluster place;
    struct qs_error pe;
    if (qs_cluster_collection_get(clients->local, target, &place, &pe) != 0) {
        snprintf(why, cap, "%s", pe.msg);
        return 0;
    }
    for (size_t i = 0; i < place.nremote; i++)
        if (qs_cluster_info_peer(ci, place.remote[i].peer_id) == NULL) {
            snprintf(why, cap,
                     "peer %" PRIu64 " holds a replica but GET /cluster did not list it when the "
                     "restore began",
                     place.remote[i].peer_id);
            qs_collection_cluster_deinit(&place);
            return 0;
        }
    for (size_t p = 0; p < ci->npeers; p++) {
        if (!holds_replica(&place, ci->peers[p].id))
            continue;
        struct qs_qdrant *q;
        struct qs_error e;
        struct qs_collection_cluster cc;
        if (qs_cluster_clients_get(clients, ci->peers[p].id, &q, &e) != 0 ||
            qs_cluster_collection_get(q, target, &cc, &e) != 0) {
            snprintf(why, cap, "peer %" PRIu64 ": %s", ci->peers[p].id, e.msg);
            qs_collection_cluster_deinit(&place);
            return 0;
        }
        int ok = 1;
        for (size_t i = 0; ok && i < cc.nlocal; i++) {
            uint32_t sid = cc.local[i].shard_id;
            if (sid < nshards && want[sid] >= 0 && (int64_t)cc.local[i].points_count != want[sid]) {
                snprintf(why, cap,
                         "shard %" PRIu32 ": the replica on peer %" PRIu64 " holds %" PRIu64
                         " points, the restored one %" PRId64,
                         sid, ci->peers[p].id, cc.local[i].points_count, want[sid]);
                ok = 0;
            }
        }
        qs_collection_cluster_deinit(&cc);
        if (!ok) {
            qs_collection_cluster_deinit(&place);
            return 0;
        }
    }
    qs_collection_cluster_deinit(&place);
    return 1;
}

/* Waits (bounded) until every replica is Active and holds the restored
 * shard's points. */
static int wait_synced(const struct qs_backup_env *env, struct qs_cluster_clients *clients,
                       const char *target, const int64_t *want, uint32_t nshards,
                       struct qs_error *err)
{
    uint64_t limit = active_wait_ms();
    double end = qs_monotonic() + (double)limit / 1000.0;
    for (;;) {
        char why[600] = "";
        int rc = wait_all_active(env, target, nshards, "after the shard uploads", end, err);
        if (rc != 0)
            return rc;
        if (replicas_synced(clients, target, want, nshards, why, sizeof(why)))
            return 0;
        if (qs_monotonic() >= end) {
            if (err != NULL)
                err->retryable = 0;
            return qs_error_set(err, UV_ETIMEDOUT,
                                "the replicas of collection '%s' were not re-synchronised "
                                "within %llu s: %s",
                                target, (unsigned long long)(limit / 1000), why);
        }
        if (qs_sleep_cancellable(ACTIVE_POLL_MS, cancel_of(env)) != 0)
            return qs_error_set(err, QS_ECANCELED, "restore cancelled");
    }
}

/* Uploads every shard of m into target, each to a peer that holds a replica
 * of it (this sidecar's peer first, then ascending ids; a peer that fails
 * leaves the shard to the next), with priority=snapshot: that replica turns
 * Active and Qdrant re-synchronises the others from it. */
static int upload_cluster_shards(const struct qs_backup_env *env, const struct qs_manifest *m,
                                 const char *target, const struct qs_cluster_info *ci,
                                 struct qs_log_ctx *c, struct qs_error *err)
{
    struct qs_collection_cluster cc;
    int rc = qs_cluster_collection_get(env->qdrant, target, &cc, err);
    if (rc != 0)
        return qs_error_prefix(err, "cannot read the shard placement of '%s'", target);
    struct qs_cluster_clients clients;
    struct qs_shard_replica *r = calloc(ci->npeers + 1, sizeof(*r));
    int64_t *want = calloc(m->nshards, sizeof(*want));
    if (r == NULL || want == NULL || qs_cluster_clients_init(&clients, env->qdrant, ci) != 0) {
        free(r);
        free(want);
        qs_collection_cluster_deinit(&cc);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    for (size_t i = 0; rc == 0 && i < m->nshards; i++) {
        const struct qs_manifest_shard *sh = &m->shards[i];
        size_t n = qs_cluster_shard_replicas(&cc, sh->id, r, ci->npeers + 1);
        if (n > ci->npeers + 1)
            n = ci->npeers + 1;
        if (n == 0) {
            rc =
                qs_error_set(err, QS_EPROTO, "shard %" PRIu32 " of '%s' has no replica on any peer",
                             sh->id, target);
            break;
        }
        for (size_t k = 0; k < n; k++) {
            struct qs_qdrant *q;
            rc = qs_cluster_clients_get(&clients, r[k].peer_id, &q, err);
            if (rc == 0)
                rc = qs_restore_upload_shard(env, q, target, sh, m->compression_level, err);
            if (rc == 0) {
                /* Uploaded: a failure from here on is not the upload's, and
                 * the shard is not uploaded to another peer for it. */
                qs_log(QS_LOG_INFO, c, "shard %" PRIu32 " uploaded to peer %" PRIu64, sh->id,
                       r[k].peer_id);
                if (sh->id < m->nshards)
                    rc = points_after_upload(env, q, target, sh->id, &want[sh->id], err);
                if (rc != 0)
                    qs_error_prefix(err, "the points of the replica on peer %" PRIu64,
                                    r[k].peer_id);
                break;
            }
            if (rc == QS_ECANCELED || qs_cancel_requested(cancel_of(env)) || rc == QS_ECHECKSUM ||
                k + 1 == n)
                break; /* a bad object is bad on every peer */
            c->error = err != NULL ? err->msg : NULL;
            qs_log(QS_LOG_WARN, c,
                   "shard %" PRIu32 " could not be uploaded to peer %" PRIu64
                   "; trying the next peer holding a replica",
                   sh->id, r[k].peer_id);
            c->error = NULL;
        }
        if (rc != 0)
            qs_error_prefix(err, "shard %" PRIu32, sh->id);
    }
    /* Then Qdrant re-synchronises the other replicas from the restored ones. */
    qs_progress_phase(env->progress, target, "replicate");
    if (rc == 0)
        rc = wait_synced(env, &clients, target, want, (uint32_t)m->nshards, err);
    qs_cluster_clients_deinit(&clients);
    free(want);
    free(r);
    qs_collection_cluster_deinit(&cc);
    return rc;
}

/* The shard count of a collection-method backup, from its
 * collection_config (0 when the manifest does not tell: format 1). */
static uint32_t collection_backup_shards(const struct qs_manifest *m)
{
    if (m->collection_config == NULL)
        return 0;
    cJSON *root = NULL;
    const cJSON *sn = config_param(m->collection_config, "shard_number", &root);
    uint32_t n = sn == NULL ? 1
                 : cJSON_IsNumber(sn) && sn->valuedouble >= 1 && sn->valuedouble <= 65536
                     ? (uint32_t)sn->valuedouble
                     : 0;
    cJSON_Delete(root);
    return n;
}

static int restore(const struct qs_backup_env *env, const struct qs_restore_req *req,
                   struct qs_job_item *item, struct points *pts, struct qs_error *err)
{
    const char *target = req->target != NULL ? req->target : req->collection;
    double t0 = qs_monotonic();
    struct qs_manifest m = {0};
    struct qs_cluster_view view;
    qs_cluster_view_init(&view);
    int rc, created = 0;
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
    if (m.method == QS_METHOD_SHARDS) {
        char prefix[QS_MANIFEST_KEY_MAX];
        qs_manifest_run_prefix(m.collection, m.snapshot, prefix, sizeof(prefix));
        item->object = strdup(prefix);
    } else {
        item->object = strdup(m.object);
    }
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
    if ((rc = check_version(env, &m, req, &c, err)) != 0)
        goto out;
    /* A Qdrant cluster takes shards backups shard by shard; a collection
     * snapshot only when it holds the collection's one shard. */
    /* Qdrant answered the version check a moment ago: a guess could
     * upload every shard to one peer and skip the wait for the replicas. */
    int cluster = qs_cluster_mode(env->qdrant, env->cfg, &view, err);
    if (cluster < 0) {
        rc = cluster;
        goto out;
    }
    if (cluster == 1 && m.method == QS_METHOD_COLLECTION) {
        uint32_t n = collection_backup_shards(&m);
        if (n != 1) {
            char shards[64] = "an unknown number of shards (a format 1 manifest)";
            if (n > 1)
                snprintf(shards, sizeof(shards), "%" PRIu32 " shards", n);
            rc = qs_error_set(err, QS_EINVAL,
                              "refusing to restore %s into a Qdrant cluster: it is a collection "
                              "snapshot of %s, and a peer loads only the shards it holds from "
                              "one; restore it into a single node, or back the collection up "
                              "with QSNAP_SNAPSHOT_METHOD=shards; nothing was changed",
                              m.snapshot, shards);
            goto out;
        }
    }
    qs_log(QS_LOG_INFO, &c, "restoring %s of collection %s (%llu bytes, %s)", m.snapshot,
           req->collection, (unsigned long long)m.size,
           m.method == QS_METHOD_SHARDS ? "shards" : "collection snapshot");

    /* Stream: storage -> (gunzip) -> pipe -> Qdrant upload. */
    if (m.method == QS_METHOD_SHARDS) {
        qs_progress_phase(env->progress, target, "create");
        if ((rc = prepare_target(env, &m, target, cluster == 1, &created, err)) != 0)
            goto out;
        if (cluster == 1 && (rc = wait_all_active(env, target, (uint32_t)m.nshards,
                                                  "after its creation", 0, err)) != 0)
            goto out;
        qs_progress_phase(env->progress, target, "upload");
        if (cluster == 1) {
            if ((rc = upload_cluster_shards(env, &m, target, &view.info, &c, err)) != 0)
                goto out;
        } else {
            for (size_t i = 0; i < m.nshards; i++) {
                rc = qs_restore_upload_shard(env, env->qdrant, target, &m.shards[i],
                                             m.compression_level, err);
                if (rc != 0)
                    goto out;
            }
        }
    } else {
        qs_progress_phase(env->progress, target, "upload");
        struct stored o = {m.object, m.size, m.sha256, m.compression_level > 0};
        struct upload u = {env->qdrant, target, m.snapshot, -1};
        if ((rc = stream_into_qdrant(env, &o, &u, err)) != 0)
            goto out;
    }

    /* The payload indexes, before the points check (every shard has them). */
    qs_progress_phase(env->progress, target, "indexes");
    if ((rc = create_indexes(env, &m, target, &c, err)) != 0)
        goto out;

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
    if (rc != 0)
        goto out;

    /* Last, once the collection is verified: point the aliases at it. */
    if (m.has_aliases && m.naliases > 0) {
        if (req->no_aliases) {
            qs_log(QS_LOG_INFO, &c, "%zu aliases of the backup left as they are (not restored)",
                   m.naliases);
        } else {
            qs_progress_phase(env->progress, target, "aliases");
            rc = qs_qdrant_create_aliases(env->qdrant, target, m.aliases, m.naliases, err);
            if (rc != 0)
                goto out;
            qs_log(QS_LOG_INFO, &c, "%zu aliases point at collection %s", m.naliases, target);
        }
    }
out:
    if (rc != 0 && created) {
        /* A collection this restore created and could not fill is removed:
         * no half-restored collection is left behind. */
        struct qs_error e;
        qs_error_clear(&e);
        if (qs_qdrant_delete_collection(env->qdrant, target, &e) != 0) {
            c.error = e.msg;
            qs_log(QS_LOG_ERROR, &c, "could not delete the collection this failed restore created");
            c.error = NULL;
        }
    }
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
    qs_cluster_view_deinit(&view);
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
    /* A drill never moves an alias to its scratch collection. */
    struct qs_restore_req req = {.collection = collection,
                                 .snapshot = snapshot != NULL ? snapshot : "latest",
                                 .target = scratch,
                                 .no_aliases = 1};
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
