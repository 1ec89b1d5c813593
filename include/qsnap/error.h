/* qsnap error space.
 *
 * Functions return int: 0 on success, a negative code on failure. Codes are
 * libuv's (UV_E*, i.e. negative errno values) plus the qsnap-specific ones
 * below, which live far away from errno values. A struct qs_error carries the
 * human-readable reason across module and thread boundaries; it never holds
 * secrets (callers only put request names, HTTP statuses and server messages
 * into it).
 */
#ifndef QSNAP_ERROR_H
#define QSNAP_ERROR_H

#include <stddef.h>

enum {
    QS_EHTTP = -20001,      /* peer answered with an unexpected HTTP status */
    QS_ECHECKSUM = -20002,  /* SHA-256 or size mismatch */
    QS_EPROTO = -20003,     /* peer answered something unparsable */
    QS_ECONFIG = -20004,    /* invalid configuration */
    QS_ETRANSPORT = -20005, /* connection, DNS, TLS or timeout failure */
    QS_ECANCELED = -20006,  /* cancelled by shutdown or operator */
    QS_ENOTFOUND = -20007,  /* object, collection or backup does not exist */
    QS_EBUSY = -20008,      /* a job is already running */
    QS_ETOOBIG = -20009,    /* limit exceeded */
    QS_EINVAL = -20010,     /* invalid argument or input */
    QS_EIO = -20011,        /* local I/O failure */
};

/* The reason of a failure, with its cause. The first failure (the one a
 * peer, the system or a check reported) is recorded by qs_error_set(); each
 * layer above that passes it on adds what it was doing with
 * qs_error_prefix() or qs_error_wrap(), and the code, the HTTP status and
 * the retry classification of the first failure stay as they were:
 *     "download snapshot 'x' of collection 'c': writing the stream failed:
 *      s3 PUT c/x: Send failure: Connection reset by peer"   (QS_ETRANSPORT,
 *      retryable)
 * The first failure's own message (qs_error_cause()) is never cut to make
 * room for context: when the whole does not fit, the context is shortened
 * and ends in "...". */
struct qs_error {
    int code;         /* the first failure's code: one of the codes above or a negative errno */
    long http_status; /* the first failure's HTTP status when a peer answered, else 0 */
    int retryable;    /* nonzero when retrying the failed step may succeed */
    unsigned cause;   /* offset in msg where the first failure's own message starts */
    char msg[512];    /* context of the layers above, outermost first, then the first
                       * failure's message; never a secret */
};

/* Clears err (borrowed, may be NULL): no failure. */
void qs_error_clear(struct qs_error *err);

/* Records a new first failure in err (borrowed, may be NULL): every field is
 * reset (not retryable, no HTTP status, no context), the message formatted.
 * Returns code, so that callers can write
 * `return qs_error_set(err, QS_EIO, "open %s: %s", ...)`. */
int qs_error_set(struct qs_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* qs_error_set() with the failure's classification: the peer's HTTP status
 * (0 = none) and whether a retry may succeed. Returns code. */
int qs_error_set_class(struct qs_error *err, int code, long http_status, int retryable,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Adds "context: " in front of the failure err (borrowed, may be NULL)
 * holds, keeping its code, HTTP status, retry classification and message.
 * Returns err->code (0 when err is NULL). */
int qs_error_prefix(struct qs_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* This layer failed with `code` because of whatever err (borrowed, may be
 * NULL) already holds: when err holds a failure, that failure is the cause
 * and the call is qs_error_prefix() (the cause's code wins and is returned);
 * when it holds none (the layer below gave only a code), it records a new
 * failure "context: NAME-OF-CODE" with `code`, as qs_error_set() would.
 * For callbacks that report through an error they share with their caller
 * (a sink writing into a storage put): clear err before handing it down. */
int qs_error_wrap(struct qs_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The first failure's own message, without the context added above it
 * (borrowed from err; "" when err holds no failure). */
const char *qs_error_cause(const struct qs_error *err);

/* Static name of a code ("EHTTP", "ECONNREFUSED", ...). Never NULL. */
const char *qs_strerror(int code);

#endif
