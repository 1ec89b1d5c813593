/* S3 backend of the storage layer (use include/qsnap/storage.h instead).
 *
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4) on blocking easy
 * handles, following the libcurl 7.88 SigV4 rules: x-amz-content-sha256 is
 * always sent, query strings are written sorted and AWS-encoded
 * ("?uploads="), keys are AWS-encoded with '/' kept, and no header is put
 * into CURLOPT_HTTPHEADER that is not sent. Every function blocks; call from
 * worker threads only. Also exposes the part-size rule for unit tests. The
 * XML answers are parsed by s3xml.h.
 */
#ifndef QSNAP_S3_H
#define QSNAP_S3_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/storage.h"

#define QS_S3_MIN_PART ((uint64_t)5 << 20)
#define QS_S3_MAX_PART ((uint64_t)5 << 30)
#define QS_S3_MAX_PARTS 10000u
#define QS_S3_DEFAULT_PART ((uint64_t)8 << 20)
/* Parts uploading at once while the next one fills (memory: parts + 1 buffers). */
#define QS_S3_DEFAULT_PARALLEL 2

/* Part-size rule. Part `index` (0-based) of an upload whose configured part
 * size is base (clamped to 5 MiB..5 GiB) is
 *     base * 2^(index / 1000), and from part 1000 on at least 8 MiB * 2^(index / 1000),
 * capped at 5 GiB. So sizes double every 1000 parts, and 10,000 parts cover
 * more than 5 TiB for every base >= 5 MiB (5 MiB: 4.9 GiB in the first
 * 1000 parts, then 8 MiB * 1000 * (2 + 4 + ... + 512) = 7.98 TiB). Returns 0
 * for index >= 10,000. Pure. */
uint64_t qs_s3_part_size_for(uint32_t index, uint64_t base);

/* ---- the backend ----------------------------------------------------------- */
struct qs_s3;
struct qs_s3_put;

/* opts borrowed (copied). *out freed with qs_s3_free. */
int qs_s3_new(const struct qs_storage_opts *opts, struct qs_s3 **out, struct qs_error *err);
void qs_s3_free(struct qs_s3 *s3);
uint64_t qs_s3_retries(const struct qs_s3 *s3);

/* Appends the full URL of key (borrowed; NULL = the bucket) to out. */
int qs_s3_url(const struct qs_s3 *s3, const char *key, const char *query, struct qs_buf *out);

int qs_s3_probe(struct qs_s3 *s3, struct qs_error *err);

/* Streaming put: semantics as qs_storage_put_* (the size check is done by
 * the storage layer). size < 0: unknown. */
int qs_s3_put_begin(struct qs_s3 *s3, const char *key, int64_t size,
                    const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                    struct qs_s3_put **out, struct qs_error *err);
int qs_s3_put_write(struct qs_s3_put *put, const void *data, size_t len, struct qs_error *err);
int qs_s3_put_finish(struct qs_s3_put *put, struct qs_error *err);
void qs_s3_put_abort(struct qs_s3_put *put);
/* Parts uploaded so far (for tests and progress). */
uint32_t qs_s3_put_parts(const struct qs_s3_put *put);

int qs_s3_get(struct qs_s3 *s3, const char *key, qs_sink_fn sink, void *ud,
              struct qs_cancel *cancel, struct qs_error *err);
int qs_s3_head(struct qs_s3 *s3, const char *key, struct qs_storage_stat *out,
               struct qs_error *err);
int qs_s3_list(struct qs_s3 *s3, const char *prefix, struct qs_storage_list *out,
               struct qs_error *err);
int qs_s3_delete(struct qs_s3 *s3, const char *key, struct qs_error *err);
int qs_s3_list_uploads(struct qs_s3 *s3, const char *prefix, struct qs_storage_uploads *out,
                       struct qs_error *err);
int qs_s3_abort_upload(struct qs_s3 *s3, const char *key, const char *upload_id,
                       struct qs_error *err);

#endif
