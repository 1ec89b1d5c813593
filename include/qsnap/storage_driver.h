/* The contract between the storage layer (storage.h) and its drivers: one
 * table of functions per backend (s3.h: qs_s3_driver, fsstore.h:
 * qs_fsstore_driver), filled in by the backend. The storage layer checks
 * keys, sizes and arguments, throttles puts and keeps each driver's
 * description; a driver only does its backend's I/O. Drivers build on this
 * header and storage_types.h only, never on storage.h, and never call back
 * into the storage layer.
 *
 * Every function blocks (worker threads only). Arguments reaching a driver
 * are valid: keys passed qs_storage_key_check(), sizes are -1 or >= 0.
 * Pointer arguments are borrowed for the call unless stated; err may be
 * NULL. A call that fails takes nothing over and leaves no object behind.
 */
#ifndef QSNAP_STORAGE_DRIVER_H
#define QSNAP_STORAGE_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/error.h"
#include "qsnap/storage_types.h"
#include "qsnap/util.h"

/* A driver's instance. The driver's own struct starts with this member. */
struct qs_storage_be {
    const struct qs_storage_driver *driver;
};

/* Put flags. */
enum {
    /* Replace an existing object instead of failing with UV_EEXIST: for
     * records that are not backups (a restore drill's result), never for
     * snapshot objects or manifests. The replacement is atomic: a reader
     * sees the old object or the new one. */
    QS_STORAGE_PUT_REPLACE = 1,
};

/* One put in progress. The put's own struct starts with this member; ops
 * are those of the put engine the driver chose for it (S3 has two). */
struct qs_storage_be_put {
    const struct qs_storage_put_ops *ops;
};

struct qs_storage_put_ops {
    /* Takes len bytes (borrowed). After an error the put is dead: abort. */
    int (*write)(struct qs_storage_be_put *put, const void *data, size_t len, struct qs_error *err);
    /* Commits what was written and frees put, also on error (then nothing
     * is left under the key). */
    int (*finish)(struct qs_storage_be_put *put, struct qs_error *err);
    /* Abandons the put and frees it. */
    void (*abort)(struct qs_storage_be_put *put);
};

struct qs_storage_driver {
    const char *scheme; /* "s3", "file" */
    /* Creates an instance from opts (copied). No network I/O. */
    int (*open)(const struct qs_storage_opts *opts, struct qs_storage_be **out,
                struct qs_error *err);
    void (*close)(struct qs_storage_be *be); /* frees be; no put in progress */
    /* "s3://bucket/prefix", "file:///path" into out (cap bytes). */
    void (*describe)(const struct qs_storage_be *be, char *out, size_t cap);
    uint64_t (*retries)(const struct qs_storage_be *be); /* retried requests so far */
    int (*probe)(struct qs_storage_be *be, struct qs_error *err);
    /* Semantics of qs_storage_put_begin() (flags: QS_STORAGE_PUT_*). *out
     * is released by its ops' finish or abort. */
    int (*put_begin)(struct qs_storage_be *be, const char *key, int64_t size,
                     const struct qs_storage_meta *meta, unsigned flags, struct qs_cancel *cancel,
                     struct qs_storage_be_put **out, struct qs_error *err);
    int (*get)(struct qs_storage_be *be, const char *key, qs_sink_fn sink, void *ud,
               struct qs_cancel *cancel, struct qs_error *err);
    int (*head)(struct qs_storage_be *be, const char *key, struct qs_storage_stat *out,
                struct qs_error *err);
    /* Appends (unsorted) to out. */
    int (*list)(struct qs_storage_be *be, const char *prefix, struct qs_storage_list *out,
                struct qs_error *err);
    int (*delete)(struct qs_storage_be *be, const char *key, struct qs_error *err);
    int (*list_uploads)(struct qs_storage_be *be, const char *prefix,
                        struct qs_storage_uploads *out, struct qs_error *err);
    int (*abort_upload)(struct qs_storage_be *be, const char *key, const char *upload_id,
                        struct qs_error *err);
};

#endif
