/* The built binary's command line: help, version, usage errors and
 * check-config (valid, invalid, secrets redacted). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "support.h"

#define API_KEY "cli-test-qdrant-api-key-5150"
#define ADMIN_TOKEN "cli-test-admin-token-0123456789"
#define SECRET_KEY "cli-test-s3-secret-key-abcdef"
#define ACCESS_KEY "CLITESTACCESSKEY0042"

/* Every variable qsnap reads, unset first so that a developer's shell does
 * not leak into the tests ("K=" unsets K in qs_test_run). */
#define CLEAN_ENV                                                                                  \
    "QSNAP_QDRANT_URL=", "QSNAP_QDRANT_API_KEY=", "QSNAP_QDRANT_API_KEY_FILE=",                    \
        "QSNAP_DESTINATION=", "QSNAP_S3_ENDPOINT=", "QSNAP_S3_REGION=", "QSNAP_S3_ACCESS_KEY_ID=", \
        "QSNAP_S3_ACCESS_KEY_ID_FILE=", "QSNAP_S3_SECRET_ACCESS_KEY=",                             \
        "QSNAP_S3_SECRET_ACCESS_KEY_FILE=", "QSNAP_S3_URI_STYLE=", "QSNAP_S3_CA_FILE=",            \
        "QSNAP_S3_PART_SIZE=", "QSNAP_SCHEDULE=", "QSNAP_JITTER=", "QSNAP_COLLECTIONS=",           \
        "QSNAP_MODE=", "QSNAP_RETENTION=", "QSNAP_KEEP_MIN=", "QSNAP_LOCAL_KEEP=",                 \
        "QSNAP_COMPRESSION=", "QSNAP_MAX_BANDWIDTH=", "QSNAP_LISTEN=", "QSNAP_ADMIN_TOKEN=",       \
        "QSNAP_ADMIN_TOKEN_FILE=", "QSNAP_STALE_AFTER=", "QSNAP_DRILL_SCHEDULE=",                  \
        "QSNAP_HEARTBEAT_URL=", "QSNAP_CLUSTER=", "QSNAP_CLUSTER_REST_PORT=", "QSNAP_LOG_LEVEL=",  \
        "QSNAP_LOG_FORMAT="

static int run_qsnap(const char *arg, char *const env[], char **out)
{
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), (char *)arg, NULL};
    return qs_test_run(argv, env, out);
}

Test(cli, help_exits_zero)
{
    char *out = NULL;
    cr_assert_eq(run_qsnap("--help", NULL, &out), 0);
    cr_assert_not_null(strstr(out, "usage: qsnap"), "%s", out);
    cr_assert_not_null(strstr(out, "check-config"), "%s", out);
    free(out);
}

Test(cli, version_exits_zero)
{
    char *out = NULL;
    cr_assert_eq(run_qsnap("--version", NULL, &out), 0);
    char want[64];
    snprintf(want, sizeof(want), "qsnap %s\n", QSNAP_VERSION);
    cr_assert_str_eq(out, want);
    free(out);
}

Test(cli, usage_errors_exit_two)
{
    char *out = NULL;
    cr_assert_eq(run_qsnap("frobnicate", NULL, &out), 2);
    cr_assert_not_null(strstr(out, "unknown command 'frobnicate'"), "%s", out);
    cr_assert_not_null(strstr(out, "usage: qsnap"), "%s", out);
    free(out);
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), NULL};
    cr_assert_eq(qs_test_run(argv, NULL, &out), 2);
    free(out);
    char *argv2[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "check-config", "extra", NULL};
    cr_assert_eq(qs_test_run(argv2, NULL, &out), 2);
    free(out);
}

Test(cli, check_config_invalid_variable_exits_two)
{
    char *env[] = {CLEAN_ENV, "QSNAP_DESTINATION=file:///tmp", "QSNAP_KEEP_MIN=0", NULL};
    char *out = NULL;
    cr_assert_eq(run_qsnap("check-config", env, &out), 2);
    cr_assert_not_null(strstr(out, "qsnap: invalid configuration: QSNAP_KEEP_MIN"), "%s", out);
    /* nothing was printed as if the configuration were fine */
    cr_assert_null(strstr(out, "QSNAP_QDRANT_URL="), "%s", out);
    free(out);
}

Test(cli, check_config_missing_destination_exits_two)
{
    char *env[] = {CLEAN_ENV, NULL};
    char *out = NULL;
    cr_assert_eq(run_qsnap("check-config", env, &out), 2);
    cr_assert_not_null(strstr(out, "QSNAP_DESTINATION: required"), "%s", out);
    free(out);
}

Test(cli, check_config_bad_secret_is_not_echoed)
{
    char *env[] = {CLEAN_ENV, "QSNAP_DESTINATION=file:///tmp", "QSNAP_ADMIN_TOKEN=tooshort-secret",
                   NULL};
    char *out = NULL;
    cr_assert_eq(run_qsnap("check-config", env, &out), 2);
    cr_assert_not_null(strstr(out, "QSNAP_ADMIN_TOKEN"), "%s", out);
    cr_assert_null(strstr(out, "tooshort-secret"), "%s", out);
    free(out);
}

Test(cli, check_config_valid_prints_redacted_config)
{
    struct qs_test_standin s;
    const char *args[] = {"--api-key", API_KEY, NULL};
    if (qs_test_standin_start(&s, args) != 0) {
        qs_test_standin_stop(&s);
        cr_assert_fail("stand-in did not start");
    }
    char *dir = qs_test_mkdtemp("cli-dest");
    char dest[600], qurl[128];
    snprintf(dest, sizeof(dest), "QSNAP_DESTINATION=file://%s", dir);
    snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=%s/", s.url);
    char *env[] = {CLEAN_ENV,
                   dest,
                   qurl,
                   "QSNAP_QDRANT_API_KEY=" API_KEY,
                   "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN,
                   "QSNAP_S3_ACCESS_KEY_ID=" ACCESS_KEY,
                   "QSNAP_S3_SECRET_ACCESS_KEY=" SECRET_KEY,
                   "QSNAP_SCHEDULE=@hourly",
                   "QSNAP_SCHEDUEL=0 3 * * *",
                   NULL};
    char *out = NULL;
    int rc = run_qsnap("check-config", env, &out);
    qs_test_standin_stop(&s);
    qs_test_rmrf(dir);
    cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
    cr_assert_null(strstr(out, API_KEY), "%s", out);
    cr_assert_null(strstr(out, ADMIN_TOKEN), "%s", out);
    cr_assert_null(strstr(out, SECRET_KEY), "%s", out);
    cr_assert_null(strstr(out, ACCESS_KEY), "%s", out);
    cr_assert_not_null(strstr(out, "QSNAP_QDRANT_API_KEY=[REDACTED]\n"), "%s", out);
    cr_assert_not_null(strstr(out, "QSNAP_ADMIN_TOKEN=[REDACTED]\n"), "%s", out);
    cr_assert_not_null(strstr(out, "QSNAP_S3_SECRET_ACCESS_KEY=[REDACTED]\n"), "%s", out);
    char want[700];
    snprintf(want, sizeof(want), "QSNAP_DESTINATION=file://%s\n", dir);
    cr_assert_not_null(strstr(out, want), "%s", out);
    snprintf(want, sizeof(want), "QSNAP_QDRANT_URL=%s\n", s.url);
    cr_assert_not_null(strstr(out, want), "%s", out);
    cr_assert_not_null(strstr(out, "QSNAP_SCHEDULE=@hourly\n"), "%s", out);
    cr_assert_not_null(strstr(out, "QSNAP_STALE_AFTER=3h\n"), "%s", out);
    cr_assert_not_null(strstr(out, "QSNAP_LISTEN=0.0.0.0:9633\n"), "%s", out);
    /* typo protection: a warning names the unknown variable */
    cr_assert_not_null(strstr(out, "unknown variable QSNAP_SCHEDUEL"), "%s", out);
    /* the cluster view: a single node (QSNAP_CLUSTER=auto by default) */
    cr_assert_not_null(strstr(out, "QSNAP_CLUSTER=auto\nQSNAP_CLUSTER_REST_PORT=6333\n"), "%s",
                       out);
    cr_assert_not_null(strstr(out, "\n# cluster: disabled (Qdrant is a single node (its cluster "
                                   "mode is disabled)); runs scheduled backups, drills and "
                                   "pruning: yes\n"),
                       "%s", out);
    free(dir);
    free(out);
}

/* check-config's cluster view with QSNAP_CLUSTER=off (never asked), and when
 * Qdrant cannot be asked (exit 1: scheduled work would be skipped). */
Test(cli, check_config_cluster_off_and_unknown)
{
    char *dir = qs_test_mkdtemp("cli-cluster");
    char dest[600], qurl[128];
    snprintf(dest, sizeof(dest), "QSNAP_DESTINATION=file://%s", dir);
    snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=http://127.0.0.1:%d", qs_test_free_port());
    char *off[] = {CLEAN_ENV, dest, qurl, "QSNAP_CLUSTER=off", NULL};
    char *out = NULL;
    int rc = run_qsnap("check-config", off, &out);
    cr_assert_eq(rc, 1, "Qdrant is unreachable: exit %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, "\n# cluster: off (QSNAP_CLUSTER=off: Qdrant's cluster mode is "
                                   "not looked at); runs scheduled backups, drills and pruning: "
                                   "yes\n"),
                       "%s", out);
    free(out);
    char *unknown[] = {CLEAN_ENV, dest, qurl, NULL};
    rc = run_qsnap("check-config", unknown, &out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, "\n# cluster: UNKNOWN: cannot ask Qdrant which peer is the Raft "
                                   "leader: get cluster info: "),
                       "%s", out);
    cr_assert_not_null(strstr(out, "scheduled backups, drills and pruning are skipped until Qdrant "
                                   "answers\n"),
                       "%s", out);
    free(out);
    qs_test_rmrf(dir);
    free(dir);
}

/* `qsnap serve` with env; returns its exit code, or -1 when it was still
 * running after 15 s (then it is killed). The output goes to *out. */
static int serve_exit(char *const env[], char **out)
{
    char *dir = qs_test_mkdtemp("cli-serve");
    char log[700];
    snprintf(log, sizeof(log), "%s/serve.log", dir);
    char listen[64];
    snprintf(listen, sizeof(listen), "QSNAP_LISTEN=127.0.0.1:%d", qs_test_free_port());
    char *all[64];
    size_t n = 0;
    for (size_t i = 0; env[i] != NULL && n < 62; i++)
        all[n++] = env[i];
    all[n++] = listen;
    all[n] = NULL;
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "serve", NULL};
    pid_t pid = qs_test_spawn(argv, all, log);
    cr_assert_gt(pid, 0);
    int st = 0, rc = -1;
    if (qs_test_wait_exit(pid, 15, &st) == 0)
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    else
        qs_test_kill(pid);
    *out = qs_test_read_file(log, NULL);
    if (*out == NULL)
        *out = strdup("");
    qs_test_rmrf(dir);
    free(dir);
    return rc;
}

/* The deployment template's placeholder values must never start a daemon
 * that grants access: exit 2 naming the variable, never the value. */
Test(cli, serve_refuses_placeholder_secrets)
{
    struct qs_test_standin s;
    if (qs_test_standin_start(&s, NULL) != 0) {
        qs_test_standin_stop(&s);
        cr_assert_fail("stand-in did not start");
    }
    char *dir = qs_test_mkdtemp("cli-placeholder");
    char dest[600], qurl[128];
    snprintf(dest, sizeof(dest), "QSNAP_DESTINATION=file://%s", dir);
    snprintf(qurl, sizeof(qurl), "QSNAP_QDRANT_URL=%s", s.url);
    char *out = NULL;

    char *env1[] = {CLEAN_ENV, dest, qurl, "QSNAP_ADMIN_TOKEN=REPLACE_ME_WITH_A_LONG_RANDOM_TOKEN",
                    NULL};
    int rc = serve_exit(env1, &out);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, "QSNAP_ADMIN_TOKEN: the value is a template placeholder"), "%s",
                       out);
    cr_assert_null(strstr(out, "REPLACE_ME_WITH"), "%s", out);
    free(out);

    /* A placeholder S3 secret key, from its file. */
    char keyfile[700], keyvar[800];
    snprintf(keyfile, sizeof(keyfile), "%s/secret-key", dir);
    FILE *f = fopen(keyfile, "w");
    cr_assert_not_null(f);
    fputs("CHANGEME-minio-secret-key\n", f);
    fclose(f);
    snprintf(keyvar, sizeof(keyvar), "QSNAP_S3_SECRET_ACCESS_KEY_FILE=%s", keyfile);
    char *env2[] = {CLEAN_ENV,
                    "QSNAP_DESTINATION=s3://cortex-backups/qdrant",
                    "QSNAP_S3_ENDPOINT=http://127.0.0.1:9",
                    qurl,
                    "QSNAP_S3_ACCESS_KEY_ID=" ACCESS_KEY,
                    keyvar,
                    "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN,
                    NULL};
    rc = serve_exit(env2, &out);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_assert_not_null(
        strstr(out, "QSNAP_S3_SECRET_ACCESS_KEY_FILE: the value is a template placeholder"), "%s",
        out);
    cr_assert_null(strstr(out, "minio-secret-key"), "%s", out);
    free(out);

    /* And the access key id from the deployment template. */
    char *env3[] = {CLEAN_ENV,
                    "QSNAP_DESTINATION=s3://cortex-backups/qdrant",
                    "QSNAP_S3_ENDPOINT=http://127.0.0.1:9",
                    qurl,
                    "QSNAP_S3_ACCESS_KEY_ID=REPLACE_WITH_MINIO_ACCESS_KEY_ID",
                    "QSNAP_S3_SECRET_ACCESS_KEY=" SECRET_KEY,
                    NULL};
    rc = serve_exit(env3, &out);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_assert_not_null(strstr(out, "QSNAP_S3_ACCESS_KEY_ID: the value is a template placeholder"),
                       "%s", out);
    cr_assert_null(strstr(out, "MINIO_ACCESS_KEY_ID"), "%s", out);
    free(out);
    qs_test_standin_stop(&s);
    qs_test_rmrf(dir);
    free(dir);
}

/* Restore-drill scratch collections are never backed up (exit 2, before any
 * peer is contacted). */
Test(cli, backup_refuses_drill_scratch_collection)
{
    char *env[] = {CLEAN_ENV, "QSNAP_DESTINATION=file:///tmp",
                   "QSNAP_QDRANT_URL=http://127.0.0.1:9", NULL};
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "backup", "-c", "notes__qsnap_drill",
                    NULL};
    char *out = NULL;
    cr_assert_eq(qs_test_run(argv, env, &out), 2, "%s", out);
    cr_assert_not_null(strstr(out, "never backed up"), "%s", out);
    free(out);
}

/* The reason after `prefix` in text (owned copy up to the end of its line
 * or JSON string), or NULL when prefix is absent. */
static char *reason_after(const char *text, const char *prefix)
{
    const char *p = strstr(text, prefix);
    if (p == NULL)
        return NULL;
    p += strlen(prefix);
    return strndup(p, strcspn(p, "\n\""));
}

/* One rule for collection names, one message: the configuration (exit 2,
 * naming the variable), the CLI's -c and every HTTP route that takes a
 * collection refuse ".." with the same reason. */
Test(cli, dotdot_collection_is_refused_alike_everywhere, .timeout = 120)
{
    char *env[] = {CLEAN_ENV, "QSNAP_DESTINATION=file:///tmp", "QSNAP_COLLECTIONS=..", NULL};
    char *out = NULL;
    cr_assert_eq(run_qsnap("check-config", env, &out), 2, "%s", out);
    char *want = reason_after(out, "invalid configuration: QSNAP_COLLECTIONS: ");
    cr_assert_not_null(want, "the variable is not named: %s", out);
    cr_assert_not_null(strstr(want, "'..'"), "%s", want);
    free(out);

    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "backup", "-c", "..", NULL};
    char *env_ok[] = {CLEAN_ENV, "QSNAP_DESTINATION=file:///tmp", NULL};
    cr_assert_eq(qs_test_run(argv, env_ok, &out), 2, "%s", out);
    char *got = reason_after(out, "qsnap backup: -c: ");
    cr_assert_not_null(got, "%s", out);
    /* followed by the usage hint " (see qsnap --help)" */
    cr_assert_eq(strncmp(got, want, strlen(want)), 0, "'%s' vs '%s'", got, want);
    free(got);
    free(out);

    char *dir = qs_test_mkdtemp("cli-names");
    char dest[600];
    snprintf(dest, sizeof(dest), "QSNAP_DESTINATION=file://%s", dir);
    char *denv[] = {dest, "QSNAP_QDRANT_URL=http://127.0.0.1:9", "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN,
                    "QSNAP_SCHEDULE=off", NULL};
    struct qs_test_daemon d;
    cr_assert_eq(qs_test_daemon_start(&d, denv), 0, "qsnap serve did not start");
    const char *auth[] = {"Authorization: Bearer " ADMIN_TOKEN, "Content-Type: application/json",
                          NULL};
    const struct {
        const char *method, *path, *body, *prefix;
    } calls[] = {
        {"POST", "/v1/backup?collection=..", NULL, "query parameter 'collection': "},
        {"GET", "/v1/backups?collection=..", NULL, "query parameter 'collection': "},
        {"POST", "/v1/restore", "{\"collection\":\"..\"}", "field 'collection': "},
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        char url[256];
        snprintf(url, sizeof(url), "%s%s", d.url, calls[i].path);
        struct qs_test_resp r = {0};
        const char *body = calls[i].body;
        cr_assert_eq(qs_test_http(calls[i].method, url, auth, body, body ? strlen(body) : 0, &r),
                     0);
        cr_expect_eq(r.status, 400, "%s %s: %ld %s", calls[i].method, calls[i].path, r.status,
                     r.body);
        char *http = reason_after(r.body, calls[i].prefix);
        cr_expect_not_null(http, "%s %s: %s", calls[i].method, calls[i].path, r.body);
        if (http != NULL)
            cr_expect_str_eq(http, want, "%s %s", calls[i].method, calls[i].path);
        free(http);
        qs_test_resp_free(&r);
    }
    qs_test_daemon_stop(&d, 10);
    qs_test_rmrf(dir);
    free(dir);
    free(want);
}

/* Error messages quote names and peers' answers; when one of those happens
 * to be a secret (here a collection named like the admin token), the CLI's
 * stderr and the daemon's HTTP error bodies show [REDACTED] instead. */
Test(cli, errors_quoting_a_secret_are_redacted, .timeout = 120)
{
    char *dir = qs_test_mkdtemp("cli-redact");
    char dest[600];
    snprintf(dest, sizeof(dest), "QSNAP_DESTINATION=file://%s", dir);
    char *env[] = {CLEAN_ENV, dest, "QSNAP_QDRANT_URL=http://127.0.0.1:9",
                   "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN, NULL};
    char *argv[] = {(char *)qs_test_env("QSNAP_TEST_BINARY"), "restore", "-c", ADMIN_TOKEN, NULL};
    char *out = NULL;
    cr_assert_eq(qs_test_run(argv, env, &out), 1, "%s", out);
    cr_expect_null(strstr(out, ADMIN_TOKEN), "%s", out);
    cr_expect_not_null(strstr(out, "qsnap restore: no backup of collection '[REDACTED]'"), "%s",
                       out);
    free(out);

    char *denv[] = {dest, "QSNAP_QDRANT_URL=http://127.0.0.1:9", "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN,
                    "QSNAP_SCHEDULE=off", NULL};
    struct qs_test_daemon d;
    cr_assert_eq(qs_test_daemon_start(&d, denv), 0, "qsnap serve did not start");
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/backups?collection=%s%%3A", d.url, ADMIN_TOKEN);
    struct qs_test_resp r = {0};
    cr_assert_eq(qs_test_http("GET", url, NULL, NULL, 0, &r), 0);
    cr_expect_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_expect_null(strstr(r.body, ADMIN_TOKEN), "%s", r.body);
    cr_expect_not_null(strstr(r.body, "collection name '[REDACTED]:'"), "%s", r.body);
    qs_test_resp_free(&r);
    qs_test_daemon_stop(&d, 10);
    qs_test_rmrf(dir);
    free(dir);
}
