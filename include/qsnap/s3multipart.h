/* The buffered put of the S3 driver (use storage.h): for unknown sizes
 * (gzip) and sizes up to one part. The producer fills part buffers; a put
 * that fits one part is sent as one PUT with Content-MD5, a larger one
 * becomes a multipart upload whose parts upload on their own threads (own
 * handles) while the next part fills: with the default of two uploads in
 * flight, memory is three part buffers. A failed part stops the others and
 * aborts the upload (AbortMultipartUpload, retried), so no parts are left
 * behind.
 */
#ifndef QSNAP_S3MULTIPART_H
#define QSNAP_S3MULTIPART_H

#include <stdint.h>

#include "qsnap/s3req.h"
#include "qsnap/storage_driver.h"

#define QS_S3_MIN_PART ((uint64_t)5 << 20)
#define QS_S3_MAX_PART ((uint64_t)5 << 30)
#define QS_S3_MAX_PARTS 10000u
#define QS_S3_DEFAULT_PART ((uint64_t)8 << 20)

/* Part-size rule. Part `index` (0-based) of an upload whose configured part
 * size is base (clamped to 5 MiB..5 GiB) is
 *     base * 2^(index / 1000), and from part 1000 on at least 8 MiB * 2^(index / 1000),
 * capped at 5 GiB. So sizes double every 1000 parts, and 10,000 parts cover
 * more than 5 TiB for every base >= 5 MiB (5 MiB: 4.9 GiB in the first
 * 1000 parts, then 8 MiB * 1000 * (2 + 4 + ... + 512) = 7.98 TiB). Returns 0
 * for index >= 10,000. Pure. */
uint64_t qs_s3multipart_part_size(uint32_t index, uint64_t base);

/* Starts a buffered put of key (size: exact, or -1 unknown) with parts of
 * part_size (5 MiB..5 GiB) bytes; semantics and other arguments as struct
 * qs_storage_driver's put_begin (ctx borrowed, outlives the put). */
int qs_s3multipart_begin(struct qs_s3req_ctx *ctx, uint64_t part_size, const char *key,
                         int64_t size, const struct qs_storage_meta *meta, unsigned flags,
                         struct qs_cancel *cancel, struct qs_storage_be_put **out,
                         struct qs_error *err);

#endif
