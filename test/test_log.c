/* Log lines: formats, levels and secret redaction. Each test runs in its own
 * process (criterion), so the registered secrets do not leak between tests. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

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
