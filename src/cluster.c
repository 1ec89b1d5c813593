/* Qdrant cluster mode: GET /cluster, GET /collections/{c}/cluster, peers'
 * REST addresses and the leader rule (see cluster.h). */
#include "qsnap/cluster.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>
#include <uv.h>

#include "qsnap/util.h"

/* ---- exact numbers ------------------------------------------------------------ */

/* A decimal u64 without sign, leading zeros, fraction or exponent. */
static int dec_u64(const char *s, uint64_t *out)
{
    return qs_parse_u64_dec(s, out) == 0 ? 0 : -1;
}

/* Number items of the tree under item, in document order (pre-order). */
struct numbers {
    cJSON **v;
    size_t n, cap;
};

static int collect_numbers(cJSON *item, struct numbers *ns)
{
    for (cJSON *c = item; c != NULL; c = c->next) {
        if (cJSON_IsNumber(c)) {
            if (ns->n == ns->cap) {
                size_t cap = ns->cap > 0 ? ns->cap * 2 : 32;
                cJSON **v = realloc(ns->v, cap * sizeof(*v));
                if (v == NULL)
                    return UV_ENOMEM;
                ns->v = v;
                ns->cap = cap;
            }
            ns->v[ns->n++] = c;
        }
        if (c->child != NULL && collect_numbers(c->child, ns) != 0)
            return UV_ENOMEM;
    }
    return 0;
}

/* cJSON keeps a number only as a double, which cannot hold every u64. The
 * literal text of each number (text, len bytes, the document root was parsed
 * from) is attached to its item as valuestring (allocated with cJSON's
 * allocator, freed by cJSON_Delete), so that num_u64() reads it exactly.
 * The k-th number literal outside strings is the k-th number item in
 * document order. */
static int keep_number_text(cJSON *root, const char *text, size_t len, const char *op,
                            struct qs_error *err)
{
    struct numbers ns = {NULL, 0, 0};
    if (collect_numbers(root, &ns) != 0) {
        free(ns.v);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    size_t k = 0;
    int in_string = 0, rc = 0;
    for (size_t i = 0; i < len && rc == 0; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
            continue;
        }
        if (c != '-' && (c < '0' || c > '9'))
            continue;
        size_t j = i;
        while (j < len && text[j] != '\0' && strchr("0123456789+-.eE", text[j]) != NULL)
            j++;
        if (k >= ns.n) {
            rc = qs_error_set(err, QS_EPROTO, "%s: number literals do not match the JSON", op);
            break;
        }
        char *s = cJSON_malloc(j - i + 1);
        if (s == NULL) {
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
            break;
        }
        memcpy(s, text + i, j - i);
        s[j - i] = '\0';
        ns.v[k++]->valuestring = s;
        i = j - 1;
    }
    if (rc == 0 && k != ns.n)
        rc = qs_error_set(err, QS_EPROTO, "%s: number literals do not match the JSON", op);
    free(ns.v);
    return rc;
}

/* A JSON number that is an exact u64 (needs keep_number_text()). */
static int num_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuestring == NULL)
        return -1;
    return dec_u64(v->valuestring, out);
}

static int proto(struct qs_error *err, const char *op, const char *what)
{
    return qs_error_set(err, QS_EPROTO, "%s: unexpected answer: %s", op, what);
}

/* Parses an answer body with exact numbers; returns its "result" (inside
 * *root, owned by the caller) or NULL with err set. */
static cJSON *parse_envelope(const char *body, size_t len, const char *op, cJSON **root,
                             struct qs_error *err)
{
    *root = NULL;
    cJSON *j = NULL;
    struct qs_error jerr;
    qs_error_clear(&jerr);
    if (qs_json_parse(body, len, &j, &jerr) != 0) {
        qs_error_set(err, QS_EPROTO, "%s: answer is not JSON: %s", op, jerr.msg);
        return NULL;
    }
    if (keep_number_text(j, body, len, op, err) != 0) {
        cJSON_Delete(j);
        return NULL;
    }
    cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
    if (!cJSON_IsObject(res)) {
        cJSON_Delete(j);
        proto(err, op, res == NULL ? "no result" : "result is not an object");
        return NULL;
    }
    *root = j;
    return res;
}

/* An optional field: 0 when absent or null (*out = def), 0 when a u64,
 * -1 otherwise. */
static int opt_u64(const cJSON *obj, const char *key, uint64_t def, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = def;
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    return num_u64(v, out);
}

/* ---- REST addresses ---------------------------------------------------------- */

int qs_cluster_rest_url(const char *p2p_uri, const char *qdrant_url, int rest_port, char *out,
                        size_t cap)
{
    if (cap > 0)
        out[0] = '\0';
    const char *scheme;
    if (qdrant_url != NULL && strncasecmp(qdrant_url, "https://", 8) == 0)
        scheme = "https";
    else if (qdrant_url != NULL && strncasecmp(qdrant_url, "http://", 7) == 0)
        scheme = "http";
    else
        return QS_EINVAL;
    if (p2p_uri == NULL || rest_port < 1 || rest_port > 65535)
        return QS_EINVAL;
    const char *sep = strstr(p2p_uri, "://");
    if (sep == NULL || sep == p2p_uri)
        return QS_EINVAL;
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    /* user:pass@ (never expected) is dropped, not carried over. */
    for (size_t i = alen; i > 0; i--) {
        if (auth[i - 1] == '@') {
            auth += i;
            alen -= i;
            break;
        }
    }
    size_t hlen;
    if (alen > 0 && auth[0] == '[') {
        const char *rb = memchr(auth, ']', alen);
        if (rb == NULL)
            return QS_EINVAL;
        hlen = (size_t)(rb + 1 - auth);
        if (hlen < 3 || (hlen < alen && rb[1] != ':'))
            return QS_EINVAL;
        for (size_t i = 1; i + 1 < hlen; i++) {
            unsigned char c = (unsigned char)auth[i];
            if (!isxdigit(c) && c != ':' && c != '.' && c != '%' && !isalnum(c) && c != '-' &&
                c != '_')
                return QS_EINVAL;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        hlen = colon != NULL ? (size_t)(colon - auth) : alen;
        /* An IPv6 address without brackets cannot be told from its port. */
        if (colon != NULL && memchr(colon + 1, ':', alen - hlen - 1) != NULL)
            return QS_EINVAL;
        for (size_t i = 0; i < hlen; i++) {
            unsigned char c = (unsigned char)auth[i];
            if (!isalnum(c) && c != '.' && c != '-' && c != '_')
                return QS_EINVAL;
        }
    }
    if (hlen == 0)
        return QS_EINVAL;
    int n = snprintf(out, cap, "%s://%.*s:%d", scheme, (int)hlen, auth, rest_port);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return QS_ETOOBIG;
    }
    return 0;
}

/* ---- GET /cluster --------------------------------------------------------------- */

void qs_cluster_info_deinit(struct qs_cluster_info *ci)
{
    if (ci == NULL)
        return;
    for (size_t i = 0; i < ci->npeers; i++) {
        free(ci->peers[i].uri);
        free(ci->peers[i].rest_url);
    }
    free(ci->peers);
    memset(ci, 0, sizeof(*ci));
}

const struct qs_cluster_peer *qs_cluster_info_peer(const struct qs_cluster_info *ci, uint64_t id)
{
    for (size_t i = 0; ci != NULL && i < ci->npeers; i++)
        if (ci->peers[i].id == id)
            return &ci->peers[i];
    return NULL;
}

static int cmp_peer(const void *a, const void *b)
{
    const struct qs_cluster_peer *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int parse_peers(const cJSON *peers, const char *qdrant_url, int rest_port, const char *op,
                       struct qs_cluster_info *ci, struct qs_error *err)
{
    if (!cJSON_IsObject(peers))
        return proto(err, op, "peers is not an object");
    size_t n = (size_t)cJSON_GetArraySize(peers);
    ci->peers = calloc(n + 1, sizeof(*ci->peers));
    if (ci->peers == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    const cJSON *p;
    cJSON_ArrayForEach(p, peers)
    {
        struct qs_cluster_peer *peer = &ci->peers[ci->npeers];
        const cJSON *uri = cJSON_GetObjectItemCaseSensitive(p, "uri");
        if (dec_u64(p->string, &peer->id) != 0) {
            char k[48];
            return qs_error_set(err, QS_EPROTO, "%s: unexpected answer: peer id '%s' is not a u64",
                                op, qs_printable(k, sizeof(k), p->string, 24));
        }
        if (!cJSON_IsString(uri) || uri->valuestring[0] == '\0')
            return qs_error_set(err, QS_EPROTO,
                                "%s: unexpected answer: peer %" PRIu64 " has no uri", op, peer->id);
        char url[300];
        peer->uri = strdup(uri->valuestring);
        if (peer->uri == NULL)
            return qs_error_set(err, UV_ENOMEM, "out of memory");
        ci->npeers++;
        if (qs_cluster_rest_url(peer->uri, qdrant_url, rest_port, url, sizeof(url)) == 0 &&
            (peer->rest_url = strdup(url)) == NULL)
            return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    qsort(ci->peers, ci->npeers, sizeof(*ci->peers), cmp_peer);
    return 0;
}

/* Where the peers' REST addresses come from (parse_cluster_result's ctx). */
struct rest_of_peers {
    const char *qdrant_url;
    int rest_port;
};

static int parse_cluster_result(const cJSON *res, const char *op, void *out, const void *ctx,
                                struct qs_error *err)
{
    struct qs_cluster_info *ci = out;
    const char *qdrant_url = ((const struct rest_of_peers *)ctx)->qdrant_url;
    int rest_port = ((const struct rest_of_peers *)ctx)->rest_port;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
    if (!cJSON_IsString(st))
        return proto(err, op, "no status");
    if (strcmp(st->valuestring, "disabled") == 0)
        return 0;
    if (strcmp(st->valuestring, "enabled") != 0) {
        char s[48];
        return qs_error_set(err, QS_EPROTO,
                            "%s: unexpected answer: status '%s' is neither enabled nor disabled",
                            op, qs_printable(s, sizeof(s), st->valuestring, 24));
    }
    ci->enabled = 1;
    if (num_u64(cJSON_GetObjectItemCaseSensitive(res, "peer_id"), &ci->peer_id) != 0)
        return proto(err, op, "peer_id is not a u64");
    int rc = parse_peers(cJSON_GetObjectItemCaseSensitive(res, "peers"), qdrant_url, rest_port, op,
                         ci, err);
    if (rc != 0)
        return rc;
    if (qs_cluster_info_peer(ci, ci->peer_id) == NULL)
        return qs_error_set(err, QS_EPROTO,
                            "%s: unexpected answer: this peer (%" PRIu64 ") is not among the peers",
                            op, ci->peer_id);
    const cJSON *ri = cJSON_GetObjectItemCaseSensitive(res, "raft_info");
    if (!cJSON_IsObject(ri))
        return proto(err, op, "no raft_info");
    if (opt_u64(ri, "term", 0, &ci->term) != 0 || opt_u64(ri, "commit", 0, &ci->commit) != 0 ||
        opt_u64(ri, "pending_operations", 0, &ci->pending_operations) != 0)
        return proto(err, op, "raft_info: term, commit or pending_operations is not a u64");
    if (opt_u64(ri, "leader", 0, &ci->leader) != 0)
        return proto(err, op, "raft_info.leader is neither null nor a u64");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(ri, "role");
    if (cJSON_IsString(role))
        qs_strlcpy(ci->role, role->valuestring, sizeof(ci->role));
    else if (role != NULL && !cJSON_IsNull(role))
        return proto(err, op, "raft_info.role is not a string");
    const cJSON *voter = cJSON_GetObjectItemCaseSensitive(ri, "is_voter");
    if (voter != NULL && !cJSON_IsBool(voter))
        return proto(err, op, "raft_info.is_voter is not a boolean");
    ci->is_voter = cJSON_IsTrue(voter);
    return 0;
}

/* Parses the envelope of body (borrowed, len bytes) and hands its result to
 * fn with out and ctx (both borrowed). */
static int parse_answer(const char *body, size_t len, const char *op,
                        int (*fn)(const cJSON *res, const char *op, void *out, const void *ctx,
                                  struct qs_error *err),
                        void *out, const void *ctx, struct qs_error *err)
{
    qs_error_clear(err);
    cJSON *root = NULL;
    const cJSON *res = parse_envelope(body, len, op, &root, err);
    if (res == NULL)
        return err != NULL ? err->code : QS_EPROTO;
    int rc = fn(res, op, out, ctx, err);
    cJSON_Delete(root);
    return rc;
}

int qs_cluster_info_parse(const char *body, size_t len, const char *qdrant_url, int rest_port,
                          struct qs_cluster_info *out, struct qs_error *err)
{
    memset(out, 0, sizeof(*out));
    const struct rest_of_peers ctx = {qdrant_url, rest_port};
    int rc = parse_answer(body, len, "get cluster info", parse_cluster_result, out, &ctx, err);
    if (rc != 0)
        qs_cluster_info_deinit(out);
    return rc;
}

int qs_cluster_get(struct qs_qdrant *q, int rest_port, struct qs_cluster_info *out,
                   struct qs_error *err)
{
    memset(out, 0, sizeof(*out));
    struct qs_buf b;
    qs_buf_init(&b);
    int rc = qs_qdrant_get_raw(q, NULL, "/cluster", "get cluster info", &b, err);
    if (rc == 0)
        rc = qs_cluster_info_parse(b.data, b.len, qs_qdrant_url(q), rest_port, out, err);
    qs_buf_free(&b);
    return rc;
}

/* ---- GET /collections/{c}/cluster ----------------------------------------------- */

enum qs_replica_state qs_replica_state_parse(const char *name)
{
    static const char *const names[] = {
        [QS_REPLICA_ACTIVE] = "Active",     [QS_REPLICA_DEAD] = "Dead",
        [QS_REPLICA_PARTIAL] = "Partial",   [QS_REPLICA_INITIALIZING] = "Initializing",
        [QS_REPLICA_LISTENER] = "Listener", [QS_REPLICA_PARTIAL_SNAPSHOT] = "PartialSnapshot",
        [QS_REPLICA_RECOVERY] = "Recovery", [QS_REPLICA_RESHARDING] = "Resharding",
    };
    for (size_t i = 0; name != NULL && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return (enum qs_replica_state)i;
    return QS_REPLICA_OTHER;
}

void qs_collection_cluster_deinit(struct qs_collection_cluster *cc)
{
    if (cc == NULL)
        return;
    for (size_t i = 0; i < cc->nlocal; i++)
        free(cc->local[i].shard_key);
    for (size_t i = 0; i < cc->nremote; i++)
        free(cc->remote[i].shard_key);
    free(cc->local);
    free(cc->remote);
    free(cc->transfers);
    memset(cc, 0, sizeof(*cc));
}

/* The fields every replica entry has: shard_id, shard_key, state. */
static int parse_replica(const cJSON *o, const char *list, size_t i, const char *op,
                         uint32_t *shard_id, char **shard_key, enum qs_replica_state *state,
                         char *state_name, size_t cap, const char *u64_field, uint64_t *u64_out,
                         struct qs_error *err)
{
    uint64_t sid;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(o, "shard_key");
    if (!cJSON_IsObject(o) || num_u64(cJSON_GetObjectItemCaseSensitive(o, "shard_id"), &sid) != 0 ||
        sid > UINT32_MAX)
        return qs_error_set(err, QS_EPROTO, "%s: unexpected answer: %s[%zu] has no shard_id", op,
                            list, i);
    if (!cJSON_IsString(st) || st->valuestring[0] == '\0')
        return qs_error_set(err, QS_EPROTO, "%s: unexpected answer: %s[%zu] has no state", op, list,
                            i);
    *shard_id = (uint32_t)sid;
    qs_strlcpy(state_name, st->valuestring, cap);
    *state = qs_replica_state_parse(st->valuestring);
    if (key != NULL && !cJSON_IsNull(key)) {
        if (!cJSON_IsString(key) && !cJSON_IsNumber(key))
            return qs_error_set(
                err, QS_EPROTO,
                "%s: unexpected answer: %s[%zu].shard_key is not a string or number", op, list, i);
        /* A number key keeps its literal text (a u64 may not fit a double). */
        if (cJSON_IsNumber(key)) {
            uint64_t kv;
            if (num_u64(key, &kv) != 0)
                return qs_error_set(err, QS_EPROTO,
                                    "%s: unexpected answer: %s[%zu].shard_key is not a u64", op,
                                    list, i);
            *shard_key = strdup(key->valuestring);
        } else {
            *shard_key = cJSON_PrintUnformatted(key);
        }
        if (*shard_key == NULL)
            return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    if (num_u64(cJSON_GetObjectItemCaseSensitive(o, u64_field), u64_out) != 0)
        return qs_error_set(err, QS_EPROTO, "%s: unexpected answer: %s[%zu].%s is not a u64", op,
                            list, i, u64_field);
    return 0;
}

/* An array field as (array, count); absent counts as empty. */
static int array_of(const cJSON *res, const char *key, const char *op, const cJSON **arr, size_t *n,
                    struct qs_error *err)
{
    *arr = cJSON_GetObjectItemCaseSensitive(res, key);
    *n = 0;
    if (*arr == NULL || cJSON_IsNull(*arr))
        return 0;
    if (!cJSON_IsArray(*arr))
        return qs_error_set(err, QS_EPROTO, "%s: unexpected answer: %s is not an array", op, key);
    *n = (size_t)cJSON_GetArraySize(*arr);
    return 0;
}

static int parse_collection_cluster_result(const cJSON *res, const char *op, void *out,
                                           const void *ctx, struct qs_error *err)
{
    (void)ctx;
    struct qs_collection_cluster *cc = out;
    uint64_t count;
    if (num_u64(cJSON_GetObjectItemCaseSensitive(res, "peer_id"), &cc->peer_id) != 0)
        return proto(err, op, "peer_id is not a u64");
    if (num_u64(cJSON_GetObjectItemCaseSensitive(res, "shard_count"), &count) != 0 ||
        count > UINT32_MAX)
        return proto(err, op, "shard_count is not a number of shards");
    cc->shard_count = (uint32_t)count;
    const cJSON *local, *remote, *transfers, *it;
    size_t nl, nr, nt;
    int rc = array_of(res, "local_shards", op, &local, &nl, err);
    if (rc == 0)
        rc = array_of(res, "remote_shards", op, &remote, &nr, err);
    if (rc == 0)
        rc = array_of(res, "shard_transfers", op, &transfers, &nt, err);
    if (rc != 0)
        return rc;
    cc->local = calloc(nl + 1, sizeof(*cc->local));
    cc->remote = calloc(nr + 1, sizeof(*cc->remote));
    cc->transfers = calloc(nt + 1, sizeof(*cc->transfers));
    if (cc->local == NULL || cc->remote == NULL || cc->transfers == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, local)
    {
        struct qs_local_shard *s = &cc->local[cc->nlocal++];
        rc = parse_replica(it, "local_shards", cc->nlocal - 1, op, &s->shard_id, &s->shard_key,
                           &s->state, s->state_name, sizeof(s->state_name), "points_count",
                           &s->points_count, err);
        if (rc != 0)
            return rc;
    }
    cJSON_ArrayForEach(it, remote)
    {
        struct qs_remote_shard *s = &cc->remote[cc->nremote++];
        rc = parse_replica(it, "remote_shards", cc->nremote - 1, op, &s->shard_id, &s->shard_key,
                           &s->state, s->state_name, sizeof(s->state_name), "peer_id", &s->peer_id,
                           err);
        if (rc != 0)
            return rc;
    }
    cJSON_ArrayForEach(it, transfers)
    {
        struct qs_shard_transfer *t = &cc->transfers[cc->ntransfers];
        size_t i = cc->ntransfers++;
        uint64_t sid, to_sid;
        const cJSON *sync = cJSON_GetObjectItemCaseSensitive(it, "sync");
        const cJSON *method = cJSON_GetObjectItemCaseSensitive(it, "method");
        if (!cJSON_IsObject(it) ||
            num_u64(cJSON_GetObjectItemCaseSensitive(it, "shard_id"), &sid) != 0 ||
            sid > UINT32_MAX ||
            num_u64(cJSON_GetObjectItemCaseSensitive(it, "from"), &t->from) != 0 ||
            num_u64(cJSON_GetObjectItemCaseSensitive(it, "to"), &t->to) != 0 ||
            opt_u64(it, "to_shard_id", UINT64_MAX, &to_sid) != 0 ||
            (to_sid != UINT64_MAX && to_sid > UINT32_MAX) ||
            (sync != NULL && !cJSON_IsBool(sync)) ||
            (method != NULL && !cJSON_IsNull(method) && !cJSON_IsString(method)))
            return qs_error_set(err, QS_EPROTO,
                                "%s: unexpected answer: shard_transfers[%zu] is not a transfer "
                                "(shard_id, from, to, sync, method)",
                                op, i);
        t->shard_id = (uint32_t)sid;
        t->to_shard_id = to_sid == UINT64_MAX ? -1 : (int64_t)to_sid;
        t->sync = cJSON_IsTrue(sync);
        if (cJSON_IsString(method))
            qs_strlcpy(t->method, method->valuestring, sizeof(t->method));
    }
    return 0;
}

int qs_collection_cluster_parse(const char *body, size_t len, struct qs_collection_cluster *out,
                                struct qs_error *err)
{
    memset(out, 0, sizeof(*out));
    int rc = parse_answer(body, len, "get collection cluster info", parse_collection_cluster_result,
                          out, NULL, err);
    if (rc != 0)
        qs_collection_cluster_deinit(out);
    return rc;
}

int qs_cluster_collection_get(struct qs_qdrant *q, const char *collection,
                              struct qs_collection_cluster *out, struct qs_error *err)
{
    memset(out, 0, sizeof(*out));
    char op[200], c[120];
    snprintf(op, sizeof(op), "get cluster info of collection '%s'",
             qs_printable(c, sizeof(c), collection, 100));
    struct qs_buf b;
    qs_buf_init(&b);
    int rc = qs_qdrant_get_raw(q, collection, "/cluster", op, &b, err);
    if (rc == 0 && (rc = qs_collection_cluster_parse(b.data, b.len, out, err)) != 0)
        qs_error_prefix(err, "collection '%s'", c);
    qs_buf_free(&b);
    return rc;
}

/* ---- shards and their replicas ------------------------------------------------------ */

/* Appends to out (cap bytes, *len used) what fits; the text stays
 * NUL-terminated and ends in "..." when cut. */
static void appendf(char *out, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    if (cap == 0 || *len >= cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= cap - *len) {
        *len = cap - 1;
        if (cap > 4)
            memcpy(out + cap - 4, "...", 4);
        return;
    }
    *len += (size_t)n;
}

static int cmp_replica(const void *a, const void *b)
{
    const struct qs_shard_replica *x = a, *y = b;
    return x->peer_id < y->peer_id ? -1 : x->peer_id > y->peer_id;
}

size_t qs_cluster_shard_replicas(const struct qs_collection_cluster *cc, uint32_t shard_id,
                                 struct qs_shard_replica *out, size_t cap)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < cc->nlocal; i++) {
        if (cc->local[i].shard_id != shard_id)
            continue;
        if (k < cap)
            out[k++] =
                (struct qs_shard_replica){cc->peer_id, cc->local[i].state, cc->local[i].state_name};
        n++;
    }
    size_t first_remote = k;
    for (size_t i = 0; i < cc->nremote; i++) {
        if (cc->remote[i].shard_id != shard_id)
            continue;
        if (k < cap)
            out[k++] = (struct qs_shard_replica){cc->remote[i].peer_id, cc->remote[i].state,
                                                 cc->remote[i].state_name};
        n++;
    }
    if (k > first_remote)
        qsort(out + first_remote, k - first_remote, sizeof(*out), cmp_replica);
    return n;
}

/* The replicas of a shard, into a fresh array (owned, *n entries; NULL when
 * none or out of memory, then *n is 0 and *nomem set accordingly). */
static struct qs_shard_replica *replicas_of(const struct qs_collection_cluster *cc,
                                            uint32_t shard_id, size_t *n, int *nomem)
{
    *n = 0;
    *nomem = 0;
    size_t total = qs_cluster_shard_replicas(cc, shard_id, NULL, 0);
    if (total == 0)
        return NULL;
    struct qs_shard_replica *v = calloc(total, sizeof(*v));
    if (v == NULL) {
        *nomem = 1;
        return NULL;
    }
    *n = qs_cluster_shard_replicas(cc, shard_id, v, total);
    return v;
}

static int in_transfer(const struct qs_shard_transfer *t, uint32_t shard_id)
{
    return t->shard_id == shard_id || (t->to_shard_id >= 0 && (uint32_t)t->to_shard_id == shard_id);
}

static void describe(const struct qs_collection_cluster *cc, uint32_t shard_id, char *out,
                     size_t cap, size_t *len)
{
    size_t n;
    int nomem;
    struct qs_shard_replica *v = replicas_of(cc, shard_id, &n, &nomem);
    if (n == 0)
        appendf(out, cap, len, "%s", nomem ? "replicas unknown (out of memory)" : "no replica");
    for (size_t i = 0; i < n; i++) {
        char st[40];
        appendf(out, cap, len, "%speer %" PRIu64 " %s", i > 0 ? ", " : "", v[i].peer_id,
                qs_printable(st, sizeof(st), v[i].state_name, 31));
    }
    free(v);
    for (size_t i = 0; i < cc->ntransfers; i++) {
        const struct qs_shard_transfer *t = &cc->transfers[i];
        if (!in_transfer(t, shard_id))
            continue;
        appendf(out, cap, len, "; transfer from peer %" PRIu64 " to peer %" PRIu64 "%s%s%s",
                t->from, t->to, t->method[0] != '\0' ? " (" : "", t->method,
                t->method[0] != '\0' ? ")" : "");
    }
}

void qs_cluster_describe_shard(const struct qs_collection_cluster *cc, uint32_t shard_id, char *out,
                               size_t cap)
{
    size_t len = 0;
    if (cap > 0)
        out[0] = '\0';
    describe(cc, shard_id, out, cap, &len);
}

int qs_cluster_active_peers(const struct qs_collection_cluster *cc, uint32_t shard_id,
                            uint64_t *out, size_t cap, struct qs_error *err)
{
    char what[600];
    qs_cluster_describe_shard(cc, shard_id, what, sizeof(what));
    for (size_t i = 0; i < cc->ntransfers; i++)
        if (in_transfer(&cc->transfers[i], shard_id))
            return qs_error_set(err, QS_EBUSY,
                                "shard %" PRIu32 " is being transferred between peers (%s): a "
                                "shard in transfer is not backed up; run the backup again once "
                                "the transfer has finished",
                                shard_id, what);
    size_t n;
    int nomem;
    struct qs_shard_replica *v = replicas_of(cc, shard_id, &n, &nomem);
    if (nomem)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].state == QS_REPLICA_ACTIVE && k < cap)
            out[k++] = v[i].peer_id;
    free(v);
    if (k == 0)
        return qs_error_set(err, QS_ENOTFOUND, "shard %" PRIu32 " has no Active replica (%s)",
                            shard_id, what);
    return (int)k;
}

int qs_cluster_all_active(const struct qs_collection_cluster *cc, uint32_t nshards, char *why,
                          size_t cap)
{
    size_t len = 0;
    if (cap > 0)
        why[0] = '\0';
    int all = 1;
    for (uint32_t sid = 0; sid < nshards; sid++) {
        size_t n;
        int nomem, ok;
        struct qs_shard_replica *v = replicas_of(cc, sid, &n, &nomem);
        ok = n > 0;
        for (size_t i = 0; i < n; i++)
            ok &= v[i].state == QS_REPLICA_ACTIVE;
        free(v);
        for (size_t i = 0; ok && i < cc->ntransfers; i++)
            ok = !in_transfer(&cc->transfers[i], sid);
        if (ok)
            continue;
        appendf(why, cap, &len, "%sshard %" PRIu32 " (", all ? "" : ", ", sid);
        describe(cc, sid, why, cap, &len);
        appendf(why, cap, &len, ")");
        all = 0;
    }
    return all;
}

/* ---- clients of the peers ----------------------------------------------------------- */

int qs_cluster_clients_init(struct qs_cluster_clients *c, struct qs_qdrant *local,
                            const struct qs_cluster_info *info)
{
    memset(c, 0, sizeof(*c));
    struct qs_qdrant **made = calloc(info->npeers + 1, sizeof(*made));
    if (made == NULL)
        return UV_ENOMEM;
    c->local = local;
    c->info = info;
    c->made = made;
    return 0;
}

void qs_cluster_clients_deinit(struct qs_cluster_clients *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; c->made != NULL && i < c->info->npeers; i++)
        qs_qdrant_free(c->made[i]);
    free(c->made);
    memset(c, 0, sizeof(*c));
}

int qs_cluster_clients_get(struct qs_cluster_clients *c, uint64_t peer_id, struct qs_qdrant **out,
                           struct qs_error *err)
{
    *out = NULL;
    if (peer_id == c->info->peer_id) {
        *out = c->local;
        return 0;
    }
    for (size_t i = 0; i < c->info->npeers; i++) {
        const struct qs_cluster_peer *p = &c->info->peers[i];
        if (p->id != peer_id)
            continue;
        if (c->made[i] == NULL) {
            char u[120];
            if (p->rest_url == NULL)
                return qs_error_set(err, QS_EINVAL,
                                    "peer %" PRIu64 ": its uri '%s' gives no REST address", p->id,
                                    qs_printable(u, sizeof(u), p->uri, 100));
            int rc = qs_qdrant_new_like(c->local, p->rest_url, &c->made[i], err);
            if (rc != 0)
                return qs_error_prefix(err, "peer %" PRIu64, p->id);
        }
        *out = c->made[i];
        return 0;
    }
    return qs_error_set(err, QS_ENOTFOUND,
                        "peer %" PRIu64 " is not among the peers GET /cluster listed", peer_id);
}

/* ---- the leader rule ---------------------------------------------------------------- */

int qs_cluster_role_runs_scheduled(enum qs_cluster_role role)
{
    return role == QS_CLUSTER_ROLE_OFF || role == QS_CLUSTER_ROLE_SINGLE ||
           role == QS_CLUSTER_ROLE_LEADER;
}

const char *qs_cluster_role_name(enum qs_cluster_role role)
{
    switch (role) {
    case QS_CLUSTER_ROLE_OFF:
        return "off";
    case QS_CLUSTER_ROLE_SINGLE:
        return "single";
    case QS_CLUSTER_ROLE_LEADER:
        return "leader";
    case QS_CLUSTER_ROLE_FOLLOWER:
        return "follower";
    case QS_CLUSTER_ROLE_NO_LEADER:
        return "no_leader";
    case QS_CLUSTER_ROLE_UNKNOWN:
        break;
    }
    return "unknown";
}

void qs_cluster_view_init(struct qs_cluster_view *v)
{
    memset(v, 0, sizeof(*v));
    v->setting = QS_CLUSTER_OFF;
    v->role = QS_CLUSTER_ROLE_OFF;
    qs_error_clear(&v->err);
}

void qs_cluster_view_deinit(struct qs_cluster_view *v)
{
    if (v == NULL)
        return;
    qs_cluster_info_deinit(&v->info);
    qs_cluster_view_init(v);
}

void qs_cluster_view_move(struct qs_cluster_view *dst, struct qs_cluster_view *src)
{
    qs_cluster_view_deinit(dst);
    *dst = *src;
    qs_cluster_view_init(src);
}

void qs_cluster_view_set(struct qs_cluster_view *out, enum qs_cluster_setting setting,
                         int64_t checked_at, struct qs_cluster_info *info,
                         const struct qs_error *err)
{
    qs_cluster_view_deinit(out);
    out->setting = setting;
    out->checked_at = checked_at;
    if (info == NULL) {
        out->role = QS_CLUSTER_ROLE_UNKNOWN;
        if (err != NULL)
            out->err = *err;
        if (out->err.msg[0] == '\0')
            qs_strlcpy(out->err.msg, "no answer", sizeof(out->err.msg));
        return;
    }
    out->info = *info;
    memset(info, 0, sizeof(*info));
    if (!out->info.enabled)
        out->role = QS_CLUSTER_ROLE_SINGLE;
    else if (out->info.leader == 0)
        out->role = QS_CLUSTER_ROLE_NO_LEADER;
    else if (out->info.leader == out->info.peer_id)
        out->role = QS_CLUSTER_ROLE_LEADER;
    else
        out->role = QS_CLUSTER_ROLE_FOLLOWER;
}

enum qs_cluster_role qs_cluster_view_check(struct qs_qdrant *q, const struct qs_config *cfg,
                                           struct qs_cluster_view *out)
{
    qs_cluster_view_deinit(out);
    out->setting = cfg->cluster;
    if (cfg->cluster == QS_CLUSTER_OFF)
        return out->role;
    struct qs_cluster_info info;
    struct qs_error e;
    qs_error_clear(&e);
    int64_t now = qs_clock_now();
    if (q == NULL) {
        qs_error_set(&e, QS_EINVAL, "no Qdrant client to ask");
        qs_cluster_view_set(out, cfg->cluster, now, NULL, &e);
    } else if (qs_cluster_get(q, cfg->cluster_rest_port, &info, &e) != 0)
        qs_cluster_view_set(out, cfg->cluster, now, NULL, &e);
    else
        qs_cluster_view_set(out, cfg->cluster, now, &info, NULL);
    return out->role;
}

int qs_cluster_mode(struct qs_qdrant *q, const struct qs_config *cfg, struct qs_cluster_view *v,
                    struct qs_error *err)
{
    switch (qs_cluster_view_check(q, cfg, v)) {
    case QS_CLUSTER_ROLE_OFF:
    case QS_CLUSTER_ROLE_SINGLE:
        return 0;
    case QS_CLUSTER_ROLE_LEADER:
    case QS_CLUSTER_ROLE_FOLLOWER:
    case QS_CLUSTER_ROLE_NO_LEADER:
        return 1;
    case QS_CLUSTER_ROLE_UNKNOWN:
        break;
    }
    if (err != NULL)
        *err = v->err;
    int rc = v->err.code < 0 ? v->err.code : QS_EPROTO;
    qs_error_prefix(err, "cannot tell whether Qdrant is in cluster mode (QSNAP_CLUSTER=off: never "
                         "ask, run as a single node)");
    return rc;
}

void qs_cluster_view_reason(const struct qs_cluster_view *v, char *out, size_t cap)
{
    const struct qs_cluster_info *ci = &v->info;
    switch (v->role) {
    case QS_CLUSTER_ROLE_OFF:
        snprintf(out, cap, "QSNAP_CLUSTER=off: Qdrant's cluster mode is not looked at");
        break;
    case QS_CLUSTER_ROLE_SINGLE:
        snprintf(out, cap, "Qdrant is a single node (its cluster mode is disabled)");
        break;
    case QS_CLUSTER_ROLE_LEADER:
        snprintf(out, cap,
                 "this sidecar's Qdrant peer %" PRIu64 " is the Raft leader (term %" PRIu64 ")",
                 ci->peer_id, ci->term);
        break;
    case QS_CLUSTER_ROLE_FOLLOWER:
        snprintf(out, cap,
                 "this sidecar's Qdrant peer %" PRIu64 " is not the Raft leader (the leader is "
                 "peer %" PRIu64 ", term %" PRIu64 ")",
                 ci->peer_id, ci->leader, ci->term);
        break;
    case QS_CLUSTER_ROLE_NO_LEADER:
        snprintf(out, cap,
                 "the Qdrant cluster has no Raft leader now (this sidecar's peer %" PRIu64
                 ", Raft role %s, term %" PRIu64 ")",
                 ci->peer_id, ci->role[0] != '\0' ? ci->role : "unknown", ci->term);
        break;
    case QS_CLUSTER_ROLE_UNKNOWN:
        snprintf(out, cap, "cannot ask Qdrant which peer is the Raft leader: %s", v->err.msg);
        break;
    }
}

/* A u64 as a JSON string. */
static int add_id(cJSON *o, const char *key, uint64_t id)
{
    char s[24];
    snprintf(s, sizeof(s), "%" PRIu64, id);
    return cJSON_AddStringToObject(o, key, s) != NULL ? 0 : -1;
}

/* A u64 as an exact JSON number. */
static int add_u64(cJSON *o, const char *key, uint64_t v)
{
    char s[24];
    snprintf(s, sizeof(s), "%" PRIu64, v);
    return cJSON_AddRawToObject(o, key, s) != NULL ? 0 : -1;
}

static int add_peers(cJSON *o, const struct qs_cluster_info *ci)
{
    cJSON *peers = cJSON_AddObjectToObject(o, "peers");
    if (peers == NULL)
        return -1;
    for (size_t i = 0; i < ci->npeers; i++) {
        const struct qs_cluster_peer *p = &ci->peers[i];
        char id[24];
        snprintf(id, sizeof(id), "%" PRIu64, p->id);
        cJSON *e = cJSON_AddObjectToObject(peers, id);
        if (e == NULL || cJSON_AddStringToObject(e, "uri", p->uri) == NULL)
            return -1;
        if ((p->rest_url != NULL ? cJSON_AddStringToObject(e, "rest_url", p->rest_url)
                                 : cJSON_AddNullToObject(e, "rest_url")) == NULL)
            return -1;
    }
    return 0;
}

int qs_cluster_view_to_json(const struct qs_cluster_view *v, struct cJSON **out)
{
    *out = NULL;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return UV_ENOMEM;
    const struct qs_cluster_info *ci = &v->info;
    const char *status = "unknown";
    if (v->role == QS_CLUSTER_ROLE_OFF)
        status = "off";
    else if (v->role == QS_CLUSTER_ROLE_SINGLE)
        status = "disabled";
    else if (v->role != QS_CLUSTER_ROLE_UNKNOWN)
        status = "enabled";
    int bad =
        cJSON_AddStringToObject(o, "setting", v->setting == QS_CLUSTER_OFF ? "off" : "auto") ==
            NULL ||
        cJSON_AddStringToObject(o, "status", status) == NULL ||
        cJSON_AddStringToObject(o, "role", qs_cluster_role_name(v->role)) == NULL ||
        cJSON_AddBoolToObject(o, "runs_scheduled", qs_cluster_role_runs_scheduled(v->role)) == NULL;
    if (!bad && v->checked_at > 0) {
        char t[21];
        qs_time_rfc3339(v->checked_at, t);
        bad = cJSON_AddStringToObject(o, "checked_at", t) == NULL;
    }
    if (!bad && v->role == QS_CLUSTER_ROLE_UNKNOWN)
        bad = cJSON_AddStringToObject(o, "error", v->err.msg) == NULL;
    if (!bad && ci->enabled) {
        bad = add_id(o, "peer_id", ci->peer_id) != 0 ||
              (ci->leader != 0 ? add_id(o, "leader", ci->leader)
                               : (cJSON_AddNullToObject(o, "leader") == NULL ? -1 : 0)) != 0 ||
              cJSON_AddBoolToObject(o, "is_leader", v->role == QS_CLUSTER_ROLE_LEADER) == NULL ||
              add_u64(o, "term", ci->term) != 0 ||
              (ci->role[0] != '\0' ? cJSON_AddStringToObject(o, "raft_role", ci->role)
                                   : cJSON_AddNullToObject(o, "raft_role")) == NULL ||
              add_peers(o, ci) != 0;
    }
    if (bad) {
        cJSON_Delete(o);
        return UV_ENOMEM;
    }
    *out = o;
    return 0;
}
