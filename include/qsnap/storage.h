/* Backup destination storage: S3 (libcurl, SigV4) or a directory (file://).
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
 * puts are multipart: parts upload on two threads (own easy handles) while
 * the next part fills; memory is about 3 x part size per put.
 * Easy handles are pooled per storage object for connection reuse; a
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
#include "qsnap/util.h"

/* ---- options ---------------------------------------------------------------
 * Strings are borrowed for the call to qs_storage_new() (copied). */
struct qs_storage_opts {
    enum qs_dest_kind kind;
    const char *bucket; /* s3 */
    const char *prefix; /* s3: without leading/trailing '/', "" or NULL = none */
    const char *path;   /* file: absolute directory, must exist */

    const char *endpoint; /* NULL: https://BUCKET.s3.REGION.amazonaws.com (virtual) */
    const char *region;   /* NULL: us-east-1 */
    const char *access_key_id;
    const char *secret_access_key; /* secret */
    enum qs_uri_style uri_style;
    const char *ca_file; /* extra CA (PEM) on top of the system bundle; NULL = none */

    uint64_t part_size;         /* first multipart part size; 0 = 8 MiB; >= 5 MiB */
    uint64_t max_bytes_per_sec; /* upload rate cap for put; 0 = unlimited */
    int upload_parallel;        /* parts uploading at once; 0 = 2 (3 part buffers) */
    /* Known sizes above one part and up to this many bytes stream as a single
     * PUT (no part buffers); 0 = 5 GiB (S3's limit), negative = never. */
    int64_t single_put_max;

    /* Tuning / test knobs: 0 (or negative) selects the default. */
    int list_page_size;      /* max-keys per list request (default 1000) */
    int max_retries;         /* retries after the first attempt (default 5) */
    int retry_base_ms;       /* first backoff (default 200 ms) */
    int retry_max_ms;        /* backoff cap (default 10 s) */
    long connect_timeout_ms; /* default 10 s */
    long low_speed_time_s;   /* abort when below low_speed_limit this long (default 60 s) */
    long low_speed_limit;    /* bytes/s (default 1024) */
    int no_retry_jitter;     /* tests: deterministic backoff */
};

/* Sets every field to its default / zero. */
void qs_storage_opts_init(struct qs_storage_opts *opts);

/* ---- user metadata ---------------------------------------------------------
 * Small key/value pairs stored with an object (x-amz-meta-* on S3, a hidden
 * sidecar file for file://). Names: 1..64 chars of [a-z0-9-]; values:
 * printable ASCII without leading/trailing or repeated spaces, <= 1024. */
struct qs_storage_meta {
    size_t n;
    char **names;  /* owned */
    char **values; /* owned */
};

void qs_storage_meta_init(struct qs_storage_meta *m);
void qs_storage_meta_deinit(struct qs_storage_meta *m);
/* Adds or replaces name (copied). Returns 0, QS_EINVAL or UV_ENOMEM. */
int qs_storage_meta_set(struct qs_storage_meta *m, const char *name, const char *value);
/* Borrowed value or NULL. */
const char *qs_storage_meta_get(const struct qs_storage_meta *m, const char *name);

/* ---- results ------------------------------------------------------------ */
struct qs_storage_stat {
    uint64_t size;
    int64_t mtime; /* last modified, seconds since the epoch (UTC) */
    struct qs_storage_meta meta;
};
/* Frees the metadata inside st (st itself is caller storage). */
void qs_storage_stat_deinit(struct qs_storage_stat *st);

struct qs_storage_entry {
    char *key; /* owned, relative to the destination */
    uint64_t size;
    int64_t mtime;
};

struct qs_storage_list {
    struct qs_storage_entry *items; /* owned, sorted by key (byte order) */
    size_t n;
    size_t cap;
};
void qs_storage_list_init(struct qs_storage_list *l);
void qs_storage_list_deinit(struct qs_storage_list *l);

/* An unfinished upload: an open S3 multipart upload, or a leftover
 * temporary file of a file:// destination. */
struct qs_storage_upload {
    char *key;       /* owned, relative key the upload was writing */
    char *upload_id; /* owned, opaque; pass to qs_storage_abort_upload */
    int64_t initiated;
};

struct qs_storage_uploads {
    struct qs_storage_upload *items; /* owned */
    size_t n;
    size_t cap;
};
void qs_storage_uploads_init(struct qs_storage_uploads *u);
void qs_storage_uploads_deinit(struct qs_storage_uploads *u);

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
