/* `qsnap serve`: the HTTP endpoint, metrics exposition and shutdown, tested
 * against the real binary on loopback. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <uv.h>
#include <zlib.h>

#include "qsnap/http.h"
#include "qsnap/util.h"
#include "support.h"

#define TOKEN "serve-admin-token-0123456789abcdef"

static char *dest_dir;
static char dest_env[600];

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    dest_dir = qs_test_mkdtemp("serve-dest");
    snprintf(dest_env, sizeof(dest_env), "QSNAP_DESTINATION=file://%s", dest_dir);
}

static void teardown(void)
{
    qs_test_rmrf(dest_dir);
    free(dest_dir);
    curl_global_cleanup();
}

TestSuite(serve, .init = setup, .fini = teardown);

/* Starts the daemon with a file destination, no schedule, an unreachable
 * Qdrant and up to 4 extra variables (NULL-terminated list, may be NULL). */
static void start(struct qs_test_daemon *d, const char *const *extra)
{
    char *env[16];
    size_t n = 0;
    env[n++] = dest_env;
    env[n++] = "QSNAP_SCHEDULE=off";
    env[n++] = "QSNAP_QDRANT_URL=http://127.0.0.1:9";
    env[n++] = "QSNAP_LOG_FORMAT=json";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
        env[n++] = (char *)extra[i];
    env[n] = NULL;
    int rc = qs_test_daemon_start(d, env);
    if (rc != 0) {
        char *log = qs_test_read_file(d->log, NULL);
        qs_test_daemon_stop(d, 5);
        cr_assert_fail("daemon did not start; log:\n%s", log ? log : "(none)");
    }
}

static char *url(const struct qs_test_daemon *d, const char *path)
{
    static char buf[256];
    snprintf(buf, sizeof(buf), "%s%s", d->url, path);
    return buf;
}

/* Case-insensitive header lookup in raw headers; returns a malloc'd value. */
static char *header_value(const char *headers, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = headers; p != NULL && *p != '\0';) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            return strndup(v, len - (size_t)(v - p));
        }
        p = eol != NULL ? eol + 2 : NULL;
    }
    return NULL;
}

static int connect_raw(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    return fd;
}

/* Reads until EOF or timeout; returns the bytes (owned) and sets *eof. */
static char *read_until_eof(int fd, double timeout_s, int *eof)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    double end = qs_test_now_s() + timeout_s;
    *eof = 0;
    while (qs_test_now_s() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ms = (int)((end - qs_test_now_s()) * 1000) + 1;
        if (poll(&p, 1, ms) <= 0)
            continue;
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            *eof = 1;
            break;
        }
        len += (size_t)n;
        if (len == cap)
            break;
    }
    buf[len] = '\0';
    return buf;
}

/* Answers read one at a time from a connection (pipelined answers arrive
 * back to back). */
struct rstream {
    int fd;
    struct qs_buf in;
    int eof;
    int reset; /* the connection ended with an error (a reset), not a FIN */
};

static void rs_init(struct rstream *r, int fd)
{
    r->fd = fd;
    qs_buf_init(&r->in);
    r->eof = 0;
    r->reset = 0;
}

static void rs_free(struct rstream *r)
{
    qs_buf_free(&r->in);
}

/* Length of the first complete answer in r->in (its head, then as many body
 * bytes as Content-Length says unless no_body), or 0 while incomplete. */
static size_t rs_complete(const struct rstream *r, int no_body)
{
    if (r->in.len < 12)
        return 0;
    const char *end = strstr(r->in.data, "\r\n\r\n");
    if (end == NULL)
        return 0;
    size_t hlen = (size_t)(end + 4 - r->in.data);
    char *head = strndup(r->in.data, hlen);
    cr_assert_not_null(head);
    char *cl = header_value(head, "Content-Length");
    int status = atoi(head + 9);
    size_t blen = !no_body && status >= 200 && cl != NULL ? strtoul(cl, NULL, 10) : 0;
    free(cl);
    free(head);
    return r->in.len >= hlen + blen ? hlen + blen : 0;
}

/* The next answer (owned: head and body, NUL-terminated, its length in *len),
 * or NULL when the connection closed (r->eof) or timeout_s passed first.
 * no_body: the answer to a HEAD. */
static char *rs_next_len(struct rstream *r, double timeout_s, int no_body, size_t *len)
{
    double end = qs_test_now_s() + timeout_s;
    size_t n;
    while ((n = rs_complete(r, no_body)) == 0 && !r->eof) {
        double left = end - qs_test_now_s();
        if (left <= 0)
            return NULL;
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        char buf[16384];
        ssize_t got = recv(r->fd, buf, sizeof(buf), 0);
        if (got <= 0)
            r->eof = 1;
        else
            qs_buf_append(&r->in, buf, (size_t)got);
    }
    if (n == 0)
        return NULL;
    char *resp = malloc(n + 1);
    cr_assert_not_null(resp);
    memcpy(resp, r->in.data, n);
    resp[n] = '\0';
    memmove(r->in.data, r->in.data + n, r->in.len - n + 1);
    r->in.len -= n;
    *len = n;
    return resp;
}

static char *rs_next(struct rstream *r, double timeout_s, int no_body)
{
    size_t len;
    return rs_next_len(r, timeout_s, no_body, &len);
}

/* 1 when the peer closes the connection within timeout_s without sending
 * anything more. */
static int rs_closes(struct rstream *r, double timeout_s)
{
    double end = qs_test_now_s() + timeout_s;
    while (!r->eof && r->in.len == 0 && qs_test_now_s() < end) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        char buf[4096];
        ssize_t got = recv(r->fd, buf, sizeof(buf), 0);
        if (got <= 0) {
            r->eof = 1;
            r->reset = got < 0;
        } else {
            qs_buf_append(&r->in, buf, (size_t)got);
        }
    }
    return r->eof && r->in.len == 0;
}

/* Sends raw bytes on a new connection and returns the first answer (owned). */
static char *raw_request(int port, const char *req)
{
    int fd = connect_raw(port);
    cr_assert_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    struct rstream r;
    rs_init(&r, fd);
    char *resp = rs_next(&r, 5, strncmp(req, "HEAD ", 5) == 0);
    rs_free(&r);
    close(fd);
    cr_assert_not_null(resp, "no answer to %.80s", req);
    return resp;
}

/* As raw_request(), and the server must close the connection after its
 * answer (an error that leaves the request stream in an unknown state, or a
 * request that asked for it). */
static char *raw_request_closing(int port, const char *req)
{
    int fd = connect_raw(port);
    cr_assert_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    struct rstream r;
    rs_init(&r, fd);
    char *resp = rs_next(&r, 5, 0);
    cr_assert_not_null(resp, "no answer to %.80s", req);
    cr_assert(rs_closes(&r, 5), "the connection stayed open after %.80s", resp);
    cr_assert_not_null(strstr(resp, "\r\nConnection: close\r\n"), "%.300s", resp);
    rs_free(&r);
    close(fd);
    return resp;
}

static char *gunzip(const char *in, size_t len, size_t *out_len)
{
    size_t cap = 4 << 20;
    char *out = malloc(cap + 1);
    cr_assert_not_null(out);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    cr_assert_eq(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)cap;
    cr_assert_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    out[*out_len] = '\0';
    inflateEnd(&zs);
    return out;
}

/* Metric names and labels of an exposition, values dropped, one per line. */
static char *series_keys(const char *text)
{
    struct qs_buf b;
    qs_buf_init(&b);
    for (const char *p = text; *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (p[0] != '#') {
            const char *sp = p + len;
            while (sp > p && sp[-1] != ' ')
                sp--;
            qs_buf_append(&b, p, sp > p ? (size_t)(sp - p) : len);
            qs_buf_append(&b, "\n", 1);
        } else {
            qs_buf_append(&b, p, len);
            qs_buf_append(&b, "\n", 1);
        }
        p = eol != NULL ? eol + 1 : p + len;
    }
    return b.data != NULL ? b.data : strdup("");
}

/* ---- endpoints ----------------------------------------------------------------- */

Test(serve, healthz)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("GET", url(&d, "/healthz"), NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    char *ct = header_value(r.headers, "Content-Type");
    cr_assert_not_null(ct);
    cr_assert_str_eq(ct, "application/json");
    free(ct);
    qs_test_resp_free(&r);

    /* HEAD is GET without a body. */
    cr_assert_eq(qs_test_http("HEAD", url(&d, "/healthz"), NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 0);
    char *cl = header_value(r.headers, "Content-Length");
    cr_assert_not_null(cl);
    cr_assert_str_eq(cl, "15");
    free(cl);
    qs_test_resp_free(&r);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

Test(serve, metrics_pass_promtool)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("GET", url(&d, "/metrics"), NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200);
    char *ct = header_value(r.headers, "Content-Type");
    cr_assert_not_null(ct);
    cr_assert_str_eq(ct, "text/plain; version=0.0.4; charset=utf-8");
    free(ct);
    cr_assert_not_null(strstr(r.body, "\nqsnap_build_info{version=\""), "%s", r.body);
    const char *names[] = {"process_resident_memory_bytes",
                           "process_virtual_memory_bytes",
                           "process_cpu_seconds_total",
                           "process_start_time_seconds",
                           "process_open_fds",
                           "process_max_fds"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "# TYPE %s ", names[i]);
        cr_assert_not_null(strstr(r.body, want), "missing %s", names[i]);
    }
    char *out = NULL;
    cr_assert_eq(qs_test_promtool_check(r.body, &out), 0, "promtool: %s\n--- input ---\n%s", out,
                 r.body);
    free(out);
    qs_test_resp_free(&r);

    /* promtool must also reject broken input, or the check above proves nothing. */
    cr_assert_neq(qs_test_promtool_check("# TYPE x counter\nx{a=\"b} 1\n", &out), 0);
    free(out);
    cr_assert_neq(
        qs_test_promtool_check("# HELP y_count c\n# TYPE y_count counter\ny_count 1\n", &out), 0);
    free(out);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

Test(serve, gzip_negotiation)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    const char *gz[] = {"Accept-Encoding: gzip", NULL};
    const char *id[] = {"Accept-Encoding: identity", NULL};
    const char *q0[] = {"Accept-Encoding: gzip;q=0, identity", NULL};
    struct qs_test_resp plain, zipped, ident, refused;
    cr_assert_eq(qs_test_http("GET", url(&d, "/metrics"), NULL, NULL, 0, &plain), 0);
    cr_assert_eq(qs_test_http("GET", url(&d, "/metrics"), gz, NULL, 0, &zipped), 0);
    cr_assert_eq(qs_test_http("GET", url(&d, "/metrics"), id, NULL, 0, &ident), 0);
    cr_assert_eq(qs_test_http("GET", url(&d, "/metrics"), q0, NULL, 0, &refused), 0);
    cr_assert_eq(zipped.status, 200);

    char *ce = header_value(zipped.headers, "Content-Encoding");
    cr_assert_not_null(ce, "%s", zipped.headers);
    cr_assert_str_eq(ce, "gzip");
    free(ce);
    char *vary = header_value(zipped.headers, "Vary");
    cr_assert_not_null(vary);
    cr_assert_str_eq(vary, "Accept-Encoding");
    free(vary);
    cr_assert_eq((unsigned char)zipped.body[0], 0x1f);
    /* Values move between scrapes (CPU, memory); names and labels do not,
     * once the other modules have seeded theirs at start-up. */
    int same = 0;
    for (int attempt = 0; attempt < 20 && !same; attempt++) {
        if (attempt > 0) {
            usleep(100000);
            qs_test_resp_free(&plain);
            qs_test_resp_free(&zipped);
            cr_assert_eq(qs_test_http("GET", url(&d, "/metrics"), NULL, NULL, 0, &plain), 0);
            cr_assert_eq(qs_test_http("GET", url(&d, "/metrics"), gz, NULL, 0, &zipped), 0);
        }
        size_t n;
        char *text = gunzip(zipped.body, zipped.len, &n);
        char *k1 = series_keys(text), *k2 = series_keys(plain.body);
        same = strcmp(k1, k2) == 0;
        if (attempt == 19)
            cr_assert_str_eq(k1, k2);
        free(k1);
        free(k2);
        free(text);
    }
    cr_assert(same);

    struct qs_test_resp *ids[] = {&plain, &ident, &refused};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(ids[i]->status, 200);
        cr_assert_null(header_value(ids[i]->headers, "Content-Encoding"), "%s", ids[i]->headers);
        cr_assert_not_null(strstr(ids[i]->body, "# TYPE process_open_fds gauge\n"));
    }
    qs_test_resp_free(&plain);
    qs_test_resp_free(&zipped);
    qs_test_resp_free(&ident);
    qs_test_resp_free(&refused);

    /* A small body (healthz) stays uncompressed even when gzip is accepted. */
    struct qs_test_resp h;
    cr_assert_eq(qs_test_http("GET", url(&d, "/healthz"), gz, NULL, 0, &h), 0);
    cr_assert_str_eq(h.body, "{\"status\":\"ok\"}");
    qs_test_resp_free(&h);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

Test(serve, unknown_path_wrong_method_bad_path)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("GET", url(&d, "/nope"), NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(r.body, "{\"error\":\"not found\"}");
    qs_test_resp_free(&r);

    cr_assert_eq(qs_test_http("POST", url(&d, "/healthz"), NULL, "x", 1, &r), 0);
    cr_assert_eq(r.status, 405);
    char *allow = header_value(r.headers, "Allow");
    cr_assert_not_null(allow);
    cr_assert_str_eq(allow, "GET, HEAD");
    free(allow);
    cr_assert_not_null(strstr(r.body, "\"error\""));
    qs_test_resp_free(&r);

    cr_assert_eq(qs_test_http("DELETE", url(&d, "/metrics"), NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 405);
    qs_test_resp_free(&r);

    /* Traversal and encoded separators are refused, not normalised into a route. */
    const char *bad[] = {"GET /x/../healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                         "GET /%2Fhealthz HTTP/1.1\r\nHost: a\r\n\r\n",
                         "GET //healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                         "GET /healthz%00 HTTP/1.1\r\nHost: a\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *resp = raw_request_closing(d.port, bad[i]);
        cr_assert_eq(strncmp(resp, "HTTP/1.1 400 ", 13), 0, "%s -> %s", bad[i], resp);
        free(resp);
    }
    char *resp = raw_request(d.port, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert_eq(strncmp(resp, "HTTP/1.1 200 ", 13), 0, "%s", resp);
    free(resp);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

Test(serve, body_over_64k_is_413)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    size_t n = 65 * 1024 + 1;
    char *body = malloc(n);
    cr_assert_not_null(body);
    memset(body, 'a', n);
    const char *paths[] = {"/healthz", "/v1/backup", "/nope"};
    for (size_t i = 0; i < 3; i++) {
        struct qs_test_resp r;
        cr_assert_eq(qs_test_http("POST", url(&d, paths[i]), NULL, body, n, &r), 0, "%s", paths[i]);
        cr_assert_eq(r.status, 413, "%s: %ld", paths[i], r.status);
        cr_assert_not_null(strstr(r.body, "\"error\""));
        qs_test_resp_free(&r);
    }
    free(body);

    /* Refused from Content-Length alone, before any body byte is sent. */
    char *resp = raw_request_closing(d.port, "POST /healthz HTTP/1.1\r\nHost: a\r\n"
                                             "Content-Length: 65537\r\n\r\n");
    cr_assert_eq(strncmp(resp, "HTTP/1.1 413 ", 13), 0, "%s", resp);
    free(resp);

    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);

    /* Chunked bodies are cut off as they cross the limit (on a route that
     * reads bodies: the request head passed route and token checks). */
    const char *tok[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, NULL};
    start(&d, tok);
    int fd = connect_raw(d.port);
    const char *head = "POST /v1/restore HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " TOKEN
                       "\r\nTransfer-Encoding: chunked\r\n\r\n";
    cr_assert_eq(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    char chunk[8192 + 16];
    int hl = snprintf(chunk, sizeof(chunk), "2000\r\n");
    memset(chunk + hl, 'b', 8192);
    memcpy(chunk + hl + 8192, "\r\n", 2);
    size_t clen = (size_t)hl + 8192 + 2;
    for (int i = 0; i < 9; i++)
        if (send(fd, chunk, clen, MSG_NOSIGNAL) != (ssize_t)clen)
            break;
    int eof;
    char *ans = read_until_eof(fd, 5, &eof);
    close(fd);
    cr_assert_eq(strncmp(ans, "HTTP/1.1 413 ", 13), 0, "%s", ans);
    free(ans);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* Sends head, then waits up to 2 s for the first answer bytes (owned). */
static char *first_answer(int fd, const char *head)
{
    cr_assert_eq(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 2000), 1, "no answer to %s", head);
    char *buf = calloc(1, 4096);
    cr_assert_not_null(buf);
    cr_assert_gt(recv(fd, buf, 4095, 0), 0);
    return buf;
}

/* 100 Continue is sent only once route, token and query parameters have been
 * checked; a refused request is answered at once, without reading its body. */
Test(serve, expect_100_continue_only_after_route_and_token)
{
    struct qs_test_daemon d;
    const char *tok[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, NULL};
    start(&d, tok);
    const struct {
        const char *head;
        const char *want;
    } refused[] = {
        {"POST /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
         "HTTP/1.1 405 "},
        {"POST /v1/restore HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
         "Content-Length: 3\r\n\r\n",
         "HTTP/1.1 401 "},
        {"POST /v1/restore HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
         "Authorization: Bearer wrong-token-0123456789\r\nContent-Length: 3\r\n\r\n",
         "HTTP/1.1 401 "},
        {"POST /v1/restore HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         "HTTP/1.1 401 "},
        {"POST /v1/backup?COLLECTION=x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
         "Authorization: Bearer " TOKEN "\r\nContent-Length: 3\r\n\r\n",
         "HTTP/1.1 400 "},
        /* GET routes take no body: none is read */
        {"GET /v1/backups HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
         "Content-Length: 3\r\n\r\n",
         "HTTP/1.1 400 "},
        {"GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400 "},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        int fd = connect_raw(d.port);
        char *ans = first_answer(fd, refused[i].head);
        cr_assert_eq(strncmp(ans, refused[i].want, strlen(refused[i].want)), 0,
                     "case %zu answered '%s'", i, ans);
        cr_assert_null(strstr(ans, "100 Continue"), "case %zu: %s", i, ans);
        free(ans);
        close(fd);
    }
    /* Accepted: 100 Continue, then the body, then the handler's answer. */
    int fd = connect_raw(d.port);
    char *ans = first_answer(fd, "POST /v1/restore HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                 "Authorization: Bearer " TOKEN "\r\nContent-Length: 3\r\n\r\n");
    cr_assert_str_eq(ans, "HTTP/1.1 100 Continue\r\n\r\n");
    free(ans);
    cr_assert_eq(send(fd, "abc", 3, MSG_NOSIGNAL), 3);
    struct rstream rs;
    rs_init(&rs, fd);
    char *resp = rs_next(&rs, 5, 0);
    cr_assert_not_null(resp);
    rs_free(&rs);
    close(fd);
    cr_assert_eq(strncmp(resp, "HTTP/1.1 400 ", 13), 0, "%s", resp);
    cr_assert_not_null(strstr(resp, "body: must be a JSON object"), "%s", resp);
    free(resp);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* A token in a chunked trailer never authenticates: trailers are dropped. */
Test(serve, authorization_in_a_trailer_is_ignored)
{
    struct qs_test_daemon d;
    const char *tok[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, NULL};
    start(&d, tok);
    /* (the token trailer is not the last one: the last trailer used to be
     * lost, the others merged into the headers) */
    const char *req = "POST /v1/restore HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "2\r\n{}\r\n0\r\nAuthorization: Bearer " TOKEN "\r\nX-Pad: 1\r\n\r\n";
    char *resp = raw_request(d.port, req);
    cr_assert_eq(strncmp(resp, "HTTP/1.1 401 ", 13), 0, "%s", resp);
    free(resp);
    /* the same token in the head works (the request reaches the handler) */
    req = "POST /v1/restore HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " TOKEN
          "\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: t\r\nX-Pad: 1\r\n\r\n";
    resp = raw_request(d.port, req);
    cr_assert_eq(strncmp(resp, "HTTP/1.1 400 ", 13), 0, "%s", resp);
    cr_assert_not_null(strstr(resp, "field 'collection': required"), "%s", resp);
    free(resp);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* Every route names its query parameters; anything else is a 400 naming the
 * parameter, before the handler runs (no job is started). */
Test(serve, unknown_query_parameters_are_refused_on_every_route)
{
    struct qs_test_daemon d;
    const char *tok[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, NULL};
    start(&d, tok);
    const char *auth[] = {"Authorization: Bearer " TOKEN, NULL};
    const struct {
        const char *method, *path, *want;
    } cases[] = {
        {"POST", "/v1/backup?COLLECTION=notes", "unknown query parameter 'COLLECTION'"},
        {"POST", "/v1/backup?collections=notes", "unknown query parameter 'collections'"},
        {"POST", "/v1/backup?collection=a&collection=b", "'collection' is given twice"},
        {"POST", "/v1/backup?collection=a&", "empty query parameter"},
        {"POST", "/v1/restore?dry_run=1", "unknown query parameter 'dry_run'"},
        {"GET", "/v1/backups?colection=a", "unknown query parameter 'colection'"},
        {"GET", "/v1/jobs/abc?verbose", "unknown query parameter 'verbose'"},
        {"GET", "/healthz?x=1", "unknown query parameter 'x'"},
        {"GET", "/readyz?x=1", "unknown query parameter 'x'"},
        {"GET", "/metrics?name[]=up", "unknown query parameter 'name[]'"},
        {"HEAD", "/healthz?x=1", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct qs_test_resp r;
        int post = strcmp(cases[i].method, "POST") == 0;
        cr_assert_eq(qs_test_http(cases[i].method, url(&d, cases[i].path), auth, post ? "{}" : NULL,
                                  post ? 2 : 0, &r),
                     0);
        cr_assert_eq(r.status, 400, "%s %s answered %ld: %s", cases[i].method, cases[i].path,
                     r.status, r.body);
        if (cases[i].want != NULL)
            cr_assert_not_null(strstr(r.body, cases[i].want), "%s: %s", cases[i].path, r.body);
        qs_test_resp_free(&r);
    }
    /* nothing ran; the known parameter still works */
    char *mt = qs_test_daemon_metrics(&d);
    cr_assert_eq(qs_test_metric(mt, "qsnap_backup_in_progress"), 0.0, "%s", mt);
    free(mt);
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("GET", url(&d, "/v1/backups?collection=notes"), NULL, NULL, 0, &r),
                 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    qs_test_resp_free(&r);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* A token from a mounted secret file (with its trailing newline)
 * authenticates; surrounding spaces are a configuration error (exit 2). */
Test(serve, token_file_with_trailing_newline_authenticates)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/token", dest_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(TOKEN "\n", f);
    fclose(f);
    char var[800];
    snprintf(var, sizeof(var), "QSNAP_ADMIN_TOKEN_FILE=%s", path);
    const char *extra[] = {var, NULL};
    struct qs_test_daemon d;
    start(&d, extra);
    const char *auth[] = {"Authorization: Bearer " TOKEN, NULL};
    struct qs_test_resp r;
    cr_assert_eq(qs_test_http("POST", url(&d, "/v1/restore"), auth, "{}", 2, &r), 0);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body); /* past the token check */
    cr_assert_not_null(strstr(r.body, "field 'collection': required"), "%s", r.body);
    qs_test_resp_free(&r);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);

    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "check-config", NULL};
    char *env[] = {dest_env, "QSNAP_ADMIN_TOKEN=" TOKEN " ", "QSNAP_ADMIN_TOKEN_FILE=", NULL};
    char *out = NULL;
    cr_assert_eq(qs_test_run(argv, env, &out), 2, "%s", out);
    cr_assert_not_null(strstr(out, "QSNAP_ADMIN_TOKEN: the value begins or ends with whitespace"),
                       "%s", out);
    cr_assert_null(strstr(out, TOKEN), "%s", out);
    free(out);
}

Test(serve, head_over_8k_is_431)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    struct qs_buf b;
    qs_buf_init(&b);
    qs_buf_printf(&b, "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: ");
    for (int i = 0; i < 9000; i++)
        qs_buf_append(&b, "x", 1);
    qs_buf_printf(&b, "\r\n\r\n");
    char *resp = raw_request_closing(d.port, b.data);
    cr_assert_eq(strncmp(resp, "HTTP/1.1 431 ", 13), 0, "%.100s", resp);
    free(resp);
    qs_buf_free(&b);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* ---- slow and many clients ------------------------------------------------------- */

Test(serve, slow_client_is_cut_off_while_others_are_served)
{
    struct qs_test_daemon d;
    const char *extra[] = {"QSNAP_TEST_HTTP_TIMEOUT_MS=2000", NULL};
    start(&d, extra);
    int fd = connect_raw(d.port);
    const char *req =
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    double t0 = qs_test_now_s(), closed_at = -1, worst = 0;
    for (size_t i = 0; i < strlen(req) && closed_at < 0; i++) {
        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1) {
            closed_at = qs_test_now_s();
            break;
        }
        /* Meanwhile the endpoint answers others quickly. */
        double h0 = qs_test_now_s();
        struct qs_test_resp r;
        cr_assert_eq(qs_test_http("GET", url(&d, "/healthz"), NULL, NULL, 0, &r), 0);
        cr_assert_eq(r.status, 200);
        qs_test_resp_free(&r);
        if (qs_test_now_s() - h0 > worst)
            worst = qs_test_now_s() - h0;
        /* Wait out the rest of the second, watching for the server's close. */
        double next = h0 + 1.0;
        while (qs_test_now_s() < next) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 50) > 0) {
                char c[256];
                ssize_t n = recv(fd, c, sizeof(c), MSG_DONTWAIT);
                if (n <= 0) {
                    closed_at = qs_test_now_s();
                    break;
                }
            }
        }
    }
    close(fd);
    cr_assert_geq(closed_at, 0, "slow client was never cut off");
    double after = closed_at - t0;
    cr_assert(after >= 1.5 && after <= 3.5, "cut off after %.2f s (timeout 2 s)", after);
    cr_assert_lt(worst, 0.5, "healthz took %.2f s while a slow client was connected", worst);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

struct fetch_arg {
    const char *url;
    long status;
    int ok;
};

static void *fetch_thread(void *p)
{
    struct fetch_arg *a = p;
    struct qs_test_resp r;
    a->ok = qs_test_http("GET", a->url, NULL, NULL, 0, &r) == 0 &&
            strcmp(r.body, "{\"status\":\"ok\"}") == 0;
    a->status = r.status;
    qs_test_resp_free(&r);
    return NULL;
}

Test(serve, two_hundred_concurrent_requests)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    enum { N = 200 };
    pthread_t th[N];
    struct fetch_arg args[N];
    char *u = strdup(url(&d, "/healthz"));
    for (int i = 0; i < N; i++) {
        args[i] = (struct fetch_arg){.url = u};
        cr_assert_eq(pthread_create(&th[i], NULL, fetch_thread, &args[i]), 0);
    }
    int good = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (args[i].ok && args[i].status == 200)
            good++;
    }
    free(u);
    cr_assert_eq(good, N);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* 1 when the peer has closed fd (EOF or reset), 0 while it is open and quiet. */
static int peer_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) == 0)
        return 0;
    char c;
    return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

/* GET path on a fresh connection; returns the status (0 when none) and the
 * time it took in *secs. */
static int timed_get(int port, const char *path, double limit_s, double *secs)
{
    double t0 = qs_test_now_s();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int st = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        char req[256];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
        if (send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req)) {
            struct rstream r;
            rs_init(&r, fd);
            char *resp = rs_next(&r, limit_s, 0);
            if (resp != NULL && strncmp(resp, "HTTP/1.1 ", 9) == 0)
                st = atoi(resp + 9);
            free(resp);
            rs_free(&r);
        }
    }
    close(fd);
    *secs = qs_test_now_s() - t0;
    return st;
}

/* The connection cap is not a kill switch: at the cap, a new connection
 * pushes out the oldest idle one instead of being refused. */
Test(serve, connection_cap_sheds_the_oldest_idle_connection)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    enum { CAP = 256 };
    int fds[CAP];
    /* Let the start-up probe's connection finish closing. */
    usleep(300000);
    /* Idle connections that never send a request fill every slot. */
    for (int i = 0; i < CAP; i++) {
        fds[i] = connect_raw(d.port);
        if (i % 64 == 63)
            usleep(50000); /* accepted in order, oldest first */
    }
    usleep(300000);
    for (int i = 0; i < CAP; i++)
        cr_assert_eq(peer_closed(fds[i]), 0, "idle connection %d closed early", i);
    /* A request at the cap is served... */
    double secs;
    int st = timed_get(d.port, "/healthz", 5, &secs);
    cr_assert_eq(st, 200, "healthz at the cap answered %d after %.2f s", st, secs);
    cr_assert_lt(secs, 1.0, "healthz took %.2f s", secs);
    /* ...at the expense of the oldest idle connection, not the newest */
    usleep(100000);
    cr_assert_eq(peer_closed(fds[0]), 1, "the oldest idle connection is still open");
    cr_assert_eq(peer_closed(fds[CAP - 1]), 0, "the newest idle connection was closed");
    char *mt = qs_test_daemon_metrics(&d);
    cr_assert_geq(qs_test_metric(mt, "qsnap_http_connections_shed_total"), 1.0, "%s", mt);
    cr_assert_eq(qs_test_metric(mt, "qsnap_http_connections_refused_total"), 0.0, "%s", mt);
    free(mt);
    for (int i = 0; i < CAP; i++)
        close(fds[i]);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* A client that has sent part of its request outranks idle connections, and
 * while the slots are mostly taken new connections get a short head
 * deadline. */
Test(serve, started_requests_outlive_idle_floods_and_deadlines_shrink_under_pressure)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    usleep(300000);
    int partial = connect_raw(d.port);
    const char *head = "GET /healthz HTTP/1.1\r\nHost: a\r\n";
    cr_assert_eq(send(partial, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    usleep(100000);
    enum { N = 400 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = connect_raw(d.port);
    usleep(300000);
    cr_assert_eq(peer_closed(partial), 0, "a started request was shed for idle connections");
    /* 400 idle connections for 256 slots: the oldest 144 are gone */
    int closed = 0;
    for (int i = 0; i < N; i++)
        closed += peer_closed(fds[i]);
    cr_assert(closed >= N - 256, "only %d idle connections were shed", closed);
    cr_assert_eq(send(partial, "\r\n", 2, MSG_NOSIGNAL), 2);
    struct rstream rs;
    rs_init(&rs, partial);
    char *resp = rs_next(&rs, 5, 0);
    cr_assert_not_null(resp);
    cr_assert_eq(strncmp(resp, "HTTP/1.1 200 ", 13), 0, "%s", resp);
    free(resp);
    rs_free(&rs);
    close(partial);
    /* Under pressure a new idle connection is cut after about 2 s, not 10 s. */
    int late = connect_raw(d.port);
    double t0 = qs_test_now_s();
    while (qs_test_now_s() - t0 < 8 && !peer_closed(late))
        usleep(50000);
    double after = qs_test_now_s() - t0;
    cr_assert(after >= 1.5 && after < 4.0, "an idle connection under pressure lasted %.2f s",
              after);
    close(late);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* ---- keep-alive and pipelining ------------------------------------------------------ */

/* Sends req on r's connection and returns the next answer (owned); fails the
 * test when none comes within 5 s. */
static char *ka_request(struct rstream *r, const char *req)
{
    cr_assert_eq(send(r->fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    char *resp = rs_next(r, 5, strncmp(req, "HEAD ", 5) == 0);
    cr_assert_not_null(resp, "no answer to %.80s (connection closed: %d)", req, r->eof);
    return resp;
}

static int status_of(const char *resp)
{
    return strncmp(resp, "HTTP/1.1 ", 9) == 0 ? atoi(resp + 9) : 0;
}

/* The value of a header in an answer's head (owned), or NULL. */
static char *answer_header(const char *resp, const char *name)
{
    const char *end = strstr(resp, "\r\n\r\n");
    char *head = strndup(resp, end != NULL ? (size_t)(end - resp) + 2 : strlen(resp));
    cr_assert_not_null(head);
    char *v = header_value(strchr(head, '\n') + 1, name);
    free(head);
    return v;
}

static int says_close(const char *resp)
{
    char *v = answer_header(resp, "Connection");
    int close_ = v != NULL && strcasecmp(v, "close") == 0;
    free(v);
    return close_;
}

static double accepted_total(const struct qs_test_daemon *d)
{
    char *mt = qs_test_daemon_metrics(d);
    double v = qs_test_metric(mt, "qsnap_http_connections_accepted_total");
    free(mt);
    return v;
}

/* One connection carries every kind of request, answers of every kind and
 * size, and stays open; the server counts it once. */
Test(serve, keep_alive_serves_many_requests_on_one_connection)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    double a0 = accepted_total(&d);
    int fd = connect_raw(d.port);
    struct rstream r;
    rs_init(&r, fd);
    const struct {
        const char *req;
        int status;
        const char *body;
    } seq[] = {
        {"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 200, "\r\n\r\n{\"status\":\"ok\"}"},
        {"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", 200, "# TYPE qsnap_build_info gauge\n"},
        {"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 200, NULL},
        {"GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n", 503, "\"error\":"},
        {"GET /metrics HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n", 200, NULL},
        {"GET /v1/backups HTTP/1.1\r\nHost: a\r\n\r\n", 200, "{\"backups\":[]}"},
        {"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", 200,
         "{\"status\":\"ok\"}"},
    };
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
            char *resp = ka_request(&r, seq[i].req);
            cr_assert_eq(status_of(resp), seq[i].status, "%s -> %.200s", seq[i].req, resp);
            cr_assert(!says_close(resp), "%s -> %.300s", seq[i].req, resp);
            if (seq[i].body != NULL)
                cr_assert_not_null(strstr(resp, seq[i].body), "%s -> %.300s", seq[i].req, resp);
            if (strncmp(seq[i].req, "HEAD ", 5) == 0)
                cr_assert_str_eq(strstr(resp, "\r\n\r\n"), "\r\n\r\n");
            if (strstr(seq[i].req, "gzip") != NULL) {
                char *ce = answer_header(resp, "Content-Encoding");
                cr_assert_not_null(ce, "%.300s", resp);
                cr_assert_str_eq(ce, "gzip");
                free(ce);
            }
            free(resp);
        }
    }
    cr_assert_eq(peer_closed(fd), 0, "the server closed the kept-alive connection");
    /* One connection for those 21 requests, one for each scrape here
     * (computed metrics are at most 1 s old). */
    usleep(1100000);
    double a1 = accepted_total(&d);
    cr_assert_eq(a1 - a0, 2.0, "%.0f connections accepted for one kept-alive client", a1 - a0);
    rs_free(&r);
    close(fd);

    /* HTTP/1.0 keeps the connection only when asked to, and says so. */
    fd = connect_raw(d.port);
    rs_init(&r, fd);
    for (int i = 0; i < 2; i++) {
        char *resp = ka_request(&r, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        cr_assert_eq(status_of(resp), 200);
        char *conn = answer_header(resp, "Connection");
        cr_assert_not_null(conn, "%s", resp);
        cr_assert_str_eq(conn, "keep-alive");
        free(conn);
        free(resp);
    }
    char *resp = ka_request(&r, "GET /healthz HTTP/1.0\r\n\r\n");
    cr_assert(says_close(resp), "%s", resp);
    free(resp);
    cr_assert(rs_closes(&r, 5), "an HTTP/1.0 request without keep-alive left it open");
    rs_free(&r);
    close(fd);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* `Connection: close` from the client, and HTTP/1.0 without keep-alive, end
 * the connection after the answer. */
Test(serve, connection_close_and_http10_end_the_connection)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    char *resp = raw_request_closing(
        d.port, "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    cr_assert_eq(status_of(resp), 200, "%s", resp);
    free(resp);
    resp = raw_request_closing(d.port, "GET /healthz HTTP/1.0\r\n\r\n");
    cr_assert_eq(status_of(resp), 200, "%s", resp);
    free(resp);
    /* the same after other requests on a kept-alive connection, also for a
     * request the server refuses */
    const char *last[] = {"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
                          "GET /nope HTTP/1.1\r\nConnection: Close\r\n\r\n"};
    for (size_t i = 0; i < 2; i++) {
        int fd = connect_raw(d.port);
        struct rstream r;
        rs_init(&r, fd);
        resp = ka_request(&r, "GET /healthz HTTP/1.1\r\n\r\n");
        cr_assert(!says_close(resp));
        free(resp);
        resp = ka_request(&r, last[i]);
        cr_assert(says_close(resp), "%s", resp);
        free(resp);
        cr_assert(rs_closes(&r, 5), "Connection: close was not honoured");
        rs_free(&r);
        close(fd);
    }
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* Requests written at once are answered one after the other, in order, also
 * when a route answers later from the thread pool (GET /v1/backups lists the
 * destination there), whatever the split of the bytes. */
Test(serve, pipelined_requests_are_answered_in_order)
{
    struct qs_test_daemon d;
    const char *tok[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, NULL};
    start(&d, tok);
    static const char pipeline[] =
        "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET /v1/backups HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
        "POST /v1/restore HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " TOKEN "\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        "GET /v1/backups?collection=c1 HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
        "HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET /v1/backups HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    const struct {
        int status;
        const char *body;
        int head;
    } want[] = {
        {200, "\r\n\r\n{\"status\":\"ok\"}", 0},
        {200, "\r\n\r\n{\"backups\":[]}", 0},
        {200, "\r\n\r\n{\"status\":\"ok\"}", 0},
        {400, "field 'collection': required", 0},
        {200, "\r\n\r\n{\"backups\":[]}", 0},
        {404, "not found", 0},
        {200, NULL, 1},
        {200, "# TYPE process_open_fds gauge", 0},
        {200, "\r\n\r\n{\"backups\":[]}", 0},
        {200, "\r\n\r\n{\"status\":\"ok\"}", 0},
    };
    size_t n = sizeof(want) / sizeof(want[0]);
    int fd = connect_raw(d.port);
    struct rstream r;
    rs_init(&r, fd);
    /* all at once, then in 5-byte pieces, then one byte at a time, on the
     * same connection */
    size_t pieces[] = {sizeof(pipeline) - 1, 5, 1};
    for (size_t k = 0; k < 3; k++) {
        for (size_t off = 0; off < sizeof(pipeline) - 1; off += pieces[k]) {
            size_t len =
                sizeof(pipeline) - 1 - off < pieces[k] ? sizeof(pipeline) - 1 - off : pieces[k];
            cr_assert_eq(send(fd, pipeline + off, len, MSG_NOSIGNAL), (ssize_t)len);
        }
        for (size_t i = 0; i < n; i++) {
            char *resp = rs_next(&r, 5, want[i].head);
            cr_assert_not_null(resp, "pieces of %zu: answer %zu missing (closed: %d)", pieces[k], i,
                               r.eof);
            cr_assert_eq(status_of(resp), want[i].status, "pieces of %zu, answer %zu: %.300s",
                         pieces[k], i, resp);
            cr_assert(!says_close(resp), "%.300s", resp);
            if (want[i].body != NULL)
                cr_assert_not_null(strstr(resp, want[i].body), "pieces of %zu, answer %zu: %.300s",
                                   pieces[k], i, resp);
            free(resp);
        }
        cr_assert_eq(r.in.len, 0, "more answers than requests: %s", r.in.data);
    }
    /* A client that writes its requests and then finishes sending still
     * gets every answer, then the connection closes. */
    cr_assert_eq(send(fd, pipeline, sizeof(pipeline) - 1, MSG_NOSIGNAL),
                 (ssize_t)sizeof(pipeline) - 1);
    shutdown(fd, SHUT_WR);
    for (size_t i = 0; i < n; i++) {
        char *resp = rs_next(&r, 5, want[i].head);
        cr_assert_not_null(resp, "after the client's FIN: answer %zu missing", i);
        cr_assert_eq(status_of(resp), want[i].status, "answer %zu: %.300s", i, resp);
        cr_assert_eq(says_close(resp), i == n - 1, "answer %zu: %.300s", i, resp);
        free(resp);
    }
    cr_assert(rs_closes(&r, 5));
    rs_free(&r);
    close(fd);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* Opens a connection, has GET /healthz answered on it (kept alive), sends req
 * and returns its answer (owned); *closed tells whether the server then
 * closed the connection (within 3 s). */
static char *after_a_kept_alive_request(int port, const char *req, int *closed)
{
    int fd = connect_raw(port);
    struct rstream r;
    rs_init(&r, fd);
    char *resp = ka_request(&r, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert_eq(status_of(resp), 200);
    cr_assert(!says_close(resp));
    free(resp);
    cr_assert_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    resp = rs_next(&r, 5, 0);
    cr_assert_not_null(resp, "no answer to %.80s", req);
    *closed = rs_closes(&r, 3);
    rs_free(&r);
    close(fd);
    return resp;
}

/* Every limit of the endpoint holds per request on a kept-alive connection;
 * an error that leaves the request stream in an unknown state closes the
 * connection, one answered for a complete request does not. */
Test(serve, limits_hold_per_request_on_a_kept_alive_connection)
{
    struct qs_test_daemon d;
    const char *tok[] = {"QSNAP_ADMIN_TOKEN=" TOKEN, NULL};
    start(&d, tok);
    struct qs_buf big_head;
    qs_buf_init(&big_head);
    qs_buf_printf(&big_head, "GET /healthz HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 9000; i++)
        qs_buf_append(&big_head, "x", 1);
    qs_buf_printf(&big_head, "\r\n\r\n");
    const struct {
        const char *req;
        int status;
        int closes;
    } cases[] = {
        /* complete requests: answered, the connection goes on */
        {"GET /nope HTTP/1.1\r\n\r\n", 404, 0},
        {"DELETE /healthz HTTP/1.1\r\n\r\n", 405, 0},
        {"POST /v1/backup HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 401, 0},
        {"GET /healthz?x=1 HTTP/1.1\r\n\r\n", 400, 0},
        {"POST /v1/restore HTTP/1.1\r\nAuthorization: Bearer " TOKEN
         "\r\nContent-Length: 5\r\n\r\n{\"a\":",
         400, 0},
        /* the stream is left in an unknown state: answered, then closed */
        {"POST /v1/restore HTTP/1.1\r\nAuthorization: Bearer " TOKEN
         "\r\nContent-Length: 65537\r\n\r\n",
         413, 1},
        {big_head.data, 431, 1},
        {"GARBAGE\r\n\r\n", 400, 1},
        {"GET /x/../healthz HTTP/1.1\r\n\r\n", 400, 1},
        {"POST /v1/restore HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 401, 1}, /* body unread */
        {"GET /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 400, 1},     /* body unread */
        {"GET /healthz HTTP/2.0\r\n\r\n", 505, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int closed;
        char *resp = after_a_kept_alive_request(d.port, cases[i].req, &closed);
        cr_assert_eq(status_of(resp), cases[i].status, "case %zu: %.200s", i, resp);
        cr_assert_eq(says_close(resp), cases[i].closes, "case %zu: %.300s", i, resp);
        cr_assert_eq(closed, cases[i].closes, "case %zu: closed %d", i, closed);
        free(resp);
    }
    qs_buf_free(&big_head);

    /* After a 404 the next request on the connection still works; after a
     * 413 nothing more is read. */
    int fd = connect_raw(d.port);
    struct rstream r;
    rs_init(&r, fd);
    char *resp = ka_request(&r, "GET /nope HTTP/1.1\r\n\r\n");
    cr_assert_eq(status_of(resp), 404);
    free(resp);
    resp = ka_request(&r, "GET /healthz HTTP/1.1\r\n\r\n");
    cr_assert_eq(status_of(resp), 200);
    free(resp);
    resp = ka_request(&r, "POST /healthz HTTP/1.1\r\nContent-Length: 70000\r\n\r\n"
                          "GET /healthz HTTP/1.1\r\n\r\n");
    cr_assert_eq(status_of(resp), 413, "%s", resp);
    free(resp);
    cr_assert(rs_closes(&r, 5), "a request after a 413 was answered");
    rs_free(&r);
    close(fd);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* The request deadline runs from the first byte of each request on a
 * kept-alive connection: a connection may wait between requests longer than
 * the deadline, but a client trickling its next request is cut off when the
 * deadline expires, while other clients, kept-alive or new, are served. */
Test(serve, slow_client_on_a_kept_alive_connection_is_cut_off)
{
    struct qs_test_daemon d;
    const char *extra[] = {"QSNAP_TEST_HTTP_TIMEOUT_MS=2000", NULL};
    start(&d, extra);
    int fd = connect_raw(d.port), other = connect_raw(d.port);
    struct rstream r, ro;
    rs_init(&r, fd);
    rs_init(&ro, other);
    char *resp = ka_request(&r, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert_eq(status_of(resp), 200);
    free(resp);
    resp = ka_request(&ro, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert_eq(status_of(resp), 200);
    free(resp);
    /* waiting between requests for longer than the request deadline is fine */
    usleep(2600000);
    cr_assert_eq(peer_closed(fd), 0, "a kept-alive connection was cut off by the request deadline");
    resp = ka_request(&r, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert_eq(status_of(resp), 200);
    free(resp);
    /* the next request trickles in, one byte per 250 ms */
    const char *req =
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    double t0 = qs_test_now_s(), closed_at = -1, worst = 0;
    int served = 0;
    for (size_t i = 0; i < strlen(req) && closed_at < 0; i++) {
        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1) {
            closed_at = qs_test_now_s();
            break;
        }
        /* meanwhile: a new connection and another kept-alive one */
        double h0 = qs_test_now_s();
        struct qs_test_resp h;
        cr_assert_eq(qs_test_http("GET", url(&d, "/healthz"), NULL, NULL, 0, &h), 0);
        cr_assert_eq(h.status, 200);
        qs_test_resp_free(&h);
        resp = ka_request(&ro, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        cr_assert_eq(status_of(resp), 200);
        free(resp);
        served++;
        if (qs_test_now_s() - h0 > worst)
            worst = qs_test_now_s() - h0;
        double next = h0 + 0.25;
        while (qs_test_now_s() < next) {
            if (peer_closed(fd)) {
                closed_at = qs_test_now_s();
                break;
            }
            usleep(10000);
        }
    }
    cr_assert_geq(closed_at, 0, "the slow client was never cut off");
    double after = closed_at - t0;
    cr_assert(after >= 1.5 && after <= 3.0, "cut off %.2f s after its request began (deadline 2 s)",
              after);
    cr_assert_lt(worst, 0.5, "others took %.2f s while a slow client was connected", worst);
    cr_assert_geq(served, 5);
    cr_assert_eq(peer_closed(other), 0, "the other kept-alive connection was closed");
    usleep(1100000);
    char *mt = qs_test_daemon_metrics(&d);
    cr_assert_eq(qs_test_metric(mt, "qsnap_http_connections_timed_out_total"), 1.0, "%s", mt);
    free(mt);
    rs_free(&r);
    rs_free(&ro);
    close(fd);
    close(other);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* A connection waiting between requests is the first closed to make room:
 * before idle connections that are older. */
Test(serve, kept_alive_idle_connections_are_shed_first)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    enum { CAP = 256, BEFORE = 200 };
    int fds[CAP];
    usleep(300000);
    /* (everything below happens well within the 2 s deadlines of a busy
     * moment) */
    for (int i = 0; i < BEFORE; i++)
        fds[i] = connect_raw(d.port);
    int ka = connect_raw(d.port);
    struct rstream r;
    rs_init(&r, ka);
    char *resp = ka_request(&r, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert(!says_close(resp), "%s", resp);
    free(resp);
    /* BEFORE idle + the kept-alive one take 201 slots: the 56th new idle
     * connection needs room */
    for (int i = BEFORE; i < CAP; i++)
        fds[i] = connect_raw(d.port);
    usleep(300000);
    cr_assert(rs_closes(&r, 0.5), "the kept-alive connection was not shed first");
    for (int i = 0; i < CAP; i++)
        cr_assert_eq(peer_closed(fds[i]), 0, "idle connection %d was closed", i);
    char *mt = qs_test_daemon_metrics(&d);
    cr_assert_geq(qs_test_metric(mt, "qsnap_http_connections_shed_total"), 1.0, "%s", mt);
    free(mt);
    rs_free(&r);
    close(ka);
    for (int i = 0; i < CAP; i++)
        close(fds[i]);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* At shutdown the connections that wait between requests are closed at
 * once, while the daemon still finishes its work. */
Test(serve, shutdown_closes_kept_alive_connections)
{
    struct qs_test_daemon d;
    const char *extra[] = {"QSNAP_TEST_SHUTDOWN_DELAY_MS=3000", NULL};
    start(&d, extra);
    int fd = connect_raw(d.port);
    struct rstream r;
    rs_init(&r, fd);
    char *resp = ka_request(&r, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert(!says_close(resp));
    free(resp);
    double t0 = qs_test_now_s();
    kill(d.pid, SIGTERM);
    cr_assert(rs_closes(&r, 2), "a kept-alive connection outlived the shutdown request");
    cr_assert_lt(qs_test_now_s() - t0, 1.0);
    cr_assert_eq(waitpid(d.pid, NULL, WNOHANG), 0, "exited before its work ended");
    rs_free(&r);
    close(fd);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
}

/* ---- the flood acceptance test ---------------------------------------------------- */

/* Keeps n idle connections open against port, reconnecting every one the
 * server closes, until stop is set. */
struct flood {
    int port;
    int n;
    int *fds;
    atomic_int stop; /* set by the test, read by the flood thread */
    unsigned long reconnects;
    pthread_t th;
};

static int connect_nonblocking(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *flood_thread(void *p)
{
    struct flood *f = p;
    struct pollfd *pf = calloc((size_t)f->n, sizeof(*pf));
    while (!atomic_load(&f->stop)) {
        for (int i = 0; i < f->n; i++) {
            pf[i].fd = f->fds[i];
            pf[i].events = POLLIN;
            pf[i].revents = 0;
        }
        if (poll(pf, (nfds_t)f->n, 20) <= 0)
            continue;
        for (int i = 0; i < f->n && !atomic_load(&f->stop); i++) {
            if (pf[i].revents == 0)
                continue;
            char c;
            if (pf[i].fd >= 0 && recv(pf[i].fd, &c, 1, MSG_DONTWAIT) > 0)
                continue; /* never happens: an idle connection gets no answer */
            if (f->fds[i] >= 0)
                close(f->fds[i]);
            f->fds[i] = connect_nonblocking(f->port);
            f->reconnects++;
        }
    }
    free(pf);
    return NULL;
}

static void flood_start(struct flood *f, int port, int n)
{
    memset(f, 0, sizeof(*f));
    f->port = port;
    f->n = n;
    f->fds = calloc((size_t)n, sizeof(int));
    cr_assert_not_null(f->fds);
    for (int i = 0; i < n; i++) {
        f->fds[i] = connect_nonblocking(port);
        cr_assert_geq(f->fds[i], 0, "connection %d: %s", i, strerror(errno));
    }
    cr_assert_eq(pthread_create(&f->th, NULL, flood_thread, f), 0);
}

static void flood_stop(struct flood *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    for (int i = 0; i < f->n; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    free(f->fds);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sets this process's soft open-file limit (the flood needs 1,000+ sockets);
 * returns the previous one. */
static rlim_t set_nofile(rlim_t soft)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rlim_t before = rl.rlim_cur;
    rl.rlim_cur = soft < rl.rlim_max ? soft : rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    return before;
}

/* With 1,000 idle connections held open against the port (every one the
 * server closes is opened again at once), GET /healthz answers 200 within
 * 1 s in 20 of 20 tries, and a backup running at the same time completes.
 * The daemon starts with a soft open-file limit of 1024, as many containers
 * do, and raises it itself. Prints the measured figures. */
Test(serve, healthz_answers_under_a_flood_of_1000_idle_connections, .timeout = 240)
{
    struct rlimit hard;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &hard), 0);
    rlim_t hard_max = hard.rlim_max;
    cr_assert(hard_max == RLIM_INFINITY || hard_max >= 1400,
              "the hard open-file limit (%llu) is too low for this test",
              (unsigned long long)hard_max);
    struct qs_test_standin qd;
    cr_assert_eq(qs_test_standin_start(&qd, NULL), 0, "Qdrant stand-in did not start");
    struct qs_test_resp r;
    char cu[160];
    snprintf(cu, sizeof(cu), "%s/__standin/collections", qd.url);
    const char *json[] = {"Content-Type: application/json", NULL};
    const char *coll = "{\"name\":\"flood\",\"size_mib\":48,\"dim\":256}";
    cr_assert_eq(qs_test_http("POST", cu, json, coll, strlen(coll), &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    qs_test_resp_free(&r);
    /* Snapshot creation takes 2 s and the stream is throttled, so the backup
     * is running while health is probed. */
    snprintf(cu, sizeof(cu), "%s/__standin/faults", qd.url);
    const char *delay = "{\"create_delay_s\":2}";
    cr_assert_eq(qs_test_http("POST", cu, json, delay, strlen(delay), &r), 0);
    qs_test_resp_free(&r);

    char qurl[128];
    snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=%s", qd.url);
    char *env[] = {dest_env,
                   "QSNAP_SCHEDULE=off",
                   qurl,
                   "QSNAP_ADMIN_TOKEN=" TOKEN,
                   "QSNAP_MAX_BANDWIDTH=12MiB/s",
                   "QSNAP_LOG_LEVEL=info",
                   NULL};
    rlim_t own = set_nofile(1024);
    struct qs_test_daemon d;
    int rc = qs_test_daemon_start(&d, env);
    set_nofile(hard_max == RLIM_INFINITY ? 65536 : hard_max);
    (void)own;
    cr_assert_eq(rc, 0, "daemon did not start");

    /* The daemon raised its soft limit to the hard one (at most 65536). */
    char *mt = qs_test_daemon_metrics(&d);
    double max_fds = qs_test_metric(mt, "process_max_fds");
    free(mt);
    double want = hard_max == RLIM_INFINITY || hard_max > 65536 ? 65536 : (double)hard_max;
    cr_assert_eq(max_fds, want, "process_max_fds %.0f, want %.0f", max_fds, want);

    struct flood f;
    flood_start(&f, d.port, 1000);
    usleep(500000);

    /* A backup started during the flood... */
    const char *auth[] = {"Authorization: Bearer " TOKEN, NULL};
    cr_assert_eq(qs_test_http("POST", url(&d, "/v1/backup?collection=flood"), auth, "", 0, &r), 0);
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    char job[64] = "";
    const char *jp = strstr(r.body, "\"job\":\"");
    cr_assert_not_null(jp, "%s", r.body);
    sscanf(jp + 7, "%63[^\"]", job);
    qs_test_resp_free(&r);

    /* ...while health is probed 20 times. */
    int slow = getenv("QSNAP_TEST_VALGRIND") != NULL && *getenv("QSNAP_TEST_VALGRIND") != '\0';
    double limit = slow ? 10.0 : 1.0;
    enum { TRIES = 20 };
    double lat[TRIES];
    int good = 0, running_during = 0;
    for (int i = 0; i < TRIES; i++) {
        int st = timed_get(d.port, "/healthz", 5, &lat[i]);
        if (st == 200 && lat[i] < limit)
            good++;
        else
            fprintf(stderr, "flood: try %d answered %d after %.3f s\n", i, st, lat[i]);
        if (i == TRIES - 1) {
            char jurl[128];
            snprintf(jurl, sizeof(jurl), "/v1/jobs/%s", job);
            if (qs_test_http("GET", url(&d, jurl), NULL, NULL, 0, &r) == 0 &&
                strstr(r.body, "\"state\":\"running\"") != NULL)
                running_during = 1;
            qs_test_resp_free(&r);
        }
        usleep(100000);
    }
    mt = qs_test_daemon_metrics(&d);
    double accepted = qs_test_metric(mt, "qsnap_http_connections_accepted_total");
    double shed = qs_test_metric(mt, "qsnap_http_connections_shed_total");
    double refused = qs_test_metric(mt, "qsnap_http_connections_refused_total");
    double timed_out = qs_test_metric(mt, "qsnap_http_connections_timed_out_total");
    double open = qs_test_metric(mt, "qsnap_http_connections_open");
    free(mt);

    /* The backup completes, flood or not. */
    double end = qs_test_now_s() + 120;
    int done = 0;
    char state[200] = "";
    while (qs_test_now_s() < end && !done) {
        char jurl[128];
        snprintf(jurl, sizeof(jurl), "/v1/jobs/%s", job);
        if (qs_test_http("GET", url(&d, jurl), NULL, NULL, 0, &r) == 0) {
            const char *sp = strstr(r.body, "\"state\":\"");
            if (sp != NULL)
                sscanf(sp + 9, "%199[^\"]", state);
            done = strcmp(state, "running") != 0 && strcmp(state, "queued") != 0;
        }
        qs_test_resp_free(&r);
        if (!done)
            usleep(200000);
    }
    unsigned long reconnects = f.reconnects;
    flood_stop(&f);

    qsort(lat, TRIES, sizeof(double), cmp_double);
    fprintf(stderr,
            "flood figures: 1000 idle connections held (%lu reconnected after being shed); "
            "healthz %d/%d answered 200 within %.1f s; latency min %.1f ms, median %.1f ms, "
            "p95 %.1f ms, max %.1f ms; server: %.0f connections accepted, %.0f shed, %.0f "
            "refused, %.0f timed out, %.0f open; backup running during the tries: %s, final "
            "state %s\n",
            reconnects, good, TRIES, limit, lat[0] * 1000, lat[TRIES / 2] * 1000,
            lat[(TRIES * 95) / 100 - 1] * 1000, lat[TRIES - 1] * 1000, accepted, shed, refused,
            timed_out, open, running_during ? "yes" : "no", state);
    cr_assert_eq(good, TRIES, "healthz answered 200 within %.1f s in %d of %d tries", limit, good,
                 TRIES);
    cr_assert(running_during, "the backup was not running during the health tries");
    cr_assert_str_eq(state, "succeeded");
    cr_assert_geq(shed, 700.0, "the flood was not held against the port (%.0f shed)", shed);
    cr_assert_eq(refused, 0.0);
    /* the backup is at the destination */
    char mdir[700];
    snprintf(mdir, sizeof(mdir), "%s/flood", dest_dir);
    DIR *dd = opendir(mdir);
    cr_assert_not_null(dd, "no backup directory %s", mdir);
    int manifests = 0;
    for (struct dirent *e; (e = readdir(dd)) != NULL;)
        manifests += strstr(e->d_name, ".json") != NULL && e->d_name[0] != '.';
    closedir(dd);
    cr_assert_eq(manifests, 1);
    cr_assert_eq(qs_test_daemon_stop(&d, 10), 0);
    qs_test_standin_stop(&qd);
}

Test(serve, listens_on_ipv6_loopback)
{
    int port = qs_test_free_port();
    char listen[64];
    snprintf(listen, sizeof(listen), "QSNAP_LISTEN=[::1]:%d", port);
    struct qs_test_daemon d;
    /* Started by hand: the helper polls the IPv4 address. */
    memset(&d, 0, sizeof(d));
    char *dir = qs_test_mkdtemp("serve6");
    char logp[600];
    snprintf(logp, sizeof(logp), "%s/log", dir);
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "serve", NULL};
    char *env[] = {listen, dest_env, "QSNAP_SCHEDULE=off", "QSNAP_QDRANT_URL=http://127.0.0.1:9",
                   NULL};
    pid_t pid = qs_test_spawn(argv, env, logp);
    cr_assert_gt(pid, 0);
    char u[128];
    snprintf(u, sizeof(u), "http://[::1]:%d/healthz", port);
    int rc = qs_test_wait_http(u, 20);
    kill(pid, SIGTERM);
    int st = -1;
    if (qs_test_wait_exit(pid, 5, &st) != 0)
        qs_test_kill(pid);
    char *log = qs_test_read_file(logp, NULL);
    cr_assert_eq(rc, 0, "no answer on [::1]; log:\n%s", log);
    cr_assert_not_null(strstr(log, "listening on [::1]:"), "%s", log);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(log);
    qs_test_rmrf(dir);
    free(dir);
}

Test(serve, port_in_use_fails_with_exit_1)
{
    /* Hold a listening socket on a port, then ask qsnap to bind it. */
    int hold = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    cr_assert_eq(bind(hold, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(hold, 1), 0);
    cr_assert_eq(getsockname(hold, (struct sockaddr *)&a, &alen), 0);
    char listen_env[64];
    snprintf(listen_env, sizeof(listen_env), "QSNAP_LISTEN=127.0.0.1:%d", ntohs(a.sin_port));
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "serve", NULL};
    char *env[] = {listen_env, dest_env, "QSNAP_SCHEDULE=off", NULL};
    char *out = NULL;
    int rc = qs_test_run(argv, env, &out);
    close(hold);
    cr_assert_eq(rc, 1, "exit %d: %s", rc, out);
    cr_assert_not_null(strstr(out, "cannot start"), "%s", out);
    cr_assert_not_null(strstr(out, "address already in use"), "%s", out);
    free(out);
}

/* ---- shutdown ---------------------------------------------------------------------- */

/* Sends sig and waits; returns the wait status, the elapsed time and the log
 * (owned), then cleans up through the helper. */
static int signal_and_wait(struct qs_test_daemon *d, int sig, double timeout_s, double *elapsed,
                           char **log)
{
    double t0 = qs_test_now_s();
    kill(d->pid, sig);
    int st = -1;
    int rc = qs_test_wait_exit(d->pid, timeout_s, &st);
    *elapsed = qs_test_now_s() - t0;
    if (rc != 0)
        st = -1;
    else
        d->pid = -1; /* reaped */
    *log = qs_test_read_file(d->log, NULL);
    qs_test_daemon_stop(d, 1);
    return st;
}

Test(serve, sigterm_when_idle_exits_0_fast_with_clean_loop)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    double el;
    char *log;
    int st = signal_and_wait(&d, SIGTERM, 5, &el, &log);
    cr_assert(st != -1, "did not exit; log:\n%s", log);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x; log:\n%s", st, log);
    cr_assert_lt(el, 1.0, "took %.2f s", el);
    cr_assert_not_null(strstr(log, "listening on 127.0.0.1:"), "%s", log);
    cr_assert_not_null(strstr(log, "shutdown requested (SIGTERM)"), "%s", log);
    cr_assert_not_null(strstr(log, "\"msg\":\"loop closed\""), "%s", log);
    free(log);
}

Test(serve, sigint_when_idle_exits_0)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    double el;
    char *log;
    int st = signal_and_wait(&d, SIGINT, 5, &el, &log);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x; log:\n%s", st, log);
    cr_assert_lt(el, 1.0);
    cr_assert_not_null(strstr(log, "\"msg\":\"loop closed\""), "%s", log);
    free(log);
}

Test(serve, shutdown_waits_for_running_work)
{
    struct qs_test_daemon d;
    const char *extra[] = {"QSNAP_TEST_SHUTDOWN_DELAY_MS=1500", NULL};
    start(&d, extra);
    double t0 = qs_test_now_s();
    kill(d.pid, SIGTERM);
    usleep(500000);
    cr_assert_eq(waitpid(d.pid, NULL, WNOHANG), 0, "exited before the work ended");
    /* New connections are no longer accepted. */
    struct qs_test_resp r;
    cr_assert_neq(qs_test_http("GET", url(&d, "/healthz"), NULL, NULL, 0, &r), 0);
    qs_test_resp_free(&r);
    int st = -1;
    cr_assert_eq(qs_test_wait_exit(d.pid, 5, &st), 0);
    double el = qs_test_now_s() - t0;
    d.pid = -1;
    char *log = qs_test_read_file(d.log, NULL);
    qs_test_daemon_stop(&d, 1);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x; log:\n%s", st, log);
    cr_assert(el >= 1.4 && el < 3.0, "took %.2f s", el);
    cr_assert_not_null(strstr(log, "\"msg\":\"loop closed\""), "%s", log);
    free(log);
}

Test(serve, second_sigint_exits_at_once)
{
    struct qs_test_daemon d;
    const char *extra[] = {"QSNAP_TEST_SHUTDOWN_DELAY_MS=30000", NULL};
    start(&d, extra);
    double t0 = qs_test_now_s();
    kill(d.pid, SIGINT);
    usleep(200000);
    cr_assert_eq(waitpid(d.pid, NULL, WNOHANG), 0, "first signal should not exit yet");
    kill(d.pid, SIGINT);
    int st = -1;
    int rc = qs_test_wait_exit(d.pid, 5, &st);
    double el = qs_test_now_s() - t0;
    if (rc == 0)
        d.pid = -1;
    char *log = qs_test_read_file(d.log, NULL);
    qs_test_daemon_stop(&d, 1);
    cr_assert_eq(rc, 0, "still running; log:\n%s", log);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
    cr_assert_lt(el, 1.0, "took %.2f s", el);
    cr_assert_not_null(strstr(log, "second signal (SIGINT)"), "%s", log);
    free(log);
}

Test(serve, shutdown_deadline_exits_0_within_25s)
{
    struct qs_test_daemon d;
    const char *extra[] = {"QSNAP_TEST_SHUTDOWN_DELAY_MS=120000", NULL};
    start(&d, extra);
    double el;
    char *log;
    int st = signal_and_wait(&d, SIGTERM, 30, &el, &log);
    cr_assert(st != -1, "did not exit within 30 s; log:\n%s", log);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
    cr_assert(el >= 15 && el < 25, "took %.2f s", el);
    cr_assert_not_null(strstr(log, "shutdown deadline"), "%s", log);
    free(log);
}

/* ---- deferred answers, in process (the server on a private loop) ------------- */

struct async_ctx {
    uv_loop_t loop;
    struct qs_http_server *srv;
    struct qs_http_req *held;
    uv_timer_t timer;
    int port;
    int closed_before_answer;
    int done;
    char reply[512];
    int gone_mode; /* 1: the client leaves before the answer; 2: the request is dropped */
    int client_eof;
    int answered;
};

static void slow_handler(struct qs_http_req *req, void *ud)
{
    struct async_ctx *c = ud;
    c->held = req; /* answered later from a timer */
}

static void server_closed(void *ud)
{
    struct async_ctx *c = ud;
    c->done = 1;
}

static void answer_cb(uv_timer_t *t)
{
    struct async_ctx *c = t->data;
    if (c->held == NULL) {
        uv_timer_start(&c->timer, answer_cb, 20, 0);
        return;
    }
    if (c->gone_mode == 2) {
        cr_assert_eq(qs_http_req_closed(c->held), 0);
        qs_http_req_free(c->held);
    } else if (c->gone_mode) {
        /* Close the server first: the pending request is detached... */
        qs_http_server_close(c->srv, server_closed, c);
        c->closed_before_answer = qs_http_req_closed(c->held);
        /* ...and answering it is still safe (the answer is dropped). */
        qs_http_respond(c->held, 200, "text/plain", "late", 4);
    } else {
        cr_assert_eq(qs_http_req_closed(c->held), 0);
        qs_http_respond(c->held, 200, "text/plain", "deferred", 8);
    }
    c->held = NULL;
    c->answered = 1;
    uv_close((uv_handle_t *)&c->timer, NULL);
}

static void *async_client(void *p)
{
    struct async_ctx *c = p;
    int fd = connect_raw(c->port);
    const char *req = "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n";
    send(fd, req, strlen(req), MSG_NOSIGNAL);
    if (c->gone_mode == 1) {
        close(fd);
        return NULL;
    }
    struct rstream r;
    rs_init(&r, fd);
    char *resp = rs_next(&r, 5, 0);
    c->client_eof = r.eof;
    qs_strlcpy(c->reply, resp != NULL ? resp : "", sizeof(c->reply));
    free(resp);
    rs_free(&r);
    close(fd);
    return NULL;
}

static void run_async(struct async_ctx *c)
{
    cr_assert_eq(uv_loop_init(&c->loop), 0);
    cr_assert_eq(qs_http_server_new(&c->loop, NULL, &c->srv), 0);
    cr_assert_eq(qs_http_route(c->srv, "GET", "/slow", slow_handler, c), 0);
    cr_assert_eq(qs_http_server_listen(c->srv, "127.0.0.1", 0, NULL), 0);
    c->port = qs_http_server_port(c->srv);
    cr_assert_gt(c->port, 0);
    uv_timer_init(&c->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, answer_cb, c->gone_mode == 1 ? 300 : 100, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, async_client, c), 0);
    if (c->gone_mode != 1) {
        /* Stop once the client has its answer and the server is closed. */
        while (uv_run(&c->loop, UV_RUN_ONCE) != 0 &&
               (!c->answered || qs_http_server_connections(c->srv) > 0))
            ;
        pthread_join(th, NULL);
        qs_http_server_close(c->srv, server_closed, c);
    } else {
        pthread_join(th, NULL);
    }
    uv_run(&c->loop, UV_RUN_DEFAULT);
    cr_assert_eq(c->done, 1);
    cr_assert_eq(uv_loop_close(&c->loop), 0);
}

Test(serve_async, deferred_answer_reaches_the_client)
{
    struct async_ctx c;
    memset(&c, 0, sizeof(c));
    run_async(&c);
    cr_assert_eq(strncmp(c.reply, "HTTP/1.1 200 ", 13), 0, "%s", c.reply);
    const char *body = strstr(c.reply, "\r\n\r\n");
    cr_assert_not_null(body);
    cr_assert_str_eq(body + 4, "deferred");
}

Test(serve_async, answer_after_the_connection_is_gone_is_safe)
{
    struct async_ctx c;
    memset(&c, 0, sizeof(c));
    c.gone_mode = 1;
    run_async(&c);
    cr_assert_eq(c.closed_before_answer, 1);
}

Test(serve_async, dropped_request_hangs_up)
{
    struct async_ctx c;
    memset(&c, 0, sizeof(c));
    c.gone_mode = 2;
    run_async(&c);
    cr_assert_eq(c.client_eof, 1);
    cr_assert_str_eq(c.reply, "");
}

/* ---- a route's unanswered requests are bounded ------------------------------ */

struct pending_ctx {
    struct qs_http_req *held[8];
    int nheld;
    int port;
    atomic_int phase; /* 1: the client has seen the 503 and the quick answer */
    atomic_int client_done;
    char third[512], quick[512], first[512], second[512];
};

static void hold_handler(struct qs_http_req *req, void *ud)
{
    struct pending_ctx *c = ud;
    cr_assert_lt(c->nheld, 8);
    c->held[c->nheld++] = req;
}

static void quick_handler(struct qs_http_req *req, void *ud)
{
    (void)ud;
    qs_http_respond(req, 200, "text/plain", "quick", 5);
}

static int send_get(int port, const char *path)
{
    int fd = connect_raw(port);
    char req[128];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", path);
    cr_assert_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    return fd;
}

static void read_reply(int fd, char *out, size_t cap)
{
    struct rstream r;
    rs_init(&r, fd);
    char *resp = rs_next(&r, 5, 0);
    qs_strlcpy(out, resp != NULL ? resp : "", cap);
    free(resp);
    rs_free(&r);
    close(fd);
}

static void *pending_client(void *p)
{
    struct pending_ctx *c = p;
    int f1 = send_get(c->port, "/slow");
    int f2 = send_get(c->port, "/slow");
    usleep(200000);
    read_reply(send_get(c->port, "/slow"), c->third, sizeof(c->third));
    read_reply(send_get(c->port, "/quick"), c->quick, sizeof(c->quick));
    atomic_store(&c->phase, 1);
    read_reply(f1, c->first, sizeof(c->first));
    read_reply(f2, c->second, sizeof(c->second));
    atomic_store(&c->client_done, 1);
    return NULL;
}

static void pending_closed(void *ud)
{
    *(int *)ud = 1;
}

/* A route whose handler holds requests (work on the thread pool) takes at
 * most max_pending of them; more get 503 at once, and other routes are not
 * affected. */
Test(serve_async, a_route_holds_at_most_max_pending_requests)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct qs_http_server *srv;
    struct qs_http_server_opts o = {.max_pending = 2};
    cr_assert_eq(qs_http_server_new(&loop, &o, &srv), 0);
    struct pending_ctx c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(qs_http_route(srv, "GET", "/slow", hold_handler, &c), 0);
    cr_assert_eq(qs_http_route(srv, "GET", "/quick", quick_handler, &c), 0);
    cr_assert_eq(qs_http_server_listen(srv, "127.0.0.1", 0, NULL), 0);
    c.port = qs_http_server_port(srv);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, pending_client, &c), 0);
    double end = qs_test_now_s() + 10;
    while (!atomic_load(&c.phase) && qs_test_now_s() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    cr_assert_eq(c.nheld, 2);
    struct qs_http_server_stats st;
    qs_http_server_stats(srv, &st);
    cr_assert_eq(st.busy, 1);
    for (int i = 0; i < c.nheld; i++)
        qs_http_respond(c.held[i], 200, "text/plain", "late", 4);
    while (!atomic_load(&c.client_done) && qs_test_now_s() < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    pthread_join(th, NULL);
    cr_assert_eq(strncmp(c.third, "HTTP/1.1 503 ", 13), 0, "%s", c.third);
    cr_assert_not_null(strstr(c.third, "Retry-After: 1\r\n"), "%s", c.third);
    cr_assert_not_null(strstr(c.third, "too many requests to this endpoint"), "%s", c.third);
    cr_assert_eq(strncmp(c.quick, "HTTP/1.1 200 ", 13), 0, "%s", c.quick);
    cr_assert_eq(strncmp(c.first, "HTTP/1.1 200 ", 13), 0, "%s", c.first);
    cr_assert_eq(strncmp(c.second, "HTTP/1.1 200 ", 13), 0, "%s", c.second);
    int closed = 0;
    qs_http_server_close(srv, pending_closed, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(closed, 1);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* ---- keep-alive on the server itself: idle timeout, request cap, order ------- */

struct ka_ctx {
    uv_loop_t loop;
    struct qs_http_server *srv;
    int port;
    atomic_int client_done;
    /* /slow: held, answered from a timer */
    struct qs_http_req *held;
    uv_timer_t timer;
    int timer_ready;
    int quick_calls;
    int quick_calls_when_slow_answered;
    /* /cached */
    int cached_calls;
    struct qs_http_gzip_cache cache;
    /* what the client saw */
    char answers[6][4096];
    size_t answer_len[6];
    int nanswers;
    double answered_at[6];
    double idle_closed_after;
    int closed_after_cap;
};

static void ka_quick(struct qs_http_req *req, void *ud)
{
    struct ka_ctx *c = ud;
    c->quick_calls++;
    qs_http_respond(req, 200, "text/plain", "quick", 5);
}

static void ka_answer_slow(uv_timer_t *t)
{
    struct ka_ctx *c = t->data;
    c->quick_calls_when_slow_answered = c->quick_calls;
    qs_http_respond(c->held, 200, "text/plain", "deferred", 8);
    c->held = NULL;
}

static void ka_slow(struct qs_http_req *req, void *ud)
{
    struct ka_ctx *c = ud;
    c->held = req;
    uv_timer_start(&c->timer, ka_answer_slow, 300, 0);
}

/* Four calls: body A as version 1; body B, still claiming version 1 (so a
 * gzipped answer can only be A: the cache, no new deflate); B as version 1
 * without gzip; B as version 2. */
static void ka_cached(struct qs_http_req *req, void *ud)
{
    struct ka_ctx *c = ud;
    static char a[2000], b[2000];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    int n = c->cached_calls++;
    const char *body = n == 0 ? a : b;
    uint64_t version = n < 3 ? 1 : 2;
    qs_http_respond_cached(req, 200, "text/plain", NULL, body, sizeof(a), 0, version, &c->cache);
}

static void ka_closed(void *ud)
{
    *(int *)ud = 1;
}

/* Runs a server with opts (borrowed) and the routes above, and client(c) on a
 * thread until it is done; then closes everything. */
static void ka_run(struct ka_ctx *c, const struct qs_http_server_opts *opts,
                   void *(*client)(void *))
{
    cr_assert_eq(uv_loop_init(&c->loop), 0);
    cr_assert_eq(qs_http_server_new(&c->loop, opts, &c->srv), 0);
    cr_assert_eq(qs_http_route(c->srv, "GET", "/quick", ka_quick, c), 0);
    cr_assert_eq(qs_http_route(c->srv, "GET", "/slow", ka_slow, c), 0);
    cr_assert_eq(qs_http_route(c->srv, "GET", "/cached", ka_cached, c), 0);
    cr_assert_eq(qs_http_server_listen(c->srv, "127.0.0.1", 0, NULL), 0);
    c->port = qs_http_server_port(c->srv);
    uv_timer_init(&c->loop, &c->timer);
    c->timer.data = c;
    qs_http_gzip_cache_init(&c->cache);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, client, c), 0);
    double end = qs_test_now_s() + 20;
    while (!atomic_load(&c->client_done) && qs_test_now_s() < end) {
        uv_run(&c->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    pthread_join(th, NULL);
    cr_assert(atomic_load(&c->client_done), "the client did not finish");
    int closed = 0;
    uv_close((uv_handle_t *)&c->timer, NULL);
    qs_http_server_close(c->srv, ka_closed, &closed);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    cr_assert_eq(closed, 1);
    cr_assert_eq(uv_loop_close(&c->loop), 0);
    qs_http_gzip_cache_deinit(&c->cache);
}

static void ka_keep(struct ka_ctx *c, struct rstream *r, const char *req)
{
    cr_assert_eq(send(r->fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    size_t len;
    char *resp = rs_next_len(r, 5, 0, &len);
    cr_assert_not_null(resp, "no answer to %s", req);
    cr_assert_lt(len, sizeof(c->answers[0]));
    memcpy(c->answers[c->nanswers], resp, len + 1);
    c->answer_len[c->nanswers] = len;
    c->answered_at[c->nanswers++] = qs_test_now_s();
    free(resp);
}

static void *idle_client(void *p)
{
    struct ka_ctx *c = p;
    int fd = connect_raw(c->port);
    struct rstream r;
    rs_init(&r, fd);
    /* two waits shorter than the idle timeout, 600 ms in all: each request
     * starts the wait anew */
    ka_keep(c, &r, "GET /quick HTTP/1.1\r\n\r\n");
    usleep(250000);
    ka_keep(c, &r, "GET /quick HTTP/1.1\r\n\r\n");
    usleep(250000);
    ka_keep(c, &r, "GET /quick HTTP/1.1\r\n\r\n");
    double t0 = qs_test_now_s();
    c->idle_closed_after = rs_closes(&r, 5) ? qs_test_now_s() - t0 : -1;
    rs_free(&r);
    close(fd);
    atomic_store(&c->client_done, 1);
    return NULL;
}

/* A kept-alive connection that sends nothing more is closed after the idle
 * timeout, which is no request deadline (not counted as timed out). */
Test(serve_async, idle_timeout_closes_an_idle_kept_alive_connection)
{
    struct ka_ctx c;
    memset(&c, 0, sizeof(c));
    struct qs_http_server_opts o = {.idle_ms = 400};
    ka_run(&c, &o, idle_client);
    cr_assert_eq(c.nanswers, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(status_of(c.answers[i]), 200, "%s", c.answers[i]);
        cr_assert(!says_close(c.answers[i]), "%s", c.answers[i]);
    }
    cr_assert(c.idle_closed_after >= 0.3 && c.idle_closed_after < 1.5,
              "closed %.2f s after the last answer (idle timeout 0.4 s)", c.idle_closed_after);
}

static void *cap_client(void *p)
{
    struct ka_ctx *c = p;
    int fd = connect_raw(c->port);
    struct rstream r;
    rs_init(&r, fd);
    for (int i = 0; i < 3; i++)
        ka_keep(c, &r, "GET /quick HTTP/1.1\r\n\r\n");
    c->closed_after_cap = rs_closes(&r, 3);
    rs_free(&r);
    close(fd);
    /* pipelined past the cap: three answers, the rest is never read */
    fd = connect_raw(c->port);
    rs_init(&r, fd);
    const char *five = "GET /quick HTTP/1.1\r\n\r\nGET /quick HTTP/1.1\r\n\r\n"
                       "GET /quick HTTP/1.1\r\n\r\nGET /quick HTTP/1.1\r\n\r\n"
                       "GET /quick HTTP/1.1\r\n\r\n";
    cr_assert_eq(send(fd, five, strlen(five), MSG_NOSIGNAL), (ssize_t)strlen(five));
    for (int i = 0; i < 3; i++) {
        char *resp = rs_next(&r, 5, 0);
        cr_assert_not_null(resp);
        qs_strlcpy(c->answers[c->nanswers++], resp, sizeof(c->answers[0]));
        free(resp);
    }
    if (!rs_closes(&r, 3))
        c->closed_after_cap = 0;
    rs_free(&r);
    close(fd);
    atomic_store(&c->client_done, 1);
    return NULL;
}

/* A connection carries at most max_requests requests: the last answer says
 * `Connection: close` and the connection ends. */
Test(serve_async, request_cap_per_connection)
{
    struct ka_ctx c;
    memset(&c, 0, sizeof(c));
    struct qs_http_server_opts o = {.max_requests = 3};
    ka_run(&c, &o, cap_client);
    cr_assert_eq(c.nanswers, 6);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(status_of(c.answers[i]), 200, "%s", c.answers[i]);
        cr_assert_eq(says_close(c.answers[i]), i % 3 == 2, "answer %d: %s", i, c.answers[i]);
    }
    cr_assert_eq(c.closed_after_cap, 1, "the connection stayed open past the cap");
    cr_assert_eq(c.quick_calls, 6, "requests past the cap reached the handler");
}

static void *order_client(void *p)
{
    struct ka_ctx *c = p;
    int fd = connect_raw(c->port);
    struct rstream r;
    rs_init(&r, fd);
    const char *three = "GET /quick HTTP/1.1\r\n\r\nGET /slow HTTP/1.1\r\n\r\n"
                        "GET /quick HTTP/1.1\r\n\r\n";
    double t0 = qs_test_now_s();
    cr_assert_eq(send(fd, three, strlen(three), MSG_NOSIGNAL), (ssize_t)strlen(three));
    for (int i = 0; i < 3; i++) {
        char *resp = rs_next(&r, 5, 0);
        cr_assert_not_null(resp);
        qs_strlcpy(c->answers[c->nanswers], resp, sizeof(c->answers[0]));
        c->answered_at[c->nanswers++] = qs_test_now_s() - t0;
        free(resp);
    }
    rs_free(&r);
    close(fd);
    atomic_store(&c->client_done, 1);
    return NULL;
}

/* A handler that answers later holds back the pipelined requests after its
 * own: they are not even parsed before its answer has gone out. */
Test(serve_async, deferred_answers_keep_pipelined_order)
{
    struct ka_ctx c;
    memset(&c, 0, sizeof(c));
    ka_run(&c, NULL, order_client);
    cr_assert_eq(c.nanswers, 3);
    const char *bodies[] = {"\r\n\r\nquick", "\r\n\r\ndeferred", "\r\n\r\nquick"};
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(strstr(c.answers[i], bodies[i]), "answer %d: %s", i, c.answers[i]);
    cr_assert_lt(c.answered_at[0], 0.25, "the first answer waited for the deferred one");
    cr_assert_geq(c.answered_at[1], 0.25);
    cr_assert_eq(c.quick_calls_when_slow_answered, 1,
                 "the request after the deferred one was handled before it");
}

static void *cached_client(void *p)
{
    struct ka_ctx *c = p;
    int fd = connect_raw(c->port);
    struct rstream r;
    rs_init(&r, fd);
    const char *gz = "GET /cached HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n";
    ka_keep(c, &r, gz);
    ka_keep(c, &r, gz);
    ka_keep(c, &r, "GET /cached HTTP/1.1\r\n\r\n");
    ka_keep(c, &r, gz);
    rs_free(&r);
    close(fd);
    atomic_store(&c->client_done, 1);
    return NULL;
}

/* The gzip form of a body is made once per version: a second gzipped answer
 * for the same version is the cached one (here it proves it by claiming the
 * old version for new bytes), a new version is compressed anew. */
Test(serve_async, gzip_is_cached_per_version)
{
    struct ka_ctx c;
    memset(&c, 0, sizeof(c));
    ka_run(&c, NULL, cached_client);
    cr_assert_eq(c.nanswers, 4);
    const char want[] = {'a', 'a', 'b', 'b'};
    for (int i = 0; i < 4; i++) {
        char *ce = answer_header(c.answers[i], "Content-Encoding");
        cr_assert_eq(ce != NULL, i != 2, "answer %d: %.300s", i, c.answers[i]);
        const char *body = strstr(c.answers[i], "\r\n\r\n") + 4;
        char *cl = answer_header(c.answers[i], "Content-Length");
        size_t len = strtoul(cl, NULL, 10);
        cr_assert_eq(len, c.answer_len[i] - (size_t)(body - c.answers[i]));
        size_t n = len;
        char *text = ce != NULL ? gunzip(body, len, &n) : strndup(body, len);
        cr_assert_eq(n, 2000, "answer %d", i);
        for (size_t k = 0; k < n; k++)
            cr_assert_eq(text[k], want[i], "answer %d byte %zu", i, k);
        free(text);
        free(ce);
        free(cl);
    }
}

static void *overflow_client(void *p)
{
    struct ka_ctx *c = p;
    int fd = connect_raw(c->port);
    struct rstream r;
    rs_init(&r, fd);
    /* a held request, then more than the 16 KiB the server buffers meanwhile,
     * which is no request at all */
    struct qs_buf b;
    qs_buf_init(&b);
    qs_buf_printf(&b, "GET /slow HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 24000; i++)
        qs_buf_append(&b, "X", 1);
    cr_assert_eq(send(fd, b.data, b.len, MSG_NOSIGNAL), (ssize_t)b.len);
    qs_buf_free(&b);
    for (int i = 0; i < 2; i++) {
        char *resp = rs_next(&r, 5, 0);
        cr_assert_not_null(resp, "answer %d missing", i);
        qs_strlcpy(c->answers[c->nanswers++], resp, sizeof(c->answers[0]));
        free(resp);
    }
    shutdown(fd, SHUT_WR);
    c->closed_after_cap = rs_closes(&r, 5) && !r.reset;
    rs_free(&r);
    close(fd);
    atomic_store(&c->client_done, 1);
    return NULL;
}

/* Bytes that arrive while a request is held are buffered up to 16 KiB, then
 * reading pauses; garbage among them is answered 400 after the held answer,
 * and the connection then only drains and closes (nothing else is read as a
 * request, nothing else is answered). */
Test(serve_async, pipelined_garbage_past_the_buffer_is_refused_once)
{
    struct ka_ctx c;
    memset(&c, 0, sizeof(c));
    ka_run(&c, NULL, overflow_client);
    cr_assert_eq(c.nanswers, 2);
    cr_assert_not_null(strstr(c.answers[0], "\r\n\r\ndeferred"), "%s", c.answers[0]);
    cr_assert_eq(status_of(c.answers[1]), 400, "%s", c.answers[1]);
    cr_assert(says_close(c.answers[1]), "%s", c.answers[1]);
    cr_assert_eq(c.closed_after_cap, 1, "more came after the 400, or no clean close");
}
