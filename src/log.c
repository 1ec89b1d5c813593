#include "qsnap/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qsnap/error.h"

#define QS_LOG_LINE_MAX 8192
#define QS_LOG_MAX_SECRETS 16

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static enum qs_log_level log_level = QS_LOG_INFO;
static enum qs_log_format log_format = QS_LOG_JSON;
static int log_fd = 2;
/* What redaction looks for: each secret as given and, when it differs, as a
 * JSON encoder writes it (a peer's error message may quote a secret that way). */
struct pattern {
    char *s;
    size_t len;
};
static struct pattern patterns[2 * QS_LOG_MAX_SECRETS];
static size_t npatterns;
static size_t nsecrets;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void qs_log_set_level(enum qs_log_level level)
{
    __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

enum qs_log_level qs_log_get_level(void)
{
    return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void qs_log_set_format(enum qs_log_format format)
{
    __atomic_store_n(&log_format, format, __ATOMIC_RELAXED);
}

void qs_log_set_fd(int fd)
{
    __atomic_store_n(&log_fd, fd, __ATOMIC_RELAXED);
}

int qs_log_parse_level(const char *s, enum qs_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (s != NULL && strcmp(s, level_names[i]) == 0) {
            *out = (enum qs_log_level)i;
            return 0;
        }
    }
    return QS_EINVAL;
}

int qs_log_parse_format(const char *s, enum qs_log_format *out)
{
    if (s != NULL && strcmp(s, "json") == 0) {
        *out = QS_LOG_JSON;
        return 0;
    }
    if (s != NULL && strcmp(s, "text") == 0) {
        *out = QS_LOG_TEXT;
        return 0;
    }
    return QS_EINVAL;
}

/* Writes the JSON escaping of s (without quotes) into out (6 * strlen + 1
 * bytes), the same escaping put_json_string() uses. */
static void json_escape_into(char *out, const char *s)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (*p == '\t') {
            out[o++] = '\\';
            out[o++] = 't';
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(out + o, 7, "\\u%04x", *p);
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
}

/* Caller holds log_mu. Takes s over (freed on failure). */
static void add_pattern_locked(char *s)
{
    for (size_t i = 0; i < npatterns; i++) {
        if (strcmp(patterns[i].s, s) == 0) {
            free(s);
            return;
        }
    }
    patterns[npatterns].s = s;
    patterns[npatterns].len = strlen(s);
    npatterns++;
}

void qs_log_add_secret(const char *secret)
{
    if (secret == NULL || strlen(secret) < 4)
        return;
    size_t n = strlen(secret);
    char *raw = strdup(secret);
    char *esc = n <= SIZE_MAX / 6 - 1 ? malloc(6 * n + 1) : NULL;
    if (esc != NULL)
        json_escape_into(esc, secret);
    pthread_mutex_lock(&log_mu);
    int known = 0;
    for (size_t i = 0; i < npatterns; i++)
        known |= strcmp(patterns[i].s, secret) == 0;
    if (!known && nsecrets < QS_LOG_MAX_SECRETS && raw != NULL) {
        nsecrets++;
        add_pattern_locked(raw);
        raw = NULL;
        if (esc != NULL && strcmp(esc, secret) != 0) {
            add_pattern_locked(esc);
            esc = NULL;
        }
    }
    pthread_mutex_unlock(&log_mu);
    free(raw);
    free(esc);
}

void qs_log_clear_secrets(void)
{
    pthread_mutex_lock(&log_mu);
    for (size_t i = 0; i < npatterns; i++) {
        free(patterns[i].s);
        patterns[i].s = NULL;
    }
    npatterns = 0;
    nsecrets = 0;
    pthread_mutex_unlock(&log_mu);
}

static const char redact_mark[] = "[REDACTED]";
#define REDACT_MARK_LEN (sizeof(redact_mark) - 1)

/* A copy of s (owned by the caller) with every secret replaced by
 * "[REDACTED]"; where secrets overlap, the longest match wins, so no part of
 * a longer secret survives a shorter one. NULL when out of memory. Caller
 * holds log_mu. */
static char *redact_dup_locked(const char *s)
{
    size_t n = strlen(s), cap = n + 1, o = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t best = 0;
        for (size_t k = 0; k < npatterns; k++) {
            const struct pattern *p = &patterns[k];
            if (p->len > best && p->len <= n - i && p->s[0] == s[i] &&
                memcmp(s + i, p->s, p->len) == 0)
                best = p->len;
        }
        const char *src = best > 0 ? redact_mark : s + i;
        size_t len = best > 0 ? REDACT_MARK_LEN : 1;
        if (o + len + 1 > cap) {
            cap = 2 * cap + len;
            char *grown = realloc(out, cap);
            if (grown == NULL) {
                free(out);
                return NULL;
            }
            out = grown;
        }
        memcpy(out + o, src, len);
        o += len;
        i += best > 0 ? best : 1;
    }
    out[o] = '\0';
    return out;
}

void qs_log_redact(char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return;
    pthread_mutex_lock(&log_mu);
    char *r = redact_dup_locked(buf);
    pthread_mutex_unlock(&log_mu);
    if (r == NULL) {
        /* Out of memory: print nothing rather than something unredacted. */
        buf[0] = '\0';
        return;
    }
    size_t n = strlen(r);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, r, n);
    buf[n] = '\0';
    free(r);
}

char *qs_log_redacted(const char *s)
{
    pthread_mutex_lock(&log_mu);
    char *r = redact_dup_locked(s != NULL ? s : "");
    pthread_mutex_unlock(&log_mu);
    return r;
}

struct line {
    char buf[QS_LOG_LINE_MAX];
    size_t len;
};

/* Escaped bytes a value may take in a line; together they fit in
 * QS_LOG_LINE_MAX, so a line is always complete (valid JSON). */
#define MSG_OUT_MAX 4096
#define ERROR_OUT_MAX 1536
#define FIELD_OUT_MAX 512

static void put(struct line *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - 2 - l->len; /* keep room for "\n\0" */
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Appends s with control characters escaped as in JSON; with quoted, also
 * '"' and '\\' and the surrounding quotes. At most max bytes of escaped
 * text: a value is cut between characters, never inside an escape. */
static void put_escaped(struct line *l, const char *s, size_t max, int quoted)
{
    if (quoted)
        put(l, "\"", 1);
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        size_t n;
        if (quoted && (*p == '"' || *p == '\\')) {
            esc[0] = '\\';
            esc[1] = (char)*p;
            n = 2;
        } else if (*p == '\n') {
            memcpy(esc, "\\n", 2);
            n = 2;
        } else if (*p == '\t') {
            memcpy(esc, "\\t", 2);
            n = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            n = 6;
        } else {
            esc[0] = (char)*p;
            n = 1;
        }
        if (used + n > max)
            break;
        put(l, esc, n);
        used += n;
    }
    if (quoted)
        put(l, "\"", 1);
}

static int needs_quotes(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || *p < 0x20 || *p == 0x7f)
            return 1;
    return 0;
}

/* value is already redacted. */
static void put_field_str(struct line *l, enum qs_log_format fmt, const char *key,
                          const char *value, size_t max)
{
    if (value == NULL)
        return;
    if (fmt == QS_LOG_JSON) {
        put(l, ",", 1);
        put_escaped(l, key, FIELD_OUT_MAX, 1);
        put(l, ":", 1);
        put_escaped(l, value, max, 1);
    } else {
        put(l, " ", 1);
        puts_(l, key);
        put(l, "=", 1);
        put_escaped(l, value, max, needs_quotes(value));
    }
}

static void put_field_raw(struct line *l, enum qs_log_format fmt, const char *key,
                          const char *value)
{
    if (fmt == QS_LOG_JSON) {
        put(l, ",", 1);
        put_escaped(l, key, FIELD_OUT_MAX, 1);
        put(l, ":", 1);
    } else {
        put(l, " ", 1);
        puts_(l, key);
        put(l, "=", 1);
    }
    puts_(l, value);
}

/* A redacted field: secrets are replaced before any escaping or truncation,
 * so neither can leave a secret (or a part of one) unrecognised. Caller
 * holds log_mu. */
static void put_redacted_field(struct line *l, enum qs_log_format fmt, const char *key,
                               const char *value, size_t max)
{
    if (value == NULL)
        return;
    char *r = redact_dup_locked(value);
    put_field_str(l, fmt, key, r != NULL ? r : redact_mark, max);
    free(r);
}

/* The formatted message (owned by the caller; NULL when out of memory). */
static char *format_msg(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *format_msg(const char *fmt, va_list ap)
{
    char small[1024];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return strdup("");
    }
    if ((size_t)n < sizeof(small)) {
        va_end(ap2);
        return strdup(small);
    }
    char *big = malloc((size_t)n + 1);
    if (big != NULL)
        vsnprintf(big, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return big;
}

void qs_logv(enum qs_log_level level, const struct qs_log_ctx *ctx, const char *fmt, va_list ap)
{
    if (level < qs_log_get_level())
        return;
    int saved_errno = errno;
    enum qs_log_format f = __atomic_load_n(&log_format, __ATOMIC_RELAXED);

    char *msg = format_msg(fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tbuf[40];
    snprintf(tbuf, sizeof(tbuf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    struct line *l = malloc(sizeof(*l));
    if (l == NULL || msg == NULL) {
        free(l);
        free(msg);
        errno = saved_errno;
        return;
    }
    l->len = 0;
    const char *lname = level_names[level <= QS_LOG_ERROR ? level : QS_LOG_ERROR];

    pthread_mutex_lock(&log_mu);
    char *rmsg = redact_dup_locked(msg);
    free(msg);
    const char *m = rmsg != NULL ? rmsg : redact_mark;
    if (f == QS_LOG_JSON) {
        puts_(l, "{\"ts\":\"");
        puts_(l, tbuf);
        puts_(l, "\",\"level\":\"");
        puts_(l, lname);
        puts_(l, "\",\"msg\":");
        put_escaped(l, m, MSG_OUT_MAX, 1);
    } else {
        puts_(l, tbuf);
        put(l, " ", 1);
        puts_(l, lname);
        put(l, " ", 1);
        put_escaped(l, m, MSG_OUT_MAX, 0);
    }
    free(rmsg);
    if (ctx != NULL) {
        put_redacted_field(l, f, "job", ctx->job, FIELD_OUT_MAX);
        put_redacted_field(l, f, "collection", ctx->collection, FIELD_OUT_MAX);
        put_redacted_field(l, f, "snapshot", ctx->snapshot, FIELD_OUT_MAX);
        put_redacted_field(l, f, "phase", ctx->phase, FIELD_OUT_MAX);
        char num[48];
        if (ctx->bytes >= 0) {
            snprintf(num, sizeof(num), "%lld", (long long)ctx->bytes);
            put_field_raw(l, f, "bytes", num);
        }
        if (ctx->duration_s >= 0) {
            snprintf(num, sizeof(num), "%.3f", ctx->duration_s);
            put_field_raw(l, f, "duration_s", num);
        }
        put_redacted_field(l, f, "error", ctx->error, ERROR_OUT_MAX);
    }
    if (f == QS_LOG_JSON)
        put(l, "}", 1);
    size_t n = l->len;
    l->buf[n++] = '\n';
    const char *p = l->buf;
    int fd = __atomic_load_n(&log_fd, __ATOMIC_RELAXED);
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&log_mu);
    free(l);
    errno = saved_errno;
}

void qs_log(enum qs_log_level level, const struct qs_log_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qs_logv(level, ctx, fmt, ap);
    va_end(ap);
}
