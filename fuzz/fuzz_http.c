/* libFuzzer target for the HTTP request reader (http_parser plus limits),
 * path decoding, query parsing, routing and the bearer check. The first
 * input byte picks how the rest is split into feed() calls, so partial
 * reads are exercised as the server sees them. The input is a stream of
 * pipelined requests, read as a kept-alive connection reads them: after a
 * complete request the reader is readied for the next one and fed the bytes
 * it left. Invariants: a request that parses has a validated path (no "//",
 * dot segments or control bytes) and fits the limits; a query the route
 * check accepts decodes cleanly; routing never lets HEAD reach a POST route;
 * the bearer check accepts exactly "Bearer <token>"; the reader consumes
 * every byte until a request completes, and then none after it; it carries a
 * next request exactly when the previous one allowed keep-alive, and the
 * answer's `Connection` header says the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "qsnap/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define TOKEN "fuzz-admin-token-0123456789"

static uv_loop_t loop;
static struct qs_http_server *server;
static int post_marker, get_marker, prefix_marker;

static void check(int cond)
{
    if (!cond)
        abort();
}

static void handler(struct qs_http_req *req, void *ud)
{
    (void)req;
    (void)ud;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    check(uv_loop_init(&loop) == 0);
    check(qs_http_server_new(&loop, NULL, &server) == 0);
    check(qs_http_route(server, "GET", "/healthz", handler, &get_marker) == 0);
    check(qs_http_route(server, "GET", "/metrics", handler, &get_marker) == 0);
    check(qs_http_route(server, "GET", "/v1/backups", handler, &get_marker) == 0);
    check(qs_http_route(server, "GET", "/v1/jobs/", handler, &prefix_marker) == 0);
    check(qs_http_route(server, "POST", "/v1/backup", handler, &post_marker) == 0);
    check(qs_http_route(server, "POST", "/v1/restore", handler, &post_marker) == 0);
    return 0;
}

static void check_path(const char *p)
{
    size_t n = strlen(p);
    check(n > 0 && p[0] == '/');
    check(strstr(p, "//") == NULL);
    check(strstr(p, "/./") == NULL && strstr(p, "/../") == NULL);
    check(!(n >= 2 && strcmp(p + n - 2, "/.") == 0));
    check(!(n >= 3 && strcmp(p + n - 3, "/..") == 0));
    for (size_t i = 0; i < n; i++)
        check((unsigned char)p[i] >= 0x20 && p[i] != 0x7f);
}

static void check_request(struct qs_http_req *req)
{
    const char *method = qs_http_req_method(req);
    const char *path = qs_http_req_path(req);
    check(method != NULL && path != NULL);
    check_path(path);
    size_t blen = 0;
    const char *body = qs_http_req_body(req, &blen);
    check(body != NULL && blen <= QS_HTTP_DEFAULT_MAX_BODY && body[blen] == '\0');
    check(qs_http_req_query(req) != NULL);
    char v[128];
    int q = qs_http_req_query_param(req, "collection", v, sizeof(v));
    check(q == 0 || q == 1 || q == QS_EINVAL || q == QS_ETOOBIG);
    if (q == 1)
        check(strlen(v) < sizeof(v));
    /* a query the route check lets through decodes cleanly, and names no
     * parameter twice or other than the accepted one */
    static const char *const params[] = {"collection", NULL};
    char msg[160];
    int qc = qs_http_query_check(qs_http_req_query(req), params, msg, sizeof(msg));
    check(qc == 0 || qc == QS_EINVAL);
    if (qc == 0)
        check(q != QS_EINVAL);
    else
        check(strlen(msg) < sizeof(msg));

    qs_http_handler_fn fn = NULL;
    void *ud = NULL;
    size_t plen = 0;
    char allow[64];
    int m = qs_http_match(server, method, path, &fn, &ud, &plen, allow, sizeof(allow));
    check(m == 0 || m == 404 || m == 405);
    if (m == 0) {
        check(fn == handler);
        /* a POST route is reached only by POST */
        if (ud == &post_marker)
            check(strcmp(method, "POST") == 0);
        if (ud == &get_marker || ud == &prefix_marker)
            check(strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);
    }

    int b = qs_http_bearer_ok(req, TOKEN);
    const char *auth = qs_http_req_header(req, "authorization");
    if (b == 0) {
        /* the scheme is case-insensitive and may be followed by several spaces */
        check(auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0);
        const char *t = auth + 7;
        while (*t == ' ')
            t++;
        check(strcmp(t, TOKEN) == 0);
    } else
        check(b == 401);
    check(qs_http_bearer_ok(req, NULL) == 403);

    struct qs_buf out;
    qs_buf_init(&out);
    check(qs_http_response_format(req, 200, "application/json", NULL, body, blen, 0, &out) == 0);
    check(out.len > 0);
    const char *end = strstr(out.data, "\r\n\r\n");
    check(end != NULL);
    int says_close =
        memmem(out.data, (size_t)(end - out.data), "\r\nConnection: close", 19) != NULL;
    check(says_close == !qs_http_req_keep_alive(req));
    qs_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] + 1;
    const char *raw = (const char *)data + 1;
    size_t len = size - 1;

    /* path helpers on the raw bytes */
    char out[256];
    int d = qs_http_path_decode(raw, len < 300 ? len : 300, out, sizeof(out));
    check(d == 0 || d == QS_EINVAL || d == QS_ETOOBIG);
    if (d == 0)
        check_path(out);
    char *qs = malloc(len + 1);
    if (qs != NULL) {
        memcpy(qs, raw, len);
        qs[len] = '\0';
        char v[64];
        int q = qs_http_query_get(qs, "a", v, sizeof(v));
        check(q == 0 || q == 1 || q == QS_EINVAL || q == QS_ETOOBIG);
        (void)qs_http_accepts_gzip(qs);
        free(qs);
    }

    struct qs_http_reader *r = qs_http_reader_new(NULL);
    check(r != NULL);
    size_t off = 0;
    for (int nreq = 0; nreq < 32 && off < len;) {
        size_t n = len - off < chunk ? len - off : chunk, used = 0;
        int status = 0;
        int rc = qs_http_reader_feed_used(r, raw + off, n, &used, &status);
        check(used <= n);
        if (rc == 0) {
            check(used == n);
            off += n;
            continue;
        }
        if (rc < 0) {
            check(status == 400 || status == 413 || status == 431 || status == 505 ||
                  status == 501 || status == 417);
            check(qs_http_reader_take(r) == NULL);
            break;
        }
        check(rc == 1);
        off += used;
        check(qs_http_reader_next(r) == QS_EINVAL); /* not taken yet */
        struct qs_http_req *req = qs_http_reader_take(r);
        check(req != NULL);
        check(qs_http_reader_take(r) == NULL);
        check_request(req);
        int keep = qs_http_req_keep_alive(req);
        qs_http_req_free(req);
        nreq++;
        int next = qs_http_reader_next(r);
        check(next == 0 || next == QS_EINVAL || next == UV_ENOMEM);
        if (next != UV_ENOMEM)
            check((next == 0) == (keep != 0));
        if (next != 0)
            break;
    }
    qs_http_reader_free(r);
    return 0;
}
