#include "qsnap/manifest.h"

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Largest integer a JSON number (a double) holds exactly: 2^53. */
#define MAX_JSON_INT 9007199254740992.0
#define MAX_JSON_UINT 9007199254740992ULL
/* 9999-12-31T23:59:59Z: the last instant RFC 3339 with 4-digit years can name. */
#define MAX_CREATED 253402300799LL

/* ---- names and keys ------------------------------------------------------- */

/* Decodes one UTF-8 sequence at s; returns its length (1-4) or 0 when invalid
 * (overlong forms, surrogates and values above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

static void set_why(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t cap, const char *fmt, ...)
{
    if (why == NULL || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

int qs_manifest_check_collection_name(const char *name, char *why, size_t cap)
{
    if (why != NULL && cap > 0)
        why[0] = '\0';
    if (name == NULL || name[0] == '\0') {
        set_why(why, cap, "is empty");
        return QS_EINVAL;
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        set_why(why, cap, "must not be '.' or '..'");
        return QS_EINVAL;
    }
    const unsigned char *p = (const unsigned char *)name;
    while (*p != '\0') {
        uint32_t cp;
        size_t n = utf8_seq(p, &cp);
        if (n == 0) {
            set_why(why, cap, "is not valid UTF-8");
            return QS_EINVAL;
        }
        if (cp < 0x20 || cp == 0x7F) {
            set_why(why, cap, "contains a control character");
            return QS_EINVAL;
        }
        if (cp < 0x80 && strchr("<>:\"/\\|?*", (int)cp) != NULL) {
            set_why(why, cap, "must not contain '%c'", (char)cp);
            return QS_EINVAL;
        }
        p += n;
    }
    size_t len = (size_t)(p - (const unsigned char *)name);
    if (len > QS_COLLECTION_NAME_MAX) {
        set_why(why, cap,
                "is %zu bytes long, longer than %d bytes: Qdrant cannot name a snapshot of it "
                "within the 255-byte file-name limit",
                len, QS_COLLECTION_NAME_MAX);
        return QS_EINVAL;
    }
    return 0;
}

int qs_manifest_collection_name_error(const char *name, char *msg, size_t cap)
{
    char why[200], shown[80];
    int rc = qs_manifest_check_collection_name(name, why, sizeof(why));
    if (rc != 0 && msg != NULL && cap > 0)
        snprintf(msg, cap, "collection name '%s' %s", qs_printable(shown, sizeof(shown), name, 64),
                 why);
    return rc;
}

int qs_manifest_is_valid_collection_name(const char *name)
{
    return qs_manifest_check_collection_name(name, NULL, 0) == 0;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Snapshot-name check on a counted string (it may be a slice of a key). */
static int valid_snapshot_name_n(const char *name, size_t len)
{
    if (len == 0 || len > 255 || name[0] == QS_MANIFEST_DOT_ESCAPE)
        return 0;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7F || c == '/' || c == '\\')
            return 0;
    }
    if (ends_with(name, len, QS_MANIFEST_SUFFIX) || ends_with(name, len, QS_MANIFEST_GZ_SUFFIX) ||
        ends_with(name, len, ".tmp") || ends_with(name, len, ".drill"))
        return 0;
    return 1;
}

int qs_manifest_is_valid_snapshot_name(const char *name)
{
    if (name == NULL)
        return 0;
    return valid_snapshot_name_n(name, strlen(name));
}

static bool valid_dir(const char *dir)
{
    return strcmp(dir, QS_MANIFEST_FULL_DIR) == 0 || qs_manifest_is_valid_collection_name(dir);
}

/* The escape of a key component: ":" for names that begin with '.', else "". */
static const char *escape_of(const char *name)
{
    static const char esc[2] = {QS_MANIFEST_DOT_ESCAPE, '\0'};
    return name[0] == '.' ? esc : "";
}

static int build_key(const char *collection, const char *snapshot, const char *suffix, char *out,
                     size_t cap)
{
    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (collection == NULL || snapshot == NULL || !valid_dir(collection) ||
        !qs_manifest_is_valid_snapshot_name(snapshot))
        return QS_EINVAL;
    if (out == NULL)
        return QS_ETOOBIG;
    int n = snprintf(out, cap, "%s%s/%s%s%s", escape_of(collection), collection,
                     escape_of(snapshot), snapshot, suffix);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return QS_ETOOBIG;
    }
    return 0;
}

int qs_manifest_key_prefix(const char *collection, char *out, size_t cap)
{
    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (collection == NULL || !valid_dir(collection))
        return QS_EINVAL;
    if (out == NULL)
        return QS_ETOOBIG;
    int n = snprintf(out, cap, "%s%s/", escape_of(collection), collection);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return QS_ETOOBIG;
    }
    return 0;
}

int qs_manifest_object_key(const char *collection, const char *snapshot, int compressed, char *out,
                           size_t cap)
{
    return build_key(collection, snapshot, compressed ? QS_MANIFEST_GZ_SUFFIX : "", out, cap);
}

int qs_manifest_key(const char *collection, const char *snapshot, char *out, size_t cap)
{
    return build_key(collection, snapshot, QS_MANIFEST_SUFFIX, out, cap);
}

int qs_manifest_drill_key(const char *collection, const char *snapshot, char *out, size_t cap)
{
    return build_key(collection, snapshot, QS_MANIFEST_DRILL_SUFFIX, out, cap);
}

/* "{collection}/{run}/" + tail, for a collection (not ":full") and a run. */
static int build_run_key(const char *collection, const char *run, const char *tail, char *out,
                         size_t cap)
{
    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (collection == NULL || run == NULL || !qs_manifest_is_valid_collection_name(collection) ||
        !qs_manifest_is_valid_snapshot_name(run))
        return QS_EINVAL;
    if (out == NULL)
        return QS_ETOOBIG;
    int n = snprintf(out, cap, "%s%s/%s%s/%s", escape_of(collection), collection, escape_of(run),
                     run, tail);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return QS_ETOOBIG;
    }
    return 0;
}

int qs_manifest_shard_key(const char *collection, const char *run, uint32_t shard_id,
                          int compressed, char *out, size_t cap)
{
    char tail[48];
    snprintf(tail, sizeof(tail), "shard-%" PRIu32 ".snapshot%s", shard_id,
             compressed ? QS_MANIFEST_GZ_SUFFIX : "");
    return build_run_key(collection, run, tail, out, cap);
}

int qs_manifest_run_prefix(const char *collection, const char *run, char *out, size_t cap)
{
    return build_run_key(collection, run, "", out, cap);
}

int qs_manifest_run_name(const char *collection, int64_t t, char *out, size_t cap)
{
    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (collection == NULL || !qs_manifest_is_valid_collection_name(collection) || t < 0 ||
        t > MAX_CREATED)
        return QS_EINVAL;
    if (out == NULL)
        return QS_ETOOBIG;
    char ts[21];
    qs_time_rfc3339(t, ts); /* YYYY-MM-DDTHH:MM:SSZ */
    int n = snprintf(out, cap, "%s-shards-%.10s-%.2s-%.2s-%.2s", collection, ts, ts + 11, ts + 14,
                     ts + 17);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return QS_ETOOBIG;
    }
    return 0;
}

/* ---- Qdrant versions ----------------------------------------------------------- */

/* "MAJOR.MINOR" followed by nothing, '.', '-' or '+'. */
static int parse_major_minor(const char *v, unsigned long *major, unsigned long *minor)
{
    if (v == NULL)
        return -1;
    const char *p = v;
    unsigned long x[2];
    for (int i = 0; i < 2; i++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned long n = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (n > 100000)
                return -1;
            n = n * 10 + (unsigned long)(*p - '0');
        }
        x[i] = n;
        if (i == 0) {
            if (*p != '.')
                return -1;
            p++;
        }
    }
    if (*p != '\0' && *p != '.' && *p != '-' && *p != '+')
        return -1;
    *major = x[0];
    *minor = x[1];
    return 0;
}

int qs_manifest_check_versions(const char *backup_version, const char *target_version, char *why,
                               size_t cap)
{
    char b[72], t[72];
    qs_printable(b, sizeof(b), backup_version, 64);
    qs_printable(t, sizeof(t), target_version, 64);
    unsigned long bmaj, bmin, tmaj, tmin;
    if (parse_major_minor(backup_version, &bmaj, &bmin) != 0) {
        set_why(why, cap,
                "the backup's Qdrant version '%s' is unknown, so whether Qdrant %s can load it "
                "cannot be checked",
                b, t);
        return QS_EINVAL;
    }
    if (parse_major_minor(target_version, &tmaj, &tmin) != 0) {
        set_why(why, cap,
                "the target Qdrant reports version '%s', so whether it can load a snapshot of "
                "Qdrant %s cannot be checked",
                t, b);
        return QS_EINVAL;
    }
    if (tmaj == bmaj && (tmin == bmin || tmin == bmin + 1))
        return 0;
    set_why(why, cap,
            "the backup was made by Qdrant %s and the target runs Qdrant %s, which cannot load "
            "it: Qdrant restores snapshots of the same or the previous minor version only "
            "(a %lu.%lu backup needs Qdrant %lu.%lu.x or %lu.%lu.x)",
            b, t, bmaj, bmin, bmaj, bmin, bmaj, bmin + 1);
    return QS_EINVAL;
}

/* ---- struct ---------------------------------------------------------------- */

void qs_manifest_deinit(struct qs_manifest *m)
{
    if (m == NULL)
        return;
    free(m->collection);
    free(m->snapshot);
    free(m->object);
    free(m->qdrant_version);
    free(m->vectors);
    free(m->qsnap_version);
    free(m->collection_config);
    free(m->payload_schema);
    for (size_t i = 0; i < m->naliases; i++)
        free(m->aliases[i]);
    free(m->aliases);
    for (size_t i = 0; i < m->nshards; i++)
        free(m->shards[i].object);
    free(m->shards);
    for (size_t i = 0; i < m->cluster.npeers; i++)
        free(m->cluster.peers[i].uri);
    free(m->cluster.peers);
    memset(m, 0, sizeof(*m));
}

static bool is_lower_sha256(const char *s)
{
    size_t i = 0;
    for (; s[i] != '\0'; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return i == 64;
}

static int field_error(struct qs_error *err, const char *field, const char *why)
{
    return qs_error_set(err, QS_EINVAL, "manifest field \"%s\": %s", field, why);
}

static bool json_object_text(const char *text)
{
    cJSON *v = NULL;
    qs_json_parse(text, strlen(text), &v, NULL);
    bool ok = cJSON_IsObject(v);
    cJSON_Delete(v);
    return ok;
}

/* An alias name as qsnap keeps it: 1 to 255 bytes of valid UTF-8 without
 * control characters (Qdrant checks the rest when it is re-created). */
static bool valid_alias(const char *a)
{
    const unsigned char *p = (const unsigned char *)a;
    while (*p != '\0') {
        uint32_t cp;
        size_t n = utf8_seq(p, &cp);
        if (n == 0 || cp < 0x20 || cp == 0x7F)
            return false;
        p += n;
    }
    size_t len = (size_t)(p - (const unsigned char *)a);
    return len > 0 && len <= 255;
}

/* A peer's URI: 1..255 printable ASCII bytes. */
static bool valid_peer_uri(const char *u)
{
    if (u == NULL)
        return false;
    size_t len = strlen(u);
    if (len == 0 || len > 255)
        return false;
    for (const char *p = u; *p != '\0'; p++)
        if (*p < 0x21 || *p > 0x7e)
            return false;
    return true;
}

static bool has_peer(const struct qs_manifest_cluster *c, uint64_t id)
{
    for (size_t i = 0; i < c->npeers; i++)
        if (c->peers[i].id == id)
            return true;
    return false;
}

/* The rules of a cluster backup's topology (and of the shards' peer ids). */
static int validate_cluster(const struct qs_manifest *m, struct qs_error *err)
{
    if (!m->has_cluster) {
        for (size_t i = 0; i < m->nshards; i++)
            if (m->shards[i].peer_id != 0)
                return field_error(err, "shards", "only a cluster backup names a shard's peer_id");
        return 0;
    }
    const struct qs_manifest_cluster *c = &m->cluster;
    if (m->method != QS_METHOD_SHARDS)
        return field_error(err, "cluster", "only a shards backup records a cluster");
    if (c->npeers == 0 || c->npeers > QS_MANIFEST_MAX_PEERS || c->peers == NULL)
        return field_error(err, "cluster", "peers must list 1 to 4096 peers");
    for (size_t i = 0; i < c->npeers; i++) {
        if (i > 0 && c->peers[i].id <= c->peers[i - 1].id)
            return field_error(err, "cluster", "peer ids must be ascending and unique");
        if (!valid_peer_uri(c->peers[i].uri))
            return field_error(err, "cluster",
                               "a peer's uri must be 1 to 255 printable ASCII characters");
    }
    if (!has_peer(c, c->peer_id))
        return field_error(err, "cluster", "peer_id must be one of the peers");
    if (c->shard_count != m->nshards)
        return field_error(err, "cluster", "shard_count must equal the number of shards listed");
    if (c->replication_factor == 0)
        return field_error(err, "cluster", "replication_factor must be at least 1");
    for (size_t i = 0; i < m->nshards; i++)
        if (!has_peer(c, m->shards[i].peer_id))
            return field_error(err, "shards",
                               "a shard's peer_id must be one of the cluster's peers");
    return 0;
}

/* The rules of the version 2 fields and of the shards method. */
static int validate_v2(const struct qs_manifest *m, struct qs_error *err)
{
    const bool v1 = m->format == QS_MANIFEST_FORMAT_V1;
    const bool fidelity = !v1 && m->mode == QS_MODE_COLLECTIONS;
    if (m->method != QS_METHOD_COLLECTION && m->method != QS_METHOD_SHARDS)
        return field_error(err, "method", "must be \"collection\" or \"shards\"");
    if (m->method == QS_METHOD_SHARDS && (v1 || m->mode != QS_MODE_COLLECTIONS))
        return field_error(err, "method", "\"shards\" needs format 2 and mode \"collections\"");
    if (!fidelity) {
        if (m->collection_config != NULL || m->payload_schema != NULL || m->has_aliases)
            return field_error(err, v1 ? "format" : "mode",
                               "collection_config, payload_schema and aliases belong to format 2 "
                               "backups of collections");
    } else {
        if (m->collection_config == NULL)
            return field_error(err, "collection_config", "missing");
        if (!json_object_text(m->collection_config))
            return field_error(err, "collection_config", "must be a JSON object");
        if (m->payload_schema == NULL)
            return field_error(err, "payload_schema", "missing");
        if (!json_object_text(m->payload_schema))
            return field_error(err, "payload_schema", "must be a JSON object");
        if (!m->has_aliases)
            return field_error(err, "aliases", "missing");
        for (size_t i = 0; i < m->naliases; i++) {
            if (m->aliases[i] == NULL || !valid_alias(m->aliases[i]))
                return field_error(err, "aliases", "holds an invalid alias name");
            if (i > 0 && strcmp(m->aliases[i - 1], m->aliases[i]) >= 0)
                return field_error(err, "aliases", "must be sorted and without duplicates");
        }
    }
    if (m->method == QS_METHOD_COLLECTION) {
        if (m->nshards != 0)
            return field_error(err, "shards", "only a shards backup lists shards");
        if (m->has_cluster)
            return field_error(err, "cluster", "only a shards backup records a cluster");
        return 0;
    }
    if (m->object != NULL)
        return field_error(err, "object", "a shards backup has shard objects instead");
    if (m->sha256[0] != '\0')
        return field_error(err, "sha256", "a shards backup has one per shard instead");
    if (m->nshards == 0 || m->nshards > QS_MANIFEST_MAX_SHARDS)
        return field_error(err, "shards", "must list 1 to 65536 shards");
    uint64_t size = 0, stored = 0;
    char key[QS_MANIFEST_KEY_MAX];
    for (size_t i = 0; i < m->nshards; i++) {
        const struct qs_manifest_shard *sh = &m->shards[i];
        if (i > 0 && sh->id <= m->shards[i - 1].id)
            return field_error(err, "shards", "ids must be ascending and unique");
        if (sh->object == NULL ||
            qs_manifest_shard_key(m->collection, m->snapshot, sh->id, m->compression_level > 0, key,
                                  sizeof(key)) != 0 ||
            strcmp(key, sh->object) != 0)
            return field_error(err, "shards",
                               "an object does not match collection, run, shard id and "
                               "compression");
        if (!is_lower_sha256(sh->sha256))
            return field_error(err, "shards", "a sha256 must be 64 lowercase hex characters");
        if (sh->size > MAX_JSON_UINT || sh->stored_size > MAX_JSON_UINT)
            return field_error(err, "shards", "a size is out of range");
        if (m->compression_level == 0 && sh->stored_size != sh->size)
            return field_error(err, "shards",
                               "stored_size must equal size when compression is none");
        size += sh->size;
        stored += sh->stored_size;
        if (size > MAX_JSON_UINT || stored > MAX_JSON_UINT)
            return field_error(err, "shards", "sizes add up beyond range");
    }
    if (size != m->size)
        return field_error(err, "size", "must be the sum of the shards' sizes");
    if (stored != m->stored_size)
        return field_error(err, "stored_size", "must be the sum of the shards' stored sizes");
    return validate_cluster(m, err);
}

int qs_manifest_validate(const struct qs_manifest *m, struct qs_error *err)
{
    if (m == NULL)
        return qs_error_set(err, QS_EINVAL, "manifest: missing");
    if (m->format != QS_MANIFEST_FORMAT && m->format != QS_MANIFEST_FORMAT_V1)
        return field_error(err, "format", "unsupported value");
    if (m->mode != QS_MODE_COLLECTIONS && m->mode != QS_MODE_FULL)
        return field_error(err, "mode", "must be \"collections\" or \"full\"");
    if (m->collection == NULL)
        return field_error(err, "collection", "missing");
    if (m->mode == QS_MODE_FULL) {
        if (strcmp(m->collection, QS_MANIFEST_FULL_DIR) != 0)
            return field_error(err, "collection",
                               "must be \"" QS_MANIFEST_FULL_DIR "\" for a full-storage snapshot");
    } else if (!qs_manifest_is_valid_collection_name(m->collection)) {
        return field_error(err, "collection", "not a valid collection name");
    }
    if (m->snapshot == NULL)
        return field_error(err, "snapshot", "missing");
    if (!qs_manifest_is_valid_snapshot_name(m->snapshot))
        return field_error(err, "snapshot", "not a valid snapshot name");
    if (m->created < 0 || m->created > MAX_CREATED)
        return field_error(err, "created", "out of range");
    if (m->size > MAX_JSON_UINT)
        return field_error(err, "size", "out of range");
    const bool shards = m->method == QS_METHOD_SHARDS;
    if (!shards && !is_lower_sha256(m->sha256))
        return field_error(err, "sha256", "must be 64 lowercase hex characters");
    if (m->compression_level < 0 || m->compression_level > 9)
        return field_error(err, "compression_level", "must be 1..9 for gzip");
    if (m->stored_size > MAX_JSON_UINT)
        return field_error(err, "stored_size", "out of range");
    if (m->compression_level == 0 && m->stored_size != m->size)
        return field_error(err, "stored_size", "must equal size when compression is none");
    if (!shards) {
        if (m->object == NULL)
            return field_error(err, "object", "missing");
        char key[QS_MANIFEST_KEY_MAX];
        if (qs_manifest_object_key(m->collection, m->snapshot, m->compression_level > 0, key,
                                   sizeof(key)) != 0 ||
            strcmp(key, m->object) != 0)
            return field_error(err, "object",
                               "does not match collection, snapshot and compression");
    }
    if (m->qdrant_version == NULL)
        return field_error(err, "qdrant_version", "missing");
    if (m->points_count < -1 || m->points_count > (int64_t)MAX_JSON_UINT ||
        (m->points_count < 0 && m->mode == QS_MODE_COLLECTIONS))
        return field_error(err, "points_count", "must be a non-negative integer");
    if (m->vectors == NULL) {
        if (m->mode == QS_MODE_COLLECTIONS)
            return field_error(err, "vectors", "missing");
    } else if (!json_object_text(m->vectors)) {
        return field_error(err, "vectors", "must be a JSON object");
    }
    if (m->qsnap_version == NULL)
        return field_error(err, "qsnap_version", "missing");
    return validate_v2(m, err);
}

/* ---- rendering ------------------------------------------------------------ */

static int append_json_string(struct qs_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    int rc = qs_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; rc == 0 && *p != '\0'; p++) {
        const unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            rc = qs_buf_append(b, esc, 2);
        } else if (c == '\n') {
            rc = qs_buf_append(b, "\\n", 2);
        } else if (c == '\t') {
            rc = qs_buf_append(b, "\\t", 2);
        } else if (c < 0x20 || c == 0x7F) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
            rc = qs_buf_append(b, esc, 6);
        } else {
            rc = qs_buf_append(b, p, 1);
        }
    }
    if (rc == 0)
        rc = qs_buf_append(b, "\"", 1);
    return rc;
}

static int append_string_field(struct qs_buf *b, const char *name, const char *value)
{
    int rc = qs_buf_printf(b, ",\n  \"%s\": ", name);
    if (rc == 0)
        rc = append_json_string(b, value);
    return rc;
}

/* JSON object text (valid: checked by validate) re-rendered compactly, owned
 * (cJSON_free), or NULL when out of memory. */
static char *compact(const char *text)
{
    cJSON *v = NULL;
    qs_json_parse(text, strlen(text), &v, NULL);
    char *out = v != NULL ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    return out;
}

static int append_shards(struct qs_buf *b, const struct qs_manifest *m)
{
    int rc = qs_buf_printf(b, ",\n  \"shards\": [");
    for (size_t i = 0; rc == 0 && i < m->nshards; i++) {
        const struct qs_manifest_shard *sh = &m->shards[i];
        rc = qs_buf_printf(b, "%s\n    {\"id\": %" PRIu32 ", \"object\": ", i > 0 ? "," : "",
                           sh->id);
        if (rc == 0)
            rc = append_json_string(b, sh->object);
        if (rc == 0)
            rc = qs_buf_printf(b, ", \"size\": %llu, \"sha256\": \"%s\", \"stored_size\": %llu",
                               (unsigned long long)sh->size, sh->sha256,
                               (unsigned long long)sh->stored_size);
        if (rc == 0 && m->has_cluster)
            rc = qs_buf_printf(b, ", \"peer_id\": \"%" PRIu64 "\"", sh->peer_id);
        if (rc == 0)
            rc = qs_buf_printf(b, "}");
    }
    if (rc == 0)
        rc = qs_buf_printf(b, "\n  ]");
    return rc;
}

/* The topology of a cluster backup; peer ids as decimal strings (a reader
 * holding JSON numbers as doubles would round them). */
static int append_cluster(struct qs_buf *b, const struct qs_manifest *m)
{
    const struct qs_manifest_cluster *c = &m->cluster;
    int rc = qs_buf_printf(b, ",\n  \"cluster\": {\"peer_id\": \"%" PRIu64 "\", \"peers\": [",
                           c->peer_id);
    for (size_t i = 0; rc == 0 && i < c->npeers; i++) {
        rc = qs_buf_printf(b, "%s{\"id\": \"%" PRIu64 "\", \"uri\": ", i > 0 ? ", " : "",
                           c->peers[i].id);
        if (rc == 0)
            rc = append_json_string(b, c->peers[i].uri);
        if (rc == 0)
            rc = qs_buf_printf(b, "}");
    }
    if (rc == 0)
        rc = qs_buf_printf(b,
                           "], \"shard_count\": %" PRIu32 ", \"replication_factor\": %" PRIu32 "}",
                           c->shard_count, c->replication_factor);
    return rc;
}

static int append_aliases(struct qs_buf *b, const struct qs_manifest *m)
{
    int rc = qs_buf_printf(b, ",\n  \"aliases\": [");
    for (size_t i = 0; rc == 0 && i < m->naliases; i++) {
        if (i > 0)
            rc = qs_buf_printf(b, ", ");
        if (rc == 0)
            rc = append_json_string(b, m->aliases[i]);
    }
    if (rc == 0)
        rc = qs_buf_printf(b, "]");
    return rc;
}

int qs_manifest_to_json(const struct qs_manifest *m, struct qs_buf *out)
{
    if (qs_manifest_validate(m, NULL) != 0)
        return QS_EINVAL;
    const bool v2 = m->format != QS_MANIFEST_FORMAT_V1;
    const bool shards = m->method == QS_METHOD_SHARDS;
    char *vectors = m->vectors != NULL ? compact(m->vectors) : NULL;
    char *config = m->collection_config != NULL ? compact(m->collection_config) : NULL;
    char *schema = m->payload_schema != NULL ? compact(m->payload_schema) : NULL;
    const size_t start = out->len;
    int rc = 0;
    if ((m->vectors != NULL && vectors == NULL) ||
        (m->collection_config != NULL && config == NULL) ||
        (m->payload_schema != NULL && schema == NULL))
        rc = UV_ENOMEM;
    char created[21];
    qs_time_rfc3339(m->created, created);
    if (rc == 0)
        rc = qs_buf_printf(out, "{\n  \"format\": %d", m->format);
    /* format_version names the same number for scripts (format 2 on);
     * format stays, the field every release reads. */
    if (rc == 0 && v2)
        rc = qs_buf_printf(out, ",\n  \"format_version\": %d", m->format);
    if (rc == 0)
        rc = append_string_field(out, "collection", m->collection);
    if (rc == 0)
        rc = append_string_field(out, "snapshot", m->snapshot);
    if (rc == 0)
        rc = append_string_field(out, "mode", m->mode == QS_MODE_FULL ? "full" : "collections");
    if (rc == 0 && v2)
        rc = append_string_field(out, "method", shards ? "shards" : "collection");
    if (rc == 0)
        rc = append_string_field(out, "created", created);
    if (rc == 0)
        rc = qs_buf_printf(out, ",\n  \"size\": %llu", (unsigned long long)m->size);
    if (rc == 0 && !shards)
        rc = append_string_field(out, "sha256", m->sha256);
    if (rc == 0)
        rc = append_string_field(out, "compression", m->compression_level > 0 ? "gzip" : "none");
    if (rc == 0 && m->compression_level > 0)
        rc = qs_buf_printf(out, ",\n  \"compression_level\": %d", m->compression_level);
    if (rc == 0)
        rc = qs_buf_printf(out, ",\n  \"stored_size\": %llu", (unsigned long long)m->stored_size);
    if (rc == 0 && !shards)
        rc = append_string_field(out, "object", m->object);
    if (rc == 0 && shards)
        rc = append_shards(out, m);
    if (rc == 0)
        rc = append_string_field(out, "qdrant_version", m->qdrant_version);
    if (rc == 0 && m->points_count >= 0)
        rc = qs_buf_printf(out, ",\n  \"points_count\": %lld", (long long)m->points_count);
    if (rc == 0 && vectors != NULL)
        rc = qs_buf_printf(out, ",\n  \"vectors\": %s", vectors);
    if (rc == 0 && config != NULL)
        rc = qs_buf_printf(out, ",\n  \"collection_config\": %s", config);
    if (rc == 0 && schema != NULL)
        rc = qs_buf_printf(out, ",\n  \"payload_schema\": %s", schema);
    if (rc == 0 && m->has_aliases)
        rc = append_aliases(out, m);
    if (rc == 0 && m->has_cluster)
        rc = append_cluster(out, m);
    if (rc == 0)
        rc = append_string_field(out, "qsnap_version", m->qsnap_version);
    if (rc == 0)
        rc = qs_buf_printf(out, "\n}\n");
    cJSON_free(vectors);
    cJSON_free(config);
    cJSON_free(schema);
    if (rc != 0) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
        return UV_ENOMEM;
    }
    return 0;
}

/* ---- parsing -------------------------------------------------------------- */

enum presence { OPTIONAL, REQUIRED };

/* Fetches a string field. *out is NULL when an optional field is absent or
 * null. Returns 0 or an error naming the field. */
static int get_string(const cJSON *root, const char *name, enum presence p, const char **out,
                      struct qs_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = NULL;
    if (it == NULL || cJSON_IsNull(it))
        return p == REQUIRED ? field_error(err, name, "missing") : 0;
    if (!cJSON_IsString(it) || it->valuestring == NULL)
        return field_error(err, name, "must be a string");
    *out = it->valuestring;
    return 0;
}

/* Fetches a non-negative integer field (exact in a double). *present is set
 * to 0 when an optional field is absent or null. */
static int get_uint(const cJSON *root, const char *name, enum presence p, uint64_t *out,
                    int *present, struct qs_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = 0;
    if (present != NULL)
        *present = 0;
    if (it == NULL || cJSON_IsNull(it))
        return p == REQUIRED ? field_error(err, name, "missing") : 0;
    if (!cJSON_IsNumber(it))
        return field_error(err, name, "must be a number");
    const double d = it->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return field_error(err, name, "must be an integer");
    if (d < 0)
        return field_error(err, name, "must not be negative");
    if (d > MAX_JSON_INT)
        return field_error(err, name, "too large");
    *out = (uint64_t)d;
    if (present != NULL)
        *present = 1;
    return 0;
}

static int dup_into(char **dst, const char *src)
{
    if (src == NULL) {
        *dst = NULL;
        return 0;
    }
    *dst = strdup(src);
    return *dst == NULL ? UV_ENOMEM : 0;
}

/* Keeps a JSON object field as compact text in *dst. absent: 0 with *dst NULL. */
static int get_object_text(const cJSON *root, const char *name, char **dst, struct qs_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    *dst = NULL;
    if (it == NULL || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsObject(it))
        return field_error(err, name, "must be a JSON object");
    *dst = cJSON_PrintUnformatted(it);
    return *dst == NULL ? qs_error_set(err, UV_ENOMEM, "manifest: out of memory") : 0;
}

static int parse_aliases(const cJSON *root, struct qs_manifest *m, struct qs_error *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "aliases");
    if (arr == NULL || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return field_error(err, "aliases", "must be an array of names");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    m->aliases = calloc(n + 1, sizeof(*m->aliases));
    if (m->aliases == NULL)
        return qs_error_set(err, UV_ENOMEM, "manifest: out of memory");
    m->has_aliases = 1;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) || it->valuestring == NULL)
            return field_error(err, "aliases", "must be an array of names");
        if ((m->aliases[m->naliases] = strdup(it->valuestring)) == NULL)
            return qs_error_set(err, UV_ENOMEM, "manifest: out of memory");
        m->naliases++;
    }
    return 0;
}

/* A peer id: a decimal string (exact u64). */
static int get_peer_id(const cJSON *obj, const char *name, uint64_t *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(it) || it->valuestring == NULL)
        return -1;
    return qs_parse_u64_dec(it->valuestring, out) == 0 ? 0 : -1;
}

/* The optional "cluster" object (read before the shards: their peer_id
 * depends on it). */
static int parse_cluster(const cJSON *root, struct qs_manifest *m, struct qs_error *err)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "cluster");
    if (c == NULL || cJSON_IsNull(c))
        return 0;
    if (m->method != QS_METHOD_SHARDS)
        return field_error(err, "cluster", "only a shards backup records a cluster");
    if (!cJSON_IsObject(c))
        return field_error(err, "cluster", "must be a JSON object");
    struct qs_manifest_cluster *mc = &m->cluster;
    m->has_cluster = 1;
    uint64_t sc, rf;
    struct qs_error e;
    if (get_peer_id(c, "peer_id", &mc->peer_id) != 0)
        return field_error(err, "cluster", "peer_id must be a peer id as a decimal string");
    if (get_uint(c, "shard_count", REQUIRED, &sc, NULL, &e) != 0 || sc > UINT32_MAX ||
        get_uint(c, "replication_factor", REQUIRED, &rf, NULL, &e) != 0 || rf > UINT32_MAX)
        return field_error(err, "cluster", "needs shard_count and replication_factor (integers)");
    mc->shard_count = (uint32_t)sc;
    mc->replication_factor = (uint32_t)rf;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(c, "peers");
    if (!cJSON_IsArray(arr))
        return field_error(err, "cluster", "peers must be an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n == 0 || n > QS_MANIFEST_MAX_PEERS)
        return field_error(err, "cluster", "peers must list 1 to 4096 peers");
    if ((mc->peers = calloc(n, sizeof(*mc->peers))) == NULL)
        return qs_error_set(err, UV_ENOMEM, "manifest: out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        struct qs_manifest_peer *p = &mc->peers[mc->npeers];
        const char *uri;
        if (!cJSON_IsObject(it) || get_peer_id(it, "id", &p->id) != 0 ||
            get_string(it, "uri", REQUIRED, &uri, &e) != 0)
            return field_error(err, "cluster",
                               "each peer needs id (a decimal string) and uri (a string)");
        if ((p->uri = strdup(uri)) == NULL)
            return qs_error_set(err, UV_ENOMEM, "manifest: out of memory");
        mc->npeers++;
    }
    return 0;
}

static int parse_shards(const cJSON *root, struct qs_manifest *m, struct qs_error *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "shards");
    if (arr == NULL || cJSON_IsNull(arr))
        return m->method == QS_METHOD_SHARDS ? field_error(err, "shards", "missing") : 0;
    if (m->method != QS_METHOD_SHARDS)
        return field_error(err, "shards", "only a shards backup lists shards");
    if (!cJSON_IsArray(arr))
        return field_error(err, "shards", "must be an array");
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n == 0 || n > QS_MANIFEST_MAX_SHARDS)
        return field_error(err, "shards", "must list 1 to 65536 shards");
    m->shards = calloc(n, sizeof(*m->shards));
    if (m->shards == NULL)
        return qs_error_set(err, UV_ENOMEM, "manifest: out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        struct qs_manifest_shard *sh = &m->shards[m->nshards];
        struct qs_error e;
        uint64_t id;
        const char *object, *sha;
        if (!cJSON_IsObject(it) || get_uint(it, "id", REQUIRED, &id, NULL, &e) != 0 ||
            id > UINT32_MAX || get_string(it, "object", REQUIRED, &object, &e) != 0 ||
            get_uint(it, "size", REQUIRED, &sh->size, NULL, &e) != 0 ||
            get_string(it, "sha256", REQUIRED, &sha, &e) != 0 ||
            get_uint(it, "stored_size", REQUIRED, &sh->stored_size, NULL, &e) != 0)
            return field_error(err, "shards",
                               "each entry needs id, object, size, sha256 and stored_size");
        if (!is_lower_sha256(sha))
            return field_error(err, "shards", "a sha256 must be 64 lowercase hex characters");
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(it, "peer_id");
        if (m->has_cluster && get_peer_id(it, "peer_id", &sh->peer_id) != 0)
            return field_error(err, "shards",
                               "each shard of a cluster backup needs peer_id (a decimal string)");
        if (!m->has_cluster && pid != NULL)
            return field_error(err, "shards", "only a cluster backup names a shard's peer_id");
        sh->id = (uint32_t)id;
        memcpy(sh->sha256, sha, 65);
        if ((sh->object = strdup(object)) == NULL)
            return qs_error_set(err, UV_ENOMEM, "manifest: out of memory");
        m->nshards++;
    }
    return 0;
}

static int parse_tree(const cJSON *root, struct qs_manifest *m, struct qs_error *err)
{
    if (!cJSON_IsObject(root))
        return qs_error_set(err, QS_EINVAL, "manifest: not a JSON object");

    uint64_t u;
    int present, rc;
    if ((rc = get_uint(root, "format", REQUIRED, &u, NULL, err)) != 0)
        return rc;
    if (u == 0)
        return field_error(err, "format", "must be at least 1");
    if (u > QS_MANIFEST_FORMAT)
        return qs_error_set(err, QS_EPROTO,
                            "manifest field \"format\": version %llu is newer than this qsnap "
                            "understands (%d)",
                            (unsigned long long)u, QS_MANIFEST_FORMAT);
    m->format = (int)u;
    const bool v2 = m->format != QS_MANIFEST_FORMAT_V1;
    /* Format 2 writes the number twice ("format" for every release,
     * "format_version" for scripts); they must agree. */
    uint64_t fv;
    int have_fv;
    if ((rc = get_uint(root, "format_version", OPTIONAL, &fv, &have_fv, err)) != 0)
        return rc;
    if (have_fv && fv != u)
        return field_error(err, "format_version", "must equal \"format\"");
    if (v2 && !have_fv)
        return field_error(err, "format_version", "missing");

    const char *collection, *snapshot, *mode, *created, *sha, *compression, *object, *qv, *sv;
    const char *method;
    if ((rc = get_string(root, "collection", REQUIRED, &collection, err)) != 0 ||
        (rc = get_string(root, "snapshot", REQUIRED, &snapshot, err)) != 0 ||
        (rc = get_string(root, "mode", REQUIRED, &mode, err)) != 0)
        return rc;
    if (strcmp(mode, "collections") == 0)
        m->mode = QS_MODE_COLLECTIONS;
    else if (strcmp(mode, "full") == 0)
        m->mode = QS_MODE_FULL;
    else
        return field_error(err, "mode", "must be \"collections\" or \"full\"");
    if (m->mode == QS_MODE_FULL && strcmp(collection, QS_MANIFEST_FULL_DIR) != 0)
        return field_error(err, "collection",
                           "must be \"" QS_MANIFEST_FULL_DIR "\" for a full-storage snapshot");
    if (m->mode == QS_MODE_COLLECTIONS && !qs_manifest_is_valid_collection_name(collection))
        return field_error(err, "collection", "not a valid collection name");
    if (!qs_manifest_is_valid_snapshot_name(snapshot))
        return field_error(err, "snapshot", "not a valid snapshot name");
    /* Version 1 knows one method; a "method" there is someone else's field. */
    m->method = QS_METHOD_COLLECTION;
    if (v2) {
        if ((rc = get_string(root, "method", REQUIRED, &method, err)) != 0)
            return rc;
        if (strcmp(method, "shards") == 0)
            m->method = QS_METHOD_SHARDS;
        else if (strcmp(method, "collection") != 0)
            return field_error(err, "method", "must be \"collection\" or \"shards\"");
    }
    const bool shards = m->method == QS_METHOD_SHARDS;

    if ((rc = get_string(root, "created", REQUIRED, &created, err)) != 0)
        return rc;
    if (qs_time_parse(created, &m->created) != 0 || m->created < 0 || m->created > MAX_CREATED)
        return field_error(err, "created", "must be an RFC 3339 UTC time");
    if ((rc = get_uint(root, "size", REQUIRED, &m->size, NULL, err)) != 0)
        return rc;
    if ((rc = get_string(root, "sha256", shards ? OPTIONAL : REQUIRED, &sha, err)) != 0)
        return rc;
    if (shards && sha != NULL)
        return field_error(err, "sha256", "a shards backup has one per shard instead");
    if (!shards) {
        if (!is_lower_sha256(sha))
            return field_error(err, "sha256", "must be 64 lowercase hex characters");
        memcpy(m->sha256, sha, 65);
    }

    if ((rc = get_string(root, "compression", REQUIRED, &compression, err)) != 0 ||
        (rc = get_uint(root, "compression_level", OPTIONAL, &u, &present, err)) != 0)
        return rc;
    if (strcmp(compression, "none") == 0) {
        if (present && u != 0)
            return field_error(err, "compression_level", "must be absent or 0 for none");
        m->compression_level = 0;
    } else if (strcmp(compression, "gzip") == 0) {
        if (!present)
            return field_error(err, "compression_level", "missing");
        if (u < 1 || u > 9)
            return field_error(err, "compression_level", "must be 1..9 for gzip");
        m->compression_level = (int)u;
    } else {
        return field_error(err, "compression", "must be \"none\" or \"gzip\"");
    }
    if ((rc = get_uint(root, "stored_size", REQUIRED, &m->stored_size, NULL, err)) != 0)
        return rc;
    if (m->compression_level == 0 && m->stored_size != m->size)
        return field_error(err, "stored_size", "must equal size when compression is none");

    if ((rc = get_string(root, "object", shards ? OPTIONAL : REQUIRED, &object, err)) != 0)
        return rc;
    if (shards && object != NULL)
        return field_error(err, "object", "a shards backup has shard objects instead");
    char key[QS_MANIFEST_KEY_MAX];
    if (!shards && (qs_manifest_object_key(collection, snapshot, m->compression_level > 0, key,
                                           sizeof(key)) != 0 ||
                    strcmp(key, object) != 0))
        return field_error(err, "object", "does not match collection, snapshot and compression");

    if ((rc = get_string(root, "qdrant_version", REQUIRED, &qv, err)) != 0)
        return rc;
    m->points_count = -1;
    if ((rc = get_uint(root, "points_count", m->mode == QS_MODE_COLLECTIONS ? REQUIRED : OPTIONAL,
                       &u, &present, err)) != 0)
        return rc;
    if (present)
        m->points_count = (int64_t)u;

    const cJSON *vec = cJSON_GetObjectItemCaseSensitive(root, "vectors");
    if (vec == NULL || cJSON_IsNull(vec)) {
        if (m->mode == QS_MODE_COLLECTIONS)
            return field_error(err, "vectors", "missing");
    } else if (!cJSON_IsObject(vec)) {
        return field_error(err, "vectors", "must be a JSON object");
    } else {
        char *text = cJSON_PrintUnformatted(vec);
        if (text == NULL)
            return qs_error_set(err, UV_ENOMEM, "manifest: out of memory");
        rc = dup_into(&m->vectors, text);
        cJSON_free(text);
        if (rc != 0)
            return qs_error_set(err, rc, "manifest: out of memory");
    }
    if ((rc = get_string(root, "qsnap_version", REQUIRED, &sv, err)) != 0)
        return rc;

    if (dup_into(&m->collection, collection) != 0 || dup_into(&m->snapshot, snapshot) != 0 ||
        dup_into(&m->object, shards ? NULL : object) != 0 ||
        dup_into(&m->qdrant_version, qv) != 0 || dup_into(&m->qsnap_version, sv) != 0)
        return qs_error_set(err, UV_ENOMEM, "manifest: out of memory");

    if (!v2)
        return 0; /* version 1 knew nothing more */
    if ((rc = get_object_text(root, "collection_config", &m->collection_config, err)) != 0 ||
        (rc = get_object_text(root, "payload_schema", &m->payload_schema, err)) != 0 ||
        (rc = parse_aliases(root, m, err)) != 0 || (rc = parse_cluster(root, m, err)) != 0 ||
        (rc = parse_shards(root, m, err)) != 0)
        return rc;
    return validate_v2(m, err);
}

int qs_manifest_parse(const char *json, size_t len, struct qs_manifest *out, struct qs_error *err)
{
    memset(out, 0, sizeof(*out));
    if (json == NULL)
        return qs_error_set(err, QS_EINVAL, "manifest: empty");
    cJSON *root = NULL;
    struct qs_error jerr;
    if (qs_json_parse(json, len, &root, &jerr) != 0)
        return qs_error_set(err, QS_EINVAL, "manifest: %s", jerr.msg);
    int rc = parse_tree(root, out, err);
    cJSON_Delete(root);
    if (rc != 0)
        qs_manifest_deinit(out);
    return rc;
}

/* ---- classifying a listing ------------------------------------------------ */

enum key_kind { K_IGNORED, K_MANIFEST, K_OBJECT, K_DRILL, K_SHARD };

struct entry {
    const struct qs_listed_key *src;
    enum key_kind kind;
    size_t dirlen;   /* bytes before the '/' */
    size_t dirskip;  /* 1 when the directory is an escaped name (":.c"), else 0 */
    size_t nameskip; /* 1 when the file name is an escaped name (":.s"), else 0 */
    bool used;
};

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    return strcmp(x->src->key, y->src->key);
}

static int entry_key_cmp(const void *key, const void *elem)
{
    const struct entry *e = elem;
    return strcmp(key, e->src->key);
}

/* "shard-N.snapshot" or "shard-N.snapshot.gz", N a uint32 without leading zeros. */
static bool is_shard_file(const char *f)
{
    if (strncmp(f, "shard-", 6) != 0)
        return false;
    const char *d = f + 6;
    size_t nd = 0;
    uint64_t v = 0;
    while (d[nd] >= '0' && d[nd] <= '9' && nd < 11)
        v = v * 10 + (uint64_t)(d[nd++] - '0');
    if (nd == 0 || (nd > 1 && d[0] == '0') || v > UINT32_MAX)
        return false;
    return strcmp(d + nd, ".snapshot") == 0 ||
           strcmp(d + nd, ".snapshot" QS_MANIFEST_GZ_SUFFIX) == 0;
}

static void classify_key(struct entry *e)
{
    const char *key = e->src->key;
    e->kind = K_IGNORED;
    if (key == NULL)
        return;
    const char *slash = strchr(key, '/');
    if (slash == NULL || slash == key)
        return;
    const char *name = slash + 1;
    const char *inner = strchr(name, '/');
    if (inner != NULL && strchr(inner + 1, '/') != NULL)
        return;
    e->dirlen = (size_t)(slash - key);
    if (e->dirlen > 1020)
        return;
    char dir[1024];
    memcpy(dir, key, e->dirlen);
    dir[e->dirlen] = '\0';
    /* Key components never begin with '.'; names that do are stored with
     * the escape in front (see qs_manifest_object_key). */
    e->dirskip = dir[0] == QS_MANIFEST_DOT_ESCAPE && dir[1] == '.';
    if (dir[0] == '.' || !valid_dir(dir + e->dirskip))
        return;
    e->nameskip = name[0] == QS_MANIFEST_DOT_ESCAPE && name[1] == '.';
    const char *snap = name + e->nameskip;
    if (inner != NULL) {
        /* "{dir}/{run}/shard-N.snapshot[.gz]": a shards run's object. */
        const size_t runlen = (size_t)(inner - snap);
        if (name[0] == '.' || strcmp(dir, QS_MANIFEST_FULL_DIR) == 0 || inner < snap ||
            !valid_snapshot_name_n(snap, runlen) || !is_shard_file(inner + 1))
            return;
        e->kind = K_SHARD;
        return;
    }
    const size_t len = strlen(snap);
    if (len == 0 || name[0] == '.' || ends_with(snap, len, ".tmp"))
        return;
    if (ends_with(snap, len, QS_MANIFEST_DRILL_SUFFIX) &&
        valid_snapshot_name_n(snap, len - strlen(QS_MANIFEST_DRILL_SUFFIX))) {
        e->kind = K_DRILL;
    } else if (ends_with(snap, len, QS_MANIFEST_SUFFIX)) {
        /* Snapshot names never end in ".drill", so this is no drill result. */
        if (valid_snapshot_name_n(snap, len - strlen(QS_MANIFEST_SUFFIX)))
            e->kind = K_MANIFEST;
    } else if (ends_with(snap, len, QS_MANIFEST_GZ_SUFFIX)) {
        if (valid_snapshot_name_n(snap, len - strlen(QS_MANIFEST_GZ_SUFFIX)))
            e->kind = K_OBJECT;
    } else if (valid_snapshot_name_n(snap, len)) {
        e->kind = K_OBJECT;
    }
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void free_backup(struct qs_listed_backup *b)
{
    free(b->collection);
    free(b->snapshot);
    free(b->manifest_key);
    free(b->object_key);
    free(b->alt_object_key);
    free(b->drill_key);
    for (size_t i = 0; i < b->nshards; i++)
        free(b->shard_keys[i]);
    free(b->shard_keys);
    free(b->shard_sizes);
}

void qs_manifest_listing_deinit(struct qs_manifest_listing *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->ncomplete; i++)
        free_backup(&l->complete[i]);
    for (size_t i = 0; i < l->norphans; i++)
        free_backup(&l->orphans[i]);
    for (size_t i = 0; i < l->nincomplete; i++) {
        free(l->incomplete[i].collection);
        free(l->incomplete[i].key);
    }
    free(l->complete);
    free(l->orphans);
    free(l->incomplete);
    memset(l, 0, sizeof(*l));
}

static struct entry *find_kind(struct entry *entries, size_t n, const char *key, enum key_kind kind)
{
    struct entry *e = bsearch(key, entries, n, sizeof(*entries), entry_key_cmp);
    return e != NULL && e->kind == kind ? e : NULL;
}

static struct entry *find_object(struct entry *entries, size_t n, const char *key)
{
    return find_kind(entries, n, key, K_OBJECT);
}

/* Index of the first entry whose key is not below key. */
static size_t lower_bound(const struct entry *entries, size_t n, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(entries[mid].src->key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Attaches the shard objects listed under run directory `dir` ("{c}/{run}/",
 * dlen bytes) to b and marks them used. 0 or UV_ENOMEM. */
static int attach_shards(struct entry *entries, size_t n, const char *dir, size_t dlen,
                         struct qs_listed_backup *b)
{
    size_t first = lower_bound(entries, n, dir), cnt = 0;
    for (size_t j = first; j < n && strncmp(entries[j].src->key, dir, dlen) == 0; j++)
        cnt += entries[j].kind == K_SHARD;
    if (cnt == 0)
        return 0;
    b->shard_keys = calloc(cnt, sizeof(*b->shard_keys));
    b->shard_sizes = calloc(cnt, sizeof(*b->shard_sizes));
    if (b->shard_keys == NULL || b->shard_sizes == NULL)
        return UV_ENOMEM;
    for (size_t j = first; j < n && strncmp(entries[j].src->key, dir, dlen) == 0; j++) {
        if (entries[j].kind != K_SHARD)
            continue;
        entries[j].used = true;
        b->shard_sizes[b->nshards] = entries[j].src->size;
        if ((b->shard_keys[b->nshards] = strdup(entries[j].src->key)) == NULL)
            return UV_ENOMEM;
        b->nshards++;
    }
    return 0;
}

static int add_incomplete(struct qs_manifest_listing *out, const struct entry *e)
{
    struct qs_listed_object *o = &out->incomplete[out->nincomplete++];
    o->collection = dup_n(e->src->key + e->dirskip, e->dirlen - e->dirskip);
    o->key = strdup(e->src->key);
    o->size = e->src->size;
    o->last_modified = e->src->last_modified;
    return o->collection == NULL || o->key == NULL ? UV_ENOMEM : 0;
}

int qs_manifest_classify(const struct qs_listed_key *keys, size_t n,
                         struct qs_manifest_listing *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return 0;
    struct entry *entries = calloc(n, sizeof(*entries));
    /* Every array is at most n long; allocating that once keeps failure
     * handling in one place. */
    out->complete = calloc(n, sizeof(*out->complete));
    out->orphans = calloc(n, sizeof(*out->orphans));
    out->incomplete = calloc(n, sizeof(*out->incomplete));
    if (entries == NULL || out->complete == NULL || out->orphans == NULL || out->incomplete == NULL)
        goto nomem;

    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (keys[i].key == NULL) {
            out->nignored++;
            continue;
        }
        entries[m].src = &keys[i];
        m++;
    }
    qsort(entries, m, sizeof(*entries), entry_cmp);
    /* Drop duplicates (keep the first of each run). */
    size_t u = 0;
    for (size_t i = 0; i < m; i++) {
        if (u > 0 && strcmp(entries[u - 1].src->key, entries[i].src->key) == 0) {
            out->nignored++;
            continue;
        }
        entries[u++] = entries[i];
    }
    m = u;
    for (size_t i = 0; i < m; i++)
        classify_key(&entries[i]);

    char cand[QS_MANIFEST_KEY_MAX + 8];
    for (size_t i = 0; i < m; i++) {
        struct entry *e = &entries[i];
        if (e->kind != K_MANIFEST)
            continue;
        const char *key = e->src->key;
        const size_t keylen = strlen(key);
        const size_t objlen = keylen - strlen(QS_MANIFEST_SUFFIX);
        if (objlen + 4 > sizeof(cand))
            continue;
        memcpy(cand, key, objlen);
        cand[objlen] = '\0';
        struct entry *obj = find_object(entries, m, cand);
        memcpy(cand + objlen, QS_MANIFEST_GZ_SUFFIX, sizeof(QS_MANIFEST_GZ_SUFFIX));
        struct entry *alt = find_object(entries, m, cand);
        if (obj == NULL) {
            obj = alt;
            alt = NULL;
        }
        struct entry *drill = NULL;
        if (objlen + sizeof(QS_MANIFEST_DRILL_SUFFIX) <= sizeof(cand)) {
            memcpy(cand + objlen, QS_MANIFEST_DRILL_SUFFIX, sizeof(QS_MANIFEST_DRILL_SUFFIX));
            drill = find_kind(entries, m, cand, K_DRILL);
        }
        /* The shard objects of a shards run "{c}/{run}/" (objlen + 1 bytes). */
        memcpy(cand + objlen, "/", 2);
        struct qs_listed_backup tmp = {0};
        if (attach_shards(entries, m, cand, objlen + 1, &tmp) != 0) {
            free_backup(&tmp);
            goto nomem;
        }
        struct qs_listed_backup *b = obj != NULL || tmp.nshards > 0 ? &out->complete[out->ncomplete]
                                                                    : &out->orphans[out->norphans];
        *b = tmp;
        if (drill != NULL) {
            drill->used = true;
            b->drill_key = strdup(drill->src->key);
        }
        b->collection = dup_n(key + e->dirskip, e->dirlen - e->dirskip);
        b->snapshot =
            dup_n(key + e->dirlen + 1 + e->nameskip, objlen - e->dirlen - 1 - e->nameskip);
        b->manifest_key = strdup(key);
        b->last_modified = e->src->last_modified;
        if (obj != NULL) {
            obj->used = true;
            b->object_key = strdup(obj->src->key);
            b->object_size = obj->src->size;
            b->compressed = ends_with(obj->src->key, strlen(obj->src->key), QS_MANIFEST_GZ_SUFFIX);
            if (alt != NULL)
                b->alt_object_key = strdup(alt->src->key);
            out->ncomplete++;
        } else if (b->nshards > 0) {
            for (size_t k = 0; k < b->nshards; k++)
                b->object_size += b->shard_sizes[k];
            out->ncomplete++;
        } else {
            out->norphans++;
        }
        if (b->collection == NULL || b->snapshot == NULL || b->manifest_key == NULL ||
            (obj != NULL && b->object_key == NULL) || (alt != NULL && b->alt_object_key == NULL) ||
            (drill != NULL && b->drill_key == NULL))
            goto nomem;
    }
    for (size_t i = 0; i < m; i++) {
        struct entry *e = &entries[i];
        if (e->kind == K_IGNORED) {
            out->nignored++;
            continue;
        }
        if (e->used || (e->kind != K_OBJECT && e->kind != K_DRILL && e->kind != K_SHARD))
            continue;
        const char *key = e->src->key;
        const size_t len = strlen(key);
        if (e->kind == K_DRILL || e->kind == K_SHARD) {
            /* A drill result whose backup is gone (or was never complete), or
             * a shard object of a run that has no manifest. */
            if (add_incomplete(out, e) != 0)
                goto nomem;
            continue;
        }
        /* The plain twin of a complete backup's ".gz" object (or the other way
         * round) is left alone: the manifest decides which one is meant. */
        char twin[QS_MANIFEST_KEY_MAX + 8];
        bool is_twin = false;
        if (len + 1 < sizeof(twin)) {
            memcpy(twin, key, len + 1);
            if (ends_with(key, len, QS_MANIFEST_GZ_SUFFIX))
                twin[len - strlen(QS_MANIFEST_GZ_SUFFIX)] = '\0';
            else
                memcpy(twin + len, QS_MANIFEST_GZ_SUFFIX, sizeof(QS_MANIFEST_GZ_SUFFIX));
            struct entry *t = find_object(entries, m, twin);
            is_twin = t != NULL && t->used;
        }
        if (is_twin || !(ends_with(key, len, ".snapshot") || ends_with(key, len, ".snapshot.gz"))) {
            out->nignored++;
            continue;
        }
        if (add_incomplete(out, e) != 0)
            goto nomem;
    }
    free(entries);
    return 0;

nomem:
    free(entries);
    qs_manifest_listing_deinit(out);
    return UV_ENOMEM;
}
