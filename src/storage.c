#include "qsnap/storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/fsstore.h"
#include "qsnap/s3.h"

struct qs_storage {
    enum qs_dest_kind kind;
    struct qs_s3 *s3;
    struct qs_fsstore *fs;
    uint64_t max_bytes_per_sec;
    char describe[1200];
};

struct qs_storage_put {
    struct qs_storage *st;
    struct qs_s3_put *s3;
    struct qs_fsstore_put *fs;
    char key[1025];
    int64_t size;
    uint64_t written;
    struct qs_cancel *cancel;
    double t0;
    int dead;
};

/* ---- small value types ------------------------------------------------------------ */

void qs_storage_opts_init(struct qs_storage_opts *o)
{
    memset(o, 0, sizeof(*o));
}

void qs_storage_meta_init(struct qs_storage_meta *m)
{
    memset(m, 0, sizeof(*m));
}

void qs_storage_meta_deinit(struct qs_storage_meta *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->names[i]);
        free(m->values[i]);
    }
    free(m->names);
    free(m->values);
    memset(m, 0, sizeof(*m));
}

static int meta_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

static int meta_value_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > 1024 || (n > 0 && (s[0] == ' ' || s[n - 1] == ' ')))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            return 0;
        if (s[i] == ' ' && s[i + 1] == ' ')
            return 0;
    }
    return 1;
}

int qs_storage_meta_set(struct qs_storage_meta *m, const char *name, const char *value)
{
    if (name == NULL || value == NULL || !meta_name_ok(name) || !meta_value_ok(value))
        return QS_EINVAL;
    char *v = strdup(value);
    if (v == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0) {
            free(m->values[i]);
            m->values[i] = v;
            return 0;
        }
    char *n = strdup(name);
    char **nn = realloc(m->names, (m->n + 1) * sizeof(char *));
    if (nn != NULL)
        m->names = nn;
    char **nv = realloc(m->values, (m->n + 1) * sizeof(char *));
    if (nv != NULL)
        m->values = nv;
    if (n == NULL || nn == NULL || nv == NULL) {
        free(n);
        free(v);
        return UV_ENOMEM;
    }
    m->names[m->n] = n;
    m->values[m->n] = v;
    m->n++;
    return 0;
}

const char *qs_storage_meta_get(const struct qs_storage_meta *m, const char *name)
{
    for (size_t i = 0; m != NULL && i < m->n; i++)
        if (strcmp(m->names[i], name) == 0)
            return m->values[i];
    return NULL;
}

void qs_storage_stat_deinit(struct qs_storage_stat *st)
{
    if (st != NULL)
        qs_storage_meta_deinit(&st->meta);
}

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
    struct qs_storage *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    st->kind = opts->kind;
    st->max_bytes_per_sec = opts->max_bytes_per_sec;
    int rc;
    if (opts->kind == QS_DEST_S3) {
        rc = qs_s3_new(opts, &st->s3, err);
        snprintf(st->describe, sizeof(st->describe), "s3://%s%s%s",
                 opts->bucket ? opts->bucket : "", opts->prefix && opts->prefix[0] ? "/" : "",
                 opts->prefix ? opts->prefix : "");
    } else {
        rc = qs_fsstore_new(opts->path, &st->fs, err);
        snprintf(st->describe, sizeof(st->describe), "file://%s", opts->path ? opts->path : "");
    }
    if (rc != 0) {
        free(st);
        return rc;
    }
    *out = st;
    return 0;
}

int qs_storage_new_from_config(const struct qs_config *cfg, struct qs_storage **out,
                               struct qs_error *err)
{
    struct qs_storage_opts o;
    qs_storage_opts_init(&o);
    o.kind = cfg->dest_kind;
    o.bucket = cfg->dest_bucket;
    o.prefix = cfg->dest_prefix;
    o.path = cfg->dest_path;
    o.endpoint = cfg->s3_endpoint;
    o.region = cfg->s3_region;
    o.access_key_id = cfg->s3_access_key_id;
    o.secret_access_key = cfg->s3_secret_access_key;
    o.uri_style = cfg->s3_uri_style;
    o.ca_file = cfg->s3_ca_file;
    o.part_size = cfg->s3_part_size;
    o.max_bytes_per_sec = cfg->max_bandwidth;
    return qs_storage_new(&o, out, err);
}

void qs_storage_free(struct qs_storage *st)
{
    if (st == NULL)
        return;
    qs_s3_free(st->s3);
    qs_fsstore_free(st->fs);
    free(st);
}

const char *qs_storage_describe(const struct qs_storage *st)
{
    return st->describe;
}

uint64_t qs_storage_retries(const struct qs_storage *st)
{
    return st->s3 ? qs_s3_retries(st->s3) : 0;
}

int qs_storage_probe(struct qs_storage *st, struct qs_error *err)
{
    return st->s3 ? qs_s3_probe(st->s3, err) : qs_fsstore_probe(st->fs, err);
}

/* ---- put -------------------------------------------------------------------------------- */

int qs_storage_put_begin(struct qs_storage *st, const char *key, int64_t size,
                         const struct qs_storage_meta *meta, struct qs_cancel *cancel,
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
    if (st->s3)
        rc = qs_s3_put_begin(st->s3, key, size, meta, cancel, &put->s3, err);
    else
        rc = qs_fsstore_put_begin(st->fs, key, size, meta, cancel, &put->fs, err);
    if (rc != 0) {
        free(put);
        return rc;
    }
    *out = put;
    return 0;
}

/* Producer-side rate limit: sleeps until the average rate since the start
 * of the put is back under the cap (checking cancel every 50 ms). */
static void throttle(struct qs_storage_put *put)
{
    uint64_t rate = put->st->max_bytes_per_sec;
    if (rate == 0)
        return;
    for (;;) {
        double due = put->t0 + (double)put->written / (double)rate;
        double wait = due - qs_monotonic();
        if (wait <= 0 || qs_cancel_requested(put->cancel))
            return;
        if (wait > 0.05)
            wait = 0.05;
        struct timespec ts = {0, (long)(wait * 1e9)};
        nanosleep(&ts, NULL);
    }
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
        int rc = put->s3 ? qs_s3_put_write(put->s3, p, n, err)
                         : qs_fsstore_put_write(put->fs, p, n, err);
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
    rc = put->s3 ? qs_s3_put_finish(put->s3, err) : qs_fsstore_put_finish(put->fs, err);
    if (rc == 0 && stored_size != NULL)
        *stored_size = put->written;
    free(put);
    return rc;
}

void qs_storage_put_abort(struct qs_storage_put *put)
{
    if (put == NULL)
        return;
    if (put->s3)
        qs_s3_put_abort(put->s3);
    else
        qs_fsstore_put_abort(put->fs);
    free(put);
}

int qs_storage_put_buffer(struct qs_storage *st, const char *key, const void *data, size_t len,
                          const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                          struct qs_error *err)
{
    struct qs_storage_put *put;
    int rc = qs_storage_put_begin(st, key, (int64_t)len, meta, cancel, &put, err);
    if (rc != 0)
        return rc;
    if (len > 0 && (rc = qs_storage_put_write(put, data, len, err)) != 0) {
        qs_storage_put_abort(put);
        return rc;
    }
    return qs_storage_put_finish(put, NULL, err);
}

/* ---- read side ------------------------------------------------------------------------ */

int qs_storage_get(struct qs_storage *st, const char *key, qs_sink_fn sink, void *ud,
                   struct qs_cancel *cancel, struct qs_error *err)
{
    int rc = qs_storage_key_check(key, err);
    if (rc != 0)
        return rc;
    return st->s3 ? qs_s3_get(st->s3, key, sink, ud, cancel, err)
                  : qs_fsstore_get(st->fs, key, sink, ud, cancel, err);
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
    return st->s3 ? qs_s3_head(st->s3, key, out, err) : qs_fsstore_head(st->fs, key, out, err);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct qs_storage_entry *)a)->key,
                  ((const struct qs_storage_entry *)b)->key);
}

int qs_storage_list(struct qs_storage *st, const char *prefix, struct qs_storage_list *out,
                    struct qs_error *err)
{
    int rc =
        st->s3 ? qs_s3_list(st->s3, prefix, out, err) : qs_fsstore_list(st->fs, prefix, out, err);
    if (rc == 0 && out->n > 1)
        qsort(out->items, out->n, sizeof(out->items[0]), entry_cmp);
    return rc;
}

int qs_storage_delete(struct qs_storage *st, const char *key, struct qs_error *err)
{
    int rc = qs_storage_key_check(key, err);
    if (rc != 0)
        return rc;
    return st->s3 ? qs_s3_delete(st->s3, key, err) : qs_fsstore_delete(st->fs, key, err);
}

int qs_storage_list_uploads(struct qs_storage *st, const char *prefix,
                            struct qs_storage_uploads *out, struct qs_error *err)
{
    return st->s3 ? qs_s3_list_uploads(st->s3, prefix, out, err)
                  : qs_fsstore_list_uploads(st->fs, prefix, out, err);
}

int qs_storage_abort_upload(struct qs_storage *st, const char *key, const char *upload_id,
                            struct qs_error *err)
{
    if (key == NULL || upload_id == NULL || upload_id[0] == '\0')
        return qs_error_set(err, QS_EINVAL, "abort upload: missing key or upload id");
    return st->s3 ? qs_s3_abort_upload(st->s3, key, upload_id, err)
                  : qs_fsstore_abort_upload(st->fs, key, upload_id, err);
}
