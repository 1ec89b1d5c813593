#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>
#include <zlib.h>

#include "qsnap/error.h"
#include "qsnap/http.h"
#include "qsnap/util.h"

/* ---- reader ------------------------------------------------------------------ */

/* Feeds raw in chunks of `chunk` bytes (0 = all at once). Returns the final
 * feed result; *status gets the HTTP status on error. */
static int feed(struct qs_http_reader *r, const char *raw, size_t len, size_t chunk, int *status)
{
    int rc = 0;
    if (chunk == 0)
        chunk = len;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        rc = qs_http_reader_feed(r, raw + off, n, status);
        if (rc != 0)
            return rc;
    }
    return rc;
}

static struct qs_http_req *parse_ok(const char *raw, size_t chunk)
{
    struct qs_http_reader *r = qs_http_reader_new(NULL);
    cr_assert_not_null(r);
    int status = -1;
    int rc = feed(r, raw, strlen(raw), chunk, &status);
    cr_assert_eq(rc, 1, "feed returned %d (status %d)", rc, status);
    struct qs_http_req *req = qs_http_reader_take(r);
    cr_assert_not_null(req);
    cr_assert_null(qs_http_reader_take(r));
    qs_http_reader_free(r);
    return req;
}

static int parse_status(const struct qs_http_server_opts *opts, const char *raw, size_t len,
                        size_t chunk)
{
    struct qs_http_reader *r = qs_http_reader_new(opts);
    cr_assert_not_null(r);
    int status = 0;
    int rc = feed(r, raw, len, chunk, &status);
    qs_http_reader_free(r);
    if (rc == 1)
        return 200;
    if (rc == 0)
        return 0;
    cr_assert_lt(rc, 0);
    return status;
}

Test(reader, simple_get_any_chunking)
{
    const char *raw = "GET /v1/backups?collection=c%201&x=y HTTP/1.1\r\n"
                      "Host: localhost\r\n"
                      "Accept-Encoding: gzip  \r\n"
                      "X-Multi: a\r\n"
                      "X-Multi: b\r\n"
                      "\r\n";
    size_t chunks[] = {0, 1, 2, 7, 100};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        struct qs_http_req *req = parse_ok(raw, chunks[i]);
        cr_assert_str_eq(qs_http_req_method(req), "GET");
        cr_assert_str_eq(qs_http_req_path(req), "/v1/backups");
        cr_assert_str_eq(qs_http_req_query(req), "collection=c%201&x=y");
        cr_assert_str_eq(qs_http_req_header(req, "host"), "localhost");
        cr_assert_str_eq(qs_http_req_header(req, "ACCEPT-ENCODING"), "gzip");
        cr_assert_str_eq(qs_http_req_header(req, "x-multi"), "a");
        cr_assert_null(qs_http_req_header(req, "Content-Type"));
        char v[64];
        cr_assert_eq(qs_http_req_query_param(req, "collection", v, sizeof(v)), 1);
        cr_assert_str_eq(v, "c 1");
        cr_assert_eq(qs_http_req_query_param(req, "nope", v, sizeof(v)), 0);
        size_t blen = 99;
        cr_assert_str_eq(qs_http_req_body(req, &blen), "");
        cr_assert_eq(blen, 0);
        cr_assert_eq(qs_http_req_closed(req), 1);
        qs_http_req_free(req);
    }
}

Test(reader, post_with_body_and_chunked_body)
{
    struct qs_http_req *req = parse_ok("POST /v1/restore HTTP/1.1\r\n"
                                       "Content-Length: 17\r\n"
                                       "\r\n"
                                       "{\"collection\":\"c\"}",
                                       3);
    size_t len = 0;
    cr_assert_str_eq(qs_http_req_method(req), "POST");
    cr_assert_str_eq(qs_http_req_body(req, &len), "{\"collection\":\"c\"");
    cr_assert_eq(len, 17);
    qs_http_req_free(req);

    req = parse_ok("POST /x HTTP/1.1\r\n"
                   "Transfer-Encoding: chunked\r\n"
                   "\r\n"
                   "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                   1);
    cr_assert_str_eq(qs_http_req_body(req, &len), "hello world");
    cr_assert_eq(len, 11);
    qs_http_req_free(req);
}

/* Chunked trailers are dropped: a trailer never becomes a request header (an
 * Authorization trailer would otherwise authenticate a request whose head was
 * checked without it), whatever the chunking. */
Test(reader, trailers_never_become_headers)
{
    const char *raw = "POST /v1/backup HTTP/1.1\r\n"
                      "Host: x\r\n"
                      "Transfer-Encoding: chunked\r\n"
                      "\r\n"
                      "2\r\n{}\r\n0\r\n"
                      "Authorization: Bearer s3cret-token\r\n"
                      "X-Trailer-1: one\r\n"
                      "X-Last: last\r\n"
                      "\r\n";
    size_t chunks[] = {0, 1, 3, 17};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        struct qs_http_req *req = parse_ok(raw, chunks[i]);
        cr_assert_str_eq(qs_http_req_header(req, "Host"), "x");
        cr_assert_null(qs_http_req_header(req, "Authorization"), "chunk %zu", chunks[i]);
        cr_assert_null(qs_http_req_header(req, "X-Trailer-1"));
        cr_assert_null(qs_http_req_header(req, "X-Last"));
        cr_assert_eq(qs_http_bearer_ok(req, "s3cret-token"), 401);
        size_t len;
        cr_assert_str_eq(qs_http_req_body(req, &len), "{}");
        qs_http_req_free(req);
    }
    /* Trailers are bounded like the head. */
    struct qs_http_server_opts o = {.max_head = 256};
    struct qs_buf b;
    qs_buf_init(&b);
    qs_buf_printf(&b, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Big: ");
    for (int k = 0; k < 300; k++)
        qs_buf_append(&b, "t", 1);
    qs_buf_printf(&b, "\r\n\r\n");
    cr_assert_eq(parse_status(&o, b.data, b.len, 0), 431);
    cr_assert_eq(parse_status(&o, b.data, b.len, 5), 431);
    qs_buf_free(&b);
}

Test(reader, incomplete_request_needs_more)
{
    const char *raw = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    cr_assert_eq(parse_status(NULL, raw, strlen(raw), 0), 0);
    raw = "POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345";
    cr_assert_eq(parse_status(NULL, raw, strlen(raw), 0), 0);
}

Test(reader, feed_ignores_bytes_after_a_complete_request)
{
    struct qs_http_req *req = parse_ok("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 0);
    cr_assert_str_eq(qs_http_req_path(req), "/a");
    qs_http_req_free(req);
}

/* Reads every request of a pipelined stream fed in chunks of `chunk` bytes (0
 * = all at once), as the server does: a completed request is taken, the
 * reader readied for the next, and the bytes it left are fed again. Returns
 * the number of requests; their paths go into paths (joined by ' '), the
 * keep-alive flags into keep (as '0'/'1'). *last_rc gets the last feed's
 * result (1 after a complete request the connection cannot follow). */
static int read_stream(const struct qs_http_server_opts *opts, const char *raw, size_t chunk,
                       char *paths, size_t cap, char *keep, int *last_rc)
{
    struct qs_http_reader *r = qs_http_reader_new(opts);
    cr_assert_not_null(r);
    size_t len = strlen(raw), off = 0;
    int n = 0, rc = 0, status = 0;
    paths[0] = '\0';
    struct qs_buf pend;
    qs_buf_init(&pend);
    while (off < len || pend.len > 0) {
        /* unconsumed bytes first, then the next chunk */
        size_t take = chunk == 0 ? len - off : (len - off < chunk ? len - off : chunk);
        qs_buf_append(&pend, raw + off, take);
        off += take;
        size_t used = 0;
        rc = qs_http_reader_feed_used(r, pend.data, pend.len, &used, &status);
        cr_assert_leq(used, pend.len);
        if (rc < 0)
            break;
        memmove(pend.data, pend.data + used, pend.len - used);
        pend.len -= used;
        if (rc == 0) {
            cr_assert_eq(pend.len, 0, "an incomplete request was not consumed whole");
            if (off >= len)
                break;
            continue;
        }
        struct qs_http_req *req = qs_http_reader_take(r);
        cr_assert_not_null(req);
        if (n > 0)
            qs_strlcpy(paths + strlen(paths), " ", cap - strlen(paths));
        qs_strlcpy(paths + strlen(paths), qs_http_req_path(req), cap - strlen(paths));
        keep[n] = qs_http_req_keep_alive(req) ? '1' : '0';
        n++;
        keep[n] = '\0';
        qs_http_req_free(req);
        if (qs_http_reader_next(r) != 0)
            break;
        rc = 0;
    }
    qs_buf_free(&pend);
    qs_http_reader_free(r);
    *last_rc = rc;
    return n;
}

Test(reader, pipelined_requests_read_one_after_another)
{
    const char *raw = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                      "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                      "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nq\r\n0\r\n\r\n"
                      "\r\nGET /d HTTP/1.1\r\n\r\n";
    size_t chunks[] = {0, 1, 2, 7, 64};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        char paths[128], keep[16];
        int rc;
        int n = read_stream(NULL, raw, chunks[i], paths, sizeof(paths), keep, &rc);
        cr_assert_eq(n, 4, "chunk %zu: %d requests (%s)", chunks[i], n, paths);
        cr_assert_str_eq(paths, "/a /b /c /d", "chunk %zu", chunks[i]);
        cr_assert_str_eq(keep, "1111");
    }
}

Test(reader, feed_used_leaves_the_next_request)
{
    struct qs_http_reader *r = qs_http_reader_new(NULL);
    const char *raw = "POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\n\r\n";
    size_t used = 99;
    int st;
    cr_assert_eq(qs_http_reader_feed_used(r, raw, strlen(raw), &used, &st), 1);
    cr_assert_eq(used, strlen("POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"));
    /* not ready for the next one before the request was taken */
    cr_assert_eq(qs_http_reader_next(r), QS_EINVAL);
    struct qs_http_req *req = qs_http_reader_take(r);
    size_t blen;
    cr_assert_str_eq(qs_http_req_body(req, &blen), "hi");
    qs_http_req_free(req);
    cr_assert_eq(qs_http_reader_next(r), 0);
    /* nothing completed yet: no next */
    cr_assert_eq(qs_http_reader_next(r), QS_EINVAL);
    cr_assert_eq(qs_http_reader_feed_used(r, raw + used, strlen(raw + used), &used, &st), 1);
    req = qs_http_reader_take(r);
    cr_assert_str_eq(qs_http_req_path(req), "/b");
    cr_assert_eq(qs_http_req_body(req, &blen)[0], '\0');
    qs_http_req_free(req);
    qs_http_reader_free(r);
}

Test(reader, keep_alive_by_version_and_connection_header)
{
    const struct {
        const char *raw;
        int keep;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nconnection: Close\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct qs_http_reader *r = qs_http_reader_new(NULL);
        int st;
        cr_assert_eq(qs_http_reader_feed(r, cases[i].raw, strlen(cases[i].raw), &st), 1, "%s",
                     cases[i].raw);
        struct qs_http_req *req = qs_http_reader_take(r);
        cr_assert_eq(qs_http_req_keep_alive(req), cases[i].keep, "%s", cases[i].raw);
        qs_http_req_free(req);
        /* a connection that must close carries no next request */
        cr_assert_eq(qs_http_reader_next(r), cases[i].keep ? 0 : QS_EINVAL, "%s", cases[i].raw);
        qs_http_reader_free(r);
    }
    /* a stream stops at the request that closes the connection */
    char paths[64], keep[8];
    int rc;
    int n = read_stream(NULL,
                        "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n"
                        "GET /c HTTP/1.1\r\n\r\n",
                        0, paths, sizeof(paths), keep, &rc);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(paths, "/a /b");
    cr_assert_str_eq(keep, "10");
}

/* Every limit holds per request, however many came before on the stream. */
Test(reader, limits_hold_per_request_on_a_stream)
{
    struct qs_buf b;
    qs_buf_init(&b);
    /* three heads of 6 KB each: every one under the 8 KiB limit */
    for (int k = 0; k < 3; k++) {
        qs_buf_printf(&b, "GET /%d HTTP/1.1\r\nX-Pad: ", k);
        for (int i = 0; i < 6000; i++)
            qs_buf_append(&b, "p", 1);
        qs_buf_printf(&b, "\r\n\r\n");
    }
    char paths[64], keep[8];
    int rc;
    cr_assert_eq(read_stream(NULL, b.data, 1000, paths, sizeof(paths), keep, &rc), 3);
    cr_assert_str_eq(paths, "/0 /1 /2");
    /* then one over it: 431 after the first two */
    qs_buf_reset(&b);
    qs_buf_printf(&b,
                  "GET /ok HTTP/1.1\r\n\r\nGET /ok2 HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 9000; i++)
        qs_buf_append(&b, "a", 1);
    qs_buf_printf(&b, "\r\n\r\n");
    cr_assert_eq(read_stream(NULL, b.data, 0, paths, sizeof(paths), keep, &rc), 2);
    cr_assert_eq(rc, QS_EINVAL);
    /* bodies: 10 bytes each pass with max_body 10, 11 is 413 */
    struct qs_http_server_opts o = {.max_body = 10};
    const char *bodies = "POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"
                         "POST /b HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"
                         "POST /c HTTP/1.1\r\nContent-Length: 11\r\n\r\n01234567890";
    cr_assert_eq(read_stream(&o, bodies, 5, paths, sizeof(paths), keep, &rc), 2);
    cr_assert_str_eq(paths, "/a /b");
    cr_assert_eq(rc, QS_ETOOBIG);
    qs_buf_free(&b);
}

Test(reader, malformed_is_400)
{
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET x HTTP/1.1\r\n\r\n",
        "GET /a/../metrics HTTP/1.1\r\n\r\n",
        "GET /a%2Fb HTTP/1.1\r\n\r\n",
        "GET /a%00b HTTP/1.1\r\n\r\n",
        "GET //metrics HTTP/1.1\r\n\r\n",
        "GET /%2e%2e/metrics HTTP/1.1\r\n\r\n",
        "GET /a%zz HTTP/1.1\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(parse_status(NULL, bad[i], strlen(bad[i]), 0), 400, "case %zu: %s", i, bad[i]);
}

Test(reader, http2_preface_or_version_2_rejected)
{
    const char *raw = "GET / HTTP/2.0\r\n\r\n";
    int st = parse_status(NULL, raw, strlen(raw), 0);
    cr_assert(st == 505 || st == 400, "status %d", st);
}

Test(reader, head_limit_431_whatever_the_chunking)
{
    struct qs_buf b;
    qs_buf_init(&b);
    qs_buf_printf(&b, "GET /healthz HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 9000; i++)
        qs_buf_append(&b, "a", 1);
    qs_buf_printf(&b, "\r\n\r\n");
    size_t chunks[] = {0, 1, 4096, 8192};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
        cr_assert_eq(parse_status(NULL, b.data, b.len, chunks[i]), 431, "chunk %zu", chunks[i]);
    /* Just below the limit passes. */
    qs_buf_reset(&b);
    qs_buf_printf(&b, "GET /healthz HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 8000; i++)
        qs_buf_append(&b, "a", 1);
    qs_buf_printf(&b, "\r\n\r\n");
    cr_assert_lt(b.len, 8192);
    cr_assert_eq(parse_status(NULL, b.data, b.len, 1), 200);
    qs_buf_free(&b);
}

Test(reader, too_many_headers_431)
{
    struct qs_buf b;
    qs_buf_init(&b);
    qs_buf_printf(&b, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < QS_HTTP_MAX_HEADERS + 1; i++)
        qs_buf_printf(&b, "X-%d: v\r\n", i);
    qs_buf_printf(&b, "\r\n");
    cr_assert_eq(parse_status(NULL, b.data, b.len, 0), 431);
    qs_buf_free(&b);
}

Test(reader, body_limit_413_on_content_length_before_body)
{
    const char *raw = "POST /v1/backup HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
    /* Rejected from the head alone, without any body byte. */
    cr_assert_eq(parse_status(NULL, raw, strlen(raw), 0), 413);
    raw = "POST /v1/backup HTTP/1.1\r\nContent-Length: 65536\r\n\r\n";
    cr_assert_eq(parse_status(NULL, raw, strlen(raw), 0), 0);
}

Test(reader, body_limit_413_for_chunked)
{
    struct qs_http_server_opts o = {.max_body = 10};
    const char *ok = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    cr_assert_eq(parse_status(&o, ok, strlen(ok), 0), 200);
    const char *big = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n";
    cr_assert_eq(parse_status(&o, big, strlen(big), 0), 413);
    cr_assert_eq(parse_status(&o, big, strlen(big), 1), 413);
}

Test(reader, expect_continue_head_done)
{
    struct qs_http_reader *r = qs_http_reader_new(NULL);
    const char *raw = "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    int st;
    cr_assert_eq(qs_http_reader_head_done(r), 0);
    cr_assert_eq(qs_http_reader_feed(r, raw, strlen(raw), &st), 0);
    cr_assert_eq(qs_http_reader_head_done(r), 1);
    cr_assert_eq(qs_http_reader_feed(r, "abc", 3, &st), 1);
    qs_http_reader_free(r);
}

/* ---- path and query decoding ---------------------------------------------------- */

static int decode(const char *raw, char *out, size_t cap)
{
    return qs_http_path_decode(raw, strlen(raw), out, cap);
}

Test(path, decode_and_reject)
{
    char out[64];
    cr_assert_eq(decode("/healthz", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "/healthz");
    cr_assert_eq(decode("/", out, sizeof(out)), 0);
    cr_assert_eq(decode("/v1/jobs/a%20b", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "/v1/jobs/a b");
    cr_assert_eq(decode("/v1/jobs/", out, sizeof(out)), 0);
    cr_assert_eq(decode("/a.b/..c/...", out, sizeof(out)), 0);

    const char *bad[] = {"",      "x",        "//",    "/a//b", "/a/./b", "/a/.", "/..",
                         "/a/..", "/%2F",     "/%2f",  "/%00",  "/%",     "/%4",  "/%G0",
                         "/%2e",  "/%2E%2e/", "/a%0a", "/a%7f", "/x/%2e/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(decode(bad[i], out, sizeof(out)), QS_EINVAL, "case '%s'", bad[i]);
    cr_assert_eq(decode("/abcdef", out, 4), QS_ETOOBIG);
}

Test(query, get_parameters)
{
    char v[16];
    cr_assert_eq(qs_http_query_get("collection=c1", "collection", v, sizeof(v)), 1);
    cr_assert_str_eq(v, "c1");
    cr_assert_eq(
        qs_http_query_get("a=1&collection=x+y%21&collection=z", "collection", v, sizeof(v)), 1);
    cr_assert_str_eq(v, "x y!");
    cr_assert_eq(qs_http_query_get("flag&b=2", "flag", v, sizeof(v)), 1);
    cr_assert_str_eq(v, "");
    cr_assert_eq(qs_http_query_get("c%6Fllection=k", "collection", v, sizeof(v)), 1);
    cr_assert_str_eq(v, "k");
    cr_assert_eq(qs_http_query_get("", "a", v, sizeof(v)), 0);
    cr_assert_eq(qs_http_query_get("ab=1", "a", v, sizeof(v)), 0);
    cr_assert_eq(qs_http_query_get("a=%zz", "a", v, sizeof(v)), QS_EINVAL);
    cr_assert_eq(qs_http_query_get("a=x%00", "a", v, sizeof(v)), QS_EINVAL);
    cr_assert_eq(qs_http_query_get("a=0123456789abcdefXYZ", "a", v, sizeof(v)), QS_ETOOBIG);
    cr_assert_eq(qs_http_query_get(NULL, "a", v, sizeof(v)), 0);
}

/* Routes name the parameters they accept; anything else is refused with a
 * message naming the parameter. */
Test(query, check_against_the_accepted_names)
{
    const char *coll[] = {"collection", NULL};
    char msg[160];
    const char *ok[] = {"",           "collection=notes", "collection=",
                        "collection", "c%6Fllection=x",   "collection=a%20b+c"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(qs_http_query_check(ok[i], coll, msg, sizeof(msg)), 0, "'%s': %s", ok[i], msg);
    cr_assert_eq(qs_http_query_check("", NULL, msg, sizeof(msg)), 0);

    const struct {
        const char *query;
        const char *const *allowed;
        const char *want;
    } bad[] = {
        {"COLLECTION=notes", coll, "unknown query parameter 'COLLECTION'"},
        {"collections=notes", coll, "unknown query parameter 'collections'"},
        {"collection=a&collection=b", coll, "query parameter 'collection' is given twice"},
        {"collection=a&c%6Fllection=b", coll, "query parameter 'collection' is given twice"},
        {"collection=a&x=1", coll, "unknown query parameter 'x'"},
        {"x=1", NULL, "unknown query parameter 'x'"},
        {"collection=a&&x=1", coll, "empty query parameter"},
        {"&", coll, "empty query parameter"},
        {"collection=a&", coll, "empty query parameter"},
        {"=a", coll, "empty query parameter name"},
        {"collection=%zz", coll, "query parameter 'collection': malformed"},
        {"collection=a%00b", coll, "query parameter 'collection': malformed"},
        {"col%zz=1", coll, "malformed query parameter name"},
        {"a%0Ab=1", coll, "unknown query parameter 'a?b'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msg[0] = '\0';
        cr_assert_eq(qs_http_query_check(bad[i].query, bad[i].allowed, msg, sizeof(msg)), QS_EINVAL,
                     "accepted '%s'", bad[i].query);
        cr_assert_not_null(strstr(msg, bad[i].want), "'%s': '%s'", bad[i].query, msg);
    }
    /* a long name is shown bounded */
    char longq[600];
    memset(longq, 'k', 500);
    strcpy(longq + 500, "=1");
    cr_assert_eq(qs_http_query_check(longq, coll, msg, sizeof(msg)), QS_EINVAL);
    cr_assert_lt(strlen(msg), 120, "%s", msg);
}

/* ---- Accept-Encoding and gzip ------------------------------------------------- */

Test(encoding, accepts_gzip)
{
    cr_assert_eq(qs_http_accepts_gzip(NULL), 0);
    cr_assert_eq(qs_http_accepts_gzip(""), 0);
    cr_assert_eq(qs_http_accepts_gzip("identity"), 0);
    cr_assert_eq(qs_http_accepts_gzip("gzip"), 1);
    cr_assert_eq(qs_http_accepts_gzip("GZIP"), 1);
    cr_assert_eq(qs_http_accepts_gzip("x-gzip"), 1);
    cr_assert_eq(qs_http_accepts_gzip("deflate, gzip"), 1);
    cr_assert_eq(qs_http_accepts_gzip("gzip, deflate, br"), 1);
    cr_assert_eq(qs_http_accepts_gzip("gzip;q=0"), 0);
    cr_assert_eq(qs_http_accepts_gzip("gzip; q=0.000"), 0);
    cr_assert_eq(qs_http_accepts_gzip("gzip;q=0.5"), 1);
    cr_assert_eq(qs_http_accepts_gzip("gzip;Q=1.0"), 1);
    cr_assert_eq(qs_http_accepts_gzip("*"), 1);
    cr_assert_eq(qs_http_accepts_gzip("*;q=0"), 0);
    cr_assert_eq(qs_http_accepts_gzip("gzip;q=0, *"), 0);
    cr_assert_eq(qs_http_accepts_gzip("*, gzip;q=0"), 0);
    cr_assert_eq(qs_http_accepts_gzip("identity;q=1, *;q=0"), 0);
    cr_assert_eq(qs_http_accepts_gzip("gzipper"), 0);
    cr_assert_eq(qs_http_accepts_gzip("gzip;q=bogus"), 0);
    cr_assert_eq(qs_http_accepts_gzip("gzip;q=2"), 0);
}

static char *gunzip(const void *in, size_t len, size_t *out_len)
{
    size_t cap = 1 << 20;
    char *out = malloc(cap);
    cr_assert_not_null(out);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    cr_assert_eq(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)cap;
    cr_assert_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    inflateEnd(&zs);
    return out;
}

Test(encoding, gzip_roundtrip)
{
    struct qs_buf text, z;
    qs_buf_init(&text);
    qs_buf_init(&z);
    for (int i = 0; i < 1000; i++)
        qs_buf_printf(&text, "metric_%d %d\n", i, i * 7);
    cr_assert_eq(qs_http_gzip(text.data, text.len, &z), 0);
    cr_assert_lt(z.len, text.len);
    cr_assert_eq((unsigned char)z.data[0], 0x1f);
    cr_assert_eq((unsigned char)z.data[1], 0x8b);
    size_t n;
    char *back = gunzip(z.data, z.len, &n);
    cr_assert_eq(n, text.len);
    cr_assert_eq(memcmp(back, text.data, n), 0);
    free(back);
    qs_buf_free(&text);
    qs_buf_free(&z);
}

/* ---- response formatting ---------------------------------------------------- */

static struct qs_buf fmt(const char *raw, int status, const void *body, size_t len, unsigned flags)
{
    struct qs_http_req *req = parse_ok(raw, 0);
    struct qs_buf out;
    qs_buf_init(&out);
    cr_assert_eq(qs_http_response_format(req, status, "text/plain", "X-Extra: 1\r\n", body, len,
                                         flags, &out),
                 0);
    qs_http_req_free(req);
    return out;
}

Test(response, plain_small_body)
{
    struct qs_buf out = fmt("GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n", 200, "hi", 2, 0);
    /* Small bodies are not compressed; HTTP/1.1 connections persist without
     * a header saying so. */
    cr_assert_str_eq(out.data, "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 2\r\n"
                               "Cache-Control: no-store\r\n"
                               "X-Content-Type-Options: nosniff\r\n"
                               "X-Extra: 1\r\n"
                               "\r\n"
                               "hi");
    qs_buf_free(&out);
    out = fmt("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 200, "hi", 2, 0);
    cr_assert_str_eq(out.data, "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 2\r\n"
                               "Cache-Control: no-store\r\n"
                               "X-Content-Type-Options: nosniff\r\n"
                               "Connection: close\r\n"
                               "X-Extra: 1\r\n"
                               "\r\n"
                               "hi");
    qs_buf_free(&out);
    out = fmt("GET / HTTP/1.0\r\n\r\n", 200, "hi", 2, 0);
    cr_assert_not_null(strstr(out.data, "\r\nConnection: close\r\n"), "%s", out.data);
    qs_buf_free(&out);
    out = fmt("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, "hi", 2, 0);
    cr_assert_not_null(strstr(out.data, "\r\nConnection: keep-alive\r\n"), "%s", out.data);
    qs_buf_free(&out);
    out = fmt("GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n", 200, "hi", 2, QS_HTTP_GZIP_ALWAYS);
    cr_assert_not_null(strstr(out.data, "Content-Encoding: gzip\r\n"));
    cr_assert_not_null(strstr(out.data, "Vary: Accept-Encoding\r\n"));
    qs_buf_free(&out);
}

Test(response, gzip_negotiated_for_large_body)
{
    char body[4000];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)('a' + i % 7);
    struct qs_buf out =
        fmt("GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n", 200, body, sizeof(body), 0);
    cr_assert_not_null(strstr(out.data, "Content-Encoding: gzip\r\n"));
    cr_assert_not_null(strstr(out.data, "Vary: Accept-Encoding\r\n"));
    const char *sep = strstr(out.data, "\r\n\r\n");
    cr_assert_not_null(sep);
    size_t zlen = out.len - (size_t)(sep + 4 - out.data);
    char want[64];
    snprintf(want, sizeof(want), "Content-Length: %zu\r\n", zlen);
    cr_assert_not_null(strstr(out.data, want), "%s", out.data);
    size_t n;
    char *back = gunzip(sep + 4, zlen, &n);
    cr_assert_eq(n, sizeof(body));
    cr_assert_eq(memcmp(back, body, n), 0);
    free(back);
    qs_buf_free(&out);

    /* Refused or absent encodings get the identity body, still with Vary. */
    const char *reqs[] = {"GET / HTTP/1.1\r\n\r\n",
                          "GET / HTTP/1.1\r\nAccept-Encoding: identity\r\n\r\n",
                          "GET / HTTP/1.1\r\nAccept-Encoding: gzip;q=0\r\n\r\n"};
    for (size_t i = 0; i < 3; i++) {
        out = fmt(reqs[i], 200, body, sizeof(body), 0);
        cr_assert_null(strstr(out.data, "Content-Encoding"));
        cr_assert_not_null(strstr(out.data, "Vary: Accept-Encoding\r\n"));
        cr_assert_not_null(strstr(out.data, "Content-Length: 4000\r\n"));
        cr_assert_eq(memcmp(out.data + out.len - sizeof(body), body, sizeof(body)), 0);
        qs_buf_free(&out);
    }
}

Test(response, head_has_length_but_no_body)
{
    struct qs_buf out = fmt("HEAD / HTTP/1.1\r\n\r\n", 200, "hello", 5, 0);
    cr_assert_not_null(strstr(out.data, "Content-Length: 5\r\n"));
    cr_assert_eq(strcmp(out.data + out.len - 4, "\r\n\r\n"), 0);
    qs_buf_free(&out);
}

/* ---- bearer ---------------------------------------------------------------------- */

static int bearer(const char *auth_header, const char *token)
{
    char raw[256];
    snprintf(raw, sizeof(raw), "POST /v1/backup HTTP/1.1\r\n%s\r\n", auth_header);
    struct qs_http_req *req = parse_ok(raw, 0);
    int rc = qs_http_bearer_ok(req, token);
    qs_http_req_free(req);
    return rc;
}

Test(bearer, semantics)
{
    cr_assert_eq(bearer("Authorization: Bearer s3cret-token\r\n", "s3cret-token"), 0);
    cr_assert_eq(bearer("authorization: bearer s3cret-token\r\n", "s3cret-token"), 0);
    cr_assert_eq(bearer("Authorization: Bearer s3cret-token\r\n", NULL), 403);
    cr_assert_eq(bearer("Authorization: Bearer s3cret-token\r\n", ""), 403);
    cr_assert_eq(bearer("", NULL), 403);
    cr_assert_eq(bearer("", "s3cret-token"), 401);
    cr_assert_eq(bearer("Authorization: Bearer wrong\r\n", "s3cret-token"), 401);
    cr_assert_eq(bearer("Authorization: Bearer s3cret-token2\r\n", "s3cret-token"), 401);
    cr_assert_eq(bearer("Authorization: Bearer s3cret-toke\r\n", "s3cret-token"), 401);
    cr_assert_eq(bearer("Authorization: Basic s3cret-token\r\n", "s3cret-token"), 401);
    cr_assert_eq(bearer("Authorization: Bearer\r\n", "s3cret-token"), 401);
}

/* ---- routing (a server that never listens: no sockets) ---------------------- */

static void h_a(struct qs_http_req *req, void *ud)
{
    (void)req;
    (void)ud;
}

static void h_b(struct qs_http_req *req, void *ud)
{
    (void)req;
    (void)ud;
}

static int done_called;

static void server_done(void *ud)
{
    (void)ud;
    done_called++;
}

Test(router, exact_prefix_404_405)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct qs_http_server *s = NULL;
    cr_assert_eq(qs_http_server_new(&loop, NULL, &s), 0);
    int tag_health, tag_jobs, tag_jobs_special, tag_backup;
    cr_assert_eq(qs_http_route(s, "GET", "/healthz", h_a, &tag_health), 0);
    cr_assert_eq(qs_http_route(s, "GET", "/v1/jobs/", h_a, &tag_jobs), 0);
    cr_assert_eq(qs_http_route(s, "GET", "/v1/jobs/special", h_b, &tag_jobs_special), 0);
    cr_assert_eq(qs_http_route(s, "POST", "/v1/backup", h_b, &tag_backup), 0);
    cr_assert_eq(qs_http_route(s, "POST", "/v1/backup", h_b, NULL), QS_EINVAL);
    cr_assert_eq(qs_http_route(s, "GET", "nope", h_b, NULL), QS_EINVAL);
    cr_assert_eq(qs_http_route(s, "", "/x", h_b, NULL), QS_EINVAL);

    qs_http_handler_fn fn;
    void *ud;
    size_t pl;
    char allow[64];
    cr_assert_eq(qs_http_match(s, "GET", "/healthz", &fn, &ud, &pl, allow, sizeof(allow)), 0);
    cr_assert_eq(ud, &tag_health);
    cr_assert_eq(qs_http_match(s, "HEAD", "/healthz", &fn, &ud, &pl, allow, sizeof(allow)), 0);
    cr_assert_eq(ud, &tag_health);
    cr_assert_eq(qs_http_match(s, "POST", "/healthz", &fn, &ud, &pl, allow, sizeof(allow)), 405);
    cr_assert_str_eq(allow, "GET, HEAD");
    cr_assert_eq(qs_http_match(s, "GET", "/healthz/", &fn, &ud, &pl, allow, sizeof(allow)), 404);
    cr_assert_eq(qs_http_match(s, "GET", "/healthzz", &fn, &ud, &pl, allow, sizeof(allow)), 404);
    cr_assert_eq(qs_http_match(s, "GET", "/nope", &fn, &ud, &pl, allow, sizeof(allow)), 404);

    cr_assert_eq(qs_http_match(s, "GET", "/v1/jobs/42", &fn, &ud, &pl, allow, sizeof(allow)), 0);
    cr_assert_eq(ud, &tag_jobs);
    cr_assert_eq(pl, strlen("/v1/jobs/"));
    /* The prefix itself (empty id) is not matched by the prefix route. */
    cr_assert_eq(qs_http_match(s, "GET", "/v1/jobs/", &fn, &ud, &pl, allow, sizeof(allow)), 404);
    cr_assert_eq(qs_http_match(s, "GET", "/v1/jobs", &fn, &ud, &pl, allow, sizeof(allow)), 404);
    /* An exact route wins over the prefix. */
    cr_assert_eq(qs_http_match(s, "GET", "/v1/jobs/special", &fn, &ud, &pl, allow, sizeof(allow)),
                 0);
    cr_assert_eq(ud, &tag_jobs_special);
    cr_assert_eq(qs_http_match(s, "DELETE", "/v1/jobs/1", &fn, &ud, &pl, allow, sizeof(allow)),
                 405);
    cr_assert_str_eq(allow, "GET, HEAD");

    /* HEAD never reaches a POST handler. */
    cr_assert_eq(qs_http_match(s, "HEAD", "/v1/backup", &fn, &ud, &pl, allow, sizeof(allow)), 405);
    cr_assert_str_eq(allow, "POST");
    cr_assert_eq(qs_http_match(s, "GET", "/v1/backup", &fn, &ud, &pl, allow, sizeof(allow)), 405);
    cr_assert_eq(qs_http_match(s, "POST", "/v1/backup", &fn, &ud, &pl, allow, sizeof(allow)), 0);
    cr_assert_eq(ud, &tag_backup);

    cr_assert_eq(qs_http_server_port(s), -1);
    done_called = 0;
    qs_http_server_close(s, server_done, NULL);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done_called, 1);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(router, status_text)
{
    cr_assert_str_eq(qs_http_status_text(404), "Not Found");
    cr_assert_str_eq(qs_http_status_text(413), "Content Too Large");
    cr_assert_str_eq(qs_http_status_text(799), "Unknown");
}
