#include "qsnap/catalog.h"

#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <uv.h>

#include "qsnap/log.h"

#define MANIFEST_MAX (1024 * 1024)

static void loose_free(struct qs_catalog_loose *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].collection);
        free(v[i].key);
        free(v[i].upload_id);
    }
    free(v);
}

void qs_catalog_deinit(struct qs_catalog *cat)
{
    if (cat == NULL)
        return;
    for (size_t i = 0; i < cat->nbackups; i++) {
        qs_manifest_deinit(&cat->backups[i].m);
        free(cat->backups[i].manifest_key);
        free(cat->backups[i].drill_key);
        qs_drill_result_deinit(&cat->backups[i].drill);
    }
    free(cat->backups);
    loose_free(cat->incomplete, cat->nincomplete);
    loose_free(cat->uploads, cat->nuploads);
    for (size_t i = 0; i < cat->nnewer; i++) {
        free(cat->newer[i].collection);
        free(cat->newer[i].manifest_key);
        free(cat->newer[i].reason);
    }
    free(cat->newer);
    memset(cat, 0, sizeof(*cat));
}

static int newest_first(const void *a, const void *b)
{
    const struct qs_catalog_backup *x = a, *y = b;
    if (x->m.created != y->m.created)
        return x->m.created > y->m.created ? -1 : 1;
    int c = strcmp(x->m.collection, y->m.collection);
    if (c != 0)
        return c;
    return -strcmp(x->m.snapshot, y->m.snapshot);
}

static char *dup_s(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* Appends an incomplete object (strings borrowed, copied) to cat. */
static int add_loose(struct qs_catalog *cat, const char *collection, const char *key, uint64_t size,
                     int64_t time)
{
    struct qs_catalog_loose *v =
        realloc(cat->incomplete, (cat->nincomplete + 1) * sizeof(*cat->incomplete));
    if (v == NULL)
        return UV_ENOMEM;
    cat->incomplete = v;
    struct qs_catalog_loose *l = &v[cat->nincomplete];
    memset(l, 0, sizeof(*l));
    l->collection = dup_s(collection);
    l->key = dup_s(key);
    l->size = size;
    l->time = time;
    if (l->collection == NULL || l->key == NULL) {
        free(l->collection);
        free(l->key);
        return UV_ENOMEM;
    }
    cat->nincomplete++;
    return 0;
}

/* 1 when the shards manifest m lists key as a shard object. */
static int lists_shard(const struct qs_manifest *m, const char *key)
{
    for (size_t i = 0; i < m->nshards; i++)
        if (strcmp(m->shards[i].object, key) == 0)
            return 1;
    return 0;
}

/* The first shard object the manifest lists that the listing lacks, or NULL. */
static const char *missing_shard(const struct qs_manifest *m, const struct qs_listed_backup *lb)
{
    for (size_t i = 0; i < m->nshards; i++) {
        size_t k = 0;
        while (k < lb->nshards && strcmp(lb->shard_keys[k], m->shards[i].object) != 0)
            k++;
        if (k == lb->nshards)
            return m->shards[i].object;
    }
    return NULL;
}

/* Records a manifest written in a newer format than this qsnap reads. */
static int add_newer(struct qs_catalog *cat, const struct qs_listed_backup *lb, const char *why)
{
    struct qs_catalog_newer *v = realloc(cat->newer, (cat->nnewer + 1) * sizeof(*v));
    if (v == NULL)
        return UV_ENOMEM;
    cat->newer = v;
    struct qs_catalog_newer *n = &v[cat->nnewer];
    n->collection = strdup(lb->collection);
    n->manifest_key = strdup(lb->manifest_key);
    n->reason = strdup(why);
    if (n->collection == NULL || n->manifest_key == NULL || n->reason == NULL) {
        free(n->collection);
        free(n->manifest_key);
        free(n->reason);
        return UV_ENOMEM;
    }
    cat->nnewer++;
    return 0;
}

/* Reads the drill result of b (listed at b->drill_key). 0, or a transport
 * error (the catalog would be wrong). An unreadable result is logged and
 * marked, never fatal. */
static int load_drill(struct qs_storage *storage, struct qs_catalog_backup *b, struct qs_buf *buf,
                      struct qs_error *err)
{
    qs_buf_reset(buf);
    struct qs_error e;
    qs_error_clear(&e);
    int rc = qs_storage_get_buffer(storage, b->drill_key, QS_DRILL_RESULT_MAX, buf, NULL, &e);
    if (rc == QS_ENOTFOUND)
        return 0; /* deleted since the listing */
    if (rc == QS_ETOOBIG) {
        qs_error_set(&e, rc, "larger than %d bytes", QS_DRILL_RESULT_MAX);
    } else if (rc != 0) {
        *err = e;
        return rc;
    } else if (qs_drill_result_parse(buf->data, buf->len, &b->drill, &e) == 0) {
        if (strcmp(b->drill.collection, b->m.collection) == 0 &&
            strcmp(b->drill.snapshot, b->m.snapshot) == 0) {
            b->drill_state = 1;
            return 0;
        }
        qs_drill_result_deinit(&b->drill);
        qs_error_set(&e, QS_EINVAL, "collection or snapshot does not match its key");
    }
    b->drill_state = -1;
    struct qs_log_ctx c = QS_LOG_CTX_NONE;
    c.collection = b->m.collection;
    c.snapshot = b->m.snapshot;
    c.error = e.msg;
    qs_log(QS_LOG_WARN, &c, "ignoring unreadable drill result %s (left in place)", b->drill_key);
    return 0;
}

int qs_catalog_load(struct qs_storage *storage, const char *collection, int flags,
                    struct qs_catalog *out, struct qs_error *err)
{
    memset(out, 0, sizeof(*out));
    char prefix[QS_MANIFEST_KEY_MAX] = "";
    if (collection != NULL && qs_manifest_key_prefix(collection, prefix, sizeof(prefix)) != 0)
        return qs_error_set(err, QS_EINVAL, "invalid collection name");
    struct qs_storage_list list;
    qs_storage_list_init(&list);
    struct qs_manifest_listing listing = {0};
    struct qs_listed_key *keys = NULL;
    struct qs_buf buf;
    qs_buf_init(&buf);
    struct qs_catalog extra; /* shard objects no manifest lists */
    memset(&extra, 0, sizeof(extra));
    int rc = qs_storage_list(storage, prefix, &list, err);
    if (rc != 0)
        goto done;
    keys = calloc(list.n + 1, sizeof(*keys));
    if (keys == NULL) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < list.n; i++) {
        keys[i].key = list.items[i].key;
        keys[i].size = list.items[i].size;
        keys[i].last_modified = list.items[i].mtime;
    }
    rc = qs_manifest_classify(keys, list.n, &listing);
    if (rc != 0) {
        qs_error_set(err, rc, "out of memory");
        goto done;
    }
    out->backups = calloc(listing.ncomplete + 1, sizeof(*out->backups));
    if (out->backups == NULL) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < listing.ncomplete; i++) {
        const struct qs_listed_backup *lb = &listing.complete[i];
        qs_buf_reset(&buf);
        struct qs_error e;
        qs_error_clear(&e);
        rc = qs_storage_get_buffer(storage, lb->manifest_key, MANIFEST_MAX, &buf, NULL, &e);
        if (rc == QS_ENOTFOUND) {
            rc = 0; /* deleted since the listing: gone */
            continue;
        }
        if (rc != 0) {
            /* Transport trouble: the catalog would be wrong, so fail. */
            *err = e;
            goto done;
        }
        struct qs_catalog_backup *b = &out->backups[out->nbackups];
        int prc = qs_manifest_parse(buf.data, buf.len, &b->m, &e);
        if (prc == QS_EPROTO && (rc = add_newer(out, lb, e.msg)) != 0) {
            qs_error_set(err, rc, "out of memory");
            goto done;
        }
        if (prc == 0 && b->m.method == QS_METHOD_SHARDS) {
            /* Complete only with every shard object it lists. */
            const char *missing = missing_shard(&b->m, lb);
            if (missing != NULL) {
                struct qs_log_ctx c = QS_LOG_CTX_NONE;
                c.collection = lb->collection;
                c.snapshot = lb->snapshot;
                qs_log(QS_LOG_WARN, &c,
                       "manifest %s lists shard object %s, which is missing: backup is broken "
                       "(left in place)",
                       lb->manifest_key, missing);
                qs_manifest_deinit(&b->m);
                continue;
            }
        } else if (prc == 0 &&
                   (lb->object_key == NULL || strcmp(b->m.object, lb->object_key) != 0)) {
            prc = QS_EINVAL;
        }
        if (prc != 0 || strcmp(b->m.snapshot, lb->snapshot) != 0) {
            qs_manifest_deinit(&b->m);
            out->unreadable++;
            struct qs_log_ctx c = QS_LOG_CTX_NONE;
            c.collection = lb->collection;
            c.snapshot = lb->snapshot;
            c.error = e.msg[0] ? e.msg : "manifest does not match its keys";
            qs_log(QS_LOG_WARN, &c, "ignoring unreadable manifest %s (left in place)",
                   lb->manifest_key);
            continue;
        }
        /* Shard objects under the run that the manifest does not list (or
         * under a collection snapshot's name) belong to no backup. */
        for (size_t k = 0; k < lb->nshards; k++) {
            if (lists_shard(&b->m, lb->shard_keys[k]))
                continue;
            rc = add_loose(&extra, lb->collection, lb->shard_keys[k], lb->shard_sizes[k],
                           lb->last_modified);
            if (rc != 0) {
                qs_error_set(err, rc, "out of memory");
                qs_manifest_deinit(&b->m);
                goto done;
            }
        }
        b->manifest_key = strdup(lb->manifest_key);
        b->object_size = lb->object_size;
        b->manifest_mtime = lb->last_modified;
        b->drill_key = dup_s(lb->drill_key);
        out->nbackups++;
        if (b->manifest_key == NULL || (lb->drill_key != NULL && b->drill_key == NULL)) {
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
            goto done;
        }
        if ((flags & QS_CATALOG_DRILLS) && b->drill_key != NULL &&
            (rc = load_drill(storage, b, &buf, err)) != 0)
            goto done;
    }
    qsort(out->backups, out->nbackups, sizeof(*out->backups), newest_first);
    for (size_t i = 0; i < listing.nincomplete; i++) {
        rc = add_loose(out, listing.incomplete[i].collection, listing.incomplete[i].key,
                       listing.incomplete[i].size, listing.incomplete[i].last_modified);
        if (rc != 0) {
            qs_error_set(err, rc, "out of memory");
            goto done;
        }
    }
    for (size_t i = 0; i < extra.nincomplete; i++) {
        rc = add_loose(out, extra.incomplete[i].collection, extra.incomplete[i].key,
                       extra.incomplete[i].size, extra.incomplete[i].time);
        if (rc != 0) {
            qs_error_set(err, rc, "out of memory");
            goto done;
        }
    }
    for (size_t i = 0; i < listing.norphans; i++) {
        struct qs_log_ctx c = QS_LOG_CTX_NONE;
        c.collection = listing.orphans[i].collection;
        c.snapshot = listing.orphans[i].snapshot;
        qs_log(QS_LOG_WARN, &c, "manifest %s has no object: backup is broken",
               listing.orphans[i].manifest_key);
    }
    if (flags & QS_CATALOG_UPLOADS) {
        struct qs_storage_uploads ups;
        qs_storage_uploads_init(&ups);
        rc = qs_storage_list_uploads(storage, prefix, &ups, err);
        if (rc == 0) {
            out->uploads = calloc(ups.n + 1, sizeof(*out->uploads));
            if (out->uploads == NULL)
                rc = qs_error_set(err, UV_ENOMEM, "out of memory");
            for (size_t i = 0; rc == 0 && i < ups.n; i++) {
                struct qs_catalog_loose *l = &out->uploads[out->nuploads++];
                l->key = dup_s(ups.items[i].key);
                l->upload_id = dup_s(ups.items[i].upload_id);
                l->time = ups.items[i].initiated;
                const char *slash = strchr(ups.items[i].key, '/');
                l->collection = slash != NULL
                                    ? strndup(ups.items[i].key, (size_t)(slash - ups.items[i].key))
                                    : NULL;
            }
        }
        qs_storage_uploads_deinit(&ups);
    }
done:
    loose_free(extra.incomplete, extra.nincomplete);
    qs_buf_free(&buf);
    free(keys);
    qs_manifest_listing_deinit(&listing);
    qs_storage_list_deinit(&list);
    if (rc != 0)
        qs_catalog_deinit(out);
    return rc;
}

const struct qs_catalog_backup *qs_catalog_find(const struct qs_catalog *cat,
                                                const char *collection, const char *snapshot)
{
    int latest = snapshot == NULL || strcmp(snapshot, "latest") == 0;
    for (size_t i = 0; i < cat->nbackups; i++) {
        const struct qs_catalog_backup *b = &cat->backups[i];
        if (strcmp(b->m.collection, collection) != 0)
            continue;
        if (latest || strcmp(b->m.snapshot, snapshot) == 0)
            return b; /* newest first */
    }
    return NULL;
}

int qs_catalog_latest(const struct qs_catalog *cat, const char *collection,
                      const struct qs_catalog_backup **out, struct qs_error *err)
{
    *out = NULL;
    /* A backup this qsnap cannot read may be the newest one: picking the
     * newest readable one instead would silently restore older data. */
    for (size_t i = 0; i < cat->nnewer; i++)
        if (strcmp(cat->newer[i].collection, collection) == 0)
            return qs_error_set(err, QS_EPROTO,
                                "refusing to pick the latest backup of collection '%s': "
                                "manifest %s cannot be read by this qsnap (%s); a newer qsnap "
                                "wrote it, so the latest backup may be one this qsnap cannot "
                                "restore. Upgrade qsnap, or name an older snapshot explicitly",
                                collection, cat->newer[i].manifest_key, cat->newer[i].reason);
    *out = qs_catalog_find(cat, collection, NULL);
    if (*out == NULL)
        return qs_error_set(err, QS_ENOTFOUND, "no backup of collection '%s' found", collection);
    return 0;
}

int qs_catalog_take_latest(struct qs_catalog *cat, const char *collection, struct qs_manifest *out,
                           struct qs_error *err)
{
    const struct qs_catalog_backup *b = NULL;
    int rc = qs_catalog_latest(cat, collection, &b, err);
    if (rc != 0)
        return rc;
    struct qs_catalog_backup *own = &cat->backups[b - cat->backups];
    *out = own->m;
    memset(&own->m, 0, sizeof(own->m));
    return 0;
}

int qs_catalog_to_json(const struct qs_catalog *cat, struct qs_buf *out)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = root != NULL ? cJSON_AddArrayToObject(root, "backups") : NULL;
    if (arr == NULL) {
        cJSON_Delete(root);
        return UV_ENOMEM;
    }
    for (size_t i = 0; i < cat->nbackups; i++) {
        const struct qs_manifest *m = &cat->backups[i].m;
        cJSON *o = cJSON_CreateObject();
        if (o == NULL)
            break;
        char t[21];
        qs_time_rfc3339(m->created, t);
        cJSON_AddStringToObject(o, "collection", m->collection);
        cJSON_AddStringToObject(o, "snapshot", m->snapshot);
        cJSON_AddStringToObject(o, "created", t);
        cJSON_AddNumberToObject(o, "size", (double)m->size);
        if (m->method == QS_METHOD_SHARDS)
            cJSON_AddNullToObject(o, "sha256");
        else
            cJSON_AddStringToObject(o, "sha256", m->sha256);
        cJSON_AddStringToObject(o, "compression", m->compression_level > 0 ? "gzip" : "none");
        cJSON_AddNumberToObject(o, "stored_size", (double)m->stored_size);
        if (m->object != NULL)
            cJSON_AddStringToObject(o, "object", m->object);
        else
            cJSON_AddNullToObject(o, "object");
        cJSON_AddNumberToObject(o, "format", m->format);
        cJSON_AddStringToObject(o, "method",
                                m->method == QS_METHOD_SHARDS ? "shards" : "collection");
        if (m->method == QS_METHOD_SHARDS) {
            cJSON *sa = cJSON_AddArrayToObject(o, "shards");
            for (size_t k = 0; sa != NULL && k < m->nshards; k++) {
                cJSON *so = cJSON_CreateObject();
                if (so == NULL)
                    break;
                cJSON_AddNumberToObject(so, "id", m->shards[k].id);
                cJSON_AddStringToObject(so, "object", m->shards[k].object);
                cJSON_AddNumberToObject(so, "size", (double)m->shards[k].size);
                cJSON_AddStringToObject(so, "sha256", m->shards[k].sha256);
                cJSON_AddNumberToObject(so, "stored_size", (double)m->shards[k].stored_size);
                cJSON_AddItemToArray(sa, so);
            }
        }
        if (m->has_aliases) {
            cJSON *aa = cJSON_AddArrayToObject(o, "aliases");
            for (size_t k = 0; aa != NULL && k < m->naliases; k++)
                cJSON_AddItemToArray(aa, cJSON_CreateString(m->aliases[k]));
        } else {
            cJSON_AddNullToObject(o, "aliases");
        }
        if (m->points_count >= 0)
            cJSON_AddNumberToObject(o, "points_count", (double)m->points_count);
        else
            cJSON_AddNullToObject(o, "points_count");
        cJSON_AddStringToObject(o, "qdrant_version", m->qdrant_version);
        cJSON_AddStringToObject(o, "mode", m->mode == QS_MODE_FULL ? "full" : "collections");
        const struct qs_drill_result *d = &cat->backups[i].drill;
        if (cat->backups[i].drill_state == 1) {
            cJSON *dj = cJSON_AddObjectToObject(o, "drill");
            if (dj != NULL) {
                qs_time_rfc3339(d->finished, t);
                cJSON_AddStringToObject(dj, "result", d->ok ? "success" : "failure");
                cJSON_AddStringToObject(dj, "finished", t);
                cJSON_AddNumberToObject(dj, "duration_s", d->duration_s);
                if (d->points_expected >= 0)
                    cJSON_AddNumberToObject(dj, "points_expected", (double)d->points_expected);
                else
                    cJSON_AddNullToObject(dj, "points_expected");
                if (d->points_restored >= 0)
                    cJSON_AddNumberToObject(dj, "points_restored", (double)d->points_restored);
                else
                    cJSON_AddNullToObject(dj, "points_restored");
                if (d->error != NULL)
                    cJSON_AddStringToObject(dj, "error", d->error);
                else
                    cJSON_AddNullToObject(dj, "error");
            }
        } else {
            cJSON_AddNullToObject(o, "drill");
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (s == NULL)
        return UV_ENOMEM;
    int rc = qs_buf_append(out, s, strlen(s));
    cJSON_free(s);
    return rc;
}
