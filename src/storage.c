#include "qsnap/storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/fsstore.h"
#include "qsnap/s3.h"
#include "qsnap/storage_driver.h"
#include "qsnap/testhooks.h"

/* The drivers, by destination kind. */
static const struct qs_storage_driver *driver_for(enum qs_dest_kind kind)
{
    switch (kind) {
    case QS_DEST_S3:
        return &qs_s3_driver;
    case QS_DEST_FILE:
        return &qs_fsstore_driver;
    }
    return NULL;
}

struct qs_storage {
    const struct qs_storage_driver *drv;
    struct qs_storage_be *be;
    uint64_t max_bytes_per_sec;
    char describe[1200];
};

struct qs_storage_put {
    struct qs_storage *st;
    struct qs_storage_be_put *bp; /* the driver's put */
    char key[1025];
    int64_t size;
    uint64_t written;
    struct qs_cancel *cancel;
    double t0;
    int dead;
};

int qs_storage_key_check(const char *key, struct qs_error *err)
{
    if (key == NULL || key[0] == '\0')
        return qs_error_set(err, QS_EINVAL, "empty object key");
    size_t n = strlen(key);
    if (n > 1024)
        return qs_error_set(err, QS_EINVAL, "object key longer than 1024 bytes");
    const char *comp = key;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c != '\0' && (c < 0x20 || c == 0x7f))
            return qs_error_set(err, QS_EINVAL, "object key contains a control character");
        if (c == '/' || c == '\0') {
            if (&key[i] == comp)
                return qs_error_set(err, QS_EINVAL, "object key \"%s\" has an empty component",
                                    key);
            if (*comp == '.')
                return qs_error_set(err, QS_EINVAL,
                                    "object key \"%s\" has a component starting with '.'", key);
            comp = &key[i + 1];
        }
    }
    return 0;
}

/* ---- construction ------------------------------------------------------------------- */

int qs_storage_new(const struct qs_storage_opts *opts, struct qs_storage **out,
                   struct qs_error *err)
{
    const struct qs_storage_driver *drv = driver_for(opts->kind);
    if (drv == NULL)
        return qs_error_set(err, QS_ECONFIG, "unknown destination kind %d", (int)opts->kind);
    struct qs_storage *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    int rc = drv->open(opts, &st->be, err);
    if (rc != 0) {
        free(st);
        return rc;
    }
    st->drv = drv;
    st->max_bytes_per_sec = opts->max_bytes_per_sec;
    drv->describe(st->be, st->describe, sizeof(st->describe));
    *out = st;
    return 0;
}

int qs_storage_new_from_config(const struct qs_config *cfg, struct qs_storage **out,
                               struct qs_error *err)
{
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    o.kind = cfg->dest_kind;
    o.max_bytes_per_sec = cfg->max_bandwidth;
    o.retry_base_ms = (int)qs_testhook_ms(QS_TESTHOOK_RETRY_BASE); /* 0: the default */
    if (cfg->dest_kind == QS_DEST_FILE) {
        o.path = cfg->dest_path;
        return qs_storage_new(&o, out, err);
    }
    o.bucket = cfg->dest_bucket;
    o.prefix = cfg->dest_prefix;
    o.endpoint = cfg->s3_endpoint;
    o.region = cfg->s3_region;
    o.access_key_id = cfg->s3_access_key_id;
    o.secret_access_key = cfg->s3_secret_access_key;
    o.uri_style = cfg->s3_uri_style;
    o.ca_file = cfg->s3_ca_file;
    o.part_size = cfg->s3_part_size;
    return qs_storage_new(&o, out, err);
}

void qs_storage_free(struct qs_storage *st)
{
    if (st == NULL)
        return;
    st->drv->close(st->be);
    free(st);
}

const char *qs_storage_describe(const struct qs_storage *st)
{
    return st->describe;
}

uint64_t qs_storage_retries(const struct qs_storage *st)
{
    return st->drv->retries(st->be);
}

int qs_storage_probe(struct qs_storage *st, struct qs_error *err)
{
    return st->drv->probe(st->be, err);
}

/* ---- put -------------------------------------------------------------------------------- */

static int put_begin(struct qs_storage *st, const char *key, int64_t size,
                     const struct qs_storage_meta *meta, unsigned flags, struct qs_cancel *cancel,
                     struct qs_storage_put **out, struct qs_error *err)
{
    int rc = qs_storage_key_check(key, err);
    if (rc != 0)
        return rc;
    if (size < -1)
        return qs_error_set(err, QS_EINVAL, "put %s: invalid size", key);
    struct qs_storage_put *put = calloc(1, sizeof(*put));
    if (put == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    put->st = st;
    put->size = size;
    put->cancel = cancel;
    put->t0 = qs_monotonic();
    qs_strlcpy(put->key, key, sizeof(put->key));
    rc = st->drv->put_begin(st->be, key, size, meta, flags, cancel, &put->bp, err);
    if (rc != 0) {
        free(put);
        return rc;
    }
    *out = put;
    return 0;
}

int qs_storage_put_begin(struct qs_storage *st, const char *key, int64_t size,
                         const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                         struct qs_storage_put **out, struct qs_error *err)
{
    return put_begin(st, key, size, meta, 0, cancel, out, err);
}

/* Producer-side rate limit: sleeps until the average rate since the start
 * of the put is back under the cap (cancellable). */
static void throttle(struct qs_storage_put *put)
{
    uint64_t rate = put->st->max_bytes_per_sec;
    if (rate == 0)
        return;
    double wait = put->t0 + (double)put->written / (double)rate - qs_monotonic();
    if (wait > 0)
        qs_sleep_cancellable((long)(wait * 1000.0 + 0.5), put->cancel);
}

int qs_storage_put_write(struct qs_storage_put *put, const void *data, size_t len,
                         struct qs_error *err)
{
    if (put->dead)
        return qs_error_set(err, QS_EINVAL, "put %s: write after an error", put->key);
    if (put->size >= 0 && put->written + len > (uint64_t)put->size) {
        put->dead = 1;
        return qs_error_set(err, QS_ECHECKSUM, "put %s: more than the announced %lld bytes",
                            put->key, (long long)put->size);
    }
    const char *p = data;
    /* Feed in slices so the rate cap is smooth even for big writes. */
    size_t slice = put->st->max_bytes_per_sec ? 256 * 1024 : len;
    while (len > 0) {
        size_t n = len < slice ? len : slice;
        int rc = put->bp->ops->write(put->bp, p, n, err);
        if (rc != 0) {
            put->dead = 1;
            return rc;
        }
        put->written += n;
        p += n;
        len -= n;
        throttle(put);
    }
    return 0;
}

int qs_storage_put_finish(struct qs_storage_put *put, uint64_t *stored_size, struct qs_error *err)
{
    int rc;
    if (put->dead) {
        qs_storage_put_abort(put);
        return qs_error_set(err, QS_EINVAL, "put: finish after an error");
    }
    if (put->size >= 0 && put->written != (uint64_t)put->size) {
        rc = qs_error_set(err, QS_ECHECKSUM, "put %s: %llu bytes written, %lld announced", put->key,
                          (unsigned long long)put->written, (long long)put->size);
        qs_storage_put_abort(put);
        return rc;
    }
    rc = put->bp->ops->finish(put->bp, err);
    if (rc == 0 && stored_size != NULL)
        *stored_size = put->written;
    free(put);
    return rc;
}

void qs_storage_put_abort(struct qs_storage_put *put)
{
    if (put == NULL)
        return;
    put->bp->ops->abort(put->bp);
    free(put);
}

static int put_buffer(struct qs_storage *st, const char *key, const void *data, size_t len,
                      const struct qs_storage_meta *meta, unsigned flags, struct qs_cancel *cancel,
                      struct qs_error *err)
{
    struct qs_storage_put *put;
    int rc = put_begin(st, key, (int64_t)len, meta, flags, cancel, &put, err);
    if (rc != 0)
        return rc;
    if (len > 0 && (rc = qs_storage_put_write(put, data, len, err)) != 0) {
        qs_storage_put_abort(put);
        return rc;
    }
    return qs_storage_put_finish(put, NULL, err);
}

int qs_storage_put_buffer(struct qs_storage *st, const char *key, const void *data, size_t len,
                          const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                          struct qs_error *err)
{
    return put_buffer(st, key, data, len, meta, 0, cancel, err);
}

int qs_storage_replace_buffer(struct qs_storage *st, const char *key, const void *data, size_t len,
                              const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                              struct qs_error *err)
{
    return put_buffer(st, key, data, len, meta, QS_STORAGE_PUT_REPLACE, cancel, err);
}

/* ---- read side ------------------------------------------------------------------------ */

int qs_storage_get(struct qs_storage *st, const char *key, qs_sink_fn sink, void *ud,
                   struct qs_cancel *cancel, struct qs_error *err)
{
    int rc = qs_storage_key_check(key, err);
    if (rc != 0)
        return rc;
    return st->drv->get(st->be, key, sink, ud, cancel, err);
}

struct buf_sink {
    struct qs_buf *out;
    size_t max;
    size_t got;
};

static int buf_sink_fn(const void *data, size_t len, void *ud)
{
    struct buf_sink *b = ud;
    if (b->got + len > b->max)
        return QS_ETOOBIG;
    b->got += len;
    return qs_buf_append(b->out, data, len) == 0 ? 0 : UV_ENOMEM;
}

int qs_storage_get_buffer(struct qs_storage *st, const char *key, size_t max, struct qs_buf *out,
                          struct qs_cancel *cancel, struct qs_error *err)
{
    struct buf_sink b = {out, max, 0};
    int rc = qs_storage_get(st, key, buf_sink_fn, &b, cancel, err);
    if (rc == QS_ETOOBIG)
        qs_error_set(err, rc, "get %s: larger than %zu bytes", key, max);
    return rc;
}

int qs_storage_head(struct qs_storage *st, const char *key, struct qs_storage_stat *out,
                    struct qs_error *err)
{
    int rc = qs_storage_key_check(key, err);
    if (rc != 0)
        return rc;
    return st->drv->head(st->be, key, out, err);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct qs_storage_entry *)a)->key,
                  ((const struct qs_storage_entry *)b)->key);
}

int qs_storage_list(struct qs_storage *st, const char *prefix, struct qs_storage_list *out,
                    struct qs_error *err)
{
    int rc = st->drv->list(st->be, prefix, out, err);
    if (rc == 0 && out->n > 1)
        qsort(out->items, out->n, sizeof(out->items[0]), entry_cmp);
    return rc;
}

int qs_storage_delete(struct qs_storage *st, const char *key, struct qs_error *err)
{
    int rc = qs_storage_key_check(key, err);
    if (rc != 0)
        return rc;
    return st->drv->delete (st->be, key, err);
}

int qs_storage_list_uploads(struct qs_storage *st, const char *prefix,
                            struct qs_storage_uploads *out, struct qs_error *err)
{
    return st->drv->list_uploads(st->be, prefix, out, err);
}

int qs_storage_abort_upload(struct qs_storage *st, const char *key, const char *upload_id,
                            struct qs_error *err)
{
    if (key == NULL || upload_id == NULL || upload_id[0] == '\0')
        return qs_error_set(err, QS_EINVAL, "abort upload: missing key or upload id");
    return st->drv->abort_upload(st->be, key, upload_id, err);
}
