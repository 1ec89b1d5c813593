/* Log lines: formats, levels and secret redaction. Each test runs in its own
 * process (criterion), so the registered secrets do not leak between tests. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "qsnap/config.h"
#include "qsnap/error.h"
#include "qsnap/http.h"
#include "qsnap/job.h"
#include "qsnap/log.h"

/* Captures what the log writes into a temporary file. */
struct capture {
    char path[64];
    int fd;
};

static void capture_start(struct capture *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/qsnap-log-test-XXXXXX");
    c->fd = mkstemp(c->path);
    cr_assert_geq(c->fd, 0);
    qs_log_set_fd(c->fd);
    qs_log_set_level(QS_LOG_DEBUG);
}

/* Everything logged since capture_start (owned). */
static char *capture_end(struct capture *c)
{
    qs_log_set_fd(2);
    off_t n = lseek(c->fd, 0, SEEK_END);
    cr_assert_geq(n, 0);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(pread(c->fd, buf, (size_t)n, 0), (ssize_t)n);
    buf[n] = '\0';
    close(c->fd);
    unlink(c->path);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The JSON escaping of s as a JSON encoder writes it (without quotes). */
static char *json_escaped(const char *s)
{
    cJSON *str = cJSON_CreateString(s);
    char *p = cJSON_PrintUnformatted(str);
    cJSON_Delete(str);
    size_t n = strlen(p);
    memmove(p, p + 1, n - 2);
    p[n - 2] = '\0';
    return p;
}

/* Asserts that out holds neither the secret nor its JSON escaping, nor a
 * 5-byte prefix of either (a truncated secret is still a leak). */
static void assert_no_secret(const char *out, const char *secret)
{
    char *esc = json_escaped(secret);
    const char *forms[] = {secret, esc};
    for (size_t i = 0; i < 2; i++) {
        cr_assert_null(strstr(out, forms[i]), "secret form %zu leaked:\n%s", i, out);
        char prefix[6];
        memcpy(prefix, forms[i], 5);
        prefix[5] = '\0';
        cr_assert_null(strstr(out, prefix), "prefix of secret form %zu leaked:\n%s", i, out);
    }
    free(esc);
}

/* Secrets that a naive "escape, then search" misses: quotes, backslashes,
 * control characters, UTF-8. Every one starts with "Zq" (nothing else logged
 * here does). */
static const char *const tricky[] = {
    "Zq\"uote\"secret",        "Zq\\back\\slash",
    "Zq\nnew\tline\x01secret", "Zq\xc3\xa9t\xc3\xa9-\xe2\x82\xac-secret",
    "Zq\"\\\"mixed\\\"",
};
#define NTRICKY (sizeof(tricky) / sizeof(tricky[0]))

/* The destination changes while another thread logs (ThreadSanitizer
 * reports an unsynchronised one): every line lands whole in one of them. */
enum { SWITCH_LINES = 400 };

static void *log_lines(void *arg)
{
    (void)arg;
    for (int i = 0; i < SWITCH_LINES; i++)
        QS_INFO("line %d", i);
    return NULL;
}

Test(log, destination_changes_while_another_thread_logs)
{
    struct capture a, b;
    capture_start(&a);
    capture_start(&b);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, log_lines, NULL), 0);
    for (int i = 0; i < 2000; i++)
        qs_log_set_fd(i % 2 == 0 ? a.fd : b.fd);
    pthread_join(th, NULL);
    char *sa = capture_end(&a), *sb = capture_end(&b);
    cr_assert_eq(count_lines(sa) + count_lines(sb), SWITCH_LINES, "%s---\n%s", sa, sb);
    for (int i = 0; i < SWITCH_LINES; i++) {
        char want[32];
        snprintf(want, sizeof(want), "\"line %d\"", i);
        cr_assert(strstr(sa, want) != NULL || strstr(sb, want) != NULL, "%s is missing", want);
    }
    free(sa);
    free(sb);
}

Test(log, json_line_shape_and_context_fields)
{
    struct capture c;
    capture_start(&c);
    qs_log_set_format(QS_LOG_JSON);
    struct qs_log_ctx ctx = QS_LOG_CTX_NONE;
    ctx.collection = "notes";
    ctx.phase = "stream";
    ctx.bytes = 42;
    qs_log(QS_LOG_WARN, &ctx, "hello %d", 7);
    char *out = capture_end(&c);
    cr_assert_eq(count_lines(out), 1, "%s", out);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "not JSON: %s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "msg")->valuestring, "hello 7");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "collection")->valuestring, "notes");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "phase")->valuestring, "stream");
    cr_assert_eq(cJSON_GetObjectItem(j, "bytes")->valuedouble, 42);
    cr_assert_null(cJSON_GetObjectItem(j, "job"));
    cJSON_Delete(j);
    free(out);
}

Test(log, tricky_secrets_are_redacted_in_json_msg_and_context)
{
    for (size_t i = 0; i < NTRICKY; i++)
        qs_log_add_secret(tricky[i]);
    qs_log_set_format(QS_LOG_JSON);
    for (size_t i = 0; i < NTRICKY; i++) {
        struct capture c;
        capture_start(&c);
        char err[200];
        snprintf(err, sizeof(err), "auth failed for %s!", tricky[i]);
        struct qs_log_ctx ctx = QS_LOG_CTX_NONE;
        ctx.error = err;
        ctx.snapshot = tricky[i];
        qs_log(QS_LOG_ERROR, &ctx, "key=%s end", tricky[i]);
        char *out = capture_end(&c);
        assert_no_secret(out, tricky[i]);
        cr_assert_eq(count_lines(out), 1, "secret %zu: %s", i, out);
        /* Still valid JSON, with the secret replaced where it was. */
        cJSON *j = cJSON_Parse(out);
        cr_assert_not_null(j, "secret %zu: not JSON: %s", i, out);
        cr_assert_str_eq(cJSON_GetObjectItem(j, "msg")->valuestring, "key=[REDACTED] end");
        cr_assert_str_eq(cJSON_GetObjectItem(j, "error")->valuestring,
                         "auth failed for [REDACTED]!");
        cr_assert_str_eq(cJSON_GetObjectItem(j, "snapshot")->valuestring, "[REDACTED]");
        cJSON_Delete(j);
        free(out);
    }
}

Test(log, tricky_secrets_are_redacted_in_text_msg_and_context)
{
    for (size_t i = 0; i < NTRICKY; i++)
        qs_log_add_secret(tricky[i]);
    qs_log_set_format(QS_LOG_TEXT);
    for (size_t i = 0; i < NTRICKY; i++) {
        struct capture c;
        capture_start(&c);
        char err[200];
        snprintf(err, sizeof(err), "auth failed for %s!", tricky[i]);
        struct qs_log_ctx ctx = QS_LOG_CTX_NONE;
        ctx.error = err;
        ctx.collection = tricky[i];
        qs_log(QS_LOG_INFO, &ctx, "key=%s end", tricky[i]);
        char *out = capture_end(&c);
        assert_no_secret(out, tricky[i]);
        /* One event, one line, even when a value holds a line break. */
        cr_assert_eq(count_lines(out), 1, "secret %zu: %s", i, out);
        cr_assert_not_null(strstr(out, " info key=[REDACTED] end"), "%s", out);
        cr_assert_not_null(strstr(out, " collection=[REDACTED]"), "%s", out);
        cr_assert_not_null(strstr(out, " error=\"auth failed for [REDACTED]!\""), "%s", out);
        free(out);
    }
}

Test(log, text_format_keeps_one_line_per_event)
{
    qs_log_set_format(QS_LOG_TEXT);
    struct capture c;
    capture_start(&c);
    struct qs_log_ctx ctx = QS_LOG_CTX_NONE;
    ctx.error = "first\nsecond";
    qs_log(QS_LOG_INFO, &ctx, "line one\nfake 2024-01-01T00:00:00.000Z error injected");
    char *out = capture_end(&c);
    cr_assert_eq(count_lines(out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "line one\\nfake"), "%s", out);
    cr_assert_not_null(strstr(out, "error=\"first\\nsecond\""), "%s", out);
    free(out);
}

Test(log, secret_escaped_in_the_input_is_redacted_too)
{
    /* A peer's error message may quote a secret in its JSON-escaped form. */
    qs_log_add_secret("Zq\"quoted\\key");
    qs_log_set_format(QS_LOG_JSON);
    struct capture c;
    capture_start(&c);
    qs_log(QS_LOG_ERROR, NULL, "peer said {\"api-key\":\"Zq\\\"quoted\\\\key\"}");
    char *out = capture_end(&c);
    assert_no_secret(out, "Zq\"quoted\\key");
    cr_assert_not_null(strstr(out, "[REDACTED]"), "%s", out);
    free(out);
}

Test(log, longest_secret_wins_when_secrets_overlap)
{
    qs_log_add_secret("Zq-short");
    qs_log_add_secret("Zq-short-and-longer-tail");
    qs_log_set_format(QS_LOG_JSON);
    struct capture c;
    capture_start(&c);
    qs_log(QS_LOG_INFO, NULL, "a Zq-short-and-longer-tail b Zq-short c");
    char *out = capture_end(&c);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "%s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "msg")->valuestring, "a [REDACTED] b [REDACTED] c");
    cJSON_Delete(j);
    free(out);
}

Test(log, secret_at_the_truncation_point_does_not_leak_a_prefix)
{
    const char *secret = "Zq9-truncation-secret-value";
    qs_log_add_secret(secret);
    qs_log_set_format(QS_LOG_JSON);
    /* Place the secret across every cut the line could get near 4 KiB. */
    for (size_t pad = 4070; pad < 4100; pad++) {
        char *big = malloc(pad + 1);
        memset(big, 'a', pad);
        big[pad] = '\0';
        struct capture c;
        capture_start(&c);
        qs_log(QS_LOG_INFO, NULL, "%s%s tail", big, secret);
        char *out = capture_end(&c);
        assert_no_secret(out, secret);
        free(out);
        free(big);
    }
}

Test(log, redact_buffer_in_place)
{
    qs_log_add_secret("Zq\"buf\\secret");
    char buf[64] = "x Zq\"buf\\secret y";
    qs_log_redact(buf, sizeof(buf));
    cr_assert_str_eq(buf, "x [REDACTED] y");
    /* Truncated to the buffer, never overflowing it. */
    char small[8] = "Zq\"buf";
    qs_log_redact(small, sizeof(small));
    cr_assert_str_eq(small, "Zq\"buf");
    char tiny[12];
    strcpy(tiny, "Zq\"buf\\sec");
    qs_log_redact(tiny, sizeof(tiny));
    cr_assert_str_eq(tiny, "Zq\"buf\\sec"); /* not the whole secret: unchanged */
}

Test(log, short_values_are_not_secrets_and_levels_filter)
{
    qs_log_add_secret("abc");
    qs_log_set_format(QS_LOG_JSON);
    struct capture c;
    capture_start(&c);
    qs_log_set_level(QS_LOG_WARN);
    qs_log(QS_LOG_INFO, NULL, "dropped abc");
    qs_log(QS_LOG_WARN, NULL, "kept abc");
    char *out = capture_end(&c);
    cr_assert_eq(count_lines(out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "\"msg\":\"kept abc\""), "%s", out);
    free(out);
}

/* ---- every secret kind, as the configuration registers it -----------------
 * The admin token, both S3 keys, the Qdrant API key and the heartbeat URL
 * (which may carry a token) are registered when the configuration is
 * loaded: from then on no log line, HTTP error body or job JSON shows them,
 * and no configuration error quotes one. */

#define S_API_KEY "ZqApiKey-qdrant-0001"
#define S_ACCESS_KEY "ZqAccessKeyId-0002"
#define S_SECRET_KEY "ZqSecretAccessKey-0003"
#define S_TOKEN "ZqAdminToken-0004-abcdefgh"
#define S_HEARTBEAT "https://hc.example/ping/ZqHeartbeat-0005"

static const char *const secret_kinds[] = {S_API_KEY, S_ACCESS_KEY, S_SECRET_KEY, S_TOKEN,
                                           S_HEARTBEAT};
#define NKINDS (sizeof(secret_kinds) / sizeof(secret_kinds[0]))

/* out holds no secret kind. The heartbeat URL starts like any URL, so only
 * its token part counts as a prefix that must not leak. */
static void assert_no_secret_kind(const char *out)
{
    for (size_t i = 0; i < NKINDS; i++) {
        const char *s = secret_kinds[i];
        const char *tail = strstr(s, "Zq");
        cr_assert_null(strstr(out, s), "secret %zu leaked:\n%s", i, out);
        assert_no_secret(out, tail);
    }
}

/* A fake environment: NULL-terminated "K=V" list. */
static const char *env_get(const char *name, void *ud)
{
    const char *const *env = ud;
    size_t n = strlen(name);
    for (size_t i = 0; env[i] != NULL; i++)
        if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
            return env[i] + n + 1;
    return NULL;
}

static void load_every_secret(struct qs_config *cfg, int from_files, char *dir)
{
    static const char *const vars[] = {"QSNAP_QDRANT_API_KEY", "QSNAP_S3_ACCESS_KEY_ID",
                                       "QSNAP_S3_SECRET_ACCESS_KEY", "QSNAP_ADMIN_TOKEN"};
    char entries[4][600];
    const char *env[12] = {"QSNAP_DESTINATION=file:///tmp", "QSNAP_HEARTBEAT_URL=" S_HEARTBEAT};
    size_t n = 2;
    for (size_t i = 0; i < 4; i++) {
        if (from_files) {
            char path[512];
            snprintf(path, sizeof(path), "%s/secret%zu", dir, i);
            FILE *f = fopen(path, "w");
            cr_assert_not_null(f);
            fprintf(f, "%s\n", secret_kinds[i]);
            fclose(f);
            snprintf(entries[i], sizeof(entries[i]), "%s_FILE=%s", vars[i], path);
        } else {
            snprintf(entries[i], sizeof(entries[i]), "%s=%s", vars[i], secret_kinds[i]);
        }
        env[n++] = entries[i];
    }
    env[n] = NULL;
    struct qs_error err;
    cr_assert_eq(qs_config_load(cfg, env_get, env, &err), 0, "%s", err.msg);
}

/* Logs every secret kind in the message and in every context field. */
static void log_every_field(void)
{
    for (size_t i = 0; i < NKINDS; i++) {
        char err[300];
        snprintf(err, sizeof(err), "peer said: bad credential %s", secret_kinds[i]);
        struct qs_log_ctx ctx = {.job = secret_kinds[i],
                                 .collection = secret_kinds[i],
                                 .snapshot = secret_kinds[i],
                                 .phase = secret_kinds[i],
                                 .error = err,
                                 .bytes = -1,
                                 .duration_s = -1};
        qs_log(QS_LOG_ERROR, &ctx, "request to %s failed", secret_kinds[i]);
    }
}

Test(log, every_secret_kind_from_the_configuration_is_redacted_in_log_lines)
{
    char *dir = strdup("/tmp/qsnap-log-secrets-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    for (int from_files = 0; from_files < 2; from_files++) {
        struct qs_config cfg;
        load_every_secret(&cfg, from_files, dir);
        for (int fmt = 0; fmt < 2; fmt++) {
            qs_log_set_format(fmt == 0 ? QS_LOG_JSON : QS_LOG_TEXT);
            struct capture c;
            capture_start(&c);
            log_every_field();
            char *out = capture_end(&c);
            cr_assert_eq(count_lines(out), NKINDS, "%s", out);
            assert_no_secret_kind(out);
            cr_assert_not_null(strstr(out, "[REDACTED]"), "%s", out);
            free(out);
        }
        qs_config_free(&cfg);
    }
    for (size_t i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/secret%zu", dir, i);
        unlink(path);
    }
    rmdir(dir);
    free(dir);
}

Test(log, every_secret_kind_is_redacted_in_http_error_bodies)
{
    struct qs_config cfg;
    load_every_secret(&cfg, 0, NULL);
    for (size_t i = 0; i < NKINDS; i++) {
        char msg[300];
        snprintf(msg, sizeof(msg), "destination lookup failed: %s refused", secret_kinds[i]);
        struct qs_buf b;
        qs_buf_init(&b);
        cr_assert_eq(qs_http_json_error_body(msg, &b), 0);
        assert_no_secret_kind(b.data);
        cJSON *j = cJSON_Parse(b.data);
        cr_assert_not_null(j, "not JSON: %s", b.data);
        cr_assert_str_eq(cJSON_GetObjectItem(j, "error")->valuestring,
                         "destination lookup failed: [REDACTED] refused");
        cJSON_Delete(j);
        qs_buf_free(&b);
    }
    qs_config_free(&cfg);
}

/* GET /v1/jobs/{id}: a job's error and its items' errors quote peers. */
Test(log, every_secret_kind_is_redacted_in_job_errors)
{
    struct qs_config cfg;
    load_every_secret(&cfg, 0, NULL);
    struct qs_job *job = qs_job_new(QS_JOB_BACKUP, "api");
    cr_assert_not_null(job);
    cr_assert_eq(qs_job_transition(job, QS_JOB_RUNNING, NULL), 0);
    for (size_t i = 0; i < NKINDS; i++) {
        char name[16], err[300];
        snprintf(name, sizeof(name), "c%zu", i);
        snprintf(err, sizeof(err), "Qdrant answered 403: wrong key %s", secret_kinds[i]);
        struct qs_job_item *it = qs_job_item(job, name);
        cr_assert_not_null(it);
        it->done = 1;
        it->error = strdup(err);
    }
    cr_assert_eq(qs_job_transition(job, QS_JOB_FAILED, "first failure: " S_TOKEN S_SECRET_KEY), 0);
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_job_to_json(job, &b), 0);
    assert_no_secret_kind(b.data);
    cJSON *j = cJSON_Parse(b.data);
    cr_assert_not_null(j, "not JSON: %s", b.data);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "error")->valuestring,
                     "first failure: [REDACTED][REDACTED]");
    cJSON_Delete(j);
    qs_buf_free(&b);
    qs_job_free(job);
    qs_config_free(&cfg);
}

/* A configuration error names the variable and never quotes the value of a
 * secret, whatever is wrong with it and wherever it came from. */
Test(log, configuration_errors_never_quote_a_secret)
{
    struct {
        const char *var, *value;
    } bad[] = {
        {"QSNAP_QDRANT_API_KEY", " ZqApiKey-leading-space"},
        {"QSNAP_QDRANT_API_KEY", "ZqApiKey-REPLACE-me"},
        {"QSNAP_QDRANT_API_KEY", "ZqApiKey\x01control"},
        {"QSNAP_S3_ACCESS_KEY_ID", "ZqAccessKey trailing "},
        {"QSNAP_S3_ACCESS_KEY_ID", "ZqAccessKey-changeme"},
        {"QSNAP_S3_SECRET_ACCESS_KEY", "ZqSecret\nline"},
        {"QSNAP_S3_SECRET_ACCESS_KEY", "ZqSecret-CHANGEME-now"},
        {"QSNAP_ADMIN_TOKEN", "ZqShort-token"},
        {"QSNAP_ADMIN_TOKEN", "ZqAdminToken-REPLACE-with-real"},
        {"QSNAP_ADMIN_TOKEN", "ZqAdminToken-with space\t"},
        {"QSNAP_HEARTBEAT_URL", "ftp://ZqHeartbeat-token@hc.example/ping"},
        {"QSNAP_HEARTBEAT_URL", "https://hc.example/ping/ZqHeartbeat token"},
    };
    char *dir = strdup("/tmp/qsnap-log-config-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (int from_file = 0; from_file < 2; from_file++) {
            if (from_file && strcmp(bad[i].var, "QSNAP_HEARTBEAT_URL") == 0)
                continue; /* no _FILE form */
            char entry[600], path[512];
            if (from_file) {
                snprintf(path, sizeof(path), "%s/value", dir);
                FILE *f = fopen(path, "w");
                cr_assert_not_null(f);
                fputs(bad[i].value, f);
                fclose(f);
                snprintf(entry, sizeof(entry), "%s_FILE=%s", bad[i].var, path);
            } else {
                snprintf(entry, sizeof(entry), "%s=%s", bad[i].var, bad[i].value);
            }
            const char *env[] = {"QSNAP_DESTINATION=file:///tmp", entry, NULL};
            struct qs_config cfg;
            struct qs_error err;
            int rc = qs_config_load(&cfg, env_get, env, &err);
            cr_assert_eq(rc, QS_ECONFIG, "%s (file %d) was accepted", bad[i].var, from_file);
            cr_assert_not_null(strstr(err.msg, bad[i].var), "%s", err.msg);
            assert_no_secret(err.msg, "ZqApiKey");
            assert_no_secret(err.msg, "ZqAccessKey");
            assert_no_secret(err.msg, "ZqSecret");
            assert_no_secret(err.msg, "ZqShort");
            assert_no_secret(err.msg, "ZqAdminToken");
            assert_no_secret(err.msg, "ZqHeartbeat");
        }
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/value", dir);
    unlink(path);
    rmdir(dir);
    free(dir);
}
