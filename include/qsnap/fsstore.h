/* file:// driver of the storage layer (use include/qsnap/storage.h).
 *
 * Objects are plain files under the root directory, at their key's path.
 * A put writes ".qsnap-tmp-XXXXXX" (a fixed-length name, whatever the key) in
 * the target directory, fsyncs it, moves it to NAME without ever replacing an
 * existing file (renameat2 RENAME_NOREPLACE, or link() + unlink() where the
 * file system cannot do that) and fsyncs the directory. An existing NAME
 * fails the put with UV_EEXIST; a put with QS_STORAGE_PUT_REPLACE moves the
 * temporary over it with rename() instead. Failures remove the temporary; when even that
 * fails (a file system turned read-only) an error is logged. User metadata
 * lives beside the object in ".NAME.meta" (JSON), written after the object.
 * Names beginning with '.' are never listed as objects; leftover
 * temporaries are reported as unfinished uploads under their own
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

#include "qsnap/storage_driver.h"

/* The file:// driver: opts->path (absolute) is the root. */
extern const struct qs_storage_driver qs_fsstore_driver;

#endif
