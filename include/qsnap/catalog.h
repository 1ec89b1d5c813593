/* The catalog: what the destination holds, read from its listing and its
 * manifests. Blocking (storage calls): worker
 * threads and CLI only.
 *
 * A backup exists only once its manifest exists and parses. Manifests that
 * cannot be read or parsed are counted and reported, never treated as
 * incomplete objects, so nothing is deleted because of them. */
#ifndef QSNAP_CATALOG_H
#define QSNAP_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/drill.h"
#include "qsnap/error.h"
#include "qsnap/manifest.h"
#include "qsnap/storage.h"

/* A complete backup (a shards backup only with every shard object its
 * manifest lists). Everything owned by the catalog. */
struct qs_catalog_backup {
    struct qs_manifest m;
    char *manifest_key;
    uint64_t object_size;   /* as listed (shards: the sum of the shard objects) */
    int64_t manifest_mtime; /* the manifest's LastModified: when the backup was written */
    char *drill_key;        /* its drill result "{c}/{S}.drill.json", NULL when none */
    /* With QS_CATALOG_DRILLS: 1 when drill holds the parsed drill result, -1
     * when the drill result could not be parsed (left in place), 0 otherwise. */
    int drill_state;
    struct qs_drill_result drill;
};

/* An object without manifest, or an open multipart upload. Owned. */
struct qs_catalog_loose {
    char *collection;
    char *key;
    char *upload_id; /* uploads only */
    uint64_t size;
    int64_t time; /* last modified, or initiated for uploads */
};

/* A manifest in a format newer than this qsnap reads. Owned. */
struct qs_catalog_newer {
    char *collection;
    char *manifest_key;
    char *reason; /* the parser's message, naming the format version */
};

struct qs_catalog {
    struct qs_catalog_backup *backups; /* newest first (created, then name) */
    size_t nbackups;
    struct qs_catalog_loose *incomplete;
    size_t nincomplete;
    struct qs_catalog_loose *uploads; /* only when loaded with uploads */
    size_t nuploads;
    size_t unreadable; /* manifests that could not be read or parsed (newer included) */
    struct qs_catalog_newer *newer; /* manifests written by a newer qsnap */
    size_t nnewer;
};

/* Flags of qs_catalog_load(). */
enum {
    QS_CATALOG_UPLOADS = 1, /* also list open multipart uploads (or file:// temporaries) */
    QS_CATALOG_DRILLS = 2,  /* also read each backup's drill result */
};

/* Loads the catalog of one collection (borrowed; NULL = all) from storage
 * (borrowed). flags: QS_CATALOG_* (0 = backups and incomplete objects only).
 * out borrowed: filled on success; on error left empty (deinit is harmless,
 * nothing to free). */
int qs_catalog_load(struct qs_storage *storage, const char *collection, int flags,
                    struct qs_catalog *out, struct qs_error *err);
void qs_catalog_deinit(struct qs_catalog *cat);

/* The newest backup of collection, or the one whose snapshot name is
 * `snapshot` ("latest" or NULL = newest). Borrowed from cat, NULL if none. */
const struct qs_catalog_backup *qs_catalog_find(const struct qs_catalog *cat,
                                                const char *collection, const char *snapshot);

/* The backup "latest" means for collection (borrowed): *out (borrowed from
 * cat) is the newest backup. Returns 0, QS_ENOTFOUND when there is none, or
 * QS_EPROTO when a manifest of collection is in a newer format than this
 * qsnap reads (it may hold the newest backup; err names the manifest and its
 * format version). err borrowed, may be NULL. */
int qs_catalog_latest(const struct qs_catalog *cat, const char *collection,
                      const struct qs_catalog_backup **out, struct qs_error *err);

/* Moves the manifest of the backup "latest" means for collection (as
 * qs_catalog_latest() picks it) out of cat into *out (borrowed; the caller
 * owns what it then holds: qs_manifest_deinit). The catalog's copy is left
 * empty (deinit still frees the rest). Returns 0, or an error as
 * qs_catalog_latest() with nothing moved. */
int qs_catalog_take_latest(struct qs_catalog *cat, const char *collection, struct qs_manifest *out,
                           struct qs_error *err);

/* Appends {"backups":[...]} (newest first; each: collection, snapshot,
 * created, size, sha256 (null for shards), compression, stored_size, object
 * (null for shards), format, method, shards (shards only: id, object, size,
 * sha256, stored_size), aliases (null for format 1), points_count,
 * qdrant_version, mode, drill) to out. drill is the backup's latest drill
 * result {"result": "success"|"failure", "finished", "duration_s",
 * "points_expected", "points_restored", "error"}, or null when the backup was
 * never drilled (or the catalog was loaded without QS_CATALOG_DRILLS, or its
 * drill result is unreadable). */
int qs_catalog_to_json(const struct qs_catalog *cat, struct qs_buf *out);

#endif
