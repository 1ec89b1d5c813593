/* Small HTTP/1.1 server on libuv + http_parser: the daemon's endpoint.
 *
 * Runs entirely on the loop thread.
 *
 * Persistent connections: an HTTP/1.1 connection carries further requests
 * unless the request says `Connection: close`; an HTTP/1.0 one only when it
 * says `Connection: keep-alive` (the answer then says so too). Pipelined
 * requests are answered one at a time, in order: the next request is read
 * only once the answer to the previous one has been handed to the kernel, so
 * a handler that answers later (from the thread pool) keeps the order too.
 * Bytes that arrive meanwhile are buffered (16 KiB, then the server stops
 * reading until it has caught up). A connection answered
 * max_requests times (default 1000) gets `Connection: close` on its last
 * answer. Between requests a connection waits at most idle_ms (default 75
 * s, longer than a one-minute scrape interval) for the first byte of the
 * next one. The server also answers with `Connection: close` and closes
 * when the request stream is in an unknown state (a parse error, 413, 431,
 * or a request refused before its body was read), when the client has
 * finished sending, when every reading slot is taken, and once it stops
 * accepting (shutdown), when it also closes the connections that wait
 * between requests. After the last answer it shuts down its side, drains
 * what the client still sends (briefly) and closes.
 *
 * Limits (struct qs_http_server_opts), for every request on a connection:
 * request head <= 8 KiB (431), body <= 64 KiB (413, rejected as soon as
 * Content-Length or the chunked body exceeds it), and a deadline (default 10
 * s) for receiving the whole request, counted from the connection's accept
 * for its first request and from the first byte of each later one, and for
 * writing the answer; the deadline is not extended by progress, so a client
 * trickling one byte per second is cut off when it expires.
 *
 * Connection floods: at most max_conns connections (default 256) may be
 * reading a request at a time; a connection waiting between requests counts
 * as reading. The cap protects the server without ever turning it off: when
 * a new connection arrives at the cap, the server closes the connection that
 * has waited longest between requests, else the oldest connection that has
 * sent nothing, else the one that has waited longest without completing its
 * request head, else the oldest one still sending its body, and serves the
 * new one; so a client that sends its request promptly (a health probe) is
 * answered however many idle connections are held open. What a client sent
 * right after connecting is read as soon as the connection is accepted
 * (libuv accepts a whole backlog before it polls again), so a probe is
 * answered within that batch and is never taken for idle; the kernel's
 * accept queue is 4096 deep (capped by net.core.somaxconn), so a flood does
 * not make it drop a probe's SYN. While more than half of the slots are
 * taken, a new connection, or a new request on a kept-alive one, gets 2 s
 * instead of the full deadline to send its head, and an answered connection
 * waits at most 2 s for its next request. Connections a handler holds or
 * that are being answered do not take reading slots; every open connection,
 * lingering ones included, is bounded by 4 x max_conns and by the open-file
 * limit (RLIMIT_NOFILE minus a reserve for the rest of the process), beyond
 * which the oldest lingering, then waiting-between-requests, then idle, then
 * incomplete connection is closed. Only when nothing can be closed does a new
 * connection get a 503.
 *
 * Each route holds at most max_pending (default 16) unanswered requests at a
 * time; a request beyond that is answered 503 (with Retry-After) before its
 * handler runs, so one slow route can never hold every connection.
 *
 * Routing: exact paths, and prefix routes (a route path ending in '/', e.g.
 * "/v1/jobs/", matches every longer path below it; exact routes win, then the
 * longest prefix). Unknown path: 404. Known path, wrong method: 405 with an
 * `Allow` header. HEAD is served only by GET routes (the GET handler runs and
 * the body is dropped); HEAD on a POST-only path is a 405, so HEAD never
 * reaches a POST handler.
 *
 * Routes declare what they accept (struct qs_http_route_opts): the query
 * parameters (any other, a repeated one or a malformed query is a 400 naming
 * the parameter) and whether the bearer token is required (401/403). The
 * server checks route, token and parameters as soon as the request head is
 * complete, before reading the body and before the handler runs; only then
 * does it answer `Expect: 100-continue` with 100 Continue. A request to a GET
 * route must not carry a body (400), so only requests that passed their
 * route's checks ever hold a slot while a body arrives. Chunked trailers
 * are read and dropped: they never become request headers.
 *
 * Paths are percent-decoded once and must be normalised: "//", "." and ".."
 * segments, "%2F", "%00", control characters and malformed escapes are
 * answered with 400 before routing.
 *
 * Handlers answer synchronously or later: a handler that returns without
 * calling qs_http_respond*() keeps the request pending, and must call
 * qs_http_respond*() exactly once later, on the loop thread -- also when the
 * client has gone in the meantime (then the answer is dropped and the request
 * freed; qs_http_req_closed() tells). The request object stays valid until
 * that answer. While a handler holds a request the server buffers what the
 * client sends next (pipelined requests) without parsing it: a client that
 * resets the connection is noticed at once (qs_http_req_closed() turns 1),
 * one that has only finished sending still gets its answers.
 */
#ifndef QSNAP_HTTP_H
#define QSNAP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/util.h"

#define QS_HTTP_DEFAULT_TIMEOUT_MS 10000
#define QS_HTTP_DEFAULT_MAX_CONNS 256
#define QS_HTTP_DEFAULT_MAX_HEAD 8192
#define QS_HTTP_DEFAULT_MAX_BODY 65536
#define QS_HTTP_DEFAULT_MAX_PENDING 16
#define QS_HTTP_DEFAULT_IDLE_MS 75000
#define QS_HTTP_DEFAULT_MAX_REQUESTS 1000
#define QS_HTTP_MAX_HEADERS 64
/* Bodies at least this large are gzipped when the client accepts it. */
#define QS_HTTP_GZIP_MIN 1024

/* Zero fields take the defaults above. */
struct qs_http_server_opts {
    uint64_t timeout_ms; /* deadline to receive a request / write a response */
    size_t max_conns;    /* connections reading a request at once */
    size_t max_head;
    size_t max_body;
    size_t max_pending;  /* unanswered requests per route */
    uint64_t idle_ms;    /* keep-alive: wait for the next request on a connection */
    size_t max_requests; /* requests per connection (1 = no keep-alive) */
};

/* Counters since the server started, and what is open now. */
struct qs_http_server_stats {
    uint64_t accepted;  /* connections accepted */
    uint64_t shed;      /* closed before their request was complete, to make room */
    uint64_t refused;   /* answered 503 because nothing could be closed to make room */
    uint64_t timed_out; /* cut off by the deadline before their request was complete */
    uint64_t busy;      /* requests answered 503 because their route had max_pending */
    size_t open;        /* connections open now */
    size_t reading;     /* of those, reading a request or waiting for the next one */
};

struct qs_http_server;
struct qs_http_req;

/* A route handler. req is borrowed until the handler (or a later caller)
 * responds; ud is the pointer given to qs_http_route(). */
typedef void (*qs_http_handler_fn)(struct qs_http_req *req, void *ud);

/* ---- server ----------------------------------------------------------------- */

/* Creates a server on loop (borrowed; must outlive the server). opts borrowed,
 * may be NULL. Does not listen yet. Returns 0 or UV_ENOMEM; *out owned by the
 * caller, released with qs_http_server_close(). */
int qs_http_server_new(uv_loop_t *loop, const struct qs_http_server_opts *opts,
                       struct qs_http_server **out);

/* Binds host (an IPv4 or IPv6 literal, optionally in brackets; "localhost";
 * "" or "*" for all IPv4 interfaces) and port (0 = any) and starts accepting.
 * host borrowed. Returns 0 or a negative UV_E* code with the reason in err
 * (borrowed, may be NULL). */
int qs_http_server_listen(struct qs_http_server *s, const char *host, int port,
                          struct qs_error *err);

/* The bound port (after listen), or -1. */
int qs_http_server_port(const struct qs_http_server *s);

/* Stops accepting new connections; connections in progress continue. */
void qs_http_server_stop_accepting(struct qs_http_server *s);

/* Number of open connections. */
size_t qs_http_server_connections(const struct qs_http_server *s);

/* Fills *out (borrowed) with the server's counters. */
void qs_http_server_stats(const struct qs_http_server *s, struct qs_http_server_stats *out);

/* Sets the bearer token that routes with QS_HTTP_ROUTE_BEARER require (token
 * borrowed and copied; NULL or "" = none configured, then those routes answer
 * 403 with disabled_msg, borrowed and copied, NULL for a default). Returns 0
 * or UV_ENOMEM. */
int qs_http_server_set_bearer(struct qs_http_server *s, const char *token,
                              const char *disabled_msg);

/* Closes the listener and every connection, then frees the server and calls
 * done(ud) from the loop (done may be NULL). Requests still pending on a
 * handler stay valid until answered (the answer is then dropped). done may
 * run before this returns when nothing was open. NULL s is accepted (done is
 * not called then). */
void qs_http_server_close(struct qs_http_server *s, void (*done)(void *ud), void *ud);

enum {
    QS_HTTP_ROUTE_BEARER = 1, /* requires `Authorization: Bearer <token>` (401/403) */
};

/* What a route accepts. Zeroed (or NULL) = no query parameters, no token. */
struct qs_http_route_opts {
    const char *const *params; /* accepted query parameter names, NULL-terminated */
    unsigned flags;            /* QS_HTTP_ROUTE_* */
};

/* Adds a route. method ("GET", "POST", ...) and path are copied; a path
 * ending in '/' (other than "/") is a prefix route. opts borrowed (copied),
 * may be NULL; ud borrowed. Returns 0, QS_EINVAL (bad method/path, or the
 * same method+path twice) or UV_ENOMEM. */
int qs_http_route_ex(struct qs_http_server *s, const char *method, const char *path,
                     qs_http_handler_fn fn, void *ud, const struct qs_http_route_opts *opts);

/* qs_http_route_ex() with no query parameters and no token. */
int qs_http_route(struct qs_http_server *s, const char *method, const char *path,
                  qs_http_handler_fn fn, void *ud);

/* Route lookup as the server does it (exposed for tests): returns 0 and the
 * handler in *fn and *ud (and the matched route path's length in *prefix_len,
 * may be NULL), 404 for no route on this path, or 405 with the allowed
 * methods written into allow ("GET, HEAD", capacity allow_cap, may be NULL).
 * HEAD matches GET routes. All pointers borrowed. */
int qs_http_match(const struct qs_http_server *s, const char *method, const char *path,
                  qs_http_handler_fn *fn, void **ud, size_t *prefix_len, char *allow,
                  size_t allow_cap);

/* ---- requests (all strings borrowed from req, valid until it is answered) -- */

const char *qs_http_req_method(const struct qs_http_req *req); /* "HEAD" for HEAD */
const char *qs_http_req_path(const struct qs_http_req *req);   /* decoded, validated */
/* The part of the path after a prefix route ("abc" for /v1/jobs/abc on the
 * route "/v1/jobs/"); "" for exact routes. */
const char *qs_http_req_path_rest(const struct qs_http_req *req);
const char *qs_http_req_query(const struct qs_http_req *req); /* raw, "" when none */
/* First header with that name (case-insensitive), or NULL. */
const char *qs_http_req_header(const struct qs_http_req *req, const char *name);
/* Body bytes (NUL-terminated for convenience) and length; "" when none. */
const char *qs_http_req_body(const struct qs_http_req *req, size_t *len);
/* Decoded query parameter into out (cap bytes): see qs_http_query_get(). */
int qs_http_req_query_param(const struct qs_http_req *req, const char *name, char *out, size_t cap);
/* 1 when the connection may carry another request after this one: HTTP/1.1
 * without `Connection: close`, HTTP/1.0 with `Connection: keep-alive`, and
 * never a protocol upgrade. */
int qs_http_req_keep_alive(const struct qs_http_req *req);
/* 1 once the client connection has closed (an answer would be dropped). */
int qs_http_req_closed(const struct qs_http_req *req);

/* ---- responses (loop thread only; exactly once per request) ------------------ */

/* Sends status with a body (copied; may be NULL when len is 0). content_type
 * borrowed (NULL = none). Gzips when the request accepts gzip and len >=
 * QS_HTTP_GZIP_MIN. After this call req must not be used. */
void qs_http_respond(struct qs_http_req *req, int status, const char *content_type,
                     const void *body, size_t len);

enum {
    QS_HTTP_GZIP_ALWAYS = 1, /* gzip whenever the client accepts it, whatever the size */
};

/* As qs_http_respond, plus extra_headers (borrowed, "Name: value\r\n" lines,
 * may be NULL) and flags (QS_HTTP_GZIP_*). */
void qs_http_respond_ex(struct qs_http_req *req, int status, const char *content_type,
                        const char *extra_headers, const void *body, size_t len, unsigned flags);

/* The gzip form of a body that is answered many times unchanged (e.g. the
 * /metrics exposition between two renders), made on the first request that
 * accepts gzip and kept until the body's version changes. Caller storage,
 * loop thread only: qs_http_gzip_cache_init(), qs_http_gzip_cache_deinit(). */
struct qs_http_gzip_cache {
    struct qs_buf gz; /* owned */
    uint64_t version;
    int valid;
};

void qs_http_gzip_cache_init(struct qs_http_gzip_cache *c);
void qs_http_gzip_cache_deinit(struct qs_http_gzip_cache *c);

/* As qs_http_respond_ex() for a body (borrowed) whose bytes are identified by
 * version: the same version must always come with the same bytes. When the
 * answer is gzipped, the gzip form held in cache (borrowed) is used if it
 * was made for this version, else it is made now and kept there. */
void qs_http_respond_cached(struct qs_http_req *req, int status, const char *content_type,
                            const char *extra_headers, const void *body, size_t len, unsigned flags,
                            uint64_t version, struct qs_http_gzip_cache *cache);

/* Serialises the response qs_http_respond_ex() would send for req (borrowed,
 * not consumed) into out (borrowed, appended), for a request that is not on a
 * connection: its `Connection` header follows qs_http_req_keep_alive().
 * Returns 0 or UV_ENOMEM. Exposed for tests. */
int qs_http_response_format(const struct qs_http_req *req, int status, const char *content_type,
                            const char *extra_headers, const void *body, size_t len, unsigned flags,
                            struct qs_buf *out);

/* Sends {"error":"message"} (message borrowed, JSON-escaped, and passed
 * through qs_log_redact()) as application/json. */
void qs_http_respond_json_error(struct qs_http_req *req, int status, const char *message);

/* The body qs_http_respond_json_error() sends, appended to body (borrowed):
 * message redacted, cut at 1024 bytes, JSON-escaped. Returns 0 or
 * UV_ENOMEM. Exposed for tests. */
int qs_http_json_error_body(const char *message, struct qs_buf *body);

/* Bearer token check for POST routes, comparing in constant time.
 * token borrowed (the configured admin token, NULL when unset). Returns 0
 * when the request carries `Authorization: Bearer <token>`, 403 when no token
 * is configured, 401 when the header is missing or wrong. */
int qs_http_bearer_ok(const struct qs_http_req *req, const char *token);

/* Reason phrase of a status ("Not Found"); never NULL. */
const char *qs_http_status_text(int status);

/* ---- pure helpers (exposed for tests) --------------------------------------- */

/* Decodes and validates a raw request path (borrowed) into out (cap bytes).
 * Returns 0, or QS_EINVAL (not starting with '/', "//", "." or ".." segments,
 * encoded '/', NUL or control characters, malformed escapes) or QS_ETOOBIG. */
int qs_http_path_decode(const char *raw, size_t len, char *out, size_t cap);

/* Finds name in a raw query string ("a=1&b=x%20y"; borrowed) and decodes the
 * first value ('+' is a space) into out (cap bytes). Returns 1 when found, 0
 * when absent, QS_EINVAL for malformed escapes or %00, QS_ETOOBIG when the
 * value does not fit. A parameter without '=' has the value "". */
int qs_http_query_get(const char *query, const char *name, char *out, size_t cap);

/* Checks a raw query string (borrowed, "" when none) against the accepted
 * parameter names (borrowed, NULL-terminated; NULL = none accepted). Returns
 * 0, or QS_EINVAL with a message naming the parameter in msg (cap bytes):
 * an unknown name (names are case-sensitive), a name given twice, an empty
 * parameter ("a=1&&b=2"), or a malformed escape or %00 in a name or value. */
int qs_http_query_check(const char *query, const char *const *allowed, char *msg, size_t cap);

/* 1 when an Accept-Encoding value (borrowed, may be NULL) allows gzip:
 * "gzip" or "x-gzip" with q > 0, or "*" with q > 0 when gzip is not listed. */
int qs_http_accepts_gzip(const char *accept_encoding);

/* Gzips len bytes of in (borrowed) into out (borrowed, appended). Returns 0,
 * UV_ENOMEM or QS_EIO. */
int qs_http_gzip(const void *in, size_t len, struct qs_buf *out);

/* Incremental request reader: http_parser plus the limits. Used by the
 * server for each connection; exposed so tests can parse raw bytes. */
struct qs_http_reader;

/* opts borrowed (NULL = defaults). Returns NULL when out of memory; free with
 * qs_http_reader_free(). */
struct qs_http_reader *qs_http_reader_new(const struct qs_http_server_opts *opts);
void qs_http_reader_free(struct qs_http_reader *r);

/* Feeds bytes (borrowed). Returns 0 when more bytes are needed, 1 when a
 * complete request has been read (later bytes are ignored), or a negative
 * code with the HTTP status to answer in *status: 400 malformed, 413 body too
 * large, 431 head too large, 505 unsupported version. */
int qs_http_reader_feed(struct qs_http_reader *r, const char *data, size_t len, int *status);

/* As qs_http_reader_feed(), and *used (borrowed) says how many bytes the
 * reader consumed: all of them, unless a request completed (1); then the
 * bytes after it (the next pipelined request) are left for the caller to
 * feed after qs_http_reader_next(). */
int qs_http_reader_feed_used(struct qs_http_reader *r, const char *data, size_t len, size_t *used,
                             int *status);

/* Readies the reader for the next request on the same connection, once the
 * completed one has been taken. Returns 0; QS_EINVAL when no completed
 * request was taken or the connection cannot carry another one (see
 * qs_http_req_keep_alive()); UV_ENOMEM. */
int qs_http_reader_next(struct qs_http_reader *r);

/* 1 once the request head is complete (e.g. to honour Expect: 100-continue). */
int qs_http_reader_head_done(const struct qs_http_reader *r);

/* Takes the completed request out of the reader (owned by the caller: answer
 * it or free it with qs_http_req_free()). NULL unless feed returned 1. */
struct qs_http_req *qs_http_reader_take(struct qs_http_reader *r);

/* Frees a request without answering it: one from qs_http_reader_take(), or
 * a pending one a module drops at shutdown (its connection, if still open,
 * is closed without an answer). NULL accepted. */
void qs_http_req_free(struct qs_http_req *req);

#endif
