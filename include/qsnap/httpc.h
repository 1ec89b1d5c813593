/* The one HTTP client. Every request qsnap sends (Qdrant's REST API, S3,
 * the heartbeat) is one call of qs_httpc_perform() on a libcurl easy handle;
 * the protocol modules only build requests and read answers. This module
 * owns what every peer shares:
 *   - protocols: http and https only, for redirects too (followed only when
 *     a request asks for it); TLS certificates and host names are always
 *     verified, against the system's CAs plus an optional extra CA file;
 *   - limits: connect timeout, whole-request timeout, stall detection (too
 *     few bytes moved for too long), caps on the answers kept in memory;
 *   - cancellation: struct qs_cancel is polled while the transfer runs;
 *   - bodies: a buffer (rewindable), or a source that must produce exactly
 *     its declared length (a source that ends early or goes on fails the
 *     request before its last byte leaves, so a peer never stores a body
 *     that looks complete but is not), with optional framing bytes around it;
 *     answers go to a sink or into a buffer;
 *   - the classification of every failure (qs_httpc_perform) and the backoff
 *     between retries (qs_httpc_backoff_ms).
 * It never retries by itself.
 *
 * Every call BLOCKS: call from worker threads only, never from the libuv
 * loop thread. libcurl's global state is set up once, by
 * qs_httpc_global_init() (main calls it before any thread starts; the first
 * handle created calls it too).
 */
#ifndef QSNAP_HTTPC_H
#define QSNAP_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include "qsnap/error.h"
#include "qsnap/util.h"

/* Error bodies kept for the message: at most this many bytes. */
#define QS_HTTPC_ERRBODY_MAX (64u * 1024u)

/* Sets up libcurl once per process (thread-safe, idempotent). 0 or QS_EIO. */
int qs_httpc_global_init(void);
/* Releases libcurl's global state at exit, after every handle is freed. */
void qs_httpc_global_cleanup(void);

/* ---- handles -------------------------------------------------------------
 * A handle keeps connections open between requests. One thread at a time. */
struct qs_httpc;

/* *out owned by the caller, freed with qs_httpc_free(). 0 or UV_ENOMEM. */
int qs_httpc_new(struct qs_httpc **out);
/* Frees h (owned; NULL is fine). */
void qs_httpc_free(struct qs_httpc *h);

/* Handles shared by threads, for connection reuse. */
struct qs_httpc_pool;

/* A pool keeping at most max idle handles. *out owned by the caller. 0 or
 * UV_ENOMEM. */
int qs_httpc_pool_new(size_t max, struct qs_httpc_pool **out);
/* Frees p and its idle handles (NULL is fine). No handle may be out. */
void qs_httpc_pool_free(struct qs_httpc_pool *p);
/* An idle handle or a new one, owned by the caller until given back; NULL
 * when out of memory. Thread-safe. */
struct qs_httpc *qs_httpc_pool_take(struct qs_httpc_pool *p);
/* Gives h (owned, NULL is fine) back to p, or frees it when p is full. */
void qs_httpc_pool_give(struct qs_httpc_pool *p, struct qs_httpc *h);

/* ---- one request ------------------------------------------------------------ */

/* Limits of a request. Strings borrowed for the request. */
struct qs_httpc_limits {
    long connect_timeout_ms; /* TCP and TLS setup; <= 0: libcurl's default */
    long timeout_ms;         /* the whole exchange; <= 0: none */
    /* Stall detection: the request fails when fewer than
     * stall_bytes_per_s * stall_s bytes (sent and received together) moved
     * within stall_s seconds. stall_s <= 0: off; stall_bytes_per_s <= 0:
     * "not a single byte". Time the request spends waiting for its own
     * source does not count. */
    long stall_s;
    long stall_bytes_per_s;
    int stall_until_sent; /* stop watching once the body is sent (the peer works before answering)
                           */
    const char *ca_file;  /* extra CA certificates (PEM) besides the system's; NULL: none */
    long max_redirects;   /* 0: a redirect is the answer, not followed */
    long upload_buffer;   /* libcurl's upload buffer in bytes; 0: its default */
    long download_buffer; /* libcurl's receive buffer in bytes; 0: its default */
};

/* How a peer words a failed answer. Called for a non-2xx status with the
 * body (borrowed, len bytes; truncated when it was larger than
 * QS_HTTPC_ERRBODY_MAX): writes a short reason into out (cap bytes, "" for
 * none), e.g. "NoSuchKey: The specified key does not exist.", and may refine
 * *code (preset: QS_ENOTFOUND for 404, else QS_EHTTP) and *retryable
 * (preset: 1 for 5xx, 408 and 429). The text must not hold a secret. */
typedef void (*qs_httpc_explain_fn)(void *ud, long status, const char *body, size_t len,
                                    int truncated, char *out, size_t cap, int *code,
                                    int *retryable);

/* A request and, after qs_httpc_perform(), its answer. Initialise with
 * qs_httpc_req_init(), release with qs_httpc_req_deinit(). Every pointer
 * field is borrowed and must stay valid during qs_httpc_perform(). */
struct qs_httpc_req {
    const char *method;         /* GET HEAD PUT POST DELETE ... */
    const char *url;            /* never in messages or logs */
    const char *what;           /* names the exchange in messages: "s3 GET c/x"; never a secret */
    const char *const *headers; /* NULL-terminated "Name: value" lines; NULL: none */
    int secret_url;             /* the URL may hold a token: transport messages name no host */
    /* Signed by libcurl with AWS SigV4 ("aws:amz:REGION:SERVICE") when set;
     * user and password are the access key and its secret. */
    const char *aws_sigv4;
    const char *user;
    const char *password;

    /* Request body (PUT, POST): a buffer, or a source (src != NULL) of
     * src_len bytes (-1: unknown, sent chunked), sent between src_pre and
     * src_post. Neither: an empty body. */
    const void *body;
    size_t body_len;
    qs_source_fn src;
    void *src_ud;
    int64_t src_len;
    const void *src_pre;
    size_t src_pre_len;
    const void *src_post;
    size_t src_post_len;

    /* Answer: a 2xx body goes to sink when set, else into resp (at most
     * resp_max bytes: a larger one fails the request). Error bodies go into
     * resp (at most QS_HTTPC_ERRBODY_MAX bytes, the rest is dropped). */
    qs_sink_fn sink;
    void *sink_ud;
    size_t resp_max;
    int refuse_encoded; /* a 2xx body with a Content-Encoding fails (QS_EPROTO) */
    /* Header hooks, both optional: on_response when an answer begins (also
     * interim answers and redirects, which later headers then replace),
     * on_header for each header line (value trimmed, NUL-terminated; lines
     * longer than 1 KiB are skipped). */
    void (*on_response)(void *ud, long status);
    void (*on_header)(void *ud, const char *name, size_t name_len, const char *value);
    void *hook_ud;
    qs_httpc_explain_fn explain; /* NULL: the status alone */
    void *explain_ud;
    const struct qs_httpc_limits *limits; /* NULL: none */
    const struct qs_cancel *cancel;       /* NULL: none */

    /* Results. */
    long status;            /* of the final answer; 0 when none came */
    int64_t content_length; /* announced by the final answer; -1 unknown */
    uint64_t received;      /* body bytes given to sink or resp */
    struct qs_buf resp;     /* owned, see above */
    int resp_truncated;     /* resp holds only the beginning of the body */
    int callback_failed;    /* the failure came from sink or src: a retry cannot help */
};

/* Fills r with method, url and what (borrowed) and no body, hooks or limits. */
void qs_httpc_req_init(struct qs_httpc_req *r, const char *method, const char *url,
                       const char *what);
/* Frees r->resp. */
void qs_httpc_req_deinit(struct qs_httpc_req *r);

/* Sends r on h (borrowed; NULL: a handle for this request only) and waits
 * for the answer. Returns 0 for a 2xx answer, else a negative code with err
 * (borrowed, may be NULL) classified here, for every peer:
 *   - cancellation: QS_ECANCELED;
 *   - the sink or source failed: its code, and the failure the callback
 *     recorded in err (qsnap's sinks report into the error they were handed
 *     with the data) is kept as the cause, with "what: writing the stream
 *     failed: " or "what: reading the source failed: " in front
 *     (qs_error_wrap; err is cleared before the transfer starts);
 *   - a source of another length than declared, a 2xx answer larger than
 *     resp_max, an encoded body that was refused, a body shorter or longer
 *     than its Content-Length, no HTTP status at all: QS_EPROTO;
 *   - a non-2xx status (also when the connection broke while it came):
 *     QS_ENOTFOUND for 404, else QS_EHTTP, err->http_status set, retryable
 *     for 5xx, 408 and 429, "what: HTTP 503: REASON" with the reason from
 *     r->explain, which may refine the classification;
 *   - connection, DNS, TLS, timeouts, stalls, cut transfers: QS_ETRANSPORT,
 *     retryable except for what no retry can fix (certificate problems, bad
 *     URLs, unsupported protocols, out of memory).
 * A peer's status is in err->http_status whenever one came. */
int qs_httpc_perform(struct qs_httpc *h, struct qs_httpc_req *r, struct qs_error *err);

/* ---- shared helpers ----------------------------------------------------------- */

/* The pause before retry number `attempt` (1 = the first retry): base_ms *
 * 2^(attempt-1), capped at cap_ms, with +-25 % random jitter so that clients
 * failing together do not retry together. The one backoff of qsnap: storage
 * requests, backup and restore steps. */
long qs_httpc_backoff_ms(int attempt, long base_ms, long cap_ms);

/* Appends s[0..len) percent-encoded to out (borrowed): the unreserved
 * characters A-Z a-z 0-9 - _ . ~ stay, '/' stays when keep_slash, every
 * other byte becomes %XX (upper-case hex). This is RFC 3986's encoding and
 * also the one AWS signs (SigV4 "UriEncode"). Returns 0 or UV_ENOMEM. */
int qs_httpc_escape(struct qs_buf *out, const char *s, size_t len, int keep_slash);

/* An HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT", also the obsolete
 * forms) as seconds since the epoch, or -1 when it is not one. */
int64_t qs_httpc_parse_date(const char *s);

#endif
