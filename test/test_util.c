#include <cJSON.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "qsnap/error.h"
#include "qsnap/util.h"

Test(util, parse_size)
{
    uint64_t v;
    cr_assert_eq(qs_parse_size("16MiB", &v), 0);
    cr_assert_eq(v, 16u << 20);
    cr_assert_eq(qs_parse_size("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(qs_parse_size("5KiB", &v), 0);
    cr_assert_eq(v, 5120);
    cr_assert_eq(qs_parse_size("1GiB", &v), 0);
    cr_assert_eq(v, 1u << 30);
    cr_assert_eq(qs_parse_size("16MB", &v), QS_EINVAL);
    cr_assert_eq(qs_parse_size("-1MiB", &v), QS_EINVAL);
    cr_assert_eq(qs_parse_size("", &v), QS_EINVAL);
    cr_assert_eq(qs_parse_size("99999999999999999999", &v), QS_EINVAL);
    cr_assert_eq(qs_parse_size("99999999999TiB", &v), QS_EINVAL);
}

Test(util, parse_duration)
{
    int64_t v;
    cr_assert_eq(qs_parse_duration("7d", &v), 0);
    cr_assert_eq(v, 7 * 86400);
    cr_assert_eq(qs_parse_duration("0s", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(qs_parse_duration("90m", &v), 0);
    cr_assert_eq(v, 5400);
    cr_assert_eq(qs_parse_duration("2h", &v), 0);
    cr_assert_eq(v, 7200);
    cr_assert_eq(qs_parse_duration("7", &v), QS_EINVAL);
    cr_assert_eq(qs_parse_duration("7w", &v), QS_EINVAL);
    cr_assert_eq(qs_parse_duration("d", &v), QS_EINVAL);
}

Test(util, parse_rate)
{
    uint64_t v;
    cr_assert_eq(qs_parse_rate("50MiB/s", &v), 0);
    cr_assert_eq(v, 50u << 20);
    cr_assert_eq(qs_parse_rate("50MiB", &v), QS_EINVAL);
    cr_assert_eq(qs_parse_rate("0/s", &v), QS_EINVAL);
}

Test(util, time_roundtrip)
{
    char buf[21];
    qs_time_rfc3339(0, buf);
    cr_assert_str_eq(buf, "1970-01-01T00:00:00Z");
    int64_t t;
    cr_assert_eq(qs_time_parse("2024-02-29T23:59:59Z", &t), 0);
    qs_time_rfc3339(t, buf);
    cr_assert_str_eq(buf, "2024-02-29T23:59:59Z");
    /* Qdrant writes no zone: UTC. */
    cr_assert_eq(qs_time_parse("2025-01-28T10:15:02", &t), 0);
    cr_assert_eq(t, 1738059302);
    cr_assert_eq(qs_time_parse("2025-01-28T11:15:02+01:00", &t), 0);
    cr_assert_eq(t, 1738059302);
    cr_assert_eq(qs_time_parse("2023-02-29T00:00:00Z", &t), QS_EINVAL);
    cr_assert_eq(qs_time_parse("2023-01-01", &t), QS_EINVAL);
    cr_assert_eq(qs_time_parse("2023-01-01T00:00:00Zjunk", &t), QS_EINVAL);
}

static int64_t fixed_clock(void *ud)
{
    return *(int64_t *)ud;
}

Test(util, injectable_clock)
{
    int64_t t = 1234;
    qs_clock_set(fixed_clock, &t);
    cr_assert_eq(qs_clock_now(), 1234);
    qs_clock_set(NULL, NULL);
    cr_assert_gt(qs_clock_now(), 1700000000);
}

/* Under ThreadSanitizer (scripts/test.sh) an unsynchronised clock is a
 * reported race: installing a clock while another thread reads it must be
 * safe, and a reader sees one installed clock, never a torn fn/ud pair. */
struct clock_reader {
    int64_t bad; /* a reading that came from no installed clock */
    int stop;    /* atomic */
};

static void *read_clock(void *arg)
{
    struct clock_reader *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        int64_t t = qs_clock_now();
        if (t != 1111 && t != 2222 && t < 1700000000)
            r->bad = t;
    }
    return NULL;
}

Test(util, clock_installed_while_another_thread_reads_it)
{
    static int64_t a = 1111, b = 2222;
    struct clock_reader r = {0, 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, read_clock, &r), 0);
    for (int i = 0; i < 3000; i++)
        qs_clock_set(i % 3 == 2 ? NULL : fixed_clock, i % 3 == 0 ? &a : &b);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    qs_clock_set(NULL, NULL);
    cr_assert_eq(r.bad, 0, "read %lld", (long long)r.bad);
}

Test(util, parse_u64_and_double_check_the_whole_number)
{
    uint64_t v = 7;
    cr_assert_eq(qs_parse_u64("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(qs_parse_u64("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    const char *bad[] = {"", " 1", "+1", "-1", "1 ", "1x", "18446744073709551616", "0x10", NULL};
    for (int i = 0; bad[i] != NULL; i++)
        cr_assert_eq(qs_parse_u64(bad[i], &v), QS_EINVAL, "%s", bad[i]);
    cr_assert_eq(qs_parse_u64(NULL, &v), QS_EINVAL);
    const char *end = NULL;
    cr_assert_eq(qs_parse_u64_prefix("1712345678\nprocs 3", &end, &v), 0);
    cr_assert_eq(v, 1712345678);
    cr_assert_str_eq(end, "\nprocs 3");
    cr_assert_eq(qs_parse_u64_prefix("x1", &end, &v), QS_EINVAL);

    double d = 0;
    cr_assert_eq(qs_parse_double("0.5", &d), 0);
    cr_assert_eq(d, 0.5);
    cr_assert_eq(qs_parse_double("-1e3", &d), 0);
    cr_assert_eq(d, -1000.0);
    cr_assert_eq(qs_parse_double("5e-324", &d), 0); /* underflows to the nearest value */
    cr_assert_gt(d, 0);
    const char *dbad[] = {"", " 1", "1 ", "0.5x", "1e999", "inf", "nan", "-inf", NULL};
    for (int i = 0; dbad[i] != NULL; i++)
        cr_assert_eq(qs_parse_double(dbad[i], &d), QS_EINVAL, "%s", dbad[i]);
}

Test(util, sha256_and_hex)
{
    char out[65];
    qs_sha256_hex("abc", 3, out);
    cr_assert_str_eq(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cr_assert(qs_is_sha256_hex(out));
    cr_assert_not(qs_is_sha256_hex("abc"));
    out[10] = 'g';
    cr_assert_not(qs_is_sha256_hex(out));
}

Test(util, buf_and_strings)
{
    struct qs_buf b;
    qs_buf_init(&b);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(qs_buf_printf(&b, "%d,", i), 0);
    cr_assert_eq(strncmp(b.data, "0,1,2,", 6), 0);
    cr_assert_eq(b.len, strlen(b.data));
    qs_buf_free(&b);
    char small[4];
    cr_assert_eq(qs_strlcpy(small, "hello", sizeof(small)), 5);
    cr_assert_str_eq(small, "hel");
    cr_assert(qs_consttime_streq("token", "token"));
    cr_assert_not(qs_consttime_streq("token", "tokem"));
    cr_assert_not(qs_consttime_streq("token", "token2"));
    cr_assert_not(qs_consttime_streq("", "x"));
}

Test(util, error_set_and_prefix)
{
    struct qs_error e;
    qs_error_clear(&e);
    cr_assert_eq(qs_error_set(&e, QS_EHTTP, "PUT %s: %d", "k", 403), QS_EHTTP);
    qs_error_prefix(&e, "upload");
    cr_assert_str_eq(e.msg, "upload: PUT k: 403");
    cr_assert_str_eq(qs_strerror(QS_EHTTP), "EHTTP");
    cr_assert_str_eq(qs_strerror(-2), "ENOENT");
}

Test(util, error_set_resets_every_field)
{
    struct qs_error e;
    qs_error_clear(&e);
    qs_error_set_class(&e, QS_EHTTP, 503, 1, "s3 GET k: HTTP 503: SlowDown");
    qs_error_prefix(&e, "restore");
    cr_assert_eq(e.http_status, 503);
    cr_assert_eq(e.retryable, 1);
    cr_assert_eq(qs_error_set(&e, QS_EINVAL, "bad %s", "name"), QS_EINVAL);
    cr_assert_eq(e.code, QS_EINVAL);
    cr_assert_eq(e.http_status, 0, "a new failure has no HTTP status");
    cr_assert_eq(e.retryable, 0, "a new failure is not retryable");
    cr_assert_str_eq(e.msg, "bad name");
    cr_assert_str_eq(qs_error_cause(&e), "bad name", "no context of the old failure");
}

Test(util, error_chain_keeps_the_first_failure)
{
    struct qs_error e;
    qs_error_clear(&e);
    cr_assert_str_eq(qs_error_cause(&e), "");
    qs_error_set_class(&e, QS_ETRANSPORT, 0, 1, "s3 PUT c/x: Connection reset by peer");
    /* A sink failed with that reason; the download above it adds context. */
    cr_assert_eq(qs_error_wrap(&e, QS_EIO, "download 'x': writing the stream failed"),
                 QS_ETRANSPORT, "the cause's code wins");
    cr_assert_eq(qs_error_prefix(&e, "3 of 5 collections failed, first"), QS_ETRANSPORT);
    cr_assert_str_eq(e.msg, "3 of 5 collections failed, first: download 'x': writing the "
                            "stream failed: s3 PUT c/x: Connection reset by peer");
    cr_assert_str_eq(qs_error_cause(&e), "s3 PUT c/x: Connection reset by peer");
    cr_assert_eq(e.code, QS_ETRANSPORT);
    cr_assert_eq(e.retryable, 1, "classification survives the layers above");
    cr_assert_eq(e.http_status, 0);

    /* The HTTP status of the cause survives too. */
    qs_error_set_class(&e, QS_EHTTP, 403, 0, "s3 PUT c/x: HTTP 403: AccessDenied");
    qs_error_wrap(&e, QS_EIO, "download 'x': writing the stream failed");
    cr_assert_eq(e.http_status, 403);
    cr_assert_eq(e.code, QS_EHTTP);
}

Test(util, error_wrap_without_a_cause_records_one)
{
    struct qs_error e;
    qs_error_clear(&e);
    cr_assert_eq(qs_error_wrap(&e, QS_ETOOBIG, "s3 GET k: writing the stream failed"), QS_ETOOBIG);
    cr_assert_eq(e.code, QS_ETOOBIG);
    cr_assert_eq(e.retryable, 0);
    cr_assert_str_eq(e.msg, "s3 GET k: writing the stream failed: ETOOBIG");
    cr_assert_eq(qs_error_wrap(NULL, QS_EIO, "x"), QS_EIO);
    cr_assert_eq(qs_error_prefix(NULL, "x"), 0);
    cr_assert_str_eq(qs_error_cause(NULL), "");
}

Test(util, error_context_never_cuts_the_cause)
{
    struct qs_error e;
    char cause[401], ctx[301];
    memset(cause, 'c', sizeof(cause) - 1);
    cause[sizeof(cause) - 1] = '\0';
    memset(ctx, 'x', sizeof(ctx) - 1);
    ctx[sizeof(ctx) - 1] = '\0';
    qs_error_set_class(&e, QS_ETRANSPORT, 0, 1, "%s", cause);
    for (int i = 0; i < 3; i++) {
        qs_error_prefix(&e, "%s", ctx);
        size_t n = strlen(e.msg);
        cr_assert_lt(n, sizeof(e.msg));
        cr_assert_str_eq(qs_error_cause(&e), cause, "round %d", i);
        cr_assert_str_eq(e.msg + n - strlen(cause), cause);
        cr_assert_eq(strncmp(e.msg, "xxx", 3), 0, "the newest context comes first");
        cr_assert_not_null(strstr(e.msg, "...: "), "shortened context is marked: %s", e.msg);
    }
    cr_assert_eq(e.retryable, 1);
}

/* ---- strict JSON ------------------------------------------------------------ */

static int jparse(const char *s, struct qs_error *err)
{
    cJSON *j = NULL;
    int rc = qs_json_parse(s, strlen(s), &j, err);
    if (rc == 0)
        cr_assert_not_null(j);
    else
        cr_assert_null(j);
    cJSON_Delete(j);
    return rc;
}

Test(json, strict_parse_accepts_ordinary_json)
{
    struct qs_error err;
    const char *ok[] = {
        "{\"collection\":\"agent-memory\"}",
        " \r\n\t{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\\\u0000y\"}\n\n ",
        "[]",
        "\"caf\xc3\xa9 \\u00e9 \\u0001\"",
        "{\"a\":{\"k\":1},\"b\":{\"k\":2}}",
        "{\"nul\":\"\\\\\\\\u0000\"}", /* an escaped backslash, then the text u0000 */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(jparse(ok[i], &err), 0, "%s: %s", ok[i], err.msg);
    /* the value is the parsed document */
    cJSON *j = NULL;
    const char *doc = "{\"collection\":\"agent-memory\",\"n\":3}  ";
    cr_assert_eq(qs_json_parse(doc, strlen(doc), &j, &err), 0);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "collection")->valuestring,
                     "agent-memory");
    cJSON_Delete(j);
    /* length-delimited: bytes after len are not looked at */
    cr_assert_eq(qs_json_parse("{}garbage", 2, &j, &err), 0);
    cJSON_Delete(j);
}

Test(json, strict_parse_refuses_nul_trailing_data_duplicates_and_controls)
{
    struct qs_error err;
    const struct {
        const char *text;
        const char *why;
    } bad[] = {
        {"{\"collection\":\"agent-memory\\u0000../../x\"}", "U+0000"},
        {"{\"a\\u0000b\":1}", "U+0000"},
        {"[\"\\u0000\"]", "U+0000"},
        {"{\"collection\":\"c\"} trailing", "after the JSON value"},
        {"{\"collection\":\"c\"}{\"collection\":\"d\"}", "after the JSON value"},
        {"{}\x01", "control character"},
        {"\x01{}", "control character"},
        {"{\"a\":\"x\ny\"}", "control character"},
        {"{\"collection\":\"a\",\"collection\":\"b\"}", "appears twice"},
        {"{\"o\":{\"k\":1,\"k\":2}}", "appears twice"},
        {"[{\"k\":1,\"k\":1}]", "appears twice"},
        {"{\"a\":", "not valid JSON"},
        {"", "empty"},
        {"   ", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        qs_error_clear(&err);
        cr_assert_eq(jparse(bad[i].text, &err), QS_EINVAL, "accepted: %s", bad[i].text);
        cr_assert_eq(err.code, QS_EINVAL);
        cr_assert_not_null(strstr(err.msg, bad[i].why), "%s: '%s'", bad[i].text, err.msg);
    }
    /* a NUL byte inside the given length */
    cJSON *j = NULL;
    cr_assert_eq(qs_json_parse("{\"a\":\"b\0c\"}", 11, &j, &err), QS_EINVAL);
    cr_assert_null(j);
    cr_assert_not_null(strstr(err.msg, "NUL"), "%s", err.msg);
    /* messages show keys printable and bounded */
    char big[400];
    snprintf(big, sizeof(big), "{\"%0300d\x7f\":1,\"%0300d\x7f\":2}", 0, 0);
    cr_assert_eq(jparse(big, &err), QS_EINVAL);
    cr_assert_lt(strlen(err.msg), 200, "%s", err.msg);
    for (const char *p = err.msg; *p; p++)
        cr_assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f, "%s", err.msg);
}
