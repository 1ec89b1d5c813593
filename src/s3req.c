#include "qsnap/s3req.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "qsnap/log.h"
#include "qsnap/s3xml.h"

#define S3_POOL_MAX 8
#define S3_RESP_MAX (16u * 1024u * 1024u)
#define S3_UPLOAD_BUFFER (256L * 1024L)
/* Receive buffer of object GETs: libcurl's default (16 KiB) means one recv
 * and one poll per 16 KiB of a restore's download. */
#define S3_DOWNLOAD_BUFFER (256L * 1024L)

int qs_s3req_ctx_init(struct qs_s3req_ctx *c, const struct qs_storage_opts *o, struct qs_error *err)
{
    memset(c, 0, sizeof(*c));
    int rc = qs_s3url_init(&c->url, o, err);
    if (rc != 0)
        return rc;
    struct qs_httpc_limits *l = &c->limits;
    l->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
    l->stall_s = o->low_speed_time_s > 0 ? o->low_speed_time_s : 60;
    l->stall_bytes_per_s = o->low_speed_limit > 0 ? o->low_speed_limit : 1024;
    l->upload_buffer = S3_UPLOAD_BUFFER;
    c->max_retries = o->max_retries > 0 ? o->max_retries : (o->max_retries < 0 ? 0 : 5);
    c->retry_base_ms = o->retry_base_ms > 0 ? o->retry_base_ms : 200;
    c->retry_max_ms = o->retry_max_ms > 0 ? o->retry_max_ms : 10000;
    atomic_init(&c->retries, 0);
    if (o->ca_file != NULL && o->ca_file[0] != '\0' && (l->ca_file = strdup(o->ca_file)) == NULL)
        rc = UV_ENOMEM;
    if (rc == 0)
        rc = qs_httpc_pool_new(S3_POOL_MAX, &c->pool);
    if (rc != 0) {
        qs_s3req_ctx_deinit(c);
        return qs_error_set(err, rc, "out of memory");
    }
    return 0;
}

void qs_s3req_ctx_deinit(struct qs_s3req_ctx *c)
{
    if (c == NULL)
        return;
    qs_httpc_pool_free(c->pool);
    free((char *)c->limits.ca_file);
    qs_s3url_deinit(&c->url);
    memset(c, 0, sizeof(*c));
}

uint64_t qs_s3req_retries(const struct qs_s3req_ctx *c)
{
    return atomic_load(&((struct qs_s3req_ctx *)c)->retries);
}

void qs_s3req_init(struct qs_s3req *r, const char *method, const char *key, const char *query,
                   const char *what)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->key = key;
    r->query = query;
    r->what = what;
    r->src_len = -1;
    r->content_length = -1;
    qs_buf_init(&r->resp);
}

void qs_s3req_deinit(struct qs_s3req *r)
{
    qs_buf_free(&r->resp);
}

void qs_s3req_what(char *out, size_t cap, const char *verb, const char *key)
{
    snprintf(out, cap, "s3 %s %s", verb, key != NULL ? key : "(bucket)");
}

int qs_s3req_retryable_code(const char *code)
{
    static const char *const list[] = {"RequestTimeout", "SlowDown", "InternalError",
                                       "ServiceUnavailable", "RequestTimeTooSkewed"};
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)
        if (strcmp(code, list[i]) == 0)
            return 1;
    return 0;
}

/* ---- answer hooks ----------------------------------------------------------------- */

static void on_response(void *ud, long status)
{
    struct qs_s3req *r = ud;
    /* A new answer (after 100-continue or a redirect) replaces the headers. */
    r->status = status;
    r->etag[0] = '\0';
    if (r->meta_out != NULL)
        qs_storage_meta_deinit(r->meta_out);
}

static void on_header(void *ud, const char *name, size_t nl, const char *val)
{
    struct qs_s3req *r = ud;
    if (nl == 4 && strncasecmp(name, "ETag", 4) == 0) {
        qs_strlcpy(r->etag, val, sizeof(r->etag));
    } else if (nl == 13 && strncasecmp(name, "Last-Modified", 13) == 0) {
        int64_t t = qs_httpc_parse_date(val);
        if (t >= 0)
            r->last_modified = t;
    } else if (r->meta_out != NULL && nl > 11 && nl < 11 + 65 &&
               strncasecmp(name, "x-amz-meta-", 11) == 0) {
        char mname[80];
        for (size_t i = 0; i < nl - 11; i++)
            mname[i] = (char)((name[11 + i] >= 'A' && name[11 + i] <= 'Z') ? name[11 + i] + 32
                                                                           : name[11 + i]);
        mname[nl - 11] = '\0';
        qs_storage_meta_set(r->meta_out, mname, val);
    }
}

/* The object's bytes of a GET, exactly once across resumed attempts. */
static int get_sink(const void *data, size_t len, void *ud)
{
    struct qs_s3req *r = ud;
    const char *p = data;
    if (!r->body_started) {
        r->body_started = 1;
        /* A server that ignored the Range header sends everything again. */
        if (r->status == 200)
            r->skip = r->resume_from;
        if (r->first_etag[0] == '\0')
            qs_strlcpy(r->first_etag, r->etag, sizeof(r->first_etag));
    }
    if (r->skip > 0) {
        size_t s = r->skip < len ? (size_t)r->skip : len;
        r->skip -= s;
        p += s;
        len -= s;
    }
    if (len == 0)
        return 0;
    int rc = r->sink(p, len, r->sink_ud);
    if (rc == 0)
        r->delivered += len;
    return rc;
}

/* S3's error document: the reason, and refinements of the classification. */
static void explain(void *ud, long status, const char *body, size_t len, int truncated, char *out,
                    size_t cap, int *code, int *retryable)
{
    const struct qs_s3req_ctx *c = ud;
    char xcode[64] = "", msg[256] = "";
    (void)truncated;
    if (len > 0)
        qs_s3xml_parse_error(body, len, xcode, sizeof(xcode), msg, sizeof(msg));
    if (xcode[0] != '\0' && qs_s3req_retryable_code(xcode))
        *retryable = 1;
    if (status == 404 && strcmp(xcode, "NoSuchBucket") == 0) {
        *code = QS_ECONFIG;
        snprintf(out, cap, "NoSuchBucket: bucket \"%s\" does not exist", c->url.bucket);
        return;
    }
    if (xcode[0] == '\0' && status == 404)
        qs_strlcpy(xcode, "NotFound", sizeof(xcode));
    snprintf(out, cap, "%s%s%s", xcode, xcode[0] != '\0' && msg[0] != '\0' ? ": " : "", msg);
}

/* ---- one attempt, and the retries ------------------------------------------------- */

static int perform_once(struct qs_s3req_ctx *c, struct qs_httpc *h, struct qs_s3req *r,
                        struct qs_error *err)
{
    struct qs_buf url;
    qs_buf_init(&url);
    if (qs_s3url_build(&c->url, r->key, r->query, &url) != 0)
        return qs_error_set(err, UV_ENOMEM, "%s: out of memory", r->what);
    /* Always x-amz-content-sha256; only headers that are really sent. */
    const char *hdrs[QS_S3REQ_MAX_HEADERS + 4];
    size_t n = 0;
    hdrs[n++] = "x-amz-content-sha256: UNSIGNED-PAYLOAD";
    for (size_t i = 0; r->headers[i] != NULL && i < QS_S3REQ_MAX_HEADERS; i++)
        hdrs[n++] = r->headers[i];
    char range[64], ifmatch[160];
    if (r->sink != NULL && r->delivered > 0) {
        snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)r->delivered);
        hdrs[n++] = range;
        /* Resume only the same object: a replaced one answers 412. */
        if (r->first_etag[0] != '\0') {
            snprintf(ifmatch, sizeof(ifmatch), "If-Match: %s", r->first_etag);
            hdrs[n++] = ifmatch;
        }
    }
    hdrs[n] = NULL;

    struct qs_httpc_req hr;
    qs_httpc_req_init(&hr, r->method, url.data, r->what);
    hr.headers = hdrs;
    hr.aws_sigv4 = c->url.sigv4;
    hr.user = c->url.access_key;
    hr.password = c->url.secret_key;
    hr.body = r->body;
    hr.body_len = r->body_len;
    hr.src = r->src;
    hr.src_ud = r->src_ud;
    hr.src_len = r->src_len;
    if (r->sink != NULL) {
        hr.sink = get_sink;
        hr.sink_ud = r;
    }
    hr.resp_max = S3_RESP_MAX;
    hr.on_response = on_response;
    hr.on_header = on_header;
    hr.hook_ud = r;
    hr.explain = explain;
    hr.explain_ud = c;
    struct qs_httpc_limits lim = c->limits;
    if (r->sink != NULL)
        lim.download_buffer = S3_DOWNLOAD_BUFFER;
    hr.limits = &lim;
    hr.cancel = r->cancel;

    r->status = 0;
    r->skip = 0;
    r->body_started = 0;
    r->etag[0] = '\0';
    r->resume_from = r->delivered;
    int rc = qs_httpc_perform(h, &hr, err);
    r->status = hr.status;
    r->content_length = hr.content_length;
    qs_buf_free(&r->resp);
    r->resp = hr.resp;
    qs_buf_init(&hr.resp);
    r->callback_failed = hr.callback_failed;
    qs_httpc_req_deinit(&hr);
    qs_buf_free(&url);
    return rc;
}

int qs_s3req_perform(struct qs_s3req_ctx *c, struct qs_httpc *h, struct qs_s3req *r,
                     struct qs_error *err)
{
    struct qs_error local;
    if (err == NULL)
        err = &local;
    struct qs_httpc *own = NULL;
    if (h == NULL && (h = own = qs_httpc_pool_take(c->pool)) == NULL)
        return qs_error_set(err, UV_ENOMEM, "%s: cannot create an HTTP handle", r->what);
    int rc;
    for (int attempt = 0;; attempt++) {
        rc = perform_once(c, h, r, err);
        /* A request whose body came from a source cannot be sent again, and
         * one whose sink failed would fail the same way; the error keeps its
         * classification for the layers above. */
        if (rc == 0 || !err->retryable || r->no_retry || r->src != NULL || r->callback_failed ||
            attempt >= c->max_retries || qs_cancel_requested(r->cancel))
            break;
        long d = qs_httpc_backoff_ms(attempt + 1, c->retry_base_ms, c->retry_max_ms);
        atomic_fetch_add(&c->retries, 1);
        struct qs_log_ctx ctx = QS_LOG_CTX_NONE;
        ctx.error = err->msg;
        ctx.phase = "storage";
        qs_log(QS_LOG_WARN, &ctx, "s3 request failed, retry %d/%d in %ld ms", attempt + 1,
               c->max_retries, d);
        qs_sleep_cancellable(d, r->cancel);
    }
    if (own != NULL)
        qs_httpc_pool_give(c->pool, own);
    return rc;
}

int qs_s3req_head(struct qs_s3req_ctx *c, const char *key, struct qs_storage_stat *out,
                  struct qs_error *err)
{
    char what[1200];
    qs_s3req_what(what, sizeof(what), "HEAD", key);
    struct qs_s3req r;
    qs_s3req_init(&r, "HEAD", key, NULL, what);
    struct qs_storage_meta meta;
    qs_storage_meta_init(&meta);
    r.meta_out = &meta;
    int rc = qs_s3req_perform(c, NULL, &r, err);
    if (rc == 0) {
        memset(out, 0, sizeof(*out));
        out->size = r.content_length > 0 ? (uint64_t)r.content_length : 0;
        out->mtime = r.last_modified;
        out->meta = meta;
    } else {
        qs_storage_meta_deinit(&meta);
    }
    qs_s3req_deinit(&r);
    return rc;
}
