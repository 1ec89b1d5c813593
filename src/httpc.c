#include "qsnap/httpc.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <uv.h>

#include "qsnap/log.h"

#ifndef QSNAP_VERSION
#define QSNAP_VERSION "0.0.0"
#endif

/* ---- global state ------------------------------------------------------------ */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;
/* libcurl's built-in CA directory, kept when a request adds a CA file (which
 * would otherwise replace the system's bundle). */
static char *default_capath;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (global_rc != CURLE_OK)
        return;
    CURL *h = curl_easy_init();
    char *capath = NULL;
    if (h != NULL && curl_easy_getinfo(h, CURLINFO_CAPATH, &capath) == CURLE_OK && capath != NULL)
        default_capath = strdup(capath);
    curl_easy_cleanup(h);
}

int qs_httpc_global_init(void)
{
    pthread_once(&global_once, global_init_once);
    return global_rc == CURLE_OK ? 0 : QS_EIO;
}

void qs_httpc_global_cleanup(void)
{
    if (global_rc != CURLE_OK)
        return;
    free(default_capath);
    default_capath = NULL;
    curl_global_cleanup();
    global_rc = CURLE_FAILED_INIT;
}

/* ---- handles and pools ----------------------------------------------------------- */

struct qs_httpc {
    CURL *curl;
};

int qs_httpc_new(struct qs_httpc **out)
{
    if (qs_httpc_global_init() != 0)
        return UV_ENOMEM;
    struct qs_httpc *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->curl = curl_easy_init()) == NULL) {
        free(h);
        return UV_ENOMEM;
    }
    *out = h;
    return 0;
}

void qs_httpc_free(struct qs_httpc *h)
{
    if (h == NULL)
        return;
    curl_easy_cleanup(h->curl);
    free(h);
}

struct qs_httpc_pool {
    pthread_mutex_t mu;
    size_t max, n;
    struct qs_httpc **idle;
};

int qs_httpc_pool_new(size_t max, struct qs_httpc_pool **out)
{
    struct qs_httpc_pool *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->idle = calloc(max > 0 ? max : 1, sizeof(*p->idle))) == NULL) {
        free(p);
        return UV_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->max = max;
    *out = p;
    return 0;
}

void qs_httpc_pool_free(struct qs_httpc_pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        qs_httpc_free(p->idle[i]);
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    free(p);
}

struct qs_httpc *qs_httpc_pool_take(struct qs_httpc_pool *p)
{
    struct qs_httpc *h = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0)
        h = p->idle[--p->n];
    pthread_mutex_unlock(&p->mu);
    if (h == NULL && qs_httpc_new(&h) != 0)
        return NULL;
    return h;
}

void qs_httpc_pool_give(struct qs_httpc_pool *p, struct qs_httpc *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->n < p->max) {
        p->idle[p->n++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    qs_httpc_free(h);
}

/* ---- one exchange ------------------------------------------------------------------ */

void qs_httpc_req_init(struct qs_httpc_req *r, const char *method, const char *url,
                       const char *what)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->url = url;
    r->what = what;
    r->src_len = -1;
    r->content_length = -1;
    qs_buf_init(&r->resp);
}

void qs_httpc_req_deinit(struct qs_httpc_req *r)
{
    if (r != NULL)
        qs_buf_free(&r->resp);
}

/* Transfer state of one qs_httpc_perform(). */
struct xfer {
    struct qs_httpc_req *r;
    char errbuf[CURL_ERROR_SIZE];
    int status_seen; /* a final (non-1xx) status line came */
    int encoded;     /* the current answer has a Content-Encoding */
    int encoded_refused;
    int sink_rc;
    int src_rc;
    int src_mismatch;
    int cancelled;
    int stalled;
    /* request body */
    size_t body_off, pre_off, post_off;
    uint64_t src_sent;
    int src_eof;
    int sent_all; /* the whole body is in libcurl's hands */
    /* stall detection: the last point where enough had moved */
    double chk_t;
    curl_off_t chk_bytes;
    double quota;
};

static size_t header_cb(char *buf, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    struct qs_httpc_req *r = x->r;
    size_t len = size * n;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* A new answer: interim (1xx), a redirect, or the final one. */
        const char *sp = memchr(buf, ' ', len);
        long st = 0;
        if (sp != NULL)
            for (sp++; sp < buf + len && isdigit((unsigned char)*sp) && st < 1000; sp++)
                st = st * 10 + (*sp - '0');
        r->status = st;
        x->status_seen = st >= 200;
        x->encoded = 0;
        if (r->on_response != NULL)
            r->on_response(r->hook_ud, st);
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (colon == NULL)
        return len;
    size_t nl = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vl = len - nl - 1;
    while (vl > 0 && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl > 0 &&
           (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    char val[1025];
    if (vl >= sizeof(val))
        return len;
    memcpy(val, v, vl);
    val[vl] = '\0';
    if (nl == 16 && strncasecmp(buf, "Content-Encoding", 16) == 0)
        x->encoded = vl > 0 && strcasecmp(val, "identity") != 0;
    if (r->on_header != NULL)
        r->on_header(r->hook_ud, buf, nl, val);
    return len;
}

static size_t write_cb(char *data, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    struct qs_httpc_req *r = x->r;
    size_t len = size * n;
    int ok = r->status >= 200 && r->status < 300;
    if (ok && r->sink != NULL) {
        if (r->refuse_encoded && x->encoded) {
            x->encoded_refused = 1;
            return 0;
        }
        int rc = r->sink(data, len, r->sink_ud);
        if (rc != 0) {
            x->sink_rc = rc;
            return 0;
        }
        r->received += len;
        return len;
    }
    size_t cap = ok ? r->resp_max : QS_HTTPC_ERRBODY_MAX;
    if (r->resp.len + len > cap) {
        size_t room = cap > r->resp.len ? cap - r->resp.len : 0;
        r->resp_truncated = 1;
        if (room > 0 && qs_buf_append(&r->resp, data, room) != 0)
            return 0;
        r->received += room;
        /* An error body is read on (its status is the answer) but dropped;
         * an answer too large to keep fails the request. */
        return ok ? 0 : len;
    }
    if (len > 0 && qs_buf_append(&r->resp, data, len) != 0)
        return 0;
    r->received += len;
    return len;
}

/* Asks the source for one more byte once its declared length has come: it
 * must be at its end. 0, or CURL_READFUNC_ABORT. */
static int source_must_end(struct xfer *x)
{
    struct qs_httpc_req *r = x->r;
    char probe[1];
    ssize_t got = r->src(probe, sizeof(probe), r->src_ud);
    x->chk_t = qs_monotonic(); /* waiting for our own source is no stall */
    if (got < 0) {
        x->src_rc = (int)got;
        return 1;
    }
    if (got > 0) {
        x->src_mismatch = 1;
        return 1;
    }
    x->src_eof = 1;
    x->sent_all = 1;
    return 0;
}

static size_t copy_part(char *buf, size_t cap, const void *part, size_t len, size_t *off)
{
    size_t k = len - *off < cap ? len - *off : cap;
    if (k > 0)
        memcpy(buf, (const char *)part + *off, k);
    *off += k;
    return k;
}

static size_t read_cb(char *buf, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    struct qs_httpc_req *r = x->r;
    size_t cap = size * n;
    if (qs_cancel_requested(r->cancel)) {
        x->cancelled = 1;
        return CURL_READFUNC_ABORT;
    }
    if (r->src == NULL) {
        size_t k = copy_part(buf, cap, r->body, r->body_len, &x->body_off);
        if (x->body_off == r->body_len)
            x->sent_all = 1;
        return k;
    }
    if (x->pre_off < r->src_pre_len)
        return copy_part(buf, cap, r->src_pre, r->src_pre_len, &x->pre_off);
    if (!x->src_eof) {
        size_t want = cap;
        if (r->src_len >= 0) {
            uint64_t left = (uint64_t)r->src_len - x->src_sent;
            if (left == 0 && source_must_end(x) != 0)
                return CURL_READFUNC_ABORT;
            if (left < want)
                want = (size_t)left;
        }
        if (!x->src_eof) {
            ssize_t got = r->src(buf, want, r->src_ud);
            x->chk_t = qs_monotonic();
            if (got < 0) {
                x->src_rc = (int)got;
                return CURL_READFUNC_ABORT;
            }
            if (got > 0) {
                x->src_sent += (uint64_t)got;
                /* Check the end before the last byte leaves. */
                if (r->src_len >= 0 && x->src_sent == (uint64_t)r->src_len &&
                    source_must_end(x) != 0)
                    return CURL_READFUNC_ABORT;
                return (size_t)got;
            }
            if (r->src_len >= 0) {
                x->src_mismatch = 1;
                return CURL_READFUNC_ABORT;
            }
            x->src_eof = 1;
            x->sent_all = 1;
        }
    }
    if (x->post_off < r->src_post_len)
        return copy_part(buf, cap, r->src_post, r->src_post_len, &x->post_off);
    return 0;
}

static int seek_cb(void *ud, curl_off_t off, int origin)
{
    struct xfer *x = ud;
    struct qs_httpc_req *r = x->r;
    if (r->src != NULL || origin != SEEK_SET || off < 0 || (uint64_t)off > r->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    x->body_off = (size_t)off;
    x->sent_all = x->body_off == r->body_len;
    return CURL_SEEKFUNC_OK;
}

static int xferinfo_cb(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct xfer *x = ud;
    struct qs_httpc_req *r = x->r;
    (void)dt;
    (void)ut;
    if (qs_cancel_requested(r->cancel)) {
        x->cancelled = 1;
        return 1;
    }
    const struct qs_httpc_limits *l = r->limits;
    if (l == NULL || l->stall_s <= 0 || (l->stall_until_sent && x->sent_all))
        return 0;
    double now = qs_monotonic();
    curl_off_t moved = dn + un;
    if ((double)(moved - x->chk_bytes) >= x->quota) {
        x->chk_t = now;
        x->chk_bytes = moved;
    } else if (now - x->chk_t >= (double)l->stall_s) {
        x->stalled = 1;
        return 1;
    }
    return 0;
}

/* Failures that no retry can fix. */
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
    case CURLE_TOO_MANY_REDIRECTS:
        return 0;
    default:
        return 1;
    }
}

static int status_error(struct xfer *x, struct qs_error *err)
{
    struct qs_httpc_req *r = x->r;
    long st = r->status;
    int code = st == 404 ? QS_ENOTFOUND : QS_EHTTP;
    int retryable = st >= 500 || st == 408 || st == 429;
    char text[400] = "";
    if (r->explain != NULL)
        r->explain(r->explain_ud, st, r->resp.data != NULL ? r->resp.data : "", r->resp.len,
                   r->resp_truncated, text, sizeof(text), &code, &retryable);
    return qs_error_set_class(err, code, st, retryable, "%s: HTTP %ld%s%s", r->what, st,
                              text[0] != '\0' ? ": " : "", text);
}

static int classify(struct xfer *x, CURLcode cc, double dt, struct qs_error *err)
{
    struct qs_httpc_req *r = x->r;
    const char *what = r->what;
    long st = x->status_seen ? r->status : 0;
    int http_bad = x->status_seen && (r->status < 200 || r->status >= 300);
    const char *why = !r->secret_url && x->errbuf[0] != '\0' ? x->errbuf : curl_easy_strerror(cc);

    if (x->cancelled || (cc != CURLE_OK && qs_cancel_requested(r->cancel)))
        return qs_error_set(err, QS_ECANCELED, "%s: cancelled", what);
    if (x->sink_rc != 0) {
        r->callback_failed = 1;
        return qs_error_wrap(err, x->sink_rc, "%s: writing the stream failed", what);
    }
    if (x->src_rc != 0) {
        r->callback_failed = 1;
        return qs_error_wrap(err, x->src_rc, "%s: reading the source failed", what);
    }
    if (x->src_mismatch) {
        r->callback_failed = 1;
        return qs_error_set(err, QS_EPROTO,
                            "%s: source length differs from the declared %" PRId64 " bytes", what,
                            r->src_len);
    }
    if (x->encoded_refused)
        return qs_error_set_class(err, QS_EPROTO, st, 0,
                                  "%s: the answer is encoded (Content-Encoding), not the bytes "
                                  "as stored",
                                  what);
    if (x->stalled) {
        const struct qs_httpc_limits *l = r->limits;
        if (l->stall_bytes_per_s > 1)
            return qs_error_set_class(err, QS_ETRANSPORT, st, 1,
                                      "%s: timed out: less than %ld bytes/s for %ld s", what,
                                      l->stall_bytes_per_s, l->stall_s);
        return qs_error_set_class(err, QS_ETRANSPORT, st, 1,
                                  "%s: timed out: no data moved for %ld s", what, l->stall_s);
    }
    if (http_bad && (cc == CURLE_OK || cc == CURLE_PARTIAL_FILE || cc == CURLE_RECV_ERROR ||
                     cc == CURLE_SEND_ERROR))
        return status_error(x, err); /* a broken body does not hide the status */
    if (!http_bad && r->resp_truncated)
        return qs_error_set_class(err, QS_EPROTO, st, 0, "%s: answer larger than %zu bytes", what,
                                  r->resp_max);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return qs_error_set_class(err, QS_ETRANSPORT, st, 1, "%s: timed out after %.1f s (%s)",
                                  what, dt, why);
    if (cc == CURLE_PARTIAL_FILE)
        return qs_error_set_class(err, QS_ETRANSPORT, st, 1,
                                  "%s: transfer cut short after %" PRIu64 " of %" PRId64 " bytes",
                                  what, r->received, r->content_length);
    if (cc != CURLE_OK)
        return qs_error_set_class(err, QS_ETRANSPORT, st, curl_retryable(cc), "%s: %s", what, why);
    if (!x->status_seen)
        return qs_error_set(err, QS_EPROTO, "%s: no HTTP status", what);
    if (http_bad)
        return status_error(x, err);
    if (r->sink != NULL && r->content_length >= 0 && (uint64_t)r->content_length != r->received)
        return qs_error_set_class(err, QS_EPROTO, st, 0,
                                  "%s: received %" PRIu64 " bytes but Content-Length is %" PRId64,
                                  what, r->received, r->content_length);
    return 0;
}

/* Everything set on the handle for r. 0 or UV_ENOMEM. */
static int setup(CURL *h, struct xfer *x, struct curl_slist **hdrs)
{
    struct qs_httpc_req *r = x->r;
    const struct qs_httpc_limits *l = r->limits;
    struct curl_slist *tmp;
    for (size_t i = 0; r->headers != NULL && r->headers[i] != NULL; i++) {
        if ((tmp = curl_slist_append(*hdrs, r->headers[i])) == NULL)
            return UV_ENOMEM;
        *hdrs = tmp;
    }
    int put = strcmp(r->method, "PUT") == 0, post = strcmp(r->method, "POST") == 0;
    if (post && r->src != NULL && r->src_len < 0) {
        if ((tmp = curl_slist_append(*hdrs, "Transfer-Encoding: chunked")) == NULL)
            return UV_ENOMEM;
        *hdrs = tmp;
    }
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "qsnap/" QSNAP_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
    /* CURLOPT_ACCEPT_ENCODING stays unset: bodies arrive as the peer has them. */
    if (r->aws_sigv4 != NULL) {
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, r->aws_sigv4);
        curl_easy_setopt(h, CURLOPT_USERNAME, r->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, r->password);
    }
    if (l != NULL) {
        if (l->connect_timeout_ms > 0)
            curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, l->connect_timeout_ms);
        if (l->timeout_ms > 0)
            curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, l->timeout_ms);
        if (l->ca_file != NULL) {
            curl_easy_setopt(h, CURLOPT_CAINFO, l->ca_file);
            if (default_capath != NULL)
                curl_easy_setopt(h, CURLOPT_CAPATH, default_capath);
        }
        if (l->max_redirects > 0) {
            curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
            curl_easy_setopt(h, CURLOPT_MAXREDIRS, l->max_redirects);
        }
        if (l->upload_buffer > 0)
            curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, l->upload_buffer);
        if (l->download_buffer > 0)
            curl_easy_setopt(h, CURLOPT_BUFFERSIZE, l->download_buffer);
    }
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);

    curl_off_t total = -1;
    if (r->src != NULL && r->src_len >= 0)
        total = (curl_off_t)(r->src_pre_len + (uint64_t)r->src_len + r->src_post_len);
    else if (r->src == NULL)
        total = (curl_off_t)r->body_len;
    if (put || (post && r->src != NULL)) {
        curl_easy_setopt(h, put ? CURLOPT_UPLOAD : CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
        if (put)
            curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, total);
        else if (total >= 0)
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, total);
    } else if (post) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body != NULL ? (const char *)r->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, total);
        x->sent_all = 1;
    } else if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }
    if (!put && !post)
        x->sent_all = 1;
    return 0;
}

int qs_httpc_perform(struct qs_httpc *hc, struct qs_httpc_req *r, struct qs_error *err)
{
    r->status = 0;
    r->content_length = -1;
    r->received = 0;
    r->resp_truncated = 0;
    r->callback_failed = 0;
    qs_buf_reset(&r->resp);
    if (qs_cancel_requested(r->cancel))
        return qs_error_set(err, QS_ECANCELED, "%s: cancelled", r->what);
    struct qs_httpc *own = NULL;
    if (hc == NULL) {
        if (qs_httpc_new(&own) != 0)
            return qs_error_set(err, UV_ENOMEM, "%s: cannot create an HTTP handle", r->what);
        hc = own;
    }
    struct xfer *x = calloc(1, sizeof(*x));
    struct curl_slist *hdrs = NULL;
    int rc = x != NULL ? 0 : UV_ENOMEM;
    if (rc == 0) {
        x->r = r;
        const struct qs_httpc_limits *l = r->limits;
        double quota = l != NULL ? (double)l->stall_bytes_per_s * (double)l->stall_s : 0;
        x->quota = quota >= 1 ? quota : 1;
        rc = setup(hc->curl, x, &hdrs);
    }
    if (rc != 0) {
        curl_slist_free_all(hdrs);
        free(x);
        qs_httpc_free(own);
        return qs_error_set(err, rc, "%s: out of memory", r->what);
    }
    /* Whatever err holds after the transfer was put there by a callback. */
    qs_error_clear(err);
    double t0 = qs_monotonic();
    x->chk_t = t0;
    CURLcode cc = curl_easy_perform(hc->curl);
    double dt = qs_monotonic() - t0;
    long st = 0;
    curl_easy_getinfo(hc->curl, CURLINFO_RESPONSE_CODE, &st);
    if (st != 0)
        r->status = st;
    curl_off_t clen = -1;
    if (curl_easy_getinfo(hc->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen) == CURLE_OK)
        r->content_length = clen;
    rc = classify(x, cc, dt, err);
    if (rc == 0 && err != NULL && x->status_seen)
        err->http_status = r->status;
    QS_DEBUG("%s: HTTP %ld (%s) in %.3f s", r->what, r->status,
             cc == CURLE_OK ? "ok" : curl_easy_strerror(cc), dt);
    /* The handle must not point at this stack's header list or buffers. */
    curl_easy_setopt(hc->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(hc->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(hdrs);
    free(x);
    qs_httpc_free(own);
    return rc;
}

/* ---- shared helpers -------------------------------------------------------------- */

long qs_httpc_backoff_ms(int attempt, long base_ms, long cap_ms)
{
    if (attempt < 1)
        attempt = 1;
    long d = base_ms;
    for (int i = 1; i < attempt && d < cap_ms; i++)
        d *= 2;
    if (d > cap_ms)
        d = cap_ms;
    unsigned rnd = 0;
    uv_random(NULL, NULL, &rnd, sizeof(rnd), 0, NULL);
    long span = d / 2; /* +-25 % */
    if (span > 0)
        d = d - span / 2 + (long)(rnd % (unsigned)(span + 1));
    return d;
}

int64_t qs_httpc_parse_date(const char *s)
{
    time_t t = curl_getdate(s, NULL);
    return t >= 0 ? (int64_t)t : -1;
}

int qs_httpc_escape(struct qs_buf *out, const char *s, size_t len, int keep_slash)
{
    static const char hexd[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
        char e[3] = {'%', hexd[c >> 4], hexd[c & 15]};
        if (qs_buf_append(out, keep ? &s[i] : e, keep ? 1 : 3) != 0)
            return UV_ENOMEM;
    }
    return 0;
}
