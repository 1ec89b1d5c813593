/* The XML answers of S3 (Error documents, InitiateMultipartUpload,
 * ListObjectsV2 and ListMultipartUploads pages), parsed with expat.
 *
 * Pure module: functions over a buffer, no network, no global state; safe to
 * call from any thread. Elements are matched by their local name, so the
 * S3 namespace (or any other, or none) is accepted. Character and predefined
 * entity references are decoded and CDATA sections are text, as in any XML
 * parser. A document with a DOCTYPE is refused (QS_EPROTO): S3 never sends
 * one, and refusing it leaves no room for entity expansion. The text of an
 * element is all character data inside it; when an element appears twice
 * where one is expected, the first one counts. Unknown elements are ignored.
 *
 * Every function returns 0, QS_EPROTO (not well-formed, wrong root element,
 * a required field missing or malformed) or UV_ENOMEM. A call that fails
 * leaves its outputs as they were.
 */
#ifndef QSNAP_S3XML_H
#define QSNAP_S3XML_H

#include <stddef.h>

#include "qsnap/storage_types.h"
#include "qsnap/util.h"

/* An <Error> document. code and message (borrowed; either may be NULL) get
 * <Code> and <Message>, truncated to their capacity and NUL-terminated
 * ("" when absent). QS_EPROTO when the root is not <Error>. */
int qs_s3xml_parse_error(const char *xml, size_t len, char *code, size_t code_cap, char *message,
                         size_t message_cap);

/* <InitiateMultipartUploadResult>: the <UploadId> (non-empty) is appended to
 * upload_id (borrowed). */
int qs_s3xml_parse_initiate(const char *xml, size_t len, struct qs_buf *upload_id);

/* One ListObjectsV2 page (<ListBucketResult>). Each <Contents> needs <Key>
 * and a decimal <Size>; <LastModified> (RFC 3339) is optional. Keys that do
 * not start with strip_prefix (borrowed; NULL = "") or equal it are skipped,
 * the others are appended to out (borrowed) with the prefix removed.
 * *truncated (may be NULL) is 1 when <IsTruncated> is "true", else 0;
 * next_token (borrowed, may be NULL) is reset to <NextContinuationToken>. */
int qs_s3xml_parse_list(const char *xml, size_t len, const char *strip_prefix,
                        struct qs_storage_list *out, int *truncated, struct qs_buf *next_token);

/* One ListMultipartUploads page, as qs_s3xml_parse_list: each <Upload>
 * needs <Key>, <UploadId> and an RFC 3339 <Initiated>; next_key and
 * next_upload (borrowed, may be NULL) are reset to <NextKeyMarker> and
 * <NextUploadIdMarker>. */
int qs_s3xml_parse_uploads(const char *xml, size_t len, const char *strip_prefix,
                           struct qs_storage_uploads *out, int *truncated, struct qs_buf *next_key,
                           struct qs_buf *next_upload);

#endif
