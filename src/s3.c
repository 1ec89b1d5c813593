#include "qsnap/s3.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/log.h"
#include "qsnap/pipe.h"
#include "qsnap/s3xml.h"
#include "qsnap/sigv4.h"

#define S3_POOL_MAX 8
#define S3_PUT_MAX_BUFS 8
#define S3_STREAM_PIPE (1024 * 1024)
#define S3_ERRBODY_MAX (64 * 1024)
#define S3_RESP_MAX (16 * 1024 * 1024)

struct qs_s3 {
    char *bucket;
    char *prefix;    /* "" or "p/q/" (ends with '/') */
    char *base_url;  /* scheme://host[:port] */
    char *path_base; /* "/bucket" (path style) or "" (virtual) */
    char *region;
    char *access_key;
    char *secret_key;
    char *ca_file;
    char *ca_path; /* libcurl's default CA directory, kept when ca_file is set */
    char sigv4_param[128];
    uint64_t part_size;
    int upload_parallel; /* parts uploading at once (1..S3_PUT_MAX_BUFS-1) */
    uint64_t stream_max; /* known sizes up to this stream as one PUT */
    int page_size;
    int max_retries;
    int retry_base_ms;
    int retry_max_ms;
    long connect_timeout_ms;
    long low_speed_time_s;
    long low_speed_limit;
    int no_jitter;

    pthread_mutex_t pool_mu;
    CURL *pool[S3_POOL_MAX];
    int npool;
    atomic_uint_fast64_t retries;
};

/* ---- global init ------------------------------------------------------------ */

static pthread_once_t s3_once = PTHREAD_ONCE_INIT;

static void s3_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers ---------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static int set_err(struct qs_error *err, int code, long http, int retryable)
{
    if (err != NULL) {
        err->code = code;
        err->http_status = http;
        err->retryable = retryable;
    }
    return code;
}

static void sleep_ms_cancellable(int ms, struct qs_cancel *cancel, const atomic_int *flag)
{
    while (ms > 0) {
        if (qs_cancel_requested(cancel) || (flag != NULL && atomic_load(flag)))
            return;
        int step = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static unsigned jitter_state(void)
{
    static _Thread_local unsigned seed;
    if (seed == 0)
        seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&seed;
    seed = seed * 1103515245u + 12345u;
    return seed >> 8;
}

static int backoff_ms(const struct qs_s3 *s3, int attempt)
{
    long d = s3->retry_base_ms;
    for (int i = 0; i < attempt && d < s3->retry_max_ms; i++)
        d *= 2;
    if (d > s3->retry_max_ms)
        d = s3->retry_max_ms;
    if (s3->no_jitter)
        return (int)d;
    /* "Equal jitter": half fixed, half random. */
    return (int)(d / 2 + (long)(jitter_state() % (unsigned)(d / 2 + 1)));
}

/* ---- part sizes --------------------------------------------------------------- */

uint64_t qs_s3_part_size_for(uint32_t index, uint64_t base)
{
    if (index >= QS_S3_MAX_PARTS)
        return 0;
    if (base < QS_S3_MIN_PART)
        base = QS_S3_MIN_PART;
    if (base > QS_S3_MAX_PART)
        base = QS_S3_MAX_PART;
    unsigned k = index / 1000;
    uint64_t s = base << k;
    if (k > 0 && s < ((uint64_t)8 << 20) << k)
        s = ((uint64_t)8 << 20) << k;
    return s > QS_S3_MAX_PART ? QS_S3_MAX_PART : s;
}

/* ---- construction ------------------------------------------------------------ */

static int build_base(struct qs_s3 *s3, const struct qs_storage_opts *o, struct qs_error *err)
{
    const char *ep = o->endpoint;
    struct qs_buf b;
    qs_buf_init(&b);
    int virt = o->uri_style == QS_URI_VIRTUAL;
    if (ep == NULL || ep[0] == '\0') {
        if (!virt) {
            qs_buf_printf(&b, "https://s3.%s.amazonaws.com", s3->region);
        } else {
            qs_buf_printf(&b, "https://%s.s3.%s.amazonaws.com", s3->bucket, s3->region);
        }
    } else {
        const char *scheme_end = strstr(ep, "://");
        if (scheme_end == NULL ||
            (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0))
            return qs_error_set(err, QS_ECONFIG,
                                "S3 endpoint must start with http:// or https:// (got \"%s\")", ep);
        const char *host = scheme_end + 3;
        size_t hl = strcspn(host, "/?#");
        if (hl == 0 || (host[hl] != '\0' && strcmp(host + hl, "/") != 0))
            return qs_error_set(err, QS_ECONFIG,
                                "S3 endpoint must be scheme://host[:port] without a path");
        if (virt)
            qs_buf_printf(&b, "%.*s%s.%.*s", (int)(host - ep), ep, s3->bucket, (int)hl, host);
        else
            qs_buf_printf(&b, "%.*s%.*s", (int)(host - ep), ep, (int)hl, host);
    }
    if (b.data == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    s3->base_url = b.data;
    if (virt) {
        s3->path_base = strdup("");
    } else {
        struct qs_buf p;
        qs_buf_init(&p);
        qs_buf_append(&p, "/", 1);
        qs_sigv4_uri_encode(&p, s3->bucket, strlen(s3->bucket), 0);
        s3->path_base = p.data;
    }
    return s3->path_base != NULL ? 0 : qs_error_set(err, UV_ENOMEM, "out of memory");
}

int qs_s3_new(const struct qs_storage_opts *o, struct qs_s3 **out, struct qs_error *err)
{
    pthread_once(&s3_once, s3_global_init);
    if (o->bucket == NULL || o->bucket[0] == '\0')
        return qs_error_set(err, QS_ECONFIG, "S3 destination needs a bucket");
    if (o->access_key_id == NULL || o->access_key_id[0] == '\0' || o->secret_access_key == NULL ||
        o->secret_access_key[0] == '\0')
        return qs_error_set(err, QS_ECONFIG, "S3 destination needs an access key id and secret");
    uint64_t ps = o->part_size ? o->part_size : QS_S3_DEFAULT_PART;
    if (ps < QS_S3_MIN_PART || ps > QS_S3_MAX_PART)
        return qs_error_set(err, QS_ECONFIG, "S3 part size must be between 5MiB and 5GiB");
    struct qs_s3 *s3 = calloc(1, sizeof(*s3));
    if (s3 == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    pthread_mutex_init(&s3->pool_mu, NULL);
    s3->bucket = xstrdup(o->bucket);
    s3->region = xstrdup(o->region && o->region[0] ? o->region : "us-east-1");
    s3->access_key = xstrdup(o->access_key_id);
    s3->secret_key = xstrdup(o->secret_access_key);
    s3->ca_file = o->ca_file && o->ca_file[0] ? xstrdup(o->ca_file) : NULL;
    const char *pfx = o->prefix ? o->prefix : "";
    while (*pfx == '/')
        pfx++;
    size_t pl = strlen(pfx);
    while (pl > 0 && pfx[pl - 1] == '/')
        pl--;
    s3->prefix = malloc(pl + 2);
    if (s3->prefix != NULL) {
        memcpy(s3->prefix, pfx, pl);
        if (pl > 0)
            s3->prefix[pl++] = '/';
        s3->prefix[pl] = '\0';
    }
    s3->part_size = ps;
    s3->upload_parallel = o->upload_parallel > 0 ? o->upload_parallel : QS_S3_DEFAULT_PARALLEL;
    if (o->single_put_max < 0)
        s3->stream_max = 0;
    else if (o->single_put_max == 0 || (uint64_t)o->single_put_max > QS_S3_MAX_PART)
        s3->stream_max = QS_S3_MAX_PART;
    else
        s3->stream_max = (uint64_t)o->single_put_max;
    if (s3->upload_parallel > S3_PUT_MAX_BUFS - 1)
        s3->upload_parallel = S3_PUT_MAX_BUFS - 1;
    s3->page_size = o->list_page_size > 0 ? o->list_page_size : 1000;
    s3->max_retries = o->max_retries > 0 ? o->max_retries : (o->max_retries < 0 ? 0 : 5);
    s3->retry_base_ms = o->retry_base_ms > 0 ? o->retry_base_ms : 200;
    s3->retry_max_ms = o->retry_max_ms > 0 ? o->retry_max_ms : 10000;
    s3->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
    s3->low_speed_time_s = o->low_speed_time_s > 0 ? o->low_speed_time_s : 60;
    s3->low_speed_limit = o->low_speed_limit > 0 ? o->low_speed_limit : 1024;
    s3->no_jitter = o->no_retry_jitter;
    if (s3->bucket == NULL || s3->region == NULL || s3->access_key == NULL ||
        s3->secret_key == NULL || s3->prefix == NULL ||
        (o->ca_file && o->ca_file[0] && !s3->ca_file)) {
        qs_s3_free(s3);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    if (strchr(s3->region, ':') != NULL || strlen(s3->region) > 64) {
        qs_s3_free(s3);
        return qs_error_set(err, QS_ECONFIG, "invalid S3 region");
    }
    snprintf(s3->sigv4_param, sizeof(s3->sigv4_param), "aws:amz:%s:s3", s3->region);
    int rc = build_base(s3, o, err);
    if (rc != 0) {
        qs_s3_free(s3);
        return rc;
    }
    if (s3->ca_file != NULL) {
        CURL *h = curl_easy_init();
        char *capath = NULL;
        if (h != NULL && curl_easy_getinfo(h, CURLINFO_CAPATH, &capath) == CURLE_OK &&
            capath != NULL)
            s3->ca_path = strdup(capath);
        curl_easy_cleanup(h);
    }
    *out = s3;
    return 0;
}

void qs_s3_free(struct qs_s3 *s3)
{
    if (s3 == NULL)
        return;
    for (int i = 0; i < s3->npool; i++)
        curl_easy_cleanup(s3->pool[i]);
    pthread_mutex_destroy(&s3->pool_mu);
    free(s3->bucket);
    free(s3->prefix);
    free(s3->base_url);
    free(s3->path_base);
    free(s3->region);
    free(s3->access_key);
    if (s3->secret_key != NULL) {
        memset(s3->secret_key, 0, strlen(s3->secret_key));
        free(s3->secret_key);
    }
    free(s3->ca_file);
    free(s3->ca_path);
    free(s3);
}

uint64_t qs_s3_retries(const struct qs_s3 *s3)
{
    return s3 ? atomic_load(&((struct qs_s3 *)s3)->retries) : 0;
}

static CURL *handle_get(struct qs_s3 *s3)
{
    CURL *h = NULL;
    pthread_mutex_lock(&s3->pool_mu);
    if (s3->npool > 0)
        h = s3->pool[--s3->npool];
    pthread_mutex_unlock(&s3->pool_mu);
    return h != NULL ? h : curl_easy_init();
}

static void handle_put(struct qs_s3 *s3, CURL *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&s3->pool_mu);
    if (s3->npool < S3_POOL_MAX) {
        s3->pool[s3->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s3->pool_mu);
    curl_easy_cleanup(h);
}

int qs_s3_url(const struct qs_s3 *s3, const char *key, const char *query, struct qs_buf *out)
{
    int rc = qs_buf_printf(out, "%s%s", s3->base_url, s3->path_base);
    if (rc == 0 && key != NULL) {
        rc = qs_buf_append(out, "/", 1);
        if (rc == 0)
            rc = qs_sigv4_uri_encode(out, s3->prefix, strlen(s3->prefix), 1);
        if (rc == 0)
            rc = qs_sigv4_uri_encode(out, key, strlen(key), 1);
    } else if (rc == 0 && s3->path_base[0] == '\0') {
        rc = qs_buf_append(out, "/", 1);
    }
    if (rc == 0 && query != NULL && query[0] != '\0')
        rc = qs_buf_printf(out, "?%s", query);
    return rc != 0 ? UV_ENOMEM : 0;
}

/* ---- one request, with retries --------------------------------------------------- */

struct s3_req {
    const char *method;      /* GET HEAD PUT POST DELETE */
    const char *key;         /* relative key, NULL = bucket */
    const char *query;       /* sorted and encoded, or NULL */
    const char *what;        /* for messages: "PUT part 3 of c1/x" */
    const char *headers[40]; /* extra "Name: value" lines, NULL-terminated */
    const char *body;        /* PUT/POST body (borrowed) */
    size_t body_len;
    qs_source_fn body_src; /* PUT body produced on the fly (body_len bytes, no rewind) */
    void *body_src_ud;
    int body_src_rc;   /* the source's error, if it failed */
    int streaming_get; /* body goes to sink, resumable */
    qs_sink_fn sink;
    void *sink_ud;
    struct qs_cancel *cancel;
    const atomic_int *abort_flag; /* second cancel source (put abort) */
    int no_retry;

    /* results */
    long status;
    struct qs_buf resp; /* error bodies and small XML answers */
    uint64_t content_length;
    int have_length;
    int64_t last_modified;
    char etag[128];
    struct qs_storage_meta *meta_out;

    /* transfer state */
    size_t body_off;
    uint64_t delivered;   /* bytes given to sink (resume offset) */
    uint64_t skip;        /* bytes to drop when a resumed GET answered 200 */
    uint64_t resume_from; /* Range start of this attempt (0 = whole object) */
    int body_started;     /* first body byte of this attempt seen */
    char first_etag[128]; /* ETag of the object being read, for If-Match */
    int sink_rc;
    int too_big;
    CURL *h;
};

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *ud)
{
    struct s3_req *r = ud;
    size_t left = r->body_len - r->body_off, n = size * nmemb;
    if (n > left)
        n = left;
    if (r->body_src != NULL) {
        if (n == 0)
            return 0;
        ssize_t got = r->body_src(buf, n, r->body_src_ud);
        if (got <= 0) {
            /* A failed or short source: never let S3 see a complete body. */
            r->body_src_rc = got < 0 ? (int)got : QS_ECHECKSUM;
            return CURL_READFUNC_ABORT;
        }
        r->body_off += (size_t)got;
        return (size_t)got;
    }
    if (n > 0)
        memcpy(buf, r->body + r->body_off, n);
    r->body_off += n;
    return n;
}

static int seek_cb(void *ud, curl_off_t off, int origin)
{
    struct s3_req *r = ud;
    if (r->body_src != NULL)
        return CURL_SEEKFUNC_CANTSEEK;
    if (origin != SEEK_SET || off < 0 || (size_t)off > r->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    r->body_off = (size_t)off;
    return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    struct s3_req *r = ud;
    size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
    if (r->streaming_get && (code == 200 || code == 206)) {
        const char *p = data;
        size_t m = n;
        if (!r->body_started) {
            r->body_started = 1;
            /* A server that ignored the Range header sends everything again. */
            if (code == 200)
                r->skip = r->resume_from;
            if (r->first_etag[0] == '\0')
                qs_strlcpy(r->first_etag, r->etag, sizeof(r->first_etag));
        }
        if (r->skip > 0) {
            size_t s = r->skip < m ? (size_t)r->skip : m;
            r->skip -= s;
            p += s;
            m -= s;
        }
        if (m > 0) {
            int rc = r->sink(p, m, r->sink_ud);
            if (rc != 0) {
                r->sink_rc = rc;
                return 0;
            }
            r->delivered += m;
        }
        return n;
    }
    size_t cap = (code >= 200 && code < 300) ? S3_RESP_MAX : S3_ERRBODY_MAX;
    if (r->resp.len + n > cap) {
        r->too_big = 1;
        return n; /* keep the connection; the answer is judged by status */
    }
    if (qs_buf_append(&r->resp, data, n) != 0)
        return 0;
    return n;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    struct s3_req *r = ud;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after 100-continue or a redirect): reset. */
        r->etag[0] = '\0';
        r->have_length = 0;
        if (r->meta_out != NULL)
            qs_storage_meta_deinit(r->meta_out);
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (colon == NULL)
        return n;
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
    while (vl > 0 && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    char val[1100];
    if (vl >= sizeof(val))
        return n;
    memcpy(val, v, vl);
    val[vl] = '\0';
    if (nl == 4 && strncasecmp(data, "ETag", 4) == 0) {
        qs_strlcpy(r->etag, val, sizeof(r->etag));
    } else if (nl == 14 && strncasecmp(data, "Content-Length", 14) == 0) {
        r->content_length = strtoull(val, NULL, 10);
        r->have_length = 1;
    } else if (nl == 13 && strncasecmp(data, "Last-Modified", 13) == 0) {
        time_t t = curl_getdate(val, NULL);
        if (t >= 0)
            r->last_modified = (int64_t)t;
    } else if (r->meta_out != NULL && nl > 11 && nl < 11 + 65 &&
               strncasecmp(data, "x-amz-meta-", 11) == 0) {
        char name[80];
        for (size_t i = 0; i < nl - 11; i++)
            name[i] = (char)((data[11 + i] >= 'A' && data[11 + i] <= 'Z') ? data[11 + i] + 32
                                                                          : data[11 + i]);
        name[nl - 11] = '\0';
        qs_storage_meta_set(r->meta_out, name, val);
    }
    return n;
}

static int xferinfo_cb(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct s3_req *r = ud;
    if (qs_cancel_requested(r->cancel) || (r->abort_flag != NULL && atomic_load(r->abort_flag)))
        return 1;
    return 0;
}

static int retryable_code(const char *code)
{
    static const char *const list[] = {"RequestTimeout", "SlowDown", "InternalError",
                                       "ServiceUnavailable", "RequestTimeTooSkewed"};
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)
        if (strcmp(code, list[i]) == 0)
            return 1;
    return 0;
}

static int curl_retryable(CURLcode c)
{
    switch (c) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_OUT_OF_MEMORY:
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_WRITE_ERROR:
    case CURLE_READ_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        return 0;
    default:
        return 1;
    }
}

static int perform_once(struct qs_s3 *s3, struct s3_req *r, struct qs_error *err)
{
    CURL *h = r->h;
    err->retryable = 0;
    err->http_status = 0;
    struct qs_buf url;
    qs_buf_init(&url);
    if (qs_s3_url(s3, r->key, r->query, &url) != 0)
        return qs_error_set(err, UV_ENOMEM, "out of memory");

    struct curl_slist *hl = NULL, *tmp;
    char range[64], ifmatch[160];
    int ok = 1;
    /* Rule 1: always send x-amz-content-sha256. Rule 4: only headers that
     * are really sent go into this list (no "Expect:" removal entries). */
    tmp = curl_slist_append(hl, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    ok = ok && tmp != NULL;
    hl = tmp ? tmp : hl;
    for (int i = 0; ok && r->headers[i] != NULL; i++) {
        tmp = curl_slist_append(hl, r->headers[i]);
        ok = tmp != NULL;
        hl = tmp ? tmp : hl;
    }
    if (ok && r->streaming_get && r->delivered > 0) {
        snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)r->delivered);
        tmp = curl_slist_append(hl, range);
        ok = tmp != NULL;
        hl = tmp ? tmp : hl;
        /* Resume only the same object: a replaced one answers 412. */
        if (ok && r->first_etag[0] != '\0') {
            snprintf(ifmatch, sizeof(ifmatch), "If-Match: %s", r->first_etag);
            tmp = curl_slist_append(hl, ifmatch);
            ok = tmp != NULL;
            hl = tmp ? tmp : hl;
        }
    }
    if (!ok) {
        curl_slist_free_all(hl);
        qs_buf_free(&url);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.data);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s3->sigv4_param);
    curl_easy_setopt(h, CURLOPT_USERNAME, s3->access_key);
    curl_easy_setopt(h, CURLOPT_PASSWORD, s3->secret_key);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s3->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, s3->low_speed_limit);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s3->low_speed_time_s);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (s3->ca_file != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, s3->ca_file);
        if (s3->ca_path != NULL)
            curl_easy_setopt(h, CURLOPT_CAPATH, s3->ca_path);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
    if (strcmp(r->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, r);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024L);
    } else if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body != NULL ? r->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }

    r->body_off = 0;
    r->status = 0;
    r->sink_rc = 0;
    r->too_big = 0;
    r->skip = 0;
    r->body_started = 0;
    r->etag[0] = '\0';
    qs_buf_reset(&r->resp);
    r->resume_from = r->delivered;

    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    qs_buf_free(&url);

    if (cc != CURLE_OK) {
        if (qs_cancel_requested(r->cancel) || (r->abort_flag && atomic_load(r->abort_flag)))
            return set_err(err, qs_error_set(err, QS_ECANCELED, "%s: cancelled", r->what), 0, 0);
        if (r->sink_rc != 0)
            return set_err(err, qs_error_set(err, r->sink_rc, "%s: sink failed", r->what), 0, 0);
        qs_error_set(err, QS_ETRANSPORT, "%s: %s", r->what, curl_easy_strerror(cc));
        return set_err(err, QS_ETRANSPORT, 0, curl_retryable(cc));
    }
    long st = r->status;
    if (st >= 200 && st < 300) {
        if (r->too_big)
            return set_err(err, qs_error_set(err, QS_ETOOBIG, "%s: answer too large", r->what), st,
                           0);
        return 0;
    }
    char code[64] = "", msg[256] = "";
    if (r->resp.len > 0)
        qs_s3xml_parse_error(r->resp.data, r->resp.len, code, sizeof(code), msg, sizeof(msg));
    int qc = QS_EHTTP;
    if (st == 404 && strcmp(code, "NoSuchBucket") == 0)
        qc = QS_ECONFIG;
    else if (st == 404)
        qc = QS_ENOTFOUND;
    int retry = st >= 500 || st == 408 || st == 429 || (code[0] && retryable_code(code));
    if (code[0] == '\0' && st == 404)
        qs_strlcpy(code, "NotFound", sizeof(code));
    if (strcmp(code, "NoSuchBucket") == 0)
        qs_error_set(err, qc, "%s: HTTP %ld NoSuchBucket: bucket \"%s\" does not exist", r->what,
                     st, s3->bucket);
    else
        qs_error_set(err, qc, "%s: HTTP %ld%s%s%s%s", r->what, st, code[0] ? " " : "", code,
                     msg[0] ? ": " : "", msg);
    return set_err(err, qc, st, retry);
}

static int s3_perform(struct qs_s3 *s3, CURL *h, struct s3_req *r, struct qs_error *err)
{
    int own = h == NULL;
    if (own)
        h = handle_get(s3);
    if (h == NULL)
        return qs_error_set(err, UV_ENOMEM, "curl_easy_init failed");
    r->h = h;
    int rc;
    for (int attempt = 0;; attempt++) {
        rc = perform_once(s3, r, err);
        if (rc == 0 || !err->retryable || r->no_retry || attempt >= s3->max_retries ||
            qs_cancel_requested(r->cancel) || (r->abort_flag && atomic_load(r->abort_flag)))
            break;
        int d = backoff_ms(s3, attempt);
        atomic_fetch_add(&s3->retries, 1);
        struct qs_log_ctx ctx = QS_LOG_CTX_NONE;
        ctx.error = err->msg;
        ctx.phase = "storage";
        qs_log(QS_LOG_WARN, &ctx, "s3 request failed, retry %d/%d in %d ms", attempt + 1,
               s3->max_retries, d);
        sleep_ms_cancellable(d, r->cancel, r->abort_flag);
    }
    if (own)
        handle_put(s3, h);
    r->h = NULL;
    return rc;
}

static void req_init(struct s3_req *r, const char *method, const char *key, const char *query,
                     const char *what)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->key = key;
    r->query = query;
    r->what = what;
    qs_buf_init(&r->resp);
}

static void req_deinit(struct s3_req *r)
{
    qs_buf_free(&r->resp);
}

#define LOCAL_ERR(err)                                                                             \
    struct qs_error err##_local;                                                                   \
    if (err == NULL)                                                                               \
        err = &err##_local;                                                                        \
    qs_error_clear(err)

/* "what" strings carry the key but never credentials. */
static void what_fmt(char *out, size_t cap, const char *verb, const char *key)
{
    snprintf(out, cap, "s3 %s %s", verb, key != NULL ? key : "(bucket)");
}

/* ---- simple operations ------------------------------------------------------------ */

static int append_query_param(struct qs_buf *q, const char *name, const char *value)
{
    int rc = qs_buf_printf(q, "%s%s=", q->len > 0 ? "&" : "", name);
    if (rc == 0 && value != NULL)
        rc = qs_sigv4_uri_encode(q, value, strlen(value), 0);
    return rc != 0 ? UV_ENOMEM : 0;
}

int qs_s3_probe(struct qs_s3 *s3, struct qs_error *err)
{
    LOCAL_ERR(err);
    struct qs_buf q;
    qs_buf_init(&q);
    /* Sorted: list-type < max-keys < prefix. */
    int rc = append_query_param(&q, "list-type", "2");
    if (rc == 0)
        rc = append_query_param(&q, "max-keys", "1");
    if (rc == 0)
        rc = append_query_param(&q, "prefix", s3->prefix);
    if (rc != 0) {
        qs_buf_free(&q);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    struct s3_req r;
    req_init(&r, "GET", NULL, q.data, "s3 probe (list bucket)");
    r.no_retry = 1;
    rc = s3_perform(s3, NULL, &r, err);
    req_deinit(&r);
    qs_buf_free(&q);
    return rc;
}

/* Metadata name of the random token every put stores with its object, so
 * that a put can tell its own object (stored by an attempt whose answer was
 * lost) from someone else's. Internal: qs_s3_head() leaves it out. */
#define PUT_TOKEN_META "qsnap-put"

static int head_raw(struct qs_s3 *s3, const char *key, struct qs_storage_stat *out,
                    struct qs_error *err)
{
    char what[1200];
    what_fmt(what, sizeof(what), "HEAD", key);
    struct s3_req r;
    req_init(&r, "HEAD", key, NULL, what);
    struct qs_storage_meta meta;
    qs_storage_meta_init(&meta);
    r.meta_out = &meta;
    int rc = s3_perform(s3, NULL, &r, err);
    if (rc == 0) {
        memset(out, 0, sizeof(*out));
        out->size = r.content_length;
        out->mtime = r.last_modified;
        out->meta = meta;
    } else {
        qs_storage_meta_deinit(&meta);
    }
    req_deinit(&r);
    return rc;
}

int qs_s3_head(struct qs_s3 *s3, const char *key, struct qs_storage_stat *out, struct qs_error *err)
{
    LOCAL_ERR(err);
    int rc = head_raw(s3, key, out, err);
    if (rc != 0 || qs_storage_meta_get(&out->meta, PUT_TOKEN_META) == NULL)
        return rc;
    struct qs_storage_meta kept;
    qs_storage_meta_init(&kept);
    for (size_t i = 0; rc == 0 && i < out->meta.n; i++)
        if (strcmp(out->meta.names[i], PUT_TOKEN_META) != 0)
            rc = qs_storage_meta_set(&kept, out->meta.names[i], out->meta.values[i]);
    qs_storage_meta_deinit(&out->meta);
    if (rc != 0) {
        qs_storage_meta_deinit(&kept);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    out->meta = kept;
    return 0;
}

int qs_s3_get(struct qs_s3 *s3, const char *key, qs_sink_fn sink, void *ud,
              struct qs_cancel *cancel, struct qs_error *err)
{
    LOCAL_ERR(err);
    char what[1200];
    what_fmt(what, sizeof(what), "GET", key);
    struct s3_req r;
    req_init(&r, "GET", key, NULL, what);
    r.streaming_get = 1;
    r.sink = sink;
    r.sink_ud = ud;
    r.cancel = cancel;
    int rc = s3_perform(s3, NULL, &r, err);
    req_deinit(&r);
    return rc;
}

int qs_s3_delete(struct qs_s3 *s3, const char *key, struct qs_error *err)
{
    LOCAL_ERR(err);
    char what[1200];
    what_fmt(what, sizeof(what), "DELETE", key);
    struct s3_req r;
    req_init(&r, "DELETE", key, NULL, what);
    int rc = s3_perform(s3, NULL, &r, err);
    req_deinit(&r);
    if (rc == QS_ENOTFOUND) {
        qs_error_clear(err);
        rc = 0;
    }
    return rc;
}

int qs_s3_list(struct qs_s3 *s3, const char *prefix, struct qs_storage_list *out,
               struct qs_error *err)
{
    LOCAL_ERR(err);
    struct qs_buf full, token, q;
    qs_buf_init(&full);
    qs_buf_init(&token);
    qs_buf_init(&q);
    char maxkeys[16];
    snprintf(maxkeys, sizeof(maxkeys), "%d", s3->page_size);
    int rc = qs_buf_printf(&full, "%s%s", s3->prefix, prefix ? prefix : "");
    for (int page = 0; rc == 0; page++) {
        qs_buf_reset(&q);
        /* Sorted: continuation-token < list-type < max-keys < prefix. */
        if (token.len > 0)
            rc = append_query_param(&q, "continuation-token", token.data);
        if (rc == 0)
            rc = append_query_param(&q, "list-type", "2");
        if (rc == 0)
            rc = append_query_param(&q, "max-keys", maxkeys);
        if (rc == 0)
            rc = append_query_param(&q, "prefix", full.data ? full.data : "");
        if (rc != 0) {
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
            break;
        }
        char what[1200];
        snprintf(what, sizeof(what), "s3 list %s (page %d)", full.data ? full.data : "", page + 1);
        struct s3_req r;
        req_init(&r, "GET", NULL, q.data, what);
        rc = s3_perform(s3, NULL, &r, err);
        int truncated = 0;
        if (rc == 0) {
            rc = qs_s3xml_parse_list(r.resp.data, r.resp.len, s3->prefix, out, &truncated, &token);
            if (rc != 0)
                qs_error_set(err, rc, "%s: unparsable answer", what);
        }
        req_deinit(&r);
        if (rc != 0 || !truncated)
            break;
        if (token.len == 0) {
            rc = qs_error_set(err, QS_EPROTO, "%s: truncated without a continuation token", what);
            break;
        }
    }
    qs_buf_free(&full);
    qs_buf_free(&token);
    qs_buf_free(&q);
    return rc;
}

int qs_s3_list_uploads(struct qs_s3 *s3, const char *prefix, struct qs_storage_uploads *out,
                       struct qs_error *err)
{
    LOCAL_ERR(err);
    struct qs_buf full, nk, nu, q;
    qs_buf_init(&full);
    qs_buf_init(&nk);
    qs_buf_init(&nu);
    qs_buf_init(&q);
    char maxu[16];
    snprintf(maxu, sizeof(maxu), "%d", s3->page_size);
    int rc = qs_buf_printf(&full, "%s%s", s3->prefix, prefix ? prefix : "");
    for (int page = 0; rc == 0; page++) {
        qs_buf_reset(&q);
        /* Sorted: key-marker < max-uploads < prefix < upload-id-marker < uploads. */
        if (nk.len > 0)
            rc = append_query_param(&q, "key-marker", nk.data);
        if (rc == 0)
            rc = append_query_param(&q, "max-uploads", maxu);
        if (rc == 0)
            rc = append_query_param(&q, "prefix", full.data ? full.data : "");
        if (rc == 0 && nu.len > 0)
            rc = append_query_param(&q, "upload-id-marker", nu.data);
        if (rc == 0)
            rc = append_query_param(&q, "uploads", NULL);
        if (rc != 0) {
            rc = qs_error_set(err, UV_ENOMEM, "out of memory");
            break;
        }
        char what[1200];
        snprintf(what, sizeof(what), "s3 list uploads %s (page %d)", full.data ? full.data : "",
                 page + 1);
        struct s3_req r;
        req_init(&r, "GET", NULL, q.data, what);
        rc = s3_perform(s3, NULL, &r, err);
        int truncated = 0;
        if (rc == 0) {
            rc = qs_s3xml_parse_uploads(r.resp.data, r.resp.len, s3->prefix, out, &truncated, &nk,
                                        &nu);
            if (rc != 0)
                qs_error_set(err, rc, "%s: unparsable answer", what);
        }
        req_deinit(&r);
        if (rc != 0 || !truncated)
            break;
        if (nk.len == 0) {
            rc = qs_error_set(err, QS_EPROTO, "%s: truncated without a key marker", what);
            break;
        }
    }
    qs_buf_free(&full);
    qs_buf_free(&nk);
    qs_buf_free(&nu);
    qs_buf_free(&q);
    return rc;
}

static int abort_mpu(struct qs_s3 *s3, CURL *h, const char *key, const char *upload_id,
                     struct qs_error *err)
{
    struct qs_buf q;
    qs_buf_init(&q);
    if (append_query_param(&q, "uploadId", upload_id) != 0)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    char what[1200];
    what_fmt(what, sizeof(what), "abort multipart upload", key);
    int rc = 0;
    /* The request itself is retried; an abort that still fails is tried
     * again after a pause, since an orphaned upload keeps its parts. */
    for (int round = 0; round < 3; round++) {
        struct s3_req r;
        req_init(&r, "DELETE", key, q.data, what);
        rc = s3_perform(s3, h, &r, err);
        req_deinit(&r);
        if (rc == QS_ENOTFOUND) {
            qs_error_clear(err);
            rc = 0;
        }
        if (rc == 0 || !err->retryable)
            break;
        sleep_ms_cancellable(s3->retry_max_ms, NULL, NULL);
    }
    qs_buf_free(&q);
    return rc;
}

int qs_s3_abort_upload(struct qs_s3 *s3, const char *key, const char *upload_id,
                       struct qs_error *err)
{
    LOCAL_ERR(err);
    return abort_mpu(s3, NULL, key, upload_id, err);
}

/* ---- streaming put ------------------------------------------------------------------ */

#define S3_MAX_META 32

struct qs_s3_put {
    struct qs_s3 *s3;
    char *key;
    int64_t size;
    char *meta_hdrs[S3_MAX_META]; /* "x-amz-meta-name: value" */
    size_t nmeta;
    char token[33];     /* random, hex: tells this put's object from others */
    char token_hdr[64]; /* "x-amz-meta-qsnap-put: TOKEN" */
    struct qs_cancel *cancel;
    atomic_int abort_flag;
    CURL *h; /* producer side: initiate, single PUT, complete, abort */

    /* Part buffers: one fills on the producer thread while up to nbufs-1
     * others upload, one per uploader thread. */
    int nbufs;
    char *buf[S3_PUT_MAX_BUFS];
    size_t cap[S3_PUT_MAX_BUFS];
    size_t len[S3_PUT_MAX_BUFS];
    EVP_MD_CTX *md5ctx[S3_PUT_MAX_BUFS]; /* Content-MD5, computed while filling */
    char md5[S3_PUT_MAX_BUFS][32];
    uint32_t part_of[S3_PUT_MAX_BUFS];
    int free_buf[S3_PUT_MAX_BUFS]; /* 1 when neither filling nor queued/uploading */
    int cur;
    uint32_t part;   /* 0-based index of the part being filled */
    uint64_t queued; /* bytes handed to the uploaders */
    char *upload_id;
    char **etags; /* QS_S3_MAX_PARTS entries once multipart */

    pthread_t th[S3_PUT_MAX_BUFS];
    CURL *uh[S3_PUT_MAX_BUFS]; /* one easy handle per uploader thread */
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int queue[S3_PUT_MAX_BUFS]; /* FIFO of buffers waiting for an uploader */
    int qhead, qlen;
    int busy; /* uploads in progress */
    int stop;
    int failed;
    struct qs_error uerr;
    uint32_t parts_done;

    /* Streaming single PUT (known size): the producer writes into a pipe and
     * one thread sends it as the body of a single PUT. */
    int streaming;
    struct qs_pipe pipe;
    pthread_t sth;
    int sth_started;
    int sth_rc;
    struct qs_error serr;
    uint64_t written;
};

static int stream_end(struct qs_s3_put *put, int ok, struct qs_error *err);

struct uploader_arg {
    struct qs_s3_put *put;
    int idx;
};

static int put_error(struct qs_s3_put *put, struct qs_error *err)
{
    *err = put->uerr;
    return put->uerr.code != 0 ? put->uerr.code : QS_EIO;
}

static int upload_part(struct qs_s3_put *put, CURL *h, int b, uint32_t pn, struct qs_error *err)
{
    struct qs_s3 *s3 = put->s3;
    char md5h[64], q[1200], what[1300];
    snprintf(md5h, sizeof(md5h), "Content-MD5: %s", put->md5[b]);
    struct qs_buf qb;
    qs_buf_init(&qb);
    char num[16];
    snprintf(num, sizeof(num), "%u", pn + 1);
    /* Sorted: partNumber < uploadId. */
    if (append_query_param(&qb, "partNumber", num) != 0 ||
        append_query_param(&qb, "uploadId", put->upload_id) != 0) {
        qs_buf_free(&qb);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    qs_strlcpy(q, qb.data, sizeof(q));
    qs_buf_free(&qb);
    snprintf(what, sizeof(what), "s3 PUT part %u of %s", pn + 1, put->key);
    struct s3_req r;
    req_init(&r, "PUT", put->key, q, what);
    r.headers[0] = md5h;
    r.body = put->buf[b];
    r.body_len = put->len[b];
    r.cancel = put->cancel;
    r.abort_flag = &put->abort_flag;
    int rc = s3_perform(s3, h, &r, err);
    if (rc == 0) {
        if (r.etag[0] == '\0') {
            rc = qs_error_set(err, QS_EPROTO, "%s: answer without ETag", what);
        } else {
            /* Each part number is written by exactly one uploader. */
            put->etags[pn] = strdup(r.etag);
            if (put->etags[pn] == NULL)
                rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        }
    }
    req_deinit(&r);
    return rc;
}

static void *uploader_main(void *arg)
{
    struct uploader_arg *ua = arg;
    struct qs_s3_put *put = ua->put;
    CURL *h = put->uh[ua->idx];
    free(ua);
    pthread_mutex_lock(&put->mu);
    for (;;) {
        while (put->qlen == 0 && !put->stop)
            pthread_cond_wait(&put->cv, &put->mu);
        if (put->qlen == 0)
            break;
        int b = put->queue[put->qhead];
        put->qhead = (put->qhead + 1) % S3_PUT_MAX_BUFS;
        put->qlen--;
        uint32_t pn = put->part_of[b];
        put->busy++;
        int skip = put->failed;
        pthread_mutex_unlock(&put->mu);
        struct qs_error e;
        qs_error_clear(&e);
        int rc = skip ? 0 : upload_part(put, h, b, pn, &e);
        pthread_mutex_lock(&put->mu);
        put->busy--;
        put->free_buf[b] = 1;
        if (rc != 0 && !put->failed) {
            put->failed = 1;
            put->uerr = e;
            put->uerr.code = rc;
            /* Stop the other uploads too: the whole upload is aborted. */
            atomic_store(&put->abort_flag, 1);
        } else if (rc == 0 && !skip) {
            put->parts_done++;
        }
        pthread_cond_broadcast(&put->cv);
    }
    pthread_mutex_unlock(&put->mu);
    return NULL;
}

/* The object's metadata headers (with the put token) from index first on. */
static void meta_headers(struct qs_s3_put *put, struct s3_req *r, int first)
{
    r->headers[first++] = put->token_hdr;
    for (size_t i = 0; i < put->nmeta && first + (int)i < 39; i++)
        r->headers[first + i] = put->meta_hdrs[i];
}

/* Makes a write fail instead of replacing an existing object. */
#define IF_NONE_MATCH "If-None-Match: *"

static int exists_error(struct qs_error *err, const char *key)
{
    qs_error_set(err, UV_EEXIST,
                 "s3 PUT %s: an object already exists under this key; it was not replaced", key);
    return set_err(err, UV_EEXIST, err != NULL ? err->http_status : 0, 0);
}

/* 1 when key holds the object this put stored (its token), 0 when it holds
 * another one, -1 when there is none or HEAD failed. */
static int own_object(struct qs_s3_put *put)
{
    struct qs_storage_stat st;
    struct qs_error e;
    qs_error_clear(&e);
    if (head_raw(put->s3, put->key, &st, &e) != 0)
        return -1;
    const char *t = qs_storage_meta_get(&st.meta, PUT_TOKEN_META);
    int own = t != NULL && strcmp(t, put->token) == 0;
    qs_storage_stat_deinit(&st);
    return own;
}

/* After a conditional write answered 412 Precondition Failed: the key holds
 * an object. It is this put's own when an earlier attempt, whose answer was
 * lost, stored it; then the put succeeded. Else UV_EEXIST. */
static int settle_conflict(struct qs_s3_put *put, struct qs_error *err)
{
    if (own_object(put) == 1) {
        qs_error_clear(err);
        return 0;
    }
    return exists_error(err, put->key);
}

static int is_precondition_failed(int rc, const struct qs_error *err)
{
    return rc == QS_EHTTP && err->http_status == 412;
}

/* HEAD check for the paths where a condition is not enough (radosgw ignores
 * If-None-Match on CompleteMultipartUpload). 0 when key is free. A failing
 * HEAD fails the check only when `strict`; otherwise the request that
 * follows reports the reason (a 403 HEAD has no body to name it). */
static int check_absent(struct qs_s3_put *put, int strict, struct qs_error *err)
{
    struct qs_storage_stat st;
    int rc = head_raw(put->s3, put->key, &st, err);
    if (rc == 0) {
        qs_storage_stat_deinit(&st);
        return exists_error(err, put->key);
    }
    if (rc == QS_ENOTFOUND || !strict) {
        qs_error_clear(err);
        return 0;
    }
    return rc;
}

static int initiate(struct qs_s3_put *put, struct qs_error *err)
{
    char what[1200];
    what_fmt(what, sizeof(what), "initiate multipart upload", put->key);
    int rc = check_absent(put, 0, err); /* fail before the first part */
    if (rc != 0)
        return rc;
    struct s3_req r;
    req_init(&r, "POST", put->key, "uploads=", what);
    meta_headers(put, &r, 0);
    r.cancel = put->cancel;
    r.abort_flag = &put->abort_flag;
    rc = s3_perform(put->s3, put->h, &r, err);
    if (rc == 0) {
        struct qs_buf id;
        qs_buf_init(&id);
        rc = qs_s3xml_parse_initiate(r.resp.data, r.resp.len, &id);
        if (rc != 0) {
            qs_buf_free(&id);
            rc = qs_error_set(err, QS_EPROTO, "%s: answer without UploadId", what);
        } else {
            put->upload_id = id.data;
            put->etags = calloc(QS_S3_MAX_PARTS, sizeof(char *));
            if (put->etags == NULL)
                rc = qs_error_set(err, UV_ENOMEM, "out of memory");
        }
    }
    req_deinit(&r);
    return rc;
}

static int start_uploaders(struct qs_s3_put *put, struct qs_error *err)
{
    int want = put->nbufs - 1;
    while (put->nthreads < want) {
        int i = put->nthreads;
        put->uh[i] = curl_easy_init();
        struct uploader_arg *ua = malloc(sizeof(*ua));
        if (put->uh[i] == NULL || ua == NULL) {
            free(ua);
            return qs_error_set(err, UV_ENOMEM, "curl_easy_init failed");
        }
        ua->put = put;
        ua->idx = i;
        int e = pthread_create(&put->th[i], NULL, uploader_main, ua);
        if (e != 0) {
            free(ua);
            return qs_error_set(err, -e, "cannot start an upload thread: %s", strerror(e));
        }
        put->nthreads++;
    }
    return 0;
}

static void md5_finish(struct qs_s3_put *put, int b)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(put->md5ctx[b], md, &mdlen);
    EVP_EncodeBlock((unsigned char *)put->md5[b], md, (int)mdlen);
}

/* Queues the current (non-empty) buffer for upload and makes a free buffer
 * current, waiting while every buffer is queued or uploading. */
static int submit_current(struct qs_s3_put *put, struct qs_error *err)
{
    int rc = 0;
    md5_finish(put, put->cur);
    if (put->upload_id == NULL && (rc = initiate(put, err)) != 0)
        return rc;
    if ((rc = start_uploaders(put, err)) != 0)
        return rc;
    pthread_mutex_lock(&put->mu);
    if (put->failed) {
        pthread_mutex_unlock(&put->mu);
        return put_error(put, err);
    }
    int b = put->cur;
    put->part_of[b] = put->part;
    put->free_buf[b] = 0;
    put->queue[(put->qhead + put->qlen) % S3_PUT_MAX_BUFS] = b;
    put->qlen++;
    pthread_cond_broadcast(&put->cv);
    int next = -1;
    for (;;) {
        for (int i = 0; i < put->nbufs && next < 0; i++)
            if (put->free_buf[i])
                next = i;
        if (next >= 0 || put->failed)
            break;
        pthread_cond_wait(&put->cv, &put->mu);
    }
    int failed = put->failed;
    if (next >= 0)
        put->free_buf[next] = 0; /* now filling */
    pthread_mutex_unlock(&put->mu);
    put->queued += put->len[b];
    if (failed) {
        if (next >= 0) {
            put->cur = next;
            put->len[next] = 0;
        }
        return put_error(put, err);
    }
    put->cur = next;
    put->part++;
    put->len[put->cur] = 0;
    return 0;
}

static int wait_idle(struct qs_s3_put *put, struct qs_error *err)
{
    if (put->nthreads == 0)
        return 0;
    pthread_mutex_lock(&put->mu);
    while ((put->qlen > 0 || put->busy > 0) && !put->failed)
        pthread_cond_wait(&put->cv, &put->mu);
    int failed = put->failed;
    pthread_mutex_unlock(&put->mu);
    return failed ? put_error(put, err) : 0;
}

static void stop_uploaders(struct qs_s3_put *put)
{
    if (put->nthreads == 0)
        return;
    pthread_mutex_lock(&put->mu);
    put->stop = 1;
    pthread_cond_broadcast(&put->cv);
    pthread_mutex_unlock(&put->mu);
    for (int i = 0; i < put->nthreads; i++)
        pthread_join(put->th[i], NULL);
    put->nthreads = 0;
}

static void put_free(struct qs_s3_put *put)
{
    if (put == NULL)
        return;
    if (put->streaming) {
        stream_end(put, 0, NULL);
        qs_pipe_deinit(&put->pipe);
    }
    stop_uploaders(put);
    pthread_mutex_destroy(&put->mu);
    pthread_cond_destroy(&put->cv);
    for (size_t i = 0; i < put->nmeta; i++)
        free(put->meta_hdrs[i]);
    if (put->etags != NULL) {
        for (uint32_t i = 0; i < QS_S3_MAX_PARTS; i++)
            free(put->etags[i]);
        free(put->etags);
    }
    for (int i = 0; i < S3_PUT_MAX_BUFS; i++) {
        free(put->buf[i]);
        EVP_MD_CTX_free(put->md5ctx[i]);
        curl_easy_cleanup(put->uh[i]);
    }
    free(put->upload_id);
    free(put->key);
    if (put->h != NULL)
        handle_put(put->s3, put->h);
    free(put);
}

static ssize_t stream_src(void *buf, size_t cap, void *ud)
{
    struct qs_s3_put *put = ud;
    return qs_pipe_read(&put->pipe, buf, cap);
}

/* The single PUT of a streaming put: its body is read from the pipe as the
 * producer writes. Not retried here (the bytes are gone); the caller retries
 * the whole stream. */
static void *stream_main(void *arg)
{
    struct qs_s3_put *put = arg;
    char what[1200];
    what_fmt(what, sizeof(what), "PUT", put->key);
    struct s3_req r;
    req_init(&r, "PUT", put->key, NULL, what);
    r.headers[0] = IF_NONE_MATCH;
    meta_headers(put, &r, 1);
    r.body_len = (size_t)put->size;
    r.body_src = stream_src;
    r.body_src_ud = put;
    r.cancel = put->cancel;
    r.abort_flag = &put->abort_flag;
    r.no_retry = 1;
    qs_error_clear(&put->serr);
    int rc = s3_perform(put->s3, put->h, &r, &put->serr);
    if (rc != 0 && r.body_src_rc != 0 && r.body_src_rc != QS_ECHECKSUM)
        rc = qs_error_set(&put->serr, r.body_src_rc, "%s: aborted by the producer", what);
    else if (is_precondition_failed(rc, &put->serr))
        rc = settle_conflict(put, &put->serr);
    req_deinit(&r);
    put->sth_rc = rc;
    if (rc != 0)
        qs_pipe_fail(&put->pipe, rc); /* wake a blocked producer */
    return NULL;
}

static int stream_start(struct qs_s3_put *put, struct qs_error *err)
{
    if (qs_pipe_init(&put->pipe, S3_STREAM_PIPE) != 0)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    put->streaming = 1;
    int e = pthread_create(&put->sth, NULL, stream_main, put);
    if (e != 0)
        return qs_error_set(err, -e, "cannot start the upload thread: %s", strerror(e));
    put->sth_started = 1;
    return 0;
}

/* Ends the streaming PUT: closes (ok) or fails the pipe, waits for the
 * request. Returns its result. */
static int stream_end(struct qs_s3_put *put, int ok, struct qs_error *err)
{
    if (!put->sth_started)
        return ok ? 0 : QS_ECANCELED;
    if (ok) {
        qs_pipe_close(&put->pipe);
    } else {
        atomic_store(&put->abort_flag, 1);
        qs_pipe_fail(&put->pipe, QS_ECANCELED);
    }
    pthread_join(put->sth, NULL);
    put->sth_started = 0;
    if (ok && put->sth_rc != 0 && err != NULL)
        *err = put->serr;
    return put->sth_rc;
}

int qs_s3_put_begin(struct qs_s3 *s3, const char *key, int64_t size,
                    const struct qs_storage_meta *meta, struct qs_cancel *cancel,
                    struct qs_s3_put **out, struct qs_error *err)
{
    LOCAL_ERR(err);
    if (meta != NULL && meta->n > S3_MAX_META)
        return qs_error_set(err, QS_EINVAL, "too many metadata entries (max %d)", S3_MAX_META);
    struct qs_s3_put *put = calloc(1, sizeof(*put));
    if (put == NULL)
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    pthread_mutex_init(&put->mu, NULL);
    pthread_cond_init(&put->cv, NULL);
    put->s3 = s3;
    put->size = size;
    put->cancel = cancel;
    put->key = strdup(key);
    put->h = handle_get(s3);
    put->nbufs = s3->upload_parallel + 1;
    unsigned char rnd[16];
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
        put_free(put);
        return qs_error_set(err, QS_EIO, "no random bytes for the put token");
    }
    qs_hex(rnd, sizeof(rnd), put->token);
    snprintf(put->token_hdr, sizeof(put->token_hdr), "x-amz-meta-" PUT_TOKEN_META ": %s",
             put->token);
    int rc = put->key && put->h ? 0 : UV_ENOMEM;
    for (int i = 0; rc == 0 && i < put->nbufs; i++) {
        put->md5ctx[i] = EVP_MD_CTX_new();
        put->free_buf[i] = i != 0; /* buffer 0 fills first */
        if (put->md5ctx[i] == NULL)
            rc = UV_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && meta != NULL && i < meta->n; i++) {
        size_t n = strlen(meta->names[i]) + strlen(meta->values[i]) + 16;
        put->meta_hdrs[i] = malloc(n);
        if (put->meta_hdrs[i] == NULL) {
            rc = UV_ENOMEM;
            break;
        }
        snprintf(put->meta_hdrs[i], n, "x-amz-meta-%s: %s", meta->names[i], meta->values[i]);
        put->nmeta = i + 1;
    }
    if (rc != 0) {
        put_free(put);
        return qs_error_set(err, rc, "out of memory");
    }
    /* A known size larger than one part streams as one PUT: no part
     * buffers, and the upload overlaps the producer byte for byte. */
    if (size >= 0 && (uint64_t)size > s3->part_size && (uint64_t)size <= s3->stream_max &&
        (rc = stream_start(put, err)) != 0) {
        put_free(put);
        return rc;
    }
    *out = put;
    return 0;
}

/* Capacity the buffer for the current part should have. */
static size_t want_cap(const struct qs_s3_put *put)
{
    uint64_t ps = qs_s3_part_size_for(put->part, put->s3->part_size);
    if (put->size >= 0) {
        uint64_t left = (uint64_t)put->size - put->queued;
        if (left < ps)
            ps = left > 0 ? left : 1;
    }
    return (size_t)ps;
}

int qs_s3_put_write(struct qs_s3_put *put, const void *data, size_t len, struct qs_error *err)
{
    LOCAL_ERR(err);
    if (put->streaming) {
        if (qs_cancel_requested(put->cancel))
            return qs_error_set(err, QS_ECANCELED, "s3 PUT %s: cancelled", put->key);
        if (qs_pipe_write(&put->pipe, data, len) != 0) {
            /* The request ended early: report its reason. */
            stream_end(put, 0, NULL);
            *err = put->serr;
            return put->sth_rc != 0 ? put->sth_rc : QS_EIO;
        }
        put->written += len;
        return 0;
    }
    const char *p = data;
    while (len > 0) {
        if (qs_cancel_requested(put->cancel))
            return qs_error_set(err, QS_ECANCELED, "s3 PUT %s: cancelled", put->key);
        int c = put->cur;
        if (put->len[c] == 0 || put->buf[c] == NULL) {
            size_t w = want_cap(put);
            if (qs_s3_part_size_for(put->part, put->s3->part_size) == 0)
                return qs_error_set(err, QS_ETOOBIG, "s3 PUT %s: more than %u parts", put->key,
                                    QS_S3_MAX_PARTS);
            if (put->cap[c] != w) {
                free(put->buf[c]);
                put->buf[c] = malloc(w);
                put->cap[c] = put->buf[c] ? w : 0;
                if (put->buf[c] == NULL)
                    return qs_error_set(err, UV_ENOMEM, "out of memory for a %zu byte part", w);
            }
        }
        if (put->len[c] == put->cap[c]) {
            int rc = submit_current(put, err);
            if (rc != 0)
                return rc;
            continue;
        }
        size_t n = put->cap[c] - put->len[c];
        if (n > len)
            n = len;
        if (put->len[c] == 0)
            EVP_DigestInit_ex(put->md5ctx[c], EVP_md5(), NULL);
        EVP_DigestUpdate(put->md5ctx[c], p, n);
        memcpy(put->buf[c] + put->len[c], p, n);
        put->len[c] += n;
        p += n;
        len -= n;
    }
    return 0;
}

uint32_t qs_s3_put_parts(const struct qs_s3_put *put)
{
    return put ? put->parts_done : 0;
}

static int single_put(struct qs_s3_put *put, struct qs_error *err)
{
    char md5h[64], what[1200];
    int c = put->cur;
    if (put->len[c] == 0)
        EVP_DigestInit_ex(put->md5ctx[c], EVP_md5(), NULL);
    md5_finish(put, c);
    snprintf(md5h, sizeof(md5h), "Content-MD5: %s", put->md5[c]);
    what_fmt(what, sizeof(what), "PUT", put->key);
    struct s3_req r;
    req_init(&r, "PUT", put->key, NULL, what);
    r.headers[0] = md5h;
    r.headers[1] = IF_NONE_MATCH;
    meta_headers(put, &r, 2);
    r.body = put->buf[c] ? put->buf[c] : "";
    r.body_len = put->len[c];
    r.cancel = put->cancel;
    r.abort_flag = &put->abort_flag;
    int rc = s3_perform(put->s3, put->h, &r, err);
    if (is_precondition_failed(rc, err))
        rc = settle_conflict(put, err); /* maybe a retry after a lost answer */
    req_deinit(&r);
    return rc;
}

static int complete(struct qs_s3_put *put, struct qs_error *err)
{
    struct qs_buf body, q;
    qs_buf_init(&body);
    qs_buf_init(&q);
    int rc = qs_buf_printf(&body, "<CompleteMultipartUpload>");
    for (uint32_t i = 0; rc == 0 && i < put->part; i++)
        rc = qs_buf_printf(&body, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", i + 1,
                           put->etags[i] ? put->etags[i] : "");
    if (rc == 0)
        rc = qs_buf_printf(&body, "</CompleteMultipartUpload>");
    if (rc == 0)
        rc = append_query_param(&q, "uploadId", put->upload_id);
    if (rc != 0) {
        qs_buf_free(&body);
        qs_buf_free(&q);
        return qs_error_set(err, UV_ENOMEM, "out of memory");
    }
    char what[1200];
    what_fmt(what, sizeof(what), "complete multipart upload", put->key);
    /* radosgw ignores If-None-Match here: check, then ask anyway for the
     * stores that honour it. */
    if ((rc = check_absent(put, 1, err)) != 0) {
        qs_buf_free(&body);
        qs_buf_free(&q);
        return rc;
    }
    for (int attempt = 0;; attempt++) {
        struct s3_req r;
        req_init(&r, "POST", put->key, q.data, what);
        r.headers[0] = "Content-Type: application/xml";
        r.headers[1] = IF_NONE_MATCH;
        r.body = body.data;
        r.body_len = body.len;
        r.cancel = put->cancel;
        r.abort_flag = &put->abort_flag;
        rc = s3_perform(put->s3, put->h, &r, err);
        char code[64] = "", msg[256] = "";
        if (rc == 0 && qs_s3xml_parse_error(r.resp.data, r.resp.len, code, sizeof(code), msg,
                                            sizeof(msg)) == 0) {
            /* S3 may answer 200 and still fail the completion. */
            rc = qs_error_set(err, QS_EHTTP, "%s: %s%s%s", what, code, msg[0] ? ": " : "", msg);
            err->retryable = retryable_code(code);
        }
        req_deinit(&r);
        if (is_precondition_failed(rc, err) || strcmp(code, "PreconditionFailed") == 0) {
            rc = settle_conflict(put, err);
            break;
        }
        if (rc == QS_ENOTFOUND && attempt > 0 && own_object(put) == 1) {
            /* An earlier attempt completed the upload; its answer was lost. */
            qs_error_clear(err);
            rc = 0;
        }
        if (rc == 0 || !err->retryable || attempt >= 2 || qs_cancel_requested(put->cancel))
            break;
        sleep_ms_cancellable(backoff_ms(put->s3, attempt), put->cancel, NULL);
    }
    qs_buf_free(&body);
    qs_buf_free(&q);
    return rc;
}

static void abort_upload_of(struct qs_s3_put *put)
{
    atomic_store(&put->abort_flag, 1);
    if (put->streaming)
        stream_end(put, 0, NULL); /* an aborted PUT stores nothing */
    stop_uploaders(put);
    if (put->upload_id != NULL) {
        struct qs_error e;
        qs_error_clear(&e);
        if (abort_mpu(put->s3, put->h, put->key, put->upload_id, &e) != 0) {
            struct qs_log_ctx ctx = QS_LOG_CTX_NONE;
            ctx.error = e.msg;
            ctx.phase = "storage";
            qs_log(QS_LOG_ERROR, &ctx, "could not abort the multipart upload of %s", put->key);
        }
        free(put->upload_id);
        put->upload_id = NULL;
    }
}

int qs_s3_put_finish(struct qs_s3_put *put, struct qs_error *err)
{
    LOCAL_ERR(err);
    int rc = 0;
    if (qs_cancel_requested(put->cancel))
        rc = qs_error_set(err, QS_ECANCELED, "s3 PUT %s: cancelled", put->key);
    else if (put->streaming)
        rc = stream_end(put, put->written == (uint64_t)put->size, err);
    else if (put->upload_id == NULL)
        rc = single_put(put, err);
    else {
        if (put->len[put->cur] > 0)
            rc = submit_current(put, err);
        if (rc == 0)
            rc = wait_idle(put, err);
        stop_uploaders(put);
        if (rc == 0 && put->failed)
            rc = put_error(put, err);
        if (rc == 0)
            rc = complete(put, err);
    }
    if (rc != 0)
        abort_upload_of(put);
    put_free(put);
    return rc;
}

void qs_s3_put_abort(struct qs_s3_put *put)
{
    if (put == NULL)
        return;
    abort_upload_of(put);
    put_free(put);
}
