#include "qsnap/util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <uv.h>

#include "qsnap/error.h"

/* The installed clock: fn and ud change together, under clock_mu. */
static pthread_mutex_t clock_mu = PTHREAD_MUTEX_INITIALIZER;
static qs_clock_fn clock_fn;
static void *clock_ud;

void qs_clock_set(qs_clock_fn fn, void *ud)
{
    pthread_mutex_lock(&clock_mu);
    clock_fn = fn;
    clock_ud = ud;
    pthread_mutex_unlock(&clock_mu);
}

int64_t qs_clock_now(void)
{
    pthread_mutex_lock(&clock_mu);
    qs_clock_fn fn = clock_fn;
    void *ud = clock_ud;
    pthread_mutex_unlock(&clock_mu);
    if (fn != NULL)
        return fn(ud);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

double qs_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int qs_sleep_cancellable(long ms, const struct qs_cancel *cancel)
{
    while (ms > 0) {
        if (qs_cancel_requested(cancel))
            return QS_ECANCELED;
        long step = ms < 50 ? ms : 50;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
    return qs_cancel_requested(cancel) ? QS_ECANCELED : 0;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    /* Howard Hinnant's algorithm. */
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int64_t qs_timegm(int year, int mon, int day, int hour, int min, int sec)
{
    return days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
}

void qs_time_rfc3339(int64_t t, char out[static 21])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02dZ", (tm.tm_year + 1900) % 10000,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(out, tmp, 20);
    out[20] = '\0';
}

static int parse_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : dm[m - 1];
}

int qs_time_parse(const char *s, int64_t *out)
{
    if (s == NULL)
        return QS_EINVAL;
    const char *p = s;
    int Y, M, D, h, m, sec;
    if (parse_digits(&p, 4, &Y) || *p++ != '-' || parse_digits(&p, 2, &M) || *p++ != '-' ||
        parse_digits(&p, 2, &D) || (*p != 'T' && *p != 't' && *p != ' '))
        return QS_EINVAL;
    p++;
    if (parse_digits(&p, 2, &h) || *p++ != ':' || parse_digits(&p, 2, &m) || *p++ != ':' ||
        parse_digits(&p, 2, &sec))
        return QS_EINVAL;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return QS_EINVAL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    int offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (parse_digits(&p, 2, &oh) || *p++ != ':' || parse_digits(&p, 2, &om))
            return QS_EINVAL;
        offset = sign * (oh * 3600 + om * 60);
    }
    if (*p != '\0')
        return QS_EINVAL;
    if (M < 1 || M > 12 || D < 1 || D > days_in_month(Y, M) || h > 23 || m > 59 || sec > 60)
        return QS_EINVAL;
    *out = qs_timegm(Y, M, D, h, m, sec) - offset;
    return 0;
}

void qs_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void qs_sha256_hex(const void *data, size_t len, char out[static 65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    qs_hex(md, sizeof(md), out);
}

int qs_sha256_init(struct qs_sha256 *h)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c == NULL || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        h->_ctx = NULL;
        return UV_ENOMEM;
    }
    h->_ctx = c;
    return 0;
}

void qs_sha256_update(struct qs_sha256 *h, const void *data, size_t len)
{
    if (h->_ctx != NULL && len > 0)
        EVP_DigestUpdate(h->_ctx, data, len);
}

void qs_sha256_final(struct qs_sha256 *h, char out[static 65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (h->_ctx == NULL || EVP_DigestFinal_ex(h->_ctx, md, &n) != 1 || n != 32) {
        out[0] = '\0';
    } else {
        qs_hex(md, 32, out);
    }
    qs_sha256_deinit(h);
}

void qs_sha256_deinit(struct qs_sha256 *h)
{
    if (h != NULL && h->_ctx != NULL) {
        EVP_MD_CTX_free(h->_ctx);
        h->_ctx = NULL;
    }
}

int qs_is_sha256_hex(const char *s)
{
    if (s == NULL)
        return 0;
    size_t i = 0;
    for (; s[i]; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return i == 64;
}

int qs_parse_u64_prefix(const char *s, const char **end, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return QS_EINVAL;
    errno = 0;
    char *e;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno != 0 || e == s)
        return QS_EINVAL;
    if (end != NULL)
        *end = e;
    *out = (uint64_t)v;
    return 0;
}

int qs_parse_u64(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t v;
    if (qs_parse_u64_prefix(s, &end, &v) != 0 || *end != '\0')
        return QS_EINVAL;
    *out = v;
    return 0;
}

int qs_parse_double(const char *s, double *out)
{
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return QS_EINVAL;
    errno = 0;
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e != '\0' || !isfinite(v))
        return QS_EINVAL;
    /* ERANGE with a finite result is an underflow: v is the nearest value. */
    *out = v;
    return 0;
}

/* Parses a non-negative decimal number followed by a unit from table. */
struct unit {
    const char *name;
    uint64_t mult;
};

static int parse_with_units(const char *s, const struct unit *units, uint64_t *out)
{
    const char *end;
    uint64_t v;
    if (qs_parse_u64_prefix(s, &end, &v) != 0)
        return QS_EINVAL;
    for (const struct unit *u = units; u->name != NULL; u++) {
        if (strcmp(end, u->name) == 0) {
            if (u->mult != 0 && v > UINT64_MAX / u->mult)
                return QS_EINVAL;
            *out = v * u->mult;
            return 0;
        }
    }
    return QS_EINVAL;
}

int qs_parse_size(const char *s, uint64_t *out)
{
    static const struct unit units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", 1ull << 10},
        {"MiB", 1ull << 20},
        {"GiB", 1ull << 30},
        {"TiB", 1ull << 40},
        {NULL, 0},
    };
    return parse_with_units(s, units, out);
}

int qs_parse_duration(const char *s, int64_t *out)
{
    static const struct unit units[] = {
        {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}, {NULL, 0},
    };
    uint64_t v;
    int rc = parse_with_units(s, units, &v);
    if (rc != 0 || v > (uint64_t)INT64_MAX / 2)
        return QS_EINVAL;
    *out = (int64_t)v;
    return 0;
}

int qs_parse_rate(const char *s, uint64_t *out)
{
    if (s == NULL)
        return QS_EINVAL;
    size_t n = strlen(s);
    if (n < 3 || strcmp(s + n - 2, "/s") != 0)
        return QS_EINVAL;
    char tmp[64];
    if (n - 2 >= sizeof(tmp))
        return QS_EINVAL;
    memcpy(tmp, s, n - 2);
    tmp[n - 2] = '\0';
    uint64_t v;
    if (qs_parse_size(tmp, &v) != 0 || v == 0)
        return QS_EINVAL;
    *out = v;
    return 0;
}

int qs_parse_u64_dec(const char *s, uint64_t *out)
{
    if (s == NULL || s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
        return QS_EINVAL;
    uint64_t v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return QS_EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return QS_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

void qs_buf_init(struct qs_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void qs_buf_free(struct qs_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    qs_buf_init(b);
}

void qs_buf_reset(struct qs_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

static int buf_reserve(struct qs_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2)
            return UV_ENOMEM;
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (d == NULL)
        return UV_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int qs_buf_append(struct qs_buf *b, const void *data, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return UV_ENOMEM;
    if (n > 0)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int qs_buf_printf(struct qs_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return QS_EINVAL;
    if (buf_reserve(b, (size_t)n) != 0)
        return UV_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

size_t qs_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n = strlen(src);
    if (cap > 0) {
        size_t c = n < cap - 1 ? n : cap - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

void qs_on_stop_signals(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

char *qs_printable(char *out, size_t cap, const char *s, size_t max)
{
    if (s == NULL)
        s = "";
    if (max > cap - 4)
        max = cap - 4;
    size_t n = 0;
    for (; s[n] != '\0' && n < max; n++)
        out[n] = s[n] >= 0x20 && s[n] < 0x7f ? s[n] : '?';
    if (s[n] != '\0') {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

int qs_consttime_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    /* Always walk the length of b so timing does not reveal a's length. */
    for (size_t i = 0; i < lb; i++) {
        unsigned char ca = i < la ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(ca ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

/* ---- JSON ------------------------------------------------------------------ */

static int json_no_duplicate_keys(const cJSON *item, struct qs_error *err)
{
    for (const cJSON *c = item->child; c != NULL; c = c->next) {
        if (cJSON_IsObject(item) && c->string != NULL) {
            for (const cJSON *p = item->child; p != c; p = p->next) {
                if (p->string != NULL && strcmp(p->string, c->string) == 0) {
                    char k[72];
                    qs_printable(k, sizeof(k), c->string, sizeof(k));
                    return qs_error_set(err, QS_EINVAL, "the key \"%s\" appears twice in an object",
                                        k);
                }
            }
        }
        if (c->child != NULL && json_no_duplicate_keys(c, err) != 0)
            return QS_EINVAL;
    }
    return 0;
}

int qs_json_parse(const char *text, size_t len, struct cJSON **out, struct qs_error *err)
{
    *out = NULL;
    if (text == NULL)
        text = "";
    /* Lexical pass, before cJSON (which takes every byte below 0x21 for
     * whitespace, and turns \u0000 into a C string that ends early:
     * "a\u0000../x" would read as "a"). */
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\0')
            return qs_error_set(err, QS_EINVAL, "a NUL byte at byte %zu", i);
        /* JSON allows no other control characters: outside strings only
         * space, tab, CR and LF, inside strings none (they must be escaped). */
        if ((unsigned char)c < 0x20 && (in_string || (c != '\t' && c != '\r' && c != '\n')))
            return qs_error_set(err, QS_EINVAL, "a control character at byte %zu", i);
        if (!in_string) {
            in_string = c == '"';
            continue;
        }
        if (c == '"') {
            in_string = 0;
        } else if (c == '\\' && i + 1 < len) {
            if (text[i + 1] == 'u' && i + 5 < len && memcmp(text + i + 2, "0000", 4) == 0)
                return qs_error_set(err, QS_EINVAL,
                                    "a string holds U+0000 (\\u0000) at byte %zu; NUL characters "
                                    "are not accepted",
                                    i);
            i++; /* the escaped character cannot end the string */
        }
    }
    const char *end = NULL;
    cJSON *j = len > 0 ? cJSON_ParseWithLengthOpts(text, len, &end, 0) : NULL;
    if (j == NULL) {
        if (len == 0)
            return qs_error_set(err, QS_EINVAL, "empty, not JSON");
        size_t at = end != NULL && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        return qs_error_set(err, QS_EINVAL, "not valid JSON (syntax error at byte %zu)", at);
    }
    for (const char *p = end; p != NULL && p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(j);
            return qs_error_set(err, QS_EINVAL, "unexpected data after the JSON value at byte %zu",
                                (size_t)(p - text));
        }
    }
    if (json_no_duplicate_keys(j, err) != 0) {
        cJSON_Delete(j);
        return QS_EINVAL;
    }
    *out = j;
    return 0;
}
