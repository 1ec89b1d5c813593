/* Structured logging to stderr.
 *
 * One line per event, written with a single write(2) under a mutex, so any
 * thread may log. Control characters in values are escaped in both formats,
 * so a value can never start a line of its own.
 *
 * Secret values registered with qs_log_add_secret() are replaced by
 * "[REDACTED]" in the message and in every context field before anything is
 * escaped or truncated, so a secret holding quotes, backslashes, control
 * characters or UTF-8 is found as it is; its JSON-escaped form (as a peer may
 * quote it in an error message) is replaced too.
 */
#ifndef QSNAP_LOG_H
#define QSNAP_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum qs_log_level {
    QS_LOG_DEBUG = 0,
    QS_LOG_INFO = 1,
    QS_LOG_WARN = 2,
    QS_LOG_ERROR = 3,
};

enum qs_log_format {
    QS_LOG_JSON = 0,
    QS_LOG_TEXT = 1,
};

/* Optional context fields of a line. Strings are borrowed for the call; NULL
 * (or a negative number) leaves a field out. */
struct qs_log_ctx {
    const char *job;
    const char *collection;
    const char *snapshot;
    const char *phase;
    const char *error;
    int64_t bytes;     /* < 0: absent */
    double duration_s; /* < 0: absent */
};

/* A context with every field absent. */
#define QS_LOG_CTX_NONE ((struct qs_log_ctx){.bytes = -1, .duration_s = -1})

void qs_log_set_level(enum qs_log_level level);
void qs_log_set_format(enum qs_log_format format);
enum qs_log_level qs_log_get_level(void);

/* Parses "debug|info|warn|error" / "json|text". Returns 0 or QS_EINVAL. */
int qs_log_parse_level(const char *s, enum qs_log_level *out);
int qs_log_parse_format(const char *s, enum qs_log_format *out);

/* Registers a secret (copied) that must never be printed. Values shorter than
 * 4 bytes are ignored (they would redact ordinary words). Thread-safe. */
void qs_log_add_secret(const char *secret);

/* Frees the registered secrets (at exit, for leak checkers). */
void qs_log_clear_secrets(void);

/* Replaces every registered secret in buf (borrowed, NUL-terminated, size cap)
 * by "[REDACTED]" in place, truncating if needed. Where secrets overlap the
 * longest one wins. Redact before truncating a string: a secret already cut
 * in half is no longer recognised. */
void qs_log_redact(char *buf, size_t cap);

/* A copy of s (borrowed, NULL = "") with every registered secret replaced,
 * owned by the caller (free()); NULL when out of memory. For error messages
 * that leave the process through HTTP. */
char *qs_log_redacted(const char *s);

/* Redirects output to fd (default 2). For tests. */
void qs_log_set_fd(int fd);

/* Emits one line. ctx is borrowed and may be NULL. */
void qs_log(enum qs_log_level level, const struct qs_log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void qs_logv(enum qs_log_level level, const struct qs_log_ctx *ctx, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define QS_DEBUG(...) qs_log(QS_LOG_DEBUG, NULL, __VA_ARGS__)
#define QS_INFO(...) qs_log(QS_LOG_INFO, NULL, __VA_ARGS__)
#define QS_WARN(...) qs_log(QS_LOG_WARN, NULL, __VA_ARGS__)
#define QS_ERROR(...) qs_log(QS_LOG_ERROR, NULL, __VA_ARGS__)

#endif
