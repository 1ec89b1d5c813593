/* What both S3 put engines share (part of the S3 driver; use storage.h):
 * the object's headers, the random per-put token stored with the object,
 * the rule that a put never replaces an object, and aborting a multipart
 * upload.
 *
 * Never replacing: writes carry "If-None-Match: *" (the single PUT and
 * CompleteMultipartUpload), and because radosgw ignores that header on
 * CompleteMultipartUpload, a HEAD checks the key before the first part and
 * before completing. A 412 Precondition Failed caused by an earlier attempt
 * of the same put (whose answer was lost) is told apart by the token in the
 * object's metadata and counts as success; anything else under the key
 * fails the put with UV_EEXIST (never retryable). A put with
 * QS_STORAGE_PUT_REPLACE skips all of this and replaces. Every function
 * blocks (worker threads only).
 */
#ifndef QSNAP_S3PUT_H
#define QSNAP_S3PUT_H

#include <stdint.h>

#include "qsnap/error.h"
#include "qsnap/httpc.h"
#include "qsnap/s3req.h"
#include "qsnap/storage_types.h"
#include "qsnap/util.h"

/* Metadata name of the token (left out of what the driver's head returns). */
#define QS_S3PUT_TOKEN_META "qsnap-put"
#define QS_S3PUT_MAX_META 32

struct qs_s3put {
    struct qs_s3req_ctx *ctx;           /* borrowed, outlives the put */
    char *key;                          /* owned */
    int64_t size;                       /* -1: unknown */
    unsigned flags;                     /* QS_STORAGE_PUT_* */
    char *meta_hdrs[QS_S3PUT_MAX_META]; /* owned: "x-amz-meta-NAME: VALUE" */
    size_t nmeta;
    char token[33];     /* random hex: tells this put's object from others */
    char token_hdr[64]; /* "x-amz-meta-qsnap-put: TOKEN" */
    /* Requested when the put is abandoned: stops its requests. Its parent is
     * the caller's cancel, so a cancelled job stops them too. */
    struct qs_cancel abort;
    struct qs_httpc *h; /* from ctx->pool until deinit: the producer thread's handle */
};

/* Fills p (caller storage) for a put of key (copied) of size bytes (-1:
 * unknown) with meta (borrowed, copied; at most QS_S3PUT_MAX_META entries)
 * and flags; cancel (borrowed, may be NULL) must outlive the put. 0,
 * QS_EINVAL, QS_EIO or UV_ENOMEM; on failure p holds nothing. */
int qs_s3put_init(struct qs_s3put *p, struct qs_s3req_ctx *ctx, const char *key, int64_t size,
                  const struct qs_storage_meta *meta, unsigned flags, struct qs_cancel *cancel,
                  struct qs_error *err);
void qs_s3put_deinit(struct qs_s3put *p);

/* The header that makes a write fail on an existing object,
 * "If-None-Match: *"; NULL for a put that replaces. */
const char *qs_s3put_condition(const struct qs_s3put *p);

/* Adds the object's headers to r from index `first` on: "If-None-Match: *"
 * when `conditional` (and the put does not replace), the token and the
 * metadata. Returns the next free index. */
int qs_s3put_headers(const struct qs_s3put *p, struct qs_s3req *r, int first, int conditional);

/* After a conditional write failed with rc: a 412 (or forced, when S3
 * reported PreconditionFailed in a 200 answer) means the key holds an
 * object; it is this put's own when an earlier attempt stored it (0, err
 * cleared), else UV_EEXIST. Other failures are returned as they are. */
int qs_s3put_settle(struct qs_s3put *p, int rc, int forced, struct qs_error *err);

/* HEAD check that the key is free (a put that replaces skips it). 0 when
 * free, UV_EEXIST when taken. A failing HEAD fails the check only when
 * strict; otherwise the request that follows reports the reason (a 403 HEAD
 * has no body to name it). */
int qs_s3put_check_absent(struct qs_s3put *p, int strict, struct qs_error *err);

/* 1 when the key holds the object this put stored (its token), 0 when it
 * holds another one, -1 when there is none or HEAD failed. */
int qs_s3put_owns_object(struct qs_s3put *p);

/* Aborts the multipart upload upload_id of key (both borrowed) on h
 * (borrowed; NULL: pooled): the request is retried, and a failing abort is
 * tried again after a pause, since an orphaned upload keeps its parts. One
 * that no longer exists counts as aborted. */
int qs_s3put_abort_upload(struct qs_s3req_ctx *ctx, struct qs_httpc *h, const char *key,
                          const char *upload_id, struct qs_error *err);

#endif
