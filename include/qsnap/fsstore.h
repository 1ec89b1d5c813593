/* file:// backend of the storage layer (use include/qsnap/storage.h).
 *
 * Objects are plain files under the root directory, at their key's path.
 * A put writes ".qsnap-tmp-XXXXXX" (a fixed-length name, whatever the key) in
 * the target directory, fsyncs it, moves it to NAME without ever replacing an
 * existing file (renameat2 RENAME_NOREPLACE, or link() + unlink() where the
 * file system cannot do that) and fsyncs the directory. An existing NAME
 * fails the put with UV_EEXIST. Failures remove the temporary; when even that
 * fails (a file system turned read-only) an error is logged. User metadata
 * lives beside the object in ".NAME.meta" (JSON), written after the object.
 * Names beginning with '.' are never listed as objects; leftover
 * temporaries are reported by qs_fsstore_list_uploads() under their own
 * path ("c/.qsnap-tmp-XXXXXX"; older ".NAME.qsnap-tmp-XXXXXX" ones as
 * "c/NAME").
 *
 * The root must exist: when it is missing (not mounted), reads, listings and
 * puts fail with UV_ENOENT naming the destination instead of reporting "no
 * such object" or an empty listing. A missing directory below the root is
 * simply empty. Every function blocks; call from worker threads only.
 */
#ifndef QSNAP_FSSTORE_H
#define QSNAP_FSSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/storage.h"

struct qs_fsstore;
struct qs_fsstore_put;

/* root (borrowed, copied): an existing absolute directory. */
int qs_fsstore_new(const char *root, struct qs_fsstore **out, struct qs_error *err);
void qs_fsstore_free(struct qs_fsstore *fs);
int qs_fsstore_probe(struct qs_fsstore *fs, struct qs_error *err);

int qs_fsstore_put_begin(struct qs_fsstore *fs, const char *key, int64_t size,
                         const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                         struct qs_fsstore_put **out, struct qs_error *err);
int qs_fsstore_put_write(struct qs_fsstore_put *put, const void *data, size_t len,
                         struct qs_error *err);
/* Commits and frees put; on error the temporary is removed. */
int qs_fsstore_put_finish(struct qs_fsstore_put *put, struct qs_error *err);
void qs_fsstore_put_abort(struct qs_fsstore_put *put);

int qs_fsstore_get(struct qs_fsstore *fs, const char *key, qs_sink_fn sink, void *ud,
                   struct qs_cancel *cancel, struct qs_error *err);
int qs_fsstore_head(struct qs_fsstore *fs, const char *key, struct qs_storage_stat *out,
                    struct qs_error *err);
int qs_fsstore_list(struct qs_fsstore *fs, const char *prefix, struct qs_storage_list *out,
                    struct qs_error *err);
int qs_fsstore_delete(struct qs_fsstore *fs, const char *key, struct qs_error *err);
int qs_fsstore_list_uploads(struct qs_fsstore *fs, const char *prefix,
                            struct qs_storage_uploads *out, struct qs_error *err);
int qs_fsstore_abort_upload(struct qs_fsstore *fs, const char *key, const char *upload_id,
                            struct qs_error *err);

#endif
