/* The alert rules in deploy/components/monitoring/prometheusrule.yaml only
 * work if every metric they use is exported by a running qsnap under exactly
 * that name. These tests extract the metric names from the rules, check them
 * against qsnap's one metric table (include/qsnap/metric_names.def), and
 * scrape a running `qsnap serve`: the table and /metrics agree both ways. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qsnap/metric_names.h"
#include "support.h"

#define MAX_NAMES 64

struct names {
    char *v[MAX_NAMES];
    size_t n;
};

static void names_free(struct names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    s->n = 0;
}

static int names_has(const struct names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0)
            return 1;
    return 0;
}

static int is_name_char(char c)
{
    return islower((unsigned char)c) || c == '_';
}

static void strip_suffix(char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    if (n > k && strcmp(name + n - k, suffix) == 0)
        name[n - k] = '\0';
}

/* Collects every distinct token PREFIX[a-z_]+ of text into out (names are
 * owned by out), with histogram/summary suffixes removed. A token must not
 * continue an identifier (so "xqsnap_a" is not "qsnap_a"). */
static void extract_names(const char *text, const char *prefix, struct names *out)
{
    size_t plen = strlen(prefix);
    for (const char *p = text; (p = strstr(p, prefix)) != NULL; p += plen) {
        if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
            continue;
        size_t len = plen;
        while (is_name_char(p[len]))
            len++;
        if (len == plen)
            continue;
        char *name = strndup(p, len);
        cr_assert_not_null(name);
        strip_suffix(name, "_bucket");
        strip_suffix(name, "_count");
        strip_suffix(name, "_sum");
        if (names_has(out, name) || out->n == MAX_NAMES) {
            free(name);
            continue;
        }
        out->v[out->n++] = name;
    }
}

/* 1 when name is a family of qsnap's one metric table (metric_names.def). */
static int in_table(const char *name)
{
    for (size_t i = 0; i < QS_M_COUNT; i++)
        if (strcmp(qs_metric_defs[i].name, name) == 0)
            return 1;
    return 0;
}

/* Metric names the rules use: qsnap_* and the process_* families. */
static void rule_names(struct names *out)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/deploy/components/monitoring/prometheusrule.yaml",
             qs_test_env("QSNAP_TEST_SOURCE_ROOT"));
    char *text = qs_test_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    extract_names(text, "qsnap_", out);
    extract_names(text, "process_", out);
    free(text);
}

/* 1 when text has a line "# TYPE name ..." */
static int has_type_line(const char *text, const char *name)
{
    char want[256];
    snprintf(want, sizeof(want), "# TYPE %s ", name);
    size_t wl = strlen(want);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, want, wl) == 0)
            return 1;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return 0;
}

Test(deploy_names, extractor_finds_tokens_and_strips_suffixes)
{
    struct names s = {0};
    extract_names("rate(qsnap_req_seconds_bucket[5m]) > 1 and qsnap_backup_stale == 1\n"
                  "or qsnap_backup_stale{collection=\"a\"} # QsnapBackupStale xqsnap_no "
                  "qsnap_x_sum qsnap_ qsnap_y_count",
                  "qsnap_", &s);
    cr_assert_eq(s.n, 4, "got %zu names", s.n);
    cr_assert_str_eq(s.v[0], "qsnap_req_seconds");
    cr_assert_str_eq(s.v[1], "qsnap_backup_stale");
    cr_assert_str_eq(s.v[2], "qsnap_x");
    cr_assert_str_eq(s.v[3], "qsnap_y");
    names_free(&s);
}

Test(deploy_names, type_line_match_is_exact)
{
    const char *text = "# HELP qsnap_backup_stale x\n# TYPE qsnap_backup_stale gauge\n"
                       "# TYPE qsnap_backups_total counter\n";
    cr_assert_eq(has_type_line(text, "qsnap_backup_stale"), 1);
    cr_assert_eq(has_type_line(text, "qsnap_backups_total"), 1);
    cr_assert_eq(has_type_line(text, "qsnap_backup"), 0);
    cr_assert_eq(has_type_line(text, "qsnap_backups_stored"), 0);
}

Test(deploy_names, rules_use_only_metric_names_of_the_table)
{
    struct names s = {0};
    rule_names(&s);
    /* The rules cover staleness, failures, size, restores, drills. */
    cr_assert_geq(s.n, 9, "only %zu metric names found in the rules", s.n);
    cr_assert(names_has(&s, "qsnap_backup_stale"));
    cr_assert(names_has(&s, "qsnap_backup_consecutive_failures"));
    cr_assert(names_has(&s, "qsnap_backup_last_size_bytes"));
    cr_assert(names_has(&s, "qsnap_restore_drill_interval_seconds"));
    for (size_t i = 0; i < s.n; i++)
        cr_expect(in_table(s.v[i]), "rule metric %s is not in metric_names.def", s.v[i]);
    names_free(&s);
}

/* The table is the one list of metric names: no source file writes a
 * table family's name as a string of its own (code uses QS_MN(ID)); a
 * family missing from the table shows in the live check below. */
Test(deploy_names, no_metric_name_outside_the_table)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/src", qs_test_env("QSNAP_TEST_SOURCE_ROOT"));
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    size_t files = 0, found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 3 || strcmp(e->d_name + n - 2, ".c") != 0)
            continue;
        char path[1300];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        char *text = qs_test_read_file(path, NULL);
        cr_assert_not_null(text, "cannot read %s", path);
        files++;
        struct names lit = {0};
        extract_names(text, "\"qsnap_", &lit);
        extract_names(text, "\"process_", &lit);
        for (size_t i = 0; i < lit.n; i++) {
            if (!in_table(lit.v[i] + 1))
                continue; /* not a metric, e.g. the manifest field "qsnap_version" */
            cr_log_error("%s writes the metric name %s outside metric_names.def", e->d_name,
                         lit.v[i] + 1);
            found++;
        }
        names_free(&lit);
        free(text);
    }
    closedir(d);
    cr_assert_gt(files, 10, "only %zu source files read in %s", files, dir);
    cr_expect_eq(found, 0, "%zu metric name(s) written outside the table", found);
}

/* ---- against a running daemon ------------------------------------------- */

static struct qs_test_daemon daemon_;
static struct qs_test_standin standin_;
static char *dest_dir;
static char dest_env[600], qdrant_env[128];

/* Series exist for selected collections that exist in Qdrant: the stand-in
 * holds both. */
static void start_daemon(void)
{
    cr_assert_eq(qs_test_standin_start(&standin_, NULL), 0, "Qdrant stand-in did not start");
    static const char *const colls[] = {"agent_a", "agent_b"};
    for (size_t i = 0; i < 2; i++) {
        char url[256], body[128];
        snprintf(url, sizeof(url), "%s/__standin/collections", standin_.url);
        snprintf(body, sizeof(body), "{\"name\":\"%s\",\"points\":10,\"dim\":4}", colls[i]);
        const char *h[] = {"Content-Type: application/json", NULL};
        struct qs_test_resp r = {0};
        cr_assert_eq(qs_test_http("POST", url, h, body, strlen(body), &r), 0);
        cr_assert_eq(r.status, 200, "stand-in: %ld %s", r.status, r.body);
        qs_test_resp_free(&r);
    }
    dest_dir = qs_test_mkdtemp("deploy");
    cr_assert_not_null(dest_dir);
    snprintf(dest_env, sizeof(dest_env), "QSNAP_DESTINATION=file://%s", dest_dir);
    snprintf(qdrant_env, sizeof(qdrant_env), "QSNAP_QDRANT_URL=%s", standin_.url);
    char *env[] = {dest_env,   "QSNAP_SCHEDULE=0 3 * * *", "QSNAP_COLLECTIONS=agent_a,agent_b",
                   qdrant_env, "QSNAP_LOG_FORMAT=json",    NULL};
    int rc = qs_test_daemon_start(&daemon_, env);
    char ready[128];
    snprintf(ready, sizeof(ready), "%s/readyz", daemon_.url);
    if (rc == 0)
        rc = qs_test_wait_http(ready, 30);
    if (rc != 0) {
        char *log = daemon_.log != NULL ? qs_test_read_file(daemon_.log, NULL) : NULL;
        cr_log_error("qsnap serve did not come up; log:\n%s", log != NULL ? log : "(none)");
        free(log);
    }
    cr_assert_eq(rc, 0, "qsnap serve did not become ready");
}

static void stop_daemon(void)
{
    qs_test_daemon_stop(&daemon_, 10);
    qs_test_standin_stop(&standin_);
    if (dest_dir != NULL)
        qs_test_rmrf(dest_dir);
    free(dest_dir);
    dest_dir = NULL;
}

TestSuite(deploy_idle, .init = start_daemon, .fini = stop_daemon);

static char *scrape(const struct qs_test_daemon *d)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/metrics", d->url);
    struct qs_test_resp r = {0};
    cr_assert_eq(qs_test_http("GET", url, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200, "GET /metrics answered %ld", r.status);
    char *body = r.body;
    r.body = NULL;
    qs_test_resp_free(&r);
    return body;
}

/* The rate()/increase() based alerts (QsnapBackupFailing, QsnapRestoreFailed)
 * only see the first failure if the counters exist at 0 before it. */
Test(deploy_idle, alert_counters_exist_at_zero)
{
    char *body = scrape(&daemon_);
    const char *want[] = {
        "qsnap_backups_total{collection=\"agent_a\",result=\"failure\"} 0",
        "qsnap_backups_total{collection=\"agent_a\",result=\"success\"} 0",
        "qsnap_backups_total{collection=\"agent_b\",result=\"failure\"} 0",
        "qsnap_restore_total{result=\"failure\"} 0",
        /* no backup yet, but just seen: not stale during the grace */
        "qsnap_backup_stale{collection=\"agent_a\"} 0",
        "qsnap_backup_last_success_timestamp_seconds{collection=\"agent_a\"} 0",
        "qsnap_backup_consecutive_failures{collection=\"agent_a\"} 0",
        "qsnap_restore_drill_last_success_timestamp_seconds{collection=\"agent_a\"} 0",
        "qsnap_restore_drill_total{result=\"failure\"} 0",
        "qsnap_restore_drill_interval_seconds 0",
        /* QsnapBackupStale / QsnapNoBackupEver compare with this */
        "qsnap_schedule_interval_seconds 86400",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_not_null(strstr(body, want[i]), "/metrics lacks '%s'", want[i]);
    cr_expect_not_null(strstr(body, "\nprocess_start_time_seconds "),
                       "/metrics lacks process_start_time_seconds");
    cr_expect_not_null(
        strstr(body, "\nqsnap_collection_first_seen_timestamp_seconds{collection=\"agent_b\"} "),
        "/metrics lacks first_seen of agent_b");
    free(body);
}

/* ---- after a real backup and a restore drill -------------------------------
 * Families without samples are not rendered, so the rule metrics are checked
 * once qsnap has done what the rules watch: a backup (age, size) against the
 * Qdrant stand-in and a scheduled restore drill (every minute here). */

#define TOKEN "deploy-test-admin-token-0123456789abcdef"

static int wait_for_text(const struct qs_test_daemon *d, const char *needle, double timeout_s)
{
    for (int i = 0; i < (int)(timeout_s * 5); i++) {
        char *body = scrape(d);
        int found = strstr(body, needle) != NULL;
        free(body);
        if (found)
            return 0;
        usleep(200000);
    }
    return -1;
}

Test(deploy_live, every_rule_metric_is_exported, .timeout = 300)
{
    struct qs_test_standin s;
    cr_assert_eq(qs_test_standin_start(&s, NULL), 0, "Qdrant stand-in did not start");
    char url[512];
    snprintf(url, sizeof(url), "%s/__standin/collections", s.url);
    const char *coll = "{\"name\":\"agent_live\",\"size_mib\":1,\"dim\":8,\"points\":100}";
    const char *json_h[] = {"Content-Type: application/json", NULL};
    struct qs_test_resp r = {0};
    cr_assert_eq(qs_test_http("POST", url, json_h, coll, strlen(coll), &r), 0);
    cr_assert_eq(r.status, 200, "stand-in: %ld %s", r.status, r.body);
    qs_test_resp_free(&r);

    char *dir = qs_test_mkdtemp("deploy-live");
    char dest[600], qurl[128];
    snprintf(dest, sizeof(dest), "QSNAP_DESTINATION=file://%s", dir);
    snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=%s", s.url);
    char *env[] = {dest,
                   qurl,
                   "QSNAP_ADMIN_TOKEN=" TOKEN,
                   "QSNAP_SCHEDULE=0 3 * * *",
                   "QSNAP_DRILL_SCHEDULE=* * * * *",
                   "QSNAP_LOG_FORMAT=json",
                   NULL};
    struct qs_test_daemon d;
    int rc = qs_test_daemon_start(&d, env);
    cr_assert_eq(rc, 0, "qsnap serve did not answer /healthz");

    snprintf(url, sizeof(url), "%s/v1/backup", d.url);
    const char *auth_h[] = {"Authorization: Bearer " TOKEN, NULL};
    cr_assert_eq(qs_test_http("POST", url, auth_h, "", 0, &r), 0);
    cr_assert_eq(r.status, 202, "POST /v1/backup: %ld %s", r.status, r.body);
    qs_test_resp_free(&r);

    int backed_up = wait_for_text(
        &d, "qsnap_backups_total{collection=\"agent_live\",result=\"success\"} 1", 60);
    int drilled = backed_up == 0
                      ? wait_for_text(&d, "qsnap_restore_drill_total{result=\"success\"} 1", 150)
                      : -1;

    struct names names = {0};
    rule_names(&names);
    char *body = scrape(&d);
    size_t missing = 0, unlisted = 0, absent = 0;
    for (size_t i = 0; i < names.n; i++) {
        if (!has_type_line(body, names.v[i])) {
            cr_log_error("metric %s used in prometheusrule.yaml is not in /metrics", names.v[i]);
            missing++;
        }
    }
    /* The table and /metrics agree both ways once everything has happened
     * once: every family exported is in the table, every table entry is
     * exported. */
    for (size_t i = 0; i < QS_M_COUNT; i++) {
        if (!has_type_line(body, qs_metric_defs[i].name)) {
            cr_log_error("metric %s of the table is not in /metrics", qs_metric_defs[i].name);
            absent++;
        }
    }
    for (const char *p = strstr(body, "# TYPE "); p != NULL; p = strstr(p + 1, "\n# TYPE ")) {
        const char *name = p + (p[0] == '\n' ? 8 : 7);
        size_t len = strcspn(name, " ");
        char *n = strndup(name, len);
        cr_assert_not_null(n);
        if (!in_table(n)) {
            cr_log_error("/metrics exports %s, which is not in metric_names.def", n);
            unlisted++;
        }
        free(n);
    }
    free(body);
    names_free(&names);
    qs_test_daemon_stop(&d, 10);
    qs_test_standin_stop(&s);
    qs_test_rmrf(dir);
    free(dir);

    cr_expect_eq(backed_up, 0, "the backup did not succeed within 60 s");
    cr_expect_eq(drilled, 0, "no successful restore drill within 150 s");
    cr_expect_eq(missing, 0, "%zu rule metric(s) missing from /metrics", missing);
    cr_expect_eq(absent, 0, "%zu table metric(s) missing from /metrics", absent);
    cr_expect_eq(unlisted, 0, "%zu exported metric(s) not in the table", unlisted);
}
