/* The S3 driver of the storage layer (use storage.h instead). This module is
 * the driver table and the simple operations (probe, get, head, list,
 * delete, unfinished uploads); the rest of the driver is split by concern:
 *   s3url       where requests go, how keys are encoded, signing parameters;
 *   s3req       one request: retries, S3 error documents, resumed GETs;
 *   s3xml       the XML answers (expat);
 *   s3put       what both put engines share: the no-replace rule;
 *   s3stream    a known size above one part, up to 5 GiB: one streaming PUT;
 *   s3multipart everything else: part buffers, a single PUT when one part
 *               holds it all, else a multipart upload with parts in flight.
 * Requests are signed by libcurl (CURLOPT_AWS_SIGV4) on blocking easy
 * handles; every function blocks (worker threads only).
 */
#ifndef QSNAP_S3_H
#define QSNAP_S3_H

#include "qsnap/storage_driver.h"

/* The s3:// driver: opts' bucket, prefix, endpoint, region, keys, URI style,
 * CA file, part size and tuning knobs. */
extern const struct qs_storage_driver qs_s3_driver;

#endif
