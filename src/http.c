/* HTTP/1.1 server on libuv + http_parser (see http.h). Loop thread only. */
#include "qsnap/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <http_parser.h>
#include <zlib.h>

#include "qsnap/log.h"

#define READ_BUF_SIZE 4096
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (256 * 1024)
#define OPEN_FACTOR 4  /* open connections of every kind: at most 4 x max_conns */
#define FD_RESERVE 128 /* descriptors left to the rest of the process */
#define MIN_OPEN 16
#define PRESSURE_HEAD_MS 2000 /* head deadline while more than half the slots are taken */
#define LOG_EVERY_MS 10000    /* at most one line per kind of trouble */
/* Pending connections the kernel queues (capped by net.core.somaxconn): deep
 * enough that a flood does not fill it, since a full queue drops a probe's
 * SYN and the retry comes a second later. */
#define LISTEN_BACKLOG 4096

/* ---- requests --------------------------------------------------------------- */

struct conn;

struct qs_http_req {
    char method[16];
    char *path;  /* owned, decoded */
    char *query; /* owned, raw, "" when none */
    size_t rest_off;
    struct qs_buf hdrs; /* "name\0value\0" pairs */
    size_t hoff[QS_HTTP_MAX_HEADERS][2];
    size_t nhdrs;
    struct qs_buf body;
    int expect_continue;
    int has_body;      /* Content-Length > 0 or chunked */
    int keep_alive;    /* the connection may carry another request after this one */
    int http10;        /* HTTP/1.0 */
    struct conn *conn; /* NULL when detached (client gone, or from a reader) */
    /* While a handler holds it, the request counts against its route's
     * max_pending (server != NULL), until answered or freed -- also after the
     * client has gone, as the handler's work goes on. */
    struct qs_http_server *server;
    size_t route;
    struct qs_http_req *pprev, *pnext; /* the server's pending list */
};

static void req_unpend(struct qs_http_req *req);

static void req_free(struct qs_http_req *req)
{
    if (req == NULL)
        return;
    req_unpend(req);
    free(req->path);
    free(req->query);
    qs_buf_free(&req->hdrs);
    qs_buf_free(&req->body);
    free(req);
}

const char *qs_http_req_method(const struct qs_http_req *req)
{
    return req->method;
}

const char *qs_http_req_path(const struct qs_http_req *req)
{
    return req->path;
}

const char *qs_http_req_path_rest(const struct qs_http_req *req)
{
    size_t n = strlen(req->path);
    return req->path + (req->rest_off <= n ? req->rest_off : n);
}

const char *qs_http_req_query(const struct qs_http_req *req)
{
    return req->query != NULL ? req->query : "";
}

const char *qs_http_req_header(const struct qs_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->nhdrs; i++)
        if (strcasecmp(req->hdrs.data + req->hoff[i][0], name) == 0)
            return req->hdrs.data + req->hoff[i][1];
    return NULL;
}

const char *qs_http_req_body(const struct qs_http_req *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.data != NULL ? req->body.data : "";
}

int qs_http_req_query_param(const struct qs_http_req *req, const char *name, char *out, size_t cap)
{
    return qs_http_query_get(qs_http_req_query(req), name, out, cap);
}

int qs_http_req_keep_alive(const struct qs_http_req *req)
{
    return req->keep_alive;
}

int qs_http_req_closed(const struct qs_http_req *req)
{
    return req->conn == NULL;
}

/* ---- pure helpers ------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes n bytes of s into out (cap bytes incl. NUL; out NULL =
 * only validate). Rejects malformed escapes, NUL, and (when no_slash) an
 * encoded '/'. */
static int pct_decode(const char *s, size_t n, int plus_space, int no_slash, char *out, size_t cap,
                      size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return QS_EINVAL;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return QS_EINVAL;
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0 || (no_slash && c == '/'))
                return QS_EINVAL;
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        } else if (c == 0) {
            return QS_EINVAL;
        }
        if (out == NULL)
            continue;
        if (o + 1 >= cap)
            return QS_ETOOBIG;
        out[o++] = (char)c;
    }
    if (out == NULL)
        return 0;
    if (cap == 0)
        return QS_ETOOBIG;
    out[o] = '\0';
    if (outlen != NULL)
        *outlen = o;
    return 0;
}

int qs_http_path_decode(const char *raw, size_t len, char *out, size_t cap)
{
    if (raw == NULL || len == 0 || raw[0] != '/')
        return QS_EINVAL;
    size_t n = 0;
    int rc = pct_decode(raw, len, 0, 1, out, cap, &n);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7f)
            return QS_EINVAL;
    }
    /* Segments: no empty ones except a trailing slash, no "." or "..". */
    const char *p = out;
    while (*p == '/') {
        const char *seg = p + 1;
        const char *end = strchr(seg, '/');
        size_t sl = end != NULL ? (size_t)(end - seg) : strlen(seg);
        if (sl == 0 && end != NULL)
            return QS_EINVAL; /* "//" */
        if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
            return QS_EINVAL;
        if (end == NULL)
            break;
        p = end;
    }
    return 0;
}

int qs_http_query_get(const char *query, const char *name, char *out, size_t cap)
{
    if (query == NULL || name == NULL)
        return 0;
    const char *p = query;
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t plen = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq != NULL ? (size_t)(eq - p) : plen;
        char key[256];
        size_t kn;
        if (plen > 0 && pct_decode(p, klen, 1, 0, key, sizeof(key), &kn) == 0 &&
            strcmp(key, name) == 0) {
            if (eq == NULL) {
                if (cap == 0)
                    return QS_ETOOBIG;
                out[0] = '\0';
                return 1;
            }
            int rc = pct_decode(eq + 1, plen - klen - 1, 1, 0, out, cap, NULL);
            return rc == 0 ? 1 : rc;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    return 0;
}

int qs_http_query_check(const char *query, const char *const *allowed, char *msg, size_t cap)
{
    if (query == NULL || *query == '\0')
        return 0;
    size_t nallowed = 0;
    while (allowed != NULL && allowed[nallowed] != NULL)
        nallowed++;
    unsigned char seen[64] = {0};
    char key[256], shown[80];
    const char *p = query;
    for (;;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq != NULL ? (size_t)(eq - p) : plen;
        if (plen == 0) {
            snprintf(msg, cap, "empty query parameter (\"&&\" or a trailing '&')");
            return QS_EINVAL;
        }
        if (klen == 0) {
            snprintf(msg, cap, "empty query parameter name");
            return QS_EINVAL;
        }
        int rc = pct_decode(p, klen, 1, 0, key, sizeof(key), NULL);
        if (rc == QS_ETOOBIG) {
            /* The name is longer than the 64 characters shown. */
            qs_printable(shown, sizeof(shown), p, 64);
            snprintf(msg, cap, "unknown query parameter '%s'", shown);
            return QS_EINVAL;
        }
        if (rc != 0) {
            snprintf(msg, cap, "malformed query parameter name (bad %%-escape)");
            return QS_EINVAL;
        }
        size_t k = 0;
        while (k < nallowed && strcmp(allowed[k], key) != 0)
            k++;
        qs_printable(shown, sizeof(shown), key, 64);
        if (k == nallowed) {
            snprintf(msg, cap, "unknown query parameter '%s'", shown);
            return QS_EINVAL;
        }
        if (k < sizeof(seen) && seen[k]) {
            snprintf(msg, cap, "query parameter '%s' is given twice", shown);
            return QS_EINVAL;
        }
        if (k < sizeof(seen))
            seen[k] = 1;
        /* The value is only validated here; the handler decodes it into a
         * buffer of its own size. */
        if (eq != NULL && pct_decode(eq + 1, plen - klen - 1, 1, 0, NULL, 0, NULL) != 0) {
            snprintf(msg, cap, "query parameter '%s': malformed %%-escape or %%00", shown);
            return QS_EINVAL;
        }
        if (amp == NULL)
            return 0;
        p = amp + 1;
        if (*p == '\0') {
            snprintf(msg, cap, "empty query parameter (\"&&\" or a trailing '&')");
            return QS_EINVAL;
        }
    }
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Parses "q=0.5" style qvalue of one element's parameters; 1.0 when absent,
 * 0 when malformed. */
static double parse_q(const char *p, const char *end)
{
    double q = 1.0;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (semi == NULL)
            break;
        p = skip_ws(semi + 1, end);
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            char num[16];
            const char *v = p + 2;
            size_t n = 0;
            while (v + n < end && v[n] != ';' && v[n] != ' ' && v[n] != '\t' && n < 15)
                n++;
            memcpy(num, v, n);
            num[n] = '\0';
            if (qs_parse_double(num, &q) != 0 || !(q >= 0 && q <= 1))
                return 0;
        }
    }
    return q;
}

int qs_http_accepts_gzip(const char *ae)
{
    if (ae == NULL)
        return 0;
    double gzip_q = -1, star_q = -1;
    const char *p = ae;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        const char *t = skip_ws(p, end);
        const char *te = t;
        while (te < end && *te != ';' && *te != ' ' && *te != '\t')
            te++;
        size_t tl = (size_t)(te - t);
        double q = parse_q(te, end);
        if ((tl == 4 && strncasecmp(t, "gzip", 4) == 0) ||
            (tl == 6 && strncasecmp(t, "x-gzip", 6) == 0)) {
            if (q > gzip_q)
                gzip_q = q;
        } else if (tl == 1 && *t == '*') {
            if (q > star_q)
                star_q = q;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (gzip_q >= 0)
        return gzip_q > 0;
    return star_q > 0;
}

int qs_http_gzip(const void *in, size_t len, struct qs_buf *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return UV_ENOMEM;
    size_t bound = deflateBound(&zs, (uLong)len) + 32;
    size_t start = out->len;
    /* Grow the buffer once to the bound, then let zlib fill it. */
    if (out->cap < start + bound + 1) {
        size_t cap = start + bound + 1;
        char *p = realloc(out->data, cap);
        if (p == NULL) {
            deflateEnd(&zs);
            return UV_ENOMEM;
        }
        out->data = p;
        out->cap = cap;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out->data + start;
    zs.avail_out = (uInt)bound;
    int zrc = deflate(&zs, Z_FINISH);
    size_t produced = bound - zs.avail_out;
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        out->data[start] = '\0';
        return QS_EIO;
    }
    out->len = start + produced;
    out->data[out->len] = '\0';
    return 0;
}

const char *qs_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int qs_http_bearer_ok(const struct qs_http_req *req, const char *token)
{
    if (token == NULL || token[0] == '\0')
        return 403;
    const char *h = qs_http_req_header(req, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return 401;
    h += 7;
    while (*h == ' ')
        h++;
    return qs_consttime_streq(h, token) ? 0 : 401;
}

/* Appends the JSON-escaped s to out. */
static int json_escape(struct qs_buf *out, const char *s)
{
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && rc == 0; p++) {
        if (*p == '"' || *p == '\\')
            rc = qs_buf_printf(out, "\\%c", *p);
        else if (*p < 0x20)
            rc = qs_buf_printf(out, "\\u%04x", *p);
        else
            rc = qs_buf_append(out, p, 1);
    }
    return rc;
}

/* What a response says about the connection. */
enum conn_mode {
    CONN_CLOSE = 0,   /* "Connection: close": the connection ends after this answer */
    CONN_KEEP = 1,    /* HTTP/1.1 persistent: no header needed */
    CONN_KEEP_10 = 2, /* HTTP/1.0 client that asked to keep the connection */
};

#define APPEND_LIT(b, lit) qs_buf_append((b), (lit), sizeof(lit) - 1)

/* Appends a response head (the body's length len, after any gzip) to out. */
static int format_head(struct qs_buf *out, int status, const char *ctype, const char *extra,
                       size_t len, int gzip, int vary, enum conn_mode conn)
{
    char line[96];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, qs_http_status_text(status));
    int rc = qs_buf_append(out, line, (size_t)n);
    if (ctype != NULL) {
        rc |= APPEND_LIT(out, "Content-Type: ");
        rc |= qs_buf_append(out, ctype, strlen(ctype));
        rc |= APPEND_LIT(out, "\r\n");
    }
    n = snprintf(line, sizeof(line), "Content-Length: %zu\r\n", len);
    rc |= qs_buf_append(out, line, (size_t)n);
    if (gzip)
        rc |= APPEND_LIT(out, "Content-Encoding: gzip\r\n");
    if (vary)
        rc |= APPEND_LIT(out, "Vary: Accept-Encoding\r\n");
    rc |= APPEND_LIT(out, "Cache-Control: no-store\r\n"
                          "X-Content-Type-Options: nosniff\r\n");
    if (conn == CONN_CLOSE)
        rc |= APPEND_LIT(out, "Connection: close\r\n");
    else if (conn == CONN_KEEP_10)
        rc |= APPEND_LIT(out, "Connection: keep-alive\r\n");
    if (extra != NULL)
        rc |= qs_buf_append(out, extra, strlen(extra));
    rc |= APPEND_LIT(out, "\r\n");
    return rc != 0 ? UV_ENOMEM : 0;
}

/* The body a response carries: gzipped when allowed and accepted (the gzip
 * form from cache when it holds this version, else made into z or into the
 * cache). body, accept_encoding, cache borrowed; *out_body points into body,
 * z or the cache. Sets *gzip and *vary for the head. */
static void choose_body(const void *body, size_t len, unsigned flags, const char *accept_encoding,
                        uint64_t version, struct qs_http_gzip_cache *cache, struct qs_buf *z,
                        const void **out_body, size_t *out_len, int *gzip, int *vary)
{
    *out_body = body;
    *out_len = len;
    *vary = len > 0 && ((flags & QS_HTTP_GZIP_ALWAYS) || len >= QS_HTTP_GZIP_MIN);
    *gzip = *vary && qs_http_accepts_gzip(accept_encoding);
    if (!*gzip)
        return;
    if (cache != NULL) {
        if (!cache->valid || cache->version != version) {
            qs_buf_reset(&cache->gz);
            cache->valid = qs_http_gzip(body, len, &cache->gz) == 0;
            cache->version = version;
        }
        if (cache->valid) {
            *out_body = cache->gz.data;
            *out_len = cache->gz.len;
            return;
        }
    } else if (qs_http_gzip(body, len, z) == 0) {
        *out_body = z->data;
        *out_len = z->len;
        return;
    }
    *gzip = 0; /* out of memory: the identity body still answers */
}

/* Serialises a whole response. accept_encoding borrowed (NULL = identity). */
static int format_response(struct qs_buf *out, int status, const char *ctype, const char *extra,
                           const void *body, size_t len, unsigned flags,
                           const char *accept_encoding, int head, enum conn_mode conn)
{
    struct qs_buf z;
    qs_buf_init(&z);
    int gzip, vary;
    choose_body(body, len, flags, accept_encoding, 0, NULL, &z, &body, &len, &gzip, &vary);
    int rc = format_head(out, status, ctype, extra, len, gzip, vary, conn);
    if (rc == 0 && !head && len > 0)
        rc = qs_buf_append(out, body, len);
    qs_buf_free(&z);
    return rc != 0 ? UV_ENOMEM : 0;
}

/* Error messages are at most this long in a body (after redaction). */
#define ERROR_MSG_MAX 1024

int qs_http_json_error_body(const char *message, struct qs_buf *body)
{
    /* Redact first: a secret cut by the length limit would go unrecognised. */
    char *msg = qs_log_redacted(message);
    if (msg == NULL)
        return UV_ENOMEM;
    if (strlen(msg) > ERROR_MSG_MAX)
        msg[ERROR_MSG_MAX] = '\0';
    int rc = qs_buf_append(body, "{\"error\":\"", 10);
    rc |= json_escape(body, msg);
    rc |= qs_buf_append(body, "\"}", 2);
    free(msg);
    return rc != 0 ? UV_ENOMEM : 0;
}

/* ---- reader ------------------------------------------------------------------- */

struct qs_http_reader {
    http_parser parser;
    http_parser_settings settings;
    struct qs_http_server_opts opts;
    struct qs_http_req *req;
    struct qs_buf url, field, value;
    int in_value;
    size_t head_bytes;
    size_t trailer_bytes;
    int head_done;
    int complete;
    int keep_alive; /* the completed request lets the connection carry another */
    int err_status;
};

static void apply_defaults(struct qs_http_server_opts *o, const struct qs_http_server_opts *in)
{
    if (in != NULL)
        *o = *in;
    else
        memset(o, 0, sizeof(*o));
    /* 0 means "the default" in every field. */
    o->timeout_ms = o->timeout_ms != 0 ? o->timeout_ms : QS_HTTP_DEFAULT_TIMEOUT_MS;
    o->max_conns = o->max_conns != 0 ? o->max_conns : QS_HTTP_DEFAULT_MAX_CONNS;
    o->max_head = o->max_head != 0 ? o->max_head : QS_HTTP_DEFAULT_MAX_HEAD;
    o->max_body = o->max_body != 0 ? o->max_body : QS_HTTP_DEFAULT_MAX_BODY;
    o->max_pending = o->max_pending != 0 ? o->max_pending : QS_HTTP_DEFAULT_MAX_PENDING;
    o->idle_ms = o->idle_ms != 0 ? o->idle_ms : QS_HTTP_DEFAULT_IDLE_MS;
    o->max_requests = o->max_requests != 0 ? o->max_requests : QS_HTTP_DEFAULT_MAX_REQUESTS;
}

static int fail(struct qs_http_reader *r, int status)
{
    if (r->err_status == 0)
        r->err_status = status;
    return -1;
}

static int commit_header(struct qs_http_reader *r)
{
    struct qs_http_req *req = r->req;
    if (!r->in_value)
        return 0;
    if (req->nhdrs >= QS_HTTP_MAX_HEADERS)
        return fail(r, 431);
    size_t name_off = req->hdrs.len;
    int rc = qs_buf_append(&req->hdrs, r->field.data ? r->field.data : "", r->field.len + 0);
    rc |= qs_buf_append(&req->hdrs, "", 1);
    size_t value_off = req->hdrs.len;
    /* Header values lose their trailing whitespace (http_parser keeps it). */
    size_t vl = r->value.len;
    while (vl > 0 && (r->value.data[vl - 1] == ' ' || r->value.data[vl - 1] == '\t'))
        vl--;
    rc |= qs_buf_append(&req->hdrs, r->value.data ? r->value.data : "", vl);
    rc |= qs_buf_append(&req->hdrs, "", 1);
    if (rc != 0)
        return fail(r, 500);
    req->hoff[req->nhdrs][0] = name_off;
    req->hoff[req->nhdrs][1] = value_off;
    req->nhdrs++;
    qs_buf_reset(&r->field);
    qs_buf_reset(&r->value);
    r->in_value = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct qs_http_reader *r = p->data;
    return qs_buf_append(&r->url, at, len) == 0 ? 0 : fail(r, 500);
}

/* Chunked trailers (header lines after the body) are read and dropped: a
 * request's headers are the ones its head carried, which is what the server
 * checked before reading the body. They are bounded like the head. */
static int on_trailer(struct qs_http_reader *r, size_t len)
{
    r->trailer_bytes += len;
    return r->trailer_bytes > r->opts.max_head ? fail(r, 431) : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct qs_http_reader *r = p->data;
    if (r->head_done)
        return on_trailer(r, len);
    if (r->in_value && commit_header(r) != 0)
        return -1;
    return qs_buf_append(&r->field, at, len) == 0 ? 0 : fail(r, 500);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct qs_http_reader *r = p->data;
    if (r->head_done)
        return on_trailer(r, len);
    r->in_value = 1;
    return qs_buf_append(&r->value, at, len) == 0 ? 0 : fail(r, 500);
}

static int on_headers_complete(http_parser *p)
{
    struct qs_http_reader *r = p->data;
    struct qs_http_req *req = r->req;
    if (commit_header(r) != 0)
        return -1;
    r->head_done = 1;
    if (p->http_major != 1)
        return fail(r, 505);
    req->http10 = p->http_minor == 0;
    qs_strlcpy(req->method, http_method_str((enum http_method)p->method), sizeof(req->method));
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (r->url.len == 0 ||
        http_parser_parse_url(r->url.data, r->url.len, p->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH)))
        return fail(r, 400);
    const char *raw = r->url.data + u.field_data[UF_PATH].off;
    size_t rawlen = u.field_data[UF_PATH].len;
    req->path = malloc(rawlen + 1);
    if (req->path == NULL)
        return fail(r, 500);
    if (qs_http_path_decode(raw, rawlen, req->path, rawlen + 1) != 0)
        return fail(r, 400);
    if (u.field_set & (1 << UF_QUERY))
        req->query = strndup(r->url.data + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    else
        req->query = strdup("");
    if (req->query == NULL)
        return fail(r, 500);
    /* content_length is ULLONG_MAX when the header is absent. */
    if (p->content_length != ULLONG_MAX && p->content_length > r->opts.max_body)
        return fail(r, 413);
    const char *expect = qs_http_req_header(req, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0)
        req->expect_continue = 1;
    req->has_body =
        (p->flags & F_CHUNKED) || (p->content_length != ULLONG_MAX && p->content_length > 0);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct qs_http_reader *r = p->data;
    if (r->req->body.len + len > r->opts.max_body)
        return fail(r, 413);
    return qs_buf_append(&r->req->body, at, len) == 0 ? 0 : fail(r, 500);
}

static int on_message_complete(http_parser *p)
{
    struct qs_http_reader *r = p->data;
    r->complete = 1;
    /* Read before the parser starts on the next message, which resets the
     * flags it is computed from. An upgrade is never honoured: the
     * connection ends after the answer. */
    r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    r->req->keep_alive = r->keep_alive;
    http_parser_pause(p, 1);
    return 0;
}

struct qs_http_reader *qs_http_reader_new(const struct qs_http_server_opts *opts)
{
    struct qs_http_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->req = calloc(1, sizeof(*r->req));
    if (r->req == NULL) {
        free(r);
        return NULL;
    }
    apply_defaults(&r->opts, opts);
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    http_parser_settings_init(&r->settings);
    r->settings.on_url = on_url;
    r->settings.on_header_field = on_header_field;
    r->settings.on_header_value = on_header_value;
    r->settings.on_headers_complete = on_headers_complete;
    r->settings.on_body = on_body;
    r->settings.on_message_complete = on_message_complete;
    return r;
}

void qs_http_reader_free(struct qs_http_reader *r)
{
    if (r == NULL)
        return;
    req_free(r->req);
    qs_buf_free(&r->url);
    qs_buf_free(&r->field);
    qs_buf_free(&r->value);
    free(r);
}

int qs_http_reader_feed(struct qs_http_reader *r, const char *data, size_t len, int *status)
{
    size_t used;
    return qs_http_reader_feed_used(r, data, len, &used, status);
}

int qs_http_reader_feed_used(struct qs_http_reader *r, const char *data, size_t len, size_t *used,
                             int *status)
{
    *status = 0;
    *used = 0;
    if (r->complete)
        return 1;
    while (r->err_status == 0 && len > 0) {
        size_t slice = len;
        if (!r->head_done) {
            /* Never let the head grow past the limit, whatever the chunking. */
            size_t budget = r->opts.max_head - r->head_bytes + 1;
            if (slice > budget)
                slice = budget;
        }
        int was_head_done = r->head_done;
        size_t n = http_parser_execute(&r->parser, &r->settings, data, slice);
        *used += n;
        if (r->complete)
            return 1;
        if (r->err_status != 0)
            break;
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e != HPE_OK) {
            r->err_status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
            break;
        }
        if (!was_head_done && !r->head_done) {
            r->head_bytes += n;
            if (r->head_bytes > r->opts.max_head) {
                r->err_status = 431;
                break;
            }
        }
        data += n;
        len -= n;
    }
    if (r->err_status != 0) {
        *status = r->err_status;
        return r->err_status == 413 ? QS_ETOOBIG : QS_EINVAL;
    }
    return 0;
}

int qs_http_reader_head_done(const struct qs_http_reader *r)
{
    return r->head_done && r->err_status == 0;
}

struct qs_http_req *qs_http_reader_take(struct qs_http_reader *r)
{
    if (!r->complete || r->req == NULL)
        return NULL;
    struct qs_http_req *req = r->req;
    r->req = NULL;
    return req;
}

int qs_http_reader_next(struct qs_http_reader *r)
{
    if (!r->complete || r->req != NULL || !r->keep_alive)
        return QS_EINVAL;
    struct qs_http_req *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return UV_ENOMEM;
    r->req = req;
    qs_buf_reset(&r->url);
    qs_buf_reset(&r->field);
    qs_buf_reset(&r->value);
    r->in_value = 0;
    r->head_bytes = 0;
    r->trailer_bytes = 0;
    r->head_done = 0;
    r->complete = 0;
    r->keep_alive = 0;
    r->err_status = 0;
    /* The parser already stands at the start of the next message. */
    http_parser_pause(&r->parser, 0);
    return 0;
}

/* ---- routing ----------------------------------------------------------------- */

struct route {
    char method[16];
    char *path;
    size_t len;
    int prefix;
    qs_http_handler_fn fn;
    void *ud;
    char **params; /* owned, NULL-terminated; NULL = none */
    unsigned flags;
    size_t pending; /* requests its handler holds unanswered */
};

enum listener_state {
    LISTENER_IDLE = 0, /* initialised, maybe listening */
    LISTENER_CLOSING = 1,
    LISTENER_CLOSED = 2,
};

/* Every connection is in exactly one queue, by what it is doing; a queue is
 * oldest first, so the connection to close when room is needed is always at
 * a head. */
enum conn_class {
    CLS_WAITING = 0,  /* answered and kept alive: nothing of the next request yet */
    CLS_IDLE = 1,     /* new: nothing received yet */
    CLS_HEAD = 2,     /* reading the request head */
    CLS_BODY = 3,     /* head accepted (route, token, parameters): reading the body */
    CLS_HANDLING = 4, /* a handler holds the request */
    CLS_WRITING = 5,  /* writing the answer */
    CLS_LINGER = 6,   /* answered for the last time: draining what the client still sends */
    CLS_CLOSING = 7,  /* closed, waiting for the handle callbacks */
    CLS_COUNT = 8,
};

struct conn;

struct conn_queue {
    struct conn *head, *tail;
    size_t n;
};

struct qs_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    enum listener_state lstate;
    int port;
    struct qs_http_server_opts opts;
    size_t max_open; /* open connections of every kind (not closing) */
    struct route *routes;
    size_t nroutes;
    char *bearer;     /* owned; NULL = none configured */
    char *bearer_off; /* owned: the 403 message when none is configured */
    struct conn_queue q[CLS_COUNT];
    struct qs_http_req *pending; /* requests handlers hold (their routes count them) */
    struct qs_buf head;          /* scratch: the response head being sent */
    struct qs_http_server_stats stats;
    int closing;
    uint64_t last_shed_log, last_refuse_log, last_busy_log; /* uv_now() of the last line */
    void (*done)(void *ud);
    void *done_ud;
};

static void route_free(struct route *r)
{
    free(r->path);
    if (r->params != NULL)
        for (size_t i = 0; r->params[i] != NULL; i++)
            free(r->params[i]);
    free(r->params);
}

int qs_http_route_ex(struct qs_http_server *s, const char *method, const char *path,
                     qs_http_handler_fn fn, void *ud, const struct qs_http_route_opts *opts)
{
    if (s == NULL || method == NULL || path == NULL || fn == NULL || path[0] != '/' ||
        strlen(method) == 0 || strlen(method) >= sizeof(((struct route *)0)->method))
        return QS_EINVAL;
    for (size_t i = 0; i < s->nroutes; i++)
        if (strcmp(s->routes[i].method, method) == 0 && strcmp(s->routes[i].path, path) == 0)
            return QS_EINVAL;
    struct route r;
    memset(&r, 0, sizeof(r));
    qs_strlcpy(r.method, method, sizeof(r.method));
    r.path = strdup(path);
    if (r.path == NULL)
        return UV_ENOMEM;
    r.len = strlen(path);
    r.prefix = r.len > 1 && path[r.len - 1] == '/';
    r.fn = fn;
    r.ud = ud;
    if (opts != NULL) {
        r.flags = opts->flags;
        size_t n = 0;
        while (opts->params != NULL && opts->params[n] != NULL)
            n++;
        if (n > 0) {
            r.params = calloc(n + 1, sizeof(char *));
            for (size_t i = 0; r.params != NULL && i < n; i++) {
                if ((r.params[i] = strdup(opts->params[i])) == NULL) {
                    route_free(&r);
                    return UV_ENOMEM;
                }
            }
            if (r.params == NULL) {
                route_free(&r);
                return UV_ENOMEM;
            }
        }
    }
    struct route *p = realloc(s->routes, (s->nroutes + 1) * sizeof(*p));
    if (p == NULL) {
        route_free(&r);
        return UV_ENOMEM;
    }
    s->routes = p;
    s->routes[s->nroutes++] = r;
    return 0;
}

int qs_http_route(struct qs_http_server *s, const char *method, const char *path,
                  qs_http_handler_fn fn, void *ud)
{
    return qs_http_route_ex(s, method, path, fn, ud, NULL);
}

int qs_http_server_set_bearer(struct qs_http_server *s, const char *token, const char *disabled_msg)
{
    char *t = token != NULL && token[0] != '\0' ? strdup(token) : NULL;
    char *m = strdup(disabled_msg != NULL ? disabled_msg : "no bearer token is configured");
    if (m == NULL || (t == NULL && token != NULL && token[0] != '\0')) {
        free(t);
        free(m);
        return UV_ENOMEM;
    }
    free(s->bearer);
    free(s->bearer_off);
    s->bearer = t;
    s->bearer_off = m;
    return 0;
}

static int route_matches_path(const struct route *r, const char *path, size_t plen)
{
    if (!r->prefix)
        return plen == r->len && strcmp(r->path, path) == 0;
    return plen > r->len && strncmp(r->path, path, r->len) == 0;
}

/* The route for method and path: 0 with its index in *idx, 404 or 405 (the
 * allowed methods in allow, capacity allow_cap, may be NULL). */
static int match_route(const struct qs_http_server *s, const char *method, const char *path,
                       size_t *idx, char *allow, size_t allow_cap)
{
    size_t plen = strlen(path);
    /* Which route path wins: exact first, then the longest prefix. */
    const struct route *best = NULL;
    for (size_t i = 0; i < s->nroutes; i++) {
        const struct route *r = &s->routes[i];
        if (!route_matches_path(r, path, plen))
            continue;
        if (best == NULL || (best->prefix && !r->prefix) ||
            (best->prefix && r->prefix && r->len > best->len))
            best = r;
    }
    if (best == NULL)
        return 404;
    int is_head = strcmp(method, "HEAD") == 0;
    size_t hit = SIZE_MAX, get = SIZE_MAX;
    for (size_t i = 0; i < s->nroutes; i++) {
        const struct route *r = &s->routes[i];
        if (r->prefix != best->prefix || strcmp(r->path, best->path) != 0)
            continue;
        if (strcmp(r->method, method) == 0)
            hit = i;
        if (strcmp(r->method, "GET") == 0)
            get = i;
    }
    if (hit == SIZE_MAX && is_head)
        hit = get;
    if (hit != SIZE_MAX) {
        *idx = hit;
        return 0;
    }
    if (allow != NULL && allow_cap > 0) {
        struct qs_buf b;
        qs_buf_init(&b);
        for (size_t i = 0; i < s->nroutes; i++) {
            const struct route *r = &s->routes[i];
            if (r->prefix != best->prefix || strcmp(r->path, best->path) != 0)
                continue;
            qs_buf_printf(&b, "%s%s%s", b.len ? ", " : "", r->method,
                          strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
        }
        qs_strlcpy(allow, b.data != NULL ? b.data : "", allow_cap);
        qs_buf_free(&b);
    }
    return 405;
}

int qs_http_match(const struct qs_http_server *s, const char *method, const char *path,
                  qs_http_handler_fn *fn, void **ud, size_t *prefix_len, char *allow,
                  size_t allow_cap)
{
    size_t i;
    int rc = match_route(s, method, path, &i, allow, allow_cap);
    if (rc != 0)
        return rc;
    const struct route *r = &s->routes[i];
    *fn = r->fn;
    *ud = r->ud;
    if (prefix_len != NULL)
        *prefix_len = r->prefix ? r->len : strlen(path);
    return 0;
}

/* ---- pending requests --------------------------------------------------------- */

static void req_pend(struct qs_http_server *s, struct qs_http_req *req, size_t route)
{
    req->server = s;
    req->route = route;
    s->routes[route].pending++;
    req->pprev = NULL;
    req->pnext = s->pending;
    if (s->pending != NULL)
        s->pending->pprev = req;
    s->pending = req;
}

static void req_unpend(struct qs_http_req *req)
{
    struct qs_http_server *s = req->server;
    if (s == NULL)
        return;
    s->routes[req->route].pending--;
    if (req->pprev != NULL)
        req->pprev->pnext = req->pnext;
    else
        s->pending = req->pnext;
    if (req->pnext != NULL)
        req->pnext->pprev = req->pprev;
    req->server = NULL;
    req->pprev = req->pnext = NULL;
}

/* ---- connections ----------------------------------------------------------- */

/* Bytes a connection buffers beyond the request it is answering (pipelined
 * requests); past this the server stops reading until it has caught up. */
#define PEND_MAX (16 * 1024)

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* the current deadline, or the resumption of pipelined bytes */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct qs_http_server *server;
    struct conn *prev, *next; /* in server->q[cls] */
    enum conn_class cls;
    int queued;
    struct qs_http_reader *reader;
    struct qs_http_req *req; /* while a handler holds it */
    uint64_t started_at;     /* uv_now(): accept, then the first byte of each later request */
    size_t nreq;             /* requests dispatched on this connection */
    int full_deadline;       /* the head deadline is the full timeout */
    int gated;               /* the head passed route, token and parameter checks */
    int keep;                /* the answer being written leaves the connection open */
    int eof;                 /* the client has finished sending */
    int read_paused;         /* reading stopped: pend is full */
    int resume;              /* the timer feeds pend to the reader (not a deadline) */
    int closing;
    int open_handles;
    int continue_sent;
    size_t drained;
    struct qs_buf pend; /* received after the current request, not parsed yet */
    char *wbuf;         /* owned: what the kernel has not taken of an answer yet */
    char rbuf[READ_BUF_SIZE];
};

static const char reject_503[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                 "Content-Type: application/json\r\n"
                                 "Content-Length: 32\r\n"
                                 "Retry-After: 1\r\n"
                                 "Connection: close\r\n"
                                 "\r\n"
                                 "{\"error\":\"too many connections\"}";
static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* Takes c out of the queue of its class. */
static void conn_unlink(struct conn *c)
{
    struct conn_queue *q = &c->server->q[c->cls];
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        q->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        q->tail = c->prev;
    q->n--;
}

static void conn_enqueue(struct conn *c, enum conn_class cls)
{
    struct qs_http_server *s = c->server;
    if (c->queued)
        conn_unlink(c);
    struct conn_queue *q = &s->q[cls];
    c->cls = cls;
    c->queued = 1;
    c->next = NULL;
    c->prev = q->tail;
    if (q->tail != NULL)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->n++;
}

/* Connections that take a reading slot: waiting for a request or reading one. */
static size_t conns_reading(const struct qs_http_server *s)
{
    return s->q[CLS_WAITING].n + s->q[CLS_IDLE].n + s->q[CLS_HEAD].n + s->q[CLS_BODY].n;
}

static int is_reading(const struct conn *c)
{
    return c->cls == CLS_WAITING || c->cls == CLS_IDLE || c->cls == CLS_HEAD || c->cls == CLS_BODY;
}

static size_t conns_open(const struct qs_http_server *s)
{
    size_t n = 0;
    for (int i = 0; i < CLS_CLOSING; i++)
        n += s->q[i].n;
    return n;
}

static size_t conns_all(const struct qs_http_server *s)
{
    return conns_open(s) + s->q[CLS_CLOSING].n;
}

/* More than half of the reading slots are taken: deadlines are short. */
static int under_pressure(const struct qs_http_server *s)
{
    return conns_reading(s) > s->opts.max_conns / 2;
}

static void server_maybe_done(struct qs_http_server *s)
{
    if (!s->closing || s->lstate != LISTENER_CLOSED || conns_all(s) > 0)
        return;
    void (*done)(void *) = s->done;
    void *ud = s->done_ud;
    /* Requests handlers still hold outlive the server: they stop counting. */
    while (s->pending != NULL)
        req_unpend(s->pending);
    for (size_t i = 0; i < s->nroutes; i++)
        route_free(&s->routes[i]);
    free(s->routes);
    free(s->bearer);
    free(s->bearer_off);
    qs_buf_free(&s->head);
    free(s);
    if (done != NULL)
        done(ud);
}

static void conn_handle_closed_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    struct qs_http_server *s = c->server;
    conn_unlink(c);
    qs_http_reader_free(c->reader);
    qs_buf_free(&c->pend);
    free(c->wbuf);
    free(c);
    server_maybe_done(s);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->req != NULL) {
        /* A handler still holds the request: detach it; its answer is dropped. */
        c->req->conn = NULL;
        c->req = NULL;
    }
    conn_enqueue(c, CLS_CLOSING);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
}

static void conn_resume(struct conn *c);

static void conn_timer_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->resume) {
        c->resume = 0;
        conn_resume(c);
        return;
    }
    if (is_reading(c) && c->cls != CLS_WAITING) {
        c->server->stats.timed_out++;
        QS_DEBUG("http: connection timed out while reading the request");
    }
    conn_close(c);
}

/* Makes room for one more connection: while the reading slots or the open
 * connections are at their cap, closes the connection that matters least --
 * an answered one still draining (only for the open cap), then the one that
 * has waited longest for its next request after an answer, then the oldest
 * one that has sent nothing at all, then the one that has waited longest
 * without completing its request head, then the oldest one still sending its
 * body, then (open cap only) the oldest one being answered. Requests handlers
 * hold are never closed here; they are bounded by max_pending per route.
 * Returns 0, or -1 when nothing could be closed. */
static int make_room(struct qs_http_server *s)
{
    for (;;) {
        int open_full = conns_open(s) >= s->max_open;
        int reading_full = conns_reading(s) >= s->opts.max_conns;
        if (!open_full && !reading_full)
            return 0;
        struct conn *v = NULL;
        if (open_full && s->q[CLS_LINGER].head != NULL)
            v = s->q[CLS_LINGER].head;
        else if (s->q[CLS_WAITING].head != NULL)
            v = s->q[CLS_WAITING].head;
        else if (s->q[CLS_IDLE].head != NULL)
            v = s->q[CLS_IDLE].head;
        else if (s->q[CLS_HEAD].head != NULL)
            v = s->q[CLS_HEAD].head;
        else if (s->q[CLS_BODY].head != NULL)
            v = s->q[CLS_BODY].head;
        else if (open_full && s->q[CLS_WRITING].head != NULL)
            v = s->q[CLS_WRITING].head;
        if (v == NULL)
            return -1;
        if (v->cls != CLS_LINGER)
            s->stats.shed++;
        if (is_reading(v)) {
            uint64_t now = uv_now(s->loop);
            if (s->last_shed_log == 0 || now - s->last_shed_log >= LOG_EVERY_MS) {
                s->last_shed_log = now;
                QS_WARN("http: %zu connections are reading or awaiting a request (limit %zu): "
                        "closing idle and incomplete ones to serve new ones (%llu closed so far)",
                        conns_reading(s), s->opts.max_conns, (unsigned long long)s->stats.shed);
            }
        }
        conn_close(v);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    buf->base = c->rbuf;
    buf->len = sizeof(c->rbuf);
}

static void linger_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = st->data;
    (void)buf;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->drained += (size_t)nread;
    if (c->drained > LINGER_MAX_BYTES)
        conn_close(c);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (status != 0)
        conn_close(c);
}

/* Lingering close after the last answer: send FIN, drain what the client
 * still sends, so it reads our answer instead of a reset. A client that has
 * already finished sending has nothing left to drain. */
static void conn_linger(struct conn *c)
{
    if (c->eof) {
        conn_close(c);
        return;
    }
    conn_enqueue(c, CLS_LINGER);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, shutdown_cb) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, linger_read_cb) != 0) {
        conn_close(c);
        return;
    }
    uint64_t t = c->server->opts.timeout_ms < LINGER_MS ? c->server->opts.timeout_ms : LINGER_MS;
    uv_timer_start(&c->timer, conn_timer_cb, t, 0);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Reads again once the buffered bytes have been worked off (never once the
 * connection lingers: that reads with a callback of its own). */
static void conn_read_more(struct conn *c)
{
    if (!c->read_paused || c->eof || c->closing || c->cls == CLS_LINGER || c->pend.len >= PEND_MAX)
        return;
    c->read_paused = 0;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0)
        conn_close(c);
}

/* The answer has been sent and the connection stays: wait for the next
 * request, or work on the one already received. */
static void conn_wait(struct conn *c)
{
    struct qs_http_server *s = c->server;
    if (qs_http_reader_next(c->reader) != 0) {
        conn_linger(c);
        return;
    }
    c->gated = 0;
    c->continue_sent = 0;
    conn_enqueue(c, CLS_WAITING);
    if (c->pend.len > 0) {
        /* Pipelined bytes are parsed from the timer, in a later turn of the
         * loop: a handler that answers at once never recurses into the next
         * request. */
        c->resume = 1;
        uv_timer_start(&c->timer, conn_timer_cb, 0, 0);
        return;
    }
    if (c->eof || conns_reading(s) > s->opts.max_conns) {
        conn_linger(c);
        return;
    }
    uint64_t idle = s->opts.idle_ms;
    if (under_pressure(s) && idle > PRESSURE_HEAD_MS)
        idle = PRESSURE_HEAD_MS;
    uv_timer_start(&c->timer, conn_timer_cb, idle, 0);
    conn_read_more(c);
}

/* The kernel has the whole answer. */
static void conn_written(struct conn *c)
{
    if (c->keep)
        conn_wait(c);
    else
        conn_linger(c);
}

static void write_cb(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    free(c->wbuf);
    c->wbuf = NULL;
    if (c->closing)
        return;
    if (status != 0) {
        conn_close(c);
        return;
    }
    conn_written(c);
}

static void continue_cb(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    free(w);
    if (status != 0 && !c->closing)
        conn_close(c);
}

/* Sends an answer: head, then body (both borrowed; body may be NULL when
 * blen is 0). What the kernel takes at once is not copied; the rest is, and
 * goes out under the write deadline. keep: the connection carries the next
 * request afterwards. */
static void conn_send(struct conn *c, const char *head, size_t hlen, const char *body, size_t blen,
                      int keep)
{
    c->keep = keep;
    conn_enqueue(c, CLS_WRITING);
    uv_timer_stop(&c->timer);
    uv_buf_t b[2] = {uv_buf_init((char *)(uintptr_t)head, (unsigned int)hlen),
                     uv_buf_init((char *)(uintptr_t)body, (unsigned int)blen)};
    int n = uv_try_write((uv_stream_t *)&c->tcp, b, blen > 0 ? 2 : 1);
    if (n < 0 && n != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == hlen + blen) {
        conn_written(c);
        return;
    }
    size_t rest = hlen + blen - done, o = 0;
    c->wbuf = malloc(rest);
    if (c->wbuf == NULL) {
        conn_close(c);
        return;
    }
    if (done < hlen) {
        memcpy(c->wbuf, head + done, hlen - done);
        o = hlen - done;
        done = hlen;
    }
    if (o < rest)
        memcpy(c->wbuf + o, body + (done - hlen), rest - o);
    uv_buf_t ub = uv_buf_init(c->wbuf, (unsigned int)rest);
    c->wreq.data = c;
    uv_timer_start(&c->timer, conn_timer_cb, c->server->opts.timeout_ms, 0);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &ub, 1, write_cb) != 0) {
        free(c->wbuf);
        c->wbuf = NULL;
        conn_close(c);
    }
}

/* How the answer to req (borrowed, may be NULL: the request was not read
 * completely) leaves the connection: open only when the client wants that,
 * has sent (or may still send) another request, the connection has requests
 * left, the server is not shutting down and a reading slot is free for it. */
static enum conn_mode conn_keep_mode(const struct conn *c, const struct qs_http_req *req)
{
    const struct qs_http_server *s = c->server;
    if (req == NULL || !req->keep_alive || (c->eof && c->pend.len == 0) ||
        c->nreq >= s->opts.max_requests || s->closing || s->lstate != LISTENER_IDLE ||
        conns_reading(s) >= s->opts.max_conns)
        return CONN_CLOSE;
    return req->http10 ? CONN_KEEP_10 : CONN_KEEP;
}

/* Answers {"error": msg} on c. req (borrowed) is the request when it was
 * read completely, so the connection may carry the next one; NULL when the
 * stream is in an unknown state (a parse error, or a body left unread): the
 * connection then closes. */
static void conn_send_error(struct conn *c, const struct qs_http_req *req, int status,
                            const char *msg, const char *extra)
{
    struct qs_http_server *s = c->server;
    int head = req != NULL && strcmp(req->method, "HEAD") == 0;
    enum conn_mode mode = conn_keep_mode(c, req);
    struct qs_buf body;
    qs_buf_init(&body);
    qs_buf_reset(&s->head);
    if (qs_http_json_error_body(msg, &body) != 0 ||
        format_head(&s->head, status, "application/json", extra, body.len, 0, 0, mode) != 0) {
        qs_buf_free(&body);
        conn_close(c);
        return;
    }
    conn_send(c, s->head.data, s->head.len, head ? NULL : body.data, head ? 0 : body.len,
              mode != CONN_CLOSE);
    qs_buf_free(&body);
}

static const char *error_message(int status)
{
    switch (status) {
    case 400:
        return "malformed request";
    case 413:
        return "request body too large";
    case 431:
        return "request head too large";
    case 505:
        return "HTTP version not supported";
    default:
        return "internal error";
    }
}

/* Checks a request whose head is complete (req borrowed): route (404/405),
 * bearer token when the route requires one (401/403), query parameters
 * (400). Returns 0 with the route's index in *route, or answers the request
 * on c and returns -1. Runs before the body is read (complete 0: a refused
 * request closes the connection, its body unread) and again before the
 * handler (complete 1), so a request is never dispatched unchecked. */
static int gate(struct conn *c, const struct qs_http_req *req, int complete, size_t *route)
{
    struct qs_http_server *s = c->server;
    const struct qs_http_req *done = complete ? req : NULL;
    char allow[128];
    int rc = match_route(s, req->method, req->path, route, allow, sizeof(allow));
    if (rc == 404) {
        conn_send_error(c, done, 404, "not found", NULL);
        return -1;
    }
    if (rc == 405) {
        char extra[160];
        snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
        conn_send_error(c, done, 405, "method not allowed", extra);
        return -1;
    }
    const struct route *r = &s->routes[*route];
    if (req->has_body && strcmp(r->method, "GET") == 0) {
        /* Nothing is read that no handler wants: only requests that passed
         * their route's checks ever occupy a slot while a body arrives. */
        conn_send_error(c, done, 400, "this endpoint takes no request body", NULL);
        return -1;
    }
    if (r->flags & QS_HTTP_ROUTE_BEARER) {
        int a = qs_http_bearer_ok(req, s->bearer);
        if (a == 403) {
            conn_send_error(c, done, 403, s->bearer_off, NULL);
            return -1;
        }
        if (a != 0) {
            conn_send_error(c, done, 401, "missing or invalid bearer token",
                            "WWW-Authenticate: Bearer\r\n");
            return -1;
        }
    }
    char msg[160];
    if (qs_http_query_check(req->query, (const char *const *)r->params, msg, sizeof(msg)) != 0) {
        conn_send_error(c, done, 400, msg, NULL);
        return -1;
    }
    return 0;
}

static void dispatch(struct conn *c)
{
    struct qs_http_req *req = qs_http_reader_take(c->reader);
    if (req == NULL) {
        conn_close(c);
        return;
    }
    uv_timer_stop(&c->timer);
    c->nreq++;
    conn_enqueue(c, CLS_HANDLING);
    QS_DEBUG("http: %s %s", req->method, req->path);
    size_t ri;
    if (gate(c, req, 1, &ri) != 0) {
        req_free(req);
        return;
    }
    struct qs_http_server *s = c->server;
    struct route *r = &s->routes[ri];
    if (r->pending >= s->opts.max_pending) {
        s->stats.busy++;
        uint64_t now = uv_now(s->loop);
        if (s->last_busy_log == 0 || now - s->last_busy_log >= LOG_EVERY_MS) {
            s->last_busy_log = now;
            QS_WARN("http: %s %s already has %zu requests in progress; answering 503", r->method,
                    r->path, r->pending);
        }
        conn_send_error(c, req, 503, "too many requests to this endpoint in progress, retry later",
                        "Retry-After: 1\r\n");
        req_free(req);
        return;
    }
    req->rest_off = r->prefix ? r->len : strlen(req->path);
    req->conn = c;
    c->req = req;
    req_pend(s, req, ri);
    r->fn(req, r->ud);
    /* req may be gone here (answered synchronously). */
}

/* The head is complete but the body is still coming: check the request now,
 * so a refused one never has its body read (and is never told to send it). */
static void head_done(struct conn *c)
{
    size_t ri;
    c->gated = 1;
    if (gate(c, c->reader->req, 0, &ri) != 0)
        return;
    conn_enqueue(c, CLS_BODY);
    if (!c->full_deadline) {
        /* The short head deadline of a busy moment is over: the rest of the
         * request gets what is left of the full one. */
        uint64_t now = uv_now(c->server->loop), end = c->started_at + c->server->opts.timeout_ms;
        uv_timer_start(&c->timer, conn_timer_cb, end > now ? end - now : 1, 0);
    }
    if (c->reader->req->expect_continue && !c->continue_sent) {
        c->continue_sent = 1;
        uv_write_t *w = malloc(sizeof(*w));
        uv_buf_t b = uv_buf_init((char *)continue_100, sizeof(continue_100) - 1);
        if (w == NULL) {
            conn_close(c);
            return;
        }
        w->data = c;
        if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, continue_cb) != 0) {
            free(w);
            conn_close(c);
        }
    }
}

/* Starts the deadline of a request's head: the full request timeout, or a
 * short one while the connection slots are mostly taken. */
static void start_head_deadline(struct conn *c)
{
    struct qs_http_server *s = c->server;
    uint64_t deadline = s->opts.timeout_ms;
    c->full_deadline = 1;
    if (under_pressure(s) && deadline > PRESSURE_HEAD_MS) {
        deadline = PRESSURE_HEAD_MS;
        c->full_deadline = 0;
    }
    uv_timer_start(&c->timer, conn_timer_cb, deadline, 0);
}

/* The first byte of a request on a kept-alive connection: the request's
 * deadline starts now (short while the slots are mostly taken). */
static void conn_begin_request(struct conn *c)
{
    struct qs_http_server *s = c->server;
    c->started_at = uv_now(s->loop);
    conn_enqueue(c, CLS_HEAD);
    start_head_deadline(c);
}

/* Keeps bytes (borrowed) that arrived after the request being answered.
 * Returns 0, or -1 when the connection was closed. */
static int conn_stash(struct conn *c, const char *data, size_t n)
{
    if (qs_buf_append(&c->pend, data, n) != 0) {
        conn_close(c);
        return -1;
    }
    if (c->pend.len >= PEND_MAX && !c->read_paused) {
        c->read_paused = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    return 0;
}

/* Request bytes (borrowed) from the client. */
static void conn_input(struct conn *c, const char *data, size_t n)
{
    if (c->cls == CLS_HANDLING || c->cls == CLS_WRITING || c->resume) {
        /* Answers go out in order: the next request waits for this one. */
        conn_stash(c, data, n);
        return;
    }
    size_t used = 0;
    int status = 0;
    int rc = qs_http_reader_feed_used(c->reader, data, n, &used, &status);
    if (rc < 0) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        conn_send_error(c, NULL, status, error_message(status), NULL);
        return;
    }
    if (c->cls == CLS_WAITING)
        conn_begin_request(c);
    else if (c->cls == CLS_IDLE)
        conn_enqueue(c, CLS_HEAD);
    if (rc == 1) {
        if (used < n && conn_stash(c, data + used, n - used) != 0)
            return;
        dispatch(c);
        return;
    }
    if (!c->gated && qs_http_reader_head_done(c->reader))
        head_done(c);
}

/* Feeds the bytes that arrived while the previous request was answered. */
static void conn_resume(struct conn *c)
{
    struct qs_buf b = c->pend;
    qs_buf_init(&c->pend);
    conn_input(c, b.data, b.len);
    qs_buf_free(&b);
    if (c->closing)
        return;
    if (c->eof && is_reading(c) && !c->resume) {
        /* The client has finished sending, without completing a request. */
        conn_close(c);
        return;
    }
    conn_read_more(c);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = st->data;
    if (nread == 0)
        return;
    if (nread == UV_EOF && (c->cls == CLS_HANDLING || c->cls == CLS_WRITING || c->resume)) {
        /* The client has finished sending: it still gets the answers to
         * what it sent, then the connection closes. */
        c->eof = 1;
        return;
    }
    if (nread < 0) {
        conn_close(c);
        return;
    }
    conn_input(c, buf->base, (size_t)nread);
}

static void connection_cb(uv_stream_t *listener, int status)
{
    struct qs_http_server *s = listener->data;
    if (status != 0) {
        QS_WARN("http: accept failed: %s", uv_strerror(status));
        return;
    }
    /* Room first, so the new connection is never the one closed. */
    int refuse = make_room(s) != 0;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->server = s;
    c->tcp.data = c;
    c->timer.data = c;
    if (uv_tcp_init(s->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->open_handles = 2;
    c->started_at = uv_now(s->loop);
    /* Accept even when closing at once: libuv stops polling the listener
     * while a pending connection is left unaccepted. */
    conn_enqueue(c, CLS_IDLE);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    s->stats.accepted++;
    if (refuse) {
        s->stats.refused++;
        uint64_t now = uv_now(s->loop);
        if (s->last_refuse_log == 0 || now - s->last_refuse_log >= LOG_EVERY_MS) {
            s->last_refuse_log = now;
            QS_WARN("http: %zu connections open and none can be closed: refusing new ones",
                    conns_open(s));
        }
        conn_enqueue(c, CLS_WRITING);
        uv_buf_t b = uv_buf_init((char *)reject_503, sizeof(reject_503) - 1);
        c->wreq.data = c;
        uv_timer_start(&c->timer, conn_timer_cb, LINGER_MS, 0);
        /* write_cb as for any answer (this one is static: c->wbuf stays NULL). */
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0)
            conn_close(c);
        return;
    }
    c->reader = qs_http_reader_new(&s->opts);
    if (c->reader == NULL) {
        conn_close(c);
        return;
    }
    start_head_deadline(c);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
        conn_close(c);
        return;
    }
    /* What the client sent right after connecting (a probe's request) is
     * read now, inside the accept batch: libuv accepts the whole backlog
     * before it polls again, and under a flood that batch is long. A probe is
     * then answered at once, and the idle connections accepted after it
     * never push it out. The rest arrives through read_cb as usual. */
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        ssize_t n = recv(fd, c->rbuf, sizeof(c->rbuf), MSG_DONTWAIT);
        if (n > 0)
            conn_input(c, c->rbuf, (size_t)n);
    }
}

void qs_http_req_free(struct qs_http_req *req)
{
    if (req != NULL && req->conn != NULL) {
        /* Dropped without an answer while the client waits: hang up. */
        struct conn *c = req->conn;
        c->req = NULL;
        req->conn = NULL;
        conn_close(c);
    }
    req_free(req);
}

/* ---- responses ---------------------------------------------------------------- */

void qs_http_gzip_cache_init(struct qs_http_gzip_cache *c)
{
    qs_buf_init(&c->gz);
    c->version = 0;
    c->valid = 0;
}

void qs_http_gzip_cache_deinit(struct qs_http_gzip_cache *c)
{
    qs_buf_free(&c->gz);
    c->valid = 0;
}

static void respond(struct qs_http_req *req, int status, const char *content_type,
                    const char *extra_headers, const void *body, size_t len, unsigned flags,
                    uint64_t version, struct qs_http_gzip_cache *cache)
{
    if (req == NULL)
        return;
    struct conn *c = req->conn;
    if (c == NULL || c->closing) {
        req_free(req);
        return;
    }
    c->req = NULL;
    struct qs_http_server *s = c->server;
    struct qs_buf z;
    qs_buf_init(&z);
    int gzip, vary;
    choose_body(body, len, flags, qs_http_req_header(req, "Accept-Encoding"), version, cache, &z,
                &body, &len, &gzip, &vary);
    int head = strcmp(req->method, "HEAD") == 0;
    enum conn_mode mode = conn_keep_mode(c, req);
    req_free(req);
    qs_buf_reset(&s->head);
    if (format_head(&s->head, status, content_type, extra_headers, len, gzip, vary, mode) != 0) {
        qs_buf_free(&z);
        conn_close(c);
        return;
    }
    conn_send(c, s->head.data, s->head.len, head ? NULL : body, head ? 0 : len, mode != CONN_CLOSE);
    qs_buf_free(&z);
}

void qs_http_respond_ex(struct qs_http_req *req, int status, const char *content_type,
                        const char *extra_headers, const void *body, size_t len, unsigned flags)
{
    respond(req, status, content_type, extra_headers, body, len, flags, 0, NULL);
}

void qs_http_respond_cached(struct qs_http_req *req, int status, const char *content_type,
                            const char *extra_headers, const void *body, size_t len, unsigned flags,
                            uint64_t version, struct qs_http_gzip_cache *cache)
{
    respond(req, status, content_type, extra_headers, body, len, flags, version, cache);
}

void qs_http_respond(struct qs_http_req *req, int status, const char *content_type,
                     const void *body, size_t len)
{
    qs_http_respond_ex(req, status, content_type, NULL, body, len, 0);
}

void qs_http_respond_json_error(struct qs_http_req *req, int status, const char *message)
{
    struct qs_buf body;
    qs_buf_init(&body);
    if (qs_http_json_error_body(message, &body) != 0) {
        qs_buf_free(&body);
        qs_http_respond(req, 500, NULL, NULL, 0);
        return;
    }
    const char *extra = status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL;
    qs_http_respond_ex(req, status, "application/json", extra, body.data, body.len, 0);
    qs_buf_free(&body);
}

int qs_http_response_format(const struct qs_http_req *req, int status, const char *content_type,
                            const char *extra_headers, const void *body, size_t len, unsigned flags,
                            struct qs_buf *out)
{
    enum conn_mode mode = !req->keep_alive ? CONN_CLOSE : req->http10 ? CONN_KEEP_10 : CONN_KEEP;
    return format_response(out, status, content_type, extra_headers, body, len, flags,
                           qs_http_req_header(req, "Accept-Encoding"),
                           strcmp(req->method, "HEAD") == 0, mode);
}

/* ---- server ------------------------------------------------------------------- */

/* Open connections of every kind: OPEN_FACTOR x max_conns, and never so many
 * that accept() would run out of descriptors (the rest of the process keeps
 * FD_RESERVE of them). */
static size_t open_limit(const struct qs_http_server_opts *o)
{
    size_t lim = o->max_conns > SIZE_MAX / OPEN_FACTOR ? SIZE_MAX : OPEN_FACTOR * o->max_conns;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        size_t fds =
            rl.rlim_cur > FD_RESERVE + MIN_OPEN ? (size_t)(rl.rlim_cur - FD_RESERVE) : MIN_OPEN;
        if (fds < lim)
            lim = fds;
    }
    return lim;
}

int qs_http_server_new(uv_loop_t *loop, const struct qs_http_server_opts *opts,
                       struct qs_http_server **out)
{
    struct qs_http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    s->loop = loop;
    s->port = -1;
    apply_defaults(&s->opts, opts);
    s->max_open = open_limit(&s->opts);
    s->bearer_off = strdup("no bearer token is configured");
    if (s->bearer_off == NULL) {
        free(s);
        return UV_ENOMEM;
    }
    int rc = uv_tcp_init(loop, &s->listener);
    if (rc != 0) {
        free(s->bearer_off);
        free(s);
        return rc;
    }
    s->listener.data = s;
    *out = s;
    return 0;
}

int qs_http_server_listen(struct qs_http_server *s, const char *host, int port,
                          struct qs_error *err)
{
    struct sockaddr_storage ss;
    char h[64];
    const char *hp = host != NULL ? host : "";
    size_t hl = strlen(hp);
    if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') {
        if (hl - 2 >= sizeof(h))
            return qs_error_set(err, UV_EINVAL, "listen address: invalid host");
        memcpy(h, hp + 1, hl - 2);
        h[hl - 2] = '\0';
    } else {
        qs_strlcpy(h, hp, sizeof(h));
    }
    if (h[0] == '\0' || strcmp(h, "*") == 0)
        qs_strlcpy(h, "0.0.0.0", sizeof(h));
    else if (strcmp(h, "localhost") == 0)
        qs_strlcpy(h, "127.0.0.1", sizeof(h));
    if (port < 0 || port > 65535)
        return qs_error_set(err, UV_EINVAL, "listen address: invalid port %d", port);
    if (uv_ip4_addr(h, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(h, port, (struct sockaddr_in6 *)&ss) != 0)
        return qs_error_set(err, UV_EINVAL, "listen address: '%s' is not an IP address", h);
    int rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, connection_cb);
    if (rc != 0)
        return qs_error_set(err, rc, "listen on %s port %d: %s", h, port, uv_strerror(rc));
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else
            s->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    return 0;
}

int qs_http_server_port(const struct qs_http_server *s)
{
    return s != NULL ? s->port : -1;
}

size_t qs_http_server_connections(const struct qs_http_server *s)
{
    return s != NULL ? conns_all(s) : 0;
}

void qs_http_server_stats(const struct qs_http_server *s, struct qs_http_server_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return;
    *out = s->stats;
    out->open = conns_open(s);
    out->reading = conns_reading(s);
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct qs_http_server *s = h->data;
    s->lstate = LISTENER_CLOSED;
    server_maybe_done(s);
}

void qs_http_server_stop_accepting(struct qs_http_server *s)
{
    if (s == NULL || s->lstate != LISTENER_IDLE)
        return;
    /* Connections that wait for a next request get none; every answer from
     * now on closes its connection. */
    while (s->q[CLS_WAITING].head != NULL)
        conn_close(s->q[CLS_WAITING].head);
    s->lstate = LISTENER_CLOSING;
    uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
}

void qs_http_server_close(struct qs_http_server *s, void (*done)(void *ud), void *ud)
{
    if (s == NULL || s->closing)
        return;
    s->closing = 1;
    s->done = done;
    s->done_ud = ud;
    /* conn_close() moves each connection to the closing queue. */
    for (int cls = 0; cls < CLS_CLOSING; cls++)
        while (s->q[cls].head != NULL)
            conn_close(s->q[cls].head);
    if (s->lstate == LISTENER_IDLE)
        qs_http_server_stop_accepting(s);
    else
        server_maybe_done(s);
}
