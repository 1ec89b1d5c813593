/* Backup manifests and object key naming.
 *
 * Pure module: no I/O. Every key here is relative to the destination prefix
 * (the storage layer adds the prefix). A backup made with the collection
 * method (Qdrant's collection snapshot S of collection C) is two objects:
 *
 *   C/S        the snapshot as streamed (C/S.gz when gzip-compressed)
 *   C/S.json   the manifest, written only after the object was verified
 *
 * A backup made with the shards method (run R of collection C: every shard
 * streamed straight from Qdrant) is one object per shard and one manifest:
 *
 *   C/R/shard-N.snapshot   shard N's snapshot (C/R/shard-N.snapshot.gz gzipped)
 *   C/R.json               the manifest listing every shard object, written last
 *
 * and, once a restore drill has tested a backup, its drill result (drill.h):
 *
 *   C/S.drill.json (or C/R.drill.json)
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
 * "full-snapshot-YYYY-MM-DD-HH-MM-SS.snapshot") always qualify, and so do run
 * names (qs_manifest_run_name: "C-shards-YYYY-MM-DD-HH-MM-SS"), which never end
 * in ".snapshot": a run's directory C/R/ never shares its name with a
 * collection snapshot's object C/S.
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
 *
 * Manifest formats: version 1 (written by qsnap before the shards method)
 * holds one object's facts; version 2 adds the method, the shard objects, the
 * collection's configuration, payload schema and aliases, and, for a backup
 * of a Qdrant cluster, its topology (an optional addition: a reader that
 * ignores it still reads every object right). Both are read; new manifests
 * are version 2. docs/design.md describes every field.
 */
#ifndef QSNAP_MANIFEST_H
#define QSNAP_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/util.h"

/* Current manifest format, written by qsnap (field "format"). Parsing
 * accepts 1 and 2 and refuses larger values (QS_EPROTO): a newer qsnap wrote
 * them and this one must not misread (or prune) them. qsnap before version 2
 * refuses version 2 the same way. */
#define QS_MANIFEST_FORMAT 2
#define QS_MANIFEST_FORMAT_V1 1

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

/* Most shards a shards backup may list. */
#define QS_MANIFEST_MAX_SHARDS 65536

/* Most peers a cluster backup's topology may list. */
#define QS_MANIFEST_MAX_PEERS 4096

/* One shard object of a shards backup. Strings owned by the manifest. */
struct qs_manifest_shard {
    uint32_t id;          /* Qdrant's shard id */
    char *object;         /* "{c}/{run}/shard-{id}.snapshot[.gz]" (qs_manifest_shard_key) */
    uint64_t size;        /* bytes of the shard snapshot as Qdrant streamed it */
    char sha256[65];      /* their SHA-256, lowercase hex */
    uint64_t stored_size; /* bytes of the stored object */
    uint64_t peer_id;     /* cluster backups: the peer it was streamed from; 0 otherwise */
};

/* A peer of the cluster a backup was made in. */
struct qs_manifest_peer {
    uint64_t id; /* Qdrant's peer id (a u64, written as a decimal string) */
    char *uri;   /* owned: its P2P URI as GET /cluster reported it */
};

/* The topology of a cluster backup (shards method, Qdrant in cluster mode). */
struct qs_manifest_cluster {
    uint64_t peer_id;               /* the peer whose sidecar made the backup */
    struct qs_manifest_peer *peers; /* owned: ascending ids, npeers (1..QS_MANIFEST_MAX_PEERS) */
    size_t npeers;
    uint32_t shard_count;        /* shards of the collection (= nshards) */
    uint32_t replication_factor; /* the collection's replication factor (>= 1) */
};

/* One manifest. All strings are owned by the struct (malloc'd) and freed by
 * qs_manifest_deinit(). A zeroed struct is a valid empty value for deinit. */
struct qs_manifest {
    int format;            /* QS_MANIFEST_FORMAT, or QS_MANIFEST_FORMAT_V1 as read */
    char *collection;      /* collection name, or QS_MANIFEST_FULL_DIR in full mode */
    char *snapshot;        /* snapshot name as Qdrant produced it, or the shards run's name */
    int64_t created;       /* snapshot creation time, UTC seconds; JSON: RFC 3339 "...Z"
                              (parse also accepts "+00:00" or no zone, read as UTC) */
    uint64_t size;         /* snapshot bytes as produced by Qdrant (shards: the sum) */
    char sha256[65];       /* SHA-256 of the snapshot as produced by Qdrant, lowercase hex
                              ("" for shards: each shard has its own) */
    int compression_level; /* 0 = "none", 1..9 = "gzip" at that zlib level */
    uint64_t stored_size;  /* bytes of the stored object (shards: the sum) */
    char *object;          /* object key relative to the destination prefix (NULL for
                              shards: see shards) */
    char *qdrant_version;  /* Qdrant version string, e.g. "1.13.2" */
    int64_t points_count;  /* points at backup time; -1 = absent (full mode only) */
    char *vectors;         /* vector config: JSON object text (re-rendered compactly by
                              parse and to_json); NULL = absent (full mode only) */
    char *qsnap_version;   /* version of qsnap that wrote the manifest */
    enum qs_mode mode;     /* QS_MODE_COLLECTIONS or QS_MODE_FULL */
    /* Version 2 (all absent in version 1 and in full mode, except method). */
    enum qs_method method;   /* version 1: always QS_METHOD_COLLECTION */
    char *collection_config; /* the `config` object of GET /collections/{c}: JSON object text */
    char *payload_schema;    /* its `payload_schema`: JSON object text */
    int has_aliases;         /* 1 when aliases were recorded (version 2, collections mode) */
    char **aliases;          /* the aliases that pointed at the collection, sorted */
    size_t naliases;
    struct qs_manifest_shard *shards; /* shards method: ascending ids */
    size_t nshards;
    /* Cluster backups only (format 2, shards method; absent otherwise): the
     * topology at backup time. Every shard then names its peer_id, one of
     * cluster.peers. */
    int has_cluster;
    struct qs_manifest_cluster cluster;
};

/* Frees the strings of m (borrowed; may be NULL) and zeroes it. */
void qs_manifest_deinit(struct qs_manifest *m);

/* Checks every rule that qs_manifest_parse() enforces on a filled struct
 * (m and err borrowed). Returns 0, or QS_EINVAL with err->msg naming the field. */
int qs_manifest_validate(const struct qs_manifest *m, struct qs_error *err);

/* Appends the manifest as pretty-printed JSON (two-space indent, fixed key
 * order, trailing newline) to out, in the manifest's own format version (a
 * version 1 manifest renders exactly as qsnap wrote version 1). m borrowed;
 * out borrowed (caller owns and frees it with qs_buf_free). Validates first:
 * returns 0, QS_EINVAL for an invalid manifest (out unchanged) or UV_ENOMEM.
 *
 * Key order: format, collection, snapshot, mode, method (v2), created, size,
 * sha256 (not for shards), compression, compression_level (gzip only),
 * stored_size, object (not for shards), shards (shards only: id, object,
 * size, sha256, stored_size, and peer_id in a cluster backup, each),
 * qdrant_version, points_count, vectors (absent when unknown in full mode),
 * collection_config, payload_schema, aliases (v2, collections mode),
 * cluster (cluster backups: peer_id, peers [{id, uri}], shard_count,
 * replication_factor; peer ids as decimal strings), qsnap_version. */
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

/* Writes the key of shard shard_id of shards run `run` of collection:
 * "{collection}/{run}/shard-{id}.snapshot" (+ ".gz" when compressed;
 * components escaped as described at the top). Same rules and results as
 * qs_manifest_object_key(); collection must be a collection name. */
int qs_manifest_shard_key(const char *collection, const char *run, uint32_t shard_id,
                          int compressed, char *out, size_t cap);

/* Writes the key prefix "{collection}/{run}/" under which a shards run keeps
 * its shard objects. Same rules and results as qs_manifest_shard_key(). */
int qs_manifest_run_prefix(const char *collection, const char *run, char *out, size_t cap);

/* Writes the name of a shards run of collection (a valid collection name)
 * started at t (UTC seconds): "{collection}-shards-YYYY-MM-DD-HH-MM-SS", like
 * Qdrant's snapshot names unique to the second, and always a valid snapshot
 * name. Returns 0, QS_EINVAL or QS_ETOOBIG (out then holds ""). */
int qs_manifest_run_name(const char *collection, int64_t t, char *out, size_t cap);

/* ---- Qdrant versions --------------------------------------------------------- */

/* Whether a Qdrant running target_version (borrowed, e.g. "1.13.2") can load
 * a snapshot made by backup_version (borrowed): Qdrant restores snapshots of
 * the same or the previous minor version only, so the majors must be equal
 * and the target's minor the backup's or the one after it (a backup newer
 * than the target is refused too). Returns 0 when it can; QS_EINVAL when it
 * cannot, or when either version is not "MAJOR.MINOR[.PATCH...]", with why
 * (borrowed, cap bytes, may be NULL) naming both versions and what would be
 * accepted. */
int qs_manifest_check_versions(const char *backup_version, const char *target_version, char *why,
                               size_t cap);

/* ---- classifying a destination listing ----------------------------------- */

/* One listed key (all borrowed from the caller's listing). */
struct qs_listed_key {
    const char *key;       /* relative to the destination prefix */
    uint64_t size;         /* object bytes */
    int64_t last_modified; /* UTC seconds */
};

/* A manifest key with its object (or, for a shards run, its shard objects).
 * Strings owned by the listing. */
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
    char **shard_keys;     /* the shard objects listed under "{c}/{snapshot}/" (sorted) */
    uint64_t *shard_sizes; /* their sizes */
    size_t nshards;
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
    struct qs_listed_backup *complete; /* manifest and object (or shard objects) present */
    size_t ncomplete;
    struct qs_listed_object *incomplete; /* "{c}/{name}.snapshot[.gz]",
                                            "{c}/{run}/shard-N.snapshot[.gz]" and
                                            "{c}/{name}.drill.json" without manifest */
    size_t nincomplete;
    struct qs_listed_backup *orphans; /* manifest without object (should not happen) */
    size_t norphans;
    size_t nignored; /* temporary, hidden, nested or otherwise unknown keys */
};

/* Groups a listing (keys borrowed, n entries) into complete backups,
 * incomplete objects and orphan manifests. Keys that are not exactly
 * "{dir}/{name}" with a valid directory (collection name, escaped as described
 * at the top, or ":full") or a shard object "{dir}/{run}/shard-N.snapshot[.gz]"
 * (N without leading zeros), hidden names (leading '.'), "*.tmp" names and anything not
 * recognisable as a manifest, drill result, snapshot or shard object are ignored and only
 * counted. A manifest "{c}/{S}.json" is complete with its object "{c}/{S}[.gz]" or with
 * shard objects under "{c}/{S}/" (shard_keys; the catalog checks them against
 * the manifest), an orphan with neither; shard objects whose run has no
 * manifest are incomplete, each on its own.
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
