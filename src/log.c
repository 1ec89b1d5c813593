#include "qsnap/log.h"

#include <errno.h>
#include <pthread.h>
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
static char *secrets[QS_LOG_MAX_SECRETS];
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

void qs_log_add_secret(const char *secret)
{
    if (secret == NULL || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&log_mu);
    int known = 0;
    for (size_t i = 0; i < nsecrets; i++)
        known |= strcmp(secrets[i], secret) == 0;
    if (!known && nsecrets < QS_LOG_MAX_SECRETS) {
        char *copy = strdup(secret);
        if (copy != NULL)
            secrets[nsecrets++] = copy;
    }
    pthread_mutex_unlock(&log_mu);
}

void qs_log_clear_secrets(void)
{
    pthread_mutex_lock(&log_mu);
    for (size_t i = 0; i < nsecrets; i++) {
        free(secrets[i]);
        secrets[i] = NULL;
    }
    nsecrets = 0;
    pthread_mutex_unlock(&log_mu);
}

/* Caller holds log_mu. */
static void redact_locked(char *buf, size_t cap)
{
    static const char mark[] = "[REDACTED]";
    const size_t mlen = sizeof(mark) - 1;
    for (size_t i = 0; i < nsecrets; i++) {
        size_t slen = strlen(secrets[i]);
        char *p = buf;
        while ((p = strstr(p, secrets[i])) != NULL) {
            size_t tail = strlen(p + slen);
            size_t pos = (size_t)(p - buf);
            if (pos + mlen + tail + 1 > cap)
                tail = cap > pos + mlen + 1 ? cap - pos - mlen - 1 : 0;
            if (pos + mlen + 1 > cap) {
                *p = '\0';
                break;
            }
            memmove(p + mlen, p + slen, tail);
            p[mlen + tail] = '\0';
            memcpy(p, mark, mlen);
            p += mlen;
        }
    }
}

void qs_log_redact(char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return;
    pthread_mutex_lock(&log_mu);
    redact_locked(buf, cap);
    pthread_mutex_unlock(&log_mu);
}

struct line {
    char buf[QS_LOG_LINE_MAX];
    size_t len;
};

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

static void put_json_string(struct line *l, const char *s)
{
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p == '\n') {
            put(l, "\\n", 2);
        } else if (*p == '\t') {
            put(l, "\\t", 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            put(l, esc, 6);
        } else {
            put(l, (const char *)p, 1);
        }
    }
    put(l, "\"", 1);
}

static void put_field_str(struct line *l, enum qs_log_format fmt, const char *key,
                          const char *value)
{
    if (value == NULL)
        return;
    if (fmt == QS_LOG_JSON) {
        put(l, ",", 1);
        put_json_string(l, key);
        put(l, ":", 1);
        put_json_string(l, value);
    } else {
        put(l, " ", 1);
        puts_(l, key);
        put(l, "=", 1);
        if (strpbrk(value, " \"=") != NULL)
            put_json_string(l, value);
        else
            puts_(l, value);
    }
}

static void put_field_raw(struct line *l, enum qs_log_format fmt, const char *key,
                          const char *value)
{
    if (fmt == QS_LOG_JSON) {
        put(l, ",", 1);
        put_json_string(l, key);
        put(l, ":", 1);
    } else {
        put(l, " ", 1);
        puts_(l, key);
        put(l, "=", 1);
    }
    puts_(l, value);
}

void qs_logv(enum qs_log_level level, const struct qs_log_ctx *ctx, const char *fmt, va_list ap)
{
    if (level < qs_log_get_level())
        return;
    int saved_errno = errno;
    enum qs_log_format f = __atomic_load_n(&log_format, __ATOMIC_RELAXED);

    char msg[4096];
    vsnprintf(msg, sizeof(msg), fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tbuf[40];
    snprintf(tbuf, sizeof(tbuf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    struct line *l = malloc(sizeof(*l));
    if (l == NULL)
        return;
    l->len = 0;
    const char *lname = level_names[level <= QS_LOG_ERROR ? level : QS_LOG_ERROR];
    if (f == QS_LOG_JSON) {
        puts_(l, "{\"ts\":\"");
        puts_(l, tbuf);
        puts_(l, "\",\"level\":\"");
        puts_(l, lname);
        puts_(l, "\",\"msg\":");
        put_json_string(l, msg);
    } else {
        puts_(l, tbuf);
        put(l, " ", 1);
        puts_(l, lname);
        put(l, " ", 1);
        puts_(l, msg);
    }
    if (ctx != NULL) {
        put_field_str(l, f, "job", ctx->job);
        put_field_str(l, f, "collection", ctx->collection);
        put_field_str(l, f, "snapshot", ctx->snapshot);
        put_field_str(l, f, "phase", ctx->phase);
        char num[48];
        if (ctx->bytes >= 0) {
            snprintf(num, sizeof(num), "%lld", (long long)ctx->bytes);
            put_field_raw(l, f, "bytes", num);
        }
        if (ctx->duration_s >= 0) {
            snprintf(num, sizeof(num), "%.3f", ctx->duration_s);
            put_field_raw(l, f, "duration_s", num);
        }
        put_field_str(l, f, "error", ctx->error);
    }
    if (f == QS_LOG_JSON)
        put(l, "}", 1);
    l->buf[l->len] = '\0';

    pthread_mutex_lock(&log_mu);
    redact_locked(l->buf, sizeof(l->buf) - 1);
    size_t n = strlen(l->buf);
    l->buf[n++] = '\n';
    const char *p = l->buf;
    while (n > 0) {
        ssize_t w = write(log_fd, p, n);
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
