/* Backup manifests and object key naming.
 *
 * Pure module: no I/O. A backup of snapshot S of collection C consists of two
 * objects below the destination prefix (the storage layer adds the prefix;
 * every key here is relative to it):
 *
 *   C/S        the snapshot as streamed (C/S.gz when gzip-compressed)
 *   C/S.json   the manifest, written only after the object was verified
 *
 * and, once a restore drill has tested it, its drill result (drill.h):
 *
 *   C/S.drill.json
 *
 * A backup exists only once its manifest exists. Objects without a manifest
 * are incomplete, and so is a drill result without its manifest.
 *
 * Full-storage snapshots (QSNAP_MODE=full) live in the reserved directory
 * QS_MANIFEST_FULL_DIR (":full"). Qdrant forbids ':' in collection names, so
 * that directory can never collide with a collection; their manifests carry
 * ":full" in the `collection` field and "full" in `mode`.
 *
 * Snapshot names accepted by qsnap (qs_manifest_is_valid_snapshot_name) never
 * end in ".json", ".gz", ".tmp" or ".drill" and never start with ':', so the
 * key of a manifest, of a drill result, of a plain object and of a compressed
 * object can never be confused. Qdrant's own names ("C-PEERID-YYYY-MM-DD-HH-MM-SS.snapshot",
 * "full-snapshot-YYYY-MM-DD-HH-MM-SS.snapshot") always qualify.
 *
 * Key components never begin with '.' (the storage layer reserves those for
 * file:// temporaries and metadata). A collection or snapshot name that begins
 * with '.' (Qdrant allows ".hidden") is stored with QS_MANIFEST_DOT_ESCAPE
 * (':') in front: collection ".hidden" keeps its backups under
 * ":.hidden/:.hidden-PEERID-....snapshot". Qdrant forbids ':' in collection
 * names, so its snapshot names never contain one, and qsnap refuses snapshot
 * names that begin with ':': the escape is unambiguous, can never collide with
 * another collection or with ":full", and names without a leading '.' keep
 * the keys they always had.
 */
#ifndef QSNAP_MANIFEST_H
#define QSNAP_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/util.h"

/* Current manifest format. Parsing refuses larger values (QS_EPROTO): a newer
 * qsnap wrote them and this one must not misread (or prune) them. */
#define QS_MANIFEST_FORMAT 1

/* Reserved key directory (and manifest `collection` value) of full-storage
 * snapshots. */
#define QS_MANIFEST_FULL_DIR ":full"

/* Suffixes of manifests and compressed objects. */
#define QS_MANIFEST_SUFFIX ".json"
#define QS_MANIFEST_GZ_SUFFIX ".gz"
/* Suffix of a backup's drill result ("{c}/{snapshot}.drill.json"). */
#define QS_MANIFEST_DRILL_SUFFIX ".drill.json"

/* Escape put in front of a key component whose name begins with '.'. */
#define QS_MANIFEST_DOT_ESCAPE ':'

/* Longest collection name (in bytes) that can ever be backed up. Qdrant
 * names a snapshot "{name}-{peer id}-{YYYY-MM-DD-HH-MM-SS}.snapshot" (at least
 * 31 bytes more than the name) and builds it in a temporary file
 * "{snapshot}-arc-XXXXXX" (11 more), so a longer name gives a file name
 * beyond the usual 255-byte limit and no snapshot of it can exist. */
#define QS_COLLECTION_NAME_MAX 213

/* Upper bound of a relative key built by the helpers below
 * (escape + 213-byte collection + '/' + escape + 255-byte snapshot + ".drill.json"). */
#define QS_MANIFEST_KEY_MAX 1300

/* One manifest. All strings are owned by the struct (malloc'd) and freed by
 * qs_manifest_deinit(). A zeroed struct is a valid empty value for deinit. */
struct qs_manifest {
    int format;            /* QS_MANIFEST_FORMAT */
    char *collection;      /* collection name, or QS_MANIFEST_FULL_DIR in full mode */
    char *snapshot;        /* snapshot name as Qdrant produced it */
    int64_t created;       /* snapshot creation time, UTC seconds; JSON: RFC 3339 "...Z"
                              (parse also accepts "+00:00" or no zone, read as UTC) */
    uint64_t size;         /* snapshot bytes as produced by Qdrant */
    char sha256[65];       /* SHA-256 of the snapshot as produced by Qdrant, lowercase hex */
    int compression_level; /* 0 = "none", 1..9 = "gzip" at that zlib level */
    uint64_t stored_size;  /* bytes of the stored object */
    char *object;          /* object key relative to the destination prefix */
    char *qdrant_version;  /* Qdrant version string, e.g. "1.13.2" */
    int64_t points_count;  /* points at backup time; -1 = absent (full mode only) */
    char *vectors;         /* vector config: JSON object text (re-rendered compactly by
                              parse and to_json); NULL = absent (full mode only) */
    char *qsnap_version;   /* version of qsnap that wrote the manifest */
    enum qs_mode mode;     /* QS_MODE_COLLECTIONS or QS_MODE_FULL */
};

/* Frees the strings of m (borrowed; may be NULL) and zeroes it. */
void qs_manifest_deinit(struct qs_manifest *m);

/* Checks every rule that qs_manifest_parse() enforces on a filled struct
 * (m and err borrowed). Returns 0, or QS_EINVAL with err->msg naming the field. */
int qs_manifest_validate(const struct qs_manifest *m, struct qs_error *err);

/* Appends the manifest as pretty-printed JSON (two-space indent, fixed key
 * order, trailing newline) to out. m borrowed; out borrowed (caller owns and
 * frees it with qs_buf_free). Validates first: returns 0, QS_EINVAL for an
 * invalid manifest (out unchanged) or UV_ENOMEM.
 *
 * Key order: format, collection, snapshot, mode, created, size, sha256,
 * compression, compression_level (gzip only), stored_size, object,
 * qdrant_version, points_count, vectors (absent when unknown in full mode),
 * qsnap_version. */
int qs_manifest_to_json(const struct qs_manifest *m, struct qs_buf *out);

/* Parses and strictly validates a manifest from json (borrowed, len bytes, no
 * NUL needed). On success fills *out (borrowed; caller frees its contents with
 * qs_manifest_deinit) and returns 0. On failure *out is zeroed and the result
 * is QS_EINVAL (malformed or invalid; err->msg names the field, e.g.
 * "manifest field \"sha256\": must be 64 lowercase hex characters"),
 * QS_EPROTO (format newer than QS_MANIFEST_FORMAT) or UV_ENOMEM.
 * Unknown fields are ignored. err borrowed, may be NULL.
 *
 * Callers that fail to parse a manifest must neither treat the backup as
 * incomplete nor delete it: leave it alone and report it. */
int qs_manifest_parse(const char *json, size_t len, struct qs_manifest *out, struct qs_error *err);

/* The collection-name rule, the one used everywhere (configuration, HTTP API,
 * keys, manifests): a name qsnap accepts is a Qdrant collection name that can
 * be backed up. Valid UTF-8, 1 to QS_COLLECTION_NAME_MAX bytes, none of
 * < > : " / \\ | ? * (forbidden by Qdrant), no control characters (0x00-0x1F,
 * 0x7F: they cannot be part of an object key), not "." or "..". A leading '.'
 * is fine. name borrowed (may be NULL). Returns 0, or QS_EINVAL with the
 * reason written into why (borrowed, cap bytes, may be NULL), phrased to
 * follow the name: "must not contain ':'", "is not valid UTF-8", ... */
int qs_manifest_check_collection_name(const char *name, char *why, size_t cap);

/* The same check, with the message every front end shows after naming
 * where the name came from ("QSNAP_COLLECTIONS: ", "query parameter
 * 'collection': ", "-c: "): "collection name '<name>' <reason>", the name
 * made printable and bounded (util.h qs_printable). Returns 0 (msg untouched)
 * or QS_EINVAL with msg (borrowed, cap bytes) written. */
int qs_manifest_collection_name_error(const char *name, char *msg, size_t cap);

/* 1 when qs_manifest_check_collection_name() accepts name, else 0. */
int qs_manifest_is_valid_collection_name(const char *name);

/* 1 when name (borrowed) is a snapshot name qsnap can store: 1-255 bytes, no
 * '/', '\\' or control characters, not "." or "..", not starting with ':'
 * (the key escape), not ending in ".json", ".gz", ".tmp" or ".drill". Else 0. */
int qs_manifest_is_valid_snapshot_name(const char *name);

/* Writes the key prefix "{collection}/" (escaped as described at the top)
 * under which every key of collection (a valid collection name or
 * QS_MANIFEST_FULL_DIR) lives into out (borrowed, cap bytes). Returns 0,
 * QS_EINVAL or QS_ETOOBIG (out then holds ""). */
int qs_manifest_key_prefix(const char *collection, char *out, size_t cap);

/* Writes the object key "{collection}/{snapshot}" (+ ".gz" when compressed;
 * components escaped as described at the top) into out (borrowed, cap bytes, NUL-terminated).
 * collection is a valid collection name or QS_MANIFEST_FULL_DIR. All strings borrowed. Returns 0,
 * QS_EINVAL (invalid collection or snapshot name) or QS_ETOOBIG (cap too small; out then holds "").
 */
int qs_manifest_object_key(const char *collection, const char *snapshot, int compressed, char *out,
                           size_t cap);

/* Writes the manifest key "{collection}/{snapshot}.json" into out. Same rules
 * and results as qs_manifest_object_key(). */
int qs_manifest_key(const char *collection, const char *snapshot, char *out, size_t cap);

/* Writes the drill result key "{collection}/{snapshot}.drill.json" into out.
 * Same rules and results as qs_manifest_object_key(). */
int qs_manifest_drill_key(const char *collection, const char *snapshot, char *out, size_t cap);

/* ---- classifying a destination listing ----------------------------------- */

/* One listed key (all borrowed from the caller's listing). */
struct qs_listed_key {
    const char *key;       /* relative to the destination prefix */
    uint64_t size;         /* object bytes */
    int64_t last_modified; /* UTC seconds */
};

/* A manifest key with its object. Strings owned by the listing. */
struct qs_listed_backup {
    char *collection;      /* collection name (unescaped) or QS_MANIFEST_FULL_DIR */
    char *snapshot;        /* snapshot name (unescaped) */
    char *manifest_key;    /* "{c}/{snapshot}.json" */
    char *object_key;      /* "{c}/{snapshot}" or "{c}/{snapshot}.gz"; NULL for orphans */
    uint64_t object_size;  /* 0 for orphans */
    int64_t last_modified; /* of the manifest */
    int compressed;        /* object key ends in ".gz" */
    char *alt_object_key;  /* the other of "{c}/{snapshot}" and "{c}/{snapshot}.gz" when both
                              exist (the manifest's `object` tells which belongs to the
                              backup), else NULL */
    char *drill_key;       /* "{c}/{snapshot}.drill.json" when listed, else NULL */
};

/* An object that may be a backup object but has no manifest. Strings owned. */
struct qs_listed_object {
    char *collection;
    char *key;
    uint64_t size;
    int64_t last_modified;
};

/* Result of qs_manifest_classify(). Arrays and strings owned; free with
 * qs_manifest_listing_deinit(). Arrays are sorted by key. */
struct qs_manifest_listing {
    struct qs_listed_backup *complete; /* manifest and object present */
    size_t ncomplete;
    struct qs_listed_object *incomplete; /* "{c}/{name}.snapshot[.gz]" and
                                            "{c}/{name}.drill.json" without manifest */
    size_t nincomplete;
    struct qs_listed_backup *orphans; /* manifest without object (should not happen) */
    size_t norphans;
    size_t nignored; /* temporary, hidden, nested or otherwise unknown keys */
};

/* Groups a listing (keys borrowed, n entries) into complete backups,
 * incomplete objects and orphan manifests. Keys that are not exactly
 * "{dir}/{name}" with a valid directory (collection name, escaped as described
 * at the top, or ":full"), hidden names (leading '.'), "*.tmp" names and anything not
 * recognisable as a manifest, drill result or snapshot object are ignored and only counted.
 * A drill result "{c}/{S}.drill.json" belongs to the manifest "{c}/{S}.json"
 * (complete or orphan: drill_key); without that manifest it is incomplete.
 * Only names ending in ".snapshot" or ".snapshot.gz", and drill results, are
 * reported as incomplete, so nothing foreign under the prefix is ever offered
 * for deletion. When both "S" and "S.gz" exist next to "S.json", the plain one is
 * object_key, the other alt_object_key, and it is also counted as ignored. Duplicate
 * keys are ignored. out borrowed (filled; caller deinits). Returns 0 or UV_ENOMEM
 * (out then empty). */
int qs_manifest_classify(const struct qs_listed_key *keys, size_t n,
                         struct qs_manifest_listing *out);

/* Frees everything in l (borrowed; may be NULL) and zeroes it. */
void qs_manifest_listing_deinit(struct qs_manifest_listing *l);

#endif
