/* The values of the storage layer: options, user metadata, stat results,
 * listings and unfinished uploads, with their constructors and destructors.
 * No I/O: the storage API (storage.h), its drivers (s3, fsstore) and the pure
 * parsers that fill these values (s3xml) all build on this header alone.
 */
#ifndef QSNAP_STORAGE_TYPES_H
#define QSNAP_STORAGE_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/config.h"
#include "qsnap/error.h"

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

    /* Tuning / test knobs: 0 (or negative) selects the default. */
    int list_page_size;      /* max-keys per list request (default 1000) */
    int max_retries;         /* retries after the first attempt (default 5; negative: none) */
    int retry_base_ms;       /* first backoff (default 200 ms) */
    int retry_max_ms;        /* backoff cap (default 10 s) */
    long connect_timeout_ms; /* default 10 s */
    long low_speed_time_s;   /* abort when below low_speed_limit this long (default 60 s) */
    long low_speed_limit;    /* bytes/s (default 1024) */
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
/* Appends an entry (key copied). 0 or UV_ENOMEM (l unchanged). */
int qs_storage_list_add(struct qs_storage_list *l, const char *key, uint64_t size, int64_t mtime);
/* Drops the entries from index n on (e.g. those a failed page added). */
void qs_storage_list_truncate(struct qs_storage_list *l, size_t n);

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
/* Appends an upload (strings copied). 0 or UV_ENOMEM (u unchanged). */
int qs_storage_uploads_add(struct qs_storage_uploads *u, const char *key, const char *upload_id,
                           int64_t initiated);
/* Drops the uploads from index n on. */
void qs_storage_uploads_truncate(struct qs_storage_uploads *u, size_t n);

#endif
