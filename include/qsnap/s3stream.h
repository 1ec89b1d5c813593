/* The streaming put of the S3 driver (use storage.h): an object of known
 * size sent as ONE PUT whose body an upload thread reads from a 1 MiB pipe
 * while the producer writes into it, so download and upload overlap byte
 * for byte with no part buffers. Up to 5 GiB (S3's limit for one PUT). The
 * request cannot be retried here (its bytes are gone): the caller streams
 * again. Its last byte leaves only once the producer has finished, so an
 * abandoned put stores nothing.
 */
#ifndef QSNAP_S3STREAM_H
#define QSNAP_S3STREAM_H

#include <stdint.h>

#include "qsnap/s3req.h"
#include "qsnap/storage_driver.h"

/* Starts the put of size (>= 0) bytes under key; semantics and arguments as
 * struct qs_storage_driver's put_begin (ctx borrowed, outlives the put). */
int qs_s3stream_begin(struct qs_s3req_ctx *ctx, const char *key, int64_t size,
                      const struct qs_storage_meta *meta, unsigned flags, struct qs_cancel *cancel,
                      struct qs_storage_be_put **out, struct qs_error *err);

#endif
