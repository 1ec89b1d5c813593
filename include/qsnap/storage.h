/* Backup destination storage: S3 (libcurl, SigV4) or a directory (file://).
 *
 * This layer checks keys, sizes and arguments, caps the upload rate
 * (QSNAP_MAX_BANDWIDTH) and describes the destination; one driver per
 * backend (storage_driver.h: s3.h, fsstore.h) does the I/O. Retries belong
 * to the S3 driver's requests (only a request can be resumed or sent again;
 * a file:// operation is never retried); whole steps are retried by the
 * backup.
 *
 * Threading model. Every function here BLOCKS and must be called from a
 * worker thread, never from the libuv loop thread. Transfers run on plain
 * libcurl easy handles on worker threads, not on the multi interface driven
 * by libuv: qsnap runs one job at a time, a backup is one long sequential
 * stream (Qdrant GET -> storage put), and blocking calls give natural
 * backpressure (the producer blocks in qs_storage_put_write while the upload
 * side is full) with simple, linear error handling and retries. The
 * loop thread stays free for the HTTP endpoint, timers and the job state
 * machine; it only talks to transfers through struct qs_cancel and the job's
 * progress counters.
 * An S3 put of known size above one part (up to 5 GiB) is ONE streaming PUT:
 * the producer writes into a 1 MiB pipe that an upload thread sends as the
 * request body, so download and upload overlap byte for byte with no part
 * buffers; it cannot be retried by this layer (the caller re-streams). Other
 * puts go through part buffers: one PUT when a single part holds them, else a
 * multipart upload whose parts upload on two threads (own handles) while the
 * next part fills; memory is about 3 x part size per put.
 * HTTP handles are pooled per storage object for connection reuse; a
 * struct qs_storage may be used from several threads at once.
 *
 * Keys are relative to the destination (s3://BUCKET/PREFIX or the
 * directory): "c1/snap-2024.snapshot". A key is 1..1024 bytes of UTF-8
 * without control characters, without a leading or trailing '/', and no
 * path component may be empty or begin with '.' (names beginning with '.'
 * are reserved for temporaries and metadata of file:// destinations).
 */
#ifndef QSNAP_STORAGE_H
#define QSNAP_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/storage_types.h"
#include "qsnap/util.h"

/* ---- the storage object --------------------------------------------------- */
struct qs_storage;
struct qs_storage_put;

/* Creates a storage from opts (borrowed). *out owned by the caller, freed
 * with qs_storage_free(). Does no network I/O. Returns 0, QS_ECONFIG or
 * UV_ENOMEM; err borrowed (may be NULL). */
int qs_storage_new(const struct qs_storage_opts *opts, struct qs_storage **out,
                   struct qs_error *err);

/* Same from the configuration (borrowed; nothing kept). */
int qs_storage_new_from_config(const struct qs_config *cfg, struct qs_storage **out,
                               struct qs_error *err);

/* Frees st (NULL ok). No put may be in progress. */
void qs_storage_free(struct qs_storage *st);

/* "s3://bucket/prefix" or "file:///path" (borrowed, valid while st lives). */
const char *qs_storage_describe(const struct qs_storage *st);

/* Number of retried requests since creation (thread-safe). */
uint64_t qs_storage_retries(const struct qs_storage *st);

/* Cheap reachability check for /readyz: S3 ListObjectsV2 max-keys=1 under
 * the prefix (a missing bucket gives NoSuchBucket); file:// checks the
 * directory exists and is writable. */
int qs_storage_probe(struct qs_storage *st, struct qs_error *err);

/* ---- streaming put ---------------------------------------------------------
 * size: exact length when known, -1 when unknown. meta (borrowed, may be
 * NULL) is copied. cancel (borrowed, may be NULL) must outlive the put; a
 * cancelled put fails with QS_ECANCELED and aborts the multipart upload.
 * *out is owned by the caller and is released by exactly one of
 * qs_storage_put_finish() or qs_storage_put_abort(). Nothing is visible
 * under key until put_finish() returns 0.
 *
 * A put never replaces an existing object: when key already holds one, the
 * put fails with UV_EEXIST (never retryable, err names the key) and the
 * existing object is left as it was. file:// commits with an exclusive
 * rename; S3 sends "If-None-Match: *" with the single PUT and with
 * CompleteMultipartUpload and, because radosgw ignores that header on
 * CompleteMultipartUpload, also checks with HEAD before the first part and
 * before completing. A condition failure caused by an earlier attempt of the
 * same put (a retried request whose answer was lost) is recognised by a
 * random per-put token in the object's metadata and counts as success.
 * put_begin may already answer UV_EEXIST. */
int qs_storage_put_begin(struct qs_storage *st, const char *key, int64_t size,
                         const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                         struct qs_storage_put **out, struct qs_error *err);

/* Pushes len bytes (borrowed for the call). Blocks while both part buffers
 * are busy (backpressure) and to honour max_bytes_per_sec. After an error
 * the put is dead: call qs_storage_put_abort(). */
int qs_storage_put_write(struct qs_storage_put *put, const void *data, size_t len,
                         struct qs_error *err);

/* Uploads what is buffered and commits the object. Writes the number of
 * bytes stored into *stored_size (may be NULL). Always frees put; on error
 * the upload has been aborted and nothing is left behind. A known size that
 * does not match the bytes written is QS_ECHECKSUM; an existing object under
 * the key is UV_EEXIST. */
int qs_storage_put_finish(struct qs_storage_put *put, uint64_t *stored_size, struct qs_error *err);

/* Abandons the put (NULL ok): aborts the multipart upload (retried) or
 * removes the temporary file, then frees put. */
void qs_storage_put_abort(struct qs_storage_put *put);

/* Convenience: one whole buffer (data borrowed), e.g. a manifest. */
int qs_storage_put_buffer(struct qs_storage *st, const char *key, const void *data, size_t len,
                          const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                          struct qs_error *err);

/* Stores data (borrowed) under key like qs_storage_put_buffer(), but
 * replaces an object already there (atomically: readers see the old object
 * or the new one). Only for records that are not backups, such as a restore
 * drill's result; backups and manifests are never replaced. */
int qs_storage_replace_buffer(struct qs_storage *st, const char *key, const void *data, size_t len,
                              const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                              struct qs_error *err);

/* ---- reading ------------------------------------------------------------- */
/* Streams the object to sink (called on this thread). A sink error aborts
 * with that code. A missing object is QS_ENOTFOUND. Interrupted S3 GETs are
 * resumed with a Range request. */
int qs_storage_get(struct qs_storage *st, const char *key, qs_sink_fn sink, void *ud,
                   struct qs_cancel *cancel, struct qs_error *err);

/* Reads a whole object of at most max bytes into out (borrowed, appended).
 * Larger objects give QS_ETOOBIG. */
int qs_storage_get_buffer(struct qs_storage *st, const char *key, size_t max, struct qs_buf *out,
                          struct qs_cancel *cancel, struct qs_error *err);

/* Size, mtime and user metadata. *out is caller storage, filled on success
 * (release with qs_storage_stat_deinit). Missing: QS_ENOTFOUND. */
int qs_storage_head(struct qs_storage *st, const char *key, struct qs_storage_stat *out,
                    struct qs_error *err);

/* Every object whose key starts with prefix (borrowed, "" = all), all pages.
 * out (caller storage, initialised by the caller) is appended to and then
 * sorted. */
int qs_storage_list(struct qs_storage *st, const char *prefix, struct qs_storage_list *out,
                    struct qs_error *err);

/* Deletes key and its metadata. Deleting a missing key succeeds. */
int qs_storage_delete(struct qs_storage *st, const char *key, struct qs_error *err);

/* ---- unfinished uploads (retention hygiene) ----------------------------- */
/* Open multipart uploads (S3) or leftover temporaries (file://) whose key
 * starts with prefix (borrowed). out as for qs_storage_list. */
int qs_storage_list_uploads(struct qs_storage *st, const char *prefix,
                            struct qs_storage_uploads *out, struct qs_error *err);

/* Aborts one upload found by qs_storage_list_uploads (strings borrowed).
 * An upload that no longer exists counts as aborted. */
int qs_storage_abort_upload(struct qs_storage *st, const char *key, const char *upload_id,
                            struct qs_error *err);

/* Validates a relative key as described at the top. 0 or QS_EINVAL. */
int qs_storage_key_check(const char *key, struct qs_error *err);

#endif
