#include "qsnap/qdrant.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <uv.h>

#include "qsnap/httpc.h"
#include "qsnap/log.h"
#include "qsnap/tarcheck.h"

#define QD_DEFAULT_URL "http://localhost:6333"
#define QD_DEFAULT_CONNECT_MS 5000L
#define QD_DEFAULT_REQUEST_MS 60000L
#define QD_DEFAULT_SNAPSHOT_MS (3L * 3600L * 1000L)
#define QD_DEFAULT_LOW_SPEED_S 60L

/* Bodies kept in memory: JSON answers up to 16 MiB, small answers up to
 * 64 KiB (error bodies: QS_HTTPC_ERRBODY_MAX). */
#define QD_JSON_CAP (16u << 20)
#define QD_SMALL_CAP (64u << 10)
#define QD_DOWNLOAD_BUFFER (256L * 1024L)
#define QD_UPLOAD_BUFFER (512L * 1024L)
/* Longest server message copied into an error. */
#define QD_MSG_MAX 300

struct qs_qdrant {
    char *url;     /* owned, no trailing slash */
    char *api_key; /* owned, NULL when none */
    char *api_key_header;
    long connect_timeout_ms;
    long request_timeout_ms;
    long snapshot_timeout_ms;
    long low_speed_time_s;
    int expect_100;
};

/* ---- small helpers ------------------------------------------------------- */

static long pick_timeout(long v, long def)
{
    if (v == 0)
        return def;
    return v < 0 ? -1 : v;
}

static int has_ctl(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

int qs_qdrant_new(const struct qs_qdrant_opts *o, struct qs_qdrant **out, struct qs_error *err)
{
    *out = NULL;
    const char *url = o != NULL && o->url != NULL && o->url[0] != '\0' ? o->url : QD_DEFAULT_URL;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return qs_error_set(err, QS_ECONFIG, "Qdrant URL must start with http:// or https://");
    const char *host = strstr(url, "://") + 3;
    if (*host == '\0' || *host == '/' || has_ctl(url) || strchr(url, ' ') != NULL ||
        strchr(url, '?') != NULL || strchr(url, '#') != NULL)
        return qs_error_set(err, QS_ECONFIG, "Qdrant URL is not a valid base URL");
    const char *key = o != NULL && o->api_key != NULL && o->api_key[0] != '\0' ? o->api_key : NULL;
    if (key != NULL && has_ctl(key))
        return qs_error_set(err, QS_ECONFIG, "Qdrant API key contains control characters");

    struct qs_qdrant *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    q->url = strdup(url);
    if (q->url == NULL)
        goto nomem;
    size_t ul = strlen(q->url);
    while (ul > 0 && q->url[ul - 1] == '/')
        q->url[--ul] = '\0';
    if (key != NULL) {
        q->api_key = strdup(key);
        size_t hl = strlen(key) + sizeof("api-key: ");
        q->api_key_header = malloc(hl);
        if (q->api_key == NULL || q->api_key_header == NULL)
            goto nomem;
        snprintf(q->api_key_header, hl, "api-key: %s", key);
    }
    q->connect_timeout_ms = pick_timeout(o ? o->connect_timeout_ms : 0, QD_DEFAULT_CONNECT_MS);
    q->request_timeout_ms = pick_timeout(o ? o->request_timeout_ms : 0, QD_DEFAULT_REQUEST_MS);
    q->snapshot_timeout_ms = pick_timeout(o ? o->snapshot_timeout_ms : 0, QD_DEFAULT_SNAPSHOT_MS);
    q->low_speed_time_s = pick_timeout(o ? o->low_speed_time_s : 0, QD_DEFAULT_LOW_SPEED_S);
    q->expect_100 = o != NULL && o->expect_100;
    *out = q;
    return 0;
nomem:
    qs_qdrant_free(q);
    return qs_error_set(err, UV_ENOMEM, "out of memory");
}

int qs_qdrant_new_like(const struct qs_qdrant *like, const char *url, struct qs_qdrant **out,
                       struct qs_error *err)
{
    struct qs_qdrant_opts o = {
        .url = url,
        .api_key = like->api_key,
        /* -1 keeps "no limit" (0 would select the default) */
        .connect_timeout_ms = like->connect_timeout_ms,
        .request_timeout_ms = like->request_timeout_ms,
        .snapshot_timeout_ms = like->snapshot_timeout_ms,
        .low_speed_time_s = like->low_speed_time_s,
        .expect_100 = like->expect_100,
    };
    if (url == NULL || url[0] == '\0')
        return qs_error_set(err, QS_ECONFIG, "Qdrant URL is empty");
    return qs_qdrant_new(&o, out, err);
}

static void wipe_free(char *s)
{
    if (s == NULL)
        return;
    volatile char *p = s;
    while (*p != '\0')
        *p++ = '\0';
    free(s);
}

void qs_qdrant_free(struct qs_qdrant *q)
{
    if (q == NULL)
        return;
    free(q->url);
    wipe_free(q->api_key);
    wipe_free(q->api_key_header);
    free(q);
}

const char *qs_qdrant_url(const struct qs_qdrant *q)
{
    return q->url;
}

void qs_qdrant_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void qs_collection_info_deinit(struct qs_collection_info *ci)
{
    if (ci == NULL)
        return;
    char **owned[] = {&ci->vectors_json, &ci->config_json, &ci->payload_schema_json};
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
        free(*owned[i]);
        *owned[i] = NULL;
    }
}

/* Removes every occurrence of secret from msg (in place). */
static void scrub(char *msg, size_t cap, const char *secret)
{
    if (secret == NULL || secret[0] == '\0')
        return;
    static const char red[] = "[REDACTED]";
    size_t sl = strlen(secret), rl = sizeof(red) - 1;
    char *p, *from = msg;
    while ((p = strstr(from, secret)) != NULL) {
        size_t tail = strlen(p + sl);
        size_t pos = (size_t)(p - msg);
        if (pos + rl + tail + 1 > cap)
            tail = cap > pos + rl + 1 ? cap - pos - rl - 1 : 0;
        if (pos + rl + 1 > cap) {
            *p = '\0';
            break;
        }
        memmove(p + rl, p + sl, tail);
        memcpy(p, red, rl);
        p[rl + tail] = '\0';
        from = p + rl; /* the replacement itself may contain the secret */
    }
}

/* ---- one HTTP exchange ---------------------------------------------------- */

/* Extracts Qdrant's message from an error body: the JSON envelope's
 * status.error, a JSON top-level "error"/"message", or the text itself. */
static void server_message(const char *body, size_t len, int truncated, char *out, size_t cap)
{
    out[0] = '\0';
    if (len == 0) {
        qs_strlcpy(out, "(empty body)", cap);
        return;
    }
    cJSON *j = NULL;
    if (!truncated)
        qs_json_parse(body, len, &j, NULL);
    if (j != NULL) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(st, "error");
        if (!cJSON_IsString(e))
            e = cJSON_GetObjectItemCaseSensitive(j, "error");
        if (!cJSON_IsString(e))
            e = cJSON_GetObjectItemCaseSensitive(j, "message");
        if (cJSON_IsString(e) && e->valuestring != NULL)
            qs_printable(out, cap < QD_MSG_MAX ? cap : QD_MSG_MAX, e->valuestring, QD_MSG_MAX);
        cJSON_Delete(j);
        if (out[0] != '\0')
            return;
    }
    /* Plain text (or unrecognised JSON): first line-ish, control chars flattened. */
    size_t o = 0, lim = cap < QD_MSG_MAX ? cap : QD_MSG_MAX;
    const char *s = body, *end = body + len;
    while (s < end && isspace((unsigned char)*s))
        s++;
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    if (s == end) {
        qs_strlcpy(out, "(empty body)", cap);
        return;
    }
    for (; s < end && o + 1 < lim; s++) {
        unsigned char c = (unsigned char)*s;
        out[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    if ((s < end || truncated) && lim > 4) {
        o = o > lim - 4 ? lim - 4 : o;
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* Qdrant's reason for a failed answer, without the API key it may echo. */
static void explain(void *ud, long status, const char *body, size_t len, int truncated, char *out,
                    size_t cap, int *code, int *retryable)
{
    const struct qs_qdrant *q = ud;
    (void)status;
    (void)code;
    (void)retryable;
    server_message(body, len, truncated, out, cap);
    scrub(out, cap, q->api_key);
}

struct req {
    const char *method;               /* GET, POST, DELETE */
    const char *path;                 /* already escaped, starts with '/' */
    const char *op;                   /* description for messages */
    long timeout_ms;                  /* total, -1 none */
    int stall_watch;                  /* download: always; upload: until the body is sent */
    const char *const *extra_headers; /* NULL-terminated, may be NULL */
    size_t body_cap;                  /* largest 2xx answer kept */
    const char *json;                 /* a JSON request body, NULL = none */
    /* download */
    qs_sink_fn sink;
    void *sink_ud;
    /* upload */
    qs_source_fn src;
    void *src_ud;
    int64_t src_len;
    const struct qs_buf *pre, *post; /* multipart framing */
    struct qs_cancel *cancel;
};

/* Runs one exchange on the shared client. On a 2xx answer returns 0 with
 * the answer in *out (a body kept in out->resp unless it went to the sink;
 * release with qs_httpc_req_deinit); otherwise fills err. */
static int perform(struct qs_qdrant *q, const struct req *r, struct qs_httpc_req *out,
                   struct qs_error *err)
{
    struct qs_buf url;
    qs_buf_init(&url);
    qs_httpc_req_init(out, r->method, NULL, r->op);
    if (qs_buf_printf(&url, "%s%s", q->url, r->path) != 0)
        return qs_error_set(err, UV_ENOMEM, "%s: out of memory", r->op);
    const char *hdrs[8];
    size_t n = 0;
    for (size_t i = 0; r->extra_headers != NULL && r->extra_headers[i] != NULL && n < 5; i++)
        hdrs[n++] = r->extra_headers[i];
    if (r->json != NULL && n < 5)
        hdrs[n++] = "Content-Type: application/json";
    if (q->api_key_header != NULL)
        hdrs[n++] = q->api_key_header;
    hdrs[n++] = "Accept: application/json, */*";
    hdrs[n] = NULL;
    struct qs_httpc_limits lim = {
        .connect_timeout_ms = q->connect_timeout_ms,
        .timeout_ms = r->timeout_ms,
        .stall_s = r->stall_watch ? q->low_speed_time_s : 0,
        .stall_until_sent = r->src != NULL,
        .upload_buffer = QD_UPLOAD_BUFFER,
        .download_buffer = QD_DOWNLOAD_BUFFER,
    };
    out->url = url.data;
    out->headers = hdrs;
    out->limits = &lim;
    out->cancel = r->cancel;
    out->resp_max = r->body_cap;
    out->sink = r->sink;
    out->sink_ud = r->sink_ud;
    /* Snapshots must arrive as Qdrant stores them, never compressed. */
    out->refuse_encoded = r->sink != NULL;
    out->src = r->src;
    out->src_ud = r->src_ud;
    out->src_len = r->src_len;
    if (r->json != NULL) {
        out->body = r->json;
        out->body_len = strlen(r->json);
    }
    if (r->pre != NULL) {
        out->src_pre = r->pre->data;
        out->src_pre_len = r->pre->len;
    }
    if (r->post != NULL) {
        out->src_post = r->post->data;
        out->src_post_len = r->post->len;
    }
    out->explain = explain;
    out->explain_ud = q;
    int rc = qs_httpc_perform(NULL, out, err);
    out->url = NULL;
    out->headers = NULL;
    out->limits = NULL;
    qs_buf_free(&url);
    return rc;
}

/* Parses an answer (a->resp) as the Qdrant envelope and returns its
 * "result" (inside *root, owned by the caller) or NULL with err set to
 * QS_EPROTO. */
static const cJSON *parse_result(const struct qs_httpc_req *a, const char *op, cJSON **root,
                                 struct qs_error *err)
{
    *root = NULL;
    if (a->resp_truncated) {
        qs_error_set(err, QS_EPROTO, "%s: answer larger than %u bytes", op, QD_JSON_CAP);
        return NULL;
    }
    cJSON *j = NULL;
    struct qs_error jerr;
    if (qs_json_parse(a->resp.data, a->resp.len, &j, &jerr) != 0) {
        qs_error_set(err, QS_EPROTO, "%s: answer is not JSON: %s", op, jerr.msg);
        return NULL;
    }
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
    if (res == NULL) {
        cJSON_Delete(j);
        qs_error_set(err, QS_EPROTO, "%s: answer has no result (HTTP %ld)", op, a->status);
        return NULL;
    }
    *root = j;
    return res;
}

static int proto_err(struct qs_error *err, const char *op, const char *what)
{
    return qs_error_set(err, QS_EPROTO, "%s: unexpected answer: %s", op, what);
}

/* A non-negative integral JSON number. */
static int json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1.8e19 ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return -1;
    *out = (uint64_t)v->valuedouble;
    return 0;
}

static int parse_snapshot_desc(const cJSON *o, struct qs_snapshot_info *si)
{
    memset(si, 0, sizeof(*si));
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(name) || name->valuestring[0] == '\0' ||
        strlen(name->valuestring) >= sizeof(si->name))
        return -1;
    qs_strlcpy(si->name, name->valuestring, sizeof(si->name));
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(o, "creation_time");
    si->creation_time = -1;
    if (cJSON_IsString(ct)) {
        if (qs_time_parse(ct->valuestring, &si->creation_time) != 0)
            return -1;
    } else if (ct != NULL && !cJSON_IsNull(ct)) {
        return -1;
    }
    if (json_u64(cJSON_GetObjectItemCaseSensitive(o, "size"), &si->size) != 0)
        return -1;
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(o, "checksum");
    if (cJSON_IsString(ck)) {
        /* Qdrant compares case- and whitespace-insensitively; normalise. */
        char tmp[65];
        size_t k = 0;
        for (const char *p = ck->valuestring; *p != '\0'; p++) {
            if (isspace((unsigned char)*p))
                continue;
            if (k >= 64)
                return -1;
            tmp[k++] = (char)tolower((unsigned char)*p);
        }
        tmp[k] = '\0';
        if (!qs_is_sha256_hex(tmp))
            return -1;
        memcpy(si->checksum, tmp, 65);
    } else if (ck != NULL && !cJSON_IsNull(ck)) {
        return -1;
    }
    return 0;
}

/* Builds the description used in messages. */
static void op_name(char *out, size_t cap, const char *verb, const char *collection,
                    const char *snapshot)
{
    char c[120], s[160];
    if (collection != NULL)
        qs_printable(c, sizeof(c), collection, sizeof(c));
    if (snapshot != NULL)
        qs_printable(s, sizeof(s), snapshot, sizeof(s));
    if (collection != NULL && snapshot != NULL)
        snprintf(out, cap, "%s snapshot '%s' of collection '%s'", verb, s, c);
    else if (snapshot != NULL)
        snprintf(out, cap, "%s full snapshot '%s'", verb, s);
    else if (collection != NULL)
        snprintf(out, cap, "%s snapshot of collection '%s'", verb, c);
    else
        snprintf(out, cap, "%s full snapshot", verb);
}

static int check_name(const char *what, const char *v, const char *op, struct qs_error *err)
{
    if (v == NULL || v[0] == '\0')
        return qs_error_set(err, QS_EINVAL, "%s: empty %s", op, what);
    if (strlen(v) > 1024)
        return qs_error_set(err, QS_EINVAL, "%s: %s too long", op, what);
    return 0;
}

/* Clears err, names the operation on snapshot name (borrowed, may be NULL)
 * of collection (borrowed; NULL: a full snapshot) into op (cap bytes) and
 * checks both names with it. */
static int snapshot_op(char *op, size_t cap, const char *verb, const char *collection,
                       const char *name, struct qs_error *err)
{
    qs_error_clear(err);
    op_name(op, cap, verb, collection, name != NULL ? name : "");
    int rc = collection != NULL ? check_name("collection name", collection, op, err) : 0;
    return rc == 0 ? check_name("snapshot name", name, op, err) : rc;
}

/* Clears err, writes "<what> '<collection>'" into op (cap bytes; the name
 * printable and bounded) for the messages of one operation, and checks the
 * collection name (borrowed, may be NULL) with it. */
static int collection_op(char *op, size_t cap, const char *what, const char *collection,
                         struct qs_error *err)
{
    char c[120];
    qs_error_clear(err);
    qs_printable(c, sizeof(c), collection != NULL ? collection : "", sizeof(c));
    snprintf(op, cap, "%s '%s'", what, c);
    return check_name("collection name", collection, op, err);
}

/* "/collections/{c}" + suffix, or root + suffix when c is NULL. */
static int build_path(struct qs_buf *p, const char *collection, const char *mid, const char *name,
                      const char *query)
{
    int rc = 0;
    if (collection != NULL) {
        rc |= qs_buf_printf(p, "/collections/");
        rc |= qs_httpc_escape(p, collection, strlen(collection), 0);
    }
    if (mid != NULL)
        rc |= qs_buf_printf(p, "%s", mid);
    if (name != NULL) {
        rc |= qs_buf_printf(p, "/");
        rc |= qs_httpc_escape(p, name, strlen(name), 0);
    }
    if (query != NULL)
        rc |= qs_buf_printf(p, "%s", query);
    return rc != 0 ? UV_ENOMEM : 0;
}

/* Reads an answer's "result" into out; 0 or a code with err set. */
typedef int (*result_fn)(const cJSON *res, const char *op, void *out, struct qs_error *err);

/* A string vector and the snapshot list, as results. */
struct strv {
    char **v;
    size_t n;
};

struct snapshots {
    struct qs_snapshot_info *v;
    size_t n;
};

/* The string member `field` of every object of arr (borrowed) into o (a
 * fresh NULL-terminated vector), keeping with match_field set only the
 * objects whose match_field equals match; an object without them is the
 * protocol error `missing`. */
static int strings_of(const cJSON *arr, const char *op, const char *field, const char *match_field,
                      const char *match, const char *missing, struct strv *o, struct qs_error *err)
{
    size_t cnt = (size_t)cJSON_GetArraySize(arr), k = 0;
    char **v = calloc(cnt + 1, sizeof(*v));
    if (v == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    int rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, field);
        const cJSON *m =
            match_field != NULL ? cJSON_GetObjectItemCaseSensitive(it, match_field) : NULL;
        if (!cJSON_IsString(nm) || nm->valuestring[0] == '\0' ||
            (match_field != NULL && !cJSON_IsString(m))) {
            rc = proto_err(err, op, missing);
            break;
        }
        if (m != NULL && strcmp(m->valuestring, match) != 0)
            continue;
        if ((v[k] = strdup(nm->valuestring)) == NULL) {
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
            break;
        }
        k++;
    }
    if (rc != 0) {
        qs_qdrant_strv_free(v, k);
        return rc;
    }
    o->v = v;
    o->n = k;
    return 0;
}

static int parse_collections(const cJSON *res, const char *op, void *out, struct qs_error *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(res, "collections");
    if (!cJSON_IsArray(arr))
        return proto_err(err, op, "no collections array");
    return strings_of(arr, op, "name", NULL, NULL, "collection without a name", out, err);
}

static int parse_snapshot_list(const cJSON *res, const char *op, void *out, struct qs_error *err)
{
    struct snapshots *o = out;
    int rc = 0;
    if (!cJSON_IsArray(res)) {
        return proto_err(err, op, "result is not an array");
    }
    size_t cnt = (size_t)cJSON_GetArraySize(res), k = 0;
    struct qs_snapshot_info *v = calloc(cnt + 1, sizeof(*v));
    if (v == NULL) {
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, res)
    {
        if (parse_snapshot_desc(it, &v[k]) != 0) {
            rc = proto_err(err, op, "bad snapshot description");
            break;
        }
        k++;
    }
    if (rc != 0) {
        free(v);
        return rc;
    }
    o->v = v;
    o->n = k;
    return 0;
}

static int parse_snapshot(const cJSON *res, const char *op, void *out, struct qs_error *err)
{
    return parse_snapshot_desc(res, out) != 0 ? proto_err(err, op, "bad snapshot description") : 0;
}

/* A DELETE's {"result": true}. */
static int parse_deleted(const cJSON *res, const char *op, void *out, struct qs_error *err)
{
    (void)out;
    if (cJSON_IsFalse(res))
        return qs_error_set(err, QS_ENOTFOUND, "%s: nothing to delete", op);
    return cJSON_IsTrue(res) ? 0 : proto_err(err, op, "result is not true");
}

static int parse_collection_info(const cJSON *res, const char *op, void *info, struct qs_error *err)
{
    struct qs_collection_info *out = info;
    int rc = 0;
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(res, "points_count");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(res, "config");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(cfg, "params");
    const cJSON *vec = cJSON_GetObjectItemCaseSensitive(params, "vectors");
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(params, "shard_number");
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(params, "sharding_method");
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(params, "replication_factor");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(res, "payload_schema");
    uint64_t shards = 1, replicas = 1;
    if (cJSON_IsNull(pc) || pc == NULL)
        out->points_count = 0;
    else if (json_u64(pc, &out->points_count) != 0)
        rc = proto_err(err, op, "bad points_count");
    if (rc == 0 && sn != NULL && (json_u64(sn, &shards) != 0 || shards > UINT32_MAX))
        rc = proto_err(err, op, "bad shard_number");
    if (rc == 0 && rf != NULL && (json_u64(rf, &replicas) != 0 || replicas > UINT32_MAX))
        rc = proto_err(err, op, "bad replication_factor");
    if (rc == 0 && cJSON_IsString(st))
        qs_strlcpy(out->status, st->valuestring, sizeof(out->status));
    if (rc == 0 && vec != NULL) {
        out->vectors_json = cJSON_PrintUnformatted(vec);
        if (out->vectors_json == NULL)
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    if (rc == 0 && cfg != NULL && !cJSON_IsObject(cfg))
        rc = proto_err(err, op, "config is not an object");
    if (rc == 0 && ps != NULL && !cJSON_IsNull(ps) && !cJSON_IsObject(ps))
        rc = proto_err(err, op, "payload_schema is not an object");
    if (rc == 0 && sm != NULL && (!cJSON_IsString(sm) || strlen(sm->valuestring) >= 16))
        rc = proto_err(err, op, "bad sharding_method");
    if (rc == 0 && sm != NULL)
        qs_strlcpy(out->sharding_method, sm->valuestring, sizeof(out->sharding_method));
    if (rc == 0 && cJSON_IsObject(cfg) && (out->config_json = cJSON_PrintUnformatted(cfg)) == NULL)
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    if (rc == 0 && cJSON_IsObject(ps) &&
        (out->payload_schema_json = cJSON_PrintUnformatted(ps)) == NULL)
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    out->shard_number = (uint32_t)shards;
    out->replication_factor = (uint32_t)replicas;
    if (rc != 0)
        qs_collection_info_deinit(out);
    return rc;
}

/* ---- operations ----------------------------------------------------------- */

/* Where a request goes: build_path()'s pieces. */
struct where {
    const char *collection;
    const char *mid;
    const char *name;
    const char *query;
};

static int json_call_body(struct qs_qdrant *q, const char *method, struct where w, const char *json,
                          const char *op, long timeout_ms, result_fn parse, void *out,
                          struct qs_error *err);

/* A JSON request whose answer's "result" parse reads into out. */
static int json_call(struct qs_qdrant *q, const char *method, struct where w, const char *op,
                     long timeout_ms, result_fn parse, void *out, struct qs_error *err)
{
    return json_call_body(q, method, w, NULL, op, timeout_ms, parse, out, err);
}

/* json_call() with a JSON request body (borrowed; NULL = none). */
static int json_call_body(struct qs_qdrant *q, const char *method, struct where w, const char *json,
                          const char *op, long timeout_ms, result_fn parse, void *out,
                          struct qs_error *err)
{
    struct qs_buf path;
    qs_buf_init(&path);
    if (build_path(&path, w.collection, w.mid, w.name, w.query) != 0) {
        qs_buf_free(&path);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    struct qs_httpc_req a;
    struct req r = {.method = method,
                    .path = path.data,
                    .op = op,
                    .timeout_ms = timeout_ms,
                    .body_cap = QD_JSON_CAP,
                    .json = json};
    int rc = perform(q, &r, &a, err);
    cJSON *root = NULL;
    const cJSON *res = NULL;
    if (rc == 0 && (res = parse_result(&a, op, &root, err)) == NULL)
        rc = err != NULL ? err->code : QS_EPROTO;
    if (rc == 0 && a.status != 200)
        rc = qs_error_set(err, QS_EPROTO, "%s: unexpected HTTP %ld", op, a.status);
    if (rc == 0)
        rc = parse(res, op, out, err);
    cJSON_Delete(root);
    qs_httpc_req_deinit(&a);
    qs_buf_free(&path);
    return rc;
}

int qs_qdrant_list_collections(struct qs_qdrant *q, char ***names, size_t *n, struct qs_error *err)
{
    *names = NULL;
    *n = 0;
    qs_error_clear(err);
    struct strv o = {NULL, 0};
    int rc = json_call(q, "GET", (struct where){NULL, "/collections", NULL, NULL},
                       "list collections", q->request_timeout_ms, parse_collections, &o, err);
    if (rc == 0) {
        *names = o.v;
        *n = o.n;
    }
    return rc;
}

int qs_qdrant_collection_info(struct qs_qdrant *q, const char *collection,
                              struct qs_collection_info *out, struct qs_error *err)
{
    char op[200];
    memset(out, 0, sizeof(*out));
    int rc = collection_op(op, sizeof(op), "get collection", collection, err);
    if (rc != 0)
        return rc;
    return json_call(q, "GET", (struct where){collection, NULL, NULL, NULL}, op,
                     q->request_timeout_ms, parse_collection_info, out, err);
}

int qs_qdrant_create_snapshot(struct qs_qdrant *q, const char *collection,
                              struct qs_snapshot_info *out, struct qs_error *err)
{
    char op[300];
    memset(out, 0, sizeof(*out));
    qs_error_clear(err);
    op_name(op, sizeof(op), "create", collection, NULL);
    int rc = collection != NULL ? check_name("collection name", collection, op, err) : 0;
    if (rc != 0)
        return rc;
    return json_call(q, "POST", (struct where){collection, "/snapshots", NULL, "?wait=true"}, op,
                     q->snapshot_timeout_ms, parse_snapshot, out, err);
}

int qs_qdrant_list_snapshots(struct qs_qdrant *q, const char *collection,
                             struct qs_snapshot_info **out, size_t *n, struct qs_error *err)
{
    char op[300];
    *out = NULL;
    *n = 0;
    qs_error_clear(err);
    if (collection != NULL) {
        char c[120];
        qs_printable(c, sizeof(c), collection, sizeof(c));
        snprintf(op, sizeof(op), "list snapshots of collection '%s'", c);
    } else {
        snprintf(op, sizeof(op), "list full snapshots");
    }
    int rc = collection != NULL ? check_name("collection name", collection, op, err) : 0;
    if (rc != 0)
        return rc;
    struct snapshots o = {NULL, 0};
    rc = json_call(q, "GET", (struct where){collection, "/snapshots", NULL, NULL}, op,
                   q->request_timeout_ms, parse_snapshot_list, &o, err);
    if (rc == 0) {
        *out = o.v;
        *n = o.n;
    }
    return rc;
}

/* Hashes what a download hands on to the caller's sink, after checking the
 * tar structure when tar is set: a stream that is not a tar archive then
 * stops at its first bad header. */
struct hashing_sink {
    struct qs_sha256 sha;
    struct qs_tarcheck *tar; /* borrowed; NULL: no check */
    qs_sink_fn sink;
    void *ud;
    struct qs_error *err;
};

static int hashing_sink(const void *data, size_t len, void *ud)
{
    struct hashing_sink *h = ud;
    if (h->tar != NULL) {
        int rc = qs_tarcheck_feed(h->tar, data, len, h->err);
        if (rc != 0)
            return rc;
    }
    qs_sha256_update(&h->sha, data, len);
    return h->sink(data, len, h->ud);
}

/* GET of the path build_path() makes of collection, mid and name (all
 * borrowed) streamed into sink through SHA-256 (and the tar check when tar,
 * borrowed, is set); on success the size and digest go to size_out and
 * sha256_out (both optional). */
static int download_hashed(struct qs_qdrant *q, const char *op, const char *collection,
                           const char *mid, const char *name, struct qs_tarcheck *tar,
                           qs_sink_fn sink, void *ud, struct qs_cancel *cancel, uint64_t *size_out,
                           char *sha256_out, struct qs_error *err)
{
    if (sink == NULL)
        return qs_error_set(err, QS_EINVAL, "%s: no sink", op);
    struct hashing_sink hs = {.tar = tar, .sink = sink, .ud = ud, .err = err};
    struct qs_buf p;
    qs_buf_init(&p);
    if (build_path(&p, collection, mid, name, NULL) != 0 || qs_sha256_init(&hs.sha) != 0) {
        qs_buf_free(&p);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    struct qs_httpc_req a;
    struct req r = {.method = "GET",
                    .path = p.data,
                    .op = op,
                    .timeout_ms = -1,
                    .stall_watch = 1,
                    .body_cap = QD_SMALL_CAP,
                    .sink = hashing_sink,
                    .sink_ud = &hs,
                    .cancel = cancel};
    int rc = perform(q, &r, &a, err);
    if (rc == 0 && a.status != 200)
        rc = qs_error_set(err, QS_EPROTO, "%s: unexpected HTTP %ld", op, a.status);
    if (rc == 0 && tar != NULL && qs_tarcheck_finish(tar, err) != 0) {
        /* Qdrant ends the body cleanly when its archive writer fails after
         * the headers were sent: the cut tar is the only sign. Another
         * attempt may well succeed, as after a cut connection. */
        qs_error_prefix(err, "%s: Qdrant ended the stream before the end of the archive", op);
        rc = QS_EPROTO;
        if (err != NULL)
            err->retryable = 1;
    }
    if (rc == 0) {
        char sha[65];
        qs_sha256_final(&hs.sha, sha);
        if (sha256_out != NULL)
            memcpy(sha256_out, sha, sizeof(sha));
        if (size_out != NULL)
            *size_out = a.received;
    }
    qs_sha256_deinit(&hs.sha);
    qs_httpc_req_deinit(&a);
    qs_buf_free(&p);
    return rc;
}

int qs_qdrant_download_snapshot(struct qs_qdrant *q, const char *collection, const char *name,
                                qs_sink_fn sink, void *ud, struct qs_cancel *cancel,
                                uint64_t *size_out, char *sha256_out, struct qs_error *err)
{
    char op[300];
    int rc = snapshot_op(op, sizeof(op), "download", collection, name, err);
    if (rc != 0)
        return rc;
    return download_hashed(q, op, collection, "/snapshots", name, NULL, sink, ud, cancel, size_out,
                           sha256_out, err);
}

/* Filenames go into a quoted multipart header: keep them plain. */
static int check_filename(const char *f)
{
    if (f == NULL || f[0] == '\0' || strlen(f) > 255)
        return -1;
    for (const char *p = f; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || c == '/')
            return -1;
    }
    return 0;
}

/* A multipart/form-data upload of one snapshot (part "snapshot") to the
 * collection's `mid` endpoint ("/snapshots/upload" or
 * "/shards/{id}/snapshots/upload"), after the public functions checked
 * their arguments. result_null: the answer's result is null (shard
 * uploads), not true. */
static int upload_multipart(struct qs_qdrant *q, const char *op, const char *collection,
                            const char *mid, const char *filename, qs_source_fn src, void *ud,
                            int64_t length, const char *checksum, const char *priority,
                            int result_null, struct qs_cancel *cancel, struct qs_error *err)
{
    int rc = check_name("collection name", collection, op, err);
    if (rc != 0)
        return rc;
    if (check_filename(filename) != 0)
        return qs_error_set(err, QS_EINVAL, "%s: invalid file name", op);
    if (src == NULL || length < -1)
        return qs_error_set(err, QS_EINVAL, "%s: no source or bad length", op);
    if (checksum != NULL && !qs_is_sha256_hex(checksum))
        return qs_error_set(err, QS_EINVAL, "%s: checksum is not a SHA-256 hex digest", op);
    if (priority != NULL && strcmp(priority, "snapshot") != 0 && strcmp(priority, "replica") != 0 &&
        strcmp(priority, "no_sync") != 0)
        return qs_error_set(err, QS_EINVAL, "%s: priority must be snapshot, replica or no_sync",
                            op);

    unsigned char rnd[16];
    char rhex[33], boundary[48];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return qs_error_set(err, QS_EIO, "%s: no randomness for the multipart boundary", op);
    qs_hex(rnd, sizeof(rnd), rhex);
    snprintf(boundary, sizeof(boundary), "qsnap-%s", rhex);

    struct qs_buf pre, post, p, ct;
    qs_buf_init(&pre);
    qs_buf_init(&post);
    qs_buf_init(&p);
    qs_buf_init(&ct);
    struct qs_httpc_req a;
    qs_httpc_req_init(&a, "POST", NULL, op);
    int e = 0;
    e |= qs_buf_printf(&pre,
                       "--%s\r\nContent-Disposition: form-data; name=\"snapshot\"; "
                       "filename=\"%s\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                       boundary, filename);
    e |= qs_buf_printf(&post, "\r\n--%s--\r\n", boundary);
    e |= build_path(&p, collection, mid, NULL, "?wait=true");
    if (priority != NULL)
        e |= qs_buf_printf(&p, "&priority=%s", priority);
    if (checksum != NULL)
        e |= qs_buf_printf(&p, "&checksum=%s", checksum);
    e |= qs_buf_printf(&ct, "Content-Type: multipart/form-data; boundary=%s", boundary);
    if (e != 0) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto out;
    }
    const char *hv[] = {ct.data, q->expect_100 ? "Expect: 100-continue" : "Expect:", NULL};
    struct req r = {.method = "POST",
                    .path = p.data,
                    .op = op,
                    .timeout_ms = q->snapshot_timeout_ms,
                    .stall_watch = 1,
                    .extra_headers = hv,
                    .body_cap = QD_JSON_CAP,
                    .src = src,
                    .src_ud = ud,
                    .src_len = length,
                    .pre = &pre,
                    .post = &post,
                    .cancel = cancel};
    rc = perform(q, &r, &a, err);
    if (rc == 0) {
        cJSON *root = NULL;
        const cJSON *res = parse_result(&a, op, &root, err);
        if (res == NULL)
            rc = err != NULL ? err->code : QS_EPROTO;
        else if (a.status != 200 || (result_null ? !cJSON_IsNull(res) : !cJSON_IsTrue(res)))
            rc = proto_err(err, op, result_null ? "result is not null" : "result is not true");
        cJSON_Delete(root);
    }
out:
    qs_httpc_req_deinit(&a);
    qs_buf_free(&pre);
    qs_buf_free(&post);
    qs_buf_free(&p);
    qs_buf_free(&ct);
    return rc;
}

int qs_qdrant_upload_snapshot(struct qs_qdrant *q, const char *collection, const char *filename,
                              qs_source_fn src, void *ud, int64_t length, const char *checksum,
                              const char *priority, struct qs_cancel *cancel, struct qs_error *err)
{
    char op[300], c[120], f[160];
    qs_error_clear(err);
    qs_printable(c, sizeof(c), collection ? collection : "", sizeof(c));
    qs_printable(f, sizeof(f), filename ? filename : "", sizeof(f));
    snprintf(op, sizeof(op), "upload snapshot '%s' to collection '%s'", f, c);
    return upload_multipart(q, op, collection, "/snapshots/upload", filename, src, ud, length,
                            checksum, priority, 0, cancel, err);
}

int qs_qdrant_upload_shard(struct qs_qdrant *q, const char *collection, uint32_t shard_id,
                           const char *filename, qs_source_fn src, void *ud, int64_t length,
                           const char *checksum, const char *priority, struct qs_cancel *cancel,
                           struct qs_error *err)
{
    char op[300], c[120], f[160], mid[64];
    qs_error_clear(err);
    qs_printable(c, sizeof(c), collection ? collection : "", sizeof(c));
    qs_printable(f, sizeof(f), filename ? filename : "", sizeof(f));
    snprintf(op, sizeof(op), "upload shard %" PRIu32 " snapshot '%s' to collection '%s'", shard_id,
             f, c);
    snprintf(mid, sizeof(mid), "/shards/%" PRIu32 "/snapshots/upload", shard_id);
    return upload_multipart(q, op, collection, mid, filename, src, ud, length, checksum, priority,
                            1, cancel, err);
}

int qs_qdrant_delete_snapshot(struct qs_qdrant *q, const char *collection, const char *name,
                              struct qs_error *err)
{
    char op[300];
    int rc = snapshot_op(op, sizeof(op), "delete", collection, name, err);
    if (rc != 0)
        return rc;
    return json_call(q, "DELETE", (struct where){collection, "/snapshots", name, "?wait=true"}, op,
                     q->request_timeout_ms, parse_deleted, NULL, err);
}

int qs_qdrant_delete_collection(struct qs_qdrant *q, const char *collection, struct qs_error *err)
{
    char op[200];
    int rc = collection_op(op, sizeof(op), "delete collection", collection, err);
    if (rc != 0)
        return rc;
    return json_call(q, "DELETE", (struct where){collection, NULL, NULL, NULL}, op,
                     q->request_timeout_ms, parse_deleted, NULL, err);
}

int qs_qdrant_probe(struct qs_qdrant *q, struct qs_error *err)
{
    qs_error_clear(err);
    struct qs_httpc_req a;
    struct req r = {.method = "GET",
                    .path = "/readyz",
                    .op = "Qdrant readiness probe",
                    .timeout_ms = q->request_timeout_ms,
                    .body_cap = QD_SMALL_CAP};
    int rc = perform(q, &r, &a, err);
    if (rc == 0 && a.status != 200)
        rc = qs_error_set_class(err, QS_EHTTP, a.status, 0, "%s: HTTP %ld", r.op, a.status);
    qs_httpc_req_deinit(&a);
    return rc;
}

int qs_qdrant_version(struct qs_qdrant *q, char *out, size_t cap, struct qs_error *err)
{
    static const char op[] = "get Qdrant version";
    qs_error_clear(err);
    if (cap > 0)
        out[0] = '\0';
    struct qs_httpc_req a;
    struct req r = {.method = "GET",
                    .path = "/",
                    .op = op,
                    .timeout_ms = q->request_timeout_ms,
                    .body_cap = QD_SMALL_CAP};
    int rc = perform(q, &r, &a, err);
    if (rc == 0) {
        cJSON *j = NULL;
        qs_json_parse(a.resp.data, a.resp.len, &j, NULL);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
        if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
            rc = proto_err(err, op, "no version");
        else if (qs_strlcpy(out, v->valuestring, cap) >= cap)
            rc = qs_error_set(err, QS_ETOOBIG, "%s: version string too long", op);
        cJSON_Delete(j);
    }
    qs_httpc_req_deinit(&a);
    return rc;
}

/* ---- shard snapshots streamed ----------------------------------------------- */

int qs_qdrant_stream_shard(struct qs_qdrant *q, const char *collection, uint32_t shard_id,
                           qs_sink_fn sink, void *ud, struct qs_cancel *cancel, uint64_t *size_out,
                           char *sha256_out, struct qs_error *err)
{
    char op[300], what[64];
    snprintf(what, sizeof(what), "stream shard %" PRIu32 " of collection", shard_id);
    int rc = collection_op(op, sizeof(op), what, collection, err);
    if (rc != 0)
        return rc;
    char mid[40];
    snprintf(mid, sizeof(mid), "/shards/%" PRIu32 "/snapshot", shard_id);
    struct qs_tarcheck tar;
    qs_tarcheck_init(&tar);
    return download_hashed(q, op, collection, mid, NULL, &tar, sink, ud, cancel, size_out,
                           sha256_out, err);
}

/* ---- collection fidelity: creation, payload indexes, aliases ------------------ */

static int parse_true(const cJSON *res, const char *op, void *out, struct qs_error *err)
{
    (void)out;
    return cJSON_IsTrue(res) ? 0 : proto_err(err, op, "result is not true");
}

int qs_qdrant_create_collection(struct qs_qdrant *q, const char *collection, const char *body_json,
                                struct qs_error *err)
{
    char op[200];
    int rc = collection_op(op, sizeof(op), "create collection", collection, err);
    if (rc == 0 && body_json == NULL)
        rc = qs_error_set(err, QS_EINVAL, "%s: no body", op);
    if (rc != 0)
        return rc;
    return json_call_body(q, "PUT", (struct where){collection, NULL, NULL, NULL}, body_json, op,
                          q->request_timeout_ms, parse_true, NULL, err);
}

static int parse_completed(const cJSON *res, const char *op, void *out, struct qs_error *err)
{
    (void)out;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
    if (!cJSON_IsString(st))
        return proto_err(err, op, "no status");
    if (strcmp(st->valuestring, "completed") != 0)
        return qs_error_set(err, QS_EPROTO, "%s: Qdrant answered status '%.40s', not completed", op,
                            st->valuestring);
    return 0;
}

int qs_qdrant_create_index(struct qs_qdrant *q, const char *collection, const char *field,
                           const char *schema_json, struct qs_error *err)
{
    char op[300], c[120], f[120];
    qs_error_clear(err);
    qs_printable(c, sizeof(c), collection ? collection : "", sizeof(c));
    qs_printable(f, sizeof(f), field ? field : "", sizeof(f));
    snprintf(op, sizeof(op), "create payload index '%s' of collection '%s'", f, c);
    int rc = check_name("collection name", collection, op, err);
    if (rc == 0)
        rc = check_name("field name", field, op, err);
    if (rc != 0)
        return rc;
    cJSON *schema = NULL;
    struct qs_error jerr;
    if (schema_json == NULL || qs_json_parse(schema_json, strlen(schema_json), &schema, &jerr) != 0)
        return qs_error_set(err, QS_EINVAL, "%s: the field schema is not JSON", op);
    cJSON *body = cJSON_CreateObject();
    char *text = NULL;
    if (body != NULL && cJSON_AddStringToObject(body, "field_name", field) != NULL &&
        cJSON_AddItemToObject(body, "field_schema", schema)) {
        schema = NULL;
        text = cJSON_PrintUnformatted(body);
    }
    cJSON_Delete(schema);
    cJSON_Delete(body);
    if (text == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    /* wait=true: the call returns once every shard built the index (Qdrant's
     * default is not to wait). Building may take as long as a snapshot. */
    rc = json_call_body(q, "PUT", (struct where){collection, "/index", NULL, "?wait=true"}, text,
                        op, q->snapshot_timeout_ms, parse_completed, NULL, err);
    cJSON_free(text);
    return rc;
}

struct alias_list {
    const char *collection;
    struct strv names;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_aliases(const cJSON *res, const char *op, void *out, struct qs_error *err)
{
    struct alias_list *o = out;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(res, "aliases");
    if (!cJSON_IsArray(arr))
        return proto_err(err, op, "no aliases array");
    int rc = strings_of(arr, op, "alias_name", "collection_name", o->collection,
                        "alias without a name or collection", &o->names, err);
    if (rc == 0)
        qsort(o->names.v, o->names.n, sizeof(*o->names.v), cmp_str);
    return rc;
}

int qs_qdrant_collection_aliases(struct qs_qdrant *q, const char *collection, char ***names,
                                 size_t *n, struct qs_error *err)
{
    char op[200];
    *names = NULL;
    *n = 0;
    int rc = collection_op(op, sizeof(op), "list aliases of collection", collection, err);
    if (rc != 0)
        return rc;
    struct alias_list o = {collection, {NULL, 0}};
    rc = json_call(q, "GET", (struct where){collection, "/aliases", NULL, NULL}, op,
                   q->request_timeout_ms, parse_aliases, &o, err);
    if (rc == 0) {
        *names = o.names.v;
        *n = o.names.n;
    }
    return rc;
}

int qs_qdrant_create_aliases(struct qs_qdrant *q, const char *collection, char *const *aliases,
                             size_t n, struct qs_error *err)
{
    char op[200], what[64];
    snprintf(what, sizeof(what), "point %zu aliases at collection", n);
    int rc = collection_op(op, sizeof(op), what, collection, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = check_name("alias name", aliases[i], op, err);
    if (rc != 0 || n == 0)
        return rc;
    cJSON *body = cJSON_CreateObject();
    cJSON *actions = body != NULL ? cJSON_AddArrayToObject(body, "actions") : NULL;
    int bad = actions == NULL;
    for (size_t i = 0; !bad && i < n; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON *ca = a != NULL ? cJSON_AddObjectToObject(a, "create_alias") : NULL;
        bad = ca == NULL || cJSON_AddStringToObject(ca, "collection_name", collection) == NULL ||
              cJSON_AddStringToObject(ca, "alias_name", aliases[i]) == NULL ||
              !cJSON_AddItemToArray(actions, a);
        if (bad)
            cJSON_Delete(a);
    }
    char *text = bad ? NULL : cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (text == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    /* One request: Qdrant applies the actions under one lock (no reader sees
     * some aliases moved and others not); create_alias re-points an alias
     * that exists. */
    rc = json_call_body(q, "POST", (struct where){NULL, "/collections/aliases", NULL, NULL}, text,
                        op, q->request_timeout_ms, parse_true, NULL, err);
    cJSON_free(text);
    return rc;
}

/* ---- snapshot names ---------------------------------------------------- */

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* "YYYY-MM-DD-HH-MM-SS" (exactly 19 chars) -> epoch seconds. */
static int parse_name_ts(const char *s, int64_t *out)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int Y, M, D, h, m, sec;
    if (digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
        digits(s + 8, 2, &D) || s[10] != '-' || digits(s + 11, 2, &h) || s[13] != '-' ||
        digits(s + 14, 2, &m) || s[16] != '-' || digits(s + 17, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] + (M == 2 && leap(Y)) || h > 23 || m > 59 ||
        sec > 60)
        return -1;
    *out = qs_timegm(Y, M, D, h, m, sec);
    return 0;
}

int qs_snapshot_name_parse(const char *name, char *collection, size_t cap, uint64_t *peer_id,
                           int64_t *ts)
{
    static const char ext[] = ".snapshot";
    static const char full[] = "full-snapshot";
    const size_t el = sizeof(ext) - 1, tl = 19;
    if (collection != NULL && cap > 0)
        collection[0] = '\0';
    if (name == NULL)
        return QS_EINVAL;
    size_t n = strlen(name);
    /* At least "X-" + timestamp + ext. */
    if (n < el + tl + 2 || strcmp(name + n - el, ext) != 0)
        return QS_EINVAL;
    const char *tsp = name + n - el - tl;
    int64_t t;
    if (tsp[-1] != '-' || parse_name_ts(tsp, &t) != 0)
        return QS_EINVAL;
    size_t rest = (size_t)(tsp - 1 - name); /* bytes before "-TIMESTAMP" */
    /* Collection snapshot: "{collection}-{peer_id}". */
    size_t i = rest;
    while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9')
        i--;
    uint64_t peer = 0;
    size_t clen;
    if (i < rest && i >= 2 && name[i - 1] == '-') {
        if (rest - i > 20)
            return QS_EINVAL;
        for (size_t k = i; k < rest; k++) {
            unsigned d = (unsigned)(name[k] - '0');
            if (peer > (UINT64_MAX - d) / 10)
                return QS_EINVAL;
            peer = peer * 10 + d;
        }
        clen = i - 1;
    } else if (rest == sizeof(full) - 1 && memcmp(name, full, rest) == 0) {
        clen = 0;
    } else {
        return QS_EINVAL;
    }
    if (collection != NULL) {
        if (clen >= cap)
            return QS_ETOOBIG;
        memcpy(collection, name, clen);
        collection[clen] = '\0';
    }
    if (peer_id != NULL)
        *peer_id = peer;
    if (ts != NULL)
        *ts = t;
    return 0;
}

static int64_t info_time(const struct qs_snapshot_info *s)
{
    int64_t t;
    if (qs_snapshot_name_parse(s->name, NULL, 0, NULL, &t) == 0)
        return t;
    return s->creation_time;
}

static int cmp_newest_first(const void *a, const void *b)
{
    const struct qs_snapshot_info *x = a, *y = b;
    int64_t tx = info_time(x), ty = info_time(y);
    if (tx != ty)
        return tx > ty ? -1 : 1;
    return -strcmp(x->name, y->name);
}

void qs_snapshot_infos_sort_newest_first(struct qs_snapshot_info *v, size_t n)
{
    if (v != NULL && n > 1)
        qsort(v, n, sizeof(*v), cmp_newest_first);
}

int qs_qdrant_parse_answer(enum qs_qdrant_answer kind, const char *body, size_t len,
                           struct qs_error *err)
{
    static const char op[] = "parse answer";
    qs_error_clear(err);
    int rc = 0;
    if (kind == QS_QDRANT_ANSWER_ERROR) {
        char msg[QD_MSG_MAX + 1];
        server_message(body, len, 0, msg, sizeof(msg));
        return qs_error_set(err, QS_EHTTP, "%s", msg);
    }
    struct qs_httpc_req a; /* the answer as the client would have it */
    qs_httpc_req_init(&a, "GET", NULL, op);
    a.status = 200;
    if (len > 0 && qs_buf_append(&a.resp, body, len) != 0)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    cJSON *root = NULL;
    const cJSON *res = parse_result(&a, op, &root, err);
    qs_httpc_req_deinit(&a);
    if (res == NULL)
        return err != NULL ? err->code : QS_EPROTO;
    union {
        struct qs_snapshot_info si;
        struct snapshots list;
        struct strv names;
        struct qs_collection_info ci;
    } out;
    memset(&out, 0, sizeof(out));
    switch (kind) {
    case QS_QDRANT_ANSWER_SNAPSHOT:
        rc = parse_snapshot(res, op, &out.si, err);
        break;
    case QS_QDRANT_ANSWER_SNAPSHOTS:
        rc = parse_snapshot_list(res, op, &out.list, err);
        qs_snapshot_infos_sort_newest_first(out.list.v, out.list.n);
        free(out.list.v);
        break;
    case QS_QDRANT_ANSWER_COLLECTIONS:
        rc = parse_collections(res, op, &out.names, err);
        qs_qdrant_strv_free(out.names.v, out.names.n);
        break;
    case QS_QDRANT_ANSWER_COLLECTION:
        rc = parse_collection_info(res, op, &out.ci, err);
        qs_collection_info_deinit(&out.ci);
        break;
    default:
        rc = qs_error_set(err, QS_EINVAL, "%s: unknown kind", op);
        break;
    }
    cJSON_Delete(root);
    return rc;
}

/* ---- raw answers (read by the cluster module) ------------------------------ */

int qs_qdrant_get_raw(struct qs_qdrant *q, const char *collection, const char *suffix,
                      const char *op, struct qs_buf *body, struct qs_error *err)
{
    qs_error_clear(err);
    if (op == NULL)
        op = "Qdrant request";
    int rc = collection != NULL ? check_name("collection name", collection, op, err) : 0;
    if (rc == 0 && (suffix == NULL || suffix[0] != '/'))
        rc = qs_error_set(err, QS_EINVAL, "%s: the path must start with '/'", op);
    if (rc != 0)
        return rc;
    struct qs_buf path;
    qs_buf_init(&path);
    if (build_path(&path, collection, suffix, NULL, NULL) != 0) {
        qs_buf_free(&path);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    struct qs_httpc_req a;
    struct req r = {.method = "GET",
                    .path = path.data,
                    .op = op,
                    .timeout_ms = q->request_timeout_ms,
                    .body_cap = QD_JSON_CAP};
    rc = perform(q, &r, &a, err);
    if (rc == 0 && a.status != 200)
        rc = qs_error_set(err, QS_EPROTO, "%s: unexpected HTTP %ld", op, a.status);
    if (rc == 0 && a.resp_truncated)
        rc = qs_error_set(err, QS_EPROTO, "%s: answer larger than %u bytes", op, QD_JSON_CAP);
    if (rc == 0 && a.resp.len > 0 && qs_buf_append(body, a.resp.data, a.resp.len) != 0)
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    qs_httpc_req_deinit(&a);
    qs_buf_free(&path);
    return rc;
}
