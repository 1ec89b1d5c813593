/* Metrics registry and Prometheus text exposition (see metrics.h). */
#include "qsnap/metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "qsnap/error.h"

struct series {
    char **values; /* owned, one per family label */
    double value;
};

struct family {
    char *name;
    char *help;
    enum qs_metric_type type;
    size_t nlabels;
    char **labels; /* owned names */
    struct series *series;
    size_t nseries;
    size_t cap;
};

struct hook {
    qs_metrics_render_fn cb;
    void *ud;
};

struct qs_metrics {
    unsigned flags;
    struct family **fams;
    size_t nfams;
    size_t cap;
    struct hook *hooks;
    size_t nhooks;
    uint64_t changes; /* counts changes of series, values, families and hooks */
    /* The render cache: the exposition as of `changes` == cache_changes,
     * rendered at cache_ms. */
    struct qs_buf cache;
    int cache_ok;
    uint64_t cache_changes, cache_ms, version;
};

static int valid_metric_name(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                 (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static int valid_label_name(const char *s)
{
    if (s == NULL || *s == '\0' || strncmp(s, "__", 2) == 0)
        return 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

static void free_series(struct series *s, size_t nlabels)
{
    for (size_t i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->values);
}

static void free_family(struct family *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        free_series(&f->series[i], f->nlabels);
    free(f->series);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->labels);
    free(f->name);
    free(f->help);
    free(f);
}

static struct family *find_family(const struct qs_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->nfams; i++)
        if (strcmp(m->fams[i]->name, name) == 0)
            return m->fams[i];
    return NULL;
}

static void register_builtin(struct qs_metrics *m);

struct qs_metrics *qs_metrics_new(unsigned flags)
{
    struct qs_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->flags = flags;
    register_builtin(m);
    return m;
}

void qs_metrics_free(struct qs_metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfams; i++)
        free_family(m->fams[i]);
    free(m->fams);
    free(m->hooks);
    qs_buf_free(&m->cache);
    free(m);
}

int qs_metrics_register(struct qs_metrics *m, const char *name, enum qs_metric_type type,
                        const char *help, const char *const *label_names)
{
    if (m == NULL || !valid_metric_name(name) || help == NULL)
        return QS_EINVAL;
    if (type != QS_METRIC_GAUGE && type != QS_METRIC_COUNTER)
        return QS_EINVAL;
    if (type == QS_METRIC_COUNTER && !ends_with(name, "_total"))
        return QS_EINVAL;
    size_t nlabels = 0;
    while (label_names != NULL && label_names[nlabels] != NULL) {
        if (!valid_label_name(label_names[nlabels]))
            return QS_EINVAL;
        for (size_t j = 0; j < nlabels; j++)
            if (strcmp(label_names[j], label_names[nlabels]) == 0)
                return QS_EINVAL;
        nlabels++;
    }
    struct family *old = find_family(m, name);
    if (old != NULL) {
        if (old->type != type || old->nlabels != nlabels)
            return QS_EINVAL;
        for (size_t i = 0; i < nlabels; i++)
            if (strcmp(old->labels[i], label_names[i]) != 0)
                return QS_EINVAL;
        return 0;
    }
    if (m->nfams == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        struct family **p = realloc(m->fams, cap * sizeof(*p));
        if (p == NULL)
            return UV_ENOMEM;
        m->fams = p;
        m->cap = cap;
    }
    struct family *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return UV_ENOMEM;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help);
    f->labels = calloc(nlabels + 1, sizeof(char *));
    if (f->name == NULL || f->help == NULL || f->labels == NULL) {
        free_family(f);
        return UV_ENOMEM;
    }
    for (size_t i = 0; i < nlabels; i++) {
        f->labels[i] = strdup(label_names[i]);
        if (f->labels[i] == NULL) {
            f->nlabels = i;
            free_family(f);
            return UV_ENOMEM;
        }
    }
    f->nlabels = nlabels;
    m->fams[m->nfams++] = f;
    m->changes++;
    return 0;
}

/* Orders the pairs in `labels` by the family's declaration into vals
 * (borrowed pointers). Returns 0 or QS_EINVAL. */
static int match_labels(const struct family *f, const char *const *labels, const char **vals)
{
    size_t npairs = 0;
    while (labels != NULL && labels[2 * npairs] != NULL) {
        if (labels[2 * npairs + 1] == NULL)
            return QS_EINVAL;
        npairs++;
    }
    if (npairs != f->nlabels)
        return QS_EINVAL;
    for (size_t i = 0; i < f->nlabels; i++) {
        vals[i] = NULL;
        for (size_t j = 0; j < npairs; j++) {
            if (strcmp(labels[2 * j], f->labels[i]) == 0) {
                if (vals[i] != NULL)
                    return QS_EINVAL;
                vals[i] = labels[2 * j + 1];
            }
        }
        if (vals[i] == NULL)
            return QS_EINVAL;
    }
    return 0;
}

static struct series *find_series(const struct family *f, const char **vals)
{
    for (size_t i = 0; i < f->nseries; i++) {
        size_t k = 0;
        while (k < f->nlabels && strcmp(f->series[i].values[k], vals[k]) == 0)
            k++;
        if (k == f->nlabels)
            return &f->series[i];
    }
    return NULL;
}

#define MAX_LABELS 16

static int lookup(const struct qs_metrics *m, const char *name, const char *const *labels,
                  struct family **fout, const char **vals)
{
    if (m == NULL || name == NULL)
        return QS_EINVAL;
    struct family *f = find_family(m, name);
    if (f == NULL)
        return QS_ENOTFOUND;
    if (f->nlabels > MAX_LABELS)
        return QS_EINVAL;
    int rc = match_labels(f, labels, vals);
    if (rc != 0)
        return rc;
    *fout = f;
    return 0;
}

static int get_or_create(struct qs_metrics *m, const char *name, const char *const *labels,
                         struct family **fout, struct series **sout)
{
    const char *vals[MAX_LABELS];
    struct family *f;
    int rc = lookup(m, name, labels, &f, vals);
    if (rc != 0)
        return rc;
    struct series *s = find_series(f, vals);
    if (s == NULL) {
        if (f->nseries == f->cap) {
            size_t cap = f->cap ? f->cap * 2 : 4;
            struct series *p = realloc(f->series, cap * sizeof(*p));
            if (p == NULL)
                return UV_ENOMEM;
            f->series = p;
            f->cap = cap;
        }
        char **values = calloc(f->nlabels + 1, sizeof(char *));
        if (values == NULL)
            return UV_ENOMEM;
        for (size_t i = 0; i < f->nlabels; i++) {
            values[i] = strdup(vals[i]);
            if (values[i] == NULL) {
                for (size_t j = 0; j < i; j++)
                    free(values[j]);
                free(values);
                return UV_ENOMEM;
            }
        }
        s = &f->series[f->nseries++];
        s->values = values;
        s->value = 0;
        m->changes++;
    }
    *fout = f;
    *sout = s;
    return 0;
}

int qs_metrics_set(struct qs_metrics *m, const char *name, const char *const *labels, double value)
{
    struct family *f;
    struct series *s;
    int rc = get_or_create(m, name, labels, &f, &s);
    if (rc != 0)
        return rc;
    /* Bit for bit: a NaN set again is no change, 0 set over -0 is one. */
    if (memcmp(&s->value, &value, sizeof(value)) != 0) {
        s->value = value;
        m->changes++;
    }
    return 0;
}

int qs_metrics_add(struct qs_metrics *m, const char *name, const char *const *labels, double delta)
{
    if (m == NULL || name == NULL)
        return QS_EINVAL;
    struct family *f = find_family(m, name);
    if (f == NULL)
        return QS_ENOTFOUND;
    if (f->type == QS_METRIC_COUNTER && !(delta >= 0))
        return QS_EINVAL;
    struct series *s;
    int rc = get_or_create(m, name, labels, &f, &s);
    if (rc != 0)
        return rc;
    if (delta != 0) {
        s->value += delta;
        m->changes++;
    }
    return 0;
}

/* The existing series of name with labels: 0 with *fout and *sout, or
 * QS_ENOTFOUND / lookup()'s error. */
static int lookup_series(const struct qs_metrics *m, const char *name, const char *const *labels,
                         struct family **fout, struct series **sout)
{
    const char *vals[MAX_LABELS];
    int rc = lookup(m, name, labels, fout, vals);
    if (rc != 0)
        return rc;
    *sout = find_series(*fout, vals);
    return *sout != NULL ? 0 : QS_ENOTFOUND;
}

int qs_metrics_get(const struct qs_metrics *m, const char *name, const char *const *labels,
                   double *out)
{
    struct family *f;
    struct series *s;
    int rc = lookup_series(m, name, labels, &f, &s);
    if (rc == 0 && out != NULL)
        *out = s->value;
    return rc;
}

int qs_metrics_remove(struct qs_metrics *m, const char *name, const char *const *labels)
{
    struct family *f;
    struct series *s;
    int rc = lookup_series(m, name, labels, &f, &s);
    if (rc != 0)
        return rc;
    size_t idx = (size_t)(s - f->series);
    free_series(s, f->nlabels);
    memmove(&f->series[idx], &f->series[idx + 1], (f->nseries - idx - 1) * sizeof(*s));
    f->nseries--;
    m->changes++;
    return 0;
}

int qs_metrics_clear(struct qs_metrics *m, const char *name)
{
    if (m == NULL || name == NULL)
        return QS_EINVAL;
    struct family *f = find_family(m, name);
    if (f == NULL)
        return QS_ENOTFOUND;
    if (f->nseries > 0)
        m->changes++;
    for (size_t i = 0; i < f->nseries; i++)
        free_series(&f->series[i], f->nlabels);
    f->nseries = 0;
    return 0;
}

int qs_metrics_on_render(struct qs_metrics *m, qs_metrics_render_fn cb, void *ud)
{
    if (m == NULL || cb == NULL)
        return QS_EINVAL;
    struct hook *p = realloc(m->hooks, (m->nhooks + 1) * sizeof(*p));
    if (p == NULL)
        return UV_ENOMEM;
    m->hooks = p;
    m->hooks[m->nhooks++] = (struct hook){cb, ud};
    m->changes++;
    return 0;
}

int qs_metrics_off_render(struct qs_metrics *m, qs_metrics_render_fn cb, void *ud)
{
    if (m == NULL)
        return QS_EINVAL;
    for (size_t i = 0; i < m->nhooks; i++) {
        if (m->hooks[i].cb == cb && m->hooks[i].ud == ud) {
            memmove(&m->hooks[i], &m->hooks[i + 1], (m->nhooks - i - 1) * sizeof(struct hook));
            m->nhooks--;
            m->changes++;
            return 0;
        }
    }
    return QS_ENOTFOUND;
}

/* ---- the metric table ----------------------------------------------------- */

const struct qs_metric_def qs_metric_defs[QS_M_COUNT] = {
#define QS_METRIC_DEF(id, name, type, help, ...)                                                   \
    [QS_M_##id] = {name, QS_METRIC_##type, help, (const char *const[]){__VA_ARGS__, NULL}},
#include "qsnap/metric_names.def"
#undef QS_METRIC_DEF
};

int qs_metrics_register_id(struct qs_metrics *m, enum qs_metric_id id)
{
    if ((unsigned)id >= QS_M_COUNT)
        return QS_EINVAL;
    const struct qs_metric_def *d = &qs_metric_defs[id];
    return qs_metrics_register(m, d->name, d->type, d->help, d->labels);
}

/* ---- built-in metrics ---------------------------------------------------- */

static void register_builtin(struct qs_metrics *m)
{
    if (m->flags & QS_METRICS_BUILD_INFO) {
        qs_metrics_register_id(m, QS_M_BUILD_INFO);
        qs_metrics_set(m, QS_MN(BUILD_INFO), (const char *[]){"version", QSNAP_VERSION, NULL}, 1);
    }
    if (m->flags & QS_METRICS_PROCESS) {
        static const enum qs_metric_id process[] = {
            QS_M_PROCESS_CPU,   QS_M_PROCESS_RSS,      QS_M_PROCESS_VSIZE,
            QS_M_PROCESS_START, QS_M_PROCESS_OPEN_FDS, QS_M_PROCESS_MAX_FDS,
        };
        for (size_t i = 0; i < sizeof(process) / sizeof(process[0]); i++)
            qs_metrics_register_id(m, process[i]);
    }
}

static char *read_small_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return NULL;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Reads /proc (memory-backed, never blocks on a disk). */
static void refresh_process(struct qs_metrics *m)
{
    char buf[4096];
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (ticks <= 0)
        ticks = 100;
    if (read_small_file("/proc/self/stat", buf, sizeof(buf)) != NULL) {
        /* Fields after the command name, which may contain spaces and ')'. */
        char *p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0, vsize = 0;
        unsigned long long start = 0;
        long rss = 0;
        if (p != NULL &&
            sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                   "%*d %llu %lu %ld",
                   &utime, &stime, &start, &vsize, &rss) == 5) {
            qs_metrics_set(m, QS_MN(PROCESS_CPU), NULL, (double)(utime + stime) / (double)ticks);
            qs_metrics_set(m, QS_MN(PROCESS_VSIZE), NULL, (double)vsize);
            qs_metrics_set(m, QS_MN(PROCESS_RSS), NULL, (double)rss * (double)page);
            char sbuf[4096];
            if (read_small_file("/proc/stat", sbuf, sizeof(sbuf)) != NULL) {
                char *bt = strstr(sbuf, "\nbtime ");
                uint64_t btime;
                if (bt != NULL && qs_parse_u64_prefix(bt + 7, NULL, &btime) == 0)
                    qs_metrics_set(m, QS_MN(PROCESS_START), NULL,
                                   (double)btime + (double)start / (double)ticks);
            }
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        qs_metrics_set(m, QS_MN(PROCESS_OPEN_FDS), NULL, (double)(n > 0 ? n - 1 : 0));
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        qs_metrics_set(m, QS_MN(PROCESS_MAX_FDS), NULL,
                       rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

/* ---- rendering ------------------------------------------------------------ */

/* The text format's escaping: backslash and line feed, and in label values
 * the double quote too. */
static int escape(struct qs_buf *out, const char *s, int quote)
{
    for (const char *p = s; *p != '\0'; p++) {
        int rc;
        if (*p == '\\')
            rc = qs_buf_append(out, "\\\\", 2);
        else if (*p == '"' && quote)
            rc = qs_buf_append(out, "\\\"", 2);
        else if (*p == '\n')
            rc = qs_buf_append(out, "\\n", 2);
        else
            rc = qs_buf_append(out, p, 1);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int qs_metrics_escape_label(struct qs_buf *out, const char *value)
{
    return escape(out, value, 1);
}

static int escape_help(struct qs_buf *out, const char *help)
{
    return escape(out, help, 0);
}

void qs_metrics_format_value(double v, char out[static 32])
{
    if (isnan(v)) {
        qs_strlcpy(out, "NaN", 32);
        return;
    }
    if (isinf(v)) {
        qs_strlcpy(out, v > 0 ? "+Inf" : "-Inf", 32);
        return;
    }
    if (v == 0) {
        qs_strlcpy(out, "0", 32);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 32, "%.*g", prec, v);
        double back;
        if (qs_parse_double(out, &back) == 0 && back == v)
            return;
    }
}

static int cmp_family(const void *a, const void *b)
{
    const struct family *fa = *(struct family *const *)a;
    const struct family *fb = *(struct family *const *)b;
    return strcmp(fa->name, fb->name);
}

/* arg: the family's label count (size_t). */
static int cmp_series(const void *a, const void *b, void *arg)
{
    const struct series *sa = a, *sb = b;
    size_t nlabels = *(const size_t *)arg;
    for (size_t i = 0; i < nlabels; i++) {
        int c = strcmp(sa->values[i], sb->values[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static int render_family(struct family *f, struct qs_buf *out)
{
    int rc = 0;
    if (f->nseries == 0)
        return 0;
    qsort_r(f->series, f->nseries, sizeof(struct series), cmp_series, &f->nlabels);
    rc |= qs_buf_printf(out, "# HELP %s ", f->name);
    rc |= escape_help(out, f->help);
    rc |= qs_buf_printf(out, "\n# TYPE %s %s\n", f->name,
                        f->type == QS_METRIC_COUNTER ? "counter" : "gauge");
    for (size_t i = 0; i < f->nseries && rc == 0; i++) {
        struct series *s = &f->series[i];
        rc |= qs_buf_append(out, f->name, strlen(f->name));
        if (f->nlabels > 0) {
            rc |= qs_buf_append(out, "{", 1);
            for (size_t k = 0; k < f->nlabels; k++) {
                rc |= qs_buf_printf(out, "%s%s=\"", k > 0 ? "," : "", f->labels[k]);
                rc |= qs_metrics_escape_label(out, s->values[k]);
                rc |= qs_buf_append(out, "\"", 1);
            }
            rc |= qs_buf_append(out, "}", 1);
        }
        char num[32];
        qs_metrics_format_value(s->value, num);
        rc |= qs_buf_printf(out, " %s\n", num);
    }
    return rc != 0 ? UV_ENOMEM : 0;
}

int qs_metrics_render(struct qs_metrics *m, struct qs_buf *out)
{
    if (m == NULL || out == NULL)
        return QS_EINVAL;
    for (size_t i = 0; i < m->nhooks; i++)
        m->hooks[i].cb(m, m->hooks[i].ud);
    if (m->flags & QS_METRICS_PROCESS)
        refresh_process(m);
    if (m->nfams == 0)
        return 0;
    struct family **sorted = malloc(m->nfams * sizeof(*sorted));
    if (sorted == NULL)
        return UV_ENOMEM;
    memcpy(sorted, m->fams, m->nfams * sizeof(*sorted));
    qsort(sorted, m->nfams, sizeof(*sorted), cmp_family);
    int rc = 0;
    for (size_t i = 0; i < m->nfams && rc == 0; i++)
        rc = render_family(sorted[i], out);
    free(sorted);
    return rc;
}

int qs_metrics_render_cached(struct qs_metrics *m, uint64_t now_ms, const char **text, size_t *len,
                             uint64_t *version)
{
    if (m == NULL || text == NULL || len == NULL)
        return QS_EINVAL;
    if (!m->cache_ok || m->changes != m->cache_changes || now_ms < m->cache_ms ||
        now_ms - m->cache_ms >= QS_METRICS_MAX_AGE_MS) {
        qs_buf_reset(&m->cache);
        m->cache_ok = 0;
        m->version++;
        int rc = qs_metrics_render(m, &m->cache);
        if (rc != 0) {
            qs_buf_reset(&m->cache);
            return rc;
        }
        /* What the render hooks and the process metrics set while
         * rendering is in these bytes. */
        m->cache_ok = 1;
        m->cache_changes = m->changes;
        m->cache_ms = now_ms;
    }
    *text = m->cache.data != NULL ? m->cache.data : "";
    *len = m->cache.len;
    if (version != NULL)
        *version = m->version;
    return 0;
}
