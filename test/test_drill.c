/* Drill result records and scratch collection names (pure). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsnap/drill.h"
#include "qsnap/error.h"
#include "qsnap/util.h"

#define SNAP "c-1-2025-02-01-03-00-00.snapshot"

Test(drill, render_and_parse_roundtrip)
{
    struct qs_drill_result r = {.collection = "c",
                                .snapshot = SNAP,
                                .ok = 0,
                                .finished = 1738382407, /* 2025-02-01T04:00:07Z */
                                .duration_s = 12.5,
                                .points_expected = 100000,
                                .points_restored = -1,
                                .error = "HTTP 500: \"bad\" \\ upload"};
    struct qs_buf b;
    qs_buf_init(&b);
    cr_assert_eq(qs_drill_result_to_json(&r, &b), 0);
    cr_assert_str_eq(b.data, "{\"format\":1,\"collection\":\"c\",\"snapshot\":\"" SNAP
                             "\",\"result\":\"failure\",\"finished\":\"2025-02-01T04:00:07Z\","
                             "\"duration_s\":12.5,\"points_expected\":100000,"
                             "\"points_restored\":null,"
                             "\"error\":\"HTTP 500: \\\"bad\\\" \\\\ upload\"}\n");
    struct qs_drill_result p;
    struct qs_error err;
    cr_assert_eq(qs_drill_result_parse(b.data, b.len, &p, &err), 0, "%s", err.msg);
    cr_assert_str_eq(p.collection, "c");
    cr_assert_str_eq(p.snapshot, SNAP);
    cr_assert_eq(p.ok, 0);
    cr_assert_eq(p.finished, 1738382407);
    cr_assert_float_eq(p.duration_s, 12.5, 1e-9);
    cr_assert_eq(p.points_expected, 100000);
    cr_assert_eq(p.points_restored, -1);
    cr_assert_str_eq(p.error, r.error);
    qs_drill_result_deinit(&p);
    cr_assert_null(p.collection);

    r.ok = 1;
    r.error = NULL;
    r.points_restored = 100000;
    qs_buf_reset(&b);
    cr_assert_eq(qs_drill_result_to_json(&r, &b), 0);
    cr_assert_not_null(strstr(b.data, "\"result\":\"success\""), "%s", b.data);
    cr_assert_not_null(strstr(b.data, "\"error\":null"), "%s", b.data);
    cr_assert_eq(qs_drill_result_parse(b.data, b.len, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(p.ok, 1);
    cr_assert_null(p.error);
    cr_assert_eq(p.points_restored, 100000);
    qs_drill_result_deinit(&p);

    /* Invalid records are not rendered. */
    size_t len = b.len;
    r.snapshot = "x.json";
    cr_assert_eq(qs_drill_result_to_json(&r, &b), QS_EINVAL);
    r.snapshot = SNAP;
    r.collection = "a/b";
    cr_assert_eq(qs_drill_result_to_json(&r, &b), QS_EINVAL);
    cr_assert_eq(b.len, len);
    qs_buf_free(&b);
}

static void expect_bad(const char *json, int code, const char *field)
{
    struct qs_drill_result p;
    struct qs_error err;
    qs_error_clear(&err);
    cr_assert_eq(qs_drill_result_parse(json, strlen(json), &p, &err), code, "%s", json);
    cr_assert_not_null(strstr(err.msg, field), "%s: %s", json, err.msg);
    cr_assert_null(p.collection);
}

#define OK_PREFIX "{\"format\":1,\"collection\":\"c\",\"snapshot\":\"" SNAP "\","

Test(drill, parse_refuses_bad_records)
{
    expect_bad("[]", QS_EINVAL, "not a JSON object");
    expect_bad("{", QS_EINVAL, "not valid JSON");
    expect_bad("{\"collection\":\"c\"}", QS_EINVAL, "format");
    expect_bad("{\"format\":2,\"collection\":\"c\"}", QS_EPROTO, "newer");
    expect_bad(OK_PREFIX "\"result\":\"maybe\",\"finished\":\"2025-02-01T04:00:07Z\"}", QS_EINVAL,
               "\"result\"");
    expect_bad(OK_PREFIX "\"result\":\"success\"}", QS_EINVAL, "\"finished\"");
    expect_bad(OK_PREFIX "\"result\":\"success\",\"finished\":\"yesterday\"}", QS_EINVAL,
               "\"finished\"");
    expect_bad(OK_PREFIX "\"result\":\"success\",\"finished\":\"2025-02-01T04:00:07Z\","
                         "\"points_restored\":-1}",
               QS_EINVAL, "\"points_restored\"");
    expect_bad(OK_PREFIX "\"result\":\"success\",\"finished\":\"2025-02-01T04:00:07Z\","
                         "\"points_expected\":\"10\"}",
               QS_EINVAL, "\"points_expected\"");
    expect_bad("{\"format\":1,\"collection\":\"a:b\",\"snapshot\":\"" SNAP
               "\",\"result\":\"success\",\"finished\":\"2025-02-01T04:00:07Z\"}",
               QS_EINVAL, "\"collection\"");
    /* Minimal record: counts and error may be absent. */
    const char *min = OK_PREFIX "\"result\":\"success\",\"finished\":\"2025-02-01T04:00:07Z\","
                                "\"future_field\":[1]}";
    struct qs_drill_result p;
    cr_assert_eq(qs_drill_result_parse(min, strlen(min), &p, NULL), 0);
    cr_assert_eq(p.points_expected, -1);
    cr_assert_eq(p.points_restored, -1);
    qs_drill_result_deinit(&p);
}

Test(drill, scratch_names)
{
    cr_assert_eq(qs_drill_is_scratch("c__qsnap_drill"), 1);
    cr_assert_eq(qs_drill_is_scratch("__qsnap_drill"), 1);
    cr_assert_eq(qs_drill_is_scratch("c__qsnap_drill2"), 0);
    cr_assert_eq(qs_drill_is_scratch("c"), 0);
    cr_assert_eq(qs_drill_is_scratch(NULL), 0);
    char out[300];
    cr_assert_eq(qs_drill_scratch_name("agent", out, sizeof(out)), 0);
    cr_assert_str_eq(out, "agent__qsnap_drill");
    char longname[256];
    memset(longname, 'a', 255);
    longname[255] = '\0';
    cr_assert_eq(qs_drill_scratch_name(longname, out, sizeof(out)), QS_EINVAL);
    cr_assert_str_eq(out, "");
    cr_assert_eq(qs_drill_scratch_name("agent", out, 10), QS_EINVAL);
}

/* The duration is written to the millisecond, rounded half up; one that is
 * not a positive finite number is written as 0. */
Test(drill, duration_rounded_to_milliseconds)
{
    const double in[] = {1.23449, 1.2345, 0.0004, -3, 1.0 / 0.0, 0.0 / 0.0};
    const char *want[] = {"1.234", "1.235", "0", "0", "0", "0"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        struct qs_drill_result r = {
            .collection = "c", .snapshot = SNAP, .ok = 1, .finished = 1, .duration_s = in[i]};
        struct qs_buf b;
        qs_buf_init(&b);
        cr_assert_eq(qs_drill_result_to_json(&r, &b), 0);
        char needle[40];
        snprintf(needle, sizeof(needle), "\"duration_s\":%s,", want[i]);
        cr_assert_not_null(strstr(b.data, needle), "%g: %s", in[i], b.data);
        qs_buf_free(&b);
    }
}
