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

struct qs_error {
    int code;         /* one of the codes above or a negative errno */
    long http_status; /* HTTP status when the peer answered, else 0 */
    int retryable;    /* nonzero when a retry may succeed */
    char msg[512];    /* human-readable reason, never a secret */
};

/* Clears err (borrowed, may be NULL). */
void qs_error_clear(struct qs_error *err);

/* Formats a message into err (borrowed, may be NULL) and returns code, so that
 * callers can write `return qs_error_set(err, QS_EIO, "open %s: %s", ...)`. */
int qs_error_set(struct qs_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to err->msg (err borrowed). Returns err->code. */
int qs_error_prefix(struct qs_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Static name of a code ("EHTTP", "ECONNREFUSED", ...). Never NULL. */
const char *qs_strerror(int code);

#endif
