/* Small shared helpers: clock, time formatting, hex, hashing, parsing of
 * sizes and durations, a growable byte buffer. Pure functions unless noted. */
#ifndef QSNAP_UTIL_H
#define QSNAP_UTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- cancellation -----------------------------------------------------------
 * Set by the loop thread (shutdown, operator), polled by worker threads in
 * their transfer callbacks. A cancel may have a parent (borrowed, must
 * outlive it): it then also counts as requested when its parent is, so that
 * a piece of work can be stopped on its own (an upload aborting its other
 * requests) and still stops with everything else. */
struct qs_cancel {
    atomic_int requested;
    const struct qs_cancel *parent; /* may be NULL */
};

static inline int qs_cancel_requested(const struct qs_cancel *c)
{
    for (; c != NULL; c = c->parent)
        if (atomic_load(&((struct qs_cancel *)c)->requested) != 0)
            return 1;
    return 0;
}

static inline void qs_cancel_request(struct qs_cancel *c)
{
    if (c != NULL)
        atomic_store(&c->requested, 1);
}

/* Sleeps ms milliseconds in steps of at most 50 ms; returns QS_ECANCELED as
 * soon as cancel (borrowed, may be NULL) is requested, else 0. */
int qs_sleep_cancellable(long ms, const struct qs_cancel *cancel);

/* ---- streaming callbacks ------------------------------------------------------
 * A sink receives bytes (borrowed for the call); it returns 0 to continue or a
 * negative code to abort the transfer with that code.
 * A source fills buf with up to cap bytes and returns the count, 0 at end of
 * data, or a negative code to abort. Both run on worker threads. */
typedef int (*qs_sink_fn)(const void *data, size_t len, void *ud);
typedef ssize_t (*qs_source_fn)(void *buf, size_t cap, void *ud);

/* ---- clock ---------------------------------------------------------------
 * Wall-clock time reaches qsnap only through qs_clock_now(), so tests can
 * drive schedules without sleeping. The default is CLOCK_REALTIME. */
typedef int64_t (*qs_clock_fn)(void *ud);

/* Installs a clock (fn may be NULL to restore the real one). Any thread may
 * call both functions; ud is borrowed and must stay valid while a thread may
 * still be reading the clock it was installed with. */
void qs_clock_set(qs_clock_fn fn, void *ud);
/* Current wall-clock time in whole seconds since the epoch (UTC). */
int64_t qs_clock_now(void);
/* Monotonic time in seconds (never faked), for durations and timeouts. */
double qs_monotonic(void);

/* ---- time formatting ---------------------------------------------------- */
/* Writes "YYYY-MM-DDTHH:MM:SSZ" (RFC 3339, UTC) into out (>= 21 bytes). */
void qs_time_rfc3339(int64_t t, char out[static 21]);
/* Parses RFC 3339 UTC ("...Z", "+00:00" or no zone, which is taken as UTC,
 * as Qdrant writes it). Returns 0 or QS_EINVAL. */
int qs_time_parse(const char *s, int64_t *out);
/* timegm() without the locale/TZ dependence. */
int64_t qs_timegm(int year, int mon /*1-12*/, int day, int hour, int min, int sec);

/* ---- hex and hashing ---------------------------------------------------- */
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void qs_hex(const unsigned char *in, size_t n, char *out);
/* SHA-256 of a buffer as 64 lower-case hex chars + NUL. */
void qs_sha256_hex(const void *data, size_t len, char out[static 65]);
/* 1 when s is exactly 64 hex characters. */
int qs_is_sha256_hex(const char *s);

/* Incremental SHA-256 (OpenSSL EVP). init returns 0 or UV_ENOMEM; final writes
 * 64 hex chars + NUL and releases the context (deinit is then a no-op; call
 * deinit on paths that never reach final). */
struct qs_sha256 {
    void *_ctx; /* owned EVP_MD_CTX */
};
int qs_sha256_init(struct qs_sha256 *h);
void qs_sha256_update(struct qs_sha256 *h, const void *data, size_t len);
void qs_sha256_final(struct qs_sha256 *h, char out[static 65]);
void qs_sha256_deinit(struct qs_sha256 *h);

/* ---- parsing -------------------------------------------------------------
 * qs_parse_u64_prefix and qs_parse_double are the only callers of the strto*
 * functions in qsnap (test/check-banned.sh allows them nowhere else): they
 * check the end pointer and errno, so a partial, signed or out-of-range
 * number is an error. */
/* The decimal digits at the start of s (at least one; no sign, no space) into
 * *out; *end (may be NULL) gets the first character after them. Returns 0, or
 * QS_EINVAL when s starts with no digit or the number exceeds UINT64_MAX. */
int qs_parse_u64_prefix(const char *s, const char **end, uint64_t *out);
/* All of s as such a number. Returns 0 or QS_EINVAL. */
int qs_parse_u64(const char *s, uint64_t *out);
/* All of s as a finite floating-point number in strtod's syntax, without
 * leading white space, "inf" or "nan" (a result too small to represent is
 * the nearest value). Returns 0 or QS_EINVAL. */
int qs_parse_double(const char *s, double *out);
/* "123", "16MiB", "1GiB", "512KiB", "10B" -> bytes. Returns 0 or QS_EINVAL. */
int qs_parse_size(const char *s, uint64_t *out);
/* "30s", "5m", "2h", "7d", "0s" -> seconds. Returns 0 or QS_EINVAL. */
int qs_parse_duration(const char *s, int64_t *out);
/* "50MiB/s" -> bytes per second. Returns 0 or QS_EINVAL. */
int qs_parse_rate(const char *s, uint64_t *out);
/* A decimal u64 written exactly: digits only, no sign, no leading zero
 * (except "0" itself), at most UINT64_MAX. s borrowed (may be NULL).
 * Returns 0 with *out set, or QS_EINVAL. */
int qs_parse_u64_dec(const char *s, uint64_t *out);

/* ---- growable buffer ------------------------------------------------------ */
struct qs_buf {
    char *data; /* owned; always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
};

void qs_buf_init(struct qs_buf *b);
void qs_buf_free(struct qs_buf *b);
/* Appends n bytes (data borrowed). Returns 0 or UV_ENOMEM. */
int qs_buf_append(struct qs_buf *b, const void *data, size_t n);
int qs_buf_printf(struct qs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties without freeing. */
void qs_buf_reset(struct qs_buf *b);

/* ---- JSON ------------------------------------------------------------------ */
struct cJSON;
struct qs_error;

/* The one JSON parser for input qsnap did not just produce itself (request
 * bodies, Qdrant answers, manifests and sidecar files). Parses len bytes of
 * text (borrowed) as exactly one JSON value, strictly: refuses anything but
 * whitespace after the value, any string (value or key) holding U+0000
 * (C strings would silently end there), a NUL byte anywhere, and an object
 * with the same key twice. Returns 0 with *out (owned, cJSON_Delete()), or
 * QS_EINVAL with the reason in err (borrowed, may be NULL), e.g. "unexpected
 * data after the JSON value at byte 17"; *out is then NULL. */
int qs_json_parse(const char *text, size_t len, struct cJSON **out, struct qs_error *err);

/* ---- signals -------------------------------------------------------------- */
/* Installs handler (async-signal-safe code only) for SIGTERM and SIGINT. */
void qs_on_stop_signals(void (*handler)(int));

/* ---- strings -------------------------------------------------------------- */
/* Copies src into dst of size cap, always NUL-terminates. Returns strlen(src). */
size_t qs_strlcpy(char *dst, const char *src, size_t cap);
/* A user's value as it may appear in an error message: s (borrowed, NULL =
 * "") copied into out (cap >= 8 bytes) with every byte outside printable
 * ASCII replaced by '?', cut after max characters (or what fits), a cut
 * marked by "...". Returns out. */
char *qs_printable(char *out, size_t cap, const char *s, size_t max);
/* Constant-time comparison of two NUL-terminated strings. 1 when equal. */
int qs_consttime_streq(const char *a, const char *b);

#endif
