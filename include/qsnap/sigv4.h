/* AWS Signature Version 4 as pure functions (no I/O, no clock).
 *
 * qsnap's requests to S3 are signed by libcurl (CURLOPT_AWS_SIGV4, see
 * s3url.h); no production code calls this module. It is the reference
 * implementation of the signing steps, checked in test/test_sigv4.c against
 * the example vectors AWS publishes (canonical request, string to sign,
 * signing key, signature, Authorization header, presigned URL), kept so
 * that what libcurl is asked to sign can be reasoned about and presigned
 * URLs built when needed. Keys and query values are encoded with
 * qs_httpc_escape(), AWS's "UriEncode".
 */
#ifndef QSNAP_SIGV4_H
#define QSNAP_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/util.h"

/* One request header for the canonical request. Names are matched
 * case-insensitively and lower-cased in the output; values are trimmed and
 * inner runs of spaces collapsed. Both strings borrowed. */
struct qs_sigv4_header {
    const char *name;
    const char *value;
};

/* What is signed. All strings borrowed.
 * canonical_uri: the path exactly as sent (already URI-encoded, e.g.
 *   "/test%24file.text"); canonical_query: already sorted by name and
 *   encoded, value-less parameters written "name=" ("" when none);
 *   payload_hash: hex SHA-256 of the body or "UNSIGNED-PAYLOAD". */
struct qs_sigv4_request {
    const char *method;
    const char *canonical_uri;
    const char *canonical_query;
    const struct qs_sigv4_header *headers;
    size_t nheaders;
    const char *payload_hash;
};

/* Writes the canonical request into creq and the ';'-joined lower-case
 * signed header list into signed_headers (both borrowed, appended to).
 * Headers are sorted by name. Returns 0, UV_ENOMEM or QS_EINVAL (more than
 * 64 headers). */
int qs_sigv4_canonical_request(const struct qs_sigv4_request *req, struct qs_buf *creq,
                               struct qs_buf *signed_headers);

/* "YYYYMMDDTHHMMSSZ" for t (seconds since the epoch, UTC). */
void qs_sigv4_amz_date(int64_t t, char out[static 17]);

/* Appends the string to sign for amz_date ("20130524T000000Z"), region and
 * service over canonical_request (all borrowed) to out. Returns 0 or
 * UV_ENOMEM. */
int qs_sigv4_string_to_sign(const char *amz_date, const char *region, const char *service,
                            const char *canonical_request, struct qs_buf *out);

/* Derives the signing key HMAC chain from secret, date ("YYYYMMDD"), region
 * and service (all borrowed). The key is a secret: wipe it after use. */
void qs_sigv4_signing_key(const char *secret, const char *date, const char *region,
                          const char *service, unsigned char out[static 32]);

/* Hex HMAC-SHA256 of string_to_sign (borrowed) under key. */
void qs_sigv4_signature(const unsigned char key[static 32], const char *string_to_sign,
                        char out[static 65]);

/* Signs req and appends the Authorization header value
 * ("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...") to
 * out. Strings borrowed; t is the request time. Returns 0 or a negative
 * code. */
int qs_sigv4_authorization(const struct qs_sigv4_request *req, const char *access_key,
                           const char *secret, const char *region, const char *service, int64_t t,
                           struct qs_buf *out);

/* Appends a presigned URL (query authentication, signed header "host",
 * UNSIGNED-PAYLOAD) to out: base_url is "scheme://host[:port]" without a
 * trailing slash, canonical_uri the encoded path ("/bucket/key"), host the
 * Host header value. Strings borrowed. expires_s in 1..604800. Returns 0,
 * UV_ENOMEM or QS_EINVAL. */
int qs_sigv4_presign(const char *method, const char *base_url, const char *host,
                     const char *canonical_uri, const char *access_key, const char *secret,
                     const char *region, const char *service, int64_t t, int64_t expires_s,
                     struct qs_buf *out);

#endif
