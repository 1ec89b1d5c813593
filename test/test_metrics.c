#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "qsnap/error.h"
#include "qsnap/metrics.h"

static struct qs_metrics *m;
static struct qs_buf out;

static void setup(void)
{
    m = qs_metrics_new(0);
    cr_assert_not_null(m);
    qs_buf_init(&out);
}

static void teardown(void)
{
    qs_metrics_free(m);
    qs_buf_free(&out);
}

static const char *render(void)
{
    qs_buf_reset(&out);
    cr_assert_eq(qs_metrics_render(m, &out), 0);
    return out.data != NULL ? out.data : "";
}

TestSuite(metrics, .init = setup, .fini = teardown);

Test(metrics, empty_registry_renders_nothing)
{
    cr_assert_str_eq(render(), "");
}

Test(metrics, gauge_without_labels)
{
    cr_assert_eq(qs_metrics_register(m, "qsnap_backup_in_progress", QS_METRIC_GAUGE,
                                     "1 while a job runs.", NULL),
                 0);
    /* A family without series is not rendered. */
    cr_assert_str_eq(render(), "");
    cr_assert_eq(qs_metrics_set(m, "qsnap_backup_in_progress", NULL, 1), 0);
    cr_assert_str_eq(render(), "# HELP qsnap_backup_in_progress 1 while a job runs.\n"
                               "# TYPE qsnap_backup_in_progress gauge\n"
                               "qsnap_backup_in_progress 1\n");
}

Test(metrics, counter_with_labels_and_add)
{
    cr_assert_eq(qs_metrics_register(m, "qsnap_backups_total", QS_METRIC_COUNTER,
                                     "Backup attempts by outcome.",
                                     (const char *[]){"collection", "result", NULL}),
                 0);
    const char *ok[] = {"collection", "c1", "result", "success", NULL};
    /* Pairs in another order name the same series. */
    const char *ok2[] = {"result", "success", "collection", "c1", NULL};
    cr_assert_eq(qs_metrics_add(m, "qsnap_backups_total", ok, 1), 0);
    cr_assert_eq(qs_metrics_add(m, "qsnap_backups_total", ok2, 2), 0);
    double v = 0;
    cr_assert_eq(qs_metrics_get(m, "qsnap_backups_total", ok, &v), 0);
    cr_assert_eq(v, 3.0);
    cr_assert_eq(qs_metrics_add(m, "qsnap_backups_total", ok, -1), QS_EINVAL);
    cr_assert_str_eq(render(), "# HELP qsnap_backups_total Backup attempts by outcome.\n"
                               "# TYPE qsnap_backups_total counter\n"
                               "qsnap_backups_total{collection=\"c1\",result=\"success\"} 3\n");
}

Test(metrics, counter_must_end_in_total)
{
    cr_assert_eq(qs_metrics_register(m, "qsnap_backups", QS_METRIC_COUNTER, "x", NULL), QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "_total", QS_METRIC_COUNTER, "x", NULL), QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "x_total", QS_METRIC_COUNTER, "x", NULL), 0);
    cr_assert_eq(qs_metrics_register(m, "qsnap_backups", QS_METRIC_GAUGE, "x", NULL), 0);
}

Test(metrics, invalid_names_refused)
{
    cr_assert_eq(qs_metrics_register(m, "", QS_METRIC_GAUGE, "x", NULL), QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "9abc", QS_METRIC_GAUGE, "x", NULL), QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "a-b", QS_METRIC_GAUGE, "x", NULL), QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "a", QS_METRIC_GAUGE, NULL, NULL), QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "a", QS_METRIC_GAUGE, "x", (const char *[]){"__x", NULL}),
                 QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "a", QS_METRIC_GAUGE, "x", (const char *[]){"a:b", NULL}),
                 QS_EINVAL);
    cr_assert_eq(
        qs_metrics_register(m, "a", QS_METRIC_GAUGE, "x", (const char *[]){"l", "l", NULL}),
        QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "ns:a_1", QS_METRIC_GAUGE, "x", NULL), 0);
}

Test(metrics, reregistration)
{
    const char *const labels[] = {"collection", NULL};
    cr_assert_eq(qs_metrics_register(m, "g", QS_METRIC_GAUGE, "x", labels), 0);
    cr_assert_eq(qs_metrics_register(m, "g", QS_METRIC_GAUGE, "other help", labels), 0);
    cr_assert_eq(qs_metrics_register(m, "g", QS_METRIC_GAUGE, "x", NULL), QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "g", QS_METRIC_GAUGE, "x", (const char *[]){"c", NULL}),
                 QS_EINVAL);
    cr_assert_eq(qs_metrics_register(m, "g_total", QS_METRIC_COUNTER, "x", labels), 0);
    cr_assert_eq(qs_metrics_register(m, "g_total", QS_METRIC_GAUGE, "x", labels), QS_EINVAL);
}

Test(metrics, label_mismatch_and_unknown_family)
{
    cr_assert_eq(
        qs_metrics_register(m, "g", QS_METRIC_GAUGE, "x", (const char *[]){"collection", NULL}), 0);
    cr_assert_eq(qs_metrics_set(m, "nope", NULL, 1), QS_ENOTFOUND);
    cr_assert_eq(qs_metrics_set(m, "g", NULL, 1), QS_EINVAL);
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"other", "v", NULL}, 1), QS_EINVAL);
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"collection", NULL}, 1), QS_EINVAL);
    cr_assert_eq(
        qs_metrics_set(m, "g", (const char *[]){"collection", "a", "collection", "b", NULL}, 1),
        QS_EINVAL);
    double v;
    cr_assert_eq(qs_metrics_get(m, "g", (const char *[]){"collection", "a", NULL}, &v),
                 QS_ENOTFOUND);
    cr_assert_str_eq(render(), "");
}

Test(metrics, label_values_escaped)
{
    cr_assert_eq(qs_metrics_register(m, "g", QS_METRIC_GAUGE, "a \\ help\nline",
                                     (const char *[]){"l", NULL}),
                 0);
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"l", "a\\b\"c\nd", NULL}, 2.5), 0);
    cr_assert_str_eq(render(), "# HELP g a \\\\ help\\nline\n"
                               "# TYPE g gauge\n"
                               "g{l=\"a\\\\b\\\"c\\nd\"} 2.5\n");
}

Test(metrics, deterministic_order)
{
    /* Registered out of order; series added out of order. */
    cr_assert_eq(qs_metrics_register(m, "zz", QS_METRIC_GAUGE, "z", NULL), 0);
    cr_assert_eq(
        qs_metrics_register(m, "aa", QS_METRIC_GAUGE, "a", (const char *[]){"c", "d", NULL}), 0);
    cr_assert_eq(qs_metrics_set(m, "zz", NULL, 1), 0);
    cr_assert_eq(qs_metrics_set(m, "aa", (const char *[]){"c", "b", "d", "2", NULL}, 4), 0);
    cr_assert_eq(qs_metrics_set(m, "aa", (const char *[]){"c", "b", "d", "1", NULL}, 3), 0);
    cr_assert_eq(qs_metrics_set(m, "aa", (const char *[]){"c", "a", "d", "9", NULL}, 2), 0);
    const char *want = "# HELP aa a\n# TYPE aa gauge\n"
                       "aa{c=\"a\",d=\"9\"} 2\n"
                       "aa{c=\"b\",d=\"1\"} 3\n"
                       "aa{c=\"b\",d=\"2\"} 4\n"
                       "# HELP zz z\n# TYPE zz gauge\n"
                       "zz 1\n";
    cr_assert_str_eq(render(), want);
    /* Rendering twice gives the same text. */
    cr_assert_str_eq(render(), want);
}

/* Two registries rendered at once on two threads (ThreadSanitizer reports
 * any state the sort shares between them): each keeps its own order, the
 * family with two labels sorted by both. */
struct render_loop {
    struct qs_metrics *reg;
    const char *want;
    int mismatches;
};

static void *render_many(void *arg)
{
    struct render_loop *r = arg;
    struct qs_buf b;
    qs_buf_init(&b);
    for (int i = 0; i < 300; i++) {
        qs_buf_reset(&b);
        if (qs_metrics_render(r->reg, &b) != 0 || strcmp(b.data, r->want) != 0)
            r->mismatches++;
    }
    qs_buf_free(&b);
    return NULL;
}

Test(metrics, registries_render_concurrently_in_their_own_order)
{
    struct qs_metrics *two = qs_metrics_new(0), *one = qs_metrics_new(0);
    cr_assert(two != NULL && one != NULL);
    cr_assert_eq(
        qs_metrics_register(two, "t", QS_METRIC_GAUGE, "t", (const char *[]){"a", "b", NULL}), 0);
    cr_assert_eq(qs_metrics_register(one, "o", QS_METRIC_GAUGE, "o", (const char *[]){"a", NULL}),
                 0);
    const char *v[] = {"3", "1", "2", "0"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(qs_metrics_set(two, "t", (const char *[]){"a", "x", "b", v[i], NULL}, i), 0);
        cr_assert_eq(qs_metrics_set(one, "o", (const char *[]){"a", v[i], NULL}, i), 0);
    }
    struct render_loop r2 = {two,
                             "# HELP t t\n# TYPE t gauge\n"
                             "t{a=\"x\",b=\"0\"} 3\nt{a=\"x\",b=\"1\"} 1\n"
                             "t{a=\"x\",b=\"2\"} 2\nt{a=\"x\",b=\"3\"} 0\n",
                             0};
    struct render_loop r1 = {one,
                             "# HELP o o\n# TYPE o gauge\n"
                             "o{a=\"0\"} 3\no{a=\"1\"} 1\no{a=\"2\"} 2\no{a=\"3\"} 0\n",
                             0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, render_many, &r2), 0);
    render_many(&r1);
    pthread_join(th, NULL);
    cr_assert_eq(r2.mismatches, 0);
    cr_assert_eq(r1.mismatches, 0);
    qs_metrics_free(two);
    qs_metrics_free(one);
}

Test(metrics, remove_and_clear)
{
    const char *const l[] = {"collection", NULL};
    cr_assert_eq(qs_metrics_register(m, "g", QS_METRIC_GAUGE, "x", l), 0);
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"collection", "a", NULL}, 1), 0);
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"collection", "b", NULL}, 2), 0);
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"collection", "c", NULL}, 3), 0);
    cr_assert_eq(qs_metrics_remove(m, "g", (const char *[]){"collection", "b", NULL}), 0);
    cr_assert_eq(qs_metrics_remove(m, "g", (const char *[]){"collection", "b", NULL}),
                 QS_ENOTFOUND);
    cr_assert_eq(qs_metrics_remove(m, "h", NULL), QS_ENOTFOUND);
    cr_assert_str_eq(render(), "# HELP g x\n# TYPE g gauge\n"
                               "g{collection=\"a\"} 1\n"
                               "g{collection=\"c\"} 3\n");
    cr_assert_eq(qs_metrics_clear(m, "g"), 0);
    cr_assert_eq(qs_metrics_clear(m, "h"), QS_ENOTFOUND);
    cr_assert_str_eq(render(), "");
    /* The family is still registered. */
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"collection", "z", NULL}, 1), 0);
}

Test(metrics, value_formatting)
{
    char b[32];
    qs_metrics_format_value(0, b);
    cr_assert_str_eq(b, "0");
    qs_metrics_format_value(1700000000, b);
    cr_assert_str_eq(b, "1700000000");
    qs_metrics_format_value(0.1, b);
    cr_assert_str_eq(b, "0.1");
    qs_metrics_format_value(-2.5, b);
    cr_assert_str_eq(b, "-2.5");
    qs_metrics_format_value(1e300, b);
    cr_assert_str_eq(b, "1e+300");
    qs_metrics_format_value(NAN, b);
    cr_assert_str_eq(b, "NaN");
    qs_metrics_format_value(INFINITY, b);
    cr_assert_str_eq(b, "+Inf");
    qs_metrics_format_value(-INFINITY, b);
    cr_assert_str_eq(b, "-Inf");
    /* 17 digits are needed for some values to round-trip. */
    qs_metrics_format_value(0.1 + 0.2, b);
    cr_assert_eq(strtod(b, NULL), 0.1 + 0.2);
}

static int hook_calls;

static void hook(struct qs_metrics *reg, void *ud)
{
    hook_calls++;
    qs_metrics_set(reg, "age", NULL, *(double *)ud);
}

Test(metrics, render_hook_refreshes_values)
{
    double age = 10;
    hook_calls = 0;
    cr_assert_eq(qs_metrics_register(m, "age", QS_METRIC_GAUGE, "x", NULL), 0);
    cr_assert_eq(qs_metrics_on_render(m, hook, &age), 0);
    cr_assert_str_eq(render(), "# HELP age x\n# TYPE age gauge\nage 10\n");
    age = 20;
    cr_assert_str_eq(render(), "# HELP age x\n# TYPE age gauge\nage 20\n");
    cr_assert_eq(hook_calls, 2);
    cr_assert_eq(qs_metrics_off_render(m, hook, &age), 0);
    cr_assert_eq(qs_metrics_off_render(m, hook, &age), QS_ENOTFOUND);
    age = 30;
    cr_assert_str_eq(render(), "# HELP age x\n# TYPE age gauge\nage 20\n");
    cr_assert_eq(hook_calls, 2);
}

Test(metrics, builtin_process_and_build_info)
{
    struct qs_metrics *d = qs_metrics_new(QS_METRICS_DEFAULT);
    cr_assert_not_null(d);
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_metrics_render(d, &b), 0);
    cr_assert_not_null(strstr(b.data, "qsnap_build_info{version=\"" QSNAP_VERSION "\"} 1\n"));
    cr_assert_not_null(strstr(b.data, "# TYPE process_cpu_seconds_total counter\n"));
    const char *names[] = {"process_resident_memory_bytes",
                           "process_virtual_memory_bytes",
                           "process_start_time_seconds",
                           "process_open_fds",
                           "process_max_fds",
                           "process_cpu_seconds_total"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        double v = -1;
        cr_assert_eq(qs_metrics_get(d, names[i], NULL, &v), 0, "%s", names[i]);
        cr_assert_geq(v, 0, "%s", names[i]);
    }
    double rss = 0, start = 0, fds = 0;
    qs_metrics_get(d, "process_resident_memory_bytes", NULL, &rss);
    qs_metrics_get(d, "process_start_time_seconds", NULL, &start);
    qs_metrics_get(d, "process_open_fds", NULL, &fds);
    cr_assert_gt(rss, 1024 * 1024);
    cr_assert_gt(start, 1.5e9);
    cr_assert_geq(fds, 3);
    qs_buf_free(&b);
    qs_metrics_free(d);
}

/* ---- render cache -------------------------------------------------------- */

static int renders; /* calls of counting_hook: one per render */

static void counting_hook(struct qs_metrics *reg, void *ud)
{
    (void)ud;
    renders++;
    /* a value computed at render time, different at every render */
    qs_metrics_set(reg, "computed", NULL, (double)renders);
}

/* The exposition through the cache at now_ms, its version in *version. */
static const char *cached(uint64_t now_ms, uint64_t *version)
{
    const char *text = NULL;
    size_t len = 0;
    cr_assert_eq(qs_metrics_render_cached(m, now_ms, &text, &len, version), 0);
    cr_assert_not_null(text);
    cr_assert_eq(strlen(text), len);
    return text;
}

static void cache_setup(void)
{
    renders = 0;
    cr_assert_eq(qs_metrics_register(m, "g", QS_METRIC_GAUGE, "g", (const char *[]){"l", NULL}), 0);
    cr_assert_eq(qs_metrics_register(m, "c_total", QS_METRIC_COUNTER, "c", NULL), 0);
    cr_assert_eq(qs_metrics_register(m, "computed", QS_METRIC_GAUGE, "x", NULL), 0);
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"l", "a", NULL}, 1), 0);
    cr_assert_eq(qs_metrics_on_render(m, counting_hook, NULL), 0);
}

Test(metrics, cache_serves_the_same_bytes_while_nothing_changed)
{
    cache_setup();
    uint64_t v1, v2;
    const char *t1 = cached(5000, &v1);
    cr_assert_eq(renders, 1);
    cr_assert_not_null(strstr(t1, "\ncomputed 1\n"), "%s", t1);
    char *copy = strdup(t1);
    /* scrapes within the second: no render, the same bytes and version */
    for (uint64_t t = 5000; t < 6000; t += 111) {
        const char *t2 = cached(t, &v2);
        cr_assert_eq(renders, 1, "rendered again at %llu", (unsigned long long)t);
        cr_assert_eq(v2, v1);
        cr_assert_str_eq(t2, copy);
    }
    /* setting a value to what it already is changes nothing */
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"l", "a", NULL}, 1), 0);
    cr_assert_eq(qs_metrics_add(m, "g", (const char *[]){"l", "a", NULL}, 0), 0);
    cr_assert_eq(qs_metrics_remove(m, "g", (const char *[]){"l", "nope", NULL}), QS_ENOTFOUND);
    cr_assert_eq(qs_metrics_clear(m, "c_total"), 0); /* already empty */
    cr_assert_eq(qs_metrics_register(m, "g", QS_METRIC_GAUGE, "g", (const char *[]){"l", NULL}),
                 0); /* same family again */
    cached(5999, &v2);
    cr_assert_eq(renders, 1);
    cr_assert_eq(v2, v1);
    /* a second after the last render, it is rendered again (computed values
     * are at most that old) */
    const char *t3 = cached(6000, &v2);
    cr_assert_eq(renders, 2);
    cr_assert_neq(v2, v1);
    cr_assert_not_null(strstr(t3, "\ncomputed 2\n"), "%s", t3);
    /* a clock that went backwards renders again */
    cached(5500, &v1);
    cr_assert_eq(renders, 3);
    cr_assert_neq(v1, v2);
    free(copy);
}

static void change_value(void)
{
    qs_metrics_set(m, "g", (const char *[]){"l", "a", NULL}, 2);
}
static void new_series(void)
{
    qs_metrics_set(m, "g", (const char *[]){"l", "b", NULL}, 0);
}
static void add_one(void)
{
    qs_metrics_add(m, "c_total", NULL, 1);
}
static void remove_series(void)
{
    qs_metrics_remove(m, "g", (const char *[]){"l", "b", NULL});
}
static void clear_family(void)
{
    qs_metrics_clear(m, "g");
}
static void new_family(void)
{
    qs_metrics_register(m, "h", QS_METRIC_GAUGE, "h", NULL);
}
static void set_nan(void)
{
    qs_metrics_set(m, "c_total", NULL, NAN);
}
static void set_minus_zero(void)
{
    qs_metrics_set(m, "computed", NULL, -0.0);
}
static void same_value(void)
{
    qs_metrics_set(m, "computed", NULL, -0.0);
    qs_metrics_set(m, "c_total", NULL, NAN);
    qs_metrics_add(m, "c_total", NULL, 0);
}
static void const_hook(struct qs_metrics *reg, void *ud)
{
    (void)ud;
    qs_metrics_set(reg, "computed", NULL, 7);
}
static void hook_added(void)
{
    qs_metrics_on_render(m, const_hook, NULL);
}
static void hook_removed(void)
{
    qs_metrics_off_render(m, const_hook, NULL);
}

/* A change of any kind is served at the next scrape, however soon. */
Test(metrics, cache_every_change_renders_again)
{
    renders = 0;
    cr_assert_eq(qs_metrics_register(m, "g", QS_METRIC_GAUGE, "g", (const char *[]){"l", NULL}), 0);
    cr_assert_eq(qs_metrics_register(m, "c_total", QS_METRIC_COUNTER, "c", NULL), 0);
    cr_assert_eq(qs_metrics_register(m, "computed", QS_METRIC_GAUGE, "x", NULL), 0);
    cr_assert_eq(qs_metrics_set(m, "g", (const char *[]){"l", "a", NULL}, 1), 0);
    const struct {
        const char *what;
        void (*change)(void);
        int renders;
    } steps[] = {
        {"a value set to a new one", change_value, 1},
        {"a new series", new_series, 1},
        {"a counter added to", add_one, 1},
        {"a series removed", remove_series, 1},
        {"a family cleared", clear_family, 1},
        {"a family registered", new_family, 1},
        {"NaN after a number", set_nan, 1},
        {"-0 after 0", set_minus_zero, 1},
        {"the same values again", same_value, 0},
        {"a render hook added", hook_added, 1},
        {"a render hook removed", hook_removed, 1},
    };
    uint64_t now = 100000, v, prev;
    cached(now, &prev);
    qs_metrics_set(m, "computed", NULL, 0);
    cached(now, &prev);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        steps[i].change();
        const char *text = cached(++now, &v);
        if (steps[i].renders)
            cr_assert_neq(v, prev, "%s: not rendered again", steps[i].what);
        else
            cr_assert_eq(v, prev, "%s: rendered again", steps[i].what);
        prev = v;
        /* the cached bytes are what a render gives now */
        char *copy = strdup(text);
        cr_assert_str_eq(copy, render(), "%s", steps[i].what);
        free(copy);
        cached(now, &prev);
    }
}
