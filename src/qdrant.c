#include "qsnap/qdrant.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <uv.h>

#include "qsnap/log.h"

#ifndef QSNAP_VERSION
#define QSNAP_VERSION "0.0.0"
#endif

#define QD_DEFAULT_URL "http://localhost:6333"
#define QD_DEFAULT_CONNECT_MS 5000L
#define QD_DEFAULT_REQUEST_MS 60000L
#define QD_DEFAULT_SNAPSHOT_MS (3L * 3600L * 1000L)
#define QD_DEFAULT_LOW_SPEED_S 60L

/* Bodies kept in memory: JSON answers up to 16 MiB, error bodies up to 64 KiB. */
#define QD_JSON_CAP (16u << 20)
#define QD_ERRBODY_CAP (64u << 10)
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
    free(ci->vectors_json);
    ci->vectors_json = NULL;
}

/* Percent-encodes everything but RFC 3986 unreserved characters. */
static int url_escape(struct qs_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            if (qs_buf_append(b, s, 1) != 0)
                return UV_ENOMEM;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (qs_buf_append(b, e, 3) != 0)
                return UV_ENOMEM;
        }
    }
    return 0;
}

/* A name as it may appear in an error message: printable, bounded. */
static void msg_name(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 1 < cap; s++)
        out[o++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    if (*s != '\0' && cap > 4) {
        o = o > cap - 4 ? cap - 4 : o;
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[cap > 0 ? o : 0] = '\0';
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

struct xfer {
    struct qs_qdrant *q;
    CURL *h;
    /* response */
    long status;
    bool status_seen;
    bool bad_encoding;
    struct qs_buf body;
    size_t body_cap;
    bool body_truncated;
    /* download */
    qs_sink_fn sink;
    void *sink_ud;
    int sink_rc;
    EVP_MD_CTX *sha;
    uint64_t nbytes;
    /* upload */
    qs_source_fn src;
    void *src_ud;
    int src_rc;
    const char *pre, *post; /* multipart framing (borrowed from caller) */
    size_t pre_len, post_len, pre_off, post_off;
    int64_t src_len; /* -1 unknown */
    uint64_t src_sent;
    bool src_eof;
    bool src_mismatch;
    /* progress */
    struct qs_cancel *cancel;
    bool canceled;
    bool stalled;
    bool stall_watch; /* download: always; upload: until the source ended */
    double stall_s;
    double last_move;
    curl_off_t last_total;
};

static size_t header_cb(char *buf, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* New response (1xx interim answers come first). */
        const char *sp = memchr(buf, ' ', len);
        long st = 0;
        if (sp != NULL) {
            for (sp++; sp < buf + len && isdigit((unsigned char)*sp); sp++)
                st = st * 10 + (*sp - '0');
        }
        x->status = st;
        x->status_seen = st >= 200;
        x->bad_encoding = false;
        return len;
    }
    static const char ce[] = "content-encoding:";
    if (len > sizeof(ce) - 1 && strncasecmp(buf, ce, sizeof(ce) - 1) == 0) {
        const char *v = buf + sizeof(ce) - 1;
        const char *end = buf + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        if (!((size_t)(end - v) == 8 && strncasecmp(v, "identity", 8) == 0) && end > v)
            x->bad_encoding = true;
    }
    return len;
}

static size_t write_cb(char *buf, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * n;
    if (x->sink != NULL && x->status == 200) {
        if (x->bad_encoding) {
            x->sink_rc = QS_EPROTO;
            return 0;
        }
        if (EVP_DigestUpdate(x->sha, buf, len) != 1) {
            x->sink_rc = UV_ENOMEM;
            return 0;
        }
        int rc = x->sink(buf, len, x->sink_ud);
        if (rc < 0) {
            x->sink_rc = rc;
            return 0;
        }
        x->nbytes += len;
        return len;
    }
    if (x->body.len + len > x->body_cap) {
        size_t room = x->body_cap > x->body.len ? x->body_cap - x->body.len : 0;
        x->body_truncated = true;
        if (room > 0 && qs_buf_append(&x->body, buf, room) != 0)
            return 0;
        /* Keep reading an error body (so the status survives), but drop it. */
        return x->status >= 200 && x->status < 300 ? 0 : len;
    }
    if (qs_buf_append(&x->body, buf, len) != 0)
        return 0;
    return len;
}

/* Copies from the framing/source into buf; returns bytes or a CURL_READFUNC code. */
static size_t read_cb(char *buf, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t cap = size * n, out = 0;
    if (qs_cancel_requested(x->cancel)) {
        x->canceled = true;
        return CURL_READFUNC_ABORT;
    }
    if (x->pre_off < x->pre_len) {
        size_t k = x->pre_len - x->pre_off;
        k = k < cap ? k : cap;
        memcpy(buf, x->pre + x->pre_off, k);
        x->pre_off += k;
        return k;
    }
    if (!x->src_eof) {
        size_t want = cap;
        if (x->src_len >= 0) {
            uint64_t left = (uint64_t)x->src_len - x->src_sent;
            if (left == 0) {
                /* Exactly length bytes came; the source must be at its end. */
                char probe[1];
                ssize_t r = x->src(probe, sizeof(probe), x->src_ud);
                if (r < 0) {
                    x->src_rc = (int)r;
                    return CURL_READFUNC_ABORT;
                }
                if (r > 0) {
                    x->src_mismatch = true;
                    return CURL_READFUNC_ABORT;
                }
                x->src_eof = true;
                x->stall_watch = false;
                goto framing;
            }
            if (left < want)
                want = (size_t)left;
        }
        ssize_t r = x->src(buf, want, x->src_ud);
        if (r < 0) {
            x->src_rc = (int)r;
            return CURL_READFUNC_ABORT;
        }
        if (r > 0) {
            x->src_sent += (uint64_t)r;
            return (size_t)r;
        }
        if (x->src_len >= 0 && x->src_sent != (uint64_t)x->src_len) {
            x->src_mismatch = true;
            return CURL_READFUNC_ABORT;
        }
        x->src_eof = true;
        x->stall_watch = false;
    }
framing:
    if (x->post_off < x->post_len) {
        size_t k = x->post_len - x->post_off;
        k = k < cap ? k : cap;
        memcpy(buf, x->post + x->post_off, k);
        x->post_off += k;
        out = k;
    }
    return out;
}

static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct xfer *x = ud;
    (void)dltotal;
    (void)ultotal;
    if (qs_cancel_requested(x->cancel)) {
        x->canceled = true;
        return 1;
    }
    double now = qs_monotonic();
    curl_off_t total = dlnow + ulnow;
    if (total != x->last_total) {
        x->last_total = total;
        x->last_move = now;
    } else if (x->stall_watch && x->stall_s > 0 && now - x->last_move >= x->stall_s) {
        x->stalled = true;
        return 1;
    }
    return 0;
}

/* Extracts Qdrant's message from an error body: the JSON envelope's
 * status.error, a JSON top-level "error"/"message", or the text itself. */
static void server_message(const struct xfer *x, char *out, size_t cap)
{
    out[0] = '\0';
    if (x->body.len == 0) {
        qs_strlcpy(out, "(empty body)", cap);
        return;
    }
    cJSON *j = NULL;
    if (!x->body_truncated)
        qs_json_parse(x->body.data, x->body.len, &j, NULL);
    if (j != NULL) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(st, "error");
        if (!cJSON_IsString(e))
            e = cJSON_GetObjectItemCaseSensitive(j, "error");
        if (!cJSON_IsString(e))
            e = cJSON_GetObjectItemCaseSensitive(j, "message");
        if (cJSON_IsString(e) && e->valuestring != NULL)
            msg_name(out, cap < QD_MSG_MAX ? cap : QD_MSG_MAX, e->valuestring);
        cJSON_Delete(j);
        if (out[0] != '\0')
            return;
    }
    /* Plain text (or unrecognised JSON): first line-ish, control chars flattened. */
    size_t o = 0, lim = cap < QD_MSG_MAX ? cap : QD_MSG_MAX;
    const char *s = x->body.data, *end = x->body.data + x->body.len;
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
    if ((s < end || x->body_truncated) && lim > 4) {
        o = o > lim - 4 ? lim - 4 : o;
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static bool status_retryable(long st)
{
    return st >= 500 || st == 408 || st == 429;
}

struct req {
    const char *method; /* GET, POST, DELETE */
    const char *path;   /* already escaped, starts with '/' */
    const char *op;     /* description for messages */
    long timeout_ms;    /* total, -1 none */
    bool stall_watch;
    /* upload */
    struct curl_slist *extra_headers;
};

/* Runs one exchange. On a 2xx answer returns 0 (x->body holds non-sink
 * bodies); otherwise fills err. */
static int perform(struct xfer *x, const struct req *r, struct qs_error *err)
{
    struct qs_qdrant *q = x->q;
    struct qs_buf url;
    qs_buf_init(&url);
    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    struct curl_slist *hdrs = NULL, *tmp;
    int rc = 0;

    if (qs_cancel_requested(x->cancel))
        return qs_error_set(err, QS_ECANCELED, "%s: canceled", r->op);
    if (qs_buf_printf(&url, "%s%s", q->url, r->path) != 0)
        return qs_error_set(err, UV_ENOMEM, "%s: out of memory", r->op);

    CURL *h = curl_easy_init();
    if (h == NULL) {
        qs_buf_free(&url);
        return qs_error_set(err, UV_ENOMEM, "%s: cannot create HTTP handle", r->op);
    }
    x->h = h;
    for (const struct curl_slist *e = r->extra_headers; e != NULL; e = e->next) {
        if ((tmp = curl_slist_append(hdrs, e->data)) == NULL)
            goto nomem;
        hdrs = tmp;
    }
    if (q->api_key_header != NULL) {
        if ((tmp = curl_slist_append(hdrs, q->api_key_header)) == NULL)
            goto nomem;
        hdrs = tmp;
    }
    if ((tmp = curl_slist_append(hdrs, "Accept: application/json, */*")) == NULL)
        goto nomem;
    hdrs = tmp;

    curl_easy_setopt(h, CURLOPT_URL, url.data);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "qsnap/" QSNAP_VERSION);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (q->connect_timeout_ms > 0)
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, q->connect_timeout_ms);
    if (r->timeout_ms > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    /* CURLOPT_ACCEPT_ENCODING stays unset: Qdrant must not compress. */
    if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        if (x->src != NULL) {
            curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
            curl_easy_setopt(h, CURLOPT_READDATA, x);
            curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024L);
            if (x->src_len >= 0)
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                                 (curl_off_t)(x->pre_len + (uint64_t)x->src_len + x->post_len));
        } else {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
        }
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

    x->stall_watch = r->stall_watch;
    x->stall_s = q->low_speed_time_s > 0 ? (double)q->low_speed_time_s : 0;
    x->last_move = qs_monotonic();
    x->last_total = 0;

    double t0 = qs_monotonic();
    CURLcode cc = curl_easy_perform(h);
    double dt = qs_monotonic() - t0;
    long st = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
    if (st == 0 && x->status_seen)
        st = x->status;
    QS_DEBUG("qdrant %s %s -> %ld (%s) in %.3fs", r->method, r->path, st,
             cc == CURLE_OK ? "ok" : curl_easy_strerror(cc), dt);

    curl_off_t clen = -1;
    curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
    bool http_bad = x->status_seen && (x->status < 200 || x->status >= 300);
    const char *why = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc);

    if (x->canceled) {
        rc = qs_error_set(err, QS_ECANCELED, "%s: canceled", r->op);
    } else if (x->sink_rc == QS_EPROTO) {
        rc = qs_error_set(err, QS_EPROTO, "%s: Qdrant sent a compressed body", r->op);
    } else if (x->sink_rc != 0) {
        rc = qs_error_set(err, x->sink_rc, "%s: writing the stream failed: %s", r->op,
                          qs_strerror(x->sink_rc));
    } else if (x->src_rc != 0) {
        rc = qs_error_set(err, x->src_rc, "%s: reading the source failed: %s", r->op,
                          qs_strerror(x->src_rc));
    } else if (x->src_mismatch) {
        rc = qs_error_set(err, QS_EPROTO,
                          "%s: source length differs from the declared %" PRId64 " bytes", r->op,
                          x->src_len);
    } else if (x->stalled) {
        rc = qs_error_set(err, QS_ETRANSPORT, "%s: timed out: no data moved for %ld s", r->op,
                          q->low_speed_time_s);
        if (err != NULL)
            err->retryable = 1;
    } else if (http_bad && (cc == CURLE_OK || cc == CURLE_WRITE_ERROR || cc == CURLE_PARTIAL_FILE ||
                            cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR)) {
        /* An error status with a broken body still reports the status. */
        char m[QD_MSG_MAX + 8];
        server_message(x, m, sizeof(m));
        rc = qs_error_set(err, x->status == 404 ? QS_ENOTFOUND : QS_EHTTP, "%s: HTTP %ld: %s",
                          r->op, x->status, m);
        if (err != NULL)
            err->retryable = status_retryable(x->status);
    } else if (!http_bad && x->body_truncated) {
        rc = qs_error_set(err, QS_EPROTO, "%s: answer larger than %zu bytes", r->op, x->body_cap);
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        rc = qs_error_set(err, QS_ETRANSPORT, "%s: timed out after %.1f s (%s)", r->op, dt, why);
        if (err != NULL)
            err->retryable = 1;
    } else if (cc == CURLE_PARTIAL_FILE) {
        rc = qs_error_set(err, QS_ETRANSPORT,
                          "%s: transfer cut short after %" PRIu64 " of %" PRId64 " bytes", r->op,
                          x->nbytes, (int64_t)clen);
        if (err != NULL)
            err->retryable = 1;
    } else if (cc != CURLE_OK) {
        rc = qs_error_set(err, QS_ETRANSPORT, "%s: %s", r->op, why);
        if (err != NULL)
            err->retryable = 1;
    } else if (!x->status_seen) {
        rc = qs_error_set(err, QS_EPROTO, "%s: no HTTP status", r->op);
    } else if (x->sink != NULL && x->status == 200 && clen >= 0 && (uint64_t)clen != x->nbytes) {
        rc = qs_error_set(err, QS_EPROTO,
                          "%s: received %" PRIu64 " bytes but Content-Length is %" PRId64, r->op,
                          x->nbytes, (int64_t)clen);
    }
    if (err != NULL && x->status_seen)
        err->http_status = x->status;
    if (rc != 0 && err != NULL)
        scrub(err->msg, sizeof(err->msg), q->api_key);
    goto out;
nomem:
    rc = qs_error_set(err, UV_ENOMEM, "%s: out of memory", r->op);
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    x->h = NULL;
    qs_buf_free(&url);
    return rc;
}

static void xfer_init(struct xfer *x, struct qs_qdrant *q, size_t body_cap)
{
    memset(x, 0, sizeof(*x));
    x->q = q;
    qs_buf_init(&x->body);
    x->body_cap = body_cap;
    x->src_len = -1;
}

static void xfer_deinit(struct xfer *x)
{
    qs_buf_free(&x->body);
    if (x->sha != NULL)
        EVP_MD_CTX_free(x->sha);
}

/* Parses x->body as the Qdrant envelope and returns its "result" (inside *root,
 * owned by the caller) or NULL with err set to QS_EPROTO. */
static const cJSON *parse_result(struct xfer *x, const char *op, cJSON **root, struct qs_error *err)
{
    *root = NULL;
    if (x->body_truncated) {
        qs_error_set(err, QS_EPROTO, "%s: answer larger than %u bytes", op, QD_JSON_CAP);
        return NULL;
    }
    cJSON *j = NULL;
    struct qs_error jerr;
    if (qs_json_parse(x->body.data, x->body.len, &j, &jerr) != 0) {
        qs_error_set(err, QS_EPROTO, "%s: answer is not JSON: %s", op, jerr.msg);
        return NULL;
    }
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
    if (res == NULL) {
        cJSON_Delete(j);
        qs_error_set(err, QS_EPROTO, "%s: answer has no result (HTTP %ld)", op, x->status);
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
        msg_name(c, sizeof(c), collection);
    if (snapshot != NULL)
        msg_name(s, sizeof(s), snapshot);
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

/* "/collections/{c}" + suffix, or root + suffix when c is NULL. */
static int build_path(struct qs_buf *p, const char *collection, const char *mid, const char *name,
                      const char *query)
{
    int rc = 0;
    if (collection != NULL) {
        rc |= qs_buf_printf(p, "/collections/");
        rc |= url_escape(p, collection);
    }
    if (mid != NULL)
        rc |= qs_buf_printf(p, "%s", mid);
    if (name != NULL) {
        rc |= qs_buf_printf(p, "/");
        rc |= url_escape(p, name);
    }
    if (query != NULL)
        rc |= qs_buf_printf(p, "%s", query);
    return rc != 0 ? UV_ENOMEM : 0;
}

static int parse_collections(const cJSON *res, const char *op, char ***names, size_t *n,
                             struct qs_error *err)
{
    int rc = 0;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(res, "collections");
    if (!cJSON_IsArray(arr)) {
        return proto_err(err, op, "no collections array");
    }
    size_t cnt = (size_t)cJSON_GetArraySize(arr), k = 0;
    char **v = calloc(cnt + 1, sizeof(*v));
    if (v == NULL) {
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (!cJSON_IsString(nm) || nm->valuestring[0] == '\0') {
            rc = proto_err(err, op, "collection without a name");
            break;
        }
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
    *names = v;
    *n = k;
    return 0;
}

static int parse_snapshot_list(const cJSON *res, const char *op, struct qs_snapshot_info **out,
                               size_t *n, struct qs_error *err)
{
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
    *out = v;
    *n = k;
    return 0;
}

static int parse_collection_info(const cJSON *res, const char *op, struct qs_collection_info *out,
                                 struct qs_error *err)
{
    int rc = 0;
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(res, "points_count");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(res, "config");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(cfg, "params");
    const cJSON *vec = cJSON_GetObjectItemCaseSensitive(params, "vectors");
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(params, "shard_number");
    uint64_t shards = 1;
    if (cJSON_IsNull(pc) || pc == NULL)
        out->points_count = 0;
    else if (json_u64(pc, &out->points_count) != 0)
        rc = proto_err(err, op, "bad points_count");
    if (rc == 0 && sn != NULL && (json_u64(sn, &shards) != 0 || shards > UINT32_MAX))
        rc = proto_err(err, op, "bad shard_number");
    if (rc == 0 && cJSON_IsString(st))
        qs_strlcpy(out->status, st->valuestring, sizeof(out->status));
    if (rc == 0 && vec != NULL) {
        out->vectors_json = cJSON_PrintUnformatted(vec);
        if (out->vectors_json == NULL)
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    out->shard_number = (uint32_t)shards;
    if (rc != 0)
        qs_collection_info_deinit(out);
    return rc;
}

/* ---- operations ----------------------------------------------------------- */

/* A JSON request; the envelope is returned in root (owned), its result in res. */
static int json_call(struct qs_qdrant *q, const char *method, const struct qs_buf *path,
                     const char *op, long timeout_ms, cJSON **root, const cJSON **res,
                     struct qs_error *err)
{
    struct xfer x;
    xfer_init(&x, q, QD_JSON_CAP);
    struct req r = {.method = method, .path = path->data, .op = op, .timeout_ms = timeout_ms};
    int rc = perform(&x, &r, err);
    if (rc == 0) {
        *res = parse_result(&x, op, root, err);
        if (*res == NULL)
            rc = err != NULL ? err->code : QS_EPROTO;
        if (rc == 0 && x.status != 200) {
            cJSON_Delete(*root);
            *root = NULL;
            rc = qs_error_set(err, QS_EPROTO, "%s: unexpected HTTP %ld", op, x.status);
        }
    }
    if (rc != 0 && err != NULL)
        err->code = rc;
    xfer_deinit(&x);
    return rc;
}

int qs_qdrant_list_collections(struct qs_qdrant *q, char ***names, size_t *n, struct qs_error *err)
{
    static const char op[] = "list collections";
    *names = NULL;
    *n = 0;
    qs_error_clear(err);
    struct qs_buf p;
    qs_buf_init(&p);
    if (qs_buf_printf(&p, "/collections") != 0)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    cJSON *root = NULL;
    const cJSON *res = NULL;
    int rc = json_call(q, "GET", &p, op, q->request_timeout_ms, &root, &res, err);
    qs_buf_free(&p);
    if (rc != 0)
        return rc;
    rc = parse_collections(res, op, names, n, err);
    cJSON_Delete(root);
    return rc;
}

int qs_qdrant_collection_info(struct qs_qdrant *q, const char *collection,
                              struct qs_collection_info *out, struct qs_error *err)
{
    char op[200], c[120];
    memset(out, 0, sizeof(*out));
    qs_error_clear(err);
    msg_name(c, sizeof(c), collection ? collection : "");
    snprintf(op, sizeof(op), "get collection '%s'", c);
    int rc = check_name("collection name", collection, op, err);
    if (rc != 0)
        return rc;
    struct qs_buf p;
    qs_buf_init(&p);
    if (build_path(&p, collection, NULL, NULL, NULL) != 0) {
        qs_buf_free(&p);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    cJSON *root = NULL;
    const cJSON *res = NULL;
    rc = json_call(q, "GET", &p, op, q->request_timeout_ms, &root, &res, err);
    qs_buf_free(&p);
    if (rc != 0)
        return rc;
    rc = parse_collection_info(res, op, out, err);
    cJSON_Delete(root);
    return rc;
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
    struct qs_buf p;
    qs_buf_init(&p);
    if (build_path(&p, collection, "/snapshots", NULL, "?wait=true") != 0) {
        qs_buf_free(&p);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    cJSON *root = NULL;
    const cJSON *res = NULL;
    rc = json_call(q, "POST", &p, op, q->snapshot_timeout_ms, &root, &res, err);
    qs_buf_free(&p);
    if (rc != 0)
        return rc;
    if (parse_snapshot_desc(res, out) != 0)
        rc = proto_err(err, op, "bad snapshot description");
    cJSON_Delete(root);
    return rc;
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
        msg_name(c, sizeof(c), collection);
        snprintf(op, sizeof(op), "list snapshots of collection '%s'", c);
    } else {
        snprintf(op, sizeof(op), "list full snapshots");
    }
    int rc = collection != NULL ? check_name("collection name", collection, op, err) : 0;
    if (rc != 0)
        return rc;
    struct qs_buf p;
    qs_buf_init(&p);
    if (build_path(&p, collection, "/snapshots", NULL, NULL) != 0) {
        qs_buf_free(&p);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    cJSON *root = NULL;
    const cJSON *res = NULL;
    rc = json_call(q, "GET", &p, op, q->request_timeout_ms, &root, &res, err);
    qs_buf_free(&p);
    if (rc != 0)
        return rc;
    rc = parse_snapshot_list(res, op, out, n, err);
    cJSON_Delete(root);
    return rc;
}

int qs_qdrant_download_snapshot(struct qs_qdrant *q, const char *collection, const char *name,
                                qs_sink_fn sink, void *ud, struct qs_cancel *cancel,
                                uint64_t *size_out, char *sha256_out, struct qs_error *err)
{
    char op[300];
    qs_error_clear(err);
    op_name(op, sizeof(op), "download", collection, name ? name : "");
    int rc = collection != NULL ? check_name("collection name", collection, op, err) : 0;
    if (rc == 0)
        rc = check_name("snapshot name", name, op, err);
    if (rc == 0 && sink == NULL)
        rc = qs_error_set(err, QS_EINVAL, "%s: no sink", op);
    if (rc != 0)
        return rc;
    struct qs_buf p;
    qs_buf_init(&p);
    if (build_path(&p, collection, "/snapshots", name, NULL) != 0) {
        qs_buf_free(&p);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    struct xfer x;
    xfer_init(&x, q, QD_ERRBODY_CAP);
    x.sink = sink;
    x.sink_ud = ud;
    x.cancel = cancel;
    x.sha = EVP_MD_CTX_new();
    if (x.sha == NULL || EVP_DigestInit_ex(x.sha, EVP_sha256(), NULL) != 1) {
        xfer_deinit(&x);
        qs_buf_free(&p);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    struct req r = {
        .method = "GET", .path = p.data, .op = op, .timeout_ms = -1, .stall_watch = true};
    rc = perform(&x, &r, err);
    if (rc == 0 && x.status != 200)
        rc = qs_error_set(err, QS_EPROTO, "%s: unexpected HTTP %ld", op, x.status);
    if (rc == 0) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_DigestFinal_ex(x.sha, md, &mdlen) != 1 || mdlen != 32) {
            rc = qs_error_set(err, UV_ENOMEM, "%s: hashing failed", op);
        } else {
            if (sha256_out != NULL)
                qs_hex(md, 32, sha256_out);
            if (size_out != NULL)
                *size_out = x.nbytes;
        }
    }
    xfer_deinit(&x);
    qs_buf_free(&p);
    return rc;
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

int qs_qdrant_upload_snapshot(struct qs_qdrant *q, const char *collection, const char *filename,
                              qs_source_fn src, void *ud, int64_t length, const char *checksum,
                              const char *priority, struct qs_cancel *cancel, struct qs_error *err)
{
    char op[300], c[120], f[160];
    qs_error_clear(err);
    msg_name(c, sizeof(c), collection ? collection : "");
    msg_name(f, sizeof(f), filename ? filename : "");
    snprintf(op, sizeof(op), "upload snapshot '%s' to collection '%s'", f, c);
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
    struct curl_slist *hdrs = NULL, *tmp;
    struct xfer x;
    xfer_init(&x, q, QD_JSON_CAP);
    int e = 0;
    e |= qs_buf_printf(&pre,
                       "--%s\r\nContent-Disposition: form-data; name=\"snapshot\"; "
                       "filename=\"%s\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                       boundary, filename);
    e |= qs_buf_printf(&post, "\r\n--%s--\r\n", boundary);
    e |= build_path(&p, collection, "/snapshots/upload", NULL, "?wait=true");
    if (priority != NULL)
        e |= qs_buf_printf(&p, "&priority=%s", priority);
    if (checksum != NULL)
        e |= qs_buf_printf(&p, "&checksum=%s", checksum);
    e |= qs_buf_printf(&ct, "Content-Type: multipart/form-data; boundary=%s", boundary);
    if (e != 0) {
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        goto out;
    }
    const char *hv[] = {ct.data, q->expect_100 ? "Expect: 100-continue" : "Expect:",
                        length < 0 ? "Transfer-Encoding: chunked" : NULL};
    for (size_t i = 0; i < sizeof(hv) / sizeof(hv[0]); i++) {
        if (hv[i] == NULL)
            continue;
        if ((tmp = curl_slist_append(hdrs, hv[i])) == NULL) {
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
            goto out;
        }
        hdrs = tmp;
    }
    x.src = src;
    x.src_ud = ud;
    x.src_len = length;
    x.pre = pre.data;
    x.pre_len = pre.len;
    x.post = post.data;
    x.post_len = post.len;
    x.cancel = cancel;
    struct req r = {.method = "POST",
                    .path = p.data,
                    .op = op,
                    .timeout_ms = q->snapshot_timeout_ms,
                    .stall_watch = true,
                    .extra_headers = hdrs};
    rc = perform(&x, &r, err);
    if (rc == 0) {
        cJSON *root = NULL;
        const cJSON *res = parse_result(&x, op, &root, err);
        if (res == NULL)
            rc = err != NULL ? err->code : QS_EPROTO;
        else if (!cJSON_IsTrue(res) || x.status != 200)
            rc = proto_err(err, op, "result is not true");
        cJSON_Delete(root);
    }
out:
    curl_slist_free_all(hdrs);
    xfer_deinit(&x);
    qs_buf_free(&pre);
    qs_buf_free(&post);
    qs_buf_free(&p);
    qs_buf_free(&ct);
    return rc;
}

/* DELETE returning {"result": true}. */
static int delete_call(struct qs_qdrant *q, struct qs_buf *p, const char *op, struct qs_error *err)
{
    cJSON *root = NULL;
    const cJSON *res = NULL;
    int rc = json_call(q, "DELETE", p, op, q->request_timeout_ms, &root, &res, err);
    if (rc != 0)
        return rc;
    if (cJSON_IsFalse(res))
        rc = qs_error_set(err, QS_ENOTFOUND, "%s: nothing to delete", op);
    else if (!cJSON_IsTrue(res))
        rc = proto_err(err, op, "result is not true");
    cJSON_Delete(root);
    return rc;
}

int qs_qdrant_delete_snapshot(struct qs_qdrant *q, const char *collection, const char *name,
                              struct qs_error *err)
{
    char op[300];
    qs_error_clear(err);
    op_name(op, sizeof(op), "delete", collection, name ? name : "");
    int rc = collection != NULL ? check_name("collection name", collection, op, err) : 0;
    if (rc == 0)
        rc = check_name("snapshot name", name, op, err);
    if (rc != 0)
        return rc;
    struct qs_buf p;
    qs_buf_init(&p);
    if (build_path(&p, collection, "/snapshots", name, "?wait=true") != 0)
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    else
        rc = delete_call(q, &p, op, err);
    qs_buf_free(&p);
    return rc;
}

int qs_qdrant_delete_collection(struct qs_qdrant *q, const char *collection, struct qs_error *err)
{
    char op[200], c[120];
    qs_error_clear(err);
    msg_name(c, sizeof(c), collection ? collection : "");
    snprintf(op, sizeof(op), "delete collection '%s'", c);
    int rc = check_name("collection name", collection, op, err);
    if (rc != 0)
        return rc;
    struct qs_buf p;
    qs_buf_init(&p);
    if (build_path(&p, collection, NULL, NULL, NULL) != 0)
        rc = qs_error_set(err, UV_ENOMEM, "out of memory");
    else
        rc = delete_call(q, &p, op, err);
    qs_buf_free(&p);
    return rc;
}

int qs_qdrant_probe(struct qs_qdrant *q, struct qs_error *err)
{
    qs_error_clear(err);
    struct xfer x;
    xfer_init(&x, q, QD_ERRBODY_CAP);
    struct req r = {.method = "GET",
                    .path = "/readyz",
                    .op = "Qdrant readiness probe",
                    .timeout_ms = q->request_timeout_ms};
    int rc = perform(&x, &r, err);
    if (rc == 0 && x.status != 200)
        rc = qs_error_set(err, QS_EHTTP, "%s: HTTP %ld", r.op, x.status);
    xfer_deinit(&x);
    return rc;
}

int qs_qdrant_version(struct qs_qdrant *q, char *out, size_t cap, struct qs_error *err)
{
    static const char op[] = "get Qdrant version";
    qs_error_clear(err);
    if (cap > 0)
        out[0] = '\0';
    struct xfer x;
    xfer_init(&x, q, QD_ERRBODY_CAP);
    struct req r = {.method = "GET", .path = "/", .op = op, .timeout_ms = q->request_timeout_ms};
    int rc = perform(&x, &r, err);
    if (rc == 0) {
        cJSON *j = NULL;
        if (!x.body_truncated)
            qs_json_parse(x.body.data, x.body.len, &j, NULL);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
        if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
            rc = proto_err(err, op, "no version");
        else if (qs_strlcpy(out, v->valuestring, cap) >= cap)
            rc = qs_error_set(err, QS_ETOOBIG, "%s: version string too long", op);
        cJSON_Delete(j);
    }
    xfer_deinit(&x);
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
    struct xfer x;
    memset(&x, 0, sizeof(x));
    qs_buf_init(&x.body);
    if (len > 0 && qs_buf_append(&x.body, body, len) != 0)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    x.status = 200;
    int rc = 0;
    if (kind == QS_QDRANT_ANSWER_ERROR) {
        char msg[QD_MSG_MAX + 1];
        server_message(&x, msg, sizeof(msg));
        rc = qs_error_set(err, QS_EHTTP, "%s", msg);
        qs_buf_free(&x.body);
        return rc;
    }
    cJSON *root = NULL;
    const cJSON *res = parse_result(&x, op, &root, err);
    qs_buf_free(&x.body);
    if (res == NULL)
        return err != NULL ? err->code : QS_EPROTO;
    switch (kind) {
    case QS_QDRANT_ANSWER_SNAPSHOT: {
        struct qs_snapshot_info si;
        if (parse_snapshot_desc(res, &si) != 0)
            rc = proto_err(err, op, "bad snapshot description");
        break;
    }
    case QS_QDRANT_ANSWER_SNAPSHOTS: {
        struct qs_snapshot_info *v = NULL;
        size_t n = 0;
        rc = parse_snapshot_list(res, op, &v, &n, err);
        if (rc == 0)
            qs_snapshot_infos_sort_newest_first(v, n);
        free(v);
        break;
    }
    case QS_QDRANT_ANSWER_COLLECTIONS: {
        char **v = NULL;
        size_t n = 0;
        rc = parse_collections(res, op, &v, &n, err);
        qs_qdrant_strv_free(v, n);
        break;
    }
    case QS_QDRANT_ANSWER_COLLECTION: {
        struct qs_collection_info ci;
        memset(&ci, 0, sizeof(ci));
        rc = parse_collection_info(res, op, &ci, err);
        if (rc == 0)
            qs_collection_info_deinit(&ci);
        break;
    }
    default:
        rc = qs_error_set(err, QS_EINVAL, "%s: unknown kind", op);
        break;
    }
    cJSON_Delete(root);
    return rc;
}
