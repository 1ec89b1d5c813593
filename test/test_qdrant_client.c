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

Test(qdrant_wire, key_inside_the_redaction_marker_terminates)
{
    struct mini m = {0};
    mini_start_answer(&m, "401 Unauthorized", "", "bad key REDACTED here");
    struct qs_qdrant *q = mini_client(&m, "REDACTED");
    struct qs_error err;
    int rc = qs_qdrant_delete_collection(q, "c", &err);
    cr_assert_not_null(strstr(m.req, "DELETE /collections/c HTTP/1.1"));
    mini_stop(&m);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_str_eq(err.msg, "delete collection 'c': HTTP 401: bad key [REDACTED] here");
    qs_qdrant_free(q);
}

Test(qdrant_wire, oversized_json_answer_is_a_protocol_error)
{
    size_t n = (16u << 20) + 100;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[n] = '\0';
    static const char head[] = "{\"result\":{\"collections\":[]},";
    memcpy(big, head, sizeof(head) - 1);
    big[n - 1] = '}';
    struct mini m = {0};
    mini_start_answer(&m, "200 OK", JSON_CT, big);
    struct qs_qdrant *q = mini_client(&m, NULL);
    char **names = NULL;
    size_t cnt = 0;
    struct qs_error err;
    int rc = qs_qdrant_list_collections(q, &names, &cnt, &err);
    mini_stop(&m);
    free(big);
    cr_assert_eq(rc, QS_EPROTO, "rc %d: %s", rc, err.msg);
    cr_assert_not_null(strstr(err.msg, "answer larger than"), "%s", err.msg);
    cr_assert_null(names);
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

/* ---- against the Qdrant stand-in ----------------------------------------- */

static struct qs_test_standin S;
static struct qs_qdrant *Q;

static void standin_up(const char *const *args)
{
    cr_assert_eq(qs_test_standin_start(&S, args), 0, "stand-in did not start");
}

static void setup_plain(void)
{
    standin_up(NULL);
    Q = client_for(S.url, NULL, 10000, 120000, 10);
}

static void setup_auth(void)
{
    static const char *const args[] = {"--api-key", "rw-key-0123456789", "--read-only-api-key",
                                       "ro-key-0123456789", NULL};
    standin_up(args);
    Q = client_for(S.url, "rw-key-0123456789", 10000, 120000, 10);
}

static void teardown(void)
{
    qs_qdrant_free(Q);
    Q = NULL;
    qs_test_standin_stop(&S);
}

static long ctl(const char *method, const char *path, const char *json, char **body)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", S.url, path);
    static const char *const hdrs[] = {"Content-Type: application/json", NULL};
    struct qs_test_resp r;
    int rc = qs_test_http(method, url, hdrs, json, json ? strlen(json) : 0, &r);
    cr_assert_eq(rc, 0, "control request %s %s failed", method, path);
    long st = r.status;
    if (body != NULL)
        *body = strdup(r.body);
    qs_test_resp_free(&r);
    return st;
}

static void add_collection(const char *name, long points, int dim)
{
    char j[256];
    snprintf(j, sizeof(j), "{\"name\":\"%s\",\"points\":%ld,\"dim\":%d}", name, points, dim);
    cr_assert_eq(ctl("POST", "/__standin/collections", j, NULL), 200);
}

static void set_faults(const char *json)
{
    cr_assert_eq(ctl("POST", "/__standin/faults", json, NULL), 200, "faults %s", json);
}

static cJSON *standin_state(void)
{
    char *b = NULL;
    cr_assert_eq(ctl("GET", "/__standin/state", NULL, &b), 200);
    cJSON *j = cJSON_Parse(b);
    free(b);
    cr_assert_not_null(j);
    return j;
}

/* Read from the raw text: peer ids exceed 2^53, cJSON numbers are doubles. */
static uint64_t standin_peer_id(void)
{
    char *b = NULL;
    cr_assert_eq(ctl("GET", "/__standin/state", NULL, &b), 200);
    const char *p = strstr(b, "\"peer_id\":");
    cr_assert_not_null(p);
    p += strlen("\"peer_id\":");
    while (*p == ' ')
        p++;
    uint64_t v = strtoull(p, NULL, 10);
    free(b);
    return v;
}

static int buf_sink(const void *data, size_t len, void *ud)
{
    return qs_buf_append(ud, data, len);
}

/* Creates a snapshot of c, asserting success. */
static struct qs_snapshot_info must_create(const char *c)
{
    struct qs_snapshot_info si;
    struct qs_error err;
    int rc = qs_qdrant_create_snapshot(Q, c, &si, &err);
    cr_assert_eq(rc, 0, "create: %s", err.msg);
    return si;
}

TestSuite(qdrant_standin, .init = setup_plain, .fini = teardown, .timeout = 300);
TestSuite(qdrant_auth, .init = setup_auth, .fini = teardown, .timeout = 120);

Test(qdrant_standin, list_collections_and_info)
{
    add_collection("a-b-c", 50, 4);
    add_collection("solo", 3, 8);
    char **names = NULL;
    size_t n = 0;
    struct qs_error err;
    cr_assert_eq(qs_qdrant_list_collections(Q, &names, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    int seen = 0;
    for (size_t i = 0; i < n; i++)
        seen |= (strcmp(names[i], "a-b-c") == 0) | (strcmp(names[i], "solo") == 0) << 1;
    cr_assert_eq(seen, 3);
    qs_qdrant_strv_free(names, n);

    struct qs_collection_info ci;
    cr_assert_eq(qs_qdrant_collection_info(Q, "a-b-c", &ci, &err), 0, "%s", err.msg);
    cr_assert_eq(ci.points_count, 50);
    cr_assert_str_eq(ci.status, "green");
    cr_assert_eq(ci.shard_number, 1);
    cr_assert_str_eq(ci.vectors_json, "{\"size\":4,\"distance\":\"Cosine\"}");
    qs_collection_info_deinit(&ci);

    /* 404 with a JSON body. */
    int rc = qs_qdrant_collection_info(Q, "nope", &ci, &err);
    cr_assert_eq(rc, QS_ENOTFOUND);
    cr_assert_eq(err.code, QS_ENOTFOUND);
    cr_assert_eq(err.http_status, 404);
    cr_assert_eq(err.retryable, 0);
    cr_assert_str_eq(
        err.msg, "get collection 'nope': HTTP 404: Not found: Collection `nope` doesn't exist!");
    cr_assert_null(ci.vectors_json);
}

Test(qdrant_standin, snapshot_lifecycle)
{
    add_collection("a-b-c", 200, 16);
    int64_t before = qs_clock_now();
    struct qs_snapshot_info si = must_create("a-b-c");
    char coll[256];
    uint64_t peer = 0;
    int64_t ts = 0;
    cr_assert_eq(qs_snapshot_name_parse(si.name, coll, sizeof(coll), &peer, &ts), 0, "%s", si.name);
    cr_assert_str_eq(coll, "a-b-c");
    cr_assert_eq(peer, standin_peer_id());
    cr_assert(ts >= before - 2 && ts <= qs_clock_now() + 2, "ts %lld", (long long)ts);
    cr_assert(si.creation_time >= before - 2, "creation_time %lld", (long long)si.creation_time);
    cr_assert_gt(si.size, 0);
    cr_assert(qs_is_sha256_hex(si.checksum));

    struct qs_snapshot_info *v = NULL;
    size_t n = 0;
    struct qs_error err;
    cr_assert_eq(qs_qdrant_list_snapshots(Q, "a-b-c", &v, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0].name, si.name);
    cr_assert_eq(v[0].size, si.size);
    cr_assert_str_eq(v[0].checksum, si.checksum);
    free(v);

    struct qs_buf data;
    qs_buf_init(&data);
    uint64_t size = 0;
    char sha[65] = "";
    cr_assert_eq(
        qs_qdrant_download_snapshot(Q, "a-b-c", si.name, buf_sink, &data, NULL, &size, sha, &err),
        0, "%s", err.msg);
    cr_assert_eq(size, si.size);
    cr_assert_eq(data.len, si.size);
    cr_assert_str_eq(sha, si.checksum);
    char again[65];
    qs_sha256_hex(data.data, data.len, again);
    cr_assert_str_eq(again, si.checksum);
    /* It is an uncompressed tar: "ustar" magic at offset 257. */
    cr_assert_eq(memcmp(data.data + 257, "ustar", 5), 0);
    qs_buf_free(&data);

    cr_assert_eq(qs_qdrant_delete_snapshot(Q, "a-b-c", si.name, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_qdrant_list_snapshots(Q, "a-b-c", &v, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 0);
    free(v);

    /* Deleting again: 404 with a JSON body. */
    char want[600];
    int rc = qs_qdrant_delete_snapshot(Q, "a-b-c", si.name, &err);
    cr_assert_eq(rc, QS_ENOTFOUND, "%s", err.msg);
    cr_assert_eq(err.http_status, 404);
    snprintf(want, sizeof(want),
             "delete snapshot '%s' of collection 'a-b-c': HTTP 404: Not found: Snapshot %s not "
             "found",
             si.name, si.name);
    cr_assert_str_eq(err.msg, want);

    /* Downloading it: 404 with a text/plain body. */
    struct count_sink cs = {0};
    rc = qs_qdrant_download_snapshot(Q, "a-b-c", si.name, count_sink_fn, &cs, NULL, NULL, NULL,
                                     &err);
    cr_assert_eq(rc, QS_ENOTFOUND, "%s", err.msg);
    cr_assert_eq(err.http_status, 404);
    cr_assert_eq(err.retryable, 0);
    cr_assert_eq(cs.n, 0, "the error body must not reach the sink");
    snprintf(want, sizeof(want),
             "download snapshot '%s' of collection 'a-b-c': HTTP 404: Not found: Snapshot %s not "
             "found",
             si.name, si.name);
    cr_assert_str_eq(err.msg, want);
    qs_buf_free(&cs.keep);
}

Test(qdrant_standin, missing_collection_errors)
{
    struct qs_snapshot_info si;
    struct qs_error err;
    int rc = qs_qdrant_create_snapshot(Q, "c", &si, &err);
    cr_assert_eq(rc, QS_ENOTFOUND);
    cr_assert_str_eq(err.msg, "create snapshot of collection 'c': HTTP 404: Not found: "
                              "Collection `c` doesn't exist!");
    struct qs_snapshot_info *v = NULL;
    size_t n = 0;
    rc = qs_qdrant_list_snapshots(Q, "c", &v, &n, &err);
    cr_assert_eq(rc, QS_ENOTFOUND);
    cr_assert_null(v);
    struct count_sink cs = {0};
    rc = qs_qdrant_download_snapshot(Q, "c", "c-1-2025-01-28-10-15-02.snapshot", count_sink_fn, &cs,
                                     NULL, NULL, NULL, &err);
    cr_assert_eq(rc, QS_ENOTFOUND);
    cr_assert_str_eq(err.msg, "download snapshot 'c-1-2025-01-28-10-15-02.snapshot' of "
                              "collection 'c': HTTP 404: Not found: Collection `c` doesn't exist!");
    qs_buf_free(&cs.keep);
}

Test(qdrant_standin, names_needing_percent_encoding)
{
    add_collection("agent memory+x", 10, 4);
    struct qs_snapshot_info si = must_create("agent memory+x");
    char coll[256];
    cr_assert_eq(qs_snapshot_name_parse(si.name, coll, sizeof(coll), NULL, NULL), 0);
    cr_assert_str_eq(coll, "agent memory+x");
    struct count_sink cs = {0};
    char sha[65];
    struct qs_error err;
    cr_assert_eq(qs_qdrant_download_snapshot(Q, "agent memory+x", si.name, count_sink_fn, &cs, NULL,
                                             NULL, sha, &err),
                 0, "%s", err.msg);
    cr_assert_str_eq(sha, si.checksum);
    cr_assert_eq(qs_qdrant_delete_snapshot(Q, "agent memory+x", si.name, &err), 0, "%s", err.msg);
    qs_buf_free(&cs.keep);
}

Test(qdrant_standin, full_snapshots)
{
    add_collection("one", 20, 4);
    add_collection("two-2", 20, 4);
    struct qs_snapshot_info si;
    struct qs_error err;
    cr_assert_eq(qs_qdrant_create_snapshot(Q, NULL, &si, &err), 0, "%s", err.msg);
    char coll[64] = "x";
    uint64_t peer = 5;
    cr_assert_eq(qs_snapshot_name_parse(si.name, coll, sizeof(coll), &peer, NULL), 0, "%s",
                 si.name);
    cr_assert_str_eq(coll, "");
    cr_assert_eq(peer, 0);
    cr_assert_eq(strncmp(si.name, "full-snapshot-", 14), 0);
    struct qs_snapshot_info *v = NULL;
    size_t n = 0;
    cr_assert_eq(qs_qdrant_list_snapshots(Q, NULL, &v, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0].name, si.name);
    free(v);
    struct count_sink cs = {0};
    uint64_t size = 0;
    char sha[65];
    cr_assert_eq(
        qs_qdrant_download_snapshot(Q, NULL, si.name, count_sink_fn, &cs, NULL, &size, sha, &err),
        0, "%s", err.msg);
    cr_assert_eq(size, si.size);
    cr_assert_str_eq(sha, si.checksum);
    cr_assert_eq(qs_qdrant_delete_snapshot(Q, NULL, si.name, &err), 0, "%s", err.msg);
    cr_assert_eq(qs_qdrant_list_snapshots(Q, NULL, &v, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 0);
    free(v);
    cr_assert_eq(qs_qdrant_delete_snapshot(Q, NULL, si.name, &err), QS_ENOTFOUND);
    qs_buf_free(&cs.keep);
}

/* Downloads a fresh snapshot of c into *data. */
static struct qs_snapshot_info snapshot_bytes(const char *c, struct qs_buf *data)
{
    struct qs_snapshot_info si = must_create(c);
    struct qs_error err;
    qs_buf_init(data);
    cr_assert_eq(qs_qdrant_download_snapshot(Q, c, si.name, buf_sink, data, NULL, NULL, NULL, &err),
                 0, "%s", err.msg);
    return si;
}

static const cJSON *last_upload(cJSON *st)
{
    const cJSON *ups = cJSON_GetObjectItemCaseSensitive(st, "uploads");
    int n = cJSON_GetArraySize(ups);
    cr_assert_gt(n, 0);
    return cJSON_GetArrayItem(ups, n - 1);
}

static uint64_t standin_points(cJSON *st, const char *c)
{
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(st, "collections");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(cs, c);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "points_count");
    cr_assert(cJSON_IsNumber(p), "no collection %s in the stand-in", c);
    return (uint64_t)p->valuedouble;
}

Test(qdrant_standin, upload_restores_known_length_chunked_and_expect)
{
    add_collection("src", 300, 8);
    struct qs_buf data;
    struct qs_snapshot_info si = snapshot_bytes("src", &data);
    static const char *const targets[] = {"restored", "restored-chunked", "restored-expect"};
    for (int i = 0; i < 3; i++) {
        struct qs_qdrant *q = Q;
        if (i == 2) {
            struct qs_qdrant_opts o = {.url = S.url, .expect_100 = 1};
            struct qs_error e2;
            cr_assert_eq(qs_qdrant_new(&o, &q, &e2), 0);
        }
        struct mem_source src = {.data = data.data, .len = data.len};
        struct qs_error err;
        double t0 = qs_monotonic();
        int rc = qs_qdrant_upload_snapshot(q, targets[i], si.name, mem_source_fn, &src,
                                           i == 1 ? -1 : (int64_t)data.len, si.checksum, "snapshot",
                                           NULL, &err);
        double dt = qs_monotonic() - t0;
        if (q != Q)
            qs_qdrant_free(q);
        cr_assert_eq(rc, 0, "%s: %s", targets[i], err.msg);
        fprintf(stderr, "upload %s (%zu bytes): %.3f s\n", targets[i], data.len, dt);
        cr_assert_lt(dt, 0.9, "%s took %.2f s (Expect delay?)", targets[i], dt);

        cJSON *st = standin_state();
        const cJSON *up = last_upload(st);
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(up, "collection")->valuestring,
                         targets[i]);
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(up, "filename")->valuestring, si.name);
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(up, "sha256")->valuestring, si.checksum);
        cr_assert_eq((size_t)cJSON_GetObjectItemCaseSensitive(up, "size")->valuedouble, data.len);
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(up, "priority")->valuestring, "snapshot");
        cr_assert_eq(standin_points(st, targets[i]), 300);
        cJSON_Delete(st);

        struct qs_collection_info ci;
        cr_assert_eq(qs_qdrant_collection_info(Q, targets[i], &ci, &err), 0, "%s", err.msg);
        cr_assert_eq(ci.points_count, 300);
        qs_collection_info_deinit(&ci);
    }
    /* Restore drills clean up their scratch collection. */
    struct qs_error err;
    cr_assert_eq(qs_qdrant_delete_collection(Q, "restored-expect", &err), 0, "%s", err.msg);
    struct qs_collection_info ci;
    cr_assert_eq(qs_qdrant_collection_info(Q, "restored-expect", &ci, &err), QS_ENOTFOUND);
    qs_buf_free(&data);
}

Test(qdrant_standin, upload_checksum_mismatch_carries_qdrant_message)
{
    add_collection("src", 50, 4);
    struct qs_buf data;
    struct qs_snapshot_info si = snapshot_bytes("src", &data);
    char wrong[65];
    qs_sha256_hex("something else", 14, wrong);
    struct mem_source src = {.data = data.data, .len = data.len};
    struct qs_error err;
    int rc = qs_qdrant_upload_snapshot(Q, "dst", si.name, mem_source_fn, &src, (int64_t)data.len,
                                       wrong, "snapshot", NULL, &err);
    cr_assert_eq(rc, QS_EHTTP, "%s", err.msg);
    cr_assert_eq(err.http_status, 400);
    cr_assert_eq(err.retryable, 0);
    char want[600];
    snprintf(want, sizeof(want),
             "upload snapshot '%s' to collection 'dst': HTTP 400: Checksum mismatch: expected %s, "
             "actual %s",
             si.name, si.checksum, wrong);
    cr_assert_str_eq(err.msg, want);
    qs_buf_free(&data);
}

Test(qdrant_standin, upload_fault_statuses)
{
    add_collection("src", 50, 4);
    struct qs_buf data;
    struct qs_snapshot_info si = snapshot_bytes("src", &data);
    static const struct {
        const char *fault;
        long status;
        int retryable;
        const char *msg;
    } cases[] = {
        {"{\"fail_uploads\":1,\"upload_status\":500}", 500, 1,
         "Service internal error: Failed to restore snapshot (injected fault)"},
        {"{\"fail_uploads\":1,\"upload_status\":400}", 400, 0,
         "Wrong input: Snapshot is not compatible with existing collection"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_faults(cases[i].fault);
        struct mem_source src = {.data = data.data, .len = data.len};
        struct qs_error err;
        int rc = qs_qdrant_upload_snapshot(Q, "dst", si.name, mem_source_fn, &src,
                                           (int64_t)data.len, si.checksum, "snapshot", NULL, &err);
        cr_assert_eq(rc, QS_EHTTP, "%s", err.msg);
        cr_assert_eq(err.http_status, cases[i].status);
        cr_assert_eq(err.retryable, cases[i].retryable);
        cr_assert_not_null(strstr(err.msg, cases[i].msg), "%s", err.msg);
    }
    qs_buf_free(&data);
}

Test(qdrant_standin, create_failure_is_retryable_500)
{
    add_collection("c", 10, 4);
    set_faults("{\"fail_creates\":1}");
    struct qs_snapshot_info si;
    struct qs_error err;
    int rc = qs_qdrant_create_snapshot(Q, "c", &si, &err);
    cr_assert_eq(rc, QS_EHTTP, "%s", err.msg);
    cr_assert_eq(err.http_status, 500);
    cr_assert_eq(err.retryable, 1);
    cr_assert_not_null(strstr(err.msg, "create snapshot of collection 'c': HTTP 500: Service "
                                       "internal error: failed to store snapshot archive"),
                       "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "No space left on device"), "%s", err.msg);
    /* The fault was one-shot. */
    sleep(1); /* never two creates of one collection in the same second */
    must_create("c");
}

Test(qdrant_standin, slow_create_times_out_within_configured_time)
{
    add_collection("c", 10, 4);
    set_faults("{\"create_delay_s\":4}");
    struct qs_qdrant *q = client_for(S.url, NULL, 10000, 1000, 10);
    struct qs_snapshot_info si;
    struct qs_error err;
    double t0 = qs_monotonic();
    int rc = qs_qdrant_create_snapshot(q, "c", &si, &err);
    double dt = qs_monotonic() - t0;
    qs_qdrant_free(q);
    cr_assert_eq(rc, QS_ETRANSPORT, "%s", err.msg);
    cr_assert_eq(err.retryable, 1);
    cr_assert_not_null(strstr(err.msg, "create snapshot of collection 'c': timed out"), "%s",
                       err.msg);
    cr_assert(dt >= 0.9 && dt < 3.0, "took %.2f s", dt);
}

Test(qdrant_standin, stalled_server_times_out_within_configured_time)
{
    set_faults("{\"stall_s\":5}");
    struct qs_qdrant *q = client_for(S.url, NULL, 800, 800, 10);
    char **names = NULL;
    size_t n = 0;
    struct qs_error err;
    double t0 = qs_monotonic();
    int rc = qs_qdrant_list_collections(q, &names, &n, &err);
    double dt = qs_monotonic() - t0;
    qs_qdrant_free(q);
    cr_assert_eq(rc, QS_ETRANSPORT, "%s", err.msg);
    cr_assert_eq(err.retryable, 1);
    cr_assert(dt >= 0.7 && dt < 3.0, "took %.2f s", dt);
    cr_assert_eq(ctl("DELETE", "/__standin/faults", NULL, NULL), 200);
}

Test(qdrant_standin, cut_download_is_an_error)
{
    add_collection("c", 500, 16);
    struct qs_snapshot_info si = must_create("c");
    set_faults("{\"cut_download_after\":10000}");
    struct count_sink cs = {0};
    uint64_t size = 7;
    char sha[65] = "";
    struct qs_error err;
    int rc =
        qs_qdrant_download_snapshot(Q, "c", si.name, count_sink_fn, &cs, NULL, &size, sha, &err);
    cr_assert(rc == QS_ETRANSPORT || rc == QS_EPROTO, "rc %d (%s): %s", rc, qs_strerror(rc),
              err.msg);
    cr_assert_eq(err.retryable, rc == QS_ETRANSPORT);
    cr_assert_eq(size, 7);
    cr_assert_str_eq(sha, "");
    cr_assert_leq(cs.n, 10000);
    /* The next download (fault consumed) is complete. */
    cs.n = 0;
    cr_assert_eq(
        qs_qdrant_download_snapshot(Q, "c", si.name, count_sink_fn, &cs, NULL, &size, sha, &err), 0,
        "%s", err.msg);
    cr_assert_eq(size, si.size);
    cr_assert_str_eq(sha, si.checksum);
    qs_buf_free(&cs.keep);
}

Test(qdrant_standin, flipped_byte_changes_the_hash)
{
    add_collection("c", 100, 8);
    struct qs_snapshot_info si = must_create("c");
    set_faults("{\"flip_byte\":true}");
    struct count_sink cs = {0};
    uint64_t size = 0;
    char sha[65] = "";
    struct qs_error err;
    cr_assert_eq(
        qs_qdrant_download_snapshot(Q, "c", si.name, count_sink_fn, &cs, NULL, &size, sha, &err), 0,
        "%s", err.msg);
    cr_assert_eq(size, si.size);
    cr_assert(strcmp(sha, si.checksum) != 0, "the corruption must show in the SHA-256");
    qs_buf_free(&cs.keep);
}

Test(qdrant_standin, readyz_and_version)
{
    struct qs_error err;
    cr_assert_eq(qs_qdrant_probe(Q, &err), 0, "%s", err.msg);
    char ver[32];
    cr_assert_eq(qs_qdrant_version(Q, ver, sizeof(ver), &err), 0, "%s", err.msg);
    cr_assert_str_eq(ver, "1.13.2");
    char tiny[3];
    cr_assert_eq(qs_qdrant_version(Q, tiny, sizeof(tiny), &err), QS_ETOOBIG);
    set_faults("{\"readyz_503\":true}");
    int rc = qs_qdrant_probe(Q, &err);
    cr_assert_eq(rc, QS_EHTTP, "%s", err.msg);
    cr_assert_eq(err.http_status, 503);
    cr_assert_eq(err.retryable, 1);
    cr_assert_not_null(strstr(err.msg, "HTTP 503: some shards are not ready"), "%s", err.msg);
    cr_assert_eq(ctl("DELETE", "/__standin/faults", NULL, NULL), 200);
    cr_assert_eq(qs_qdrant_probe(Q, &err), 0, "%s", err.msg);
}

Test(qdrant_standin, download_300_mib_hashes_to_checksum)
{
    cr_assert_eq(ctl("POST", "/__standin/collections",
                     "{\"name\":\"big\",\"size_mib\":300,\"dim\":1536}", NULL),
                 200);
    struct qs_snapshot_info si = must_create("big");
    cr_assert_geq(si.size, 295ull << 20, "snapshot is only %llu bytes",
                  (unsigned long long)si.size);
    struct count_sink cs = {0};
    uint64_t size = 0;
    char sha[65] = "";
    struct qs_error err;
    double t0 = qs_monotonic();
    int rc =
        qs_qdrant_download_snapshot(Q, "big", si.name, count_sink_fn, &cs, NULL, &size, sha, &err);
    double dt = qs_monotonic() - t0;
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(size, si.size);
    cr_assert_eq(cs.n, si.size);
    cr_assert_str_eq(sha, si.checksum);
    fprintf(stderr, "downloaded %llu bytes in %.2f s: %.0f MiB/s (SHA-256 while streaming)\n",
            (unsigned long long)size, dt, (double)size / 1048576.0 / dt);
    qs_buf_free(&cs.keep);
}

/* ---- authentication ------------------------------------------------------- */

Test(qdrant_auth, key_is_sent_and_required)
{
    add_collection("c", 10, 4);
    char **names = NULL;
    size_t n = 0;
    struct qs_error err;
    cr_assert_eq(qs_qdrant_list_collections(Q, &names, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    qs_qdrant_strv_free(names, n);

    struct qs_qdrant *anon = client_for(S.url, NULL, 5000, 5000, 5);
    int rc = qs_qdrant_list_collections(anon, &names, &n, &err);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_eq(err.http_status, 401);
    cr_assert_eq(err.retryable, 0);
    cr_assert_str_eq(err.msg, "list collections: HTTP 401: Must provide an API key or an "
                              "Authorization bearer token");
    /* The probes are whitelisted. */
    cr_assert_eq(qs_qdrant_probe(anon, &err), 0, "%s", err.msg);
    char ver[32];
    cr_assert_eq(qs_qdrant_version(anon, ver, sizeof(ver), &err), 0, "%s", err.msg);
    qs_qdrant_free(anon);

    struct qs_qdrant *wrong = client_for(S.url, "wrong-key-987654", 5000, 5000, 5);
    struct qs_snapshot_info si;
    rc = qs_qdrant_create_snapshot(wrong, "c", &si, &err);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_eq(err.http_status, 401);
    cr_assert_str_eq(err.msg, "create snapshot of collection 'c': HTTP 401: Invalid API key or "
                              "JWT");
    cr_assert_null(strstr(err.msg, "wrong-key-987654"));
    qs_qdrant_free(wrong);
}

Test(qdrant_auth, upload_with_wrong_key_reports_401)
{
    add_collection("c", 40, 4);
    struct qs_buf data;
    struct qs_snapshot_info si = snapshot_bytes("c", &data);
    struct qs_qdrant *wrong = client_for(S.url, "wrong-key-987654", 5000, 5000, 5);
    struct mem_source src = {.data = data.data, .len = data.len};
    struct qs_error err;
    int rc = qs_qdrant_upload_snapshot(wrong, "c2", si.name, mem_source_fn, &src, (int64_t)data.len,
                                       si.checksum, "snapshot", NULL, &err);
    qs_qdrant_free(wrong);
    cr_assert_eq(rc, QS_EHTTP, "rc %d: %s", rc, err.msg);
    cr_assert_eq(err.http_status, 401);
    cr_assert_eq(err.retryable, 0);
    cr_assert_not_null(strstr(err.msg, "HTTP 401: Invalid API key or JWT"), "%s", err.msg);
    qs_buf_free(&data);
}

Test(qdrant_auth, read_only_key_reads_but_cannot_write)
{
    add_collection("c", 40, 4);
    struct qs_snapshot_info si = must_create("c");
    struct qs_qdrant *ro = client_for(S.url, "ro-key-0123456789", 5000, 5000, 5);
    struct qs_error err;
    struct qs_snapshot_info *v = NULL;
    size_t n = 0;
    cr_assert_eq(qs_qdrant_list_snapshots(ro, "c", &v, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    free(v);
    struct qs_buf data;
    qs_buf_init(&data);
    char sha[65];
    cr_assert_eq(
        qs_qdrant_download_snapshot(ro, "c", si.name, buf_sink, &data, NULL, NULL, sha, &err), 0,
        "%s", err.msg);
    cr_assert_str_eq(sha, si.checksum);

    static const char forbidden[] = "HTTP 403: Forbidden: Global manage access is required";
    struct qs_snapshot_info si2;
    int rc = qs_qdrant_create_snapshot(ro, "c", &si2, &err);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_eq(err.http_status, 403);
    cr_assert_eq(err.retryable, 0);
    cr_assert_not_null(strstr(err.msg, forbidden), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "ro-key-0123456789"));

    rc = qs_qdrant_delete_snapshot(ro, "c", si.name, &err);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_eq(err.http_status, 403);
    cr_assert_not_null(strstr(err.msg, forbidden), "%s", err.msg);

    struct mem_source src = {.data = data.data, .len = data.len};
    rc = qs_qdrant_upload_snapshot(ro, "c2", si.name, mem_source_fn, &src, (int64_t)data.len,
                                   si.checksum, "snapshot", NULL, &err);
    cr_assert_eq(rc, QS_EHTTP);
    cr_assert_eq(err.http_status, 403);
    cr_assert_not_null(strstr(err.msg, forbidden), "%s", err.msg);
    qs_qdrant_free(ro);
    qs_buf_free(&data);
}

static int file_sink(const void *data, size_t len, void *ud)
{
    return fwrite(data, 1, len, ud) == len ? 0 : QS_EIO;
}

static ssize_t file_source(void *buf, size_t cap, void *ud)
{
    size_t n = fread(buf, 1, cap, ud);
    return n > 0 ? (ssize_t)n : (ferror((FILE *)ud) ? QS_EIO : 0);
}

Test(qdrant_standin, large_upload_streams_from_a_file, .timeout = 300)
{
    cr_assert_eq(ctl("POST", "/__standin/collections",
                     "{\"name\":\"mid\",\"size_mib\":64,\"dim\":256}", NULL),
                 200);
    struct qs_snapshot_info si = must_create("mid");
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    struct qs_error err;
    cr_assert_eq(
        qs_qdrant_download_snapshot(Q, "mid", si.name, file_sink, f, NULL, NULL, NULL, &err), 0,
        "%s", err.msg);
    cr_assert_eq((uint64_t)ftell(f), si.size);
    for (int expect = 0; expect <= 1; expect++) {
        struct qs_qdrant_opts o = {.url = S.url, .expect_100 = expect};
        struct qs_qdrant *q = NULL;
        cr_assert_eq(qs_qdrant_new(&o, &q, &err), 0);
        rewind(f);
        const char *target = expect ? "mid-restored-expect" : "mid-restored";
        double t0 = qs_monotonic();
        int rc = qs_qdrant_upload_snapshot(q, target, si.name, file_source, f, (int64_t)si.size,
                                           si.checksum, "snapshot", NULL, &err);
        double dt = qs_monotonic() - t0;
        qs_qdrant_free(q);
        cr_assert_eq(rc, 0, "%s", err.msg);
        fprintf(stderr, "upload+restore of %llu bytes (Expect %s): %.2f s, %.0f MiB/s\n",
                (unsigned long long)si.size, expect ? "on" : "off", dt,
                (double)si.size / 1048576.0 / dt);
        cJSON *st = standin_state();
        const cJSON *up = last_upload(st);
        cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(up, "sha256")->valuestring, si.checksum);
        cr_assert_eq((uint64_t)cJSON_GetObjectItemCaseSensitive(up, "size")->valuedouble, si.size);
        cr_assert_eq(standin_points(st, target), standin_points(st, "mid"));
        cJSON_Delete(st);
    }
    fclose(f);
}
