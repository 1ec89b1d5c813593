/* Qdrant REST client: collections, collection and full-storage snapshots
 * (create, list, streaming download, delete, streaming multipart upload),
 * readiness and version probes.
 *
 * Every call is BLOCKING (one request on the shared HTTP client, httpc.h,
 * with a handle of its own) and must run on a worker thread, never on the
 * libuv loop thread. A struct qs_qdrant is immutable after qs_qdrant_new(),
 * so one client may be used from several worker threads at once.
 *
 * Errors: the functions return 0 or a negative code and fill err (borrowed,
 * may be NULL), classified by the HTTP client:
 *   - the peer answered a non-2xx status: err->code QS_ENOTFOUND (404) or
 *     QS_EHTTP (anything else), err->http_status set, err->msg like
 *     "create snapshot of collection 'c': HTTP 404: Not found: Collection
 *     `c` doesn't exist!" with Qdrant's own message taken from the JSON
 *     envelope {"status":{"error":...}} or from a text body;
 *   - connection, DNS, timeout, stall, cut transfer: QS_ETRANSPORT;
 *   - a 2xx answer that cannot be parsed, a compressed download, or a
 *     download whose length differs from Content-Length: QS_EPROTO;
 *   - cancellation (struct qs_cancel): QS_ECANCELED;
 *   - a sink or source callback that returned a negative code: that code;
 *     when the callback recorded its reason in the err of this call (as the
 *     backup's sink does through the storage put), that reason stays the
 *     cause: "download snapshot ...: writing the stream failed: s3 PUT ...:
 *     Connection reset by peer", with its classification.
 * err->retryable is set for 5xx, 408, 429 and transport failures other than
 * certificate problems (never for cancellation or other 4xx). The client
 * never retries by itself. Messages never contain the API key.
 *
 * Ownership: unless a comment says otherwise, every pointer parameter
 * (q, collection and snapshot names, output structs, err, cancel, callback
 * user data) is borrowed for the duration of the call only; nothing is
 * retained after a function returns. Collection and snapshot names are
 * percent-encoded in URLs, so any byte string is safe to pass.
 */
#ifndef QSNAP_QDRANT_H
#define QSNAP_QDRANT_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/error.h"
#include "qsnap/util.h"

struct qs_qdrant;

/* Client settings. Strings are borrowed for the call and copied. A timeout of
 * 0 selects the default shown; a negative value disables that limit. */
struct qs_qdrant_opts {
    const char *url;          /* "http[s]://host:port[/prefix]"; NULL = http://localhost:6333 */
    const char *api_key;      /* sent as the api-key header; NULL or "" = none */
    long connect_timeout_ms;  /* TCP/TLS connect (default 5000) */
    long request_timeout_ms;  /* whole short request: lists, info, delete (default 60000) */
    long snapshot_timeout_ms; /* create with wait=true, and upload incl. recovery (default 3 h) */
    long low_speed_time_s;    /* download/upload aborted after this long without a byte (60) */
    int expect_100;           /* nonzero: send "Expect: 100-continue" on uploads (default off) */
};

/* Creates a client. o is borrowed; *out is owned by the caller, free with
 * qs_qdrant_free(). Returns 0, QS_ECONFIG (bad URL or key; the message never
 * shows the key) or UV_ENOMEM. */
int qs_qdrant_new(const struct qs_qdrant_opts *o, struct qs_qdrant **out, struct qs_error *err);
/* A client of another Qdrant at url (borrowed, copied) with like's API key,
 * timeouts and settings (like borrowed): one client per peer of a cluster.
 * Same results as qs_qdrant_new(); an empty url is QS_ECONFIG. */
int qs_qdrant_new_like(const struct qs_qdrant *like, const char *url, struct qs_qdrant **out,
                       struct qs_error *err);
/* Frees q (owned; NULL is fine). */
void qs_qdrant_free(struct qs_qdrant *q);
/* Base URL without trailing slash (borrowed from q, valid until free). */
const char *qs_qdrant_url(const struct qs_qdrant *q);

/* One snapshot as Qdrant describes it (SnapshotDescription). */
struct qs_snapshot_info {
    char name[300];
    int64_t creation_time; /* seconds since the epoch (UTC), -1 when Qdrant sent null */
    uint64_t size;
    char checksum[65]; /* lower-case hex SHA-256, "" when Qdrant sent none */
};

/* Collection names. *names is owned by the caller (array and strings), free
 * with qs_qdrant_strv_free(*names, *n). Order is Qdrant's (arbitrary). */
int qs_qdrant_list_collections(struct qs_qdrant *q, char ***names, size_t *n, struct qs_error *err);
/* Frees a string vector of n entries (owned; NULL is fine). */
void qs_qdrant_strv_free(char **v, size_t n);

struct qs_collection_info {
    uint64_t points_count;
    char status[16];             /* "green", "yellow", "grey", "red" */
    char *vectors_json;          /* owned: compact JSON of config.params.vectors, NULL if absent */
    char *config_json;           /* owned: compact JSON of config, NULL if absent */
    char *payload_schema_json;   /* owned: compact JSON of payload_schema, NULL if absent */
    char sharding_method[16];    /* config.params.sharding_method, "" when omitted (auto) */
    uint32_t shard_number;       /* config.params.shard_number, 1 when omitted */
    uint32_t replication_factor; /* config.params.replication_factor, 1 when omitted */
};

/* GET /collections/{collection}. collection borrowed; out (borrowed) is
 * filled on success and must then be released with qs_collection_info_deinit(). */
int qs_qdrant_collection_info(struct qs_qdrant *q, const char *collection,
                              struct qs_collection_info *out, struct qs_error *err);
void qs_collection_info_deinit(struct qs_collection_info *ci);

/* POST /collections/{collection}/snapshots?wait=true, or POST /snapshots?wait=true
 * when collection is NULL (full-storage snapshot). Bounded by
 * snapshot_timeout_ms. out (borrowed) receives the new snapshot. */
int qs_qdrant_create_snapshot(struct qs_qdrant *q, const char *collection,
                              struct qs_snapshot_info *out, struct qs_error *err);

/* Lists the snapshots of collection (NULL: full-storage snapshots). *out is
 * owned by the caller (free()); *n entries, in Qdrant's (unsorted) order. */
int qs_qdrant_list_snapshots(struct qs_qdrant *q, const char *collection,
                             struct qs_snapshot_info **out, size_t *n, struct qs_error *err);

/* Streams a snapshot into sink (called on this thread with borrowed chunks).
 * Never asks for compression; hashes SHA-256 while streaming. A transfer that
 * ends before Content-Length bytes, or differs from it, is an error, never a
 * short success. cancel (borrowed, may be NULL) aborts with QS_ECANCELED. On
 * success *size_out (may be NULL) gets the byte count and sha256_out (may be
 * NULL, else 65 bytes) the lower-case hex digest. */
int qs_qdrant_download_snapshot(struct qs_qdrant *q, const char *collection, const char *name,
                                qs_sink_fn sink, void *ud, struct qs_cancel *cancel,
                                uint64_t *size_out, char *sha256_out, struct qs_error *err);

/* DELETE /collections/{collection}/snapshots/{name}?wait=true (or /snapshots/{name}). */
int qs_qdrant_delete_snapshot(struct qs_qdrant *q, const char *collection, const char *name,
                              struct qs_error *err);

/* POST /collections/{collection}/snapshots/upload?wait=true[&priority=][&checksum=]
 * as multipart/form-data with one part "snapshot" (filename = filename),
 * streamed from src without staging. length is the exact byte count src will
 * produce (Content-Length is computed), or -1 when unknown (chunked transfer).
 * A source that produces a different count than length is an error
 * (QS_EPROTO). checksum: 64 hex chars or NULL; priority: "snapshot",
 * "replica", "no_sync" or NULL (Qdrant's default). All strings borrowed. The
 * whole request, including Qdrant's recovery, is bounded by
 * snapshot_timeout_ms; sending stalls after low_speed_time_s. */
int qs_qdrant_upload_snapshot(struct qs_qdrant *q, const char *collection, const char *filename,
                              qs_source_fn src, void *ud, int64_t length, const char *checksum,
                              const char *priority, struct qs_cancel *cancel, struct qs_error *err);

/* GET /collections/{collection}/shards/{shard_id}/snapshot (Qdrant 1.12 and
 * later): a tar of one shard that Qdrant builds while it sends it, without
 * writing a snapshot file, streamed into sink (called on this thread with
 * borrowed chunks). Never asks for compression; hashes SHA-256 and checks
 * the tar's structure (tarcheck.h) while streaming: a stream that is not a
 * tar archive fails at its first bad header (QS_EPROTO, the sink's code
 * path), and one that ends before the end of the archive, which is how
 * Qdrant reports a failure after the answer began (HTTP 200 and a cleanly
 * ended body), fails with QS_EPROTO, marked retryable. Only a complete
 * archive is a success: then *size_out (may be NULL) holds its bytes and
 * sha256_out (may be NULL, else 65 bytes) the lower-case hex digest. The
 * client's URL names the peer streamed from: a cluster backup uses one
 * client per peer. */
int qs_qdrant_stream_shard(struct qs_qdrant *q, const char *collection, uint32_t shard_id,
                           qs_sink_fn sink, void *ud, struct qs_cancel *cancel, uint64_t *size_out,
                           char *sha256_out, struct qs_error *err);

/* POST /collections/{collection}/shards/{shard_id}/snapshots/upload
 * ?wait=true[&priority=][&checksum=]: restores one shard of an existing
 * collection from a shard snapshot, streamed from src as for
 * qs_qdrant_upload_snapshot() (same arguments and limits). Qdrant answers
 * result null on success. */
int qs_qdrant_upload_shard(struct qs_qdrant *q, const char *collection, uint32_t shard_id,
                           const char *filename, qs_source_fn src, void *ud, int64_t length,
                           const char *checksum, const char *priority, struct qs_cancel *cancel,
                           struct qs_error *err);

/* PUT /collections/{collection} with body_json (borrowed: the flat
 * CreateCollection object, e.g. {"vectors":{...},"shard_number":3,
 * "optimizers_config":{...}}). An existing collection is QS_EHTTP with
 * status 409. */
int qs_qdrant_create_collection(struct qs_qdrant *q, const char *collection, const char *body_json,
                                struct qs_error *err);

/* PUT /collections/{collection}/index?wait=true with {"field_name": field,
 * "field_schema": schema}: schema_json (borrowed) is the JSON of the schema,
 * a string such as "\"keyword\"" or an object with "type". Returns once
 * Qdrant reports the operation completed; bounded by snapshot_timeout_ms. */
int qs_qdrant_create_index(struct qs_qdrant *q, const char *collection, const char *field,
                           const char *schema_json, struct qs_error *err);

/* GET /collections/{collection}/aliases: the names of the aliases that point
 * at collection, sorted. *names is owned by the caller (free with
 * qs_qdrant_strv_free(*names, *n)). A missing collection has none. */
int qs_qdrant_collection_aliases(struct qs_qdrant *q, const char *collection, char ***names,
                                 size_t *n, struct qs_error *err);

/* POST /collections/aliases: points each of aliases (borrowed, n names) at
 * collection in one request of create_alias actions (an alias that exists
 * is re-pointed). n == 0 sends nothing. */
int qs_qdrant_create_aliases(struct qs_qdrant *q, const char *collection, char *const *aliases,
                             size_t n, struct qs_error *err);

/* DELETE /collections/{collection} (restore drills). */
int qs_qdrant_delete_collection(struct qs_qdrant *q, const char *collection, struct qs_error *err);

/* GET /readyz: 0 when Qdrant answers 200. */
int qs_qdrant_probe(struct qs_qdrant *q, struct qs_error *err);

/* GET / -> "version" (e.g. "1.13.2") into out (borrowed, cap bytes). */
int qs_qdrant_version(struct qs_qdrant *q, char *out, size_t cap, struct qs_error *err);

/* ---- pure helpers (no I/O) ---------------------------------------------- */

/* Parses a snapshot file name. Collection snapshots are
 * "{collection}-{peer_id}-YYYY-MM-DD-HH-MM-SS.snapshot" (the collection may
 * contain dashes: the timestamp and peer id are read from the right); full
 * snapshots are "full-snapshot-YYYY-MM-DD-HH-MM-SS.snapshot" (collection "",
 * peer id 0). Outputs are borrowed and may be NULL (collection with cap 0).
 * Returns 0, QS_EINVAL when name does not follow either pattern, or
 * QS_ETOOBIG when the collection does not fit in cap. */
int qs_snapshot_name_parse(const char *name, char *collection, size_t cap, uint64_t *peer_id,
                           int64_t *ts);

/* Sorts v (borrowed, n entries) newest first by the timestamp in the name,
 * falling back to creation_time for names that do not parse; ties by name. */
void qs_snapshot_infos_sort_newest_first(struct qs_snapshot_info *v, size_t n);

/* What qs_qdrant_parse_answer() expects in the envelope's "result". */
enum qs_qdrant_answer {
    QS_QDRANT_ANSWER_SNAPSHOT = 0,    /* one SnapshotDescription (create) */
    QS_QDRANT_ANSWER_SNAPSHOTS = 1,   /* an array of them (list) */
    QS_QDRANT_ANSWER_COLLECTIONS = 2, /* {"collections": [{"name": ...}]} */
    QS_QDRANT_ANSWER_COLLECTION = 3,  /* collection info */
    QS_QDRANT_ANSWER_ERROR = 4,       /* an error body: message extraction only */
};

/* Parses a 200 answer body (borrowed, len bytes) exactly as the client does
 * and discards the result (exposed for tests and fuzzing). Returns 0,
 * QS_EPROTO or UV_ENOMEM with the reason in err (borrowed, may be NULL); for
 * QS_QDRANT_ANSWER_ERROR returns QS_EHTTP with the extracted message. */
int qs_qdrant_parse_answer(enum qs_qdrant_answer kind, const char *body, size_t len,
                           struct qs_error *err);

/* ---- raw answers (read by the cluster module, cluster.h) ------------------ */

/* GET /collections/{collection}{suffix}, or GET {suffix} when collection is
 * NULL; the collection is percent-encoded here, suffix (starting with '/')
 * is sent as it is. Bounded by request_timeout_ms. On a 200 answer returns
 * 0 with the whole body appended to body (borrowed, initialised by the
 * caller, who frees it); failures as for the other calls, an answer over
 * 16 MiB is QS_EPROTO. op (borrowed, NULL = "Qdrant request") names the
 * request in messages. */
int qs_qdrant_get_raw(struct qs_qdrant *q, const char *collection, const char *suffix,
                      const char *op, struct qs_buf *body, struct qs_error *err);

#endif
