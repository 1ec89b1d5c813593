#include "qsnap/s3put.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "qsnap/storage_driver.h"

/* Makes a write fail instead of replacing an existing object. */
#define IF_NONE_MATCH "If-None-Match: *"

int qs_s3put_init(struct qs_s3put *p, struct qs_s3req_ctx *ctx, const char *key, int64_t size,
                  const struct qs_storage_meta *meta, unsigned flags, struct qs_cancel *cancel,
                  struct qs_error *err)
{
    memset(p, 0, sizeof(*p));
    if (meta != NULL && meta->n > QS_S3PUT_MAX_META)
        return qs_error_set(err, QS_EINVAL, "too many metadata entries (max %d)",
                            QS_S3PUT_MAX_META);
    p->ctx = ctx;
    p->size = size;
    p->flags = flags;
    atomic_init(&p->abort.requested, 0);
    p->abort.parent = cancel;
    unsigned char rnd[16];
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0)
        return qs_error_set(err, QS_EIO, "no random bytes for the put token");
    qs_hex(rnd, sizeof(rnd), p->token);
    snprintf(p->token_hdr, sizeof(p->token_hdr), "x-amz-meta-" QS_S3PUT_TOKEN_META ": %s",
             p->token);
    p->key = strdup(key);
    p->h = qs_httpc_pool_take(ctx->pool);
    int rc = p->key != NULL && p->h != NULL ? 0 : UV_ENOMEM;
    for (size_t i = 0; rc == 0 && meta != NULL && i < meta->n; i++) {
        size_t n = strlen(meta->names[i]) + strlen(meta->values[i]) + 16;
        if ((p->meta_hdrs[i] = malloc(n)) == NULL) {
            rc = UV_ENOMEM;
            break;
        }
        snprintf(p->meta_hdrs[i], n, "x-amz-meta-%s: %s", meta->names[i], meta->values[i]);
        p->nmeta = i + 1;
    }
    if (rc != 0) {
        qs_s3put_deinit(p);
        return qs_error_set(err, rc, "out of memory");
    }
    return 0;
}

void qs_s3put_deinit(struct qs_s3put *p)
{
    for (size_t i = 0; i < p->nmeta; i++)
        free(p->meta_hdrs[i]);
    if (p->h != NULL)
        qs_httpc_pool_give(p->ctx->pool, p->h);
    free(p->key);
    memset(p, 0, sizeof(*p));
}

static int replaces(const struct qs_s3put *p)
{
    return (p->flags & QS_STORAGE_PUT_REPLACE) != 0;
}

const char *qs_s3put_condition(const struct qs_s3put *p)
{
    return replaces(p) ? NULL : IF_NONE_MATCH;
}

int qs_s3put_headers(const struct qs_s3put *p, struct qs_s3req *r, int first, int conditional)
{
    int i = first;
    if (conditional && !replaces(p))
        r->headers[i++] = IF_NONE_MATCH;
    r->headers[i++] = p->token_hdr;
    for (size_t k = 0; k < p->nmeta && i < QS_S3REQ_MAX_HEADERS; k++)
        r->headers[i++] = p->meta_hdrs[k];
    r->headers[i] = NULL;
    return i;
}

static int exists_error(const struct qs_s3put *p, struct qs_error *err)
{
    return qs_error_set(err, UV_EEXIST,
                        "s3 PUT %s: an object already exists under this key; it was not replaced",
                        p->key);
}

int qs_s3put_owns_object(struct qs_s3put *p)
{
    struct qs_storage_stat st;
    struct qs_error e;
    qs_error_clear(&e);
    if (qs_s3req_head(p->ctx, p->key, &st, &e) != 0)
        return -1;
    const char *t = qs_storage_meta_get(&st.meta, QS_S3PUT_TOKEN_META);
    int own = t != NULL && strcmp(t, p->token) == 0;
    qs_storage_stat_deinit(&st);
    return own;
}

int qs_s3put_settle(struct qs_s3put *p, int rc, int forced, struct qs_error *err)
{
    int precondition = forced || (rc == QS_EHTTP && err != NULL && err->http_status == 412);
    if (!precondition)
        return rc;
    if (qs_s3put_owns_object(p) == 1) {
        qs_error_clear(err); /* an earlier attempt stored it; its answer was lost */
        return 0;
    }
    return exists_error(p, err);
}

int qs_s3put_check_absent(struct qs_s3put *p, int strict, struct qs_error *err)
{
    if (replaces(p))
        return 0;
    struct qs_storage_stat st;
    int rc = qs_s3req_head(p->ctx, p->key, &st, err);
    if (rc == 0) {
        qs_storage_stat_deinit(&st);
        return exists_error(p, err);
    }
    if (rc == QS_ENOTFOUND || !strict) {
        qs_error_clear(err);
        return 0;
    }
    return rc;
}

int qs_s3put_abort_upload(struct qs_s3req_ctx *ctx, struct qs_httpc *h, const char *key,
                          const char *upload_id, struct qs_error *err)
{
    struct qs_error local;
    if (err == NULL)
        err = &local;
    struct qs_buf q;
    qs_buf_init(&q);
    if (qs_s3url_query_add(&q, "uploadId", upload_id) != 0)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    char what[1200];
    qs_s3req_what(what, sizeof(what), "abort multipart upload", key);
    int rc = 0;
    for (int round = 0; round < 3; round++) {
        struct qs_s3req r;
        qs_s3req_init(&r, "DELETE", key, q.data, what);
        rc = qs_s3req_perform(ctx, h, &r, err);
        qs_s3req_deinit(&r);
        if (rc == QS_ENOTFOUND) {
            qs_error_clear(err);
            rc = 0;
        }
        if (rc == 0 || !err->retryable)
            break;
        qs_sleep_cancellable(ctx->retry_max_ms, NULL);
    }
    qs_buf_free(&q);
    return rc;
}
