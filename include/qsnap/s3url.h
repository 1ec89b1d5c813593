/* Where an S3 request goes and how it is signed (part of the S3 driver; use
 * storage.h). From the destination's options: the base URL (virtual-hosted
 * or path style, AWS or a custom endpoint), the key prefix, object URLs with
 * keys encoded as AWS signs them ('/' kept, everything but A-Z a-z 0-9 - _ .
 * ~ as %XX), sorted query strings, and the parameters libcurl signs with
 * (CURLOPT_AWS_SIGV4 "aws:amz:REGION:s3", access key and secret).
 *
 * Requests follow the rules libcurl's SigV4 signer (7.88) needs:
 * x-amz-content-sha256 is always sent, query strings are written sorted and
 * AWS-encoded ("?uploads="), and no header goes into a request's header list
 * that is not sent. Pure: no I/O, no global state.
 */
#ifndef QSNAP_S3URL_H
#define QSNAP_S3URL_H

#include "qsnap/error.h"
#include "qsnap/storage_types.h"
#include "qsnap/util.h"

struct qs_s3url {
    char *bucket;     /* owned */
    char *prefix;     /* owned: "" or "p/q/" (ends with '/') */
    char *base_url;   /* owned: scheme://host[:port] */
    char *path_base;  /* owned: "/bucket" (path style) or "" (virtual) */
    char *region;     /* owned */
    char *access_key; /* owned */
    char *secret_key; /* owned, secret: wiped by qs_s3url_deinit() */
    char sigv4[128];  /* "aws:amz:REGION:s3" */
};

/* Fills u from o (borrowed; strings copied): bucket, keys, region (default
 * us-east-1), endpoint and URI style, prefix (leading and trailing '/'
 * dropped). Returns 0, QS_ECONFIG naming what is wrong (never the secret) or
 * UV_ENOMEM; on failure u holds nothing. */
int qs_s3url_init(struct qs_s3url *u, const struct qs_storage_opts *o, struct qs_error *err);
/* Frees what u holds, wiping the secret. */
void qs_s3url_deinit(struct qs_s3url *u);

/* Appends the URL of key (borrowed, relative to the prefix; NULL: the bucket)
 * with query (borrowed, already sorted and encoded; NULL or "": none) to out.
 * Returns 0 or UV_ENOMEM. */
int qs_s3url_build(const struct qs_s3url *u, const char *key, const char *query,
                   struct qs_buf *out);

/* Appends "name=value" (value AWS-encoded; NULL: "name=") to the query q,
 * '&'-separated. Callers add parameters in sorted order. 0 or UV_ENOMEM. */
int qs_s3url_query_add(struct qs_buf *q, const char *name, const char *value);

#endif
