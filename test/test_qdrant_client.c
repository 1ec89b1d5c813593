/* Qdrant client against the Qdrant stand-in (test/qdrant_standin.py) and,
 * for wire-level details (headers, framing, broken answers), against a tiny
 * scripted HTTP server on a loopback socket owned by the test. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>

#include "qsnap/error.h"
#include "qsnap/qdrant.h"
#include "qsnap/util.h"
#include "support.h"

/* ---- scripted one-shot HTTP server --------------------------------------- */

struct mini {
    int fd;
    int port;
    pthread_t th;
    bool started;
    const char *resp; /* canned answer, written as is (borrowed) */
    size_t resp_len;
    double delay_s; /* wait before answering */
    bool never_answer;
    bool hold_open; /* after answering, keep the connection open until stop */
    int cfd;
    char *owned_resp;
    char *req; /* received request head + body (owned) */
    size_t req_len;
};

static size_t find_head_end(const char *p, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (p[i - 3] == '\r' && p[i - 2] == '\n' && p[i - 1] == '\r' && p[i] == '\n')
            return i + 1;
    return 0;
}

static long content_length(const char *head)
{
    const char *p = strcasestr(head, "\r\ncontent-length:");
    return p != NULL ? strtol(p + 17, NULL, 10) : -1;
}

static void *mini_main(void *arg)
{
    struct mini *m = arg;
    int c = accept(m->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    m->cfd = c;
    size_t cap = 1 << 20;
    m->req = calloc(1, cap + 1);
    size_t hend = 0;
    long want = -1;
    for (;;) {
        ssize_t r = recv(c, m->req + m->req_len, cap - m->req_len, 0);
        if (r <= 0)
            break;
        m->req_len += (size_t)r;
        if (hend == 0 && (hend = find_head_end(m->req, m->req_len)) > 0) {
            m->req[m->req_len] = '\0';
            want = content_length(m->req);
            if (want < 0 && strcasestr(m->req, "transfer-encoding: chunked") == NULL)
                want = 0;
        }
        if (hend > 0 && want >= 0 && m->req_len >= hend + (size_t)want)
            break;
        if (hend > 0 && want < 0 && m->req_len >= 5 &&
            memcmp(m->req + m->req_len - 5, "0\r\n\r\n", 5) == 0)
            break;
        if (m->req_len == cap)
            break;
    }
    m->req[m->req_len] = '\0';
    if (m->never_answer) {
        char b[256];
        while (recv(c, b, sizeof(b), 0) > 0)
            ;
    } else {
        if (m->delay_s > 0)
            usleep((useconds_t)(m->delay_s * 1e6));
        size_t off = 0;
        while (off < m->resp_len) {
            ssize_t w = send(c, m->resp + off, m->resp_len - off, MSG_NOSIGNAL);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        if (m->hold_open) {
            char b[256];
            while (recv(c, b, sizeof(b), 0) > 0)
                ;
        }
    }
    close(c);
    return NULL;
}

static void mini_start(struct mini *m, const char *resp)
{
    m->cfd = -1;
    m->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(m->fd, 0);
    int one = 1;
    setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(m->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(m->fd, 4), 0);
    cr_assert_eq(getsockname(m->fd, (struct sockaddr *)&a, &len), 0);
    m->port = ntohs(a.sin_port);
    m->resp = resp;
    m->resp_len = resp != NULL ? strlen(resp) : 0;
    cr_assert_eq(pthread_create(&m->th, NULL, mini_main, m), 0);
    m->started = true;
}

static void mini_stop(struct mini *m)
{
    if (m->started) {
        shutdown(m->fd, SHUT_RDWR);
        if (m->cfd >= 0)
            shutdown(m->cfd, SHUT_RDWR);
        pthread_join(m->th, NULL);
    }
    close(m->fd);
    free(m->req);
    free(m->owned_resp);
    m->req = NULL;
    m->owned_resp = NULL;
    m->started = false;
}

/* Starts the server with a well-formed answer: status ("404 Not Found"),
 * extra header lines (each ending in CRLF, may be ""), body. */
static void mini_start_answer(struct mini *m, const char *status, const char *headers,
                              const char *body)
{
    size_t n = strlen(status) + strlen(headers) + strlen(body) + 128;
    char *r = malloc(n);
    snprintf(r, n, "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
             headers, strlen(body), body);
    mini_start(m, r);
    m->owned_resp = r;
}

#define JSON_CT "Content-Type: application/json\r\n"
#define RESULT_TRUE "{\"result\":true,\"status\":\"ok\",\"time\":0.01}"

static struct qs_qdrant *client_for(const char *url, const char *key, long req_ms, long snap_ms,
                                    long low_speed_s)
{
    struct qs_qdrant_opts o = {.url = url,
                               .api_key = key,
                               .connect_timeout_ms = 2000,
                               .request_timeout_ms = req_ms,
                               .snapshot_timeout_ms = snap_ms,
                               .low_speed_time_s = low_speed_s};
    struct qs_qdrant *q = NULL;
    struct qs_error err;
    cr_assert_eq(qs_qdrant_new(&o, &q, &err), 0, "%s", err.msg);
    return q;
}

static struct qs_qdrant *mini_client(struct mini *m, const char *key)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", m->port); /* trailing slash is dropped */
    return client_for(url, key, 5000, 5000, 5);
}

/* Sinks and sources ----------------------------------------------------- */

struct count_sink {
    uint64_t n;
    int fail_after; /* > 0: return fail_rc once n >= fail_after */
    int fail_rc;
    struct qs_cancel *cancel_after_first;
    struct qs_buf keep; /* first bytes, up to 1 MiB */
};

static int count_sink_fn(const void *data, size_t len, void *ud)
{
    struct count_sink *s = ud;
    if (s->keep.len < (1u << 20))
        qs_buf_append(&s->keep, data, len);
    s->n += len;
    if (s->cancel_after_first != NULL)
        qs_cancel_request(s->cancel_after_first);
    if (s->fail_after > 0 && s->n >= (uint64_t)s->fail_after)
        return s->fail_rc;
    return 0;
}

struct mem_source {
    const char *data;
    size_t len, off;
    size_t max_chunk;
    int fail_rc; /* returned once off >= fail_at when nonzero */
    size_t fail_at;
};

static ssize_t mem_source_fn(void *buf, size_t cap, void *ud)
{
    struct mem_source *s = ud;
    if (s->fail_rc != 0 && s->off >= s->fail_at)
        return s->fail_rc;
    size_t k = s->len - s->off;
    if (k > cap)
        k = cap;
    if (s->max_chunk > 0 && k > s->max_chunk)
        k = s->max_chunk;
    memcpy(buf, s->data + s->off, k);
    s->off += k;
    return (ssize_t)k;
}

/* ---- wire-level tests (scripted server) ------------------------------------ */

Test(qdrant_wire, download_headers_and_hash)
{
    struct mini m = {0};
    mini_start(&m, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                   "Content-Length: 5\r\nConnection: close\r\n\r\nhello");
    struct qs_qdrant *q = mini_client(&m, "s3cr3t-key-value");
    cr_assert_str_eq(qs_qdrant_url(q), m.port > 0 ? qs_qdrant_url(q) : "");
    struct count_sink s = {0};
    uint64_t size = 0;
    char sha[65] = "";
    struct qs_error err;
    int rc = qs_qdrant_download_snapshot(q, "my coll/x", "a b.snapshot", count_sink_fn, &s, NULL,
                                         &size, sha, &err);
    mini_stop(&m);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(size, 5);
    char want[65];
    qs_sha256_hex("hello", 5, want);
    cr_assert_str_eq(sha, want);
    cr_assert_eq(s.n, 5);
    cr_assert_eq(err.http_status, 200);
    qs_buf_free(&s.keep);
    qs_qdrant_free(q);
}

Test(qdrant_wire, request_line_and_headers)
{
    struct mini m = {0};
    mini_start(&m, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    struct qs_qdrant *q = mini_client(&m, "s3cr3t-key-value");
    struct count_sink s = {0};
    struct qs_error err;
    int rc = qs_qdrant_download_snapshot(q, "my coll/x", "a b.snapshot", count_sink_fn, &s, NULL,
                                         NULL, NULL, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    /* Names are percent-encoded; no compression is requested; key and agent are sent. */
    cr_assert_not_null(strstr(m.req, "GET /collections/my%20coll%2Fx/snapshots/a%20b.snapshot "
                                     "HTTP/1.1\r\n"),
                       "%s", m.req);
    cr_assert_null(strcasestr(m.req, "accept-encoding"), "%s", m.req);
    cr_assert_not_null(strstr(m.req, "\r\napi-key: s3cr3t-key-value\r\n"));
    cr_assert_not_null(strstr(m.req, "\r\nUser-Agent: qsnap/"));
    cr_assert_null(strcasestr(m.req, "authorization:"));
    mini_stop(&m);
    qs_buf_free(&s.keep);
    qs_qdrant_free(q);
}

Test(qdrant_wire, no_api_key_header_without_key)
{
    struct mini m = {0};
    mini_start_answer(&m, "200 OK", JSON_CT, "{\"result\":{\"collections\":[]},\"status\":\"ok\"}");
    struct qs_qdrant *q = mini_client(&m, NULL);
    char **names = NULL;
    size_t n = 99;
    struct qs_error err;
    int rc = qs_qdrant_list_collections(q, &names, &n, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(n, 0);
    cr_assert_null(strcasestr(m.req, "api-key"));
    cr_assert_not_null(strstr(m.req, "GET /collections HTTP/1.1\r\n"));
    mini_stop(&m);
    qs_qdrant_strv_free(names, n);
    qs_qdrant_free(q);
}

Test(qdrant_wire, download_cut_short_is_an_error)
{
    struct mini m = {0};
    mini_start(&m, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
                   "only ten..");
    struct qs_qdrant *q = mini_client(&m, NULL);
    struct count_sink s = {0};
    uint64_t size = 12345;
    char sha[65] = "untouched";
    struct qs_error err;
    int rc = qs_qdrant_download_snapshot(q, "c", "c-1-2025-01-28-10-15-02.snapshot", count_sink_fn,
                                         &s, NULL, &size, sha, &err);
    mini_stop(&m);
    cr_assert_eq(rc, QS_ETRANSPORT, "rc %d: %s", rc, err.msg);
    cr_assert_eq(err.code, QS_ETRANSPORT);
    cr_assert_eq(err.retryable, 1);
    cr_assert_not_null(strstr(err.msg, "cut short"), "%s", err.msg);
    cr_assert_eq(size, 12345, "size must not be reported for a failed download");
    cr_assert_str_eq(sha, "untouched");
    qs_buf_free(&s.keep);
    qs_qdrant_free(q);
}

Test(qdrant_wire, chunked_download_cut_is_an_error)
{
    struct mini m = {0};
    mini_start(&m, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   "5\r\nhello\r\n");
    struct qs_qdrant *q = mini_client(&m, NULL);
    struct count_sink s = {0};
    struct qs_error err;
    int rc = qs_qdrant_download_snapshot(q, "c", "n.snapshot", count_sink_fn, &s, NULL, NULL, NULL,
                                         &err);
    mini_stop(&m);
    cr_assert_eq(rc, QS_ETRANSPORT, "rc %d: %s", rc, err.msg);
    qs_buf_free(&s.keep);
    qs_qdrant_free(q);
}

Test(qdrant_wire, compressed_answer_is_refused)
{
    struct mini m = {0};
    mini_start(&m, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n"
                   "Connection: close\r\n\r\nabcd");
    struct qs_qdrant *q = mini_client(&m, NULL);
    struct count_sink s = {0};
    struct qs_error err;
    int rc = qs_qdrant_download_snapshot(q, "c", "n.snapshot", count_sink_fn, &s, NULL, NULL, NULL,
                                         &err);
    mini_stop(&m);
    cr_assert_eq(rc, QS_EPROTO, "rc %d: %s", rc, err.msg);
    cr_assert_eq(s.n, 0);
    qs_buf_free(&s.keep);
    qs_qdrant_free(q);
}

Test(qdrant_wire, text_404_without_content_type)
{
    struct mini m = {0};
    mini_start_answer(&m, "404 Not Found", "", "Not found: Snapshot x.snapshot not found");
    struct qs_qdrant *q = mini_client(&m, NULL);
    struct count_sink s = {0};
    struct qs_error err;
    int rc = qs_qdrant_download_snapshot(q, "c", "x.snapshot", count_sink_fn, &s, NULL, NULL, NULL,
                                         &err);
    mini_stop(&m);
    cr_assert_eq(rc, QS_ENOTFOUND, "%s", err.msg);
    cr_assert_eq(err.http_status, 404);
    cr_assert_eq(err.retryable, 0);
    cr_assert_eq(s.n, 0, "an error body must not reach the sink");
    cr_assert_str_eq(err.msg, "download snapshot 'x.snapshot' of collection 'c': HTTP 404: Not "
                              "found: Snapshot x.snapshot not found");
    qs_buf_free(&s.keep);
    qs_qdrant_free(q);
}

Test(qdrant_wire, upload_request_is_exact_multipart)
{
    struct mini m = {0};
    mini_start_answer(&m, "200 OK", JSON_CT, RESULT_TRUE);
    struct qs_qdrant *q = mini_client(&m, NULL);
    static const char payload[] = "0123456789abcdef0123456789";
    struct mem_source src = {.data = payload, .len = sizeof(payload) - 1, .max_chunk = 7};
    char sum[65];
    qs_sha256_hex(payload, sizeof(payload) - 1, sum);
    struct qs_error err;
    int rc = qs_qdrant_upload_snapshot(q, "tgt", "c-1-2025-01-28-10-15-02.snapshot", mem_source_fn,
                                       &src, (int64_t)src.len, sum, "snapshot", NULL, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    char line[256];
    snprintf(line, sizeof(line),
             "POST /collections/tgt/snapshots/upload?wait=true&priority=snapshot&checksum=%s "
             "HTTP/1.1\r\n",
             sum);
    cr_assert_eq(strncmp(m.req, line, strlen(line)), 0, "%s", m.req);
    cr_assert_null(strcasestr(m.req, "expect:"), "no Expect header by default");
    cr_assert_null(strcasestr(m.req, "transfer-encoding"));
    const char *ct = strcasestr(m.req, "\r\ncontent-type: multipart/form-data; boundary=");
    cr_assert_not_null(ct);
    char boundary[80];
    cr_assert_eq(
        sscanf(ct + 2 + strlen("content-type: multipart/form-data; boundary="), "%79s", boundary),
        1);
    size_t hend = find_head_end(m.req, m.req_len);
    cr_assert_gt(hend, 0);
    char want[1024];
    int wl = snprintf(want, sizeof(want),
                      "--%s\r\nContent-Disposition: form-data; name=\"snapshot\"; "
                      "filename=\"c-1-2025-01-28-10-15-02.snapshot\"\r\nContent-Type: "
                      "application/octet-stream\r\n\r\n%s\r\n--%s--\r\n",
                      boundary, payload, boundary);
    cr_assert_eq(m.req_len - hend, (size_t)wl);
    cr_assert_eq(memcmp(m.req + hend, want, (size_t)wl), 0, "%s", m.req + hend);
    cr_assert_eq(content_length(m.req), wl);
    mini_stop(&m);
    qs_qdrant_free(q);
}

Test(qdrant_wire, upload_unknown_length_is_chunked)
{
    struct mini m = {0};
    mini_start_answer(&m, "200 OK", JSON_CT, RESULT_TRUE);
    struct qs_qdrant *q = mini_client(&m, NULL);
    static const char payload[] = "streamed-without-length";
    struct mem_source src = {.data = payload, .len = sizeof(payload) - 1};
    struct qs_error err;
    int rc = qs_qdrant_upload_snapshot(q, "tgt", "x.snapshot", mem_source_fn, &src, -1, NULL, NULL,
                                       NULL, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_not_null(strstr(m.req, "POST /collections/tgt/snapshots/upload?wait=true "));
    cr_assert_not_null(strcasestr(m.req, "\r\ntransfer-encoding: chunked\r\n"));
    cr_assert_eq(content_length(m.req), -1);
    cr_assert_not_null(strstr(m.req, "streamed-without-length"));
    mini_stop(&m);
    qs_qdrant_free(q);
}

Test(qdrant_wire, upload_source_shorter_or_longer_than_declared)
{
    static const char payload[] = "0123456789";
    for (int longer = 0; longer <= 1; longer++) {
        struct mini m = {0};
        mini_start_answer(&m, "200 OK", JSON_CT, RESULT_TRUE);
        struct qs_qdrant *q = mini_client(&m, NULL);
        struct mem_source src = {.data = payload, .len = 10};
        struct qs_error err;
        int rc = qs_qdrant_upload_snapshot(q, "tgt", "x.snapshot", mem_source_fn, &src,
                                           longer ? 9 : 11, NULL, NULL, NULL, &err);
        mini_stop(&m);
        cr_assert_eq(rc, QS_EPROTO, "longer=%d rc %d: %s", longer, rc, err.msg);
        cr_assert_not_null(strstr(err.msg, "source length differs"), "%s", err.msg);
        qs_qdrant_free(q);
    }
}

Test(qdrant_wire, upload_source_error_is_propagated)
{
    struct mini m = {0};
    mini_start_answer(&m, "200 OK", JSON_CT, RESULT_TRUE);
    struct qs_qdrant *q = mini_client(&m, NULL);
    static const char payload[] = "0123456789";
    struct mem_source src = {
        .data = payload, .len = 10, .max_chunk = 3, .fail_rc = QS_EIO, .fail_at = 6};
    struct qs_error err;
    int rc = qs_qdrant_upload_snapshot(q, "tgt", "x.snapshot", mem_source_fn, &src, 10, NULL, NULL,
                                       NULL, &err);
    mini_stop(&m);
    cr_assert_eq(rc, QS_EIO, "rc %d: %s", rc, err.msg);
    cr_assert_eq(err.retryable, 0);
    qs_qdrant_free(q);
}

Test(qdrant_wire, upload_argument_validation_sends_nothing)
{
    /* Port 9 on loopback: nothing listens; a request would fail with ETRANSPORT. */
    struct qs_qdrant *q = client_for("http://127.0.0.1:9", NULL, 1000, 1000, 1);
    struct mem_source src = {.data = "x", .len = 1};
    struct qs_error err;
    cr_assert_eq(qs_qdrant_upload_snapshot(q, "c", "x.snapshot", mem_source_fn, &src, 1, NULL,
                                           "fastest", NULL, &err),
                 QS_EINVAL);
    cr_assert_eq(qs_qdrant_upload_snapshot(q, "c", "x.snapshot", mem_source_fn, &src, 1, "abc",
                                           NULL, NULL, &err),
                 QS_EINVAL);
    cr_assert_eq(qs_qdrant_upload_snapshot(q, "c", "a\"b.snapshot", mem_source_fn, &src, 1, NULL,
                                           NULL, NULL, &err),
                 QS_EINVAL);
    cr_assert_eq(qs_qdrant_upload_snapshot(q, "c", "../x.snapshot", mem_source_fn, &src, 1, NULL,
                                           NULL, NULL, &err),
                 QS_EINVAL);
    cr_assert_eq(qs_qdrant_upload_snapshot(q, "", "x.snapshot", mem_source_fn, &src, 1, NULL, NULL,
                                           NULL, &err),
                 QS_EINVAL);
    qs_qdrant_free(q);
}

Test(qdrant_wire, connection_refused_is_retryable_transport_error)
{
    int port = qs_test_free_port();
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct qs_qdrant *q = client_for(url, "topsecretkey", 1000, 1000, 1);
    struct qs_error err;
    int rc = qs_qdrant_probe(q, &err);
    cr_assert_eq(rc, QS_ETRANSPORT, "%s", err.msg);
    cr_assert_eq(err.retryable, 1);
    cr_assert_eq(err.http_status, 0);
    cr_assert_null(strstr(err.msg, "topsecretkey"));
    qs_qdrant_free(q);
}

Test(qdrant_wire, request_timeout_is_enforced)
{
    struct mini m = {.never_answer = true};
    mini_start(&m, NULL);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", m.port);
    struct qs_qdrant *q = client_for(url, NULL, 700, 700, 30);
    char **names = NULL;
    size_t n = 0;
    struct qs_error err;
    double t0 = qs_monotonic();
    int rc = qs_qdrant_list_collections(q, &names, &n, &err);
    double dt = qs_monotonic() - t0;
    mini_stop(&m);
    cr_assert_eq(rc, QS_ETRANSPORT, "%s", err.msg);
    cr_assert_eq(err.retryable, 1);
    cr_assert_not_null(strstr(err.msg, "timed out"), "%s", err.msg);
    cr_assert(dt >= 0.6 && dt < 3.0, "took %.2f s", dt);
    qs_qdrant_free(q);
}

Test(qdrant_wire, stalled_download_times_out)
{
    /* Headers promise 1000 bytes, 10 arrive, then silence on an open connection. */
    struct mini m = {.hold_open = true};
    mini_start(&m, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", m.port);
    struct qs_qdrant *q = client_for(url, NULL, 60000, 60000, 1);
    struct count_sink s = {0};
    struct qs_error err;
    double t0 = qs_monotonic();
    int rc = qs_qdrant_download_snapshot(q, "c", "n.snapshot", count_sink_fn, &s, NULL, NULL, NULL,
                                         &err);
    double dt = qs_monotonic() - t0;
    mini_stop(&m);
    cr_assert_eq(rc, QS_ETRANSPORT, "rc %d: %s", rc, err.msg);
    cr_assert_eq(err.retryable, 1);
    cr_assert_not_null(strstr(err.msg, "timed out"), "%s", err.msg);
    cr_assert(dt >= 0.9 && dt < 4.0, "took %.2f s", dt);
    cr_assert_eq(s.n, 10);
    qs_buf_free(&s.keep);
    qs_qdrant_free(q);
}

Test(qdrant_wire, cancel_during_download)
{
    struct mini m = {.hold_open = true};
    mini_start(&m, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
    struct qs_qdrant *q = mini_client(&m, NULL);
    struct qs_cancel cancel = {0};
    struct count_sink s = {.cancel_after_first = &cancel};
    struct qs_error err;
    double t0 = qs_monotonic();
    int rc = qs_qdrant_download_snapshot(q, "c", "n.snapshot", count_sink_fn, &s, &cancel, NULL,
                                         NULL, &err);
    double dt = qs_monotonic() - t0;
    mini_stop(&m);
    cr_assert_eq(rc, QS_ECANCELED, "rc %d: %s", rc, err.msg);
    cr_assert_eq(err.retryable, 0);
    cr_assert(dt < 3.0, "cancel took %.2f s", dt);
    /* Already cancelled: nothing is sent. */
    rc = qs_qdrant_probe(q, &err);
    cr_assert_eq(rc, QS_ETRANSPORT); /* probe takes no cancel; the server is gone */
    rc = qs_qdrant_download_snapshot(q, "c", "n.snapshot", count_sink_fn, &s, &cancel, NULL, NULL,
                                     &err);
    cr_assert_eq(rc, QS_ECANCELED);
    qs_buf_free(&s.keep);
    qs_qdrant_free(q);
}

Test(qdrant_wire, sink_error_is_propagated)
{
    struct mini m = {0};
    mini_start_answer(&m, "200 OK", "", "0123456789");
    struct qs_qdrant *q = mini_client(&m, NULL);
    struct count_sink s = {.fail_after = 1, .fail_rc = QS_EIO};
    struct qs_error err;
    int rc = qs_qdrant_download_snapshot(q, "c", "n.snapshot", count_sink_fn, &s, NULL, NULL, NULL,
                                         &err);
    mini_stop(&m);
    cr_assert_eq(rc, QS_EIO, "rc %d: %s", rc, err.msg);
    cr_assert_eq(err.code, QS_EIO);
    qs_buf_free(&s.keep);
    qs_qdrant_free(q);
}

Test(qdrant_wire, json_error_envelope_and_retryable_statuses)
{
    static const struct {
        const char *status;
        const char *body;
        int code;
        int retryable;
        const char *msg;
    } cases[] = {
        {"500 Internal Server Error",
         "{\"status\":{\"error\":\"Service internal error: disk full\"},\"time\":0.1}", QS_EHTTP, 1,
         "create snapshot of collection 'c': HTTP 500: Service internal error: disk full"},
        {"429 Too Many Requests",
         "{\"status\":{\"error\":\"Rate limiting exceeded: slow down\"},\"time\":0.0}", QS_EHTTP, 1,
         "create snapshot of collection 'c': HTTP 429: Rate limiting exceeded: slow down"},
        {"408 Request Timeout", "{\"status\":{\"error\":\"Timeout: x\"},\"time\":0.0}", QS_EHTTP, 1,
         "create snapshot of collection 'c': HTTP 408: Timeout: x"},
        {"409 Conflict", "{\"status\":{\"error\":\"Wrong input: exists\"},\"time\":0.0}", QS_EHTTP,
         0, "create snapshot of collection 'c': HTTP 409: Wrong input: exists"},
        {"503 Service Unavailable", "", QS_EHTTP, 1,
         "create snapshot of collection 'c': HTTP 503: (empty body)"},
        {"400 Bad Request", "line one\nline two\n", QS_EHTTP, 0,
         "create snapshot of collection 'c': HTTP 400: line one line two"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mini m = {0};
        mini_start_answer(&m, cases[i].status, JSON_CT, cases[i].body);
        struct qs_qdrant *q = mini_client(&m, NULL);
        struct qs_snapshot_info si;
        struct qs_error err;
        int rc = qs_qdrant_create_snapshot(q, "c", &si, &err);
        cr_assert_not_null(strstr(m.req, "POST /collections/c/snapshots?wait=true HTTP/1.1"));
        mini_stop(&m);
        cr_assert_eq(rc, cases[i].code, "%s", cases[i].status);
        cr_assert_eq(err.retryable, cases[i].retryable, "%s", cases[i].status);
        cr_assert_eq(err.http_status, strtol(cases[i].status, NULL, 10));
        cr_assert_str_eq(err.msg, cases[i].msg);
        qs_qdrant_free(q);
    }
}

Test(qdrant_wire, long_server_message_is_truncated)
{
    char body[3000];
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    struct mini m = {0};
    mini_start_answer(&m, "500 Internal Server Error", "", body);
    struct qs_qdrant *q = mini_client(&m, NULL);
    struct qs_error err;
    int rc = qs_qdrant_probe(q, &err);
    mini_stop(&m);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_lt(strlen(err.msg), 400);
    cr_assert_not_null(strstr(err.msg, "xxx..."));
    qs_qdrant_free(q);
}

Test(qdrant_wire, server_echoing_the_key_is_redacted)
{
    struct mini m = {0};
    mini_start_answer(&m, "401 Unauthorized", "", "Invalid API key or JWT: the-secret-key-123");
    struct qs_qdrant *q = mini_client(&m, "the-secret-key-123");
    char **names = NULL;
    size_t n = 0;
    struct qs_error err;
    int rc = qs_qdrant_list_collections(q, &names, &n, &err);
    mini_stop(&m);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_eq(err.http_status, 401);
    cr_assert_null(strstr(err.msg, "the-secret-key-123"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "Invalid API key or JWT: [REDACTED]"), "%s", err.msg);
    qs_qdrant_free(q);
}

Test(qdrant_wire, malformed_success_bodies)
{
    static const char *bodies[] = {
        "not json",
        "{\"status\":\"ok\"}",
        "{\"result\":{\"name\":\"\",\"size\":1},\"status\":\"ok\"}",
        "{\"result\":{\"name\":\"n\",\"size\":-1},\"status\":\"ok\"}",
        "{\"result\":{\"name\":\"n\",\"size\":1,\"checksum\":\"zz\"},\"status\":\"ok\"}",
        "{\"result\":{\"name\":\"n\",\"size\":1,\"creation_time\":\"later\"}}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct mini m = {0};
        mini_start_answer(&m, "200 OK", JSON_CT, bodies[i]);
        struct qs_qdrant *q = mini_client(&m, NULL);
        struct qs_snapshot_info si;
        struct qs_error err;
        int rc = qs_qdrant_create_snapshot(q, NULL, &si, &err);
        cr_assert_not_null(strstr(m.req, "POST /snapshots?wait=true HTTP/1.1"));
        mini_stop(&m);
        cr_assert_eq(rc, QS_EPROTO, "body %s: rc %d", bodies[i], rc);
        cr_assert_eq(err.retryable, 0);
        qs_qdrant_free(q);
    }
}

Test(qdrant_wire, snapshot_description_parsing)
{
    struct mini m = {0};
    mini_start_answer(
        &m, "200 OK", JSON_CT,
        "{\"result\":[{\"name\":\"a-b-7-2025-01-28-10-15-02.snapshot\",\"creation_time\":"
        "\"2025-01-28T10:15:03\",\"size\":292734464,\"checksum\":\"F92AA25C"
        "0000000000000000000000000000000000000000000000000000000A\"},"
        "{\"name\":\"up.snapshot\",\"creation_time\":null,\"size\":0}],"
        "\"status\":\"ok\",\"time\":0.001}");
    struct qs_qdrant *q = mini_client(&m, NULL);
    struct qs_snapshot_info *v = NULL;
    size_t n = 0;
    struct qs_error err;
    int rc = qs_qdrant_list_snapshots(q, "a-b", &v, &n, &err);
    cr_assert_not_null(strstr(m.req, "GET /collections/a-b/snapshots HTTP/1.1"));
    mini_stop(&m);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0].name, "a-b-7-2025-01-28-10-15-02.snapshot");
    cr_assert_eq(v[0].creation_time, qs_timegm(2025, 1, 28, 10, 15, 3));
    cr_assert_eq(v[0].size, 292734464);
    cr_assert_str_eq(v[0].checksum,
                     "f92aa25c0000000000000000000000000000000000000000000000000000000a");
    cr_assert_eq(v[1].creation_time, -1);
    cr_assert_str_eq(v[1].checksum, "");
    free(v);
    qs_qdrant_free(q);
}

Test(qdrant_wire, collection_info_and_version)
{
    struct mini m = {0};
    mini_start_answer(
        &m, "200 OK", JSON_CT,
        "{\"result\":{\"status\":\"green\",\"optimizer_status\":\"ok\",\"points_count\":"
        "1234,\"config\":{\"params\":{\"vectors\":{\"size\":1536,\"distance\":"
        "\"Cosine\"},\"shard_number\":2}}},\"status\":\"ok\",\"time\":0.0}");
    struct qs_qdrant *q = mini_client(&m, NULL);
    struct qs_collection_info ci;
    struct qs_error err;
    int rc = qs_qdrant_collection_info(q, "agent-1", &ci, &err);
    mini_stop(&m);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(ci.points_count, 1234);
    cr_assert_str_eq(ci.status, "green");
    cr_assert_eq(ci.shard_number, 2);
    cr_assert_str_eq(ci.vectors_json, "{\"size\":1536,\"distance\":\"Cosine\"}");
    qs_collection_info_deinit(&ci);
    cr_assert_null(ci.vectors_json);
    qs_qdrant_free(q);

    struct mini m2 = {0};
    mini_start_answer(&m2, "200 OK", JSON_CT,
                      "{\"title\":\"qdrant - vector search engine\",\"version\":\"1.13.2\","
                      "\"commit\":\"abc\"}");
    q = mini_client(&m2, NULL);
    char ver[32];
    rc = qs_qdrant_version(q, ver, sizeof(ver), &err);
    cr_assert_not_null(strstr(m2.req, "GET / HTTP/1.1"));
    mini_stop(&m2);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_str_eq(ver, "1.13.2");
    qs_qdrant_free(q);
}

Test(qdrant_wire, bad_options)
{
    struct qs_qdrant *q = NULL;
    struct qs_error err;
    struct qs_qdrant_opts o = {.url = "ftp://x"};
    cr_assert_eq(qs_qdrant_new(&o, &q, &err), QS_ECONFIG);
    cr_assert_null(q);
    o.url = "http://";
    cr_assert_eq(qs_qdrant_new(&o, &q, &err), QS_ECONFIG);
    o.url = "http://h:1";
    o.api_key = "bad\nkey-secret";
    cr_assert_eq(qs_qdrant_new(&o, &q, &err), QS_ECONFIG);
    cr_assert_null(strstr(err.msg, "key-secret"));
    o.api_key = NULL;
    o.url = NULL;
    cr_assert_eq(qs_qdrant_new(&o, &q, &err), 0);
    cr_assert_str_eq(qs_qdrant_url(q), "http://localhost:6333");
    qs_qdrant_free(q);
    qs_qdrant_free(NULL);
}
