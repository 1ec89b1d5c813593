#include "qsnap/s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "qsnap/s3multipart.h"
#include "qsnap/s3put.h"
#include "qsnap/s3req.h"
#include "qsnap/s3stream.h"
#include "qsnap/s3url.h"
#include "qsnap/s3xml.h"

struct qs_s3 {
    struct qs_storage_be be; /* first */
    struct qs_s3req_ctx ctx;
    uint64_t part_size;
    int page_size;
};

static struct qs_s3 *s3_of(const struct qs_storage_be *be)
{
    return (struct qs_s3 *)be;
}

/* ---- the instance --------------------------------------------------------------- */

static int s3_open(const struct qs_storage_opts *o, struct qs_storage_be **out,
                   struct qs_error *err)
{
    uint64_t ps = o->part_size ? o->part_size : QS_S3_DEFAULT_PART;
    if (ps < QS_S3_MIN_PART || ps > QS_S3_MAX_PART)
        return qs_error_set(err, QS_ECONFIG, "S3 part size must be between 5MiB and 5GiB");
    struct qs_s3 *s3 = calloc(1, sizeof(*s3));
    if (s3 == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    int rc = qs_s3req_ctx_init(&s3->ctx, o, err);
    if (rc != 0) {
        free(s3);
        return rc;
    }
    s3->be.driver = &qs_s3_driver;
    s3->part_size = ps;
    s3->page_size = o->list_page_size > 0 ? o->list_page_size : 1000;
    *out = &s3->be;
    return 0;
}

static void s3_close(struct qs_storage_be *be)
{
    struct qs_s3 *s3 = s3_of(be);
    if (s3 == NULL)
        return;
    qs_s3req_ctx_deinit(&s3->ctx);
    free(s3);
}

static void s3_describe(const struct qs_storage_be *be, char *out, size_t cap)
{
    const struct qs_s3url *u = &s3_of(be)->ctx.url;
    size_t pl = strlen(u->prefix);
    /* The prefix is kept as "p/q/"; described as "s3://bucket/p/q". */
    snprintf(out, cap, "s3://%s%s%.*s", u->bucket, pl > 0 ? "/" : "", (int)(pl > 0 ? pl - 1 : 0),
             u->prefix);
}

static uint64_t s3_retries(const struct qs_storage_be *be)
{
    return qs_s3req_retries(&s3_of(be)->ctx);
}

static int s3_probe(struct qs_storage_be *be, struct qs_error *err)
{
    struct qs_s3 *s3 = s3_of(be);
    struct qs_buf q;
    qs_buf_init(&q);
    /* Sorted: list-type < max-keys < prefix. */
    int rc = qs_s3url_query_add(&q, "list-type", "2");
    if (rc == 0)
        rc = qs_s3url_query_add(&q, "max-keys", "1");
    if (rc == 0)
        rc = qs_s3url_query_add(&q, "prefix", s3->ctx.url.prefix);
    if (rc != 0) {
        qs_buf_free(&q);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    struct qs_s3req r;
    qs_s3req_init(&r, "GET", NULL, q.data, "s3 probe (list bucket)");
    r.no_retry = 1;
    rc = qs_s3req_perform(&s3->ctx, NULL, &r, err);
    qs_s3req_deinit(&r);
    qs_buf_free(&q);
    return rc;
}

/* ---- puts: two engines ---------------------------------------------------------- */

static int s3_put_begin(struct qs_storage_be *be, const char *key, int64_t size,
                        const struct qs_storage_meta *meta, unsigned flags,
                        struct qs_cancel *cancel, struct qs_storage_be_put **out,
                        struct qs_error *err)
{
    struct qs_s3 *s3 = s3_of(be);
    /* A known size larger than one part streams as one PUT: no part
     * buffers, and the upload overlaps the producer byte for byte. */
    if (size >= 0 && (uint64_t)size > s3->part_size && (uint64_t)size <= QS_S3_MAX_PART)
        return qs_s3stream_begin(&s3->ctx, key, size, meta, flags, cancel, out, err);
    return qs_s3multipart_begin(&s3->ctx, s3->part_size, key, size, meta, flags, cancel, out, err);
}

/* ---- simple operations ---------------------------------------------------------- */

static int s3_head(struct qs_storage_be *be, const char *key, struct qs_storage_stat *out,
                   struct qs_error *err)
{
    int rc = qs_s3req_head(&s3_of(be)->ctx, key, out, err);
    if (rc != 0 || qs_storage_meta_get(&out->meta, QS_S3PUT_TOKEN_META) == NULL)
        return rc;
    /* The put token is the driver's own business. */
    struct qs_storage_meta kept;
    qs_storage_meta_init(&kept);
    for (size_t i = 0; rc == 0 && i < out->meta.n; i++)
        if (strcmp(out->meta.names[i], QS_S3PUT_TOKEN_META) != 0)
            rc = qs_storage_meta_set(&kept, out->meta.names[i], out->meta.values[i]);
    qs_storage_meta_deinit(&out->meta);
    if (rc != 0) {
        qs_storage_meta_deinit(&kept);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    out->meta = kept;
    return 0;
}

static int s3_get(struct qs_storage_be *be, const char *key, qs_sink_fn sink, void *ud,
                  struct qs_cancel *cancel, struct qs_error *err)
{
    char what[1200];
    qs_s3req_what(what, sizeof(what), "GET", key);
    struct qs_s3req r;
    qs_s3req_init(&r, "GET", key, NULL, what);
    r.sink = sink;
    r.sink_ud = ud;
    r.cancel = cancel;
    int rc = qs_s3req_perform(&s3_of(be)->ctx, NULL, &r, err);
    qs_s3req_deinit(&r);
    return rc;
}

static int s3_delete(struct qs_storage_be *be, const char *key, struct qs_error *err)
{
    char what[1200];
    qs_s3req_what(what, sizeof(what), "DELETE", key);
    struct qs_s3req r;
    qs_s3req_init(&r, "DELETE", key, NULL, what);
    int rc = qs_s3req_perform(&s3_of(be)->ctx, NULL, &r, err);
    qs_s3req_deinit(&r);
    if (rc == QS_ENOTFOUND) {
        qs_error_clear(err);
        rc = 0;
    }
    return rc;
}

/* One page of a listing: what the page's parser makes of the answer. */
typedef int (*page_fn)(struct qs_s3 *s3, const struct qs_buf *answer, void *out, int *truncated,
                       struct qs_buf *marker1, struct qs_buf *marker2);
/* The query of the next page, from the markers of the last one. */
typedef int (*query_fn)(struct qs_s3 *s3, struct qs_buf *q, const char *prefix,
                        const struct qs_buf *marker1, const struct qs_buf *marker2);

/* Every page of a listing under prefix (the destination's prefix + the
 * caller's), into out. */
static int list_pages(struct qs_s3 *s3, const char *verb, const char *prefix, query_fn query,
                      page_fn page, void *out, struct qs_error *err)
{
    struct qs_buf full, m1, m2, q;
    qs_buf_init(&full);
    qs_buf_init(&m1);
    qs_buf_init(&m2);
    qs_buf_init(&q);
    int rc = qs_buf_printf(&full, "%s%s", s3->ctx.url.prefix, prefix ? prefix : "");
    for (int n = 0; rc == 0; n++) {
        qs_buf_reset(&q);
        if (query(s3, &q, full.data ? full.data : "", &m1, &m2) != 0) {
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
            break;
        }
        char what[1200];
        snprintf(what, sizeof(what), "s3 %s %s (page %d)", verb, full.data ? full.data : "", n + 1);
        struct qs_s3req r;
        qs_s3req_init(&r, "GET", NULL, q.data, what);
        rc = qs_s3req_perform(&s3->ctx, NULL, &r, err);
        int truncated = 0;
        if (rc == 0 && (rc = page(s3, &r.resp, out, &truncated, &m1, &m2)) != 0)
            qs_error_set(err, rc, "%s: unparsable answer", what);
        qs_s3req_deinit(&r);
        if (rc != 0 || !truncated)
            break;
        if (m1.len == 0) {
            rc = qs_error_set(err, QS_EPROTO, "%s: truncated without a marker to go on from", what);
            break;
        }
    }
    qs_buf_free(&full);
    qs_buf_free(&m1);
    qs_buf_free(&m2);
    qs_buf_free(&q);
    return rc;
}

static int objects_query(struct qs_s3 *s3, struct qs_buf *q, const char *prefix,
                         const struct qs_buf *token, const struct qs_buf *unused)
{
    (void)unused;
    char maxkeys[16];
    snprintf(maxkeys, sizeof(maxkeys), "%d", s3->page_size);
    /* Sorted: continuation-token < list-type < max-keys < prefix. */
    int rc = token->len > 0 ? qs_s3url_query_add(q, "continuation-token", token->data) : 0;
    if (rc == 0)
        rc = qs_s3url_query_add(q, "list-type", "2");
    if (rc == 0)
        rc = qs_s3url_query_add(q, "max-keys", maxkeys);
    if (rc == 0)
        rc = qs_s3url_query_add(q, "prefix", prefix);
    return rc;
}

static int objects_page(struct qs_s3 *s3, const struct qs_buf *a, void *out, int *truncated,
                        struct qs_buf *token, struct qs_buf *unused)
{
    (void)unused;
    return qs_s3xml_parse_list(a->data, a->len, s3->ctx.url.prefix, out, truncated, token);
}

static int s3_list(struct qs_storage_be *be, const char *prefix, struct qs_storage_list *out,
                   struct qs_error *err)
{
    return list_pages(s3_of(be), "list", prefix, objects_query, objects_page, out, err);
}

static int uploads_query(struct qs_s3 *s3, struct qs_buf *q, const char *prefix,
                         const struct qs_buf *next_key, const struct qs_buf *next_upload)
{
    char maxu[16];
    snprintf(maxu, sizeof(maxu), "%d", s3->page_size);
    /* Sorted: key-marker < max-uploads < prefix < upload-id-marker < uploads. */
    int rc = next_key->len > 0 ? qs_s3url_query_add(q, "key-marker", next_key->data) : 0;
    if (rc == 0)
        rc = qs_s3url_query_add(q, "max-uploads", maxu);
    if (rc == 0)
        rc = qs_s3url_query_add(q, "prefix", prefix);
    if (rc == 0 && next_upload->len > 0)
        rc = qs_s3url_query_add(q, "upload-id-marker", next_upload->data);
    if (rc == 0)
        rc = qs_s3url_query_add(q, "uploads", NULL);
    return rc;
}

static int uploads_page(struct qs_s3 *s3, const struct qs_buf *a, void *out, int *truncated,
                        struct qs_buf *next_key, struct qs_buf *next_upload)
{
    return qs_s3xml_parse_uploads(a->data, a->len, s3->ctx.url.prefix, out, truncated, next_key,
                                  next_upload);
}

static int s3_list_uploads(struct qs_storage_be *be, const char *prefix,
                           struct qs_storage_uploads *out, struct qs_error *err)
{
    return list_pages(s3_of(be), "list uploads", prefix, uploads_query, uploads_page, out, err);
}

static int s3_abort_upload(struct qs_storage_be *be, const char *key, const char *upload_id,
                           struct qs_error *err)
{
    return qs_s3put_abort_upload(&s3_of(be)->ctx, NULL, key, upload_id, err);
}

/* In the order of struct qs_storage_driver: each member has a type of its
 * own, so the compiler checks the order. */
const struct qs_storage_driver qs_s3_driver = {
    "s3",   s3_open, s3_close, s3_describe, s3_retries,      s3_probe,        s3_put_begin,
    s3_get, s3_head, s3_list,  s3_delete,   s3_list_uploads, s3_abort_upload,
};
