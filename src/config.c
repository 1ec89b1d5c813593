/* Configuration from QSNAP_* environment variables (see config.h). */
#include "qsnap/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qsnap/drill.h"
#include "qsnap/manifest.h"
#include "qsnap/testhooks.h"
#include "qsnap/util.h"

extern char **environ;

#define MIN_PART_SIZE ((uint64_t)5 << 20)
#define MAX_PART_SIZE ((uint64_t)5 << 30)
#define MAX_SECRET_FILE 65536
#define MAX_KEEP 1000000u
#define DEFAULT_STALE_WHEN_OFF (26 * 3600)
#define STALE_MARGIN (2 * 3600)

/* Every variable qsnap reads: the one table the loader, the unknown-variable
 * warning and check-config's output share. VAR_FILE: NAME_FILE is read
 * too (a file holding the value); VAR_SECRET: never printed. */
enum { VAR_FILE = 1, VAR_SECRET = 2 };
#define CONFIG_VARS(X)                                                                             \
    X(QDRANT_URL, 0)                                                                               \
    X(QDRANT_API_KEY, VAR_FILE | VAR_SECRET)                                                       \
    X(DESTINATION, 0)                                                                              \
    X(S3_ENDPOINT, 0)                                                                              \
    X(S3_REGION, 0)                                                                                \
    X(S3_ACCESS_KEY_ID, VAR_FILE | VAR_SECRET)                                                     \
    X(S3_SECRET_ACCESS_KEY, VAR_FILE | VAR_SECRET)                                                 \
    X(S3_URI_STYLE, 0)                                                                             \
    X(S3_CA_FILE, 0)                                                                               \
    X(S3_PART_SIZE, 0)                                                                             \
    X(SCHEDULE, 0)                                                                                 \
    X(JITTER, 0)                                                                                   \
    X(COLLECTIONS, 0)                                                                              \
    X(MODE, 0)                                                                                     \
    X(SNAPSHOT_METHOD, 0)                                                                          \
    X(RETENTION, 0)                                                                                \
    X(KEEP_MIN, 0)                                                                                 \
    X(LOCAL_KEEP, 0)                                                                               \
    X(COMPRESSION, 0)                                                                              \
    X(MAX_BANDWIDTH, 0)                                                                            \
    X(LISTEN, 0)                                                                                   \
    X(ADMIN_TOKEN, VAR_FILE | VAR_SECRET)                                                          \
    X(STALE_AFTER, 0)                                                                              \
    X(DRILL_SCHEDULE, 0)                                                                           \
    X(HEARTBEAT_URL, VAR_SECRET)                                                                   \
    X(CLUSTER, 0)                                                                                  \
    X(CLUSTER_REST_PORT, 0)                                                                        \
    X(LOG_LEVEL, 0)                                                                                \
    X(LOG_FORMAT, 0)

enum var {
#define X(id, flags) V_##id,
    CONFIG_VARS(X)
#undef X
        V_COUNT
};

static const struct {
    const char *name;
    unsigned flags;
} vars[V_COUNT] = {
#define X(id, fl) [V_##id] = {"QSNAP_" #id, fl},
    CONFIG_VARS(X)
#undef X
};

/* The name of variable id ("QSNAP_..."). */
#define VN(id) (vars[V_##id].name)

struct loader {
    qs_getenv_fn getenv_fn;
    void *ud;
    struct qs_error *err;
    struct qs_config *cfg;
};

static const char *default_getenv(const char *name, void *ud)
{
    (void)ud;
    return getenv(name);
}

static int fail(struct loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct loader *L, const char *fmt, ...)
{
    if (L->err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        L->err->code = QS_ECONFIG;
        L->err->http_status = 0;
        L->err->retryable = 0;
        vsnprintf(L->err->msg, sizeof(L->err->msg), fmt, ap);
        va_end(ap);
    }
    return QS_ECONFIG;
}

/* fail() with the message prefixed by the variable's name. */
static int fail_var(struct loader *L, enum var v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_var(struct loader *L, enum var v, const char *fmt, ...)
{
    char msg[sizeof(L->err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return fail(L, "%s: %s", vars[v].name, msg);
}

static int fail_nomem(struct loader *L)
{
    qs_error_set(L->err, -ENOMEM, "out of memory while loading the configuration");
    return -ENOMEM;
}

/* A printable, bounded rendering of a user value for error messages (never
 * used for secrets). */
struct shown {
    char s[80];
};

static struct shown show(const char *v)
{
    struct shown r;
    qs_printable(r.s, sizeof(r.s), v, 64);
    return r;
}

static int set_str(struct loader *L, char **dst, const char *src, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        return fail_nomem(L);
    memcpy(p, src, n);
    p[n] = '\0';
    free(*dst);
    *dst = p;
    return 0;
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return 1;
    return 0;
}

/* Plain variable: *out is NULL when unset; empty is an error. */
static int get_plain(struct loader *L, const char *name, const char **out)
{
    const char *v = L->getenv_fn(name, L->ud);
    *out = NULL;
    if (v != NULL && v[0] == '\0')
        return fail(L, "%s: empty value (unset the variable to use the default)", name);
    *out = v;
    return 0;
}

/* Opens path (named by var) for reading into *fd (owned) when it is a regular
 * file. O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
 * writer (start-up would hang); the type is checked on the opened file, so
 * nothing can be swapped in between. */
static int open_regular_file(struct loader *L, const char *var, const char *path, int *fd)
{
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (f < 0)
        return fail(L, "%s: cannot read '%s': %s", var, show(path).s, strerror(errno));
    struct stat st;
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return fail(L, "%s: cannot read '%s': not a regular file", var, show(path).s);
    }
    *fd = f;
    return 0;
}

/* Reads a secret file into *out (owned), stripping one trailing newline. */
static int read_secret_file(struct loader *L, const char *var, const char *path, char **out)
{
    int fd, rc;
    if ((rc = open_regular_file(L, var, path, &fd)) != 0)
        return rc;
    char *buf = malloc(MAX_SECRET_FILE + 1);
    if (buf == NULL) {
        close(fd);
        return fail_nomem(L);
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, MAX_SECRET_FILE + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return fail(L, "%s: cannot read '%s': %s", var, show(path).s, strerror(e));
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > MAX_SECRET_FILE) {
            close(fd);
            free(buf);
            return fail(L, "%s: file '%s' is larger than %d bytes", var, show(path).s,
                        MAX_SECRET_FILE);
        }
    }
    close(fd);
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        free(buf);
        return fail(L, "%s: file '%s' contains a NUL byte", var, show(path).s);
    }
    if (len == 0) {
        free(buf);
        return fail(L, "%s: file '%s' is empty", var, show(path).s);
    }
    *out = buf;
    return 0;
}

/* 1 when a secret value is evidently a template placeholder: it contains
 * "REPLACE" or "CHANGEME" in any case. */
static int is_placeholder(const char *v)
{
    static const char *const marks[] = {"REPLACE", "CHANGEME"};
    for (const char *p = v; *p != '\0'; p++)
        for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
            if (strncasecmp(p, marks[i], strlen(marks[i])) == 0)
                return 1;
    return 0;
}

/* A secret from NAME_FILE (preferred) or NAME. *out (owned) stays NULL when
 * neither is set. Messages never contain the value. */
static int get_secret(struct loader *L, const char *name, size_t min_len, char **out)
{
    char file_var[64];
    snprintf(file_var, sizeof(file_var), "%s_FILE", name);
    const char *path = L->getenv_fn(file_var, L->ud);
    const char *src = name;
    char *val = NULL;
    int rc;
    if (path != NULL) {
        if (path[0] == '\0')
            return fail(L, "%s: empty value (unset the variable to use the default)", file_var);
        if ((rc = read_secret_file(L, file_var, path, &val)) != 0)
            return rc;
        src = file_var;
    } else {
        const char *v = L->getenv_fn(name, L->ud);
        if (v == NULL)
            return 0;
        if (v[0] == '\0')
            return fail(L, "%s: empty value (unset the variable to use the default)", name);
        val = strdup(v);
        if (val == NULL)
            return fail_nomem(L);
    }
    /* Register first, so that nothing printed later can reveal it. */
    qs_log_add_secret(val);
    if (has_ctl(val)) {
        free(val);
        return fail(L, "%s: the value contains control characters or line breaks", src);
    }
    /* One rule for every secret: no surrounding whitespace. HTTP header
     * values lose it on the way, so such a token could never match; a
     * mounted file's trailing newline was stripped above. */
    size_t vlen = strlen(val);
    if (vlen > 0 && (isspace((unsigned char)val[0]) || isspace((unsigned char)val[vlen - 1]))) {
        free(val);
        return fail(L, "%s: the value begins or ends with whitespace (remove it)", src);
    }
    if (is_placeholder(val)) {
        free(val);
        return fail(L,
                    "%s: the value is a template placeholder (it contains \"REPLACE\" or "
                    "\"CHANGEME\"); set the real secret",
                    src);
    }
    if (strlen(val) < min_len) {
        free(val);
        return fail(L, "%s: the value is too short (at least %zu characters)", src, min_len);
    }
    free(*out);
    *out = val;
    return 0;
}

/* Strict unsigned decimal: digits only, no sign, no spaces, no overflow. */
static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static void fmt_size(uint64_t v, char *out, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (u < 4 && v != 0 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, "%llu%s", (unsigned long long)v, u == 0 ? "" : units[u]);
}

static void fmt_duration(int64_t v, char *out, size_t cap)
{
    if (v != 0 && v % 86400 == 0)
        snprintf(out, cap, "%lldd", (long long)(v / 86400));
    else if (v != 0 && v % 3600 == 0)
        snprintf(out, cap, "%lldh", (long long)(v / 3600));
    else if (v != 0 && v % 60 == 0)
        snprintf(out, cap, "%lldm", (long long)(v / 60));
    else
        snprintf(out, cap, "%llds", (long long)v);
}

/* ---- URLs ------------------------------------------------------------------ */

enum url_rules {
    URL_PATH_OK = 1,    /* a path may follow the authority */
    URL_QUERY_OK = 2,   /* ?query and #fragment accepted */
    URL_USERINFO_OK = 4 /* user:pass@ accepted */
};

/* Validates an http(s) URL. secret: the value must not appear in messages.
 * *authority_end receives the offset of the end of host[:port]. */
static int check_url(struct loader *L, const char *name, const char *v, int rules, int secret,
                     size_t *authority_end)
{
    size_t scheme;
    if (strncasecmp(v, "http://", 7) == 0)
        scheme = 7;
    else if (strncasecmp(v, "https://", 8) == 0)
        scheme = 8;
    else if (secret)
        return fail(L, "%s: must be an http:// or https:// URL", name);
    else
        return fail(L, "%s: must be an http:// or https:// URL (got '%s')", name, show(v).s);
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return fail(L, "%s: the URL contains spaces or control characters", name);
    const char *auth = v + scheme;
    size_t alen = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', alen);
    if (at != NULL) {
        if (!(rules & URL_USERINFO_OK))
            return fail(L, "%s: credentials in the URL are not supported", name);
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    const char *host = auth;
    size_t hlen;
    const char *port = NULL;
    if (alen > 0 && auth[0] == '[') {
        const char *rb = memchr(auth, ']', alen);
        if (rb == NULL)
            return fail(L, "%s: unterminated '[' in the host", name);
        hlen = (size_t)(rb + 1 - auth);
        if (hlen < alen) {
            if (rb[1] != ':')
                return fail(L, "%s: unexpected characters after ']'", name);
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        hlen = colon != NULL ? (size_t)(colon - auth) : alen;
        if (colon != NULL)
            port = colon + 1;
        for (size_t i = 0; i < hlen; i++) {
            unsigned char c = (unsigned char)host[i];
            if (!isalnum(c) && c != '.' && c != '-' && c != '_')
                return fail(L, "%s: invalid character '%c' in the host name", name, c);
        }
    }
    if (hlen == 0 || (hlen == 2 && host[0] == '['))
        return fail(L, "%s: the URL has no host", name);
    if (port != NULL) {
        size_t plen = (size_t)(auth + alen - port);
        char pbuf[8];
        uint64_t pv;
        if (plen == 0 || plen >= sizeof(pbuf))
            return fail(L, "%s: invalid port in the URL", name);
        memcpy(pbuf, port, plen);
        pbuf[plen] = '\0';
        if (parse_uint(pbuf, 65535, &pv) != 0 || pv == 0)
            return fail(L, "%s: invalid port in the URL (1-65535)", name);
    }
    const char *rest = auth + alen;
    if (!(rules & URL_QUERY_OK) && strpbrk(rest, "?#") != NULL)
        return fail(L, "%s: the URL must not have a query or fragment", name);
    if (!(rules & URL_PATH_OK) && rest[0] == '/' && strspn(rest, "/") != strlen(rest))
        return fail(L, "%s: the URL must not have a path (http[s]://host[:port])", name);
    *authority_end = (size_t)(rest - v);
    return 0;
}

/* Copies an URL without trailing slashes (kept after the authority). */
static int set_url_trimmed(struct loader *L, char **dst, const char *v, size_t authority_end)
{
    size_t n = strlen(v);
    while (n > authority_end && v[n - 1] == '/')
        n--;
    return set_str(L, dst, v, n);
}

/* ---- destination ------------------------------------------------------------ */

/* Checks '/'-separated segments of s[0..n): none empty, none "." or "..". */
static int check_segments(struct loader *L, const char *what, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '/')
            j++;
        size_t seg = j - i;
        if (seg == 0)
            return fail_var(L, V_DESTINATION, "empty path segment ('//') in the %s", what);
        if ((seg == 1 && s[i] == '.') || (seg == 2 && s[i] == '.' && s[i + 1] == '.'))
            return fail_var(L, V_DESTINATION, "'.' and '..' are not allowed in the %s", what);
        i = j + 1;
    }
    return 0;
}

static int check_bucket(struct loader *L, const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return fail_var(L, V_DESTINATION, "bucket name must be 3-63 characters (got %zu)", n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (!(islower(c) || isdigit(c) || c == '.' || c == '-'))
            return fail_var(L, V_DESTINATION,
                            "bucket name may only contain lowercase letters, "
                            "digits, '.' and '-' (found '%c')",
                            isprint(c) ? c : '?');
    }
    if (!isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
        return fail_var(L, V_DESTINATION, "bucket name must begin and end with a letter or digit");
    for (size_t i = 0; i + 1 < n; i++)
        if (b[i] == '.' && (b[i + 1] == '.' || b[i + 1] == '-' || (i > 0 && b[i - 1] == '-')))
            return fail_var(L, V_DESTINATION, "bucket name has adjacent '.' or '-.' characters");
    char tmp[64];
    struct in_addr a;
    memcpy(tmp, b, n);
    tmp[n] = '\0';
    if (inet_pton(AF_INET, tmp, &a) == 1)
        return fail_var(L, V_DESTINATION, "bucket name must not look like an IP address");
    return 0;
}

static int load_destination(struct loader *L)
{
    struct qs_config *cfg = L->cfg;
    const char *v;
    int rc;
    if ((rc = get_plain(L, VN(DESTINATION), &v)) != 0)
        return rc;
    if (v == NULL)
        return fail_var(L, V_DESTINATION, "required (s3://BUCKET[/PREFIX] or file:///ABS/PATH)");
    if (has_ctl(v))
        return fail_var(L, V_DESTINATION, "contains control characters");
    if ((rc = set_str(L, &cfg->destination, v, strlen(v))) != 0)
        return rc;
    if (strncmp(v, "s3://", 5) == 0) {
        const char *b = v + 5;
        size_t blen = strcspn(b, "/");
        if ((rc = check_bucket(L, b, blen)) != 0)
            return rc;
        const char *p = b + blen;
        size_t plen = strlen(p);
        if (plen > 0) { /* drop the separator and trailing slashes */
            p++;
            plen--;
            while (plen > 0 && p[plen - 1] == '/')
                plen--;
        }
        if ((rc = check_segments(L, "prefix", p, plen)) != 0)
            return rc;
        cfg->dest_kind = QS_DEST_S3;
        if ((rc = set_str(L, &cfg->dest_bucket, b, blen)) != 0)
            return rc;
        return set_str(L, &cfg->dest_prefix, p, plen);
    }
    if (strncmp(v, "file://", 7) == 0) {
        const char *p = v + 7;
        if (p[0] != '/')
            return fail_var(L, V_DESTINATION,
                            "file:// needs an absolute path, as in "
                            "file:///ABS/PATH (got '%s')",
                            show(v).s);
        size_t plen = strlen(p);
        while (plen > 1 && p[plen - 1] == '/')
            plen--;
        if (plen > 1 && (rc = check_segments(L, "path", p + 1, plen - 1)) != 0)
            return rc;
        cfg->dest_kind = QS_DEST_FILE;
        if ((rc = set_str(L, &cfg->dest_prefix, "", 0)) != 0)
            return rc;
        return set_str(L, &cfg->dest_path, p, plen);
    }
    return fail_var(L, V_DESTINATION, "must be s3://BUCKET[/PREFIX] or file:///ABS/PATH (got '%s')",
                    show(v).s);
}

/* ---- individual settings ----------------------------------------------------- */

static int load_qdrant(struct loader *L)
{
    const char *v;
    size_t auth_end;
    int rc;
    if ((rc = get_plain(L, VN(QDRANT_URL), &v)) != 0)
        return rc;
    if (v == NULL)
        v = "http://localhost:6333";
    if ((rc = check_url(L, VN(QDRANT_URL), v, URL_PATH_OK, 0, &auth_end)) != 0)
        return rc;
    if ((rc = set_url_trimmed(L, &L->cfg->qdrant_url, v, auth_end)) != 0)
        return rc;
    return get_secret(L, VN(QDRANT_API_KEY), 4, &L->cfg->qdrant_api_key);
}

static int load_s3(struct loader *L)
{
    struct qs_config *cfg = L->cfg;
    const char *v;
    size_t auth_end;
    int rc;

    if ((rc = get_plain(L, VN(S3_ENDPOINT), &v)) != 0)
        return rc;
    if (v != NULL) {
        if ((rc = check_url(L, VN(S3_ENDPOINT), v, 0, 0, &auth_end)) != 0)
            return rc;
        if ((rc = set_url_trimmed(L, &cfg->s3_endpoint, v, auth_end)) != 0)
            return rc;
    }

    if ((rc = get_plain(L, VN(S3_REGION), &v)) != 0)
        return rc;
    if (v == NULL)
        v = "us-east-1";
    if (strlen(v) > 64 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(v))
        return fail_var(L, V_S3_REGION, "only lowercase letters, digits and '-' (got '%s')",
                        show(v).s);
    if ((rc = set_str(L, &cfg->s3_region, v, strlen(v))) != 0)
        return rc;

    if ((rc = get_secret(L, VN(S3_ACCESS_KEY_ID), 1, &cfg->s3_access_key_id)) != 0)
        return rc;
    if ((rc = get_secret(L, VN(S3_SECRET_ACCESS_KEY), 4, &cfg->s3_secret_access_key)) != 0)
        return rc;
    if (cfg->dest_kind == QS_DEST_S3) {
        if (cfg->s3_access_key_id == NULL)
            return fail_var(L, V_S3_ACCESS_KEY_ID, "required for an s3:// destination (or %s_FILE)",
                            VN(S3_ACCESS_KEY_ID));
        if (cfg->s3_secret_access_key == NULL)
            return fail_var(L, V_S3_SECRET_ACCESS_KEY,
                            "required for an s3:// destination (or %s_FILE)",
                            VN(S3_SECRET_ACCESS_KEY));
    }

    if ((rc = get_plain(L, VN(S3_URI_STYLE), &v)) != 0)
        return rc;
    if (v == NULL)
        cfg->s3_uri_style = cfg->s3_endpoint != NULL ? QS_URI_PATH : QS_URI_VIRTUAL;
    else if (strcmp(v, "path") == 0)
        cfg->s3_uri_style = QS_URI_PATH;
    else if (strcmp(v, "virtual") == 0)
        cfg->s3_uri_style = QS_URI_VIRTUAL;
    else
        return fail_var(L, V_S3_URI_STYLE, "must be 'path' or 'virtual' (got '%s')", show(v).s);

    if ((rc = get_plain(L, VN(S3_CA_FILE), &v)) != 0)
        return rc;
    if (v != NULL) {
        int fd;
        if ((rc = open_regular_file(L, VN(S3_CA_FILE), v, &fd)) != 0)
            return rc;
        close(fd);
        if ((rc = set_str(L, &cfg->s3_ca_file, v, strlen(v))) != 0)
            return rc;
    }

    if ((rc = get_plain(L, VN(S3_PART_SIZE), &v)) != 0)
        return rc;
    cfg->s3_part_size = QS_CONFIG_DEFAULT_PART_SIZE;
    if (v != NULL) {
        if (qs_parse_size(v, &cfg->s3_part_size) != 0)
            return fail_var(L, V_S3_PART_SIZE, "expected a size like 8MiB (got '%s')", show(v).s);
        if (cfg->s3_part_size < MIN_PART_SIZE)
            return fail_var(L, V_S3_PART_SIZE, "must be at least 5MiB (got %s)", show(v).s);
        if (cfg->s3_part_size > MAX_PART_SIZE)
            return fail_var(L, V_S3_PART_SIZE, "must be at most 5GiB (got %s)", show(v).s);
    }
    return 0;
}

static int load_cron(struct loader *L, const char *name, const char *def, char **expr_out,
                     struct qs_cron *out)
{
    const char *v;
    int rc;
    struct qs_error cerr;
    if ((rc = get_plain(L, name, &v)) != 0)
        return rc;
    if (v == NULL)
        v = def;
    qs_error_clear(&cerr);
    if (qs_cron_parse(v, out, &cerr) != 0)
        return fail(L, "%s: %s", name, cerr.msg);
    /* Any satisfiable expression fires within 9 years of any instant. */
    if (!out->off && qs_cron_next(out, 0) < 0)
        return fail(L, "%s: '%s' never fires (no such date)", name, show(v).s);
    return set_str(L, expr_out, v, strlen(v));
}

static int load_duration(struct loader *L, const char *name, const char *def, int64_t min,
                         int64_t *out)
{
    const char *v;
    int rc;
    if ((rc = get_plain(L, name, &v)) != 0)
        return rc;
    if (v == NULL)
        v = def;
    if (qs_parse_duration(v, out) != 0)
        return fail(L, "%s: expected a duration like 30s, 15m, 2h or 7d (got '%s')", name,
                    show(v).s);
    if (*out < min) {
        char m[32];
        fmt_duration(min, m, sizeof(m));
        return fail(L, "%s: must be at least %s (got %s)", name, m, show(v).s);
    }
    return 0;
}

static int load_count(struct loader *L, const char *name, uint32_t def, uint32_t min, uint32_t *out)
{
    const char *v;
    int rc;
    uint64_t n;
    if ((rc = get_plain(L, name, &v)) != 0)
        return rc;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (parse_uint(v, MAX_KEEP, &n) != 0)
        return fail(L, "%s: expected a whole number from %u to %u (got '%s')", name, min, MAX_KEEP,
                    show(v).s);
    if (n < min)
        return fail(L, "%s: must be at least %u (got %s)", name, min, show(v).s);
    *out = (uint32_t)n;
    return 0;
}

static int check_collection_name(struct loader *L, const char *s, size_t n)
{
    if (n == 0)
        return fail_var(L, V_COLLECTIONS, "empty collection name in the list");
    char *name = strndup(s, n);
    if (name == NULL)
        return fail_nomem(L);
    char why[400];
    int rc = 0;
    /* The one rule of names qsnap can back up, with the message the HTTP API
     * and the CLI give too. */
    if (qs_manifest_collection_name_error(name, why, sizeof(why)) != 0)
        rc = fail_var(L, V_COLLECTIONS, "%s", why);
    free(name);
    return rc;
}

static int load_collections(struct loader *L)
{
    struct qs_config *cfg = L->cfg;
    const char *v;
    int rc;
    if ((rc = get_plain(L, VN(COLLECTIONS), &v)) != 0)
        return rc;
    if (v == NULL)
        return 0;
    size_t count = 1;
    for (const char *p = v; *p; p++)
        count += *p == ',';
    cfg->collections = calloc(count + 1, sizeof(char *));
    if (cfg->collections == NULL)
        return fail_nomem(L);
    const char *p = v;
    for (size_t i = 0; i < count; i++) {
        size_t len = strcspn(p, ",");
        const char *s = p;
        size_t n = len;
        while (n > 0 && (*s == ' ' || *s == '\t'))
            s++, n--;
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if ((rc = check_collection_name(L, s, n)) != 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strlen(cfg->collections[j]) == n && memcmp(cfg->collections[j], s, n) == 0)
                return fail_var(L, V_COLLECTIONS, "collection '%s' is listed twice",
                                show(cfg->collections[j]).s);
        if ((rc = set_str(L, &cfg->collections[i], s, n)) != 0)
            return rc;
        cfg->ncollections = i + 1;
        p += len + (p[len] == ',');
    }
    for (size_t i = 0; i < cfg->ncollections; i++)
        if (qs_drill_is_scratch(cfg->collections[i]))
            return fail_var(L, V_COLLECTIONS,
                            "'%s' is a restore-drill scratch collection (*" QS_DRILL_SUFFIX
                            "); those are never backed up",
                            show(cfg->collections[i]).s);
    return 0;
}

static int load_listen(struct loader *L)
{
    struct qs_config *cfg = L->cfg;
    const char *v;
    int rc;
    if ((rc = get_plain(L, VN(LISTEN), &v)) != 0)
        return rc;
    if (v == NULL)
        v = "0.0.0.0:9633";
    char host[64];
    const char *port;
    size_t hlen;
    if (v[0] == '[') {
        const char *rb = strchr(v, ']');
        if (rb == NULL || rb[1] != ':')
            return fail_var(L, V_LISTEN, "expected [IPv6]:PORT (got '%s')", show(v).s);
        hlen = (size_t)(rb - v - 1);
        if (hlen == 0 || hlen >= sizeof(host))
            return fail_var(L, V_LISTEN, "invalid IPv6 address (got '%s')", show(v).s);
        memcpy(host, v + 1, hlen);
        host[hlen] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return fail_var(L, V_LISTEN, "invalid IPv6 address '%s'", show(host).s);
        cfg->listen_ipv6 = 1;
        port = rb + 2;
    } else {
        const char *colon = strrchr(v, ':');
        if (colon == NULL)
            return fail_var(L, V_LISTEN, "expected HOST:PORT, e.g. 0.0.0.0:9633 (got '%s')",
                            show(v).s);
        hlen = (size_t)(colon - v);
        if (memchr(v, ':', hlen) != NULL)
            return fail_var(L, V_LISTEN, "IPv6 addresses need brackets, e.g. [::]:9633 (got '%s')",
                            show(v).s);
        if (hlen == 0 || hlen >= sizeof(host))
            return fail_var(L, V_LISTEN, "expected HOST:PORT, e.g. 0.0.0.0:9633 (got '%s')",
                            show(v).s);
        memcpy(host, v, hlen);
        host[hlen] = '\0';
        struct in_addr a4;
        if (inet_pton(AF_INET, host, &a4) != 1)
            return fail_var(L, V_LISTEN, "host must be a numeric IPv4 address or [IPv6] (got '%s')",
                            show(host).s);
        cfg->listen_ipv6 = 0;
        port = colon + 1;
    }
    uint64_t pv;
    if (parse_uint(port, 65535, &pv) != 0 || pv == 0)
        return fail_var(L, V_LISTEN, "port must be a number from 1 to 65535 (got '%s')",
                        show(port).s);
    cfg->listen_port = (int)pv;
    return set_str(L, &cfg->listen_host, host, hlen);
}

static int load_cluster(struct loader *L)
{
    struct qs_config *cfg = L->cfg;
    const char *v;
    int rc;
    if ((rc = get_plain(L, VN(CLUSTER), &v)) != 0)
        return rc;
    if (v == NULL || strcmp(v, "auto") == 0)
        cfg->cluster = QS_CLUSTER_AUTO;
    else if (strcmp(v, "off") == 0)
        cfg->cluster = QS_CLUSTER_OFF;
    else
        return fail_var(L, V_CLUSTER, "must be 'auto' or 'off' (got '%s')", show(v).s);
    if ((rc = get_plain(L, VN(CLUSTER_REST_PORT), &v)) != 0)
        return rc;
    uint64_t port = 6333;
    if (v != NULL && (parse_uint(v, 65535, &port) != 0 || port == 0))
        return fail_var(L, V_CLUSTER_REST_PORT, "must be a port number from 1 to 65535 (got '%s')",
                        show(v).s);
    cfg->cluster_rest_port = (int)port;
    return 0;
}

static int load_misc(struct loader *L)
{
    struct qs_config *cfg = L->cfg;
    const char *v;
    int rc;

    if ((rc = get_plain(L, VN(MODE), &v)) != 0)
        return rc;
    if (v == NULL || strcmp(v, "collections") == 0)
        cfg->mode = QS_MODE_COLLECTIONS;
    else if (strcmp(v, "full") == 0)
        cfg->mode = QS_MODE_FULL;
    else
        return fail_var(L, V_MODE, "must be 'collections' or 'full' (got '%s')", show(v).s);
    if ((rc = load_collections(L)) != 0)
        return rc;
    if (cfg->mode == QS_MODE_FULL && cfg->collections != NULL)
        return fail_var(L, V_COLLECTIONS,
                        "cannot be combined with %s=full (a full snapshot holds every collection)",
                        VN(MODE));

    if ((rc = get_plain(L, VN(SNAPSHOT_METHOD), &v)) != 0)
        return rc;
    if (v == NULL || strcmp(v, "collection") == 0)
        cfg->method = QS_METHOD_COLLECTION;
    else if (strcmp(v, "shards") == 0)
        cfg->method = QS_METHOD_SHARDS;
    else
        return fail_var(L, V_SNAPSHOT_METHOD, "must be 'collection' or 'shards' (got '%s')",
                        show(v).s);
    if (cfg->mode == QS_MODE_FULL && cfg->method == QS_METHOD_SHARDS)
        return fail_var(L, V_SNAPSHOT_METHOD,
                        "cannot be 'shards' with %s=full (a full-storage snapshot is one file "
                        "Qdrant writes; shard streams exist per collection)",
                        VN(MODE));

    if ((rc = load_duration(L, VN(RETENTION), "7d", 1, &cfg->retention_s)) != 0)
        return rc;
    if ((rc = load_count(L, VN(KEEP_MIN), 3, 1, &cfg->keep_min)) != 0)
        return rc;
    if ((rc = load_count(L, VN(LOCAL_KEEP), 1, 0, &cfg->local_keep)) != 0)
        return rc;

    if ((rc = get_plain(L, VN(COMPRESSION), &v)) != 0)
        return rc;
    if (v == NULL)
        v = QS_CONFIG_DEFAULT_COMPRESSION;
    if (strcmp(v, "none") == 0)
        cfg->compression_level = 0;
    else if (strcmp(v, "gzip") == 0)
        cfg->compression_level = 6;
    else if (strncmp(v, "gzip:", 5) == 0 && v[5] >= '1' && v[5] <= '9' && v[6] == '\0')
        cfg->compression_level = v[5] - '0';
    else
        return fail_var(L, V_COMPRESSION, "must be 'none', 'gzip' or 'gzip:1'..'gzip:9' (got '%s')",
                        show(v).s);

    if ((rc = get_plain(L, VN(MAX_BANDWIDTH), &v)) != 0)
        return rc;
    cfg->max_bandwidth = 0;
    if (v != NULL && qs_parse_rate(v, &cfg->max_bandwidth) != 0)
        return fail_var(L, V_MAX_BANDWIDTH, "expected a rate like 50MiB/s (got '%s')", show(v).s);

    if ((rc = load_listen(L)) != 0)
        return rc;
    if ((rc = get_secret(L, VN(ADMIN_TOKEN), QS_CONFIG_MIN_ADMIN_TOKEN, &cfg->admin_token)) != 0)
        return rc;

    if ((rc = get_plain(L, VN(HEARTBEAT_URL), &v)) != 0)
        return rc;
    if (v != NULL) {
        size_t auth_end;
        qs_log_add_secret(v);
        if ((rc = check_url(L, VN(HEARTBEAT_URL), v, URL_PATH_OK | URL_QUERY_OK | URL_USERINFO_OK,
                            1, &auth_end)) != 0)
            return rc;
        if ((rc = set_str(L, &cfg->heartbeat_url, v, strlen(v))) != 0)
            return rc;
    }

    if ((rc = load_cluster(L)) != 0)
        return rc;

    if ((rc = get_plain(L, VN(LOG_LEVEL), &v)) != 0)
        return rc;
    cfg->log_level = QS_LOG_INFO;
    if (v != NULL && qs_log_parse_level(v, &cfg->log_level) != 0)
        return fail_var(L, V_LOG_LEVEL, "must be debug, info, warn or error (got '%s')", show(v).s);
    if ((rc = get_plain(L, VN(LOG_FORMAT), &v)) != 0)
        return rc;
    cfg->log_format = QS_LOG_JSON;
    if (v != NULL && qs_log_parse_format(v, &cfg->log_format) != 0)
        return fail_var(L, V_LOG_FORMAT, "must be json or text (got '%s')", show(v).s);
    return 0;
}

static int load_schedule(struct loader *L)
{
    struct qs_config *cfg = L->cfg;
    int rc;
    if ((rc = load_cron(L, VN(SCHEDULE), "0 3 * * *", &cfg->schedule, &cfg->cron)) != 0)
        return rc;
    int64_t interval = qs_cron_interval(&cfg->cron, qs_clock_now());
    if ((rc = load_duration(L, VN(JITTER), "0s", 0, &cfg->jitter_s)) != 0)
        return rc;
    if (interval > 0 && cfg->jitter_s >= interval) {
        char j[32], i[32];
        fmt_duration(cfg->jitter_s, j, sizeof(j));
        fmt_duration(interval, i, sizeof(i));
        return fail_var(L, V_JITTER, "%s must be shorter than the schedule interval (%s)", j, i);
    }
    char def[32];
    fmt_duration(interval > 0 ? interval + STALE_MARGIN : DEFAULT_STALE_WHEN_OFF, def, sizeof(def));
    if ((rc = load_duration(L, VN(STALE_AFTER), def, 1, &cfg->stale_after_s)) != 0)
        return rc;
    return load_cron(L, VN(DRILL_SCHEDULE), "off", &cfg->drill_schedule, &cfg->drill_cron);
}

int qs_config_load(struct qs_config *cfg, qs_getenv_fn getenv_fn, void *ud, struct qs_error *err)
{
    struct loader L = {
        .getenv_fn = getenv_fn != NULL ? getenv_fn : default_getenv,
        .ud = ud,
        .err = err,
        .cfg = cfg,
    };
    memset(cfg, 0, sizeof(*cfg));
    qs_error_clear(err);
    int rc;
    if ((rc = load_destination(&L)) != 0 || (rc = load_qdrant(&L)) != 0 ||
        (rc = load_s3(&L)) != 0 || (rc = load_schedule(&L)) != 0 || (rc = load_misc(&L)) != 0) {
        qs_config_free(cfg);
        return rc;
    }
    return 0;
}

void qs_config_free(struct qs_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->qdrant_url);
    free(cfg->qdrant_api_key);
    free(cfg->destination);
    free(cfg->dest_bucket);
    free(cfg->dest_prefix);
    free(cfg->dest_path);
    free(cfg->s3_endpoint);
    free(cfg->s3_region);
    free(cfg->s3_access_key_id);
    free(cfg->s3_secret_access_key);
    free(cfg->s3_ca_file);
    free(cfg->schedule);
    if (cfg->collections != NULL)
        for (size_t i = 0; cfg->collections[i] != NULL; i++)
            free(cfg->collections[i]);
    free(cfg->collections);
    free(cfg->listen_host);
    free(cfg->admin_token);
    free(cfg->drill_schedule);
    free(cfg->heartbeat_url);
    memset(cfg, 0, sizeof(*cfg));
}

void qs_config_apply_log(const struct qs_config *cfg)
{
    qs_log_set_level(cfg->log_level);
    qs_log_set_format(cfg->log_format);
}

/* Levenshtein distance, for "did you mean" hints on short names. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Compares name with the variable's name (and its _FILE form): 1 when it
 * is one of them; else lowers *best_d / sets *best when it is close. */
static int known_or_close(const char *name, enum var k, size_t *best_d, const char **best)
{
    char file_name[64];
    snprintf(file_name, sizeof(file_name), "%s_FILE", vars[k].name);
    const char *forms[] = {vars[k].name, (vars[k].flags & VAR_FILE) ? file_name : NULL};
    for (size_t f = 0; f < 2 && forms[f] != NULL; f++) {
        if (strcmp(name, forms[f]) == 0)
            return 1;
        size_t d = edit_distance(name, forms[f]);
        if (d < *best_d) {
            *best_d = d;
            *best = vars[k].name; /* a table name: static storage */
        }
    }
    return 0;
}

size_t qs_config_warn_unknown(char *const *envp)
{
    if (envp == NULL)
        envp = environ;
    size_t found = 0;
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *e = envp[i];
        size_t n = strcspn(e, "=");
        char name[128];
        if (n >= sizeof(name))
            n = sizeof(name) - 1;
        memcpy(name, e, n);
        name[n] = '\0';
        if (strncmp(name, "QSNAP_", 6) != 0 || qs_testhook_owns_variable(name))
            continue;
        const char *best = NULL;
        size_t best_d = 4;
        int known = 0;
        for (int k = 0; k < V_COUNT && !known; k++)
            known = known_or_close(name, (enum var)k, &best_d, &best);
        if (known)
            continue;
        found++;
        if (best != NULL)
            qs_log(QS_LOG_WARN, NULL, "unknown variable %s is ignored (did you mean %s?)",
                   show(name).s, best);
        else
            qs_log(QS_LOG_WARN, NULL, "unknown variable %s is ignored", show(name).s);
    }
    return found;
}

/* The effective value of variable k as check-config prints it, into out. */
static void format_value(const struct qs_config *cfg, enum var k, char *out, size_t cap)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    char buf[64];
    out[0] = '\0';
    switch (k) {
    case V_QDRANT_URL:
        snprintf(out, cap, "%s", cfg->qdrant_url);
        break;
    case V_DESTINATION:
        if (cfg->dest_kind == QS_DEST_S3)
            snprintf(out, cap, "s3://%s%s%s", cfg->dest_bucket,
                     cfg->dest_prefix[0] != '\0' ? "/" : "", cfg->dest_prefix);
        else
            snprintf(out, cap, "file://%s", cfg->dest_path);
        break;
    case V_S3_ENDPOINT:
        snprintf(out, cap, "%s", cfg->s3_endpoint != NULL ? cfg->s3_endpoint : "");
        break;
    case V_S3_REGION:
        snprintf(out, cap, "%s", cfg->s3_region);
        break;
    case V_S3_URI_STYLE:
        snprintf(out, cap, "%s", cfg->s3_uri_style == QS_URI_PATH ? "path" : "virtual");
        break;
    case V_S3_CA_FILE:
        snprintf(out, cap, "%s", cfg->s3_ca_file != NULL ? cfg->s3_ca_file : "");
        break;
    case V_S3_PART_SIZE:
        fmt_size(cfg->s3_part_size, out, cap);
        break;
    case V_SCHEDULE:
        snprintf(out, cap, "%s", cfg->schedule);
        break;
    case V_JITTER:
        fmt_duration(cfg->jitter_s, out, cap);
        break;
    case V_COLLECTIONS: /* printed name by name: the list has no bound */
        break;
    case V_MODE:
        snprintf(out, cap, "%s", cfg->mode == QS_MODE_FULL ? "full" : "collections");
        break;
    case V_SNAPSHOT_METHOD:
        snprintf(out, cap, "%s", cfg->method == QS_METHOD_SHARDS ? "shards" : "collection");
        break;
    case V_RETENTION:
        fmt_duration(cfg->retention_s, out, cap);
        break;
    case V_KEEP_MIN:
        snprintf(out, cap, "%u", (unsigned)cfg->keep_min);
        break;
    case V_LOCAL_KEEP:
        snprintf(out, cap, "%u", (unsigned)cfg->local_keep);
        break;
    case V_COMPRESSION:
        if (cfg->compression_level == 0)
            snprintf(out, cap, "none");
        else
            snprintf(out, cap, "gzip:%d", cfg->compression_level);
        break;
    case V_MAX_BANDWIDTH:
        if (cfg->max_bandwidth != 0) {
            fmt_size(cfg->max_bandwidth, buf, sizeof(buf));
            snprintf(out, cap, "%s/s", buf);
        }
        break;
    case V_LISTEN:
        snprintf(out, cap, cfg->listen_ipv6 ? "[%s]:%d" : "%s:%d", cfg->listen_host,
                 cfg->listen_port);
        break;
    case V_STALE_AFTER:
        fmt_duration(cfg->stale_after_s, out, cap);
        break;
    case V_DRILL_SCHEDULE:
        snprintf(out, cap, "%s", cfg->drill_schedule);
        break;
    case V_CLUSTER:
        snprintf(out, cap, "%s", cfg->cluster == QS_CLUSTER_OFF ? "off" : "auto");
        break;
    case V_CLUSTER_REST_PORT:
        snprintf(out, cap, "%d", cfg->cluster_rest_port);
        break;
    case V_LOG_LEVEL:
        snprintf(out, cap, "%s", (unsigned)cfg->log_level < 4 ? levels[cfg->log_level] : "info");
        break;
    case V_LOG_FORMAT:
        snprintf(out, cap, "%s", cfg->log_format == QS_LOG_TEXT ? "text" : "json");
        break;
    case V_S3_ACCESS_KEY_ID:
        /* A long access key id shows its first 4 characters. */
        if (cfg->s3_access_key_id != NULL && strlen(cfg->s3_access_key_id) >= 12)
            snprintf(out, cap, "%.4s\xe2\x80\xa6", cfg->s3_access_key_id);
        else if (cfg->s3_access_key_id != NULL)
            snprintf(out, cap, "[REDACTED]");
        break;
    case V_QDRANT_API_KEY:
    case V_S3_SECRET_ACCESS_KEY:
    case V_ADMIN_TOKEN:
    case V_HEARTBEAT_URL:
    case V_COUNT:
        break;
    }
}

/* The value of a secret variable, NULL when unset. */
static const char *secret_value(const struct qs_config *cfg, enum var k)
{
    switch (k) {
    case V_QDRANT_API_KEY:
        return cfg->qdrant_api_key;
    case V_S3_SECRET_ACCESS_KEY:
        return cfg->s3_secret_access_key;
    case V_ADMIN_TOKEN:
        return cfg->admin_token;
    case V_HEARTBEAT_URL:
        return cfg->heartbeat_url;
    default:
        return NULL;
    }
}

void qs_config_print(const struct qs_config *cfg, FILE *out)
{
    char value[4096];
    for (int i = 0; i < V_COUNT; i++) {
        enum var k = (enum var)i;
        if (k == V_COLLECTIONS) {
            fprintf(out, "%s=", vars[k].name);
            for (size_t c = 0; c < cfg->ncollections; c++)
                fprintf(out, "%s%s", c > 0 ? "," : "", cfg->collections[c]);
            fputc('\n', out);
            continue;
        }
        if ((vars[k].flags & VAR_SECRET) && k != V_S3_ACCESS_KEY_ID)
            snprintf(value, sizeof(value), "%s", secret_value(cfg, k) != NULL ? "[REDACTED]" : "");
        else
            format_value(cfg, k, value, sizeof(value));
        fprintf(out, "%s=%s\n", vars[k].name, value);
    }
}
