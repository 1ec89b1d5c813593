/* `qsnap serve`: the HTTP endpoint, metrics exposition and shutdown, tested
 * against the real binary on loopback. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
    double end = now_s() + timeout_s;
    *eof = 0;
    while (now_s() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ms = (int)((end - now_s()) * 1000) + 1;
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

/* Sends raw bytes and returns the whole answer (owned). */
static char *raw_request(int port, const char *req)
{
    int fd = connect_raw(port);
    cr_assert_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    int eof;
    char *resp = read_until_eof(fd, 5, &eof);
    close(fd);
    cr_assert(eof, "server did not close the connection after answering");
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
        char *resp = raw_request(d.port, bad[i]);
        cr_assert_eq(strncmp(resp, "HTTP/1.1 400 ", 13), 0, "%s -> %s", bad[i], resp);
        free(resp);
    }
    char *resp = raw_request(d.port, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert_eq(strncmp(resp, "HTTP/1.1 200 ", 13), 0, "%s", resp);
    cr_assert_not_null(strstr(resp, "Connection: close\r\n"));
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
    char *resp = raw_request(d.port, "POST /healthz HTTP/1.1\r\nHost: a\r\n"
                                     "Content-Length: 65537\r\n\r\n");
    cr_assert_eq(strncmp(resp, "HTTP/1.1 413 ", 13), 0, "%s", resp);
    free(resp);

    /* Chunked bodies are cut off as they cross the limit. */
    int fd = connect_raw(d.port);
    const char *head = "POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
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

Test(serve, expect_100_continue)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    int fd = connect_raw(d.port);
    const char *head = "POST /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                       "Content-Length: 3\r\n\r\n";
    cr_assert_eq(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 2000), 1, "no interim answer");
    char buf[64] = {0};
    ssize_t n = recv(fd, buf, strlen("HTTP/1.1 100 Continue\r\n\r\n"), 0);
    cr_assert_gt(n, 0);
    cr_assert_str_eq(buf, "HTTP/1.1 100 Continue\r\n\r\n");
    cr_assert_eq(send(fd, "abc", 3, MSG_NOSIGNAL), 3);
    int eof;
    char *resp = read_until_eof(fd, 5, &eof);
    close(fd);
    cr_assert_eq(strncmp(resp, "HTTP/1.1 405 ", 13), 0, "%s", resp);
    free(resp);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
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
    char *resp = raw_request(d.port, b.data);
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
    double t0 = now_s(), closed_at = -1, worst = 0;
    for (size_t i = 0; i < strlen(req) && closed_at < 0; i++) {
        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1) {
            closed_at = now_s();
            break;
        }
        /* Meanwhile the endpoint answers others quickly. */
        double h0 = now_s();
        struct qs_test_resp r;
        cr_assert_eq(qs_test_http("GET", url(&d, "/healthz"), NULL, NULL, 0, &r), 0);
        cr_assert_eq(r.status, 200);
        qs_test_resp_free(&r);
        if (now_s() - h0 > worst)
            worst = now_s() - h0;
        /* Wait out the rest of the second, watching for the server's close. */
        double next = h0 + 1.0;
        while (now_s() < next) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 50) > 0) {
                char c[256];
                ssize_t n = recv(fd, c, sizeof(c), MSG_DONTWAIT);
                if (n <= 0) {
                    closed_at = now_s();
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

Test(serve, connection_cap_answers_503)
{
    struct qs_test_daemon d;
    start(&d, NULL);
    enum { CAP = 256 };
    int fds[CAP];
    /* Let the start-up probe's connection finish closing: connections count
     * until their close completes. */
    usleep(300000);
    /* Idle connections that never send a request fill every slot. */
    for (int i = 0; i < CAP; i++)
        fds[i] = connect_raw(d.port);
    usleep(300000);
    /* None of them was refused. */
    for (int i = 0; i < CAP; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 0), 0, "idle connection %d got an answer", i);
    }
    int extra = connect_raw(d.port);
    int eof;
    char *resp = read_until_eof(extra, 5, &eof);
    char *log = qs_test_read_file(d.log, NULL);
    cr_assert_eq(strncmp(resp, "HTTP/1.1 503 ", 13), 0, "got '%s' (eof %d); log:\n%s", resp, eof,
                 log);
    free(log);
    cr_assert(eof);
    const char *body = strstr(resp, "\r\n\r\n");
    cr_assert_not_null(body);
    cr_assert_str_eq(body + 4, "{\"error\":\"too many connections\"}");
    cr_assert_not_null(strstr(resp, "Content-Length: 32\r\n"));
    free(resp);
    close(extra);
    for (int i = 0; i < CAP; i++)
        close(fds[i]);
    /* Slots free up again. */
    double end = now_s() + 5;
    long st = 0;
    while (now_s() < end && st != 200) {
        struct qs_test_resp r;
        if (qs_test_http("GET", url(&d, "/healthz"), NULL, NULL, 0, &r) == 0)
            st = r.status;
        qs_test_resp_free(&r);
        if (st != 200)
            usleep(50000);
    }
    cr_assert_eq(st, 200);
    cr_assert_eq(qs_test_daemon_stop(&d, 5), 0);
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
    double t0 = now_s();
    kill(d->pid, sig);
    int st = -1;
    int rc = qs_test_wait_exit(d->pid, timeout_s, &st);
    *elapsed = now_s() - t0;
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
    double t0 = now_s();
    kill(d.pid, SIGTERM);
    usleep(500000);
    cr_assert_eq(waitpid(d.pid, NULL, WNOHANG), 0, "exited before the work ended");
    /* New connections are no longer accepted. */
    struct qs_test_resp r;
    cr_assert_neq(qs_test_http("GET", url(&d, "/healthz"), NULL, NULL, 0, &r), 0);
    qs_test_resp_free(&r);
    int st = -1;
    cr_assert_eq(qs_test_wait_exit(d.pid, 5, &st), 0);
    double el = now_s() - t0;
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
    double t0 = now_s();
    kill(d.pid, SIGINT);
    usleep(200000);
    cr_assert_eq(waitpid(d.pid, NULL, WNOHANG), 0, "first signal should not exit yet");
    kill(d.pid, SIGINT);
    int st = -1;
    int rc = qs_test_wait_exit(d.pid, 5, &st);
    double el = now_s() - t0;
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
    int eof;
    char *resp = read_until_eof(fd, 5, &eof);
    c->client_eof = eof;
    qs_strlcpy(c->reply, resp, sizeof(c->reply));
    free(resp);
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
