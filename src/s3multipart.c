#include "qsnap/s3multipart.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <uv.h>

#include "qsnap/log.h"
#include "qsnap/s3put.h"
#include "qsnap/s3url.h"
#include "qsnap/s3xml.h"

/* Parts uploading at once while the next one fills (memory: parts + 1 buffers). */
#define PARALLEL 2
#define NBUFS (PARALLEL + 1)

struct s3mp {
    struct qs_storage_be_put base; /* first */
    struct qs_s3put p;
    uint64_t part_size;

    /* Part buffers: one fills on the producer thread while the others
     * upload, one per uploader thread. */
    char *buf[NBUFS];
    size_t cap[NBUFS];
    size_t len[NBUFS];
    EVP_MD_CTX *md5ctx[NBUFS]; /* Content-MD5, computed while filling */
    char md5[NBUFS][32];
    uint32_t part_of[NBUFS];
    int free_buf[NBUFS]; /* 1 when neither filling nor queued/uploading */
    int cur;
    uint32_t part;   /* 0-based index of the part being filled */
    uint64_t queued; /* bytes handed to the uploaders */
    char *upload_id;
    char **etags; /* QS_S3_MAX_PARTS entries once multipart */

    pthread_t th[PARALLEL];
    struct qs_httpc *uh[PARALLEL]; /* one handle per uploader thread */
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int queue[NBUFS]; /* FIFO of buffers waiting for an uploader */
    int qhead, qlen;
    int busy; /* uploads in progress */
    int stop;
    int failed;
    struct qs_error uerr; /* the first failed part's reason */
};

uint64_t qs_s3multipart_part_size(uint32_t index, uint64_t base)
{
    if (index >= QS_S3_MAX_PARTS)
        return 0;
    if (base < QS_S3_MIN_PART)
        base = QS_S3_MIN_PART;
    if (base > QS_S3_MAX_PART)
        base = QS_S3_MAX_PART;
    unsigned k = index / 1000;
    uint64_t s = base << k;
    if (k > 0 && s < ((uint64_t)8 << 20) << k)
        s = ((uint64_t)8 << 20) << k;
    return s > QS_S3_MAX_PART ? QS_S3_MAX_PART : s;
}

static struct s3mp *mp_of(struct qs_storage_be_put *b)
{
    return (struct s3mp *)b;
}

/* The caller's cancel (the put's own abort also stops its requests). */
static int cancelled(const struct s3mp *m)
{
    return qs_cancel_requested(m->p.abort.parent);
}

static int part_error(struct s3mp *m, struct qs_error *err)
{
    if (err != NULL)
        *err = m->uerr;
    return m->uerr.code != 0 ? m->uerr.code : QS_EIO;
}

/* ---- uploader threads -------------------------------------------------------------- */

static int upload_part(struct s3mp *m, struct qs_httpc *h, int b, uint32_t pn, struct qs_error *err)
{
    char md5h[64], what[1300], num[16];
    snprintf(md5h, sizeof(md5h), "Content-MD5: %s", m->md5[b]);
    snprintf(num, sizeof(num), "%u", pn + 1);
    struct qs_buf q;
    qs_buf_init(&q);
    /* Sorted: partNumber < uploadId. */
    if (qs_s3url_query_add(&q, "partNumber", num) != 0 ||
        qs_s3url_query_add(&q, "uploadId", m->upload_id) != 0) {
        qs_buf_free(&q);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    snprintf(what, sizeof(what), "s3 PUT part %u of %s", pn + 1, m->p.key);
    struct qs_s3req r;
    qs_s3req_init(&r, "PUT", m->p.key, q.data, what);
    r.headers[0] = md5h;
    r.body = m->buf[b];
    r.body_len = m->len[b];
    r.cancel = &m->p.abort;
    int rc = qs_s3req_perform(m->p.ctx, h, &r, err);
    if (rc == 0) {
        if (r.etag[0] == '\0') {
            rc = qs_error_set(err, QS_EPROTO, "%s: answer without ETag", what);
        } else {
            /* Each part number is written by exactly one uploader. */
            m->etags[pn] = strdup(r.etag);
            if (m->etags[pn] == NULL)
                rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        }
    }
    qs_s3req_deinit(&r);
    qs_buf_free(&q);
    return rc;
}

struct uploader_arg {
    struct s3mp *m;
    int idx;
};

static void *uploader_main(void *arg)
{
    struct uploader_arg *ua = arg;
    struct s3mp *m = ua->m;
    struct qs_httpc *h = m->uh[ua->idx];
    free(ua);
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (m->qlen == 0 && !m->stop)
            pthread_cond_wait(&m->cv, &m->mu);
        if (m->qlen == 0)
            break;
        int b = m->queue[m->qhead];
        m->qhead = (m->qhead + 1) % NBUFS;
        m->qlen--;
        uint32_t pn = m->part_of[b];
        m->busy++;
        int skip = m->failed;
        pthread_mutex_unlock(&m->mu);
        struct qs_error e;
        qs_error_clear(&e);
        int rc = skip ? 0 : upload_part(m, h, b, pn, &e);
        pthread_mutex_lock(&m->mu);
        m->busy--;
        m->free_buf[b] = 1;
        if (rc != 0 && !m->failed) {
            m->failed = 1;
            m->uerr = e;
            m->uerr.code = rc;
            /* Stop the other uploads too: the whole upload is aborted. */
            qs_cancel_request(&m->p.abort);
        }
        pthread_cond_broadcast(&m->cv);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static int start_uploaders(struct s3mp *m, struct qs_error *err)
{
    while (m->nthreads < PARALLEL) {
        int i = m->nthreads;
        struct uploader_arg *ua = malloc(sizeof(*ua));
        if (ua == NULL || (m->uh[i] == NULL && qs_httpc_new(&m->uh[i]) != 0)) {
            free(ua);
            return qs_error_set(err, UV_ENOMEM, "out of memory for an upload thread");
        }
        ua->m = m;
        ua->idx = i;
        int e = pthread_create(&m->th[i], NULL, uploader_main, ua);
        if (e != 0) {
            free(ua);
            return qs_error_set(err, -e, "cannot start an upload thread: %s", strerror(e));
        }
        m->nthreads++;
    }
    return 0;
}

static void stop_uploaders(struct s3mp *m)
{
    if (m->nthreads == 0)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    for (int i = 0; i < m->nthreads; i++)
        pthread_join(m->th[i], NULL);
    m->nthreads = 0;
}

static int wait_idle(struct s3mp *m, struct qs_error *err)
{
    if (m->nthreads == 0)
        return 0;
    pthread_mutex_lock(&m->mu);
    while ((m->qlen > 0 || m->busy > 0) && !m->failed)
        pthread_cond_wait(&m->cv, &m->mu);
    int failed = m->failed;
    pthread_mutex_unlock(&m->mu);
    return failed ? part_error(m, err) : 0;
}

/* ---- the producer side ------------------------------------------------------------ */

static int initiate(struct s3mp *m, struct qs_error *err)
{
    char what[1200];
    qs_s3req_what(what, sizeof(what), "initiate multipart upload", m->p.key);
    int rc = qs_s3put_check_absent(&m->p, 0, err); /* fail before the first part */
    if (rc != 0)
        return rc;
    struct qs_s3req r;
    qs_s3req_init(&r, "POST", m->p.key, "uploads=", what);
    qs_s3put_headers(&m->p, &r, 0, 0);
    r.cancel = &m->p.abort;
    rc = qs_s3req_perform(m->p.ctx, m->p.h, &r, err);
    if (rc == 0) {
        struct qs_buf id;
        qs_buf_init(&id);
        if (qs_s3xml_parse_initiate(r.resp.data, r.resp.len, &id) != 0) {
            qs_buf_free(&id);
            rc = qs_error_set(err, QS_EPROTO, "%s: answer without UploadId", what);
        } else {
            m->upload_id = id.data;
            m->etags = calloc(QS_S3_MAX_PARTS, sizeof(char *));
            if (m->etags == NULL)
                rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        }
    }
    qs_s3req_deinit(&r);
    return rc;
}

static void md5_finish(struct s3mp *m, int b)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(m->md5ctx[b], md, &mdlen);
    EVP_EncodeBlock((unsigned char *)m->md5[b], md, (int)mdlen);
}

/* Queues the current (non-empty) buffer for upload and makes a free buffer
 * current, waiting while every buffer is queued or uploading. */
static int submit_current(struct s3mp *m, struct qs_error *err)
{
    int rc = 0;
    md5_finish(m, m->cur);
    if (m->upload_id == NULL && (rc = initiate(m, err)) != 0)
        return rc;
    if ((rc = start_uploaders(m, err)) != 0)
        return rc;
    pthread_mutex_lock(&m->mu);
    if (m->failed) {
        pthread_mutex_unlock(&m->mu);
        return part_error(m, err);
    }
    int b = m->cur;
    m->part_of[b] = m->part;
    m->free_buf[b] = 0;
    m->queue[(m->qhead + m->qlen) % NBUFS] = b;
    m->qlen++;
    pthread_cond_broadcast(&m->cv);
    int next = -1;
    for (;;) {
        for (int i = 0; i < NBUFS && next < 0; i++)
            if (m->free_buf[i])
                next = i;
        if (next >= 0 || m->failed)
            break;
        pthread_cond_wait(&m->cv, &m->mu);
    }
    int failed = m->failed;
    if (next >= 0)
        m->free_buf[next] = 0; /* now filling */
    pthread_mutex_unlock(&m->mu);
    m->queued += m->len[b];
    if (failed) {
        if (next >= 0) {
            m->cur = next;
            m->len[next] = 0;
        }
        return part_error(m, err);
    }
    m->cur = next;
    m->part++;
    m->len[m->cur] = 0;
    return 0;
}

/* Capacity the buffer for the current part should have. */
static size_t want_cap(const struct s3mp *m)
{
    uint64_t ps = qs_s3multipart_part_size(m->part, m->part_size);
    if (m->p.size >= 0) {
        uint64_t left = (uint64_t)m->p.size - m->queued;
        if (left < ps)
            ps = left > 0 ? left : 1;
    }
    return (size_t)ps;
}

static int mp_write(struct qs_storage_be_put *b, const void *data, size_t len, struct qs_error *err)
{
    struct s3mp *m = mp_of(b);
    const char *p = data;
    while (len > 0) {
        if (cancelled(m))
            return qs_error_set(err, QS_ECANCELED, "s3 PUT %s: cancelled", m->p.key);
        int c = m->cur;
        if (m->len[c] == 0 || m->buf[c] == NULL) {
            if (qs_s3multipart_part_size(m->part, m->part_size) == 0)
                return qs_error_set(err, QS_ETOOBIG, "s3 PUT %s: more than %u parts", m->p.key,
                                    QS_S3_MAX_PARTS);
            size_t w = want_cap(m);
            if (m->cap[c] != w) {
                free(m->buf[c]);
                m->buf[c] = malloc(w);
                m->cap[c] = m->buf[c] ? w : 0;
                if (m->buf[c] == NULL)
                    return qs_error_set(err, UV_ENOMEM, "out of memory for a %zu byte part", w);
            }
        }
        if (m->len[c] == m->cap[c]) {
            int rc = submit_current(m, err);
            if (rc != 0)
                return rc;
            continue;
        }
        size_t n = m->cap[c] - m->len[c];
        if (n > len)
            n = len;
        if (m->len[c] == 0)
            EVP_DigestInit_ex(m->md5ctx[c], EVP_md5(), NULL);
        EVP_DigestUpdate(m->md5ctx[c], p, n);
        memcpy(m->buf[c] + m->len[c], p, n);
        m->len[c] += n;
        p += n;
        len -= n;
    }
    return 0;
}

/* Everything fits one part: one PUT with Content-MD5. */
static int single_put(struct s3mp *m, struct qs_error *err)
{
    char md5h[64], what[1200];
    int c = m->cur;
    if (m->len[c] == 0)
        EVP_DigestInit_ex(m->md5ctx[c], EVP_md5(), NULL);
    md5_finish(m, c);
    snprintf(md5h, sizeof(md5h), "Content-MD5: %s", m->md5[c]);
    qs_s3req_what(what, sizeof(what), "PUT", m->p.key);
    struct qs_s3req r;
    qs_s3req_init(&r, "PUT", m->p.key, NULL, what);
    r.headers[0] = md5h;
    qs_s3put_headers(&m->p, &r, 1, 1);
    r.body = m->buf[c] ? m->buf[c] : "";
    r.body_len = m->len[c];
    r.cancel = &m->p.abort;
    int rc = qs_s3req_perform(m->p.ctx, m->p.h, &r, err);
    rc = qs_s3put_settle(&m->p, rc, 0, err); /* maybe a retry after a lost answer */
    qs_s3req_deinit(&r);
    return rc;
}

static int complete(struct s3mp *m, struct qs_error *err)
{
    struct qs_buf body, q;
    qs_buf_init(&body);
    qs_buf_init(&q);
    int rc = qs_buf_printf(&body, "<CompleteMultipartUpload>");
    for (uint32_t i = 0; rc == 0 && i < m->part; i++)
        rc = qs_buf_printf(&body, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", i + 1,
                           m->etags[i] ? m->etags[i] : "");
    if (rc == 0)
        rc = qs_buf_printf(&body, "</CompleteMultipartUpload>");
    if (rc == 0)
        rc = qs_s3url_query_add(&q, "uploadId", m->upload_id);
    if (rc != 0) {
        qs_buf_free(&body);
        qs_buf_free(&q);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    char what[1200];
    qs_s3req_what(what, sizeof(what), "complete multipart upload", m->p.key);
    /* radosgw ignores If-None-Match here: check, then ask anyway for the
     * stores that honour it. */
    if ((rc = qs_s3put_check_absent(&m->p, 1, err)) != 0) {
        qs_buf_free(&body);
        qs_buf_free(&q);
        return rc;
    }
    for (int attempt = 0;; attempt++) {
        struct qs_s3req r;
        qs_s3req_init(&r, "POST", m->p.key, q.data, what);
        r.headers[0] = "Content-Type: application/xml";
        r.headers[1] = qs_s3put_condition(&m->p);
        r.body = body.data;
        r.body_len = body.len;
        r.cancel = &m->p.abort;
        rc = qs_s3req_perform(m->p.ctx, m->p.h, &r, err);
        char code[64] = "", msg[256] = "";
        if (rc == 0 && qs_s3xml_parse_error(r.resp.data, r.resp.len, code, sizeof(code), msg,
                                            sizeof(msg)) == 0)
            /* S3 may answer 200 and still fail the completion. */
            rc = qs_error_set_class(err, QS_EHTTP, r.status, qs_s3req_retryable_code(code),
                                    "%s: %s%s%s", what, code, msg[0] ? ": " : "", msg);
        qs_s3req_deinit(&r);
        int forced = strcmp(code, "PreconditionFailed") == 0;
        if (forced || (rc == QS_EHTTP && err->http_status == 412)) {
            rc = qs_s3put_settle(&m->p, rc, forced, err);
            break;
        }
        if (rc == QS_ENOTFOUND && attempt > 0 && qs_s3put_owns_object(&m->p) == 1) {
            /* An earlier attempt completed the upload; its answer was lost. */
            qs_error_clear(err);
            rc = 0;
        }
        if (rc == 0 || !err->retryable || attempt >= 2 || cancelled(m))
            break;
        qs_sleep_cancellable(
            qs_httpc_backoff_ms(attempt + 1, m->p.ctx->retry_base_ms, m->p.ctx->retry_max_ms),
            &m->p.abort);
    }
    qs_buf_free(&body);
    qs_buf_free(&q);
    return rc;
}

static void mp_free(struct s3mp *m)
{
    stop_uploaders(m);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    if (m->etags != NULL) {
        for (uint32_t i = 0; i < QS_S3_MAX_PARTS; i++)
            free(m->etags[i]);
        free(m->etags);
    }
    for (int i = 0; i < NBUFS; i++) {
        free(m->buf[i]);
        EVP_MD_CTX_free(m->md5ctx[i]);
    }
    for (int i = 0; i < PARALLEL; i++)
        qs_httpc_free(m->uh[i]);
    free(m->upload_id);
    qs_s3put_deinit(&m->p);
    free(m);
}

/* Stops the uploads and aborts the multipart upload, if one was started. */
static void abandon(struct s3mp *m)
{
    qs_cancel_request(&m->p.abort);
    stop_uploaders(m);
    if (m->upload_id == NULL)
        return;
    struct qs_error e;
    qs_error_clear(&e);
    if (qs_s3put_abort_upload(m->p.ctx, m->p.h, m->p.key, m->upload_id, &e) != 0) {
        struct qs_log_ctx ctx = QS_LOG_CTX_NONE;
        ctx.error = e.msg;
        ctx.phase = "storage";
        qs_log(QS_LOG_ERROR, &ctx, "could not abort the multipart upload of %s", m->p.key);
    }
    free(m->upload_id);
    m->upload_id = NULL;
}

static int mp_finish(struct qs_storage_be_put *b, struct qs_error *err)
{
    struct qs_error local;
    qs_error_clear(&local);
    if (err == NULL)
        err = &local; /* the completion reads the classification */
    struct s3mp *m = mp_of(b);
    int rc = 0;
    if (cancelled(m)) {
        rc = qs_error_set(err, QS_ECANCELED, "s3 PUT %s: cancelled", m->p.key);
    } else if (m->upload_id == NULL) {
        rc = single_put(m, err);
    } else {
        if (m->len[m->cur] > 0)
            rc = submit_current(m, err);
        if (rc == 0)
            rc = wait_idle(m, err);
        stop_uploaders(m);
        if (rc == 0 && m->failed)
            rc = part_error(m, err);
        if (rc == 0)
            rc = complete(m, err);
    }
    if (rc != 0)
        abandon(m);
    mp_free(m);
    return rc;
}

static void mp_abort(struct qs_storage_be_put *b)
{
    if (b == NULL)
        return;
    struct s3mp *m = mp_of(b);
    abandon(m);
    mp_free(m);
}

static const struct qs_storage_put_ops mp_ops = {
    .write = mp_write,
    .finish = mp_finish,
    .abort = mp_abort,
};

int qs_s3multipart_begin(struct qs_s3req_ctx *ctx, uint64_t part_size, const char *key,
                         int64_t size, const struct qs_storage_meta *meta, unsigned flags,
                         struct qs_cancel *cancel, struct qs_storage_be_put **out,
                         struct qs_error *err)
{
    struct s3mp *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    int rc = qs_s3put_init(&m->p, ctx, key, size, meta, flags, cancel, err);
    if (rc != 0) {
        free(m);
        return rc;
    }
    m->base.ops = &mp_ops;
    m->part_size = part_size;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    for (int i = 0; rc == 0 && i < NBUFS; i++) {
        m->md5ctx[i] = EVP_MD_CTX_new();
        m->free_buf[i] = i != 0; /* buffer 0 fills first */
        if (m->md5ctx[i] == NULL)
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    if (rc != 0) {
        mp_free(m);
        return rc;
    }
    *out = &m->base;
    return 0;
}
