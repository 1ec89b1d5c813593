#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/log.h"

/* ---- a fake environment ----------------------------------------------------
 * Entries are "K=V" (set) or "K" (unset); later entries win. */

#define MAX_ENV 64

struct fake_env {
    const char *e[MAX_ENV];
    size_t n;
};

static const char *fake_getenv(const char *name, void *ud)
{
    const struct fake_env *env = ud;
    size_t nl = strlen(name);
    for (size_t i = env->n; i-- > 0;) {
        const char *e = env->e[i];
        if (strncmp(e, name, nl) == 0 && (e[nl] == '=' || e[nl] == '\0'))
            return e[nl] == '=' ? e + nl + 1 : NULL;
    }
    return NULL;
}

#define SECRET_KEY "Sup3r-Secret-Access-Key/xyz"
#define ACCESS_KEY "AKIAQSNAPTESTKEY0001"
#define API_KEY "qdrant-api-key-0123456789"
#define ADMIN_TOKEN "admin-token-abcdefghijklmnop"

static const char *const base_env[] = {
    "QSNAP_DESTINATION=s3://cortex-backups/qdrant",
    "QSNAP_S3_ACCESS_KEY_ID=" ACCESS_KEY,
    "QSNAP_S3_SECRET_ACCESS_KEY=" SECRET_KEY,
    NULL,
};

/* Loads base_env plus the NULL-terminated extra entries. */
static int vload(struct qs_config *cfg, struct qs_error *err, va_list ap)
{
    struct fake_env env = {.n = 0};
    for (size_t i = 0; base_env[i] != NULL; i++)
        env.e[env.n++] = base_env[i];
    const char *e;
    while ((e = va_arg(ap, const char *)) != NULL) {
        cr_assert_lt(env.n, MAX_ENV);
        env.e[env.n++] = e;
    }
    return qs_config_load(cfg, fake_getenv, &env, err);
}

static int load(struct qs_config *cfg, struct qs_error *err, ...)
{
    va_list ap;
    va_start(ap, err);
    int rc = vload(cfg, err, ap);
    va_end(ap);
    return rc;
}

/* Loads and asserts success; the caller frees cfg. */
#define LOAD_OK(cfg, ...)                                                                          \
    do {                                                                                           \
        struct qs_error err_;                                                                      \
        int rc_ = load((cfg), &err_, __VA_ARGS__, NULL);                                           \
        cr_assert_eq(rc_, 0, "load failed: %s", err_.msg);                                         \
    } while (0)

/* Loads and asserts QS_ECONFIG with a message containing both fragments;
 * also asserts that the failed load left nothing behind. */
static void expect_error(const char *var, const char *fragment, ...)
{
    struct qs_config cfg;
    struct qs_error err;
    va_list ap;
    va_start(ap, fragment);
    int rc = vload(&cfg, &err, ap);
    va_end(ap);
    cr_assert_eq(rc, QS_ECONFIG, "expected QS_ECONFIG for %s, got %d (%s)", var, rc, err.msg);
    cr_assert_eq(err.code, QS_ECONFIG);
    cr_assert_not_null(strstr(err.msg, var), "message '%s' does not name %s", err.msg, var);
    if (fragment != NULL)
        cr_assert_not_null(strstr(err.msg, fragment), "message '%s' lacks '%s'", err.msg, fragment);
    cr_assert_null(cfg.qdrant_url);
    cr_assert_null(cfg.destination);
    cr_assert_null(cfg.s3_secret_access_key);
}

/* Writes content to a fresh temporary file; returns its path (static). */
static const char *temp_file(const char *content, size_t len)
{
    static char paths[4][64];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 64, "/tmp/qsnap-config-test-XXXXXX");
    int fd = mkstemp(p);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, content, len), (ssize_t)len);
    close(fd);
    return p;
}

/* qs_config_print output (owned by caller). */
static char *print_config(const struct qs_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    qs_config_print(cfg, f);
    fclose(f);
    return buf;
}

static void assert_line(const char *out, const char *line)
{
    char want[256];
    snprintf(want, sizeof(want), "%s\n", line);
    int found = strncmp(out, want, strlen(want)) == 0;
    char nlwant[260];
    snprintf(nlwant, sizeof(nlwant), "\n%s\n", line);
    found |= strstr(out, nlwant) != NULL;
    cr_assert(found, "line '%s' missing from:\n%s", line, out);
}

/* ---- defaults ---------------------------------------------------------------- */

Test(config, defaults)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, NULL);
    cr_assert_str_eq(cfg.qdrant_url, "http://localhost:6333");
    cr_assert_null(cfg.qdrant_api_key);
    cr_assert_eq(cfg.dest_kind, QS_DEST_S3);
    cr_assert_str_eq(cfg.dest_bucket, "cortex-backups");
    cr_assert_str_eq(cfg.dest_prefix, "qdrant");
    cr_assert_null(cfg.dest_path);
    cr_assert_null(cfg.s3_endpoint);
    cr_assert_str_eq(cfg.s3_region, "us-east-1");
    cr_assert_str_eq(cfg.s3_access_key_id, ACCESS_KEY);
    cr_assert_str_eq(cfg.s3_secret_access_key, SECRET_KEY);
    cr_assert_eq(cfg.s3_uri_style, QS_URI_VIRTUAL);
    cr_assert_null(cfg.s3_ca_file);
    cr_assert_eq(cfg.s3_part_size, 8u << 20);
    cr_assert_str_eq(cfg.schedule, "0 3 * * *");
    cr_assert_eq(cfg.cron.off, 0);
    cr_assert_eq(cfg.cron.hour, 1u << 3);
    cr_assert_eq(cfg.jitter_s, 0);
    cr_assert_null(cfg.collections);
    cr_assert_eq(cfg.ncollections, 0);
    cr_assert_eq(cfg.mode, QS_MODE_COLLECTIONS);
    cr_assert_eq(cfg.retention_s, 7 * 86400);
    cr_assert_eq(cfg.keep_min, 3);
    cr_assert_eq(cfg.local_keep, 1);
    cr_assert_eq(cfg.compression_level, 0);
    cr_assert_eq(cfg.max_bandwidth, 0);
    cr_assert_str_eq(cfg.listen_host, "0.0.0.0");
    cr_assert_eq(cfg.listen_port, 9633);
    cr_assert_eq(cfg.listen_ipv6, 0);
    cr_assert_null(cfg.admin_token);
    cr_assert_eq(cfg.stale_after_s, 26 * 3600);
    cr_assert_str_eq(cfg.drill_schedule, "off");
    cr_assert_eq(cfg.drill_cron.off, 1);
    cr_assert_null(cfg.heartbeat_url);
    cr_assert_eq(cfg.cluster, QS_CLUSTER_AUTO);
    cr_assert_eq(cfg.cluster_rest_port, 6333);
    cr_assert_eq(cfg.log_level, QS_LOG_INFO);
    cr_assert_eq(cfg.log_format, QS_LOG_JSON);
    qs_config_free(&cfg);
    cr_assert_null(cfg.qdrant_url);
    qs_config_free(&cfg); /* idempotent */
    qs_config_free(NULL);
}

Test(config, default_compression_constant_is_valid)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_COMPRESSION=" QS_CONFIG_DEFAULT_COMPRESSION);
    int explicit_level = cfg.compression_level;
    qs_config_free(&cfg);
    LOAD_OK(&cfg, NULL);
    cr_assert_eq(cfg.compression_level, explicit_level);
    qs_config_free(&cfg);
}

Test(config, null_err_is_accepted)
{
    struct qs_config cfg;
    struct fake_env env = {.e = {"QSNAP_DESTINATION=ftp://x"}, .n = 1};
    cr_assert_eq(qs_config_load(&cfg, fake_getenv, &env, NULL), QS_ECONFIG);
}

/* ---- QSNAP_QDRANT_URL ---------------------------------------------------------- */

Test(config, qdrant_url)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_QDRANT_URL=https://qdrant.example:6333/");
    cr_assert_str_eq(cfg.qdrant_url, "https://qdrant.example:6333");
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_QDRANT_URL=http://127.0.0.1:6333/proxy/qdrant//");
    cr_assert_str_eq(cfg.qdrant_url, "http://127.0.0.1:6333/proxy/qdrant");
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_QDRANT_URL=http://[::1]:6333");
    cr_assert_str_eq(cfg.qdrant_url, "http://[::1]:6333");
    qs_config_free(&cfg);
    expect_error("QSNAP_QDRANT_URL", "http:// or https://", "QSNAP_QDRANT_URL=localhost:6333",
                 NULL);
    expect_error("QSNAP_QDRANT_URL", "http:// or https://", "QSNAP_QDRANT_URL=ftp://x", NULL);
    expect_error("QSNAP_QDRANT_URL", "no host", "QSNAP_QDRANT_URL=http://", NULL);
    expect_error("QSNAP_QDRANT_URL", "no host", "QSNAP_QDRANT_URL=http://:6333", NULL);
    expect_error("QSNAP_QDRANT_URL", "port", "QSNAP_QDRANT_URL=http://q:0", NULL);
    expect_error("QSNAP_QDRANT_URL", "port", "QSNAP_QDRANT_URL=http://q:65536", NULL);
    expect_error("QSNAP_QDRANT_URL", "port", "QSNAP_QDRANT_URL=http://q:63x", NULL);
    expect_error("QSNAP_QDRANT_URL", "spaces", "QSNAP_QDRANT_URL=http://q :6333", NULL);
    expect_error("QSNAP_QDRANT_URL", "query", "QSNAP_QDRANT_URL=http://q:6333/?a=b", NULL);
    expect_error("QSNAP_QDRANT_URL", "empty", "QSNAP_QDRANT_URL=", NULL);
}

Test(config, qdrant_url_credentials_rejected_without_echo)
{
    struct qs_config cfg;
    struct qs_error err;
    cr_assert_eq(load(&cfg, &err, "QSNAP_QDRANT_URL=http://user:hunter2pass@q:6333", NULL),
                 QS_ECONFIG);
    cr_assert_not_null(strstr(err.msg, "QSNAP_QDRANT_URL"));
    cr_assert_not_null(strstr(err.msg, "credentials"));
    cr_assert_null(strstr(err.msg, "hunter2pass"), "%s", err.msg);
}

/* ---- secrets and *_FILE ------------------------------------------------------------ */

Test(config, qdrant_api_key)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_QDRANT_API_KEY=" API_KEY);
    cr_assert_str_eq(cfg.qdrant_api_key, API_KEY);
    qs_config_free(&cfg);
    expect_error("QSNAP_QDRANT_API_KEY", "empty", "QSNAP_QDRANT_API_KEY=", NULL);
    expect_error("QSNAP_QDRANT_API_KEY", "too short", "QSNAP_QDRANT_API_KEY=abc", NULL);
    expect_error("QSNAP_QDRANT_API_KEY", "control", "QSNAP_QDRANT_API_KEY=abc\ndef", NULL);
}

Test(config, file_variant_wins_and_strips_one_newline)
{
    const char *f1 = temp_file("from-file-key-1\n", 16);
    const char *f2 = temp_file("crlf-file-token-2-abc\r\n", 23);
    const char *f3 = temp_file("no-newline-key-3", 16);
    char v1[128], v2[128], v3[128];
    snprintf(v1, sizeof(v1), "QSNAP_QDRANT_API_KEY_FILE=%s", f1);
    snprintf(v2, sizeof(v2), "QSNAP_ADMIN_TOKEN_FILE=%s", f2);
    snprintf(v3, sizeof(v3), "QSNAP_S3_SECRET_ACCESS_KEY_FILE=%s", f3);
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_QDRANT_API_KEY=plain-value-loses", v1, v2, v3);
    cr_assert_str_eq(cfg.qdrant_api_key, "from-file-key-1");
    cr_assert_str_eq(cfg.admin_token, "crlf-file-token-2-abc");
    cr_assert_str_eq(cfg.s3_secret_access_key, "no-newline-key-3");
    qs_config_free(&cfg);
    unlink(f1);
    unlink(f2);
    unlink(f3);
}

Test(config, file_variant_access_key_id)
{
    const char *f = temp_file("AKIAFROMFILE00000001\n", 21);
    char v[128];
    snprintf(v, sizeof(v), "QSNAP_S3_ACCESS_KEY_ID_FILE=%s", f);
    struct qs_config cfg;
    LOAD_OK(&cfg, v);
    cr_assert_str_eq(cfg.s3_access_key_id, "AKIAFROMFILE00000001");
    qs_config_free(&cfg);
    unlink(f);
}

Test(config, file_variant_only_one_newline_stripped)
{
    const char *f = temp_file("two-newlines-token-value\n\n", 26);
    char v[128];
    snprintf(v, sizeof(v), "QSNAP_ADMIN_TOKEN_FILE=%s", f);
    struct qs_config cfg;
    struct qs_error err;
    cr_assert_eq(load(&cfg, &err, v, NULL), QS_ECONFIG);
    cr_assert_not_null(strstr(err.msg, "QSNAP_ADMIN_TOKEN_FILE"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "control"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "two-newlines"), "%s", err.msg);
    unlink(f);
}

Test(config, file_variant_unreadable_names_variable_and_path)
{
    struct qs_config cfg;
    struct qs_error err;
    cr_assert_eq(
        load(&cfg, &err, "QSNAP_S3_SECRET_ACCESS_KEY_FILE=/nonexistent/qsnap/secret", NULL),
        QS_ECONFIG);
    cr_assert_not_null(strstr(err.msg, "QSNAP_S3_SECRET_ACCESS_KEY_FILE"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "/nonexistent/qsnap/secret"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "No such file"), "%s", err.msg);
    /* a directory is not a secret file */
    expect_error("QSNAP_ADMIN_TOKEN_FILE", "regular file", "QSNAP_ADMIN_TOKEN_FILE=/tmp", NULL);
    expect_error("QSNAP_ADMIN_TOKEN_FILE", "empty", "QSNAP_ADMIN_TOKEN_FILE=", NULL);
}

/* A FIFO (or any non-regular file) must be refused at once: opening one for
 * reading would block until a writer appears, and start-up would hang. The
 * timeout turns a regression into a failure instead of a hang. */
Test(config, file_variants_refuse_a_fifo_without_blocking, .timeout = 10)
{
    char dir[] = "/tmp/qsnap-config-fifo-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char fifo[128];
    snprintf(fifo, sizeof(fifo), "%s/secret", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    const char *vars[] = {"QSNAP_QDRANT_API_KEY_FILE", "QSNAP_S3_ACCESS_KEY_ID_FILE",
                          "QSNAP_S3_SECRET_ACCESS_KEY_FILE", "QSNAP_ADMIN_TOKEN_FILE",
                          "QSNAP_S3_CA_FILE"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        char v[256];
        snprintf(v, sizeof(v), "%s=%s", vars[i], fifo);
        expect_error(vars[i], "not a regular file", v, NULL);
        /* the message names the path too */
        struct qs_config cfg;
        struct qs_error err;
        cr_assert_eq(load(&cfg, &err, v, NULL), QS_ECONFIG);
        cr_assert_not_null(strstr(err.msg, fifo), "%s", err.msg);
    }
    /* a character device is not a file to read a secret from either */
    expect_error("QSNAP_ADMIN_TOKEN_FILE", "not a regular file", "QSNAP_ADMIN_TOKEN_FILE=/dev/zero",
                 NULL);
    expect_error("QSNAP_S3_CA_FILE", "not a regular file", "QSNAP_S3_CA_FILE=/dev/null", NULL);
    unlink(fifo);
    rmdir(dir);
}

Test(config, file_variant_empty_file)
{
    const char *f = temp_file("\n", 1);
    char v[128];
    snprintf(v, sizeof(v), "QSNAP_QDRANT_API_KEY_FILE=%s", f);
    expect_error("QSNAP_QDRANT_API_KEY_FILE", "is empty", v, NULL);
    const char *g = temp_file("", 0);
    snprintf(v, sizeof(v), "QSNAP_S3_ACCESS_KEY_ID_FILE=%s", g);
    expect_error("QSNAP_S3_ACCESS_KEY_ID_FILE", "is empty", v, NULL);
    unlink(f);
    unlink(g);
}

Test(config, secrets_are_registered_for_redaction)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_QDRANT_API_KEY=" API_KEY, "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN,
            "QSNAP_HEARTBEAT_URL=https://hc.example/ping/hb-token-777");
    char line[512];
    snprintf(line, sizeof(line), "a=%s b=%s c=%s d=%s e=%s", API_KEY, ADMIN_TOKEN, SECRET_KEY,
             ACCESS_KEY, "https://hc.example/ping/hb-token-777");
    qs_log_redact(line, sizeof(line));
    cr_assert_null(strstr(line, API_KEY), "%s", line);
    cr_assert_null(strstr(line, ADMIN_TOKEN), "%s", line);
    cr_assert_null(strstr(line, SECRET_KEY), "%s", line);
    cr_assert_null(strstr(line, ACCESS_KEY), "%s", line);
    cr_assert_null(strstr(line, "hb-token-777"), "%s", line);
    qs_config_free(&cfg);
    qs_log_clear_secrets();
}

Test(config, print_redacts_secrets)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_QDRANT_API_KEY=" API_KEY, "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN,
            "QSNAP_HEARTBEAT_URL=https://hc.example/ping/hb-token-777");
    char *out = print_config(&cfg);
    cr_assert_null(strstr(out, API_KEY), "%s", out);
    cr_assert_null(strstr(out, ADMIN_TOKEN), "%s", out);
    cr_assert_null(strstr(out, SECRET_KEY), "%s", out);
    cr_assert_null(strstr(out, ACCESS_KEY), "%s", out);
    cr_assert_null(strstr(out, "hb-token-777"), "%s", out);
    assert_line(out, "QSNAP_QDRANT_API_KEY=[REDACTED]");
    assert_line(out, "QSNAP_ADMIN_TOKEN=[REDACTED]");
    assert_line(out, "QSNAP_S3_SECRET_ACCESS_KEY=[REDACTED]");
    assert_line(out, "QSNAP_HEARTBEAT_URL=[REDACTED]");
    assert_line(out, "QSNAP_S3_ACCESS_KEY_ID=AKIA\xe2\x80\xa6");
    free(out);
    qs_config_free(&cfg);
}

Test(config, print_short_access_key_fully_redacted)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_S3_ACCESS_KEY_ID=minio");
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_S3_ACCESS_KEY_ID=[REDACTED]");
    free(out);
    qs_config_free(&cfg);
}

Test(config, bad_secret_values_are_not_echoed)
{
    struct qs_config cfg;
    struct qs_error err;
    cr_assert_eq(load(&cfg, &err, "QSNAP_ADMIN_TOKEN=shorttok", NULL), QS_ECONFIG);
    cr_assert_not_null(strstr(err.msg, "QSNAP_ADMIN_TOKEN"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "shorttok"), "%s", err.msg);
    cr_assert_eq(load(&cfg, &err, "QSNAP_S3_SECRET_ACCESS_KEY=bad\tsecret-value", NULL),
                 QS_ECONFIG);
    cr_assert_not_null(strstr(err.msg, "QSNAP_S3_SECRET_ACCESS_KEY"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "secret-value"), "%s", err.msg);
    cr_assert_eq(load(&cfg, &err, "QSNAP_HEARTBEAT_URL=ftp://hc.example/leaky-token-99", NULL),
                 QS_ECONFIG);
    cr_assert_not_null(strstr(err.msg, "QSNAP_HEARTBEAT_URL"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "leaky-token-99"), "%s", err.msg);
    /* a later, unrelated error does not reveal loaded secrets either */
    cr_assert_eq(load(&cfg, &err, "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN, "QSNAP_LOG_LEVEL=loud", NULL),
                 QS_ECONFIG);
    cr_assert_null(strstr(err.msg, ADMIN_TOKEN), "%s", err.msg);
    cr_assert_null(strstr(err.msg, SECRET_KEY), "%s", err.msg);
}

/* The deployment template's values (and anything like them) never grant
 * access: every secret, from the variable or its file, any case. */
Test(config, placeholder_secrets_are_refused)
{
    static const struct {
        const char *var, *value;
    } cases[] = {
        {"QSNAP_ADMIN_TOKEN", "REPLACE_WITH_A_LONG_RANDOM_TOKEN"},
        {"QSNAP_ADMIN_TOKEN", "REPLACE_ME_0123456789abcdef"},
        {"QSNAP_ADMIN_TOKEN", "please-changeme-0123456789"},
        {"QSNAP_S3_ACCESS_KEY_ID", "REPLACE_WITH_MINIO_ACCESS_KEY_ID"},
        {"QSNAP_S3_SECRET_ACCESS_KEY", "REPLACE_WITH_MINIO_SECRET_ACCESS_KEY"},
        {"QSNAP_S3_SECRET_ACCESS_KEY", "xx-ChangeMe-xx"},
        {"QSNAP_QDRANT_API_KEY", "qdrant-key-replace-me"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char env[160];
        snprintf(env, sizeof(env), "%s=%s", cases[i].var, cases[i].value);
        struct qs_config cfg;
        struct qs_error err;
        cr_assert_eq(load(&cfg, &err, env, NULL), QS_ECONFIG, "%s accepted", env);
        cr_assert_not_null(strstr(err.msg, cases[i].var), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, "placeholder"), "%s", err.msg);
        cr_assert_null(strstr(err.msg, cases[i].value), "%s", err.msg);
        cr_assert_null(cfg.destination);

        /* the same from the *_FILE variant */
        char content[128];
        int len = snprintf(content, sizeof(content), "%s\n", cases[i].value);
        const char *f = temp_file(content, (size_t)len);
        snprintf(env, sizeof(env), "%s_FILE=%s", cases[i].var, f);
        char wantvar[80];
        snprintf(wantvar, sizeof(wantvar), "%s_FILE", cases[i].var);
        cr_assert_eq(load(&cfg, &err, env, NULL), QS_ECONFIG, "%s accepted", env);
        cr_assert_not_null(strstr(err.msg, wantvar), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, "placeholder"), "%s", err.msg);
        cr_assert_null(strstr(err.msg, cases[i].value), "%s", err.msg);
        unlink(f);
    }
    /* Real values that merely look similar are fine. */
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_ADMIN_TOKEN=replac3-chang3me-0123456789", "QSNAP_QDRANT_API_KEY=REPLAC");
    qs_config_free(&cfg);
    qs_log_clear_secrets();
}

/* ---- QSNAP_DESTINATION ---------------------------------------------------------- */

Test(config, destination_s3)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_DESTINATION=s3://my.bucket-01");
    cr_assert_eq(cfg.dest_kind, QS_DEST_S3);
    cr_assert_str_eq(cfg.dest_bucket, "my.bucket-01");
    cr_assert_str_eq(cfg.dest_prefix, "");
    cr_assert_str_eq(cfg.destination, "s3://my.bucket-01");
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_DESTINATION=s3://abc/");
    cr_assert_str_eq(cfg.dest_prefix, "");
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_DESTINATION=s3://abc/a/b/c///");
    cr_assert_str_eq(cfg.dest_prefix, "a/b/c");
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_DESTINATION=s3://abc/a/b/c");
    free(out);
    qs_config_free(&cfg);
}

Test(config, destination_s3_bucket_rules)
{
    expect_error("QSNAP_DESTINATION", "3-63", "QSNAP_DESTINATION=s3://ab", NULL);
    expect_error("QSNAP_DESTINATION", "3-63", "QSNAP_DESTINATION=s3://", NULL);
    expect_error("QSNAP_DESTINATION", "3-63", "QSNAP_DESTINATION=s3:///prefix", NULL);
    expect_error("QSNAP_DESTINATION", "3-63",
                 "QSNAP_DESTINATION=s3://"
                 "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd",
                 NULL);
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_DESTINATION=s3://"
                  "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc");
    qs_config_free(&cfg);
    expect_error("QSNAP_DESTINATION", "lowercase", "QSNAP_DESTINATION=s3://MyBucket", NULL);
    expect_error("QSNAP_DESTINATION", "lowercase", "QSNAP_DESTINATION=s3://my_bucket", NULL);
    expect_error("QSNAP_DESTINATION", "begin and end", "QSNAP_DESTINATION=s3://-bucket", NULL);
    expect_error("QSNAP_DESTINATION", "begin and end", "QSNAP_DESTINATION=s3://bucket.", NULL);
    expect_error("QSNAP_DESTINATION", "adjacent", "QSNAP_DESTINATION=s3://my..bucket", NULL);
    expect_error("QSNAP_DESTINATION", "IP address", "QSNAP_DESTINATION=s3://192.168.1.10", NULL);
}

Test(config, destination_prefix_normalisation)
{
    /* decided: trailing slashes are dropped, an empty segment is an error */
    expect_error("QSNAP_DESTINATION", "empty path segment", "QSNAP_DESTINATION=s3://b12/a//b/",
                 NULL);
    expect_error("QSNAP_DESTINATION", "empty path segment", "QSNAP_DESTINATION=s3://b12//a", NULL);
    expect_error("QSNAP_DESTINATION", "'..'", "QSNAP_DESTINATION=s3://b12/a/../b", NULL);
    expect_error("QSNAP_DESTINATION", "'..'", "QSNAP_DESTINATION=s3://b12/./b", NULL);
}

Test(config, destination_file)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_DESTINATION=file:///backups/qdrant/");
    cr_assert_eq(cfg.dest_kind, QS_DEST_FILE);
    cr_assert_str_eq(cfg.dest_path, "/backups/qdrant");
    cr_assert_null(cfg.dest_bucket);
    cr_assert_str_eq(cfg.dest_prefix, "");
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_DESTINATION=file:///backups/qdrant");
    free(out);
    qs_config_free(&cfg);
    expect_error("QSNAP_DESTINATION", "absolute path", "QSNAP_DESTINATION=file://backups/qdrant",
                 NULL);
    expect_error("QSNAP_DESTINATION", "absolute path", "QSNAP_DESTINATION=file://", NULL);
    expect_error("QSNAP_DESTINATION", "'..'", "QSNAP_DESTINATION=file:///backups/../etc", NULL);
}

Test(config, destination_file_needs_no_credentials)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_DESTINATION=file:///b", "QSNAP_S3_ACCESS_KEY_ID",
            "QSNAP_S3_SECRET_ACCESS_KEY");
    cr_assert_null(cfg.s3_access_key_id);
    cr_assert_null(cfg.s3_secret_access_key);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_S3_SECRET_ACCESS_KEY=");
    assert_line(out, "QSNAP_S3_ACCESS_KEY_ID=");
    free(out);
    qs_config_free(&cfg);
}

Test(config, destination_required_and_validated)
{
    expect_error("QSNAP_DESTINATION", "required", "QSNAP_DESTINATION", NULL);
    expect_error("QSNAP_DESTINATION", "empty", "QSNAP_DESTINATION=", NULL);
    expect_error("QSNAP_DESTINATION", "s3://BUCKET", "QSNAP_DESTINATION=/backups", NULL);
    expect_error("QSNAP_DESTINATION", "s3://BUCKET", "QSNAP_DESTINATION=S3://bucket", NULL);
    expect_error("QSNAP_DESTINATION", "s3://BUCKET", "QSNAP_DESTINATION=gs://bucket", NULL);
}

Test(config, s3_destination_without_credentials)
{
    expect_error("QSNAP_S3_ACCESS_KEY_ID", "required", "QSNAP_S3_ACCESS_KEY_ID", NULL);
    expect_error("QSNAP_S3_SECRET_ACCESS_KEY", "required", "QSNAP_S3_SECRET_ACCESS_KEY", NULL);
    expect_error("QSNAP_S3_ACCESS_KEY_ID", "empty", "QSNAP_S3_ACCESS_KEY_ID=", NULL);
    expect_error("QSNAP_S3_SECRET_ACCESS_KEY", "empty", "QSNAP_S3_SECRET_ACCESS_KEY=", NULL);
}

/* ---- S3 settings --------------------------------------------------------------- */

Test(config, s3_endpoint_and_uri_style)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_S3_ENDPOINT=http://minio.cortex.svc:9000/");
    cr_assert_str_eq(cfg.s3_endpoint, "http://minio.cortex.svc:9000");
    cr_assert_eq(cfg.s3_uri_style, QS_URI_PATH);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_S3_URI_STYLE=path");
    assert_line(out, "QSNAP_S3_ENDPOINT=http://minio.cortex.svc:9000");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_S3_ENDPOINT=https://s3.example.com", "QSNAP_S3_URI_STYLE=virtual");
    cr_assert_eq(cfg.s3_uri_style, QS_URI_VIRTUAL);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_S3_URI_STYLE=path");
    cr_assert_eq(cfg.s3_uri_style, QS_URI_PATH);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, NULL);
    out = print_config(&cfg);
    assert_line(out, "QSNAP_S3_URI_STYLE=virtual");
    assert_line(out, "QSNAP_S3_ENDPOINT=");
    free(out);
    qs_config_free(&cfg);
    expect_error("QSNAP_S3_ENDPOINT", "path", "QSNAP_S3_ENDPOINT=http://minio:9000/bucket", NULL);
    expect_error("QSNAP_S3_ENDPOINT", "http:// or https://", "QSNAP_S3_ENDPOINT=minio:9000", NULL);
    expect_error("QSNAP_S3_ENDPOINT", "port", "QSNAP_S3_ENDPOINT=http://minio:99999", NULL);
    expect_error("QSNAP_S3_ENDPOINT", "credentials", "QSNAP_S3_ENDPOINT=http://a:b@minio:9000",
                 NULL);
    expect_error("QSNAP_S3_ENDPOINT", "empty", "QSNAP_S3_ENDPOINT=", NULL);
    expect_error("QSNAP_S3_URI_STYLE", "'path' or 'virtual'", "QSNAP_S3_URI_STYLE=host", NULL);
    expect_error("QSNAP_S3_URI_STYLE", "empty", "QSNAP_S3_URI_STYLE=", NULL);
}

Test(config, s3_region)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_S3_REGION=eu-central-1");
    cr_assert_str_eq(cfg.s3_region, "eu-central-1");
    qs_config_free(&cfg);
    expect_error("QSNAP_S3_REGION", "lowercase", "QSNAP_S3_REGION=EU-Central-1", NULL);
    expect_error("QSNAP_S3_REGION", "lowercase", "QSNAP_S3_REGION=us east", NULL);
    expect_error("QSNAP_S3_REGION", "empty", "QSNAP_S3_REGION=", NULL);
}

Test(config, s3_ca_file)
{
    const char *f = temp_file("-----BEGIN CERTIFICATE-----\n", 28);
    char v[128];
    snprintf(v, sizeof(v), "QSNAP_S3_CA_FILE=%s", f);
    struct qs_config cfg;
    LOAD_OK(&cfg, v);
    cr_assert_str_eq(cfg.s3_ca_file, f);
    qs_config_free(&cfg);
    unlink(f);
    expect_error("QSNAP_S3_CA_FILE", "/nonexistent/ca.pem", "QSNAP_S3_CA_FILE=/nonexistent/ca.pem",
                 NULL);
    expect_error("QSNAP_S3_CA_FILE", "regular file", "QSNAP_S3_CA_FILE=/tmp", NULL);
    expect_error("QSNAP_S3_CA_FILE", "empty", "QSNAP_S3_CA_FILE=", NULL);
}

Test(config, s3_part_size)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_S3_PART_SIZE=64MiB");
    cr_assert_eq(cfg.s3_part_size, 64u << 20);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_S3_PART_SIZE=64MiB");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_S3_PART_SIZE=5MiB");
    cr_assert_eq(cfg.s3_part_size, 5u << 20);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_S3_PART_SIZE=5GiB");
    cr_assert_eq(cfg.s3_part_size, 5ull << 30);
    qs_config_free(&cfg);
    expect_error("QSNAP_S3_PART_SIZE", "at least 5MiB (got 1MiB)", "QSNAP_S3_PART_SIZE=1MiB", NULL);
    expect_error("QSNAP_S3_PART_SIZE", "at most 5GiB", "QSNAP_S3_PART_SIZE=6GiB", NULL);
    expect_error("QSNAP_S3_PART_SIZE", "size like", "QSNAP_S3_PART_SIZE=16MB", NULL);
    expect_error("QSNAP_S3_PART_SIZE", "size like", "QSNAP_S3_PART_SIZE=16MiBx", NULL);
    expect_error("QSNAP_S3_PART_SIZE", "empty", "QSNAP_S3_PART_SIZE=", NULL);
}

/* ---- schedule ---------------------------------------------------------------------- */

Test(config, schedule)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_SCHEDULE=*/15 * * * *");
    cr_assert_str_eq(cfg.schedule, "*/15 * * * *");
    cr_assert_eq(cfg.stale_after_s, 900 + 7200);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_SCHEDULE=@hourly");
    cr_assert_eq(cfg.stale_after_s, 3 * 3600);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_SCHEDULE=0 3 * * 1");
    cr_assert_eq(cfg.stale_after_s, 7 * 86400 + 7200);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_SCHEDULE=off");
    cr_assert_eq(cfg.cron.off, 1);
    cr_assert_eq(cfg.stale_after_s, 26 * 3600);
    qs_config_free(&cfg);
    expect_error("QSNAP_SCHEDULE", "field 2 (hour): value 24 out of range 0-23",
                 "QSNAP_SCHEDULE=0 24 * * *", NULL);
    expect_error("QSNAP_SCHEDULE", "expected 5 fields, got 4", "QSNAP_SCHEDULE=0 3 * *", NULL);
    expect_error("QSNAP_SCHEDULE", "never fires", "QSNAP_SCHEDULE=0 0 30 2 *", NULL);
    expect_error("QSNAP_SCHEDULE", "empty", "QSNAP_SCHEDULE=", NULL);
}

Test(config, jitter)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_JITTER=5m");
    cr_assert_eq(cfg.jitter_s, 300);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_JITTER=2h", "QSNAP_SCHEDULE=off");
    cr_assert_eq(cfg.jitter_s, 7200);
    qs_config_free(&cfg);
    expect_error("QSNAP_JITTER", "duration", "QSNAP_JITTER=5 minutes", NULL);
    expect_error("QSNAP_JITTER", "duration", "QSNAP_JITTER=-5m", NULL);
    expect_error("QSNAP_JITTER", "shorter than the schedule interval (1h)",
                 "QSNAP_SCHEDULE=@hourly", "QSNAP_JITTER=1h", NULL);
    expect_error("QSNAP_JITTER", "empty", "QSNAP_JITTER=", NULL);
}

Test(config, stale_after)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_STALE_AFTER=36h");
    cr_assert_eq(cfg.stale_after_s, 36 * 3600);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_STALE_AFTER=36h");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_STALE_AFTER=2d", "QSNAP_SCHEDULE=off");
    cr_assert_eq(cfg.stale_after_s, 2 * 86400);
    qs_config_free(&cfg);
    expect_error("QSNAP_STALE_AFTER", "at least 1s", "QSNAP_STALE_AFTER=0s", NULL);
    expect_error("QSNAP_STALE_AFTER", "duration", "QSNAP_STALE_AFTER=1 day", NULL);
    expect_error("QSNAP_STALE_AFTER", "empty", "QSNAP_STALE_AFTER=", NULL);
}

Test(config, drill_schedule)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_DRILL_SCHEDULE=0 5 * * SUN");
    cr_assert_str_eq(cfg.drill_schedule, "0 5 * * SUN");
    cr_assert_eq(cfg.drill_cron.off, 0);
    cr_assert_eq(cfg.drill_cron.dow, 1);
    qs_config_free(&cfg);
    expect_error("QSNAP_DRILL_SCHEDULE", "field 5 (day-of-week)",
                 "QSNAP_DRILL_SCHEDULE=0 5 * * FUNDAY", NULL);
    expect_error("QSNAP_DRILL_SCHEDULE", "empty", "QSNAP_DRILL_SCHEDULE=", NULL);
}

/* ---- selection and retention ------------------------------------------------------- */

Test(config, collections_never_name_a_drill_scratch_collection)
{
    expect_error("QSNAP_COLLECTIONS", "restore-drill scratch",
                 "QSNAP_COLLECTIONS=agent,agent__qsnap_drill", NULL);
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_COLLECTIONS=agent__qsnap_drill_notes");
    qs_config_free(&cfg);
}

Test(config, collections)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_COLLECTIONS= agent-1 ,agent_2,\tmemory.v3 ");
    cr_assert_eq(cfg.ncollections, 3);
    cr_assert_str_eq(cfg.collections[0], "agent-1");
    cr_assert_str_eq(cfg.collections[1], "agent_2");
    cr_assert_str_eq(cfg.collections[2], "memory.v3");
    cr_assert_null(cfg.collections[3]);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_COLLECTIONS=agent-1,agent_2,memory.v3");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_COLLECTIONS=one");
    cr_assert_eq(cfg.ncollections, 1);
    cr_assert_str_eq(cfg.collections[0], "one");
    qs_config_free(&cfg);
    expect_error("QSNAP_COLLECTIONS", "empty collection name", "QSNAP_COLLECTIONS=a,,b", NULL);
    expect_error("QSNAP_COLLECTIONS", "empty collection name", "QSNAP_COLLECTIONS=a,", NULL);
    expect_error("QSNAP_COLLECTIONS", "empty collection name", "QSNAP_COLLECTIONS= , a", NULL);
    expect_error("QSNAP_COLLECTIONS", "must not contain '/'", "QSNAP_COLLECTIONS=a/b", NULL);
    expect_error("QSNAP_COLLECTIONS", "must not contain '*'", "QSNAP_COLLECTIONS=ok,a*", NULL);
    expect_error("QSNAP_COLLECTIONS", "must not contain ':'", "QSNAP_COLLECTIONS=a:b", NULL);
    expect_error("QSNAP_COLLECTIONS", "must not contain '\\'", "QSNAP_COLLECTIONS=a\\b", NULL);
    expect_error("QSNAP_COLLECTIONS", "control character", "QSNAP_COLLECTIONS=a\x01", NULL);
    expect_error("QSNAP_COLLECTIONS", "listed twice", "QSNAP_COLLECTIONS=a,b,a", NULL);
    expect_error("QSNAP_COLLECTIONS", "empty", "QSNAP_COLLECTIONS=", NULL);
    char longname[300] = "QSNAP_COLLECTIONS=";
    memset(longname + strlen(longname), 'x', 256);
    expect_error("QSNAP_COLLECTIONS", "longer than 213 bytes", longname, NULL);
}

/* Names that pass configuration can be backed up: the rule is the one keys,
 * manifests and the HTTP API use (qs_manifest_check_collection_name). */
Test(config, collections_that_can_never_be_backed_up)
{
    expect_error("QSNAP_COLLECTIONS", "'..' must not be '.' or '..'", "QSNAP_COLLECTIONS=..", NULL);
    expect_error("QSNAP_COLLECTIONS", "must not be '.' or '..'", "QSNAP_COLLECTIONS=ok, .", NULL);
    expect_error("QSNAP_COLLECTIONS", "is not valid UTF-8", "QSNAP_COLLECTIONS=caf\xe9", NULL);
    expect_error("QSNAP_COLLECTIONS", "is not valid UTF-8",
                 "QSNAP_COLLECTIONS=a\xc0\xaf"
                 "b",
                 NULL);
    /* 213 bytes is the longest name Qdrant can snapshot; 214 never. */
    char name[300] = "QSNAP_COLLECTIONS=";
    size_t at = strlen(name);
    memset(name + at, 'n', 214);
    expect_error("QSNAP_COLLECTIONS", "214 bytes long, longer than 213 bytes", name, NULL);
    name[at + 213] = '\0';
    struct qs_config cfg;
    LOAD_OK(&cfg, name);
    cr_assert_eq(strlen(cfg.collections[0]), 213);
    qs_config_free(&cfg);
    /* A leading dot is a valid Qdrant name, and qsnap backs it up. */
    LOAD_OK(&cfg, "QSNAP_COLLECTIONS=.hidden,...");
    cr_assert_str_eq(cfg.collections[0], ".hidden");
    cr_assert_str_eq(cfg.collections[1], "...");
    qs_config_free(&cfg);
}

Test(config, mode)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_MODE=full");
    cr_assert_eq(cfg.mode, QS_MODE_FULL);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_MODE=full");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_MODE=collections");
    cr_assert_eq(cfg.mode, QS_MODE_COLLECTIONS);
    qs_config_free(&cfg);
    expect_error("QSNAP_MODE", "'collections' or 'full'", "QSNAP_MODE=all", NULL);
    expect_error("QSNAP_MODE", "empty", "QSNAP_MODE=", NULL);
    expect_error("QSNAP_MODE=full", NULL, "QSNAP_MODE=full", "QSNAP_COLLECTIONS=a", NULL);
}

Test(config, snapshot_method)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, NULL);
    cr_assert_eq(cfg.method, QS_METHOD_COLLECTION);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_SNAPSHOT_METHOD=shards");
    cr_assert_eq(cfg.method, QS_METHOD_SHARDS);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_SNAPSHOT_METHOD=shards");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_SNAPSHOT_METHOD=collection");
    cr_assert_eq(cfg.method, QS_METHOD_COLLECTION);
    qs_config_free(&cfg);
    expect_error("QSNAP_SNAPSHOT_METHOD", "'collection' or 'shards' (got 'shard')",
                 "QSNAP_SNAPSHOT_METHOD=shard", NULL);
    expect_error("QSNAP_SNAPSHOT_METHOD", "empty", "QSNAP_SNAPSHOT_METHOD=", NULL);
    expect_error("QSNAP_SNAPSHOT_METHOD: cannot be 'shards' with QSNAP_MODE=full", NULL,
                 "QSNAP_MODE=full", "QSNAP_SNAPSHOT_METHOD=shards", NULL);
}

Test(config, retention)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_RETENTION=30d");
    cr_assert_eq(cfg.retention_s, 30 * 86400);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_RETENTION=12h");
    cr_assert_eq(cfg.retention_s, 12 * 3600);
    qs_config_free(&cfg);
    expect_error("QSNAP_RETENTION", "duration", "QSNAP_RETENTION=7", NULL);
    expect_error("QSNAP_RETENTION", "duration", "QSNAP_RETENTION=1w", NULL);
    expect_error("QSNAP_RETENTION", "at least", "QSNAP_RETENTION=0d", NULL);
    expect_error("QSNAP_RETENTION", "empty", "QSNAP_RETENTION=", NULL);
}

Test(config, keep_min)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_KEEP_MIN=1");
    cr_assert_eq(cfg.keep_min, 1);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_KEEP_MIN=14");
    cr_assert_eq(cfg.keep_min, 14);
    qs_config_free(&cfg);
    expect_error("QSNAP_KEEP_MIN", "at least 1", "QSNAP_KEEP_MIN=0", NULL);
    expect_error("QSNAP_KEEP_MIN", "whole number", "QSNAP_KEEP_MIN=-1", NULL);
    expect_error("QSNAP_KEEP_MIN", "whole number", "QSNAP_KEEP_MIN=3x", NULL);
    expect_error("QSNAP_KEEP_MIN", "whole number", "QSNAP_KEEP_MIN= 3", NULL);
    expect_error("QSNAP_KEEP_MIN", "whole number", "QSNAP_KEEP_MIN=+3", NULL);
    expect_error("QSNAP_KEEP_MIN", "whole number", "QSNAP_KEEP_MIN=99999999999999999999999", NULL);
    expect_error("QSNAP_KEEP_MIN", "empty", "QSNAP_KEEP_MIN=", NULL);
}

Test(config, local_keep)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_LOCAL_KEEP=0");
    cr_assert_eq(cfg.local_keep, 0);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_LOCAL_KEEP=5");
    cr_assert_eq(cfg.local_keep, 5);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_LOCAL_KEEP=5");
    free(out);
    qs_config_free(&cfg);
    expect_error("QSNAP_LOCAL_KEEP", "whole number", "QSNAP_LOCAL_KEEP=-1", NULL);
    expect_error("QSNAP_LOCAL_KEEP", "whole number", "QSNAP_LOCAL_KEEP=1.5", NULL);
    expect_error("QSNAP_LOCAL_KEEP", "empty", "QSNAP_LOCAL_KEEP=", NULL);
}

/* ---- streaming ------------------------------------------------------------------------ */

Test(config, compression)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_COMPRESSION=none");
    cr_assert_eq(cfg.compression_level, 0);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_COMPRESSION=gzip");
    cr_assert_eq(cfg.compression_level, 6);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_COMPRESSION=gzip:6");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_COMPRESSION=gzip:1");
    cr_assert_eq(cfg.compression_level, 1);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_COMPRESSION=gzip:9");
    cr_assert_eq(cfg.compression_level, 9);
    qs_config_free(&cfg);
    expect_error("QSNAP_COMPRESSION", "'none', 'gzip'", "QSNAP_COMPRESSION=gzip:0", NULL);
    expect_error("QSNAP_COMPRESSION", "'none', 'gzip'", "QSNAP_COMPRESSION=gzip:10", NULL);
    expect_error("QSNAP_COMPRESSION", "'none', 'gzip'", "QSNAP_COMPRESSION=zstd", NULL);
    expect_error("QSNAP_COMPRESSION", "'none', 'gzip'", "QSNAP_COMPRESSION=gzip:", NULL);
    expect_error("QSNAP_COMPRESSION", "empty", "QSNAP_COMPRESSION=", NULL);
}

Test(config, max_bandwidth)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_MAX_BANDWIDTH=50MiB/s");
    cr_assert_eq(cfg.max_bandwidth, 50u << 20);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_MAX_BANDWIDTH=50MiB/s");
    free(out);
    qs_config_free(&cfg);
    expect_error("QSNAP_MAX_BANDWIDTH", "rate like 50MiB/s", "QSNAP_MAX_BANDWIDTH=50MiB", NULL);
    expect_error("QSNAP_MAX_BANDWIDTH", "rate like", "QSNAP_MAX_BANDWIDTH=0/s", NULL);
    expect_error("QSNAP_MAX_BANDWIDTH", "rate like", "QSNAP_MAX_BANDWIDTH=fast", NULL);
    expect_error("QSNAP_MAX_BANDWIDTH", "empty", "QSNAP_MAX_BANDWIDTH=", NULL);
}

/* ---- HTTP endpoint -------------------------------------------------------------------- */

Test(config, listen)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_LISTEN=127.0.0.1:8080");
    cr_assert_str_eq(cfg.listen_host, "127.0.0.1");
    cr_assert_eq(cfg.listen_port, 8080);
    cr_assert_eq(cfg.listen_ipv6, 0);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_LISTEN=[::]:9633");
    cr_assert_str_eq(cfg.listen_host, "::");
    cr_assert_eq(cfg.listen_port, 9633);
    cr_assert_eq(cfg.listen_ipv6, 1);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_LISTEN=[::]:9633");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_LISTEN=[fe80::1:2]:1");
    cr_assert_str_eq(cfg.listen_host, "fe80::1:2");
    cr_assert_eq(cfg.listen_port, 1);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_LISTEN=0.0.0.0:65535");
    cr_assert_eq(cfg.listen_port, 65535);
    qs_config_free(&cfg);
    expect_error("QSNAP_LISTEN", "port", "QSNAP_LISTEN=0.0.0.0:0", NULL);
    expect_error("QSNAP_LISTEN", "port", "QSNAP_LISTEN=0.0.0.0:65536", NULL);
    expect_error("QSNAP_LISTEN", "port", "QSNAP_LISTEN=0.0.0.0:", NULL);
    expect_error("QSNAP_LISTEN", "port", "QSNAP_LISTEN=0.0.0.0:96x", NULL);
    expect_error("QSNAP_LISTEN", "HOST:PORT", "QSNAP_LISTEN=9633", NULL);
    expect_error("QSNAP_LISTEN", "HOST:PORT", "QSNAP_LISTEN=:9633", NULL);
    expect_error("QSNAP_LISTEN", "brackets", "QSNAP_LISTEN=::1:9633", NULL);
    expect_error("QSNAP_LISTEN", "IPv6", "QSNAP_LISTEN=[::1]9633", NULL);
    expect_error("QSNAP_LISTEN", "IPv6", "QSNAP_LISTEN=[nothex]:9633", NULL);
    expect_error("QSNAP_LISTEN", "numeric IPv4", "QSNAP_LISTEN=localhost:9633", NULL);
    expect_error("QSNAP_LISTEN", "numeric IPv4", "QSNAP_LISTEN=256.0.0.1:9633", NULL);
    expect_error("QSNAP_LISTEN", "empty", "QSNAP_LISTEN=", NULL);
}

Test(config, admin_token)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN);
    cr_assert_str_eq(cfg.admin_token, ADMIN_TOKEN);
    qs_config_free(&cfg);
    expect_error("QSNAP_ADMIN_TOKEN", "at least 16", "QSNAP_ADMIN_TOKEN=0123456789abcde", NULL);
    expect_error("QSNAP_ADMIN_TOKEN", "empty", "QSNAP_ADMIN_TOKEN=", NULL);
    expect_error("QSNAP_ADMIN_TOKEN", "control", "QSNAP_ADMIN_TOKEN=0123456789abcdef\r", NULL);
}

/* One rule for every secret: surrounding whitespace is refused (the bearer
 * check and HTTP header values drop it, so such a token could never match);
 * the one trailing newline a mounted secret file ends with is not part of
 * the value. */
Test(config, secrets_with_surrounding_spaces_are_refused)
{
    const char *bad[] = {
        "QSNAP_ADMIN_TOKEN= " ADMIN_TOKEN,         "QSNAP_ADMIN_TOKEN=" ADMIN_TOKEN " ",
        "QSNAP_ADMIN_TOKEN=  " ADMIN_TOKEN "  ",   "QSNAP_QDRANT_API_KEY=" API_KEY " ",
        "QSNAP_S3_SECRET_ACCESS_KEY= " SECRET_KEY, "QSNAP_S3_ACCESS_KEY_ID=" ACCESS_KEY " ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char var[64];
        size_t n = strcspn(bad[i], "=");
        memcpy(var, bad[i], n);
        var[n] = '\0';
        struct qs_config cfg;
        struct qs_error err;
        cr_assert_eq(load(&cfg, &err, bad[i], NULL), QS_ECONFIG, "accepted: '%s'", bad[i]);
        cr_assert_not_null(strstr(err.msg, var), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, "whitespace"), "%s", err.msg);
        /* never echoed */
        cr_assert_null(strstr(err.msg, ADMIN_TOKEN), "%s", err.msg);
        cr_assert_null(strstr(err.msg, API_KEY), "%s", err.msg);
        cr_assert_null(strstr(err.msg, SECRET_KEY), "%s", err.msg);
        cr_assert_null(strstr(err.msg, ACCESS_KEY), "%s", err.msg);
    }
    /* spaces inside a token are part of it */
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_ADMIN_TOKEN=admin token with spaces");
    cr_assert_str_eq(cfg.admin_token, "admin token with spaces");
    qs_config_free(&cfg);

    /* files: the trailing newline of a mounted secret keeps working ... */
    const char *ok = temp_file(ADMIN_TOKEN "\n", strlen(ADMIN_TOKEN) + 1);
    char v[128];
    snprintf(v, sizeof(v), "QSNAP_ADMIN_TOKEN_FILE=%s", ok);
    LOAD_OK(&cfg, v);
    cr_assert_str_eq(cfg.admin_token, ADMIN_TOKEN);
    qs_config_free(&cfg);
    unlink(ok);
    /* ... but spaces around the value in the file are refused, naming the
     * _FILE variable */
    const char *contents[] = {ADMIN_TOKEN " \n", " " ADMIN_TOKEN "\n", ADMIN_TOKEN " "};
    for (size_t i = 0; i < 3; i++) {
        const char *f = temp_file(contents[i], strlen(contents[i]));
        snprintf(v, sizeof(v), "QSNAP_ADMIN_TOKEN_FILE=%s", f);
        expect_error("QSNAP_ADMIN_TOKEN_FILE", "whitespace", v, NULL);
        unlink(f);
    }
}

Test(config, heartbeat_url)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_HEARTBEAT_URL=https://hc-ping.com/uuid-123?x=1");
    cr_assert_str_eq(cfg.heartbeat_url, "https://hc-ping.com/uuid-123?x=1");
    qs_config_free(&cfg);
    expect_error("QSNAP_HEARTBEAT_URL", "http:// or https://",
                 "QSNAP_HEARTBEAT_URL=hc-ping.com/uuid", NULL);
    expect_error("QSNAP_HEARTBEAT_URL", "no host", "QSNAP_HEARTBEAT_URL=https:///x", NULL);
    expect_error("QSNAP_HEARTBEAT_URL", "empty", "QSNAP_HEARTBEAT_URL=", NULL);
}

/* ---- cluster mode -------------------------------------------------------------------- */

Test(config, cluster)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_CLUSTER=off", "QSNAP_CLUSTER_REST_PORT=16333");
    cr_assert_eq(cfg.cluster, QS_CLUSTER_OFF);
    cr_assert_eq(cfg.cluster_rest_port, 16333);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_CLUSTER=off");
    assert_line(out, "QSNAP_CLUSTER_REST_PORT=16333");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_CLUSTER=auto", "QSNAP_CLUSTER_REST_PORT=65535");
    cr_assert_eq(cfg.cluster, QS_CLUSTER_AUTO);
    cr_assert_eq(cfg.cluster_rest_port, 65535);
    qs_config_free(&cfg);
    expect_error("QSNAP_CLUSTER", "must be 'auto' or 'off' (got 'on')", "QSNAP_CLUSTER=on", NULL);
    expect_error("QSNAP_CLUSTER", "'auto' or 'off'", "QSNAP_CLUSTER=AUTO", NULL);
    expect_error("QSNAP_CLUSTER", "empty", "QSNAP_CLUSTER=", NULL);
    expect_error("QSNAP_CLUSTER_REST_PORT", "1 to 65535 (got '0')", "QSNAP_CLUSTER_REST_PORT=0",
                 NULL);
    expect_error("QSNAP_CLUSTER_REST_PORT", "1 to 65535", "QSNAP_CLUSTER_REST_PORT=65536", NULL);
    expect_error("QSNAP_CLUSTER_REST_PORT", "1 to 65535", "QSNAP_CLUSTER_REST_PORT=-1", NULL);
    expect_error("QSNAP_CLUSTER_REST_PORT", "1 to 65535", "QSNAP_CLUSTER_REST_PORT=6333x", NULL);
    expect_error("QSNAP_CLUSTER_REST_PORT", "empty", "QSNAP_CLUSTER_REST_PORT=", NULL);
}

/* ---- logging ---------------------------------------------------------------------------- */

Test(config, log_level_and_format)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, "QSNAP_LOG_LEVEL=debug", "QSNAP_LOG_FORMAT=text");
    cr_assert_eq(cfg.log_level, QS_LOG_DEBUG);
    cr_assert_eq(cfg.log_format, QS_LOG_TEXT);
    qs_config_apply_log(&cfg);
    cr_assert_eq(qs_log_get_level(), QS_LOG_DEBUG);
    char *out = print_config(&cfg);
    assert_line(out, "QSNAP_LOG_LEVEL=debug");
    assert_line(out, "QSNAP_LOG_FORMAT=text");
    free(out);
    qs_config_free(&cfg);
    LOAD_OK(&cfg, "QSNAP_LOG_LEVEL=error");
    cr_assert_eq(cfg.log_level, QS_LOG_ERROR);
    qs_config_free(&cfg);
    expect_error("QSNAP_LOG_LEVEL", "debug, info, warn or error", "QSNAP_LOG_LEVEL=verbose", NULL);
    expect_error("QSNAP_LOG_LEVEL", "empty", "QSNAP_LOG_LEVEL=", NULL);
    expect_error("QSNAP_LOG_FORMAT", "json or text", "QSNAP_LOG_FORMAT=xml", NULL);
    expect_error("QSNAP_LOG_FORMAT", "empty", "QSNAP_LOG_FORMAT=", NULL);
}

/* ---- print and unknown variables ---------------------------------------------------- */

Test(config, print_lists_every_variable_with_defaults)
{
    struct qs_config cfg;
    LOAD_OK(&cfg, NULL);
    char *out = print_config(&cfg);
    static const char *const lines[] = {
        "QSNAP_QDRANT_URL=http://localhost:6333",
        "QSNAP_QDRANT_API_KEY=",
        "QSNAP_DESTINATION=s3://cortex-backups/qdrant",
        "QSNAP_S3_ENDPOINT=",
        "QSNAP_S3_REGION=us-east-1",
        "QSNAP_S3_SECRET_ACCESS_KEY=[REDACTED]",
        "QSNAP_S3_URI_STYLE=virtual",
        "QSNAP_S3_CA_FILE=",
        "QSNAP_S3_PART_SIZE=8MiB",
        "QSNAP_SCHEDULE=0 3 * * *",
        "QSNAP_JITTER=0s",
        "QSNAP_COLLECTIONS=",
        "QSNAP_MODE=collections",
        "QSNAP_SNAPSHOT_METHOD=collection",
        "QSNAP_RETENTION=7d",
        "QSNAP_KEEP_MIN=3",
        "QSNAP_LOCAL_KEEP=1",
        "QSNAP_COMPRESSION=none",
        "QSNAP_MAX_BANDWIDTH=",
        "QSNAP_LISTEN=0.0.0.0:9633",
        "QSNAP_ADMIN_TOKEN=",
        "QSNAP_STALE_AFTER=26h",
        "QSNAP_DRILL_SCHEDULE=off",
        "QSNAP_HEARTBEAT_URL=",
        "QSNAP_CLUSTER=auto",
        "QSNAP_CLUSTER_REST_PORT=6333",
        "QSNAP_LOG_LEVEL=info",
        "QSNAP_LOG_FORMAT=json",
        NULL,
    };
    size_t nl = 0;
    for (const char *p = out; *p; p++)
        nl += *p == '\n';
    for (size_t i = 0; lines[i] != NULL; i++)
        assert_line(out, lines[i]);
    cr_assert_eq(nl, 29, "expected 29 lines:\n%s", out);
    free(out);
    qs_config_free(&cfg);
}

Test(config, unknown_variables_warn)
{
    char path[] = "/tmp/qsnap-config-log-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    qs_log_set_fd(fd);
    qs_log_set_format(QS_LOG_JSON);
    char *envp[] = {
        "PATH=/usr/bin",
        "QSNAP_SCHEDUEL=0 3 * * *",
        "QSNAP_SCHEDULE=0 3 * * *",
        "QSNAP_TEST_BINARY=/x",
        "QSNAP_FROBNICATE_EVERYTHING=secret-looking-value",
        "QSNAP_ADMIN_TOKEN_FILE=/run/token",
        NULL,
    };
    cr_assert_eq(qs_config_warn_unknown(envp), 2);
    char *known[] = {"QSNAP_LISTEN=1", "QSNAP_TEST_X=1", "HOME=/", NULL};
    cr_assert_eq(qs_config_warn_unknown(known), 0);
    qs_log_set_fd(2);
    char buf[4096] = {0};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    cr_assert_gt(n, 0);
    cr_assert_not_null(strstr(buf, "QSNAP_SCHEDUEL"), "%s", buf);
    cr_assert_not_null(strstr(buf, "did you mean QSNAP_SCHEDULE?"), "%s", buf);
    cr_assert_not_null(strstr(buf, "QSNAP_FROBNICATE_EVERYTHING"), "%s", buf);
    cr_assert_not_null(strstr(buf, "\"level\":\"warn\""), "%s", buf);
    cr_assert_null(strstr(buf, "secret-looking-value"), "%s", buf);
    cr_assert_null(strstr(buf, "QSNAP_TEST_BINARY"), "%s", buf);
    cr_assert_null(strstr(buf, "QSNAP_ADMIN_TOKEN_FILE"), "%s", buf);
}
