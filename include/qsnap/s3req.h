/* One S3 request (part of the S3 driver; use storage.h): signed by libcurl
 * through the shared HTTP client (httpc.h), retried on retryable failures
 * with the shared backoff, S3's error documents turned into messages and
 * classifications (NoSuchBucket is a configuration error; SlowDown,
 * InternalError, RequestTimeout and their kin are retryable). Interrupted
 * GETs resume with a Range request bound to the object's ETag. Handles come
 * from a pool per destination, so connections are reused across threads.
 * Every function blocks (worker threads only).
 */
#ifndef QSNAP_S3REQ_H
#define QSNAP_S3REQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "qsnap/error.h"
#include "qsnap/httpc.h"
#include "qsnap/s3url.h"
#include "qsnap/storage_types.h"
#include "qsnap/util.h"

#define QS_S3REQ_MAX_HEADERS 40

/* What every request to one destination shares. Thread-safe after init. */
struct qs_s3req_ctx {
    struct qs_s3url url;
    struct qs_httpc_pool *pool;    /* owned */
    struct qs_httpc_limits limits; /* limits.ca_file owned */
    int max_retries;               /* after the first attempt */
    int retry_base_ms;
    int retry_max_ms;
    atomic_uint_fast64_t retries; /* requests retried so far */
};

/* Fills c from o (borrowed; copied). 0, QS_ECONFIG or UV_ENOMEM; on failure
 * c holds nothing. */
int qs_s3req_ctx_init(struct qs_s3req_ctx *c, const struct qs_storage_opts *o,
                      struct qs_error *err);
void qs_s3req_ctx_deinit(struct qs_s3req_ctx *c);

/* One request. Initialise with qs_s3req_init(); every pointer is borrowed
 * and must stay valid during qs_s3req_perform(). */
struct qs_s3req {
    const char *method; /* GET HEAD PUT POST DELETE */
    const char *key;    /* relative key; NULL: the bucket */
    const char *query;  /* sorted and encoded (qs_s3url_query_add), or NULL */
    const char *what;   /* for messages: "s3 PUT part 3 of c1/x"; never a secret */
    const char *headers[QS_S3REQ_MAX_HEADERS + 1]; /* extra "Name: value", NULL-terminated */
    const char *body;                              /* PUT/POST body, body_len bytes */
    size_t body_len;
    qs_source_fn src; /* or a PUT body produced on the fly: src_len bytes, never retried */
    void *src_ud;
    int64_t src_len;
    qs_sink_fn sink; /* GET: the object's bytes go here (exactly once, across resumes) */
    void *sink_ud;
    const struct qs_cancel *cancel;
    int no_retry;
    struct qs_storage_meta *meta_out; /* HEAD/GET: x-amz-meta-* of the answer (appended) */

    /* Results. */
    long status;
    struct qs_buf resp; /* owned: small answers (XML) and error bodies */
    int64_t content_length;
    int64_t last_modified;
    char etag[128];
    int callback_failed; /* the sink or the source failed */

    /* GET resume state. */
    uint64_t delivered;   /* bytes given to sink: the next attempt's Range start */
    uint64_t skip;        /* bytes to drop when a resumed GET answered 200 */
    uint64_t resume_from; /* the Range start of this attempt */
    int body_started;
    char first_etag[128]; /* the object being read, for If-Match */
};

/* method, key, query and what borrowed; no headers, body or sink. */
void qs_s3req_init(struct qs_s3req *r, const char *method, const char *key, const char *query,
                   const char *what);
void qs_s3req_deinit(struct qs_s3req *r);

/* Sends r on h (borrowed; NULL: a pooled handle), retrying retryable
 * failures (never a request with a source, one marked no_retry, or one whose
 * sink failed) up to c->max_retries times, cancellably. Returns 0 for a 2xx
 * answer, else a negative code with err classified (httpc.h). */
int qs_s3req_perform(struct qs_s3req_ctx *c, struct qs_httpc *h, struct qs_s3req *r,
                     struct qs_error *err);

/* HEAD key: size, mtime and every x-amz-meta-* (out caller storage, filled
 * on success). Missing: QS_ENOTFOUND. */
int qs_s3req_head(struct qs_s3req_ctx *c, const char *key, struct qs_storage_stat *out,
                  struct qs_error *err);

/* 1 when S3's error code (borrowed) names a condition a retry may clear. */
int qs_s3req_retryable_code(const char *code);

/* "s3 VERB KEY" into out: what a request is called in messages. */
void qs_s3req_what(char *out, size_t cap, const char *verb, const char *key);

/* Requests retried so far on c (thread-safe). */
uint64_t qs_s3req_retries(const struct qs_s3req_ctx *c);

#endif
